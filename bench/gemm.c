// bench/gemm.c — GFLOP/s of the kernel library's f32 GEMM (bpck_gemm_f32, the
// one every generated matmul calls) beside OpenBLAS's cblas_sgemm in the same
// process, on square sizes and on the shapes a transformer's backward pass
// produces (transposed operands, skinny K or M), on 1 thread and on 2 threads
// (bpck through the runtime's pool, split as generated code splits: over
// columns when N > M, else over rows; OpenBLAS through its own threads). One line per case:
//   gemm LABEL M N K TA TB THREADS BPCK_GFLOPS OPENBLAS_GFLOPS ISA [AVX2_GFLOPS]
// ISA is the path bpck took (bpck_isa(): avx512 unless the CPU lacks it or
// BPC_ISA=avx2); with --both and that path avx512, AVX2_GFLOPS is the same
// call forced onto the avx2 path (bpck_set_isa). The contenders are timed in
// turns (bpck, OpenBLAS, bpck avx2, then again), best of 5 turns, so drift on
// this shared machine hits each alike. --no-blas leaves OpenBLAS out.
// --bf16 times bpck_gemm_bf16 instead (bf16 operands, f32 sums; ISA then
// reads vdpbf16ps or bf16-avx2), OpenBLAS still in f32.
// Not a test: the bench_gemm target; run by bench/bench.py.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bpc.h"
#include "bpc_kernels.h"
#ifdef BPC_HAVE_OPENBLAS
#include <cblas.h>
#endif

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// One turn of `call`: repeated until ~0.1 s, the time per call.
#define TURN(call)                       \
  ({                                     \
    int iters_ = 0;                      \
    double t0_ = now(), t1_;             \
    do {                                 \
      call;                              \
      iters_++;                          \
    } while ((t1_ = now()) - t0_ < 0.1); \
    (t1_ - t0_) / iters_;                \
  })
#define KEEP_BEST(best, t) ((best) = (t) < (best) ? (t) : (best))

// --cold: operands out of cache before each call, as in a training step
// where A, B and C were last touched kernels ago: a 64 MiB buffer is
// rewritten between calls, each call timed alone, the median of 21 kept.
static int cold;
static char *evict_buf;
#define EVICT_BYTES (64 << 20)
static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

typedef struct {
  int64_t M, N, K, lda, ldb;
  int ta, tb;
  const float *A, *B;
  float *C, *ws;
  size_t ws_per;
} Job;

static int bf16;

static void task(void *ctx, int64_t begin, int64_t end, int thread) {
  Job *j = ctx;
  __typeof__(bpck_gemm_f32) *rows = bf16 ? bpck_gemm_bf16 : bpck_gemm_f32;
  __typeof__(bpck_gemm_f32) *cols = bf16 ? bpck_gemm_cols_bf16 : bpck_gemm_cols_f32;
  if (j->N > j->M) {  // codegen's emit_gemm: columns in units of BPCK_GEMM_COL_UNIT
    int64_t hi = end * BPCK_GEMM_COL_UNIT < j->N ? end * BPCK_GEMM_COL_UNIT : j->N;
    cols(j->M, j->N, j->K, j->A, j->lda, j->ta, j->B, j->ldb, j->tb, j->C, j->N, 0, j->ws + (size_t)thread * j->ws_per,
         begin * BPCK_GEMM_COL_UNIT, hi);
    return;
  }
  int64_t hi = end * BPCK_GEMM_ROW_UNIT < j->M ? end * BPCK_GEMM_ROW_UNIT : j->M;
  rows(j->M, j->N, j->K, j->A, j->lda, j->ta, j->B, j->ldb, j->tb, j->C, j->N, 0, j->ws + (size_t)thread * j->ws_per,
       begin * BPCK_GEMM_ROW_UNIT, hi);
}

static int with_blas = 1, both = 0;

static const char *isa_name(int isa) {
  if (bf16) return bpck_bf16_native() ? "vdpbf16ps" : "bf16-avx2";
  return isa == BPCK_ISA_AVX512 ? "avx512" : "avx2";
}

static void run(const char *label, int64_t M, int64_t N, int64_t K, int ta, int tb, bpcrt_pool *pool) {
  int threads = bpcrt_pool_threads(pool), isa = bpck_isa();
  float *A = malloc(sizeof(float) * (size_t)(M * K)), *B = malloc(sizeof(float) * (size_t)(K * N));
  float *C = malloc(sizeof(float) * (size_t)(M * N));
  Job j = {M, N, K, ta ? M : K, tb ? K : N, ta, tb, A, B, C, NULL, bpck_gemm_scratch_f32(M, N, K) + 16};
  j.ws = malloc(sizeof(float) * j.ws_per * (size_t)threads);
  for (int64_t i = 0; i < M * K; i++) A[i] = (float)(i % 7) - 3;
  for (int64_t i = 0; i < K * N; i++) B[i] = (float)(i % 5) - 2;
  double flop = 2.0 * (double)M * (double)N * (double)K;
  int64_t units =
      N > M ? (N + BPCK_GEMM_COL_UNIT - 1) / BPCK_GEMM_COL_UNIT : (M + BPCK_GEMM_ROW_UNIT - 1) / BPCK_GEMM_ROW_UNIT;
  int narrow = both && isa == BPCK_ISA_AVX512;
#ifdef BPC_HAVE_OPENBLAS
  openblas_set_num_threads(threads);
#define BLAS_CALL                                                                                                    \
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K, \
              1.0f, A, (int)j.lda, B, (int)j.ldb, 0.0f, C, (int)N)
