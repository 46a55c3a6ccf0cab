/* Every kernel of kernels.h, run through a kernel table T the way the model uses it (inputs
 * uploaded into T's compute memory, results downloaded), compared with the CPU table run on
 * host memory, on awkward shapes (odd sizes, grouped KV heads, sliding windows, ignored
 * targets, empty inputs); plus finite-difference checks of the backward kernels through T,
 * and the attention forward against a direct double-precision evaluation of its formula.
 *
 * T = cpu (the harness itself, through upload/download), T = guard (compute memory fenced
 * off from the host), and, where a GPU is found, T = cuda in fp32 (tight tolerance) and in
 * bf16 (matrix products on bf16 tensor cores: looser tolerance on products). The bf16
 * entries (to_bf16, to_f32, add_bf16, gemm_bf16, embed_forward_bf16) are compared with the
 * CPU table's (oneDNN) on every backend: rounding bit for bit. Without a GPU
 * the CUDA parts print SKIP lines; the test still fails if any CPU part fails. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/gpu.h"
#include "kernels/kernels.h"
#include "test.h"

typedef struct {
  const kernels *T;
  const char *label;
  double tol;    /* elementwise kernels and reductions */
  double tol_mm; /* matrix products and attention */
  int fd;        /* finite differences through T (fp32 products only) */
} backend;

static const kernels *R; /* the reference: the CPU table, on host memory */

/* ---- helpers ------------------------------------------------------------------------- */
static uint64_t rng_ = 0x9e3779b97f4a7c15ull;
static double urand_(void) { /* [0, 1) */
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 7;
  rng_ ^= rng_ << 17;
  return (double)(rng_ >> 11) / 9007199254740992.0;
}
static float *hrand_(size_t n, double lo, double hi) {
  float *x = malloc((n ? n : 1) * sizeof *x);
  for (size_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * urand_());
  return x;
}
static float *hdup_(const float *x, size_t n) {
  float *y = malloc((n ? n : 1) * sizeof *y);
  if (n) memcpy(y, x, n * sizeof *y);
  return y;
}
static void *up_(const kernels *T, const void *h, size_t bytes) {
  void *d = T->alloc(bytes);
  CHECK_MSG(d != NULL, "%s: alloc(%zu) failed", T->name, bytes);
  if (d && bytes) T->upload(d, h, bytes);
  return d;
}
static float *upf_(const kernels *T, const float *h, size_t n) {
  return up_(T, h, n * sizeof(float));
}
static float *down_(const kernels *T, const float *d, size_t n) {
  float *h = malloc((n ? n : 1) * sizeof *h);
  if (n) T->download(h, d, n * sizeof *h);
  return h;
}

/* |got - want| <= tol (|want| + rms(want)) elementwise; on failure, the worst element. */
static void close_(const backend *b, const char *what, const float *got, const float *want,
                   size_t n, double tol) {
  double ss = 0;
  for (size_t i = 0; i < n; i++) ss += (double)want[i] * want[i];
  double rms = n ? sqrt(ss / n) : 0;
  size_t bad = 0, worst = 0;
  double worst_ratio = 0;
  for (size_t i = 0; i < n; i++) {
    double err = fabs((double)got[i] - want[i]), lim = tol * (fabs(want[i]) + rms);
    double ratio = lim > 0 ? err / lim : (err > 0 ? INFINITY : 0);
    if (!(err <= lim) || got[i] != got[i]) bad++;
    if (!(ratio <= worst_ratio)) {
      worst_ratio = ratio;
      worst = i;
    }
  }
  CHECK_MSG(bad == 0, "%s %s: %zu of %zu elements off (tol %.1e), worst [%zu] %.9g vs %.9g",
            b->label, what, bad, n, tol, worst, n ? got[worst] : 0.0, n ? want[worst] : 0.0);
}
/* download d and compare with the host reference */
static void close_dev_(const backend *b, const char *what, const float *d, const float *want,
                       size_t n, double tol) {
  float *got = down_(b->T, d, n);
  close_(b, what, got, want, n, tol);
  free(got);
}

/* ---- memory ---------------------------------------------------------------------------- */
static void t_memory_(const backend *b) {
  const kernels *T = b->T;
  size_t n = 1001;
  float *d = T->alloc(n * sizeof(float));
  CHECK(d != NULL);
  float *h = down_(T, d, n);
  size_t nonzero = 0;
  for (size_t i = 0; i < n; i++) nonzero += h[i] != 0.0f;
  CHECK_MSG(nonzero == 0, "%s: alloc is not zeroed (%zu nonzero)", b->label, nonzero);
  /* upload, then reuse the source at once: the compute copy must keep the first values */
  float *src = hrand_(n, -1, 1), *keep = hdup_(src, n);
  T->upload(d, src, n * sizeof(float));
  for (size_t i = 0; i < n; i++) src[i] = 7.0f;
  close_dev_(b, "upload (source reused at once)", d, keep, n, 0);
  /* pinned host memory: zeroed, usable on both sides of the copies */
  float *ph = T->host_alloc(n * sizeof(float));
  CHECK(ph != NULL);
  if (ph) {
    nonzero = 0;
    for (size_t i = 0; i < n; i++) nonzero += ph[i] != 0.0f;
    CHECK_MSG(nonzero == 0, "%s: host_alloc is not zeroed", b->label);
    T->download(ph, d, n * sizeof(float));
    close_(b, "download into host_alloc memory", ph, keep, n, 0);
    for (size_t i = 0; i < n; i++) ph[i] = (float)i;
    float *d2 = T->alloc(n * sizeof(float));
    T->upload(d2, ph, n * sizeof(float));
    for (size_t i = 0; i < n; i++) ph[i] = -1.0f; /* reused after upload returned */
    float *want = malloc(n * sizeof *want);
    for (size_t i = 0; i < n; i++) want[i] = (float)i;
    close_dev_(b, "upload from host_alloc memory", d2, want, n, 0);
    /* copy: disjoint, empty, onto itself, overlapping both ways (memmove) */
    T->copy(d2, d, n);
    close_dev_(b, "copy", d2, keep, n, 0);
    T->copy(d2, d, 0);
    T->copy(d2, d2, n);
    close_dev_(b, "copy onto itself", d2, keep, n, 0);
    T->copy(d2 + 3, d2, n - 3);
    memmove(want, keep, n * sizeof *want);
    memmove(want + 3, keep, (n - 3) * sizeof *want);
    close_dev_(b, "overlapping copy (forward)", d2, want, n, 0);
    T->copy(d2, d2 + 5, n - 5);
    memmove(want, want + 5, (n - 5) * sizeof *want);
    close_dev_(b, "overlapping copy (backward)", d2, want, n, 0);
    /* zero: a range, and nothing */
    T->zero(d2 + 10, 20);
    T->zero(d2, 0);
    for (size_t i = 10; i < 30; i++) want[i] = 0.0f;
    close_dev_(b, "zero", d2, want, n, 0);
    T->sync();
    T->free(d2);
    free(want);
    T->host_free(ph);
  }
  void *z = T->alloc(0);
  CHECK_MSG(z != NULL, "%s: alloc(0) returned NULL", b->label);
  T->free(z);
  T->free(NULL);
  T->free(d);
  free(h);
  free(src);
  free(keep);
}

