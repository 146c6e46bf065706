// test_foreign.c — params from another framework's checkpoint (SPEC 6.3),
// end to end through the real binary: `from` names with `{i}` under repeat,
// `transpose`, F16/BF16/F32/F64 converted, tensors no param names ignored,
// params without `from` by their own name or their init, every mismatch
// listed in one error with nothing written, and checkpoints that keep bpc's
// names; `predict` (SPEC 6.2) on those params against the forward computed
// here; and LoRA adapters on frozen weights (checkpoints hold what trains,
// the frozen base is named in them, `merge` folds the adapters back); a csv
// data section with a text column tokenized at load.
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bpc.h"
#include "testutil.h"

static char tmpdir[256];

static void setup(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/bpc_foreign_XXXXXX");
  cr_assert(mkdtemp(tmpdir));
}

static void teardown(void) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  cr_assert_eq(system(cmd), 0);
}

TestSuite(foreign, .init = setup, .fini = teardown, .timeout = 120);

static const char *in_tmp(const char *name) {
  static char buf[8][512];
  static int k;
  char *p = buf[k++ % 8];
  snprintf(p, 512, "%s/%s", tmpdir, name);
  return p;
}

// Runs `bpc ARGS` in tmpdir, stdout+stderr into *out; the exit code.
static int run(char **out, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = run_bpc_in(tmpdir, out, fmt, ap);
  va_end(ap);
  return rc;
}

// Two checkpoints in tmpdir hold the same tensors with the same bits.
static void assert_same_files(const char *a, const char *b) {
  bpcrt_tensors x, y;
  cr_assert_eq(bpcrt_st_read(in_tmp(a), &x, NULL, 0), 0, "%s", a);
  cr_assert_eq(bpcrt_st_read(in_tmp(b), &y, NULL, 0), 0, "%s", b);
  cr_assert_eq(x.n, y.n, "%s and %s hold different tensors", a, b);
  for (int i = 0; i < x.n; i++) {
    const bpcrt_tensor *t = bpcrt_st_find(&y, x.t[i].name);
    cr_assert(t && t->nbytes == x.t[i].nbytes && !memcmp(t->data, x.t[i].data, t->nbytes), "'%s' differs in %s and %s",
              x.t[i].name, a, b);
  }
  bpcrt_st_free(&x), bpcrt_st_free(&y);
}

static void spit(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  cr_assert(f);
  fputs(text, f);
  fclose(f);
}

static bool exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

// A two-layer model in the shape of a Hugging Face encoder: an embedding
// named `embeddings.weight`, layers `layer.{i}.dense` stored [out, in], one
// param by its own name and one that no file has.
static const char *model =
    "bpc: 1\n"
    "name: foreign\n"
    "dims: {B: 2, T: 3, C: 4, V: 5}\n"
    "inputs:\n"
    "  ids: {shape: [B, T], dtype: i32}\n"
    "  y: {shape: [B, T, C]}\n"
    "params:\n"
    "  emb: {shape: [V, C], init: normal(0.02), from: embeddings.weight}\n"
    "  g: {shape: [C], init: zeros}\n"
    "  extra: {shape: [C], init: ones}\n"
    "functions:\n"
    "  layer:\n"
    "    args: [x]\n"
    "    params:\n"
    "      w: {shape: [C, C], init: normal(0.02), from: \"layer.{i}.dense.weight\", transpose: true}\n"
    "      b: {shape: [C], init: zeros, from: \"layer.{i}.dense.bias\"}\n"
    "    graph:\n"
    "      h: tanh(dropout(x, 0.5) @ w + b)\n"
    "    return: h\n"
    "graph:\n"
    "  x0: embedding(ids, emb) * g + extra\n"
    "  xl: repeat(layer, x0, times=2)\n"
    "  loss: mse(xl, y)\n"
    "loss: loss\n"
    "outputs: [xl]\n"
    "train:\n"
    "  optimizer: {type: sgd, lr: 0}\n"
    "  steps: 1\n"
    "data:\n"
    "  train: {format: safetensors, path: data.safetensors}\n";

