/* The GGUF reader (io/gguf.c) on images built here: a valid file with metadata of every
 * kind (strings, arrays of strings and integers, floats, bools, general.alignment) and
 * tensors of two types, read back through the getters; then every way a header can be
 * wrong — each truncation of the file, bad magic, versions 1 and 4, a big-endian file,
 * lying counts, string lengths and array lengths, unknown value and tensor types, bad
 * dimensions, rows that are not whole blocks, offsets misaligned, past the end or
 * overlapping, duplicate keys and names, a bad alignment, a bool that is not 0/1, nested
 * arrays, NUL bytes in a key: each an ST_EINPUT error naming what is wrong, never a crash
 * (and clean under ASan: asan.gguf). Also gguf_open on files (missing, empty, a directory). */
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/gguf.h"
#include "io/gguf_import.h"
#include "test.h"
#include "util/err.h"

typedef struct {
  uint8_t *p;
  size_t n, cap;
} buf_;

static void put_(buf_ *b, const void *x, size_t n) {
  if (b->n + n > b->cap) {
    b->cap = (b->n + n) * 2 + 64;
    b->p = realloc(b->p, b->cap);
  }
  memcpy(b->p + b->n, x, n);
  b->n += n;
}
static void u32_(buf_ *b, uint32_t v) {
  uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
  put_(b, x, 4);
}
static void u64_(buf_ *b, uint64_t v) {
  u32_(b, (uint32_t)v);
  u32_(b, (uint32_t)(v >> 32));
}
static void str_(buf_ *b, const char *s) {
  u64_(b, strlen(s));
  put_(b, s, strlen(s));
}

/* What to spoil in the image. */
typedef enum {
  OK, BAD_MAGIC, V1, V4, BIG_END, LIE_NKV, LIE_NT, LIE_KEYLEN, LIE_ARRLEN, LIE_STRLEN_IN_ARR,
  BAD_VTYPE, BAD_ELTYPE, NESTED, BAD_BOOL, NUL_KEY, DUP_KEY, ALIGN0, ALIGN3, ALIGN_TYPE, ALIGN64,
  NDIM0, NDIM5, DIM0, NUMEL_OVF, BAD_TTYPE, PARTIAL_BLOCK, MISALIGNED, PAST_END, OVERLAP,
  DUP_TENSOR, N_CASES
} spoil_;

/* metadata: general.architecture = "llama", tokenizer.ggml.tokens = ["a", "bc", ""],
 * tokenizer.ggml.token_type = i32 [1, 3, 6], llama.rope.freq_base = f32 10000.5,
 * tokenizer.ggml.add_bos_token = true, llama.block_count = u32 7, (general.alignment);
 * tensors: a F32 [4, 2] at 0, b Q8_0 [32] at 32 (alignment 32) or 64 */
