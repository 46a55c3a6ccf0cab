/* How gpu_svdvals (cuda/svd.cu) lays a row-major rows x cols matrix W out for cuSOLVER's gesvd,
 * which needs a column-major m x n matrix with m >= n. Shared by the CUDA kernel and a CPU
 * test (unit.gpu_svd_layout runs the same layout through LAPACK's dgesvd), so the index
 * arithmetic is checked on machines without a GPU too.
 *   cols >= rows: A = W^T (m = cols, n = rows, lda = cols): W's element order as it is;
 *   rows >  cols: A = W   (m = rows, n = cols, lda = rows): W transposed.
 * W goes up in chunks of whole rows; element k of a chunk that starts at row r0 is
 * W(r0 + k / cols, k % cols). */
#ifndef SPECTRAIN_KERNELS_GPU_SVD_LAYOUT_H
#define SPECTRAIN_KERNELS_GPU_SVD_LAYOUT_H
#include <stddef.h>
#include <stdint.h>

#ifdef __CUDACC__
#define GPU_SVD_HD_ __host__ __device__
#else
#define GPU_SVD_HD_
#endif

typedef struct {
  int64_t m, n;  /* A is m x n, column-major, lda = m, m >= n = min(rows, cols) */
  int transpose; /* 1: A = W (rows > cols); 0: A = W^T */
} gpu_svd_layout;

static inline gpu_svd_layout gpu_svd_layout_of(int64_t rows, int64_t cols) {
  gpu_svd_layout l;
  l.transpose = rows > cols;
  l.m = l.transpose ? rows : cols;
  l.n = l.transpose ? cols : rows;
  return l;
}

/* Index into A of element k of the chunk starting at row r0 (W has `rows` rows, `cols` cols). */
static inline GPU_SVD_HD_ size_t gpu_svd_dst_index(size_t k, int64_t r0, int64_t rows, int64_t cols,
                                                  int transpose) {
  size_t i = k / (size_t)cols, j = k % (size_t)cols; /* W(r0 + i, j) */
  return transpose ? j * (size_t)rows + (size_t)r0 + i  /* A = W, column-major rows x cols */
                   : ((size_t)r0 + i) * (size_t)cols + j; /* A = W^T: W's layout */
}

/* Rows of W per upload chunk for a staging buffer of stage_bytes (at least 1, at most rows). */
static inline int64_t gpu_svd_chunk_rows(int64_t rows, int64_t cols, size_t stage_bytes) {
  int64_t c = (int64_t)(stage_bytes / sizeof(float) / (size_t)cols);
  if (c < 1) c = 1;
  if (c > rows) c = rows;
  return c;
}

#endif
