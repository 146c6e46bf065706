// dp_none.c — the data-parallel interface of trainer.h for a trainer built
// without --mpi: one process, every collective the identity. It refuses to
// run as one of several ranks of an MPI job (SPEC 6.7), which it sees in the
// environment launchers set: Open MPI's OMPI_COMM_WORLD_SIZE, PMIx's
// PMIX_SIZE, MPICH/Hydra's PMI_SIZE. mpi.c replaces this file's symbols in a
// --mpi trainer (it is linked as an object, so this archive member is not).
#include <stdlib.h>
#include <string.h>

#include "trainer.h"

static const char *const size_vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE"};

bool dp_init(char *err, size_t errlen) {
  for (size_t i = 0; i < sizeof size_vars / sizeof *size_vars; i++) {
    const char *v = getenv(size_vars[i]);
    if (v && atol(v) > 1) {
      snprintf(err, errlen,
               "this trainer was built without --mpi, but it was started as one of %ld ranks (%s=%s): "
               "build it with `bpc compile MODEL.yaml -o T --mpi` to train data-parallel, or start it without mpirun",
               atol(v), size_vars[i], v);
      return false;
    }
  }
  return true;
}

void dp_finalize(void) {}
int dp_rank(void) { return 0; }
int dp_size(void) { return 1; }
int dp_local_size(void) { return 1; }
_Noreturn void dp_abort(int code) { exit(code); }
void dp_sum_f64(double *v, int n) { (void)v, (void)n; }
void dp_bcast(void *buf, int64_t bytes) { (void)buf, (void)bytes; }
void dp_gather_u64(uint64_t v, uint64_t *all) { all[0] = v; }
void dp_bucket_start(const void *send, void *sum, int64_t n, bpcrt_dtype dt) {
  memcpy(sum, send, (size_t)n * bpcrt_dtype_size(dt));
}
void dp_bucket_progress(void) {}
double dp_bucket_wait(void) { return 0; }
