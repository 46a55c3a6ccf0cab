/* The "guard" test backend (kernels.h): the CPU kernels, with compute memory fenced off from
 * the host. Every alloc is its own anonymous mapping, kept PROT_NONE except while a table
 * function runs: the wrapper unprotects every live region, calls the CPU kernel and protects
 * them again. upload/download unprotect only the region they copy into or out of. A trailing
 * page of each mapping stays PROT_NONE for good, so a kernel running past a buffer's end
 * faults too. Host code that dereferences compute memory therefore dies with SIGSEGV at the
 * faulting line, which is what a CUDA device pointer would do (or worse, silently not do).
 *
 * Slow by design (two mprotect passes over all live buffers per kernel call): tests only.
 * A mutex and a depth count make concurrent host threads safe: regions are protected again
 * only when the last running table call returns. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kernels/kernels.h"
#include "util/err.h"

typedef struct {
  char *base;      /* start of the mapping = the pointer alloc returned */
  size_t map_len;  /* data pages + one trailing guard page */
  size_t data_len; /* the part that is ever unprotected */
} region_;

static pthread_mutex_t mu_ = PTHREAD_MUTEX_INITIALIZER;
static region_ *reg_;
static size_t nreg_, capreg_;
static int depth_; /* table calls running: regions are open while > 0 */

static size_t page_(void) {
  static size_t p;
  if (!p) {
    long v = sysconf(_SC_PAGESIZE);
    p = v > 0 ? (size_t)v : 4096;
  }
  return p;
}

static void protect_(const region_ *r, int prot) {
  if (mprotect(r->base, r->data_len, prot) != 0) {
    log_error("guard kernels: mprotect of %zu bytes at %p failed", r->data_len, (void *)r->base);
    abort();
  }
}

static const region_ *find_(const void *p, size_t bytes, const char *what);

/* Opens every region for a table call, after checking that each non-NULL pointer argument
 * points into compute memory (host memory handed to a kernel is a device fault on CUDA). */
static void open_all_(const char *fn, const void *const *ptrs, int n) {
  pthread_mutex_lock(&mu_);
  for (int i = 0; i < n; i++)
    if (ptrs[i]) find_(ptrs[i], 1, fn);
  if (depth_++ == 0)
    for (size_t i = 0; i < nreg_; i++) protect_(&reg_[i], PROT_READ | PROT_WRITE);
  pthread_mutex_unlock(&mu_);
}
static void close_all_(void) {
  pthread_mutex_lock(&mu_);
  if (--depth_ == 0)
    for (size_t i = 0; i < nreg_; i++) protect_(&reg_[i], PROT_NONE);
  pthread_mutex_unlock(&mu_);
}

/* The region holding [p, p + bytes); a pointer outside every region is a bug of the caller
 * (host memory passed where compute memory belongs): reported and aborted. Under mu_. */
static const region_ *find_(const void *p, size_t bytes, const char *what) {
  const char *c = p;
  for (size_t i = 0; i < nreg_; i++)
    if (c >= reg_[i].base && c + bytes <= reg_[i].base + reg_[i].data_len) return &reg_[i];
  log_error("guard kernels: %s: %zu bytes at %p are not inside one compute allocation (host "
            "memory where compute memory belongs?)",
            what, bytes, p);
  abort();
}

