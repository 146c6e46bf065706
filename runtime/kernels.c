// kernels.c — the kernel library of bpc_kernels.h: scalar math for fused
// elementwise loops, packed GEMM, reductions, normalization, attention,
// convolution, indexing, losses and data movers, for float and double.
//
// Takes: dense row-major tensors and a work range [begin, end) per call.
// Guarantees: every output element is written by exactly one range and
// computed in an order that does not depend on the split (results are
// bit-identical for any split); no allocation, no TLS, no intrinsics headers
// (GCC/Clang vector extensions only). The f32 scalar math is branch-free
// (selects, bit tricks, Cephes/SLEEF-style range reduction and polynomials)
// and calls no libm function, so a loop over it vectorizes; the f64 scalar
// math calls libm because gradient checks want exactness there.
// Leaves out: threading (the pool hands out ranges), elementwise loops
// (codegen fuses those itself).
//
// The type-generic bodies live in kernels_t.h, included once per type with
// T (element type), S (name suffix), VL (lanes of a 32-byte vector) and the
// GEMM blocking. The file is built for x86-64-v3 (AVX2, FMA); the f32 GEMM
// also has an AVX-512 path (kernels_avx512.h, functions with a target
// attribute) that bpck_isa() picks at run time, giving the same bits.
// Measured f32 accuracy against libm in double (test_kernels, dense
// sweeps): see the table in tests/test_kernels.c (scalar_math_*).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bpc.h"
#include "bpc_kernels.h"

// ============================================================ f32 scalar math

// clang: always inline the f32 math (and its helpers) into callers (a loop calling erf or gelu
// then vectorizes; the inliner's size limit would otherwise keep the call).
// GCC wants `inline` for the attribute, which external definitions can't
// carry here, so it gets none.
#ifdef __clang__
#define MATH_INLINE __attribute__((always_inline))
#else
#define MATH_INLINE
#endif

static inline __attribute__((always_inline)) uint32_t f2u(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return u;
}
static inline __attribute__((always_inline)) float u2f(uint32_t u) {
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
}
static inline __attribute__((always_inline)) uint64_t d2u(double x) {
  uint64_t u;
  memcpy(&u, &x, sizeof u);
  return u;
}
static inline __attribute__((always_inline)) double u2d(uint64_t u) {
  double x;
  memcpy(&x, &u, sizeof x);
  return x;
}

// Round to nearest integer, |x| < 2^22 (the magic-number trick: no libm,
// vectorizes; callers clamp first).
static inline __attribute__((always_inline)) float rint_f(float x) { return (x + 12582912.0f) - 12582912.0f; }
static inline __attribute__((always_inline)) float abs_f(float x) { return u2f(f2u(x) & 0x7fffffffu); }
static inline __attribute__((always_inline)) float clamp_f(float x, float lo, float hi) {
  x = x > hi ? hi : x;
  return x < lo ? lo : x;
}

// Cephes expf: n = round(x / ln 2), r = x - n ln 2 in two parts, a degree-6
// polynomial, and 2^n applied in two halves so that results near the
// overflow and subnormal ends are right.
// The reduction and polynomial, shared by the scalar and the 8-lane version
// (vexp_f32) so both give the same bits: xc clamped, y = e^r, n = round(x/ln2).
#define EXPF_POLY(T, xc, n, y)     \
  T r = xc - n * 0.693359375f;     \
  r = r - n * -2.12194440e-4f;     \
  T z = r * r;                     \
  T y = (T){0} + 1.9875691500e-4f; \
  y = y * r + 1.3981999507e-3f;    \
  y = y * r + 8.3334519073e-3f;    \
  y = y * r + 4.1665795894e-2f;    \
  y = y * r + 1.6666665459e-1f;    \
  y = y * r + 5.0000001201e-1f;    \
  y = y * z + r + 1.0f;

