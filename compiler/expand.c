// expand.c — Model (AST) -> forward Graph. Evaluates dims (with -D
// overrides), makes the input, param and state leaves, and lowers every graph
// entry through the op registry: call arguments are bound by each op's schema
// (positional then keyword, Python's way), literals where tensors are expected
// become scalar constants, and user functions and `repeat` are inlined with
// prefixed names (`y1.w`, `yL.3.w`). Errors carry the position of the
// offending expression; independent entries keep being checked after one fails.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bpcc.h"

typedef struct Binding {
  const char *name;
  int node;
} Binding;

typedef struct Scope {
  const FuncDef *fn;   // NULL at the model's top level
  const char *prefix;  // "" or "y1." / "yL.3." / "y1.sub."
  struct {
    Binding *v;
    int n, cap;
  } local;
  const char *entry;   // full name of the entry being lowered
  int nstate, ndrop;   // per-entry counters naming state and dropout streams
  int64_t index;       // the instance index under repeat (`{i}` in a param's from), else -1
  struct Scope *caller;
} Scope;

typedef struct Build {
  Graph *g;
  const Model *m;
  Diag *d;
  int nmodel_params;  // g->params.v[0..n) are the model's own params
  const struct Scope *scope;  // the scope being lowered (for messages)
  struct {
    const FuncDef **v;
    int n, cap;
  } failed;  // functions whose instance failed
} Build;

static int lower(Build *b, Scope *s, const Expr *e);

// ---------------------------------------------------------------- constants

static const GDim *find_dim(Build *b, const char *name) {
  for (int i = 0; i < b->g->dims.n; i++)
    if (!strcmp(b->g->dims.v[i].name, name)) return &b->g->dims.v[i];
  return NULL;
}

static void unknown_name(Build *b, Loc loc, const char *what, const char *name, const char *const *cands, int n) {
  const char *hint = closest_name(name, cands, n);
  if (hint)
    diag_error(b->d, loc, "unknown %s '%s'; did you mean '%s'?", what, name, hint);
  else
    diag_error(b->d, loc, "unknown %s '%s'", what, name);
}

static bool is_tensor_name(Build *b, const char *name) {
  if (b->scope)  // the names of the scope being lowered
    for (int i = 0; i < b->scope->local.n; i++)
      if (!strcmp(b->scope->local.v[i].name, name)) return true;
  for (int i = 0; i < b->m->ninputs; i++)
    if (!strcmp(b->m->inputs[i].name, name)) return true;
  for (int i = 0; i < b->m->nparams; i++)
    if (!strcmp(b->m->params[i].name, name)) return true;
  return false;
}

static void unknown_dim(Build *b, Loc loc, const char *name) {
  if (is_tensor_name(b, name)) {
    diag_error(b->d, loc, "'%s' is a tensor; a number or a dim expression is expected here", name);
    return;
  }
  const char **c = xmalloc(sizeof(char *) * (size_t)(b->g->dims.n + 1));
  for (int i = 0; i < b->g->dims.n; i++) c[i] = b->g->dims.v[i].name;
  unknown_name(b, loc, "dim", name, c, b->g->dims.n);
  free(c);
}

// Integer dim arithmetic: ints, dim names, + - * / (exact), unary minus.
static bool eval_int(Build *b, const Expr *e, int64_t *out) {
  int64_t x, y;
  switch (e->kind) {
  case EX_NUM:
    if (!e->is_int) return diag_error(b->d, e->loc, "expected an integer, got %g", e->num), false;
    *out = (int64_t)e->num;
    return true;
  case EX_NAME: {
    const GDim *dim = find_dim(b, e->name);
    if (!dim) return unknown_dim(b, e->loc, e->name), false;
    *out = dim->value;
    return true;
  }
  case EX_NEG:
    if (!eval_int(b, e->args[0], &x)) return false;
    *out = -x;
    return true;
  case EX_BIN:
    if (!eval_int(b, e->args[0], &x) || !eval_int(b, e->args[1], &y)) return false;
    switch (e->op) {
    case '+':
      if (__builtin_add_overflow(x, y, out)) break;
      return true;
    case '-':
      if (__builtin_sub_overflow(x, y, out)) break;
      return true;
    case '*':
      if (__builtin_mul_overflow(x, y, out)) break;
      return true;
    case '/':
      if (y == 0) return diag_error(b->d, e->loc, "division by zero in an integer expression"), false;
      if (x % y)
        return diag_error(b->d, e->loc, "%lld / %lld does not divide exactly", (long long)x, (long long)y), false;
      *out = x / y;
      return true;
    default: return diag_error(b->d, e->loc, "operator not allowed in an integer expression"), false;
    }
    return diag_error(b->d, e->loc, "integer overflow"), false;
  default: return diag_error(b->d, e->loc, "expected an integer expression"), false;
  }
}

