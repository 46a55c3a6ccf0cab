/* src/io/data: formats, bad files, vocabulary checks, samples, order, splits. */
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/data.h"
#include "test.h"
#include "util/err.h"

static char dir_[512];

static char *path_(const char *name) { return xasprintf("%s/%s", dir_, name); }

static void write_file_(const char *name, const void *data, size_t n) {
  char *p = path_(name);
  FILE *f = fopen(p, "wb");
  CHECK(f != NULL);
  if (f) {
    fwrite(data, 1, n, f);
    fclose(f);
  }
  free(p);
}

/* An llm.c shard: header + tokens. tok_bytes 2 or 4; `count` may lie (for the test). */
static void write_bin_(const char *name, int32_t magic, int32_t version, int32_t count,
                       const uint32_t *toks, size_t n, int tok_bytes) {
  size_t bytes = 1024 + n * (size_t)tok_bytes;
  unsigned char *buf = xcalloc(bytes, 1);
  int32_t hdr[3] = {magic, version, count};
  memcpy(buf, hdr, sizeof hdr);
  for (size_t i = 0; i < n; i++) {
    if (tok_bytes == 2) {
      uint16_t v = (uint16_t)toks[i];
      memcpy(buf + 1024 + 2 * i, &v, 2);
    } else {
      memcpy(buf + 1024 + 4 * i, &toks[i], 4);
    }
  }
  write_file_(name, buf, bytes);
  free(buf);
}

static int open1_(const char *name, int64_t T, int64_t vocab, data_source **s) {
  char *p = path_(name);
  const char *pp = p;
  int rc = data_open(&pp, 1, DATA_AUTO, T, vocab, s);
  free(p);
  return rc;
}

static void expect_open_error_(const char *name, int64_t T, int64_t vocab, const char *n1,
                               const char *n2) {
  data_source *s = NULL;
  CHECK_EQ_INT(open1_(name, T, vocab, &s), ST_EINPUT);
  CHECK(s == NULL);
  CHECK_CONTAINS(st_errmsg(), name);
  if (n1) CHECK_CONTAINS(st_errmsg(), n1);
  if (n2) CHECK_CONTAINS(st_errmsg(), n2);
}

