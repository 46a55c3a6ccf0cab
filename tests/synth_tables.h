/* A hand-made tensor table for tests of shard/ that must not depend on a model config:
 * embedding (V, C), L blocks of {attn_norm (C), q (C, C), mlp.down (C, F)}, final norm (C),
 * lm_head (V, C) unless tied. Trainable flags: `train_mask` bit t (in table order) or all
 * when train_mask == ~0. */
#ifndef SPECTRAIN_TESTS_SYNTH_TABLES_H
#define SPECTRAIN_TESTS_SYNTH_TABLES_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/tensors.h"

static void synth_add_(tensor_table *tt, const char *name, tensor_kind k, int layer, int unit,
                       int64_t r, int64_t c) {
  tensor_desc *d = &tt->t[tt->n++];
  memset(d, 0, sizeof *d);
  snprintf(d->name, sizeof d->name, "%s", name);
  d->kind = k;
  d->layer = layer;
  d->unit = unit;
  d->ndim = c ? 2 : 1;
  d->shape[0] = r;
  d->shape[1] = c;
  d->numel = (uint64_t)r * (uint64_t)(c ? c : 1);
  d->decay = c != 0;
  d->trainable = 1;
}

static inline void synth_table(tensor_table *tt, int V, int C, int F, int L, int tied,
                               unsigned long long train_mask) {
  tt->t = calloc((size_t)(3 * L + 3), sizeof(tensor_desc));
  tt->n = 0;
  tt->n_units = L + 2;
  synth_add_(tt, "model.embed_tokens.weight", TK_EMBED, -1, 0, V, C);
  char nm[128];
  for (int l = 0; l < L; l++) {
    snprintf(nm, sizeof nm, "model.layers.%d.input_layernorm.weight", l);
    synth_add_(tt, nm, TK_ATTN_NORM, l, 1 + l, C, 0);
    snprintf(nm, sizeof nm, "model.layers.%d.self_attn.q_proj.weight", l);
    synth_add_(tt, nm, TK_Q, l, 1 + l, C, C);
    snprintf(nm, sizeof nm, "model.layers.%d.mlp.down_proj.weight", l);
    synth_add_(tt, nm, TK_DOWN, l, 1 + l, C, F);
  }
  synth_add_(tt, "model.norm.weight", TK_FINAL_NORM, -1, L + 1, C, 0);
  if (!tied) synth_add_(tt, "lm_head.weight", TK_LM_HEAD, -1, L + 1, V, C);
  for (int i = 0; i < tt->n; i++) tt->t[i].trainable = (int)((train_mask >> i) & 1u);
}
#endif
