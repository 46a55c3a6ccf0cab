/* kernels/gpu_svd: cuSOLVER's singular values against LAPACKE_dgesdd (the CPU path of the
 * scan) on the same float matrices: random and ill-conditioned (12 decades), wide, tall,
 * square, 1 x N and N x 1, also with a tiny staging buffer so the upload runs in many chunks
 * (the tall case then transposes chunk by chunk); a permuted diagonal whose singular values
 * are known exactly; the SNR from both within far less than the reference tests' rtol 1e-4.
 * Skips (77) without a GPU. */
#include <lapacke.h>
#include <stdint.h>

#include "kernels/gpu.h"
#include "kernels/gpu_svd.h"
#include "spectrum/snr.h"
#include "test.h"

static uint64_t rng_ = 0x9e3779b97f4a7c15ull;
static double uniform_(void) { /* [-1, 1) */
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 7;
  rng_ ^= rng_ << 17;
  return (double)(rng_ >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

/* w (rows x cols) = H_u * D * H_v with Householder reflections H and D holding s (min side)
 * on its diagonal: singular values s up to the rounding to float. */
static void ill_conditioned_(float *w, int64_t rows, int64_t cols, const double *s) {
  int64_t k = rows < cols ? rows : cols;
  double *u = malloc((size_t)rows * sizeof *u), *v = malloc((size_t)cols * sizeof *v);
  double nu = 0, nv = 0;
  for (int64_t i = 0; i < rows; i++) {
    u[i] = uniform_();
    nu += u[i] * u[i];
  }
  for (int64_t j = 0; j < cols; j++) {
    v[j] = uniform_();
    nv += v[j] * v[j];
  }
  nu = sqrt(nu);
  nv = sqrt(nv);
  for (int64_t i = 0; i < rows; i++) u[i] /= nu;
  for (int64_t j = 0; j < cols; j++) v[j] /= nv;
  /* D H_v: row i (< k) is s_i (e_i - 2 v_i v^T); H_u (D H_v) = X - 2 u (u^T X) */
  double *x = calloc((size_t)(rows * cols), sizeof *x), *utx = calloc((size_t)cols, sizeof *utx);
  for (int64_t i = 0; i < k; i++)
    for (int64_t j = 0; j < cols; j++) x[i * cols + j] = s[i] * ((i == j) - 2 * v[i] * v[j]);
  for (int64_t i = 0; i < rows; i++)
    for (int64_t j = 0; j < cols; j++) utx[j] += u[i] * x[i * cols + j];
  for (int64_t i = 0; i < rows; i++)
    for (int64_t j = 0; j < cols; j++) w[i * cols + j] = (float)(x[i * cols + j] - 2 * u[i] * utx[j]);
  free(u);
  free(v);
  free(x);
  free(utx);
}

/* LAPACK the way snr.c calls it: the row-major matrix as the column-major transpose. */
static void lapack_(const float *w, int64_t rows, int64_t cols, double *s) {
  double *a = malloc((size_t)(rows * cols) * sizeof *a);
  for (int64_t i = 0; i < rows * cols; i++) a[i] = w[i];
  lapack_int info = LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'N', (lapack_int)cols, (lapack_int)rows, a,
                                   (lapack_int)cols, s, NULL, 1, NULL, 1);
  CHECK_EQ_INT(info, 0);
  free(a);
}

static void compare_(const char *what, const float *w, int64_t rows, int64_t cols, int check_snr) {
  int64_t k = rows < cols ? rows : cols, mx = rows < cols ? cols : rows;
  double *sg = malloc((size_t)k * sizeof *sg), *sc = malloc((size_t)k * sizeof *sc);
  for (int64_t i = 0; i < k; i++) sg[i] = -1;
  char why[256] = "";
  int rc = gpu_svdvals(w, rows, cols, sg, why, sizeof why);
  CHECK_MSG(rc == GPU_SVD_OK, "%s %lld x %lld: gpu_svdvals %d: %s", what, (long long)rows,
            (long long)cols, rc, why);
  lapack_(w, rows, cols, sc);
  /* both backward stable in double: |error| <= c * eps * max(m, n) * sigma_max */
  double tol = 64 * 2.2e-16 * (double)mx * sc[0], worst = 0;
  for (int64_t i = 0; i < k; i++) {
    double d = fabs(sg[i] - sc[i]);
    if (d > worst) worst = d;
    CHECK_MSG(d <= tol, "%s %lld x %lld: sigma[%lld] gpu %.17g lapack %.17g", what, (long long)rows,
              (long long)cols, (long long)i, sg[i], sc[i]);
    if (i > 0) CHECK(sg[i] <= sg[i - 1]);
  }
  if (check_snr && k > 1) {
    double a = snr_from_singular_values(sg, k, rows, cols), b = snr_from_singular_values(sc, k, rows, cols);
    CHECK_MSG(fabs(a - b) <= 1e-9 * fabs(b), "%s %lld x %lld: snr gpu %.17g lapack %.17g", what,
              (long long)rows, (long long)cols, a, b);
  }
  printf("%-16s %5lld x %-5lld max |gpu - lapack| = %.3g (sigma_max %.3g, tol %.3g)\n", what,
         (long long)rows, (long long)cols, worst, sc[0], tol);
  free(sg);
  free(sc);
}

static void run_all_(void) {
  static const int64_t shapes[][2] = {{300, 700}, {700, 300}, {333, 333}, {1, 500},
                                      {500, 1},   {2, 3},     {3, 2},     {1024, 257}};
  for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
    int64_t rows = shapes[t][0], cols = shapes[t][1], k = rows < cols ? rows : cols;
    float *w = malloc((size_t)(rows * cols) * sizeof *w);
    for (int64_t i = 0; i < rows * cols; i++) w[i] = (float)uniform_();
    compare_("random", w, rows, cols, 1);
    double *s = malloc((size_t)k * sizeof *s);
    for (int64_t i = 0; i < k; i++) s[i] = k > 1 ? pow(10.0, -12.0 * (double)i / (double)(k - 1)) : 1;
    ill_conditioned_(w, rows, cols, s);
    compare_("ill-conditioned", w, rows, cols, 0);
    free(s);
    free(w);
  }
  /* a permuted diagonal (one non-zero per row and column): singular values exactly known */
  int64_t rows = 40, cols = 90;
  float *w = calloc((size_t)(rows * cols), sizeof *w);
  double want[40], got[40];
  for (int64_t i = 0; i < rows; i++) {
    float v = (float)(i % 2 ? -1 : 1) * ldexpf(1.0f, (int)(20 - i)); /* 2^20 .. 2^-19 */
    w[i * cols + (i * 7 + 3) % cols] = v;
    want[i] = fabs((double)v);
  }
  char why[256] = "";
  CHECK_EQ_INT(gpu_svdvals(w, rows, cols, got, why, sizeof why), GPU_SVD_OK);
  for (int i = 0; i < 40; i++) CHECK_CLOSE(got[i], want[i], 1e-13, 64 * 2.2e-16 * 90 * want[0]);
  free(w);
}

