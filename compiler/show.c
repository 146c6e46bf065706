// show.c — the graph printed for people: `bpc show` (the expanded graph in
// the model's own expression syntax, shapes as comments), `bpc dot`
// (Graphviz), and the `bpc check` report (params, FLOPs, every value).
// Scalar constants are printed inline as literals; temporaries as `_N`.
#include <inttypes.h>
#include <string.h>

#include "bpcc.h"

static const char *node_ref(const Graph *g, int id, char *buf, size_t size) {
  const Node *n = graph_node(g, id);
  if (n->op == OP_CONST)
    snprintf(buf, size, "%.9g", n->attr.f[0]);
  else if (n->name)
    snprintf(buf, size, "%s", n->name);
  else
    snprintf(buf, size, "_%d", id);
  return buf;
}

static void print_list_int(FILE *out, const int64_t *v, int n) {
  fputc('[', out);
  for (int i = 0; i < n; i++) fprintf(out, i ? ", %" PRId64 : "%" PRId64, v[i]);
  fputc(']', out);
}

static void print_attr(FILE *out, const Node *n, const OpParam *p) {
  const Attr *a = &n->attr;
  fprintf(out, "%s=", p->name);
  switch (p->kind) {
  case 'f': fprintf(out, "%.9g", a->f[p->slot]); break;
  case 'i': fprintf(out, "%" PRId64, a->i[p->slot]); break;
  case 'b': fputs(a->b[p->slot] ? "true" : "false", out); break;
  case 'a':
  case 'p': {
    int64_t v[BPC_MAX_RANK];
    for (int i = 0; i < a->naxes; i++) v[i] = a->axes[i];
    print_list_int(out, v, a->naxes < 0 ? 0 : a->naxes);
    break;
  }
  case 's': print_list_int(out, a->shape.d, a->shape.rank); break;
  default: break;
  }
}

// The right-hand side of a node in expression syntax.
static void print_expr(FILE *out, const Graph *g, const Node *n) {
  char x[128], y[128];
  bool plain_mm = n->op == OP_MATMUL && !n->attr.b[0] && !n->attr.b[1];
  const char *infix = n->op == OP_ADD   ? "+"
                      : n->op == OP_SUB ? "-"
                      : n->op == OP_MUL ? "*"
                      : n->op == OP_DIV ? "/"
                      : plain_mm        ? "@"
                                        : NULL;
  if (infix) {
    fprintf(out, "%s %s %s", node_ref(g, n->in[0], x, sizeof x), infix, node_ref(g, n->in[1], y, sizeof y));
    return;
  }
  if (n->op == OP_NEG) {
    fprintf(out, "-%s", node_ref(g, n->in[0], x, sizeof x));
    return;
  }
  if (n->op == OP_POW) {
    fprintf(out, "%s ** %.9g", node_ref(g, n->in[0], x, sizeof x), n->attr.f[0]);
    return;
  }
  const OpInfo *info = op_info(n->op);
  fprintf(out, "%s(", info->name);
  bool first = true;
  // Required tensor operands positionally; an optional one (`mask:t=none`)
  // by name, as it must be written (a fourth positional argument of
  // attention is `heads`).
  int nreq = n->nin;
  for (int i = 0; i < info->nparams; i++)
    if (info->params[i].kind == 't' && !info->params[i].required && node_operand(n, info->params[i].name) >= 0) nreq--;
  for (int i = 0; i < nreq; i++) {
    fprintf(out, "%s%s", first ? "" : ", ", node_ref(g, n->in[i], x, sizeof x));
    first = false;
  }
  for (int i = 0; i < info->nparams; i++) {
    const OpParam *p = &info->params[i];
    int k = p->kind == 't' && !p->required ? node_operand(n, p->name) : -1;
    if (k < 0) continue;
    fprintf(out, "%s%s=%s", first ? "" : ", ", p->name, node_ref(g, n->in[k], x, sizeof x));
    first = false;
  }
  Attr def = attr_default(n->op);
  for (int i = 0; i < info->nparams; i++) {
    const OpParam *p = &info->params[i];
    if (p->kind == 't' || p->kind == 'T') continue;
    bool is_default = (p->kind == 'f' && n->attr.f[p->slot] == def.f[p->slot]) ||
                      (p->kind == 'i' && n->attr.i[p->slot] == def.i[p->slot]) ||
                      (p->kind == 'b' && n->attr.b[p->slot] == def.b[p->slot]);
    if (is_default && !p->required) continue;
    fputs(first ? "" : ", ", out);
    print_attr(out, n, p);
    first = false;
  }
  fputc(')', out);
}

