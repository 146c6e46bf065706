// trainer.c — bpcrt_main: the command line of every compiled trainer (SPEC
// 2.2) over the entry points and arenas of docs/ABI.md.
//
// Takes: the model description, the generated entry points, argv.
// Guarantees: a run is a pure function of (description, data, seed, steps):
// the batch of micro-step g is drawn from the counter RNG keyed by (seed, g)
// (finite sets: the epoch's permutation), so a run resumed from its step-S
// checkpoint ends with the same bits as one that never stopped. Bad input is
// an error naming the file and row before anything is written; a label out of
// range (found by the generated code) stops the run and removes its log.
// Leaves out: anything the generated code does (the math, clipping, decay).
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bpc_kernels.h"
#include "trainer.h"

#define ERRLEN 8192

typedef enum { CMD_TRAIN = 1, CMD_EVAL = 2, CMD_SAMPLE = 4, CMD_INFO = 8, CMD_PREDICT = 16, CMD_MERGE = 32 } Cmd;

typedef struct {
  Cmd cmd;
  const char *data, *init, *resume, *save, *log, *params, *prompt, *inputs, *out;
  int64_t steps, epochs, eval_every, ckpt_every, tokens, top_k, threads;
  double lr, temperature, max_time;
  uint64_t seed;
  bool has_max_time, has_steps, has_epochs, has_lr, has_seed, has_eval_every, has_ckpt_every, grad_stats, quiet, timing,
      profile;
  bool no_cache;  // sample: the whole window per token even when the model decodes by position
} Opts;

typedef struct {
  const Prog *p;
  char *mem;
  bpcrt_ctx ctx;
} Arena;

// The gradients in buckets summed over ranks as one message each, in the
// order the backward finishes them (TDesc.ready), staged in one buffer and
// summed into another.
typedef struct {
  int n;                      // buckets
  int *first;                 // bucket b: grads grad[first[b] .. first[b + 1])
  const TDesc **grad;
  int64_t *off, *count;       // its bytes in stage, its elements
  int *ready;                 // the kernel after which all its grads are final
  char *stage, *sum;           // the packed grads, their sum over ranks
  int next;                   // the next bucket to start
  bool overlap;               // started from the step's kernel hook
  int64_t bytes;              // of the stage (and of sum)
  int64_t payload;            // summed per update
  double wait;                // seconds the last update waited for the sums
} Buckets;

typedef struct {
  Desc d;
  Opts o;
  const bpcrt_entries *e;
  bpcrt_pool *pool;
  int threads;
  Arena ar[NPROG];
  char err[ERRLEN];
  // training
  uint64_t seed;
  int64_t S, B, K, start;
  Dataset train, test, val;   // val: a split of train (borrowed) or test
  const Dataset *eval_set;
  char *base;                 // LoRA: the file the frozen weights came from (--init), or NULL
  const char *eval_name;      // "test" or "val"
  int64_t *perm, perm_epoch, *batch;
  double t0;
  double opt_sec;             // the last optimizer call's wall time (--timing)
  FILE *log;
  bool log_csv, log_created;
  char *log_path;
  long log_size0;
  int nmcols;
  char **mcols;               // metric columns of the log
  // data-parallel (SPEC 6.7): rank r of N holds samples [r*B, (r+1)*B) of
  // the global batch GB = N*B of every micro-step
  int rank, nranks;
  int64_t GB;
  Buckets bk;
} T;

static void usage(FILE *f) {
  fputs(
      "usage: trainer [train] [--data PATH] [--steps N | --epochs N] [--max-time SEC] [--lr X] [--seed N] [--threads N]\n"
      "                       [--init P.safetensors] [--resume CKPT.safetensors] [--save OUT.safetensors]\n"
      "                       [--log metrics.csv|metrics.jsonl] [--eval-every N] [--checkpoint-every N]\n"
      "                       [--grad-stats] [--quiet] [--timing] [--profile]\n"
      "       trainer eval    --params P.safetensors [--data PATH] [--threads N] [--log F] [--quiet]\n"
      "       trainer sample  --params P.safetensors [--prompt TEXT] [--tokens N] [--temperature T]\n"
      "                       [--top-k K] [--seed N] [--threads N] [--no-cache] [--quiet]\n"
      "       trainer predict (--params P.safetensors | --init P.safetensors) --inputs I.safetensors\n"
      "                       -o OUT.safetensors [--threads N] [--quiet]\n"
      "       trainer merge   --params LORA.safetensors [--init BASE.safetensors] -o FULL.safetensors\n"
      "       trainer info\n",
      f);
}

static bool fail(char *err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, ERRLEN, fmt, ap);
  va_end(ap);
  return false;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// ---- the command line --------------------------------------------------------

enum { A_NONE, A_STR, A_INT, A_NUM };
typedef struct {
  const char *name;
  int arg;
  int cmds;
  size_t off;       // into Opts
  size_t has;       // the has_ flag, or (size_t)-1
} OptDef;

#define O(f) offsetof(Opts, f)
#define NOHAS ((size_t)-1)
static const OptDef opt_defs[] = {
    {"--data", A_STR, CMD_TRAIN | CMD_EVAL, O(data), NOHAS},
    {"--steps", A_INT, CMD_TRAIN, O(steps), O(has_steps)},
    {"--epochs", A_INT, CMD_TRAIN, O(epochs), O(has_epochs)},
    {"--lr", A_NUM, CMD_TRAIN, O(lr), O(has_lr)},
    {"--max-time", A_NUM, CMD_TRAIN, O(max_time), O(has_max_time)},
    {"--seed", A_INT, CMD_TRAIN | CMD_SAMPLE, O(seed), O(has_seed)},
    {"--threads", A_INT, CMD_TRAIN | CMD_EVAL | CMD_SAMPLE | CMD_PREDICT, O(threads), NOHAS},
    {"--init", A_STR, CMD_TRAIN | CMD_PREDICT | CMD_MERGE, O(init), NOHAS},
    {"--inputs", A_STR, CMD_PREDICT, O(inputs), NOHAS},
    {"-o", A_STR, CMD_PREDICT | CMD_MERGE, O(out), NOHAS},
    {"--resume", A_STR, CMD_TRAIN, O(resume), NOHAS},
    {"--save", A_STR, CMD_TRAIN, O(save), NOHAS},
    {"--log", A_STR, CMD_TRAIN | CMD_EVAL, O(log), NOHAS},
    {"--eval-every", A_INT, CMD_TRAIN, O(eval_every), O(has_eval_every)},
    {"--checkpoint-every", A_INT, CMD_TRAIN, O(ckpt_every), O(has_ckpt_every)},
    {"--grad-stats", A_NONE, CMD_TRAIN, O(grad_stats), NOHAS},
    {"--quiet", A_NONE, CMD_TRAIN | CMD_EVAL | CMD_SAMPLE | CMD_PREDICT | CMD_MERGE, O(quiet), NOHAS},
    {"--timing", A_NONE, CMD_TRAIN, O(timing), NOHAS},
    {"--profile", A_NONE, CMD_TRAIN, O(profile), NOHAS},
    {"--params", A_STR, CMD_EVAL | CMD_SAMPLE | CMD_PREDICT | CMD_MERGE, O(params), NOHAS},
    {"--prompt", A_STR, CMD_SAMPLE, O(prompt), NOHAS},
    {"--tokens", A_INT, CMD_SAMPLE, O(tokens), NOHAS},
    {"--temperature", A_NUM, CMD_SAMPLE, O(temperature), NOHAS},
    {"--top-k", A_INT, CMD_SAMPLE, O(top_k), NOHAS},
    {"--no-cache", A_NONE, CMD_SAMPLE, O(no_cache), NOHAS},
};

static bool parse_int(const char *s, int64_t *v) {
  char *e;
  errno = 0;
  long long x = strtoll(s, &e, 10);
  if (!*s || *e || errno || x < 0) return false;
  *v = x;
  return true;
}

// Parses argv into o; false (after printing why) on wrong usage.
static bool parse_args(Opts *o, int argc, char **argv, bool *help) {
  memset(o, 0, sizeof *o);
  o->cmd = CMD_TRAIN;
  o->tokens = 256;
  o->temperature = 1;
  int i = 1;
  if (argc > 1 && argv[1][0] != '-') {
    const char *c = argv[1];
    o->cmd = !strcmp(c, "train")     ? CMD_TRAIN
             : !strcmp(c, "eval")    ? CMD_EVAL
             : !strcmp(c, "sample")  ? CMD_SAMPLE
             : !strcmp(c, "info")    ? CMD_INFO
             : !strcmp(c, "predict") ? CMD_PREDICT
             : !strcmp(c, "merge")   ? CMD_MERGE
                                     : 0;
    if (!o->cmd) return fprintf(stderr, "error: unknown command '%s'\n", c), false;
    i = 2;
  }
  for (; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) return *help = true, false;
    const char *eq = strchr(a, '=');
    size_t nlen = eq && !strncmp(a, "--", 2) ? (size_t)(eq - a) : strlen(a);
    const OptDef *d = NULL;
    for (size_t k = 0; k < sizeof opt_defs / sizeof *opt_defs; k++)
      if (strlen(opt_defs[k].name) == nlen && !strncmp(opt_defs[k].name, a, nlen)) d = &opt_defs[k];
    if (!d) return fprintf(stderr, "error: unknown option '%s'\n", a), false;
    if (!(d->cmds & o->cmd))
      return fprintf(stderr, "error: %.*s does not apply to this command\n", (int)nlen, a), false;
    char *base = (char *)o;
    if (d->has != NOHAS) *(bool *)(base + d->has) = true;
    if (d->arg == A_NONE) {
      if (eq && nlen != strlen(a)) return fprintf(stderr, "error: %.*s takes no value\n", (int)nlen, a), false;
      *(bool *)(base + d->off) = true;
      continue;
    }
    const char *v = eq && nlen != strlen(a) ? eq + 1 : i + 1 < argc ? argv[++i] : NULL;
    if (!v) return fprintf(stderr, "error: %s needs a value\n", d->name), false;
    int64_t n;
    char *e;
    switch (d->arg) {
    case A_STR: *(const char **)(base + d->off) = v; break;
    case A_INT:
      if (!parse_int(v, &n))
        return fprintf(stderr, "error: %s takes a non-negative integer, not '%s'\n", d->name, v), false;
      if (d->off == O(seed))
        o->seed = (uint64_t)n;
      else
        *(int64_t *)(base + d->off) = n;
      break;
    case A_NUM: {
      double x = strtod(v, &e);
      if (!*v || *e || !isfinite(x) || x < 0)
        return fprintf(stderr, "error: %s takes a non-negative number, not '%s'\n", d->name, v), false;
      *(double *)(base + d->off) = x;
      break;
    }
    }
  }
  if (o->has_steps && o->has_epochs) return fprintf(stderr, "error: --steps and --epochs exclude each other\n"), false;
  if (o->has_max_time && !(o->max_time > 0 && o->max_time < 1e9))
    return fprintf(stderr, "error: --max-time takes a positive number of seconds\n"), false;
  if ((o->has_steps && o->steps < 1) || (o->has_epochs && o->epochs < 1))
    return fprintf(stderr, "error: --steps and --epochs take a positive count\n"), false;
  if ((o->cmd & (CMD_EVAL | CMD_SAMPLE)) && !o->params)
    return fprintf(stderr, "error: %s needs --params P.safetensors\n", o->cmd == CMD_EVAL ? "eval" : "sample"), false;
  if (o->resume && o->init) return fprintf(stderr, "error: --resume and --init exclude each other\n"), false;
  if (o->cmd == CMD_PREDICT && !o->params == !o->init)
    return fprintf(stderr,
                   "error: predict needs one of --params P.safetensors (bpc's names) or --init P.safetensors\n"),
           false;
  if (o->cmd == CMD_MERGE && (!o->params || !o->out))
    return fprintf(stderr, "error: merge needs --params LORA.safetensors and -o FULL.safetensors\n"), false;
  if (o->cmd == CMD_PREDICT && (!o->inputs || !o->out))
    return fprintf(stderr, "error: predict needs --inputs I.safetensors and -o OUT.safetensors\n"), false;
  return true;
}
#undef O

// ---- arenas and tensors ---------------------------------------------------------

static double get_el(const void *p, bpcrt_dtype dt, int64_t i) {
  return dt == BPCRT_F32 ? ((const float *)p)[i] : dt == BPCRT_F64 ? ((const double *)p)[i] : ((const int32_t *)p)[i];
}

static void set_el(void *p, bpcrt_dtype dt, int64_t i, double v) {
  if (dt == BPCRT_F32)
    ((float *)p)[i] = (float)v;
  else if (dt == BPCRT_F64)
    ((double *)p)[i] = v;
  else
    ((int32_t *)p)[i] = (int32_t)v;
}

static void *tp(const Arena *a, const TDesc *t) { return a->mem + t->offset; }

static double scalar_of(const Arena *a, const TDesc *t) { return get_el(tp(a, t), t->dtype, 0); }

#define HUGE_PAGE ((size_t)2 << 20)

// At least `bytes`, 64-aligned, zeroed; a large block goes on 2 MiB pages
// where the kernel allows it (THP in madvise mode): GEMM packing walks B^T and
// A^T a row per 4 KiB page, and GPT-2 small's step touches ~2 GB, far past
// what the TLB maps in 4 KiB. Exits naming `what` when memory runs out.
static char *huge_alloc(size_t bytes, const char *what) {
  size_t align = bytes >= HUGE_PAGE ? HUGE_PAGE : 64;
  bytes = (bytes + align - 1) / align * align + align;
  char *mem = aligned_alloc(align, bytes);
  if (!mem) {
    fprintf(stderr, "error: out of memory: the model needs a %zu-byte %s\n", bytes, what);
    exit(1);
  }
#ifdef MADV_HUGEPAGE
  if (align == HUGE_PAGE) madvise(mem, bytes, MADV_HUGEPAGE);  // advice only: failure changes nothing
#endif
  memset(mem, 0, bytes);
  return mem;
}

