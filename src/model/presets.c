/* Built-in model architectures (config.json text) for `spectrain init --preset NAME`.
 * The 8B shapes are those of the published meta-llama/Llama-3.1-8B and Qwen/Qwen3-8B
 * config.json files; the tiny ones use the 256-byte vocabulary of the byte-level tiny job. */
#include <string.h>

#include "model/config.h"

static const struct {
  const char *name;
  const char *json;
} presets_[] = {
    {"tiny-llama",
     "{\"model_type\": \"llama\", \"hidden_size\": 256, \"intermediate_size\": 688,"
     " \"num_hidden_layers\": 4, \"num_attention_heads\": 4, \"num_key_value_heads\": 2,"
     " \"vocab_size\": 256, \"max_position_embeddings\": 1024, \"rms_norm_eps\": 1e-5,"
     " \"rope_theta\": 10000.0, \"tie_word_embeddings\": false, \"initializer_range\": 0.02,"
     " \"bos_token_id\": null, \"eos_token_id\": null}"},
    {"tiny-qwen3",
     "{\"model_type\": \"qwen3\", \"hidden_size\": 256, \"intermediate_size\": 688,"
     " \"num_hidden_layers\": 4, \"num_attention_heads\": 4, \"num_key_value_heads\": 2,"
     " \"head_dim\": 64, \"vocab_size\": 256, \"max_position_embeddings\": 1024,"
     " \"rms_norm_eps\": 1e-6, \"rope_theta\": 1000000.0, \"tie_word_embeddings\": true,"
     " \"initializer_range\": 0.02, \"bos_token_id\": null, \"eos_token_id\": null}"},
    {"tiny-qwen2",
     "{\"model_type\": \"qwen2\", \"hidden_size\": 256, \"intermediate_size\": 688,"
     " \"num_hidden_layers\": 4, \"num_attention_heads\": 4, \"num_key_value_heads\": 2,"
     " \"vocab_size\": 256, \"max_position_embeddings\": 1024, \"rms_norm_eps\": 1e-6,"
     " \"rope_theta\": 1000000.0, \"tie_word_embeddings\": true, \"initializer_range\": 0.02,"
     " \"bos_token_id\": null, \"eos_token_id\": null}"},
    {"llama-3.1-8b",
     "{\"model_type\": \"llama\", \"hidden_size\": 4096, \"intermediate_size\": 14336,"
     " \"num_hidden_layers\": 32, \"num_attention_heads\": 32, \"num_key_value_heads\": 8,"
     " \"head_dim\": 128, \"vocab_size\": 128256, \"max_position_embeddings\": 131072,"
     " \"rms_norm_eps\": 1e-5, \"rope_theta\": 500000.0,"
     " \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0,"
     " \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192},"
     " \"tie_word_embeddings\": false, \"initializer_range\": 0.02,"
     " \"bos_token_id\": 128000, \"eos_token_id\": 128001, \"torch_dtype\": \"bfloat16\"}"},
    {"qwen3-8b",
     "{\"model_type\": \"qwen3\", \"hidden_size\": 4096, \"intermediate_size\": 12288,"
     " \"num_hidden_layers\": 36, \"num_attention_heads\": 32, \"num_key_value_heads\": 8,"
     " \"head_dim\": 128, \"vocab_size\": 151936, \"max_position_embeddings\": 40960,"
     " \"rms_norm_eps\": 1e-6, \"rope_theta\": 1000000.0, \"rope_scaling\": null,"
     " \"tie_word_embeddings\": false, \"initializer_range\": 0.02,"
     " \"bos_token_id\": 151643, \"eos_token_id\": 151645, \"torch_dtype\": \"bfloat16\"}"},
};
#define N_PRESETS ((int)(sizeof presets_ / sizeof presets_[0]))

const char *model_config_preset_json(const char *name) {
  for (int i = 0; i < N_PRESETS; i++)
    if (strcmp(presets_[i].name, name) == 0) return presets_[i].json;
  return NULL;
}

const char *model_config_preset_names(void) {
  return "tiny-llama, tiny-qwen3, tiny-qwen2, llama-3.1-8b, qwen3-8b";
}
