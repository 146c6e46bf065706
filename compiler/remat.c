// remat.c — the memory budget (SPEC 6.8). Takes a simplified joint graph
// and a budget in bytes for the training step's arena; gives the Program
// (fuse.c, memplan.c) whose arena fits, made by recomputing forward values
// in the backward instead of keeping them. A recomputed value is a copy of
// the nodes of the forward kernel that stored it (same ops, attributes and
// operands, so the same kernel code and the same bits), placed just before
// its first reader in the backward; the forward's copy then dies with its
// last forward reader. Which values: greedy, cheapest first (values whose
// kernel has no GEMM, attention or convolution, then FLOPs recomputed per
// byte), each kept only when the arena shrinks, in passes until it fits or
// a pass shrinks nothing; then every recomputation the budget can do
// without is dropped again. Leaves out: the arena's fixed part (params,
// gradients, optimizer and model state, inputs, results), which no
// recomputation shrinks, and per-thread scratch, which depends on --threads.
#include <stdlib.h>
#include <string.h>

#include "bpcc.h"

// fwd[id]: the node feeds the loss, a metric, an output or a model state
// update (batch_norm's running stats; not the optimizer's slots).
static bool *forward_nodes(const Graph *g) {
  int n = g->nodes.n;
  bool *f = xcalloc((size_t)(n ? n : 1), 1);
  if (g->loss >= 0) f[g->loss] = true;
  for (int i = 0; i < g->metrics.n; i++) f[g->metrics.v[i].node] = true;
  for (int i = 0; i < g->outputs.n; i++) f[g->outputs.v[i].node] = true;
  for (int i = 0; i < g->states.n; i++)
    if (g->states.v[i].update >= 0 && !g->states.v[i].opt) f[g->states.v[i].update] = true;
  for (int id = n - 1; id >= 0; id--)
    if (f[id])
      for (int k = 0; k < graph_node(g, id)->nin; k++) f[graph_node(g, id)->in[k]] = true;
  return f;
}

static bool is_leaf(const Node *n) { return op_info(n->op)->flags & OPF_LEAF; }

// Storage the arena holds for the whole step: leaves and results.
static bool *fixed_nodes(const Graph *g) {
  bool *r = xcalloc((size_t)(g->nodes.n ? g->nodes.n : 1), 1);
  for (int id = 0; id < g->nodes.n; id++) r[id] = is_leaf(graph_node(g, id));
  if (g->loss >= 0) r[g->loss] = true;
  for (int i = 0; i < g->metrics.n; i++) r[g->metrics.v[i].node] = true;
  for (int i = 0; i < g->outputs.n; i++) r[g->outputs.v[i].node] = true;
  for (int i = 0; i < g->params.n; i++) {
    if (g->params.v[i].grad >= 0) r[g->params.v[i].grad] = true;
    if (g->params.v[i].update >= 0) r[g->params.v[i].update] = true;
  }
  for (int i = 0; i < g->states.n; i++)
    if (g->states.v[i].update >= 0) r[g->states.v[i].update] = true;
  return r;
}

// A forward value's storage the backward reads, and that the arena could
// free at the end of the forward: kept[s] for storage roots s. `opt` (may
// be NULL) marks storage the optimizer update reads too.
static bool *kept_values(const Program *p, const bool *fwd, bool *opt) {
  const Graph *g = p->g;
  bool *fixed = fixed_nodes(g), *kept = xcalloc((size_t)(g->nodes.n ? g->nodes.n : 1), 1);
  for (int id = 0; id < g->nodes.n; id++) {
    const Node *n = graph_node(g, id);
    if (fwd[id] || is_leaf(n)) continue;
    for (int k = 0; k < n->nin; k++) {
      int y = n->in[k], s = p->alias[y];
      if (!fwd[y] || !p->materialized[y] || fixed[s] || graph_node(g, s)->op == OP_CONST) continue;
      if (n->phase == 0)
        kept[s] = true;
      else if (opt)
        opt[s] = true;
    }
  }
  free(fixed);
  return kept;
}

// ---------------------------------------------------------------- the copy

typedef struct Rw {
  const Program *p;  // the plan without recomputation, over p->g
  const bool *fwd, *R;  // R[s]: storage root s is recomputed
  Graph *out;
  int *map;    // original node -> the new graph's node
  int *clone;  // original node -> its backward copy, -1 before it is needed
} Rw;

