// testutil.h — helpers shared by the Criterion suites: load a model from a
// string or a file with diagnostics captured in memory.
#pragma once
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpcc.h"

// Diagnostics captured in a growing in-memory buffer.
typedef struct Captured {
  Diag d;
  char *buf;
  size_t len;
} Captured;

static inline void cap_open(Captured *c) {
  c->buf = NULL;
  c->len = 0;
  diag_init(&c->d, open_memstream(&c->buf, &c->len));
}

static inline const char *cap_text(Captured *c) {
  fflush(c->d.out);
  return c->buf ? c->buf : "";
}

static inline void cap_close(Captured *c) {
  fclose(c->d.out);
  free(c->buf);
}

// Loads `yaml` (named "t.yaml" in errors) and builds its graph in `dt`.
static inline Graph *build_text(Arena *a, Captured *c, const char *yaml, DType dt) {
  Model *m = model_load_text(a, &c->d, "t.yaml", yaml, strlen(yaml));
  return m ? graph_build(m, &c->d, NULL, 0, dt) : NULL;
}
