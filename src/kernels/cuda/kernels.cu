// The CUDA kernel table (kernels/kernels.h): cuBLAS for every matrix product, CUDA kernels for
// the rest, all queued in order on the compute stream of gpu_select_device. kernels/cpu.c
// is the reference; tests/unit/test_kernel_backends.c compares the two kernel by kernel.
//
// Launches: elementwise kernels use grid-stride loops over size_t indices; row kernels use
// one block per row (grid-stride over rows). Grids are capped, so any size works, and size
// 0 launches nothing. The one-call accumulators (cross-entropy, sum of squares) are static:
// the table is driven from one host thread, like the stream it runs on.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_check.h"
extern "C" {
#include "kernels/gpu.h"
#include "kernels/kernels.h"
}
#include "kernels/adamw_elem.h"

namespace {

constexpr int THREADS = 256;         // elementwise and column kernels
constexpr int ROW_THREADS = 256;     // one block per row (norms, softmax, cross-entropy)
constexpr unsigned MAX_BLOCKS = 65535u * 4;  // beyond this the loops stride
constexpr unsigned FULL_MASK = 0xffffffffu;
constexpr int SUMSQ_BLOCKS = 1024;   // fixed, so that the sum's order is deterministic

cudaStream_t st_() { return cuda_compute_stream_(); }

unsigned blocks_for_(size_t n, int threads) {
  size_t b = (n + (size_t)threads - 1) / (size_t)threads;
  return (unsigned)(b < MAX_BLOCKS ? b : MAX_BLOCKS);
}
unsigned row_blocks_(size_t rows) { return (unsigned)(rows < MAX_BLOCKS ? rows : MAX_BLOCKS); }

#define GRID_STRIDE(i, n)                                                          \
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);          \
       i += (size_t)gridDim.x * blockDim.x)

// ---- block reductions (blockDim.x a multiple of 32, every thread calls them) ----------
template <typename F>
__device__ __forceinline__ F warp_sum_(F v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
  return v;
}

template <typename F>
__device__ F block_sum_(F v) {
  __shared__ F sh[33];
  int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  v = warp_sum_(v);
  __syncthreads();  // earlier readers of sh (a previous call) are done
  if (lane == 0) sh[wid] = v;
  __syncthreads();
  if (wid == 0) {
    F u = lane < nw ? sh[lane] : F(0);
    u = warp_sum_(u);
    if (lane == 0) sh[32] = u;
  }
  __syncthreads();
  return sh[32];
}

// Running (max, sum of exp(x - max)) pairs: logsumexp in one pass over the data.
struct msum {
  float m, s;
};
__device__ __forceinline__ msum msum_combine_(msum a, msum b) {
  if (a.m == -INFINITY) return b;
  if (b.m == -INFINITY) return a;
  float m = fmaxf(a.m, b.m);
  return msum{m, a.s * expf(a.m - m) + b.s * expf(b.m - m)};
}
__device__ __forceinline__ msum warp_msum_(msum t) {
  for (int o = 16; o > 0; o >>= 1) {
    msum u{__shfl_xor_sync(FULL_MASK, t.m, o), __shfl_xor_sync(FULL_MASK, t.s, o)};
    t = msum_combine_(t, u);
  }
  return t;
}
// logsumexp of row[lo..hi) over the block (hi > lo); every thread gets the result.
__device__ float block_lse_(const float *row, int lo, int hi) {
  __shared__ float shm[32], shs[32], res;
  msum t{-INFINITY, 0.0f};
  for (int j = lo + (int)threadIdx.x; j < hi; j += blockDim.x) {
    float x = row[j];
    if (x > t.m) {
      t.s = t.s * expf(t.m - x) + 1.0f;  // t.m = -inf: 0 * 0 + 1
      t.m = x;
    } else if (t.m > -INFINITY) {
      t.s += expf(x - t.m);
    }
  }
  t = warp_msum_(t);
  int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  __syncthreads();
  if (lane == 0) {
    shm[wid] = t.m;
    shs[wid] = t.s;
  }
  __syncthreads();
  if (wid == 0) {
    msum u = lane < nw ? msum{shm[lane], shs[lane]} : msum{-INFINITY, 0.0f};
    u = warp_msum_(u);
    if (lane == 0) res = u.m + logf(u.s);
  }
  __syncthreads();
  return res;
}

// ---- memory -------------------------------------------------------------------------
struct accum {
  double loss;              // cross-entropy loss sum of one call
  unsigned long long count; // counted rows of one call
  double total;             // sum of squares of one call
  double partial[SUMSQ_BLOCKS];
};
accum *acc_dev_ = nullptr;  // device
accum *acc_host_ = nullptr; // pinned

