// kernels_t.h — the type-generic bodies of bpc_kernels.h, included by
// kernels.c once per element type. The includer defines T (float or double),
// S (f32 or f64), VL (lanes of a 32-byte vector), SQRT_T and the GEMM
// blocking GEMM_MR/NR/MC/KC/NC; the scalar math bpck_*_S is already defined.
// GEMM_WIDE, if defined, names a gemm_range with the same signature that
// takes the work when bpck_isa() is BPCK_ISA_AVX512 (f32 only).
//
// Determinism: every output element is owned by one index of the kernel's
// range and reduced in an order fixed by the shapes alone (never by begin or
// end), so any split of the range gives bit-identical results. Sums that are
// vectorized use a fixed lane layout per row, the same for every split.
// No function here takes or returns a vector by value (that would change
// the ABI between AVX and non-AVX builds); vectors move through memcpy.

#define KCAT2(a, b) a##_##b
#define KCAT(a, b) KCAT2(a, b)
#define FN(name) KCAT(name, S)
// The element type's own helpers (row sums, copies): S itself, except in the
// bf16 instantiation of the products (ES f32).
#ifndef ES
#define ES S
#endif
#define EFN(name) KCAT(name, ES)
// Packed operands of the products' GEMMs: elements of T, or pairs of bf16
// (kernels_bf16.h) when KT_PRODUCTS; PK_AT(Bp, k) is row k of a packed panel
// (k even for bf16).
#ifdef KT_PRODUCTS
#define PK_T uint32_t
#define PK_AT(Bp, k) ((Bp) + (k) / 2 * GEMM_NR)
#define KT_BF16 1
#else
#define PK_T T
#define PK_AT(Bp, k) ((Bp) + (k) * GEMM_NR)
#define KT_BF16 0
#endif
#define V FN(vec)
#define VM FN(vmask)
#define EXP_T FN(exp_in)
#define LOG_T FN(log_in)
#define VLOAD(v, p) memcpy(&(v), (p), sizeof(v))
#define VSTORE(p, v) memcpy((p), &(v), sizeof(v))
#define VAT(p)        \
  ({                  \
    V vat_;           \
    VLOAD(vat_, (p)); \
    vat_;             \
  })
#define KMIN(a, b) ((a) < (b) ? (a) : (b))
// Column chunk of the strided reductions ([O, R, I] with I > 1): per-column
// accumulators live on the stack, the loop over R runs outside.
#define CW 128

typedef T V __attribute__((vector_size(VL * sizeof(T))));
typedef __typeof__((V){0} > (V){0}) VM;  // a lane mask of V's width

#ifndef KT_PRODUCTS  // ---- everything but attention and convolution
// ============================================================ row helpers

// sum of x[0..n): 2*VL lane accumulators, lanes folded in order, then the tail.
static T FN(sum_row)(const T *x, int64_t n) {
  V a0 = {0}, a1 = {0}, x0, x1;
  int64_t i = 0;
  for (; i + 2 * VL <= n; i += 2 * VL) {
    VLOAD(x0, x + i);
    VLOAD(x1, x + i + VL);
    a0 += x0;
    a1 += x1;
  }
  a0 += a1;
  T s = 0;
  for (int l = 0; l < VL; l++) s += a0[l];
  for (; i < n; i++) s += x[i];
  return s;
}

// dot product of a[0..n) and b[0..n), lane layout as sum_row.
static T FN(dot)(const T *a, const T *b, int64_t n) {
  V s0 = {0}, s1 = {0}, a0, a1, b0, b1;
  int64_t i = 0;
  for (; i + 2 * VL <= n; i += 2 * VL) {
    VLOAD(a0, a + i);
    VLOAD(a1, a + i + VL);
    VLOAD(b0, b + i);
    VLOAD(b1, b + i + VL);
    s0 += a0 * b0;
    s1 += a1 * b1;
  }
  s0 += s1;
  T s = 0;
  for (int l = 0; l < VL; l++) s += s0[l];
  for (; i < n; i++) s += a[i] * b[i];
  return s;
}

// sum of (x - m)^2.
static T FN(sumsq_dev)(const T *x, int64_t n, T m) {
  V a0 = {0}, x0;
  int64_t i = 0;
  for (; i + VL <= n; i += VL) {
    VLOAD(x0, x + i);
    x0 -= m;
    a0 += x0 * x0;
  }
  T s = 0;
  for (int l = 0; l < VL; l++) s += a0[l];
  for (; i < n; i++) s += (x[i] - m) * (x[i] - m);
  return s;
}

// y[0..n) = exp(x * scale - shift); y may be x.
static void FN(exp_row)(T *y, const T *x, int64_t n, T scale, T shift) {
  int64_t i = 0;
#if HAVE_VEXP
  for (; i + VL <= n; i += VL) {
    V v;
    VLOAD(v, x + i);
    v = v * scale - shift;
    FN(vexp)(&v);
    VSTORE(y + i, v);
  }
#endif
  for (; i < n; i++) y[i] = EXP_T(x[i] * scale - shift);
}

// y = exp(x - shift) and its sum, in one pass; the sum in sum_row's order
// (without vector exp, f64: in index order).
static T FN(exp_sum_row)(T *y, const T *x, int64_t n, T shift) {
  V a0 = {0}, a1 = {0};
  int64_t i = 0;
#if HAVE_VEXP
  for (; i + 2 * VL <= n; i += 2 * VL) {
    V v0, v1;
    VLOAD(v0, x + i);
    VLOAD(v1, x + i + VL);
    v0 = v0 - shift;
    v1 = v1 - shift;
    FN(vexp)(&v0);
    FN(vexp)(&v1);
    VSTORE(y + i, v0);
    VSTORE(y + i + VL, v1);
    a0 += v0;
    a1 += v1;
  }
#endif
  a0 += a1;
  T s = 0;
  for (int l = 0; l < VL; l++) s += a0[l];
  for (; i < n; i++) s += y[i] = EXP_T(x[i] - shift);
  return s;
}

// sum of exp(x - m), VL at a time.
static T FN(sum_exp)(const T *x, int64_t n, T m) {
  V a0 = {0}, t0;
  T t[VL];
  int64_t i = 0;
  for (; i + VL <= n; i += VL) {
    FN(exp_row)(t, x + i, VL, 1, m);
    VLOAD(t0, t);
    a0 += t0;
  }
  T s = 0;
  for (int l = 0; l < VL; l++) s += a0[l];
  for (; i < n; i++) s += EXP_T(x[i] - m);
  return s;
}

// fmax semantics (a NaN is skipped unless all are NaN), as the interpreter's
// softmax and cross_entropy.
static inline T FN(fmax_acc)(T m, T v) { return v > m || m != m ? v : m; }

static T FN(fmax_row)(const T *x, int64_t n, int64_t st) {
  T m = x[0];
  int64_t k = 1;
  if (st == 1 && n >= 2 * VL) {  // lane-wise, then the lanes (the same rule, any order)
    V a, v;
    VLOAD(a, x);
    for (k = VL; k + VL <= n; k += VL) {
      VLOAD(v, x + k);
      VM take = (v > a) | (a != a);
      a = (V)(((VM)v & take) | ((VM)a & ~take));
    }
    for (int l = 0; l < VL; l++) m = FN(fmax_acc)(m, a[l]);
  }
  for (; k < n; k++) m = FN(fmax_acc)(m, x[k * st]);
  return m;
}

// max/min of a reduction: a NaN sticks (np.max).
static inline T FN(ext_acc)(T m, T v, int is_min) { return (is_min ? v < m : v > m) || (v != v && m == m) ? v : m; }

// First maximum; a NaN wins (np.argmax), as the interpreter's argmax_strided.
static int64_t FN(argmax_row)(const T *x, int64_t n, int64_t st) {
  int64_t best = 0;
  for (int64_t k = 1; k < n; k++) {
    if (x[best * st] != x[best * st]) break;
    if (x[k * st] > x[best * st] || x[k * st] != x[k * st]) best = k;
  }
  return best;
}

