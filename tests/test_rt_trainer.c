// test_rt_trainer.c — runtime/trainer.c end to end through bpcrt_main, with a
// FAKE compiled model: a hand-written description (docs/ABI.md) of linear
// regression pred = x . w + b, mse loss, mae metric, and hand-written entry
// points (SGD or Adam exactly as torch.optim) working on the arena at the
// description's offsets. Covers: training, bit-identical resume (plain, grad
// accumulation, f32, after SIGINT), checkpoints under SIGKILL, every data
// error path (csv, idx raw and gzip, labels out of range via the status
// words) writing nothing, checkpoint mismatch lists, schedules against
// hand-computed values, exact eval with a padded last batch, usage errors.
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "../runtime/trainer.h"
#include "bpc.h"

static char tmpdir[64];

static void setup(void) {
  strcpy(tmpdir, "/tmp/bpc-tr-XXXXXX");
  cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void) {
  DIR *d = opendir(tmpdir);
  if (!d) return;
  char p[600];
  for (struct dirent *e; (e = readdir(d));)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
      snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
      unlink(p);
    }
  closedir(d);
  rmdir(tmpdir);
}

TestSuite(trainer, .init = setup, .fini = teardown, .timeout = 120);

static char *in_tmp(const char *name) {
  static char buf[8][512];
  static int k;
  char *p = buf[k++ % 8];
  snprintf(p, 512, "%s/%s", tmpdir, name);
  return p;
}

// ---- the fake model ------------------------------------------------------------

typedef struct {
  const char *name, *role;
  bool i32;
  int rank;
  int64_t shape[2];
  const char *init;
} Ent;

typedef struct {
  int n;
  Ent e[32];
  int64_t off[32];
  int64_t arena, status;
} Layout;

// Model knobs (set by each test before fake_json).
static struct {
  int D, B, EB;        // features, train batch, eval batch
  bool f64, adam, has_k, idx;
  int64_t big;         // an extra unused param, to make checkpoints large
  double lr;
  int accum;
  const char *sched;   // JSON of the schedule
  const char *hash;
  int64_t steps, epochs;
  double val_fraction;
  char data_path[512], images[512], labels[512];
} M;

static Layout LT, LE;  // train and eval layouts

static void defaults(void) {
  memset(&M, 0, sizeof M);
  M.D = 3, M.B = 4, M.EB = 8, M.has_k = true, M.lr = 0.05, M.accum = 1, M.big = 1;
  M.sched = "{\"type\": \"constant\"}";
  M.hash = "00112233aabbccdd";
  M.val_fraction = 0.25;
  snprintf(M.data_path, sizeof M.data_path, "%s/train.csv", tmpdir);
}

static void add(Layout *l, const char *name, const char *role, bool i32, int rank, int64_t d0, int64_t d1,
                const char *init) {
  l->e[l->n++] = (Ent){name, role, i32, rank, {d0, d1}, init};
}

static size_t esz(const Ent *e) { return e->i32 ? 4 : M.f64 ? 8 : 4; }

static void place(Layout *l) {
  int64_t top = 0;
  for (int i = 0; i < l->n; i++) {
    l->off[i] = top;
    int64_t n = 1;
    for (int k = 0; k < l->e[i].rank; k++) n *= l->e[i].shape[k];
    top += (n * (int64_t)esz(&l->e[i]) + 63) / 64 * 64;
  }
  l->status = top;
  l->arena = top + 64;
}

static int64_t off(const Layout *l, const char *name) {
  for (int i = 0; i < l->n; i++)
    if (!strcmp(l->e[i].name, name)) return l->off[i];
  return -1;
}

static void build_layouts(void) {
  memset(&LT, 0, sizeof LT);
  memset(&LE, 0, sizeof LE);
  Layout *ls[2] = {&LT, &LE};
  for (int k = 0; k < 2; k++) {
    Layout *l = ls[k];
    int B = k ? M.EB : M.B;
    add(l, "w", "param", false, 1, M.D, 0,
        "{\"kind\": \"normal\", \"a\": 0, \"b\": 0.1, \"fan_in\": 3, \"fan_out\": 1}");
    add(l, "b", "param", false, 1, 1, 0, "{\"kind\": \"zeros\"}");
    add(l, "big", "param", false, 1, M.big, 0, "{\"kind\": \"uniform\", \"a\": -1, \"b\": 1}");
    add(l, "state.count", "state", false, 0, 0, 0, "{\"value\": 0}");
    if (!k) {
      add(l, "grad.w", "grad", false, 1, M.D, 0, NULL);
      add(l, "grad.b", "grad", false, 1, 1, 0, NULL);
      if (M.adam) {
        add(l, "opt.exp_avg.w", "opt", false, 1, M.D, 0, "{\"value\": 0}");
        add(l, "opt.exp_avg_sq.w", "opt", false, 1, M.D, 0, "{\"value\": 0}");
        add(l, "opt.exp_avg.b", "opt", false, 1, 1, 0, "{\"value\": 0}");
        add(l, "opt.exp_avg_sq.b", "opt", false, 1, 1, 0, "{\"value\": 0}");
        add(l, "__lr_bc1", "scalar", false, 0, 0, 0, NULL);
        add(l, "__sqrt_bc2", "scalar", false, 0, 0, 0, NULL);
      } else {
        add(l, "__lr", "scalar", false, 0, 0, 0, NULL);
      }
    }
    add(l, "x", "input", false, 2, B, M.D, NULL);
    add(l, "y", "input", false, 1, B, 0, NULL);
    if (M.has_k) add(l, "k", "input", true, 1, B, 0, NULL);
    add(l, "loss", "loss", false, 0, 0, 0, NULL);
    add(l, "mae", "metric", false, 0, 0, 0, NULL);
    place(l);
  }
}

static size_t prog_json(char *buf, size_t cap, const Layout *l) {
  size_t n = (size_t)snprintf(buf, cap, "{\"arena\": %lld, \"scratch\": 64, \"status\": %lld, \"tensors\": [",
                              (long long)l->arena, (long long)l->status);
  for (int i = 0; i < l->n; i++) {
    const Ent *e = &l->e[i];
    char shape[64];
    if (e->rank == 0)
      snprintf(shape, sizeof shape, "[]");
    else if (e->rank == 1)
      snprintf(shape, sizeof shape, "[%lld]", (long long)e->shape[0]);
    else
      snprintf(shape, sizeof shape, "[%lld, %lld]", (long long)e->shape[0], (long long)e->shape[1]);
    n += (size_t)snprintf(
        buf + n, cap - n,
        "%s{\"name\": \"%s\", \"role\": \"%s\", \"dtype\": \"%s\", \"shape\": %s, \"offset\": %lld%s%s}", i ? ", " : "",
        e->name, e->role,
        e->i32  ? "i32"
        : M.f64 ? "f64"
                : "f32",
        shape, (long long)l->off[i], e->init ? ", \"init\": " : "", e->init ? e->init : "");
  }
  return n + (size_t)snprintf(buf + n, cap - n, "]}");
}

