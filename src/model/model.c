/* The Llama-family forward and backward, one unit at a time (see model.h). All math goes
 * through the kernel table; this file only sequences it and owns the activations. */
#include "model/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

/* What one block keeps for its backward. Sizes with N = B*T tokens. */
typedef struct {
  float *xn1;     /* (N, C) input_layernorm output */
  float *rstd1;   /* (N) */
  float *q_pre;   /* (N, H*D) q after bias, before q_norm (qk_norm only) */
  float *k_pre;   /* (N, KV*D) */
  float *q_rstd;  /* (N*H) */
  float *k_rstd;  /* (N*KV) */
  float *q;       /* (N, H*D) after norm + RoPE */
  float *k;       /* (N, KV*D) after norm + RoPE */
  float *v;       /* (N, KV*D) */
  float *lse;     /* (B, H, T) attention logsumexp per query (no (T, T) matrix is kept) */
  float *y;       /* (N, H*D) attention output before o_proj */
  float *xmid;    /* (N, C) residual after attention */
  float *xn2;     /* (N, C) post_attention_layernorm output */
  float *rstd2;   /* (N) */
  float *gate;    /* (N, F) */
  float *up;      /* (N, F) */
  float *h;       /* (N, F) silu(gate) * up */
  /* bf16 mode: the same activations in bf16 (the fp32 fields above that have a bf16 twin
   * are NULL then); q, k, v after RoPE, rounded before attention sees them */
  bf16_t *xn1h, *qh, *kh, *vh, *yh, *xn2h, *gateh, *uph, *hh;
} block_acts;

struct model_ctx {
  const model_config *cfg;
  const kernels *k;
  int B, T, N, C, F, H, KV, D, V, L, HD, KVD;
  int T_max, head_chunk_max; /* as created; T, N and head_chunk follow model_ctx_set_seq_len */
  int ckpt, lowest_unit, lowest_block;
  float eps;
  size_t bytes;
  float *rope_cos, *rope_sin; /* (T, D/2) */
  float **x;                  /* x[0..L]: (N, C) residual stream at each block's input */
  block_acts *acts;           /* per block: own buffers, or `work` */
  block_acts work;            /* shared: checkpointed and forward-only blocks */
  /* head */
  float *xnf, *rstdf, *logits, *lse; /* (N, C), (N), (head_chunk, V), (N) */
  int head_chunk;                     /* token rows per logits block; < N: recomputed */
  /* backward scratch */
  float *dx;                         /* (N, C) gradient w.r.t. the residual stream */
  float *dxn;                        /* (N, C) */
  float *dy, *dq, *dk, *dv, *dh;     /* (N, HD), (N, HD), (N, KVD), (N, KVD), (N, F) */
  float *att_scratch;                /* attention_scratch_floats(B, T, H, KV, D) */
  int32_t *tokens;                   /* (N) compute copy of the last embed_forward's tokens */
  int32_t *targets;                  /* (N) compute copy of the head's targets */
  /* bf16 mode only: fp32 working copies shared by all blocks, bf16 copies of gradients
   * for the products, the head's bf16 normed input and logits gradient, and fp32 copies
   * of the unit's small weights (norms, biases), converted where they are used */
  int bf16;
  float *f_xn, *f_q, *f_k, *f_v, *f_y, *f_a, *f_b, *f_c; /* (N,C) (N,HD) (N,KVD)x2 (N,HD) (N,F)x3 */
  bf16_t *dx16;                      /* (N, C) */
  bf16_t *xnf16, *logits16;          /* (N, C), (head_chunk, V) */
  float *sw;                         /* small weights: SW_NKINDS slots of max(C, HD, KVD) */
  size_t sw_slot;
  void **allocs;
  int nallocs;
  int dry; /* model_ctx_predict_bytes: count the bytes, allocate nothing */
};

/* Compute memory (the kernel table's alloc): the host never dereferences it. */
static void *buf_bytes_(model_ctx *c, size_t bytes) {
  static float dry_; /* a non-NULL stand-in nobody dereferences */
  if (c->dry) {
    c->bytes += bytes;
    return &dry_;
  }
  void *p = c->k->alloc(bytes);
  if (!p) return NULL;
  c->allocs = xrealloc(c->allocs, (size_t)(c->nallocs + 1) * sizeof *c->allocs);
  c->allocs[c->nallocs++] = p;
  c->bytes += bytes;
  return p;
}
static float *buf_(model_ctx *c, size_t nfloats) { return buf_bytes_(c, nfloats * sizeof(float)); }
static bf16_t *hbuf_(model_ctx *c, size_t n) { return buf_bytes_(c, n * sizeof(bf16_t)); }

static int acts_alloc_bf16_(model_ctx *c, block_acts *a) {
  size_t N = (size_t)c->N;
  memset(a, 0, sizeof *a);
  a->rstd1 = buf_(c, N);
  if (c->cfg->qk_norm) { /* fp32: their RMSNorm backward reads them */
    a->q_pre = buf_(c, N * c->HD);
    a->k_pre = buf_(c, N * c->KVD);
    a->q_rstd = buf_(c, N * c->H);
    a->k_rstd = buf_(c, N * c->KV);
    if (!a->q_pre || !a->k_pre || !a->q_rstd || !a->k_rstd) return -1;
  }
  a->lse = buf_(c, (size_t)c->B * c->H * c->T);
  a->xmid = buf_(c, N * c->C);
  a->rstd2 = buf_(c, N);
  a->xn1h = hbuf_(c, N * c->C);
  a->qh = hbuf_(c, N * c->HD);
  a->kh = hbuf_(c, N * c->KVD);
  a->vh = hbuf_(c, N * c->KVD);
  a->yh = hbuf_(c, N * c->HD);
  a->xn2h = hbuf_(c, N * c->C);
  a->gateh = hbuf_(c, N * c->F);
  a->uph = hbuf_(c, N * c->F);
  a->hh = hbuf_(c, N * c->F);
  return (a->rstd1 && a->lse && a->xmid && a->rstd2 && a->xn1h && a->qh && a->kh && a->vh &&
          a->yh && a->xn2h && a->gateh && a->uph && a->hh)
             ? 0
             : -1;
}

