// interp.c — the reference interpreter: evaluates a shape-checked Graph op by
// op, in node order, with every value held as doubles. It is the oracle that
// generated code is compared against, so each kernel is the plainest loop
// that states the op's math (SPEC 4 and 5); nothing here is tuned for speed.
//
// Takes: a Graph whose shape rules have run (shapes, dtypes and normalized
// attributes: reduce axes ascending, transpose perm complete, concat/slice/
// softmax/argmax axes non-negative, pool stride nonzero).
// Guarantees: after each op the driver rounds the result to its node's dtype
// (f32: v = (double)(float)v; i32: truncation toward zero; f64: untouched),
// so an f32 graph behaves like f32 storage. Bad data (an embedding id or a
// label out of range) sets it->failed and it->err instead of crashing.
// Leaves out: the fused backward ops (interp_grad.c); optimizer updates and
// batch_norm's running-stat updates (ordinary graph nodes built by other
// passes); i32 overflow wrapping (i32 values are exact integers in doubles).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bpc.h"
#include "bpcc.h"
#include "bpc_kernels.h"

_Static_assert((int)INIT_ZEROS == (int)BPCRT_INIT_ZEROS && (int)INIT_HE_NORMAL == (int)BPCRT_INIT_HE_NORMAL,
               "InitKind and the runtime's init numbering must agree");

typedef double (*ScalarFn)(const double *x, const Attr *a);

// Records the first data error of a run; later ones keep the first message.
__attribute__((format(printf, 2, 3))) static void fail(Interp *it, const char *fmt, ...) {
  if (it->failed) return;
  it->failed = true;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(it->err, sizeof it->err, fmt, ap);
  va_end(ap);
}

// ============================================================ scalar math
// One definition per elementwise op; x[0..arity) are the operands.

double s_const(const double *x, const Attr *a) { return a->f[0]; }
double s_copy(const double *x, const Attr *a) { return x[0]; }
double s_add(const double *x, const Attr *a) { return x[0] + x[1]; }
double s_sub(const double *x, const Attr *a) { return x[0] - x[1]; }
double s_mul(const double *x, const Attr *a) { return x[0] * x[1]; }
double s_div(const double *x, const Attr *a) { return x[0] / x[1]; }
// NaN propagates (as np.maximum), from either side.
double s_maximum(const double *x, const Attr *a) { return x[0] > x[1] || isnan(x[0]) ? x[0] : x[1]; }
double s_minimum(const double *x, const Attr *a) { return x[0] < x[1] || isnan(x[0]) ? x[0] : x[1]; }
double s_pow(const double *x, const Attr *a) { return pow(x[0], a->f[0]); }
double s_neg(const double *x, const Attr *a) { return -x[0]; }
double s_exp(const double *x, const Attr *a) { return exp(x[0]); }
double s_log(const double *x, const Attr *a) { return log(x[0]); }
double s_sqrt(const double *x, const Attr *a) { return sqrt(x[0]); }
double s_rsqrt(const double *x, const Attr *a) { return 1.0 / sqrt(x[0]); }
double s_abs(const double *x, const Attr *a) { return fabs(x[0]); }
double s_square(const double *x, const Attr *a) { return x[0] * x[0]; }
double s_sin(const double *x, const Attr *a) { return sin(x[0]); }
double s_cos(const double *x, const Attr *a) { return cos(x[0]); }
double s_tanh(const double *x, const Attr *a) { return tanh(x[0]); }
double s_erf(const double *x, const Attr *a) { return erf(x[0]); }

// exp() only of non-positive numbers: no overflow for large |x|.
static double sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + exp(-x));
  double e = exp(x);
  return e / (1.0 + e);
}

double s_sigmoid(const double *x, const Attr *a) { return sigmoid(x[0]); }
double s_relu(const double *x, const Attr *a) { return x[0] > 0 ? x[0] : 0.0; }
double s_leaky_relu(const double *x, const Attr *a) { return x[0] > 0 ? x[0] : a->f[0] * x[0]; }
// clamp to [min_val, max_val] (f0, f1), NaN stays NaN (as torch's hardtanh).
double s_hardtanh(const double *x, const Attr *a) { return x[0] < a->f[0] ? a->f[0] : x[0] > a->f[1] ? a->f[1] : x[0]; }

// b[0] (approximate, the default): GPT-2's tanh form; else the exact erf form.
double s_gelu(const double *x, const Attr *a) {
  double v = x[0];
  if (a->b[0]) {
    double c = sqrt(2.0 / M_PI);
    // 0.5 v (1 + tanh u) = v sigmoid(2u): no cancellation to 0 far below zero
    return v / (1.0 + exp(-2.0 * c * (v + 0.044715 * v * v * v)));
  }
  return 0.5 * v * erfc(-v / M_SQRT2);  // not 1 + erf: that cancels to 0 for v below about -8
}

double s_silu(const double *x, const Attr *a) { return x[0] * sigmoid(x[0]); }
double s_softplus(const double *x, const Attr *a) { return fmax(x[0], 0.0) + log1p(exp(-fabs(x[0]))); }
double s_where(const double *x, const Attr *a) { return x[0] != 0 ? x[1] : x[2]; }
double s_greater(const double *x, const Attr *a) { return x[0] > x[1] ? 1.0 : 0.0; }
double s_less(const double *x, const Attr *a) { return x[0] < x[1] ? 1.0 : 0.0; }
double s_equal(const double *x, const Attr *a) { return x[0] == x[1] ? 1.0 : 0.0; }

// ============================================================ index helpers

