// grad.c — the gradient rule of every op (named in ops.h). A rule reads its
// forward node, the cotangent gy of its result, and emits the cotangents of
// its operands as ordinary graph nodes through ad_* builders, so rules compose
// (a backward graph can itself be differentiated where its ops have rules).
// Un-broadcasting and fan-out sums are the driver's job (autodiff.c): a rule
// may return a cotangent of the broadcast shape. Ops whose naive gradient is
// slow or unstable emit a fused backward op (layer_norm_dx, attention_grad,
// cross_entropy_grad, ...), as llm.c writes them by hand.
#include <string.h>

#include "bpcc.h"

#define X_(k) n->in[k]
#define MUL(a, b) ad_bin(ad, OP_MUL, a, b)
#define ADD(a, b) ad_bin(ad, OP_ADD, a, b)
#define SUB(a, b) ad_bin(ad, OP_SUB, a, b)
#define DIV(a, b) ad_bin(ad, OP_DIV, a, b)
#define NEG(a) ad_un(ad, OP_NEG, a)
#define C(v) ad_const(ad, v)

static const Shape *shape_of(AD *ad, int id) { return &graph_node(ad->g, id)->shape; }

void grad_none(AD *ad, const Node *n, int gy, int *gin) {}

void grad_missing(AD *ad, const Node *n, int gy, int *gin) {
  diag_error(ad->g->diag, n->loc,
             "no gradient rule for '%s': it is a fused backward op, and bpc "
             "does not differentiate it again",
             op_name(n->op));
  ad->failed = true;
}

void grad_cast(AD *ad, const Node *n, int gy, int *gin) {
  Attr a = attr_default(OP_CAST);
  a.i[0] = graph_node(ad->g, X_(0))->dtype;
  if (dtype_is_float((DType)a.i[0])) gin[0] = ad_op(ad, OP_CAST, 1, &gy, &a);
}

void grad_add(AD *ad, const Node *n, int gy, int *gin) { gin[0] = gin[1] = gy; }

void grad_sub(AD *ad, const Node *n, int gy, int *gin) {
  gin[0] = gy;
  gin[1] = NEG(gy);
}

void grad_mul(AD *ad, const Node *n, int gy, int *gin) {
  gin[0] = MUL(gy, X_(1));
  gin[1] = MUL(gy, X_(0));
}

// d(a/b) = gy/b, -gy * (a/b) / b
void grad_div(AD *ad, const Node *n, int gy, int *gin) {
  gin[0] = DIV(gy, X_(1));
  gin[1] = NEG(DIV(MUL(gy, n->id), X_(1)));
}

// Ties split the gradient evenly (SPEC 5).
static void minmax2(AD *ad, const Node *n, int gy, int *gin, Op wins) {
  int half_tie = MUL(C(0.5), ad_bin(ad, OP_EQUAL, X_(0), X_(1)));
  Op loses = wins == OP_GREATER ? OP_LESS : OP_GREATER;
  gin[0] = MUL(gy, ADD(ad_bin(ad, wins, X_(0), X_(1)), half_tie));
  gin[1] = MUL(gy, ADD(ad_bin(ad, loses, X_(0), X_(1)), half_tie));
}

void grad_maximum(AD *ad, const Node *n, int gy, int *gin) { minmax2(ad, n, gy, gin, OP_GREATER); }
void grad_minimum(AD *ad, const Node *n, int gy, int *gin) { minmax2(ad, n, gy, gin, OP_LESS); }

static int powc(AD *ad, int x, double p) {
  Attr a = attr_default(OP_POW);
  a.f[0] = p;
  return ad_op(ad, OP_POW, 1, &x, &a);
}

void grad_pow(AD *ad, const Node *n, int gy, int *gin) {
  double p = n->attr.f[0];
  gin[0] = p == 1 ? gy : MUL(gy, MUL(C(p), powc(ad, X_(0), p - 1)));
}

