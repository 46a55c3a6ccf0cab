/* Shared by the transport tests (test_coll_staged.c, test_coll_nccl.c): one sequence of
 * all-gathers and reduce-scatters (blocking, non-blocking, two in flight, polled with
 * coll_test) on buffers of a kernel table, its results read back to the host, the closed
 * forms they must equal, and a comparison with another transport's results. */
#ifndef SPECTRAIN_TESTS_COLL_HARNESS_H
#define SPECTRAIN_TESTS_COLL_HARNESS_H
#include "kernels/kernels.h"
#include "mpi/coll.h"
#include "mpi/comm.h"
#include "test.h"
#include "util/err.h"

/* Values whose sums over ranks are exact in float (small integers times 1/4), so the
 * closed forms below hold exactly whatever order MPI adds in. */
static float ag_val_(int rank, size_t i) { return (float)(rank * 1000 + (int)i) * 0.25f; }
static float rs_val_(int rank, int slice, size_t i) {
  return (float)(rank + 3 * slice + (int)(i % 101)) * 0.25f - 7.0f;
}

typedef struct {
  float *ag1, *ag2, *ag3; /* all-gathers: blocking, two in flight */
  float *rs1, *rs2, *rs3; /* reduce-scatters: blocking sum, non-blocking average, sum 2 */
  coll_counters c;
} results;

/* Buffers of `k` (compute memory) or host memory (k == NULL), filled from host arrays. */
static float *buf_(const kernels *k, const float *host, size_t n) {
  if (!k) {
    float *b = xcalloc(n ? n : 1, sizeof(float));
    if (n) memcpy(b, host, n * sizeof(float));
    return b;
  }
  float *b = k->alloc((n ? n : 1) * sizeof(float));
  if (n) k->upload(b, host, n * sizeof(float));
  return b;
}
static float *get_(const kernels *k, const float *b, size_t n) {
  float *h = xcalloc(n ? n : 1, sizeof(float));
  if (!n) return h;
  if (k) {
    k->sync();
    k->download(h, b, n * sizeof(float));
  } else {
    memcpy(h, b, n * sizeof(float));
  }
  return h;
}
static void free_(const kernels *k, float *b) {
  if (k)
    k->free(b);
  else
    free(b);
}

/* One sequence of collectives on buffers of `k` (NULL: host) with sizes c1 < c2 (the staging
 * must grow between them). */
static void run_(const kernels *k, size_t c1, size_t c2, results *out) {
  int r = comm_rank(), n = comm_size();
  size_t n1 = (size_t)n * c1, n2 = (size_t)n * c2;
  float *h1 = xcalloc(n1, sizeof(float)), *h2 = xcalloc(n2, sizeof(float));
  coll_counters_reset();

  /* blocking all-gather of c1 per rank; a zero-count call in between */
  for (size_t i = 0; i < c1; i++) h1[(size_t)r * c1 + i] = ag_val_(r, i);
  float *b1 = buf_(k, h1, n1);
  CHECK_EQ_INT(coll_allgather_f32(b1, c1), 0);
  CHECK_EQ_INT(coll_allgather_f32(b1, 0), 0);
  out->ag1 = get_(k, b1, n1);

  /* two non-blocking all-gathers in flight (c2 then c1), completed in reverse order */
  memset(h1, 0, n1 * sizeof(float));
  for (size_t i = 0; i < c1; i++) h1[(size_t)r * c1 + i] = -ag_val_(r, i);
  for (size_t i = 0; i < c2; i++) h2[(size_t)r * c2 + i] = ag_val_(r, i) + 0.5f;
  float *b2 = buf_(k, h2, n2);
  free_(k, b1);
  b1 = buf_(k, h1, n1);
  coll_req a = {0}, b = {0};
  CHECK_EQ_INT(coll_iallgather_f32(b2, c2, &a), 0);
  CHECK_EQ_INT(coll_iallgather_f32(b1, c1, &b), 0);
  CHECK_EQ_INT(coll_wait(&b), 0);
  CHECK_EQ_INT(coll_wait(&a), 0);
  CHECK_EQ_INT(a.active + b.active, 0);
  out->ag2 = get_(k, b2, n2);
  out->ag3 = get_(k, b1, n1);
  free_(k, b1);
  free_(k, b2);

  /* reduce-scatters: a blocking sum of c1; then in flight together an average of c2 (polled
   * with coll_test) and a sum of c1 scaled by 2 */
  for (int q = 0; q < n; q++)
    for (size_t i = 0; i < c2; i++) h2[(size_t)q * c2 + i] = rs_val_(r, q, i);
  for (int q = 0; q < n; q++)
    for (size_t i = 0; i < c1; i++) h1[(size_t)q * c1 + i] = rs_val_(r, q, i);
  float *in1 = buf_(k, h1, n1), *in2 = buf_(k, h2, n2);
  float *z = xcalloc(c2, sizeof(float));
  float *o1 = buf_(k, z, c1), *o2 = buf_(k, z, c2), *o3 = buf_(k, z, c1);
  CHECK_EQ_INT(coll_reduce_scatter_f32(in1, o1, c1, 1.0f), 0);
  CHECK_EQ_INT(coll_ireduce_scatter_f32(in2, o2, c2, 1.0f / (float)n, &a), 0);
  CHECK_EQ_INT(coll_ireduce_scatter_f32(in1, o3, c1, 2.0f, &b), 0);
  (void)coll_test(&a); /* either answer is right; completion is what coll_wait guarantees */
  CHECK_EQ_INT(coll_wait(&a), 0);
  CHECK_EQ_INT(coll_wait(&b), 0);
  CHECK_EQ_INT(a.active + b.active, 0);
  CHECK_EQ_INT(coll_test(&a), 1); /* idle */
  out->rs1 = get_(k, o1, c1);
  out->rs2 = get_(k, o2, c2);
  out->rs3 = get_(k, o3, c1);
  free(z);
  free_(k, in1);
  free_(k, in2);
  free_(k, o1);
  free_(k, o2);
  free_(k, o3);
  coll_counters_get(&out->c);
  free(h1);
  free(h2);
}

