// fuse.c — the joint graph cut into kernels (see bpcc.h). Takes a simplified
// Graph; guarantees every value a later kernel, the loss, a metric, an
// output, a gradient or a state update reads is materialized, and each kernel
// reads only values materialized by earlier kernels or leaves. Fusion here is
// elementwise trees (a producer with one consumer of the same shape is
// computed inside the consumer's loop); the heavy fused ops (softmax,
// layer_norm, cross_entropy, attention and their backward) are single nodes
// already, each one library kernel.
#include <stdlib.h>
#include <string.h>

#include "bpc_kernels.h"
#include "bpcc.h"

// Evaluated per element in a fused loop: the ops with a scalar lowering
// (lower_ew.c; cast too: an i32 operand promoted, ir.c, converts in the
// loop), constants aside (immediates in their consumers).
static bool is_ew(const Node *n) { return op_info(n->op)->be->scalar && n->op != OP_CONST; }

// Values the step's caller reads after the step: never fused away.
static bool *result_nodes(const Graph *g) {
  bool *r = xcalloc((size_t)g->nodes.n, 1);
  if (g->loss >= 0) r[g->loss] = true;
  for (int i = 0; i < g->metrics.n; i++) r[g->metrics.v[i].node] = true;
  for (int i = 0; i < g->outputs.n; i++) r[g->outputs.v[i].node] = true;
  for (int i = 0; i < g->params.n; i++)
    if (g->params.v[i].grad >= 0) r[g->params.v[i].grad] = true;
  for (int i = 0; i < g->states.n; i++)
    if (g->states.v[i].update >= 0) r[g->states.v[i].update] = true;
  for (int i = 0; i < g->params.n; i++)
    if (g->params.v[i].update >= 0) r[g->params.v[i].update] = true;
  for (int id = 0; id < g->nodes.n; id++)  // a recomputed value is stored as the forward stored it
    if (graph_node(g, id)->remat == 2) r[id] = true;
  return r;
}

// inline_into[id] = the consumer an elementwise node is computed inside, or -1.
static int *inline_targets(const Graph *g, const bool *result, bool fuse) {
  int n = g->nodes.n;
  int *uses = xcalloc((size_t)n, sizeof(int)), *consumer = xmalloc(sizeof(int) * (size_t)n);
  for (int id = 0; id < n; id++) consumer[id] = -1;
  for (int id = 0; id < n; id++) {
    const Node *nd = graph_node(g, id);
    for (int k = 0; k < nd->nin; k++) {
      uses[nd->in[k]]++;
      consumer[nd->in[k]] = id;
    }
  }
  int *into = xmalloc(sizeof(int) * (size_t)n);
  for (int id = 0; id < n; id++) {
    const Node *nd = graph_node(g, id);
    into[id] = -1;
    if (!fuse || !is_ew(nd) || result[id] || uses[id] != 1) continue;
    const Node *c = graph_node(g, consumer[id]);
    if (is_ew(c) && shape_eq(&c->shape, &nd->shape)) into[id] = consumer[id];
  }
  // A loop reads at most EW_MAX_READS values: where a tree would read more (a
  // sum of squares over every gradient, for clipping), its largest inlined
  // subtrees become loops of their own. reads[] over-counts (a value read
  // twice counts twice), which keeps the bound safe.
  int *reads = xcalloc((size_t)n, sizeof(int));
  for (int id = 0; id < n; id++) {
    const Node *nd = graph_node(g, id);
    for (;;) {
      int total = 0, big = -1;
      for (int k = 0; k < nd->nin; k++) {
        int x = nd->in[k];
        if (graph_node(g, x)->op == OP_CONST) continue;
        total += into[x] == id ? reads[x] : 1;
        if (into[x] == id && (big < 0 || reads[x] > reads[big])) big = x;
      }
      reads[id] = total;
      if (total <= EW_MAX_READS || big < 0) break;
      into[big] = -1;
    }
  }
  free(reads);
  free(uses);
  free(consumer);
  return into;
}