static uint16_t f16_bits(double v) {  // exact for the small dyadic values used here
  float f = (float)v;
  uint32_t u;
  memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000, e = (u >> 23) & 0xff, m = u & 0x7fffff;
  if (!f) return (uint16_t)sign;
  return (uint16_t)(sign | ((e - 112) << 10) | (m >> 13));
}

// The value the file holds for element (r, c) of tensor `which` (rows R).
static double val(int which, int64_t r, int64_t c) { return (which + 1) * 0.125 + r * 0.25 - c * 0.0625; }

static void write_foreign(const char *path, bool broken) {
  bpcrt_tensors f = {0};
  int64_t se[2] = {5, 4}, sw[2] = {4, 4}, sb[1] = {4}, sg[1] = {4}, sp[2] = {1, 7}, sj[1] = {3};
  uint16_t emb[20];
  for (int r = 0; r < 5; r++)
    for (int c = 0; c < 4; c++) emb[r * 4 + c] = f16_bits(val(0, r, c));
  bpcrt_st_add(&f, "embeddings.weight", BPCRT_F16, 2, se, emb);
  for (int l = 0; l < 2; l++) {
    char name[64];
    float w32[16];
    double w64[16];
    for (int r = 0; r < 4; r++)  // [out, in]
      for (int c = 0; c < 4; c++) w32[r * 4 + c] = (float)(w64[r * 4 + c] = val(1 + l, r, c));
    snprintf(name, sizeof name, "layer.%d.dense.weight", l);
    if (!(broken && l == 1)) bpcrt_st_add(&f, name, l ? BPCRT_F64 : BPCRT_F32, 2, sw, l ? (void *)w64 : (void *)w32);
    uint16_t bb[4];
    for (int c = 0; c < 4; c++) {
      float v = (float)val(3 + l, 0, c);
      uint32_t u;
      memcpy(&u, &v, 4);
      bb[c] = (uint16_t)(u >> 16);  // exact: these values need 8 significant bits
    }
    snprintf(name, sizeof name, "layer.%d.dense.bias", l);
    bpcrt_st_add(&f, name, BPCRT_BF16, 1, broken && l == 0 ? sj : sb, bb);
  }
  float g[4] = {1, 2, 3, 4};
  bpcrt_st_add(&f, "g", BPCRT_F32, 1, sg, g);
  int64_t pos[7] = {0, 1, 2, 3, 4, 5, 6};
  bpcrt_st_add(&f, "embeddings.position_ids", BPCRT_I64, 2, sp, pos);  // no param names it
  bpcrt_st_add(&f, "pooler.dense.bias", BPCRT_F32, 1, sg, g);
  char err[256];
  cr_assert_eq(bpcrt_st_write(path, &f, err, sizeof err), 0, "%s", err);
  bpcrt_st_free(&f);
}

static void write_data(void) {
  bpcrt_tensors f = {0};
  int64_t si[2] = {4, 3}, sy[3] = {4, 3, 4};
  int32_t ids[12];
  float y[48];
  for (int i = 0; i < 12; i++) ids[i] = i % 5;
  for (int i = 0; i < 48; i++) y[i] = 0.1f * (float)(i % 7);
  bpcrt_st_add(&f, "ids", BPCRT_I32, 2, si, ids);
  bpcrt_st_add(&f, "y", BPCRT_F32, 3, sy, y);
  cr_assert_eq(bpcrt_st_write(in_tmp("data.safetensors"), &f, NULL, 0), 0);
  bpcrt_st_free(&f);
}

static const float *param(const bpcrt_tensors *f, const char *name, int64_t numel) {
  const bpcrt_tensor *t = bpcrt_st_find(f, name);
  cr_assert(t, "checkpoint lacks '%s'", name);
  cr_assert_eq(t->dtype, BPCRT_F32);
  cr_assert_eq(bpcrt_numel(t), numel, "%s", name);
  return t->data;
}

