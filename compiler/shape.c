// shape.c — the shape and dtype rule of every op (named in ops.h). A rule
// reads its operands' shapes and dtypes and its attributes, reports any
// mismatch at the node's source location, normalizes attributes (negative
// axes, default permutations, pool strides), and sets n->shape and n->dtype.
//
// Dtypes: an op on floats computes in the widest float dtype among its
// operands (f64 beats f32; i32 operands promote, as in PyTorch); an op with
// only i32 operands that keeps integers (add, max, ...) stays i32.
#include <stdlib.h>
#include <string.h>

#include "bpcc.h"

#define IN(k) graph_node(g, n->in[k])
#define FAIL(...) return (diag_error(g->diag, n->loc, __VA_ARGS__), false)

static const char *sh(const Shape *s) {  // rotating buffers for messages
  static char buf[4][128];
  static int k;
  k = (k + 1) % 4;
  return shape_str(s, buf[k], sizeof buf[k]);
}

bool axis_norm(int64_t axis, int rank, int *out) {
  if (axis < -rank || axis >= rank) return false;
  *out = (int)(axis < 0 ? axis + rank : axis);
  return true;
}

// The float dtype an op computes in: widest float operand, else the graph's.
static DType float_of(Graph *g, Node *n) {
  DType t = g->fdtype;
  bool any = false;
  for (int i = 0; i < n->nin; i++) {
    DType d = IN(i)->dtype;
    if (d == DT_F64) return DT_F64;
    if (d == DT_F32) any = true;
  }
  return any ? DT_F32 : t;
}

// Broadcasts every operand into n->shape; false after reporting.
static bool broadcast_all(Graph *g, Node *n) {
  Shape s = {0};
  for (int i = 0; i < n->nin; i++) {
    Shape r;
    if (!shape_broadcast(&s, &IN(i)->shape, &r))
      FAIL("%s: cannot broadcast shapes %s and %s", op_name(n->op), sh(&s), sh(&IN(i)->shape));
    s = r;
  }
  n->shape = s;
  return true;
}

static bool need_int(Graph *g, Node *n, int k, const char *what) {
  if (IN(k)->dtype != DT_I32) FAIL("%s: %s must be i32, got %s", op_name(n->op), what, dtype_name(IN(k)->dtype));
  return true;
}

static bool need_rank(Graph *g, Node *n, int k, int lo, int hi, const char *what) {
  int r = IN(k)->shape.rank;
  if (r < lo || r > hi) {
    if (lo == hi) FAIL("%s: %s must have rank %d, got shape %s", op_name(n->op), what, lo, sh(&IN(k)->shape));
    FAIL("%s: %s must have rank >= %d, got shape %s", op_name(n->op), what, lo, sh(&IN(k)->shape));
  }
  return true;
}

static bool norm_axis_attr(Graph *g, Node *n, int64_t *axis, int rank) {
  int a;
  if (!axis_norm(*axis, rank, &a))
    FAIL("%s: axis %lld is out of range for rank %d", op_name(n->op), (long long)*axis, rank);
  *axis = a;
  return true;
}

bool shape_leaf(Graph *g, Node *n) { return true; }

bool shape_const(Graph *g, Node *n) {
  n->shape = (Shape){0};
  n->dtype = g->fdtype;
  return true;
}

bool shape_cast(Graph *g, Node *n) {
  n->shape = IN(0)->shape;
  n->dtype = (DType)n->attr.i[0];
  return true;
}

bool shape_same(Graph *g, Node *n) {
  n->shape = IN(0)->shape;
  n->dtype = IN(0)->dtype;
  return true;
}

// add sub mul maximum minimum neg abs square: i32 stays i32.
bool shape_arith(Graph *g, Node *n) {
  if (!broadcast_all(g, n)) return false;
  bool all_int = true;
  for (int i = 0; i < n->nin; i++) all_int &= IN(i)->dtype == DT_I32;
  n->dtype = all_int ? DT_I32 : float_of(g, n);
  return true;
}

bool shape_float(Graph *g, Node *n) {
  if (!broadcast_all(g, n)) return false;
  n->dtype = float_of(g, n);
  return true;
}

bool shape_compare(Graph *g, Node *n) { return shape_float(g, n); }

bool shape_hardtanh(Graph *g, Node *n) {
  if (n->attr.f[0] > n->attr.f[1])
    FAIL("hardtanh: min_val (%g) is greater than max_val (%g)", n->attr.f[0], n->attr.f[1]);
  return shape_float(g, n);
}

