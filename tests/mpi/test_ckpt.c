/* Checkpoints (src/ckpt) at 1, 2 and 4 ranks, on a synthetic model whose
 * tensors hold values that are a pure function of (step, tensor, kind, flat index): every
 * read is compared byte for byte with that function, not with anything we wrote.
 *
 * Without arguments: the self test. Ranks hold FSDP-like flat shards of unit buffers (a
 * shard covers parts of several tensors; padding at the end); the file is written with one
 * partition ("virtual" rank count 2N, so each rank holds two shards) and read back with
 * others (N shards, and a per-tensor split into N+1 pieces). Then: verify, corrupt-byte and
 * truncated-file detection with fallback in --resume auto, wrong config / trainable set /
 * shape errors, incomplete coverage, save_total_limit pruning.
 *
 * With arguments (driven by tests/e2e/ckpt_ranks.sh across mpiexec runs):
 *   save DIR STEP   write the synthetic checkpoint of STEP with this run's rank count
 *   load DIR STEP   --resume auto in DIR must pick STEP; load and compare exactly */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt/ckpt.h"
#include "mpi/comm.h"
#include "test.h"
#include "util/err.h"

/* ---- the synthetic model ------------------------------------------------------------------ */

static const struct {
  const char *name;
  int ndim;
  int64_t r, c;
  int unit, trainable;
} spec_[] = {
    {"model.embed_tokens.weight", 2, 17, 8, 0, 0},
    {"model.layers.0.input_layernorm.weight", 1, 8, 1, 1, 1},
    {"model.layers.0.self_attn.q_proj.weight", 2, 8, 8, 1, 1},
    {"model.layers.0.mlp.down_proj.weight", 2, 8, 19, 1, 1},
    {"model.layers.0.mlp.up_proj.weight", 2, 19, 8, 1, 0},
    {"model.layers.0.mlp.gate_proj.weight", 2, 3, 157, 1, 1}, /* shards inside one row */
    {"model.norm.weight", 1, 8, 1, 2, 0},
    {"lm_head.weight", 2, 17, 8, 2, 1},
};
#define NT ((int)(sizeof spec_ / sizeof spec_[0]))
#define NUNITS 3

static const char *config_ =
    "{\"model_type\": \"llama\", \"hidden_size\": 8, \"intermediate_size\": 19, "
    "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 2, "
    "\"vocab_size\": 17, \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, "
    "\"tie_word_embeddings\": false}";

static void table_(tensor_table *tt, int trainable_override) {
  tt->n = NT;
  tt->n_units = NUNITS;
  tt->t = calloc(NT, sizeof *tt->t);
  for (int i = 0; i < NT; i++) {
    tensor_desc *t = &tt->t[i];
    snprintf(t->name, sizeof t->name, "%s", spec_[i].name);
    t->ndim = spec_[i].ndim;
    t->shape[0] = spec_[i].r;
    t->shape[1] = spec_[i].ndim == 2 ? spec_[i].c : 0;
    t->numel = (uint64_t)spec_[i].r * (uint64_t)(spec_[i].ndim == 2 ? spec_[i].c : 1);
    t->unit = spec_[i].unit;
    t->trainable = trainable_override >= 0 && i == trainable_override ? !spec_[i].trainable
                                                                      : spec_[i].trainable;
  }
}

static float value_(uint64_t step, int t, int kind, uint64_t i) {
  uint64_t x = step * 1000003u + (uint64_t)t * 7919u + (uint64_t)kind * 104729u + i;
  uint64_t h = splitmix64(&x);
  return (float)((double)(h >> 40) / (double)(1u << 20) - 8.0); /* 24 random bits */
}

/* Flat buffers per (kind, unit): tensors of the unit in order (trainable ones only for
 * master/m/v), padded to a multiple of `v` shards. Shard j holds [j*P/v, (j+1)*P/v). */
typedef struct {
  int ids[NT], n;
  uint64_t off[NT], total, padded;
} unit_layout;

static void layout_(const tensor_table *tt, int kind, int unit, int v, unit_layout *u) {
  memset(u, 0, sizeof *u);
  for (int i = 0; i < tt->n; i++) {
    if (tt->t[i].unit != unit || (kind != CKPT_PARAM && !tt->t[i].trainable)) continue;
    u->ids[u->n] = i;
    u->off[u->n++] = u->total;
    u->total += tt->t[i].numel;
  }
  u->padded = (u->total + (uint64_t)v - 1) / (uint64_t)v * (uint64_t)v;
}

