// bench/threadpool.c — what a parallel_for costs (runtime/threadpool.c).
//
// Prints the median and 99th percentile nanoseconds of one parallel_for over
// tiny work (one element per thread, grain 1) with 1 and 2 threads, the cost
// of a call that runs inline because it is below two grains, the same tiny
// call when workers sleep (spin 0), and the speedup of 2 threads over 1 on a
// compute loop of 1e7 FMAs with almost no memory traffic.
// Usage: bench_threadpool [calls]   (default 200000)
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bpc.h"

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

static void tiny(void *ctx, int64_t b, int64_t e, int thread) {
  ((volatile int64_t *)ctx)[thread * 16] += e - b;  // one line per thread
}

// Times each call on its own (the clock read costs ~20 ns, included).
static void time_calls(const char *what, bpcrt_pool *p, int64_t n, int64_t grain, int calls) {
  static int64_t slots[64 * 16];
  int64_t *t = malloc((size_t)calls * sizeof *t);
  for (int i = 0; i < calls / 10; i++)  // warm up: workers spinning, lines hot
    bpcrt_parallel_for(p, tiny, slots, n, grain);
  for (int i = 0; i < calls; i++) {
    int64_t t0 = now_ns();
    bpcrt_parallel_for(p, tiny, slots, n, grain);
    t[i] = now_ns() - t0;
  }
  qsort(t, (size_t)calls, sizeof *t, cmp64);
  printf("%-44s median %6ld ns   p99 %7ld ns\n", what, (long)t[calls / 2], (long)t[calls * 99 / 100]);
  free(t);
}

// 100 dependent-free FMA chains per element: compute-bound, 8 bytes written.
#define FMAS_PER_ELEM 100
static void fma_task(void *ctx, int64_t b, int64_t e, int thread) {
  double *out = ctx;
  for (int64_t i = b; i < e; i++) {
    double x = (double)i * 1e-6, a0 = x, a1 = x + 1, a2 = x + 2, a3 = x + 3;
    for (int k = 0; k < FMAS_PER_ELEM; k += 4) {
      a0 = a0 * 0.999999 + 1e-7;
      a1 = a1 * 0.999999 + 1e-7;
      a2 = a2 * 0.999999 + 1e-7;
      a3 = a3 * 0.999999 + 1e-7;
    }
    out[i] = a0 + a1 + a2 + a3;
  }
}

static double time_fma(bpcrt_pool *p, double *out, int64_t n) {
  int64_t best[9];
  for (int r = 0; r < 9; r++) {
    int64_t t0 = now_ns();
    bpcrt_parallel_for(p, fma_task, out, n, 1024);
    best[r] = now_ns() - t0;
  }
  qsort(best, 9, sizeof *best, cmp64);
  return (double)best[4];
}

int main(int argc, char **argv) {
  int calls = argc > 1 ? atoi(argv[1]) : 200000;
  if (calls < 100) calls = 100;
  bpcrt_pool *all = bpcrt_pool_new(0);
  printf("threadpool: %d calls each, %d usable CPUs\n", calls, bpcrt_pool_threads(all));
  bpcrt_pool_free(all);
  bpcrt_pool *p1 = bpcrt_pool_new(1), *p2 = bpcrt_pool_new(2);
  time_calls("1 thread, n=2 grain=1 (inline)", p1, 2, 1, calls);
  time_calls("2 threads, n=2 grain=1 (hot workers)", p2, 2, 1, calls);
  time_calls("2 threads, n=100 grain=64 (below 2 grains)", p2, 100, 64, calls);
  bpcrt_pool_set_spin(p2, 0);
  time_calls("2 threads, n=2 grain=1 (workers asleep)", p2, 2, 1, calls / 10);
  bpcrt_pool_set_spin(p2, 100000);

  const int64_t n = 100000;  // x 100 FMAs = 1e7
  double *out = malloc((size_t)n * sizeof *out);
  double t1 = time_fma(p1, out, n), t2 = time_fma(p2, out, n);
  printf("1e7 FMAs: 1 thread %.2f ms, 2 threads %.2f ms, speedup %.2fx\n", t1 / 1e6, t2 / 1e6, t1 / t2);
  free(out);
  bpcrt_pool_free(p1);
  bpcrt_pool_free(p2);
  return 0;
}
