// test_interp.c — the reference interpreter against hand-computed values.
// Each test builds a small graph directly (g_leaf / g_op, so the shape rules
// normalize attributes as they do for real models), sets the inputs, runs it
// and compares with numbers worked out by hand or well-known constants. Where
// a case is too big to do by hand (multi-head attention), a second path built
// from other ops of the interpreter is the reference.
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "bpc.h"
#include "bpcc.h"

// ---------------------------------------------------------------- helpers

static Diag diag;
static const Loc L;  // built nodes have no source position

static Shape mkshape(const int64_t *d, int rank) {
  Shape s = {.rank = rank};
  for (int i = 0; i < rank; i++) s.d[i] = d[i];
  return s;
}
#define SH(...) mkshape((int64_t[]){__VA_ARGS__}, (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define SCALAR ((Shape){0})
#define NARGS(...) (int)(sizeof((double[]){__VA_ARGS__}) / sizeof(double))

static Graph *gnew(DType t) {
  diag_init(&diag, stderr);
  return graph_new(&diag, NULL, t);
}

static int leaf(Graph *g, DType dt, Shape s) { return g_leaf(g, OP_INPUT, "x", dt, &s, L); }

// g_op with operands as varargs; the rule must accept the node.
static int op(Graph *g, Op o, const Attr *a, int nin, ...) {
  int in[8];
  va_list ap;
  va_start(ap, nin);
  for (int i = 0; i < nin; i++) in[i] = va_arg(ap, int);
  va_end(ap);
  int id = g_op(g, o, L, nin, in, a);
  cr_assert_geq(id, 0, "shape rule of %s rejected the node", op_name(o));
  return id;
}
static int op1(Graph *g, Op o, int a) { return op(g, o, NULL, 1, a); }
static int op2(Graph *g, Op o, int a, int b) { return op(g, o, NULL, 2, a, b); }

#define SET(it, node, ...) interp_set(it, node, (double[]){__VA_ARGS__}, NARGS(__VA_ARGS__))

static bool close_to(double got, double want, double tol) {
  if (isnan(want)) return isnan(got);
  if (isinf(want)) return got == want;
  return fabs(got - want) <= tol * fmax(1.0, fabs(want));
}

static void check_vals(const Value *v, double tol, const double *want, int n, const char *what) {
  cr_assert_eq(shape_numel(&v->shape), n, "%s: %lld elements, want %d", what, (long long)shape_numel(&v->shape), n);
  for (int i = 0; i < n; i++)
    cr_assert(close_to(v->v[i], want[i], tol), "%s: [%d] = %.17g, want %.17g", what, i, v->v[i], want[i]);
}
// CHECK(it, node, tol, expected values...)
#define CHECK(it, node, tol, ...) \
  check_vals(interp_value(it, node), tol, (double[]){__VA_ARGS__}, NARGS(__VA_ARGS__), #node)

static void check_shape(Interp *it, int node, Shape want) {
  char a[64], b[64];
  const Value *v = interp_value(it, node);
  cr_assert(shape_eq(&v->shape, &want), "shape %s, want %s", shape_str(&v->shape, a, 64), shape_str(&want, b, 64));
}

static Interp *run(Graph *g, Interp *it) {
  cr_assert(interp_run(it), "run failed: %s", it->err);
  return it;
}

static void fill_iota(Interp *it, int node, double start) {
  const Value *v = interp_value(it, node);
  int64_t n = shape_numel(&v->shape);
  double *d = malloc(sizeof(double) * (size_t)n);
  for (int64_t i = 0; i < n; i++) d[i] = start + (double)i;
  interp_set(it, node, d, n);
  free(d);
}

// ---------------------------------------------------------------- registry

Test(interp, registry_complete) {
  for (int o = 0; o < OP_COUNT; o++) {
    const OpInfo *info = op_info((Op)o);
    cr_assert(info->shape, "%s has no shape rule", info->name);
    cr_assert(info->interp, "%s has no interpreter kernel", info->name);
    if (info->flags & OPF_EW) cr_assert(info->scalar, "%s (OPF_EW) has no scalar fn", info->name);
    if (info->interp == interp_ew) cr_assert(info->scalar, "%s runs interp_ew without a scalar fn", info->name);
  }
}

// Every op callable from YAML has a test in this file: adding one to ops.h
// without a test here fails.
Test(interp, every_public_op_is_tested) {
  static const Op tested[] = {
      OP_ADD,
      OP_SUB,
      OP_MUL,
      OP_DIV,
      OP_MAXIMUM,
      OP_MINIMUM,
      OP_POW,
      OP_NEG,
      OP_EXP,
      OP_LOG,
      OP_SQRT,
      OP_RSQRT,
      OP_ABS,
      OP_SQUARE,
      OP_SIN,
      OP_COS,
      OP_TANH,
      OP_ERF,
      OP_SIGMOID,
      OP_RELU,
      OP_LEAKY_RELU,
      OP_HARDTANH,
      OP_GELU,
      OP_SILU,
      OP_SOFTPLUS,
      OP_WHERE,
      OP_GREATER,
      OP_LESS,
      OP_EQUAL,
      OP_SUM,
      OP_MEAN,
      OP_MAX,
      OP_MIN,
      OP_VAR,
      OP_LOGSUMEXP,
      OP_RESHAPE,
      OP_TRANSPOSE,
      OP_BROADCAST_TO,
      OP_CONCAT,
      OP_SLICE,
      OP_MATMUL,
      OP_LINEAR,
      OP_EMBEDDING,
      OP_ONE_HOT,
      OP_ARANGE,
      OP_ARGMAX,
      OP_LAYER_NORM,
      OP_RMS_NORM,
      OP_BATCH_NORM,
      OP_SOFTMAX,
      OP_LOG_SOFTMAX,
      OP_ATTENTION,
      OP_CAUSAL_MASK,
      OP_CONV2D,
      OP_MAX_POOL2D,
      OP_AVG_POOL2D,
      OP_DROPOUT,
      OP_CROSS_ENTROPY,
      OP_BINARY_CROSS_ENTROPY,
      OP_MSE,
      OP_ACCURACY,
      OP_STOP_GRADIENT,
      OP_ZEROS,
      OP_ONES,
      OP_FULL,
      // internal ops with a forward meaning, tested too
      OP_CONST,
      OP_CAST,
  };
  for (int o = 0; o < OP_COUNT; o++) {
    if (op_info((Op)o)->flags & OPF_INTERNAL) continue;
    bool found = false;
    for (size_t k = 0; k < sizeof tested / sizeof *tested; k++) found |= tested[k] == (Op)o;
    cr_assert(found, "op %s has no interpreter test", op_name((Op)o));
  }
}

// ---------------------------------------------------------------- elementwise

Test(interp, add_rank_broadcast) {
  Graph *g = gnew(DT_F64);
  int a = leaf(g, DT_F64, SH(2, 3)), b = leaf(g, DT_F64, SH(3));
  int s = op2(g, OP_ADD, a, b), s2 = op2(g, OP_ADD, b, a);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, a, 1, 2, 3, 4, 5, 6);
  SET(it, b, 10, 20, 30);
  run(g, it);
  check_shape(it, s, SH(2, 3));
  CHECK(it, s, 0, 11, 22, 33, 14, 25, 36);
  CHECK(it, s2, 0, 11, 22, 33, 14, 25, 36);
  interp_free(it);
  graph_free(g);
}

Test(interp, sub_size1_dims) {
  Graph *g = gnew(DT_F64);
  int a = leaf(g, DT_F64, SH(2, 1)), b = leaf(g, DT_F64, SH(1, 3));
  int d = op2(g, OP_SUB, a, b);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, a, 1, 2);
  SET(it, b, 10, 20, 30);
  run(g, it);
  check_shape(it, d, SH(2, 3));
  CHECK(it, d, 0, -9, -19, -29, -8, -18, -28);
  interp_free(it);
  graph_free(g);
}