// Out of memory is not sticky and is reported as NULL; any other failure (e.g. an earlier
// kernel's fault surfacing here) is fatal, not disguised as out of memory.
void *alloc_(size_t bytes) {
  void *p = nullptr;
  size_t n = bytes ? bytes : 1;
  cudaError_t e = cudaMallocAsync(&p, n, st_());
  if (e == cudaErrorMemoryAllocation) {
    // blocks freed on other streams become reusable once the device has caught up: retry
    cudaGetLastError();
    CUDA_CHECK(cudaDeviceSynchronize());
    e = cudaMallocAsync(&p, n, st_());
  }
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    return nullptr;
  }
  CUDA_CHECK(e);
  CUDA_CHECK(cudaMemsetAsync(p, 0, n, st_()));
  return p;
}
void free_(void *p) {
  if (p) CUDA_CHECK(cudaFreeAsync(p, st_()));
}
void zero_(float *x, size_t n) {
  if (n) CUDA_CHECK(cudaMemsetAsync(x, 0, n * sizeof(float), st_()));
}
void copy_(float *dst, const float *src, size_t n) {
  if (!n || dst == src) return;
  size_t bytes = n * sizeof(float);
  const char *d = (const char *)dst, *s = (const char *)src;
  if (d + bytes <= s || s + bytes <= d) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, st_()));
    return;
  }
  // overlapping ranges (memmove): through a temporary
  void *tmp = nullptr;
  CUDA_CHECK(cudaMallocAsync(&tmp, bytes, st_()));
  CUDA_CHECK(cudaMemcpyAsync(tmp, src, bytes, cudaMemcpyDeviceToDevice, st_()));
  CUDA_CHECK(cudaMemcpyAsync(dst, tmp, bytes, cudaMemcpyDeviceToDevice, st_()));
  CUDA_CHECK(cudaFreeAsync(tmp, st_()));
}
// Pageable sources are staged by the driver before cudaMemcpyAsync returns, so they may be
// reused at once; pinned or managed sources are read by the DMA engine later: wait for it.
void upload_(void *dst, const void *src, size_t bytes) {
  if (!bytes) return;
  cudaPointerAttributes at;
  bool staged = false;
  if (cudaPointerGetAttributes(&at, src) == cudaSuccess)
    staged = at.type == cudaMemoryTypeUnregistered;
  else
    cudaGetLastError();
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, st_()));
  if (!staged) CUDA_CHECK(cudaStreamSynchronize(st_()));
}
void download_(void *dst, const void *src, size_t bytes) {
  if (!bytes) return;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, st_()));
  CUDA_CHECK(cudaStreamSynchronize(st_()));
}
void *host_alloc_(size_t bytes) {
  void *p = nullptr;
  size_t n = bytes ? bytes : 1;
  cudaError_t e = cudaHostAlloc(&p, n, cudaHostAllocDefault);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    return nullptr;
  }
  CUDA_CHECK(e);
  memset(p, 0, n);
  return p;
}
void host_free_(void *p) {
  if (p) CUDA_CHECK(cudaFreeHost(p));
}
void sync_() { CUDA_CHECK(cudaStreamSynchronize(st_())); }

// ---- matrix products ------------------------------------------------------------------
cublasOperation_t op_(int t) { return t ? CUBLAS_OP_T : CUBLAS_OP_N; }
cublasComputeType_t compute_type_(bool bf16) {
  return bf16 ? CUBLAS_COMPUTE_32F_FAST_16BF : CUBLAS_COMPUTE_32F;
}

__global__ void k_scale_matrix_(float *C, int M, int N, int ldc, float beta) {
  GRID_STRIDE(i, (size_t)M * N) {
    size_t r = i / (size_t)N, c = i - r * (size_t)N;
    C[r * (size_t)ldc + c] *= beta;
  }
}

// Row-major C (M,N) = alpha op(A) op(B) + beta C is column-major C^T = op(B)^T op(A)^T:
// the same call with the operands (and their transposes, shapes and strides) swapped.
template <bool BF16>
void gemm_(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
           const float *B, int ldb, float beta, float *C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {  // C = beta C (as the CPU table does)
    k_scale_matrix_<<<blocks_for_((size_t)M * N, THREADS), THREADS, 0, st_()>>>(C, M, N, ldc,
                                                                                  beta);
    CUDA_LAUNCH_CHECK("k_scale_matrix_");
    return;
  }
  CUBLAS_CHECK(cublasGemmEx(cuda_cublas_(), op_(trans_b), op_(trans_a), N, M, K, &alpha, B,
                            CUDA_R_32F, ldb, A, CUDA_R_32F, lda, &beta, C, CUDA_R_32F, ldc,
                            compute_type_(BF16), CUBLAS_GEMM_DEFAULT));
}

// Batched row-major products over device arrays of pointers (same mapping as gemm_).
void bgemm_(bool bf16, int trans_a, int trans_b, int M, int N, int K, float alpha, float **A,
            int lda, float **B, int ldb, float beta, float **C, int ldc, int batch) {
  if (batch <= 0 || M <= 0 || N <= 0 || K <= 0) return;
  CUBLAS_CHECK(cublasGemmBatchedEx(cuda_cublas_(), op_(trans_b), op_(trans_a), N, M, K, &alpha,
                                   (const void *const *)B, CUDA_R_32F, ldb,
                                   (const void *const *)A, CUDA_R_32F, lda, &beta,
                                   (void *const *)C, CUDA_R_32F, ldc, batch,
                                   compute_type_(bf16), CUBLAS_GEMM_DEFAULT));
}

// ---- embedding ----------------------------------------------------------------------
__global__ void k_embed_fwd_(float *out, const int32_t *tok, const float *emb, size_t N,
                             size_t C) {
  GRID_STRIDE(i, N * C) {
    size_t n = i / C, c = i - n * C;
    out[i] = emb[(size_t)tok[n] * C + c];
  }
}
__global__ void k_embed_bwd_(float *demb, const float *dout, const int32_t *tok, size_t N,
                             size_t C) {
  GRID_STRIDE(i, N * C) {
    size_t n = i / C, c = i - n * C;
    atomicAdd(&demb[(size_t)tok[n] * C + c], dout[i]);
  }
}
void embed_forward_(float *out, const int32_t *tokens, const float *emb, int N, int C) {
  if (N <= 0 || C <= 0) return;
  size_t n = (size_t)N * C;
  k_embed_fwd_<<<blocks_for_(n, THREADS), THREADS, 0, st_()>>>(out, tokens, emb, N, C);
  CUDA_LAUNCH_CHECK("k_embed_fwd_");
}
void embed_backward_(float *demb, const float *dout, const int32_t *tokens, int N, int C) {
  if (N <= 0 || C <= 0) return;
  size_t n = (size_t)N * C;
  k_embed_bwd_<<<blocks_for_(n, THREADS), THREADS, 0, st_()>>>(demb, dout, tokens, N, C);
  CUDA_LAUNCH_CHECK("k_embed_bwd_");
}

