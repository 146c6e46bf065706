// test_optim.c — the optimizers as generated code against torch.optim's
// formulas written out here in double: several updates of a small model
// (f64 build, two threads), with weight decay on the matrices only (rank-1
// params get none), clipping, and every option of SGD, Adam, AdamW, RMSprop
// and Adagrad. The gradients for the reference come from the interpreter.
// The update runs as one pass per group of params (matrices, vectors): the
// matrices' 6460 elements span two blocks of the pass, split over the two
// threads in the middle of w2.
#include <criterion/criterion.h>

#include "bpc.h"
#include "gradcheck.h"

typedef struct Ref {  // the reference state of one param
  double *p, *m, *v, *buf, *ga;
  int64_t n;
  bool decay;
} Ref;

static const char *MODEL =
    "bpc: 1\nname: o\ninputs:\n  x: {shape: [5, 30]}\n  t: {shape: [5, 4]}\n"
    "params:\n  w1: {shape: [30, 90], init: normal(0.2)}\n  b1: {shape: [90], init: normal(1)}\n"
    "  w2: {shape: [90, 40], init: normal(0.1)}\n  b2: {shape: [40], init: normal(1)}\n"
    "  w3: {shape: [40, 4], init: normal(0.2)}\n  b3: {shape: [4], init: normal(1)}\n"
    "graph:\n  h1: tanh(x @ w1 + b1)\n  h2: tanh(h1 @ w2 + b2)\n  y: tanh(h2 @ w3 + b3)\n  loss: mse(y, t)\nloss: loss\n";
#define NPARAMS 6

// The torch.optim update of one param (single-tensor path), in double.
static void ref_update(const OptimCfg *c, Ref *r, const double *grad, int s, double lr, double coef) {
  double wd = r->decay ? c->weight_decay : 0;
  for (int64_t i = 0; i < r->n; i++) {
    double g = grad[i] * coef, p = r->p[i];
    if (c->kind != OPT_ADAMW) g += wd * p;
    switch (c->kind) {
    case OPT_SGD:
      if (c->momentum != 0) {
        r->buf[i] = s == 0 ? g : c->momentum * r->buf[i] + (1 - c->dampening) * g;
        g = c->nesterov ? g + c->momentum * r->buf[i] : r->buf[i];
      }
      p -= lr * g;
      break;
    case OPT_ADAM:
    case OPT_ADAMW: {
      if (c->kind == OPT_ADAMW) p *= 1 - lr * wd;
      r->m[i] = c->beta1 * r->m[i] + (1 - c->beta1) * g;
      r->v[i] = c->beta2 * r->v[i] + (1 - c->beta2) * g * g;
      double bc1 = 1 - pow(c->beta1, s + 1), bc2 = 1 - pow(c->beta2, s + 1);
      p -= lr / bc1 * r->m[i] / (sqrt(r->v[i]) / sqrt(bc2) + c->eps);
      break;
    }
    case OPT_RMSPROP: {
      r->v[i] = c->alpha * r->v[i] + (1 - c->alpha) * g * g;
      double avg;
      if (c->centered) {
        r->ga[i] = c->alpha * r->ga[i] + (1 - c->alpha) * g;
        avg = sqrt(r->v[i] - r->ga[i] * r->ga[i]) + c->eps;
      } else {
        avg = sqrt(r->v[i]) + c->eps;
      }
      if (c->momentum > 0) {
        r->buf[i] = c->momentum * r->buf[i] + g / avg;
        p -= lr * r->buf[i];
      } else {
        p -= lr * g / avg;
      }
      break;
    }
    case OPT_ADAGRAD: {
      double clr = lr / (1 + s * c->lr_decay);
      r->v[i] += g * g;
      p -= clr * g / (sqrt(r->v[i]) + c->eps);
      break;
    }
    }
    r->p[i] = p;
  }
}

static int64_t offset_of(const Program *p, const char *name, bool param) {
  const Graph *g = p->g;
  if (param)
    for (int i = 0; i < g->params.n; i++)
      if (!strcmp(g->params.v[i].name, name)) return p->mem.offset[g->params.v[i].node];
  for (int i = 0; i < g->scalars.n; i++)
    if (!strcmp(g->scalars.v[i].name, name)) return p->mem.offset[g->scalars.v[i].node];
  for (int i = 0; i < g->inputs.n; i++)
    if (!strcmp(g->inputs.v[i].name, name)) return p->mem.offset[g->inputs.v[i].node];
  return -1;
}

