// test_load.c — the front end: yaml.c, parse.c, load.c.
// Diagnostics are captured in memory and compared as text, so every message
// and every position is pinned.
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bpcc.h"

static Arena arena;
static Diag diag;
static char *out_buf;
static size_t out_len;
static FILE *out;

static void setup(void) {
  arena = (Arena){0};
  out = open_memstream(&out_buf, &out_len);
  diag_init(&diag, out);
}

static void teardown(void) {
  fclose(out);
  free(out_buf);
  arena_free(&arena);
}

TestSuite(yaml, .init = setup, .fini = teardown);
TestSuite(expr, .init = setup, .fini = teardown);
TestSuite(model, .init = setup, .fini = teardown);

static const char *errors(void) {
  fflush(out);
  return out_buf ? out_buf : "";
}

static SrcFile *src(const char *text) {
  SrcFile *f = arena_alloc(&arena, sizeof(SrcFile));
  f->path = "t.yaml";
  f->text = text;
  f->len = strlen(text);
  return f;
}

static YNode *yparse(const char *text) { return yaml_parse(&arena, &diag, src(text)); }

// The expression in `v: TEXT` (column 4 is the first character).
static Expr *eparse(const char *text) {
  char *doc = arena_printf(&arena, "v: %s\n", text);
  YNode *root = yparse(doc);
  cr_assert_not_null(root, "%s", errors());
  return expr_parse(&arena, &diag, ymap_get(root, "v"));
}

static char *eprint(const Expr *e) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  expr_print(f, e);
  fclose(f);
  char *s = arena_strdup(&arena, buf);
  free(buf);
  return s;
}

static void expect_error(const char *want) {
  cr_assert(diag.nerr > 0, "expected an error containing '%s'", want);
  cr_assert(strstr(errors(), want), "expected '%s' in:\n%s", want, errors());
}

// ------------------------------------------------------------ yaml

Test(yaml, tree_and_marks) {
  YNode *r = yparse("a: 1\nb:\n  - x\n  - 'y'\nc: {d: e}\n");
  cr_assert_not_null(r, "%s", errors());
  cr_assert_eq(r->kind, YN_MAP);
  cr_assert_eq(r->n, 3);
  YNode *b = ymap_get(r, "b");
  cr_assert_eq(b->kind, YN_SEQ);
  cr_assert_eq(b->n, 2);
  cr_assert_eq(b->items[0]->loc.line, 3);
  cr_assert_eq(b->items[0]->loc.col, 5);
  cr_assert(b->items[0]->plain);
  cr_assert_not(b->items[1]->plain);
  cr_assert_str_eq(b->items[1]->str, "y");
  YNode *c = ymap_get(r, "c");
  cr_assert_eq(c->loc.col, 4);
  cr_assert_str_eq(ymap_get(c, "d")->str, "e");
  cr_assert_null(ymap_get(r, "zz"));
}

Test(yaml, utf8_columns_are_bytes) {
  YNode *r = yparse("doc: \"é\"\nx: [é, b]\n");
  cr_assert_not_null(r);
  YNode *x = ymap_get(r, "x");
  cr_assert_eq(x->items[1]->loc.col, 9);  // "x: [é, " is 8 bytes
}

Test(yaml, syntax_error) {
  cr_assert_null(yparse("a: 1\nb: [1, 2\n"));
  expect_error("t.yaml:3:1: error: invalid YAML: did not find expected ',' or ']'");
}

Test(yaml, empty_file) {
  cr_assert_null(yparse(""));
  expect_error("t.yaml:1:1: error: empty model file");
}

Test(yaml, comment_only) {
  cr_assert_null(yparse("# nothing\n"));
  expect_error("t.yaml:1:1: error: empty model file");
}

Test(yaml, alias) {
  cr_assert_null(yparse("a: &x 1\nb: *x\n"));
  expect_error("t.yaml:2:4: error: YAML aliases (*x) are not supported");
}

