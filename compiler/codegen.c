// codegen.c — a Program (kernels over one arena) -> an LLVM module through
// the C API. Every kernel becomes a function `void kN(ctx, begin, end,
// thread)` over its parallel range, with all shapes and arena offsets as
// constants; `bpc_step(ctx)` runs them in order, through the runtime's thread
// pool where the work is large enough. Elementwise kernels are loops emitted
// here (a fused tree evaluated per element, inner loop contiguous so LLVM
// vectorizes it); every other kernel is calls into the kernel library
// (bpc_kernels.h) that its op's lowering makes (compiler/lower_<family>.c),
// compiled once in libbpcrt; the library's scalar math is linked in as
// bitcode so it inlines into the loops. Then the new pass manager optimizes
// for the target CPU.
#include <llvm-c/Analysis.h>
#include <llvm-c/BitReader.h>
#include <llvm-c/Core.h>
#include <llvm-c/Linker.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lower.h"

// The kernel library's bitcode, embedded by kernels_bc.S.
extern const char bpc_kernels_bc[], bpc_kernels_bc_end[];

// ---------------------------------------------------------------- functions

// Function `name` of type ret(args), declared on its first call. A later
// call with other argument types is a lowering's bug, caught here (the
// first one is checked against the kernel library when it links).
static LLVMValueRef get_fn(CG *c, const char *name, LLVMTypeRef ret, LLVMTypeRef *args, int nargs) {
  LLVMTypeRef ty = LLVMFunctionType(ret, args, (unsigned)nargs, 0);
  LLVMValueRef f = LLVMGetNamedFunction(c->mod, name);
  if (!f) return LLVMAddFunction(c->mod, name, ty);
  if (LLVMGlobalGetValueType(f) != ty) {
    char *was = LLVMPrintTypeToString(LLVMGlobalGetValueType(f)), *now = LLVMPrintTypeToString(ty);
    bpc_bug(__FILE__, __LINE__, "%s called as %s after %s", name, now, was);
  }
  return f;
}

static LLVMValueRef call(CG *c, LLVMValueRef f, LLVMValueRef *args, int n) {
  return LLVMBuildCall2(c->b, LLVMGlobalGetValueType(f), f, args, (unsigned)n, "");
}

// Calls library function `name` with args; types are taken from the values.
LLVMValueRef lib(CG *c, const char *name, LLVMTypeRef ret, LLVMValueRef *args, int n) {
  LLVMTypeRef tys[32];
  BPC_ASSERT(n <= 32);
  for (int i = 0; i < n; i++) tys[i] = LLVMTypeOf(args[i]);
  return call(c, get_fn(c, name, ret, tys, n), args, n);
}

static LLVMValueRef ctx_field(CG *c, LLVMValueRef ctx, int field) {
  LLVMValueRef gep = LLVMBuildStructGEP2(c->b, c->ctxty, ctx, (unsigned)field, "");
  LLVMTypeRef t = field == CTX_SEED || field == CTX_STEP ? c->i64 : c->ptr;
  return LLVMBuildLoad2(c->b, t, gep, "");
}

// Marks glue code (kernel wrappers, entry points) optnone: it only computes
// pointers and calls, and optimizing hundreds of tiny functions costs more
// compile time than it saves at run time. Loop bodies and the kernel
// library get the full pipeline.
static void cheap(CG *c, LLVMValueRef f) {
  static const char *attrs[] = {"optnone", "noinline"};
  for (int i = 0; i < 2; i++)
    LLVMAddAttributeAtIndex(
        f, LLVMAttributeFunctionIndex,
        LLVMCreateEnumAttribute(c->cx, LLVMGetEnumAttributeKindForName(attrs[i], strlen(attrs[i])), 0));
}

// A byte pointer into the arena at `off`. Wrappers take their offsets from a
// closure (slot k+1 of the i64 array they get instead of the context), so
// kernels that differ only in where their data lives share one wrapper.
LLVMValueRef arena_off(CG *c, int64_t off) {
  VEC_PUSH(c->slots, off);
  LLVMValueRef idx = I64(c, c->slots.n);
  LLVMValueRef slot = LLVMBuildGEP2(c->b, c->i64, c->closure, &idx, 1, "");
  LLVMValueRef o = LLVMBuildLoad2(c->b, c->i64, slot, "off");
  return LLVMBuildGEP2(c->b, LLVMInt8TypeInContext(c->cx), c->arena, &o, 1, "");
}

// Starts `void kN(i64 *closure, i64 begin, i64 end, i32 thread)`: closure[0]
// is the context, closure[1..] the arena offsets (slot 1: the status words).
LLVMValueRef begin_kernel(CG *c) {
  char name[32];
  snprintf(name, sizeof name, "k%d", c->nfn++);
  LLVMValueRef f = LLVMAddFunction(c->mod, name, c->taskty);
  LLVMSetLinkage(f, LLVMInternalLinkage);
  cheap(c, f);
  LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->cx, f, "entry"));
  c->fn = f;
  c->closure = LLVMGetParam(f, 0);
  c->slots.n = 0;
  LLVMValueRef ctx = LLVMBuildIntToPtr(c->b, LLVMBuildLoad2(c->b, c->i64, c->closure, ""), c->ptr, "ctx");
  c->begin = LLVMGetParam(f, 1);
  c->end = LLVMGetParam(f, 2);
  c->thread = LLVMGetParam(f, 3);
  c->arena = ctx_field(c, ctx, CTX_ARENA);
  c->scratch = ctx_field(c, ctx, CTX_SCRATCH);
  c->seed = ctx_field(c, ctx, CTX_SEED);
  c->step = ctx_field(c, ctx, CTX_STEP);
  c->status = arena_off(c, c->p->mem.status_offset);
  return f;
}

// Ends the wrapper: an identical earlier one (same signature) replaces it.
void end_kernel(CG *c, int64_t n, int64_t work) {
  LLVMBuildRetVoid(c->b);
  size_t len = strlen(c->sig) + 16;
  char *sig = xmalloc(len);
  snprintf(sig, len, "%s#%d", c->sig, c->part++);
  LLVMValueRef fn = c->fn;
  for (int i = 0; i < c->wrappers.n; i++)
    if (!strcmp(c->wrappers.sig[i], sig)) {
      LLVMDeleteFunction(fn);
      fn = c->wrappers.fn[i];
      break;
    }
  if (fn == c->fn) {
    if (c->wrappers.n == c->wrappers.cap) {
      c->wrappers.cap = c->wrappers.cap ? 2 * c->wrappers.cap : 64;
      c->wrappers.sig = xrealloc(c->wrappers.sig, sizeof(char *) * (size_t)c->wrappers.cap);
      c->wrappers.fn = xrealloc(c->wrappers.fn, sizeof(LLVMValueRef) * (size_t)c->wrappers.cap);
    }
    c->wrappers.sig[c->wrappers.n] = sig;
    c->wrappers.fn[c->wrappers.n++] = fn;
  } else {
    free(sig);
  }
  int64_t *slots = xmalloc(sizeof(int64_t) * (size_t)(c->slots.n ? c->slots.n : 1));
  memcpy(slots, c->slots.v, sizeof(int64_t) * (size_t)c->slots.n);
  // Below ~64K operations a kernel runs on the caller: the pool's wake-up costs more.
  VEC_PUSH(c->steps, ((Step){fn, n, n > 1 && work >= 65536, c->phase, c->slots.n, slots, c->kernel}));
}

LLVMValueRef node_ptr(CG *c, int id) {
  BPC_ASSERT(c->p->mem.offset[id] >= 0);
  return arena_off(c, c->p->mem.offset[id]);
}

