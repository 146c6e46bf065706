// test_kernels.c — the kernel library (runtime/kernels.c) against the
// reference interpreter. Each case builds the op in a tiny f64 Graph, runs
// the interpreter on random inputs (rounded to f32, so both kernel types see
// the same numbers) and checks:
// - the f64 kernel within 1e-10 relative (1e-12 absolute), the f32 kernel
//   within 1e-4 relative (1e-5 absolute, scaled by the case's magnitude);
// - bit-identical results when the range is split into pieces run in any order;
// - status words on bad ids and labels;
// and the f32 scalar math over dense sweeps against libm in double (the
// measured worst errors are printed; see accuracy notes in kernels.c).
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "bpc.h"
#include "bpc_kernels.h"
#include "bpcc.h"

// ---------------------------------------------------------------- helpers

static Diag diag;
static const Loc L;

static Shape mkshape(const int64_t *d, int rank) {
  Shape s = {.rank = rank};
  for (int i = 0; i < rank; i++) s.d[i] = d[i];
  return s;
}
#define SH(...) mkshape((int64_t[]){__VA_ARGS__}, (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))

static uint64_t rng_state = 0x1234567;
static double urand(void) {  // [0, 1)
  rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
  return (double)(rng_state >> 40) / 16777216.0;
}

// n values in [lo, hi), each exactly a float.
static double *rvec(int64_t n, double lo, double hi) {
  double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
  for (int64_t i = 0; i < n; i++) v[i] = (double)(float)(lo + (hi - lo) * urand());
  return v;
}
// n integers in [lo, hi].
static double *ivec(int64_t n, int64_t lo, int64_t hi) {
  double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
  for (int64_t i = 0; i < n; i++) v[i] = (double)(lo + (int64_t)(urand() * (double)(hi - lo + 1)));
  return v;
}

// ---- the reference: a graph run by the interpreter

typedef struct Ref {
  Graph *g;
  Interp *it;
  int n, leaf[8];
  double *data[8];
} Ref;

static Ref ref_new(void) {
  diag_init(&diag, stderr);
  return (Ref){.g = graph_new(&diag, NULL, DT_F64)};
}

// A leaf holding `data` (owned by the Ref from here on).
static int ref_in(Ref *r, DType dt, Shape s, double *data) {
  int id = g_leaf(r->g, OP_INPUT, "x", dt, &s, L);
  r->leaf[r->n] = id;
  r->data[r->n++] = data;
  return id;
}

static int ref_op(Ref *r, Op o, const Attr *a, int nin, ...) {
  int in[8];
  va_list ap;
  va_start(ap, nin);
  for (int i = 0; i < nin; i++) in[i] = va_arg(ap, int);
  va_end(ap);
  int id = g_op(r->g, o, L, nin, in, a);
  cr_assert_geq(id, 0, "shape rule of %s rejected the node", op_name(o));
  return id;
}

static const double *ref_run(Ref *r, int node, bool training, uint64_t seed, uint64_t step) {
  if (!r->it) {
    r->it = interp_new(r->g, seed, step, training);
    for (int i = 0; i < r->n; i++)
      interp_set(r->it, r->leaf[i], r->data[i], shape_numel(&graph_node(r->g, r->leaf[i])->shape));
    cr_assert(interp_run(r->it), "interp failed: %s", r->it->err);
  }
  return interp_value(r->it, node)->v;
}

static int64_t numel(const Ref *r, int node) { return shape_numel(&graph_node(r->g, node)->shape); }
static const Shape *shp(const Ref *r, int node) { return &graph_node(r->g, node)->shape; }

static void ref_free(Ref *r) {
  interp_free(r->it);
  graph_free(r->g);
  for (int i = 0; i < r->n; i++) free(r->data[i]);
}

// ---- the kernel harness: one call shape for both types

typedef struct K {
  int f32;
  void *in[8];
  void *out;
  int64_t d[16];
  double f[4];
  int64_t status[3];
  void *scratch;
} K;
typedef void (*RangeFn)(K *k, int64_t b, int64_t e);
#define CALL(name, ...) (k->f32 ? bpck_##name##_f32(__VA_ARGS__) : bpck_##name##_f64(__VA_ARGS__))

typedef struct Arg {
  const double *v;
  int64_t n;
  bool is_int;
} Arg;

typedef struct Case {
  const char *what;
  RangeFn fn;
  int nargs;
  Arg args[8];
  int64_t nout;
  bool out_int;
  const double *want;
  const double *out_init;  // initial content of out (gemm accumulate), else NULL
  int64_t total;           // the range
  size_t scratch;          // elements
  double tol32;            // absolute floor of the f32 check (default 1e-5)
  int64_t d[16];           // dims and flags, copied to K
  double f[4];             // float attributes, copied to K
} Case;

static bool close_enough(double got, double want, double rel, double abs_) {
  if (isnan(want)) return isnan(got);
  if (isinf(want)) return got == want;
  return fabs(got - want) <= abs_ + rel * fabs(want);
}

static double out_at(const K *k, const Case *c, int64_t i) {
  if (c->out_int) return ((int32_t *)k->out)[i];
  return k->f32 ? (double)((float *)k->out)[i] : ((double *)k->out)[i];
}

static void reset_out(K *k, const Case *c, size_t esz) {
  if (!c->out_init) {
    memset(k->out, 0xcd, esz * (size_t)c->nout);
    return;
  }
  for (int64_t i = 0; i < c->nout; i++) {
    if (k->f32)
      ((float *)k->out)[i] = (float)c->out_init[i];
    else
      ((double *)k->out)[i] = c->out_init[i];
  }
}

// Runs [a, b) as the given pieces, in the order listed.
static void run_pieces(K *k, const Case *c, size_t esz, const int64_t *cuts, int ncuts, const int *order) {
  reset_out(k, c, esz);
  for (int p = 0; p < ncuts - 1; p++) c->fn(k, cuts[order[p]], cuts[order[p] + 1]);
}

static void check_splits(K *k, const Case *c, size_t esz, const void *full) {
  int64_t n = c->total;
  int64_t ks[] = {1, n / 3, n / 2, n - 1};
  for (int i = 0; i < 4; i++) {
    if (ks[i] <= 0 || ks[i] >= n) continue;
    int64_t cuts[] = {0, ks[i], n};
    run_pieces(k, c, esz, cuts, 3, (int[]){1, 0});
    cr_assert(memcmp(k->out, full, esz * (size_t)c->nout) == 0, "%s (%s): split at %lld differs", c->what,
              k->f32 ? "f32" : "f64", (long long)ks[i]);
  }
  if (n >= 3) {
    int64_t cuts[] = {0, n / 3, 2 * n / 3 > n / 3 ? 2 * n / 3 : n / 3 + 1, n};
    run_pieces(k, c, esz, cuts, 4, (int[]){2, 0, 1});
    cr_assert(memcmp(k->out, full, esz * (size_t)c->nout) == 0, "%s (%s): 3-way split differs", c->what,
              k->f32 ? "f32" : "f64");
  }
}

// Both kernel types against c->want, plus the split check.
static void verify(const Case *c) {
  for (int f32 = 0; f32 < 2; f32++) {
    K kk = {.f32 = f32}, *k = &kk;
    memcpy(k->d, c->d, sizeof k->d);
    memcpy(k->f, c->f, sizeof k->f);
    size_t fsz = f32 ? 4 : 8, esz = c->out_int ? 4 : fsz;
    for (int a = 0; a < c->nargs; a++) {
      const Arg *g = &c->args[a];
      void *p = malloc((g->is_int ? 4 : fsz) * (size_t)(g->n ? g->n : 1));
      for (int64_t i = 0; i < g->n; i++) {
        if (g->is_int)
          ((int32_t *)p)[i] = (int32_t)g->v[i];
        else if (f32)
          ((float *)p)[i] = (float)g->v[i];
        else
          ((double *)p)[i] = g->v[i];
      }
      k->in[a] = p;
    }
    k->out = malloc(esz * (size_t)(c->nout ? c->nout : 1));
    k->scratch = malloc(8 * (c->scratch ? c->scratch : 1));
    reset_out(k, c, esz);
    c->fn(k, 0, c->total);
    double rel = f32 ? 1e-4 : 1e-10, abs_ = f32 ? (c->tol32 ? c->tol32 : 1e-5) : 1e-12;
    for (int64_t i = 0; i < c->nout; i++)
      cr_assert(close_enough(out_at(k, c, i), c->want[i], rel, abs_), "%s (%s): [%lld] = %.17g, want %.17g", c->what,
                f32 ? "f32" : "f64", (long long)i, out_at(k, c, i), c->want[i]);
    void *full = malloc(esz * (size_t)(c->nout ? c->nout : 1));
    memcpy(full, k->out, esz * (size_t)c->nout);
    check_splits(k, c, esz, full);
    free(full);
    for (int a = 0; a < c->nargs; a++) free(k->in[a]);
    free(k->out);
    free(k->scratch);
  }
}

#define ARG(v_, n_) ((Arg){.v = (v_), .n = (n_)})
#define IARG(v_, n_) ((Arg){.v = (v_), .n = (n_), .is_int = true})

// ---------------------------------------------------------------- reductions

static void r_reduce(K *k, int64_t b, int64_t e) {
  CALL(reduce, (int)k->d[3], k->out, k->in[0], k->d[0], k->d[1], k->d[2], b, e);
}

Test(kernels, reduce_all_kinds) {
  static const Op ops[] = {OP_SUM, OP_MEAN, OP_MAX, OP_MIN, OP_VAR, OP_LOGSUMEXP};
  static const int64_t shapes[][3] = {{1, 7, 1}, {3, 33, 1},   {2, 9, 8},  {1, 8, 9},
                                      {4, 1, 3}, {1, 40, 200}, {5, 17, 1}, {2, 1, 1}};
  for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
    for (int kind = 0; kind < 6; kind++) {
      int64_t O = shapes[s][0], R = shapes[s][1], I = shapes[s][2];
      Ref r = ref_new();
      double *x = rvec(O * R * I, -3, 3);
      int xi = ref_in(&r, DT_F64, SH(O, R, I), x);
      Attr a = attr_default(ops[kind]);
      a.naxes = 1, a.axes[0] = 1;
      int y = ref_op(&r, ops[kind], &a, 1, xi);
      verify(&(Case){.what = op_name(ops[kind]),
                     .fn = r_reduce,
                     .nargs = 1,
                     .args = {ARG(x, O * R * I)},
                     .nout = O * I,
                     .want = ref_run(&r, y, true, 0, 0),
                     .total = O * I,
                     .d = {O, R, I, kind}});
      ref_free(&r);
    }
}