bool shape_where(Graph *g, Node *n) {
  if (!broadcast_all(g, n)) return false;
  bool all_int = IN(1)->dtype == DT_I32 && IN(2)->dtype == DT_I32;
  n->dtype = all_int ? DT_I32 : float_of(g, n);
  if (IN(0)->dtype == DT_F64 && n->dtype == DT_F32) n->dtype = DT_F32;
  return true;
}

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

bool shape_reduce(Graph *g, Node *n) {
  const Shape *x = &IN(0)->shape;
  Attr *a = &n->attr;
  if (a->naxes < 0) {
    a->naxes = x->rank;
    for (int i = 0; i < x->rank; i++) a->axes[i] = i;
  }
  bool seen[BPC_MAX_RANK] = {0};
  for (int i = 0; i < a->naxes; i++) {
    int ax;
    if (!axis_norm(a->axes[i], x->rank, &ax))
      FAIL("%s: axis %d is out of range for shape %s", op_name(n->op), a->axes[i], sh(x));
    if (seen[ax]) FAIL("%s: axis %d is repeated", op_name(n->op), a->axes[i]);
    seen[ax] = true;
    a->axes[i] = ax;
  }
  qsort(a->axes, (size_t)a->naxes, sizeof(int), cmp_int);
  Shape r = {0};
  for (int i = 0; i < x->rank; i++) {
    if (!seen[i])
      r.d[r.rank++] = x->d[i];
    else if (a->b[0])
      r.d[r.rank++] = 1;
  }
  n->shape = r;
  bool keeps_int = n->op == OP_SUM || n->op == OP_MAX || n->op == OP_MIN;
  n->dtype = keeps_int && IN(0)->dtype == DT_I32 ? DT_I32 : float_of(g, n);
  return true;
}

bool shape_reshape(Graph *g, Node *n) {
  Shape t = n->attr.shape;
  int infer = -1;
  int64_t known = 1, total = shape_numel(&IN(0)->shape);
  for (int i = 0; i < t.rank; i++) {
    if (t.d[i] == -1) {
      if (infer >= 0) FAIL("reshape: more than one -1 in %s", sh(&t));
      infer = i;
    } else if (t.d[i] < 1) {
      FAIL("reshape: dim %lld in %s must be >= 1 (or a single -1)", (long long)t.d[i], sh(&t));
    } else {
      if (t.d[i] > BPC_MAX_ELEMS / known) FAIL("reshape: %s has more than 2^40 elements", sh(&t));
      known *= t.d[i];
    }
  }
  if (infer >= 0) {
    if (total % known) FAIL("reshape: cannot reshape %s into %s", sh(&IN(0)->shape), sh(&t));
    t.d[infer] = total / known;
  }
  if (shape_numel(&t) != total)
    FAIL("reshape: cannot reshape %s (%lld elements) into %s", sh(&IN(0)->shape), (long long)total, sh(&t));
  n->attr.shape = t;
  n->shape = t;
  n->dtype = IN(0)->dtype;
  return true;
}

bool shape_transpose(Graph *g, Node *n) {
  const Shape *x = &IN(0)->shape;
  Attr *a = &n->attr;
  if (a->naxes < 0) {
    if (x->rank < 2) FAIL("transpose: needs rank >= 2 without a permutation, got shape %s", sh(x));
    a->naxes = x->rank;
    for (int i = 0; i < x->rank; i++) a->axes[i] = i;
    a->axes[x->rank - 2] = x->rank - 1;
    a->axes[x->rank - 1] = x->rank - 2;
  }
  if (a->naxes != x->rank) FAIL("transpose: permutation has %d axes, shape %s has %d", a->naxes, sh(x), x->rank);
  bool seen[BPC_MAX_RANK] = {0};
  Shape r = {.rank = x->rank};
  for (int i = 0; i < a->naxes; i++) {
    int ax;
    if (!axis_norm(a->axes[i], x->rank, &ax) || seen[ax])
      FAIL("transpose: the list is not a permutation of the %d axes", x->rank);
    seen[ax] = true;
    a->axes[i] = ax;
    r.d[i] = x->d[ax];
  }
  n->shape = r;
  n->dtype = IN(0)->dtype;
  return true;
}

