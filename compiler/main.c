// main.c — the bpc command line. Each command is the pipeline as
// straight-line calls (load -> expand -> ...); exit 0 on success, 1 when the
// model has errors (reported as file:line:col), 2 on wrong usage.
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bpc.h"
#include "bpcc.h"

typedef struct Opts {
  const char *cmd;
  const char *model;
  struct {
    DimOverride *v;
    int n, cap;
  } defs;
  DType dtype;
  const char *out;
  bool grad;            // show/dot: the joint forward+backward graph
  const char *after;    // show/dot: stop after this pass
  const char *inputs;   // grad
  const char *params;   // grad
  uint64_t seed;        // grad
  bool interp;          // grad
  bool no_fuse;         // grad, compile: one kernel per node
  const char *emit;     // compile: llvm | asm | obj
  const char *cpu;      // compile
  int opt;              // compile: -O0..-O3
  int precision;        // --precision: 0 not given, 1 f32, 2 bf16 (wins over train.precision)
  int64_t max_memory;   // check, compile, grad, run: the step's arena budget in bytes (0: none)
  bool mpi;             // compile: link with Open MPI (data-parallel, SPEC 6.7)
} Opts;

typedef struct Command {
  const char *name;
  const char *synopsis;
  const char *help;
  int (*run)(Opts *o);
} Command;

static int cmd_check(Opts *o);
static int cmd_show(Opts *o);
static int cmd_dot(Opts *o);
static int cmd_grad(Opts *o);
static int cmd_compile(Opts *o);
static int cmd_run(int argc, char **argv);

static const Command commands[] = {
    {"check", "bpc check MODEL.yaml [-D N=V]... [--dtype f32|f64] [--precision f32|bf16] [--max-memory SIZE]",
     "Validates the model and prints its params, dims, inputs, every named value\n"
     "with its shape, and the FLOPs of one forward step; for a model with a loss,\n"
     "the training step's kernels and memory plan. --max-memory SIZE (bytes, or\n"
     "with K, M or G) plans the step's arena within SIZE by recomputing forward\n"
     "values in the backward, and lists what is kept, what is recomputed, the\n"
     "arena with and without the budget and the extra FLOPs.",
     cmd_check},
    {"show", "bpc show MODEL.yaml [--grad] [--after PASS] [-D N=V]... [--dtype f32|f64]",
     "Prints the expanded graph (functions and repeat inlined) in the model's own\n"
     "expression syntax, one value per line, shapes and dtypes as comments.\n"
     "--grad shows the simplified joint forward+backward graph; --after PASS stops\n"
     "after one of: expand, autodiff, cse, fold, algebra, dce, simplify.",
     cmd_show},
    {"dot", "bpc dot MODEL.yaml [--grad] [--after PASS] [-o F.dot] [-D N=V]...",
     "Writes the graph in Graphviz DOT (render with `dot -Tsvg`); --grad and\n"
     "--after as for show.",
     cmd_dot},
    {"grad",
     "bpc grad MODEL.yaml --inputs I.safetensors -o G.safetensors [--params P.safetensors]\n"
     "         [--dtype f32|f64] [--seed N] [--interp] [--max-memory SIZE] [-D N=V]...",
     "Evaluates one training step's loss and gradients: writes `loss`, every metric\n"
     "and `grad.<param>` for each trainable param. Without --params, params are\n"
     "initialized from the seed (default 0). batch_norm uses batch statistics and\n"
     "dropout is active with the seed, as in training. Generated native code\n"
     "evaluates it (JIT); --interp uses the reference interpreter instead.",
     cmd_grad},
    {"compile",
     "bpc compile MODEL.yaml -o OUT [--emit exe|obj|lib|llvm|asm] [-O0..-O3] [--cpu NAME|native]\n"
     "         [--dtype f32|f64] [--precision f32|bf16] [--max-memory SIZE] [-D N=V]... [--mpi]",
     "Compiles the model's trainer: the training step (forward, backward,\n"
     "optimizer), eval and sampling programs. exe (default): a standalone trainer\n"
     "linked with libbpcrt; lib: OUT.o and OUT.h for a C program; obj, llvm, asm:\n"
     "the module as an object, LLVM IR or assembly. --precision bf16 (or the\n"
     "model's train: {precision: bf16}): matmul, attention and conv2d products take\n"
     "bf16 operands with f32 sums; params, gradients and optimizer state stay f32.\n"
     "--max-memory SIZE (bytes, or with K, M or G) keeps the training step's arena\n"
     "within SIZE by recomputing forward values in the backward (the same bits;\n"
     "`bpc check` shows the plan). --mpi links the trainer with Open MPI:\n"
     "`mpirun -np N ./OUT train ...` trains data-parallel, each rank on batch B, as\n"
     "one process with batch N*B would (-D B=...).",
     cmd_compile},
};
#define NCOMMANDS (int)(sizeof commands / sizeof commands[0])

