// ops.h — the op registry: one X-macro row per op, shared by the Op enum and
// the op table (ir.c). Passes ask the table, never switch on op names.
//
// X(ENUM, name, schema, flags, lower, flops, shape_rule, interp_kernel, scalar, grad, backend)
//   name     the op's name in YAML expressions and in `bpc show`
//   schema   call signature, space separated `name:kind[slot][=default]`:
//              t  a tensor operand (a numeric literal becomes a scalar const)
//              T  any number (>= 1) of tensor operands (concat)
//              f  float attribute -> attr.f[slot]
//              i  integer attribute (dim arithmetic) -> attr.i[slot]
//              b  bool attribute -> attr.b[slot]
//              a  axes: an int or a list of ints -> attr.axes/naxes; `=all` default
//              p  permutation list -> attr.axes/naxes; `=none` default
//              s  shape list of dims (reshape allows one -1) -> attr.shape
//            a parameter without a default is required; a tensor with
//            the default `none` is optional (the node then has fewer operands).
//   flags    OPF_* (bpc.h)
//   lower    lowering class used by fusion and codegen
//   flops    FLOPs per element of the largest operand or result (check's count)
//   scalar   scalar function of elementwise ops (NULL for others): the one
//            definition of the op's math, used by the interpreter kernel.
//   grad     gradient rule (grad.c): emits the operands' cotangents as graph
//            nodes. grad_none: no gradient flows (OPF_NOGRAD, leaves);
//            grad_missing: differentiating through it is an error (the
//            second derivative of a fused backward op).
//   backend  the op's native backend (a Backend, bpcc.h), defined beside its
//            lowering in compiler/lower_<family>.c: the emit function, and
//            where the op needs them its scratch and temporary sizes, row
//            blocking, FLOP count and index limit. be_ew: the fused
//            elementwise loop's scalar (lower_ew.c); be_view: storage shared
//            with the operand; be_none: never reaches codegen (leaves, ops
//            that simplify.c rewrites into others).
//
// Leaves and internal ops carry OPF_INTERNAL: they cannot be called from YAML.

