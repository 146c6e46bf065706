// describe.c — the model description a trainer reads (docs/ABI.md): the
// model's train, data and generate sections with every default filled in,
// and for each compiled program its arena size and every tensor the runtime
// touches (name, role, dtype, shape, byte offset, init). Built with cJSON;
// the returned string is the caller's to free().
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "bpc_desc.h"
#include "bpcc.h"

static const char *desc_init_name(InitKind k) {
  static const char *const n[] = {BPC_DESC_INITS(BPC_DESC_STRING)};
  return n[k];
}

static cJSON *shape_json(const Shape *s) {
  cJSON *a = cJSON_CreateArray();
  for (int i = 0; i < s->rank; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)s->d[i]));
  return a;
}

static cJSON *tensor(cJSON *list, const Program *p, int node, const char *name, const char *role) {
  const Node *n = graph_node(p->g, node);
  BPC_ASSERT(p->mem.offset[node] >= 0);
  cJSON *t = cJSON_CreateObject();
  cJSON_AddStringToObject(t, DK_name, name);
  cJSON_AddStringToObject(t, DK_role, role);
  cJSON_AddStringToObject(t, DK_dtype, dtype_name(n->dtype));
  cJSON_AddItemToObject(t, DK_shape, shape_json(&n->shape));
  cJSON_AddNumberToObject(t, DK_offset, (double)p->mem.offset[node]);
  cJSON_AddItemToArray(list, t);
  return t;
}

// The last kernel of the step (phase 0) that writes the storage of `id`
// (as fuse.c reckons writes: a kernel's root and outs; a state copy writes
// a state leaf, never a gradient):
// the value is final once that kernel is done, which lets a data-parallel
// trainer start summing a gradient over ranks while the backward goes on
// (SPEC 6.7). -1: no kernel writes it.
static int last_writer(const Program *p, int id) {
  int s = p->alias[id], last = -1;
  for (int i = 0; i < p->kernels.n; i++) {
    const Kernel *k = &p->kernels.v[i];
    if (k->phase != 0 || k->kind == KK_ALIAS || k->kind == KK_STATE) continue;
    bool w = p->alias[k->root] == s;
    for (int o = 0; o < k->nouts && !w; o++) w = p->alias[k->outs[o]] == s;
    if (w) last = i;
  }
  return last;
}

// The bound an int input's values must stay below where it feeds an op
// that checks it (its op's Backend.index_limit: cross_entropy's labels,
// the class count; embedding ids, the table's rows), the smallest over its
// uses; 0 when none. *code is
// the status code that op reports (BPCK_ERR_*), so the trainer can check
// a whole data file when it loads it, with the words the step would use.
static int64_t index_limit(const Graph *g, int input, int *code) {
  int64_t lim = 0;
  *code = 0;
  for (int i = 0; i < g->nodes.n; i++) {
    const Node *n = g->nodes.v[i];
    int64_t l = 0;
    int c = 0;
    const Backend *be = op_info(n->op)->be;
    if (be->index_limit) l = be->index_limit(g, n, input, &c);
    if (l > 0 && (lim == 0 || l < lim)) lim = l, *code = c;
  }
  return lim;
}