static inline __attribute__((always_inline)) float exp_in_f32(float x) {
  float xc = clamp_f(x != x ? 0.0f : x, -104.0f, 89.0f);
  float n = rint_f(xc * 1.44269504088896341f);
  EXPF_POLY(float, xc, n, y)
  int32_t ni = (int32_t)n, n1 = ni / 2, n2 = ni - n1;
  y = y * u2f((uint32_t)(n1 + 127) << 23) * u2f((uint32_t)(n2 + 127) << 23);
  return x != x ? x : y;
}

// Cephes logf: x = m 2^e with m in [sqrt(1/2), sqrt(2)), a degree-9
// polynomial in m - 1; subnormals are scaled by 2^25 first.
static inline __attribute__((always_inline)) float log_in_f32(float x) {
  int tiny = x < 1.17549435e-38f;
  float xs = tiny ? x * 33554432.0f : x;
  uint32_t u = f2u(xs);
  int32_t e = (int32_t)((u >> 23) & 0xffu) - 126 - (tiny ? 25 : 0);
  float m = u2f((u & 0x007fffffu) | 0x3f000000u);  // [0.5, 1)
  int lo = m < 0.707106781186547524f;
  e -= lo;
  float f = lo ? m + m - 1.0f : m - 1.0f;
  float z = f * f;
  float y = 7.0376836292e-2f;
  y = y * f - 1.1514610310e-1f;
  y = y * f + 1.1676998740e-1f;
  y = y * f - 1.2420140846e-1f;
  y = y * f + 1.4249322787e-1f;
  y = y * f - 1.6668057665e-1f;
  y = y * f + 2.0000714765e-1f;
  y = y * f - 2.4999993993e-1f;
  y = y * f + 3.3333331174e-1f;
  y = y * f * z;
  float ef = (float)e;
  y = y + ef * -2.12194440e-4f;
  y = y - 0.5f * z;
  float r = f + y;
  r = r + ef * 0.693359375f;
  r = x == 0.0f ? -INFINITY : r;
  r = x < 0.0f ? NAN : r;
  r = x == INFINITY ? x : r;
  return x != x ? x : r;
}

// The exported names; the kernels below call the always-inlined bodies (GCC
// would otherwise call these per element and the loops would not vectorize).
MATH_INLINE float bpck_exp_f32(float x) { return exp_in_f32(x); }
MATH_INLINE float bpck_log_f32(float x) { return log_in_f32(x); }

// Cephes tanhf: an odd polynomial below 0.625, else 1 - 2 / (e^2|x| + 1).
MATH_INLINE float bpck_tanh_f32(float x) {
  float a = abs_f(x), z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  float small = p * z * x + x;
  float big = 1.0f - 2.0f / (bpck_exp_f32(2.0f * a) + 1.0f);
  big = u2f(f2u(big) | (f2u(x) & 0x80000000u));
  return a < 0.625f ? small : big;
}

#define GELU_C 0.7978845608028654f  // sqrt(2 / pi)
#define GELU_A 0.044715f
#define INV_SQRT2 0.70710678118654752f
#define INV_SQRT_2PI 0.3989422804014327f

// SLEEF's 3.5-ulp sinf/cosf kernel: reduce by multiples of pi in four parts
// (exact products for |q| < 2^12, so accurate to |x| ~ 1e4, degrading
// slowly beyond), then an odd polynomial on [-pi/2, pi/2].
#define PI_A 3.140625f
#define PI_B 0.0009670257568359375f
#define PI_C 6.2771141529083251953e-07f
#define PI_D 1.2154201256553420762e-10f

static inline __attribute__((always_inline)) float sin_poly(float d, int32_t flip) {
  float s = d * d;
  d = u2f(f2u(d) ^ ((uint32_t)flip << 31));
  float u = 2.6083159809786593541503e-06f;
  u = u * s - 0.0001981069071916863322258f;
  u = u * s + 0.00833307858556509017944336f;
  u = u * s - 0.166666597127914428710938f;
  return s * (u * d) + d;
}

static inline __attribute__((always_inline)) float reduce_pi(float x, float q, float half) {
  float d = x - q * (PI_A * half);
  d = d - q * (PI_B * half);
  d = d - q * (PI_C * half);
  return d - q * (PI_D * half);
}