static void print_usage(FILE *out) {
  fprintf(out, "usage: bpc COMMAND MODEL.yaml [options]\n\ncommands:\n");
  for (int i = 0; i < NCOMMANDS; i++) fprintf(out, "  %s\n", commands[i].synopsis);
  fprintf(out,
          "  bpc run MODEL.yaml [-D N=V]... [--dtype f32|f64] [--precision f32|bf16] [--max-memory SIZE]\n"
          "          [trainer options]\n"
          "          JIT-compile the trainer and run it in this process (trainer options as\n"
          "          the standalone trainer's: train|eval|sample|predict|info, --steps, --data, ...)\n");
  fprintf(out,
          "  bpc tokenize --vocab VOCAB.txt [--max-len T] [--cased] TEXT.txt -o OUT.safetensors\n"
          "          one sample per line of TEXT as BERT's WordPiece ids and mask\n");
  fprintf(out, "  bpc --version\n  bpc help [COMMAND]\n");
}

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "bpc: ");
  fprintf(stderr, fmt, arg);
  fputc('\n', stderr);
  print_usage(stderr);
  return 2;
}

static const Command *find_command(const char *name) {
  for (int i = 0; i < NCOMMANDS; i++)
    if (!strcmp(commands[i].name, name)) return &commands[i];
  return NULL;
}

// The pipeline up to PASS: false for an unknown name. *flags gets the
// simplify flags (0: stop before simplify; -1u: expand only).
static bool pass_flags(const char *pass, unsigned *flags) {
  static const struct {
    const char *name;
    unsigned flags;
  } passes[] = {
      {"expand", ~0u},
      {"autodiff", 0},
      {"cse", SIMP_CSE},
      {"fold", SIMP_CSE | SIMP_FOLD},
      {"algebra", SIMP_CSE | SIMP_FOLD | SIMP_ALGEBRA},
      {"dce", SIMP_ALL},
      {"simplify", SIMP_ALL},
  };
  for (size_t i = 0; i < sizeof passes / sizeof *passes; i++)
    if (!strcmp(passes[i].name, pass)) {
      if (flags) *flags = passes[i].flags;
      return true;
    }
  return false;
}

