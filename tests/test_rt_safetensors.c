// test_rt_safetensors.c — runtime/safetensors.c: round trips, the exact bytes we
// write, a fixture written by the reference Python library
// (tests/data/make_st_fixture.py), hostile files (every truncation, byte
// flips, one hand-made header per validation rule), and atomic writes under
// failure: a missing folder, injected and real ENOSPC, SIGKILL mid-write.
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bpc.h"

// Test-only hook in safetensors.c: every write of bpcrt_st_write goes here.
extern ssize_t (*bpcrt_st_test_write)(int fd, const void *buf, size_t n);

static char tmpdir[64];

static void setup(void) {
  strcpy(tmpdir, "/tmp/bpc-st-XXXXXX");
  cr_assert_not_null(mkdtemp(tmpdir));
}

// Removes the files of tmpdir (one level: tests make no subfolders but `mnt`,
// whose mount dies with the test's private namespace).
static void teardown(void) {
  DIR *d = opendir(tmpdir);
  if (!d) return;
  char p[512];
  for (struct dirent *e; (e = readdir(d));) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
    if (unlink(p) != 0) rmdir(p);
  }
  closedir(d);
  rmdir(tmpdir);
}

TestSuite(st, .init = setup, .fini = teardown);

static const char *in_tmp(const char *name) {
  static char buf[4][256];
  static int k;
  char *p = buf[k++ % 4];
  snprintf(p, 256, "%s/%s", tmpdir, name);
  return p;
}

static unsigned char *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *p = malloc((size_t)len + 1);
  cr_assert_eq(fread(p, 1, (size_t)len, f), (size_t)len);
  fclose(f);
  *n = (size_t)len;
  return p;
}

static void spit(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f);
  cr_assert_eq(fwrite(p, 1, n, f), n);
  cr_assert_eq(fclose(f), 0);
}