/* ---- gemm ------------------------------------------------------------------------------ */
static void gemm_case_(const backend *b, int ta, int tb, int M, int N, int K, float alpha,
                       float beta, int pad) {
  int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
  int lda = ac + pad, ldb = bc + pad, ldc = N + pad;
  size_t na = (size_t)ar * lda, nb = (size_t)br * ldb, nc = (size_t)M * ldc;
  float *A = hrand_(na, -1, 1), *B = hrand_(nb, -1, 1), *C = hrand_(nc, -1, 1);
  float *Cref = hdup_(C, nc);
  R->gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, Cref, ldc);
  float *dA = upf_(b->T, A, na), *dB = upf_(b->T, B, nb), *dC = upf_(b->T, C, nc);
  b->T->gemm(ta, tb, M, N, K, alpha, dA, lda, dB, ldb, beta, dC, ldc);
  char what[96];
  snprintf(what, sizeof what, "gemm ta=%d tb=%d M=%d N=%d K=%d beta=%g", ta, tb, M, N, K, beta);
  close_dev_(b, what, dC, Cref, nc, K > 0 ? b->tol_mm : b->tol);
  b->T->free(dA);
  b->T->free(dB);
  b->T->free(dC);
  free(A);
  free(B);
  free(C);
  free(Cref);
}
static void t_gemm_(const backend *b) {
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) {
      gemm_case_(b, ta, tb, 37, 19, 23, 0.7f, 0.0f, 0);
      gemm_case_(b, ta, tb, 37, 19, 23, 0.7f, 0.3f, 3);
      gemm_case_(b, ta, tb, 5, 130, 301, -1.0f, 1.0f, 1);
    }
  gemm_case_(b, 0, 0, 6, 7, 0, 1.0f, 0.5f, 2); /* K = 0: C = beta C */
  gemm_case_(b, 0, 1, 0, 7, 5, 1.0f, 0.5f, 0); /* M = 0: nothing */
  gemm_case_(b, 1, 0, 4, 0, 5, 1.0f, 0.5f, 0); /* N = 0: nothing */
}

/* ---- embedding ------------------------------------------------------------------------- */
static void t_embed_(const backend *b) {
  const kernels *T = b->T;
  int Ns[2] = {13, 0};
  for (int c = 0; c < 2; c++) {
    int N = Ns[c], C = 7, V = 11;
    int32_t *tok = malloc((N ? N : 1) * sizeof *tok);
    for (int n = 0; n < N; n++) tok[n] = n < 4 ? 3 : (int32_t)(urand_() * V); /* repeats */
    float *emb = hrand_((size_t)V * C, -1, 1), *out = hrand_((size_t)N * C, -1, 1);
    float *dout = hrand_((size_t)N * C, -1, 1), *demb = hrand_((size_t)V * C, -1, 1);
    float *ref_out = hdup_(out, (size_t)N * C), *ref_demb = hdup_(demb, (size_t)V * C);
    R->embed_forward(ref_out, tok, emb, N, C);
    R->embed_backward(ref_demb, dout, tok, N, C);
    int32_t *dtok = up_(T, tok, (size_t)N * sizeof *tok);
    float *demb_d = upf_(T, emb, (size_t)V * C), *dout_d = upf_(T, out, (size_t)N * C);
    T->embed_forward(dout_d, dtok, demb_d, N, C);
    close_dev_(b, "embed_forward", dout_d, ref_out, (size_t)N * C, b->tol);
    float *g_d = upf_(T, dout, (size_t)N * C), *acc_d = upf_(T, demb, (size_t)V * C);
    T->embed_backward(acc_d, g_d, dtok, N, C);
    close_dev_(b, "embed_backward", acc_d, ref_demb, (size_t)V * C, b->tol);
    T->free(dtok);
    T->free(demb_d);
    T->free(dout_d);
    T->free(g_d);
    T->free(acc_d);
    free(tok);
    free(emb);
    free(out);
    free(dout);
    free(demb);
    free(ref_out);
    free(ref_demb);
  }
}

/* ---- RMSNorm --------------------------------------------------------------------------- */
static void rmsnorm_case_(const backend *b, int N, int C) {
  const kernels *T = b->T;
  size_t nx = (size_t)N * C;
  float eps = 1e-5f;
  float *x = hrand_(nx, -2, 2), *w = hrand_((size_t)C, 0.5, 1.5), *g = hrand_(nx, -1, 1);
  float *out = malloc((nx ? nx : 1) * sizeof *out), *rstd = malloc((N ? N : 1) * sizeof *rstd);
  R->rmsnorm_forward(out, rstd, x, w, N, C, eps);
  float *dx_d = upf_(T, x, nx), *w_d = upf_(T, w, (size_t)C), *o_d = T->alloc(nx * 4 + 4);
  float *r_d = T->alloc((size_t)N * 4 + 4);
  T->rmsnorm_forward(o_d, r_d, dx_d, w_d, N, C, eps);
  close_dev_(b, "rmsnorm_forward out", o_d, out, nx, b->tol);
  close_dev_(b, "rmsnorm_forward rstd", r_d, rstd, (size_t)N, b->tol);
  /* backward variants: (dx =, dw +=), (dx +=), (dw NULL), (dx NULL), dx aliasing dout */
  float *g_d = upf_(T, g, nx);
  for (int v = 0; v < 5; v++) {
    float *dx0 = hrand_(nx, -1, 1), *dw0 = hrand_((size_t)C, -1, 1);
    float *dx = hdup_(dx0, nx), *dw = hdup_(dw0, (size_t)C);
    int acc = v == 1;
    float *gin = v == 4 ? dx : g;
    if (v == 4) memcpy(dx, g, nx * sizeof *dx);
    R->rmsnorm_backward(v == 3 ? NULL : dx, v == 2 ? NULL : dw, gin, x, w, rstd, N, C, acc);
    float *ddx = upf_(T, v == 4 ? g : dx0, nx), *ddw = upf_(T, dw0, (size_t)C);
    T->rmsnorm_backward(v == 3 ? NULL : ddx, v == 2 ? NULL : ddw, v == 4 ? ddx : g_d, dx_d, w_d,
                        r_d, N, C, acc);
    char what[80];
    snprintf(what, sizeof what, "rmsnorm_backward variant %d N=%d C=%d dx", v, N, C);
    close_dev_(b, what, ddx, v == 3 ? (v == 4 ? g : dx0) : dx, nx, b->tol);
    snprintf(what, sizeof what, "rmsnorm_backward variant %d N=%d C=%d dw", v, N, C);
    close_dev_(b, what, ddw, v == 2 ? dw0 : dw, (size_t)C, b->tol);
    T->free(ddx);
    T->free(ddw);
    free(dx0);
    free(dw0);
    free(dx);
    free(dw);
  }
  T->free(dx_d);
  T->free(w_d);
  T->free(o_d);
  T->free(r_d);
  T->free(g_d);
  free(x);
  free(w);
  free(g);
  free(out);
  free(rstd);
}
static void t_rmsnorm_(const backend *b) {
  rmsnorm_case_(b, 9, 33);
  rmsnorm_case_(b, 3, 1000);
  rmsnorm_case_(b, 130, 5);
  rmsnorm_case_(b, 0, 8);
}

