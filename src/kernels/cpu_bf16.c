/* The bf16 entries of the CPU kernel table (kernels.h): conversions as OpenMP loops, and
 * the matrix products on oneDNN's matmul primitive (Debian's libdnnl 2.6), which runs them
 * on AMX tiles (brg:avx512_core_amx) or AVX512-BF16 dot products (brg:avx512_core_bf16)
 * where the CPU has them, and emulated otherwise.
 *
 * Primitives are cached per problem (transposes, sizes, strides, output type, alpha, beta):
 * the trainer runs the same few dozen shapes every step. A problem oneDNN cannot do in bf16
 * (no such implementation for this CPU) falls back to fp32: both operands widened, then
 * OpenBLAS sgemm.
 *
 * AMX: Linux hands out the AMX tile state only after arch_prctl(ARCH_REQ_XCOMP_PERM,
 * XFEATURE_XTILEDATA). oneDNN 2.6 requests it itself the first time it checks for AMX
 * (cpu::x64::amx::is_available); cpu_bf16_init_ requests it too before the first
 * primitive, so that the description can say whether the kernel granted it. Threads: oneDNN
 * (OpenMP runtime) runs on omp_get_max_threads(), i.e. OMP_NUM_THREADS. */
#include <cblas.h>
#include <oneapi/dnnl/dnnl.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include "kernels/bf16.h"
#include "kernels/cpu_bf16.h"
#include "util/err.h"

/* ---- conversions and elementwise ----------------------------------------------------- */

/* The conversions are integer bit operations, the same on every instruction set: the loops
 * are compiled for AVX-512 too and the CPU picks its clone at load time (ifunc). At SSE2
 * width they took 13 % of a bf16 step. Each thread converts one contiguous range. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__SANITIZE_ADDRESS__)
#define CONV_CLONES_ __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CONV_CLONES_
#endif

CONV_CLONES_ static void to_bf16_range_(bf16_t *dst, const float *src, size_t n) {
#pragma omp simd
  for (size_t i = 0; i < n; i++) dst[i] = bf16_from_f32(src[i]);
}
CONV_CLONES_ static void to_f32_range_(float *dst, const bf16_t *src, size_t n) {
#pragma omp simd
  for (size_t i = 0; i < n; i++) dst[i] = bf16_to_f32(src[i]);
}
CONV_CLONES_ static void add_bf16_range_(float *y, const bf16_t *x, size_t n) {
#pragma omp simd
  for (size_t i = 0; i < n; i++) y[i] += bf16_to_f32(x[i]);
}

/* [lo, hi) of this thread's share of n, in multiples of 16 elements */
static void share_(size_t n, size_t *lo, size_t *hi) {
#ifdef _OPENMP
  size_t nt = (size_t)omp_get_num_threads(), t = (size_t)omp_get_thread_num();
#else
  size_t nt = 1, t = 0;
#endif
  size_t per = (n + nt - 1) / nt;
  per = (per + 15) / 16 * 16;
  *lo = t * per < n ? t * per : n;
  *hi = *lo + per < n ? *lo + per : n;
}

enum { CONV_SERIAL_ = 16384 }; /* below this, one thread (a parallel region costs more) */

void cpu_to_bf16(bf16_t *dst, const float *src, size_t n) {
  if (n < CONV_SERIAL_) {
    to_bf16_range_(dst, src, n);
    return;
  }
#pragma omp parallel
  {
    size_t lo, hi;
    share_(n, &lo, &hi);
    to_bf16_range_(dst + lo, src + lo, hi - lo);
  }
}

void cpu_to_f32(float *dst, const bf16_t *src, size_t n) {
  if (n < CONV_SERIAL_) {
    to_f32_range_(dst, src, n);
    return;
  }
#pragma omp parallel
  {
    size_t lo, hi;
    share_(n, &lo, &hi);
    to_f32_range_(dst + lo, src + lo, hi - lo);
  }
}

void cpu_add_bf16(float *y, const bf16_t *x, size_t n) {
  if (n < CONV_SERIAL_) {
    add_bf16_range_(y, x, n);
    return;
  }
#pragma omp parallel
  {
    size_t lo, hi;
    share_(n, &lo, &hi);
    add_bf16_range_(y + lo, x + lo, hi - lo);
  }
}

void cpu_embed_forward_bf16(float *out, const int32_t *tokens, const bf16_t *emb, int N,
                            int C) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    const bf16_t *e = emb + (size_t)tokens[n] * C;
    float *o = out + (size_t)n * C;
#pragma omp simd
    for (int c = 0; c < C; c++) o[c] = bf16_to_f32(e[c]);
  }
}

