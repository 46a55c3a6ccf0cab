/* The one descriptor table of a model's tensors: name, shape, unit, kind, weight decay,
 * trainable. It drives loading, sharding, checkpointing and export — no code indexes
 * tensors by position.
 *
 * Units (what FSDP gathers and releases together):
 *   unit 0          embedding        model.embed_tokens.weight
 *   unit 1 + l      block l          model.layers.l.*
 *   unit L + 1      head             model.norm.weight, lm_head.weight (absent when tied:
 *                                    the head then reads the embedding from unit 0) */
#ifndef SPECTRAIN_MODEL_TENSORS_H
#define SPECTRAIN_MODEL_TENSORS_H
#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"
#include "model/config.h"

typedef enum {
  TK_EMBED,      /* (V, C) */
  TK_ATTN_NORM,  /* (C) input_layernorm */
  TK_Q,          /* (H*D, C) */
  TK_K,          /* (KV*D, C) */
  TK_V,          /* (KV*D, C) */
  TK_Q_BIAS,     /* (H*D) */
  TK_K_BIAS,     /* (KV*D) */
  TK_V_BIAS,     /* (KV*D) */
  TK_Q_NORM,     /* (D) qwen3 self_attn.q_norm */
  TK_K_NORM,     /* (D) qwen3 self_attn.k_norm */
  TK_O,          /* (C, H*D) */
  TK_MLP_NORM,   /* (C) post_attention_layernorm */
  TK_GATE,       /* (F, C) */
  TK_UP,         /* (F, C) */
  TK_DOWN,       /* (C, F) */
  TK_FINAL_NORM, /* (C) model.norm */
  TK_LM_HEAD,    /* (V, C) */
  TK_COUNT
} tensor_kind;

typedef struct {
  char name[128]; /* Hugging Face name, e.g. "model.layers.3.mlp.down_proj.weight" */
  tensor_kind kind;
  int layer; /* block index, -1 outside blocks */
  int unit;
  int ndim;
  int64_t shape[2];
  uint64_t numel;
  int decay;     /* AdamW weight decay applies: matrices yes, norms and biases no */
  int trainable; /* from the trainable set (default: all) */
} tensor_desc;

typedef struct {
  int n;
  tensor_desc *t; /* in model order: embedding, blocks 0..L-1, final norm, lm_head */
  int n_units;    /* L + 2 */
} tensor_table;

int tensor_table_build(const model_config *c, tensor_table *tt);
void tensor_table_free(tensor_table *tt);
int tensor_table_find(const tensor_table *tt, const char *name); /* index or -1 */
/* The name without the "model.layers.<l>." prefix and the ".weight" suffix (biases keep
 * ".bias"): "mlp.down_proj", "self_attn.q_proj.bias", "model.embed_tokens", "lm_head". */
const char *tensor_kind_name(tensor_kind k);

/* Pointers to one gathered unit's tensors, indexed by kind (NULL where the unit or the
 * architecture has none). Weights are fp32 in w[] or, for a model context in bf16 mode
 * (model_opts.bf16), bf16 in wb[] (the other array is then unused). Gradients are fp32 in
 * both modes, NULL for frozen tensors. */
typedef struct {
  float *w[TK_COUNT];
  bf16_t *wb[TK_COUNT];
  float *g[TK_COUNT];
} unit_view;

#endif