Test(yaml, duplicate_key) {
  cr_assert_null(yparse("a: 1\nb: 2\na: 3\n"));
  expect_error("t.yaml:3:1: error: duplicate key 'a'");
  expect_error("t.yaml:1:1: note: first defined here");
}

Test(yaml, complex_key) {
  cr_assert_null(yparse("? [a]\n: 1\n"));
  expect_error("t.yaml:1:3: error: mapping keys must be plain names, not a list");
}

Test(yaml, two_documents) {
  cr_assert_null(yparse("a: 1\n---\nb: 2\n"));
  expect_error("t.yaml:2:1: error: a model file holds one YAML document");
}

Test(yaml, too_deep) {
  char *s = arena_alloc(&arena, 1000);
  memset(s, '[', 300);
  cr_assert_null(yparse(s));
  expect_error("t.yaml:1:201: error: nesting deeper than 200 levels");
}

Test(yaml, nul_byte) {
  SrcFile *f = src("a: 1\n");
  static const char text[] = "a: 1\nb: \0x\n";
  f->text = text;
  f->len = sizeof(text) - 1;
  cr_assert_null(yaml_parse(&arena, &diag, f));
  expect_error("t.yaml:2:4: error: invalid YAML: control characters are not allowed");
}

Test(yaml, binary_junk) {
  static const char text[] = "\xff\xfe\x00\x01\x80garbage\x7f";
  SrcFile *f = src("");
  f->text = text;
  f->len = sizeof(text) - 1;
  cr_assert_null(yaml_parse(&arena, &diag, f));
  cr_assert(diag.nerr > 0);
}

Test(yaml, tab_indent) {
  cr_assert_null(yparse("a:\n\tb: 1\n"));
  expect_error("t.yaml:2:1: error: invalid YAML: found character that cannot start any token");
}

// ------------------------------------------------------------ expressions

Test(expr, precedence) {
  cr_assert_str_eq(eprint(eparse("a + b * c")), "a + b * c");
  Expr *e = eparse("a + b * c - d");
  cr_assert_eq(e->kind, EX_BIN);
  cr_assert_eq(e->op, '-');
  cr_assert_eq(e->args[0]->op, '+');
  cr_assert_eq(e->args[0]->args[1]->op, '*');
  cr_assert_str_eq(eprint(eparse("(a + b) * c")), "(a + b) * c");
  cr_assert_str_eq(eprint(eparse("a - (b - c)")), "a - (b - c)");
  cr_assert_str_eq(eprint(eparse("(a - b) - c")), "a - b - c");
  cr_assert_str_eq(eprint(eparse("x @ w1 + b1")), "x @ w1 + b1");
  cr_assert_str_eq(eprint(eparse("a / (b @ c)")), "a / (b @ c)");
}

Test(expr, power) {
  Expr *e = eparse("-x ** 2");
  cr_assert_eq(e->kind, EX_NEG);
  cr_assert_eq(e->args[0]->kind, EX_BIN);
  cr_assert_eq(e->args[0]->op, 'P');
  e = eparse("a ** b ** c");
  cr_assert_eq(e->op, 'P');
  cr_assert_eq(e->args[1]->op, 'P');
  cr_assert_str_eq(eprint(e), "a ** b ** c");
  cr_assert_str_eq(eprint(eparse("(a ** b) ** c")), "(a ** b) ** c");
  e = eparse("x ** -1");
  cr_assert_eq(e->args[1]->kind, EX_NUM);
  cr_assert_eq(e->args[1]->num, -1);
  cr_assert_str_eq(eprint(e), "x ** -1");
  cr_assert_str_eq(eprint(eparse("(-x) ** 2")), "(-x) ** 2");
  cr_assert_str_eq(eprint(eparse("-x ** 2")), "-x ** 2");
  cr_assert_str_eq(eprint(eparse("(-2) ** 2")), "(-2) ** 2");
  cr_assert_str_eq(eprint(eparse("-(a + b)")), "-(a + b)");
  cr_assert_str_eq(eprint(eparse("a * -b")), "a * -b");
  cr_assert_str_eq(eprint(eparse("--2")), "--2");
}