LLVMValueRef scratch_ptr(CG *c) {
  LLVMValueRef off =
      LLVMBuildMul(c->b, LLVMBuildSExt(c->b, c->thread, c->i64, ""), I64(c, c->p->mem.scratch_per_thread), "");
  return LLVMBuildGEP2(c->b, LLVMInt8TypeInContext(c->cx), c->scratch, &off, 1, "");
}

LLVMValueRef loop_begin(CG *c, Loop *l, LLVMValueRef lo, LLVMValueRef hi, const char *name) {
  l->pre = LLVMGetInsertBlock(c->b);
  l->head = LLVMAppendBasicBlockInContext(c->cx, c->fn, name);
  l->body = LLVMAppendBasicBlockInContext(c->cx, c->fn, "body");
  l->done = LLVMAppendBasicBlockInContext(c->cx, c->fn, "done");
  LLVMBuildBr(c->b, l->head);
  LLVMPositionBuilderAtEnd(c->b, l->head);
  l->i = LLVMBuildPhi(c->b, LLVMTypeOf(lo), "i");
  LLVMAddIncoming(l->i, &lo, &l->pre, 1);
  LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, l->i, hi, ""), l->body, l->done);
  LLVMPositionBuilderAtEnd(c->b, l->body);
  return l->i;
}

void loop_end(CG *c, Loop *l) {
  LLVMValueRef next = LLVMBuildAdd(c->b, l->i, LLVMConstInt(LLVMTypeOf(l->i), 1, 0), "");
  LLVMBasicBlockRef from = LLVMGetInsertBlock(c->b);
  LLVMAddIncoming(l->i, &next, &from, 1);
  LLVMBuildBr(c->b, l->head);
  LLVMPositionBuilderAtEnd(c->b, l->done);
}

// ---------------------------------------------------------------- elementwise

LLVMValueRef convert(CG *c, LLVMValueRef v, DType from, DType to) {
  if (from == to) return v;
  if (from == DT_I32) return LLVMBuildSIToFP(c->b, v, ftype(c, to), "");
  if (to == DT_I32) return LLVMBuildFPToSI(c->b, v, c->i32, "");
  return to == DT_F64 ? LLVMBuildFPExt(c->b, v, c->f64, "") : LLVMBuildFPTrunc(c->b, v, c->f32, "");
}

static LLVMValueRef ew_node(CG *c, Ew *e, int id);

LLVMValueRef ew_operand(CG *c, Ew *e, int id, DType to) {
  const Node *n = graph_node(c->g, id);
  if (n->op == OP_CONST) return to == DT_I32 ? I32(c, (int64_t)n->attr.f[0]) : FC(c, to, n->attr.f[0]);
  return convert(c, ew_node(c, e, id), n->dtype, to);
}

static LLVMValueRef ew_node(CG *c, Ew *e, int id) {
  if (e->val[id]) return e->val[id];
  for (int i = 0; i < e->nr; i++) {
    if (e->r[i].node != id) continue;
    const Node *n = graph_node(c->g, id);
    LLVMValueRef idx = e->r[i].stride[e->rank - 1] ? LLVMBuildAdd(c->b, e->r[i].base, e->j, "") : e->r[i].base;
    if (e->r[i].out >= 0) idx = e->oi;  // in place: the very index the store uses, so LLVM sees no dependence
    LLVMValueRef p = LLVMBuildGEP2(c->b, ftype(c, n->dtype), e->r[i].ptr, &idx, 1, "");
    return e->val[id] = LLVMBuildLoad2(c->b, ftype(c, n->dtype), p, "");
  }
  const Node *n = graph_node(c->g, id);
  if (!op_info(n->op)->be->scalar) bpc_bug(__FILE__, __LINE__, "no elementwise lowering for '%s'", op_name(n->op));
  return e->val[id] = op_info(n->op)->be->scalar(c, e, n);
}

// Everything a loop body depends on, as text: two kernels with the same
// signature can share one body.
static char *ew_signature(CG *c, const Ew *e, const Kernel *k, int64_t inner, int64_t rows) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  fprintf(f, "%lld/%lld/%lld/%d/%d/%d/%d:", (long long)inner, (long long)rows, (long long)e->block, e->rank, k->mm >= 0,
          k->nouts, e->flat);
  for (int a = 0; a < e->rank; a++) fprintf(f, "%lld,", (long long)e->d[a]);
  int reads[EW_MAX_READS];
  for (int i = 0; i < e->nr; i++) {
    reads[i] = e->r[i].node;
    fprintf(f, "|r%d>%d", graph_node(c->g, e->r[i].node)->dtype, e->r[i].out);
    for (int a = 0; a < e->rank; a++) fprintf(f, ",%lld", (long long)e->r[i].stride[a]);
  }
  kernel_tree_print(f, c->g, k, reads, e->nr);
  fclose(f);
  return buf;
}

// `void ewN(out, reads..., begin, end)`: the loop over rows [begin, end);
// a matmul epilogue's `(..., begin, end, j0, j1)` walks columns [j0, j1) of them.
static LLVMValueRef emit_ew_body(CG *c, Ew *e, const Kernel *k, int64_t inner) {
  const Node *root = graph_node(c->g, k->root);
  bool mm = k->mm >= 0;  // a matmul epilogue also takes its columns [j0, j1)
  int no = 1 + k->nouts;  // stored values: the root, then the merged siblings
  LLVMTypeRef params[EW_MAX_READS + EW_MAX_READS + 5];
  for (int i = 0; i < no + e->nr; i++) params[i] = c->ptr;
  for (int i = 0; i < 4; i++) params[no + e->nr + i] = c->i64;
  char name[32];
  snprintf(name, sizeof name, "ew%d", c->bodies.n);
  LLVMValueRef fn =
      LLVMAddFunction(c->mod, name, LLVMFunctionType(c->vd, params, (unsigned)(no + e->nr + 2 + 2 * mm), 0));
  LLVMSetLinkage(fn, LLVMInternalLinkage);
  LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                          LLVMCreateEnumAttribute(c->cx, LLVMGetEnumAttributeKindForName("noinline", 8), 0));
  // noalias: without it the vectorizer guards every loop with overlap checks,
  // and an in-place kernel or a matmul epilogue (the output is one of the
  // operands, element for element) always fails them and runs scalar. The
  // only aliasing is out[i] with an operand's element i, read before it is
  // written in the same iteration; no two iterations touch the same element.
  // A read that shares an output's storage is loaded through the output's
  // pointer (see emit_ew), so distinct pointers never overlap.
  for (int i = 0; i < no + e->nr; i++)
    LLVMAddAttributeAtIndex(fn, (unsigned)i + 1,
                            LLVMCreateEnumAttribute(c->cx, LLVMGetEnumAttributeKindForName("noalias", 7), 0));
  LLVMBasicBlockRef saved = LLVMGetInsertBlock(c->b);
  LLVMValueRef saved_fn = c->fn;
  c->fn = fn;
  LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->cx, fn, "entry"));
  for (int i = 0; i < e->nr; i++) e->r[i].ptr = LLVMGetParam(fn, (unsigned)(e->r[i].out >= 0 ? e->r[i].out : no + i));
  LLVMValueRef begin = LLVMGetParam(fn, (unsigned)(no + e->nr)), end = LLVMGetParam(fn, (unsigned)(no + e->nr + 1));
  e->val = xcalloc((size_t)c->g->nodes.n, sizeof(LLVMValueRef));
  Loop lr, lj;
  LLVMValueRef jlo = begin, jhi = end, out_base = I64(c, 0);
  for (int i = 0; i < e->nr; i++) e->r[i].base = I64(c, 0);
  if (!e->flat) {
    LLVMValueRef r = loop_begin(c, &lr, begin, end, "rows");
    jlo = I64(c, 0), jhi = I64(c, e->block);
    if (mm) jlo = LLVMGetParam(fn, (unsigned)(no + e->nr + 2)), jhi = LLVMGetParam(fn, (unsigned)(no + e->nr + 3));
    bool blocked = e->block != inner;
    if (blocked) {
      jlo = LLVMBuildMul(c->b, r, I64(c, e->block), "");
      LLVMValueRef hi = LLVMBuildAdd(c->b, jlo, I64(c, e->block), "");
      jhi = LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, hi, I64(c, inner), ""), hi, I64(c, inner), "");
    }
    // Row bases: decompose r over the outer collapsed axes.
    for (int i = 0; i < e->nr; i++) {
      LLVMValueRef base = I64(c, 0), rem = r;
      if (!blocked)
        for (int a = e->rank - 2; a >= 0; a--) {
          LLVMValueRef coord = LLVMBuildSRem(c->b, rem, I64(c, e->d[a]), "");
          rem = LLVMBuildSDiv(c->b, rem, I64(c, e->d[a]), "");
          if (e->r[i].stride[a])
            base = LLVMBuildAdd(c->b, base, LLVMBuildMul(c->b, coord, I64(c, e->r[i].stride[a]), ""), "");
        }
      e->r[i].base = base;
    }
    if (!blocked) out_base = LLVMBuildMul(c->b, r, I64(c, inner), "");
  }
  LLVMValueRef j = loop_begin(c, &lj, jlo, jhi, "inner");
  e->j = j;
  LLVMValueRef oi = e->oi = LLVMBuildAdd(c->b, out_base, j, "");
  LLVMValueRef v[EW_MAX_READS + 1];
  for (int o = 0; o < no; o++) v[o] = ew_node(c, e, o ? k->outs[o - 1] : k->root);
  for (int o = 0; o < no; o++)
    LLVMBuildStore(c->b, v[o], LLVMBuildGEP2(c->b, ftype(c, root->dtype), LLVMGetParam(fn, (unsigned)o), &oi, 1, ""));
  loop_end(c, &lj);
  if (!e->flat) loop_end(c, &lr);
  LLVMBuildRetVoid(c->b);
  free(e->val);
  c->fn = saved_fn;
  if (saved) LLVMPositionBuilderAtEnd(c->b, saved);
  return fn;
}

