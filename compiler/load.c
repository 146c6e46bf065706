// load.c — model.yaml -> Model: every section of SPEC 1 read and validated.
//
// Takes: a path or text in memory. Guarantees: a Model whose names are
// identifiers, defined once across dims, inputs, params and graph entries;
// whose references (loss, metrics, outputs, data inputs, generate, function
// returns) name something that exists; whose train and data sections hold
// values in range with torch.optim's defaults filled in; whose data paths are
// absolute. Or NULL after reporting every independent error found.
// Leaves out: what expressions mean (names inside them, ops, shapes, dim
// values): expand.c resolves those. No data file is opened here.
//
// Defaults this file decides (SPEC is silent):
//   - a param without `init` gets xavier_uniform when its rank is >= 2, zeros
//     otherwise (biases, gains and scalars);
//   - `optimizer: adam` and `schedule: cosine` may be written as a bare type;
//   - a missing `train.optimizer` is adam with torch's defaults; StepLR's gamma
//     defaults to torch's 0.1;
//   - `metrics`, `outputs` and function `args` accept a single name for a list;
//   - an empty (null) optional section is the same as an absent one;
//   - an i32 param must be `trainable: false`.
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bpcc.h"

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

typedef struct NameDef {
  const char *name;
  Loc loc;
  const char *what;  // "a dim", "an input", "a param", "a graph entry"
} NameDef;

typedef struct Loader {
  Arena *a;
  Diag *d;
  Model *m;
  struct {
    NameDef *v;
    int n, cap;
  } names;  // the model's namespace
} Loader;

const char *dtype_name(DType t) {
  switch (t) {
  case DT_F32: return "f32";
  case DT_F64: return "f64";
  case DT_I32: return "i32";
  }
  return "?";
}

// ------------------------------------------------------------ node helpers

static const char *kind_name(const YNode *n) {
  return n->kind == YN_MAP ? "a mapping" : n->kind == YN_SEQ ? "a list" : "a scalar";
}

// `key:` with nothing after it, `~` or `null`.
static bool is_null(const YNode *n) {
  return n->kind == YN_SCALAR && n->plain && (!n->str[0] || !strcmp(n->str, "~") || !strcmp(n->str, "null"));
}

static bool want(Loader *L, const YNode *n, YNodeKind kind, const char *what) {
  if (n->kind == kind) return true;
  static const char *const names[] = {"a scalar", "a list", "a mapping"};
  diag_error(L->d, n->loc, "%s must be %s, not %s", what, names[kind], kind_name(n));
  return false;
}

// A mapping, or an empty one for null (optional sections).
static bool want_map(Loader *L, const YNode *n, const char *what) { return is_null(n) || want(L, n, YN_MAP, what); }

static bool is_ident(const char *s) {
  if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z'))) return false;
  for (s++; *s; s++)
    if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9'))) return false;
  return true;
}

static bool want_ident(Loader *L, const YNode *n, const char *what) {
  if (!want(L, n, YN_SCALAR, what)) return false;
  if (is_ident(n->str)) return true;
  diag_error(L->d, n->loc, "%s '%s' is not a name ([A-Za-z_][A-Za-z0-9_]*)", what, n->str);
  return false;
}

// Reports every key of `map` not in `allowed`, with a "did you mean" hint.
static void check_keys(Loader *L, const YNode *map, const char *const *allowed, int n, const char *where) {
  for (int i = 0; i < map->n; i++) {
    const char *k = map->keys[i]->str;
    bool found = false;
    for (int j = 0; j < n && !found; j++) found = !strcmp(k, allowed[j]);
    if (found) continue;
    const char *hint = closest_name(k, allowed, n);
    if (hint)
      diag_error(L->d, map->keys[i]->loc, "unknown key '%s' in %s; did you mean '%s'?", k, where, hint);
    else
      diag_error(L->d, map->keys[i]->loc, "unknown key '%s' in %s", k, where);
  }
}

static YNode *require(Loader *L, const YNode *map, const char *key, const char *where) {
  YNode *v = ymap_get(map, key);
  if (!v) diag_error(L->d, map->loc, "missing required key '%s' in %s", key, where);
  return v;
}

// ------------------------------------------------------------ values

// Constant numeric expressions: numbers, + - * / **, unary minus, parentheses.
static bool const_eval(Loader *L, const Expr *e, double *out) {
  double a, b;
  switch (e->kind) {
  case EX_NUM: *out = e->num; return true;
  case EX_NEG:
    if (!const_eval(L, e->args[0], &a)) return false;
    *out = -a;
    return true;
  case EX_BIN:
    if (e->op == '@') break;
    if (!const_eval(L, e->args[0], &a) || !const_eval(L, e->args[1], &b)) return false;
    if (e->op == '/' && b == 0) {
      diag_error(L->d, e->loc, "division by zero");
      return false;
    }
    *out = e->op == '+' ? a + b : e->op == '-' ? a - b : e->op == '*' ? a * b : e->op == '/' ? a / b : pow(a, b);
    if (isfinite(*out)) return true;
    diag_error(L->d, e->loc, "the value is not a finite number");
    return false;
  case EX_NAME: diag_error(L->d, e->loc, "expected a constant number, found the name '%s'", e->name); return false;
  default: break;
  }
  diag_error(L->d, e->loc, "expected a constant number");
  return false;
}

static bool get_num(Loader *L, const YNode *n, const char *what, double *out) {
  if (!want(L, n, YN_SCALAR, what)) return false;
  // YAML 1.2 core schema infinities (`clip_grad_norm: .inf`); .nan is a
  // float there too, but no setting takes it.
  const char *v = n->str + (n->str[0] == '+' || n->str[0] == '-');
  if (n->plain && (!strcmp(v, ".inf") || !strcmp(v, ".Inf") || !strcmp(v, ".INF"))) {
    *out = n->str[0] == '-' ? -INFINITY : INFINITY;
    return true;
  }
  if (n->plain && (!strcmp(n->str, ".nan") || !strcmp(n->str, ".NaN") || !strcmp(n->str, ".NAN"))) {
    diag_error(L->d, n->loc, "%s must be a number, not NaN", what);
    return false;
  }
  Expr *e = expr_parse(L->a, L->d, n);
  return e && const_eval(L, e, out);
}