Test(foreign, init_maps_converts_transposes_and_keeps_bpc_names) {
  spit(in_tmp("m.yaml"), model);
  write_data();
  write_foreign(in_tmp("hf.safetensors"), false);
  char *out;
  int rc = run(&out, "run m.yaml train --init hf.safetensors --save out.safetensors");
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "init: 6 of 7 params from hf.safetensors; the others keep their init: extra"), "%s", out);
  free(out);
  bpcrt_tensors c;
  char err[256];
  cr_assert_eq(bpcrt_st_read(in_tmp("out.safetensors"), &c, err, sizeof err), 0, "%s", err);
  cr_assert_null(bpcrt_st_find(&c, "embeddings.weight"), "checkpoints use bpc's names");
  const float *emb = param(&c, "emb", 20), *g = param(&c, "g", 4), *extra = param(&c, "extra", 4);
  for (int r = 0; r < 5; r++)
    for (int k = 0; k < 4; k++) cr_assert_eq(emb[r * 4 + k], (float)val(0, r, k), "emb [%d, %d]", r, k);
  for (int k = 0; k < 4; k++) {
    cr_assert_eq(g[k], (float)(k + 1));
    cr_assert_eq(extra[k], 1.0f, "a param the file lacks keeps its init");
  }
  for (int l = 0; l < 2; l++) {
    char wn[32], bn[32];
    snprintf(wn, sizeof wn, "xl.%d.w", l);
    snprintf(bn, sizeof bn, "xl.%d.b", l);
    const float *w = param(&c, wn, 16), *b = param(&c, bn, 4);
    for (int i = 0; i < 4; i++) {  // w [in, out] = the file's [out, in] transposed
      for (int o = 0; o < 4; o++) cr_assert_eq(w[i * 4 + o], (float)val(1 + l, o, i), "%s [%d, %d]", wn, i, o);
      cr_assert_eq(b[i], (float)val(3 + l, 0, i), "%s [%d]", bn, i);
    }
  }
  bpcrt_st_free(&c);
}

Test(foreign, every_mismatch_listed_nothing_written) {
  spit(in_tmp("m.yaml"), model);
  write_data();
  write_foreign(in_tmp("bad.safetensors"), true);
  char *out;
  cr_assert_eq(run(&out, "run m.yaml train --init bad.safetensors --save out.safetensors"), 1, "%s", out);
  cr_assert(strstr(out, "bad.safetensors: does not match the model:"), "%s", out);
  cr_assert(strstr(out, "missing tensor 'layer.1.dense.weight' (param 'xl.1.w')"), "%s", out);
  cr_assert(strstr(out, "'layer.0.dense.bias' (param 'xl.0.b'): shape [3] in the file, the model needs [4]"), "%s",
            out);
  cr_assert(!exists(in_tmp("out.safetensors")), "nothing written");
  free(out);
  // another model's checkpoint: no param found by any name
  bpcrt_tensors f = {0};
  int64_t s[1] = {3};
  float v[3] = {1, 2, 3};
  bpcrt_st_add(&f, "other.weight", BPCRT_F32, 1, s, v);
  cr_assert_eq(bpcrt_st_write(in_tmp("other.safetensors"), &f, NULL, 0), 0);
  bpcrt_st_free(&f);
  int64_t sx[2] = {4, 3};
  float x[12] = {0};
  bpcrt_st_add(&f, "x", BPCRT_F32, 2, sx, x);
  cr_assert_eq(bpcrt_st_write(in_tmp("d.safetensors"), &f, NULL, 0), 0);
  bpcrt_st_free(&f);
  spit(in_tmp("m2.yaml"),
       "bpc: 1\nname: m2\ninputs: {x: {shape: [2, 3]}}\nparams: {w: {shape: [3]}}\n"
       "graph:\n  loss: mean(x * w)\nloss: loss\ndata:\n  train: {format: safetensors, path: d.safetensors}\n");
  cr_assert_eq(run(&out, "run m2.yaml train --init other.safetensors --save out.safetensors"), 1, "%s", out);
  cr_assert(strstr(out, "none of the model's 1 params is in the file"), "%s", out);
  cr_assert(!exists(in_tmp("out.safetensors")));
  free(out);
}