/* Host memory for the offload variants: k's pinned host memory (plain RAM when k == NULL). */
static float *hbuf_(const kernels *k, size_t n) {
  float *h = k ? k->host_alloc((n ? n : 1) * sizeof(float)) : xcalloc(n ? n : 1, sizeof(float));
  CHECK(h != NULL);
  return h;
}
static void hfree_(const kernels *k, float *h) {
  if (k)
    k->host_free(h);
  else
    free(h);
}
static float *hcopy_(const float *h, size_t n) {
  float *c = xcalloc(n ? n : 1, sizeof(float));
  memcpy(c, h, n * sizeof(float));
  return c;
}

/* The same sequence as run_ through the offload variants: every all-gather takes its own
 * slice from host memory (the buffer's own slice starts at zero, so a gather that sent the
 * buffer's slice instead would differ), every reduce-scatter lands in host memory. Its
 * results and counters must equal run_'s bit for bit. */
static void run_host_(const kernels *k, size_t c1, size_t c2, results *out) {
  int r = comm_rank(), n = comm_size();
  size_t n1 = (size_t)n * c1, n2 = (size_t)n * c2;
  float *s1 = hbuf_(k, c1), *s2 = hbuf_(k, c2);
  float *z = xcalloc(n2, sizeof(float));
  float *h1 = xcalloc(n1, sizeof(float)), *h2 = xcalloc(n2, sizeof(float));
  coll_counters_reset();

  for (size_t i = 0; i < c1; i++) s1[i] = ag_val_(r, i);
  float *b1 = buf_(k, z, n1);
  coll_req a = {0}, b = {0};
  CHECK_EQ_INT(coll_iallgather_from_host_f32(b1, s1, c1, &a), 0);
  CHECK_EQ_INT(coll_wait(&a), 0);
  CHECK_EQ_INT(coll_iallgather_from_host_f32(b1, s1, 0, &a), 0);
  CHECK_EQ_INT(coll_wait(&a), 0);
  out->ag1 = get_(k, b1, n1); /* get_ synchronises: the slices may change afterwards */

  for (size_t i = 0; i < c1; i++) s1[i] = -ag_val_(r, i);
  for (size_t i = 0; i < c2; i++) s2[i] = ag_val_(r, i) + 0.5f;
  free_(k, b1);
  b1 = buf_(k, z, n1);
  float *b2 = buf_(k, z, n2);
  CHECK_EQ_INT(coll_iallgather_from_host_f32(b2, s2, c2, &a), 0);
  CHECK_EQ_INT(coll_iallgather_from_host_f32(b1, s1, c1, &b), 0);
  CHECK_EQ_INT(coll_wait(&b), 0);
  CHECK_EQ_INT(coll_wait(&a), 0);
  CHECK_EQ_INT(a.active + b.active, 0);
  out->ag2 = get_(k, b2, n2);
  out->ag3 = get_(k, b1, n1);
  free_(k, b1);
  free_(k, b2);

  for (int q = 0; q < n; q++)
    for (size_t i = 0; i < c2; i++) h2[(size_t)q * c2 + i] = rs_val_(r, q, i);
  for (int q = 0; q < n; q++)
    for (size_t i = 0; i < c1; i++) h1[(size_t)q * c1 + i] = rs_val_(r, q, i);
  float *in1 = buf_(k, h1, n1), *in2 = buf_(k, h2, n2);
  float *o1 = hbuf_(k, c1), *o2 = hbuf_(k, c2), *o3 = hbuf_(k, c1);
  CHECK_EQ_INT(coll_ireduce_scatter_to_host_f32(in1, o1, c1, 1.0f, &a), 0);
  CHECK_EQ_INT(coll_wait(&a), 0);
  CHECK_EQ_INT(coll_ireduce_scatter_to_host_f32(in2, o2, c2, 1.0f / (float)n, &a), 0);
  CHECK_EQ_INT(coll_ireduce_scatter_to_host_f32(in1, o3, c1, 2.0f, &b), 0);
  (void)coll_test(&a);
  CHECK_EQ_INT(coll_wait(&a), 0);
  CHECK_EQ_INT(coll_wait(&b), 0);
  CHECK_EQ_INT(a.active + b.active, 0);
  /* coll_wait alone must suffice for host results: no sync before reading them */
  out->rs1 = hcopy_(o1, c1);
  out->rs2 = hcopy_(o2, c2);
  out->rs3 = hcopy_(o3, c1);
  coll_counters_get(&out->c);
  free_(k, in1);
  free_(k, in2);
  hfree_(k, o1);
  hfree_(k, o2);
  hfree_(k, o3);
  hfree_(k, s1);
  hfree_(k, s2);
  free(z);
  free(h1);
  free(h2);
}

