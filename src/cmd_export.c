/* `spectrain export CKPT.h5 --out DIR`: a checkpoint as a Hugging Face model directory. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/ckpt.h"
#include "commands.h"
#include "mpi/comm.h"
#include "util/err.h"
#include "util/opt.h"

/* "5GB", "500MB", "2MiB", "1000" (decimal units as transformers' max_shard_size). */
static int parse_bytes_(const char *s, uint64_t *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  static const struct {
    const char *suffix;
    uint64_t mul;
  } units[] = {{"", 1},          {"KB", 1000},       {"kB", 1000},      {"MB", 1000000},
               {"GB", 1000000000}, {"KiB", 1ULL << 10}, {"MiB", 1ULL << 20}, {"GiB", 1ULL << 30}};
  uint64_t mul = 0;
  for (size_t i = 0; i < sizeof units / sizeof *units; i++)
    if (strcmp(end, units[i].suffix) == 0) mul = units[i].mul;
  if (errno || end == s || mul == 0 || !(v > 0))
    return st_fail(ST_EINPUT, "export: --max-shard-bytes: expected a size such as 5GB, 500MB or "
                   "1000000, found '%s'", s);
  *out = (uint64_t)(v * (double)mul);
  return 0;
}

int cmd_export(int argc, char **argv) {
  static const opt_cmd cmd = {
      "export", "CKPT.h5", 1, 1, "write a checkpoint's weights as a Hugging Face model directory",
      "Writes DIR/config.json (the checkpoint's model config, torch_dtype set to the stored dtype:\n"
      "by default the model's own, as its config.json names it; --dtype chooses another)\n"
      "and the parameters as model.safetensors, or as model-0000k-of-0000n.safetensors shards\n"
      "with model.safetensors.index.json when they exceed --max-shard-bytes. Every tensor is\n"
      "checked against its checksum while reading. transformers loads the directory with\n"
      "AutoModelForCausalLM.from_pretrained(DIR). Runs on rank 0 only."};
  const char *out = NULL, *dtype_s = "model", *shard_s = "5GB";
  const opt_spec specs[] = {
      {"out", OPT_STR, "DIR", "model directory to write (required)", &out},
      {"dtype", OPT_STR, "model|f32|bf16|f16",
       "stored dtype (default model: the model's torch_dtype; float32 when it names none)",
       &dtype_s},
      {"max-shard-bytes", OPT_STR, "SIZE",
       "split into shards above this size, e.g. 500MB (default 5GB, as transformers)", &shard_s},
  };
  int np;
  char **pos;
  int rc = opt_parse(&cmd, specs, (int)(sizeof specs / sizeof specs[0]), argc, argv, &np, &pos);
  if (rc) return rc == OPT_HELP_SHOWN ? ST_OK : st_report(rc);
  int dt = -1; /* the model's */
  uint64_t max_shard = 0;
  if (!out) rc = st_fail(ST_EINPUT, "export: --out DIR is required");
  else if (strcmp(dtype_s, "model") == 0) dt = -1;
  else if (strcmp(dtype_s, "f32") == 0) dt = SFT_F32;
  else if (strcmp(dtype_s, "bf16") == 0) dt = SFT_BF16;
  else if (strcmp(dtype_s, "f16") == 0) dt = SFT_F16;
  else rc = st_fail(ST_EINPUT, "export: --dtype: expected model, f32, bf16 or f16, found '%s'",
                    dtype_s);
  if (!rc) rc = parse_bytes_(shard_s, &max_shard);
  if (!rc && comm_rank() == 0) rc = ckpt_export(pos[0], out, dt, max_shard);
  free(pos);
  return rc ? st_report(rc) : ST_OK;
}
