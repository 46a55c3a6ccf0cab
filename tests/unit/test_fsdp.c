/* shard/fsdp on one process (no MPI_Init: the collectives are local copies): the same cases
 * as tests/mpi/test_fsdp.c against the single-process reference, here also under ASan, UBSan
 * and the leak checker. */
#include "fsdp_cases.h"

int main(void) {
  run_fsdp_cases_();
  return test_done();
}
