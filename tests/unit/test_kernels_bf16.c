/* The CPU table's bf16 entries against references written here: rounding to bf16 against
 * the nearest of the two neighbouring bf16 values computed in double (ties to the even
 * one), and the bf16 matrix products against double sums of the same bf16 operands, on the
 * shapes the model runs (all transposes, padded strides, alpha, beta, bf16 output, K = 0).
 * tests/CMakeLists.txt also runs it with ONEDNN_MAX_CPU_ISA=AVX2, where oneDNN has no bf16
 * matmul and the products take the fp32 fallback. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/bf16.h"
#include "kernels/kernels.h"
#include "test.h"

static const kernels *K;
static uint64_t rng_ = 0x243f6a8885a308d3ull;
static double urand_(void) { /* [-1, 1) */
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 7;
  rng_ ^= rng_ << 17;
  return (double)(rng_ >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}
static float bits_f_(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static uint32_t f_bits_(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

/* The nearest bf16 by distance in double between the truncation t and t + 1 (ties: the
 * even one); past the largest finite bf16 the neighbour is 2^128, i.e. infinity (IEEE). */
static bf16_t ref_round_(float x) {
  uint32_t u = f_bits_(x);
  if (isnan(x)) return 0; /* handled by the caller */
  bf16_t t = (bf16_t)(u >> 16);
  if ((u & 0xffffu) == 0) return t;
  double lo = bf16_to_f32(t), hi = bf16_to_f32((bf16_t)(t + 1)); /* same sign, larger |.| */
  if (isinf(hi)) hi = copysign(ldexp(1.0, 128), x); /* the unbounded-exponent neighbour */
  double dlo = fabs((double)x - lo), dhi = fabs((double)x - hi);
  if (dlo < dhi) return t;
  if (dhi < dlo) return (bf16_t)(t + 1);
  return (t & 1) ? (bf16_t)(t + 1) : t;
}

static void test_round_(void) {
  enum { N = 4000 };
  float *x = malloc(N * sizeof *x);
  int k = 0;
  const float special[] = {0.0f, -0.0f, 1.0f, -1.0f, INFINITY, -INFINITY, 3.4028235e38f,
                           -3.4028235e38f, 1e-45f, 1.1754944e-38f, 65504.0f, 0.1f};
  for (size_t i = 0; i < sizeof special / sizeof *special; i++) x[k++] = special[i];
  /* exact ties: even (1.0 + 2^-8 -> 1.0) and odd (1 + 3 * 2^-8 -> 1 + 2^-6) truncations */
  x[k++] = bits_f_(0x3f808000u);
  x[k++] = bits_f_(0x3f818000u);
  x[k++] = bits_f_(0xbf818000u);
  x[k++] = bits_f_(0x3f807fffu);
  x[k++] = bits_f_(0x3f808001u);
  x[k++] = bits_f_(0x7f7f8000u); /* tie at the top: rounds to infinity */
  x[k++] = bits_f_(0x00008000u); /* subnormal tie */
  int nan_at = k;
  x[k++] = bits_f_(0x7fc00001u); /* NaNs, one whose payload lives in the low half only */
  x[k++] = bits_f_(0xff800001u);
  while (k < N) {
    double m = urand_();
    int e = (int)(urand_() * 40);
    x[k++] = (float)(m * pow(2.0, e));
  }
  bf16_t *h = malloc(N * sizeof *h);
  float *back = malloc(N * sizeof *back), *y = malloc(N * sizeof *y);
  K->to_bf16(h, x, N);
  K->to_f32(back, h, N);
  int bad = 0;
  for (int i = 0; i < N; i++) {
    if (i == nan_at || i == nan_at + 1) {
      CHECK_MSG(isnan(back[i]) && (h[i] & 0x40), "NaN %08x -> %04x is not a quiet NaN",
                f_bits_(x[i]), h[i]);
      CHECK_MSG((h[i] >> 15) == (f_bits_(x[i]) >> 31), "NaN sign lost");
      continue;
    }
    bf16_t want = ref_round_(x[i]);
    if (h[i] != want && bad++ < 5)
      fprintf(stderr, "to_bf16(%.9g = %08x) = %04x, expected %04x\n", (double)x[i],
              f_bits_(x[i]), h[i], want);
    if (back[i] != bf16_to_f32(h[i]) && !isnan(back[i])) bad++;
  }
  CHECK_MSG(bad == 0, "%d conversions differ from the reference", bad);
  CHECK_EQ_INT(bf16_from_f32(bits_f_(0x3f808000u)), 0x3f80);
  CHECK_EQ_INT(bf16_from_f32(bits_f_(0x3f818000u)), 0x3f82);
  CHECK_EQ_INT(bf16_from_f32(bits_f_(0x7f7f8000u)), 0x7f80);
  /* add_bf16: y += widened x */
  for (int i = 0; i < N; i++) y[i] = (float)urand_();
  float *y0 = malloc(N * sizeof *y0);
  memcpy(y0, y, N * sizeof *y);
  bf16_t *hx = malloc(N * sizeof *hx);
  for (int i = 0; i < N; i++) hx[i] = bf16_from_f32((float)urand_());
  K->add_bf16(y, hx, N);
  bad = 0;
  for (int i = 0; i < N; i++) bad += y[i] != y0[i] + bf16_to_f32(hx[i]);
  CHECK_MSG(bad == 0, "add_bf16: %d elements differ from y + x", bad);
  K->to_bf16(h, x, 0);
  K->to_f32(back, h, 0);
  free(x), free(h), free(back), free(y), free(y0), free(hx);
}

static bf16_t *rand_bf16_(size_t n) {
  bf16_t *p = malloc((n ? n : 1) * sizeof *p);
  for (size_t i = 0; i < n; i++) p[i] = bf16_from_f32((float)urand_());
  return p;
}

/* C = alpha op(A) op(B) + beta C against double sums; bf16 C: the double result, rounded,
 * within one bf16 step (fp32 accumulation may land on the other side of a rounding tie). */
static void gemm_case_(int ta, int tb, int M, int N, int Kd, float alpha, float beta, int pad,
                       int cbf16) {
  int ar = ta ? Kd : M, ac = ta ? M : Kd, br = tb ? N : Kd, bc = tb ? Kd : N;
  int lda = ac + pad, ldb = bc + pad, ldc = N + pad;
  size_t na = (size_t)ar * lda, nb = (size_t)br * ldb, nc = (size_t)M * ldc;
  bf16_t *A = rand_bf16_(na), *B = rand_bf16_(nb);
  float *C = malloc((nc ? nc : 1) * sizeof *C);
  bf16_t *Ch = malloc((nc ? nc : 1) * sizeof *Ch);
  for (size_t i = 0; i < nc; i++) C[i] = (float)urand_(), Ch[i] = 0x7fc0; /* NaN canaries */
  size_t nmn = (size_t)M * N > 0 ? (size_t)M * N : 1;
  double *want = malloc(nmn * sizeof *want), *mag = malloc(nmn * sizeof *mag);
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      double s = 0, a = 0;
      for (int k = 0; k < Kd; k++) {
        double x = bf16_to_f32(ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]);
        double y = bf16_to_f32(tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j]);
        s += x * y;
        a += fabs(x * y);
      }
      want[(size_t)i * N + j] = alpha * s + (cbf16 ? 0.0 : beta * (double)C[(size_t)i * ldc + j]);
      mag[(size_t)i * N + j] = fabs(alpha) * a + (cbf16 ? 0.0 : fabs(beta * C[(size_t)i * ldc + j]));
    }
  K->gemm_bf16(ta, tb, M, N, Kd, alpha, A, lda, B, ldb, cbf16 ? 0.0f : beta,
               cbf16 ? (void *)Ch : (void *)C, cbf16, ldc);
  int bad = 0, pads = 0;
  double worst = 0;
  for (int i = 0; i < M; i++) {
    for (int j = 0; j < N; j++) {
      double w = want[(size_t)i * N + j], got;
      double tol = 2e-6 * mag[(size_t)i * N + j] + 1e-30;
      if (cbf16) {
        got = bf16_to_f32(Ch[(size_t)i * ldc + j]);
        tol += fabs(w) * (1.0 / 256) + 1e-38;
      } else {
        got = C[(size_t)i * ldc + j];
      }
      double e = fabs(got - w);
      if (!(e <= tol)) bad++;
      if (e / tol > worst) worst = e / tol;
    }
    for (int j = N; j < ldc; j++) /* padding untouched */
      pads += cbf16 ? Ch[(size_t)i * ldc + j] != 0x7fc0 : 0;
  }
  CHECK_MSG(bad == 0 && pads == 0,
            "gemm_bf16 ta=%d tb=%d M=%d N=%d K=%d alpha=%g beta=%g pad=%d c_bf16=%d: %d of %d "
            "off (worst %.2f x tol), %d padding elements written",
            ta, tb, M, N, Kd, alpha, beta, pad, cbf16, bad, M * N, worst, pads);
  free(A), free(B), free(C), free(Ch), free(want), free(mag);
}