static bool get_int(Loader *L, const YNode *n, const char *what, int64_t *out) {
  double v;
  if (!get_num(L, n, what, &v)) return false;
  if (v != floor(v) || fabs(v) > 9007199254740992.0) {
    diag_error(L->d, n->loc, "%s must be an integer, not %s", what, n->str);
    return false;
  }
  *out = (int64_t)v;
  return true;
}

// YAML 1.2 core booleans only: `yes`/`on` are strings there.
static bool get_bool(Loader *L, const YNode *n, const char *what, bool *out) {
  if (n->kind == YN_SCALAR && n->plain && (!strcmp(n->str, "true") || !strcmp(n->str, "false"))) {
    *out = n->str[0] == 't';
    return true;
  }
  diag_error(L->d, n->loc, "%s must be true or false", what);
  return false;
}

// A number checked against [lo, hi] (hi_open: hi excluded).
static void get_range(Loader *L, const YNode *n, const char *what, double *out, double lo, double hi, bool hi_open) {
  double v;
  if (!get_num(L, n, what, &v)) return;
  if (v < lo || v > hi || (hi_open && v == hi)) {
    if (hi == INFINITY)
      diag_error(L->d, n->loc, "%s must be >= %g, not %g", what, lo, v);
    else
      diag_error(L->d, n->loc, "%s must be in [%g, %g%c, not %g", what, lo, hi, hi_open ? ')' : ']', v);
    return;
  }
  *out = v;
}

static void get_int_min(Loader *L, const YNode *n, const char *what, int64_t *out, int64_t lo) {
  int64_t v;
  if (!get_int(L, n, what, &v)) return;
  if (v < lo) {
    diag_error(L->d, n->loc, "%s must be >= %lld, not %lld", what, (long long)lo, (long long)v);
    return;
  }
  *out = v;
}

// A list of names, or one name standing for a list of one.
static int name_list(Loader *L, const YNode *n, const char *what, const char ***names, Loc **locs) {
  if (n->kind == YN_MAP || is_null(n)) {
    if (n->kind == YN_MAP) diag_error(L->d, n->loc, "%s must be a list of names", what);
    return 0;
  }
  const YNode *const *items = n->kind == YN_SEQ ? (const YNode *const *)n->items : &n;
  int count = n->kind == YN_SEQ ? n->n : 1, k = 0;
  *names = arena_alloc(L->a, sizeof(char *) * (size_t)(count ? count : 1));
  *locs = arena_alloc(L->a, sizeof(Loc) * (size_t)(count ? count : 1));
  for (int i = 0; i < count; i++) {
    if (!want_ident(L, items[i], what)) continue;
    (*names)[k] = items[i]->str;
    (*locs)[k++] = items[i]->loc;
  }
  return k;
}

// ------------------------------------------------------------ names

static const NameDef *find_name(const Loader *L, const char *name) {
  for (int i = 0; i < L->names.n; i++)
    if (!strcmp(L->names.v[i].name, name)) return &L->names.v[i];
  return NULL;
}

static bool loc_before(Loc a, Loc b) { return a.line < b.line || (a.line == b.line && a.col < b.col); }

// Adds a model-level name; a second definition is reported at whichever of
// the two comes later in the file.
static void define(Loader *L, const char *name, Loc loc, const char *what) {
  const NameDef *old = find_name(L, name);
  if (!old) {
    VEC_PUSH(L->names, ((NameDef){name, loc, what}));
    return;
  }
  NameDef first = *old, second = {name, loc, what};
  if (loc_before(loc, old->loc)) {
    first = second;
    second = *old;
  }
  diag_error(L->d, second.loc, "'%s' is already defined as %s", name, first.what);
  diag_note(L->d, first.loc, "'%s' first defined here", name);
}

// Checks that `name` is one of `cands`, with a hint if not.
static bool check_ref(Loader *L, const char *name, Loc loc, const char *what, const char *const *cands, int n) {
  for (int i = 0; i < n; i++)
    if (!strcmp(cands[i], name)) return true;
  const char *hint = closest_name(name, cands, n);
  if (hint)
    diag_error(L->d, loc, "unknown %s '%s'; did you mean '%s'?", what, name, hint);
  else
    diag_error(L->d, loc, "unknown %s '%s'", what, name);
  return false;
}

static bool check_input(Loader *L, const YNode *n, const char *what) {
  if (!want_ident(L, n, what)) return false;
  const char **cands = arena_alloc(L->a, sizeof(char *) * (size_t)(L->m->ninputs + 1));
  for (int i = 0; i < L->m->ninputs; i++) cands[i] = L->m->inputs[i].name;
  return check_ref(L, n->str, n->loc, "input", cands, L->m->ninputs);
}

// The model input named `name`, or NULL.
static const TensorDecl *find_input(const Loader *L, const char *name) {
  for (int i = 0; i < L->m->ninputs; i++)
    if (!strcmp(L->m->inputs[i].name, name)) return &L->m->inputs[i];
  return NULL;
}

static bool check_entry(Loader *L, const char *name, Loc loc) {
  const char **cands = arena_alloc(L->a, sizeof(char *) * (size_t)(L->m->nentries + 1));
  for (int i = 0; i < L->m->nentries; i++) cands[i] = L->m->entries[i].name;
  return check_ref(L, name, loc, "graph entry", cands, L->m->nentries);
}

// ------------------------------------------------------------ dims, tensors

static void load_dims(Loader *L, const YNode *map) {
  Model *m = L->m;
  m->dims = arena_alloc(L->a, sizeof(DimDef) * (size_t)(map->n + 1));
  for (int i = 0; i < map->n; i++) {
    const YNode *k = map->keys[i], *v = map->items[i];
    if (!want_ident(L, k, "dim name")) continue;
    define(L, k->str, k->loc, "a dim");
    if (!want(L, v, YN_SCALAR, "a dim's value")) continue;
    Expr *e = expr_parse(L->a, L->d, v);
    if (e) m->dims[m->ndims++] = (DimDef){k->str, k->loc, e};
  }
}

static void load_shape(Loader *L, const YNode *n, TensorDecl *t) {
  if (!want(L, n, YN_SEQ, "shape")) return;
  if (n->n > BPC_MAX_RANK) {
    diag_error(L->d, n->loc, "shape has rank %d; the most is %d", n->n, BPC_MAX_RANK);
    return;
  }
  t->shape = arena_alloc(L->a, sizeof(Expr *) * (size_t)(n->n + 1));
  for (int i = 0; i < n->n; i++) {
    if (!want(L, n->items[i], YN_SCALAR, "a shape's dim")) continue;
    Expr *e = expr_parse(L->a, L->d, n->items[i]);
    if (e) t->shape[t->rank++] = e;
  }
}

