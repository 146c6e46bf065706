// test_grad.c — the graph test suite for gradients. (a) Every differentiable
// op of the registry, in f64, against central finite differences on random
// params of several shapes, with broadcasting and negative axes: the suite
// iterates the registry, so an op without a case here fails the suite.
// (b) Every model in models/ (small dims via overrides). (c) A second
// derivative: a Hessian-vector product of an MLP against finite differences
// of its gradient. (d) A differentiable path through an op without a rule is
// an error naming the op and its line.
#include <criterion/criterion.h>
#include <dirent.h>

#include "gradcheck.h"

#include "cases.h"

Test(grad, every_op_has_a_case) {
  for (int op = 0; op < OP_COUNT; op++) {
    const OpInfo *info = op_info((Op)op);
    if (info->flags & (OPF_INTERNAL | OPF_NOGRAD)) continue;
    bool found = false;
    for (int i = 0; i < NCASES; i++) found |= cases[i].op == op;
    cr_expect(found, "differentiable op '%s' has no finite-difference case in tests/test_grad.c", info->name);
  }
}

// sum_squares is internal (clipping's norm), so no YAML case reaches it: its
// gradient rule checked on loss = sum_squares(tanh(x)), built by hand.
Test(grad, sum_squares_gradient) {
  Arena a = {0};
  Captured c;
  cap_open(&c);
  const char *yaml = "bpc: 1\nname: s\nparams:\n  x: {shape: [3, 5], init: normal(1)}\ngraph:\n  y: tanh(x)\n";
  Model *m = model_load_text(&a, &c.d, "s.yaml", yaml, strlen(yaml));
  Graph *g = m ? graph_build(m, &c.d, NULL, 0, DT_F64) : NULL;
  cr_assert(g, "%s", cap_text(&c));
  int x = g->params.v[0].node;
  g->loss = g_unary(g, OP_SUM_SQUARES, g_unary(g, OP_TANH, x, graph_node(g, x)->loc), graph_node(g, x)->loc);
  cr_assert(g->loss >= 0 && ad_backward(g), "%s", cap_text(&c));
  gc_check(g, "sum_squares", 1e-6);
  graph_free(g);
  cap_close(&c);
  arena_free(&a);
}

// The cases labelled attention_qkv do pack (q, k, v read in place from x);
// thirds out of order keep plain attention.
Test(grad, attention_packs_qkv_in_order_only) {
  int packed = 0;
  for (int i = 0; i < NCASES; i++) {
    if (!strstr(cases[i].text, "attention(q, k, v") || !strstr(cases[i].text, "slice(x")) continue;
    Arena a = {0};
    Captured c;
    cap_open(&c);
    Graph *g = case_graph(&a, &c, cases[i].text, DT_F64);
    bool has = false;
    for (int id = 0; id < g->nodes.n; id++) has |= graph_node(g, id)->op == OP_ATTENTION_QKV;
    cr_expect_eq(has, cases[i].op == OP_ATTENTION_QKV, "case %d: attention_qkv %s", i, has ? "formed" : "missing");
    packed += has;
    graph_free(g);
    cap_close(&c);
    arena_free(&a);
  }
  cr_expect_eq(packed, 3);
}

Test(grad, finite_differences_every_op) {
  for (int i = 0; i < NCASES; i++) {
    Arena a = {0};
    Captured c;
    cap_open(&c);
    Graph *g = case_graph(&a, &c, cases[i].text, DT_F64);
    char what[64];
    snprintf(what, sizeof what, "case %d (%s)", i, op_name(cases[i].op));
    gc_check(g, what, 1e-6);
    graph_free(g);
    cap_close(&c);
    arena_free(&a);
  }
}

// Every model in models/, shrunk with -D so the check stays quick.
Test(grad, finite_differences_every_model) {
  static const DimOverride small[] = {{"B", 2},  {"T", 4},  {"C", 8},  {"NH", 2}, {"L", 2},
                                      {"V", 5},  {"H", 6},  {"D", 5},  {"K", 3},  {"H1", 6},
                                      {"H2", 5}, {"C1", 2}, {"C2", 3}, {"F", 3},  {"P", 6}};
  DIR *dir = opendir(BPC_SOURCE_DIR "/models");
  cr_assert(dir);
  struct dirent *e;
  int checked = 0;
  while ((e = readdir(dir))) {
    size_t n = strlen(e->d_name);
    if (n < 6 || strcmp(e->d_name + n - 5, ".yaml")) continue;
    char path[512];
    snprintf(path, sizeof path, BPC_SOURCE_DIR "/models/%s", e->d_name);
    Arena a = {0};
    Captured c;
    cap_open(&c);
    Model *m = model_load(&a, &c.d, path);
    cr_assert(m, "%s", cap_text(&c));
    DimOverride ov[32];
    int nov = 0;
    for (size_t k = 0; k < sizeof small / sizeof *small; k++)
      for (int d = 0; d < m->ndims; d++)
        if (!strcmp(m->dims[d].name, small[k].name)) ov[nov++] = small[k];
    Graph *g = graph_build(m, &c.d, ov, nov, DT_F64);
    cr_assert(g, "%s: %s", path, cap_text(&c));
    loss_from_outputs(g);
    cr_assert(ad_backward(g), "%s: %s", path, cap_text(&c));
    // minilm's normal(0.02) init leaves its attention gradients ~1e-6 of the
    // loss: the finite differences' rounding (~1e-16 |loss| / h) is then
    // ~1e-6 of them, so it is checked to 1e-5
    gc_check(g, path, strstr(path, "minilm") ? 1e-5 : 1e-6);
    graph_free(g);
    cap_close(&c);
    arena_free(&a);
    checked++;
  }
  closedir(dir);
  cr_expect_geq(checked, 3);
}

