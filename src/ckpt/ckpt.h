/* Checkpoints as the trainer and the commands use them: the format (ckpt/format.h), the
 * HDF5 files (ckpt/h5.h), and on top of them resume selection, the job check, `inspect` and
 * `export`. Layout: docs/checkpoints.md. */
#ifndef SPECTRAIN_CKPT_CKPT_H
#define SPECTRAIN_CKPT_CKPT_H
#include <stddef.h>
#include <stdint.h>

#include "ckpt/format.h"
#include "ckpt/h5.h"
#include "io/safetensors.h"

/* --resume MODE: "none" -> *path = NULL; "auto" -> the newest ckpt-<step>.h5 in dir that
 * verifies (corrupt ones are reported with log_warn and skipped), NULL when there is none;
 * anything else is a path that must verify. Collective; *path is malloc'd. */
int ckpt_resolve_resume(const char *dir, const char *mode, char **path);

/* A checkpoint must belong to this job: same architecture (config.json keys that decide
 * shapes) and the same trainable set. ST_EINPUT naming the first difference, with the hint
 * that the job can take the checkpoint's. */
int ckpt_check_job(const ckpt_meta *ck, const char *config_json, char *const *trainable,
                   int n_trainable);

/* `spectrain inspect CKPT.h5`: step, tokens, data position, trainable summary, size per
 * group; with `tensors` every dataset with shape and size; as one JSON object when
 * `as_json`. Serial (called on rank 0 only). */
int ckpt_inspect(const char *path, int tensors, int as_json);

/* Write a Hugging Face model directory from a checkpoint's /params (and its config.json):
 * model.safetensors, or model-0000k-of-0000n.safetensors + index when the tensors exceed
 * max_shard_bytes (0: no limit), stored as `dtype` (SFT_F32, SFT_BF16, SFT_F16), or as the
 * model's own dtype (its config.json's torch_dtype: model_dir_dtype_of) when dtype < 0.
 * Serial, rank 0 only. */
int ckpt_export(const char *path, const char *out_dir, int dtype, uint64_t max_shard_bytes);

#endif
