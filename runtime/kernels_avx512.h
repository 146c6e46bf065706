// kernels_avx512.h — the f32 GEMM on 512-bit vectors, included by kernels.c
// after the f32 instantiation of kernels_t.h; gemm_range_f32 hands it the
// work when bpck_isa() is BPCK_ISA_AVX512 (a CPU with AVX-512 F/VL/BW/DQ,
// and BPC_ISA not "avx2").
//
// Every function here carries the target attribute (K512, kernels.c): the file is
// compiled for a baseline without AVX-512 (x86-64-v3) and nothing here runs
// unless the dispatch chose it. GCC/Clang vector extensions only, as the rest
// of the library (in the embedded bitcode these functions are unreachable,
// since the bpck_ kernels calling them lose their bodies, and stay plain IR
// any target can compile).
//
// Same bits as the AVX2 path: the operands are packed by the same pack_a_f32
// (6-row slivers) and pack_b_f32 (16-column panels), K is cut into the same
// blocks (gemm_range_f32's nkb/kb rule, GEMM_KC), and each element of a
// block's product is one FMA chain over k in order starting from 0, added to
// C once (or stored, on the first block without accumulate). Only which
// elements share a register differs, never the operations on one element:
// MR, NR, MC and NC are free, K's blocking is not.
//
// The microkernel is 12 x 32 (24 accumulators of 16 lanes): the two 16-wide
// panels of B side by side, twelve broadcasts of A per k. Loops as
// gemm_block_f32 (a 32-column panel pair against every 12-row sliver of an
// MC block). NC = 384: a KC x NC block of B (576 KiB) and an MC x KC block
// of A (216 KiB) share a Zen 5 core's 1 MiB L2. Measured on Zen 5 against
// 6 x 32, 6 x 64, the other loop order and NC 256-1024 (docs/DECISIONS.md).

#define GEMM512_MR 12
#define GEMM512_NR 32
#define GEMM512_MC 144
#define GEMM512_NC 384

// The scratch of bpck_gemm_scratch_f32 (sized for the AVX2 blocking) holds this one's.
#if GEMM512_MC != GEMM_MC || GEMM512_NC > GEMM_NC || GEMM512_MC % GEMM512_MR || GEMM512_NC % GEMM512_NR
#error "the AVX-512 GEMM blocking must fit the AVX2 scratch"
#endif

typedef float v16f __attribute__((vector_size(64)));

// The C tile's rows (mr <= MR live, 16 NV columns) fetched while the k loop runs.
K512 static inline __attribute__((always_inline)) void prefetch512(int NV, float *c, int64_t ldc, int64_t mr) {
  for (int64_t r = 0; r < mr; r++) {
    __builtin_prefetch(c + r * ldc, 1);
    __builtin_prefetch(c + r * ldc + 16 * NV - 1, 1);
  }
}

// An MR x 16 NV tile of sums into C[mr, nr]: stored on the first K block,
// added after. Shared by the f32 tile here and the bf16 one (kernels_bf16.h).
K512 static inline __attribute__((always_inline)) void store512(int MR, int NV, v16f (*acc)[2], float *c, int64_t ldc,
                                                                int64_t mr, int64_t nr, int first) {
  if (mr == MR && nr == 16 * NV) {  // a whole tile: straight to C
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 2
      for (int v = 0; v < NV; v++) {
        float *cr = c + r * ldc + 16 * v;
        if (!first) {
          v16f t;
          memcpy(&t, cr, sizeof t);
          acc[r][v] += t;
        }
        memcpy(cr, &acc[r][v], sizeof(v16f));
      }
    return;
  }
  float tile[GEMM512_MR * GEMM512_NR];
#pragma GCC unroll 12
  for (int r = 0; r < MR; r++)
#pragma GCC unroll 2
    for (int v = 0; v < NV; v++) memcpy(tile + r * GEMM512_NR + 16 * v, &acc[r][v], sizeof(v16f));
  for (int64_t r = 0; r < mr; r++) {
    float *cr = c + r * ldc;
    const float *tr = tile + r * GEMM512_NR;
    if (first)
      for (int64_t j = 0; j < nr; j++) cr[j] = tr[j];
    else
      for (int64_t j = 0; j < nr; j++) cr[j] += tr[j];
  }
}

