/* The checkpoint module's rank-independent parts (no MPI, no HDF5): the checksum does not
 * depend on how a tensor is split and catches any changed element; flat unit buffers map
 * onto tensor slices with padding skipped; step numbers in file names are parsed strictly
 * (stray names are skipped with one warning each); directory listing order; job
 * compatibility messages name the differing key or tensor. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt/ckpt.h"
#include "test.h"
#include "util/err.h"

int main(void) {
  /* checksum: any split adds up to the whole; one flipped bit or a swap changes it */
  enum { N = 1000 };
  float x[N];
  for (int i = 0; i < N; i++) x[i] = (float)i * 0.37f - 100.0f;
  uint64_t whole = ckpt_hash_range(0, N, x);
  uint64_t parts = ckpt_hash_range(0, 1, x) + ckpt_hash_range(1, 332, x + 1) +
                   ckpt_hash_range(333, 0, x + 333) + ckpt_hash_range(333, N - 333, x + 333);
  CHECK(whole == parts);
  CHECK(ckpt_hash_range(5, 10, x + 5) != ckpt_hash_range(6, 10, x + 5)); /* position matters */
  unsigned char *b = (unsigned char *)x;
  for (int bit = 0; bit < 32; bit++) {
    b[4 * 500 + bit / 8] ^= (unsigned char)(1u << (bit % 8));
    CHECK_MSG(ckpt_hash_range(0, N, x) != whole, "bit %d", bit);
    b[4 * 500 + bit / 8] ^= (unsigned char)(1u << (bit % 8));
  }
  float t = x[10];
  x[10] = x[11], x[11] = t;
  CHECK(ckpt_hash_range(0, N, x) != whole);
  x[11] = x[10], x[10] = t;
  CHECK(ckpt_hash_range(0, N, x) == whole);

  /* flat buffer: tensors 0 (2x3 = 6) at 0, 1 (4) at 8 (2 padding), padding after */
  tensor_desc td[2] = {0};
  td[0].ndim = 2, td[0].shape[0] = 2, td[0].shape[1] = 3, td[0].numel = 6;
  td[1].ndim = 1, td[1].shape[0] = 4, td[1].numel = 4;
  tensor_table tt = {2, td, 1};
  int ids[2] = {0, 1};
  uint64_t off[2] = {0, 8};
  float buf[16];
  ckpt_slices l = {0};
  ckpt_slices_add_flat(&l, &tt, CKPT_M, ids, off, 2, 4, 6, buf); /* [4, 10) */
  CHECK_EQ_INT(l.n, 2);
  if (l.n == 2) {
    CHECK(l.s[0].tensor == 0 && l.s[0].begin == 4 && l.s[0].count == 2 && l.s[0].data == buf);
    CHECK(l.s[1].tensor == 1 && l.s[1].begin == 0 && l.s[1].count == 2 && l.s[1].data == buf + 4);
    CHECK(l.s[1].kind == CKPT_M);
  }
  ckpt_slices_free(&l);
  ckpt_slices_add_flat(&l, &tt, CKPT_PARAM, ids, off, 2, 12, 4, buf); /* only padding */
  CHECK_EQ_INT(l.n, 0);
  ckpt_slices_free(&l);

  /* step numbers in names: digits as spectrain writes them, nothing else */
  static const struct {
    const char *name;
    int kind;
    uint64_t step;
  } nm[] = {
      {"ckpt-0.h5", 1, 0},
      {"ckpt-7.h5", 1, 7},
      {"ckpt-9223372036854775807.h5", 1, 9223372036854775807ull}, /* INT64_MAX */
      {"ckpt-9223372036854775808.h5", -1, 0},                     /* INT64_MAX + 1 */
      {"ckpt-18446744073709551615.h5", -1, 0},                    /* UINT64_MAX */
      {"ckpt-18446744073709551616.h5", -1, 0},                    /* wraps in 64 bits */
      {"ckpt-99999999999999999999999.h5", -1, 0},
      {"ckpt-+5.h5", -1, 0},
      {"ckpt--5.h5", -1, 0},
      {"ckpt- 5.h5", -1, 0},
      {"ckpt-5 .h5", -1, 0},
      {"ckpt-05.h5", -1, 0},
      {"ckpt-00.h5", -1, 0},
      {"ckpt-.h5", -1, 0},
      {"ckpt-0x10.h5", -1, 0},
      {"ckpt-1e3.h5", -1, 0},
      {"ckpt-x.h5", -1, 0},
      {"ckpt-5.h5.tmp", 0, 0}, /* another suffix: not a checkpoint, not stray */
      {"ckpt-5.h5.bak", 0, 0},
      {"ckpt-5.h", 0, 0},
      {"ckpt.h5", 0, 0},
      {"metrics.jsonl", 0, 0},
      {"", 0, 0},
  };
  for (size_t i = 0; i < sizeof nm / sizeof nm[0]; i++) {
    uint64_t st = 12345;
    int k = ckpt_parse_name(nm[i].name, ".h5", &st);
    CHECK_MSG(k == nm[i].kind, "'%s': %d, expected %d", nm[i].name, k, nm[i].kind);
    if (k == 1) CHECK_MSG(st == nm[i].step, "'%s': step %llu", nm[i].name, (unsigned long long)st);
  }
  uint64_t st = 0;
  CHECK_EQ_INT(ckpt_parse_name("ckpt-12.h5.tmp", ".h5.tmp", &st), 1);
  CHECK_EQ_INT(st, 12);
  CHECK_EQ_INT(ckpt_parse_name("ckpt-012.h5.tmp", ".h5.tmp", &st), -1);
  CHECK_EQ_INT(ckpt_parse_name("ckpt-12.h5", ".h5.tmp", &st), 0);

  /* listing: newest first, .tmp and other names ignored, stray ones warned about once each */
  const char *tmp = getenv("TEST_TMP") ? getenv("TEST_TMP") : "/tmp";
  char *dir = xasprintf("%s/unit_ckpt_list_%d", tmp, (int)getpid());
  mkdir(dir, 0777);
  const char *names[] = {"ckpt-9.h5",     "ckpt-10.h5",  "ckpt-100.h5.tmp",
                         "ckpt-x.h5",     "ckpt-2.h5",   "ckpt-3.h5.bak",
                         "ckpt-18446744073709551615.h5", "ckpt-+11.h5", "ckpt-011.h5"};
  int nnames = (int)(sizeof names / sizeof names[0]);
  for (int i = 0; i < nnames; i++) {
    char *p = xasprintf("%s/%s", dir, names[i]);
    FILE *f = fopen(p, "w");
    if (f) fclose(f);
    free(p);
  }
  uint64_t *steps;
  char **paths;
  int n;
  /* the warnings go to stderr: capture it in a file for the listing with warn = 1 */
  char *errpath = xasprintf("%s.stderr", dir);
  fflush(stderr);
  int saved = dup(2);
  FILE *ef = fopen(errpath, "w+");
  CHECK(ef != NULL && saved >= 0);
  if (ef) dup2(fileno(ef), 2);
  CHECK_EQ_INT(ckpt_list(dir, 1, &steps, &paths, &n), 0);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  char warned[4096] = "";
  if (ef) {
    rewind(ef);
    size_t got = fread(warned, 1, sizeof warned - 1, ef);
    warned[got] = '\0';
    fclose(ef);
  }
  remove(errpath);
  free(errpath);
  CHECK_EQ_INT(n, 3);
  if (n == 3) CHECK(steps[0] == 10 && steps[1] == 9 && steps[2] == 2);
  for (int i = 0; i < n; i++) free(paths[i]);
  free(paths);
  free(steps);
  int lines = 0;
  for (const char *c = warned; *c; c++) lines += *c == '\n';
  CHECK_MSG(lines == 4, "expected 4 warning lines, got: %s", warned);
  CHECK_CONTAINS(warned, "ckpt-18446744073709551615.h5: ignored: not a checkpoint name");
  CHECK_CONTAINS(warned, "ckpt-+11.h5: ignored");
  CHECK_CONTAINS(warned, "ckpt-011.h5: ignored");
  CHECK_CONTAINS(warned, "ckpt-x.h5: ignored");
  CHECK_CONTAINS(warned, "at most 9223372036854775807");
  CHECK(strstr(warned, "ckpt-100.h5.tmp") == NULL && strstr(warned, "ckpt-3.h5.bak") == NULL);
  CHECK_EQ_INT(ckpt_list(dir, 0, &steps, &paths, &n), 0); /* quiet listing: same result */
  CHECK_EQ_INT(n, 3);
  for (int i = 0; i < n; i++) free(paths[i]);
  free(paths);
  free(steps);
  char *cmd = xasprintf("rm -rf '%s'", dir);
  CHECK_EQ_INT(system(cmd), 0);
  free(cmd);
  free(dir);

  /* job compatibility */
  char *tr[] = {"a.weight", "b.weight"};
  ckpt_meta m = {0};
  m.config_json = "{\"model_type\": \"llama\", \"hidden_size\": 64, \"torch_dtype\": \"float32\"}";
  m.trainable = tr;
  m.n_trainable = 2;
  CHECK_EQ_INT(ckpt_check_job(&m, "{\"model_type\": \"llama\", \"hidden_size\": 64, "
                                  "\"torch_dtype\": \"bfloat16\"}", tr, 2), 0);
  CHECK_EQ_INT(ckpt_check_job(&m, "{\"model_type\": \"qwen2\", \"hidden_size\": 64}", tr, 2),
               ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "'model_type' is \"llama\" in the checkpoint, \"qwen2\" in the job");
  CHECK_CONTAINS(st_errmsg(), "take_from_checkpoint");
  char *tr2[] = {"a.weight", "c.weight"};
  CHECK_EQ_INT(ckpt_check_job(&m, m.config_json, tr2, 2), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "'b.weight' is trainable in the checkpoint only");
  CHECK_EQ_INT(ckpt_check_job(&m, "not json", tr, 2), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "the job's config.json is not a JSON object");
  return test_done();
}