static int acts_alloc_(model_ctx *c, block_acts *a) {
  if (c->bf16) return acts_alloc_bf16_(c, a);
  size_t N = (size_t)c->N;
  memset(a, 0, sizeof *a);
  a->xn1 = buf_(c, N * c->C);
  a->rstd1 = buf_(c, N);
  if (c->cfg->qk_norm) {
    a->q_pre = buf_(c, N * c->HD);
    a->k_pre = buf_(c, N * c->KVD);
    a->q_rstd = buf_(c, N * c->H);
    a->k_rstd = buf_(c, N * c->KV);
    if (!a->q_pre || !a->k_pre || !a->q_rstd || !a->k_rstd) return -1;
  }
  a->q = buf_(c, N * c->HD);
  a->k = buf_(c, N * c->KVD);
  a->v = buf_(c, N * c->KVD);
  a->lse = buf_(c, (size_t)c->B * c->H * c->T);
  a->y = buf_(c, N * c->HD);
  a->xmid = buf_(c, N * c->C);
  a->xn2 = buf_(c, N * c->C);
  a->rstd2 = buf_(c, N);
  a->gate = buf_(c, N * c->F);
  a->up = buf_(c, N * c->F);
  a->h = buf_(c, N * c->F);
  return (a->xn1 && a->rstd1 && a->q && a->k && a->v && a->lse && a->y && a->xmid && a->xn2 &&
          a->rstd2 && a->gate && a->up && a->h)
             ? 0
             : -1;
}

int model_lowest_grad_unit(const tensor_table *tt) {
  int lowest = tt->n_units;
  for (int i = 0; i < tt->n; i++)
    if (tt->t[i].trainable && tt->t[i].unit < lowest) lowest = tt->t[i].unit;
  return lowest;
}

/* Inverse frequencies as transformers computes them (rope_init_fn for "default" and
 * "llama3"), then the (T, D/2) cos/sin tables: computed on the host, then uploaded. */
static void rope_tables_(model_ctx *c) {
  const model_config *m = c->cfg;
  int half = c->D / 2;
  size_t n = (size_t)c->T * half;
  float *cos_h = xmalloc((n ? n : 1) * sizeof *cos_h), *sin_h = xmalloc((n ? n : 1) * sizeof *sin_h);
  for (int i = 0; i < half; i++) {
    double inv = 1.0 / pow(m->rope_theta, (2.0 * i) / c->D);
    if (m->rope_scaling.type == ROPE_LLAMA3) {
      double factor = m->rope_scaling.factor, lo = m->rope_scaling.low_freq_factor,
             hi = m->rope_scaling.high_freq_factor;
      double old_ctx = m->rope_scaling.original_max_position_embeddings;
      double lo_wavelen = old_ctx / lo, hi_wavelen = old_ctx / hi;
      double wavelen = 2.0 * M_PI / inv;
      if (wavelen > lo_wavelen) {
        inv = inv / factor;
      } else if (wavelen >= hi_wavelen) { /* medium band: interpolate */
        double smooth = (old_ctx / wavelen - lo) / (hi - lo);
        inv = (1.0 - smooth) * inv / factor + smooth * inv;
      }
    }
    /* transformers computes inv_freq and the angles in float32 */
    float invf = (float)inv;
    for (int t = 0; t < c->T; t++) {
      float ang = (float)t * invf;
      cos_h[(size_t)t * half + i] = cosf(ang);
      sin_h[(size_t)t * half + i] = sinf(ang);
    }
  }
  c->k->upload(c->rope_cos, cos_h, n * sizeof *cos_h);
  c->k->upload(c->rope_sin, sin_h, n * sizeof *sin_h);
  free(cos_h);
  free(sin_h);
}