// Is `id` an operand of one of the kernel's tree nodes?
static bool tree_reads(const Graph *g, const Kernel *k, int id) {
  for (int t = 0; t < k->nnodes; t++) {
    const Node *n = graph_node(g, k->nodes[t]);
    for (int x = 0; x < n->nin; x++)
      if (n->in[x] == id) return true;
  }
  return false;
}

// The loop's reads and iteration space: e's reads with their strides over
// the collapsed axes; *inner and *rows the loop's extent.
static void ew_setup(CG *c, const Kernel *k, Ew *e, int64_t *inner, int64_t *rows) {
  const Node *root = graph_node(c->g, k->root);
  *e = (Ew){.k = k};
  Shape out = root->shape;
  if (out.rank == 0) out = (Shape){.rank = 1, .d = {1}};
  int64_t st[EW_MAX_READS + 1][BPC_MAX_RANK];
  shape_bcast_strides(&out, &out, st[0]);
  for (int i = 0; i < k->nreads; i++) {
    if (!tree_reads(c->g, k, k->reads[i])) continue;  // an epilogue matmul's operand
    BPC_ASSERT(e->nr < EW_MAX_READS);
    e->r[e->nr].node = k->reads[i];
    // A read stored where an output goes (an in-place update, an operand dying
    // here, a GEMM epilogue's C) is loaded through that output's pointer: the
    // body's pointers are noalias, and two names for one buffer would let
    // LLVM move a load past a store of another output.
    e->r[e->nr].out = -1;
    const Node *rn = graph_node(c->g, k->reads[i]);
    for (int o = 0; o <= k->nouts; o++) {
      int on = o ? k->outs[o - 1] : k->root;
      if (c->p->mem.offset[k->reads[i]] == c->p->mem.offset[on] && shape_eq(&rn->shape, &graph_node(c->g, on)->shape) &&
          rn->dtype == graph_node(c->g, on)->dtype)
        e->r[e->nr].out = o;
    }
    shape_bcast_strides(&rn->shape, &out, st[++e->nr]);
  }
  int rank = 0;
  if (k->mm >= 0) {  // a matmul epilogue walks the GEMM's [rows, N]
    rank = 2;
    e->d[0] = shape_numel(&out) / out.d[out.rank - 1];
    e->d[1] = out.d[out.rank - 1];
    for (int i = 0; i <= e->nr; i++) st[i][0] = st[i][out.rank - 2], st[i][1] = st[i][out.rank - 1];
  } else {
    // Collapse adjacent axes that every operand walks contiguously; axes of
    // extent 1 (stride 0 when broadcast) go.
    for (int a = 0; a < out.rank; a++) {
      if (out.d[a] == 1) continue;
      bool merge = rank > 0;
      for (int i = 0; i <= e->nr && merge; i++) merge = st[i][rank - 1] == st[i][a] * out.d[a];
      if (merge) {
        e->d[rank - 1] *= out.d[a];
        for (int i = 0; i <= e->nr; i++) st[i][rank - 1] = st[i][a];
      } else {
        e->d[rank] = out.d[a];
        for (int i = 0; i <= e->nr; i++) st[i][rank] = st[i][a];
        rank++;
      }
    }
    if (rank == 0) {  // a single element: operands of its shape walk it as others do theirs
      rank = 1, e->d[0] = 1, st[0][0] = 1;
      for (int i = 0; i < e->nr; i++) st[i + 1][0] = shape_eq(&graph_node(c->g, e->r[i].node)->shape, &root->shape);
    }
  }
  e->rank = rank;
  for (int i = 0; i < e->nr; i++) memcpy(e->r[i].stride, st[i + 1], sizeof e->r[i].stride);
  *inner = e->d[rank - 1], *rows = shape_numel(&out) / *inner;
  e->block = *inner;
  if (*rows == 1 && *inner > 4096 && k->mm < 0) {  // one long row: blocks give the pool work to split
    e->block = 4096;
    *rows = (*inner + 4095) / 4096;
  }
}

// Loops with the same structure (the same block of every layer) share one
// body taking the storage as arguments: compile time grows with the
// distinct loops, not with depth.
static LLVMValueRef ew_body(CG *c, Ew *e, const Kernel *k, int64_t inner, int64_t rows) {
  char *sig = ew_signature(c, e, k, inner, rows);
  for (int i = 0; i < c->bodies.n; i++)
    if (!strcmp(c->bodies.sig[i], sig)) {
      free(sig);
      return c->bodies.fn[i];
    }
  LLVMValueRef body = emit_ew_body(c, e, k, inner);
  if (c->bodies.n == c->bodies.cap) {
    c->bodies.cap = c->bodies.cap ? 2 * c->bodies.cap : 16;
    c->bodies.sig = xrealloc(c->bodies.sig, sizeof(char *) * (size_t)c->bodies.cap);
    c->bodies.fn = xrealloc(c->bodies.fn, sizeof(LLVMValueRef) * (size_t)c->bodies.cap);
  }
  c->bodies.sig[c->bodies.n] = sig;
  c->bodies.fn[c->bodies.n++] = body;
  return body;
}

