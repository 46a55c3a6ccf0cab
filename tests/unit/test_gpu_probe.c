/* The CUDA backend links and its probe runs; skips (77) where there is no GPU. */
#include "kernels/gpu.h"
#include "test.h"

int main(void) {
  char why[256] = "";
  int n = gpu_device_count(why, sizeof why);
  if (n <= 0) {
    printf("SKIP: no GPU (%s); built with CUDA: %s\n", why, gpu_built_with_cuda() ? "yes" : "no");
    return 77;
  }
  CHECK(n > 0);
  return test_done();
}