/* ---- bias -------------------------------------------------------------------------------- */
static void t_bias_(const backend *b) {
  const kernels *T = b->T;
  int N = 70, M = 19;
  size_t ny = (size_t)N * M;
  float *y = hrand_(ny, -1, 1), *bb = hrand_((size_t)M, -1, 1), *db = hrand_((size_t)M, -1, 1);
  float *yr = hdup_(y, ny), *dbr = hdup_(db, (size_t)M);
  R->bias_forward(yr, bb, N, M);
  R->bias_backward(dbr, y, N, M);
  float *y_d = upf_(T, y, ny), *b_d = upf_(T, bb, (size_t)M), *db_d = upf_(T, db, (size_t)M);
  T->bias_backward(db_d, y_d, N, M);
  T->bias_forward(y_d, b_d, N, M);
  close_dev_(b, "bias_forward", y_d, yr, ny, b->tol);
  close_dev_(b, "bias_backward", db_d, dbr, (size_t)M, b->tol);
  T->bias_forward(y_d, b_d, 0, M);
  T->bias_backward(db_d, y_d, 0, M);
  close_dev_(b, "bias_backward N=0", db_d, dbr, (size_t)M, b->tol);
  T->free(y_d);
  T->free(b_d);
  T->free(db_d);
  free(y);
  free(bb);
  free(db);
  free(yr);
  free(dbr);
}

/* ---- RoPE -------------------------------------------------------------------------------- */
static void rope_tables_(int T, int D, float **c, float **s) {
  int half = D / 2;
  *c = malloc((size_t)T * half * sizeof **c);
  *s = malloc((size_t)T * half * sizeof **s);
  for (int t = 0; t < T; t++)
    for (int i = 0; i < half; i++) {
      double a = t * pow(10000.0, -2.0 * i / D);
      (*c)[t * half + i] = (float)cos(a);
      (*s)[t * half + i] = (float)sin(a);
    }
}
static void t_rope_(const backend *b) {
  const kernels *T = b->T;
  int B = 2, Tn = 5, nh = 3, D = 8;
  size_t n = (size_t)B * Tn * nh * D;
  float *c, *s;
  rope_tables_(Tn, D, &c, &s);
  float *x = hrand_(n, -1, 1), *xf = hdup_(x, n), *xb = hdup_(x, n);
  R->rope_forward(xf, c, s, B, Tn, nh, D);
  R->rope_backward(xb, c, s, B, Tn, nh, D);
  size_t nt = (size_t)Tn * (D / 2);
  float *c_d = upf_(T, c, nt), *s_d = upf_(T, s, nt), *x_d = upf_(T, x, n), *y_d = upf_(T, x, n);
  T->rope_forward(x_d, c_d, s_d, B, Tn, nh, D);
  close_dev_(b, "rope_forward", x_d, xf, n, b->tol);
  T->rope_backward(y_d, c_d, s_d, B, Tn, nh, D);
  close_dev_(b, "rope_backward", y_d, xb, n, b->tol);
  T->rope_backward(x_d, c_d, s_d, B, Tn, nh, D); /* the inverse of the forward */
  close_dev_(b, "rope_backward(rope_forward(x)) = x", x_d, x, n, b->tol + 1e-6);
  T->free(c_d);
  T->free(s_d);
  T->free(x_d);
  T->free(y_d);
  free(c);
  free(s);
  free(x);
  free(xf);
  free(xb);
}

/* ---- attention --------------------------------------------------------------------------- */
typedef struct {
  int B, T, H, KV, D, window;
} attn_shape;

/* out and lse straight from the formula, in double */
static void attn_naive_(const attn_shape *a, const float *q, const float *k, const float *v,
                        float *out, float *lse) {
  int HD = a->H * a->D, KVD = a->KV * a->D, rep = a->H / a->KV;
  double scale = 1.0 / sqrt((double)a->D);
  double *p = malloc((size_t)a->T * sizeof *p);
  for (int b = 0; b < a->B; b++)
    for (int h = 0; h < a->H; h++)
      for (int t = 0; t < a->T; t++) {
        const float *qr = q + ((size_t)b * a->T + t) * HD + (size_t)h * a->D;
        int lo = a->window > 0 && t - a->window + 1 > 0 ? t - a->window + 1 : 0;
        double mx = -INFINITY, sum = 0;
        for (int j = lo; j <= t; j++) {
          const float *kr = k + ((size_t)b * a->T + j) * KVD + (size_t)(h / rep) * a->D;
          double sc = 0;
          for (int d = 0; d < a->D; d++) sc += (double)qr[d] * kr[d];
          p[j] = sc * scale;
          mx = p[j] > mx ? p[j] : mx;
        }
        for (int j = lo; j <= t; j++) sum += exp(p[j] - mx);
        double l = mx + log(sum);
        lse[((size_t)b * a->H + h) * a->T + t] = (float)l;
        float *o = out + ((size_t)b * a->T + t) * HD + (size_t)h * a->D;
        for (int d = 0; d < a->D; d++) {
          double s = 0;
          for (int j = lo; j <= t; j++)
            s += exp(p[j] - l) *
                 v[((size_t)b * a->T + j) * KVD + (size_t)(h / rep) * a->D + d];
          o[d] = (float)s;
        }
      }
  free(p);
}