static void arena_open(T *t, int k) {
  Arena *a = &t->ar[k];
  a->p = &t->d.prog[k];
  a->mem = huge_alloc((size_t)(a->p->arena + a->p->scratch * t->threads), "arena");
  a->ctx = (bpcrt_ctx){a->mem, a->mem + a->p->arena, t->pool, t->seed, 0};
}

static const TDesc *find_role(const Prog *p, Role r) {
  for (int i = 0; i < p->n; i++)
    if (p->t[i].role == r) return &p->t[i];
  return NULL;
}

// Params from the seed (SPEC 1.8), optimizer slots and state from their values.
static void init_params(T *t, Arena *a) {
  enum { CHUNK = 65536 };  // element k is a function of k alone: fill in chunks
  double *v = malloc(CHUNK * sizeof *v);
  for (int i = 0; i < a->p->n; i++) {
    const TDesc *d = &a->p->t[i];
    if (d->role != ROLE_PARAM && d->role != ROLE_OPT && d->role != ROLE_STATE) continue;
    for (int64_t k0 = 0; k0 < d->numel; k0 += CHUNK) {
      int64_t n = d->numel - k0 < CHUNK ? d->numel - k0 : CHUNK;
      if (d->role == ROLE_PARAM)
        bpcrt_init_fill_at(d->init_kind, d->init_a, d->init_b, d->fan_in, d->fan_out, t->seed, bpcrt_fnv1a64(d->name),
                           k0, n, v);
      else
        for (int64_t k = 0; k < n; k++) v[k] = d->init_value;
      for (int64_t k = 0; k < n; k++) set_el(tp(a, d), d->dtype, k0 + k, v[k]);
    }
  }
  free(v);
}

// Copies params and state by name from arena `from` into arena `to`.
static bool copy_state(const Arena *from, Arena *to, char *err) {
  for (int i = 0; i < to->p->n; i++) {
    const TDesc *d = &to->p->t[i];
    if (d->role != ROLE_PARAM && d->role != ROLE_STATE) continue;
    const TDesc *s = prog_find(from->p, d->name);
    if (!s || s->numel != d->numel || s->dtype != d->dtype)
      return fail(err, "model description: '%s' differs between programs", d->name);
    memcpy(tp(to, d), tp(from, s), (size_t)d->numel * bpcrt_dtype_size(d->dtype));
  }
  return true;
}

static bool has_role(unsigned mask, Role r) { return mask & (1u << r); }
#define BIT(r) (1u << (r))

