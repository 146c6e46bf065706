// cpu.c — does this CPU have what a trainer was compiled for? A trainer
// built with `--cpu native` on an AVX-512 machine and started on an
// AVX2-only one would die of SIGILL in its first kernel; bpcrt_main asks
// here first and exits 1 naming the missing features instead.
#include <stdio.h>
#include <string.h>

#include "bpc.h"

// The x86 features generated code can use that the compiler's runtime can
// ask the CPU about (__builtin_cpu_supports takes literals only). Features
// outside the table are not checked.
// clang-format off
#define CPU_FEATURES(X)                                                                           \
  X("sse3") X("ssse3") X("sse4.1") X("sse4.2") X("popcnt") X("avx") X("avx2") X("fma") X("bmi")  \
  X("bmi2") X("aes") X("pclmul") X("gfni") X("vpclmulqdq") X("avx512f") X("avx512vl")             \
  X("avx512bw") X("avx512dq") X("avx512cd") X("avx512vbmi") X("avx512vbmi2") X("avx512ifma")      \
  X("avx512vnni") X("avx512bitalg") X("avx512vpopcntdq") X("avx512bf16") X("avx512fp16")          \
  X("avx512vp2intersect") X("avxvnni") X("amx-tile") X("amx-int8") X("amx-bf16")
// clang-format on

// -1: a feature the table does not know; else whether the CPU has it.
static int cpu_has(const char *name, size_t len) {
#define X(f) \
  if (len == sizeof(f) - 1 && !memcmp(name, f, len)) return __builtin_cpu_supports(f) != 0;
  CPU_FEATURES(X)
#undef X
  return -1;
}

int bpcrt_cpu_check(const char *target, char *err, size_t errlen) {
  if (!target) return 1;
  const char *colon = strchr(target, ':');
  const char *p = colon ? colon + 1 : target;
  char missing[512] = "";
  size_t used = 0;
  int nmissing = 0;
  __builtin_cpu_init();
  while (*p) {
    while (*p == ' ') p++;
    size_t len = strcspn(p, " ");
    if (len && cpu_has(p, len) == 0) {
      int w = snprintf(missing + used, sizeof missing - used, "%s%.*s", nmissing ? ", " : "", (int)len, p);
      if (w > 0 && (size_t)w < sizeof missing - used) used += (size_t)w;
      nmissing++;
    }
    p += len;
  }
  if (!nmissing) return 1;
  int cpu_len = colon ? (int)(colon - target) : 0;
  snprintf(err, errlen,
           "this trainer was compiled for %.*s and needs %s, which this CPU lacks: compile it again on "
           "this machine (bpc compile MODEL.yaml, --cpu native) or for a CPU both have (--cpu x86-64-v3)",
           cpu_len ? cpu_len : 7, cpu_len ? target : "its CPU", missing);
  return 0;
}