// Number of entries in tmpdir (to see that no temp file was left behind).
static int count_files(const char *dir) {
  DIR *d = opendir(dir);
  cr_assert_not_null(d);
  int n = 0;
  for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

// ---- round trips ---------------------------------------------------------

// Element i of a test tensor: distinct, exact in every dtype.
static void fill(bpcrt_tensor *t, int salt) {
  int64_t n = bpcrt_numel(t);
  for (int64_t i = 0; i < n; i++) {
    double v = (double)(i * 7 - 3 + salt) / 4.0;
    if (t->dtype == BPCRT_F32)
      ((float *)t->data)[i] = (float)v;
    else if (t->dtype == BPCRT_F64)
      ((double *)t->data)[i] = v + 1e-13;
    else
      ((int32_t *)t->data)[i] = (int32_t)(i * 7 - 3 + salt) * 1000003;
  }
}

static void build_set(bpcrt_tensors *s) {
  static const int64_t shapes[5][4] = {{0}, {3}, {2, 3}, {2, 1, 3}, {1, 2, 2, 3}};
  static const bpcrt_dtype dts[3] = {BPCRT_F32, BPCRT_F64, BPCRT_I32};
  char name[32];
  for (int d = 0; d < 3; d++)
    for (int r = 0; r <= 4; r++) {
      snprintf(name, sizeof name, "t.%s.r%d", bpcrt_dtype_name(dts[d]), r);
      bpcrt_tensor *t = bpcrt_st_add(s, name, dts[d], r, shapes[r], NULL);
      cr_assert_not_null(t);
      fill(t, d * 10 + r);
    }
  int64_t z[2] = {0, 5}, big[8] = {1, 2, 1, 1, 2, 1, 1, 2};
  fill(bpcrt_st_add(s, "rank8", BPCRT_F32, 8, big, NULL), 1);
  cr_assert_not_null(bpcrt_st_add(s, "zero", BPCRT_F64, 2, z, NULL));
  bpcrt_st_set_meta(s, "step", "1200");
  bpcrt_st_set_meta(s, "note", "quote \" backslash \\ newline \n tab \t é ✓");
  bpcrt_st_set_meta(s, "", "empty key");
}

static void assert_same(const bpcrt_tensors *a, const bpcrt_tensors *b) {
  cr_assert_eq(a->n, b->n);
  for (int i = 0; i < a->n; i++) {
    const bpcrt_tensor *x = &a->t[i], *y = &b->t[i];
    cr_assert_str_eq(x->name, y->name);
    cr_assert_eq(x->dtype, y->dtype, "%s", x->name);
    cr_assert_eq(x->rank, y->rank, "%s", x->name);
    for (int d = 0; d < x->rank; d++) cr_assert_eq(x->shape[d], y->shape[d]);
    cr_assert_eq(x->nbytes, y->nbytes, "%s", x->name);
    cr_assert_not_null(y->data);
    cr_assert_eq(memcmp(x->data, y->data, x->nbytes), 0, "%s", x->name);
  }
  cr_assert_eq(a->nmeta, b->nmeta);
  for (int i = 0; i < a->nmeta; i++) cr_assert_str_eq(bpcrt_st_meta(b, a->meta_keys[i]), a->meta_vals[i]);
}

Test(st, round_trip_all_dtypes_and_ranks) {
  bpcrt_tensors s = {0}, r;
  build_set(&s);
  char err[512];
  const char *p = in_tmp("rt.safetensors");
  cr_assert_eq(bpcrt_st_write(p, &s, err, sizeof err), 0, "%s", err);
  cr_assert_eq(bpcrt_st_read(p, &r, err, sizeof err), 0, "%s", err);
  assert_same(&s, &r);
  const bpcrt_tensor *t = bpcrt_st_find(&r, "t.F64.r0");
  cr_assert_not_null(t);
  cr_assert_eq(t->rank, 0);
  cr_assert_eq(bpcrt_numel(t), 1);
  cr_assert_null(bpcrt_st_find(&r, "nope"));
  // Overwriting leaves exactly one file and no temp.
  bpcrt_st_set_meta(&s, "step", "1300");
  cr_assert_eq(bpcrt_st_write(p, &s, err, sizeof err), 0, "%s", err);
  cr_assert_eq(count_files(tmpdir), 1);
  bpcrt_st_free(&r);
  cr_assert_eq(bpcrt_st_read(p, &r, err, sizeof err), 0, "%s", err);
  cr_assert_str_eq(bpcrt_st_meta(&r, "step"), "1300");
  bpcrt_st_free(&r);
  bpcrt_st_free(&s);
  cr_assert_eq(s.n, 0);
  cr_assert_null(s.t);
}

Test(st, empty_set) {
  bpcrt_tensors s = {0}, r;
  char err[256];
  const char *p = in_tmp("empty.safetensors");
  cr_assert_eq(bpcrt_st_write(p, &s, err, sizeof err), 0, "%s", err);
  size_t n;
  unsigned char *b = slurp(p, &n);
  cr_assert_eq(n, 16);
  cr_assert_eq(memcmp(b, "\x08\0\0\0\0\0\0\0{}      ", 16), 0);
  free(b);
  cr_assert_eq(bpcrt_st_read(p, &r, err, sizeof err), 0, "%s", err);
  cr_assert_eq(r.n, 0);
  cr_assert_eq(r.nmeta, 0);
  bpcrt_st_free(&r);
}

// ---- the exact bytes -----------------------------------------------------

static void expect_file(const char *p, const char *json, const void *data, size_t ndata) {
  size_t hl = strlen(json), pad = (8 - hl % 8) % 8, n;
  unsigned char *b = slurp(p, &n);
  cr_assert_eq(n, 8 + hl + pad + ndata);
  uint64_t len = 0;
  for (int i = 7; i >= 0; i--) len = len << 8 | b[i];
  cr_assert_eq(len, hl + pad);
  cr_assert_eq((8 + len) % 8, 0, "data must start 8-byte aligned");
  cr_assert_eq(memcmp(b + 8, json, hl), 0, "header: %.*s", (int)len, (char *)b + 8);
  for (size_t i = 0; i < pad; i++) cr_assert_eq(b[8 + hl + i], ' ');
  cr_assert_eq(memcmp(b + 8 + len, data, ndata), 0);
  free(b);
}

Test(st, exact_layout) {
  bpcrt_tensors s = {0};
  float a[2] = {1.0f, 2.0f};
  int32_t ids[3] = {1, -1, 256};
  cr_assert_not_null(bpcrt_st_add(&s, "a", BPCRT_F32, 1, (int64_t[]){2}, a));
  char err[256];
  const char *p = in_tmp("tiny.safetensors");
  cr_assert_eq(bpcrt_st_write(p, &s, err, sizeof err), 0, "%s", err);
  static const unsigned char da[] = {0, 0, 0x80, 0x3f, 0, 0, 0, 0x40};
  expect_file(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", da, 8);

  cr_assert_not_null(bpcrt_st_add(&s, "i\"d", BPCRT_I32, 2, (int64_t[]){1, 3}, ids));
  cr_assert_not_null(bpcrt_st_add(&s, "s", BPCRT_F64, 0, NULL, (double[]){-2.0}));
  bpcrt_st_set_meta(&s, "step", "3");
  bpcrt_st_set_meta(&s, "e", "\t\n\r\b\f\x01\x1f/\\\"\x7f\xc3\xa9");
  cr_assert_eq(bpcrt_st_write(p, &s, err, sizeof err), 0, "%s", err);
  static const unsigned char db[] = {0,    0,    0x80, 0x3f, 0, 0, 0, 0x40, 1, 0, 0, 0, 0xff, 0xff,
                                     0xff, 0xff, 0,    1,    0, 0, 0, 0,    0, 0, 0, 0, 0,    0xc0};
  expect_file(p,
              "{\"__metadata__\":{\"step\":\"3\","
              "\"e\":\"\\t\\n\\r\\b\\f\\u0001\\u001f/\\\\\\\"\x7f\xc3\xa9\"},"
              "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"i\\\"d\":{\"dtype\":\"I32\",\"shape\":[1,3],\"data_offsets\":[8,20]},"
              "\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[20,28]}}",
              db, sizeof db);
  bpcrt_st_free(&s);
}

// ---- the reference library's file -----------------------------------------

Test(st, reads_reference_fixture) {
  bpcrt_tensors r;
  char err[512];
  const char *p = BPC_SOURCE_DIR "/tests/data/fixture.safetensors";
  cr_assert_eq(bpcrt_st_read(p, &r, err, sizeof err), 0, "%s", err);
  cr_assert_eq(r.n, 6);
  cr_assert_str_eq(bpcrt_st_meta(&r, "step"), "42");
  cr_assert_str_eq(bpcrt_st_meta(&r, "seed"), "7");
  cr_assert_str_eq(bpcrt_st_meta(&r, "format"), "bpc-1");
  cr_assert_str_eq(bpcrt_st_meta(&r, "note"), "h\xc3\xa9llo \"x\"\n");

  const bpcrt_tensor *w = bpcrt_st_find(&r, "w");
  cr_assert(w && w->dtype == BPCRT_F32 && w->rank == 2 && w->shape[0] == 2 && w->shape[1] == 3);
  double wd[6];
  cr_assert_eq(bpcrt_st_to_f64(w, wd), 0);
  for (int i = 0; i < 6; i++) cr_assert_eq(wd[i], i * 0.5 - 1.0);

  const bpcrt_tensor *b = bpcrt_st_find(&r, "b");
  cr_assert(b && b->dtype == BPCRT_F64 && b->rank == 1 && b->shape[0] == 3);
  double bd[3];
  cr_assert_eq(bpcrt_st_to_f64(b, bd), 0);
  cr_assert_eq(bd[0], 1.0 / 3.0);
  cr_assert_eq(bd[1], -2.5e-300);
  cr_assert_eq(bd[2], 1e300);
  float bf[3];
  cr_assert_eq(bpcrt_st_to_f32(b, bf), 0);
  cr_assert_eq(bf[0], (float)(1.0 / 3.0));
  cr_assert(bf[1] == 0 && signbit(bf[1]));
  cr_assert(isinf(bf[2]));

  const bpcrt_tensor *loss = bpcrt_st_find(&r, "loss");
  cr_assert(loss && loss->rank == 0 && loss->nbytes == 8);
  cr_assert_eq(*(double *)loss->data, 0.125);

  const bpcrt_tensor *ids = bpcrt_st_find(&r, "ids");
  cr_assert(ids && ids->dtype == BPCRT_I32 && ids->rank == 2);
  const int32_t want[4] = {0, -1, INT32_MAX, INT32_MIN};
  cr_assert_eq(memcmp(ids->data, want, 16), 0);
  cr_assert_eq(bpcrt_st_to_f64(ids, wd), -1, "an integer is not a float");

  const bpcrt_tensor *e = bpcrt_st_find(&r, "empty");
  cr_assert(e && e->rank == 2 && e->shape[0] == 0 && e->shape[1] == 4 && e->nbytes == 0);
  cr_assert_not_null(e->data);
  cr_assert_eq(bpcrt_st_to_f32(e, bf), 0);

  const bpcrt_tensor *y = bpcrt_st_find(&r, "yL.0.w");
  cr_assert(y && y->rank == 4 && bpcrt_numel(y) == 4);
  for (int i = 0; i < 4; i++) cr_assert_eq(((float *)y->data)[i], 7.0f);

  // Written back in the order read, it is the reference's file byte for byte:
  // same JSON (key order, escapes, spacing), same padding, same data.
  const char *q = in_tmp("rewrite.safetensors");
  cr_assert_eq(bpcrt_st_write(q, &r, err, sizeof err), 0, "%s", err);
  size_t n1, n2;
  unsigned char *b1 = slurp(p, &n1), *b2 = slurp(q, &n2);
  cr_assert(n1 == n2 && memcmp(b1, b2, n1) == 0, "rewrite differs: %.*s", (int)n2 - 8, b2 + 8);
  free(b1), free(b2);
  bpcrt_st_free(&r);
}

// ---- the set API -------------------------------------------------------

Test(st, set_api_rejects_bad_tensors) {
  bpcrt_tensors s = {0};
  int64_t sh[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  cr_assert_not_null(bpcrt_st_add(&s, "x", BPCRT_F32, 1, sh, NULL));
  cr_assert_null(bpcrt_st_add(&s, "x", BPCRT_F64, 1, sh, NULL), "duplicate");
  cr_assert_null(bpcrt_st_add(&s, "y", BPCRT_F32, 9, sh, NULL), "rank 9");
  cr_assert_null(bpcrt_st_add(&s, "y", BPCRT_F32, -1, sh, NULL));
  cr_assert_null(bpcrt_st_add(&s, "y", BPCRT_F32, 1, (int64_t[]){-2}, NULL));
  cr_assert_null(bpcrt_st_add(&s, "y", (bpcrt_dtype)99, 1, sh, NULL));
  cr_assert_null(bpcrt_st_add(&s, "y", BPCRT_F64, 3, (int64_t[]){1LL << 40, 1LL << 40, 1LL << 40}, NULL));
  cr_assert_eq(s.n, 1);
  cr_assert_eq(((float *)s.t[0].data)[0], 0.0f, "NULL data gives zeros");
  bpcrt_st_set_meta(&s, "k", "1");
  bpcrt_st_set_meta(&s, "k", "2");
  cr_assert_eq(s.nmeta, 1);
  cr_assert_str_eq(bpcrt_st_meta(&s, "k"), "2");
  cr_assert_null(bpcrt_st_meta(&s, "j"));
  cr_assert_eq(bpcrt_dtype_size(BPCRT_F64), 8);
  cr_assert_str_eq(bpcrt_dtype_name(BPCRT_I32), "I32");
  bpcrt_st_free(&s);
}

Test(st, write_rejects_bad_sets) {
  bpcrt_tensors s = {0};
  char err[256];
  const char *p = in_tmp("bad.safetensors");
  cr_assert_not_null(bpcrt_st_add(&s, "a", BPCRT_F32, 1, (int64_t[]){2}, NULL));
  cr_assert_not_null(bpcrt_st_add(&s, "b", BPCRT_F32, 1, (int64_t[]){2}, NULL));
  free(s.t[1].name);
  s.t[1].name = strdup("a");  // only a caller poking at the struct can do this
  cr_assert_eq(bpcrt_st_write(p, &s, err, sizeof err), -1);
  cr_assert(strstr(err, "'a' occurs twice"), "%s", err);
  free(s.t[1].name);
  s.t[1].name = strdup("__metadata__");
  cr_assert_eq(bpcrt_st_write(p, &s, err, sizeof err), -1);
  free(s.t[1].name);
  s.t[1].name = strdup("b");
  s.t[1].nbytes = 4;
  cr_assert_eq(bpcrt_st_write(p, &s, err, sizeof err), -1);
  cr_assert(strstr(err, "'b' has a bad dtype, shape or size"), "%s", err);
  s.t[1].nbytes = 8;
  s.t[1].name[0] = (char)0xff;
  cr_assert_eq(bpcrt_st_write(p, &s, err, sizeof err), -1);
  s.t[1].name[0] = 'b';
  cr_assert_eq(count_files(tmpdir), 0, "nothing written");
  cr_assert_eq(bpcrt_st_write(p, &s, NULL, 0), 0, "err may be NULL");
  bpcrt_st_free(&s);
}

// ---- hostile files -------------------------------------------------------

// A file made of an explicit header length, header bytes and `ndata` data bytes.
static const char *make_raw(uint64_t hlen, const char *hdr, size_t hn, size_t ndata) {
  size_t n = 8 + hn + ndata;
  unsigned char *b = calloc(1, n);
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)(hlen >> (8 * i));
  memcpy(b + 8, hdr, hn);
  for (size_t i = 0; i < ndata; i++) b[8 + hn + i] = (unsigned char)(i * 37 + 1);
  const char *p = in_tmp("hostile.safetensors");
  spit(p, b, n);
  free(b);
  return p;
}

static const char *make_hdr(const char *hdr, size_t ndata) { return make_raw(strlen(hdr), hdr, strlen(hdr), ndata); }

// Reading p must fail with an error naming p and containing `want`.
static void expect_fail(const char *p, const char *want) {
  bpcrt_tensors r;
  char err[512];
  memset(&r, 0x5a, sizeof r);
  int rc = bpcrt_st_read(p, &r, err, sizeof err);
  cr_assert_eq(rc, -1, "expected failure '%s'", want);
  cr_assert(r.n == 0 && r.t == NULL && r.nmeta == 0 && r.meta_keys == NULL, "out must be empty");
  cr_assert_eq(strncmp(err, p, strlen(p)), 0, "error must name the file: %s", err);
  cr_assert(strstr(err, want), "error '%s' lacks '%s'", err, want);
}

#define T(body) "{" body "}"
#define F32x2(off) "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":" off "}"

// One row per validation rule: header, data bytes, expected error text.
static const struct {
  const char *hdr;
  size_t ndata;
  const char *want;
} bad_headers[] = {
    {"", 0, "does not start with '{'"},
    {" {}", 0, "does not start with '{'"},
    {"[1]", 0, "does not start with '{'"},
    {"{\"a\":", 0, "invalid JSON in the header near offset"},
    {"{\"a\":1,}", 0, "invalid JSON"},
    {"{}x", 0, "unexpected bytes after the JSON header at offset 10"},
    {"{}\x01", 0, "bad byte 0x01 in the header at offset 10"},
    {"{\"\xff\":1}", 0, "bad byte 0xff in the header at offset 10"},
    {"{\"\xc0\x80\":1}", 0, "bad byte 0xc0"},                   // overlong NUL
    {"{\"\xed\xa0\x80\":1}", 0, "bad byte 0xed"},               // surrogate
    {"{\"a\\u0000b\":1}", 0, "\\u0000 escape at offset 11"},
    {T("\"w\":1"), 0, "header entry 'w' is not an object"},
    {T("\"w\":[]"), 0, "header entry 'w' is not an object"},
    {T("\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}"), 1,
     "unsupported dtype 'F8_E4M3' for tensor 'w' (bpc reads F32, F64, F16, BF16, I64, I32"},
    {T("\"w\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}"), 4, "unsupported dtype 'f32'"},
    {T("\"w\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}"), 4, "dtype of tensor 'w' is not a string"},
    {T("\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}"), 4, "tensor 'w' has no 'dtype'"},
    {T("\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}"), 4, "tensor 'w' has no 'shape'"},
    {T("\"w\":{\"dtype\":\"F32\",\"shape\":[1]}"), 4, "tensor 'w' has no 'data_offsets'"},
    {T("\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}"), 4, "tensor 'w': unknown key 'x'"},
    {T("\"w\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}"), 4,
     "tensor 'w': duplicate key 'dtype'"},
    {T("\"w\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}"), 4, "shape of tensor 'w' is not a list"},
    {T("\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}"), 4, "not a list of non-negative integers"},
    {T("\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}"), 4, "not a list of non-negative integers"},
    {T("\"w\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}"), 4, "not a list of non-negative integers"},
    {T("\"w\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,4]}"), 4, "not a list of non-negative integers"},
    {T("\"w\":{\"dtype\":\"F32\",\"shape\":[[1]],\"data_offsets\":[0,4]}"), 4, "not a list of non-negative integers"},
    {T("\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}"), 4,
     "tensor 'w' has rank 9; bpc reads rank <= 8"},
    {T("\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}"), 4,
     "tensor 'w': element count overflows"},
    {T("\"w\":{\"dtype\":\"F64\",\"shape\":[4503599627370496,4096],\"data_offsets\":[0,4]}"), 4,
     "tensor 'w': element count overflows"},
    {T("\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}"), 8,
     "data_offsets of tensor 'w' is not a list of two"},
    {T("\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}"), 8, "not a list of two"},
    {T("\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,-8]}"), 8, "not a list of two"},
    {T("\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":{}}"), 8, "not a list of two"},
    {T("\"w\":" F32x2("[8,0]")), 8, "data_offsets [8, 0] end before they begin"},
    {T("\"w\":" F32x2("[0,4]")), 8, "data_offsets [0, 4] hold 4 bytes but its shape and dtype F32 need 8"},
    {T("\"w\":" F32x2("[8,16]")), 8, "tensor 'w': data_offsets [8, 16] run past the data buffer (8 bytes"},
    {T("\"w\":" F32x2("[9007199254740984,9007199254740992]")), 8, "run past the data buffer"},
    {T("\"a\":" F32x2("[0,8]") ",\"b\":" F32x2("[4,12]")), 12, "tensor 'b' (data offset 4, file offset"},
    {T("\"a\":" F32x2("[0,8]") ",\"b\":" F32x2("[0,8]")), 8, "overlaps tensor 'a'"},
    {T("\"a\":" F32x2("[0,8]") ",\"b\":" F32x2("[12,20]")), 20, "4 unused bytes before tensor 'b'"},
    {T("\"a\":" F32x2("[4,12]")), 12, "4 unused bytes before tensor 'a'"},
    {T("\"a\":" F32x2("[0,8]")), 9, "1 trailing bytes after the last tensor"},
    {T("\"a\":" F32x2("[0,8]") ",\"a\":" F32x2("[8,16]")), 16, "the header has 'a' twice"},
    {T("\"__metadata__\":{\"k\":1}"), 0, "__metadata__ value of 'k' is not a string"},
    {T("\"__metadata__\":{\"k\":null}"), 0, "__metadata__ value of 'k' is not a string"},
    {T("\"__metadata__\":[\"k\"]"), 0, "__metadata__ is not an object"},
    {T("\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}"), 0, "__metadata__ has key 'k' twice"},
    {T("\"__metadata__\":{},\"__metadata__\":{}"), 0, "the header has '__metadata__' twice"},
    {T("\"\x1b[31m\":1"), 0, "bad byte 0x1b"},
};

Test(st, hostile_headers) {
  for (size_t i = 0; i < sizeof bad_headers / sizeof *bad_headers; i++) {
    cr_log_info("case %zu: %s", i, bad_headers[i].hdr);
    expect_fail(make_hdr(bad_headers[i].hdr, bad_headers[i].ndata), bad_headers[i].want);
  }
}

Test(st, hostile_lengths_and_files) {
  expect_fail(make_raw(0, "", 0, 0), "does not start with '{'");
  const char *p = in_tmp("short.safetensors");
  spit(p, "\x02\0\0", 3);
  expect_fail(p, "the file is 3 bytes, too short");
  spit(p, "", 0);
  expect_fail(p, "the file is 0 bytes");
  expect_fail(make_raw(3, "{}", 2, 0), "header length 3 at offset 0 runs past the end of the file (10 bytes)");
  expect_fail(make_raw(100000001, "{}", 2, 0), "header length 100000001 at offset 0 is over the 100 MB limit");
  expect_fail(make_raw(UINT64_MAX, "{}", 2, 0), "is over the 100 MB limit");
  expect_fail(in_tmp("missing.safetensors"), "No such file or directory");
  expect_fail(tmpdir, "not a regular file");
  // Valid variants the reference accepts: trailing whitespace, zero-size tensors
  // anywhere in the tiling, no tensors at all.
  bpcrt_tensors r;
  char err[512];
  const char *ok =
      T("\"z\":{\"dtype\":\"I32\",\"shape\":[3,0],\"data_offsets\":[8,8]},"
        "\"a\":" F32x2("[0,8]") ",\"y\":{\"dtype\":\"F64\",\"shape\":[0],\"data_offsets\":[0,0]}") " \n ";
  cr_assert_eq(bpcrt_st_read(make_hdr(ok, 8), &r, err, sizeof err), 0, "%s", err);
  cr_assert_eq(r.n, 3);
  cr_assert_str_eq(r.t[0].name, "z", "header order is kept");
  bpcrt_st_free(&r);
}

// A good file of several tensors and metadata, as bytes.
static unsigned char *good_file(size_t *n) {
  bpcrt_tensors s = {0};
  build_set(&s);
  char err[256];
  const char *p = in_tmp("good.safetensors");
  cr_assert_eq(bpcrt_st_write(p, &s, err, sizeof err), 0, "%s", err);
  bpcrt_st_free(&s);
  unsigned char *b = slurp(p, n);
  unlink(p);
  return b;
}

Test(st, every_truncation_fails_cleanly) {
  size_t n;
  unsigned char *b = good_file(&n);
  const char *p = in_tmp("trunc.safetensors");
  spit(p, b, n);
  for (size_t len = 0; len < n; len++) {
    cr_assert_eq(truncate(p, (off_t)len), 0);
    expect_fail(p, "");
  }
  spit(p, b, n);
  bpcrt_tensors r;
  char err[256];
  cr_assert_eq(bpcrt_st_read(p, &r, err, sizeof err), 0, "%s", err);
  bpcrt_st_free(&r);
  free(b);
}

// Flipped bytes in the length and the header: each read succeeds or fails
// with a message; never a crash or a sanitizer report.
Test(st, flipped_header_bytes) {
  size_t n;
  unsigned char *b = good_file(&n);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = hlen << 8 | b[i];
  const char *p = in_tmp("flip.safetensors");
  static const unsigned char subs[] = {'"', '{', '}', '[', ']', ',', ':', '0', '9', '-', ' ', '\\', 0};
  int ok = 0, failed = 0;
  spit(p, b, n);
  int fd = open(p, O_WRONLY);
  cr_assert_geq(fd, 0);
  for (size_t i = 0; i < 8 + hlen; i++) {
    unsigned char orig = b[i];
    for (int k = 0; k < 8 + (int)sizeof subs; k++) {
      b[i] = k < 8 ? orig ^ (unsigned char)(1u << k) : subs[k - 8];
      if (b[i] == orig) continue;
      cr_assert_eq(pwrite(fd, &b[i], 1, (off_t)i), 1);
      bpcrt_tensors r;
      char err[512] = "";
      if (bpcrt_st_read(p, &r, err, sizeof err) == 0) {
        ok++;
        bpcrt_st_free(&r);
      } else {
        failed++;
        cr_assert_eq(strncmp(err, p, strlen(p)), 0, "%s", err);
        cr_assert_gt(strlen(err), strlen(p) + 2);
        cr_assert_eq(r.n, 0);
      }
    }
    b[i] = orig;
    cr_assert_eq(pwrite(fd, &b[i], 1, (off_t)i), 1);
  }
  close(fd);
  cr_log_info("flips: %d read fine, %d rejected", ok, failed);
  cr_assert_gt(failed, 1000);
  free(b);
}

// ---- atomic writes ---------------------------------------------------------

static bpcrt_tensors one_tensor(float v, int64_t n) {
  bpcrt_tensors s = {0};
  bpcrt_tensor *t = bpcrt_st_add(&s, "x", BPCRT_F32, 1, &n, NULL);
  for (int64_t i = 0; i < n; i++) ((float *)t->data)[i] = v;
  char buf[32];
  snprintf(buf, sizeof buf, "%g", v);
  bpcrt_st_set_meta(&s, "gen", buf);
  return s;
}

// PATH is a complete file whose every element equals its "gen" metadata.
static float check_consistent(const char *p) {
  bpcrt_tensors r;
  char err[512];
  cr_assert_eq(bpcrt_st_read(p, &r, err, sizeof err), 0, "%s", err);
  const bpcrt_tensor *t = bpcrt_st_find(&r, "x");
  cr_assert_not_null(t);
  float gen = strtof(bpcrt_st_meta(&r, "gen"), NULL);
  const float *x = t->data;
  for (int64_t i = 0; i < bpcrt_numel(t); i++) cr_assert_eq(x[i], gen, "element %lld", (long long)i);
  bpcrt_st_free(&r);
  return gen;
}

Test(st, write_into_missing_folder) {
  bpcrt_tensors s = one_tensor(1, 4);
  char err[512], p[300];
  snprintf(p, sizeof p, "%s/no/such/dir/x.safetensors", tmpdir);
  cr_assert_eq(bpcrt_st_write(p, &s, err, sizeof err), -1);
  cr_assert(strstr(err, p) == err && strstr(err, "No such file or directory"), "%s", err);
  cr_assert_eq(count_files(tmpdir), 0);
  // Over a folder: the temp (beside it, in /tmp) is made, the rename fails.
  cr_assert_eq(bpcrt_st_write(tmpdir, &s, err, sizeof err), -1, "a folder is not a file");
  char tmp[300];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", tmpdir, (long)getpid());
  cr_assert_neq(access(tmp, F_OK), 0, "the temp is removed: %s", err);
  cr_assert(strstr(err, "Is a directory"), "%s", err);
  bpcrt_st_free(&s);
}

static int writes_left;

// Writes the first `writes_left` calls in full, then half a buffer, then ENOSPC.
static ssize_t full_disk_write(int fd, const void *buf, size_t n) {
  if (writes_left-- > 0) return write(fd, buf, n);
  if (writes_left == -1 && n > 1) return write(fd, buf, n / 2);
  errno = ENOSPC;
  return -1;
}

Test(st, injected_enospc_keeps_old_file) {
  const char *p = in_tmp("ckpt.safetensors");
  bpcrt_tensors old = one_tensor(1, 1000), neu = one_tensor(2, 100000);
  char err[512];
  cr_assert_eq(bpcrt_st_write(p, &old, err, sizeof err), 0, "%s", err);
  size_t n0;
  unsigned char *before = slurp(p, &n0);
  for (int k = 0; k < 3; k++) {  // fail in the length, the header, the data
    writes_left = k;
    bpcrt_st_test_write = full_disk_write;
    int rc = bpcrt_st_write(p, &neu, err, sizeof err);
    bpcrt_st_test_write = write;
    cr_assert_eq(rc, -1);
    char want[300];
    snprintf(want, sizeof want, "%s: No space left on device", p);
    cr_assert_str_eq(err, want);
    size_t n1;
    unsigned char *after = slurp(p, &n1);
    cr_assert(n1 == n0 && memcmp(before, after, n0) == 0, "old file changed");
    free(after);
    cr_assert_eq(count_files(tmpdir), 1, "temp left behind");
  }
  cr_assert_eq(check_consistent(p), 1.0f);
  free(before);
  bpcrt_st_free(&old);
  bpcrt_st_free(&neu);
}

// A real full disk: a 256 KB tmpfs in a private mount namespace (gone with
// this test's process). Skipped where we may not mount (not root, no userns).
Test(st, real_enospc_on_tiny_tmpfs) {
  char mnt[300];
  snprintf(mnt, sizeof mnt, "%s/mnt", tmpdir);
  cr_assert_eq(mkdir(mnt, 0700), 0);
  if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
      mount("tmpfs", mnt, "tmpfs", 0, "size=256k") != 0) {
    rmdir(mnt);
    cr_skip_test("cannot mount a tmpfs here (%s)", strerror(errno));
  }
  char p[320];
  snprintf(p, sizeof p, "%s/ckpt.safetensors", mnt);
  bpcrt_tensors old = one_tensor(3, 1000), neu = one_tensor(4, 100000);
  char err[512];
  cr_assert_eq(bpcrt_st_write(p, &old, err, sizeof err), 0, "%s", err);
  cr_assert_eq(bpcrt_st_write(p, &neu, err, sizeof err), -1);
  cr_assert(strstr(err, "No space left on device"), "%s", err);
  cr_assert_eq(check_consistent(p), 3.0f);
  cr_assert_eq(count_files(mnt), 1, "temp left behind");
  umount(mnt);
  rmdir(mnt);
  bpcrt_st_free(&old);
  bpcrt_st_free(&neu);
}

// A child rewrites a 50 MB file in a loop and is SIGKILLed at some point; the
// file must then be the old one or a complete new one, never a torn one.
Test(st, sigkill_mid_write_leaves_loadable_file, .timeout = 120) {
  const char *p = in_tmp("big.safetensors");
  bpcrt_tensors old = one_tensor(-1, 16);
  char err[512];
  cr_assert_eq(bpcrt_st_write(p, &old, err, sizeof err), 0, "%s", err);
  bpcrt_st_free(&old);
  static const int delays_ms[] = {20, 5, 60, 150, 400};
  int saw_new = 0;
  for (size_t k = 0; k < sizeof delays_ms / sizeof *delays_ms; k++) {
    int pfd[2];
    cr_assert_eq(pipe(pfd), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
      close(pfd[0]);
      bpcrt_tensors s = one_tensor(0, 50 << 18);  // 50 MB of f32
      cr_assert_eq(write(pfd[1], "r", 1), 1);
      for (int gen = 1;; gen++) {
        float *x = s.t[0].data;
        for (int64_t i = 0; i < (50 << 18); i++) x[i] = (float)gen;
        char g[16];
        snprintf(g, sizeof g, "%d", gen);
        bpcrt_st_set_meta(&s, "gen", g);
        if (bpcrt_st_write(p, &s, NULL, 0) != 0) _exit(3);
      }
    }
    close(pfd[1]);
    char c;
    cr_assert_eq(read(pfd[0], &c, 1), 1);
    close(pfd[0]);
    nanosleep(&(struct timespec){0, delays_ms[k] * 1000000L}, NULL);
    kill(pid, SIGKILL);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status), "the child was still writing");
    float gen = check_consistent(p);
    saw_new |= gen > 0;
    cr_log_info("killed after %d ms: file holds generation %g", delays_ms[k], gen);
  }
  cr_log_info("a complete new file was seen: %s", saw_new ? "yes" : "no");
}

