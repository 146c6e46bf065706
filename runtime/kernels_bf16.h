// kernels_bf16.h — the bf16 GEMM (SPEC 6.5: bf16 operands, f32 sums), included by
// kernels.c before the bf16 instantiation of kernels_t.h's products (attention,
// convolution), which call it by the names the f32 ones use (FN(...) with S = bf16).
//
// The interface is the f32 GEMM's: f32 A, B and C in memory, f32 scratch.
// Packing converts: each operand is rounded to bf16 (round to nearest even;
// a subnormal becomes a signed zero, as the hardware's dot product reads it;
// NaN stays NaN) and stored in pairs of consecutive k, one 32-bit word a pair
// (k even in the low half), which is what `vdpbf16ps` takes: A in slivers of
// 6 rows (word [p * 6 + r] = A[r, 2p..2p+1]), B in panels of 16 columns (word
// [p * 16 + c]); an odd K ends with a zero half.
//
// Two microkernels, the same bits: on a CPU with AVX512_BF16 (and BPC_ISA not
// "avx2") a 12 x 32 tile of `vdpbf16ps`, which per lane adds the odd product
// and then the even one, each rounded once (a product of two bf16 is exact in
// f32, so each step is an FMA; checked against that model on Zen 5: 0
// differences in 3.2M lanes, and 343k for the even-first order). Elsewhere
// (Zen 3, AVX-512 without BF16) a 6 x 16 AVX2 tile does the same two FMAs per
// pair in that order. The only difference: `vdpbf16ps` flushes a subnormal sum
// to zero. K is cut into the f32 GEMM's blocks (GEMM_KC, equal blocks), each
// block's sum starting from 0 and added to C once, so sums depend on K alone:
// any split of rows or columns gives the same bits.

#define BF_KC GEMM_KC
#define BF_MC 144
#define BF_NC 768  // 384 x 768 bf16 (576 KiB) of B and 144 x 384 (108 KiB) of A in a 1 MiB L2
#define BF_NC2 2048  // the AVX2 tile's NC (about half its f32 NC, 4080: the same bytes)

#if BF_MC % 12 || BF_NC % 32 || BF_NC2 % 16 || BF_MC > GEMM_MC || BF_NC2 > GEMM_NC
#error "the bf16 GEMM's blocking must fit the f32 scratch"
#endif

#define KBF16 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx512bf16")))

