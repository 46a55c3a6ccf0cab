#include "train/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job/job.h"
#include "kernels/gpu.h"
#include "util/err.h"

static char desc_[512] = "none selected";
const char *kernels_select_description(void) { return desc_; }

/* " with bf16 products on oneDNN ... " for the description of a cpu-kernel bf16 run */
static const char *cpu_bf16_(int bf16, char *buf, size_t len) {
  if (!bf16) return "";
  snprintf(buf, len, "; bf16 mixed precision, %s", kernels_cpu_bf16_description(NULL));
  return buf;
}

static int cuda_(const char *key, int bf16, int local_rank, const char *asked,
                 const kernels **out, coll_transport *transport) {
  char why[256] = "";
  int dev = gpu_select_device(local_rank, why, (int)sizeof why);
  if (dev < 0)
    return st_fail(ST_EINPUT, "%s: %s: cannot use a GPU for local rank %d: %s", key, asked,
                   local_rank, why);
  const kernels *k = kernels_cuda(bf16, why, (int)sizeof why);
  if (!k)
    return st_fail(ST_EINPUT, "%s: %s: the CUDA kernels are not available on device %d (%s): %s",
                   key, asked, dev, gpu_device_name(), why);
  *out = k;
  *transport = COLL_TRANSPORT_NCCL;
  snprintf(desc_, sizeof desc_, "kernels: cuda on device %d (%s), local rank %d, %s, NCCL "
           "collectives", dev, gpu_device_name(), local_rank,
           bf16 ? "bf16 mixed precision (cuBLAS bf16 products)" : "fp32 matrix products");
  return ST_OK;
}

int kernels_select(const char *key, int backend, int bf16, int local_rank, const kernels **out,
                   coll_transport *transport) {
  if (!key) key = "training.backend";
  *out = NULL;
  *transport = COLL_TRANSPORT_MPI;
  const char *env = getenv("SPECTRAIN_KERNELS");
  if (env && *env) {
    if (strcmp(env, "guard") != 0)
      return st_fail(ST_EINPUT, "SPECTRAIN_KERNELS: expected 'guard' (or unset), found '%s'",
                     env);
    char b16[320];
    *out = kernels_guard();
    *transport = COLL_TRANSPORT_MPI_STAGED;
    snprintf(desc_, sizeof desc_, "kernels: guard (SPECTRAIN_KERNELS=guard: CPU kernels, compute memory fenced "
             "off from the host; a test backend, slow), collectives staged through host%s",
             cpu_bf16_(bf16, b16, sizeof b16));
    return ST_OK;
  }
  switch (backend) {
  case BACKEND_CPU: {
    char b16[320];
    *out = kernels_cpu();
    snprintf(desc_, sizeof desc_, "kernels: cpu (%s: cpu), %s%s", key, kernels_cpu_threads(),
             cpu_bf16_(bf16, b16, sizeof b16));
    return ST_OK;
  }
  case BACKEND_CUDA:
    return cuda_(key, bf16, local_rank, "cuda", out, transport);
  case BACKEND_AUTO: {
    char why[256] = "";
    int n = gpu_device_count(why, (int)sizeof why);
    if (n > 0) return cuda_(key, bf16, local_rank, "auto (a GPU was found)", out, transport);
    char b16[320];
    *out = kernels_cpu();
    snprintf(desc_, sizeof desc_, "kernels: cpu (%s: auto; no GPU: %s), %s%s", key, why,
             kernels_cpu_threads(), cpu_bf16_(bf16, b16, sizeof b16));
    return ST_OK;
  }
  default:
    return st_fail(ST_EINPUT, "%s: expected cpu, cuda or auto, found %d", key, backend);
  }
}
