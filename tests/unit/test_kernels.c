/* The CPU kernels against naive double-precision references written here (plain loops, no
 * BLAS): forward outputs directly, backward kernels against central finite differences of
 * the double reference of L = sum(out * R) for a random R (eps 1e-6 in double, so the
 * differences are accurate to ~1e-9 and the tolerance only absorbs float rounding). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/kernels.h"
#include "model/optim.h"
#include "test.h"

static uint64_t seed_ = 12345;
static double urand_(void) { /* splitmix64 -> [-1, 1) */
  uint64_t z = (seed_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}
static float *randf_(size_t n, double scale) {
  float *p = malloc(n * sizeof *p);
  for (size_t i = 0; i < n; i++) p[i] = (float)(scale * urand_());
  return p;
}
static double maxabs_d_(const double *x, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
  return m;
}

/* |got - want| <= tol * max|want| + 1e-7 elementwise; prints the worst element. */
static void check_close_(const char *what, const float *got, const double *want, size_t n,
                         double tol) {
  double scale = maxabs_d_(want, n), worst = 0;
  size_t wi = 0;
  for (size_t i = 0; i < n; i++) {
    double e = fabs(got[i] - want[i]);
    if (e > worst) worst = e, wi = i;
  }
  CHECK_MSG(worst <= tol * scale + 1e-7, "%s: element %zu: %.9g vs %.9g (max|ref| %.3g)", what,
            wi, n ? got[wi] : 0.0, n ? want[wi] : 0.0, scale);
}

/* Central differences of f w.r.t. every element of p (double). */
static double *fd_(double (*f)(void), double *p, size_t n) {
  double *g = malloc(n * sizeof *g);
  const double h = 1e-6;
  for (size_t i = 0; i < n; i++) {
    double s = p[i];
    p[i] = s + h;
    double a = f();
    p[i] = s - h;
    double b = f();
    p[i] = s;
    g[i] = (a - b) / (2 * h);
  }
  return g;
}

static const kernels *K;

/* ---- gemm ---------------------------------------------------------------- */
static void test_gemm_(void) {
  int M = 5, N = 7, Kd = 3;
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) {
      float *A = randf_((size_t)M * Kd, 1), *Bm = randf_((size_t)Kd * N, 1);
      float *C = randf_((size_t)M * N, 1);
      double *want = malloc(sizeof(double) * M * N);
      int lda = ta ? M : Kd, ldb = tb ? Kd : N;
      for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
          double s = 0;
          for (int k = 0; k < Kd; k++)
            s += (double)(ta ? A[k * lda + i] : A[i * lda + k]) *
                 (tb ? Bm[j * ldb + k] : Bm[k * ldb + j]);
          want[i * N + j] = 0.5 * s + 2.0 * C[i * N + j];
        }
      K->gemm(ta, tb, M, N, Kd, 0.5f, A, lda, Bm, ldb, 2.0f, C, N);
      check_close_(ta ? (tb ? "gemm TT" : "gemm TN") : (tb ? "gemm NT" : "gemm NN"), C, want,
                   (size_t)M * N, 1e-6);
      free(A), free(Bm), free(C), free(want);
    }
}