/* ---- the CPU: AMX, AVX512-BF16 -------------------------------------------------------- */

#define ARCH_GET_XCOMP_PERM_ 0x1022
#define ARCH_REQ_XCOMP_PERM_ 0x1023
#define XFEATURE_XTILEDATA_ 18

typedef struct {
  int amx_bf16, avx512_bf16; /* CPUID */
  int amx_granted;           /* the kernel allows this process the AMX tile data */
} cpu_feat_;

static cpu_feat_ cpu_features_(void) {
  cpu_feat_ f = {0, 0, 0};
#if defined(__x86_64__)
  unsigned a, b, c, d;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
    f.amx_bf16 = (d >> 22) & 1 && (d >> 24) & 1; /* AMX-BF16 and AMX-TILE */
    if (a >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d)) f.avx512_bf16 = (a >> 5) & 1;
  }
#if defined(__linux__) && defined(SYS_arch_prctl)
  if (f.amx_bf16) {
    unsigned long mask = 0;
    syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM_, (unsigned long)XFEATURE_XTILEDATA_);
    if (syscall(SYS_arch_prctl, ARCH_GET_XCOMP_PERM_, &mask) == 0)
      f.amx_granted = (mask >> XFEATURE_XTILEDATA_) & 1;
  }
#endif
#endif
  return f;
}

/* ---- matmul primitives ------------------------------------------------------------------ */

typedef struct {
  int ta, tb, M, N, K, lda, ldb, ldc, cbf16;
  float alpha, beta;
  int ok;                /* 0: oneDNN has no bf16 implementation: the fp32 fallback */
  dnnl_primitive_t prim; /* ok only */
  dnnl_memory_t a, b, c; /* memory objects whose data handles are set per call */
  uint64_t used;         /* last use (LRU) */
} mm_entry_;

enum { MM_CACHE = 128 };

static pthread_mutex_t mm_mu_ = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t mm_once_ = PTHREAD_ONCE_INIT;
static dnnl_engine_t eng_;
static dnnl_stream_t strm_;
static int dnnl_ok_; /* engine and stream exist */
static int fast_;    /* oneDNN runs bf16 on the CPU's bf16 instructions: use it */
static mm_entry_ cache_[MM_CACHE];
static int ncache_;
static uint64_t clock_;
static char desc_[512];

static void entry_release_(mm_entry_ *e) {
  if (e->prim) dnnl_primitive_destroy(e->prim);
  if (e->a) dnnl_memory_destroy(e->a);
  if (e->b) dnnl_memory_destroy(e->b);
  if (e->c) dnnl_memory_destroy(e->c);
  memset(e, 0, sizeof *e);
}

/* Builds the primitive of e's problem; e->ok = 0 when oneDNN cannot. Row-major operands as
 * strided 2-D memory: op(A) (M, K) is A with strides (lda, 1), or (1, lda) transposed. */
static void entry_build_(mm_entry_ *e, const char **impl) {
  dnnl_memory_desc_t ad, bd, cd;
  dnnl_dims_t da = {e->M, e->K}, db = {e->K, e->N}, dc = {e->M, e->N};
  dnnl_dims_t sa = {e->ta ? 1 : e->lda, e->ta ? e->lda : 1};
  dnnl_dims_t sb = {e->tb ? 1 : e->ldb, e->tb ? e->ldb : 1};
  dnnl_dims_t sc = {e->ldc, 1};
  dnnl_primitive_attr_t attr = NULL;
  dnnl_post_ops_t po = NULL;
  dnnl_primitive_desc_t pd = NULL;
  dnnl_matmul_desc_t md;
  e->ok = 0;
  if (dnnl_memory_desc_init_by_strides(&ad, 2, da, dnnl_bf16, sa) != dnnl_success ||
      dnnl_memory_desc_init_by_strides(&bd, 2, db, dnnl_bf16, sb) != dnnl_success ||
      dnnl_memory_desc_init_by_strides(&cd, 2, dc, e->cbf16 ? dnnl_bf16 : dnnl_f32, sc) !=
          dnnl_success ||
      dnnl_matmul_desc_init(&md, &ad, &bd, NULL, &cd) != dnnl_success ||
      dnnl_primitive_attr_create(&attr) != dnnl_success)
    return;
  int good = 1;
  if (e->alpha != 1.0f)
    good = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &e->alpha) == dnnl_success;
  if (good && e->beta != 0.0f)
    good = dnnl_post_ops_create(&po) == dnnl_success &&
           dnnl_post_ops_append_sum(po, e->beta) == dnnl_success &&
           dnnl_primitive_attr_set_post_ops(attr, po) == dnnl_success;
  if (good) good = dnnl_primitive_desc_create(&pd, &md, attr, eng_, NULL) == dnnl_success;
  if (good && impl) {
    const char *s = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &s) == dnnl_success) *impl = s;
  }
  if (good) good = dnnl_primitive_create(&e->prim, pd) == dnnl_success;
  if (good)
    good = dnnl_memory_create(&e->a, &ad, eng_, DNNL_MEMORY_NONE) == dnnl_success &&
           dnnl_memory_create(&e->b, &bd, eng_, DNNL_MEMORY_NONE) == dnnl_success &&
           dnnl_memory_create(&e->c, &cd, eng_, DNNL_MEMORY_NONE) == dnnl_success;
  if (pd) dnnl_primitive_desc_destroy(pd);
  if (po) dnnl_post_ops_destroy(po);
  dnnl_primitive_attr_destroy(attr);
  if (!good) { /* keep the key (so the fallback is not retried each call), drop the rest */
    if (e->prim) dnnl_primitive_destroy(e->prim);
    if (e->a) dnnl_memory_destroy(e->a);
    if (e->b) dnnl_memory_destroy(e->b);
    e->prim = NULL, e->a = e->b = e->c = NULL;
    return;
  }
  e->ok = 1;
}