static void load_dtype(Loader *L, const YNode *n, DType *out) {
  static const char *const names[] = {"f32", "f64", "i32"};
  if (!want(L, n, YN_SCALAR, "dtype")) return;
  for (int i = 0; i < COUNT(names); i++) {
    if (!strcmp(n->str, names[i])) {
      *out = (DType)i;
      return;
    }
  }
  check_ref(L, n->str, n->loc, "dtype", names, COUNT(names));
}

typedef struct InitName {
  const char *name;
  InitKind kind;
  int min_args, max_args;
} InitName;

static const InitName inits[] = {
    {"zeros", INIT_ZEROS, 0, 0},
    {"ones", INIT_ONES, 0, 0},
    {"constant", INIT_CONSTANT, 1, 1},
    {"normal", INIT_NORMAL, 1, 2},
    {"uniform", INIT_UNIFORM, 2, 2},
    {"xavier_uniform", INIT_XAVIER_UNIFORM, 0, 0},
    {"xavier_normal", INIT_XAVIER_NORMAL, 0, 0},
    {"he_uniform", INIT_HE_UNIFORM, 0, 0},
    {"he_normal", INIT_HE_NORMAL, 0, 0},
};

const char *init_name(InitKind k) {
  for (int i = 0; i < COUNT(inits); i++)
    if (inits[i].kind == k) return inits[i].name;
  return "?";
}

static const InitName *find_init(Loader *L, const Expr *e) {
  const char *names[COUNT(inits)];
  for (int i = 0; i < COUNT(inits); i++) {
    names[i] = inits[i].name;
    if (!strcmp(e->name, inits[i].name)) return &inits[i];
  }
  check_ref(L, e->name, e->loc, "init", names, COUNT(inits));
  return NULL;
}

static bool init_args(Loader *L, const Expr *e, const InitName *in, double *args) {
  int n = e->kind == EX_CALL ? e->nargs : 0;
  if (e->kind == EX_CALL && e->nkw > 0) {
    diag_error(L->d, e->kwlocs[0], "init arguments are positional: %s(...)", in->name);
    return false;
  }
  if (n < in->min_args || n > in->max_args || (e->kind == EX_CALL && in->max_args == 0)) {
    static const char *const forms[] = {[INIT_CONSTANT] = "constant(v)",
                                        [INIT_NORMAL] = "normal(std) or normal(mean, std)",
                                        [INIT_UNIFORM] = "uniform(lo, hi)"};
    if (in->max_args == 0)
      diag_error(L->d, e->loc, "init '%s' takes no arguments", in->name);
    else
      diag_error(L->d, e->loc, "init '%s' takes %s", in->name, forms[in->kind]);
    return false;
  }
  for (int i = 0; i < n; i++)
    if (!const_eval(L, e->args[i], &args[i])) return false;
  return true;
}

static void load_init(Loader *L, const YNode *n, InitSpec *out) {
  if (!want(L, n, YN_SCALAR, "init")) return;
  Expr *e = expr_parse(L->a, L->d, n);
  if (!e) return;
  if (e->kind != EX_NAME && e->kind != EX_CALL) {
    diag_error(L->d, e->loc, "init must be a name like 'zeros' or a call like 'normal(0.02)'");
    return;
  }
  const InitName *in = find_init(L, e);
  double args[2] = {0, 0};
  if (!in || !init_args(L, e, in, args)) return;
  InitSpec s = {in->kind, args[0], args[1]};
  if (in->kind == INIT_NORMAL && e->nargs == 1) s = (InitSpec){INIT_NORMAL, 0, args[0]};
  if (in->kind == INIT_NORMAL && s.b < 0) {
    diag_error(L->d, e->args[e->nargs - 1]->loc, "normal's std must be >= 0, not %g", s.b);
    return;
  }
  if (in->kind == INIT_UNIFORM && s.a > s.b) {
    diag_error(L->d, e->args[0]->loc, "uniform's lo (%g) is greater than its hi (%g)", s.a, s.b);
    return;
  }
  *out = s;
}

// An input (is_param false) or a param: `{shape: [...], dtype: ..., ...}`.
static void load_tensor(Loader *L, const YNode *k, const YNode *v, bool is_param, TensorDecl *t) {
  static const char *const input_keys[] = {"shape", "dtype"};
  static const char *const param_keys[] = {"shape", "dtype", "init", "trainable", "decay", "from", "transpose", "lora"};
  *t = (TensorDecl){.name = k->str, .loc = k->loc, .trainable = true, .decay = -1};
  const char *what = is_param ? "a param" : "an input";
  if (!want(L, v, YN_MAP, what)) return;
  if (is_param)
    check_keys(L, v, param_keys, COUNT(param_keys), "a param");
  else
    check_keys(L, v, input_keys, COUNT(input_keys), "an input");
  const YNode *x;
  if ((x = require(L, v, "shape", what))) load_shape(L, x, t);
  if ((x = ymap_get(v, "dtype"))) load_dtype(L, x, &t->dtype);
  if (!is_param) return;
  t->init.kind = t->rank >= 2 ? INIT_XAVIER_UNIFORM : INIT_ZEROS;
  if ((x = ymap_get(v, "init"))) load_init(L, x, &t->init);
  if ((x = ymap_get(v, "trainable"))) get_bool(L, x, "trainable", &t->trainable);
  bool decay;
  if ((x = ymap_get(v, "decay")) && get_bool(L, x, "decay", &decay)) t->decay = decay;
  if ((x = ymap_get(v, "from")) && want(L, x, YN_SCALAR, "from (a tensor name)")) {
    if (!*x->str) diag_error(L->d, x->loc, "from must name a tensor");
    t->from = x->str, t->from_loc = x->loc;
  }
  if ((x = ymap_get(v, "transpose")) && get_bool(L, x, "transpose", &t->transpose) && t->transpose && t->rank < 2)
    diag_error(L->d, x->loc, "transpose swaps the last two axes: '%s' has rank %d", t->name, t->rank);
  if ((x = ymap_get(v, "lora")) && want(L, x, YN_MAP, "lora ({rank: r, alpha: a})")) {
    static const char *const lora_keys[] = {"rank", "alpha"};
    check_keys(L, x, lora_keys, COUNT(lora_keys), "lora");
    const YNode *r = require(L, x, "rank", "lora"), *al = ymap_get(x, "alpha");
    if (r && get_int(L, r, "lora rank", &t->lora_rank) && t->lora_rank < 1) {
      diag_error(L->d, r->loc, "lora rank must be at least 1");
      t->lora_rank = 0;
    }
    t->lora_alpha = (double)t->lora_rank;  // PEFT's default scale alpha / r = 1 when alpha is absent
    if (al && get_num(L, al, "lora alpha", &t->lora_alpha) && !(t->lora_alpha > 0))
      diag_error(L->d, al->loc, "lora alpha must be positive");
    if (t->lora_rank && t->rank < 2)
      diag_error(L->d, x->loc, "lora adapts a matrix: '%s' has rank %d", t->name, t->rank);
    if (t->lora_rank && t->dtype == DT_I32) diag_error(L->d, x->loc, "lora needs a float param");
  }
  if (t->dtype == DT_I32 && t->trainable)
    diag_error(L->d, k->loc, "an i32 param cannot be trained; add 'trainable: false'");
}