// The elementwise tree rooted at `id`, operands first.
static void collect_tree(const Graph *g, const int *into, int id, IntVec *nodes, IntVec *reads, const bool *mat) {
  const Node *nd = graph_node(g, id);
  for (int k = 0; k < nd->nin; k++) {
    int x = nd->in[k];
    const Node *xn = graph_node(g, x);
    if (xn->op == OP_CONST) continue;
    if (into[x] == id) {
      collect_tree(g, into, x, nodes, reads, mat);
    } else {
      BPC_ASSERT(mat[x]);
      bool seen = false;
      for (int i = 0; i < reads->n; i++) seen |= reads->v[i] == x;
      if (!seen) VEC_PUSH(*reads, x);
    }
  }
  VEC_PUSH(*nodes, id);
}

// A part of linear_cross_entropy's flattened [dh, dw, loss]: a view into it
// (an alias at an offset), not a copy.
static bool slice_view(const Graph *g, const Node *n) {
  return n->op == OP_SLICE && graph_node(g, n->in[0])->op == OP_LINEAR_CROSS_ENTROPY && n->shape.rank == 1;
}

static int64_t value_bytes(const Graph *g, int id) { return node_bytes(graph_node(g, id)); }

// Bytes a kernel reads and writes per step.
static int64_t kernel_bytes(const Graph *g, const Kernel *k) {
  int64_t bytes = 0;
  if (k->kind == KK_ALIAS && slice_view(g, graph_node(g, k->root))) return 0;  // moves nothing
  for (int i = 0; i < k->nreads; i++) bytes += value_bytes(g, k->reads[i]);
  if (k->kind != KK_ALIAS) bytes += value_bytes(g, k->root);
  for (int i = 0; i < k->nouts; i++) bytes += value_bytes(g, k->outs[i]);
  return bytes;
}

static void add_kernel(Program *p, Kernel k) {
  const Graph *g = p->g;
  // Writebacks of optimizer slots and params belong to the update; those of
  // model state (batch_norm's running stats) to the step, as PyTorch updates
  // them in every forward: once per micro-batch under grad_accum.
  if (k.kind == KK_STATE) k.phase = k.state >= 0 && !g->states.v[k.state].opt ? 0 : 1;
  k.bytes = kernel_bytes(g, &k);
  k.flops = k.mm >= 0 ? node_flops(g, graph_node(g, k.mm)) : 0;
  for (int i = 0; i < k.nnodes; i++) k.flops += node_flops(g, graph_node(g, k.nodes[i]));
  VEC_PUSH(p->kernels, k);
}

static bool has(const int *v, int n, int x) {
  for (int i = 0; i < n; i++)
    if (v[i] == x) return true;
  return false;
}

// Can x, read by a loop over shape os, be addressed as [rows, N] (its
// leading axes contiguous or broadcast), as a GEMM epilogue walks it?
static bool rows_addressable(const Graph *g, int x, const Shape *os) {
  int64_t st[BPC_MAX_RANK];
  shape_bcast_strides(&graph_node(g, x)->shape, os, st);
  for (int i = 0; i + 2 < os->rank; i++)  // leading axes fold into one row index
    if (st[i] != st[i + 1] * os->d[i + 1]) return false;
  return true;
}

// Can loop b (the next kernel) absorb loop a, one loop computing and storing
// both? Same iteration space (root shape and dtype), no GEMM under b (under
// a, b joins its epilogue if b's operands can be walked by rows), same
// phase, and a reason: b reads a's value (Adam's p update reads the new m
// and v) or they share an operand (m and v both read the gradient).
static bool can_merge(const Graph *g, const Kernel *a, const Kernel *b) {
  if (a->kind != KK_EW || b->kind != KK_EW || b->mm >= 0 || a->phase != b->phase || a->nouts + 1 >= EW_MAX_READS)
    return false;
  const Node *ra = graph_node(g, a->root), *rb = graph_node(g, b->root);
  if (!shape_eq(&ra->shape, &rb->shape) || ra->dtype != rb->dtype) return false;
  for (int i = 0; a->mm >= 0 && i < b->nreads; i++)  // b joins a's GEMM epilogue: on its rows
    if (!rows_addressable(g, b->reads[i], &rb->shape)) return false;
  bool related = false;
  int nreads = a->nreads;
  for (int i = 0; i < b->nreads; i++) {
    int x = b->reads[i];
    bool from_a = x == a->root || has(a->outs, a->nouts, x);
    // a shared operand relates them when it is walked like the loop (m and v both read the
    // gradient), not a scalar every update reads (lr, the clip coefficient)
    related |= from_a || (has(a->reads, a->nreads, x) && shape_eq(&graph_node(g, x)->shape, &rb->shape));
    nreads += !from_a && !has(a->reads, a->nreads, x);
  }
  return related && nreads <= EW_MAX_READS;
}