// Column moments of x [N, C] as generated code takes them (codegen's
// emit_col_moments): block sums, mean, squared deviations, var, into the
// scratch after the partials ([nb, 2C] partials, mean [C], var [C], m [2C]).
// The parallel passes run as two pieces, the second half first.
#define COL_PART(kind, part, x, ctr, N, C, b, e) CALL(col_part, kind, (void *)(part), x, (void *)(ctr), N, C, b, e)
static void col_moments(K *k, void *x, int64_t N, int64_t C, size_t esz) {
  int64_t nb = bpck_col_blocks(N, C);
  char *part = k->scratch, *mean = part + esz * (size_t)(2 * nb * C), *var = mean + esz * (size_t)C;
  COL_PART(BPCK_SUM, part, x, NULL, N, C, nb / 2, nb);
  COL_PART(BPCK_SUM, part, x, NULL, N, C, 0, nb / 2);
  CALL(col_finish, BPCK_SUM, (void *)mean, (void *)part, nb, C, 1.0 / (double)N);
  COL_PART(BPCK_VAR, part, x, mean, N, C, nb / 2, nb);
  COL_PART(BPCK_VAR, part, x, mean, N, C, 0, nb / 2);
  CALL(col_finish, BPCK_SUM, (void *)var, (void *)part, nb, C, 1.0 / (double)N);
}

// Reductions over the rows of [R, I] by row blocks: the partial pass alone
// (any split) against per-block sums, maxima, minima and squared deviations
// computed here; then the whole sequence against the interpreter's op.
static void r_col_part(K *k, int64_t b, int64_t e) {
  CALL(col_part, (int)k->d[2], k->out, k->in[0], k->d[2] == BPCK_VAR ? k->in[1] : NULL, k->d[0], k->d[1], b, e);
}

static void r_col_reduce(K *k, int64_t b, int64_t e) {
  (void)b, (void)e;
  int64_t R = k->d[0], I = k->d[1], nb = bpck_col_blocks(R, I), kind = k->d[2];
  size_t esz = k->f32 ? 4 : 8;
  if (kind == BPCK_VAR) {
    col_moments(k, k->in[0], R, I, esz);
    memcpy(k->out, (char *)k->scratch + esz * (size_t)(2 * nb * I + I), esz * (size_t)I);
    return;
  }
  int part_kind = kind == BPCK_MEAN ? BPCK_SUM : (int)kind;
  COL_PART(part_kind, k->scratch, k->in[0], NULL, R, I, 0, nb);
  CALL(col_finish, part_kind, k->out, k->scratch, nb, I, kind == BPCK_MEAN ? 1.0 / (double)R : 1.0);
}

Test(kernels, col_blocks) {
  static const int64_t shapes[][2] = {{5000, 7}, {40000, 1}, {300, 130}, {3, 5}, {2049, 8}, {256, 64}};
  static const int kinds[] = {BPCK_SUM, BPCK_MAX, BPCK_MIN, BPCK_VAR};
  for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
    int64_t R = shapes[s][0], I = shapes[s][1], rb = bpck_col_block(I), nb = bpck_col_blocks(R, I);
    cr_assert_eq(nb, (R + rb - 1) / rb);
    double *x = rvec(R * I, -3, 3), *ctr = rvec(I, -1, 1);
    for (size_t q = 0; q < 4; q++) {
      double *want = malloc(sizeof(double) * (size_t)(nb * I));
      for (int64_t b = 0; b < nb; b++)
        for (int64_t i = 0; i < I; i++) {
          double acc = kinds[q] == BPCK_MAX ? -INFINITY : kinds[q] == BPCK_MIN ? INFINITY : 0;
          for (int64_t r = b * rb; r < R && r < (b + 1) * rb; r++) {
            double v = x[r * I + i];
            acc = kinds[q] == BPCK_SUM   ? acc + v
                  : kinds[q] == BPCK_MAX ? fmax(acc, v)
                  : kinds[q] == BPCK_MIN ? fmin(acc, v)
                                         : acc + (v - ctr[i]) * (v - ctr[i]);
          }
          want[b * I + i] = acc;
        }
      verify(&(Case){.what = "col_part",
                     .fn = r_col_part,
                     .nargs = 2,
                     .args = {ARG(x, R * I), ARG(ctr, I)},
                     .nout = nb * I,
                     .want = want,
                     .total = nb,
                     .d = {R, I, kinds[q]},
                     .tol32 = 1e-3});
      free(want);
    }
    static const Op ops[] = {OP_SUM, OP_MEAN, OP_MAX, OP_MIN, OP_VAR};
    static const int opk[] = {BPCK_SUM, BPCK_MEAN, BPCK_MAX, BPCK_MIN, BPCK_VAR};
    for (int o = 0; o < 5; o++) {
      Ref r = ref_new();
      double *xc = malloc(sizeof(double) * (size_t)(R * I));
      memcpy(xc, x, sizeof(double) * (size_t)(R * I));
      int xi = ref_in(&r, DT_F64, SH(R, I), xc);
      Attr a = attr_default(ops[o]);
      a.naxes = 1, a.axes[0] = 0;
      int y = ref_op(&r, ops[o], &a, 1, xi);
      verify(&(Case){.what = op_name(ops[o]),
                     .fn = r_col_reduce,
                     .nargs = 1,
                     .args = {ARG(x, R * I)},
                     .nout = I,
                     .want = ref_run(&r, y, true, 0, 0),
                     .total = 1,
                     .d = {R, I, opk[o]},
                     .tol32 = 1e-3,
                     .scratch = (size_t)((2 * nb + 4) * I)});
      ref_free(&r);
    }
    free(x), free(ctr);
  }
}

// sum_squares: block partials (the parallel part, any split), then their sum.
static void r_sum_squares(K *k, int64_t b, int64_t e) { CALL(sum_squares_blocks, k->out, k->in[0], k->d[0], b, e); }

Test(kernels, sum_squares_blocks) {
  static const int64_t sizes[] = {1, 15, 16, 17, BPCK_SQ_BLOCK - 1, BPCK_SQ_BLOCK, 3 * BPCK_SQ_BLOCK + 5};
  for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
    int64_t n = sizes[s], nb = (n + BPCK_SQ_BLOCK - 1) / BPCK_SQ_BLOCK;
    double *x = rvec(n, -3, 3), *want = calloc((size_t)nb, sizeof(double));
    for (int64_t i = 0; i < n; i++) want[i / BPCK_SQ_BLOCK] += x[i] * x[i];
    verify(&(Case){.what = "sum_squares_blocks",
                   .fn = r_sum_squares,
                   .nargs = 1,
                   .args = {ARG(x, n)},
                   .nout = nb,
                   .want = want,
                   .total = nb,
                   .d = {n}});
    // the op as a whole (the interpreter's kernel) agrees with the partials' sum
    Ref r = ref_new();
    int xi = ref_in(&r, DT_F64, SH(n), x);
    Attr a = attr_default(OP_SUM_SQUARES);
    const double *op = ref_run(&r, ref_op(&r, OP_SUM_SQUARES, &a, 1, xi), true, 0, 0);
    double total = 0;
    for (int64_t b = 0; b < nb; b++) total += want[b];
    cr_assert(close_enough(op[0], total, 1e-12, 0), "sum_squares(%lld): %.17g vs %.17g", (long long)n, op[0], total);
    ref_free(&r);  // frees x
    free(want);
  }
}

static void r_maxmin_grad(K *k, int64_t b, int64_t e) {
  CALL(maxmin_grad, k->out, k->in[0], k->in[1], k->d[0], k->d[1], k->d[2], (int)k->d[3], b, e);
}

Test(kernels, maxmin_grad_first_extremum) {
  static const int64_t shapes[][3] = {{1, 7, 1}, {3, 9, 1}, {2, 9, 8}, {1, 33, 130}, {4, 1, 3}};
  for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
    for (int is_min = 0; is_min < 2; is_min++) {
      int64_t O = shapes[s][0], R = shapes[s][1], I = shapes[s][2];
      Ref r = ref_new();
      double *x = ivec(O * R * I, -2, 2), *gy = rvec(O * I, -1, 1);  // many ties
      int xi = ref_in(&r, DT_F64, SH(O, R, I), x), gi = ref_in(&r, DT_F64, SH(O, 1, I), gy);
      Attr a = attr_default(OP_MAXMIN_GRAD);
      a.naxes = 1, a.axes[0] = 1, a.b[1] = is_min;
      int y = ref_op(&r, OP_MAXMIN_GRAD, &a, 2, xi, gi);
      verify(&(Case){.what = "maxmin_grad",
                     .fn = r_maxmin_grad,
                     .nargs = 2,
                     .args = {ARG(x, O * R * I), ARG(gy, O * I)},
                     .nout = O * R * I,
                     .want = ref_run(&r, y, true, 0, 0),
                     .total = O * I,
                     .d = {O, R, I, is_min}});
      ref_free(&r);
    }
}

static void r_softmax(K *k, int64_t b, int64_t e) {
  CALL(softmax, k->out, k->in[0], k->d[0], k->d[1], k->d[2], (int)k->d[3], b, e);
}

static void r_argmax(K *k, int64_t b, int64_t e) { CALL(argmax, k->out, k->in[0], k->d[0], k->d[1], k->d[2], b, e); }

Test(kernels, softmax_log_softmax_argmax) {
  // the last two: logits in [-120, 120], so exp meets its clamps and underflows (vector and tail lanes)
  static const int64_t shapes[][3] = {{1, 7, 1},   {3, 33, 1}, {2, 9, 8},  {1, 8, 9},
                                      {2, 5, 140}, {9, 1, 1},  {3, 41, 1}, {2, 64, 1}};
  for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
    for (int kind = 0; kind < 3; kind++) {
      int64_t O = shapes[s][0], R = shapes[s][1], I = shapes[s][2];
      Op op = kind == 0 ? OP_SOFTMAX : kind == 1 ? OP_LOG_SOFTMAX : OP_ARGMAX;
      Ref r = ref_new();
      double lim = s >= 6 ? 120 : 5;
      double *x = kind == 2 ? ivec(O * R * I, -3, 3) : rvec(O * R * I, -lim, lim);
      int xi = ref_in(&r, DT_F64, SH(O, R, I), x);
      Attr a = attr_default(op);
      a.i[0] = 1;
      int y = ref_op(&r, op, &a, 1, xi);
      verify(&(Case){.what = op_name(op),
                     .fn = kind == 2 ? r_argmax : r_softmax,
                     .nargs = 1,
                     .args = {ARG(x, O * R * I)},
                     .nout = numel(&r, y),
                     .out_int = kind == 2,
                     .want = ref_run(&r, y, true, 0, 0),
                     .total = O * I,
                     .d = {O, R, I, kind == 1}});
      ref_free(&r);
    }
}

