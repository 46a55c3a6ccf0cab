/* safetensors: conversions against IEEE-754 facts, write/read round trips, partial reads,
 * sharded directories, and one crafted file per kind of bad input (each must be an
 * ST_EINPUT error naming the file and, where there is one, the tensor). */
#include <ftw.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "io/safetensors_internal.h"
#include "nonfinite_patch.h"
#include "test.h"
#include "util/err.h"

static char tmpdir_[512];

static char *tpath_(const char *name) {
  static char buf[8][1024];
  static int k = 0;
  k = (k + 1) % 8;
  snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir_, name);
  return buf[k];
}

static uint32_t bits_(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
static float fl_(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static void test_conversions(void) {
  /* bf16: truncation of the top 16 bits with round-to-nearest-even */
  CHECK_EQ_INT(sft_f32_to_bf16(1.0f), 0x3f80);
  CHECK_EQ_INT(sft_f32_to_bf16(-2.0f), 0xc000);
  CHECK_EQ_INT(sft_f32_to_bf16(fl_(0x3f808000u)), 0x3f80); /* tie -> even (down) */
  CHECK_EQ_INT(sft_f32_to_bf16(fl_(0x3f818000u)), 0x3f82); /* tie -> even (up) */
  CHECK_EQ_INT(sft_f32_to_bf16(fl_(0x3f808001u)), 0x3f81); /* above the tie */
  CHECK_EQ_INT(sft_f32_to_bf16(fl_(0x7f7fffffu)), 0x7f80); /* FLT_MAX rounds to inf */
  CHECK((sft_f32_to_bf16(NAN) & 0x7fff) > 0x7f80);         /* NaN stays NaN */
  CHECK(bits_(sft_bf16_to_f32(0x3fc0)) == bits_(1.5f));
  /* f16 */
  CHECK_EQ_INT(sft_f32_to_f16(1.0f), 0x3c00);
  CHECK_EQ_INT(sft_f32_to_f16(-2.0f), 0xc000);
  CHECK_EQ_INT(sft_f32_to_f16(0.1f), 0x2e66);
  CHECK_EQ_INT(sft_f32_to_f16(65504.0f), 0x7bff);
  CHECK_EQ_INT(sft_f32_to_f16(65519.0f), 0x7bff);
  CHECK_EQ_INT(sft_f32_to_f16(65520.0f), 0x7c00); /* rounds to infinity */
  CHECK_EQ_INT(sft_f32_to_f16(1e10f), 0x7c00);
  CHECK_EQ_INT(sft_f32_to_f16(ldexpf(1.0f, -14)), 0x0400); /* smallest normal */
  CHECK_EQ_INT(sft_f32_to_f16(ldexpf(1.0f, -24)), 0x0001); /* smallest subnormal */
  CHECK_EQ_INT(sft_f32_to_f16(ldexpf(1.0f, -25)), 0x0000); /* tie -> even (0) */
  CHECK_EQ_INT(sft_f32_to_f16(ldexpf(1.5f, -25)), 0x0001);
  CHECK_EQ_INT(sft_f32_to_f16(ldexpf(3.0f, -25)), 0x0002); /* 1.5 ulp tie -> even (2) */
  CHECK_EQ_INT(sft_f32_to_f16(-0.0f), 0x8000);
  CHECK_EQ_INT(sft_f32_to_f16(INFINITY), 0x7c00);
  CHECK((sft_f32_to_f16(NAN) & 0x7fff) > 0x7c00);
  CHECK(sft_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
  CHECK(sft_f16_to_f32(0x3555) == 0.333251953125f);
  CHECK(isinf(sft_f16_to_f32(0xfc00)) && sft_f16_to_f32(0xfc00) < 0);
  /* every finite half survives f16 -> f32 -> f16 */
  int bad = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue; /* NaN payloads */
    if (sft_f32_to_f16(sft_f16_to_f32((uint16_t)h)) != h) bad++;
  }
  CHECK_EQ_INT(bad, 0);
}

static void test_roundtrip(void) {
  float a[6] = {1.0f, -2.5f, 0.1f, 3.14159f, -0.0f, 65504.0f};
  float b[3] = {7.0f, 8.0f, 9.0f};
  sft_out_tensor t[3] = {{"a.weight", 2, {2, 3}, a}, {"b", 1, {3}, b}, {"empty", 2, {0, 4}, NULL}};
  sft_dtype dts[3] = {SFT_F32, SFT_BF16, SFT_F16};
  for (int k = 0; k < 3; k++) {
    char *p = tpath_("rt.safetensors");
    CHECK_EQ_INT(sft_write_f32(p, t, 3, dts[k]), 0);
    CHECK(access(tpath_("rt.safetensors.tmp"), F_OK) != 0); /* renamed into place */
    /* header length is a multiple of 8 */
    FILE *f = fopen(p, "rb");
    uint8_t len8[8] = {0};
    CHECK(f && fread(len8, 1, 8, f) == 8);
    if (f) fclose(f);
    CHECK_EQ_INT(len8[0] % 8, 0);
    sft_model m;
    int rc = sft_open(p, &m);
    CHECK_MSG(rc == 0, "%s", st_errmsg());
    if (rc) continue;
    CHECK_EQ_INT(m.n, 3);
    const sft_tensor *ta = sft_find(&m, "a.weight"), *tb = sft_find(&m, "b"),
                     *te = sft_find(&m, "empty");
    CHECK(ta && tb && te && !sft_find(&m, "c"));
    if (!ta || !tb || !te) continue;
    CHECK_EQ_INT(ta->dtype, dts[k]);
    CHECK_EQ_INT(ta->ndim, 2);
    CHECK_EQ_INT(ta->shape[0], 2);
    CHECK_EQ_INT(ta->shape[1], 3);
    CHECK_EQ_INT(ta->numel, 6);
    CHECK_EQ_INT(ta->bytes, 6 * sft_dtype_bytes(dts[k]));
    CHECK_EQ_INT(te->numel, 0);
    float out[6];
    CHECK_EQ_INT(sft_read_f32(&m, ta, 0, 6, out), 0);
    for (int i = 0; i < 6; i++) {
      float want = dts[k] == SFT_F32    ? a[i]
                   : dts[k] == SFT_BF16 ? sft_bf16_to_f32(sft_f32_to_bf16(a[i]))
                                        : sft_f16_to_f32(sft_f32_to_f16(a[i]));
      CHECK_MSG(bits_(out[i]) == bits_(want), "dtype %d elem %d: %g vs %g", k, i, out[i], want);
    }
    /* a byte range in the middle */
    double d2[2];
    CHECK_EQ_INT(sft_read_f64(&m, tb, 1, 2, d2), 0);
    CHECK(d2[0] == 8.0 && d2[1] == 9.0);
    CHECK_EQ_INT(sft_read_f32(&m, tb, 2, 2, out), ST_EINPUT); /* past the end */
    CHECK_CONTAINS(st_errmsg(), "'b'");
    sft_close(&m);
  }
}

/* Write a safetensors file with a given header text and `data_bytes` bytes of data. */
static char *craft_(const char *name, const char *header, size_t data_bytes, uint64_t len_field) {
  char *p = tpath_(name);
  FILE *f = fopen(p, "wb");
  size_t hl = strlen(header);
  uint64_t n = len_field ? len_field : hl;
  uint8_t len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (uint8_t)(n >> (8 * i));
  fwrite(len8, 1, 8, f);
  fwrite(header, 1, hl, f);
  for (size_t i = 0; i < data_bytes; i++) fputc(0, f);
  fclose(f);
  return p;
}

static void expect_bad_(const char *p, const char *needle1, const char *needle2) {
  sft_model m;
  int rc = sft_open(p, &m);
  CHECK_MSG(rc == ST_EINPUT, "%s: rc %d", p, rc);
  CHECK_CONTAINS(st_errmsg(), needle1);
  if (needle2) CHECK_CONTAINS(st_errmsg(), needle2);
  if (rc == 0) sft_close(&m);
}

static void test_bad_inputs(void) {
  /* truncated before the length field */
  char *p = tpath_("short.safetensors");
  FILE *f = fopen(p, "wb");
  fwrite("abcd", 1, 4, f);
  fclose(f);
  expect_bad_(p, p, "truncated");
  /* header length beyond the file */
  p = craft_("hlen.safetensors", "{}", 0, 1000);
  expect_bad_(p, p, "header length 1000");
  /* absurd header length */
  p = craft_("huge.safetensors", "{}", 0, 1ULL << 40);
  expect_bad_(p, p, "header length");
  /* bad JSON */
  p = craft_("json.safetensors", "{\"a\": {\"dtype\": \"F32\",", 0, 0);
  expect_bad_(p, p, "invalid JSON");
  /* not an object */
  p = craft_("arr.safetensors", "[1, 2]   ", 0, 0);
  expect_bad_(p, p, "expected a JSON object");
  /* offsets beyond the data: file truncated */
  p = craft_("trunc.safetensors",
             "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, 0);
  expect_bad_(p, p, "'w'");
  CHECK_CONTAINS(st_errmsg(), "extend past the end");
  /* overlap */
  p = craft_("overlap.safetensors",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
             12, 0);
  expect_bad_(p, p, "overlap");
  CHECK_CONTAINS(st_errmsg(), "'b'");
  CHECK_CONTAINS(st_errmsg(), "'a'");
  /* gap */
  p = craft_("gap.safetensors",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
             20, 0);
  expect_bad_(p, p, "gap of 4 bytes");
  CHECK_CONTAINS(st_errmsg(), "'b'");
  /* a gap before the first tensor */
  p = craft_("gap0.safetensors",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, 0);
  expect_bad_(p, p, "gap");
  /* trailing bytes after the last tensor */
  p = craft_("tail.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
             12, 0);
  expect_bad_(p, p, "4 bytes of data after the last tensor");
  /* shape * dtype != bytes */
  p = craft_("shape.safetensors",
             "{\"a\":{\"dtype\":\"BF16\",\"shape\":[3,2],\"data_offsets\":[0,8]}}", 8, 0);
  expect_bad_(p, p, "'a'");
  CHECK_CONTAINS(st_errmsg(), "needs 12 bytes");
  /* unknown dtype */
  p = craft_("dtype.safetensors",
             "{\"a\":{\"dtype\":\"Q4_K\",\"shape\":[2],\"data_offsets\":[0,1]}}", 1, 0);
  expect_bad_(p, p, "unknown dtype \"Q4_K\"");
  CHECK_CONTAINS(st_errmsg(), "'a'");
  /* negative / non-integer shape, wrong data_offsets */
  p = craft_("neg.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}",
             4, 0);
  expect_bad_(p, p, "shape[0]");
  p = craft_("offs.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}",
             4, 0);
  expect_bad_(p, p, "data_offsets");
  p = craft_("rev.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]}}",
             4, 0);
  expect_bad_(p, p, "end before begin");
  /* duplicate names */
  p = craft_("dup.safetensors",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
             "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
             8, 0);
  expect_bad_(p, p, "duplicate");
  /* metadata must be strings */
  p = craft_("meta.safetensors", "{\"__metadata__\":{\"format\":1}}", 0, 0);
  expect_bad_(p, p, "__metadata__");
  /* a shape whose element count overflows */
  p = craft_("ovf.safetensors",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}",
             4, 0);
  expect_bad_(p, p, "'a'");
  /* a directory without weights */
  expect_bad_(tmpdir_, tmpdir_, "no model.safetensors");
  expect_bad_(tpath_("missing.safetensors"), "missing.safetensors", "no such file");
  /* an integer tensor cannot be read as float */
  p = craft_("int.safetensors",
             "{\"ids\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, 0);
  sft_model m;
  CHECK_EQ_INT(sft_open(p, &m), 0);
  float x;
  CHECK_EQ_INT(sft_read_f32(&m, sft_find(&m, "ids"), 0, 1, &x), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "'ids'");
  /* a file truncated after it was opened: the read fails cleanly */
  sft_close(&m);
  const char *late = "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";
  p = craft_("late.safetensors", late, 16, 0);
  CHECK_EQ_INT(sft_open(p, &m), 0);
  CHECK_EQ_INT(truncate(p, (off_t)(8 + strlen(late) + 4)), 0);
  float y[4];
  CHECK_EQ_INT(sft_read_f32(&m, sft_find(&m, "a"), 0, 4, y), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "truncated");
  CHECK_CONTAINS(st_errmsg(), "'a'");
  sft_close(&m);
  /* the in-memory parser agrees */
  sft_tensor *t;
  int n;
  const char img[] = "\x10\0\0\0\0\0\0\0{}              ";
  CHECK_EQ_INT(sft_parse_memory("mem", (const uint8_t *)img, 24, &t, &n), 0);
  CHECK_EQ_INT(n, 0);
  sft_tensors_free(t, n);
  CHECK_EQ_INT(sft_parse_memory("mem", (const uint8_t *)img, 5, &t, &n), ST_EINPUT);
}

static void write_text_(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  fputs(text, f);
  fclose(f);
}

static void test_writer(void) {
  float a[3] = {1, 2, 3}, b[2] = {4, 5};
  sft_out_tensor t[2] = {{"a", 1, {3}, NULL}, {"b", 2, {1, 2}, NULL}};
  char *p = tpath_("stream.safetensors");
  sft_writer *w;
  /* closing early is an error and leaves neither the file nor the temporary */
  CHECK_EQ_INT(sft_writer_open(p, t, 2, SFT_BF16, &w), 0);
  CHECK_EQ_INT(sft_writer_put(w, a), 0);
  CHECK_EQ_INT(sft_writer_close(w), ST_ERUNTIME);
  CHECK_CONTAINS(st_errmsg(), "1 of 2");
  CHECK(access(p, F_OK) != 0 && access(tpath_("stream.safetensors.tmp"), F_OK) != 0);
  CHECK_EQ_INT(sft_writer_open(p, t, 2, SFT_BF16, &w), 0);
  sft_writer_abort(w);
  CHECK(access(tpath_("stream.safetensors.tmp"), F_OK) != 0);
  CHECK_EQ_INT(sft_writer_open(p, t, 2, SFT_I32, &w), ST_EINPUT);
  CHECK(w == NULL);
  /* one tensor at a time gives the same file as all at once */
  CHECK_EQ_INT(sft_writer_open(p, t, 2, SFT_F16, &w), 0);
  CHECK_EQ_INT(sft_writer_put(w, a), 0);
  CHECK_EQ_INT(sft_writer_put(w, b), 0);
  CHECK_EQ_INT(sft_writer_put(w, b), ST_ERUNTIME);
  CHECK_EQ_INT(sft_writer_close(w), 0);
  t[0].data = a, t[1].data = b;
  char *q = tpath_("whole.safetensors");
  CHECK_EQ_INT(sft_write_f32(q, t, 2, SFT_F16), 0);
  FILE *f1 = fopen(p, "rb"), *f2 = fopen(q, "rb");
  char x1[256], x2[256];
  size_t n1 = f1 ? fread(x1, 1, sizeof x1, f1) : 0, n2 = f2 ? fread(x2, 1, sizeof x2, f2) : 1;
  CHECK(n1 == n2 && n1 > 8 && memcmp(x1, x2, n1) == 0);
  if (f1) fclose(f1);
  if (f2) fclose(f2);
}

static void test_sharded(void) {
  char *dir = tpath_("sharded");
  mkdir(dir, 0755);
  float a[4] = {1, 2, 3, 4}, b[2] = {5, 6};
  sft_out_tensor ta = {"x.a", 2, {2, 2}, a}, tb = {"x.b", 1, {2}, b};
  char *p1 = xasprintf("%s/m-1.safetensors", dir), *p2 = xasprintf("%s/m-2.safetensors", dir);
  char *idx = xasprintf("%s/model.safetensors.index.json", dir);
  CHECK_EQ_INT(sft_write_f32(p1, &ta, 1, SFT_F32), 0);
  CHECK_EQ_INT(sft_write_f32(p2, &tb, 1, SFT_BF16), 0);
  write_text_(idx,
              "{\"metadata\": {\"total_size\": 20}, \"weight_map\": "
              "{\"x.a\": \"m-1.safetensors\", \"x.b\": \"m-2.safetensors\"}}");
  sft_model m;
  int rc = sft_open(dir, &m);
  CHECK_MSG(rc == 0, "%s", st_errmsg());
  if (!rc) {
    CHECK_EQ_INT(m.nfiles, 2);
    CHECK_EQ_INT(m.n, 2);
    const sft_tensor *t = sft_find(&m, "x.b");
    float out[2] = {0};
    CHECK(t && sft_read_f32(&m, t, 0, 2, out) == 0 && out[0] == 5 && out[1] == 6);
    CHECK(t && strstr(m.paths[t->file], "m-2.safetensors"));
    sft_close(&m);
  }
  /* the index names a file that is missing */
  write_text_(idx,
              "{\"weight_map\": {\"x.a\": \"m-1.safetensors\", \"x.b\": \"m-3.safetensors\"}}");
  expect_bad_(dir, "m-3.safetensors", "'x.b'");
  /* the index names a tensor the file lacks */
  write_text_(idx,
              "{\"weight_map\": {\"x.a\": \"m-1.safetensors\", \"x.c\": \"m-2.safetensors\"}}");
  expect_bad_(dir, "'x.c'", "does not contain it");
  /* the index puts a tensor in the wrong file */
  write_text_(idx,
              "{\"weight_map\": {\"x.a\": \"m-2.safetensors\", \"x.b\": \"m-2.safetensors\"}}");
  expect_bad_(dir, "'x.a'", "m-2.safetensors does not contain it");
  /* a tensor stored in two shards */
  CHECK_EQ_INT(sft_write_f32(p2, (sft_out_tensor[]){ta, tb}, 2, SFT_F32), 0);
  write_text_(idx,
              "{\"weight_map\": {\"x.a\": \"m-1.safetensors\", \"x.b\": \"m-2.safetensors\"}}");
  expect_bad_(dir, "'x.a'", "twice");
  /* bad index JSON, weight_map missing, path escaping the directory */
  write_text_(idx, "{\"weight_map\": ");
  expect_bad_(dir, idx, "invalid JSON");
  write_text_(idx, "{\"metadata\": {}}");
  expect_bad_(dir, idx, "weight_map");
  write_text_(idx, "{\"weight_map\": {\"x.a\": \"../m-1.safetensors\"}}");
  expect_bad_(dir, idx, "'x.a'");
  free(p1);
  free(p2);
  free(idx);
}

/* Non-finite numbers are bad input in every stored float dtype and every kind (NaN, +Inf,
 * -Inf), wherever they are: sft_check_finite names file, tensor, multi-index, dtype and
 * value, and checks exactly the range that was read (an index past `first` is counted from
 * the tensor's start). */
static void test_nonfinite_read(void) {
  float a[12];
  for (int i = 0; i < 12; i++) a[i] = 0.25f * (float)(i - 6);
  sft_out_tensor t = {"w.weight", 2, {3, 4}, a};
  static const sft_dtype dts[] = {SFT_F32, SFT_BF16, SFT_F16};
  static const uint64_t at[] = {0, 6, 11}; /* first, middle ([1, 2]), last element */
  static const char *const at_s[] = {"[0, 0]", "[1, 2]", "[2, 3]"};
  for (int d = 0; d < 3; d++)
    for (int k = 0; k < BAD_NKINDS; k++)
      for (int w = 0; w < 3; w++) {
        char *p = tpath_("bad.safetensors");
        CHECK_EQ_INT(sft_write_f32(p, &t, 1, dts[d]), 0);
        CHECK_EQ_INT(patch_nonfinite_(p, "w.weight", at[w], (bad_kind)k), 0);
        sft_model m;
        CHECK_EQ_INT(sft_open(p, &m), 0);
        const sft_tensor *st = sft_find(&m, "w.weight");
        float out[12];
        CHECK(st && sft_read_f32(&m, st, 0, 12, out) == 0);
        if (!st) continue;
        CHECK_MSG(sft_check_finite(&m, st, 0, out, 12) == ST_EINPUT, "%s %s at %d",
                  sft_dtype_name(dts[d]), bad_kind_name_[k], (int)at[w]);
        const char *e = st_errmsg();
        CHECK_CONTAINS(e, p);
        CHECK_CONTAINS(e, "'w.weight'");
        CHECK_CONTAINS(e, bad_kind_name_[k]);
        CHECK_CONTAINS(e, at_s[w]);
        CHECK_CONTAINS(e, sft_dtype_name(dts[d]));
        /* a range read after the bad element is clean; one that holds it names the same
         * index (counted from the tensor's start, not the range's) */
        if (at[w] < 11) CHECK_EQ_INT(sft_check_finite(&m, st, at[w] + 1, out + at[w] + 1, 11 - at[w]), 0);
        if (at[w] >= 1) {
          CHECK_EQ_INT(sft_check_finite(&m, st, 1, out + 1, 11), ST_EINPUT);
          CHECK_CONTAINS(st_errmsg(), at_s[w]);
        }
        sft_close(&m);
      }
  /* finite extremes are fine: FLT_MAX, the smallest subnormal, -0 */
  float ok[3] = {3.4028235e38f, 1.4e-45f, -0.0f};
  sft_tensor fake = {.name = "x", .dtype = SFT_F32, .ndim = 1, .shape = {3}, .numel = 3};
  sft_model one = {.nfiles = 1, .paths = (char *[]){"x.safetensors"}};
  CHECK_EQ_INT(sft_check_finite(&one, &fake, 0, ok, 3), 0);
}

/* The writers never put a NaN or an infinity into a file, nor a finite value the target dtype
 * turns into one; the refusal names the tensor and index and leaves no file behind. */
static void test_nonfinite_write(void) {
  float a[4] = {1, 2, 3, 4}, b[6] = {0, 0, 0, 0, 0, 0};
  sft_out_tensor t[2] = {{"a", 1, {4}, a}, {"b", 2, {2, 3}, b}};
  char *p = tpath_("refused.safetensors"), *tmp = tpath_("refused.safetensors.tmp");
  static const sft_dtype dts[] = {SFT_F32, SFT_BF16, SFT_F16};
  const float bad[3] = {NAN, INFINITY, -INFINITY};
  for (int d = 0; d < 3; d++)
    for (int k = 0; k < 3; k++) {
      b[5] = bad[k];
      CHECK_EQ_INT(sft_write_f32(p, t, 2, dts[d]), ST_ERUNTIME);
      CHECK_CONTAINS(st_errmsg(), "'b'");
      CHECK_CONTAINS(st_errmsg(), "[1, 2]");
      CHECK_CONTAINS(st_errmsg(), bad_kind_name_[k]);
      CHECK(access(p, F_OK) != 0 && access(tmp, F_OK) != 0);
    }
  /* finite, but infinite once converted */
  b[5] = 70000.0f; /* F16 max 65504 */
  CHECK_EQ_INT(sft_write_f32(p, t, 2, SFT_F16), ST_ERUNTIME);
  CHECK_CONTAINS(st_errmsg(), "infinite in F16");
  CHECK(access(p, F_OK) != 0 && access(tmp, F_OK) != 0);
  CHECK_EQ_INT(sft_write_f32(p, t, 2, SFT_BF16), 0); /* fine in BF16 */
  b[5] = 3.4028235e38f; /* rounds up to infinity in BF16 */
  CHECK_EQ_INT(sft_write_f32(p, t, 2, SFT_BF16), ST_ERUNTIME);
  CHECK_CONTAINS(st_errmsg(), "infinite in BF16");
  CHECK_EQ_INT(sft_write_f32(p, t, 2, SFT_F32), 0);
  /* the streaming writer: a refused put, then abort, leaves nothing */
  remove(p);
  sft_writer *w;
  b[5] = NAN;
  CHECK_EQ_INT(sft_writer_open(p, t, 2, SFT_F32, &w), 0);
  CHECK_EQ_INT(sft_writer_put(w, a), 0);
  CHECK_EQ_INT(sft_writer_put(w, b), ST_ERUNTIME);
  sft_writer_abort(w);
  CHECK(access(p, F_OK) != 0 && access(tmp, F_OK) != 0);
}

static int rm_(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  return remove(path);
}

int main(void) {
  const char *tmp = getenv("TEST_TMP");
  snprintf(tmpdir_, sizeof tmpdir_, "%s/safetensors.%d", tmp ? tmp : "/tmp", (int)getpid());
  mkdir(tmpdir_, 0755);
  test_conversions();
  test_roundtrip();
  test_bad_inputs();
  test_writer();
  test_sharded();
  test_nonfinite_read();
  test_nonfinite_write();
  nftw(tmpdir_, rm_, 16, FTW_DEPTH | FTW_PHYS);
  return test_done();
}
