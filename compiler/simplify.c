// simplify.c — cleans the joint graph by rebuilding it node by node into a
// fresh Graph: operands are remapped, rewrite rules run as each node is made
// (constant folding, algebraic identities, numerically safe forms), equal
// nodes are shared (CSE), and a final rebuild keeps only what the step's
// results need (DCE). Every rebuilt node goes through its shape rule again.
// Rewrites keep values bit-identical except where they make them more
// accurate (log(softmax) -> log_softmax, log(sigmoid) -> -softplus(-x)).
#include <stdlib.h>
#include <string.h>

#include "bpcc.h"

typedef struct Rebuild {
  const Graph *src;
  Graph *g;
  unsigned flags;
  int *map;  // src id -> new id (-1: dropped)
  struct {
    int *v;
    int cap;
  } table;  // CSE: open addressing over new ids (-1 empty)
} Rebuild;

static bool attr_eq(const Attr *a, const Attr *b) {
  if (a->f[0] != b->f[0] || a->f[1] != b->f[1] || a->i[0] != b->i[0] || a->i[1] != b->i[1] || a->i[2] != b->i[2] ||
      a->b[0] != b->b[0] || a->b[1] != b->b[1] || a->naxes != b->naxes || a->salt != b->salt ||
      !shape_eq(&a->shape, &b->shape))
    return false;
  for (int i = 0; i < a->naxes; i++)
    if (a->axes[i] != b->axes[i]) return false;
  return true;
}

static uint64_t mix(uint64_t h, uint64_t v) { return (h ^ v) * 0x100000001b3ULL + (h >> 29); }

static uint64_t node_hash(Op op, int nin, const int *in, const Attr *a) {
  uint64_t h = mix(0xcbf29ce484222325ULL, (uint64_t)op);
  for (int i = 0; i < nin; i++) h = mix(h, (uint64_t)in[i]);
  uint64_t bits;
  memcpy(&bits, &a->f[0], sizeof bits);
  h = mix(h, bits);
  h = mix(h, (uint64_t)a->i[0] ^ ((uint64_t)a->i[1] << 20) ^ a->salt);
  return h;
}

static bool same_node(const Node *n, Op op, int nin, const int *in, const Attr *a) {
  if (n->op != op || n->nin != nin) return false;
  for (int i = 0; i < nin; i++)
    if (n->in[i] != in[i]) return false;
  return attr_eq(&n->attr, a);
}

// Slot of an equal node, or of the empty slot where it would go.
static int *cse_slot(Rebuild *r, Op op, int nin, const int *in, const Attr *a) {
  uint64_t h = node_hash(op, nin, in, a);
  for (int k = 0;; k++) {
    int *slot = &r->table.v[(h + (uint64_t)k) & (uint64_t)(r->table.cap - 1)];
    if (*slot < 0 || same_node(graph_node(r->g, *slot), op, nin, in, a)) return slot;
  }
}

static const Node *N(Rebuild *r, int id) { return graph_node(r->g, id); }

static bool is_const(Rebuild *r, int id, double v) {
  const Node *n = N(r, id);
  return n->op == OP_CONST && n->attr.f[0] == v;
}

static int make(Rebuild *r, Op op, Loc loc, int nin, const int *in, const Attr *a);

static int make1(Rebuild *r, Op op, Loc loc, int x, const Attr *a) { return make(r, op, loc, 1, &x, a); }

// x when `out` would just be x: same shape and dtype (no broadcast, no cast).
static bool passes_through(Rebuild *r, int x, const Node *probe) {
  const Node *xn = N(r, x);
  return shape_eq(&xn->shape, &probe->shape) && xn->dtype == probe->dtype;
}

static int make2(Rebuild *r, Op op, Loc loc, int x, int y) {
  int in[2] = {x, y};
  return make(r, op, loc, 2, in, NULL);
}

static int cnst(Rebuild *r, Loc loc, double v) {
  Attr c = attr_default(OP_CONST);
  c.f[0] = v;
  return make(r, OP_CONST, loc, 0, NULL, &c);
}

