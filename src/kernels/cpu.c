/* The CPU kernel table: OpenBLAS sgemm for every matrix product, OpenMP for the loops.
 * This is the reference the CUDA kernels are checked against; keep it plain. Row sums
 * (norms, softmax) accumulate in double so that the result does not depend on the
 * thread count. */
#include <cblas.h>
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu_bf16.h"
#include "kernels/kernels.h"
#include "kernels/adamw.h"

/* OpenBLAS extensions: attention runs many small products, one per (sequence, head), in
 * parallel OpenMP threads, each with single-threaded BLAS. OpenBLAS's OpenMP build (the one
 * CMake links at run time where it is installed: one thread pool for our loops and its
 * GEMMs) does that by itself inside a parallel region, and its openblas_set_num_threads
 * also sets OpenMP's thread count, so the pthread build alone needs telling. */
int openblas_get_num_threads(void);
void openblas_set_num_threads(int n);
int openblas_get_parallel(void); /* 0 sequential, 1 pthreads, 2 OpenMP */

static int blas_serial_begin_(void) {
  if (openblas_get_parallel() != 1) return 0;
  int n = openblas_get_num_threads();
  openblas_set_num_threads(1);
  return n;
}
static void blas_serial_end_(int n) {
  if (n > 0) openblas_set_num_threads(n);
}

/* exp(x) for float, written so that loops calling it vectorize: x = n ln2 + r,
 * |r| <= ln2/2, e^r by its degree-7 Taylor polynomial (truncation < 1e-8 relative), times
 * 2^n through the exponent bits. Inputs are clamped to [-87, 88] (results 1.6e-38 ..
 * 1.7e38), which the callers only reach for entries that are negligible anyway. */
static inline float fast_expf_(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  /* round to nearest by adding and subtracting 1.5 * 2^23 (vectorizes without SSE4.1) */
  float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = x - n * 0.693145751953125f - n * 1.42860682030941723e-6f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  union {
    uint32_t u;
    float f;
  } scale = {.u = (uint32_t)((int32_t)n + 127) << 23};
  return p * scale.f;
}

static void *cpu_alloc_(size_t bytes) { return calloc(1, bytes ? bytes : 1); }
static void cpu_free_(void *p) { free(p); }
static void cpu_zero_(float *x, size_t n) { memset(x, 0, n * sizeof *x); }
static void cpu_copy_(float *dst, const float *src, size_t n) {
  if (dst != src) memmove(dst, src, n * sizeof *dst);
}
static void cpu_upload_(void *dst, const void *src, size_t bytes) {
  if (bytes && dst != src) memmove(dst, src, bytes);
}
static void cpu_download_(void *dst, const void *src, size_t bytes) {
  if (bytes && dst != src) memmove(dst, src, bytes);
}
static void *cpu_host_alloc_(size_t bytes) { return calloc(1, bytes ? bytes : 1); }
static void cpu_host_free_(void *p) { free(p); }
static void cpu_sync_(void) {}

static void cpu_gemm_(int trans_a, int trans_b, int M, int N, int K, float alpha,
                      const float *A, int lda, const float *B, int ldb, float beta, float *C,
                      int ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) { /* C = beta*C, which BLAS may not do for K = 0 */
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] *= beta;
    return;
  }
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

static void cpu_embed_forward_(float *out, const int32_t *tokens, const float *emb, int N,
                               int C) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++)
    memcpy(out + (size_t)n * C, emb + (size_t)tokens[n] * C, (size_t)C * sizeof(float));
}

static void cpu_embed_backward_(float *demb, const float *dout, const int32_t *tokens, int N,
                                int C) {
  /* serial over rows: repeated tokens add into the same row */
  for (int n = 0; n < N; n++) {
    float *d = demb + (size_t)tokens[n] * C;
    const float *g = dout + (size_t)n * C;
    for (int c = 0; c < C; c++) d[c] += g[c];
  }
}

