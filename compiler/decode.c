// decode.c — cached sampling (issue 19.4): from the batch-1 forward graph of
// a `generate:` model, the program that runs one new position per step.
//
// Every value of the sample graph is classified as it is copied: TIME (its
// slice at position p along its time axis depends only on the tokens at
// positions <= p) or CONST (no token reaches it: params, literals, their
// functions). A TIME value becomes its one row at the new position (the
// time axis of size 1); a CONST value that meets a TIME one along the time
// axis (a position embedding `+ wpe`, a slice of one) is read at the new
// position (an embedding lookup by the `__pos` input); arange(T) is that
// position itself. Causal attention becomes attention_decode: the new query
// over the cached keys and values of positions [0, pos) and its own. Any op
// that mixes positions otherwise (a reduction, softmax or norm over time,
// non-causal or masked attention, convolution, batch_norm, a reshape that
// merges time with another axis) stops the derivation with the reason, and
// `sample` runs the whole window as before. The rules only let through what
// is computed row by row, so the decode program's logits are the uncached
// program's row p, up to f32 rounding.
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "bpcc.h"

typedef struct {
  Graph *s;      // the sample graph (k and v outputs are added to it)
  Graph *g;      // the decode graph being built
  int ns;        // nodes of s at the start (s grows by the k/v slices)
  int *map;      // per node of s: its node in g, -1 before
  int *ta;       // per node of s: time axis, -1 for CONST
  int64_t T;     // the context length
  int pos;       // the __pos input of g
  int nattn;
  IntVec kv;     // per attention: k and v nodes of s (or the packed x, then -1)
  char *why;
} Dec;