static bool contiguous(const Attr *a) {
  for (int i = 1; i < a->naxes; i++)
    if (a->axes[i] != a->axes[i - 1] + 1) return false;
  return true;
}

// The permutation moving the axes of `a` (ascending) after the others, in order.
static Attr trailing_perm(const Attr *a, int rank) {
  Attr t = attr_default(OP_TRANSPOSE);
  bool red[BPC_MAX_RANK] = {0};
  for (int i = 0; i < a->naxes; i++) red[a->axes[i]] = true;
  t.naxes = 0;
  for (int i = 0; i < rank; i++)
    if (!red[i]) t.axes[t.naxes++] = i;
  for (int i = 0; i < a->naxes; i++) t.axes[t.naxes++] = a->axes[i];
  return t;
}

// Forms the kernel library does not take directly, as ops it does.
static int lower(Rebuild *r, Op op, Loc loc, int nin, const int *in, const Attr *a, const Node *probe) {
  switch (op) {
  case OP_LINEAR: return make2(r, OP_ADD, loc, make2(r, OP_MATMUL, loc, in[0], in[1]), in[2]);
  case OP_MSE: return make1(r, OP_MEAN, loc, make1(r, OP_SQUARE, loc, make2(r, OP_SUB, loc, in[0], in[1]), NULL), NULL);
  case OP_BINARY_CROSS_ENTROPY: {  // mean(max(x, 0) - x t + softplus(-|x|)), as the interpreter
    int x = in[0];
    int pos = make2(r, OP_MAXIMUM, loc, x, cnst(r, loc, 0));
    int tail = make1(r, OP_SOFTPLUS, loc, make1(r, OP_NEG, loc, make1(r, OP_ABS, loc, x, NULL), NULL), NULL);
    int term = make2(r, OP_ADD, loc, make2(r, OP_SUB, loc, pos, make2(r, OP_MUL, loc, x, in[1])), tail);
    return make1(r, OP_MEAN, loc, term, NULL);
  }
  case OP_SUM:
  case OP_MEAN:
  case OP_MAX:
  case OP_MIN:
  case OP_VAR:
  case OP_LOGSUMEXP: {
    if (contiguous(a)) return -1;
    int rank = graph_node(r->g, in[0])->shape.rank;
    Attr t = trailing_perm(a, rank), ra = *a;
    int xt = make1(r, OP_TRANSPOSE, loc, in[0], &t);
    for (int i = 0; i < a->naxes; i++) ra.axes[i] = rank - a->naxes + i;
    ra.b[0] = false;
    int red = make1(r, op, loc, xt, &ra);
    if (!a->b[0]) return red;
    Attr sh = attr_default(OP_RESHAPE);
    sh.shape = probe->shape;
    return make1(r, OP_RESHAPE, loc, red, &sh);
  }
  case OP_MAXMIN_GRAD: {
    if (contiguous(a)) return -1;
    int rank = graph_node(r->g, in[0])->shape.rank;
    Attr t = trailing_perm(a, rank), ga = *a, inv = t;
    int ops[2] = {make1(r, OP_TRANSPOSE, loc, in[0], &t), make1(r, OP_TRANSPOSE, loc, in[1], &t)};
    for (int i = 0; i < a->naxes; i++) ga.axes[i] = rank - a->naxes + i;
    for (int i = 0; i < rank; i++) inv.axes[t.axes[i]] = i;
    return make1(r, OP_TRANSPOSE, loc, make(r, OP_MAXMIN_GRAD, loc, 2, ops, &ga), &inv);
  }
  default: return -1;
  }
}

