// lower.h — what the native lowerings share. codegen.c owns the module:
// its types, the elementwise loops, the kernel wrappers, the entry points
// and the optimizer. An op's lowering lives in compiler/lower_<family>.c
// beside its Backend (bpcc.h), which its registry row names (ops.h):
//   lower_ew.c         elementwise scalars (the fused loop), dropout
//   lower_data.c       data movement and indexing: transpose, broadcast_to,
//                      slice, concat, fills, arange, embedding, one_hot
//   lower_reduce.c     reductions (whole, and by row blocks), softmax,
//                      argmax, the max/min gradient, sum_squares
//   lower_norm.c       layer_norm, rms_norm, batch_norm and their dx
//   lower_linalg.c     matmul and the GEMM call every product shares
//   lower_attention.c  attention (packed or not, masked, decode), causal_mask
//   lower_conv.c       conv2d and pooling, forward and backward
//   lower_loss.c       cross_entropy, accuracy, their gradient, and the
//                      fused classifier (linear_cross_entropy)
//
// A kernel op's emit function writes one or more wrappers: begin_kernel()
// starts `void kN(i64 *closure, i64 begin, i64 end, i32 thread)`, the body
// calls library kernels (call_kernel: the library's bpck_<name>_<type>
// with [begin, end) appended, then end_kernel) over the range it declares.
#pragma once
#include <llvm-c/Core.h>

#include "bpc_kernels.h"
#include "bpcc.h"

typedef struct Step {  // one call of an entry point: run fn over [0, n)
  LLVMValueRef fn;
  int64_t n;
  bool parallel;
  int phase;
  int nslots;
  int64_t *slots;  // the closure: arena offsets the wrapper reads
  int kernel;      // the Program's kernel this step belongs to (for bpcrt_profile)
} Step;

struct CG {
  LLVMContextRef cx;
  LLVMModuleRef mod;
  LLVMBuilderRef b;
  const Program *p;
  const Graph *g;
  bool bf16;  // the model's products in bf16 (graph_bf16)
  LLVMTypeRef i1, i32, i64, f32, f64, ptr, vd, ctxty, taskty;
  LLVMValueRef fn;                              // kernel being emitted
  LLVMValueRef arena, scratch, status, seed, step, begin, end, thread;
  struct {
    Step *v;
    int n, cap;
  } steps;
  int nfn;
  int phase;  // of the kernel being emitted
  int kernel; // the index of the kernel being emitted
  char *sig;  // what the wrapper being emitted computes, offsets aside
  int part;   // wrappers emitted for the current kernel so far
  LLVMValueRef closure;
  struct {
    int64_t *v;
    int n, cap;
  } slots;  // offsets the current wrapper reads
  struct {
    char **sig;
    LLVMValueRef *fn;
    int n, cap;
  } wrappers;  // shared wrappers
  struct {
    char **sig;
    LLVMValueRef *fn;
    int n, cap;
  } bodies;  // shared loop bodies
};

// The runtime context (bpc.h's bpcrt_ctx): arena, scratch, pool, seed, step.
enum { CTX_ARENA, CTX_SCRATCH, CTX_POOL, CTX_SEED, CTX_STEP, CTX_NFIELDS };

static inline LLVMTypeRef ftype(CG *c, DType t) { return t == DT_F64 ? c->f64 : t == DT_I32 ? c->i32 : c->f32; }
static inline LLVMValueRef I64(CG *c, int64_t v) { return LLVMConstInt(c->i64, (unsigned long long)v, 1); }
static inline LLVMValueRef I32(CG *c, int64_t v) { return LLVMConstInt(c->i32, (unsigned long long)v, 1); }
static inline LLVMValueRef FC(CG *c, DType t, double v) { return LLVMConstReal(ftype(c, t), v); }
static inline const char *sfx(DType t) { return t == DT_F64 ? "f64" : "f32"; }
static inline LLVMValueRef fcmp(CG *c, LLVMRealPredicate p, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildFCmp(c->b, p, a, b, "");
}
static inline int64_t last_dim(const Shape *s) { return s->rank ? s->d[s->rank - 1] : 1; }
// The element type a call kernel computes in (an i32 result, argmax's: its operand's).
static inline DType call_dtype(CG *c, const Node *n) {
  return n->dtype == DT_I32 ? graph_node(c->g, n->in[0])->dtype : n->dtype;
}
// What the pool weighs a call kernel's range by.
static inline int64_t kernel_work(const Kernel *k) { return k->flops + k->bytes; }

#define P(id) node_ptr(c, id)
#define IN(k) n->in[k]
#define XS(k) (&graph_node(c->g, n->in[k])->shape)
#define VOID LLVMVoidTypeInContext(c->cx)

// ---- functions and calls (codegen.c)
// Calls library function `name` with args; the types are taken from the values.
LLVMValueRef lib(CG *c, const char *name, LLVMTypeRef ret, LLVMValueRef *args, int n);
// A void library call bpck_<base>_<suffix> (libcall: the suffix of t).
void libcall_sfx(CG *c, const char *base, const char *suffix, LLVMValueRef *args, int nargs);
void libcall(CG *c, const char *base, DType t, LLVMValueRef *args, int nargs);
// The kernels of a product (matmul's GEMM, attention, conv2d): under
// `precision: bf16` an f32 product takes the bf16 kernels (bf16 operands,
// f32 sums: bpc_kernels.h), which have the f32 ones' arguments and scratch.
const char *product_sfx(const CG *c, DType t);

// ---- kernel wrappers (codegen.c)
LLVMValueRef begin_kernel(CG *c);
// Ends the wrapper over a range of n units weighing `work` (an identical
// earlier wrapper replaces it).
void end_kernel(CG *c, int64_t n, int64_t work);
// One library kernel over [begin, end), then end_kernel.
void call_kernel_sfx(CG *c, const char *base, const char *suffix, LLVMValueRef *args, int nargs, int64_t n,
                     int64_t work);