// ---- RMSNorm, bias (column sums) ----------------------------------------------------------
__global__ void k_rmsnorm_fwd_(float *out, float *rstd, const float *x, const float *w, int N,
                               int C, float eps) {
  for (int n = blockIdx.x; n < N; n += gridDim.x) {
    const float *xr = x + (size_t)n * C;
    float *o = out + (size_t)n * C;
    float ss = 0;
    for (int c = threadIdx.x; c < C; c += blockDim.x) ss += xr[c] * xr[c];
    ss = block_sum_(ss);
    float r = (float)(1.0 / sqrt((double)ss / C + (double)eps));
    if (threadIdx.x == 0) rstd[n] = r;
    for (int c = threadIdx.x; c < C; c += blockDim.x) o[c] = w[c] * (xr[c] * r);
  }
}
// dx = r w g - (r^3/C) x sum(w g x); dx may alias dout: each thread reads g[c] before it
// writes dx[c], and the row sum is complete (block_sum_ synchronises) before any write.
__global__ void k_rmsnorm_bwd_dx_(float *dx, const float *dout, const float *x, const float *w,
                                  const float *rstd, int N, int C, int accumulate) {
  for (int n = blockIdx.x; n < N; n += gridDim.x) {
    const float *g = dout + (size_t)n * C, *xr = x + (size_t)n * C;
    float *d = dx + (size_t)n * C;
    float s = 0;
    for (int c = threadIdx.x; c < C; c += blockDim.x) s += w[c] * g[c] * xr[c];
    s = block_sum_(s);
    float r = rstd[n];
    float k = (float)((double)r * r * r * s / C);
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
      float v = r * w[c] * g[c] - k * xr[c];
      d[c] = accumulate ? d[c] + v : v;
    }
  }
}
// dst[c] += sum_n dy[n,c] (* x[n,c] * rstd[n] when x): columns over threads, rows in chunks
// over blockIdx.y, one atomic per (column, chunk).
constexpr int COLSUM_ROWS = 64;
__global__ void k_colsum_(float *dst, const float *dy, const float *x, const float *rstd,
                          int N, int C) {
  for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += gridDim.x * blockDim.x) {
    for (int chunk = blockIdx.y; (size_t)chunk * COLSUM_ROWS < (size_t)N; chunk += gridDim.y) {
      int n0 = chunk * COLSUM_ROWS, n1 = min(N, n0 + COLSUM_ROWS);
      float s = 0;
      for (int n = n0; n < n1; n++) {
        size_t i = (size_t)n * C + c;
        s += x ? dy[i] * x[i] * rstd[n] : dy[i];
      }
      atomicAdd(&dst[c], s);
    }
  }
}
void colsum_(float *dst, const float *dy, const float *x, const float *rstd, int N, int C) {
  if (N <= 0 || C <= 0) return;
  unsigned gx = blocks_for_((size_t)C, THREADS);
  size_t chunks = ((size_t)N + COLSUM_ROWS - 1) / COLSUM_ROWS;
  unsigned gy = (unsigned)(chunks < 65535 ? chunks : 65535);
  k_colsum_<<<dim3(gx, gy), THREADS, 0, st_()>>>(dst, dy, x, rstd, N, C);
  CUDA_LAUNCH_CHECK("k_colsum_");
}
void rmsnorm_forward_(float *out, float *rstd, const float *x, const float *w, int N, int C,
                      float eps) {
  if (N <= 0 || C <= 0) return;
  k_rmsnorm_fwd_<<<row_blocks_(N), ROW_THREADS, 0, st_()>>>(out, rstd, x, w, N, C, eps);
  CUDA_LAUNCH_CHECK("k_rmsnorm_fwd_");
}
void rmsnorm_backward_(float *dx, float *dw, const float *dout, const float *x, const float *w,
                       const float *rstd, int N, int C, int accumulate) {
  if (N <= 0 || C <= 0) return;
  // dw first: dx may alias dout, and dw reads dout
  if (dw) colsum_(dw, dout, x, rstd, N, C);
  if (dx) {
    k_rmsnorm_bwd_dx_<<<row_blocks_(N), ROW_THREADS, 0, st_()>>>(dx, dout, x, w, rstd, N, C,
                                                                   accumulate);
    CUDA_LAUNCH_CHECK("k_rmsnorm_bwd_dx_");
  }
}

__global__ void k_bias_fwd_(float *y, const float *b, size_t N, size_t M) {
  GRID_STRIDE(i, N * M) y[i] += b[i % M];
}
void bias_forward_(float *y, const float *b, int N, int M) {
  if (N <= 0 || M <= 0) return;
  k_bias_fwd_<<<blocks_for_((size_t)N * M, THREADS), THREADS, 0, st_()>>>(y, b, N, M);
  CUDA_LAUNCH_CHECK("k_bias_fwd_");
}
void bias_backward_(float *db, const float *dy, int N, int M) {
  colsum_(db, dy, nullptr, nullptr, N, M);
}

// ---- RoPE -----------------------------------------------------------------------------
// One thread per rotated pair (n, h, i), i < D/2: pairs touch disjoint elements.
__global__ void k_rope_(float *x, const float *cos_t, const float *sin_t, size_t pairs, int T,
                        int nh, int D, float sign) {
  size_t half = (size_t)(D / 2);
  GRID_STRIDE(p, pairs) {
    size_t i = p % half, rest = p / half;
    size_t h = rest % (size_t)nh, n = rest / (size_t)nh, t = n % (size_t)T;
    float *v = x + (n * nh + h) * (size_t)D;
    float c = cos_t[t * half + i], s = sign * sin_t[t * half + i];
    float a = v[i], b = v[i + half];
    v[i] = a * c - b * s;
    v[i + half] = b * c + a * s;
  }
}
void rope_(float *x, const float *cos_t, const float *sin_t, int B, int T, int nh, int D,
           float sign) {
  if (B <= 0 || T <= 0 || nh <= 0 || D < 2) return;
  size_t pairs = (size_t)B * T * nh * (size_t)(D / 2);
  k_rope_<<<blocks_for_(pairs, THREADS), THREADS, 0, st_()>>>(x, cos_t, sin_t, pairs, T, nh, D,
                                                                sign);
  CUDA_LAUNCH_CHECK("k_rope_");
}
void rope_forward_(float *x, const float *c, const float *s, int B, int T, int nh, int D) {
  rope_(x, c, s, B, T, nh, D, 1.0f);
}
void rope_backward_(float *dx, const float *c, const float *s, int B, int T, int nh, int D) {
  rope_(dx, c, s, B, T, nh, D, -1.0f);
}