static void test_bin_(void) {
  uint32_t toks[11];
  for (int i = 0; i < 11; i++) toks[i] = (uint32_t)(100 + i);
  toks[3] = 60000; /* needs the full uint16 range */
  write_bin_("a.bin", 20240520, 1, 11, toks, 11, 2);
  data_source *s;
  CHECK_EQ_INT(open1_("a.bin", 4, 0, &s), 0);
  /* 11 tokens, T = 4: windows of 5 with stride 4 -> (11-1)/4 = 2 samples */
  CHECK_EQ_INT(data_num_samples(s), 2);
  CHECK_EQ_INT(data_num_tokens(s), 11);
  CHECK_EQ_INT(data_max_token(s), 60000);
  data_view v;
  data_view_all(s, &v);
  uint64_t idx[2] = {1, 0};
  int32_t in[8], tg[8];
  data_fill(&v, idx, 2, in, tg);
  /* sample 1: inputs s[4..8), targets s[5..9) */
  for (int t = 0; t < 4; t++) {
    CHECK_EQ_INT(in[t], toks[4 + t]);
    CHECK_EQ_INT(tg[t], toks[5 + t]);
    CHECK_EQ_INT(in[4 + t], toks[t]);
    CHECK_EQ_INT(tg[4 + t], toks[1 + t]);
  }
  CHECK_EQ_INT(data_count_targets(&v, idx, 2), 8);
  data_close(s);

  /* uint32 tokens (magic 20240801, version 7) */
  uint32_t big[9] = {0, 128000, 128255, 5, 6, 7, 8, 9, 10};
  write_bin_("b.bin", 20240801, 7, 9, big, 9, 4);
  CHECK_EQ_INT(open1_("b.bin", 8, 128256, &s), 0);
  CHECK_EQ_INT(data_num_samples(s), 1);
  data_view_all(s, &v);
  uint64_t z = 0;
  data_fill(&v, &z, 1, in, tg);
  CHECK_EQ_INT(in[1], 128000);
  CHECK_EQ_INT(tg[1], 128255);
  CHECK_EQ_INT(tg[7], 10);
  data_close(s);

  /* token >= vocab: file and position */
  expect_open_error_("b.bin", 8, 128000, "token 1 ", "128000");
  CHECK_CONTAINS(st_errmsg(), "vocabulary size 128000");

  /* bad magic, version, count vs size, short file */
  write_bin_("magic.bin", 12345, 1, 11, toks, 11, 2);
  expect_open_error_("magic.bin", 4, 0, "expected magic 20240520", "found 12345");
  write_bin_("version.bin", 20240520, 3, 11, toks, 11, 2);
  expect_open_error_("version.bin", 4, 0, "expected version 1", "found 3");
  write_bin_("count.bin", 20240520, 1, 12, toks, 11, 2);
  expect_open_error_("count.bin", 4, 0, "header says 12 tokens", "found 1046");
  write_bin_("count2.bin", 20240801, 7, 11, toks, 11, 2); /* uint16 payload, uint32 header */
  expect_open_error_("count2.bin", 4, 0, "should have 1068 bytes", "found 1046");
  write_file_("short.bin", "abc", 3);
  expect_open_error_("short.bin", 4, 0, "1024-byte header", "found 3 bytes");
  /* too few tokens for one window */
  write_bin_("few.bin", 20240520, 1, 4, toks, 4, 2);
  expect_open_error_("few.bin", 4, 0, "no samples", NULL);
  expect_open_error_("missing.bin", 4, 0, "no such file", "expected an llm.c .bin token shard");
  /* a directory (or device) where a token file should be: what was expected, not mmap's
   * "No such device" */
  static const struct {
    const char *name, *expected;
  } dirs[] = {{"dir.bin", "is a directory; expected an llm.c .bin token shard"},
              {"dir.jsonl", "is a directory; expected a JSONL file of token records"},
              {"dirtxt", "is a directory; expected a text file (read as bytes) or a token file"}};
  for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
    char *d = path_(dirs[i].name);
    CHECK_EQ_INT(mkdir(d, 0777), 0);
    free(d);
    expect_open_error_(dirs[i].name, 4, 0, dirs[i].expected, NULL);
  }
  data_source *ds = NULL;
  const char *devnull = "/dev/null";
  CHECK_EQ_INT(data_open(&devnull, 1, DATA_AUTO, 4, 0, &ds), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "/dev/null: is not a regular file");
}

static void test_text_(void) {
  const char *txt = "Hello, world! In the beginning.";
  write_file_("t.txt", txt, strlen(txt));
  data_source *s;
  CHECK_EQ_INT(open1_("t.txt", 10, 256, &s), 0);
  CHECK_EQ_INT(data_num_samples(s), (strlen(txt) - 1) / 10);
  data_view v;
  data_view_all(s, &v);
  uint64_t idx[3] = {2, 0, 1};
  int32_t in[30], tg[30];
  data_fill(&v, idx, 3, in, tg);
  for (int t = 0; t < 10; t++) {
    CHECK_EQ_INT(in[t], (unsigned char)txt[20 + t]);
    CHECK_EQ_INT(tg[t], (unsigned char)txt[21 + t]);
    CHECK_EQ_INT(in[10 + t], (unsigned char)txt[t]);
  }
  data_close(s);
  /* a byte >= vocab: 'o' (111) at position 4 with vocab 110 ('H'=72, 'e'=101, 'l'=108) */
  expect_open_error_("t.txt", 10, 110, "token 4 ", "is 111");
  /* UTF-8 bytes above 127 are tokens too */
  write_file_("u.txt", "caf\xc3\xa9!", 6);
  CHECK_EQ_INT(open1_("u.txt", 2, 256, &s), 0);
  CHECK_EQ_INT(data_max_token(s), 0xc3);
  data_close(s);
}

