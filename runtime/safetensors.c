// safetensors.c — tensor files (SPEC 2.2, 3): reading, atomic writing, and the
// small set type both use.
//
// Takes: paths from the user and files from anywhere, possibly hostile.
// Guarantees: bpcrt_st_read never crashes, never reads past what it checked
// and never allocates more than the file holds; every error names the file
// and, where it helps, the tensor and the byte offset. We accept exactly what
// the reference implementation (huggingface/safetensors) accepts, restricted
// to F32, F64 and I32: the header starts with '{', is UTF-8, may end in
// spaces; tensors tile the data buffer with no gap, overlap or trailing byte.
// Beyond it we refuse duplicate names, unknown keys in an entry, and
// "\u0000" in strings (C strings would silently cut the name).
// bpcrt_st_write lays tensors out in the order given, pads the header with
// spaces so the data starts 8-byte aligned (as the reference does), and
// replaces PATH atomically: temp file in the same folder, fsync, rename,
// fsync of the folder. On error PATH is untouched and the temp is removed.
// Leaves out: big-endian hosts (refused at compile time), the float8 dtypes,
// memory-mapping (files are read into owned buffers).
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "bpc.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "bpcrt's safetensors I/O assumes a little-endian host"
#endif

#define MAX_HEADER (100u * 1000 * 1000)  // the reference library's limit too
#define MAX_EXACT 9007199254740992.0      // 2^53: larger JSON numbers lose digits

// Test-only: every write of bpcrt_st_write goes through this pointer, so a
// test can inject ENOSPC without a full disk. Not part of the public ABI.
ssize_t (*bpcrt_st_test_write)(int fd, const void *buf, size_t n) = write;

// ---- small helpers ------------------------------------------------------

// Formats "PATH: message" into err and returns -1, so callers `return fail(...)`.
__attribute__((format(printf, 4, 5))) static int fail(char *err, size_t errlen, const char *path, const char *fmt,
                                                      ...) {
  if (!err || errlen == 0) return -1;
  int k = snprintf(err, errlen, "%s: ", path);
  if (k >= 0 && (size_t)k < errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + k, errlen - (size_t)k, fmt, ap);
    va_end(ap);
  }
  return -1;
}

// Allocation aborts on OOM (STYLE); only tensor data read from a file, whose
// size the user controls, is checked and reported instead.
static void *xrealloc(void *p, size_t n) {
  p = realloc(p, n ? n : 1);
  if (!p) abort();
  return p;
}

static char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  return memcpy(xrealloc(NULL, n), s, n);
}

// A name from a hostile file made safe to print: control bytes become '?',
// and long names are cut. `buf` must hold 68 bytes.
static const char *shown(const char *s, char *buf) {
  if (!s) return "(none)";
  size_t i = 0;
  for (; s[i] && i < 64; i++) buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
  if (s[i]) memcpy(buf + i, "...", 3), i += 3;
  buf[i] = 0;
  return buf;
}

// Offset of the first byte that is not valid UTF-8 (bpcrt_utf8_check), or n.
// For raw JSON text (`json`) control bytes other than tab, CR and LF are bad
// too: JSON allows none raw, and cJSON would take them. They are single
// bytes, so the first one before the first invalid sequence is the answer.
static size_t utf8_bad(const unsigned char *s, size_t n, bool json) {
  size_t bad = bpcrt_utf8_check((const char *)s, n);
  for (size_t i = 0; json && i < bad; i++)
    if (s[i] < 0x20 && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') return i;
  return bad;
}

// Offset of a "\u0000" escape (an odd run of backslashes before "u0000"), or n.
static size_t find_nul_escape(const char *s, size_t n) {
  for (size_t i = 0; i + 6 <= n; i++) {
    if (s[i] != '\\') continue;
    size_t run = 0;
    while (i + run < n && s[i + run] == '\\') run++;
    size_t u = i + run;  // the escape is the run's last backslash
    if (run % 2 == 1 && u + 5 <= n && s[u] == 'u' && strncmp(s + u + 1, "0000", 4) == 0) return u - 1;
    i = u - 1;
  }
  return n;
}

static const struct {
  const char *name;
  size_t size;
} dtypes[] = {
    [BPCRT_F32] = {"F32", 4},   [BPCRT_F64] = {"F64", 8},   [BPCRT_I32] = {"I32", 4}, [BPCRT_F16] = {"F16", 2},
    [BPCRT_BF16] = {"BF16", 2}, [BPCRT_I64] = {"I64", 8},   [BPCRT_I16] = {"I16", 2}, [BPCRT_I8] = {"I8", 1},
    [BPCRT_U8] = {"U8", 1},     [BPCRT_BOOL] = {"BOOL", 1},
};
#define NDTYPES (sizeof dtypes / sizeof *dtypes)

size_t bpcrt_dtype_size(bpcrt_dtype dt) { return (size_t)dt < NDTYPES ? dtypes[dt].size : 4; }

const char *bpcrt_dtype_name(bpcrt_dtype dt) { return (size_t)dt < NDTYPES ? dtypes[dt].name : "?"; }

int bpcrt_dtype_is_float(bpcrt_dtype dt) {
  return dt == BPCRT_F32 || dt == BPCRT_F64 || dt == BPCRT_F16 || dt == BPCRT_BF16;
}

int bpcrt_dtype_loads(bpcrt_dtype file, bpcrt_dtype model) {
  return model == BPCRT_I32 ? file == BPCRT_I32 : bpcrt_dtype_is_float(file);
}

// IEEE binary16 and bfloat16 bits to float (exact: both widen).
static float half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);  // inf, nan
  } else if (exp) {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  } else if (!man) {
    bits = sign;
  } else {  // subnormal: normalize
    int e = -1;
    do {
      man <<= 1;
      e++;
    } while (!(man & 0x400));
    bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
  }
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

