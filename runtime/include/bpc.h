// bpc.h — the runtime ABI: what generated code, the runtime (libbpcrt) and
// the compiler's interpreter share. Everything random in bpc comes from the
// counter-based generator here, so the interpreter, JIT code and standalone
// trainers draw the same numbers for the same (seed, stream, counter).
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// splitmix64's finalizer: a bijective 64-bit mix.
static inline uint64_t bpcrt_mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

// The random word number `ctr` of stream `stream` under `seed`. Stateless:
// any element can be drawn in any order, by any thread.
static inline uint64_t bpcrt_rand64(uint64_t seed, uint64_t stream, uint64_t ctr) {
  uint64_t key = bpcrt_mix64(seed ^ bpcrt_mix64(stream + 0x9e3779b97f4a7c15ULL));
  return bpcrt_mix64(key + ctr * 0x9e3779b97f4a7c15ULL);
}

// Uniform in [0, 1) with 24 bits: exactly representable in f32 and f64.
static inline double bpcrt_uniform24(uint64_t seed, uint64_t stream, uint64_t ctr) {
  return (double)(bpcrt_rand64(seed, stream, ctr) >> 40) * (1.0 / 16777216.0);
}

// Dropout: element i of a node (salt) at a training step is kept when its
// 24-bit draw, a 32-bit hash (lowbias32) of i under the step's key, is at
// least ceil(p * 2^24), i.e. draw / 2^24 >= p. 32-bit multiplies, so the
// kernel's loop runs in vector lanes (a 64-bit mix per element does not on
// AVX2); the key mixes seed, salt and step, and i's high word.
static inline uint32_t bpcrt_hash32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

static inline uint64_t bpcrt_dropout_key(uint64_t seed, uint64_t salt, uint64_t step) {
  return bpcrt_rand64(seed, salt ^ (step * 0xd1b54a32d192ed03ULL), 0);
}

// The key of the 2^32 elements sharing i's high word.
static inline uint32_t bpcrt_dropout_key32(uint64_t key, uint64_t i) {
  return (uint32_t)key ^ bpcrt_hash32((uint32_t)(i >> 32) ^ (uint32_t)(key >> 32));
}

static inline uint32_t bpcrt_dropout_draw(uint32_t key32, uint64_t i) { return bpcrt_hash32((uint32_t)i ^ key32) >> 8; }

// ceil(p * 2^24) for p in [0, 1]: p = 1 drops every element.
static inline uint32_t bpcrt_dropout_threshold(double p) {
  double t = p * 16777216.0;
  uint32_t u = (uint32_t)t;
  return (double)u < t ? u + 1 : u;
}

// Param initializers of SPEC 1.8 (same numbering as the compiler's InitKind).
enum {
  BPCRT_INIT_ZEROS,
  BPCRT_INIT_ONES,
  BPCRT_INIT_CONSTANT,
  BPCRT_INIT_NORMAL,
  BPCRT_INIT_UNIFORM,
  BPCRT_INIT_XAVIER_UNIFORM,
  BPCRT_INIT_XAVIER_NORMAL,
  BPCRT_INIT_HE_UNIFORM,
  BPCRT_INIT_HE_NORMAL,
};

// Fills out[0..n) for one param. `stream` is a hash of the param's name, so
// adding a param never changes the values of the others. Values are computed
// in double; an f32 trainer rounds them, exactly as the interpreter does.
void bpcrt_init_fill(int kind, double a, double b, int64_t fan_in, int64_t fan_out, uint64_t seed, uint64_t stream,
                     int64_t n, double *out);
// Elements [first, first + n) of the same fill (each is a function of its index).
void bpcrt_init_fill_at(int kind, double a, double b, int64_t fan_in, int64_t fan_out, uint64_t seed, uint64_t stream,
                        int64_t first, int64_t n, double *out);

// ---- safetensors.c: tensor files (SPEC 3) -------------------------------
// A file is an 8-byte little-endian header length N, N bytes of JSON header,
// then the data buffer. bpc computes in F32, F64 and I32 and also reads F16,
// BF16 and the integer dtypes of other frameworks' checkpoints. Reading
// validates everything (a hostile file gives an error, never a crash or an
// over-read); writing is atomic (temp file, fsync, rename, fsync folder).
// Errors are "PATH: message" in err (truncated to errlen; err may be NULL).