// Offset of flat element i of `out` in a tensor with strides `st`.
static int64_t bcast_off(int64_t i, const Shape *out, const int64_t *st) {
  int64_t off = 0;
  for (int k = out->rank - 1; k >= 0; k--) {
    off += (i % out->d[k]) * st[k];
    i /= out->d[k];
  }
  return off;
}

// o[i] = fn(in[0][.], ..., in[nin-1][.]) over `os`, operands broadcast.
static void ew_apply(const Shape *os, double *o, int nin, const Value *const *in, ScalarFn fn, const Attr *a) {
  BPC_ASSERT(nin <= 3);
  int64_t st[3][BPC_MAX_RANK];
  for (int k = 0; k < nin; k++) shape_bcast_strides(&in[k]->shape, os, st[k]);
  int64_t n = shape_numel(os);
  for (int64_t i = 0; i < n; i++) {
    double x[3] = {0, 0, 0};
    for (int k = 0; k < nin; k++) x[k] = in[k]->v[bcast_off(i, os, st[k])];
    o[i] = fn(x, a);
  }
}

// The tensor viewed as [outer, len, inner] around `axis`.
static void split_axis(const Shape *s, int axis, int64_t *outer, int64_t *len, int64_t *inner) {
  BPC_ASSERT(axis >= 0 && axis < s->rank);
  *outer = *inner = 1;
  for (int i = 0; i < axis; i++) *outer *= s->d[i];
  *len = s->d[axis];
  for (int i = axis + 1; i < s->rank; i++) *inner *= s->d[i];
}

// Index of the first maximum of x[0], x[st], ..., x[(n-1)*st]; a NaN wins
// (as np.argmax).
static int64_t argmax_strided(const double *x, int64_t n, int64_t st) {
  int64_t best = 0;
  for (int64_t k = 1; k < n; k++) {
    if (isnan(x[best * st])) break;
    if (x[k * st] > x[best * st] || isnan(x[k * st])) best = k;
  }
  return best;
}

// Rows of the last axis: the tensor as [rows, last].
static int64_t last_dim(const Shape *s) { return s->rank ? s->d[s->rank - 1] : 1; }

// A per-channel operand (gamma, beta, running stats) broadcast against [C]:
// a scalar (one element) or C elements.
static double chan(const Value *p, int64_t c) {
  int64_t n = shape_numel(&p->shape);
  BPC_ASSERT(n == 1 || c < n);
  return n == 1 ? p->v[0] : p->v[c];
}

// ============================================================ elementwise

void interp_leaf(Interp *it, const Node *n, Value *out, const Value *const *in) {
  bpc_bug(__FILE__, __LINE__, "interp_leaf: leaves are set, never run (node %d)", n->id);
}

// Every OPF_EW op, CONST (no operands), CAST and STOP_GRADIENT. Rounding to
// the node's dtype (CAST to i32 truncates) is the driver's.
void interp_ew(Interp *it, const Node *n, Value *out, const Value *const *in) {
  ScalarFn fn = op_info(n->op)->scalar;
  BPC_ASSERT(fn);
  ew_apply(&out->shape, out->v, n->nin, in, fn, &n->attr);
}

void interp_fill(Interp *it, const Node *n, Value *out, const Value *const *in) {
  double v = n->op == OP_ZEROS ? 0.0 : n->op == OP_ONES ? 1.0 : n->attr.f[0];
  int64_t cnt = shape_numel(&out->shape);
  for (int64_t i = 0; i < cnt; i++) out->v[i] = v;
}

// ============================================================ reductions

// For every element of x, the flat index of the output element it reduces
// into (reduced axes dropped; keepdims doesn't change the flat order).
static int64_t *reduce_map(const Shape *x, const Attr *a) {
  bool red[BPC_MAX_RANK] = {false};
  BPC_ASSERT(a->naxes >= 0);
  for (int k = 0; k < a->naxes; k++) {
    BPC_ASSERT(a->axes[k] >= 0 && a->axes[k] < x->rank);
    red[a->axes[k]] = true;
  }
  int64_t n = shape_numel(x);
  int64_t *map = xmalloc(sizeof(int64_t) * (size_t)n);
  for (int64_t i = 0; i < n; i++) {
    int64_t rest = i, o = 0, scale = 1;
    for (int k = x->rank - 1; k >= 0; k--) {
      int64_t idx = rest % x->d[k];
      rest /= x->d[k];
      if (red[k]) continue;
      o += idx * scale;
      scale *= x->d[k];
    }
    map[i] = o;
  }
  return map;
}

// Pass 1 of a reduction: per output, the sum of its inputs (SUM MEAN VAR) or
// their extreme (MAX MIN LOGSUMEXP; a NaN sticks, as in np.max).
static void reduce_pass1(Op op, const Value *x, const int64_t *map, double *m, int64_t no) {
  int64_t nx = shape_numel(&x->shape);
  bool extreme = op == OP_MAX || op == OP_MIN || op == OP_LOGSUMEXP;
  bool *seen = xcalloc((size_t)no, sizeof(bool));
  for (int64_t i = 0; i < nx; i++) {
    double v = x->v[i];
    int64_t o = map[i];
    if (!extreme)
      m[o] += v;
    else if (!seen[o] || (op == OP_MIN ? v < m[o] : v > m[o]) || (isnan(v) && !isnan(m[o])))
      m[o] = v;
    seen[o] = true;
  }
  free(seen);
}

// SUM MEAN MAX MIN VAR (population) LOGSUMEXP over attr.axes. VAR subtracts
// the mean and LOGSUMEXP the max in a second pass.
void interp_sum_squares(Interp *it, const Node *n, Value *out, const Value *const *in) {
  (void)it, (void)n;
  double s = 0;
  for (int64_t i = 0; i < shape_numel(&in[0]->shape); i++) s += in[0]->v[i] * in[0]->v[i];
  out->v[0] = s;
}