MATH_INLINE float bpck_sin_f32(float x) {
  float t = x * 0.318309886183790671538f;
  float q = rint_f(clamp_f(t != t ? 0.0f : t, -4194304.0f, 4194304.0f));
  float r = sin_poly(reduce_pi(x, q, 1.0f), (int32_t)q & 1);
  return abs_f(x) <= 3.40282347e38f ? r : x - x;  // inf, NaN -> NaN
}

MATH_INLINE float bpck_cos_f32(float x) {
  float t = x * 0.318309886183790671538f - 0.5f;
  float q = 2.0f * rint_f(clamp_f(t != t ? 0.0f : t, -2097152.0f, 2097152.0f)) + 1.0f;
  float r = sin_poly(reduce_pi(x, q, 0.5f), ((int32_t)q & 2) == 0);
  return abs_f(x) <= 3.40282347e38f ? r : x - x;
}

// exp(-h z^2), h = 1 or 1/2, without the error of rounding z^2: z = zh + zl
// with zh of 12 bits, so h zh^2 is exact and the rest is small.
static inline __attribute__((always_inline)) float exp_negsq(float z, float h) {
  float zh = u2f(f2u(z) & 0xfffff000u), zl = z - zh;
  return bpck_exp_f32(-zh * zh * h) * bpck_exp_f32(-zl * (z + zh) * h);
}

// Cephes erff/erfcf: x P(x^2) below 1; else erfc = exp(-x^2)/x R(1/x^2)
// with one rational fit on [1, 2) and one beyond. erf = 1 - erfc keeps full
// accuracy near 1, erfc keeps it in the tail. The tail takes a = |z| and
// e = exp(-z^2) separately: gelu passes z = x / sqrt 2 and computes e from
// the exact x (rounding z first would cost ~2 z^2 ulp).
static inline __attribute__((always_inline)) float erf_small(float x) {
  float z = x * x;
  float y = 7.853861353153693e-5f;
  y = y * z - 8.010193625184903e-4f;
  y = y * z + 5.188327685732524e-3f;
  y = y * z - 2.685381193529856e-2f;
  y = y * z + 1.128358514861418e-1f;
  y = y * z - 3.761262582423300e-1f;
  y = y * z + 1.128379165726710e+0f;
  return x * y;
}

static inline __attribute__((always_inline)) float erfc_tail(float a, float e) {  // a >= 1, e = exp(-a^2)
  float q = 1.0f / a, y = q * q;
  float p = 2.326819970068386e-2f;
  p = p * y - 1.387039388740657e-1f;
  p = p * y + 3.687424674597105e-1f;
  p = p * y - 5.824733027278666e-1f;
  p = p * y + 6.210004621745983e-1f;
  p = p * y - 4.944515323274145e-1f;
  p = p * y + 3.404879937665872e-1f;
  p = p * y - 2.741127028184656e-1f;
  p = p * y + 5.638259427386472e-1f;
  float r = -1.047766399936249e+1f;
  r = r * y + 1.297719955372516e+1f;
  r = r * y - 7.495518717768503e+0f;
  r = r * y + 2.921019019210786e+0f;
  r = r * y - 1.015265279202700e+0f;
  r = r * y + 4.218463358204948e-1f;
  r = r * y - 2.820767439740514e-1f;
  r = r * y + 5.641895067754075e-1f;
  float c = e * q * (a < 2.0f ? p : r);
  return a < 10.0f ? c : 0.0f;
}

// erfc(-x / sqrt 2), the factor of gelu's erf form: accurate in both tails.
static inline __attribute__((always_inline)) float erfc_gelu(float x) {
  float z = -x * INV_SQRT2, a = abs_f(z);
  float t = erfc_tail(a, exp_negsq(clamp_f(abs_f(x), 0.0f, 15.0f), 0.5f));
  float big = z < 0.0f ? 2.0f - t : t;
  return a < 1.0f ? 1.0f - erf_small(z) : big;
}

MATH_INLINE float bpck_erf_f32(float x) {
  float a = abs_f(x), t = erfc_tail(a, exp_negsq(clamp_f(a, 0.0f, 10.0f), 1.0f));
  float big = u2f(f2u(1.0f - t) | (f2u(x) & 0x80000000u));
  return ((a < 1.0f) | (x != x)) ? erf_small(x) : big;
}

