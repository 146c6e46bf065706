// bench/peak.c — this machine's peak FP32 rate, measured: a loop of independent
// 8-wide fused multiply-adds (12 accumulators, more than FMA latency x ports),
// on 1 thread and on every thread asked for. Prints `peak_gflops THREADS VALUE`
// lines; on a CPU with AVX-512 also `peak512_gflops THREADS VALUE`, the same
// loop on 16-wide vectors (the rate kernels_avx512.h's GEMM runs against).
// Built with -O3 -march=native by the bench_peak target; the 512-bit loop has
// its own target attribute, so it builds on any x86-64 and runs only where
// the CPU says it can. With AVX512_BF16 also `peakbf16_gflops THREADS VALUE`:
// 12 independent vdpbf16ps chains (64 FLOPs each: 16 lanes x 2 pairs x 2),
// the rate the bf16 GEMM (runtime/kernels_bf16.h) runs against.
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef float v8 __attribute__((vector_size(32)));

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#define ITERS 50000000L
static volatile float sink;

static void *fma_loop(void *arg) {
  float s = *(float *)arg;
  v8 a = {s, s, s, s, s, s, s, s}, b = a * 0.5f;
  v8 c0 = a, c1 = a + 1, c2 = a + 2, c3 = a + 3, c4 = a + 4, c5 = a + 5;
  v8 c6 = a + 6, c7 = a + 7, c8 = a + 8, c9 = a + 9, c10 = a + 10, c11 = a + 11;
  for (long i = 0; i < ITERS; i++) {
    __asm__ volatile("" : "+x"(a));  // keep the multiplier opaque: no folding
    c0 = c0 * a + b, c1 = c1 * a + b, c2 = c2 * a + b, c3 = c3 * a + b;
    c4 = c4 * a + b, c5 = c5 * a + b, c6 = c6 * a + b, c7 = c7 * a + b;
    c8 = c8 * a + b, c9 = c9 * a + b, c10 = c10 * a + b, c11 = c11 * a + b;
  }
  v8 r = c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11;
  sink = r[0] + r[7];
  return NULL;
}

typedef float v16 __attribute__((vector_size(64)));

__attribute__((target("avx512f"))) static void *fma_loop512(void *arg) {
  float s = *(float *)arg;
  v16 a = (v16){0} + s, b = a * 0.5f;
  v16 c0 = a, c1 = a + 1, c2 = a + 2, c3 = a + 3, c4 = a + 4, c5 = a + 5;
  v16 c6 = a + 6, c7 = a + 7, c8 = a + 8, c9 = a + 9, c10 = a + 10, c11 = a + 11;
  for (long i = 0; i < ITERS; i++) {
    __asm__ volatile("" : "+v"(a));
    c0 = c0 * a + b, c1 = c1 * a + b, c2 = c2 * a + b, c3 = c3 * a + b;
    c4 = c4 * a + b, c5 = c5 * a + b, c6 = c6 * a + b, c7 = c7 * a + b;
    c8 = c8 * a + b, c9 = c9 * a + b, c10 = c10 * a + b, c11 = c11 * a + b;
  }
  v16 r = c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11;
  sink = r[0] + r[15];
  return NULL;
}

__attribute__((target("avx512f,avx512bf16"))) static void *dpbf16_loop(void *arg) {
  float s = *(float *)arg;
  __m512 c[12];
  for (int k = 0; k < 12; k++) c[k] = _mm512_set1_ps(s + (float)k);
  __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80), b = a;  // pairs of bf16 1.0
  for (long i = 0; i < ITERS; i++) {
    __asm__ volatile("" : "+v"(a));
#pragma GCC unroll 12
    for (int k = 0; k < 12; k++) c[k] = _mm512_dpbf16_ps(c[k], a, b);
  }
  __m512 r = c[0];
  for (int k = 1; k < 12; k++) r = _mm512_add_ps(r, c[k]);
  sink = _mm512_reduce_add_ps(r);
  return NULL;
}

// GFLOP/s of `n` threads each running fma_loop (lanes 8), fma_loop512 (16) or
// dpbf16_loop (lanes 32: FLOPs per instruction / 2); the best of 3.
static double measure(int n, int lanes) {
  double best = 0;
  for (int rep = 0; rep < 3; rep++) {
    pthread_t th[64];
    float s = 0.999999f;
    double t0 = now();
    for (int i = 0; i < n; i++)
      pthread_create(&th[i], NULL, lanes == 32 ? dpbf16_loop : lanes == 16 ? fma_loop512 : fma_loop, &s);
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
    double g = (double)n * ITERS * 12 * lanes * 2 / (now() - t0) * 1e-9;
    best = g > best ? g : best;
  }
  return best;
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 2;
  if (threads < 1 || threads > 64) threads = 2;
  printf("peak_gflops 1 %.1f\n", measure(1, 8));
  if (threads > 1) printf("peak_gflops %d %.1f\n", threads, measure(threads, 8));
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) {
    printf("peak512_gflops 1 %.1f\n", measure(1, 16));
    if (threads > 1) printf("peak512_gflops %d %.1f\n", threads, measure(threads, 16));
  }
  if (__builtin_cpu_supports("avx512bf16")) {
    printf("peakbf16_gflops 1 %.1f\n", measure(1, 32));
    if (threads > 1) printf("peakbf16_gflops %d %.1f\n", threads, measure(threads, 32));
  }
  return 0;
}