// ---- attention ------------------------------------------------------------------------
// Query rows are processed in blocks of R rows [t0, t0 + Rb) (Rb = R but for the last).
// A block sees keys [klo, t0 + Rb): klo = t0 - window + 1 (>= 0) with a window, else 0, so
// L = t0 + Rb - klo keys. For every (sequence b, q head h) the block's scores S = scale Q K^T
// (Rb, L) live in scratch; the batch index i orders (g, b, kh) with h = kh * rep + g, so that
// a run of B*KV consecutive entries (one g) touches every kv head once: dK and dV, summed
// over the rep q heads of a kv head, are accumulated one g at a time without write races.
struct attn_geom {
  int B, T, H, KV, D, window;
  int t0, klo, Rb, L;
};
__device__ __forceinline__ void attn_bh_(const attn_geom &g, int i, int *b, int *h) {
  int bkv = g.B * g.KV, gi = i / bkv, rem = i - gi * bkv;
  int kh = rem % g.KV;
  *b = rem / g.KV;
  *h = kh * (g.H / g.KV) + gi;
}
// Ten arrays of B*H pointers at the start of the scratch.
struct attn_ptrs {
  float **q, **k, **v, **out, **dout, **P, **dP, **dq, **dk, **dv;
};
constexpr int ATTN_NPTR = 10;

__global__ void k_attn_ptrs_(attn_ptrs a, attn_geom g, const float *q, const float *k,
                             const float *v, const float *out, const float *dout, float *P,
                             float *dP, float *dq, float *dk, float *dv) {
  int BH = g.B * g.H;
  size_t HD = (size_t)g.H * g.D, KVD = (size_t)g.KV * g.D;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < BH; i += gridDim.x * blockDim.x) {
    int b, h;
    attn_bh_(g, i, &b, &h);
    int kh = h / (g.H / g.KV);
    size_t qo = ((size_t)b * g.T + g.t0) * HD + (size_t)h * g.D;
    size_t ko = ((size_t)b * g.T + g.klo) * KVD + (size_t)kh * g.D;
    size_t po = (size_t)i * g.Rb * g.L;
    a.q[i] = (float *)q + qo;
    a.k[i] = (float *)k + ko;
    a.v[i] = (float *)v + ko;
    a.out[i] = out ? (float *)out + qo : nullptr;
    a.dout[i] = dout ? (float *)dout + qo : nullptr;
    a.P[i] = P + po;
    a.dP[i] = dP ? dP + po : nullptr;
    a.dq[i] = dq ? dq + qo : nullptr;
    a.dk[i] = dk ? dk + ko : nullptr;
    a.dv[i] = dv ? dv + ko : nullptr;
  }
}

// Visible keys of block row r, as indices into the block's L keys: [lo, hi).
__device__ __forceinline__ void attn_visible_(const attn_geom &g, int r, int *lo, int *hi) {
  int t = g.t0 + r;
  int jlo = g.window > 0 ? max(0, t - g.window + 1) : 0;
  *lo = jlo - g.klo;
  *hi = t - g.klo + 1;
}

// Forward: S row -> P row = exp(S - lse) on visible keys, exactly 0 elsewhere; lse stored.
__global__ void k_attn_softmax_fwd_(float *P, float *lse, attn_geom g) {
  size_t rows = (size_t)g.B * g.H * g.Rb;
  for (size_t row = blockIdx.x; row < rows; row += gridDim.x) {
    int i = (int)(row / (size_t)g.Rb), r = (int)(row - (size_t)i * g.Rb);
    float *p = P + row * (size_t)g.L;
    int lo, hi;
    attn_visible_(g, r, &lo, &hi);
    float l = block_lse_(p, lo, hi);
    for (int j = threadIdx.x; j < g.L; j += blockDim.x)
      p[j] = (j >= lo && j < hi) ? expf(p[j] - l) : 0.0f;
    if (threadIdx.x == 0) {
      int b, h;
      attn_bh_(g, i, &b, &h);
      lse[((size_t)b * g.H + h) * g.T + g.t0 + r] = l;
    }
  }
}

// Backward: P recomputed from S and lse (as above); Dr[row] = sum_d dout * out.
__global__ void k_attn_softmax_bwd_(float *P, float *Dr, const float *lse, const float *dout,
                                    const float *out, attn_geom g) {
  size_t rows = (size_t)g.B * g.H * g.Rb;
  size_t HD = (size_t)g.H * g.D;
  for (size_t row = blockIdx.x; row < rows; row += gridDim.x) {
    int i = (int)(row / (size_t)g.Rb), r = (int)(row - (size_t)i * g.Rb);
    int b, h;
    attn_bh_(g, i, &b, &h);
    int t = g.t0 + r;
    float l = lse[((size_t)b * g.H + h) * g.T + t];
    float *p = P + row * (size_t)g.L;
    int lo, hi;
    attn_visible_(g, r, &lo, &hi);
    for (int j = threadIdx.x; j < g.L; j += blockDim.x)
      p[j] = (j >= lo && j < hi) ? expf(p[j] - l) : 0.0f;
    size_t o = ((size_t)b * g.T + t) * HD + (size_t)h * g.D;
    float s = 0;
    for (int d = threadIdx.x; d < g.D; d += blockDim.x) s += dout[o + d] * out[o + d];
    s = block_sum_(s);
    if (threadIdx.x == 0) Dr[row] = s;
  }
}

// dS = P * (dP - Dr[row]) in place of dP; masked entries have P = 0, so dS = 0.
__global__ void k_attn_ds_(float *dP, const float *P, const float *Dr, size_t rows, int L) {
  GRID_STRIDE(e, rows * (size_t)L) dP[e] = P[e] * (dP[e] - Dr[e / (size_t)L]);
}

constexpr size_t ATTN_SCRATCH_BYTES = (size_t)256 << 20;  // the two (B*H, R, T) score blocks