static void check(const char *train_yaml, double lr) {
  Arena a = {0};
  Captured c;
  cap_open(&c);
  char yaml[2048];
  snprintf(yaml, sizeof yaml, "%s%s", MODEL, train_yaml);
  Model *m = model_load_text(&a, &c.d, "o.yaml", yaml, strlen(yaml));
  cr_assert(m, "%s", cap_text(&c));
  TrainerBuild b;
  cr_assert(trainer_build(m, &c.d, NULL, 0, DT_F64, true, 0, "test", &b), "%s", cap_text(&c));
  CodegenUnit u = trainer_unit(&b, false);
  JitModule *jm = jit_compile(&u, &c.d);
  cr_assert(jm, "%s", cap_text(&c));
  void (*step)(bpcrt_ctx *) = (void (*)(bpcrt_ctx *))jit_lookup(jm, "bpc_train_step", &c.d);
  void (*update)(bpcrt_ctx *) = (void (*)(bpcrt_ctx *))jit_lookup(jm, "bpc_train_update", &c.d);
  const Program *tp = b.programs[0];
  // One pass per param: the loop that writes a param's update also writes
  // every optimizer slot of that param (opt.<slot>.<param>).
  for (int i = 0; i < tp->g->params.n; i++) {
    const GParam *gp = &tp->g->params.v[i];
    const Kernel *home = NULL;
    for (int k = 0; k < tp->kernels.n; k++) {
      const Kernel *kr = &tp->kernels.v[k];
      for (int o = -1; o < kr->nouts; o++)
        if ((o < 0 ? kr->root : kr->outs[o]) == gp->update) home = kr;
    }
    cr_assert(home, "%s: no kernel writes %s's update", train_yaml, gp->name);
    for (int j = 0; j < tp->g->states.n; j++) {
      const GState *st = &tp->g->states.v[j];
      size_t ln = strlen(st->name), lp = strlen(gp->name);
      if (st->update < 0 || ln <= lp + 1 || strcmp(st->name + ln - lp, gp->name) || st->name[ln - lp - 1] != '.')
        continue;
      bool same = home->root == st->update;
      for (int o = 0; o < home->nouts; o++) same |= home->outs[o] == st->update;
      cr_expect(same, "%s: %s is not updated in the loop that updates %s", train_yaml, st->name, gp->name);
    }
  }
  // One pass over all params: the update loops form at most two groups (the
  // matrices with weight decay, the vectors without), each a single kernel.
  int passes = 0, grouped = 0;
  for (int k = 0; k < tp->kernels.n; k++) {
    const Kernel *kr = &tp->kernels.v[k];
    bool upd = false;
    for (int i = 0; i < tp->g->params.n; i++)
      for (int o = -1; o < kr->nouts; o++) upd |= (o < 0 ? kr->root : kr->outs[o]) == tp->g->params.v[i].update;
    if (!upd) continue;
    passes += kr->group >= 0;
    grouped += kr->group != 0;
  }
  cr_expect_eq(grouped, NPARAMS, "%s: %d of %d update loops in groups", train_yaml, grouped, NPARAMS);
  int want = m->train.opt.weight_decay != 0 ? 2 : 1;
  cr_expect_eq(passes, want, "%s: %d update passes, want %d", train_yaml, passes, want);
  bpcrt_pool *pool = bpcrt_pool_new(2);
  int nth = bpcrt_pool_threads(pool);
  size_t bytes = (size_t)(tp->mem.arena_bytes + nth * tp->mem.scratch_per_thread + 64) / 64 * 64;
  char *mem = aligned_alloc(64, bytes);
  memset(mem, 0, bytes);
  bpcrt_ctx ctx = {mem, mem + tp->mem.arena_bytes, pool, 0, 0};
  // The reference: interpreter gradients of the same model.
  Graph *rg = graph_build(m, &c.d, NULL, 0, DT_F64);
  cr_assert(rg && ad_backward(rg));
  Interp *it = interp_new(rg, 0, 0, true);
  interp_init_params(it, 3);
  gc_fill_inputs(it, rg);
  Ref refs[NPARAMS];
  cr_assert_eq(rg->params.n, NPARAMS);
  for (int i = 0; i < NPARAMS; i++) {
    const GParam *gp = &rg->params.v[i];
    int64_t n = shape_numel(&graph_node(rg, gp->node)->shape);
    refs[i] = (Ref){calloc((size_t)n, 8),
                    calloc((size_t)n, 8),
                    calloc((size_t)n, 8),
                    calloc((size_t)n, 8),
                    calloc((size_t)n, 8),
                    n,
                    gp->decay};
    memcpy(refs[i].p, interp_value(it, gp->node)->v, sizeof(double) * (size_t)n);
    if (m->train.opt.kind == OPT_ADAGRAD)
      for (int64_t j = 0; j < n; j++) refs[i].v[j] = m->train.opt.initial_accumulator_value;
    memcpy(mem + offset_of(tp, gp->name, true), refs[i].p, sizeof(double) * (size_t)n);
  }
  // The optimizer slots start at their init values (the runtime's job).
  for (int i = 0; i < tp->g->states.n; i++) {
    const GState *st = &tp->g->states.v[i];
    double *dst = (double *)(mem + tp->mem.offset[st->node]);
    for (int64_t j = 0; j < shape_numel(&graph_node(tp->g, st->node)->shape); j++) dst[j] = st->init;
  }
  for (int i = 0; i < rg->inputs.n; i++) {
    const Value *v = interp_value(it, rg->inputs.v[i].node);
    memcpy(mem + offset_of(tp, rg->inputs.v[i].name, false), v->v, sizeof(double) * (size_t)shape_numel(&v->shape));
  }
  const OptimCfg *oc = &m->train.opt;
  for (int s = 0; s < 5; s++) {
    // Scalars per docs/ABI.md (constant schedule here).
    double scal[5] = {lr, lr / (1 - pow(oc->beta1, s + 1)), sqrt(1 - pow(oc->beta2, s + 1)),
                      lr / (1 + s * oc->lr_decay), s == 0};
    const char *names[5] = {"__lr", "__lr_bc1", "__sqrt_bc2", "__clr", "__first"};
    for (int k = 0; k < 5; k++) {
      int64_t off = offset_of(tp, names[k], false);
      if (off >= 0) *(double *)(mem + off) = scal[k];
    }
    step(&ctx);
    update(&ctx);
    // Reference: grads at the reference params, clipping, the update.
    for (int i = 0; i < NPARAMS; i++) interp_set(it, rg->params.v[i].node, refs[i].p, refs[i].n);
    cr_assert(interp_run(it));
    double norm2 = 0;
    for (int i = 0; i < NPARAMS; i++) {
      const Value *gv = interp_value(it, rg->params.v[i].grad);
      for (int64_t j = 0; j < refs[i].n; j++) norm2 += gv->v[j] * gv->v[j];
    }
    double coef = m->train.clip_grad_norm > 0 ? fmin(1, m->train.clip_grad_norm / (sqrt(norm2) + 1e-6)) : 1;
    for (int i = 0; i < NPARAMS; i++) ref_update(oc, &refs[i], interp_value(it, rg->params.v[i].grad)->v, s, lr, coef);
    for (int i = 0; i < NPARAMS; i++) {
      const double *got = (const double *)(mem + offset_of(tp, rg->params.v[i].name, true));
      for (int64_t j = 0; j < refs[i].n; j++)
        cr_expect(fabs(got[j] - refs[i].p[j]) <= 1e-10 * fmax(1, fabs(refs[i].p[j])),
                  "%s step %d: %s[%lld] = %.17g, torch formula %.17g", train_yaml, s, rg->params.v[i].name,
                  (long long)j, got[j], refs[i].p[j]);
    }
  }
  for (int i = 0; i < NPARAMS; i++)
    free(refs[i].p), free(refs[i].m), free(refs[i].v), free(refs[i].buf), free(refs[i].ga);
  interp_free(it);
  graph_free(rg);
  free(mem);
  bpcrt_pool_free(pool);
  jit_module_free(jm);
  trainer_build_free(&b);
  cap_close(&c);
  arena_free(&a);
}

