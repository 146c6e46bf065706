// lower_conv.c — conv2d (NHWC, weights [KH, KW, Ci, Co]) and its two
// gradients, each one library kernel with this thread's scratch (im2col
// panels); max and average pooling and their gradients over images or rows.
#include <string.h>

#include "lower.h"

// x [N, H, W, Ci] (for dx: the result) and w [KH, KW, Ci, Co] (for dw: the result).
static const Shape *conv_x(const Graph *g, const Node *n) {
  return n->op == OP_CONV2D_DX ? &n->shape : &graph_node(g, n->in[0])->shape;
}
static const Shape *conv_w(const Graph *g, const Node *n) {
  return n->op == OP_CONV2D_DW ? &n->shape : &graph_node(g, n->in[1])->shape;
}

static void lower_conv2d(CG *c, const Kernel *k, const Node *n) {
  const Attr *a = &n->attr;
  const Shape *xs = conv_x(c->g, n), *ws = conv_w(c->g, n);
  LLVMValueRef geo[9] = {I64(c, xs->d[0]), I64(c, xs->d[1]), I64(c, xs->d[2]), I64(c, xs->d[3]), I64(c, ws->d[0]),
                         I64(c, ws->d[1]), I64(c, ws->d[3]), I64(c, a->i[0]),  I64(c, a->i[1])};
  begin_kernel(c);
  LLVMValueRef args[13];
  args[0] = P(k->root);
  args[1] = P(IN(0));
  args[2] = P(IN(1));
  memcpy(args + 3, geo, sizeof(LLVMValueRef) * 9);
  args[12] = scratch_ptr(c);
  int64_t range = n->op == OP_CONV2D      ? n->shape.d[0] * n->shape.d[1]
                  : n->op == OP_CONV2D_DX ? xs->d[0] * xs->d[1]
                                          : ws->d[0] * ws->d[1] * ws->d[2];
  call_kernel_sfx(c,
                  n->op == OP_CONV2D      ? "conv2d"
                  : n->op == OP_CONV2D_DX ? "conv2d_dx"
                                          : "conv2d_dw",
                  product_sfx(c, call_dtype(c, n)), args, 13, range, kernel_work(k));
}

static int64_t conv2d_scratch(const Graph *g, const Node *n) {
  const Shape *x = conv_x(g, n), *w = conv_w(g, n);
  int which = n->op == OP_CONV2D ? 0 : n->op == OP_CONV2D_DX ? 1 : 2;
  size_t elems = (n->dtype == DT_F64 ? bpck_conv2d_scratch_f64 : bpck_conv2d_scratch_f32)(
      which, x->d[2], x->d[3], w->d[0], w->d[1], w->d[3], n->attr.i[0], n->attr.i[1]);
  return (int64_t)elems * dtype_bytes(n->dtype);
}

// 2 per multiply-add: out/dx [N, H, W, *] from gy/x and w; dw from gy [N, OH, OW, Co].
static int64_t conv2d_flops(const Graph *g, const Node *n) {
  if (n->op == OP_CONV2D_DW)
    return 2 * shape_numel(&graph_node(g, n->in[1])->shape) * n->shape.d[0] * n->shape.d[1] * n->shape.d[2];
  const Shape *w = &graph_node(g, n->in[1])->shape,
              *y = n->op == OP_CONV2D ? &n->shape : &graph_node(g, n->in[0])->shape;
  return 2 * shape_numel(y) * w->d[0] * w->d[1] * w->d[2];
}

static void lower_pool2d(CG *c, const Kernel *k, const Node *n) {
  const Shape *xs = XS(0);
  DType t = call_dtype(c, n);
  bool grad = n->op == OP_MAX_POOL2D_GRAD || n->op == OP_AVG_POOL2D_GRAD;
  bool is_max = n->op == OP_MAX_POOL2D || n->op == OP_MAX_POOL2D_GRAD;
  begin_kernel(c);
  LLVMValueRef geo[7] = {I64(c, xs->d[0]),     I64(c, xs->d[1]),     I64(c, xs->d[2]), I64(c, xs->d[3]),
                         I64(c, n->attr.i[0]), I64(c, n->attr.i[1]), I32(c, is_max)};
  if (!grad) {
    LLVMValueRef args[9] = {P(k->root), P(IN(0))};
    memcpy(args + 2, geo, sizeof geo);
    return call_kernel(c, "pool2d", t, args, 9, n->shape.d[0] * n->shape.d[1], kernel_work(k));
  }
  LLVMValueRef args[10] = {P(k->root), P(IN(0)), P(IN(1))};
  memcpy(args + 3, geo, sizeof geo);
  call_kernel(c, "pool2d_grad", t, args, 10, xs->d[0], kernel_work(k));
}

const Backend be_conv2d = {.emit = lower_conv2d, .scratch = conv2d_scratch, .flops = conv2d_flops};
const Backend be_pool2d = {.emit = lower_pool2d};