Test(expr, numbers) {
  Expr *e = eparse("1e-3");
  cr_assert_eq(e->kind, EX_NUM);
  cr_assert_not(e->is_int);
  cr_assert_float_eq(e->num, 1e-3, 1e-18);
  cr_assert(eparse("42")->is_int);
  cr_assert_eq(eparse(".5")->num, 0.5);
  cr_assert_eq(eparse("2.")->num, 2.0);
  cr_assert_not(eparse("2.")->is_int);
  cr_assert_str_eq(eprint(eparse("2.")), "2.0");
  cr_assert_str_eq(eprint(eparse("0.1")), "0.1");
  cr_assert_str_eq(eprint(eparse("3e-4")), "0.0003");
  cr_assert_str_eq(eprint(eparse("1e20")), "1e+20");
  cr_assert_str_eq(eprint(eparse("0.30000000000000004")), "0.30000000000000004");
  e = eparse("true");
  cr_assert_eq(e->kind, EX_BOOL);
  cr_assert_eq(e->num, 1);
  cr_assert_eq(eparse("false")->num, 0);
  cr_assert_eq(eparse("-3")->num, -3);
  cr_assert(eparse("-3")->is_int);
}

Test(expr, calls_and_lists) {
  Expr *e = eparse("sum(x, axis=[0, -1], keepdims=true)");
  cr_assert_eq(e->kind, EX_CALL);
  cr_assert_str_eq(e->name, "sum");
  cr_assert_eq(e->nargs, 1);
  cr_assert_eq(e->nkw, 2);
  cr_assert_str_eq(e->kwnames[0], "axis");
  cr_assert_eq(e->kwargs[0]->kind, EX_LIST);
  cr_assert_eq(e->kwargs[0]->nargs, 2);
  cr_assert_eq(e->kwlocs[1].col, 25);
  cr_assert_str_eq(eprint(e), "sum(x, axis=[0, -1], keepdims=true)");
  e = eparse("f()");
  cr_assert_eq(e->nargs, 0);
  cr_assert_str_eq(eprint(e), "f()");
  e = eparse("'[]'");
  cr_assert_eq(e->kind, EX_LIST);
  cr_assert_eq(e->nargs, 0);
  cr_assert_str_eq(eprint(eparse("reshape(x, [B, T, NH, C / NH])")), "reshape(x, [B, T, NH, C / NH])");
  cr_assert_str_eq(eprint(eparse("f(a, b,)")), "f(a, b)");
}

Test(expr, locations) {
  Expr *e = eparse("relu(x @ w1 + b1)");  // starts at column 4
  cr_assert_eq(e->loc.col, 4);
  Expr *add = e->args[0];
  cr_assert_eq(add->op, '+');
  cr_assert_eq(add->loc.col, 16);
  cr_assert_eq(add->args[0]->loc.col, 11);  // '@'
  cr_assert_eq(add->args[0]->args[0]->loc.col, 9);
  cr_assert_eq(add->args[1]->loc.col, 18);
  cr_assert_eq(add->loc.line, 1);
}

Test(expr, quoted_and_folded_locations) {
  YNode *r = yparse("a: \"x + y\"\nb: x +\n  yy\n");
  cr_assert_not_null(r);
  Expr *e = expr_parse(&arena, &diag, ymap_get(r, "a"));
  cr_assert_eq(e->args[1]->loc.col, 9);
  e = expr_parse(&arena, &diag, ymap_get(r, "b"));
  cr_assert_eq(e->args[1]->loc.line, 3);
  cr_assert_eq(e->args[1]->loc.col, 3);
}

#define PARSE_ERR(text, msg)      \
  do {                            \
    cr_assert_null(eparse(text)); \
    expect_error(msg);            \
  } while (0)

