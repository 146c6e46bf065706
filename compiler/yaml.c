// yaml.c — libyaml's event stream turned into a YNode tree that keeps marks.
//
// Takes: a SrcFile (any bytes; NULs, binary junk and UTF-16 are all fine).
// Guarantees: either a tree of one document whose map keys are unique
// scalars, nested at most BPC_MAX_DEPTH deep, with every node's Loc in bytes
// (1-based), or NULL after an error was reported. The tree is built with an
// explicit stack, so deep input never recurses; libyaml's parser and every
// event are always released.
// Leaves out: tags and YAML 1.1 type resolution (scalars stay text: the loader
// decides what a scalar means), anchors' meaning (aliases are rejected).
#include <string.h>
#include <yaml.h>

#include "bpcc.h"

typedef struct Frame {
  YNode *node;
  struct {
    YNode **v;
    int n, cap;
  } items, keys;
} Frame;

typedef struct Builder {
  Arena *a;
  Diag *d;
  const SrcFile *f;
  Frame stack[BPC_MAX_DEPTH + 1];
  int depth;
  YNode *root;
  bool failed;  // an error was reported but parsing goes on (duplicate keys)
  int cur_line;  // line_start's cursor: line cur_line starts at cur_off
  size_t cur_off;
} Builder;

// Byte offset of the start of 1-based `line`, clamped to the text. Marks
// mostly move forward, so a cursor keeps the whole parse linear.
static size_t line_start(Builder *b, int line) {
  if (line < b->cur_line) {
    b->cur_line = 1;
    b->cur_off = 0;
  }
  size_t i = b->cur_off;
  int l = b->cur_line;
  for (; l < line && i < b->f->len; i++)
    if (b->f->text[i] == '\n') l++;
  b->cur_line = l;
  b->cur_off = i;
  return i;
}

// libyaml counts columns in characters; diagnostics and expression offsets
// count bytes, so walk the line's UTF-8 to convert.
static Loc mark_loc(Builder *b, yaml_mark_t m) {
  const SrcFile *f = b->f;
  Loc loc = {f, (int)m.line + 1, 1};
  size_t start = line_start(b, loc.line), i = start;
  for (size_t c = 0; c < m.column && i < f->len && f->text[i] != '\n'; c++) {
    i++;
    while (i < f->len && ((unsigned char)f->text[i] & 0xC0) == 0x80) i++;
  }
  loc.col = (int)(i - start) + 1;
  return loc;
}

// Reader errors (bad encoding, control characters) carry a byte offset only.
static Loc offset_loc(const SrcFile *f, size_t off) {
  Loc loc = {f, 1, 1};
  for (size_t i = 0; i < off && i < f->len; i++) {
    if (f->text[i] == '\n') {
      loc.line++;
      loc.col = 1;
    } else {
      loc.col++;
    }
  }
  return loc;
}

static void syntax_error(Builder *b, yaml_parser_t *p) {
  const char *problem = p->problem ? p->problem : "invalid YAML";
  if (p->error == YAML_READER_ERROR) {
    diag_error(b->d, offset_loc(b->f, p->problem_offset), "invalid YAML: %s", problem);
    return;
  }
  diag_error(b->d, mark_loc(b, p->problem_mark), "invalid YAML: %s", problem);
  if (p->context) diag_note(b->d, mark_loc(b, p->context_mark), "%s", p->context);
}

static YNode *new_node(Builder *b, YNodeKind kind, yaml_mark_t m) {
  YNode *n = arena_alloc(b->a, sizeof(YNode));
  n->kind = kind;
  n->loc = mark_loc(b, m);
  return n;
}

// Checks a new key against the earlier keys of its mapping.
static bool check_key(Builder *b, Frame *fr, YNode *key) {
  if (key->kind != YN_SCALAR) {
    diag_error(b->d, key->loc, "mapping keys must be plain names, not a %s", key->kind == YN_SEQ ? "list" : "mapping");
    return false;
  }
  for (int i = 0; i < fr->keys.n; i++) {
    if (strcmp(fr->keys.v[i]->str, key->str) == 0) {
      diag_error(b->d, key->loc, "duplicate key '%s'", key->str);
      diag_note(b->d, fr->keys.v[i]->loc, "first defined here");
      b->failed = true;
      break;
    }
  }
  return true;
}

