// test_expand.c — Model -> Graph: dims and overrides, argument binding by
// schema, functions and repeat (names, prefixes, visibility, recursion),
// batch_norm state, dtype promotion, and the errors each of these reports.
#include <criterion/criterion.h>

#include "testutil.h"

#define HEAD "bpc: 1\nname: t\n"

static int find(const Graph *g, const char *name) {
  for (int i = 0; i < g->named.n; i++)
    if (!strcmp(g->named.v[i].name, name)) return g->named.v[i].node;
  return -1;
}

static const GParam *param(const Graph *g, const char *name) {
  for (int i = 0; i < g->params.n; i++)
    if (!strcmp(g->params.v[i].name, name)) return &g->params.v[i];
  return NULL;
}

static void expect_error(const char *yaml, const char *where_and_what) {
  Arena a = {0};
  Captured c;
  cap_open(&c);
  Graph *g = build_text(&a, &c, yaml, DT_F32);
  cr_expect_null(g, "expected an error for:\n%s", yaml);
  cr_expect(strstr(cap_text(&c), where_and_what), "expected '%s' in:\n%s", where_and_what, cap_text(&c));
  graph_free(g);
  cap_close(&c);
  arena_free(&a);
}

static Graph *ok(Arena *a, const char *yaml) {
  Captured c;
  cap_open(&c);
  Graph *g = build_text(a, &c, yaml, DT_F32);
  cr_assert(g, "unexpected errors:\n%s", cap_text(&c));
  cap_close(&c);
  return g;
}

Test(expand, dims_and_shapes) {
  Arena a = {0};
  Graph *g = ok(&a, HEAD
                "dims: {B: 4, C: 6, HS: C / 2, N: B * (C - 1)}\n"
                "inputs: {x: {shape: [B, HS * 2]}}\n"
                "graph:\n  y: x / C\n  z: reshape(y, [-1, HS])\n");
  cr_expect_eq(g->dims.v[2].value, 3);
  cr_expect_eq(g->dims.v[3].value, 20);
  const Node *z = graph_node(g, find(g, "z"));
  cr_expect_eq(z->shape.rank, 2);
  cr_expect_eq(z->shape.d[0], 8);
  cr_expect_eq(z->shape.d[1], 3);
  const Node *y = graph_node(g, find(g, "y"));
  const Node *c = graph_node(g, y->in[1]);
  cr_expect_eq(c->op, OP_CONST);
  cr_expect_float_eq(c->attr.f[0], 6.0, 0);
  graph_free(g);
  arena_free(&a);
}

Test(expand, overrides) {
  Arena a = {0};
  Captured c;
  cap_open(&c);
  const char *y = HEAD "dims: {B: 4, H: B * 2}\ninputs: {x: {shape: [B, H]}}\ngraph: {y: relu(x)}\n";
  Model *m = model_load_text(&a, &c.d, "t.yaml", y, strlen(y));
  cr_assert(m);
  DimOverride ov[] = {{"B", 10}};
  Graph *g = graph_build(m, &c.d, ov, 1, DT_F32);
  cr_assert(g, "%s", cap_text(&c));
  cr_expect_eq(graph_node(g, g->inputs.v[0].node)->shape.d[1], 20);
  graph_free(g);
  DimOverride bad[] = {{"Q", 1}};
  cr_expect_null(graph_build(m, &c.d, bad, 1, DT_F32));
  cr_expect(strstr(cap_text(&c), "the model has no dim 'Q'"), "%s", cap_text(&c));
  cap_close(&c);
  arena_free(&a);
}