static float bf16_to_float(uint16_t h) {
  uint32_t bits = (uint32_t)h << 16;
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

// Element i of a float tensor of any stored float dtype, as a double.
static double float_at(const bpcrt_tensor *t, const unsigned char *p, size_t i) {
  switch (t->dtype) {
  case BPCRT_F64: {
    double d;
    memcpy(&d, p + 8 * i, 8);
    return d;
  }
  case BPCRT_F32: {
    float f;
    memcpy(&f, p + 4 * i, 4);
    return f;
  }
  case BPCRT_F16: {
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return half_to_float(h);
  }
  default: {
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return bf16_to_float(h);
  }
  }
}

int64_t bpcrt_numel(const bpcrt_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->rank; i++) n *= t->shape[i];
  return n;
}

static bool dtype_valid(bpcrt_dtype dt) { return (size_t)dt < NDTYPES; }

// numel * element size of a shape, or false on overflow.
static bool shape_bytes(bpcrt_dtype dt, int rank, const int64_t *shape, uint64_t *out) {
  uint64_t n = bpcrt_dtype_size(dt);
  for (int i = 0; i < rank; i++)
    if (shape[i] < 0 || __builtin_mul_overflow(n, (uint64_t)shape[i], &n)) return false;
  *out = n;
  return n <= SIZE_MAX;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

// A name occurring twice among names[0..n) (sorted in place), or NULL.
static const char *find_duplicate(const char **names, int n) {
  qsort(names, (size_t)n, sizeof *names, cmp_str);
  for (int i = 1; i < n; i++)
    if (strcmp(names[i - 1], names[i]) == 0) return names[i];
  return NULL;
}

// ---- the set type -------------------------------------------------------

void bpcrt_st_free(bpcrt_tensors *t) {
  for (int i = 0; i < t->n; i++) free(t->t[i].name), free(t->t[i].borrowed ? NULL : t->t[i].data);
  for (int i = 0; i < t->nmeta; i++) free(t->meta_keys[i]), free(t->meta_vals[i]);
  free(t->t), free(t->meta_keys), free(t->meta_vals);
  memset(t, 0, sizeof *t);
}

const bpcrt_tensor *bpcrt_st_find(const bpcrt_tensors *t, const char *name) {
  for (int i = 0; i < t->n; i++)
    if (strcmp(t->t[i].name, name) == 0) return &t->t[i];
  return NULL;
}

// Appends a tensor that takes ownership of `name` and `data`.
static bpcrt_tensor *push(bpcrt_tensors *t, char *name, bpcrt_dtype dtype, int rank, const int64_t *shape, void *data,
                          size_t nbytes) {
  if (t->n == t->cap) {
    t->cap = t->cap ? 2 * t->cap : 8;
    t->t = xrealloc(t->t, (size_t)t->cap * sizeof *t->t);
  }
  bpcrt_tensor *x = &t->t[t->n++];
  memset(x, 0, sizeof *x);
  x->name = name, x->dtype = dtype, x->rank = rank, x->data = data, x->nbytes = nbytes;
  if (rank > 0) memcpy(x->shape, shape, (size_t)rank * sizeof *shape);
  return x;
}

// Appends a metadata pair without looking for an existing key.
static void push_meta(bpcrt_tensors *t, const char *key, const char *val) {
  if (t->nmeta == t->metacap) {
    t->metacap = t->metacap ? 2 * t->metacap : 8;
    t->meta_keys = xrealloc(t->meta_keys, (size_t)t->metacap * sizeof *t->meta_keys);
    t->meta_vals = xrealloc(t->meta_vals, (size_t)t->metacap * sizeof *t->meta_vals);
  }
  t->meta_keys[t->nmeta] = xstrdup(key);
  t->meta_vals[t->nmeta++] = xstrdup(val);
}

// Whether a tensor so described may join the set; its size in *nbytes.
static bool can_add(const bpcrt_tensors *t, const char *name, bpcrt_dtype dtype, int rank, const int64_t *shape,
                    uint64_t *nbytes) {
  return name && dtype_valid(dtype) && rank >= 0 && rank <= BPCRT_MAX_RANK && (rank == 0 || shape) &&
         shape_bytes(dtype, rank, shape, nbytes) && !bpcrt_st_find(t, name);
}

bpcrt_tensor *bpcrt_st_add(bpcrt_tensors *t, const char *name, bpcrt_dtype dtype, int rank, const int64_t *shape,
                           const void *data) {
  uint64_t nbytes;
  if (!can_add(t, name, dtype, rank, shape, &nbytes)) return NULL;
  void *buf = xrealloc(NULL, (size_t)nbytes);
  if (data && nbytes)
    memcpy(buf, data, (size_t)nbytes);
  else
    memset(buf, 0, (size_t)nbytes);
  return push(t, xstrdup(name), dtype, rank, shape, buf, (size_t)nbytes);
}

bpcrt_tensor *bpcrt_st_add_ref(bpcrt_tensors *t, const char *name, bpcrt_dtype dtype, int rank, const int64_t *shape,
                               const void *data) {
  uint64_t nbytes;
  if (!data || !can_add(t, name, dtype, rank, shape, &nbytes)) return NULL;
  bpcrt_tensor *x = push(t, xstrdup(name), dtype, rank, shape, (void *)data, (size_t)nbytes);
  x->borrowed = 1;
  return x;
}

void bpcrt_st_set_meta(bpcrt_tensors *t, const char *key, const char *val) {
  for (int i = 0; i < t->nmeta; i++)
    if (strcmp(t->meta_keys[i], key) == 0) {
      free(t->meta_vals[i]);
      t->meta_vals[i] = xstrdup(val);
      return;
    }
  push_meta(t, key, val);
}

const char *bpcrt_st_meta(const bpcrt_tensors *t, const char *key) {
  for (int i = 0; i < t->nmeta; i++)
    if (strcmp(t->meta_keys[i], key) == 0) return t->meta_vals[i];
  return NULL;
}

// memcpy per element: the data is little-endian bytes with no alignment promise.
int bpcrt_st_to_f64(const bpcrt_tensor *t, double *out) {
  size_t n = (size_t)bpcrt_numel(t);
  const unsigned char *p = t->data;
  if (!bpcrt_dtype_is_float(t->dtype)) return -1;
  if (t->dtype == BPCRT_F64)
    memcpy(out, p, n * sizeof(double));
  else
    for (size_t i = 0; i < n; i++) out[i] = float_at(t, p, i);
  return 0;
}

// F64 -> F32 rounds to nearest (IEEE, C17 Annex F): huge values become inf.
int bpcrt_st_to_f32(const bpcrt_tensor *t, float *out) {
  size_t n = (size_t)bpcrt_numel(t);
  const unsigned char *p = t->data;
  if (!bpcrt_dtype_is_float(t->dtype)) return -1;
  if (t->dtype == BPCRT_F32)
    memcpy(out, p, n * sizeof(float));
  else
    for (size_t i = 0; i < n; i++) out[i] = (float)float_at(t, p, i);
  return 0;
}

// ---- reading ------------------------------------------------------------

// What the header says about one tensor, before its data is read.
typedef struct {
  const char *name;  // points into the cJSON tree
  bpcrt_dtype dtype;
  int rank;
  int64_t shape[BPCRT_MAX_RANK];
  uint64_t begin, end;  // relative to the data buffer
} Entry;

typedef struct {
  const char *path;
  char *err;
  size_t errlen;
  uint64_t hlen;   // N: the JSON header's length
  uint64_t dsize;  // the data buffer's length
} Reader;

// A JSON number that is an exact non-negative integer.
static bool get_uint(const cJSON *v, uint64_t *out) {
  if (!cJSON_IsNumber(v)) return false;
  double d = v->valuedouble;
  if (!(d >= 0 && d <= MAX_EXACT) || d != (double)(uint64_t)d) return false;
  *out = (uint64_t)d;
  return true;
}

static int parse_dtype(Reader *r, const char *name, const cJSON *v, bpcrt_dtype *out) {
  char b1[68], b2[68];
  if (!cJSON_IsString(v))
    return fail(r->err, r->errlen, r->path, "dtype of tensor '%s' is not a string", shown(name, b1));
  for (size_t i = 0; i < NDTYPES; i++)
    if (strcmp(v->valuestring, dtypes[i].name) == 0) return *out = (bpcrt_dtype)i, 0;
  return fail(r->err, r->errlen, r->path,
              "unsupported dtype '%s' for tensor '%s' (bpc reads F32, F64, F16, BF16, I64, I32, "
              "I16, I8, U8, BOOL)",
              shown(v->valuestring, b1), shown(name, b2));
}

static int parse_shape(Reader *r, Entry *e, const cJSON *v) {
  char b[68];
  const char *nm = shown(e->name, b);
  if (!cJSON_IsArray(v)) return fail(r->err, r->errlen, r->path, "shape of tensor '%s' is not a list", nm);
  int rank = cJSON_GetArraySize(v);
  if (rank > BPCRT_MAX_RANK)
    return fail(r->err, r->errlen, r->path, "tensor '%s' has rank %d; bpc reads rank <= %d", nm, rank, BPCRT_MAX_RANK);
  e->rank = 0;
  for (const cJSON *d = v->child; d; d = d->next) {
    uint64_t x;
    if (!get_uint(d, &x))
      return fail(r->err, r->errlen, r->path, "shape of tensor '%s' is not a list of non-negative integers", nm);
    e->shape[e->rank++] = (int64_t)x;
  }
  return 0;
}

static int parse_offsets(Reader *r, Entry *e, const cJSON *v) {
  char b[68];
  const char *nm = shown(e->name, b);
  if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2 || !get_uint(v->child, &e->begin) ||
      !get_uint(v->child->next, &e->end))
    return fail(r->err, r->errlen, r->path, "data_offsets of tensor '%s' is not a list of two non-negative integers",
                nm);
  uint64_t need;
  if (!shape_bytes(e->dtype, e->rank, e->shape, &need))
    return fail(r->err, r->errlen, r->path, "tensor '%s': element count overflows", nm);
  unsigned long long b0 = e->begin, b1 = e->end;
  if (b1 < b0)
    return fail(r->err, r->errlen, r->path, "tensor '%s': data_offsets [%llu, %llu] end before they begin", nm, b0, b1);
  if (b1 - b0 != need)
    return fail(r->err, r->errlen, r->path,
                "tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but its shape and "
                "dtype %s need %llu",
                nm, b0, b1, b1 - b0, bpcrt_dtype_name(e->dtype), (unsigned long long)need);
  if (b1 > r->dsize)
    return fail(r->err, r->errlen, r->path,
                "tensor '%s': data_offsets [%llu, %llu] run past the data buffer "
                "(%llu bytes, file offsets %llu..%llu)",
                nm, b0, b1, (unsigned long long)r->dsize, (unsigned long long)(8 + r->hlen),
                (unsigned long long)(8 + r->hlen + r->dsize));
  return 0;
}

