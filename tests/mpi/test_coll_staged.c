/* mpi/coll transports: COLL_TRANSPORT_MPI_STAGED (buffers in compute memory, staged through
 * host memory) gives the same results, bit for bit, as COLL_TRANSPORT_MPI on host buffers,
 * and both match closed forms of the rank numbers; blocking and non-blocking calls, two
 * requests in flight, the one-rank copy path (np1), staging that grows, byte counters that count
 * alike; the offload variants (own slice from host memory, result into host memory) equal
 * the plain calls bit for bit on every transport. With the "guard" kernel table compute memory is PROT_NONE outside kernels, so any
 * host access to it in mpi/coll crashes the test. Transport agreement: ranks that ask for
 * different transports all get the same clear error (no hang), and an unavailable transport
 * (nccl without a selected GPU) fails on every rank alike. */
#include <limits.h>

#include "coll_harness.h"

int main(int argc, char **argv) {
  CHECK_EQ_INT(comm_init(&argc, &argv), 0);
  int r = comm_rank(), n = comm_size();
  log_set_quiet(1);

  CHECK_STR_EQ(coll_transport_name(COLL_TRANSPORT_MPI), "mpi");
  CHECK_STR_EQ(coll_transport_name(COLL_TRANSPORT_MPI_STAGED), "mpi-staged");
  CHECK_STR_EQ(coll_transport_name(COLL_TRANSPORT_NCCL), "nccl");
  CHECK_EQ_INT(coll_get_transport(), COLL_TRANSPORT_MPI);

  const size_t c1 = 37, c2 = 1000;
  results ref = {0};
  run_(NULL, c1, c2, &ref);
  check_closed_(&ref, c1, c2, "mpi");

  /* the offload variants over MPI on host buffers equal the plain calls bit for bit */
  {
    results x = {0};
    run_host_(NULL, c1, c2, &x);
    check_closed_(&x, c1, c2, "mpi, host variants");
    compare_(&x, &ref, c1, c2, "mpi, host variants");
    results_free_(&x);
  }

  const kernels *tables[] = {kernels_cpu(), kernels_guard()};
  for (size_t t = 0; t < sizeof tables / sizeof *tables; t++) {
    const kernels *k = tables[t];
    CHECK_EQ_INT(coll_set_transport(COLL_TRANSPORT_MPI_STAGED, k), 0);
    CHECK_EQ_INT(coll_get_transport(), COLL_TRANSPORT_MPI_STAGED);
    results x = {0};
    run_(k, c1, c2, &x);
    check_closed_(&x, c1, c2, k->name);
    compare_(&x, &ref, c1, c2, k->name);
    results xh = {0};
    run_host_(k, c1, c2, &xh);
    check_closed_(&xh, c1, c2, k->name);
    compare_(&xh, &ref, c1, c2, k->name);
    results_free_(&xh);
    /* the int-count limit holds for the staged transport too (before any staging) */
    CHECK_EQ_INT(coll_allgather_f32(NULL, (size_t)INT_MAX + 1), ST_EINPUT);
    CHECK_CONTAINS(st_errmsg(), "exceeds MPI's int count");
    results_free_(&x);
    /* back to MPI (every rank alike) */
    CHECK_EQ_INT(coll_set_transport(COLL_TRANSPORT_MPI, NULL), 0);
    CHECK_EQ_INT(coll_get_transport(), COLL_TRANSPORT_MPI);
  }

  /* staged without a kernel table: an input error on every rank */
  CHECK_EQ_INT(coll_set_transport(COLL_TRANSPORT_MPI_STAGED, NULL), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "needs the kernel table");
  CHECK_EQ_INT(coll_get_transport(), COLL_TRANSPORT_MPI);

  /* ranks that disagree: rank 0 asks for staged, the others for MPI. Every rank returns the
   * same error (instead of some ranks waiting in a collective the others never start). */
  if (n > 1) {
    coll_transport want = r == 0 ? COLL_TRANSPORT_MPI_STAGED : COLL_TRANSPORT_MPI;
    CHECK_EQ_INT(coll_set_transport(want, kernels_cpu()), ST_EINPUT);
    CHECK_CONTAINS(st_errmsg(), "ranks disagree on the collective transport");
    CHECK_CONTAINS(st_errmsg(), "rank 0 uses 'mpi-staged'");
    CHECK_EQ_INT(coll_get_transport(), COLL_TRANSPORT_MPI);
    /* still usable afterwards */
    double d = 1;
    CHECK_EQ_INT(coll_allreduce_sum_f64(&d, 1), 0);
    CHECK_CLOSE(d, n, 0, 0);
  }

  /* nccl where it cannot work (this test selects no GPU; or no CUDA build): an error on
   * every rank, the transport unchanged. test_coll_nccl runs NCCL where there are GPUs. */
  int rc = coll_set_transport(COLL_TRANSPORT_NCCL, kernels_cpu());
  CHECK_MSG(rc != 0, "nccl without a GPU was accepted");
  CHECK_CONTAINS(st_errmsg(), "nccl");
  CHECK_EQ_INT(comm_max_status(rc) == rc, 1);
  CHECK_EQ_INT(coll_get_transport(), COLL_TRANSPORT_MPI);

  results_free_(&ref);
  int fails = comm_max_status(test_failures_ ? 1 : 0);
  coll_shutdown();
  comm_finalize();
  if (fails && !test_failures_) fprintf(stderr, "another rank failed\n");
  return fails ? 1 : test_done();
}