// pow works in double inside (log and exp by short Taylor/atanh series, no
// libm): the product p * log|x| needs more than 24 bits for a few-ulp result.
static inline __attribute__((always_inline)) double log_d(double x) {  // x > 0, finite, normal
  uint64_t u = d2u(x);
  double e = (double)((int64_t)(u >> 52) - 1023);
  double m = u2d((u & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL);  // [1, 2)
  int hi = m > 1.4142135623730951;
  m = hi ? m * 0.5 : m;
  e = hi ? e + 1.0 : e;
  double s = (m - 1.0) / (m + 1.0), s2 = s * s;  // log m = 2 atanh s, |s| < 0.172
  double p = 1.0 / 21;
  for (int k = 19; k >= 3; k -= 2) p = p * s2 + 1.0 / k;
  return e * 0.6931471805599453 + (2.0 * s + 2.0 * s * s2 * p);
}

static inline __attribute__((always_inline)) double exp_d(double t) {  // result meant for a float
  double tc = t != t ? 0.0 : t;
  tc = tc > 90.0 ? 90.0 : tc < -110.0 ? -110.0 : tc;
  double n = (tc * 1.4426950408889634 + 6755399441055744.0) - 6755399441055744.0;
  double r = tc - n * 6.93147180369123816490e-01;
  r = r - n * 1.90821492927058770002e-10;
  double y = 1.0 / 6227020800.0;  // 1/13!
  double f = 6227020800.0;
  for (int k = 12; k >= 1; k--) {
    f /= (double)(k + 1);
    y = y * r + 1.0 / f;
  }
  y = y * r + 1.0;
  y *= u2d((uint64_t)((int64_t)n + 1023) << 52);
  return t != t ? t : y;
}

MATH_INLINE float bpck_pow_f32(float x, float p) {
  float a = abs_f(x);
  double l = log_d(a == 0.0f || a > 3.40282347e38f || a != a ? 1.0 : (double)a);
  l = a == 0.0f ? -INFINITY : a > 3.40282347e38f ? INFINITY : l;
  float r = (float)exp_d((double)p * l);
  int pint = abs_f(p) >= 16777216.0f || (abs_f(p) < 4194304.0f && rint_f(p) == p);
  int odd = abs_f(p) < 4194304.0f && pint && ((int32_t)rint_f(clamp_f(p, -4194304.0f, 4194304.0f)) & 1);
  r = (f2u(x) >> 31) && odd ? -r : r;                  // negative base, odd power
  r = x < 0.0f && !pint ? NAN : r;                     // negative base, fractional power
  r = x != x ? x : r;
  return p == 0.0f ? 1.0f : r;
}

// exp only of -|x|: no overflow, subnormal results kept.
MATH_INLINE float bpck_sigmoid_f32(float x) {
  float e = bpck_exp_f32(-abs_f(x)), r = 1.0f / (1.0f + e);
  return x >= 0.0f ? r : e * r;
}

// log1p(y) = log(1 + y) * y / ((1 + y) - 1): the rounding of 1 + y cancels.
static inline __attribute__((always_inline)) float log1p_f(float y) {
  float u = 1.0f + y;
  float r = bpck_log_f32(u) * (y / (u - 1.0f));
  return u == 1.0f ? y : r;
}

MATH_INLINE float bpck_softplus_f32(float x) { return (x > 0.0f ? x : 0.0f) + log1p_f(bpck_exp_f32(-abs_f(x))); }

MATH_INLINE float bpck_silu_f32(float x) { return x * bpck_sigmoid_f32(x); }

// tanh form: 0.5 x (1 + tanh u) = x sigmoid(2u), accurate for both signs,
// all in float so the loop runs 8 wide; erf form: 0.5 x erfc(-x / sqrt 2),
// accurate in the negative tail (up to ~16 ulp where erfc = 1 - erf, |x| in
// [0.7, 1.4]).
MATH_INLINE float bpck_gelu_f32(float x, float p) {
  float c = x < -1e10f ? -1e10f : x > 1e10f ? 1e10f : x;  // x^3 stays finite
  float u = GELU_C * (c + GELU_A * c * c * c);
  float t = x * bpck_sigmoid_f32(2.0f * u);
  float e = 0.5f * x * erfc_gelu(x);
  return p != 0.0f ? t : e;
}

// tanh form: with s = sigmoid(2u), 0.5 (1 + t) = s and 1 - t^2 = 4 s (1 - s).
MATH_INLINE float bpck_gelu_grad_f32(float x, float p) {
  float x2 = x * x;
  x2 = x2 < 1e30f ? x2 : 1e30f;  // where it matters s (1 - s) is 0 already
  float u = GELU_C * (x + GELU_A * x * x2);
  float em = bpck_exp_f32(-2.0f * abs_f(u)), r = 1.0f / (1.0f + em);
  float s = u >= 0.0f ? r : em * r, oms = u >= 0.0f ? em * r : r;
  float t = s + 2.0f * x * (s * oms) * GELU_C * (1.0f + 3.0f * GELU_A * x2);
  float e = 0.5f * erfc_gelu(x) + x * INV_SQRT_2PI * bpck_exp_f32(-0.5f * x2);
  return p != 0.0f ? t : e;
}

// ============================================================ f64 scalar math
// libm, the same formulas as the interpreter (interp.c, interp_grad.c).

double bpck_exp_f64(double x) { return exp(x); }
static inline double exp_in_f64(double x) { return exp(x); }
static inline double log_in_f64(double x) { return log(x); }
double bpck_log_f64(double x) { return log(x); }
double bpck_tanh_f64(double x) { return tanh(x); }
double bpck_sin_f64(double x) { return sin(x); }
double bpck_cos_f64(double x) { return cos(x); }
double bpck_erf_f64(double x) { return erf(x); }
double bpck_pow_f64(double x, double p) { return pow(x, p); }

double bpck_sigmoid_f64(double x) {
  if (x >= 0) return 1.0 / (1.0 + exp(-x));
  double e = exp(x);
  return e / (1.0 + e);
}

double bpck_softplus_f64(double x) { return fmax(x, 0.0) + log1p(exp(-fabs(x))); }
double bpck_silu_f64(double x) { return x * bpck_sigmoid_f64(x); }

double bpck_gelu_f64(double x, double p) {
  if (p != 0) return 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
  return 0.5 * x * (1.0 + erf(x / 1.4142135623730951));
}

double bpck_gelu_grad_f64(double x, double p) {
  const double c = 0.7978845608028654, k = 0.3989422804014327;
  if (p != 0) {
    double t = tanh(c * (x + 0.044715 * x * x * x));
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x);
  }
  return 0.5 * (1 + erf(x / sqrt(2.0))) + x * k * exp(-0.5 * x * x);
}