static buf_ build_(spoil_ s) {
  buf_ b = {0};
  put_(&b, s == BAD_MAGIC ? "GGUG" : "GGUF", 4);
  u32_(&b, s == V1 ? 1 : s == V4 ? 4 : s == BIG_END ? 0x03000000u : 3);
  const int with_align = s == ALIGN0 || s == ALIGN3 || s == ALIGN_TYPE || s == ALIGN64;
  u64_(&b, s == LIE_NT ? 1000000000ULL : 2);
  u64_(&b, s == LIE_NKV ? (1ULL << 40) : (uint64_t)(6 + with_align + (s == DUP_KEY)));
  if (s == LIE_KEYLEN) {
    u64_(&b, 1ULL << 62);
  } else {
    str_(&b, s == NUL_KEY ? "general.arch" : "general.architecture");
    if (s == NUL_KEY) b.p[b.n - 4] = 0;
  }
  u32_(&b, s == BAD_VTYPE ? 13 : 8);
  str_(&b, "llama");
  str_(&b, "tokenizer.ggml.tokens");
  u32_(&b, 9);
  u32_(&b, s == BAD_ELTYPE ? 77 : s == NESTED ? 9 : 8);
  u64_(&b, s == LIE_ARRLEN ? (1ULL << 61) : 3);
  str_(&b, "a");
  if (s == LIE_STRLEN_IN_ARR) {
    u64_(&b, 1ULL << 50);
  } else {
    str_(&b, "bc");
  }
  str_(&b, "");
  str_(&b, "tokenizer.ggml.token_type");
  u32_(&b, 9);
  u32_(&b, 5);
  u64_(&b, 3);
  u32_(&b, 1);
  u32_(&b, 3);
  u32_(&b, 6);
  str_(&b, "llama.rope.freq_base");
  u32_(&b, 6);
  float f = 10000.5f;
  uint32_t fb;
  memcpy(&fb, &f, 4);
  u32_(&b, fb);
  str_(&b, "tokenizer.ggml.add_bos_token");
  u32_(&b, 7);
  uint8_t one = s == BAD_BOOL ? 2 : 1;
  put_(&b, &one, 1);
  str_(&b, "llama.block_count");
  u32_(&b, 4);
  u32_(&b, 7);
  if (s == DUP_KEY) {
    str_(&b, "llama.block_count");
    u32_(&b, 4);
    u32_(&b, 8);
  }
  if (with_align) {
    str_(&b, "general.alignment");
    u32_(&b, s == ALIGN_TYPE ? 10 : 4);
    if (s == ALIGN_TYPE)
      u64_(&b, 32);
    else
      u32_(&b, s == ALIGN0 ? 0 : s == ALIGN3 ? 3 : 64);
  }
  const uint64_t align = s == ALIGN64 ? 64 : 32;
  /* tensor a */
  str_(&b, "a");
  u32_(&b, s == NDIM0 ? 0 : s == NDIM5 ? 5 : 2);
  if (s == NUMEL_OVF) {
    u64_(&b, 1ULL << 32);
    u64_(&b, 1ULL << 32);
  } else {
    u64_(&b, 4);
    u64_(&b, s == DIM0 ? 0 : 2);
  }
  if (s == NDIM5) {
    u64_(&b, 1);
    u64_(&b, 1);
    u64_(&b, 1);
  }
  u32_(&b, s == BAD_TTYPE ? 4 : 0);
  u64_(&b, 0);
  /* tensor b */
  str_(&b, s == DUP_TENSOR ? "a" : "b");
  u32_(&b, 1);
  u64_(&b, s == PARTIAL_BLOCK ? 16 : 32);
  u32_(&b, 8);
  u64_(&b, s == MISALIGNED ? 36 : s == PAST_END ? 64 : s == OVERLAP ? 0 : align);
  while (b.n % align) put_(&b, "", 1);
  for (int i = 0; i < 8; i++) { /* a = 0, 1, ..., 7 */
    float v = (float)i;
    memcpy(&fb, &v, 4);
    u32_(&b, fb);
  }
  while (b.n % align) put_(&b, "", 1);
  uint8_t q8[34] = {0x00, 0x3c}; /* d = 1.0 (f16), qs = 0..31 */
  for (int i = 0; i < 32; i++) q8[2 + i] = (uint8_t)i;
  put_(&b, q8, sizeof q8);
  return b;
}

static const char *expect_[N_CASES] = {
    [BAD_MAGIC] = "not a GGUF file",
    [V1] = "version 1",
    [V4] = "GGUF version 4 (expected 2 or 3)",
    [BIG_END] = "big-endian",
    [LIE_NKV] = "metadata entries",
    [LIE_NT] = "1000000000 tensors",
    [LIE_KEYLEN] = "the key of metadata entry 0",
    [LIE_ARRLEN] = "'tokenizer.ggml.tokens': 2305843009213693952 strings cannot fit",
    [LIE_STRLEN_IN_ARR] = "string 1 of metadata key 'tokenizer.ggml.tokens'",
    [BAD_VTYPE] = "'general.architecture': unknown value type 13",
    [BAD_ELTYPE] = "unknown array element type 77",
    [NESTED] = "arrays of arrays",
    [BAD_BOOL] = "a bool must be 0 or 1, found 2",
    [NUL_KEY] = "contains a NUL byte",
    [DUP_KEY] = "metadata key 'llama.block_count' appears twice",
    [ALIGN0] = "general.alignment is 0",
    [ALIGN3] = "general.alignment is 3",
    [ALIGN_TYPE] = "general.alignment: expected a u32, found u64",
    [NDIM0] = "tensor 'a': 0 dimensions",
    [NDIM5] = "tensor 'a': 5 dimensions",
    [DIM0] = "tensor 'a': dimension 1 is 0",
    [NUMEL_OVF] = "tensor 'a': dimension 1 is 4294967296",
    [BAD_TTYPE] = "tensor 'a': unknown ggml type 4",
    [PARTIAL_BLOCK] = "tensor 'b' (Q8_0): its rows of 16 elements are not a whole number of 32",
    [MISALIGNED] = "tensor 'b': data offset 36 is not a multiple of the alignment 32",
    [PAST_END] = "tensor 'b': its 34 bytes at data offset 64",
    [OVERLAP] = "tensors 'a' and 'b' overlap",
    [DUP_TENSOR] = "tensor 'a' appears twice",
};