// One header entry: {"dtype": ..., "shape": [...], "data_offsets": [b, e]}.
static int parse_entry(Reader *r, const cJSON *item, Entry *e) {
  char b[68];
  e->name = item->string;
  const char *nm = shown(e->name, b);
  if (!cJSON_IsObject(item)) return fail(r->err, r->errlen, r->path, "header entry '%s' is not an object", nm);
  const cJSON *dt = NULL, *shape = NULL, *offs = NULL;
  for (const cJSON *f = item->child; f; f = f->next) {
    const cJSON **slot = strcmp(f->string, "dtype") == 0          ? &dt
                         : strcmp(f->string, "shape") == 0        ? &shape
                         : strcmp(f->string, "data_offsets") == 0 ? &offs
                                                                  : NULL;
    char bk[68];
    if (!slot || *slot)
      return fail(r->err, r->errlen, r->path, "tensor '%s': %s key '%s' in its header entry", nm,
                  slot ? "duplicate" : "unknown", shown(f->string, bk));
    *slot = f;
  }
  const char *missing = !dt ? "dtype" : !shape ? "shape" : !offs ? "data_offsets" : NULL;
  if (missing) return fail(r->err, r->errlen, r->path, "tensor '%s' has no '%s'", nm, missing);
  if (parse_dtype(r, e->name, dt, &e->dtype) || parse_shape(r, e, shape)) return -1;
  return parse_offsets(r, e, offs);
}

