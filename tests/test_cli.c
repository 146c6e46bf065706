// test_cli.c — the bpc command line end to end, through the real binary:
// exit codes (0 ok, 1 model errors, 2 usage), `bpc grad` against a float64
// reference computed here with the interpreter, every mismatch of an inputs
// file listed in one error, no partial output, DOT that Graphviz renders.
#include <criterion/criterion.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bpc.h"
#include "gradcheck.h"

static char tmpdir[256];

static void setup(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/bpc_cli_XXXXXX");
  cr_assert(mkdtemp(tmpdir));
}

static void teardown(void) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  cr_assert_eq(system(cmd), 0);
}

// Runs `bpc ARGS` (cwd = repo root), capturing stdout+stderr; returns the exit code.
static int run(char **out, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = run_bpc_in(BPC_SOURCE_DIR, out, fmt, ap);
  va_end(ap);
  return rc;
}

static bool exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

TestSuite(cli, .init = setup, .fini = teardown);

Test(cli, exit_codes) {
  char *out;
  cr_expect_eq(run(&out, "--version"), 0);
  cr_expect(strstr(out, "bpc 0."));
  free(out);
  cr_expect_eq(run(&out, "help grad"), 0);
  free(out);
  cr_expect_eq(run(&out, ""), 2);
  free(out);
  cr_expect_eq(run(&out, "frobnicate models/xor.yaml"), 2);
  free(out);
  cr_expect_eq(run(&out, "check"), 2);
  free(out);
  cr_expect_eq(run(&out, "check models/xor.yaml --bogus"), 2);
  free(out);
  cr_expect_eq(run(&out, "check models/xor.yaml -D B"), 2);
  free(out);
  cr_expect_eq(run(&out, "show models/xor.yaml --after nothing"), 2);
  free(out);
  cr_expect_eq(run(&out, "grad models/xor.yaml"), 2);
  free(out);
  cr_expect_eq(run(&out, "check models/nope.yaml"), 1);
  cr_expect(strstr(out, "cannot read 'models/nope.yaml'"), "%s", out);
  free(out);
  cr_expect_eq(run(&out, "check models/xor.yaml -D Q=3"), 1);
  cr_expect(strstr(out, "no dim 'Q'"), "%s", out);
  free(out);
  cr_expect_eq(run(&out, "check models/gpt_poetry.yaml -D L=1"), 0);
  cr_expect(strstr(out, "nodes: forward"), "%s", out);
  free(out);
}

Test(cli, show_and_dot) {
  char *out;
  cr_expect_eq(run(&out, "show models/mlp_digits.yaml --grad"), 0);
  cr_expect(strstr(out, "grads: {w1: grad.w1"), "%s", out);
  free(out);
  cr_expect_eq(run(&out, "show models/mlp_digits.yaml --after autodiff"), 0);
  free(out);
  char dot[512], svg[512];
  snprintf(dot, sizeof dot, "%s/g.dot", tmpdir);
  snprintf(svg, sizeof svg, "%s/g.svg", tmpdir);
  cr_expect_eq(run(&out, "dot models/gpt_poetry.yaml --grad -D L=1 -o %s", dot), 0);
  free(out);
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "command -v dot >/dev/null || exit 0; dot -Tsvg %s -o %s", dot, svg);
  cr_expect_eq(system(cmd), 0, "graphviz rejected the DOT");
  // A failing model leaves no output file behind.
  char bad[512];
  snprintf(bad, sizeof bad, "%s/bad.dot", tmpdir);
  cr_expect_eq(run(&out, "dot tests/bad/%s -o %s", "nonexistent.yaml", bad), 1);
  cr_expect_not(exists(bad));
  free(out);
}

// Inputs for mlp_digits: deterministic x and labels.
static void write_inputs(const char *path, int B, bool wrong) {
  bpcrt_tensors set = {0};
  int64_t xs[2] = {B, wrong ? 63 : 64}, ys[1] = {B};
  float *x = malloc(sizeof(float) * (size_t)(B * 64));
  int32_t *y = malloc(sizeof(int32_t) * (size_t)B);
  for (int i = 0; i < B * 64; i++) x[i] = (float)((i * 37 % 17) / 16.0);
  for (int i = 0; i < B; i++) y[i] = (i * 7) % 10;
  cr_assert(bpcrt_st_add(&set, "x", BPCRT_F32, 2, xs, x));
  if (wrong) {
    cr_assert(bpcrt_st_add(&set, "y", BPCRT_F32, 1, ys, NULL));
    cr_assert(bpcrt_st_add(&set, "z", BPCRT_F32, 1, ys, NULL));
  } else {
    cr_assert(bpcrt_st_add(&set, "y", BPCRT_I32, 1, ys, y));
  }
  char err[256];
  cr_assert_eq(bpcrt_st_write(path, &set, err, sizeof err), 0, "%s", err);
  bpcrt_st_free(&set);
  free(x);
  free(y);
}

