// test_rt_threadpool.c — runtime/threadpool.c: the partition (pure, covering,
// >= grain), every element visited once across many (n, grain, nthreads),
// chunk k on thread k and always on the same OS thread, inline paths (NULL
// pool, single chunk, nested call, busy pool), 100k back-to-back calls on the
// spin path, the sleep path and the race between them, and pools created and
// freed repeatedly (leaks show under ASan). Every test has a timeout: a lost
// wake-up shows as a hang.
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "bpc.h"

// ---- the partition -------------------------------------------------------

Test(pool, partition_covers_contiguously_with_grain) {
  const int64_t ns[] = {0, 1, 2, 3, 5, 7, 8, 63, 64, 1000, 4097, INT64_C(1) << 40};
  const int64_t grains[] = {-5, 0, 1, 2, 3, 100, INT64_C(1) << 40};
  for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
    for (size_t g = 0; g < sizeof grains / sizeof *grains; g++)
      for (int t = 1; t <= 9; t++) {
        int64_t n = ns[a], grain = grains[g] < 1 ? 1 : grains[g];
        int c = bpcrt_chunks(n, grains[g], t);
        if (n == 0) {
          cr_assert_eq(c, 0);
          continue;
        }
        int64_t want = n / grain < t ? n / grain : t;
        cr_assert_eq(c, want < 1 ? 1 : want, "n=%ld grain=%ld t=%d", (long)n, (long)grain, t);
        int64_t at = 0, lo = INT64_MAX, hi = 0;
        for (int k = 0; k < c; k++) {
          int64_t b, e;
          bpcrt_chunk(n, c, k, &b, &e);
          cr_assert_eq(b, at);
          cr_assert(e > b);
          if (c > 1) cr_assert(e - b >= grain);
          lo = e - b < lo ? e - b : lo;
          hi = e - b > hi ? e - b : hi;
          at = e;
        }
        cr_assert_eq(at, n);
        cr_assert(hi - lo <= 1);
      }
}

// ---- visiting every element ---------------------------------------------

#define MAXT 16

typedef struct {
  _Atomic int *count;        // visits per element
  int64_t begin[MAXT], end[MAXT];
  _Atomic int calls[MAXT];   // task calls per thread id
  pthread_t who[MAXT];       // OS thread that ran each thread id
  _Atomic int bad_thread;
} Visit;

static void visit(void *ctx, int64_t b, int64_t e, int thread) {
  Visit *v = ctx;
  if (thread < 0 || thread >= MAXT) {
    atomic_store(&v->bad_thread, 1);
    return;
  }
  atomic_fetch_add(&v->calls[thread], 1);
  v->begin[thread] = b;
  v->end[thread] = e;
  v->who[thread] = pthread_self();
  for (int64_t i = b; i < e; i++) atomic_fetch_add_explicit(&v->count[i], 1, memory_order_relaxed);
}

// The OS thread each thread id ran on so far.
typedef struct {
  pthread_t t[MAXT];
  bool known[MAXT];
} Who;

// Runs one parallel_for and checks it against the partition, and each
// thread id against the OS thread it ran on before (who NULL: don't care).
static void check_run(bpcrt_pool *p, int64_t n, int64_t grain, Who *who) {
  Visit *v = calloc(1, sizeof *v);
  v->count = calloc((size_t)(n ? n : 1), sizeof *v->count);
  bpcrt_parallel_for(p, visit, v, n, grain);
  int t = bpcrt_pool_threads(p);
  int c = bpcrt_chunks(n, grain, t);
  cr_assert_eq(atomic_load(&v->bad_thread), 0);
  for (int64_t i = 0; i < n; i++)
    cr_assert_eq(atomic_load(&v->count[i]), 1, "element %ld of n=%ld grain=%ld t=%d", (long)i, (long)n, (long)grain, t);
  for (int k = 0; k < MAXT; k++) {
    cr_assert_eq(atomic_load(&v->calls[k]), k < c, "thread %d n=%ld grain=%ld t=%d", k, (long)n, (long)grain, t);
    if (k >= c) continue;
    int64_t b, e;
    bpcrt_chunk(n, c, k, &b, &e);
    cr_assert_eq(v->begin[k], b);
    cr_assert_eq(v->end[k], e);
    if (k == 0) cr_assert(pthread_equal(v->who[0], pthread_self()), "chunk 0 runs on the caller");
    if (who) {
      if (!who->known[k]) {
        who->t[k] = v->who[k];
        who->known[k] = true;
      }
      cr_assert(pthread_equal(who->t[k], v->who[k]), "thread %d moved to another OS thread", k);
    }
  }
  free(v->count);
  free(v);
}