static char json[1 << 16];

static const char *fake_json(void) {
  build_layouts();
  char data[4096], pt[16384], pe[16384];
  if (M.idx)
    snprintf(data, sizeof data,
             "{\"train\": {\"format\": \"idx\", \"images\": \"%s\", \"labels\": \"%s\", \"x\": \"x\", \"y\": \"y\", "
             "\"scale\": {\"*\": 0.00390625}, \"val_fraction\": %g, \"shuffle\": true}, \"test\": null}",
             M.images, M.labels, M.val_fraction);
  else
    snprintf(
        data, sizeof data,
        "{\"train\": {\"format\": \"csv\", \"path\": \"%s\", \"header\": true, \"columns\": {\"x\": {\"lo\": 0, "
        "\"hi\": %d, \"range\": true}, \"y\": {\"lo\": %d, \"hi\": %d, \"range\": false}%s}, \"scale\": {\"x\": 0.5}, "
        "\"val_fraction\": %g, \"shuffle\": true}, \"test\": null}",
        M.data_path, M.D, M.D, M.D + 1,
        M.has_k ? (const char *[]){", \"k\": {\"lo\": 4, \"hi\": 5, \"range\": false}"}[0] : "", M.val_fraction);
  // k sits right after y: column D + 1 (tests use D = 3)
  prog_json(pt, sizeof pt, &LT);
  prog_json(pe, sizeof pe, &LE);
  snprintf(json, sizeof json,
           "{\"abi\": 1, \"name\": \"fake\", \"hash\": \"%s\", \"dtype\": \"%s\", \"model_path\": \"/x/fake.yaml\", "
           "\"compile\": \"bpc test\", \"dims\": {\"B\": %d, \"D\": %d}, "
           "\"train\": {\"optimizer\": {\"type\": \"%s\", \"lr\": %.17g, \"betas\": [0.9, 0.999], \"eps\": 1e-08}, "
           "\"schedule\": %s, \"clip_grad_norm\": 0, \"grad_accum\": %d, \"steps\": %lld, \"epochs\": %lld, "
           "\"eval_every\": 0, \"checkpoint_every\": 0, \"seed\": 7}, \"data\": %s, \"generate\": null, "
           "\"programs\": {\"train\": %s, \"eval\": %s}}",
           M.hash, M.f64 ? "f64" : "f32", M.B, M.D, M.adam ? "adam" : "sgd", M.lr, M.sched, M.accum, (long long)M.steps,
           (long long)M.epochs, data, pt, pe);
  return json;
}

static double ld(const char *a, const Layout *l, const char *name, int64_t i) {
  int64_t o = off(l, name);
  return M.f64 ? ((const double *)(a + o))[i] : ((const float *)(a + o))[i];
}

static void st(char *a, const Layout *l, const char *name, int64_t i, double v) {
  int64_t o = off(l, name);
  if (M.f64)
    ((double *)(a + o))[i] = v;
  else
    ((float *)(a + o))[i] = (float)v;
}

// Forward (and backward when grads): loss = mean (pred - y)^2, mae = mean |pred - y|.
static void forward(bpcrt_ctx *c, const Layout *l, int B, bool grads) {
  char *a = c->arena;
  if (M.has_k) {
    int32_t *k = (int32_t *)(a + off(l, "k"));
    for (int i = 0; i < B; i++)
      if (k[i] < 0 || k[i] >= 4) {
        int64_t *s = (int64_t *)(a + l->status);
        s[0] = 2, s[1] = k[i], s[2] = 4;
        return;
      }
  }
  double loss = 0, mae = 0, gw[64] = {0}, gb = 0;
  for (int i = 0; i < B; i++) {
    double p = ld(a, l, "b", 0);
    for (int j = 0; j < M.D; j++) p += ld(a, l, "x", i * M.D + j) * ld(a, l, "w", j);
    double r = p - ld(a, l, "y", i);
    loss += r * r / B, mae += fabs(r) / B;
    for (int j = 0; j < M.D; j++) gw[j] += 2 * r * ld(a, l, "x", i * M.D + j) / B;
    gb += 2 * r / B;
  }
  st(a, l, "loss", 0, loss);
  st(a, l, "mae", 0, mae);
  if (!grads) return;
  for (int j = 0; j < M.D; j++) st(a, l, "grad.w", j, gw[j]);
  st(a, l, "grad.b", 0, gb);
}

static void fake_step(bpcrt_ctx *c) { forward(c, &LT, M.B, true); }
static void fake_eval(bpcrt_ctx *c) { forward(c, &LE, M.EB, false); }

// torch.optim.SGD (no momentum) / torch.optim.Adam, from the scalars.
static void fake_update(bpcrt_ctx *c) {
  char *a = c->arena;
  const char *ps[2] = {"w", "b"};
  int ns[2] = {M.D, 1};
  for (int k = 0; k < 2; k++) {
    char g[32], m[32], v[32];
    snprintf(g, sizeof g, "grad.%s", ps[k]);
    snprintf(m, sizeof m, "opt.exp_avg.%s", ps[k]);
    snprintf(v, sizeof v, "opt.exp_avg_sq.%s", ps[k]);
    for (int i = 0; i < ns[k]; i++) {
      double gi = ld(a, &LT, g, i), p = ld(a, &LT, ps[k], i);
      if (!M.adam) {
        st(a, &LT, ps[k], i, p - ld(a, &LT, "__lr", 0) * gi);
        continue;
      }
      double mi = 0.9 * ld(a, &LT, m, i) + 0.1 * gi, vi = 0.999 * ld(a, &LT, v, i) + 0.001 * gi * gi;
      st(a, &LT, m, i, mi);
      st(a, &LT, v, i, vi);
      mi = ld(a, &LT, m, i), vi = ld(a, &LT, v, i);
      double denom = sqrt(vi) / ld(a, &LT, "__sqrt_bc2", 0) + 1e-8;
      st(a, &LT, ps[k], i, p - ld(a, &LT, "__lr_bc1", 0) * mi / denom);
    }
  }
  st(a, &LT, "state.count", 0, ld(a, &LT, "state.count", 0) + 1);
}