// bpc grad in f32 against the same step in f64 (SPEC 4: 1e-4 relative, 1e-5
// absolute near zero), params initialized from the seed in both.
Test(cli, grad_matches_float64_reference) {
  char in[512], outp[512];
  snprintf(in, sizeof in, "%s/in.safetensors", tmpdir);
  snprintf(outp, sizeof outp, "%s/g.safetensors", tmpdir);
  write_inputs(in, 64, false);
  char *out;
  cr_assert_eq(run(&out, "grad models/mlp_digits.yaml --inputs %s -o %s --seed 5", in, outp), 0, "%s", out);
  free(out);
  bpcrt_tensors got = {0};
  char err[256];
  cr_assert_eq(bpcrt_st_read(outp, &got, err, sizeof err), 0, "%s", err);
  // The reference: the f64 graph in the interpreter with the same seed.
  Arena a = {0};
  Captured c;
  cap_open(&c);
  Model *m = model_load(&a, &c.d, BPC_SOURCE_DIR "/models/mlp_digits.yaml");
  Graph *g = m ? graph_build(m, &c.d, NULL, 0, DT_F64) : NULL;
  cr_assert(g && ad_backward(g), "%s", cap_text(&c));
  Interp *it = interp_new(g, 5, 0, true);
  interp_init_params(it, 5);
  cr_assert(tensors_load_inputs(it, g, in, &c.d), "%s", cap_text(&c));
  cr_assert(interp_run(it));
  const bpcrt_tensor *loss = bpcrt_st_find(&got, "loss");
  cr_assert(loss && loss->dtype == BPCRT_F32 && loss->rank == 0);
  double l32;
  bpcrt_st_to_f64(loss, &l32);
  cr_expect(fabs(l32 - interp_value(it, g->loss)->v[0]) <= 1e-4 * fabs(l32) + 1e-5);
  cr_expect(bpcrt_st_find(&got, "acc"), "metric acc missing");
  int checked = 0;
  for (int p = 0; p < g->params.n; p++) {
    char name[128];
    snprintf(name, sizeof name, "grad.%s", g->params.v[p].name);
    const bpcrt_tensor *t = bpcrt_st_find(&got, name);
    cr_assert(t, "%s missing", name);
    int64_t n = bpcrt_numel(t);
    double *v = malloc(sizeof(double) * (size_t)n);
    bpcrt_st_to_f64(t, v);
    const Value *ref = interp_value(it, g->params.v[p].grad);
    cr_assert_eq(n, shape_numel(&ref->shape));
    for (int64_t i = 0; i < n; i++, checked++)
      cr_expect(fabs(v[i] - ref->v[i]) <= 1e-4 * fabs(ref->v[i]) + 1e-5, "%s[%lld]: %.9g vs f64 %.12g", name,
                (long long)i, v[i], ref->v[i]);
    free(v);
  }
  cr_expect_gt(checked, 9000);
  interp_free(it);
  graph_free(g);
  cap_close(&c);
  arena_free(&a);
  bpcrt_st_free(&got);
}