// The pointers a body takes before its range: outputs (root first), reads.
static int ew_args(CG *c, const Kernel *k, const Ew *e, LLVMValueRef *args) {
  int no = 1 + k->nouts;
  args[0] = node_ptr(c, k->root);
  for (int o = 1; o < no; o++) args[o] = node_ptr(c, k->outs[o - 1]);
  for (int i = 0; i < e->nr; i++) args[no + i] = node_ptr(c, e->r[i].node);
  return no + e->nr;
}

static void emit_ew(CG *c, const Kernel *k) {
  Ew e;
  int64_t inner, rows;
  ew_setup(c, k, &e, &inner, &rows);
  LLVMValueRef body = ew_body(c, &e, k, inner, rows);
  char *wsig = xmalloc(strlen(c->sig) + 32);  // the wrapper calls this body
  sprintf(wsig, "%s|%p", c->sig, (void *)body);
  free(c->sig);
  c->sig = wsig;
  begin_kernel(c);
  LLVMValueRef args[EW_MAX_READS + EW_MAX_READS + 5];
  int np = 1 + k->nouts + e.nr, nargs = np + 2;
  args[np] = c->begin;
  args[np + 1] = c->end;
  if (k->mm >= 0) {  // the GEMM writes its block of C, then the epilogue rewrites it in place
    // (into the matmul's storage: the root's, or a merged sibling's)
    Gemm gs = emit_gemm(c, graph_node(c->g, k->mm), node_ptr(c, k->mm));
    args[np] = gs.r0, args[np + 1] = gs.r1, args[np + 2] = gs.j0, args[np + 3] = gs.j1;
    nargs += 2;
    rows = gs.units;
  }
  ew_args(c, k, &e, args);
  call(c, body, args, nargs);
  end_kernel(c, rows, k->flops + k->bytes);
}

static char *kernel_signature(CG *c, const Kernel *k);

// An update group (fuse.c's group_updates): n update loops of one
// structure as one parallel loop over the concatenation of their params'
// elements, cut in blocks of UPDATE_BLOCK. A block range calls the shared
// flat body once for each param it covers, on that param's part of the
// range. Elementwise: the split changes no result.
#define UPDATE_BLOCK 4096
static void emit_update_group(CG *c, const Kernel *ks, int n) {
  Ew *e = xmalloc(sizeof(Ew) * (size_t)n);
  int64_t *start = xmalloc(sizeof(int64_t) * (size_t)(n + 1)), work = 0;
  LLVMValueRef body = NULL;
  char *sig0 = NULL;
  start[0] = 0;
  for (int m = 0; m < n; m++) {
    int64_t inner, rows;
    ew_setup(c, &ks[m], &e[m], &inner, &rows);
    BPC_ASSERT(e[m].rank == 1 && ks[m].mm < 0);
    start[m + 1] = start[m] + inner;
    work += ks[m].flops + ks[m].bytes;
    e[m].flat = true;
    e[m].d[0] = e[m].block = 0;  // sizes are arguments
    char *sig = ew_signature(c, &e[m], &ks[m], 0, 0);
    if (!m) {
      body = ew_body(c, &e[0], &ks[0], 0, 0);
      sig0 = sig;
    } else {
      BPC_ASSERT(!strcmp(sig, sig0));  // fuse.c's key promised one body
      free(sig);
    }
  }
  free(sig0);
  for (int m = 1; m < n; m++) {  // the wrapper's signature: every member's
    char *ms = kernel_signature(c, &ks[m]), *ws = xmalloc(strlen(c->sig) + strlen(ms) + 2);
    sprintf(ws, "%s&%s", c->sig, ms);
    free(c->sig), free(ms);
    c->sig = ws;
  }
  begin_kernel(c);
  int64_t total = start[n];
  LLVMValueRef lo = LLVMBuildMul(c->b, c->begin, I64(c, UPDATE_BLOCK), "");
  LLVMValueRef hi = LLVMBuildMul(c->b, c->end, I64(c, UPDATE_BLOCK), "");
  hi = LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, hi, I64(c, total), ""), hi, I64(c, total), "");
  for (int m = 0; m < n; m++) {
    // This param's elements [start, start + len) met with [lo, hi), in its own indices.
    int64_t len = start[m + 1] - start[m];
    LLVMValueRef a = LLVMBuildSub(c->b, lo, I64(c, start[m]), ""), b = LLVMBuildSub(c->b, hi, I64(c, start[m]), "");
    a = LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSGT, a, I64(c, 0), ""), a, I64(c, 0), "");
    b = LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, b, I64(c, len), ""), b, I64(c, len), "");
    LLVMBasicBlockRef run = LLVMAppendBasicBlockInContext(c->cx, c->fn, "param");
    LLVMBasicBlockRef next = LLVMAppendBasicBlockInContext(c->cx, c->fn, "next");
    LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, a, b, ""), run, next);
    LLVMPositionBuilderAtEnd(c->b, run);
    LLVMValueRef args[EW_MAX_READS + EW_MAX_READS + 5];
    int np = ew_args(c, &ks[m], &e[m], args);
    args[np] = a, args[np + 1] = b;
    call(c, body, args, np + 2);
    LLVMBuildBr(c->b, next);
    LLVMPositionBuilderAtEnd(c->b, next);
  }
  end_kernel(c, (total + UPDATE_BLOCK - 1) / UPDATE_BLOCK, work);
  free(e);
  free(start);
}

// ---------------------------------------------------------------- library calls

static LLVMValueRef global_i64s(CG *c, const int64_t *v, int n) {
  LLVMValueRef vals[BPC_MAX_RANK];
  for (int i = 0; i < n; i++) vals[i] = I64(c, v[i]);
  LLVMTypeRef at = LLVMArrayType2(c->i64, (uint64_t)n);
  LLVMValueRef g = LLVMAddGlobal(c->mod, at, "dims");
  LLVMSetInitializer(g, LLVMConstArray2(c->i64, vals, (uint64_t)n));
  LLVMSetGlobalConstant(g, 1);
  LLVMSetLinkage(g, LLVMPrivateLinkage);
  return g;
}

void contiguous_strides(const Shape *s, int64_t *st) {
  int64_t acc = 1;
  for (int i = s->rank - 1; i >= 0; i--) st[i] = acc, acc *= s->d[i];
}

// A strided copy kernel: out (+ out_off elements) <- in (+ in_off) over `shape`.
void emit_copy(CG *c, int out, int64_t out_off, const int64_t *ost, int in, int64_t in_off, const int64_t *ist,
               const Shape *shape, DType t, bool own_kernel) {
  Shape s = *shape;
  if (s.rank == 0) s = (Shape){.rank = 1, .d = {1}};
  int64_t n = shape_numel(&s);
  if (own_kernel) begin_kernel(c);
  char name[48];
  snprintf(name, sizeof name, "bpck_strided_copy_%s", t == DT_I32 ? "i32" : sfx(t));
  LLVMValueRef op = node_ptr(c, out), ip = node_ptr(c, in);
  op = LLVMBuildGEP2(c->b, ftype(c, t), op, (LLVMValueRef[]){I64(c, out_off)}, 1, "");
  ip = LLVMBuildGEP2(c->b, ftype(c, t), ip, (LLVMValueRef[]){I64(c, in_off)}, 1, "");
  LLVMValueRef args[8] = {op,
                          global_i64s(c, ost, s.rank),
                          ip,
                          global_i64s(c, ist, s.rank),
                          I32(c, s.rank),
                          global_i64s(c, s.d, s.rank),
                          own_kernel ? c->begin : I64(c, 0),
                          own_kernel ? c->end : I64(c, n)};
  lib(c, name, LLVMVoidTypeInContext(c->cx), args, 8);
  if (own_kernel) end_kernel(c, n, 2 * n);
}

