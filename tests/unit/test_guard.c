/* The guard kernel table (kernels/guard.c): (1) compute memory faults when the host touches
 * it — before any kernel, after a kernel ran, after an upload — which a forked child proves
 * by dying of SIGSEGV; a host pointer handed to a kernel aborts; (2) every kernel gives
 * bit-identical results to the CPU table (the same code runs; the harness moves data only
 * through upload/download). */
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels/kernels.h"
#include "test.h"

#if defined(__SANITIZE_ADDRESS__)
#define ASAN_ 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASAN_ 1
#endif
#endif
#ifndef ASAN_
#define ASAN_ 0
#endif

static const kernels *G, *C;

/* Runs fn in a child; returns 1 when the child died of `sig` (under ASan, which turns a
 * SIGSEGV into a report and exit status 1, also when it exited non-zero). fn _exits 0 when
 * it got through, so "no fault" always fails the check. */
static int child_dies_(void (*fn)(void), int sig) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    fn();
    _exit(0);
  }
  int st = 0;
  if (pid < 0 || waitpid(pid, &st, 0) != pid) return 0;
  if (WIFSIGNALED(st)) return WTERMSIG(st) == sig;
  return ASAN_ && sig == SIGSEGV && WIFEXITED(st) && WEXITSTATUS(st) != 0;
}

static volatile float sink_;
static void touch_fresh_(void) { /* read a freshly allocated buffer */
  float *p = G->alloc(64 * sizeof *p);
  sink_ = p[3];
}
static void touch_after_upload_(void) {
  float h[16] = {1, 2, 3};
  float *p = G->alloc(sizeof h);
  G->upload(p, h, sizeof h);
  sink_ = p[0];
}
static void write_after_kernel_(void) {
  float *p = G->alloc(16 * sizeof *p), *q = G->alloc(16 * sizeof *q);
  G->add(p, q, 16);
  p[1] = 5.0f;
}
static void touch_past_end_in_kernel_(void) { /* a kernel running past a buffer's end */
  float *p = G->alloc(1024 * sizeof *p);
  G->zero(p, 1024 + 4096);
}
static void host_pointer_to_kernel_(void) {
  float *p = G->alloc(16 * sizeof *p), h[16] = {0};
  G->add(p, h, 16); /* h is host memory: aborts with a message */
}

static void test_faults_(void) {
  CHECK_MSG(child_dies_(touch_fresh_, SIGSEGV), "reading fresh guard memory must fault");
  CHECK_MSG(child_dies_(touch_after_upload_, SIGSEGV), "reading after upload must fault");
  CHECK_MSG(child_dies_(write_after_kernel_, SIGSEGV), "writing after a kernel must fault");
  CHECK_MSG(child_dies_(touch_past_end_in_kernel_, SIGSEGV), "overrun in a kernel must fault");
  CHECK_MSG(child_dies_(host_pointer_to_kernel_, SIGABRT), "host pointer to a kernel aborts");
  /* and the same operations through upload/download work in this process */
  float h[100], back[100];
  for (int i = 0; i < 100; i++) h[i] = (float)i * 0.5f;
  float *p = G->alloc(sizeof h);
  CHECK(p != NULL);
  G->upload(p, h, sizeof h);
  G->scale(p, 2.0f, 100);
  G->download(back, p, sizeof back);
  int ok = 1;
  for (int i = 0; i < 100; i++) ok &= back[i] == (float)i;
  CHECK_MSG(ok, "upload, scale, download");
  G->free(p);
}