// One kernel for a and b (a first): a's values become outputs computed in
// the loop, no longer read from memory.
static Kernel merge(const Graph *g, Kernel *a, Kernel *b) {
  Kernel m = *b;
  m.mm = a->mm;  // b joins a's GEMM epilogue, if a has one
  m.nouts = a->nouts + 1;
  m.outs = xmalloc(sizeof(int) * (size_t)m.nouts);
  for (int i = 0; i < a->nouts; i++) m.outs[i] = a->outs[i];
  m.outs[a->nouts] = a->root;
  m.nnodes = a->nnodes + b->nnodes;
  m.nodes = xmalloc(sizeof(int) * (size_t)m.nnodes);
  memcpy(m.nodes, a->nodes, sizeof(int) * (size_t)a->nnodes);
  memcpy(m.nodes + a->nnodes, b->nodes, sizeof(int) * (size_t)b->nnodes);
  m.reads = xmalloc(sizeof(int) * (size_t)(a->nreads + b->nreads + 1));
  m.nreads = 0;
  for (int i = 0; i < a->nreads; i++) m.reads[m.nreads++] = a->reads[i];
  for (int i = 0; i < b->nreads; i++) {
    int x = b->reads[i];
    if (x != a->root && !has(a->outs, a->nouts, x) && !has(m.reads, m.nreads, x)) m.reads[m.nreads++] = x;
  }
  m.flops = a->flops + b->flops;
  m.bytes = kernel_bytes(g, &m);
  free(a->outs), free(a->nodes), free(a->reads);
  free(b->outs), free(b->nodes), free(b->reads);
  return m;
}

static bool conflict(const Program *p, const Kernel *a, const Kernel *b);

// Related loops of one shape become one loop with several outputs: Adam's
// m, v and param updates are one pass over each param instead of three (the
// gradient, m and v read once, not twice). A loop merges into a later one up
// to MERGE_WINDOW kernels back (MERGE_WINDOW - 1 in between) when it can run
// after those (no conflict): the merged loop takes the later one's place.
#define MERGE_WINDOW 4
static void merge_siblings(Program *p) {
  int n = 0;
  for (int k = 0; k < p->kernels.n; k++) {
    Kernel kb = p->kernels.v[k];
    int a = -1;
    for (int i = n - 1; i >= 0 && i >= n - MERGE_WINDOW && a < 0; i--) {
      if (!can_merge(p->g, &p->kernels.v[i], &kb)) continue;
      bool free_path = true;
      for (int j = i + 1; j < n && free_path; j++) free_path = !conflict(p, &p->kernels.v[i], &p->kernels.v[j]);
      if (free_path) a = i;
    }
    if (a < 0) {
      p->kernels.v[n++] = kb;
      continue;
    }
    Kernel m = merge(p->g, &p->kernels.v[a], &kb);
    memmove(&p->kernels.v[a], &p->kernels.v[a + 1], sizeof(Kernel) * (size_t)(n - a - 1));
    p->kernels.v[n - 1] = m;
  }
  p->kernels.n = n;
}