Test(optim, sgd) {
  check("train: {optimizer: {type: sgd, lr: 0.1}}\n", 0.1);
  check("train: {optimizer: {type: sgd, lr: 0.1, momentum: 0.9, dampening: 0.3, weight_decay: 0.01}}\n", 0.1);
  check("train: {optimizer: {type: sgd, lr: 0.05, momentum: 0.8, nesterov: true}, clip_grad_norm: 0.1}\n", 0.05);
}

Test(optim, adam_and_adamw) {
  check("train: {optimizer: {type: adam, lr: 0.01, betas: [0.8, 0.99], eps: 1e-6, weight_decay: 0.1}}\n", 0.01);
  check("train: {optimizer: {type: adamw, lr: 0.01, weight_decay: 0.1}, clip_grad_norm: 0.5}\n", 0.01);
}

Test(optim, rmsprop) {
  check("train: {optimizer: {type: rmsprop, lr: 0.01}}\n", 0.01);
  check(
      "train: {optimizer: {type: rmsprop, lr: 0.01, alpha: 0.9, centered: true, momentum: 0.5, weight_decay: 0.01}}\n",
      0.01);
}

Test(optim, adagrad) {
  check(
      "train: {optimizer: {type: adagrad, lr: 0.1, lr_decay: 0.01, initial_accumulator_value: 0.1, weight_decay: 0.05}}\n",
      0.1);
}