static bool recomputed(const Rw *w, int id) { return w->fwd[id] && w->p->materialized[id] && w->R[w->p->alias[id]]; }

static int copy_node(Rw *w, const Node *n, const int *in, int remat) {
  w->out->phase = n->phase;
  int id = g_op(w->out, n->op, n->loc, n->nin, in, &n->attr);
  BPC_ASSERT(id >= 0);
  Node *m = graph_node(w->out, id);
  if (n->name) m->name = arena_strdup(&w->out->arena, n->name);
  m->remat = remat;
  return id;
}

// The backward's copy of forward node id, made now (so just before its
// first reader): its kernel's inlined nodes and epilogue GEMM are copied
// with it, recomputed operands are read as their copies, kept ones as they are.
static int clone(Rw *w, int id) {
  if (w->clone[id] >= 0) return w->clone[id];
  const Graph *g = w->p->g;
  const Node *n = graph_node(g, id);
  int in[64];
  BPC_ASSERT(n->nin <= 64);
  for (int k = 0; k < n->nin; k++) {
    int z = n->in[k];
    const Node *zn = graph_node(g, z);
    bool inner = zn->op != OP_CONST && !is_leaf(zn) && !w->p->materialized[z];
    in[k] = inner || recomputed(w, z) ? clone(w, z) : w->map[z];
  }
  bool stored = w->p->materialized[id] && w->p->alias[id] == id;
  return w->clone[id] = copy_node(w, n, in, stored ? 2 : 1);
}

// A copy of p's graph where every backward reader of a recomputed value
// reads a copy made in the backward.
static Graph *rewrite(const Program *p, const bool *fwd, const bool *R) {
  const Graph *g = p->g;
  int n = g->nodes.n;
  Rw w = {p,
          fwd,
          R,
          graph_new(g->diag, g->model, g->fdtype),
          xmalloc(sizeof(int) * (size_t)(n ? n : 1)),
          xmalloc(sizeof(int) * (size_t)(n ? n : 1))};
  for (int id = 0; id < n; id++) w.clone[id] = -1;
  for (int id = 0; id < n; id++) {
    const Node *nd = graph_node(g, id);
    if (is_leaf(nd)) {
      w.map[id] = g_leaf(w.out, nd->op, nd->name ? arena_strdup(&w.out->arena, nd->name) : NULL, nd->dtype, &nd->shape,
                         nd->loc);
      continue;
    }
    bool bwd = !fwd[id] && nd->phase == 0;
    int in[64];
    BPC_ASSERT(nd->nin <= 64);
    for (int k = 0; k < nd->nin; k++)
      in[k] = bwd && recomputed(&w, nd->in[k]) ? clone(&w, nd->in[k]) : w.map[nd->in[k]];
    w.map[id] = copy_node(&w, nd, in, 0);
  }
  graph_copy_tables(w.out, g, w.map);
  w.out->phase = g->phase;
  free(w.map);
  free(w.clone);
  return w.out;
}

// ---------------------------------------------------------------- choosing

typedef struct Cand {
  int node;          // the storage root
  int64_t bytes, flops;
  bool heavy;        // its kernel runs a GEMM, attention or a convolution
} Cand;

static bool heavy_op(Op op) {
  return op == OP_MATMUL || op == OP_ATTENTION || op == OP_ATTENTION_QKV || op == OP_CONV2D;
}

// The FLOPs of the nodes a copy of storage root s makes (its kernel's).
static void tree_cost(const Program *p, int s, int id, Cand *c, int *seen, int stamp) {
  if (seen[id] == stamp) return;
  seen[id] = stamp;
  const Node *n = graph_node(p->g, id);
  c->flops += node_flops(p->g, n);
  c->heavy |= heavy_op(n->op);
  for (int k = 0; k < n->nin; k++) {
    int z = n->in[k];
    const Node *zn = graph_node(p->g, z);
    if (zn->op == OP_CONST || is_leaf(zn)) continue;
    if (!p->materialized[z] || (p->alias[z] == s && z != s)) tree_cost(p, s, z, c, seen, stamp);
  }
}

static int cand_cmp(const void *a, const void *b) {
  const Cand *x = a, *y = b;
  if (x->heavy != y->heavy) return x->heavy ? 1 : -1;
  // flops / bytes, compared without division
  double l = (double)x->flops * (double)y->bytes, r = (double)y->flops * (double)x->bytes;
  if (l != r) return l < r ? -1 : 1;
  return x->node - y->node;
}