Test(expr, err_char) { PARSE_ERR("a + $b", "t.yaml:1:8: error: unexpected character '$'"); }
Test(expr, err_end) { PARSE_ERR("a +", "t.yaml:1:7: error: unexpected end of expression"); }
Test(expr, err_unclosed) { PARSE_ERR("f(a, (b + c)", "t.yaml:1:5: error: unclosed '('"); }
Test(expr, err_unclosed_list) { PARSE_ERR("'[1, 2'", "t.yaml:1:5: error: unclosed '['"); }
Test(expr, err_unmatched) { PARSE_ERR("a + b)", "t.yaml:1:9: error: unmatched ')'"); }
Test(expr, err_trailing) { PARSE_ERR("a b", "t.yaml:1:6: error: unexpected 'b'"); }
Test(expr, err_empty) { PARSE_ERR("''", "t.yaml:1:4: error: empty expression"); }
Test(expr, err_unary_plus) { PARSE_ERR("+a", "t.yaml:1:4: error: unexpected '+'"); }
Test(expr, err_big) { PARSE_ERR("1e999", "t.yaml:1:4: error: number too large"); }
Test(expr, err_big_int) { PARSE_ERR("123456789012345678901", "t.yaml:1:4: error: number too large"); }
Test(expr, err_kw_order) { PARSE_ERR("f(a=1, b)", "t.yaml:1:11: error: positional argument after keyword argument"); }
Test(expr, err_dup_kw) { PARSE_ERR("f(a=1, a=2)", "t.yaml:1:11: error: duplicate keyword argument 'a'"); }
Test(expr, err_call_on_expr) { PARSE_ERR("(f)(x)", "t.yaml:1:7: error: unexpected '('"); }
Test(expr, err_stray_eq) { PARSE_ERR("a = 1", "t.yaml:1:6: error: unexpected '='"); }

Test(expr, err_deep) {
  char *s = arena_alloc(&arena, 600);
  memset(s, '(', 250);
  strcpy(s + 250, "x");
  PARSE_ERR(s, "t.yaml:1:204: error: expression nested deeper than 200 levels");
}

Test(expr, deep_ok) {
  char *s = arena_alloc(&arena, 600);
  memset(s, '(', 150);
  s[150] = 'x';
  memset(s + 151, ')', 150);
  cr_assert_not_null(eparse(s), "%s", errors());
}

// ------------------------------------------------------------ models

static Model *load(const char *text) { return model_load_text(&arena, &diag, "m.yaml", text, strlen(text)); }

#define HEAD "bpc: 1\nname: m\n"

static const char *mlp = HEAD
    "doc: a doc\n"
    "dims: {B: 4, D: 3, H: 2 * D}\n"
    "inputs:\n"
    "  x: {shape: [B, D]}\n"
    "  y: {shape: [B], dtype: i32}\n"
    "params:\n"
    "  w: {shape: [D, H]}\n"
    "  b: {shape: [H]}\n"
    "  s: {shape: [], init: \"normal(0.5, 2)\", trainable: false, decay: true}\n"
    "  u: {shape: [H], init: \"uniform(-1/2, 2 ** -1)\", dtype: f64}\n"
    "  c: {shape: [H], init: constant(-3)}\n"
    "  n: {shape: [H], init: normal(0.02)}\n"
    "graph:\n"
    "  h: relu(x @ w + b)\n"
    "  loss: cross_entropy(h, y)\n"
    "  acc: accuracy(h, y)\n"
    "  two: 2\n"
    "loss: loss\n"
    "metrics: acc\n"
    "outputs: [h, two]\n";