// C[mr, nr] (=|+=) op(A)'s MR rows (mr <= MR live) x NV 16-wide panels of B
// over kc (nr <= 16 NV live). Element (r, k) of A at a0[r * rs + k * cs] for
// r < 6 and a1[(r - 6) * rs + k * cs] after (two packed slivers, or A in
// place); panel v at b + v * bps, 16 floats per k. MR and NV are constants
// at every call, so the accumulators are registers.
K512 static inline __attribute__((always_inline)) void uk512(int MR, int NV, int64_t kc, const float *a0,
                                                             const float *a1, int64_t rs, int64_t cs, const float *b,
                                                             int64_t bps, float *c, int64_t ldc, int64_t mr, int64_t nr,
                                                             int first) {
  v16f acc[GEMM512_MR][2];
#pragma GCC unroll 12
  for (int r = 0; r < MR; r++)
#pragma GCC unroll 2
    for (int v = 0; v < NV; v++) acc[r][v] = (v16f){0};
  prefetch512(NV, c, ldc, mr);  // the C tile arrives while the loop runs
  for (int64_t k = 0; k < kc; k++, b += 16) {
    v16f bv[2];
#pragma GCC unroll 2
    for (int v = 0; v < NV; v++) memcpy(&bv[v], b + v * bps, sizeof(v16f));
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) {
      float ar = (r < 6 ? a0 : a1)[(r % 6) * rs + k * cs];
#pragma GCC unroll 2
      for (int v = 0; v < NV; v++) acc[r][v] += bv[v] * ar;  // one expression: an FMA
    }
  }
  store512(MR, NV, acc, c, ldc, mr, nr, first);
}

// The four shapes (12 or 6 rows, 32 or 16 columns), A packed (slivers of
// kc x 6, k-major) or read in place (row stride lda).
#define UK512_SHAPE(MR, NV)                                                                                       \
  K512 static void uk512_packed_##MR##x##NV(int64_t kc, const float *a, const float *b, int64_t bps, float *c,    \
                                            int64_t ldc, int64_t mr, int64_t nr, int first) {                     \
    uk512(MR, NV, kc, a, MR > 6 ? a + 6 * kc : a, 1, 6, b, bps, c, ldc, mr, nr, first);                           \
  }                                                                                                               \
  K512 static void uk512_direct_##MR##x##NV(int64_t kc, const float *a, int64_t lda, const float *b, int64_t bps, \
                                            float *c, int64_t ldc, int64_t mr, int64_t nr, int first) {           \
    uk512(MR, NV, kc, a, MR > 6 ? a + 6 * lda : a, lda, 1, b, bps, c, ldc, mr, nr, first);                        \
  }
UK512_SHAPE(12, 2)
UK512_SHAPE(12, 1)
UK512_SHAPE(6, 2)
UK512_SHAPE(6, 1)
#undef UK512_SHAPE

// One tile at C[ir.., jr..] of mr x nr: the shape that covers it.
K512 static void tile512(int64_t kc, const float *a, int64_t lda, int inplace, const float *b, int64_t bps, float *c,
                         int64_t ldc, int64_t mr, int64_t nr, int first) {
  int rows12 = mr > 6, cols32 = nr > 16;
  if (inplace) {
    if (rows12 && cols32)
      uk512_direct_12x2(kc, a, lda, b, bps, c, ldc, mr, nr, first);
    else if (rows12)
      uk512_direct_12x1(kc, a, lda, b, bps, c, ldc, mr, nr, first);
    else if (cols32)
      uk512_direct_6x2(kc, a, lda, b, bps, c, ldc, mr, nr, first);
    else
      uk512_direct_6x1(kc, a, lda, b, bps, c, ldc, mr, nr, first);
  } else {
    if (rows12 && cols32)
      uk512_packed_12x2(kc, a, b, bps, c, ldc, mr, nr, first);
    else if (rows12)
      uk512_packed_12x1(kc, a, b, bps, c, ldc, mr, nr, first);
    else if (cols32)
      uk512_packed_6x2(kc, a, b, bps, c, ldc, mr, nr, first);
    else
      uk512_packed_6x1(kc, a, b, bps, c, ldc, mr, nr, first);
  }
}