bool shape_broadcast_to(Graph *g, Node *n) {
  Shape r;
  const Shape *t = &n->attr.shape;
  for (int i = 0; i < t->rank; i++)
    if (t->d[i] < 1) FAIL("broadcast_to: dims must be >= 1, got %s", sh(t));
  if (!shape_broadcast(&IN(0)->shape, t, &r) || !shape_eq(&r, t))
    FAIL("broadcast_to: cannot broadcast %s to %s", sh(&IN(0)->shape), sh(t));
  n->shape = r;
  n->dtype = IN(0)->dtype;
  return true;
}

bool shape_concat(Graph *g, Node *n) {
  if (n->nin < 1) FAIL("concat: needs at least one tensor");
  Shape r = IN(0)->shape;
  if (r.rank < 1) FAIL("concat: cannot concatenate scalars");
  if (!norm_axis_attr(g, n, &n->attr.i[0], r.rank)) return false;
  int ax = (int)n->attr.i[0];
  bool all_int = true;
  for (int k = 0; k < n->nin; k++) all_int &= IN(k)->dtype == DT_I32;
  for (int k = 1; k < n->nin; k++) {
    const Shape *s = &IN(k)->shape;
    bool ok = s->rank == r.rank;
    for (int i = 0; ok && i < r.rank; i++) ok = i == ax || s->d[i] == r.d[i];
    if (!ok) FAIL("concat: shape %s does not match %s outside axis %d", sh(s), sh(&IN(0)->shape), ax);
    r.d[ax] += s->d[ax];
  }
  n->shape = r;
  n->dtype = all_int ? DT_I32 : float_of(g, n);
  return true;
}

bool shape_slice(Graph *g, Node *n) {
  Shape r = IN(0)->shape;
  if (r.rank < 1) FAIL("slice: cannot slice a scalar");
  if (!norm_axis_attr(g, n, &n->attr.i[2], r.rank)) return false;
  int64_t dim = r.d[n->attr.i[2]];
  int64_t lo = n->attr.i[0], hi = n->attr.i[1];
  if (lo < 0) lo += dim;  // Python's rules: negative counts from the end, then clamp
  if (hi < 0) hi += dim;
  lo = lo < 0 ? 0 : lo > dim ? dim : lo;
  hi = hi < 0 ? 0 : hi > dim ? dim : hi;
  if (lo >= hi)
    FAIL("slice: [%lld:%lld] of an axis of size %lld is empty", (long long)n->attr.i[0], (long long)n->attr.i[1],
         (long long)dim);
  n->attr.i[0] = lo;
  n->attr.i[1] = hi;
  r.d[n->attr.i[2]] = hi - lo;
  n->shape = r;
  n->dtype = IN(0)->dtype;
  return true;
}

// Batch dims of a [..., M, K] @ b [..., K, N] broadcast; result [..., M, N].
static bool matmul_shape(Graph *g, Node *n, const Shape *a, const Shape *b, Shape *out) {
  if (a->rank < 2 || b->rank < 2) FAIL("matmul: operands need rank >= 2, got %s @ %s", sh(a), sh(b));
  if (a->d[a->rank - 1] != b->d[b->rank - 2]) FAIL("matmul: inner dims differ: %s @ %s", sh(a), sh(b));
  Shape ba = {.rank = a->rank - 2}, bb = {.rank = b->rank - 2}, r;
  memcpy(ba.d, a->d, sizeof(int64_t) * (size_t)ba.rank);
  memcpy(bb.d, b->d, sizeof(int64_t) * (size_t)bb.rank);
  if (!shape_broadcast(&ba, &bb, &r)) FAIL("matmul: batch dims of %s and %s do not broadcast", sh(a), sh(b));
  r.d[r.rank++] = a->d[a->rank - 2];
  r.d[r.rank++] = b->d[b->rank - 1];
  *out = r;
  return true;
}

// transpose_a / transpose_b (b0, b1) read an operand with its last two axes
// swapped: how simplify folds a transpose into the matmul's layout.
static Shape swap_last2(const Shape *s, bool swap) {
  Shape r = *s;
  if (swap && r.rank >= 2) {
    r.d[r.rank - 2] = s->d[s->rank - 1];
    r.d[r.rank - 1] = s->d[s->rank - 2];
  }
  return r;
}