// Algebraic identities and numerically safe forms. Returns an existing or
// new node replacing (op, in, a), or -1 when no rule applies.
static int rewrite(Rebuild *r, Op op, Loc loc, int nin, const int *in, const Attr *a, const Node *probe) {
  const OpInfo *info = op_info(op);
  if (r->flags & SIMP_LOWER) {
    int id = lower(r, op, loc, nin, in, a, probe);
    if (id >= 0) return id;
  }
  if ((r->flags & SIMP_FOLD) && (info->flags & OPF_EW) && info->scalar && nin > 0) {
    double x[3];
    bool all = nin <= 3;
    for (int i = 0; i < nin && all; i++) {
      all = N(r, in[i])->op == OP_CONST;
      if (all) x[i] = N(r, in[i])->attr.f[0];
    }
    if (all && probe->shape.rank == 0 && dtype_is_float(probe->dtype)) {
      double v = info->scalar(x, a);
      if (probe->dtype == DT_F32) v = (double)(float)v;
      Attr c = attr_default(OP_CONST);
      c.f[0] = v;
      return make(r, OP_CONST, loc, 0, NULL, &c);
    }
  }
  if (!(r->flags & SIMP_ALGEBRA)) return -1;
  switch (op) {
  case OP_MUL:  // x * 1, 1 * x
    if (is_const(r, in[1], 1) && passes_through(r, in[0], probe)) return in[0];
    if (is_const(r, in[0], 1) && passes_through(r, in[1], probe)) return in[1];
    break;
  case OP_ADD:  // x + 0, 0 + x
    if (is_const(r, in[1], 0) && passes_through(r, in[0], probe)) return in[0];
    if (is_const(r, in[0], 0) && passes_through(r, in[1], probe)) return in[1];
    break;
  case OP_SUB:
    if (is_const(r, in[1], 0) && passes_through(r, in[0], probe)) return in[0];
    break;
  case OP_DIV:
    if (is_const(r, in[1], 1) && passes_through(r, in[0], probe)) return in[0];
    break;
  case OP_NEG:
    if (N(r, in[0])->op == OP_NEG) return N(r, in[0])->in[0];
    break;
  case OP_RESHAPE:
  case OP_BROADCAST_TO:
    if (passes_through(r, in[0], probe)) return in[0];
    if (op == OP_RESHAPE && N(r, in[0])->op == OP_RESHAPE) return make1(r, OP_RESHAPE, loc, N(r, in[0])->in[0], a);
    break;
  case OP_TRANSPOSE: {
    const Node *x = N(r, in[0]);
    bool identity = true;
    for (int i = 0; i < a->naxes; i++) identity &= a->axes[i] == i;
    if (identity) return in[0];
    if (x->op == OP_TRANSPOSE) {  // compose: out[i] = x_in[x.perm[a.perm[i]]]
      Attr c = *a;
      for (int i = 0; i < a->naxes; i++) c.axes[i] = x->attr.axes[a->axes[i]];
      return make1(r, OP_TRANSPOSE, loc, x->in[0], &c);
    }
    break;
  }
  case OP_MATMUL: {  // a transpose of the last two axes becomes the matmul's layout flag
    for (int k = 0; k < 2; k++) {
      const Node *t = N(r, in[k]);
      if (t->op != OP_TRANSPOSE) continue;
      int rank = t->shape.rank;
      bool last2 = rank >= 2;
      for (int i = 0; i < rank - 2 && last2; i++) last2 = t->attr.axes[i] == i;
      last2 = last2 && t->attr.axes[rank - 2] == rank - 1 && t->attr.axes[rank - 1] == rank - 2;
      if (!last2) continue;
      Attr c = *a;
      c.b[k] = !c.b[k];
      int ops[2] = {in[0], in[1]};
      ops[k] = t->in[0];
      return make(r, OP_MATMUL, loc, 2, ops, &c);
    }
    break;
  }
  case OP_SUM: {  // sum over the batch of a^T b: one GEMM over the flattened batch
    const Node *m = N(r, in[0]);
    if (m->op != OP_MATMUL || !m->attr.b[0] || m->attr.b[1] || a->b[0]) break;
    const Shape *as = &N(r, m->in[0])->shape, *bs = &N(r, m->in[1])->shape;
    int lead = m->shape.rank - 2;
    bool ok = lead >= 1 && a->naxes == lead && as->rank == lead + 2 && bs->rank == lead + 2;
    for (int i = 0; ok && i < lead; i++) ok = a->axes[i] == i && as->d[i] == bs->d[i] && as->d[i] == m->shape.d[i];
    if (!ok) break;
    int64_t rows = shape_numel(as) / as->d[lead + 1];
    Attr ra = attr_default(OP_RESHAPE), rb = ra, mm = m->attr;
    ra.shape = (Shape){.rank = 2, .d = {rows, as->d[lead + 1]}};
    rb.shape = (Shape){.rank = 2, .d = {rows, bs->d[lead + 1]}};
    int ops[2] = {make1(r, OP_RESHAPE, loc, m->in[0], &ra), make1(r, OP_RESHAPE, loc, m->in[1], &rb)};
    return make(r, OP_MATMUL, loc, 2, ops, &mm);
  }
  case OP_LOG: {
    const Node *x = N(r, in[0]);
    if (x->op == OP_SOFTMAX) return make1(r, OP_LOG_SOFTMAX, loc, x->in[0], &x->attr);
    if (x->op == OP_SIGMOID) {  // log(sigmoid(x)) = -softplus(-x)
      int neg = make1(r, OP_NEG, loc, x->in[0], NULL);
      return make1(r, OP_NEG, loc, make1(r, OP_SOFTPLUS, loc, neg, NULL), NULL);
    }
    break;
  }
  default: break;
  }
  return -1;
}