Test(cli, grad_lists_every_mismatch_and_writes_nothing) {
  char in[512], outp[512];
  snprintf(in, sizeof in, "%s/bad.safetensors", tmpdir);
  snprintf(outp, sizeof outp, "%s/g.safetensors", tmpdir);
  write_inputs(in, 32, true);
  char *out;
  cr_expect_eq(run(&out, "grad models/mlp_digits.yaml --inputs %s -o %s", in, outp), 1);
  cr_expect(strstr(out, "'x' has shape [32, 63], the model expects [64, 64]"), "%s", out);
  cr_expect(strstr(out, "'y' holds F32, the model expects I32"), "%s", out);
  cr_expect(strstr(out, "'z' is not an input of the model"), "%s", out);
  cr_expect_not(exists(outp));
  free(out);
  // A label out of range is a clear error too, naming the file.
  bpcrt_tensors set = {0};
  int64_t xs[2] = {64, 64}, ys[1] = {64};
  int32_t y[64];
  for (int i = 0; i < 64; i++) y[i] = i == 9 ? 12 : 1;
  bpcrt_st_add(&set, "x", BPCRT_F32, 2, xs, NULL);
  bpcrt_st_add(&set, "y", BPCRT_I32, 1, ys, y);
  char err[256];
  cr_assert_eq(bpcrt_st_write(in, &set, err, sizeof err), 0);
  bpcrt_st_free(&set);
  cr_expect_eq(run(&out, "grad models/mlp_digits.yaml --inputs %s -o %s", in, outp), 1);
  cr_expect(strstr(out, "label 12 out of range [0, 10)"), "%s", out);
  cr_expect_not(exists(outp));
  free(out);
  // --params from a file of another model: every mismatch listed.
  cr_expect_eq(
      run(&out, "grad models/mlp_digits.yaml --inputs %s -o %s --params tests/data/fixture.safetensors", in, outp), 1);
  cr_expect(strstr(out, "missing param 'w1'"), "%s", out);
  cr_expect_not(exists(outp));
  free(out);
}

// ---- bpc tokenize (SPEC 6.4) ----------------------------------------------

#define WP "tests/data/wordpiece/"

static void write_text(const char *path, const char *s, size_t n) {
  FILE *f = fopen(path, "wb");
  cr_assert(f);
  cr_assert_eq(fwrite(s, 1, n, f), n);
  cr_assert_eq(fclose(f), 0);
}

static void expect_same_tensor(const bpcrt_tensors *got, const char *name, const bpcrt_tensors *ref,
                               const char *refname) {
  const bpcrt_tensor *a = bpcrt_st_find(got, name), *b = bpcrt_st_find(ref, refname);
  cr_assert(a && b, "%s / %s", name, refname);
  cr_expect_eq(a->dtype, b->dtype, "%s", refname);
  cr_expect_eq(a->rank, 2);
  cr_expect(a->shape[0] == b->shape[0] && a->shape[1] == b->shape[1], "%s: shape", refname);
  cr_expect(a->nbytes == b->nbytes && memcmp(a->data, b->data, a->nbytes) == 0, "%s differs from HF", refname);
}

Test(cli, tokenize_matches_hf_reference) {
  static const struct {
    const char *flags, *ref;
  } cases[] = {
      {"--max-len 16", "uncased16"},
      {"", "uncased128"},
      {"--cased --max-len 128", "cased128"},
  };
  bpcrt_tensors ref;
  char err[512];
  cr_assert_eq(bpcrt_st_read(BPC_SOURCE_DIR "/" WP "ref.safetensors", &ref, err, sizeof err), 0, "%s", err);
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char outp[300], *out, name[64];
    snprintf(outp, sizeof outp, "%s/tok%zu.safetensors", tmpdir, i);
    cr_assert_eq(run(&out, "tokenize --vocab " WP "vocab.txt %s " WP "sample.txt -o %s", cases[i].flags, outp), 0, "%s",
                 out);
    free(out);
    bpcrt_tensors got;
    cr_assert_eq(bpcrt_st_read(outp, &got, err, sizeof err), 0, "%s", err);
    cr_expect_eq(got.n, 2);
    snprintf(name, sizeof name, "%s.ids", cases[i].ref);
    expect_same_tensor(&got, "ids", &ref, name);
    snprintf(name, sizeof name, "%s.mask", cases[i].ref);
    expect_same_tensor(&got, "mask", &ref, name);
    bpcrt_st_free(&got);
  }
  bpcrt_st_free(&ref);
  char *out;
  cr_expect_eq(run(&out, "help tokenize"), 0);
  cr_expect(strstr(out, "usage: bpc tokenize --vocab"), "%s", out);
  free(out);
  cr_expect_eq(run(&out, "help"), 0);
  cr_expect(strstr(out, "bpc tokenize"), "%s", out);
  free(out);
}

