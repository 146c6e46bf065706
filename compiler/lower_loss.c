// lower_loss.c — losses. cross_entropy and accuracy: one value per row into
// the kernel's temporary (in parallel), then their mean in row order on one
// thread (the same bits for any thread count); a label outside the classes
// sets status word 2. Their gradient over rows. linear_cross_entropy, the
// classifier and its loss fused by lce.c: row blocks of logits, never the
// whole [rows, V] logits.
#include "lower.h"

static int64_t rows_of(const Shape *s) { return shape_numel(s) / last_dim(s); }

static void lower_cross_entropy(CG *c, const Kernel *k, const Node *n) {
  DType t = call_dtype(c, n);
  int64_t K = last_dim(XS(0)), rows = rows_of(XS(0)), tmp_off = kernel_temp(c, k);
  begin_kernel(c);
  LLVMValueRef tmp = arena_off(c, tmp_off);
  if (n->op == OP_CROSS_ENTROPY)
    call_kernel(c, "cross_entropy_rows", t,
                (LLVMValueRef[]){tmp, P(IN(0)), P(IN(1)), I64(c, rows), I64(c, K), c->status}, 6, rows, kernel_work(k));
  else
    call_kernel(c, "accuracy_rows", t, (LLVMValueRef[]){tmp, P(IN(0)), P(IN(1)), I64(c, rows), I64(c, K)}, 5, rows,
                kernel_work(k));
  emit_sum_scale(c, k->root, tmp_off, rows, 1.0 / (double)rows, t);
}

// The per-row values.
static int64_t per_row_temp(const struct Program *p, const Node *n) {
  return rows_of(&graph_node(p->g, n->in[0])->shape) * dtype_bytes(n->dtype);
}

// The labels index the logits' classes.
static int64_t ce_index_limit(const Graph *g, const Node *n, int input, int *code) {
  if (n->nin < 2 || n->in[1] != input) return 0;
  const Shape *s = &graph_node(g, n->in[0])->shape;
  *code = BPCK_ERR_LABEL;
  return s->rank ? s->d[s->rank - 1] : 0;
}

static void lower_cross_entropy_grad(CG *c, const Kernel *k, const Node *n) {
  int64_t K = last_dim(XS(0)), rows = rows_of(XS(0));
  begin_kernel(c);
  call_kernel(c, "cross_entropy_grad", call_dtype(c, n),
              (LLVMValueRef[]){P(k->root), P(IN(0)), P(IN(1)), P(IN(2)), I64(c, rows), I64(c, K)}, 6, rows,
              kernel_work(k));
}

