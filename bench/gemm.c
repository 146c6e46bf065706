// bench/gemm.c — single-thread GFLOP/s of bpck_gemm_f32/f64 at square sizes,
// beside cblas_sgemm/dgemm when OpenBLAS was found (BPC_HAVE_OPENBLAS; run
// with OPENBLAS_NUM_THREADS=1 for a fair comparison: main() sets it too).
// Not a test: built by the `bench_gemm` target with -O3 -march=native.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bpc_kernels.h"
#ifdef BPC_HAVE_OPENBLAS
#include <cblas.h>
#endif

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// Best of a few timed runs, each repeated until ~0.2 s.
#define BENCH(call)                                            \
  ({                                                           \
    double best_ = 1e30;                                       \
    for (int rep_ = 0; rep_ < 3; rep_++) {                     \
      int iters_ = 0;                                          \
      double t0_ = now(), t1_;                                 \
      do {                                                     \
        call;                                                  \
        iters_++;                                              \
      } while ((t1_ = now()) - t0_ < 0.2);                     \
      double per_ = (t1_ - t0_) / iters_;                      \
      best_ = per_ < best_ ? per_ : best_;                     \
    }                                                          \
    best_;                                                     \
  })

static void run_f32(int n) {
  float *A = malloc(sizeof(float) * (size_t)n * n), *B = malloc(sizeof(float) * (size_t)n * n);
  float *C = malloc(sizeof(float) * (size_t)n * n);
  float *ws = malloc(sizeof(float) * bpck_gemm_scratch_f32(n, n, n));
  for (long i = 0; i < (long)n * n; i++) A[i] = (float)(i % 7) - 3, B[i] = (float)(i % 5) - 2;
  double flop = 2.0 * n * n * n;
  double t = BENCH(bpck_gemm_f32(n, n, n, A, n, 0, B, n, 0, C, n, 0, ws, 0, n));
  printf("f32 %5d  bpck %7.1f GFLOP/s", n, flop / t * 1e-9);
#ifdef BPC_HAVE_OPENBLAS
  double to = BENCH(cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, A, n,
                                B, n, 0.0f, C, n));
  printf("  openblas %7.1f GFLOP/s  ratio %.2f", flop / to * 1e-9, to / t);
#endif
  printf("\n");
  free(A), free(B), free(C), free(ws);
}

static void run_f64(int n) {
  double *A = malloc(sizeof(double) * (size_t)n * n), *B = malloc(sizeof(double) * (size_t)n * n);
  double *C = malloc(sizeof(double) * (size_t)n * n);
  double *ws = malloc(sizeof(double) * bpck_gemm_scratch_f64(n, n, n));
  for (long i = 0; i < (long)n * n; i++) A[i] = (double)(i % 7) - 3, B[i] = (double)(i % 5) - 2;
  double flop = 2.0 * n * n * n;
  double t = BENCH(bpck_gemm_f64(n, n, n, A, n, 0, B, n, 0, C, n, 0, ws, 0, n));
  printf("f64 %5d  bpck %7.1f GFLOP/s", n, flop / t * 1e-9);
#ifdef BPC_HAVE_OPENBLAS
  double to = BENCH(cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, A, n,
                                B, n, 0.0, C, n));
  printf("  openblas %7.1f GFLOP/s  ratio %.2f", flop / to * 1e-9, to / t);
#endif
  printf("\n");
  free(A), free(B), free(C), free(ws);
}

int main(int argc, char **argv) {
  setenv("OPENBLAS_NUM_THREADS", "1", 0);
#ifdef BPC_HAVE_OPENBLAS
  openblas_set_num_threads(1);
#endif
  int sizes[] = {256, 512, 1024};
  for (int i = 0; i < 3; i++) run_f32(sizes[i]);
  for (int i = 0; i < 3 && !(argc > 1 && strcmp(argv[1], "f32") == 0); i++) run_f64(sizes[i]);
  return 0;
}
