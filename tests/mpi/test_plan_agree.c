/* shard/plan_agree: identical plans pass; a rank with a different trainable flag or a
 * different model fails on EVERY rank with a message naming the tensor and the rank. */
#include "mpi/comm.h"
#include "shard/plan.h"
#include "synth_tables.h"
#include "test.h"
#include "util/err.h"

int main(int argc, char **argv) {
  CHECK_EQ_INT(comm_init(&argc, &argv), 0);
  int r = comm_rank(), n = comm_size(), last = n - 1;
  tensor_table tt;
  shard_plan p;
  synth_table(&tt, 40, 8, 16, 3, 0, ~0ull);
  CHECK_EQ_INT(plan_build(&tt, n, r, &p), 0);
  CHECK_EQ_INT(plan_agree(&p, &tt), 0);
  plan_free(&p);

  /* the last rank froze block 1's down_proj (table index 6) */
  if (r == last && n > 1) tt.t[6].trainable = 0;
  CHECK_EQ_INT(plan_build(&tt, n, r, &p), 0);
  int rc = plan_agree(&p, &tt);
  if (n > 1) {
    CHECK_EQ_INT(rc, ST_EINPUT);
    CHECK_CONTAINS(st_errmsg(), "ranks disagree on the shard plan");
    CHECK_CONTAINS(st_errmsg(), "tensor 'model.layers.1.mlp.down_proj.weight' is trainable on rank 0");
    char want[64];
    snprintf(want, sizeof want, "but frozen on rank %d", last);
    CHECK_CONTAINS(st_errmsg(), want);
  } else {
    CHECK_EQ_INT(rc, 0);
  }
  plan_free(&p);
  free(tt.t);

  /* the last rank has a tied model (one tensor fewer) */
  synth_table(&tt, 40, 8, 16, 3, r == last && n > 1, ~0ull);
  CHECK_EQ_INT(plan_build(&tt, n, r, &p), 0);
  rc = plan_agree(&p, &tt);
  if (n > 1) {
    CHECK_EQ_INT(rc, ST_EINPUT);
    CHECK_CONTAINS(st_errmsg(), "12 tensors on rank 0 but 11 on rank");
  }
  plan_free(&p);
  free(tt.t);

  int fails = comm_max_status(test_failures_ ? 1 : 0);
  comm_finalize();
  if (fails && !test_failures_) fprintf(stderr, "another rank failed\n");
  return fails ? 1 : test_done();
}