Test(interp, mul_div_const) {
  Graph *g = gnew(DT_F64);
  int x = leaf(g, DT_F64, SH(3)), y = leaf(g, DT_F64, SH(3));
  int c = g_const(g, 2.0, L);
  int m = op2(g, OP_MUL, c, x), d = op2(g, OP_DIV, y, x);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, x, 2, 4, 8);
  SET(it, y, 1, 1, 1);
  run(g, it);
  check_shape(it, c, SCALAR);
  CHECK(it, c, 0, 2);
  CHECK(it, m, 0, 4, 8, 16);
  CHECK(it, d, 0, 0.5, 0.25, 0.125);
  interp_free(it);
  graph_free(g);
}

Test(interp, maximum_minimum) {
  Graph *g = gnew(DT_F64);
  int a = leaf(g, DT_F64, SH(3)), b = leaf(g, DT_F64, SH(3));
  int mx = op2(g, OP_MAXIMUM, a, b), mn = op2(g, OP_MINIMUM, a, b);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, a, 1, 5, 3);
  SET(it, b, 4, 2, 3);
  run(g, it);
  CHECK(it, mx, 0, 4, 5, 3);
  CHECK(it, mn, 0, 1, 2, 3);
  interp_free(it);
  graph_free(g);
}

Test(interp, pow_literal) {
  Graph *g = gnew(DT_F64);
  int x = leaf(g, DT_F64, SH(3));
  Attr a = attr_default(OP_POW);
  a.f[0] = 2;
  int p2 = op(g, OP_POW, &a, 1, x);
  a.f[0] = -1;
  int pm1 = op(g, OP_POW, &a, 1, x);
  a.f[0] = 0.5;
  int ph = op(g, OP_POW, &a, 1, x);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, x, 2, 4, 9);
  run(g, it);
  CHECK(it, p2, 0, 4, 16, 81);
  CHECK(it, pm1, 1e-15, 0.5, 0.25, 1.0 / 9);
  CHECK(it, ph, 1e-15, 1.4142135623730951, 2, 3);
  interp_free(it);
  graph_free(g);
}

Test(interp, unary_math) {
  Graph *g = gnew(DT_F64);
  int x = leaf(g, DT_F64, SH(2));
  int neg = op1(g, OP_NEG, x), ex = op1(g, OP_EXP, x), lg = op1(g, OP_LOG, x);
  int sq = op1(g, OP_SQRT, x), rs = op1(g, OP_RSQRT, x), ab = op1(g, OP_ABS, x);
  int sqr = op1(g, OP_SQUARE, x), sn = op1(g, OP_SIN, x), cs = op1(g, OP_COS, x);
  int th = op1(g, OP_TANH, x), ef = op1(g, OP_ERF, x);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, x, 1, 4);
  run(g, it);
  CHECK(it, neg, 0, -1, -4);
  CHECK(it, ex, 1e-15, 2.718281828459045, 54.598150033144236);
  CHECK(it, lg, 1e-15, 0, 1.3862943611198906);
  CHECK(it, sq, 0, 1, 2);
  CHECK(it, rs, 0, 1, 0.5);
  CHECK(it, ab, 0, 1, 4);
  CHECK(it, sqr, 0, 1, 16);
  CHECK(it, sn, 1e-15, 0.8414709848078965, -0.7568024953079282);
  CHECK(it, cs, 1e-15, 0.5403023058681398, -0.6536436208636119);
  CHECK(it, th, 1e-15, 0.7615941559557649, 0.999329299739067);
  CHECK(it, ef, 1e-15, 0.8427007929497149, 0.9999999845827421);
  SET(it, x, -2, 0);
  run(g, it);
  CHECK(it, ab, 0, 2, 0);
  CHECK(it, sqr, 0, 4, 0);
  CHECK(it, lg, 0, NAN, -INFINITY);
  CHECK(it, cs, 0, -0.4161468365471424, 1);
  CHECK(it, ef, 1e-15, -0.9953222650189527, 0);
  interp_free(it);
  graph_free(g);
}

Test(interp, activations) {
  Graph *g = gnew(DT_F64);
  int x = leaf(g, DT_F64, SH(5));
  int sg = op1(g, OP_SIGMOID, x), re = op1(g, OP_RELU, x), si = op1(g, OP_SILU, x);
  int sp = op1(g, OP_SOFTPLUS, x), lr = op1(g, OP_LEAKY_RELU, x);
  Attr a = attr_default(OP_LEAKY_RELU);
  a.f[0] = 0.2;
  int lr2 = op(g, OP_LEAKY_RELU, &a, 1, x);
  int ht = op1(g, OP_HARDTANH, x);
  Attr hb = attr_default(OP_HARDTANH);
  hb.f[0] = -0.5, hb.f[1] = 1.5;
  int ht2 = op(g, OP_HARDTANH, &hb, 1, x);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, x, -1000, -1, 0, 2, 1000);
  run(g, it);
  CHECK(it, sg, 1e-15, 0, 0.2689414213699951, 0.5, 0.8807970779778823, 1);
  CHECK(it, re, 0, 0, 0, 0, 2, 1000);
  CHECK(it, si, 1e-15, 0, -0.2689414213699951, 0, 1.7615941559557646, 1000);
  CHECK(it, sp, 1e-15, 0, 0.31326168751822286, 0.6931471805599453, 2.1269280110429727, 1000);
  CHECK(it, lr, 1e-15, -10, -0.01, 0, 2, 1000);
  CHECK(it, lr2, 1e-15, -200, -0.2, 0, 2, 1000);
  CHECK(it, ht, 0, -1, -1, 0, 1, 1);
  CHECK(it, ht2, 0, -0.5, -0.5, 0, 1.5, 1.5);
  interp_free(it);
  graph_free(g);
}

Test(interp, gelu_both_forms) {
  Graph *g = gnew(DT_F64);
  int x = leaf(g, DT_F64, SH(3));
  int approx = op1(g, OP_GELU, x);  // default approximate=true
  Attr a = attr_default(OP_GELU);
  a.b[0] = false;
  int exact = op(g, OP_GELU, &a, 1, x);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, x, -1, 0, 1);
  run(g, it);
  CHECK(it, approx, 1e-14, -0.15880800939172324, 0, 0.8411919906082768);
  CHECK(it, exact, 1e-14, -0.15865525393145707, 0, 0.8413447460685429);
  // Far below zero both forms keep their tiny value (1 + erf or 1 + tanh
  // would cancel to 0), as the native kernels do.
  SET(it, x, -10, -10, -10);
  run(g, it);
  double e = interp_value(it, exact)->v[0], t = interp_value(it, approx)->v[0];
  cr_expect(fabs(e / -7.619853024160593e-23 - 1) < 1e-12, "erf form gelu(-10) = %.17g", e);
  cr_expect(fabs(t / -1.2040923482098023e-37 - 1) < 1e-9, "tanh form gelu(-10) = %.17g", t);
  interp_free(it);
  graph_free(g);
}

// Three operands of three ranks: cond [2,1], a [3], b a scalar const.
Test(interp, where_three_way_broadcast) {
  Graph *g = gnew(DT_F64);
  int c = leaf(g, DT_F64, SH(2, 1)), a = leaf(g, DT_F64, SH(3));
  int b = g_const(g, -1, L);
  int w = op(g, OP_WHERE, NULL, 3, c, a, b);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, c, 0.5, 0);  // any non-zero is true
  SET(it, a, 1, 2, 3);
  run(g, it);
  check_shape(it, w, SH(2, 3));
  CHECK(it, w, 0, 1, 2, 3, -1, -1, -1);
  interp_free(it);
  graph_free(g);
}