static void print_init(FILE *out, InitSpec s) {
  switch (s.kind) {
  case INIT_CONSTANT: fprintf(out, "constant(%.9g)", s.a); break;
  case INIT_NORMAL: fprintf(out, "normal(%.9g, %.9g)", s.a, s.b); break;
  case INIT_UNIFORM: fprintf(out, "uniform(%.9g, %.9g)", s.a, s.b); break;
  default: fputs(init_name(s.kind), out);
  }
}

void show_graph(FILE *out, const Graph *g) {
  char buf[256];
  fprintf(out, "# %s: %d nodes, float dtype %s\n", g->model ? g->model->name : "graph", g->nodes.n,
          dtype_name(g->fdtype));
  if (g->dims.n) {
    fputs("dims:\n", out);
    for (int i = 0; i < g->dims.n; i++) fprintf(out, "  %s: %" PRId64 "\n", g->dims.v[i].name, g->dims.v[i].value);
  }
  if (g->inputs.n) fputs("inputs:\n", out);
  for (int i = 0; i < g->inputs.n; i++) {
    const Node *n = graph_node(g, g->inputs.v[i].node);
    fprintf(out, "  %s: {shape: %s, dtype: %s}\n", n->name, shape_str(&n->shape, buf, sizeof buf),
            dtype_name(n->dtype));
  }
  if (g->params.n) fputs("params:\n", out);
  for (int i = 0; i < g->params.n; i++) {
    const GParam *p = &g->params.v[i];
    const Node *n = graph_node(g, p->node);
    // Quoted: inside a flow mapping the comma of `normal(0, 0.5)` would end the value.
    fprintf(out, "  %s: {shape: %s, dtype: %s, init: \"", p->name, shape_str(&n->shape, buf, sizeof buf),
            dtype_name(n->dtype));
    print_init(out, p->init);
    fprintf(out, "\"%s%s}\n", p->trainable ? "" : ", trainable: false", p->decay ? "" : ", decay: false");
  }
  if (g->states.n) fputs("state:\n", out);
  for (int i = 0; i < g->states.n; i++) {
    const GState *s = &g->states.v[i];
    const Node *n = graph_node(g, s->node);
    fprintf(out, "  %s: {shape: %s, init: %.9g, update: %s}\n", s->name, shape_str(&n->shape, buf, sizeof buf), s->init,
            node_ref(g, s->update, buf + 128, 128));
  }
  fputs("graph:\n", out);
  for (int id = 0; id < g->nodes.n; id++) {
    const Node *n = graph_node(g, id);
    if ((op_info(n->op)->flags & OPF_LEAF) || n->op == OP_CONST) continue;
    fprintf(out, "  %s: ", node_ref(g, id, buf, sizeof buf));
    print_expr(out, g, n);
    fprintf(out, "  # %s %s\n", shape_str(&n->shape, buf, sizeof buf), dtype_name(n->dtype));
  }
  if (g->loss >= 0) fprintf(out, "loss: %s\n", node_ref(g, g->loss, buf, sizeof buf));
  bool any_grad = false;
  for (int i = 0; i < g->params.n; i++) {
    const GParam *p = &g->params.v[i];
    if (p->grad < 0) continue;
    fprintf(out, "%s%s: %s", any_grad ? ", " : "grads: {", p->name, node_ref(g, p->grad, buf, sizeof buf));
    any_grad = true;
  }
  if (any_grad) fputs("}\n", out);
  for (int k = 0; k < 2; k++) {
    const GNamed *v = k ? g->outputs.v : g->metrics.v;
    int nv = k ? g->outputs.n : g->metrics.n;
    if (!nv) continue;
    fprintf(out, "%s: [", k ? "outputs" : "metrics");
    for (int i = 0; i < nv; i++) fprintf(out, "%s%s", i ? ", " : "", v[i].name);
    fputs("]\n", out);
  }
}

static void dot_escape(FILE *out, const char *s) {
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') fputc('\\', out);
    fputc(*s, out);
  }
}

void show_dot(FILE *out, const Graph *g) {
  char buf[256];
  fprintf(out, "digraph \"");
  dot_escape(out, g->model ? g->model->name : "graph");
  fprintf(out, "\" {\n  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=10];\n");
  for (int id = 0; id < g->nodes.n; id++) {
    const Node *n = graph_node(g, id);
    if (n->op == OP_CONST) continue;
    const char *style = n->op == OP_PARAM   ? "shape=box, style=filled, fillcolor=\"#ffe8b0\""
                        : n->op == OP_INPUT ? "shape=box, style=filled, fillcolor=\"#c8e6ff\""
                        : n->op == OP_STATE ? "shape=box, style=filled, fillcolor=\"#e0e0e0\""
                        : id == g->loss     ? "shape=ellipse, style=filled, fillcolor=\"#ffb0b0\""
                                            : "shape=ellipse";
    fprintf(out, "  n%d [%s, label=\"", id, style);
    if (n->name) {
      dot_escape(out, n->name);
      fputs("\\n", out);
    }
    fprintf(out, "%s %s\"];\n", op_name(n->op), shape_str(&n->shape, buf, sizeof buf));
    for (int i = 0; i < n->nin; i++) {
      const Node *a = graph_node(g, n->in[i]);
      if (a->op == OP_CONST) continue;
      fprintf(out, "  n%d -> n%d;\n", a->id, id);
    }
  }
  fputs("}\n", out);
}