int main(void) {
  char why[256] = "";
#ifdef __SANITIZE_ADDRESS__
  /* ASan's protected shadow gap overlaps the CUDA driver's address-space reservation: device
   * allocations fail unless ASAN_OPTIONS has protect_shadow_gap=0 (and LSan then needs
   * suppressions for the CUDA libraries' own allocations). Run the plain unit.gpu_svd. */
  const char *ao = getenv("ASAN_OPTIONS");
  if (!ao || !strstr(ao, "protect_shadow_gap=0")) {
    printf("SKIP: CUDA under AddressSanitizer needs ASAN_OPTIONS=protect_shadow_gap=0\n");
    return 77;
  }
#endif
  int n = gpu_device_count(why, sizeof why);
  if (n <= 0) {
    printf("SKIP: no GPU (%s); built with CUDA: %s\n", why, gpu_built_with_cuda() ? "yes" : "no");
    return 77;
  }
  CHECK(gpu_select_device(0, why, sizeof why) == 0);
  int64_t max = gpu_svd_max_elems();
  printf("gpu_svd_max_elems: %lld\n", (long long)max);
  CHECK(max > 1000000);
  double s0 = 0;
  float one = 1;
  CHECK_EQ_INT(gpu_svdvals(&one, 0, 5, &s0, why, sizeof why), GPU_SVD_EFAIL); /* empty */
  CHECK_EQ_INT(gpu_svdvals(&one, 1, 1, &s0, why, sizeof why), GPU_SVD_OK);
  CHECK_CLOSE(s0, 1.0, 1e-15, 0);

  run_all_(); /* one staging chunk */
  setenv("SPECTRAIN_TEST_GPU_SVD_STAGE_BYTES", "4000", 1);
  run_all_(); /* many: rows of up to 1000 floats at a time, a short last chunk */
  unsetenv("SPECTRAIN_TEST_GPU_SVD_STAGE_BYTES");
  return test_done();
}
