/* `spectrain import MODEL.gguf OUT_DIR`: a GGUF file (llama.cpp) as a Hugging Face model
 * directory (io/gguf_import.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "io/gguf_import.h"
#include "util/err.h"
#include "util/opt.h"

int cmd_import(int argc, char **argv) {
  static const opt_cmd cmd = {
      "import", "MODEL.gguf OUT_DIR", 2, 2,
      "convert a GGUF model (llama.cpp) into a Hugging Face model directory",
      "Writes OUT_DIR/config.json from the GGUF metadata, model.safetensors with every tensor\n"
      "dequantised (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)\n"
      "under its Hugging Face name, q_proj/k_proj rows in Hugging Face's order again, and\n"
      "tokenizer.json + tokenizer_config.json (chat template included) from the GGUF's\n"
      "byte-level BPE tokenizer. Architectures: llama, qwen2, qwen3. The default dtype is f32, which\n"
      "holds dequantised and F16 values exactly; bf16 when every matrix of the file is BF16.\n"
      "transformers loads OUT_DIR with AutoModelForCausalLM.from_pretrained(OUT_DIR).\n"
      "Example: spectrain import SmolLM2-135M-Instruct.Q4_1.gguf models/smollm2"};
  const char *dtype_s = "auto";
  int no_tok = 0, tok_only = 0, force = 0;
  const opt_spec specs[] = {
      {"dtype", OPT_STR, "auto|f32|bf16|f16",
       "stored dtype (default auto: bf16 when every matrix is BF16, else f32)", &dtype_s},
      {"no-tokenizer", OPT_FLAG, NULL, "write the model only (no tokenizer files)", &no_tok},
      {"tokenizer-only", OPT_FLAG, NULL,
       "write only tokenizer.json and tokenizer_config.json (for vocabulary-only GGUF files)",
       &tok_only},
      {"force", OPT_FLAG, NULL, "replace a model already in OUT_DIR", &force},
  };
  int np;
  char **pos;
  int rc = opt_parse(&cmd, specs, (int)(sizeof specs / sizeof specs[0]), argc, argv, &np, &pos);
  if (rc) return rc == OPT_HELP_SHOWN ? ST_OK : st_report(rc);
  gguf_import_opts o = {-1, !no_tok, tok_only, force, 0};
  if (strcmp(dtype_s, "auto") == 0) o.dtype = -1;
  else if (strcmp(dtype_s, "f32") == 0) o.dtype = SFT_F32;
  else if (strcmp(dtype_s, "bf16") == 0) o.dtype = SFT_BF16;
  else if (strcmp(dtype_s, "f16") == 0) o.dtype = SFT_F16;
  else rc = st_fail(ST_EINPUT, "import: --dtype: expected auto, f32, bf16 or f16, found '%s'",
                    dtype_s);
  if (!rc && no_tok && tok_only)
    rc = st_fail(ST_EINPUT, "import: --no-tokenizer and --tokenizer-only exclude each other");
  if (!rc && log_rank() == 0) rc = gguf_import(pos[0], pos[1], &o);
  free(pos);
  return rc ? st_report(rc) : ST_OK;
}
