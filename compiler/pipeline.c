// pipeline.c — the compiler's pipeline, written once: load (load.c, with
// --precision) -> expand (expand.c: the forward graph, shape-checked) ->
// autodiff (autodiff.c, grad.c) -> optimizer (optim.c) -> simplify ->
// plan (lce.c's rewrite, fuse.c's kernels, memplan.c's arena; remat.c
// within a --max-memory budget) -> codegen (codegen.c) for the JIT (jit.c)
// or a standalone trainer (aot.c). check, show, dot, grad, compile and run
// (main.c) call these steps and print; trainer_build makes every program a
// trainer runs (train, eval, sample, predict, decode) and its description.
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "bpcc.h"

Model *pipeline_load(Arena *a, Diag *d, const char *path, int precision, DType dt) {
  Model *m = model_load(a, d, path);
  if (!m) return NULL;
  if (precision == 2 && dt == DT_F64) {
    diag_error(d, (Loc){0}, "--precision bf16 needs f32 (bf16 products with f32 sums), not --dtype f64");
    return NULL;
  }
  if (precision) m->train.bf16 = precision == 2;
  return m;
}

Graph *pipeline_joint(Graph *fwd, unsigned flags) {
  if (!fwd || !ad_backward(fwd)) {
    graph_free(fwd);
    return NULL;
  }
  if (!flags) return fwd;
  Graph *g = simplify(fwd, flags);
  graph_free(fwd);
  return g;
}

Graph *pipeline_step(Graph *fwd, int *njoint) {
  Graph *j = pipeline_joint(fwd, 0);
  if (!j || !optim_append(j, &j->model->train)) {
    graph_free(j);
    return NULL;
  }
  if (njoint) *njoint = j->nodes.n;
  Graph *s = simplify(j, SIMP_ALL);
  graph_free(j);
  return s;
}

Program *program_plan(const Graph *g, bool fuse, bool training, Graph **lowered) {
  *lowered = simplify(g, SIMP_ALL | SIMP_LOWER | (training ? 0 : SIMP_EVAL));
  Graph *fused_loss = lce_rewrite(*lowered, training);
  if (fused_loss) {
    graph_free(*lowered);
    *lowered = fused_loss;
  }
  Program *p = program_new(*lowered, fuse, training);
  memplan_assign(p);
  return p;
}

// The dim naming the batch: the first dim of the `tokens` input, a [B, T]
// i32 input with B a dim name (load.c's load_generate checked it).
static const char *batch_dim(const Model *m) {
  for (int i = 0; i < m->ninputs; i++) {
    const TensorDecl *t = &m->inputs[i];
    if (strcmp(t->name, m->gen.tokens)) continue;
    BPC_ASSERT(t->rank == 2 && t->shape[0]->kind == EX_NAME);
    return t->shape[0]->name;
  }
  bpc_bug(__FILE__, __LINE__, "generate: no input named '%s'", m->gen.tokens);
}

