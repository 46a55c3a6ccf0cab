/* The agreed stop: a signal that reaches only one rank (the last) stops every rank at the
 * same step boundary: the agreement the trainer makes there (cmd_train.c: an allreduce of
 * stop_requested()) is 1 on all ranks from then on, 0 before. */
#include <signal.h>

#include "mpi/comm.h"
#include "test.h"
#include "util/signals.h"

int main(int argc, char **argv) {
  CHECK_EQ_INT(comm_init(&argc, &argv), 0);
  int r = comm_rank(), n = comm_size();
  CHECK_EQ_INT(signals_install(), 0);
  int stopped_at = -1;
  for (int step = 0; step < 6; step++) {
    if (step == 3 && r == n - 1) raise(SIGUSR1);
    if (comm_max_status(stop_requested()) != 0) {
      stopped_at = step;
      break;
    }
  }
  CHECK_EQ_INT(stopped_at, 3);
  CHECK_EQ_INT(stop_requested(), r == n - 1);
  /* every rank stopped after the same step */
  double s[2] = {(double)stopped_at, (double)stopped_at * stopped_at};
  comm_allreduce_sum_f64(s, 2);
  CHECK_CLOSE(s[0], 3.0 * n, 0, 0);
  CHECK_CLOSE(s[1], 9.0 * n, 0, 0);
  signals_uninstall();
  int fails = comm_max_status(test_failures_ ? 1 : 0);
  comm_finalize();
  if (fails && !test_failures_) fprintf(stderr, "another rank failed\n");
  return fails ? 1 : test_done();
}
