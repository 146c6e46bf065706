// bpc_kernels.h — the kernel library: the compute kernels generated code
// calls for everything that is not a fused elementwise loop (those codegen
// emits itself). Written once in C (runtime/kernels.c), compiled twice:
// natively into libbpcrt (tests, fallbacks) and to LLVM bitcode that bpc links
// into every generated module, where calls with constant shapes are inlined
// and specialized for the target CPU.
//
// Conventions, for every kernel:
// - Two versions, suffix _f32 and _f64 (T = float or double below); integer
//   tensors (ids, labels, argmax results) are int32_t.
// - All tensors are dense row-major; pointers do not alias unless stated.
// - Work is split by a range [begin, end) over the kernel's parallel index
//   (stated per kernel). Calling with (0, total) does all the work; the thread
//   pool hands disjoint ranges to threads. Each output element is written by
//   exactly one range and reduced in a fixed order: results are bit-identical
//   for any split.
// - Kernels that can meet bad data (an id or label out of range) take
//   `int64_t *status` (3 words): on the first problem they set status[0] to a
//   BPCK_ERR_* code, status[1] to the bad value and status[2] to the limit,
//   and write zeros for that element; they never crash.
// - `scratch` is per-thread working memory of the size the kernel's
//   *_scratch function returns (in elements of T), already offset for the
//   calling thread.
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { BPCK_OK = 0, BPCK_ERR_EMBEDDING_ID = 1, BPCK_ERR_LABEL = 2 };
// GEMM ranges are best split at whole microkernel tiles: generated code
// splits rows in units of BPCK_GEMM_ROW_UNIT and columns in units of
// BPCK_GEMM_COL_UNIT (multiples of the f32 and f64 tile sizes).
// sum_squares' blocks: partial sums of this many elements, added in order.
#define BPCK_SQ_BLOCK 8192
#define BPCK_GEMM_ROW_UNIT 6
#define BPCK_GEMM_COL_UNIT 16

// The instruction set of the f32 GEMM (bpck_gemm_f32, bpck_gemm_cols_f32 and
// the GEMMs inside attention and convolution): AVX-512 (F, VL, BW, DQ) when
// the CPU has it, unless the environment variable BPC_ISA is "avx2"; the
// rest of the library is AVX2 + FMA (x86-64-v3) on every CPU. Both paths
// give the same bits (same packing, K blocks and FMA order per element).
// bpck_isa: the path in use (decided on the first call). bpck_set_isa: use
// `isa` from now on (AVX512 on a CPU without it gives AVX2; AUTO decides
// again from BPC_ISA and the CPU); returns the path now in use. For tests
// and benchmarks: not while another thread is inside a GEMM.
enum { BPCK_ISA_AUTO = 0, BPCK_ISA_AVX2 = 1, BPCK_ISA_AVX512 = 2 };
int bpck_isa(void);
int bpck_set_isa(int isa);

enum { BPCK_SUM, BPCK_MEAN, BPCK_MAX, BPCK_MIN, BPCK_VAR, BPCK_LOGSUMEXP };

// sum (wrapping, two's complement), max or min of in viewed as [O, R, I] over
// R: out[O, I], i32. Range: output elements.
void bpck_reduce_i32(int kind, int32_t *out, const int32_t *in, int64_t O, int64_t R, int64_t I, int64_t begin,
                     int64_t end);

// Column statistics over row blocks (reductions of [R, I] over R with few
// columns, batch_norm): a block of bpck_col_block(I) rows (about
// BPCK_COL_BLOCK elements, at least 64 rows) leaves one partial per column, and the partials
// combine in block order, so the bits depend on the shape only.
#define BPCK_COL_BLOCK 16384
// At least 64 rows: a wide batch_norm keeps its partials and their
// one-thread combination at 1/64 of x.
static inline int64_t bpck_col_block(int64_t I) { return BPCK_COL_BLOCK / I > 64 ? BPCK_COL_BLOCK / I : 64; }
static inline int64_t bpck_col_blocks(int64_t R, int64_t I) { return (R + bpck_col_block(I) - 1) / bpck_col_block(I); }