// ---------------------------------------------------------------- normalization

static void r_layer_norm(K *k, int64_t b, int64_t e) {
  CALL(layer_norm, k->out, k->in[0], k->in[1], k->d[2], k->in[2], k->d[3], k->d[0], k->d[1], k->f[0], b, e);
}
static void r_layer_norm_dx(K *k, int64_t b, int64_t e) {
  CALL(layer_norm_dx, k->out, k->in[0], k->in[1], k->d[2], k->in[2], k->d[0], k->d[1], k->f[0], b, e);
}
static void r_rms_norm(K *k, int64_t b, int64_t e) {
  CALL(rms_norm, k->out, k->in[0], k->in[1], k->d[2], k->d[0], k->d[1], k->f[0], b, e);
}
static void r_rms_norm_dx(K *k, int64_t b, int64_t e) {
  CALL(rms_norm_dx, k->out, k->in[0], k->in[1], k->d[2], k->in[2], k->d[0], k->d[1], k->f[0], b, e);
}

Test(kernels, layer_norm_rms_norm_and_dx) {
  static const int64_t shapes[][2] = {{1, 1}, {1, 7}, {3, 8}, {5, 9}, {2, 33}, {4, 100}};
  for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
    for (int variant = 0; variant < 8; variant++) {
      int64_t rows = shapes[s][0], C = shapes[s][1], gn = variant & 1 ? 1 : C;
      int64_t bn = variant & 2 ? 1 : C;
      for (int opk = 0; opk < 4; opk++) {
        if (variant >= 4 && opk != 0) continue;  // beta broadcast matters for layer_norm only
        Op op = (Op[]){OP_LAYER_NORM, OP_LAYER_NORM_DX, OP_RMS_NORM, OP_RMS_NORM_DX}[opk];
        Ref r = ref_new();
        double *x = rvec(rows * C, -2, 2), *g = rvec(gn, 0.5, 1.5), *bt = rvec(bn, -1, 1);
        double *gy = rvec(rows * C, -1, 1);
        int xi = ref_in(&r, DT_F64, SH(rows, C), x), gi = ref_in(&r, DT_F64, SH(gn), g);
        int third = opk == 0 ? ref_in(&r, DT_F64, SH(bn), bt) : opk == 2 ? -1 : ref_in(&r, DT_F64, SH(rows, C), gy);
        if (opk == 0)
          free(gy);
        else
          free(bt);
        Attr a = attr_default(op);
        a.f[0] = opk < 2 ? 1e-5 : 1e-6;
        int y = opk == 2 ? ref_op(&r, op, &a, 2, xi, gi) : ref_op(&r, op, &a, 3, xi, gi, third);
        RangeFn fns[] = {r_layer_norm, r_layer_norm_dx, r_rms_norm, r_rms_norm_dx};
        Case c = {.what = op_name(op),
                  .fn = fns[opk],
                  .nargs = opk == 2 ? 2 : 3,
                  .args = {ARG(x, rows * C), ARG(g, gn), ARG(opk == 0 ? bt : gy, opk == 0 ? bn : rows * C)},
                  .nout = rows * C,
                  .want = ref_run(&r, y, true, 0, 0),
                  .total = rows,
                  .d = {rows, C, gn, bn},
                  .f = {a.f[0]},
                  .tol32 = 1e-4};
        if (opk == 2) c.args[2] = (Arg){0};
        verify(&c);
        if (opk == 2) free(gy);
        ref_free(&r);
      }
    }
}

static void r_batch_norm(K *k, int64_t b, int64_t e) {
  int64_t N = k->d[0], C = k->d[1], nb = bpck_col_blocks(N, C);
  size_t esz = k->f32 ? 4 : 8;
  char *mean = (char *)k->scratch + esz * (size_t)(2 * nb * C), *var = mean + esz * (size_t)C;
  if (k->d[4]) col_moments(k, k->in[0], N, C, esz);
  CALL(bn_apply, k->out, k->in[0], k->d[4] ? (void *)mean : k->in[3], k->d[4] ? (void *)var : k->in[4], k->in[1],
       k->d[2], k->in[2], k->d[3], C, k->f[0], b, e);
}

static void r_batch_norm_dx(K *k, int64_t b, int64_t e) {
  int64_t N = k->d[0], C = k->d[1], nb = bpck_col_blocks(N, C);
  size_t esz = k->f32 ? 4 : 8;
  char *part = k->scratch, *mean = part + esz * (size_t)(2 * nb * C), *var = mean + esz * (size_t)C,
       *m = var + esz * (size_t)C;
  col_moments(k, k->in[0], N, C, esz);
  CALL(bn_dx_part, (void *)part, k->in[0], k->in[1], k->d[2], k->in[2], (void *)mean, (void *)var, N, C, k->f[0],
       nb / 2, nb);
  CALL(bn_dx_part, (void *)part, k->in[0], k->in[1], k->d[2], k->in[2], (void *)mean, (void *)var, N, C, k->f[0], 0,
       nb / 2);
  CALL(col_finish, BPCK_SUM, (void *)m, (void *)part, nb, 2 * C, 1.0 / (double)N);
  CALL(bn_dx_apply, k->out, k->in[0], k->in[1], k->d[2], k->in[2], (void *)mean, (void *)var, (void *)m, C, k->f[0], b,
       e);
}

Test(kernels, batch_norm_and_dx) {
  // several row blocks: 2100 x 8 (2048-row blocks), 300 x 130 (126), 20000 x 1 (16384)
  static const int64_t shapes[][2] = {{1, 1}, {7, 1},    {8, 9},     {33, 8},   {5, 130},
                                      {2, 3}, {2100, 8}, {300, 130}, {20000, 1}};
  for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
    for (int variant = 0; variant < 4; variant++) {
      int64_t N = shapes[s][0], C = shapes[s][1], gn = variant & 1 ? 1 : C;
      int training = variant >> 1 & 1;
      for (int dx = 0; dx < 2; dx++) {
        Ref r = ref_new();
        double *x = rvec(N * C, -2, 2), *g = rvec(gn, 0.5, 1.5), *bt = rvec(C, -1, 1);
        double *rm = rvec(C, -1, 1), *rv = rvec(C, 0.5, 2), *gy = rvec(N * C, -1, 1);
        int xi = ref_in(&r, DT_F64, SH(N, C), x), gi = ref_in(&r, DT_F64, SH(gn), g);
        Attr a = attr_default(dx ? OP_BATCH_NORM_DX : OP_BATCH_NORM);
        a.f[0] = 1e-5;
        int y;
        Case c = {.nout = N * C,
                  .total = N,
                  .d = {N, C, gn, C, training},
                  .f = {1e-5},
                  .tol32 = 1e-4,
                  .scratch = (size_t)((2 * bpck_col_blocks(N, C) + 4) * C)};
        if (!dx) {
          int bi = ref_in(&r, DT_F64, SH(C), bt), mi = ref_in(&r, DT_F64, SH(C), rm);
          int vi = ref_in(&r, DT_F64, SH(C), rv);
          y = ref_op(&r, OP_BATCH_NORM, &a, 5, xi, gi, bi, mi, vi);
          c.what = "batch_norm", c.fn = r_batch_norm, c.nargs = 5;
          c.args[2] = ARG(bt, C), c.args[3] = ARG(rm, C), c.args[4] = ARG(rv, C);
          free(gy);
        } else {
          if (!training) {
            free(bt), free(rm), free(rv), free(gy);
            ref_free(&r);
            continue;  // the backward op always uses batch statistics
          }
          int yi = ref_in(&r, DT_F64, SH(N, C), gy);
          y = ref_op(&r, OP_BATCH_NORM_DX, &a, 3, xi, gi, yi);
          c.what = "batch_norm_dx", c.fn = r_batch_norm_dx, c.nargs = 3;
          c.args[2] = ARG(gy, N * C);
          free(bt), free(rm), free(rv);
        }
        c.args[0] = ARG(x, N * C), c.args[1] = ARG(g, gn);
        c.want = ref_run(&r, y, training, 0, 0);
        verify(&c);
        ref_free(&r);
      }
    }
}

// ---------------------------------------------------------------- attention

static void r_attention(K *k, int64_t b, int64_t e) {
  CALL(attention, k->out, k->in[0], k->in[1], k->in[2], k->d[0], k->d[1], k->d[2], k->d[3], k->d[4], (int)k->d[5],
       k->in[4], k->d[3], k->scratch, b, e);
}

static void r_attention_bwd(K *k, int64_t b, int64_t e) {
  int w = (int)k->d[6];
  CALL(attention_bwd, w == 0 ? k->out : NULL, w == 1 ? k->out : NULL, w == 2 ? k->out : NULL, k->in[0], k->in[1],
       k->in[2], k->in[3], k->d[0], k->d[1], k->d[2], k->d[3], k->d[4], (int)k->d[5], k->in[4], k->d[3], k->d[3],
       k->scratch, b, e);
}