// A merged loop stores a sibling's value only when something else needs
// it: a later kernel, the step's caller, or the GEMM under the loop (which
// writes there first). The clipped gradient g * coef, used by Adam's m and
// v, stays in registers.
static void drop_unneeded_outs(Program *p, const bool *result) {
  const Graph *g = p->g;
  int *readers = xcalloc((size_t)(g->nodes.n ? g->nodes.n : 1), sizeof(int));
  for (int k = 0; k < p->kernels.n; k++)
    for (int r = 0; r < p->kernels.v[k].nreads; r++) readers[p->kernels.v[k].reads[r]]++;
  for (int k = 0; k < p->kernels.n; k++) {
    Kernel *kr = &p->kernels.v[k];
    int n = 0;
    for (int o = 0; o < kr->nouts; o++) {
      int x = kr->outs[o];
      if (result[x] || readers[x] || (kr->mm >= 0 && p->alias[kr->mm] == x))
        kr->outs[n++] = x;
      else
        p->materialized[x] = false;
    }
    if (n != kr->nouts) {
      kr->nouts = n;
      kr->bytes = kernel_bytes(g, kr);
    }
  }
  free(readers);
}

// Can loop root e (whose tree holds the only consumer of matmul m) run as
// m's epilogue on m's rows? Needs one GEMM (no batch loop) and e of m's
// shape and dtype; program_new checks that the tree's other leaves are
// addressable as [rows, N].
static bool epilogue_ok(const Graph *g, const Node *m, const Node *e) {
  int64_t M, N, K, batch;
  matmul_dims(g, m, &M, &N, &K, &batch);
  return batch == 1 && shape_eq(&m->shape, &e->shape) && m->dtype == e->dtype;
}

// A leaf whose new value (a state or param update) an elementwise kernel
// computes, with no later kernel reading the old value, is updated in place:
// the kernel writes the leaf's storage and no copy kernel is needed.
static bool update_in_place(Program *p, int leaf, int upd, bool *copied) {
  int nk = p->kernels.n, kupd = -1;
  for (int k = 0; k < nk; k++) {
    const Kernel *kr = &p->kernels.v[k];
    if ((kr->root == upd || has(kr->outs, kr->nouts, upd)) && kr->kind == KK_EW && kr->mm < 0) kupd = k;
  }
  if (kupd < 0 || p->alias[upd] != upd) return false;
  for (int k = kupd + 1; k < nk; k++)
    for (int r = 0; r < p->kernels.v[k].nreads; r++)
      if (p->alias[p->kernels.v[k].reads[r]] == leaf) return false;
  // The update must not be shared with another leaf's update.
  if (copied[upd]) return false;
  copied[upd] = true;
  p->alias[upd] = leaf;
  return true;
}

static void add_writeback(Program *p, int leaf, int upd, int state, bool *copied) {
  if (upd < 0 || update_in_place(p, leaf, upd, copied)) return;
  Kernel k = {.kind = KK_STATE, .root = upd, .state = state, .mm = -1};
  k.reads = xmalloc(sizeof(int));
  k.reads[0] = upd;
  k.nreads = 1;
  k.nodes = xmalloc(sizeof(int));
  k.nodes[0] = leaf;  // the destination
  k.nnodes = 1;
  add_kernel(p, k);
}

void kernel_tree_print(FILE *f, const Graph *g, const Kernel *k, const int *reads, int nreads) {
  for (int o = 0; o < k->nouts; o++)  // which tree nodes the extra outputs are
    for (int u = 0; u < k->nnodes; u++)
      if (k->nodes[u] == k->outs[o]) fprintf(f, "o%d,", u);
  for (int t = 0; t < k->nnodes; t++) {
    const Node *n = graph_node(g, k->nodes[t]);
    fprintf(f, "|%d/%d/%a/%a/%d(", n->op, n->dtype, n->attr.f[0], n->attr.f[1], n->attr.b[0]);
    for (int x = 0; x < n->nin; x++) {
      int id = n->in[x], slot = -1;
      const Node *xn = graph_node(g, id);
      for (int i = 0; i < nreads; i++) slot = reads[i] == id ? i : slot;
      if (xn->op == OP_CONST)
        fprintf(f, "c%a/%d,", xn->attr.f[0], xn->dtype);
      else if (slot >= 0)
        fprintf(f, "r%d,", slot);
      else
        for (int u = 0; u < t; u++)
          if (k->nodes[u] == id) fprintf(f, "n%d,", u);
    }
    fputc(')', f);
  }
}