static void results_free_(results *x) {
  free(x->ag1);
  free(x->ag2);
  free(x->ag3);
  free(x->rs1);
  free(x->rs2);
  free(x->rs3);
}

/* The closed forms: what every transport must produce. */
static void check_closed_(const results *x, size_t c1, size_t c2, const char *what) {
  int r = comm_rank(), n = comm_size();
  int bad = 0;
  for (int q = 0; q < n; q++) {
    for (size_t i = 0; i < c1; i++) {
      bad += x->ag1[(size_t)q * c1 + i] != ag_val_(q, i);
      bad += x->ag3[(size_t)q * c1 + i] != -ag_val_(q, i);
    }
    for (size_t i = 0; i < c2; i++) bad += x->ag2[(size_t)q * c2 + i] != ag_val_(q, i) + 0.5f;
  }
  CHECK_MSG(bad == 0, "%s: %d all-gathered values differ from the closed form", what, bad);
  bad = 0;
  for (size_t i = 0; i < c1; i++) {
    double sum = 0;
    for (int q = 0; q < n; q++) sum += rs_val_(q, r, i);
    bad += x->rs1[i] != (float)sum;
    bad += x->rs3[i] != (float)(2 * sum);
  }
  for (size_t i = 0; i < c2; i++) {
    double sum = 0;
    for (int q = 0; q < n; q++) sum += rs_val_(q, r, i);
    bad += fabs(x->rs2[i] - sum / n) > 1e-6 * (1 + fabs(sum));
  }
  CHECK_MSG(bad == 0, "%s: %d reduce-scattered values differ from the closed form", what, bad);
  /* counters: 3 all-gathers with data + 1 empty, 3 reduce-scatters */
  CHECK_EQ_INT(x->c.calls[COLL_ALLGATHER], 4);
  CHECK_EQ_INT(x->c.bytes[COLL_ALLGATHER], (2 * c1 + c2) * (uint64_t)n * 4);
  CHECK_EQ_INT(x->c.calls[COLL_REDUCE_SCATTER], 3);
  CHECK_EQ_INT(x->c.bytes[COLL_REDUCE_SCATTER], (2 * c1 + c2) * (uint64_t)n * 4);
}

static int same_(const float *a, const float *b, size_t n) {
  return memcmp(a, b, n * sizeof(float)) == 0;
}

/* x must equal ref (another transport) bit for bit: the values are exact in float, so the
 * order of the additions does not matter. */
static void compare_(const results *x, const results *ref, size_t c1, size_t c2,
                     const char *what) {
  size_t n = (size_t)comm_size();
  CHECK_MSG(same_(x->ag1, ref->ag1, n * c1) && same_(x->ag2, ref->ag2, n * c2) &&
                same_(x->ag3, ref->ag3, n * c1),
            "%s: all-gathers differ from MPI's", what);
  CHECK_MSG(same_(x->rs1, ref->rs1, c1) && same_(x->rs2, ref->rs2, c2) &&
                same_(x->rs3, ref->rs3, c1),
            "%s: reduce-scatters differ from MPI's", what);
  CHECK_MSG(memcmp(&x->c, &ref->c, sizeof x->c) == 0, "%s: byte counters differ from MPI's",
            what);
}

#endif
