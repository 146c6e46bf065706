// test_simplify.c — the joint-graph cleanup: each rewrite does what it says,
// the simplified gpt_poetry graph has no duplicate subexpressions and no dead
// nodes, and simplification never changes a loss or a gradient.
#include <criterion/criterion.h>

#include "gradcheck.h"

static int named(const Graph *g, const char *name) {
  for (int i = 0; i < g->outputs.n; i++)
    if (!strcmp(g->outputs.v[i].name, name)) return g->outputs.v[i].node;
  cr_assert_fail("no output %s", name);
  return -1;
}

Test(simplify, rewrites) {
  Arena a = {0};
  Captured c;
  cap_open(&c);
  Graph *f = build_text(
      &a, &c,
      "bpc: 1\nname: r\ninputs:\n  x: {shape: [3, 4]}\n  w: {shape: [5, 4]}\n"
      "graph:\n  ls: log(softmax(x))\n  lg: log(sigmoid(x))\n  tt: transpose(transpose(x))\n"
      "  rr: reshape(reshape(x, [12]), [2, 6])\n  one: x * 1 + 0\n  mm: x @ transpose(w)\n"
      "  cf: x * (2 * 3)\n  nn: -(-x)\n  t3: transpose(transpose(reshape(x, [3, 2, 2]), [1, 2, 0]), [2, 0, 1])\n"
      "  tm: transpose(x @ transpose(w))\n  t2: transpose(mm)\n"
      "outputs: [ls, lg, tt, rr, one, mm, cf, nn, t3, tm, t2]\n",
      DT_F32);
  cr_assert(f, "%s", cap_text(&c));
  Graph *g = simplify(f, SIMP_ALL);
  const Node *ls = graph_node(g, named(g, "ls"));
  cr_expect_eq(ls->op, OP_LOG_SOFTMAX);
  const Node *lg = graph_node(g, named(g, "lg"));
  cr_expect(lg->op == OP_NEG && graph_node(g, lg->in[0])->op == OP_SOFTPLUS, "log(sigmoid) is %s", op_name(lg->op));
  cr_expect_eq(graph_node(g, named(g, "tt"))->op, OP_INPUT);
  const Node *rr = graph_node(g, named(g, "rr"));
  cr_expect(rr->op == OP_RESHAPE && graph_node(g, rr->in[0])->op == OP_INPUT);
  cr_expect_eq(graph_node(g, named(g, "one"))->op, OP_INPUT);
  const Node *mm = graph_node(g, named(g, "mm"));
  cr_expect(mm->op == OP_MATMUL && mm->attr.b[1] && graph_node(g, mm->in[1])->op == OP_INPUT);
  const Node *cf = graph_node(g, named(g, "cf"));
  cr_expect(cf->op == OP_MUL && graph_node(g, cf->in[1])->op == OP_CONST && graph_node(g, cf->in[1])->attr.f[0] == 6);
  cr_expect_eq(graph_node(g, named(g, "nn"))->op, OP_INPUT);
  const Node *t3 = graph_node(g, named(g, "t3"));
  cr_expect_eq(t3->op, OP_RESHAPE, "composed identity permutation is %s", op_name(t3->op));
  // (x @ w^T)^T = w @ x^T: one GEMM in the transposed layout; not when the product is used elsewhere
  const Node *tm = graph_node(g, named(g, "tm"));
  cr_expect(tm->op == OP_MATMUL && !tm->attr.b[0] && tm->attr.b[1] && graph_node(g, tm->in[0])->op == OP_INPUT &&
                !strcmp(graph_node(g, tm->in[0])->name, "w"),
            "transpose(x @ w^T) is %s", op_name(tm->op));
  cr_expect_eq(graph_node(g, named(g, "t2"))->op, OP_TRANSPOSE);
  graph_free(g);
  graph_free(f);
  cap_close(&c);
  arena_free(&a);
}

