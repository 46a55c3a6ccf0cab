/* The compute kernels of the model, behind one table of function pointers. The model code
 * (src/model) calls only these; the CPU table (kernels/cpu.c: BLAS sgemm + OpenMP loops)
 * is the reference; the CUDA table (kernels/cuda/kernels.cu, cuBLAS + CUDA kernels) plugs in
 * the same way. Every float/int pointer a kernel takes is COMPUTE memory (from alloc): host
 * RAM for cpu, device memory for cuda. The caller never dereferences compute memory on the
 * host; it moves data with upload/download. Results returned by value (sum_squares, the
 * cross-entropy's loss sum) are host values: the CUDA table synchronises for them. Kernels
 * are queued in order (the CUDA table: on one compute stream); sync waits for all of them.
 *
 * Conventions: fp32, row-major. N = B*T tokens, row n = b*T + t. A "linear" activation
 * (N, out) = x (N, in) @ W^T with W (out, in) as Hugging Face stores it. Heads are
 * contiguous column blocks: q (N, H*D) holds head h in columns [h*D, (h+1)*D).
 * Backward kernels ACCUMULATE (+=) into weight gradients and say per argument whether
 * input gradients are written (=) or accumulated (+=). A NULL weight-gradient pointer
 * means "frozen: skip that work".
 *
 * bf16 (training.bf16, docs/model.md "Precision"): bf16_t values are the upper half of an
 * IEEE float32 (torch.bfloat16, safetensors BF16). The entries that take or return bf16_t
 * are listed together at the end of the table; every other entry is fp32 only. The model
 * keeps weights and most saved activations in bf16 and computes its matrix products with
 * gemm_bf16 (fp32 accumulation), everything else in fp32 after to_f32. */
#ifndef SPECTRAIN_KERNELS_KERNELS_H
#define SPECTRAIN_KERNELS_KERNELS_H
#include <stddef.h>
#include <stdint.h>

#define MODEL_IGNORE_INDEX (-100) /* targets equal to this are not counted in the loss */

typedef uint16_t bf16_t; /* bfloat16 bits: sign, 8 exponent bits, 7 mantissa bits */