static void shape_str(char *buf, size_t len, int rank, const int64_t *shape) {
  size_t k = (size_t)snprintf(buf, len, "[");
  for (int i = 0; i < rank && k < len; i++)
    k += (size_t)snprintf(buf + k, len - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
  if (k < len) snprintf(buf + k, len - k, "]");
}

// Loads file tensors into arena a: every tensor of a role in `need` must be
// there; `opt` roles are loaded when present; names starting "opt." are
// skipped when `skip_opt`. Any other name is unknown. Every mismatch is
// listed; nothing is copied unless all match.
static bool load_tensors(Arena *a, const bpcrt_tensors *f, const char *path, unsigned need, unsigned opt, bool skip_opt,
                         bool frozen_opt, char *err) {
  size_t len = (size_t)snprintf(err, ERRLEN, "%s: does not match the model:", path), len0 = len;
#define ADD(...) (len < ERRLEN ? (void)(len += (size_t)snprintf(err + len, ERRLEN - len, __VA_ARGS__)) : (void)0)
  for (int i = 0; i < a->p->n; i++) {
    const TDesc *d = &a->p->t[i];
    if (!has_role(need | opt, d->role)) continue;
    const bpcrt_tensor *ft = bpcrt_st_find(f, d->name);
    char s1[200], s2[200];
    if (!ft) {
      if (has_role(need, d->role) && !(frozen_opt && d->role == ROLE_PARAM && !d->trainable))
        ADD("\n  missing %s '%s'", role_name(d->role), d->name);
      continue;
    }
    bool same = ft->rank == d->rank;
    for (int k = 0; same && k < d->rank; k++) same = ft->shape[k] == d->shape[k];
    shape_str(s1, sizeof s1, ft->rank, ft->shape);
    shape_str(s2, sizeof s2, d->rank, d->shape);
    if (!same) ADD("\n  '%s': shape %s in the file, %s in the model", d->name, s1, s2);
    if (!bpcrt_dtype_loads(ft->dtype, d->dtype))
      ADD("\n  '%s': %s in the file, the model has %s", d->name, bpcrt_dtype_name(ft->dtype),
          bpcrt_dtype_name(d->dtype));
  }
  for (int i = 0; i < f->n; i++) {
    const TDesc *d = prog_find(a->p, f->t[i].name);
    if (skip_opt && !strncmp(f->t[i].name, "opt.", 4)) continue;
    if (!d || !has_role(need | opt, d->role)) ADD("\n  unknown tensor '%s'", f->t[i].name);
  }
#undef ADD
  if (len != len0) return false;
  for (int i = 0; i < a->p->n; i++) {
    const TDesc *d = &a->p->t[i];
    const bpcrt_tensor *ft = has_role(need | opt, d->role) ? bpcrt_st_find(f, d->name) : NULL;
    if (!ft) continue;
    if (d->dtype == BPCRT_I32) {
      memcpy(tp(a, d), ft->data, ft->nbytes);
    } else if (d->dtype == BPCRT_F64) {
      bpcrt_st_to_f64(ft, tp(a, d));
    } else {
      bpcrt_st_to_f32(ft, tp(a, d));
    }
  }
  return true;
}

// ---- checkpoints -----------------------------------------------------------------

// A model with LoRA adapters checkpoints what trains (adapters, the other
// trainable params, optimizer slots, state) and names the file its frozen
// weights came from in the metadata ("base"); without --init they are the
// seeded init, which the seed in the metadata reproduces.
// Under MPI rank 0 writes (BPC_DP_SAVE_ALL=1: every rank r > 0 also writes
// PATH.rank<r>, for the tests that compare the ranks' params).
static bool save_ckpt(T *t, const char *path, int64_t step, char *err) {
  char rpath[4096];
  if (t->rank > 0) {
    const char *all = getenv("BPC_DP_SAVE_ALL");
    if (!all || strcmp(all, "1")) return true;
    snprintf(rpath, sizeof rpath, "%s.rank%d", path, t->rank);
    path = rpath;
  }
  const Arena *a = &t->ar[PROG_TRAIN];
  bpcrt_tensors f = {0};
  for (int i = 0; i < a->p->n; i++) {
    const TDesc *d = &a->p->t[i];
    if (d->role == ROLE_PARAM && t->d.has_lora && !d->trainable) continue;
    if (d->role == ROLE_PARAM || d->role == ROLE_OPT || d->role == ROLE_STATE)
      bpcrt_st_add_ref(&f, d->name, d->dtype, d->rank, d->shape, tp(a, d));
  }
  if (t->base) bpcrt_st_set_meta(&f, "base", t->base);
  char b[32];
  snprintf(b, sizeof b, "%lld", (long long)step);
  bpcrt_st_set_meta(&f, "step", b);
  snprintf(b, sizeof b, "%llu", (unsigned long long)t->seed);
  bpcrt_st_set_meta(&f, "seed", b);
  bpcrt_st_set_meta(&f, "format", "1");
  bpcrt_st_set_meta(&f, "model_hash", t->d.hash);
  int rc = bpcrt_st_write(path, &f, err, ERRLEN);
  bpcrt_st_free(&f);
  return rc == 0;
}

static bool meta_u64(const bpcrt_tensors *f, const char *k, uint64_t *v) {
  const char *s = bpcrt_st_meta(f, k);
  char *e;
  if (!s || !*s || *s == '-') return false;
  errno = 0;
  *v = strtoull(s, &e, 10);
  return !*e && !errno;
}

static bool load_init(Arena *a, const char *path, bool quiet, char *err);

// A LoRA model's checkpoint f: its frozen weights from the base it names
// (before the checkpoint's own tensors are loaded over them).
static bool load_base(T *t, Arena *a, const bpcrt_tensors *f, const char *path, char *err) {
  const char *base = t->d.has_lora ? bpcrt_st_meta(f, "base") : NULL;
  if (!base) return true;
  free(t->base);
  t->base = strdup(base);
  if (load_init(a, base, true, err)) return true;
  char *why = strdup(err);
  fail(err, "%s: its frozen weights come from %s: %s", path, base, why);
  free(why);
  return false;
}

// --resume: everything of the train arena plus the step; lists every problem.
static bool load_resume(T *t, const char *path, char *err) {
  bpcrt_tensors f;
  if (bpcrt_st_read(path, &f, err, ERRLEN) != 0) return false;
  Arena *a = &t->ar[PROG_TRAIN];
  if (!load_base(t, a, &f, path, err)) return bpcrt_st_free(&f), false;
  bool ok = load_tensors(a, &f, path, BIT(ROLE_PARAM) | BIT(ROLE_OPT) | BIT(ROLE_STATE), 0, false, t->d.has_lora, err);
  size_t len = ok ? (size_t)snprintf(err, ERRLEN, "%s: cannot resume:", path) : strlen(err), len0 = len;
#define ADD(...) (len < ERRLEN ? (void)(len += (size_t)snprintf(err + len, ERRLEN - len, __VA_ARGS__)) : (void)0)
  const char *h = bpcrt_st_meta(&f, "model_hash"), *fmt = bpcrt_st_meta(&f, "format");
  uint64_t step = 0, seed = 0;
  if (!h || strcmp(h, t->d.hash)) ADD("\n  model_hash %s in the file, this model is %s", h ? h : "(none)", t->d.hash);
  if (!fmt || strcmp(fmt, "1")) ADD("\n  format '%s' in the file, expected '1'", fmt ? fmt : "(none)");
  if (!meta_u64(&f, "step", &step)) ADD("\n  no valid 'step' in the metadata");
  if (!meta_u64(&f, "seed", &seed))
    ADD("\n  no valid 'seed' in the metadata");
  else if (t->o.has_seed && seed != t->o.seed)
    ADD("\n  seed %llu in the file, --seed %llu", (unsigned long long)seed, (unsigned long long)t->o.seed);
#undef ADD
  bpcrt_st_free(&f);
  if (!ok || len != len0) return false;
  t->start = (int64_t)step;
  t->seed = seed;
  for (int k = 0; k < NPROG; k++) t->ar[k].ctx.seed = seed;
  return true;
}

// --params: params (and state, when `need_state`) by name; opt.* ignored.
static bool load_params(T *t, Arena *a, const char *path, bool need_state, char *err) {
  bpcrt_tensors f;
  if (bpcrt_st_read(path, &f, err, ERRLEN) != 0) return false;
  unsigned need = BIT(ROLE_PARAM) | (need_state ? BIT(ROLE_STATE) : 0);
  bool ok =
      load_base(t, a, &f, path, err) && load_tensors(a, &f, path, need, BIT(ROLE_STATE), true, t->d.has_lora, err);
  bpcrt_st_free(&f);
  return ok;
}

// --init (SPEC 6.3): a param with `from` is read by that name (required), the
// others by their own name when the file has it, else they keep their init;
// batch-norm state likewise by its own name. `transpose` params are stored
// with the last two axes swapped. Tensors no param names are ignored (a
// BERT's pooler, position_ids). Every mismatch is listed at once; a file that
// supplies no param at all is an error too (another model's checkpoint).
// Nothing is copied unless everything matches.
static bool load_init(Arena *a, const char *path, bool quiet, char *err) {
  bpcrt_tensors f;
  if (bpcrt_st_read(path, &f, err, ERRLEN) != 0) return false;
  size_t len = (size_t)snprintf(err, ERRLEN, "%s: does not match the model:", path), len0 = len;
#define ADD(...) (len < ERRLEN ? (void)(len += (size_t)snprintf(err + len, ERRLEN - len, __VA_ARGS__)) : (void)0)
  const Prog *p = a->p;
  const bpcrt_tensor **src = calloc((size_t)p->n + 1, sizeof *src);
  int nread = 0, nparams = 0;
  for (int i = 0; i < p->n; i++) {
    const TDesc *d = &p->t[i];
    if (d->role != ROLE_PARAM && d->role != ROLE_STATE) continue;
    nparams += d->role == ROLE_PARAM;
    const char *name = d->role == ROLE_PARAM && d->from ? d->from : d->name;
    const bpcrt_tensor *ft = bpcrt_st_find(&f, name);
    if (!ft) {
      if (d->role == ROLE_PARAM && d->from) ADD("\n  missing tensor '%s' (param '%s')", name, d->name);
      continue;
    }
    int64_t want[BPCRT_MAX_RANK];
    memcpy(want, d->shape, sizeof want);
    bool tr = d->role == ROLE_PARAM && d->transpose;
    if (tr) {
      want[d->rank - 2] = d->shape[d->rank - 1];
      want[d->rank - 1] = d->shape[d->rank - 2];
    }
    bool same = ft->rank == d->rank;
    for (int k = 0; same && k < d->rank; k++) same = ft->shape[k] == want[k];
    char s1[200], s2[200], of[300] = "";
    if (strcmp(name, d->name)) snprintf(of, sizeof of, " (param '%s'%s)", d->name, tr ? ", transposed" : "");
    shape_str(s1, sizeof s1, ft->rank, ft->shape);
    shape_str(s2, sizeof s2, d->rank, want);
    if (!same)
      ADD("\n  '%s'%s: shape %s in the file, the model needs %s", name, of, s1, s2);
    else if (!bpcrt_dtype_loads(ft->dtype, d->dtype))
      ADD("\n  '%s'%s: %s in the file, the model needs %s", name, of, bpcrt_dtype_name(ft->dtype),
          BPCRT_LOADS_WHAT(d->dtype));
    else
      src[i] = ft, nread += d->role == ROLE_PARAM;
  }
  if (len == len0 && nread == 0 && nparams > 0) {
    ADD("\n  none of the model's %d params is in the file (by its name or its 'from')", nparams);
    for (int i = 0, shown = 0; i < p->n && shown < 3; i++)
      if (p->t[i].role == ROLE_PARAM) ADD("\n  e.g. '%s'", p->t[i].from ? p->t[i].from : p->t[i].name), shown++;
  }
#undef ADD
  bool ok = len == len0;
  for (int i = 0; ok && i < p->n; i++) {
    const TDesc *d = &p->t[i];
    const bpcrt_tensor *ft = src[i];
    if (!ft) continue;
    if (d->dtype == BPCRT_I32) {
      memcpy(tp(a, d), ft->data, ft->nbytes);
      continue;
    }
    double *v = malloc(sizeof(double) * (size_t)(d->numel ? d->numel : 1));
    bpcrt_st_to_f64(ft, v);
    int64_t R = 1, Cc = 1, inner = 1;
    if (d->role == ROLE_PARAM && d->transpose) R = ft->shape[d->rank - 2], Cc = ft->shape[d->rank - 1], inner = R * Cc;
    for (int64_t e = 0; e < d->numel; e++) {
      int64_t src_e = e;
      if (inner > 1) {  // element (r, c) of the file is (c, r) of the param
        int64_t m = e / inner, o = e % inner, c = o / R, r = o % R;
        src_e = m * inner + r * Cc + c;
      }
      if (d->dtype == BPCRT_F64)
        ((double *)tp(a, d))[e] = v[src_e];
      else
        ((float *)tp(a, d))[e] = (float)v[src_e];
    }
    free(v);
  }
  if (ok && !quiet && nread < nparams) {
    printf("init: %d of %d params from %s; the others keep their init:", nread, nparams, path);
    for (int i = 0, shown = 0; i < p->n; i++)
      if (p->t[i].role == ROLE_PARAM && !src[i] && shown++ < 6) printf(" %s", p->t[i].name);
    printf("%s\n", nparams - nread > 6 ? " ..." : "");
  }
  free(src);
  bpcrt_st_free(&f);
  return ok;
}

static char *ckpt_step_path(const char *out, int64_t step) {
  size_t n = strlen(out), sfx = strlen(".safetensors");
  if (n >= sfx && !strcmp(out + n - sfx, ".safetensors")) n -= sfx;
  char *p = malloc(n + 64);
  snprintf(p, n + 64, "%.*s.step%lld.safetensors", (int)n, out, (long long)step);
  return p;
}

// ---- the schedule (SPEC 5) -----------------------------------------------------

static double lr_at(const TrainCfg *c, double lr, int64_t s, int64_t S) {
  int64_t W = c->warmup;
  if (s < W) return lr * (double)(s + 1) / (double)W;
  double span = (double)(S - W > 0 ? S - W : 1), x = (double)(s - W) / span;
  switch (c->sched) {
  case SCHED_CONSTANT: return lr;
  case SCHED_COSINE: return c->min_lr + (lr - c->min_lr) * (1 + cos(M_PI * x)) / 2;
  case SCHED_LINEAR: return lr + (c->min_lr - lr) * x;
  case SCHED_STEP: return c->step_size > 0 ? lr * pow(c->gamma, floor((double)s / (double)c->step_size)) : lr;
  }
  return lr;
}

// Writes the scalars of update s that the program has.
static bool write_scalars(T *t, int64_t s, double lr_s, char *err) {
  const Arena *a = &t->ar[PROG_TRAIN];
  const TrainCfg *c = &t->d.train;
  for (int i = 0; i < a->p->n; i++) {
    const TDesc *d = &a->p->t[i];
    if (d->role != ROLE_SCALAR) continue;
    double v;
    if (!strcmp(d->name, "__lr"))
      v = lr_s;
    else if (!strcmp(d->name, "__lr_bc1"))
      v = lr_s / (1 - pow(c->beta1, (double)(s + 1)));
    else if (!strcmp(d->name, "__sqrt_bc2"))
      v = sqrt(1 - pow(c->beta2, (double)(s + 1)));
    else if (!strcmp(d->name, "__clr"))
      v = lr_s / (1 + (double)s * c->lr_decay);
    else if (!strcmp(d->name, "__first"))
      v = s == 0;
    else
      return fail(err, "model description: unknown scalar '%s'", d->name);
    set_el(tp(a, d), d->dtype, 0, v);
  }
  return true;
}

// ---- running the generated code -----------------------------------------------------

// Runs one entry point, then reads the status words (docs/ABI.md). On a bad
// id or label, finds the sample that holds it among the batch's i32 inputs.
static bool run(Arena *a, void (*fn)(bpcrt_ctx *), const Dataset *ds, const int64_t *idx, int64_t nb, char *err) {
  int64_t *st = (int64_t *)(a->mem + a->p->status);
  st[0] = st[1] = st[2] = 0;
  fn(&a->ctx);
  if (!st[0]) return true;
  const char *what = status_what(st[0]);
  char where[600] = "";
  for (int i = 0; i < a->p->n && !where[0] && ds; i++) {
    const TDesc *d = &a->p->t[i];
    if (d->role != ROLE_INPUT || d->dtype != BPCRT_I32 || d->rank < 1) continue;
    int64_t per = d->numel / d->shape[0];
    for (int64_t b = 0; b < nb && !where[0]; b++)
      for (int64_t k = 0; k < per && !where[0]; k++)
        if (((int32_t *)tp(a, d))[b * per + k] == st[1]) {
          int64_t pos = ds->format == FMT_TEXT ? idx[b] + k + (!strcmp(d->name, ds->tgt_name) ? 1 : 0) : idx[b];
          data_where(ds, pos, where, sizeof where);
          snprintf(where + strlen(where), sizeof where - strlen(where), " (input '%s')", d->name);
        }
  }
  if (!where[0]) snprintf(where, sizeof where, "%s", ds ? ds->path : "the input");
  return fail(err, "%s: %s %lld out of range [0, %lld)", where, what, (long long)st[1], (long long)st[2]);
}

// Every column of ds matches an input of p in dtype and per-sample size.
static bool data_fits(const Dataset *ds, const Prog *p) {
  for (int i = 0; i < ds->ncols; i++) {
    const TDesc *d = prog_find(p, ds->cols[i].name);
    if (!d || d->role != ROLE_INPUT || d->dtype != ds->cols[i].dtype || d->rank < 1 ||
        d->numel / (d->shape[0] ? d->shape[0] : 1) != ds->cols[i].per)
      return false;
  }
  return true;
}

static int64_t batch_of(const Prog *p) {
  for (int i = 0; i < p->n; i++)
    if (p->t[i].role == ROLE_INPUT && p->t[i].rank >= 1) return p->t[i].shape[0];
  return 1;
}

static int64_t text_T(const T *t, const Prog *p) {
  const TDesc *d = prog_find(p, t->train.tok_name ? t->train.tok_name : t->d.data_train.tokens);
  return d && d->rank == 2 ? d->shape[1] : 1;
}

// Fills the inputs of micro-step g (a pure function of seed and g): sample
// b of this rank is sample r*B + b of the global batch GB = N*B, whose
// sample i is text window (seed, g*GB + i) of the counter RNG, or item
// g*GB + i of the permutations of the epochs in turn: what one process
// with batch GB draws.
static void fill_batch(T *t, int64_t g) {
  Arena *a = &t->ar[PROG_TRAIN];
  const Dataset *ds = &t->train;
  int64_t first = g * t->GB + (int64_t)t->rank * t->B;
  if (ds->format == FMT_TEXT) {
    int64_t Tn = text_T(t, a->p), count = ds->nbytes - Tn;
    uint64_t stream = bpcrt_fnv1a64("text");
    for (int64_t b = 0; b < t->B; b++) {
      t->batch[b] = (int64_t)(bpcrt_rand64(t->seed, stream, (uint64_t)(first + b)) % (uint64_t)count);
      data_put_window(ds, a->p, a->mem, t->batch[b], b);
    }
    return;
  }
  int64_t bpe = ds->n / t->GB, epoch = g / bpe, j = g % bpe;
  if (epoch != t->perm_epoch) {
    data_perm(ds->n, t->seed, (uint64_t)epoch, t->d.data_train.shuffle, t->perm);
    t->perm_epoch = epoch;
  }
  for (int64_t b = 0; b < t->B; b++) {
    t->batch[b] = t->perm[j * t->GB + (int64_t)t->rank * t->B + b];
    data_put(ds, a->p, a->mem, t->batch[b], b);
  }
}

// ---- eval ------------------------------------------------------------------------

typedef struct {
  double loss;
  int n;
  const char *names[64];
  double v[64];
} Results;

static void results_add(Results *r, const Arena *a, double w) {
  r->n = 0;
  for (int i = 0; i < a->p->n && r->n < 64; i++) {
    const TDesc *d = &a->p->t[i];
    if (d->role == ROLE_LOSS && d == find_role(a->p, ROLE_LOSS))
      r->loss += w * scalar_of(a, d);
    else if (d->role == ROLE_METRIC) {
      r->names[r->n] = d->name;
      r->v[r->n++] += w * scalar_of(a, d);
    }
  }
}

// The exact mean of loss and metrics over the whole set (finite sets; a final
// partial batch is padded with its first sample, whose contribution is then
// measured alone and subtracted) or over 32 fixed batches of windows (text).
// Sets r's metric names (as results_add does) without adding anything.
static void results_names(Results *r, const Arena *a) {
  r->n = 0;
  for (int i = 0; i < a->p->n && r->n < 64; i++)
    if (a->p->t[i].role == ROLE_METRIC) r->names[r->n++] = a->p->t[i].name;
}

// Under MPI the sums of loss and metrics over ranks (each rank evaluated its share).
static void results_sum(T *t, Results *r) {
  double v[65];
  v[0] = r->loss;
  for (int k = 0; k < r->n; k++) v[1 + k] = r->v[k];
  dp_sum_f64(v, r->n + 1);
  r->loss = v[0];
  for (int k = 0; k < r->n; k++) r->v[k] = v[1 + k];
}

// Under MPI each rank evaluates a share (text: window r*B + b of each global
// batch of N*B, as one process with batch N*B; finite sets: the batches i
// with i mod N = r) and the sums are added over ranks.
static bool evaluate(T *t, const Dataset *ds, Results *r, char *err) {
  Arena *a = &t->ar[PROG_EVAL];
  int64_t B = batch_of(a->p), R = t->rank, NR = t->nranks;
  int64_t idx[B > 0 ? B : 1];
  memset(r, 0, sizeof *r);
  results_names(r, a);
  a->ctx.step = 0;
  if (ds->format == FMT_TEXT) {
    int64_t Tn = text_T(t, a->p), count = ds->nbytes - Tn, nb = 32;
    if (count <= 0)
      return fail(err, "%s: the validation split has %lld bytes; a window needs %lld", ds->path, (long long)ds->nbytes,
                  (long long)(Tn + 1));
    uint64_t stream = bpcrt_fnv1a64("eval");
    for (int64_t i = 0; i < nb; i++) {
      for (int64_t b = 0; b < B; b++) {
        idx[b] = (int64_t)(bpcrt_rand64(0, stream, (uint64_t)(i * B * NR + R * B + b)) % (uint64_t)count);
        data_put_window(ds, a->p, a->mem, idx[b], b);
      }
      if (!run(a, t->e->eval_forward, ds, idx, B, err)) return false;
      results_add(r, a, 1.0 / (double)(nb * NR));
    }
    if (NR > 1) results_sum(t, r);
    return true;
  }
  int64_t N = ds->n, full = N / B, rem = N % B;
  if (N == 0) return fail(err, "%s: the evaluation set is empty", ds->path);
  for (int64_t i = R; i < full; i += NR) {
    for (int64_t b = 0; b < B; b++) data_put(ds, a->p, a->mem, idx[b] = i * B + b, b);
    if (!run(a, t->e->eval_forward, ds, idx, B, err)) return false;
    results_add(r, a, (double)B);
  }
  if (rem && full % NR == R) {
    int64_t first = full * B;
    for (int64_t b = 0; b < B; b++) data_put(ds, a->p, a->mem, idx[b] = b < rem ? first + b : first, b);
    if (!run(a, t->e->eval_forward, ds, idx, B, err)) return false;
    results_add(r, a, (double)B);
    for (int64_t b = 0; b < B; b++) data_put(ds, a->p, a->mem, idx[b] = first, b);
    if (!run(a, t->e->eval_forward, ds, idx, B, err)) return false;
    results_add(r, a, -(double)(B - rem));
  }
  if (NR > 1) results_sum(t, r);
  r->loss /= (double)N;
  for (int k = 0; k < r->n; k++) r->v[k] /= (double)N;
  return true;
}

// ---- the log -------------------------------------------------------------------------

static void add_mcol(T *t, const char *name) {
  for (int i = 0; i < t->nmcols; i++)
    if (!strcmp(t->mcols[i], name)) return;
  t->mcols = realloc(t->mcols, (size_t)(t->nmcols + 1) * sizeof *t->mcols);
  t->mcols[t->nmcols++] = (char *)name;
}

static bool log_open(T *t, bool append, char *err) {
  const char *p = t->o.log;
  size_t n = strlen(p);
  t->log_csv = !(n >= 6 && !strcmp(p + n - 6, ".jsonl"));
  if (t->log_csv && !(n >= 4 && !strcmp(p + n - 4, ".csv")))
    return fail(err, "%s: --log takes a .csv or .jsonl file", p);
  struct stat sb;
  bool exists = stat(p, &sb) == 0;
  t->log = fopen(p, append ? "a" : "w");
  if (!t->log) return fail(err, "%s: cannot write: %s", p, strerror(errno));
  t->log_path = strdup(p);
  t->log_created = !exists || !append;
  t->log_size0 = exists && append ? (long)sb.st_size : 0;
  for (int k = 0; k < NPROG; k++)
    for (int i = 0; t->d.prog[k].present && i < t->d.prog[k].n; i++)
      if (t->d.prog[k].t[i].role == ROLE_METRIC) add_mcol(t, t->d.prog[k].t[i].name);
  if (t->log_csv && (!exists || !append || sb.st_size == 0)) {
    fputs("kind,step,loss,lr", t->log);
    for (int i = 0; i < t->nmcols; i++) fprintf(t->log, ",%s", t->mcols[i]);
    fputs(",seconds", t->log);
    const Prog *tp_ = &t->d.prog[PROG_TRAIN];
    for (int i = 0; t->o.grad_stats && i < tp_->n; i++)
      if (tp_->t[i].role == ROLE_GRAD) fprintf(t->log, ",norm.%s", tp_->t[i].name + 5);
    fputc('\n', t->log);
  }
  return true;
}

// Removes (or cuts back) the log after a failed run: no partial output.
static void log_abandon(T *t) {
  if (!t->log) return;
  fclose(t->log);
  t->log = NULL;
  if (t->log_created)
    unlink(t->log_path);
  else if (truncate(t->log_path, t->log_size0) != 0)
    fprintf(stderr, "warning: %s: cannot cut back: %s\n", t->log_path, strerror(errno));
}

// One row; lr < 0 for eval rows; norms (per grad tensor) may be NULL.
// A number in the log: non-finite values as CSV readers (pandas, numpy)
// spell them, and as null in JSON, which has no NaN or infinity.
static void put_num(FILE *f, double v, int digits, bool csv) {
  if (isfinite(v))
    fprintf(f, "%.*g", digits, v);
  else if (!csv)
    fputs("null", f);
  else
    fputs(isnan(v) ? "nan" : v > 0 ? "inf" : "-inf", f);
}

static void log_row(T *t, const char *kind, int64_t step, double loss, double lr, const Results *m,
                    const double *norms) {
  if (!t->log) return;
  FILE *f = t->log;
  double sec = now() - t->t0;
  const Prog *p = &t->d.prog[PROG_TRAIN];
  if (t->log_csv) {
    fprintf(f, "%s,%lld,", kind, (long long)step), put_num(f, loss, 17, true), fputc(',', f);
    if (lr >= 0) put_num(f, lr, 17, true);
    for (int i = 0; i < t->nmcols; i++) {
      fputc(',', f);
      for (int k = 0; k < m->n; k++)
        if (!strcmp(m->names[k], t->mcols[i])) put_num(f, m->v[k], 17, true);
    }
    fprintf(f, ",%.3f", sec);
    for (int i = 0, g = 0; t->o.grad_stats && i < p->n; i++)
      if (p->t[i].role == ROLE_GRAD) {
        fputc(',', f);
        if (norms) put_num(f, norms[g], 9, true);
        g++;
      }
    fputc('\n', f);
  } else {
    fprintf(f, "{\"kind\": \"%s\", \"step\": %lld, \"loss\": ", kind, (long long)step);
    put_num(f, loss, 17, false);
    if (lr >= 0) fputs(", \"lr\": ", f), put_num(f, lr, 17, false);
    for (int k = 0; k < m->n; k++) fprintf(f, ", \"%s\": ", m->names[k]), put_num(f, m->v[k], 17, false);
    fprintf(f, ", \"seconds\": %.3f", sec);
    if (norms) {
      fputs(", \"grad_norms\": {", f);
      for (int i = 0, g = 0; i < p->n; i++)
        if (p->t[i].role == ROLE_GRAD)
          fprintf(f, "%s\"%s\": ", g ? ", " : "", p->t[i].name + 5), put_num(f, norms[g], 9, false), g++;
      fputc('}', f);
    }
    fputs("}\n", f);
  }
  fflush(f);
}

// ---- progress ----------------------------------------------------------------------

static void print_results(FILE *f, const char *what, const Results *r) {
  fprintf(f, "%s loss %.6g", what, r->loss);
  for (int k = 0; k < r->n; k++) fprintf(f, "  %s %.4f", r->names[k], r->v[k]);
  fputc('\n', f);
}

static void fmt_time(char *b, size_t n, double s) {
  long x = (long)(s + 0.5);
  if (x >= 3600)
    snprintf(b, n, "%ld:%02ld:%02ld", x / 3600, x / 60 % 60, x % 60);
  else
    snprintf(b, n, "%ld:%02ld", x / 60, x % 60);
}

static void progress(T *t, int64_t done, double loss, double lr, const Results *m, double rate_t0, bool tty) {
  double el = now() - rate_t0, per = (double)(done - t->start) / (el > 1e-9 ? el : 1e-9);
  bool text = t->train.format == FMT_TEXT;
  double units = per * (double)(t->GB * t->K) * (text ? (double)text_T(t, &t->d.prog[PROG_TRAIN]) : 1);
  char eta[32];
  fmt_time(eta, sizeof eta, per > 0 ? (double)(t->S - done) / per : 0);
  fprintf(stderr, "%sstep %lld/%lld  loss %.6g  lr %.3g", tty ? "\r\033[K" : "", (long long)done, (long long)t->S, loss,
          lr);
  for (int k = 0; k < m->n; k++) fprintf(stderr, "  %s %.4f", m->names[k], m->v[k]);
  fprintf(stderr, "  %.0f %s/s  ETA %s%s", units, text ? "tokens" : "samples", eta, tty ? "" : "\n");
  fflush(stderr);
}

// ---- --timing -------------------------------------------------------------------------

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *x, int64_t k) {
  qsort(x, (size_t)k, sizeof *x, cmp_double);
  return k % 2 ? x[k / 2] : 0.5 * (x[k / 2 - 1] + x[k / 2]);
}