// Query rows per block: two (B*H, R, T) float blocks within ATTN_SCRATCH_BYTES, a multiple
// of 64 when that large, at least 1, at most T. SPECTRAIN_ATTN_BLOCK_ROWS overrides it
// (tests use it to run several blocks on small shapes).
int attn_rows_(int B, int T, int H) {
  const char *env = getenv("SPECTRAIN_ATTN_BLOCK_ROWS");
  if (env && atoi(env) > 0) return atoi(env) < T ? atoi(env) : T;
  size_t per_row = 2 * (size_t)B * H * T * sizeof(float);
  size_t R = per_row ? ATTN_SCRATCH_BYTES / per_row : (size_t)T;
  if (R >= 64) R -= R % 64;
  if (R < 1) R = 1;
  if (R > (size_t)T) R = (size_t)T;
  return (int)R;
}
size_t round64_(size_t n) { return (n + 63) / 64 * 64; }  // floats: 256-byte alignment

struct attn_layout {
  int R;
  size_t off_dr, off_p, off_dp, total;  // in floats
};
attn_layout attn_layout_(int B, int T, int H) {
  attn_layout l;
  size_t BH = (size_t)B * H;
  l.R = attn_rows_(B, T, H);
  size_t ptr_floats = round64_(ATTN_NPTR * BH * sizeof(float *) / sizeof(float));
  size_t blk = BH * (size_t)l.R * (size_t)T;
  l.off_dr = ptr_floats;
  l.off_p = l.off_dr + round64_(BH * (size_t)l.R);
  l.off_dp = l.off_p + round64_(blk);
  l.total = l.off_dp + round64_(blk) + 64;  // + 64: slack to align the caller's scratch
  return l;
}
// The layout starts at the first 256-byte boundary of the scratch (alloc's memory is
// aligned already; a caller may pass a sub-range); the layout's slack covers the shift.
float *attn_base_(float *scratch) {
  uintptr_t p = (uintptr_t)scratch;
  return (float *)((p + 255) & ~(uintptr_t)255);
}
attn_ptrs attn_ptrs_in_(float *base_floats, int BH) {
  float **base = (float **)base_floats;
  attn_ptrs a;
  float ***f[ATTN_NPTR] = {&a.q, &a.k, &a.v, &a.out, &a.dout, &a.P, &a.dP, &a.dq, &a.dk, &a.dv};
  for (int j = 0; j < ATTN_NPTR; j++) *f[j] = base + (size_t)j * BH;
  return a;
}
attn_ptrs attn_ptrs_off_(attn_ptrs a, size_t off) {
  attn_ptrs b;
  float ***f[ATTN_NPTR] = {&a.q, &a.k, &a.v, &a.out, &a.dout, &a.P, &a.dP, &a.dq, &a.dk, &a.dv};
  float ***t[ATTN_NPTR] = {&b.q, &b.k, &b.v, &b.out, &b.dout, &b.P, &b.dP, &b.dq, &b.dk, &b.dv};
  for (int j = 0; j < ATTN_NPTR; j++) *t[j] = *f[j] + off;
  return b;
}

size_t attention_scratch_floats_(int B, int T, int H, int KV, int D) {
  if (B <= 0 || T <= 0 || H <= 0) return 0;
  return attn_layout_(B, T, H).total;
}

attn_geom attn_block_(int B, int T, int H, int KV, int D, int window, int t0, int R) {
  attn_geom g{B, T, H, KV, D, window, t0, 0, 0, 0};
  g.Rb = R < T - t0 ? R : T - t0;
  g.klo = window > 0 && t0 - window + 1 > 0 ? t0 - window + 1 : 0;
  g.L = t0 + g.Rb - g.klo;
  return g;
}

template <bool BF16>
void attention_forward_(float *out, float *lse, float *scratch, const float *q, const float *k,
                        const float *v, int B, int T, int H, int KV, int D, int window) {
  if (B <= 0 || T <= 0 || H <= 0 || KV <= 0 || D <= 0) return;
  attn_layout ly = attn_layout_(B, T, H);
  int BH = B * H, HD = H * D, KVD = KV * D;
  float scale = 1.0f / sqrtf((float)D);
  scratch = attn_base_(scratch);
  attn_ptrs a = attn_ptrs_in_(scratch, BH);
  float *P = scratch + ly.off_p;
  for (int t0 = 0; t0 < T; t0 += ly.R) {
    attn_geom g = attn_block_(B, T, H, KV, D, window, t0, ly.R);
    k_attn_ptrs_<<<blocks_for_((size_t)BH, THREADS), THREADS, 0, st_()>>>(
        a, g, q, k, v, out, nullptr, P, nullptr, nullptr, nullptr, nullptr);
    CUDA_LAUNCH_CHECK("k_attn_ptrs_");
    // S (Rb, L) = scale Q (Rb, D) K^T
    bgemm_(BF16, 0, 1, g.Rb, g.L, D, scale, a.q, HD, a.k, KVD, 0.0f, a.P, g.L, BH);
    size_t rows = (size_t)BH * g.Rb;
    k_attn_softmax_fwd_<<<row_blocks_(rows), 128, 0, st_()>>>(P, lse, g);
    CUDA_LAUNCH_CHECK("k_attn_softmax_fwd_");
    // O (Rb, D) = P (Rb, L) V (L, D)
    bgemm_(BF16, 0, 0, g.Rb, D, g.L, 1.0f, a.P, g.L, a.v, KVD, 0.0f, a.out, HD, BH);
  }
}