static int ctx_build_(const model_config *m, const kernels *k, const model_opts *o, int dry,
                      model_ctx **out) {
  *out = NULL;
  if (o->batch <= 0 || o->seq_len <= 0)
    return st_fail(ST_EINPUT, "model: batch and seq_len must be positive, found %d and %d",
                   o->batch, o->seq_len);
  if (m->hidden_size <= 0 || m->intermediate_size <= 0 || m->num_hidden_layers <= 0 ||
      m->num_attention_heads <= 0 || m->num_key_value_heads <= 0 || m->head_dim <= 0 ||
      m->vocab_size <= 0)
    return st_fail(ST_EINPUT, "model: config sizes must be positive");
  if (m->num_attention_heads % m->num_key_value_heads)
    return st_fail(ST_EINPUT,
                   "model: num_attention_heads (%d) must be a multiple of num_key_value_heads "
                   "(%d)",
                   m->num_attention_heads, m->num_key_value_heads);
  if (m->head_dim % 2)
    return st_fail(ST_EINPUT, "model: head_dim must be even for RoPE, found %d", m->head_dim);
  if ((long long)o->batch * o->seq_len > (1LL << 30))
    return st_fail(ST_EINPUT, "model: batch*seq_len too large (%lld)",
                   (long long)o->batch * o->seq_len);
  model_ctx *c = xcalloc(1, sizeof *c);
  c->dry = dry;
  c->cfg = m;
  c->k = k;
  c->B = o->batch;
  c->T = o->seq_len;
  c->N = c->B * c->T;
  c->C = m->hidden_size;
  c->F = m->intermediate_size;
  c->H = m->num_attention_heads;
  c->KV = m->num_key_value_heads;
  c->D = m->head_dim;
  c->V = m->vocab_size;
  c->L = m->num_hidden_layers;
  c->HD = c->H * c->D;
  c->KVD = c->KV * c->D;
  c->eps = (float)m->rms_norm_eps;
  c->ckpt = o->grad_checkpointing;
  c->lowest_unit = o->lowest_grad_unit;
  if (c->lowest_unit < 0) c->lowest_unit = 0;
  if (c->lowest_unit > c->L + 2) c->lowest_unit = c->L + 2;
  c->lowest_block = c->lowest_unit > 0 ? c->lowest_unit - 1 : 0;
  if (c->lowest_block > c->L) c->lowest_block = c->L;
  int training = c->lowest_unit <= c->L + 1;
  c->bf16 = o->bf16 != 0;
  /* logits of all N tokens when they fit in 256 MiB (or as asked), else blocks of rows;
   * bf16 training also keeps a bf16 copy of the logits' gradient */
  size_t per_row = (size_t)c->V * (sizeof(float) + (c->bf16 && training ? sizeof(bf16_t) : 0));
  size_t chunk = o->head_chunk_tokens > 0 ? (size_t)o->head_chunk_tokens
                                          : (256u << 20) / per_row;
  c->head_chunk = (int)(chunk < 1 ? 1 : (chunk > (size_t)c->N ? (size_t)c->N : chunk));
  c->T_max = c->T;
  c->head_chunk_max = c->head_chunk;
  size_t N = (size_t)c->N;
  int ok = 1;

  c->rope_cos = buf_(c, (size_t)c->T * (c->D / 2));
  c->rope_sin = buf_(c, (size_t)c->T * (c->D / 2));
  ok = ok && c->rope_cos && c->rope_sin;
  c->tokens = buf_bytes_(c, N * sizeof *c->tokens);
  c->targets = buf_bytes_(c, N * sizeof *c->targets);
  c->att_scratch = buf_(c, k->attention_scratch_floats(c->B, c->T, c->H, c->KV, c->D));
  ok = ok && c->tokens && c->targets && c->att_scratch;
  c->x = xcalloc((size_t)c->L + 1, sizeof *c->x);
  for (int l = 0; l <= c->L && ok; l++) ok = (c->x[l] = buf_(c, N * c->C)) != NULL;
  c->acts = xcalloc((size_t)c->L, sizeof *c->acts);
  ok = ok && acts_alloc_(c, &c->work) == 0;
  for (int l = 0; l < c->L && ok; l++) {
    if (training && !c->ckpt && l >= c->lowest_block)
      ok = acts_alloc_(c, &c->acts[l]) == 0;
    else
      c->acts[l] = c->work;
  }
  if (ok) {
    c->xnf = c->bf16 ? NULL : buf_(c, N * c->C);
    c->rstdf = buf_(c, N);
    c->logits = buf_(c, (size_t)c->head_chunk * c->V);
    c->lse = buf_(c, N);
    ok = (c->xnf || c->bf16) && c->rstdf && c->logits && c->lse;
  }
  if (ok && c->bf16) {
    c->f_xn = buf_(c, N * c->C);
    c->f_q = buf_(c, N * c->HD);
    c->f_k = buf_(c, N * c->KVD);
    c->f_v = buf_(c, N * c->KVD);
    c->f_y = buf_(c, N * c->HD);
    c->f_a = buf_(c, N * c->F);
    c->f_b = buf_(c, N * c->F);
    c->f_c = buf_(c, N * c->F);
    c->xnf16 = hbuf_(c, N * c->C);
    size_t slot = (size_t)c->C;
    if ((size_t)c->HD > slot) slot = (size_t)c->HD;
    if ((size_t)c->KVD > slot) slot = (size_t)c->KVD;
    c->sw_slot = slot;
    c->sw = buf_(c, slot * TK_COUNT);
    ok = c->f_xn && c->f_q && c->f_k && c->f_v && c->f_y && c->f_a && c->f_b && c->f_c &&
         c->xnf16 && c->sw;
    if (ok && training) {
      c->dx16 = hbuf_(c, N * c->C);
      c->logits16 = hbuf_(c, (size_t)c->head_chunk * c->V);
      ok = c->dx16 && c->logits16;
    }
  }
  if (ok && training) {
    c->dx = buf_(c, N * c->C);
    c->dxn = buf_(c, N * c->C);
    c->dy = buf_(c, N * c->HD);
    c->dq = buf_(c, N * c->HD);
    c->dk = buf_(c, N * c->KVD);
    c->dv = buf_(c, N * c->KVD);
    c->dh = buf_(c, N * c->F);
    ok = c->dx && c->dxn && c->dy && c->dq && c->dk && c->dv && c->dh;
  }
  if (!ok) {
    size_t bytes = c->bytes;
    model_ctx_free(c);
    return st_fail(ST_ERUNTIME,
                   "model: out of memory allocating activations (%zu bytes so far) for batch "
                   "%d x seq_len %d; lower batch or seq_len, or set gradient_checkpointing",
                   bytes, o->batch, o->seq_len);
  }
  if (!dry) rope_tables_(c);
  *out = c;
  return 0;
}

int model_ctx_create(const model_config *m, const kernels *k, const model_opts *o,
                     model_ctx **out) {
  return ctx_build_(m, k, o, 0, out);
}

int model_ctx_predict_bytes(const model_config *m, const kernels *k, const model_opts *o,
                            uint64_t *bytes) {
  model_ctx *c = NULL;
  *bytes = 0;
  int rc = ctx_build_(m, k, o, 1, &c);
  if (rc) return rc;
  *bytes = c->bytes;
  model_ctx_free(c);
  return 0;
}

void model_ctx_free(model_ctx *c) {
  if (!c) return;
  for (int i = 0; i < c->nallocs; i++) c->k->free(c->allocs[i]);
  free(c->allocs);
  free(c->x);
  free(c->acts);
  free(c);
}

int model_ctx_set_seq_len(model_ctx *c, int T) {
  if (T < 1 || T > c->T_max)
    return st_fail(ST_ERUNTIME, "model: sequence length %d outside [1, %d] (the context's)", T,
                   c->T_max);
  /* every buffer is laid out (N, ...) with N = B*T rows from its start, the RoPE tables
   * (T, D/2) by position: a shorter T uses a prefix of each */
  c->T = T;
  c->N = c->B * T;
  c->head_chunk = c->head_chunk_max < c->N ? c->head_chunk_max : c->N;
  return ST_OK;
}
int model_ctx_seq_len(const model_ctx *c) { return c->T; }

size_t model_ctx_bytes(const model_ctx *c) { return c->bytes; }
int model_ctx_lowest_grad_unit(const model_ctx *c) { return c->lowest_unit; }
int model_ctx_lowest_block(const model_ctx *c) { return c->lowest_block; }
const float *model_logits(const model_ctx *c) {
  return c->head_chunk == c->N ? c->logits : NULL;
}