static void test_gemm_(void) {
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++)
      for (int cb = 0; cb < 2; cb++) {
        gemm_case_(ta, tb, 37, 19, 23, 0.7f, 0.0f, 0, cb);
        gemm_case_(ta, tb, 37, 19, 23, 0.7f, 0.3f, 3, cb);
        gemm_case_(ta, tb, 5, 130, 301, -1.0f, 1.0f, 1, cb);
        gemm_case_(ta, tb, 1, 1, 7, 1.0f, 1.0f, 0, cb);
      }
  /* the model's shapes: linear (x W^T), input gradient (dy W), weight gradient (dy^T x) */
  gemm_case_(0, 1, 256, 192, 576, 1.0f, 0.0f, 0, 0);
  gemm_case_(0, 1, 256, 192, 576, 1.0f, 0.0f, 0, 1);
  gemm_case_(0, 0, 256, 576, 1536, 1.0f, 1.0f, 0, 0);
  gemm_case_(1, 0, 192, 576, 256, 1.0f, 1.0f, 0, 0);
  gemm_case_(0, 1, 64, 1000, 64, 0.125f, 0.0f, 0, 0); /* scaled (attention-like) */
  /* the same problem twice (the cached primitive), and again with another alpha */
  gemm_case_(0, 1, 37, 19, 23, 0.7f, 0.0f, 0, 0);
  gemm_case_(0, 1, 37, 19, 23, 0.5f, 0.0f, 0, 0);
  /* K = 0: C = beta C (fp32), C = 0 (bf16); M or N = 0: nothing */
  gemm_case_(0, 0, 6, 7, 0, 1.0f, 0.5f, 2, 0);
  gemm_case_(0, 0, 6, 7, 0, 1.0f, 0.0f, 2, 1);
  gemm_case_(0, 1, 0, 7, 5, 1.0f, 0.5f, 0, 0);
  gemm_case_(1, 0, 4, 0, 5, 1.0f, 0.5f, 0, 1);
}

static void test_embed_(void) {
  int N = 9, C = 13, V = 5;
  int32_t tok[9] = {0, 4, 4, 2, 1, 0, 3, 3, 4};
  bf16_t *emb = rand_bf16_((size_t)V * C);
  float *out = malloc((size_t)N * C * sizeof *out);
  K->embed_forward_bf16(out, tok, emb, N, C);
  int bad = 0;
  for (int n = 0; n < N; n++)
    for (int c = 0; c < C; c++)
      bad += out[(size_t)n * C + c] != bf16_to_f32(emb[(size_t)tok[n] * C + c]);
  CHECK_MSG(bad == 0, "embed_forward_bf16: %d elements differ", bad);
  free(emb), free(out);
}

int main(void) {
  K = kernels_cpu();
  int fast = -1;
  const char *d = kernels_cpu_bf16_description(&fast);
  printf("%s\n", d);
  CHECK(fast == 0 || fast == 1);
  CHECK(strstr(d, "bf16 products:") == d);
  test_round_();
  test_gemm_();
  test_embed_();
  return test_done();
}
