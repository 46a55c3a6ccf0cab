/* The CUDA runtime side of kernels/gpu.h: device selection is idempotent and binds the
 * streams and the kernel tables; skips (77) where there is no GPU. The kernels themselves
 * are checked by test_kernel_backends. */
#include <string.h>

#include "kernels/gpu.h"
#include "kernels/kernels.h"
#include "test.h"

int main(void) {
  char why[256] = "";
  int n = gpu_device_count(why, sizeof why);
  if (n <= 0) {
    /* without a device nothing is bound: the table and the streams say so */
    CHECK(gpu_current_device() == -1);
    CHECK(gpu_compute_stream() == NULL && gpu_comm_stream() == NULL);
    CHECK(kernels_cuda(0, why, sizeof why) == NULL);
    CHECK(why[0] != '\0');
    CHECK(gpu_select_device(0, why, sizeof why) == -1);
    if (test_failures_) return test_done();
    printf("SKIP: no GPU (%s); built with CUDA: %s\n", why, gpu_built_with_cuda() ? "yes" : "no");
    return 77;
  }
#if defined(__SANITIZE_ADDRESS__)
  printf("SKIP: not under AddressSanitizer (unit.gpu_runtime runs it)\n");
  return 77;
#endif
  why[0] = '\0';
  CHECK(kernels_cuda(1, why, sizeof why) == NULL); /* before gpu_select_device */
  CHECK_CONTAINS(why, "gpu_select_device");
  int dev = gpu_select_device(n, why, sizeof why); /* local rank n -> device 0 */
  CHECK_MSG(dev == 0, "gpu_select_device(%d) = %d: %s", n, dev, why);
  CHECK_EQ_INT(gpu_select_device(n, why, sizeof why), dev); /* again: a no-op */
  CHECK_EQ_INT(gpu_current_device(), dev);
  CHECK(gpu_compute_stream() != NULL && gpu_comm_stream() != NULL);
  CHECK(gpu_compute_stream() != gpu_comm_stream());
  CHECK(strcmp(gpu_device_name(), "none") != 0);
  printf("device %d of %d: %s, bf16 peak %.0f TFLOP/s, NCCL %d\n", dev, n, gpu_device_name(),
         gpu_peak_bf16_flops() / 1e12, gpu_nccl_version());
  if (strstr(gpu_device_name(), "H100") || strstr(gpu_device_name(), "H200") ||
      strstr(gpu_device_name(), "A100"))
    CHECK(gpu_peak_bf16_flops() >= 300e12);
  if (n > 1) /* bound to one device: another is refused */
    CHECK(gpu_select_device(1, why, sizeof why) == -1);
  const kernels *k = kernels_cuda(0, why, sizeof why), *kb = kernels_cuda(1, why, sizeof why);
  CHECK(k != NULL && kb != NULL && k != kb);
  if (k) {
    CHECK_STR_EQ(k->name, "cuda");
    /* a large zeroed allocation round trip, and NULL (not a crash) for an impossible one */
    size_t nf = (size_t)1 << 26; /* 256 MiB */
    float *d = k->alloc(nf * sizeof(float));
    CHECK(d != NULL);
    if (d) {
      float probe[4] = {1, 2, 3, 4};
      k->upload(d + nf - 4, probe, sizeof probe);
      CHECK(k->sum_squares(d, nf) == 30.0);
      k->free(d);
    }
    CHECK(k->alloc((size_t)1 << 50) == NULL); /* 1 PiB */
    float *e = k->alloc(64);
    CHECK(e != NULL); /* still usable after the failure */
    k->free(e);
    k->sync();
  }
  return test_done();
}