#define BPCK_DECLARE(T, S)                                                                                             \
  /* ---- scalar math for fused elementwise loops: branch-free and free of libm calls in f32 so \
     loops vectorize; the f64 versions call libm (gradient checking wants exactness). p: the op's \
     float attribute (pow's exponent, leaky_relu's alpha, gelu: nonzero = tanh form). */                      \
  T bpck_exp_##S(T x);                                                                                                 \
  T bpck_log_##S(T x);                                                                                                 \
  T bpck_tanh_##S(T x);                                                                                                \
  T bpck_sin_##S(T x);                                                                                                 \
  T bpck_cos_##S(T x);                                                                                                 \
  T bpck_erf_##S(T x);                                                                                                 \
  T bpck_pow_##S(T x, T p);                                                                                            \
  T bpck_sigmoid_##S(T x);                                                                                             \
  T bpck_softplus_##S(T x);                                                                                            \
  T bpck_gelu_##S(T x, T p);                                                                                           \
  T bpck_gelu_grad_##S(T x, T p);                                                                                      \
  T bpck_silu_##S(T x);                                                                                                \
                                                                                                                       \
  /* C[M,N] = op(A)[M,K] @ op(B)[K,N] (+ C when accumulate). op(A) = A^T when transa (A is then   \
     [K,M] with row stride lda), likewise B. Packed, register-blocked (BLIS structure). Range:    \
     rows of C. bpck_gemm_cols: the same, range over columns of C (all rows): each thread then  \
     packs all of A and its share of B, cheaper than the row split when N > M. */                    \
  size_t bpck_gemm_scratch_##S(int64_t M, int64_t N, int64_t K);                                                       \
  void bpck_gemm_##S(int64_t M, int64_t N, int64_t K, const T *A, int64_t lda, int transa, const T *B, int64_t ldb,    \
                     int transb, T *C, int64_t ldc, int accumulate, T *scratch, int64_t begin, int64_t end);           \
  void bpck_gemm_cols_##S(int64_t M, int64_t N, int64_t K, const T *A, int64_t lda, int transa, const T *B,            \
                          int64_t ldb, int transb, T *C, int64_t ldc, int accumulate, T *scratch, int64_t begin,       \
                          int64_t end);                                                                                \
                                                                                                                       \
  /* Reductions of in viewed as [O, R, I] over R: out[O, I]. kind: BPCK_SUM..BPCK_LOGSUMEXP (VAR \
     is the population variance). Range: flat output index in [0, O*I). */                     \
  void bpck_reduce_##S(int kind, T *out, const T *in, int64_t O, int64_t R, int64_t I, int64_t begin, int64_t end);    \
  /* d max/min: gy [O, I] goes to the first extremal element along R; the rest of dx is 0.       \
     Range: flat output index in [0, O*I). */                     \
  void bpck_maxmin_grad_##S(T *dx, const T *x, const T *gy, int64_t O, int64_t R, int64_t I, int is_min,               \
                            int64_t begin, int64_t end);                                                               \
  /* softmax (log_softmax when log) of x [O, R, I] along R. Range: [0, O*I). */                                        \
  void bpck_softmax_##S(T *out, const T *x, int64_t O, int64_t R, int64_t I, int log, int64_t begin, int64_t end);     \
                                                                                                                       \
  /* Normalization over the last axis of x [rows, C]; gamma/beta hold gn/bn elements (1 or C).   \
     Range: rows. */                     \
  void bpck_layer_norm_##S(T *out, const T *x, const T *gamma, int64_t gn, const T *beta, int64_t bn, int64_t rows,    \
                           int64_t C, T eps, int64_t begin, int64_t end);                                              \
  void bpck_layer_norm_dx_##S(T *dx, const T *x, const T *gamma, int64_t gn, const T *gy, int64_t rows, int64_t C,     \
                              T eps, int64_t begin, int64_t end);                                                      \
  void bpck_rms_norm_##S(T *out, const T *x, const T *gamma, int64_t gn, int64_t rows, int64_t C, T eps,               \
                         int64_t begin, int64_t end);                                                                  \
  void bpck_rms_norm_dx_##S(T *dx, const T *x, const T *gamma, int64_t gn, const T *gy, int64_t rows, int64_t C,       \
                            T eps, int64_t begin, int64_t end);                                                        \
  /* Column statistics of x [R, I] by row blocks (bpck_col_block): part [blocks, I] gets each     \
     block's sum (kind BPCK_SUM), max, min, or sum of (x - center)^2 (BPCK_VAR). Range: blocks. */                    \
  void bpck_col_part_##S(int kind, T *part, const T *x, const T *center, int64_t R, int64_t I, int64_t begin,          \
                         int64_t end);                                                                                 \
  /* out[i] = the blocks' partials part [nb, I] combined in block order (sums times scale; max,   \
     min), one thread. */                    \
  void bpck_col_finish_##S(int kind, T *out, const T *part, int64_t nb, int64_t I, T scale);                           \
  /* batch_norm's normalization of x [N, C] with per-channel mean and (biased) var: the batch's   \
     (col_part, col_finish) or the running stats. Range: rows. */                    \
  void bpck_bn_apply_##S(T *out, const T *x, const T *mean, const T *var, const T *gamma, int64_t gn, const T *beta,   \
                         int64_t bn, int64_t C, T eps, int64_t begin, int64_t end);                                    \
  /* batch_norm_dx by row blocks: part [blocks, 2C] gets each block's sums of gy*gamma and        \
     gy*gamma*xhat (range: blocks); then, with m [2C] their means (col_finish), dx. Range: rows. */                    \
  void bpck_bn_dx_part_##S(T *part, const T *x, const T *gamma, int64_t gn, const T *gy, const T *mean, const T *var,  \
                           int64_t N, int64_t C, T eps, int64_t begin, int64_t end);                                   \
  void bpck_bn_dx_apply_##S(T *dx, const T *x, const T *gamma, int64_t gn, const T *gy, const T *mean, const T *var,   \
                            const T *m, int64_t C, T eps, int64_t begin, int64_t end);                                 \
                                                                                                                       \
  /* Multi-head attention, q [B, Tq, C], k and v [B, Tk, C], H heads of C/H channels, scale      \
     1/sqrt(C/H), causal masks key j > query i, mask [B, Tk] (or NULL) masks the keys where it   \
     is 0; a query left with no key gets 0. Range: B*H (one head of one sequence). q, k and      \
     v rows are ldi apart (C; 3C for q, k, v packed in one [B, T, 3C] tensor), out and gy rows C \
     apart, dq, dk and dv rows ldo apart. attention_bwd writes any of dq, dk, dv not NULL. */                     \
  size_t bpck_attention_scratch_##S(int64_t Tq, int64_t Tk, int64_t hs);                                               \
  void bpck_attention_##S(T *out, const T *q, const T *k, const T *v, int64_t B, int64_t Tq, int64_t Tk, int64_t C,    \
                          int64_t H, int causal, const T *mask, int64_t ldi, T *scratch, int64_t begin, int64_t end);  \
  size_t bpck_attention_bwd_scratch_##S(int64_t Tq, int64_t Tk, int64_t hs);                                           \
  void bpck_attention_bwd_##S(T *dq, T *dk, T *dv, const T *q, const T *k, const T *v, const T *gy, int64_t B,         \
                              int64_t Tq, int64_t Tk, int64_t C, int64_t H, int causal, const T *mask, int64_t ldi,    \
                              int64_t ldo, T *scratch, int64_t begin, int64_t end);                                    \
  /* x [rows, R, Cc] (rows = product of the leading axes): -inf (grad: 0) where column > row.    \
     Range: rows*R. */                     \
  void bpck_causal_mask_##S(T *out, const T *x, int64_t R, int64_t Cc, int grad, int64_t begin, int64_t end);          \
                                                                                                                       \
  /* conv2d NHWC, x [N,H,W,Ci], w [KH,KW,Ci,Co], out [N,OH,OW,Co], zero padding; im2col + GEMM. \
     Ranges: conv2d N*OH output rows; conv2d_dx N*H input rows; conv2d_dw KH*KW*Ci rows of dw. \
     conv2d_scratch: per-thread elements; which 0 conv2d, 1 conv2d_dx, 2 conv2d_dw. */                      \
  size_t bpck_conv2d_scratch_##S(int which, int64_t W, int64_t Ci, int64_t KH, int64_t KW, int64_t Co, int64_t stride, \
                                 int64_t pad);                                                                         \
  void bpck_conv2d_##S(T *out, const T *x, const T *w, int64_t N, int64_t H, int64_t W, int64_t Ci, int64_t KH,        \
                       int64_t KW, int64_t Co, int64_t stride, int64_t pad, T *scratch, int64_t begin, int64_t end);   \
  void bpck_conv2d_dx_##S(T *dx, const T *gy, const T *w, int64_t N, int64_t H, int64_t W, int64_t Ci, int64_t KH,     \
                          int64_t KW, int64_t Co, int64_t stride, int64_t pad, T *scratch, int64_t begin,              \
                          int64_t end);                                                                                \
  void bpck_conv2d_dw_##S(T *dw, const T *x, const T *gy, int64_t N, int64_t H, int64_t W, int64_t Ci, int64_t KH,     \
                          int64_t KW, int64_t Co, int64_t stride, int64_t pad, T *scratch, int64_t begin,              \
                          int64_t end);                                                                                \
  /* Pools, no padding, window K, stride S; max takes the first maximum. Ranges: forward N*OH,  \
     backward N (windows may overlap within an image). */                      \
  void bpck_pool2d_##S(T *out, const T *x, int64_t N, int64_t H, int64_t W, int64_t C, int64_t K, int64_t S,           \
                       int is_max, int64_t begin, int64_t end);                                                        \
  void bpck_pool2d_grad_##S(T *dx, const T *x, const T *gy, int64_t N, int64_t H, int64_t W, int64_t C, int64_t K,     \
                            int64_t S, int is_max, int64_t begin, int64_t end);                                        \
                                                                                                                       \
  /* out [n, C] = rows of table [V, C] picked by ids. Range: ids. */                                                   \
  void bpck_embedding_##S(T *out, const int32_t *ids, const T *table, int64_t n, int64_t V, int64_t C,                 \
                          int64_t *status, int64_t begin, int64_t end);                                                \
  /* dtable [V, C] = base (NULL: zeros; dtable itself: in place) + the gy rows each id picked,   \
     added in id order as a scatter-add without atomics: each range owns columns. Range: C. */                     \
  void bpck_embedding_grad_##S(T *dtable, const T *base, const int32_t *ids, const T *gy, int64_t n, int64_t V,        \
                               int64_t C, int64_t begin, int64_t end);                                                 \
  /* out [n, K]: 1 at the id (an id outside [0, K) gives a zero row). Range: ids. */                                   \
  void bpck_one_hot_##S(T *out, const int32_t *ids, int64_t n, int64_t K, int64_t begin, int64_t end);                 \
  /* out [O, I] int32: index of the first maximum along R of x [O, R, I]. Range: [0, O*I). */                          \
  void bpck_argmax_##S(int32_t *out, const T *x, int64_t O, int64_t R, int64_t I, int64_t begin, int64_t end);         \
  /* Per-row losses of cross_entropy: row_loss[r] = logsumexp(l[r]) - l[r, y[r]]. Range: rows.    \
     The mean is a separate sequential sum (bpck_sum_scale), so it is split-independent. */                    \
  void bpck_cross_entropy_rows_##S(T *row_loss, const T *logits, const int32_t *labels, int64_t rows, int64_t K,       \
                                   int64_t *status, int64_t begin, int64_t end);                                       \
  /* dlogits = (softmax(l) - onehot(y)) * gy[0] / rows. Range: rows. */                                                \
  void bpck_cross_entropy_grad_##S(T *dl, const T *logits, const int32_t *labels, const T *gy, int64_t rows,           \
                                   int64_t K, int64_t begin, int64_t end);                                             \
  /* linear_cross_entropy's pass over one row block of logits l [rows of the range, V] between   \
     its GEMMs (kernels_lce_t.h): per-row losses, and with gy (else NULL) l in place becomes      \
     d loss / d logits = (softmax - onehot) * gy[0] / total_rows. Range: rows of the block.       */                     \
  void bpck_lce_rows_##S(T *row_loss, T *l, const int32_t *labels, const T *gy, int64_t total_rows, int64_t V,         \
                         int64_t *status, int64_t begin, int64_t end);                                                 \
  /* Per-row correctness (1 or 0) of accuracy: argmax(l[r]) == y[r]. Range: rows. */                                   \
  void bpck_accuracy_rows_##S(T *row_hit, const T *logits, const int32_t *labels, int64_t rows, int64_t K,             \
                              int64_t begin, int64_t end);                                                             \
  /* partial[b] = sum of x^2 over block b (BPCK_SQ_BLOCK elements; the last may be shorter),      \
     lanes then folded in order: a block's sum does not depend on the split. Range: blocks. */                    \
  void bpck_sum_squares_blocks_##S(T *partial, const T *x, int64_t n, int64_t begin, int64_t end);                     \
  /* out[0] = scale * sum(x[0..n)), summed in index order (one thread). */                                             \
  void bpck_sum_scale_##S(T *out, const T *x, int64_t n, T scale);                                                     \
                                                                                                                       \
  /* Inverted dropout of x [n] with the counter-based draw of bpc.h: element i is kept when       \
     bpcrt_dropout_draw >= bpcrt_dropout_threshold(p) under bpcrt_dropout_key(seed, salt, step).  \
     Range: elements. */                    \
  void bpck_dropout_##S(T *out, const T *x, int64_t n, double p, uint64_t seed, uint64_t salt, uint64_t step,          \
                        int64_t begin, int64_t end);                                                                   \
  /* out[idx * out_strides] = in[idx * in_strides] over an index space `shape` of `rank` axes     \
     (strides in elements; 0 broadcasts). Transpose, slice, broadcast_to, concat and slice_grad   \
     are all this copy. Range: flat index over shape. */                    \
  /* slice's backward: out [O, D] row o = zeros, in [O, len] row o at columns [start, start +   \
     len), zeros. Range: rows. */                      \
  void bpck_window_##S(T *out, const T *in, int64_t D, int64_t start, int64_t len, int64_t begin, int64_t end);        \
  void bpck_strided_copy_##S(T *out, const int64_t *out_strides, const T *in, const int64_t *in_strides, int rank,     \
                             const int64_t *shape, int64_t begin, int64_t end);                                        \
  /* out[i] = v. Range: elements. */                                                                                   \
  void bpck_fill_##S(T *out, T v, int64_t begin, int64_t end);