Test(foreign, model_file_errors) {
  char *out;
  spit(in_tmp("e1.yaml"),
       "bpc: 1\nname: e1\nparams:\n  w: {shape: [3], from: \"w.{i}\"}\ngraph:\n  loss: sum(w)\nloss: loss\n");
  cr_assert_eq(run(&out, "check e1.yaml"), 1, "%s", out);
  cr_assert(
      strstr(out, "e1.yaml:4:25: error: '{i}' in from is the instance index under repeat; 'w' is not under repeat"),
      "%s", out);
  free(out);
  spit(in_tmp("e2.yaml"),
       "bpc: 1\nname: e2\nparams:\n  w: {shape: [3], from: w, transpose: true}\ngraph:\n  loss: sum(w)\nloss: loss\n");
  cr_assert_eq(run(&out, "check e2.yaml"), 1, "%s", out);
  cr_assert(strstr(out, "e2.yaml:4:39: error: transpose swaps the last two axes: 'w' has rank 1"), "%s", out);
  free(out);
  spit(in_tmp("e3.yaml"),
       "bpc: 1\nname: e3\nparams:\n  w: {shape: [3], from: [a]}\ngraph:\n  loss: sum(w)\nloss: loss\n");
  cr_assert_eq(run(&out, "check e3.yaml"), 1, "%s", out);
  cr_assert(strstr(out, "e3.yaml:4:25: error: from (a tensor name) must be a scalar"), "%s", out);
  free(out);
}

// predict over N = 3 samples in batches of B = 2 (the last padded), straight
// from the foreign file (--init) and from bpc's checkpoint (--params): the
// eval-mode forward (dropout off) computed here in double, within f32 rounding.
Test(foreign, predict_matches_the_forward) {
  spit(in_tmp("m.yaml"), model);
  write_data();
  write_foreign(in_tmp("hf.safetensors"), false);
  bpcrt_tensors in = {0};
  int64_t si[2] = {3, 3};
  int32_t ids[9] = {4, 0, 2, 1, 1, 3, 0, 4, 2};
  bpcrt_st_add(&in, "ids", BPCRT_I32, 2, si, ids);
  cr_assert_eq(bpcrt_st_write(in_tmp("in.safetensors"), &in, NULL, 0), 0);
  bpcrt_st_free(&in);
  char *out;
  int rc = run(&out, "run m.yaml predict --init hf.safetensors --inputs in.safetensors -o pred.safetensors");
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  rc = run(&out, "run m.yaml train --init hf.safetensors --save ck.safetensors --quiet");
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  rc = run(&out, "run m.yaml predict --params ck.safetensors --inputs in.safetensors -o pred2.safetensors --quiet");
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  bpcrt_tensors a, b;
  cr_assert_eq(bpcrt_st_read(in_tmp("pred.safetensors"), &a, NULL, 0), 0);
  cr_assert_eq(bpcrt_st_read(in_tmp("pred2.safetensors"), &b, NULL, 0), 0);
  const bpcrt_tensor *xa = bpcrt_st_find(&a, "xl"), *xb = bpcrt_st_find(&b, "xl");
  cr_assert(xa && xb && a.n == 1, "predict writes the outputs alone");
  cr_assert(xa->rank == 3 && xa->shape[0] == 3 && xa->shape[1] == 3 && xa->shape[2] == 4, "padding dropped");
  cr_assert_eq(memcmp(xa->data, xb->data, xa->nbytes), 0, "--init and --params give the same bits");
  const float *got = xa->data;
  for (int s = 0; s < 3; s++)
    for (int tk = 0; tk < 3; tk++) {
      double x[4], y[4];
      for (int c = 0; c < 4; c++) x[c] = val(0, ids[s * 3 + tk], c) * (c + 1) + 1;  // emb * g + extra
      for (int l = 0; l < 2; l++) {
        for (int o = 0; o < 4; o++) {
          double acc = val(3 + l, 0, o);
          for (int i = 0; i < 4; i++) acc += x[i] * val(1 + l, o, i);  // w = W^T
          y[o] = tanh(acc);
        }
        memcpy(x, y, sizeof x);
      }
      for (int c = 0; c < 4; c++) {
        double g = got[(s * 3 + tk) * 4 + c];
        cr_assert(fabs(g - x[c]) <= 1e-5 + 1e-5 * fabs(x[c]), "sample %d t %d c %d: %.9g, want %.9g", s, tk, c, g,
                  x[c]);
      }
    }
  bpcrt_st_free(&a), bpcrt_st_free(&b);
  // bad inputs: an id out of range, a misspelt name; nothing written
  bpcrt_tensors bad = {0};
  ids[4] = 7;
  bpcrt_st_add(&bad, "ids", BPCRT_I32, 2, si, ids);
  bpcrt_st_add(&bad, "idz", BPCRT_I32, 2, si, ids);
  cr_assert_eq(bpcrt_st_write(in_tmp("bad.safetensors"), &bad, NULL, 0), 0);
  bpcrt_st_free(&bad);
  rc = run(&out, "run m.yaml predict --params ck.safetensors --inputs bad.safetensors -o p3.safetensors");
  cr_assert_eq(rc, 1, "%s", out);
  cr_assert(strstr(out, "'idz' is not an input of the model"), "%s", out);
  cr_assert(strstr(out, "'ids': sample 1 holds"), "%s", out);
  cr_assert(strstr(out, "7, out of range [0, 5)"), "%s", out);
  cr_assert(!exists(in_tmp("p3.safetensors")));
  free(out);
}