Test(expand, arguments_bind_like_python) {
  Arena a = {0};
  Graph *g = ok(&a, HEAD
                "inputs: {x: {shape: [2, 3]}}\n"
                "graph:\n  a: leaky_relu(x, 0.2)\n  b: leaky_relu(x, alpha=0.3)\n"
                "  c: leaky_relu(x)\n  d: sum(x, axis=-1, keepdims=true)\n"
                "  e: mean(x, [0, 1])\n  f: layer_norm(x, 1, 0)\n  g: gelu(x, approximate=false)\n");
  cr_expect_float_eq(graph_node(g, find(g, "a"))->attr.f[0], 0.2, 1e-12);
  cr_expect_float_eq(graph_node(g, find(g, "b"))->attr.f[0], 0.3, 1e-12);
  cr_expect_float_eq(graph_node(g, find(g, "c"))->attr.f[0], 0.01, 1e-12);
  const Node *d = graph_node(g, find(g, "d"));
  cr_expect_eq(d->attr.naxes, 1);
  cr_expect_eq(d->attr.axes[0], 1);  // normalized
  cr_expect_eq(d->shape.rank, 2);
  cr_expect_eq(d->shape.d[1], 1);
  cr_expect_eq(graph_node(g, find(g, "e"))->shape.rank, 0);
  cr_expect_not(graph_node(g, find(g, "g"))->attr.b[0]);
  graph_free(g);
  arena_free(&a);
}

static const char *FUNCS = HEAD
    "dims: {C: 4, L: 3}\n"
    "inputs: {x: {shape: [2, C]}}\n"
    "params: {g0: {shape: [C], init: ones}}\n"
    "functions:\n"
    "  inner:\n    args: [u]\n    params: {w: {shape: [C, C]}}\n"
    "    graph: {o: u @ w}\n    return: o\n"
    "  block:\n    args: [h]\n    params: {w: {shape: [C, C]}, b: {shape: [C]}}\n"
    "    graph:\n      s: inner(h)\n      t: relu(s + b) * g0\n    return: t\n"
    "graph:\n  y1: block(x)\n  yL: repeat(block, y1, times=L)\n  loss: sum(yL)\nloss: loss\n";

Test(expand, functions_and_repeat_name_params) {
  Arena a = {0};
  Graph *g = ok(&a, FUNCS);
  const char *names[] = {"g0", "y1.w", "y1.b", "y1.s.w", "yL.0.w", "yL.0.s.w", "yL.2.b", "yL.2.s.w"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) cr_expect(param(g, names[i]), "no param %s", names[i]);
  cr_expect_null(param(g, "yL.3.w"));
  cr_expect_eq(g->params.n, 1 + 3 * 4);
  cr_expect_geq(find(g, "yL.1.t"), 0);
  cr_expect_eq(find(g, "yL"), find(g, "yL.2.t"));
  // The chain: yL.0 takes y1's result.
  const Node *s0 = graph_node(g, find(g, "yL.0.s.o"));
  cr_expect_eq(s0->in[0], find(g, "y1"));
  graph_free(g);
  arena_free(&a);
}

Test(expand, function_errors) {
  expect_error(HEAD
               "inputs: {x: {shape: [2]}}\nfunctions:\n  f:\n    args: [u]\n    graph: {o: relu(u)}\n"
               "    return: o\ngraph:\n  y: relu(f(x))\n",
               "t.yaml:10:11: error: a call of function 'f' must be the whole expression");
  expect_error(HEAD
               "inputs: {x: {shape: [2]}}\nfunctions:\n  f:\n    args: [u]\n    graph: {o: g(u)}\n"
               "    return: o\n  g:\n    args: [u]\n    graph: {o: f(u)}\n    return: o\ngraph:\n  y: f(x)\n",
               "t.yaml:11:16: error: function 'f' calls itself");
  expect_error(HEAD
               "dims: {C: 2}\ninputs: {x: {shape: [C]}}\nfunctions:\n  f:\n    args: [C]\n"
               "    graph: {o: relu(C)}\n    return: o\ngraph:\n  y: f(x)\n",
               "t.yaml:7:12: error: 'C' in function 'f' shadows a dim of the model");
  expect_error(HEAD
               "inputs: {x: {shape: [2]}}\nfunctions:\n  f:\n    args: [u]\n    graph: {o: u + x}\n"
               "    return: o\ngraph:\n  y: f(x)\n",
               "function 'f' cannot see 'x'");
  expect_error(HEAD
               "inputs: {x: {shape: [2]}}\nfunctions:\n  f:\n    args: [u, v]\n    graph: {o: u + v}\n"
               "    return: o\ngraph:\n  y: repeat(f, x, times=2)\n",
               "repeat needs a one-argument function");
  expect_error(HEAD
               "inputs: {x: {shape: [2]}}\nfunctions:\n  relu:\n    args: [u]\n    graph: {o: u}\n"
               "    return: o\ngraph:\n  y: relu(x)\n",
               "function 'relu' has the name of a builtin op");
}

