/* Rank placement: every rank gets a distinct node-local rank in [0, ranks on the node).
 * ctest runs this under mpiexec on one node (local rank == rank). The Slurm test runs it
 * under `srun --mpi=pmix` and under mpirun inside an allocation, with
 * SPECTRAIN_EXPECT_LOCAL_SOURCE naming where the local rank must come from (under mpirun the
 * inherited SLURM_LOCALID=0 must NOT be used), and on the simulated cluster with
 * SPECTRAIN_EXPECT_HOSTS (default 1). The placement check is tested on made-up tables too.
 * Prints one line per rank for the test log. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mpi/comm.h"
#include "util/err.h"
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
  /* the gathered placement: this rank's entry is its own, and on every host the local ranks
   * are 0..k-1 (on one host, also a permutation of 0..n-1 by sums of x and x^2) */
  comm_place *p = NULL;
  int nhosts = 0;
  CHECK_EQ_INT(comm_placement(&p, &nhosts), 0);
  CHECK_EQ_INT(p[r].local_rank, lr);
  CHECK_EQ_INT(comm_placement_check(p, n), 0);
  const char *hosts = getenv("SPECTRAIN_EXPECT_HOSTS");
  CHECK_EQ_INT(nhosts, hosts ? atoi(hosts) : 1);
  if (nhosts == 1) {
    uint64_t s[3] = {1, (uint64_t)lr, (uint64_t)lr * (uint64_t)lr};
    CHECK_EQ_INT(comm_allreduce_sum_u64(s, 3), 0);
    uint64_t un = (uint64_t)n;
    CHECK_EQ_INT(s[0], un);
    CHECK_EQ_INT(s[1], un * (un - 1) / 2);
    CHECK_EQ_INT(s[2], (un - 1) * un * (2 * un - 1) / 6);
  }
  free(p);
  /* the check on made-up placements: two hosts, ranks round-robin */
  comm_place q[4] = {{"a", 0, 0}, {"b", 0, 1}, {"a", 1, 0}, {"b", 1, 1}};
  CHECK_EQ_INT(comm_placement_check(q, 4), 0);
  q[3].local_rank = 0; /* two ranks of b on local rank 0 */
  CHECK_EQ_INT(comm_placement_check(q, 4), 2);
  CHECK(strstr(st_errmsg(), "host b are not 0..1") != NULL);
  q[3].local_rank = 2; /* out of range */
  CHECK_EQ_INT(comm_placement_check(q, 4), 2);
  /* two nodes with one host name (containers without their own names): 4 ranks, locals 0,1,0,1 */
  comm_place same[4] = {{"x", 0, 0}, {"x", 1, 0}, {"x", 0, 0}, {"x", 1, 0}};
  CHECK_EQ_INT(comm_placement_check(same, 4), 2);
  st_clear_error();
  int fails = comm_max_status(test_failures_ ? 1 : 0);
  comm_finalize();
  if (fails && !test_failures_) fprintf(stderr, "another rank failed\n");
  return fails ? 1 : test_done();
}