static void test_jsonl_(void) {
  const char *j =
      "{\"input_ids\": [5, 6, 7, 8], \"labels\": [-100, -100, 7, 8]}\n"
      "\n"
      "{\"input_ids\": [1, 2, 3, 4, 5, 6, 7, 8, 9]}\n"
      "{\"input_ids\": [9], \"labels\": [9]}\n"
      "{\"input_ids\": [3, 4, 5, 6, 7, 8, 9], \"labels\": [-100, -100, -100, -100, -100, -100, "
      "9]}\n";
  write_file_("r.jsonl", j, strlen(j));
  data_source *s;
  /* one warning for the file, with the count: capture stderr around the open */
  char *errpath = path_("stderr.txt");
  fflush(stderr);
  int saved = dup(2);
  FILE *ef = fopen(errpath, "w+");
  CHECK(ef != NULL && saved >= 0);
  dup2(fileno(ef), 2);
  log_set_quiet(0);
  int orc = open1_("r.jsonl", 6, 10, &s);
  log_set_quiet(1);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  char warn[512] = "";
  rewind(ef);
  size_t wn = fread(warn, 1, sizeof warn - 1, ef);
  warn[wn] = '\0';
  fclose(ef);
  free(errpath);
  CHECK_EQ_INT(orc, 0);
  CHECK_CONTAINS(warn, "r.jsonl: 2 of 4 records are longer than max_seq_length 6");
  CHECK_MSG(strchr(warn, '\n') == warn + strlen(warn) - 1, "expected one warning line: %s", warn);
  CHECK_EQ_INT(data_num_samples(s), 4);
  CHECK_EQ_INT(data_num_truncated(s), 2);
  data_view v;
  data_view_all(s, &v);
  uint64_t idx[4] = {0, 1, 2, 3};
  int32_t in[24], tg[24];
  data_fill(&v, idx, 4, in, tg);
  /* HF: logits[:, :-1] predict labels[:, 1:]; position t's target is labels[t + 1]. */
  const int32_t in0[6] = {5, 6, 7, 8, 0, 0}, tg0[6] = {-100, 7, 8, -100, -100, -100};
  const int32_t in1[6] = {1, 2, 3, 4, 5, 6}, tg1[6] = {2, 3, 4, 5, 6, -100}; /* truncated to 6 */
  const int32_t in2[6] = {9, 0, 0, 0, 0, 0}, tg2[6] = {-100, -100, -100, -100, -100, -100};
  /* truncated to 6: the only counted label (index 6) is cut off */
  const int32_t in3[6] = {3, 4, 5, 6, 7, 8}, tg3[6] = {-100, -100, -100, -100, -100, -100};
  for (int t = 0; t < 6; t++) {
    CHECK_EQ_INT(in[t], in0[t]);
    CHECK_EQ_INT(tg[t], tg0[t]);
    CHECK_EQ_INT(in[6 + t], in1[t]);
    CHECK_EQ_INT(tg[6 + t], tg1[t]);
    CHECK_EQ_INT(in[12 + t], in2[t]);
    CHECK_EQ_INT(tg[12 + t], tg2[t]);
    CHECK_EQ_INT(in[18 + t], in3[t]);
    CHECK_EQ_INT(tg[18 + t], tg3[t]);
  }
  CHECK_EQ_INT(data_count_targets(&v, idx, 4), 2 + 5 + 0 + 0);
  CHECK_EQ_INT(data_count_targets(&v, idx, 1), 2);
  data_close(s);

  /* bad records: file, line and position */
  const char *bad1 = "{\"input_ids\": [1, 2]}\n{\"input_ids\": [1, 12, 3]}\n";
  write_file_("bad1.jsonl", bad1, strlen(bad1));
  expect_open_error_("bad1.jsonl", 4, 10, "bad1.jsonl:2", "input_ids[1] is 12");
  const char *bad2 = "{\"input_ids\": [1, 2], \"labels\": [1, 99]}\n";
  write_file_("bad2.jsonl", bad2, strlen(bad2));
  expect_open_error_("bad2.jsonl", 4, 10, "bad2.jsonl:1", "labels[1] is 99");
  const char *bad3 = "{\"input_ids\": [1, 2], \"labels\": [1]}\n";
  write_file_("bad3.jsonl", bad3, strlen(bad3));
  expect_open_error_("bad3.jsonl", 4, 10, "labels has 1 entries", "(2)");
  const char *bad4 = "{\"text\": \"hello\"}\n";
  write_file_("bad4.jsonl", bad4, strlen(bad4));
  expect_open_error_("bad4.jsonl", 4, 10, "bad4.jsonl:1", "input_ids");
  const char *bad5 = "{\"input_ids\": [1, 2]}\n{\"input_ids\": [1, 2\n";
  write_file_("bad5.jsonl", bad5, strlen(bad5));
  expect_open_error_("bad5.jsonl", 4, 10, "bad5.jsonl:2", "not valid JSON");
  const char *bad6 = "{\"input_ids\": [1, 2.5]}\n";
  write_file_("bad6.jsonl", bad6, strlen(bad6));
  expect_open_error_("bad6.jsonl", 4, 10, "input_ids[1]", "expected an integer");
  const char *bad7 = "{\"input_ids\": []}\n";
  write_file_("bad7.jsonl", bad7, strlen(bad7));
  expect_open_error_("bad7.jsonl", 4, 10, "empty", NULL);
  const char *bad8 = "{\"input_ids\": [-3]}\n";
  write_file_("bad8.jsonl", bad8, strlen(bad8));
  expect_open_error_("bad8.jsonl", 4, 10, "input_ids[0] is -3", NULL);
}

