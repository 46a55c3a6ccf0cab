/* kernels_select: training.backend and SPECTRAIN_KERNELS resolve to the documented table and
 * collective transport, and every refusal is an input error naming the key and the reason.
 * bf16 works on every table; on the CPU tables the description says what runs the bf16
 * products.
 * Runs with and without a GPU (the cuda cases check whichever outcome the machine allows). */
#include <stdlib.h>
#include <string.h>

#include "job/job.h"
#include "kernels/gpu.h"
#include "train/backend.h"
#include "test.h"
#include "util/err.h"

static int has_(const char *needle) { return strstr(st_errmsg(), needle) != NULL; }

int main(void) {
  const kernels *k = NULL;
  coll_transport tr = COLL_TRANSPORT_NCCL;
  unsetenv("SPECTRAIN_KERNELS");
  CHECK_EQ_INT(kernels_select(NULL, BACKEND_CPU, 0, 0, &k, &tr), 0);
  CHECK(k == kernels_cpu() && tr == COLL_TRANSPORT_MPI);
  CHECK(strstr(kernels_select_description(), "cpu") != NULL);

  CHECK(strstr(kernels_select_description(), "bf16") == NULL);
  CHECK_EQ_INT(kernels_select(NULL, BACKEND_CPU, 1, 0, &k, &tr), 0);
  CHECK(k == kernels_cpu() && tr == COLL_TRANSPORT_MPI);
  CHECK_MSG(strstr(kernels_select_description(), "bf16 products:") != NULL, "%s",
            kernels_select_description());

  char why[256];
  int ngpu = gpu_device_count(why, (int)sizeof why);
  int rc = kernels_select(NULL, BACKEND_CUDA, 0, 0, &k, &tr);
  if (ngpu == 0) {
    CHECK_EQ_INT(rc, ST_EINPUT);
    CHECK_MSG(has_("training.backend") && has_("cuda"), "%s", st_errmsg());
  } else {
    CHECK_EQ_INT(rc, 0);
    CHECK(k && strcmp(k->name, "cuda") == 0 && tr == COLL_TRANSPORT_NCCL);
  }
  if (ngpu == 0) { /* eval's option is named as eval's option */
    CHECK_EQ_INT(kernels_select("--backend", BACKEND_CUDA, 0, 0, &k, &tr), ST_EINPUT);
    CHECK_MSG(has_("--backend: cuda") && !has_("training.backend"), "%s", st_errmsg());
  }
  rc = kernels_select(NULL, BACKEND_AUTO, 0, 0, &k, &tr);
  CHECK_EQ_INT(rc, 0);
  if (ngpu == 0) {
    CHECK(k == kernels_cpu() && tr == COLL_TRANSPORT_MPI);
    CHECK_MSG(strstr(kernels_select_description(), "auto") != NULL, "%s",
              kernels_select_description());
    CHECK_EQ_INT(kernels_select(NULL, BACKEND_AUTO, 1, 0, &k, &tr), 0);
    CHECK(k == kernels_cpu());
    CHECK_MSG(strstr(kernels_select_description(), "no GPU") != NULL &&
                  strstr(kernels_select_description(), "bf16 products:") != NULL,
              "%s", kernels_select_description());
  } else {
    CHECK(k && strcmp(k->name, "cuda") == 0 && tr == COLL_TRANSPORT_NCCL);
  }

  setenv("SPECTRAIN_KERNELS", "guard", 1);
  CHECK_EQ_INT(kernels_select(NULL, BACKEND_CUDA, 0, 0, &k, &tr), 0); /* overrides the job */
  CHECK(k == kernels_guard() && tr == COLL_TRANSPORT_MPI_STAGED);
  CHECK_EQ_INT(kernels_select(NULL, BACKEND_CPU, 1, 0, &k, &tr), 0);
  CHECK(k == kernels_guard());
  CHECK_MSG(strstr(kernels_select_description(), "bf16 products:") != NULL, "%s",
            kernels_select_description());
  setenv("SPECTRAIN_KERNELS", "gaurd", 1);
  CHECK_EQ_INT(kernels_select(NULL, BACKEND_CPU, 0, 0, &k, &tr), ST_EINPUT);
  CHECK_MSG(has_("SPECTRAIN_KERNELS") && has_("gaurd"), "%s", st_errmsg());
  CHECK_EQ_INT(kernels_select(NULL, 7, 0, 0, &k, &tr), ST_EINPUT); /* env checked first */
  unsetenv("SPECTRAIN_KERNELS");
  CHECK_EQ_INT(kernels_select(NULL, 7, 0, 0, &k, &tr), ST_EINPUT);
  CHECK_MSG(has_("training.backend"), "%s", st_errmsg());
  return test_done();
}