int model_embed_forward(model_ctx *c, const unit_view *embed, const int32_t *tokens) {
  for (int n = 0; n < c->N; n++) /* host ids, checked before they reach the kernels */
    if (tokens[n] < 0 || tokens[n] >= c->V)
      return st_fail(ST_EINPUT,
                     "model: token id %d at sequence %d position %d is outside the vocabulary "
                     "[0, %d)",
                     tokens[n], n / c->T, n % c->T, c->V);
  c->k->upload(c->tokens, tokens, (size_t)c->N * sizeof *tokens);
  if (c->bf16)
    c->k->embed_forward_bf16(c->x[0], c->tokens, embed->wb[TK_EMBED], c->N, c->C);
  else
    c->k->embed_forward(c->x[0], c->tokens, embed->w[TK_EMBED], c->N, c->C);
  return 0;
}

/* Checks the host targets and uploads them into c->targets. */
static int targets_upload_(model_ctx *c, const int32_t *targets) {
  for (int n = 0; n < c->N; n++)
    if (targets[n] != MODEL_IGNORE_INDEX && (targets[n] < 0 || targets[n] >= c->V))
      return st_fail(ST_EINPUT,
                     "model: target %d at sequence %d position %d is neither in [0, %d) nor "
                     "the ignore index -100",
                     targets[n], n / c->T, n % c->T, c->V);
  c->k->upload(c->targets, targets, (size_t)c->N * sizeof *targets);
  return 0;
}

/* y (N, out) = x (N, in) @ W^T (+ b) */
static void linear_(const model_ctx *c, float *y, const float *x, const float *W,
                    const float *b, int in, int out) {
  c->k->gemm(0, 1, c->N, out, in, 1.0f, x, in, W, in, 0.0f, y, out);
  if (b) c->k->bias_forward(y, b, c->N, out);
}

/* Forward of one block from x_in into x_out, keeping activations in a. */
static void block_forward_(model_ctx *c, const unit_view *u, const float *x_in, float *x_out,
                           block_acts *a) {
  const kernels *k = c->k;
  size_t N = (size_t)c->N;
  k->rmsnorm_forward(a->xn1, a->rstd1, x_in, u->w[TK_ATTN_NORM], c->N, c->C, c->eps);
  float *q = c->cfg->qk_norm ? a->q_pre : a->q, *kk = c->cfg->qk_norm ? a->k_pre : a->k;
  linear_(c, q, a->xn1, u->w[TK_Q], u->w[TK_Q_BIAS], c->C, c->HD);
  linear_(c, kk, a->xn1, u->w[TK_K], u->w[TK_K_BIAS], c->C, c->KVD);
  linear_(c, a->v, a->xn1, u->w[TK_V], u->w[TK_V_BIAS], c->C, c->KVD);
  if (c->cfg->qk_norm) { /* per-head RMSNorm over D, before RoPE */
    k->rmsnorm_forward(a->q, a->q_rstd, a->q_pre, u->w[TK_Q_NORM], c->N * c->H, c->D, c->eps);
    k->rmsnorm_forward(a->k, a->k_rstd, a->k_pre, u->w[TK_K_NORM], c->N * c->KV, c->D, c->eps);
  }
  k->rope_forward(a->q, c->rope_cos, c->rope_sin, c->B, c->T, c->H, c->D);
  k->rope_forward(a->k, c->rope_cos, c->rope_sin, c->B, c->T, c->KV, c->D);
  k->attention_forward(a->y, a->lse, c->att_scratch, a->q, a->k, a->v, c->B, c->T, c->H,
                       c->KV, c->D, c->cfg->sliding_window);
  linear_(c, a->xmid, a->y, u->w[TK_O], NULL, c->HD, c->C);
  k->add(a->xmid, x_in, N * c->C);
  k->rmsnorm_forward(a->xn2, a->rstd2, a->xmid, u->w[TK_MLP_NORM], c->N, c->C, c->eps);
  linear_(c, a->gate, a->xn2, u->w[TK_GATE], NULL, c->C, c->F);
  linear_(c, a->up, a->xn2, u->w[TK_UP], NULL, c->C, c->F);
  k->swiglu_forward(a->h, a->gate, a->up, N * c->F);
  linear_(c, x_out, a->h, u->w[TK_DOWN], NULL, c->F, c->C);
  k->add(x_out, a->xmid, N * c->C);
}

/* ---- bf16 mode -------------------------------------------------------------------------- */

/* An fp32 copy of a small bf16 weight (norm, bias) of the unit, in its slot of c->sw; NULL
 * when the unit has none. */
static const float *sw_(const model_ctx *c, const unit_view *u, tensor_kind kind, int n) {
  if (!u->wb[kind]) return NULL;
  float *dst = c->sw + (size_t)kind * c->sw_slot;
  c->k->to_f32(dst, u->wb[kind], (size_t)n);
  return dst;
}

/* y (N, out) = x (N, in) @ W^T (+ b), bf16 operands, fp32 y */
static void linear16_(const model_ctx *c, float *y, const bf16_t *x, const bf16_t *W,
                      const float *b, int in, int out) {
  c->k->gemm_bf16(0, 1, c->N, out, in, 1.0f, x, in, W, in, 0.0f, y, 0, out);
  if (b) c->k->bias_forward(y, b, c->N, out);
}

/* dst = bf16(src), and src = the rounded values (so that what computes next from src is
 * exactly what the backward will read back from dst) */
static void round_keep_(const model_ctx *c, bf16_t *dst, float *src, size_t n) {
  c->k->to_bf16(dst, src, n);
  c->k->to_f32(src, dst, n);
}