static cJSON *program_json(const Program *p) {
  const Graph *g = p->g;
  cJSON *o = cJSON_CreateObject(), *ts = cJSON_CreateArray();
  cJSON_AddNumberToObject(o, DK_arena, (double)p->mem.arena_bytes);
  cJSON_AddNumberToObject(o, DK_scratch, (double)p->mem.scratch_per_thread);
  cJSON_AddNumberToObject(o, DK_status, (double)p->mem.status_offset);
  for (int i = 0; i < g->params.n; i++) {
    const GParam *gp = &g->params.v[i];
    const Shape *s = &graph_node(g, gp->node)->shape;
    cJSON *t = tensor(ts, p, gp->node, gp->name, DR_param);
    cJSON *init = cJSON_AddObjectToObject(t, DK_init);
    cJSON_AddStringToObject(init, DK_kind, desc_init_name(gp->init.kind));
    cJSON_AddNumberToObject(init, DK_a, gp->init.a);
    cJSON_AddNumberToObject(init, DK_b, gp->init.b);
    int64_t fan_in = 1;
    for (int d = 0; d + 1 < s->rank; d++) fan_in *= s->d[d];
    cJSON_AddNumberToObject(init, DK_fan_in, (double)fan_in);
    cJSON_AddNumberToObject(init, DK_fan_out, (double)(s->rank ? s->d[s->rank - 1] : 1));
    cJSON_AddBoolToObject(t, DK_trainable, gp->trainable);
    cJSON_AddBoolToObject(t, DK_decay, gp->decay);
    if (gp->from) cJSON_AddStringToObject(t, DK_from, gp->from);
    if (gp->transpose) cJSON_AddBoolToObject(t, DK_transpose, true);
    if (gp->lora_a) {
      cJSON *l = cJSON_AddObjectToObject(t, DK_lora);
      cJSON_AddStringToObject(l, DK_a, gp->lora_a);
      cJSON_AddStringToObject(l, DK_b, gp->lora_b);
      cJSON_AddNumberToObject(l, DK_scale, gp->lora_scale);
    }
  }
  char name[512];
  for (int i = 0; i < g->params.n; i++) {
    if (g->params.v[i].grad < 0 || p->mem.offset[g->params.v[i].grad] < 0) continue;
    snprintf(name, sizeof name, "grad.%s", g->params.v[i].name);
    cJSON *t = tensor(ts, p, g->params.v[i].grad, name, DR_grad);
    cJSON_AddNumberToObject(t, DK_ready, last_writer(p, g->params.v[i].grad));
  }
  for (int i = 0; i < g->states.n; i++) {
    const GState *st = &g->states.v[i];
    if (p->mem.offset[st->node] < 0) continue;
    snprintf(name, sizeof name, st->opt ? "%s" : "state.%s", st->name);
    cJSON *t = tensor(ts, p, st->node, name, st->opt ? DR_opt : DR_state);
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(t, DK_init), DK_value, st->init);
  }
  for (int i = 0; i < g->inputs.n; i++)
    if (p->mem.offset[g->inputs.v[i].node] >= 0) {
      cJSON *t = tensor(ts, p, g->inputs.v[i].node, g->inputs.v[i].name, DR_input);
      int code;
      int64_t lim = index_limit(g, g->inputs.v[i].node, &code);
      if (lim > 0) {
        cJSON_AddNumberToObject(t, DK_limit, (double)lim);
        cJSON_AddNumberToObject(t, DK_limit_code, code);
      }
    }
  for (int i = 0; i < g->scalars.n; i++) tensor(ts, p, g->scalars.v[i].node, g->scalars.v[i].name, DR_scalar);
  if (g->loss >= 0) tensor(ts, p, g->loss, "loss", DR_loss);
  for (int i = 0; i < g->metrics.n; i++)
    if (strcmp(g->metrics.v[i].name, "loss")) tensor(ts, p, g->metrics.v[i].node, g->metrics.v[i].name, DR_metric);
  for (int i = 0; i < g->outputs.n; i++) tensor(ts, p, g->outputs.v[i].node, g->outputs.v[i].name, DR_output);
  cJSON_AddItemToObject(o, DK_tensors, ts);
  // The kernels, for the trainer's --profile: the kernel index the entry
  // points report (bpcrt_profile) indexes this list.
  cJSON *ks = cJSON_AddArrayToObject(o, DK_kernels);
  char text[1200];
  for (int i = 0; i < p->kernels.n; i++) {
    cJSON *k = cJSON_CreateObject();
    snprintf(name, sizeof name, "k%d", i);
    kernel_text(p, i, text, sizeof text, true);
    cJSON_AddStringToObject(k, DK_name, name);
    cJSON_AddStringToObject(k, DK_text, text);
    kernel_text(p, i, text, sizeof text, false);
    cJSON_AddStringToObject(k, DK_kind, text);
    cJSON_AddNumberToObject(k, DK_flops, (double)p->kernels.v[i].flops);
    cJSON_AddNumberToObject(k, DK_bytes, (double)p->kernels.v[i].bytes);
    cJSON_AddNumberToObject(k, DK_group, p->kernels.v[i].group);
    cJSON_AddItemToArray(ks, k);
  }
  return o;
}

_Static_assert(0 BPC_DESC_OPTIMIZERS(BPC_DESC_COUNT) == OPT_ADAGRAD + 1, "an optimizer name per OptKind");
_Static_assert(0 BPC_DESC_SCHEDULES(BPC_DESC_COUNT) == SCHED_COSINE + 1, "a schedule name per SchedKind");
_Static_assert(0 BPC_DESC_FORMATS(BPC_DESC_COUNT) == DATA_IDX + 1, "a format name per DataFormat");
_Static_assert(0 BPC_DESC_INITS(BPC_DESC_COUNT) == INIT_HE_NORMAL + 1, "an init name per InitKind");