BPCK_DECLARE(float, f32)
BPCK_DECLARE(double, f64)

// Mixed precision (SPEC 6.5): the products of matmul, attention and conv2d
// with bf16 operands and f32 sums, on f32 tensors (packing rounds each operand
// to bf16, nearest even, subnormals to zero). The same arguments, ranges and
// scratch sizes as the f32 kernels; bits depend on the shapes alone, as there.
// AVX512_BF16's vdpbf16ps where the CPU has it (and bpck_isa() is AVX512),
// otherwise the same sums with AVX2 FMAs; the two differ only where a sum is
// subnormal (the instruction flushes it).
float bpck_bf16_round(float x);  // x as the bf16 products read it
int bpck_bf16_native(void);      // 1: vdpbf16ps is in use
size_t bpck_gemm_scratch_bf16(int64_t M, int64_t N, int64_t K);
void bpck_gemm_bf16(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, int transa, const float *B,
                    int64_t ldb, int transb, float *C, int64_t ldc, int accumulate, float *scratch, int64_t begin,
                    int64_t end);
void bpck_gemm_cols_bf16(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, int transa, const float *B,
                         int64_t ldb, int transb, float *C, int64_t ldc, int accumulate, float *scratch, int64_t begin,
                         int64_t end);
size_t bpck_attention_scratch_bf16(int64_t Tq, int64_t Tk, int64_t hs);
void bpck_attention_bf16(float *out, const float *q, const float *k, const float *v, int64_t B, int64_t Tq, int64_t Tk,
                         int64_t C, int64_t H, int causal, const float *mask, int64_t ldi, float *scratch,
                         int64_t begin, int64_t end);