Test(model, mlp) {
  Model *m = load(mlp);
  cr_assert_not_null(m, "%s", errors());
  cr_assert_str_eq(m->name, "m");
  cr_assert_str_eq(m->doc, "a doc");
  cr_assert_str_eq(m->dir, ".");
  cr_assert_eq(m->ndims, 3);
  cr_assert_str_eq(eprint(m->dims[2].value), "2 * D");
  cr_assert_eq(m->ninputs, 2);
  cr_assert_eq(m->inputs[0].dtype, DT_F32);
  cr_assert_eq(m->inputs[1].dtype, DT_I32);
  cr_assert_eq(m->inputs[0].rank, 2);
  cr_assert_eq(m->nparams, 6);
  cr_assert_eq(m->params[0].init.kind, INIT_XAVIER_UNIFORM);
  cr_assert_eq(m->params[0].decay, -1);
  cr_assert(m->params[0].trainable);
  cr_assert_eq(m->params[1].init.kind, INIT_ZEROS);
  TensorDecl *s = &m->params[2];
  cr_assert_eq(s->rank, 0);
  cr_assert_eq(s->init.kind, INIT_NORMAL);
  cr_assert_eq(s->init.a, 0.5);
  cr_assert_eq(s->init.b, 2);
  cr_assert_not(s->trainable);
  cr_assert_eq(s->decay, 1);
  cr_assert_eq(m->params[3].init.kind, INIT_UNIFORM);
  cr_assert_eq(m->params[3].init.a, -0.5);
  cr_assert_eq(m->params[3].init.b, 0.5);
  cr_assert_eq(m->params[3].dtype, DT_F64);
  cr_assert_eq(m->params[4].init.kind, INIT_CONSTANT);
  cr_assert_eq(m->params[4].init.a, -3);
  cr_assert_eq(m->params[5].init.a, 0);
  cr_assert_eq(m->params[5].init.b, 0.02);
  cr_assert_eq(m->nentries, 4);
  cr_assert_str_eq(eprint(m->entries[0].expr), "relu(x @ w + b)");
  cr_assert_eq(m->entries[3].expr->kind, EX_NUM);
  cr_assert_str_eq(m->loss, "loss");
  cr_assert_eq(m->nmetrics, 1);
  cr_assert_str_eq(m->metrics[0], "acc");
  cr_assert_eq(m->noutputs, 2);
  cr_assert_not(m->train.present);
  cr_assert_eq(m->train.opt.kind, OPT_ADAM);
  cr_assert_eq(m->train.grad_accum, 1);
  cr_assert_not(m->data_train.present);
  cr_assert_not(m->gen.present);
}

static Model *load_with(const char *tail) {
  return load(arena_printf(&arena, "%s%s",
                           HEAD "inputs: {x: {shape: [2]}, t: {shape: [2], dtype: i32}}\n"
                                "graph: {y: x * 2}\n",
                           tail));
}

static OptimCfg opt(const char *type) {
  Model *m = load_with(arena_printf(&arena, "train: {optimizer: {type: %s}}\n", type));
  cr_assert_not_null(m, "%s", errors());
  cr_assert(m->train.present);
  return m->train.opt;
}

Test(model, optimizer_defaults) {
  OptimCfg o = opt("sgd");
  cr_assert_eq(o.kind, OPT_SGD);
  cr_assert_eq(o.lr, 1e-3);
  cr_assert_eq(o.momentum, 0);
  cr_assert_eq(o.dampening, 0);
  cr_assert_not(o.nesterov);
  cr_assert_eq(o.weight_decay, 0);
  o = opt("adam");
  cr_assert_eq(o.kind, OPT_ADAM);
  cr_assert_eq(o.lr, 1e-3);
  cr_assert_eq(o.beta1, 0.9);
  cr_assert_eq(o.beta2, 0.999);
  cr_assert_eq(o.eps, 1e-8);
  cr_assert_eq(o.weight_decay, 0);
  o = opt("adamw");
  cr_assert_eq(o.kind, OPT_ADAMW);
  cr_assert_eq(o.weight_decay, 1e-2);
  cr_assert_eq(o.beta2, 0.999);
  o = opt("rmsprop");
  cr_assert_eq(o.lr, 1e-2);
  cr_assert_eq(o.alpha, 0.99);
  cr_assert_eq(o.eps, 1e-8);
  cr_assert_eq(o.momentum, 0);
  cr_assert_not(o.centered);
  cr_assert_eq(o.weight_decay, 0);
  o = opt("adagrad");
  cr_assert_eq(o.lr, 1e-2);
  cr_assert_eq(o.lr_decay, 0);
  cr_assert_eq(o.eps, 1e-10);
  cr_assert_eq(o.initial_accumulator_value, 0);
}

