// lce.c — the classifier fused with its loss (issue 19.2). cross_entropy of
// a matmul whose logits nothing else reads becomes linear_cross_entropy,
// which computes the logits by row blocks (lce_block_rows) and never stores
// the [rows, V] logits. When the logits' gradient is read only by the two
// matmuls of the backward (dh = dlogits @ w, dW = dlogits^T h), one node
// computes the loss and both gradients from one pass over the logits
// (lower_loss.c's lower_lce): the logits [B, T, V] and their gradient are gone
// from the arena, and no GEMM runs twice. Under bf16 the three GEMMs take
// bf16 operands, as the matmuls they replace did.
//
// Runs in program_plan on the lowered graph, after simplify and before
// fusion and the memory plan; the interpreter keeps the unfused graph, so
// every native-vs-interpreter test also checks the fused path.
#include <stdlib.h>
#include <string.h>

#include "bpcc.h"

typedef struct Match {
  int ce, mm, grad;     // cross_entropy, its matmul logits, cross_entropy_grad (-1: none)
  int dh, dw;           // the backward's matmuls reading grad (-1: not in the graph)
  int gview;            // reshape(grad) to [rows, V] that dw reads, or -1
  bool tw;              // w is [V, C]: logits = h @ w^T
} Match;

// Each node's consumers, as a count and the first few.
#define USERS_KEPT 4
typedef struct Users {
  int n;
  int v[USERS_KEPT];
} Users;

static Users *users_of(const Graph *g) {
  Users *u = xcalloc((size_t)(g->nodes.n ? g->nodes.n : 1), sizeof(Users));
  for (int id = 0; id < g->nodes.n; id++) {
    const Node *n = graph_node(g, id);
    for (int k = 0; k < n->nin; k++) {
      Users *x = &u[n->in[k]];
      if (x->n < USERS_KEPT) x->v[x->n] = id;
      x->n++;
    }
  }
  return u;
}

// Is id one of the step's results (outputs aside: see lce_rewrite)?
static bool is_result(const Graph *g, int id) {
  if (g->loss == id) return true;
  for (int i = 0; i < g->metrics.n; i++)
    if (g->metrics.v[i].node == id) return true;
  for (int i = 0; i < g->params.n; i++)
    if (g->params.v[i].grad == id || g->params.v[i].update == id) return true;
  for (int i = 0; i < g->states.n; i++)
    if (g->states.v[i].update == id) return true;
  return false;
}

static bool is_output(const Graph *g, int id) {
  for (int i = 0; i < g->outputs.n; i++)
    if (g->outputs.v[i].node == id) return true;
  return false;
}

// x, or the reshape of x to [rows, cols] that `view` is.
static bool view_of(const Graph *g, int view, int x, int64_t rows, int64_t cols) {
  if (view == x) return graph_node(g, x)->shape.rank == 2;
  const Node *v = graph_node(g, view);
  return v->op == OP_RESHAPE && v->in[0] == x && v->shape.rank == 2 && v->shape.d[0] == rows && v->shape.d[1] == cols;
}

static bool plain_mm(const Node *m, bool ta, bool tb) {
  return m->op == OP_MATMUL && m->attr.b[0] == ta && m->attr.b[1] == tb;
}

