/* The Llama-family model (llama, mistral, qwen2, qwen3), fp32 or bf16 mixed precision
 * (model_opts.bf16), one unit at a time.
 *
 * The caller (the training loop, eval, tests) owns all parameter memory and hands in each
 * unit's gathered parameters as a unit_view (model/tensors.h): w[kind] for the weights,
 * g[kind] for gradient buffers (NULL = frozen). The model owns only activations (one
 * micro-batch of B sequences x T tokens; every sequence has positions 0..T-1) and never
 * talks MPI. Parameters, gradients and activations are COMPUTE memory (kernels.h): the model
 * never dereferences them on the host; tokens and targets arrive as host arrays, are checked
 * on the host and uploaded. Attention keeps only its logsumexp (B, H, T) per block, never a
 * (T, T) matrix.
 *
 * Units: 0 = embedding, 1 + l = block l, L + 1 = head (final norm + lm_head). When the
 * embeddings are tied, the head unit has no lm_head: pass the embedding unit's view as
 * `embed` to the head calls (it must be gathered then), and the head's gradient w.r.t. the
 * shared matrix is ACCUMULATED into embed->g[TK_EMBED] (if not NULL).
 *
 * One training micro-step:
 *   model_embed_forward(ctx, &u[0], tokens)
 *   for l in 0..L-1: model_block_forward(ctx, l, &u[1+l])
 *   model_head_forward(ctx, &u[L+1], &u[0], targets, &loss_sum, &n_counted)
 *   -- the loop sums n_counted over ranks and accumulation steps; scale = 1 / that total --
 *   model_head_backward(ctx, &u[L+1], &u[0], targets, scale)
 *   for l = L-1 down to model_ctx_lowest_block(ctx): model_block_backward(ctx, l, &u[1+l])
 *   if model_ctx_lowest_grad_unit(ctx) == 0: model_embed_backward(ctx, &u[0])
 * Gradients are ACCUMULATED (+=) into g[] (gradient accumulation: zero them per step).
 * Only trainable tensors get weight gradients; blocks below the lowest unit that needs a
 * gradient run forward only and keep nothing for backward.
 *
 * Targets arrive shifted: targets[b*T + t] is the label of position t (the next token),
 * MODEL_IGNORE_INDEX (-100) = not counted. The loss is Hugging Face's: mean over counted
 * positions of the cross-entropy; head_forward returns the sum and the count so that the
 * loop can normalise over all ranks and accumulation steps. */
#ifndef SPECTRAIN_MODEL_MODEL_H
#define SPECTRAIN_MODEL_MODEL_H
#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"
#include "model/config.h"
#include "model/tensors.h"

typedef struct model_ctx model_ctx;

typedef struct {
  int batch;              /* B sequences per micro-batch */
  int seq_len;            /* T tokens per sequence (<= max_position_embeddings not required) */
  int grad_checkpointing; /* keep only each block's input; recompute inside backward */
  /* Lowest unit whose parameters (or, tied, whose shared matrix) need a gradient:
   * model_lowest_grad_unit(). L + 2 (n_units) = inference only: no backward. */
  int lowest_grad_unit;
  /* Token rows per block of logits: 0 = all B*T when (B*T, V) floats fit in 256 MiB, else
   * as many as fit. With fewer than B*T the head keeps no logits and recomputes each
   * block in backward (one extra (rows, C) x (C, V) product per block). */
  int head_chunk_tokens;
  /* Mixed precision (training.bf16; docs/model.md "Precision"): weights come in
   * unit_view.wb (bf16), every matrix product runs on bf16 operands with fp32 accumulation
   * (kernels.h gemm_bf16), and the activations that PyTorch autocast keeps in bf16 (the
   * inputs of the matrix products: normed hidden states, q, k, v, attention output, gate,
   * up, SwiGLU output) are kept in bf16; the residual stream, norm statistics, RoPE
   * tables, softmax / logsumexp, logits, the loss and all gradients of weights stay fp32.
   * 0: fp32 throughout (w[]). */
  int bf16;
} model_opts;