Test(expand, expression_errors) {
  expect_error(HEAD "inputs: {x: {shape: [2]}}\ngraph:\n  y: relux(x)\n",
               "t.yaml:5:6: error: unknown op 'relux'; did you mean 'relu'?");
  expect_error(HEAD "inputs: {xx: {shape: [2]}}\ngraph:\n  y: relu(xy)\n",
               "t.yaml:5:11: error: unknown name 'xy'; did you mean 'xx'?");
  expect_error(HEAD "inputs: {x: {shape: [2, 3]}, w: {shape: [4, 5]}}\ngraph:\n  y: x @ w\n",
               "t.yaml:5:8: error: matmul: inner dims differ: [2, 3] @ [4, 5]");
  expect_error(HEAD "inputs: {x: {shape: [2, 3]}, w: {shape: [4]}}\ngraph:\n  y: x + w\n",
               "t.yaml:5:8: error: add: cannot broadcast shapes [2, 3] and [4]");
  expect_error(HEAD "inputs: {x: {shape: [2, 4, 8]}}\ngraph:\n  y: attention(x, x, x)\n",
               "attention: missing argument 'heads'");
  expect_error(HEAD "inputs: {x: {shape: [2, 4, 8]}}\ngraph:\n  y: attention(x, x, x, head=2)\n",
               "attention has no argument 'head'; did you mean 'heads'?");
  expect_error(HEAD "inputs: {x: {shape: [2, 4, 8]}}\ngraph:\n  y: attention(x, x, x, heads=3)\n",
               "heads=3 must divide the channel count 8");
  expect_error(
      HEAD "inputs: {x: {shape: [2, 4, 8]}, m: {shape: [2, 5]}}\ngraph:\n  y: attention(x, x, x, heads=2, mask=m)\n",
      "t.yaml:5:6: error: attention: mask [2, 5] must be [B, Tk] = [2, 4]");
  expect_error(HEAD
               "inputs: {x: {shape: [2, 4, 8]}, m: {shape: [2, 4]}}\ngraph:\n  y: attention(x, x, x, heads=2, mak=m)\n",
               "attention has no argument 'mak'; did you mean 'mask'?");
  expect_error(HEAD "params: {w: {shape: [3], lora: {rank: 2}}}\ngraph:\n  y: w\n",
               "lora adapts a matrix: 'w' has rank 1");
  expect_error(HEAD "params: {w: {shape: [3, 3], lora: {rank: 0}}}\ngraph:\n  y: w\n", "lora rank must be at least 1");
  expect_error(HEAD "params: {w: {shape: [3, 3], lora: {alpha: 2}}}\ngraph:\n  y: w\n", "missing");
  expect_error(HEAD "params: {w: {shape: [3, 3], lora: {rank: 2, alfa: 2}}}\ngraph:\n  y: w\n", "unknown key 'alfa'");
  expect_error(HEAD "inputs: {x: {shape: [2]}}\ngraph:\n  y: x ** x\n", "the exponent of ** must be a number");
  expect_error(HEAD "inputs: {x: {shape: [2]}}\ngraph:\n  y: relu(x, x)\n", "relu takes at most 1 positional argument");
  expect_error(HEAD "inputs: {x: {shape: [6]}}\ngraph:\n  y: reshape(x, [4, -1])\n", "cannot reshape [6]");
  expect_error(HEAD "inputs: {x: {shape: [6]}}\ngraph:\n  y: sum(x, axis=1)\n", "axis 1 is out of range");
  expect_error(HEAD "inputs: {x: {shape: [6]}}\ngraph:\n  y: relu(x)\nloss: y\n", "loss 'y' must be a scalar");
  expect_error(HEAD "inputs: {x: {shape: [6]}}\ngraph:\n  y: z + x\n  z: relu(x)\n",
               "'z' is used before its definition");
  expect_error(HEAD "dims: {B: 3}\ninputs: {x: {shape: [B]}}\ngraph:\n  y: reshape(x, [B / 2])\n",
               "3 / 2 does not divide exactly");
  expect_error(HEAD "inputs: {x: {shape: [1048576, 1048576]}}\ngraph:\n  y: broadcast_to(x, [2, 1048576, 1048576])\n",
               "more than 2^40 elements");
  expect_error(HEAD "inputs: {x: {shape: [2, 3]}}\ngraph:\n  y: slice(x, 3, 5)\n", "is empty");
  expect_error(HEAD "inputs: {x: {shape: [2, 3]}, y: {shape: [2]}}\ngraph:\n  l: cross_entropy(x, y)\n",
               "labels must be i32");
}

