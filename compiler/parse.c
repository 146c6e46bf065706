// parse.c — the expression language of SPEC 1.3, read from YAML scalars.
//
// Takes: a scalar YNode. Guarantees: an Expr tree whose every node carries the
// file position of its first character (EX_BIN: of its operator), or NULL
// after one error at the exact offending character. Nesting is bounded by
// BPC_MAX_DEPTH, so the recursive descent cannot blow the stack.
// Leaves out: what names mean and whether a call's op exists (expand.c).
//
// Grammar, lowest precedence first (Python's):
//   expr    := term (('+' | '-') term)*
//   term    := unary (('*' | '/' | '@') unary)*
//   unary   := '-' unary | power
//   power   := primary ('**' unary)?          right-associative; -x ** 2 = -(x ** 2)
//   primary := NUMBER | true | false | NAME | NAME '(' args ')' | '(' expr ')'
//            | '[' (expr (',' expr)*)? ']'
//   args    := positional..., then key=value... (a trailing comma is allowed)
// A minus applied directly to a number literal folds into a negative EX_NUM,
// so `axis=-1` and `x ** -2` reach the expander as plain literals.
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bpcc.h"

typedef enum { T_NUM, T_NAME, T_PUNCT, T_POW, T_END } TokKind;

typedef struct Tok {
  TokKind kind;
  int pos, len;  // byte range in the scalar's text
} Tok;

typedef struct Parser {
  const YNode *node;
  Arena *a;
  Diag *d;
  const char *s;  // the scalar's text
  int len;
  Loc *locs;      // file position of every byte of s, and of its end
  Tok tok;        // the current token
  int depth;
  bool failed;
} Parser;

// ------------------------------------------------------------ positions

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static void adv(const char **src, Loc *cur) {
  if (**src == '\n') {
    cur->line++;
    cur->col = 1;
  } else {
    cur->col++;
  }
  (*src)++;
}

static void skip_ws(const char **src, const char *end, Loc *cur) {
  while (*src < end && is_ws(**src)) adv(src, cur);
}

// The scalar's first source byte, or NULL without source text.
static const char *node_src(const YNode *node, const char **end) {
  const SrcFile *f = node->loc.file;
  if (!f || !f->text) return NULL;
  size_t i = 0;
  if (f->lines && node->loc.line >= 1 && node->loc.line <= f->nlines)
    i = f->lines[node->loc.line - 1];
  else
    for (int l = 1; l < node->loc.line && i < f->len; i++)
      if (f->text[i] == '\n') l++;
  *end = f->text + f->len;
  const char *src = f->text + i + (node->loc.col - 1);
  return src > *end ? *end : src;
}

// A double-quoted scalar's escape at src (a backslash): how many source
// bytes it spans and how many bytes of the value it makes (YAML 1.1: \xXX,
// \uXXXX, \UXXXXXXXX as UTF-8; \N and \_ two bytes, \L and \P three;
// the others one).
static int escape_len(const char *src, const char *end, int *value_bytes) {
  char e = src + 1 < end ? src[1] : 0;
  int hex = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
  *value_bytes = e == 'N' || e == '_' ? 2 : e == 'L' || e == 'P' ? 3 : 1;
  if (hex && src + 2 + hex <= end) {
    unsigned long cp = 0;
    for (int i = 0; i < hex; i++)
      cp = cp * 16 + (unsigned long)(isdigit((unsigned char)src[2 + i])
                                         ? src[2 + i] - '0'
                                         : (tolower((unsigned char)src[2 + i]) - 'a' + 10));
    *value_bytes = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    return 2 + hex;
  }
  return 2;
}