// One line on stdout: the wall time of each update (batch, forward, backward,
// optimizer) after the first fifth of the steps (at most 10) as warm-up,
// and the median of the optimizer's part alone.
static void print_timing(double *sec, double *opt, int64_t n) {
  int64_t w = n / 5 < 10 ? n / 5 : 10, k = n - w;
  if (k <= 0) return;
  double *x = sec + w, sum = 0;
  for (int64_t i = 0; i < k; i++) sum += x[i];
  double med = median(x, k);
  printf(
      "timing: steps %lld warmup %lld median_ms %.6f mean_ms %.6f min_ms %.6f p90_ms %.6f optimizer_median_ms %.6f\n",
      (long long)k, (long long)w, 1e3 * med, 1e3 * sum / (double)k, 1e3 * x[0],
      1e3 * x[(k * 9) / 10 < k ? (k * 9) / 10 : k - 1], 1e3 * median(opt + w, k));
}

// Under MPI: the bytes each update sums over ranks and the time it waited
// for them after the step (the part the backward did not hide), median
// after the same warm-up.
static void print_comm(const T *t, double *wait, int64_t n) {
  int64_t w = n / 5 < 10 ? n / 5 : 10, k = n - w;
  if (k <= 0) return;
  printf("comm: ranks %d buckets %d allreduce_bytes %lld overlap %d wait_median_ms %.6f\n", t->nranks, t->bk.n,
         (long long)t->bk.payload, t->bk.overlap, 1e3 * median(wait + w, k));
}

// ---- --profile ------------------------------------------------------------------------
// The wall time of each kernel of the training program (forward, backward and
// optimizer), through the generated code's hook (bpcrt_profile): the time
// from the previous report to the end of the kernel's steps, summed over the
// updates after warm-up. Single-threaded caller: plain statics.

static struct {
  double last, *sec;
  int nk;
} prof;

static void prof_hook(int program, int kernel) {
  if (program != PROG_TRAIN) return;
  double t = now();
  if (kernel >= 0 && kernel < prof.nk) prof.sec[kernel] += t - prof.last;
  prof.last = t;
}

static int cmp_kernel_time(const void *a, const void *b) {
  double x = prof.sec[*(const int *)a], y = prof.sec[*(const int *)b];
  return (x < y) - (x > y);
}

// The kernels by time, largest first, then the rest in one line.
static void print_profile(const Prog *p, int64_t updates, int64_t warmup, double wall) {
  if (updates <= 0 || p->nk != prof.nk) return;
  int *order = malloc(sizeof(int) * (size_t)(prof.nk + 1));
  double total = 0;
  for (int i = 0; i < prof.nk; i++) order[i] = i, total += prof.sec[i];
  qsort(order, (size_t)prof.nk, sizeof *order, cmp_kernel_time);
  double u = (double)updates;
  printf("profile: %lld updates after %lld warm-up; per update %.3f ms in %d kernels, %.3f ms wall\n",
         (long long)updates, (long long)warmup, 1e3 * total / u, prof.nk, 1e3 * wall / u);
  printf("  %-6s %10s %6s %8s %8s  %s\n", "kernel", "ms/update", "%", "GFLOP/s", "GB/s", "what (bpc check)");
  int shown = 0, hidden = 0;
  double rest = 0;
  for (int r = 0; r < prof.nk; r++) {
    int k = order[r];
    double sec = prof.sec[k] / u;
    if (p->k[k].group < 0)  // runs in its group's first kernel
      continue;
    if (shown == 30) {
      rest += sec, hidden++;
      continue;
    }
    shown++;
    char name[16];
    snprintf(name, sizeof name, "k%d", k);
    printf("  %-6s %10.4f %6.1f %8.1f %8.1f  %s\n", name, 1e3 * sec, total > 0 ? 100 * prof.sec[k] / total : 0,
           sec > 0 ? p->k[k].flops / sec * 1e-9 : 0, sec > 0 ? p->k[k].bytes / sec * 1e-9 : 0, p->k[k].text);
  }
  if (hidden) printf("  (%d more kernels: %.3f ms per update)\n", hidden, 1e3 * rest);
  // The same by kind (op, shape, fused ops): layers add up.
  int nkind = 0, *first = malloc(sizeof(int) * (size_t)(prof.nk + 1)),
      *count = calloc((size_t)prof.nk + 1, sizeof(int));
  double *ksec = calloc((size_t)prof.nk + 1, sizeof(double)), *kfl = calloc((size_t)prof.nk + 1, sizeof(double));
  for (int k = 0; k < prof.nk; k++) {
    if (p->k[k].group < 0) continue;
    int c = 0;
    while (c < nkind && strcmp(p->k[first[c]].kind, p->k[k].kind)) c++;
    if (c == nkind) first[nkind++] = k;
    count[c]++, ksec[c] += prof.sec[k] / u, kfl[c] += p->k[k].flops;
  }
  int *korder = malloc(sizeof(int) * (size_t)(nkind + 1));
  for (int c = 0; c < nkind; c++) korder[c] = c;
  for (int a = 1; a < nkind; a++)  // insertion sort by time, largest first
    for (int b = a; b > 0 && ksec[korder[b]] > ksec[korder[b - 1]]; b--) {
      int x = korder[b];
      korder[b] = korder[b - 1], korder[b - 1] = x;
    }
  printf("  by kind:\n  %-6s %10s %6s %8s  %s\n", "count", "ms/update", "%", "GFLOP/s", "what");
  for (int r = 0; r < nkind && r < 25; r++) {
    int c = korder[r];
    printf("  %-6d %10.4f %6.1f %8.1f  %s\n", count[c], 1e3 * ksec[c], total > 0 ? 100 * ksec[c] * u / total : 0,
           ksec[c] > 0 ? kfl[c] / ksec[c] * 1e-9 : 0, p->k[first[c]].kind);
  }
  free(first), free(count), free(ksec), free(kfl), free(korder);
  free(order);
}

// ---- --grad-stats --------------------------------------------------------------------

static void grad_norms(T *t, double *norms) {
  const Arena *a = &t->ar[PROG_TRAIN];
  for (int i = 0, g = 0; i < a->p->n; i++) {
    const TDesc *d = &a->p->t[i];
    if (d->role != ROLE_GRAD) continue;
    double s = 0;
    for (int64_t k = 0; k < d->numel; k++) {
      double v = get_el(tp(a, d), d->dtype, k);
      s += v * v;
    }
    norms[g++] = sqrt(s);
  }
}

static void print_grad_stats(T *t, int64_t step, const double *norms, bool tty) {
  const Prog *p = &t->d.prog[PROG_TRAIN];
  fprintf(stderr, "%sgrad norms at step %lld:", tty ? "\r\033[K" : "", (long long)step);
  for (int i = 0, g = 0; i < p->n; i++)
    if (p->t[i].role == ROLE_GRAD) {
      double v = norms[g++];
      fprintf(stderr, " %s %.3e%s", p->t[i].name + 5, v, v < 1e-7 ? " (vanishing)" : v > 1e3 ? " (exploding)" : "");
    }
  fputc('\n', stderr);
}

