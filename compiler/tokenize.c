// tokenize.c — `bpc tokenize`: one sample per line of a UTF-8 text file,
// tokenized by the runtime's WordPiece tokenizer (as HF's BertTokenizer),
// written as `ids` [N, T] I32 and `mask` [N, T] F32 to a safetensors file.
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bpc.h"
#include "bpcc.h"

// The whole file; NULL (errno set) when it cannot be read.
static char *read_all(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t n = 0, cap = 1 << 16;
  char *buf = xmalloc(cap);
  for (size_t got; (got = fread(buf + n, 1, cap - n, f)) > 0;)
    if ((n += got) == cap) {
      char *b = realloc(buf, cap *= 2);
      if (!b) abort();
      buf = b;
    }
  if (ferror(f)) {
    fclose(f);
    free(buf);
    errno = EIO;
    return NULL;
  }
  fclose(f);
  *size = n;
  return buf;
}

static int tokenize(const char *vocab, const char *text, const char *out, int maxlen, bool cased) {
  char err[1024];
  bpcrt_wordpiece *wp = bpcrt_wp_load(vocab, err, sizeof err);
  if (!wp) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  size_t size = 0;
  char *buf = read_all(text, &size);
  if (!buf) {
    fprintf(stderr, "%s: error: cannot read: %s\n", text, strerror(errno));
    bpcrt_wp_free(wp);
    return 1;
  }
  // Lines: "\n" or "\r\n" ends one; a last line without a newline counts.
  size_t nlines = 0;
  for (size_t i = 0; i < size; i++) nlines += buf[i] == '\n';
  if (size > 0 && buf[size - 1] != '\n') nlines++;
  int rc = 1;
  int32_t *ids = NULL;
  float *mask = NULL;
  if (nlines == 0) {
    fprintf(stderr, "%s:1: error: no text: one sample per line, and the file is empty\n", text);
    goto done;
  }
  if (nlines > (size_t)INT64_MAX / (size_t)maxlen / 4) {
    fprintf(stderr, "%s: error: too many lines\n", text);
    goto done;
  }
  ids = xmalloc(sizeof *ids * nlines * (size_t)maxlen);
  mask = xmalloc(sizeof *mask * nlines * (size_t)maxlen);
  size_t line = 0;
  for (size_t i = 0; i < size; line++) {
    const char *nl = memchr(buf + i, '\n', size - i);
    size_t end = nl ? (size_t)(nl - buf) : size, n = end - i;
    if (nl && n > 0 && buf[end - 1] == '\r') n--;
    size_t bad = 0;
    if (bpcrt_wp_encode(wp, buf + i, n, cased, maxlen, ids + line * (size_t)maxlen, mask + line * (size_t)maxlen,
                        &bad) < 0) {
      fprintf(stderr, "%s:%zu:%zu: error: invalid UTF-8 at byte %zu of the line (byte 0x%02x, file offset %zu)\n", text,
              line + 1, bad + 1, bad + 1, (unsigned char)buf[i + bad], i + bad);
      goto done;
    }
    i = end + 1;
  }
  bpcrt_tensors ts = {0};
  int64_t shape[2] = {(int64_t)nlines, maxlen};
  bpcrt_st_add_ref(&ts, "ids", BPCRT_I32, 2, shape, ids);
  bpcrt_st_add_ref(&ts, "mask", BPCRT_F32, 2, shape, mask);
  if (bpcrt_st_write(out, &ts, err, sizeof err) == 0)
    rc = 0;
  else
    fprintf(stderr, "bpc: error: %s\n", err);
  bpcrt_st_free(&ts);
done:
  free(ids);
  free(mask);
  free(buf);
  bpcrt_wp_free(wp);
  return rc;
}

int cmd_tokenize(int argc, char **argv, int (*usage)(const char *fmt, const char *arg)) {
  const char *vocab = NULL, *text = NULL, *out = NULL;
  long maxlen = 128;
  bool cased = false;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--vocab") || !strcmp(a, "-o") || !strcmp(a, "--max-len")) {
      if (i + 1 >= argc) return usage("%s needs a value", a);
      const char *v = argv[++i];
      if (!strcmp(a, "--vocab")) {
        vocab = v;
      } else if (!strcmp(a, "-o")) {
        out = v;
      } else {
        char *end;
        errno = 0;
        maxlen = strtol(v, &end, 10);
        if (errno || *end || !*v || maxlen < 2 || maxlen > (1 << 30))
          return usage("--max-len needs an integer T >= 2 ([CLS] and [SEP]), got '%s'", v);
      }
    } else if (!strcmp(a, "--cased")) {
      cased = true;
    } else if (a[0] == '-' && a[1]) {
      return usage("unknown option '%s'", a);
    } else if (!text) {
      text = a;
    } else {
      return usage("unexpected argument '%s'", a);
    }
  }
  if (!vocab) return usage("%s", "tokenize needs --vocab VOCAB.txt");
  if (!text) return usage("%s", "tokenize needs a text file");
  if (!out) return usage("%s", "tokenize needs -o OUT.safetensors");
  return tokenize(vocab, text, out, (int)maxlen, cased);
}