Test(cli, tokenize_errors_write_nothing) {
  char text[300], crlf[300], badtext[300], empty[300], novocab[300], outp[300], *out;
  snprintf(text, sizeof text, "%s/t.txt", tmpdir);
  snprintf(crlf, sizeof crlf, "%s/crlf.txt", tmpdir);
  snprintf(badtext, sizeof badtext, "%s/bad.txt", tmpdir);
  snprintf(empty, sizeof empty, "%s/empty.txt", tmpdir);
  snprintf(novocab, sizeof novocab, "%s/nounk.txt", tmpdir);
  snprintf(outp, sizeof outp, "%s/o.safetensors", tmpdir);
  write_text(text, "hello world\n\nlast line without newline", 38);
  write_text(crlf, "hello world\r\n\r\nlast line without newline", 40);
  write_text(badtext, "fine\ncaf\xc3\xa9 ok\nab\xff\n", 19);
  write_text(empty, "", 0);
  write_text(novocab, "[PAD]\n[CLS]\n[SEP]\nhello\n", 24);

  // a good run: 3 lines (the last without a newline), CRLF the same
  cr_assert_eq(run(&out, "tokenize --vocab " WP "vocab.txt --max-len 8 %s -o %s", text, outp), 0, "%s", out);
  free(out);
  bpcrt_tensors a, b;
  char err[512];
  cr_assert_eq(bpcrt_st_read(outp, &a, err, sizeof err), 0, "%s", err);
  cr_assert_eq(run(&out, "tokenize --vocab " WP "vocab.txt --max-len 8 %s -o %s", crlf, outp), 0, "%s", out);
  free(out);
  cr_assert_eq(bpcrt_st_read(outp, &b, err, sizeof err), 0, "%s", err);
  const bpcrt_tensor *ids = bpcrt_st_find(&a, "ids");
  cr_assert(ids && ids->shape[0] == 3 && ids->shape[1] == 8);
  const int32_t want[8] = {101, 102, 0, 0, 0, 0, 0, 0};  // the empty line
  cr_expect_eq(memcmp((const int32_t *)ids->data + 8, want, sizeof want), 0);
  for (int i = 0; i < 2; i++)
    cr_expect(a.t[i].nbytes == b.t[i].nbytes && !memcmp(a.t[i].data, b.t[i].data, a.t[i].nbytes), "CRLF differs");
  bpcrt_st_free(&a);
  bpcrt_st_free(&b);
  cr_assert_eq(remove(outp), 0);

  cr_expect_eq(run(&out, "tokenize --vocab %s/none.txt %s -o %s", tmpdir, text, outp), 1);
  cr_expect(strstr(out, "none.txt: error: cannot read the vocabulary"), "%s", out);
  free(out);
  cr_expect_eq(run(&out, "tokenize --vocab %s %s -o %s", novocab, text, outp), 1);
  cr_expect(strstr(out, "nounk.txt:4: error: the vocabulary has no [UNK] token"), "%s", out);
  free(out);
  cr_expect_eq(run(&out, "tokenize --vocab " WP "vocab.txt %s -o %s", badtext, outp), 1);
  cr_expect(strstr(out, "bad.txt:3:3: error: invalid UTF-8 at byte 3 of the line (byte 0xff, file offset 16)"), "%s",
            out);
  free(out);
  cr_expect_eq(run(&out, "tokenize --vocab " WP "vocab.txt %s -o %s", empty, outp), 1);
  cr_expect(strstr(out, "empty.txt:1: error: no text"), "%s", out);
  free(out);
  cr_expect_eq(run(&out, "tokenize --vocab " WP "vocab.txt %s/nope.txt -o %s", tmpdir, outp), 1);
  cr_expect(strstr(out, "nope.txt: error: cannot read"), "%s", out);
  free(out);
  // wrong usage exits 2 (REFERENCE: usage errors print the usage and exit 2)
  cr_expect_eq(run(&out, "tokenize --vocab " WP "vocab.txt --max-len 1 %s -o %s", text, outp), 2);
  cr_expect(strstr(out, "--max-len needs an integer T >= 2"), "%s", out);
  free(out);
  cr_expect_eq(run(&out, "tokenize --vocab " WP "vocab.txt --max-len 12x %s -o %s", text, outp), 2);
  free(out);
  cr_expect_eq(run(&out, "tokenize --vocab " WP "vocab.txt %s", text), 2);
  cr_expect(strstr(out, "tokenize needs -o OUT.safetensors"), "%s", out);
  free(out);
  cr_expect_eq(run(&out, "tokenize %s -o %s", text, outp), 2);
  free(out);
  cr_expect_eq(run(&out, "tokenize --vocab " WP "vocab.txt -o %s", outp), 2);
  free(out);
  cr_expect_eq(run(&out, "tokenize --vocab " WP "vocab.txt %s -o %s --frob", text, outp), 2);
  free(out);
  cr_expect_not(exists(outp));
  // an error leaves an existing output untouched, and no temp file beside it
  write_text(outp, "old", 3);
  cr_expect_eq(run(&out, "tokenize --vocab " WP "vocab.txt %s -o %s", badtext, outp), 1);
  free(out);
  size_t n;
  char *old = NULL;
  FILE *f = fopen(outp, "rb");
  cr_assert(f);
  old = malloc(16);
  n = fread(old, 1, 16, f);
  fclose(f);
  cr_expect(n == 3 && !memcmp(old, "old", 3));
  free(old);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "test $(ls %s | wc -l) -eq 6", tmpdir);
  cr_expect_eq(system(cmd), 0, "a temp file was left in %s", tmpdir);
}

