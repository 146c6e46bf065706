// bpcc.h — the internal header of libbpc, one section per phase (chibicc's way).
//
// The pipeline, in the order main.c calls it:
//   load (yaml.c, parse.c, load.c)  model.yaml -> Model (AST with source marks)
//   expand (expand.c)               Model -> Graph: dims, functions, repeat inlined
//   shape (shape.c)                 the per-op shape/dtype rules, run as nodes are built
//   interp (interp.c)               reference interpreter: the oracle for everything else
//   show (show.c)                   `bpc check`, `bpc show`, `bpc dot`
// Everything a user can get wrong is reported through diag_error() with a
// file:line:col; BPC_ASSERT is only for bugs in bpc itself.
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdnoreturn.h>

#include "bpc.h"
#include "ops.h"

#define BPC_VERSION "0.1.0"
#define BPC_FORMAT_VERSION 1  // SPEC.md contract version (`bpc: 1`)
#define BPC_MAX_RANK 8
#define BPC_MAX_ELEMS (INT64_C(1) << 40)  // larger tensors are a user error
#define BPC_MAX_ERRORS 20                 // errors printed before giving up
#define BPC_MAX_DEPTH 200                 // YAML and expression nesting limit

// ============================================================ util.c
noreturn void bpc_bug(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#define BPC_ASSERT(c) ((c) ? (void)0 : bpc_bug(__FILE__, __LINE__, "assertion failed: %s", #c))

// Allocation aborts on OOM, so callers never check for NULL.
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

// An arena frees everything it handed out at once (IR, AST, strings).
typedef struct ArenaBlock ArenaBlock;
typedef struct Arena {
  ArenaBlock *head;
} Arena;
void *arena_alloc(Arena *a, size_t n);  // zeroed, 16-byte aligned
char *arena_strdup(Arena *a, const char *s);
char *arena_strndup(Arena *a, const char *s, size_t n);
char *arena_printf(Arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void arena_free(Arena *a);

// Growable array of T in a plain struct { T *v; int n, cap; }.
#define VEC_PUSH(vec, x)                                                 \
  do {                                                                   \
    if ((vec).n == (vec).cap) {                                          \
      (vec).cap = (vec).cap ? 2 * (vec).cap : 8;                         \
      (vec).v = xrealloc((vec).v, (size_t)(vec).cap * sizeof(*(vec).v)); \
    }                                                                    \
    (vec).v[(vec).n++] = (x);                                            \
  } while (0)

typedef struct DimOverride {
  const char *name;
  int64_t value;
} DimOverride;

typedef struct IntVec {
  int *v;
  int n, cap;
} IntVec;

// The candidate closest to `name` by edit distance, or NULL when none is
// close enough to suggest ("did you mean").
const char *closest_name(const char *name, const char *const *cands, int n);
// Reads a whole file; false (errno set) on failure. *data is NUL terminated.
bool read_whole_file(const char *path, char **data, size_t *len);
// Byte counts for people: "812 B", "37.5 KiB", "100.9 MiB".
void format_bytes(char *buf, size_t size, int64_t b);
// Name hashes (param init streams, dropout salts) are the runtime's
// bpcrt_fnv1a64 (bpc.h), so the compiler and trainers agree.

// ============================================================ diag.c
typedef struct SrcFile {
  const char *path;  // as given by the user
  const char *text;  // whole contents (may hold NULs; len counts them)
  size_t len;
  const size_t *lines;  // byte offset of each line's start (lines[0] = 0), nlines of them; may be NULL
  int nlines;
} SrcFile;

// A position in a source file, 1-based. file == NULL: no position.
typedef struct Loc {
  const SrcFile *file;
  int line, col;
} Loc;

typedef struct Diag {
  FILE *out;      // stderr by default
  int nerr;       // errors reported so far
  int max_errors; // stop printing past this many (then one "too many" line)
} Diag;

void diag_init(Diag *d, FILE *out);
// `file:line:col: error: message`, then the source line and a caret.
void diag_error(Diag *d, Loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void diag_verror(Diag *d, Loc loc, const char *fmt, va_list ap);
// A note attached to the previous error (same format, "note:").
void diag_note(Diag *d, Loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
// Loc at byte offset `off` of a scalar that starts at `base` (same line).
Loc loc_offset(Loc base, int off);

// ============================================================ yaml.c
// libyaml's event stream turned into a small tree that keeps every mark.
typedef enum { YN_SCALAR, YN_SEQ, YN_MAP } YNodeKind;

typedef struct YNode YNode;
struct YNode {
  YNodeKind kind;
  Loc loc;          // start mark of the node (for a quoted scalar: the quote)
  const char *str;  // scalar text (NUL terminated), NULL otherwise
  bool plain;       // scalar written without quotes or block style
  int n;            // number of items (seq) or pairs (map)
  YNode **items;    // seq items; map values
  YNode **keys;     // map keys (always scalars; checked by the loader)
};

// Parses one YAML document. NULL after reporting the error (syntax at
// libyaml's problem mark, empty documents, aliases, depth > BPC_MAX_DEPTH,
// duplicate keys, non-scalar keys).
YNode *yaml_parse(Arena *a, Diag *d, const SrcFile *f);
YNode *ymap_get(const YNode *map, const char *key);  // NULL if absent

// ============================================================ parse.c
// The expression language of SPEC 1.3, parsed from YAML scalars.
typedef enum {
  EX_NUM,   // num; is_int when written as a plain integer
  EX_BOOL,  // num is 0 or 1
  EX_NAME,  // name
  EX_LIST,  // args[0..nargs)
  EX_CALL,  // name(args..., kwnames=kwargs...)
  EX_BIN,   // args[0] op args[1]; op is one of + - * / @ and 'P' for **
  EX_NEG,   // -args[0]
} ExprKind;

typedef struct Expr Expr;
struct Expr {
  ExprKind kind;
  Loc loc;  // the first character of the expression (the operator for EX_BIN)
  double num;
  bool is_int;
  const char *name;
  char op;
  int nargs;
  Expr **args;
  int nkw;
  const char **kwnames;
  Expr **kwargs;
  Loc *kwlocs;  // position of each keyword name
};

// Parses the scalar `node` as an expression. NULL after reporting.
Expr *expr_parse(Arena *a, Diag *d, const YNode *node);
// Prints an expression back in source syntax (minimal parentheses).
void expr_print(FILE *out, const Expr *e);

// ============================================================ load.c
typedef enum { DT_F32, DT_F64, DT_I32 } DType;
const char *dtype_name(DType t);  // "f32", "f64", "i32"

typedef enum {
  INIT_ZEROS,
  INIT_ONES,
  INIT_CONSTANT,
  INIT_NORMAL,
  INIT_UNIFORM,
  INIT_XAVIER_UNIFORM,
  INIT_XAVIER_NORMAL,
  INIT_HE_UNIFORM,
  INIT_HE_NORMAL,
} InitKind;

// constant(v): a = v; normal(mean, std): a = mean, b = std ("normal(std)": mean 0);
// uniform(lo, hi): a = lo, b = hi.
typedef struct InitSpec {
  InitKind kind;
  double a, b;
} InitSpec;

const char *init_name(InitKind k);  // "zeros", "he_normal", ...

typedef struct DimDef {
  const char *name;
  Loc loc;
  Expr *value;  // dim expression over earlier dims
} DimDef;

typedef struct TensorDecl {  // an input or a param
  const char *name;
  Loc loc;
  int rank;
  Expr **shape;  // dim expressions
  DType dtype;
  // params only:
  InitSpec init;
  bool trainable;  // default true
  int decay;       // -1: default (rank >= 2), 0: no, 1: yes
  const char *from;  // the tensor's name in a foreign checkpoint (SPEC 6.3), or NULL
  Loc from_loc;
  bool transpose;    // the foreign tensor holds the last two axes swapped
  int64_t lora_rank; // `lora: {rank: r, alpha: a}`: a frozen weight plus a trained
  double lora_alpha; // low-rank update (alpha / r) A B; rank 0 without
} TensorDecl;

typedef struct GraphEntry {
  const char *name;
  Loc loc;
  Expr *expr;
} GraphEntry;

typedef struct FuncDef {
  const char *name;
  Loc loc;
  int nargs;
  const char **args;
  Loc *arglocs;
  int nparams;
  TensorDecl *params;
  int nentries;
  GraphEntry *entries;
  const char *ret;
  Loc retloc;
} FuncDef;

typedef enum { OPT_SGD, OPT_ADAM, OPT_ADAMW, OPT_RMSPROP, OPT_ADAGRAD } OptKind;
// Fields and defaults are torch.optim's.
typedef struct OptimCfg {
  OptKind kind;
  Loc loc;
  double lr, weight_decay;
  double momentum, dampening;  // sgd, rmsprop (momentum)
  bool nesterov;               // sgd
  double beta1, beta2, eps;    // adam, adamw; eps also rmsprop, adagrad
  double alpha;                // rmsprop
  bool centered;               // rmsprop
  double lr_decay;             // adagrad
  double initial_accumulator_value;  // adagrad
} OptimCfg;

typedef enum { SCHED_CONSTANT, SCHED_STEP, SCHED_LINEAR, SCHED_COSINE } SchedKind;
typedef struct SchedCfg {
  SchedKind kind;
  Loc loc;
  int64_t warmup_steps;
  double min_lr;
  int64_t step_size;  // step
  double gamma;       // step
} SchedCfg;

typedef struct TrainCfg {
  bool present;
  Loc loc;
  OptimCfg opt;          // default: adam
  SchedCfg sched;        // default: constant
  double clip_grad_norm; // 0: off
  int64_t grad_accum;    // default 1
  int64_t steps;         // 0: not given
  int64_t epochs;        // 0: not given
  int64_t eval_every, checkpoint_every;  // 0: off
  uint64_t seed;         // default 0
  bool bf16;             // precision: bf16 (SPEC 6.5); bpc compile|run --precision overrides
} TrainCfg;

typedef enum { DATA_TEXT, DATA_CSV, DATA_SAFETENSORS, DATA_IDX } DataFormat;

typedef struct CsvColumn {
  const char *input;  // input name
  Loc loc;
  int64_t lo, hi;     // column range [lo, hi); "64" gives [64, 65)
  bool is_range;      // written "lo:hi" (the input takes a trailing axis)
} CsvColumn;

typedef struct DataScale {
  const char *input;
  double scale;
} DataScale;

typedef struct DataCfg {
  bool present;
  Loc loc;
  DataFormat format;
  const char *path;        // resolved against the model's folder (text, csv, safetensors)
  const char *tokens, *targets;  // text
  double val_fraction;     // default 0.1 for text, 0 otherwise
  bool header;             // csv
  int ncolumns;
  CsvColumn *columns;      // csv
  int nscales;
  DataScale *scales;       // csv `scale: {x: 0.0625}`; idx `scale: 1/255` (input NULL)
  bool shuffle;            // safetensors; default true
  const char *images, *labels, *x, *y;  // idx (paths resolved)
  // csv `text: {column: N, vocab: V, ids: ids, mask: mask, cased: false}`:
  // column N tokenized with WordPiece at load (SPEC 6.4); text_col -1 without
  int64_t text_col;
  const char *vocab, *text_ids, *text_mask;
  bool cased;
} DataCfg;

typedef struct GenCfg {
  bool present;
  Loc loc;
  const char *tokens, *logits;
} GenCfg;

typedef struct Model {
  const SrcFile *file;
  const char *dir;  // folder of the model file ("." for a bare name)
  Loc loc;
  const char *name, *doc;
  int ndims;
  DimDef *dims;
  int ninputs;
  TensorDecl *inputs;
  int nparams;
  TensorDecl *params;
  int nfuncs;
  FuncDef *funcs;
  int nentries;
  GraphEntry *entries;
  const char *loss;  // NULL if absent
  Loc loss_loc;
  int nmetrics;
  const char **metrics;
  Loc *metric_locs;
  int noutputs;
  const char **outputs;
  Loc *output_locs;
  TrainCfg train;
  DataCfg data_train, data_test;
  GenCfg gen;
} Model;

// Loads and validates a model file: every section of SPEC 1, every name
// resolvable (names inside expressions are resolved by expand). NULL after
// reporting the errors (several independent ones per run).
Model *model_load(Arena *a, Diag *d, const char *path);
// The same from text in memory (tests, fuzzing); `path` names it in errors.
Model *model_load_text(Arena *a, Diag *d, const char *path, const char *text, size_t len);

// ============================================================ ir.c
typedef struct Shape {
  int rank;
  int64_t d[BPC_MAX_RANK];
} Shape;

int64_t shape_numel(const Shape *s);
bool shape_eq(const Shape *a, const Shape *b);
// NumPy broadcasting of a and b into *out; false if incompatible.
bool shape_broadcast(const Shape *a, const Shape *b, Shape *out);
// Per-axis strides (elements) of a contiguous tensor of shape `s` read as if
// broadcast to `out`: trailing axes aligned, missing and size-1 axes 0.
void shape_bcast_strides(const Shape *s, const Shape *out, int64_t *st);
// attention_grad with which=3 writes dq, dk, dv flattened one after the other:
// the element offset of part 0 (dq), 1 (dk), 2 (dv), or 3 (the total size).
int64_t attention_grad_offset(const Shape *q, const Shape *k, int part);
// linear_cross_entropy with gy writes dh, dw and the loss flattened one after
// the other: the element offset of part 0 (dh), 1 (dw), 2 (loss), or 3 (the
// total size), for h [.., C] and w [V, C] or [C, V].
int64_t lce_offset(const Shape *h, const Shape *w, int part);
// Its row block: how many rows' logits [R, V] one pass keeps (rows =
// h's rows). A function of the shapes alone, so the sums do not depend on
// the thread count.
int64_t lce_block_rows(int64_t rows, int64_t V);
// "[2, 3]"; returns buf.
char *shape_str(const Shape *s, char *buf, size_t size);

typedef enum {
#define X(e, ...) OP_##e,
  BPC_OPS(X)
#undef X
      OP_COUNT,
  OP_NONE = -1,
} Op;

enum {
  OPF_INTERNAL = 1 << 0,  // not callable from YAML
  OPF_LEAF = 1 << 1,      // no operands; value supplied from outside the step
  OPF_EW = 1 << 2,        // elementwise with broadcasting; has a scalar fn
  OPF_NOGRAD = 1 << 3,    // no gradient flows through
  OPF_RANDOM = 1 << 4,    // uses the step's RNG
  OPF_STATEFUL = 1 << 5,  // reads persistent state
  OPF_PRODUCT = 1 << 6,   // a product of its first two operands: bf16 operands under
                          // precision bf16 (SPEC 6.5); the interpreter rounds them
  OPF_PRODUCT_INNER = 1 << 7,  // products inside the op (attention) take bf16
                               // operands natively; the interpreter keeps them exact
};

typedef enum { LK_LEAF, LK_EW, LK_REDUCE, LK_SHAPE, LK_MATMUL, LK_SPECIAL } LowerKind;

// Attributes of a node; which slot means what is fixed by the op's schema.
typedef struct Attr {
  double f[2];
  int64_t i[3];
  bool b[2];
  int naxes;               // -1: all axes / default perm; normalized by shape rules
  int axes[BPC_MAX_RANK];  // axes (ascending after the rule) or permutation
  Shape shape;             // target shape (reshape, broadcast_to, zeros, ones, full)
  uint64_t salt;           // dropout: the node's random stream
} Attr;

typedef struct Node {
  int id;
  Op op;
  Loc loc;  // where the user wrote it (for generated nodes: what caused them)
  DType dtype;
  Shape shape;
  int nin;
  int *in;  // operand node ids, all < id
  Attr attr;
  const char *name;  // entry/input/param/state name, NULL for temporaries
  int phase;         // 0: the step (forward, backward); 1: the optimizer update
  int remat;         // remat.c: 0; 1 a node recomputed in the backward; 2 the
                     // recomputed copy of a stored value, which fusion keeps stored
} Node;

typedef struct GDim {
  const char *name;
  int64_t value;
} GDim;

typedef struct GParam {
  const char *name;  // "w1", "yL.0.w"
  int node;
  Loc loc;
  InitSpec init;
  bool trainable;
  bool decay;  // resolved: default is rank >= 2
  int grad;    // after autodiff: node of d loss / d param, -1 if not trainable
  int update;  // after optim: the param's new value, -1 if none
  const char *from;  // resolved foreign name (`{i}` replaced), or NULL
  bool transpose;
  int value;         // expand only: the node the graph reads (node, or W + s A B under lora)
  const char *lora_a, *lora_b;  // a LoRA base weight: its adapters' param names
  double lora_scale;            // alpha / rank
} GParam;

typedef struct GInput {
  const char *name;
  int node;
} GInput;

typedef struct GState {  // batch_norm running stats and optimizer slots
  const char *name;      // "<entry>.running_mean" (saved as state.<name>), "opt.exp_avg.w1"
  int node;              // the STATE leaf
  int update;            // node computing its new value in training, -1 if none
  double init;           // 0 for means, 1 for variances, slots' initial values
  bool opt;              // an optimizer slot (saved under its own name)
} GState;

typedef struct GNamed {  // a value the user named (graph entries, expanded)
  const char *name;      // "h", "y1.out", "yL.3.h"
  int node;
} GNamed;

typedef struct Graph {
  Arena arena;
  Diag *diag;
  const Model *model;
  DType fdtype;  // float dtype of the compiled graph
  struct {
    Node **v;
    int n, cap;
  } nodes;
  struct {
    GDim *v;
    int n, cap;
  } dims;
  struct {
    GInput *v;
    int n, cap;
  } inputs;
  struct {
    GParam *v;
    int n, cap;
  } params;
  struct {
    GState *v;
    int n, cap;
  } states;
  struct {
    GNamed *v;
    int n, cap;
  } named;
  int loss;  // -1 if the model has none
  struct {
    GNamed *v;
    int n, cap;
  } metrics;
  struct {
    GNamed *v;
    int n, cap;
  } outputs;
  struct {
    GInput *v;
    int n, cap;
  } scalars;  // runtime-fed optimizer scalars (__lr, ...)
  int phase;  // phase given to the nodes g_op makes now
} Graph;

// One parameter of an op's call signature (parsed from the schema string).
typedef struct OpParam {
  const char *name;
  char kind;  // t T f i b a p s (see ops.h)
  int slot;
  bool required;
  const char *def;  // default as written ("1e-5", "all", "none", "true")
} OpParam;

typedef struct Interp Interp;
typedef struct Value Value;
typedef struct AD AD;
// A gradient rule (grad.c): given node n and gy, the cotangent of its result,
// sets gin[i] to the cotangent of operand i (a node id; it may have n's
// broadcast shape, the driver sums it down) or -1 when none flows.
typedef void GradFn(AD *ad, const Node *n, int gy, int *gin);

// An op's native backend (ops.h's last column), defined beside its lowering
// in compiler/lower_<family>.c (lower.h). Generic passes ask it and never
// name the op: codegen emits with it, memplan sizes scratch and
// temporaries with it, show counts FLOPs with it, describe finds index
// operands with it. A NULL hook means none (no scratch, no temporary, the
// registry's per-element FLOPs, no index operand).
typedef struct CG CG;
typedef struct Ew Ew;
struct Kernel;
struct Program;
typedef struct Backend {
  // A kernel op's native code: the calls and loops of one kernel (codegen.c
  // has begun nothing; the lowering begins and ends each wrapper, lower.h).
  void (*emit)(CG *c, const struct Kernel *k, const Node *n);
  // An elementwise op's value at the current element of a fused loop.
  struct LLVMOpaqueValue *(*scalar)(CG *c, Ew *e, const Node *n);
  // Per-thread scratch the kernel's calls need, in bytes (memplan.c aligns).
  int64_t (*scratch)(const Graph *g, const Node *n);
  // The kernel's temporary in the arena, in bytes (planned as a value).
  int64_t (*temp)(const struct Program *p, const Node *n);
  // The node's FLOPs, where the registry's per-element cost is not it.
  int64_t (*flops)(const Graph *g, const Node *n);
  // The rows of the table `input` indexes through this node (0: it does not),
  // and the status code a bad index reports (BPCK_ERR_EMBEDDING_ID, _LABEL).
  int64_t (*index_limit)(const Graph *g, const Node *n, int input, int *code);
} Backend;
#define X(e, nm, sc, fl, lk, fp, shp, itp, sca, grd, be) extern const Backend be;
BPC_OPS(X)
#undef X

typedef struct OpInfo {
  const char *name;
  const char *schema;
  unsigned flags;
  LowerKind lower;
  double flops;
  bool (*shape)(Graph *g, Node *n);
  void (*interp)(Interp *it, const Node *n, Value *out, const Value *const *in);
  double (*scalar)(const double *x, const Attr *a);
  GradFn *grad;
  const Backend *be;
  int nparams;
  OpParam params[8];
} OpInfo;

const OpInfo *op_info(Op op);
Op op_lookup(const char *name);  // OP_NONE if no such op (internal ops included)
const char *op_name(Op op);

// Bytes per element of a dtype (f64 8, f32 and i32 4), and of a node's value.
int64_t dtype_bytes(DType t);
int64_t node_bytes(const Node *n);

Graph *graph_new(Diag *d, const Model *m, DType fdtype);
// The graph's products (matmul, attention, conv2d) take bf16 operands with
// f32 sums: the model's precision is bf16 and the graph is f32 (an f64 build
// is the exact reference and ignores it).
bool graph_bf16(const Graph *g);
void graph_free(Graph *g);
Node *graph_node(const Graph *g, int id);
// Appends a node and runs its op's shape rule. Returns its id, or -1 after
// the rule reported an error at `loc`.
int g_op(Graph *g, Op op, Loc loc, int nin, const int *in, const Attr *attr);
int g_leaf(Graph *g, Op op, const char *name, DType dt, const Shape *s, Loc loc);
int g_const(Graph *g, double v, Loc loc);  // scalar in g->fdtype
int g_unary(Graph *g, Op op, int a, Loc loc);
int g_binary(Graph *g, Op op, int a, int b, Loc loc);
Attr attr_default(Op op);  // schema defaults applied (naxes -1 etc.)
// The operand index of n's tensor parameter `name` (schema order), or -1 when
// that optional tensor was not given (attention's `mask`).
int node_operand(const Node *n, const char *name);
bool dtype_is_float(DType t);
// A linear_cross_entropy node's rows, C and (returned) V.
int64_t lce_dims(const Graph *g, const Node *n, int64_t *rows, int64_t *C);

// ============================================================ shape.c
// Shape rules, named in ops.h (`shape_arith`, `shape_reduce`, ...). Each sets
// n->shape and n->dtype from its operands and attributes, normalizes axes,
// and reports errors at n->loc. Declared here for the registry only.
#define X(e, nm, sc, fl, lk, fp, shp, itp, sca, grd, be) bool shp(Graph *g, Node *n);
BPC_OPS(X)
#undef X
// Normalizes a possibly negative axis for `rank`; false if out of range.
bool axis_norm(int64_t axis, int rank, int *out);

// ============================================================ grad.c
// Gradient rules, named in ops.h. grad_none: no gradient flows through the
// op; grad_missing: reaching the op while differentiating is an error.
#define X(e, nm, sc, fl, lk, fp, shp, itp, sca, grd, be) GradFn grd;
BPC_OPS(X)
#undef X

// ============================================================ autodiff.c
struct AD {
  Graph *g;
  Loc loc;      // location given to the nodes a rule emits (the forward op's)
  bool failed;  // a rule reported an error
  const Node *cur;
};

// Reverse mode from g->loss over every trainable param: appends the backward
// nodes to g (one joint graph) and sets each GParam.grad. Cotangents are
// summed at fan-out and un-broadcast here, once. False after reporting an
// error (no loss, a non-float loss, an op without a gradient rule).
bool ad_backward(Graph *g);
// Builders for rules: g_op with the current op's location; a shape error
// here is a bug in a rule, so they assert instead of returning -1.
int ad_op(AD *ad, Op op, int nin, const int *in, const Attr *attr);
int ad_un(AD *ad, Op op, int a);
int ad_bin(AD *ad, Op op, int a, int b);
int ad_const(AD *ad, double v);
// Sums `x` down to `shape` (the reverse of broadcasting).
int ad_sum_to(AD *ad, int x, const Shape *shape);

// ============================================================ optim.c
// Appends the optimizer update (torch.optim's formulas) to a joint graph, as
// phase-1 nodes: gradient clipping by global norm, weight decay (L2 or
// decoupled, skipped for decay: false params), the update of every trainable
// param and its slots (optimizer-slot STATE leaves, `opt.<slot>.<param>`).
// Per-update scalars (scheduled lr and bias corrections) are INPUT leaves the
// runtime writes (docs/ABI.md). Sets GParam.update.
bool optim_append(Graph *g, const TrainCfg *cfg);

// ============================================================ simplify.c
enum {
  SIMP_CSE = 1 << 0,      // share equal nodes
  SIMP_FOLD = 1 << 1,     // constant folding of scalar elementwise ops
  SIMP_ALGEBRA = 1 << 2,  // x*1, x+0, --x, transpose/reshape chains, matmul
                          // layouts, log(softmax), log(sigmoid)
  SIMP_DCE = 1 << 3,      // drop what no result (loss, metrics, outputs,
                          // grads, state updates) needs
  SIMP_ALL = 15,
  SIMP_EVAL = 1 << 5,     // eval mode: dropout is the identity
  SIMP_LOWER = 1 << 4,    // for codegen: linear, binary_cross_entropy and mse
                          // as simpler ops; reductions over scattered axes
                          // as transpose + reduction over trailing axes
};
// A new, simplified copy of g (g is left as it was).
Graph *simplify(const Graph *g, unsigned flags);
// src's tables (dims, inputs, params, states, named values, scalars,
// metrics, outputs, loss) into g, each node id through map (-1: dropped).
void graph_copy_tables(Graph *g, const Graph *src, const int *map);

// ============================================================ lce.c
// cross_entropy(h @ w^T or h @ w, y) whose logits nothing else reads (no
// metric; no output outside a training program, whose outputs nobody reads)
// as linear_cross_entropy, with the logits' gradient and the two backward
// matmuls folded in when they are all that reads it (a constant gy). A new
// graph, or NULL when nothing matched.
Graph *lce_rewrite(const Graph *g, bool training);

// ============================================================ fuse.c
// The joint graph cut into kernels, in execution order. An elementwise
// kernel evaluates a tree of elementwise nodes in one loop (single-use
// same-shape producers and constants inlined, no intermediate in memory); a
// call kernel runs one node through the kernel library (bpc_kernels.h); an
// alias kernel gives a reshape the storage of its operand (no copy); a state
// kernel copies a batch-norm running-stat update into its state slot at the
// end of the step.
typedef enum { KK_EW, KK_CALL, KK_ALIAS, KK_STATE } KernelKind;

// The most values one elementwise loop reads: fusion splits larger trees,
// codegen sizes its tables by it.
#define EW_MAX_READS 48

typedef struct Kernel {
  KernelKind kind;
  int root;     // the node whose value the kernel writes (KK_STATE: the update)
  int state;    // KK_STATE: index into g->states
  int nnodes;   // KK_EW: the fused nodes, operands first, root last
  int *nodes;
  int nreads;   // materialized values read
  int *reads;
  int64_t flops, bytes;  // per step: arithmetic, and bytes read + written
  int mm;       // KK_EW: a matmul computed into the output first (its epilogue
                // is this loop, run on the same rows), -1 if none
  int phase;    // 0: the step's kernels; 1: the optimizer update's
  int nouts;    // KK_EW without mm: more values the same loop computes and
  int *outs;    // stores (siblings merged by fuse.c), before the root
  int group;    // optimizer update loops of one structure run as one pass
                // over all their params (fuse.c's group_updates): on the
                // group's first kernel, how many follow it; on those, -1;
                // 0 elsewhere
} Kernel;

typedef enum { MEM_PARAM, MEM_GRAD, MEM_INPUT, MEM_STATE, MEM_OUTPUT, MEM_ACT, MEM_NCAT } MemCat;

// A Program's memory plan (memplan.c): one arena for every stored value,
// each kernel's temporary and the status words, then per-thread scratch.
typedef struct MemPlan {
  int64_t *offset;     // per node: byte offset in the arena, -1 if not stored
  int64_t arena_bytes; // fixed part; per-thread scratch follows
  int64_t scratch_per_thread;  // bytes
  int64_t naive_bytes; // every stored value kept alive at once
  int64_t cat_bytes[MEM_NCAT];
  int64_t status_offset;  // 3 int64 words: the kernels' error status
  int64_t *temp_offset;   // per kernel: its private temporary (-1: none)
  // remat.c:
  int64_t budget;            // --max-memory in bytes (0: none)
  int64_t arena_unbudgeted;  // the arena the same graph plans to without it
} MemPlan;

typedef struct Program {
  const Graph *g;
  bool training;  // batch_norm with batch statistics (else running stats)
  struct {
    Kernel *v;
    int n, cap;
  } kernels;
  bool *materialized;  // per node: has storage of its own or an alias
  int *alias;          // per node: the node whose storage it uses (itself if none)
  int64_t *alias_off;  // per node: its byte offset inside that storage (a slice view)
  MemPlan mem;         // where it all lives (memplan.c; remat.c's budget)
} Program;

// Cuts g into kernels. `fuse` false: one kernel per node (the reference for
// "fusion changes nothing").
Program *program_new(const Graph *g, bool fuse, bool training);
void program_free(Program *p);
void program_print(FILE *out, const Program *p);  // the kernel list (`bpc check`)
// An elementwise kernel's tree as text (ops, attributes, which operand is
// which: reads[i] prints as r<i>), sizes left out: equal text, one loop body.
void kernel_tree_print(FILE *f, const Graph *g, const Kernel *k, const int *reads, int nreads);
// One kernel as `bpc check` lists it: kind, value, shape, ops (without the
// value's name: what kernels of one kind share).
void kernel_text(const Program *p, int i, char *buf, size_t len, bool with_name);

// A matmul as `batch` GEMMs of [M, K] x [K, N] (a batch against a shared
// rank-2 B folds into M). Codegen and the memory plan's scratch agree on it.
void matmul_dims(const Graph *g, const Node *n, int64_t *M, int64_t *N, int64_t *K, int64_t *batch);

// The per-kernel temporary a call kernel needs (bytes, 0: none), planned as
// a value: its op's Backend.temp (per-row values of cross_entropy summed in
// order afterwards, the partials of row blocks, ...).
int64_t kernel_temp_bytes(const Program *p, const Kernel *k);

// ============================================================ codegen.c
// LLVM types kept opaque here so only codegen.c and jit.c include llvm-c.
typedef struct LLVMOpaqueContext *LLVMContextRef_;
typedef struct LLVMOpaqueModule *LLVMModuleRef_;
typedef struct LLVMOpaqueTargetMachine *LLVMTargetMachineRef_;
// A target machine for `cpu` ("native" or NULL: the host, with its
// features) at -O`opt`. NULL after reporting.
LLVMTargetMachineRef_ codegen_target(const char *cpu, int opt, Diag *d);

#define CODEGEN_MAX_PROGRAMS 5
// One program of a module and its entry points `void f(bpcrt_ctx *)`:
// entry[0] runs the step's kernels (phase 0; all of them when entry[1] is
// NULL), entry[1] the optimizer update's (phase 1).
typedef struct CodegenProgram {
  const Program *p;
  const char *entry[2];
} CodegenProgram;

typedef struct CodegenUnit {
  const char *name;
  int nprograms;  // train, eval, sample, predict, decode (docs/ABI.md), or one for bpc grad
  CodegenProgram programs[CODEGEN_MAX_PROGRAMS];
  const char *json;  // bpc_model_json, or NULL
  bool with_main;    // a standalone trainer's main()
} CodegenUnit;

// The module: every program's kernels and entry points, the kernel
// library's scalar math linked in, optimized with `default<O{opt}>`. NULL
// after reporting.
LLVMModuleRef_ codegen_module(LLVMContextRef_ cx, const CodegenUnit *u, LLVMTargetMachineRef_ tm, int opt, Diag *d);
// The kernel calls of `mod` against the kernel library's definitions (the
// same function types); codegen_module runs it before linking the library.
bool codegen_check_kernel_calls(LLVMModuleRef_ mod, Diag *d);
// `bpc compile --emit llvm|asm|obj`: the module written to `path` (atomically).
bool codegen_emit(const CodegenUnit *u, const char *cpu, int opt, const char *kind, const char *path, Diag *d);

// ============================================================ describe.c
// The model description of docs/ABI.md as JSON (free() it): m's sections with
// defaults filled in, and the train, eval and (if not NULL) sample programs'
// arenas and tensors. `fwd` is the forward graph (dims, dtype).
// decode (with sample): the one-position program of cached sampling, or
// decode_error saying why there is none.
char *describe_model(const Model *m, const Graph *fwd, const Program *train, const Program *eval, const Program *sample,
                     const Program *predict, const char *predict_error, const Program *decode, const char *decode_error,
                     const char *compile_flags);

// ============================================================ jit.c
// A compiled module in this process (ORC LLJIT): look its entry points up.
typedef struct JitModule JitModule;
JitModule *jit_compile(const CodegenUnit *u, Diag *d);
void *jit_lookup(JitModule *j, const char *name, Diag *d);
void jit_module_free(JitModule *j);

// One program with its own arena, for `bpc grad` and the tests.
typedef struct Jit Jit;
// Compiles p for this CPU and allocates its arena. NULL after reporting.
Jit *jit_new(const Program *p, int nthreads, Diag *d);
void jit_free(Jit *j);
// A stored value in or out, as doubles converted to/from the node's dtype.
void jit_set(Jit *j, int node, const double *v, int64_t n);
void jit_get(const Jit *j, int node, double *v);
// One step. False (err says why) when a kernel met an id or label out of range.
bool jit_run(Jit *j, uint64_t seed, uint64_t step, char *err, size_t errlen);

// ============================================================ pipeline.c
// The pipeline's steps, in order (every command goes through them).
// The model file, with --precision (0: the model's; 1 f32; 2 bf16) applied.
Model *pipeline_load(Arena *a, Diag *d, const char *path, int precision, DType dt);
// The joint graph: autodiff, then the simplify passes `flags` (0: none).
// Frees fwd (NULL allowed); NULL after reporting.
Graph *pipeline_joint(Graph *fwd, unsigned flags);
// The training step: autodiff, the model's optimizer, simplify. Frees fwd;
// *njoint (if given) the node count before simplify; NULL after reporting.
Graph *pipeline_step(Graph *fwd, int *njoint);
// The native pipeline's front half: g (a simplified joint graph) lowered for
// the kernel library (SIMP_LOWER), cut into kernels and planned. *lowered
// receives the graph the Program refers to; free it after the Program.
Program *program_plan(const Graph *g, bool fuse, bool training, Graph **lowered);
// The trainer's programs (docs/ABI.md) built from a model: train (forward,
// backward, optimizer), eval (eval-mode forward), sample (batch 1, logits
// only; when the model has `generate:`) and predict (eval-mode forward of
// the outputs alone, SPEC 6.2), plus the description.
// decode: the sample program's one-position form (decode.c), NULL without
// generate or when decode_error says why.
enum { TB_TRAIN, TB_EVAL, TB_SAMPLE, TB_PREDICT, TB_DECODE, TB_NPROGRAMS };
typedef struct TrainerBuild {
  Graph *fwd;
  Graph *lowered[TB_NPROGRAMS];
  Program *programs[TB_NPROGRAMS];  // sample: NULL without generate; predict: NULL
                                    // when predict_error says why
  char *predict_error;              // "file:line:col: output 'w' ..." or NULL
  char *decode_error;               // "file:line:col: sum over the positions" or NULL
  char *json;
} TrainerBuild;

// max_memory: the train program's arena budget in bytes (remat.c; 0: none).
bool trainer_build(const Model *m, Diag *d, const DimOverride *ov, int nov, DType dt, bool fuse, int64_t max_memory,
                   const char *flags, TrainerBuild *out);
void trainer_build_free(TrainerBuild *b);
// The module of a trainer: its entry points, bpc_model_json, and main()
// when `with_main`.
CodegenUnit trainer_unit(const TrainerBuild *b, bool with_main);

// ============================================================ aot.c
// `bpc compile --emit exe`: the object linked with libbpcrt by the system C
// compiler into a standalone trainer at `path` (atomically). `lib`: path.o
// and path.h for a C program that drives the step itself.
bool aot_link_trainer(const TrainerBuild *b, const char *cpu, int opt, bool mpi, const char *path, Diag *d);
bool aot_write_lib(const TrainerBuild *b, const char *cpu, int opt, const char *path, Diag *d);

// ============================================================ decode.c
// Cached sampling (issue 19.4): the decode graph of the batch-1 sample graph
// s (its outputs set to the logits): the tokens one [1, 1] row, an i32
// input `__pos` (the new position), per causal attention i the cache inputs
// `__kcache.i` and `__vcache.i` ([1, T, C], rows [0, pos) filled by the
// trainer, row pos by the step itself), the logits [.., 1, V] named as in s.
// Adds to s the outputs `__k.i` and `__v.i` ([1, T, C]) the trainer fills
// the cache from after a whole-window run. NULL with *why (malloc'd,
// "file:line:col: reason") when some op mixes positions other than causal
// attention: then the model samples uncached.
Graph *decode_graph(Graph *s, const char *tokens, const char *logits_name, int logits, char **why);

// ============================================================ remat.c
// program_plan (training) within `budget` bytes of arena (SPEC 6.8; 0: no
// budget): forward values the backward reads are recomputed there instead
// of kept, the cheapest first, until the arena fits. The results are the
// same bits. NULL after reporting when no choice fits, naming the smallest
// arena it can reach.
Program *program_plan_budget(const Graph *g, bool fuse, int64_t budget, Graph **lowered, Diag *d);
// `bpc check --max-memory`: the budget, the arena with and without it, what
// is kept for the backward and what is recomputed, the extra FLOPs.
void remat_print(FILE *out, const Program *p);
// "4096", "1.5G", "512k" (K, M, G: powers of 1024) as bytes; false when s is
// none of those or below one byte.
bool parse_size(const char *s, int64_t *out);
// ============================================================ memplan.c
// Assigns every stored value an offset in one arena: leaves and results
// first (they live across steps or are read after the step), then
// activations and temporaries by liveness over the kernel order, first fit,
// with an elementwise kernel's dying same-shape operand reused in place.
void memplan_assign(Program *p);
void memplan_print(FILE *out, const Program *p);  // bytes by category vs naive
// The bytes a node's value takes in the arena (aligned as every arena offset is).
int64_t memplan_value_bytes(const Node *n);

// ============================================================ expand.c

// Model -> forward Graph in dtype `fdtype`: dims evaluated (overrides
// applied), inputs/params/state leaves, every entry lowered through the
// registry, functions and repeat inlined with prefixed names. NULL after
// reporting the errors.
Graph *graph_build(const Model *m, Diag *d, const DimOverride *ov, int nov, DType fdtype);

// ============================================================ interp.c
// The reference interpreter. Every value is held as doubles; in an f32 graph
// each result is rounded to float after its op, so it behaves as f32 storage.
struct Value {
  Shape shape;
  DType dtype;
  double *v;  // shape_numel(&shape) elements
};

struct Interp {
  const Graph *g;
  Value *vals;     // per node id
  uint64_t seed;   // RNG seed (dropout)
  uint64_t step;   // training step (dropout stream)
  bool training;   // batch_norm batch stats and dropout on; else eval
  bool failed;     // a kernel met bad data (an index out of range)
  char err[256];   // its message, naming the op and the offending value
};

// Scalar math of elementwise ops, named in ops.h.
#define X(e, nm, sc, fl, lk, fp, shp, itp, sca, grd, be) \
  void itp(Interp *it, const Node *n, Value *out, const Value *const *in);
BPC_OPS(X)
#undef X
// The plain matmul kernel (no transpose flags); interp_matmul_t wraps it.
void interp_matmul(Interp *it, const Node *n, Value *out, const Value *const *in);
// Attention with an explicit key mask (B, Tk) or NULL, and whether query i of
// batch b sees key j (causal, mask); interp_grad.c shares them.
void interp_attention_masked(const Node *n, Value *out, const Value *const *in, const double *mask);
bool attention_key(const Node *n, const double *mask, int64_t b, int64_t Tk, int64_t i, int64_t j);
double s_const(const double *x, const Attr *a);
double s_copy(const double *x, const Attr *a);
double s_add(const double *x, const Attr *a);
double s_sub(const double *x, const Attr *a);
double s_mul(const double *x, const Attr *a);
double s_div(const double *x, const Attr *a);
double s_maximum(const double *x, const Attr *a);
double s_minimum(const double *x, const Attr *a);
double s_pow(const double *x, const Attr *a);
double s_neg(const double *x, const Attr *a);
double s_exp(const double *x, const Attr *a);
double s_log(const double *x, const Attr *a);
double s_sqrt(const double *x, const Attr *a);
double s_rsqrt(const double *x, const Attr *a);
double s_abs(const double *x, const Attr *a);
double s_square(const double *x, const Attr *a);
double s_sin(const double *x, const Attr *a);
double s_cos(const double *x, const Attr *a);
double s_tanh(const double *x, const Attr *a);
double s_erf(const double *x, const Attr *a);
double s_sigmoid(const double *x, const Attr *a);
double s_relu(const double *x, const Attr *a);
double s_leaky_relu(const double *x, const Attr *a);
double s_hardtanh(const double *x, const Attr *a);
double s_gelu(const double *x, const Attr *a);
double s_silu(const double *x, const Attr *a);
double s_softplus(const double *x, const Attr *a);
double s_where(const double *x, const Attr *a);
double s_greater(const double *x, const Attr *a);
double s_less(const double *x, const Attr *a);
double s_equal(const double *x, const Attr *a);
double s_gelu_grad(const double *x, const Attr *a);  // d gelu / dx (interp_grad.c)

Interp *interp_new(const Graph *g, uint64_t seed, uint64_t step, bool training);
// Sets a leaf's value (copied; rounded to the node's dtype). n must match.
void interp_set(Interp *it, int node, const double *data, int64_t n);
// Fills every PARAM from its init spec and every STATE with its init value.
void interp_init_params(Interp *it, uint64_t seed);
// Evaluates every non-leaf node in order. Leaves not set read as zeros.
// False (it->err says why) when a kernel met bad data, e.g. a label or an
// embedding id out of range.
bool interp_run(Interp *it);
const Value *interp_value(const Interp *it, int node);
void interp_free(Interp *it);

// ============================================================ tensors.c
// Tensor files bound to graph leaves (`bpc grad`). Each returns false after
// one error listing every mismatch between the file and the model.
bool tensors_load_inputs(Interp *it, const Graph *g, const char *path, Diag *d);
// Params by name; `state.<name>` entries set batch-norm state; `opt.*`
// (optimizer slots of a checkpoint) are accepted and ignored.
bool tensors_load_params(Interp *it, const Graph *g, const char *path, Diag *d);
// `loss`, every metric and `grad.<param>` (trainable params), in each
// value's dtype; written atomically.
bool tensors_write_grads(const Interp *it, const Graph *g, const char *path, Diag *d);

// ============================================================ show.c
void show_graph(FILE *out, const Graph *g);  // `bpc show`
void show_dot(FILE *out, const Graph *g);    // `bpc dot`
void show_check(FILE *out, const Graph *g);  // `bpc check` report
int64_t node_flops(const Graph *g, const Node *n);
int64_t graph_flops(const Graph *g);          // FLOPs of one forward step

// ============================================================ tokenize.c
// `bpc tokenize --vocab VOCAB.txt [--max-len T] [--cased] TEXT.txt -o OUT`
// (SPEC 6.4): argv as main's. 0, 1 (bad input: file:line: error on stderr,
// nothing written) or 2 (usage, after `usage` printed the message).
int cmd_tokenize(int argc, char **argv, int (*usage)(const char *fmt, const char *arg));