static Cand *candidates(const Program *p, const bool *fwd, int *ncand) {
  const Graph *g = p->g;
  int n = g->nodes.n;
  bool *opt = xcalloc((size_t)(n ? n : 1), 1), *kept = kept_values(p, fwd, opt);
  int *seen = xcalloc((size_t)(n ? n : 1), sizeof(int));
  Cand *c = xmalloc(sizeof(Cand) * (size_t)(n ? n : 1));
  int nc = 0;
  for (int s = 0; s < n; s++) {
    if (!kept[s] || opt[s]) continue;
    c[nc] = (Cand){.node = s, .bytes = memplan_value_bytes(graph_node(g, s))};
    tree_cost(p, s, s, &c[nc], seen, nc + 1);
    nc++;
  }
  qsort(c, (size_t)nc, sizeof(Cand), cand_cmp);
  free(opt);
  free(kept);
  free(seen);
  *ncand = nc;
  return c;
}

typedef struct Trial {
  Graph *g;
  Program *p;
} Trial;

static Trial trial(const Program *p0, const bool *fwd, const bool *R, bool fuse) {
  Trial t = {rewrite(p0, fwd, R), NULL};
  t.p = program_new(t.g, fuse, true);
  memplan_assign(t.p);
  return t;
}

static void trial_free(Trial *t) {
  program_free(t->p);
  graph_free(t->g);
  *t = (Trial){0};
}

// The arena's part no recomputation changes: leaves, results, status word.
static int64_t fixed_bytes(const Program *p) { return p->mem.arena_bytes - p->mem.cat_bytes[MEM_ACT]; }

Program *program_plan_budget(const Graph *g, bool fuse, int64_t budget, Graph **lowered, Diag *d) {
  Program *p0 = program_plan(g, fuse, true, lowered);
  p0->mem.arena_unbudgeted = p0->mem.arena_bytes;
  p0->mem.budget = budget;
  if (budget <= 0 || p0->mem.arena_bytes <= budget) return p0;
  bool *fwd = forward_nodes(p0->g);
  int nc;
  Cand *c = candidates(p0, fwd, &nc);
  bool *R = xcalloc((size_t)(p0->g->nodes.n ? p0->g->nodes.n : 1), 1);
  Trial best = {0};
  int64_t cur = p0->mem.arena_bytes;
  for (bool progress = true; progress && cur > budget;) {
    progress = false;
    for (int i = 0; i < nc && cur > budget; i++) {
      if (R[c[i].node]) continue;
      R[c[i].node] = true;
      Trial t = trial(p0, fwd, R, fuse);
      if (t.p->mem.arena_bytes < cur) {
        trial_free(&best);
        best = t;
        cur = t.p->mem.arena_bytes;
        progress = true;
      } else {
        R[c[i].node] = false;
        trial_free(&t);
      }
    }
  }
  Program *out = NULL;
  if (cur > budget) {
    char b[64], m[64], f[64];
    format_bytes(b, sizeof b, budget);
    format_bytes(m, sizeof m, cur);
    format_bytes(f, sizeof f, fixed_bytes(p0));
    diag_error(d, (Loc){0},
               "--max-memory %lld bytes (%s) is below the smallest arena of this model's training step, "
               "%lld bytes (%s) with every useful recomputation; of it %s are params, gradients, optimizer "
               "and model state, inputs and outputs, which no budget reduces",
               (long long)budget, b, (long long)cur, m, f);
    trial_free(&best);
  } else {
    // Recompute no more than the budget needs: the costliest choices go first.
    for (int i = nc - 1; i >= 0; i--) {
      if (!R[c[i].node]) continue;
      R[c[i].node] = false;
      Trial t = trial(p0, fwd, R, fuse);
      if (t.p->mem.arena_bytes <= budget) {
        trial_free(&best);
        best = t;
      } else {
        R[c[i].node] = true;
        trial_free(&t);
      }
    }
    out = best.p;
    out->mem.arena_unbudgeted = p0->mem.arena_bytes;
    out->mem.budget = budget;
    graph_free(*lowered);
    *lowered = best.g;
  }
  if (!out) {
    graph_free(*lowered);
    *lowered = NULL;
  }
  program_free(p0);
  free(R);
  free(c);
  free(fwd);
  return out;
}

// ---------------------------------------------------------------- report