static void attn_case_(const backend *b, attn_shape a, const char *rows_env) {
  const kernels *T = b->T;
  if (rows_env)
    setenv("SPECTRAIN_ATTN_BLOCK_ROWS", rows_env, 1);
  else
    unsetenv("SPECTRAIN_ATTN_BLOCK_ROWS");
  size_t N = (size_t)a.B * a.T, nq = N * a.H * a.D, nk = N * a.KV * a.D;
  size_t nl = (size_t)a.B * a.H * a.T;
  float *q = hrand_(nq, -1.5, 1.5), *k = hrand_(nk, -1.5, 1.5), *v = hrand_(nk, -1, 1);
  float *dout = hrand_(nq, -1, 1);
  float *out = malloc(nq * sizeof *out), *lse = malloc(nl * sizeof *lse);
  float *nout = malloc(nq * sizeof *nout), *nlse = malloc(nl * sizeof *nlse);
  float *dq = malloc(nq * sizeof *dq), *dk = malloc(nk * sizeof *dk), *dv = malloc(nk * sizeof *dv);
  size_t rs = R->attention_scratch_floats(a.B, a.T, a.H, a.KV, a.D);
  float *rscr = calloc(rs ? rs : 1, sizeof *rscr);
  R->attention_forward(out, lse, rscr, q, k, v, a.B, a.T, a.H, a.KV, a.D, a.window);
  R->attention_backward(dq, dk, dv, rscr, dout, out, lse, q, k, v, a.B, a.T, a.H, a.KV, a.D,
                        a.window);
  attn_naive_(&a, q, k, v, nout, nlse);

  size_t ts = T->attention_scratch_floats(a.B, a.T, a.H, a.KV, a.D);
  float *scr = T->alloc((ts ? ts : 1) * sizeof(float));
  float *q_d = upf_(T, q, nq), *k_d = upf_(T, k, nk), *v_d = upf_(T, v, nk);
  float *do_d = upf_(T, dout, nq), *o_d = T->alloc(nq * 4), *l_d = T->alloc(nl * 4);
  /* outputs start as garbage: the kernels must write (=) them */
  float *junk = hrand_(nq > nk ? nq : nk, 5, 9);
  float *dq_d = upf_(T, junk, nq), *dk_d = upf_(T, junk, nk), *dv_d = upf_(T, junk, nk);
  T->upload(o_d, junk, nq * 4);
  T->attention_forward(o_d, l_d, scr, q_d, k_d, v_d, a.B, a.T, a.H, a.KV, a.D, a.window);
  T->attention_backward(dq_d, dk_d, dv_d, scr, do_d, o_d, l_d, q_d, k_d, v_d, a.B, a.T, a.H,
                        a.KV, a.D, a.window);
  char what[128];
  int len = snprintf(what, sizeof what, "attention B=%d T=%d H=%d KV=%d D=%d window=%d rows=%s",
                     a.B, a.T, a.H, a.KV, a.D, a.window, rows_env ? rows_env : "default");
  char *tail = what + len;
  size_t room = sizeof what - (size_t)len;
  snprintf(tail, room, " out");
  close_dev_(b, what, o_d, out, nq, b->tol_mm);
  snprintf(tail, room, " lse");
  close_dev_(b, what, l_d, lse, nl, b->tol_mm);
  snprintf(tail, room, " out vs formula");
  close_dev_(b, what, o_d, nout, nq, b->tol_mm > 1e-4 ? b->tol_mm : 1e-4);
  snprintf(tail, room, " lse vs formula");
  close_dev_(b, what, l_d, nlse, nl, b->tol_mm > 1e-4 ? b->tol_mm : 1e-4);
  snprintf(tail, room, " dq");
  close_dev_(b, what, dq_d, dq, nq, b->tol_mm);
  snprintf(tail, room, " dk");
  close_dev_(b, what, dk_d, dk, nk, b->tol_mm);
  snprintf(tail, room, " dv");
  close_dev_(b, what, dv_d, dv, nk, b->tol_mm);
  T->free(scr);
  T->free(q_d);
  T->free(k_d);
  T->free(v_d);
  T->free(do_d);
  T->free(o_d);
  T->free(l_d);
  T->free(dq_d);
  T->free(dk_d);
  T->free(dv_d);
  free(q);
  free(k);
  free(v);
  free(dout);
  free(out);
  free(lse);
  free(nout);
  free(nlse);
  free(dq);
  free(dk);
  free(dv);
  free(rscr);
  free(junk);
  unsetenv("SPECTRAIN_ATTN_BLOCK_ROWS");
}
static void t_attention_(const backend *b) {
  static const attn_shape shapes[] = {
      {2, 13, 4, 2, 8, 0},  /* GQA, causal */
      {1, 37, 3, 1, 16, 5}, /* multi-query, sliding window */
      {2, 1, 2, 2, 4, 0},   /* one position */
      {1, 20, 2, 2, 8, 1},  /* window 1: each position sees only itself */
      {1, 23, 6, 3, 8, 64}, /* window longer than the sequence */
      {3, 9, 4, 4, 5, 3},   /* odd head size, no grouping */
  };
  for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
    attn_case_(b, shapes[i], NULL);
    attn_case_(b, shapes[i], "7"); /* CUDA: several query blocks, the last one short */
  }
  attn_case_(b, shapes[1], "1");
}

/* ---- SwiGLU, add, scale, sum of squares ------------------------------------------------- */
static void t_elementwise_(const backend *b) {
  const kernels *T = b->T;
  size_t ns[2] = {1001, 0};
  for (int c = 0; c < 2; c++) {
    size_t n = ns[c];
    float *g = hrand_(n, -6, 6), *u = hrand_(n, -2, 2), *dh = hrand_(n, -1, 1);
    float *h = malloc((n ? n : 1) * 4), *dg = malloc((n ? n : 1) * 4), *du = malloc((n ? n : 1) * 4);
    R->swiglu_forward(h, g, u, n);
    R->swiglu_backward(dg, du, dh, g, u, n);
    float *g_d = upf_(T, g, n), *u_d = upf_(T, u, n), *dh_d = upf_(T, dh, n);
    float *h_d = T->alloc(n * 4), *dg_d = T->alloc(n * 4), *du_d = T->alloc(n * 4);
    T->swiglu_forward(h_d, g_d, u_d, n);
    close_dev_(b, "swiglu_forward", h_d, h, n, b->tol);
    T->swiglu_backward(dg_d, du_d, dh_d, g_d, u_d, n);
    close_dev_(b, "swiglu_backward dgate", dg_d, dg, n, b->tol);
    close_dev_(b, "swiglu_backward dup", du_d, du, n, b->tol);
    T->swiglu_backward(g_d, u_d, dh_d, g_d, u_d, n); /* in place */
    close_dev_(b, "swiglu_backward in place dgate", g_d, dg, n, b->tol);
    close_dev_(b, "swiglu_backward in place dup", u_d, du, n, b->tol);
    /* add, scale */
    float *y = hdup_(dh, n);
    R->add(y, h, n);
    R->scale(y, -0.37f, n);
    T->add(dh_d, h_d, n);
    T->scale(dh_d, -0.37f, n);
    close_dev_(b, "add + scale", dh_d, y, n, b->tol);
    /* sum of squares (double) */
    double want = R->sum_squares(y, n), got = T->sum_squares(dh_d, n);
    CHECK_MSG(fabs(got - want) <= 1e-6 * fabs(want), "%s sum_squares n=%zu: %.17g vs %.17g",
              b->label, n, got, want);
    T->free(g_d);
    T->free(u_d);
    T->free(dh_d);
    T->free(h_d);
    T->free(dg_d);
    T->free(du_d);
    free(g);
    free(u);
    free(dh);
    free(h);
    free(dg);
    free(du);
    free(y);
  }
  /* a long sum of squares: many blocks on a GPU */
  size_t n = 300007;
  float *x = hrand_(n, -3, 3);
  float *x_d = upf_(T, x, n);
  double want = R->sum_squares(x, n), got = T->sum_squares(x_d, n);
  CHECK_MSG(fabs(got - want) <= 1e-9 * want, "%s sum_squares n=%zu: %.17g vs %.17g", b->label, n,
            got, want);
  T->free(x_d);
  free(x);
}