void grad_neg(AD *ad, const Node *n, int gy, int *gin) { gin[0] = NEG(gy); }
void grad_exp(AD *ad, const Node *n, int gy, int *gin) { gin[0] = MUL(gy, n->id); }
void grad_log(AD *ad, const Node *n, int gy, int *gin) { gin[0] = DIV(gy, X_(0)); }
void grad_sqrt(AD *ad, const Node *n, int gy, int *gin) { gin[0] = DIV(MUL(gy, C(0.5)), n->id); }

// d rsqrt(x) = -0.5 * rsqrt(x)^3
void grad_rsqrt(AD *ad, const Node *n, int gy, int *gin) { gin[0] = MUL(gy, MUL(C(-0.5), powc(ad, n->id, 3))); }

// abs'(0) = 0 (SPEC 5): sign as greater - less.
void grad_abs(AD *ad, const Node *n, int gy, int *gin) {
  int sign = SUB(ad_bin(ad, OP_GREATER, X_(0), C(0)), ad_bin(ad, OP_LESS, X_(0), C(0)));
  gin[0] = MUL(gy, sign);
}

void grad_square(AD *ad, const Node *n, int gy, int *gin) { gin[0] = MUL(gy, MUL(C(2), X_(0))); }
void grad_sin(AD *ad, const Node *n, int gy, int *gin) { gin[0] = MUL(gy, ad_un(ad, OP_COS, X_(0))); }
void grad_cos(AD *ad, const Node *n, int gy, int *gin) { gin[0] = NEG(MUL(gy, ad_un(ad, OP_SIN, X_(0)))); }
void grad_tanh(AD *ad, const Node *n, int gy, int *gin) { gin[0] = MUL(gy, SUB(C(1), MUL(n->id, n->id))); }
// erf'(x) = 2 / sqrt(pi) exp(-x^2)
void grad_erf(AD *ad, const Node *n, int gy, int *gin) {
  gin[0] = MUL(gy, MUL(C(1.1283791670955126), ad_un(ad, OP_EXP, NEG(MUL(X_(0), X_(0))))));
}
void grad_sigmoid(AD *ad, const Node *n, int gy, int *gin) { gin[0] = MUL(gy, MUL(n->id, SUB(C(1), n->id))); }

// relu'(0) = 0 (SPEC 5).
// From the output, as torch's threshold_backward: relu(x) > 0 iff x > 0, and the
// forward's pre-activation (a GEMM epilogue's input) then need not be stored.
void grad_relu(AD *ad, const Node *n, int gy, int *gin) { gin[0] = MUL(gy, ad_bin(ad, OP_GREATER, n->id, C(0))); }

void grad_leaky_relu(AD *ad, const Node *n, int gy, int *gin) {
  double alpha = n->attr.f[0];
  int slope = ADD(MUL(ad_bin(ad, OP_GREATER, X_(0), C(0)), C(1 - alpha)), C(alpha));
  gin[0] = MUL(gy, slope);
}

// As torch's hardtanh_backward: 0 where x <= min_val or x >= max_val, else
// gy (so a NaN x passes gy, and an inf gy past the bounds gives 0, not NaN).
void grad_hardtanh(AD *ad, const Node *n, int gy, int *gin) {
  int inside = MUL(ad_bin(ad, OP_GREATER, X_(0), C(n->attr.f[0])), ad_bin(ad, OP_LESS, X_(0), C(n->attr.f[1])));
  int nan = SUB(C(1), ad_bin(ad, OP_EQUAL, X_(0), X_(0)));
  int w[3] = {ADD(inside, nan), gy, C(0)};
  gin[0] = ad_op(ad, OP_WHERE, 3, w, NULL);
}

void grad_gelu(AD *ad, const Node *n, int gy, int *gin) {
  Attr a = attr_default(OP_GELU_GRAD);
  a.b[0] = n->attr.b[0];
  gin[0] = MUL(gy, ad_op(ad, OP_GELU_GRAD, 1, &X_(0), &a));
}

