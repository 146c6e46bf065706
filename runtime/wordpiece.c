// wordpiece.c — BERT's WordPiece tokenizer (SPEC 6.4), as Hugging Face's
// BertTokenizer runs it (the tokenizers library's BertNormalizer,
// BertPreTokenizer and WordPiece model, plus the special tokens it matches
// in raw text): clean control characters, isolate CJK ideographs, NFD and
// drop nonspacing marks and lowercase (uncased), split on whitespace and
// punctuation, greedy longest-match-first WordPiece with "##"
// continuations, then [CLS] ... [SEP] truncated and padded to T.
// Unicode data (categories, NFD, lowercase) comes from libutf8proc.
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "bpc.h"

#define WP_MAX_WORD_CHARS 100  // a longer word is [UNK] (WordPiece's max_input_chars_per_word)

struct bpcrt_wordpiece {
  int n;                  // tokens; id = line number - 1
  char *blob;             // the tokens' bytes, back to back
  size_t *off, *len;      // token i is blob[off[i] .. off[i] + len[i])
  uint32_t mask_bits;     // hash table of 2^k slots: id or -1
  int32_t *slots;
  int32_t pad, unk, cls, sep;
  int nspecial;           // special tokens matched verbatim in raw text
  int32_t special[5];
};

static void *xrealloc(void *p, size_t n) {
  p = realloc(p, n ? n : 1);
  if (!p) abort();
  return p;
}

__attribute__((format(printf, 5, 6))) static void fail(char *err, size_t errlen, const char *path, long line,
                                                       const char *fmt, ...) {
  if (!err || errlen == 0) return;
  int k = line > 0 ? snprintf(err, errlen, "%s:%ld: error: ", path, line) : snprintf(err, errlen, "%s: error: ", path);
  if (k >= 0 && (size_t)k < errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + k, errlen - (size_t)k, fmt, ap);
    va_end(ap);
  }
}

static uint32_t hash_bytes(const char *s, size_t n) {
  uint64_t h = 14695981039346656037ULL;
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ULL;
  return (uint32_t)(h ^ (h >> 32));
}

int32_t bpcrt_wp_id(const bpcrt_wordpiece *wp, const char *tok, size_t n) {
  for (uint32_t i = hash_bytes(tok, n) & wp->mask_bits;; i = (i + 1) & wp->mask_bits) {
    int32_t id = wp->slots[i];
    if (id < 0) return -1;
    if (wp->len[id] == n && memcmp(wp->blob + wp->off[id], tok, n) == 0) return id;
  }
}

int bpcrt_wp_size(const bpcrt_wordpiece *wp) { return wp->n; }

const char *bpcrt_wp_token(const bpcrt_wordpiece *wp, int32_t id, size_t *len) {
  if (id < 0 || id >= wp->n) return NULL;
  if (len) *len = wp->len[id];
  return wp->blob + wp->off[id];
}

void bpcrt_wp_free(bpcrt_wordpiece *wp) {
  if (!wp) return;
  free(wp->blob);
  free(wp->off);
  free(wp->len);
  free(wp->slots);
  free(wp);
}

size_t bpcrt_utf8_check(const char *text, size_t n) {
  const unsigned char *s = (const unsigned char *)text;
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
    if (len == 0 || len > n - i) return i;
    uint32_t cp = len == 1 ? c : c & (0x7fu >> len);
    for (size_t k = 1; k < len; k++) {
      if ((s[i + k] & 0xc0) != 0x80) return i;
      cp = cp << 6 | (s[i + k] & 0x3fu);
    }
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return i;  // overlong, out of range, or a surrogate
    i += len;
  }
  return n;
}

static const char *shown(const char *s, size_t n, char *buf) {  // buf: 72 bytes
  size_t i = 0;
  for (; i < n && i < 64; i++) buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
  if (i < n) memcpy(buf + i, "...", 3), i += 3;
  buf[i] = 0;
  return buf;
}

