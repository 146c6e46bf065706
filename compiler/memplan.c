// memplan.c — one arena for the whole step. Layout: params, state, inputs
// (the step's interface, persistent), then gradients, loss, metrics, outputs
// and state updates (read after the step), then activations and temporaries
// placed by liveness over the kernel order (first fit, freed blocks
// coalesced), then three status words, then per-thread scratch. An
// elementwise kernel writes in place over an operand of its shape and dtype
// whose last reader it is. Guarantees: two stored values whose lifetimes
// overlap never overlap in memory (tests check it).
#include <stdlib.h>
#include <string.h>

#include "bpc_kernels.h"
#include "bpcc.h"

#define ALIGN 64

static int64_t align_up(int64_t x) { return (x + ALIGN - 1) / ALIGN * ALIGN; }

int64_t memplan_value_bytes(const Node *n) { return align_up(node_bytes(n)); }

typedef struct Block {
  int64_t off, size;
} Block;

typedef struct FreeList {
  Block *v;
  int n, cap;
  int64_t top;   // end of the region in use now
  int64_t peak;  // the largest top ever: the region's size
} FreeList;

static int64_t fl_alloc(FreeList *f, int64_t size) {
  for (int i = 0; i < f->n; i++) {
    if (f->v[i].size < size) continue;
    int64_t off = f->v[i].off;
    f->v[i].off += size;
    f->v[i].size -= size;
    if (f->v[i].size == 0) memmove(&f->v[i], &f->v[i + 1], sizeof(Block) * (size_t)(--f->n - i));
    return off;
  }
  int64_t off = f->top;
  f->top += size;
  if (f->top > f->peak) f->peak = f->top;
  return off;
}

static void fl_free(FreeList *f, int64_t off, int64_t size) {
  int i = 0;
  while (i < f->n && f->v[i].off < off) i++;
  VEC_PUSH(*f, ((Block){0, 0}));
  memmove(&f->v[i + 1], &f->v[i], sizeof(Block) * (size_t)(f->n - 1 - i));
  f->v[i] = (Block){off, size};
  if (i + 1 < f->n && f->v[i].off + f->v[i].size == f->v[i + 1].off) {  // merge right
    f->v[i].size += f->v[i + 1].size;
    memmove(&f->v[i + 1], &f->v[i + 2], sizeof(Block) * (size_t)(f->n - i - 2));
    f->n--;
  }
  if (i > 0 && f->v[i - 1].off + f->v[i - 1].size == f->v[i].off) {  // merge left
    f->v[i - 1].size += f->v[i].size;
    memmove(&f->v[i], &f->v[i + 1], sizeof(Block) * (size_t)(f->n - i - 1));
    f->n--;
  }
  if (f->n && f->v[f->n - 1].off + f->v[f->n - 1].size == f->top) {  // give back the tail
    f->top = f->v[f->n - 1].off;
    f->n--;
  }
}

// Per-thread scratch a call kernel needs, in bytes (its op's Backend.scratch).
static int64_t scratch_bytes(const Graph *g, const Node *n) {
  const Backend *be = op_info(n->op)->be;
  return align_up(be->scratch ? be->scratch(g, n) : 0);
}

static bool is_result(const Graph *g, int id, MemCat *cat) {
  for (int i = 0; i < g->params.n; i++)
    if (g->params.v[i].grad == id) return *cat = MEM_GRAD, true;
  if (g->loss == id) return *cat = MEM_OUTPUT, true;
  for (int i = 0; i < g->metrics.n; i++)
    if (g->metrics.v[i].node == id) return *cat = MEM_OUTPUT, true;
  for (int i = 0; i < g->outputs.n; i++)
    if (g->outputs.v[i].node == id) return *cat = MEM_OUTPUT, true;
  for (int i = 0; i < g->states.n; i++)
    if (g->states.v[i].update == id) return *cat = MEM_OUTPUT, true;
  for (int i = 0; i < g->params.n; i++)
    if (g->params.v[i].update == id) return *cat = MEM_OUTPUT, true;
  return false;
}

// Storage for `out`, a value kernel k stores: over an operand that dies
// here when the shapes allow, else fresh from the free list.
static void place(Program *p, const Kernel *kr, int k, int out, int *last, const bool *fixed, FreeList *fl,
                  int64_t base) {
  const Graph *g = p->g;
  if (p->mem.offset[p->alias[out]] >= 0) return;
  const Node *on = graph_node(g, out);
  int reuse = -1;
  if (kr->kind == KK_EW && kr->mm < 0)  // in place over a dying operand (not under a GEMM: it writes first)
    for (int r = 0; r < kr->nreads && reuse < 0; r++) {
      int s = p->alias[kr->reads[r]];
      const Node *sn = graph_node(g, s), *rn = graph_node(g, kr->reads[r]);
      if (!fixed[s] && last[s] == k && p->mem.offset[s] >= base && shape_eq(&rn->shape, &on->shape) &&
          sn->dtype == on->dtype && memplan_value_bytes(sn) == memplan_value_bytes(on))
        reuse = s;
    }
  if (reuse >= 0) {
    p->mem.offset[out] = p->mem.offset[reuse];
    last[reuse] = -2;  // handed over: not freed below
  } else {
    p->mem.offset[out] = base + fl_alloc(fl, memplan_value_bytes(on));
  }
  if (last[out] < 0 && last[out] != -2) last[out] = k;  // never read: free right away
}