// clang-format off
#define BPC_OPS(X) \
  /* leaves: the step's inputs, trainable params, persistent state, literals */ \
  X(INPUT,      input,      "",                      OPF_INTERNAL|OPF_LEAF, LK_LEAF, 0, shape_leaf, interp_leaf, NULL, grad_none, be_none) \
  X(PARAM,      param,      "",                      OPF_INTERNAL|OPF_LEAF, LK_LEAF, 0, shape_leaf, interp_leaf, NULL, grad_none, be_none) \
  X(STATE,      state,      "",                      OPF_INTERNAL|OPF_LEAF, LK_LEAF, 0, shape_leaf, interp_leaf, NULL, grad_none, be_none) \
  X(CONST,      const,      "value:f0",              OPF_INTERNAL|OPF_NOGRAD, LK_EW, 0, shape_const, interp_ew, s_const, grad_none, be_ew) \
  X(CAST,       cast,       "x:t dtype:i0",          OPF_INTERNAL, LK_EW, 0, shape_cast, interp_ew, s_copy, grad_cast, be_ew) \
  /* elementwise, NumPy broadcasting */ \
  X(ADD,        add,        "a:t b:t",               OPF_EW, LK_EW, 1, shape_arith, interp_ew, s_add, grad_add, be_ew) \
  X(SUB,        sub,        "a:t b:t",               OPF_EW, LK_EW, 1, shape_arith, interp_ew, s_sub, grad_sub, be_ew) \
  X(MUL,        mul,        "a:t b:t",               OPF_EW, LK_EW, 1, shape_arith, interp_ew, s_mul, grad_mul, be_ew) \
  X(DIV,        div,        "a:t b:t",               OPF_EW, LK_EW, 1, shape_float, interp_ew, s_div, grad_div, be_ew) \
  X(MAXIMUM,    maximum,    "a:t b:t",               OPF_EW, LK_EW, 1, shape_arith, interp_ew, s_maximum, grad_maximum, be_ew) \
  X(MINIMUM,    minimum,    "a:t b:t",               OPF_EW, LK_EW, 1, shape_arith, interp_ew, s_minimum, grad_minimum, be_ew) \
  X(POW,        pow,        "x:t p:f0",              OPF_EW, LK_EW, 8, shape_float, interp_ew, s_pow, grad_pow, be_ew) \
  X(NEG,        neg,        "x:t",                   OPF_EW, LK_EW, 1, shape_arith, interp_ew, s_neg, grad_neg, be_ew) \
  X(EXP,        exp,        "x:t",                   OPF_EW, LK_EW, 4, shape_float, interp_ew, s_exp, grad_exp, be_ew) \
  X(LOG,        log,        "x:t",                   OPF_EW, LK_EW, 4, shape_float, interp_ew, s_log, grad_log, be_ew) \
  X(SQRT,       sqrt,       "x:t",                   OPF_EW, LK_EW, 1, shape_float, interp_ew, s_sqrt, grad_sqrt, be_ew) \
  X(RSQRT,      rsqrt,      "x:t",                   OPF_EW, LK_EW, 2, shape_float, interp_ew, s_rsqrt, grad_rsqrt, be_ew) \
  X(ABS,        abs,        "x:t",                   OPF_EW, LK_EW, 1, shape_arith, interp_ew, s_abs, grad_abs, be_ew) \
  X(SQUARE,     square,     "x:t",                   OPF_EW, LK_EW, 1, shape_arith, interp_ew, s_square, grad_square, be_ew) \
  X(SIN,        sin,        "x:t",                   OPF_EW, LK_EW, 4, shape_float, interp_ew, s_sin, grad_sin, be_ew) \
  X(COS,        cos,        "x:t",                   OPF_EW, LK_EW, 4, shape_float, interp_ew, s_cos, grad_cos, be_ew) \
  X(TANH,       tanh,       "x:t",                   OPF_EW, LK_EW, 4, shape_float, interp_ew, s_tanh, grad_tanh, be_ew) \
  X(ERF,        erf,        "x:t",                   OPF_EW, LK_EW, 8, shape_float, interp_ew, s_erf, grad_erf, be_ew) \
  X(SIGMOID,    sigmoid,    "x:t",                   OPF_EW, LK_EW, 4, shape_float, interp_ew, s_sigmoid, grad_sigmoid, be_ew) \
  X(RELU,       relu,       "x:t",                   OPF_EW, LK_EW, 1, shape_float, interp_ew, s_relu, grad_relu, be_ew) \
  X(LEAKY_RELU, leaky_relu, "x:t alpha:f0=0.01",     OPF_EW, LK_EW, 2, shape_float, interp_ew, s_leaky_relu, grad_leaky_relu, be_ew) \
  X(HARDTANH,   hardtanh,   "x:t min_val:f0=-1 max_val:f1=1", OPF_EW, LK_EW, 2, shape_hardtanh, interp_ew, s_hardtanh, grad_hardtanh, be_ew) \
  X(GELU,       gelu,       "x:t approximate:b0=true", OPF_EW, LK_EW, 8, shape_float, interp_ew, s_gelu, grad_gelu, be_ew) \
  X(SILU,       silu,       "x:t",                   OPF_EW, LK_EW, 5, shape_float, interp_ew, s_silu, grad_silu, be_ew) \
  X(SOFTPLUS,   softplus,   "x:t",                   OPF_EW, LK_EW, 5, shape_float, interp_ew, s_softplus, grad_softplus, be_ew) \
  X(WHERE,      where,      "cond:t a:t b:t",        OPF_EW, LK_EW, 1, shape_where, interp_ew, s_where, grad_where, be_ew) \
  X(GREATER,    greater,    "a:t b:t",               OPF_EW|OPF_NOGRAD, LK_EW, 1, shape_compare, interp_ew, s_greater, grad_none, be_ew) \
  X(LESS,       less,       "a:t b:t",               OPF_EW|OPF_NOGRAD, LK_EW, 1, shape_compare, interp_ew, s_less, grad_none, be_ew) \
  X(EQUAL,      equal,      "a:t b:t",               OPF_EW|OPF_NOGRAD, LK_EW, 1, shape_compare, interp_ew, s_equal, grad_none, be_ew) \
  /* reductions over attr.axes (normalized, ascending); keepdims in b0 */ \
  X(SUM,        sum,        "x:t axis:a=all keepdims:b0=false", 0, LK_REDUCE, 1, shape_reduce, interp_reduce, NULL, grad_sum, be_reduce) \
  X(MEAN,       mean,       "x:t axis:a=all keepdims:b0=false", 0, LK_REDUCE, 1, shape_reduce, interp_reduce, NULL, grad_mean, be_reduce) \
  X(MAX,        max,        "x:t axis:a=all keepdims:b0=false", 0, LK_REDUCE, 1, shape_reduce, interp_reduce, NULL, grad_max, be_reduce) \
  X(MIN,        min,        "x:t axis:a=all keepdims:b0=false", 0, LK_REDUCE, 1, shape_reduce, interp_reduce, NULL, grad_min, be_reduce) \
  X(VAR,        var,        "x:t axis:a=all keepdims:b0=false", 0, LK_REDUCE, 3, shape_reduce, interp_reduce, NULL, grad_var, be_reduce) \
  X(LOGSUMEXP,  logsumexp,  "x:t axis:a=all keepdims:b0=false", 0, LK_REDUCE, 6, shape_reduce, interp_reduce, NULL, grad_logsumexp, be_reduce) \
  /* shape */ \
  X(RESHAPE,    reshape,    "x:t shape:s",           0, LK_SHAPE, 0, shape_reshape, interp_copy, NULL, grad_reshape, be_view) \
  X(TRANSPOSE,  transpose,  "x:t perm:p=none",       0, LK_SHAPE, 0, shape_transpose, interp_transpose, NULL, grad_transpose, be_transpose) \
  X(BROADCAST_TO, broadcast_to, "x:t shape:s",       0, LK_SHAPE, 0, shape_broadcast_to, interp_broadcast_to, NULL, grad_broadcast_to, be_broadcast_to) \
  X(CONCAT,     concat,     "xs:T axis:i0=-1",       0, LK_SHAPE, 0, shape_concat, interp_concat, NULL, grad_concat, be_concat) \
  X(SLICE,      slice,      "x:t start:i0 stop:i1 axis:i2=-1", 0, LK_SHAPE, 0, shape_slice, interp_slice, NULL, grad_slice, be_slice) \
  /* linear algebra */ \
  X(MATMUL,     matmul,     "a:t b:t transpose_a:b0=false transpose_b:b1=false",               OPF_PRODUCT, LK_MATMUL, 0, shape_matmul, interp_matmul_t, NULL, grad_matmul, be_matmul) \
  X(LINEAR,     linear,     "x:t w:t b:t",           OPF_PRODUCT, LK_MATMUL, 0, shape_linear, interp_linear, NULL, grad_linear, be_linear) \
  /* indexing */ \
  X(EMBEDDING,  embedding,  "ids:t table:t",         0, LK_SPECIAL, 0, shape_embedding, interp_embedding, NULL, grad_embedding, be_embedding) \
  X(ONE_HOT,    one_hot,    "ids:t n:i0",            OPF_NOGRAD, LK_SPECIAL, 1, shape_one_hot, interp_one_hot, NULL, grad_none, be_one_hot) \
  X(ARANGE,     arange,     "n:i0",                  OPF_NOGRAD, LK_SPECIAL, 0, shape_arange, interp_arange, NULL, grad_none, be_arange) \
  X(ARGMAX,     argmax,     "x:t axis:i0=-1",        OPF_NOGRAD, LK_SPECIAL, 1, shape_argmax, interp_argmax, NULL, grad_none, be_argmax) \
  /* normalization; batch_norm gets two hidden STATE operands (running mean, var) */ \
  X(LAYER_NORM, layer_norm, "x:t gamma:t beta:t eps:f0=1e-5", 0, LK_SPECIAL, 8, shape_layer_norm, interp_layer_norm, NULL, grad_layer_norm, be_norm_rows) \
  X(RMS_NORM,   rms_norm,   "x:t gamma:t eps:f0=1e-6", 0, LK_SPECIAL, 6, shape_rms_norm, interp_rms_norm, NULL, grad_rms_norm, be_norm_rows) \
  X(BATCH_NORM, batch_norm, "x:t gamma:t beta:t momentum:f1=0.1 eps:f0=1e-5", OPF_STATEFUL, LK_SPECIAL, 8, shape_batch_norm, interp_batch_norm, NULL, grad_batch_norm, be_batch_norm) \
  X(SOFTMAX,    softmax,    "x:t axis:i0=-1",        0, LK_SPECIAL, 5, shape_softmax, interp_softmax, NULL, grad_softmax, be_softmax) \
  X(LOG_SOFTMAX, log_softmax, "x:t axis:i0=-1",      0, LK_SPECIAL, 5, shape_softmax, interp_log_softmax, NULL, grad_log_softmax, be_softmax) \
  /* attention */ \
  X(ATTENTION,  attention,  "q:t k:t v:t heads:i0 causal:b0=false mask:t=none", OPF_PRODUCT_INNER, LK_SPECIAL, 0, shape_attention, interp_attention, NULL, grad_attention, be_attention) \
  X(CAUSAL_MASK, causal_mask, "x:t",                 0, LK_SPECIAL, 0, shape_causal_mask, interp_causal_mask, NULL, grad_causal_mask, be_causal_mask) \
  /* convolution, NHWC; pool stride 0 means "= size" */ \
  X(CONV2D,     conv2d,     "x:t w:t stride:i0=1 padding:i1=0", OPF_PRODUCT, LK_SPECIAL, 0, shape_conv2d, interp_conv2d, NULL, grad_conv2d, be_conv2d) \
  X(MAX_POOL2D, max_pool2d, "x:t size:i0 stride:i1=0", 0, LK_SPECIAL, 1, shape_pool2d, interp_max_pool2d, NULL, grad_max_pool2d, be_pool2d) \
  X(AVG_POOL2D, avg_pool2d, "x:t size:i0 stride:i1=0", 0, LK_SPECIAL, 1, shape_pool2d, interp_avg_pool2d, NULL, grad_avg_pool2d, be_pool2d) \
  /* regularization: attr.salt names the random stream */ \
  X(DROPOUT,    dropout,    "x:t p:f0",              OPF_RANDOM, LK_SPECIAL, 2, shape_dropout, interp_dropout, NULL, grad_dropout, be_dropout) \
  /* losses (scalar results) and metrics */ \
  X(CROSS_ENTROPY, cross_entropy, "logits:t labels:t", 0, LK_SPECIAL, 6, shape_cross_entropy, interp_cross_entropy, NULL, grad_cross_entropy, be_cross_entropy) \
  X(BINARY_CROSS_ENTROPY, binary_cross_entropy, "logits:t targets:t", 0, LK_SPECIAL, 6, shape_bce, interp_bce, NULL, grad_binary_cross_entropy, be_none) \
  X(MSE,        mse,        "pred:t target:t",       0, LK_SPECIAL, 3, shape_mse, interp_mse, NULL, grad_mse, be_none) \
  X(ACCURACY,   accuracy,   "logits:t labels:t",     OPF_NOGRAD, LK_SPECIAL, 1, shape_accuracy, interp_accuracy, NULL, grad_none, be_accuracy) \
  /* misc */ \
  X(STOP_GRADIENT, stop_gradient, "x:t",             OPF_NOGRAD, LK_EW, 0, shape_same, interp_ew, s_copy, grad_none, be_ew) \
  X(ZEROS,      zeros,      "shape:s",               OPF_NOGRAD, LK_EW, 0, shape_fill, interp_fill, NULL, grad_none, be_fill) \
  X(ONES,       ones,       "shape:s",               OPF_NOGRAD, LK_EW, 0, shape_fill, interp_fill, NULL, grad_none, be_fill) \
  X(FULL,       full,       "shape:s value:f0",      OPF_NOGRAD, LK_EW, 0, shape_fill, interp_fill, NULL, grad_none, be_fill) \
  /* internal backward ops, emitted by gradient rules (grad.c); kernels in interp_grad.c */ \
  X(GELU_GRAD,  gelu_grad,  "x:t approximate:b0=true", OPF_INTERNAL|OPF_EW, LK_EW, 12, shape_float, interp_ew, s_gelu_grad, grad_missing, be_ew) \
  X(MAXMIN_GRAD, maxmin_grad, "x:t gy:t axis:a=all is_min:b1=false", OPF_INTERNAL, LK_SPECIAL, 2, shape_maxmin_grad, interp_maxmin_grad, NULL, grad_missing, be_maxmin_grad) \
  X(SUM_SQUARES, sum_squares, "x:t",                 OPF_INTERNAL, LK_SPECIAL, 2, shape_sum_squares, interp_sum_squares, NULL, grad_sum_squares, be_sum_squares) \
  X(SLICE_GRAD, slice_grad, "gy:t start:i0 stop:i1 axis:i2 shape:s", OPF_INTERNAL, LK_SHAPE, 0, shape_slice_grad, interp_slice_grad, NULL, grad_slice_grad, be_slice_grad) \
  X(EMBEDDING_GRAD_ADD, embedding_grad_add, "ids:t gy:t base:t n:i0", OPF_INTERNAL, LK_SPECIAL, 1, shape_embedding_grad_add, interp_embedding_grad_add, NULL, grad_missing, be_embedding_grad) \
  X(EMBEDDING_GRAD, embedding_grad, "ids:t gy:t n:i0", OPF_INTERNAL, LK_SPECIAL, 1, shape_embedding_grad, interp_embedding_grad, NULL, grad_missing, be_embedding_grad) \
  X(LAYER_NORM_DX, layer_norm_dx, "x:t gamma:t gy:t eps:f0=1e-5", OPF_INTERNAL, LK_SPECIAL, 12, shape_norm_dx, interp_layer_norm_dx, NULL, grad_missing, be_norm_rows) \
  X(RMS_NORM_DX, rms_norm_dx, "x:t gamma:t gy:t eps:f0=1e-6", OPF_INTERNAL, LK_SPECIAL, 10, shape_norm_dx, interp_rms_norm_dx, NULL, grad_missing, be_norm_rows) \
  X(BATCH_NORM_DX, batch_norm_dx, "x:t gamma:t gy:t eps:f0=1e-5", OPF_INTERNAL, LK_SPECIAL, 12, shape_norm_dx, interp_batch_norm_dx, NULL, grad_missing, be_batch_norm_dx) \
  X(ATTENTION_QKV, attention_qkv, "x:t heads:i0 causal:b0=false mask:t=none", OPF_INTERNAL|OPF_PRODUCT_INNER, LK_SPECIAL, 0, shape_attention_qkv, interp_attention_qkv, NULL, grad_attention_qkv, be_attention) \
  X(ATTENTION_QKV_GRAD, attention_qkv_grad, "x:t gy:t heads:i0 causal:b0=false mask:t=none", OPF_INTERNAL|OPF_PRODUCT_INNER, LK_SPECIAL, 0, shape_attention_qkv_grad, interp_attention_qkv_grad, NULL, grad_missing, be_attention) \
  X(ATTENTION_GRAD, attention_grad, "q:t k:t v:t gy:t heads:i0 causal:b0=false which:i1=0 mask:t=none", OPF_INTERNAL|OPF_PRODUCT_INNER, LK_SPECIAL, 0, shape_attention_grad, interp_attention_grad, NULL, grad_missing, be_attention) \
  /* cached sampling (decode.c): the new query over the cache's rows [0, pos) and its own k, v */ \
  X(ATTENTION_DECODE, attention_decode, "q:t k:t v:t kc:t vc:t pos:t heads:i0", OPF_INTERNAL|OPF_NOGRAD|OPF_PRODUCT_INNER, LK_SPECIAL, 0, shape_attention_decode, interp_attention_decode, NULL, grad_missing, be_attention_decode) \
  X(CAUSAL_MASK_GRAD, causal_mask_grad, "gy:t", OPF_INTERNAL, LK_SPECIAL, 0, shape_same, interp_causal_mask_grad, NULL, grad_causal_mask_grad, be_causal_mask) \
  X(CONV2D_DX,  conv2d_dx,  "gy:t w:t stride:i0=1 padding:i1=0 shape:s", OPF_INTERNAL|OPF_PRODUCT, LK_SPECIAL, 0, shape_conv2d_dx, interp_conv2d_dx, NULL, grad_missing, be_conv2d) \
  X(CONV2D_DW,  conv2d_dw,  "x:t gy:t stride:i0=1 padding:i1=0 shape:s", OPF_INTERNAL|OPF_PRODUCT, LK_SPECIAL, 0, shape_conv2d_dw, interp_conv2d_dw, NULL, grad_missing, be_conv2d) \
  X(MAX_POOL2D_GRAD, max_pool2d_grad, "x:t gy:t size:i0 stride:i1=0", OPF_INTERNAL, LK_SPECIAL, 1, shape_pool2d_grad, interp_max_pool2d_grad, NULL, grad_missing, be_pool2d) \
  X(AVG_POOL2D_GRAD, avg_pool2d_grad, "x:t gy:t size:i0 stride:i1=0", OPF_INTERNAL, LK_SPECIAL, 1, shape_pool2d_grad, interp_avg_pool2d_grad, NULL, grad_missing, be_pool2d) \
  X(CROSS_ENTROPY_GRAD, cross_entropy_grad, "logits:t labels:t gy:t", OPF_INTERNAL, LK_SPECIAL, 6, shape_cross_entropy_grad, interp_cross_entropy_grad, NULL, grad_missing, be_cross_entropy_grad) \
  /* the classifier and its loss in row blocks (lce.c's rewrite): cross_entropy(h @ w^T, labels) \
     (transpose_w) or of h @ w; with gy, also its gradient: [dh, dw, loss] flattened (lce_offset); \
     under bf16 its three GEMMs take bf16 operands, as the matmuls it replaces */ \
  X(LINEAR_CROSS_ENTROPY, linear_cross_entropy, "h:t w:t labels:t gy:t=none transpose_w:b0=true", OPF_INTERNAL|OPF_PRODUCT, LK_SPECIAL, 0, shape_linear_cross_entropy, interp_linear_cross_entropy, NULL, grad_missing, be_linear_cross_entropy)
// clang-format on
