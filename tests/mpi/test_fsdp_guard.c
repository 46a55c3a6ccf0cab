/* shard/fsdp on the "guard" kernel table (compute memory PROT_NONE outside kernels and
 * copies) with the MPI-staged transport: the same cases as tests/mpi/test_fsdp.c (results
 * against the single-process CPU reference), proving that fsdp never dereferences compute
 * memory on the host, with offload off, on (all shards on the host, AdamW on the host,
 * in the background) and trainable-state-only, and that checkpoint pieces are host copies
 * written back with fsdp_pieces_done. This is how the CUDA backend treats memory. */
#include "fsdp_cases.h"

int main(int argc, char **argv) {
  CHECK_EQ_INT(comm_init(&argc, &argv), 0);
  fsdp_cases_k_ = kernels_guard();
  CHECK_EQ_INT(coll_set_transport(COLL_TRANSPORT_MPI_STAGED, fsdp_cases_k_), 0);
  run_fsdp_cases_();
  CHECK_EQ_INT(coll_set_transport(COLL_TRANSPORT_MPI, NULL), 0);
  int fails = comm_max_status(test_failures_ ? 1 : 0);
  comm_finalize();
  if (fails && !test_failures_) fprintf(stderr, "another rank failed\n");
  return fails ? 1 : test_done();
}