// silu' = s * (1 + x * (1 - s)), s = sigmoid(x)
void grad_silu(AD *ad, const Node *n, int gy, int *gin) {
  int s = ad_un(ad, OP_SIGMOID, X_(0));
  gin[0] = MUL(gy, MUL(s, ADD(C(1), MUL(X_(0), SUB(C(1), s)))));
}

void grad_softplus(AD *ad, const Node *n, int gy, int *gin) { gin[0] = MUL(gy, ad_un(ad, OP_SIGMOID, X_(0))); }

void grad_where(AD *ad, const Node *n, int gy, int *gin) {
  int z = C(0);
  int a[3] = {X_(0), gy, z}, b[3] = {X_(0), z, gy};
  gin[1] = ad_op(ad, OP_WHERE, 3, a, NULL);
  gin[2] = ad_op(ad, OP_WHERE, 3, b, NULL);
}

// ---------------------------------------------------------------- reductions

// gy of a reduction, reshaped to keepdims form so it broadcasts against x.
static int keepdims_of(AD *ad, const Node *n, int gy) {
  const Shape *x = shape_of(ad, X_(0));
  Attr a = attr_default(OP_RESHAPE);
  a.shape = *x;
  for (int i = 0; i < n->attr.naxes; i++) a.shape.d[n->attr.axes[i]] = 1;
  if (shape_eq(&a.shape, shape_of(ad, gy))) return gy;
  return ad_op(ad, OP_RESHAPE, 1, &gy, &a);
}

static int expand_to(AD *ad, int v, const Shape *s) {
  if (shape_eq(shape_of(ad, v), s)) return v;
  Attr a = attr_default(OP_BROADCAST_TO);
  a.shape = *s;
  return ad_op(ad, OP_BROADCAST_TO, 1, &v, &a);
}

static double reduce_count(AD *ad, const Node *n) {
  const Shape *x = shape_of(ad, X_(0));
  double c = 1;
  for (int i = 0; i < n->attr.naxes; i++) c *= (double)x->d[n->attr.axes[i]];
  return c;
}

void grad_sum(AD *ad, const Node *n, int gy, int *gin) {
  gin[0] = expand_to(ad, keepdims_of(ad, n, gy), shape_of(ad, X_(0)));
}

void grad_sum_squares(AD *ad, const Node *n, int gy, int *gin) {
  gin[0] = MUL(MUL(X_(0), C(2)), expand_to(ad, gy, shape_of(ad, X_(0))));
}

void grad_mean(AD *ad, const Node *n, int gy, int *gin) {
  int g = MUL(keepdims_of(ad, n, gy), C(1 / reduce_count(ad, n)));
  gin[0] = expand_to(ad, g, shape_of(ad, X_(0)));
}

// The first extremal element along the reduced axes takes the gradient (SPEC 5).
static void maxmin(AD *ad, const Node *n, int gy, int *gin, bool is_min) {
  Attr a = attr_default(OP_MAXMIN_GRAD);
  a.naxes = n->attr.naxes;
  memcpy(a.axes, n->attr.axes, sizeof a.axes);
  a.b[1] = is_min;
  int in[2] = {X_(0), keepdims_of(ad, n, gy)};
  gin[0] = ad_op(ad, OP_MAXMIN_GRAD, 2, in, &a);
}

void grad_max(AD *ad, const Node *n, int gy, int *gin) { maxmin(ad, n, gy, gin, false); }
void grad_min(AD *ad, const Node *n, int gy, int *gin) { maxmin(ad, n, gy, gin, true); }

static int mean_keep(AD *ad, const Node *n, Op op, int x) {
  Attr a = n->attr;
  a.b[0] = true;
  return ad_op(ad, op, 1, &x, &a);
}

// var = mean((x - m)^2): d/dx = 2 (x - m) / count
void grad_var(AD *ad, const Node *n, int gy, int *gin) {
  int centered = SUB(X_(0), mean_keep(ad, n, OP_MEAN, X_(0)));
  gin[0] = MUL(keepdims_of(ad, n, gy), MUL(centered, C(2 / reduce_count(ad, n))));
}