// F32, F64 and I32 are what bpc computes in. The others are read so that
// other frameworks' checkpoints load (SPEC 6.3): F16 and BF16 convert to a
// float dtype, the integer ones are carried as bytes (an ignored
// `position_ids`).
typedef enum {
  BPCRT_F32,
  BPCRT_F64,
  BPCRT_I32,
  BPCRT_F16,
  BPCRT_BF16,
  BPCRT_I64,
  BPCRT_I16,
  BPCRT_I8,
  BPCRT_U8,
  BPCRT_BOOL,
} bpcrt_dtype;

#define BPCRT_MAX_RANK 8

typedef struct {
  char *name;
  bpcrt_dtype dtype;
  int rank;                       // 0 for a scalar
  int64_t shape[BPCRT_MAX_RANK];
  void *data;                     // little-endian; never NULL (even when nbytes is 0)
  size_t nbytes;                  // numel * element size
  int borrowed;                   // data belongs to the caller (bpcrt_st_add_ref), not freed
} bpcrt_tensor;

// A set of named tensors plus string metadata. `{0}` is an empty set; every
// string and buffer is owned by the set and released by bpcrt_st_free.
typedef struct {
  int n, cap;
  bpcrt_tensor *t;                // in file order (read) or insertion order (write)
  int nmeta, metacap;
  char **meta_keys, **meta_vals;
} bpcrt_tensors;

size_t bpcrt_dtype_size(bpcrt_dtype dt);        // 4, 8, 4, 2, 2, 8, 2, 1, 1, 1
const char *bpcrt_dtype_name(bpcrt_dtype dt);   // "F32", "F64", "I32", "F16", ...
int bpcrt_dtype_is_float(bpcrt_dtype dt);       // F32, F64, F16, BF16
// Whether a file tensor of dtype `file` loads into a model tensor of dtype
// `model`: I32 into I32 only, any float dtype into F32 or F64.
int bpcrt_dtype_loads(bpcrt_dtype file, bpcrt_dtype model);
// What a model tensor of dtype `model` accepts, for messages.
#define BPCRT_LOADS_WHAT(model) ((model) == BPCRT_I32 ? "I32" : "F32, F64, F16 or BF16")
int64_t bpcrt_numel(const bpcrt_tensor *t);     // product of the shape (1 for rank 0)

// Reads PATH into *out (which need not be initialized). 0 on success; -1 with
// err filled and *out empty on any error.
int bpcrt_st_read(const char *path, bpcrt_tensors *out, char *err, size_t errlen);
// Writes the set atomically: tensors in the order given, header padded with
// spaces so the data starts 8-byte aligned. On error (err filled, -1) any
// existing PATH is untouched and no temp file is left behind.
int bpcrt_st_write(const char *path, const bpcrt_tensors *in, char *err, size_t errlen);
void bpcrt_st_free(bpcrt_tensors *t);

// The tensor called `name`, or NULL.
const bpcrt_tensor *bpcrt_st_find(const bpcrt_tensors *t, const char *name);
// Appends a tensor, copying `data` (numel * element size bytes; NULL gives
// zeros). Returns the new tensor (valid until the next add), or NULL when the
// name is taken, rank is outside 0..8 or a dim is negative.
bpcrt_tensor *bpcrt_st_add(bpcrt_tensors *t, const char *name, bpcrt_dtype dtype, int rank, const int64_t *shape,
                           const void *data);
// Like bpcrt_st_add without the copy: the set points at `data`, which must
// stay valid and unchanged until the set is written and freed (checkpoints of
// a 124M-param model would otherwise double the trainer's peak memory).
bpcrt_tensor *bpcrt_st_add_ref(bpcrt_tensors *t, const char *name, bpcrt_dtype dtype, int rank, const int64_t *shape,
                               const void *data);
// Sets (or replaces) a metadata key; the value of `key`, or NULL.
void bpcrt_st_set_meta(bpcrt_tensors *t, const char *key, const char *val);
const char *bpcrt_st_meta(const bpcrt_tensors *t, const char *key);

// A float tensor's values converted to the compiled dtype, whatever its stored
// F32/F64/F16/BF16 dtype; `out` holds numel elements. -1 (nothing written) for
// an integer dtype.
int bpcrt_st_to_f64(const bpcrt_tensor *t, double *out);
int bpcrt_st_to_f32(const bpcrt_tensor *t, float *out);