/* This rank's shards when the model is split into v shards (rank r holds shards j with
 * j % nranks == r): buffers filled with the expected values of `step` (fill) or zeros. */
typedef struct {
  ckpt_slices sl;
  float *bufs[1024];
  int nbufs;
} shards;

static void shards_make_(shards *s, const tensor_table *tt, int v, uint64_t step, int fill,
                         int have_master) {
  memset(s, 0, sizeof *s);
  int r = comm_rank(), np = comm_size();
  for (int k = 0; k < CKPT_NKINDS; k++) {
    if (k == CKPT_MASTER && !have_master) continue;
    for (int u = 0; u < NUNITS; u++) {
      unit_layout L;
      layout_(tt, k, u, v, &L);
      if (L.n == 0) continue;
      uint64_t per = L.padded / (uint64_t)v;
      for (int j = r; j < v; j += np) {
        float *b = calloc(per, sizeof(float));
        s->bufs[s->nbufs++] = b;
        uint64_t lo = (uint64_t)j * per;
        if (fill)
          for (int q = 0; q < L.n; q++)
            for (uint64_t e = 0; e < tt->t[L.ids[q]].numel; e++) {
              uint64_t pos = L.off[q] + e;
              if (pos >= lo && pos < lo + per) b[pos - lo] = value_(step, L.ids[q], k, e);
            }
        ckpt_slices_add_flat(&s->sl, tt, (ckpt_kind)k, L.ids, L.off, L.n, lo, per, b);
      }
    }
  }
}

static void shards_free_(shards *s) {
  for (int i = 0; i < s->nbufs; i++) free(s->bufs[i]);
  ckpt_slices_free(&s->sl);
}

/* Every slice holds exactly the expected values (bit patterns). */
static int slices_exact_(const ckpt_slice *s, int n, uint64_t step, int master_from_params) {
  int bad = 0;
  for (int i = 0; i < n; i++) {
    int k = s[i].kind == CKPT_MASTER && master_from_params ? CKPT_PARAM : (int)s[i].kind;
    for (uint64_t e = 0; e < s[i].count; e++) {
      float want = value_(step, s[i].tensor, k, s[i].begin + e);
      if (memcmp(&want, &s[i].data[e], sizeof want) != 0) {
        if (bad++ < 3)
          fprintf(stderr, "[rank %d] slice %d (tensor %d kind %d) element %llu: %g != %g\n",
                  comm_rank(), i, s[i].tensor, (int)s[i].kind,
                  (unsigned long long)(s[i].begin + e), s[i].data[e], want);
      }
    }
  }
  return bad;
}

static char *trainable_names_[NT];
static int n_trainable_;

static void meta_(ckpt_meta *m, const tensor_table *tt, uint64_t step, int have_master) {
  memset(m, 0, sizeof *m);
  m->step = step;
  m->tokens_seen = step * 4096;
  m->data_seed = 1234;
  m->data_epoch = step / 7;
  m->data_sample = step * 16 + 3;
  rng_seed(&m->rng, step + 99);
  m->lr = 1e-4 * (double)step;
  m->global_batch = 16;
  m->have_master = have_master;
  m->job_text = "model: tiny\nlr: 1e-4\n";
  m->config_json = (char *)config_;
  m->snr_json = step % 2 ? NULL : "{\"model.layers.0.mlp.down_proj.weight\": 1.5}";
  n_trainable_ = 0;
  for (int i = 0; i < tt->n; i++)
    if (tt->t[i].trainable) trainable_names_[n_trainable_++] = tt->t[i].name;
  m->trainable = trainable_names_;
  m->n_trainable = n_trainable_;
}

static int save_(const char *dir, const tensor_table *tt, uint64_t step, int v, int have_master,
                 int limit) {
  shards s;
  shards_make_(&s, tt, v, step, 1, have_master);
  ckpt_meta m;
  meta_(&m, tt, step, have_master);
  ckpt_save_opts o = {limit};
  ckpt_save_stats st;
  int rc = ckpt_save(dir, tt, &m, s.sl.s, s.sl.n, &o, &st);
  if (rc) fprintf(stderr, "[rank %d] save: %s\n", comm_rank(), st_errmsg());
  shards_free_(&s);
  return rc;
}

/* Load `path` with the split into v shards and compare everything exactly. */
static int load_check_(const char *path, const tensor_table *tt, uint64_t step, int v,
                       int want_master, int file_has_master) {
  shards s;
  shards_make_(&s, tt, v, step, 0, want_master);
  int rc = ckpt_load(path, tt, s.sl.s, s.sl.n);
  if (rc) fprintf(stderr, "[rank %d] load: %s\n", comm_rank(), st_errmsg());
  int bad = rc ? 1 : slices_exact_(s.sl.s, s.sl.n, step, !file_has_master);
  shards_free_(&s);
  return bad;
}