// An output that does not lead with the batch: predict says which, where.
Test(foreign, predict_needs_batch_leading_outputs) {
  spit(in_tmp("o.yaml"),
       "bpc: 1\nname: o\ndims: {B: 2}\ninputs: {x: {shape: [B, 3]}}\nparams: {w: {shape: [3, 3]}}\n"
       "graph:\n  y: x @ w\n  wt: transpose(w)\n  loss: mean(y)\nloss: loss\noutputs: [y, wt]\n"
       "data:\n  train: {format: safetensors, path: d.safetensors}\n");
  bpcrt_tensors in = {0};
  int64_t s[2] = {5, 3};
  float x[15] = {0};
  bpcrt_st_add(&in, "x", BPCRT_F32, 2, s, x);
  cr_assert_eq(bpcrt_st_write(in_tmp("in.safetensors"), &in, NULL, 0), 0);
  bpcrt_st_free(&in);
  char *out;
  cr_assert_eq(run(&out, "run o.yaml predict --init in.safetensors --inputs in.safetensors -o p.safetensors"), 1, "%s",
               out);
  cr_assert(strstr(out, "o.yaml:11:14: predict: output 'wt' [3, 3] does not lead with the batch dim B = 2"), "%s", out);
  cr_assert(!exists(in_tmp("p.safetensors")));
  free(out);
}

static const char *lora_model(bool lora) {
  static char buf[2][2048];
  snprintf(buf[lora], sizeof buf[lora],
           "bpc: 1\nname: l\ndims: {B: 8, D: 6, H: 5, K: 3}\n"
           "inputs:\n  x: {shape: [B, D]}\n  y: {shape: [B], dtype: i32}\n"
           "params:\n  w1: {shape: [D, H], init: normal(0.5)%s}\n  b1: {shape: [H], init: zeros}\n"
           "  w2: {shape: [H, K], init: normal(0.5)%s}\n"
           "graph:\n  h: tanh(x @ w1 + b1)\n  logits: h @ w2\n  loss: cross_entropy(logits, y)\n"
           "loss: loss\noutputs: [logits]\ntrain:\n  optimizer: {type: adam, lr: 0.01}\n  steps: 20\n"
           "data:\n  train: {format: safetensors, path: ld.safetensors}\n",
           lora ? ", lora: {rank: 2, alpha: 4}" : "", lora ? ", lora: {rank: 1}" : "");
  return buf[lora];
}