void grad_logsumexp(AD *ad, const Node *n, int gy, int *gin) {
  int y = keepdims_of(ad, n, n->id);
  gin[0] = MUL(keepdims_of(ad, n, gy), ad_un(ad, OP_EXP, SUB(X_(0), y)));
}

// ---------------------------------------------------------------- shape ops

void grad_reshape(AD *ad, const Node *n, int gy, int *gin) {
  Attr a = attr_default(OP_RESHAPE);
  a.shape = *shape_of(ad, X_(0));
  gin[0] = ad_op(ad, OP_RESHAPE, 1, &gy, &a);
}

void grad_transpose(AD *ad, const Node *n, int gy, int *gin) {
  Attr a = attr_default(OP_TRANSPOSE);
  a.naxes = n->attr.naxes;
  for (int i = 0; i < a.naxes; i++) a.axes[n->attr.axes[i]] = i;  // inverse permutation
  gin[0] = ad_op(ad, OP_TRANSPOSE, 1, &gy, &a);
}

void grad_broadcast_to(AD *ad, const Node *n, int gy, int *gin) { gin[0] = gy; }

static int slice_of(AD *ad, int x, int64_t lo, int64_t hi, int64_t axis) {
  Attr a = attr_default(OP_SLICE);
  a.i[0] = lo, a.i[1] = hi, a.i[2] = axis;
  return ad_op(ad, OP_SLICE, 1, &x, &a);
}

void grad_concat(AD *ad, const Node *n, int gy, int *gin) {
  int64_t axis = n->attr.i[0], off = 0;
  for (int k = 0; k < n->nin; k++) {
    int64_t len = shape_of(ad, X_(k))->d[axis];
    gin[k] = slice_of(ad, gy, off, off + len, axis);
    off += len;
  }
}

void grad_slice(AD *ad, const Node *n, int gy, int *gin) {
  Attr a = attr_default(OP_SLICE_GRAD);
  a.i[0] = n->attr.i[0], a.i[1] = n->attr.i[1], a.i[2] = n->attr.i[2];
  a.shape = *shape_of(ad, X_(0));
  gin[0] = ad_op(ad, OP_SLICE_GRAD, 1, &gy, &a);
}

// slice_grad is linear: its adjoint is the slice itself.
void grad_slice_grad(AD *ad, const Node *n, int gy, int *gin) {
  gin[0] = slice_of(ad, gy, n->attr.i[0], n->attr.i[1], n->attr.i[2]);
}

// ---------------------------------------------------------------- matmul

static int mm(AD *ad, int a, int b, bool ta, bool tb) {
  Attr at = attr_default(OP_MATMUL);
  at.b[0] = ta, at.b[1] = tb;
  int in[2] = {a, b};
  return ad_op(ad, OP_MATMUL, 2, in, &at);
}

// Y = op(a) @ op(b), op = transpose where the flag is set. With A = op(a),
// B = op(b): dA = gy B^T, dB = A^T gy, then transposed back where flagged.
void grad_matmul(AD *ad, const Node *n, int gy, int *gin) {
  int a = X_(0), b = X_(1);
  bool ta = n->attr.b[0], tb = n->attr.b[1];
  if (!ta && !tb) gin[0] = mm(ad, gy, b, false, true), gin[1] = mm(ad, a, gy, true, false);
  if (!ta && tb) gin[0] = mm(ad, gy, b, false, false), gin[1] = mm(ad, gy, a, true, false);
  if (ta && !tb) gin[0] = mm(ad, b, gy, false, true), gin[1] = mm(ad, a, gy, false, false);
  if (ta && tb) gin[0] = mm(ad, b, gy, true, true), gin[1] = mm(ad, gy, a, true, true);
}

void grad_linear(AD *ad, const Node *n, int gy, int *gin) {
  gin[0] = mm(ad, gy, X_(1), false, true);
  gin[1] = mm(ad, X_(0), gy, true, false);
  gin[2] = gy;
}