/* ---- cross-entropy ------------------------------------------------------------------------ */
static void ce_case_(const backend *b, int N, int V, int n_ignored) {
  const kernels *T = b->T;
  size_t nl = (size_t)N * V;
  float *logits = hrand_(nl, -4, 4);
  int32_t *tg = malloc((N ? N : 1) * sizeof *tg);
  for (int n = 0; n < N; n++) tg[n] = n < n_ignored ? MODEL_IGNORE_INDEX : (int32_t)(urand_() * V);
  if (N > 3) { /* large logits in one row, very negative ones in another */
    for (int j = 0; j < V; j++) logits[(size_t)(N - 1) * V + j] += 80.0f;
    for (int j = 0; j < V; j++) logits[(size_t)(N - 2) * V + j] -= 80.0f;
    tg[N - 1] = V - 1;
  }
  float *lse = malloc((N ? N : 1) * sizeof *lse), *grad = hdup_(logits, nl);
  double loss_r = 1.5;
  int64_t cnt_r = 3;
  R->cross_entropy_forward(lse, logits, tg, N, V, &loss_r, &cnt_r);
  float scale = cnt_r > 3 ? 1.0f / (float)(cnt_r - 3) : 1.0f;
  R->cross_entropy_backward(grad, lse, tg, N, V, scale);
  float *lg_d = upf_(T, logits, nl), *l_d = T->alloc((size_t)N * 4);
  int32_t *tg_d = up_(T, tg, (size_t)N * sizeof *tg);
  double loss = 1.5;
  int64_t cnt = 3;
  T->cross_entropy_forward(l_d, lg_d, tg_d, N, V, &loss, &cnt);
  char what[96];
  snprintf(what, sizeof what, "cross_entropy N=%d V=%d ignored=%d", N, V, n_ignored);
  CHECK_MSG(cnt == cnt_r, "%s %s: counted %lld, want %lld", b->label, what, (long long)cnt,
            (long long)cnt_r);
  CHECK_MSG(fabs(loss - loss_r) <= 1e-5 * fabs(loss_r), "%s %s: loss %.12g, want %.12g",
            b->label, what, loss, loss_r);
  close_dev_(b, what, l_d, lse, (size_t)N, b->tol);
  T->cross_entropy_backward(lg_d, l_d, tg_d, N, V, scale);
  close_dev_(b, what, lg_d, grad, nl, b->tol);
  T->free(lg_d);
  T->free(l_d);
  T->free(tg_d);
  free(logits);
  free(tg);
  free(lse);
  free(grad);
}
static void t_cross_entropy_(const backend *b) {
  ce_case_(b, 11, 37, 2);
  ce_case_(b, 5, 3001, 1);
  ce_case_(b, 4, 9, 4); /* every target ignored */
  ce_case_(b, 0, 9, 0);
}

/* ---- AdamW ----------------------------------------------------------------------------------- */
static void t_adamw_(const backend *b) {
  const kernels *T = b->T;
  size_t n = 1001;
  float *p = hrand_(n, -1, 1), *m = calloc(n, 4), *v = calloc(n, 4);
  float *p_d = upf_(T, p, n), *m_d = T->alloc(n * 4), *v_d = T->alloc(n * 4);
  for (long step = 1; step <= 3; step++) {
    float *g = hrand_(n, -0.1, 0.1);
    float *g_d = upf_(T, g, n);
    R->adamw(p, g, m, v, n, 1e-3f, 0.9f, 0.999f, 1e-8f, step == 2 ? 0.0f : 0.1f, step);
    T->adamw(p_d, g_d, m_d, v_d, n, 1e-3f, 0.9f, 0.999f, 1e-8f, step == 2 ? 0.0f : 0.1f, step);
    T->adamw(p_d, g_d, m_d, v_d, 0, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.1f, step);
    T->free(g_d);
    free(g);
  }
  close_dev_(b, "adamw param", p_d, p, n, b->tol);
  close_dev_(b, "adamw m", m_d, m, n, b->tol);
  close_dev_(b, "adamw v", v_d, v, n, b->tol);
  T->free(p_d);
  T->free(m_d);
  T->free(v_d);
  free(p);
  free(m);
  free(v);
}

/* ---- finite differences through T ------------------------------------------------------------ */
/* loss(ctx) = sum(forward output * weights), with the inputs taken from host arrays */
typedef double (*loss_fn_)(void *ctx);

static void fd_check_(const backend *b, const char *what, loss_fn_ f, void *ctx, float *x,
                      size_t n, const float *grad, double h) {
  double ss = 0;
  for (size_t i = 0; i < n; i++) ss += (double)grad[i] * grad[i];
  double rms = n ? sqrt(ss / n) : 0;
  int picks = n < 12 ? (int)n : 12;
  for (int k = 0; k < picks; k++) {
    size_t i = (size_t)(urand_() * n);
    float old = x[i], xp = old + (float)h, xm = old - (float)h;
    x[i] = xp;
    double lp = f(ctx);
    x[i] = xm;
    double lm = f(ctx);
    x[i] = old;
    double num = (lp - lm) / ((double)xp - xm);
    CHECK_MSG(fabs(num - grad[i]) <= 2e-2 * (fabs(grad[i]) + rms),
              "%s finite differences %s[%zu]: numeric %.6g, backward %.6g", b->label, what, i, num,
              grad[i]);
  }
}
static double dot_down_(const kernels *T, const float *d, const float *w, size_t n) {
  float *h = down_(T, d, n);
  double s = 0;
  for (size_t i = 0; i < n; i++) s += (double)h[i] * w[i];
  free(h);
  return s;
}