static void cpu_rmsnorm_forward_(float *out, float *rstd, const float *x, const float *w,
                                 int N, int C, float eps) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    const float *xr = x + (size_t)n * C;
    float *o = out + (size_t)n * C;
    double ss = 0;
#pragma omp simd reduction(+ : ss)
    for (int c = 0; c < C; c++) ss += (double)xr[c] * xr[c];
    float r = (float)(1.0 / sqrt(ss / C + eps));
    rstd[n] = r;
#pragma omp simd
    for (int c = 0; c < C; c++) o[c] = w[c] * (xr[c] * r);
  }
}

/* out = w * x * r, r = (mean x^2 + eps)^-1/2:
 *   dx_i = r w_i g_i - r^3/C x_i sum_j w_j g_j x_j,  dw_i += sum_rows g_i x_i r.
 * dx may alias dout (the row sum is taken before writing); dx NULL skips it. */
static void cpu_rmsnorm_backward_(float *dx, float *dw, const float *dout, const float *x,
                                  const float *w, const float *rstd, int N, int C,
                                  int accumulate) {
  if (dw) {
    for (int n = 0; n < N; n++) {
      const float *g = dout + (size_t)n * C, *xr = x + (size_t)n * C;
      float r = rstd[n];
#pragma omp simd
      for (int c = 0; c < C; c++) dw[c] += g[c] * xr[c] * r;
    }
  }
  if (!dx) return;
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    const float *g = dout + (size_t)n * C, *xr = x + (size_t)n * C;
    float *d = dx + (size_t)n * C;
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int c = 0; c < C; c++) s += (double)w[c] * g[c] * xr[c];
    float r = rstd[n];
    float k = (float)((double)r * r * r * s / C);
    if (accumulate) {
#pragma omp simd
      for (int c = 0; c < C; c++) d[c] += r * w[c] * g[c] - k * xr[c];
    } else {
#pragma omp simd
      for (int c = 0; c < C; c++) d[c] = r * w[c] * g[c] - k * xr[c];
    }
  }
}

static void cpu_bias_forward_(float *y, const float *b, int N, int M) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++)
    for (int m = 0; m < M; m++) y[(size_t)n * M + m] += b[m];
}

static void cpu_bias_backward_(float *db, const float *dy, int N, int M) {
  for (int n = 0; n < N; n++)
    for (int m = 0; m < M; m++) db[m] += dy[(size_t)n * M + m];
}

static void rope_apply_(float *x, const float *cos_t, const float *sin_t, int B, int T, int nh,
                        int D, float sign) {
  int half = D / 2;
#pragma omp parallel for schedule(static)
  for (int n = 0; n < B * T; n++) {
    int t = n % T;
    const float *c = cos_t + (size_t)t * half, *s = sin_t + (size_t)t * half;
    for (int h = 0; h < nh; h++) {
      float *v = x + ((size_t)n * nh + h) * D;
#pragma omp simd
      for (int i = 0; i < half; i++) {
        float a = v[i], b = v[i + half], si = sign * s[i];
        v[i] = a * c[i] - b * si;
        v[i + half] = b * c[i] + a * si;
      }
    }
  }
}

static void cpu_rope_forward_(float *x, const float *cos_t, const float *sin_t, int B, int T,
                              int nh, int D) {
  rope_apply_(x, cos_t, sin_t, B, T, nh, D, 1.0f);
}

/* The rotation is orthogonal: its adjoint is the rotation by -angle. */
static void cpu_rope_backward_(float *dx, const float *cos_t, const float *sin_t, int B, int T,
                               int nh, int D) {
  rope_apply_(dx, cos_t, sin_t, B, T, nh, D, -1.0f);
}

/* Memory-efficient causal attention. Queries are processed in tiles of AT_ROWS rows; a
 * tile sees the key columns [c0, c1) with c0 = the window start of its first row and
 * c1 = one past its last row, so its scores S (rows, c1 - c0) come from one small sgemm
 * into per-thread scratch. Nothing (T, T) is kept: forward stores lse (B, H, T), backward
 * recomputes each tile's probabilities P = exp(S - lse) from q, k and lse. */