void interp_reduce(Interp *it, const Node *n, Value *out, const Value *const *in) {
  const Value *x = in[0];
  int64_t nx = shape_numel(&x->shape), no = shape_numel(&out->shape);
  double cnt = (double)(nx / no);  // inputs per output
  int64_t *map = reduce_map(&x->shape, &n->attr);
  double *m = xcalloc((size_t)no, sizeof(double));
  reduce_pass1(n->op, x, map, m, no);
  switch (n->op) {
  case OP_SUM:
  case OP_MAX:
  case OP_MIN: memcpy(out->v, m, sizeof(double) * (size_t)no); break;
  case OP_MEAN:
    for (int64_t o = 0; o < no; o++) out->v[o] = m[o] / cnt;
    break;
  case OP_VAR:
    for (int64_t i = 0; i < nx; i++) {
      double d = x->v[i] - m[map[i]] / cnt;
      out->v[map[i]] += d * d;
    }
    for (int64_t o = 0; o < no; o++) out->v[o] /= cnt;
    break;
  case OP_LOGSUMEXP:
    for (int64_t i = 0; i < nx; i++)
      if (isfinite(m[map[i]])) out->v[map[i]] += exp(x->v[i] - m[map[i]]);
    // An infinite or NaN max is the answer itself (all -inf gives -inf).
    for (int64_t o = 0; o < no; o++) out->v[o] = isfinite(m[o]) ? m[o] + log(out->v[o]) : m[o];
    break;
  default: BPC_ASSERT(!"interp_reduce: not a reduction");
  }
  free(map);
  free(m);
}

// ============================================================ shape ops

// RESHAPE (and anything else that keeps the data order).
void interp_copy(Interp *it, const Node *n, Value *out, const Value *const *in) {
  int64_t cnt = shape_numel(&out->shape);
  BPC_ASSERT(cnt == shape_numel(&in[0]->shape));
  memcpy(out->v, in[0]->v, sizeof(double) * (size_t)cnt);
}

// out dim i = in dim axes[i].
void interp_transpose(Interp *it, const Node *n, Value *out, const Value *const *in) {
  const Shape *xs = &in[0]->shape, *os = &out->shape;
  BPC_ASSERT(n->attr.naxes == xs->rank && os->rank == xs->rank);
  int64_t xst[BPC_MAX_RANK], st[BPC_MAX_RANK];
  int64_t s = 1;
  for (int k = xs->rank - 1; k >= 0; k--) xst[k] = s, s *= xs->d[k];
  for (int i = 0; i < os->rank; i++) st[i] = xst[n->attr.axes[i]];
  int64_t cnt = shape_numel(os);
  for (int64_t i = 0; i < cnt; i++) out->v[i] = in[0]->v[bcast_off(i, os, st)];
}

void interp_broadcast_to(Interp *it, const Node *n, Value *out, const Value *const *in) {
  ew_apply(&out->shape, out->v, 1, in, s_copy, &n->attr);
}

// Operands laid side by side along attr.i[0]: out viewed as [outer, sum of
// lens, inner].
void interp_concat(Interp *it, const Node *n, Value *out, const Value *const *in) {
  int axis = (int)n->attr.i[0];
  int64_t outer, olen, inner;
  split_axis(&out->shape, axis, &outer, &olen, &inner);
  int64_t at = 0;  // start of operand k along the axis
  for (int k = 0; k < n->nin; k++) {
    int64_t xo, len, xi;
    split_axis(&in[k]->shape, axis, &xo, &len, &xi);
    BPC_ASSERT(xo == outer && xi == inner && at + len <= olen);
    for (int64_t o = 0; o < outer; o++)
      memcpy(out->v + (o * olen + at) * inner, in[k]->v + o * len * inner, sizeof(double) * (size_t)(len * inner));
    at += len;
  }
  BPC_ASSERT(at == olen);
}

// x[..., start:stop, ...] along attr.i[2].
void interp_slice(Interp *it, const Node *n, Value *out, const Value *const *in) {
  int64_t start = n->attr.i[0], stop = n->attr.i[1];
  int64_t outer, len, inner;
  split_axis(&in[0]->shape, (int)n->attr.i[2], &outer, &len, &inner);
  BPC_ASSERT(0 <= start && start < stop && stop <= len);
  int64_t w = stop - start;
  for (int64_t o = 0; o < outer; o++)
    memcpy(out->v + o * w * inner, in[0]->v + (o * len + start) * inner, sizeof(double) * (size_t)(w * inner));
}

// ============================================================ linear algebra