bpcrt_wordpiece *bpcrt_wp_load(const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fail(err, errlen, path, 0, "cannot read the vocabulary: %s", strerror(errno));
    return NULL;
  }
  size_t size = 0, cap = 1 << 16;
  char *buf = xrealloc(NULL, cap);
  for (size_t got; (got = fread(buf + size, 1, cap - size, f)) > 0;)
    if ((size += got) == cap) buf = xrealloc(buf, cap *= 2);
  bool rd_err = ferror(f);
  fclose(f);
  if (rd_err) {
    fail(err, errlen, path, 0, "cannot read the vocabulary: read error");
    free(buf);
    return NULL;
  }
  bpcrt_wordpiece *wp = calloc(1, sizeof *wp);
  if (!wp) abort();
  wp->blob = buf;
  wp->pad = wp->unk = wp->cls = wp->sep = -1;
  int cap_tok = 0;
  long line = 0;
  for (size_t i = 0; i < size;) {  // one token per line; "\n" or "\r\n"
    line++;
    const char *nl = memchr(buf + i, '\n', size - i);
    size_t end = nl ? (size_t)(nl - buf) : size, n = end - i;
    if (n > 0 && buf[i + n - 1] == '\r' && nl) n--;
    size_t bad = bpcrt_utf8_check(buf + i, n);
    if (bad < n) {
      fail(err, errlen, path, line, "invalid UTF-8 at byte %zu of the line", bad + 1);
      goto error;
    }
    if (line > INT32_MAX - 1) {
      fail(err, errlen, path, line, "too many tokens");
      goto error;
    }
    if (wp->n == cap_tok) {
      cap_tok = cap_tok ? cap_tok * 2 : 1024;
      wp->off = xrealloc(wp->off, sizeof *wp->off * (size_t)cap_tok);
      wp->len = xrealloc(wp->len, sizeof *wp->len * (size_t)cap_tok);
    }
    wp->off[wp->n] = i;
    wp->len[wp->n] = n;
    wp->n++;
    i = end + 1;
  }
  if (wp->n == 0) {
    fail(err, errlen, path, 1, "empty vocabulary (one token per line)");
    goto error;
  }
  uint32_t nslots = 16;
  while (nslots < (uint32_t)wp->n * 2u) nslots *= 2;
  wp->mask_bits = nslots - 1;
  wp->slots = xrealloc(NULL, sizeof *wp->slots * nslots);
  memset(wp->slots, 0xff, sizeof *wp->slots * nslots);
  for (int32_t id = 0; id < wp->n; id++) {
    const char *tok = wp->blob + wp->off[id];
    uint32_t i = hash_bytes(tok, wp->len[id]) & wp->mask_bits;
    for (; wp->slots[i] >= 0; i = (i + 1) & wp->mask_bits) {
      int32_t o = wp->slots[i];
      if (wp->len[o] == wp->len[id] && memcmp(wp->blob + wp->off[o], tok, wp->len[id]) == 0) {
        char sb[72];
        fail(err, errlen, path, (long)id + 1, "duplicate token '%s' (first on line %ld)", shown(tok, wp->len[id], sb),
             (long)o + 1);
        goto error;
      }
    }
    wp->slots[i] = id;
  }
  static const char *const names[5] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  int32_t *req[4] = {&wp->pad, &wp->unk, &wp->cls, &wp->sep};
  for (int k = 0; k < 5; k++) {
    int32_t id = bpcrt_wp_id(wp, names[k], strlen(names[k]));
    if (k < 4) {
      if (id < 0) {
        fail(err, errlen, path, line, "the vocabulary has no %s token (BERT needs [CLS], [SEP], [PAD] and [UNK])",
             names[k]);
        goto error;
      }
      *req[k] = id;
    }
    if (id >= 0) wp->special[wp->nspecial++] = id;
  }
  return wp;
error:
  bpcrt_wp_free(wp);
  return NULL;
}

// ---- the tokenizer -------------------------------------------------------

typedef struct {
  int32_t *v;
  size_t n, cap;
} I32Vec;

static void push(I32Vec *v, int32_t x) {
  if (v->n == v->cap) v->v = xrealloc(v->v, sizeof *v->v * (v->cap = v->cap ? v->cap * 2 : 64));
  v->v[v->n++] = x;
}