static void block_forward_bf16_(model_ctx *c, const unit_view *u, const float *x_in,
                                float *x_out, block_acts *a) {
  const kernels *k = c->k;
  size_t N = (size_t)c->N;
  k->rmsnorm_forward(c->f_xn, a->rstd1, x_in, sw_(c, u, TK_ATTN_NORM, c->C), c->N, c->C,
                     c->eps);
  k->to_bf16(a->xn1h, c->f_xn, N * c->C);
  float *q = c->cfg->qk_norm ? a->q_pre : c->f_q, *kk = c->cfg->qk_norm ? a->k_pre : c->f_k;
  linear16_(c, q, a->xn1h, u->wb[TK_Q], sw_(c, u, TK_Q_BIAS, c->HD), c->C, c->HD);
  linear16_(c, kk, a->xn1h, u->wb[TK_K], sw_(c, u, TK_K_BIAS, c->KVD), c->C, c->KVD);
  linear16_(c, c->f_v, a->xn1h, u->wb[TK_V], sw_(c, u, TK_V_BIAS, c->KVD), c->C, c->KVD);
  if (c->cfg->qk_norm) {
    k->rmsnorm_forward(c->f_q, a->q_rstd, a->q_pre, sw_(c, u, TK_Q_NORM, c->D), c->N * c->H,
                       c->D, c->eps);
    k->rmsnorm_forward(c->f_k, a->k_rstd, a->k_pre, sw_(c, u, TK_K_NORM, c->D), c->N * c->KV,
                       c->D, c->eps);
  }
  k->rope_forward(c->f_q, c->rope_cos, c->rope_sin, c->B, c->T, c->H, c->D);
  k->rope_forward(c->f_k, c->rope_cos, c->rope_sin, c->B, c->T, c->KV, c->D);
  round_keep_(c, a->qh, c->f_q, N * c->HD);
  round_keep_(c, a->kh, c->f_k, N * c->KVD);
  round_keep_(c, a->vh, c->f_v, N * c->KVD);
  k->attention_forward(c->f_y, a->lse, c->att_scratch, c->f_q, c->f_k, c->f_v, c->B, c->T, c->H,
                       c->KV, c->D, c->cfg->sliding_window);
  k->to_bf16(a->yh, c->f_y, N * c->HD);
  linear16_(c, a->xmid, a->yh, u->wb[TK_O], NULL, c->HD, c->C);
  k->add(a->xmid, x_in, N * c->C);
  k->rmsnorm_forward(c->f_xn, a->rstd2, a->xmid, sw_(c, u, TK_MLP_NORM, c->C), c->N, c->C,
                     c->eps);
  k->to_bf16(a->xn2h, c->f_xn, N * c->C);
  /* gate and up straight into bf16 (autocast's linear outputs), SwiGLU from those */
  k->gemm_bf16(0, 1, c->N, c->F, c->C, 1.0f, a->xn2h, c->C, u->wb[TK_GATE], c->C, 0.0f, a->gateh,
               1, c->F);
  k->gemm_bf16(0, 1, c->N, c->F, c->C, 1.0f, a->xn2h, c->C, u->wb[TK_UP], c->C, 0.0f, a->uph, 1,
               c->F);
  k->to_f32(c->f_a, a->gateh, N * c->F);
  k->to_f32(c->f_b, a->uph, N * c->F);
  k->swiglu_forward(c->f_c, c->f_a, c->f_b, N * c->F);
  k->to_bf16(a->hh, c->f_c, N * c->F);
  linear16_(c, x_out, a->hh, u->wb[TK_DOWN], NULL, c->F, c->C);
  k->add(x_out, a->xmid, N * c->C);
}

/* gW (out, in) += dy^T (out, N) @ x (N, in); skipped when frozen */
static void wgrad16_(const model_ctx *c, float *gW, const bf16_t *dy, const bf16_t *x, int in,
                     int out) {
  if (gW) c->k->gemm_bf16(1, 0, out, in, c->N, 1.0f, dy, out, x, in, 1.0f, gW, 0, in);
}

/* dx (N, in) (= or += by beta) dy (N, out) @ W (out, in) */
static void dgrad16_(const model_ctx *c, float *dx, const bf16_t *dy, const bf16_t *W, int in,
                     int out, float beta) {
  c->k->gemm_bf16(0, 0, c->N, in, out, 1.0f, dy, out, W, in, beta, dx, 0, in);
}

static int any_g_(const unit_view *u, const tensor_kind *kinds, int n);

/* As model_block_backward, in bf16: the gradients flowing into each product are rounded to
 * bf16 (autocast's), everything between the products runs in fp32 from widened copies. */