typedef struct {
  const kernels *T;
  int N, C;
  float *x, *w, *wt;
} rms_ctx;
static double rms_loss_(void *p) {
  rms_ctx *c = p;
  size_t n = (size_t)c->N * c->C;
  float *x = upf_(c->T, c->x, n), *w = upf_(c->T, c->w, (size_t)c->C);
  float *o = c->T->alloc(n * 4), *r = c->T->alloc((size_t)c->N * 4);
  c->T->rmsnorm_forward(o, r, x, w, c->N, c->C, 1e-5f);
  double l = dot_down_(c->T, o, c->wt, n);
  c->T->free(x);
  c->T->free(w);
  c->T->free(o);
  c->T->free(r);
  return l;
}
static void fd_rmsnorm_(const backend *b) {
  const kernels *T = b->T;
  rms_ctx c = {T, 5, 17, hrand_(85, -2, 2), hrand_(17, 0.5, 1.5), hrand_(85, -1, 1)};
  size_t n = 85;
  float *x = upf_(T, c.x, n), *w = upf_(T, c.w, 17), *o = T->alloc(n * 4), *r = T->alloc(5 * 4);
  float *g = upf_(T, c.wt, n), *dx = T->alloc(n * 4), *dw = T->alloc(17 * 4);
  T->rmsnorm_forward(o, r, x, w, 5, 17, 1e-5f);
  T->rmsnorm_backward(dx, dw, g, x, w, r, 5, 17, 0);
  float *hdx = down_(T, dx, n), *hdw = down_(T, dw, 17);
  fd_check_(b, "rmsnorm dx", rms_loss_, &c, c.x, n, hdx, 1e-2);
  fd_check_(b, "rmsnorm dw", rms_loss_, &c, c.w, 17, hdw, 1e-2);
  T->free(x);
  T->free(w);
  T->free(o);
  T->free(r);
  T->free(g);
  T->free(dx);
  T->free(dw);
  free(hdx);
  free(hdw);
  free(c.x);
  free(c.w);
  free(c.wt);
}

typedef struct {
  const kernels *T;
  size_t n;
  float *gate, *up, *wt;
} swiglu_ctx;
static double swiglu_loss_(void *p) {
  swiglu_ctx *c = p;
  float *g = upf_(c->T, c->gate, c->n), *u = upf_(c->T, c->up, c->n), *h = c->T->alloc(c->n * 4);
  c->T->swiglu_forward(h, g, u, c->n);
  double l = dot_down_(c->T, h, c->wt, c->n);
  c->T->free(g);
  c->T->free(u);
  c->T->free(h);
  return l;
}
static void fd_swiglu_(const backend *b) {
  const kernels *T = b->T;
  size_t n = 50;
  swiglu_ctx c = {T, n, hrand_(n, -4, 4), hrand_(n, -2, 2), hrand_(n, -1, 1)};
  float *g = upf_(T, c.gate, n), *u = upf_(T, c.up, n), *dh = upf_(T, c.wt, n);
  float *dg = T->alloc(n * 4), *du = T->alloc(n * 4);
  T->swiglu_backward(dg, du, dh, g, u, n);
  float *hdg = down_(T, dg, n), *hdu = down_(T, du, n);
  fd_check_(b, "swiglu dgate", swiglu_loss_, &c, c.gate, n, hdg, 1e-2);
  fd_check_(b, "swiglu dup", swiglu_loss_, &c, c.up, n, hdu, 1e-2);
  T->free(g);
  T->free(u);
  T->free(dh);
  T->free(dg);
  T->free(du);
  free(hdg);
  free(hdu);
  free(c.gate);
  free(c.up);
  free(c.wt);
}

typedef struct {
  const kernels *T;
  int B, Tn, nh, D;
  float *x, *c, *s, *wt;
} rope_ctx;
static double rope_loss_(void *p) {
  rope_ctx *c = p;
  size_t n = (size_t)c->B * c->Tn * c->nh * c->D, nt = (size_t)c->Tn * (c->D / 2);
  float *x = upf_(c->T, c->x, n), *cs = upf_(c->T, c->c, nt), *sn = upf_(c->T, c->s, nt);
  c->T->rope_forward(x, cs, sn, c->B, c->Tn, c->nh, c->D);
  double l = dot_down_(c->T, x, c->wt, n);
  c->T->free(x);
  c->T->free(cs);
  c->T->free(sn);
  return l;
}
static void fd_rope_(const backend *b) {
  const kernels *T = b->T;
  rope_ctx c = {T, 2, 4, 2, 6, NULL, NULL, NULL, NULL};
  size_t n = 2 * 4 * 2 * 6, nt = 4 * 3;
  rope_tables_(4, 6, &c.c, &c.s);
  c.x = hrand_(n, -1, 1);
  c.wt = hrand_(n, -1, 1);
  float *g = upf_(T, c.wt, n), *cs = upf_(T, c.c, nt), *sn = upf_(T, c.s, nt);
  T->rope_backward(g, cs, sn, 2, 4, 2, 6);
  float *hg = down_(T, g, n);
  fd_check_(b, "rope dx", rope_loss_, &c, c.x, n, hg, 1e-2);
  T->free(g);
  T->free(cs);
  T->free(sn);
  free(hg);
  free(c.c);
  free(c.s);
  free(c.x);
  free(c.wt);
}

