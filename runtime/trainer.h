// trainer.h — libbpcrt's internal header for the trainer: the parsed model
// description (desc.c), data sets (data.c) and the trainer (trainer.c).
// Not installed; generated code sees only bpc.h.
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "bpc.h"
#include "bpc_kernels.h"

// ---- desc.c: the model description of docs/ABI.md -----------------------

typedef enum {
  ROLE_PARAM,
  ROLE_GRAD,
  ROLE_OPT,
  ROLE_STATE,
  ROLE_INPUT,
  ROLE_SCALAR,
  ROLE_LOSS,
  ROLE_METRIC,
  ROLE_OUTPUT,
  ROLE_OTHER,
} Role;

typedef struct {
  char *name;
  Role role;
  bpcrt_dtype dtype;
  int rank;
  int64_t shape[BPCRT_MAX_RANK];
  int64_t numel;
  int64_t offset;        // bytes from the arena's start
  int init_kind;         // BPCRT_INIT_* (params)
  double init_a, init_b, init_value;
  int64_t fan_in, fan_out;
  bool trainable;
  char *from;            // params: the name in a foreign checkpoint (--init), or NULL
  bool transpose;        // params: that tensor holds the last two axes swapped
  char *lora_a, *lora_b; // a LoRA base weight: its adapters (W + scale A B), or NULL
  double lora_scale;
  int64_t limit;         // int inputs: values must lie in [0, limit) (0: unchecked)
  int limit_code;        // the status code of the op that checks it (1 id, 2 label)
  int ready;             // grads: the step's kernel after which the value is final
                         // (-1: only when the step is done)
} TDesc;

typedef struct {
  char *text;            // as `bpc check` lists it
  char *kind;            // the same without the value's name
  double flops, bytes;   // per step
  int group;             // an update group's first kernel: how many follow; -1 on those
} KDesc;

typedef struct {
  bool present;
  int64_t arena, scratch, status;
  int n;
  TDesc *t;
  int nk;
  KDesc *k;              // the kernels (for --profile; may be empty)
} Prog;

enum { PROG_TRAIN, PROG_EVAL, PROG_SAMPLE, PROG_PREDICT, PROG_DECODE, NPROG };

typedef enum { FMT_NONE, FMT_TEXT, FMT_CSV, FMT_ST, FMT_IDX } DataFormat;

typedef struct {
  char *name;
  int64_t lo, hi;        // columns [lo, hi)
  bool range;            // "lo:hi" (a trailing axis) rather than one column
} CsvCol;

typedef struct {
  char *name;
  double v;
} Scale;

typedef struct {
  DataFormat format;
  char *path;            // text, csv, safetensors
  char *images, *labels; // idx
  char *x, *y;           // idx: the inputs fed by images and labels
  char *tokens, *targets;  // text
  bool header, shuffle;
  double val_fraction;
  int ncols;
  CsvCol *cols;
  int nscale;
  Scale *scale;
  int64_t text_col;      // csv: the column tokenized with WordPiece, or -1
  char *vocab, *text_ids, *text_mask;
  bool cased;
} DataDesc;

typedef enum { SCHED_CONSTANT, SCHED_STEP, SCHED_LINEAR, SCHED_COSINE } SchedType;

typedef struct {
  char *opt_type;
  double lr, beta1, beta2, lr_decay;
  SchedType sched;
  int64_t warmup, step_size;
  double min_lr, gamma;
  int64_t grad_accum, steps, epochs, eval_every, checkpoint_every;
  uint64_t seed;
} TrainCfg;

typedef struct {
  bool bf16;  // "precision": "bf16" (products with bf16 operands, SPEC 6.5)
  char *name, *hash, *model_path, *compile;
  bpcrt_dtype dtype;
  TrainCfg train;
  DataDesc data_train, data_test;   // format FMT_NONE when absent
  char *gen_tokens, *gen_logits;    // NULL without generate
  char *predict_error;              // why there is no predict program, or NULL
  char *decode_error;               // why sample runs uncached (no decode program), or NULL
  bool has_lora;                    // some param has LoRA adapters: checkpoints hold
                                    // what trains, frozen weights come from their base
  Prog prog[NPROG];
  char *dims_text;                  // "B=64 D=64" for info
} Desc;

