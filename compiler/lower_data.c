// lower_data.c — data movement and indexing: transpose, broadcast_to, slice
// (when it is not a view), its gradient, concat, fills, arange, embedding and
// its gradient, one_hot. Copies are the library's strided copy over the
// result's elements; the rest library kernels over rows or ids.
#include "lower.h"

// Leaves and the ops simplify.c rewrites into others never reach codegen.
const Backend be_none = {0};
// reshape: its storage is its operand's (fuse.c plans it as an alias).
const Backend be_view = {0};

static void lower_transpose(CG *c, const Kernel *k, const Node *n) {
  int64_t ost[BPC_MAX_RANK], xst[BPC_MAX_RANK], ist[BPC_MAX_RANK];
  contiguous_strides(&n->shape, ost);
  contiguous_strides(XS(0), xst);
  for (int i = 0; i < n->shape.rank; i++) ist[i] = xst[n->attr.axes[i]];
  emit_copy(c, k->root, 0, ost, IN(0), 0, ist, &n->shape, n->dtype, true);
}

static void lower_broadcast_to(CG *c, const Kernel *k, const Node *n) {
  int64_t ost[BPC_MAX_RANK], ist[BPC_MAX_RANK];
  contiguous_strides(&n->shape, ost);
  shape_bcast_strides(XS(0), &n->shape, ist);
  emit_copy(c, k->root, 0, ost, IN(0), 0, ist, &n->shape, n->dtype, true);
}

// slice copies its window; slice_grad writes zeros and gy's rows in the
// window, over [O, D] rows (the axes up to the sliced one, then the rest).
static void lower_slice(CG *c, const Kernel *k, const Node *n) {
  const Attr *a = &n->attr;
  bool grad = n->op == OP_SLICE_GRAD;
  const Shape *big = grad ? &n->shape : XS(0), *small = grad ? XS(0) : &n->shape;
  int64_t bst[BPC_MAX_RANK], sst[BPC_MAX_RANK];
  contiguous_strides(big, bst);
  contiguous_strides(small, sst);
  int64_t off = a->i[0] * bst[a->i[2]];
  if (!grad) return emit_copy(c, k->root, 0, sst, IN(0), off, bst, small, n->dtype, true);
  int64_t O = 1;
  for (int i = 0; i < a->i[2]; i++) O *= big->d[i];
  begin_kernel(c);
  call_kernel(c, "window", n->dtype,
              (LLVMValueRef[]){P(k->root), P(IN(0)), I64(c, shape_numel(&n->shape) / O), I64(c, off),
                               I64(c, shape_numel(small) / O)},
              5, O, kernel_work(k));
}

static void lower_concat(CG *c, const Kernel *k, const Node *n) {
  begin_kernel(c);
  int64_t ost[BPC_MAX_RANK], off = 0, axis = n->attr.i[0];
  contiguous_strides(&n->shape, ost);
  for (int i = 0; i < n->nin; i++) {
    int64_t ist[BPC_MAX_RANK];
    contiguous_strides(XS(i), ist);
    emit_copy(c, k->root, off * ost[axis], ost, IN(i), 0, ist, XS(i), n->dtype, false);
    off += XS(i)->d[axis];
  }
  end_kernel(c, 1, 0);
}

static void lower_fill(CG *c, const Kernel *k, const Node *n) {
  double v = n->op == OP_ZEROS ? 0 : n->op == OP_ONES ? 1 : n->attr.f[0];
  int64_t numel = shape_numel(&n->shape);
  begin_kernel(c);
  call_kernel(c, "fill", n->dtype, (LLVMValueRef[]){P(k->root), FC(c, n->dtype, v)}, 2, numel, numel);
}

static void lower_arange(CG *c, const Kernel *k, const Node *n) {
  int64_t numel = shape_numel(&n->shape);
  begin_kernel(c);
  lib(c, "bpck_arange_i32", VOID, (LLVMValueRef[]){P(k->root), c->begin, c->end}, 3);
  end_kernel(c, numel, numel);
}

// embedding: rows of the table by id; an id outside it sets status word 1.
static void lower_embedding(CG *c, const Kernel *k, const Node *n) {
  int64_t V = XS(1)->d[0], C = XS(1)->d[1], ids = shape_numel(XS(0));
  begin_kernel(c);
  call_kernel(c, "embedding", n->dtype,
              (LLVMValueRef[]){P(k->root), P(IN(0)), P(IN(1)), I64(c, ids), I64(c, V), I64(c, C), c->status}, 7, ids,
              kernel_work(k));
}

static int64_t embedding_index_limit(const Graph *g, const Node *n, int input, int *code) {
  if (n->in[0] != input) return 0;
  *code = BPCK_ERR_EMBEDDING_ID;
  return graph_node(g, n->in[1])->shape.d[0];
}

// The table's gradient, its range over the table's columns; _add: onto its
// base (in place when it shares storage).
static void lower_embedding_grad(CG *c, const Kernel *k, const Node *n) {
  int64_t V = n->shape.d[0], C = n->shape.d[1], ids = shape_numel(XS(0));
  begin_kernel(c);
  LLVMValueRef base = n->op == OP_EMBEDDING_GRAD_ADD ? P(IN(2)) : LLVMConstNull(c->ptr);
  call_kernel(c, "embedding_grad", n->dtype,
              (LLVMValueRef[]){P(k->root), base, P(IN(0)), P(IN(1)), I64(c, ids), I64(c, V), I64(c, C)}, 7, C,
              kernel_work(k));
}

static void lower_one_hot(CG *c, const Kernel *k, const Node *n) {
  int64_t ids = shape_numel(XS(0));
  begin_kernel(c);
  call_kernel(c, "one_hot", n->dtype, (LLVMValueRef[]){P(k->root), P(IN(0)), I64(c, ids), I64(c, n->attr.i[0])}, 4, ids,
              kernel_work(k));
}

const Backend be_transpose = {.emit = lower_transpose};
const Backend be_broadcast_to = {.emit = lower_broadcast_to};
const Backend be_slice = {.emit = lower_slice};
const Backend be_slice_grad = {.emit = lower_slice};
const Backend be_concat = {.emit = lower_concat};
const Backend be_fill = {.emit = lower_fill};
const Backend be_arange = {.emit = lower_arange};
const Backend be_embedding = {.emit = lower_embedding, .index_limit = embedding_index_limit};
const Backend be_embedding_grad = {.emit = lower_embedding_grad};
const Backend be_one_hot = {.emit = lower_one_hot};
