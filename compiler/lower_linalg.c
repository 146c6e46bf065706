// lower_linalg.c — matmul: one GEMM call over tiles of C (gemm_call, which
// the other products' lowerings and the matmul epilogues share), or a loop
// over the batch of C's matrices with operand offsets broadcast.
#include <string.h>

#include "lower.h"

// One unbatched matmul node into `out` over the kernel's range. The range
// counts whole microkernel tiles: rows in units of BPCK_GEMM_ROW_UNIT or,
// when N > M, columns in units of BPCK_GEMM_COL_UNIT. A row split makes
// every thread pack all of op(B) (N x K) and its share of op(A); a column
// split, all of op(A) and its share of op(B): the smaller total when N > M
// (M = 256 tokens against N = 3072 in GPT-2's MLP). Sums do not depend on
// the split.
// C[M,N] (+)= op(A) @ op(B) over the kernel's range, as emit_gemm splits it.
Gemm gemm_call(CG *c, DType t, int64_t M, int64_t N, int64_t K, LLVMValueRef A, int64_t lda, int ta, LLVMValueRef B,
               int64_t ldb, int tb, LLVMValueRef out, int64_t ldc, int accumulate) {
  bool cols = N > M;
  int64_t unit = cols ? BPCK_GEMM_COL_UNIT : BPCK_GEMM_ROW_UNIT, total = cols ? N : M;
  Gemm g = {.units = (total + unit - 1) / unit};
  LLVMValueRef lo = LLVMBuildMul(c->b, c->begin, I64(c, unit), "");
  LLVMValueRef hi = LLVMBuildMul(c->b, c->end, I64(c, unit), "");
  hi = LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, hi, I64(c, total), ""), hi, I64(c, total), "");
  g.r0 = cols ? I64(c, 0) : lo, g.r1 = cols ? I64(c, M) : hi;
  g.j0 = cols ? lo : I64(c, 0), g.j1 = cols ? hi : I64(c, N);
  LLVMValueRef args[15] = {I64(c, M),   I64(c, N),  I64(c, K), A,           I64(c, lda),        I32(c, ta),     B,
                           I64(c, ldb), I32(c, tb), out,       I64(c, ldc), I32(c, accumulate), scratch_ptr(c), lo,
                           hi};
  libcall_sfx(c, cols ? "gemm_cols" : "gemm", product_sfx(c, t), args, 15);
  return g;
}

Gemm emit_gemm(CG *c, const Node *m, LLVMValueRef out) {
  int64_t M, N, K, batch;
  matmul_dims(c->g, m, &M, &N, &K, &batch);
  BPC_ASSERT(batch == 1);
  const Shape *as = &graph_node(c->g, m->in[0])->shape, *bs = &graph_node(c->g, m->in[1])->shape;
  return gemm_call(c, m->dtype, M, N, K, node_ptr(c, m->in[0]), as->d[as->rank - 1], m->attr.b[0],
                   node_ptr(c, m->in[1]), bs->d[bs->rank - 1], m->attr.b[1], out, N, 0);
}

static void lower_matmul(CG *c, const Kernel *k, const Node *n) {
  DType t = n->dtype;
  const Shape *as = XS(0), *bs = XS(1), *os = &n->shape;
  bool ta = n->attr.b[0], tb = n->attr.b[1];
  int64_t M, N, K, batch;
  int64_t lda = as->d[as->rank - 1], ldb = bs->d[bs->rank - 1];
  BPC_ASSERT(n->op == OP_MATMUL);  // linear is lowered to matmul + add first
  matmul_dims(c->g, n, &M, &N, &K, &batch);
  begin_kernel(c);
  LLVMValueRef sp = scratch_ptr(c);
  if (batch == 1) {
    end_kernel(c, emit_gemm(c, n, P(k->root)).units, k->flops);
    return;
  }
  // Batched: the range is over batch entries; operand batch offsets broadcast.
  Shape ob = {.rank = os->rank - 2}, ab = {.rank = as->rank - 2}, bb = {.rank = bs->rank - 2};
  memcpy(ob.d, os->d, sizeof(int64_t) * (size_t)ob.rank);
  memcpy(ab.d, as->d, sizeof(int64_t) * (size_t)ab.rank);
  memcpy(bb.d, bs->d, sizeof(int64_t) * (size_t)bb.rank);
  int64_t sa[BPC_MAX_RANK], sb[BPC_MAX_RANK];
  shape_bcast_strides(&ab, &ob, sa);
  shape_bcast_strides(&bb, &ob, sb);
  int64_t amat = as->d[as->rank - 1] * as->d[as->rank - 2], bmat = bs->d[bs->rank - 1] * bs->d[bs->rank - 2];
  Loop l;
  LLVMValueRef bi = loop_begin(c, &l, c->begin, c->end, "batch");
  LLVMValueRef aoff = I64(c, 0), boff = I64(c, 0), rem = bi;
  for (int a = ob.rank - 1; a >= 0; a--) {
    LLVMValueRef coord = LLVMBuildSRem(c->b, rem, I64(c, ob.d[a]), "");
    rem = LLVMBuildSDiv(c->b, rem, I64(c, ob.d[a]), "");
    aoff = LLVMBuildAdd(c->b, aoff, LLVMBuildMul(c->b, coord, I64(c, sa[a] * amat), ""), "");
    boff = LLVMBuildAdd(c->b, boff, LLVMBuildMul(c->b, coord, I64(c, sb[a] * bmat), ""), "");
  }
  LLVMTypeRef et = ftype(c, t);
  LLVMValueRef ap = LLVMBuildGEP2(c->b, et, P(IN(0)), &aoff, 1, "");
  LLVMValueRef bp = LLVMBuildGEP2(c->b, et, P(IN(1)), &boff, 1, "");
  LLVMValueRef coff = LLVMBuildMul(c->b, bi, I64(c, M * N), "");
  LLVMValueRef cp = LLVMBuildGEP2(c->b, et, P(k->root), &coff, 1, "");
  LLVMValueRef args[15] = {I64(c, M),  I64(c, N), I64(c, K), ap,        I64(c, lda), I32(c, ta), bp,       I64(c, ldb),
                           I32(c, tb), cp,        I64(c, N), I32(c, 0), sp,          I64(c, 0),  I64(c, M)};
  libcall_sfx(c, "gemm", product_sfx(c, t), args, 15);
  loop_end(c, &l);
  end_kernel(c, batch, k->flops);
}

static int64_t matmul_scratch(const Graph *g, const Node *n) {
  int64_t M, N, K, batch;
  matmul_dims(g, n, &M, &N, &K, &batch);
  return (int64_t)(n->dtype == DT_F64 ? bpck_gemm_scratch_f64(M, N, K) : bpck_gemm_scratch_f32(M, N, K)) *
         dtype_bytes(n->dtype);
}

// 2 per multiply-add; linear's bias one more per element.
static int64_t matmul_flops(const Graph *g, const Node *n) {
  const Shape *a = &graph_node(g, n->in[0])->shape;
  int64_t numel = shape_numel(&n->shape), k = n->attr.b[0] ? a->d[a->rank - 2] : a->d[a->rank - 1];
  return 2 * numel * k + (n->nin > 2 ? numel : 0);
}

const Backend be_matmul = {.emit = lower_matmul, .scratch = matmul_scratch, .flops = matmul_flops};
// linear becomes matmul + add (simplify.c) before codegen.
const Backend be_linear = {.flops = matmul_flops};
