/* mpi/comm: agreement checks succeed on equal values and fail on every rank, naming the
 * differing rank, when one rank holds another value — never a hang. */
#include "mpi/comm.h"
#include "test.h"
#include "util/err.h"

int main(int argc, char **argv) {
  CHECK_EQ_INT(comm_init(&argc, &argv), 0);
  int r = comm_rank(), n = comm_size();
  CHECK_EQ_INT(comm_agree_u64(42, "the answer"), 0);
  int rc = comm_agree_u64(r == n - 1 && n > 1 ? 43 : 42, "the shard plan");
  if (n > 1) {
    CHECK_EQ_INT(rc, ST_EINPUT);
    CHECK_CONTAINS(st_errmsg(), "ranks disagree on the shard plan");
    char want[64];
    snprintf(want, sizeof want, "rank %d differs", n - 1);
    CHECK_CONTAINS(st_errmsg(), want);
  } else {
    CHECK_EQ_INT(rc, 0);
  }
  CHECK_EQ_INT(comm_max_status(r == 0 ? ST_EINPUT : 0), ST_EINPUT);
  double x[2] = {1.0, (double)r};
  comm_allreduce_sum_f64(x, 2);
  CHECK_CLOSE(x[0], n, 0, 0);
  CHECK_CLOSE(x[1], n * (n - 1) / 2.0, 0, 0);
  int fails = comm_max_status(test_failures_ ? 1 : 0);
  comm_finalize();
  if (fails && !test_failures_) fprintf(stderr, "another rank failed\n");
  return fails ? 1 : test_done();
}