#else
  with_blas = 0;
#define BLAS_CALL (void)0
#endif
#define BPCK_CALL bpcrt_parallel_for(pool, task, &j, units, 1)
  double t = 1e30, to = 1e30, t2 = 1e30;
  if (cold) {  // the median of 21 calls, each after the eviction
    double ts[3][21];
    for (int rep = 0; rep < 21; rep++) {
      double t0;
      memset(evict_buf, rep, EVICT_BYTES);
      t0 = now(), BPCK_CALL, ts[0][rep] = now() - t0;
      if (with_blas) memset(evict_buf, rep, EVICT_BYTES), t0 = now(), BLAS_CALL, ts[1][rep] = now() - t0;
      if (narrow) {
        bpck_set_isa(BPCK_ISA_AVX2);
        memset(evict_buf, rep, EVICT_BYTES), t0 = now(), BPCK_CALL, ts[2][rep] = now() - t0;
        bpck_set_isa(isa);
      }
    }
    for (int c = 0; c < 3; c++) qsort(ts[c], 21, sizeof(double), cmp_double);
    t = ts[0][10], to = ts[1][10], t2 = ts[2][10];
  } else {
    for (int rep = 0; rep < 5; rep++) {
      KEEP_BEST(t, TURN(BPCK_CALL));
      if (with_blas) KEEP_BEST(to, TURN(BLAS_CALL));
      if (narrow) {
        bpck_set_isa(BPCK_ISA_AVX2);
        KEEP_BEST(t2, TURN(BPCK_CALL));
        bpck_set_isa(isa);
      }
    }
  }
  printf("gemm %s %lld %lld %lld %d %d %d %.1f %.1f %s", label, (long long)M, (long long)N, (long long)K, ta, tb,
         threads, flop / t * 1e-9, with_blas ? flop / to * 1e-9 : 0.0, isa_name(isa));
  if (narrow) printf(" %.1f", flop / t2 * 1e-9);
  printf("\n");
  fflush(stdout);
  free(A), free(B), free(C), free(j.ws);
}

int main(int argc, char **argv) {
  int quick = 0, shape = 0, nshape = 0;
  int64_t dims[6];
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--quick"))
      quick = 1;
    else if (!strcmp(argv[i], "--cold"))
      cold = 1;
    else if (!strcmp(argv[i], "--both"))
      both = 1;
    else if (!strcmp(argv[i], "--no-blas"))
      with_blas = 0;
    else if (!strcmp(argv[i], "--bf16"))
      bf16 = 1;
    else if (!strcmp(argv[i], "--shape"))
      shape = 1;
    else if (shape && nshape < 6)
      dims[nshape++] = atoll(argv[i]);
    else {
      fprintf(stderr,
              "usage: bench_gemm [--quick] [--both] [--no-blas] [--bf16] [--shape M N K TA TB THREADS [--cold]]\n");
      return 2;
    }
  }
  if (shape && nshape != 6) {
    fprintf(stderr, "bench_gemm: --shape takes M N K TA TB THREADS\n");
    return 2;
  }
  if (cold && !(evict_buf = malloc(EVICT_BYTES))) return 1;
  printf("# bpck f32 GEMM path: %s (BPC_ISA=%s)\n", isa_name(bpck_isa()), getenv("BPC_ISA") ? getenv("BPC_ISA") : "");
  if (shape) {
    bpcrt_pool *pool = bpcrt_pool_new((int)dims[5]);
    run("shape", dims[0], dims[1], dims[2], (int)dims[3], (int)dims[4], pool);
    bpcrt_pool_free(pool);
    free(evict_buf);
    return 0;
  }
  for (int threads = 1; threads <= 2; threads++) {
    bpcrt_pool *pool = bpcrt_pool_new(threads);
    int64_t sq[] = {512, 1024, 1536, 2048};
    for (int i = 0; i < (quick ? 2 : 4); i++) run("square", sq[i], sq[i], sq[i], 0, 0, pool);
    // GPT-2-small, B*T = 256 tokens, C = 768: forward x@W, dX = dY@W^T, dW = X^T@dY
    run("fwd_fc", 256, 3072, 768, 0, 0, pool);
    run("bwd_dx_fc", 256, 768, 3072, 0, 1, pool);
    run("bwd_dw_fc", 768, 3072, 256, 1, 0, pool);
    // gpt_poetry, B*T = 1024 tokens, C = 256; the tied output layer's dW (V = 256)
    run("fwd_qkv", 1024, 768, 256, 0, 0, pool);
    run("bwd_dw_qkv", 256, 768, 1024, 1, 0, pool);
    run("bwd_dx_out", 1024, 256, 1024, 0, 1, pool);
    // 2048 tokens, C = 384, MLP 1536: forward x@W, dX = dY@W^T, dW = X^T@dY of each layer shape
    static const int64_t tf[][2] = {{384, 384}, {1536, 384}, {384, 1536}};  // (N, K) of the forward
    for (int i = 0; i < (quick ? 1 : 3); i++) {
      run("tf_fwd", 2048, tf[i][0], tf[i][1], 0, 0, pool);
      run("tf_dx", 2048, tf[i][1], tf[i][0], 0, 1, pool);
      run("tf_dw", tf[i][1], tf[i][0], 2048, 1, 0, pool);
    }
    bpcrt_pool_free(pool);
  }
  free(evict_buf);
  return 0;
}
