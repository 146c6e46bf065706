// bpc_desc.h — the model description's field names (docs/ABI.md), declared
// once: the compiler's describe.c writes them and the runtime's desc.c reads
// them, both through these names (DK_arena is "arena"), so a field spelled
// differently on the two sides does not build.
#pragma once

// clang-format off
#define BPC_DESC_KEYS(X) \
  X(a) X(abi) X(alpha) X(arena) X(b) X(betas) X(bytes) X(cased) X(centered) X(checkpoint_every) \
  X(clip_grad_norm) X(column) X(columns) X(compile) X(dampening) X(data) X(decay) X(decode) \
  X(decode_error) X(dims) X(dtype) X(epochs) X(eps) X(eval) X(eval_every) X(fan_in) X(fan_out) \
  X(flops) X(format) X(from) X(gamma) X(generate) X(grad_accum) X(group) X(hash) X(header) X(hi) \
  X(ids) X(images) X(init) X(initial_accumulator_value) X(kernels) X(kind) X(labels) X(limit) \
  X(limit_code) X(lo) X(logits) X(lora) X(lr) X(lr_decay) X(mask) X(min_lr) X(model_path) \
  X(momentum) X(name) X(nesterov) X(offset) X(optimizer) X(path) X(precision) X(predict) \
  X(predict_error) X(programs) X(range) X(ready) X(role) X(sample) X(scale) X(schedule) X(scratch) \
  X(seed) X(shape) X(shuffle) X(status) X(step_size) X(steps) X(targets) X(tensors) X(test) X(text) \
  X(tokens) X(train) X(trainable) X(transpose) X(type) X(val_fraction) X(value) X(vocab) \
  X(warmup_steps) X(weight_decay) X(x) X(y)
// clang-format on

#define BPC_DESC_KEY(k) static const char DK_##k[] = #k;
BPC_DESC_KEYS(BPC_DESC_KEY)
#undef BPC_DESC_KEY

// The values of a few fields, each list in the order of both sides' enums
// (checked where they are used): a param's init "kind" (InitKind,
// bpcrt_init_kind), a schedule's "type" (SchedKind, SchedType), a data
// set's "format" (DataFormat; the runtime's FMT_* after FMT_NONE), an
// optimizer's "type" (OptKind).
#define BPC_DESC_INITS(X) \
  X(zeros) X(ones) X(constant) X(normal) X(uniform) X(xavier_uniform) X(xavier_normal) X(he_uniform) X(he_normal)
#define BPC_DESC_SCHEDULES(X) X(constant) X(step) X(linear) X(cosine)
#define BPC_DESC_FORMATS(X) X(text) X(csv) X(safetensors) X(idx)
#define BPC_DESC_OPTIMIZERS(X) X(sgd) X(adam) X(adamw) X(rmsprop) X(adagrad)
#define BPC_DESC_STRING(v) #v,
#define BPC_DESC_COUNT(v) +1

// A tensor's "role", in the order of the runtime's Role (trainer.h).
#define BPC_DESC_ROLES(X) X(param) X(grad) X(opt) X(state) X(input) X(scalar) X(loss) X(metric) X(output) X(other)
#define BPC_DESC_ROLE(r) static const char DR_##r[] = #r;
BPC_DESC_ROLES(BPC_DESC_ROLE)
#undef BPC_DESC_ROLE