// BertNormalizer's clean_text: NUL, U+FFFD and control, format, surrogate
// and private-use characters (Cc, Cf, Cs, Co) except tab, LF and CR are
// dropped. Unassigned code points (Cn) are kept, as the tokenizers library
// does (HF's old Python tokenizer dropped them too).
static bool is_control(int32_t c) {
  if (c == '\t' || c == '\n' || c == '\r') return false;
  if (c == 0 || c == 0xfffd) return true;
  utf8proc_category_t k = utf8proc_category(c);
  return k == UTF8PROC_CATEGORY_CC || k == UTF8PROC_CATEGORY_CF || k == UTF8PROC_CATEGORY_CS ||
         k == UTF8PROC_CATEGORY_CO;
}

// Rust's char::is_whitespace (what the tokenizers library uses) on what is
// left after clean_text: space, tab, LF, CR and the Z* separators.
static bool is_space(int32_t c) {
  if (c == ' ' || c == '\t' || c == '\n' || c == '\r') return true;
  utf8proc_category_t k = utf8proc_category(c);
  return k == UTF8PROC_CATEGORY_ZS || k == UTF8PROC_CATEGORY_ZL || k == UTF8PROC_CATEGORY_ZP;
}

// BERT's _is_punctuation: all non-alphanumeric ASCII, and Unicode's P*.
static bool is_punct(int32_t c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126)) return true;
  utf8proc_category_t k = utf8proc_category(c);
  return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

// BERT's _is_chinese_char: the CJK Unified Ideographs blocks, with the
// tokenizers library's range 0x2B920-0x2CEAF where BERT's Python has
// 0x2B820-0x2CEAF (U+2B820..U+2B91F are not isolated by HF's BertTokenizer).
static bool is_cjk(int32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

static size_t utf8_put(int32_t c, char *out) { return (size_t)utf8proc_encode_char(c, (utf8proc_uint8_t *)out); }

typedef struct {
  const bpcrt_wordpiece *wp;
  bool cased;
  size_t limit;       // tokens wanted (T - 2): the rest would be truncated
  I32Vec ids;
  int32_t *cps;       // scratch: code points
  size_t ncps, capcps;
  char *bytes;        // scratch: a word's UTF-8 with room for "##"
  size_t capbytes;
  size_t *bound;      // scratch: the word's character boundaries
  size_t capbound;
} Tok;

static void cps_push(Tok *t, int32_t c) {
  if (t->ncps == t->capcps) t->cps = xrealloc(t->cps, sizeof *t->cps * (t->capcps = t->capcps ? t->capcps * 2 : 256));
  t->cps[t->ncps++] = c;
}

// WordPiece on one word (code points w[0..n)).
static void wordpiece(Tok *t, const int32_t *w, size_t n) {
  const bpcrt_wordpiece *wp = t->wp;
  if (n > WP_MAX_WORD_CHARS) {
    push(&t->ids, wp->unk);
    return;
  }
  if (t->capbytes < 8 * n + 2) t->bytes = xrealloc(t->bytes, t->capbytes = 8 * n + 2);
  if (t->capbound < n + 1) t->bound = xrealloc(t->bound, sizeof *t->bound * (t->capbound = n + 1));
  char *b = t->bytes, *cont = t->bytes + 4 * n;  // the word; "##" + the rest of it
  size_t nb = 0;
  for (size_t i = 0; i < n; i++) {
    t->bound[i] = nb;
    nb += utf8_put(w[i], b + nb);
  }
  t->bound[n] = nb;
  size_t first = t->ids.n;
  for (size_t start = 0; start < n;) {
    const char *s = b + t->bound[start];
    size_t pre = 0;
    if (start > 0) {
      memcpy(cont, "##", 2);
      memcpy(cont + 2, s, nb - t->bound[start]);
      s = cont, pre = 2;
    }
    int32_t id = -1;
    size_t end = n;
    for (; end > start; end--)  // longest match first
      if ((id = bpcrt_wp_id(wp, s, pre + t->bound[end] - t->bound[start])) >= 0) break;
    if (id < 0) {  // no split: the whole word is [UNK]
      t->ids.n = first;
      push(&t->ids, wp->unk);
      return;
    }
    push(&t->ids, id);
    start = end;
  }
}

// Pre-tokenizes normalized code points (split on whitespace, punctuation
// isolated) and runs WordPiece on each piece.
static void words(Tok *t, const int32_t *c, size_t n) {
  size_t i = 0;
  while (i < n && t->ids.n < t->limit) {
    if (is_space(c[i])) {
      i++;
    } else if (is_punct(c[i])) {
      wordpiece(t, c + i, 1);
      i++;
    } else {
      size_t j = i;
      while (j < n && !is_space(c[j]) && !is_punct(c[j])) j++;
      wordpiece(t, c + i, j - i);
      i = j;
    }
  }
}

// One stretch of raw text between special tokens: normalize, then words.
static void segment(Tok *t, const char *s, size_t n) {
  // clean_text and CJK isolation, re-encoded as UTF-8 for NFD
  t->ncps = 0;
  for (size_t i = 0; i < n;) {
    utf8proc_int32_t c;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &c);
    i += (size_t)(k > 0 ? k : 1);  // the line was validated
    if (k <= 0 || is_control(c)) continue;
    if (is_space(c)) {
      cps_push(t, ' ');
    } else if (is_cjk(c)) {
      cps_push(t, ' ');
      cps_push(t, c);
      cps_push(t, ' ');
    } else {
      cps_push(t, c);
    }
  }
  if (t->cased) {
    words(t, t->cps, t->ncps);
    return;
  }
  // uncased: NFD, drop nonspacing marks (strip accents), then lowercase
  size_t nb = 0;
  char *u8 = xrealloc(NULL, 4 * t->ncps + 1);
  for (size_t i = 0; i < t->ncps; i++) nb += utf8_put(t->cps[i], u8 + nb);
  size_t cap = 3 * t->ncps + 16;
  int32_t *d = xrealloc(NULL, sizeof *d * cap);
  utf8proc_ssize_t nd;
  for (;;) {
    nd = utf8proc_decompose((const utf8proc_uint8_t *)u8, (utf8proc_ssize_t)nb, d, (utf8proc_ssize_t)cap,
                            UTF8PROC_DECOMPOSE);
    if (nd < 0) abort();  // valid input and enough room: cannot happen
    if ((size_t)nd <= cap) break;
    d = xrealloc(d, sizeof *d * (cap = (size_t)nd));
  }
  size_t m = 0;
  for (utf8proc_ssize_t i = 0; i < nd; i++)
    if (utf8proc_category(d[i]) != UTF8PROC_CATEGORY_MN) d[m++] = utf8proc_tolower(d[i]);
  words(t, d, m);
  free(d);
  free(u8);
}