Test(interp, comparisons) {
  Graph *g = gnew(DT_F64);
  int a = leaf(g, DT_F64, SH(3)), b = leaf(g, DT_F64, SH(1));
  int gt = op2(g, OP_GREATER, a, b), lt = op2(g, OP_LESS, a, b), eq = op2(g, OP_EQUAL, a, b);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, a, 1, 2, 3);
  SET(it, b, 2);
  run(g, it);
  CHECK(it, gt, 0, 0, 0, 1);
  CHECK(it, lt, 0, 1, 0, 0);
  CHECK(it, eq, 0, 0, 1, 0);
  cr_assert_eq(interp_value(it, gt)->dtype, DT_F64);
  interp_free(it);
  graph_free(g);
}

Test(interp, cast_truncates_to_i32) {
  Graph *g = gnew(DT_F64);
  int x = leaf(g, DT_F64, SH(4)), n = leaf(g, DT_I32, SH(2));
  Attr a = attr_default(OP_CAST);
  a.i[0] = DT_I32;
  int ci = op(g, OP_CAST, &a, 1, x);
  a.i[0] = DT_F64;
  int cf = op(g, OP_CAST, &a, 1, n);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, x, 1.7, -1.7, 2, -0.5);
  SET(it, n, 3, -4);
  run(g, it);
  cr_assert_eq(interp_value(it, ci)->dtype, DT_I32);
  CHECK(it, ci, 0, 1, -1, 2, 0);
  CHECK(it, cf, 0, 3, -4);
  interp_free(it);
  graph_free(g);
}

Test(interp, stop_gradient_copies) {
  Graph *g = gnew(DT_F64);
  int x = leaf(g, DT_F64, SH(2, 2));
  int s = op1(g, OP_STOP_GRADIENT, x);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, x, 1, -2, 3, -4);
  run(g, it);
  check_shape(it, s, SH(2, 2));
  CHECK(it, s, 0, 1, -2, 3, -4);
  interp_free(it);
  graph_free(g);
}

Test(interp, unset_leaves_are_zero) {
  Graph *g = gnew(DT_F64);
  int x = leaf(g, DT_F64, SH(2));
  int e = op1(g, OP_EXP, x);
  Interp *it = run(g, interp_new(g, 0, 0, true));
  CHECK(it, x, 0, 0, 0);
  CHECK(it, e, 0, 1, 1);
  interp_free(it);
  graph_free(g);
}

// ---------------------------------------------------------------- reductions

static Attr red(Op o, bool keep, int naxes, ...) {
  Attr a = attr_default(o);
  a.b[0] = keep;
  if (naxes >= 0) {
    a.naxes = naxes;
    va_list ap;
    va_start(ap, naxes);
    for (int i = 0; i < naxes; i++) a.axes[i] = va_arg(ap, int);
    va_end(ap);
  }
  return a;
}

Test(interp, sum_mean_axes) {
  Graph *g = gnew(DT_F64);
  int x = leaf(g, DT_F64, SH(2, 3));
  Attr a = red(OP_SUM, false, -1);
  int all = op(g, OP_SUM, &a, 1, x);
  a = red(OP_SUM, false, 1, 0);
  int ax0 = op(g, OP_SUM, &a, 1, x);
  a = red(OP_SUM, false, 1, -1);
  int axm1 = op(g, OP_SUM, &a, 1, x);
  a = red(OP_SUM, true, 1, -1);
  int keep = op(g, OP_SUM, &a, 1, x);
  a = red(OP_MEAN, false, 1, 1);
  int mean1 = op(g, OP_MEAN, &a, 1, x);
  a = red(OP_MEAN, true, -1);
  int meanall = op(g, OP_MEAN, &a, 1, x);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, x, 1, 2, 3, 4, 5, 6);
  run(g, it);
  check_shape(it, all, SCALAR);
  CHECK(it, all, 0, 21);
  CHECK(it, ax0, 0, 5, 7, 9);
  CHECK(it, axm1, 0, 6, 15);
  check_shape(it, keep, SH(2, 1));
  CHECK(it, keep, 0, 6, 15);
  CHECK(it, mean1, 0, 2, 5);
  check_shape(it, meanall, SH(1, 1));
  CHECK(it, meanall, 0, 3.5);
  interp_free(it);
  graph_free(g);
}

// x[i,j,k] = 6i + 2j + k over [2,3,2]; axes given unordered and negative.
Test(interp, reduce_multiple_axes) {
  Graph *g = gnew(DT_F64);
  int x = leaf(g, DT_F64, SH(2, 3, 2));
  Attr a = red(OP_SUM, false, 2, -1, 0);
  int s = op(g, OP_SUM, &a, 1, x);
  a = red(OP_MAX, true, 2, 2, 0);
  int mx = op(g, OP_MAX, &a, 1, x);
  a = red(OP_MEAN, false, 2, 1, 2);
  int mn = op(g, OP_MEAN, &a, 1, x);
  a = red(OP_SUM, false, 0);
  int none = op(g, OP_SUM, &a, 1, x);
  Interp *it = interp_new(g, 0, 0, true);
  fill_iota(it, x, 0);
  run(g, it);
  check_shape(it, s, SH(3));
  CHECK(it, s, 0, 14, 22, 30);
  check_shape(it, mx, SH(1, 3, 1));
  CHECK(it, mx, 0, 7, 9, 11);
  CHECK(it, mn, 0, 2.5, 8.5);
  check_shape(it, none, SH(2, 3, 2));
  CHECK(it, none, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11);
  interp_free(it);
  graph_free(g);
}

Test(interp, max_min_ties_and_negatives) {
  Graph *g = gnew(DT_F64);
  int x = leaf(g, DT_F64, SH(2, 3));
  Attr a = red(OP_MAX, false, 1, 1);
  int mx = op(g, OP_MAX, &a, 1, x);
  a = red(OP_MIN, false, 1, 0);
  int mn = op(g, OP_MIN, &a, 1, x);
  a = red(OP_MAX, false, -1);
  int mxall = op(g, OP_MAX, &a, 1, x);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, x, -3, -1, -3, 2, 5, 5);
  run(g, it);
  CHECK(it, mx, 0, -1, 5);
  CHECK(it, mn, 0, -3, -1, -3);
  CHECK(it, mxall, 0, 5);
  interp_free(it);
  graph_free(g);
}

// NaN propagates through max and maximum; argmax picks the first NaN (NumPy).
Test(interp, nan_propagates) {
  Graph *g = gnew(DT_F64);
  int x = leaf(g, DT_F64, SH(4)), y = leaf(g, DT_F64, SH(4));
  Attr a = red(OP_MAX, false, -1);
  int mx = op(g, OP_MAX, &a, 1, x);
  int am = op1(g, OP_ARGMAX, x);
  int mm = op2(g, OP_MAXIMUM, x, y), mn = op2(g, OP_MINIMUM, y, x);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, x, 1, NAN, 3, NAN);
  SET(it, y, 0, 0, 0, 0);
  run(g, it);
  CHECK(it, mx, 0, NAN);
  CHECK(it, am, 0, 1);
  CHECK(it, mm, 0, 1, NAN, 3, NAN);
  CHECK(it, mn, 0, 0, NAN, 0, NAN);
  interp_free(it);
  graph_free(g);
}