Test(pool, every_element_once_chunk_k_on_thread_k, .timeout = 120) {
  const int64_t ns[] = {0, 1, 2, 3, 5, 7, 8, 16, 63, 1000, 4097, 100000};
  const int64_t grains[] = {0, 1, 2, 3, 7, 100, INT64_C(1) << 40};
  const int threads[] = {1, 2, 3, 4, 7, 8};
  for (size_t ti = 0; ti < sizeof threads / sizeof *threads; ti++) {
    bpcrt_pool *p = bpcrt_pool_new(threads[ti]);
    cr_assert_eq(bpcrt_pool_threads(p), threads[ti]);
    Who who = {0};
    for (int rep = 0; rep < 3; rep++)  // same triples, same OS threads, every time
      for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
        for (size_t g = 0; g < sizeof grains / sizeof *grains; g++) check_run(p, ns[a], grains[g], &who);
    bpcrt_pool_free(p);
  }
}

Test(pool, sleep_path_and_short_spin, .timeout = 120) {
  // Spin 0: every handoff goes through the futexes. 2000 ns: workers fall
  // asleep right around the next post, the racy window.
  const int64_t spins[] = {0, 2000};
  for (int s = 0; s < 2; s++)
    for (int t = 2; t <= 4; t++) {
      bpcrt_pool *p = bpcrt_pool_new(t);
      bpcrt_pool_set_spin(p, spins[s]);
      for (int rep = 0; rep < 20; rep++) check_run(p, 1 + rep * 37, 1, NULL);
      bpcrt_pool_free(p);
    }
}

// ---- inline paths --------------------------------------------------------

typedef struct {
  _Atomic int calls;
  int64_t b, e;
  int thread;
  pthread_t who;
} One;

static void one(void *ctx, int64_t b, int64_t e, int thread) {
  One *o = ctx;
  atomic_fetch_add(&o->calls, 1);
  o->b = b;
  o->e = e;
  o->thread = thread;
  o->who = pthread_self();
}

static void expect_inline(One *o, int64_t n, int thread) {
  cr_assert_eq(atomic_load(&o->calls), 1);
  cr_assert_eq(o->b, 0);
  cr_assert_eq(o->e, n);
  cr_assert_eq(o->thread, thread);
}

Test(pool, null_pool_runs_inline) {
  One o = {0};
  bpcrt_parallel_for(NULL, one, &o, 12345, 1);
  expect_inline(&o, 12345, 0);
  cr_assert(pthread_equal(o.who, pthread_self()));
  One z = {0};
  bpcrt_parallel_for(NULL, one, &z, 0, 1);
  cr_assert_eq(atomic_load(&z.calls), 0);
  cr_assert_eq(bpcrt_pool_threads(NULL), 1);
  bpcrt_pool_free(NULL);
  bpcrt_pool_set_spin(NULL, 5);
}

Test(pool, below_two_grains_runs_inline_on_caller) {
  bpcrt_pool *p = bpcrt_pool_new(4);
  One o = {0};
  bpcrt_parallel_for(p, one, &o, 199, 100);
  expect_inline(&o, 199, 0);
  cr_assert(pthread_equal(o.who, pthread_self()));
  bpcrt_pool_free(p);
}

typedef struct {
  bpcrt_pool *inner_pool;
  One inner[MAXT];
  _Atomic int outer_calls;
} Nest;

static void outer(void *ctx, int64_t b, int64_t e, int thread) {
  Nest *s = ctx;
  atomic_fetch_add(&s->outer_calls, 1);
  bpcrt_parallel_for(s->inner_pool, one, &s->inner[thread], 1000, 1);
  // The inner task ran inline, on this OS thread.
  if (!pthread_equal(s->inner[thread].who, pthread_self())) s->inner[thread].thread = -99;
}