/* ---- rmsnorm -------------------------------------------------------------- */
enum { RN_N = 3, RN_C = 6 };
static double rn_x[RN_N * RN_C], rn_w[RN_C], rn_r[RN_N * RN_C];
static const double rn_eps = 1e-5;
static void rn_ref_(double *out) {
  for (int n = 0; n < RN_N; n++) {
    double ss = 0;
    for (int c = 0; c < RN_C; c++) ss += rn_x[n * RN_C + c] * rn_x[n * RN_C + c];
    double r = 1.0 / sqrt(ss / RN_C + rn_eps);
    for (int c = 0; c < RN_C; c++) out[n * RN_C + c] = rn_w[c] * rn_x[n * RN_C + c] * r;
  }
}
static double rn_loss_(void) {
  double out[RN_N * RN_C], s = 0;
  rn_ref_(out);
  for (int i = 0; i < RN_N * RN_C; i++) s += out[i] * rn_r[i];
  return s;
}
static void test_rmsnorm_(void) {
  float *x = randf_(RN_N * RN_C, 2), *w = randf_(RN_C, 1), *R = randf_(RN_N * RN_C, 1);
  for (int i = 0; i < RN_N * RN_C; i++) rn_x[i] = x[i], rn_r[i] = R[i];
  for (int i = 0; i < RN_C; i++) rn_w[i] = w[i];
  float out[RN_N * RN_C], rstd[RN_N], dx[RN_N * RN_C], dw[RN_C] = {0};
  double want[RN_N * RN_C];
  K->rmsnorm_forward(out, rstd, x, w, RN_N, RN_C, (float)rn_eps);
  rn_ref_(want);
  check_close_("rmsnorm forward", out, want, RN_N * RN_C, 1e-6);
  K->rmsnorm_backward(dx, dw, R, x, w, rstd, RN_N, RN_C, 0);
  double *gx = fd_(rn_loss_, rn_x, RN_N * RN_C), *gw = fd_(rn_loss_, rn_w, RN_C);
  check_close_("rmsnorm dx", dx, gx, RN_N * RN_C, 1e-5);
  check_close_("rmsnorm dw", dw, gw, RN_C, 1e-5);
  /* accumulate adds; in place (dx aliasing dout) gives the same */
  float acc[RN_N * RN_C], inpl[RN_N * RN_C];
  double want_acc[RN_N * RN_C];
  for (int i = 0; i < RN_N * RN_C; i++) acc[i] = 1.0f, want_acc[i] = 1.0 + gx[i];
  K->rmsnorm_backward(acc, NULL, R, x, w, rstd, RN_N, RN_C, 1);
  check_close_("rmsnorm dx accumulate", acc, want_acc, RN_N * RN_C, 1e-5);
  for (int i = 0; i < RN_N * RN_C; i++) inpl[i] = R[i];
  K->rmsnorm_backward(inpl, NULL, inpl, x, w, rstd, RN_N, RN_C, 0);
  check_close_("rmsnorm dx in place", inpl, gx, RN_N * RN_C, 1e-5);
  free(x), free(w), free(R), free(gx), free(gw);
}

/* ---- rope ----------------------------------------------------------------- */
enum { RP_B = 2, RP_T = 3, RP_H = 2, RP_D = 4 };
static double rp_x[RP_B * RP_T * RP_H * RP_D], rp_r[RP_B * RP_T * RP_H * RP_D];
static float rp_cos[RP_T * RP_D / 2], rp_sin[RP_T * RP_D / 2];
static void rp_ref_(double *out) {
  int half = RP_D / 2;
  for (int n = 0; n < RP_B * RP_T; n++)
    for (int h = 0; h < RP_H; h++)
      for (int i = 0; i < RP_D; i++) {
        int t = n % RP_T;
        const double *v = rp_x + (n * RP_H + h) * RP_D;
        /* q*cos + rotate_half(q)*sin with rotate_half(q) = cat(-q2, q1), cos = cat(c, c) */
        double c = rp_cos[t * half + i % half], s = rp_sin[t * half + i % half];
        double rot = i < half ? -v[i + half] : v[i - half];
        out[(n * RP_H + h) * RP_D + i] = v[i] * c + rot * s;
      }
}
static double rp_loss_(void) {
  enum { n = RP_B * RP_T * RP_H * RP_D };
  double out[n], s = 0;
  rp_ref_(out);
  for (int i = 0; i < n; i++) s += out[i] * rp_r[i];
  return s;
}
static void test_rope_(void) {
  enum { n = RP_B * RP_T * RP_H * RP_D };
  for (int t = 0; t < RP_T; t++)
    for (int i = 0; i < RP_D / 2; i++) {
      double a = t * pow(10000.0, -2.0 * i / RP_D) + 0.3 * urand_();
      rp_cos[t * RP_D / 2 + i] = (float)cos(a), rp_sin[t * RP_D / 2 + i] = (float)sin(a);
    }
  float *x = randf_(n, 1), *R = randf_(n, 1);
  for (int i = 0; i < n; i++) rp_x[i] = x[i], rp_r[i] = R[i];
  double want[n];
  rp_ref_(want);
  K->rope_forward(x, rp_cos, rp_sin, RP_B, RP_T, RP_H, RP_D);
  check_close_("rope forward", x, want, n, 1e-6);
  double *g = fd_(rp_loss_, rp_x, n);
  K->rope_backward(R, rp_cos, rp_sin, RP_B, RP_T, RP_H, RP_D);
  check_close_("rope backward", R, g, n, 1e-5);
  free(x), free(R), free(g);
}