Test(interp, var_population) {
  Graph *g = gnew(DT_F64);
  int x = leaf(g, DT_F64, SH(2, 3));
  Attr a = red(OP_VAR, false, 1, -1);
  int v1 = op(g, OP_VAR, &a, 1, x);
  a = red(OP_VAR, false, -1);
  int vall = op(g, OP_VAR, &a, 1, x);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, x, 1, 2, 3, 4, 5, 6);
  run(g, it);
  CHECK(it, v1, 1e-15, 2.0 / 3, 2.0 / 3);
  CHECK(it, vall, 1e-15, 35.0 / 12);
  interp_free(it);
  graph_free(g);
}

Test(interp, logsumexp_stable) {
  Graph *g = gnew(DT_F64);
  int x = leaf(g, DT_F64, SH(3, 3));
  Attr a = red(OP_LOGSUMEXP, false, 1, -1);
  int l = op(g, OP_LOGSUMEXP, &a, 1, x);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, x, 1, 2, 3, 1000, 1000, -INFINITY, -INFINITY, -INFINITY, -INFINITY);
  run(g, it);
  CHECK(it, l, 1e-15, 3.40760596444438, 1000.6931471805599, -INFINITY);
  interp_free(it);
  graph_free(g);
}

Test(interp, reduce_i32_stays_int) {
  Graph *g = gnew(DT_F32);
  Attr a = attr_default(OP_ARANGE);
  a.i[0] = 4;
  int r = op(g, OP_ARANGE, &a, 0);
  a = red(OP_SUM, false, -1);
  int s = op(g, OP_SUM, &a, 1, r);
  a = red(OP_MEAN, false, -1);
  int m = op(g, OP_MEAN, &a, 1, r);
  Interp *it = run(g, interp_new(g, 0, 0, true));
  cr_assert_eq(interp_value(it, s)->dtype, DT_I32);
  CHECK(it, s, 0, 6);
  CHECK(it, m, 0, 1.5);
  interp_free(it);
  graph_free(g);
}

// ---------------------------------------------------------------- shape ops

Test(interp, reshape_keeps_order) {
  Graph *g = gnew(DT_F64);
  int x = leaf(g, DT_F64, SH(2, 3));
  Attr a = attr_default(OP_RESHAPE);
  a.shape = SH(3, -1);
  int r = op(g, OP_RESHAPE, &a, 1, x);
  Interp *it = interp_new(g, 0, 0, true);
  fill_iota(it, x, 1);
  run(g, it);
  check_shape(it, r, SH(3, 2));
  CHECK(it, r, 0, 1, 2, 3, 4, 5, 6);
  interp_free(it);
  graph_free(g);
}

Test(interp, transpose_default_and_perm) {
  Graph *g = gnew(DT_F64);
  int x = leaf(g, DT_F64, SH(2, 3)), y = leaf(g, DT_F64, SH(2, 3, 4));
  int t = op1(g, OP_TRANSPOSE, x);
  Attr a = attr_default(OP_TRANSPOSE);
  a.naxes = 3;
  a.axes[0] = -1, a.axes[1] = 0, a.axes[2] = 1;  // [2, 0, 1]
  int p = op(g, OP_TRANSPOSE, &a, 1, y);
  Interp *it = interp_new(g, 0, 0, true);
  fill_iota(it, x, 1);
  fill_iota(it, y, 0);  // y[a,b,c] = 12a + 4b + c
  run(g, it);
  check_shape(it, t, SH(3, 2));
  CHECK(it, t, 0, 1, 4, 2, 5, 3, 6);
  check_shape(it, p, SH(4, 2, 3));  // p[i,j,k] = y[j,k,i] = 12j + 4k + i
  CHECK(it, p, 0, 0, 4, 8, 12, 16, 20, 1, 5, 9, 13, 17, 21, 2, 6, 10, 14, 18, 22, 3, 7, 11, 15, 19, 23);
  interp_free(it);
  graph_free(g);
}

Test(interp, broadcast_to) {
  Graph *g = gnew(DT_F64);
  int x = leaf(g, DT_F64, SH(3)), y = leaf(g, DT_F64, SH(2, 1));
  Attr a = attr_default(OP_BROADCAST_TO);
  a.shape = SH(2, 3);
  int bx = op(g, OP_BROADCAST_TO, &a, 1, x), by = op(g, OP_BROADCAST_TO, &a, 1, y);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, x, 1, 2, 3);
  SET(it, y, 7, 8);
  run(g, it);
  check_shape(it, bx, SH(2, 3));
  CHECK(it, bx, 0, 1, 2, 3, 1, 2, 3);
  CHECK(it, by, 0, 7, 7, 7, 8, 8, 8);
  interp_free(it);
  graph_free(g);
}

Test(interp, concat_three_and_axis0) {
  Graph *g = gnew(DT_F64);
  int a = leaf(g, DT_F64, SH(2, 1)), b = leaf(g, DT_F64, SH(2, 2)), c = leaf(g, DT_F64, SH(2, 1));
  int d = leaf(g, DT_F64, SH(1, 2));
  int cat = op(g, OP_CONCAT, NULL, 3, a, b, c);  // axis -1 by default
  Attr at = attr_default(OP_CONCAT);
  at.i[0] = 0;
  int cat0 = op(g, OP_CONCAT, &at, 2, d, b);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, a, 1, 2);
  SET(it, b, 3, 4, 5, 6);
  SET(it, c, 7, 8);
  SET(it, d, -1, -2);
  run(g, it);
  check_shape(it, cat, SH(2, 4));
  CHECK(it, cat, 0, 1, 3, 4, 7, 2, 5, 6, 8);
  check_shape(it, cat0, SH(3, 2));
  CHECK(it, cat0, 0, -1, -2, 3, 4, 5, 6);
  interp_free(it);
  graph_free(g);
}

Test(interp, slice_axes_and_negative_bounds) {
  Graph *g = gnew(DT_F64);
  int x = leaf(g, DT_F64, SH(2, 4));
  Attr a = attr_default(OP_SLICE);
  a.i[0] = 1, a.i[1] = 3;  // axis -1
  int s1 = op(g, OP_SLICE, &a, 1, x);
  a.i[0] = -2, a.i[1] = 4;
  int s2 = op(g, OP_SLICE, &a, 1, x);
  a.i[0] = 1, a.i[1] = 2, a.i[2] = 0;
  int s3 = op(g, OP_SLICE, &a, 1, x);
  Interp *it = interp_new(g, 0, 0, true);
  fill_iota(it, x, 0);
  run(g, it);
  check_shape(it, s1, SH(2, 2));
  CHECK(it, s1, 0, 1, 2, 5, 6);
  CHECK(it, s2, 0, 2, 3, 6, 7);
  check_shape(it, s3, SH(1, 4));
  CHECK(it, s3, 0, 4, 5, 6, 7);
  interp_free(it);
  graph_free(g);
}

// ---------------------------------------------------------------- linear algebra

Test(interp, matmul_2d) {
  Graph *g = gnew(DT_F64);
  int a = leaf(g, DT_F64, SH(2, 3)), b = leaf(g, DT_F64, SH(3, 2));
  int m = op2(g, OP_MATMUL, a, b);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, a, 1, 2, 3, 4, 5, 6);
  SET(it, b, 7, 8, 9, 10, 11, 12);
  run(g, it);
  CHECK(it, m, 0, 58, 64, 139, 154);
  interp_free(it);
  graph_free(g);
}

