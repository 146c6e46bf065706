// diag.c — user-facing errors: `file:line:col: error: message`, the source
// line and a caret (chibicc's verror_at). Counts errors instead of exiting;
// stops printing after d->max_errors so a broken file cannot flood stderr.
#include <string.h>

#include "bpcc.h"

void diag_init(Diag *d, FILE *out) {
  d->out = out ? out : stderr;
  d->nerr = 0;
  d->max_errors = BPC_MAX_ERRORS;
}

// Prints the source line of `loc` (tabs kept so the caret lines up) and a
// caret under its column. Non-printable bytes show as '?'.
static void print_line(FILE *out, Loc loc) {
  const SrcFile *f = loc.file;
  if (!f || !f->text || loc.line < 1) return;
  const char *p = f->text, *end = f->text + f->len;
  for (int line = 1; line < loc.line && p < end; p++)
    if (*p == '\n') line++;
  if (p >= end && loc.line > 1) return;
  const char *eol = p;
  while (eol < end && *eol != '\n' && eol - p < 200) eol++;
  if (eol > p && eol[-1] == '\r') eol--;
  fputs("  ", out);
  for (const char *q = p; q < eol; q++) {
    unsigned char c = (unsigned char)*q;
    fputc(c == '\t' || c >= 0x80 || (c >= 0x20 && c < 0x7f) ? c : '?', out);
  }
  fputs("\n  ", out);
  for (int i = 1; i < loc.col && p + i - 1 < eol; i++) fputc(p[i - 1] == '\t' ? '\t' : ' ', out);
  fputs("^\n", out);
}

static void report(Diag *d, Loc loc, const char *kind, const char *fmt, va_list ap) {
  if (loc.file)
    fprintf(d->out, "%s:%d:%d: %s: ", loc.file->path, loc.line, loc.col, kind);
  else
    fprintf(d->out, "bpc: %s: ", kind);
  vfprintf(d->out, fmt, ap);
  fputc('\n', d->out);
  print_line(d->out, loc);
}

void diag_verror(Diag *d, Loc loc, const char *fmt, va_list ap) {
  d->nerr++;
  if (d->nerr > d->max_errors) return;
  report(d, loc, "error", fmt, ap);
  if (d->nerr == d->max_errors) fprintf(d->out, "bpc: too many errors; stopping here\n");
}

void diag_error(Diag *d, Loc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  diag_verror(d, loc, fmt, ap);
  va_end(ap);
}

void diag_note(Diag *d, Loc loc, const char *fmt, ...) {
  if (d->nerr > d->max_errors) return;
  va_list ap;
  va_start(ap, fmt);
  report(d, loc, "note", fmt, ap);
  va_end(ap);
}

Loc loc_offset(Loc base, int off) {
  base.col += off;
  return base;
}