/* ---- equivalence with the CPU table ---------------------------------------- */
static uint64_t seed_ = 777;
static float urand_(void) {
  uint64_t z = (seed_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (float)((double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}
/* a host array (CPU table's operand) and its guard twin */
typedef struct {
  float *h, *g;
  size_t n;
} pair_;
static pair_ pairs_[64];
static int npairs_;
static pair_ *mk_(size_t n, float scale) {
  pair_ *p = &pairs_[npairs_++];
  p->n = n;
  p->h = malloc(n * sizeof *p->h);
  for (size_t i = 0; i < n; i++) p->h[i] = scale * urand_();
  p->g = G->alloc(n * sizeof *p->g);
  G->upload(p->g, p->h, n * sizeof *p->h);
  return p;
}
static void same_(const char *what, const pair_ *p) {
  float *back = malloc(p->n * sizeof *back);
  G->download(back, p->g, p->n * sizeof *back);
  CHECK_MSG(memcmp(back, p->h, p->n * sizeof *back) == 0, "%s: guard differs from cpu", what);
  free(back);
}
static int32_t *ids_(const int32_t *h, int n) {
  int32_t *g = G->alloc((size_t)n * sizeof *g);
  G->upload(g, h, (size_t)n * sizeof *h);
  return g;
}

static void test_same_(void) {
  enum { B = 2, T = 70, H = 4, KV = 2, D = 8, C_ = 16, F = 24, V = 11, N = B * T };
  int W = 5; /* sliding window */
  pair_ *x = mk_((size_t)N * C_, 1), *w = mk_(C_, 1), *xn = mk_((size_t)N * C_, 0),
        *rstd = mk_(N, 0), *Wq = mk_((size_t)H * D * C_, 0.3f), *Wk = mk_((size_t)KV * D * C_, 0.3f),
        *q = mk_((size_t)N * H * D, 0), *k = mk_((size_t)N * KV * D, 0),
        *v = mk_((size_t)N * KV * D, 1), *cs = mk_((size_t)T * D / 2, 1),
        *sn = mk_((size_t)T * D / 2, 1), *out = mk_((size_t)N * H * D, 0), *lse = mk_((size_t)B * H * T, 0);
  size_t ns = C->attention_scratch_floats(B, T, H, KV, D);
  CHECK(ns == G->attention_scratch_floats(B, T, H, KV, D));
  pair_ *scr = mk_(ns, 0), *dout = mk_((size_t)N * H * D, 1), *dq = mk_((size_t)N * H * D, 0),
        *dk = mk_((size_t)N * KV * D, 0), *dv = mk_((size_t)N * KV * D, 0), *dw = mk_(C_, 0),
        *dx = mk_((size_t)N * C_, 0);
  /* each kernel twice: the cpu table on the .h arrays, the guard table on the .g twins */
  C->rmsnorm_forward(xn->h, rstd->h, x->h, w->h, N, C_, 1e-5f);
  G->rmsnorm_forward(xn->g, rstd->g, x->g, w->g, N, C_, 1e-5f);
  same_("rmsnorm_forward out", xn), same_("rmsnorm_forward rstd", rstd);
  C->gemm(0, 1, N, H * D, C_, 1.0f, xn->h, C_, Wq->h, C_, 0.0f, q->h, H * D);
  G->gemm(0, 1, N, H * D, C_, 1.0f, xn->g, C_, Wq->g, C_, 0.0f, q->g, H * D);
  C->gemm(0, 1, N, KV * D, C_, 1.0f, xn->h, C_, Wk->h, C_, 0.0f, k->h, KV * D);
  G->gemm(0, 1, N, KV * D, C_, 1.0f, xn->g, C_, Wk->g, C_, 0.0f, k->g, KV * D);
  same_("gemm q", q), same_("gemm k", k);
  C->rope_forward(q->h, cs->h, sn->h, B, T, H, D);
  G->rope_forward(q->g, cs->g, sn->g, B, T, H, D);
  same_("rope_forward", q);
  C->attention_forward(out->h, lse->h, scr->h, q->h, k->h, v->h, B, T, H, KV, D, W);
  G->attention_forward(out->g, lse->g, scr->g, q->g, k->g, v->g, B, T, H, KV, D, W);
  same_("attention_forward out", out), same_("attention_forward lse", lse);
  C->attention_backward(dq->h, dk->h, dv->h, scr->h, dout->h, out->h, lse->h, q->h, k->h, v->h, B,
                        T, H, KV, D, W);
  G->attention_backward(dq->g, dk->g, dv->g, scr->g, dout->g, out->g, lse->g, q->g, k->g, v->g, B,
                        T, H, KV, D, W);
  same_("attention_backward dq", dq), same_("attention_backward dk", dk);
  same_("attention_backward dv", dv);
  C->rope_backward(dq->h, cs->h, sn->h, B, T, H, D);
  G->rope_backward(dq->g, cs->g, sn->g, B, T, H, D);
  same_("rope_backward", dq);
  C->rmsnorm_backward(dx->h, dw->h, xn->h, x->h, w->h, rstd->h, N, C_, 0);
  G->rmsnorm_backward(dx->g, dw->g, xn->g, x->g, w->g, rstd->g, N, C_, 0);
  same_("rmsnorm_backward dx", dx), same_("rmsnorm_backward dw", dw);
  pair_ *gt = mk_((size_t)N * F, 2), *upp = mk_((size_t)N * F, 1), *hh = mk_((size_t)N * F, 0),
        *dh = mk_((size_t)N * F, 1);
  C->swiglu_forward(hh->h, gt->h, upp->h, (size_t)N * F);
  G->swiglu_forward(hh->g, gt->g, upp->g, (size_t)N * F);
  same_("swiglu_forward", hh);
  C->swiglu_backward(gt->h, upp->h, dh->h, gt->h, upp->h, (size_t)N * F);
  G->swiglu_backward(gt->g, upp->g, dh->g, gt->g, upp->g, (size_t)N * F);
  same_("swiglu_backward dgate", gt), same_("swiglu_backward dup", upp);
  C->add(x->h, dx->h, (size_t)N * C_), G->add(x->g, dx->g, (size_t)N * C_);
  same_("add", x);
  pair_ *bias = mk_(C_, 1), *db = mk_(C_, 0);
  C->bias_forward(x->h, bias->h, N, C_), G->bias_forward(x->g, bias->g, N, C_);
  same_("bias_forward", x);
  C->bias_backward(db->h, x->h, N, C_), G->bias_backward(db->g, x->g, N, C_);
  same_("bias_backward", db);
  int32_t tok[N], tgt[N];
  for (int n = 0; n < N; n++) tok[n] = (n * 7) % V, tgt[n] = n % 5 == 0 ? MODEL_IGNORE_INDEX : (n * 3) % V;
  int32_t *tok_g = ids_(tok, N), *tgt_g = ids_(tgt, N);
  pair_ *emb = mk_((size_t)V * C_, 1), *demb = mk_((size_t)V * C_, 0);
  C->embed_forward(x->h, tok, emb->h, N, C_), G->embed_forward(x->g, tok_g, emb->g, N, C_);
  same_("embed_forward", x);
  C->embed_backward(demb->h, dx->h, tok, N, C_), G->embed_backward(demb->g, dx->g, tok_g, N, C_);
  same_("embed_backward", demb);
  pair_ *logits = mk_((size_t)N * V, 3), *lse2 = mk_(N, 0);
  double ls_c = 0, ls_g = 0;
  int64_t cnt_c = 0, cnt_g = 0;
  C->cross_entropy_forward(lse2->h, logits->h, tgt, N, V, &ls_c, &cnt_c);
  G->cross_entropy_forward(lse2->g, logits->g, tgt_g, N, V, &ls_g, &cnt_g);
  same_("cross_entropy_forward lse", lse2);
  CHECK(ls_c == ls_g && cnt_c == cnt_g && cnt_c > 0);
  C->cross_entropy_backward(logits->h, lse2->h, tgt, N, V, 0.01f);
  G->cross_entropy_backward(logits->g, lse2->g, tgt_g, N, V, 0.01f);
  same_("cross_entropy_backward", logits);
  CHECK(C->sum_squares(logits->h, logits->n) == G->sum_squares(logits->g, logits->n));
  C->scale(dx->h, 0.5f, dx->n), G->scale(dx->g, 0.5f, dx->n);
  same_("scale", dx);
  pair_ *m = mk_(dx->n, 0.1f), *vv = mk_(dx->n, 0.1f);
  for (size_t i = 0; i < vv->n; i++) vv->h[i] *= vv->h[i]; /* v >= 0 */
  G->upload(vv->g, vv->h, vv->n * sizeof(float));
  C->adamw(x->h, dx->h, m->h, vv->h, dx->n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 3);
  G->adamw(x->g, dx->g, m->g, vv->g, dx->n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 3);
  same_("adamw param", x), same_("adamw m", m), same_("adamw v", vv);
  C->copy(dq->h, out->h, dq->n), G->copy(dq->g, out->g, dq->n);
  same_("copy", dq);
  C->zero(out->h, out->n), G->zero(out->g, out->n);
  same_("zero", out);
  G->sync();
  for (int i = 0; i < npairs_; i++) free(pairs_[i].h), G->free(pairs_[i].g);
  G->free(tok_g), G->free(tgt_g);
  void *hb = G->host_alloc(100);
  CHECK(hb && ((char *)hb)[99] == 0); /* host memory: readable */
  G->host_free(hb);
}

int main(void) {
  G = kernels_guard();
  C = kernels_cpu();
  CHECK(strcmp(G->name, "guard") == 0);
  test_faults_();
  test_same_();
  return test_done();
}