static void test_multi_file_(void) {
  /* windows never cross a file boundary; samples are numbered file after file */
  write_file_("m1.txt", "abcdefghij", 10); /* T=3: (10-1)/3 = 3 samples */
  write_file_("m2.txt", "ABCDE", 5);       /* (5-1)/3 = 1 sample */
  const char *j = "{\"input_ids\": [1, 2]}\n";
  write_file_("m3.jsonl", j, strlen(j)); /* 1 sample */
  char *p1 = path_("m1.txt"), *p2 = path_("m2.txt"), *p3 = path_("m3.jsonl");
  const char *ps[3] = {p1, p2, p3};
  data_source *s;
  CHECK_EQ_INT(data_open(ps, 3, DATA_AUTO, 3, 0, &s), 0);
  CHECK_EQ_INT(data_num_samples(s), 5);
  data_view v;
  data_view_all(s, &v);
  uint64_t idx[3] = {2, 3, 4};
  int32_t in[9], tg[9];
  data_fill(&v, idx, 3, in, tg);
  CHECK_EQ_INT(in[0], 'g');
  CHECK_EQ_INT(tg[2], 'j');
  CHECK_EQ_INT(in[3], 'A');
  CHECK_EQ_INT(tg[5], 'D');
  CHECK_EQ_INT(in[6], 1);
  CHECK_EQ_INT(tg[6], 2);
  CHECK_EQ_INT(tg[7], -100);
  CHECK_EQ_INT(data_count_targets(&v, idx, 3), 3 + 3 + 1);
  data_close(s);
  /* auto refuses files that are surely not token data; data.format text reads them */
  write_file_("d.json", "[1, 2, 3, 4, 5]", 15);
  expect_open_error_("d.json", 3, 0, "'.json' files are not token data", "data.format: text");
  char *pj = path_("d.json");
  CHECK_EQ_INT(data_open((const char *const *)&pj, 1, DATA_TEXT, 3, 0, &s), 0);
  data_close(s);
  free(pj);
  /* format forced to text: a .jsonl file read as bytes */
  CHECK_EQ_INT(data_open((const char *const *)&p3, 1, DATA_TEXT, 3, 0, &s), 0);
  CHECK_EQ_INT(data_num_samples(s), (strlen(j) - 1) / 3);
  data_close(s);
  free(p1);
  free(p2);
  free(p3);
}