static bool no(Dec *x, const Node *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool no(Dec *x, const Node *n, const char *fmt, ...) {
  if (x->why) return false;
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  x->why = xmalloc(600);
  Loc l = n ? n->loc : (Loc){0};
  snprintf(x->why, 600, "%s:%d:%d: %s", l.file ? l.file->path : "?", l.line, l.col, msg);
  return false;
}

static const Node *S(const Dec *x, int id) { return graph_node(x->s, id); }

// g_op on the decode graph; a failed shape rule is reported as a reason
// (the graph's diag is quiet), never to the user.
static int op(Dec *x, const Node *n, Op o, int nin, const int *in, const Attr *a) {
  int id = g_op(x->g, o, n->loc, nin, in, a);
  if (id < 0) no(x, n, "cannot derive the one-position form of %s", op_name(n->op));
  return id;
}

// CONST node c of g read at the new position along `axis` (of size T):
// moved to axis 0, flattened to [T, rest], one embedding row taken by
// __pos, reshaped and moved back.
static int at_pos(Dec *x, const Node *n, int c, int axis) {
  Shape s = graph_node(x->g, c)->shape;
  DType dt = graph_node(x->g, c)->dtype;
  Attr a = attr_default(OP_TRANSPOSE);
  int r = s.rank;
  if (axis != 0) {
    a.naxes = r;
    a.axes[0] = axis;
    for (int i = 0, k = 1; i < r; i++)
      if (i != axis) a.axes[k++] = i;
    if ((c = op(x, n, OP_TRANSPOSE, 1, &c, &a)) < 0) return -1;
  }
  Shape t = graph_node(x->g, c)->shape;
  Attr rs = attr_default(OP_RESHAPE);
  rs.shape = (Shape){.rank = 2, .d = {x->T, shape_numel(&t) / x->T}};
  if ((c = op(x, n, OP_RESHAPE, 1, &c, &rs)) < 0) return -1;
  int in[2] = {x->pos, c};
  if ((c = op(x, n, OP_EMBEDDING, 2, in, NULL)) < 0) return -1;
  if (dt == DT_I32) {  // embedding reads an int table as floats: exact below 2^24
    Attr ca = attr_default(OP_CAST);
    ca.i[0] = DT_I32;
    if ((c = op(x, n, OP_CAST, 1, &c, &ca)) < 0) return -1;
  }
  t.d[0] = 1;
  rs.shape = t;
  if ((c = op(x, n, OP_RESHAPE, 1, &c, &rs)) < 0) return -1;
  if (axis != 0) {
    Attr inv = attr_default(OP_TRANSPOSE);
    inv.naxes = r;
    for (int i = 0; i < r; i++) inv.axes[a.axes[i]] = i;
    c = op(x, n, OP_TRANSPOSE, 1, &c, &inv);
  }
  return c;
}

// The time axis of operand k in n's (right-aligned, broadcast) axes, or -1.
static int out_axis(const Dec *x, const Node *n, int k) {
  int a = x->ta[n->in[k]];
  return a < 0 ? -1 : a + n->shape.rank - S(x, n->in[k])->shape.rank;
}

// Operand k of n for a result whose time axis is `ta`: its decode node, a
// CONST one read at the new position when it spans the time axis.
static int operand(Dec *x, const Node *n, int k, int ta) {
  int c = x->map[n->in[k]];
  if (x->ta[n->in[k]] >= 0 || ta < 0) return c;
  const Shape *s = &S(x, n->in[k])->shape;
  int j = ta - (n->shape.rank - s->rank);
  return j >= 0 && s->d[j] != 1 ? at_pos(x, n, c, j) : c;
}

// The one time axis of n's operands, aligned to n's axes: -1 when none is
// TIME, -2 (after the reason) when two disagree.
static int common_axis(Dec *x, const Node *n) {
  int ta = -1;
  for (int k = 0; k < n->nin; k++) {
    int a = out_axis(x, n, k);
    if (a < 0) continue;
    if (ta >= 0 && a != ta) return no(x, n, "%s combines positions along different axes", op_name(n->op)), -2;
    ta = a;
  }
  return ta;
}

// n on its operands' decode nodes, attributes `a`; with `gather` (elementwise
// ops, concat) a CONST operand spanning the time axis ta is read at the new
// position.
static int rebuild(Dec *x, const Node *n, int ta, const Attr *a, bool gather) {
  int in[16];
  BPC_ASSERT(n->nin <= 16);
  for (int k = 0; k < n->nin; k++)
    if ((in[k] = gather ? operand(x, n, k, ta) : x->map[n->in[k]]) < 0) return -1;
  return op(x, n, n->op, n->nin, in, a);
}

// Leaves: the tokens become one [1, 1] row; params and state are shared.
static bool leaf(Dec *x, const Node *n, const char *tokens) {
  Graph *g = x->g;
  const char *name = arena_strdup(&g->arena, n->name);
  if (n->op == OP_INPUT) {
    if (strcmp(n->name, tokens)) return no(x, n, "the logits read the input '%s' besides the tokens", n->name);
    Shape s = n->shape;
    s.d[1] = 1;
    x->map[n->id] = g_leaf(g, OP_INPUT, name, n->dtype, &s, n->loc);
    x->ta[n->id] = 1;
    VEC_PUSH(g->inputs, ((GInput){name, x->map[n->id]}));
    return true;
  }
  x->map[n->id] = g_leaf(g, n->op, name, n->dtype, &n->shape, n->loc);
  for (int i = 0; i < x->s->params.n; i++)
    if (x->s->params.v[i].node == n->id) {
      GParam p = x->s->params.v[i];
      p.name = name, p.node = p.value = x->map[n->id], p.grad = p.update = -1;
      if (p.lora_a) p.lora_a = arena_strdup(&g->arena, p.lora_a), p.lora_b = arena_strdup(&g->arena, p.lora_b);
      if (p.from) p.from = arena_strdup(&g->arena, p.from);
      VEC_PUSH(g->params, p);
    }
  for (int i = 0; i < x->s->states.n; i++)
    if (x->s->states.v[i].node == n->id) {
      GState st = x->s->states.v[i];
      st.name = name, st.node = x->map[n->id], st.update = -1;
      VEC_PUSH(g->states, st);
    }
  return true;
}

// Whether axis ta is among n's reduced/normalized axes `axes`.
static bool among(const int *axes, int naxes, int ta) {
  for (int i = 0; i < naxes; i++)
    if (axes[i] == ta) return true;
  return false;
}

// Causal attention (plain or packed) -> attention_decode(q, k, v, kcache,
// vcache, pos), with the caches as inputs the trainer fills.
static bool attention(Dec *x, const Node *n, int id) {
  bool packed = n->op == OP_ATTENTION_QKV;
  if (!n->attr.b[0]) return no(x, n, "attention is not causal: every position sees the later ones");
  if (node_operand(n, "mask") >= 0) return no(x, n, "attention with a key mask");
  for (int k = 0; k < (packed ? 1 : 3); k++)
    if (x->ta[n->in[k]] != 1)
      return no(x, n, "attention: the %s operand is not a row per position", (const char *[]){"q", "k", "v"}[k]);
  int64_t C = n->shape.d[2];
  int in[6];
  for (int w = 0; w < 3; w++) {
    if (!packed) {
      in[w] = x->map[n->in[w]];
      continue;
    }
    Attr sa = attr_default(OP_SLICE);
    sa.i[0] = w * C, sa.i[1] = (w + 1) * C, sa.i[2] = 2;
    if ((in[w] = op(x, n, OP_SLICE, 1, &x->map[n->in[0]], &sa)) < 0) return false;
  }
  Shape cs = {.rank = 3, .d = {1, x->T, C}};
  for (int w = 0; w < 2; w++) {
    const char *nm = arena_printf(&x->g->arena, "__%ccache.%d", w ? 'v' : 'k', x->nattn);
    in[3 + w] = g_leaf(x->g, OP_INPUT, nm, n->dtype, &cs, n->loc);
    VEC_PUSH(x->g->inputs, ((GInput){nm, in[3 + w]}));
  }
  in[5] = x->pos;
  Attr a = attr_default(OP_ATTENTION_DECODE);
  a.i[0] = n->attr.i[0];
  if ((x->map[id] = op(x, n, OP_ATTENTION_DECODE, 6, in, &a)) < 0) return false;
  x->ta[id] = 1;
  VEC_PUSH(x->kv, packed ? n->in[0] : n->in[1]);
  VEC_PUSH(x->kv, packed ? -1 : n->in[2]);
  x->nattn++;
  return true;
}

// The result's time axis *out (n's own axes) for an op with per-position
// operands (time axis ta aligned, in0 the first operand's own), and its
// attributes for the one-row result; false (the reason set) when the op
// mixes positions.
static bool follow(Dec *x, const Node *n, int ta, Attr *a, int *out) {
  int in0 = x->ta[n->in[0]], r0 = S(x, n->in[0])->shape.rank;
  *out = ta;
  switch (n->op) {
  case OP_RESHAPE: {  // the time axis must stay one axis with the same axes before it
    const Shape *is = &S(x, n->in[0])->shape;
    int64_t pre = 1, acc = 1;
    for (int i = 0; i < in0; i++) pre *= is->d[i];
    *out = -1;
    for (int j = 0; j < n->shape.rank && *out < 0; acc *= n->shape.d[j], j++)
      if (acc == pre && n->shape.d[j] == x->T) *out = j;
    if (*out < 0) return no(x, n, "reshape merges the positions with another axis");
    a->shape = n->shape;
    a->shape.d[*out] = 1;
    return true;
  }
  case OP_TRANSPOSE:
    for (int j = 0; j < a->naxes; j++)
      if (a->axes[j] == in0) *out = j;
    return true;
  case OP_BROADCAST_TO:
    *out = in0 + n->shape.rank - r0;
    a->shape = n->shape;
    a->shape.d[*out] = 1;
    return true;
  case OP_CONCAT: return a->i[0] != ta || no(x, n, "concat along the positions");
  case OP_SLICE: return a->i[2] != in0 || no(x, n, "slice along the positions");
  case OP_SUM:
  case OP_MEAN:
  case OP_MAX:
  case OP_MIN:
  case OP_VAR:
  case OP_LOGSUMEXP:
    if (among(a->axes, a->naxes, in0)) return no(x, n, "%s over the positions", op_name(n->op));
    *out = in0;
    for (int i = 0; i < a->naxes && !a->b[0]; i++) *out -= a->axes[i] < in0;
    return true;
  case OP_ARGMAX: *out = in0 - (a->i[0] < in0); return a->i[0] != in0 || no(x, n, "argmax over the positions");
  case OP_SOFTMAX:
  case OP_LOG_SOFTMAX: return a->i[0] != in0 || no(x, n, "%s over the positions", op_name(n->op));
  case OP_LAYER_NORM:
  case OP_RMS_NORM:
  case OP_LINEAR:  // over the last axis
    return (in0 >= 0 && in0 != r0 - 1) || no(x, n, "%s over the positions", op_name(n->op));
  case OP_MATMUL: {  // rows of a (or a batch axis against a shared rank-2 b)
    int row = a->b[0] ? r0 - 1 : r0 - 2;
    if (in0 < 0) return no(x, n, "matmul whose right operand depends on the tokens");
    if (in0 != row && !(in0 < r0 - 2 && S(x, n->in[1])->shape.rank == 2))
      return no(x, n, "matmul contracts over the positions");
    *out = in0 + n->shape.rank - r0;
    return true;
  }
  case OP_EMBEDDING:
  case OP_ONE_HOT: *out = in0; return in0 >= 0 || no(x, n, "%s of a table that depends on the tokens", op_name(n->op));
  default: return op_info(n->op)->lower == LK_EW || no(x, n, "%s mixes the positions", op_name(n->op));
  }
}

// One node of s: its decode form and time axis. False (x->why set) when
// it mixes positions.
static bool node(Dec *x, int id, const char *tokens) {
  const Node *n = S(x, id);
  if (op_info(n->op)->flags & OPF_LEAF) return leaf(x, n, tokens);
  bool timed = false;
  for (int k = 0; k < n->nin; k++) timed |= x->ta[n->in[k]] >= 0;
  Attr a = n->attr;
  if (n->op == OP_ARANGE && n->attr.i[0] == x->T) {  // the positions: the new one
    x->map[id] = x->pos, x->ta[id] = 0;
    return true;
  }
  if (!timed) {  // no token reaches it: copied as is
    x->map[id] = rebuild(x, n, -1, &a, false);
    return x->map[id] >= 0;
  }
  if (n->op == OP_ATTENTION || n->op == OP_ATTENTION_QKV) return attention(x, n, id);
  if (n->op == OP_DROPOUT) {  // the identity in sample
    x->map[id] = x->map[n->in[0]], x->ta[id] = x->ta[n->in[0]];
    return true;
  }
  // elementwise ops and concat align their operands; the others take the
  // positions from their first operand alone
  bool gather = op_info(n->op)->lower == LK_EW || n->op == OP_CONCAT;
  int ta = gather ? common_axis(x, n) : x->ta[n->in[0]], out;
  if (ta == -2) return false;
  for (int k = 1; k < n->nin && !gather; k++)
    if (x->ta[n->in[k]] >= 0) return no(x, n, "%s: operand %d depends on the tokens", op_name(n->op), k + 1);
  if (!follow(x, n, ta, &a, &out)) return false;
  if (out < 0) return no(x, n, "%s: cannot follow the positions through it", op_name(n->op));
  if ((x->map[id] = rebuild(x, n, ta, &a, gather)) < 0) return false;
  x->ta[id] = out;
  if (n->shape.d[out] != x->T || graph_node(x->g, x->map[id])->shape.d[out] != 1)
    return no(x, n, "%s: cannot follow the positions through it", op_name(n->op));
  return true;
}

Graph *decode_graph(Graph *s, const char *tokens, const char *logits_name, int logits, char **why) {
  *why = NULL;
  int tok = -1;
  for (int i = 0; i < s->inputs.n; i++)
    if (!strcmp(s->inputs.v[i].name, tokens)) tok = s->inputs.v[i].node;
  const Node *ln = graph_node(s, logits);
  Dec x = {.s = s, .ns = s->nodes.n};
  if (tok < 0 || graph_node(s, tok)->shape.rank != 2) return NULL;
  x.T = graph_node(s, tok)->shape.d[1];
  if (x.T < 2) {
    no(&x, ln, "a context of one position has nothing to cache");
    *why = x.why;
    return NULL;
  }
  Diag quiet;
  FILE *devnull = fopen("/dev/null", "w");
  diag_init(&quiet, devnull ? devnull : stderr);
  x.g = graph_new(&quiet, s->model, s->fdtype);
  for (int i = 0; i < s->dims.n; i++) VEC_PUSH(x.g->dims, s->dims.v[i]);
  Shape ps = {.rank = 1, .d = {1}};
  x.pos = g_leaf(x.g, OP_INPUT, "__pos", DT_I32, &ps, ln->loc);
  VEC_PUSH(x.g->inputs, ((GInput){"__pos", x.pos}));
  x.map = xmalloc(sizeof(int) * (size_t)x.ns);
  x.ta = xmalloc(sizeof(int) * (size_t)x.ns);
  bool *need = xcalloc((size_t)x.ns, 1);
  need[logits] = true;
  for (int id = x.ns - 1; id >= 0; id--) {
    x.map[id] = -1, x.ta[id] = -1;
    if (need[id])
      for (int k = 0; k < graph_node(s, id)->nin; k++) need[graph_node(s, id)->in[k]] = true;
  }
  bool ok = true;
  for (int id = 0; id <= logits && ok; id++)
    if (need[id]) ok = node(&x, id, tokens);
  if (ok && (x.ta[logits] != ln->shape.rank - 2 || shape_numel(&ln->shape) != x.T * ln->shape.d[ln->shape.rank - 1]))
    ok = no(&x, ln, "the logits are not one row of the vocabulary per position");
  if (ok && x.nattn == 0) ok = no(&x, ln, "no causal attention: nothing to cache");
  if (ok) {
    VEC_PUSH(x.g->outputs, ((GNamed){arena_strdup(&x.g->arena, logits_name), x.map[logits]}));
    // the sample program writes every attention's k and v rows: the prompt's cache
    for (int i = 0; i < x.nattn; i++)
      for (int w = 0; w < 2; w++) {
        int kv = x.kv.v[2 * i + w];
        if (x.kv.v[2 * i + 1] < 0) {  // packed: the thirds of x
          const Node *xn = graph_node(s, x.kv.v[2 * i]);
          Attr sa = attr_default(OP_SLICE);
          int64_t C = xn->shape.d[2] / 3;
          sa.i[0] = (w + 1) * C, sa.i[1] = (w + 2) * C, sa.i[2] = 2;
          kv = g_op(s, OP_SLICE, xn->loc, 1, &x.kv.v[2 * i], &sa);
          BPC_ASSERT(kv >= 0);
        }
        VEC_PUSH(s->outputs, ((GNamed){arena_printf(&s->arena, "__%c.%d", w ? 'v' : 'k', i), kv}));
      }
  }
  free(x.map), free(x.ta), free(need), free(x.kv.v);
  x.g->diag = s->diag;  // from here on an error is a bug of bpc's, worth showing
  if (devnull) fclose(devnull);
  if (!ok) {
    graph_free(x.g);
    *why = x.why;
    return NULL;
  }
  return x.g;
}
