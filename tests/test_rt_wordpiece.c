// test_rt_wordpiece.c — runtime/wordpiece.c: the ids and mask of every line of
// tests/data/wordpiece/sample.txt against Hugging Face's BertTokenizer
// (ref.safetensors, written by make_ref.py) for T=16 and 128 uncased and 128
// cased; WordPiece's greedy rule on a small vocab; truncation and padding;
// invalid UTF-8; and every vocab error naming its file and line.
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bpc.h"

#define DATA BPC_SOURCE_DIR "/tests/data/wordpiece/"

static char tmpdir[64];

static void setup(void) {
  strcpy(tmpdir, "/tmp/bpc-wp-XXXXXX");
  cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  cr_assert_eq(system(cmd), 0);
}

TestSuite(wordpiece, .init = setup, .fini = teardown);

// Writes `n` bytes to tmpdir/name; returns the path (in `path`).
static const char *write_file(char *path, size_t pathlen, const char *name, const char *s, size_t n) {
  snprintf(path, pathlen, "%s/%s", tmpdir, name);
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f);
  cr_assert_eq(fwrite(s, 1, n, f), n);
  cr_assert_eq(fclose(f), 0);
  return path;
}

static char *read_all(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "%s", path);
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)size + 1);
  cr_assert_eq(fread(buf, 1, (size_t)size, f), (size_t)size);
  fclose(f);
  *n = (size_t)size;
  return buf;
}

static bpcrt_wordpiece *bert_vocab(void) {
  char err[512] = "";
  bpcrt_wordpiece *wp = bpcrt_wp_load(DATA "vocab.txt", err, sizeof err);
  cr_assert_not_null(wp, "%s", err);
  return wp;
}

static void check_reference(const char *name, int T, int cased) {
  bpcrt_wordpiece *wp = bert_vocab();
  cr_assert_eq(bpcrt_wp_size(wp), 30522);
  bpcrt_tensors ref;
  char err[512], key[64];
  cr_assert_eq(bpcrt_st_read(DATA "ref.safetensors", &ref, err, sizeof err), 0, "%s", err);
  snprintf(key, sizeof key, "%s.ids", name);
  const bpcrt_tensor *rids = bpcrt_st_find(&ref, key);
  snprintf(key, sizeof key, "%s.mask", name);
  const bpcrt_tensor *rmask = bpcrt_st_find(&ref, key);
  cr_assert(rids && rmask && rids->dtype == BPCRT_I32 && rmask->dtype == BPCRT_F32);
  cr_assert_eq(rids->shape[1], T);
  size_t size;
  char *text = read_all(DATA "sample.txt", &size);
  int32_t ids[128];
  float mask[128];
  int64_t line = 0;
  for (size_t i = 0; i < size; line++) {
    const char *nl = memchr(text + i, '\n', size - i);
    cr_assert_not_null(nl);
    size_t end = (size_t)(nl - text), n = end - i;
    if (n && text[end - 1] == '\r') n--;
    cr_assert_lt(line, rids->shape[0]);
    int ntok = bpcrt_wp_encode(wp, text + i, n, cased, T, ids, mask, NULL);
    const int32_t *want = (const int32_t *)rids->data + line * T;
    const float *wmask = (const float *)rmask->data + line * T;
    cr_assert_geq(ntok, 2);
    for (int k = 0; k < T; k++) {
      cr_expect_eq(ids[k], want[k], "%s: sample.txt:%lld position %d: id %d, HF %d", name, (long long)line + 1, k,
                   ids[k], want[k]);
      cr_expect_eq(mask[k], wmask[k], "%s: sample.txt:%lld position %d: mask", name, (long long)line + 1, k);
    }
    int nref = 0;
    for (int k = 0; k < T; k++) nref += wmask[k] != 0;
    cr_expect_eq(ntok, nref, "sample.txt:%lld: %d tokens, HF %d", (long long)line + 1, ntok, nref);
    i = end + 1;
  }
  cr_expect_eq(line, rids->shape[0]);
  free(text);
  bpcrt_st_free(&ref);
  bpcrt_wp_free(wp);
}

Test(wordpiece, hf_reference_uncased_16) { check_reference("uncased16", 16, 0); }
Test(wordpiece, hf_reference_uncased_128) { check_reference("uncased128", 128, 0); }
Test(wordpiece, hf_reference_cased_128) { check_reference("cased128", 128, 1); }

