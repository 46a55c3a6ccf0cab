/* Job files and token data across ranks: every rank reads the same job (hash agreed;
 * a rank with another --set is an error on every rank, not a hang), and the global batch
 * that R ranks assemble from their slices equals the one a single process reads. */
#include <stdint.h>

#include "job/job.h"
#include "io/data.h"
#include "mpi/comm.h"
#include "test.h"
#include "util/err.h"
#include "util/hash.h"

static const char *job_text_ =
    "output_dir: /tmp/unused\n"
    "model: {path: m}\n"
    "data:\n  train: " SPECTRAIN_SOURCE_DIR
    "/README.md\n  validation_split: 0.1\n"
    "training: {max_seq_length: 16, per_device_train_batch_size: 3, seed: 5}\n";

int main(int argc, char **argv) {
  CHECK_EQ_INT(comm_init(&argc, &argv), 0);
  log_set_quiet(1);
  const int r = comm_rank(), R = comm_size();

  job_config job;
  CHECK_EQ_INT(job_load_text("job.yaml", job_text_, NULL, &job), 0);
  CHECK_EQ_INT(comm_agree_u64(job_hash(&job), "the job"), 0);

  /* one rank with another seed: every rank gets the error */
  const char *sv[] = {"training.seed=6"};
  opt_list sets = {r == R - 1 && R > 1 ? 1 : 0, sv};
  job_config other;
  CHECK_EQ_INT(job_load_text("job.yaml", job_text_, &sets, &other), 0);
  int rc = comm_agree_u64(job_hash(&other), "the job");
  if (R > 1) {
    CHECK_EQ_INT(rc, ST_EINPUT);
    CHECK_CONTAINS(st_errmsg(), "ranks disagree on the job");
  } else {
    CHECK_EQ_INT(rc, 0);
  }
  job_free(&other);

  data_job d;
  CHECK_EQ_INT(data_open_job(&job, 256, &d), 0);
  const int T = (int)job.training.max_seq_length, B = (int)job.training.per_device_train_batch_size;
  const int G = B * R; /* global batch: B per rank */
  /* per global position: a hash of (inputs, targets); each rank fills only its slice */
  uint64_t *mine = xcalloc((size_t)G, sizeof *mine), *full = xcalloc((size_t)G, sizeof *full);
  int32_t *in = xmalloc((size_t)G * T * sizeof *in), *tg = xmalloc((size_t)G * T * sizeof *tg);
  uint64_t *idx = xmalloc((size_t)G * sizeof *idx);
  for (uint64_t step = 0; step < 40; step += 13) {
    for (int b = 0; b < B; b++)
      idx[b] = data_sample_global(&d.train, (uint64_t)job.training.seed,
                                  step * (uint64_t)G + (uint64_t)(r * B + b));
    data_fill(&d.train, idx, B, in, tg);
    uint64_t counted[1] = {data_count_targets(&d.train, idx, B)};
    for (int b = 0; b < B; b++)
      mine[r * B + b] = hash64_bytes(hash64_bytes(HASH64_INIT, in + (size_t)b * T, (size_t)T * 4),
                                     tg + (size_t)b * T, (size_t)T * 4);
    CHECK_EQ_INT(comm_allreduce_sum_u64(mine, G), 0);
    CHECK_EQ_INT(comm_allreduce_sum_u64(counted, 1), 0);
    /* the same global batch read by one process */
    for (int g = 0; g < G; g++)
      idx[g] = data_sample_global(&d.train, (uint64_t)job.training.seed,
                                  step * (uint64_t)G + (uint64_t)g);
    data_fill(&d.train, idx, G, in, tg);
    for (int g = 0; g < G; g++)
      full[g] = hash64_bytes(hash64_bytes(HASH64_INIT, in + (size_t)g * T, (size_t)T * 4),
                             tg + (size_t)g * T, (size_t)T * 4);
    CHECK(memcmp(mine, full, (size_t)G * sizeof *mine) == 0);
    CHECK_EQ_INT(counted[0], data_count_targets(&d.train, idx, G));
    memset(mine, 0, (size_t)G * sizeof *mine);
  }
  free(mine);
  free(full);
  free(in);
  free(tg);
  free(idx);
  data_job_close(&d);
  job_free(&job);
  int fails = comm_max_status(test_failures_ ? 1 : 0);
  comm_finalize();
  if (fails && !test_failures_) fprintf(stderr, "another rank failed\n");
  return fails ? 1 : test_done();
}
