/* The tensor descriptor table of a Llama-family model, from its config. */
#include "model/tensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

/* Name suffix after "model.layers.<l>." (inside blocks) or the full name without ".weight"
 * (outside blocks); biases keep their ".bias". */
static const char *const kind_names_[TK_COUNT] = {
    [TK_EMBED] = "model.embed_tokens",
    [TK_ATTN_NORM] = "input_layernorm",
    [TK_Q] = "self_attn.q_proj",
    [TK_K] = "self_attn.k_proj",
    [TK_V] = "self_attn.v_proj",
    [TK_Q_BIAS] = "self_attn.q_proj.bias",
    [TK_K_BIAS] = "self_attn.k_proj.bias",
    [TK_V_BIAS] = "self_attn.v_proj.bias",
    [TK_Q_NORM] = "self_attn.q_norm",
    [TK_K_NORM] = "self_attn.k_norm",
    [TK_O] = "self_attn.o_proj",
    [TK_MLP_NORM] = "post_attention_layernorm",
    [TK_GATE] = "mlp.gate_proj",
    [TK_UP] = "mlp.up_proj",
    [TK_DOWN] = "mlp.down_proj",
    [TK_FINAL_NORM] = "model.norm",
    [TK_LM_HEAD] = "lm_head",
};

const char *tensor_kind_name(tensor_kind k) {
  return (k >= 0 && k < TK_COUNT) ? kind_names_[k] : "?";
}

static int is_bias_(tensor_kind k) { return k == TK_Q_BIAS || k == TK_K_BIAS || k == TK_V_BIAS; }

static void add_(tensor_table *tt, int *cap, tensor_kind k, int layer, int unit, int64_t d0,
                 int64_t d1) {
  if (tt->n == *cap) {
    *cap = *cap ? 2 * *cap : 64;
    tt->t = xrealloc(tt->t, (size_t)*cap * sizeof *tt->t);
  }
  tensor_desc *d = &tt->t[tt->n++];
  memset(d, 0, sizeof *d);
  if (layer >= 0)
    snprintf(d->name, sizeof d->name, "model.layers.%d.%s%s", layer, kind_names_[k],
             is_bias_(k) ? "" : ".weight");
  else
    snprintf(d->name, sizeof d->name, "%s.weight", kind_names_[k]);
  d->kind = k;
  d->layer = layer;
  d->unit = unit;
  d->ndim = d1 > 0 ? 2 : 1;
  d->shape[0] = d0;
  d->shape[1] = d1 > 0 ? d1 : 0;
  d->numel = (uint64_t)d0 * (uint64_t)(d1 > 0 ? d1 : 1);
  d->decay = d->ndim == 2; /* matrices and the embedding; not norms, not biases */
  d->trainable = 1;
}

int tensor_table_build(const model_config *c, tensor_table *tt) {
  memset(tt, 0, sizeof *tt);
  int rc = model_config_validate(c, "model config");
  if (rc) return rc;
  int cap = 0;
  const int64_t C = c->hidden_size, F = c->intermediate_size, V = c->vocab_size;
  const int64_t QD = (int64_t)c->num_attention_heads * c->head_dim;
  const int64_t KD = (int64_t)c->num_key_value_heads * c->head_dim;
  const int L = c->num_hidden_layers;
  add_(tt, &cap, TK_EMBED, -1, 0, V, C);
  for (int l = 0; l < L; l++) {
    int u = 1 + l;
    add_(tt, &cap, TK_ATTN_NORM, l, u, C, 0);
    add_(tt, &cap, TK_Q, l, u, QD, C);
    add_(tt, &cap, TK_K, l, u, KD, C);
    add_(tt, &cap, TK_V, l, u, KD, C);
    if (c->attention_bias) {
      add_(tt, &cap, TK_Q_BIAS, l, u, QD, 0);
      add_(tt, &cap, TK_K_BIAS, l, u, KD, 0);
      add_(tt, &cap, TK_V_BIAS, l, u, KD, 0);
    }
    if (c->qk_norm) {
      add_(tt, &cap, TK_Q_NORM, l, u, c->head_dim, 0);
      add_(tt, &cap, TK_K_NORM, l, u, c->head_dim, 0);
    }
    add_(tt, &cap, TK_O, l, u, C, QD);
    add_(tt, &cap, TK_MLP_NORM, l, u, C, 0);
    add_(tt, &cap, TK_GATE, l, u, F, C);
    add_(tt, &cap, TK_UP, l, u, F, C);
    add_(tt, &cap, TK_DOWN, l, u, C, F);
  }
  add_(tt, &cap, TK_FINAL_NORM, -1, L + 1, C, 0);
  if (!c->tie_word_embeddings) add_(tt, &cap, TK_LM_HEAD, -1, L + 1, V, C);
  tt->n_units = L + 2;
  return 0;
}

void tensor_table_free(tensor_table *tt) {
  free(tt->t);
  memset(tt, 0, sizeof *tt);
}

int tensor_table_find(const tensor_table *tt, const char *name) {
  for (int i = 0; i < tt->n; i++)
    if (strcmp(tt->t[i].name, name) == 0) return i;
  return -1;
}
