// threadpool.c — the thread pool behind every parallel kernel of a training
// step: pthreads, C11 atomics and Linux futexes.
//
// Takes: ranges [0, n) and a task from generated code, many times per step,
// often for tiny work; one caller thread at a time.
// Guarantees: the split is a pure function of (n, grain, nthreads) and chunk
// k runs on thread k; a range below two grains runs inline on the caller
// without touching shared memory; a parallel call with hot workers costs one
// cache-line handoff each way (about a microsecond, see bench/threadpool.c);
// no lost wake-ups, no data races (checked under ThreadSanitizer).
// Leaves out: work stealing and dynamic balancing (they would break the fixed
// chunk -> thread map), several concurrent callers, non-Linux hosts.
//
// The handshake. Each worker owns a `go` word on its own cache line:
// (posts << 1) | SLEEPING. The caller writes the job, then bumps `go` of the
// workers it needs with one atomic exchange (release); the old value says
// whether the worker went to sleep, and only then does the caller pay for a
// futex wake. A worker spins on `go` (acquire) for spin_ns, then sets
// SLEEPING with a CAS and sleeps on the futex: the CAS and the exchange hit
// the same word, so one of them sees the other and no wake-up is lost.
// Completion is the mirror image on `pending` (workers still running, plus a
// SLEEPING bit the caller sets before it sleeps): workers decrement it
// (release), the one that brings it to zero wakes the caller if the bit is
// set. A worker reads its copy of the job only after its own `go` changed,
// and the caller rewrites it only after `pending` reached zero, so the job
// itself needs no atomics. Workers not needed by a job are not
// touched at all, and every post is consumed before the next one, so `go`
// cannot wrap into a value its worker last saw.
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "bpc.h"

#define LINE 128                   // two cache lines: adjacent-line prefetch
#define SLEEPING 1u                // `go`: the worker sleeps on the futex
#define PENDING_SLEEPING 0x80000000u  // `pending`: the caller sleeps on it
#define DEFAULT_SPIN_NS 100000

// The job, copied into each worker's slot next to `go`: a worker gets both
// with one cache miss.
typedef struct {
  bpcrt_task fn;
  void *ctx;
  int64_t n;
  int nchunks;
  bool stop;
} Job;

typedef struct {
  alignas(LINE) _Atomic uint32_t go;  // posts << 1 | SLEEPING
  uint32_t posts;                     // caller-only: posts so far
  Job job;                            // written by the caller before a post
  int id;                             // 1..nthreads-1
  pthread_t tid;
  bpcrt_pool *pool;
} Worker;

struct bpcrt_pool {
  _Atomic int64_t spin_ns;  // relaxed: a tuning knob, not a handshake
  int nthreads;             // 1 + workers actually started
  Worker *workers;          // [nthreads - 1]
  alignas(LINE) _Atomic uint32_t pending;  // workers still running | PENDING_SLEEPING
  alignas(LINE) _Atomic int busy;          // a caller is inside parallel_for
};

// The thread this code runs as inside a task, -1 outside any task. Workers
// are always "inside" (any call they make comes from a task).
static _Thread_local int tls_thread = -1;

static void *xalloc(size_t align, size_t n) {
  n = (n + align - 1) / align * align;
  void *p = aligned_alloc(align, n ? n : align);
  if (!p) {
    fprintf(stderr, "bpcrt: out of memory (%zu bytes)\n", n);
    abort();
  }
  return memset(p, 0, n);
}

// ---- waiting -------------------------------------------------------------

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void futex_wait(_Atomic uint32_t *w, uint32_t val) {
  // EAGAIN (value already changed) and EINTR just send us back to the check.
  syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *w) { syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0); }

// A spin budget: spin_more pauses once and says whether to keep spinning.
// The clock is read every 64 pauses, cheap next to the pauses themselves.
typedef struct {
  int64_t budget, deadline;
  unsigned i;
} Spin;

static bool spin_more(Spin *s) {
  if (s->budget <= 0) return false;
  cpu_relax();
  if ((++s->i & 63) == 0) {
    int64_t t = now_ns();
    if (!s->deadline)
      s->deadline = t + s->budget;
    else if (t >= s->deadline)
      return false;
  }
  return true;
}

// Worker side: waits until `go` moves past `seen` (the worker's last post)
// and returns the new post count.
static uint32_t wait_post(Worker *w, uint32_t seen) {
  uint32_t idle = seen << 1;
  Spin spin = {atomic_load_explicit(&w->pool->spin_ns, memory_order_relaxed), 0, 0};
  uint32_t v;
  while ((v = atomic_load_explicit(&w->go, memory_order_acquire)) == idle)
    if (!spin_more(&spin)) break;
  if (v != idle) return v >> 1;
  v = idle;
  if (!atomic_compare_exchange_strong_explicit(&w->go, &v, idle | SLEEPING, memory_order_acquire, memory_order_acquire))
    return v >> 1;  // posted between the spin and the CAS
  while ((v = atomic_load_explicit(&w->go, memory_order_acquire)) == (idle | SLEEPING))
    futex_wait(&w->go, idle | SLEEPING);
  return v >> 1;
}

// Caller side: posts a job to worker w.
static void post(Worker *w, const Job *job) {
  w->job = *job;
  w->posts++;
  uint32_t old = atomic_exchange_explicit(&w->go, w->posts << 1, memory_order_acq_rel);
  if (old & SLEEPING) futex_wake(&w->go);
}