// FLOPs of one node: its op's Backend.flops where it has one (products: 2
// per multiply-add, lower_<family>.c), else the registry's cost per element
// of its largest operand or result.
int64_t node_flops(const Graph *g, const Node *n) {
  const OpInfo *info = op_info(n->op);
  int64_t numel = shape_numel(&n->shape);
  if (info->be->flops) return info->be->flops(g, n);
  int64_t big = numel;
  for (int i = 0; i < n->nin; i++) {
    int64_t m = shape_numel(&graph_node(g, n->in[i])->shape);
    if (m > big) big = m;
  }
  return (int64_t)(info->flops * (double)big);
}

int64_t graph_flops(const Graph *g) {
  int64_t total = 0;
  for (int id = 0; id < g->nodes.n; id++) total += node_flops(g, graph_node(g, id));
  return total;
}

void show_check(FILE *out, const Graph *g) {
  char buf[128], bytes[64];
  fprintf(out, "%s: ok (%d nodes, float dtype %s%s)\n", g->model ? g->model->name : "graph", g->nodes.n,
          dtype_name(g->fdtype), graph_bf16(g) ? ", precision bf16: matmul, attention and conv2d products" : "");
  if (g->dims.n) {
    fputs("dims:", out);
    for (int i = 0; i < g->dims.n; i++) fprintf(out, " %s=%" PRId64, g->dims.v[i].name, g->dims.v[i].value);
    fputc('\n', out);
  }
  fprintf(out, "\nparams:\n  %-24s %-20s %12s  %s\n", "name", "shape", "elements", "");
  int64_t total = 0, trainable = 0, pbytes = 0;
  for (int i = 0; i < g->params.n; i++) {
    const GParam *p = &g->params.v[i];
    const Node *n = graph_node(g, p->node);
    int64_t e = shape_numel(&n->shape);
    total += e;
    trainable += p->trainable ? e : 0;
    pbytes += e * dtype_bytes(n->dtype);
    fprintf(out, "  %-24s %-20s %12" PRId64 "  %s%s\n", p->name, shape_str(&n->shape, buf, sizeof buf), e,
            p->trainable ? "" : "frozen ", p->decay ? "decay" : "");
  }
  format_bytes(bytes, sizeof bytes, pbytes);
  fprintf(out, "  total: %d tensors, %" PRId64 " elements (%" PRId64 " trainable), %s\n", g->params.n, total, trainable,
          bytes);
  if (g->states.n) {
    fputs("\nstate:\n", out);
    for (int i = 0; i < g->states.n; i++)
      fprintf(out, "  %-24s %s\n", g->states.v[i].name,
              shape_str(&graph_node(g, g->states.v[i].node)->shape, buf, sizeof buf));
  }
  fputs("\ninputs:\n", out);
  for (int i = 0; i < g->inputs.n; i++) {
    const Node *n = graph_node(g, g->inputs.v[i].node);
    fprintf(out, "  %-24s %-20s %s\n", n->name, shape_str(&n->shape, buf, sizeof buf), dtype_name(n->dtype));
  }
  fputs("\nvalues:\n", out);
  int64_t act = 0;
  for (int i = 0; i < g->named.n; i++) {
    const Node *n = graph_node(g, g->named.v[i].node);
    fprintf(out, "  %-24s %-20s %s\n", g->named.v[i].name, shape_str(&n->shape, buf, sizeof buf), dtype_name(n->dtype));
  }
  for (int id = 0; id < g->nodes.n; id++) {
    const Node *n = graph_node(g, id);
    if (!(op_info(n->op)->flags & OPF_LEAF)) act += shape_numel(&n->shape) * dtype_bytes(n->dtype);
  }
  int64_t fl = graph_flops(g);
  fprintf(out, "\nforward FLOPs/step: %" PRId64 " (%.3f GFLOP)\n", fl, (double)fl / 1e9);
  format_bytes(bytes, sizeof bytes, act);
  fprintf(out, "forward values, all kept alive: %s\n", bytes);
  if (g->loss >= 0) fprintf(out, "loss: %s\n", node_ref(g, g->loss, buf, sizeof buf));
}
