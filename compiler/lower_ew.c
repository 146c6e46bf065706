// lower_ew.c — elementwise ops: each one's value at the current element of
// a fused loop (codegen.c's emit_ew evaluates a kernel's tree per element),
// in the node's dtype; i32 where the op allows it. The transcendental
// functions are the kernel library's scalar math (bpck_exp_f32, ...),
// linked into the module so they inline and vectorize. And dropout, whose
// random stream is a library kernel.
#include "lower.h"

// One elementwise node's value at the current element.
static LLVMValueRef ew_scalar(CG *c, Ew *e, const Node *n) {
  DType t = n->dtype;
  bool is_int = t == DT_I32;
  // Operands convert to the node's dtype, except compare/where operands.
  DType opt = t;
  if (n->op == OP_GREATER || n->op == OP_LESS || n->op == OP_EQUAL) {
    opt = DT_F32;
    for (int k = 0; k < n->nin; k++) opt = graph_node(c->g, n->in[k])->dtype == DT_F64 ? DT_F64 : opt;
    if (t == DT_F64) opt = DT_F64;
  }
  LLVMValueRef x[3] = {0};
  for (int k = 0; k < n->nin && k < 3; k++) {
    DType want = (n->op == OP_WHERE && k == 0) ? graph_node(c->g, n->in[0])->dtype : opt;
    if (n->op == OP_WHERE && k == 0 && graph_node(c->g, n->in[0])->op == OP_CONST) want = t == DT_I32 ? DT_F32 : t;
    x[k] = ew_operand(c, e, n->in[k], want);
  }
  LLVMTypeRef ty = ftype(c, t);
  const char *s = sfx(t);
  char name[64];
#define LIB1(fn) (snprintf(name, sizeof name, "bpck_" fn "_%s", s), lib(c, name, ty, (LLVMValueRef[]){x[0]}, 1))
  switch (n->op) {
  case OP_CONST: return is_int ? I32(c, (int64_t)n->attr.f[0]) : FC(c, t, n->attr.f[0]);
  case OP_CAST:
    return convert(c, ew_operand(c, e, n->in[0], graph_node(c->g, n->in[0])->dtype), graph_node(c->g, n->in[0])->dtype,
                   t);
  case OP_STOP_GRADIENT: return x[0];
  case OP_ADD: return is_int ? LLVMBuildAdd(c->b, x[0], x[1], "") : LLVMBuildFAdd(c->b, x[0], x[1], "");
  case OP_SUB: return is_int ? LLVMBuildSub(c->b, x[0], x[1], "") : LLVMBuildFSub(c->b, x[0], x[1], "");
  case OP_MUL: return is_int ? LLVMBuildMul(c->b, x[0], x[1], "") : LLVMBuildFMul(c->b, x[0], x[1], "");
  case OP_DIV: return LLVMBuildFDiv(c->b, x[0], x[1], "");
  case OP_NEG: return is_int ? LLVMBuildNeg(c->b, x[0], "") : LLVMBuildFNeg(c->b, x[0], "");
  case OP_SQUARE: return is_int ? LLVMBuildMul(c->b, x[0], x[0], "") : LLVMBuildFMul(c->b, x[0], x[0], "");
  case OP_MAXIMUM:
  case OP_MINIMUM: {  // NaN in the first operand wins, as NumPy
    if (is_int)
      return LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, n->op == OP_MAXIMUM ? LLVMIntSGT : LLVMIntSLT, x[0], x[1], ""),
                             x[0], x[1], "");
    LLVMValueRef better = fcmp(c, n->op == OP_MAXIMUM ? LLVMRealOGT : LLVMRealOLT, x[0], x[1]);
    LLVMValueRef nan = fcmp(c, LLVMRealUNO, x[0], x[0]);
    return LLVMBuildSelect(c->b, LLVMBuildOr(c->b, better, nan, ""), x[0], x[1], "");
  }
  case OP_ABS:
    if (is_int)
      return LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, x[0], I32(c, 0), ""), LLVMBuildNeg(c->b, x[0], ""),
                             x[0], "");
    snprintf(name, sizeof name, "llvm.fabs.%s", s);
    return lib(c, name, ty, x, 1);
  case OP_SQRT: snprintf(name, sizeof name, "llvm.sqrt.%s", s); return lib(c, name, ty, x, 1);
  case OP_RSQRT:
    snprintf(name, sizeof name, "llvm.sqrt.%s", s);
    return LLVMBuildFDiv(c->b, FC(c, t, 1), lib(c, name, ty, x, 1), "");
  case OP_RELU: return LLVMBuildSelect(c->b, fcmp(c, LLVMRealOGT, x[0], FC(c, t, 0)), x[0], FC(c, t, 0), "");
  case OP_HARDTANH: {  // NaN fails both compares: it stays
    LLVMValueRef lo = FC(c, t, n->attr.f[0]), hi = FC(c, t, n->attr.f[1]);
    LLVMValueRef top = LLVMBuildSelect(c->b, fcmp(c, LLVMRealOGT, x[0], hi), hi, x[0], "");
    return LLVMBuildSelect(c->b, fcmp(c, LLVMRealOLT, x[0], lo), lo, top, "");
  }
  case OP_LEAKY_RELU:
    return LLVMBuildSelect(c->b, fcmp(c, LLVMRealOGT, x[0], FC(c, t, 0)), x[0],
                           LLVMBuildFMul(c->b, FC(c, t, n->attr.f[0]), x[0], ""), "");
  case OP_WHERE: {
    const Node *cn = graph_node(c->g, n->in[0]);
    LLVMValueRef cond = cn->dtype == DT_I32 && cn->op != OP_CONST
                            ? LLVMBuildICmp(c->b, LLVMIntNE, x[0], I32(c, 0), "")
                            : fcmp(c, LLVMRealUNE, x[0], LLVMConstReal(LLVMTypeOf(x[0]), 0));
    return LLVMBuildSelect(c->b, cond, x[1], x[2], "");
  }
  case OP_GREATER:
  case OP_LESS:
  case OP_EQUAL: {
    LLVMRealPredicate p = n->op == OP_GREATER ? LLVMRealOGT : n->op == OP_LESS ? LLVMRealOLT : LLVMRealOEQ;
    return LLVMBuildUIToFP(c->b, fcmp(c, p, x[0], x[1]), ty, "");
  }
  case OP_EXP: return LIB1("exp");
  case OP_LOG: return LIB1("log");
  case OP_TANH: return LIB1("tanh");
  case OP_ERF: return LIB1("erf");
  case OP_SIN: return LIB1("sin");
  case OP_COS: return LIB1("cos");
  case OP_SIGMOID: return LIB1("sigmoid");
  case OP_SOFTPLUS: return LIB1("softplus");
  case OP_SILU: return LIB1("silu");
  case OP_POW:
  case OP_GELU:
  case OP_GELU_GRAD: {
    const char *fn = n->op == OP_POW ? "pow" : n->op == OP_GELU ? "gelu" : "gelu_grad";
    double p = n->op == OP_POW ? n->attr.f[0] : n->attr.b[0] ? 1.0 : 0.0;
    snprintf(name, sizeof name, "bpck_%s_%s", fn, s);
    return lib(c, name, ty, (LLVMValueRef[]){x[0], FC(c, t, p)}, 2);
  }
  default: bpc_bug(__FILE__, __LINE__, "no elementwise lowering for '%s'", op_name(n->op));
  }
#undef LIB1
}

const Backend be_ew = {.scalar = ew_scalar};

// dropout: the mask from (seed, salt, step, element), as the interpreter.
static void lower_dropout(CG *c, const Kernel *k, const Node *n) {
  int64_t numel = shape_numel(&n->shape);
  begin_kernel(c);
  call_kernel(c, "dropout", call_dtype(c, n),
              (LLVMValueRef[]){P(k->root), P(IN(0)), I64(c, numel), FC(c, DT_F64, n->attr.f[0]), c->seed,
                               LLVMConstInt(c->i64, n->attr.salt, 0), c->step},
              7, numel, kernel_work(k));
}

const Backend be_dropout = {.emit = lower_dropout};