bool shape_matmul(Graph *g, Node *n) {
  Shape a = swap_last2(&IN(0)->shape, n->attr.b[0]), b = swap_last2(&IN(1)->shape, n->attr.b[1]);
  if (!matmul_shape(g, n, &a, &b, &n->shape)) return false;
  n->dtype = float_of(g, n);
  return true;
}

bool shape_linear(Graph *g, Node *n) {
  Shape m, r;
  if (!matmul_shape(g, n, &IN(0)->shape, &IN(1)->shape, &m)) return false;
  if (!shape_broadcast(&m, &IN(2)->shape, &r) || !shape_eq(&r, &m))
    FAIL("linear: bias %s does not broadcast to %s", sh(&IN(2)->shape), sh(&m));
  n->shape = m;
  n->dtype = float_of(g, n);
  return true;
}

bool shape_embedding(Graph *g, Node *n) {
  if (!need_int(g, n, 0, "ids") || !need_rank(g, n, 1, 2, 2, "table")) return false;
  const Shape *ids = &IN(0)->shape;
  if (ids->rank + 1 > BPC_MAX_RANK) FAIL("embedding: ids have too many dims");
  n->shape = *ids;
  n->shape.d[n->shape.rank++] = IN(1)->shape.d[1];
  n->dtype = IN(1)->dtype == DT_I32 ? g->fdtype : IN(1)->dtype;
  return true;
}

bool shape_one_hot(Graph *g, Node *n) {
  if (!need_int(g, n, 0, "ids")) return false;
  if (n->attr.i[0] < 1) FAIL("one_hot: n must be >= 1, got %lld", (long long)n->attr.i[0]);
  if (IN(0)->shape.rank + 1 > BPC_MAX_RANK) FAIL("one_hot: ids have too many dims");
  n->shape = IN(0)->shape;
  n->shape.d[n->shape.rank++] = n->attr.i[0];
  n->dtype = g->fdtype;
  return true;
}

bool shape_arange(Graph *g, Node *n) {
  if (n->attr.i[0] < 1) FAIL("arange: n must be >= 1, got %lld", (long long)n->attr.i[0]);
  n->shape = (Shape){.rank = 1, .d = {n->attr.i[0]}};
  n->dtype = DT_I32;
  return true;
}

bool shape_argmax(Graph *g, Node *n) {
  if (!need_rank(g, n, 0, 1, BPC_MAX_RANK, "x")) return false;
  const Shape *x = &IN(0)->shape;
  if (!norm_axis_attr(g, n, &n->attr.i[0], x->rank)) return false;
  Shape r = {0};
  for (int i = 0; i < x->rank; i++)
    if (i != n->attr.i[0]) r.d[r.rank++] = x->d[i];
  n->shape = r;
  n->dtype = DT_I32;
  return true;
}

// gamma/beta of a norm over the last axis (size C) must broadcast to [C].
static bool channel_param(Graph *g, Node *n, int k, int64_t c, const char *what) {
  const Shape *s = &IN(k)->shape;
  Shape want = {.rank = 1, .d = {c}}, r;
  if (!shape_broadcast(s, &want, &r) || !shape_eq(&r, &want))
    FAIL("%s: %s of shape %s does not broadcast to [%lld]", op_name(n->op), what, sh(s), (long long)c);
  return true;
}

bool shape_layer_norm(Graph *g, Node *n) {
  if (!need_rank(g, n, 0, 1, BPC_MAX_RANK, "x")) return false;
  int64_t c = IN(0)->shape.d[IN(0)->shape.rank - 1];
  if (!channel_param(g, n, 1, c, "gamma") || !channel_param(g, n, 2, c, "beta")) return false;
  if (n->attr.f[0] < 0) FAIL("layer_norm: eps must be >= 0");
  n->shape = IN(0)->shape;
  n->dtype = float_of(g, n);
  return true;
}

bool shape_rms_norm(Graph *g, Node *n) {
  if (!need_rank(g, n, 0, 1, BPC_MAX_RANK, "x")) return false;
  int64_t c = IN(0)->shape.d[IN(0)->shape.rank - 1];
  if (!channel_param(g, n, 1, c, "gamma")) return false;
  if (n->attr.f[0] < 0) FAIL("rms_norm: eps must be >= 0");
  n->shape = IN(0)->shape;
  n->dtype = float_of(g, n);
  return true;
}