// Float constants: numbers, dims, + - * / ** and unary minus.
static bool eval_float(Build *b, const Expr *e, double *out) {
  double x, y;
  switch (e->kind) {
  case EX_NUM: *out = e->num; return true;
  case EX_NAME: {
    const GDim *dim = find_dim(b, e->name);
    if (!dim) return unknown_dim(b, e->loc, e->name), false;
    *out = (double)dim->value;
    return true;
  }
  case EX_NEG:
    if (!eval_float(b, e->args[0], &x)) return false;
    *out = -x;
    return true;
  case EX_BIN:
    if (!eval_float(b, e->args[0], &x) || !eval_float(b, e->args[1], &y)) return false;
    switch (e->op) {
    case '+': *out = x + y; return true;
    case '-': *out = x - y; return true;
    case '*': *out = x * y; return true;
    case '/':
      if (y == 0) return diag_error(b->d, e->loc, "division by zero"), false;
      *out = x / y;
      return true;
    case 'P': *out = pow(x, y); return true;
    default: break;
    }
    /* fallthrough */
  default: return diag_error(b->d, e->loc, "expected a number"), false;
  }
}

// A shape: a list of dim expressions; `allow_infer` admits one -1 (reshape).
static bool eval_shape(Build *b, const Expr *e, Shape *out, bool allow_infer) {
  if (e->kind != EX_LIST) return diag_error(b->d, e->loc, "expected a list of dims like [B, C]"), false;
  if (e->nargs > BPC_MAX_RANK)
    return diag_error(b->d, e->loc, "rank %d is more than the %d bpc supports", e->nargs, BPC_MAX_RANK), false;
  Shape s = {.rank = e->nargs};
  int64_t numel = 1;
  for (int i = 0; i < e->nargs; i++) {
    if (!eval_int(b, e->args[i], &s.d[i])) return false;
    if (s.d[i] == -1 && allow_infer) continue;
    if (s.d[i] < 1) return diag_error(b->d, e->args[i]->loc, "dim must be >= 1, got %lld", (long long)s.d[i]), false;
    if (s.d[i] > BPC_MAX_ELEMS / numel)
      return diag_error(b->d, e->args[i]->loc, "shape has more than 2^40 elements"), false;
    numel *= s.d[i];
  }
  *out = s;
  return true;
}

static bool eval_int_list(Build *b, const Expr *e, Attr *a) {
  if (e->kind != EX_LIST) {
    int64_t v;
    if (!eval_int(b, e, &v)) return false;
    a->naxes = 1;
    a->axes[0] = (int)v;
    return true;
  }
  if (e->nargs > BPC_MAX_RANK) return diag_error(b->d, e->loc, "too many axes"), false;
  a->naxes = e->nargs;
  for (int i = 0; i < e->nargs; i++) {
    int64_t v;
    if (!eval_int(b, e->args[i], &v)) return false;
    if (v < -BPC_MAX_RANK || v >= BPC_MAX_RANK)
      return diag_error(b->d, e->args[i]->loc, "axis %lld is out of range", (long long)v), false;
    a->axes[i] = (int)v;
  }
  return true;
}

// ---------------------------------------------------------------- dims, leaves

static bool build_dims(Build *b, const DimOverride *ov, int nov) {
  const Model *m = b->m;
  bool ok = true;
  for (int k = 0; k < nov; k++) {
    bool found = false;
    for (int i = 0; i < m->ndims; i++) found |= !strcmp(m->dims[i].name, ov[k].name);
    if (!found) {
      const char **c = xmalloc(sizeof(char *) * (size_t)(m->ndims + 1));
      for (int i = 0; i < m->ndims; i++) c[i] = m->dims[i].name;
      const char *hint = closest_name(ov[k].name, c, m->ndims);
      free(c);
      Loc none = {0};
      if (hint)
        diag_error(b->d, none, "-D %s: the model has no dim '%s'; did you mean '%s'?", ov[k].name, ov[k].name, hint);
      else
        diag_error(b->d, none, "-D %s: the model has no dim '%s'", ov[k].name, ov[k].name);
      ok = false;
    }
  }
  for (int i = 0; i < m->ndims; i++) {
    const DimDef *dd = &m->dims[i];
    int64_t v = 0;
    bool have = false;
    for (int k = nov - 1; k >= 0 && !have; k--)
      if (!strcmp(ov[k].name, dd->name)) v = ov[k].value, have = true;
    if (!have && !eval_int(b, dd->value, &v)) {
      ok = false;
      v = 1;  // keep going: later dims and shapes still get checked
    } else if (v < 1 || v > BPC_MAX_ELEMS) {
      diag_error(b->d, have ? (Loc){0} : dd->value->loc, "dim %s = %lld must be between 1 and 2^40", dd->name,
                 (long long)v);
      ok = false;
      v = 1;
    }
    VEC_PUSH(b->g->dims, ((GDim){dd->name, v}));
  }
  return ok;
}

static bool decl_shape(Build *b, const TensorDecl *t, Shape *s) {
  *s = (Shape){.rank = t->rank};
  int64_t numel = 1;
  for (int i = 0; i < t->rank; i++) {
    if (!eval_int(b, t->shape[i], &s->d[i])) return false;
    if (s->d[i] < 1) return diag_error(b->d, t->shape[i]->loc, "dim must be >= 1, got %lld", (long long)s->d[i]), false;
    if (s->d[i] > BPC_MAX_ELEMS / numel)
      return diag_error(b->d, t->shape[i]->loc, "tensor '%s' has more than 2^40 elements", t->name), false;
    numel *= s->d[i];
  }
  return true;
}

