// test_golden.c — `bpc show` output of every model in models/ against the
// golden file tests/golden/<model>.show, and `bpc show --grad` (the
// simplified joint graph) of the small ones against <model>.grad.show. A
// change to expansion, a gradient rule, simplification or printing shows up
// as a diff. BPC_UPDATE_GOLDEN=1 rewrites the files.
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include "testutil.h"

static char *show_model(const char *path, bool grad) {
  Arena a = {0};
  Captured c;
  cap_open(&c);
  Model *m = model_load(&a, &c.d, path);
  Graph *g = m ? graph_build(m, &c.d, NULL, 0, DT_F32) : NULL;
  cr_assert(g, "%s failed to build:\n%s", path, cap_text(&c));
  if (grad) {
    cr_assert(ad_backward(g), "%s", cap_text(&c));
    Graph *s = simplify(g, SIMP_ALL);
    graph_free(g);
    g = s;
  }
  char *out = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&out, &len);
  show_graph(f, g);
  fclose(f);
  graph_free(g);
  arena_free(&a);
  cap_close(&c);
  return out;
}

static void compare(const char *golden, char *got, char *failures, size_t size, const char *what) {
  if (getenv("BPC_UPDATE_GOLDEN")) {
    FILE *f = fopen(golden, "w");
    cr_assert(f);
    fputs(got, f);
    fclose(f);
  } else {
    char *want = NULL;
    size_t len;
    if (!read_whole_file(golden, &want, &len) || strcmp(want, got)) {
      strncat(failures, " ", size - strlen(failures) - 1);
      strncat(failures, what, size - strlen(failures) - 1);
    }
    free(want);
  }
  free(got);
}

Test(golden, show_every_model) {
  DIR *dir = opendir(BPC_SOURCE_DIR "/models");
  cr_assert(dir);
  int checked = 0;
  struct dirent *e;
  char failures[4096] = "";
  while ((e = readdir(dir))) {
    size_t n = strlen(e->d_name);
    if (n < 6 || strcmp(e->d_name + n - 5, ".yaml")) continue;
    char model[512], golden[512];
    snprintf(model, sizeof model, BPC_SOURCE_DIR "/models/%s", e->d_name);
    snprintf(golden, sizeof golden, BPC_SOURCE_DIR "/tests/golden/%.*s.show", (int)(n - 5), e->d_name);
    compare(golden, show_model(model, false), failures, sizeof failures, golden + strlen(BPC_SOURCE_DIR) + 1);
    if (!strcmp(e->d_name, "xor.yaml") || !strcmp(e->d_name, "mlp_digits.yaml")) {
      snprintf(golden, sizeof golden, BPC_SOURCE_DIR "/tests/golden/%.*s.grad.show", (int)(n - 5), e->d_name);
      compare(golden, show_model(model, true), failures, sizeof failures, golden + strlen(BPC_SOURCE_DIR) + 1);
    }
    checked++;
  }
  closedir(dir);
  cr_assert_gt(checked, 2);
  cr_assert_str_empty(failures,
                      "show output differs from tests/golden for: %s "
                      "(BPC_UPDATE_GOLDEN=1 to accept)",
                      failures);
}

// An optional tensor operand prints by name: `attention(q, k, v, mask=m,
// heads=2)` (a fourth positional argument would be `heads`), so the printed
// expression loads again.
Test(golden, show_prints_optional_operands_by_name) {
  const char *yaml =
      "bpc: 1\nname: m\ninputs:\n  q: {shape: [2, 3, 4]}\n  mf: {shape: [2, 3]}\n"
      "graph:\n  a: attention(q, q, q, 2, mask=mf)\noutputs: [a]\n";
  char path[] = "/tmp/bpc_show_XXXXXX.yaml";
  int fd = mkstemps(path, 5);
  cr_assert(fd >= 0);
  cr_assert(write(fd, yaml, strlen(yaml)) == (ssize_t)strlen(yaml));
  close(fd);
  char *out = show_model(path, false);
  const char *line = strstr(out, "a: attention(");
  cr_assert(line, "%s", out);
  cr_expect(!strncmp(line, "a: attention(q, q, q, mask=mf, heads=2)", 39), "%s", line);
  // the printed expression, as a model again
  const char *end = strstr(line, ")  #");
  cr_assert(end);
  char again[512];
  snprintf(again, sizeof again,
           "bpc: 1\nname: m\ninputs:\n  q: {shape: [2, 3, 4]}\n  mf: {shape: [2, 3]}\n"
           "graph:\n  %.*s\noutputs: [a]\n",
           (int)(end + 1 - line), line);
  fd = open(path, O_WRONLY | O_TRUNC);
  cr_assert(fd >= 0 && write(fd, again, strlen(again)) == (ssize_t)strlen(again));
  close(fd);
  char *out2 = show_model(path, false);
  cr_expect_str_eq(out2, out);
  free(out), free(out2);
  unlink(path);
}
