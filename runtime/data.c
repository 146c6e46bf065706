// data.c — the data sets of SPEC 1.6: text (bytes), csv, safetensors and
// MNIST-style IDX (gzip or raw). A load reads and validates the whole file
// up front, so a bad row is reported before training writes anything;
// samples are stored converted to their input's dtype (scale applied), so
// feeding a batch is a copy. Errors are "PATH: ..." with the line, column,
// sample or byte offset.
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "trainer.h"

static bool fail(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return false;
}

// The whole file (zlib reads raw files transparently, so gzip is optional).
static bool slurp(const char *path, uint8_t **out, int64_t *len, char *err, size_t errlen) {
  *out = NULL, *len = 0;
  gzFile f = gzopen(path, "rb");
  if (!f) return fail(err, errlen, "%s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
  size_t cap = 1 << 16, n = 0;
  uint8_t *buf = malloc(cap);
  for (;;) {
    if (n == cap) buf = realloc(buf, cap *= 2);
    int k = gzread(f, buf + n, (unsigned)(cap - n > (1u << 30) ? (1u << 30) : cap - n));
    if (k < 0) {
      int code;
      const char *m = gzerror(f, &code);
      fail(err, errlen, "%s: offset %zu: %s%s", path, n,
           code == Z_ERRNO ? strerror(errno) : "corrupt gzip data: ", code == Z_ERRNO ? "" : m);
      return gzclose(f), free(buf), false;
    }
    if (k == 0) break;
    n += (size_t)k;
  }
  // gzread stops quietly at a gzip stream cut short: gzerror tells.
  int code;
  const char *m = gzerror(f, &code);
  if (code != Z_OK && code != Z_STREAM_END) {
    fail(err, errlen, "%s: offset %zu: corrupt or truncated gzip data: %s", path, n, m);
    return gzclose(f), free(buf), false;
  }
  if (gzclose(f) != Z_OK) {
    fail(err, errlen, "%s: offset %zu: corrupt or truncated gzip data", path, n);
    return free(buf), false;
  }
  *out = buf, *len = (int64_t)n;
  return true;
}

static int64_t per_sample(const TDesc *t) { return t->rank ? t->numel / (t->shape[0] ? t->shape[0] : 1) : 1; }

// The scale of a float input: its own entry, else the "*" entry (a bare
// `scale: 1/255`), which applies when `star` (csv and safetensors: every float
// input; idx: the images only).
static double scale_of(const DataDesc *dd, const char *name, bool star) {
  for (int i = 0; i < dd->nscale; i++)
    if (!strcmp(dd->scale[i].name, name)) return dd->scale[i].v;
  for (int i = 0; star && i < dd->nscale; i++)
    if (!strcmp(dd->scale[i].name, "*")) return dd->scale[i].v;
  return 1;
}

static DataCol *add_col(Dataset *ds, const TDesc *t) {
  DataCol *c = &ds->cols[ds->ncols++];
  c->name = strdup(t->name);
  c->dtype = t->dtype;
  c->per = per_sample(t);
  return c;
}

// Makes room for sample n (grows by doubling).
static void reserve(Dataset *ds, int64_t n, int64_t *cap) {
  if (n < *cap) return;
  *cap = *cap ? 2 * *cap : 1024;
  for (int i = 0; i < ds->ncols; i++)
    ds->cols[i].data =
        realloc(ds->cols[i].data, (size_t)(*cap * ds->cols[i].per) * bpcrt_dtype_size(ds->cols[i].dtype));
  ds->line = realloc(ds->line, (size_t)*cap * sizeof *ds->line);
}

// Stores v as element k of column c; false when an i32 gets a non-integer.
static bool put_val(DataCol *c, int64_t k, double v) {
  switch (c->dtype) {
  case BPCRT_F32: ((float *)c->data)[k] = (float)v; return true;
  case BPCRT_F64: ((double *)c->data)[k] = v; return true;
  case BPCRT_I32:
    if (!(v == floor(v) && fabs(v) < 2147483648.0)) return false;
    ((int32_t *)c->data)[k] = (int32_t)v;
    return true;
  default:  // model tensors are F32, F64 or I32
    return false;
  }
}

// Every input of p must be fed by the data set (and nothing else).
static bool check_fed(const Dataset *ds, const Prog *p, const char *path, char *err, size_t errlen) {
  for (int i = 0; i < p->n; i++) {
    if (p->t[i].role != ROLE_INPUT) continue;
    bool fed = false;
    for (int k = 0; k < ds->ncols; k++) fed |= !strcmp(ds->cols[k].name, p->t[i].name);
    if (!fed &&
        !(ds->format == FMT_TEXT && (!strcmp(p->t[i].name, ds->tok_name) || !strcmp(p->t[i].name, ds->tgt_name))))
      return fail(err, errlen, "%s: the data feeds no input '%s'", path, p->t[i].name);
  }
  return true;
}

// ---- csv -------------------------------------------------------------------

static int count_fields(const char *s, const char *end) {
  int n = 1;
  for (; s < end; s++) n += *s == ',';
  return n;
}

// Splits one line [s, le) (NUL at le) into fields in place, RFC 4180 style:
// a field that starts with '"' runs to the closing quote, "" inside it is
// one quote, and commas inside it are text. At most maxf fields (the comma
// count bounds them). The field count, or -1 for an unterminated quote or
// text after a closing quote.
static int split_fields(char *s, char *le, char **field, int maxf) {
  int nf = 0;
  char *p = s;
  for (;;) {
    if (nf == maxf) return -1;
    if (*p == '"') {
      char *w = p, *r = p + 1;
      field[nf++] = w;
      for (;;) {
        if (r >= le) return -1;
        if (*r == '"' && r[1] == '"')
          *w++ = '"', r += 2;
        else if (*r == '"')
          break;
        else
          *w++ = *r++;
      }
      *w = 0;
      r++;  // past the closing quote
      if (r < le && *r != ',') return -1;
      if (r >= le) return nf;
      p = r + 1;
      continue;
    }
    field[nf++] = p;
    char *c = memchr(p, ',', (size_t)(le - p));
    if (!c) return nf;
    *c = 0;
    p = c + 1;
  }
}

static bool load_csv(Dataset *ds, const DataDesc *dd, const Prog *p, const char *path, char *err, size_t errlen) {
  uint8_t *buf;
  int64_t len;
  if (!slurp(path, &buf, &len, err, errlen)) return false;
  ds->cols = calloc((size_t)dd->ncols + 3, sizeof *ds->cols);
  int64_t maxcol = 0;
  const TDesc *td[64];
  double sc[64];
  if (dd->ncols > 64) return free(buf), fail(err, errlen, "%s: more than 64 column groups", path);
  for (int i = 0; i < dd->ncols; i++) {
    const CsvCol *c = &dd->cols[i];
    td[i] = prog_find(p, c->name);
    if (!td[i] || td[i]->role != ROLE_INPUT)
      return free(buf), fail(err, errlen, "%s: column '%s' names no input of the model", path, c->name);
    if (c->hi - c->lo != per_sample(td[i]))
      return free(buf), fail(err, errlen, "%s: columns %lld:%lld give %lld values per sample; input '%s' needs %lld",
                             path, (long long)c->lo, (long long)c->hi, (long long)(c->hi - c->lo), c->name,
                             (long long)per_sample(td[i]));
    add_col(ds, td[i]);
    sc[i] = td[i]->dtype == BPCRT_I32 ? 1 : scale_of(dd, c->name, true);
    if (c->hi > maxcol) maxcol = c->hi;
  }
  // a text column: WordPiece ids (and mask) of T tokens a sample (SPEC 6.4)
  bpcrt_wordpiece *wp = NULL;
  DataCol *cid = NULL, *cmask = NULL;
  int64_t T = 0;
  if (dd->text_col >= 0) {
    const TDesc *ti = prog_find(p, dd->text_ids), *tm = dd->text_mask ? prog_find(p, dd->text_mask) : NULL;
    if (!ti || ti->role != ROLE_INPUT || ti->dtype != BPCRT_I32 || ti->rank != 2)
      return free(buf), fail(err, errlen, "%s: text ids '%s' are no i32 [B, T] input of the model", path, dd->text_ids);
    if (dd->text_mask &&
        (!tm || tm->role != ROLE_INPUT || tm->dtype == BPCRT_I32 || tm->rank != 2 || tm->shape[1] != ti->shape[1]))
      return free(buf),
             fail(err, errlen, "%s: text mask '%s' is no float [B, T] input of the model", path, dd->text_mask);
    if (!(wp = bpcrt_wp_load(dd->vocab, err, errlen))) return free(buf), false;
    T = ti->shape[1];
    if (T < 2)
      return free(buf), bpcrt_wp_free(wp),
             fail(err, errlen, "%s: text ids '%s' hold %lld tokens; [CLS] and [SEP] need 2", path, dd->text_ids,
                  (long long)T);
    cid = add_col(ds, ti);
    if (tm) cmask = add_col(ds, tm);
    if (dd->text_col + 1 > maxcol) maxcol = dd->text_col + 1;
  }
  int32_t *tids = T ? malloc(sizeof(int32_t) * (size_t)T) : NULL;
  float *tmask = T ? malloc(sizeof(float) * (size_t)T) : NULL;
  int64_t cap = 0, line = 0;
  int expect = -1, expect_line = 0;
  char *s = (char *)buf, *end = (char *)buf + len;
  bool ok = true;
  while (ok && s < end) {
    char *nl = memchr(s, '\n', (size_t)(end - s));
    char *le = nl ? nl : end;
    char *next = nl ? nl + 1 : end;
    line++;
    if (le > s && le[-1] == '\r') le--;
    bool blank = true;
    for (char *q = s; q < le; q++) blank &= *q == ' ' || *q == '\t';
    if (blank || memchr(s, 0, (size_t)(le - s))) {
      if (!blank) ok = fail(err, errlen, "%s:%lld: a NUL byte: not a text file", path, (long long)line);
      s = next;
      continue;
    }
    // split in place (quotes: RFC 4180)
    int maxf = count_fields(s, le);
    char *field[maxf > 0 ? maxf : 1];
    *le = 0;
    int nf = split_fields(s, le, field, maxf);
    if (nf < 0) {
      ok = fail(err, errlen, "%s:%lld: an unterminated quote, or text after a closing quote", path, (long long)line);
      break;
    }
    if (expect < 0) {
      expect = nf, expect_line = (int)line;
      if (nf < maxcol) {
        ok = fail(err, errlen, "%s:%lld: %d columns, the data section reads column %lld", path, (long long)line, nf,
                  (long long)maxcol);
        break;
      }
      if (dd->header) {
        s = next;
        continue;
      }
    } else if (nf != expect) {
      ok = fail(err, errlen, "%s:%lld: %d columns, expected %d (as on line %d)", path, (long long)line, nf, expect,
                expect_line);
      break;
    }
    int64_t i = ds->n;
    reserve(ds, i, &cap);
    ds->line[i] = line;
    for (int g = 0; ok && g < dd->ncols; g++) {
      DataCol *col = &ds->cols[g];
      for (int64_t f = dd->cols[g].lo; ok && f < dd->cols[g].hi; f++) {
        char *t = field[f], *e;
        while (*t == ' ' || *t == '\t') t++;
        errno = 0;
        double v = strtod(t, &e);
        while (*e == ' ' || *e == '\t') e++;
        // Decimal only, as Python's float() and numpy read a CSV cell
        // (strtod alone would take hex like 0x10 too); no nan or inf.
        if (e == t || *e || !isfinite(v) || strspn(t, "0123456789+-.eE") < (size_t)(e - t))
          ok = fail(err, errlen, "%s:%lld: column %lld: '%.40s' is not a number", path, (long long)line,
                    (long long)f + 1, t);
        else if (!put_val(col, i * col->per + (f - dd->cols[g].lo), v * sc[g]))
          ok = fail(err, errlen, "%s:%lld: column %lld: %.17g is not an integer (input '%s' is i32)", path,
                    (long long)line, (long long)f + 1, v, col->name);
      }
    }
    if (ok && wp) {
      const char *tx = field[dd->text_col];
      size_t bad = 0;
      if (bpcrt_wp_encode(wp, tx, strlen(tx), dd->cased, (int)T, tids, tmask, &bad) < 0) {
        ok = fail(err, errlen, "%s:%lld: column %lld: invalid UTF-8 at byte %zu of the text", path, (long long)line,
                  (long long)dd->text_col + 1, bad + 1);
      } else {
        memcpy((int32_t *)cid->data + i * T, tids, sizeof(int32_t) * (size_t)T);
        for (int64_t k = 0; cmask && k < T; k++) put_val(cmask, i * T + k, tmask[k]);
      }
    }
    ds->n++;
    s = next;
  }
  free(buf);
  free(tids), free(tmask);
  bpcrt_wp_free(wp);
  if (ok && ds->n == 0) ok = fail(err, errlen, "%s: no data rows", path);
  return ok;
}

// ---- safetensors -------------------------------------------------------------

static bool load_st(Dataset *ds, const DataDesc *dd, const Prog *p, const char *path, char *err, size_t errlen) {
  bpcrt_tensors f;
  if (bpcrt_st_read(path, &f, err, errlen) != 0) return false;
  ds->cols = calloc((size_t)f.n + 1, sizeof *ds->cols);
  size_t len = 0;
  int64_t n = -1;
  err[0] = 0;
#define MISMATCH(...) (len < errlen ? (void)(len += (size_t)snprintf(err + len, errlen - len, __VA_ARGS__)) : (void)0)
  for (int i = 0; i < f.n; i++) {
    const bpcrt_tensor *t = &f.t[i];
    const TDesc *td = prog_find(p, t->name);
    if (!td || td->role != ROLE_INPUT) {
      MISMATCH("%s  '%s': no input of the model has this name", len ? "\n" : "", t->name);
      continue;
    }
    bool shape_ok = t->rank == td->rank && t->rank >= 1;
    for (int k = 1; shape_ok && k < t->rank; k++) shape_ok = t->shape[k] == td->shape[k];
    if (!shape_ok) {
      MISMATCH("%s  '%s': shape [", len ? "\n" : "", t->name);
      for (int k = 0; k < t->rank; k++) MISMATCH("%s%lld", k ? ", " : "", (long long)t->shape[k]);
      MISMATCH("], the model needs [N");
      for (int k = 1; k < td->rank; k++) MISMATCH(", %lld", (long long)td->shape[k]);
      MISMATCH("] (N samples)");
      continue;
    }
    if (!bpcrt_dtype_loads(t->dtype, td->dtype)) {
      MISMATCH("%s  '%s': %s, the model needs %s", len ? "\n" : "", t->name, bpcrt_dtype_name(t->dtype),
               BPCRT_LOADS_WHAT(td->dtype));
      continue;
    }
    if (n >= 0 && t->shape[0] != n) {
      MISMATCH("%s  '%s': %lld samples, other tensors have %lld", len ? "\n" : "", t->name, (long long)t->shape[0],
               (long long)n);
      continue;
    }
    n = t->shape[0];
    DataCol *c = add_col(ds, td);
    c->data = malloc((size_t)(n * c->per) * bpcrt_dtype_size(c->dtype) + 1);
    if (c->dtype == BPCRT_I32) {
      memcpy(c->data, t->data, t->nbytes);
    } else {
      double *v = malloc((size_t)(n * c->per) * sizeof *v + 1), s = scale_of(dd, c->name, true);
      bpcrt_st_to_f64(t, v);
      int64_t bad = -1;
      for (int64_t k = 0; k < n * c->per; k++) {
        if (!isfinite(v[k]) && bad < 0) bad = k;
        put_val(c, k, v[k] * s);
      }
      if (bad >= 0 && !len) {  // as a csv cell: nan and inf are not data
        snprintf(err, errlen, "%s: sample %lld: '%s' holds %g; training data must be finite", path,
                 (long long)(bad / c->per), c->name, v[bad]);
        free(v);
        bpcrt_st_free(&f);
        return false;
      }
      free(v);
    }
  }
#undef MISMATCH
  bpcrt_st_free(&f);
  if (len) {
    char tmp[2048];
    snprintf(tmp, sizeof tmp, "%s", err);
    snprintf(err, errlen, "%s: does not match the model's inputs:\n%s", path, tmp);
    return false;
  }
  ds->n = n < 0 ? 0 : n;
  if (ds->n == 0) return fail(err, errlen, "%s: no samples", path);
  return true;
}

// ---- idx ---------------------------------------------------------------------

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

// Reads one IDX file of unsigned bytes; *dims/ndim/data point into *buf.
static bool read_idx(const char *path, uint8_t **buf, int64_t *dims, int *ndim, int64_t *count, int64_t *hdr, char *err,
                     size_t errlen) {
  int64_t len;
  if (!slurp(path, buf, &len, err, errlen)) return false;
  const uint8_t *b = *buf;
  if (len < 4)
    return fail(err, errlen, "%s: offset %lld: truncated IDX header (%lld bytes)", path, (long long)len,
                (long long)len);
  if (b[0] != 0 || b[1] != 0)
    return fail(err, errlen, "%s: offset 0: bad IDX magic %02x %02x %02x %02x (expected 00 00 08 NDIM)", path, b[0],
                b[1], b[2], b[3]);
  if (b[2] != 0x08)
    return fail(err, errlen, "%s: offset 2: IDX element type 0x%02x; only unsigned bytes (0x08) are read", path, b[2]);
  *ndim = b[3];
  if (*ndim < 1 || *ndim > 4)
    return fail(err, errlen, "%s: offset 3: IDX with %d dimensions (1 to 4 expected)", path, *ndim);
  *hdr = 4 + 4 * (int64_t)*ndim;
  if (len < *hdr) return fail(err, errlen, "%s: offset %lld: truncated IDX header", path, (long long)len);
  *count = 1;
  for (int i = 0; i < *ndim; i++) {
    dims[i] = be32(b + 4 + 4 * i);
    if (dims[i] > ((int64_t)1 << 31) || *count > ((int64_t)1 << 40) / (dims[i] ? dims[i] : 1))
      return fail(err, errlen, "%s: offset %d: IDX dimension %lld too large", path, 4 + 4 * i, (long long)dims[i]);
    *count *= dims[i];
  }
  if (len - *hdr < *count)
    return fail(err, errlen, "%s: offset %lld: truncated: the header promises %lld bytes of data, the file has %lld",
                path, (long long)len, (long long)*count, (long long)(len - *hdr));
  if (len - *hdr > *count)
    return fail(err, errlen, "%s: offset %lld: %lld bytes after the data", path, (long long)(*hdr + *count),
                (long long)(len - *hdr - *count));
  return true;
}

static char *join(const char *dir, const char *file) {
  const char *base = strrchr(file, '/');
  base = base ? base + 1 : file;
  size_t n = strlen(dir) + strlen(base) + 2;
  char *s = malloc(n);
  snprintf(s, n, "%s/%s", dir, base);
  return s;
}

static bool load_idx(Dataset *ds, const DataDesc *dd, const Prog *p, const char *dir, char *err, size_t errlen) {
  if (!dd->images || !dd->labels) return fail(err, errlen, "idx data needs 'images' and 'labels'");
  ds->path = dir ? join(dir, dd->images) : strdup(dd->images);
  ds->path2 = dir ? join(dir, dd->labels) : strdup(dd->labels);
  const TDesc *tx = prog_find(p, dd->x), *ty = prog_find(p, dd->y);
  if (!tx || !ty || tx->role != ROLE_INPUT || ty->role != ROLE_INPUT)
    return fail(err, errlen, "%s: idx data feeds '%s' and '%s', which are not both inputs of the model", ds->path,
                dd->x, dd->y);
  uint8_t *ib = NULL, *lb = NULL;
  int64_t idims[4], ldims[4], icount, lcount, ihdr, lhdr;
  int indim, lndim;
  bool ok = read_idx(ds->path, &ib, idims, &indim, &icount, &ihdr, err, errlen) &&
            read_idx(ds->path2, &lb, ldims, &lndim, &lcount, &lhdr, err, errlen);
  if (ok && icount / (idims[0] ? idims[0] : 1) != per_sample(tx))
    ok = fail(err, errlen, "%s: %lld values per image, input '%s' needs %lld", ds->path,
              (long long)(icount / (idims[0] ? idims[0] : 1)), tx->name, (long long)per_sample(tx));
  if (ok && lcount / (ldims[0] ? ldims[0] : 1) != per_sample(ty))
    ok = fail(err, errlen, "%s: %lld values per label, input '%s' needs %lld", ds->path2,
              (long long)(lcount / (ldims[0] ? ldims[0] : 1)), ty->name, (long long)per_sample(ty));
  if (ok && idims[0] != ldims[0])
    ok = fail(err, errlen, "%s: %lld labels for %lld images in %s", ds->path2, (long long)ldims[0], (long long)idims[0],
              ds->path);
  if (ok && idims[0] == 0) ok = fail(err, errlen, "%s: no samples", ds->path);
  if (ok) {
    ds->n = idims[0];
    ds->cols = calloc(3, sizeof *ds->cols);
    DataCol *cx = add_col(ds, tx), *cy = add_col(ds, ty);
    double sx = scale_of(dd, tx->name, true), sy = ty->dtype == BPCRT_I32 ? 1 : scale_of(dd, ty->name, false);
    cx->data = malloc((size_t)icount * bpcrt_dtype_size(cx->dtype) + 1);
    cy->data = malloc((size_t)lcount * bpcrt_dtype_size(cy->dtype) + 1);
    for (int64_t k = 0; k < icount; k++) put_val(cx, k, tx->dtype == BPCRT_I32 ? ib[ihdr + k] : ib[ihdr + k] * sx);
    for (int64_t k = 0; k < lcount; k++) put_val(cy, k, lb[lhdr + k] * sy);
    ds->hdr2 = lhdr;
  }
  free(ib), free(lb);
  return ok;
}

// ---- text --------------------------------------------------------------------

static bool load_text(Dataset *ds, const DataDesc *dd, const Prog *p, const char *path, char *err, size_t errlen) {
  const TDesc *tt = prog_find(p, dd->tokens), *tg = prog_find(p, dd->targets);
  if (!tt || tt->role != ROLE_INPUT || tt->dtype != BPCRT_I32 || tt->rank != 2)
    return fail(err, errlen, "%s: text data feeds '%s', which is not an i32 [B, T] input of the model", path,
                dd->tokens);
  if (tg && (tg->role != ROLE_INPUT || tg->dtype != BPCRT_I32 || tg->numel != tt->numel))
    return fail(err, errlen, "%s: text targets '%s' must be an i32 input shaped as '%s'", path, dd->targets,
                dd->tokens);
  ds->tok_name = strdup(dd->tokens);
  ds->tgt_name = strdup(dd->targets);
  if (!slurp(path, &ds->bytes, &ds->nbytes, err, errlen)) return false;
  int64_t T = tt->shape[1];
  if (ds->nbytes < T + 1)
    return fail(err, errlen, "%s: offset %lld: the file has %lld bytes; a window needs %lld", path,
                (long long)ds->nbytes, (long long)ds->nbytes, (long long)(T + 1));
  return true;
}

static const DataCol *col_of(const Dataset *ds, const char *name);

// Every value of an int input that feeds a checked op (labels, embedding
// ids) lies in [0, limit), over the whole file: a bad row is found when the
// file loads, not at the step that happens to draw it (or never, in a batch
// the epoch drops). The message is the one the step's own check gives.
static bool check_limits(const Dataset *ds, const Prog *p, char *err, size_t errlen) {
  for (int i = 0; i < p->n; i++) {
    const TDesc *t = &p->t[i];
    if (t->role != ROLE_INPUT || t->dtype != BPCRT_I32 || t->limit <= 0) continue;
    const char *what = status_what(t->limit_code);
    char where[600];
    if (ds->format == FMT_TEXT) {  // tokens and targets are the file's bytes
      if (strcmp(t->name, ds->tok_name) && (!ds->tgt_name || strcmp(t->name, ds->tgt_name))) continue;
      for (int64_t k = 0; k < ds->nbytes; k++)
        if (ds->bytes[k] >= t->limit) {
          data_where(ds, k, where, sizeof where);
          return fail(err, errlen, "%s (input '%s'): %s %d out of range [0, %lld)", where, t->name, what, ds->bytes[k],
                      (long long)t->limit);
        }
      continue;
    }
    const DataCol *c = col_of(ds, t->name);
    if (!c || c->dtype != BPCRT_I32) continue;
    const int32_t *v = (const int32_t *)c->data;
    for (int64_t k = 0; k < ds->n * c->per; k++)
      if (v[k] < 0 || v[k] >= t->limit) {
        data_where(ds, k / c->per, where, sizeof where);
        return fail(err, errlen, "%s (input '%s'): %s %d out of range [0, %lld)", where, t->name, what, v[k],
                    (long long)t->limit);
      }
  }
  return true;
}

// ---- the interface -------------------------------------------------------------

bool data_load(Dataset *ds, const DataDesc *dd, const Prog *p, const char *over, char *err, size_t errlen) {
  memset(ds, 0, sizeof *ds);
  ds->format = dd->format;
  const char *path = over ? over : dd->path;
  if (dd->format != FMT_IDX && !path) return fail(err, errlen, "the data section names no file");
  if (dd->format != FMT_IDX) ds->path = strdup(path);
  bool ok = false;
  switch (dd->format) {
  case FMT_CSV: ok = load_csv(ds, dd, p, path, err, errlen); break;
  case FMT_ST: ok = load_st(ds, dd, p, path, err, errlen); break;
  case FMT_IDX: ok = load_idx(ds, dd, p, over, err, errlen); break;
  case FMT_TEXT: ok = load_text(ds, dd, p, path, err, errlen); break;
  case FMT_NONE: ok = fail(err, errlen, "no data"); break;
  }
  ok = ok && check_fed(ds, p, ds->path, err, errlen) && check_limits(ds, p, err, errlen);
  if (!ok) data_free(ds);
  return ok;
}

void data_free(Dataset *ds) {
  if (ds->borrowed) {
    memset(ds, 0, sizeof *ds);
    return;
  }
  for (int i = 0; i < ds->ncols; i++) free(ds->cols[i].name), free(ds->cols[i].data);
  free(ds->cols), free(ds->path), free(ds->path2), free(ds->line), free(ds->bytes);
  free(ds->tok_name), free(ds->tgt_name);
  memset(ds, 0, sizeof *ds);
}

void data_split(Dataset *ds, double fraction, Dataset *val) {
  *val = *ds;
  val->borrowed = true;
  if (ds->format == FMT_TEXT) {
    int64_t nv = (int64_t)((double)ds->nbytes * fraction);
    val->bytes = ds->bytes + (ds->nbytes - nv);
    val->nbytes = nv;
    val->base = ds->base + (ds->nbytes - nv);
    ds->nbytes -= nv;
    return;
  }
  int64_t nv = (int64_t)((double)ds->n * fraction);
  ds->n -= nv;
  val->n = nv;
  val->base = ds->base + ds->n;
}

static const DataCol *col_of(const Dataset *ds, const char *name) {
  for (int i = 0; i < ds->ncols; i++)
    if (!strcmp(ds->cols[i].name, name)) return &ds->cols[i];
  return NULL;
}

void data_put(const Dataset *ds, const Prog *p, char *arena, int64_t idx, int64_t b) {
  for (int i = 0; i < p->n; i++) {
    const TDesc *t = &p->t[i];
    const DataCol *c = t->role == ROLE_INPUT ? col_of(ds, t->name) : NULL;
    if (!c) continue;
    size_t es = bpcrt_dtype_size(c->dtype), row = (size_t)c->per * es;
    memcpy(arena + t->offset + (size_t)b * row, c->data + (size_t)(ds->base + idx) * row, row);
  }
}

void data_put_window(const Dataset *ds, const Prog *p, char *arena, int64_t start, int64_t b) {
  const TDesc *tt = prog_find(p, ds->tok_name), *tg = prog_find(p, ds->tgt_name);
  int64_t T = tt->shape[1];
  int32_t *tok = (int32_t *)(arena + tt->offset) + b * T;
  int32_t *tgt = tg ? (int32_t *)(arena + tg->offset) + b * T : NULL;
  for (int64_t i = 0; i < T; i++) {
    tok[i] = ds->bytes[start + i];
    if (tgt) tgt[i] = ds->bytes[start + i + 1];
  }
}

// idx: bytes per label (the labels are the dataset's second column).
static int64_t label_per(const Dataset *ds) { return ds->ncols > 1 ? ds->cols[1].per : 1; }

void data_where(const Dataset *ds, int64_t idx, char *buf, size_t len) {
  switch (ds->format) {
  case FMT_CSV: snprintf(buf, len, "%s:%lld", ds->path, (long long)ds->line[ds->base + idx]); break;
  case FMT_IDX:  // labels are what goes out of range: name the labels file
    snprintf(buf, len, "%s: item %lld (offset %lld)", ds->path2, (long long)(ds->base + idx),
             (long long)(ds->hdr2 + (ds->base + idx) * label_per(ds)));
    break;
  case FMT_ST: snprintf(buf, len, "%s: sample %lld", ds->path, (long long)(ds->base + idx)); break;
  case FMT_TEXT: snprintf(buf, len, "%s: offset %lld", ds->path, (long long)(ds->base + idx)); break;
  case FMT_NONE: snprintf(buf, len, "?"); break;
  }
}

void data_perm(int64_t n, uint64_t seed, uint64_t epoch, bool shuffle, int64_t *perm) {
  for (int64_t i = 0; i < n; i++) perm[i] = i;
  if (!shuffle) return;
  uint64_t stream = bpcrt_mix64(bpcrt_fnv1a64("epoch") ^ epoch);
  for (int64_t i = n - 1; i > 0; i--) {
    // (i + 1) * 64-bit draw >> 64: an unbiased-enough index in [0, i]
    unsigned __int128 m = (unsigned __int128)bpcrt_rand64(seed, stream, (uint64_t)i) * (uint64_t)(i + 1);
    int64_t j = (int64_t)(m >> 64);
    int64_t t = perm[i];
    perm[i] = perm[j], perm[j] = t;
  }
}
