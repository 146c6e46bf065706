// lower_reduce.c — reductions (sum, mean, max, min, var, logsumexp) over a
// contiguous block of axes, as [O, R, I]; a column statistic over the
// leading axes of a tall operand by row blocks instead (partials per block,
// combined in block order: the same bits for any thread count; batch_norm
// uses the same steps, lower_norm.c); softmax, log_softmax and argmax over
// one axis; the max/min gradient; sum_squares (the global norm's blocks).
#include "lower.h"

// Sequential phase of a two-phase kernel: out[0] = scale * sum(tmp[0..n)).
void emit_sum_scale(CG *c, int out, int64_t tmp_off, int64_t n, double scale, DType t) {
  begin_kernel(c);
  LLVMValueRef tmp = arena_off(c, tmp_off);
  libcall(c, "sum_scale", t, (LLVMValueRef[]){P(out), tmp, I64(c, n), FC(c, t, scale)}, 4);
  end_kernel(c, 1, 0);
}

// Column statistics by row blocks (reduce_col_blocks, bn_col_blocks): a parallel pass
// leaving each block's partials at `part` (kind BPCK_SUM, MAX, MIN, or VAR
// about `center`), then one thread combining them in block order into `out`.
// Offsets into the arena (-1: no center); each step is its own function.
void emit_col_part(CG *c, int kind, int x, int64_t center, int64_t part, int64_t R, int64_t I, int64_t nb, DType t,
                   int64_t work) {
  begin_kernel(c);
  LLVMValueRef ctr = center >= 0 ? arena_off(c, center) : LLVMConstNull(c->ptr);
  call_kernel(c, "col_part", t,
              (LLVMValueRef[]){I32(c, kind), arena_off(c, part), node_ptr(c, x), ctr, I64(c, R), I64(c, I)}, 6, nb,
              work);
}

void emit_col_finish(CG *c, int kind, int64_t out, int64_t part, int64_t nb, int64_t I, double scale, DType t) {
  begin_kernel(c);
  libcall(c, "col_finish", t,
          (LLVMValueRef[]){I32(c, kind), arena_off(c, out), arena_off(c, part), I64(c, nb), I64(c, I), FC(c, t, scale)},
          6);
  end_kernel(c, 1, 0);
}

// Mean and (biased) variance of the columns of x [R, I]: sums, mean, squared
// deviations about it, variance; two passes over x as the library's.
void emit_col_moments(CG *c, int x, int64_t part, int64_t mean, int64_t var, int64_t R, int64_t I, int64_t nb, DType t,
                      int64_t work) {
  emit_col_part(c, BPCK_SUM, x, -1, part, R, I, nb, t, work);
  emit_col_finish(c, BPCK_SUM, mean, part, nb, I, 1.0 / (double)R, t);
  emit_col_part(c, BPCK_VAR, x, mean, part, R, I, nb, t, work);
  emit_col_finish(c, BPCK_SUM, var, part, nb, I, 1.0 / (double)R, t);
}

int64_t col_temp_bytes(int64_t nb, int64_t I, DType t) { return (2 * nb + 4) * I * dtype_bytes(t); }

ColTemp col_temp(CG *c, const Kernel *k, int64_t nb, int64_t I, DType t) {
  ColTemp ct = {.part = kernel_temp(c, k)};
  ct.mean = ct.part + 2 * nb * I * dtype_bytes(t), ct.var = ct.mean + I * dtype_bytes(t),
  ct.m = ct.var + I * dtype_bytes(t);
  return ct;
}

// A column statistic over the leading axes, by row blocks: when the rows are
// many and short (I <= 256) and there are at least two blocks.
static int64_t reduce_col_blocks(const Graph *g, const Node *n, int64_t *R, int64_t *I) {
  *R = 1, *I = 1;
  if (n->op == OP_LOGSUMEXP) return 0;
  const Shape *x = &graph_node(g, n->in[0])->shape;
  if (!dtype_is_float(graph_node(g, n->in[0])->dtype)) return 0;  // sum, max, min of i32
  const Attr *a = &n->attr;
  for (int i = 0; i < a->naxes; i++)
    if (a->axes[i] != i) return 0;  // the leading axes, in order
  for (int d = 0; d < x->rank; d++) *(d < a->naxes ? R : I) *= x->d[d];
  int64_t nb = bpck_col_blocks(*R, *I);
  return *I <= 256 && nb >= 2 ? nb : 0;
}

static int64_t reduce_temp(const struct Program *p, const Node *n) {
  int64_t R = 1, I = 1, nb = reduce_col_blocks(p->g, n, &R, &I);
  return nb ? col_temp_bytes(nb, I, graph_node(p->g, n->in[0])->dtype) : 0;
}

