// ops.h — the op registry: one X-macro row per op, shared by the Op enum and
// the op table (ir.c). Passes ask the table, never switch on op names.
//
// X(ENUM, name, schema, flags, lower, flops, shape_rule, interp_kernel, scalar)
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
//            a parameter without a default is required.
//   flags    OPF_* (bpc.h)
//   lower    lowering class used by fusion and codegen
//   flops    FLOPs per element of the largest operand or result (check's count)
//   scalar   scalar function of elementwise ops (NULL for others): the one
//            definition of the op's math, used by the interpreter kernel.
//
// Leaves and internal ops carry OPF_INTERNAL: they cannot be called from YAML.

// clang-format off
#define BPC_OPS(X) \
  /* leaves: the step's inputs, trainable params, persistent state, literals */ \
  X(INPUT,      input,      "",                      OPF_INTERNAL|OPF_LEAF, LK_LEAF, 0, shape_leaf, interp_leaf, NULL) \
  X(PARAM,      param,      "",                      OPF_INTERNAL|OPF_LEAF, LK_LEAF, 0, shape_leaf, interp_leaf, NULL) \
  X(STATE,      state,      "",                      OPF_INTERNAL|OPF_LEAF, LK_LEAF, 0, shape_leaf, interp_leaf, NULL) \
  X(CONST,      const,      "value:f0",              OPF_INTERNAL|OPF_NOGRAD, LK_EW, 0, shape_const, interp_ew, s_const) \
  X(CAST,       cast,       "x:t dtype:i0",          OPF_INTERNAL, LK_EW, 0, shape_cast, interp_ew, s_copy) \
  /* elementwise, NumPy broadcasting */ \
  X(ADD,        add,        "a:t b:t",               OPF_EW, LK_EW, 1, shape_arith, interp_ew, s_add) \
  X(SUB,        sub,        "a:t b:t",               OPF_EW, LK_EW, 1, shape_arith, interp_ew, s_sub) \
  X(MUL,        mul,        "a:t b:t",               OPF_EW, LK_EW, 1, shape_arith, interp_ew, s_mul) \
  X(DIV,        div,        "a:t b:t",               OPF_EW, LK_EW, 1, shape_float, interp_ew, s_div) \
  X(MAXIMUM,    maximum,    "a:t b:t",               OPF_EW, LK_EW, 1, shape_arith, interp_ew, s_maximum) \
  X(MINIMUM,    minimum,    "a:t b:t",               OPF_EW, LK_EW, 1, shape_arith, interp_ew, s_minimum) \
  X(POW,        pow,        "x:t p:f0",              OPF_EW, LK_EW, 8, shape_float, interp_ew, s_pow) \
  X(NEG,        neg,        "x:t",                   OPF_EW, LK_EW, 1, shape_arith, interp_ew, s_neg) \
  X(EXP,        exp,        "x:t",                   OPF_EW, LK_EW, 4, shape_float, interp_ew, s_exp) \
  X(LOG,        log,        "x:t",                   OPF_EW, LK_EW, 4, shape_float, interp_ew, s_log) \
  X(SQRT,       sqrt,       "x:t",                   OPF_EW, LK_EW, 1, shape_float, interp_ew, s_sqrt) \
  X(RSQRT,      rsqrt,      "x:t",                   OPF_EW, LK_EW, 2, shape_float, interp_ew, s_rsqrt) \
  X(ABS,        abs,        "x:t",                   OPF_EW, LK_EW, 1, shape_arith, interp_ew, s_abs) \
  X(SQUARE,     square,     "x:t",                   OPF_EW, LK_EW, 1, shape_arith, interp_ew, s_square) \
  X(SIN,        sin,        "x:t",                   OPF_EW, LK_EW, 4, shape_float, interp_ew, s_sin) \
  X(COS,        cos,        "x:t",                   OPF_EW, LK_EW, 4, shape_float, interp_ew, s_cos) \
  X(TANH,       tanh,       "x:t",                   OPF_EW, LK_EW, 4, shape_float, interp_ew, s_tanh) \
  X(SIGMOID,    sigmoid,    "x:t",                   OPF_EW, LK_EW, 4, shape_float, interp_ew, s_sigmoid) \
  X(RELU,       relu,       "x:t",                   OPF_EW, LK_EW, 1, shape_float, interp_ew, s_relu) \
  X(LEAKY_RELU, leaky_relu, "x:t alpha:f0=0.01",     OPF_EW, LK_EW, 2, shape_float, interp_ew, s_leaky_relu) \
  X(GELU,       gelu,       "x:t approximate:b0=true", OPF_EW, LK_EW, 8, shape_float, interp_ew, s_gelu) \
  X(SILU,       silu,       "x:t",                   OPF_EW, LK_EW, 5, shape_float, interp_ew, s_silu) \
  X(SOFTPLUS,   softplus,   "x:t",                   OPF_EW, LK_EW, 5, shape_float, interp_ew, s_softplus) \
  X(WHERE,      where,      "cond:t a:t b:t",        OPF_EW, LK_EW, 1, shape_where, interp_ew, s_where) \
  X(GREATER,    greater,    "a:t b:t",               OPF_EW|OPF_NOGRAD, LK_EW, 1, shape_compare, interp_ew, s_greater) \
  X(LESS,       less,       "a:t b:t",               OPF_EW|OPF_NOGRAD, LK_EW, 1, shape_compare, interp_ew, s_less) \
  X(EQUAL,      equal,      "a:t b:t",               OPF_EW|OPF_NOGRAD, LK_EW, 1, shape_compare, interp_ew, s_equal) \
  /* reductions over attr.axes (normalized, ascending); keepdims in b0 */ \
  X(SUM,        sum,        "x:t axis:a=all keepdims:b0=false", 0, LK_REDUCE, 1, shape_reduce, interp_reduce, NULL) \
  X(MEAN,       mean,       "x:t axis:a=all keepdims:b0=false", 0, LK_REDUCE, 1, shape_reduce, interp_reduce, NULL) \
  X(MAX,        max,        "x:t axis:a=all keepdims:b0=false", 0, LK_REDUCE, 1, shape_reduce, interp_reduce, NULL) \
  X(MIN,        min,        "x:t axis:a=all keepdims:b0=false", 0, LK_REDUCE, 1, shape_reduce, interp_reduce, NULL) \
  X(VAR,        var,        "x:t axis:a=all keepdims:b0=false", 0, LK_REDUCE, 3, shape_reduce, interp_reduce, NULL) \
  X(LOGSUMEXP,  logsumexp,  "x:t axis:a=all keepdims:b0=false", 0, LK_REDUCE, 6, shape_reduce, interp_reduce, NULL) \
  /* shape */ \
  X(RESHAPE,    reshape,    "x:t shape:s",           0, LK_SHAPE, 0, shape_reshape, interp_copy, NULL) \
  X(TRANSPOSE,  transpose,  "x:t perm:p=none",       0, LK_SHAPE, 0, shape_transpose, interp_transpose, NULL) \
  X(BROADCAST_TO, broadcast_to, "x:t shape:s",       0, LK_SHAPE, 0, shape_broadcast_to, interp_broadcast_to, NULL) \
  X(CONCAT,     concat,     "xs:T axis:i0=-1",       0, LK_SHAPE, 0, shape_concat, interp_concat, NULL) \
  X(SLICE,      slice,      "x:t start:i0 stop:i1 axis:i2=-1", 0, LK_SHAPE, 0, shape_slice, interp_slice, NULL) \
  /* linear algebra */ \
  X(MATMUL,     matmul,     "a:t b:t",               0, LK_MATMUL, 0, shape_matmul, interp_matmul, NULL) \
  X(LINEAR,     linear,     "x:t w:t b:t",           0, LK_MATMUL, 0, shape_linear, interp_linear, NULL) \
  /* indexing */ \
  X(EMBEDDING,  embedding,  "ids:t table:t",         0, LK_SPECIAL, 0, shape_embedding, interp_embedding, NULL) \
  X(ONE_HOT,    one_hot,    "ids:t n:i0",            OPF_NOGRAD, LK_SPECIAL, 1, shape_one_hot, interp_one_hot, NULL) \
  X(ARANGE,     arange,     "n:i0",                  OPF_NOGRAD, LK_SPECIAL, 0, shape_arange, interp_arange, NULL) \
  X(ARGMAX,     argmax,     "x:t axis:i0=-1",        OPF_NOGRAD, LK_SPECIAL, 1, shape_argmax, interp_argmax, NULL) \
  /* normalization; batch_norm gets two hidden STATE operands (running mean, var) */ \
  X(LAYER_NORM, layer_norm, "x:t gamma:t beta:t eps:f0=1e-5", 0, LK_SPECIAL, 8, shape_layer_norm, interp_layer_norm, NULL) \
  X(RMS_NORM,   rms_norm,   "x:t gamma:t eps:f0=1e-6", 0, LK_SPECIAL, 6, shape_rms_norm, interp_rms_norm, NULL) \
  X(BATCH_NORM, batch_norm, "x:t gamma:t beta:t momentum:f1=0.1 eps:f0=1e-5", OPF_STATEFUL, LK_SPECIAL, 8, shape_batch_norm, interp_batch_norm, NULL) \
  X(SOFTMAX,    softmax,    "x:t axis:i0=-1",        0, LK_SPECIAL, 5, shape_softmax, interp_softmax, NULL) \
  X(LOG_SOFTMAX, log_softmax, "x:t axis:i0=-1",      0, LK_SPECIAL, 5, shape_softmax, interp_log_softmax, NULL) \
  /* attention */ \
  X(ATTENTION,  attention,  "q:t k:t v:t heads:i0 causal:b0=false", 0, LK_SPECIAL, 0, shape_attention, interp_attention, NULL) \
  X(CAUSAL_MASK, causal_mask, "x:t",                 0, LK_SPECIAL, 0, shape_causal_mask, interp_causal_mask, NULL) \
  /* convolution, NHWC; pool stride 0 means "= size" */ \
  X(CONV2D,     conv2d,     "x:t w:t stride:i0=1 padding:i1=0", 0, LK_SPECIAL, 0, shape_conv2d, interp_conv2d, NULL) \
  X(MAX_POOL2D, max_pool2d, "x:t size:i0 stride:i1=0", 0, LK_SPECIAL, 1, shape_pool2d, interp_max_pool2d, NULL) \
  X(AVG_POOL2D, avg_pool2d, "x:t size:i0 stride:i1=0", 0, LK_SPECIAL, 1, shape_pool2d, interp_avg_pool2d, NULL) \
  /* regularization: attr.salt names the random stream */ \
  X(DROPOUT,    dropout,    "x:t p:f0",              OPF_RANDOM, LK_SPECIAL, 2, shape_dropout, interp_dropout, NULL) \
  /* losses (scalar results) and metrics */ \
  X(CROSS_ENTROPY, cross_entropy, "logits:t labels:t", 0, LK_SPECIAL, 6, shape_cross_entropy, interp_cross_entropy, NULL) \
  X(BINARY_CROSS_ENTROPY, binary_cross_entropy, "logits:t targets:t", 0, LK_SPECIAL, 6, shape_bce, interp_bce, NULL) \
  X(MSE,        mse,        "pred:t target:t",       0, LK_SPECIAL, 3, shape_mse, interp_mse, NULL) \
  X(ACCURACY,   accuracy,   "logits:t labels:t",     OPF_NOGRAD, LK_SPECIAL, 1, shape_accuracy, interp_accuracy, NULL) \
  /* misc */ \
  X(STOP_GRADIENT, stop_gradient, "x:t",             OPF_NOGRAD, LK_EW, 0, shape_same, interp_ew, s_copy) \
  X(ZEROS,      zeros,      "shape:s",               OPF_NOGRAD, LK_EW, 0, shape_fill, interp_fill, NULL) \
  X(ONES,       ones,       "shape:s",               OPF_NOGRAD, LK_EW, 0, shape_fill, interp_fill, NULL) \
  X(FULL,       full,       "shape:s value:f0",      OPF_NOGRAD, LK_EW, 0, shape_fill, interp_fill, NULL)
// clang-format on