static int parse_meta(Reader *r, const cJSON *m, bpcrt_tensors *out) {
  char b[68];
  if (!cJSON_IsObject(m)) return fail(r->err, r->errlen, r->path, "__metadata__ is not an object");
  int n = 0;
  const char **keys = xrealloc(NULL, (size_t)(cJSON_GetArraySize(m) + 1) * sizeof *keys);
  for (const cJSON *kv = m->child; kv; kv = kv->next) keys[n++] = kv->string;
  const char *dup = find_duplicate(keys, n);  // sorted, not O(n^2): files may be hostile
  free(keys);
  if (dup) return fail(r->err, r->errlen, r->path, "__metadata__ has key '%s' twice", shown(dup, b));
  for (const cJSON *kv = m->child; kv; kv = kv->next) {
    if (!cJSON_IsString(kv))
      return fail(r->err, r->errlen, r->path, "__metadata__ value of '%s' is not a string", shown(kv->string, b));
    push_meta(out, kv->string, kv->valuestring);
  }
  return 0;
}

static int cmp_offsets(const void *a, const void *b) {
  const Entry *x = *(const Entry *const *)a, *y = *(const Entry *const *)b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

// The tensors must tile the data buffer exactly, as the reference requires.
static int check_tiling(Reader *r, Entry *e, int n) {
  Entry **by = xrealloc(NULL, (size_t)n * sizeof *by);
  for (int i = 0; i < n; i++) by[i] = &e[i];
  qsort(by, (size_t)n, sizeof *by, cmp_offsets);
  uint64_t pos = 0, base = 8 + r->hlen;
  const char *prev = NULL;
  char b1[68], b2[68];
  int rc = 0;
  for (int i = 0; i < n && rc == 0; i++) {
    unsigned long long at = by[i]->begin;
    if (by[i]->begin < pos)
      rc = fail(r->err, r->errlen, r->path, "tensor '%s' (data offset %llu, file offset %llu) overlaps tensor '%s'",
                shown(by[i]->name, b1), at, at + base, shown(prev, b2));
    else if (by[i]->begin > pos)
      rc = fail(r->err, r->errlen, r->path,
                "%llu unused bytes before tensor '%s' at file offset %llu "
                "(tensors must be contiguous)",
                (unsigned long long)(at - pos), shown(by[i]->name, b1), (unsigned long long)(pos + base));
    pos = by[i]->end, prev = by[i]->name;
  }
  if (rc == 0 && pos != r->dsize)
    rc = fail(r->err, r->errlen, r->path,
              "%llu trailing bytes after the last tensor at "
              "file offset %llu",
              (unsigned long long)(r->dsize - pos), (unsigned long long)(pos + base));
  free(by);
  return rc;
}

// pread until done; 0, or -1 with errno (0 for end of file).
static int read_at(int fd, void *buf, size_t n, uint64_t off) {
  char *p = buf;
  while (n > 0) {
    ssize_t k = pread(fd, p, n, (off_t)off);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) {
      if (k == 0) errno = 0;
      return -1;
    }
    p += k, n -= (size_t)k, off += (uint64_t)k;
  }
  return 0;
}