bool shape_batch_norm(Graph *g, Node *n) {
  BPC_ASSERT(n->nin == 5);  // expand adds the running mean and variance
  if (!need_rank(g, n, 0, 2, BPC_MAX_RANK, "x")) return false;
  int64_t c = IN(0)->shape.d[IN(0)->shape.rank - 1];
  if (!channel_param(g, n, 1, c, "gamma") || !channel_param(g, n, 2, c, "beta")) return false;
  if (n->attr.f[0] < 0) FAIL("batch_norm: eps must be >= 0");
  if (n->attr.f[1] < 0 || n->attr.f[1] > 1) FAIL("batch_norm: momentum must be in [0, 1]");
  n->shape = IN(0)->shape;
  n->dtype = float_of(g, n);
  return true;
}

bool shape_softmax(Graph *g, Node *n) {
  if (!need_rank(g, n, 0, 1, BPC_MAX_RANK, "x")) return false;
  if (!norm_axis_attr(g, n, &n->attr.i[0], IN(0)->shape.rank)) return false;
  n->shape = IN(0)->shape;
  n->dtype = float_of(g, n);
  return true;
}

// attention's optional key-padding mask: [B, Tk], the same for every head
// and query (SPEC 6.1); i32 masks are promoted to the float dtype (ir.c).
static bool mask_ok(Graph *g, Node *n, int64_t B, int64_t Tk) {
  int m = node_operand(n, "mask");
  if (m < 0) return true;
  const Shape *s = &IN(m)->shape;
  if (s->rank != 2 || s->d[0] != B || s->d[1] != Tk)
    FAIL("attention: mask %s must be [B, Tk] = [%lld, %lld] (1 for a key that is a token, 0 for padding)", sh(s),
         (long long)B, (long long)Tk);
  return true;
}

bool shape_attention(Graph *g, Node *n) {
  for (int k = 0; k < 3; k++)
    if (!need_rank(g, n, k, 3, 3, k == 0 ? "q" : k == 1 ? "k" : "v")) return false;
  const Shape *q = &IN(0)->shape, *k = &IN(1)->shape, *v = &IN(2)->shape;
  if (q->d[0] != k->d[0] || q->d[0] != v->d[0] || q->d[2] != k->d[2] || !shape_eq(k, v))
    FAIL("attention: q %s, k %s, v %s must be [B, T, C] with k and v alike", sh(q), sh(k), sh(v));
  int64_t h = n->attr.i[0];
  if (h < 1 || q->d[2] % h)
    FAIL("attention: heads=%lld must divide the channel count %lld", (long long)h, (long long)q->d[2]);
  if (n->attr.b[0] && q->d[1] != k->d[1])
    FAIL("attention: causal attention needs as many queries as keys (%lld vs %lld)", (long long)q->d[1],
         (long long)k->d[1]);
  if (!mask_ok(g, n, q->d[0], k->d[1])) return false;
  n->shape = *q;
  n->dtype = float_of(g, n);
  return true;
}

// attention_qkv(x): attention over q, k, v packed along x's last axis
// ([B, T, 3C], as a fused projection makes them): out [B, T, C].
bool shape_attention_qkv(Graph *g, Node *n) {
  if (!need_rank(g, n, 0, 3, 3, "qkv")) return false;
  Shape s = IN(0)->shape;
  int64_t h = n->attr.i[0];
  if (s.d[2] % 3 || h < 1 || (s.d[2] / 3) % h)
    FAIL("attention_qkv: %s is not [B, T, 3C] with heads=%lld dividing C", sh(&s), (long long)h);
  if (!mask_ok(g, n, s.d[0], s.d[1])) return false;
  s.d[2] /= 3;
  n->shape = s;
  n->dtype = float_of(g, n);
  return true;
}

// attention_decode(q, k, v, kc, vc, pos): q, k, v one row [1, 1, C] (the new
// position), kc and vc the cache [1, T, C], pos an i32 [1].
bool shape_attention_decode(Graph *g, Node *n) {
  const Shape *q = &IN(0)->shape, *kc = &IN(3)->shape;
  bool ok = q->rank == 3 && q->d[0] == 1 && q->d[1] == 1 && kc->rank == 3 && kc->d[0] == 1 && kc->d[2] == q->d[2];
  for (int k = 1; k < 5; k++) ok &= shape_eq(&IN(k)->shape, k < 3 ? q : kc);
  if (!ok || IN(5)->dtype != DT_I32 || shape_numel(&IN(5)->shape) != 1 || n->attr.i[0] < 1 || q->d[2] % n->attr.i[0])
    FAIL("attention_decode: q %s and the cache %s are not one row and [1, T, C]", sh(q), sh(kc));
  n->shape = *q;
  n->dtype = float_of(g, n);
  return true;
}