static DType leaf_dtype(Build *b, DType declared) {
  if (declared == DT_I32) return DT_I32;
  return b->g->fdtype == DT_F64 ? DT_F64 : declared;
}

static void bind(Scope *s, const char *name, int node) { VEC_PUSH(s->local, ((Binding){name, node})); }

// LoRA (Hu et al. 2021, as Hugging Face PEFT): the weight W [..., in, out]
// stays frozen and the graph reads W + (alpha / r) A B, with A [in*, r]
// (in* = all dims but the last) drawn as PEFT's kaiming_uniform(a=sqrt(5)),
// U(-1/sqrt(in*), 1/sqrt(in*)), and B [r, out] zeros, so training starts at
// W exactly. A and B are params named `<W>.lora_a` and `<W>.lora_b`; only
// they get gradients and optimizer state.
static void add_lora(Build *b, const TensorDecl *t, const Shape *s, int wi) {
  Graph *g = b->g;
  GParam *w = &g->params.v[wi];
  int64_t in = shape_numel(s) / s->d[s->rank - 1], out = s->d[s->rank - 1], r = t->lora_rank;
  const char *an = arena_printf(&g->arena, "%s.lora_a", w->name), *bn = arena_printf(&g->arena, "%s.lora_b", w->name);
  DType dt = graph_node(g, w->node)->dtype;
  Shape sa = {.rank = 2, .d = {in, r}}, sb = {.rank = 2, .d = {r, out}};
  int a = g_leaf(g, OP_PARAM, an, dt, &sa, t->loc), bb = g_leaf(g, OP_PARAM, bn, dt, &sb, t->loc);
  double bound = 1 / sqrt((double)in);
  InitSpec ia = {INIT_UNIFORM, -bound, bound}, ib = {INIT_ZEROS, 0, 0};
  double scale = t->lora_alpha / (double)r;
  int ab = g_op(g, OP_MATMUL, t->loc, 2, (int[]){a, bb}, NULL);
  Attr ra = attr_default(OP_RESHAPE);
  ra.shape = *s;
  if (s->rank > 2) ab = g_op(g, OP_RESHAPE, t->loc, 1, &ab, &ra);
  int eff = g_binary(g, OP_ADD, w->node, g_binary(g, OP_MUL, g_const(g, scale, t->loc), ab, t->loc), t->loc);
  w = &g->params.v[wi];
  w->value = eff, w->lora_a = an, w->lora_b = bn, w->lora_scale = scale;
  VEC_PUSH(g->params, ((GParam){.name = an,
                                .node = a,
                                .loc = t->loc,
                                .init = ia,
                                .trainable = true,
                                .decay = true,
                                .grad = -1,
                                .update = -1,
                                .value = a}));
  VEC_PUSH(g->params, ((GParam){.name = bn,
                                .node = bb,
                                .loc = t->loc,
                                .init = ib,
                                .trainable = true,
                                .decay = true,
                                .grad = -1,
                                .update = -1,
                                .value = bb}));
}

// A param's foreign name with every `{i}` replaced by the repeat index.
static const char *resolve_from(Build *b, const TensorDecl *t, int64_t index) {
  if (!t->from || !strstr(t->from, "{i}")) return t->from;
  if (index < 0) {
    diag_error(b->d, t->from_loc, "'{i}' in from is the instance index under repeat; '%s' is not under repeat",
               t->name);
    return NULL;
  }
  char num[24], *out = arena_alloc(&b->g->arena, strlen(t->from) * 8 + 1), *o = out;
  snprintf(num, sizeof num, "%lld", (long long)index);
  for (const char *p = t->from; *p;)
    if (!strncmp(p, "{i}", 3))
      o += sprintf(o, "%s", num), p += 3;
    else
      *o++ = *p++;
  *o = 0;
  return out;
}

static int add_param(Build *b, const TensorDecl *t, const char *prefix, int64_t index) {
  Shape s;
  if (!decl_shape(b, t, &s)) return -1;
  const char *from = resolve_from(b, t, index);
  if (t->from && !from) return -1;
  const char *name = arena_printf(&b->g->arena, "%s%s", prefix, t->name);
  int id = g_leaf(b->g, OP_PARAM, name, leaf_dtype(b, t->dtype), &s, t->loc);
  bool decay = t->decay < 0 ? s.rank >= 2 : t->decay == 1;
  bool lora = t->lora_rank > 0;
  int wi = b->g->params.n;
  VEC_PUSH(b->g->params, ((GParam){.name = name,
                                   .node = id,
                                   .loc = t->loc,
                                   .init = t->init,
                                   .trainable = t->trainable && !lora,
                                   .decay = decay,
                                   .grad = -1,
                                   .update = -1,
                                   .from = from,
                                   .transpose = t->transpose,
                                   .value = id}));
  if (lora) add_lora(b, t, &s, wi);
  return b->g->params.v[wi].value;
}

// ---------------------------------------------------------------- names