template <bool BF16>
void attention_backward_(float *dq, float *dk, float *dv, float *scratch, const float *dout,
                         const float *out, const float *lse, const float *q, const float *k,
                         const float *v, int B, int T, int H, int KV, int D, int window) {
  if (B <= 0 || T <= 0 || H <= 0 || KV <= 0 || D <= 0) return;
  size_t kv_floats = (size_t)B * T * KV * D;
  zero_(dk, kv_floats);
  zero_(dv, kv_floats);
  attn_layout ly = attn_layout_(B, T, H);
  int BH = B * H, HD = H * D, KVD = KV * D, BKV = B * KV, rep = H / KV;
  float scale = 1.0f / sqrtf((float)D);
  scratch = attn_base_(scratch);
  attn_ptrs a = attn_ptrs_in_(scratch, BH);
  float *P = scratch + ly.off_p, *dP = scratch + ly.off_dp, *Dr = scratch + ly.off_dr;
  for (int t0 = 0; t0 < T; t0 += ly.R) {
    attn_geom g = attn_block_(B, T, H, KV, D, window, t0, ly.R);
    k_attn_ptrs_<<<blocks_for_((size_t)BH, THREADS), THREADS, 0, st_()>>>(
        a, g, q, k, v, out, dout, P, dP, dq, dk, dv);
    CUDA_LAUNCH_CHECK("k_attn_ptrs_");
    size_t rows = (size_t)BH * g.Rb;
    // P = exp(scale Q K^T - lse), Dr = rowsum(dO * O)
    bgemm_(BF16, 0, 1, g.Rb, g.L, D, scale, a.q, HD, a.k, KVD, 0.0f, a.P, g.L, BH);
    k_attn_softmax_bwd_<<<row_blocks_(rows), 128, 0, st_()>>>(P, Dr, lse, dout, out, g);
    CUDA_LAUNCH_CHECK("k_attn_softmax_bwd_");
    // dP (Rb, L) = dO (Rb, D) V^T; dS = P (dP - Dr) in place
    bgemm_(BF16, 0, 1, g.Rb, g.L, D, 1.0f, a.dout, HD, a.v, KVD, 0.0f, a.dP, g.L, BH);
    k_attn_ds_<<<blocks_for_(rows * g.L, THREADS), THREADS, 0, st_()>>>(dP, P, Dr, rows, g.L);
    CUDA_LAUNCH_CHECK("k_attn_ds_");
    // dQ (Rb, D) = scale dS K: every (row block, head) once, written
    bgemm_(BF16, 0, 0, g.Rb, D, g.L, scale, a.dP, g.L, a.k, KVD, 0.0f, a.dq, HD, BH);
    // dV (L, D) += P^T dO, dK (L, D) += scale dS^T Q: one q head per kv head at a time
    for (int gi = 0; gi < rep; gi++) {
      attn_ptrs s = attn_ptrs_off_(a, (size_t)gi * BKV);
      bgemm_(BF16, 1, 0, g.L, D, g.Rb, 1.0f, s.P, g.L, s.dout, HD, 1.0f, s.dv, KVD, BKV);
      bgemm_(BF16, 1, 0, g.L, D, g.Rb, scale, s.dP, g.L, s.q, HD, 1.0f, s.dk, KVD, BKV);
    }
  }
}

// ---- SwiGLU, elementwise --------------------------------------------------------------
__global__ void k_swiglu_fwd_(float *h, const float *gate, const float *up, size_t n) {
  GRID_STRIDE(i, n) {
    float g = gate[i];
    h[i] = g / (1.0f + expf(-g)) * up[i];
  }
}
// dgate may alias gate, dup may alias up: each element is read before it is written.
__global__ void k_swiglu_bwd_(float *dgate, float *dup, const float *dh, const float *gate,
                              const float *up, size_t n) {
  GRID_STRIDE(i, n) {
    float g = gate[i], u = up[i], d = dh[i];
    float s = 1.0f / (1.0f + expf(-g));
    dgate[i] = d * u * s * (1.0f + g * (1.0f - s));
    dup[i] = d * g * s;
  }
}
void swiglu_forward_(float *h, const float *gate, const float *up, size_t n) {
  if (!n) return;
  k_swiglu_fwd_<<<blocks_for_(n, THREADS), THREADS, 0, st_()>>>(h, gate, up, n);
  CUDA_LAUNCH_CHECK("k_swiglu_fwd_");
}
void swiglu_backward_(float *dgate, float *dup, const float *dh, const float *gate,
                      const float *up, size_t n) {
  if (!n) return;
  k_swiglu_bwd_<<<blocks_for_(n, THREADS), THREADS, 0, st_()>>>(dgate, dup, dh, gate, up, n);
  CUDA_LAUNCH_CHECK("k_swiglu_bwd_");
}

__global__ void k_add_(float *y, const float *x, size_t n) { GRID_STRIDE(i, n) y[i] += x[i]; }
__global__ void k_scale_(float *x, float s, size_t n) { GRID_STRIDE(i, n) x[i] *= s; }
void add_(float *y, const float *x, size_t n) {
  if (!n) return;
  k_add_<<<blocks_for_(n, THREADS), THREADS, 0, st_()>>>(y, x, n);
  CUDA_LAUNCH_CHECK("k_add_");
}
void scale_(float *x, float s, size_t n) {
  if (!n) return;
  k_scale_<<<blocks_for_(n, THREADS), THREADS, 0, st_()>>>(x, s, n);
  CUDA_LAUNCH_CHECK("k_scale_");
}

// ---- cross-entropy --------------------------------------------------------------------
__global__ void k_ce_fwd_(float *lse, const float *logits, const int32_t *targets, int N, int V,
                          accum *acc) {
  for (int n = blockIdx.x; n < N; n += gridDim.x) {
    const float *row = logits + (size_t)n * V;
    float l = block_lse_(row, 0, V);
    if (threadIdx.x == 0) {
      lse[n] = l;
      if (targets && targets[n] != MODEL_IGNORE_INDEX) {
        atomicAdd(&acc->loss, (double)l - (double)row[targets[n]]);
        atomicAdd(&acc->count, 1ull);
      }
    }
  }
}
void cross_entropy_forward_(float *lse, const float *logits, const int32_t *targets, int N,
                            int V, double *loss_sum, int64_t *n_counted) {
  if (N <= 0 || V <= 0) return;
  CUDA_CHECK(cudaMemsetAsync(acc_dev_, 0, offsetof(accum, total), st_()));
  k_ce_fwd_<<<row_blocks_(N), ROW_THREADS, 0, st_()>>>(lse, logits, targets, N, V, acc_dev_);
  CUDA_LAUNCH_CHECK("k_ce_fwd_");
  CUDA_CHECK(cudaMemcpyAsync(acc_host_, acc_dev_, offsetof(accum, total),
                             cudaMemcpyDeviceToHost, st_()));
  CUDA_CHECK(cudaStreamSynchronize(st_()));
  if (loss_sum) *loss_sum += acc_host_->loss;
  if (n_counted) *n_counted += (int64_t)acc_host_->count;
}