enum { AT_ROWS = 64 };

static int at_threads_(void) {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}
static int at_thread_(void) {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}
static int at_rows_(int T) { return T < AT_ROWS ? (T > 0 ? T : 1) : AT_ROWS; }
/* window start of query t (window 0: 0) */
static int at_lo_(int t, int window) { return window > 0 && t - window + 1 > 0 ? t - window + 1 : 0; }

/* Per thread: two (rows, T) tiles (backward: P and dP; forward uses the first). The
 * kernels run at most as many threads as the smallest count any scratch was sized for, so
 * raising OMP_NUM_THREADS after sizing a scratch cannot overrun it. */
static int at_sized_threads_; /* 0: no scratch sized yet */
static int at_run_threads_(void) {
  int nt = at_threads_(), sized = at_sized_threads_;
  return sized > 0 && sized < nt ? sized : nt;
}
static size_t cpu_attention_scratch_floats_(int B, int T, int H, int KV, int D) {
  (void)B, (void)H, (void)KV, (void)D;
  int nt = at_threads_();
#pragma omp critical(spectrain_attention_scratch)
  if (at_sized_threads_ == 0 || nt < at_sized_threads_) at_sized_threads_ = nt;
  if (T <= 0) return 1;
  return (size_t)nt * 2 * (size_t)at_rows_(T) * (size_t)T;
}

/* Scores of one tile: S[r][j - c0] = scale * q_{t0+r} . k_j over [c0, c1), then rows become
 * the probabilities (masked entries 0). Forward: from the row maximum, also writes lse
 * (lse_out != NULL). Backward: exp(S - lse) with the saved lse. */
static void at_tile_probs_(float *S, const float *Q, int HD, const float *K, int KVD, int t0,
                           int rows, int c0, int c1, int D, float scale, int window,
                           float *lse_out, const float *lse_in) {
  int W = c1 - c0;
  cpu_gemm_(0, 1, rows, W, D, scale, Q + (size_t)t0 * HD, HD, K + (size_t)c0 * KVD, KVD, 0.0f,
            S, W);
  for (int r = 0; r < rows; r++) {
    int t = t0 + r, lo = at_lo_(t, window) - c0, hi = t - c0; /* visible: [lo, hi] */
    float *row = S + (size_t)r * W;
    if (lse_out) {
      float mx = row[lo];
#pragma omp simd reduction(max : mx)
      for (int j = lo + 1; j <= hi; j++) mx = row[j] > mx ? row[j] : mx;
      double sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int j = lo; j <= hi; j++) {
        row[j] = fast_expf_(row[j] - mx);
        sum += row[j];
      }
      float inv = (float)(1.0 / sum);
#pragma omp simd
      for (int j = lo; j <= hi; j++) row[j] *= inv;
      lse_out[t] = (float)(mx + log(sum));
    } else {
      float l = lse_in[t];
#pragma omp simd
      for (int j = lo; j <= hi; j++) row[j] = fast_expf_(row[j] - l);
    }
    for (int j = 0; j < lo; j++) row[j] = 0.0f;
    for (int j = hi + 1; j < W; j++) row[j] = 0.0f;
  }
}