// o = a @ b with NumPy matmul semantics: a [..., M, K], b [..., K, N], the
// leading (batch) dims broadcast. A rank-1 operand is promoted (a [K] as
// [1, K], b [K] as [K, 1]); the promoted axis doesn't change the flat order.
// *os gets the result shape [lead..., M, N]; o holds cap elements.
static void matmul_into(const Value *a, const Value *b, double *o, int64_t cap, Shape *os) {
  const Shape *as = &a->shape, *bs = &b->shape;
  BPC_ASSERT(as->rank >= 1 && bs->rank >= 1);
  int64_t M = as->rank >= 2 ? as->d[as->rank - 2] : 1, K = as->d[as->rank - 1];
  int64_t N = bs->rank >= 2 ? bs->d[bs->rank - 1] : 1;
  BPC_ASSERT(bs->d[bs->rank >= 2 ? bs->rank - 2 : 0] == K);
  Shape la = {.rank = as->rank >= 2 ? as->rank - 2 : 0};
  Shape lb = {.rank = bs->rank >= 2 ? bs->rank - 2 : 0};
  memcpy(la.d, as->d, sizeof(int64_t) * (size_t)la.rank);
  memcpy(lb.d, bs->d, sizeof(int64_t) * (size_t)lb.rank);
  Shape lo;
  BPC_ASSERT(shape_broadcast(&la, &lb, &lo));
  int64_t sta[BPC_MAX_RANK], stb[BPC_MAX_RANK];
  shape_bcast_strides(&la, &lo, sta);
  shape_bcast_strides(&lb, &lo, stb);
  int64_t nb = shape_numel(&lo);
  BPC_ASSERT(nb * M * N <= cap);
  for (int64_t t = 0; t < nb; t++) {
    const double *A = a->v + bcast_off(t, &lo, sta) * M * K;  // (M,K)
    const double *B = b->v + bcast_off(t, &lo, stb) * K * N;  // (K,N)
    double *C = o + t * M * N;                                // (M,N)
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) {
        double s = 0;
        for (int64_t k = 0; k < K; k++) s += A[i * K + k] * B[k * N + j];
        C[i * N + j] = s;
      }
  }
  *os = lo;
  BPC_ASSERT(os->rank + 2 <= BPC_MAX_RANK);
  os->d[os->rank++] = M;
  os->d[os->rank++] = N;
}

void interp_matmul(Interp *it, const Node *n, Value *out, const Value *const *in) {
  Shape rs;
  int64_t cnt = shape_numel(&out->shape);
  matmul_into(in[0], in[1], out->v, cnt, &rs);
  BPC_ASSERT(shape_numel(&rs) == cnt);
}

// x @ w + b, with b broadcast against the product.
void interp_linear(Interp *it, const Node *n, Value *out, const Value *const *in) {
  const Value *x = in[0], *w = in[1];
  // The product has the output's shape (the rule lets b only broadcast into it).
  int64_t cnt = shape_numel(&out->shape);
  Value prod = {.v = xcalloc((size_t)cnt, sizeof(double))};
  matmul_into(x, w, prod.v, cnt, &prod.shape);
  const Value *ops[2] = {&prod, in[2]};
  ew_apply(&out->shape, out->v, 2, ops, s_add, &n->attr);
  free(prod.v);
}

// ============================================================ indexing

// ids i32 [...], table [V, C] -> [..., C]; a bad id fails and gives zeros.
void interp_embedding(Interp *it, const Node *n, Value *out, const Value *const *in) {
  const Value *ids = in[0], *tab = in[1];
  BPC_ASSERT(tab->shape.rank == 2);
  int64_t V = tab->shape.d[0], C = tab->shape.d[1];
  int64_t cnt = shape_numel(&ids->shape);
  for (int64_t i = 0; i < cnt; i++) {
    double id = ids->v[i];
    if (!(id >= 0 && id < (double)V)) {
      fail(it, "embedding: id %lld out of range [0, %lld)", (long long)id, (long long)V);
      continue;  // the row stays zero
    }
    memcpy(out->v + i * C, tab->v + (int64_t)id * C, sizeof(double) * (size_t)C);
  }
}

// ids [...] -> [..., n]; an id outside [0, n) gives an all-zero row.
void interp_one_hot(Interp *it, const Node *n, Value *out, const Value *const *in) {
  int64_t k = n->attr.i[0], cnt = shape_numel(&in[0]->shape);
  for (int64_t i = 0; i < cnt; i++) {
    double id = in[0]->v[i];
    if (id >= 0 && id < (double)k) out->v[i * k + (int64_t)id] = 1.0;
  }
}

void interp_arange(Interp *it, const Node *n, Value *out, const Value *const *in) {
  for (int64_t i = 0; i < n->attr.i[0]; i++) out->v[i] = (double)i;
}

// First maximum along attr.i[0]; the axis is removed.
void interp_argmax(Interp *it, const Node *n, Value *out, const Value *const *in) {
  int64_t outer, len, inner;
  split_axis(&in[0]->shape, (int)n->attr.i[0], &outer, &len, &inner);
  for (int64_t o = 0; o < outer; o++)
    for (int64_t j = 0; j < inner; j++)
      out->v[o * inner + j] = (double)argmax_strided(in[0]->v + o * len * inner + j, len, inner);
}

// ============================================================ normalization

// Over the last axis: (x - mean) / sqrt(var + eps) * gamma + beta, var the
// population variance.
void interp_layer_norm(Interp *it, const Node *n, Value *out, const Value *const *in) {
  const Value *x = in[0], *g = in[1], *b = in[2];
  int64_t C = last_dim(&x->shape), rows = shape_numel(&x->shape) / C;
  double eps = n->attr.f[0];
  for (int64_t r = 0; r < rows; r++) {
    const double *xr = x->v + r * C;  // (C,)
    double mean = 0, var = 0;
    for (int64_t c = 0; c < C; c++) mean += xr[c];
    mean /= (double)C;
    for (int64_t c = 0; c < C; c++) var += (xr[c] - mean) * (xr[c] - mean);
    var /= (double)C;
    double rstd = 1.0 / sqrt(var + eps);
    for (int64_t c = 0; c < C; c++) out->v[r * C + c] = (xr[c] - mean) * rstd * chan(g, c) + chan(b, c);
  }
}