// "-D NAME=VALUE" (or "-DNAME=VALUE"); false on a malformed definition.
static bool parse_define(Opts *o, const char *s) {
  const char *eq = strchr(s, '=');
  if (!eq || eq == s) return false;
  char *end;
  errno = 0;
  long long v = strtoll(eq + 1, &end, 10);
  if (errno || *end || end == eq + 1) return false;
  for (const char *p = s; p < eq; p++)
    if (!(*p == '_' || (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (p > s && *p >= '0' && *p <= '9')))
      return false;
  char *name = xmalloc((size_t)(eq - s) + 1);
  memcpy(name, s, (size_t)(eq - s));
  name[eq - s] = 0;
  VEC_PUSH(o->defs, ((DimOverride){name, v}));
  return true;
}

// --max-memory SIZE; false after the usage error.
static bool parse_max_memory(Opts *o, const char *v) {
  if (v && parse_size(v, &o->max_memory)) return true;
  usage_error(
      "--max-memory takes a size: bytes, or a number with K, M or G (powers of 1024: 65536, 512K, 1.5G), got '%s'",
      v ? v : "");
  return false;
}

// --precision's value as Opts.precision (1 f32, 2 bf16), 0 if it is neither.
static int precision_named(const char *t) { return !strcmp(t, "f32") ? 1 : !strcmp(t, "bf16") ? 2 : 0; }

static int parse_args(Opts *o, int argc, char **argv) {
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-D") || !strncmp(a, "-D", 2)) {
      const char *def = a[2] ? a + 2 : (i + 1 < argc ? argv[++i] : NULL);
      if (!def || !parse_define(o, def)) return usage_error("-D needs NAME=INTEGER, got '%s'", def ? def : "");
    } else if (!strcmp(a, "--dtype")) {
      const char *t = i + 1 < argc ? argv[++i] : "";
      if (!strcmp(t, "f32"))
        o->dtype = DT_F32;
      else if (!strcmp(t, "f64"))
        o->dtype = DT_F64;
      else
        return usage_error("--dtype takes f32 or f64, got '%s'", t);
    } else if (!strcmp(a, "--precision")) {
      const char *t = i + 1 < argc ? argv[++i] : "";
      if (!(o->precision = precision_named(t))) return usage_error("--precision takes f32 or bf16, got '%s'", t);
    } else if (!strcmp(a, "--max-memory")) {
      if (!parse_max_memory(o, i + 1 < argc ? argv[++i] : NULL)) return 2;
    } else if (!strcmp(a, "--grad")) {
      o->grad = true;
    } else if (!strcmp(a, "--interp")) {
      o->interp = true;
    } else if (!strcmp(a, "--no-fuse")) {
      o->no_fuse = true;
    } else if (!strcmp(a, "--mpi") && !strcmp(o->cmd, "compile")) {
      o->mpi = true;
    } else if (a[0] == '-' && a[1] == 'O' && a[2] >= '0' && a[2] <= '3' && !a[3]) {
      o->opt = a[2] - '0';
    } else if (!strcmp(a, "--emit") || !strcmp(a, "--cpu")) {
      if (i + 1 >= argc) return usage_error("%s needs a value", a);
      if (!strcmp(a, "--cpu"))
        o->cpu = argv[++i];
      else if (strcmp(o->emit = argv[++i], "llvm") && strcmp(o->emit, "asm") && strcmp(o->emit, "obj") &&
               strcmp(o->emit, "exe") && strcmp(o->emit, "lib"))
        return usage_error("--emit takes exe, obj, lib, llvm or asm, got '%s'", o->emit);
    } else if (!strcmp(a, "--after") || !strcmp(a, "--inputs") || !strcmp(a, "--params") || !strcmp(a, "--seed")) {
      if (i + 1 >= argc) return usage_error("%s needs a value", a);
      const char *v = argv[++i];
      if (!strcmp(a, "--after"))
        o->after = v;
      else if (!strcmp(a, "--inputs"))
        o->inputs = v;
      else if (!strcmp(a, "--params"))
        o->params = v;
      else {
        char *end;
        errno = 0;
        unsigned long long seed = strtoull(v, &end, 10);
        if (errno || *end || !*v || v[0] == '-') return usage_error("--seed needs a non-negative integer, got '%s'", v);
        o->seed = seed;
      }
    } else if (!strcmp(a, "-o")) {
      if (i + 1 >= argc) return usage_error("%s needs a file name", a);
      o->out = argv[++i];
    } else if (a[0] == '-' && a[1]) {
      return usage_error("unknown option '%s'", a);
    } else if (!o->model) {
      o->model = a;
    } else {
      return usage_error("unexpected argument '%s'", a);
    }
  }
  if (!o->model) return usage_error("%s needs a model file", o->cmd);
  if (o->after && !pass_flags(o->after, NULL))
    return usage_error("unknown pass '%s' (expand, autodiff, cse, fold, algebra, dce, simplify)", o->after);
  if (!strcmp(o->cmd, "grad") && (!o->inputs || !o->out))
    return usage_error("%s needs --inputs I.safetensors and -o G.safetensors", o->cmd);
  if (!strcmp(o->cmd, "compile") && !o->out) return usage_error("%s needs -o OUT", o->cmd);
  if (o->max_memory && strcmp(o->cmd, "check") && strcmp(o->cmd, "compile") && strcmp(o->cmd, "grad"))
    return usage_error("--max-memory is an option of check, compile, grad and run, not %s", o->cmd);
  if (o->mpi && o->emit && strcmp(o->emit, "exe"))
    return usage_error("--mpi links a trainer: it takes --emit exe, not '%s'", o->emit);
  return 0;
}