static int threads_(void) {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

static void init_(void) {
  cpu_feat_ f = cpu_features_();
  dnnl_ok_ = dnnl_engine_create(&eng_, dnnl_cpu, 0) == dnnl_success &&
             dnnl_stream_create(&strm_, eng_, dnnl_stream_default_flags) == dnnl_success;
  const dnnl_version_t *v = dnnl_version();
  /* A probe product shows which implementation oneDNN picks for bf16 here. Only one that
   * uses the CPU's bf16 instructions (AMX tiles, AVX512-BF16 dot products) is used: on other
   * CPUs oneDNN 2.6 emulates bf16 (gemm:jit), about 3x slower than widening to fp32 and
   * running OpenBLAS sgemm, which is then the best path. */
  char impl[128] = "none";
  if (dnnl_ok_) {
    const char *s = NULL;
    mm_entry_ p = {0, 0, 64, 64, 64, 64, 64, 64, 0, 1.0f, 0.0f, 0, NULL, NULL, NULL, NULL, 0};
    entry_build_(&p, &s);
    if (p.ok && s) snprintf(impl, sizeof impl, "%s", s);
    entry_release_(&p);
  }
  fast_ = strstr(impl, "avx512_core_bf16") || strstr(impl, "amx");
  char isa[160];
  if (f.amx_bf16)
    snprintf(isa, sizeof isa, "AMX-BF16 (tile data %s by the kernel)%s",
             f.amx_granted ? "granted" : "NOT granted", f.avx512_bf16 ? ", AVX512-BF16" : "");
  else if (f.avx512_bf16)
    snprintf(isa, sizeof isa, "AVX512-BF16, no AMX");
  else
    snprintf(isa, sizeof isa, "no AMX-BF16 or AVX512-BF16 instructions");
  if (fast_)
    snprintf(desc_, sizeof desc_, "bf16 products: oneDNN %d.%d.%d matmul %s (CPU: %s), %d threads",
             v->major, v->minor, v->patch, impl, isa, threads_());
  else {
    const char *cap = getenv("ONEDNN_MAX_CPU_ISA");
    snprintf(desc_, sizeof desc_,
             "bf16 products: this CPU has %s (oneDNN %d.%d.%d offers %s%s%s): operands widened "
             "to fp32 and multiplied by OpenBLAS sgemm, %d threads; bf16 saves memory here but "
             "is not faster than fp32",
             isa, v->major, v->minor, v->patch, impl, cap ? " under ONEDNN_MAX_CPU_ISA=" : "",
             cap ? cap : "", threads_());
  }
}

const char *kernels_cpu_bf16_description(int *fast) {
  pthread_once(&mm_once_, init_);
  if (fast) *fast = fast_;
  return desc_;
}

/* The cached entry of a problem, built on first use (under mm_mu_). */
static mm_entry_ *entry_get_(int ta, int tb, int M, int N, int K, int lda, int ldb, int ldc,
                             int cbf16, float alpha, float beta) {
  mm_entry_ *lru = NULL;
  for (int i = 0; i < ncache_; i++) {
    mm_entry_ *e = &cache_[i];
    if (e->ta == ta && e->tb == tb && e->M == M && e->N == N && e->K == K && e->lda == lda &&
        e->ldb == ldb && e->ldc == ldc && e->cbf16 == cbf16 && e->alpha == alpha &&
        e->beta == beta) {
      e->used = ++clock_;
      return e;
    }
    if (!lru || e->used < lru->used) lru = e;
  }
  mm_entry_ *e = ncache_ < MM_CACHE ? &cache_[ncache_++] : lru;
  entry_release_(e);
  *e = (mm_entry_){ta, tb, M, N, K, lda, ldb, ldc, cbf16, alpha, beta, 0, NULL, NULL, NULL,
                   NULL, ++clock_};
  if (fast_) entry_build_(e, NULL);
  return e;
}

/* fp32 fallback: widen op(A), op(B) as stored, sgemm, round C when it is bf16. */
static void gemm_fallback_(int ta, int tb, int M, int N, int K, float alpha, const bf16_t *A,
                           int lda, const bf16_t *B, int ldb, float beta, void *C, int cbf16,
                           int ldc) {
  size_t ra = ta ? (size_t)K : (size_t)M, rb = tb ? (size_t)N : (size_t)K;
  size_t ca = ta ? (size_t)M : (size_t)K, cb = tb ? (size_t)K : (size_t)N;
  float *a = xmalloc(ra * ca * sizeof *a), *b = xmalloc(rb * cb * sizeof *b);
  for (size_t r = 0; r < ra; r++) cpu_to_f32(a + r * ca, A + r * (size_t)lda, ca);
  for (size_t r = 0; r < rb; r++) cpu_to_f32(b + r * cb, B + r * (size_t)ldb, cb);
  if (!cbf16) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M,
                N, K, alpha, a, (int)ca, b, (int)cb, beta, C, ldc);
  } else {
    float *c = xmalloc((size_t)M * N * sizeof *c);
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M,
                N, K, alpha, a, (int)ca, b, (int)cb, 0.0f, c, N);
    for (int i = 0; i < M; i++)
      cpu_to_bf16((bf16_t *)C + (size_t)i * ldc, c + (size_t)i * N, (size_t)N);
    free(c);
  }
  free(a);
  free(b);
}