// ---- train ------------------------------------------------------------------------------

static volatile sig_atomic_t got_sigint;
static void on_sigint(int sig) { got_sigint = sig; }

static int64_t count_role(const Prog *p, Role r) {
  int64_t n = 0;
  for (int i = 0; i < p->n; i++) n += p->t[i].role == r;
  return n;
}

// Loads the data sets and fixes S (total updates).
static bool setup_data(T *t, char *err) {
  const Desc *d = &t->d;
  if (d->data_train.format == FMT_NONE) return fail(err, "the model has no data section: nothing to train on");
  if (!data_load(&t->train, &d->data_train, &d->prog[PROG_TRAIN], t->o.data, err, ERRLEN)) return false;
  const Prog *ep = d->prog[PROG_EVAL].present ? &d->prog[PROG_EVAL] : &d->prog[PROG_TRAIN];
  if (d->data_test.format != FMT_NONE) {
    if (!data_load(&t->test, &d->data_test, ep, NULL, err, ERRLEN)) return false;
    t->eval_set = &t->test, t->eval_name = "test";
  }
  if (d->data_train.val_fraction > 0) {
    data_split(&t->train, d->data_train.val_fraction, &t->val);
    if (!t->eval_set && (t->val.n > 0 || t->val.nbytes > text_T(t, ep)))
      t->eval_set = &t->val, t->eval_name = "val";
    else if (!t->eval_set)  // asked for, but too small to hold one sample or window
      fprintf(stderr, "warning: %s: val_fraction %g leaves %lld %s for validation%s; training without it\n",
              t->train.path, d->data_train.val_fraction,
              (long long)(t->train.format == FMT_TEXT ? t->val.nbytes : t->val.n),
              t->train.format == FMT_TEXT ? "bytes" : "samples",
              t->train.format == FMT_TEXT ? ", fewer than one window of T + 1" : "");
  }
  if (!d->prog[PROG_EVAL].present || !t->e->eval_forward) t->eval_set = NULL;
  if (t->eval_set && !data_fits(t->eval_set, &d->prog[PROG_EVAL]))
    return fail(err, "model description: the eval program's inputs differ from the train program's");
  t->B = batch_of(&d->prog[PROG_TRAIN]);
  t->GB = t->B * t->nranks;
  t->K = d->train.grad_accum;
  bool text = t->train.format == FMT_TEXT;
  if (text && t->train.nbytes < text_T(t, &d->prog[PROG_TRAIN]) + 1)
    return fail(err, "%s: the training split has %lld bytes; a window needs %lld", t->train.path,
                (long long)t->train.nbytes, (long long)text_T(t, &d->prog[PROG_TRAIN]) + 1);
  // Micro-batches run on across epoch boundaries (the permutation of the
  // next epoch follows), so N epochs are N * floor(samples / B) micro-batches,
  // and floor of that over grad_accum updates.
  int64_t batches = text ? 0 : t->train.n / t->GB;
  if (!text && batches == 0)
    return fail(err, "%s: %lld training samples, fewer than one batch of %lld%s", t->train.path, (long long)t->train.n,
                (long long)t->GB, t->nranks > 1 ? " (the ranks' batches together)" : "");
  int64_t epochs = t->o.has_epochs ? t->o.epochs : 0;
  if (t->o.has_steps)
    t->S = t->o.steps;
  else if (!epochs && d->train.steps > 0)
    t->S = d->train.steps;
  else {
    if (!epochs) epochs = d->train.epochs > 0 ? d->train.epochs : 1;
    if (text && (t->o.has_epochs || d->train.epochs > 0))
      return fail(err, "%s: epochs need a finite data set (csv, safetensors, idx); text data takes --steps",
                  t->train.path);
    t->S = text ? 1000 : epochs * batches / t->K;
    if (t->S == 0)
      return fail(err, "%s: %lld epochs of %lld batches of %lld, fewer than one update (grad_accum %lld)",
                  t->train.path, (long long)epochs, (long long)batches, (long long)t->GB, (long long)t->K);
  }
  if (!text) t->perm = malloc((size_t)t->train.n * sizeof *t->perm);
  t->perm_epoch = -1;
  t->batch = malloc((size_t)t->B * sizeof *t->batch);
  return true;
}

// ---- data-parallel: gradients summed over ranks ---------------------------------------
// The grads go into buckets of about BPC_DP_BUCKET_MB MiB (default 16) in the
// order the backward finishes them. With grad_accum 1 each bucket's sum
// starts from the step's kernel hook as soon as its last grad is final and
// runs while the backward goes on (BPC_DP_OVERLAP=0: all after the step);
// the update waits for all of them, then divides by N, before clipping and
// the optimizer (train_update). Either way the same messages, the same bits.

static int cmp_ready(const void *a, const void *b) {
  const TDesc *x = *(const TDesc *const *)a, *y = *(const TDesc *const *)b;
  int rx = x->ready < 0 ? INT32_MAX : x->ready, ry = y->ready < 0 ? INT32_MAX : y->ready;
  return rx != ry ? (rx > ry) - (rx < ry) : (x > y) - (x < y);
}

static void buckets_plan(T *t) {
  Buckets *k = &t->bk;
  const Prog *p = &t->d.prog[PROG_TRAIN];
  int ng = (int)count_role(p, ROLE_GRAD);
  k->grad = malloc(sizeof *k->grad * (size_t)(ng + 1));
  int n = 0;
  for (int i = 0; i < p->n; i++)
    if (p->t[i].role == ROLE_GRAD) k->grad[n++] = &p->t[i];
  qsort(k->grad, (size_t)n, sizeof *k->grad, cmp_ready);
  const char *mb = getenv("BPC_DP_BUCKET_MB");
  int64_t cap = (mb && atof(mb) > 0 ? (int64_t)(atof(mb) * 1048576) : 16 << 20);
  k->first = malloc(sizeof(int) * (size_t)(n + 2));
  k->off = malloc(sizeof(int64_t) * (size_t)(n + 1));
  k->count = malloc(sizeof(int64_t) * (size_t)(n + 1));
  k->ready = malloc(sizeof(int) * (size_t)(n + 1));
  k->n = 0, k->bytes = 0;
  for (int i = 0; i < n; i++) {
    const TDesc *g = k->grad[i];
    int64_t bytes = g->numel * (int64_t)bpcrt_dtype_size(g->dtype);
    int b = k->n - 1;
    bool fresh = b < 0 || k->grad[k->first[b]]->dtype != g->dtype ||
                 k->count[b] * (int64_t)bpcrt_dtype_size(g->dtype) + bytes > cap;
    if (fresh) {
      b = k->n++;
      k->first[b] = i, k->off[b] = k->bytes, k->count[b] = 0;
    }
    k->count[b] += g->numel;
    k->payload += bytes;
    k->ready[b] = g->ready;  // sorted: the bucket's last grad is its latest
    k->bytes += (bytes + 63) / 64 * 64;
  }
  k->first[k->n] = n;
  k->stage = huge_alloc((size_t)k->bytes, "gradient stage");
  k->sum = huge_alloc((size_t)k->bytes, "gradient sum");
  const char *ov = getenv("BPC_DP_OVERLAP");
  k->overlap = t->K == 1 && !(ov && !strcmp(ov, "0"));
}

static void buckets_free(Buckets *k) {
  free(k->first), free(k->grad), free(k->off), free(k->count), free(k->ready), free(k->stage), free(k->sum);
  memset(k, 0, sizeof *k);
}

// Copies bucket b's grads into the stage and starts their sum over ranks.
static void bucket_start(T *t, int b) {
  Buckets *k = &t->bk;
  const Arena *a = &t->ar[PROG_TRAIN];
  char *at = k->stage + k->off[b];
  for (int i = k->first[b]; i < k->first[b + 1]; i++) {
    size_t bytes = (size_t)k->grad[i]->numel * bpcrt_dtype_size(k->grad[i]->dtype);
    memcpy(at, tp(a, k->grad[i]), bytes);
    at += bytes;
  }
  dp_bucket_start(k->stage + k->off[b], k->sum + k->off[b], k->count[b], k->grad[k->first[b]]->dtype);
}

// The step's kernel hook while overlapping: buckets whose grads are final go.
static T *hook_t;
static bpcrt_profile_fn hook_chain;  // --profile's hook, called first
static void dp_hook(int program, int kernel) {
  if (hook_chain) hook_chain(program, kernel);
  Buckets *k = &hook_t->bk;
  if (program != PROG_TRAIN || kernel < 0) return;
  bool started = false;
  while (k->next < k->n && k->ready[k->next] >= 0 && k->ready[k->next] <= kernel)
    bucket_start(hook_t, k->next++), started = true;
  if (!started) dp_bucket_progress();
}

// y = x / n over a gradient, 8 lanes at a time (GCC's -O2 leaves the plain
// loop scalar, and scalar divides took GPT-2's 2-rank update ~3x longer than
// this). Each lane rounds x / n as the scalar does, so the bits are the same;
// for n a power of two x * (1 / n) is that same exact quotient, cheaper.
#define DIV_BY_N(name, T, VN)                                \
  static void name(T *y, const T *x, int64_t numel, int n) { \
    typedef T vt __attribute__((vector_size(32)));           \
    T d = (T)n, inv = 1 / d;                                 \
    bool pow2 = (n & (n - 1)) == 0;                          \
    int64_t m = numel - numel % VN, e = 0;                   \
    for (; e < m; e += VN) {                                 \
      vt v;                                                  \
      memcpy(&v, x + e, sizeof v);                           \
      v = pow2 ? v * inv : v / d;                            \
      memcpy(y + e, &v, sizeof v);                           \
    }                                                        \
    for (; e < numel; e++) y[e] = x[e] / d;                  \
  }
DIV_BY_N(div_f32, float, 8)
DIV_BY_N(div_f64, double, 4)
#undef DIV_BY_N

// The rest of the buckets, the wait, grad = sum / N.
static void grads_reduce(T *t) {
  Buckets *k = &t->bk;
  while (k->next < k->n) bucket_start(t, k->next++);
  k->wait = dp_bucket_wait();
  k->next = 0;
  const Arena *a = &t->ar[PROG_TRAIN];
  for (int b = 0; b < k->n; b++) {
    const char *at = k->sum + k->off[b];
    for (int i = k->first[b]; i < k->first[b + 1]; i++) {
      const TDesc *g = k->grad[i];
      if (g->dtype == BPCRT_F64)
        div_f64(tp(a, g), (const double *)at, g->numel, t->nranks);
      else
        div_f32(tp(a, g), (const float *)at, g->numel, t->nranks);
      at += (size_t)g->numel * bpcrt_dtype_size(g->dtype);
    }
  }
}

// Loss and metrics: the mean over ranks; *stop: some rank was interrupted.
static void results_reduce(T *t, double *loss, Results *m, bool *stop) {
  double v[66];
  int n = m->n < 63 ? m->n : 63;
  v[0] = *loss;
  for (int i = 0; i < n; i++) v[1 + i] = m->v[i];
  v[1 + n] = *stop;
  dp_sum_f64(v, n + 2);
  *loss = v[0] / t->nranks;
  for (int i = 0; i < n; i++) m->v[i] = v[1 + i] / t->nranks;
  *stop = v[1 + n] > 0;
}

// A hash of this rank's params and optimizer slots (FNV-1a over the bytes).
static uint64_t params_hash(const T *t) {
  const Arena *a = &t->ar[PROG_TRAIN];
  uint64_t h = 1469598103934665603ull;
  for (int i = 0; i < a->p->n; i++) {
    const TDesc *d = &a->p->t[i];
    if (d->role != ROLE_PARAM && d->role != ROLE_OPT) continue;
    const unsigned char *x = tp(a, d);
    for (size_t e = 0, n = (size_t)d->numel * bpcrt_dtype_size(d->dtype); e < n; e++) h = (h ^ x[e]) * 1099511628211ull;
  }
  return h;
}

// Every rank holds rank 0's params and optimizer state (the sums gave them
// all the same bits): else an error naming the first rank that differs.
static bool ranks_agree(T *t, int64_t step, char *err) {
  uint64_t *all = malloc(sizeof *all * (size_t)t->nranks);
  dp_gather_u64(params_hash(t), all);
  int bad = 0;
  for (int r = 1; r < t->nranks && !bad; r++)
    if (all[r] != all[0]) bad = r;
  free(all);
  if (bad)
    return fail(err,
                "after step %lld rank %d holds params that differ from rank 0's: the sums over ranks "
                "did not give every rank the same bits",
                (long long)step, bad);
  return true;
}

// Rank 0's batch-norm running stats to every rank (SPEC 6.7), before eval.
static void states_bcast(T *t) {
  const Arena *a = &t->ar[PROG_TRAIN];
  for (int i = 0; t->nranks > 1 && i < a->p->n; i++)
    if (a->p->t[i].role == ROLE_STATE)
      dp_bcast(tp(a, &a->p->t[i]), a->p->t[i].numel * (int64_t)bpcrt_dtype_size(a->p->t[i].dtype));
}