// ============================================================ f32 vector math
// exp_in_f32 on 8 lanes, step for step, for the kernels' exp loops (softmax,
// attention, cross_entropy): GCC does not vectorize the scalar version.
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

// Vectors move through pointers, never by value (kernels_t.h's rule: the ABI
// of vector arguments changes with -mavx).
#define VSEL_F32(m, a, b) ((v8f)(((v8i)(a) & (m)) | ((v8i)(b) & ~(m))))

static inline void vexp_f32(v8f *v) {
  v8f x = *v;
  v8i nan = x != x;
  v8f xc = VSEL_F32(nan, (v8f){0}, x);
  xc = VSEL_F32(xc > 89.0f, (v8f){0} + 89.0f, xc);
  xc = VSEL_F32(xc < -104.0f, (v8f){0} - 104.0f, xc);
  v8f n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  EXPF_POLY(v8f, xc, n, y)
  v8i ni = __builtin_convertvector(n, v8i), n1 = ni / 2, n2 = ni - n1;
  y = y * (v8f)((n1 + 127) << 23) * (v8f)((n2 + 127) << 23);
  *v = VSEL_F32(nan, x, y);
}

// ============================================================ ISA dispatch
// Decided on the first GEMM. No constructor, and bpck_set_isa is never
// inlined: this file is also the embedded bitcode, whose bpck_ kernels lose
// their bodies, so the cpuid reads (__cpu_model, which a JIT cannot resolve)
// stay in libbpcrt. A race of first calls writes the same value.