Test(model, train_values) {
  Model *m = load_with(
      "train:\n"
      "  optimizer: {type: adamw, lr: 3e-4, betas: [0.9, 0.95], eps: 1e-8, weight_decay: 0.1}\n"
      "  schedule: {type: cosine, warmup_steps: 100, min_lr: 3e-5}\n"
      "  clip_grad_norm: 1.0\n  grad_accum: 2\n  steps: 2000\n  eval_every: 200\n"
      "  checkpoint_every: 500\n  seed: 1337\n");
  cr_assert_not_null(m, "%s", errors());
  TrainCfg *t = &m->train;
  cr_assert_eq(t->opt.lr, 3e-4);
  cr_assert_eq(t->opt.beta2, 0.95);
  cr_assert_eq(t->opt.weight_decay, 0.1);
  cr_assert_eq(t->sched.kind, SCHED_COSINE);
  cr_assert_eq(t->sched.warmup_steps, 100);
  cr_assert_eq(t->sched.min_lr, 3e-5);
  cr_assert_eq(t->clip_grad_norm, 1.0);
  cr_assert_eq(t->grad_accum, 2);
  cr_assert_eq(t->steps, 2000);
  cr_assert_eq(t->eval_every, 200);
  cr_assert_eq(t->checkpoint_every, 500);
  cr_assert_eq(t->seed, 1337);
}

Test(model, train_default_adam) {
  Model *m = load_with("train: {steps: 10, schedule: {type: step, step_size: 5}}\n");
  cr_assert_not_null(m, "%s", errors());
  cr_assert_eq(m->train.opt.kind, OPT_ADAM);
  cr_assert_eq(m->train.sched.kind, SCHED_STEP);
  cr_assert_eq(m->train.sched.gamma, 0.1);
  cr_assert_eq(m->train.sched.step_size, 5);
}

Test(model, data_sections) {
  char cwd[4096];
  cr_assert_not_null(getcwd(cwd, sizeof(cwd)));
  const char *text = HEAD
      "dims: {B: 2}\n"
      "inputs: {x: {shape: [2]}, t: {shape: [B, 1], dtype: i32}}\n"
      "graph: {y: x * 2}\n"
      "data:\n"
      "  train: {format: text, path: poems.txt, tokens: t, targets: t}\n"
      "  test: {format: csv, path: /abs/d.csv, columns: {x: \"0:2\", t: 2},"
      " scale: {x: 1/16}, header: true}\n"
      "generate: {tokens: t, logits: y}\n";
  Model *m = model_load_text(&arena, &diag, "models/m.yaml", text, strlen(text));
  cr_assert_not_null(m, "%s", errors());
  cr_assert_str_eq(m->dir, "models");
  DataCfg *tr = &m->data_train;
  cr_assert(tr->present);
  cr_assert_eq(tr->format, DATA_TEXT);
  cr_assert_str_eq(tr->path, arena_printf(&arena, "%s/models/poems.txt", cwd));
  cr_assert_str_eq(tr->tokens, "t");
  cr_assert_eq(tr->val_fraction, 0.1);
  DataCfg *te = &m->data_test;
  cr_assert_eq(te->format, DATA_CSV);
  cr_assert_str_eq(te->path, "/abs/d.csv");
  cr_assert(te->header);
  cr_assert_eq(te->val_fraction, 0);
  cr_assert_eq(te->ncolumns, 2);
  cr_assert_eq(te->columns[0].lo, 0);
  cr_assert_eq(te->columns[0].hi, 2);
  cr_assert(te->columns[0].is_range);
  cr_assert_eq(te->columns[1].lo, 2);
  cr_assert_eq(te->columns[1].hi, 3);
  cr_assert_not(te->columns[1].is_range);
  cr_assert_eq(te->nscales, 1);
  cr_assert_eq(te->scales[0].scale, 1.0 / 16);
  cr_assert(m->gen.present);
  cr_assert_str_eq(m->gen.logits, "y");
}