static const char *opt_name(OptKind k) {
  static const char *const n[] = {BPC_DESC_OPTIMIZERS(BPC_DESC_STRING)};
  return n[k];
}

static const char *sched_name(SchedKind k) {
  static const char *const n[] = {BPC_DESC_SCHEDULES(BPC_DESC_STRING)};
  return n[k];
}

static cJSON *train_json(const TrainCfg *t) {
  cJSON *o = cJSON_CreateObject(), *opt = cJSON_AddObjectToObject(o, DK_optimizer);
  const OptimCfg *c = &t->opt;
  cJSON_AddStringToObject(opt, DK_type, opt_name(c->kind));
  cJSON_AddNumberToObject(opt, DK_lr, c->lr);
  cJSON *betas = cJSON_AddArrayToObject(opt, DK_betas);
  cJSON_AddItemToArray(betas, cJSON_CreateNumber(c->beta1));
  cJSON_AddItemToArray(betas, cJSON_CreateNumber(c->beta2));
  cJSON_AddNumberToObject(opt, DK_eps, c->eps);
  cJSON_AddNumberToObject(opt, DK_weight_decay, c->weight_decay);
  cJSON_AddNumberToObject(opt, DK_momentum, c->momentum);
  cJSON_AddNumberToObject(opt, DK_dampening, c->dampening);
  cJSON_AddBoolToObject(opt, DK_nesterov, c->nesterov);
  cJSON_AddNumberToObject(opt, DK_alpha, c->alpha);
  cJSON_AddBoolToObject(opt, DK_centered, c->centered);
  cJSON_AddNumberToObject(opt, DK_lr_decay, c->lr_decay);
  cJSON_AddNumberToObject(opt, DK_initial_accumulator_value, c->initial_accumulator_value);
  cJSON *s = cJSON_AddObjectToObject(o, DK_schedule);
  cJSON_AddStringToObject(s, DK_type, sched_name(t->sched.kind));
  cJSON_AddNumberToObject(s, DK_warmup_steps, (double)t->sched.warmup_steps);
  cJSON_AddNumberToObject(s, DK_min_lr, t->sched.min_lr);
  cJSON_AddNumberToObject(s, DK_step_size, (double)t->sched.step_size);
  cJSON_AddNumberToObject(s, DK_gamma, t->sched.gamma);
  cJSON_AddNumberToObject(o, DK_clip_grad_norm, t->clip_grad_norm);
  cJSON_AddNumberToObject(o, DK_grad_accum, (double)t->grad_accum);
  cJSON_AddNumberToObject(o, DK_steps, (double)t->steps);
  cJSON_AddNumberToObject(o, DK_epochs, (double)t->epochs);
  cJSON_AddNumberToObject(o, DK_eval_every, (double)t->eval_every);
  cJSON_AddNumberToObject(o, DK_checkpoint_every, (double)t->checkpoint_every);
  cJSON_AddNumberToObject(o, DK_seed, (double)t->seed);
  return o;
}

static const char *format_name(DataFormat f) {
  static const char *const n[] = {BPC_DESC_FORMATS(BPC_DESC_STRING)};
  return n[f];
}

static cJSON *data_json(const DataCfg *d) {
  if (!d->present) return cJSON_CreateNull();
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, DK_format, format_name(d->format));
#define STR(k, v) \
  if (v) cJSON_AddStringToObject(o, k, v)
  STR(DK_path, d->path);
  STR(DK_tokens, d->tokens);
  STR(DK_targets, d->targets);
  STR(DK_images, d->images);
  STR(DK_labels, d->labels);
  STR(DK_x, d->x);
  STR(DK_y, d->y);