// [O, R, I] view of a reduction over a contiguous block of axes.
void ori(const Shape *x, const int *axes, int naxes, int64_t *O, int64_t *R, int64_t *I) {
  *O = 1, *R = 1, *I = 1;
  int lo = naxes ? axes[0] : x->rank, hi = naxes ? axes[naxes - 1] : x->rank - 1;
  for (int a = 0; a < x->rank; a++) *(a < lo ? O : a <= hi ? R : I) *= x->d[a];
}

bool contiguous_axes(const Attr *a) {
  for (int i = 1; i < a->naxes; i++)
    if (a->axes[i] != a->axes[i - 1] + 1) return false;
  return true;
}

void libcall_sfx(CG *c, const char *base, const char *suffix, LLVMValueRef *args, int nargs) {
  char name[64];
  snprintf(name, sizeof name, "bpck_%s_%s", base, suffix);
  lib(c, name, VOID, args, nargs);
}

void libcall(CG *c, const char *base, DType t, LLVMValueRef *args, int nargs) {
  libcall_sfx(c, base, sfx(t), args, nargs);
}

// The kernels of a product (matmul's GEMM, attention, conv2d): under
// `precision: bf16` an f32 product takes the bf16 kernels (bf16 operands,
// f32 sums: bpc_kernels.h), which have the f32 ones' arguments and scratch.
const char *product_sfx(const CG *c, DType t) { return t == DT_F32 && c->bf16 ? "bf16" : sfx(t); }

// One library kernel over [begin, end) (a fresh kernel function).
void call_kernel_sfx(CG *c, const char *base, const char *suffix, LLVMValueRef *args, int nargs, int64_t n,
                     int64_t work) {
  LLVMValueRef all[32];
  memcpy(all, args, sizeof(LLVMValueRef) * (size_t)nargs);
  all[nargs] = c->begin, all[nargs + 1] = c->end;
  libcall_sfx(c, base, suffix, all, nargs + 2);
  end_kernel(c, n, work);
}

void call_kernel(CG *c, const char *base, DType t, LLVMValueRef *args, int nargs, int64_t n, int64_t work) {
  call_kernel_sfx(c, base, sfx(t), args, nargs, n, work);
}

// An element pointer `off` elements past p.
LLVMValueRef elem_ptr(CG *c, LLVMTypeRef et, LLVMValueRef p, int64_t off) {
  LLVMValueRef o = I64(c, off);
  return LLVMBuildGEP2(c->b, et, p, &o, 1, "");
}

int64_t kernel_temp(CG *c, const Kernel *k) { return c->p->mem.temp_offset[k - c->p->kernels.v]; }

// A call kernel: its op's lowering (Backend.emit, lower_<family>.c).
static void emit_call(CG *c, const Kernel *k) {
  const Node *n = graph_node(c->g, k->root);
  const Backend *be = op_info(n->op)->be;
  if (!be->emit) bpc_bug(__FILE__, __LINE__, "no lowering for '%s'", op_name(n->op));
  be->emit(c, k, n);
}

static void emit_state(CG *c, const Kernel *k) {
  int leaf = k->nodes[0];  // the state or param the update is copied into
  const Node *n = graph_node(c->g, leaf);
  int64_t st[BPC_MAX_RANK];
  contiguous_strides(&n->shape, st);
  emit_copy(c, leaf, 0, st, k->root, 0, st, &n->shape, n->dtype, true);
}

// What a kernel's wrapper computes, apart from where its data lives: two
// kernels with the same signature share one wrapper (read offsets from
// the closure).
static void node_desc(FILE *f, const Graph *g, int id) {
  const Node *n = graph_node(g, id);
  char sh[160];
  const Attr *a = &n->attr;
  fprintf(f, "[%d %d %s %a %a %lld %lld %lld %d %d %d %llx %s:", n->op, n->dtype, shape_str(&n->shape, sh, sizeof sh),
          a->f[0], a->f[1], (long long)a->i[0], (long long)a->i[1], (long long)a->i[2], a->b[0], a->b[1], a->naxes,
          (unsigned long long)a->salt, shape_str(&a->shape, sh, sizeof sh));
  for (int i = 0; i < a->naxes; i++) fprintf(f, "%d,", a->axes[i]);
  for (int i = 0; i < n->nin; i++) {
    const Node *x = graph_node(g, n->in[i]);
    fprintf(f, " %d%s", x->dtype, shape_str(&x->shape, sh, sizeof sh));
    if (x->op == OP_CONST) fprintf(f, "=%a", x->attr.f[0]);  // an immediate in loops
  }
  fputc(']', f);
}

static char *kernel_signature(CG *c, const Kernel *k) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  fprintf(f, "%d|%d|%lld|%d|", k->kind, c->p->training, (long long)c->p->mem.scratch_per_thread, k->nnodes);
  for (int i = 0; i < k->nnodes; i++) node_desc(f, c->g, k->nodes[i]);
  node_desc(f, c->g, k->root);
  if (k->mm >= 0) node_desc(f, c->g, k->mm);
  for (int i = 0; i < k->nouts; i++) node_desc(f, c->g, k->outs[i]);
  for (int i = 0; i < k->nreads; i++) node_desc(f, c->g, k->reads[i]);
  fclose(f);
  return buf;
}

// ---------------------------------------------------------------- the module

// An entry point `void name(bpcrt_ctx *)` running the steps of `phase`
// (-1: all) in order, each directly or through the thread pool. With the
// runtime's profiler hook set (bpcrt_profile, bpc.h), it reports the start
// (kernel -1) and the end of every kernel's steps of program `prog`.
static LLVMValueRef emit_entry(CG *c, const char *name, int phase, int prog) {
  LLVMTypeRef ft = LLVMFunctionType(LLVMVoidTypeInContext(c->cx), &c->ptr, 1, 0);
  LLVMValueRef f = LLVMAddFunction(c->mod, name, ft);
  cheap(c, f);
  LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->cx, f, "entry"));
  LLVMValueRef ctx = LLVMGetParam(f, 0);
  LLVMValueRef pool = ctx_field(c, ctx, CTX_POOL);
  LLVMTypeRef pf[5] = {c->ptr, c->ptr, c->ptr, c->i64, c->i64};
  LLVMValueRef pfor = get_fn(c, "bpcrt_parallel_for", LLVMVoidTypeInContext(c->cx), pf, 5);
  LLVMValueRef hook_var = LLVMGetNamedGlobal(c->mod, "bpcrt_profile");
  if (!hook_var) {
    hook_var = LLVMAddGlobal(c->mod, c->ptr, "bpcrt_profile");
    LLVMSetLinkage(hook_var, LLVMExternalLinkage);
  }
  LLVMTypeRef hargs[2] = {c->i32, c->i32};
  LLVMTypeRef hook_ty = LLVMFunctionType(LLVMVoidTypeInContext(c->cx), hargs, 2, 0);
  LLVMValueRef hook = LLVMBuildLoad2(c->b, c->ptr, hook_var, "hook");
  LLVMValueRef profiling = LLVMBuildICmp(c->b, LLVMIntNE, hook, LLVMConstNull(c->ptr), "profiling");
  // tick(k): if (hook) hook(prog, k)