// a [2,1,1,2] @ b [3,2,1] -> [2,3,1,1]: out[i,j] = a_i . b_j.
Test(interp, matmul_batch_broadcast) {
  Graph *g = gnew(DT_F64);
  int a = leaf(g, DT_F64, SH(2, 1, 1, 2)), b = leaf(g, DT_F64, SH(3, 2, 1));
  int c = leaf(g, DT_F64, SH(2, 1, 2)), d = leaf(g, DT_F64, SH(2, 1));
  int m = op2(g, OP_MATMUL, a, b), m2 = op2(g, OP_MATMUL, c, d);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, a, 1, 2, 3, 4);
  SET(it, b, 1, 0, 0, 1, 1, 1);
  SET(it, c, 1, 2, 3, 4);
  SET(it, d, 5, 6);
  run(g, it);
  check_shape(it, m, SH(2, 3, 1, 1));
  CHECK(it, m, 0, 1, 2, 3, 3, 4, 7);
  check_shape(it, m2, SH(2, 1, 1));
  CHECK(it, m2, 0, 17, 39);
  interp_free(it);
  graph_free(g);
}

Test(interp, linear_bias_broadcast) {
  Graph *g = gnew(DT_F64);
  int x = leaf(g, DT_F64, SH(2, 2)), w = leaf(g, DT_F64, SH(2, 3)), b = leaf(g, DT_F64, SH(3));
  int y = op(g, OP_LINEAR, NULL, 3, x, w, b);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, x, 1, 2, 3, 4);
  SET(it, w, 1, 0, 1, 0, 1, 1);
  SET(it, b, 10, 20, 30);
  run(g, it);
  check_shape(it, y, SH(2, 3));
  CHECK(it, y, 0, 11, 22, 33, 13, 24, 37);
  interp_free(it);
  graph_free(g);
}

// ---------------------------------------------------------------- indexing

Test(interp, embedding_rows) {
  Graph *g = gnew(DT_F64);
  int ids = leaf(g, DT_I32, SH(2, 2)), tab = leaf(g, DT_F64, SH(3, 2));
  int e = op2(g, OP_EMBEDDING, ids, tab);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, ids, 0, 2, 1, 0);
  SET(it, tab, 1, 2, 3, 4, 5, 6);
  run(g, it);
  check_shape(it, e, SH(2, 2, 2));
  CHECK(it, e, 0, 1, 2, 5, 6, 3, 4, 1, 2);
  interp_free(it);
  graph_free(g);
}

Test(interp, embedding_out_of_range_fails) {
  Graph *g = gnew(DT_F64);
  int ids = leaf(g, DT_I32, SH(3)), tab = leaf(g, DT_F64, SH(5, 1));
  int e = op2(g, OP_EMBEDDING, ids, tab);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, ids, 1, 7, 2);
  SET(it, tab, 10, 11, 12, 13, 14);
  cr_assert_not(interp_run(it));
  cr_assert(it->failed);
  cr_assert_str_eq(it->err, "embedding: id 7 out of range [0, 5)");
  CHECK(it, e, 0, 11, 0, 12);  // the bad row is zeros
  SET(it, ids, -1, 0, 0);
  cr_assert_not(interp_run(it));
  cr_assert_str_eq(it->err, "embedding: id -1 out of range [0, 5)");
  SET(it, ids, 4, 0, 0);
  cr_assert(interp_run(it), "a good run after a failed one: %s", it->err);
  cr_assert_not(it->failed);
  interp_free(it);
  graph_free(g);
}

Test(interp, one_hot_out_of_range_zero_row) {
  Graph *g = gnew(DT_F64);
  int ids = leaf(g, DT_I32, SH(4));
  Attr a = attr_default(OP_ONE_HOT);
  a.i[0] = 3;
  int oh = op(g, OP_ONE_HOT, &a, 1, ids);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, ids, 0, 2, 5, -1);
  run(g, it);
  check_shape(it, oh, SH(4, 3));
  CHECK(it, oh, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0);
  interp_free(it);
  graph_free(g);
}

Test(interp, arange_i32) {
  Graph *g = gnew(DT_F64);
  Attr a = attr_default(OP_ARANGE);
  a.i[0] = 4;
  int r = op(g, OP_ARANGE, &a, 0);
  Interp *it = run(g, interp_new(g, 0, 0, true));
  cr_assert_eq(interp_value(it, r)->dtype, DT_I32);
  CHECK(it, r, 0, 0, 1, 2, 3);
  interp_free(it);
  graph_free(g);
}

Test(interp, argmax_first_on_ties) {
  Graph *g = gnew(DT_F64);
  int x = leaf(g, DT_F64, SH(3, 3));
  int am = op1(g, OP_ARGMAX, x);  // axis -1
  Attr a = attr_default(OP_ARGMAX);
  a.i[0] = 0;
  int am0 = op(g, OP_ARGMAX, &a, 1, x);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, x, 1, 3, 3, 5, 2, 5, 2, 2, 2);
  run(g, it);
  check_shape(it, am, SH(3));
  cr_assert_eq(interp_value(it, am)->dtype, DT_I32);
  CHECK(it, am, 0, 1, 0, 0);
  CHECK(it, am0, 0, 1, 0, 1);
  interp_free(it);
  graph_free(g);
}

// ---------------------------------------------------------------- normalization

Test(interp, layer_norm_last_axis) {
  Graph *g = gnew(DT_F64);
  int x = leaf(g, DT_F64, SH(2, 4)), gam = leaf(g, DT_F64, SH(4));
  int one = g_const(g, 1, L), zero = g_const(g, 0, L);
  Attr a = attr_default(OP_LAYER_NORM);
  a.f[0] = 0;
  int ln = op(g, OP_LAYER_NORM, &a, 3, x, gam, one);
  int ln_eps = op(g, OP_LAYER_NORM, NULL, 3, x, one, zero);  // eps 1e-5
  Interp *it = interp_new(g, 0, 0, true);
  // row 0: mean 2.5, var 1.25; row 1: the same shifted by 10.
  SET(it, x, 1, 2, 3, 4, 11, 12, 13, 14);
  SET(it, gam, 1, 2, 1, 1);
  run(g, it);
  CHECK(it, ln, 1e-14, -0.3416407864998738, 0.1055728090000843, 1.4472135954999579, 2.3416407864998738,
        -0.3416407864998738, 0.1055728090000843, 1.4472135954999579, 2.3416407864998738);
  CHECK(it, ln_eps, 1e-7, -1.34163542, -0.44721181, 0.44721181, 1.34163542, -1.34163542, -0.44721181, 0.44721181,
        1.34163542);
  interp_free(it);
  graph_free(g);
}

Test(interp, rms_norm) {
  Graph *g = gnew(DT_F64);
  int x = leaf(g, DT_F64, SH(1, 2)), gam = leaf(g, DT_F64, SH(2));
  Attr a = attr_default(OP_RMS_NORM);
  a.f[0] = 0;
  int r = op(g, OP_RMS_NORM, &a, 2, x, gam);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, x, 3, 4);  // mean(x^2) = 12.5
  SET(it, gam, 1, 2);
  run(g, it);
  CHECK(it, r, 1e-14, 3 / sqrt(12.5), 8 / sqrt(12.5));
  CHECK(it, r, 1e-8, 0.84852814, 2.2627417);
  interp_free(it);
  graph_free(g);
}

