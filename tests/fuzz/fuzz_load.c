// fuzz_load.c — libFuzzer harness for the front end and the graph passes:
// any bytes given to model_load_text must give a Model or errors, never a
// crash, a leak or a sanitizer report; a valid Model goes on through
// expand, autodiff and simplify, which must hold the same promise. Run it
// with tests/fuzz/run.sh.
#include <stdio.h>
#include <stdlib.h>

#include "bpcc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static FILE *null_out;
  if (!null_out) null_out = fopen("/dev/null", "w");
  Diag d;
  diag_init(&d, null_out);
  Arena a = {0};
  Model *m = model_load_text(&a, &d, "fuzz/m.yaml", (const char *)data, size);
  if (m && d.nerr) abort();  // a Model is returned only without errors
  Graph *g = m ? graph_build(m, &d, NULL, 0, DT_F32) : NULL;
  if (g && g->nodes.n < 20000 && g->loss >= 0 && ad_backward(g)) {
    Graph *s = simplify(g, SIMP_ALL);
    graph_free(s);
  }
  graph_free(g);
  arena_free(&a);
  return 0;
}