// Sets the status words on the first problem (one winner across threads).
static void FN(report)(int64_t *status, int64_t code, int64_t bad, int64_t limit) {
  int64_t zero = 0;
  if (status && __atomic_compare_exchange_n(&status[0], &zero, code, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    status[1] = bad;
    status[2] = limit;
  }
}

// d[0..n) = s[0..n), or zeros when s is NULL: the short runs of im2col (a
// pixel's channels), inline; memcpy with a run-time length is a libc call.
static inline void FN(copy_run)(T *d, const T *s, int64_t n) {
  int64_t i = 0;
  V v = {0};
  for (; i + VL <= n; i += VL) {
    if (s) VLOAD(v, s + i);
    VSTORE(d + i, v);
  }
  for (; i < n; i++) d[i] = s ? s[i] : 0;
}

// ============================================================ GEMM
// BLIS structure: for each NC block of columns and KC block of k, op(B) is
// packed into KC x NR panels; for each MC block of the caller's rows, op(A)
// is packed into MR-row slivers (k-major); the MR x NR microkernel keeps the
// C tile in 2*MR vector accumulators and adds it to C once per KC block. The
// k order and KC blocking depend only on K, so each C element's sum is the
// same whatever rows a range holds.

size_t FN(bpck_gemm_scratch)(int64_t M, int64_t N, int64_t K) {
  int64_t kc = KMIN(K, GEMM_KC), nc = KMIN((N + GEMM_NR - 1) / GEMM_NR * GEMM_NR, GEMM_NC);
  int64_t mc = KMIN((M + GEMM_MR - 1) / GEMM_MR * GEMM_MR, GEMM_MC);
  return kc > 0 ? (size_t)(kc * (nc + mc)) : 1;
}

// o[l][c] = r[c][l] for VL x VL: three rounds of two-input shuffles.
#define SHUF __builtin_shufflevector
#if VL == 8
#define TRANSPOSE_VL(r, o)                                                                    \
  {                                                                                           \
    V t_[8], u_[8];                                                                           \
    for (int p_ = 0; p_ < 8; p_ += 2) {                                                       \
      t_[p_] = SHUF(r[p_], r[p_ + 1], 0, 8, 1, 9, 4, 12, 5, 13);                              \
      t_[p_ + 1] = SHUF(r[p_], r[p_ + 1], 2, 10, 3, 11, 6, 14, 7, 15);                        \
    }                                                                                         \
    for (int p_ = 0; p_ < 8; p_ += 4)                                                         \
      for (int q_ = 0; q_ < 2; q_++) {                                                        \
        u_[p_ + 2 * q_] = SHUF(t_[p_ + q_], t_[p_ + q_ + 2], 0, 1, 8, 9, 4, 5, 12, 13);       \
        u_[p_ + 2 * q_ + 1] = SHUF(t_[p_ + q_], t_[p_ + q_ + 2], 2, 3, 10, 11, 6, 7, 14, 15); \
      }                                                                                       \
    for (int l_ = 0; l_ < 4; l_++) {                                                          \
      o[l_] = SHUF(u_[l_], u_[l_ + 4], 0, 1, 2, 3, 8, 9, 10, 11);                             \
      o[l_ + 4] = SHUF(u_[l_], u_[l_ + 4], 4, 5, 6, 7, 12, 13, 14, 15);                       \
    }                                                                                         \
  }
#elif VL == 4
#define TRANSPOSE_VL(r, o)                                                    \
  {                                                                           \
    V t0_ = SHUF(r[0], r[1], 0, 4, 2, 6), t1_ = SHUF(r[0], r[1], 1, 5, 3, 7); \
    V t2_ = SHUF(r[2], r[3], 0, 4, 2, 6), t3_ = SHUF(r[2], r[3], 1, 5, 3, 7); \
    o[0] = SHUF(t0_, t2_, 0, 1, 4, 5);                                        \
    o[2] = SHUF(t0_, t2_, 2, 3, 6, 7);                                        \
    o[1] = SHUF(t1_, t3_, 0, 1, 4, 5);                                        \
    o[3] = SHUF(t1_, t3_, 2, 3, 6, 7);                                        \
  }
#else
#error "TRANSPOSE_VL: VL 4 or 8"
#endif

// Ap (slivers of kc x MR, k-major) = op(A)[i0 .. i0+mc, p0 .. p0+kc), rows past mc zero.
static void FN(pack_a)(T *Ap, const T *A, int64_t lda, int transa, int64_t i0, int64_t mc, int64_t p0, int64_t kc) {
  for (int64_t is = 0; is < mc; is += GEMM_MR, Ap += GEMM_MR * kc) {
    int64_t mr = KMIN(GEMM_MR, mc - is);
    if (!transa && mr == GEMM_MR) {  // six rows, VL k at a time: loads along k, stores in order
      // (an 8 x 8 register transpose here, tried in session 5, made gpt_poetry's
      // step ~10% slower: GCC keeps the blocks on the stack)
      const T *s0 = A + (i0 + is) * lda + p0;
      int64_t k = 0;
      for (; k + VL <= kc; k += VL) {
        V r0, r1, r2, r3, r4, r5;
        VLOAD(r0, s0 + k);
        VLOAD(r1, s0 + lda + k);
        VLOAD(r2, s0 + 2 * lda + k);
        VLOAD(r3, s0 + 3 * lda + k);
        VLOAD(r4, s0 + 4 * lda + k);
        VLOAD(r5, s0 + 5 * lda + k);
        T *d = Ap + k * GEMM_MR;
        for (int l = 0; l < VL; l++) {
          d[l * GEMM_MR + 0] = r0[l];
          d[l * GEMM_MR + 1] = r1[l];
          d[l * GEMM_MR + 2] = r2[l];
          d[l * GEMM_MR + 3] = r3[l];
          d[l * GEMM_MR + 4] = r4[l];
          d[l * GEMM_MR + 5] = r5[l];
        }
      }
      for (; k < kc; k++)
        for (int64_t r = 0; r < GEMM_MR; r++) Ap[k * GEMM_MR + r] = s0[r * lda + k];
    } else if (!transa) {
      for (int64_t r = 0; r < GEMM_MR; r++) {
        const T *s = A + (i0 + is + r) * lda + p0;
        for (int64_t k = 0; k < kc; k++) Ap[k * GEMM_MR + r] = r < mr ? s[k] : 0;
      }
    } else if (mr == GEMM_MR) {  // op(A) = A^T: each k's six values are adjacent
      const T *s = A + p0 * lda + i0 + is;
      for (int64_t k = 0; k < kc; k++, s += lda) memcpy(Ap + k * GEMM_MR, s, GEMM_MR * sizeof(T));
    } else {
      for (int64_t k = 0; k < kc; k++) {
        const T *s = A + (p0 + k) * lda + i0 + is;
        for (int64_t r = 0; r < GEMM_MR; r++) Ap[k * GEMM_MR + r] = r < mr ? s[r] : 0;
      }
    }
  }
}

// Bp (panels of kc x NR, k-major) = op(B)[p0 .. p0+kc, j0 .. j0+nc), columns past nc zero.
static void FN(pack_b)(T *Bp, const T *B, int64_t ldb, int transb, int64_t p0, int64_t kc, int64_t j0, int64_t nc) {
  int64_t full = nc / GEMM_NR * GEMM_NR;
  if (!transb) {  // row by row of B: one contiguous read, NR-wide pieces to each panel
    for (int64_t k = 0; k < kc; k++) {
      const T *s = B + (p0 + k) * ldb + j0;
      T *d = Bp + k * GEMM_NR;
      for (int64_t js = 0; js < full; js += GEMM_NR, d += GEMM_NR * kc) {
        V x0, x1;
        VLOAD(x0, s + js);
        VLOAD(x1, s + js + VL);
        VSTORE(d, x0);
        VSTORE(d + VL, x1);
      }
      if (full < nc)
        for (int64_t c = 0; c < GEMM_NR; c++) d[c] = full + c < nc ? s[full + c] : 0;
    }
    return;
  }
  // op(B) = B^T: NR rows of B, VL k at a time, as VL x VL blocks transposed
  // in registers (shuffles, no element-wise stores).
  for (int64_t js = 0; js < nc; js += GEMM_NR, Bp += GEMM_NR * kc) {
    int64_t nr = KMIN(GEMM_NR, nc - js);
    const T *s = B + (j0 + js) * ldb + p0;
    int64_t k = 0;
    if (nr == GEMM_NR)
      for (; k + VL <= kc; k += VL) {
        T *d = Bp + k * GEMM_NR;
        if (k % (64 / sizeof(T)) == 0)  // NR row streams: each row's line four lines ahead
          for (int c = 0; c < GEMM_NR; c++)  // an address, maybe past B: formed as an integer
            __builtin_prefetch((const void *)((uintptr_t)(s + c * ldb + k) + 256));
        for (int h = 0; h < GEMM_NR; h += VL) {
          V r[VL], o[VL];
          for (int c = 0; c < VL; c++) VLOAD(r[c], s + (h + c) * ldb + k);
          TRANSPOSE_VL(r, o);
          for (int l = 0; l < VL; l++) VSTORE(d + l * GEMM_NR + h, o[l]);
        }
      }
    for (; k < kc; k++)
      for (int64_t c = 0; c < GEMM_NR; c++) Bp[k * GEMM_NR + c] = c < nr ? s[c * ldb + k] : 0;
  }
}

#if GEMM_MR != 6 || GEMM_NR != 2 * VL
#error "the microkernel is written for MR = 6, NR = 2 vectors"
#endif

// C[mr, nr] (=|+=) a-sliver x b-panel over kc. One expression per update
// (`c += b * a`) so clang contracts it to an FMA.
#define UK_ROW(r)       \
  {                     \
    T ar = a##r[ka];    \
    c##r##0 += b0 * ar; \
    c##r##1 += b1 * ar; \
  }
#define UK_STORE(r)                    \
  VSTORE(tile + r * GEMM_NR, c##r##0); \
  VSTORE(tile + r * GEMM_NR + VL, c##r##1);

#define UK_FULL(r)            \
  {                           \
    T *cr = c + r * ldc;      \
    if (!first) {             \
      V t0, t1;               \
      VLOAD(t0, cr);          \
      VLOAD(t1, cr + VL);     \
      c##r##0 += t0;          \
      c##r##1 += t1;          \
    }                         \
    VSTORE(cr, c##r##0);      \
    VSTORE(cr + VL, c##r##1); \
  }

// op(A)'s sliver is read in place: element (r, k) at a[r * rsa + k * csa]
// (a packed sliver: rsa 1, csa MR; A itself: rsa lda, csa 1; A^T: rsa 1, csa lda).
// Inlined into two callers below with (rsa, csa) constant for the packed
// form: its six loads are then offsets of one pointer.
static inline __attribute__((always_inline)) void FN(ukernel_t)(int64_t kc, const T *a, int64_t rsa, int64_t csa,
                                                                const T *b, T *c, int64_t ldc, int64_t mr, int64_t nr,
                                                                int first) {
  const T *a0 = a, *a1 = a + rsa, *a2 = a + 2 * rsa, *a3 = a + 3 * rsa, *a4 = a + 4 * rsa, *a5 = a + 5 * rsa;
  V c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0};
  V c30 = {0}, c31 = {0}, c40 = {0}, c41 = {0}, c50 = {0}, c51 = {0};
  V b0, b1;
  for (int64_t r = 0; r < mr; r++) {  // the C tile arrives while the loop runs
    __builtin_prefetch(c + r * ldc, 1);
    __builtin_prefetch(c + r * ldc + GEMM_NR - 1, 1);
  }
  for (int64_t k = 0, ka = 0; k < kc; k++, ka += csa, b += GEMM_NR) {
    VLOAD(b0, b);
    VLOAD(b1, b + VL);
    UK_ROW(0) UK_ROW(1) UK_ROW(2) UK_ROW(3) UK_ROW(4) UK_ROW(5)
  }
  if (mr == GEMM_MR && nr == GEMM_NR) {  // a whole tile: straight to C
    UK_FULL(0) UK_FULL(1) UK_FULL(2) UK_FULL(3) UK_FULL(4) UK_FULL(5) return;
  }
  T tile[GEMM_MR * GEMM_NR];
  UK_STORE(0) UK_STORE(1) UK_STORE(2) UK_STORE(3) UK_STORE(4) UK_STORE(5) for (int64_t r = 0; r < mr; r++) {
    T *cr = c + r * ldc;
    const T *tr = tile + r * GEMM_NR;
    if (first)
      for (int64_t j = 0; j < nr; j++) cr[j] = tr[j];
    else
      for (int64_t j = 0; j < nr; j++) cr[j] += tr[j];
  }
}
#undef UK_FULL
#undef UK_ROW
#undef UK_STORE

static void FN(ukernel_packed)(int64_t kc, const T *a, const T *b, T *c, int64_t ldc, int64_t mr, int64_t nr,
                               int first) {
  FN(ukernel_t)(kc, a, 1, GEMM_MR, b, c, ldc, mr, nr, first);
}

static void FN(ukernel_direct)(int64_t kc, const T *a, int64_t lda, const T *b, T *c, int64_t ldc, int64_t mr,
                               int64_t nr, int first) {
  FN(ukernel_t)(kc, a, lda, 1, b, c, ldc, mr, nr, first);
}

// One KC x NC block of B against the rows [begin, end): MC blocks of A.
// Bp's panels are pstride k apart (kc when packed for this block; more when
// the block reads the first kc of longer panels, as attention does).
static void FN(gemm_block)(const T *A, int64_t lda, int transa, const T *Bp, int64_t pstride, T *Ap, T *C, int64_t ldc,
                           int64_t jc, int64_t nc, int64_t pc, int64_t kc, int first, int64_t begin, int64_t end) {
  // Whole slivers of a plain A are read in place (six rows, each along k:
  // the same lines a packed sliver would fill) unless the row stride is a
  // multiple of 1 KiB, whose rows would crowd a few L1 sets (32 KiB, 8-way:
  // 64 sets of 64 B). A^T, whose sliver spans a line per k, and a last
  // partial sliver (zero rows past the end) are packed.
  int inplace = !transa && ((size_t)lda * sizeof(T)) % 1024 != 0;
  for (int64_t ic = begin; ic < end; ic += GEMM_MC) {
    int64_t mc = KMIN(GEMM_MC, end - ic), mfull = inplace ? mc / GEMM_MR * GEMM_MR : 0;
    if (mfull < mc) FN(pack_a)(Ap, A, lda, transa, ic + mfull, mc - mfull, pc, kc);
    const T *A0 = A + ic * lda + pc;
    for (int64_t jr = 0; jr < nc; jr += GEMM_NR)
      for (int64_t ir = 0; ir < mc; ir += GEMM_MR) {
        T *c = C + (ic + ir) * ldc + jc + jr;
        int64_t mr = KMIN(GEMM_MR, mc - ir), nr = KMIN(GEMM_NR, nc - jr);
        if (ir < mfull)
          FN(ukernel_direct)(kc, A0 + ir * lda, lda, Bp + jr * pstride, c, ldc, mr, nr, first);
        else
          FN(ukernel_packed)(kc, Ap + (ir - mfull) * kc, Bp + jr * pstride, c, ldc, mr, nr, first);
      }
  }
}

#if BPCK_GEMM_ROW_UNIT % GEMM_MR || BPCK_GEMM_COL_UNIT % GEMM_NR
#error "the GEMM split units must be whole tiles"
#endif

// C[i0..i1, j0..j1) of (M,N) = (M,K) @ (K,N).
static void FN(gemm_range)(int64_t N, int64_t K, const T *A, int64_t lda, int transa, const T *B, int64_t ldb,
                           int transb, T *C, int64_t ldc, int accumulate, T *scratch, int64_t i0, int64_t i1,
                           int64_t j0, int64_t j1) {
  if (i0 >= i1 || j0 >= j1) return;
  if (K <= 0) {
    for (int64_t i = i0; !accumulate && i < i1; i++)
      for (int64_t j = j0; j < j1; j++) C[i * ldc + j] = 0;
    return;
  }
#ifdef GEMM_WIDE  // the includer's AVX-512 path: the same K blocks and sums (kernels_avx512.h)
  if (bpck_isa() == BPCK_ISA_AVX512) {
    GEMM_WIDE(N, K, A, lda, transa, B, ldb, transb, C, ldc, accumulate, scratch, i0, i1, j0, j1);
    return;
  }
#endif
  int64_t nmax = KMIN((N + GEMM_NR - 1) / GEMM_NR * GEMM_NR, GEMM_NC);
  // K in equal blocks of at most KC (784 = 392 + 392, not 384 + 384 + 16): a
  // short last block pays the C tile's load and store for little work.
  int64_t nkb = (K + GEMM_KC - 1) / GEMM_KC, kb = (K + nkb - 1) / nkb;
  T *Bp = scratch, *Ap = scratch + KMIN(K, GEMM_KC) * nmax;
  for (int64_t jc = j0; jc < j1; jc += GEMM_NC) {
    int64_t nc = KMIN(GEMM_NC, j1 - jc);
    for (int64_t pc = 0; pc < K; pc += kb) {
      int64_t kc = KMIN(kb, K - pc);
      FN(pack_b)(Bp, B, ldb, transb, pc, kc, jc, nc);
      FN(gemm_block)(A, lda, transa, Bp, kc, Ap, C, ldc, jc, nc, pc, kc, pc == 0 && !accumulate, i0, i1);
    }
  }
}

// (M,N) = (M,K) @ (K,N), rows [begin, end)
void FN(bpck_gemm)(int64_t M, int64_t N, int64_t K, const T *A, int64_t lda, int transa, const T *B, int64_t ldb,
                   int transb, T *C, int64_t ldc, int accumulate, T *scratch, int64_t begin, int64_t end) {
  (void)M;
  FN(gemm_range)(N, K, A, lda, transa, B, ldb, transb, C, ldc, accumulate, scratch, begin, end, 0, N);
}

// (M,N) = (M,K) @ (K,N), columns [begin, end)
void FN(bpck_gemm_cols)(int64_t M, int64_t N, int64_t K, const T *A, int64_t lda, int transa, const T *B, int64_t ldb,
                        int transb, T *C, int64_t ldc, int accumulate, T *scratch, int64_t begin, int64_t end) {
  FN(gemm_range)(N, K, A, lda, transa, B, ldb, transb, C, ldc, accumulate, scratch, 0, M, begin, end);
}

// A summand kept whole: contraction into an FMA with the sum would differ
// between a vector lane and the scalar tail, and so between splits.
#ifdef __clang__
#define NOFMA(x) __arithmetic_fence(x)
#else
#define NOFMA(x) __builtin_assoc_barrier(x)
#endif

// Column sums over N rows (row stride C) of w <= CW columns: even and odd
// rows in two accumulators per column, added at the end. A vector lane and
// the scalar tail add in the same order, so a column's sum does not depend
// on which columns share its range. The rows stream in order (each row's w
// columns at once, the accumulators in L1): a column at a time would walk
// the rows with stride C once per vector, reading every line twice. TERM(r,
// c) is the summand of row r, column c; TERM2 a second sum when `two`.
#define COL_SUMS(s1, s2, two, N, C, w, TERMV, TERMV2, TERM, TERM2)                 \
  {                                                                                \
    int64_t nv_ = (w) / VL, wv_ = nv_ * VL;                                        \
    V A0_[CW / VL], A1_[CW / VL], B0_[CW / VL], B1_[CW / VL];                      \
    for (int64_t q = 0; q < nv_; q++) A0_[q] = A1_[q] = B0_[q] = B1_[q] = (V){0};  \
    int64_t r = 0;                                                                 \
    for (; r + 2 <= (N); r += 2)                                                   \
      for (int64_t q = 0, c = 0; q < nv_; q++, c += VL) {                          \
        A0_[q] += NOFMA(TERMV(r, c)), A1_[q] += NOFMA(TERMV(r + 1, c));            \
        if (two) B0_[q] += NOFMA(TERMV2(r, c)), B1_[q] += NOFMA(TERMV2(r + 1, c)); \
      }                                                                            \
    if (r < (N))                                                                   \
      for (int64_t q = 0, c = 0; q < nv_; q++, c += VL) {                          \
        A0_[q] += NOFMA(TERMV(r, c));                                              \
        if (two) B0_[q] += NOFMA(TERMV2(r, c));                                    \
      }                                                                            \
    for (int64_t q = 0; q < nv_; q++) {                                            \
      V sa_ = A0_[q] + A1_[q], sb_ = B0_[q] + B1_[q];                              \
      VSTORE((s1) + q * VL, sa_);                                                  \
      if (two) VSTORE((s2) + q * VL, sb_);                                         \
    }                                                                              \
    /* the tail (< VL columns) a column at a time, rows inside: a loop over   */   \
    /* columns here could be vectorized and contracted differently            */   \
    for (int64_t c = wv_; c < (w); c++) {                                          \
      T a0 = 0, a1 = 0, b0 = 0, b1 = 0;                                            \
      int64_t r2 = 0;                                                              \
      for (; r2 + 2 <= (N); r2 += 2) {                                             \
        a0 += NOFMA(TERM(r2, c)), a1 += NOFMA(TERM(r2 + 1, c));                    \
        if (two) b0 += NOFMA(TERM2(r2, c)), b1 += NOFMA(TERM2(r2 + 1, c));         \
      }                                                                            \
      if (r2 < (N)) {                                                              \
        a0 += NOFMA(TERM(r2, c));                                                  \
        if (two) b0 += NOFMA(TERM2(r2, c));                                        \
      }                                                                            \
      (s1)[c] = a0 + a1;                                                           \
      if (two) (s2)[c] = b0 + b1;                                                  \
    }                                                                              \
  }

// A vector load as an expression (a macro: vectors never pass by value).

// sum over rows of x[r, c] (row stride C), c < w.
static void FN(col_sum)(T *s, const T *x, int64_t N, int64_t C, int64_t w) {
  T unused[CW];
#define TV(r, c) VAT(x + (r) * C + (c))
#define TS(r, c) x[(r) * C + (c)]
#define ZV(r, c) ((V){0})
#define ZS(r, c) ((T)0)
  COL_SUMS(s, unused, 0, N, C, w, TV, ZV, TS, ZS)
#undef TV
#undef TS
}

// ============================================================ reductions

// One contiguous row (I == 1) of a reduction.
static T FN(reduce_row)(int kind, const T *x, int64_t R) {
  T m;
  switch (kind) {
  case BPCK_SUM: return FN(sum_row)(x, R);
  case BPCK_MEAN: return FN(sum_row)(x, R) / (T)R;
  case BPCK_VAR: return FN(sumsq_dev)(x, R, FN(sum_row)(x, R) / (T)R) / (T)R;
  case BPCK_MAX:
  case BPCK_MIN:
  case BPCK_LOGSUMEXP:
    m = x[0];
    for (int64_t r = 1; r < R; r++) m = FN(ext_acc)(m, x[r], kind == BPCK_MIN);
    if (kind != BPCK_LOGSUMEXP || !__builtin_isfinite(m)) return m;
    return m + LOG_T(FN(sum_exp)(x, R, m));
  }
  return 0;
}

// w columns of one outer index: x points at [o, 0, i0] (row stride I), out at [o, i0].
// Sequential along R per column, vectorizable along the columns.
static void FN(reduce_cols)(int kind, T *out, const T *x, int64_t R, int64_t I, int64_t w) {
  T m[CW], acc[CW];
  if (kind == BPCK_SUM || kind == BPCK_MEAN || kind == BPCK_VAR) {
    FN(col_sum)(m, x, R, I, w);
  } else {
    for (int64_t i = 0; i < w; i++) m[i] = x[i];
    for (int64_t r = 1; r < R; r++)
      for (int64_t i = 0; i < w; i++) m[i] = FN(ext_acc)(m[i], x[r * I + i], kind == BPCK_MIN);
  }
  if (kind == BPCK_SUM || kind == BPCK_MAX || kind == BPCK_MIN) {
    for (int64_t i = 0; i < w; i++) out[i] = m[i];
    return;
  }
  if (kind == BPCK_MEAN) {
    for (int64_t i = 0; i < w; i++) out[i] = m[i] / (T)R;
    return;
  }
  for (int64_t i = 0; i < w; i++) acc[i] = 0;
  for (int64_t r = 0; r < R; r++) {
    const T *xr = x + r * I;
    if (kind == BPCK_VAR)
      for (int64_t i = 0; i < w; i++) {
        T d = xr[i] - m[i] / (T)R;
        acc[i] += d * d;
      }
    else
      for (int64_t i = 0; i < w; i++) acc[i] += __builtin_isfinite(m[i]) ? EXP_T(xr[i] - m[i]) : 0;
  }
  for (int64_t i = 0; i < w; i++)
    out[i] = kind == BPCK_VAR ? acc[i] / (T)R : __builtin_isfinite(m[i]) ? m[i] + LOG_T(acc[i]) : m[i];
}

// Calls body(o, i0, w) over the output range [begin, end) of an [O, I]
// result, in column chunks of at most CW that never cross an outer index.
#define FOR_COL_CHUNKS(I, begin, end, body)                      \
  for (int64_t idx_ = (begin); idx_ < (end);) {                  \
    int64_t o = idx_ / (I), i0 = idx_ % (I);                     \
    int64_t w = KMIN(KMIN((I) - i0, (end) - idx_), (int64_t)CW); \
    body;                                                        \
    idx_ += w;                                                   \
  }

// (O,R,I) -> (O,I)
void FN(bpck_reduce)(int kind, T *out, const T *in, int64_t O, int64_t R, int64_t I, int64_t begin, int64_t end) {
  (void)O;
  if (I == 1) {
    for (int64_t o = begin; o < end; o++) out[o] = FN(reduce_row)(kind, in + o * R, R);
    return;
  }
  FOR_COL_CHUNKS(I, begin, end, FN(reduce_cols)(kind, out + o * I + i0, in + o * R * I + i0, R, I, w))
}

// First extremal element of each column (strict comparison, as interp_grad).
static void FN(maxmin_cols)(T *dx, const T *x, const T *gy, int64_t R, int64_t I, int64_t w, int is_min) {
  int64_t best[CW];
  for (int64_t i = 0; i < w; i++) best[i] = 0;
  for (int64_t r = 1; r < R; r++)
    for (int64_t i = 0; i < w; i++) {
      T v = x[r * I + i], b = x[best[i] * I + i];
      if (is_min ? v < b : v > b) best[i] = r;
    }
  for (int64_t r = 0; r < R; r++)
    for (int64_t i = 0; i < w; i++) dx[r * I + i] = r == best[i] ? gy[i] : 0;
}

// (O,R,I), gy (O,I) -> dx (O,R,I)
void FN(bpck_maxmin_grad)(T *dx, const T *x, const T *gy, int64_t O, int64_t R, int64_t I, int is_min, int64_t begin,
                          int64_t end) {
  (void)O;
  FOR_COL_CHUNKS(I, begin, end,
                 FN(maxmin_cols)(dx + o * R * I + i0, x + o * R * I + i0, gy + o * I + i0, R, I, w, is_min))
}

static void FN(softmax_row)(T *y, const T *x, int64_t n, int log) {
  T m = FN(fmax_row)(x, n, 1);
  FN(exp_row)(y, x, n, 1, m);
  T s = FN(sum_row)(y, n);
  if (log) {
    T ls = LOG_T(s);
    for (int64_t k = 0; k < n; k++) y[k] = x[k] - m - ls;
  } else {
    for (int64_t k = 0; k < n; k++) y[k] /= s;
  }
}

static void FN(softmax_cols)(T *y, const T *x, int64_t R, int64_t I, int64_t w, int log) {
  T m[CW], s[CW];
  for (int64_t i = 0; i < w; i++) m[i] = x[i], s[i] = 0;
  for (int64_t r = 1; r < R; r++)
    for (int64_t i = 0; i < w; i++) m[i] = FN(fmax_acc)(m[i], x[r * I + i]);
  for (int64_t r = 0; r < R; r++)
    for (int64_t i = 0; i < w; i++) s[i] += EXP_T(x[r * I + i] - m[i]);
  if (log)
    for (int64_t i = 0; i < w; i++) s[i] = LOG_T(s[i]);
  for (int64_t r = 0; r < R; r++)
    for (int64_t i = 0; i < w; i++) y[r * I + i] = log ? x[r * I + i] - m[i] - s[i] : EXP_T(x[r * I + i] - m[i]) / s[i];
}

// (O,R,I) -> (O,R,I), normalized along R
void FN(bpck_softmax)(T *out, const T *x, int64_t O, int64_t R, int64_t I, int log, int64_t begin, int64_t end) {
  (void)O;
  if (I == 1) {
    for (int64_t o = begin; o < end; o++) FN(softmax_row)(out + o * R, x + o * R, R, log);
    return;
  }
  FOR_COL_CHUNKS(I, begin, end, FN(softmax_cols)(out + o * R * I + i0, x + o * R * I + i0, R, I, w, log))
}

// ============================================================ normalization

// (rows,C) -> (rows,C)
void FN(bpck_layer_norm)(T *out, const T *x, const T *gamma, int64_t gn, const T *beta, int64_t bn, int64_t rows,
                         int64_t C, T eps, int64_t begin, int64_t end) {
  (void)rows;
  for (int64_t r = begin; r < end; r++) {
    const T *xr = x + r * C;
    T *yr = out + r * C;
    T mean = FN(sum_row)(xr, C) / (T)C;
    T rstd = 1 / SQRT_T(FN(sumsq_dev)(xr, C, mean) / (T)C + eps);
    for (int64_t c = 0; c < C; c++) yr[c] = (xr[c] - mean) * rstd * gamma[gn == 1 ? 0 : c] + beta[bn == 1 ? 0 : c];
  }
}

// dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = gy * gamma
void FN(bpck_layer_norm_dx)(T *dx, const T *x, const T *gamma, int64_t gn, const T *gy, int64_t rows, int64_t C, T eps,
                            int64_t begin, int64_t end) {
  (void)rows;
  for (int64_t r = begin; r < end; r++) {
    const T *xr = x + r * C, *gr = gy + r * C;
    T *dr = dx + r * C;
    T mean = FN(sum_row)(xr, C) / (T)C;
    T rstd = 1 / SQRT_T(FN(sumsq_dev)(xr, C, mean) / (T)C + eps);
    T m1 = 0, m2 = 0;
    for (int64_t c = 0; c < C; c++) {
      T dxh = gr[c] * gamma[gn == 1 ? 0 : c], xh = (xr[c] - mean) * rstd;
      m1 += dxh;
      m2 += dxh * xh;
    }
    m1 /= (T)C;
    m2 /= (T)C;
    for (int64_t c = 0; c < C; c++) {
      T dxh = gr[c] * gamma[gn == 1 ? 0 : c], xh = (xr[c] - mean) * rstd;
      dr[c] = rstd * (dxh - m1 - xh * m2);
    }
  }
}

// x / sqrt(mean(x^2) + eps) * gamma
void FN(bpck_rms_norm)(T *out, const T *x, const T *gamma, int64_t gn, int64_t rows, int64_t C, T eps, int64_t begin,
                       int64_t end) {
  (void)rows;
  for (int64_t r = begin; r < end; r++) {
    const T *xr = x + r * C;
    T rms = SQRT_T(FN(dot)(xr, xr, C) / (T)C + eps);
    for (int64_t c = 0; c < C; c++) out[r * C + c] = xr[c] / rms * gamma[gn == 1 ? 0 : c];
  }
}

// dx_j = rs g_j gy_j - rs^3 x_j / C * sum_i gy_i g_i x_i
void FN(bpck_rms_norm_dx)(T *dx, const T *x, const T *gamma, int64_t gn, const T *gy, int64_t rows, int64_t C, T eps,
                          int64_t begin, int64_t end) {
  (void)rows;
  for (int64_t r = begin; r < end; r++) {
    const T *xr = x + r * C, *gr = gy + r * C;
    T dot = 0;
    for (int64_t c = 0; c < C; c++) dot += gr[c] * gamma[gn == 1 ? 0 : c] * xr[c];
    T rs = 1 / SQRT_T(FN(dot)(xr, xr, C) / (T)C + eps);
    for (int64_t c = 0; c < C; c++)
      dx[r * C + c] = rs * gamma[gn == 1 ? 0 : c] * gr[c] - rs * rs * rs * xr[c] * dot / (T)C;
  }
}

#endif  // KT_PRODUCTS
// ============================================================ attention

// Tiled per unit (b, h), flash-style: nothing T x T is ever stored.
// Forward: for each block of ATT_QB query rows, the keys in blocks of ATT_KB:
// S = Q K^T of the block pair, an online softmax (a running row max m and
// sum l; O rescaled by exp(m_old - m_new) when a row's max grows), O += P V,
// and O / l at the end. Backward: for each query block the scores of its
// whole key range are recomputed (ATT_QB x Tk: linear in T) and normalized
// exactly per row, then dP = dO V^T, dS = P (dP - rowsum(dP P)) scale,
// dQ = dS K, dK += dS^T Q, dV += P^T dO: five products, as FlashAttention-2's
// backward, without the forward's statistics (the op passes none). A causal
// query block ending at row i1 reads keys [0, i1) only (~1/2 of the products
// at large T). Products run on the GEMM's block kernel (att_mm): K^T, V (and
// V^T, K for the backward) are packed once per unit, Q and dO once per query
// block. A unit is one thread's from start to end: any split of the units
// gives the same bits.
#define ATT_QB 48
#define ATT_KB (GEMM_KC / ATT_QB * ATT_QB)  // a whole number of query blocks, <= KC
#define ATT_MC 192                         // >= every block kernel's MC (144)
#ifndef ATT_QBB
#define ATT_QBB 96  // the backward's query block past T = KC (T = 1024: 96 ~15% faster than 48)
#endif
#define ATT_UP(n, m) (((n) + (m) - 1) / (m) * (m))
#define KMAX_(a, b) ((a) > (b) ? (a) : (b))
// Column j (a multiple of NR) of a packed B whose panels have kt rows.
#define PK_COL(Bp, j, kt) ((Bp) + (j) * (KT_BF16 ? ((kt) + 1) / 2 : (kt)))

// Elements of T a packed operand of k rows and n columns takes (bf16 pairs
// round k up to even; panels round n up to NR).
static int64_t FN(att_pk)(int64_t k, int64_t n) { return ATT_UP(k, 2) * ATT_UP(n, GEMM_NR); }
// ... of K, V or their transposes: the larger layout.
static int64_t FN(att_pkv)(int64_t Tk, int64_t hs) { return KMAX_(FN(att_pk)(hs, Tk), FN(att_pk)(Tk, hs)); }

size_t FN(bpck_attention_scratch)(int64_t Tq, int64_t Tk, int64_t hs) {
  (void)Tq;
  return (size_t)(ATT_QB * ATT_KB + 3 * ATT_QB + 2 * FN(att_pkv)(Tk, hs) + ATT_MC * GEMM_KC) + 64;
}

// C[0, rows) x [0, nc) (=, or += unless first) op(A)[0, rows) x [0, kn) @ a
// packed B whose row 0 is Bp (panels kt rows apart), K in blocks of KC.
static void FN(att_mm)(const T *A, int64_t lda, int transa, const PK_T *Bp, int64_t kt, int64_t kn, int64_t nc, T *C,
                       int64_t ldc, PK_T *Ap, int64_t rows, int first) {
  for (int64_t pc = 0; pc < kn; pc += GEMM_KC) {
    int64_t kc = KMIN(GEMM_KC, kn - pc);
    int f = first && pc == 0;
#ifdef GEMM_WIDE_BLOCK
    if (bpck_isa() == BPCK_ISA_AVX512) {  // the same packing and K order: the same bits
      GEMM_WIDE_BLOCK(A, lda, transa, PK_AT(Bp, pc), kt, Ap, C, ldc, 0, nc, pc, kc, f, 0, rows);
      continue;
    }
#endif
    FN(gemm_block)(A, lda, transa, PK_AT(Bp, pc), kt, Ap, C, ldc, 0, nc, pc, kc, f, 0, rows);
  }
}

// The keys row i (absolute) of a block of columns [j0, j0 + w) may see:
// [0, n) of the block, padding keys (km[j] == 0) set to -inf.
static int64_t FN(att_keys)(T *r, int64_t i, int64_t j0, int64_t w, int causal, const T *km) {
  int64_t nk = causal ? KMIN(w, i + 1 - j0) : w;
  if (nk < 0) nk = 0;
  if (km)
    for (int64_t j = 0; j < nk; j++)
      if (km[j0 + j] == 0) r[j] = (T)-INFINITY;
  return nk;
}

// Rows [0, n) of S (row stride ld; absolute row i0 + r), raw scores of keys
// [0, width) -> P = softmax(S * scale) exactly, masked entries 0. A row with
// no key left is 0 (so is its gradient).
static void FN(att_softmax)(T *S, int64_t ld, int64_t i0, int64_t n, int64_t width, int causal, const T *km, T scale) {
  for (int64_t r = 0; r < n; r++) {
    T *s = S + r * ld;
    int64_t nk = FN(att_keys)(s, i0 + r, 0, width, causal, km);
    T m = nk ? EFN(fmax_row)(s, nk, 1) * scale : (T)-INFINITY;
    if (m == (T)-INFINITY) {
      for (int64_t j = 0; j < width; j++) s[j] = 0;
      continue;
    }
    EFN(exp_row)(s, s, nk, scale, m);
    if (km)
      for (int64_t j = 0; j < nk; j++)
        if (km[j] == 0) s[j] = 0;
    T inv = 1 / EFN(sum_row)(s, nk);
    for (int64_t j = 0; j < nk; j++) s[j] *= inv;
    for (int64_t j = nk; j < width; j++) s[j] = 0;
  }
}

// One key block [j0, j0 + w) of the online softmax for rows [0, n) (absolute
// i0 + r): S -> exp(S * scale - m_new), masked entries 0; m, l updated and
// alpha[r] = exp(m_old - m_new), the factor the row's O so far takes.
static void FN(att_online)(T *S, int64_t ld, int64_t i0, int64_t n, int64_t j0, int64_t w, int causal, const T *km,
                           T scale, T *m, T *l, T *alpha) {
  for (int64_t r = 0; r < n; r++) {
    T *s = S + r * ld;
    int64_t nk = FN(att_keys)(s, i0 + r, j0, w, causal, km);
    T bm = nk ? EFN(fmax_row)(s, nk, 1) * scale : (T)-INFINITY;
    T mn = bm > m[r] ? bm : m[r];
    alpha[r] = 1;
    if (mn == (T)-INFINITY) {  // no key yet: nothing to add
      for (int64_t j = 0; j < w; j++) s[j] = 0;
      continue;
    }
    EFN(exp_row)(s, s, nk, scale, mn);
    if (km)
      for (int64_t j = 0; j < nk; j++)
        if (km[j0 + j] == 0) s[j] = 0;
    for (int64_t j = nk; j < w; j++) s[j] = 0;
    alpha[r] = m[r] == (T)-INFINITY ? 0 : EFN(exp_in)(m[r] - mn);
    l[r] = l[r] * alpha[r] + EFN(sum_row)(s, nk);
    m[r] = mn;
  }
}

// q (B,Tq,C), k v (B,Tk,C) -> out (B,Tq,C); unit u = (b, h)
void FN(bpck_attention)(T *out, const T *q, const T *k, const T *v, int64_t B, int64_t Tq, int64_t Tk, int64_t C,
                        int64_t H, int causal, const T *mask, int64_t ldi, T *scratch, int64_t begin, int64_t end) {
  (void)B;
  int64_t hs = C / H;
  T scale = 1 / SQRT_T((T)hs), *S = scratch, *m = S + ATT_QB * ATT_KB, *l = m + ATT_QB, *alpha = l + ATT_QB;
  int64_t pkv = FN(att_pkv)(Tk, hs), ld = KMIN(ATT_KB, ATT_UP(Tk, GEMM_NR));  // S's rows: only as wide as used
  PK_T *Kp = (PK_T *)(alpha + ATT_QB), *Vp = (PK_T *)((T *)Kp + pkv), *Ap = (PK_T *)((T *)Vp + pkv);
  for (int64_t u = begin; u < end; u++) {
    int64_t b = u / H, h = u % H, qi = b * Tq * ldi + h * hs, ki = b * Tk * ldi + h * hs;
    T *o = out + b * Tq * C + h * hs;
    const T *km = mask ? mask + b * Tk : NULL;
    FN(pack_b)(Kp, k + ki, ldi, 1, 0, hs, 0, Tk);  // K^T
    FN(pack_b)(Vp, v + ki, ldi, 0, 0, Tk, 0, hs);  // V
    for (int64_t i0 = 0; i0 < Tq; i0 += ATT_QB) {
      int64_t n = KMIN(ATT_QB, Tq - i0), lim = causal ? KMIN(Tk, i0 + n) : Tk;
      T *oi = o + i0 * C;
      for (int64_t r = 0; r < n; r++) m[r] = (T)-INFINITY, l[r] = 0;
      for (int64_t j0 = 0; j0 < lim; j0 += ATT_KB) {
        int64_t w = KMIN(ATT_KB, lim - j0);
        FN(att_mm)(q + qi + i0 * ldi, ldi, 0, PK_COL(Kp, j0, hs), hs, hs, w, S, ld, Ap, n, 1);
        FN(att_online)(S, ld, i0, n, j0, w, causal, km, scale, m, l, alpha);
        if (w == lim)  // one key block: P normalized before O = P V (no pass over O)
          for (int64_t r = 0; r < n; r++) {
            T inv = l[r] > 0 ? 1 / l[r] : 0;
            for (int64_t j = 0; j < w; j++) S[r * ld + j] *= inv;
          }
        if (j0)
          for (int64_t r = 0; r < n; r++)
            for (int64_t c = 0; c < hs; c++) oi[r * C + c] *= alpha[r];
        FN(att_mm)(S, ld, 0, PK_AT(Vp, j0), Tk, w, hs, oi, C, Ap, n, j0 == 0);
      }
      for (int64_t r = 0; r < n && lim > ATT_KB; r++) {
        T inv = l[r] > 0 ? 1 / l[r] : 0;
        for (int64_t c = 0; c < hs; c++) oi[r * C + c] *= inv;
      }
    }
  }
}

// Whether the backward keeps P and dS of every query block of a unit (Tq x
// Tk each, up to KC x KC): then dK and dV are one product per block of 48
// keys over queries [j0, Tq) (causal) instead of a sum over query blocks.
static int FN(att_whole)(int64_t Tq, int64_t Tk) { return Tq <= GEMM_KC && Tk <= GEMM_KC; }

size_t FN(bpck_attention_bwd_scratch)(int64_t Tq, int64_t Tk, int64_t hs) {
  int64_t rows = FN(att_whole)(Tq, Tk) ? Tq : ATT_QBB;
  return (size_t)(2 * rows * Tk + 3 * FN(att_pkv)(Tk, hs) + 2 * FN(att_pk)(rows, hs) + ATT_MC * GEMM_KC) + 64;
}

// dQ = dS K scale, dK = dS^T Q scale, dV = P^T dO, per unit (b, h); any of
// dq, dk, dv may be NULL (not computed). P is recomputed per query block.
void FN(bpck_attention_bwd)(T *dq, T *dk, T *dv, const T *q, const T *k, const T *v, const T *gy, int64_t B, int64_t Tq,
                            int64_t Tk, int64_t C, int64_t H, int causal, const T *mask, int64_t ldi, int64_t ldo,
                            T *scratch, int64_t begin, int64_t end) {
  (void)B;
  int64_t hs = C / H, whole = FN(att_whole)(Tq, Tk), rows = whole ? Tq : ATT_QBB, qb = whole ? ATT_QB : ATT_QBB;
  T scale = 1 / SQRT_T((T)hs), *P = scratch, *dS = P + rows * Tk;
  int64_t pkv = FN(att_pkv)(Tk, hs);
  PK_T *KTp = (PK_T *)(dS + rows * Tk), *VTp = (PK_T *)((T *)KTp + pkv);
  PK_T *Kp = (PK_T *)((T *)VTp + pkv), *Qp = (PK_T *)((T *)Kp + pkv);
  PK_T *Op = (PK_T *)((T *)Qp + FN(att_pk)(rows, hs)), *Ap = (PK_T *)((T *)Op + FN(att_pk)(rows, hs));
  for (int64_t u = begin; u < end; u++) {
    int64_t b = u / H, h = u % H, go = b * Tq * C + h * hs;
    int64_t qi = b * Tq * ldi + h * hs, ki = b * Tk * ldi + h * hs;  // q, k, v rows
    int64_t qo = b * Tq * ldo + h * hs, ko = b * Tk * ldo + h * hs;  // dq, dk, dv rows
    const T *km = mask ? mask + b * Tk : NULL;
    FN(pack_b)(KTp, k + ki, ldi, 1, 0, hs, 0, Tk);  // K^T
    if (dq || dk) FN(pack_b)(VTp, v + ki, ldi, 1, 0, hs, 0, Tk);  // V^T
    if (dq) FN(pack_b)(Kp, k + ki, ldi, 0, 0, Tk, 0, hs);  // K
    for (int64_t j = 0; j < Tk && !whole; j++)  // dK and dV sum over query blocks
      for (int64_t c = 0; c < hs; c++) {
        if (dk) dk[ko + j * ldo + c] = 0;
        if (dv) dv[ko + j * ldo + c] = 0;
      }
    for (int64_t i0 = 0; i0 < Tq; i0 += qb) {
      int64_t n = KMIN(qb, Tq - i0), lim = causal ? KMIN(Tk, i0 + n) : Tk;
      const T *gi = gy + go + i0 * C;
      T *Pb = whole ? P + i0 * Tk : P, *dSb = whole ? dS + i0 * Tk : dS;
      FN(att_mm)(q + qi + i0 * ldi, ldi, 0, KTp, hs, hs, lim, Pb, Tk, Ap, n, 1);
      FN(att_softmax)(Pb, Tk, i0, n, lim, causal, km, scale);
      if (dq || dk) {
        FN(att_mm)(gi, C, 0, VTp, hs, hs, lim, dSb, Tk, Ap, n, 1);  // dP
        for (int64_t r = 0; r < n; r++) {
          T *pr = Pb + r * Tk, *sr = dSb + r * Tk, dot = EFN(dot)(sr, pr, lim);
          for (int64_t j = 0; j < lim; j++) sr[j] = pr[j] * (sr[j] - dot) * scale;
        }
        if (dq) FN(att_mm)(dSb, Tk, 0, Kp, Tk, lim, hs, dq + qo + i0 * ldo, ldo, Ap, n, 1);
      }
      if (whole) continue;
      if (dk) {
        FN(pack_b)(Qp, q + qi + i0 * ldi, ldi, 0, 0, n, 0, hs);  // Q of the block
        FN(att_mm)(dSb, Tk, 1, Qp, n, n, hs, dk + ko, ldo, Ap, lim, 0);
      }
      if (dv) {
        FN(pack_b)(Op, gi, C, 0, 0, n, 0, hs);  // dO of the block
        FN(att_mm)(Pb, Tk, 1, Op, n, n, hs, dv + ko, ldo, Ap, lim, 0);
      }
    }
    if (!whole) continue;
    // key block [j0, j1): queries [j0, Tq) when causal (the rows before see none of
    // its keys; a row's columns up to its block's end are written, zero past its limit)
    if (dk) FN(pack_b)(Qp, q + qi, ldi, 0, 0, Tq, 0, hs);  // Q
    if (dv) FN(pack_b)(Op, gy + go, C, 0, 0, Tq, 0, hs);  // dO
    for (int64_t j0 = 0; j0 < Tk; j0 += ATT_QB) {
      int64_t nj = KMIN(ATT_QB, Tk - j0), lo = causal ? j0 : 0;
      if (dk) FN(att_mm)(dS + lo * Tk + j0, Tk, 1, PK_AT(Qp, lo), Tq, Tq - lo, hs, dk + ko + j0 * ldo, ldo, Ap, nj, 1);
      if (dv) FN(att_mm)(P + lo * Tk + j0, Tk, 1, PK_AT(Op, lo), Tq, Tq - lo, hs, dv + ko + j0 * ldo, ldo, Ap, nj, 1);
    }
  }
}
#undef ATT_UP
#undef KMAX_
#undef PK_COL

#ifndef KT_PRODUCTS
// (rows*R, Cc): -inf (grad: 0) where column > row % R
void FN(bpck_causal_mask)(T *out, const T *x, int64_t R, int64_t Cc, int grad, int64_t begin, int64_t end) {
  T fillv = grad ? (T)0 : (T)-INFINITY;
  for (int64_t ri = begin; ri < end; ri++) {
    int64_t row = ri % R;
    for (int64_t c = 0; c < Cc; c++) out[ri * Cc + c] = c > row ? fillv : x[ri * Cc + c];
  }
}

#endif  // KT_PRODUCTS
// ============================================================ convolution

// Each is im2col + GEMM: the kernel gathers a block of patches (rows of
// KH*KW*Ci, or KH*KW*Co for dx, zeros where the window leaves the image) into
// per-thread scratch and multiplies it by the filter with bpck_gemm. Blocks
// hold CONV_PIX pixels; a GEMM row's sum depends only on K, so any split of
// the range gives the same bits.
#ifndef CONV_PIX
#define CONV_PIX 256
#endif

static int64_t FN(conv_rows)(int64_t width) { return width >= CONV_PIX ? 1 : CONV_PIX / width; }

// which: 0 conv2d, 1 conv2d_dx, 2 conv2d_dw; elements of per-thread scratch.
size_t FN(bpck_conv2d_scratch)(int which, int64_t W, int64_t Ci, int64_t KH, int64_t KW, int64_t Co, int64_t stride,
                               int64_t pad) {
  int64_t OW = (W + 2 * pad - KW) / stride + 1, KK = KH * KW;
  if (which == 0) {
    int64_t P = FN(conv_rows)(OW) * OW;
    return (size_t)(P * KK * Ci) + FN(bpck_gemm_scratch)(P, Co, KK * Ci) + 16;
  }
  if (which == 1) {
    int64_t P = FN(conv_rows)(W) * W;
    return (size_t)(P * KK * Co + KK * Co * Ci) + FN(bpck_gemm_scratch)(P, Ci, KK * Co) + 16;
  }
  return (size_t)(CONV_PIX * KK * Ci + KK * Ci * Co) + FN(bpck_gemm_scratch)(KK * Ci, Co, CONV_PIX) + 16;
}

// Filters with few taps (KH*KW*Ci <= CONV_DIRECT_K: a first layer on 1 or 3
// channels) run directly: im2col would gather 9 values a pixel for a GEMM
// with K = 9, and spend its time in the gather and the C tile's loads.
#ifndef CONV_DIRECT_K
#define CONV_DIRECT_K 32
#endif

// The output columns [*ow0, *ow1) whose input column ow * stride - pad + kw
// lies inside the image [0, W): the others read the padding.
static void FN(conv_cols)(int64_t W, int64_t OW, int64_t kw, int64_t stride, int64_t pad, int64_t *ow0, int64_t *ow1) {
  *ow0 = pad - kw > 0 ? (pad - kw + stride - 1) / stride : 0;
  *ow1 = KMIN(OW, W + pad - kw > 0 ? (W + pad - kw - 1) / stride + 1 : 0);
}

// One output row (b, oh) at a time, accumulated in place (OW x Co, in L1):
// each tap (kh, kw, ci) in order adds x times its filter row (held in
// registers) over the output pixels whose window holds it inside the image;
// taps in the padding add nothing.
static void FN(conv2d_direct)(T *out, const T *x, const T *w, int64_t H, int64_t W, int64_t Ci, int64_t KH, int64_t KW,
                              int64_t Co, int64_t stride, int64_t pad, int64_t OH, int64_t OW, int64_t begin,
                              int64_t end) {
  int64_t nv = Co / VL;
  for (int64_t u = begin; u < end; u++) {
    int64_t b = u / OH, oh = u % OH;
    T *o = out + u * OW * Co;
    for (int64_t i = 0; i < OW * Co; i++) o[i] = 0;
    for (int64_t kh = 0; kh < KH; kh++) {
      int64_t ih = oh * stride - pad + kh;
      if (ih < 0 || ih >= H) continue;
      for (int64_t kw = 0; kw < KW; kw++) {
        int64_t ow0, ow1;
        FN(conv_cols)(W, OW, kw, stride, pad, &ow0, &ow1);
        if (ow0 >= ow1) continue;
        int64_t xrow = (b * H + ih) * W;  // x[xrow + iw, ci]
        for (int64_t ci = 0; ci < Ci; ci++) {
          const T *wp = w + ((kh * KW + kw) * Ci + ci) * Co;
          const T *xp = x + (xrow + ow0 * stride - pad + kw) * Ci + ci;
          int64_t q = 0;
          for (; q + 2 <= nv; q += 2) {
            V w0 = VAT(wp + q * VL), w1 = VAT(wp + q * VL + VL);
            for (int64_t ow = ow0; ow < ow1; ow++) {
              T xv = xp[(ow - ow0) * stride * Ci], *op = o + ow * Co + q * VL;
              V a0 = VAT(op) + xv * w0, a1 = VAT(op + VL) + xv * w1;
              VSTORE(op, a0);
              VSTORE(op + VL, a1);
            }
          }
          if (q < nv) {
            V w0 = VAT(wp + q * VL);
            for (int64_t ow = ow0; ow < ow1; ow++) {
              T *op = o + ow * Co + q * VL;
              V a0 = VAT(op) + xp[(ow - ow0) * stride * Ci] * w0;
              VSTORE(op, a0);
            }
          }
          for (int64_t co = nv * VL; co < Co; co++)
            for (int64_t ow = ow0; ow < ow1; ow++) o[ow * Co + co] += xp[(ow - ow0) * stride * Ci] * wp[co];
        }
      }
    }
  }
}

// Rows [begin, end) of dw (taps (kh, kw, ci)), all of Co. Every tap adds x
// at the tap times gy over the pixels in order (b, oh, ow); an output row
// at a time, its gy rows stay in L1 while every tap of the range passes over
// them, the sums in scratch.
static void FN(conv2d_dw_direct)(T *dw, const T *x, const T *gy, int64_t N, int64_t H, int64_t W, int64_t Ci,
                                 int64_t KW, int64_t Co, int64_t stride, int64_t pad, int64_t OH, int64_t OW, T *acc,
                                 int64_t begin, int64_t end) {
  int64_t m = end - begin, nv = Co / VL;
  for (int64_t i = 0; i < m * Co; i++) acc[i] = 0;
  for (int64_t b = 0; b < N; b++)
    for (int64_t oh = 0; oh < OH; oh++) {
      const T *g = gy + (b * OH + oh) * OW * Co;
      for (int64_t r = begin; r < end; r++) {
        int64_t kh = r / Ci / KW, kw = r / Ci % KW, ci = r % Ci, ih = oh * stride - pad + kh;
        if (ih < 0 || ih >= H) continue;
        int64_t ow0, ow1;
        FN(conv_cols)(W, OW, kw, stride, pad, &ow0, &ow1);
        if (ow0 >= ow1) continue;
        const T *xr = x + ((b * H + ih) * W + ow0 * stride - pad + kw) * Ci + ci;  // at ow0
        T *a = acc + (r - begin) * Co;
        int64_t q = 0;
        for (; q + 2 <= nv; q += 2) {
          V a0 = VAT(a + q * VL), a1 = VAT(a + q * VL + VL);
          for (int64_t ow = ow0; ow < ow1; ow++) {
            T xv = xr[(ow - ow0) * stride * Ci];
            a0 += xv * VAT(g + ow * Co + q * VL), a1 += xv * VAT(g + ow * Co + q * VL + VL);
          }
          VSTORE(a + q * VL, a0);
          VSTORE(a + q * VL + VL, a1);
        }
        if (q < nv) {
          V a0 = VAT(a + q * VL);
          for (int64_t ow = ow0; ow < ow1; ow++) a0 += xr[(ow - ow0) * stride * Ci] * VAT(g + ow * Co + q * VL);
          VSTORE(a + q * VL, a0);
        }
        for (int64_t co = nv * VL; co < Co; co++) {
          T a0 = a[co];
          for (int64_t ow = ow0; ow < ow1; ow++) a0 += xr[(ow - ow0) * stride * Ci] * g[ow * Co + co];
          a[co] = a0;
        }
      }
    }
  memcpy(dw + begin * Co, acc, sizeof(T) * (size_t)(m * Co));
}

// x (N,H,W,Ci), w (KH,KW,Ci,Co) = [KH*KW*Ci, Co] -> out (N,OH,OW,Co); unit: one
// output row (b, oh).
void FN(bpck_conv2d)(T *out, const T *x, const T *w, int64_t N, int64_t H, int64_t W, int64_t Ci, int64_t KH,
                     int64_t KW, int64_t Co, int64_t stride, int64_t pad, T *scratch, int64_t begin, int64_t end) {
  (void)N;
  int64_t OH = (H + 2 * pad - KH) / stride + 1, OW = (W + 2 * pad - KW) / stride + 1;
  int64_t KKC = KH * KW * Ci, G = FN(conv_rows)(OW);
  if (!KT_BF16 && KKC <= CONV_DIRECT_K) {  // bf16: every product through the GEMM
    FN(conv2d_direct)(out, x, w, H, W, Ci, KH, KW, Co, stride, pad, OH, OW, begin, end);
    return;
  }
  T *col = scratch, *ws = scratch + G * OW * KKC;
  for (int64_t u0 = begin; u0 < end; u0 += G) {
    int64_t g = KMIN(G, end - u0);
    for (int64_t r = 0; r < g; r++) {
      int64_t b = (u0 + r) / OH, oh = (u0 + r) % OH;
      for (int64_t ow = 0; ow < OW; ow++) {
        T *cp = col + (r * OW + ow) * KKC;
        for (int64_t kh = 0; kh < KH; kh++) {
          int64_t ih = oh * stride - pad + kh;
          for (int64_t kw = 0; kw < KW; kw++, cp += Ci) {
            int64_t iw = ow * stride - pad + kw;
            int in = ih >= 0 && ih < H && iw >= 0 && iw < W;
            EFN(copy_run)(cp, in ? x + ((b * H + ih) * W + iw) * Ci : NULL, Ci);
          }
        }
      }
    }
    FN(bpck_gemm)(g * OW, Co, KKC, col, KKC, 0, w, Co, 0, out + u0 * OW * Co, Co, 0, ws, 0, g * OW);
  }
}

// gy (N,OH,OW,Co), w -> dx (N,H,W,Ci); unit: one input row (b, ih). Each input
// pixel gathers the gy of every output pixel whose window covers it (zeros
// elsewhere, and where the stride skips it) against wt[(kh,kw,co), ci].
void FN(bpck_conv2d_dx)(T *dx, const T *gy, const T *w, int64_t N, int64_t H, int64_t W, int64_t Ci, int64_t KH,
                        int64_t KW, int64_t Co, int64_t stride, int64_t pad, T *scratch, int64_t begin, int64_t end) {
  (void)N;
  int64_t OH = (H + 2 * pad - KH) / stride + 1, OW = (W + 2 * pad - KW) / stride + 1;
  int64_t KKO = KH * KW * Co, G = FN(conv_rows)(W);
  T *wt = scratch, *col = wt + KKO * Ci, *ws = col + G * W * KKO;
  for (int64_t t = 0; t < KH * KW; t++)
    for (int64_t ci = 0; ci < Ci; ci++)
      for (int64_t co = 0; co < Co; co++) wt[(t * Co + co) * Ci + ci] = w[(t * Ci + ci) * Co + co];
  for (int64_t u0 = begin; u0 < end; u0 += G) {
    int64_t g = KMIN(G, end - u0);
    for (int64_t r = 0; r < g; r++) {
      int64_t b = (u0 + r) / H, ih = (u0 + r) % H;
      for (int64_t iw = 0; iw < W; iw++) {
        T *cp = col + (r * W + iw) * KKO;
        for (int64_t kh = 0; kh < KH; kh++) {
          int64_t t = ih + pad - kh, oh = t / stride;
          int hok = t >= 0 && t % stride == 0 && oh < OH;
          for (int64_t kw = 0; kw < KW; kw++, cp += Co) {
            int64_t s2 = iw + pad - kw, ow = s2 / stride;
            int in = hok && s2 >= 0 && s2 % stride == 0 && ow < OW;
            EFN(copy_run)(cp, in ? gy + ((b * OH + oh) * OW + ow) * Co : NULL, Co);
          }
        }
      }
    }
    FN(bpck_gemm)(g * W, Ci, KKO, col, KKO, 0, wt, Ci, 0, dx + u0 * W * Ci, Ci, 0, ws, 0, g * W);
  }
}

// x, gy -> dw (KH,KW,Ci,Co) = [KH*KW*Ci, Co]; unit: one row (kh, kw, ci) of dw.
// dw[rows] = col^T gy over blocks of CONV_PIX pixels, accumulated in pixel order.
void FN(bpck_conv2d_dw)(T *dw, const T *x, const T *gy, int64_t N, int64_t H, int64_t W, int64_t Ci, int64_t KH,
                        int64_t KW, int64_t Co, int64_t stride, int64_t pad, T *scratch, int64_t begin, int64_t end) {
  int64_t OH = (H + 2 * pad - KH) / stride + 1, OW = (W + 2 * pad - KW) / stride + 1;
  int64_t P = N * OH * OW, m = end - begin;
  T *col = scratch, *ws = scratch + CONV_PIX * KH * KW * Ci;
  if (m <= 0) return;
  if (P == 0) {
    memset(dw + begin * Co, 0, sizeof(T) * (size_t)(m * Co));
    return;
  }
  if (!KT_BF16 && KH * KW * Ci <= CONV_DIRECT_K) {
    FN(conv2d_dw_direct)(dw, x, gy, N, H, W, Ci, KW, Co, stride, pad, OH, OW, scratch, begin, end);
    return;
  }
  int64_t kh0 = begin / Ci / KW, kw0 = begin / Ci % KW, ci00 = begin % Ci;  // the range's first tap
  for (int64_t p0 = 0; p0 < P; p0 += CONV_PIX) {
    int64_t pc = KMIN(CONV_PIX, P - p0);
    for (int64_t i = 0; i < pc; i++) {
      int64_t p = p0 + i, b = p / (OH * OW), oh = p / OW % OH, ow = p % OW;
      T *cp = col + i * m;
      // Taps in order, (kh, kw) stepped rather than divided out per element.
      for (int64_t r = begin, kh = kh0, kw = kw0, ci0 = ci00; r < end;) {
        int64_t n = KMIN(Ci - ci0, end - r);
        int64_t ih = oh * stride - pad + kh, iw = ow * stride - pad + kw;
        int in = ih >= 0 && ih < H && iw >= 0 && iw < W;
        EFN(copy_run)(cp + (r - begin), in ? x + ((b * H + ih) * W + iw) * Ci + ci0 : NULL, n);
        r += n;
        ci0 = 0;
        if (++kw == KW) kw = 0, kh++;
      }
    }
    FN(bpck_gemm)(m, Co, pc, col, m, 1, gy + p0 * Co, Co, 0, dw + begin * Co, Co, p0 > 0, ws, 0, m);
  }
}

#ifndef KT_PRODUCTS  // ---- the rest: not instantiated for bf16 products
// x (N,H,W,C) -> (N,OH,OW,C); unit: one output row (b, oh).
void FN(bpck_pool2d)(T *out, const T *x, int64_t N, int64_t H, int64_t W, int64_t C, int64_t K, int64_t S_, int is_max,
                     int64_t begin, int64_t end) {
  (void)N;
  int64_t OH = (H - K) / S_ + 1, OW = (W - K) / S_ + 1;
  for (int64_t u = begin; u < end; u++) {
    int64_t b = u / OH, oh = u % OH;
    for (int64_t ow = 0; ow < OW; ow++) {
      T *o = out + (u * OW + ow) * C;
      for (int64_t kh = 0; kh < K; kh++)
        for (int64_t kw = 0; kw < K; kw++) {
          const T *xp = x + ((b * H + oh * S_ + kh) * W + ow * S_ + kw) * C;
          int first = kh == 0 && kw == 0;
          if (first)
            for (int64_t c = 0; c < C; c++) o[c] = xp[c];
          else if (is_max)
            for (int64_t c = 0; c < C; c++) o[c] = FN(ext_acc)(o[c], xp[c], 0);
          else
            for (int64_t c = 0; c < C; c++) o[c] += xp[c];
        }
      for (int64_t c = 0; !is_max && c < C; c++) o[c] /= (T)(K * K);
    }
  }
}

// gy (N,OH,OW,C) -> dx (N,H,W,C); unit: one image (windows may overlap).
// The first maximum of each of w channels over a K x K window whose
// top-left element is x0 (row stride W * C): bk[c] = its tap kh * K + kw
// (strict >, as the forward picks it).
static void FN(window_argmax)(int32_t *bk, const T *x0, int64_t W, int64_t C, int64_t K, int64_t w) {
  T bv[CW];
  for (int64_t c = 0; c < w; c++) bv[c] = x0[c], bk[c] = 0;
  for (int64_t kh = 0; kh < K; kh++)
    for (int64_t kw = 0; kw < K; kw++) {
      const T *xp = x0 + (kh * W + kw) * C;
      int32_t kk = (int32_t)(kh * K + kw);
      for (int64_t c = 0; c < w; c++) {
        int gt = xp[c] > bv[c];
        bv[c] = gt ? xp[c] : bv[c];
        bk[c] = gt ? kk : bk[c];
      }
    }
}

// Pooling's backward when the windows tile the image (stride == K): every
// element of a window gets its gy (max: only the window's first maximum,
// as the forward picks it; avg: gy / K^2), the rows and columns no window
// covers get 0. The same values as the general path's zeros plus one add.
static void FN(pool2d_grad_tiled)(T *dx, const T *x, const T *gy, int64_t H, int64_t W, int64_t C, int64_t K,
                                  int64_t OH, int64_t OW, int is_max, int64_t begin, int64_t end) {
  for (int64_t b = begin; b < end; b++) {
    T *d = dx + b * H * W * C;
    const T *xb = x + b * H * W * C;
    for (int64_t h = 0; h < H; h++)  // what no window covers
      for (int64_t w0 = h < OH * K ? OW * K : 0; w0 < W; w0++)
        for (int64_t c = 0; c < C; c++) d[(h * W + w0) * C + c] = 0;
    for (int64_t oh = 0; oh < OH; oh++)
      for (int64_t ow = 0; ow < OW; ow++) {
        const T *g = gy + ((b * OH + oh) * OW + ow) * C;
        int64_t base = (oh * K * W + ow * K) * C;
        int64_t cv = is_max ? C / VL * VL : 0;
        for (int64_t c0 = 0; c0 < cv; c0 += VL) {  // a vector of channels: lanes hold tap indices
          const T *x0 = xb + base + c0;
          V bv = VAT(x0), gv = VAT(g + c0);
          VM zero = (VM)(V){0}, bk = zero;
          typedef __typeof__(zero[0]) lane_t;
          for (int64_t kh = 0; kh < K; kh++)
            for (int64_t kw = 0; kw < K; kw++) {
              V xv = VAT(x0 + (kh * W + kw) * C);
              VM gt = xv > bv, kk = zero + (lane_t)(kh * K + kw);
              bv = (V)(((VM)xv & gt) | ((VM)bv & ~gt));
              bk = (kk & gt) | (bk & ~gt);
            }
          for (int64_t kh = 0; kh < K; kh++)
            for (int64_t kw = 0; kw < K; kw++) {
              VM hit = bk == (zero + (lane_t)(kh * K + kw));
              V dv = (V){0} + (V)((VM)gv & hit);  // 0 + g, as the general path (-0 becomes +0)
              VSTORE(d + base + (kh * W + kw) * C + c0, dv);
            }
        }
        for (int64_t c0 = cv; c0 < C; c0 += CW) {
          int64_t w = KMIN(CW, C - c0);
          if (!is_max) {
            for (int64_t kh = 0; kh < K; kh++)
              for (int64_t kw = 0; kw < K; kw++) {
                T *dp = d + base + (kh * W + kw) * C + c0;
                for (int64_t c = 0; c < w; c++) dp[c] = 0 + g[c0 + c] / (T)(K * K);
              }
            continue;
          }
          int32_t bk[CW];
          FN(window_argmax)(bk, xb + base + c0, W, C, K, w);
          for (int64_t kh = 0; kh < K; kh++)
            for (int64_t kw = 0; kw < K; kw++) {
              T *dp = d + base + (kh * W + kw) * C + c0;
              int32_t kk = (int32_t)(kh * K + kw);
              for (int64_t c = 0; c < w; c++) dp[c] = bk[c] == kk ? 0 + g[c0 + c] : 0;
            }
        }
      }
  }
}

void FN(bpck_pool2d_grad)(T *dx, const T *x, const T *gy, int64_t N, int64_t H, int64_t W, int64_t C, int64_t K,
                          int64_t S_, int is_max, int64_t begin, int64_t end) {
  (void)N;
  int64_t OH = (H - K) / S_ + 1, OW = (W - K) / S_ + 1;
  if (S_ == K) {  // windows tile the image: each dx element written once, no zeroing pass
    FN(pool2d_grad_tiled)(dx, x, gy, H, W, C, K, OH, OW, is_max, begin, end);
    return;
  }
  for (int64_t b = begin; b < end; b++) {
    T *d = dx + b * H * W * C;
    for (int64_t i = 0; i < H * W * C; i++) d[i] = 0;
    for (int64_t oh = 0; oh < OH; oh++)
      for (int64_t ow = 0; ow < OW; ow++) {
        const T *g = gy + ((b * OH + oh) * OW + ow) * C;
        for (int64_t c0 = 0; c0 < C; c0 += CW) {  // CW channels at a time, vectorized
          int64_t w = KMIN(CW, C - c0);
          if (!is_max) {
            for (int64_t kh = 0; kh < K; kh++)
              for (int64_t kw = 0; kw < K; kw++) {
                T *dp = d + ((oh * S_ + kh) * W + ow * S_ + kw) * C + c0;
                for (int64_t c = 0; c < w; c++) dp[c] += g[c0 + c] / (T)(K * K);
              }
            continue;
          }
          int32_t bk[CW];  // the first maximum of each channel's window (as the forward)
          FN(window_argmax)(bk, x + b * H * W * C + ((oh * S_) * W + ow * S_) * C + c0, W, C, K, w);
          for (int64_t c = 0; c < w; c++)
            d[((oh * S_ + bk[c] / K) * W + ow * S_ + bk[c] % K) * C + c0 + c] += g[c0 + c];
        }
      }
  }
}

// ============================================================ indexing

// ids (n), table (V,C) -> (n,C)
void FN(bpck_embedding)(T *out, const int32_t *ids, const T *table, int64_t n, int64_t V_, int64_t C, int64_t *status,
                        int64_t begin, int64_t end) {
  (void)n;
  for (int64_t i = begin; i < end; i++) {
    int64_t id = ids[i];
    if (id < 0 || id >= V_) {
      FN(report)(status, BPCK_ERR_EMBEDDING_ID, id, V_);
      for (int64_t c = 0; c < C; c++) out[i * C + c] = 0;
      continue;
    }
    memcpy(out + i * C, table + id * C, sizeof(T) * (size_t)C);
  }
}

// gy (n,C) -> dtable (V,C); the range owns columns [begin, end) of every row.
void FN(bpck_embedding_grad)(T *dtable, const T *base, const int32_t *ids, const T *gy, int64_t n, int64_t V_,
                             int64_t C, int64_t begin, int64_t end) {
  if (base != dtable)
    for (int64_t r = 0; r < V_; r++)
      for (int64_t c = begin; c < end; c++) dtable[r * C + c] = base ? base[r * C + c] : 0;
  for (int64_t i = 0; i < n; i++) {
    int64_t id = ids[i];
    if (id < 0 || id >= V_) continue;  // the forward kernel reports it
    T *d = dtable + id * C;
    const T *g = gy + i * C;
    for (int64_t c = begin; c < end; c++) d[c] += g[c];
  }
}

void FN(bpck_one_hot)(T *out, const int32_t *ids, int64_t n, int64_t K, int64_t begin, int64_t end) {
  (void)n;
  for (int64_t i = begin; i < end; i++) {
    for (int64_t c = 0; c < K; c++) out[i * K + c] = 0;
    if (ids[i] >= 0 && ids[i] < K) out[i * K + ids[i]] = 1;
  }
}

// (O,R,I) -> (O,I) int32
void FN(bpck_argmax)(int32_t *out, const T *x, int64_t O, int64_t R, int64_t I, int64_t begin, int64_t end) {
  (void)O;
  for (int64_t idx = begin; idx < end; idx++) {
    int64_t o = idx / I, i = idx % I;
    out[idx] = (int32_t)FN(argmax_row)(x + o * R * I + i, R, I);
  }
}

// ============================================================ losses, metrics

// logits (rows,K), labels (rows) -> row_loss (rows)
void FN(bpck_cross_entropy_rows)(T *row_loss, const T *logits, const int32_t *labels, int64_t rows, int64_t K,
                                 int64_t *status, int64_t begin, int64_t end) {
  (void)rows;
  for (int64_t r = begin; r < end; r++) {
    const T *xr = logits + r * K;
    int64_t y = labels[r];
    if (y < 0 || y >= K) {
      FN(report)(status, BPCK_ERR_LABEL, y, K);
      row_loss[r] = 0;
      continue;
    }
    T m = FN(fmax_row)(xr, K, 1);
    row_loss[r] = m + LOG_T(FN(sum_exp)(xr, K, m)) - xr[y];
  }
}

// dl (rows,K) = (softmax(l) - onehot(y)) * gy[0] / rows
void FN(bpck_cross_entropy_grad)(T *dl, const T *logits, const int32_t *labels, const T *gy, int64_t rows, int64_t K,
                                 int64_t begin, int64_t end) {
  T scale = gy[0] / (T)rows;
  for (int64_t r = begin; r < end; r++) {
    const T *xr = logits + r * K;
    T *dr = dl + r * K, mx = FN(fmax_row)(xr, K, 1);  // vector lanes (a NaN row is NaN either way)
    T a = scale / FN(exp_sum_row)(dr, xr, K, mx);  // then one pass: softmax * scale - onehot * scale
    for (int64_t c = 0; c < K; c++) dr[c] *= a;
    if (labels[r] >= 0 && labels[r] < K) dr[labels[r]] -= scale;
  }
}

void FN(bpck_accuracy_rows)(T *row_hit, const T *logits, const int32_t *labels, int64_t rows, int64_t K, int64_t begin,
                            int64_t end) {
  (void)rows;
  for (int64_t r = begin; r < end; r++) row_hit[r] = FN(argmax_row)(logits + r * K, K, 1) == labels[r] ? 1 : 0;
}

#include "kernels_lce_t.h"

// A block's length depends only on n, so its sum does not depend on the split.
void FN(bpck_sum_squares_blocks)(T *partial, const T *x, int64_t n, int64_t begin, int64_t end) {
  for (int64_t b = begin; b < end; b++)
    partial[b] = FN(sumsq_dev)(x + b * BPCK_SQ_BLOCK, KMIN((int64_t)BPCK_SQ_BLOCK, n - b * BPCK_SQ_BLOCK), 0);
}

void FN(bpck_sum_scale)(T *out, const T *x, int64_t n, T scale) {
  T s = 0;
  for (int64_t i = 0; i < n; i++) s += x[i];
  out[0] = scale * s;
}

// ============================================================ column statistics by row blocks
// A reduction over the rows of [R, I] with few columns has little to split
// by column; by row blocks (bpck_col_block rows) it splits any way, and the
// partials combine in block order, so the result is split-independent.

void FN(bpck_col_part)(int kind, T *part, const T *x, const T *center, int64_t R, int64_t I, int64_t begin,
                       int64_t end) {
  int64_t rb = bpck_col_block(I);
  for (int64_t b = begin; b < end; b++) {
    int64_t n = KMIN(rb, R - b * rb);
    const T *xb = x + b * rb * I;
    T *pb = part + b * I;
    if (I == 1) {  // one contiguous run
      pb[0] = kind == BPCK_VAR ? FN(sumsq_dev)(xb, n, center[0]) : FN(reduce_row)(kind, xb, n);
      continue;
    }
    for (int64_t i0 = 0; i0 < I; i0 += CW) {
      int64_t w = KMIN((int64_t)CW, I - i0);
      const T *xc = xb + i0, *cc = center ? center + i0 : NULL;
      if (kind == BPCK_SUM) {
        FN(col_sum)(pb + i0, xc, n, I, w);
      } else if (kind == BPCK_VAR) {
        T unused[CW];
#define DV(r, c) ((VAT(xc + (r) * I + (c)) - VAT(cc + (c))) * (VAT(xc + (r) * I + (c)) - VAT(cc + (c))))
#define DS(r, c) ((xc[(r) * I + (c)] - cc[c]) * (xc[(r) * I + (c)] - cc[c]))
        COL_SUMS(pb + i0, unused, 0, n, I, w, DV, ZV, DS, ZS)
#undef DV
#undef DS
      } else {
        T m[CW];
        for (int64_t i = 0; i < w; i++) m[i] = xc[i];
        for (int64_t r = 1; r < n; r++)
          for (int64_t i = 0; i < w; i++) m[i] = FN(ext_acc)(m[i], xc[r * I + i], kind == BPCK_MIN);
        for (int64_t i = 0; i < w; i++) pb[i0 + i] = m[i];
      }
    }
  }
}

void FN(bpck_col_finish)(int kind, T *out, const T *part, int64_t nb, int64_t I, T scale) {
  for (int64_t i = 0; i < I; i++) {
    T s = part[i];
    for (int64_t b = 1; b < nb; b++)
      s = kind == BPCK_MAX || kind == BPCK_MIN ? FN(ext_acc)(s, part[b * I + i], kind == BPCK_MIN)
                                               : s + part[b * I + i];
    out[i] = kind == BPCK_MAX || kind == BPCK_MIN ? s : s * scale;
  }
}

void FN(bpck_bn_apply)(T *out, const T *x, const T *mean, const T *var, const T *gamma, int64_t gn, const T *beta,
                       int64_t bn, int64_t C, T eps, int64_t begin, int64_t end) {
  T mu[CW], a[CW], b[CW];
  for (int64_t c0 = 0; c0 < C; c0 += CW) {
    int64_t w = KMIN((int64_t)CW, C - c0);
    for (int64_t c = 0; c < w; c++) {  // (x - mean) * rstd * gamma + beta, in that order
      mu[c] = mean[c0 + c];
      a[c] = 1 / SQRT_T(var[c0 + c] + eps);
      b[c] = beta[bn == 1 ? 0 : c0 + c];
    }
    for (int64_t r = begin; r < end; r++) {
      const T *xr = x + r * C + c0;
      T *yr = out + r * C + c0;
      for (int64_t c = 0; c < w; c++) yr[c] = (xr[c] - mu[c]) * a[c] * gamma[gn == 1 ? 0 : c0 + c] + b[c];
    }
  }
}

// Channels [c0, c0 + w) of gamma, mean and 1 / sqrt(var + eps), for one chunk.
static void FN(bn_chunk)(T *g, T *mu, T *rstd, const T *gamma, int64_t gn, const T *mean, const T *var, int64_t c0,
                         int64_t w, T eps) {
  for (int64_t c = 0; c < w; c++) {
    g[c] = gamma[gn == 1 ? 0 : c0 + c];
    mu[c] = mean[c0 + c];
    rstd[c] = 1 / SQRT_T(var[c0 + c] + eps);
  }
}

void FN(bpck_bn_dx_part)(T *part, const T *x, const T *gamma, int64_t gn, const T *gy, const T *mean, const T *var,
                         int64_t N, int64_t C, T eps, int64_t begin, int64_t end) {
  int64_t rb = bpck_col_block(C);
  T g[CW], mu[CW], rstd[CW];
  for (int64_t b = begin; b < end; b++) {
    int64_t n = KMIN(rb, N - b * rb);
    for (int64_t c0 = 0; c0 < C; c0 += CW) {
      int64_t w = KMIN((int64_t)CW, C - c0);
      FN(bn_chunk)(g, mu, rstd, gamma, gn, mean, var, c0, w, eps);
      const T *xc = x + b * rb * C + c0, *gc = gy + b * rb * C + c0;
#define GV(r, c) (VAT(gc + (r) * C + (c)) * VAT(g + (c)))
#define GS(r, c) (gc[(r) * C + (c)] * g[c])
#define GXV(r, c) (GV(r, c) * ((VAT(xc + (r) * C + (c)) - VAT(mu + (c))) * VAT(rstd + (c))))
#define GXS(r, c) (GS(r, c) * ((xc[(r) * C + (c)] - mu[c]) * rstd[c]))
      COL_SUMS(part + b * 2 * C + c0, part + b * 2 * C + C + c0, 1, n, C, w, GV, GXV, GS, GXS)
#undef GV
#undef GS
#undef GXV
#undef GXS
    }
  }
}

void FN(bpck_bn_dx_apply)(T *dx, const T *x, const T *gamma, int64_t gn, const T *gy, const T *mean, const T *var,
                          const T *m, int64_t C, T eps, int64_t begin, int64_t end) {
  T g[CW], mu[CW], rstd[CW], m1[CW], m2[CW];
  for (int64_t c0 = 0; c0 < C; c0 += CW) {
    int64_t w = KMIN((int64_t)CW, C - c0);
    FN(bn_chunk)(g, mu, rstd, gamma, gn, mean, var, c0, w, eps);
    for (int64_t c = 0; c < w; c++) m1[c] = m[c0 + c], m2[c] = m[C + c0 + c];
    for (int64_t r = begin; r < end; r++) {
      const T *xr = x + r * C + c0, *gr = gy + r * C + c0;
      T *dr = dx + r * C + c0;
      for (int64_t c = 0; c < w; c++) {
        T dxh = gr[c] * g[c], xh = (xr[c] - mu[c]) * rstd[c];
        dr[c] = rstd[c] * (dxh - m1[c] - xh * m2[c]);
      }
    }
  }
}

// ============================================================ regularization, fill

// GCC keeps x * scale inside the select under -ftrapping-math (its default),
// and the loop then does not vectorize.
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-trapping-math")))
#endif
void FN(bpck_dropout)(T *out, const T *x, int64_t n, double p, uint64_t seed, uint64_t salt,
                      uint64_t step, int64_t begin, int64_t end) {
  (void)n;
  uint64_t key = bpcrt_dropout_key(seed, salt, step);
  // p in double, as the interpreter's: the same threshold (a float p would
  // round 0.7 to a different one)
  uint32_t thr = bpcrt_dropout_threshold(p);
  T scale = (T)(1 / (1 - p));  // as PyTorch: x * (1 / (1 - p)); p = 1 keeps nothing
  for (int64_t i0 = begin; i0 < end;) {  // runs of one high word: one key32 each
    int64_t i1 = KMIN(end, (i0 | 0xffffffffLL) + 1);
    uint32_t k32 = bpcrt_dropout_key32(key, (uint64_t)i0), lo = (uint32_t)i0;
    const T *xs = x + i0;
    T *os = out + i0;
    for (int64_t j = 0; j < i1 - i0; j++)  // a select in 8 lanes
      os[j] = bpcrt_dropout_draw(k32, lo + (uint32_t)j) >= thr ? xs[j] * scale : 0;
    i0 = i1;
  }
}

void FN(bpck_window)(T *out, const T *in, int64_t D, int64_t start, int64_t len, int64_t begin, int64_t end) {
  for (int64_t o = begin; o < end; o++) {
    T *r = out + o * D;
    for (int64_t i = 0; i < start; i++) r[i] = 0;
    memcpy(r + start, in + o * len, sizeof(T) * (size_t)len);
    for (int64_t i = start + len; i < D; i++) r[i] = 0;
  }
}

void FN(bpck_fill)(T *out, T v, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; i++) out[i] = v;
}
#endif  // KT_PRODUCTS

#undef KCAT2
#undef KCAT
#undef FN
#undef ES
#undef EFN
#undef PK_T
#undef PK_AT
#undef KT_BF16
#undef V
#undef VM
#undef COL_SUMS
#undef NOFMA
#undef VAT
#undef ZV
#undef ZS
#undef EXP_T
#undef LOG_T
#undef VLOAD
#undef VSTORE
#undef KMIN
#undef CW
#undef FOR_COL_CHUNKS
#undef SHUF
#undef TRANSPOSE_VL