Test(kernels, attention_forward_backward) {
  static const int64_t shapes[][5] = {// B, Tq, Tk, C, H
                                      {1, 1, 1, 1, 1},
                                      {2, 7, 7, 8, 2},
                                      {1, 9, 9, 33, 3},
                                      {2, 5, 9, 16, 4},
                                      {1, 9, 5, 8, 1},
                                      {3, 8, 8, 24, 8},
                                      // several 48-row query blocks (a last partial one), head
                                      // sizes off the 16-column panels; past one key block (384
                                      // keys in f32, 240 in f64) and past K's 384 or 256 (the
                                      // products' K in blocks): 300, 400, 1024 and odd sizes
                                      {1, 100, 100, 16, 2},
                                      {2, 50, 70, 12, 1},
                                      {1, 97, 97, 130, 2},
                                      {1, 300, 300, 8, 1},
                                      {1, 400, 400, 4, 1},
                                      {1, 385, 385, 6, 1},
                                      {2, 211, 777, 10, 2},
                                      {1, 1024, 1024, 32, 1}};
  for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
    for (int causal = 0; causal < 2; causal++)
      for (int masked = 0; masked < 2; masked++)
        for (int which = -1; which < 3; which++) {
          int64_t B = shapes[s][0], Tq = shapes[s][1], Tk = shapes[s][2], C = shapes[s][3];
          int64_t H = shapes[s][4];
          if (causal && Tq != Tk) continue;  // the op requires square causal attention
          Ref r = ref_new();
          double *q = rvec(B * Tq * C, -1, 1), *k = rvec(B * Tk * C, -1, 1);
          double *v = rvec(B * Tk * C, -1, 1), *gy = rvec(B * Tq * C, -1, 1);
          // key-padding mask: batch 0 pads its first key (a causal first query sees
          // nothing), the last batch of several pads every key, the rest at random
          double *m = rvec(B * Tk, 0, 1);
          for (int64_t b = 0; b < B; b++)
            for (int64_t j = 0; j < Tk; j++)
              m[b * Tk + j] = (b == 0 && j == 0) || (B > 1 && b == B - 1) ? 0 : m[b * Tk + j] > 0.3;
          int qi = ref_in(&r, DT_F64, SH(B, Tq, C), q), ki = ref_in(&r, DT_F64, SH(B, Tk, C), k);
          int vi = ref_in(&r, DT_F64, SH(B, Tk, C), v), gi = ref_in(&r, DT_F64, SH(B, Tq, C), gy);
          int mi = ref_in(&r, DT_F64, SH(B, Tk), m);
          Attr a = attr_default(which < 0 ? OP_ATTENTION : OP_ATTENTION_GRAD);
          a.i[0] = H, a.b[0] = causal, a.i[1] = which < 0 ? 0 : which;
          int y = which < 0 ? (masked ? ref_op(&r, OP_ATTENTION, &a, 4, qi, ki, vi, mi)
                                      : ref_op(&r, OP_ATTENTION, &a, 3, qi, ki, vi))
                            : (masked ? ref_op(&r, OP_ATTENTION_GRAD, &a, 5, qi, ki, vi, gi, mi)
                                      : ref_op(&r, OP_ATTENTION_GRAD, &a, 4, qi, ki, vi, gi));
          size_t s64 =
              which < 0 ? bpck_attention_scratch_f64(Tq, Tk, C / H) : bpck_attention_bwd_scratch_f64(Tq, Tk, C / H);
          size_t s32 =
              which < 0 ? bpck_attention_scratch_f32(Tq, Tk, C / H) : bpck_attention_bwd_scratch_f32(Tq, Tk, C / H);
          size_t scr = s64 > (s32 + 1) / 2 ? s64 : (s32 + 1) / 2;  // in doubles: either type's
          verify(&(Case){
              .what = which < 0 ? (masked ? "masked attention" : "attention")
                                : (masked ? "masked attention_bwd" : "attention_bwd"),
              .fn = which < 0 ? r_attention : r_attention_bwd,
              .nargs = masked ? 5 : 4,
              .args = {ARG(q, B * Tq * C), ARG(k, B * Tk * C), ARG(v, B * Tk * C), ARG(gy, B * Tq * C), ARG(m, B * Tk)},
              .nout = numel(&r, y),
              .want = ref_run(&r, y, true, 0, 0),
              .total = B * H,
              .scratch = scr,
              .d = {B, Tq, Tk, C, H, causal, which}});
          ref_free(&r);
        }
}

static void r_causal_mask(K *k, int64_t b, int64_t e) {
  CALL(causal_mask, k->out, k->in[0], k->d[0], k->d[1], (int)k->d[2], b, e);
}

Test(kernels, causal_mask_and_grad) {
  static const int64_t shapes[][3] = {{1, 1, 1}, {2, 7, 7}, {3, 5, 9}, {1, 9, 4}};
  for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
    for (int grad = 0; grad < 2; grad++) {
      int64_t n = shapes[s][0], R = shapes[s][1], Cc = shapes[s][2];
      Op op = grad ? OP_CAUSAL_MASK_GRAD : OP_CAUSAL_MASK;
      Ref r = ref_new();
      double *x = rvec(n * R * Cc, -1, 1);
      int xi = ref_in(&r, DT_F64, SH(n, R, Cc), x);
      int y = ref_op(&r, op, NULL, 1, xi);
      verify(&(Case){.what = op_name(op),
                     .fn = r_causal_mask,
                     .nargs = 1,
                     .args = {ARG(x, n * R * Cc)},
                     .nout = n * R * Cc,
                     .want = ref_run(&r, y, true, 0, 0),
                     .total = n * R,
                     .d = {R, Cc, grad}});
      ref_free(&r);
    }
}

// ---------------------------------------------------------------- convolution

static void r_conv2d(K *k, int64_t b, int64_t e) {
  int64_t *d = k->d;
  CALL(conv2d, k->out, k->in[0], k->in[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], k->scratch, b, e);
}
static void r_conv2d_dx(K *k, int64_t b, int64_t e) {
  int64_t *d = k->d;
  CALL(conv2d_dx, k->out, k->in[0], k->in[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], k->scratch, b, e);
}
static void r_conv2d_dw(K *k, int64_t b, int64_t e) {
  int64_t *d = k->d;
  CALL(conv2d_dw, k->out, k->in[0], k->in[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], k->scratch, b, e);
}

Test(kernels, conv2d_forward_dx_dw) {
  static const int64_t cfg[][8] = {// N, H, W, Ci, KH, KW, Co, stride, (pad below)
                                   {1, 1, 1, 1, 1, 1, 1, 1},
                                   {2, 7, 7, 3, 3, 3, 8, 1},
                                   {1, 9, 8, 2, 3, 2, 9, 2},
                                   {2, 8, 9, 4, 2, 3, 5, 3},
                                   {1, 5, 5, 1, 5, 5, 1, 1},
                                   // Co past four vectors (direct: few taps); more than
                                   // CONV_DIRECT_K taps (im2col + GEMM)
                                   {1, 5, 6, 1, 3, 3, 37, 1},
                                   {2, 6, 7, 5, 3, 3, 10, 1},
                                   {1, 6, 6, 8, 3, 2, 17, 2}};
  for (size_t s = 0; s < sizeof cfg / sizeof *cfg; s++)
    for (int64_t pad = 0; pad < 3; pad++)
      for (int kind = 0; kind < 3; kind++) {
        const int64_t *c = cfg[s];
        int64_t N = c[0], H = c[1], W = c[2], Ci = c[3], KH = c[4], KW = c[5], Co = c[6], st = c[7];
        if (H + 2 * pad < KH || W + 2 * pad < KW) continue;
        int64_t OH = (H + 2 * pad - KH) / st + 1, OW = (W + 2 * pad - KW) / st + 1;
        Ref r = ref_new();
        double *x = rvec(N * H * W * Ci, -1, 1), *w = rvec(KH * KW * Ci * Co, -1, 1);
        double *gy = rvec(N * OH * OW * Co, -1, 1);
        Shape xs = SH(N, H, W, Ci), ws = SH(KH, KW, Ci, Co), gs = SH(N, OH, OW, Co);
        int y;
        Case cs = {.d = {N, H, W, Ci, KH, KW, Co, st, pad}, .nargs = 2, .tol32 = 1e-4};
        if (kind == 0) {
          Attr a = attr_default(OP_CONV2D);
          a.i[0] = st, a.i[1] = pad;
          int xi = ref_in(&r, DT_F64, xs, x), wi = ref_in(&r, DT_F64, ws, w);
          y = ref_op(&r, OP_CONV2D, &a, 2, xi, wi);
          cs.what = "conv2d", cs.fn = r_conv2d, cs.total = N * OH;
          cs.args[0] = ARG(x, N * H * W * Ci), cs.args[1] = ARG(w, KH * KW * Ci * Co);
          free(gy);
        } else if (kind == 1) {
          Attr a = attr_default(OP_CONV2D_DX);
          a.i[0] = st, a.i[1] = pad, a.shape = xs;
          int gi = ref_in(&r, DT_F64, gs, gy), wi = ref_in(&r, DT_F64, ws, w);
          y = ref_op(&r, OP_CONV2D_DX, &a, 2, gi, wi);
          cs.what = "conv2d_dx", cs.fn = r_conv2d_dx, cs.total = N * H;
          cs.args[0] = ARG(gy, N * OH * OW * Co), cs.args[1] = ARG(w, KH * KW * Ci * Co);
          free(x);
        } else {
          Attr a = attr_default(OP_CONV2D_DW);
          a.i[0] = st, a.i[1] = pad, a.shape = ws;
          int xi = ref_in(&r, DT_F64, xs, x), gi = ref_in(&r, DT_F64, gs, gy);
          y = ref_op(&r, OP_CONV2D_DW, &a, 2, xi, gi);
          cs.what = "conv2d_dw", cs.fn = r_conv2d_dw, cs.total = KH * KW * Ci;
          cs.args[0] = ARG(x, N * H * W * Ci), cs.args[1] = ARG(gy, N * OH * OW * Co);
          free(w);
        }
        if (kind == 0 && shp(&r, y)->d[1] != OH) cr_assert_fail("conv2d output size");
        cs.scratch = bpck_conv2d_scratch_f64(kind, W, Ci, KH, KW, Co, st, pad);
        cs.nout = numel(&r, y), cs.want = ref_run(&r, y, true, 0, 0);
        verify(&cs);
        ref_free(&r);
      }
}

static void r_pool2d(K *k, int64_t b, int64_t e) {
  int64_t *d = k->d;
  CALL(pool2d, k->out, k->in[0], d[0], d[1], d[2], d[3], d[4], d[5], (int)d[6], b, e);
}
static void r_pool2d_grad(K *k, int64_t b, int64_t e) {
  int64_t *d = k->d;
  CALL(pool2d_grad, k->out, k->in[0], k->in[1], d[0], d[1], d[2], d[3], d[4], d[5], (int)d[6], b, e);
}

Test(kernels, pool2d_forward_backward) {
  static const int64_t cfg[][6] = {// N, H, W, C, K, S
                                   {1, 1, 1, 1, 1, 1}, {2, 7, 7, 3, 2, 2},  {1, 9, 8, 9, 3, 1},
                                   {3, 8, 9, 8, 3, 2}, {1, 4, 4, 33, 4, 4}, {1, 5, 7, 130, 2, 2}};
  for (size_t s = 0; s < sizeof cfg / sizeof *cfg; s++)
    for (int is_max = 0; is_max < 2; is_max++)
      for (int grad = 0; grad < 2; grad++) {
        const int64_t *c = cfg[s];
        int64_t N = c[0], H = c[1], W = c[2], C = c[3], K = c[4], S = c[5];
        int64_t OH = (H - K) / S + 1, OW = (W - K) / S + 1;
        Ref r = ref_new();
        double *x = ivec(N * H * W * C, -3, 3), *gy = rvec(N * OH * OW * C, -1, 1);  // ties
        int xi = ref_in(&r, DT_F64, SH(N, H, W, C), x);
        Op op = grad ? (is_max ? OP_MAX_POOL2D_GRAD : OP_AVG_POOL2D_GRAD) : (is_max ? OP_MAX_POOL2D : OP_AVG_POOL2D);
        Attr a = attr_default(op);
        a.i[0] = K, a.i[1] = S;
        int y;
        if (grad) {
          int gi = ref_in(&r, DT_F64, SH(N, OH, OW, C), gy);
          y = ref_op(&r, op, &a, 2, xi, gi);
        } else {
          free(gy);
          y = ref_op(&r, op, &a, 1, xi);
        }
        verify(&(Case){.what = op_name(op),
                       .fn = grad ? r_pool2d_grad : r_pool2d,
                       .nargs = grad ? 2 : 1,
                       .args = {ARG(x, N * H * W * C), ARG(grad ? gy : NULL, grad ? N * OH * OW * C : 0)},
                       .nout = numel(&r, y),
                       .want = ref_run(&r, y, true, 0, 0),
                       .total = grad ? N : N * OH,
                       .d = {N, H, W, C, K, S, is_max}});
        ref_free(&r);
      }
}