// In place: logits -> scale (softmax - onehot); rows with an ignored target -> 0.
__global__ void k_ce_bwd_(float *logits, const float *lse, const int32_t *targets, size_t N,
                          size_t V, float scale) {
  GRID_STRIDE(i, N * V) {
    size_t n = i / V, j = i - n * V;
    int32_t t = targets[n];
    if (t == MODEL_IGNORE_INDEX) {
      logits[i] = 0.0f;
    } else {
      float p = scale * expf(logits[i] - lse[n]);
      logits[i] = j == (size_t)t ? p - scale : p;
    }
  }
}
void cross_entropy_backward_(float *logits, const float *lse, const int32_t *targets, int N,
                             int V, float scale) {
  if (N <= 0 || V <= 0) return;
  size_t n = (size_t)N * V;
  k_ce_bwd_<<<blocks_for_(n, THREADS), THREADS, 0, st_()>>>(logits, lse, targets, N, V, scale);
  CUDA_LAUNCH_CHECK("k_ce_bwd_");
}

// ---- sum of squares (deterministic: fixed grid, then one block over the partials) -------
__global__ void k_sumsq_(double *partial, const float *x, size_t n) {
  double s = 0;
  GRID_STRIDE(i, n) s += (double)x[i] * (double)x[i];
  s = block_sum_(s);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}
__global__ void k_sum_partials_(double *total, const double *partial, int nb) {
  double s = 0;
  for (int i = threadIdx.x; i < nb; i += blockDim.x) s += partial[i];
  s = block_sum_(s);
  if (threadIdx.x == 0) *total = s;
}
double sum_squares_(const float *x, size_t n) {
  if (!n) return 0.0;
  unsigned nb = blocks_for_(n, THREADS);
  if (nb > SUMSQ_BLOCKS) nb = SUMSQ_BLOCKS;
  k_sumsq_<<<nb, THREADS, 0, st_()>>>(acc_dev_->partial, x, n);
  CUDA_LAUNCH_CHECK("k_sumsq_");
  k_sum_partials_<<<1, THREADS, 0, st_()>>>(&acc_dev_->total, acc_dev_->partial, (int)nb);
  CUDA_LAUNCH_CHECK("k_sum_partials_");
  CUDA_CHECK(cudaMemcpyAsync(&acc_host_->total, &acc_dev_->total, sizeof(double),
                             cudaMemcpyDeviceToHost, st_()));
  CUDA_CHECK(cudaStreamSynchronize(st_()));
  return acc_host_->total;
}

// ---- AdamW (kernels/adamw.h: adamw_step) -----------------------------------------------------
__global__ void k_adamw_(float *param, const float *grad, float *m, float *v, size_t n,
                         adamw_coef c) {
  GRID_STRIDE(i, n) adamw_elem(&param[i], grad[i], &m[i], &v[i], c);
}
void adamw_(float *param, const float *grad, float *m, float *v, size_t n, float lr,
            float beta1, float beta2, float eps, float weight_decay, long step) {
  if (!n) return;
  adamw_coef c = adamw_coef_make(lr, beta1, beta2, eps, weight_decay, step);
  k_adamw_<<<blocks_for_(n, THREADS), THREADS, 0, st_()>>>(param, grad, m, v, n, c);
  CUDA_LAUNCH_CHECK("k_adamw_");
}

// ---- bf16 (kernels.h: the bf16 entries) ------------------------------------------------------
// bf16_t is the bit pattern of __nv_bfloat16; __float2bfloat16_rn rounds to nearest even and
// keeps NaN a NaN, as kernels/bf16.h does on the host.
__device__ __forceinline__ float bf_ld_(const bf16_t *p, size_t i) {
  return __bfloat162float(reinterpret_cast<const __nv_bfloat16 *>(p)[i]);
}
__device__ __forceinline__ void bf_st_(bf16_t *p, size_t i, float v) {
  reinterpret_cast<__nv_bfloat16 *>(p)[i] = __float2bfloat16_rn(v);
}
__global__ void k_to_bf16_(bf16_t *dst, const float *src, size_t n) {
  GRID_STRIDE(i, n) bf_st_(dst, i, src[i]);
}
__global__ void k_to_f32_(float *dst, const bf16_t *src, size_t n) {
  GRID_STRIDE(i, n) dst[i] = bf_ld_(src, i);
}
__global__ void k_add_bf16_(float *y, const bf16_t *x, size_t n) {
  GRID_STRIDE(i, n) y[i] += bf_ld_(x, i);
}
__global__ void k_embed_fwd_bf16_(float *out, const int32_t *tok, const bf16_t *emb, size_t N,
                                  size_t C) {
  GRID_STRIDE(i, N * C) {
    size_t n = i / C, c = i - n * C;
    out[i] = bf_ld_(emb, (size_t)tok[n] * C + c);
  }
}
__global__ void k_zero_bf16_matrix_(bf16_t *C, int M, int N, int ldc) {
  GRID_STRIDE(i, (size_t)M * N) {
    size_t r = i / (size_t)N, c = i - r * (size_t)N;
    C[r * (size_t)ldc + c] = 0;
  }
}
void to_bf16_(bf16_t *dst, const float *src, size_t n) {
  if (!n) return;
  k_to_bf16_<<<blocks_for_(n, THREADS), THREADS, 0, st_()>>>(dst, src, n);
  CUDA_LAUNCH_CHECK("k_to_bf16_");
}
void to_f32_(float *dst, const bf16_t *src, size_t n) {
  if (!n) return;
  k_to_f32_<<<blocks_for_(n, THREADS), THREADS, 0, st_()>>>(dst, src, n);
  CUDA_LAUNCH_CHECK("k_to_f32_");
}
void add_bf16_(float *y, const bf16_t *x, size_t n) {
  if (!n) return;
  k_add_bf16_<<<blocks_for_(n, THREADS), THREADS, 0, st_()>>>(y, x, n);
  CUDA_LAUNCH_CHECK("k_add_bf16_");
}
void embed_forward_bf16_(float *out, const int32_t *tokens, const bf16_t *emb, int N, int C) {
  if (N <= 0 || C <= 0) return;
  size_t n = (size_t)N * C;
  k_embed_fwd_bf16_<<<blocks_for_(n, THREADS), THREADS, 0, st_()>>>(out, tokens, emb, N, C);
  CUDA_LAUNCH_CHECK("k_embed_fwd_bf16_");
}
// bf16 operands, fp32 compute; C fp32 or bf16 (beta 0), row-major as gemm_.
void gemm_bf16_(int trans_a, int trans_b, int M, int N, int K, float alpha, const bf16_t *A,
                int lda, const bf16_t *B, int ldb, float beta, void *C, int c_bf16, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (c_bf16 && beta != 0.0f) {
    fprintf(stderr, "kernels (cuda): gemm_bf16 with a bf16 C needs beta 0 (found %g)\n",
            (double)beta);
    abort();
  }
  if (K <= 0) {
    if (c_bf16) {
      k_zero_bf16_matrix_<<<blocks_for_((size_t)M * N, THREADS), THREADS, 0, st_()>>>(
          (bf16_t *)C, M, N, ldc);
      CUDA_LAUNCH_CHECK("k_zero_bf16_matrix_");
    } else {
      k_scale_matrix_<<<blocks_for_((size_t)M * N, THREADS), THREADS, 0, st_()>>>(
          (float *)C, M, N, ldc, beta);
      CUDA_LAUNCH_CHECK("k_scale_matrix_");
    }
    return;
  }
  CUBLAS_CHECK(cublasGemmEx(cuda_cublas_(), op_(trans_b), op_(trans_a), N, M, K, &alpha, B,
                            CUDA_R_16BF, ldb, A, CUDA_R_16BF, lda, &beta, C,
                            c_bf16 ? CUDA_R_16BF : CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT));
}

