// lower_attention.c — attention: q, k, v as three operands (rows C apart) or
// the thirds of one [B, T, 3C] (attention_qkv: rows 3C apart), an optional
// key mask, over (batch, head) pairs; the gradient dq, dk, dv flattened one
// after the other, one of them, or (packed) the thirds of d(qkv). The
// one-position decode over a k/v cache (decode.c). causal_mask and its
// gradient over the rows of the scores.
#include "lower.h"

static bool packed_qkv(const Node *n) { return n->op == OP_ATTENTION_QKV || n->op == OP_ATTENTION_QKV_GRAD; }
static bool forward(const Node *n) { return n->op == OP_ATTENTION || n->op == OP_ATTENTION_QKV; }

// q [B, Tq, C] (packed: [B, T, 3C]) and the key count.
static void attention_dims(const Graph *g, const Node *n, int64_t *B, int64_t *Tq, int64_t *Tk, int64_t *C) {
  const Shape *q = &graph_node(g, n->in[0])->shape;
  bool packed = packed_qkv(n);
  *B = q->d[0], *Tq = q->d[1];
  *Tk = packed ? q->d[1] : graph_node(g, n->in[1])->shape.d[1];
  *C = packed ? q->d[2] / 3 : q->d[2];
}

static void lower_attention(CG *c, const Kernel *k, const Node *n) {
  const Attr *a = &n->attr;
  DType t = call_dtype(c, n);
  bool packed = packed_qkv(n), fwd = forward(n);
  const Shape *q = XS(0), *kk = packed ? XS(0) : XS(1);
  int64_t B, Tq, Tk, C, H = a->i[0];
  attention_dims(c->g, n, &B, &Tq, &Tk, &C);
  int64_t ld = packed ? 3 * C : C, work = kernel_work(k);
  begin_kernel(c);
  LLVMValueRef sp = scratch_ptr(c), in[3], null = LLVMConstNull(c->ptr), outs[3] = {null, null, null};
  for (int w = 0; w < 3; w++)
    in[w] = packed ? LLVMBuildGEP2(c->b, ftype(c, t), P(IN(0)), (LLVMValueRef[]){I64(c, w * C)}, 1, "") : P(IN(w));
  int mi = node_operand(n, "mask");
  LLVMValueRef mask = mi >= 0 ? P(IN(mi)) : null;
  if (fwd)
    return call_kernel_sfx(c, "attention", product_sfx(c, t),
                           (LLVMValueRef[]){P(k->root), in[0], in[1], in[2], I64(c, B), I64(c, Tq), I64(c, Tk),
                                            I64(c, C), I64(c, H), I32(c, a->b[0]), mask, I64(c, ld), sp},
                           13, B * H, work);
  if (packed || a->i[1] == 3) {
    for (int w = 0; w < 3; w++) {
      LLVMValueRef off = I64(c, packed ? w * C : attention_grad_offset(q, kk, w));
      outs[w] = LLVMBuildGEP2(c->b, ftype(c, t), P(k->root), &off, 1, "");
    }
  } else {
    outs[a->i[1]] = P(k->root);
  }
  call_kernel_sfx(
      c, "attention_bwd", product_sfx(c, t),
      (LLVMValueRef[]){outs[0], outs[1], outs[2], in[0], in[1], in[2], P(IN(packed ? 1 : 3)), I64(c, B), I64(c, Tq),
                       I64(c, Tk), I64(c, C), I64(c, H), I32(c, a->b[0]), mask, I64(c, ld), I64(c, ld), sp},
      17, B * H, work);
}

static int64_t attention_scratch(const Graph *g, const Node *n) {
  int64_t B, Tq, Tk, C, hs;
  attention_dims(g, n, &B, &Tq, &Tk, &C);
  hs = C / n->attr.i[0];
  bool f64 = n->dtype == DT_F64;
  size_t elems = forward(n)
                     ? (f64 ? bpck_attention_scratch_f64(Tq, Tk, hs) : bpck_attention_scratch_f32(Tq, Tk, hs))
                     : (f64 ? bpck_attention_bwd_scratch_f64(Tq, Tk, hs) : bpck_attention_bwd_scratch_f32(Tq, Tk, hs));
  return (int64_t)elems * dtype_bytes(n->dtype);
}

// 2 per multiply-add of its four score-sized products (full Tq x Tk even when
// causal, as PyTorch and llm.c count it) plus 5 per score for the softmax;
// the gradient of all of q, k, v twice that, of one a third of it.
static int64_t attention_flops(const Graph *g, const Node *n) {
  int64_t B, Tq, Tk, C;
  attention_dims(g, n, &B, &Tq, &Tk, &C);
  int64_t fwd = 4 * B * Tq * Tk * C + 5 * B * Tq * Tk * n->attr.i[0];
  if (forward(n)) return fwd;
  return packed_qkv(n) || n->attr.i[1] == 3 ? 2 * fwd : 2 * fwd / 3;
}

// kc, vc: the cache (the kernel appends k, v at pos).
static void lower_attention_decode(CG *c, const Kernel *k, const Node *n) {
  int64_t C = XS(0)->d[2], Tc = XS(3)->d[1], H = n->attr.i[0];
  begin_kernel(c);
  call_kernel_sfx(c, "attention_decode", product_sfx(c, call_dtype(c, n)),
                  (LLVMValueRef[]){P(k->root), P(IN(0)), P(IN(1)), P(IN(2)), P(IN(3)), P(IN(4)), P(IN(5)), I64(c, Tc),
                                   I64(c, C), I64(c, H), scratch_ptr(c)},
                  11, H, kernel_work(k));
}

// The scores of one query over the cache.
static int64_t decode_scratch(const Graph *g, const Node *n) {
  return (graph_node(g, n->in[3])->shape.d[1] + 16) * dtype_bytes(n->dtype);
}

static void lower_causal_mask(CG *c, const Kernel *k, const Node *n) {
  int64_t Cc = last_dim(&n->shape), R = n->shape.d[n->shape.rank - 2];
  begin_kernel(c);
  call_kernel(c, "causal_mask", call_dtype(c, n),
              (LLVMValueRef[]){P(k->root), P(IN(0)), I64(c, R), I64(c, Cc), I32(c, n->op == OP_CAUSAL_MASK_GRAD)}, 5,
              shape_numel(&n->shape) / Cc, kernel_work(k));
}

const Backend be_attention = {.emit = lower_attention, .scratch = attention_scratch, .flops = attention_flops};
const Backend be_attention_decode = {.emit = lower_attention_decode, .scratch = decode_scratch};
const Backend be_causal_mask = {.emit = lower_causal_mask};
