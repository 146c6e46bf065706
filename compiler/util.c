// util.c — allocation that never returns NULL, arenas, small string helpers.
// Takes nothing from the rest of bpc; everything else builds on it.
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bpcc.h"

noreturn void bpc_bug(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s:%d: internal error: ", file, line);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  abort();
}

static noreturn void oom(size_t n) {
  // Not a bug in bpc: a model too large for this machine. Exit 1, as for any
  // other input bpc cannot handle; nothing has been written yet (outputs are
  // written to a temporary and renamed only once complete).
  fprintf(stderr, "error: out of memory allocating %zu bytes (is the model too large for this machine?)\n", n);
  exit(1);
}

void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) oom(n);
  return p;
}

void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p) oom(n * size);
  return p;
}

void *xrealloc(void *p, size_t n) {
  p = realloc(p, n ? n : 1);
  if (!p) oom(n);
  return p;
}

char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  return memcpy(xmalloc(n), s, n);
}

struct ArenaBlock {
  ArenaBlock *next;
  size_t used, cap;
  _Alignas(16) unsigned char data[];
};

void *arena_alloc(Arena *a, size_t n) {
  n = (n + 15) & ~(size_t)15;
  ArenaBlock *b = a->head;
  if (!b || b->cap - b->used < n) {
    size_t cap = n > 65536 ? n : 65536;
    b = xmalloc(sizeof(ArenaBlock) + cap);
    b->used = 0;
    b->cap = cap;
    b->next = a->head;
    a->head = b;
  }
  void *p = b->data + b->used;
  b->used += n;
  return memset(p, 0, n);
}

char *arena_strndup(Arena *a, const char *s, size_t n) {
  char *p = arena_alloc(a, n + 1);
  memcpy(p, s, n);
  p[n] = 0;
  return p;
}

char *arena_strdup(Arena *a, const char *s) { return arena_strndup(a, s, strlen(s)); }

char *arena_printf(Arena *a, const char *fmt, ...) {
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *p = arena_alloc(a, (size_t)n + 1);
  vsnprintf(p, (size_t)n + 1, fmt, ap2);
  va_end(ap2);
  return p;
}

void arena_free(Arena *a) {
  for (ArenaBlock *b = a->head, *next; b; b = next) {
    next = b->next;
    free(b);
  }
  a->head = NULL;
}

// Levenshtein distance, capped for long strings (suggestions only).
static int edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 64 || lb > 64) return 1000;
  int row[65];
  for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
  for (size_t i = 1; i <= la; i++) {
    int diag = row[0];
    row[0] = (int)i;
    for (size_t j = 1; j <= lb; j++) {
      int up = row[j];
      int best = diag + (a[i - 1] != b[j - 1]);
      if (up + 1 < best) best = up + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[lb];
}

const char *closest_name(const char *name, const char *const *cands, int n) {
  const char *best = NULL;
  int best_d = 1000;
  int limit = (int)strlen(name) / 3 + 1;  // allow about one typo per 3 chars
  if (limit > 3) limit = 3;
  for (int i = 0; i < n; i++) {
    if (!cands[i]) continue;
    int d = edit_distance(name, cands[i]);
    if (d < best_d && d <= limit && d < (int)strlen(cands[i])) {
      best_d = d;
      best = cands[i];
    }
  }
  return best;
}

bool read_whole_file(const char *path, char **data, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return false;
  size_t cap = 4096, n = 0;
  char *buf = xmalloc(cap);
  for (;;) {
    if (n + 1 >= cap) buf = xrealloc(buf, cap *= 2);
    size_t got = fread(buf + n, 1, cap - n - 1, f);
    n += got;
    if (got == 0) break;
  }
  int err = ferror(f);
  fclose(f);
  if (err) {
    free(buf);
    errno = EIO;
    return false;
  }
  buf[n] = 0;
  *data = buf;
  *len = n;
  return true;
}

void format_bytes(char *buf, size_t size, int64_t b) {
  if (b < 10 * 1024)
    snprintf(buf, size, "%lld B", (long long)b);
  else if (b < 10 * 1024 * 1024)
    snprintf(buf, size, "%.1f KiB", (double)b / 1024);
  else
    snprintf(buf, size, "%.1f MiB", (double)b / (1024 * 1024));
}