static int read_error(Reader *r, const char *what, uint64_t off) {
  if (errno == 0)
    return fail(r->err, r->errlen, r->path, "file ended while reading %s at offset %llu", what,
                (unsigned long long)off);
  return fail(r->err, r->errlen, r->path, "reading %s at offset %llu: %s", what, (unsigned long long)off,
              strerror(errno));
}

// Checks the raw header bytes, then parses them. NULL (err filled) on error.
static cJSON *parse_header(Reader *r, const char *h) {
  size_t n = (size_t)r->hlen, bad;
  if (n == 0 || h[0] != '{')
    return fail(r->err, r->errlen, r->path,
                "the JSON header at offset 8 does not start "
                "with '{'"),
           NULL;
  if ((bad = utf8_bad((const unsigned char *)h, n, true)) < n)
    return fail(r->err, r->errlen, r->path,
                "bad byte 0x%02x in the header at offset %zu "
                "(not UTF-8 JSON text)",
                (unsigned char)h[bad], 8 + bad),
           NULL;
  if ((bad = find_nul_escape(h, n)) < n)
    return fail(r->err, r->errlen, r->path, "the header has a \\u0000 escape at offset %zu", 8 + bad), NULL;
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(h, n, &end, 0);
  if (!root) {
    size_t at = end && end >= h && end <= h + n ? (size_t)(end - h) : 0;
    return fail(r->err, r->errlen, r->path, "invalid JSON in the header near offset %zu", 8 + at), NULL;
  }
  for (size_t i = (size_t)(end - h); i < n; i++)
    if (!strchr(" \t\r\n", h[i]))
      return cJSON_Delete(root),
             fail(r->err, r->errlen, r->path,
                  "unexpected bytes after "
                  "the JSON header at offset %zu",
                  8 + i),
             NULL;
  if (!cJSON_IsObject(root))
    return cJSON_Delete(root),
           fail(r->err, r->errlen, r->path,
                "the header is not a JSON "
                "object"),
           NULL;
  return root;
}