// ---------------------------------------------------------------- indexing

void grad_embedding(AD *ad, const Node *n, int gy, int *gin) {
  Attr a = attr_default(OP_EMBEDDING_GRAD);
  a.i[0] = shape_of(ad, X_(1))->d[0];
  int in[2] = {X_(0), gy};
  gin[1] = ad_op(ad, OP_EMBEDDING_GRAD, 2, in, &a);
}

// ---------------------------------------------------------------- normalization

// gamma's cotangent is gy * x_hat, x_hat recomputed by the op with unit scale.
static int normalized(AD *ad, const Node *n) {
  Attr a = n->attr;
  int in[5];
  for (int i = 0; i < n->nin; i++) in[i] = X_(i);
  in[1] = C(1);
  if (n->op != OP_RMS_NORM) in[2] = C(0);
  return ad_op(ad, n->op, n->nin, in, &a);
}

static int norm_dx(AD *ad, const Node *n, Op op, int gy) {
  Attr a = attr_default(op);
  a.f[0] = n->attr.f[0];
  int in[3] = {X_(0), X_(1), gy};
  return ad_op(ad, op, 3, in, &a);
}

void grad_layer_norm(AD *ad, const Node *n, int gy, int *gin) {
  gin[0] = norm_dx(ad, n, OP_LAYER_NORM_DX, gy);
  gin[1] = MUL(gy, normalized(ad, n));
  gin[2] = gy;
}

void grad_rms_norm(AD *ad, const Node *n, int gy, int *gin) {
  gin[0] = norm_dx(ad, n, OP_RMS_NORM_DX, gy);
  gin[1] = MUL(gy, normalized(ad, n));
}

void grad_batch_norm(AD *ad, const Node *n, int gy, int *gin) {
  gin[0] = norm_dx(ad, n, OP_BATCH_NORM_DX, gy);
  gin[1] = MUL(gy, normalized(ad, n));
  gin[2] = gy;
}

static int sum_keep(AD *ad, int x, int64_t axis) {
  Attr a = attr_default(OP_SUM);
  a.naxes = 1, a.axes[0] = (int)axis, a.b[0] = true;
  return ad_op(ad, OP_SUM, 1, &x, &a);
}

// softmax: dx = y * (gy - sum(gy * y))
void grad_softmax(AD *ad, const Node *n, int gy, int *gin) {
  int y = n->id;
  gin[0] = MUL(y, SUB(gy, sum_keep(ad, MUL(gy, y), n->attr.i[0])));
}

// log_softmax: dx = gy - exp(y) * sum(gy)
void grad_log_softmax(AD *ad, const Node *n, int gy, int *gin) {
  gin[0] = SUB(gy, MUL(ad_un(ad, OP_EXP, n->id), sum_keep(ad, gy, n->attr.i[0])));
}

// ---------------------------------------------------------------- attention, conv

// One backward kernel computes dq, dk and dv together (they share P and dS):
// a node with which=3 writes them flattened one after the other, and each
// gradient is a slice of it, reshaped. The mask gets no gradient (SPEC 6.1).
void grad_attention(AD *ad, const Node *n, int gy, int *gin) {
  Attr a = attr_default(OP_ATTENTION_GRAD);
  a.i[0] = n->attr.i[0], a.b[0] = n->attr.b[0], a.i[1] = 3;
  int m = node_operand(n, "mask"), in[5] = {X_(0), X_(1), X_(2), gy, m >= 0 ? X_(m) : -1};
  int all = ad_op(ad, OP_ATTENTION_GRAD, m >= 0 ? 5 : 4, in, &a);
  const Shape *q = shape_of(ad, X_(0)), *kk = shape_of(ad, X_(1));
  for (int k = 0; k < 3; k++) {
    int part = slice_of(ad, all, attention_grad_offset(q, kk, k), attention_grad_offset(q, kk, k + 1), 0);
    Attr r = attr_default(OP_RESHAPE);
    r.shape = *shape_of(ad, X_(k));
    gin[k] = ad_op(ad, OP_RESHAPE, 1, &part, &r);
  }
}