/* The lowest unit holding a trainable tensor, or tt->n_units when nothing is trainable.
 * (Tied embeddings: a trainable embedding makes unit 0 the lowest.) */
int model_lowest_grad_unit(const tensor_table *tt);

/* Activation workspace for one micro-batch. Errors (ST_EINPUT) for invalid sizes. The
 * config and kernel table must outlive the context. */
int model_ctx_create(const model_config *c, const kernels *k, const model_opts *o,
                     model_ctx **out);
void model_ctx_free(model_ctx *ctx);
/* The bytes model_ctx_create would allocate for these options (the same sequence of
 * buffers, counted, nothing allocated): for checking a job against memory up front. The
 * same ST_EINPUT errors as model_ctx_create for invalid sizes. */
int model_ctx_predict_bytes(const model_config *c, const kernels *k, const model_opts *o,
                            uint64_t *bytes);
/* Tokens per sequence of the micro-batches that follow (1 <= T <= the seq_len it was made
 * for): tokens and targets are then (B, T) arrays. A causal model's loss at a position
 * never depends on later ones, so a micro-batch whose counted targets all sit in its first
 * T positions gives the same loss and gradients on (B, T) as on the full length, at T/T_max
 * of the cost (data_trim makes such a batch). Call between micro-batches, never between a
 * forward and its backward. */
int model_ctx_set_seq_len(model_ctx *ctx, int T);
int model_ctx_seq_len(const model_ctx *ctx);
/* Bytes of activation memory the context holds (for the memory report). */
size_t model_ctx_bytes(const model_ctx *ctx);
int model_ctx_lowest_grad_unit(const model_ctx *ctx);
/* Lowest block that model_block_backward must run for (max(0, lowest_grad_unit - 1));
 * L when no block needs backward. */
int model_ctx_lowest_block(const model_ctx *ctx);

/* Forward. tokens and targets are (B, T) host arrays. Token ids outside [0, V) and targets
 * outside [0, V) other than -100 are ST_EINPUT errors naming the position. */
int model_embed_forward(model_ctx *ctx, const unit_view *embed, const int32_t *tokens);
void model_block_forward(model_ctx *ctx, int layer, const unit_view *blk);
/* Final norm, logits, and the cross-entropy: ADDS the loss sum over counted positions to
 * *loss_sum and their number to *n_counted (either may be NULL; targets may be NULL for
 * logits only). */
int model_head_forward(model_ctx *ctx, const unit_view *head, const unit_view *embed,
                       const int32_t *targets, double *loss_sum, int64_t *n_counted);
/* Logits (B*T, V) of the last head_forward, in COMPUTE memory (the kernel table's; the
 * host must not dereference it: copy it out with k->download); valid until head_backward
 * (which overwrites them with their gradient). NULL when the head works in blocks
 * (head_chunk_tokens). */
const float *model_logits(const model_ctx *ctx);

/* Backward, top down, after a forward of the same micro-batch. loss_scale multiplies the
 * gradient of the summed loss (use 1 / global number of counted targets). */
void model_head_backward(model_ctx *ctx, const unit_view *head, const unit_view *embed,
                         const int32_t *targets, float loss_scale);
void model_block_backward(model_ctx *ctx, int layer, const unit_view *blk);
void model_embed_backward(model_ctx *ctx, const unit_view *embed);

/* Whole-model convenience for one process holding all units (eval, tests, bench):
 * units[u] for u in 0..L+1. forward adds to *loss_sum / *n_counted; backward runs every
 * needed step with the given scale. */
int model_forward(model_ctx *ctx, const unit_view *units, const int32_t *tokens,
                  const int32_t *targets, double *loss_sum, int64_t *n_counted);
void model_backward(model_ctx *ctx, const unit_view *units, const int32_t *targets,
                    float loss_scale);

/* Matrix-product FLOPs of one forward over B*T tokens (2 per multiply-add; attention
 * counted as the full T x T square products, the usual convention: the tiled kernels
 * compute only the causal part, about half of it for long sequences), for benchmarks. */
double model_forward_flops(const model_config *c, int B, int T);

#endif