static void lora_data(void) {
  bpcrt_tensors f = {0};
  int64_t sx[2] = {64, 6}, sy[1] = {64};
  float x[384];
  int32_t y[64];
  for (int i = 0; i < 384; i++) x[i] = (float)sin(0.7 * i + 0.3);
  for (int i = 0; i < 64; i++) y[i] = (x[i * 6] > 0) + (x[i * 6 + 1] > 0.5f);
  bpcrt_st_add(&f, "x", BPCRT_F32, 2, sx, x);
  bpcrt_st_add(&f, "y", BPCRT_I32, 1, sy, y);
  cr_assert_eq(bpcrt_st_write(in_tmp("ld.safetensors"), &f, NULL, 0), 0);
  bpcrt_st_free(&f);
}

// LoRA (docs/REFERENCE.md): the base trains in full, the adapted model
// fine-tunes from it with w1, w2 frozen. Its checkpoint holds the adapters,
// b1 and their Adam slots, never w1 or w2, and names the base; predict and
// resume find the frozen weights there; merge gives a checkpoint of the plain
// model whose outputs equal the adapted model's within f32 rounding.
Test(foreign, lora_trains_adapters_only_and_merges) {
  spit(in_tmp("l.yaml"), lora_model(true));
  spit(in_tmp("l0.yaml"), lora_model(false));
  lora_data();
  char *out;
  cr_assert_eq(run(&out, "run l0.yaml --quiet --save base.safetensors"), 0, "%s", out);
  free(out);
  cr_assert_eq(run(&out, "check l.yaml"), 0, "%s", out);
  cr_assert(strstr(out, "w1                       [6, 5]                         30  frozen"), "%s", out);
  cr_assert(strstr(out, "w1.lora_a                [6, 2]"), "%s", out);
  // LoRA's memory: gradients and Adam's two slots for the five trained
  // tensors only (4 adapters and b1, 64 B each after alignment), none for the
  // frozen w1 and w2 (which would add 2 x 128 B of gradients)
  cr_assert(strstr(out, "gradients                                 320 B"), "%s", out);
  cr_assert(strstr(out, "state                                     640 B"), "%s", out);
  free(out);
  cr_assert_eq(run(&out, "run l.yaml --init base.safetensors --save l.safetensors --quiet --steps 10"), 0, "%s", out);
  free(out);
  bpcrt_tensors c, base;
  cr_assert_eq(bpcrt_st_read(in_tmp("l.safetensors"), &c, NULL, 0), 0);
  cr_assert_eq(bpcrt_st_read(in_tmp("base.safetensors"), &base, NULL, 0), 0);
  cr_assert_null(bpcrt_st_find(&c, "w1"), "frozen weights stay out of the checkpoint");
  cr_assert_null(bpcrt_st_find(&c, "opt.exp_avg.w1"), "and get no optimizer state");
  cr_assert(bpcrt_st_find(&c, "w1.lora_a") && bpcrt_st_find(&c, "opt.exp_avg.w2.lora_b") && bpcrt_st_find(&c, "b1"));
  cr_assert(strstr(bpcrt_st_meta(&c, "base"), "base.safetensors"), "the checkpoint names its base");
  const bpcrt_tensor *lb = bpcrt_st_find(&c, "w1.lora_b");
  bool moved = false;
  for (int i = 0; i < 10; i++) moved |= ((const float *)lb->data)[i] != 0;
  cr_assert(moved, "B starts at zero and trains");
  bpcrt_st_free(&c);
  // resume finds the frozen weights in the base: 10 + 10 steps equal 20 straight
  cr_assert_eq(run(&out, "run l.yaml --init base.safetensors --save l20.safetensors --quiet"), 0, "%s", out);
  free(out);
  cr_assert_eq(run(&out, "run l.yaml --resume l.safetensors --save r20.safetensors --quiet"), 0, "%s", out);
  free(out);
  assert_same_files("l20.safetensors", "r20.safetensors");
  // merge, then the plain model's predict equals the adapted model's
  bpcrt_tensors in = {0};
  int64_t sx[2] = {11, 6};
  float x[66];
  for (int i = 0; i < 66; i++) x[i] = (float)cos(0.3 * i);
  bpcrt_st_add(&in, "x", BPCRT_F32, 2, sx, x);
  cr_assert_eq(bpcrt_st_write(in_tmp("in.safetensors"), &in, NULL, 0), 0);
  bpcrt_st_free(&in);
  cr_assert_eq(
      run(&out, "run l.yaml predict --params l20.safetensors --inputs in.safetensors -o p1.safetensors --quiet"), 0,
      "%s", out);
  free(out);
  cr_assert_eq(run(&out, "run l.yaml merge --params l20.safetensors -o full.safetensors --quiet"), 0, "%s", out);
  free(out);
  cr_assert_eq(
      run(&out, "run l0.yaml predict --params full.safetensors --inputs in.safetensors -o p2.safetensors --quiet"), 0,
      "%s", out);
  free(out);
  bpcrt_tensors p1, p2, full;
  cr_assert_eq(bpcrt_st_read(in_tmp("p1.safetensors"), &p1, NULL, 0), 0);
  cr_assert_eq(bpcrt_st_read(in_tmp("p2.safetensors"), &p2, NULL, 0), 0);
  cr_assert_eq(bpcrt_st_read(in_tmp("full.safetensors"), &full, NULL, 0), 0);
  cr_assert_null(bpcrt_st_find(&full, "w1.lora_a"), "a merged checkpoint has no adapters");
  const float *a = bpcrt_st_find(&p1, "logits")->data, *b = bpcrt_st_find(&p2, "logits")->data;
  for (int i = 0; i < 33; i++)
    cr_assert(fabsf(a[i] - b[i]) <= 1e-5f * (1 + fabsf(a[i])), "logits [%d]: %g vs %g", i, a[i], b[i]);
  const float *w = bpcrt_st_find(&full, "w1")->data, *w0 = bpcrt_st_find(&base, "w1")->data;
  double moved_w = 0;
  for (int i = 0; i < 30; i++) moved_w = fmax(moved_w, fabs(w[i] - w0[i]));
  cr_assert(moved_w > 1e-4, "the merged w1 carries the update");
  bpcrt_st_free(&p1), bpcrt_st_free(&p2), bpcrt_st_free(&full), bpcrt_st_free(&base);
}