// Caller side: sleeps until `pending` has no running worker left. The
// SLEEPING bit asks the last worker out for a futex wake.
static void sleep_until_done(_Atomic uint32_t *pd) {
  for (;;) {
    uint32_t v = atomic_load_explicit(pd, memory_order_acquire);
    if ((v & ~PENDING_SLEEPING) == 0) return;
    if (!(v & PENDING_SLEEPING) && !atomic_compare_exchange_strong_explicit(pd, &v, v | PENDING_SLEEPING,
                                                                            memory_order_acquire, memory_order_acquire))
      continue;
    futex_wait(pd, v | PENDING_SLEEPING);
  }
}

// Caller side: waits until every posted worker has finished.
static void wait_done(bpcrt_pool *p) {
  Spin spin = {atomic_load_explicit(&p->spin_ns, memory_order_relaxed), 0, 0};
  while (atomic_load_explicit(&p->pending, memory_order_acquire) != 0)
    if (!spin_more(&spin)) {
      sleep_until_done(&p->pending);
      return;
    }
}

// ---- the partition -------------------------------------------------------

int bpcrt_chunks(int64_t n, int64_t grain, int nthreads) {
  if (n <= 0) return 0;
  if (grain < 1) grain = 1;
  int64_t c = n / grain;
  if (c > nthreads) c = nthreads;
  return c < 1 ? 1 : (int)c;
}

void bpcrt_chunk(int64_t n, int nchunks, int k, int64_t *begin, int64_t *end) {
  int64_t base = n / nchunks, rem = n % nchunks;
  *begin = k * base + (k < rem ? k : rem);
  *end = *begin + base + (k < rem);
}

static void run_chunk(const Job *job, int k) {
  int64_t b, e;
  bpcrt_chunk(job->n, job->nchunks, k, &b, &e);
  job->fn(job->ctx, b, e, k);
}

// ---- workers -------------------------------------------------------------

static void *worker_main(void *arg) {
  Worker *w = arg;
  bpcrt_pool *p = w->pool;
  tls_thread = w->id;
  uint32_t seen = 0;
  for (;;) {
    seen = wait_post(w, seen);
    if (w->job.stop) return NULL;
    run_chunk(&w->job, w->id);
    // The last worker out wakes the caller if it went to sleep. `p` outlives
    // this wake: bpcrt_pool_free joins us first.
    uint32_t old = atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel);
    if (old == (PENDING_SLEEPING | 1)) futex_wake(&p->pending);
  }
}

static int usable_cpus(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

bpcrt_pool *bpcrt_pool_new(int nthreads) {
  int cpus = usable_cpus();
  if (nthreads <= 0) nthreads = cpus;
  if (nthreads > BPCRT_MAX_THREADS) nthreads = BPCRT_MAX_THREADS;
  bpcrt_pool *p = xalloc(alignof(bpcrt_pool), sizeof *p);
  p->workers = xalloc(alignof(Worker), (size_t)nthreads * sizeof(Worker));
  // Oversubscribed, a spinning worker would steal the CPU of a busy one.
  atomic_init(&p->spin_ns, nthreads > cpus ? 0 : DEFAULT_SPIN_NS);
  // Workers take no signals: SIGINT and friends go to the application's threads.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  p->nthreads = 1;
  for (int i = 1; i < nthreads; i++) {
    Worker *w = &p->workers[i - 1];
    w->id = i;
    w->pool = p;
    atomic_init(&w->go, 0);
    if (pthread_create(&w->tid, NULL, worker_main, w) != 0)
      break;  // keep the threads we got; bpcrt_pool_threads reports them
    char name[16];  // the kernel keeps 15 bytes; i <= 1024 fits
    snprintf(name, sizeof name, "bpcrt-w%d", i % 100000);
    pthread_setname_np(w->tid, name);
    p->nthreads++;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return p;
}

void bpcrt_pool_free(bpcrt_pool *p) {
  if (!p) return;
  Job stop = {.stop = true};
  for (int i = 0; i < p->nthreads - 1; i++) post(&p->workers[i], &stop);
  for (int i = 0; i < p->nthreads - 1; i++) pthread_join(p->workers[i].tid, NULL);
  free(p->workers);
  free(p);
}

int bpcrt_pool_threads(const bpcrt_pool *p) { return p ? p->nthreads : 1; }

void bpcrt_pool_set_spin(bpcrt_pool *p, int64_t ns) {
  if (p) atomic_store_explicit(&p->spin_ns, ns < 0 ? 0 : ns, memory_order_relaxed);
}

bpcrt_profile_fn bpcrt_profile;

// ---- parallel_for --------------------------------------------------------

void bpcrt_parallel_for(bpcrt_pool *p, bpcrt_task fn, void *ctx, int64_t n, int64_t grain) {
  if (n <= 0) return;
  int self = tls_thread;
  int nchunks = (p && self < 0) ? bpcrt_chunks(n, grain, p->nthreads) : 1;
  if (nchunks == 1 || atomic_exchange_explicit(&p->busy, 1, memory_order_acquire)) {
    fn(ctx, 0, n, self < 0 ? 0 : self);
    return;
  }
  Job job = {fn, ctx, n, nchunks, false};
  // Relaxed: the exchanges in post() release it together with the job.
  atomic_store_explicit(&p->pending, (uint32_t)(nchunks - 1), memory_order_relaxed);
  for (int k = 1; k < nchunks; k++) post(&p->workers[k - 1], &job);
  tls_thread = 0;
  run_chunk(&job, 0);
  tls_thread = -1;
  wait_done(p);
  atomic_store_explicit(&p->busy, 0, memory_order_release);
}
