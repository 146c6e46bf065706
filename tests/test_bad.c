// test_bad.c — every tests/bad/NAME.yaml must be rejected with the error its
// first line announces: `# expect: LINE:COL: message substring`. The output
// must hold `tests/bad/NAME.yaml:LINE:COL: error: ` followed on the same line
// by the substring. All failing files are listed in one failure message.
//
// Files that load go on to graph_build when expand.c is linked in (build with
// -DBPC_HAVE_EXPAND), so expression and shape errors can be corpus files too.
#include <criterion/criterion.h>
#include <glob.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bpcc.h"

// The expectation on the file's first line; false if there is none.
static bool read_expect(const char *path, int *line, int *col, char *msg, size_t size) {
  FILE *f = fopen(path, "r");
  if (!f) return false;
  char buf[1024];
  bool ok = fgets(buf, sizeof(buf), f) != NULL;
  fclose(f);
  int n = 0;
  if (!ok || sscanf(buf, "# expect: %d:%d: %n", line, col, &n) != 2 || n == 0) return false;
  buf[strcspn(buf, "\r\n")] = 0;
  snprintf(msg, size, "%s", buf + n);
  return msg[0] != 0;
}

// Whether some line of `out` starts with `prefix` and contains `msg` after it.
static bool has_error(const char *out, const char *prefix, const char *msg) {
  for (const char *p = out; p && *p;) {
    const char *eol = strchr(p, '\n');
    size_t len = eol ? (size_t)(eol - p) : strlen(p);
    if (!strncmp(p, prefix, strlen(prefix))) {
      char *line = strndup(p, len);
      bool found = strstr(line + strlen(prefix), msg) != NULL;
      free(line);
      if (found) return true;
    }
    p = eol ? eol + 1 : NULL;
  }
  return false;
}

// Runs one file; on failure appends a report to `fails`.
static void check_file(const char *path, FILE *fails) {
  int line, col;
  char msg[1024];
  if (!read_expect(path, &line, &col, msg, sizeof(msg))) {
    fprintf(fails, "%s: no '# expect: LINE:COL: message' first line\n", path);
    return;
  }
  char *out = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&out, &len);
  Diag d;
  diag_init(&d, f);
  Arena a = {0};
  Model *m = model_load(&a, &d, path);
#ifdef BPC_HAVE_EXPAND
  if (m) {
    Graph *g = graph_build(m, &d, NULL, 0, DT_F32);
    if (g) graph_free(g);
  }
#else
  (void)m;
#endif
  fclose(f);
  char prefix[1200];
  snprintf(prefix, sizeof(prefix), "%s:%d:%d: error: ", path, line, col);
  if (d.nerr == 0)
    fprintf(fails, "%s: accepted, expected %d:%d: %s\n", path, line, col, msg);
  else if (!has_error(out, prefix, msg))
    fprintf(fails, "%s: expected '%s%s', got:\n%s\n", path, prefix, msg, out);
  free(out);
  arena_free(&a);
}

Test(bad, corpus) {
  cr_assert_eq(chdir(BPC_SOURCE_DIR), 0);
  glob_t g;
  int rc = glob("tests/bad/*.yaml", 0, NULL, &g);  // sorted by glob
  cr_assert_eq(rc, 0, "no files in tests/bad");
  char *fails = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&fails, &len);
  for (size_t i = 0; i < g.gl_pathc; i++) check_file(g.gl_pathv[i], f);
  fclose(f);
  size_t n = g.gl_pathc;
  globfree(&g);
  cr_expect(len == 0, "%zu bad files, failures:\n%s", n, fails);
  cr_log_info("%zu bad files checked", n);
  free(fails);
}