/* ---- attention (GQA, causal, sliding window; memory-efficient: lse only) ------- */
/* Sizes at run time: a small case and one longer than the kernel's 64-row query tiles (two
 * tiles, the second starting inside a sliding window). */
static int AT_B, AT_T, AT_H, AT_KV, AT_D, at_window; /* window 0: plain causal */
static size_t AT_NQ, AT_NK;
static double *at_q, *at_k, *at_v, *at_r;
/* out (N, H*D) and, when lse != NULL, lse (B, H, T) in double */
static void at_ref_lse_(double *out, double *lse) {
  int HD = AT_H * AT_D, KVD = AT_KV * AT_D, rep = AT_H / AT_KV;
  double *s = malloc((size_t)AT_T * sizeof *s);
  for (int b = 0; b < AT_B; b++)
    for (int h = 0; h < AT_H; h++)
      for (int t = 0; t < AT_T; t++) {
        double mx = -1e300, sum = 0;
        int lo = at_window > 0 && t - at_window + 1 > 0 ? t - at_window + 1 : 0;
        for (int j = lo; j <= t; j++) {
          double d = 0;
          for (int i = 0; i < AT_D; i++)
            d += at_q[((size_t)b * AT_T + t) * HD + h * AT_D + i] *
                 at_k[((size_t)b * AT_T + j) * KVD + (h / rep) * AT_D + i];
          s[j] = d / sqrt((double)AT_D);
          mx = fmax(mx, s[j]);
        }
        for (int j = lo; j <= t; j++) sum += (s[j] = exp(s[j] - mx));
        if (lse) lse[((size_t)b * AT_H + h) * AT_T + t] = mx + log(sum);
        for (int i = 0; i < AT_D; i++) {
          double o = 0;
          for (int j = lo; j <= t; j++)
            o += s[j] / sum * at_v[((size_t)b * AT_T + j) * KVD + (h / rep) * AT_D + i];
          out[((size_t)b * AT_T + t) * HD + h * AT_D + i] = o;
        }
      }
  free(s);
}
static double at_loss_(void) {
  double *out = malloc(AT_NQ * sizeof *out), s = 0;
  at_ref_lse_(out, NULL);
  for (size_t i = 0; i < AT_NQ; i++) s += out[i] * at_r[i];
  free(out);
  return s;
}
static void test_attention_(int B, int T, int H, int KV, int D, int window) {
  AT_B = B, AT_T = T, AT_H = H, AT_KV = KV, AT_D = D, at_window = window;
  AT_NQ = (size_t)B * T * H * D, AT_NK = (size_t)B * T * KV * D;
  char tag[96];
  snprintf(tag, sizeof tag, "attention B%d T%d H%d KV%d D%d window %d", B, T, H, KV, D, window);
  float *q = randf_(AT_NQ, 1.5), *k = randf_(AT_NK, 1.5), *v = randf_(AT_NK, 1),
        *R = randf_(AT_NQ, 1);
  at_q = malloc(AT_NQ * sizeof *at_q), at_r = malloc(AT_NQ * sizeof *at_r);
  at_k = malloc(AT_NK * sizeof *at_k), at_v = malloc(AT_NK * sizeof *at_v);
  for (size_t i = 0; i < AT_NQ; i++) at_q[i] = q[i], at_r[i] = R[i];
  for (size_t i = 0; i < AT_NK; i++) at_k[i] = k[i], at_v[i] = v[i];
  size_t nl = (size_t)B * H * T, ns = K->attention_scratch_floats(B, T, H, KV, D);
  /* the scratch is working space only: fill it with garbage to prove that */
  float *out = malloc(AT_NQ * sizeof *out), *lse = malloc(nl * sizeof *lse),
        *dq = randf_(AT_NQ, 9), *dk = randf_(AT_NK, 9), *dv = randf_(AT_NK, 9),
        *scratch = randf_(ns, 1e30);
  double *want = malloc(AT_NQ * sizeof *want), *want_lse = malloc(nl * sizeof *want_lse);
  at_ref_lse_(want, want_lse);
  K->attention_forward(out, lse, scratch, q, k, v, B, T, H, KV, D, window);
  char what[160];
  snprintf(what, sizeof what, "%s: forward", tag);
  check_close_(what, out, want, AT_NQ, 1e-6);
  snprintf(what, sizeof what, "%s: lse", tag);
  check_close_(what, lse, want_lse, nl, 1e-6);
  for (size_t i = 0; i < ns; i++) scratch[i] = 1e30f; /* backward must not rely on it */
  K->attention_backward(dq, dk, dv, scratch, R, out, lse, q, k, v, B, T, H, KV, D, window);
  double *gq = fd_(at_loss_, at_q, AT_NQ), *gk = fd_(at_loss_, at_k, AT_NK),
         *gv = fd_(at_loss_, at_v, AT_NK);
  snprintf(what, sizeof what, "%s: dq", tag);
  check_close_(what, dq, gq, AT_NQ, 1e-5);
  snprintf(what, sizeof what, "%s: dk", tag);
  check_close_(what, dk, gk, AT_NK, 1e-5);
  snprintf(what, sizeof what, "%s: dv", tag);
  check_close_(what, dv, gv, AT_NK, 1e-5);
  free(q), free(k), free(v), free(R), free(gq), free(gk), free(gv);
  free(out), free(lse), free(dq), free(dk), free(dv), free(scratch), free(want), free(want_lse);
  free(at_q), free(at_k), free(at_v), free(at_r);
}

