// jit.c — runs a Program in this process: its module compiled by ORC LLJIT,
// one arena allocated, leaf values written in and results read out as
// doubles (so callers can keep using the interpreter's Value layout). The
// generated code reaches the runtime through the symbols defined here
// (bpcrt_parallel_for) and libc/libm through the process's own symbols.
#include <llvm-c/Core.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/TargetMachine.h>
#include <stdlib.h>
#include <string.h>

#include "bpc.h"
#include "bpcc.h"

// The step's context is bpc.h's bpcrt_ctx, field for field codegen.c's ctx type.
typedef bpcrt_ctx StepCtx;

struct JitModule {
  LLVMOrcLLJITRef lljit;
};

struct Jit {
  JitModule *mod;
  void (*step)(StepCtx *);
  const Program *p;
  bpcrt_pool *pool;
  int nthreads;
  char *mem;  // arena + per-thread scratch, 64-byte aligned, then GUARD bytes
  size_t bytes;
  StepCtx ctx;
};

#define GUARD 4096

static bool llvm_ok(LLVMErrorRef e, Diag *d, const char *what) {
  if (!e) return true;
  char *m = LLVMGetErrorMessage(e);
  diag_error(d, (Loc){0}, "internal: %s: %s", what, m);
  LLVMDisposeErrorMessage(m);
  return false;
}

static bool define_runtime(LLVMOrcLLJITRef j, Diag *d) {
  LLVMOrcJITDylibRef main = LLVMOrcLLJITGetMainJITDylib(j);
  LLVMOrcDefinitionGeneratorRef gen;
  if (!llvm_ok(LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&gen, LLVMOrcLLJITGetGlobalPrefix(j), NULL, NULL),
               d, "process symbols"))
    return false;
  LLVMOrcJITDylibAddGenerator(main, gen);
  LLVMJITSymbolFlags fl = {LLVMJITSymbolGenericFlagsExported | LLVMJITSymbolGenericFlagsCallable, 0};
  LLVMOrcCSymbolMapPair syms[] = {
      {LLVMOrcLLJITMangleAndIntern(j, "bpcrt_parallel_for"),
       {(LLVMOrcExecutorAddress)(uintptr_t)bpcrt_parallel_for, fl}},
      {LLVMOrcLLJITMangleAndIntern(j, "bpcrt_profile"),
       {(LLVMOrcExecutorAddress)(uintptr_t)&bpcrt_profile, {LLVMJITSymbolGenericFlagsExported, 0}}},
  };
  return llvm_ok(LLVMOrcJITDylibDefine(main, LLVMOrcAbsoluteSymbols(syms, sizeof syms / sizeof *syms)), d,
                 "runtime symbols");
}

JitModule *jit_compile(const CodegenUnit *u, Diag *d) {
  LLVMTargetMachineRef tm = codegen_target("native", 3, d);
  if (!tm) return NULL;
  LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
  LLVMModuleRef mod = codegen_module(LLVMOrcThreadSafeContextGetContext(tsc), u, tm, 3, d);
  if (!mod) {
    LLVMOrcDisposeThreadSafeContext(tsc);
    LLVMDisposeTargetMachine(tm);
    return NULL;
  }
  LLVMOrcLLJITBuilderRef builder = LLVMOrcCreateLLJITBuilder();
  LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(builder, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(tm));
  JitModule *j = xcalloc(1, sizeof(JitModule));
  LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(mod, tsc);
  LLVMOrcDisposeThreadSafeContext(tsc);
  bool ok = llvm_ok(LLVMOrcCreateLLJIT(&j->lljit, builder), d, "creating the JIT");
  if (ok) ok = define_runtime(j->lljit, d);
  if (ok)
    ok = llvm_ok(LLVMOrcLLJITAddLLVMIRModule(j->lljit, LLVMOrcLLJITGetMainJITDylib(j->lljit), tsm), d,
                 "adding the module");
  else
    LLVMOrcDisposeThreadSafeModule(tsm);
  if (!ok) {
    jit_module_free(j);
    return NULL;
  }
  return j;
}