#define TICK(k)                                                                            \
  do {                                                                                     \
    LLVMBasicBlockRef on_ = LLVMAppendBasicBlockInContext(c->cx, f, "tick"),               \
                      next_ = LLVMAppendBasicBlockInContext(c->cx, f, "run");              \
    LLVMBuildCondBr(c->b, profiling, on_, next_);                                          \
    LLVMPositionBuilderAtEnd(c->b, on_);                                                   \
    LLVMBuildCall2(c->b, hook_ty, hook, (LLVMValueRef[]){I32(c, prog), I32(c, k)}, 2, ""); \
    LLVMBuildBr(c->b, next_);                                                              \
    LLVMPositionBuilderAtEnd(c->b, next_);                                                 \
  } while (0)
  int most = 0;
  for (int i = 0; i < c->steps.n; i++) most = c->steps.v[i].nslots > most ? c->steps.v[i].nslots : most;
  LLVMValueRef clo = LLVMBuildArrayAlloca(c->b, c->i64, I64(c, most + 1), "closure");
  LLVMBuildStore(c->b, LLVMBuildPtrToInt(c->b, ctx, c->i64, ""), clo);
  TICK(-1);
  for (int i = 0; i < c->steps.n; i++) {
    Step *s = &c->steps.v[i];
    if (phase >= 0 && s->phase != phase) continue;
    for (int k = 0; k < s->nslots; k++)
      LLVMBuildStore(c->b, I64(c, s->slots[k]),
                     LLVMBuildGEP2(c->b, c->i64, clo, (LLVMValueRef[]){I64(c, k + 1)}, 1, ""));
    if (s->parallel)
      call(c, pfor, (LLVMValueRef[]){pool, s->fn, clo, I64(c, s->n), I64(c, 1)}, 5);
    else
      LLVMBuildCall2(c->b, c->taskty, s->fn, (LLVMValueRef[]){clo, I64(c, 0), I64(c, s->n), I32(c, 0)}, 4, "");
    int j = i + 1;  // the entry's next step: the same kernel's, or the kernel is done
    while (j < c->steps.n && phase >= 0 && c->steps.v[j].phase != phase) j++;
    bool last_of_kernel = j == c->steps.n || c->steps.v[j].kernel != s->kernel;
    if (last_of_kernel) TICK(s->kernel);
  }
#undef TICK
  LLVMBuildRetVoid(c->b);
  return f;
}

// A constant NUL-terminated string global.
static LLVMValueRef const_string(CG *c, const char *name, const char *text) {
  LLVMValueRef str = LLVMConstStringInContext2(c->cx, text, strlen(text), 0);
  LLVMValueRef g = LLVMAddGlobal(c->mod, LLVMTypeOf(str), name);
  LLVMSetInitializer(g, str);
  LLVMSetGlobalConstant(g, 1);
  return g;
}

// `int main(argc, argv)`: the standalone trainer's, handing everything to
// the runtime: bpcrt_main(bpc_model_json, &entries, argc, argv).
// entries: bpcrt_entries' fields in order (bpc.h), NULL where absent.
// The features of the x86-64 psABI levels. LLVM's C API has no query for
// the features a named CPU implies: `--cpu native` passes the host's features
// explicitly, a level comes from this table, other names record none.
static const char *level_features(const char *cpu) {
  static const char *const levels[][2] = {
      {"x86-64-v2", "+sse3,+ssse3,+sse4.1,+sse4.2,+popcnt,+cx16"},
      {"x86-64-v3", "+sse3,+ssse3,+sse4.1,+sse4.2,+popcnt,+cx16,+avx,+avx2,+bmi,+bmi2,+fma,+f16c,+lzcnt,+movbe"},
      {"x86-64-v4",
       "+sse3,+ssse3,+sse4.1,+sse4.2,+popcnt,+cx16,+avx,+avx2,+bmi,+bmi2,+fma,+f16c,+lzcnt,+movbe,"
       "+avx512f,+avx512bw,+avx512cd,+avx512dq,+avx512vl"}};
  for (size_t i = 0; i < sizeof levels / sizeof *levels; i++)
    if (!strcmp(cpu, levels[i][0])) return levels[i][1];
  return "";
}

// The table's last field is the target, "CPU: feature ...": the features
// LLVM enabled for the target machine (its "+name" entries), which the
// runtime checks against the CPU it starts on (cpu.c).
#define NENTRIES 6
static void emit_main(CG *c, LLVMValueRef json, LLVMValueRef *entries, const char *cpu, const char *features) {
  if (!*features) features = level_features(cpu);
  size_t cap = strlen(cpu) + strlen(features) + 4, n = (size_t)snprintf(NULL, 0, "%s:", cpu);
  char *target = malloc(cap);
  snprintf(target, cap, "%s:", cpu);
  for (const char *p = features; *p;) {
    size_t len = strcspn(p, ",");
    if (p[0] == '+' && len > 1) n += (size_t)snprintf(target + n, cap - n, " %.*s", (int)len - 1, p + 1);
    p += len + (p[len] == ',');
  }
  LLVMValueRef vals[NENTRIES + 1];
  LLVMTypeRef ety[NENTRIES + 1];
  for (int i = 0; i < NENTRIES; i++) vals[i] = entries[i] ? entries[i] : LLVMConstNull(c->ptr), ety[i] = c->ptr;
  vals[NENTRIES] = const_string(c, "bpc_target", target), ety[NENTRIES] = c->ptr;
  free(target);
  LLVMTypeRef st = LLVMStructTypeInContext(c->cx, ety, NENTRIES + 1, 0);
  LLVMValueRef table = LLVMAddGlobal(c->mod, st, "bpc_entries");
  LLVMSetInitializer(table, LLVMConstNamedStruct(st, vals, NENTRIES + 1));
  LLVMSetGlobalConstant(table, 1);
  LLVMTypeRef margs[2] = {c->i32, c->ptr};
  LLVMValueRef mainf = LLVMAddFunction(c->mod, "main", LLVMFunctionType(c->i32, margs, 2, 0));
  LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->cx, mainf, "entry"));
  LLVMTypeRef bargs[4] = {c->ptr, c->ptr, c->i32, c->ptr};
  LLVMValueRef bm = get_fn(c, "bpcrt_main", c->i32, bargs, 4);
  LLVMValueRef r = call(c, bm, (LLVMValueRef[]){json, table, LLVMGetParam(mainf, 0), LLVMGetParam(mainf, 1)}, 4);
  LLVMBuildRet(c->b, r);
}

// Turns a function definition into a declaration (its blocks deleted).
// bpck_<exp|log|...>_<f32|f64>: the scalar math generated loops inline.
static bool is_scalar_math(const char *name) {
  static const char *scalar[] = {"exp", "log",     "tanh",     "sin",  "cos",       "erf",
                                 "pow", "sigmoid", "softplus", "gelu", "gelu_grad", "silu"};
  for (size_t i = 0; i < sizeof scalar / sizeof *scalar; i++) {
    size_t len = strlen(scalar[i]);
    if (!strncmp(name + 5, scalar[i], len) && (!strcmp(name + 5 + len, "_f32") || !strcmp(name + 5 + len, "_f64")))
      return true;
  }
  return false;
}

static void drop_body(LLVMValueRef f) {
  for (LLVMBasicBlockRef bb = LLVMGetFirstBasicBlock(f); bb;) {
    LLVMBasicBlockRef next = LLVMGetNextBasicBlock(bb);
    LLVMDeleteBasicBlock(bb);
    bb = next;
  }
}

// Links the kernel library's scalar math into the module (it must inline
// into the generated loops to vectorize) and gives it the target's CPU and
// features. The kernels themselves stay calls into the runtime's compiled
// library (libbpcrt, x86-64-v3 plus a run-time AVX-512 GEMM): compiling them again per model
// would multiply compile time for nothing.
static LLVMModuleRef parse_kernels(LLVMContextRef cx, Diag *d) {
  LLVMMemoryBufferRef buf = LLVMCreateMemoryBufferWithMemoryRange(
      bpc_kernels_bc, (size_t)(bpc_kernels_bc_end - bpc_kernels_bc), "kernels.bc", 0);
  LLVMModuleRef lib = NULL;
  if (LLVMParseBitcodeInContext2(cx, buf, &lib)) {
    diag_error(d, (Loc){0}, "internal: the embedded kernel library does not parse");
    lib = NULL;
  }
  LLVMDisposeMemoryBuffer(buf);
  return lib;
}