// A section of tensors; `define_names` adds them to the model's namespace.
static int load_tensors(Loader *L, const YNode *map, bool is_param, TensorDecl **out, bool define_names) {
  *out = arena_alloc(L->a, sizeof(TensorDecl) * (size_t)(map->n + 1));
  int n = 0;
  for (int i = 0; i < map->n; i++) {
    const YNode *k = map->keys[i];
    if (!want_ident(L, k, is_param ? "param name" : "input name")) continue;
    if (define_names) define(L, k->str, k->loc, is_param ? "a param" : "an input");
    load_tensor(L, k, map->items[i], is_param, &(*out)[n++]);
  }
  return n;
}

// ------------------------------------------------------------ graph, functions

static int load_entries(Loader *L, const YNode *map, GraphEntry **out, bool define_names) {
  *out = arena_alloc(L->a, sizeof(GraphEntry) * (size_t)(map->n + 1));
  int n = 0;
  for (int i = 0; i < map->n; i++) {
    const YNode *k = map->keys[i], *v = map->items[i];
    if (!want_ident(L, k, "graph entry name")) continue;
    if (define_names) define(L, k->str, k->loc, "a graph entry");
    GraphEntry *g = &(*out)[n++];
    *g = (GraphEntry){k->str, k->loc, NULL};
    if (want(L, v, YN_SCALAR, "a graph entry (an expression)")) g->expr = expr_parse(L->a, L->d, v);
  }
  return n;
}

static void load_graph(Loader *L, const YNode *n) {
  if (is_null(n) || (n->kind == YN_MAP && n->n == 0)) {
    diag_error(L->d, n->loc, "the graph is empty");
    return;
  }
  if (want(L, n, YN_MAP, "graph")) L->m->nentries = load_entries(L, n, &L->m->entries, true);
}

// A function's own names must differ from each other and from the model's
// dims and params, which the function also sees.
static void check_func_names(Loader *L, const FuncDef *f) {
  struct {
    NameDef *v;
    int n, cap;
  } seen = {0};
  for (int i = 0; i < f->nargs; i++) VEC_PUSH(seen, ((NameDef){f->args[i], f->arglocs[i], "an argument"}));
  for (int i = 0; i < f->nparams; i++) VEC_PUSH(seen, ((NameDef){f->params[i].name, f->params[i].loc, "a param"}));
  for (int i = 0; i < f->nentries; i++)
    VEC_PUSH(seen, ((NameDef){f->entries[i].name, f->entries[i].loc, "a graph entry"}));
  for (int i = 0; i < seen.n; i++) {
    const NameDef *s = &seen.v[i];
    for (int j = 0; j < i; j++) {
      if (strcmp(seen.v[j].name, s->name)) continue;
      diag_error(L->d, s->loc, "'%s' is already defined as %s of function '%s'", s->name, seen.v[j].what, f->name);
      diag_note(L->d, seen.v[j].loc, "'%s' first defined here", s->name);
      break;
    }
    const NameDef *g = find_name(L, s->name);
    if (g && (!strcmp(g->what, "a dim") || !strcmp(g->what, "a param"))) {
      diag_error(L->d, s->loc, "'%s' in function '%s' shadows %s of the model", s->name, f->name, g->what);
      diag_note(L->d, g->loc, "'%s' defined here", s->name);
    }
  }
  free(seen.v);
}

static void load_return(Loader *L, const YNode *n, FuncDef *f) {
  if (!want_ident(L, n, "return")) return;
  f->ret = n->str;
  f->retloc = n->loc;
  const char **cands = arena_alloc(L->a, sizeof(char *) * (size_t)(f->nargs + f->nentries + 1));
  int k = 0;
  for (int i = 0; i < f->nentries; i++) cands[k++] = f->entries[i].name;
  for (int i = 0; i < f->nargs; i++) cands[k++] = f->args[i];
  for (int i = 0; i < k; i++)
    if (!strcmp(cands[i], n->str)) return;
  const char *hint = closest_name(n->str, cands, k);
  diag_error(L->d, n->loc, "function '%s' returns '%s', which is not one of its graph entries or arguments%s%s%s",
             f->name, n->str, hint ? "; did you mean '" : "", hint ? hint : "", hint ? "'?" : "");
}

static void load_func(Loader *L, const YNode *k, const YNode *v, FuncDef *f) {
  static const char *const keys[] = {"args", "params", "graph", "return"};
  *f = (FuncDef){.name = k->str, .loc = k->loc};
  if (!want(L, v, YN_MAP, "a function")) return;
  check_keys(L, v, keys, COUNT(keys), "a function");
  const YNode *x;
  if ((x = require(L, v, "args", "a function"))) f->nargs = name_list(L, x, "function argument", &f->args, &f->arglocs);
  if ((x = ymap_get(v, "params")) && want_map(L, x, "function params") && x->kind == YN_MAP)
    f->nparams = load_tensors(L, x, true, &f->params, false);
  if ((x = require(L, v, "graph", "a function"))) {
    if (is_null(x) || (x->kind == YN_MAP && x->n == 0))
      diag_error(L->d, x->loc, "the graph of function '%s' is empty", f->name);
    else if (want(L, x, YN_MAP, "a function's graph"))
      f->nentries = load_entries(L, x, &f->entries, false);
  }
  check_func_names(L, f);
  if ((x = require(L, v, "return", "a function"))) load_return(L, x, f);
}