bool shape_attention_qkv_grad(Graph *g, Node *n) {
  n->shape = IN(0)->shape;
  n->dtype = float_of(g, n);
  return true;
}

bool shape_causal_mask(Graph *g, Node *n) {
  if (!need_rank(g, n, 0, 2, BPC_MAX_RANK, "scores")) return false;
  n->shape = IN(0)->shape;
  n->dtype = float_of(g, n);
  return true;
}

// floor((size + 2*pad - k) / stride) + 1, or an error when the window does not fit.
static bool window_out(Graph *g, Node *n, int64_t size, int64_t k, int64_t stride, int64_t pad, int64_t *out) {
  if (size + 2 * pad < k)
    FAIL("%s: window %lld does not fit input size %lld (padding %lld)", op_name(n->op), (long long)k, (long long)size,
         (long long)pad);
  *out = (size + 2 * pad - k) / stride + 1;
  return true;
}

bool shape_conv2d(Graph *g, Node *n) {
  if (!need_rank(g, n, 0, 4, 4, "x (NHWC)") || !need_rank(g, n, 1, 4, 4, "w [KH, KW, Cin, Cout]")) return false;
  const Shape *x = &IN(0)->shape, *w = &IN(1)->shape;
  if (x->d[3] != w->d[2])
    FAIL("conv2d: x has %lld channels but w %s expects %lld", (long long)x->d[3], sh(w), (long long)w->d[2]);
  int64_t s = n->attr.i[0], p = n->attr.i[1];
  if (s < 1) FAIL("conv2d: stride must be >= 1, got %lld", (long long)s);
  if (p < 0) FAIL("conv2d: padding must be >= 0, got %lld", (long long)p);
  Shape r = {.rank = 4, .d = {x->d[0], 0, 0, w->d[3]}};
  if (!window_out(g, n, x->d[1], w->d[0], s, p, &r.d[1]) || !window_out(g, n, x->d[2], w->d[1], s, p, &r.d[2]))
    return false;
  n->shape = r;
  n->dtype = float_of(g, n);
  return true;
}

bool shape_pool2d(Graph *g, Node *n) {
  if (!need_rank(g, n, 0, 4, 4, "x (NHWC)")) return false;
  const Shape *x = &IN(0)->shape;
  int64_t k = n->attr.i[0];
  if (k < 1) FAIL("%s: size must be >= 1, got %lld", op_name(n->op), (long long)k);
  if (n->attr.i[1] == 0) n->attr.i[1] = k;
  int64_t s = n->attr.i[1];
  if (s < 1) FAIL("%s: stride must be >= 1, got %lld", op_name(n->op), (long long)s);
  Shape r = {.rank = 4, .d = {x->d[0], 0, 0, x->d[3]}};
  if (!window_out(g, n, x->d[1], k, s, 0, &r.d[1]) || !window_out(g, n, x->d[2], k, s, 0, &r.d[2])) return false;
  n->shape = r;
  n->dtype = float_of(g, n);
  return true;
}

bool shape_dropout(Graph *g, Node *n) {
  double p = n->attr.f[0];
  if (!(p >= 0 && p <= 1)) FAIL("dropout: p must be in [0, 1], got %g", p);
  n->shape = IN(0)->shape;
  n->dtype = float_of(g, n);
  return true;
}

// logits [..., K] with labels [...] (i32): cross_entropy and accuracy.
static bool class_labels(Graph *g, Node *n) {
  if (!need_rank(g, n, 0, 1, BPC_MAX_RANK, "logits") || !need_int(g, n, 1, "labels")) return false;
  const Shape *l = &IN(0)->shape, *y = &IN(1)->shape;
  Shape want = *l;
  want.rank--;
  if (!shape_eq(&want, y))
    FAIL("%s: labels %s must have the shape of logits %s without the last axis", op_name(n->op), sh(y), sh(l));
  n->shape = (Shape){0};
  n->dtype = IN(0)->dtype == DT_I32 ? g->fdtype : IN(0)->dtype;
  return true;
}