static void grow_table(Rebuild *r) {
  int cap = r->table.cap ? 2 * r->table.cap : 1024;
  free(r->table.v);
  r->table.v = xmalloc(sizeof(int) * (size_t)cap);
  r->table.cap = cap;
  for (int i = 0; i < cap; i++) r->table.v[i] = -1;
  for (int id = 0; id < r->g->nodes.n; id++) {
    const Node *n = N(r, id);
    if (op_info(n->op)->flags & OPF_LEAF) continue;
    *cse_slot(r, n->op, n->nin, n->in, &n->attr) = id;
  }
}

// Builds (op, in, attr) in the new graph, or returns an equal or simpler node.
static int make(Rebuild *r, Op op, Loc loc, int nin, const int *in, const Attr *a) {
  Attr attr = a ? *a : attr_default(op);
  // The probe runs the shape rule once so rules see the result's shape and
  // normalized attributes; it is dropped when a rule or CSE finds a node.
  int probe = g_op(r->g, op, loc, nin, in, &attr);
  BPC_ASSERT(probe >= 0);
  Node *pn = graph_node(r->g, probe);
  attr = pn->attr;
  r->g->nodes.n--;  // unlink the probe; its arena bytes stay harmless
  int id = rewrite(r, op, loc, nin, in, &attr, pn);
  if (id >= 0) return id;
  if (r->flags & SIMP_CSE) {
    if (2 * (r->g->nodes.n + 1) > r->table.cap) grow_table(r);
    int *slot = cse_slot(r, op, nin, in, &attr);
    if (*slot >= 0) return *slot;
    id = g_op(r->g, op, loc, nin, in, &attr);
    *cse_slot(r, op, nin, in, &attr) = id;
    return id;
  }
  return g_op(r->g, op, loc, nin, in, &attr);
}

// Marks every node the step's results need: loss, metrics, outputs, grads,
// state updates (and all leaves, which define the step's interface).
static bool *live_nodes_roots(const Graph *g) {
  bool *live = xcalloc((size_t)(g->nodes.n ? g->nodes.n : 1), 1);
  if (g->loss >= 0) live[g->loss] = true;
  for (int i = 0; i < g->metrics.n; i++) live[g->metrics.v[i].node] = true;
  for (int i = 0; i < g->outputs.n; i++) live[g->outputs.v[i].node] = true;
  for (int i = 0; i < g->params.n; i++) {
    live[g->params.v[i].node] = true;
    if (g->params.v[i].grad >= 0) live[g->params.v[i].grad] = true;
    if (g->params.v[i].update >= 0) live[g->params.v[i].update] = true;
  }
  for (int i = 0; i < g->states.n; i++) {
    live[g->states.v[i].node] = true;
    if (g->states.v[i].update >= 0) live[g->states.v[i].update] = true;
  }
  for (int i = 0; i < g->inputs.n; i++) live[g->inputs.v[i].node] = true;
  return live;
}