// Why predict cannot run this model, as "file:line:col: message" (malloc'd).
static char *predict_why(Loc loc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *predict_why(Loc loc, const char *fmt, ...) {
  char msg[600], *s = xmalloc(800);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  snprintf(s, 800, "%s:%d:%d: %s", loc.file ? loc.file->path : "?", loc.line, loc.col, msg);
  return s;
}

// The forward graph in eval mode with the outputs as its only results (so
// inputs they do not need drop out of the program), for `predict` (SPEC
// 6.2). Samples run in batches of the batch dim: the dim that leads every
// input. Each output must lead with it too, which is checked by building the
// graph again with that dim one larger (quietly) and seeing exactly each
// output's first axis follow. NULL with out->predict_error set when predict
// cannot run the model.
static Program *predict_program(const Model *m, Diag *d, const DimOverride *ov, int nov, DType dt, bool fuse,
                                TrainerBuild *out) {
  const char *bdim = NULL;
  for (int i = 0; i < m->ninputs; i++) {
    const TensorDecl *t = &m->inputs[i];
    if (t->rank < 1 || t->shape[0]->kind != EX_NAME || (bdim && strcmp(bdim, t->shape[0]->name))) {
      out->predict_error =
          predict_why(t->loc, "predict needs every input to lead with the same batch dim; '%s' does not", t->name);
      return NULL;
    }
    bdim = t->shape[0]->name;
  }
  if (!bdim || m->noutputs == 0) {
    out->predict_error = predict_why(m->loc, "predict needs inputs and `outputs:` (the values it writes)");
    return NULL;
  }
  Graph *g = graph_build(m, d, ov, nov, dt);
  if (!g) return NULL;
  int64_t bval = -1;
  for (int i = 0; i < g->dims.n; i++)
    if (!strcmp(g->dims.v[i].name, bdim)) bval = g->dims.v[i].value;
  DimOverride *ov1 = xmalloc(sizeof(DimOverride) * (size_t)(nov + 1));
  if (nov) memcpy(ov1, ov, sizeof(DimOverride) * (size_t)nov);
  ov1[nov] = (DimOverride){bdim, bval + 1};
  FILE *devnull = fopen("/dev/null", "w");
  Diag quiet;
  diag_init(&quiet, devnull ? devnull : stderr);
  Graph *g1 = graph_build(m, &quiet, ov1, nov + 1, dt);
  if (devnull) fclose(devnull);
  free(ov1);
  for (int i = 0; i < g->outputs.n && !out->predict_error; i++) {
    const Shape *s = &graph_node(g, g->outputs.v[i].node)->shape;
    const Shape *s1 = g1 ? &graph_node(g1, g1->outputs.v[i].node)->shape : NULL;
    bool ok = s1 && s->rank >= 1 && s1->rank == s->rank && s->d[0] == bval && s1->d[0] == bval + 1;
    for (int k = 1; ok && k < s->rank; k++) ok = s->d[k] == s1->d[k];
    char sb[200];
    if (!ok)
      out->predict_error =
          predict_why(m->output_locs[i], "predict: output '%s' %s does not lead with the batch dim %s = %lld",
                      g->outputs.v[i].name, shape_str(s, sb, sizeof sb), bdim, (long long)bval);
  }
  graph_free(g1);
  if (out->predict_error) {
    graph_free(g);
    return NULL;
  }
  for (int i = 0; i < g->states.n; i++) g->states.v[i].update = -1;
  g->loss = -1;
  g->metrics.n = 0;
  // only the inputs the outputs read (labels drop out)
  bool *used = xcalloc((size_t)g->nodes.n, sizeof *used);
  for (int i = 0; i < g->outputs.n; i++) used[g->outputs.v[i].node] = true;
  for (int id = g->nodes.n - 1; id >= 0; id--)
    if (used[id])
      for (int k = 0; k < graph_node(g, id)->nin; k++) used[graph_node(g, id)->in[k]] = true;
  int ni = 0;
  for (int i = 0; i < g->inputs.n; i++)
    if (used[g->inputs.v[i].node]) g->inputs.v[ni++] = g->inputs.v[i];
  g->inputs.n = ni;
  free(used);
  Program *p = program_plan(g, fuse, false, &out->lowered[TB_PREDICT]);
  graph_free(g);
  return p;
}

bool trainer_build(const Model *m, Diag *d, const DimOverride *ov, int nov, DType dt, bool fuse, int64_t max_memory,
                   const char *flags, TrainerBuild *out) {
  memset(out, 0, sizeof *out);
  out->fwd = graph_build(m, d, ov, nov, dt);
  if (!out->fwd) return false;
  if (out->fwd->loss < 0) {  // predict only (a pretrained encoder's embeddings)
    out->programs[TB_PREDICT] = predict_program(m, d, ov, nov, dt, fuse, out);
    if (!out->programs[TB_PREDICT]) {
      if (out->predict_error)
        diag_error(d, m->loc, "a model without `loss:` compiles for predict alone, which cannot run it: %s",
                   out->predict_error);
      return false;
    }
    out->json = describe_model(m, out->fwd, NULL, NULL, NULL, out->programs[TB_PREDICT], NULL, NULL, NULL, flags);
    return true;
  }
  // train: forward, backward, optimizer
  Graph *ts = pipeline_step(graph_build(m, d, ov, nov, dt), NULL);
  if (!ts) return false;
  out->programs[0] = program_plan_budget(ts, fuse, max_memory, &out->lowered[0], d);
  graph_free(ts);
  if (!out->programs[0]) return false;
  // eval: the forward graph in eval mode; running stats are read, not written
  Graph *e = graph_build(m, d, ov, nov, dt);
  for (int i = 0; i < e->states.n; i++) e->states.v[i].update = -1;
  out->programs[1] = program_plan(e, fuse, false, &out->lowered[1]);
  graph_free(e);
  // sample: batch 1, logits only
  if (m->gen.present) {
    const char *bdim = batch_dim(m);
    DimOverride *ov1 = xmalloc(sizeof(DimOverride) * (size_t)(nov + 1));
    if (nov) memcpy(ov1, ov, sizeof(DimOverride) * (size_t)nov);
    ov1[nov] = (DimOverride){bdim, 1};
    Graph *sg = graph_build(m, d, ov1, nov + 1, dt);
    free(ov1);
    if (!sg) return false;
    int logits = -1;
    for (int i = 0; i < sg->named.n; i++)
      if (!strcmp(sg->named.v[i].name, m->gen.logits)) logits = sg->named.v[i].node;
    if (logits < 0) {
      diag_error(d, m->gen.loc, "generate: no graph value named '%s'", m->gen.logits);
      graph_free(sg);
      return false;
    }
    for (int i = 0; i < sg->states.n; i++) sg->states.v[i].update = -1;
    sg->loss = -1;
    sg->metrics.n = 0;
    sg->outputs.n = 0;
    VEC_PUSH(sg->outputs, ((GNamed){m->gen.logits, logits}));
    // cached sampling: the one-position program (it adds the k, v outputs to sg)
    Graph *dg = decode_graph(sg, m->gen.tokens, m->gen.logits, logits, &out->decode_error);
    out->programs[2] = program_plan(sg, fuse, false, &out->lowered[2]);
    if (dg) out->programs[TB_DECODE] = program_plan(dg, fuse, false, &out->lowered[TB_DECODE]);
    graph_free(dg);
    graph_free(sg);
  }
  out->programs[TB_PREDICT] = predict_program(m, d, ov, nov, dt, fuse, out);
  out->json =
      describe_model(m, out->fwd, out->programs[0], out->programs[1], out->programs[2], out->programs[TB_PREDICT],
                     out->predict_error, out->programs[TB_DECODE], out->decode_error, flags);
  return true;
}

void trainer_build_free(TrainerBuild *b) {
  for (int i = 0; i < TB_NPROGRAMS; i++) {
    program_free(b->programs[i]);
    graph_free(b->lowered[i]);
  }
  graph_free(b->fwd);
  free(b->predict_error);
  free(b->decode_error);
  free(b->json);
  memset(b, 0, sizeof *b);
}

CodegenUnit trainer_unit(const TrainerBuild *b, bool with_main) {
  CodegenUnit u = {.name = b->fwd->model->name, .json = b->json, .with_main = with_main};
  if (b->programs[0])
    u.programs[u.nprograms++] = (CodegenProgram){b->programs[0], {"bpc_train_step", "bpc_train_update"}};
  if (b->programs[1]) u.programs[u.nprograms++] = (CodegenProgram){b->programs[1], {"bpc_eval_forward", NULL}};
  if (b->programs[2]) u.programs[u.nprograms++] = (CodegenProgram){b->programs[2], {"bpc_sample_forward", NULL}};
  if (b->programs[TB_PREDICT])
    u.programs[u.nprograms++] = (CodegenProgram){b->programs[TB_PREDICT], {"bpc_predict_forward", NULL}};
  if (b->programs[TB_DECODE])
    u.programs[u.nprograms++] = (CodegenProgram){b->programs[TB_DECODE], {"bpc_decode_forward", NULL}};
  return u;
}