// x / sqrt(mean(x^2, last axis) + eps) * gamma.
void interp_rms_norm(Interp *it, const Node *n, Value *out, const Value *const *in) {
  const Value *x = in[0], *g = in[1];
  int64_t C = last_dim(&x->shape), rows = shape_numel(&x->shape) / C;
  for (int64_t r = 0; r < rows; r++) {
    const double *xr = x->v + r * C;
    double ms = 0;
    for (int64_t c = 0; c < C; c++) ms += xr[c] * xr[c];
    ms /= (double)C;
    double rms = sqrt(ms + n->attr.f[0]);
    for (int64_t c = 0; c < C; c++) out->v[r * C + c] = xr[c] / rms * chan(g, c);
  }
}

// x [..., C] normalized per channel over all other axes. Training: batch mean
// and biased batch variance; eval: the running stats (operands 3 and 4). The
// running-stat update is a separate node (GState.update).
void interp_batch_norm(Interp *it, const Node *n, Value *out, const Value *const *in) {
  const Value *x = in[0], *g = in[1], *b = in[2];
  BPC_ASSERT(n->nin == 5);
  int64_t C = last_dim(&x->shape), rows = shape_numel(&x->shape) / C;
  double eps = n->attr.f[0];
  for (int64_t c = 0; c < C; c++) {
    double mean, var;
    if (it->training) {
      mean = var = 0;
      for (int64_t r = 0; r < rows; r++) mean += x->v[r * C + c];
      mean /= (double)rows;
      for (int64_t r = 0; r < rows; r++) {
        double d = x->v[r * C + c] - mean;
        var += d * d;
      }
      var /= (double)rows;
    } else {
      mean = chan(in[3], c);
      var = chan(in[4], c);
    }
    double rstd = 1.0 / sqrt(var + eps);
    for (int64_t r = 0; r < rows; r++) out->v[r * C + c] = (x->v[r * C + c] - mean) * rstd * chan(g, c) + chan(b, c);
  }
}

// softmax (log_sm false) or log_softmax along attr.i[0], max subtracted.
static void softmax_axis(const Node *n, Value *out, const Value *x, bool log_sm) {
  int64_t outer, len, inner;
  split_axis(&x->shape, (int)n->attr.i[0], &outer, &len, &inner);
  for (int64_t o = 0; o < outer; o++)
    for (int64_t j = 0; j < inner; j++) {
      const double *xr = x->v + o * len * inner + j;  // stride inner
      double *yr = out->v + o * len * inner + j;
      double m = xr[0], s = 0;
      for (int64_t k = 1; k < len; k++) m = fmax(m, xr[k * inner]);
      for (int64_t k = 0; k < len; k++) s += exp(xr[k * inner] - m);
      for (int64_t k = 0; k < len; k++)
        yr[k * inner] = log_sm ? xr[k * inner] - m - log(s) : exp(xr[k * inner] - m) / s;
    }
}

void interp_softmax(Interp *it, const Node *n, Value *out, const Value *const *in) {
  softmax_axis(n, out, in[0], false);
}

void interp_log_softmax(Interp *it, const Node *n, Value *out, const Value *const *in) {
  softmax_axis(n, out, in[0], true);
}

// ============================================================ attention

// q (B,Tq,C), k v (B,Tk,C); head h owns channels [h*hs, (h+1)*hs), hs = C/H.
// Scores q_h k_h^T / sqrt(hs), key j > query i masked when causal, key j of
// batch b masked where mask (B,Tk) is 0; a query with no key left gets 0.
bool attention_key(const Node *n, const double *mask, int64_t b, int64_t Tk, int64_t i, int64_t j) {
  return !(n->attr.b[0] && j > i) && (!mask || mask[b * Tk + j] != 0);
}

void interp_attention_masked(const Node *n, Value *out, const Value *const *in, const double *mask) {
  const Value *q = in[0], *k = in[1], *v = in[2];
  BPC_ASSERT(q->shape.rank == 3 && k->shape.rank == 3 && v->shape.rank == 3);
  int64_t B = q->shape.d[0], Tq = q->shape.d[1], C = q->shape.d[2];
  int64_t Tk = k->shape.d[1], H = n->attr.i[0];
  BPC_ASSERT(H >= 1 && C % H == 0);
  int64_t hs = C / H;
  double scale = 1.0 / sqrt((double)hs);
  double *p = xmalloc(sizeof(double) * (size_t)Tk);  // (Tk,) one row of weights
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++)
      for (int64_t i = 0; i < Tq; i++) {
        const double *qi = q->v + (b * Tq + i) * C + h * hs;
        double m = -INFINITY, s = 0;
        for (int64_t j = 0; j < Tk; j++) {
          const double *kj = k->v + (b * Tk + j) * C + h * hs;
          double dot = 0;
          for (int64_t d = 0; d < hs; d++) dot += qi[d] * kj[d];
          p[j] = attention_key(n, mask, b, Tk, i, j) ? dot * scale : -INFINITY;
          m = fmax(m, p[j]);
        }
        if (m == -INFINITY) continue;  // no key: output 0 (out starts zeroed)
        for (int64_t j = 0; j < Tk; j++) {
          p[j] = exp(p[j] - m);  // masked keys: exp(-inf) = 0
          s += p[j];
        }
        double *oi = out->v + (b * Tq + i) * C + h * hs;
        for (int64_t j = 0; j < Tk; j++) {
          const double *vj = v->v + (b * Tk + j) * C + h * hs;
          for (int64_t d = 0; d < hs; d++) oi[d] += p[j] / s * vj[d];
        }
      }
  free(p);
}

void interp_attention(Interp *it, const Node *n, Value *out, const Value *const *in) {
  int m = node_operand(n, "mask");
  interp_attention_masked(n, out, in, m >= 0 ? in[m]->v : NULL);
}