static void block_backward_bf16_(model_ctx *c, int layer, const unit_view *u) {
  const kernels *k = c->k;
  size_t N = (size_t)c->N;
  block_acts *a = &c->acts[layer];
  if (c->ckpt) block_forward_bf16_(c, u, c->x[layer], c->x[layer + 1], a);

  static const tensor_kind attn_inner[] = {TK_ATTN_NORM, TK_Q,      TK_K,      TK_V,
                                           TK_Q_BIAS,    TK_K_BIAS, TK_V_BIAS, TK_Q_NORM,
                                           TK_K_NORM};
  static const tensor_kind mlp_inner[] = {TK_MLP_NORM, TK_GATE, TK_UP};
  int need_dx_in = layer + 1 > c->lowest_unit;
  int attn_need = need_dx_in || any_g_(u, attn_inner, 9);
  int attn_any = attn_need || u->g[TK_O];
  int mlp_need = attn_any || any_g_(u, mlp_inner, 3);

  k->to_bf16(c->dx16, c->dx, N * c->C);
  wgrad16_(c, u->g[TK_DOWN], c->dx16, a->hh, c->F, c->C);
  if (mlp_need) {
    dgrad16_(c, c->dh, c->dx16, u->wb[TK_DOWN], c->F, c->C, 0.0f);
    k->to_f32(c->f_a, a->gateh, N * c->F);
    k->to_f32(c->f_b, a->uph, N * c->F);
    k->swiglu_backward(c->f_a, c->f_b, c->dh, c->f_a, c->f_b, N * c->F); /* in place */
    k->to_bf16(a->gateh, c->f_a, N * c->F); /* dgate, dup: the saved gate and up are done */
    k->to_bf16(a->uph, c->f_b, N * c->F);
    wgrad16_(c, u->g[TK_GATE], a->gateh, a->xn2h, c->C, c->F);
    wgrad16_(c, u->g[TK_UP], a->uph, a->xn2h, c->C, c->F);
    dgrad16_(c, c->dxn, a->gateh, u->wb[TK_GATE], c->C, c->F, 0.0f);
    dgrad16_(c, c->dxn, a->uph, u->wb[TK_UP], c->C, c->F, 1.0f);
    k->rmsnorm_backward(attn_any ? c->dx : NULL, u->g[TK_MLP_NORM], c->dxn, a->xmid,
                        sw_(c, u, TK_MLP_NORM, c->C), a->rstd2, c->N, c->C, 1);
  }
  if (!attn_any) return;

  k->to_bf16(c->dx16, c->dx, N * c->C);
  wgrad16_(c, u->g[TK_O], c->dx16, a->yh, c->HD, c->C);
  if (!attn_need) return;
  dgrad16_(c, c->dy, c->dx16, u->wb[TK_O], c->HD, c->C, 0.0f);
  k->to_f32(c->f_q, a->qh, N * c->HD);
  k->to_f32(c->f_k, a->kh, N * c->KVD);
  k->to_f32(c->f_v, a->vh, N * c->KVD);
  k->to_f32(c->f_y, a->yh, N * c->HD);
  k->attention_backward(c->dq, c->dk, c->dv, c->att_scratch, c->dy, c->f_y, a->lse, c->f_q,
                        c->f_k, c->f_v, c->B, c->T, c->H, c->KV, c->D, c->cfg->sliding_window);
  k->rope_backward(c->dq, c->rope_cos, c->rope_sin, c->B, c->T, c->H, c->D);
  k->rope_backward(c->dk, c->rope_cos, c->rope_sin, c->B, c->T, c->KV, c->D);
  if (c->cfg->qk_norm) {
    k->rmsnorm_backward(c->dq, u->g[TK_Q_NORM], c->dq, a->q_pre, sw_(c, u, TK_Q_NORM, c->D),
                        a->q_rstd, c->N * c->H, c->D, 0);
    k->rmsnorm_backward(c->dk, u->g[TK_K_NORM], c->dk, a->k_pre, sw_(c, u, TK_K_NORM, c->D),
                        a->k_rstd, c->N * c->KV, c->D, 0);
  }
  if (u->g[TK_Q_BIAS]) k->bias_backward(u->g[TK_Q_BIAS], c->dq, c->N, c->HD);
  if (u->g[TK_K_BIAS]) k->bias_backward(u->g[TK_K_BIAS], c->dk, c->N, c->KVD);
  if (u->g[TK_V_BIAS]) k->bias_backward(u->g[TK_V_BIAS], c->dv, c->N, c->KVD);
  k->to_bf16(a->qh, c->dq, N * c->HD); /* dq, dk, dv in bf16 where q, k, v were */
  k->to_bf16(a->kh, c->dk, N * c->KVD);
  k->to_bf16(a->vh, c->dv, N * c->KVD);
  wgrad16_(c, u->g[TK_Q], a->qh, a->xn1h, c->C, c->HD);
  wgrad16_(c, u->g[TK_K], a->kh, a->xn1h, c->C, c->KVD);
  wgrad16_(c, u->g[TK_V], a->vh, a->xn1h, c->C, c->KVD);
  if (need_dx_in || u->g[TK_ATTN_NORM]) {
    dgrad16_(c, c->dxn, a->qh, u->wb[TK_Q], c->C, c->HD, 0.0f);
    dgrad16_(c, c->dxn, a->kh, u->wb[TK_K], c->C, c->KVD, 1.0f);
    dgrad16_(c, c->dxn, a->vh, u->wb[TK_V], c->C, c->KVD, 1.0f);
    k->rmsnorm_backward(need_dx_in ? c->dx : NULL, u->g[TK_ATTN_NORM], c->dxn, c->x[layer],
                        sw_(c, u, TK_ATTN_NORM, c->C), a->rstd1, c->N, c->C, 1);
  }
}

void model_block_forward(model_ctx *c, int layer, const unit_view *blk) {
  if (c->bf16)
    block_forward_bf16_(c, blk, c->x[layer], c->x[layer + 1], &c->acts[layer]);
  else
    block_forward_(c, blk, c->x[layer], c->x[layer + 1], &c->acts[layer]);
}

/* The head's matrix: lm_head, or the embedding when tied. */
static const float *head_w_(const unit_view *head, const unit_view *embed) {
  return head->w[TK_LM_HEAD] ? head->w[TK_LM_HEAD] : embed ? embed->w[TK_EMBED] : NULL;
}
static float *head_g_(const unit_view *head, const unit_view *embed) {
  if (head->w[TK_LM_HEAD] || head->wb[TK_LM_HEAD]) return head->g[TK_LM_HEAD];
  return embed ? embed->g[TK_EMBED] : NULL;
}

/* logits (rows, V) = xnf[r0 .. r0+rows) @ W^T into the logits block */
static void head_logits_(const model_ctx *c, const float *W, int r0, int rows) {
  c->k->gemm(0, 1, rows, c->V, c->C, 1.0f, c->xnf + (size_t)r0 * c->C, c->C, W, c->C, 0.0f,
             c->logits, c->V);
}

static const bf16_t *head_wb_(const unit_view *head, const unit_view *embed) {
  return head->wb[TK_LM_HEAD] ? head->wb[TK_LM_HEAD] : embed ? embed->wb[TK_EMBED] : NULL;
}

/* bf16: logits (rows, V) fp32 = xnf16[r0 .. r0+rows) @ W^T */
static void head_logits16_(const model_ctx *c, const bf16_t *W, int r0, int rows) {
  c->k->gemm_bf16(0, 1, rows, c->V, c->C, 1.0f, c->xnf16 + (size_t)r0 * c->C, c->C, W, c->C,
                  0.0f, c->logits, 0, c->V);
}

static int head_forward_bf16_(model_ctx *c, const unit_view *head, const unit_view *embed,
                              const int32_t *targets, double *loss_sum, int64_t *n_counted) {
  const bf16_t *W = head_wb_(head, embed);
  if (!W) return st_fail(ST_EINPUT, "model: the head has no lm_head and no tied embedding");
  c->k->rmsnorm_forward(c->f_xn, c->rstdf, c->x[c->L], sw_(c, head, TK_FINAL_NORM, c->C), c->N,
                        c->C, c->eps);
  c->k->to_bf16(c->xnf16, c->f_xn, (size_t)c->N * c->C);
  for (int r0 = 0; r0 < c->N; r0 += c->head_chunk) {
    int rows = c->N - r0 < c->head_chunk ? c->N - r0 : c->head_chunk;
    head_logits16_(c, W, r0, rows);
    if (targets)
      c->k->cross_entropy_forward(c->lse + r0, c->logits, c->targets + r0, rows, c->V,
                                  loss_sum, n_counted);
  }
  return 0;
}