// One update: K micro-steps, grads averaged, scalars, the optimizer.
static bool update(T *t, int64_t s, double lr_s, double *loss, Results *m, double *gacc, double *norms, char *err) {
  Arena *a = &t->ar[PROG_TRAIN];
  const TDesc *ld = find_role(a->p, ROLE_LOSS);
  Results r = {0};
  int64_t ng = 0;
  bool overlap = t->nranks > 1 && t->bk.overlap;
  for (int64_t k = 0; k < t->K; k++) {
    int64_t g = s * t->K + k;
    fill_batch(t, g);
    a->ctx.step = (uint64_t)g;
    bpcrt_profile_fn saved = bpcrt_profile;
    if (overlap) hook_t = t, hook_chain = saved, bpcrt_profile = dp_hook;
    bool ok = run(a, t->e->train_step, &t->train, t->batch, t->B, err);
    bpcrt_profile = saved;
    if (!ok) return false;
    results_add(&r, a, 1.0 / (double)t->K);
    if (t->K == 1) continue;
    ng = 0;
    for (int i = 0; i < a->p->n; i++) {
      const TDesc *d = &a->p->t[i];
      for (int64_t e = 0; d->role == ROLE_GRAD && e < d->numel; e++) gacc[ng++] += get_el(tp(a, d), d->dtype, e);
    }
  }
  if (t->K > 1) {
    ng = 0;
    for (int i = 0; i < a->p->n; i++) {
      const TDesc *d = &a->p->t[i];
      for (int64_t e = 0; d->role == ROLE_GRAD && e < d->numel; e++)
        set_el(tp(a, d), d->dtype, e, gacc[ng] / (double)t->K), gacc[ng++] = 0;
    }
  }
  if (t->nranks > 1) grads_reduce(t);
  if (norms) grad_norms(t, norms);
  if (!write_scalars(t, s, lr_s, err)) return false;
  double t0 = now();
  t->e->train_update(&a->ctx);
  t->opt_sec = now() - t0;
  *loss = ld ? r.loss : NAN;
  // A NaN prints as "nan" whatever its sign bit (printf would say "-nan").
  *loss = isnan(*loss) ? NAN : *loss;
  for (int k = 0; k < r.n; k++) r.v[k] = isnan(r.v[k]) ? NAN : r.v[k];
  *m = r;
  return true;
}

static bool periodic_eval(T *t, int64_t step, bool tty, char *err) {
  Results r;
  states_bcast(t);
  if (!copy_state(&t->ar[PROG_TRAIN], &t->ar[PROG_EVAL], err) || !evaluate(t, t->eval_set, &r, err)) return false;
  log_row(t, "eval", step, r.loss, -1, &r, NULL);
  if (!t->o.quiet) {
    char w[64];
    snprintf(w, sizeof w, "%sstep %lld: %s", tty ? "\r\033[K" : "", (long long)step, t->eval_name);
    print_results(stderr, w, &r);
  }
  return true;
}

static int cmd_train(T *t) {
  char *err = t->err;
  const Opts *o = &t->o;
  const Desc *d = &t->d;
  if (!d->prog[PROG_TRAIN].present)
    return fail(err, "the model has no `loss:`: it can predict (trainer predict), not train"), 1;
  if (!t->e->train_step || !t->e->train_update) return fail(err, "this trainer has no training entry points"), 1;
  if (!setup_data(t, err)) return 1;
  arena_open(t, PROG_TRAIN);
  if (d->prog[PROG_EVAL].present &&
      t->eval_set)  // no eval data: no eval arena (its params copy alone is the model's size)
    arena_open(t, PROG_EVAL);
  init_params(t, &t->ar[PROG_TRAIN]);
  if (o->resume && !load_resume(t, o->resume, err)) return 1;
  if (o->init && !load_init(&t->ar[PROG_TRAIN], o->init, o->quiet, err)) return 1;
  if (o->init && d->has_lora) {  // checkpoints name it as the frozen weights' base
    free(t->base);
    t->base = realpath(o->init, NULL);
  }
  char *out = strdup(o->save ? o->save : d->name);
  if (!o->save) {
    out = realloc(out, strlen(out) + 16);
    strcat(out, ".safetensors");
  }
  int64_t eval_every = o->has_eval_every ? o->eval_every : d->train.eval_every;
  int64_t ckpt_every = o->has_ckpt_every ? o->ckpt_every : d->train.checkpoint_every;
  double base_lr = o->has_lr ? o->lr : d->train.lr;
  if (o->log && !log_open(t, o->resume != NULL, err)) return free(out), 1;
  int64_t ngrad = 0, ngt = count_role(t->ar[PROG_TRAIN].p, ROLE_GRAD);
  for (int i = 0; i < t->ar[PROG_TRAIN].p->n; i++)
    if (t->ar[PROG_TRAIN].p->t[i].role == ROLE_GRAD) ngrad += t->ar[PROG_TRAIN].p->t[i].numel;
  double *gacc = t->K > 1 ? calloc((size_t)ngrad + 1, sizeof *gacc) : NULL;
  double *norms = o->grad_stats ? calloc((size_t)ngt + 1, sizeof *norms) : NULL;
  double *step_sec = o->timing ? calloc((size_t)(t->S - t->start) + 1, sizeof *step_sec) : NULL;
  double *opt_sec = o->timing ? calloc((size_t)(t->S - t->start) + 1, sizeof *opt_sec) : NULL;
  if (t->nranks > 1) buckets_plan(t);
  double *comm_sec = o->timing && t->nranks > 1 ? calloc((size_t)(t->S - t->start) + 1, sizeof *comm_sec) : NULL;
  // Under MPI, mpirun passes a Ctrl-C on to the ranks as SIGTERM: the same.
  struct sigaction sa = {0}, old, old_term;
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  got_sigint = 0;
  sigaction(SIGINT, &sa, &old);
  if (t->nranks > 1) sigaction(SIGTERM, &sa, &old_term);
  bool tty = isatty(2) && !o->quiet;
  int64_t every = t->S - t->start >= 20 ? (t->S - t->start) / 20 : 1;
  double loss = NAN, last_print = 0, rate_t0 = now();
  Results m = {0};
  int rc = 0;
  t->t0 = now();
  // --profile: kernels timed after the warm-up (as --timing: the first fifth, at most 10)
  int64_t prof_warm = (t->S - t->start) / 5 < 10 ? (t->S - t->start) / 5 : 10;
  double prof_wall = 0;
  if (o->profile) {
    prof.nk = t->ar[PROG_TRAIN].p->nk;
    prof.sec = calloc((size_t)prof.nk + 1, sizeof *prof.sec);
  }
  int64_t budget_at = 0;  // --max-time: the step it ran out at
  for (int64_t s = t->start; s < t->S; s++) {
    if (o->profile && s == t->start + prof_warm) bpcrt_profile = prof_hook;
    double lr_s = lr_at(&d->train, base_lr, s, t->S), ts0 = step_sec || bpcrt_profile ? now() : 0;
    if (!update(t, s, lr_s, &loss, &m, gacc, norms, err)) {
      rc = 1;
      break;
    }
    bool stop = got_sigint;
    if (t->nranks > 1)  // every rank stops at the same step
      results_reduce(t, &loss, &m, &stop);
    if (step_sec) step_sec[s - t->start] = now() - ts0, opt_sec[s - t->start] = t->opt_sec;
    if (comm_sec) comm_sec[s - t->start] = t->bk.wait;
    if (bpcrt_profile) prof_wall += now() - ts0;
    int64_t done = s + 1;
    log_row(t, "train", done, loss, lr_s, &m, norms);
    bool show = tty ? now() - last_print > 0.1 || done == t->S : done % every == 0 || done == t->S;
    if (norms && !o->quiet && (done % every == 0 || done == t->S)) print_grad_stats(t, done, norms, tty);
    if (!o->quiet && show) {
      progress(t, done, loss, lr_s, &m, rate_t0, tty);
      last_print = now();
    }
    if (ckpt_every > 0 && done % ckpt_every == 0) {
      char *p = ckpt_step_path(out, done);
      bool ok = save_ckpt(t, p, done, err);
      free(p);
      if (!ok) {
        rc = 1;
        break;
      }
    }
    if (stop) {
      if (tty) fputc('\n', stderr);
      if (!save_ckpt(t, out, done, err)) {
        rc = 1;
        break;
      }
      if (t->rank == 0) fprintf(stderr, "interrupted at step %lld: checkpoint saved to %s\n", (long long)done, out);
      rc = 130;
      break;
    }
    if (t->eval_set && eval_every > 0 && done % eval_every == 0 && done < t->S && !periodic_eval(t, done, tty, err)) {
      rc = 1;
      break;
    }
    if (o->has_max_time && done < t->S && now() - t->t0 >= o->max_time) {  // the budget: stop as if S were done
      budget_at = done;
      break;
    }
  }
  if (tty && t->S > t->start) fputc('\n', stderr);
  if (budget_at) {
    fprintf(stderr, "--max-time %g s reached at step %lld of %lld\n", o->max_time, (long long)budget_at,
            (long long)t->S);
    t->S = budget_at;
  }
  if (rc == 0 && t->nranks > 1 && !ranks_agree(t, t->S > t->start ? t->S : t->start, err)) rc = 1;
  if (rc == 0 && !save_ckpt(t, out, t->S > t->start ? t->S : t->start, err)) rc = 1;
  if (rc == 0) {
    if (t->S <= t->start)
      printf("train: nothing to do (checkpoint at step %lld of %lld)\n", (long long)t->start, (long long)t->S);
    else {
      printf("train loss %.6g", loss);
      for (int k = 0; k < m.n; k++) printf("  %s %.4f", m.names[k], m.v[k]);
      putchar('\n');
    }
    if (step_sec) print_timing(step_sec, opt_sec, t->S - t->start);
    if (comm_sec) print_comm(t, comm_sec, t->S - t->start);
    if (o->profile && t->S - t->start > prof_warm)
      print_profile(t->ar[PROG_TRAIN].p, t->S - t->start - prof_warm, prof_warm, prof_wall);
    Results r;
    states_bcast(t);
    if (t->eval_set) {
      if (!copy_state(&t->ar[PROG_TRAIN], &t->ar[PROG_EVAL], err) || !evaluate(t, t->eval_set, &r, err))
        rc = 1;
      else {
        log_row(t, "eval", t->S, r.loss, -1, &r, NULL);
        print_results(stdout, t->eval_name, &r);
      }
    }
    if (rc == 0 && !o->quiet)
      fprintf(stderr, "saved %s (step %lld)\n", out, (long long)(t->S > t->start ? t->S : t->start));
    fflush(stdout);
  }
  sigaction(SIGINT, &old, NULL);
  if (t->nranks > 1) sigaction(SIGTERM, &old_term, NULL);
  if (rc == 1) log_abandon(t);
  buckets_free(&t->bk);
  free(out), free(gacc), free(norms), free(step_sec), free(opt_sec), free(comm_sec);
  bpcrt_profile = NULL;
  free(prof.sec);
  prof.sec = NULL, prof.nk = 0;
  return rc;
}

// ---- eval ---------------------------------------------------------------------------------

static int cmd_eval(T *t) {
  char *err = t->err;
  const Desc *d = &t->d;
  if (!d->prog[PROG_EVAL].present || !t->e->eval_forward)
    return fail(err, "this trainer has no eval program%s",
                d->prog[PROG_TRAIN].present ? "" : " (the model has no `loss:`)"),
           1;
  arena_open(t, PROG_EVAL);
  Arena *a = &t->ar[PROG_EVAL];
  init_params(t, a);
  if (!load_params(t, a, t->o.params, count_role(a->p, ROLE_STATE) > 0, err)) return 1;
  const DataDesc *dd = t->o.data ? (d->data_test.format != FMT_NONE ? &d->data_test : &d->data_train)
                       : d->data_test.format != FMT_NONE ? &d->data_test
                                                         : &d->data_train;
  if (dd->format == FMT_NONE) return fail(err, "the model has no data section: nothing to evaluate on"), 1;
  if (!data_load(&t->test, dd, a->p, t->o.data, err, ERRLEN)) return 1;
  const char *name = "test";
  t->eval_set = &t->test;
  if (!t->o.data && dd == &d->data_train) {
    if (dd->val_fraction <= 0) return fail(err, "the model has no test set and no validation split: pass --data"), 1;
    data_split(&t->test, dd->val_fraction, &t->val);
    t->eval_set = &t->val, name = "val";
  }
  if (t->o.log && !log_open(t, false, err)) return 1;
  t->t0 = now();
  Results r;
  if (!evaluate(t, t->eval_set, &r, err)) return log_abandon(t), 1;
  log_row(t, "eval", 0, r.loss, -1, &r, NULL);
  print_results(stdout, name, &r);
  return 0;
}

// ---- predict ------------------------------------------------------------------------------