// Every kernel the module calls (a declaration named bpck_*) against the
// library's own definition, compiled from bpc_kernels.h: the same function
// type (return, argument count and each argument's type), or an error
// naming the kernel and both types. The lowerings build a call's type from
// its arguments' values, so a wrong argument list stops here instead of
// becoming a call that reads garbage (LLVM's linker would accept it: with
// opaque pointers a mismatched call is undefined behaviour, not an error).
static bool check_kernel_calls(LLVMModuleRef mod, LLVMModuleRef lib, Diag *d) {
  bool ok = true;
  for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f)) {
    size_t len;
    const char *name = LLVMGetValueName2(f, &len);
    if (!LLVMIsDeclaration(f) || strncmp(name, "bpck_", 5)) continue;
    LLVMValueRef def = LLVMGetNamedFunction(lib, name);
    if (!def) {
      diag_error(d, (Loc){0}, "internal: the generated code calls %s, which the kernel library does not define", name);
      ok = false;
      continue;
    }
    LLVMTypeRef want = LLVMGlobalGetValueType(def), got = LLVMGlobalGetValueType(f);
    if (want == got) continue;
    char *ws = LLVMPrintTypeToString(want), *gs = LLVMPrintTypeToString(got);
    diag_error(d, (Loc){0}, "internal: the generated call of %s has type %s, but the kernel library declares %s", name,
               gs, ws);
    LLVMDisposeMessage(ws), LLVMDisposeMessage(gs);
    ok = false;
  }
  return ok;
}

bool codegen_check_kernel_calls(LLVMModuleRef mod, Diag *d) {
  LLVMModuleRef lib = parse_kernels(LLVMGetModuleContext(mod), d);
  if (!lib) return false;
  bool ok = check_kernel_calls(mod, lib, d);
  LLVMDisposeModule(lib);
  return ok;
}

static bool link_kernels(CG *c, const char *cpu, const char *features, Diag *d) {
  LLVMModuleRef lib = parse_kernels(c->cx, d);
  if (!lib) return false;
  if (!check_kernel_calls(c->mod, lib, d)) {
    LLVMDisposeModule(lib);
    return false;
  }
  LLVMSetTarget(lib, LLVMGetTarget(c->mod));
  LLVMSetDataLayout(lib, LLVMGetDataLayoutStr(c->mod));
  if (LLVMLinkModules2(c->mod, lib)) {
    diag_error(d, (Loc){0}, "internal: linking the kernel library failed");
    return false;
  }
  for (LLVMValueRef f = LLVMGetFirstFunction(c->mod); f; f = LLVMGetNextFunction(f)) {
    if (LLVMIsDeclaration(f)) continue;
    const char *fname = LLVMGetValueName2(f, &(size_t){0});
    if (!strncmp(fname, "bpck_", 5) && !is_scalar_math(fname)) {
      drop_body(f);
      LLVMSetLinkage(f, LLVMExternalLinkage);
      continue;
    }
    LLVMRemoveStringAttributeAtIndex(f, LLVMAttributeFunctionIndex, "target-cpu", 10);
    LLVMRemoveStringAttributeAtIndex(f, LLVMAttributeFunctionIndex, "target-features", 15);
    LLVMRemoveStringAttributeAtIndex(f, LLVMAttributeFunctionIndex, "tune-cpu", 8);
    LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex,
                            LLVMCreateStringAttribute(c->cx, "target-cpu", 10, cpu, (unsigned)strlen(cpu)));
    LLVMAddAttributeAtIndex(
        f, LLVMAttributeFunctionIndex,
        LLVMCreateStringAttribute(c->cx, "target-features", 15, features, (unsigned)strlen(features)));
    if (!strncmp(fname, "bpck_", 5)) LLVMSetLinkage(f, LLVMInternalLinkage);  // unused ones are dropped
  }
  return true;
}

// Whether LLVM knows `cpu` for this target. LLVM only warns about an
// unknown name on stderr and, on x86-64, later dies (no 64-bit feature), so
// a child process builds one small function for it and the parent reads
// what happened: a clean error instead of an abort.
static bool cpu_known(LLVMTargetRef target, const char *triple, const char *cpu) {
  int fds[2];
  if (pipe(fds) != 0) return true;  // cannot check: let LLVM decide
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]), close(fds[1]);
    return true;
  }
  if (pid == 0) {
    dup2(fds[1], 2);
    close(fds[0]), close(fds[1]);
    LLVMTargetMachineRef tm =
        LLVMCreateTargetMachine(target, triple, cpu, "", LLVMCodeGenLevelNone, LLVMRelocPIC, LLVMCodeModelDefault);
    LLVMContextRef cx = LLVMContextCreate();
    LLVMModuleRef m = LLVMModuleCreateWithNameInContext("cpu", cx);
    LLVMSetTarget(m, triple);
    LLVMValueRef f = LLVMAddFunction(m, "f", LLVMFunctionType(LLVMVoidTypeInContext(cx), NULL, 0, 0));
    LLVMBuilderRef b = LLVMCreateBuilderInContext(cx);
    LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(cx, f, "entry"));
    LLVMBuildRetVoid(b);
    LLVMMemoryBufferRef out = NULL;
    char *err = NULL;
    _exit(tm && !LLVMTargetMachineEmitToMemoryBuffer(tm, m, LLVMObjectFile, &err, &out) ? 0 : 1);
  }
  close(fds[1]);
  char buf[4096];
  size_t len = 0;
  ssize_t r;
  while ((r = read(fds[0], buf + len, sizeof buf - 1 - len)) > 0 || (r < 0 && errno == EINTR))
    if (r > 0) len += (size_t)r;
  buf[len] = 0;
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 && !strstr(buf, "not a recognized processor");
}

LLVMTargetMachineRef codegen_target(const char *cpu_in, int opt, Diag *d) {
  static bool ready;
  if (!ready) {
    LLVMInitializeNativeTarget();
    LLVMInitializeNativeAsmPrinter();
    ready = true;
  }
  char *triple = LLVMGetDefaultTargetTriple();
  LLVMTargetRef target;
  char *err = NULL;
  if (LLVMGetTargetFromTriple(triple, &target, &err)) {
    diag_error(d, (Loc){0}, "no LLVM target for %s: %s", triple, err);
    LLVMDisposeMessage(err);
    LLVMDisposeMessage(triple);
    return NULL;
  }
  bool native = !cpu_in || !strcmp(cpu_in, "native");
  if (!native && !cpu_known(target, triple, cpu_in)) {
    diag_error(d, (Loc){0}, "--cpu %s: not a processor LLVM knows for %s (`llc -mcpu=help` lists them)", cpu_in,
               triple);
    LLVMDisposeMessage(triple);
    return NULL;
  }
  char *cpu = native ? LLVMGetHostCPUName() : NULL;
  char *features = native ? LLVMGetHostCPUFeatures() : NULL;
  LLVMCodeGenOptLevel lvl = opt <= 0   ? LLVMCodeGenLevelNone
                            : opt == 1 ? LLVMCodeGenLevelLess
                            : opt == 2 ? LLVMCodeGenLevelDefault
                                       : LLVMCodeGenLevelAggressive;
  LLVMTargetMachineRef tm = LLVMCreateTargetMachine(target, triple, native ? cpu : cpu_in, native ? features : "", lvl,
                                                    LLVMRelocPIC, LLVMCodeModelDefault);
  if (cpu) LLVMDisposeMessage(cpu);
  if (features) LLVMDisposeMessage(features);
  LLVMDisposeMessage(triple);
  return tm;
}