// (c) Rules compose: differentiate the derived backward graph once more.
// s = sum_i <grad_i, v_i>; d s / d params = H v, checked against
// (grad(p + h v) - grad(p - h v)) / 2h.
Test(grad, hessian_vector_product_of_an_mlp) {
  Arena a = {0};
  Captured c;
  cap_open(&c);
  const char *yaml =
      "bpc: 1\nname: hvp\ninputs:\n  x: {shape: [5, 3]}\n  t: {shape: [5, 2]}\n"
      "params:\n  w1: {shape: [3, 4], init: normal(1)}\n  b1: {shape: [4], init: normal(1)}\n"
      "  w2: {shape: [4, 2], init: normal(1)}\n"
      "graph:\n  h: tanh(x @ w1 + b1)\n  y: sigmoid(h @ w2)\n  loss: mse(y, t)\nloss: loss\n";
  Model *m = model_load_text(&a, &c.d, "hvp.yaml", yaml, strlen(yaml));
  Graph *g = m ? graph_build(m, &c.d, NULL, 0, DT_F64) : NULL;
  cr_assert(g && ad_backward(g), "%s", cap_text(&c));
  int np = g->params.n, grad1[8], vin[8];
  int s = -1;
  for (int i = 0; i < np; i++) {
    grad1[i] = g->params.v[i].grad;
    const Node *pn = graph_node(g, g->params.v[i].node);
    vin[i] = g_leaf(g, OP_INPUT, arena_printf(&g->arena, "v%d", i), DT_F64, &pn->shape, pn->loc);
    int dot = g_unary(g, OP_SUM, g_binary(g, OP_MUL, grad1[i], vin[i], pn->loc), pn->loc);
    s = s < 0 ? dot : g_binary(g, OP_ADD, s, dot, pn->loc);
  }
  g->loss = s;
  cr_assert(ad_backward(g), "second derivative failed: %s", cap_text(&c));
  Interp *it = interp_new(g, 0, 0, true);
  interp_init_params(it, 5);
  gc_fill_inputs(it, g);  // x, t and every v get deterministic values
  interp_run(it);
  double *p0[8], *v[8], *hv[8];
  int64_t n[8];
  for (int i = 0; i < np; i++) {
    n[i] = shape_numel(&graph_node(g, g->params.v[i].node)->shape);
    p0[i] = malloc(sizeof(double) * (size_t)n[i]);
    v[i] = malloc(sizeof(double) * (size_t)n[i]);
    hv[i] = malloc(sizeof(double) * (size_t)n[i]);
    memcpy(p0[i], interp_value(it, g->params.v[i].node)->v, sizeof(double) * (size_t)n[i]);
    memcpy(v[i], interp_value(it, vin[i])->v, sizeof(double) * (size_t)n[i]);
    memcpy(hv[i], interp_value(it, g->params.v[i].grad)->v, sizeof(double) * (size_t)n[i]);
  }
  double h = 1e-5;
  double *gp[8], *gm[8];
  for (int sign = 0; sign < 2; sign++) {
    for (int i = 0; i < np; i++) {
      double *q = malloc(sizeof(double) * (size_t)n[i]);
      for (int64_t j = 0; j < n[i]; j++) q[j] = p0[i][j] + (sign ? -h : h) * v[i][j];
      interp_set(it, g->params.v[i].node, q, n[i]);
      free(q);
    }
    interp_run(it);
    for (int i = 0; i < np; i++) {
      double *dst = malloc(sizeof(double) * (size_t)n[i]);
      memcpy(dst, interp_value(it, grad1[i])->v, sizeof(double) * (size_t)n[i]);
      (sign ? gm : gp)[i] = dst;
    }
  }
  for (int i = 0; i < np; i++) {
    for (int64_t j = 0; j < n[i]; j++) {
      double fd = (gp[i][j] - gm[i][j]) / (2 * h);
      double err = fabs(fd - hv[i][j]) / fmax(fmax(fabs(fd), fabs(hv[i][j])), 1e-3);
      cr_expect(err < 1e-6, "(Hv)[%s][%lld]: autodiff %.12g, finite difference %.12g", g->params.v[i].name,
                (long long)j, hv[i][j], fd);
    }
    free(p0[i]), free(v[i]), free(hv[i]), free(gp[i]), free(gm[i]);
  }
  interp_free(it);
  graph_free(g);
  cap_close(&c);
  arena_free(&a);
}