size_t bpck_attention_bwd_scratch_bf16(int64_t Tq, int64_t Tk, int64_t hs);
void bpck_attention_bwd_bf16(float *dq, float *dk, float *dv, const float *q, const float *k, const float *v,
                             const float *gy, int64_t B, int64_t Tq, int64_t Tk, int64_t C, int64_t H, int causal,
                             const float *mask, int64_t ldi, int64_t ldo, float *scratch, int64_t begin, int64_t end);
size_t bpck_conv2d_scratch_bf16(int which, int64_t W, int64_t Ci, int64_t KH, int64_t KW, int64_t Co, int64_t stride,
                                int64_t pad);
void bpck_conv2d_bf16(float *out, const float *x, const float *w, int64_t N, int64_t H, int64_t W, int64_t Ci,
                      int64_t KH, int64_t KW, int64_t Co, int64_t stride, int64_t pad, float *scratch, int64_t begin,
                      int64_t end);
void bpck_conv2d_dx_bf16(float *dx, const float *gy, const float *w, int64_t N, int64_t H, int64_t W, int64_t Ci,
                         int64_t KH, int64_t KW, int64_t Co, int64_t stride, int64_t pad, float *scratch, int64_t begin,
                         int64_t end);
void bpck_conv2d_dw_bf16(float *dw, const float *x, const float *gy, int64_t N, int64_t H, int64_t W, int64_t Ci,
                         int64_t KH, int64_t KW, int64_t Co, int64_t stride, int64_t pad, float *scratch, int64_t begin,
                         int64_t end);
