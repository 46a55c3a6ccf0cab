/* A GGUF model (llama.cpp's format) to a Hugging Face model directory:
 *   config.json        from the llama.* metadata (block_count, embedding_length,
 *                      feed_forward_length, attention.head_count[_kv], key_length,
 *                      layer_norm_rms_epsilon, rope.freq_base, context_length, vocab size,
 *                      bos/eos ids); tie_word_embeddings when output.weight is absent;
 *   model.safetensors  every tensor dequantised (io/gguf_quant.h) under its Hugging Face
 *                      name, q_proj/k_proj rows put back in Hugging Face's order (llama.cpp's
 *                      convert_hf_to_gguf.py interleaves the two rotary halves of each head);
 *   tokenizer.json,    from tokenizer.ggml.* (gguf_tokenizer_write).
 *   tokenizer_config.json
 * Architectures: "llama" (Llama, Mistral, SmolLM and the other models llama.cpp files as
 * llama), "qwen2" (q/k/v biases) and "qwen3" (q/k norms); only llama's q/k rows are
 * permuted in the file. Anything the import cannot represent exactly (another architecture, rope scaling,
 * an extra tensor, a tensor type it cannot dequantise, a shape the metadata does not
 * imply) is an ST_EINPUT error naming it, before anything is written. */
#ifndef SPECTRAIN_IO_GGUF_IMPORT_H
#define SPECTRAIN_IO_GGUF_IMPORT_H
#include <stdint.h>

#include "io/gguf.h"
#include "io/safetensors.h"
#include "model/config.h"

typedef struct {
  int dtype;          /* SFT_F32, SFT_BF16, SFT_F16; -1: bf16 when every matrix is BF16, else f32 */
  int tokenizer;      /* write tokenizer.json + tokenizer_config.json */
  int tokenizer_only; /* only those (a vocabulary-only GGUF) */
  int force;          /* replace a model already in the directory */
  uint64_t max_shard_bytes; /* 0: one file */
} gguf_import_opts;

int gguf_import(const char *gguf_path, const char *out_dir, const gguf_import_opts *o);

/* The model config the file's metadata describes (checked; no tensors needed). */
int gguf_model_config(const gguf_file *g, model_config *c);

/* tokenizer.json + tokenizer_config.json into dir (io/gguf_tokenizer.c). */
int gguf_tokenizer_write(const gguf_file *g, const char *dir, int64_t model_max_length);

/* Undo llama.cpp's q/k row permutation of one matrix in place: rows (n_head, 2, D/2) in
 * Hugging Face's order were stored as (n_head, D/2, 2). rows = n_head * D; cols = row
 * length (1 for a bias). */
void gguf_unpermute_rows(float *w, int n_head, int64_t rows, int64_t cols);

#endif