static void head_backward_bf16_(model_ctx *c, const unit_view *head, const unit_view *embed,
                                float loss_scale) {
  const kernels *k = c->k;
  const bf16_t *W = head_wb_(head, embed);
  float *gW = head_g_(head, embed);
  int need_dx = c->lowest_unit <= c->L;
  float *gnorm = head->g[TK_FINAL_NORM];
  for (int r0 = 0; r0 < c->N; r0 += c->head_chunk) {
    int rows = c->N - r0 < c->head_chunk ? c->N - r0 : c->head_chunk;
    if (c->head_chunk < c->N) head_logits16_(c, W, r0, rows); /* recompute this block */
    k->cross_entropy_backward(c->logits, c->lse + r0, c->targets + r0, rows, c->V, loss_scale);
    k->to_bf16(c->logits16, c->logits, (size_t)rows * c->V);
    if (gW) /* dW (V, C) += dlogits^T (V, rows) @ xnf (rows, C) */
      k->gemm_bf16(1, 0, c->V, c->C, rows, 1.0f, c->logits16, c->V,
                   c->xnf16 + (size_t)r0 * c->C, c->C, 1.0f, gW, 0, c->C);
    if (need_dx || gnorm) /* dxnf (rows, C) = dlogits @ W */
      k->gemm_bf16(0, 0, rows, c->C, c->V, 1.0f, c->logits16, c->V, W, c->C, 0.0f,
                   c->dxn + (size_t)r0 * c->C, 0, c->C);
  }
  if (need_dx || gnorm)
    k->rmsnorm_backward(need_dx ? c->dx : NULL, gnorm, c->dxn, c->x[c->L],
                        sw_(c, head, TK_FINAL_NORM, c->C), c->rstdf, c->N, c->C, 0);
}

int model_head_forward(model_ctx *c, const unit_view *head, const unit_view *embed,
                       const int32_t *targets, double *loss_sum, int64_t *n_counted) {
  if (targets) {
    int rc = targets_upload_(c, targets);
    if (rc) return rc;
  }
  if (c->bf16) return head_forward_bf16_(c, head, embed, targets, loss_sum, n_counted);
  const float *W = head_w_(head, embed);
  if (!W) return st_fail(ST_EINPUT, "model: the head has no lm_head and no tied embedding");
  c->k->rmsnorm_forward(c->xnf, c->rstdf, c->x[c->L], head->w[TK_FINAL_NORM], c->N, c->C,
                        c->eps);
  for (int r0 = 0; r0 < c->N; r0 += c->head_chunk) {
    int rows = c->N - r0 < c->head_chunk ? c->N - r0 : c->head_chunk;
    head_logits_(c, W, r0, rows);
    if (targets)
      c->k->cross_entropy_forward(c->lse + r0, c->logits, c->targets + r0, rows, c->V,
                                  loss_sum, n_counted);
  }
  return 0;
}

void model_head_backward(model_ctx *c, const unit_view *head, const unit_view *embed,
                         const int32_t *targets, float loss_scale) {
  /* the same targets as head_forward's, as a rule; uploaded again so that the call stands
   * on its own (N ids) */
  if (targets_upload_(c, targets)) return; /* unreachable after a successful forward */
  if (c->bf16) {
    head_backward_bf16_(c, head, embed, loss_scale);
    return;
  }
  const kernels *k = c->k;
  const float *W = head_w_(head, embed);
  float *gW = head_g_(head, embed);
  int need_dx = c->lowest_unit <= c->L;
  float *gnorm = head->g[TK_FINAL_NORM];
  for (int r0 = 0; r0 < c->N; r0 += c->head_chunk) {
    int rows = c->N - r0 < c->head_chunk ? c->N - r0 : c->head_chunk;
    if (c->head_chunk < c->N) head_logits_(c, W, r0, rows); /* recompute this block */
    k->cross_entropy_backward(c->logits, c->lse + r0, c->targets + r0, rows, c->V, loss_scale);
    if (gW) /* dW (V, C) += dlogits^T (V, rows) @ xnf (rows, C) */
      k->gemm(1, 0, c->V, c->C, rows, 1.0f, c->logits, c->V, c->xnf + (size_t)r0 * c->C, c->C,
              1.0f, gW, c->C);
    if (need_dx || gnorm) /* dxnf (rows, C) = dlogits @ W */
      k->gemm(0, 0, rows, c->C, c->V, 1.0f, c->logits, c->V, W, c->C, 0.0f,
              c->dxn + (size_t)r0 * c->C, c->C);
  }
  if (need_dx || gnorm)
    k->rmsnorm_backward(need_dx ? c->dx : NULL, gnorm, c->dxn, c->x[c->L],
                        head->w[TK_FINAL_NORM], c->rstdf, c->N, c->C, 0);
}

/* gW (out, in) += dy^T (out, N) @ x (N, in); skipped when frozen */
static void linear_wgrad_(const model_ctx *c, float *gW, const float *dy, const float *x,
                          int in, int out) {
  if (gW) c->k->gemm(1, 0, out, in, c->N, 1.0f, dy, out, x, in, 1.0f, gW, in);
}

/* dx (N, in) (= or += by beta) dy (N, out) @ W (out, in) */
static void linear_dgrad_(const model_ctx *c, float *dx, const float *dy, const float *W,
                          int in, int out, float beta) {
  c->k->gemm(0, 0, c->N, in, out, 1.0f, dy, out, W, in, beta, dx, in);
}

static int any_g_(const unit_view *u, const tensor_kind *kinds, int n) {
  for (int i = 0; i < n; i++)
    if (u->g[kinds[i]]) return 1;
  return 0;
}