static void cpu_attention_forward_(float *out, float *lse, float *scratch, const float *q,
                                   const float *k, const float *v, int B, int T, int H, int KV,
                                   int D, int window) {
  if (B <= 0 || T <= 0 || H <= 0) return;
  int HD = H * D, KVD = KV * D, rep = H / KV, R = at_rows_(T);
  int ntile = (T + R - 1) / R;
  float scale = 1.0f / sqrtf((float)D);
  size_t per_thread = 2 * (size_t)R * T;
  int nt = at_run_threads_(), blas_threads = blas_serial_begin_();
#pragma omp parallel for schedule(dynamic) num_threads(nt)
  for (long job = 0; job < (long)B * H * ntile; job++) {
    int tile = (int)(job % ntile), bh = (int)(job / ntile), b = bh / H, h = bh % H;
    float *S = scratch + (size_t)at_thread_() * per_thread;
    const float *Q = q + (size_t)b * T * HD + (size_t)h * D;
    const float *K = k + (size_t)b * T * KVD + (size_t)(h / rep) * D;
    const float *V = v + (size_t)b * T * KVD + (size_t)(h / rep) * D;
    float *O = out + (size_t)b * T * HD + (size_t)h * D;
    int t0 = tile * R, rows = T - t0 < R ? T - t0 : R;
    int c0 = at_lo_(t0, window), c1 = t0 + rows;
    at_tile_probs_(S, Q, HD, K, KVD, t0, rows, c0, c1, D, scale, window,
                   lse + (size_t)bh * T, NULL);
    /* O tile = P V[c0, c1) */
    cpu_gemm_(0, 0, rows, D, c1 - c0, 1.0f, S, c1 - c0, V + (size_t)c0 * KVD, KVD, 0.0f,
              O + (size_t)t0 * HD, HD);
  }
  blas_serial_end_(blas_threads);
}

/* Per tile, with P recomputed: dP = dO V^T; dS = P (dP - D_t), D_t = sum_d dO_t * O_t
 * (= rowsum(P dP)); dQ = dS K / sqrt(D); dK += dS^T Q / sqrt(D); dV += P^T dO. Several q
 * heads share one kv head, so threads split over (sequence, kv head) and each runs that
 * kv head's q heads and tiles in turn (no two threads add into the same dk, dv rows). */
static void cpu_attention_backward_(float *dq, float *dk, float *dv, float *scratch,
                                    const float *dout, const float *out, const float *lse,
                                    const float *q, const float *k, const float *v, int B, int T,
                                    int H, int KV, int D, int window) {
  if (B <= 0 || T <= 0 || H <= 0) return;
  int HD = H * D, KVD = KV * D, rep = H / KV, R = at_rows_(T);
  float scale = 1.0f / sqrtf((float)D);
  size_t per_thread = 2 * (size_t)R * T;
  int nt = at_run_threads_(), blas_threads = blas_serial_begin_();
#pragma omp parallel for schedule(dynamic) num_threads(nt)
  for (int bk = 0; bk < B * KV; bk++) {
    int b = bk / KV, kh = bk % KV;
    float *P = scratch + (size_t)at_thread_() * per_thread, *dP = P + (size_t)R * T;
    size_t ko = (size_t)b * T * KVD + (size_t)kh * D;
    for (int t = 0; t < T; t++) {
      memset(dk + ko + (size_t)t * KVD, 0, (size_t)D * sizeof *dk);
      memset(dv + ko + (size_t)t * KVD, 0, (size_t)D * sizeof *dv);
    }
    for (int h = kh * rep; h < (kh + 1) * rep; h++) {
      size_t qo = (size_t)b * T * HD + (size_t)h * D;
      const float *L = lse + ((size_t)b * H + h) * T;
      for (int t0 = 0; t0 < T; t0 += R) {
        int rows = T - t0 < R ? T - t0 : R;
        int c0 = at_lo_(t0, window), c1 = t0 + rows, W = c1 - c0;
        const float *dO = dout + qo + (size_t)t0 * HD;
        at_tile_probs_(P, q + qo, HD, k + ko, KVD, t0, rows, c0, c1, D, scale, window, NULL,
                       L);
        cpu_gemm_(0, 1, rows, W, D, 1.0f, dO, HD, v + ko + (size_t)c0 * KVD, KVD, 0.0f, dP, W);
        for (int r = 0; r < rows; r++) {
          const float *o = out + qo + (size_t)(t0 + r) * HD, *g = dO + (size_t)r * HD;
          double Dt = 0;
#pragma omp simd reduction(+ : Dt)
          for (int d = 0; d < D; d++) Dt += (double)g[d] * o[d];
          float Df = (float)Dt;
          float *p = P + (size_t)r * W, *dp = dP + (size_t)r * W;
#pragma omp simd
          for (int j = 0; j < W; j++) dp[j] = p[j] * (dp[j] - Df); /* masked: p = 0 */
        }
        cpu_gemm_(0, 0, rows, D, W, scale, dP, W, k + ko + (size_t)c0 * KVD, KVD, 0.0f,
                  dq + qo + (size_t)t0 * HD, HD);
        cpu_gemm_(1, 0, W, D, rows, scale, dP, W, q + qo + (size_t)t0 * HD, HD, 1.0f,
                  dk + ko + (size_t)c0 * KVD, KVD);
        cpu_gemm_(1, 0, W, D, rows, 1.0f, P, W, dO, HD, 1.0f, dv + ko + (size_t)c0 * KVD, KVD);
      }
    }
  }
  blas_serial_end_(blas_threads);
}