void cpu_gemm_bf16(int ta, int tb, int M, int N, int K, float alpha, const bf16_t *A, int lda,
                   const bf16_t *B, int ldb, float beta, void *C, int cbf16, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (cbf16 && beta != 0.0f) {
    log_error("kernels: gemm_bf16 with a bf16 C needs beta 0 (found %g)", (double)beta);
    abort();
  }
  if (K <= 0) { /* C = beta C */
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++) {
        if (cbf16) ((bf16_t *)C)[(size_t)i * ldc + j] = 0;
        else ((float *)C)[(size_t)i * ldc + j] *= beta;
      }
    return;
  }
  pthread_once(&mm_once_, init_);
  /* A long reduction (the lm_head's input gradient: K = the vocabulary) runs about 3x
   * faster in slices of KSLICE accumulated into the fp32 C (oneDNN 2.6's brgemm blocks a
   * K of 49,152 poorly: 184 against 565 GFLOP/s on one AMX core) */
  enum { KSLICE = 4096 };
  if (!cbf16 && fast_ && K > 2 * KSLICE) {
    for (int k0 = 0; k0 < K; k0 += KSLICE) {
      int kk = K - k0 < KSLICE ? K - k0 : KSLICE;
      const bf16_t *a = ta ? A + (size_t)k0 * lda : A + k0;
      const bf16_t *b = tb ? B + k0 : B + (size_t)k0 * ldb;
      cpu_gemm_bf16(ta, tb, M, N, kk, alpha, a, lda, b, ldb, k0 ? 1.0f : beta, C, 0, ldc);
    }
    return;
  }
  pthread_mutex_lock(&mm_mu_);
  mm_entry_ *e = entry_get_(ta, tb, M, N, K, lda, ldb, ldc, cbf16, alpha, beta);
  int ok = e->ok;
  if (ok) {
    dnnl_memory_set_data_handle(e->a, (void *)A);
    dnnl_memory_set_data_handle(e->b, (void *)B);
    dnnl_memory_set_data_handle(e->c, C);
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, e->a}, {DNNL_ARG_WEIGHTS, e->b},
                               {DNNL_ARG_DST, e->c}};
    /* a primitive that was created runs (or C is half written: no fallback then) */
    if (dnnl_primitive_execute(e->prim, strm_, 3, args) != dnnl_success ||
        dnnl_stream_wait(strm_) != dnnl_success) {
      log_error("kernels: oneDNN matmul %dx%dx%d failed to execute", M, N, K);
      abort();
    }
  }
  pthread_mutex_unlock(&mm_mu_);
  if (!ok) gemm_fallback_(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, cbf16, ldc);
}
