// lower_norm.c — normalizations. layer_norm and rms_norm (and their dx) are
// one library kernel over rows of the last axis; batch_norm normalizes each
// channel (the last axis) over all the rows, so its statistics are column
// statistics by row blocks (lower_reduce.c's steps), then one pass applies
// them; its dx the moments again, the two column sums of the gradient, the
// apply.
#include "lower.h"

static void lower_norm_rows(CG *c, const Kernel *k, const Node *n) {
  DType t = call_dtype(c, n);
  int64_t C = last_dim(XS(0)), rows = shape_numel(XS(0)) / C, gn = shape_numel(XS(1)), work = kernel_work(k);
  begin_kernel(c);
  LLVMValueRef eps = FC(c, t, n->attr.f[0]);
  if (n->op == OP_LAYER_NORM)
    return call_kernel(c, "layer_norm", t,
                       (LLVMValueRef[]){P(k->root), P(IN(0)), P(IN(1)), I64(c, gn), P(IN(2)),
                                        I64(c, shape_numel(XS(2))), I64(c, rows), I64(c, C), eps},
                       9, rows, work);
  if (n->op == OP_RMS_NORM)
    return call_kernel(c, "rms_norm", t,
                       (LLVMValueRef[]){P(k->root), P(IN(0)), P(IN(1)), I64(c, gn), I64(c, rows), I64(c, C), eps}, 7,
                       rows, work);
  call_kernel(c, n->op == OP_LAYER_NORM_DX ? "layer_norm_dx" : "rms_norm_dx", t,
              (LLVMValueRef[]){P(k->root), P(IN(0)), P(IN(1)), I64(c, gn), P(IN(2)), I64(c, rows), I64(c, C), eps}, 8,
              rows, work);
}

// x [R, I]: I channels (the last axis), R rows.
static int64_t bn_col_blocks(const Graph *g, const Node *n, int64_t *R, int64_t *I) {
  const Shape *x = &graph_node(g, n->in[0])->shape;
  *I = x->d[x->rank - 1];
  *R = shape_numel(x) / *I;
  return bpck_col_blocks(*R, *I);
}

// Partials [nb, 2I] (batch_norm_dx's two sums), then mean, var, and the two
// means; batch_norm when not training reads the running statistics: none.
static int64_t bn_temp(const struct Program *p, const Node *n) {
  if (n->op == OP_BATCH_NORM && !p->training) return 0;
  int64_t R, I, nb = bn_col_blocks(p->g, n, &R, &I);
  return col_temp_bytes(nb, I, graph_node(p->g, n->in[0])->dtype);
}

// batch statistics when training, else the running ones
static void lower_batch_norm(CG *c, const Kernel *k, const Node *n) {
  int64_t R, I, nb = bn_col_blocks(c->g, n, &R, &I), work = kernel_work(k);
  DType t = graph_node(c->g, IN(0))->dtype;
  ColTemp ct = col_temp(c, k, nb, I, t);
  if (c->p->training) emit_col_moments(c, IN(0), ct.part, ct.mean, ct.var, R, I, nb, t, work);
  begin_kernel(c);
  LLVMValueRef mp = c->p->training ? arena_off(c, ct.mean) : P(IN(3));
  LLVMValueRef vp = c->p->training ? arena_off(c, ct.var) : P(IN(4));
  call_kernel(c, "bn_apply", t,
              (LLVMValueRef[]){P(k->root), P(IN(0)), mp, vp, P(IN(1)), I64(c, shape_numel(XS(1))), P(IN(2)),
                               I64(c, shape_numel(XS(2))), I64(c, I), FC(c, t, n->attr.f[0])},
              10, R, work);
}

static void lower_batch_norm_dx(CG *c, const Kernel *k, const Node *n) {
  int64_t R, I, nb = bn_col_blocks(c->g, n, &R, &I), work = kernel_work(k);
  DType t = graph_node(c->g, IN(0))->dtype;
  int64_t gn = shape_numel(XS(1));
  ColTemp ct = col_temp(c, k, nb, I, t);
  emit_col_moments(c, IN(0), ct.part, ct.mean, ct.var, R, I, nb, t, work);
  begin_kernel(c);
  LLVMValueRef eps = FC(c, t, n->attr.f[0]);
  call_kernel(c, "bn_dx_part", t,
              (LLVMValueRef[]){arena_off(c, ct.part), P(IN(0)), P(IN(1)), I64(c, gn), P(IN(2)), arena_off(c, ct.mean),
                               arena_off(c, ct.var), I64(c, R), I64(c, I), eps},
              10, nb, work);
  emit_col_finish(c, BPCK_SUM, ct.m, ct.part, nb, 2 * I, 1.0 / (double)R, t);
  begin_kernel(c);
  eps = FC(c, t, n->attr.f[0]);
  call_kernel(c, "bn_dx_apply", t,
              (LLVMValueRef[]){P(k->root), P(IN(0)), P(IN(1)), I64(c, gn), P(IN(2)), arena_off(c, ct.mean),
                               arena_off(c, ct.var), arena_off(c, ct.m), I64(c, I), eps},
              10, R, work);
}

const Backend be_norm_rows = {.emit = lower_norm_rows};
const Backend be_batch_norm = {.emit = lower_batch_norm, .temp = bn_temp};
const Backend be_batch_norm_dx = {.emit = lower_batch_norm_dx, .temp = bn_temp};