/* ---- swiglu ---------------------------------------------------------------- */
enum { SW_N = 17 };
static double sw_g[SW_N], sw_u[SW_N], sw_r[SW_N];
static double sw_loss_(void) {
  double s = 0;
  for (int i = 0; i < SW_N; i++) s += sw_g[i] / (1 + exp(-sw_g[i])) * sw_u[i] * sw_r[i];
  return s;
}
static void test_swiglu_(void) {
  float *g = randf_(SW_N, 4), *u = randf_(SW_N, 2), *R = randf_(SW_N, 1);
  for (int i = 0; i < SW_N; i++) sw_g[i] = g[i], sw_u[i] = u[i], sw_r[i] = R[i];
  float h[SW_N], dg[SW_N], du[SW_N];
  double want[SW_N];
  for (int i = 0; i < SW_N; i++) want[i] = sw_g[i] / (1 + exp(-sw_g[i])) * sw_u[i];
  K->swiglu_forward(h, g, u, SW_N);
  check_close_("swiglu forward", h, want, SW_N, 1e-6);
  K->swiglu_backward(dg, du, R, g, u, SW_N);
  double *gg = fd_(sw_loss_, sw_g, SW_N), *gu = fd_(sw_loss_, sw_u, SW_N);
  check_close_("swiglu dgate", dg, gg, SW_N, 1e-5);
  check_close_("swiglu dup", du, gu, SW_N, 1e-5);
  /* in place, as the model calls it */
  K->swiglu_backward(g, u, R, g, u, SW_N);
  check_close_("swiglu dgate in place", g, gg, SW_N, 1e-5);
  check_close_("swiglu dup in place", u, gu, SW_N, 1e-5);
  free(g), free(u), free(R), free(gg), free(gu);
}