// Maps every byte of the scalar's value to its file position by walking the
// source alongside it: exact for plain and quoted scalars (escapes and
// escaped line breaks too) and for folded lines; a best effort through
// block scalars.
static Loc *map_locs(Arena *a, const YNode *node, int len) {
  Loc *locs = arena_alloc(a, sizeof(Loc) * (size_t)(len + 1));
  Loc cur = node->loc;
  const char *end = NULL, *src = node_src(node, &end);
  const char *v = node->str;
  char style = src && src < end && !node->plain ? *src : 0;
  if (style == '"' || style == '\'') {
    adv(&src, &cur);
  } else if (style == '|' || style == '>') {  // content starts on the next line
    while (src < end && *src != '\n') adv(&src, &cur);
    skip_ws(&src, end, &cur);
  }
  for (int k = 0; k < len; k++) {
    if (!src || src >= end) {
      locs[k] = cur;
      cur.col++;
      continue;
    }
    // an escaped line break makes nothing: past it and the next line's indent
    while (style == '"' && src + 1 < end && src[0] == '\\' && (src[1] == '\n' || src[1] == '\r')) {
      adv(&src, &cur);
      skip_ws(&src, end, &cur);
    }
    if (src >= end) {
      locs[k] = cur;
      continue;
    }
    if (*src != v[k] && !is_ws(v[k]) && is_ws(*src)) skip_ws(&src, end, &cur);  // a folded break
    locs[k] = cur;
    if (src >= end) continue;
    if (*src != v[k] && is_ws(v[k]) && is_ws(*src)) {
      skip_ws(&src, end, &cur);
    } else if (style == '"' && *src == '\\') {  // every byte it makes at the backslash
      int made, n = escape_len(src, end, &made);
      for (int m = 1; m < made && k + 1 < len; m++) locs[++k] = cur;
      for (int i = 0; i < n && src < end; i++) adv(&src, &cur);
    } else if (*src != v[k] && style == '\'' && *src == '\'') {
      adv(&src, &cur);  // '' in a single-quoted scalar: two source bytes for one
      if (src < end) adv(&src, &cur);
    } else {
      adv(&src, &cur);
    }
  }
  locs[len] = cur;
  return locs;
}

static Loc at(Parser *p, int pos) { return p->locs[pos]; }

// Reports once; later errors of the same parse are consequences.
static void __attribute__((format(printf, 3, 4))) error_at(Parser *p, int pos, const char *fmt, ...) {
  if (p->failed) return;
  p->failed = true;
  va_list ap;
  va_start(ap, fmt);
  diag_verror(p->d, at(p, pos), fmt, ap);
  va_end(ap);
}

// ------------------------------------------------------------ tokens

