/* mpi/grid: PDGESVD (values only) on groups of 1, 2 and all ranks gives LAPACK's singular
 * values for tall, wide, square and ill-conditioned matrices, each rank filling only its
 * own block-cyclic pieces. Also the progress messages reach rank 0. */
#include <lapacke.h>
#include <math.h>

#include "mpi/comm.h"
#include "mpi/grid.h"
#include "test.h"
#include "util/err.h"

typedef struct {
  int64_t m, n;
  const double *a; /* column-major m x n, the whole matrix (test only) */
  int64_t filled;
} ctx_;

static int fill_(void *vc, int64_t j, int64_t i0, int64_t len, double *dst) {
  ctx_ *c = vc;
  for (int64_t k = 0; k < len; k++) dst[k] = c->a[j * c->m + i0 + k];
  c->filled += len;
  return 0;
}

/* deterministic matrix with prescribed singular values: Householder-mixed diagonal */
static double *make_(int64_t m, int64_t n, double cond, unsigned seed) {
  double *a = calloc((size_t)(m * n), sizeof *a);
  int64_t k = m < n ? m : n;
  for (int64_t i = 0; i < k; i++) a[i * m + i] = pow(cond, -(double)i / (double)(k > 1 ? k - 1 : 1));
  double *v = malloc((size_t)(m > n ? m : n) * sizeof *v);
  for (int rep = 0; rep < 2; rep++) {
    /* left reflector I - 2vv^T/(v^T v) on columns */
    double vv = 0;
    for (int64_t i = 0; i < m; i++) {
      seed = seed * 1103515245u + 12345u;
      v[i] = (double)(seed >> 8) / 16777216.0 - 0.5;
      vv += v[i] * v[i];
    }
    for (int64_t j = 0; j < n; j++) {
      double d = 0;
      for (int64_t i = 0; i < m; i++) d += v[i] * a[j * m + i];
      for (int64_t i = 0; i < m; i++) a[j * m + i] -= 2 * d / vv * v[i];
    }
    vv = 0;
    for (int64_t j = 0; j < n; j++) {
      seed = seed * 1103515245u + 12345u;
      v[j] = (double)(seed >> 8) / 16777216.0 - 0.5;
      vv += v[j] * v[j];
    }
    for (int64_t i = 0; i < m; i++) {
      double d = 0;
      for (int64_t j = 0; j < n; j++) d += a[j * m + i] * v[j];
      for (int64_t j = 0; j < n; j++) a[j * m + i] -= 2 * d / vv * v[j];
    }
  }
  free(v);
  return a;
}

static void check_group_(int gsize) {
  comm_group *g = NULL;
  CHECK_EQ_INT(comm_group_split(gsize, &g), 0);
  if (!g) return;
  const int64_t shapes[][2] = {{60, 23}, {17, 45}, {40, 40}, {50, 30}, {2, 3}, {130, 70}};
  const double conds[] = {10, 100, 1, 1.5e8, 5, 1e3};
  for (int s = 0; s < 6; s++) {
    int64_t m = shapes[s][0], n = shapes[s][1], k = m < n ? m : n;
    double *a = make_(m, n, conds[s], 7u + (unsigned)s);
    double *ref = malloc((size_t)k * sizeof *ref), *got = calloc((size_t)k, sizeof *got);
    double *copy = malloc((size_t)(m * n) * sizeof *copy);
    memcpy(copy, a, (size_t)(m * n) * sizeof *copy);
    CHECK_EQ_INT(LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'N', (lapack_int)m, (lapack_int)n, copy, (lapack_int)m,
                                ref, NULL, 1, NULL, 1),
                 0);
    ctx_ c = {m, n, a, 0};
    uint64_t bytes = 0;
    CHECK_EQ_INT(grid_svd_values(g, m, n, fill_, &c, got, &bytes), 0);
    for (int64_t i = 0; i < k; i++) CHECK_CLOSE(got[i], ref[i], 0, 1e-12 * ref[0]);
    /* the ill-conditioned one: the smallest value is right to ~1e-6 relative (an eigenvalue
     * route through A^T A would lose it entirely at this condition number) */
    if (conds[s] > 1e6) CHECK_CLOSE(got[k - 1], 1.0 / conds[s], 1e-5, 0);
    /* no rank filled more than its share (plus block rounding) */
    CHECK(c.filled <= m * n);
    if (gsize > 1 && m * n > 1000) CHECK(c.filled < m * n);
    if (comm_group_rank(g) == 0 && comm_rank() == 0)
      printf("group %d: %lld x %lld: local peak %llu bytes (matrix %lld bytes)\n", gsize, (long long)m,
             (long long)n, (unsigned long long)bytes, (long long)(m * n * 8));
    free(a);
    free(ref);
    free(got);
    free(copy);
  }
  comm_group_free(g);
}

int main(int argc, char **argv) {
  CHECK_EQ_INT(comm_init(&argc, &argv), 0);
  int n = comm_size();
  check_group_(1);
  if (n >= 2) check_group_(2);
  if (n > 2) check_group_(n);
  /* progress messages: every rank but 0 sends 3, rank 0 receives 3 * (n - 1) */
  if (comm_rank() != 0)
    for (int i = 0; i < 3; i++) comm_progress_send(comm_rank() * 10 + i, 0);
  if (comm_rank() == 0) {
    int got = 0, items[16], st[16];
    while (got < 3 * (n - 1)) got += comm_progress_poll(items, st, 16, 100);
    CHECK_EQ_INT(got, 3 * (n - 1));
  }
  comm_barrier();
  int rc = test_done();
  comm_finalize();
  return rc;
}