// load (with --precision) -> expand (pipeline.c). NULL after the errors
// were reported.
static Graph *front_end(Opts *o, Arena *a, Diag *d) {
  Model *m = pipeline_load(a, d, o->model, o->precision, o->dtype);
  return m ? graph_build(m, d, o->defs.v, o->defs.n, o->dtype) : NULL;
}

// The graph `show` and `dot` print: forward, or joint up to --after.
static Graph *shown_graph(Opts *o, Arena *a, Diag *d) {
  unsigned flags = o->grad ? SIMP_ALL : ~0u;
  if (o->after) pass_flags(o->after, &flags);
  Graph *g = front_end(o, a, d);
  return flags == ~0u ? g : pipeline_joint(g, flags);
}

static int cmd_check(Opts *o) {
  Arena a = {0};
  Diag d;
  diag_init(&d, stderr);
  Graph *g = front_end(o, &a, &d);
  int rc = g ? 0 : 1;
  if (g) {
    show_check(stdout, g);
    int nfwd = g->nodes.n;
    if (g->loss < 0 && o->max_memory)
      printf("\nmemory budget: no training step (no `loss:`), nothing for --max-memory to bound\n");
    if (g->loss >= 0) {
      int njoint = 0;
      Graph *s = pipeline_step(g, &njoint), *lowered;  // forward, backward, optimizer, simplified
      g = NULL;
      if (s) {
        printf("nodes: forward %d, training step (forward, backward, optimizer) %d, after simplify %d\n\n", nfwd,
               njoint, s->nodes.n);
        Program *unfused = program_plan(s, false, true, &lowered);
        int nunfused = unfused->kernels.n;
        program_free(unfused);
        graph_free(lowered);
        Program *p = program_plan_budget(s, true, o->max_memory, &lowered, &d);
        if (p) {
          printf("kernels: %d without fusion, %d fused\n", nunfused, p->kernels.n);
          program_print(stdout, p);
          putchar('\n');
          memplan_print(stdout, p);
          if (o->max_memory) {
            putchar('\n');
            remat_print(stdout, p);
          }
        } else {
          rc = 1;
        }
        program_free(p);
        graph_free(lowered);
        graph_free(s);
      } else {
        rc = 1;
      }
    }
  }
  graph_free(g);
  arena_free(&a);
  return rc;
}

static int cmd_show(Opts *o) {
  Arena a = {0};
  Diag d;
  diag_init(&d, stderr);
  Graph *g = shown_graph(o, &a, &d);
  if (g) show_graph(stdout, g);
  graph_free(g);
  arena_free(&a);
  return g ? 0 : 1;
}

// Writes through a temp file renamed into place: no partial output on failure.
static int write_output(const char *path, void (*emit)(FILE *, const Graph *), const Graph *g) {
  if (!path || !strcmp(path, "-")) {
    emit(stdout, g);
    return fflush(stdout) ? 1 : 0;
  }
  size_t n = strlen(path) + 32;
  char *tmp = xmalloc(n);
  snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "w");
  if (!f) {
    fprintf(stderr, "bpc: error: cannot write '%s': %s\n", path, strerror(errno));
    free(tmp);
    return 1;
  }
  emit(f, g);
  bool ok = !ferror(f);
  ok &= fclose(f) == 0;
  if (ok) ok = rename(tmp, path) == 0;
  if (!ok) {
    fprintf(stderr, "bpc: error: cannot write '%s': %s\n", path, strerror(errno));
    remove(tmp);
  }
  free(tmp);
  return ok ? 0 : 1;
}

static int cmd_dot(Opts *o) {
  Arena a = {0};
  Diag d;
  diag_init(&d, stderr);
  Graph *g = shown_graph(o, &a, &d);
  int rc = g ? write_output(o->out, show_dot, g) : 1;
  graph_free(g);
  arena_free(&a);
  return rc;
}