#undef STR
  cJSON_AddNumberToObject(o, DK_val_fraction, d->val_fraction);
  cJSON_AddBoolToObject(o, DK_header, d->header);
  cJSON_AddBoolToObject(o, DK_shuffle, d->shuffle);
  cJSON *cols = cJSON_AddObjectToObject(o, DK_columns);
  for (int i = 0; i < d->ncolumns; i++) {
    cJSON *c = cJSON_AddObjectToObject(cols, d->columns[i].input);
    cJSON_AddNumberToObject(c, DK_lo, (double)d->columns[i].lo);
    cJSON_AddNumberToObject(c, DK_hi, (double)d->columns[i].hi);
    cJSON_AddBoolToObject(c, DK_range, d->columns[i].is_range);
  }
  if (d->text_col >= 0 && d->vocab && d->text_ids) {
    cJSON *t = cJSON_AddObjectToObject(o, DK_text);
    cJSON_AddNumberToObject(t, DK_column, (double)d->text_col);
    cJSON_AddStringToObject(t, DK_vocab, d->vocab);
    cJSON_AddStringToObject(t, DK_ids, d->text_ids);
    if (d->text_mask) cJSON_AddStringToObject(t, DK_mask, d->text_mask);
    cJSON_AddBoolToObject(t, DK_cased, d->cased);
  }
  cJSON *scale = cJSON_AddObjectToObject(o, DK_scale);
  for (int i = 0; i < d->nscales; i++)
    cJSON_AddNumberToObject(scale, d->scales[i].input ? d->scales[i].input : "*", d->scales[i].scale);
  return o;
}

// FNV-1a over the train program's tensor layout and the dtype: two models
// with the same hash have checkpoints of the same names, shapes and dtypes.
// A grad's "ready" (when the backward finishes it) says nothing about the
// checkpoint: left out, so it did not change any model's hash.
static uint64_t layout_hash(const cJSON *train) {
  cJSON *ts = cJSON_Duplicate(cJSON_GetObjectItem(train, DK_tensors), 1);
  for (cJSON *t = ts ? ts->child : NULL; t; t = t->next) cJSON_DeleteItemFromObject(t, DK_ready);
  char *text = cJSON_PrintUnformatted(ts);
  uint64_t h = bpcrt_fnv1a64(text);
  free(text);
  cJSON_Delete(ts);
  return h;
}

char *describe_model(const Model *m, const Graph *fwd, const Program *train, const Program *eval, const Program *sample,
                     const Program *predict, const char *predict_error, const Program *decode, const char *decode_error,
                     const char *compile_flags) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, DK_abi, 1);
  cJSON_AddStringToObject(o, DK_name, m->name);
  cJSON_AddStringToObject(o, DK_dtype, dtype_name(fwd->fdtype));
  cJSON_AddStringToObject(o, DK_precision, graph_bf16(fwd) ? "bf16" : dtype_name(fwd->fdtype));
  cJSON_AddStringToObject(o, DK_model_path, m->file->path);
  cJSON_AddStringToObject(o, DK_compile, compile_flags);
  cJSON *dims = cJSON_AddObjectToObject(o, DK_dims);
  for (int i = 0; i < fwd->dims.n; i++)
    cJSON_AddNumberToObject(dims, fwd->dims.v[i].name, (double)fwd->dims.v[i].value);
  cJSON_AddItemToObject(o, DK_train, train_json(&m->train));
  cJSON *data = cJSON_AddObjectToObject(o, DK_data);
  cJSON_AddItemToObject(data, DK_train, data_json(&m->data_train));
  cJSON_AddItemToObject(data, DK_test, data_json(&m->data_test));
  if (m->gen.present) {
    cJSON *gen = cJSON_AddObjectToObject(o, DK_generate);
    cJSON_AddStringToObject(gen, DK_tokens, m->gen.tokens);
    cJSON_AddStringToObject(gen, DK_logits, m->gen.logits);
  } else {
    cJSON_AddNullToObject(o, DK_generate);
  }
  cJSON *progs = cJSON_AddObjectToObject(o, DK_programs);
  // a model without `loss:` has no train and eval programs, only predict
  cJSON *tj = train ? program_json(train) : NULL, *pj = predict ? program_json(predict) : NULL;
  if (tj) cJSON_AddItemToObject(progs, DK_train, tj);
  if (eval) cJSON_AddItemToObject(progs, DK_eval, program_json(eval));
  if (sample) cJSON_AddItemToObject(progs, DK_sample, program_json(sample));
  if (pj) cJSON_AddItemToObject(progs, DK_predict, pj);
  if (decode) cJSON_AddItemToObject(progs, DK_decode, program_json(decode));
  if (predict_error) cJSON_AddStringToObject(o, DK_predict_error, predict_error);
  if (decode_error) cJSON_AddStringToObject(o, DK_decode_error, decode_error);
  char hash[32];
  snprintf(hash, sizeof hash, "%016llx", (unsigned long long)layout_hash(tj ? tj : pj));
  cJSON_AddStringToObject(o, DK_hash, hash);
  char *text = cJSON_Print(o);
  cJSON_Delete(o);
  return text;
}