static int lookup(Build *b, Scope *s, const Expr *e) {
  for (int i = s->local.n - 1; i >= 0; i--)
    if (!strcmp(s->local.v[i].name, e->name)) return s->local.v[i].node;  // -1: failed entry
  const GDim *dim = find_dim(b, e->name);
  if (dim) return g_const(b->g, (double)dim->value, e->loc);
  if (s->fn)  // functions see the model's params too
    for (int i = 0; i < b->nmodel_params; i++)
      if (!strcmp(b->g->params.v[i].name, e->name)) return b->g->params.v[i].value;
  // Not found: suggest among everything visible here.
  struct {
    const char **v;
    int n, cap;
  } c = {0};
  for (int i = 0; i < s->local.n; i++) VEC_PUSH(c, s->local.v[i].name);
  for (int i = 0; i < b->g->dims.n; i++) VEC_PUSH(c, b->g->dims.v[i].name);
  if (s->fn)
    for (int i = 0; i < b->nmodel_params; i++) VEC_PUSH(c, b->g->params.v[i].name);
  bool is_entry_later = false;
  int nents = s->fn ? s->fn->nentries : b->m->nentries;
  const GraphEntry *ents = s->fn ? s->fn->entries : b->m->entries;
  for (int i = 0; i < nents; i++) is_entry_later |= !strcmp(ents[i].name, e->name);
  if (is_entry_later)
    diag_error(b->d, e->loc, "'%s' is used before its definition (graph entries are evaluated in order)", e->name);
  else if (s->fn) {
    bool model_level = false;
    for (int i = 0; i < b->m->ninputs; i++) model_level |= !strcmp(b->m->inputs[i].name, e->name);
    for (int i = 0; i < b->m->nentries; i++) model_level |= !strcmp(b->m->entries[i].name, e->name);
    if (model_level)
      diag_error(b->d, e->loc,
                 "function '%s' cannot see '%s': a function sees its args, its params, "
                 "the model's dims and params",
                 s->fn->name, e->name);
    else
      unknown_name(b, e->loc, "name", e->name, c.v, c.n);
  } else {
    unknown_name(b, e->loc, "name", e->name, c.v, c.n);
  }
  free(c.v);
  return -1;
}

static const FuncDef *find_func(const Model *m, const char *name) {
  for (int i = 0; i < m->nfuncs; i++)
    if (!strcmp(m->funcs[i].name, name)) return &m->funcs[i];
  return NULL;
}

static void unknown_op(Build *b, const Expr *e) {
  struct {
    const char **v;
    int n, cap;
  } c = {0};
  for (int i = 0; i < OP_COUNT; i++)
    if (!(op_info((Op)i)->flags & OPF_INTERNAL)) VEC_PUSH(c, op_info((Op)i)->name);
  for (int i = 0; i < b->m->nfuncs; i++) VEC_PUSH(c, b->m->funcs[i].name);
  VEC_PUSH(c, "repeat");
  unknown_name(b, e->loc, "op", e->name, c.v, c.n);
  free(c.v);
}

// ---------------------------------------------------------------- op calls

// batch_norm's running statistics: two STATE leaves fed to the op, and their
// training-mode updates as ordinary nodes (PyTorch's rule, unbiased variance).
static bool add_bn_state(Build *b, Scope *s, const Expr *e, int x, double momentum, int *rm, int *rv) {
  Graph *g = b->g;
  const Node *xn = graph_node(g, x);
  if (xn->shape.rank < 2) return diag_error(b->d, e->loc, "batch_norm: x must have rank >= 2"), false;
  int64_t c = xn->shape.d[xn->shape.rank - 1];
  Shape cs = {.rank = 1, .d = {c}};
  const char *base = s->nstate++ ? arena_printf(&g->arena, "%s.%d", s->entry, s->nstate - 1) : s->entry;
  DType dt = dtype_is_float(xn->dtype) ? xn->dtype : g->fdtype;
  *rm = g_leaf(g, OP_STATE, arena_printf(&g->arena, "%s.running_mean", base), dt, &cs, e->loc);
  *rv = g_leaf(g, OP_STATE, arena_printf(&g->arena, "%s.running_var", base), dt, &cs, e->loc);
  Attr ra = attr_default(OP_MEAN);
  ra.naxes = xn->shape.rank - 1;
  for (int i = 0; i < ra.naxes; i++) ra.axes[i] = i;
  int64_t n = shape_numel(&xn->shape) / c;
  int mean = g_op(g, OP_MEAN, e->loc, 1, &x, &ra);
  Attr va = ra;
  int var = g_op(g, OP_VAR, e->loc, 1, &x, &va);
  if (n > 1) var = g_binary(g, OP_MUL, var, g_const(g, (double)n / (double)(n - 1), e->loc), e->loc);
  int keep = g_const(g, 1 - momentum, e->loc), mom = g_const(g, momentum, e->loc);
  int um = g_binary(g, OP_ADD, g_binary(g, OP_MUL, keep, *rm, e->loc), g_binary(g, OP_MUL, mom, mean, e->loc), e->loc);
  int uv = g_binary(g, OP_ADD, g_binary(g, OP_MUL, keep, *rv, e->loc), g_binary(g, OP_MUL, mom, var, e->loc), e->loc);
  VEC_PUSH(g->states, ((GState){graph_node(g, *rm)->name, *rm, um, 0.0, false}));
  VEC_PUSH(g->states, ((GState){graph_node(g, *rv)->name, *rv, uv, 1.0, false}));
  return true;
}

