// optim.c — the optimizer as graph nodes (phase 1), appended after autodiff
// so it is simplified, fused and compiled like everything else: a few
// elementwise passes over the params. Formulas are torch.optim's
// (single-tensor, foreach=False): SGD (momentum, dampening, nesterov), Adam,
// AdamW (decoupled decay), RMSprop (centered, momentum), Adagrad (lr_decay).
// Clipping follows torch.nn.utils.clip_grad_norm_: coef = max_norm /
// (total_norm + 1e-6), clamped to 1, applied to the raw gradients. Scalars
// that change per update (scheduled lr, bias corrections) are INPUT leaves
// the runtime writes before each update (docs/ABI.md).
#include <string.h>

#include "bpcc.h"

typedef struct Opt {
  Graph *g;
  Loc loc;
  const OptimCfg *o;
  int lr, lr_bc1, sqrt_bc2, clr, first;  // scalar inputs, -1 until used
} Opt;

static int C(Opt *o, double v) { return g_const(o->g, v, o->loc); }
static int bin(Opt *o, Op op, int a, int b) {
  int id = g_binary(o->g, op, a, b, o->loc);
  BPC_ASSERT(id >= 0);
  return id;
}
#define ADD(a, b) bin(o, OP_ADD, a, b)
#define SUB(a, b) bin(o, OP_SUB, a, b)
#define MUL(a, b) bin(o, OP_MUL, a, b)
#define DIV(a, b) bin(o, OP_DIV, a, b)

static int un(Opt *o, Op op, int a) {
  int id = g_unary(o->g, op, a, o->loc);
  BPC_ASSERT(id >= 0);
  return id;
}

static int scalar(Opt *o, int *slot, const char *name) {
  if (*slot < 0) {
    Shape s = {0};
    *slot = g_leaf(o->g, OP_INPUT, name, o->g->fdtype, &s, o->loc);
    VEC_PUSH(o->g->scalars, ((GInput){name, *slot}));
  }
  return *slot;
}

// An optimizer slot of param p: a STATE leaf `opt.<slot>.<param>`.
static int slot(Opt *o, const GParam *p, const char *name, double init) {
  Graph *g = o->g;
  const Node *pn = graph_node(g, p->node);
  const char *full = arena_printf(&g->arena, "opt.%s.%s", name, p->name);
  int id = g_leaf(g, OP_STATE, full, pn->dtype, &pn->shape, o->loc);
  VEC_PUSH(g->states, ((GState){full, id, -1, init, true}));
  return id;
}

static void set_update(Opt *o, int slot_node, int value) {
  for (int i = 0; i < o->g->states.n; i++)
    if (o->g->states.v[i].node == slot_node) o->g->states.v[i].update = value;
}

// m * a + b * (1 - m), the running averages of every optimizer.
static int ema(Opt *o, int acc, double keep, int x) { return ADD(MUL(C(o, keep), acc), MUL(C(o, 1 - keep), x)); }

static int update_param(Opt *o, const GParam *p, int g) {
  const OptimCfg *c = o->o;
  int w = p->node;
  double wd = p->decay ? c->weight_decay : 0;
  if (wd != 0 && c->kind != OPT_ADAMW) g = ADD(g, MUL(C(o, wd), w));  // L2: into the gradient
  switch (c->kind) {
  case OPT_SGD: {
    int lr = scalar(o, &o->lr, "__lr");
    if (c->momentum != 0) {
      int buf = slot(o, p, "momentum_buffer", 0);
      // torch: the first step's buffer is the gradient itself.
      int later = ADD(MUL(C(o, c->momentum), buf), MUL(C(o, 1 - c->dampening), g));
      int in[3] = {scalar(o, &o->first, "__first"), g, later};
      int nb = g_op(o->g, OP_WHERE, o->loc, 3, in, NULL);
      set_update(o, buf, nb);
      g = c->nesterov ? ADD(g, MUL(C(o, c->momentum), nb)) : nb;
    }
    return SUB(w, MUL(lr, g));
  }
  case OPT_ADAM:
  case OPT_ADAMW: {
    if (c->kind == OPT_ADAMW && wd != 0) w = SUB(w, MUL(MUL(scalar(o, &o->lr, "__lr"), C(o, wd)), w));
    int m = slot(o, p, "exp_avg", 0), v = slot(o, p, "exp_avg_sq", 0);
    int nm = ema(o, m, c->beta1, g), nv = ema(o, v, c->beta2, MUL(g, g));
    set_update(o, m, nm);
    set_update(o, v, nv);
    int denom = ADD(DIV(un(o, OP_SQRT, nv), scalar(o, &o->sqrt_bc2, "__sqrt_bc2")), C(o, c->eps));
    return SUB(w, MUL(scalar(o, &o->lr_bc1, "__lr_bc1"), DIV(nm, denom)));
  }
  case OPT_RMSPROP: {
    int lr = scalar(o, &o->lr, "__lr");
    int sq = slot(o, p, "square_avg", 0), nsq = ema(o, sq, c->alpha, MUL(g, g));
    set_update(o, sq, nsq);
    int avg;
    if (c->centered) {
      int ga = slot(o, p, "grad_avg", 0), nga = ema(o, ga, c->alpha, g);
      set_update(o, ga, nga);
      avg = ADD(un(o, OP_SQRT, SUB(nsq, MUL(nga, nga))), C(o, c->eps));
    } else {
      avg = ADD(un(o, OP_SQRT, nsq), C(o, c->eps));
    }
    if (c->momentum > 0) {
      int buf = slot(o, p, "momentum_buffer", 0), nb = ADD(MUL(C(o, c->momentum), buf), DIV(g, avg));
      set_update(o, buf, nb);
      return SUB(w, MUL(lr, nb));
    }
    return SUB(w, MUL(lr, DIV(g, avg)));
  }
  case OPT_ADAGRAD: {
    int sum = slot(o, p, "sum", c->initial_accumulator_value), ns = ADD(sum, MUL(g, g));
    set_update(o, sum, ns);
    return SUB(w, MUL(scalar(o, &o->clr, "__clr"), DIV(g, ADD(un(o, OP_SQRT, ns), C(o, c->eps)))));
  }
  }
  return w;
}

bool optim_append(Graph *g, const TrainCfg *cfg) {
  Opt opt = {.g = g, .o = &cfg->opt, .lr = -1, .lr_bc1 = -1, .sqrt_bc2 = -1, .clr = -1, .first = -1}, *o = &opt;
  opt.loc = cfg->present ? cfg->loc : g->loss >= 0 ? graph_node(g, g->loss)->loc : (Loc){0};
  int saved = g->phase;
  g->phase = 1;
  int coef = -1;
  if (cfg->clip_grad_norm > 0) {
    int total = -1;
    for (int i = 0; i < g->params.n; i++) {
      int gr = g->params.v[i].grad;
      if (gr < 0) continue;
      int sq = g_unary(g, OP_SUM_SQUARES, gr, opt.loc);  // one parallel pass, nothing stored
      total = total < 0 ? sq : ADD(total, sq);
    }
    if (total >= 0) {
      int c = DIV(C(o, cfg->clip_grad_norm), ADD(un(o, OP_SQRT, total), C(o, 1e-6)));
      coef = bin(o, OP_MINIMUM, c, C(o, 1));
    }
  }
  for (int i = 0; i < g->params.n; i++) {
    GParam *p = &g->params.v[i];
    if (p->grad < 0) continue;
    int gr = coef >= 0 ? MUL(p->grad, coef) : p->grad;
    p->update = update_param(o, p, gr);
  }
  g->phase = saved;
  return true;
}