// The structure of loop k with its sizes left out (two loops with one key
// share one flat body), or NULL when k is not an update loop that can join
// a group: an optimizer-phase elementwise loop without a GEMM, whose every
// stored value updates a param or slot in place, and whose every read is
// either of the root's shape or a scalar.
static char *update_key(const Program *p, const Kernel *k) {
  const Graph *g = p->g;
  if (k->kind != KK_EW || k->mm >= 0 || k->phase != 1) return NULL;
  const Node *root = graph_node(g, k->root);
  for (int o = 0; o <= k->nouts; o++) {
    int v = o < k->nouts ? k->outs[o] : k->root;
    const Node *vn = graph_node(g, v);
    if (p->alias[v] == v || !(op_info(graph_node(g, p->alias[v])->op)->flags & OPF_LEAF) ||
        !shape_eq(&vn->shape, &root->shape) || vn->dtype != root->dtype)
      return NULL;
  }
  for (int i = 0; i < k->nreads; i++) {
    const Node *rn = graph_node(g, k->reads[i]);
    if (rn->shape.rank != 0 && !shape_eq(&rn->shape, &root->shape)) return NULL;
  }
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  fprintf(f, "%d/%d:", root->dtype, k->nouts);
  for (int i = 0; i < k->nreads; i++) {  // dtype, scalar or not, the output stored over it
    const Node *rn = graph_node(g, k->reads[i]);
    int over = -1;
    for (int o = 0; o <= k->nouts; o++)
      if (p->alias[o < k->nouts ? k->outs[o] : k->root] == p->alias[k->reads[i]]) over = o;
    fprintf(f, "|r%d/%d/%d", rn->dtype, rn->shape.rank == 0 && root->shape.rank != 0, over);
  }
  kernel_tree_print(f, g, k, k->reads, k->nreads);
  fclose(f);
  return buf;
}

// Would running b before a (a comes first) change anything? Yes when one
// stores into storage the other reads or stores. Before the memory plan,
// storage is the alias: distinct non-leaf values get distinct space.
static bool conflict(const Program *p, const Kernel *a, const Kernel *b) {
  const Kernel *ks[2] = {a, b};
  for (int w = 0; w < 2; w++) {
    const Kernel *x = ks[w], *y = ks[1 - w];
    if (x->kind == KK_ALIAS) continue;
    for (int o = 0; o <= x->nouts; o++) {
      int s = p->alias[o < x->nouts ? x->outs[o] : x->root];
      if (x->kind == KK_STATE) s = p->alias[x->nodes[0]];  // a copy into the state leaf
      for (int r = 0; r < y->nreads; r++)
        if (p->alias[y->reads[r]] == s) return true;
      for (int o2 = 0; y->kind != KK_ALIAS && o2 <= y->nouts; o2++)
        if (p->alias[o2 < y->nouts ? y->outs[o2] : y->root] == s) return true;
    }
  }
  return false;
}

// The optimizer as one pass over all params, as torch's fused/foreach Adam:
// update loops of one structure (every matrix under AdamW; every bias and
// gain) move to the end of the update, side by side, and become a group
// that codegen runs as one parallel loop over the concatenation of their
// elements. A loop moves only past kernels it does not conflict with.
static void group_updates(Program *p) {
  int n = p->kernels.n;
  char **key = xcalloc((size_t)(n ? n : 1), sizeof(char *));
  bool *moved = xcalloc((size_t)(n ? n : 1), 1);
  for (int i = 0; i < n; i++) {
    key[i] = update_key(p, &p->kernels.v[i]);
    moved[i] = key[i] != NULL;
    for (int j = i + 1; j < n && moved[i]; j++) moved[i] = !conflict(p, &p->kernels.v[i], &p->kernels.v[j]);
  }
  Kernel *out = xmalloc(sizeof(Kernel) * (size_t)(n ? n : 1));
  int m = 0;
  for (int i = 0; i < n; i++)
    if (!moved[i]) out[m++] = p->kernels.v[i];
  for (int i = 0; i < n; i++) {  // the moved loops, one key after another, in order
    if (!moved[i]) continue;
    int first = m;
    for (int j = i; j < n; j++)
      if (moved[j] && !strcmp(key[j], key[i])) {
        out[m] = p->kernels.v[j];
        out[m].group = m == first ? 0 : -1;
        m++;
        if (j > i) moved[j] = false;
      }
    out[first].group = m - first - 1;
  }
  BPC_ASSERT(m == n);
  memcpy(p->kernels.v, out, sizeof(Kernel) * (size_t)n);
  for (int i = 0; i < n; i++) free(key[i]);
  free(key);
  free(moved);
  free(out);
}