// SPEC 6.2: the eval-mode forward of the outputs over every sample of the
// inputs file (axis 0 = samples, any N >= 1) in batches of B, the last one
// padded with copies of the last sample, each output written with axis 0 = N.
// Inputs the outputs do not need may be absent (they are not in the
// program); a tensor that is no input of the model is an error (a misspelt
// name would otherwise be ignored). Every mismatch is listed at once;
// nothing is written on an error.
static int cmd_predict(T *t) {
  char *err = t->err;
  const Desc *d = &t->d;
  const Prog *p = &d->prog[PROG_PREDICT];
  if (!p->present || !t->e->predict_forward)
    return fail(err, "%s", d->predict_error ? d->predict_error : "this trainer has no predict program"), 1;
  arena_open(t, PROG_PREDICT);
  Arena *a = &t->ar[PROG_PREDICT];
  init_params(t, a);
  if (t->o.params ? !load_params(t, a, t->o.params, count_role(p, ROLE_STATE) > 0, err)
                  : !load_init(a, t->o.init, true, err))
    return 1;
  const char *path = t->o.inputs;
  bpcrt_tensors f;
  if (bpcrt_st_read(path, &f, err, ERRLEN) != 0) return 1;
  size_t len = (size_t)snprintf(err, ERRLEN, "%s: does not fit the model's inputs:", path), len0 = len;
#define ADD(...) (len < ERRLEN ? (void)(len += (size_t)snprintf(err + len, ERRLEN - len, __VA_ARGS__)) : (void)0)
  int64_t N = -1, B = batch_of(p);
  const Prog *all = d->prog[PROG_TRAIN].present ? &d->prog[PROG_TRAIN] : p;
  for (int i = 0; i < f.n; i++) {
    const TDesc *m = prog_find(all, f.t[i].name);
    if (!prog_find(p, f.t[i].name) && (!m || m->role != ROLE_INPUT))
      ADD("\n  '%s' is not an input of the model", f.t[i].name);
  }
  for (int i = 0; i < p->n; i++) {
    const TDesc *in = &p->t[i];
    if (in->role != ROLE_INPUT) continue;
    const bpcrt_tensor *ft = bpcrt_st_find(&f, in->name);
    char s1[200], s2[200];
    if (!ft) {
      ADD("\n  missing input '%s'", in->name);
      continue;
    }
    bool same = ft->rank == in->rank && ft->rank >= 1 && ft->shape[0] >= 1;
    for (int k = 1; same && k < in->rank; k++) same = ft->shape[k] == in->shape[k];
    shape_str(s1, sizeof s1, ft->rank, ft->shape);
    int64_t want[BPCRT_MAX_RANK];
    memcpy(want, in->shape, sizeof want);
    want[0] = 0;  // shown as [0, ...]: any N
    shape_str(s2, sizeof s2, in->rank, want);
    if (!same) {
      ADD("\n  '%s': shape %s, the model needs %s with N >= 1 samples first", in->name, s1, s2);
      continue;
    }
    if (!bpcrt_dtype_loads(ft->dtype, in->dtype)) {
      ADD("\n  '%s': %s, the model needs %s", in->name, bpcrt_dtype_name(ft->dtype), BPCRT_LOADS_WHAT(in->dtype));
      continue;
    }
    if (N >= 0 && ft->shape[0] != N) {
      ADD("\n  '%s': %lld samples, other inputs have %lld", in->name, (long long)ft->shape[0], (long long)N);
      continue;
    }
    N = ft->shape[0];
    if (in->dtype == BPCRT_I32 && in->limit > 0) {
      const int32_t *v = ft->data;
      int64_t per = in->numel / B, n = bpcrt_numel(ft);
      for (int64_t k = 0; k < n; k++)
        if (v[k] < 0 || v[k] >= in->limit) {
          ADD("\n  '%s': sample %lld holds %s %d, out of range [0, %lld)", in->name, (long long)(k / per),
              status_what(in->limit_code), (int)v[k], (long long)in->limit);
          break;
        }
    }
  }
#undef ADD
  if (len != len0 || N < 0) {
    if (len == len0) fail(err, "%s: the outputs need no input: nothing to predict over", path);
    bpcrt_st_free(&f);
    return 1;
  }
  // float inputs as doubles once; outputs gathered whole
  int nt = p->n;
  double **fv = calloc((size_t)nt, sizeof *fv);
  void **res = calloc((size_t)nt, sizeof *res);
  for (int i = 0; i < nt; i++) {
    const TDesc *x = &p->t[i];
    if (x->role == ROLE_INPUT && x->dtype != BPCRT_I32) {
      const bpcrt_tensor *ft = bpcrt_st_find(&f, x->name);
      fv[i] = malloc(sizeof(double) * (size_t)bpcrt_numel(ft));
      bpcrt_st_to_f64(ft, fv[i]);
    }
    if (x->role == ROLE_OUTPUT) res[i] = malloc((size_t)(x->numel / B * N) * bpcrt_dtype_size(x->dtype) + 1);
  }
  bool ok = true;
  for (int64_t b0 = 0; b0 < N && ok; b0 += B) {
    for (int i = 0; i < nt; i++) {
      const TDesc *x = &p->t[i];
      if (x->role != ROLE_INPUT) continue;
      const bpcrt_tensor *ft = bpcrt_st_find(&f, x->name);
      int64_t per = x->numel / B;
      for (int64_t r = 0; r < B; r++) {
        int64_t s = b0 + r < N ? b0 + r : N - 1;  // padding: the last sample again
        if (x->dtype == BPCRT_I32)
          memcpy((int32_t *)tp(a, x) + r * per, (const int32_t *)ft->data + s * per, (size_t)per * 4);
        else
          for (int64_t k = 0; k < per; k++) set_el(tp(a, x), x->dtype, r * per + k, fv[i][s * per + k]);
      }
    }
    ok = run(a, t->e->predict_forward, NULL, NULL, 0, err);
    for (int i = 0; i < nt && ok; i++) {
      const TDesc *x = &p->t[i];
      if (x->role != ROLE_OUTPUT) continue;
      size_t row = (size_t)(x->numel / B) * bpcrt_dtype_size(x->dtype);
      int64_t nb = N - b0 < B ? N - b0 : B;
      memcpy((char *)res[i] + (size_t)b0 * row, tp(a, x), (size_t)nb * row);
    }
  }
  if (ok) {
    bpcrt_tensors o = {0};
    for (int i = 0; i < nt; i++) {
      const TDesc *x = &p->t[i];
      if (x->role != ROLE_OUTPUT) continue;
      int64_t shape[BPCRT_MAX_RANK];
      memcpy(shape, x->shape, sizeof shape);
      shape[0] = N;
      bpcrt_st_add_ref(&o, x->name, x->dtype, x->rank, shape, res[i]);
    }
    ok = bpcrt_st_write(t->o.out, &o, err, ERRLEN) == 0;
    bpcrt_st_free(&o);
    if (ok && !t->o.quiet)
      fprintf(stderr, "predicted %lld samples in batches of %lld: wrote %s\n", (long long)N, (long long)B, t->o.out);
  }
  for (int i = 0; i < nt; i++) free(fv[i]), free(res[i]);
  free(fv), free(res);
  bpcrt_st_free(&f);
  return ok ? 0 : 1;
}

// ---- merge ---------------------------------------------------------------------------------

// LoRA adapters folded into their weights: W + scale A B for every adapted W,
// written as a full checkpoint without the adapters, in bpc's names (what the
// same model file without `lora:` loads with --params).
static int cmd_merge(T *t) {
  char *err = t->err;
  const Desc *d = &t->d;
  int k = d->prog[PROG_TRAIN].present ? PROG_TRAIN : PROG_PREDICT;
  if (!d->has_lora) return fail(err, "the model has no lora params: nothing to merge"), 1;
  arena_open(t, k);
  Arena *a = &t->ar[k];
  init_params(t, a);
  if (t->o.init) {  // an explicit base: the checkpoint's own tensors go over it
    bpcrt_tensors f;
    if (!load_init(a, t->o.init, true, err) || bpcrt_st_read(t->o.params, &f, err, ERRLEN) != 0) return 1;
    bool ok = load_tensors(a, &f, t->o.params, BIT(ROLE_PARAM), BIT(ROLE_STATE), true, true, err);
    bpcrt_st_free(&f);
    if (!ok) return 1;
  } else if (!load_params(t, a, t->o.params, false, err)) {
    return 1;
  }
  const Prog *p = a->p;
  bpcrt_tensors o = {0};
  double *w = NULL;
  for (int i = 0; i < p->n; i++) {
    const TDesc *x = &p->t[i];
    if (x->role != ROLE_PARAM && x->role != ROLE_STATE) continue;
    bool adapter = false;
    for (int j = 0; j < p->n; j++)
      adapter |= p->t[j].lora_a && (!strcmp(p->t[j].lora_a, x->name) || !strcmp(p->t[j].lora_b, x->name));
    if (adapter) continue;
    if (x->lora_a) {
      const TDesc *A = prog_find(p, x->lora_a), *B = prog_find(p, x->lora_b);
      if (!A || !B || A->rank != 2 || B->rank != 2 || A->shape[1] != B->shape[0] ||
          A->shape[0] * B->shape[1] != x->numel)
        return fail(err, "model description: bad lora adapters of '%s'", x->name), bpcrt_st_free(&o), 1;
      int64_t in = A->shape[0], r = A->shape[1], out = B->shape[1];
      w = realloc(w, sizeof *w * (size_t)x->numel);
      for (int64_t e = 0; e < x->numel; e++) w[e] = get_el(tp(a, x), x->dtype, e);
      for (int64_t ii = 0; ii < in; ii++)
        for (int64_t jj = 0; jj < out; jj++) {
          double s = 0;
          for (int64_t q = 0; q < r; q++)
            s += get_el(tp(a, A), A->dtype, ii * r + q) * get_el(tp(a, B), B->dtype, q * out + jj);
          set_el(tp(a, x), x->dtype, ii * out + jj, w[ii * out + jj] + x->lora_scale * s);
        }
    }
    bpcrt_st_add_ref(&o, x->name, x->dtype, x->rank, x->shape, tp(a, x));
  }
  free(w);
  bpcrt_st_set_meta(&o, "format", "1");
  bpcrt_st_set_meta(&o, "merged_from", t->o.params);
  bool ok = bpcrt_st_write(t->o.out, &o, err, ERRLEN) == 0;
  bpcrt_st_free(&o);
  if (ok && !t->o.quiet) fprintf(stderr, "merged the adapters of %s: wrote %s\n", t->o.params, t->o.out);
  return ok ? 0 : 1;
}

// ---- sample -------------------------------------------------------------------------------
// Cached sampling (issue 19.4): with a decode program (the model decodes one
// position at a time, compiler/decode.c) a window starts at position 0 and
// holds the text so far while it fits; the whole-window program runs once
// on the prompt and fills every attention's key/value cache from its k and
// v outputs, then each token runs the decode program on the one new
// position. Once the text is longer than the window, the window slides
// (the last T tokens at positions 0..T-1, as without a cache): every
// position moves, so each such token runs the whole window again. Without
// a decode program (or with --no-cache for a model that has one) the whole
// window runs for every token; then a model without a decode program keeps
// the window right-aligned and left-padded with the first byte.

typedef struct {
  T *t;
  Arena *a, *dec;          // the sample arena; the decode arena (NULL: uncached)
  const TDesc *tok, *lg;   // the sample program's tokens and logits
  const TDesc *dtok, *dlg, *dpos;
  int64_t Tn, V;
  bool from0;              // windows start at position 0 (the model has a decode program)
  int64_t cached;          // positions held in the caches, -1 when they hold none
  int nattn;
  const TDesc **kv;        // per attention: __k.i, __v.i (sample), __kcache.i, __vcache.i (decode)
  int64_t steps, windows;  // tokens by one decode step, by a whole window
} Sampler;

static const TDesc *kv_find(const Prog *p, const char *fmt, int i) {
  char name[64];
  snprintf(name, sizeof name, fmt, i);
  return prog_find(p, name);
}

// The decode arena with the sample arena's params and state copied in, and
// the k/v tensors of both programs paired; false (err) on a description
// that does not fit.
static bool sampler_open_decode(Sampler *s, char *err) {
  T *t = s->t;
  const Prog *dp = &t->d.prog[PROG_DECODE], *sp = s->a->p;
  s->dtok = prog_find(dp, t->d.gen_tokens), s->dlg = prog_find(dp, t->d.gen_logits), s->dpos = prog_find(dp, "__pos");
  if (!s->dtok || !s->dlg || !s->dpos || s->dtok->numel != 1 || s->dlg->numel != s->V || s->dpos->dtype != BPCRT_I32)
    return fail(err, "model description: bad decode program");
  while (kv_find(dp, "__kcache.%d", s->nattn)) s->nattn++;
  s->kv = calloc((size_t)(4 * s->nattn + 1), sizeof *s->kv);
  for (int i = 0; i < s->nattn; i++) {
    const TDesc **q = s->kv + 4 * i;
    q[0] = kv_find(sp, "__k.%d", i), q[1] = kv_find(sp, "__v.%d", i);
    q[2] = kv_find(dp, "__kcache.%d", i), q[3] = kv_find(dp, "__vcache.%d", i);
    for (int w = 0; w < 2; w++)
      if (!q[w] || !q[w + 2] || q[w]->numel != q[w + 2]->numel || q[w]->dtype != q[w + 2]->dtype)
        return fail(err, "model description: attention %d's cache does not match the sample program's k and v", i);
  }
  arena_open(t, PROG_DECODE);
  s->dec = &t->ar[PROG_DECODE];
  for (int i = 0; i < dp->n; i++) {
    const TDesc *d = &dp->t[i], *src = d->role == ROLE_PARAM || d->role == ROLE_STATE ? prog_find(sp, d->name) : NULL;
    if (d->role != ROLE_PARAM && d->role != ROLE_STATE) continue;
    if (!src || src->numel != d->numel || src->dtype != d->dtype)
      return fail(err, "model description: the decode program's '%s' is not the sample program's", d->name);
    memcpy(tp(s->dec, d), tp(s->a, src), (size_t)d->numel * bpcrt_dtype_size(d->dtype));
  }
  return true;
}

static int32_t token_id(const Sampler *s, uint8_t b) { return b < s->V ? b : 0; }