static int cmd_grad(Opts *o) {
  Arena a = {0};
  Diag d;
  diag_init(&d, stderr);
  Graph *g = front_end(o, &a, &d);
  if (g && g->loss < 0) {
    diag_error(&d, g->model->loc, "bpc grad needs a model with a `loss:`");
    graph_free(g);
    g = NULL;
  }
  g = g ? pipeline_joint(g, SIMP_ALL) : NULL;
  int rc = 1;
  Graph *lowered = NULL;
  Program *p = NULL;
  Jit *jit = NULL;
  if (g && !o->interp) {  // native: the lowered graph replaces g
    p = program_plan_budget(g, !o->no_fuse, o->max_memory, &lowered, &d);
    jit = p ? jit_new(p, (int)sysconf(_SC_NPROCESSORS_ONLN), &d) : NULL;
    graph_free(g);
    g = jit ? lowered : NULL;
  }
  if (g) {
    // The interpreter's values hold the leaves and results either way.
    Interp *it = interp_new(g, o->seed, 0, true);
    interp_init_params(it, o->seed);
    bool ok = tensors_load_inputs(it, g, o->inputs, &d);
    if (o->params) ok &= tensors_load_params(it, g, o->params, &d);
    char err[256] = "";
    if (ok && jit) {
      for (int id = 0; id < g->nodes.n; id++)
        if (op_info(graph_node(g, id)->op)->flags & OPF_LEAF)
          jit_set(jit, id, it->vals[id].v, shape_numel(&graph_node(g, id)->shape));
      ok = jit_run(jit, o->seed, 0, err, sizeof err);
      for (int id = 0; id < g->nodes.n && ok; id++)
        if (p->mem.offset[id] >= 0) jit_get(jit, id, it->vals[id].v);
    } else if (ok) {
      ok = interp_run(it);
      if (!ok) snprintf(err, sizeof err, "%s", it->err);
    }
    if (!ok && err[0]) diag_error(&d, (Loc){0}, "%s: %s", o->inputs, err);
    if (ok && tensors_write_grads(it, g, o->out, &d)) rc = 0;
    interp_free(it);
  }
  jit_free(jit);
  program_free(p);
  if (g != lowered) graph_free(lowered);
  graph_free(g);
  arena_free(&a);
  return rc;
}

static void compile_flags(const Opts *o, const Model *m, char *buf, size_t size) {
  int n = snprintf(buf, size, "bpc %s -O%d --cpu %s --dtype %s%s%s%s", BPC_VERSION, o->opt, o->cpu ? o->cpu : "native",
                   dtype_name(o->dtype), m && m->train.bf16 && o->dtype == DT_F32 ? " --precision bf16" : "",
                   o->no_fuse ? " --no-fuse" : "", o->mpi ? " --mpi" : "");
  if (o->max_memory && n > 0 && (size_t)n < size)
    snprintf(buf + n, size - (size_t)n, " --max-memory %lld", (long long)o->max_memory);
}

static int cmd_compile(Opts *o) {
  Arena a = {0};
  Diag d;
  diag_init(&d, stderr);
  Model *m = pipeline_load(&a, &d, o->model, o->precision, o->dtype);
  TrainerBuild b;
  char flags[256];
  compile_flags(o, m, flags, sizeof flags);
  bool ok = m && trainer_build(m, &d, o->defs.v, o->defs.n, o->dtype, !o->no_fuse, o->max_memory, flags, &b);
  const char *emit = o->emit ? o->emit : "exe";
  if (ok) {
    if (!strcmp(emit, "exe"))
      ok = aot_link_trainer(&b, o->cpu, o->opt, o->mpi, o->out, &d);
    else if (!strcmp(emit, "lib"))
      ok = aot_write_lib(&b, o->cpu, o->opt, o->out, &d);
    else {
      CodegenUnit u = trainer_unit(&b, true);
      ok = codegen_emit(&u, o->cpu, o->opt, emit, o->out, &d);
    }
  }
  if (m) trainer_build_free(&b);
  arena_free(&a);
  return ok ? 0 : 1;
}

