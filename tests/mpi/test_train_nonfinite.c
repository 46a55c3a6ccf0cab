/* A checkpoint that holds a NaN or an infinity (damaged, or written before spectrain refused
 * them; its checksums are right, so it verifies) is never trained on or exported:
 *  - resuming from it is ST_EINPUT on every rank — a parameter, an AdamW first or second
 *    moment — the rank that read the bad element names dataset and index, the others say
 *    another rank failed;
 *  - `spectrain export` of it is ST_EINPUT naming the tensor, and leaves no model behind:
 *    neither model.safetensors nor config.json, nor (sharded) the shards written before the
 *    bad tensor.
 * The checkpoint comes from a real 1-step run (train_run with the checkpoint hooks); rank 0
 * reads it whole, puts one bad value in and writes it again with ckpt_save. */
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt/ckpt.h"
#include "io/model_dir.h"
#include "mpi/comm.h"
#include "test.h"
#include "train/train.h"
#include "train/train_ckpt.h"
#include "util/err.h"

static char dir_[512];

static void copy_file_(const char *from, const char *to) {
  FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
  CHECK(a && b);
  if (a && b) {
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0) fwrite(buf, 1, n, b);
  }
  if (a) fclose(a);
  if (b) fclose(b);
}

static char *job_text_(const char *out) {
  return xasprintf("output_dir: %s/%s\n"
                   "model:\n  path: %s/model\n"
                   "data:\n  train: %s/train.jsonl\n"
                   "training:\n  max_seq_length: 8\n  per_device_train_batch_size: 2\n"
                   "  max_steps: 2\n  learning_rate: 1.0e-3\n  save_steps: 1\n"
                   "  logging_steps: 1\n  backend: cpu\n",
                   dir_, out, dir_, dir_);
}

static int run_(const char *out, const char *resume) {
  char *text = job_text_(out);
  job_config job;
  int rc = job_load_text("nonfinite.yaml", text, NULL, &job);
  CHECK_MSG(rc == 0, "%s", st_errmsg());
  ckpt_train ck;
  memset(&ck, 0, sizeof ck);
  if (!rc) rc = ckpt_train_prepare(&ck, &job, resume);
  if (!rc) rc = train_run(ck.job, &ck.hooks);
  ckpt_train_free(&ck);
  job_free(&job);
  free(text);
  return rc;
}

/* Rank 0 reads `from` whole, sets element `elem` of (tensor, kind) to `bad` and, with every
 * rank, saves it as OUT/ckpt-1.h5. Returns the tensor table (all trainable) for the caller. */
static void make_bad_(const char *from, const char *out, const char *tensor, ckpt_kind kind,
                      uint64_t elem, float bad) {
  ckpt_meta m;
  memset(&m, 0, sizeof m);
  CHECK_EQ_INT(ckpt_read_meta(from, 1, &m), 0);
  model_config cfg;
  char *cp = xasprintf("%s/model/config.json", dir_);
  CHECK_EQ_INT(model_config_load(cp, &cfg), 0);
  free(cp);
  tensor_table tt;
  CHECK_EQ_INT(tensor_table_build(&cfg, &tt), 0);
  for (int i = 0; i < tt.n; i++) tt.t[i].trainable = 1;
  ckpt_slices l = {0};
  float **buf = calloc((size_t)tt.n * 3, sizeof *buf);
  static const ckpt_kind kinds[3] = {CKPT_PARAM, CKPT_M, CKPT_V};
  if (comm_rank() == 0)
    for (int k = 0; k < 3; k++)
      for (int i = 0; i < tt.n; i++) {
        buf[k * tt.n + i] = calloc(tt.t[i].numel, sizeof(float));
        ckpt_slices_add(&l, i, kinds[k], 0, tt.t[i].numel, buf[k * tt.n + i]);
      }
  CHECK_MSG(ckpt_load(from, &tt, l.s, l.n) == 0, "%s", st_errmsg());
  int ti = tensor_table_find(&tt, tensor);
  CHECK(ti >= 0);
  int ki = kind == CKPT_PARAM ? 0 : kind == CKPT_M ? 1 : 2;
  if (comm_rank() == 0 && ti >= 0) buf[ki * tt.n + ti][elem] = bad;
  char *od = xasprintf("%s/%s", dir_, out);
  if (comm_rank() == 0) mkdir(od, 0755);
  comm_barrier();
  ckpt_save_opts o = {0};
  ckpt_save_stats st;
  CHECK_MSG(ckpt_save(od, &tt, &m, l.s, l.n, &o, &st) == 0, "%s", st_errmsg());
  free(od);
  for (int i = 0; i < 3 * tt.n; i++) free(buf[i]);
  free(buf);
  ckpt_slices_free(&l);
  tensor_table_free(&tt);
  ckpt_meta_free(&m);
}

static int count_files_(const char *d) {
  DIR *x = opendir(d);
  int n = 0;
  if (!x) return 0;
  for (struct dirent *e; (e = readdir(x));) n += e->d_name[0] != '.';
  closedir(x);
  return n;
}