void *jit_lookup(JitModule *j, const char *name, Diag *d) {
  LLVMOrcExecutorAddress addr = 0;
  char what[128];
  snprintf(what, sizeof what, "looking up %s", name);
  if (!llvm_ok(LLVMOrcLLJITLookup(j->lljit, &addr, name), d, what)) return NULL;
  return (void *)(uintptr_t)addr;
}

void jit_module_free(JitModule *j) {
  if (!j) return;
  if (j->lljit) LLVMOrcDisposeLLJIT(j->lljit);
  free(j);
}

Jit *jit_new(const Program *p, int nthreads, Diag *d) {
  CodegenUnit u = {.name = "bpc", .nprograms = 1, .programs = {{p, {"bpc_step", NULL}}}};
  JitModule *m = jit_compile(&u, d);
  void *step = m ? jit_lookup(m, "bpc_step", d) : NULL;
  if (!step) {
    jit_module_free(m);
    return NULL;
  }
  Jit *j = xcalloc(1, sizeof(Jit));
  j->mod = m;
  j->p = p;
  j->step = (void (*)(StepCtx *))step;
  j->nthreads = nthreads < 1 ? 1 : nthreads;
  j->pool = j->nthreads > 1 ? bpcrt_pool_new(j->nthreads) : NULL;
  size_t bytes = (size_t)(p->mem.arena_bytes + p->mem.scratch_per_thread * j->nthreads);
  j->bytes = bytes;
  // A guard zone after the arena and scratch: a kernel writing past what the
  // plan gave it is a bug in bpc, caught here instead of corrupting the heap.
  j->mem = aligned_alloc(64, (bytes + GUARD + 63) / 64 * 64);
  if (!j->mem) {
    fprintf(stderr, "error: out of memory: the step needs a %zu-byte arena\n", bytes);
    exit(1);
  }
  memset(j->mem, 0, bytes);
  memset(j->mem + bytes, 0xa5, GUARD);
  j->ctx = (StepCtx){j->mem, j->mem + p->mem.arena_bytes, j->pool, 0, 0};
  return j;
}

void jit_free(Jit *j) {
  if (!j) return;
  jit_module_free(j->mod);
  bpcrt_pool_free(j->pool);
  free(j->mem);
  free(j);
}

void jit_set(Jit *j, int node, const double *v, int64_t n) {
  const Node *nd = graph_node(j->p->g, node);
  BPC_ASSERT(n == shape_numel(&nd->shape) && j->p->mem.offset[node] >= 0);
  char *dst = j->mem + j->p->mem.offset[node];
  for (int64_t i = 0; i < n; i++) {
    if (nd->dtype == DT_F64)
      ((double *)dst)[i] = v[i];
    else if (nd->dtype == DT_F32)
      ((float *)dst)[i] = (float)v[i];
    else
      ((int32_t *)dst)[i] = (int32_t)v[i];
  }
}

void jit_get(const Jit *j, int node, double *v) {
  const Node *nd = graph_node(j->p->g, node);
  BPC_ASSERT(j->p->mem.offset[node] >= 0);
  const char *src = j->mem + j->p->mem.offset[node];
  int64_t n = shape_numel(&nd->shape);
  for (int64_t i = 0; i < n; i++)
    v[i] = nd->dtype == DT_F64   ? ((const double *)src)[i]
           : nd->dtype == DT_F32 ? ((const float *)src)[i]
                                 : ((const int32_t *)src)[i];
}

bool jit_run(Jit *j, uint64_t seed, uint64_t step, char *err, size_t errlen) {
  int64_t *status = (int64_t *)(j->mem + j->p->mem.status_offset);
  status[0] = status[1] = status[2] = 0;
  j->ctx.seed = seed;
  j->ctx.step = step;
  j->step(&j->ctx);
  for (size_t i = 0; i < GUARD; i++)
    if ((unsigned char)j->mem[j->bytes + i] != 0xa5) bpc_bug(__FILE__, __LINE__, "generated code wrote past its arena");
  if (!status[0]) return true;
  const char *what = status[0] == 1 ? "embedding: id" : "cross_entropy: label";
  snprintf(err, errlen, "%s %lld out of range [0, %lld)", what, (long long)status[1], (long long)status[2]);
  return false;
}