// x [4,2]: column 0 is 1..4 (mean 2.5, var 1.25), column 1 is 0,2,0,2 (mean 1,
// var 1). Running stats: mean [1, 0], var [4, 1].
Test(interp, batch_norm_train_vs_eval) {
  Graph *g = gnew(DT_F64);
  int x = leaf(g, DT_F64, SH(4, 2)), gam = leaf(g, DT_F64, SH(2)), bet = leaf(g, DT_F64, SH(2));
  Shape c = SH(2);
  int rm = g_leaf(g, OP_STATE, "bn.running_mean", DT_F64, &c, L);
  int rv = g_leaf(g, OP_STATE, "bn.running_var", DT_F64, &c, L);
  Attr a = attr_default(OP_BATCH_NORM);
  a.f[0] = 0;
  int bn = op(g, OP_BATCH_NORM, &a, 5, x, gam, bet, rm, rv);
  for (int train = 1; train >= 0; train--) {
    Interp *it = interp_new(g, 0, 0, train);
    SET(it, x, 1, 0, 2, 2, 3, 0, 4, 2);
    SET(it, gam, 1, 1);
    SET(it, bet, 0, 10);
    SET(it, rm, 1, 0);
    SET(it, rv, 4, 1);
    run(g, it);
    if (train)
      CHECK(it, bn, 1e-14, -1.3416407864998738, 9, -0.4472135954999579, 11, 0.4472135954999579, 9, 1.3416407864998738,
            11);
    else
      CHECK(it, bn, 0, 0, 10, 0.5, 12, 1, 10, 1.5, 12);
    interp_free(it);
  }
  graph_free(g);
}

Test(interp, softmax_known_values) {
  Graph *g = gnew(DT_F64);
  int x = leaf(g, DT_F64, SH(2, 3)), y = leaf(g, DT_F64, SH(3, 1));
  int sm = op1(g, OP_SOFTMAX, x), lsm = op1(g, OP_LOG_SOFTMAX, x);
  Attr a = attr_default(OP_SOFTMAX);
  a.i[0] = 0;
  int sm0 = op(g, OP_SOFTMAX, &a, 1, y);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, x, 1, 2, 3, 1000, 1000, -INFINITY);
  SET(it, y, 1, 2, 3);
  run(g, it);
  CHECK(it, sm, 1e-8, 0.09003057, 0.24472847, 0.66524096, 0.5, 0.5, 0);
  CHECK(it, sm0, 1e-8, 0.09003057, 0.24472847, 0.66524096);
  CHECK(it, lsm, 1e-14, -2.40760596444438, -1.40760596444438, -0.40760596444438, -0.6931471805599453,
        -0.6931471805599453, -INFINITY);
  interp_free(it);
  graph_free(g);
}

// ---------------------------------------------------------------- attention

// B=1, T=2, C=2, two heads of one channel (scale 1). Head 0: q = (1, 1),
// k = (0, ln 3), v = (4, 8): query 1 weighs keys 1/4, 3/4 -> 7. Head 1:
// q = (5, 2), k = (0, 0), v = (10, 20): uniform -> 15. Causal query 0 sees
// only key 0.
Test(interp, attention_two_heads_by_hand) {
  Graph *g = gnew(DT_F64);
  int q = leaf(g, DT_F64, SH(1, 2, 2)), k = leaf(g, DT_F64, SH(1, 2, 2));
  int v = leaf(g, DT_F64, SH(1, 2, 2));
  Attr a = attr_default(OP_ATTENTION);
  a.i[0] = 2;
  int full = op(g, OP_ATTENTION, &a, 3, q, k, v);
  a.b[0] = true;
  int causal = op(g, OP_ATTENTION, &a, 3, q, k, v);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, q, 1, 5, 1, 2);
  SET(it, k, 0, 0, log(3.0), 0);
  SET(it, v, 4, 10, 8, 20);
  run(g, it);
  check_shape(it, causal, SH(1, 2, 2));
  CHECK(it, causal, 1e-14, 4, 10, 7, 15);
  CHECK(it, full, 1e-14, 7, 15, 7, 15);
  interp_free(it);
  graph_free(g);
}

// The same op against its definition composed from slice, transpose, mul,
// causal_mask, softmax, matmul and concat: B=2, T=3, C=4, 2 heads.
Test(interp, attention_matches_composition) {
  for (int causal = 0; causal <= 1; causal++) {
    Graph *g = gnew(DT_F64);
    int q = leaf(g, DT_F64, SH(2, 3, 4)), k = leaf(g, DT_F64, SH(2, 3, 4));
    int v = leaf(g, DT_F64, SH(2, 3, 4));
    Attr a = attr_default(OP_ATTENTION);
    a.i[0] = 2;
    a.b[0] = causal;
    int att = op(g, OP_ATTENTION, &a, 3, q, k, v);
    int heads[2];
    int scale = g_const(g, 1 / sqrt(2.0), L);
    for (int h = 0; h < 2; h++) {
      Attr s = attr_default(OP_SLICE);
      s.i[0] = 2 * h, s.i[1] = 2 * h + 2;
      int qh = op(g, OP_SLICE, &s, 1, q), kh = op(g, OP_SLICE, &s, 1, k);
      int vh = op(g, OP_SLICE, &s, 1, v);
      int sc = op2(g, OP_MUL, op2(g, OP_MATMUL, qh, op1(g, OP_TRANSPOSE, kh)), scale);
      if (causal) sc = op1(g, OP_CAUSAL_MASK, sc);
      heads[h] = op2(g, OP_MATMUL, op1(g, OP_SOFTMAX, sc), vh);
    }
    int ref = op2(g, OP_CONCAT, heads[0], heads[1]);
    Interp *it = interp_new(g, 0, 0, true);
    double d[24];
    for (int t = 0; t < 3; t++) {
      for (int i = 0; i < 24; i++) d[i] = sin(1.3 * i + 0.7 * t) * (1 + t);
      interp_set(it, t == 0 ? q : t == 1 ? k : v, d, 24);
    }
    run(g, it);
    const Value *x = interp_value(it, att), *y = interp_value(it, ref);
    for (int i = 0; i < 24; i++)
      cr_assert(close_to(x->v[i], y->v[i], 1e-13), "causal=%d [%d]: %g vs %g", causal, i, x->v[i], y->v[i]);
    interp_free(it);
    graph_free(g);
  }
}

Test(interp, causal_mask) {
  Graph *g = gnew(DT_F64);
  int x = leaf(g, DT_F64, SH(2, 2, 3));
  int m = op1(g, OP_CAUSAL_MASK, x);
  Interp *it = interp_new(g, 0, 0, true);
  fill_iota(it, x, 1);
  run(g, it);
  double ninf = -INFINITY;
  CHECK(it, m, 0, 1, ninf, ninf, 4, 5, ninf, 7, ninf, ninf, 10, 11, ninf);
  interp_free(it);
  graph_free(g);
}

// ---------------------------------------------------------------- convolution

// x 3x3 = 1..9, w 2x2 = [[1,2],[3,4]], stride 2, padding 1 -> 2x2. Window
// (oh, ow) starts at input (2oh - 1, 2ow - 1):
//   (0,0): 4*1 = 4           (0,1): 3*2 + 4*3 = 18
//   (1,0): 2*4 + 4*7 = 36    (1,1): 1*5 + 2*6 + 3*8 + 4*9 = 77
Test(interp, conv2d_stride2_pad1) {
  Graph *g = gnew(DT_F64);
  int x = leaf(g, DT_F64, SH(1, 3, 3, 1)), w = leaf(g, DT_F64, SH(2, 2, 1, 1));
  Attr a = attr_default(OP_CONV2D);
  a.i[0] = 2, a.i[1] = 1;
  int c = op(g, OP_CONV2D, &a, 2, x, w);
  Interp *it = interp_new(g, 0, 0, true);
  fill_iota(it, x, 1);
  SET(it, w, 1, 2, 3, 4);
  run(g, it);
  check_shape(it, c, SH(1, 2, 2, 1));
  CHECK(it, c, 0, 4, 18, 36, 77);
  interp_free(it);
  graph_free(g);
}

