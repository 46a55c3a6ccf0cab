/* A model's architecture, read from a Hugging Face config.json. Supported model_type:
 * llama, mistral, qwen2, qwen3 (anything else is an ST_EINPUT error that lists these). */
#ifndef SPECTRAIN_MODEL_CONFIG_H
#define SPECTRAIN_MODEL_CONFIG_H
#include <stdint.h>

typedef enum { ROPE_DEFAULT = 0, ROPE_LLAMA3 = 1 } rope_kind;

typedef struct {
  char model_type[32];     /* "llama", "mistral", "qwen2", "qwen3" */
  int hidden_size;         /* C */
  int intermediate_size;   /* F */
  int num_hidden_layers;   /* L */
  int num_attention_heads; /* H */
  int num_key_value_heads; /* KV (GQA when < H) */
  int head_dim;            /* D: hidden_size / H unless config.json says otherwise (qwen3) */
  int vocab_size;          /* V */
  int max_position_embeddings;
  double rms_norm_eps;
  double rope_theta;
  struct {
    rope_kind type;
    double factor, low_freq_factor, high_freq_factor;
    int original_max_position_embeddings;
  } rope_scaling;
  int attention_bias;      /* q/k/v projections carry a bias (qwen2 always; llama if set) */
  int qk_norm;             /* per-head RMSNorm on q and k (qwen3) */
  int tie_word_embeddings; /* lm_head shares model.embed_tokens.weight */
  double initializer_range;
  int bos_token_id, eos_token_id; /* -1 when absent (a list of eos ids: the first) */
  int sliding_window;              /* mistral/qwen2 sliding-window attention size; 0 = none */
  char torch_dtype[16];            /* "float32", "bfloat16", "float16"; "" when absent */
  int n_eos;                       /* > 1 when config.json lists several eos ids (Llama 3.1) */
  int eos_token_ids[8];            /* all of them (eos_token_id is the first); saved back */
} model_config;

/* Parse `path` (a config.json). Errors name the file and key. Reads both the
 * transformers 4 layout (rope_theta + rope_scaling) and the 5 layout (rope_parameters). */
int model_config_load(const char *path, model_config *c);
/* The same from an already parsed JSON object (a json_t *; `what` names it in errors). */
int model_config_from_json(const void *json_obj, const char *what, model_config *c);
/* The supported model_type names, "llama, mistral, qwen2, qwen3". */
const char *model_config_supported_types(void);
/* Write a config.json that transformers' AutoConfig/AutoModelForCausalLM accept. */
int model_config_save(const char *path, const model_config *c);
/* Check internal consistency (head_dim * H, KV divides H, positive sizes). */
int model_config_validate(const model_config *c, const char *what);
/* Built-in architectures for `spectrain init --preset NAME`: the config.json text of a
 * preset, or NULL for an unknown name. model_config_preset_names() lists them. */
const char *model_config_preset_json(const char *name);
const char *model_config_preset_names(void);
/* Parameters per category for `inspect` and memory accounting. */
uint64_t model_config_num_params(const model_config *c);

#endif