Test(model, data_idx_safetensors) {
  const char *text = HEAD
      "inputs: {x: {shape: [2]}, t: {shape: [2], dtype: i32}}\n"
      "graph: {y: x * 2}\n"
      "data:\n"
      "  train: {format: idx, images: /d/i.gz, labels: /d/l.gz, x: x, y: t, scale: 1/255}\n"
      "  test: {format: safetensors, path: /d/t.safetensors}\n";
  Model *m = model_load_text(&arena, &diag, "/abs/m.yaml", text, strlen(text));
  cr_assert_not_null(m, "%s", errors());
  cr_assert_str_eq(m->dir, "/abs");
  cr_assert_eq(m->data_train.format, DATA_IDX);
  cr_assert_str_eq(m->data_train.images, "/d/i.gz");
  cr_assert_eq(m->data_train.nscales, 1);
  cr_assert_null(m->data_train.scales[0].input);
  cr_assert_float_eq(m->data_train.scales[0].scale, 1.0 / 255, 1e-15);
  cr_assert(m->data_test.shuffle);
}

Test(model, functions) {
  Model *m = load(HEAD
                  "dims: {C: 4}\ninputs: {x0: {shape: [C]}}\n"
                  "functions:\n"
                  "  block:\n"
                  "    args: [x]\n"
                  "    params: {w: {shape: [C, C], init: normal(0.02)}, g: {shape: [C], init: ones}}\n"
                  "    graph: {h: x @ w, out: x + gelu(h)}\n"
                  "    return: out\n"
                  "graph: {y1: block(x0)}\n");
  cr_assert_not_null(m, "%s", errors());
  cr_assert_eq(m->nfuncs, 1);
  FuncDef *f = &m->funcs[0];
  cr_assert_eq(f->nargs, 1);
  cr_assert_str_eq(f->args[0], "x");
  cr_assert_eq(f->nparams, 2);
  cr_assert_eq(f->params[1].init.kind, INIT_ONES);
  cr_assert_eq(f->nentries, 2);
  cr_assert_str_eq(f->ret, "out");
  cr_assert_eq(f->retloc.line, 10);
}

// Each error snippet: the whole model's text and the exact first diagnostic.
#define MODEL_ERR(name, text, msg) \
  Test(model, name) {              \
    cr_assert_null(load(text));    \
    expect_error(msg);             \
  }

MODEL_ERR(not_a_map, "- a\n- b\n", "m.yaml:1:1: error: a model file must be a mapping, not a list")
MODEL_ERR(missing_bpc, "name: m\ngraph: {a: 1}\n", "m.yaml:1:1: error: missing required key 'bpc' in the model")
MODEL_ERR(bad_version, "bpc: 2\nname: m\ngraph: {a: 1}\n", "m.yaml:1:6: error: unsupported format version '2'")
MODEL_ERR(unknown_top, HEAD "graph: {a: 1}\ngrpah: {}\n",
          "m.yaml:4:1: error: unknown key 'grpah' in the model; did you mean 'graph'?")
MODEL_ERR(bad_name, "bpc: 1\nname: 3m\ngraph: {a: 1}\n", "m.yaml:2:7: error: the model's name '3m' is not a name")
MODEL_ERR(empty_graph, HEAD "graph: {}\n", "m.yaml:3:8: error: the graph is empty")
MODEL_ERR(graph_list, HEAD "graph: [a]\n", "m.yaml:3:8: error: graph must be a mapping, not a list")
MODEL_ERR(collision, HEAD "dims: {B: 2}\ngraph: {B: 1}\n", "m.yaml:4:9: error: 'B' is already defined as a dim")
MODEL_ERR(bad_loss, HEAD "graph: {los: 1}\nloss: loss\n",
          "m.yaml:4:7: error: unknown graph entry 'loss'; did you mean 'los'?")