static void *g_alloc_(size_t bytes) {
  size_t pg = page_(), data = (bytes + pg - 1) / pg * pg;
  if (data == 0) data = pg;
  if (data > SIZE_MAX - pg) return NULL;
  void *m = mmap(NULL, data + pg, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return NULL;
  region_ r = {m, data + pg, data};
  pthread_mutex_lock(&mu_);
  if (nreg_ == capreg_) {
    capreg_ = capreg_ ? 2 * capreg_ : 64;
    reg_ = xrealloc(reg_, capreg_ * sizeof *reg_);
  }
  reg_[nreg_++] = r;
  if (depth_ > 0) protect_(&r, PROT_READ | PROT_WRITE); /* allocated inside a table call */
  pthread_mutex_unlock(&mu_);
  return m; /* anonymous mappings are zero-filled */
}

static void g_free_(void *p) {
  if (!p) return;
  pthread_mutex_lock(&mu_);
  for (size_t i = 0; i < nreg_; i++)
    if (reg_[i].base == p) {
      munmap(reg_[i].base, reg_[i].map_len);
      reg_[i] = reg_[--nreg_];
      pthread_mutex_unlock(&mu_);
      return;
    }
  pthread_mutex_unlock(&mu_);
  log_error("guard kernels: free of %p, which is no compute allocation", p);
  abort();
}

/* Host <-> compute: only the compute side's region opens. */
static void g_move_(void *dst, const void *src, size_t bytes, int to_compute) {
  if (!bytes) return;
  pthread_mutex_lock(&mu_);
  const region_ *r = find_(to_compute ? dst : src, bytes, to_compute ? "upload" : "download");
  if (depth_ == 0) protect_(r, PROT_READ | PROT_WRITE);
  memmove(dst, src, bytes);
  if (depth_ == 0) protect_(r, PROT_NONE);
  pthread_mutex_unlock(&mu_);
}
static void g_upload_(void *dst, const void *src, size_t bytes) { g_move_(dst, src, bytes, 1); }
static void g_download_(void *dst, const void *src, size_t bytes) { g_move_(dst, src, bytes, 0); }

static void *g_host_alloc_(size_t bytes) { return calloc(1, bytes ? bytes : 1); }
static void g_host_free_(void *p) { free(p); }
static void g_sync_(void) {}

#define CPU_ (kernels_cpu())
/* Wrap a CPU table function: open every region, run it, close them. */
#define GUARD_VOID(call, ...)                                                             \
  do {                                                                                     \
    const void *const ptrs_[] = {__VA_ARGS__};                                             \
    open_all_(__func__, ptrs_, (int)(sizeof ptrs_ / sizeof *ptrs_));                       \
    call;                                                                                  \
    close_all_();                                                                          \
  } while (0)

static void g_zero_(float *x, size_t n) { GUARD_VOID(CPU_->zero(x, n), x); }
static void g_copy_(float *dst, const float *src, size_t n) { GUARD_VOID(CPU_->copy(dst, src, n), dst, src); }
static void g_gemm_(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc) {
  GUARD_VOID(CPU_->gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc), A, B, C);
}
static void g_embed_forward_(float *out, const int32_t *tokens, const float *emb, int N, int C) {
  GUARD_VOID(CPU_->embed_forward(out, tokens, emb, N, C), out, tokens, emb);
}
static void g_embed_backward_(float *demb, const float *dout, const int32_t *tokens, int N,
                              int C) {
  GUARD_VOID(CPU_->embed_backward(demb, dout, tokens, N, C), demb, dout, tokens);
}
static void g_rmsnorm_forward_(float *out, float *rstd, const float *x, const float *w, int N,
                               int C, float eps) {
  GUARD_VOID(CPU_->rmsnorm_forward(out, rstd, x, w, N, C, eps), out, rstd, x, w);
}
static void g_rmsnorm_backward_(float *dx, float *dw, const float *dout, const float *x,
                                const float *w, const float *rstd, int N, int C, int acc) {
  GUARD_VOID(CPU_->rmsnorm_backward(dx, dw, dout, x, w, rstd, N, C, acc), dx, dw, dout, x, w, rstd);
}
static void g_bias_forward_(float *y, const float *b, int N, int M) {
  GUARD_VOID(CPU_->bias_forward(y, b, N, M), y, b);
}
static void g_bias_backward_(float *db, const float *dy, int N, int M) {
  GUARD_VOID(CPU_->bias_backward(db, dy, N, M), db, dy);
}
static void g_rope_forward_(float *x, const float *c, const float *s, int B, int T, int nh,
                            int D) {
  GUARD_VOID(CPU_->rope_forward(x, c, s, B, T, nh, D), x, c, s);
}
static void g_rope_backward_(float *dx, const float *c, const float *s, int B, int T, int nh,
                             int D) {
  GUARD_VOID(CPU_->rope_backward(dx, c, s, B, T, nh, D), dx, c, s);
}
static size_t g_attention_scratch_floats_(int B, int T, int H, int KV, int D) {
  return CPU_->attention_scratch_floats(B, T, H, KV, D);
}
static void g_attention_forward_(float *out, float *lse, float *scratch, const float *q,
                                 const float *k, const float *v, int B, int T, int H, int KV,
                                 int D, int window) {
  GUARD_VOID(CPU_->attention_forward(out, lse, scratch, q, k, v, B, T, H, KV, D, window), out, lse, scratch, q, k, v);
}
static void g_attention_backward_(float *dq, float *dk, float *dv, float *scratch,
                                  const float *dout, const float *out, const float *lse,
                                  const float *q, const float *k, const float *v, int B, int T,
                                  int H, int KV, int D, int window) {
  GUARD_VOID(CPU_->attention_backward(dq, dk, dv, scratch, dout, out, lse, q, k, v, B, T, H, KV,
                                      D, window), dq, dk, dv, scratch, dout, out, lse, q, k, v);
}
static void g_swiglu_forward_(float *h, const float *gate, const float *up, size_t n) {
  GUARD_VOID(CPU_->swiglu_forward(h, gate, up, n), h, gate, up);
}
static void g_swiglu_backward_(float *dgate, float *dup, const float *dh, const float *gate,
                               const float *up, size_t n) {
  GUARD_VOID(CPU_->swiglu_backward(dgate, dup, dh, gate, up, n), dgate, dup, dh, gate, up);
}
static void g_add_(float *y, const float *x, size_t n) { GUARD_VOID(CPU_->add(y, x, n), y, x); }
static void g_cross_entropy_forward_(float *lse, const float *logits, const int32_t *targets,
                                     int N, int V, double *loss_sum, int64_t *n_counted) {
  GUARD_VOID(CPU_->cross_entropy_forward(lse, logits, targets, N, V, loss_sum, n_counted), lse, logits, targets);
}
static void g_cross_entropy_backward_(float *logits, const float *lse, const int32_t *targets,
                                      int N, int V, float scale) {
  GUARD_VOID(CPU_->cross_entropy_backward(logits, lse, targets, N, V, scale), logits, lse, targets);
}
static double g_sum_squares_(const float *x, size_t n) {
  double r;
  GUARD_VOID(r = CPU_->sum_squares(x, n), x);
  return r;
}
static void g_scale_(float *x, float s, size_t n) { GUARD_VOID(CPU_->scale(x, s, n), x); }
static void g_adamw_(float *param, const float *grad, float *m, float *v, size_t n, float lr,
                     float beta1, float beta2, float eps, float wd, long step) {
  GUARD_VOID(CPU_->adamw(param, grad, m, v, n, lr, beta1, beta2, eps, wd, step), param, grad, m, v);
}