Test(expand, batch_norm_state_and_dropout_salts) {
  Arena a = {0};
  Graph *g = ok(&a, HEAD
                "inputs: {x: {shape: [4, 3]}}\nparams: {g: {shape: [3], init: ones}, b: {shape: [3]}}\n"
                "graph:\n  h: batch_norm(x, g, b, momentum=0.2)\n  d1: dropout(h, 0.5)\n  d2: dropout(h, 0.5)\n");
  cr_assert_eq(g->states.n, 2);
  cr_expect_str_eq(g->states.v[0].name, "h.running_mean");
  cr_expect_str_eq(g->states.v[1].name, "h.running_var");
  cr_expect_float_eq(g->states.v[1].init, 1.0, 0);
  cr_expect_geq(g->states.v[0].update, 0);
  cr_expect_eq(graph_node(g, find(g, "h"))->nin, 5);
  cr_expect_neq(graph_node(g, find(g, "d1"))->attr.salt, graph_node(g, find(g, "d2"))->attr.salt);
  graph_free(g);
  arena_free(&a);
}

Test(expand, dtypes_promote) {
  Arena a = {0};
  Graph *g = ok(&a, HEAD
                "inputs: {i: {shape: [3], dtype: i32}, x: {shape: [3]}}\n"
                "graph:\n  a: i + i\n  b: i + x\n  c: arange(3) * 2\n  d: argmax(x)\n"
                "  f: greater(x, 0)\n");
  cr_expect_eq(graph_node(g, find(g, "a"))->dtype, DT_I32);
  cr_expect_eq(graph_node(g, find(g, "b"))->dtype, DT_F32);
  cr_expect_eq(graph_node(g, find(g, "d"))->dtype, DT_I32);
  cr_expect_eq(graph_node(g, find(g, "f"))->dtype, DT_F32);
  graph_free(g);
  Captured c;
  cap_open(&c);
  Graph *g64 = build_text(&a, &c, HEAD "inputs: {x: {shape: [3]}}\ngraph: {y: exp(x)}\n", DT_F64);
  cr_assert(g64);
  cr_expect_eq(graph_node(g64, g64->inputs.v[0].node)->dtype, DT_F64);
  cr_expect_eq(graph_node(g64, find(g64, "y"))->dtype, DT_F64);
  graph_free(g64);
  cap_close(&c);
  arena_free(&a);
}