// linear_cross_entropy (lce.c) by row blocks of R rows (lce_block_rows):
// the block's logits [R, V] by one GEMM into the kernel's temporary, the row
// pass (losses; with gy the logits' gradient in place), then with gy dh's
// rows = dl @ w and dW (+)= dl^T h (the first block writes, the next ones
// add, in block order: the same bits for any thread count), and at the end
// the losses' mean. Each step is a function of its own, run over the pool in
// turn; the temporary is linear in R, not in the rows.
static void lower_lce(CG *c, const Kernel *k, const Node *n) {
  DType t = n->dtype;
  LLVMTypeRef et = ftype(c, t);
  int64_t rows, C, V = lce_dims(c->g, n, &rows, &C), R = lce_block_rows(rows, V), es = dtype_bytes(t);
  bool tw = n->attr.b[0], grad = n->nin > 3;
  int64_t tmp = kernel_temp(c, k), losses = tmp + R * V * es;
  int64_t odw = lce_offset(XS(0), XS(1), 1), oloss = grad ? lce_offset(XS(0), XS(1), 2) : 0;
  for (int64_t r0 = 0; r0 < rows; r0 += R) {
    int64_t m = rows - r0 < R ? rows - r0 : R;
    begin_kernel(c);  // logits = h_blk @ w^T (tw) or h_blk @ w
    Gemm gm = gemm_call(c, t, m, V, C, elem_ptr(c, et, P(IN(0)), r0 * C), C, 0, P(IN(1)), tw ? C : V, tw,
                        arena_off(c, tmp), V, 0);
    end_kernel(c, gm.units, 2 * m * V * C);
    begin_kernel(c);
    LLVMValueRef labels = LLVMBuildGEP2(c->b, c->i32, P(IN(2)), (LLVMValueRef[]){I64(c, r0)}, 1, "");
    call_kernel(c, "lce_rows", t,
                (LLVMValueRef[]){arena_off(c, losses + r0 * es), arena_off(c, tmp), labels,
                                 grad ? P(IN(3)) : LLVMConstNull(c->ptr), I64(c, rows), I64(c, V), c->status},
                7, m, 8 * m * V);
    if (!grad) continue;
    begin_kernel(c);  // dh rows = dl @ w (tw) or dl @ w^T
    gm = gemm_call(c, t, m, C, V, arena_off(c, tmp), V, 0, P(IN(1)), tw ? C : V, !tw,
                   elem_ptr(c, et, P(k->root), r0 * C), C, 0);
    end_kernel(c, gm.units, 2 * m * V * C);
    begin_kernel(c);  // dW [V, C] += dl^T @ h_blk (tw), or [C, V] += h_blk^T @ dl
    LLVMValueRef hb = elem_ptr(c, et, P(IN(0)), r0 * C), dw = elem_ptr(c, et, P(k->root), odw);
    gm = tw ? gemm_call(c, t, V, C, m, arena_off(c, tmp), V, 1, hb, C, 0, dw, C, r0 > 0)
            : gemm_call(c, t, C, V, m, hb, C, 1, arena_off(c, tmp), V, 0, dw, V, r0 > 0);
    end_kernel(c, gm.units, 2 * m * V * C);
  }
  begin_kernel(c);
  libcall(c, "sum_scale", t,
          (LLVMValueRef[]){elem_ptr(c, et, P(k->root), oloss), arena_off(c, losses), I64(c, rows),
                           FC(c, t, 1.0 / (double)rows)},
          4);
  end_kernel(c, 1, 0);
}

// The GEMMs of one row block.
static int64_t lce_scratch(const Graph *g, const Node *n) {
  int64_t rows, C, V = lce_dims(g, n, &rows, &C), R = lce_block_rows(rows, V);
  size_t (*scr)(int64_t, int64_t, int64_t) = n->dtype == DT_F64 ? bpck_gemm_scratch_f64 : bpck_gemm_scratch_f32;
  size_t elems = scr(R, V, C);
  if (n->nin > 3) {
    size_t dh = scr(R, C, V), dw = n->attr.b[0] ? scr(V, C, R) : scr(C, V, R);
    elems = elems > dh ? elems : dh;
    elems = elems > dw ? elems : dw;
  }
  return (int64_t)elems * dtype_bytes(n->dtype);
}

// One row block's logits, then the per-row losses.
static int64_t lce_temp(const struct Program *p, const Node *n) {
  int64_t rows, C, V = lce_dims(p->g, n, &rows, &C);
  return (lce_block_rows(rows, V) * V + rows) * dtype_bytes(graph_node(p->g, n->in[0])->dtype);
}

// The logits' GEMM, then with gy those of dh and dW, and the row pass.
static int64_t lce_flops(const Graph *g, const Node *n) {
  int64_t rows, C, V = lce_dims(g, n, &rows, &C);
  return (n->nin > 3 ? 6 : 2) * rows * C * V + 6 * rows * V;
}

static int64_t lce_index_limit(const Graph *g, const Node *n, int input, int *code) {
  if (n->in[2] != input) return 0;
  int64_t rows, C;
  *code = BPCK_ERR_LABEL;
  return lce_dims(g, n, &rows, &C);
}

const Backend be_cross_entropy = {.emit = lower_cross_entropy, .temp = per_row_temp, .index_limit = ce_index_limit};
const Backend be_accuracy = {.emit = lower_cross_entropy, .temp = per_row_temp};
const Backend be_cross_entropy_grad = {.emit = lower_cross_entropy_grad};
const Backend be_linear_cross_entropy = {
    .emit = lower_lce, .scratch = lce_scratch, .temp = lce_temp, .flops = lce_flops, .index_limit = lce_index_limit};