// bpc run MODEL [-D N=V]... [--dtype f32|f64] [--no-fuse] [trainer options]:
// the trainer JIT-compiled in this process, driven by the same runtime.
static int cmd_run(int argc, char **argv) {
  if (argc < 3 || argv[2][0] == '-') return usage_error("%s", "run needs a model file");
  Opts o = {.cmd = "run", .model = argv[2], .dtype = DT_F32, .opt = 3};
  char **rest = xmalloc(sizeof(char *) * (size_t)(argc + 1));
  int nrest = 0;
  rest[nrest++] = "bpc run";
  for (int i = 3; i < argc; i++) {
    const char *a = argv[i];
    if (!strncmp(a, "-D", 2)) {
      const char *def = a[2] ? a + 2 : (i + 1 < argc ? argv[++i] : NULL);
      if (!def || !parse_define(&o, def)) {
        free(rest);
        return usage_error("-D needs NAME=INTEGER, got '%s'", def ? def : "");
      }
    } else if (!strcmp(a, "--dtype") && i + 1 < argc) {
      const char *t = argv[++i];
      if (strcmp(t, "f32") && strcmp(t, "f64")) {
        free(rest);
        return usage_error("--dtype takes f32 or f64, got '%s'", t);
      }
      o.dtype = !strcmp(t, "f64") ? DT_F64 : DT_F32;
    } else if (!strcmp(a, "--precision") && i + 1 < argc) {
      const char *t = argv[++i];
      if (!(o.precision = precision_named(t))) {
        free(rest);
        return usage_error("--precision takes f32 or bf16, got '%s'", t);
      }
    } else if (!strcmp(a, "--no-fuse")) {
      o.no_fuse = true;
    } else if (!strcmp(a, "--max-memory")) {
      if (!parse_max_memory(&o, i + 1 < argc ? argv[++i] : NULL)) {
        free(rest);
        return 2;
      }
    } else if (!strcmp(a, "--mpi")) {
      free(rest);
      return usage_error("%s",
                         "bpc run trains in this process and links no MPI: for data-parallel training, "
                         "`bpc compile MODEL.yaml -o T --mpi` and `mpirun -np N ./T train ...`");
    } else {
      rest[nrest++] = argv[i];
    }
  }
  rest[nrest] = NULL;
  Arena a = {0};
  Diag d;
  diag_init(&d, stderr);
  Model *m = pipeline_load(&a, &d, o.model, o.precision, o.dtype);
  TrainerBuild b;
  char flags[256];
  compile_flags(&o, m, flags, sizeof flags);
  int rc = 1;
  if (m && trainer_build(m, &d, o.defs.v, o.defs.n, o.dtype, !o.no_fuse, o.max_memory, flags, &b)) {
    CodegenUnit u = trainer_unit(&b, false);
    JitModule *j = jit_compile(&u, &d);
    bpcrt_entries e = {0};
    const char *json = j ? jit_lookup(j, "bpc_model_json", &d) : NULL;
    if (json) {
      if (b.programs[TB_TRAIN]) {
        e.train_step = (void (*)(bpcrt_ctx *))jit_lookup(j, "bpc_train_step", &d);
        e.train_update = (void (*)(bpcrt_ctx *))jit_lookup(j, "bpc_train_update", &d);
        e.eval_forward = (void (*)(bpcrt_ctx *))jit_lookup(j, "bpc_eval_forward", &d);
      }
      if (b.programs[2]) e.sample_forward = (void (*)(bpcrt_ctx *))jit_lookup(j, "bpc_sample_forward", &d);
      if (b.programs[TB_PREDICT]) e.predict_forward = (void (*)(bpcrt_ctx *))jit_lookup(j, "bpc_predict_forward", &d);
      if (b.programs[TB_DECODE]) e.decode_forward = (void (*)(bpcrt_ctx *))jit_lookup(j, "bpc_decode_forward", &d);
    }
    if (json && ((e.train_step && e.train_update && e.eval_forward) || e.predict_forward))
      rc = bpcrt_main(json, &e, nrest, rest);
    jit_module_free(j);
  }
  if (m) trainer_build_free(&b);
  arena_free(&a);
  for (int i = 0; i < o.defs.n; i++) free((char *)o.defs.v[i].name);
  free(o.defs.v);
  free(rest);
  return rc;
}