// Attaches a finished node to its parent (or makes it the root).
static bool attach(Builder *b, YNode *n) {
  if (b->depth == 0) {
    b->root = n;
    return true;
  }
  Frame *fr = &b->stack[b->depth - 1];
  if (fr->node->kind == YN_SEQ) {
    VEC_PUSH(fr->items, n);
  } else if (fr->keys.n == fr->items.n) {
    if (!check_key(b, fr, n)) return false;
    VEC_PUSH(fr->keys, n);
  } else {
    VEC_PUSH(fr->items, n);
  }
  return true;
}

static bool push(Builder *b, YNode *n) {
  if (b->depth >= BPC_MAX_DEPTH) {
    diag_error(b->d, n->loc, "nesting deeper than %d levels", BPC_MAX_DEPTH);
    return false;
  }
  Frame *fr = &b->stack[b->depth++];
  memset(fr, 0, sizeof(*fr));
  fr->node = n;
  return true;
}

// Moves a finished collection's items into the arena.
static YNode **to_arena(Builder *b, YNode **v, int n) {
  YNode **out = arena_alloc(b->a, sizeof(YNode *) * (size_t)(n ? n : 1));
  if (n) memcpy(out, v, sizeof(YNode *) * (size_t)n);
  return out;
}

static bool pop(Builder *b) {
  Frame *fr = &b->stack[--b->depth];
  YNode *n = fr->node;
  n->n = fr->items.n;
  n->items = to_arena(b, fr->items.v, fr->items.n);
  if (n->kind == YN_MAP) n->keys = to_arena(b, fr->keys.v, fr->keys.n);
  free(fr->items.v);
  free(fr->keys.v);
  return attach(b, n);
}

static bool is_empty_scalar(const YNode *n) { return n->kind == YN_SCALAR && n->plain && n->str[0] == 0; }

// One event; false to stop after an error.
static bool on_event(Builder *b, yaml_event_t *ev, int *ndocs) {
  switch (ev->type) {
  case YAML_DOCUMENT_START_EVENT:
    if (++*ndocs > 1) {
      diag_error(b->d, mark_loc(b, ev->start_mark), "a model file holds one YAML document; found a second one");
      return false;
    }
    return true;
  case YAML_ALIAS_EVENT:
    diag_error(b->d, mark_loc(b, ev->start_mark), "YAML aliases (*%s) are not supported",
               (const char *)ev->data.alias.anchor);
    return false;
  case YAML_SCALAR_EVENT: {
    YNode *n = new_node(b, YN_SCALAR, ev->start_mark);
    n->str = arena_strndup(b->a, (const char *)ev->data.scalar.value, ev->data.scalar.length);
    n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    return attach(b, n);
  }
  case YAML_SEQUENCE_START_EVENT: return push(b, new_node(b, YN_SEQ, ev->start_mark));
  case YAML_MAPPING_START_EVENT: return push(b, new_node(b, YN_MAP, ev->start_mark));
  case YAML_SEQUENCE_END_EVENT:
  case YAML_MAPPING_END_EVENT: return pop(b);
  default:  // stream start/end, document end
    return true;
  }
}

YNode *yaml_parse(Arena *a, Diag *d, const SrcFile *f) {
  Builder *b = xcalloc(1, sizeof(Builder));
  b->a = a;
  b->d = d;
  b->f = f;
  b->cur_line = 1;
  yaml_parser_t p;
  if (!yaml_parser_initialize(&p)) bpc_bug(__FILE__, __LINE__, "yaml_parser_initialize failed");
  yaml_parser_set_input_string(&p, (const unsigned char *)f->text, f->len);
  int ndocs = 0;
  bool ok = true;
  for (;;) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&p, &ev)) {
      syntax_error(b, &p);
      ok = false;
      break;
    }
    bool end = ev.type == YAML_STREAM_END_EVENT;
    ok = on_event(b, &ev, &ndocs);
    yaml_event_delete(&ev);
    if (!ok || end) break;
  }
  yaml_parser_delete(&p);
  while (b->depth > 0) {  // an error left collections open
    Frame *fr = &b->stack[--b->depth];
    free(fr->items.v);
    free(fr->keys.v);
  }
  YNode *root = b->root;
  if (ok && (!root || is_empty_scalar(root))) {
    diag_error(d, (Loc){f, 1, 1}, "empty model file");
    ok = false;
  }
  if (b->failed) ok = false;
  free(b);
  return ok ? root : NULL;
}

YNode *ymap_get(const YNode *map, const char *key) {
  if (!map || map->kind != YN_MAP) return NULL;
  for (int i = 0; i < map->n; i++)
    if (strcmp(map->keys[i]->str, key) == 0) return map->items[i];
  return NULL;
}