void memplan_assign(Program *p) {
  const Graph *g = p->g;
  int n = g->nodes.n;
  p->mem.offset = xmalloc(sizeof(int64_t) * (size_t)(n ? n : 1));
  for (int i = 0; i < n; i++) p->mem.offset[i] = -1;
  memset(p->mem.cat_bytes, 0, sizeof p->mem.cat_bytes);
  int64_t top = 0;
  // 1. The interface: params, state, inputs.
  for (int id = 0; id < n; id++) {
    const Node *nd = graph_node(g, id);
    if (!(op_info(nd->op)->flags & OPF_LEAF)) continue;
    MemCat cat = nd->op == OP_PARAM ? MEM_PARAM : nd->op == OP_STATE ? MEM_STATE : MEM_INPUT;
    p->mem.offset[id] = top;
    top += memplan_value_bytes(nd);
    p->mem.cat_bytes[cat] += memplan_value_bytes(nd);
  }
  // 2. Results, alive through the end of the step.
  bool *fixed = xcalloc((size_t)n, 1);
  for (int id = 0; id < n; id++) {
    MemCat cat;
    int s = p->alias[id];
    if (!p->materialized[id] || !is_result(g, id, &cat) || p->mem.offset[s] >= 0) continue;
    p->mem.offset[s] = top;
    fixed[s] = true;
    top += memplan_value_bytes(graph_node(g, s));
    p->mem.cat_bytes[cat] += memplan_value_bytes(graph_node(g, s));
  }
  // 3. Activations by liveness: last[s] = the last kernel reading storage s.
  int nk = p->kernels.n;
  int *last = xmalloc(sizeof(int) * (size_t)(n ? n : 1));
  for (int i = 0; i < n; i++) last[i] = -1;
  for (int k = 0; k < nk; k++)
    for (int r = 0; r < p->kernels.v[k].nreads; r++) last[p->alias[p->kernels.v[k].reads[r]]] = k;
  FreeList fl = {.top = 0};
  int64_t base = top;
  p->mem.temp_offset = xmalloc(sizeof(int64_t) * (size_t)(nk ? nk : 1));
  for (int k = 0; k < nk; k++) {
    const Kernel *kr = &p->kernels.v[k];
    int64_t tb = align_up(kernel_temp_bytes(p, kr));
    p->mem.temp_offset[k] = tb ? base + fl_alloc(&fl, tb) : -1;
    if (kr->kind == KK_STATE || kr->kind == KK_ALIAS) goto release;
    for (int o = 0; o <= kr->nouts; o++)  // each value the kernel stores, the root last
      place(p, kr, k, o < kr->nouts ? kr->outs[o] : kr->root, last, fixed, &fl, base);
  release:
    for (int r = 0; r < kr->nreads; r++) {
      int s = p->alias[kr->reads[r]];
      if (last[s] == k && !fixed[s] && p->mem.offset[s] >= base) {
        fl_free(&fl, p->mem.offset[s] - base, memplan_value_bytes(graph_node(g, s)));
        last[s] = -3;
      }
    }
    if (tb) fl_free(&fl, p->mem.temp_offset[k] - base, tb);
    for (int o = 0; kr->kind != KK_STATE && kr->kind != KK_ALIAS && o <= kr->nouts; o++) {
      int out = o < kr->nouts ? kr->outs[o] : kr->root;
      if (last[out] == k && p->mem.offset[out] >= base) {
        fl_free(&fl, p->mem.offset[out] - base, memplan_value_bytes(graph_node(g, out)));
        last[out] = -3;
      }
    }
  }
  p->mem.cat_bytes[MEM_ACT] = fl.peak;
  top = base + fl.peak;
  for (int id = 0; id < n; id++)
    if (p->materialized[id] && p->alias[id] != id) p->mem.offset[id] = p->mem.offset[p->alias[id]] + p->alias_off[id];
  p->mem.status_offset = top;
  top += ALIGN;
  p->mem.arena_bytes = top;
  p->mem.scratch_per_thread = 0;
  p->mem.naive_bytes = 0;
  for (int k = 0; k < nk; k++) {
    const Kernel *kr = &p->kernels.v[k];
    // A call kernel's library routine, or the GEMM under an epilogue.
    int node = kr->kind == KK_CALL ? kr->root : kr->kind == KK_EW ? kr->mm : -1;
    if (node >= 0) {
      int64_t s = scratch_bytes(g, graph_node(g, node));
      if (s > p->mem.scratch_per_thread) p->mem.scratch_per_thread = s;
    }
  }
  for (int id = 0; id < n; id++)
    if (p->materialized[id] && p->alias[id] == id) p->mem.naive_bytes += memplan_value_bytes(graph_node(g, id));
  free(fl.v);
  free(last);
  free(fixed);
}

void memplan_print(FILE *out, const Program *p) {
  static const char *names[MEM_NCAT] = {
      "params", "gradients", "inputs", "state", "loss, metrics, outputs", "activations + temporaries (peak)"};
  char buf[64];
  fputs("memory plan:\n", out);
  for (int c = 0; c < MEM_NCAT; c++) {
    format_bytes(buf, sizeof buf, p->mem.cat_bytes[c]);
    fprintf(out, "  %-34s %12s\n", names[c], buf);
  }
  format_bytes(buf, sizeof buf, p->mem.scratch_per_thread);
  fprintf(out, "  %-34s %12s\n", "scratch per thread", buf);
  format_bytes(buf, sizeof buf, p->mem.arena_bytes);
  fprintf(out, "  %-34s %12s", "arena (without scratch)", buf);
  format_bytes(buf, sizeof buf, p->mem.naive_bytes);
  fprintf(out, "   vs every value kept alive: %s (%.2fx)\n", buf,
          p->mem.arena_bytes ? (double)p->mem.naive_bytes / (double)p->mem.arena_bytes : 0.0);
}