/* c->dx holds dL/d x_out on entry and dL/d x_in on exit (when needed). */
void model_block_backward(model_ctx *c, int layer, const unit_view *u) {
  if (c->bf16) {
    block_backward_bf16_(c, layer, u);
    return;
  }
  const kernels *k = c->k;
  size_t N = (size_t)c->N;
  block_acts *a = &c->acts[layer];
  if (c->ckpt) block_forward_(c, u, c->x[layer], c->x[layer + 1], a);

  static const tensor_kind attn_inner[] = {TK_ATTN_NORM, TK_Q,      TK_K,      TK_V,
                                           TK_Q_BIAS,    TK_K_BIAS, TK_V_BIAS, TK_Q_NORM,
                                           TK_K_NORM};
  static const tensor_kind mlp_inner[] = {TK_MLP_NORM, TK_GATE, TK_UP};
  int need_dx_in = layer + 1 > c->lowest_unit;
  int attn_need = need_dx_in || any_g_(u, attn_inner, 9);
  int attn_any = attn_need || u->g[TK_O];
  int mlp_need = attn_any || any_g_(u, mlp_inner, 3);

  /* MLP: x_out = xmid + down(silu(gate(xn2)) * up(xn2)), xn2 = norm2(xmid) */
  linear_wgrad_(c, u->g[TK_DOWN], c->dx, a->h, c->F, c->C);
  if (mlp_need) {
    linear_dgrad_(c, c->dh, c->dx, u->w[TK_DOWN], c->F, c->C, 0.0f);
    k->swiglu_backward(a->gate, a->up, c->dh, a->gate, a->up, N * c->F); /* in place */
    linear_wgrad_(c, u->g[TK_GATE], a->gate, a->xn2, c->C, c->F);
    linear_wgrad_(c, u->g[TK_UP], a->up, a->xn2, c->C, c->F);
    linear_dgrad_(c, c->dxn, a->gate, u->w[TK_GATE], c->C, c->F, 0.0f);
    linear_dgrad_(c, c->dxn, a->up, u->w[TK_UP], c->C, c->F, 1.0f);
    /* dx (= d xmid) += norm2 backward */
    k->rmsnorm_backward(attn_any ? c->dx : NULL, u->g[TK_MLP_NORM], c->dxn, a->xmid,
                        u->w[TK_MLP_NORM], a->rstd2, c->N, c->C, 1);
  }
  if (!attn_any) return;

  /* attention: xmid = x_in + o(attn(rope(norm(q)), rope(norm(k)), v)) */
  linear_wgrad_(c, u->g[TK_O], c->dx, a->y, c->HD, c->C);
  if (!attn_need) return;
  linear_dgrad_(c, c->dy, c->dx, u->w[TK_O], c->HD, c->C, 0.0f);
  k->attention_backward(c->dq, c->dk, c->dv, c->att_scratch, c->dy, a->y, a->lse, a->q, a->k,
                        a->v, c->B, c->T, c->H, c->KV, c->D, c->cfg->sliding_window);
  k->rope_backward(c->dq, c->rope_cos, c->rope_sin, c->B, c->T, c->H, c->D);
  k->rope_backward(c->dk, c->rope_cos, c->rope_sin, c->B, c->T, c->KV, c->D);
  if (c->cfg->qk_norm) {
    k->rmsnorm_backward(c->dq, u->g[TK_Q_NORM], c->dq, a->q_pre, u->w[TK_Q_NORM], a->q_rstd,
                        c->N * c->H, c->D, 0);
    k->rmsnorm_backward(c->dk, u->g[TK_K_NORM], c->dk, a->k_pre, u->w[TK_K_NORM], a->k_rstd,
                        c->N * c->KV, c->D, 0);
  }
  if (u->g[TK_Q_BIAS]) k->bias_backward(u->g[TK_Q_BIAS], c->dq, c->N, c->HD);
  if (u->g[TK_K_BIAS]) k->bias_backward(u->g[TK_K_BIAS], c->dk, c->N, c->KVD);
  if (u->g[TK_V_BIAS]) k->bias_backward(u->g[TK_V_BIAS], c->dv, c->N, c->KVD);
  linear_wgrad_(c, u->g[TK_Q], c->dq, a->xn1, c->C, c->HD);
  linear_wgrad_(c, u->g[TK_K], c->dk, a->xn1, c->C, c->KVD);
  linear_wgrad_(c, u->g[TK_V], c->dv, a->xn1, c->C, c->KVD);
  if (need_dx_in || u->g[TK_ATTN_NORM]) {
    linear_dgrad_(c, c->dxn, c->dq, u->w[TK_Q], c->C, c->HD, 0.0f);
    linear_dgrad_(c, c->dxn, c->dk, u->w[TK_K], c->C, c->KVD, 1.0f);
    linear_dgrad_(c, c->dxn, c->dv, u->w[TK_V], c->C, c->KVD, 1.0f);
    /* dx (= d x_in: the residual path already holds d xmid) += norm1 backward */
    k->rmsnorm_backward(need_dx_in ? c->dx : NULL, u->g[TK_ATTN_NORM], c->dxn, c->x[layer],
                        u->w[TK_ATTN_NORM], a->rstd1, c->N, c->C, 1);
  }
}

void model_embed_backward(model_ctx *c, const unit_view *embed) {
  if (embed->g[TK_EMBED] && c->lowest_unit == 0)
    c->k->embed_backward(embed->g[TK_EMBED], c->dx, c->tokens, c->N, c->C);
}

int model_forward(model_ctx *c, const unit_view *units, const int32_t *tokens,
                  const int32_t *targets, double *loss_sum, int64_t *n_counted) {
  int rc = model_embed_forward(c, &units[0], tokens);
  if (rc) return rc;
  for (int l = 0; l < c->L; l++) model_block_forward(c, l, &units[1 + l]);
  return model_head_forward(c, &units[c->L + 1], &units[0], targets, loss_sum, n_counted);
}

void model_backward(model_ctx *c, const unit_view *units, const int32_t *targets,
                    float loss_scale) {
  if (c->lowest_unit > c->L + 1) return; /* nothing trainable */
  model_head_backward(c, &units[c->L + 1], &units[0], targets, loss_scale);
  for (int l = c->L - 1; l >= c->lowest_block; l--) model_block_backward(c, l, &units[1 + l]);
  model_embed_backward(c, &units[0]);
}

double model_forward_flops(const model_config *m, int B, int T) {
  double N = (double)B * T, C = m->hidden_size, F = m->intermediate_size;
  double HD = (double)m->num_attention_heads * m->head_dim;
  double KVD = (double)m->num_key_value_heads * m->head_dim;
  double per_token_block = 2.0 * (C * HD + 2.0 * C * KVD + HD * C + 3.0 * C * F) +
                           2.0 * 2.0 * T * HD; /* Q K^T and P V over the full T x T square */
  return N * (m->num_hidden_layers * per_token_block + 2.0 * C * m->vocab_size);
}