static void load_funcs(Loader *L, const YNode *map) {
  Model *m = L->m;
  m->funcs = arena_alloc(L->a, sizeof(FuncDef) * (size_t)(map->n + 1));
  for (int i = 0; i < map->n; i++) {
    if (!want_ident(L, map->keys[i], "function name")) continue;
    load_func(L, map->keys[i], map->items[i], &m->funcs[m->nfuncs++]);
  }
}

// ------------------------------------------------------------ train

typedef struct OptName {
  const char *name;
  OptKind kind;
  const char *keys[8];
} OptName;

static const OptName optimizers[] = {
    {"sgd", OPT_SGD, {"type", "lr", "momentum", "dampening", "nesterov", "weight_decay"}},
    {"adam", OPT_ADAM, {"type", "lr", "betas", "eps", "weight_decay"}},
    {"adamw", OPT_ADAMW, {"type", "lr", "betas", "eps", "weight_decay"}},
    {"rmsprop", OPT_RMSPROP, {"type", "lr", "alpha", "eps", "momentum", "centered", "weight_decay"}},
    {"adagrad", OPT_ADAGRAD, {"type", "lr", "lr_decay", "eps", "weight_decay", "initial_accumulator_value"}},
};

// torch.optim's defaults.
static OptimCfg opt_defaults(OptKind kind, Loc loc) {
  OptimCfg o = {.kind = kind, .loc = loc, .lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
  if (kind == OPT_ADAMW) o.weight_decay = 1e-2;
  if (kind == OPT_RMSPROP) o = (OptimCfg){.kind = kind, .loc = loc, .lr = 1e-2, .alpha = 0.99, .eps = 1e-8};
  if (kind == OPT_ADAGRAD) o = (OptimCfg){.kind = kind, .loc = loc, .lr = 1e-2, .eps = 1e-10};
  if (kind == OPT_SGD) o = (OptimCfg){.kind = kind, .loc = loc, .lr = 1e-3};
  return o;
}

static const OptName *find_opt(Loader *L, const YNode *n) {
  if (!want(L, n, YN_SCALAR, "optimizer type")) return NULL;
  const char *names[COUNT(optimizers)];
  for (int i = 0; i < COUNT(optimizers); i++) {
    names[i] = optimizers[i].name;
    if (!strcmp(n->str, names[i])) return &optimizers[i];
  }
  check_ref(L, n->str, n->loc, "optimizer", names, COUNT(optimizers));
  return NULL;
}

// Unknown optimizer options; naming the optimizers that have the option helps
// more than a "did you mean" when it is a real option of another one.
static void check_opt_keys(Loader *L, const YNode *map, const OptName *on) {
  int nk = 0;
  while (nk < COUNT(on->keys) && on->keys[nk]) nk++;
  for (int i = 0; i < map->n; i++) {
    const char *k = map->keys[i]->str;
    bool mine = false, other = false;
    for (int j = 0; j < nk; j++) mine |= !strcmp(k, on->keys[j]);
    for (int o = 0; o < COUNT(optimizers); o++)
      for (int j = 0; j < COUNT(optimizers[o].keys) && optimizers[o].keys[j]; j++)
        other |= !strcmp(k, optimizers[o].keys[j]);
    if (!mine && other)
      diag_error(L->d, map->keys[i]->loc, "optimizer '%s' has no option '%s'", on->name, k);
    else if (!mine)
      check_keys(L, &(YNode){.kind = YN_MAP, .n = 1, .keys = map->keys + i}, on->keys, nk, "the optimizer");
  }
}

static void load_betas(Loader *L, const YNode *n, OptimCfg *o) {
  if (!want(L, n, YN_SEQ, "betas")) return;
  if (n->n != 2) {
    diag_error(L->d, n->loc, "betas must be a list of two numbers [beta1, beta2]");
    return;
  }
  get_range(L, n->items[0], "beta1", &o->beta1, 0, 1, true);
  get_range(L, n->items[1], "beta2", &o->beta2, 0, 1, true);
}

static void load_opt_values(Loader *L, const YNode *map, OptimCfg *o) {
  const YNode *x;
  if ((x = ymap_get(map, "lr"))) get_range(L, x, "lr", &o->lr, 0, INFINITY, false);
  if ((x = ymap_get(map, "eps"))) get_range(L, x, "eps", &o->eps, 0, INFINITY, false);
  if ((x = ymap_get(map, "weight_decay"))) get_range(L, x, "weight_decay", &o->weight_decay, 0, INFINITY, false);
  if ((x = ymap_get(map, "momentum"))) get_range(L, x, "momentum", &o->momentum, 0, INFINITY, false);
  if ((x = ymap_get(map, "dampening"))) get_num(L, x, "dampening", &o->dampening);
  if ((x = ymap_get(map, "alpha"))) get_range(L, x, "alpha", &o->alpha, 0, INFINITY, false);
  if ((x = ymap_get(map, "lr_decay"))) get_range(L, x, "lr_decay", &o->lr_decay, 0, INFINITY, false);
  if ((x = ymap_get(map, "initial_accumulator_value")))
    get_range(L, x, "initial_accumulator_value", &o->initial_accumulator_value, 0, INFINITY, false);
  if ((x = ymap_get(map, "nesterov"))) get_bool(L, x, "nesterov", &o->nesterov);
  if ((x = ymap_get(map, "centered"))) get_bool(L, x, "centered", &o->centered);
  if ((x = ymap_get(map, "betas"))) load_betas(L, x, o);
  if (o->nesterov && (o->momentum <= 0 || o->dampening != 0))
    diag_error(L->d, ymap_get(map, "nesterov")->loc, "nesterov momentum requires a momentum > 0 and zero dampening");
}

static void load_optimizer(Loader *L, const YNode *n, OptimCfg *o) {
  const YNode *type = n;
  if (n->kind == YN_MAP) {
    type = require(L, n, "type", "the optimizer");
    if (!type) return;
  }
  const OptName *on = find_opt(L, type);
  if (!on) return;
  *o = opt_defaults(on->kind, n->loc);
  if (n->kind != YN_MAP) return;
  check_opt_keys(L, n, on);
  load_opt_values(L, n, o);
}

static void load_schedule(Loader *L, const YNode *n, SchedCfg *s) {
  static const char *const types[] = {"constant", "step", "linear", "cosine"};
  static const char *const keys[] = {"type", "warmup_steps", "min_lr", "step_size", "gamma"};
  const YNode *type = n->kind == YN_MAP ? require(L, n, "type", "the schedule") : n;
  if (!type || !want(L, type, YN_SCALAR, "schedule type")) return;
  int t = 0;
  while (t < COUNT(types) && strcmp(type->str, types[t])) t++;
  if (t == COUNT(types)) {
    check_ref(L, type->str, type->loc, "schedule", types, COUNT(types));
    return;
  }
  *s = (SchedCfg){.kind = (SchedKind)t, .loc = n->loc, .gamma = 0.1};
  if (n->kind != YN_MAP) {
    if (s->kind == SCHED_STEP) diag_error(L->d, n->loc, "a step schedule needs step_size");
    return;
  }
  check_keys(L, n, keys, COUNT(keys), "the schedule");
  const YNode *x;
  if ((x = ymap_get(n, "warmup_steps"))) get_int_min(L, x, "warmup_steps", &s->warmup_steps, 0);
  if ((x = ymap_get(n, "min_lr"))) get_range(L, x, "min_lr", &s->min_lr, 0, INFINITY, false);
  bool is_step = s->kind == SCHED_STEP;
  if ((x = ymap_get(n, "step_size")) && !is_step)
    diag_error(L->d, x->loc, "step_size belongs to the 'step' schedule");
  else if (x)
    get_int_min(L, x, "step_size", &s->step_size, 1);
  else if (is_step)
    require(L, n, "step_size", "a step schedule");
  if ((x = ymap_get(n, "gamma")) && !is_step)
    diag_error(L->d, x->loc, "gamma belongs to the 'step' schedule");
  else if (x)
    get_range(L, x, "gamma", &s->gamma, 0, INFINITY, false);
}

static void load_train(Loader *L, const YNode *n) {
  static const char *const keys[] = {"optimizer", "schedule",   "clip_grad_norm",   "grad_accum", "steps",
                                     "epochs",    "eval_every", "checkpoint_every", "seed",       "precision"};
  TrainCfg *t = &L->m->train;
  *t = (TrainCfg){.present = true, .loc = n->loc, .grad_accum = 1};
  t->opt = opt_defaults(OPT_ADAM, n->loc);
  t->sched = (SchedCfg){.kind = SCHED_CONSTANT, .loc = n->loc, .gamma = 0.1};
  if (is_null(n) || !want(L, n, YN_MAP, "train")) return;
  check_keys(L, n, keys, COUNT(keys), "train");
  const YNode *x;
  if ((x = ymap_get(n, "optimizer"))) load_optimizer(L, x, &t->opt);
  if ((x = ymap_get(n, "schedule"))) load_schedule(L, x, &t->sched);
  if ((x = ymap_get(n, "clip_grad_norm"))) {
    double v = 0;
    if (get_num(L, x, "clip_grad_norm", &v) && v <= 0)
      diag_error(L->d, x->loc, "clip_grad_norm must be > 0, not %g", v);
    else
      t->clip_grad_norm = v;
  }
  if ((x = ymap_get(n, "grad_accum"))) get_int_min(L, x, "grad_accum", &t->grad_accum, 1);
  if ((x = ymap_get(n, "steps"))) get_int_min(L, x, "steps", &t->steps, 1);
  if ((x = ymap_get(n, "epochs"))) get_int_min(L, x, "epochs", &t->epochs, 1);
  if (ymap_get(n, "steps") && x) diag_error(L->d, x->loc, "give either steps or epochs, not both");
  if ((x = ymap_get(n, "eval_every"))) get_int_min(L, x, "eval_every", &t->eval_every, 0);
  if ((x = ymap_get(n, "checkpoint_every"))) get_int_min(L, x, "checkpoint_every", &t->checkpoint_every, 0);
  int64_t seed;
  if ((x = ymap_get(n, "seed")) && get_int(L, x, "seed", &seed)) {
    if (seed < 0)
      diag_error(L->d, x->loc, "seed must be >= 0, not %lld", (long long)seed);
    else
      t->seed = (uint64_t)seed;
  }
  if ((x = ymap_get(n, "precision")) && want(L, x, YN_SCALAR, "precision")) {
    if (!strcmp(x->str, "bf16") || !strcmp(x->str, "f32"))
      t->bf16 = !strcmp(x->str, "bf16");
    else
      diag_error(L->d, x->loc, "precision takes f32 or bf16, not '%s'", x->str);
  }
}

// ------------------------------------------------------------ data

// Relative paths resolve against the model's folder, made absolute.
static const char *resolve(Loader *L, const YNode *n, const char *what) {
  if (!want(L, n, YN_SCALAR, what)) return NULL;
  if (!n->str[0]) {
    diag_error(L->d, n->loc, "%s is empty", what);
    return NULL;
  }
  if (n->str[0] == '/') return n->str;
  const char *dir = L->m->dir;
  if (dir[0] == '/') return arena_printf(L->a, "%s/%s", dir, n->str);
  char cwd[4096];
  if (!getcwd(cwd, sizeof(cwd))) strcpy(cwd, ".");
  if (!strcmp(dir, ".")) return arena_printf(L->a, "%s/%s", cwd, n->str);
  return arena_printf(L->a, "%s/%s/%s", cwd, dir, n->str);
}

static void load_columns(Loader *L, const YNode *n, DataCfg *c) {
  if (!want(L, n, YN_MAP, "columns")) return;
  c->columns = arena_alloc(L->a, sizeof(CsvColumn) * (size_t)(n->n + 1));
  for (int i = 0; i < n->n; i++) {
    const YNode *k = n->keys[i], *v = n->items[i];
    if (!check_input(L, k, "column input") || !want(L, v, YN_SCALAR, "a column")) continue;
    CsvColumn col = {.input = k->str, .loc = v->loc};
    char *end;
    errno = 0;
    col.lo = strtoll(v->str, &end, 10);
    col.is_range = *end == ':';
    /* strtoll saturates at INT64_MAX on overflow (errno catches it below), so
       a single index's HI is only formed once LO is known to be in range. */
    if (col.is_range)
      col.hi = strtoll(end + 1, &end, 10);
    else
      col.hi = col.lo >= 0 && col.lo < (1 << 24) ? col.lo + 1 : col.lo;
    bool digits = v->str[0] >= '0' && v->str[0] <= '9';
    if (!digits || *end || errno || col.lo < 0 || col.hi <= col.lo || col.hi > (1 << 24)) {
      diag_error(L->d, v->loc, "a column must be an index N or a range \"LO:HI\" with 0 <= LO < HI");
      continue;
    }
    c->columns[c->ncolumns++] = col;
  }
}

static void load_scales(Loader *L, const YNode *n, DataCfg *c) {
  if (c->format == DATA_IDX) {
    c->scales = arena_alloc(L->a, sizeof(DataScale));
    if (get_num(L, n, "scale", &c->scales[0].scale)) c->nscales = 1;
    return;
  }
  if (!want(L, n, YN_MAP, "scale")) return;
  c->scales = arena_alloc(L->a, sizeof(DataScale) * (size_t)(n->n + 1));
  for (int i = 0; i < n->n; i++) {
    DataScale s = {n->keys[i]->str, 1};
    if (!check_input(L, n->keys[i], "scale input")) continue;
    if (find_input(L, s.input)->dtype == DT_I32)
      diag_error(L->d, n->keys[i]->loc, "scale applies to float inputs; '%s' is i32", s.input);
    else if (get_num(L, n->items[i], "scale", &s.scale))
      c->scales[c->nscales++] = s;
  }
}

// csv `text: {column: N, vocab: vocab.txt, ids: ids, mask: mask, cased: false}`
static void load_text_column(Loader *L, const YNode *n, DataCfg *c) {
  static const char *const keys[] = {"column", "vocab", "ids", "mask", "cased"};
  if (!want(L, n, YN_MAP, "text (a text column)")) return;
  check_keys(L, n, keys, COUNT(keys), "text");
  const YNode *col = require(L, n, "column", "text"), *v = require(L, n, "vocab", "text");
  const YNode *ids = require(L, n, "ids", "text"), *m = ymap_get(n, "mask"), *x;
  if (col) get_int(L, col, "text column", &c->text_col);
  if (col && c->text_col < 0) diag_error(L->d, col->loc, "text column must be >= 0");
  if (v) c->vocab = resolve(L, v, "vocab");
  if (ids && check_input(L, ids, "ids")) {
    const TensorDecl *t = find_input(L, ids->str);
    if (t->dtype != DT_I32 || t->rank != 2)
      diag_error(L->d, ids->loc, "ids '%s' must be an i32 input [B, T]", ids->str);
    else
      c->text_ids = ids->str;
  }
  if (m && check_input(L, m, "mask")) {
    const TensorDecl *t = find_input(L, m->str);
    if (t->dtype == DT_I32 || t->rank != 2)
      diag_error(L->d, m->loc, "mask '%s' must be a float input [B, T]", m->str);
    else
      c->text_mask = m->str;
  }
  if ((x = ymap_get(n, "cased"))) get_bool(L, x, "cased", &c->cased);
}

typedef struct DataForm {
  const char *name;
  const char *keys[8];
  const char *required[4];
} DataForm;

static const DataForm forms[] = {
    [DATA_TEXT] = {"text", {"format", "path", "tokens", "targets", "val_fraction"}, {"path", "tokens", "targets"}},
    [DATA_CSV] = {"csv", {"format", "path", "header", "columns", "scale", "val_fraction", "text"}, {"path", "columns"}},
    [DATA_SAFETENSORS] = {"safetensors", {"format", "path", "shuffle", "val_fraction"}, {"path"}},
    [DATA_IDX] = {"idx",
                  {"format", "images", "labels", "x", "y", "scale", "val_fraction"},
                  {"images", "labels", "x", "y"}},
};

static void load_data_values(Loader *L, const YNode *n, DataCfg *c) {
  const YNode *x;
  if ((x = ymap_get(n, "path"))) c->path = resolve(L, x, "path");
  if ((x = ymap_get(n, "images"))) c->images = resolve(L, x, "images");
  if ((x = ymap_get(n, "labels"))) c->labels = resolve(L, x, "labels");
  if ((x = ymap_get(n, "tokens")) && check_input(L, x, "tokens")) c->tokens = x->str;
  if ((x = ymap_get(n, "targets")) && check_input(L, x, "targets")) c->targets = x->str;
  if ((x = ymap_get(n, "x")) && check_input(L, x, "x")) c->x = x->str;
  if ((x = ymap_get(n, "y")) && check_input(L, x, "y")) c->y = x->str;
  if ((x = ymap_get(n, "val_fraction"))) get_range(L, x, "val_fraction", &c->val_fraction, 0, 1, true);
  if ((x = ymap_get(n, "header"))) get_bool(L, x, "header", &c->header);
  if ((x = ymap_get(n, "shuffle"))) get_bool(L, x, "shuffle", &c->shuffle);
  if ((x = ymap_get(n, "columns"))) load_columns(L, x, c);
  if ((x = ymap_get(n, "scale"))) load_scales(L, x, c);
  if ((x = ymap_get(n, "text"))) load_text_column(L, x, c);
}

static void load_data_set(Loader *L, const YNode *n, DataCfg *c, const char *where) {
  if (!want(L, n, YN_MAP, where)) return;
  const YNode *fmt = require(L, n, "format", where);
  if (!fmt || !want(L, fmt, YN_SCALAR, "format")) return;
  int f = 0;
  while (f < COUNT(forms) && strcmp(fmt->str, forms[f].name)) f++;
  if (f == COUNT(forms)) {
    const char *names[COUNT(forms)];
    for (int i = 0; i < COUNT(forms); i++) names[i] = forms[i].name;
    check_ref(L, fmt->str, fmt->loc, "data format", names, COUNT(forms));
    return;
  }
  const DataForm *df = &forms[f];
  *c = (DataCfg){.present = true,
                 .loc = n->loc,
                 .format = (DataFormat)f,
                 .shuffle = true,
                 .val_fraction = f == DATA_TEXT ? 0.1 : 0,
                 .text_col = -1};
  int nk = 0;
  while (nk < COUNT(df->keys) && df->keys[nk]) nk++;
  check_keys(L, n, df->keys, nk, arena_printf(L->a, "%s data", df->name));
  for (int i = 0; i < COUNT(df->required) && df->required[i]; i++)
    require(L, n, df->required[i], arena_printf(L->a, "%s data", df->name));
  load_data_values(L, n, c);
}

static void load_data(Loader *L, const YNode *n) {
  static const char *const keys[] = {"train", "test"};
  if (!want(L, n, YN_MAP, "data")) return;
  check_keys(L, n, keys, COUNT(keys), "data");
  const YNode *x;
  if ((x = require(L, n, "train", "data"))) load_data_set(L, x, &L->m->data_train, "data.train");
  if ((x = ymap_get(n, "test"))) load_data_set(L, x, &L->m->data_test, "data.test");
}

static void load_generate(Loader *L, const YNode *n) {
  static const char *const keys[] = {"tokens", "logits"};
  GenCfg *g = &L->m->gen;
  if (!want(L, n, YN_MAP, "generate")) return;
  *g = (GenCfg){.present = true, .loc = n->loc};
  check_keys(L, n, keys, COUNT(keys), "generate");
  const YNode *x;
  if ((x = require(L, n, "tokens", "generate")) && check_input(L, x, "tokens")) {
    g->tokens = x->str;
    // The sampler feeds byte ids as [B, T] and specializes B to 1 (pipeline.c's
    // batch_dim): `bpc check` says so here rather than `sample` at run time.
    const TensorDecl *t = find_input(L, x->str);
    if (t->dtype != DT_I32 || t->rank != 2 || t->shape[0]->kind != EX_NAME)
      diag_error(L->d, x->loc,
                 "generate: the tokens input '%s' must be i32 with shape [B, T], B a dim name "
                 "(sampling specializes it to 1)",
                 t->name);
  }
  if ((x = require(L, n, "logits", "generate")) && want_ident(L, x, "logits") && check_entry(L, x->str, x->loc))
    g->logits = x->str;
}

// ------------------------------------------------------------ top level

static void load_header(Loader *L, const YNode *root) {
  Model *m = L->m;
  const YNode *x;
  if ((x = require(L, root, "bpc", "the model"))) {
    if (x->kind != YN_SCALAR || !x->plain || strcmp(x->str, "1"))
      diag_error(L->d, x->loc, "unsupported format version '%s'; this bpc reads 'bpc: %d'",
                 x->kind == YN_SCALAR ? x->str : "?", BPC_FORMAT_VERSION);
  }
  if ((x = require(L, root, "name", "the model")) && want_ident(L, x, "the model's name")) m->name = x->str;
  if ((x = ymap_get(root, "doc")) && want(L, x, YN_SCALAR, "doc")) m->doc = x->str;
}

static void load_refs(Loader *L, const YNode *root) {
  Model *m = L->m;
  const YNode *x;
  if ((x = ymap_get(root, "loss")) && want_ident(L, x, "loss")) {
    m->loss = x->str;
    m->loss_loc = x->loc;
    check_entry(L, x->str, x->loc);
  }
  if ((x = ymap_get(root, "metrics"))) m->nmetrics = name_list(L, x, "metric", &m->metrics, &m->metric_locs);
  for (int i = 0; i < m->nmetrics; i++) check_entry(L, m->metrics[i], m->metric_locs[i]);
  if ((x = ymap_get(root, "outputs"))) m->noutputs = name_list(L, x, "output", &m->outputs, &m->output_locs);
  for (int i = 0; i < m->noutputs; i++) check_entry(L, m->outputs[i], m->output_locs[i]);
}

static void load_model(Loader *L, const YNode *root) {
  static const char *const keys[] = {"bpc",   "name", "doc",     "dims",    "inputs", "params", "functions",
                                     "graph", "loss", "metrics", "outputs", "train",  "data",   "generate"};
  Model *m = L->m;
  m->loc = root->loc;
  check_keys(L, root, keys, COUNT(keys), "the model");
  load_header(L, root);
  const YNode *x;
  if ((x = ymap_get(root, "dims")) && want_map(L, x, "dims") && !is_null(x)) load_dims(L, x);
  if ((x = ymap_get(root, "inputs")) && want_map(L, x, "inputs") && !is_null(x))
    m->ninputs = load_tensors(L, x, false, &m->inputs, true);
  if ((x = ymap_get(root, "params")) && want_map(L, x, "params") && !is_null(x))
    m->nparams = load_tensors(L, x, true, &m->params, true);
  if ((x = require(L, root, "graph", "the model"))) load_graph(L, x);
  if ((x = ymap_get(root, "functions")) && want_map(L, x, "functions") && !is_null(x)) load_funcs(L, x);
  load_refs(L, root);
  if ((x = ymap_get(root, "train"))) load_train(L, x);
  if ((x = ymap_get(root, "data")) && !is_null(x)) load_data(L, x);
  if ((x = ymap_get(root, "generate")) && !is_null(x)) load_generate(L, x);
}

static const char *dir_of(Arena *a, const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash) return ".";
  if (slash == path) return "/";
  return arena_strndup(a, path, (size_t)(slash - path));
}

