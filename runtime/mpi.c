// mpi.c — the data-parallel interface of trainer.h over Open MPI, linked
// into a trainer by `bpc compile --mpi` in place of dp_none.c (not part of
// libbpcrt: a trainer without --mpi needs no MPI library).
//
// Takes: MPI_COMM_WORLD as mpirun starts it. Guarantees: a sum over ranks
// gives every rank the same bits, and the same bits on every repeat with the
// same rank count: dp_sum_f64 gathers every rank's values and adds them in
// rank order on each rank; gradient buckets use MPI_Iallreduce, whose
// algorithms in Open MPI's libnbc (binomial reduce + broadcast, ring,
// reduce-scatter + allgather, recursive doubling) are chosen from the rank
// count and message size alone and compute each element's sum once (or as
// pairs a + b = b + a, which IEEE gives the same bits): the trainer checks
// at the end of every run that all ranks hold the same params. Failures:
// MPI_ERRORS_ARE_FATAL (the default) ends the job on a transport error; a
// rank that fails on its own calls dp_abort, which ends every rank.
// Leaves out: the sharding of the data (trainer.c), threads (MPI is called
// from the main thread only: MPI_THREAD_FUNNELED).
#include <mpi.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "trainer.h"

static int rank_, size_ = 1, local_size_ = 1;
static MPI_Request *reqs;
static int nreq, capreq;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

bool dp_init(char *err, size_t errlen) {
  // A rank that dies closes its TCP connections: a write to one must fail as
  // an error, not kill this rank with SIGPIPE (exit 141), which mpirun could
  // report first, naming the wrong rank (seen in tests/mpi_netns.sh under load).
  signal(SIGPIPE, SIG_IGN);
  int provided;
  if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
    snprintf(err, errlen, "MPI_Init failed");
    return false;
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local);
  MPI_Comm_size(local, &local_size_);
  MPI_Comm_free(&local);
  return true;
}

void dp_finalize(void) {
  free(reqs);
  reqs = NULL, nreq = capreq = 0;
  int up = 0, down = 0;
  MPI_Initialized(&up);
  MPI_Finalized(&down);
  if (up && !down) MPI_Finalize();
}

int dp_rank(void) { return rank_; }
int dp_size(void) { return size_; }
int dp_local_size(void) { return local_size_; }

_Noreturn void dp_abort(int code) {
  fflush(stdout);
  fflush(stderr);
  if (size_ > 1) MPI_Abort(MPI_COMM_WORLD, code);
  exit(code);
}

void dp_sum_f64(double *v, int n) {
  if (size_ == 1 || n <= 0) return;
  double *all = malloc(sizeof *all * (size_t)n * (size_t)size_);
  MPI_Allgather(v, n, MPI_DOUBLE, all, n, MPI_DOUBLE, MPI_COMM_WORLD);
  for (int i = 0; i < n; i++) {
    double s = 0;
    for (int r = 0; r < size_; r++) s += all[(size_t)r * (size_t)n + (size_t)i];
    v[i] = s;
  }
  free(all);
}

void dp_bcast(void *buf, int64_t bytes) {
  for (int64_t off = 0; size_ > 1 && off < bytes; off += 1 << 30) {
    int n = (int)(bytes - off < (1 << 30) ? bytes - off : 1 << 30);
    MPI_Bcast((char *)buf + off, n, MPI_BYTE, 0, MPI_COMM_WORLD);
  }
}

void dp_gather_u64(uint64_t v, uint64_t *all) {
  MPI_Allgather(&v, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, MPI_COMM_WORLD);
}

// Out of place, not MPI_IN_PLACE: libnbc's allreduce mallocs a temporary of
// the message's size per call, and in place it first copies the buffer into
// it, so every update faulted in fresh pages for all the gradients (the glibc
// heap gives such blocks back between steps); with a separate send buffer
// that temporary stays untouched. In place also forces the binomial
// algorithm; out of place, 4 ranks or more take reduce-scatter + allgather.
void dp_bucket_start(const void *send, void *sum, int64_t n, bpcrt_dtype dt) {
  if (size_ == 1) {
    memcpy(sum, send, (size_t)n * bpcrt_dtype_size(dt));
    return;
  }
  MPI_Datatype t = dt == BPCRT_F64 ? MPI_DOUBLE : MPI_FLOAT;
  for (int64_t off = 0; off < n; off += 1 << 28) {  // counts are ints
    if (nreq == capreq) {
      capreq = capreq ? 2 * capreq : 64;
      reqs = realloc(reqs, sizeof *reqs * (size_t)capreq);
    }
    int c = (int)(n - off < (1 << 28) ? n - off : 1 << 28);
    int64_t at = off * (int64_t)bpcrt_dtype_size(dt);
    MPI_Iallreduce((const char *)send + at, (char *)sum + at, c, t, MPI_SUM, MPI_COMM_WORLD, &reqs[nreq++]);
  }
}

// libnbc advances a schedule only inside MPI calls: the trainer calls this
// between kernels of the backward, so started buckets move while it computes.
void dp_bucket_progress(void) {
  int done;
  if (nreq) MPI_Testall(nreq, reqs, &done, MPI_STATUSES_IGNORE);
}

double dp_bucket_wait(void) {
  double t0 = now();
  if (nreq) MPI_Waitall(nreq, reqs, MPI_STATUSES_IGNORE);
  nreq = 0;
  return now() - t0;
}