// The new query over keys [kc[0:pos], k] and values [vc[0:pos], v]: one
// causal row of attention, computed as attention of one query over pos + 1
// keys.
void interp_attention_decode(Interp *it, const Node *n, Value *out, const Value *const *in) {
  int64_t C = in[0]->shape.d[2], pos = (int64_t)in[5]->v[0];
  if (pos < 0 || pos >= in[3]->shape.d[1]) {
    it->failed = true;
    snprintf(it->err, sizeof it->err, "attention_decode: position %lld outside the cache of %lld", (long long)pos,
             (long long)in[3]->shape.d[1]);
    return;
  }
  Value kv[2];
  for (int w = 0; w < 2; w++) {
    kv[w] = (Value){.shape = {.rank = 3, .d = {1, pos + 1, C}}, .dtype = in[1]->dtype};
    kv[w].v = xmalloc(sizeof(double) * (size_t)((pos + 1) * C));
    memcpy(kv[w].v, in[3 + w]->v, sizeof(double) * (size_t)(pos * C));
    memcpy(kv[w].v + pos * C, in[1 + w]->v, sizeof(double) * (size_t)C);
  }
  Node plain = *n;
  plain.attr.b[0] = false;
  const Value *ops[3] = {in[0], &kv[0], &kv[1]};
  interp_attention_masked(&plain, out, ops, NULL);
  free(kv[0].v), free(kv[1].v);
}

// A copy of x with -inf where column > row in the last two axes.
void interp_causal_mask(Interp *it, const Node *n, Value *out, const Value *const *in) {
  const Shape *s = &in[0]->shape;
  BPC_ASSERT(s->rank >= 2);
  int64_t R = s->d[s->rank - 2], Cc = s->d[s->rank - 1];
  int64_t cnt = shape_numel(s);
  for (int64_t i = 0; i < cnt; i++) {
    int64_t col = i % Cc, row = (i / Cc) % R;
    out->v[i] = col > row ? -INFINITY : in[0]->v[i];
  }
}

// ============================================================ convolution

// x (N,H,W,Cin), w (KH,KW,Cin,Cout) -> (N,OH,OW,Cout): cross-correlation,
// zero padding i[1] on every side, stride i[0].
void interp_conv2d(Interp *it, const Node *n, Value *out, const Value *const *in) {
  const Shape *xs = &in[0]->shape, *ws = &in[1]->shape, *os = &out->shape;
  BPC_ASSERT(xs->rank == 4 && ws->rank == 4 && os->rank == 4);
  int64_t N = xs->d[0], H = xs->d[1], W = xs->d[2], Ci = xs->d[3];
  int64_t KH = ws->d[0], KW = ws->d[1], Co = ws->d[3];
  int64_t OH = os->d[1], OW = os->d[2];
  int64_t st = n->attr.i[0], pad = n->attr.i[1];
  BPC_ASSERT(ws->d[2] == Ci && os->d[3] == Co && st >= 1);
  for (int64_t b = 0; b < N; b++)
    for (int64_t oh = 0; oh < OH; oh++)
      for (int64_t ow = 0; ow < OW; ow++)
        for (int64_t co = 0; co < Co; co++) {
          double s = 0;
          for (int64_t kh = 0; kh < KH; kh++)
            for (int64_t kw = 0; kw < KW; kw++) {
              int64_t ih = oh * st - pad + kh, iw = ow * st - pad + kw;
              if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;  // zero pad
              for (int64_t ci = 0; ci < Ci; ci++)
                s += in[0]->v[((b * H + ih) * W + iw) * Ci + ci] * in[1]->v[((kh * KW + kw) * Ci + ci) * Co + co];
            }
          out->v[((b * OH + oh) * OW + ow) * Co + co] = s;
        }
}

// Max (first maximum) or average over size x size windows, no padding.
static void pool2d(const Node *n, Value *out, const Value *x, bool is_max) {
  const Shape *xs = &x->shape, *os = &out->shape;
  BPC_ASSERT(xs->rank == 4 && os->rank == 4);
  int64_t N = xs->d[0], H = xs->d[1], W = xs->d[2], C = xs->d[3];
  int64_t OH = os->d[1], OW = os->d[2];
  int64_t k = n->attr.i[0], st = n->attr.i[1];
  BPC_ASSERT(k >= 1 && st >= 1);
  for (int64_t b = 0; b < N; b++)
    for (int64_t oh = 0; oh < OH; oh++)
      for (int64_t ow = 0; ow < OW; ow++)
        for (int64_t c = 0; c < C; c++) {
          double acc = is_max ? -INFINITY : 0;
          bool first = true;
          for (int64_t kh = 0; kh < k; kh++)
            for (int64_t kw = 0; kw < k; kw++) {
              int64_t ih = oh * st + kh, iw = ow * st + kw;
              BPC_ASSERT(ih < H && iw < W);
              double v = x->v[((b * H + ih) * W + iw) * C + c];
              if (!is_max)
                acc += v;
              else if (first || v > acc || (isnan(v) && !isnan(acc)))
                acc = v;
              first = false;
            }
          out->v[((b * OH + oh) * OW + ow) * C + c] = is_max ? acc : acc / (double)(k * k);
        }
}

void interp_max_pool2d(Interp *it, const Node *n, Value *out, const Value *const *in) { pool2d(n, out, in[0], true); }

void interp_avg_pool2d(Interp *it, const Node *n, Value *out, const Value *const *in) { pool2d(n, out, in[0], false); }

// ============================================================ regularization