Model *model_load_text(Arena *a, Diag *d, const char *path, const char *text, size_t len) {
  SrcFile *f = arena_alloc(a, sizeof(SrcFile));
  f->path = arena_strdup(a, path);
  f->text = arena_strndup(a, text, len);
  f->len = len;
  // Line starts, so that a position's source line is found without a scan
  // from the top (per expression, that scan made long models quadratic).
  size_t nl = 1;
  for (size_t i = 0; i < len; i++) nl += text[i] == '\n';
  if (nl < INT_MAX) {
    size_t *ls = arena_alloc(a, sizeof(size_t) * nl);
    ls[0] = 0;
    for (size_t i = 0, k = 1; i < len; i++)
      if (text[i] == '\n') ls[k++] = i + 1;
    f->lines = ls, f->nlines = (int)nl;
  }
  int nerr = d->nerr;
  YNode *root = yaml_parse(a, d, f);
  if (!root) return NULL;
  Model *m = arena_alloc(a, sizeof(Model));
  m->file = f;
  m->dir = dir_of(a, f->path);
  if (!want(&(Loader){.a = a, .d = d}, root, YN_MAP, "a model file")) return NULL;
  // Defaults hold even without a train section (`bpc grad`, `bpc run`).
  m->train = (TrainCfg){.loc = root->loc, .grad_accum = 1, .opt = opt_defaults(OPT_ADAM, root->loc)};
  m->train.sched = (SchedCfg){.kind = SCHED_CONSTANT, .loc = root->loc, .gamma = 0.1};
  Loader L = {.a = a, .d = d, .m = m};
  load_model(&L, root);
  free(L.names.v);
  return d->nerr > nerr ? NULL : m;
}

Model *model_load(Arena *a, Diag *d, const char *path) {
  char *text;
  size_t len;
  if (!read_whole_file(path, &text, &len)) {
    diag_error(d, (Loc){0}, "cannot read '%s': %s", path, strerror(errno));
    return NULL;
  }
  Model *m = model_load_text(a, d, path, text, len);
  free(text);
  return m;
}