/* Order: a permutation per epoch, a pure function of (seed, epoch, position). */
static void test_order_(void) {
  const uint64_t sizes[] = {1, 2, 3, 7, 64, 65, 1000, 4097};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    data_view v = {NULL, sizes[k], NULL};
    uint64_t n = sizes[k];
    unsigned char *seen = xcalloc(n, 1);
    uint64_t *fwd = xmalloc(n * sizeof *fwd);
    uint64_t fixed = 0;
    for (uint64_t p = 0; p < n; p++) {
      fwd[p] = data_sample_at(&v, 42, 3, p);
      CHECK(fwd[p] < n);
      if (fwd[p] < n) seen[fwd[p]]++;
      fixed += fwd[p] == p;
    }
    int perm = 1;
    for (uint64_t i = 0; i < n; i++) perm &= seen[i] == 1;
    CHECK_MSG(perm, "n = %llu: not a permutation", (unsigned long long)n);
    if (n >= 64)
      CHECK_MSG(fixed < n / 8, "n = %llu: %llu fixed points: not shuffled", (unsigned long long)n,
                (unsigned long long)fixed);
    /* the same answers asked in reverse order and again (no hidden state) */
    int same = 1;
    for (uint64_t p = n; p-- > 0;) same &= data_sample_at(&v, 42, 3, p) == fwd[p];
    CHECK(same);
    /* global positions run epochs back to back */
    for (uint64_t p = 0; p < n; p += (n / 7 + 1))
      CHECK(data_sample_global(&v, 42, 3 * n + p) == fwd[p]);
    /* another epoch or seed gives another order */
    if (n >= 64) {
      uint64_t diff_e = 0, diff_s = 0;
      for (uint64_t p = 0; p < n; p++) {
        diff_e += data_sample_at(&v, 42, 4, p) != fwd[p];
        diff_s += data_sample_at(&v, 43, 3, p) != fwd[p];
      }
      CHECK(diff_e > n / 2);
      CHECK(diff_s > n / 2);
    }
    free(seen);
    free(fwd);
  }
  /* Batches split over ranks see the same global batch whatever the rank count: rank r of
   * R takes positions g*B + r*(B/R) ... here simply: union over ranks == one rank's list. */
  data_view v = {NULL, 1000, NULL};
  const uint64_t B = 24, step = 17;
  uint64_t one[24], many[24];
  for (uint64_t b = 0; b < B; b++) one[b] = data_sample_global(&v, 7, step * B + b);
  for (int R = 2; R <= 4; R++) {
    for (int r = R - 1; r >= 0; r--) /* ranks ask in any order */
      for (uint64_t b = 0; b < B / (uint64_t)R; b++) {
        uint64_t pos = (uint64_t)r * (B / (uint64_t)R) + b;
        many[pos] = data_sample_global(&v, 7, step * B + pos);
      }
    CHECK(memcmp(one, many, sizeof one) == 0);
  }
}

