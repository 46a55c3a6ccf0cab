/* mpi/coll: all-gather, reduce-scatter (sum and average), their non-blocking forms with two
 * requests in flight at once, allreduce, byte counters, and the int-count limit. Expected
 * values are closed forms of the rank numbers, not outputs of the code under test. */
#include <limits.h>

#include "kernels/bf16.h"
#include "mpi/coll.h"
#include "mpi/comm.h"
#include "test.h"
#include "util/err.h"

static float val_(int rank, size_t i) { return (float)(rank * 1000 + (int)i); }

int main(int argc, char **argv) {
  CHECK_EQ_INT(comm_init(&argc, &argv), 0);
  int r = comm_rank(), n = comm_size();
  const size_t count = 37;
  float *buf = xcalloc((size_t)n * count, sizeof(float));
  float *buf2 = xcalloc((size_t)n * count, sizeof(float));

  /* blocking all-gather in place */
  for (size_t i = 0; i < count; i++) buf[(size_t)r * count + i] = val_(r, i);
  coll_counters_reset();
  CHECK_EQ_INT(coll_allgather_f32(buf, count), 0);
  int bad = 0;
  for (int q = 0; q < n; q++)
    for (size_t i = 0; i < count; i++) bad += buf[(size_t)q * count + i] != val_(q, i);
  CHECK_EQ_INT(bad, 0);

  /* two non-blocking all-gathers in flight, completed in reverse order */
  memset(buf, 0, (size_t)n * count * sizeof(float));
  for (size_t i = 0; i < count; i++) {
    buf[(size_t)r * count + i] = val_(r, i);
    buf2[(size_t)r * count + i] = -val_(r, i);
  }
  coll_req a = {0}, b = {0};
  CHECK_EQ_INT(coll_iallgather_f32(buf, count, &a), 0);
  CHECK_EQ_INT(coll_iallgather_f32(buf2, count, &b), 0);
  CHECK_EQ_INT(coll_wait(&b), 0);
  CHECK_EQ_INT(coll_wait(&a), 0);
  CHECK_EQ_INT(a.active, 0);
  bad = 0;
  for (int q = 0; q < n; q++)
    for (size_t i = 0; i < count; i++)
      bad += buf[(size_t)q * count + i] != val_(q, i) || buf2[(size_t)q * count + i] != -val_(q, i);
  CHECK_EQ_INT(bad, 0);

  /* reduce-scatter: in[q*count+i] on rank r = r + q + i; slice r sums to
   * sum_r' (r' + r + i) = n(n-1)/2 + n(r + i); average divides by n. */
  float *in = xcalloc((size_t)n * count, sizeof(float));
  float out[37], out2[37];
  for (int q = 0; q < n; q++)
    for (size_t i = 0; i < count; i++) in[(size_t)q * count + i] = (float)(r + q + (int)i);
  CHECK_EQ_INT(coll_reduce_scatter_f32(in, out, count, 1.0f), 0);
  CHECK_EQ_INT(coll_ireduce_scatter_f32(in, out2, count, 1.0f / (float)n, &a), 0);
  CHECK_EQ_INT(coll_wait(&a), 0);
  bad = 0;
  for (size_t i = 0; i < count; i++) {
    double sum = n * (n - 1) / 2.0 + (double)n * (r + (double)i);
    bad += fabs(out[i] - sum) > 1e-4 * sum;
    bad += fabs(out2[i] - sum / n) > 1e-4 * sum;
  }
  CHECK_EQ_INT(bad, 0);

  /* allreduce */
  double d[2] = {1.0, (double)r};
  CHECK_EQ_INT(coll_allreduce_sum_f64(d, 2), 0);
  CHECK_CLOSE(d[0], n, 0, 0);
  CHECK_CLOSE(d[1], n * (n - 1) / 2.0, 0, 0);
  uint64_t u[2] = {(uint64_t)r, (uint64_t)r};
  CHECK_EQ_INT(coll_allreduce_min_u64(u, 1), 0);
  CHECK_EQ_INT(coll_allreduce_max_u64(u + 1, 1), 0);
  CHECK_EQ_INT(u[0], 0);
  CHECK_EQ_INT(u[1], n - 1);

  /* counters: 3 all-gathers and 2 reduce-scatters of n*count floats; 3 allreduce calls */
  coll_counters c;
  coll_counters_get(&c);
  CHECK_EQ_INT(c.calls[COLL_ALLGATHER], 3);
  CHECK_EQ_INT(c.bytes[COLL_ALLGATHER], 3 * (uint64_t)n * count * 4);
  CHECK_EQ_INT(c.calls[COLL_REDUCE_SCATTER], 2);
  CHECK_EQ_INT(c.bytes[COLL_REDUCE_SCATTER], 2 * (uint64_t)n * count * 4);
  CHECK_EQ_INT(c.calls[COLL_ALLREDUCE], 3);
  CHECK_STR_EQ(coll_category_name(COLL_REDUCE_SCATTER), "reduce_scatter");

  /* bf16 reduce-scatter: small integers sum exactly in bf16 (< 256); two bf16 bytes a value
   * in the counters; a sum that is not a bf16 value comes back rounded (within half an ulp
   * per partial sum of the exact one) */
  bf16_t *in16 = xcalloc((size_t)n * count, sizeof(bf16_t)), out16[37];
  for (int q = 0; q < n; q++)
    for (size_t i = 0; i < count; i++) in16[(size_t)q * count + i] = bf16_from_f32((float)(r + q + (int)i));
  coll_counters_reset();
  CHECK_EQ_INT(coll_ireduce_scatter_bf16(in16, out16, count, &a), 0);
  CHECK_EQ_INT(coll_wait(&a), 0);
  bad = 0;
  for (size_t i = 0; i < count; i++)
    bad += bf16_to_f32(out16[i]) != (float)(n * (n - 1) / 2 + n * (r + (int)i));
  CHECK_EQ_INT(bad, 0);
  coll_counters_get(&c);
  CHECK_EQ_INT(c.calls[COLL_REDUCE_SCATTER], 1);
  CHECK_EQ_INT(c.bytes[COLL_REDUCE_SCATTER], (uint64_t)n * count * 2);
  for (int q = 0; q < n; q++) /* 1 + 3/128 on every rank: n (1 + 3/128) needs 9 bits for n = 4 */
    for (size_t i = 0; i < count; i++) in16[(size_t)q * count + i] = bf16_from_f32(1.0f + 3.0f / 128 * (float)(i % 4));
  CHECK_EQ_INT(coll_ireduce_scatter_bf16(in16, out16, count, &a), 0);
  CHECK_EQ_INT(coll_wait(&a), 0);
  bad = 0;
  for (size_t i = 0; i < count; i++) {
    float got = bf16_to_f32(out16[i]), exact = (float)n * (1.0f + 3.0f / 128 * (float)(i % 4));
    bad += bf16_to_f32(bf16_from_f32(got)) != got;         /* a bf16 value */
    bad += fabsf(got - exact) > (float)n * exact / 256.0f; /* <= n half-ulps away */
  }
  CHECK_EQ_INT(bad, 0);
  free(in16);

  /* counts beyond MPI's int are refused on every rank alike, before any communication */
  CHECK_EQ_INT(coll_allgather_f32(buf, (size_t)INT_MAX + 1), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "exceeds MPI's int count");

  free(buf);
  free(buf2);
  free(in);
  int fails = comm_max_status(test_failures_ ? 1 : 0);
  comm_finalize();
  if (fails && !test_failures_) fprintf(stderr, "another rank failed\n");
  return fails ? 1 : test_done();
}