// The whole window over seq[0..n): its logits row, NULL (err) when the step failed.
static const void *sample_window(Sampler *s, const uint8_t *seq, int64_t n, char *err) {
  int32_t *ids = tp(s->a, s->tok);
  int64_t Tn = s->Tn, row = Tn - 1;
  if (s->from0 && n <= Tn) {  // positions 0..n-1; the causal model never reads the rest
    for (int64_t k = 0; k < Tn; k++) ids[k] = k < n ? token_id(s, seq[k]) : 0;
    row = n - 1;
  } else {
    for (int64_t k = 0; k < Tn; k++) {
      int64_t src = n - Tn + k;  // right-aligned: left-pad with the first byte
      ids[k] = token_id(s, seq[src < 0 ? 0 : src]);
    }
  }
  if (!run(s->a, s->t->e->sample_forward, NULL, NULL, 0, err)) return NULL;
  s->windows++;
  s->cached = -1;
  if (s->dec && n <= Tn) {  // the prompt's keys and values: rows [0, n) of the caches
    for (int i = 0; i < 2 * s->nattn; i++) {
      const TDesc *from = s->kv[4 * (i / 2) + i % 2], *to = s->kv[4 * (i / 2) + 2 + i % 2];
      size_t row_bytes = (size_t)(from->numel / Tn) * bpcrt_dtype_size(from->dtype);
      memcpy(tp(s->dec, to), tp(s->a, from), (size_t)n * row_bytes);
    }
    s->cached = n;
  }
  return (const char *)tp(s->a, s->lg) + (size_t)(row * s->V) * bpcrt_dtype_size(s->lg->dtype);
}

// The logits of the token after seq[0..n): one decode step when the caches
// hold positions [0, n - 1), else the whole window.
static const void *sample_next(Sampler *s, const uint8_t *seq, int64_t n, char *err) {
  if (!s->dec || s->cached != n - 1 || n > s->Tn) return sample_window(s, seq, n, err);
  *(int32_t *)tp(s->dec, s->dtok) = token_id(s, seq[n - 1]);
  *(int32_t *)tp(s->dec, s->dpos) = (int32_t)(n - 1);
  if (!run(s->dec, s->t->e->decode_forward, NULL, NULL, 0, err)) return NULL;
  s->steps++;
  s->cached = n;
  return tp(s->dec, s->dlg);
}

static int cmd_sample(T *t) {
  char *err = t->err;
  const Desc *d = &t->d;
  const Prog *p = &d->prog[PROG_SAMPLE];
  if (!p->present || !t->e->sample_forward || !d->gen_tokens || !d->gen_logits)
    return fail(err, "this model has no generate section: nothing to sample"), 1;
  const TDesc *tok = prog_find(p, d->gen_tokens), *lg = prog_find(p, d->gen_logits);
  if (!tok || !lg || tok->dtype != BPCRT_I32 || tok->rank < 1 || lg->rank < 1)
    return fail(err, "model description: bad generate section"), 1;
  arena_open(t, PROG_SAMPLE);
  Arena *a = &t->ar[PROG_SAMPLE];
  init_params(t, a);
  if (!load_params(t, a, t->o.params, count_role(p, ROLE_STATE) > 0, err)) return 1;
  int64_t Tn = tok->numel, V = lg->shape[lg->rank - 1];
  if (V < 1 || lg->numel < Tn * V) return fail(err, "model description: logits '%s' are not [.., T, V]", lg->name), 1;
  bool has_decode = d->prog[PROG_DECODE].present && t->e->decode_forward;
  Sampler sm = {.t = t, .a = a, .tok = tok, .lg = lg, .Tn = Tn, .V = V, .from0 = has_decode, .cached = -1};
  if (has_decode && !t->o.no_cache && !sampler_open_decode(&sm, err)) return free(sm.kv), 1;
  if (!has_decode && d->decode_error && !t->o.quiet)
    fprintf(stderr, "sample: uncached (the whole window per token): %s\n", d->decode_error);
  const char *prompt = t->o.prompt && *t->o.prompt ? t->o.prompt : "\n";
  size_t np = strlen(prompt), cap = np + (size_t)t->o.tokens + 1;
  uint8_t *seq = malloc(cap);
  memcpy(seq, prompt, np);
  double *prob = malloc((size_t)V * sizeof *prob);
  int64_t *order = malloc((size_t)V * sizeof *order);
  uint64_t stream = bpcrt_fnv1a64("sample"), seed = t->o.has_seed ? t->o.seed : d->train.seed;
  fwrite(prompt, 1, np, stdout);
  fflush(stdout);
  size_t n = np;
  double t0 = now();
  for (int64_t i = 0; i < t->o.tokens; i++) {
    const void *row = sample_next(&sm, seq, (int64_t)n, err);
    if (!row) return free(seq), free(prob), free(order), free(sm.kv), 1;
    int64_t best = 0;
    double mx = -INFINITY;
    for (int64_t v = 0; v < V; v++) {
      prob[v] = get_el(row, lg->dtype, v);
      if (prob[v] > mx) mx = prob[v], best = v;
    }
    int64_t pick = best;
    if (t->o.temperature > 0) {
      int64_t k = t->o.top_k > 0 && t->o.top_k < V ? t->o.top_k : V;
      // threshold = the k-th largest logit (ties kept)
      double thr = -INFINITY;
      if (k < V) {
        for (int64_t v = 0; v < V; v++) order[v] = v;
        for (int64_t j = 0; j < k; j++) {
          int64_t b = j;
          for (int64_t v = j + 1; v < V; v++)
            if (prob[order[v]] > prob[order[b]]) b = v;
          int64_t tmp = order[j];
          order[j] = order[b], order[b] = tmp;
        }
        thr = prob[order[k - 1]];
      }
      double z = 0;
      for (int64_t v = 0; v < V; v++) z += prob[v] = prob[v] >= thr ? exp((prob[v] - mx) / t->o.temperature) : 0;
      double u = bpcrt_uniform24(seed, stream, (uint64_t)i) * z, c = 0;
      pick = -1;
      for (int64_t v = 0; v < V && pick < 0; v++)
        if (prob[v] > 0 && (c += prob[v]) > u) pick = v;
      if (pick < 0) pick = best;
    }
    seq[n++] = (uint8_t)pick;
    putchar((int)(uint8_t)pick);
    fflush(stdout);
  }
  double secs = now() - t0;
  if (!t->o.quiet && isatty(1)) putchar('\n');
  fflush(stdout);
  if (!t->o.quiet && t->o.tokens > 0)
    fprintf(stderr, "sample: %lld tokens in %.3f s, %.1f tokens/s (%s: %lld one-position steps, %lld whole windows)\n",
            (long long)t->o.tokens, secs, secs > 0 ? (double)t->o.tokens / secs : 0.0, sm.dec ? "cached" : "uncached",
            (long long)sm.steps, (long long)sm.windows);
  free(seq), free(prob), free(order), free(sm.kv);
  return 0;
}

// ---- info ---------------------------------------------------------------------------------

static int cmd_info(T *t) {
  const Desc *d = &t->d;
  printf("model    %s (hash %s)\n", d->name, d->hash);
  printf("dtype    %s\n", d->dtype == BPCRT_F64 ? "f64" : "f32");
  if (d->bf16)
    printf("precision bf16 (matmul, attention and conv2d: bf16 operands, f32 sums; %s)\n",
           bpck_bf16_native() ? "vdpbf16ps" : "AVX2 FMAs, the same sums");
  if (d->model_path) printf("source   %s\n", d->model_path);
  if (d->compile) printf("compile  %s\n", d->compile);
  if (t->e->target) printf("target   %s\n", t->e->target);
  if (d->dims_text && *d->dims_text) printf("dims     %s\n", d->dims_text);
  const TrainCfg *c = &d->train;
  printf("train    %s lr %g, schedule %s (warmup %lld), grad_accum %lld, steps %lld, epochs %lld, seed %llu\n",
         c->opt_type, c->lr, schedule_name(c->sched), (long long)c->warmup, (long long)c->grad_accum,
         (long long)c->steps, (long long)c->epochs, (unsigned long long)c->seed);
  static const char *fmts[] = {"none", "text", "csv", "safetensors", "idx"};
  for (int k = 0; k < 2; k++) {
    const DataDesc *dd = k ? &d->data_test : &d->data_train;
    if (dd->format != FMT_NONE)
      printf("data     %s: %s %s%s%s\n", k ? "test" : "train", fmts[dd->format],
             dd->format == FMT_IDX ? dd->images
             : dd->path            ? dd->path
                                   : "",
             dd->format == FMT_IDX ? " " : "", dd->format == FMT_IDX ? dd->labels : "");
  }
  int64_t nparams = 0, pbytes = 0;
  const Prog *tp_ = &d->prog[d->prog[PROG_TRAIN].present ? PROG_TRAIN : PROG_PREDICT];
  for (int i = 0; i < tp_->n; i++)
    if (tp_->t[i].role == ROLE_PARAM)
      nparams += tp_->t[i].numel, pbytes += tp_->t[i].numel * (int64_t)bpcrt_dtype_size(tp_->t[i].dtype);
  printf("params   %lld (%lld bytes)\n", (long long)nparams, (long long)pbytes);
  if (d->prog[PROG_SAMPLE].present)
    printf("sample   %s%s\n", d->prog[PROG_DECODE].present ? "cached (one position per token)" : "uncached: ",
           d->prog[PROG_DECODE].present || !d->decode_error ? "" : d->decode_error);
  static const char *pn[] = {"train", "eval", "sample", "predict", "decode"};
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  for (int k = 0; k < NPROG; k++) {
    const Prog *p = &d->prog[k];
    if (!p->present) continue;
    printf("program  %s: arena %lld bytes, scratch %lld bytes per thread (%lld bytes with %ld threads)\n", pn[k],
           (long long)p->arena, (long long)p->scratch, (long long)(p->arena + p->scratch * cpus), cpus);
    for (int i = 0; i < p->n; i++) {
      char s[200];
      shape_str(s, sizeof s, p->t[i].rank, p->t[i].shape);
      printf("  %-7s %-28s %s %s\n", role_name(p->t[i].role), p->t[i].name,
             p->t[i].dtype == BPCRT_I32   ? "i32"
             : p->t[i].dtype == BPCRT_F64 ? "f64"
                                          : "f32",
             s);
    }
  }
  return 0;
}

// ---- main -------------------------------------------------------------------------------------

int bpcrt_main(const char *model_json, const bpcrt_entries *entries, int argc, char **argv) {
  T *t = calloc(1, sizeof *t);
  bool help = false;
  if (!parse_args(&t->o, argc, argv, &help)) {
    usage(help ? stdout : stderr);
    free(t);
    return help ? 0 : 2;
  }
  int rc;
  t->nranks = 1;
  if (!dp_init(t->err, ERRLEN)) {
    rc = 1;
  } else if ((t->rank = dp_rank(), t->nranks = dp_size()) > 1 && (t->o.cmd & (CMD_SAMPLE | CMD_PREDICT | CMD_MERGE))) {
    rc = 1;
    fail(t->err, "%s runs in one process: start it without mpirun (or with -np 1)",
         t->o.cmd == CMD_SAMPLE    ? "sample"
         : t->o.cmd == CMD_PREDICT ? "predict"
                                   : "merge");
  } else if (!desc_parse(&t->d, model_json, t->err, ERRLEN)) {
    rc = 1;
  } else if (t->o.cmd != CMD_INFO && !bpcrt_cpu_check(entries->target, t->err, ERRLEN)) {
    rc = 1;  // before any generated code runs: an error, not SIGILL
  } else {
    t->e = entries;
    t->seed = t->o.has_seed ? t->o.seed : t->d.train.seed;
    if (t->rank > 0) {  // rank 0 prints, logs and writes checkpoints
      t->o.quiet = true, t->o.log = NULL;
      if (!freopen("/dev/null", "w", stdout)) fprintf(stderr, "warning: rank %d: cannot silence stdout\n", t->rank);
    }
    if (t->o.cmd != CMD_INFO) {
      long cpus = sysconf(_SC_NPROCESSORS_ONLN) / dp_local_size();
      t->pool =
          bpcrt_pool_new(t->o.threads > 0 ? (int)(t->o.threads < BPCRT_MAX_THREADS ? t->o.threads : BPCRT_MAX_THREADS)
                                          : (int)(cpus > 0 ? cpus : 1));
      t->threads = bpcrt_pool_threads(t->pool);
    }
    rc = t->o.cmd == CMD_TRAIN     ? cmd_train(t)
         : t->o.cmd == CMD_EVAL    ? cmd_eval(t)
         : t->o.cmd == CMD_SAMPLE  ? cmd_sample(t)
         : t->o.cmd == CMD_PREDICT ? cmd_predict(t)
         : t->o.cmd == CMD_MERGE   ? cmd_merge(t)
                                   : cmd_info(t);
  }
  if (rc == 1 && t->nranks > 1)
    fprintf(stderr, "error: rank %d of %d: %s\n", t->rank, t->nranks, t->err);
  else if (rc == 1)
    fprintf(stderr, "error: %s\n", t->err);
  fflush(stdout);
  if (t->nranks > 1 && rc != 0 && rc != 130) dp_abort(rc);  // the other ranks may wait in a sum: end them all
  if (t->log) fclose(t->log);
  free(t->log_path), free(t->mcols), free(t->perm), free(t->batch), free(t->base);
  for (int k = 0; k < NPROG; k++) free(t->ar[k].mem);
  data_free(&t->val), data_free(&t->train), data_free(&t->test);
  bpcrt_pool_free(t->pool);
  desc_free(&t->d);
  free(t);
  dp_finalize();
  return rc;
}