// Binds a call's arguments to the op's schema, evaluates them, builds the node.
static int lower_op(Build *b, Scope *s, const Expr *e, Op op) {
  const OpInfo *info = op_info(op);
  const Expr *given[8] = {0};
  struct {
    const Expr **v;
    int n, cap;
  } rest = {0};  // variadic tensors
  int pos = 0, result = -1;
  for (int i = 0; i < e->nargs; i++) {
    if (pos < info->nparams && info->params[pos].kind == 'T') {
      VEC_PUSH(rest, e->args[i]);
      continue;
    }
    if (pos >= info->nparams) {
      diag_error(b->d, e->args[i]->loc, "%s takes at most %d positional argument%s", info->name, pos,
                 pos == 1 ? "" : "s");
      goto out;
    }
    given[pos++] = e->args[i];
  }
  for (int k = 0; k < e->nkw; k++) {
    int p = -1;
    for (int i = 0; i < info->nparams; i++)
      if (!strcmp(info->params[i].name, e->kwnames[k]) && info->params[i].kind != 'T') p = i;
    if (p < 0) {
      const char *c[8];
      int nc = 0;
      for (int i = 0; i < info->nparams; i++)
        if ((info->params[i].kind != 't' || info->params[i].def) && info->params[i].kind != 'T')
          c[nc++] = info->params[i].name;
      const char *hint = closest_name(e->kwnames[k], c, nc);
      if (hint)
        diag_error(b->d, e->kwlocs[k], "%s has no argument '%s'; did you mean '%s'?", info->name, e->kwnames[k], hint);
      else
        diag_error(b->d, e->kwlocs[k], "%s has no argument '%s'", info->name, e->kwnames[k]);
      goto out;
    }
    if (given[p]) {
      diag_error(b->d, e->kwlocs[k], "%s: argument '%s' given twice", info->name, e->kwnames[k]);
      goto out;
    }
    given[p] = e->kwargs[k];
  }
  Attr a = attr_default(op);
  int in[64], nin = 0;
  bool ok = true;
  for (int i = 0; i < info->nparams; i++) {
    const OpParam *p = &info->params[i];
    const Expr *x = given[i];
    if (p->kind == 'T') {
      if (rest.n == 0) {
        diag_error(b->d, e->loc, "%s needs at least one tensor", info->name);
        goto out;
      }
      if (rest.n > 64) {
        diag_error(b->d, e->loc, "%s takes at most 64 tensors", info->name);
        goto out;
      }
      for (int k = 0; k < rest.n; k++) ok &= (in[nin++] = lower(b, s, rest.v[k])) >= 0;
      continue;
    }
    if (!x) {
      if (p->required) {
        diag_error(b->d, e->loc, "%s: missing argument '%s'", info->name, p->name);
        goto out;
      }
      continue;
    }
    switch (p->kind) {
    case 't': ok &= (in[nin++] = lower(b, s, x)) >= 0; break;
    case 'f': ok &= eval_float(b, x, &a.f[p->slot]); break;
    case 'i': ok &= eval_int(b, x, &a.i[p->slot]); break;
    case 'b':
      if (x->kind != EX_BOOL) {
        diag_error(b->d, x->loc, "%s: '%s' must be true or false", info->name, p->name);
        ok = false;
      } else {
        a.b[p->slot] = x->num != 0;
      }
      break;
    case 'a':
    case 'p':
      if (p->kind == 'p' && x->kind != EX_LIST) {
        diag_error(b->d, x->loc, "%s: '%s' must be a list of axes", info->name, p->name);
        ok = false;
      } else {
        ok &= eval_int_list(b, x, &a);
      }
      break;
    case 's': ok &= eval_shape(b, x, &a.shape, op == OP_RESHAPE); break;
    default: BPC_ASSERT(!"schema kind");
    }
  }
  if (!ok) goto out;
  if (op == OP_BATCH_NORM) {
    if (!add_bn_state(b, s, e, in[0], a.f[1], &in[3], &in[4])) goto out;
    nin = 5;
  }
  if (op == OP_DROPOUT) a.salt = bpcrt_fnv1a64(arena_printf(&b->g->arena, "%s#%d", s->entry, s->ndrop++));
  result = g_op(b->g, op, e->loc, nin, in, &a);
out:
  free(rest.v);
  return result;
}

// ---------------------------------------------------------------- expressions

// A numeric constant: a number, or numbers under unary minus and + - * /
// ** (so `x ** 2 ** 0.5`, right-associative, and `x ** (1 / 3)` have a
// literal exponent).
static bool number_value(const Expr *p, double *v) {
  double l, r;
  switch (p->kind) {
  case EX_NUM: *v = p->num; return true;
  case EX_NEG: return number_value(p->args[0], &l) && (*v = -l, true);
  case EX_BIN:
    if (p->op == '@' || !number_value(p->args[0], &l) || !number_value(p->args[1], &r)) return false;
    *v = p->op == '+' ? l + r : p->op == '-' ? l - r : p->op == '*' ? l * r : p->op == '/' ? l / r : pow(l, r);
    return true;
  default: return false;
  }
}

