// main.c — a C program that drives a compiled model itself through the
// object and header `bpc compile --emit lib` writes (docs/ABI.md): it reads
// the tensor layout from bpc_model_json, initializes the params, feeds XOR's
// four samples and runs Adam's step/update pair itself, no bpcrt_main.
//   bpc compile models/xor.yaml --emit lib -o xor   (xor.o, xor.h)
//   cc -Iruntime/include main.c xor.o libbpcrt.a -lcjson -lz -lm -lpthread
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xor.h"

static cJSON *train;  // programs.train of the description

// Byte offset of the tensor called `name`, or -1.
static long offset(const char *name) {
  cJSON *t;
  cJSON_ArrayForEach(
      t, cJSON_GetObjectItem(train, "tensors")) if (!strcmp(cJSON_GetObjectItem(t, "name")->valuestring,
                                                            name)) return (long)cJSON_GetObjectItem(t, "offset")
      ->valuedouble;
  return -1;
}

int main(void) {
  cJSON *model = cJSON_Parse(bpc_model_json);
  train = cJSON_GetObjectItem(cJSON_GetObjectItem(model, "programs"), "train");
  long arena = (long)cJSON_GetObjectItem(train, "arena")->valuedouble;
  long scratch = (long)cJSON_GetObjectItem(train, "scratch")->valuedouble;
  char *mem = aligned_alloc(64, (size_t)((arena + scratch + 63) / 64 * 64));
  memset(mem, 0, (size_t)(arena + scratch));
  // Params from their init specs, as the trainer does (seed 1).
  cJSON *t;
  cJSON_ArrayForEach(t, cJSON_GetObjectItem(train, "tensors")) {
    if (strcmp(cJSON_GetObjectItem(t, "role")->valuestring, "param")) continue;
    cJSON *init = cJSON_GetObjectItem(t, "init"), *shape = cJSON_GetObjectItem(t, "shape");
    long n = 1;
    for (int i = 0; i < cJSON_GetArraySize(shape); i++) n *= (long)cJSON_GetArrayItem(shape, i)->valuedouble;
    static const char *kinds[] = {"zeros",          "ones",          "constant",   "normal",   "uniform",
                                  "xavier_uniform", "xavier_normal", "he_uniform", "he_normal"};
    int kind = 0;
    for (int k = 0; k < 9; k++)
      if (!strcmp(kinds[k], cJSON_GetObjectItem(init, "kind")->valuestring)) kind = k;
    double *v = malloc(sizeof(double) * (size_t)n);
    const char *name = cJSON_GetObjectItem(t, "name")->valuestring;
    bpcrt_init_fill(kind, cJSON_GetObjectItem(init, "a")->valuedouble, cJSON_GetObjectItem(init, "b")->valuedouble,
                    (int64_t)cJSON_GetObjectItem(init, "fan_in")->valuedouble,
                    (int64_t)cJSON_GetObjectItem(init, "fan_out")->valuedouble, 1, bpcrt_fnv1a64(name), n, v);
    float *dst = (float *)(mem + (long)cJSON_GetObjectItem(t, "offset")->valuedouble);
    for (long i = 0; i < n; i++) dst[i] = (float)v[i];
    free(v);
  }
  const float x[8] = {0, 0, 0, 1, 1, 0, 1, 1}, y[4] = {0, 1, 1, 0};
  memcpy(mem + offset("x"), x, sizeof x);
  memcpy(mem + offset("y"), y, sizeof y);
  bpcrt_ctx ctx = {mem, mem + arena, NULL, 1, 0};
  const double lr = 0.05, b1 = 0.9, b2 = 0.999;
  for (int s = 0; s < 500; s++) {
    *(float *)(mem + offset("__lr_bc1")) = (float)(lr / (1 - pow(b1, s + 1)));
    *(float *)(mem + offset("__sqrt_bc2")) = (float)sqrt(1 - pow(b2, s + 1));
    bpc_train_step(&ctx);
    bpc_train_update(&ctx);
    if (s % 100 == 99) printf("step %d  loss %.6f\n", s + 1, *(float *)(mem + offset("loss")));
  }
  free(mem);
  cJSON_Delete(model);
  return 0;
}