/* ---- cross-entropy ------------------------------------------------------------ */
enum { CE_N = 4, CE_V = 7 };
static double ce_x[CE_N * CE_V];
static const int32_t ce_t[CE_N] = {3, MODEL_IGNORE_INDEX, 0, 6};
static double ce_loss_(void) {
  double s = 0;
  for (int n = 0; n < CE_N; n++) {
    if (ce_t[n] == MODEL_IGNORE_INDEX) continue;
    double z = 0;
    for (int j = 0; j < CE_V; j++) z += exp(ce_x[n * CE_V + j]);
    s += log(z) - ce_x[n * CE_V + ce_t[n]];
  }
  return s;
}
static void test_cross_entropy_(void) {
  float *x = randf_(CE_N * CE_V, 5);
  for (int i = 0; i < CE_N * CE_V; i++) ce_x[i] = x[i];
  float lse[CE_N];
  double loss = 0.5;
  int64_t cnt = 2;
  K->cross_entropy_forward(lse, x, ce_t, CE_N, CE_V, &loss, &cnt);
  CHECK_CLOSE(loss - 0.5, ce_loss_(), 1e-6, 0);
  CHECK_EQ_INT(cnt, 2 + 3);
  double *g = fd_(ce_loss_, ce_x, CE_N * CE_V);
  for (int i = 0; i < CE_N * CE_V; i++) g[i] *= 0.25;
  K->cross_entropy_backward(x, lse, ce_t, CE_N, CE_V, 0.25f);
  check_close_("cross-entropy dlogits", x, g, CE_N * CE_V, 1e-5);
  free(x), free(g);
}

/* ---- embedding, bias, add, sum of squares -------------------------------------- */
static void test_small_(void) {
  enum { V = 5, C = 3, N = 4 };
  float *emb = randf_(V * C, 1), out[N * C], demb[V * C] = {0}, *R = randf_(N * C, 1);
  const int32_t tok[N] = {2, 4, 2, 0};
  K->embed_forward(out, tok, emb, N, C);
  int ok = 1;
  for (int n = 0; n < N; n++)
    for (int c = 0; c < C; c++) ok &= out[n * C + c] == emb[tok[n] * C + c];
  CHECK_MSG(ok, "embedding rows copied");
  K->embed_backward(demb, R, tok, N, C);
  double want[V * C] = {0};
  for (int n = 0; n < N; n++) /* d/d emb of sum(out * R) */
    for (int c = 0; c < C; c++) want[tok[n] * C + c] += R[n * C + c];
  check_close_("embedding backward (repeated token)", demb, want, V * C, 1e-6);

  float y[N * C], b[C] = {1, 2, 3}, db[C] = {0};
  for (int i = 0; i < N * C; i++) y[i] = (float)i;
  K->bias_forward(y, b, N, C);
  CHECK(y[C + 2] == (float)(C + 2) + 3);
  K->bias_backward(db, R, N, C);
  double s2 = 0;
  for (int n = 0; n < N; n++) s2 += R[n * C + 1];
  CHECK_CLOSE(db[1], s2, 1e-6, 1e-7);
  CHECK_CLOSE(K->sum_squares(b, C), 14.0, 1e-12, 0);
  free(emb), free(R);
}