typedef struct kernels {
  const char *name; /* "cpu", "cuda", "guard" (tests: cpu with compute memory fenced off) */
  /* 1 when compute memory is ordinary host memory the host may read and write directly
   * (cpu): callers may then skip host copies (checkpoint pieces). 0 for cuda and guard. */
  int host_addressable;

  /* Memory the kernels operate on (host for cpu, device for cuda). alloc returns zeroed
   * memory or NULL. */
  void *(*alloc)(size_t bytes);
  void (*free)(void *p);
  void (*zero)(float *x, size_t n);
  void (*copy)(float *dst, const float *src, size_t n); /* compute -> compute */
  /* Host <-> compute copies of `bytes` bytes. upload may return before the copy is done
   * only if src stays valid (cuda: it stages pageable memory, so src may be reused at once);
   * download returns when dst holds the data. */
  void (*upload)(void *dst_compute, const void *src_host, size_t bytes);
  void (*download)(void *dst_host, const void *src_compute, size_t bytes);
  /* Host memory for buffers that move to and from compute memory often (offloaded shards,
   * staging): pinned (page-locked) for cuda, plain zeroed RAM for cpu. Zeroed or NULL. */
  void *(*host_alloc)(size_t bytes);
  void (*host_free)(void *p);
  /* Wait until every queued kernel and copy has finished. */
  void (*sync)(void);

  /* C (M, N) = alpha * op(A) @ op(B) + beta * C, row-major; op(X) = X^T when trans_X.
   * op(A) is (M, K), op(B) is (K, N). */
  void (*gemm)(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
               int lda, const float *B, int ldb, float beta, float *C, int ldc);

  /* out (N, C) = emb[tokens[n]]; tokens (N) are compute memory, in [0, V) (checked by the
   * model before uploading) */
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

  /* Causal softmax attention with grouped KV heads (q head h reads kv head h / (H/KV)),
   * memory-efficient: no (T, T) matrix is kept between forward and backward, only
   * lse (B, H, T) = logsumexp over the visible keys of the scaled scores of each query.
   * q (N, H*D), k, v (N, KV*D), out (N, H*D); scale = 1/sqrt(D). window > 0: position t
   * sees only positions j with t - window < j <= t (Mistral's sliding window); 0 = all
   * j <= t. scratch: attention_scratch_floats(B, T, H, KV, D) floats of compute memory,
   * aliasing nothing (working space only; its contents do not matter between calls). */
  size_t (*attention_scratch_floats)(int B, int T, int H, int KV, int D);
  void (*attention_forward)(float *out, float *lse, float *scratch, const float *q,
                            const float *k, const float *v, int B, int T, int H, int KV, int D,
                            int window);
  /* Recomputes the probabilities from q, k and lse. out is the forward's output (for the
   * row terms sum_d dout * out). dq, dk, dv are written (=). */
  void (*attention_backward)(float *dq, float *dk, float *dv, float *scratch,
                             const float *dout, const float *out, const float *lse,
                             const float *q, const float *k, const float *v, int B, int T,
                             int H, int KV, int D, int window);

  /* h = silu(gate) * up, elementwise over n; backward writes dgate, dup (=). dgate may
   * alias gate and dup may alias up (in-place backward). */
  void (*swiglu_forward)(float *h, const float *gate, const float *up, size_t n);
  void (*swiglu_backward)(float *dgate, float *dup, const float *dh, const float *gate,
                          const float *up, size_t n);

  /* y += x */
  void (*add)(float *y, const float *x, size_t n);

  /* Cross-entropy over logits (N, V), fused (no probabilities are stored): lse[n] =
   * logsumexp(logits[n]); adds to the HOST values *loss_sum the sum over counted rows of
   * (lse - logit[target]) and to *n_counted the number of counted rows (target !=
   * MODEL_IGNORE_INDEX). targets (N) are compute memory; they must be in [0, V) or
   * MODEL_IGNORE_INDEX (the model checks before uploading). */
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
  /* One AdamW step on a flat range (see kernels/adamw.h for the math and arguments). */
  void (*adamw)(float *param, const float *grad, float *m, float *v, size_t n, float lr,
                float beta1, float beta2, float eps, float weight_decay, long step);

  /* ---- bf16 ---------------------------------------------------------------------------- */
  /* dst = src rounded to the nearest bf16, ties to even (NaN stays NaN, quiet); dst and src
   * must not overlap. */
  void (*to_bf16)(bf16_t *dst, const float *src, size_t n);
  /* dst = src (exact); dst and src must not overlap. */
  void (*to_f32)(float *dst, const bf16_t *src, size_t n);
  /* y += x (x widened to fp32) */
  void (*add_bf16)(float *y, const bf16_t *x, size_t n);
  /* As gemm, with A and B in bf16 and the products summed in fp32. C is fp32 (c_bf16 = 0;
   * any beta) or bf16 (c_bf16 = 1: the fp32 result rounded to nearest even; beta must be
   * 0). cpu: oneDNN matmul (AMX or AVX512-BF16 where the CPU has them; kernels_cpu_isa());
   * cuda: cuBLAS with CUDA_R_16BF operands and fp32 compute. */
  void (*gemm_bf16)(int trans_a, int trans_b, int M, int N, int K, float alpha,
                    const bf16_t *A, int lda, const bf16_t *B, int ldb, float beta, void *C,
                    int c_bf16, int ldc);
  /* out (N, C) = emb[tokens[n]] widened to fp32 (emb (V, C) bf16) */
  void (*embed_forward_bf16)(float *out, const int32_t *tokens, const bf16_t *emb, int N,
                             int C);
} kernels;

/* The CPU kernel table (OpenBLAS sgemm + OpenMP loops; bf16 products on oneDNN). */
const kernels *kernels_cpu(void);
/* The CPU table's threads in words, for the first log lines: which OpenBLAS build runs the
 * GEMMs (its OpenMP build shares OpenMP's thread pool with the loops; the pthread build
 * competes with it and is about 2x slower here) and how many threads (OMP_NUM_THREADS). */
const char *kernels_cpu_threads(void);

/* What the CPU bf16 products run on, for the first log lines of a bf16 run: one line such
 * as "bf16 products: oneDNN 2.6.3 matmul brg:avx512_core_amx_bf16 (CPU: AMX-BF16 (tile data
 * granted by the kernel), AVX512-BF16), 2 threads". *fast (may be NULL) is 1 when oneDNN
 * runs them on the CPU's bf16 instructions (AMX, AVX512-BF16); 0 when the CPU has none and
 * the operands are widened to fp32 for OpenBLAS sgemm instead (the line says so). */
const char *kernels_cpu_bf16_description(int *fast);

/* The test backend "guard": the CPU kernels, but compute memory is mapped PROT_NONE except
 * while a kernel (or upload/download/copy) runs, so any host code that dereferences compute
 * memory crashes at once. It runs on machines without a GPU and proves that the model, the
 * sharded trainer and the commands treat compute memory as the CUDA backend needs. Slow:
 * tests only (SPECTRAIN_KERNELS=guard). */
const kernels *kernels_guard(void);

/* The CUDA kernel table on the current device (gpu_select_device first), or NULL with a
 * reason in `why` (no CUDA build, no device, cuBLAS failed). bf16: matrix products on bf16
 * tensor cores with fp32 accumulation (operands rounded to bf16); 0: full fp32 products. */
const kernels *kernels_cuda(int bf16, char *why, int why_len);

#endif