int main(int argc, char **argv) {
  CHECK_EQ_INT(comm_init(&argc, &argv), 0);
  log_set_quiet(1);
  const char *tmp = getenv("TEST_TMP"), *fx = getenv("FIXTURES");
  int pid = (int)getpid();
  comm_bcast(&pid, sizeof pid, 0);
  snprintf(dir_, sizeof dir_, "%s/train_nonfinite.%d", tmp ? tmp : "/tmp", pid);
  if (comm_rank() == 0) {
    mkdir(dir_, 0755);
    char *md = xasprintf("%s/model", dir_);
    mkdir(md, 0755);
    static const char *files[] = {"config.json", "model.safetensors"};
    for (int i = 0; i < 2; i++) {
      char *a = xasprintf("%s/model/llama/%s", fx ? fx : "tests/fixtures", files[i]);
      char *b = xasprintf("%s/%s", md, files[i]);
      copy_file_(a, b);
      free(a);
      free(b);
    }
    free(md);
    char *dp = xasprintf("%s/train.jsonl", dir_);
    FILE *f = fopen(dp, "w");
    for (int r = 0; f && r < 32; r++) {
      fprintf(f, "{\"input_ids\": [");
      for (int t = 0; t < 9; t++) fprintf(f, "%s%d", t ? ", " : "", (r * 13 + t * 7) % 96);
      fprintf(f, "]}\n");
    }
    if (f) fclose(f);
    free(dp);
  }
  comm_barrier();
  /* a good run: ckpt-1.h5 and ckpt-2.h5 */
  CHECK_MSG(run_("good", "none") == 0, "%s", st_errmsg());
  char *good1 = xasprintf("%s/good/ckpt-1.h5", dir_);

  /* resuming: a NaN parameter, an Inf first moment, a -Inf second moment */
  static const struct {
    const char *out, *tensor, *group, *idx, *what;
    ckpt_kind kind;
    uint64_t elem;
    float v;
  } cases[] = {
      {"bad_param", "model.layers.0.mlp.up_proj.weight", "/params", "[0, 7]", "NaN", CKPT_PARAM,
       7, NAN},
      {"bad_m", "model.embed_tokens.weight", "/optim/m", "[95, 31]", "+Inf", CKPT_M,
       96 * 32 - 1, INFINITY},
      {"bad_v", "model.norm.weight", "/optim/v", "[3]", "-Inf", CKPT_V, 3, -INFINITY},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    make_bad_(good1, cases[c].out, cases[c].tensor, cases[c].kind, cases[c].elem, cases[c].v);
    char *p = xasprintf("%s/%s/ckpt-1.h5", dir_, cases[c].out);
    CHECK_MSG(ckpt_verify(p) == 0, "%s: the checksums must still verify: %s", p, st_errmsg());
    int rc = run_(cases[c].out, "auto");
    CHECK_MSG(rc == ST_EINPUT, "%s: resume rc %d", cases[c].out, rc);
    const char *e = st_errmsg();
    if (strstr(e, "another rank")) {
      CHECK(comm_size() > 1);
    } else {
      char *want = xasprintf("%s/%s holds %s at index %s", cases[c].group, cases[c].tensor,
                             cases[c].what, cases[c].idx);
      CHECK_CONTAINS(e, want);
      CHECK_CONTAINS(e, "cannot be resumed");
      free(want);
    }
    /* the one that named it: some rank did */
    uint64_t named = strstr(e, "cannot be resumed") != NULL;
    CHECK_EQ_INT(comm_allreduce_sum_u64(&named, 1), 0);
    CHECK_MSG(named >= 1, "%s: no rank named the bad value", cases[c].out);
    /* nothing new was written: the bad checkpoint is still the only one */
    char *od = xasprintf("%s/%s", dir_, cases[c].out);
    if (comm_rank() == 0) {
      char *ck2 = xasprintf("%s/ckpt-2.h5", od);
      CHECK(access(ck2, F_OK) != 0);
      free(ck2);
    }
    free(od);
    free(p);
  }

  /* export (rank 0, as `spectrain export`): refused, nothing left, also when sharded */
  if (comm_rank() == 0) {
    char *p = xasprintf("%s/bad_param/ckpt-1.h5", dir_);
    for (int sharded = 0; sharded < 2; sharded++) {
      char *od = xasprintf("%s/export%d", dir_, sharded);
      int rc = ckpt_export(p, od, SFT_F32, sharded ? 4096 : 0);
      CHECK_MSG(rc == ST_EINPUT, "export (sharded %d): rc %d", sharded, rc);
      CHECK_CONTAINS(st_errmsg(), "/params/model.layers.0.mlp.up_proj.weight holds NaN at index [0, 7]");
      CHECK_MSG(count_files_(od) == 0, "export (sharded %d) left %d file(s) in %s", sharded,
                count_files_(od), od);
      free(od);
    }
    /* the good checkpoint exports, sharded too */
    char *od = xasprintf("%s/export_good", dir_);
    CHECK_MSG(ckpt_export(good1, od, SFT_F32, 4096) == 0, "%s", st_errmsg());
    CHECK(count_files_(od) > 3);
    free(od);
    free(p);
  }
  free(good1);
  comm_barrier();
  if (comm_rank() == 0) {
    char *cmd = xasprintf("rm -rf '%s'", dir_);
    CHECK_EQ_INT(system(cmd), 0);
    free(cmd);
  }
  int fails = comm_max_status(test_failures_ ? 1 : 0);
  comm_finalize();
  if (fails && !test_failures_) fprintf(stderr, "another rank failed\n");
  return fails ? 1 : test_done();
}