static void test_split_(void) {
  char txt[4001];
  for (int i = 0; i < 4000; i++) txt[i] = (char)('a' + (i * 7) % 26);
  write_file_("s.txt", txt, 4000);
  data_source *s;
  CHECK_EQ_INT(open1_("s.txt", 4, 0, &s), 0); /* 999 samples */
  uint64_t n = data_num_samples(s);
  CHECK_EQ_INT(n, 999);
  data_view tr, va, tr2, va2;
  CHECK_EQ_INT(data_split(s, 0.1, &tr, &va), 0);
  CHECK_EQ_INT(va.n, 100); /* round(99.9) */
  CHECK_EQ_INT(tr.n + va.n, n);
  CHECK_EQ_INT(data_split(s, 0.1, &tr2, &va2), 0);
  CHECK(va.n == va2.n && memcmp(va.index, va2.index, va.n * sizeof *va.index) == 0);
  CHECK(tr.n == tr2.n && memcmp(tr.index, tr2.index, tr.n * sizeof *tr.index) == 0);
  /* disjoint, covering, each in source order, and spread over the data (not a block) */
  unsigned char *seen = xcalloc(n, 1);
  int sorted = 1;
  for (uint64_t i = 0; i < va.n; i++) {
    seen[va.index[i]]++;
    if (i) sorted &= va.index[i] > va.index[i - 1];
  }
  for (uint64_t i = 0; i < tr.n; i++) {
    seen[tr.index[i]]++;
    if (i) sorted &= tr.index[i] > tr.index[i - 1];
  }
  int cover = 1;
  for (uint64_t i = 0; i < n; i++) cover &= seen[i] == 1;
  CHECK(cover);
  CHECK(sorted);
  CHECK(va.index[0] < n / 4 && va.index[va.n - 1] > 3 * n / 4);
  free(seen);
  /* views map to the right source samples */
  int32_t a[4], at[4], b[4], bt[4];
  uint64_t vi = 5, si = va.index[5];
  data_view all;
  data_view_all(s, &all);
  data_fill(&va, &vi, 1, a, at);
  data_fill(&all, &si, 1, b, bt);
  CHECK(memcmp(a, b, sizeof a) == 0 && memcmp(at, bt, sizeof at) == 0);
  data_view_free(&tr);
  data_view_free(&va);
  data_view_free(&tr2);
  data_view_free(&va2);
  /* fraction 0: everything trains; tiny fractions hold out one sample */
  CHECK_EQ_INT(data_split(s, 0, &tr, &va), 0);
  CHECK_EQ_INT(tr.n, n);
  CHECK_EQ_INT(va.n, 0);
  data_view_free(&tr);
  data_view_free(&va);
  CHECK_EQ_INT(data_split(s, 1e-6, &tr, &va), 0);
  CHECK_EQ_INT(va.n, 1);
  data_view_free(&tr);
  data_view_free(&va);
  CHECK_EQ_INT(data_split(s, 1.5, &tr, &va), ST_EINPUT);
  data_close(s);
}

static void test_job_(void) {
  char *t = path_("s.txt"), *vpath = path_("t.txt");
  char *text = xasprintf(
      "output_dir: %s\nmodel: {path: m}\ndata:\n  train: %s\n"
      "  validation_split: 0.2\ntraining: {max_seq_length: 4}\n",
      dir_, t);
  job_config job;
  CHECK_EQ_INT(job_load_text("j.yaml", text, NULL, &job), 0);
  data_job d;
  CHECK_EQ_INT(data_open_job(&job, 256, &d), 0);
  CHECK_EQ_INT(d.train.n + d.val.n, 999);
  CHECK_EQ_INT(d.val.n, 200);
  CHECK(d.val_src == NULL);
  data_job_close(&d);
  char *set = xasprintf("data.validation=%s", vpath);
  CHECK_EQ_INT(job_set(&job, "data.validation_split=0"), 0);
  CHECK_EQ_INT(job_set(&job, set), 0);
  CHECK_EQ_INT(data_open_job(&job, 256, &d), 0);
  CHECK_EQ_INT(d.train.n, 999);
  CHECK_EQ_INT(d.val.n, 7); /* 31 bytes, T = 4 */
  data_job_close(&d);
  /* the vocabulary from the job when none is given */
  CHECK_EQ_INT(job_set(&job, "data.vocab_size=100"), 0);
  CHECK_EQ_INT(data_open_job(&job, 0, &d), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "s.txt");
  job_free(&job);
  free(set);
  free(text);
  free(t);
  free(vpath);
}

int main(void) {
  log_set_quiet(1);
  const char *tmp = getenv("TEST_TMP");
  snprintf(dir_, sizeof dir_, "%s/data-XXXXXX", tmp ? tmp : "/tmp");
  if (!mkdtemp(dir_)) {
    perror("mkdtemp");
    return 1;
  }
  test_bin_();
  test_text_();
  test_jsonl_();
  test_multi_file_();
  test_order_();
  test_split_();
  test_job_();
  char *cmd = xasprintf("rm -rf '%s'", dir_);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir_);
  free(cmd);
  return test_done();
}