static Graph *gpt_joint(Arena *a, Captured *c, DType dt) {
  Model *m = model_load(a, &c->d, BPC_SOURCE_DIR "/models/gpt_poetry.yaml");
  cr_assert(m, "%s", cap_text(c));
  DimOverride ov[] = {{"B", 2}, {"T", 4}, {"C", 8}, {"NH", 2}, {"L", 2}, {"V", 7}};
  Graph *g = graph_build(m, &c->d, ov, 6, dt);
  cr_assert(g && ad_backward(g), "%s", cap_text(c));
  return g;
}

Test(simplify, gpt_poetry_has_no_duplicates_and_no_dead_nodes) {
  Arena a = {0};
  Captured c;
  cap_open(&c);
  Graph *j = gpt_joint(&a, &c, DT_F32);
  Graph *g = simplify(j, SIMP_ALL);
  cr_expect_lt(g->nodes.n, j->nodes.n);
  for (int x = 0; x < g->nodes.n; x++) {
    const Node *n = graph_node(g, x);
    if (op_info(n->op)->flags & OPF_LEAF) continue;
    for (int y = x + 1; y < g->nodes.n; y++) {
      const Node *m = graph_node(g, y);
      if (m->op != n->op || m->nin != n->nin || memcmp(m->in, n->in, sizeof(int) * (size_t)n->nin)) continue;
      bool same_attr =
          !memcmp(m->attr.f, n->attr.f, sizeof n->attr.f) && !memcmp(m->attr.i, n->attr.i, sizeof n->attr.i) &&
          m->attr.b[0] == n->attr.b[0] && m->attr.b[1] == n->attr.b[1] && m->attr.naxes == n->attr.naxes &&
          !memcmp(m->attr.axes, n->attr.axes, sizeof(int) * (size_t)(n->attr.naxes > 0 ? n->attr.naxes : 0)) &&
          shape_eq(&m->attr.shape, &n->attr.shape) && m->attr.salt == n->attr.salt;
      cr_expect_not(same_attr, "nodes %d and %d are the same %s", x, y, op_name(n->op));
    }
  }
  // Every non-leaf node is used by another node or is a result.
  bool *used = calloc((size_t)g->nodes.n, 1);
  for (int x = 0; x < g->nodes.n; x++)
    for (int k = 0; k < graph_node(g, x)->nin; k++) used[graph_node(g, x)->in[k]] = true;
  used[g->loss] = true;
  for (int i = 0; i < g->params.n; i++) used[g->params.v[i].grad] = true;
  for (int i = 0; i < g->outputs.n; i++) used[g->outputs.v[i].node] = true;
  for (int x = 0; x < g->nodes.n; x++)
    if (!(op_info(graph_node(g, x)->op)->flags & OPF_LEAF))
      cr_expect(used[x], "node %d (%s) is dead", x, op_name(graph_node(g, x)->op));
  free(used);
  graph_free(g);
  graph_free(j);
  cap_close(&c);
  arena_free(&a);
}

// The same loss and gradients before and after, for the whole model.
Test(simplify, preserves_values) {
  Arena a = {0};
  Captured c;
  cap_open(&c);
  Graph *j = gpt_joint(&a, &c, DT_F64);
  Graph *g = simplify(j, SIMP_ALL);
  Interp *ij = interp_new(j, 3, 0, true), *ig = interp_new(g, 3, 0, true);
  interp_init_params(ij, 9);
  interp_init_params(ig, 9);
  gc_fill_inputs(ij, j);
  gc_fill_inputs(ig, g);
  cr_assert(interp_run(ij) && interp_run(ig));
  cr_expect_float_eq(interp_value(ij, j->loss)->v[0], interp_value(ig, g->loss)->v[0], 1e-12);
  for (int p = 0; p < j->params.n; p++) {
    const Value *x = interp_value(ij, j->params.v[p].grad), *y = interp_value(ig, g->params.v[p].grad);
    for (int64_t i = 0; i < shape_numel(&x->shape); i++)
      cr_expect(fabs(x->v[i] - y->v[i]) <= 1e-12 * fmax(1, fabs(x->v[i])), "%s[%lld]: %.17g vs %.17g",
                j->params.v[p].name, (long long)i, x->v[i], y->v[i]);
  }
  interp_free(ij);
  interp_free(ig);
  graph_free(g);
  graph_free(j);
  cap_close(&c);
  arena_free(&a);
}