// (d) A second derivative through a fused backward op is an error, never a zero.
Test(grad, missing_rule_is_an_error) {
  Arena a = {0};
  Captured c;
  cap_open(&c);
  const char *yaml =
      "bpc: 1\nname: m\ninputs:\n  y: {shape: [2], dtype: i32}\n"
      "params:\n  l: {shape: [2, 3], init: normal(1)}\n"
      "graph:\n  loss: cross_entropy(l, y)\nloss: loss\n";
  Model *m = model_load_text(&a, &c.d, "m.yaml", yaml, strlen(yaml));
  Graph *g = graph_build(m, &c.d, NULL, 0, DT_F64);
  cr_assert(g && ad_backward(g));
  const GParam *p = &g->params.v[0];
  g->loss = g_unary(g, OP_SUM, p->grad, graph_node(g, p->grad)->loc);
  cr_expect_not(ad_backward(g));
  cr_expect(strstr(cap_text(&c), "m.yaml:8:9: error: no gradient rule for 'cross_entropy_grad'"), "%s", cap_text(&c));
  graph_free(g);
  cap_close(&c);
  arena_free(&a);
}

// Params the loss does not depend on get zeros; frozen params get none.
Test(grad, unused_and_frozen_params) {
  Arena a = {0};
  Captured c;
  cap_open(&c);
  Graph *g = build_text(&a, &c,
                        "bpc: 1\nname: u\nparams:\n  a: {shape: [2], init: ones}\n"
                        "  b: {shape: [2], init: ones}\n  f: {shape: [2], init: ones, trainable: false}\n"
                        "graph:\n  loss: sum(a * f + stop_gradient(b))\nloss: loss\n",
                        DT_F64);
  cr_assert(g && ad_backward(g), "%s", cap_text(&c));
  Interp *it = interp_new(g, 0, 0, true);
  interp_init_params(it, 0);
  interp_run(it);
  cr_expect_float_eq(interp_value(it, g->params.v[0].grad)->v[1], 1.0, 0);
  cr_expect_float_eq(interp_value(it, g->params.v[1].grad)->v[0], 0.0, 0);
  cr_expect_eq(g->params.v[2].grad, -1);
  interp_free(it);
  graph_free(g);
  cap_close(&c);
  arena_free(&a);
}

// hardtanh's gradient as torch.nn.functional.hardtanh's: 1 strictly inside
// (min_val, max_val), 0 on the bounds and past them, gy where x is NaN
// (torch's `x <= min || x >= max ? 0 : gy`); NaN stays NaN forward.
Test(grad, hardtanh_at_its_bounds) {
  Arena a = {0};
  Captured c;
  cap_open(&c);
  const char *yaml =
      "bpc: 1\nname: m\nparams:\n  p: {shape: [7], init: zeros}\n"
      "graph:\n  h: hardtanh(p, -0.5, max_val=2)\n  loss: sum(h * 3)\nloss: loss\noutputs: [h]\n";
  Model *m = model_load_text(&a, &c.d, "m.yaml", yaml, strlen(yaml));
  Graph *g = graph_build(m, &c.d, NULL, 0, DT_F64);
  cr_assert(g && ad_backward(g), "%s", cap_text(&c));
  Interp *it = interp_new(g, 0, 0, true);
  const double x[7] = {-1, -0.5, -0.4999, 0, 1.9999, 2, 3};
  const double want_h[7] = {-0.5, -0.5, -0.4999, 0, 1.9999, 2, 2}, want_g[7] = {0, 0, 3, 3, 3, 0, 0};
  interp_set(it, g->params.v[0].node, x, 7);
  interp_run(it);
  const Value *h = interp_value(it, g->outputs.v[0].node), *gp = interp_value(it, g->params.v[0].grad);
  for (int i = 0; i < 7; i++) {
    cr_expect_eq(h->v[i], want_h[i], "h[%d] = %g, want %g", i, h->v[i], want_h[i]);
    cr_expect_eq(gp->v[i], want_g[i], "dp[%d] = %g, want %g", i, gp->v[i], want_g[i]);
  }
  const double nan_in[7] = {NAN, 5, NAN, -5, 0, 0, 0};
  interp_set(it, g->params.v[0].node, nan_in, 7);
  interp_run(it);
  h = interp_value(it, g->outputs.v[0].node), gp = interp_value(it, g->params.v[0].grad);
  cr_expect(isnan(h->v[0]) && isnan(h->v[2]) && h->v[1] == 2 && h->v[3] == -0.5);
  cr_expect(gp->v[0] == 3 && gp->v[1] == 0 && gp->v[2] == 3 && gp->v[3] == 0 && gp->v[4] == 3, "%g %g %g %g %g",
            gp->v[0], gp->v[1], gp->v[2], gp->v[3], gp->v[4]);
  interp_free(it);
  graph_free(g);
  cap_close(&c);
  arena_free(&a);
}