// ---- threadpool.c: the thread pool every parallel kernel goes through ----
// A pool of nthreads threads: the caller is thread 0, and nthreads - 1
// workers wait for work (spinning briefly, then asleep in the kernel).
// bpcrt_parallel_for splits [0, n) into contiguous chunks; how many, and
// which elements each holds, is a pure function of (n, grain, nthreads)
// (bpcrt_chunks, bpcrt_chunk), and chunk k always runs on thread k, so a
// kernel that indexes per-thread scratch by `thread` sees the same layout
// on every run. Kernels are written so that any split gives the same bits.
//
// One caller thread at a time: a pool is not meant to be driven by two
// threads at once. If it happens anyway, the call that finds the pool busy
// runs its whole range inline as thread 0 (not parallel, and sharing thread
// 0's id, hence its scratch, with the running call: don't rely on it).
// A parallel_for from inside a task (on any pool, or NULL) runs inline on
// the calling thread, with that thread's id: fn(ctx, 0, n, thread).

typedef struct bpcrt_pool bpcrt_pool;

// A task: do elements [begin, end) as thread `thread` (0 <= thread < nthreads).
typedef void (*bpcrt_task)(void *ctx, int64_t begin, int64_t end, int thread);

// nthreads counts the caller; <= 0 means the CPUs this process may run on
// (sched_getaffinity), capped at BPCRT_MAX_THREADS. More threads than CPUs
// works (workers then sleep instead of spinning) but rarely pays off. If the
// system refuses a thread, the pool keeps those it got: bpcrt_pool_threads
// tells the truth. Never returns NULL.
#define BPCRT_MAX_THREADS 1024
bpcrt_pool *bpcrt_pool_new(int nthreads);
// Joins the workers and frees the pool; not while a parallel_for runs. NULL is a no-op.
void bpcrt_pool_free(bpcrt_pool *p);
// Total threads including the caller; 1 for NULL.
int bpcrt_pool_threads(const bpcrt_pool *p);
// How long (ns) an idle worker, or the caller waiting for workers, spins
// before sleeping. Default 100000 (0 when nthreads exceeds the CPUs). Spinning
// keeps back-to-back calls well under a microsecond; a sleeping worker costs
// a futex wake-up (5-40 us on a VM) on the next call. Call only between
// parallel_fors.
void bpcrt_pool_set_spin(bpcrt_pool *p, int64_t ns);

// Runs fn over [0, n) split into bpcrt_chunks(n, grain, threads) chunks;
// chunk k on thread k (thread 0 = the caller, which runs chunk 0 itself).
// Returns when every chunk is done; the tasks' writes are then visible to
// the caller. n <= 0 calls nothing. A single chunk (n < 2 * grain, one
// thread, p == NULL, nested or busy pool) runs inline: fn(ctx, 0, n, t),
// t = the calling task's thread inside a task, else 0.
void bpcrt_parallel_for(bpcrt_pool *p, bpcrt_task fn, void *ctx, int64_t n, int64_t grain);

// The partition: min(nthreads, n / grain) chunks (at least 1; grain < 1
// counts as 1), so each holds >= grain elements. n <= 0 gives 0 chunks.
int bpcrt_chunks(int64_t n, int64_t grain, int nthreads);
// Chunk k of nchunks over [0, n): sizes differ by at most one, larger first.
void bpcrt_chunk(int64_t n, int nchunks, int k, int64_t *begin, int64_t *end);

// The profiler hook generated entry points call when it is set (NULL: not
// profiling, one load and branch per kernel): hook(program, -1) when an
// entry starts, hook(program, k) when kernel k of that program (its index in
// the description's "kernels") has finished. Set it between steps only.
typedef void (*bpcrt_profile_fn)(int program, int kernel);
extern bpcrt_profile_fn bpcrt_profile;

// ---- trainer.c: the trainer every compiled model links (SPEC 2.2) --------
// The interface with generated code is docs/ABI.md: the model description
// (JSON), one arena per program at fixed offsets, and these entry points.

// What each entry point gets. `scratch` is `threads * scratch` bytes right
// after the arena; `step` is the dropout counter (update * grad_accum + micro).
typedef struct {
  char *arena;
  char *scratch;
  bpcrt_pool *pool;
  uint64_t seed;
  uint64_t step;
} bpcrt_ctx;