static int file_exists_(const char *p) {
  struct stat sb;
  return stat(p, &sb) == 0;
}

/* Flip one byte inside the data of `tensor` (found by its known first 4 values). */
static int corrupt_(const char *path, uint64_t step, int tensor, int kind) {
  FILE *f = fopen(path, "r+b");
  if (!f) return -1;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  unsigned char *b = malloc((size_t)n);
  fseek(f, 0, SEEK_SET);
  if (fread(b, 1, (size_t)n, f) != (size_t)n) n = 0;
  float pat[4];
  for (int i = 0; i < 4; i++) pat[i] = value_(step, tensor, kind, (uint64_t)i);
  long at = -1;
  for (long i = 0; i + 16 <= n && at < 0; i++)
    if (memcmp(b + i, pat, 16) == 0) at = i;
  if (at >= 0) {
    b[at + 5] ^= 0x10;
    fseek(f, at + 5, SEEK_SET);
    fwrite(b + at + 5, 1, 1, f);
  }
  fclose(f);
  free(b);
  return at >= 0 ? 0 : -1;
}

static int self_test_(void) {
  int r = comm_rank(), np = comm_size();
  char dir[512], dir2[512];
  const char *tmp = getenv("TEST_TMP") ? getenv("TEST_TMP") : "/tmp";
  snprintf(dir, sizeof dir, "%s/ckpt_np%d", tmp, np);
  snprintf(dir2, sizeof dir2, "%s/ckpt_np%d_limit", tmp, np);
  if (r == 0) {
    char *cmd = xasprintf("rm -rf '%s' '%s'", dir, dir2);
    CHECK_EQ_INT(system(cmd), 0);
    free(cmd);
  }
  comm_barrier();
  tensor_table tt;
  table_(&tt, -1);

  /* write with 2N shards, read with N, with 1 and with 2N+1 */
  CHECK_EQ_INT(save_(dir, &tt, 10, 2 * np, 1, 0), 0);
  char *p10 = xasprintf("%s/ckpt-10.h5", dir);
  CHECK(file_exists_(p10));
  CHECK_EQ_INT(load_check_(p10, &tt, 10, np, 1, 1), 0);
  CHECK_EQ_INT(load_check_(p10, &tt, 10, 1, 1, 1), 0);
  CHECK_EQ_INT(load_check_(p10, &tt, 10, 2 * np + 1, 0, 1), 0);
  CHECK_EQ_INT(load_check_(p10, &tt, 10, 7 * np + 3, 1, 1), 0); /* slices inside rows */
  CHECK_EQ_INT(ckpt_verify(p10), 0);

  /* metadata round trip */
  ckpt_meta m, want;
  meta_(&want, &tt, 10, 1);
  CHECK_EQ_INT(ckpt_read_meta(p10, 1, &m), 0);
  CHECK_EQ_INT(m.step, 10);
  CHECK_EQ_INT(m.tokens_seen, want.tokens_seen);
  CHECK_EQ_INT(m.data_seed, 1234);
  CHECK_EQ_INT(m.data_epoch, want.data_epoch);
  CHECK_EQ_INT(m.data_sample, want.data_sample);
  CHECK(memcmp(m.rng.s, want.rng.s, sizeof want.rng.s) == 0);
  CHECK(m.lr == want.lr);
  CHECK_EQ_INT(m.global_batch, 16);
  CHECK_EQ_INT(m.world_size, np);
  CHECK_EQ_INT(m.have_master, 1);
  CHECK_STR_EQ(m.job_text, want.job_text);
  CHECK_STR_EQ(m.config_json, config_);
  CHECK_STR_EQ(m.snr_json, want.snr_json);
  CHECK_EQ_INT(m.n_trainable, 5);
  for (int i = 0; i < m.n_trainable && i < want.n_trainable; i++)
    CHECK_STR_EQ(m.trainable[i], want.trainable[i]);

  /* job checks */
  CHECK_EQ_INT(ckpt_check_job(&m, config_, want.trainable, want.n_trainable), 0);
  char *cfg2 = xstrdup(config_);
  memcpy(strstr(cfg2, "hidden_size\": 8"), "hidden_siZe\": 8", 15);
  CHECK_EQ_INT(ckpt_check_job(&m, cfg2, want.trainable, want.n_trainable), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "'hidden_size' is 8 in the checkpoint, absent in the job");
  free(cfg2);
  CHECK_EQ_INT(ckpt_check_job(&m, config_, want.trainable, want.n_trainable - 1), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "'lm_head.weight' is trainable in the checkpoint only");
  ckpt_meta_free(&m);

  /* a model whose tensor differs in shape, or whose trainable set asks for moments the file
   * lacks: clear errors on every rank */
  tensor_table bad;
  table_(&bad, 4); /* up_proj trainable: the file has no /optim/m for it */
  {
    shards s;
    shards_make_(&s, &bad, np, 10, 0, 0);
    CHECK_EQ_INT(ckpt_load(p10, &bad, s.sl.s, s.sl.n), ST_EINPUT);
    CHECK_CONTAINS(st_errmsg(), "no dataset /optim/m/model.layers.0.mlp.up_proj.weight");
    shards_free_(&s);
  }
  free(bad.t);
  table_(&bad, -1);
  bad.t[2].shape[0] = 4, bad.t[2].shape[1] = 16; /* same numel, other shape */
  {
    CHECK_EQ_INT(ckpt_load(p10, &bad, NULL, 0), 0); /* nothing asked: ok */
    float buf[64];
    ckpt_slice s2 = {2, CKPT_PARAM, 0, 64, buf};
    CHECK_EQ_INT(ckpt_load(p10, &bad, &s2, 1), ST_EINPUT);
    CHECK_CONTAINS(st_errmsg(), "has shape (8, 8), the model expects (4, 16)");
  }
  free(bad.t);

  /* slices that miss elements: refused before anything is written */
  {
    shards s;
    shards_make_(&s, &tt, np, 11, 1, 0);
    ckpt_meta m11;
    meta_(&m11, &tt, 11, 0);
    int last = s.sl.n - 1;
    if (r == np - 1) s.sl.s[last].count--; /* one element of the last rank's last slice */
    CHECK_EQ_INT(ckpt_save(dir, &tt, &m11, s.sl.s, s.sl.n, NULL, NULL), ST_EINPUT);
    CHECK_CONTAINS(st_errmsg(), "expected");
    shards_free_(&s);
    char *p11 = xasprintf("%s/ckpt-11.h5", dir);
    CHECK(!file_exists_(p11));
    free(p11);
  }

  /* corrupt newest -> previous used; truncated newest -> previous used */
  CHECK_EQ_INT(save_(dir, &tt, 20, 5 * np + 1, 0, 0), 0); /* without master copy */
  char *p20 = xasprintf("%s/ckpt-20.h5", dir), *path = NULL;
  CHECK_EQ_INT(load_check_(p20, &tt, 20, np + 1, 1, 0), 0); /* master from /params */
  CHECK_EQ_INT(ckpt_resolve_resume(dir, "auto", &path), 0);
  CHECK_STR_EQ(path, p20);
  free(path);
  if (r == 0) CHECK_EQ_INT(corrupt_(p20, 20, 3, CKPT_V), 0); /* /optim/v of down_proj */
  comm_barrier();
  CHECK_EQ_INT(ckpt_verify(p20), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "/optim/v/model.layers.0.mlp.down_proj.weight checksum mismatch");
  CHECK_EQ_INT(ckpt_resolve_resume(dir, "auto", &path), 0);
  CHECK_STR_EQ(path, p10);
  free(path);
  CHECK_EQ_INT(ckpt_resolve_resume(dir, p20, &path), ST_EINPUT); /* explicit: an error */
  CHECK(path == NULL);
  CHECK_EQ_INT(save_(dir, &tt, 30, np, 1, 0), 0);
  char *p30 = xasprintf("%s/ckpt-30.h5", dir);
  if (r == 0) {
    struct stat sb;
    stat(p30, &sb);
    CHECK_EQ_INT(truncate(p30, sb.st_size / 2), 0);
  }
  comm_barrier();
  CHECK_EQ_INT(ckpt_verify(p30), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "truncated");
  CHECK_EQ_INT(ckpt_resolve_resume(dir, "auto", &path), 0);
  CHECK_STR_EQ(path, p10);
  free(path);
  /* a copy of ckpt-10 named ckpt-40 (it would be taken as newest on every restart) and one
   * named with a step past INT64_MAX: both skipped, ckpt-10 still chosen */
  char *p40 = xasprintf("%s/ckpt-40.h5", dir), *pbig = xasprintf("%s/ckpt-18446744073709551615.h5", dir);
  if (r == 0) {
    char *cmd = xasprintf("cp '%s' '%s' && cp '%s' '%s'", p10, p40, p10, pbig);
    CHECK_EQ_INT(system(cmd), 0);
    free(cmd);
  }
  comm_barrier();
  CHECK_EQ_INT(ckpt_resolve_resume(dir, "auto", &path), 0);
  CHECK_STR_EQ(path, p10);
  free(path);
  if (r == 0) remove(p40), remove(pbig);
  comm_barrier();
  free(p40), free(pbig);
  /* a file that lacks a trainable tensor's moment (or master copy) does not verify: it
   * would otherwise be taken and fail only in the load */
  static const char *drop[] = {"/optim/m/model.layers.0.self_attn.q_proj.weight",
                               "/optim/v/model.layers.0.mlp.gate_proj.weight"};
  for (int d = 0; d < 2; d++) {
    char *pm = xasprintf("%s/lacking.h5", dir);
    if (r == 0) {
      char *cmd = xasprintf("cp '%s' '%s'", p10, pm);
      CHECK_EQ_INT(system(cmd), 0);
      free(cmd);
      hid_t f = H5Fopen(pm, H5F_ACC_RDWR, H5P_DEFAULT);
      CHECK(f >= 0 && H5Ldelete(f, drop[d], H5P_DEFAULT) >= 0);
      H5Fclose(f);
    }
    comm_barrier();
    CHECK_EQ_INT(ckpt_verify(pm), ST_EINPUT);
    CHECK_CONTAINS(st_errmsg(), drop[d]);
    CHECK_CONTAINS(st_errmsg(), "missing (the tensor is trainable)");
    comm_barrier();
    if (r == 0) remove(pm);
    free(pm);
  }
  CHECK_EQ_INT(ckpt_verify(p10), 0); /* frozen tensors have no moments: fine */
  CHECK_EQ_INT(ckpt_resolve_resume(dir, "none", &path), 0);
  CHECK(path == NULL);
  CHECK_EQ_INT(ckpt_resolve_resume(dir2, "auto", &path), 0); /* no directory yet */
  CHECK(path == NULL);

  /* save_total_limit 2: after steps 1..4 only 3 and 4 remain; a save of a lower step (a
   * resumed older run) keeps itself and the newest other */
  for (uint64_t s = 1; s <= 4; s++) CHECK_EQ_INT(save_(dir2, &tt, s, np, 0, 2), 0);
  uint64_t *steps;
  char **paths;
  int n;
  if (r == 0) {
    CHECK_EQ_INT(ckpt_list(dir2, 0, &steps, &paths, &n), 0);
    CHECK_EQ_INT(n, 2);
    if (n == 2) CHECK(steps[0] == 4 && steps[1] == 3);
    for (int i = 0; i < n; i++) free(paths[i]);
    free(paths), free(steps);
  }
  CHECK_EQ_INT(save_(dir2, &tt, 2, np, 0, 2), 0);
  if (r == 0) {
    CHECK_EQ_INT(ckpt_list(dir2, 0, &steps, &paths, &n), 0);
    CHECK_EQ_INT(n, 2);
    if (n == 2) CHECK(steps[0] == 4 && steps[1] == 2);
    for (int i = 0; i < n; i++) free(paths[i]);
    free(paths), free(steps);
  }
  free(p10), free(p20), free(p30);
  free(tt.t);
  return 0;
}

int main(int argc, char **argv) {
  CHECK_EQ_INT(comm_init(&argc, &argv), 0);
  log_set_quiet(0);
  if (argc == 4 && (strcmp(argv[1], "save") == 0 || strcmp(argv[1], "load") == 0)) {
    tensor_table tt;
    table_(&tt, -1);
    uint64_t step = strtoull(argv[3], NULL, 10);
    if (argv[1][0] == 's') {
      CHECK_EQ_INT(save_(argv[2], &tt, step, comm_size(), 1, 3), 0);
    } else {
      char *path = NULL;
      CHECK_EQ_INT(ckpt_resolve_resume(argv[2], "auto", &path), 0);
      char *want = xasprintf("%s/ckpt-%s.h5", argv[2], argv[3]);
      CHECK_STR_EQ(path, want);
      if (path) CHECK_EQ_INT(load_check_(path, &tt, step, comm_size(), 1, 1), 0);
      free(want);
      free(path);
    }
    free(tt.t);
  } else {
    self_test_();
  }
  int fails = comm_max_status(test_failures_ ? 1 : 0);
  comm_finalize();
  if (fails && !test_failures_) fprintf(stderr, "another rank failed\n");
  return fails ? 1 : test_done();
}