/* SwiGLU in chunks: e = exp(-g) (backward: s = sigmoid(g)) for a chunk first, then the
 * products from it. One fused loop was 10x slower: GCC threads fast_expf_'s clamp into a
 * path of its own for g < -88, whose constant 1 / (1 + e^88) is subnormal, and the SIMD loop
 * evaluates that path's division and products for every lane (subnormal operands take
 * microcode assists). Per element the arithmetic is the same as the fused loop's. */
enum { SW_CHUNK = 512 };

static void cpu_swiglu_forward_(float *h, const float *gate, const float *up, size_t n) {
  size_t nc = (n + SW_CHUNK - 1) / SW_CHUNK;
#pragma omp parallel for schedule(static)
  for (size_t c = 0; c < nc; c++) {
    size_t i0 = c * SW_CHUNK, m = n - i0 < SW_CHUNK ? n - i0 : SW_CHUNK;
    const float *gc = gate + i0, *uc = up + i0;
    float *hc = h + i0, e[SW_CHUNK];
#pragma omp simd
    for (size_t j = 0; j < m; j++) e[j] = fast_expf_(-gc[j]);
#pragma omp simd
    for (size_t j = 0; j < m; j++) hc[j] = gc[j] / (1.0f + e[j]) * uc[j];
  }
}

/* silu(g) = g s(g), silu'(g) = s(g) (1 + g (1 - s(g))) */
static void cpu_swiglu_backward_(float *dgate, float *dup, const float *dh, const float *gate,
                                 const float *up, size_t n) {
  size_t nc = (n + SW_CHUNK - 1) / SW_CHUNK;
#pragma omp parallel for schedule(static)
  for (size_t c = 0; c < nc; c++) {
    size_t i0 = c * SW_CHUNK, m = n - i0 < SW_CHUNK ? n - i0 : SW_CHUNK;
    float sg[SW_CHUNK];
#pragma omp simd
    for (size_t j = 0; j < m; j++) sg[j] = 1.0f / (1.0f + fast_expf_(-gate[i0 + j]));
    /* dgate may alias gate and dup up: each element is read before it is written */
#pragma omp simd
    for (size_t j = 0; j < m; j++) {
      size_t i = i0 + j;
      float g = gate[i], u = up[i], d = dh[i], s = sg[j];
      float silu = g * s;
      dgate[i] = d * u * s * (1.0f + g * (1.0f - s));
      dup[i] = d * silu;
    }
  }
}

static void cpu_add_(float *y, const float *x, size_t n) {
#pragma omp parallel for simd schedule(static)
  for (size_t i = 0; i < n; i++) y[i] += x[i];
}

static void cpu_cross_entropy_forward_(float *lse, const float *logits, const int32_t *targets,
                                       int N, int V, double *loss_sum, int64_t *n_counted) {
  double loss = 0;
  int64_t cnt = 0;
#pragma omp parallel for schedule(static) reduction(+ : loss, cnt)
  for (int n = 0; n < N; n++) {
    const float *row = logits + (size_t)n * V;
    float mx = row[0];
#pragma omp simd reduction(max : mx)
    for (int j = 1; j < V; j++) mx = row[j] > mx ? row[j] : mx;
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int j = 0; j < V; j++) s += fast_expf_(row[j] - mx);
    double l = mx + log(s);
    lse[n] = (float)l;
    if (targets && targets[n] != MODEL_IGNORE_INDEX) {
      loss += l - row[targets[n]];
      cnt++;
    }
  }
  if (loss_sum) *loss_sum += loss;
  if (n_counted) *n_counted += cnt;
}

