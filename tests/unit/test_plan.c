/* shard/plan: layout of tensors into frozen/trainable unit buffers, padding, and each rank's
 * segments. Checked against properties that any correct plan has (every element of every
 * tensor is owned by exactly one rank, at the place its offset says), not against numbers
 * printed by the code. */
#include "shard/plan.h"
#include "synth_tables.h"
#include "test.h"

/* Mark, for every tensor element, which rank's shard holds it, and check the shard position
 * agrees with the tensor's offset. */
static void check_cover_(const tensor_table *tt, int nranks) {
  uint64_t total = 0;
  for (int i = 0; i < tt->n; i++) total += tt->t[i].numel;
  unsigned char *seen = calloc(total, 1);
  uint64_t *base = calloc((size_t)tt->n, sizeof(uint64_t));
  for (int i = 1; i < tt->n; i++) base[i] = base[i - 1] + tt->t[i - 1].numel;
  int bad_pos = 0, overlaps = 0;
  for (int r = 0; r < nranks; r++) {
    shard_plan p;
    CHECK_EQ_INT(plan_build(tt, nranks, r, &p), 0);
    for (int u = 0; u < p.n_units; u++)
      for (int k = 0; k < PB_NKINDS; k++) {
        const plan_unit *pu = &p.units[u];
        uint64_t prev_end = 0;
        for (int s = 0; s < pu->nseg[k]; s++) {
          const plan_seg *sg = &pu->seg[k][s];
          const plan_tensor *t = &p.tensors[sg->tensor];
          /* buffer position of this segment == tensor offset + position inside the tensor */
          bad_pos += (uint64_t)r * pu->shard[k] + sg->shard_off != t->offset + sg->tensor_off;
          bad_pos += t->unit != u || t->buf != (plan_buf)k;
          bad_pos += sg->shard_off < prev_end || sg->shard_off + sg->count > pu->shard[k];
          prev_end = sg->shard_off + sg->count;
          for (uint64_t e = 0; e < sg->count; e++) overlaps += seen[base[sg->tensor] + sg->tensor_off + e]++ != 0;
        }
      }
    plan_free(&p);
  }
  uint64_t missing = 0;
  for (uint64_t e = 0; e < total; e++) missing += seen[e] == 0;
  CHECK_EQ_INT(bad_pos, 0);
  CHECK_EQ_INT(overlaps, 0);
  CHECK_EQ_INT(missing, 0);
  free(seen);
  free(base);
}

int main(void) {
  tensor_table tt;
  const int V = 50, C = 12, F = 20, L = 3;
  /* Spectrum-like: embedding frozen, block 1's q and down trainable, block 2 all, head all */
  unsigned long long mask = 0;
  mask |= 1ull << 5 | 1ull << 6;                 /* layers.1.q, layers.1.down */
  mask |= 1ull << 7 | 1ull << 8 | 1ull << 9;     /* layers.2.* */
  mask |= 1ull << 10 | 1ull << 11;               /* norm, lm_head */
  synth_table(&tt, V, C, F, L, 0, mask);
  CHECK_EQ_INT(tt.n, 12);

  for (int n = 1; n <= 5; n++) check_cover_(&tt, n);

  shard_plan p;
  CHECK_EQ_INT(plan_build(&tt, 4, 1, &p), 0);
  CHECK_EQ_INT(p.n_units, L + 2);
  CHECK_EQ_INT(p.lowest_grad_unit, 2); /* block 1 = unit 2 */
  /* unit 2 (block 1): frozen = attn_norm (C); trainable = q (C*C) then down (C*F) */
  const plan_unit *u2 = &p.units[2];
  CHECK_EQ_INT(u2->numel[PB_FROZEN], C);
  CHECK_EQ_INT(u2->numel[PB_TRAIN], C * C + C * F);
  CHECK_EQ_INT(p.tensors[5].offset, 0);
  CHECK_EQ_INT(p.tensors[6].offset, C * C);
  CHECK_EQ_INT(p.tensors[4].buf, PB_FROZEN);
  for (int u = 0; u < p.n_units; u++)
    for (int k = 0; k < PB_NKINDS; k++) {
      CHECK_EQ_INT(p.units[u].padded[k] % (PLAN_ALIGN * 4), 0);
      CHECK(p.units[u].padded[k] >= p.units[u].numel[k]);
      CHECK(p.units[u].padded[k] < p.units[u].numel[k] + PLAN_ALIGN * 4);
      CHECK_EQ_INT(p.units[u].shard[k] * 4, p.units[u].padded[k]);
    }
  /* the embedding unit has no trainable buffer at all */
  CHECK_EQ_INT(p.units[0].padded[PB_TRAIN], 0);
  CHECK_EQ_INT(plan_total_numel(&p, PB_TRAIN) + plan_total_numel(&p, PB_FROZEN),
               (uint64_t)V * C * 2 + C + (uint64_t)L * (C + C * C + C * F));
  CHECK_EQ_INT(plan_max_unit_padded(&p), (V * C + 63) / 64 * 64 + 0);

  /* the hash sees rank counts and trainable flags, not the rank itself */
  shard_plan q;
  CHECK_EQ_INT(plan_build(&tt, 4, 3, &q), 0);
  CHECK(p.hash == q.hash);
  plan_free(&q);
  CHECK_EQ_INT(plan_build(&tt, 2, 0, &q), 0);
  CHECK(p.hash != q.hash);
  plan_free(&q);
  tt.t[3].trainable = 1;
  CHECK_EQ_INT(plan_build(&tt, 4, 1, &q), 0);
  CHECK(p.hash != q.hash);
  CHECK_EQ_INT(q.lowest_grad_unit, 1);
  plan_free(&q);
  plan_free(&p);

  /* tied embeddings: no lm_head, fully trainable */
  free(tt.t);
  synth_table(&tt, V, C, F, L, 1, ~0ull);
  CHECK_EQ_INT(tt.n, 11);
  for (int n = 1; n <= 4; n++) check_cover_(&tt, n);
  CHECK_EQ_INT(plan_build(&tt, 3, 2, &p), 0);
  CHECK_EQ_INT(p.lowest_grad_unit, 0);
  CHECK_EQ_INT(p.units[L + 1].numel[PB_TRAIN], C);
  plan_free(&p);

  /* invalid rank */
  CHECK_EQ_INT(plan_build(&tt, 2, 2, &p), 2);
  free(tt.t);
  return test_done();
}