// Inverted dropout. Element i is kept iff its 24-bit draw under the key of
// (seed, attr.salt, step) reaches ceil(p * 2^24) (bpc.h), so every backend
// draws the same mask; kept values are x * (1 / (1 - p)). Eval: identity.
void interp_dropout(Interp *it, const Node *n, Value *out, const Value *const *in) {
  int64_t cnt = shape_numel(&out->shape);
  double p = n->attr.f[0];
  if (!it->training) {
    memcpy(out->v, in[0]->v, sizeof(double) * (size_t)cnt);
    return;
  }
  uint64_t key = bpcrt_dropout_key(it->seed, n->attr.salt, it->step);
  uint32_t thr = bpcrt_dropout_threshold(p);
  double scale = 1.0 / (1.0 - p);  // as PyTorch; p = 1 keeps nothing
  for (int64_t i = 0; i < cnt; i++) {
    uint32_t draw = bpcrt_dropout_draw(bpcrt_dropout_key32(key, (uint64_t)i), (uint64_t)i);
    out->v[i] = draw >= thr ? in[0]->v[i] * scale : 0.0;
  }
}

// ============================================================ losses, metrics

// Mean over label positions of logsumexp(row) - row[label].
void interp_cross_entropy(Interp *it, const Node *n, Value *out, const Value *const *in) {
  const Value *x = in[0], *y = in[1];
  int64_t K = last_dim(&x->shape), rows = shape_numel(&y->shape);
  BPC_ASSERT(rows * K == shape_numel(&x->shape));
  double total = 0;
  for (int64_t r = 0; r < rows; r++) {
    const double *xr = x->v + r * K;  // (K,)
    double lab = y->v[r];
    if (!(lab >= 0 && lab < (double)K)) {
      fail(it, "cross_entropy: label %lld out of range [0, %lld)", (long long)lab, (long long)K);
      continue;
    }
    double m = xr[0], s = 0;
    for (int64_t k = 1; k < K; k++) m = fmax(m, xr[k]);
    for (int64_t k = 0; k < K; k++) s += exp(xr[k] - m);
    total += m + log(s) - xr[(int64_t)lab];
  }
  out->v[0] = total / (double)rows;
}

// linear_cross_entropy: logits = h @ w^T (transpose_w) or h @ w, then
// cross_entropy's mean over the rows; with gy also dh and dw of that loss
// times gy, laid out [dh, dw, loss] (lce_offset).
void interp_linear_cross_entropy(Interp *it, const Node *n, Value *out, const Value *const *in) {
  const Value *h = in[0], *w = in[1], *y = in[2];
  bool tw = n->attr.b[0], grad = n->nin > 3;
  int64_t C = h->shape.d[h->shape.rank - 1], rows = shape_numel(&h->shape) / C;
  int64_t V = tw ? w->shape.d[0] : w->shape.d[1];
  double scale = grad ? in[3]->v[0] / (double)rows : 0, total = 0;
  // bf16 products (SPEC 6.5): the driver rounded h and w (OPF_PRODUCT); the
  // logits' gradient enters the dh and dW products in bf16 too, as in the
  // unfused matmuls.
  bool bf16 = n->dtype == DT_F32 && graph_bf16(it->g);
  double *l = xmalloc(sizeof(double) * (size_t)V);
  double *dh = out->v, *dw = out->v + lce_offset(&h->shape, &w->shape, 1);
  if (grad) memset(out->v, 0, sizeof(double) * (size_t)lce_offset(&h->shape, &w->shape, 2));
  for (int64_t r = 0; r < rows; r++) {
    const double *hr = h->v + r * C;
    for (int64_t v = 0; v < V; v++) {
      double s = 0;
      for (int64_t c = 0; c < C; c++) s += hr[c] * w->v[tw ? v * C + c : c * V + v];
      l[v] = s;
    }
    double lab = y->v[r];
    if (!(lab >= 0 && lab < (double)V)) {
      fail(it, "cross_entropy: label %lld out of range [0, %lld)", (long long)lab, (long long)V);
      continue;
    }
    double m = l[0], sum = 0;
    for (int64_t v = 1; v < V; v++) m = fmax(m, l[v]);
    for (int64_t v = 0; v < V; v++) sum += exp(l[v] - m);
    total += m + log(sum) - l[(int64_t)lab];
    for (int64_t v = 0; grad && v < V; v++) {
      double d = (exp(l[v] - m) / sum - (v == (int64_t)lab)) * scale;  // d loss / d logit
      if (bf16) d = bpck_bf16_round((float)d);
      for (int64_t c = 0; c < C; c++) {
        double wv = w->v[tw ? v * C + c : c * V + v];
        dh[r * C + c] += d * wv;
        dw[tw ? v * C + c : c * V + v] += d * hr[c];
      }
    }
  }
  out->v[grad ? lce_offset(&h->shape, &w->shape, 2) : 0] = total / (double)rows;
  free(l);
}

// Mean of (pred - target)^2 or of the stable BCE-with-logits term, over the
// broadcast shape of the two operands.
static double s_bce_term(const double *x, const Attr *a) {
  return fmax(x[0], 0.0) - x[0] * x[1] + log1p(exp(-fabs(x[0])));
}

static double s_sq_err(const double *x, const Attr *a) { return (x[0] - x[1]) * (x[0] - x[1]); }

static void mean_pairwise(const Node *n, Value *out, const Value *const *in, ScalarFn fn) {
  Shape bs;
  BPC_ASSERT(shape_broadcast(&in[0]->shape, &in[1]->shape, &bs));
  int64_t cnt = shape_numel(&bs);
  double *t = xmalloc(sizeof(double) * (size_t)cnt);
  ew_apply(&bs, t, 2, in, fn, &n->attr);
  double s = 0;
  for (int64_t i = 0; i < cnt; i++) s += t[i];
  out->v[0] = s / (double)cnt;
  free(t);
}