typedef struct {
  const kernels *T;
  attn_shape a;
  float *q, *k, *v, *wt;
} attn_ctx;
static double attn_loss_(void *p) {
  attn_ctx *c = p;
  const kernels *T = c->T;
  attn_shape a = c->a;
  size_t N = (size_t)a.B * a.T, nq = N * a.H * a.D, nk = N * a.KV * a.D;
  size_t ts = T->attention_scratch_floats(a.B, a.T, a.H, a.KV, a.D);
  float *scr = T->alloc((ts ? ts : 1) * 4), *q = upf_(T, c->q, nq), *k = upf_(T, c->k, nk);
  float *v = upf_(T, c->v, nk), *o = T->alloc(nq * 4), *l = T->alloc((size_t)a.B * a.H * a.T * 4);
  T->attention_forward(o, l, scr, q, k, v, a.B, a.T, a.H, a.KV, a.D, a.window);
  double r = dot_down_(T, o, c->wt, nq);
  T->free(scr);
  T->free(q);
  T->free(k);
  T->free(v);
  T->free(o);
  T->free(l);
  return r;
}
static void fd_attention_(const backend *b, attn_shape a) {
  const kernels *T = b->T;
  size_t N = (size_t)a.B * a.T, nq = N * a.H * a.D, nk = N * a.KV * a.D;
  attn_ctx c = {T, a, hrand_(nq, -1, 1), hrand_(nk, -1, 1), hrand_(nk, -1, 1), hrand_(nq, -1, 1)};
  size_t ts = T->attention_scratch_floats(a.B, a.T, a.H, a.KV, a.D);
  float *scr = T->alloc((ts ? ts : 1) * 4), *q = upf_(T, c.q, nq), *k = upf_(T, c.k, nk);
  float *v = upf_(T, c.v, nk), *o = T->alloc(nq * 4), *l = T->alloc((size_t)a.B * a.H * a.T * 4);
  float *g = upf_(T, c.wt, nq), *dq = T->alloc(nq * 4), *dk = T->alloc(nk * 4);
  float *dv = T->alloc(nk * 4);
  T->attention_forward(o, l, scr, q, k, v, a.B, a.T, a.H, a.KV, a.D, a.window);
  T->attention_backward(dq, dk, dv, scr, g, o, l, q, k, v, a.B, a.T, a.H, a.KV, a.D, a.window);
  float *hdq = down_(T, dq, nq), *hdk = down_(T, dk, nk), *hdv = down_(T, dv, nk);
  char what[64];
  snprintf(what, sizeof what, "attention(window %d) dq", a.window);
  fd_check_(b, what, attn_loss_, &c, c.q, nq, hdq, 1e-2);
  snprintf(what, sizeof what, "attention(window %d) dk", a.window);
  fd_check_(b, what, attn_loss_, &c, c.k, nk, hdk, 1e-2);
  snprintf(what, sizeof what, "attention(window %d) dv", a.window);
  fd_check_(b, what, attn_loss_, &c, c.v, nk, hdv, 1e-2);
  T->free(scr);
  T->free(q);
  T->free(k);
  T->free(v);
  T->free(o);
  T->free(l);
  T->free(g);
  T->free(dq);
  T->free(dk);
  T->free(dv);
  free(hdq);
  free(hdk);
  free(hdv);
  free(c.q);
  free(c.k);
  free(c.v);
  free(c.wt);
}

typedef struct {
  const kernels *T;
  int N, V;
  float *logits;
  int32_t *tg;
} ce_ctx;
static double ce_loss_(void *p) {
  ce_ctx *c = p;
  size_t n = (size_t)c->N * c->V;
  float *lg = upf_(c->T, c->logits, n), *l = c->T->alloc((size_t)c->N * 4);
  int32_t *tg = up_(c->T, c->tg, (size_t)c->N * 4);
  double loss = 0;
  int64_t cnt = 0;
  c->T->cross_entropy_forward(l, lg, tg, c->N, c->V, &loss, &cnt);
  c->T->free(lg);
  c->T->free(l);
  c->T->free(tg);
  return loss;
}
static void fd_cross_entropy_(const backend *b) {
  const kernels *T = b->T;
  int N = 4, V = 13;
  int32_t tg[4] = {3, MODEL_IGNORE_INDEX, 12, 0};
  ce_ctx c = {T, N, V, hrand_((size_t)N * V, -3, 3), tg};
  size_t n = (size_t)N * V;
  float *lg = upf_(T, c.logits, n), *l = T->alloc((size_t)N * 4);
  int32_t *tg_d = up_(T, tg, sizeof tg);
  double loss = 0;
  int64_t cnt = 0;
  T->cross_entropy_forward(l, lg, tg_d, N, V, &loss, &cnt);
  T->cross_entropy_backward(lg, l, tg_d, N, V, 1.0f);
  float *hg = down_(T, lg, n);
  fd_check_(b, "cross_entropy dlogits", ce_loss_, &c, c.logits, n, hg, 1e-2);
  T->free(lg);
  T->free(l);
  T->free(tg_d);
  free(hg);
  free(c.logits);
}

