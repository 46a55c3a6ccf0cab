/* The compute kernels of the model, behind one table of function pointers. The model code
 * (src/model) calls only these; the CPU table (kernels/cpu*.c: BLAS sgemm + OpenMP loops)
 * is the reference, a CUDA table plugs in the same way later (all pointers then refer to
 * device memory, obtained through alloc).
 *
 * Conventions: fp32, row-major. N = B*T tokens, row n = b*T + t. A "linear" activation
 * (N, out) = x (N, in) @ W^T with W (out, in) as Hugging Face stores it. Heads are
 * contiguous column blocks: q (N, H*D) holds head h in columns [h*D, (h+1)*D).
 * Backward kernels ACCUMULATE (+=) into weight gradients and say per argument whether
 * input gradients are written (=) or accumulated (+=). A NULL weight-gradient pointer
 * means "frozen: skip that work". */
#ifndef SPECTRAIN_KERNELS_KERNELS_H
#define SPECTRAIN_KERNELS_KERNELS_H
#include <stddef.h>
#include <stdint.h>

#define MODEL_IGNORE_INDEX (-100) /* targets equal to this are not counted in the loss */

typedef struct kernels {
  const char *name; /* "cpu" */

  /* Memory the kernels operate on (host for cpu, device for cuda). alloc returns zeroed
   * memory or NULL. */
  void *(*alloc)(size_t bytes);
  void (*free)(void *p);
  void (*zero)(float *x, size_t n);
  void (*copy)(float *dst, const float *src, size_t n);

  /* C (M, N) = alpha * op(A) @ op(B) + beta * C, row-major; op(X) = X^T when trans_X.
   * op(A) is (M, K), op(B) is (K, N). */
  void (*gemm)(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
               int lda, const float *B, int ldb, float beta, float *C, int ldc);

  /* out (N, C) = emb[tokens[n]] */
  void (*embed_forward)(float *out, const int32_t *tokens, const float *emb, int N, int C);
  /* demb[tokens[n]] += dout[n] */
  void (*embed_backward)(float *demb, const float *dout, const int32_t *tokens, int N, int C);

  /* out = x * rstd * w, rstd[n] = 1/sqrt(mean(x[n]^2) + eps); x, out (N, C), w (C) */
  void (*rmsnorm_forward)(float *out, float *rstd, const float *x, const float *w, int N,
                          int C, float eps);
  /* dx (=, or += when accumulate; may alias dout; NULL: not needed), dw += (NULL: frozen) */
  void (*rmsnorm_backward)(float *dx, float *dw, const float *dout, const float *x,
                           const float *w, const float *rstd, int N, int C, int accumulate);

  /* y (N, M) += b (M) per row; db (M) += column sums of dy (N, M) */
  void (*bias_forward)(float *y, const float *b, int N, int M);
  void (*bias_backward)(float *db, const float *dy, int N, int M);

  /* Rotary embedding in place on x (B*T, nh*D), Hugging Face rotate_half convention:
   * for i < D/2: (x_i, x_{i+D/2}) -> (x_i c - x_{i+D/2} s, x_{i+D/2} c + x_i s) with
   * c = cos_t[t*(D/2)+i], s = sin_t[...] (tables (T, D/2), position t = n mod T).
   * backward applies the inverse rotation to the gradient in place. */
  void (*rope_forward)(float *x, const float *cos_t, const float *sin_t, int B, int T, int nh,
                       int D);
  void (*rope_backward)(float *dx, const float *cos_t, const float *sin_t, int B, int T,
                        int nh, int D);

  /* Causal softmax attention with grouped KV heads (q head h reads kv head h / (H/KV)).
   * q (N, H*D), k, v (N, KV*D), out (N, H*D), att (B, H, T, T) keeps the probabilities
   * (zero where masked) for backward; scale = 1/sqrt(D). window > 0: position t sees only
   * positions j with t - window < j <= t (Mistral's sliding window); 0 = all j <= t. */
  void (*attention_forward)(float *out, float *att, const float *q, const float *k,
                            const float *v, int B, int T, int H, int KV, int D, int window);
  /* dq, dk, dv are written (=). scratch: at least T*T floats, aliasing nothing. The mask
   * is read from att (its zeros). */
  void (*attention_backward)(float *dq, float *dk, float *dv, float *scratch,
                             const float *dout, const float *att, const float *q,
                             const float *k, const float *v, int B, int T, int H, int KV,
                             int D);

  /* h = silu(gate) * up, elementwise over n; backward writes dgate, dup (=). dgate may
   * alias gate and dup may alias up (in-place backward). */
  void (*swiglu_forward)(float *h, const float *gate, const float *up, size_t n);
  void (*swiglu_backward)(float *dgate, float *dup, const float *dh, const float *gate,
                          const float *up, size_t n);

  /* y += x */
  void (*add)(float *y, const float *x, size_t n);

  /* Cross-entropy over logits (N, V): lse[n] = logsumexp(logits[n]); adds
   * sum over counted rows of (lse - logit[target]) to *loss_sum and the number of counted
   * rows (target != MODEL_IGNORE_INDEX) to *n_counted. Targets must be in [0, V) or
   * MODEL_IGNORE_INDEX (the model checks before calling). */
  void (*cross_entropy_forward)(float *lse, const float *logits, const int32_t *targets,
                                int N, int V, double *loss_sum, int64_t *n_counted);
  /* In place: logits (N, V) -> dlogits = scale * (softmax - onehot(target)); rows with an
   * ignored target become 0. */
  void (*cross_entropy_backward)(float *logits, const float *lse, const int32_t *targets,
                                 int N, int V, float scale);

  /* Sum of squares in double (for the global gradient norm). */
  double (*sum_squares)(const float *x, size_t n);
  /* x *= s */
  void (*scale)(float *x, float s, size_t n);
  /* One AdamW step on a flat range (see model/optim.h for the math and arguments). */
  void (*adamw)(float *param, const float *grad, float *m, float *v, size_t n, float lr,
                float beta1, float beta2, float eps, float weight_decay, long step);
} kernels;

/* The CPU kernel table (OpenBLAS sgemm + OpenMP loops). */
const kernels *kernels_cpu(void);

#endif