// ---- the tables ---------------------------------------------------------------------------
template <bool BF16>
kernels make_table_() {
  kernels t;
  memset(&t, 0, sizeof t);
  t.name = "cuda";
  t.alloc = alloc_;
  t.free = free_;
  t.zero = zero_;
  t.copy = copy_;
  t.upload = upload_;
  t.download = download_;
  t.host_alloc = host_alloc_;
  t.host_free = host_free_;
  t.sync = sync_;
  t.gemm = gemm_<BF16>;
  t.embed_forward = embed_forward_;
  t.embed_backward = embed_backward_;
  t.rmsnorm_forward = rmsnorm_forward_;
  t.rmsnorm_backward = rmsnorm_backward_;
  t.bias_forward = bias_forward_;
  t.bias_backward = bias_backward_;
  t.rope_forward = rope_forward_;
  t.rope_backward = rope_backward_;
  t.attention_scratch_floats = attention_scratch_floats_;
  t.attention_forward = attention_forward_<BF16>;
  t.attention_backward = attention_backward_<BF16>;
  t.swiglu_forward = swiglu_forward_;
  t.swiglu_backward = swiglu_backward_;
  t.add = add_;
  t.cross_entropy_forward = cross_entropy_forward_;
  t.cross_entropy_backward = cross_entropy_backward_;
  t.sum_squares = sum_squares_;
  t.scale = scale_;
  t.adamw = adamw_;
  t.to_bf16 = to_bf16_;
  t.to_f32 = to_f32_;
  t.add_bf16 = add_bf16_;
  t.gemm_bf16 = gemm_bf16_;
  t.embed_forward_bf16 = embed_forward_bf16_;
  return t;
}
kernels table_fp32_, table_bf16_;
bool ready_ = false;

void why_(char *why, int why_len, const char *msg, const char *detail) {
  if (why && why_len > 0) snprintf(why, (size_t)why_len, "%s%s", msg, detail ? detail : "");
}

// Once per process: the pool keeps freed blocks (no release threshold), so the per-unit
// alloc/free of the trainer reuses memory instead of returning it to the driver.
bool init_(char *why, int why_len) {
  if (ready_) return true;
  int dev = gpu_current_device();
  if (dev < 0) {
    why_(why, why_len, "no CUDA device selected (gpu_select_device was not called or failed)",
         nullptr);
    return false;
  }
  int pools = 0;
  cudaError_t e = cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, dev);
  if (e != cudaSuccess || !pools) {
    cudaGetLastError();
    why_(why, why_len, "the CUDA device has no stream-ordered allocator (cudaMallocAsync)",
         nullptr);
    return false;
  }
  cudaMemPool_t pool;
  uint64_t threshold = UINT64_MAX;
  if ((e = cudaDeviceGetDefaultMemPool(&pool, dev)) != cudaSuccess ||
      (e = cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold)) !=
          cudaSuccess) {
    cudaGetLastError();
    why_(why, why_len, "CUDA memory pool setup failed: ", cudaGetErrorString(e));
    return false;
  }
  if ((e = cudaMalloc((void **)&acc_dev_, sizeof(accum))) != cudaSuccess) {
    cudaGetLastError();
    acc_dev_ = nullptr;
    why_(why, why_len, "cudaMalloc of the kernel accumulators failed: ", cudaGetErrorString(e));
    return false;
  }
  if ((e = cudaHostAlloc((void **)&acc_host_, sizeof(accum), cudaHostAllocDefault)) !=
      cudaSuccess) {
    cudaGetLastError();
    cudaFree(acc_dev_);
    acc_dev_ = nullptr;
    acc_host_ = nullptr;
    why_(why, why_len, "cudaHostAlloc of the kernel accumulators failed: ",
         cudaGetErrorString(e));
    return false;
  }
  table_fp32_ = make_table_<false>();
  table_bf16_ = make_table_<true>();
  ready_ = true;
  return true;
}

}  // namespace

extern "C" const kernels *kernels_cuda(int bf16, char *why, int why_len) {
  if (!init_(why, why_len)) return nullptr;
  return bf16 ? &table_bf16_ : &table_fp32_;
}