static void lower_reduce(CG *c, const Kernel *k, const Node *n) {
  const Attr *a = &n->attr;
  DType t = call_dtype(c, n);
  int64_t work = kernel_work(k), R = 1, I = 1, nb = reduce_col_blocks(c->g, n, &R, &I);
  if (nb) {  // partials, then their combination (var: the moments' two passes)
    DType xt = graph_node(c->g, IN(0))->dtype;
    ColTemp ct = col_temp(c, k, nb, I, xt);
    int64_t out = c->p->mem.offset[k->root];
    if (n->op == OP_VAR) return emit_col_moments(c, IN(0), ct.part, ct.mean, out, R, I, nb, xt, work);
    int kind = n->op == OP_MAX ? BPCK_MAX : n->op == OP_MIN ? BPCK_MIN : BPCK_SUM;
    BPC_ASSERT(n->op != OP_LOGSUMEXP);
    emit_col_part(c, kind, IN(0), -1, ct.part, R, I, nb, xt, work);
    return emit_col_finish(c, kind, out, ct.part, nb, I, n->op == OP_MEAN ? 1.0 / (double)R : 1.0, xt);
  }
  BPC_ASSERT(contiguous_axes(a));
  int64_t O;
  ori(XS(0), a->axes, a->naxes, &O, &R, &I);
  int kind = n->op == OP_SUM    ? 0
             : n->op == OP_MEAN ? 1
             : n->op == OP_MAX  ? 2
             : n->op == OP_MIN  ? 3
             : n->op == OP_VAR  ? 4
                                : 5;
  begin_kernel(c);
  if (n->dtype == DT_I32) {  // sum, max, min of i32 (the others promote, ir.c)
    BPC_ASSERT(n->op == OP_SUM || n->op == OP_MAX || n->op == OP_MIN);
    lib(c, "bpck_reduce_i32", VOID,
        (LLVMValueRef[]){I32(c, kind), P(k->root), P(IN(0)), I64(c, O), I64(c, R), I64(c, I), c->begin, c->end}, 8);
    return end_kernel(c, O * I, work);
  }
  call_kernel(c, "reduce", t, (LLVMValueRef[]){I32(c, kind), P(k->root), P(IN(0)), I64(c, O), I64(c, R), I64(c, I)}, 6,
              O * I, work);
}

// The gradient of max/min: gy to the first extremum of each reduced run.
static void lower_maxmin_grad(CG *c, const Kernel *k, const Node *n) {
  const Attr *a = &n->attr;
  int64_t O, R, I;
  BPC_ASSERT(contiguous_axes(a));
  ori(XS(0), a->axes, a->naxes, &O, &R, &I);
  begin_kernel(c);
  call_kernel(c, "maxmin_grad", call_dtype(c, n),
              (LLVMValueRef[]){P(k->root), P(IN(0)), P(IN(1)), I64(c, O), I64(c, R), I64(c, I), I32(c, a->b[1])}, 7,
              O * I, kernel_work(k));
}

static void lower_softmax(CG *c, const Kernel *k, const Node *n) {
  int axis = (int)n->attr.i[0];
  int64_t O, R, I;
  ori(XS(0), &axis, 1, &O, &R, &I);
  begin_kernel(c);
  DType t = call_dtype(c, n);
  if (n->op == OP_ARGMAX)
    return call_kernel(c, "argmax", t, (LLVMValueRef[]){P(k->root), P(IN(0)), I64(c, O), I64(c, R), I64(c, I)}, 5,
                       O * I, kernel_work(k));
  call_kernel(c, "softmax", t,
              (LLVMValueRef[]){P(k->root), P(IN(0)), I64(c, O), I64(c, R), I64(c, I), I32(c, n->op == OP_LOG_SOFTMAX)},
              6, O * I, kernel_work(k));
}

// sum_squares: block partials in parallel, then their sum in order.
static int64_t sum_squares_blocks(const Graph *g, const Node *n) {
  return (shape_numel(&graph_node(g, n->in[0])->shape) + BPCK_SQ_BLOCK - 1) / BPCK_SQ_BLOCK;
}

static int64_t sum_squares_temp(const struct Program *p, const Node *n) {
  return sum_squares_blocks(p->g, n) * dtype_bytes(n->dtype);
}

static void lower_sum_squares(CG *c, const Kernel *k, const Node *n) {
  DType t = call_dtype(c, n);
  int64_t nb = sum_squares_blocks(c->g, n), tmp = kernel_temp(c, k);
  begin_kernel(c);
  call_kernel(c, "sum_squares_blocks", t, (LLVMValueRef[]){arena_off(c, tmp), P(IN(0)), I64(c, shape_numel(XS(0)))}, 3,
              nb, kernel_work(k));
  emit_sum_scale(c, k->root, tmp, nb, 1.0, t);
}

const Backend be_reduce = {.emit = lower_reduce, .temp = reduce_temp};
const Backend be_maxmin_grad = {.emit = lower_maxmin_grad};
const Backend be_softmax = {.emit = lower_softmax};
const Backend be_argmax = {.emit = lower_softmax};
const Backend be_sum_squares = {.emit = lower_sum_squares, .temp = sum_squares_temp};