static bool *live_nodes(const Graph *g) {
  bool *live = live_nodes_roots(g);
  for (int id = g->nodes.n - 1; id >= 0; id--)
    if (live[id])
      for (int k = 0; k < graph_node(g, id)->nin; k++) live[graph_node(g, id)->in[k]] = true;
  return live;
}

// Names live in the source graph's arena, which its owner may free: copy.
static const char *keep(Graph *g, const char *s) { return s ? arena_strdup(&g->arena, s) : NULL; }

// Uses of each node: consumers, plus one for being a step result.
static int *use_counts(const Graph *g) {
  int *u = xcalloc((size_t)(g->nodes.n ? g->nodes.n : 1), sizeof(int));
  for (int id = 0; id < g->nodes.n; id++)
    for (int k = 0; k < graph_node(g, id)->nin; k++) u[graph_node(g, id)->in[k]]++;
  bool *res = live_nodes_roots(g);
  for (int id = 0; id < g->nodes.n; id++) u[id] += res[id];
  free(res);
  return u;
}

// The matmul m when n is transpose(m) swapping a rank-2 m's axes and n is
// m's only use, else -1. (Autodiff of x @ transpose(w), the tied output
// layer, gives this: the [C, V] gradient, then a transposed copy.)
static int transposed_matmul(const Graph *src, const Node *n, const int *uses) {
  if (n->op != OP_TRANSPOSE || n->attr.naxes != 2 || n->attr.axes[0] != 1 || n->attr.axes[1] != 0) return -1;
  const Node *m = graph_node(src, n->in[0]);
  if (m->op != OP_MATMUL || m->shape.rank != 2 || uses[m->id] != 1) return -1;
  return m->id;
}

// For n = a + embedding_grad(ids, gy) (either order; the embedding_grad used
// only here, no broadcast): the embedding_grad's id, else -1. A tied
// embedding's gradient: the output layer's GEMM plus the scatter, which then
// adds onto the GEMM's result instead of zeroing a V x C table and adding it.
static int embedding_grad_term(const Graph *src, const Node *n, const int *uses) {
  if (n->op != OP_ADD || n->nin != 2) return -1;
  for (int k = 0; k < 2; k++) {
    const Node *e = graph_node(src, n->in[k]), *o = graph_node(src, n->in[1 - k]);
    if (e->op == OP_EMBEDDING_GRAD && uses[e->id] == 1 && shape_eq(&e->shape, &n->shape) &&
        shape_eq(&o->shape, &n->shape) && o->dtype == n->dtype && e->dtype == n->dtype)
      return e->id;
  }
  return -1;
}

static int at(const int *map, int id) { return id < 0 ? -1 : map[id]; }

// The tables of src (dims, inputs, params, states, names, results) into g,
// node ids through map (-1: gone).
void graph_copy_tables(Graph *g, const Graph *src, const int *map) {
  for (int i = 0; i < src->dims.n; i++) VEC_PUSH(g->dims, ((GDim){keep(g, src->dims.v[i].name), src->dims.v[i].value}));
  for (int i = 0; i < src->inputs.n; i++)
    VEC_PUSH(g->inputs, ((GInput){keep(g, src->inputs.v[i].name), at(map, src->inputs.v[i].node)}));
  for (int i = 0; i < src->params.n; i++) {
    GParam p = src->params.v[i];
    p.name = keep(g, p.name);
    if (p.from) p.from = keep(g, p.from);
    if (p.lora_a) p.lora_a = keep(g, p.lora_a), p.lora_b = keep(g, p.lora_b);
    p.node = at(map, p.node);
    p.grad = at(map, p.grad);
    p.update = at(map, p.update);
    VEC_PUSH(g->params, p);
  }
  for (int i = 0; i < src->states.n; i++) {
    GState s = src->states.v[i];
    s.name = keep(g, s.name);
    s.node = at(map, s.node);
    s.update = at(map, s.update);
    VEC_PUSH(g->states, s);
  }
  for (int i = 0; i < src->named.n; i++) {
    int id = at(map, src->named.v[i].node);
    if (id >= 0) VEC_PUSH(g->named, ((GNamed){keep(g, src->named.v[i].name), id}));
  }
  for (int i = 0; i < src->scalars.n; i++)
    VEC_PUSH(g->scalars, ((GInput){keep(g, src->scalars.v[i].name), at(map, src->scalars.v[i].node)}));
  for (int i = 0; i < src->metrics.n; i++)
    VEC_PUSH(g->metrics, ((GNamed){keep(g, src->metrics.v[i].name), at(map, src->metrics.v[i].node)}));
  for (int i = 0; i < src->outputs.n; i++)
    VEC_PUSH(g->outputs, ((GNamed){keep(g, src->outputs.v[i].name), at(map, src->outputs.v[i].node)}));
  g->loss = at(map, src->loss);
}

