// init.c — deterministic param initialization (SPEC 1.8). Fan-in is the
// product of all dims but the last, fan-out the last dim (the caller computes
// both). Normal samples use Box-Muller on two uniform draws per element.
#include <math.h>

#include "bpc.h"

static double uniform53(uint64_t seed, uint64_t stream, uint64_t ctr) {
  return (double)(bpcrt_rand64(seed, stream, ctr) >> 11) * (1.0 / 9007199254740992.0);
}

static double normal(uint64_t seed, uint64_t stream, uint64_t i) {
  double u1 = 1.0 - uniform53(seed, stream, 2 * i);  // (0, 1]: log is finite
  double u2 = uniform53(seed, stream, 2 * i + 1);
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void bpcrt_init_fill(int kind, double a, double b, int64_t fan_in, int64_t fan_out, uint64_t seed, uint64_t stream,
                     int64_t n, double *out) {
  bpcrt_init_fill_at(kind, a, b, fan_in, fan_out, seed, stream, 0, n, out);
}

void bpcrt_init_fill_at(int kind, double a, double b, int64_t fan_in, int64_t fan_out, uint64_t seed, uint64_t stream,
                        int64_t first, int64_t n, double *out) {
  double lo = 0, hi = 0, mean = 0, std = 0;
  int is_normal = 0;
  switch (kind) {
  case BPCRT_INIT_ZEROS:
    for (int64_t i = 0; i < n; i++) out[i] = 0;
    return;
  case BPCRT_INIT_ONES:
    for (int64_t i = 0; i < n; i++) out[i] = 1;
    return;
  case BPCRT_INIT_CONSTANT:
    for (int64_t i = 0; i < n; i++) out[i] = a;
    return;
  case BPCRT_INIT_NORMAL: is_normal = 1, mean = a, std = b; break;
  case BPCRT_INIT_UNIFORM: lo = a, hi = b; break;
  case BPCRT_INIT_XAVIER_UNIFORM: hi = sqrt(6.0 / (double)(fan_in + fan_out)), lo = -hi; break;
  case BPCRT_INIT_XAVIER_NORMAL: is_normal = 1, std = sqrt(2.0 / (double)(fan_in + fan_out)); break;
  case BPCRT_INIT_HE_UNIFORM: hi = sqrt(6.0 / (double)fan_in), lo = -hi; break;
  case BPCRT_INIT_HE_NORMAL: is_normal = 1, std = sqrt(2.0 / (double)fan_in); break;
  default:
    for (int64_t i = 0; i < n; i++) out[i] = 0;
    return;
  }
  for (int64_t i = 0; i < n; i++)
    out[i] = is_normal ? mean + std * normal(seed, stream, (uint64_t)(first + i))
                       : lo + (hi - lo) * uniform53(seed, stream, (uint64_t)(first + i));
}
