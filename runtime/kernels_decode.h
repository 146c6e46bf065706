// kernels_decode.h — attention of one new query over a key/value cache, the
// kernel of attention_decode (cached sampling, compiler/decode.c). Included
// once, at the end of kernels.c; one body instantiated for f32, f64 and
// bf16 (products of bf16-rounded operands with f32 sums, as the bf16
// attention's GEMMs take them: q and k, then the weights and v).
//
// out [1, 1, C] = softmax(q . K^T / sqrt(C/H)) V per head, over K = [kc rows
// [0, pos), k] and V = [vc rows [0, pos), v]; the kernel first stores k and
// v as row pos of kc and vc (each head its own columns), so the caller's
// cache grows by the row. Range: the H heads. scratch: pos + 1 scores.

#define BPCK_ATTENTION_DECODE(S, T, RND, SQRT, EXP)                                                            \
  void bpck_attention_decode_##S(T *out, const T *q, const T *k, const T *v, T *kc, T *vc, const int32_t *pos, \
                                 int64_t Tc, int64_t C, int64_t H, T *scratch, int64_t begin, int64_t end) {   \
    int64_t p = *pos, hs = C / H;                                                                              \
    T scale = 1 / SQRT((T)hs);                                                                                 \
    for (int64_t h = begin; h < end; h++) {                                                                    \
      int64_t o = h * hs;                                                                                      \
      T *oh = out + o, *s = scratch;                                                                           \
      for (int64_t d = 0; d < hs; d++) oh[d] = 0;                                                              \
      if (p < 0 || p >= Tc) continue; /* the trainer never asks: no row to write */                            \
      memcpy(kc + p * C + o, k + o, sizeof(T) * (size_t)hs);                                                   \
      memcpy(vc + p * C + o, v + o, sizeof(T) * (size_t)hs);                                                   \
      T m = (T) - INFINITY;                                                                                    \
      for (int64_t j = 0; j <= p; j++) {                                                                       \
        const T *kj = kc + j * C + o;                                                                          \
        T dot = 0;                                                                                             \
        for (int64_t d = 0; d < hs; d++) dot += RND(q[o + d]) * RND(kj[d]);                                    \
        s[j] = dot * scale;                                                                                    \
        m = s[j] > m ? s[j] : m;                                                                               \
      }                                                                                                        \
      T sum = 0;                                                                                               \
      for (int64_t j = 0; j <= p; j++) sum += s[j] = EXP(s[j] - m);                                            \
      T inv = 1 / sum;                                                                                         \
      for (int64_t j = 0; j <= p; j++) {                                                                       \
        const T *vj = vc + j * C + o;                                                                          \
        T w = RND(s[j] * inv);                                                                                 \
        for (int64_t d = 0; d < hs; d++) oh[d] += w * RND(vj[d]);                                              \
      }                                                                                                        \
    }                                                                                                          \
  }

#define BPCK_DECODE_EXACT(x) (x)
BPCK_ATTENTION_DECODE(f32, float, BPCK_DECODE_EXACT, sqrtf, expf)
BPCK_ATTENTION_DECODE(f64, double, BPCK_DECODE_EXACT, sqrt, exp)
BPCK_ATTENTION_DECODE(bf16, float, bpck_bf16_round, sqrtf, expf)
#undef BPCK_DECODE_EXACT
#undef BPCK_ATTENTION_DECODE