// ---------------------------------------------------------------- indexing

static void r_embedding(K *k, int64_t b, int64_t e) {
  CALL(embedding, k->out, k->in[0], k->in[1], k->d[0], k->d[1], k->d[2], k->status, b, e);
}
static void r_embedding_grad(K *k, int64_t b, int64_t e) {
  CALL(embedding_grad, k->out, NULL, k->in[0], k->in[1], k->d[0], k->d[1], k->d[2], b, e);
}
static void r_one_hot(K *k, int64_t b, int64_t e) { CALL(one_hot, k->out, k->in[0], k->d[0], k->d[1], b, e); }

Test(kernels, embedding_grad_one_hot) {
  static const int64_t cfg[][3] = {{1, 1, 1}, {7, 5, 8}, {33, 9, 9}, {8, 3, 130}, {9, 40, 7}};
  for (size_t s = 0; s < sizeof cfg / sizeof *cfg; s++)
    for (int kind = 0; kind < 3; kind++) {
      int64_t n = cfg[s][0], V = cfg[s][1], C = cfg[s][2];
      Ref r = ref_new();
      double *ids = ivec(n, kind == 2 ? -1 : 0, kind == 2 ? V : V - 1);  // repeats; one_hot: bad ids too
      int ii = ref_in(&r, DT_I32, SH(n), ids);
      double *t = rvec(kind == 1 ? n * C : V * C, -1, 1);
      Attr a = attr_default(kind == 0 ? OP_EMBEDDING : kind == 1 ? OP_EMBEDDING_GRAD : OP_ONE_HOT);
      int y;
      Case c = {.nargs = 2, .args = {IARG(ids, n)}};
      if (kind == 0) {
        y = ref_op(&r, OP_EMBEDDING, &a, 2, ii, ref_in(&r, DT_F64, SH(V, C), t));
        c.what = "embedding", c.fn = r_embedding, c.total = n, c.args[1] = ARG(t, V * C);
        c.d[0] = n, c.d[1] = V, c.d[2] = C;
      } else if (kind == 1) {
        a.i[0] = V;
        y = ref_op(&r, OP_EMBEDDING_GRAD, &a, 2, ii, ref_in(&r, DT_F64, SH(n, C), t));
        c.what = "embedding_grad", c.fn = r_embedding_grad, c.total = C, c.args[1] = ARG(t, n * C);
        c.d[0] = n, c.d[1] = V, c.d[2] = C;
      } else {
        free(t);
        a.i[0] = V;
        y = ref_op(&r, OP_ONE_HOT, &a, 1, ii);
        c.what = "one_hot", c.fn = r_one_hot, c.total = n, c.nargs = 1;
        c.d[0] = n, c.d[1] = V;
      }
      c.nout = numel(&r, y), c.want = ref_run(&r, y, true, 0, 0);
      verify(&c);
      ref_free(&r);
    }
}

Test(kernels, status_words) {
  int32_t ids[] = {0, 2, 5, -1};
  float table[3 * 2] = {1, 2, 3, 4, 5, 6}, out[4 * 2];
  int64_t st[3] = {0, 0, 0};
  bpck_embedding_f32(out, ids, table, 4, 3, 2, st, 0, 4);
  cr_assert_eq(st[0], BPCK_ERR_EMBEDDING_ID);
  cr_assert_eq(st[1], 5);
  cr_assert_eq(st[2], 3);
  cr_assert(out[4] == 0 && out[5] == 0 && out[6] == 0 && out[7] == 0 && out[2] == 5);
  double logits[3 * 2] = {1, 2, 3, 4, 5, 6}, loss[3];
  int32_t labels[] = {1, 2, 0};
  int64_t st2[3] = {0, 0, 0};
  bpck_cross_entropy_rows_f64(loss, logits, labels, 3, 2, st2, 0, 3);
  cr_assert_eq(st2[0], BPCK_ERR_LABEL);
  cr_assert_eq(st2[1], 2);
  cr_assert_eq(st2[2], 2);
  cr_assert_eq(loss[1], 0);
  int64_t st3[3] = {0, 0, 0};
  labels[1] = 1;
  bpck_cross_entropy_rows_f64(loss, logits, labels, 3, 2, st3, 0, 3);
  cr_assert_eq(st3[0], BPCK_OK);
}

// ---------------------------------------------------------------- losses, metrics

static void r_ce_rows(K *k, int64_t b, int64_t e) {
  CALL(cross_entropy_rows, k->out, k->in[0], k->in[1], k->d[0], k->d[1], k->status, b, e);
}
static void r_ce_grad(K *k, int64_t b, int64_t e) {
  CALL(cross_entropy_grad, k->out, k->in[0], k->in[1], k->in[2], k->d[0], k->d[1], b, e);
}
static void r_acc_rows(K *k, int64_t b, int64_t e) {
  CALL(accuracy_rows, k->out, k->in[0], k->in[1], k->d[0], k->d[1], b, e);
}

Test(kernels, cross_entropy_accuracy) {
  static const int64_t cfg[][2] = {{1, 1}, {7, 3}, {8, 9}, {33, 8}, {9, 100}};
  for (size_t s = 0; s < sizeof cfg / sizeof *cfg; s++)
    for (int kind = 0; kind < 3; kind++) {
      int64_t rows = cfg[s][0], Kc = cfg[s][1];
      Ref r = ref_new();
      double *l = kind == 2 ? ivec(rows * Kc, -2, 2) : rvec(rows * Kc, -4, 4);
      double *y = ivec(rows, 0, Kc - 1), *gy = rvec(1, 0.5, 2);
      int li = ref_in(&r, DT_F64, SH(rows, Kc), l), yi = ref_in(&r, DT_I32, SH(rows), y);
      Op op = kind == 0 ? OP_CROSS_ENTROPY : kind == 1 ? OP_CROSS_ENTROPY_GRAD : OP_ACCURACY;
      int out =
          kind == 1 ? ref_op(&r, op, NULL, 3, li, yi, ref_in(&r, DT_F64, SH(1), gy)) : ref_op(&r, op, NULL, 2, li, yi);
      if (kind != 1) free(gy);
      const double *want = ref_run(&r, out, true, 0, 0);
      Case c = {.nargs = kind == 1 ? 3 : 2,
                .args = {ARG(l, rows * Kc), IARG(y, rows), ARG(kind == 1 ? gy : NULL, kind == 1)},
                .total = rows,
                .d = {rows, Kc}};
      if (kind == 1) {
        c.what = "cross_entropy_grad", c.fn = r_ce_grad, c.nout = rows * Kc, c.want = want;
        verify(&c);
        ref_free(&r);
        continue;
      }
      // per-row values from a second path: the mean of the rows must equal the op
      double *rowv = malloc(sizeof(double) * (size_t)rows);
      int32_t *yv = malloc(sizeof(int32_t) * (size_t)rows);
      for (int64_t i = 0; i < rows; i++) yv[i] = (int32_t)y[i];
      if (kind == 0)
        bpck_cross_entropy_rows_f64(rowv, l, yv, rows, Kc, NULL, 0, rows);
      else
        bpck_accuracy_rows_f64(rowv, l, yv, rows, Kc, 0, rows);
      double mean64;
      bpck_sum_scale_f64(&mean64, rowv, rows, 1.0 / (double)rows);
      cr_assert(close_enough(mean64, want[0], 1e-10, 1e-12), "%s mean %.17g want %.17g", op_name(op), mean64, want[0]);
      float *lf = malloc(sizeof(float) * (size_t)(rows * Kc)), *rowf = malloc(sizeof(float) * (size_t)rows);
      for (int64_t i = 0; i < rows * Kc; i++) lf[i] = (float)l[i];
      if (kind == 0)
        bpck_cross_entropy_rows_f32(rowf, lf, yv, rows, Kc, NULL, 0, rows);
      else
        bpck_accuracy_rows_f32(rowf, lf, yv, rows, Kc, 0, rows);
      float mean32;
      bpck_sum_scale_f32(&mean32, rowf, rows, 1.0f / (float)rows);
      cr_assert(close_enough(mean32, want[0], 1e-4, 1e-5), "%s f32 mean %.9g want %.17g", op_name(op), (double)mean32,
                want[0]);
      c.what = op_name(op), c.fn = kind == 0 ? r_ce_rows : r_acc_rows, c.nout = rows;
      c.want = rowv;  // the split check (and f32 vs f64 rows)
      verify(&c);
      free(rowv), free(yv), free(lf), free(rowf);
      ref_free(&r);
    }
}

// ---------------------------------------------------------------- regularization, movers

static void r_dropout(K *k, int64_t b, int64_t e) {
  CALL(dropout, k->out, k->in[0], k->d[0], k->f[0], (uint64_t)k->d[1], (uint64_t)k->d[2], (uint64_t)k->d[3], b, e);
}

Test(kernels, dropout_matches_interpreter) {
  static const double ps[] = {0, 0.125, 0.5, 0.75, 1, 0.7, 0.9};  // 0.7, 0.9: not exact in f32
  static const int64_t ns[] = {1, 7, 33, 1000};
  for (size_t s = 0; s < 4; s++)
    for (size_t pi = 0; pi < 7; pi++) {
      int64_t n = ns[s];
      Ref r = ref_new();
      double *x = rvec(n, -2, 2);
      int xi = ref_in(&r, DT_F64, SH(n), x);
      Attr a = attr_default(OP_DROPOUT);
      a.f[0] = ps[pi], a.salt = 0xabcdef12345ULL;
      int y = ref_op(&r, OP_DROPOUT, &a, 1, xi);
      verify(&(Case){.what = "dropout",
                     .fn = r_dropout,
                     .nargs = 1,
                     .args = {ARG(x, n)},
                     .nout = n,
                     .want = ref_run(&r, y, true, 99, 5),
                     .total = n,
                     .d = {n, 99, (int64_t)a.salt, 5},
                     .f = {ps[pi]}});
      ref_free(&r);
    }
}