MODEL_ERR(bad_init, HEAD "params: {w: {shape: [2], init: xavier_unifrom}}\ngraph: {a: w}\n",
          "m.yaml:3:32: error: unknown init 'xavier_unifrom'; did you mean 'xavier_uniform'?")
MODEL_ERR(init_name_arg, HEAD "params: {w: {shape: [2], init: normal(s)}}\ngraph: {a: w}\n",
          "m.yaml:3:39: error: expected a constant number, found the name 's'")
MODEL_ERR(init_std, HEAD "params: {w: {shape: [2], init: 'normal(0, -1)'}}\ngraph: {a: w}\n",
          "m.yaml:3:43: error: normal's std must be >= 0, not -1")
MODEL_ERR(init_arity, HEAD "params: {w: {shape: [2], init: uniform(1)}}\ngraph: {a: w}\n",
          "m.yaml:3:32: error: init 'uniform' takes uniform(lo, hi)")
MODEL_ERR(bad_dtype, HEAD "inputs: {x: {shape: [2], dtype: f16}}\ngraph: {a: x}\n",
          "m.yaml:3:33: error: unknown dtype 'f16'; did you mean 'f32'?")
MODEL_ERR(bad_opt, HEAD "graph: {a: 1}\ntrain: {optimizer: {type: adamm}}\n",
          "m.yaml:4:27: error: unknown optimizer 'adamm'; did you mean 'adam'?")
MODEL_ERR(opt_key, HEAD "graph: {a: 1}\ntrain: {optimizer: {type: adam, momentum: 0.9}}\n",
          "m.yaml:4:33: error: optimizer 'adam' has no option 'momentum'")
MODEL_ERR(opt_typo, HEAD "graph: {a: 1}\ntrain: {optimizer: {type: adam, bettas: [0.9, 0.9]}}\n",
          "m.yaml:4:33: error: unknown key 'bettas' in the optimizer; did you mean 'betas'?")
MODEL_ERR(nesterov, HEAD "graph: {a: 1}\ntrain: {optimizer: {type: sgd, nesterov: true}}\n",
          "m.yaml:4:42: error: nesterov momentum requires a momentum > 0 and zero dampening")
MODEL_ERR(beta_range, HEAD "graph: {a: 1}\ntrain: {optimizer: {type: adam, betas: [0.9, 1]}}\n",
          "m.yaml:4:46: error: beta2 must be in [0, 1), not 1")
MODEL_ERR(steps_epochs, HEAD "graph: {a: 1}\ntrain: {steps: 1, epochs: 2}\n",
          "m.yaml:4:27: error: give either steps or epochs, not both")
MODEL_ERR(yes_bool, HEAD "graph: {a: 1}\ntrain: {optimizer: {type: rmsprop, centered: yes}}\n",
          "m.yaml:4:46: error: centered must be true or false")
MODEL_ERR(bad_path_key, HEAD "graph: {a: 1}\ndata: {train: {format: text, paht: a}}\n",
          "m.yaml:4:30: error: unknown key 'paht' in text data; did you mean 'path'?")

Test(model, several_errors) {
  cr_assert_null(load("bpc: 1\nname: m\ngraph: {a: 1}\nloss: b\nmetrics: [c]\nfoo: 1\n"));
  cr_assert_eq(diag.nerr, 3, "%s", errors());
}

Test(model, unreadable) {
  cr_assert_null(model_load(&arena, &diag, "/nonexistent/m.yaml"));
  expect_error("bpc: error: cannot read '/nonexistent/m.yaml': No such file or directory");
}

Test(model, shipped_models_load) {
  cr_assert_eq(chdir(BPC_SOURCE_DIR), 0);
  static const char *const models[] = {"models/xor.yaml", "models/mlp_digits.yaml", "models/gpt_poetry.yaml"};
  for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++) {
    if (access(models[i], R_OK) != 0) continue;
    cr_expect_not_null(model_load(&arena, &diag, models[i]), "%s:\n%s", models[i], errors());
  }
}