#undef BPCK_DECLARE

// int32 versions of the data movers (ids and labels move through reshape,
// slice and concat too).
void bpck_strided_copy_i32(int32_t *out, const int64_t *out_strides, const int32_t *in, const int64_t *in_strides,
                           int rank, const int64_t *shape, int64_t begin, int64_t end);
void bpck_arange_i32(int32_t *out, int64_t begin, int64_t end);

// Cached sampling (runtime/kernels_decode.h): one new query [1, 1, C] over
// cache rows [0, pos) of kc, vc [Tc, C] and its own k, v, which it first
// stores as row pos; H heads of C/H channels (range: the heads); scratch
// holds Tc scores.
void bpck_attention_decode_f32(float *out, const float *q, const float *k, const float *v, float *kc, float *vc,
                               const int32_t *pos, int64_t Tc, int64_t C, int64_t H, float *scratch, int64_t begin,
                               int64_t end);
void bpck_attention_decode_f64(double *out, const double *q, const double *k, const double *v, double *kc, double *vc,
                               const int32_t *pos, int64_t Tc, int64_t C, int64_t H, double *scratch, int64_t begin,
                               int64_t end);
void bpck_attention_decode_bf16(float *out, const float *q, const float *k, const float *v, float *kc, float *vc,
                                const int32_t *pos, int64_t Tc, int64_t C, int64_t H, float *scratch, int64_t begin,
                                int64_t end);

#ifdef __cplusplus
}
#endif
