/* Rank placement: every rank gets a distinct node-local rank in [0, ranks on the node).
 * ctest runs this under mpiexec on one node (local rank == rank). The Slurm test runs it
 * under `srun --mpi=pmix` and under mpirun inside an allocation, with
 * SPECTRAIN_EXPECT_LOCAL_SOURCE naming where the local rank must come from (under mpirun the
 * inherited SLURM_LOCALID=0 must NOT be used). Prints one line per rank for the test log. */
#include <stdint.h>
#include <stdlib.h>

#include "mpi/comm.h"
#include "test.h"

int main(int argc, char **argv) {
  CHECK_EQ_INT(comm_init(&argc, &argv), 0);
  int r = comm_rank(), n = comm_size(), lr = comm_local_rank();
  printf("placement: rank %d of %d, local rank %d from %s (SLURM_PROCID=%s SLURM_LOCALID=%s)\n",
         r, n, lr, comm_local_rank_source(), getenv("SLURM_PROCID") ? getenv("SLURM_PROCID") : "-",
         getenv("SLURM_LOCALID") ? getenv("SLURM_LOCALID") : "-");
  fflush(stdout);
  const char *want = getenv("SPECTRAIN_EXPECT_LOCAL_SOURCE");
  if (want) CHECK_STR_EQ(comm_local_rank_source(), want);
  CHECK(lr >= 0 && lr < n);
  /* one node: the local ranks are a permutation of 0..n-1 (sums of x and x^2 identify it) */
  uint64_t s[3] = {1, (uint64_t)lr, (uint64_t)lr * (uint64_t)lr};
  CHECK_EQ_INT(comm_allreduce_sum_u64(s, 3), 0);
  uint64_t un = (uint64_t)n;
  CHECK_EQ_INT(s[0], un);
  CHECK_EQ_INT(s[1], un * (un - 1) / 2);
  CHECK_EQ_INT(s[2], (un - 1) * un * (2 * un - 1) / 6);
  int fails = comm_max_status(test_failures_ ? 1 : 0);
  comm_finalize();
  if (fails && !test_failures_) fprintf(stderr, "another rank failed\n");
  return fails ? 1 : test_done();
}