// A csv text column (SPEC 6.4's data-section form): quoted cells with commas,
// doubled quotes and accents, tokenized at load, train exactly as the same
// texts through `bpc tokenize` in a safetensors data set: same bits after
// 6 steps. Invalid UTF-8 in a cell names the file, line and column.
Test(foreign, csv_text_column_equals_bpc_tokenize) {
  static const char *texts[] = {"Café au lait, s'il vous plaît!",
                                "He said \"no\", twice.",
                                "plain words",
                                "ÅNGSTRÖM, naïve; ZOË",
                                "a",
                                "The quick brown fox jumps over the lazy dog again and again"};
  FILE *csv = fopen(in_tmp("d.csv"), "w"), *txt = fopen(in_tmp("t.txt"), "w");
  cr_assert(csv && txt);
  fputs("label,text\n", csv);
  for (int i = 0; i < 6; i++) {
    fprintf(csv, "%d,\"", i % 2);
    for (const char *c = texts[i]; *c; c++) fputs(*c == '"' ? "\"\"" : (char[]){*c, 0}, csv);
    fputs("\"\n", csv);
    fprintf(txt, "%s\n", texts[i]);
  }
  fclose(csv), fclose(txt);
  const char *body =
      "dims: {B: 2, T: 10, V: 30522, C: 4, K: 2}\n"
      "inputs:\n  ids: {shape: [B, T], dtype: i32}\n  mask: {shape: [B, T]}\n  y: {shape: [B], dtype: i32}\n"
      "params:\n  wte: {shape: [V, C], init: normal(0.1)}\n  w: {shape: [C, K], init: normal(0.1)}\n"
      "graph:\n  h: sum(embedding(ids, wte) * reshape(mask, [B, T, 1]), axis=1)\n"
      "  loss: cross_entropy(h @ w, y)\nloss: loss\n"
      "train:\n  optimizer: {type: adam, lr: 0.05}\n  steps: 6\n";
  char m1[2048], m2[2048];
  snprintf(m1, sizeof m1,
           "bpc: 1\nname: t\n%sdata:\n  train: {format: csv, path: d.csv, header: true, columns: {y: 0},\n"
           "    text: {column: 1, vocab: %s/tests/data/wordpiece/vocab.txt, ids: ids, mask: mask}}\n",
           body, BPC_SOURCE_DIR);
  snprintf(m2, sizeof m2, "bpc: 1\nname: t\n%sdata:\n  train: {format: safetensors, path: d.safetensors}\n", body);
  spit(in_tmp("m1.yaml"), m1);
  spit(in_tmp("m2.yaml"), m2);
  char *out;
  cr_assert_eq(run(&out, "tokenize --vocab %s/tests/data/wordpiece/vocab.txt --max-len 10 t.txt -o tok.safetensors",
                   BPC_SOURCE_DIR),
               0, "%s", out);
  free(out);
  bpcrt_tensors tok, d = {0};
  cr_assert_eq(bpcrt_st_read(in_tmp("tok.safetensors"), &tok, NULL, 0), 0);
  const bpcrt_tensor *ids = bpcrt_st_find(&tok, "ids"), *mask = bpcrt_st_find(&tok, "mask");
  int64_t sy[1] = {6};
  int32_t y[6] = {0, 1, 0, 1, 0, 1};
  bpcrt_st_add(&d, "ids", ids->dtype, ids->rank, ids->shape, ids->data);
  bpcrt_st_add(&d, "mask", mask->dtype, mask->rank, mask->shape, mask->data);
  bpcrt_st_add(&d, "y", BPCRT_I32, 1, sy, y);
  cr_assert_eq(bpcrt_st_write(in_tmp("d.safetensors"), &d, NULL, 0), 0);
  bpcrt_st_free(&d), bpcrt_st_free(&tok);
  cr_assert_eq(run(&out, "run m1.yaml --quiet --save c1.safetensors"), 0, "%s", out);
  free(out);
  cr_assert_eq(run(&out, "run m2.yaml --quiet --save c2.safetensors"), 0, "%s", out);
  free(out);
  assert_same_files("c1.safetensors", "c2.safetensors");
  spit(in_tmp("d.csv"), "label,text\n0,\"fine\"\n1,\"bad \xff byte\"\n");
  cr_assert_eq(run(&out, "run m1.yaml --quiet --save c3.safetensors"), 1, "%s", out);
  cr_assert(strstr(out, "d.csv:3: column 2: invalid UTF-8 at byte 5 of the text"), "%s", out);
  cr_assert(!exists(in_tmp("c3.safetensors")));
  free(out);
  spit(in_tmp("d.csv"), "label,text\n0,\"open quote\n");
  cr_assert_eq(run(&out, "run m1.yaml --quiet --save c3.safetensors"), 1, "%s", out);
  cr_assert(strstr(out, "d.csv:2: an unterminated quote"), "%s", out);
  free(out);
}