Program *program_new(const Graph *g, bool fuse, bool training) {
  Program *p = xcalloc(1, sizeof(Program));
  p->g = g;
  p->training = training;
  int n = g->nodes.n;
  p->materialized = xcalloc((size_t)n, 1);
  p->alias = xmalloc(sizeof(int) * (size_t)n);
  p->alias_off = xcalloc((size_t)n, sizeof(int64_t));
  bool *result = result_nodes(g);
  int *into = inline_targets(g, result, fuse);
  // epi[e] = the matmul whose epilogue elementwise kernel e is.
  int *epi = xmalloc(sizeof(int) * (size_t)(n ? n : 1)), *uses = xcalloc((size_t)(n ? n : 1), sizeof(int));
  for (int id = 0; id < n; id++) {
    epi[id] = -1;
    for (int k = 0; k < graph_node(g, id)->nin; k++) uses[graph_node(g, id)->in[k]]++;
  }
  // The matmul may feed any node of the loop's tree (relu(x @ w + b): the
  // add is inlined into the relu), not only its root; every leaf the tree
  // reads must then be addressable by rows.
  int *tree = xmalloc(sizeof(int) * (size_t)(n ? n : 1));
  for (int id = 0; fuse && id < n; id++) {
    const Node *nd = graph_node(g, id);
    if (!is_ew(nd) || into[id] >= 0) continue;
    int nt = 0;
    tree[nt++] = id;
    for (int t = 0; t < nt; t++)  // into[] points forward: a node's inlined producers have smaller ids
      for (int k = 0; k < graph_node(g, tree[t])->nin; k++) {
        int x = graph_node(g, tree[t])->in[k];
        if (into[x] == tree[t]) tree[nt++] = x;
      }
    int cand = -1;
    bool rows_ok = true;
    for (int t = 0; t < nt; t++) {
      const Node *tn = graph_node(g, tree[t]);
      for (int k = 0; k < tn->nin; k++) {
        int x = tn->in[k];
        if (into[x] == tree[t]) continue;
        const Node *m = graph_node(g, x);
        if (cand < 0 && m->op == OP_MATMUL && uses[x] == 1 && !result[x] && epilogue_ok(g, m, nd))
          cand = x;
        else if (!rows_addressable(g, x, &nd->shape))
          rows_ok = false;
      }
    }
    if (cand >= 0 && rows_ok) epi[id] = cand;
  }
  free(tree);
  bool *is_epi_mm = xcalloc((size_t)(n ? n : 1), 1);
  for (int id = 0; id < n; id++)
    if (epi[id] >= 0) is_epi_mm[epi[id]] = true;
  // A constant is an immediate inside loops; a call kernel needs it stored.
  for (int id = 0; id < n; id++) {
    const Node *nd = graph_node(g, id);
    if (is_ew(nd) || nd->op == OP_CONST) continue;
    for (int k = 0; k < nd->nin; k++)
      if (graph_node(g, nd->in[k])->op == OP_CONST) result[nd->in[k]] = true;
  }
  for (int id = 0; id < n; id++) {
    const Node *nd = graph_node(g, id);
    p->alias[id] = id;
    if (op_info(nd->op)->flags & OPF_LEAF) {
      p->materialized[id] = true;
      continue;
    }
    if (nd->op == OP_CONST && !result[id]) continue;  // an immediate in its consumers
    if (into[id] >= 0) continue;                    // computed inside its consumer
    p->materialized[id] = true;
    if (is_epi_mm[id]) continue;  // written by its epilogue's kernel, into that kernel's output
    Kernel k = {.root = id, .state = -1, .mm = epi[id], .phase = nd->phase};
    if (epi[id] >= 0) p->alias[epi[id]] = id;
    IntVec nodes = {0}, reads = {0};
    if (op_info(nd->op)->be == &be_view || slice_view(g, nd)) {
      k.kind = KK_ALIAS;
      p->alias[id] = p->alias[nd->in[0]];
      p->alias_off[id] = p->alias_off[nd->in[0]] + (nd->op == OP_SLICE ? nd->attr.i[0] * dtype_bytes(nd->dtype) : 0);
      VEC_PUSH(nodes, id);
      VEC_PUSH(reads, nd->in[0]);
    } else if (is_ew(nd) || nd->op == OP_CONST) {
      k.kind = KK_EW;
      collect_tree(g, into, id, &nodes, &reads, p->materialized);
      for (int i = 0; k.mm >= 0 && i < 2; i++) {  // the epilogue's matmul reads its operands here
        int x = graph_node(g, k.mm)->in[i];
        bool seen = false;
        for (int j = 0; j < reads.n; j++) seen |= reads.v[j] == x;
        if (!seen) VEC_PUSH(reads, x);
      }
    } else {
      k.kind = KK_CALL;
      VEC_PUSH(nodes, id);
      for (int i = 0; i < nd->nin; i++) {
        int x = nd->in[i];
        bool seen = false;
        for (int j = 0; j < reads.n; j++) seen |= reads.v[j] == x;
        if (!seen) VEC_PUSH(reads, x);
      }
    }
    k.nodes = nodes.v, k.nnodes = nodes.n, k.reads = reads.v, k.nreads = reads.n;
    // base + scatter of a tied embedding's gradient: the GEMM computing the
    // base writes straight into the result (fixed storage, never reused), and
    // the scatter adds onto it in place: no V x C temporary, no copy.
    int base = nd->op == OP_EMBEDDING_GRAD_ADD ? nd->in[2] : -1;
    if (base >= 0 && result[id] && !result[base] && uses[base] == 1 && p->alias[base] == base &&
        graph_node(g, base)->op == OP_MATMUL && !is_epi_mm[base])
      p->alias[base] = id;
    add_kernel(p, k);
  }
  if (fuse) {
    merge_siblings(p);
    drop_unneeded_outs(p, result);
  }
  for (int ki = 0; ki < p->kernels.n; ki++)
    for (int i = 0; i < p->kernels.v[ki].nreads; i++) BPC_ASSERT(p->materialized[p->kernels.v[ki].reads[i]]);
  bool *copied = xcalloc((size_t)(n ? n : 1), 1);
  for (int i = 0; i < g->states.n; i++) add_writeback(p, g->states.v[i].node, g->states.v[i].update, i, copied);
  for (int i = 0; i < g->params.n; i++) add_writeback(p, g->params.v[i].node, g->params.v[i].update, -1, copied);
  free(copied);
  if (fuse) group_updates(p);
  free(into);
  free(result);
  free(epi);
  free(uses);
  free(is_epi_mm);
  return p;
}