static int isa_now = -1;

__attribute__((noinline)) int bpck_set_isa(int isa) {
  int ok512 = 0;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  ok512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
          __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
#endif
  if (isa == BPCK_ISA_AUTO) {
    const char *e = getenv("BPC_ISA");
    isa = e && !strcmp(e, "avx2") ? BPCK_ISA_AVX2 : BPCK_ISA_AVX512;
  }
  isa = isa == BPCK_ISA_AVX512 && ok512 ? BPCK_ISA_AVX512 : BPCK_ISA_AVX2;
  __atomic_store_n(&isa_now, isa, __ATOMIC_RELAXED);
  return isa;
}

int bpck_isa(void) {
  int isa = __atomic_load_n(&isa_now, __ATOMIC_RELAXED);
  return isa >= 0 ? isa : bpck_set_isa(BPCK_ISA_AUTO);
}

// ============================================================ type-generic kernels

#define T float
#define S f32
#define VL 8
#define HAVE_VEXP 1
#define SQRT_T __builtin_sqrtf
#define GEMM_MR 6
#define GEMM_NR 16
#define GEMM_MC 144
#define GEMM_KC 384
#define GEMM_NC 4080
// The f32 GEMM's AVX-512 path (kernels_avx512.h), taken by gemm_range_f32
// when bpck_isa() says so.
#define K512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq")))
#define GEMM_WIDE gemm512_range
#define GEMM_WIDE_BLOCK gemm512_block
K512 static void gemm512_range(int64_t N, int64_t K, const float *A, int64_t lda, int transa, const float *B,
                               int64_t ldb, int transb, float *C, int64_t ldc, int accumulate, float *scratch,
                               int64_t i0, int64_t i1, int64_t j0, int64_t j1);
K512 static void gemm512_block(const float *A, int64_t lda, int transa, const float *Bp, int64_t pstride, float *Ap,
                               float *C, int64_t ldc, int64_t jc, int64_t nc, int64_t pc, int64_t kc, int first,
                               int64_t begin, int64_t end);
#include "kernels_t.h"
#define KMIN(a, b) ((a) < (b) ? (a) : (b))
#include "kernels_avx512.h"
#undef KMIN
#undef K512
#undef GEMM_WIDE
#undef GEMM_WIDE_BLOCK
#undef T
#undef S
#undef VL
#undef HAVE_VEXP
#undef SQRT_T
#undef GEMM_MR
#undef GEMM_NR
#undef GEMM_MC
#undef GEMM_KC
#undef GEMM_NC

#define T double
#define S f64
#define VL 4
#define HAVE_VEXP 0
#define SQRT_T __builtin_sqrt
#define GEMM_MR 6
#define GEMM_NR 8
#define GEMM_MC 72
#define GEMM_KC 256
#define GEMM_NC 2040
#include "kernels_t.h"
#undef T
#undef S
#undef VL
#undef HAVE_VEXP
#undef SQRT_T
#undef GEMM_MR
#undef GEMM_NR
#undef GEMM_MC
#undef GEMM_KC
#undef GEMM_NC

// ============================================================ bf16 products
// The bf16 GEMM (kernels_bf16.h), then attention and convolution again on it
// (kernels_t.h's products only, KT_PRODUCTS; row helpers from f32, ES).
#include <immintrin.h>  // __m512bh and _mm512_dpbf16_ps: the one intrinsic the vector extensions lack
#define T float
#define S bf16
#define ES f32
#define VL 8
#define HAVE_VEXP 1
#define SQRT_T __builtin_sqrtf
#define GEMM_MR 6
#define GEMM_NR 16
#define GEMM_MC 144
#define GEMM_KC 384
#define GEMM_NC 4080
#define KT_PRODUCTS 1
#define KMIN(a, b) ((a) < (b) ? (a) : (b))
#include "kernels_bf16.h"
#undef KMIN
#include "kernels_t.h"