// The packed form's backward writes dq, dk and dv into their places in dx.
void grad_attention_qkv(AD *ad, const Node *n, int gy, int *gin) {
  Attr a = attr_default(OP_ATTENTION_QKV_GRAD);
  a.i[0] = n->attr.i[0], a.b[0] = n->attr.b[0];
  int m = node_operand(n, "mask"), in[3] = {X_(0), gy, m >= 0 ? X_(m) : -1};
  gin[0] = ad_op(ad, OP_ATTENTION_QKV_GRAD, m >= 0 ? 3 : 2, in, &a);
}

void grad_causal_mask(AD *ad, const Node *n, int gy, int *gin) { gin[0] = ad_un(ad, OP_CAUSAL_MASK_GRAD, gy); }
void grad_causal_mask_grad(AD *ad, const Node *n, int gy, int *gin) { gin[0] = ad_un(ad, OP_CAUSAL_MASK_GRAD, gy); }

void grad_conv2d(AD *ad, const Node *n, int gy, int *gin) {
  Attr a = attr_default(OP_CONV2D_DX);
  a.i[0] = n->attr.i[0], a.i[1] = n->attr.i[1];
  a.shape = *shape_of(ad, X_(0));
  int dx_in[2] = {gy, X_(1)};
  gin[0] = ad_op(ad, OP_CONV2D_DX, 2, dx_in, &a);
  a.shape = *shape_of(ad, X_(1));
  int dw_in[2] = {X_(0), gy};
  gin[1] = ad_op(ad, OP_CONV2D_DW, 2, dw_in, &a);
}

static void pool(AD *ad, const Node *n, int gy, int *gin, Op op) {
  Attr a = attr_default(op);
  a.i[0] = n->attr.i[0], a.i[1] = n->attr.i[1];
  int in[2] = {X_(0), gy};
  gin[0] = ad_op(ad, op, 2, in, &a);
}

void grad_max_pool2d(AD *ad, const Node *n, int gy, int *gin) { pool(ad, n, gy, gin, OP_MAX_POOL2D_GRAD); }
void grad_avg_pool2d(AD *ad, const Node *n, int gy, int *gin) { pool(ad, n, gy, gin, OP_AVG_POOL2D_GRAD); }

// The same stream and p: the same mask, the same 1/(1-p) scale.
void grad_dropout(AD *ad, const Node *n, int gy, int *gin) {
  Attr a = n->attr;
  gin[0] = ad_op(ad, OP_DROPOUT, 1, &gy, &a);
}

// ---------------------------------------------------------------- losses

void grad_cross_entropy(AD *ad, const Node *n, int gy, int *gin) {
  int in[3] = {X_(0), X_(1), gy};
  gin[0] = ad_op(ad, OP_CROSS_ENTROPY_GRAD, 3, in, NULL);
}

// mean(max(x,0) - x t + log1p(exp(-|x|))): dx = (sigmoid(x) - t) / N, dt = -x / N
void grad_binary_cross_entropy(AD *ad, const Node *n, int gy, int *gin) {
  int scale = MUL(gy, C(1 / (double)shape_numel(shape_of(ad, X_(0)))));
  gin[0] = MUL(SUB(ad_un(ad, OP_SIGMOID, X_(0)), X_(1)), scale);
  gin[1] = NEG(MUL(X_(0), scale));
}

void grad_mse(AD *ad, const Node *n, int gy, int *gin) {
  Shape s;
  BPC_ASSERT(shape_broadcast(shape_of(ad, X_(0)), shape_of(ad, X_(1)), &s));
  int d = MUL(SUB(X_(0), X_(1)), MUL(gy, C(2 / (double)shape_numel(&s))));
  gin[0] = d;
  gin[1] = NEG(d);
}
