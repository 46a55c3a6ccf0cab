/* All of a model's parameters in one process (eval, tests, benchmarks, single-rank tools):
 * one flat float buffer in tensor-table order, optional gradients for the trainable
 * tensors, and the unit_views the model functions take. The sharded trainer does not use
 * this (shard/ owns parameter memory there). */
#ifndef SPECTRAIN_IO_WEIGHTS_H
#define SPECTRAIN_IO_WEIGHTS_H
#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"
#include "model/config.h"
#include "model/tensors.h"

typedef struct {
  model_config cfg;
  tensor_table tt;
  size_t numel;      /* total parameters */
  size_t *offset;    /* per tensor: first element in data / grad */
  float *data;       /* (numel) fp32, or NULL when loaded in bf16 only */
  bf16_t *data16;    /* (numel) bf16 (model_weights_load_bf16, model_weights_make_bf16) */
  float *grad;       /* (numel) or NULL; only trainable tensors' ranges are used */
  unit_view *units;  /* (tt.n_units) w[] into data, wb[] into data16, g[] into grad (or
                      * into the compute copies after model_weights_to_compute) */
  /* After model_weights_to_compute: the kernel table and the compute copies the views
   * point into (data stays the host copy; grad is then unused). NULL before. */
  const kernels *k;
  float *cdata, *cgrad;
  bf16_t *cdata16;
} model_weights;

/* Read config.json and the safetensors in `dir` (any float dtype, converted to fp32). Every
 * tensor of the table must be present with its shape and finite values; errors name the file,
 * tensor (and the first NaN/Inf by index). */
int model_weights_load(const char *dir, model_weights *mw);
/* The same in bf16 only (eval --bf16, bf16 tests): BF16 tensors are taken as stored, other
 * dtypes rounded to bf16 on reading; no fp32 copy is made (data stays NULL). */
int model_weights_load_bf16(const char *dir, model_weights *mw);
/* Add the bf16 copy (every parameter rounded to nearest even) next to the fp32 one, for
 * running a bf16 model context on the same weights (tests, benchmarks). Before
 * model_weights_to_compute. */
void model_weights_make_bf16(model_weights *mw);
/* Random weights for a config (benchmarks): matrices N(0, std), norms 1, biases 0. */
int model_weights_init_random(const model_config *c, uint64_t seed, double std,
                              model_weights *mw);
/* (Re)build the views after changing tt.trainable; allocates gradient memory on first use
 * and zeroes it. g[kind] is set only for trainable tensors. */
void model_weights_enable_grads(model_weights *mw);
void model_weights_zero_grads(model_weights *mw);
/* Upload the parameters (fp32 and bf16, whichever exist) into compute memory of `k`
 * (k->alloc + k->upload) and point the views there, as the model functions need for any table but cpu (a GPU, the guard test
 * backend). data keeps the host copy (model_weights_tensor); gradients enabled afterwards
 * live in compute memory too. ST_ERUNTIME when compute memory runs out. */
int model_weights_to_compute(model_weights *mw, const kernels *k);
/* Copy the compute parameters back into data (no-op before to_compute). */
void model_weights_download(model_weights *mw);
/* The flat range of tensor i (host copy; fp32 weights only). */
static inline float *model_weights_tensor(const model_weights *mw, int i) {
  return mw->data + mw->offset[i];
}
void model_weights_free(model_weights *mw);

#endif