static void r_strided(K *k, int64_t b, int64_t e) {
  int64_t *d = k->d;  // rank, shape[4], out strides[4], in strides[4], in offset, is_int
  if (d[15]) {
    bpck_strided_copy_i32(k->out, d + 5, (const int32_t *)k->in[0] + d[13], d + 9, (int)d[0], d + 1, b, e);
    return;
  }
  if (k->f32)
    bpck_strided_copy_f32(k->out, d + 5, (const float *)k->in[0] + d[13], d + 9, (int)d[0], d + 1, b, e);
  else
    bpck_strided_copy_f64(k->out, d + 5, (const double *)k->in[0] + d[13], d + 9, (int)d[0], d + 1, b, e);
}

// Contiguous strides of a shape.
static void contig(const Shape *s, int64_t *st) {
  int64_t m = 1;
  for (int i = s->rank - 1; i >= 0; i--) st[i] = m, m *= s->d[i];
}

// One strided-copy case: the op y of x (an f64 or i32 leaf) is the copy of
// x's elements at (offset + idx * in strides) over y's shape.
static void strided_case(Ref *r, int y, const double *x, int64_t nx, const int64_t *ist, int64_t off, bool is_int) {
  const Shape *ys = shp(r, y);
  Case c = {.what = op_name(graph_node(r->g, y)->op),
            .fn = r_strided,
            .nargs = 1,
            .args = {{.v = x, .n = nx, .is_int = is_int}},
            .nout = shape_numel(ys),
            .out_int = is_int,
            .want = ref_run(r, y, true, 0, 0),
            .total = shape_numel(ys)};
  c.d[0] = ys->rank;
  for (int i = 0; i < ys->rank; i++) c.d[1 + i] = ys->d[i], c.d[9 + i] = ist[i];
  contig(ys, c.d + 5);
  c.d[13] = off, c.d[15] = is_int;
  verify(&c);
}

Test(kernels, strided_copy_transpose_slice_broadcast) {
  static const int64_t shapes[][3] = {{1, 1, 1}, {2, 7, 9}, {3, 8, 33}, {1, 9, 1}, {4, 1, 8}};
  for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
    for (int is_int = 0; is_int < 2; is_int++)
      for (int kind = 0; kind < 3; kind++) {
        int64_t A = shapes[s][0], B = shapes[s][1], C = shapes[s][2], xst[3];
        Ref r = ref_new();
        int64_t nx = kind == 2 ? B * C : A * B * C;
        double *x = is_int ? ivec(nx, -100, 100) : rvec(nx, -1, 1);
        Shape xs = kind == 2 ? SH(B, C) : SH(A, B, C);
        int xi = ref_in(&r, is_int ? DT_I32 : DT_F64, xs, x);
        contig(&xs, xst);
        if (kind == 0) {  // transpose perm (2, 0, 1)
          Attr a = attr_default(OP_TRANSPOSE);
          a.naxes = 3, a.axes[0] = 2, a.axes[1] = 0, a.axes[2] = 1;
          int y = ref_op(&r, OP_TRANSPOSE, &a, 1, xi);
          strided_case(&r, y, x, nx, (int64_t[]){xst[2], xst[0], xst[1]}, 0, is_int);
        } else if (kind == 1) {  // slice [1, C) of the last axis, or [0, 1) when C == 1
          Attr a = attr_default(OP_SLICE);
          int64_t lo = C > 1 ? 1 : 0;
          a.i[0] = lo, a.i[1] = C, a.i[2] = 2;
          int y = ref_op(&r, OP_SLICE, &a, 1, xi);
          strided_case(&r, y, x, nx, xst, lo, is_int);
        } else {  // broadcast (B, C) to (A, B, C)
          Attr a = attr_default(OP_BROADCAST_TO);
          a.shape = SH(A, B, C);
          int y = ref_op(&r, OP_BROADCAST_TO, &a, 1, xi);
          strided_case(&r, y, x, nx, (int64_t[]){0, xst[0], xst[1]}, 0, is_int);
        }
        ref_free(&r);
      }
}

Test(kernels, fill_arange_rank0) {
  float f[9];
  double d[9];
  int32_t a[9];
  bpck_fill_f32(f, 2.5f, 0, 4);
  bpck_fill_f32(f, 2.5f, 4, 9);
  bpck_fill_f64(d, -1.0, 3, 9);
  bpck_fill_f64(d, -1.0, 0, 3);
  bpck_arange_i32(a, 5, 9);
  bpck_arange_i32(a, 0, 5);
  for (int i = 0; i < 9; i++) cr_assert(f[i] == 2.5f && d[i] == -1.0 && a[i] == i);
  double one = 7, dst = 0;
  bpck_strided_copy_f64(&dst, NULL, &one, NULL, 0, NULL, 0, 1);
  cr_assert_eq(dst, 7);
}

// ---------------------------------------------------------------- gemm

static void r_gemm(K *k, int64_t b, int64_t e) {
  int64_t *d = k->d;  // M N K lda transa ldb transb ldc accumulate by_cols
  if (d[9])
    CALL(gemm_cols, d[0], d[1], d[2], k->in[0], d[3], (int)d[4], k->in[1], d[5], (int)d[6], k->out, d[7], (int)d[8],
         k->scratch, b, e);
  else
    CALL(gemm, d[0], d[1], d[2], k->in[0], d[3], (int)d[4], k->in[1], d[5], (int)d[6], k->out, d[7], (int)d[8],
         k->scratch, b, e);
}

// C (M,N) over ldc from the naive triple loop; A, B stored per transa/transb.
static double *naive_gemm(const int64_t *d, const double *A, const double *B, const double *C0) {
  int64_t M = d[0], N = d[1], K = d[2], lda = d[3], ldb = d[5], ldc = d[7];
  double *C = malloc(sizeof(double) * (size_t)(M * ldc));
  memcpy(C, C0, sizeof(double) * (size_t)(M * ldc));
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++) {
      double s = 0;
      for (int64_t p = 0; p < K; p++)
        s += (d[4] ? A[p * lda + i] : A[i * lda + p]) * (d[6] ? B[j * ldb + p] : B[p * ldb + j]);
      C[i * ldc + j] = d[8] ? C[i * ldc + j] + s : s;
    }
  return C;
}

Test(kernels, gemm_against_naive_loop) {
  static const int64_t mnk[][3] = {{1, 1, 1},   {1, 1, 7},     {7, 1, 1},     {1, 17, 3},   {6, 16, 8},    {7, 17, 9},
                                   {13, 33, 5}, {33, 8, 300},  {5, 40, 0},    {150, 20, 7}, {12, 4100, 3}, {64, 64, 64},
                                   {9, 9, 513}, {14, 40, 785}, {13, 20, 256}, {18, 35, 24}};
  // v: transa, transb, accumulate, and the range over rows (bpck_gemm) or columns (bpck_gemm_cols)
  for (size_t s = 0; s < sizeof mnk / sizeof *mnk; s++)
    for (int v = 0; v < 16; v++) {
      int64_t M = mnk[s][0], N = mnk[s][1], K = mnk[s][2], ta = v & 1, tb = v >> 1 & 1, acc = v >> 2 & 1;
      int64_t cols = v >> 3;
      int64_t lda = (ta ? M : K) + (v % 3), ldb = (tb ? K : N) + (v % 2), ldc = N + (v % 3);
      int64_t d[16] = {M, N, K, lda, ta, ldb, tb, ldc, acc, cols};
      int64_t na = (ta ? K : M) * lda, nb = (tb ? N : K) * ldb;
      double *A = rvec(na, -1, 1), *B = rvec(nb, -1, 1), *C0 = rvec(M * ldc, -1, 1);
      double *want = naive_gemm(d, A, B, C0);
      Case c = {.what = "gemm",
                .fn = r_gemm,
                .nargs = 2,
                .args = {ARG(A, na), ARG(B, nb)},
                .nout = M * ldc,
                .want = want,
                .out_init = C0,
                .total = cols ? N : M,
                .scratch = bpck_gemm_scratch_f32(M, N, K),
                .tol32 = 1e-5 * (1 + sqrt((double)K))};
      memcpy(c.d, d, sizeof d);
      cr_assert_geq(bpck_gemm_scratch_f32(M, N, K), bpck_gemm_scratch_f64(M, N, K) / 2);
      c.scratch = bpck_gemm_scratch_f32(M, N, K) > bpck_gemm_scratch_f64(M, N, K) ? bpck_gemm_scratch_f32(M, N, K)
                                                                                  : bpck_gemm_scratch_f64(M, N, K);
      verify(&c);
      free(A), free(B), free(C0), free(want);
    }
}

Test(kernels, gemm_matches_interpreter_matmul) {
  static const int64_t mnk[][3] = {{1, 1, 1}, {7, 9, 8}, {33, 17, 9}, {8, 33, 100}};
  for (size_t s = 0; s < sizeof mnk / sizeof *mnk; s++)
    for (int v = 0; v < 4; v++) {
      int64_t M = mnk[s][0], N = mnk[s][1], K = mnk[s][2], ta = v & 1, tb = v >> 1;
      Ref r = ref_new();
      double *A = rvec(M * K, -1, 1), *B = rvec(K * N, -1, 1);
      int ai = ref_in(&r, DT_F64, ta ? SH(K, M) : SH(M, K), A);
      int bi = ref_in(&r, DT_F64, tb ? SH(N, K) : SH(K, N), B);
      Attr a = attr_default(OP_MATMUL);
      a.b[0] = ta, a.b[1] = tb;
      int y = ref_op(&r, OP_MATMUL, &a, 2, ai, bi);
      size_t scr = bpck_gemm_scratch_f64(M, N, K) + bpck_gemm_scratch_f32(M, N, K);
      verify(&(Case){.what = "matmul",
                     .fn = r_gemm,
                     .nargs = 2,
                     .args = {ARG(A, M * K), ARG(B, K * N)},
                     .nout = M * N,
                     .want = ref_run(&r, y, true, 0, 0),
                     .total = M,
                     .scratch = scr,
                     .d = {M, N, K, ta ? M : K, ta, tb ? K : N, tb, N, 0},
                     .tol32 = 1e-4});
      ref_free(&r);
    }
}

// ---- the f32 GEMM's two paths (bpck_set_isa): AVX2 and AVX-512