// gemm_block_f32 on these tiles: rows [begin, end) against a KC x NC block of
// B packed in 16-column panels pstride k apart. Whole 12-row tiles of a plain
// A are read in place unless its row stride is a multiple of 4 KiB; A^T and
// the rest are packed. (gemm_block_f32's limit, 1 KiB, measured 5-10% slower
// here at 6 KiB strides. At 4 KiB the 144 rows of an MC block fall in 16 of
// the L2's set groups, 9 lines a set beside the B block's 9 in 16 ways: 2
// threads on 1024 x 1024 ran at ~300 GFLOP/s in place against ~410 packed.)
K512 static void gemm512_block(const float *A, int64_t lda, int transa, const float *Bp, int64_t pstride, float *Ap,
                               float *C, int64_t ldc, int64_t jc, int64_t nc, int64_t pc, int64_t kc, int first,
                               int64_t begin, int64_t end) {
  int inplace = !transa && ((size_t)lda * sizeof(float)) % 4096 != 0;
  for (int64_t ic = begin; ic < end; ic += GEMM512_MC) {
    int64_t mc = KMIN(GEMM512_MC, end - ic), mfull = inplace ? mc / GEMM512_MR * GEMM512_MR : 0;
    if (mfull < mc) pack_a_f32(Ap, A, lda, transa, ic + mfull, mc - mfull, pc, kc);
    const float *A0 = A + ic * lda + pc;
    for (int64_t jr = 0; jr < nc; jr += GEMM512_NR)
      for (int64_t ir = 0; ir < mc; ir += GEMM512_MR) {
        int64_t mr = KMIN(GEMM512_MR, mc - ir), nr = KMIN(GEMM512_NR, nc - jr);
        int direct = ir < mfull;
        tile512(kc, direct ? A0 + ir * lda : Ap + (ir - mfull) * kc, lda, direct, Bp + jr * pstride, 16 * pstride,
                C + (ic + ir) * ldc + jc + jr, ldc, mr, nr, first);
      }
  }
}

// gemm_range_f32's loops on these tiles: the same K blocks; the range's
// columns in equal blocks of at most NC (whole tiles), so N = 640 is two
// blocks of 320, not 384 and 256.
K512 static void gemm512_range(int64_t N, int64_t K, const float *A, int64_t lda, int transa, const float *B,
                               int64_t ldb, int transb, float *C, int64_t ldc, int accumulate, float *scratch,
                               int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  int64_t nmax = KMIN((N + 15) / 16 * 16, GEMM512_NC);
  int64_t nkb = (K + GEMM_KC - 1) / GEMM_KC, kb = (K + nkb - 1) / nkb;  // as gemm_range_f32
  float *Bp = scratch, *Ap = scratch + KMIN(K, GEMM_KC) * nmax;
  int64_t nnb = (j1 - j0 + GEMM512_NC - 1) / GEMM512_NC;
  int64_t nb = KMIN(((j1 - j0 + nnb - 1) / nnb + GEMM512_NR - 1) / GEMM512_NR * GEMM512_NR, GEMM512_NC);
  for (int64_t jc = j0; jc < j1; jc += nb) {
    int64_t nc = KMIN(nb, j1 - jc);
    for (int64_t pc = 0; pc < K; pc += kb) {
      int64_t kc = KMIN(kb, K - pc);
      pack_b_f32(Bp, B, ldb, transb, pc, kc, jc, nc);
      gemm512_block(A, lda, transa, Bp, kc, Ap, C, ldc, jc, nc, pc, kc, pc == 0 && !accumulate, i0, i1);
    }
  }
}