static void cpu_cross_entropy_backward_(float *logits, const float *lse, const int32_t *targets,
                                        int N, int V, float scale) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    float *row = logits + (size_t)n * V;
    int32_t tg = targets[n];
    if (tg == MODEL_IGNORE_INDEX) {
      memset(row, 0, (size_t)V * sizeof *row);
      continue;
    }
    float l = lse[n];
#pragma omp simd
    for (int j = 0; j < V; j++) row[j] = scale * fast_expf_(row[j] - l);
    row[tg] -= scale;
  }
}

static double cpu_sum_squares_(const float *x, size_t n) { return grad_sum_squares(x, n); }

static void cpu_scale_(float *x, float s, size_t n) {
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) x[i] *= s;
}

static const kernels cpu_table_ = {
    .name = "cpu",
    .host_addressable = 1,
    .alloc = cpu_alloc_,
    .free = cpu_free_,
    .zero = cpu_zero_,
    .copy = cpu_copy_,
    .upload = cpu_upload_,
    .download = cpu_download_,
    .host_alloc = cpu_host_alloc_,
    .host_free = cpu_host_free_,
    .sync = cpu_sync_,
    .gemm = cpu_gemm_,
    .embed_forward = cpu_embed_forward_,
    .embed_backward = cpu_embed_backward_,
    .rmsnorm_forward = cpu_rmsnorm_forward_,
    .rmsnorm_backward = cpu_rmsnorm_backward_,
    .bias_forward = cpu_bias_forward_,
    .bias_backward = cpu_bias_backward_,
    .rope_forward = cpu_rope_forward_,
    .rope_backward = cpu_rope_backward_,
    .attention_scratch_floats = cpu_attention_scratch_floats_,
    .attention_forward = cpu_attention_forward_,
    .attention_backward = cpu_attention_backward_,
    .swiglu_forward = cpu_swiglu_forward_,
    .swiglu_backward = cpu_swiglu_backward_,
    .add = cpu_add_,
    .cross_entropy_forward = cpu_cross_entropy_forward_,
    .cross_entropy_backward = cpu_cross_entropy_backward_,
    .sum_squares = cpu_sum_squares_,
    .scale = cpu_scale_,
    .adamw = adamw_step,
    .to_bf16 = cpu_to_bf16,
    .to_f32 = cpu_to_f32,
    .add_bf16 = cpu_add_bf16,
    .gemm_bf16 = cpu_gemm_bf16,
    .embed_forward_bf16 = cpu_embed_forward_bf16,
};

const kernels *kernels_cpu(void) { return &cpu_table_; }

const char *kernels_cpu_threads(void) {
  static char d[224];
  int nt = at_threads_();
  switch (openblas_get_parallel()) {
  case 2:
    snprintf(d, sizeof d, "%d OpenMP thread%s (OMP_NUM_THREADS), OpenBLAS OpenMP build", nt,
             nt == 1 ? "" : "s");
    break;
  case 1:
    snprintf(d, sizeof d, "%d OpenMP thread%s (OMP_NUM_THREADS) beside OpenBLAS's pthread build "
             "(%d threads): the two pools compete, steps run up to 2x slower; install "
             "libopenblas0-openmp and rebuild", nt, nt == 1 ? "" : "s",
             openblas_get_num_threads());
    break;
  default:
    snprintf(d, sizeof d, "%d OpenMP thread%s (OMP_NUM_THREADS), sequential OpenBLAS", nt,
             nt == 1 ? "" : "s");
  }
  return d;
}