static int cmd_help(int argc, char **argv) {
  if (argc < 3) {
    printf("bpc %s: compiles a model graph written in YAML into a training program.\n\n", BPC_VERSION);
    print_usage(stdout);
    return 0;
  }
  if (!strcmp(argv[2], "run")) {
    printf(
        "usage: bpc run MODEL.yaml [-D N=V]... [--dtype f32|f64] [--precision f32|bf16] [--no-fuse]\n"
        "               [--max-memory SIZE] [train|eval|sample|predict|info] [trainer options]\n\n"
        "JIT-compiles the model's trainer (as `bpc compile` would) and runs it in this\n"
        "process: the commands and options are the standalone trainer's (train, eval,\n"
        "sample, info; --steps, --data, --save, ...), the results the same bits.\n");
    return 0;
  }
  if (!strcmp(argv[2], "tokenize")) {
    printf(
        "usage: bpc tokenize --vocab VOCAB.txt [--max-len T] [--cased] TEXT.txt -o OUT.safetensors\n\n"
        "Tokenizes one sample per line of TEXT (UTF-8, \\n or \\r\\n line ends) exactly as\n"
        "Hugging Face's BertTokenizer does with VOCAB.txt (one token per line): clean\n"
        "control characters, split on whitespace, lowercase and strip accents (unless\n"
        "--cased), punctuation and CJK ideographs as tokens of their own, WordPiece with\n"
        "## continuations, [UNK] for a word with no split or over 100 characters. Each\n"
        "sample is [CLS] ... [SEP], truncated to T tokens (default 128; [SEP] kept last)\n"
        "and padded with [PAD]; an empty line is [CLS] [SEP]. Writes `ids` [N, T] I32 and\n"
        "`mask` [N, T] F32 (1 for a token, 0 for padding). Invalid UTF-8 is an error\n"
        "naming the line and byte; on any error nothing is written.\n");
    return 0;
  }
  const Command *c = find_command(argv[2]);
  if (!c) return usage_error("no command '%s'", argv[2]);
  printf("usage: %s\n\n%s\n", c->synopsis, c->help);
  return 0;
}

static int bpc_main(int argc, char **argv) {
  if (argc < 2) return usage_error("%s", "missing command");
  if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
    printf("bpc %s (model format %d)\n", BPC_VERSION, BPC_FORMAT_VERSION);
    return 0;
  }
  if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) return cmd_help(argc, argv);
  if (!strcmp(argv[1], "run")) return cmd_run(argc, argv);
  if (!strcmp(argv[1], "tokenize")) return cmd_tokenize(argc, argv, usage_error);
  const Command *c = find_command(argv[1]);
  if (!c) return usage_error("unknown command '%s'", argv[1]);
  Opts o = {.cmd = c->name, .dtype = DT_F32, .opt = 3};
  int rc = parse_args(&o, argc, argv);
  if (rc == 0) rc = c->run(&o);
  for (int i = 0; i < o.defs.n; i++) free((char *)o.defs.v[i].name);
  free(o.defs.v);
  return rc;
}

// The parser, the passes over the graph and the interpreter recurse along
// expressions and chains of values: a 50,000-term sum is that deep. They run
// on a thread with a 1 GiB stack (address space; pages are touched only as
// deep as the model goes), so a long model is slow, never a segfault.
typedef struct {
  int argc, rc;
  char **argv;
} MainArgs;

static void *main_thread(void *p) {
  MainArgs *a = p;
  a->rc = bpc_main(a->argc, a->argv);
  return NULL;
}

int main(int argc, char **argv) {
  MainArgs a = {argc, 0, argv};
  pthread_attr_t attr;
  pthread_t t;
  if (pthread_attr_init(&attr) == 0 && pthread_attr_setstacksize(&attr, (size_t)1 << 30) == 0 &&
      pthread_create(&t, &attr, main_thread, &a) == 0) {
    pthread_attr_destroy(&attr);
    pthread_join(t, NULL);
    return a.rc;
  }
  return bpc_main(argc, argv);  // no big stack to be had: run as we are
}
