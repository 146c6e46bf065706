// fuzz_diff.c — the differential fuzzer: random models made from the op
// registry (random ops and shapes, broadcasting, functions and repeat, params
// and inputs, one scalar loss), each evaluated as `bpc grad` does in f64, by
// generated native code and by the reference interpreter; the losses and
// every gradient must agree within 1e-9 relative. Model k of a run is a pure
// function of its seed, so a failure replays with `fuzz_diff --seed S`. On a
// mismatch (or a model bpc rejects or crashes on) the model is written to
// fuzz_diff-S.yaml, the seed printed, and the exit status is 1.
//
// Ops come from the registry where their form allows it: every public
// elementwise op of one tensor (`x:t`, so a new one such as erf is fuzzed
// without a line here), of two (`a:t b:t`), the comparisons, and every
// reduction; the rest (shape, linear algebra, indexing, normalization,
// attention, convolution, losses) have a generator each below. Values are
// kept finite by wrapping the operands of log, sqrt, rsqrt, div and pow; a
// model whose interpreter loss or gradients are not finite is skipped.
//
// usage: fuzz_diff [--first S] [--count N] [--seconds T] [--out DIR]
//        fuzz_diff --seed S [--print]      one model (--print: its YAML)
// models --first S .. S+N-1, stopping after T seconds (default 1, 200, 60).
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bpcc.h"

// ------------------------------------------------------------ random numbers
typedef struct {
  uint64_t s;
} Rng;