// 1x1 kernel mixing 2 input channels into 2 outputs, batch of 2.
Test(interp, conv2d_channels) {
  Graph *g = gnew(DT_F64);
  int x = leaf(g, DT_F64, SH(2, 1, 2, 2)), w = leaf(g, DT_F64, SH(1, 1, 2, 2));
  int c = op2(g, OP_CONV2D, x, w);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, x, 1, 2, 3, 4, 0, 1, -1, 0);
  SET(it, w, 1, 2, 3, 4);  // w[ci][co]
  run(g, it);
  check_shape(it, c, SH(2, 1, 2, 2));
  CHECK(it, c, 0, 7, 10, 15, 22, 3, 4, -1, -2);
  interp_free(it);
  graph_free(g);
}

Test(interp, pools) {
  Graph *g = gnew(DT_F64);
  int x = leaf(g, DT_F64, SH(1, 4, 4, 1));
  Attr a = attr_default(OP_MAX_POOL2D);
  a.i[0] = 2;
  int mp = op(g, OP_MAX_POOL2D, &a, 1, x);
  int ap = op(g, OP_AVG_POOL2D, &a, 1, x);
  a.i[0] = 3, a.i[1] = 1;
  int ap3 = op(g, OP_AVG_POOL2D, &a, 1, x);
  int mp3 = op(g, OP_MAX_POOL2D, &a, 1, x);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, x, 1, 2, 5, 5,  //
      3, 4, 5, 5,         // a tie: four 5s in one window
      0, 0, -1, -2,       //
      0, 0, -3, -4);
  run(g, it);
  check_shape(it, mp, SH(1, 2, 2, 1));
  CHECK(it, mp, 0, 4, 5, 0, -1);
  CHECK(it, ap, 0, 2.5, 5, 0, -2.5);
  check_shape(it, ap3, SH(1, 2, 2, 1));
  CHECK(it, ap3, 1e-15, 19.0 / 9, 23.0 / 9, 8.0 / 9, 4.0 / 9);
  CHECK(it, mp3, 0, 5, 5, 5, 5);
  interp_free(it);
  graph_free(g);
}

// ---------------------------------------------------------------- dropout

enum { NDROP = 10000 };

static int dropout_graph(Graph *g, double p, int *x) {
  *x = leaf(g, DT_F64, SH(NDROP));
  Attr a = attr_default(OP_DROPOUT);
  a.f[0] = p;
  a.salt = 42;
  return op(g, OP_DROPOUT, &a, 1, *x);
}

// Runs dropout of p over ones; copies the result into out.
static void dropout_run(Graph *g, int x, int d, uint64_t seed, uint64_t step, bool train, double *out) {
  static double ones[NDROP];
  for (int i = 0; i < NDROP; i++) ones[i] = 1;
  Interp *it = interp_new(g, seed, step, train);
  interp_set(it, x, ones, NDROP);
  run(g, it);
  memcpy(out, interp_value(it, d)->v, sizeof ones);
  interp_free(it);
}

Test(interp, dropout_determinism_and_rate) {
  static double a[NDROP], b[NDROP], c[NDROP], e[NDROP];
  Graph *g = gnew(DT_F64);
  int x, d = dropout_graph(g, 0.3, &x);
  dropout_run(g, x, d, 7, 3, true, a);
  dropout_run(g, x, d, 7, 3, true, b);
  dropout_run(g, x, d, 7, 4, true, c);
  dropout_run(g, x, d, 8, 3, true, e);
  int kept = 0, diff_step = 0, diff_seed = 0;
  for (int i = 0; i < NDROP; i++) {
    cr_assert(a[i] == 0 || a[i] == 1 / 0.7, "[%d] = %g", i, a[i]);
    cr_assert_eq(a[i], b[i], "same seed and step, different mask at %d", i);
    kept += a[i] != 0;
    diff_step += a[i] != c[i];
    diff_seed += a[i] != e[i];
  }
  cr_assert(kept > 6800 && kept < 7200, "keep rate %d / 10000 for p = 0.3", kept);
  cr_assert_gt(diff_step, 1000);
  cr_assert_gt(diff_seed, 1000);
  // Element 0 follows the runtime's counter-based draw.
  uint64_t key = bpcrt_dropout_key(7, 42, 3);
  for (int i = 0; i < 4; i++)
    cr_assert_eq(a[i] != 0, bpcrt_dropout_draw(bpcrt_dropout_key32(key, (uint64_t)i), (uint64_t)i) >=
                                bpcrt_dropout_threshold(0.3));
  dropout_run(g, x, d, 7, 3, false, a);  // eval: identity
  for (int i = 0; i < NDROP; i++) cr_assert_eq(a[i], 1);
  graph_free(g);
}

Test(interp, dropout_p_extremes) {
  static double a[NDROP];
  for (int k = 0; k < 2; k++) {
    Graph *g = gnew(DT_F64);
    int x, d = dropout_graph(g, k ? 1.0 : 0.0, &x);
    dropout_run(g, x, d, 1, 0, true, a);
    for (int i = 0; i < NDROP; i++) cr_assert_eq(a[i], k ? 0.0 : 1.0, "p=%d [%d]", k, i);
    graph_free(g);
  }
}

// ---------------------------------------------------------------- losses, metrics

// lse([1,2,3]) = 3.40760596444438; labels 2 and 0 give 0.4076.. and 2.4076..
Test(interp, cross_entropy_mean_and_stable) {
  Graph *g = gnew(DT_F64);
  int x = leaf(g, DT_F64, SH(1, 2, 3)), y = leaf(g, DT_I32, SH(1, 2));
  int ce = op2(g, OP_CROSS_ENTROPY, x, y);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, x, 1, 2, 3, 1, 2, 3);
  SET(it, y, 2, 0);
  run(g, it);
  check_shape(it, ce, SCALAR);
  CHECK(it, ce, 1e-15, 1.40760596444438);
  SET(it, x, 1000, 0, 0, 1000, 0, 0);
  SET(it, y, 0, 1);
  run(g, it);
  CHECK(it, ce, 1e-15, 500);  // (0 + 1000) / 2, no overflow
  interp_free(it);
  graph_free(g);
}

Test(interp, cross_entropy_label_out_of_range) {
  Graph *g = gnew(DT_F64);
  int x = leaf(g, DT_F64, SH(2, 10)), y = leaf(g, DT_I32, SH(2));
  int ce = op2(g, OP_CROSS_ENTROPY, x, y);
  int after = op1(g, OP_NEG, ce);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, y, 3, 12);
  cr_assert_not(interp_run(it));
  cr_assert_str_eq(it->err, "cross_entropy: label 12 out of range [0, 10)");
  cr_assert_not_null(interp_value(it, after)->v);
  interp_free(it);
  graph_free(g);
}

// log(2) for logit 0; softplus(-2) = 0.1269280110429725 for (2, t=1) and (-2, t=0).
Test(interp, bce_with_logits) {
  Graph *g = gnew(DT_F64);
  int x = leaf(g, DT_F64, SH(2, 2)), t = leaf(g, DT_F64, SH(2));
  int x1 = leaf(g, DT_F64, SH(2)), t1 = leaf(g, DT_F64, SH(2));
  int l = op2(g, OP_BINARY_CROSS_ENTROPY, x, t), l1 = op2(g, OP_BINARY_CROSS_ENTROPY, x1, t1);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, x, 0, 0, 2, -2);
  SET(it, t, 1, 0);
  SET(it, x1, 1000, -1000);
  SET(it, t1, 0, 0.5);
  run(g, it);
  check_shape(it, l, SCALAR);
  CHECK(it, l, 1e-15, 0.4100375958014589);
  CHECK(it, l1, 1e-15, 750);  // (1000 + 500) / 2
  interp_free(it);
  graph_free(g);
}