LLVMModuleRef codegen_module(LLVMContextRef cx, const CodegenUnit *u, LLVMTargetMachineRef tm, int opt, Diag *d) {
  CG c = {.cx = cx};
  c.mod = LLVMModuleCreateWithNameInContext(u->name ? u->name : "bpc", cx);
  char *triple = LLVMGetTargetMachineTriple(tm);
  LLVMSetTarget(c.mod, triple);
  LLVMDisposeMessage(triple);
  LLVMTargetDataRef td = LLVMCreateTargetDataLayout(tm);
  char *dl = LLVMCopyStringRepOfTargetData(td);
  LLVMSetDataLayout(c.mod, dl);
  LLVMDisposeMessage(dl);
  LLVMDisposeTargetData(td);
  c.b = LLVMCreateBuilderInContext(cx);
  c.i1 = LLVMInt1TypeInContext(cx);
  c.i32 = LLVMInt32TypeInContext(cx);
  c.i64 = LLVMInt64TypeInContext(cx);
  c.f32 = LLVMFloatTypeInContext(cx);
  c.f64 = LLVMDoubleTypeInContext(cx);
  c.ptr = LLVMPointerTypeInContext(cx, 0);
  c.vd = LLVMVoidTypeInContext(cx);
  LLVMTypeRef fields[CTX_NFIELDS] = {c.ptr, c.ptr, c.ptr, c.i64, c.i64};
  c.ctxty = LLVMStructTypeInContext(cx, fields, CTX_NFIELDS, 0);
  LLVMTypeRef targs[4] = {c.ptr, c.i64, c.i64, c.i32};
  c.taskty = LLVMFunctionType(c.vd, targs, 4, 0);
  LLVMValueRef entries[CODEGEN_MAX_PROGRAMS][2] = {{0}};
  for (int pi = 0; pi < u->nprograms; pi++) {
    const CodegenProgram *cp = &u->programs[pi];
    c.p = cp->p;
    c.g = cp->p->g;
    c.bf16 = graph_bf16(c.g);
    for (int i = 0; i < c.steps.n; i++) free(c.steps.v[i].slots);
    c.steps.n = 0;
    for (int i = 0; i < c.p->kernels.n; i++) {
      const Kernel *k = &c.p->kernels.v[i];
      c.phase = k->phase;
      c.kernel = i;
      c.part = 0;
      c.sig = kernel_signature(&c, k);
      switch (k->kind) {
      case KK_EW:
        if (k->group > 0)
          emit_update_group(&c, k, 1 + k->group);
        else if (k->group == 0)
          emit_ew(&c, k);  // (-1: emitted with its group)
        break;
      case KK_CALL: emit_call(&c, k); break;
      case KK_STATE: emit_state(&c, k); break;
      case KK_ALIAS: break;
      }
      free(c.sig);
    }
    entries[pi][0] = emit_entry(&c, cp->entry[0], cp->entry[1] ? 0 : -1, pi);
    if (cp->entry[1]) entries[pi][1] = emit_entry(&c, cp->entry[1], 1, pi);
  }
  if (u->json) {
    LLVMValueRef json = const_string(&c, "bpc_model_json", u->json);
    if (u->with_main) {
      // bpcrt_entries by name: train_step, train_update, eval, sample, predict, decode
      static const char *const names[NENTRIES] = {"bpc_train_step",     "bpc_train_update",    "bpc_eval_forward",
                                                  "bpc_sample_forward", "bpc_predict_forward", "bpc_decode_forward"};
      LLVMValueRef e[NENTRIES] = {0};
      for (int k = 0; k < NENTRIES; k++)
        for (int pi = 0; pi < u->nprograms; pi++)
          for (int w = 0; w < 2; w++)
            if (u->programs[pi].entry[w] && !strcmp(u->programs[pi].entry[w], names[k])) e[k] = entries[pi][w];
      char *cpu = LLVMGetTargetMachineCPU(tm), *features = LLVMGetTargetMachineFeatureString(tm);
      emit_main(&c, json, e, cpu, features);
      LLVMDisposeMessage(cpu);
      LLVMDisposeMessage(features);
    }
  }
  LLVMDisposeBuilder(c.b);
  for (int i = 0; i < c.steps.n; i++) free(c.steps.v[i].slots);
  free(c.steps.v);
  free(c.slots.v);
  for (int i = 0; i < c.wrappers.n; i++) free(c.wrappers.sig[i]);
  free(c.wrappers.sig);
  free(c.wrappers.fn);
  for (int i = 0; i < c.bodies.n; i++) free(c.bodies.sig[i]);
  free(c.bodies.sig);
  free(c.bodies.fn);
  char *cpu = LLVMGetTargetMachineCPU(tm), *features = LLVMGetTargetMachineFeatureString(tm);
  bool ok = link_kernels(&c, cpu, features, d);
  LLVMDisposeMessage(cpu);
  LLVMDisposeMessage(features);
  char *err = NULL;
  if (ok && LLVMVerifyModule(c.mod, LLVMReturnStatusAction, &err)) {
    diag_error(d, (Loc){0}, "internal: generated module does not verify: %.2000s", err);
    ok = false;
  }
  if (err) LLVMDisposeMessage(err);
  if (ok) {
    char pipeline[32];
    snprintf(pipeline, sizeof pipeline, "default<O%d>", opt < 0 ? 0 : opt > 3 ? 3 : opt);
    LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
    // Vectorize, but don't interleave or unroll the vector loops: the loops are
    // memory bound, and interleaving multiplies compile time.
    LLVMPassBuilderOptionsSetLoopInterleaving(po, 0);
    LLVMPassBuilderOptionsSetLoopUnrolling(po, 0);
    LLVMErrorRef e = LLVMRunPasses(c.mod, pipeline, tm, po);
    LLVMDisposePassBuilderOptions(po);
    if (e) {
      char *m = LLVMGetErrorMessage(e);
      diag_error(d, (Loc){0}, "internal: LLVM passes failed: %s", m);
      LLVMDisposeErrorMessage(m);
      ok = false;
    }
  }
  if (!ok) {
    LLVMDisposeModule(c.mod);
    return NULL;
  }
  return c.mod;
}

bool codegen_emit(const CodegenUnit *u, const char *cpu, int opt, const char *kind, const char *path, Diag *d) {
  LLVMTargetMachineRef tm = codegen_target(cpu, opt, d);
  if (!tm) return false;
  LLVMContextRef cx = LLVMContextCreate();
  LLVMModuleRef mod = codegen_module(cx, u, tm, opt, d);
  bool ok = mod != NULL;
  if (ok) {
    size_t n = strlen(path) + 32;
    char *tmp = xmalloc(n);
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    char *err = NULL;
    if (!strcmp(kind, "llvm"))
      ok = !LLVMPrintModuleToFile(mod, tmp, &err);
    else
      ok = !LLVMTargetMachineEmitToFile(tm, mod, tmp, !strcmp(kind, "asm") ? LLVMAssemblyFile : LLVMObjectFile, &err);
    if (ok && rename(tmp, path) != 0) ok = false, err = NULL;
    if (!ok) {
      diag_error(d, (Loc){0}, "cannot write '%s': %s", path, err ? err : "rename failed");
      remove(tmp);
    }
    if (err) LLVMDisposeMessage(err);
    free(tmp);
    LLVMDisposeModule(mod);
  }
  LLVMContextDispose(cx);
  LLVMDisposeTargetMachine(tm);
  return ok;
}
