/* shard/fsdp against a plain single-process reference (every rank also computes the
 * reference alone: all parameters in one buffer, model_forward/model_backward over the whole
 * global batch, clip + AdamW per tensor). After 3 optimizer steps the sharded losses and the
 * gathered parameters must match the reference; also checks the bytes each collective moved
 * against the schedule's theory, the accounted memory against the formula, and optimizer
 * state round trips through fsdp_foreach_piece.
 *
 * Cases: untied all-trainable; untied Spectrum-style partial set with offload; tied
 * all-trainable without resharding; tied with only the top block trainable (embedding frozen,
 * bottom blocks forward-only), prefetch 0. */
#include "fsdp_cases.h"

int main(int argc, char **argv) {
  CHECK_EQ_INT(comm_init(&argc, &argv), 0);
  run_fsdp_cases_();
  int fails = comm_max_status(test_failures_ ? 1 : 0);
  comm_finalize();
  if (fails && !test_failures_) fprintf(stderr, "another rank failed\n");
  return fails ? 1 : test_done();
}