// C (M x ldc) = the f32 GEMM of d (naive_gemm's layout) over the range's
// pieces [cuts[p], cuts[p + 1]) on the given path, from C0.
static void gemm_f32_run(int isa, int bf16, const int64_t *d, const float *A, const float *B, const float *C0, float *C,
                         float *ws, const int64_t *cuts, int ncuts) {
  cr_assert_eq(bpck_set_isa(isa), isa);
  memcpy(C, C0, sizeof(float) * (size_t)(d[0] * d[7]));
  __typeof__(bpck_gemm_f32) *rows = bf16 ? bpck_gemm_bf16 : bpck_gemm_f32;
  __typeof__(bpck_gemm_f32) *cols = bf16 ? bpck_gemm_cols_bf16 : bpck_gemm_cols_f32;
  for (int p = 0; p + 1 < ncuts; p++)
    (d[9] ? cols : rows)(d[0], d[1], d[2], A, d[3], (int)d[4], B, d[5], (int)d[6], C, d[7], (int)d[8], ws, cuts[p],
                         cuts[p + 1]);
}

// Every gemm case on both paths: each within tolerance of the naive loop,
// and the two paths' C the same bits, whole and split at any row or column
// (not only at tile edges). Sizes 1, 5, 7, 31, 33, 97, 385 in every role;
// K up to 800 (three K blocks of 267) and 385 (two, 193 + 192). bf16: the
// bf16 GEMM (AVX2 FMAs, or vdpbf16ps where the CPU has AVX512_BF16) against
// the naive loop on the operands rounded to bf16 (bpck_bf16_round), in double.
static void gemm_paths_same_bits(int bf16) {
  static const int64_t mnk[][3] = {{1, 1, 1},      {5, 7, 31},   {7, 5, 33},    {31, 33, 97},  {33, 31, 385},
                                   {97, 33, 7},    {33, 97, 5},  {385, 7, 33},  {7, 385, 31},  {5, 97, 800},
                                   {97, 5, 385},   {31, 1, 800}, {1, 31, 97},   {97, 97, 97},  {385, 33, 1},
                                   {33, 385, 385}, {385, 97, 7}, {64, 96, 800}, {12, 32, 384}, {24, 64, 768},
                                   {13, 47, 1025}, {36, 80, 5}};
  int have512 = bpck_set_isa(BPCK_ISA_AVX512) == BPCK_ISA_AVX512 && (!bf16 || bpck_bf16_native());
  if (!have512)
    cr_log_info("this CPU has no AVX-512 (F/VL/BW/DQ%s): only the avx2 path is checked", bf16 ? ", BF16" : "");
  const char *wide = bf16 ? "vdpbf16ps" : "avx512";
  for (size_t s = 0; s < sizeof mnk / sizeof *mnk; s++)
    for (int v = 0; v < 16; v++) {
      int64_t M = mnk[s][0], N = mnk[s][1], K = mnk[s][2], ta = v & 1, tb = v >> 1 & 1, acc = v >> 2 & 1;
      int64_t cols = v >> 3, total = cols ? N : M;
      int64_t lda = (ta ? M : K) + (v % 3), ldb = (tb ? K : N) + (v % 2), ldc = N + (v % 3);
      int64_t d[10] = {M, N, K, lda, ta, ldb, tb, ldc, acc, cols};
      int64_t na = (ta ? K : M) * lda, nb = (tb ? N : K) * ldb;
      double *Ad = rvec(na, -1, 1), *Bd = rvec(nb, -1, 1), *C0d = rvec(M * ldc, -1, 1);
      if (bf16) {
        for (int64_t i = 0; i < na; i++) Ad[i] = bpck_bf16_round((float)Ad[i]);
        for (int64_t i = 0; i < nb; i++) Bd[i] = bpck_bf16_round((float)Bd[i]);
      }
      double *want = naive_gemm(d, Ad, Bd, C0d);
      float *A = malloc(sizeof(float) * (size_t)na), *B = malloc(sizeof(float) * (size_t)nb);
      float *C0 = malloc(sizeof(float) * (size_t)(M * ldc)), *C[2], *Cs = malloc(sizeof(float) * (size_t)(M * ldc));
      for (int64_t i = 0; i < na; i++) A[i] = (float)Ad[i];
      for (int64_t i = 0; i < nb; i++) B[i] = (float)Bd[i];
      for (int64_t i = 0; i < M * ldc; i++) C0[i] = (float)C0d[i];
      float *ws = malloc(sizeof(float) * bpck_gemm_scratch_f32(M, N, K));
      size_t bytes = sizeof(float) * (size_t)(M * ldc);
      double tol = 1e-5 * (1 + sqrt((double)K));
      // the whole range, then splits at odd places, pieces run out of order
      int64_t whole[] = {0, total}, two[] = {0, total / 3 + 1, total}, three[] = {0, 1, total / 2 + 1, total};
      for (int isa = BPCK_ISA_AVX2; isa <= (have512 ? BPCK_ISA_AVX512 : BPCK_ISA_AVX2); isa++) {
        float *c = C[isa - BPCK_ISA_AVX2] = malloc(bytes);
        gemm_f32_run(isa, bf16, d, A, B, C0, c, ws, whole, 2);
        for (int64_t i = 0; i < M * ldc; i++)
          cr_assert(close_enough(c[i], want[i], 1e-4, tol), "gemm %lld %lld %lld v%d (%s): [%lld] = %.9g, want %.9g",
                    (long long)M, (long long)N, (long long)K, v, isa == BPCK_ISA_AVX512 ? wide : "avx2", (long long)i,
                    c[i], want[i]);
        if (total >= 2) {
          gemm_f32_run(isa, bf16, d, A, B, C0, Cs, ws, two, 3);
          cr_assert(memcmp(Cs, c, bytes) == 0, "gemm %lld %lld %lld v%d: 2-way split differs", (long long)M,
                    (long long)N, (long long)K, v);
        }
        if (total >= 3) {
          gemm_f32_run(isa, bf16, d, A, B, C0, Cs, ws, three, 4);
          cr_assert(memcmp(Cs, c, bytes) == 0, "gemm %lld %lld %lld v%d: 3-way split differs", (long long)M,
                    (long long)N, (long long)K, v);
        }
      }
      if (have512)
        cr_assert(memcmp(C[0], C[1], bytes) == 0, "gemm %lld %lld %lld v%d: avx2 and %s differ", (long long)M,
                  (long long)N, (long long)K, v, wide);
      free(C[0]);
      if (have512) free(C[1]);
      free(Ad), free(Bd), free(C0d), free(want), free(A), free(B), free(C0), free(Cs), free(ws);
    }
  bpck_set_isa(BPCK_ISA_AUTO);
}

Test(kernels, gemm_avx2_and_avx512_same_bits) { gemm_paths_same_bits(0); }
Test(kernels, gemm_bf16_avx2_and_vdpbf16ps_same_bits) { gemm_paths_same_bits(1); }

// bf16 rounding: nearest even, subnormals to signed zero, NaN stays NaN, inf stays.
Test(kernels, bf16_round) {
  cr_assert_eq(bpck_bf16_round(1.0f), 1.0f);
  cr_assert_eq(bpck_bf16_round(1.00390625f), 1.0f);  // halfway 1 + 2^-8: to even (1)
  cr_assert_eq(bpck_bf16_round(1.01171875f), 1.015625f);  // halfway 1 + 3*2^-8: to even (1 + 2^-6)
  cr_assert_eq(bpck_bf16_round(nextafterf(1.00390625f, 2)), 1.0078125f);  // just above halfway: up
  cr_assert_eq(bpck_bf16_round(-3.1415927f), -3.140625f);
  cr_assert_eq(bpck_bf16_round(1e-40f), 0.0f);
  cr_assert(signbit(bpck_bf16_round(-1e-40f)));
  cr_assert(isinf(bpck_bf16_round(INFINITY)) && isnan(bpck_bf16_round(NAN)));
  cr_assert(isinf(bpck_bf16_round(3.4e38f)));  // past bf16's largest finite: inf, as RNE gives
}

// BPC_ISA=avx2 forces the AVX2 path; otherwise the CPU decides.
Test(kernels, isa_dispatch) {
  int have512 = bpck_set_isa(BPCK_ISA_AVX512) == BPCK_ISA_AVX512;
  cr_assert_eq(bpck_isa(), have512 ? BPCK_ISA_AVX512 : BPCK_ISA_AVX2);
  cr_assert_eq(bpck_set_isa(BPCK_ISA_AVX2), BPCK_ISA_AVX2);
  cr_assert_eq(bpck_isa(), BPCK_ISA_AVX2);
  setenv("BPC_ISA", "avx2", 1);
  cr_assert_eq(bpck_set_isa(BPCK_ISA_AUTO), BPCK_ISA_AVX2);
  unsetenv("BPC_ISA");
  cr_assert_eq(bpck_set_isa(BPCK_ISA_AUTO), have512 ? BPCK_ISA_AVX512 : BPCK_ISA_AVX2);
  setenv("BPC_ISA", "avx512", 1);
  cr_assert_eq(bpck_set_isa(BPCK_ISA_AUTO), have512 ? BPCK_ISA_AVX512 : BPCK_ISA_AVX2);
}

// ---------------------------------------------------------------- scalar math

// Error of a float result in units of the float spacing at the true value.
static double ulp_err(float got, double want) {
  if (isnan(want)) return isnan(got) ? 0 : INFINITY;
  if (isinf(want) || fabs(want) > FLT_MAX)
    return (double)got == want || (isinf(got) && (got > 0) == (want > 0)) ? 0 : INFINITY;
  double a = fabs(want) < FLT_MIN ? FLT_MIN : fabs(want);
  int e;
  frexp(a, &e);
  double ulp = ldexp(1.0, e - 24);
  if (ulp < ldexp(1.0, -149)) ulp = ldexp(1.0, -149);
  return fabs((double)got - want) / ulp;
}

typedef float (*F32Fn)(float, float);
typedef double (*RefFn)(double, double);