static int lower_bin(Build *b, Scope *s, const Expr *e) {
  if (e->op == 'P') {  // the exponent must be a number (SPEC 5)
    const Expr *p = e->args[1];
    double v;
    if (!number_value(p, &v)) return diag_error(b->d, p->loc, "the exponent of ** must be a number"), -1;
    if (!isfinite(v)) return diag_error(b->d, p->loc, "the exponent of ** is %g", v), -1;
    int x = lower(b, s, e->args[0]);
    if (x < 0) return -1;
    Attr a = attr_default(OP_POW);
    a.f[0] = v;
    return g_op(b->g, OP_POW, e->loc, 1, &x, &a);
  }
  int x = lower(b, s, e->args[0]);
  int y = lower(b, s, e->args[1]);
  if (x < 0 || y < 0) return -1;
  Op op = e->op == '+' ? OP_ADD : e->op == '-' ? OP_SUB : e->op == '*' ? OP_MUL : e->op == '/' ? OP_DIV : OP_MATMUL;
  return g_binary(b->g, op, x, y, e->loc);
}

static int lower(Build *b, Scope *s, const Expr *e) {
  switch (e->kind) {
  case EX_NUM: return g_const(b->g, e->num, e->loc);
  case EX_BOOL: return diag_error(b->d, e->loc, "true/false is not a tensor"), -1;
  case EX_LIST: return diag_error(b->d, e->loc, "a list is not a tensor here"), -1;
  case EX_NAME: return lookup(b, s, e);
  case EX_NEG:
    if (e->args[0]->kind == EX_NUM) return g_const(b->g, -e->args[0]->num, e->loc);
    {
      int x = lower(b, s, e->args[0]);
      return x < 0 ? -1 : g_unary(b->g, OP_NEG, x, e->loc);
    }
  case EX_BIN: return lower_bin(b, s, e);
  case EX_CALL: {
    if (!strcmp(e->name, "repeat") || find_func(b->m, e->name))
      return diag_error(b->d, e->loc,
                        "a call of function '%s' must be the whole expression of its "
                        "graph entry (`y: %s(x)`)",
                        e->name, e->name),
             -1;
    Op op = op_lookup(e->name);
    if (op == OP_NONE || (op_info(op)->flags & OPF_INTERNAL)) return unknown_op(b, e), -1;
    return lower_op(b, s, e, op);
  }
  }
  return -1;
}

// ---------------------------------------------------------------- functions

static bool lower_entries(Build *b, Scope *s, int n, const GraphEntry *entries);

static bool on_stack(const Scope *s, const FuncDef *f) {
  for (; s; s = s->caller)
    if (s->fn == f) return true;
  return false;
}

// Inlines one instance of `f` on `args`, params prefixed by `prefix`.
static int inline_call(Build *b, Scope *caller, const Expr *call, const FuncDef *f, const int *args, const char *prefix,
                       int64_t index) {
  if (on_stack(caller, f)) {  // name the cycle: f -> ... -> the caller -> f
    char path[512];
    int len = 0;
    const Scope *t = caller;
    while (t->fn != f) t = t->caller;
    for (const Scope *u = caller; u != t; u = u->caller) len++;
    const Scope **chain = xmalloc(sizeof(Scope *) * (size_t)(len + 1));
    int k = 0;
    for (const Scope *u = caller; u != t; u = u->caller) chain[k++] = u;
    int w = snprintf(path, sizeof path, "%s", f->name);
    for (k = len - 1; k >= 0 && w < (int)sizeof path; k--)
      w += snprintf(path + w, sizeof path - (size_t)w, " -> %s", chain[k]->fn->name);
    if (w < (int)sizeof path) snprintf(path + w, sizeof path - (size_t)w, " -> %s", f->name);
    free(chain);
    if (len == 0)
      diag_error(b->d, call->loc, "function '%s' calls itself (recursion is not allowed)", f->name);
    else
      diag_error(b->d, call->loc, "function '%s' calls itself (recursion is not allowed): %s", f->name, path);
    return -1;
  }
  for (int i = 0; i < b->failed.n; i++)
    if (b->failed.v[i] == f) return -1;  // its errors were reported at the first failing instance
  Scope s = {.fn = f, .prefix = prefix, .index = index, .caller = caller};
  int nerr0 = b->d->nerr;
  bool ok = true;
  // load.c already rejected names that shadow the model's dims and params.
  for (int i = 0; i < f->nargs; i++) bind(&s, f->args[i], args[i]);
  for (int i = 0; i < f->nparams; i++) {
    int id = add_param(b, &f->params[i], prefix, index);
    ok &= id >= 0;
    bind(&s, f->params[i].name, id);
  }
  int result = -1;
  if (ok && lower_entries(b, &s, f->nentries, f->entries)) {
    for (int i = s.local.n - 1; i >= 0 && result < 0; i--)
      if (!strcmp(s.local.v[i].name, f->ret)) result = s.local.v[i].node;
    if (result < 0) diag_error(b->d, f->retloc, "function '%s' returns unknown name '%s'", f->name, f->ret);
  }
  b->scope = caller;
  free(s.local.v);
  if (result < 0) {
    VEC_PUSH(b->failed, f);
    size_t n = strlen(prefix);
    if (b->d->nerr > nerr0)  // where the failing instance came from
      diag_note(b->d, call->loc, "in '%.*s', an instance of function '%s'", (int)(n ? n - 1 : 0), prefix, f->name);
  }
  return result;
}