// The consumers of the logits' gradient: dh = G @ w (w^T when not tw), and
// dW = Gv^T @ hv (tw) or hv^T @ Gv, with Gv, hv the [rows, *] views. False
// when anything else reads it.
static bool match_backward(const Graph *g, const Users *u, Match *m, int h, int w, int64_t rows, int64_t C, int64_t V) {
  const Node *G = graph_node(g, m->grad);
  if (u[m->grad].n > 2 || is_result(g, m->grad) || is_output(g, m->grad)) return false;
  for (int i = 0; i < u[m->grad].n; i++) {
    const Node *x = graph_node(g, u[m->grad].v[i]);
    if (m->dh < 0 && plain_mm(x, false, !m->tw) && x->in[0] == m->grad && x->in[1] == w &&
        shape_eq(&x->shape, &graph_node(g, h)->shape)) {
      m->dh = x->id;
      continue;
    }
    int gv = x->id;
    if (x->op == OP_RESHAPE) {
      if (u[gv].n != 1 || is_result(g, gv) || is_output(g, gv) || !view_of(g, gv, m->grad, rows, V)) return false;
      x = graph_node(g, u[gv].v[0]);
    } else {
      gv = m->grad;
      if (G->shape.rank != 2) return false;
    }
    if (m->dw >= 0 || !plain_mm(x, true, false)) return false;
    int gop = m->tw ? 0 : 1;  // tw: Gv^T @ hv; else hv^T @ Gv
    if (x->in[gop] != gv || !view_of(g, x->in[1 - gop], h, rows, C)) return false;
    m->dw = x->id;
    m->gview = gv == m->grad ? -1 : gv;
  }
  return true;
}

static bool match(const Graph *g, const Users *u, const Node *ce, bool training, Match *m) {
  *m = (Match){.ce = ce->id, .mm = ce->in[0], .grad = -1, .dh = -1, .dw = -1, .gview = -1};
  const Node *L = graph_node(g, m->mm);
  if (!plain_mm(L, false, L->attr.b[1])) return false;
  const Node *h = graph_node(g, L->in[0]), *w = graph_node(g, L->in[1]);
  if (h->shape.rank < 2 || w->shape.rank != 2 || L->shape.rank != h->shape.rank || h->id == w->id) return false;
  if (h->dtype != L->dtype || w->dtype != L->dtype || !dtype_is_float(L->dtype)) return false;
  m->tw = L->attr.b[1];
  int64_t C = h->shape.d[h->shape.rank - 1], V = L->shape.d[L->shape.rank - 1], rows = shape_numel(&h->shape) / C;
  for (int i = 0; i < h->shape.rank - 1; i++)  // no broadcast batch axes
    if (h->shape.d[i] != L->shape.d[i]) return false;
  // The train program's outputs are not read (docs/ABI.md: the step writes
  // loss, metrics and grads), so only eval, sample and predict keep them.
  if (is_result(g, m->mm) || (!training && is_output(g, m->mm)) || u[m->mm].n > 2) return false;
  for (int i = 0; i < u[m->mm].n; i++) {
    const Node *x = graph_node(g, u[m->mm].v[i]);
    if (x->id == ce->id) continue;
    if (x->op != OP_CROSS_ENTROPY_GRAD || x->in[0] != m->mm || x->in[1] != ce->in[1] || m->grad >= 0) return false;
    m->grad = x->id;
  }
  if (m->grad < 0) return true;  // the loss alone (eval, or nothing to differentiate)
  const Node *gy = graph_node(g, graph_node(g, m->grad)->in[2]);
  // The fused node takes the cross_entropy's place in the order, so its gy
  // must be known there: a constant (1 for `loss: cross_entropy(...)`).
  if (gy->op != OP_CONST || gy->shape.rank != 0) return false;
  return match_backward(g, u, m, h->id, w->id, rows, C, V);
}

// reshape(slice(f, lo, hi)) to `s`.
static int part(Graph *g, int f, int64_t lo, int64_t hi, const Shape *s, Loc loc) {
  Attr sa = attr_default(OP_SLICE);
  sa.i[0] = lo, sa.i[1] = hi, sa.i[2] = 0;
  int x = g_op(g, OP_SLICE, loc, 1, &f, &sa);
  Attr ra = attr_default(OP_RESHAPE);
  ra.shape = *s;
  return g_op(g, OP_RESHAPE, loc, 1, &x, &ra);
}