// A small vocab: "[PAD] [UNK] [CLS] [SEP] un ##aff ##able ##a a ##ff ! ##!".
static bpcrt_wordpiece *small_vocab(void) {
  static const char v[] = "[PAD]\n[UNK]\r\n[CLS]\n[SEP]\nun\n##aff\n##able\n##a\na\n##ff\n!\n##!\nb\nx";
  char path[128], err[256] = "";
  bpcrt_wordpiece *wp = bpcrt_wp_load(write_file(path, sizeof path, "v.txt", v, sizeof v - 1), err, sizeof err);
  cr_assert_not_null(wp, "%s", err);
  cr_assert_eq(bpcrt_wp_size(wp), 14);
  cr_assert_eq(bpcrt_wp_id(wp, "[UNK]", 5), 1);  // the "\r" of "\r\n" is not part of the token
  cr_assert_eq(bpcrt_wp_id(wp, "x", 1), 13);     // a last line without a newline counts
  cr_assert_eq(bpcrt_wp_id(wp, "y", 1), -1);
  size_t len;
  cr_assert_eq(memcmp(bpcrt_wp_token(wp, 5, &len), "##aff", 5), 0);
  cr_assert_eq(len, 5);
  cr_assert_null(bpcrt_wp_token(wp, 14, &len));
  return wp;
}

static int enc(const bpcrt_wordpiece *wp, const char *s, int cased, int T, int32_t *ids, float *mask) {
  return bpcrt_wp_encode(wp, s, strlen(s), cased, T, ids, mask, NULL);
}

#define EXPECT_IDS(got, n, ...)                                                                      \
  do {                                                                                               \
    const int32_t want_[] = {__VA_ARGS__};                                                           \
    cr_assert_eq((int)(sizeof want_ / sizeof *want_), n);                                            \
    for (int k_ = 0; k_ < n; k_++)                                                                   \
      cr_expect_eq((got)[k_], want_[k_], "position %d: %d, want %d", k_, (int)(got)[k_], want_[k_]); \
  } while (0)

Test(wordpiece, greedy_longest_match_first) {
  bpcrt_wordpiece *wp = small_vocab();
  int32_t ids[8];
  float mask[8];
  cr_expect_eq(enc(wp, "unaffable", 0, 8, ids, mask), 5);
  EXPECT_IDS(ids, 8, 2, 4, 5, 6, 3, 0, 0, 0);  // un ##aff ##able
  EXPECT_IDS(mask, 8, 1, 1, 1, 1, 1, 0, 0, 0);
  cr_expect_eq(enc(wp, "UNAFFABLE a!!", 0, 8, ids, mask), 8);  // "!" is punctuation: never "##!"
  EXPECT_IDS(ids, 8, 2, 4, 5, 6, 8, 10, 10, 3);
  cr_expect_eq(enc(wp, "UNAFFABLE", 1, 8, ids, mask), 3);  // cased: no "UN" in the vocab
  EXPECT_IDS(ids, 3, 2, 1, 3);
  cr_expect_eq(enc(wp, "unaffy b", 0, 8, ids, mask), 4);  // no split of "y": the whole word is [UNK]
  EXPECT_IDS(ids, 4, 2, 1, 12, 3);
  cr_expect_eq(enc(wp, "aa aff", 0, 8, ids, mask), 6);  // a ##a, a ##ff
  EXPECT_IDS(ids, 6, 2, 8, 7, 8, 9, 3);
  bpcrt_wp_free(wp);
}

Test(wordpiece, truncation_padding_and_empty_lines) {
  bpcrt_wordpiece *wp = small_vocab();
  int32_t ids[8];
  float mask[8];
  cr_expect_eq(enc(wp, "", 0, 4, ids, mask), 2);  // as HF does for "": [CLS] [SEP] + padding
  EXPECT_IDS(ids, 4, 2, 3, 0, 0);
  EXPECT_IDS(mask, 4, 1, 1, 0, 0);
  cr_expect_eq(enc(wp, " \t \r ", 0, 4, ids, mask), 2);
  cr_expect_eq(enc(wp, "a b a b a b", 0, 5, ids, mask), 5);  // [SEP] kept last
  EXPECT_IDS(ids, 5, 2, 8, 12, 8, 3);
  cr_expect_eq(enc(wp, "unaffable", 0, 4, ids, mask), 4);  // truncation cuts inside a word
  EXPECT_IDS(ids, 4, 2, 4, 5, 3);
  cr_expect_eq(enc(wp, "a b", 0, 2, ids, mask), 2);
  EXPECT_IDS(ids, 2, 2, 3);
  cr_expect_eq(enc(wp, "a", 0, 1, ids, mask), -1);
  // 100 code points is a word; 101 is [UNK]
  char word[256];
  memset(word, 'a', 101);
  word[101] = 0;
  cr_expect_eq(enc(wp, word, 0, 8, ids, mask), 3);
  EXPECT_IDS(ids, 3, 2, 1, 3);
  word[100] = 0;
  cr_expect_eq(enc(wp, word, 0, 8, ids, mask), 8);
  EXPECT_IDS(ids, 8, 2, 8, 7, 7, 7, 7, 7, 3);
  // clean_text drops Cc, Cf and Co but keeps unassigned code points, as HF does
  cr_expect_eq(enc(wp,
                   "a\x01\xe2\x80\x8b\xee\x80\x80"
                   "a",
                   0, 8, ids, mask),
               4);  // ^A, U+200B, U+E000
  EXPECT_IDS(ids, 4, 2, 8, 7, 3);
  cr_expect_eq(enc(wp,
                   "a\xcd\xb8"
                   "a",
                   0, 8, ids, mask),
               3);  // U+0378 (Cn): a word with no split
  EXPECT_IDS(ids, 3, 2, 1, 3);
  // CJK ideographs are words of their own, but not U+2B820..U+2B91F (HF's range)
  cr_expect_eq(enc(wp,
                   "a\xf0\xab\xa4\xa0"
                   "a",
                   0, 8, ids, mask),
               5);  // U+2B920
  EXPECT_IDS(ids, 5, 2, 8, 1, 8, 3);
  cr_expect_eq(enc(wp,
                   "a\xf0\xab\xa0\xa0"
                   "a",
                   0, 8, ids, mask),
               3);  // U+2B820
  EXPECT_IDS(ids, 3, 2, 1, 3);
  // special tokens written in the text are tokens (matched before cleaning)
  cr_expect_eq(enc(wp, "a[SEP]b [PAD]", 0, 8, ids, mask), 6);
  EXPECT_IDS(ids, 6, 2, 8, 3, 12, 0, 3);
  EXPECT_IDS(mask, 6, 1, 1, 1, 1, 1, 1);
  bpcrt_wp_free(wp);
}

