/* The checkpoint module's rank-independent parts (no MPI, no HDF5): the checksum does not
 * depend on how a tensor is split and catches any changed element; flat unit buffers map
 * onto tensor slices with padding skipped; directory listing order; job compatibility
 * messages name the differing key or tensor. */
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

  /* listing: newest first, .tmp and other names ignored */
  const char *tmp = getenv("TEST_TMP") ? getenv("TEST_TMP") : "/tmp";
  char *dir = xasprintf("%s/unit_ckpt_list_%d", tmp, (int)getpid());
  mkdir(dir, 0777);
  const char *names[] = {"ckpt-9.h5", "ckpt-10.h5", "ckpt-100.h5.tmp", "ckpt-x.h5", "ckpt-2.h5",
                         "ckpt-3.h5.bak"};
  for (int i = 0; i < 6; i++) {
    char *p = xasprintf("%s/%s", dir, names[i]);
    FILE *f = fopen(p, "w");
    if (f) fclose(f);
    free(p);
  }
  uint64_t *steps;
  char **paths;
  int n;
  CHECK_EQ_INT(ckpt_list(dir, &steps, &paths, &n), 0);
  CHECK_EQ_INT(n, 3);
  if (n == 3) CHECK(steps[0] == 10 && steps[1] == 9 && steps[2] == 2);
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