// A trainer compiled for features this CPU lacks exits 1 naming them, before
// any generated code runs (never SIGILL); `info` shows its target. x86-64-v4
// (AVX-512) on an AVX2-only machine is the failing case; on an AVX-512
// machine the trainer runs (bpcrt_cpu_check's own test covers the message).
static int sh(char **out, const char *cmd) {
  char full[2048];
  snprintf(full, sizeof full, "%s 2>&1", cmd);
  FILE *p = popen(full, "r");
  cr_assert(p);
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  for (size_t got; (got = fread(buf + n, 1, cap - n - 1, p)) > 0;) {
    n += got;
    if (n + 1 >= cap) buf = realloc(buf, cap *= 2);
  }
  buf[n] = 0;
  int st = pclose(p);
  *out = buf;
  cr_assert(WIFEXITED(st), "%s died: %s", cmd, buf);
  return WEXITSTATUS(st);
}

Test(cli, trainer_checks_the_cpu_it_starts_on) {
  char *out, cmd[1024];
  __builtin_cpu_init();
  bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512cd");
  cr_assert_eq(run(&out, "compile models/xor.yaml --cpu x86-64-v4 -o %s/v4", tmpdir), 0, "%s", out);
  free(out);
  snprintf(cmd, sizeof cmd, "%s/v4 train --steps 1 --quiet", tmpdir);
  int rc = sh(&out, cmd);
  if (has) {
    cr_expect_eq(rc, 0, "%s", out);
  } else {
    cr_expect_eq(rc, 1, "%s", out);
    cr_expect(strstr(out, "compiled for x86-64-v4 and needs avx512f"), "%s", out);
  }
  free(out);
  snprintf(cmd, sizeof cmd, "%s/v4 info", tmpdir);
  cr_expect_eq(sh(&out, cmd), 0, "%s", out);
  cr_expect(strstr(out, "target   x86-64-v4: ") && strstr(out, " avx512vl"), "%s", out);
  free(out);
  cr_assert_eq(run(&out, "compile models/xor.yaml -o %s/here", tmpdir), 0, "%s", out);
  free(out);
  snprintf(cmd, sizeof cmd, "%s/here info", tmpdir);
  cr_expect_eq(sh(&out, cmd), 0, "%s", out);
  cr_expect(strstr(out, " avx2"), "native records the host's features: %s", out);
  free(out);
  snprintf(cmd, sizeof cmd, "%s/here train --steps 1 --quiet", tmpdir);
  cr_expect_eq(sh(&out, cmd), 0, "%s", out);
  free(out);
}

// SPEC 6.5: --precision bf16 (or train.precision) runs the products in bf16;
// its trainer gives the same bits on the AVX2 path (BPC_ISA=avx2, the path of a
// CPU without AVX512_BF16) as with vdpbf16ps, and for 1 or 2 threads; f32
// stays the default; bf16 with --dtype f64 is an error that writes nothing.
static bool same_bytes(const char *a, const char *b) {
  FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
  bool same = fa && fb;
  for (int x, y; same;) {
    x = fgetc(fa), y = fgetc(fb);
    same = x == y;
    if (x == EOF) break;
  }
  if (fa) fclose(fa);
  if (fb) fclose(fb);
  return same;
}