Test(wordpiece, invalid_utf8) {
  bpcrt_wordpiece *wp = small_vocab();
  static const struct {
    const char *s;
    size_t n, bad;
  } cases[] = {
      {"ab\xff", 3, 2},            // not a lead byte
      {"a\xc3", 2, 1},             // truncated sequence
      {"a\xc3(b", 4, 1},           // bad continuation
      {"\xc0\xaf", 2, 0},          // overlong '/'
      {"ab\xed\xa0\x80", 5, 2},    // a surrogate (U+D800)
      {"\xf4\x90\x80\x80", 4, 0},  // above U+10FFFF
      {"caf\xc3\xa9 \x80", 7, 6},  // a lone continuation after valid text
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    int32_t ids[4] = {-7, -7, -7, -7};
    size_t bad = 999;
    cr_expect_eq(bpcrt_wp_encode(wp, cases[i].s, cases[i].n, 0, 4, ids, NULL, &bad), -1, "case %zu", i);
    cr_expect_eq(bad, cases[i].bad, "case %zu: bad byte at %zu, want %zu", i, bad, cases[i].bad);
    cr_expect_eq(ids[0], -7, "case %zu: ids written", i);
    cr_expect_eq(bpcrt_utf8_check(cases[i].s, cases[i].n), cases[i].bad);
  }
  // NUL is valid UTF-8, and clean_text drops it
  int32_t ids[4];
  cr_expect_eq(bpcrt_wp_encode(wp, "a\0b", 3, 0, 4, ids, NULL, NULL), 3);
  bpcrt_wp_free(wp);
}

static void expect_vocab_error(const char *name, const char *text, size_t n, const char *want) {
  char path[128], err[512] = "";
  if (text)
    write_file(path, sizeof path, name, text, n);
  else
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  cr_expect_null(bpcrt_wp_load(path, err, sizeof err), "%s", name);
  char full[256];
  snprintf(full, sizeof full, "%s/%s%s", tmpdir, name, want);
  cr_expect(strncmp(err, full, strlen(full)) == 0, "got '%s', want it to start with '%s'", err, full);
}

Test(wordpiece, vocab_errors_name_file_and_line) {
  expect_vocab_error("missing.txt", NULL, 0, ": error: cannot read the vocabulary: No such file");
  expect_vocab_error("empty.txt", "", 0, ":1: error: empty vocabulary");
  static const char no_unk[] = "[PAD]\n[CLS]\n[SEP]\na\n";
  expect_vocab_error("nounk.txt", no_unk, sizeof no_unk - 1, ":4: error: the vocabulary has no [UNK] token");
  static const char no_cls[] = "[PAD]\n[UNK]\n[SEP]\n";
  expect_vocab_error("nocls.txt", no_cls, sizeof no_cls - 1, ":3: error: the vocabulary has no [CLS] token");
  static const char dup[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\na\nb\na\n";
  expect_vocab_error("dup.txt", dup, sizeof dup - 1, ":7: error: duplicate token 'a' (first on line 5)");
  static const char bad[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\nab\xfe\n";
  expect_vocab_error("bad.txt", bad, sizeof bad - 1, ":5: error: invalid UTF-8 at byte 3 of the line");
  cr_expect_null(bpcrt_wp_load("/nonexistent/v.txt", NULL, 0));  // err may be NULL
  bpcrt_wp_free(NULL);
}