void program_free(Program *p) {
  if (!p) return;
  for (int i = 0; i < p->kernels.n; i++) {
    free(p->kernels.v[i].nodes);
    free(p->kernels.v[i].reads);
    free(p->kernels.v[i].outs);
  }
  free(p->kernels.v);
  free(p->materialized);
  free(p->alias);
  free(p->alias_off);
  free(p->mem.offset);
  free(p->mem.temp_offset);
  free(p);
}

static const char *kind_name(KernelKind k) {
  return k == KK_EW ? "loop" : k == KK_CALL ? "call" : k == KK_ALIAS ? "alias" : "state";
}

// A kernel's description: `head` (kind, value, shape, padded to columns),
// `ops` (the fused ops) and `extra` (what else it stores, its group).
static void kernel_parts(const Program *p, int i, char *head, size_t hlen, char *ops, size_t olen, char *extra,
                         size_t elen) {
  const Graph *g = p->g;
  const Kernel *k = &p->kernels.v[i];
  const Node *root = graph_node(g, k->root);
  char sh[96];
  snprintf(head, hlen, "%-5s %-22s %-18s ", kind_name(k->kind), root->name ? root->name : op_name(root->op),
           shape_str(&root->shape, sh, sizeof sh));
  size_t n = 0;
  ops[0] = extra[0] = 0;
  if (k->mm >= 0) n += (size_t)snprintf(ops + n, n < olen ? olen - n : 0, "matmul+");
  for (int j = 0; j < k->nnodes && n < olen; j++)
    n += (size_t)snprintf(ops + n, olen - n, "%s%s", j ? "+" : "", op_name(graph_node(g, k->nodes[j])->op));
  n = 0;
  for (int j = 0; j < k->nouts && n < elen; j++) {
    const Node *o = graph_node(g, k->outs[j]);
    n +=
        (size_t)snprintf(extra + n, elen - n, "%s%s", j ? ", " : "  (also stores ", o->name ? o->name : op_name(o->op));
  }
  if (k->nouts && n < elen) n += (size_t)snprintf(extra + n, elen - n, ")");
  if (k->group > 0 && n < elen)
    n += (size_t)snprintf(extra + n, elen - n, "  [one pass with k%d-k%d]", i + 1, i + k->group);
  if (root->remat && n < elen) snprintf(extra + n, elen - n, "  [recomputed]");
}