static bool is_name_start(char c) { return isalpha((unsigned char)c) || c == '_'; }
static bool is_name_char(char c) { return isalnum((unsigned char)c) || c == '_'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static int number_len(const char *s, int i, int len) {
  int j = i;
  while (j < len && is_digit(s[j])) j++;
  if (j < len && s[j] == '.') {
    j++;
    while (j < len && is_digit(s[j])) j++;
  }
  if (j < len && (s[j] == 'e' || s[j] == 'E')) {
    int k = j + 1;
    if (k < len && (s[k] == '+' || s[k] == '-')) k++;
    if (k < len && is_digit(s[k])) {
      while (k < len && is_digit(s[k])) k++;
      j = k;
    }
  }
  return j - i;
}

static void next(Parser *p) {
  int i = p->tok.pos + p->tok.len;
  while (i < p->len && is_ws(p->s[i])) i++;
  Tok t = {T_END, i, 0};
  char c = i < p->len ? p->s[i] : 0;
  if (i >= p->len) {
    t.kind = T_END;
  } else if (is_digit(c) || (c == '.' && i + 1 < p->len && is_digit(p->s[i + 1]))) {
    t.kind = T_NUM;
    t.len = number_len(p->s, i, p->len);
  } else if (is_name_start(c)) {
    t.kind = T_NAME;
    while (i + t.len < p->len && is_name_char(p->s[i + t.len])) t.len++;
  } else if (c == '*' && i + 1 < p->len && p->s[i + 1] == '*') {
    t.kind = T_POW;
    t.len = 2;
  } else if (strchr("+-*/@()[],=", c)) {
    t.kind = T_PUNCT;
    t.len = 1;
  } else {
    unsigned char u = (unsigned char)c;
    if (u >= 0x21 && u < 0x7f)
      error_at(p, i, "unexpected character '%c'", c);
    else
      error_at(p, i, "unexpected character '\\x%02x'", u);
    t.kind = T_END;
  }
  p->tok = t;
}

static bool is_punct(Parser *p, char c) { return p->tok.kind == T_PUNCT && p->s[p->tok.pos] == c; }

static void unexpected(Parser *p) {
  if (p->tok.kind == T_END)
    error_at(p, p->tok.pos, "unexpected end of expression");
  else
    error_at(p, p->tok.pos, "unexpected '%.*s'", p->tok.len, p->s + p->tok.pos);
}

// ------------------------------------------------------------ grammar

static Expr *new_expr(Parser *p, ExprKind kind, int pos) {
  Expr *e = arena_alloc(p->a, sizeof(Expr));
  e->kind = kind;
  e->loc = at(p, pos);
  return e;
}

static Expr *expr(Parser *p);
static Expr *unary(Parser *p);

static bool enter(Parser *p) {
  if (++p->depth <= BPC_MAX_DEPTH) return true;
  error_at(p, p->tok.pos, "expression nested deeper than %d levels", BPC_MAX_DEPTH);
  return false;
}

static Expr *number(Parser *p) {
  Expr *e = new_expr(p, EX_NUM, p->tok.pos);
  char buf[64];
  int n = p->tok.len;
  if (n >= (int)sizeof(buf)) {
    error_at(p, p->tok.pos, "number too large");
    return NULL;
  }
  memcpy(buf, p->s + p->tok.pos, (size_t)n);
  buf[n] = 0;
  e->is_int = !strpbrk(buf, ".eE");
  errno = 0;
  e->num = strtod(buf, NULL);
  // Integers stay exact in a double up to 2^53; larger is surely a typo.
  if (isinf(e->num) || (errno == ERANGE && e->num != 0) || (e->is_int && e->num > 9007199254740992.0)) {
    error_at(p, p->tok.pos, "number too large: %s", buf);
    return NULL;
  }
  next(p);
  return e;
}

// `f(a, b)` unquoted inside `{...}` is cut at the comma by YAML itself.
static void flow_hint(Parser *p) {
  Loc e = p->locs[p->len];
  const char *end = NULL, *src = node_src(p->node, &end);
  if (!p->node->plain || !src || e.line != p->node->loc.line) return;
  src += e.col - p->node->loc.col;
  if (src < end && *src == ',')
    diag_note(p->d, e, "inside a YAML flow collection a ',' ends the value; quote the expression");
}

// Expects `close` and consumes it; `open_pos` is reported when the input ends.
static bool closing(Parser *p, char close, int open_pos) {
  if (is_punct(p, close)) {
    next(p);
    return true;
  }
  if (p->tok.kind == T_END && !p->failed) {
    error_at(p, open_pos, "unclosed '%c'", p->s[open_pos]);
    flow_hint(p);
  } else
    unexpected(p);
  return false;
}

static void push_arg(Parser *p, Expr *call, Expr *arg) {
  // Arena arrays grow by copying; argument lists are short.
  Expr **v = arena_alloc(p->a, sizeof(Expr *) * (size_t)(call->nargs + 1));
  if (call->nargs) memcpy(v, call->args, sizeof(Expr *) * (size_t)call->nargs);
  v[call->nargs++] = arg;
  call->args = v;
}

static bool push_kwarg(Parser *p, Expr *call, int name_pos, int name_len, Expr *val) {
  const char *name = arena_strndup(p->a, p->s + name_pos, (size_t)name_len);
  for (int i = 0; i < call->nkw; i++) {
    if (strcmp(call->kwnames[i], name) == 0) {
      error_at(p, name_pos, "duplicate keyword argument '%s'", name);
      return false;
    }
  }
  int n = call->nkw;
  const char **names = arena_alloc(p->a, sizeof(char *) * (size_t)(n + 1));
  Expr **vals = arena_alloc(p->a, sizeof(Expr *) * (size_t)(n + 1));
  Loc *locs = arena_alloc(p->a, sizeof(Loc) * (size_t)(n + 1));
  if (n) {
    memcpy(names, call->kwnames, sizeof(char *) * (size_t)n);
    memcpy(vals, call->kwargs, sizeof(Expr *) * (size_t)n);
    memcpy(locs, call->kwlocs, sizeof(Loc) * (size_t)n);
  }
  names[n] = name;
  vals[n] = val;
  locs[n] = at(p, name_pos);
  call->kwnames = names;
  call->kwargs = vals;
  call->kwlocs = locs;
  call->nkw = n + 1;
  return true;
}

// One call argument: `expr` or `key=expr`.
static bool call_arg(Parser *p, Expr *call) {
  Tok save = p->tok;
  if (p->tok.kind == T_NAME) {
    next(p);
    if (is_punct(p, '=')) {
      next(p);
      Expr *v = expr(p);
      return v && push_kwarg(p, call, save.pos, save.len, v);
    }
    p->tok = save;  // not a keyword: re-read the name as an expression
  }
  Expr *v = expr(p);
  if (!v) return false;
  if (call->nkw > 0) {
    error_at(p, save.pos, "positional argument after keyword argument");
    return false;
  }
  push_arg(p, call, v);
  return true;
}

static bool list_item(Parser *p, Expr *list) {
  Expr *v = expr(p);
  if (v) push_arg(p, list, v);
  return v != NULL;
}

// A call's arguments or a list's items, comma separated, after the opening
// bracket at `open_pos`. Counts as one nesting level.
static bool sequence(Parser *p, Expr *into, char close, int open_pos, bool is_call) {
  if (!enter(p)) return false;
  next(p);  // the opening bracket
  bool ok = true;
  while (ok && !is_punct(p, close)) {
    ok = is_call ? call_arg(p, into) : list_item(p, into);
    if (!ok || !is_punct(p, ',')) break;
    next(p);
  }
  p->depth--;
  return ok && closing(p, close, open_pos);
}

static Expr *name_or_call(Parser *p) {
  Tok t = p->tok;
  const char *name = arena_strndup(p->a, p->s + t.pos, (size_t)t.len);
  next(p);
  if (!is_punct(p, '(')) {
    if (!strcmp(name, "true") || !strcmp(name, "false")) {
      Expr *e = new_expr(p, EX_BOOL, t.pos);
      e->num = name[0] == 't';
      return e;
    }
    Expr *e = new_expr(p, EX_NAME, t.pos);
    e->name = name;
    return e;
  }
  Expr *e = new_expr(p, EX_CALL, t.pos);
  e->name = name;
  return sequence(p, e, ')', p->tok.pos, true) ? e : NULL;
}

static Expr *primary(Parser *p) {
  if (p->tok.kind == T_NUM) return number(p);
  if (p->tok.kind == T_NAME) return name_or_call(p);
  if (is_punct(p, '(')) {
    int open = p->tok.pos;
    if (!enter(p)) return NULL;
    next(p);
    Expr *e = expr(p);
    p->depth--;
    return e && closing(p, ')', open) ? e : NULL;
  }
  if (is_punct(p, '[')) {
    Expr *e = new_expr(p, EX_LIST, p->tok.pos);
    return sequence(p, e, ']', p->tok.pos, false) ? e : NULL;
  }
  if (is_punct(p, ')') || is_punct(p, ']'))
    error_at(p, p->tok.pos, "unmatched '%c'", p->s[p->tok.pos]);
  else
    unexpected(p);
  return NULL;
}

static Expr *binary(Parser *p, char op, int pos, Expr *l, Expr *r) {
  Expr *e = new_expr(p, EX_BIN, pos);
  e->op = op;
  e->nargs = 2;
  e->args = arena_alloc(p->a, 2 * sizeof(Expr *));
  e->args[0] = l;
  e->args[1] = r;
  return e;
}

static Expr *power(Parser *p) {
  Expr *l = primary(p);
  if (!l || p->tok.kind != T_POW) return l;
  int pos = p->tok.pos;
  if (!enter(p)) return NULL;
  next(p);
  Expr *r = unary(p);  // right-associative, and `x ** -1` is allowed
  p->depth--;
  return r ? binary(p, 'P', pos, l, r) : NULL;
}

static Expr *negate(Parser *p, int pos, Expr *x) {
  if (x->kind == EX_NUM && !signbit(x->num)) {  // `-2` is one literal
    x->num = -x->num;
    x->loc = at(p, pos);
    return x;
  }
  Expr *e = new_expr(p, EX_NEG, pos);
  e->nargs = 1;
  e->args = arena_alloc(p->a, sizeof(Expr *));
  e->args[0] = x;
  return e;
}

static Expr *unary(Parser *p) {
  if (!is_punct(p, '-')) return power(p);
  int pos = p->tok.pos;
  if (!enter(p)) return NULL;
  next(p);
  Expr *x = unary(p);
  p->depth--;
  return x ? negate(p, pos, x) : NULL;
}

static Expr *term(Parser *p) {
  Expr *l = unary(p);
  while (l && (is_punct(p, '*') || is_punct(p, '/') || is_punct(p, '@'))) {
    char op = p->s[p->tok.pos];
    int pos = p->tok.pos;
    next(p);
    Expr *r = unary(p);
    l = r ? binary(p, op, pos, l, r) : NULL;
  }
  return l;
}

static Expr *expr(Parser *p) {
  Expr *l = term(p);
  while (l && (is_punct(p, '+') || is_punct(p, '-'))) {
    char op = p->s[p->tok.pos];
    int pos = p->tok.pos;
    next(p);
    Expr *r = term(p);
    l = r ? binary(p, op, pos, l, r) : NULL;
  }
  return l;
}

Expr *expr_parse(Arena *a, Diag *d, const YNode *node) {
  BPC_ASSERT(node && node->kind == YN_SCALAR);
  size_t n = strlen(node->str);
  if (n > 1 << 20) n = 1 << 20;  // positions are ints; no sane expression is longer
  Parser p = {.node = node, .a = a, .d = d, .s = node->str, .len = (int)n};
  p.locs = map_locs(a, node, p.len);
  next(&p);
  if (p.tok.kind == T_END) {
    if (!p.failed) diag_error(d, node->loc, "empty expression");
    return NULL;
  }
  Expr *e = expr(&p);
  if (e && p.tok.kind != T_END) {
    if (is_punct(&p, ')') || is_punct(&p, ']'))
      error_at(&p, p.tok.pos, "unmatched '%c'", p.s[p.tok.pos]);
    else
      unexpected(&p);
  }
  return p.failed ? NULL : e;
}

// ------------------------------------------------------------ printing

enum { PREC_ADD = 1, PREC_MUL, PREC_NEG, PREC_POW, PREC_ATOM };

static int prec(const Expr *e) {
  switch (e->kind) {
  case EX_BIN: return e->op == '+' || e->op == '-' ? PREC_ADD : e->op == 'P' ? PREC_POW : PREC_MUL;
  case EX_NEG: return PREC_NEG;
  case EX_NUM: return signbit(e->num) ? PREC_NEG : PREC_ATOM;  // prints with a leading '-'
  default: return PREC_ATOM;
  }
}

static void print_num(FILE *out, const Expr *e) {
  char buf[64];
  if (e->is_int && fabs(e->num) < 1e18) {
    snprintf(buf, sizeof(buf), "%.0f", e->num);
  } else {
    snprintf(buf, sizeof(buf), "%g", e->num);
    if (strtod(buf, NULL) != e->num) snprintf(buf, sizeof(buf), "%.17g", e->num);
    // Keep it a float literal when read back.
    if (!strpbrk(buf, ".eEin")) strcat(buf, ".0");
  }
  fputs(buf, out);
}

static void print_sub(FILE *out, const Expr *e, bool parens) {
  if (parens) fputc('(', out);
  expr_print(out, e);
  if (parens) fputc(')', out);
}

static void print_args(FILE *out, const Expr *e) {
  for (int i = 0; i < e->nargs; i++) {
    if (i) fputs(", ", out);
    expr_print(out, e->args[i]);
  }
  for (int i = 0; i < e->nkw; i++) {
    if (i || e->nargs) fputs(", ", out);
    fprintf(out, "%s=", e->kwnames[i]);
    expr_print(out, e->kwargs[i]);
  }
}

void expr_print(FILE *out, const Expr *e) {
  switch (e->kind) {
  case EX_NUM: print_num(out, e); break;
  case EX_BOOL: fputs(e->num != 0 ? "true" : "false", out); break;
  case EX_NAME: fputs(e->name, out); break;
  case EX_LIST:
    fputc('[', out);
    print_args(out, e);
    fputc(']', out);
    break;
  case EX_CALL:
    fprintf(out, "%s(", e->name);
    print_args(out, e);
    fputc(')', out);
    break;
  case EX_NEG:
    fputc('-', out);
    print_sub(out, e->args[0], prec(e->args[0]) < PREC_NEG);
    break;
  case EX_BIN: {
    int pr = prec(e);
    bool pow = e->op == 'P';
    // Left-associative ops group to the left; ** groups to the right and
    // takes a unary minus as its right operand.
    print_sub(out, e->args[0], pow ? prec(e->args[0]) <= pr : prec(e->args[0]) < pr);
    if (pow)
      fputs(" ** ", out);
    else
      fprintf(out, " %c ", e->op);
    print_sub(out, e->args[1], pow ? prec(e->args[1]) < PREC_NEG : prec(e->args[1]) <= pr);
    break;
  }
  }
}
