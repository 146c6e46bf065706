// autodiff.c — reverse-mode differentiation of the forward graph into one
// joint forward+backward graph. Takes a shape-checked Graph with a scalar
// float loss; guarantees every trainable param gets a gradient node of its
// own shape and dtype (zeros when the loss does not depend on it). Only the
// nodes on a path from a trainable param to the loss are differentiated.
// Cotangents are summed at fan-out and summed down from broadcast shapes here,
// once, so the per-op rules (grad.c) never deal with either.
#include <stdlib.h>
#include <string.h>

#include "bpcc.h"

int ad_op(AD *ad, Op op, int nin, const int *in, const Attr *attr) {
  int id = g_op(ad->g, op, ad->loc, nin, in, attr);
  if (id < 0)
    bpc_bug(__FILE__, __LINE__, "gradient rule of '%s' built an ill-shaped '%s'", ad->cur ? op_name(ad->cur->op) : "?",
            op_name(op));
  return id;
}

int ad_un(AD *ad, Op op, int a) { return ad_op(ad, op, 1, &a, NULL); }

int ad_bin(AD *ad, Op op, int a, int b) {
  int in[2] = {a, b};
  return ad_op(ad, op, 2, in, NULL);
}

int ad_const(AD *ad, double v) { return ad_op(ad, OP_CONST, 0, NULL, &(Attr){.f = {v}, .naxes = -1}); }

int ad_sum_to(AD *ad, int x, const Shape *shape) {
  const Shape *s = &graph_node(ad->g, x)->shape;
  if (shape_eq(s, shape)) return x;
  Attr a = attr_default(OP_SUM);
  a.naxes = 0;
  int lead = s->rank - shape->rank;
  BPC_ASSERT(lead >= 0);
  for (int i = 0; i < s->rank; i++)
    if (i < lead || (shape->d[i - lead] == 1 && s->d[i] != 1)) a.axes[a.naxes++] = i;
  int r = a.naxes ? ad_op(ad, OP_SUM, 1, &x, &a) : x;
  if (shape_eq(&graph_node(ad->g, r)->shape, shape)) return r;
  Attr ra = attr_default(OP_RESHAPE);
  ra.shape = *shape;
  return ad_op(ad, OP_RESHAPE, 1, &r, &ra);
}

// active[i]: node i depends on a trainable param through differentiable ops
// and the loss depends on node i.
static bool *active_nodes(const Graph *g) {
  int n = g->nodes.n;
  bool *fwd = xcalloc((size_t)n, 1), *bwd = xcalloc((size_t)n, 1);
  for (int i = 0; i < g->params.n; i++) fwd[g->params.v[i].node] = g->params.v[i].trainable;
  for (int id = 0; id < n; id++) {
    const Node *nd = graph_node(g, id);
    if (op_info(nd->op)->flags & (OPF_NOGRAD | OPF_LEAF)) continue;
    for (int i = 0; i < nd->nin; i++) fwd[id] |= fwd[nd->in[i]];
    if (!dtype_is_float(nd->dtype)) fwd[id] = false;
  }
  bwd[g->loss] = true;
  for (int id = g->loss; id >= 0; id--) {
    if (!bwd[id]) continue;
    const Node *nd = graph_node(g, id);
    for (int i = 0; i < nd->nin; i++) bwd[nd->in[i]] = true;
  }
  for (int id = 0; id < n; id++) fwd[id] &= bwd[id];
  free(bwd);
  return fwd;
}

bool ad_backward(Graph *g) {
  if (g->loss < 0) {
    diag_error(g->diag, g->model ? g->model->loc : (Loc){0}, "the model has no `loss:` to differentiate");
    return false;
  }
  int nfwd = g->nodes.n;
  bool *active = active_nodes(g);
  int *ct = malloc(sizeof(int) * (size_t)nfwd);
  for (int i = 0; i < nfwd; i++) ct[i] = -1;
  AD ad = {.g = g, .loc = graph_node(g, g->loss)->loc};
  ct[g->loss] = ad_const(&ad, 1.0);
  for (int id = g->loss; id >= 0 && !ad.failed; id--) {
    if (!active[id] || ct[id] < 0) continue;
    const Node *n = graph_node(g, id);
    if (op_info(n->op)->flags & OPF_LEAF) continue;
    int gin[64];
    BPC_ASSERT(n->nin <= 64);
    for (int i = 0; i < n->nin; i++) gin[i] = -1;
    ad.loc = n->loc;
    ad.cur = n;
    op_info(n->op)->grad(&ad, n, ct[id], gin);
    for (int i = 0; i < n->nin && !ad.failed; i++) {
      int src = n->in[i];
      if (gin[i] < 0 || !active[src]) continue;
      int c = ad_sum_to(&ad, gin[i], &graph_node(g, src)->shape);
      ct[src] = ct[src] < 0 ? c : ad_bin(&ad, OP_ADD, ct[src], c);
    }
  }
  for (int i = 0; i < g->params.n && !ad.failed; i++) {
    GParam *p = &g->params.v[i];
    p->grad = -1;
    if (!p->trainable) continue;
    const Node *pn = graph_node(g, p->node);
    if (ct[p->node] >= 0) {
      p->grad = ct[p->node];
    } else {  // the loss does not depend on it: an explicit zero gradient
      Attr a = attr_default(OP_ZEROS);
      a.shape = pn->shape;
      ad.loc = pn->loc;
      p->grad = ad_op(&ad, OP_ZEROS, 0, NULL, &a);
    }
    if (graph_node(g, p->grad)->dtype != pn->dtype) {
      Attr a = attr_default(OP_CAST);
      a.i[0] = pn->dtype;
      p->grad = ad_op(&ad, OP_CAST, 1, &p->grad, &a);
    }
    Node *gn = graph_node(g, p->grad);
    if (!gn->name && !(op_info(gn->op)->flags & OPF_LEAF) && gn->op != OP_CONST)
      gn->name = arena_printf(&g->arena, "grad.%s", p->name);
  }
  free(ct);
  free(active);
  return !ad.failed;
}