static void check_valid_(spoil_ s) {
  buf_ b = build_(s);
  gguf_file g;
  int rc = gguf_parse_memory("ok.gguf", b.p, b.n, &g);
  CHECK_MSG(rc == 0, "%s", st_errmsg());
  if (rc) {
    free(b.p);
    return;
  }
  CHECK_EQ_INT(g.version, 3);
  CHECK_EQ_INT(g.alignment, s == ALIGN64 ? 64 : 32);
  CHECK_EQ_INT(g.n_kv, s == ALIGN64 ? 7 : 6);
  CHECK_EQ_INT(g.n_tensors, 2);
  char *arch = NULL;
  CHECK_EQ_INT(gguf_get_str(&g, "general.architecture", &arch, NULL), 0);
  CHECK_STR_EQ(arch, "llama");
  free(arch);
  const gguf_kv *toks, *types;
  CHECK_EQ_INT(gguf_get_arr(&g, "tokenizer.ggml.tokens", GGUF_T_STRING, &toks, NULL), 0);
  CHECK_EQ_INT(toks->n, 3);
  CHECK(toks->strs[1].len == 2 && memcmp(toks->strs[1].s, "bc", 2) == 0 && toks->strs[2].len == 0);
  CHECK_EQ_INT(gguf_get_arr(&g, "tokenizer.ggml.token_type", GGUF_T_I32, &types, NULL), 0);
  CHECK_EQ_INT(gguf_arr_int(types, 1), 3);
  double d;
  CHECK_EQ_INT(gguf_get_float(&g, "llama.rope.freq_base", &d, NULL), 0);
  CHECK(d == 10000.5);
  int bo, found = 1;
  CHECK_EQ_INT(gguf_get_bool(&g, "tokenizer.ggml.add_bos_token", &bo, NULL), 0);
  CHECK_EQ_INT(bo, 1);
  int64_t bc;
  CHECK_EQ_INT(gguf_get_int(&g, "llama.block_count", &bc, NULL), 0);
  CHECK_EQ_INT(bc, 7);
  CHECK_EQ_INT(gguf_get_int(&g, "llama.missing", &bc, &found), 0);
  CHECK_EQ_INT(found, 0);
  /* wrong types and missing required keys are named */
  CHECK_EQ_INT(gguf_get_int(&g, "general.architecture", &bc, NULL), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "'general.architecture': expected an integer, found string");
  CHECK_EQ_INT(gguf_get_str(&g, "tokenizer.ggml.tokens", &arch, NULL), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "expected a string, found an array");
  CHECK_EQ_INT(gguf_get_arr(&g, "tokenizer.ggml.token_type", GGUF_T_STRING, &toks, NULL), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "expected an array of string, found an array of i32");
  CHECK_EQ_INT(gguf_get_int(&g, "llama.missing", &bc, NULL), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "ok.gguf: missing metadata key 'llama.missing'");
  const gguf_tensor *a = gguf_find_tensor(&g, "a"), *t = gguf_find_tensor(&g, "b");
  CHECK(a && t && !gguf_find_tensor(&g, "c"));
  if (a && t) {
    CHECK(a->n_dims == 2 && a->ne[0] == 4 && a->ne[1] == 2 && a->numel == 8 && a->bytes == 32);
    CHECK(t->type == 8 && t->bytes == 34 && t->offset == g.alignment);
    CHECK_EQ_INT(a->data - b.p, g.data_offset);
    float v;
    memcpy(&v, a->data + 4 * 5, 4);
    CHECK(v == 5.0f);
    CHECK(t->data[0] == 0x00 && t->data[1] == 0x3c && t->data[2 + 31] == 31);
  }
  gguf_close(&g);
  st_clear_error();
  free(b.p);
}