void kernel_text(const Program *p, int i, char *buf, size_t len, bool with_name) {
  char head[160], ops[1024], extra[1024];
  kernel_parts(p, i, head, sizeof head, ops, sizeof ops, extra, sizeof extra);
  if (with_name) {
    snprintf(buf, len, "%s%s%s", head, ops, extra);
  } else {  // what kernels of one kind share: no names, no group
    char sh[96];
    const Kernel *k = &p->kernels.v[i];
    snprintf(buf, len, "%s %s %s%s", kind_name(k->kind), shape_str(&graph_node(p->g, k->root)->shape, sh, sizeof sh),
             ops, k->nouts ? " (more outputs)" : "");
  }
}

void program_print(FILE *out, const Program *p) {
  int64_t flops = 0, bytes = 0;
  fprintf(out, "kernels (%d):\n", p->kernels.n);
  char head[160], ops[1024], extra[1024];
  for (int i = 0; i < p->kernels.n; i++) {
    const Kernel *k = &p->kernels.v[i];
    kernel_parts(p, i, head, sizeof head, ops, sizeof ops, extra, sizeof extra);
    fprintf(out, "  k%-4d %s%10lld flop %10lld B  %s%s\n", i, head, (long long)k->flops, (long long)k->bytes, ops,
            extra);
    flops += k->flops;
    bytes += k->bytes;
  }
  fprintf(out, "  total: %lld FLOPs, %lld bytes moved per step\n", (long long)flops, (long long)bytes);
}

// The kernel's temporary (its op's Backend.temp, lower_<family>.c).
int64_t kernel_temp_bytes(const Program *p, const Kernel *k) {
  if (k->kind != KK_CALL) return 0;
  const Node *n = graph_node(p->g, k->root);
  const Backend *be = op_info(n->op)->be;
  return be->temp ? be->temp(p, n) : 0;
}

void matmul_dims(const Graph *g, const Node *n, int64_t *M, int64_t *N, int64_t *K, int64_t *batch) {
  const Shape *as = &graph_node(g, n->in[0])->shape, *bs = &graph_node(g, n->in[1])->shape, *os = &n->shape;
  *M = os->d[os->rank - 2];
  *N = os->d[os->rank - 1];
  *K = n->attr.b[0] ? as->d[as->rank - 2] : as->d[as->rank - 1];
  *batch = shape_numel(os) / (*M * *N);
  // A batch of A against one shared B (x @ w) is a single tall GEMM.
  if (*batch > 1 && bs->rank == 2 && !n->attr.b[0] && shape_numel(as) == *batch * *M * *K) *M *= *batch, *batch = 1;
}