/* ---- bf16 entries --------------------------------------------------------------------------- */
static bf16_t *hbf_(const float *x, size_t n) { /* host rounding (the CPU table's) */
  bf16_t *h = malloc((n ? n : 1) * sizeof *h);
  R->to_bf16(h, x, n);
  return h;
}
static void t_bf16_(const backend *b) {
  const kernels *T = b->T;
  size_t n = 3001;
  float *x = hrand_(n, -3, 3);
  x[0] = 0.0f, x[1] = -0.0f, x[2] = 1.00390625f /* tie: 1 + 2^-8 */, x[3] = 1e-40f;
  bf16_t *want = hbf_(x, n);
  float *x_d = upf_(T, x, n);
  bf16_t *h_d = T->alloc(n * sizeof(bf16_t));
  T->to_bf16(h_d, x_d, n);
  bf16_t *got = malloc(n * sizeof *got);
  T->download(got, h_d, n * sizeof *got);
  size_t bad = 0;
  for (size_t i = 0; i < n; i++) bad += got[i] != want[i];
  CHECK_MSG(bad == 0, "%s to_bf16: %zu of %zu differ from the CPU rounding", b->label, bad, n);
  float *back_d = T->alloc(n * sizeof(float)), *wantf = malloc(n * sizeof *wantf);
  T->to_f32(back_d, h_d, n);
  R->to_f32(wantf, want, n);
  close_dev_(b, "to_f32", back_d, wantf, n, 0);
  float *y = hrand_(n, -1, 1), *y_d = upf_(T, y, n);
  T->add_bf16(y_d, h_d, n);
  R->add_bf16(y, want, n);
  close_dev_(b, "add_bf16", y_d, y, n, 0);
  /* embedding lookup from a bf16 table */
  int N = 11, C = 9, V = 6;
  int32_t tok[11] = {5, 0, 0, 3, 2, 1, 5, 4, 4, 0, 2};
  float *emb = hrand_((size_t)V * C, -1, 1), *ref = malloc((size_t)N * C * sizeof *ref);
  bf16_t *embh = hbf_(emb, (size_t)V * C);
  R->embed_forward_bf16(ref, tok, embh, N, C);
  int32_t *tok_d = up_(T, tok, sizeof tok);
  bf16_t *emb_d = up_(T, embh, (size_t)V * C * sizeof(bf16_t));
  float *out_d = T->alloc((size_t)N * C * sizeof(float));
  T->embed_forward_bf16(out_d, tok_d, emb_d, N, C);
  close_dev_(b, "embed_forward_bf16", out_d, ref, (size_t)N * C, 0);
  /* products: fp32 and bf16 C, every transpose, padded strides, beta, K = 0 */
  static const int cases[][8] = {/* ta tb M N K pad cbf16 beta*10 */
                                 {0, 1, 37, 19, 23, 0, 0, 0},  {0, 0, 37, 19, 23, 3, 0, 3},
                                 {1, 0, 5, 130, 301, 1, 0, 10}, {1, 1, 33, 17, 64, 2, 0, 10},
                                 {0, 1, 64, 96, 128, 0, 1, 0},  {1, 0, 40, 24, 70, 1, 1, 0},
                                 {0, 0, 6, 7, 0, 2, 0, 5},      {0, 1, 6, 7, 0, 0, 1, 0}};
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    int ta = cases[c][0], tb = cases[c][1], M = cases[c][2], Nn = cases[c][3], Kd = cases[c][4];
    int pad = cases[c][5], cb = cases[c][6];
    float beta = (float)cases[c][7] / 10.0f, alpha = 0.7f;
    int ar = ta ? Kd : M, ac = ta ? M : Kd, br = tb ? Nn : Kd, bc = tb ? Kd : Nn;
    int lda = ac + pad, ldb = bc + pad, ldc = Nn + pad;
    size_t na = (size_t)ar * lda, nb = (size_t)br * ldb, nc = (size_t)M * ldc;
    float *A = hrand_(na, -1, 1), *B = hrand_(nb, -1, 1), *Cf = hrand_(nc, -1, 1);
    bf16_t *Ah = hbf_(A, na), *Bh = hbf_(B, nb), *Ch = hbf_(Cf, nc);
    float *Cref = hdup_(Cf, nc);
    bf16_t *Chref = malloc((nc ? nc : 1) * sizeof *Chref);
    if (nc) memcpy(Chref, Ch, nc * sizeof *Ch);
    R->gemm_bf16(ta, tb, M, Nn, Kd, alpha, Ah, lda, Bh, ldb, beta, cb ? (void *)Chref : (void *)Cref,
                 cb, ldc);
    bf16_t *A_d = up_(T, Ah, na * 2), *B_d = up_(T, Bh, nb * 2);
    void *C_d = cb ? up_(T, Ch, nc * 2) : (void *)upf_(T, Cf, nc);
    T->gemm_bf16(ta, tb, M, Nn, Kd, alpha, A_d, lda, B_d, ldb, beta, C_d, cb, ldc);
    char what[96];
    snprintf(what, sizeof what, "gemm_bf16 ta=%d tb=%d M=%d N=%d K=%d c_bf16=%d", ta, tb, M, Nn,
             Kd, cb);
    if (cb) { /* one bf16 step apart at most (the fp32 sums may differ in the last bits) */
      bf16_t *g = malloc((nc ? nc : 1) * sizeof *g);
      if (nc) T->download(g, C_d, nc * sizeof *g);
      float *gf = malloc((nc ? nc : 1) * sizeof *gf), *wf = malloc((nc ? nc : 1) * sizeof *wf);
      R->to_f32(gf, g, nc);
      R->to_f32(wf, Chref, nc);
      close_(b, what, gf, wf, nc, Kd > 0 ? 8e-3 : 0);
      free(g), free(gf), free(wf);
    } else {
      close_dev_(b, what, C_d, Cref, nc, Kd > 0 ? (b->tol_mm > 1e-5 ? b->tol_mm : 1e-5) : b->tol);
    }
    T->free(A_d), T->free(B_d), T->free(C_d);
    free(A), free(B), free(Cf), free(Ah), free(Bh), free(Ch), free(Cref), free(Chref);
  }
  T->free(x_d), T->free(h_d), T->free(back_d), T->free(y_d), T->free(tok_d), T->free(emb_d);
  T->free(out_d);
  free(x), free(want), free(got), free(wantf), free(y), free(emb), free(ref), free(embh);
}

/* ---- driver ------------------------------------------------------------------------------------ */
static void run_all_(const backend *b) {
  int before = test_failures_;
  t_memory_(b);
  t_gemm_(b);
  t_embed_(b);
  t_rmsnorm_(b);
  t_bias_(b);
  t_rope_(b);
  t_attention_(b);
  t_elementwise_(b);
  t_cross_entropy_(b);
  t_adamw_(b);
  t_bf16_(b);
  if (b->fd) {
    fd_rmsnorm_(b);
    fd_swiglu_(b);
    fd_rope_(b);
    fd_cross_entropy_(b);
    fd_attention_(b, (attn_shape){1, 7, 4, 2, 4, 0});
    fd_attention_(b, (attn_shape){2, 6, 2, 1, 3, 3});
  }
  b->T->sync();
  printf("%s: %s\n", b->label, test_failures_ == before ? "ok" : "FAILED");
}

int main(void) {
  R = kernels_cpu();
  /* the same code on both sides: only upload/download separate them */
  run_all_(&(backend){kernels_cpu(), "cpu", 1e-6, 1e-6, 1});
  run_all_(&(backend){kernels_guard(), "guard", 1e-6, 1e-6, 1});

  char why[256] = "";
  int ndev = gpu_device_count(why, sizeof why);
#if defined(__SANITIZE_ADDRESS__)
  if (ndev > 0) { /* the CUDA driver and ASan's shadow memory do not mix by default */
    printf("SKIP: cuda fp32, cuda bf16: not under AddressSanitizer (unit.kernel_backends runs "
           "them)\n");
    return test_done();
  }
#endif
  if (ndev <= 0) {
    printf("SKIP: cuda fp32, cuda bf16: %s (built with CUDA: %s)\n", why[0] ? why : "no GPU",
           gpu_built_with_cuda() ? "yes" : "no");
    return test_done();
  }
  int dev = gpu_select_device(0, why, sizeof why);
  CHECK_MSG(dev >= 0, "gpu_select_device: %s", why);
  if (dev < 0) return test_done();
  printf("GPU %d: %s, bf16 peak %.0f TFLOP/s\n", dev, gpu_device_name(),
         gpu_peak_bf16_flops() / 1e12);
  const kernels *k32 = kernels_cuda(0, why, sizeof why);
  CHECK_MSG(k32 != NULL, "kernels_cuda(0): %s", why);
  if (k32) run_all_(&(backend){k32, "cuda fp32", 2e-5, 1e-4, 1});
  const kernels *k16 = kernels_cuda(1, why, sizeof why);
  CHECK_MSG(k16 != NULL, "kernels_cuda(1): %s", why);
  if (k16) run_all_(&(backend){k16, "cuda bf16", 2e-5, 5e-2, 0});
  return test_done();
}