static void print_value(FILE *out, const Graph *g, int id, int64_t flops) {
  const Node *n = graph_node(g, id);
  char sh[96], b[64];
  format_bytes(b, sizeof b, memplan_value_bytes(n));
  fprintf(out, "    %-24s %-18s %12s  %s", n->name ? n->name : op_name(n->op), shape_str(&n->shape, sh, sizeof sh), b,
          op_name(n->op));
  if (flops >= 0) fprintf(out, "  %lld flop", (long long)flops);
  fputc('\n', out);
}

// FLOPs of a recomputed value's copy: its root and the copies inlined into it.
static int64_t copy_flops(const Graph *g, int id, bool top) {
  const Node *n = graph_node(g, id);
  if (!n->remat || (!top && n->remat == 2)) return 0;
  int64_t f = node_flops(g, n);
  for (int k = 0; k < n->nin; k++) f += copy_flops(g, n->in[k], false);
  return f;
}

void remat_print(FILE *out, const Program *p) {
  const Graph *g = p->g;
  char b[64], a0[64], a1[64];
  format_bytes(b, sizeof b, p->mem.budget);
  format_bytes(a0, sizeof a0, p->mem.arena_unbudgeted);
  format_bytes(a1, sizeof a1, p->mem.arena_bytes);
  fprintf(out, "memory budget: --max-memory %lld bytes (%s) for the training step's arena\n", (long long)p->mem.budget,
          b);
  fprintf(out, "  arena %lld bytes (%s) without the budget, %lld bytes (%s) with it\n",
          (long long)p->mem.arena_unbudgeted, a0, (long long)p->mem.arena_bytes, a1);
  format_bytes(b, sizeof b, fixed_bytes(p));
  fprintf(out, "  of it fixed, not reducible: %s (params, gradients, optimizer and model state, inputs, outputs)\n", b);
  bool *fwd = forward_nodes(g), *kept = kept_values(p, fwd, NULL);
  int nkept = 0, nre = 0;
  int64_t kbytes = 0, rbytes = 0, extra = 0, total = 0;
  for (int id = 0; id < g->nodes.n; id++) {
    const Node *n = graph_node(g, id);
    if (kept[id]) nkept++, kbytes += memplan_value_bytes(n);
    if (n->remat == 2 && n->op != OP_RESHAPE) nre++, rbytes += memplan_value_bytes(n);
    if (n->remat) extra += node_flops(g, n);
  }
  for (int k = 0; k < p->kernels.n; k++) total += p->kernels.v[k].flops;
  format_bytes(b, sizeof b, kbytes);
  fprintf(out, "  kept from the forward for the backward (%d values, %s):\n", nkept, b);
  for (int id = 0; id < g->nodes.n; id++)
    if (kept[id]) print_value(out, g, id, -1);
  format_bytes(b, sizeof b, rbytes);
  fprintf(out, "  recomputed in the backward (%d values, %s):\n", nre, b);
  for (int id = 0; id < g->nodes.n; id++)
    if (graph_node(g, id)->remat == 2 && graph_node(g, id)->op != OP_RESHAPE)
      print_value(out, g, id, copy_flops(g, id, true));
  fprintf(out, "  extra FLOPs per step: %lld (%.2f%% of the step's %lld)\n", (long long)extra,
          total ? 100.0 * (double)extra / (double)(total - extra) : 0.0, (long long)(total - extra));
  free(fwd);
  free(kept);
}

bool parse_size(const char *s, int64_t *out) {
  // digits, an optional fraction, an optional K, M or G (powers of 1024)
  const char *q = s;
  while (*q >= '0' && *q <= '9') q++;
  if (q == s) return false;
  if (*q == '.') {
    const char *f = ++q;
    while (*q >= '0' && *q <= '9') q++;
    if (q == f) return false;
  }
  int64_t unit = 1;
  if (*q == 'K' || *q == 'k')
    unit = INT64_C(1) << 10;
  else if (*q == 'M' || *q == 'm')
    unit = INT64_C(1) << 20;
  else if (*q == 'G' || *q == 'g')
    unit = INT64_C(1) << 30;
  if (unit > 1) q++;
  if (*q) return false;
  double v = strtod(s, NULL) * (double)unit;
  if (v < 1 || v > 9e18 || (unit == 1 && strchr(s, '.'))) return false;  // no fractions of a byte
  *out = (int64_t)v;
  return true;
}
