// ir.c — the op table built from ops.h, schema parsing, shapes, and the graph
// builder every pass uses (g_op runs the op's shape rule as the node is made,
// so a graph is always shape-checked). Nodes are kept in topological order:
// a node's operands always have smaller ids.
#include <stdlib.h>
#include <string.h>

#include "bpcc.h"

static OpInfo op_table[OP_COUNT] = {
#define X(e, nm, sc, fl, lk, fp, shp, itp, sca, grd, be) \
  [OP_##e] = {#nm, sc, fl, lk, fp, shp, itp, sca, grd, &be, 0, {{0}}},
    BPC_OPS(X)
#undef X
};

int64_t dtype_bytes(DType t) { return t == DT_F64 ? 8 : 4; }
int64_t node_bytes(const Node *n) { return shape_numel(&n->shape) * dtype_bytes(n->dtype); }

// Parses "x:t alpha:f0=0.01" into op->params. Schemas are bpc's own text,
// so a malformed one is a bug.
static void parse_schema(OpInfo *op) {
  char *s = xstrdup(op->schema);  // kept for the life of the process
  for (char *tok = strtok(s, " "); tok; tok = strtok(NULL, " ")) {
    BPC_ASSERT(op->nparams < 8);
    OpParam *p = &op->params[op->nparams++];
    char *colon = strchr(tok, ':');
    BPC_ASSERT(colon && colon[1]);
    *colon = 0;
    p->name = tok;
    p->kind = colon[1];
    BPC_ASSERT(strchr("tTfibaps", p->kind));
    char *rest = colon + 2;
    if (*rest >= '0' && *rest <= '9') p->slot = *rest++ - '0';
    if (*rest == '=')
      p->def = rest + 1;
    else
      BPC_ASSERT(*rest == 0);
    p->required = p->def == NULL;
  }
  if (!op->nparams) free(s);  // otherwise the params point into it
}

const OpInfo *op_info(Op op) {
  static bool ready;
  if (!ready) {  // single-threaded compiler: first use builds the table
    for (int i = 0; i < OP_COUNT; i++) parse_schema(&op_table[i]);
    ready = true;
  }
  BPC_ASSERT(op >= 0 && op < OP_COUNT);
  return &op_table[op];
}

Op op_lookup(const char *name) {
  for (int i = 0; i < OP_COUNT; i++)
    if (!strcmp(op_table[i].name, name)) return (Op)i;
  return OP_NONE;
}

const char *op_name(Op op) { return op_info(op)->name; }

bool dtype_is_float(DType t) { return t != DT_I32; }

int64_t shape_numel(const Shape *s) {
  int64_t n = 1;
  for (int i = 0; i < s->rank; i++) n *= s->d[i];
  return n;
}

bool shape_eq(const Shape *a, const Shape *b) {
  if (a->rank != b->rank) return false;
  for (int i = 0; i < a->rank; i++)
    if (a->d[i] != b->d[i]) return false;
  return true;
}

bool shape_broadcast(const Shape *a, const Shape *b, Shape *out) {
  Shape r = {.rank = a->rank > b->rank ? a->rank : b->rank};
  for (int i = 0; i < r.rank; i++) {
    int ia = a->rank - r.rank + i, ib = b->rank - r.rank + i;
    int64_t da = ia >= 0 ? a->d[ia] : 1, db = ib >= 0 ? b->d[ib] : 1;
    if (da != db && da != 1 && db != 1) return false;
    r.d[i] = da == 1 ? db : da;
  }
  *out = r;
  return true;
}

void shape_bcast_strides(const Shape *s, const Shape *out, int64_t *st) {
  BPC_ASSERT(s->rank <= out->rank);
  int64_t acc = 1;
  for (int i = out->rank - 1; i >= 0; i--) {
    int j = s->rank - out->rank + i;
    int64_t dim = j >= 0 ? s->d[j] : 1;
    BPC_ASSERT(dim == 1 || dim == out->d[i]);
    st[i] = dim == 1 ? 0 : acc;
    acc *= dim;
  }
}

int64_t attention_grad_offset(const Shape *q, const Shape *k, int part) {
  return (part > 0 ? shape_numel(q) : 0) + (part > 1 ? (part - 1) * shape_numel(k) : 0);
}

int64_t lce_offset(const Shape *h, const Shape *w, int part) {
  return (part > 0 ? shape_numel(h) : 0) + (part > 1 ? shape_numel(w) : 0) + (part > 2 ? 1 : 0);
}

// About 2^24 logits per block (64 MiB in f32 at GPT-2's V), whole GEMM
// row tiles, at least 16 rows so the dW GEMM's K is not tiny.
int64_t lce_block_rows(int64_t rows, int64_t V) {
  int64_t r = (INT64_C(1) << 24) / (V > 0 ? V : 1);
  r = r < 16 ? 16 : r / 16 * 16;
  return r < rows ? r : rows;
}

int64_t lce_dims(const Graph *g, const Node *n, int64_t *rows, int64_t *C) {
  const Shape *h = &graph_node(g, n->in[0])->shape, *w = &graph_node(g, n->in[1])->shape;
  *C = h->d[h->rank - 1];
  *rows = shape_numel(h) / *C;
  return n->attr.b[0] ? w->d[0] : w->d[1];
}

char *shape_str(const Shape *s, char *buf, size_t size) {
  size_t k = 0;
  k += (size_t)snprintf(buf + k, size - k, "[");
  for (int i = 0; i < s->rank && k < size; i++)
    k += (size_t)snprintf(buf + k, size - k, i ? ", %lld" : "%lld", (long long)s->d[i]);
  if (k < size) snprintf(buf + k, size - k, "]");
  return buf;
}

bool graph_bf16(const Graph *g) { return g->fdtype == DT_F32 && g->model && g->model->train.bf16; }

Graph *graph_new(Diag *d, const Model *m, DType fdtype) {
  Graph *g = xcalloc(1, sizeof(Graph));
  g->diag = d;
  g->model = m;
  g->fdtype = fdtype;
  g->loss = -1;
  return g;
}

void graph_free(Graph *g) {
  if (!g) return;
  free(g->nodes.v);
  free(g->dims.v);
  free(g->inputs.v);
  free(g->params.v);
  free(g->states.v);
  free(g->named.v);
  free(g->metrics.v);
  free(g->outputs.v);
  free(g->scalars.v);
  arena_free(&g->arena);
  free(g);
}

Node *graph_node(const Graph *g, int id) {
  BPC_ASSERT(id >= 0 && id < g->nodes.n);
  return g->nodes.v[id];
}

static Node *new_node(Graph *g, Op op, Loc loc, int nin, const int *in) {
  Node *n = arena_alloc(&g->arena, sizeof(Node));
  n->id = g->nodes.n;
  n->phase = g->phase;
  n->op = op;
  n->loc = loc;
  n->nin = nin;
  n->in = arena_alloc(&g->arena, sizeof(int) * (size_t)(nin ? nin : 1));
  for (int i = 0; i < nin; i++) {
    BPC_ASSERT(in[i] >= 0 && in[i] < n->id);
    n->in[i] = in[i];
  }
  VEC_PUSH(g->nodes, n);
  return n;
}

Attr attr_default(Op op) {
  const OpInfo *info = op_info(op);
  Attr a = {.naxes = -1};
  for (int i = 0; i < info->nparams; i++) {
    const OpParam *p = &info->params[i];
    if (!p->def) continue;
    switch (p->kind) {
    case 'f': a.f[p->slot] = strtod(p->def, NULL); break;
    case 'i': a.i[p->slot] = strtoll(p->def, NULL, 10); break;
    case 'b': a.b[p->slot] = !strcmp(p->def, "true"); break;
    default: break;  // axes "all", perm "none": naxes -1
    }
  }
  return a;
}

int node_operand(const Node *n, const char *name) {
  const OpInfo *oi = op_info(n->op);
  for (int i = 0, t = 0; i < oi->nparams; i++) {
    if (oi->params[i].kind != 't') continue;
    if (!strcmp(oi->params[i].name, name)) return t < n->nin ? t : -1;
    t++;
  }
  return -1;
}

// Is operand k of op an index (ids, labels): i32 by contract, never promoted.
static bool index_operand(Op op, int k) {
  const OpInfo *oi = op_info(op);
  for (int i = 0, t = 0; i < oi->nparams; i++) {
    if (oi->params[i].kind == 'T') return false;  // variadic data tensors
    if (oi->params[i].kind != 't') continue;
    if (t++ == k)
      return !strcmp(oi->params[i].name, "ids") || !strcmp(oi->params[i].name, "labels") ||
             !strcmp(oi->params[i].name, "pos");
  }
  return false;
}

// Operands promote to the dtype an op computes in (shape.c's rule, as
// PyTorch): an elementwise loop converts as it loads; any other op (a
// reduction, a norm, a matmul, a data mover) gets a CAST in front of each
// operand of another dtype (an i32, or an f32 beside an f64), so no kernel
// reads one dtype's bits as another's. Index operands stay i32; argmax of
// i32 compares the promoted values. The dtype to cast operand k to, or -1.
static int promoted_dtype(const Graph *g, const Node *n, int k) {
  const OpInfo *oi = op_info(n->op);
  if (oi->lower == LK_EW || oi->lower == LK_LEAF || index_operand(n->op, k)) return -1;
  DType d = graph_node(g, n->in[k])->dtype;
  if (dtype_is_float(n->dtype)) return d != n->dtype ? (int)n->dtype : -1;
  return n->op == OP_ARGMAX && d == DT_I32 ? (int)g->fdtype : -1;
}

int g_op(Graph *g, Op op, Loc loc, int nin, const int *in, const Attr *attr) {
  Node *n = new_node(g, op, loc, nin, in);
  n->attr = attr ? *attr : attr_default(op);
  n->dtype = g->fdtype;
  if (!op_info(op)->shape(g, n)) {
    g->nodes.n--;  // drop the failed node; its arena bytes are harmless
    return -1;
  }
  int k = 0;
  while (k < nin && promoted_dtype(g, n, k) < 0) k++;
  if (k < nin) {  // drop the node, cast, and build it again on the casts
    int *pin = xmalloc(sizeof(int) * (size_t)nin), *to = xmalloc(sizeof(int) * (size_t)nin);
    for (k = 0; k < nin; k++) pin[k] = in[k], to[k] = promoted_dtype(g, n, k);
    g->nodes.n--;
    for (k = 0; k < nin; k++) {
      if (to[k] < 0) continue;
      Attr ca = attr_default(OP_CAST);
      ca.i[0] = to[k];
      pin[k] = g_op(g, OP_CAST, loc, 1, &in[k], &ca);
    }
    int id = g_op(g, op, loc, nin, pin, attr);
    free(pin), free(to);
    return id;
  }
  int64_t numel = 1;
  for (int i = 0; i < n->shape.rank; i++) {
    BPC_ASSERT(n->shape.d[i] >= 1);
    if (n->shape.d[i] > BPC_MAX_ELEMS / numel) {
      diag_error(g->diag, loc, "result of %s has more than 2^40 elements", op_name(op));
      g->nodes.n--;
      return -1;
    }
    numel *= n->shape.d[i];
  }
  return n->id;
}

int g_leaf(Graph *g, Op op, const char *name, DType dt, const Shape *s, Loc loc) {
  BPC_ASSERT(op_info(op)->flags & OPF_LEAF);
  Node *n = new_node(g, op, loc, 0, NULL);
  n->attr = attr_default(op);
  n->name = name;
  n->dtype = dt;
  n->shape = *s;
  return n->id;
}

int g_const(Graph *g, double v, Loc loc) {
  Attr a = attr_default(OP_CONST);
  a.f[0] = v;
  return g_op(g, OP_CONST, loc, 0, NULL, &a);
}

int g_unary(Graph *g, Op op, int a, Loc loc) { return g_op(g, op, loc, 1, &a, NULL); }

int g_binary(Graph *g, Op op, int a, int b, Loc loc) {
  int in[2] = {a, b};
  return g_op(g, op, loc, 2, in, NULL);
}