static int lower_call_entry(Build *b, Scope *s, const Expr *e, const char *full) {
  Graph *g = b->g;
  bool rep = !strcmp(e->name, "repeat");
  const Expr *fe = e;
  if (rep) {
    if (e->nargs != 2 || e->args[0]->kind != EX_NAME)
      return diag_error(b->d, e->loc, "repeat takes a function name and one argument: repeat(f, x, times=N)"), -1;
    fe = e->args[0];
  }
  const FuncDef *f = find_func(b->m, fe->name);
  if (!f) {
    const char **c = xmalloc(sizeof(char *) * (size_t)(b->m->nfuncs + 1));
    for (int i = 0; i < b->m->nfuncs; i++) c[i] = b->m->funcs[i].name;
    unknown_name(b, fe->loc, "function", fe->name, c, b->m->nfuncs);
    free(c);
    return -1;
  }
  if (rep) {
    int64_t times = 0;
    const Expr *te = NULL;
    for (int k = 0; k < e->nkw; k++) {
      if (!strcmp(e->kwnames[k], "times"))
        te = e->kwargs[k];
      else
        return diag_error(b->d, e->kwlocs[k], "repeat has no argument '%s'", e->kwnames[k]), -1;
    }
    if (!te) return diag_error(b->d, e->loc, "repeat: missing argument 'times'"), -1;
    if (!eval_int(b, te, &times)) return -1;
    if (times < 1 || times > 100000)
      return diag_error(b->d, te->loc, "repeat: times must be between 1 and 100000, got %lld", (long long)times), -1;
    if (f->nargs != 1)
      return diag_error(b->d, fe->loc, "repeat needs a one-argument function; '%s' takes %d", f->name, f->nargs), -1;
    int x = lower(b, s, e->args[1]);
    for (int64_t k = 0; k < times && x >= 0; k++)
      x = inline_call(b, s, fe, f, &x, arena_printf(&g->arena, "%s.%lld.", full, (long long)k), k);
    return x;
  }
  if (e->nkw) return diag_error(b->d, e->kwlocs[0], "function '%s' takes no keyword arguments", f->name), -1;
  if (e->nargs != f->nargs)
    return diag_error(b->d, e->loc, "function '%s' takes %d argument%s, got %d", f->name, f->nargs,
                      f->nargs == 1 ? "" : "s", e->nargs),
           -1;
  int args[64];
  if (e->nargs > 64) return diag_error(b->d, e->loc, "too many arguments"), -1;
  for (int i = 0; i < e->nargs; i++)
    if ((args[i] = lower(b, s, e->args[i])) < 0) return -1;
  return inline_call(b, s, e, f, args, arena_printf(&g->arena, "%s.", full), s->index);
}

static bool lower_entries(Build *b, Scope *s, int n, const GraphEntry *entries) {
  Graph *g = b->g;
  bool ok = true;
  for (int i = 0; i < n; i++) {
    const GraphEntry *ge = &entries[i];
    const char *full = arena_printf(&g->arena, "%s%s", s->prefix, ge->name);
    s->entry = full;
    s->nstate = s->ndrop = 0;
    b->scope = s;
    const Expr *e = ge->expr;
    bool is_call = e->kind == EX_CALL && (!strcmp(e->name, "repeat") || find_func(b->m, e->name));
    int id = is_call ? lower_call_entry(b, s, e, full) : lower(b, s, e);
    if (id < 0) {
      ok = false;
      bind(s, ge->name, -1);  // later uses fail quietly: the error is reported once, here
      continue;
    }
    Node *node = graph_node(g, id);
    if (!node->name && !(op_info(node->op)->flags & OPF_LEAF)) node->name = full;
    bind(s, ge->name, id);
    VEC_PUSH(g->named, ((GNamed){full, id}));
    if (g->diag->nerr > g->diag->max_errors) return false;
  }
  return ok;
}

// ---------------------------------------------------------------- the model

static int find_named(const Graph *g, const char *name) {
  for (int i = 0; i < g->named.n; i++)
    if (!strcmp(g->named.v[i].name, name)) return g->named.v[i].node;
  return -1;
}

static bool scalar_result(Build *b, const char *what, const char *name, Loc loc, int id, bool need_float) {
  const Node *n = graph_node(b->g, id);
  if (shape_numel(&n->shape) != 1 || n->shape.rank > 0) {
    char buf[128];
    diag_error(b->d, loc, "%s '%s' must be a scalar, but has shape %s", what, name,
               shape_str(&n->shape, buf, sizeof buf));
    return false;
  }
  if (need_float && !dtype_is_float(n->dtype))
    return diag_error(b->d, loc, "%s '%s' must be a float, not i32", what, name), false;
  return true;
}

