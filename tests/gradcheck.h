// gradcheck.h — the f64 central finite-difference check shared by the
// gradient suites: compares every gradient element against the fourth-order
// central difference (8 (L(p+h) - L(p-h)) - (L(p+2h) - L(p-2h))) / 12h from
// the interpreter, h = 1e-3 max(0.1, |p|): truncation error ~h^4 and rounding
// error ~1e-16 / h both stay far below the 1e-6 relative SPEC asks for.
#pragma once
#include <math.h>

#include "testutil.h"

// i32 inputs get (i * 5 + 1) % 3: valid labels and ids for >= 3 classes.
static inline void gc_fill_inputs(Interp *it, const Graph *g) {
  for (int i = 0; i < g->inputs.n; i++) {
    const Node *n = graph_node(g, g->inputs.v[i].node);
    int64_t k = shape_numel(&n->shape);
    double *v = malloc(sizeof(double) * (size_t)k);
    for (int64_t j = 0; j < k; j++) v[j] = n->dtype == DT_I32 ? (double)((j * 5 + 1) % 3) : sin((double)j + 1);
    interp_set(it, n->id, v, k);
    free(v);
  }
}

static inline double gc_loss(Interp *it, const Graph *g) {
  cr_assert(interp_run(it), "interp failed: %s", it->err);
  return interp_value(it, g->loss)->v[0];
}

// The fourth-order central difference of the loss along coordinate j of a param.
static inline double gc_diff(Interp *it, const Graph *g, int node, double *x, int64_t n, int64_t j, double h) {
  double save = x[j], l[4];
  const double steps[4] = {h, -h, 2 * h, -2 * h};
  for (int k = 0; k < 4; k++) {
    x[j] = save + steps[k];
    interp_set(it, node, x, n);
    l[k] = gc_loss(it, g);
  }
  x[j] = save;
  return (8 * (l[0] - l[1]) - (l[2] - l[3])) / (12 * h);
}

// Checks every trainable param's gradient; returns the worst relative error.
// `what` names the case in failure messages.
static inline double gc_check(Graph *g, const char *what, double tol) {
  Interp *it = interp_new(g, 7, 3, true);
  interp_init_params(it, 11);
  gc_fill_inputs(it, g);
  interp_run(it);
  double worst = 0;
  int checked = 0, kinks = 0;
  for (int p = 0; p < g->params.n; p++) {
    const GParam *gp = &g->params.v[p];
    if (gp->grad < 0) continue;
    int64_t n = shape_numel(&graph_node(g, gp->node)->shape);
    double *x = malloc(sizeof(double) * (size_t)n), *an = malloc(sizeof(double) * (size_t)n);
    memcpy(x, interp_value(it, gp->node)->v, sizeof(double) * (size_t)n);
    interp_run(it);
    memcpy(an, interp_value(it, gp->grad)->v, sizeof(double) * (size_t)n);
    // Large params: an evenly spread sample of 48 coordinates.
    int64_t stride = n > 48 ? n / 48 : 1;
    for (int64_t j = 0; j < n; j += stride) {
      double h = 1e-3 * fmax(0.1, fabs(x[j])), save = x[j];
      double fd = gc_diff(it, g, gp->node, x, n, j, h), fd8 = gc_diff(it, g, gp->node, x, n, j, h / 8);
      x[j] = save;
      interp_set(it, gp->node, x, n);
      // A relu or max kink within 2h changes the difference with the step:
      // the loss is not smooth there, so the point says nothing (counted).
      if (fabs(fd - fd8) > 10 * tol * fmax(fmax(fabs(fd), fabs(fd8)), 1e-3)) {
        kinks++;
        continue;
      }
      checked++;
      // Relative, with a floor: a gradient of ~1e-6 is checked to ~1e-11 absolute.
      double err = fabs(fd - an[j]) / fmax(fmax(fabs(fd), fabs(an[j])), 1e-5);
      if (err > worst) worst = err;
      cr_expect(err <= tol, "%s: d loss / d %s[%lld]: autodiff %.12g, finite difference %.12g (rel err %.2e)", what,
                gp->name, (long long)j, an[j], fd, err);
    }
    free(x);
    free(an);
  }
  interp_free(it);
  cr_expect(kinks * 4 <= checked, "%s: %d of %d points sit on a kink: the check says little", what, kinks,
            kinks + checked);
  return worst;
}
