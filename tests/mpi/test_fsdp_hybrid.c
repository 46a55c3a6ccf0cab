/* Hybrid sharding (sharding.strategy: hybrid; mpi/coll.h shard groups): the shard groups'
 * collectives sum over every rank of the world, the FSDP cases of tests/fsdp_cases.h match
 * the single-process reference with shards of 1/shard_size, and their losses and gradient
 * norms equal full sharding's within 1e-6 relative. At 4 ranks the mesh is 2 x 2 (two shard
 * groups of two) and 4 x 1 (pure replication); at 2 ranks 2 x 1. A layout that does not fit
 * (shard_size 3 of 4 ranks on one host) is the same input error on every rank, before any
 * collective on the groups. */
#include "fsdp_cases.h"

/* all-gather and reduce-scatter in the groups: the sum runs over the whole world */
static void groups_coll_(void) {
  int N = comm_size(), me = comm_rank();
  coll_groups g;
  coll_get_groups(&g);
  CHECK_EQ_INT(g.shard_size * g.replicas, N);
  enum { C = 5 };
  int S = g.shard_size;
  float *buf = calloc((size_t)S * C, sizeof(float)), *out = calloc(C, sizeof(float));
  for (int i = 0; i < C; i++) buf[(size_t)g.shard_rank * C + i] = (float)(100 * me + i);
  CHECK_EQ_INT(coll_allgather_f32(buf, C), 0);
  int bad = 0;
  for (int q = 0; q < S; q++) {
    /* the group's ranks in world order: shard rank q is the q-th of them (one host) */
    int owner = -1, k = 0;
    for (int r = 0; r < N && owner < 0; r++)
      if (coll_group_of_rank(r) == g.replica_rank && k++ == q) owner = r;
    for (int i = 0; i < C; i++) bad += buf[(size_t)q * C + i] != (float)(100 * owner + i);
  }
  CHECK_MSG(bad == 0, "all-gather in the shard group: %d wrong values", bad);
  float *in = calloc((size_t)S * C, sizeof(float));
  for (size_t i = 0; i < (size_t)S * C; i++) in[i] = (float)(me + 1) * (float)(i + 1);
  CHECK_EQ_INT(coll_reduce_scatter_f32(in, out, C, 0.5f), 0);
  double ranks = (double)N * (N + 1) / 2; /* sum of (me + 1) over the world */
  bad = 0;
  for (int i = 0; i < C; i++)
    bad += out[i] != (float)(0.5 * ranks * (double)((size_t)g.shard_rank * C + (size_t)i + 1));
  CHECK_MSG(bad == 0, "reduce-scatter over shard and replica groups: %d wrong values", bad);
  double x = 1.0;
  CHECK_EQ_INT(coll_shard_allreduce_sum_f64(&x, 1), 0);
  CHECK_MSG(x == (double)S, "shard-group allreduce: %g, expected %d", x, S);
  /* one host: the model sends nothing across hosts */
  coll_counters c;
  coll_counters_get(&c);
  for (int k = 0; k < COLL_NCAT; k++) CHECK_EQ_INT(c.link_bytes[k][COLL_INTER_HOST], 0);
  free(buf);
  free(out);
  free(in);
}

int main(int argc, char **argv) {
  CHECK_EQ_INT(comm_init(&argc, &argv), 0);
  int N = comm_size();
  enum { NC = sizeof fsdp_cases_ / sizeof fsdp_cases_[0] };
  /* a layout that does not fit: the same error on every rank */
  if (N == 4) {
    int rc = coll_set_groups(1, 3, "sharding.strategy:");
    CHECK_EQ_INT(rc, ST_EINPUT);
    CHECK(strstr(st_errmsg(), "multiple of 3") != NULL);
    st_clear_error();
    CHECK_EQ_INT(comm_max_status(rc), ST_EINPUT);
  }
  /* full sharding first: its losses are what hybrid must equal */
  CHECK_EQ_INT(coll_set_groups(0, 0, NULL), 0);
  run_fsdp_cases_();
  static double full_loss[NC][STEPS_], full_norm[NC][STEPS_];
  memcpy(full_loss, fsdp_cases_loss_, sizeof full_loss);
  memcpy(full_norm, fsdp_cases_norm_, sizeof full_norm);
  for (int S = N; S >= 1; S /= 2) {
    if (N % S) continue;
    CHECK_EQ_INT(coll_set_groups(1, S, NULL), 0);
    coll_groups g;
    coll_get_groups(&g);
    CHECK_EQ_INT(g.shard_size, S);
    CHECK_EQ_INT(g.replicas, N / S);
    CHECK_EQ_INT(g.hybrid, S < N);
    groups_coll_();
    coll_counters_reset();
    int before = test_failures_;
    run_fsdp_cases_();
    double worst = 0;
    for (int i = 0; i < NC; i++)
      for (int s = 0; s < STEPS_; s++) {
        worst = fmax(worst, fabs(fsdp_cases_loss_[i][s] - full_loss[i][s]) / fabs(full_loss[i][s]));
        worst = fmax(worst, fabs(fsdp_cases_norm_[i][s] - full_norm[i][s]) / fabs(full_norm[i][s]));
      }
    CHECK_MSG(worst <= 1e-6, "mesh %d x %d: losses/norms differ from full sharding by %.3g", N / S,
              S, worst);
    if (comm_rank() == 0)
      printf("mesh %d replicas x %d shards: %s, max rel diff to full %.2e\n", N / S, S,
             test_failures_ == before ? "ok" : "FAILED", worst);
  }
  CHECK_EQ_INT(coll_set_groups(0, 0, NULL), 0);
  int fails = comm_max_status(test_failures_ ? 1 : 0);
  coll_shutdown();
  comm_finalize();
  if (fails && !test_failures_) fprintf(stderr, "another rank failed\n");
  return fails ? 1 : test_done();
}