void interp_bce(Interp *it, const Node *n, Value *out, const Value *const *in) {
  mean_pairwise(n, out, in, s_bce_term);
}

void interp_mse(Interp *it, const Node *n, Value *out, const Value *const *in) { mean_pairwise(n, out, in, s_sq_err); }

// Fraction of rows whose first maximum is the label; bad labels count wrong.
void interp_accuracy(Interp *it, const Node *n, Value *out, const Value *const *in) {
  const Value *x = in[0], *y = in[1];
  int64_t K = last_dim(&x->shape), rows = shape_numel(&y->shape);
  BPC_ASSERT(rows * K == shape_numel(&x->shape));
  int64_t hits = 0;
  for (int64_t r = 0; r < rows; r++) hits += (double)argmax_strided(x->v + r * K, K, 1) == y->v[r];
  out->v[0] = (double)hits / (double)rows;
}

// ============================================================ driver

// Rounds a freshly computed value to its dtype's storage.
static void round_to(DType t, double *v, int64_t cnt) {
  if (t == DT_F32)
    for (int64_t i = 0; i < cnt; i++) v[i] = (double)(float)v[i];
  else if (t == DT_I32)
    for (int64_t i = 0; i < cnt; i++) v[i] = trunc(v[i]);
}

Interp *interp_new(const Graph *g, uint64_t seed, uint64_t step, bool training) {
  Interp *it = xcalloc(1, sizeof(Interp));
  it->g = g;
  it->seed = seed;
  it->step = step;
  it->training = training;
  it->vals = xcalloc((size_t)(g->nodes.n ? g->nodes.n : 1), sizeof(Value));
  // Every value is allocated (zeroed) up front: unset leaves read as zeros
  // and interp_value never returns a value without storage.
  for (int i = 0; i < g->nodes.n; i++) {
    const Node *n = graph_node(g, i);
    Value *v = &it->vals[i];
    v->shape = n->shape;
    v->dtype = n->dtype;
    v->v = xcalloc((size_t)shape_numel(&n->shape), sizeof(double));
  }
  return it;
}

void interp_set(Interp *it, int node, const double *data, int64_t n) {
  Value *v = &it->vals[graph_node(it->g, node)->id];
  BPC_ASSERT(n == shape_numel(&v->shape));
  memcpy(v->v, data, sizeof(double) * (size_t)n);
  round_to(v->dtype, v->v, n);
}

void interp_init_params(Interp *it, uint64_t seed) {
  const Graph *g = it->g;
  for (int i = 0; i < g->params.n; i++) {
    const GParam *p = &g->params.v[i];
    Value *v = &it->vals[graph_node(g, p->node)->id];
    const Shape *s = &v->shape;
    int64_t fan_in = 1, fan_out = s->rank ? s->d[s->rank - 1] : 1;
    for (int k = 0; k + 1 < s->rank; k++) fan_in *= s->d[k];
    int64_t cnt = shape_numel(s);
    bpcrt_init_fill((int)p->init.kind, p->init.a, p->init.b, fan_in, fan_out, seed, bpcrt_fnv1a64(p->name), cnt, v->v);
    round_to(v->dtype, v->v, cnt);
  }
  for (int i = 0; i < g->states.n; i++) {
    const GState *st = &g->states.v[i];
    Value *v = &it->vals[graph_node(g, st->node)->id];
    int64_t cnt = shape_numel(&v->shape);
    for (int64_t k = 0; k < cnt; k++) v->v[k] = st->init;
    round_to(v->dtype, v->v, cnt);
  }
}

bool interp_run(Interp *it) {
  const Graph *g = it->g;
  it->failed = false;
  it->err[0] = 0;
  const Value **ops = NULL;
  int cap = 0;
  for (int i = 0; i < g->nodes.n; i++) {
    const Node *n = graph_node(g, i);
    const OpInfo *info = op_info(n->op);
    if (info->flags & OPF_LEAF) continue;
    if (n->nin > cap) {
      cap = n->nin;
      ops = xrealloc(ops, sizeof(*ops) * (size_t)cap);
    }
    for (int k = 0; k < n->nin; k++) ops[k] = &it->vals[n->in[k]];
    Value *out = &it->vals[i];
    int64_t cnt = shape_numel(&out->shape);
    memset(out->v, 0, sizeof(double) * (size_t)cnt);
    Value rounded[2];
    memset(rounded, 0, sizeof rounded);
    if ((info->flags & OPF_PRODUCT) && n->dtype == DT_F32 && graph_bf16(g))
      for (int k = 0; k < 2; k++) {  // SPEC 6.5: the product reads its operands in bf16
        rounded[k] = *ops[k];
        int64_t m = shape_numel(&ops[k]->shape);
        rounded[k].v = xmalloc(sizeof(double) * (size_t)(m ? m : 1));
        for (int64_t e = 0; e < m; e++) rounded[k].v[e] = bpck_bf16_round((float)ops[k]->v[e]);
        ops[k] = &rounded[k];
      }
    info->interp(it, n, out, ops);
    free(rounded[0].v), free(rounded[1].v);
    round_to(out->dtype, out->v, cnt);
    if (it->failed) break;
  }
  free(ops);
  return !it->failed;
}

const Value *interp_value(const Interp *it, int node) { return &it->vals[graph_node(it->g, node)->id]; }

void interp_free(Interp *it) {
  if (!it) return;
  for (int i = 0; i < it->g->nodes.n; i++) free(it->vals[i].v);
  free(it->vals);
  free(it);
}