// Validates every entry of the header into e[0..*n) and the metadata into out.
static int parse_entries(Reader *r, const cJSON *root, Entry *e, int *n, bpcrt_tensors *out) {
  int k = 0, nkeys = cJSON_GetArraySize(root);
  const char **names = xrealloc(NULL, (size_t)(nkeys ? nkeys : 1) * sizeof *names);
  for (const cJSON *it = root->child; it; it = it->next) names[k++] = it->string;
  const char *dup = find_duplicate(names, k);
  free(names);
  char b[68];
  if (dup) return fail(r->err, r->errlen, r->path, "the header has '%s' twice", shown(dup, b));
  *n = 0;
  for (const cJSON *it = root->child; it; it = it->next) {
    if (strcmp(it->string, "__metadata__") == 0) {
      if (parse_meta(r, it, out)) return -1;
    } else if (parse_entry(r, it, &e[(*n)++])) {
      return -1;
    }
  }
  return check_tiling(r, e, *n);
}

// Reads each tensor's bytes into an owned buffer, in header order.
static int read_data(Reader *r, int fd, const Entry *e, int n, bpcrt_tensors *out) {
  char b[68], what[96];
  for (int i = 0; i < n; i++) {
    size_t nbytes = (size_t)(e[i].end - e[i].begin);
    void *data = malloc(nbytes ? nbytes : 1);
    if (!data)
      return fail(r->err, r->errlen, r->path, "out of memory reading tensor '%s' (%zu bytes)", shown(e[i].name, b),
                  nbytes);
    uint64_t off = 8 + r->hlen + e[i].begin;
    if (read_at(fd, data, nbytes, off)) {
      free(data);
      snprintf(what, sizeof what, "tensor '%s'", shown(e[i].name, b));
      return read_error(r, what, off);
    }
    push(out, xstrdup(e[i].name), e[i].dtype, e[i].rank, e[i].shape, data, nbytes);
  }
  return 0;
}