void call_kernel(CG *c, const char *base, DType t, LLVMValueRef *args, int nargs, int64_t n, int64_t work);
// A byte pointer into the arena at `off` (read from the wrapper's closure).
LLVMValueRef arena_off(CG *c, int64_t off);
LLVMValueRef node_ptr(CG *c, int id);
// This thread's scratch (Program.mem.scratch_per_thread bytes).
LLVMValueRef scratch_ptr(CG *c);
// An element pointer `off` elements past p.
LLVMValueRef elem_ptr(CG *c, LLVMTypeRef et, LLVMValueRef p, int64_t off);
// The offset in the arena of the kernel's temporary (Backend.temp).
int64_t kernel_temp(CG *c, const Kernel *k);

// A counted loop `for (i = lo; i < hi; i++) body(i)` in the current function.
typedef struct Loop {
  LLVMBasicBlockRef head, body, done;
  LLVMValueRef i;
  LLVMValueRef lo_block_val;
  LLVMBasicBlockRef pre;
} Loop;
LLVMValueRef loop_begin(CG *c, Loop *l, LLVMValueRef lo, LLVMValueRef hi, const char *name);
void loop_end(CG *c, Loop *l);

// ---- the elementwise loop (codegen.c)
typedef struct EwRead {
  int node;
  int64_t stride[BPC_MAX_RANK];  // per collapsed dim, in elements
  LLVMValueRef ptr;              // the value's storage (a parameter of the loop body)
  LLVMValueRef base;             // element offset of the current row
  int out;                       // the output whose storage this is (in place), else -1
} EwRead;

struct Ew {
  const Kernel *k;
  int rank;                  // collapsed iteration space
  int64_t d[BPC_MAX_RANK];
  EwRead r[EW_MAX_READS];
  int nr;
  int64_t block;             // inner length per row (the last dim, or a block of it)
  bool flat;                 // one loop over elements [begin, end), no rows (update groups)
  LLVMValueRef j;            // inner index
  LLVMValueRef oi;           // the outputs' element index (out_base + j)
  LLVMValueRef *val;         // per node id: value in this iteration
};
LLVMValueRef convert(CG *c, LLVMValueRef v, DType from, DType to);
// Operand `id`'s value at the current element, converted to `to`.
LLVMValueRef ew_operand(CG *c, Ew *e, int id, DType to);

// ---- shared by several families
// Strided copy: out (+ out_off elements) <- in (+ in_off) over `shape`, as a
// kernel of its own or inside the current one (codegen.c).
void emit_copy(CG *c, int out, int64_t out_off, const int64_t *ost, int in, int64_t in_off, const int64_t *ist,
               const Shape *shape, DType t, bool own_kernel);
void contiguous_strides(const Shape *s, int64_t *st);
// [O, R, I] view of a reduction over a contiguous block of axes (codegen.c).
void ori(const Shape *x, const int *axes, int naxes, int64_t *O, int64_t *R, int64_t *I);
bool contiguous_axes(const Attr *a);
// out[0] = scale * sum(tmp[0..n)) in order, on one thread (lower_reduce.c).
void emit_sum_scale(CG *c, int out, int64_t tmp_off, int64_t n, double scale, DType t);
// Column statistics by row blocks (lower_reduce.c): the partials of the
// blocks (kind BPCK_SUM, MAX, MIN, or VAR about `center`), their combination
// in block order, and the mean and biased variance of x [R, I].
void emit_col_part(CG *c, int kind, int x, int64_t center, int64_t part, int64_t R, int64_t I, int64_t nb, DType t,
                   int64_t work);
void emit_col_finish(CG *c, int kind, int64_t out, int64_t part, int64_t nb, int64_t I, double scale, DType t);
void emit_col_moments(CG *c, int x, int64_t part, int64_t mean, int64_t var, int64_t R, int64_t I, int64_t nb, DType t,
                      int64_t work);
// The temporary of a kernel by row blocks: partials [nb, 2I], then mean [I],
// var [I], m [2I] (lower_reduce.c): its size, and the offsets of its parts
// in the arena for kernel k.
int64_t col_temp_bytes(int64_t nb, int64_t I, DType t);
typedef struct {
  int64_t part, mean, var, m;
} ColTemp;
ColTemp col_temp(CG *c, const Kernel *k, int64_t nb, int64_t I, DType t);

// ---- the GEMM every product shares (lower_linalg.c)
// One unbatched matmul node into `out` over the kernel's range. The range
// counts whole microkernel tiles: rows in units of BPCK_GEMM_ROW_UNIT or,
// when N > M, columns in units of BPCK_GEMM_COL_UNIT. A row split makes
// every thread pack all of op(B) (N x K) and its share of op(A); a column
// split, all of op(A) and its share of op(B): the smaller total when N > M
// (M = 256 tokens against N = 3072 in GPT-2's MLP). Sums do not depend on
// the split.
typedef struct {
  int64_t units;                  // the range's length
  LLVMValueRef r0, r1, j0, j1;  // the block of C this range computes
} Gemm;
// C[M,N] (+)= op(A) @ op(B) over the kernel's range, as emit_gemm splits it.
Gemm gemm_call(CG *c, DType t, int64_t M, int64_t N, int64_t K, LLVMValueRef A, int64_t lda, int ta, LLVMValueRef B,
               int64_t ldb, int tb, LLVMValueRef out, int64_t ldc, int accumulate);
// An unbatched matmul node into `out` (also a matmul epilogue's head, codegen.c).
Gemm emit_gemm(CG *c, const Node *m, LLVMValueRef out);