// Parses the description; false with err filled on a malformed one.
bool desc_parse(Desc *d, const char *json, char *err, size_t errlen);
void desc_free(Desc *d);
const TDesc *prog_find(const Prog *p, const char *name);
const char *role_name(Role r);
const char *schedule_name(SchedType t);  // its "type" in the description

// ---- data.c: data sets (SPEC 1.6) ------------------------------------------
// A finite set holds every sample of each input it feeds, converted to the
// input's dtype and scaled; a text set holds the bytes. Loading validates the
// whole file: a bad file is an error naming it and the row or offset.

typedef struct {
  char *name;            // the input tensor
  bpcrt_dtype dtype;
  int64_t per;           // elements per sample
  char *data;            // n * per elements
} DataCol;

typedef struct {
  DataFormat format;
  char *path;            // for messages (idx: the images file)
  char *path2;           // idx: the labels file
  int64_t hdr2;          // idx: the labels file's header bytes
  int64_t n;             // samples (finite sets)
  int ncols;
  DataCol *cols;
  int64_t base;          // index of sample (text: byte) 0 in the file: a split's offset
  bool borrowed;         // a view made by data_split: data_free does nothing
  int64_t *line;         // csv: the file line of each sample
  uint8_t *bytes;        // text
  int64_t nbytes;
  char *tok_name, *tgt_name;
} Dataset;

// What a status code (the step's status words, a TDesc's limit_code; ABI.md)
// says is out of range, as the error message names it.
static inline const char *status_what(int64_t code) {
  return code == BPCK_ERR_EMBEDDING_ID ? "embedding id" : code == BPCK_ERR_LABEL ? "label" : "value";
}

// Loads `dd` for the inputs of program `p` (batch axis 0 of each input).
// path_override replaces the file (idx: a folder holding both files).
bool data_load(Dataset *ds, const DataDesc *dd, const Prog *p, const char *path_override, char *err, size_t errlen);
void data_free(Dataset *ds);
// Splits off the last `fraction` of the samples (text: bytes) into val.
// Both views share storage with ds (val borrows; free only ds).
void data_split(Dataset *ds, double fraction, Dataset *val);
// Writes sample idx into batch row b of every input it feeds.
void data_put(const Dataset *ds, const Prog *p, char *arena, int64_t idx, int64_t b);
// Text: writes a window starting at byte `start` into batch row b.
void data_put_window(const Dataset *ds, const Prog *p, char *arena, int64_t start, int64_t b);
// Where sample idx comes from, e.g. "line 12", "item 7 (offset 6288)".
void data_where(const Dataset *ds, int64_t idx, char *buf, size_t len);
// The permutation of epoch `epoch`: Fisher-Yates with the counter RNG.
void data_perm(int64_t n, uint64_t seed, uint64_t epoch, bool shuffle, int64_t *perm);

// ---- dp: data-parallel training over ranks (SPEC 6.7) ------------------------
// mpi.c (Open MPI) in a trainer built with `bpc compile --mpi`, dp_none.c (one
// process) otherwise: the trainer calls nothing else, so libbpcrt alone needs
// no MPI. All calls are made from the main thread; every call but dp_init,
// dp_rank, dp_size and dp_abort is collective when dp_size() > 1.

// Joins the job: false with err filled when this process cannot (dp_none.c:
// started by mpirun as one of several ranks).
bool dp_init(char *err, size_t errlen);
void dp_finalize(void);
int dp_rank(void);
int dp_size(void);
// Ranks on this host (the default thread count divides the cores among them).
int dp_local_size(void);
// Ends every rank of the job with `code` (after this rank printed why).
_Noreturn void dp_abort(int code);
// v[i] = the sum of v[i] over ranks, in rank order on every rank (small).
void dp_sum_f64(double *v, int n);
// Rank 0's bytes to every rank.
void dp_bcast(void *buf, int64_t bytes);
// Every rank's v, in rank order, into all[dp_size()].
void dp_gather_u64(uint64_t v, uint64_t *all);
// Gradient buckets: dp_bucket_start begins the sum over ranks of n elements
// of dtype dt at send into sum (non-blocking where the transport allows; the
// buffers are the caller's until the wait); dp_bucket_progress lets started
// sums advance; dp_bucket_wait completes them all and returns the seconds it
// waited.
void dp_bucket_start(const void *send, void *sum, int64_t n, bpcrt_dtype dt);
void dp_bucket_progress(void);
double dp_bucket_wait(void);