Graph *lce_rewrite(const Graph *src, bool training) {
  Users *u = users_of(src);
  struct {
    Match *v;
    int n, cap;
  } ms = {0};
  int *role = xmalloc(sizeof(int) * (size_t)(src->nodes.n ? src->nodes.n : 1));  // match index + 1, 0: none
  memset(role, 0, sizeof(int) * (size_t)(src->nodes.n ? src->nodes.n : 1));
  for (int id = 0; id < src->nodes.n; id++) {
    Match m;
    if (graph_node(src, id)->op != OP_CROSS_ENTROPY || !match(src, u, graph_node(src, id), training, &m)) continue;
    VEC_PUSH(ms, m);
    int ids[6] = {m.ce, m.mm, m.grad, m.dh, m.dw, m.gview};
    for (int k = 0; k < 6; k++)
      if (ids[k] >= 0) role[ids[k]] = ms.n;
  }
  free(u);
  if (!ms.n) {
    free(role);
    return NULL;
  }
  Graph *g = graph_new(src->diag, src->model, src->fdtype);
  int *map = xmalloc(sizeof(int) * (size_t)src->nodes.n);
  int *fused = xcalloc((size_t)ms.n, sizeof(int));
  for (int id = 0; id < src->nodes.n; id++) {
    const Node *n = graph_node(src, id);
    map[id] = -1;
    if (op_info(n->op)->flags & OPF_LEAF) {
      map[id] = g_leaf(g, n->op, arena_strdup(&g->arena, n->name), n->dtype, &n->shape, n->loc);
      continue;
    }
    g->phase = n->phase;
    const Match *m = role[id] ? &ms.v[role[id] - 1] : NULL;
    if (m && id == m->ce) {
      const Node *L = graph_node(src, m->mm);
      int in[4] = {map[L->in[0]], map[L->in[1]], map[n->in[1]], -1};
      Attr a = attr_default(OP_LINEAR_CROSS_ENTROPY);
      a.b[0] = m->tw;
      if (m->grad >= 0) in[3] = g_const(g, graph_node(src, graph_node(src, m->grad)->in[2])->attr.f[0], n->loc);
      int f = g_op(g, OP_LINEAR_CROSS_ENTROPY, n->loc, m->grad >= 0 ? 4 : 3, in, &a);
      BPC_ASSERT(f >= 0);
      fused[role[id] - 1] = f;
      const Shape *hs = &graph_node(src, L->in[0])->shape, *ws = &graph_node(src, L->in[1])->shape;
      map[id] = m->grad < 0 ? f : part(g, f, lce_offset(hs, ws, 2), lce_offset(hs, ws, 3), &n->shape, n->loc);
    } else if (m && (id == m->dh || id == m->dw)) {
      const Node *L = graph_node(src, m->mm);
      const Shape *hs = &graph_node(src, L->in[0])->shape, *ws = &graph_node(src, L->in[1])->shape;
      int p = id == m->dh ? 0 : 1;
      map[id] = part(g, fused[role[id] - 1], lce_offset(hs, ws, p), lce_offset(hs, ws, p + 1), &n->shape, n->loc);
    } else if (!m) {
      int in[64];
      BPC_ASSERT(n->nin <= 64);
      for (int k = 0; k < n->nin; k++) in[k] = map[n->in[k]], BPC_ASSERT(in[k] >= 0);
      map[id] = g_op(g, n->op, n->loc, n->nin, in, &n->attr);
      BPC_ASSERT(map[id] >= 0);
    }  // else the logits, their gradient and its view: gone
    if (map[id] >= 0 && n->name && !graph_node(g, map[id])->name)
      graph_node(g, map[id])->name = arena_strdup(&g->arena, n->name);
  }
  graph_copy_tables(g, src, map);
  int no = 0;  // a train program's output that was the logits: dropped with them
  for (int i = 0; i < g->outputs.n; i++)
    if (g->outputs.v[i].node >= 0) g->outputs.v[no++] = g->outputs.v[i];
  g->outputs.n = no;
  free(map), free(fused), free(role), free(ms.v);
  Graph *out = simplify(g, SIMP_DCE);  // the views of h the dW matmul read
  graph_free(g);
  return out;
}