Test(interp, mse_broadcast) {
  Graph *g = gnew(DT_F64);
  int p = leaf(g, DT_F64, SH(2, 2)), t = leaf(g, DT_F64, SH(2));
  int m = op2(g, OP_MSE, p, t), m2 = op2(g, OP_MSE, t, p);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, p, 1, 2, 3, 4);
  SET(it, t, 1, 1);
  run(g, it);
  CHECK(it, m, 0, 3.5);  // (0 + 1 + 4 + 9) / 4
  CHECK(it, m2, 0, 3.5);
  interp_free(it);
  graph_free(g);
}

// Rows: tie picks index 1 (right), argmax 0 vs label 2 (wrong), right, and
// label 9 out of range (wrong, not an error).
Test(interp, accuracy_ties_and_bad_labels) {
  Graph *g = gnew(DT_F64);
  int x = leaf(g, DT_F64, SH(4, 3)), y = leaf(g, DT_I32, SH(4));
  int acc = op2(g, OP_ACCURACY, x, y);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, x, 1, 3, 3, 5, 2, 5, 0, 0, 1, 1, 0, 0);
  SET(it, y, 1, 2, 2, 9);
  run(g, it);
  check_shape(it, acc, SCALAR);
  CHECK(it, acc, 0, 0.5);
  interp_free(it);
  graph_free(g);
}

// ---------------------------------------------------------------- fills

Test(interp, fills) {
  Graph *g = gnew(DT_F64);
  Attr a = attr_default(OP_ZEROS);
  a.shape = SH(2);
  int z = op(g, OP_ZEROS, &a, 0);
  a.shape = SH(2, 2);
  int o = op(g, OP_ONES, &a, 0);
  a = attr_default(OP_FULL);
  a.shape = SH(3);
  a.f[0] = 2.5;
  int f = op(g, OP_FULL, &a, 0);
  Interp *it = run(g, interp_new(g, 0, 0, true));
  CHECK(it, z, 0, 0, 0);
  check_shape(it, o, SH(2, 2));
  CHECK(it, o, 0, 1, 1, 1, 1);
  CHECK(it, f, 0, 2.5, 2.5, 2.5);
  interp_free(it);
  graph_free(g);
}

// ---------------------------------------------------------------- dtypes

// Every result of an f32 graph is exactly a float; f64 keeps full precision.
Test(interp, f32_results_are_floats) {
  Graph *g = gnew(DT_F32);
  int x = leaf(g, DT_F32, SH(4));
  int one = g_const(g, 1, L);
  int third = op2(g, OP_DIV, one, g_const(g, 3, L));
  int e = op1(g, OP_EXP, x), sm = op1(g, OP_SOFTMAX, x), s = op2(g, OP_ADD, x, x);
  Attr a = red(OP_MEAN, false, -1);
  int m = op(g, OP_MEAN, &a, 1, x);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, x, 0.1, 1, 2, 3);
  run(g, it);
  cr_assert_eq(interp_value(it, x)->v[0], (double)0.1f, "inputs are rounded on set");
  CHECK(it, third, 0, (double)(1.0f / 3.0f));
  cr_assert_neq(interp_value(it, third)->v[0], 1.0 / 3);
  cr_assert_eq(interp_value(it, e)->v[1], (double)(float)exp(1.0));
  int ids[] = {x, third, e, sm, s, m};
  for (int k = 0; k < 6; k++) {
    const Value *v = interp_value(it, ids[k]);
    cr_assert_eq(v->dtype, DT_F32);
    for (int64_t i = 0; i < shape_numel(&v->shape); i++)
      cr_assert_eq(v->v[i], (double)(float)v->v[i], "node %d [%lld] not a float", ids[k], (long long)i);
  }
  interp_free(it);
  graph_free(g);

  g = gnew(DT_F64);
  one = g_const(g, 1, L);
  third = op2(g, OP_DIV, one, g_const(g, 3, L));
  it = run(g, interp_new(g, 0, 0, true));
  CHECK(it, third, 0, 1.0 / 3);
  interp_free(it);
  graph_free(g);
}

Test(interp, i32_set_truncates) {
  Graph *g = gnew(DT_F32);
  int n = leaf(g, DT_I32, SH(3));
  int s = op2(g, OP_ADD, n, n);
  Interp *it = interp_new(g, 0, 0, true);
  SET(it, n, 1.9, -2.5, 3);
  run(g, it);
  CHECK(it, n, 0, 1, -2, 3);
  cr_assert_eq(interp_value(it, s)->dtype, DT_I32);
  CHECK(it, s, 0, 2, -4, 6);
  interp_free(it);
  graph_free(g);
}

// ---------------------------------------------------------------- params and state

Test(interp, init_params_and_state) {
  Graph *g = gnew(DT_F32);
  Shape s1 = SH(4, 6), s2 = SH(2, 3, 5), s3 = SH(3), s0 = SCALAR;
  int w = g_leaf(g, OP_PARAM, "w", DT_F32, &s1, L);
  int h = g_leaf(g, OP_PARAM, "blk.h", DT_F32, &s2, L);
  int c = g_leaf(g, OP_PARAM, "c", DT_F32, &s3, L);
  int z = g_leaf(g, OP_PARAM, "z", DT_F32, &s0, L);
  int rv = g_leaf(g, OP_STATE, "bn.running_var", DT_F32, &s3, L);
  VEC_PUSH(g->params, ((GParam){.name = "w", .node = w, .init = {INIT_XAVIER_UNIFORM, 0, 0}}));
  VEC_PUSH(g->params, ((GParam){.name = "blk.h", .node = h, .init = {INIT_HE_NORMAL, 0, 0}}));
  VEC_PUSH(g->params, ((GParam){.name = "c", .node = c, .init = {INIT_CONSTANT, 0.1, 0}}));
  VEC_PUSH(g->params, ((GParam){.name = "z", .node = z, .init = {INIT_UNIFORM, 2, 3}}));
  VEC_PUSH(g->states, ((GState){.name = "bn.running_var", .node = rv, .update = -1, .init = 1}));
  Interp *it = interp_new(g, 0, 0, true);
  interp_init_params(it, 5);
  // Fans: w [4,6] -> (4, 6); h [2,3,5] -> (6, 5); the scalar z -> (1, 1).
  double want[30];
  bpcrt_init_fill(BPCRT_INIT_XAVIER_UNIFORM, 0, 0, 4, 6, 5, bpcrt_fnv1a64("w"), 24, want);
  const Value *v = interp_value(it, w);
  double bound = sqrt(6.0 / 10);
  for (int i = 0; i < 24; i++) {
    cr_assert_eq(v->v[i], (double)(float)want[i]);
    cr_assert(fabs(v->v[i]) <= bound);
  }
  bpcrt_init_fill(BPCRT_INIT_HE_NORMAL, 0, 0, 6, 5, 5, bpcrt_fnv1a64("blk.h"), 30, want);
  v = interp_value(it, h);
  for (int i = 0; i < 30; i++) cr_assert_eq(v->v[i], (double)(float)want[i]);
  CHECK(it, c, 0, (double)0.1f, (double)0.1f, (double)0.1f);
  v = interp_value(it, z);
  cr_assert(v->v[0] >= 2 && v->v[0] < 3);
  CHECK(it, rv, 0, 1, 1, 1);
  // Same seed, same values; another seed, other values.
  Interp *it2 = interp_new(g, 0, 0, true), *it3 = interp_new(g, 0, 0, true);
  interp_init_params(it2, 5);
  interp_init_params(it3, 6);
  cr_assert_eq(memcmp(interp_value(it, w)->v, interp_value(it2, w)->v, 24 * sizeof(double)), 0);
  cr_assert_neq(memcmp(interp_value(it, w)->v, interp_value(it3, w)->v, 24 * sizeof(double)), 0);
  interp_free(it);
  interp_free(it2);
  interp_free(it3);
  graph_free(g);
}