static int read_fd(Reader *r, int fd, bpcrt_tensors *out) {
  struct stat st;
  if (fstat(fd, &st) != 0) return fail(r->err, r->errlen, r->path, "%s", strerror(errno));
  if (!S_ISREG(st.st_mode)) return fail(r->err, r->errlen, r->path, "not a regular file");
  uint64_t size = (uint64_t)st.st_size;
  if (size < 8)
    return fail(r->err, r->errlen, r->path,
                "the file is %llu bytes, too short for a "
                "safetensors header",
                (unsigned long long)size);
  unsigned char len8[8];
  if (read_at(fd, len8, 8, 0)) return read_error(r, "the header length", 0);
  r->hlen = 0;
  for (int i = 7; i >= 0; i--) r->hlen = r->hlen << 8 | len8[i];
  if (r->hlen > MAX_HEADER)
    return fail(r->err, r->errlen, r->path,
                "header length %llu at offset 0 is over the "
                "100 MB limit",
                (unsigned long long)r->hlen);
  if (r->hlen > size - 8)
    return fail(r->err, r->errlen, r->path,
                "header length %llu at offset 0 runs past the "
                "end of the file (%llu bytes)",
                (unsigned long long)r->hlen, (unsigned long long)size);
  r->dsize = size - 8 - r->hlen;
  char *h = xrealloc(NULL, (size_t)r->hlen + 1);
  h[r->hlen] = 0;  // cJSON never needs it, but a terminator costs nothing
  if (read_at(fd, h, (size_t)r->hlen, 8)) return free(h), read_error(r, "the header", 8);
  cJSON *root = parse_header(r, h);
  free(h);
  if (!root) return -1;
  int n = 0, nkeys = cJSON_GetArraySize(root);
  Entry *e = xrealloc(NULL, (size_t)(nkeys ? nkeys : 1) * sizeof *e);
  int rc = parse_entries(r, root, e, &n, out);
  if (rc == 0) rc = read_data(r, fd, e, n, out);
  free(e);
  cJSON_Delete(root);  // after read_data: the entries' names point into it
  return rc;
}

int bpcrt_st_read(const char *path, bpcrt_tensors *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  if (err && errlen) err[0] = 0;
  Reader r = {.path = path, .err = err, .errlen = errlen};
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(err, errlen, path, "%s", strerror(errno));
  int rc = read_fd(&r, fd, out);
  close(fd);
  if (rc) bpcrt_st_free(out);
  return rc;
}

// ---- writing ------------------------------------------------------------

typedef struct {
  char *p;
  size_t len, cap;
} Buf;

static void buf_put(Buf *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    b->cap = (b->len + n + 1) * 2;
    b->p = xrealloc(b->p, b->cap);
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = 0;
}

__attribute__((format(printf, 2, 3))) static void buf_printf(Buf *b, const char *fmt, ...) {
  char tmp[64];
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(tmp, sizeof tmp, fmt, ap);  // only short numbers go through here
  va_end(ap);
  buf_put(b, tmp, (size_t)k);
}

// The JSON escape of byte c as serde_json (the reference) writes it, or 0
// when c goes out as is.
static char short_escape(unsigned char c) {
  switch (c) {
  case '"': return '"';
  case '\\': return '\\';
  case '\b': return 'b';
  case '\f': return 'f';
  case '\n': return 'n';
  case '\r': return 'r';
  case '\t': return 't';
  default: return c < 0x20 ? 'u' : 0;
  }
}

// A JSON string: UTF-8 passes through, quotes, backslashes and control bytes
// are escaped exactly as serde_json does, so our headers match the reference's.
static void buf_json_str(Buf *b, const char *s) {
  buf_put(b, "\"", 1);
  for (; *s; s++) {
    char e = short_escape((unsigned char)*s);
    if (e == 'u')
      buf_printf(b, "\\u%04x", (unsigned char)*s);
    else if (e)
      buf_put(b, "\\", 1), buf_put(b, &e, 1);
    else
      buf_put(b, s, 1);
  }
  buf_put(b, "\"", 1);
}

static bool is_utf8(const char *s) {
  size_t n = strlen(s);
  return utf8_bad((const unsigned char *)s, n, false) == n;
}

// Rejects a set the reference reader would refuse, before touching the disk.
static int check_set(const bpcrt_tensors *in, const char *path, char *err, size_t errlen) {
  char b[68];
  for (int i = 0; i < in->nmeta; i++)
    if (!is_utf8(in->meta_keys[i]) || !is_utf8(in->meta_vals[i]))
      return fail(err, errlen, path, "metadata '%s' is not UTF-8", shown(in->meta_keys[i], b));
  for (int i = 0; i < in->n; i++) {
    const bpcrt_tensor *t = &in->t[i];
    uint64_t need;
    if (!t->name || !is_utf8(t->name) || strcmp(t->name, "__metadata__") == 0)
      return fail(err, errlen, path, "tensor %d has a bad name", i);
    if (!dtype_valid(t->dtype) || t->rank < 0 || t->rank > BPCRT_MAX_RANK ||
        !shape_bytes(t->dtype, t->rank, t->shape, &need) || need != t->nbytes || (need && !t->data))
      return fail(err, errlen, path, "tensor '%s' has a bad dtype, shape or size", shown(t->name, b));
  }
  const char **names = xrealloc(NULL, (size_t)(in->n ? in->n : 1) * sizeof *names);
  for (int i = 0; i < in->n; i++) names[i] = in->t[i].name;
  const char *dup = find_duplicate(names, in->n);
  int rc = dup ? fail(err, errlen, path, "tensor '%s' occurs twice", shown(dup, b)) : 0;
  free(names);
  return rc;
}