int main(void) {
  check_valid_(OK);
  check_valid_(ALIGN64);

  /* every truncation of the valid file is an error, naming the file */
  buf_ ok = build_(OK);
  int trunc_ok = 1;
  for (size_t n = 0; n < ok.n; n++) {
    uint8_t *cut = malloc(n + 1); /* its own allocation: ASan sees any read past n */
    memcpy(cut, ok.p, n);
    gguf_file g;
    int rc = gguf_parse_memory("cut.gguf", cut, n, &g);
    if (rc != ST_EINPUT || !strstr(st_errmsg(), "cut.gguf")) {
      fprintf(stderr, "truncated at %zu: rc %d: %s\n", n, rc, st_errmsg());
      trunc_ok = 0;
    }
    if (!rc) gguf_close(&g);
    free(cut);
  }
  CHECK_MSG(trunc_ok, "every truncation of the %zu-byte file must be an error", ok.n);
  gguf_file g;
  CHECK_EQ_INT(gguf_parse_memory("cut.gguf", ok.p, 100, &g), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "truncated");
  free(ok.p);

  for (int s = BAD_MAGIC; s < N_CASES; s++) {
    if (s == ALIGN64) continue;
    buf_ b = build_((spoil_)s);
    uint8_t *img = malloc(b.n);
    memcpy(img, b.p, b.n);
    int rc = gguf_parse_memory("bad.gguf", img, b.n, &g);
    CHECK_MSG(rc == ST_EINPUT, "case %d: rc %d", s, rc);
    CHECK_MSG(strstr(st_errmsg(), "bad.gguf") && strstr(st_errmsg(), expect_[s]),
              "case %d: \"%s\" does not say \"%s\"", s, st_errmsg(), expect_[s]);
    CHECK(g.n_kv == 0 && g.n_tensors == 0 && g.kv == NULL); /* nothing left behind */
    if (!rc) gguf_close(&g);
    free(img);
    free(b.p);
  }

  /* files */
  const char *tmp = getenv("TEST_TMP") ? getenv("TEST_TMP") : "/tmp";
  char path[512];
  snprintf(path, sizeof path, "%s/test_gguf.%d.gguf", tmp, (int)getpid());
  CHECK_EQ_INT(gguf_open(path, &g), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "no such file");
  FILE *f = fopen(path, "wb");
  fclose(f);
  CHECK_EQ_INT(gguf_open(path, &g), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "empty file");
  buf_ b = build_(OK);
  f = fopen(path, "wb");
  fwrite(b.p, 1, b.n, f);
  fclose(f);
  free(b.p);
  CHECK_EQ_INT(gguf_open(path, &g), 0);
  CHECK(g.mapped && g.n_tensors == 2);
  gguf_close(&g);
  remove(path);
  CHECK_EQ_INT(gguf_open(tmp, &g), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "is a directory");

  /* llama.cpp's q/k row order: within each head, HF rows (i*D/2 + j) stored at 2j + i */
  float w[2 * 8 * 3], want[2 * 8 * 3];
  for (int h = 0; h < 2; h++)
    for (int r = 0; r < 8; r++)
      for (int c = 0; c < 3; c++) {
        const int i = r / 4, j = r % 4; /* HF row r = i*4 + j */
        want[(h * 8 + r) * 3 + c] = (float)(100 * h + 10 * r + c);
        w[(h * 8 + 2 * j + i) * 3 + c] = (float)(100 * h + 10 * r + c);
      }
  gguf_unpermute_rows(w, 2, 16, 3);
  CHECK(memcmp(w, want, sizeof w) == 0);
  st_clear_error();
  return test_done();
}