// Other frameworks' dtypes (SPEC 6.3): F16 and BF16 widen exactly to F32 and
// F64; integer tensors (a BERT's position_ids, I64) are read and carried,
// never converted to floats.
Test(st, reads_f16_bf16_and_foreign_ints) {
  static const uint16_t h[] = {0x3c00, 0xc100, 0x7bff, 0x0001, 0x03ff, 0x7c00, 0x8000};
  static const double hv[] = {1, -2.5, 65504, 0x1p-24, 0x3ffp-24, INFINITY, -0.0};
  static const uint16_t b[] = {0x3f80, 0xc020, 0x0001, 0xff80};
  static const double bv[] = {1, -2.5, 0x1p-133, -INFINITY};
  const char *hdr =
      "{\"h\":{\"dtype\":\"F16\",\"shape\":[7],\"data_offsets\":[0,14]},"
      "\"b\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[14,22]},"
      "\"p\":{\"dtype\":\"I64\",\"shape\":[1,3],\"data_offsets\":[22,46]}}";
  size_t hn = strlen(hdr), n = 8 + hn + 46;
  unsigned char *buf = calloc(1, n);
  for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hn >> (8 * i));
  memcpy(buf + 8, hdr, hn);
  memcpy(buf + 8 + hn, h, 14);
  memcpy(buf + 8 + hn + 14, b, 8);
  int64_t pos[3] = {0, 1, 2};
  memcpy(buf + 8 + hn + 22, pos, 24);
  const char *p = in_tmp("foreign.safetensors");
  spit(p, buf, n);
  free(buf);
  bpcrt_tensors r;
  char err[256];
  cr_assert_eq(bpcrt_st_read(p, &r, err, sizeof err), 0, "%s", err);
  const bpcrt_tensor *th = bpcrt_st_find(&r, "h"), *tb = bpcrt_st_find(&r, "b"), *tp = bpcrt_st_find(&r, "p");
  cr_assert(th && tb && tp);
  cr_assert(th->dtype == BPCRT_F16 && tb->dtype == BPCRT_BF16 && tp->dtype == BPCRT_I64);
  cr_assert(bpcrt_dtype_is_float(BPCRT_BF16) && !bpcrt_dtype_is_float(BPCRT_I64));
  cr_assert_str_eq(bpcrt_dtype_name(BPCRT_BF16), "BF16");
  double d[7];
  float f[7];
  cr_assert_eq(bpcrt_st_to_f64(th, d), 0);
  cr_assert_eq(bpcrt_st_to_f32(th, f), 0);
  for (int i = 0; i < 7; i++) {
    cr_assert(d[i] == hv[i] && signbit(d[i]) == signbit(hv[i]), "f16 [%d] = %g, want %g", i, d[i], hv[i]);
    cr_assert((double)f[i] == hv[i], "f16 as f32 [%d] = %g", i, (double)f[i]);
  }
  cr_assert_eq(bpcrt_st_to_f64(tb, d), 0);
  for (int i = 0; i < 4; i++) cr_assert(d[i] == bv[i], "bf16 [%d] = %g, want %g", i, d[i], bv[i]);
  cr_assert_eq(bpcrt_st_to_f64(tp, d), -1, "integers are not converted");
  cr_assert_eq(memcmp(tp->data, pos, 24), 0);
  bpcrt_st_free(&r);
}