Test(cli, precision_bf16) {
  char *out, cmd[1024], a[512], b[512];
  // A small GPT (matmuls, attention) on a text written here.
  const char *g = "models/gpt_poetry.yaml -D L=1 -D C=32 -D NH=2 -D T=16 -D B=4";
  snprintf(a, sizeof a, "%s/t.txt", tmpdir);
  FILE *tf = fopen(a, "w");
  cr_assert(tf);
  for (int i = 0; i < 200; i++) fprintf(tf, "line %d: the quick brown fox jumps over the lazy dog %d\n", i, i * 7 % 13);
  fclose(tf);
  cr_expect_eq(run(&out, "compile models/mlp_digits.yaml --precision bf16 --dtype f64 -o %s/no", tmpdir), 1);
  cr_expect(strstr(out, "--precision bf16 needs f32"), "%s", out);
  cr_expect(!exists(strcat(strcpy(a, tmpdir), "/no")));
  free(out);
  cr_expect_eq(run(&out, "compile models/mlp_digits.yaml --precision f16 -o %s/no", tmpdir), 2);
  cr_expect(strstr(out, "--precision takes f32 or bf16, got 'f16'"), "%s", out);
  free(out);
  cr_assert_eq(run(&out, "compile %s --precision bf16 -o %s/bf", g, tmpdir), 0, "%s", out);
  free(out);
  cr_assert_eq(run(&out, "compile %s -o %s/f32", g, tmpdir), 0, "%s", out);
  free(out);
  snprintf(cmd, sizeof cmd, "%s/bf info", tmpdir);
  cr_expect_eq(sh(&out, cmd), 0, "%s", out);
  cr_expect(strstr(out, "precision bf16") && strstr(out, "--precision bf16"), "%s", out);
  free(out);
  snprintf(cmd, sizeof cmd, "%s/f32 info", tmpdir);
  cr_expect_eq(sh(&out, cmd), 0, "%s", out);
  cr_expect(!strstr(out, "precision") && !strstr(out, "--precision"), "%s", out);
  free(out);
  static const char *const runs[][2] = {{"", "2"}, {"BPC_ISA=avx2 ", "2"}, {"", "1"}};
  for (int r = 0; r < 3; r++) {
    snprintf(cmd, sizeof cmd,
             "cd %s && %s./bf train --data t.txt --steps 20 --threads %s --quiet --save bf%d.safetensors", tmpdir,
             runs[r][0], runs[r][1], r);
    cr_expect_eq(sh(&out, cmd), 0, "%s", out);
    free(out);
  }
  snprintf(a, sizeof a, "%s/bf0.safetensors", tmpdir);
  for (int r = 1; r < 3; r++) {
    snprintf(b, sizeof b, "%s/bf%d.safetensors", tmpdir, r);
    cr_expect(same_bytes(a, b), "bf16 trainer: %s%s threads gave other bits", runs[r][0], runs[r][1]);
  }
  snprintf(cmd, sizeof cmd, "cd %s && ./f32 train --data t.txt --steps 20 --quiet --save f32.safetensors", tmpdir);
  cr_expect_eq(sh(&out, cmd), 0, "%s", out);
  free(out);
  snprintf(b, sizeof b, "%s/f32.safetensors", tmpdir);
  cr_expect(!same_bytes(a, b), "bf16 and f32 trainers gave the same bits");
}

// --max-time: the step loop stops once the budget is spent, saves the step it
// reached and evaluates, exit 0; --resume carries on from that step.
Test(cli, trainer_max_time) {
  char *out, cmd[1024];
  cr_assert_eq(run(&out, "compile models/xor.yaml -o %s/xor", tmpdir), 0, "%s", out);
  free(out);
  snprintf(cmd, sizeof cmd, "cd %s && ./xor train --steps 1000000000 --max-time 0.2 --save x.safetensors", tmpdir);
  cr_expect_eq(sh(&out, cmd), 0, "%s", out);
  long long step = -1;
  const char *at = strstr(out, "--max-time 0.2 s reached at step ");
  cr_expect(at && sscanf(at, "--max-time 0.2 s reached at step %lld", &step) == 1 && step > 0, "%s", out);
  cr_expect(strstr(out, "train loss") && strstr(out, "saved x.safetensors"), "%s", out);
  free(out);
  snprintf(cmd, sizeof cmd, "cd %s && ./xor train --steps %lld --resume x.safetensors --save y.safetensors", tmpdir,
           step + 5);
  cr_expect_eq(sh(&out, cmd), 0, "%s", out);
  char want[64];
  snprintf(want, sizeof want, "(step %lld)", step + 5);
  cr_expect(strstr(out, want), "%s", out);
  free(out);
  snprintf(cmd, sizeof cmd, "cd %s && ./xor train --max-time 0", tmpdir);
  cr_expect_eq(sh(&out, cmd), 2, "%s", out);
  cr_expect(strstr(out, "--max-time takes a positive number of seconds"), "%s", out);
  free(out);
}