static Graph *rebuild(const Graph *src, unsigned flags, const bool *live) {
  Rebuild r = {.src = src, .flags = flags};
  int *uses = (flags & SIMP_ALGEBRA) ? use_counts(src) : NULL;
  r.g = graph_new(src->diag, src->model, src->fdtype);
  r.map = xmalloc(sizeof(int) * (size_t)(src->nodes.n ? src->nodes.n : 1));
  for (int id = 0; id < src->nodes.n; id++) {
    const Node *n = graph_node(src, id);
    r.map[id] = -1;
    if (live && !live[id]) continue;
    if (op_info(n->op)->flags & OPF_LEAF) {
      r.map[id] = g_leaf(r.g, n->op, keep(r.g, n->name), n->dtype, &n->shape, n->loc);
      continue;
    }
    if ((flags & SIMP_EVAL) && n->op == OP_DROPOUT) {  // eval mode: the identity
      r.map[id] = r.map[n->in[0]];
      continue;
    }
    int in[64];
    BPC_ASSERT(n->nin <= 64);
    for (int k = 0; k < n->nin; k++) in[k] = r.map[n->in[k]], BPC_ASSERT(in[k] >= 0);
    int before = r.g->nodes.n;
    r.g->phase = n->phase;
    int mt = uses ? transposed_matmul(src, n, uses) : -1, eg = uses ? embedding_grad_term(src, n, uses) : -1;
    if (eg >= 0) {  // base + scatter, one kernel onto the base
      const Node *e = graph_node(src, eg);
      int ops[3] = {r.map[e->in[0]], r.map[e->in[1]], r.map[n->in[0] == eg ? n->in[1] : n->in[0]]};
      r.map[id] = make(&r, OP_EMBEDDING_GRAD_ADD, n->loc, 3, ops, &e->attr);
    } else if (mt >= 0) {  // (a @ b)^T = b^T @ a^T: one GEMM writing the transposed layout, no copy
      const Node *m = graph_node(src, mt);
      Attr ma = m->attr;
      ma.b[0] = !m->attr.b[1], ma.b[1] = !m->attr.b[0];
      int ops[2] = {r.map[m->in[1]], r.map[m->in[0]]};
      r.map[id] = make(&r, OP_MATMUL, n->loc, 2, ops, &ma);
    } else {
      r.map[id] = make(&r, n->op, n->loc, n->nin, in, &n->attr);
    }
    Node *made = graph_node(r.g, r.map[id]);
    if (n->name && !made->name && r.g->nodes.n > before) made->name = keep(r.g, n->name);
  }
  Graph *g = r.g;
  graph_copy_tables(g, src, r.map);
  free(uses);
  free(r.map);
  free(r.table.v);
  return g;
}

Graph *simplify(const Graph *g, unsigned flags) {
  Graph *cur = NULL;
  const Graph *in = g;
  unsigned rules = flags & (SIMP_CSE | SIMP_FOLD | SIMP_ALGEBRA | SIMP_LOWER | SIMP_EVAL);
  for (int round = 0; round < 8 && rules; round++) {  // until nothing changes
    Graph *next = rebuild(in, rules, NULL);
    bool same = next->nodes.n == in->nodes.n;
    graph_free(cur);
    cur = next;
    in = cur;
    if (same) break;
  }
  if (flags & SIMP_DCE) {
    bool *live = live_nodes(in);
    Graph *next = rebuild(in, 0, live);
    free(live);
    graph_free(cur);
    cur = next;
  }
  return cur ? cur : rebuild(g, 0, NULL);
}
