/* A Hugging Face model directory: config.json + safetensors (single or sharded), checked
 * against the tensor table the config implies. Training, the Spectrum scan and `inspect`
 * open models through this, so every consumer gets the same checks:
 *   - every tensor the config implies is present, with the shape it implies and a float
 *     dtype (F32, BF16, F16, F64);
 *   - tensors the config does not imply are ignored with one warning (old checkpoints carry
 *     rotary_emb.inv_freq; tied models sometimes still store lm_head.weight). */
#ifndef SPECTRAIN_IO_MODEL_DIR_H
#define SPECTRAIN_IO_MODEL_DIR_H
#include "io/safetensors.h"
#include "model/config.h"
#include "model/tensors.h"

typedef struct {
  char *dir;
  model_config cfg;
  tensor_table tt;
  sft_model st;
  const sft_tensor **file_t; /* [tt.n]: the stored tensor of each table entry */
  int n_extra;               /* stored tensors the config does not imply */
} model_dir;

int model_dir_open(const char *dir, model_dir *md);
void model_dir_close(model_dir *md);

/* Read a whole table tensor (tt.t[i]) converted to float32 into out[numel]; a NaN or
 * infinity in it is an ST_EINPUT error naming tensor and index (sft_check_finite). */
int model_dir_read_f32(const model_dir *md, int i, float *out);

/* Write a model directory: the tensors of `tt` (in table order) as `dtype` (F32, BF16, F16),
 * in one model.safetensors or, when they exceed max_shard_bytes, in shards
 * model-0000k-of-0000n.safetensors with model.safetensors.index.json (a tensor larger than
 * the limit gets a shard of its own, as transformers does); config.json (torch_dtype set
 * from dtype) is written last, so a directory with a config.json is complete. Each shard's
 * data come from fill(ctx, desc, out[numel]), called in table order; one tensor is held
 * in memory at a time. A fill error or a non-finite value (the writer refuses it) removes the
 * shards this call wrote. */
typedef int (*model_fill_fn)(void *ctx, const tensor_desc *d, float *out);
/* The dtype a model's config.json names (torch_dtype, or transformers 5's dtype): BF16 for
 * "bfloat16", F16 for "float16", F32 otherwise ("float32" or none): what exports write. */
sft_dtype model_dir_dtype_of(const model_config *c);
int model_dir_write(const char *dir, const model_config *c, const tensor_table *tt, sft_dtype dtype,
                    uint64_t max_shard_bytes, model_fill_fn fill, void *ctx);

#endif