static void g_to_bf16_(bf16_t *dst, const float *src, size_t n) {
  GUARD_VOID(CPU_->to_bf16(dst, src, n), dst, src);
}
static void g_to_f32_(float *dst, const bf16_t *src, size_t n) {
  GUARD_VOID(CPU_->to_f32(dst, src, n), dst, src);
}
static void g_add_bf16_(float *y, const bf16_t *x, size_t n) {
  GUARD_VOID(CPU_->add_bf16(y, x, n), y, x);
}
static void g_gemm_bf16_(int ta, int tb, int M, int N, int K, float alpha, const bf16_t *A,
                         int lda, const bf16_t *B, int ldb, float beta, void *C, int cbf16,
                         int ldc) {
  GUARD_VOID(CPU_->gemm_bf16(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, cbf16, ldc), A, B,
             C);
}
static void g_embed_forward_bf16_(float *out, const int32_t *tokens, const bf16_t *emb, int N,
                                  int C) {
  GUARD_VOID(CPU_->embed_forward_bf16(out, tokens, emb, N, C), out, tokens, emb);
}

static const kernels guard_table_ = {
    .name = "guard",
    .alloc = g_alloc_,
    .free = g_free_,
    .zero = g_zero_,
    .copy = g_copy_,
    .upload = g_upload_,
    .download = g_download_,
    .host_alloc = g_host_alloc_,
    .host_free = g_host_free_,
    .sync = g_sync_,
    .gemm = g_gemm_,
    .embed_forward = g_embed_forward_,
    .embed_backward = g_embed_backward_,
    .rmsnorm_forward = g_rmsnorm_forward_,
    .rmsnorm_backward = g_rmsnorm_backward_,
    .bias_forward = g_bias_forward_,
    .bias_backward = g_bias_backward_,
    .rope_forward = g_rope_forward_,
    .rope_backward = g_rope_backward_,
    .attention_scratch_floats = g_attention_scratch_floats_,
    .attention_forward = g_attention_forward_,
    .attention_backward = g_attention_backward_,
    .swiglu_forward = g_swiglu_forward_,
    .swiglu_backward = g_swiglu_backward_,
    .add = g_add_,
    .cross_entropy_forward = g_cross_entropy_forward_,
    .cross_entropy_backward = g_cross_entropy_backward_,
    .sum_squares = g_sum_squares_,
    .scale = g_scale_,
    .adamw = g_adamw_,
    .to_bf16 = g_to_bf16_,
    .to_f32 = g_to_f32_,
    .add_bf16 = g_add_bf16_,
    .gemm_bf16 = g_gemm_bf16_,
    .embed_forward_bf16 = g_embed_forward_bf16_,
};

const kernels *kernels_guard(void) { return &guard_table_; }
