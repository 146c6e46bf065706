// testutil.h — helpers shared by the Criterion suites: load a model from a
// string or a file with diagnostics captured in memory.
#pragma once
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

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

// A model without `loss:` (a pretrained encoder, models/minilm.yaml) gets
// the sum over its outputs of sum(sin(output)) as the loss, so the suites
// that differentiate every model check its gradients too.
static inline void loss_from_outputs(Graph *g) {
  if (g->loss >= 0) return;
  for (int i = 0; i < g->outputs.n; i++) {
    int o = g->outputs.v[i].node;
    Loc loc = graph_node(g, o)->loc;
    int s = g_unary(g, OP_SUM, g_unary(g, OP_SIN, o, loc), loc);
    g->loss = g->loss < 0 ? s : g_binary(g, OP_ADD, g->loss, s, loc);
  }
}

#ifdef BPC_BINARY
// Runs `bpc ARGS` (ARGS from fmt) with cwd `dir`, stdout and stderr into
// *out (the caller frees it); returns the exit code (a death fails the test).
static inline int run_bpc_in(const char *dir, char **out, const char *fmt, va_list ap) {
  char args[2048], cmd[4096];
  vsnprintf(args, sizeof args, fmt, ap);
  snprintf(cmd, sizeof cmd, "cd %s && %s %s 2>&1", dir, BPC_BINARY, args);
  FILE *p = popen(cmd, "r");
  cr_assert(p);
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  for (size_t got; (got = fread(buf + n, 1, cap - n - 1, p)) > 0;) {
    n += got;
    if (n + 1 >= cap) buf = realloc(buf, cap *= 2);
  }
  buf[n] = 0;
  int st = pclose(p);
  *out = buf;
  cr_assert(WIFEXITED(st), "bpc %s died: %s", args, buf);
  return WEXITSTATUS(st);
}
#endif