static const bpcrt_entries fake_entries = {fake_step, fake_update, fake_eval, NULL, NULL, NULL, NULL};

// ---- running bpcrt_main in a child ------------------------------------------------

static char out_buf[1 << 16], err_buf[1 << 16];

static void slurp_into(const char *path, char *buf, size_t cap) {
  FILE *f = fopen(path, "r");
  size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
  buf[n] = 0;
  if (f) fclose(f);
}

// Starts bpcrt_main(json, argv) in a child with output in tmpdir/.out,.err.
static pid_t start(const char *js, char **argv) {
  int argc = 0;
  while (argv[argc]) argc++;
  fflush(stdout), fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) {
    int o = open(in_tmp(".out"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = open(in_tmp(".err"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(o, 1), dup2(e, 2);
    close(o), close(e);
    _exit(bpcrt_main(js, &fake_entries, argc, argv));
  }
  return pid;
}

static int finish(pid_t pid) {
  int ws;
  waitpid(pid, &ws, 0);
  slurp_into(in_tmp(".out"), out_buf, sizeof out_buf);
  slurp_into(in_tmp(".err"), err_buf, sizeof err_buf);
  return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
}

#define RUN(...) finish(start(fake_json(), (char *[]){"trainer", __VA_ARGS__, NULL}))

// ---- data files ----------------------------------------------------------------------

static double lcg(uint64_t *s) {
  *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
  return (double)(*s >> 11) / 9007199254740992.0 * 2 - 1;
}

// n rows of x (D columns), y = 0.5x . (1, -2, 0.5) + 0.3, k = i % 4.
static void write_csv(const char *path, int n) {
  FILE *f = fopen(path, "w");
  fprintf(f, "x0,x1,x2,y,k\n");
  uint64_t s = 42;
  for (int i = 0; i < n; i++) {
    double x[3] = {lcg(&s), lcg(&s), lcg(&s)};
    double y = 0.5 * (x[0] - 2 * x[1] + 0.5 * x[2]) + 0.3;
    fprintf(f, "%.17g,%.17g,%.17g,%.17g,%d\n", x[0], x[1], x[2], y, i % 4);
  }
  fclose(f);
}

static int count_files(void) {
  DIR *d = opendir(tmpdir);
  int n = 0;
  for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

static bool exists(const char *p) { return access(p, F_OK) == 0; }

static void assert_same_tensors(const char *a, const char *b) {
  bpcrt_tensors x, y;
  char err[512];
  cr_assert_eq(bpcrt_st_read(a, &x, err, sizeof err), 0, "%s", err);
  cr_assert_eq(bpcrt_st_read(b, &y, err, sizeof err), 0, "%s", err);
  cr_assert_eq(x.n, y.n);
  for (int i = 0; i < x.n; i++) {
    const bpcrt_tensor *t = bpcrt_st_find(&y, x.t[i].name);
    cr_assert_not_null(t, "%s", x.t[i].name);
    cr_assert_eq(t->nbytes, x.t[i].nbytes);
    cr_assert(memcmp(t->data, x.t[i].data, t->nbytes) == 0, "tensor %s differs between %s and %s", t->name, a, b);
  }
  cr_assert_str_eq(bpcrt_st_meta(&x, "step"), bpcrt_st_meta(&y, "step"));
  bpcrt_st_free(&x), bpcrt_st_free(&y);
}

// Column `key` of each JSONL row of kind `kind`, in order.
static int log_values(const char *path, const char *kind, const char *key, double *v, int cap) {
  FILE *f = fopen(path, "r");
  cr_assert_not_null(f, "%s", path);
  char line[4096], k1[64], k2[64];
  snprintf(k1, sizeof k1, "\"kind\": \"%s\"", kind);
  snprintf(k2, sizeof k2, "\"%s\": ", key);
  int n = 0;
  while (fgets(line, sizeof line, f) && n < cap) {
    char *p = strstr(line, k2);
    if (strstr(line, k1) && p) v[n++] = strtod(p + strlen(k2), NULL);
  }
  fclose(f);
  return n;
}

// ---- training --------------------------------------------------------------------------

Test(trainer, loss_decreases_and_final_report) {
  defaults();
  write_csv(M.data_path, 80);
  int rc = RUN("--steps", "300", "--save", in_tmp("out.safetensors"), "--log", in_tmp("m.jsonl"), "--lr", "0.2");
  cr_assert_eq(rc, 0, "%s", err_buf);
  double loss[400];
  int n = log_values(in_tmp("m.jsonl"), "train", "loss", loss, 400);
  cr_assert_eq(n, 300);
  cr_assert_lt(loss[299], loss[0] / 100, "%g -> %g", loss[0], loss[299]);
  cr_assert(strstr(out_buf, "train loss"), "%s", out_buf);
  cr_assert(strstr(out_buf, "val loss"), "%s", out_buf);
  cr_assert(strstr(out_buf, "mae"), "%s", out_buf);
  bpcrt_tensors f;
  char err[256];
  cr_assert_eq(bpcrt_st_read(in_tmp("out.safetensors"), &f, err, sizeof err), 0);
  cr_assert_str_eq(bpcrt_st_meta(&f, "step"), "300");
  cr_assert_str_eq(bpcrt_st_meta(&f, "seed"), "7");
  cr_assert_str_eq(bpcrt_st_meta(&f, "format"), "1");
  cr_assert_str_eq(bpcrt_st_meta(&f, "model_hash"), "00112233aabbccdd");
  float w[3];
  bpcrt_st_to_f32(bpcrt_st_find(&f, "w"), w);
  cr_assert_float_eq(w[0], 1.0f, 1e-2);  // x is scaled by 0.5 on load
  cr_assert_float_eq(w[1], -2.0f, 1e-2);
  cr_assert_eq(*(float *)bpcrt_st_find(&f, "state.count")->data, 300.0f);
  bpcrt_st_free(&f);
}

// Default steps: one epoch of the 60 training rows (80 minus the 25% split) in batches of 4.
Test(trainer, default_is_one_epoch_and_epochs_flag) {
  defaults();
  write_csv(M.data_path, 80);
  cr_assert_eq(RUN("--save", in_tmp("a.safetensors"), "--quiet"), 0, "%s", err_buf);
  bpcrt_tensors f;
  cr_assert_eq(bpcrt_st_read(in_tmp("a.safetensors"), &f, NULL, 0), 0);
  cr_assert_str_eq(bpcrt_st_meta(&f, "step"), "15");
  bpcrt_st_free(&f);
  M.accum = 2;
  cr_assert_eq(RUN("--epochs", "3", "--save", in_tmp("b.safetensors"), "--quiet"), 0, "%s", err_buf);
  cr_assert_eq(bpcrt_st_read(in_tmp("b.safetensors"), &f, NULL, 0), 0);
  cr_assert_str_eq(bpcrt_st_meta(&f, "step"), "22");  // floor(3 * 15 / 2): micro-batches run on across epochs
  bpcrt_st_free(&f);
  cr_assert_eq(strlen(err_buf), 0, "--quiet printed: %s", err_buf);
}

static void resume_case(bool adam, bool f64, int accum) {
  defaults();
  M.adam = adam, M.f64 = f64, M.accum = accum;
  M.sched = "{\"type\": \"cosine\", \"warmup_steps\": 3, \"min_lr\": 0.001}";
  write_csv(M.data_path, 50);  // 37 training rows: epochs end mid-run, last batch dropped
  cr_assert_eq(RUN("--steps", "23", "--save", in_tmp("full.safetensors"), "--quiet"), 0, "%s", err_buf);
  cr_assert_eq(RUN("--steps", "23", "--save", in_tmp("part.safetensors"), "--checkpoint-every", "5", "--quiet"), 0,
               "%s", err_buf);
  assert_same_tensors(in_tmp("full.safetensors"), in_tmp("part.safetensors"));
  for (int s = 5; s <= 20; s += 5) {
    char name[64];
    snprintf(name, sizeof name, "part.step%d.safetensors", s);
    cr_assert(exists(in_tmp(name)), "%s", name);
  }
  cr_assert_eq(RUN("--steps", "23", "--resume", in_tmp("part.step10.safetensors"), "--save",
                   in_tmp("resumed.safetensors"), "--quiet"),
               0, "%s", err_buf);
  assert_same_tensors(in_tmp("full.safetensors"), in_tmp("resumed.safetensors"));
}

Test(trainer, resume_bit_identical_sgd_f32) { resume_case(false, false, 1); }
Test(trainer, resume_bit_identical_adam_f64_accum) { resume_case(true, true, 3); }
Test(trainer, resume_bit_identical_adam_f32_accum) { resume_case(true, false, 2); }

Test(trainer, init_loads_params_only) {
  defaults();
  write_csv(M.data_path, 40);
  cr_assert_eq(RUN("--steps", "5", "--save", in_tmp("a.safetensors"), "--quiet"), 0, "%s", err_buf);
  // a params-only file (opt.* ignored anyway) seeds a new run
  cr_assert_eq(
      RUN("--steps", "1", "--init", in_tmp("a.safetensors"), "--save", in_tmp("b.safetensors"), "--lr", "0", "--quiet"),
      0, "%s", err_buf);
  bpcrt_tensors a, b;
  bpcrt_st_read(in_tmp("a.safetensors"), &a, NULL, 0);
  bpcrt_st_read(in_tmp("b.safetensors"), &b, NULL, 0);
  cr_assert(memcmp(bpcrt_st_find(&a, "w")->data, bpcrt_st_find(&b, "w")->data, 12) == 0);
  cr_assert_str_eq(bpcrt_st_meta(&b, "step"), "1");
  bpcrt_st_free(&a), bpcrt_st_free(&b);
}

// ---- signals --------------------------------------------------------------------------

Test(trainer, sigint_saves_and_resumes_bit_identically) {
  defaults();
  write_csv(M.data_path, 40);
  pid_t pid = start(
      fake_json(), (char *[]){"trainer", "--steps", "100000000", "--save", in_tmp("int.safetensors"), "--quiet", NULL});
  usleep(300000);
  kill(pid, SIGINT);
  cr_assert_eq(finish(pid), 130, "%s", err_buf);
  cr_assert(strstr(err_buf, "interrupted at step"), "%s", err_buf);
  bpcrt_tensors f;
  char err[256];
  cr_assert_eq(bpcrt_st_read(in_tmp("int.safetensors"), &f, err, sizeof err), 0, "%s", err);
  long step = atol(bpcrt_st_meta(&f, "step"));
  bpcrt_st_free(&f);
  cr_assert_gt(step, 0);
  // resume to step + 7 with the same schedule length? The schedule is constant,
  // so any S works: compare with a straight run to the same S.
  char s[32];
  snprintf(s, sizeof s, "%ld", step + 7);
  cr_assert_eq(RUN("--steps", s, "--resume", in_tmp("int.safetensors"), "--save", in_tmp("r.safetensors"), "--quiet"),
               0, "%s", err_buf);
  cr_assert_eq(RUN("--steps", s, "--save", in_tmp("straight.safetensors"), "--quiet"), 0, "%s", err_buf);
  assert_same_tensors(in_tmp("r.safetensors"), in_tmp("straight.safetensors"));
}

Test(trainer, sigkill_during_checkpoints_leaves_loadable_files) {
  defaults();
  M.big = 1 << 20;  // 4 MB checkpoints
  write_csv(M.data_path, 40);
  const char *js = fake_json();
  for (int round = 0; round < 6; round++) {
    pid_t pid = start(js, (char *[]){"trainer", "--steps", "1000000", "--checkpoint-every", "1", "--save",
                                     in_tmp("k.safetensors"), "--quiet", NULL});
    // Kill while it writes checkpoints: first wait for one (a loaded machine
    // or a sanitizer build can take longer than any fixed delay to get there).
    for (int w = 0; w < 2000 && !exists(in_tmp("k.step1.safetensors")); w++) usleep(10000);
    usleep(20000 + 37000 * (useconds_t)round);
    kill(pid, SIGKILL);
    cr_assert_eq(finish(pid), 128 + SIGKILL);
    DIR *d = opendir(tmpdir);
    int good = 0;
    for (struct dirent *e; (e = readdir(d));) {
      size_t n = strlen(e->d_name);
      if (n < 12 || strcmp(e->d_name + n - 12, ".safetensors")) continue;
      bpcrt_tensors f;
      char err[512];
      cr_assert_eq(bpcrt_st_read(in_tmp(e->d_name), &f, err, sizeof err), 0, "torn checkpoint: %s", err);
      cr_assert_str_eq(bpcrt_st_meta(&f, "model_hash"), "00112233aabbccdd");
      bpcrt_st_free(&f);
      good++;
    }
    closedir(d);
    cr_assert_gt(good, 0);
  }
}

// ---- data errors: exit 1, a message naming the file and row, nothing written ---------

static void expect_data_error(const char *want1, const char *want2) {
  int before = count_files();
  int rc = RUN("--steps", "20", "--save", in_tmp("out.safetensors"), "--log", in_tmp("m.csv"));
  cr_assert_eq(rc, 1, "rc %d, stderr: %s", rc, err_buf);
  cr_assert(strstr(err_buf, want1), "wanted '%s' in: %s", want1, err_buf);
  if (want2) cr_assert(strstr(err_buf, want2), "wanted '%s' in: %s", want2, err_buf);
  cr_assert_eq(count_files(), before, "a failed run left files behind");
  cr_assert(!exists(in_tmp("out.safetensors")));
}

static void write_text(const char *path, const char *s) {
  FILE *f = fopen(path, "w");
  fputs(s, f);
  fclose(f);
}

Test(trainer, csv_errors) {
  defaults();
  expect_data_error("train.csv: cannot open", NULL);
  write_text(M.data_path, "a,b,c,y,k\n1,2,3,4,0\n1,2,3,4\n");
  expect_data_error("train.csv:3: 4 columns, expected 5", NULL);
  write_text(M.data_path, "a,b,c,y,k\n1,2,3,4,0\n1,2,3,4,0\n1,2");  // truncated
  expect_data_error("train.csv:4: 2 columns, expected 5", NULL);
  write_text(M.data_path, "a,b,c,y,k\n1,2,3,4,0\n1,2,x3,4,0\n");
  expect_data_error("train.csv:3: column 3: 'x3' is not a number", NULL);
  write_text(M.data_path, "a,b,c,y,k\n1,2,3,4,0\n1,2,3,4,1.5\n");
  expect_data_error("train.csv:3: column 5: 1.5 is not an integer", NULL);
  write_text(M.data_path, "a,b,c,y,k\n");
  expect_data_error("train.csv: no data rows", NULL);
  write_text(M.data_path, "a,b,c,y\n1,2,3,4\n");
  expect_data_error("train.csv:1: 4 columns", NULL);
}

Test(trainer, label_out_of_range_via_status_words) {
  defaults();
  M.val_fraction = 0;
  FILE *f = fopen(M.data_path, "w");
  fprintf(f, "a,b,c,y,k\n");
  for (int i = 0; i < 20; i++) fprintf(f, "1,2,3,4,%d\n", i == 13 ? 7 : 1);
  fclose(f);
  expect_data_error("train.csv:15 (input 'k'): label 7 out of range [0, 4)", NULL);
}

static void write_idx(const char *path, bool gz, const uint8_t *hdr, size_t hn, const uint8_t *data, size_t dn) {
  if (gz) {
    gzFile g = gzopen(path, "wb");
    gzwrite(g, hdr, (unsigned)hn);
    if (dn) gzwrite(g, data, (unsigned)dn);
    gzclose(g);
  } else {
    FILE *f = fopen(path, "wb");
    fwrite(hdr, 1, hn, f);
    fwrite(data, 1, dn, f);
    fclose(f);
  }
}

// 12 images of 2x2 (D = 4) and their labels.
static void idx_setup(bool gz) {
  defaults();
  M.D = 4, M.has_k = false, M.idx = true, M.val_fraction = 0;
  snprintf(M.images, sizeof M.images, "%s/img.idx%s", tmpdir, gz ? ".gz" : "");
  snprintf(M.labels, sizeof M.labels, "%s/lab.idx%s", tmpdir, gz ? ".gz" : "");
  uint8_t ih[16] = {0, 0, 8, 3, 0, 0, 0, 12, 0, 0, 0, 2, 0, 0, 0, 2}, lh[8] = {0, 0, 8, 1, 0, 0, 0, 12};
  uint8_t img[48], lab[12];
  for (int i = 0; i < 48; i++) img[i] = (uint8_t)(i * 37 % 256);
  for (int i = 0; i < 12; i++) lab[i] = (uint8_t)(i % 3);
  write_idx(M.images, gz, ih, 16, img, 48);
  write_idx(M.labels, gz, lh, 8, lab, 12);
}

Test(trainer, idx_raw_and_gzip_train) {
  idx_setup(false);
  cr_assert_eq(RUN("--steps", "4", "--save", in_tmp("o.safetensors"), "--quiet"), 0, "%s", err_buf);
  idx_setup(true);
  cr_assert_eq(RUN("--steps", "4", "--save", in_tmp("o2.safetensors"), "--quiet"), 0, "%s", err_buf);
  assert_same_tensors(in_tmp("o.safetensors"), in_tmp("o2.safetensors"));
}

Test(trainer, idx_errors) {
  idx_setup(false);
  uint8_t bad[16] = {0, 1, 8, 3, 0, 0, 0, 12, 0, 0, 0, 2, 0, 0, 0, 2}, img[48] = {0};
  write_idx(M.images, false, bad, 16, img, 48);
  expect_data_error("img.idx: offset 0: bad IDX magic", NULL);
  uint8_t ih[16] = {0, 0, 8, 3, 0, 0, 0, 12, 0, 0, 0, 2, 0, 0, 0, 2};
  write_idx(M.images, false, ih, 16, img, 40);  // truncated
  expect_data_error("img.idx: offset 56: truncated", NULL);
  uint8_t ih3[16] = {0, 0, 8, 3, 0, 0, 0, 12, 0, 0, 0, 3, 0, 0, 0, 1};
  write_idx(M.images, false, ih3, 16, img, 36);
  expect_data_error("img.idx: 3 values per image, input 'x' needs 4", NULL);
  uint8_t lh[8] = {0, 0, 8, 1, 0, 0, 0, 11}, lab[11] = {0};
  write_idx(M.images, false, ih, 16, img, 48);
  write_idx(M.labels, false, lh, 8, lab, 11);
  expect_data_error("lab.idx: 11 labels for 12 images", NULL);
  uint8_t ty[8] = {0, 0, 0x0d, 1, 0, 0, 0, 12};
  write_idx(M.labels, false, ty, 8, lab, 11);
  expect_data_error("lab.idx: offset 2: IDX element type 0x0d", NULL);
}

Test(trainer, idx_gzip_corrupt) {
  idx_setup(true);
  // flip bytes inside the deflate stream, then cut the stream short
  FILE *f = fopen(M.images, "r+b");
  fseek(f, 14, SEEK_SET);
  fputc(0xff, f), fputc(0x00, f), fputc(0xaa, f);
  fclose(f);
  expect_data_error("img.idx.gz: offset", "gzip");
  idx_setup(true);
  struct stat sb;
  stat(M.images, &sb);
  cr_assert_eq(truncate(M.images, sb.st_size - 12), 0);
  expect_data_error("img.idx.gz: offset", NULL);
}

// ---- checkpoint mismatches -------------------------------------------------------------

Test(trainer, resume_lists_every_mismatch) {
  defaults();
  M.adam = true;
  write_csv(M.data_path, 40);
  M.hash = "ffffffffffffffff";
  M.D = 3;
  cr_assert_eq(RUN("--steps", "3", "--save", in_tmp("other.safetensors"), "--quiet"), 0, "%s", err_buf);
  M.hash = "00112233aabbccdd";
  cr_assert_eq(RUN("--steps", "5", "--resume", in_tmp("other.safetensors"), "--save", in_tmp("o.safetensors")), 1);
  cr_assert(strstr(err_buf, "model_hash ffffffffffffffff in the file, this model is 00112233aabbccdd"), "%s", err_buf);
  cr_assert(!exists(in_tmp("o.safetensors")));
  // a file with w of the wrong shape, an unknown tensor, everything else missing
  bpcrt_tensors f = {0};
  float z[8] = {0};
  bpcrt_st_add(&f, "w", BPCRT_F32, 1, (int64_t[]){5}, z);
  bpcrt_st_add(&f, "bogus", BPCRT_F32, 1, (int64_t[]){2}, z);
  bpcrt_st_add(&f, "b", BPCRT_I32, 1, (int64_t[]){1}, z);
  bpcrt_st_set_meta(&f, "step", "2");
  cr_assert_eq(bpcrt_st_write(in_tmp("bad.safetensors"), &f, NULL, 0), 0);
  bpcrt_st_free(&f);
  cr_assert_eq(RUN("--steps", "5", "--resume", in_tmp("bad.safetensors"), "--save", in_tmp("o.safetensors")), 1);
  const char *want[] = {"'w': shape [5] in the file, [3] in the model",
                        "'b': I32 in the file, the model has F32",
                        "missing param 'big'",
                        "missing state 'state.count'",
                        "missing opt 'opt.exp_avg.w'",
                        "missing opt 'opt.exp_avg_sq.b'",
                        "unknown tensor 'bogus'",
                        "model_hash (none)",
                        "no valid 'seed'"};
  for (size_t i = 0; i < sizeof want / sizeof *want; i++)
    cr_assert(strstr(err_buf, want[i]), "wanted '%s' in: %s", want[i], err_buf);
  cr_assert(!exists(in_tmp("o.safetensors")));
}

// ---- schedules -------------------------------------------------------------------------

static void check_schedule(const char *sched, double (*want)(int s)) {
  defaults();
  M.sched = sched;
  write_csv(M.data_path, 40);
  cr_assert_eq(
      RUN("--steps", "12", "--lr", "0.5", "--log", in_tmp("s.jsonl"), "--save", in_tmp("s.safetensors"), "--quiet"), 0,
      "%s", err_buf);
  double lr[32];
  cr_assert_eq(log_values(in_tmp("s.jsonl"), "train", "lr", lr, 32), 12);
  for (int s = 0; s < 12; s++)
    cr_assert(fabs(lr[s] - want(s)) <= 1e-15 * fabs(want(s)) + 1e-300, "%s: step %d: lr %.17g, want %.17g", sched, s,
              lr[s], want(s));
  unlink(in_tmp("s.jsonl"));
}

// S = 12, W = 3, lr = 0.5 (from --lr), min_lr = 0.05.
static double w_const(int s) { return s < 3 ? 0.5 * (s + 1) / 3 : 0.5; }
static double w_cos(int s) { return s < 3 ? 0.5 * (s + 1) / 3 : 0.05 + 0.45 * (1 + cos(M_PI * (s - 3) / 9.0)) / 2; }
static double w_lin(int s) { return s < 3 ? 0.5 * (s + 1) / 3 : 0.5 + (0.05 - 0.5) * (s - 3) / 9.0; }
static double w_step(int s) { return 0.5 * pow(0.5, floor(s / 4.0)); }

Test(trainer, schedules) {
  check_schedule("{\"type\": \"constant\", \"warmup_steps\": 3}", w_const);
  check_schedule("{\"type\": \"cosine\", \"warmup_steps\": 3, \"min_lr\": 0.05}", w_cos);
  check_schedule("{\"type\": \"linear\", \"warmup_steps\": 3, \"min_lr\": 0.05}", w_lin);
  check_schedule("{\"type\": \"step\", \"step_size\": 4, \"gamma\": 0.5}", w_step);
}

// ---- exact eval --------------------------------------------------------------------------

Test(trainer, eval_pads_last_batch_exactly) {
  defaults();
  M.f64 = true, M.EB = 8, M.val_fraction = 0.5;
  write_csv(M.data_path, 46);  // 23 validation rows: 2 full batches of 8 and 7 more
  cr_assert_eq(RUN("--steps", "5", "--save", in_tmp("p.safetensors"), "--quiet"), 0, "%s", err_buf);
  cr_assert_eq(finish(start(fake_json(), (char *[]){"trainer", "eval", "--params", in_tmp("p.safetensors"), "--log",
                                                    in_tmp("e.jsonl"), NULL})),
               0, "%s", err_buf);
  double loss, mae;
  cr_assert_eq(log_values(in_tmp("e.jsonl"), "eval", "loss", &loss, 1), 1);
  cr_assert_eq(log_values(in_tmp("e.jsonl"), "eval", "mae", &mae, 1), 1);
  cr_assert(strstr(out_buf, "val loss"), "%s", out_buf);
  // direct: the last 23 rows with the saved params
  bpcrt_tensors f;
  bpcrt_st_read(in_tmp("p.safetensors"), &f, NULL, 0);
  const double *w = bpcrt_st_find(&f, "w")->data, *b = bpcrt_st_find(&f, "b")->data;
  FILE *in = fopen(M.data_path, "r");
  char line[512];
  cr_assert_not_null(fgets(line, sizeof line, in));
  double sl = 0, sm = 0;
  for (int i = 0; fgets(line, sizeof line, in); i++) {
    double x[3], y;
    int k;
    sscanf(line, "%lf,%lf,%lf,%lf,%d", &x[0], &x[1], &x[2], &y, &k);
    if (i < 23) continue;
    double r = b[0] + 0.5 * (x[0] * w[0] + x[1] * w[1] + x[2] * w[2]) - y;
    sl += r * r, sm += fabs(r);
  }
  fclose(in);
  bpcrt_st_free(&f);
  cr_assert(fabs(loss - sl / 23) < 1e-13, "eval loss %.17g, direct %.17g", loss, sl / 23);
  cr_assert(fabs(mae - sm / 23) < 1e-13, "eval mae %.17g, direct %.17g", mae, sm / 23);
}

Test(trainer, periodic_eval_rows_in_csv_log) {
  defaults();
  write_csv(M.data_path, 40);
  cr_assert_eq(RUN("--steps", "10", "--eval-every", "4", "--log", in_tmp("m.csv"), "--grad-stats", "--save",
                   in_tmp("o.safetensors")),
               0, "%s", err_buf);
  char buf[1 << 14];
  slurp_into(in_tmp("m.csv"), buf, sizeof buf);
  cr_assert(!strncmp(buf, "kind,step,loss,lr,mae,seconds,norm.w,norm.b\n", 44), "%s", buf);
  cr_assert(strstr(buf, "\neval,4,"), "%s", buf);
  cr_assert(strstr(buf, "\neval,8,"), "%s", buf);
  cr_assert(strstr(buf, "\neval,10,"), "%s", buf);
  cr_assert(strstr(err_buf, "grad norms at step 10: w "), "%s", err_buf);
}

// ---- command line --------------------------------------------------------------------------

Test(trainer, usage_errors_exit_2) {
  defaults();
  write_csv(M.data_path, 40);
  const char *bad[][4] = {
      {"--bogus", NULL},
      {"--steps", "x", NULL},
      {"--steps", NULL},
      {"--steps", "3", "--epochs", "2"},
      {"eval", NULL},
      {"frobnicate", NULL},
      {"--quiet=1", NULL},
      {"info", "--steps", "3", NULL},
      {"sample", "--prompt", "x", NULL},
      {"--lr", "-1", NULL},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    char *argv[6] = {"trainer"};
    for (int k = 0; k < 4 && bad[i][k]; k++) argv[k + 1] = (char *)bad[i][k];
    cr_assert_eq(finish(start(fake_json(), argv)), 2, "case %zu: %s", i, err_buf);
    cr_assert(strstr(err_buf, "usage: trainer"), "%s", err_buf);
  }
  cr_assert_eq(count_files(), 1);  // train.csv
}

Test(trainer, info_lists_tensors) {
  defaults();
  cr_assert_eq(finish(start(fake_json(), (char *[]){"trainer", "info", NULL})), 0, "%s", err_buf);
  cr_assert(strstr(out_buf, "model    fake (hash 00112233aabbccdd)"), "%s", out_buf);
  cr_assert(strstr(out_buf, "compile  bpc test"), "%s", out_buf);
  cr_assert(strstr(out_buf, "grad.w"), "%s", out_buf);
  cr_assert(strstr(out_buf, "params   5"), "%s", out_buf);
}

// ---- data.c directly -----------------------------------------------------------------------

Test(trainer, permutations_are_permutations_and_differ_by_epoch) {
  int64_t a[100], b[100];
  data_perm(100, 1, 0, true, a);
  data_perm(100, 1, 1, true, b);
  int seen[100] = {0}, same = 0;
  for (int i = 0; i < 100; i++) seen[a[i]]++, same += a[i] == b[i];
  for (int i = 0; i < 100; i++) cr_assert_eq(seen[i], 1);
  cr_assert_lt(same, 10);
}

// ---- a fake byte-level model: text windows, text eval, sample --------------------------
// loss = mean (u - target / 256)^2; the step also checks that targets are
// tokens shifted by one (status code 3 otherwise).

enum { TT = 8, TB = 4 };
static Layout XT, XE, XS;

static void text_layouts(void) {
  memset(&XT, 0, sizeof XT), memset(&XE, 0, sizeof XE), memset(&XS, 0, sizeof XS);
  Layout *ls[3] = {&XT, &XE, &XS};
  for (int k = 0; k < 3; k++) {
    Layout *l = ls[k];
    int B = k == 2 ? 1 : TB;
    add(l, "u", "param", false, 1, 1, 0, "{\"kind\": \"zeros\"}");
    if (k == 0) {
      add(l, "grad.u", "grad", false, 1, 1, 0, NULL);
      add(l, "__lr", "scalar", false, 0, 0, 0, NULL);
    }
    add(l, "tokens", "input", true, 2, B, TT, NULL);
    if (k < 2) {
      add(l, "targets", "input", true, 2, B, TT, NULL);
      add(l, "loss", "loss", false, 0, 0, 0, NULL);
    } else {
      add(l, "logits", "output", false, 2, TT, 256, NULL);
    }
    place(l);
  }
}

static const char *text_json(const char *path) {
  defaults();
  text_layouts();
  char pt[8192], pe[8192], ps[8192];
  prog_json(pt, sizeof pt, &XT);
  prog_json(pe, sizeof pe, &XE);
  prog_json(ps, sizeof ps, &XS);
  snprintf(json, sizeof json,
           "{\"abi\": 1, \"name\": \"bytes\", \"hash\": \"0123456789abcdef\", \"dtype\": \"f32\", "
           "\"train\": {\"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1}, \"schedule\": {\"type\": \"constant\"}, "
           "\"grad_accum\": 1, \"steps\": 0, \"epochs\": 0, \"seed\": 3}, "
           "\"data\": {\"train\": {\"format\": \"text\", \"path\": \"%s\", \"tokens\": \"tokens\", \"targets\": "
           "\"targets\", \"val_fraction\": 0.2}, \"test\": null}, "
           "\"generate\": {\"tokens\": \"tokens\", \"logits\": \"logits\"}, "
           "\"programs\": {\"train\": %s, \"eval\": %s, \"sample\": %s}}",
           path, pt, pe, ps);
  return json;
}

static void text_forward(bpcrt_ctx *c, const Layout *l, bool grads) {
  char *a = c->arena;
  int32_t *tok = (int32_t *)(a + off(l, "tokens")), *tgt = (int32_t *)(a + off(l, "targets"));
  float u = *(float *)(a + off(l, "u"));
  double loss = 0, g = 0;
  for (int i = 0; i < TB * TT; i++) {
    if (i % TT < TT - 1 && tgt[i] != tok[i + 1]) {
      int64_t *s = (int64_t *)(a + l->status);
      s[0] = 3, s[1] = tgt[i], s[2] = tok[i + 1];
      return;
    }
    double r = u - tgt[i] / 256.0;
    loss += r * r / (TB * TT), g += 2 * r / (TB * TT);
  }
  *(float *)(a + off(l, "loss")) = (float)loss;
  if (grads) *(float *)(a + off(l, "grad.u")) = (float)g;
}

static void text_step(bpcrt_ctx *c) { text_forward(c, &XT, true); }
static void text_eval(bpcrt_ctx *c) { text_forward(c, &XE, false); }
static void text_update(bpcrt_ctx *c) {
  float *u = (float *)(c->arena + off(&XT, "u"));
  *u -= *(float *)(c->arena + off(&XT, "__lr")) * *(float *)(c->arena + off(&XT, "grad.u"));
}
// logits favour the byte after the last token, strongly
static void text_sample(bpcrt_ctx *c) {
  int32_t *tok = (int32_t *)(c->arena + off(&XS, "tokens"));
  float *lg = (float *)(c->arena + off(&XS, "logits"));
  for (int t = 0; t < TT; t++)
    for (int v = 0; v < 256; v++) lg[t * 256 + v] = v == (tok[t] + 1) % 256 ? 30.0f : 0.0f;
}

static const bpcrt_entries text_entries = {text_step, text_update, text_eval, text_sample, NULL, NULL, NULL};

static int run_text(const char *js, char **argv) {
  int argc = 0;
  while (argv[argc]) argc++;
  fflush(stdout), fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) {
    int o = open(in_tmp(".out"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = open(in_tmp(".err"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(o, 1), dup2(e, 2);
    close(o), close(e);
    _exit(bpcrt_main(js, &text_entries, argc, argv));
  }
  return finish(pid);
}
#define RUNT(...) run_text(js, (char *[]){"trainer", __VA_ARGS__, NULL})

Test(trainer, text_windows_train_resume_eval_sample) {
  char path[512];
  snprintf(path, sizeof path, "%s/poem.txt", tmpdir);
  FILE *f = fopen(path, "w");
  for (int i = 0; i < 300; i++) fprintf(f, "line %d of the poem\n", i);
  fclose(f);
  const char *js = text_json(path);
  cr_assert_eq(RUNT("--steps", "30", "--save", in_tmp("a.safetensors"), "--checkpoint-every", "10", "--quiet"), 0, "%s",
               err_buf);
  cr_assert(strstr(out_buf, "val loss"), "%s", out_buf);
  cr_assert_eq(
      RUNT("--steps", "30", "--resume", in_tmp("a.step10.safetensors"), "--save", in_tmp("b.safetensors"), "--quiet"),
      0, "%s", err_buf);
  assert_same_tensors(in_tmp("a.safetensors"), in_tmp("b.safetensors"));
  // default: 1000 steps for text
  cr_assert_eq(RUNT("--save", in_tmp("c.safetensors"), "--quiet"), 0, "%s", err_buf);
  bpcrt_tensors t;
  bpcrt_st_read(in_tmp("c.safetensors"), &t, NULL, 0);
  cr_assert_str_eq(bpcrt_st_meta(&t, "step"), "1000");
  bpcrt_st_free(&t);
  cr_assert_eq(RUNT("--epochs", "2"), 1, "%s", err_buf);  // epochs need a finite set
  cr_assert(strstr(err_buf, "text data takes --steps"), "%s", err_buf);
  cr_assert_eq(RUNT("eval", "--params", in_tmp("a.safetensors")), 0, "%s", err_buf);
  cr_assert(!strncmp(out_buf, "val loss", 8), "%s", out_buf);
  cr_assert_eq(
      RUNT("sample", "--params", in_tmp("a.safetensors"), "--prompt", "abc", "--tokens", "5", "--temperature", "0"), 0,
      "%s", err_buf);
  cr_assert_str_eq(out_buf, "abcdefgh");
  // sampling at temperature 1 with top-k 1 is greedy too; a seed changes nothing then
  cr_assert_eq(RUNT("sample", "--params", in_tmp("a.safetensors"), "--prompt", "x", "--tokens", "2", "--top-k", "1",
                    "--seed", "9"),
               0, "%s", err_buf);
  cr_assert_str_eq(out_buf, "xyz");
  // too short a file
  write_text(path, "tiny");
  cr_assert_eq(RUNT("--steps", "3", "--save", in_tmp("d.safetensors")), 1);
  cr_assert(strstr(err_buf, "poem.txt: offset 4: the file has 4 bytes; a window needs 9"), "%s", err_buf);
  cr_assert(!exists(in_tmp("d.safetensors")));
}

// In this process (not a child): under -DBPC_SANITIZE=ON, LeakSanitizer checks
// that train, eval, info and an error path release everything.
Test(trainer, in_process_runs_release_everything) {
  defaults();
  M.adam = true, M.accum = 2;
  write_csv(M.data_path, 40);
  const char *js = fake_json();
  char *a1[] = {"trainer", "--steps",       "4",       "--save",       in_tmp("p.safetensors"),
                "--log",   in_tmp("l.csv"), "--quiet", "--grad-stats", NULL};
  cr_assert_eq(bpcrt_main(js, &fake_entries, 9, a1), 0);
  char *a2[] = {"trainer", "eval", "--params", in_tmp("p.safetensors"), "--quiet", NULL};
  cr_assert_eq(bpcrt_main(js, &fake_entries, 5, a2), 0);
  char *a3[] = {"trainer", "--steps", "4", "--resume", in_tmp("nope.safetensors"), NULL};
  cr_assert_eq(bpcrt_main(js, &fake_entries, 5, a3), 1);
  char *a4[] = {"trainer", "info", NULL};
  cr_assert_eq(bpcrt_main(js, &fake_entries, 2, a4), 0);
  cr_assert_eq(bpcrt_main("{\"abi\": 2}", &fake_entries, 2, a4), 1);
}

// bpcrt_cpu_check names exactly the listed features this CPU lacks and skips
// names it cannot check.
Test(trainer, cpu_check_names_missing_features) {
  char err[512] = "";
  __builtin_cpu_init();
  cr_expect_eq(bpcrt_cpu_check(NULL, err, sizeof err), 1);
  cr_expect_eq(bpcrt_cpu_check("x86-64: sse2 cx16 64bit", err, sizeof err), 1, "%s", err);
  bool fp16 = __builtin_cpu_supports("avx512fp16"), amx = __builtin_cpu_supports("amx-tile");
  int ok = bpcrt_cpu_check("sapphirerapids: sse2 avx512fp16 not-a-feature amx-tile", err, sizeof err);
  cr_expect_eq(ok, fp16 && amx);
  if (!ok) {
    cr_expect(strstr(err, "compiled for sapphirerapids and needs "), "%s", err);
    cr_expect_eq(strstr(err, "avx512fp16") != NULL, !fp16, "%s", err);
    cr_expect_eq(strstr(err, "amx-tile") != NULL, !amx, "%s", err);
    cr_expect(!strstr(err, "sse2") && !strstr(err, "not-a-feature"), "%s", err);
  }
}