static uint64_t next(Rng *r) {  // splitmix64
  uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static int below(Rng *r, int n) { return (int)(next(r) % (uint64_t)n); }
static bool chance(Rng *r, int percent) { return below(r, 100) < percent; }

// ------------------------------------------------------------ shapes, values
typedef struct {
  int r;
  int d[4];
} Sh;

static int64_t numel(Sh s) {
  int64_t n = 1;
  for (int i = 0; i < s.r; i++) n *= s.d[i];
  return n;
}

static bool same(Sh a, Sh b) { return a.r == b.r && !memcmp(a.d, b.d, sizeof(int) * (size_t)a.r); }

typedef struct {
  char name[16];
  Sh s;
  bool used;
} Val;

#define MAXV 64
typedef struct {
  Rng rng;
  FILE *inputs, *params, *funcs, *graph;
  char *ibuf, *pbuf, *fbuf, *gbuf;
  size_t ilen, plen, flen, glen;
  Val v[MAXV];
  char ids[16][16];  // the i32 inputs (not values of the pool)
  int nv, np, ni, nf, nids, nqkv;
  int dims[3];  // B, T, C: the first values' shapes are written with them
} Gen;

// A shape as YAML, with the model's dim names where a size is one of them
// and `named` is set.
static void put_shape(FILE *f, Sh s, const Gen *g, bool named) {
  static const char *names[3] = {"B", "T", "C"};
  fputc('[', f);
  for (int i = 0; i < s.r; i++) {
    int k = -1;
    for (int j = 0; named && j < 3 && k < 0; j++)
      if (g->dims[j] == s.d[i]) k = j;
    if (k >= 0)
      fprintf(f, "%s%s", i ? ", " : "", names[k]);
    else
      fprintf(f, "%s%d", i ? ", " : "", s.d[i]);
  }
  fputc(']', f);
}

static int add_val(Gen *g, const char *name, Sh s) {
  BPC_ASSERT(g->nv < MAXV);
  Val *v = &g->v[g->nv];
  snprintf(v->name, sizeof v->name, "%s", name);
  v->s = s;
  v->used = false;
  return g->nv++;
}

static const char *new_param(Gen *g, Sh s) {
  char name[16];
  snprintf(name, sizeof name, "p%d", g->np++);
  fprintf(g->params, "  %s: {shape: ", name);
  put_shape(g->params, s, g, chance(&g->rng, 50));
  fprintf(g->params, ", init: %s}\n", chance(&g->rng, 70) ? "normal(1)" : "\"uniform(-2, 2)\"");
  return g->v[add_val(g, name, s)].name;
}

// A float input, or an i32 one with values in [0, 3) (fill_inputs).
static const char *new_input(Gen *g, Sh s, bool i32) {
  char name[16];
  snprintf(name, sizeof name, "%s%d", i32 ? "ids" : "x", g->ni++);
  fprintf(g->inputs, "  %s: {shape: ", name);
  put_shape(g->inputs, s, g, true);
  fprintf(g->inputs, "%s}\n", i32 ? ", dtype: i32" : "");
  if (i32) {
    char *keep = g->ids[g->nids++ % 16];
    snprintf(keep, 16, "%s", name);
    return keep;
  }
  return g->v[add_val(g, name, s)].name;
}

// A size: mostly 1..5, sometimes one around the vector widths and GEMM
// tiles (4 and 8 doubles, 6 x 16 and 12 x 32 tiles), so loops have bodies
// and tails.
static int rand_dim(Rng *r) {
  static const int big[] = {7, 8, 9, 12, 16, 17, 33};
  return chance(r, 12) ? big[below(r, 7)] : 1 + below(r, 5);
}

static Sh rand_shape(Rng *r, int minr, int maxr) {
  Sh s = {.r = minr + below(r, maxr - minr + 1)};
  for (int i = 0; i < s.r; i++) s.d[i] = rand_dim(r);
  return s;
}

// A value of the pool, the recent ones more often; -1 if none fits the ranks.
static int pick(Gen *g, int minr, int maxr) {
  int cand[MAXV], n = 0;
  for (int i = 0; i < g->nv; i++)
    if (g->v[i].s.r >= minr && g->v[i].s.r <= maxr && numel(g->v[i].s) <= 512) cand[n++] = i;
  if (!n) return -1;
  int k = chance(&g->rng, 60) ? n - 1 - below(&g->rng, n < 3 ? n : 3) : below(&g->rng, n);
  g->v[cand[k]].used = true;
  return cand[k];
}

// An operand that broadcasts against shape s (NumPy rules): leading axes
// dropped and sizes set to 1 at random; a value of the pool with that
// shape, else a new param.
static const char *broadcast_operand(Gen *g, Sh s) {
  Sh b = {0};
  int drop = below(&g->rng, s.r + 1);
  if (chance(&g->rng, 40)) drop = 0;
  for (int i = drop; i < s.r; i++) b.d[b.r++] = chance(&g->rng, 25) ? 1 : s.d[i];
  for (int i = 0; i < g->nv; i++)
    if (same(g->v[i].s, b) && chance(&g->rng, 70)) {
      g->v[i].used = true;
      return g->v[i].name;
    }
  if (b.r == 0 && chance(&g->rng, 50)) return chance(&g->rng, 50) ? "0.75" : "C";  // a literal, a dim as a scalar
  return new_param(g, b);
}

// ------------------------------------------------------------ generators
// Each appends one graph entry `vK: EXPR` built on the pool and returns
// false when the pool has no value it can take.
typedef bool (*GenFn)(Gen *g, char *e, size_t n, Sh *out);

static const char *guarded(Op op) {  // operands kept where the op is finite
  switch (op) {
  case OP_LOG:
  case OP_SQRT:
  case OP_RSQRT: return "abs(%s) + 0.5";
  case OP_EXP: return "tanh(%s) * 2";
  default: return "%s";
  }
}

static Op unary_ops[OP_COUNT], binary_ops[OP_COUNT], compare_ops[OP_COUNT], reduce_ops[OP_COUNT];
static int nunary, nbinary, ncompare, nreduce;

// The registry's ops whose form a generic generator takes.
static void scan_registry(void) {
  for (int op = 0; op < OP_COUNT; op++) {
    const OpInfo *o = op_info((Op)op);
    if (o->flags & OPF_INTERNAL) continue;
    bool ew = o->flags & OPF_EW, nograd = o->flags & OPF_NOGRAD;
    if (ew && !nograd && !strcmp(o->schema, "x:t")) unary_ops[nunary++] = (Op)op;
    if (ew && !nograd && !strcmp(o->schema, "a:t b:t")) binary_ops[nbinary++] = (Op)op;
    if (ew && nograd && !strcmp(o->schema, "a:t b:t")) compare_ops[ncompare++] = (Op)op;
    if (o->lower == LK_REDUCE) reduce_ops[nreduce++] = (Op)op;
  }
}

static bool gen_unary(Gen *g, char *e, size_t n, Sh *out) {
  int x = pick(g, 0, 4);
  if (x < 0) return false;
  Op op = unary_ops[below(&g->rng, nunary)];
  char arg[64];
  snprintf(arg, sizeof arg, guarded(op), g->v[x].name);
  snprintf(e, n, "%s(%s)", op_name(op), arg);
  *out = g->v[x].s;
  return true;
}

// Unary ops with attributes, and the operators' spellings.
static bool gen_unary_attr(Gen *g, char *e, size_t n, Sh *out) {
  int x = pick(g, 0, 4);
  if (x < 0) return false;
  const char *a = g->v[x].name;
  static const double pw[] = {2, 3, 0.5, -1.5, 1.25};
  switch (below(&g->rng, 8)) {
  case 0: snprintf(e, n, "pow(abs(%s) + 0.5, %g)", a, pw[below(&g->rng, 5)]); break;
  case 1: snprintf(e, n, "%s ** 2 - -%s", a, a); break;
  case 2: snprintf(e, n, "leaky_relu(%s, alpha=%g)", a, 0.05 * (1 + below(&g->rng, 6))); break;
  case 3: snprintf(e, n, "gelu(%s, approximate=%s)", a, chance(&g->rng, 50) ? "true" : "false"); break;
  case 4: snprintf(e, n, "dropout(%s, %g)", a, 0.1 * (1 + below(&g->rng, 5))); break;
  case 5: snprintf(e, n, "stop_gradient(%s) * %s", a, a); break;
  case 6:
    snprintf(e, n, "hardtanh(%s, %g, max_val=%g)", a, -0.25 * (1 + below(&g->rng, 4)), 0.25 * (1 + below(&g->rng, 4)));
    break;
  default: snprintf(e, n, "-%s / 3 + 1", a); break;
  }
  *out = g->v[x].s;
  return true;
}

static bool gen_binary(Gen *g, char *e, size_t n, Sh *out) {
  int x = pick(g, 0, 4);
  if (x < 0) return false;
  Op op = binary_ops[below(&g->rng, nbinary)];
  const char *b = broadcast_operand(g, g->v[x].s), *a = g->v[x].name;
  char bb[64];
  snprintf(bb, sizeof bb, op == OP_DIV ? "(abs(%s) + 0.5)" : "%s", b);
  static const char *sym[] = {[OP_ADD] = "+", [OP_SUB] = "-", [OP_MUL] = "*", [OP_DIV] = "/"};
  bool swap = op != OP_DIV && chance(&g->rng, 30);
  if (op <= OP_DIV && sym[op] && chance(&g->rng, 70))
    snprintf(e, n, "%s %s %s", swap ? bb : a, sym[op], swap ? a : bb);
  else
    snprintf(e, n, "%s(%s, %s)", op_name(op), swap ? bb : a, swap ? a : bb);
  *out = g->v[x].s;
  return true;
}

static bool gen_where(Gen *g, char *e, size_t n, Sh *out) {
  int x = pick(g, 0, 4);
  if (x < 0) return false;
  Op cmp = compare_ops[below(&g->rng, ncompare)];
  const char *a = g->v[x].name, *b = broadcast_operand(g, g->v[x].s), *c = broadcast_operand(g, g->v[x].s);
  if (chance(&g->rng, 60))
    snprintf(e, n, "where(%s(%s, %s), %s, %s * 2)", op_name(cmp), a, b, a, c);
  else
    snprintf(e, n, "%s(%s, %s) * %s + %s", op_name(cmp), b, a, a, c);
  *out = g->v[x].s;
  return true;
}

static bool gen_reduce(Gen *g, char *e, size_t n, Sh *out) {
  int x = pick(g, 1, 4);
  if (x < 0) return false;
  Sh s = g->v[x].s;
  Op op = reduce_ops[below(&g->rng, nreduce)];
  bool keep = chance(&g->rng, 30), red[4] = {0};
  char ax[64] = "";
  if (chance(&g->rng, 25)) {  // all axes
    for (int i = 0; i < s.r; i++) red[i] = true;
  } else {
    int k = 1 + below(&g->rng, s.r), o = snprintf(ax, sizeof ax, ", axis=%s", k > 1 ? "[" : "");
    for (int j = 0, first = 1; j < s.r; j++) {
      int a = (j + k) % s.r;  // a rotation: axes need not be ascending
      if (j >= k) break;
      red[a] = true;
      o += snprintf(ax + o, sizeof ax - (size_t)o, "%s%d", first ? "" : ", ", chance(&g->rng, 30) ? a - s.r : a);
      first = 0;
    }
    if (k > 1) snprintf(ax + o, sizeof ax - (size_t)o, "]");
  }
  Sh r = {0};
  for (int i = 0; i < s.r; i++)
    if (!red[i])
      r.d[r.r++] = s.d[i];
    else if (keep)
      r.d[r.r++] = 1;
  snprintf(e, n, "%s(%s%s%s)", op_name(op), g->v[x].name, ax, keep ? ", keepdims=true" : "");
  *out = r;
  return true;
}

static bool gen_shape(Gen *g, char *e, size_t n, Sh *out) {
  int x = pick(g, 1, 3);
  if (x < 0) return false;
  Sh s = g->v[x].s, r = s;
  const char *a = g->v[x].name;
  switch (below(&g->rng, 5)) {
  case 0:  // reshape: the first two axes merged (the rest flat), or one row
    r.r = 2;
    r.d[0] = s.r >= 2 && chance(&g->rng, 60) ? s.d[0] * s.d[1] : 1;
    r.d[1] = (int)(numel(s) / r.d[0]);
    if (chance(&g->rng, 50))
      snprintf(e, n, "reshape(%s, [%d, -1])", a, r.d[0]);
    else
      snprintf(e, n, "reshape(%s, [-1, %d])", a, r.d[1]);
    break;
  case 1:  // transpose: the last two axes, or a permutation
    if (s.r < 2) return false;
    if (s.r == 3 && chance(&g->rng, 50)) {
      snprintf(e, n, "transpose(%s, [2, 0, 1])", a);
      r.d[0] = s.d[2], r.d[1] = s.d[0], r.d[2] = s.d[1];
    } else {
      snprintf(e, n, "transpose(%s)", a);
      r.d[s.r - 1] = s.d[s.r - 2], r.d[s.r - 2] = s.d[s.r - 1];
    }
    break;
  case 2: {  // broadcast_to a new leading axis
    if (s.r >= 3) return false;
    r.r = s.r + 1;
    r.d[0] = 2;
    for (int i = 0; i < s.r; i++) r.d[i + 1] = s.d[i];
    char sh[64];
    FILE *f = fmemopen(sh, sizeof sh, "w");
    put_shape(f, r, g, false);
    fclose(f);
    snprintf(e, n, "broadcast_to(%s, %s)", a, sh);
    break;
  }
  case 3: {  // concat along an axis with a new param or the value itself
    int ax = below(&g->rng, s.r);
    Sh o = s;
    o.d[ax] = 1 + below(&g->rng, 3);
    if (chance(&g->rng, 30)) o = s;
    const char *b = same(o, s) ? a : new_param(g, o);
    r.d[ax] = s.d[ax] + o.d[ax];
    snprintf(e, n, "concat(%s, %s, axis=%d)", a, b, chance(&g->rng, 50) ? ax : ax - s.r);
    break;
  }
  default: {  // slice, bounds possibly negative
    int ax = below(&g->rng, s.r), len = s.d[ax];
    if (len < 2) return false;
    int start = below(&g->rng, len - 1), stop = start + 1 + below(&g->rng, len - start);
    r.d[ax] = stop - start;
    snprintf(e, n, "slice(%s, %d, %d, axis=%d)", a, chance(&g->rng, 40) ? start - len : start, stop, ax);
    break;
  }
  }
  *out = r;
  return true;
}

// NumPy broadcasting of two shapes; false if they do not broadcast.
static bool bcast(Sh a, Sh b, Sh *out) {
  Sh r = {.r = a.r > b.r ? a.r : b.r};
  for (int i = 0; i < r.r; i++) {
    int da = i < r.r - a.r ? 1 : a.d[i - (r.r - a.r)], db = i < r.r - b.r ? 1 : b.d[i - (r.r - b.r)];
    if (da != db && da != 1 && db != 1) return false;
    r.d[i] = da > db ? da : db;
  }
  *out = r;
  return true;
}

// matmul (plain, transposed operands, batched and broadcast over leading
// axes), `@` and linear, against a new weight.
static bool gen_matmul(Gen *g, char *e, size_t n, Sh *out) {
  int x = pick(g, 1, 3);
  if (x < 0) return false;
  Sh s = g->v[x].s;
  const char *a = g->v[x].name;
  int m = rand_dim(&g->rng);
  if (s.r == 1) {  // a vector: linear(x, w, b) on [1, k]
    int k = s.d[0];
    const char *pw = new_param(g, (Sh){2, {k, m}}), *pb = new_param(g, (Sh){1, {m}});
    snprintf(e, n, "linear(reshape(%s, [1, %d]), %s, %s)", a, k, pw, pb);
    *out = (Sh){2, {1, m}};
    return true;
  }
  bool ta = chance(&g->rng, 20), tb = chance(&g->rng, 30);
  int rows = s.d[s.r - (ta ? 1 : 2)], k = s.d[s.r - (ta ? 2 : 1)];
  Sh abatch = {s.r - 2, {s.d[0], s.d[1]}}, wbatch = {0};
  if (chance(&g->rng, 25))
    wbatch = (Sh){1, {abatch.r && chance(&g->rng, 70) ? abatch.d[abatch.r - 1] : 1}};
  else if (chance(&g->rng, 10))
    wbatch = (Sh){2, {2, 1}};
  Sh rb;
  if (!bcast(abatch, wbatch, &rb)) return false;
  Sh w = wbatch;
  w.d[w.r++] = tb ? m : k;
  w.d[w.r++] = tb ? k : m;
  const char *pw = new_param(g, w);
  *out = rb;
  out->d[out->r++] = rows;
  out->d[out->r++] = m;
  if (ta || tb)
    snprintf(e, n, "matmul(%s, %s%s%s)", a, pw, ta ? ", transpose_a=true" : "", tb ? ", transpose_b=true" : "");
  else if (w.r == 2 && chance(&g->rng, 30))
    snprintf(e, n, "linear(%s, %s, %s)", a, pw, new_param(g, (Sh){1, {m}}));
  else
    snprintf(e, n, "%s @ %s", a, pw);
  return true;
}

// embedding, one_hot and argmax, on new i32 inputs.
static bool gen_index(Gen *g, char *e, size_t n, Sh *out) {
  Sh ids = rand_shape(&g->rng, 1, 2);
  int c = 1 + below(&g->rng, 4);
  switch (below(&g->rng, 3)) {
  case 0: {
    int rows = 3 + below(&g->rng, 2);
    const char *t = new_param(g, (Sh){2, {rows, c}});
    if (chance(&g->rng, 40)) {  // tied: the table is the output layer too
      snprintf(e, n, "embedding(%s, %s) @ transpose(%s)", new_input(g, ids, true), t, t);
      c = rows;
    } else
      snprintf(e, n, "embedding(%s, %s)", new_input(g, ids, true), t);
    break;
  }
  case 1: {
    c = 3 + below(&g->rng, 2);
    const char *w = new_param(g, (Sh){1, {c}});
    snprintf(e, n, "one_hot(%s, %d) * %s", new_input(g, ids, true), c, w);
    break;
  }
  default: {
    int x = pick(g, 1, 3);
    if (x < 0) return false;
    Sh s = g->v[x].s;
    ids = s;
    ids.r--;
    c = s.d[s.r - 1];
    snprintf(e, n, "one_hot(argmax(%s, axis=-1), %d) * %s + %s * arange(%d)", g->v[x].name, c, g->v[x].name,
             g->v[x].name, c);
    *out = s;
    return true;
  }
  }
  *out = ids;
  out->d[out->r++] = c;
  return true;
}

static bool gen_norm(Gen *g, char *e, size_t n, Sh *out) {
  int x = pick(g, 2, 4);
  if (x < 0) return false;
  Sh s = g->v[x].s;
  const char *a = g->v[x].name;
  Sh last = {1, {s.d[s.r - 1]}};
  int ax = chance(&g->rng, 50) ? -1 : below(&g->rng, s.r);
  switch (below(&g->rng, 5)) {
  case 0:
    snprintf(e, n, "layer_norm(%s, %s, %s)", a, new_param(g, last), chance(&g->rng, 50) ? new_param(g, last) : "0");
    break;
  case 1: snprintf(e, n, "rms_norm(%s, %s, eps=0.01)", a, new_param(g, last)); break;
  case 2: snprintf(e, n, "batch_norm(%s, %s, %s)", a, new_param(g, last), new_param(g, last)); break;
  case 3: snprintf(e, n, "softmax(%s, axis=%d)", a, ax); break;
  default: snprintf(e, n, "log_softmax(%s, axis=%d)", a, ax); break;
  }
  *out = s;
  return true;
}

// attention on [B, T, C] values of the pool (q, k and v of the same shape,
// or the thirds of one packed param), causal_mask on square ones.
static bool gen_attention(Gen *g, char *e, size_t n, Sh *out) {
  int x = pick(g, 3, 3);
  if (x < 0) return false;
  Sh s = g->v[x].s;
  const char *q = g->v[x].name;
  if (s.d[1] == s.d[2] && chance(&g->rng, 30)) {
    snprintf(e, n, "softmax(causal_mask(%s))", q);
    *out = s;
    return true;
  }
  int C = s.d[2], heads = C % 2 == 0 && chance(&g->rng, 50) ? 2 : 1;
  bool causal = chance(&g->rng, 50);
  if (chance(&g->rng, 30)) {  // packed: qkv = x @ w in an entry of its own, sliced in order
    Sh w = {2, {C, 3 * C}};
    const char *pw = new_param(g, w);
    char qkv[16];
    snprintf(qkv, sizeof qkv, "qkv%d", g->nqkv++);
    fprintf(g->graph, "  %s: %s @ %s\n", qkv, q, pw);
    snprintf(e, n, "attention(slice(%s, 0, %d), slice(%s, %d, %d), slice(%s, %d, %d), heads=%d, causal=%s)", qkv, C,
             qkv, C, 2 * C, qkv, 2 * C, 3 * C, heads, causal ? "true" : "false");
  } else {
    Sh kv = s;
    if (!causal) kv.d[1] = 1 + below(&g->rng, 4);
    const char *k = new_param(g, kv), *v = chance(&g->rng, 50) ? k : new_param(g, kv);
    char mask[48] = "";  // a key-padding mask (SPEC 6.1): i32 0, 1, 2, so every third key is padding
    if (chance(&g->rng, 30)) snprintf(mask, sizeof mask, ", mask=%s", new_input(g, (Sh){2, {s.d[0], kv.d[1]}}, true));
    snprintf(e, n, "attention(%s, %s, %s, heads=%d, causal=%s%s)", q, k, v, heads, causal ? "true" : "false", mask);
  }
  *out = s;
  return true;
}

// conv2d and the pools on a new NHWC param or input.
static bool gen_conv(Gen *g, char *e, size_t n, Sh *out) {
  Sh x = {4, {1 + below(&g->rng, 2), 3 + below(&g->rng, 3), 3 + below(&g->rng, 3), 1 + below(&g->rng, 2)}};
  const char *a = chance(&g->rng, 50) ? new_param(g, x) : new_input(g, x, false);
  if (chance(&g->rng, 35)) {
    int size = 2, stride = chance(&g->rng, 50) ? 1 : 2;
    snprintf(e, n, "%s(%s, %d, stride=%d)", chance(&g->rng, 50) ? "max_pool2d" : "avg_pool2d", a, size, stride);
    *out = (Sh){4, {x.d[0], (x.d[1] - size) / stride + 1, (x.d[2] - size) / stride + 1, x.d[3]}};
    return true;
  }
  int kh = 1 + below(&g->rng, 3), kw = 1 + below(&g->rng, 3), co = 1 + below(&g->rng, 3);
  int stride = 1 + below(&g->rng, 2), pad = below(&g->rng, 2);
  const char *w = new_param(g, (Sh){4, {kh, kw, x.d[3], co}});
  snprintf(e, n, "conv2d(%s, %s, stride=%d, padding=%d)", a, w, stride, pad);
  *out = (Sh){4, {x.d[0], (x.d[1] + 2 * pad - kh) / stride + 1, (x.d[2] + 2 * pad - kw) / stride + 1, co}};
  return true;
}

// Losses and metrics (scalars), and zeros / ones / full.
static bool gen_loss(Gen *g, char *e, size_t n, Sh *out) {
  int x = pick(g, 1, 3);
  if (x < 0) return false;
  Sh s = g->v[x].s;
  const char *a = g->v[x].name;
  *out = (Sh){0};
  switch (below(&g->rng, 5)) {
  case 0: {
    if (s.d[s.r - 1] < 3 || s.r < 2) return false;
    Sh l = s;
    l.r--;
    snprintf(e, n, "cross_entropy(%s, %s)", a, new_input(g, l, true));
    break;
  }
  case 1: snprintf(e, n, "binary_cross_entropy(%s, sigmoid(%s))", a, broadcast_operand(g, s)); break;
  case 2: snprintf(e, n, "mse(%s, %s)", a, broadcast_operand(g, s)); break;
  case 3: {
    if (s.d[s.r - 1] < 3 || s.r < 2) return false;
    Sh l = s;
    l.r--;
    snprintf(e, n, "accuracy(%s, %s) + mean(%s)", a, new_input(g, l, true), a);
    break;
  }
  default: {
    char sh[64];
    FILE *f = fmemopen(sh, sizeof sh, "w");
    put_shape(f, s, g, true);
    fclose(f);
    if (chance(&g->rng, 50))
      snprintf(e, n, "ones(%s) * %s - %s / 2", sh, a, a);
    else
      snprintf(e, n, "%s * full(%s, 1.5) + zeros(%s)", a, sh, sh);
    *out = s;
    break;
  }
  }
  return true;
}

// A function of one argument (shape-preserving: elementwise ops with its own
// params broadcast along the last axis), called once or under repeat.
static bool gen_function(Gen *g, char *e, size_t n, Sh *out) {
  int x = pick(g, 1, 3);
  if (x < 0) return false;
  Sh s = g->v[x].s;
  int c = s.d[s.r - 1], id = g->nf++;
  fprintf(g->funcs, "  f%d:\n    args: [a]\n    params:\n      w: {shape: [%d], init: normal(1)}\n", id, c);
  bool mat = s.r >= 2 && chance(&g->rng, 50);
  if (mat) fprintf(g->funcs, "      m: {shape: [%d, %d], init: normal(0.5)}\n", c, c);
  Op u = unary_ops[below(&g->rng, nunary)];
  char arg[64];
  snprintf(arg, sizeof arg, guarded(u), mat ? "a @ m" : "a * w");
  fprintf(g->funcs, "    graph:\n      h: %s(%s)\n      o: a + h * w\n    return: o\n", op_name(u), arg);
  if (chance(&g->rng, 50))
    snprintf(e, n, "f%d(%s)", id, g->v[x].name);
  else
    snprintf(e, n, "repeat(f%d, %s, times=%d)", id, g->v[x].name, 1 + below(&g->rng, 3));
  *out = s;
  return true;
}

static const struct {
  GenFn fn;
  int weight;
} gens[] = {
    {gen_unary, 14}, {gen_unary_attr, 6}, {gen_binary, 14},  {gen_where, 4}, {gen_reduce, 8},
    {gen_shape, 10}, {gen_matmul, 8},     {gen_index, 4},    {gen_norm, 6},  {gen_attention, 4},
    {gen_conv, 3},   {gen_loss, 4},       {gen_function, 5},
};

// ------------------------------------------------------------ one model
// The YAML of model `seed` (free() it).
static char *make_model(uint64_t seed) {
  Gen g = {.rng = {seed * 0x2545f4914f6cdd1dull + 1}};
  g.inputs = open_memstream(&g.ibuf, &g.ilen);
  g.params = open_memstream(&g.pbuf, &g.plen);
  g.funcs = open_memstream(&g.fbuf, &g.flen);
  g.graph = open_memstream(&g.gbuf, &g.glen);
  for (int i = 0; i < 3; i++) g.dims[i] = 2 + below(&g.rng, 3);
  if (chance(&g.rng, 20)) g.dims[2] = 8 * (1 + below(&g.rng, 2)) + below(&g.rng, 2);  // C of 8, 9, 16, 17
  Sh first = {3, {g.dims[0], g.dims[1], g.dims[2]}};
  if (chance(&g.rng, 50))
    new_input(&g, first, false);
  else
    new_param(&g, first);
  new_param(&g, rand_shape(&g.rng, 1, 3));
  int total = 0;
  for (size_t i = 0; i < sizeof gens / sizeof *gens; i++) total += gens[i].weight;
  int entries = 2 + below(&g.rng, 12);
  for (int k = 0, tries = 0; k < entries && tries < 100 && g.nv < MAXV - 8; tries++) {
    int w = below(&g.rng, total), i = 0;
    while (w >= gens[i].weight) w -= gens[i++].weight;
    char expr[512];
    Sh s;
    if (!gens[i].fn(&g, expr, sizeof expr, &s) || numel(s) > 4096) continue;
    char name[16];
    snprintf(name, sizeof name, "v%d", k++);
    fprintf(g.graph, "  %s: %s\n", name, expr);
    add_val(&g, name, s);
  }
  // The loss: every value no entry read, folded so that each element's
  // gradient differs (sum alone is blind to softmax).
  fprintf(g.graph, "  loss:");
  for (int i = 0, first = 1; i < g.nv; i++)
    if (!g.v[i].used && g.v[i].name[0] == 'v') {
      fprintf(g.graph, "%s mean(sin(%s) + %s * %s * 0.25)", first ? "" : " +", g.v[i].name, g.v[i].name, g.v[i].name);
      first = 0;
    }
  fprintf(g.graph, "\n");
  fclose(g.inputs);
  fclose(g.params);
  fclose(g.funcs);
  fclose(g.graph);
  char *yaml;
  size_t len;
  FILE *f = open_memstream(&yaml, &len);
  fprintf(f, "bpc: 1\nname: fuzz%llu\ndims: {B: %d, T: %d, C: %d}\n", (unsigned long long)seed, g.dims[0], g.dims[1],
          g.dims[2]);
  if (g.ilen) fprintf(f, "inputs:\n%s", g.ibuf);
  fprintf(f, "params:\n%s", g.pbuf);
  if (g.flen) fprintf(f, "functions:\n%s", g.fbuf);
  fprintf(f, "graph:\n%sloss: loss\n", g.gbuf);
  fclose(f);
  free(g.ibuf);
  free(g.pbuf);
  free(g.fbuf);
  free(g.gbuf);
  return yaml;
}

// ------------------------------------------------------------ native vs interpreter
typedef enum { R_SAME, R_SKIPPED, R_DIFFERENT } Result;

// Float inputs get sin(j + 1) * 1.5, i32 ones (j * 5 + 1) % 3: labels and
// ids valid for >= 3 classes.
static void fill_inputs(Interp *it, const Graph *g) {
  for (int i = 0; i < g->inputs.n; i++) {
    const Node *n = graph_node(g, g->inputs.v[i].node);
    int64_t k = shape_numel(&n->shape);
    double *v = xmalloc(sizeof(double) * (size_t)k);
    for (int64_t j = 0; j < k; j++) v[j] = n->dtype == DT_I32 ? (double)((j * 5 + 1) % 3) : sin((double)j + 1) * 1.5;
    interp_set(it, n->id, v, k);
    free(v);
  }
}

static int leaf_named(const Graph *g, const char *name) {
  for (int id = 0; id < g->nodes.n; id++) {
    const Node *n = graph_node(g, id);
    if ((op_info(n->op)->flags & OPF_LEAF) && n->name && !strcmp(n->name, name)) return id;
  }
  return -1;
}

// Relative rtol (1e-9; FUZZ_DIFF_RTOL overrides it), with a floor of rtol /
// 1000 of `scale`, the largest gradient magnitude of the model (at least 1): an element
// that cancels to ~0 (or a gradient that is 0 in exact arithmetic) keeps only
// the rounding of its terms.
static double rtol = 1e-9;
static bool close(double got, double want, double scale) {
  return fabs(got - want) <= rtol * (fabs(want) + 1e-3 * scale) || (isnan(got) && isnan(want));
}

static bool finite_value(const Value *v) {
  for (int64_t i = 0; i < shape_numel(&v->shape); i++)
    if (!isfinite(v->v[i]) || fabs(v->v[i]) > 1e8) return false;
  return true;
}

static bool reached[OP_COUNT];  // ops in some model's joint graph, as built or simplified

// The joint graph j evaluated by the interpreter, and its simplified form by
// native code (fused, 2 threads) on the same leaves; what differs to why.
static Result compare(Graph *j, Diag *d, char *why, size_t wn) {
  Interp *ref = interp_new(j, 7, 3, true);
  interp_init_params(ref, 11);
  fill_inputs(ref, j);
  if (!interp_run(ref)) {
    snprintf(why, wn, "interpreter: %s", ref->err);
    interp_free(ref);
    return R_DIFFERENT;
  }
  bool finite = finite_value(interp_value(ref, j->loss));
  for (int p = 0; finite && p < j->params.n; p++)
    if (j->params.v[p].grad >= 0) finite = finite_value(interp_value(ref, j->params.v[p].grad));
  if (!finite) {
    interp_free(ref);
    return R_SKIPPED;
  }
  double scale = 1;  // so at least 1e-12 absolute: the generated values are O(1)
  for (int p = 0; p < j->params.n; p++)
    if (j->params.v[p].grad >= 0) {
      const Value *rv = interp_value(ref, j->params.v[p].grad);
      for (int64_t i = 0; i < shape_numel(&rv->shape); i++) scale = fmax(scale, fabs(rv->v[i]));
    }
  Graph *s = simplify(j, SIMP_ALL), *lowered = NULL;
  for (int id = 0; id < s->nodes.n; id++) reached[graph_node(s, id)->op] = true;
  Program *prog = program_plan(s, true, true, &lowered);
  Jit *jit = jit_new(prog, 2, d);
  Result r = R_SAME;
  if (!jit) {
    snprintf(why, wn, "native code failed to build (see the diagnostics above)");
    r = R_DIFFERENT;
  }
  for (int id = 0; jit && id < j->nodes.n; id++) {
    const Node *n = graph_node(j, id);
    if (!(op_info(n->op)->flags & OPF_LEAF)) continue;
    int mine = leaf_named(lowered, n->name);
    if (mine >= 0) jit_set(jit, mine, ref->vals[id].v, shape_numel(&n->shape));
  }
  char err[256];
  if (jit && !jit_run(jit, ref->seed, ref->step, err, sizeof err)) {
    snprintf(why, wn, "native run: %s", err);
    r = R_DIFFERENT;
  }
  if (jit && r == R_SAME) {
    double loss, want = interp_value(ref, j->loss)->v[0];
    jit_get(jit, lowered->loss, &loss);
    if (!close(loss, want, fabs(want))) {
      snprintf(why, wn, "loss: native %.17g, interpreter %.17g", loss, want);
      r = R_DIFFERENT;
    }
    for (int p = 0; r == R_SAME && p < j->params.n; p++) {
      const GParam *gp = &j->params.v[p];
      if (gp->grad < 0) continue;
      int lp = -1;
      for (int q = 0; q < lowered->params.n; q++)
        if (!strcmp(lowered->params.v[q].name, gp->name)) lp = q;
      const Value *rv = interp_value(ref, gp->grad);
      int64_t ne = shape_numel(&rv->shape);
      if (lp < 0 || lowered->params.v[lp].grad < 0) {
        snprintf(why, wn, "grad.%s: missing in the native program", gp->name);
        r = R_DIFFERENT;
        break;
      }
      double *got = xmalloc(sizeof(double) * (size_t)ne);
      jit_get(jit, lowered->params.v[lp].grad, got);
      for (int64_t i = 0; i < ne && r == R_SAME; i++)
        if (!close(got[i], rv->v[i], scale)) {
          snprintf(why, wn, "grad.%s[%lld]: native %.17g, interpreter %.17g", gp->name, (long long)i, got[i], rv->v[i]);
          r = R_DIFFERENT;
        }
      free(got);
    }
  }
  jit_free(jit);
  program_free(prog);
  graph_free(lowered);
  graph_free(s);
  interp_free(ref);
  return r;
}

// Model `seed` end to end: R_DIFFERENT also for a model bpc rejects (the
// generator makes only valid ones, so that is a bug of one of the two).
static Result run_one(uint64_t seed, const char *yaml, char *why, size_t wn) {
  char *diag = NULL;
  size_t dlen = 0;
  Diag d;
  diag_init(&d, open_memstream(&diag, &dlen));
  Arena a = {0};
  Model *m = model_load_text(&a, &d, "fuzz.yaml", yaml, strlen(yaml));
  Graph *g = m ? graph_build(m, &d, NULL, 0, DT_F64) : NULL;
  Result r = R_DIFFERENT;
  if (g && ad_backward(g)) {
    for (int id = 0; id < g->nodes.n; id++) reached[graph_node(g, id)->op] = true;
    r = compare(g, &d, why, wn);
  }
  fflush(d.out);
  if (!g || d.nerr)
    snprintf(why, wn, "bpc rejects model %llu:\n%s", (unsigned long long)seed, diag ? diag : "");
  else if (r == R_DIFFERENT && dlen) {
    size_t k = strlen(why);
    snprintf(why + k, wn - k, "\n%s", diag);
  }
  graph_free(g);
  arena_free(&a);
  fclose(d.out);
  free(diag);
  return r;
}

int main(int argc, char **argv) {
  uint64_t seed = 1;
  long count = 200, one = -1;
  double seconds = 60;
  const char *out = ".";
  bool print = false;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--seed") && i + 1 < argc)
      one = atol(argv[++i]);
    else if (!strcmp(argv[i], "--first") && i + 1 < argc)
      seed = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--count") && i + 1 < argc)
      count = atol(argv[++i]);
    else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
      seconds = atof(argv[++i]);
    else if (!strcmp(argv[i], "--out") && i + 1 < argc)
      out = argv[++i];
    else if (!strcmp(argv[i], "--print"))
      print = true;
    else {
      fprintf(stderr, "usage: fuzz_diff [--first S] [--count N] [--seconds T] [--seed S [--print]] [--out DIR]\n");
      return 2;
    }
  }
  if (one >= 0) seed = (uint64_t)one, count = 1;
  if (getenv("FUZZ_DIFF_RTOL")) rtol = atof(getenv("FUZZ_DIFF_RTOL"));
  scan_registry();
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  long same = 0, skipped = 0, bad = 0, k = 0;
  for (; k < count; k++) {
    clock_gettime(CLOCK_MONOTONIC, &t);
    if (one < 0 && (double)(t.tv_sec - t0.tv_sec) + 1e-9 * (double)(t.tv_nsec - t0.tv_nsec) > seconds) break;
    uint64_t s = seed + (uint64_t)k;
    char *yaml = make_model(s), why[8192] = "";
    if (print) fputs(yaml, stdout);
    Result r = run_one(s, yaml, why, sizeof why);
    same += r == R_SAME;
    skipped += r == R_SKIPPED;
    if (r == R_DIFFERENT) {
      char path[512];
      snprintf(path, sizeof path, "%s/fuzz_diff-%llu.yaml", out, (unsigned long long)s);
      FILE *f = fopen(path, "w");
      if (f) fputs(yaml, f), fclose(f);
      fprintf(stderr, "fuzz_diff: seed %llu: %s\n  model written to %s (replay: fuzz_diff --seed %llu)\n",
              (unsigned long long)s, why, path, (unsigned long long)s);
      bad++;
    }
    free(yaml);
  }
  printf("fuzz_diff: %ld models from seed %llu: %ld the same, %ld skipped (not finite), %ld different\n", k,
         (unsigned long long)seed, same, skipped, bad);
  int nreached = 0, nops = 0;
  for (int op = 0; op < OP_COUNT; op++)
    if (!(op_info((Op)op)->flags & OPF_LEAF)) nreached += reached[op], nops++;
  printf("fuzz_diff: %d of the registry's %d ops reached; not reached:", nreached, nops);
  for (int op = 0; op < OP_COUNT; op++)
    if (!reached[op] && !(op_info((Op)op)->flags & OPF_LEAF)) printf(" %s", op_name((Op)op));
  printf("\n");
  return bad ? 1 : 0;
}