static bool build_results(Build *b) {
  const Model *m = b->m;
  Graph *g = b->g;
  bool ok = true;
  if (m->loss) {
    g->loss = find_named(g, m->loss);
    if (g->loss < 0) return diag_error(b->d, m->loss_loc, "unknown loss '%s'", m->loss), false;
    ok &= scalar_result(b, "loss", m->loss, m->loss_loc, g->loss, true);
  }
  for (int i = 0; i < m->nmetrics; i++) {
    int id = find_named(g, m->metrics[i]);
    if (id < 0) {
      diag_error(b->d, m->metric_locs[i], "unknown metric '%s'", m->metrics[i]);
      ok = false;
      continue;
    }
    ok &= scalar_result(b, "metric", m->metrics[i], m->metric_locs[i], id, false);
    VEC_PUSH(g->metrics, ((GNamed){m->metrics[i], id}));
  }
  for (int i = 0; i < m->noutputs; i++) {
    int id = find_named(g, m->outputs[i]);
    if (id < 0) {
      diag_error(b->d, m->output_locs[i], "unknown output '%s'", m->outputs[i]);
      ok = false;
      continue;
    }
    VEC_PUSH(g->outputs, ((GNamed){m->outputs[i], id}));
  }
  return ok;
}

static bool check_functions(Build *b) {
  bool ok = true;
  for (int i = 0; i < b->m->nfuncs; i++) {
    const FuncDef *f = &b->m->funcs[i];
    if (op_lookup(f->name) != OP_NONE || !strcmp(f->name, "repeat")) {
      diag_error(b->d, f->loc, "function '%s' has the name of a builtin op", f->name);
      ok = false;
    }
  }
  return ok;
}

// attention(q, k, v) whose q, k and v are the three thirds of one tensor's
// last axis, in order (`qkv: h @ w_qkv`, then slices: GPT's fused
// projection), becomes attention_qkv(qkv): the kernels read q, k and v in
// place, rows 3C apart, and the backward writes dq, dk and dv into their
// places in d(qkv). Without it the forward copies three slices and the
// backward copies three gradients out of a flat buffer, widens each to
// [B, T, 3C] with zeros and adds them. Before autodiff, so the gradient rule
// sees the packed form; the slices stay for any other reader.
static void pack_attention(Graph *g) {
  for (int id = 0; id < g->nodes.n; id++) {
    Node *n = graph_node(g, id);
    if (n->op != OP_ATTENTION) continue;
    int x = -1;
    bool packed = true;
    int64_t C = n->shape.rank == 3 ? n->shape.d[2] : 0;
    for (int w = 0; w < 3 && packed; w++) {
      const Node *s = graph_node(g, n->in[w]);
      packed = s->op == OP_SLICE && (x < 0 || s->in[0] == x) && s->attr.i[0] == w * C && s->attr.i[1] == (w + 1) * C;
      if (!packed) break;
      const Node *xn = graph_node(g, s->in[0]);
      packed = xn->shape.rank == 3 && s->attr.i[2] == 2 && xn->shape.d[2] == 3 * C && xn->dtype == n->dtype;
      x = s->in[0];
    }
    if (!packed) continue;
    int m = node_operand(n, "mask");
    n->op = OP_ATTENTION_QKV;
    n->in[1] = m >= 0 ? n->in[m] : -1;  // the optional mask follows x
    n->nin = m >= 0 ? 2 : 1;
    n->in[0] = x;
  }
}

Graph *graph_build(const Model *m, Diag *d, const DimOverride *ov, int nov, DType fdtype) {
  int nerr0 = d->nerr;
  Graph *g = graph_new(d, m, fdtype);
  Build b = {.g = g, .m = m, .d = d};
  bool ok = build_dims(&b, ov, nov);
  ok &= check_functions(&b);
  Scope top = {.prefix = "", .index = -1};
  for (int i = 0; i < m->ninputs; i++) {
    Shape s;
    if (!decl_shape(&b, &m->inputs[i], &s)) {
      ok = false;
      continue;
    }
    int id = g_leaf(g, OP_INPUT, m->inputs[i].name, leaf_dtype(&b, m->inputs[i].dtype), &s, m->inputs[i].loc);
    VEC_PUSH(g->inputs, ((GInput){m->inputs[i].name, id}));
    bind(&top, m->inputs[i].name, id);
  }
  for (int i = 0; i < m->nparams; i++) {
    int id = add_param(&b, &m->params[i], "", -1);
    if (id < 0) {
      ok = false;
      continue;
    }
    bind(&top, m->params[i].name, id);
  }
  b.nmodel_params = g->params.n;
  if (ok) ok = lower_entries(&b, &top, m->nentries, m->entries);
  if (ok) ok = build_results(&b);
  free(top.local.v);
  free(b.failed.v);
  if (!ok || d->nerr > nerr0) {
    graph_free(g);
    return NULL;
  }
  pack_attention(g);
  return g;
}