// Branch-free (selects), so the packing loops vectorize.
static inline __attribute__((always_inline)) uint32_t bf16_bits(float x) {
  uint32_t u = f2u(x), r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;  // nearest even
  r = (u & 0x7f800000u) == 0 ? (u >> 16) & 0x8000u : r;               // zero, subnormal: signed zero
  return (u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x40u : r;      // NaN: quiet
}
static inline __attribute__((always_inline)) uint32_t bf16_pair(float even, float odd) {
  return bf16_bits(even) | bf16_bits(odd) << 16;
}

typedef uint32_t v8u __attribute__((vector_size(32)));
typedef int32_t v8s32 __attribute__((vector_size(32)));
// bf16_bits on 8 lanes, in place (vectors never pass by value: kernels_t.h).
static inline __attribute__((always_inline)) void bf16_bits8(v8u *v) {
  v8u u = *v, r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  v8u z = (v8u)((u & 0x7f800000u) == 0), n = (v8u)((v8s32)(u & 0x7fffffffu) > (v8s32){0} + 0x7f800000);
  r = (z & ((u >> 16) & 0x8000u)) | (~z & r);
  *v = (n & ((u >> 16) | 0x40u)) | (~n & r);
}

// w = the 16 floats at r rounded and paired: word i = (r[2i], r[2i+1]).
static inline __attribute__((always_inline)) void bf_pairs16(v8u *w, const float *r) {
  v8u lo, hi;
  memcpy(&lo, r, sizeof lo);
  memcpy(&hi, r + 8, sizeof hi);
  bf16_bits8(&lo);
  bf16_bits8(&hi);
  *w = __builtin_shufflevector(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14) |
       __builtin_shufflevector(lo, hi, 1, 3, 5, 7, 9, 11, 13, 15) << 16;
}

// o[l][c] = w[c][l], 8 x 8 words: three rounds of two-input shuffles.
static inline __attribute__((always_inline)) void bf_transpose8(const v8u *w, v8u *o) {
  v8u t[8], u[8];
  for (int c = 0; c < 8; c += 2) {
    t[c] = __builtin_shufflevector(w[c], w[c + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    t[c + 1] = __builtin_shufflevector(w[c], w[c + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
  for (int c = 0; c < 8; c += 4)
    for (int e = 0; e < 2; e++) {
      u[c + 2 * e] = __builtin_shufflevector(t[c + e], t[c + e + 2], 0, 1, 8, 9, 4, 5, 12, 13);
      u[c + 2 * e + 1] = __builtin_shufflevector(t[c + e], t[c + e + 2], 2, 3, 10, 11, 6, 7, 14, 15);
    }
  for (int l = 0; l < 4; l++) {
    o[l] = __builtin_shufflevector(u[l], u[l + 4], 0, 1, 2, 3, 8, 9, 10, 11);
    o[l + 4] = __builtin_shufflevector(u[l], u[l + 4], 4, 5, 6, 7, 12, 13, 14, 15);
  }
}

// float f, rounded as the bf16 products read it (the interpreter's model of them).
float bpck_bf16_round(float x) { return u2f(bf16_bits(x) << 16); }

size_t bpck_gemm_scratch_bf16(int64_t M, int64_t N, int64_t K) { return bpck_gemm_scratch_f32(M, N, K); }

// Ap (slivers of 6 rows, pairs of k) = op(A)[i0 .. i0+mc, p0 .. p0+kc), rows past mc zero.
static void pack_a_bf16(uint32_t *Ap, const float *A, int64_t lda, int transa, int64_t i0, int64_t mc, int64_t p0,
                        int64_t kc) {
  int64_t kp = (kc + 1) / 2, ke = kc / 2;
  for (int64_t is = 0; is < mc; is += 6, Ap += 6 * kp) {
    int64_t mr = KMIN(6, mc - is);
    if (!transa) {
      int64_t p8 = mr == 6 ? kc / 16 * 8 : 0;
      for (int64_t q = 0; q < p8; q += 8) {  // 8 pairs of the six rows: paired, transposed in registers
        v8u w[8] = {{0}}, o[8];
        for (int r = 0; r < 6; r++) bf_pairs16(&w[r], A + (i0 + is + r) * lda + p0 + 2 * q);
        bf_transpose8(w, o);
        for (int l = 0; l < 8; l++) memcpy(Ap + (q + l) * 6, &o[l], 6 * sizeof(uint32_t));
      }
      for (int64_t r = 0; r < 6; r++) {
        const float *s = A + (i0 + is + r) * lda + p0;
        if (r >= mr) {
          for (int64_t p = 0; p < kp; p++) Ap[p * 6 + r] = 0;
          continue;
        }
        for (int64_t p = p8; p < ke; p++) Ap[p * 6 + r] = bf16_pair(s[2 * p], s[2 * p + 1]);
        if (kp > ke) Ap[ke * 6 + r] = bf16_pair(s[2 * ke], 0);
      }
    } else {  // op(A) = A^T: element (r, k) at A[(p0 + k) * lda + i0 + r]
      const float *s = A + p0 * lda + i0 + is;
      for (int64_t p = 0; p < kp; p++) {
        const float *s0 = s + 2 * p * lda, *s1 = s0 + lda;
        int odd = 2 * p + 1 < kc;
        for (int64_t r = 0; r < 6; r++) Ap[p * 6 + r] = r < mr ? bf16_pair(s0[r], odd ? s1[r] : 0) : 0;
      }
    }
  }
}

// Bp (panels of 16 columns, pairs of k; a panel is kp * 16 words) =
// op(B)[p0 .. p0+kc, j0 .. j0+nc), columns past nc zero.
static void pack_b_bf16(uint32_t *Bp, const float *B, int64_t ldb, int transb, int64_t p0, int64_t kc, int64_t j0,
                        int64_t nc) {
  int64_t kp = (kc + 1) / 2, full = nc / 16 * 16;
  if (!transb) {  // two rows of B at a time, read along (as pack_b_f32): 16-wide pieces to each panel
    for (int64_t p = 0; p < kp; p++) {
      const float *s0 = B + (p0 + 2 * p) * ldb + j0, *s1 = s0 + ldb;
      int odd = 2 * p + 1 < kc;
      uint32_t *d = Bp + p * 16;
      if (odd)
        for (int64_t js = 0; js < full; js += 16, d += 16 * kp)
          for (int h = 0; h < 16; h += 8) {
            v8u e, o;
            memcpy(&e, s0 + js + h, sizeof e);
            memcpy(&o, s1 + js + h, sizeof o);
            bf16_bits8(&e);
            bf16_bits8(&o);
            v8u w = e | o << 16;
            memcpy(d + h, &w, sizeof w);
          }
      else
        for (int64_t js = 0; js < full; js += 16, d += 16 * kp)
          for (int c = 0; c < 16; c++) d[c] = bf16_pair(s0[js + c], 0);
      if (full < nc)
        for (int c = 0; c < 16; c++) d[c] = full + c < nc ? bf16_pair(s0[full + c], odd ? s1[full + c] : 0) : 0;
    }
    return;
  }
  for (int64_t js = 0; js < nc; js += 16, Bp += 16 * kp) {  // op(B) = B^T: (k, c) at B[(j0 + js + c) * ldb + p0 + k]
    int64_t nr = KMIN(16, nc - js), p8 = nr == 16 ? kc / 16 * 8 : 0;
    // 16 k (8 pairs) of each of the 16 rows at a time: rounded, paired, and
    // transposed in registers as two 8 x 8 blocks of words.
    for (int64_t q = 0; q < p8; q += 8)
      for (int h = 0; h < 16; h += 8) {
        v8u w[8];
        for (int c = 0; c < 8; c++) bf_pairs16(&w[c], B + (j0 + js + h + c) * ldb + p0 + 2 * q);
        v8u o[8];
        bf_transpose8(w, o);
        for (int l = 0; l < 8; l++) memcpy(Bp + (q + l) * 16 + h, &o[l], sizeof o[l]);
      }
    for (int64_t c = 0; c < 16; c++) {
      const float *s = B + (j0 + js + c) * ldb + p0;
      int64_t p = p8;
      if (c < nr) {
        for (; 2 * p + 1 < kc; p++) Bp[p * 16 + c] = bf16_pair(s[2 * p], s[2 * p + 1]);
        if (p < kp) Bp[p * 16 + c] = bf16_pair(s[2 * p], 0), p++;
      }
      for (; p < kp; p++) Bp[p * 16 + c] = 0;
    }
  }
}

// A tile's sums into C: stored on the first K block, added after.
static inline __attribute__((always_inline)) void bf_tile_out(const float *tile, int64_t ldt, float *c, int64_t ldc,
                                                              int64_t mr, int64_t nr, int first) {
  for (int64_t r = 0; r < mr; r++) {
    float *cr = c + r * ldc;
    const float *tr = tile + r * ldt;
    if (first)
      for (int64_t j = 0; j < nr; j++) cr[j] = tr[j];
    else
      for (int64_t j = 0; j < nr; j++) cr[j] += tr[j];
  }
}

// ---- the AVX2 tile: 6 x 16, two FMAs a pair (odd k, then even) ----

static void bf_uk_avx2(int64_t kp, const uint32_t *a, const uint32_t *b, float *c, int64_t ldc, int64_t mr, int64_t nr,
                       int first) {
  v8f acc[6][2] = {{{0}}};
  const v8u hi = (v8u){0} + 0xffff0000u;
  for (int64_t p = 0; p < kp; p++, a += 6, b += 16) {
    v8u w0, w1;
    memcpy(&w0, b, sizeof w0);
    memcpy(&w1, b + 8, sizeof w1);
    v8f be0 = (v8f)(w0 << 16), bo0 = (v8f)(w0 & hi), be1 = (v8f)(w1 << 16), bo1 = (v8f)(w1 & hi);
#pragma GCC unroll 6
    for (int r = 0; r < 6; r++) {
      float ae = u2f(a[r] << 16), ao = u2f(a[r] & 0xffff0000u);
      acc[r][0] += bo0 * ao;
      acc[r][0] += be0 * ae;
      acc[r][1] += bo1 * ao;
      acc[r][1] += be1 * ae;
    }
  }
  if (mr == 6 && nr == 16) {
#pragma GCC unroll 6
    for (int r = 0; r < 6; r++)
      for (int v = 0; v < 2; v++) {
        float *cr = c + r * ldc + 8 * v;
        if (!first) {
          v8f t;
          memcpy(&t, cr, sizeof t);
          acc[r][v] += t;
        }
        memcpy(cr, &acc[r][v], sizeof(v8f));
      }
    return;
  }
  float tile[6 * 16];
  memcpy(tile, acc, sizeof tile);
  bf_tile_out(tile, 16, c, ldc, mr, nr, first);
}

static void bf_block_avx2(const float *A, int64_t lda, int transa, const uint32_t *Bp, int64_t pstride, uint32_t *Ap,
                          float *C, int64_t ldc, int64_t jc, int64_t nc, int64_t pc, int64_t kc, int first,
                          int64_t begin, int64_t end) {
  int64_t kp = (kc + 1) / 2, pp = (pstride + 1) / 2;
  for (int64_t ic = begin; ic < end; ic += BF_MC) {
    int64_t mc = KMIN(BF_MC, end - ic);
    pack_a_bf16(Ap, A, lda, transa, ic, mc, pc, kc);
    for (int64_t jr = 0; jr < nc; jr += 16)
      for (int64_t ir = 0; ir < mc; ir += 6)
        bf_uk_avx2(kp, Ap + ir * kp, Bp + jr * pp, C + (ic + ir) * ldc + jc + jr, ldc, KMIN(6, mc - ir),
                   KMIN(16, nc - jr), first);
  }
}

// ---- the AVX512_BF16 tile: 12 x 32 of vdpbf16ps ----
typedef short v32s __attribute__((vector_size(64)));
typedef int v16i __attribute__((vector_size(64)));

// MR (6 or 12) rows from one or two slivers, NV (1 or 2) panels of 16; the C
// tile moves as the f32 tile's does (prefetch512, store512: kernels_avx512.h).
KBF16 static inline __attribute__((always_inline)) void bf_uk512(int MR, int NV, int64_t kp, const uint32_t *a0,
                                                                 const uint32_t *a1, const uint32_t *b, int64_t bps,
                                                                 float *c, int64_t ldc, int64_t mr, int64_t nr,
                                                                 int first) {
  v16f acc[12][2];
#pragma GCC unroll 12
  for (int r = 0; r < MR; r++)
#pragma GCC unroll 2
    for (int v = 0; v < NV; v++) acc[r][v] = (v16f){0};
  prefetch512(NV, c, ldc, mr);
  for (int64_t p = 0; p < kp; p++, b += 16) {
    v32s bv[2];
#pragma GCC unroll 2
    for (int v = 0; v < NV; v++) memcpy(&bv[v], b + v * bps, 64);
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) {
      v32s av = (v32s)((v16i){0} + (int)(r < 6 ? a0 : a1)[p * 6 + r % 6]);
#pragma GCC unroll 2
      for (int v = 0; v < NV; v++) acc[r][v] = (v16f)_mm512_dpbf16_ps((__m512)acc[r][v], (__m512bh)av, (__m512bh)bv[v]);
    }
  }
  store512(MR, NV, acc, c, ldc, mr, nr, first);
}

#define BF_UK_SHAPE(MR, NV)                                                                                       \
  KBF16 static void bf_uk512_##MR##x##NV(int64_t kp, const uint32_t *a, const uint32_t *b, int64_t bps, float *c, \
                                         int64_t ldc, int64_t mr, int64_t nr, int first) {                        \
    bf_uk512(MR, NV, kp, a, MR > 6 ? a + 6 * kp : a, b, bps, c, ldc, mr, nr, first);                              \
  }
BF_UK_SHAPE(12, 2)
BF_UK_SHAPE(12, 1)
BF_UK_SHAPE(6, 2)
BF_UK_SHAPE(6, 1)
#undef BF_UK_SHAPE

KBF16 static void bf_block512(const float *A, int64_t lda, int transa, const uint32_t *Bp, int64_t pstride,
                              uint32_t *Ap, float *C, int64_t ldc, int64_t jc, int64_t nc, int64_t pc, int64_t kc,
                              int first, int64_t begin, int64_t end) {
  int64_t kp = (kc + 1) / 2, pp = (pstride + 1) / 2;
  for (int64_t ic = begin; ic < end; ic += BF_MC) {
    int64_t mc = KMIN(BF_MC, end - ic);
    pack_a_bf16(Ap, A, lda, transa, ic, mc, pc, kc);
    for (int64_t jr = 0; jr < nc; jr += 32)
      for (int64_t ir = 0; ir < mc; ir += 12) {
        int64_t mr = KMIN(12, mc - ir), nr = KMIN(32, nc - jr);
        const uint32_t *a = Ap + ir * kp, *b = Bp + jr * pp;
        float *c = C + (ic + ir) * ldc + jc + jr;
        if (mr > 6 && nr > 16)
          bf_uk512_12x2(kp, a, b, 16 * pp, c, ldc, mr, nr, first);
        else if (mr > 6)
          bf_uk512_12x1(kp, a, b, 16 * pp, c, ldc, mr, nr, first);
        else if (nr > 16)
          bf_uk512_6x2(kp, a, b, 16 * pp, c, ldc, mr, nr, first);
        else
          bf_uk512_6x1(kp, a, b, 16 * pp, c, ldc, mr, nr, first);
      }
  }
}

// Which tile: vdpbf16ps when the f32 GEMM is on AVX-512 (bpck_isa, so
// BPC_ISA=avx2 forces the AVX2 tile) and the CPU has AVX512_BF16 (read once).
static int bf_cpu = -1;
__attribute__((noinline)) static int bf_cpu_read(void) {
  int ok = 0;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  ok = __builtin_cpu_supports("avx512bf16");
#endif
  __atomic_store_n(&bf_cpu, ok, __ATOMIC_RELAXED);
  return ok;
}
int bpck_bf16_native(void) {
  int c = __atomic_load_n(&bf_cpu, __ATOMIC_RELAXED);
  return bpck_isa() == BPCK_ISA_AVX512 && (c >= 0 ? c : bf_cpu_read());
}

// gemm_block_f32's contract on bf16 packing: rows [begin, end) of C against
// a K block of B packed whole (panels pstride k apart), its columns [jc, jc+nc).
static void gemm_block_bf16(const float *A, int64_t lda, int transa, const uint32_t *Bp, int64_t pstride, uint32_t *Ap,
                            float *C, int64_t ldc, int64_t jc, int64_t nc, int64_t pc, int64_t kc, int first,
                            int64_t begin, int64_t end) {
  (bpck_bf16_native() ? bf_block512 : bf_block_avx2)(A, lda, transa, Bp, pstride, Ap, C, ldc, jc, nc, pc, kc, first,
                                                     begin, end);
}

// C[i0..i1, j0..j1) = op(A) @ op(B), gemm_range_f32's K blocks.
static void gemm_range_bf16(int64_t N, int64_t K, const float *A, int64_t lda, int transa, const float *B, int64_t ldb,
                            int transb, float *C, int64_t ldc, int accumulate, float *scratch, int64_t i0, int64_t i1,
                            int64_t j0, int64_t j1) {
  if (i0 >= i1 || j0 >= j1) return;
  if (K <= 0) {
    for (int64_t i = i0; !accumulate && i < i1; i++)
      for (int64_t j = j0; j < j1; j++) C[i * ldc + j] = 0;
    return;
  }
  int wide = bpck_bf16_native();  // the tile, once per call
  __typeof__(bf_block512) *block = wide ? bf_block512 : bf_block_avx2;
  int64_t NCb = wide ? BF_NC : BF_NC2, unit = wide ? 32 : 16;
  int64_t nkb = (K + BF_KC - 1) / BF_KC, kb = (K + nkb - 1) / nkb;
  int64_t nnb = (j1 - j0 + NCb - 1) / NCb;
  int64_t nb = KMIN(((j1 - j0 + nnb - 1) / nnb + unit - 1) / unit * unit, NCb);
  uint32_t *Bp = (uint32_t *)scratch;
  // B's block: kp words for each of nc (<= nb, <= N) columns rounded to 16;
  // within the f32 scratch's kc * (nc + mc) floats, as A's block after it.
  uint32_t *Ap = (uint32_t *)scratch + (KMIN(K, BF_KC) + 1) / 2 * ((KMIN(nb, N) + 15) / 16 * 16);
  for (int64_t jc = j0; jc < j1; jc += nb) {
    int64_t nc = KMIN(nb, j1 - jc);
    for (int64_t pc = 0; pc < K; pc += kb) {
      int64_t kc = KMIN(kb, K - pc);
      pack_b_bf16(Bp, B, ldb, transb, pc, kc, jc, nc);
      block(A, lda, transa, Bp, kc, Ap, C, ldc, jc, nc, pc, kc, pc == 0 && !accumulate, i0, i1);
    }
  }
}

void bpck_gemm_bf16(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, int transa, const float *B,
                    int64_t ldb, int transb, float *C, int64_t ldc, int accumulate, float *scratch, int64_t begin,
                    int64_t end) {
  (void)M;
  gemm_range_bf16(N, K, A, lda, transa, B, ldb, transb, C, ldc, accumulate, scratch, begin, end, 0, N);
}

void bpck_gemm_cols_bf16(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, int transa, const float *B,
                         int64_t ldb, int transb, float *C, int64_t ldc, int accumulate, float *scratch, int64_t begin,
                         int64_t end) {
  gemm_range_bf16(N, K, A, lda, transa, B, ldb, transb, C, ldc, accumulate, scratch, 0, M, begin, end);
}