// ============================================================ integer reductions

void bpck_reduce_i32(int kind, int32_t *out, const int32_t *in, int64_t O, int64_t R, int64_t I, int64_t begin,
                     int64_t end) {
  (void)O;
  for (int64_t idx = begin; idx < end; idx++) {
    const int32_t *x = in + idx / I * R * I + idx % I;
    uint32_t s = 0;
    int32_t m = x[0];
    for (int64_t r = 0; r < R; r++) {
      int32_t v = x[r * I];
      s += (uint32_t)v;
      m = kind == BPCK_MAX ? (v > m ? v : m) : (v < m ? v : m);
    }
    out[idx] = kind == BPCK_SUM ? (int32_t)s : m;
  }
}

// ============================================================ data movers
// Element-size generic: f32 and i32 move 4-byte words, f64 8-byte ones.

static void copy_run(char *out, int64_t os, const char *in, int64_t is, int64_t n, size_t esz) {
  if (os == 1 && is == 1) {
    memcpy(out, in, (size_t)n * esz);
  } else if (esz == 4) {
    uint32_t *o = (uint32_t *)(void *)out;
    const uint32_t *s = (const uint32_t *)(const void *)in;
    for (int64_t i = 0; i < n; i++) o[i * os] = s[i * is];
  } else {
    uint64_t *o = (uint64_t *)(void *)out;
    const uint64_t *s = (const uint64_t *)(const void *)in;
    for (int64_t i = 0; i < n; i++) o[i * os] = s[i * is];
  }
}

// Walks flat indices [begin, end) of `shape` with an odometer, one innermost
// run per copy_run call (a memcpy when both innermost strides are 1).
static void strided_copy(char *out, const int64_t *ost, const char *in, const int64_t *ist, int rank,
                         const int64_t *shape, int64_t begin, int64_t end, size_t esz) {
  if (begin >= end) return;
  if (rank == 0) {
    memcpy(out, in, esz);
    return;
  }
  int64_t idx[BPCRT_MAX_RANK], oo = 0, io = 0, rem = begin;
  for (int d = rank - 1; d >= 0; d--) {
    idx[d] = rem % shape[d];
    rem /= shape[d];
    oo += idx[d] * ost[d];
    io += idx[d] * ist[d];
  }
  int last = rank - 1;
  for (int64_t left = end - begin; left > 0;) {
    int64_t run = shape[last] - idx[last];
    run = run < left ? run : left;
    copy_run(out + oo * (int64_t)esz, ost[last], in + io * (int64_t)esz, ist[last], run, esz);
    left -= run;
    idx[last] += run;
    oo += run * ost[last];
    io += run * ist[last];
    for (int d = last; d > 0 && idx[d] == shape[d]; d--) {
      oo += ost[d - 1] - shape[d] * ost[d];
      io += ist[d - 1] - shape[d] * ist[d];
      idx[d] = 0;
      idx[d - 1]++;
    }
  }
}

void bpck_strided_copy_f32(float *out, const int64_t *out_strides, const float *in, const int64_t *in_strides, int rank,
                           const int64_t *shape, int64_t begin, int64_t end) {
  strided_copy((char *)out, out_strides, (const char *)in, in_strides, rank, shape, begin, end, 4);
}

void bpck_strided_copy_f64(double *out, const int64_t *out_strides, const double *in, const int64_t *in_strides,
                           int rank, const int64_t *shape, int64_t begin, int64_t end) {
  strided_copy((char *)out, out_strides, (const char *)in, in_strides, rank, shape, begin, end, 8);
}

void bpck_strided_copy_i32(int32_t *out, const int64_t *out_strides, const int32_t *in, const int64_t *in_strides,
                           int rank, const int64_t *shape, int64_t begin, int64_t end) {
  strided_copy((char *)out, out_strides, (const char *)in, in_strides, rank, shape, begin, end, 4);
}

void bpck_arange_i32(int32_t *out, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; i++) out[i] = (int32_t)i;
}

// ============================================================ cached sampling

#include "kernels_decode.h"
