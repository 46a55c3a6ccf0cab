/* kernels/gpu_svd_layout.h on the CPU: the layout gpu_svdvals gives cuSOLVER's gesvd (A = W^T
 * or W, column-major m x n, m >= n), filled chunk by chunk through the same index function
 * the CUDA kernel uses, writes every element of A exactly once and, decomposed by LAPACK's
 * dgesvd with the same m, n, lda (the routine cuSOLVER's gesvd follows), gives the singular
 * values snr.c gets from dgesdd — for wide, tall, square, 1 x N and N x 1 matrices and
 * staging buffers of one chunk, many chunks with a short last one, and one row at a time. */
#include <lapacke.h>
#include <stdint.h>

#include "kernels/gpu_svd_layout.h"
#include "test.h"

static uint64_t rng_ = 0x2545f4914f6cdd1dull;
static double uniform_(void) {
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 7;
  rng_ ^= rng_ << 17;
  return (double)(rng_ >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static void check_(int64_t rows, int64_t cols, size_t stage_bytes) {
  size_t numel = (size_t)(rows * cols);
  double *w = malloc(numel * sizeof *w), *ref = malloc(numel * sizeof *ref);
  for (size_t i = 0; i < numel; i++) ref[i] = w[i] = (double)(float)uniform_();
  gpu_svd_layout l = gpu_svd_layout_of(rows, cols);
  int64_t k = rows < cols ? rows : cols;
  CHECK(l.m >= l.n);
  CHECK_EQ_INT(l.n, k);
  CHECK_EQ_INT(l.m * l.n, (int64_t)numel);
  CHECK_EQ_INT(l.transpose, rows > cols);
  double *a = malloc(numel * sizeof *a);
  int *hits = calloc(numel, sizeof *hits);
  int64_t chunk = gpu_svd_chunk_rows(rows, cols, stage_bytes);
  CHECK(chunk >= 1 && chunk <= rows);
  int bad = 0, nchunks = 0;
  for (int64_t r0 = 0; r0 < rows; r0 += chunk, nchunks++) { /* as svd.cu's upload loop */
    int64_t nr = rows - r0 < chunk ? rows - r0 : chunk;
    const double *src = w + (size_t)r0 * (size_t)cols;
    for (size_t e = 0; e < (size_t)nr * (size_t)cols; e++) {
      size_t d = gpu_svd_dst_index(e, r0, rows, cols, l.transpose);
      if (d >= numel) {
        bad++;
        continue;
      }
      a[d] = src[e];
      hits[d]++;
    }
  }
  for (size_t i = 0; i < numel; i++) bad += hits[i] != 1;
  CHECK_MSG(bad == 0, "%lld x %lld, stage %zu: %d elements of A written other than once",
            (long long)rows, (long long)cols, stage_bytes, bad);
  double *s = malloc((size_t)k * sizeof *s), *sr = malloc((size_t)k * sizeof *sr);
  double *superb = malloc((size_t)(k > 1 ? k : 2) * sizeof *superb);
  CHECK_EQ_INT(LAPACKE_dgesvd(LAPACK_COL_MAJOR, 'N', 'N', (lapack_int)l.m, (lapack_int)l.n, a,
                              (lapack_int)l.m, s, NULL, 1, NULL, 1, superb),
               0);
  CHECK_EQ_INT(LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'N', (lapack_int)cols, (lapack_int)rows, ref,
                              (lapack_int)cols, sr, NULL, 1, NULL, 1),
               0);
  double tol = 64 * 2.2e-16 * (double)l.m * sr[0];
  for (int64_t i = 0; i < k; i++)
    CHECK_MSG(fabs(s[i] - sr[i]) <= tol, "%lld x %lld, stage %zu: sigma[%lld] %.17g vs %.17g",
              (long long)rows, (long long)cols, stage_bytes, (long long)i, s[i], sr[i]);
  printf("%5lld x %-5lld stage %8zu B: %d chunk(s) of %lld rows, A %s, %lld x %lld\n",
         (long long)rows, (long long)cols, stage_bytes, nchunks, (long long)chunk,
         l.transpose ? "= W" : "= W^T", (long long)l.m, (long long)l.n);
  free(w);
  free(ref);
  free(a);
  free(hits);
  free(s);
  free(sr);
  free(superb);
}

int main(void) {
  static const int64_t shapes[][2] = {{300, 700}, {700, 300}, {333, 333}, {1, 50},
                                      {50, 1},    {2, 3},     {3, 2},     {1024, 257}};
  static const size_t stages[] = {(size_t)64 << 20, 4000, 4};
  for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++)
    for (size_t u = 0; u < sizeof stages / sizeof stages[0]; u++)
      check_(shapes[t][0], shapes[t][1], stages[u]);
  CHECK_EQ_INT(gpu_svd_chunk_rows(10, 1000, 4), 1);        /* a row wider than the buffer */
  CHECK_EQ_INT(gpu_svd_chunk_rows(10, 4, 1 << 20), 10);    /* never more than the rows */
  CHECK_EQ_INT(gpu_svd_chunk_rows(700, 300, 4000), 3);     /* 1200-byte rows */
  return test_done();
}