int bpcrt_wp_encode(const bpcrt_wordpiece *wp, const char *text, size_t len, int cased, int maxlen, int32_t *ids,
                    float *mask, size_t *bad) {
  size_t b = bpcrt_utf8_check(text, len);
  if (b < len) {
    if (bad) *bad = b;
    return -1;
  }
  if (maxlen < 2) return -1;
  Tok t = {.wp = wp, .cased = cased != 0, .limit = (size_t)maxlen - 2};
  // Special tokens in the raw text are tokens of their own (leftmost match;
  // none is a prefix of another).
  size_t seg = 0;
  for (size_t i = 0; i < len && t.ids.n < t.limit;) {
    int hit = -1;
    if (text[i] == '[')
      for (int k = 0; k < wp->nspecial; k++) {
        size_t sl = wp->len[wp->special[k]];
        if (sl <= len - i && memcmp(text + i, wp->blob + wp->off[wp->special[k]], sl) == 0) {
          hit = k;
          break;
        }
      }
    if (hit < 0) {
      i++;
      continue;
    }
    segment(&t, text + seg, i - seg);
    if (t.ids.n < t.limit) push(&t.ids, wp->special[hit]);
    i += wp->len[wp->special[hit]];
    seg = i;
  }
  if (t.ids.n < t.limit) segment(&t, text + seg, len - seg);
  size_t n = t.ids.n < t.limit ? t.ids.n : t.limit;
  int k = 0;
  ids[k++] = wp->cls;
  for (size_t i = 0; i < n; i++) ids[k++] = t.ids.v[i];
  ids[k++] = wp->sep;
  int ntok = k;
  for (; k < maxlen; k++) ids[k] = wp->pad;
  if (mask)
    for (k = 0; k < maxlen; k++) mask[k] = k < ntok ? 1.0f : 0.0f;
  free(t.ids.v);
  free(t.cps);
  free(t.bytes);
  free(t.bound);
  return ntok;
}