Test(pool, nested_call_runs_inline_with_callers_thread_id, .timeout = 30) {
  bpcrt_pool *p = bpcrt_pool_new(3), *q = bpcrt_pool_new(2);
  bpcrt_pool *inner[] = {p, q, NULL};  // same pool, another pool, no pool
  for (int i = 0; i < 3; i++) {
    Nest s = {.inner_pool = inner[i]};
    bpcrt_parallel_for(p, outer, &s, 3, 1);
    cr_assert_eq(atomic_load(&s.outer_calls), 3);
    for (int t = 0; t < 3; t++) expect_inline(&s.inner[t], 1000, t);
  }
  bpcrt_pool_free(q);
  bpcrt_pool_free(p);
}

// A second thread driving a pool that is busy gets its range inline.
typedef struct {
  bpcrt_pool *p;
  One o;
} Intruder;

static void *intrude(void *arg) {
  Intruder *in = arg;
  bpcrt_parallel_for(in->p, one, &in->o, 500, 1);
  return NULL;
}

static void spawn_intruder(void *ctx, int64_t b, int64_t e, int thread) {
  if (thread != 0) return;
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, intrude, ctx), 0);
  pthread_join(t, NULL);
}

Test(pool, busy_pool_runs_second_caller_inline, .timeout = 30) {
  Intruder in = {.p = bpcrt_pool_new(2)};
  bpcrt_parallel_for(in.p, spawn_intruder, &in, 2, 1);
  expect_inline(&in.o, 500, 0);
  bpcrt_pool_free(in.p);
}

// ---- stress --------------------------------------------------------------

static void bump(void *ctx, int64_t b, int64_t e, int thread) {
  atomic_fetch_add_explicit((_Atomic int64_t *)ctx + thread, e - b, memory_order_relaxed);
}

// 100k tiny parallel calls back to back: a lost wake-up hangs (timeout).
static void hammer(int nthreads, int64_t spin_ns, int calls) {
  bpcrt_pool *p = bpcrt_pool_new(nthreads);
  if (spin_ns >= 0) bpcrt_pool_set_spin(p, spin_ns);
  _Atomic int64_t sum[MAXT] = {0};
  for (int i = 0; i < calls; i++) bpcrt_parallel_for(p, bump, sum, nthreads + i % 3, 1);
  int64_t total = 0, want = 0;
  for (int t = 0; t < MAXT; t++) total += atomic_load(&sum[t]);
  for (int i = 0; i < calls; i++) want += nthreads + i % 3;
  cr_assert_eq(total, want);
  bpcrt_pool_free(p);
}

Test(pool, back_to_back_tiny_calls_spinning, .timeout = 120) {
  hammer(2, -1, 100000);
  hammer(3, -1, 30000);
}

Test(pool, back_to_back_tiny_calls_sleeping, .timeout = 120) { hammer(2, 0, 100000); }

Test(pool, back_to_back_tiny_calls_at_the_spin_edge, .timeout = 120) {
  hammer(2, 500, 50000);
  hammer(5, -1, 20000);  // more threads than CPUs on small machines
}

Test(pool, create_and_free_repeatedly, .timeout = 120) {
  for (int i = 0; i < 300; i++) {
    bpcrt_pool *p = bpcrt_pool_new(1 + i % 5);
    if (i % 2) {  // half are freed before their workers ever ran anything
      _Atomic int64_t sum[MAXT] = {0};
      bpcrt_parallel_for(p, bump, sum, 64, 1);
      cr_assert_eq(atomic_load(&sum[0]) + atomic_load(&sum[1]) + atomic_load(&sum[2]) + atomic_load(&sum[3]) +
                       atomic_load(&sum[4]),
                   64);
    }
    if (i % 3 == 0) bpcrt_pool_set_spin(p, 0);
    bpcrt_pool_free(p);
  }
}

Test(pool, thread_counts) {
  bpcrt_pool *p = bpcrt_pool_new(0);
  int cpus = bpcrt_pool_threads(p);
  cr_assert(cpus >= 1 && cpus <= BPCRT_MAX_THREADS);
  bpcrt_pool_free(p);
  p = bpcrt_pool_new(-3);
  cr_assert_eq(bpcrt_pool_threads(p), cpus);
  bpcrt_pool_free(p);
  p = bpcrt_pool_new(1);
  cr_assert_eq(bpcrt_pool_threads(p), 1);
  One o = {0};
  bpcrt_parallel_for(p, one, &o, 1000, 1);
  expect_inline(&o, 1000, 0);
  bpcrt_pool_free(p);
}
