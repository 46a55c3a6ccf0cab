/* Token data: llm.c .bin shards, JSONL records, text as bytes; samples, views, order. */
#include "io/data.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/err.h"
#include "util/fs.h"
#include "util/rng.h"

#define BIN_HEADER_INTS 256
#define BIN_MAGIC_U16 20240520
#define BIN_MAGIC_U32 20240801
#define BIN_VERSION_U16 1
#define BIN_VERSION_U32 7

typedef struct {
  char *path;
  job_data_format kind; /* DATA_BIN, DATA_TEXT or DATA_JSONL (never AUTO) */
  /* streams: the mapping and the token array inside it */
  void *map;
  size_t map_bytes;
  const unsigned char *tokens; /* first token */
  int tok_bytes;               /* 1 (text), 2 or 4 (bin) */
  uint64_t n_tokens;
  /* jsonl: records [first_rec, first_rec + n_samples) of the source's pool */
  uint64_t first_rec;
  uint64_t n_samples;    /* samples this file contributes */
  uint64_t first_sample; /* index of its first sample in the source */
} dfile_;

struct data_source {
  int64_t T;
  int n_files;
  dfile_ *files;
  uint64_t n_samples, n_tokens, n_truncated;
  int64_t max_token;
  /* JSONL record pool: record r has len[r] tokens at ids + off[r] (labels likewise) */
  uint64_t n_recs, cap_recs;
  uint64_t *off;
  int32_t *len;
  int32_t *ids, *labels;
  uint64_t n_pool, cap_pool;
};