typedef struct {
  void (*train_step)(bpcrt_ctx *);      // forward + backward: loss, metrics, grads
  void (*train_update)(bpcrt_ctx *);    // optimizer on the grads
  void (*eval_forward)(bpcrt_ctx *);    // eval-mode forward: loss, metrics, outputs
  void (*sample_forward)(bpcrt_ctx *);  // batch-1 logits; NULL without `generate:`
  void (*predict_forward)(bpcrt_ctx *); // eval-mode outputs alone (SPEC 6.2); may be NULL
  void (*decode_forward)(bpcrt_ctx *);  // cached sampling: one new position; may be NULL
  // What the code was compiled for, "CPU: feature feature ..." (LLVM's names
  // of the enabled x86 features), checked against this CPU before anything
  // runs; NULL: not checked (the JIT compiles for the CPU it runs on).
  const char *target;
} bpcrt_entries;

// 1 when this CPU has every feature of `target` (bpcrt_entries.target) that
// the runtime can check; if not, writes "this trainer was compiled for CPU
// and needs F, G, which this CPU lacks: ..." into err. cpu.c.
int bpcrt_cpu_check(const char *target, char *err, size_t errlen);  // 1: ok

// The trainer's whole command line (train, eval, sample, info). Returns the
// process exit status: 0, 1 (bad input, with a message on stderr; nothing
// written), 2 (usage), 130 (SIGINT, after saving a checkpoint). Never exits.
int bpcrt_main(const char *model_json, const bpcrt_entries *entries, int argc, char **argv);

// ---- wordpiece.c: BERT's WordPiece tokenizer (SPEC 6.4) -----------------
// Tokenizes text exactly as Hugging Face's BertTokenizer does for the same
// vocab.txt (its tokenizers-library pipeline): clean control characters,
// isolate CJK ideographs, (uncased) NFD + drop nonspacing marks + lowercase,
// split on whitespace and punctuation, WordPiece greedy longest-match-first
// with "##" continuations ([UNK] for a word with no split or over 100 code
// points). [PAD], [UNK], [CLS], [SEP] and [MASK] written verbatim in the
// text are those tokens, as in HF. Errors are "PATH:LINE: error: message"
// ("PATH: error: message" when no line applies) in err.

typedef struct bpcrt_wordpiece bpcrt_wordpiece;

// Loads a vocab.txt: one token per line ("\n" or "\r\n"), id = line number
// - 1. NULL with err filled for a missing file, an empty vocab, invalid
// UTF-8, a duplicate token or a missing [CLS], [SEP], [PAD] or [UNK].
bpcrt_wordpiece *bpcrt_wp_load(const char *path, char *err, size_t errlen);
void bpcrt_wp_free(bpcrt_wordpiece *wp);  // NULL is a no-op
int bpcrt_wp_size(const bpcrt_wordpiece *wp);
// The id of a token (its bytes, n of them), or -1.
int32_t bpcrt_wp_id(const bpcrt_wordpiece *wp, const char *tok, size_t n);
// Token `id`'s bytes (not NUL-terminated; *len gets their count), or NULL.
const char *bpcrt_wp_token(const bpcrt_wordpiece *wp, int32_t id, size_t *len);
// Offset of the first byte of text[0..n) that is not valid UTF-8 (overlong
// forms, surrogates and code points above U+10FFFF included), or n.
size_t bpcrt_utf8_check(const char *text, size_t n);
// Tokenizes one line (len bytes, without its newline) into ids[0..maxlen):
// [CLS], the tokens truncated to maxlen - 2, [SEP], then [PAD]s; mask (may be
// NULL) gets 1 for each token and 0 for padding. Returns the token count
// (>= 2), or -1 for maxlen < 2 or invalid UTF-8 (then *bad, if not NULL, is
// the offset of the bad byte) with ids untouched. `cased`: no lowercasing
// and no accent stripping (do_lower_case=False).
int bpcrt_wp_encode(const bpcrt_wordpiece *wp, const char *text, size_t len, int cased, int maxlen, int32_t *ids,
                    float *mask, size_t *bad);

// FNV-1a 64 of a string: the stream of a param's init (and of other named
// random streams). The compiler uses the same function.
static inline uint64_t bpcrt_fnv1a64(const char *s) {
  uint64_t h = 14695981039346656037ULL;
  for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ULL;
  return h;
}

#ifdef __cplusplus
}
#endif
