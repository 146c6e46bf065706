// cases.h — small models, one or more per op of the registry (the per-op
// examples), shared by the finite-difference suite (test_grad.c) and the
// generated-code suite (test_codegen.c), whose registry-wide test fails on an
// op that has no case here. Each case is YAML with params and a graph ending in
// `out`; case_graph folds `out` into a scalar loss and differentiates it.
#pragma once
#include "testutil.h"

typedef struct GradCase {
  Op op;
  const char *text;  // inputs/params and a graph ending in `out` (block style)
} GradCase;

#define P(name, shape) "  " name ": {shape: " shape ", init: normal(1)}\n"
#define P2(a, sa, b, sb) "params:\n" P(a, sa) P(b, sb)

static const GradCase cases[] = {
    {OP_ADD, P2("a", "[3, 4]", "b", "[4]") "graph:\n  out: a + b\n"},
    {OP_ADD, P2("a", "[2, 1, 3]", "b", "[4, 1]") "graph:\n  out: a + b + 1\n"},
    {OP_SUB, P2("a", "[3, 4]", "b", "[3, 1]") "graph:\n  out: a - b\n"},
    {OP_SUB, P2("a", "[3]", "b", "[2, 3]") "graph:\n  out: 2 - a - b\n"},
    {OP_MUL, P2("a", "[3, 4]", "b", "[1, 4]") "graph:\n  out: a * b * a\n"},
    {OP_DIV, P2("a", "[3, 4]", "b", "[4]") "graph:\n  out: a / (abs(b) + 0.5)\n"},
    {OP_DIV, P2("a", "[2, 2]", "b", "[2, 1]") "graph:\n  out: 1 / (square(b) + 1) + a / 3\n"},
    {OP_MAXIMUM, P2("a", "[3, 4]", "b", "[4]") "graph:\n  out: maximum(a, b)\n"},
    {OP_MINIMUM, P2("a", "[3, 4]", "b", "[3, 1]") "graph:\n  out: minimum(a, b)\n"},
    {OP_POW, P2("a", "[3, 4]", "b", "[4]") "graph:\n  out: pow(abs(a) + 0.5, 2.5) + (abs(b) + 1) ** -1.5\n"},
    {OP_POW, P2("a", "[5]", "b", "[1]") "graph:\n  out: a ** 3 - b ** 2\n"},
    {OP_NEG, P2("a", "[3, 4]", "b", "[4]") "graph:\n  out: neg(a) * b - -b ** 2\n"},
    {OP_EXP, P2("a", "[3, 4]", "b", "[4]") "graph:\n  out: exp(a * 0.5) + b\n"},
    {OP_LOG, P2("a", "[3, 4]", "b", "[4]") "graph:\n  out: log(abs(a) + 0.5) * b\n"},
    {OP_SQRT, P2("a", "[3, 4]", "b", "[4]") "graph:\n  out: sqrt(abs(a) + 0.5) + b\n"},
    {OP_RSQRT, P2("a", "[3, 4]", "b", "[4]") "graph:\n  out: rsqrt(abs(a) + 0.5) * b\n"},
    {OP_ABS, P2("a", "[3, 4]", "b", "[4]") "graph:\n  out: abs(a) * b\n"},
    {OP_SQUARE, P2("a", "[3, 4]", "b", "[4]") "graph:\n  out: square(a - b)\n"},
    {OP_SIN, P2("a", "[3, 4]", "b", "[4]") "graph:\n  out: sin(a) * b\n"},
    {OP_COS, P2("a", "[3, 4]", "b", "[4]") "graph:\n  out: cos(a) * b\n"},
    {OP_TANH, P2("a", "[3, 4]", "b", "[4]") "graph:\n  out: tanh(a * b)\n"},
    {OP_ERF, P2("a", "[3, 4]", "b", "[4]") "graph:\n  out: erf(a * b) + erf(3 * a)\n"},
    {OP_SIGMOID, P2("a", "[3, 4]", "b", "[4]") "graph:\n  out: sigmoid(a + b)\n"},
    {OP_RELU, P2("a", "[3, 4]", "b", "[4]") "graph:\n  out: relu(a) * b\n"},
    {OP_HARDTANH,
     P2("a", "[3, 4]", "b", "[4]") "graph:\n  out: hardtanh(3 * a) + hardtanh(a * b, -0.25, max_val=0.5)\n"},
    {OP_LEAKY_RELU, P2("a", "[3, 4]", "b", "[4]") "graph:\n  out: leaky_relu(a, 0.1) + leaky_relu(b, alpha=0.3)\n"},
    {OP_GELU, P2("a", "[3, 4]", "b", "[4]") "graph:\n  out: gelu(a) + gelu(b, approximate=false)\n"},
    {OP_SILU, P2("a", "[3, 4]", "b", "[4]") "graph:\n  out: silu(a) * b\n"},
    {OP_SOFTPLUS, P2("a", "[3, 4]", "b", "[4]") "graph:\n  out: softplus(a * 3) + b\n"},
    {OP_WHERE, P2("a", "[3, 4]", "b", "[4]") "graph:\n  out: where(greater(a, 0), a * 2, b)\n"},
    {OP_SUM, P2("a", "[2, 3, 4]", "b", "[4]") "graph:\n  out: sum(a, axis=-1) + sum(b)\n"},
    {OP_SUM, P2("a", "[2, 3, 4]", "b", "[3, 1]") "graph:\n  out: sum(a, axis=[0, 2], keepdims=true) * b\n"},
    {OP_MEAN, P2("a", "[2, 3, 4]", "b", "[4]") "graph:\n  out: mean(a, axis=[-1, 0]) + mean(b, keepdims=true)\n"},
    {OP_MAX, P2("a", "[2, 3, 4]", "b", "[4]") "graph:\n  out: max(a, axis=1) * b + max(b)\n"},
    {OP_MIN, P2("a", "[2, 3, 4]", "b", "[4]") "graph:\n  out: min(a, axis=[0, 2]) + min(b, keepdims=true)\n"},
    {OP_VAR, P2("a", "[2, 3, 4]", "b", "[4]") "graph:\n  out: var(a, axis=-1) + var(b)\n"},
    {OP_LOGSUMEXP,
     P2("a", "[2, 3, 4]", "b", "[4]") "graph:\n  out: logsumexp(a, axis=-2, keepdims=true) + logsumexp(b)\n"},
    {OP_RESHAPE, P2("a", "[2, 3, 2]", "b", "[6]") "graph:\n  out: reshape(a, [2, -1]) * reshape(b, [1, 6])\n"},
    {OP_TRANSPOSE, P2("a", "[2, 3, 4]", "b", "[3, 2]") "graph:\n  out: transpose(a, [2, 0, 1]) * transpose(b)\n"},
    {OP_BROADCAST_TO,
     P2("a", "[3, 1]", "b", "[4]") "graph:\n  out: broadcast_to(b, [3, 4]) * broadcast_to(a, [2, 3, 4])\n"},
    {OP_CONCAT,
     P2("a", "[2, 3]", "b", "[1, 3]") "graph:\n  out: concat(a, b, a, axis=0) * slice(concat(b, b), 1, 4)\n"},
    {OP_SLICE,
     P2("a", "[4, 5]", "b",
        "[7]") "graph:\n  out: slice(a, -2, 4, axis=0) * slice(b, 1, 6) + slice(a, 1, 3, axis=0) + slice(b, -5, 100) + sum(slice(a, 1, 3))\n"},
    {OP_MATMUL, P2("a", "[3, 4]", "b", "[4, 5]") "graph:\n  out: a @ b\n"},
    {OP_MATMUL, P2("a", "[2, 3, 4]", "b", "[4, 2]") "graph:\n  out: a @ b\n"},
    {OP_MATMUL, P2("a", "[2, 1, 3, 4]", "b", "[3, 4, 2]") "graph:\n  out: a @ b\n"},
    {OP_MATMUL,
     P2("a", "[3, 4]", "b",
        "[5, 4]") "graph:\n  out: matmul(a, b, transpose_b=true) + transpose(matmul(b, a, transpose_a=false, transpose_b=true))\n"},
    {OP_MATMUL,
     P2("a", "[4, 3]", "b", "[2, 5, 4]") "graph:\n  out: matmul(a, b, transpose_a=true, transpose_b=true)\n"},
    {OP_LINEAR, "params:\n" P("x", "[2, 3]") P("w", "[3, 4]") P("b", "[4]") "graph:\n  out: linear(x, w, b)\n"},
    {OP_EMBEDDING,
     "inputs:\n  ids: {shape: [2, 3], dtype: i32}\n"
     "params:\n" P("t", "[3, 4]") "graph:\n  out: embedding(ids, t)\n"},
  // tied: the table's gradient is the output GEMM's plus the scatter (embedding_grad_add, in place)
    {OP_EMBEDDING,
     "inputs:\n  ids: {shape: [2, 3], dtype: i32}\n"
     "params:\n" P("t", "[5, 4]") "graph:\n  h: embedding(ids, t)\n  out: tanh(h @ transpose(t))\n"},
    {OP_LAYER_NORM, "params:\n" P("x", "[2, 3, 5]") P("g", "[5]") P("b", "[5]") "graph:\n  out: layer_norm(x, g, b)\n"},
    {OP_LAYER_NORM, "params:\n" P("x", "[3, 4]") "graph:\n  out: layer_norm(x, 1.5, 0, eps=0.01)\n"},
    {OP_RMS_NORM, "params:\n" P("x", "[2, 3, 5]") P("g", "[5]") "graph:\n  out: rms_norm(x, g)\n"},
    {OP_BATCH_NORM, "params:\n" P("x", "[4, 3]") P("g", "[3]") P("b", "[3]") "graph:\n  out: batch_norm(x, g, b)\n"},
    {OP_BATCH_NORM, "params:\n" P("x", "[2, 2, 2, 3]") P("g", "[3]")
                        P("b", "[3]") "graph:\n  out: batch_norm(x, g, b, momentum=0.5, eps=0.001)\n"},
    {OP_SOFTMAX, P2("a", "[2, 3, 4]", "b", "[4]") "graph:\n  out: softmax(a) * b + softmax(a, axis=0)\n"},
    {OP_LOG_SOFTMAX, P2("a", "[2, 3, 4]", "b", "[4]") "graph:\n  out: log_softmax(a) * b + log_softmax(a, axis=-2)\n"},
    {OP_ATTENTION, "params:\n" P("q", "[2, 3, 4]") P("k", "[2, 3, 4]")
                       P("v", "[2, 3, 4]") "graph:\n  out: attention(q, k, v, heads=2, causal=true)\n"},
    {OP_ATTENTION, "params:\n" P("q", "[1, 2, 6]") P("k", "[1, 3, 6]")
                       P("v", "[1, 3, 6]") "graph:\n  out: attention(q, k, v, heads=3)\n"},
  // q, k, v as the thirds of one tensor, in order: attention_qkv (packed, read in place)
    {OP_ATTENTION_QKV,
     "params:\n" P("x", "[2, 3, 12]") "graph:\n  q: slice(x, 0, 4)\n  k: slice(x, 4, 8)\n"
                                      "  v: slice(x, 8, 12)\n  out: attention(q, k, v, heads=2, causal=true)\n"},
    {OP_ATTENTION_QKV, "params:\n" P("x", "[1, 5, 9]") "graph:\n  q: slice(x, 0, 3)\n  k: slice(x, 3, 6)\n"
                                                       "  v: slice(x, 6, 9)\n  out: attention(q, k, v, heads=3) + q\n"},
  // thirds out of order: plain attention on the slices
    {OP_ATTENTION, "params:\n" P("x", "[2, 3, 12]") "graph:\n  q: slice(x, 4, 8)\n  k: slice(x, 0, 4)\n"
                                                    "  v: slice(x, 8, 12)\n  out: attention(q, k, v, heads=2)\n"},
  // key-padding masks (SPEC 6.1): batch 1 keeps key 0 only; an i32 mask (promoted) padding key 0,
  // so a causal query 0 sees no key (output 0, no gradient); cross attention; the packed form
    {OP_ATTENTION,
     "params:\n" P("q", "[2, 3, 4]") P("k", "[2, 3, 4]") P(
         "v",
         "[2, 3, 4]") "graph:\n"
                      "  m: concat(ones([1, 3]), reshape(less(arange(3), 1), [1, 3]), axis=0)\n  out: attention(q, k, v, heads=2, mask=m)\n"},
    {OP_ATTENTION,
     "params:\n" P("q", "[2, 3, 4]") P("k", "[2, 3, 4]") P(
         "v",
         "[2, 3, 4]") "graph:\n"
                      "  m: broadcast_to(reshape(arange(3), [1, 3]), [2, 3])\n  out: attention(q, k, v, heads=2, causal=true, mask=m) + q\n"},
    {OP_ATTENTION,
     "params:\n" P("q", "[1, 2, 6]") P("k", "[1, 3, 6]")
         P("v", "[1, 3, 6]") "graph:\n"
                             "  out: attention(q, k, v, heads=3, mask=reshape(greater(arange(3), 0), [1, 3]))\n"},
    {OP_ATTENTION_QKV,
     "params:\n" P(
         "x",
         "[2, 3, 12]") "graph:\n  q: slice(x, 0, 4)\n  k: slice(x, 4, 8)\n"
                       "  v: slice(x, 8, 12)\n  m: concat(reshape(less(arange(3), 2), [1, 3]), reshape(greater(arange(3), 0), [1, 3]), axis=0)\n"
                       "  out: attention(q, k, v, heads=2, causal=true, mask=m) + attention(q, k, v, heads=2, mask=m)\n"},
  // LoRA: the graph reads w + (alpha / r) A B, A and B trained (B starts at zero), w frozen
    {OP_MATMUL, "params:\n" P("x", "[2, 3]") "  w: {shape: [3, 4], init: normal(1), lora: {rank: 2, alpha: 3}}\n"
                                             "graph:\n  out: tanh(x @ w)\n"},
    {OP_MUL, "params:\n" P("x", "[2, 3, 4]") "  w: {shape: [2, 3, 4], init: normal(1), lora: {rank: 1}}\n"
                                             "graph:\n  out: sin(x * w)\n"},
    {OP_CAUSAL_MASK, P2("a", "[2, 3, 3]", "b", "[3]") "graph:\n  out: softmax(causal_mask(a * b))\n"},
    {OP_CONV2D,
     "params:\n" P("x", "[2, 5, 5, 2]") P("w", "[3, 3, 2, 3]") "graph:\n  out: conv2d(x, w, stride=2, padding=1)\n"},
    {OP_CONV2D, "params:\n" P("x", "[1, 4, 3, 1]") P("w", "[2, 2, 1, 2]") "graph:\n  out: conv2d(x, w)\n"},
    {OP_MAX_POOL2D, "params:\n" P("x", "[1, 4, 4, 2]") "graph:\n  out: max_pool2d(x, 2)\n"},
    {OP_AVG_POOL2D, "params:\n" P("x", "[1, 4, 5, 2]") "graph:\n  out: avg_pool2d(x, 2, stride=1)\n"},
    {OP_DROPOUT, P2("a", "[4, 5]", "b", "[5]") "graph:\n  out: dropout(a * b, 0.3)\n"},
    {OP_CROSS_ENTROPY,
     "inputs:\n  y: {shape: [4], dtype: i32}\n"
     "params:\n" P("l", "[4, 3]") "graph:\n  out: cross_entropy(l, y)\n"},
    {OP_CROSS_ENTROPY,
     "inputs:\n  y: {shape: [2, 2], dtype: i32}\n"
     "params:\n" P("l", "[2, 2, 5]") "graph:\n  out: cross_entropy(l * 2, y)\n"},
    {OP_BINARY_CROSS_ENTROPY, P2("a", "[3, 4]", "b", "[4]") "graph:\n  out: binary_cross_entropy(a, sigmoid(b))\n"},
    {OP_MSE, P2("a", "[3, 4]", "b", "[4]") "graph:\n  out: mse(a, b)\n"},
  // Ops without a gradient of their own, on a differentiable path: the
  // registry-wide native test (test_codegen.c) needs an example of every op.
    {OP_GREATER, P2("a", "[3, 4]", "b", "[4]") "graph:\n  out: greater(a, b) * a + b\n"},
    {OP_LESS, P2("a", "[3, 4]", "b", "[3, 1]") "graph:\n  out: less(a, 0.5) * b + a\n"},
    {OP_EQUAL, P2("a", "[3, 4]", "b", "[4]") "graph:\n  out: equal(a, a) * a + equal(b, 0) * b\n"},
    {OP_ARGMAX,
     P2("a", "[3, 4]", "b", "[4]") "graph:\n  out: one_hot(argmax(a * b, axis=-1), 4) * a + argmax(a, axis=0)\n"},
    {OP_ONE_HOT, "inputs:\n  ids: {shape: [2, 3], dtype: i32}\n" P2(
                     "a", "[4]", "b", "[2, 1, 1]") "graph:\n  out: one_hot(ids, 4) * a + b\n"},
    {OP_ARANGE, P2("a", "[3, 4]", "b", "[4]") "graph:\n  out: a * arange(4) + b\n"},
    {OP_ACCURACY,
     "inputs:\n  y: {shape: [3], dtype: i32}\n"
     "params:\n" P("l", "[3, 4]") "graph:\n  out: l * accuracy(l, y) + l\n"},
  // on an input: finite differences see no path the gradient cuts
    {OP_STOP_GRADIENT, "inputs:\n  x: {shape: [3, 4]}\n" P2(
                           "a", "[3, 4]", "b", "[4]") "graph:\n  out: stop_gradient(exp(x) * 2) * b + a\n"},
    {OP_ZEROS, P2("a", "[3, 4]", "b", "[4]") "graph:\n  out: zeros([2, 3, 4]) + a * b\n"},
    {OP_ONES, P2("a", "[3, 4]", "b", "[4]") "graph:\n  out: ones([2, 3, 4]) * a - b\n"},
    {OP_FULL, P2("a", "[3, 4]", "b", "[4]") "graph:\n  out: full([4], 2.5) * b + a\n"},
  // an i32 operand promotes (SPEC 6.6): a cast in front of the op
    {OP_CAST, "inputs:\n  ids: {shape: [3, 4], dtype: i32}\n" P2(
                  "a", "[3, 4]", "b", "[4]") "graph:\n  out: a * ids + exp(ids * 0.1) * b\n"},
  // Odd sizes: vector tails (1, 7, 8, 9, 33) in generated loops and kernels.
    {OP_ADD, P2("a", "[7, 9]", "b", "[9]") "graph:\n  out: exp(a * 0.3) * b + tanh(b)\n"},
    {OP_MUL, P2("a", "[33]", "b", "[1]") "graph:\n  out: sigmoid(a) * b - gelu(a)\n"},
    {OP_MUL, P2("a", "[8, 1]", "b", "[1, 33]") "graph:\n  out: a * b + silu(a) / (1 + square(b))\n"},
    {OP_MATMUL, P2("a", "[9, 7]", "b", "[7, 33]") "graph:\n  out: a @ b\n"},
    {OP_MATMUL, P2("a", "[1, 1]", "b", "[1, 1]") "graph:\n  out: a @ b\n"},
    {OP_SOFTMAX, P2("a", "[5, 33]", "b", "[33]") "graph:\n  out: softmax(a * b)\n"},
    {OP_LAYER_NORM, "params:\n" P("x", "[7, 33]") P("g", "[33]") P("b", "[33]") "graph:\n  out: layer_norm(x, g, b)\n"},
    {OP_CROSS_ENTROPY,
     "inputs:\n  y: {shape: [9], dtype: i32}\n"
     "params:\n" P("l", "[9, 33]") "graph:\n  out: cross_entropy(l, y)\n"},
    {OP_SUM, P2("a", "[9, 33]", "b", "[33]") "graph:\n  out: sum(a, axis=0) * b + mean(a, axis=-1, keepdims=true)\n"},
};
#define NCASES (int)(sizeof cases / sizeof cases[0])

// The case as a whole model: its `out` folded into a scalar loss that makes
// every element's gradient different (sum(out) alone is blind to softmax);
// a mean keeps the loss O(1) so finite differences stay accurate.
static inline Graph *case_graph(Arena *a, Captured *c, const char *text, DType dt) {
  const char *tail = "  __l: mean(sin(out) + out * out * 0.5 + out)\nloss: __l\n";
  size_t n = strlen(text) + strlen(tail) + 64;
  char *yaml = arena_alloc(a, n);
  snprintf(yaml, n, "bpc: 1\nname: c\n%s%s", text, tail);
  Model *m = model_load_text(a, &c->d, "case.yaml", yaml, strlen(yaml));
  Graph *g = m ? graph_build(m, &c->d, NULL, 0, dt) : NULL;
  cr_assert(g, "case does not build:\n%s\n%s", yaml, cap_text(c));
  cr_assert(ad_backward(g), "autodiff failed:\n%s\n%s", yaml, cap_text(c));
  return g;
}