/* ---- format detection ------------------------------------------------------------ */
static int ends_with_(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Extensions that are surely not token data nor plain text: reading them as bytes would
 * train on garbage without a word, so "auto" refuses them. */
static const char *const not_text_[] = {".json", ".parquet", ".arrow",       ".gz",
                                        ".bz2",  ".xz",      ".zst",         ".zip",
                                        ".tar",  ".npy",     ".safetensors", ".pt"};

static int kind_of_(const char *path, job_data_format fmt, job_data_format *kind) {
  if (fmt != DATA_AUTO) return *kind = fmt, 0;
  if (ends_with_(path, ".bin")) return *kind = DATA_BIN, 0;
  if (ends_with_(path, ".jsonl")) return *kind = DATA_JSONL, 0;
  for (size_t i = 0; i < sizeof not_text_ / sizeof not_text_[0]; i++)
    if (ends_with_(path, not_text_[i]))
      return st_fail(ST_EINPUT,
                     "%s: '%s' files are not token data: expected .bin (llm.c "
                     "shards), .jsonl (input_ids per line) or plain text; pre-tokenize it, or "
                     "set data.format: text to read it as bytes anyway",
                     path, not_text_[i]);
  return *kind = DATA_TEXT, 0;
}

static uint32_t token_at_(const dfile_ *f, uint64_t i) {
  const unsigned char *p = f->tokens + i * (uint64_t)f->tok_bytes;
  if (f->tok_bytes == 1) return p[0];
  if (f->tok_bytes == 2) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
  }
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

static int map_file_(dfile_ *f) {
  int fd = open(f->path, O_RDONLY);
  if (fd < 0) return st_fail(ST_EINPUT, "%s: cannot open token file: %s", f->path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return st_fail(ST_EINPUT, "%s: cannot stat token file: %s", f->path, strerror(e));
  }
  f->map_bytes = (size_t)st.st_size;
  if (f->map_bytes > 0) {
    f->map = mmap(NULL, f->map_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
    if (f->map == MAP_FAILED) {
      int e = errno;
      f->map = NULL;
      close(fd);
      return st_fail(ST_ERUNTIME, "%s: cannot map %zu bytes: %s", f->path, f->map_bytes,
                     strerror(e));
    }
  }
  close(fd);
  return 0;
}

/* Check every token of a stream against the vocabulary; record the largest. */
static int check_stream_(data_source *s, dfile_ *f, int64_t vocab) {
  uint32_t mx = 0;
  for (uint64_t i = 0; i < f->n_tokens; i++) {
    uint32_t t = token_at_(f, i);
    if (t > mx) mx = t;
  }
  if (vocab > 0 && (int64_t)mx >= vocab) {
    for (uint64_t i = 0; i < f->n_tokens; i++) {
      uint32_t t = token_at_(f, i);
      if ((int64_t)t >= vocab)
        return st_fail(
            ST_EINPUT,
            "%s: token %llu (0-based, %s offset %llu) is %u: expected "
            "an id below the vocabulary size %lld",
            f->path, (unsigned long long)i, f->kind == DATA_TEXT ? "byte" : "file byte",
            (unsigned long long)((const unsigned char *)f->tokens - (const unsigned char *)f->map +
                                 i * (uint64_t)f->tok_bytes),
            t, (long long)vocab);
    }
  }
  if ((int64_t)mx > s->max_token) s->max_token = (int64_t)mx;
  return 0;
}

static int open_bin_(dfile_ *f) {
  const size_t hdr_bytes = BIN_HEADER_INTS * sizeof(int32_t);
  if (f->map_bytes < hdr_bytes)
    return st_fail(ST_EINPUT,
                   "%s: llm.c token shard too short: expected a %zu-byte header, "
                   "found %zu bytes in the file",
                   f->path, hdr_bytes, f->map_bytes);
  int32_t hdr[3];
  memcpy(hdr, f->map, sizeof hdr);
  if (hdr[0] == BIN_MAGIC_U16) {
    f->tok_bytes = 2;
    if (hdr[1] != BIN_VERSION_U16)
      return st_fail(ST_EINPUT, "%s: llm.c shard with magic %d: expected version %d, found %d",
                     f->path, hdr[0], BIN_VERSION_U16, hdr[1]);
  } else if (hdr[0] == BIN_MAGIC_U32) {
    f->tok_bytes = 4;
    if (hdr[1] != BIN_VERSION_U32)
      return st_fail(ST_EINPUT, "%s: llm.c shard with magic %d: expected version %d, found %d",
                     f->path, hdr[0], BIN_VERSION_U32, hdr[1]);
  } else {
    return st_fail(ST_EINPUT,
                   "%s: not an llm.c token shard: expected magic %d (uint16 tokens) "
                   "or %d (uint32 tokens), found %d (for text data use another extension "
                   "than .bin, or data.format: text)",
                   f->path, BIN_MAGIC_U16, BIN_MAGIC_U32, hdr[0]);
  }
  if (hdr[2] < 0)
    return st_fail(ST_EINPUT, "%s: header token count is negative (%d)", f->path, hdr[2]);
  uint64_t want = hdr_bytes + (uint64_t)hdr[2] * (uint64_t)f->tok_bytes;
  if (want != f->map_bytes)
    return st_fail(ST_EINPUT,
                   "%s: header says %d tokens of %d bytes, so the file should have "
                   "%llu bytes; found %zu",
                   f->path, hdr[2], f->tok_bytes, (unsigned long long)want, f->map_bytes);
  f->tokens = (const unsigned char *)f->map + hdr_bytes;
  f->n_tokens = (uint64_t)hdr[2];
  return 0;
}

/* ---- JSONL ----------------------------------------------------------------------- */
static void pool_reserve_(data_source *s, uint64_t more) {
  if (s->n_pool + more > s->cap_pool) {
    s->cap_pool = (s->n_pool + more) * 2;
    s->ids = xrealloc(s->ids, s->cap_pool * sizeof *s->ids);
    s->labels = xrealloc(s->labels, s->cap_pool * sizeof *s->labels);
  }
  if (s->n_recs + 1 >= s->cap_recs) {
    s->cap_recs = s->cap_recs ? s->cap_recs * 2 : 64;
    s->off = xrealloc(s->off, s->cap_recs * sizeof *s->off);
    s->len = xrealloc(s->len, s->cap_recs * sizeof *s->len);
  }
}

/* Read the integer array `key` of record `o` into dst (at most `keep` values; `n` gets
 * the full length). Labels may be -100. */
static int json_ints_(const char *path, long line, json_t *arr, const char *key, int labels,
                      int64_t vocab, int32_t *dst, size_t keep, size_t *n, int64_t *mx) {
  if (!json_is_array(arr))
    return st_fail(ST_EINPUT, "%s:%ld: '%s': expected an array of token ids", path, line, key);
  *n = json_array_size(arr);
  for (size_t i = 0; i < *n; i++) {
    json_t *v = json_array_get(arr, i);
    if (!json_is_integer(v))
      return st_fail(ST_EINPUT, "%s:%ld: %s[%zu]: expected an integer token id, found %s", path,
                     line, key, i, json_is_real(v) ? "a real number" : "a non-number");
    json_int_t t = json_integer_value(v);
    if (labels && t == DATA_IGNORE_INDEX) {
      if (i < keep) dst[i] = DATA_IGNORE_INDEX;
      continue;
    }
    if (t < 0 || (vocab > 0 && t >= vocab) || t > INT32_MAX) {
      if (vocab > 0)
        return st_fail(ST_EINPUT, "%s:%ld: %s[%zu] is %lld: expected an id in [0, %lld)%s", path,
                       line, key, i, (long long)t, (long long)vocab, labels ? " or -100" : "");
      return st_fail(ST_EINPUT, "%s:%ld: %s[%zu] is %lld: expected a non-negative id%s", path, line,
                     key, i, (long long)t, labels ? " or -100" : "");
    }
    if (t > *mx) *mx = t;
    if (i < keep) dst[i] = (int32_t)t;
  }
  return 0;
}

static int open_jsonl_(data_source *s, dfile_ *f, int64_t vocab) {
  FILE *fp = fopen(f->path, "rb");
  if (!fp) return st_fail(ST_EINPUT, "%s: cannot open token file: %s", f->path, strerror(errno));
  char *buf = NULL;
  size_t cap = 0;
  ssize_t got;
  long line = 0;
  uint64_t truncated = 0;
  int rc = 0;
  f->first_rec = s->n_recs;
  const size_t T = (size_t)s->T;
  while (!rc && (got = getline(&buf, &cap, fp)) >= 0) {
    line++;
    size_t k = 0;
    while (k < (size_t)got && (buf[k] == ' ' || buf[k] == '\t' || buf[k] == '\r' || buf[k] == '\n'))
      k++;
    if (k == (size_t)got) continue; /* blank line */
    json_error_t jerr;
    json_t *o = json_loadb(buf, (size_t)got, 0, &jerr);
    if (!o) {
      rc = st_fail(ST_EINPUT, "%s:%ld: not valid JSON: %s (column %d)", f->path, line, jerr.text,
                   jerr.column);
      break;
    }
    json_t *ids = json_object_get(o, "input_ids"), *lab = json_object_get(o, "labels");
    if (!json_is_object(o) || !ids) {
      rc = st_fail(ST_EINPUT,
                   "%s:%ld: expected a JSON object with \"input_ids\" (pre-tokenized "
                   "data; optional \"labels\" with -100 for tokens not trained on)",
                   f->path, line);
      json_decref(o);
      break;
    }
    size_t n_ids = json_is_array(ids) ? json_array_size(ids) : 0, n_lab = 0;
    size_t keep = n_ids < T ? n_ids : T;
    pool_reserve_(s, keep);
    int32_t *di = s->ids + s->n_pool, *dl = s->labels + s->n_pool;
    rc = json_ints_(f->path, line, ids, "input_ids", 0, vocab, di, keep, &n_ids, &s->max_token);
    if (!rc && n_ids == 0)
      rc = st_fail(ST_EINPUT, "%s:%ld: input_ids is empty: expected at least one token", f->path,
                   line);
    if (!rc && lab && !json_is_null(lab)) {
      int64_t dummy = 0;
      rc = json_ints_(f->path, line, lab, "labels", 1, vocab, dl, keep, &n_lab, &dummy);
      if (!rc && n_lab != n_ids)
        rc = st_fail(ST_EINPUT,
                     "%s:%ld: labels has %zu entries: expected one per input_ids "
                     "entry (%zu)",
                     f->path, line, n_lab, n_ids);
    } else if (!rc) {
      memcpy(dl, di, keep * sizeof *dl); /* labels default to input_ids */
    }
    json_decref(o);
    if (rc) break;
    if (n_ids > T) truncated++;
    s->off[s->n_recs] = s->n_pool;
    s->len[s->n_recs] = (int32_t)keep;
    s->n_recs++;
    s->n_pool += keep;
    s->n_tokens += keep;
  }
  free(buf);
  if (!rc && ferror(fp)) rc = st_fail(ST_EINPUT, "%s: read error", f->path);
  fclose(fp);
  if (rc) return rc;
  f->n_samples = s->n_recs - f->first_rec;
  s->n_truncated += truncated;
  if (truncated)
    log_warn("%s: %llu of %llu records are longer than max_seq_length %lld and were truncated",
             f->path, (unsigned long long)truncated, (unsigned long long)f->n_samples,
             (long long)s->T);
  return 0;
}

/* ---- open / close ---------------------------------------------------------------- */
int data_open(const char *const *paths, int n_paths, job_data_format format, int64_t seq_len,
              int64_t vocab_size, data_source **out) {
  *out = NULL;
  if (n_paths < 1) return st_fail(ST_EINPUT, "data: no token files given");
  if (seq_len < 1)
    return st_fail(ST_EINPUT, "data: max_seq_length must be >= 1, found %lld", (long long)seq_len);
  data_source *s = xcalloc(1, sizeof *s);
  s->T = seq_len;
  s->files = xcalloc((size_t)n_paths, sizeof *s->files);
  s->n_files = n_paths;
  int rc = 0;
  for (int i = 0; i < n_paths && !rc; i++) {
    dfile_ *f = &s->files[i];
    f->path = xstrdup(paths[i]);
    f->first_sample = s->n_samples;
    rc = kind_of_(paths[i], format, &f->kind);
    if (!rc) /* a directory or a device would fail in mmap with an errno that says nothing */
      rc = fs_check_file(paths[i],
                         f->kind == DATA_JSONL ? "a JSONL file of token records "
                                                 "({\"input_ids\": [...]} per line)"
                         : f->kind == DATA_BIN ? "an llm.c .bin token shard"
                                               : "a text file (read as bytes) or a token file "
                                                 "(.bin shard, .jsonl records; data.format)",
                         f->kind != DATA_JSONL);
    if (rc) break;
    if (f->kind == DATA_TEXT && vocab_size > DATA_TEXT_VOCAB)
      log_warn(
          "%s: read as text, one token per byte (ids 0-255), for a vocabulary of %lld: "
          "only byte-level models understand that; pre-tokenize into .bin or .jsonl",
          f->path, (long long)vocab_size);
    if (f->kind == DATA_JSONL) {
      rc = open_jsonl_(s, f, vocab_size);
    } else {
      rc = map_file_(f);
      if (!rc && f->kind == DATA_BIN) rc = open_bin_(f);
      if (!rc && f->kind == DATA_TEXT) {
        f->tok_bytes = 1;
        f->tokens = f->map;
        f->n_tokens = f->map_bytes;
      }
      if (!rc) rc = check_stream_(s, f, vocab_size);
      if (!rc) {
        f->n_samples =
            f->n_tokens >= (uint64_t)seq_len + 1 ? (f->n_tokens - 1) / (uint64_t)seq_len : 0;
        s->n_tokens += f->n_tokens;
        if (f->n_samples == 0)
          log_warn("%s: %llu tokens, fewer than max_seq_length + 1 = %lld: no samples from it",
                   f->path, (unsigned long long)f->n_tokens, (long long)seq_len + 1);
      }
    }
    s->n_samples += f->n_samples;
  }
  if (!rc && s->n_samples == 0)
    rc = st_fail(ST_EINPUT,
                 "%s%s: no samples (a stream needs at least max_seq_length + 1 = "
                 "%lld tokens; a JSONL file at least one record)",
                 paths[0], n_paths > 1 ? " and the other files" : "", (long long)seq_len + 1);
  if (rc) {
    data_close(s);
    return rc;
  }
  *out = s;
  return 0;
}

void data_close(data_source *s) {
  if (!s) return;
  for (int i = 0; i < s->n_files; i++) {
    if (s->files[i].map) munmap(s->files[i].map, s->files[i].map_bytes);
    free(s->files[i].path);
  }
  free(s->files);
  free(s->off);
  free(s->len);
  free(s->ids);
  free(s->labels);
  free(s);
}

uint64_t data_num_samples(const data_source *s) { return s->n_samples; }
int64_t data_seq_len(const data_source *s) { return s->T; }
uint64_t data_num_tokens(const data_source *s) { return s->n_tokens; }
uint64_t data_num_truncated(const data_source *s) { return s->n_truncated; }
int64_t data_max_token(const data_source *s) { return s->max_token; }

/* ---- samples --------------------------------------------------------------------- */
static const dfile_ *file_of_(const data_source *s, uint64_t sample) {
  int lo = 0, hi = s->n_files - 1;
  while (lo < hi) { /* last file with first_sample <= sample and samples in it */
    int mid = (lo + hi + 1) / 2;
    if (s->files[mid].first_sample <= sample)
      lo = mid;
    else
      hi = mid - 1;
  }
  while (lo > 0 && s->files[lo].n_samples == 0) lo--;
  return &s->files[lo];
}

/* inputs[0..T), targets[0..T) of source sample i. */
static void fill_one_(const data_source *s, uint64_t i, int32_t *in, int32_t *tg) {
  const dfile_ *f = file_of_(s, i);
  const uint64_t T = (uint64_t)s->T, j = i - f->first_sample;
  if (f->kind == DATA_JSONL) {
    uint64_t r = f->first_rec + j;
    const int32_t *ids = s->ids + s->off[r], *lab = s->labels + s->off[r];
    uint64_t len = (uint64_t)s->len[r];
    for (uint64_t t = 0; t < T; t++) {
      in[t] = t < len ? ids[t] : 0;
      tg[t] = t + 1 < len ? lab[t + 1] : DATA_IGNORE_INDEX; /* HF: labels[..., 1:] */
    }
    return;
  }
  const uint64_t base = j * T;
  for (uint64_t t = 0; t < T; t++) {
    in[t] = (int32_t)token_at_(f, base + t);
    tg[t] = (int32_t)token_at_(f, base + t + 1);
  }
}

static uint64_t source_index_(const data_view *v, uint64_t i) { return v->index ? v->index[i] : i; }

void data_fill(const data_view *v, const uint64_t *samples, int n, int32_t *inputs,
               int32_t *targets) {
  const size_t T = (size_t)v->src->T;
  for (int b = 0; b < n; b++)
    fill_one_(v->src, source_index_(v, samples[b]), inputs + (size_t)b * T,
              targets + (size_t)b * T);
}

int data_trim(int32_t *inputs, int32_t *targets, int n, int T, int multiple) {
  int used = 0;
  for (int b = 0; b < n; b++)
    for (int t = T - 1; t >= used; t--)
      if (targets[(size_t)b * T + t] != DATA_IGNORE_INDEX) {
        used = t + 1;
        break;
      }
  if (multiple < 1) multiple = 1;
  int Tp = used < 1 ? 1 : used;
  Tp = (Tp + multiple - 1) / multiple * multiple;
  if (Tp > T) Tp = T;
  if (Tp == T) return T;
  for (int b = 1; b < n; b++) { /* row b moves down from b*T to b*Tp: never overlaps row b-1 */
    memmove(inputs + (size_t)b * Tp, inputs + (size_t)b * T, (size_t)Tp * sizeof *inputs);
    memmove(targets + (size_t)b * Tp, targets + (size_t)b * T, (size_t)Tp * sizeof *targets);
  }
  return Tp;
}

uint64_t data_count_targets(const data_view *v, const uint64_t *samples, int n) {
  const data_source *s = v->src;
  uint64_t count = 0;
  for (int b = 0; b < n; b++) {
    uint64_t i = source_index_(v, samples[b]);
    const dfile_ *f = file_of_(s, i);
    if (f->kind != DATA_JSONL) {
      count += (uint64_t)s->T; /* a stream window has T real targets */
      continue;
    }
    uint64_t r = f->first_rec + (i - f->first_sample);
    const int32_t *lab = s->labels + s->off[r];
    for (int32_t t = 1; t < s->len[r]; t++) count += lab[t] != DATA_IGNORE_INDEX;
  }
  return count;
}

/* ---- order: a keyed bijection on [0, n) ------------------------------------------- */
static uint64_t mix64_(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

#define FEISTEL_ROUNDS 6

/* A balanced Feistel network over 2*half bits, cycle-walked into [0, n): a permutation
 * of [0, n) that needs no memory and answers any position in O(1) expected time. */
static uint64_t permute_(uint64_t n, uint64_t seed, uint64_t epoch, uint64_t stream, uint64_t pos) {
  if (n <= 1) return pos;
  int bits = 1;
  while (bits < 64 && (1ULL << bits) < n) bits++;
  int half = (bits + 1) / 2;
  uint64_t mask = (1ULL << half) - 1;
  rng_t r;
  rng_seed3(&r, seed, epoch, stream);
  uint64_t key[FEISTEL_ROUNDS];
  for (int i = 0; i < FEISTEL_ROUNDS; i++) key[i] = rng_u64(&r);
  uint64_t x = pos;
  do {
    uint64_t L = x >> half, R = x & mask;
    for (int i = 0; i < FEISTEL_ROUNDS; i++) {
      uint64_t nl = R;
      R = L ^ (mix64_(R ^ key[i]) & mask);
      L = nl;
    }
    x = (L << half) | R;
  } while (x >= n);
  return x;
}

#define ORDER_STREAM 0x6f72646572ULL /* "order" */
#define SPLIT_STREAM 0x73706c6974ULL /* "split" */
#define SPLIT_SEED 0x5eedULL

uint64_t data_sample_at(const data_view *v, uint64_t seed, uint64_t epoch, uint64_t position) {
  return permute_(v->n, seed, epoch, ORDER_STREAM, position % (v->n ? v->n : 1));
}

uint64_t data_sample_global(const data_view *v, uint64_t seed, uint64_t g) {
  if (v->n == 0) return 0;
  return data_sample_at(v, seed, g / v->n, g % v->n);
}

/* ---- views ----------------------------------------------------------------------- */
void data_view_all(const data_source *s, data_view *v) {
  v->src = s;
  v->n = s->n_samples;
  v->index = NULL;
}

void data_view_free(data_view *v) {
  free(v->index);
  memset(v, 0, sizeof *v);
}

int data_split(const data_source *s, double fraction, data_view *train, data_view *val) {
  memset(train, 0, sizeof *train);
  memset(val, 0, sizeof *val);
  train->src = val->src = s;
  const uint64_t n = s->n_samples;
  if (!(fraction >= 0 && fraction < 1))
    return st_fail(ST_EINPUT, "data.validation_split: expected a fraction in [0, 1), found %g",
                   fraction);
  if (fraction == 0) {
    train->n = n;
    return 0;
  }
  if (n < 2)
    return st_fail(ST_EINPUT, "data.validation_split = %g needs at least 2 samples, found %llu",
                   fraction, (unsigned long long)n);
  uint64_t n_val = (uint64_t)llround(fraction * (double)n);
  if (n_val < 1) n_val = 1;
  if (n_val > n - 1) n_val = n - 1;
  unsigned char *is_val = xcalloc(n, 1);
  for (uint64_t p = 0; p < n_val; p++) is_val[permute_(n, SPLIT_SEED, 0, SPLIT_STREAM, p)] = 1;
  train->index = xmalloc((n - n_val) * sizeof *train->index);
  val->index = xmalloc(n_val * sizeof *val->index);
  for (uint64_t i = 0; i < n; i++) {
    if (is_val[i])
      val->index[val->n++] = i;
    else
      train->index[train->n++] = i;
  }
  free(is_val);
  return 0;
}

/* ---- the job's data ------------------------------------------------------------------ */
int data_open_job(const job_config *job, int64_t vocab_size, data_job *out) {
  memset(out, 0, sizeof *out);
  int64_t vocab = vocab_size > 0 ? vocab_size : job->data.vocab_size;
  int rc = data_open((const char *const *)job->data.train.v, job->data.train.n, job->data.format,
                     job->training.max_seq_length, vocab, &out->train_src);
  if (rc) return rc;
  if (job->data.validation) {
    const char *vp = job->data.validation;
    rc = data_open(&vp, 1, job->data.format, job->training.max_seq_length, vocab, &out->val_src);
    if (rc) {
      data_job_close(out);
      return rc;
    }
    data_view_all(out->train_src, &out->train);
    data_view_all(out->val_src, &out->val);
    return 0;
  }
  rc = data_split(out->train_src, job->data.validation_split, &out->train, &out->val);
  if (rc) data_job_close(out);
  return rc;
}

void data_job_close(data_job *d) {
  data_view_free(&d->train);
  data_view_free(&d->val);
  data_close(d->train_src);
  data_close(d->val_src);
  memset(d, 0, sizeof *d);
}
