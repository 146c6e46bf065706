// desc.c — reads the model description of docs/ABI.md (the JSON the
// compiler embeds in every trainer) into a Desc. The compiler wrote it, so a
// malformed one is a bug on that side: reported as an error, never a crash.
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "bpc_desc.h"
#include "trainer.h"

typedef struct {
  char *err;
  size_t errlen;
  bool bad;
} P;

static void fail(P *p, const char *fmt, ...) {
  if (p->bad) return;
  p->bad = true;
  int k = snprintf(p->err, p->errlen, "model description: ");
  va_list ap;
  va_start(ap, fmt);
  if (k >= 0 && (size_t)k < p->errlen) vsnprintf(p->err + k, p->errlen - (size_t)k, fmt, ap);
  va_end(ap);
}

static const cJSON *get(const cJSON *o, const char *k) {
  return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
}

static double num(P *p, const cJSON *o, const char *k, double dflt) {
  const cJSON *v = get(o, k);
  if (!v || cJSON_IsNull(v)) return dflt;
  if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
  if (!cJSON_IsNumber(v)) fail(p, "'%s' is not a number", k);
  return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static int64_t inum(P *p, const cJSON *o, const char *k, int64_t dflt) { return (int64_t)num(p, o, k, (double)dflt); }

static char *str(const cJSON *o, const char *k) {
  const cJSON *v = get(o, k);
  return cJSON_IsString(v) ? strdup(v->valuestring) : NULL;
}

static bool flag(const cJSON *o, const char *k, bool dflt) {
  const cJSON *v = get(o, k);
  return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

#define ROLE_NAME(r) DR_##r,
static const char *const role_names[] = {BPC_DESC_ROLES(ROLE_NAME)};
#undef ROLE_NAME
_Static_assert(sizeof role_names / sizeof *role_names == ROLE_OTHER + 1, "a role name per Role");
const char *role_name(Role r) { return role_names[r]; }

static const char *const init_names[] = {BPC_DESC_INITS(BPC_DESC_STRING)};
_Static_assert(sizeof init_names / sizeof *init_names == BPCRT_INIT_HE_NORMAL + 1, "an init name per kind");
static const char *const format_names[] = {BPC_DESC_FORMATS(BPC_DESC_STRING)};
_Static_assert(sizeof format_names / sizeof *format_names == FMT_IDX, "a format name per FMT_* after FMT_NONE");
static const char *const schedule_names[] = {BPC_DESC_SCHEDULES(BPC_DESC_STRING)};
_Static_assert(sizeof schedule_names / sizeof *schedule_names == SCHED_COSINE + 1, "a schedule name per SchedType");

// The index of s in names[0, n), or -1.
static int name_index(const char *s, const char *const *names, int n) {
  for (int k = 0; s && k < n; k++)
    if (!strcmp(s, names[k])) return k;
  return -1;
}

const char *schedule_name(SchedType t) { return schedule_names[t]; }

static bool dtype_of(const char *s, bpcrt_dtype *dt) {
  if (!s) return false;
  if (!strcmp(s, "f32") || !strcmp(s, "F32")) return *dt = BPCRT_F32, true;
  if (!strcmp(s, "f64") || !strcmp(s, "F64")) return *dt = BPCRT_F64, true;
  if (!strcmp(s, "i32") || !strcmp(s, "I32")) return *dt = BPCRT_I32, true;
  return false;
}

static void tensor(P *p, const cJSON *j, TDesc *t, int64_t arena) {
  t->name = str(j, DK_name);
  char *role = str(j, DK_role), *dt = str(j, DK_dtype);
  t->role = ROLE_OTHER;
  for (int r = 0; r < ROLE_OTHER; r++)
    if (role && !strcmp(role, role_names[r])) t->role = (Role)r;
  if (!t->name || !dtype_of(dt, &t->dtype)) fail(p, "a tensor without a name or a dtype");
  const cJSON *shape = get(j, DK_shape);
  t->rank = cJSON_GetArraySize(shape);
  if (!cJSON_IsArray(shape) || t->rank > BPCRT_MAX_RANK) fail(p, "tensor '%s': bad shape", t->name ? t->name : "?");
  t->numel = 1;
  for (int i = 0; i < t->rank && i < BPCRT_MAX_RANK; i++) {
    const cJSON *d = cJSON_GetArrayItem(shape, i);
    t->shape[i] = cJSON_IsNumber(d) ? (int64_t)d->valuedouble : -1;
    if (t->shape[i] < 0 || t->shape[i] > ((int64_t)1 << 40))
      fail(p, "tensor '%s': bad shape", t->name ? t->name : "?");
    else
      t->numel *= t->shape[i];
  }
  t->offset = inum(p, j, DK_offset, -1);
  if (t->offset < 0 || t->offset + t->numel * (int64_t)bpcrt_dtype_size(t->dtype) > arena)
    fail(p, "tensor '%s' lies outside its arena", t->name ? t->name : "?");
  const cJSON *init = get(j, DK_init);
  char *kind = str(init, DK_kind);
  int ik = name_index(kind, init_names, (int)(sizeof init_names / sizeof *init_names));
  t->init_kind = ik < 0 ? BPCRT_INIT_ZEROS : ik;
  t->init_a = num(p, init, DK_a, 0);
  t->init_b = num(p, init, DK_b, 0);
  t->fan_in = inum(p, init, DK_fan_in, 1);
  t->fan_out = inum(p, init, DK_fan_out, 1);
  t->init_value = num(p, init, DK_value, 0);
  t->trainable = flag(j, DK_trainable, true);
  t->from = str(j, DK_from);
  const cJSON *lora = get(j, DK_lora);
  if (lora) {
    t->lora_a = str(lora, DK_a), t->lora_b = str(lora, DK_b);
    t->lora_scale = num(p, lora, DK_scale, 0);
    if (!t->lora_a || !t->lora_b) fail(p, "tensor '%s': lora without its adapters' names", t->name ? t->name : "?");
  }
  t->transpose = flag(j, DK_transpose, false);
  if (t->transpose && t->rank < 2) fail(p, "tensor '%s': transpose needs rank 2 or more", t->name ? t->name : "?");
  t->limit = inum(p, j, DK_limit, 0);
  t->limit_code = (int)inum(p, j, DK_limit_code, 0);
  t->ready = (int)inum(p, j, DK_ready, -1);
  free(role), free(dt), free(kind);
}

static void program(P *p, const cJSON *j, Prog *g) {
  if (!cJSON_IsObject(j)) return;
  g->present = true;
  g->arena = inum(p, j, DK_arena, -1);
  g->scratch = inum(p, j, DK_scratch, 0);
  g->status = inum(p, j, DK_status, -1);
  if (g->arena < 0 || g->scratch < 0 || g->status < 0 || g->status + 24 > g->arena || g->status % 8)
    fail(p, "a program with a bad arena, scratch or status");
  const cJSON *ts = get(j, DK_tensors);
  g->n = cJSON_GetArraySize(ts);
  g->t = calloc((size_t)g->n + 1, sizeof *g->t);
  for (int i = 0; i < g->n; i++) tensor(p, cJSON_GetArrayItem(ts, i), &g->t[i], g->arena);
  const cJSON *ks = get(j, DK_kernels);  // optional
  g->nk = cJSON_IsArray(ks) ? cJSON_GetArraySize(ks) : 0;
  g->k = calloc((size_t)g->nk + 1, sizeof *g->k);
  for (int i = 0; i < g->nk; i++) {
    const cJSON *k = cJSON_GetArrayItem(ks, i);
    char *t = str(k, DK_text);
    g->k[i].text = t ? t : strdup("?");
    t = str(k, DK_kind);
    g->k[i].kind = t ? t : strdup(g->k[i].text);
    g->k[i].flops = num(p, k, DK_flops, 0);
    g->k[i].bytes = num(p, k, DK_bytes, 0);
    g->k[i].group = (int)inum(p, k, DK_group, 0);
    if (g->k[i].group >= g->nk - i || g->k[i].group < -1) g->k[i].group = 0;
  }
  for (int i = 0; i < g->nk; i++)  // a group's first kernel reports for all of them
    for (int m = 1; m <= g->k[i].group && i + m < g->nk; m++)
      g->k[i].flops += g->k[i + m].flops, g->k[i].bytes += g->k[i + m].bytes;
}

static void data(P *p, const cJSON *j, DataDesc *d) {
  if (!cJSON_IsObject(j)) return;
  char *fmt = str(j, DK_format);
  int fk = name_index(fmt, format_names, (int)(sizeof format_names / sizeof *format_names));
  d->format = fk < 0 ? FMT_NONE : (DataFormat)(FMT_TEXT + fk);
  if (d->format == FMT_NONE) fail(p, "data format '%s' is not text, csv, safetensors or idx", fmt ? fmt : "?");
  free(fmt);
  d->path = str(j, DK_path);
  d->images = str(j, DK_images);
  d->labels = str(j, DK_labels);
  d->x = str(j, DK_x);
  d->y = str(j, DK_y);
  d->tokens = str(j, DK_tokens);
  d->targets = str(j, DK_targets);
  if (!d->x) d->x = strdup("x");
  if (!d->y) d->y = strdup("y");
  if (!d->tokens) d->tokens = strdup("tokens");
  if (!d->targets) d->targets = strdup("targets");
  d->header = flag(j, DK_header, false);
  const cJSON *tx = get(j, DK_text);
  d->text_col = -1;
  if (tx) {
    d->text_col = inum(p, tx, DK_column, -1);
    d->vocab = str(tx, DK_vocab), d->text_ids = str(tx, DK_ids), d->text_mask = str(tx, DK_mask);
    d->cased = flag(tx, DK_cased, false);
    if (d->text_col < 0 || !d->vocab || !d->text_ids) fail(p, "a text column without its column, vocab or ids");
  }
  d->shuffle = flag(j, DK_shuffle, true);
  d->val_fraction = num(p, j, DK_val_fraction, d->format == FMT_TEXT ? 0.1 : 0);
  if (!(d->val_fraction >= 0 && d->val_fraction < 1)) fail(p, "val_fraction must be in [0, 1)");
  const cJSON *cols = get(j, DK_columns), *c;
  d->cols = calloc((size_t)cJSON_GetArraySize(cols) + 1, sizeof *d->cols);
  cJSON_ArrayForEach(c, cols) {
    CsvCol *k = &d->cols[d->ncols++];
    k->name = strdup(c->string);
    if (cJSON_IsNumber(c)) {  // tolerate the short form {"y": 64}
      k->lo = (int64_t)c->valuedouble, k->hi = k->lo + 1;
    } else {
      k->lo = inum(p, c, DK_lo, -1), k->hi = inum(p, c, DK_hi, -1);
      k->range = flag(c, DK_range, false);
    }
    if (k->lo < 0 || k->hi <= k->lo) fail(p, "csv column '%s': bad range", k->name);
  }
  // scale: {"x": 0.0625}; {"*": v} (from a bare `scale: v`); or one number
  const cJSON *sc = get(j, DK_scale);
  d->scale = calloc((size_t)cJSON_GetArraySize(sc) + 2, sizeof *d->scale);
  if (cJSON_IsNumber(sc)) d->scale[d->nscale++] = (Scale){strdup("*"), sc->valuedouble};
  const cJSON *sco = cJSON_IsObject(sc) ? sc : NULL;
  cJSON_ArrayForEach(c, sco) if (cJSON_IsNumber(c)) d->scale[d->nscale++] = (Scale){strdup(c->string), c->valuedouble};
}

static void train(P *p, const cJSON *j, TrainCfg *t) {
  const cJSON *o = get(j, DK_optimizer), *s = get(j, DK_schedule);
  t->opt_type = str(o, DK_type);
  if (!t->opt_type) t->opt_type = strdup("adam");
  t->lr = num(p, o, DK_lr, 1e-3);
  const cJSON *betas = get(o, DK_betas);
  t->beta1 = cJSON_IsNumber(cJSON_GetArrayItem(betas, 0)) ? cJSON_GetArrayItem(betas, 0)->valuedouble : 0.9;
  t->beta2 = cJSON_IsNumber(cJSON_GetArrayItem(betas, 1)) ? cJSON_GetArrayItem(betas, 1)->valuedouble : 0.999;
  t->lr_decay = num(p, o, DK_lr_decay, 0);
  char *st = str(s, DK_type);
  int sk = name_index(st, schedule_names, (int)(sizeof schedule_names / sizeof *schedule_names));
  t->sched = sk < 0 ? SCHED_CONSTANT : (SchedType)sk;
  if (st && sk < 0) fail(p, "unknown schedule '%s'", st);
  free(st);
  t->warmup = inum(p, s, DK_warmup_steps, 0);
  t->min_lr = num(p, s, DK_min_lr, 0);
  t->step_size = inum(p, s, DK_step_size, 0);
  t->gamma = num(p, s, DK_gamma, 0.1);
  t->grad_accum = inum(p, j, DK_grad_accum, 1);
  t->steps = inum(p, j, DK_steps, 0);
  t->epochs = inum(p, j, DK_epochs, 0);
  t->eval_every = inum(p, j, DK_eval_every, 0);
  t->checkpoint_every = inum(p, j, DK_checkpoint_every, 0);
  t->seed = (uint64_t)num(p, j, DK_seed, 0);
  if (t->grad_accum < 1 || t->steps < 0 || t->epochs < 0 || t->warmup < 0) fail(p, "bad train section");
}

static char *dims_text(const cJSON *dims) {
  size_t cap = 256, len = 0;
  char *s = calloc(cap, 1);
  const cJSON *d;
  cJSON_ArrayForEach(d, dims) {
    char b[160];
    int k = snprintf(b, sizeof b, "%s%s=%.17g", len ? " " : "", d->string, cJSON_IsNumber(d) ? d->valuedouble : 0);
    if (k < 0 || (size_t)k >= sizeof b) continue;
    if (len + (size_t)k + 1 > cap) s = realloc(s, cap = 2 * (len + (size_t)k + 1));
    memcpy(s + len, b, (size_t)k + 1);
    len += (size_t)k;
  }
  return s;
}

bool desc_parse(Desc *d, const char *json, char *err, size_t errlen) {
  memset(d, 0, sizeof *d);
  P p = {err, errlen, false};
  cJSON *root = cJSON_Parse(json);
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    fail(&p, "not a JSON object");
    return false;
  }
  if (num(&p, root, DK_abi, 0) != 1) fail(&p, "ABI version %g, this runtime reads version 1", num(&p, root, DK_abi, 0));
  d->name = str(root, DK_name);
  d->hash = str(root, DK_hash);
  d->model_path = str(root, DK_model_path);
  d->compile = str(root, DK_compile);
  char *dt = str(root, DK_dtype);
  if (!d->name || !d->hash || !dtype_of(dt, &d->dtype) || d->dtype == BPCRT_I32)
    fail(&p, "missing name, hash or float dtype");
  free(dt);
  char *prec = str(root, DK_precision);
  d->bf16 = prec && !strcmp(prec, "bf16");
  free(prec);
  d->dims_text = dims_text(get(root, DK_dims));
  train(&p, get(root, DK_train), &d->train);
  const cJSON *data_j = get(root, DK_data);
  data(&p, get(data_j, DK_train), &d->data_train);
  data(&p, get(data_j, DK_test), &d->data_test);
  const cJSON *gen = get(root, DK_generate);
  d->gen_tokens = str(gen, DK_tokens);
  d->gen_logits = str(gen, DK_logits);
  const cJSON *progs = get(root, DK_programs);
  program(&p, get(progs, DK_train), &d->prog[PROG_TRAIN]);
  program(&p, get(progs, DK_eval), &d->prog[PROG_EVAL]);
  program(&p, get(progs, DK_sample), &d->prog[PROG_SAMPLE]);
  program(&p, get(progs, DK_predict), &d->prog[PROG_PREDICT]);
  program(&p, get(progs, DK_decode), &d->prog[PROG_DECODE]);
  d->predict_error = str(root, DK_predict_error);
  d->decode_error = str(root, DK_decode_error);
  for (int k = 0; k < NPROG; k++)
    for (int i = 0; i < d->prog[k].n; i++) d->has_lora |= d->prog[k].t[i].lora_a != NULL;
  if (!d->prog[PROG_TRAIN].present && !d->prog[PROG_PREDICT].present) fail(&p, "no train and no predict program");
  cJSON_Delete(root);
  return !p.bad;
}

static void data_desc_free(DataDesc *d) {
  free(d->path), free(d->images), free(d->labels), free(d->x), free(d->y);
  free(d->tokens), free(d->targets), free(d->vocab), free(d->text_ids), free(d->text_mask);
  for (int i = 0; i < d->ncols; i++) free(d->cols[i].name);
  for (int i = 0; i < d->nscale; i++) free(d->scale[i].name);
  free(d->cols), free(d->scale);
}

void desc_free(Desc *d) {
  free(d->name), free(d->hash), free(d->model_path), free(d->compile), free(d->dims_text);
  free(d->train.opt_type), free(d->gen_tokens), free(d->gen_logits), free(d->predict_error);
  free(d->decode_error);
  data_desc_free(&d->data_train);
  data_desc_free(&d->data_test);
  for (int k = 0; k < NPROG; k++) {
    for (int i = 0; i < d->prog[k].n; i++)
      free(d->prog[k].t[i].name), free(d->prog[k].t[i].from), free(d->prog[k].t[i].lora_a),
          free(d->prog[k].t[i].lora_b);
    free(d->prog[k].t);
    for (int i = 0; i < d->prog[k].nk; i++) free(d->prog[k].k[i].text), free(d->prog[k].k[i].kind);
    free(d->prog[k].k);
  }
  memset(d, 0, sizeof *d);
}

const TDesc *prog_find(const Prog *p, const char *name) {
  for (int i = 0; i < p->n; i++)
    if (p->t[i].name && !strcmp(p->t[i].name, name)) return &p->t[i];
  return NULL;
}
