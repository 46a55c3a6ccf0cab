/* mpi/coll over NCCL (COLL_TRANSPORT_NCCL) on the cuda kernel table: the same sequence of
 * all-gathers and reduce-scatters as over MPI on host buffers gives the same values bit for
 * bit (they are exact in float) and the same byte counters; the stream ordering holds
 * without host synchronisation (data uploaded just before an issue is what is sent; a kernel
 * queued after coll_wait sees the result); coll_test completes a request.
 *
 * Skips (77) on every rank where it cannot run: a build without CUDA, no GPU, or more ranks
 * on a node than GPUs there — NCCL does not support two ranks of one communicator on the
 * same GPU (ncclCommInitRank fails with "Duplicate GPU detected"), so ctest's np2/np4
 * variants run only on machines with that many GPUs. */
#include <time.h>

#include "coll_harness.h"
#include "kernels/gpu.h"

/* 1 on every rank when any rank asks to skip. The reason is printed by local rank 0 when the
 * whole node lacks GPUs, else by the first local rank without a GPU of its own. */
static int skip_all_(int skip, int print, const char *why) {
  if (skip && print) printf("skipped: %s\n", why);
  return comm_max_status(skip);
}

int main(int argc, char **argv) {
  CHECK_EQ_INT(comm_init(&argc, &argv), 0);
  int r = comm_rank(), n = comm_size(), lr = comm_local_rank();
  log_set_quiet(1);

  char why[256] = "", msg[512];
  int ndev = gpu_device_count(why, (int)sizeof why);
  /* any rank whose local rank has no GPU of its own makes every rank skip */
  if (!gpu_built_with_cuda())
    snprintf(msg, sizeof msg, "spectrain was built without CUDA/NCCL");
  else if (ndev <= 0)
    snprintf(msg, sizeof msg, "no GPU (%s)", why);
  else
    snprintf(msg, sizeof msg,
             "rank %d is local rank %d on a node with %d GPU%s: NCCL needs one GPU per rank "
             "(run this test with at most %d ranks per node)",
             r, lr, ndev, ndev == 1 ? "" : "s", ndev);
  int no_gpu = !gpu_built_with_cuda() || ndev <= 0;
  if (skip_all_(no_gpu || lr >= ndev, no_gpu ? lr == 0 : lr == ndev, msg)) {
    comm_finalize();
    return 77;
  }

  int dev = gpu_select_device(lr, why, (int)sizeof why);
  CHECK_MSG(dev >= 0, "gpu_select_device(%d): %s", lr, why);
  const kernels *k = dev >= 0 ? kernels_cuda(0, why, (int)sizeof why) : NULL;
  CHECK_MSG(k != NULL, "kernels_cuda: %s", why);
  if (comm_max_status(k == NULL)) {
    comm_finalize();
    fprintf(stderr, "FAILED: no cuda kernel table on some rank\n");
    return 1;
  }

  /* the reference: MPI on host buffers */
  const size_t c1 = 37, c2 = 100003; /* c2: odd, > one NCCL chunk, exercises the pool */
  results ref = {0};
  run_(NULL, c1, c2, &ref);
  check_closed_(&ref, c1, c2, "mpi");

  int rc = coll_set_transport(COLL_TRANSPORT_NCCL, k);
  CHECK_MSG(rc == 0, "coll_set_transport(nccl): %s", rc ? st_errmsg() : "");
  if (comm_max_status(rc)) {
    results_free_(&ref);
    comm_finalize();
    fprintf(stderr, "FAILED: no NCCL communicator\n");
    return 1;
  }
  CHECK_EQ_INT(coll_get_transport(), COLL_TRANSPORT_NCCL);
  CHECK_EQ_INT(coll_set_transport(COLL_TRANSPORT_NCCL, k), 0); /* again: a no-op */

  results x = {0};
  run_(k, c1, c2, &x);
  check_closed_(&x, c1, c2, "nccl");
  compare_(&x, &ref, c1, c2, "nccl");
  results_free_(&x);
  /* the offload variants: host -> device copy and device -> host result on the
   * communication stream, equal to MPI's bit for bit */
  results xh = {0};
  run_host_(k, c1, c2, &xh);
  check_closed_(&xh, c1, c2, "nccl, host variants");
  compare_(&xh, &ref, c1, c2, "nccl, host variants");
  results_free_(&xh);

  /* ordering without host synchronisation: upload, issue at once; after coll_wait a kernel
   * on the compute stream (scale by 2) must see the gathered values. Repeated so that a
   * missing event would show as a race rather than by luck. */
  size_t full = (size_t)n * c2;
  float *h = xcalloc(full, sizeof(float)), *back = xcalloc(full, sizeof(float));
  float *d = k->alloc(full * sizeof(float));
  CHECK(d != NULL);
  int bad = 0;
  for (int rep = 0; rep < 5 && d; rep++) {
    for (size_t i = 0; i < c2; i++) h[(size_t)r * c2 + i] = ag_val_(r, i) + (float)rep;
    k->upload(d + (size_t)r * c2, h + (size_t)r * c2, c2 * sizeof(float));
    coll_req q = {0};
    CHECK_EQ_INT(coll_iallgather_f32(d, c2, &q), 0);
    CHECK_EQ_INT(q.active, n > 1); /* one rank: nothing to gather, nothing in flight */
    if (rep % 2) { /* poll, sleeping, until the device says done (at most ~20 s) */
      int tries = 0;
      while (!coll_test(&q) && tries++ < 20000) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
      }
      CHECK_EQ_INT(q.active, 0);
    }
    CHECK_EQ_INT(coll_wait(&q), 0);
    k->scale(d, 2.0f, full);
    k->sync();
    k->download(back, d, full * sizeof(float));
    for (int p = 0; p < n; p++)
      for (size_t i = 0; i < c2; i++)
        bad += back[(size_t)p * c2 + i] != 2.0f * (ag_val_(p, i) + (float)rep);
  }
  CHECK_MSG(bad == 0, "%d values wrong after gather + scale on the compute stream", bad);
  if (d) k->free(d);
  free(h);
  free(back);

  /* leaving NCCL is collective and clean; MPI still works */
  CHECK_EQ_INT(coll_set_transport(COLL_TRANSPORT_MPI, NULL), 0);
  CHECK_EQ_INT(coll_get_transport(), COLL_TRANSPORT_MPI);
  double one = 1;
  CHECK_EQ_INT(coll_allreduce_sum_f64(&one, 1), 0);
  CHECK_CLOSE(one, n, 0, 0);

  results_free_(&ref);
  int fails = comm_max_status(test_failures_ ? 1 : 0);
  comm_finalize();
  if (fails && !test_failures_) fprintf(stderr, "another rank failed\n");
  return fails ? 1 : test_done();
}