static float w_exp(float x, float p) { return bpck_exp_f32(x); }
static float w_log(float x, float p) { return bpck_log_f32(x); }
static float w_tanh(float x, float p) { return bpck_tanh_f32(x); }
static float w_sin(float x, float p) { return bpck_sin_f32(x); }
static float w_cos(float x, float p) { return bpck_cos_f32(x); }
static float w_erf(float x, float p) { return bpck_erf_f32(x); }
static float w_sigmoid(float x, float p) { return bpck_sigmoid_f32(x); }
static float w_softplus(float x, float p) { return bpck_softplus_f32(x); }
static float w_silu(float x, float p) { return bpck_silu_f32(x); }
static double d_exp(double x, double p) { return exp(x); }
static double d_log(double x, double p) { return log(x); }
static double d_tanh(double x, double p) { return tanh(x); }
static double d_sin(double x, double p) { return sin(x); }
static double d_cos(double x, double p) { return cos(x); }
static double d_erf(double x, double p) { return erf(x); }
static double d_sigmoid(double x, double p) { return s_sigmoid(&x, NULL); }
static double d_softplus(double x, double p) { return s_softplus(&x, NULL); }
static double d_silu(double x, double p) { return s_silu(&x, NULL); }
// gelu and its derivative in double without the interpreter formulas'
// cancellation in the negative tail (1 + tanh u, 1 + erf z): the same math
// through sigmoid(2u) and erfc, so the tail is measured against true values.
static double d_gelu(double x, double p) {
  if (p == 0) return 0.5 * x * erfc(-x / sqrt(2.0));
  double u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
  return x / (1 + exp(-2 * u));
}
static double d_gelu_grad(double x, double p) {
  if (p == 0) return 0.5 * erfc(-x / sqrt(2.0)) + x * 0.3989422804014327 * exp(-0.5 * x * x);
  double u = 0.7978845608028654 * (x + 0.044715 * x * x * x), s = 1 / (1 + exp(-2 * u));
  return s + 2 * x * s * (1 - s) * 0.7978845608028654 * (1 + 3 * 0.044715 * x * x);
}
static double d_pow(double x, double p) { return pow(x, p); }

// Worst ulp error of f over n points evenly spaced on [lo, hi] (x rounded to
// float); where the true value is below `floor` in magnitude the error is
// measured in ulps of `floor` (cancellation regions of gelu's tails).
static double sweep(F32Fn f, RefFn ref, float p, double lo, double hi, int n, double floor_, double *worst_x) {
  double worst = 0;
  for (int i = 0; i <= n; i++) {
    float x = (float)(lo + (hi - lo) * i / n);
    double want = ref(x, p);
    float got = f(x, p);
    double e = fabs(want) < floor_ ? fabs((double)got - want) / (floor_ * 0x1p-23) : ulp_err(got, want);
    if (e > worst) worst = e, *worst_x = x;
  }
  return worst;
}

typedef struct MathCase {
  const char *name;
  F32Fn f;
  RefFn ref;
  float p;
  double lo, hi, floor_, max_ulp;
} MathCase;

Test(kernels, scalar_math_f32_accuracy) {
  static const MathCase cases[] = {
      {"exp", w_exp, d_exp, 0, -104, 89, 0, 2},
      {"log", w_log, d_log, 0, 1e-6, 100, 0, 2},
      {"log (large)", w_log, d_log, 0, 100, 3e38, 0, 2},
      {"tanh", w_tanh, d_tanh, 0, -12, 12, 0, 3},
      {"sin", w_sin, d_sin, 0, -10, 10, 0, 3},
      {"sin (large)", w_sin, d_sin, 0, -1e4, 1e4, 0, 4},
      {"cos", w_cos, d_cos, 0, -10, 10, 0, 3},
      {"cos (large)", w_cos, d_cos, 0, -1e4, 1e4, 0, 4},
      {"erf", w_erf, d_erf, 0, -6, 6, 0, 3},
      {"sigmoid", w_sigmoid, d_sigmoid, 0, -100, 30, 0, 3},
      {"softplus", w_softplus, d_softplus, 0, -80, 80, 0, 3},
      {"silu", w_silu, d_silu, 0, -80, 40, 0, 4},
      // float all the way (8 wide): in the far negative tail, where gelu is
      // below 1e-28, exp(2u) with |2u| ~ 70 costs ~150 ulp (2e-5 relative).
      {"gelu tanh", bpck_gelu_f32, d_gelu, 1, -12, 12, 1e-30, 200},
      {"gelu erf", bpck_gelu_f32, d_gelu, 0, -12, 12, 1e-30, 16},
      {"gelu_grad tanh", bpck_gelu_grad_f32, d_gelu_grad, 1, -12, 12, 1, 8},
      {"gelu_grad erf", bpck_gelu_grad_f32, d_gelu_grad, 0, -12, 12, 1, 8},
      {"pow 2", bpck_pow_f32, d_pow, 2, -100, 100, 0, 1},
      {"pow 0.5", bpck_pow_f32, d_pow, 0.5f, 0, 1000, 0, 1},
      {"pow -1.5", bpck_pow_f32, d_pow, -1.5f, 1e-3, 1000, 0, 1},
      {"pow 3", bpck_pow_f32, d_pow, 3, -30, 30, 0, 1},
      {"pow 7.25", bpck_pow_f32, d_pow, 7.25f, 0, 100, 0, 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const MathCase *m = &cases[i];
    double wx = 0, w = sweep(m->f, m->ref, m->p, m->lo, m->hi, 400000, m->floor_, &wx);
    printf("  f32 %-16s [%g, %g]: max error %.2f ulp (at x = %.9g)\n", m->name, m->lo, m->hi, w, wx);
    cr_expect(w <= m->max_ulp, "%s: %.2f ulp at x = %.9g", m->name, w, wx);
  }
}

Test(kernels, scalar_math_f32_extremes) {
  cr_assert(isinf(bpck_exp_f32(89.0f)) && bpck_exp_f32(89.0f) > 0);
  cr_assert(isinf(bpck_exp_f32(1e30f)));
  cr_assert_eq(bpck_exp_f32(-104.0f), 0.0f);
  cr_assert_eq(bpck_exp_f32(-1e30f), 0.0f);
  cr_assert_eq(bpck_exp_f32(-INFINITY), 0.0f);
  cr_assert(isinf(bpck_exp_f32(INFINITY)));
  cr_assert(isnan(bpck_exp_f32(NAN)));
  cr_assert(ulp_err(bpck_exp_f32(-100.0f), exp(-100.0)) <= 2, "subnormal exp");
  cr_assert(ulp_err(bpck_exp_f32(88.7f), exp((double)88.7f)) <= 2);
  cr_assert(isinf(bpck_log_f32(0.0f)) && bpck_log_f32(0.0f) < 0);
  cr_assert(isinf(bpck_log_f32(-0.0f)) && bpck_log_f32(-0.0f) < 0);
  cr_assert(isnan(bpck_log_f32(-1.0f)));
  cr_assert(isinf(bpck_log_f32(INFINITY)));
  cr_assert(isnan(bpck_log_f32(NAN)));
  cr_assert(ulp_err(bpck_log_f32(1e-45f), log((double)1e-45f)) <= 2, "subnormal log");
  cr_assert(ulp_err(bpck_log_f32(3e-40f), log((double)3e-40f)) <= 2, "subnormal log");
  cr_assert_eq(bpck_tanh_f32(50.0f), 1.0f);
  cr_assert_eq(bpck_tanh_f32(-1e30f), -1.0f);
  cr_assert_eq(bpck_tanh_f32(INFINITY), 1.0f);
  cr_assert(isnan(bpck_tanh_f32(NAN)));
  cr_assert(isnan(bpck_sin_f32(INFINITY)) && isnan(bpck_cos_f32(-INFINITY)));
  cr_assert_eq(bpck_sin_f32(0.0f), 0.0f);
  cr_assert_eq(bpck_cos_f32(0.0f), 1.0f);
  cr_assert_eq(bpck_erf_f32(10.0f), 1.0f);
  cr_assert_eq(bpck_erf_f32(-INFINITY), -1.0f);
  cr_assert_eq(bpck_sigmoid_f32(-INFINITY), 0.0f);
  cr_assert_eq(bpck_sigmoid_f32(INFINITY), 1.0f);
  cr_assert_eq(bpck_softplus_f32(-200.0f), 0.0f);
  cr_assert_eq(bpck_softplus_f32(1e30f), 1e30f);
  cr_assert_eq(bpck_gelu_f32(-1e30f, 1), 0.0f);
  cr_assert_eq(bpck_gelu_f32(1e30f, 0), 1e30f);
  cr_assert_eq(bpck_gelu_grad_f32(1e30f, 1), 1.0f);
  cr_assert_eq(bpck_gelu_grad_f32(-1e30f, 0), 0.0f);
  cr_assert_eq(bpck_pow_f32(0.0f, 2.0f), 0.0f);
  cr_assert(isinf(bpck_pow_f32(0.0f, -1.0f)));
  cr_assert(isinf(bpck_pow_f32(-0.0f, -1.0f)) && bpck_pow_f32(-0.0f, -1.0f) < 0);
  cr_assert_eq(bpck_pow_f32(-2.0f, 3.0f), -8.0f);
  cr_assert_eq(bpck_pow_f32(-2.0f, 2.0f), 4.0f);
  cr_assert(isnan(bpck_pow_f32(-2.0f, 0.5f)));
  cr_assert_eq(bpck_pow_f32(NAN, 0.0f), 1.0f);
  cr_assert(isinf(bpck_pow_f32(10.0f, 50.0f)));
  cr_assert_eq(bpck_pow_f32(10.0f, -50.0f), 0.0f);
}

// The f64 math is libm with the interpreter's formulas (FMA contraction in
// the native build moves the last bits of values that cancel: 1e-12 relative).
Test(kernels, scalar_math_f64_matches_interpreter) {
  for (int i = -4000; i <= 4000; i++) {
    double x = i * 0.005;
    Attr t = attr_default(OP_GELU), e = attr_default(OP_GELU);
    t.b[0] = true, e.b[0] = false;
    double want[] = {exp(x),
                     log(fabs(x) + 1e-3),
                     tanh(x),
                     sin(x),
                     cos(x),
                     erf(x),
                     pow(fabs(x), 1.5),
                     s_sigmoid(&x, NULL),
                     s_softplus(&x, NULL),
                     s_gelu(&x, &t),
                     s_gelu(&x, &e),
                     s_gelu_grad(&x, &t),
                     s_gelu_grad(&x, &e),
                     s_silu(&x, NULL)};
    double got[] = {bpck_exp_f64(x),
                    bpck_log_f64(fabs(x) + 1e-3),
                    bpck_tanh_f64(x),
                    bpck_sin_f64(x),
                    bpck_cos_f64(x),
                    bpck_erf_f64(x),
                    bpck_pow_f64(fabs(x), 1.5),
                    bpck_sigmoid_f64(x),
                    bpck_softplus_f64(x),
                    bpck_gelu_f64(x, 1),
                    bpck_gelu_f64(x, 0),
                    bpck_gelu_grad_f64(x, 1),
                    bpck_gelu_grad_f64(x, 0),
                    bpck_silu_f64(x)};
    for (size_t k = 0; k < sizeof want / sizeof *want; k++)
      cr_assert(close_enough(got[k], want[k], 1e-12, 1e-15), "f64 fn %zu at %g: %.17g vs %.17g", k, x, got[k], want[k]);
  }
}
