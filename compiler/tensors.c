// tensors.c — binds tensor files (safetensors, SPEC 3) to a graph's leaves
// for `bpc grad`: inputs by input name, params by param name (plus optional
// `state.<name>` entries, and the `opt.*` slots of a checkpoint, which are
// ignored here). Every mismatch of a file is listed in one error: missing
// names, unknown names, wrong shapes, an integer where a float is expected and
// the reverse. F32 and F64 convert to the node's float dtype.
#include <stdlib.h>
#include <string.h>

#include "bpc.h"
#include "bpcc.h"

typedef struct Problems {
  char *buf;
  size_t len;
  FILE *f;
  int n;
} Problems;

static void problem(Problems *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(Problems *p, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("\n  ", p->f);
  vfprintf(p->f, fmt, ap);
  va_end(ap);
  p->n++;
}

static const char *sh(const Shape *s) {
  static char buf[2][128];
  static int k;
  k ^= 1;
  return shape_str(s, buf[k], sizeof buf[k]);
}

static Shape tensor_shape(const bpcrt_tensor *t) {
  Shape s = {.rank = t->rank};
  for (int i = 0; i < t->rank; i++) s.d[i] = t->shape[i];
  return s;
}

// Checks one tensor against a leaf and copies its values in; false after
// noting the problem.
static bool bind_leaf(Interp *it, const Node *n, const char *name, const bpcrt_tensor *t, Problems *p) {
  Shape ts = tensor_shape(t);
  bool ok = true;
  if (!shape_eq(&ts, &n->shape)) {
    problem(p, "'%s' has shape %s, the model expects %s", name, sh(&ts), sh(&n->shape));
    ok = false;
  }
  bool is_int = t->dtype == BPCRT_I32;
  bpcrt_dtype want = n->dtype == DT_I32 ? BPCRT_I32 : BPCRT_F64;  // any float model dtype accepts the same
  if (!bpcrt_dtype_loads(t->dtype, want)) {
    problem(p, "'%s' holds %s, the model expects %s", name, bpcrt_dtype_name(t->dtype), BPCRT_LOADS_WHAT(want));
    ok = false;
  }
  if (!ok) return false;
  int64_t k = bpcrt_numel(t);
  double *v = xmalloc(sizeof(double) * (size_t)(k ? k : 1));
  if (is_int) {
    for (int64_t i = 0; i < k; i++) {
      int32_t x;
      memcpy(&x, (const char *)t->data + 4 * i, 4);
      v[i] = x;
    }
  } else {
    BPC_ASSERT(bpcrt_st_to_f64(t, v) == 0);
  }
  interp_set(it, n->id, v, k);
  free(v);
  return true;
}

static bool finish(Problems *p, Diag *d, const char *path, const char *what) {
  fclose(p->f);
  if (p->n) diag_error(d, (Loc){0}, "%s does not match the model's %s:%s", path, what, p->buf);
  free(p->buf);
  return p->n == 0;
}

static bool read_set(const char *path, bpcrt_tensors *set, Diag *d) {
  char err[512];
  if (bpcrt_st_read(path, set, err, sizeof err) == 0) return true;
  diag_error(d, (Loc){0}, "%s", err);
  return false;
}

bool tensors_load_inputs(Interp *it, const Graph *g, const char *path, Diag *d) {
  bpcrt_tensors set = {0};
  if (!read_set(path, &set, d)) return false;
  Problems p = {0};
  p.f = open_memstream(&p.buf, &p.len);
  for (int i = 0; i < g->inputs.n; i++) {
    const Node *n = graph_node(g, g->inputs.v[i].node);
    const bpcrt_tensor *t = bpcrt_st_find(&set, n->name);
    if (!t)
      problem(&p, "missing input '%s' %s %s", n->name, sh(&n->shape), dtype_name(n->dtype));
    else
      bind_leaf(it, n, n->name, t, &p);
  }
  for (int k = 0; k < set.n; k++) {
    bool known = false;
    for (int i = 0; i < g->inputs.n && !known; i++) known = !strcmp(g->inputs.v[i].name, set.t[k].name);
    if (!known) problem(&p, "'%s' is not an input of the model", set.t[k].name);
  }
  bpcrt_st_free(&set);
  return finish(&p, d, path, "inputs");
}

bool tensors_load_params(Interp *it, const Graph *g, const char *path, Diag *d) {
  bpcrt_tensors set = {0};
  if (!read_set(path, &set, d)) return false;
  Problems p = {0};
  p.f = open_memstream(&p.buf, &p.len);
  for (int i = 0; i < g->params.n; i++) {
    const GParam *gp = &g->params.v[i];
    const Node *n = graph_node(g, gp->node);
    const bpcrt_tensor *t = bpcrt_st_find(&set, gp->name);
    if (!t)
      problem(&p, "missing param '%s' %s", gp->name, sh(&n->shape));
    else
      bind_leaf(it, n, gp->name, t, &p);
  }
  for (int i = 0; i < g->states.n; i++) {  // optional: absent state keeps its init value
    char key[512];
    snprintf(key, sizeof key, "state.%s", g->states.v[i].name);
    const bpcrt_tensor *t = bpcrt_st_find(&set, key);
    if (t) bind_leaf(it, graph_node(g, g->states.v[i].node), key, t, &p);
  }
  for (int k = 0; k < set.n; k++) {
    const char *name = set.t[k].name;
    bool known = !strncmp(name, "opt.", 4);
    for (int i = 0; i < g->params.n && !known; i++) known = !strcmp(g->params.v[i].name, name);
    for (int i = 0; i < g->states.n && !known; i++)
      known = !strncmp(name, "state.", 6) && !strcmp(g->states.v[i].name, name + 6);
    if (!known) problem(&p, "'%s' is not a param of the model", name);
  }
  bpcrt_st_free(&set);
  return finish(&p, d, path, "params");
}

static void add_value(bpcrt_tensors *set, const char *name, const Value *v, DType dt) {
  int64_t k = shape_numel(&v->shape);
  int64_t shape[BPC_MAX_RANK];
  for (int i = 0; i < v->shape.rank; i++) shape[i] = v->shape.d[i];
  void *buf = xmalloc((size_t)(k ? k : 1) * 8);
  bpcrt_dtype t = dt == DT_F64 ? BPCRT_F64 : dt == DT_F32 ? BPCRT_F32 : BPCRT_I32;
  for (int64_t i = 0; i < k; i++) {
    if (t == BPCRT_F64)
      ((double *)buf)[i] = v->v[i];
    else if (t == BPCRT_F32)
      ((float *)buf)[i] = (float)v->v[i];
    else
      ((int32_t *)buf)[i] = (int32_t)v->v[i];
  }
  BPC_ASSERT(bpcrt_st_add(set, name, t, v->shape.rank, shape, buf));
  free(buf);
}

bool tensors_write_grads(const Interp *it, const Graph *g, const char *path, Diag *d) {
  bpcrt_tensors set = {0};
  const Value *loss = interp_value(it, g->loss);
  add_value(&set, "loss", loss, graph_node(g, g->loss)->dtype);
  for (int i = 0; i < g->metrics.n; i++)
    if (strcmp(g->metrics.v[i].name, "loss"))
      add_value(&set, g->metrics.v[i].name, interp_value(it, g->metrics.v[i].node),
                graph_node(g, g->metrics.v[i].node)->dtype);
  for (int i = 0; i < g->params.n; i++) {
    const GParam *p = &g->params.v[i];
    if (p->grad < 0) continue;
    char name[512];
    snprintf(name, sizeof name, "grad.%s", p->name);
    add_value(&set, name, interp_value(it, p->grad), graph_node(g, p->node)->dtype);
  }
  char err[512];
  bool ok = bpcrt_st_write(path, &set, err, sizeof err) == 0;
  if (!ok) diag_error(d, (Loc){0}, "%s", err);
  bpcrt_st_free(&set);
  return ok;
}
