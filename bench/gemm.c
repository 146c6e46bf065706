// bench/gemm.c — GFLOP/s of the kernel library's f32 GEMM (bpck_gemm_f32, the
// one every generated matmul calls) beside OpenBLAS's cblas_sgemm in the same
// process, on square sizes and on the shapes a transformer's backward pass
// produces (transposed operands, skinny K or M), on 1 thread and on 2 threads
// (bpck through the runtime's pool, split as generated code splits: over
// columns when N > M, else over rows; OpenBLAS through its own threads). One line per case:
//   gemm LABEL M N K TA TB THREADS BPCK_GFLOPS OPENBLAS_GFLOPS
// Not a test: the bench_gemm target, -O3 -march=native; run by bench/bench.py.
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

// Best of 5 timed runs, each repeated until ~0.1 s.
#define BENCH(call)                                            \
  ({                                                           \
    double best_ = 1e30;                                       \
    for (int rep_ = 0; rep_ < 5; rep_++) {                     \
      int iters_ = 0;                                          \
      double t0_ = now(), t1_;                                 \
      do {                                                     \
        call;                                                  \
        iters_++;                                              \
      } while ((t1_ = now()) - t0_ < 0.1);                     \
      double per_ = (t1_ - t0_) / iters_;                      \
      best_ = per_ < best_ ? per_ : best_;                     \
    }                                                          \
    best_;                                                     \
  })

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
#define BENCH_COLD(call)                                      \
  ({                                                          \
    double ts_[21];                                           \
    for (int rep_ = 0; rep_ < 21; rep_++) {                   \
      memset(evict_buf, rep_, EVICT_BYTES);                   \
      double t0_ = now();                                     \
      call;                                                   \
      ts_[rep_] = now() - t0_;                                \
    }                                                         \
    qsort(ts_, 21, sizeof(double), cmp_double);               \
    ts_[10];                                                  \
  })
#define TIME(call) (cold ? BENCH_COLD(call) : BENCH(call))

typedef struct {
  int64_t M, N, K, lda, ldb;
  int ta, tb;
  const float *A, *B;
  float *C, *ws;
  size_t ws_per;
} Job;

static void task(void *ctx, int64_t begin, int64_t end, int thread) {
  Job *j = ctx;
  if (j->N > j->M) {  // codegen's emit_gemm: columns in units of BPCK_GEMM_COL_UNIT
    int64_t hi = end * BPCK_GEMM_COL_UNIT < j->N ? end * BPCK_GEMM_COL_UNIT : j->N;
    bpck_gemm_cols_f32(j->M, j->N, j->K, j->A, j->lda, j->ta, j->B, j->ldb, j->tb, j->C, j->N, 0,
                       j->ws + (size_t)thread * j->ws_per, begin * BPCK_GEMM_COL_UNIT, hi);
    return;
  }
  int64_t hi = end * BPCK_GEMM_ROW_UNIT < j->M ? end * BPCK_GEMM_ROW_UNIT : j->M;
  bpck_gemm_f32(j->M, j->N, j->K, j->A, j->lda, j->ta, j->B, j->ldb, j->tb, j->C, j->N, 0,
                j->ws + (size_t)thread * j->ws_per, begin * BPCK_GEMM_ROW_UNIT, hi);
}

static void run(const char *label, int64_t M, int64_t N, int64_t K, int ta, int tb, bpcrt_pool *pool) {
  int threads = bpcrt_pool_threads(pool);
  float *A = malloc(sizeof(float) * (size_t)(M * K)), *B = malloc(sizeof(float) * (size_t)(K * N));
  float *C = malloc(sizeof(float) * (size_t)(M * N));
  Job j = {M, N, K, ta ? M : K, tb ? K : N, ta, tb, A, B, C, NULL, bpck_gemm_scratch_f32(M, N, K) + 16};
  j.ws = malloc(sizeof(float) * j.ws_per * (size_t)threads);
  for (int64_t i = 0; i < M * K; i++) A[i] = (float)(i % 7) - 3;
  for (int64_t i = 0; i < K * N; i++) B[i] = (float)(i % 5) - 2;
  double flop = 2.0 * (double)M * (double)N * (double)K;
  int64_t units = N > M ? (N + BPCK_GEMM_COL_UNIT - 1) / BPCK_GEMM_COL_UNIT : (M + BPCK_GEMM_ROW_UNIT - 1) / BPCK_GEMM_ROW_UNIT;
  double t = TIME(bpcrt_parallel_for(pool, task, &j, units, 1));
  double to = 0;
#ifdef BPC_HAVE_OPENBLAS
  openblas_set_num_threads(threads);
  to = TIME(cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M,
                         (int)N, (int)K, 1.0f, A, (int)j.lda, B, (int)j.ldb, 0.0f, C, (int)N));
#endif
  printf("gemm %s %lld %lld %lld %d %d %d %.1f %.1f\n", label, (long long)M, (long long)N, (long long)K, ta, tb,
         threads, flop / t * 1e-9, to > 0 ? flop / to * 1e-9 : 0.0);
  fflush(stdout);
  free(A), free(B), free(C), free(j.ws);
}

int main(int argc, char **argv) {
  int quick = argc > 1 && !strcmp(argv[1], "--quick");
  if ((argc == 8 || argc == 9) && !strcmp(argv[1], "--shape")) {  // --shape M N K TA TB THREADS [--cold]
    cold = argc == 9 && !strcmp(argv[8], "--cold");
    if (cold && !(evict_buf = malloc(EVICT_BYTES))) return 1;
    bpcrt_pool *pool = bpcrt_pool_new(atoi(argv[7]));
    run("shape", atoll(argv[2]), atoll(argv[3]), atoll(argv[4]), atoi(argv[5]), atoi(argv[6]), pool);
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
    bpcrt_pool_free(pool);
  }
  return 0;
}