bool shape_cross_entropy(Graph *g, Node *n) { return class_labels(g, n); }
bool shape_accuracy(Graph *g, Node *n) { return class_labels(g, n); }

bool shape_bce(Graph *g, Node *n) {
  Shape r;
  if (!shape_broadcast(&IN(0)->shape, &IN(1)->shape, &r) || !shape_eq(&r, &IN(0)->shape))
    FAIL("binary_cross_entropy: targets %s do not broadcast to logits %s", sh(&IN(1)->shape), sh(&IN(0)->shape));
  n->shape = (Shape){0};
  n->dtype = float_of(g, n);
  return true;
}

bool shape_mse(Graph *g, Node *n) {
  if (!broadcast_all(g, n)) return false;
  n->shape = (Shape){0};
  n->dtype = float_of(g, n);
  return true;
}

bool shape_fill(Graph *g, Node *n) {
  const Shape *t = &n->attr.shape;
  for (int i = 0; i < t->rank; i++)
    if (t->d[i] < 1) FAIL("%s: dims must be >= 1, got %s", op_name(n->op), sh(t));
  n->shape = *t;
  n->dtype = g->fdtype;
  return true;
}

// ---------------------------------------------------------------- backward ops

bool shape_maxmin_grad(Graph *g, Node *n) {
  Node tmp = *n;  // normalize axes exactly as the forward reduction did
  tmp.attr.b[0] = true;
  if (!shape_reduce(g, &tmp)) return false;
  n->attr.naxes = tmp.attr.naxes;
  memcpy(n->attr.axes, tmp.attr.axes, sizeof n->attr.axes);
  n->shape = IN(0)->shape;
  n->dtype = float_of(g, n);
  return true;
}

// sum_squares(x): the sum of x^2 over every element, a scalar (clipping's norm).
bool shape_sum_squares(Graph *g, Node *n) {
  n->shape = (Shape){0};
  n->dtype = float_of(g, n);
  return true;
}

bool shape_slice_grad(Graph *g, Node *n) {
  n->shape = n->attr.shape;
  n->dtype = IN(0)->dtype;
  return true;
}

bool shape_embedding_grad(Graph *g, Node *n) {
  const Shape *gy = &IN(1)->shape;
  n->shape = (Shape){.rank = 2, .d = {n->attr.i[0], gy->d[gy->rank - 1]}};
  n->dtype = IN(1)->dtype;
  return true;
}

// base + embedding_grad(ids, gy): a tied embedding's two gradient terms.
bool shape_embedding_grad_add(Graph *g, Node *n) {
  n->shape = IN(2)->shape;
  n->dtype = IN(1)->dtype;
  return true;
}

bool shape_norm_dx(Graph *g, Node *n) {
  n->shape = IN(0)->shape;
  n->dtype = float_of(g, n);
  return true;
}

bool shape_attention_grad(Graph *g, Node *n) {
  if (n->attr.i[1] == 3)  // dq, dk, dv flattened one after the other
    n->shape = (Shape){.rank = 1, .d = {attention_grad_offset(&IN(0)->shape, &IN(1)->shape, 3)}};
  else
    n->shape = IN(n->attr.i[1])->shape;
  n->dtype = float_of(g, n);
  return true;
}

bool shape_conv2d_dx(Graph *g, Node *n) {
  n->shape = n->attr.shape;
  n->dtype = float_of(g, n);
  return true;
}

bool shape_conv2d_dw(Graph *g, Node *n) { return shape_conv2d_dx(g, n); }

bool shape_pool2d_grad(Graph *g, Node *n) {
  if (n->attr.i[1] == 0) n->attr.i[1] = n->attr.i[0];
  n->shape = IN(0)->shape;
  n->dtype = float_of(g, n);
  return true;
}

// Built by lce.c from a checked cross_entropy of a matmul, so the shapes
// agree by construction: a scalar loss, or with gy the flattened gradients.
bool shape_linear_cross_entropy(Graph *g, Node *n) {
  n->shape = n->nin > 3 ? (Shape){.rank = 1, .d = {lce_offset(&IN(0)->shape, &IN(1)->shape, 3)}} : (Shape){0};
  n->dtype = float_of(g, n);
  return true;
}

bool shape_cross_entropy_grad(Graph *g, Node *n) {
  n->shape = IN(0)->shape;
  n->dtype = IN(0)->dtype == DT_I32 ? g->fdtype : IN(0)->dtype;
  return true;
}