/* ---- optimizer math ------------------------------------------------------------ */
static void test_optim_(void) {
  /* AdamW, two steps on one element, against the formula written out in double */
  float p = 1.0f, m = 0, v = 0;
  double P = 1.0, Mm = 0, Vv = 0;
  const double lr = 0.1, b1 = 0.9, b2 = 0.99, eps = 1e-8, wd = 0.01;
  const float g[2] = {0.5f, -0.25f};
  for (int s = 1; s <= 2; s++) {
    adamw_step(&p, &g[s - 1], &m, &v, 1, (float)lr, (float)b1, (float)b2, (float)eps,
               (float)wd, s);
    P *= 1 - lr * wd;
    Mm = b1 * Mm + (1 - b1) * g[s - 1];
    Vv = b2 * Vv + (1 - b2) * g[s - 1] * g[s - 1];
    P -= lr / (1 - pow(b1, s)) * Mm / (sqrt(Vv) / sqrt(1 - pow(b2, s)) + eps);
  }
  CHECK_CLOSE(p, P, 1e-6, 0);
  /* first step moves by lr * sign(g) (plus decay): check the magnitude independently */
  float q = 0.0f, mq = 0, vq = 0, gq = 3.0f;
  adamw_step(&q, &gq, &mq, &vq, 1, 0.01f, 0.9f, 0.999f, 1e-8f, 0.0f, 1);
  CHECK_CLOSE(q, -0.01, 1e-5, 0);

  /* schedules (HF get_scheduler): warmup 10, 110 steps */
  CHECK_CLOSE(lr_at_step(LR_LINEAR, 0, 110, 10, 1.0), 0.0, 0, 1e-15);
  CHECK_CLOSE(lr_at_step(LR_LINEAR, 5, 110, 10, 2.0), 1.0, 1e-12, 0);
  CHECK_CLOSE(lr_at_step(LR_LINEAR, 10, 110, 10, 1.0), 1.0, 1e-12, 0);
  CHECK_CLOSE(lr_at_step(LR_LINEAR, 60, 110, 10, 1.0), 0.5, 1e-12, 0);
  CHECK_CLOSE(lr_at_step(LR_LINEAR, 200, 110, 10, 1.0), 0.0, 0, 1e-15);
  CHECK_CLOSE(lr_at_step(LR_COSINE, 60, 110, 10, 1.0), 0.5, 1e-12, 0);
  CHECK_CLOSE(lr_at_step(LR_COSINE, 35, 110, 10, 1.0), 0.5 * (1 + cos(M_PI * 0.25)), 1e-12, 0);
  CHECK_CLOSE(lr_at_step(LR_COSINE, 110, 110, 10, 1.0), 0.0, 0, 1e-15);
  CHECK_CLOSE(lr_at_step(LR_CONSTANT, 0, 110, 10, 3.0), 3.0, 0, 0);
  CHECK_CLOSE(lr_at_step(LR_CONSTANT_WITH_WARMUP, 2, 110, 10, 1.0), 0.2, 1e-12, 0);
  CHECK_CLOSE(lr_at_step(LR_CONSTANT_WITH_WARMUP, 50, 110, 10, 1.0), 1.0, 0, 0);
  lr_schedule s;
  CHECK(lr_schedule_parse("cosine", &s) == 0 && s == LR_COSINE);
  CHECK(lr_schedule_parse("cosine_with_restarts", &s) == -1);
  CHECK_CLOSE(grad_clip_coef(4.0, 1.0), 1.0 / (4.0 + 1e-6), 1e-12, 0);
  CHECK_CLOSE(grad_clip_coef(0.5, 1.0), 1.0, 0, 0);
  CHECK_CLOSE(grad_clip_coef(4.0, 0.0), 1.0, 0, 0);
}

int main(void) {
  K = kernels_cpu();
  test_gemm_();
  test_rmsnorm_();
  test_rope_();
  test_attention_(2, 5, 4, 2, 3, 0);
  test_attention_(2, 5, 4, 2, 3, 2);
  test_attention_(1, 70, 2, 1, 4, 0);  /* two query tiles */
  test_attention_(1, 70, 2, 1, 4, 20); /* the second tile starts inside the window */
  test_attention_(1, 67, 1, 1, 2, 3);  /* a short window across the tile edge */
  test_swiglu_();
  test_cross_entropy_();
  test_small_();
  test_optim_();
  return test_done();
}