// The JSON header, padded with spaces to a multiple of 8 bytes.
static Buf make_header(const bpcrt_tensors *in) {
  Buf b = {0};
  buf_put(&b, "{", 1);
  if (in->nmeta > 0) {
    buf_put(&b, "\"__metadata__\":{", 16);
    for (int i = 0; i < in->nmeta; i++) {
      if (i) buf_put(&b, ",", 1);
      buf_json_str(&b, in->meta_keys[i]);
      buf_put(&b, ":", 1);
      buf_json_str(&b, in->meta_vals[i]);
    }
    buf_put(&b, "}", 1);
  }
  uint64_t off = 0;
  for (int i = 0; i < in->n; i++) {
    const bpcrt_tensor *t = &in->t[i];
    if (i || in->nmeta > 0) buf_put(&b, ",", 1);
    buf_json_str(&b, t->name);
    buf_printf(&b, ":{\"dtype\":\"%s\",\"shape\":[", bpcrt_dtype_name(t->dtype));
    for (int d = 0; d < t->rank; d++) buf_printf(&b, d ? ",%lld" : "%lld", (long long)t->shape[d]);
    buf_printf(&b, "],\"data_offsets\":[%llu,", (unsigned long long)off);
    off += t->nbytes;
    buf_printf(&b, "%llu]}", (unsigned long long)off);
  }
  buf_put(&b, "}", 1);
  while (b.len % 8) buf_put(&b, " ", 1);
  return b;
}

// Writes all n bytes; 0, or -1 with errno.
static int write_all(int fd, const void *buf, size_t n) {
  const char *p = buf;
  while (n > 0) {
    size_t chunk = n < (1u << 30) ? n : (1u << 30);
    ssize_t k = bpcrt_st_test_write(fd, p, chunk);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) return -1;
    if (k == 0) {
      errno = ENOSPC;  // write() making no progress means the device is full
      return -1;
    }
    p += k, n -= (size_t)k;
  }
  return 0;
}

static int write_body(int fd, const Buf *h, const bpcrt_tensors *in) {
  unsigned char len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h->len >> (8 * i));
  if (write_all(fd, len8, 8) || write_all(fd, h->p, h->len)) return -1;
  for (int i = 0; i < in->n; i++)
    if (in->t[i].nbytes && write_all(fd, in->t[i].data, in->t[i].nbytes)) return -1;
  return fsync(fd);
}

// Makes the rename durable. Filesystems that cannot sync a folder say EINVAL.
static int sync_folder(const char *path) {
  const char *slash = strrchr(path, '/');
  char *dir = slash ? xstrdup(path) : xstrdup(".");
  if (slash) dir[slash == path ? 1 : slash - path] = 0;
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;
  free(dir);
  if (fd < 0) return -1;
  if (fsync(fd) != 0 && errno != EINVAL) rc = -1;
  int e = errno;
  close(fd);
  errno = e;
  return rc;
}

int bpcrt_st_write(const char *path, const bpcrt_tensors *in, char *err, size_t errlen) {
  if (err && errlen) err[0] = 0;
  if (check_set(in, path, err, errlen)) return -1;
  size_t tlen = strlen(path) + 32;
  char *tmp = xrealloc(NULL, tlen);
  snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0666);
  if (fd < 0) {
    int rc = fail(err, errlen, path, "cannot create a file there: %s", strerror(errno));
    return free(tmp), rc;
  }
  Buf h = make_header(in);
  int rc = write_body(fd, &h, in), e = errno;
  free(h.p);
  if (close(fd) != 0 && rc == 0)  // NFS may report a failed write only here
    rc = -1, e = errno;
  if (rc == 0 && rename(tmp, path) != 0) rc = -1, e = errno;
  if (rc != 0) {
    unlink(tmp);
    free(tmp);
    return fail(err, errlen, path, "%s", strerror(e));
  }
  free(tmp);
  if (sync_folder(path) != 0)
    return fail(err, errlen, path, "written, but syncing its folder failed: %s", strerror(errno));
  return 0;
}
