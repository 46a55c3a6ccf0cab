/* safetensors: header parsing and validation, sharded directories, byte-range reads with
 * conversion to float, and the writer. The host is assumed little-endian (x86-64, aarch64),
 * as the format is. */
#include "io/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/safetensors_internal.h"
#include "kernels/bf16.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/finite.h"

/* ---- dtypes --------------------------------------------------------------------------- */

static const struct {
  const char *name;
  size_t bytes;
} dtypes_[] = {
    [SFT_F32] = {"F32", 4},   [SFT_BF16] = {"BF16", 2}, [SFT_F16] = {"F16", 2},
    [SFT_F64] = {"F64", 8},   [SFT_I64] = {"I64", 8},   [SFT_I32] = {"I32", 4},
    [SFT_I16] = {"I16", 2},   [SFT_I8] = {"I8", 1},     [SFT_U8] = {"U8", 1},
    [SFT_BOOL] = {"BOOL", 1},
};
#define N_DTYPES ((int)(sizeof dtypes_ / sizeof dtypes_[0]))

const char *sft_dtype_name(sft_dtype d) {
  return (d >= 0 && (int)d < N_DTYPES) ? dtypes_[d].name : "?";
}
size_t sft_dtype_bytes(sft_dtype d) { return (d >= 0 && (int)d < N_DTYPES) ? dtypes_[d].bytes : 0; }
int sft_dtype_parse(const char *s, sft_dtype *out) {
  for (int i = 0; i < N_DTYPES; i++)
    if (strcmp(s, dtypes_[i].name) == 0) {
      *out = (sft_dtype)i;
      return 0;
    }
  return -1;
}

/* ---- conversions ---------------------------------------------------------------------- */

static uint32_t f32_bits_(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
static float bits_f32_(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

float sft_bf16_to_f32(uint16_t h) { return bf16_to_f32(h); }
uint16_t sft_f32_to_bf16(float f) { return bf16_from_f32(f); } /* kernels/bf16.h */

/* Exponent and mantissa shifted into float position, then scaled by 2^112 (rebias 15 ->
 * 127); the multiply also normalises subnormal halves exactly. Inf/NaN land at >= 2^16 and
 * get the all-ones exponent back. Needs IEEE denormals (no -ffast-math / flush-to-zero). */
static inline float f16_to_f32_(uint16_t h) {
  uint32_t u = (uint32_t)(h & 0x7fffu) << 13;
  float f = bits_f32_(u) * bits_f32_(0x77800000u); /* 2^112 */
  u = f32_bits_(f);
  if (f >= bits_f32_(0x47800000u)) u |= 0x7f800000u; /* 2^16: was Inf/NaN */
  return bits_f32_(u | (uint32_t)(h & 0x8000u) << 16);
}

float sft_f16_to_f32(uint16_t h) { return f16_to_f32_(h); }

uint16_t sft_f32_to_f16(float f) {
  uint32_t x = f32_bits_(f);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x >= 0x7f800000u) return (uint16_t)(sign | (x > 0x7f800000u ? 0x7e00u : 0x7c00u));
  if (x >= 0x47800000u) return (uint16_t)(sign | 0x7c00u); /* >= 2^16: infinity */
  if (x < 0x38800000u) {                                   /* below 2^-14: subnormal or 0 */
    if (x < 0x33000000u) return sign;                      /* below 2^-25: rounds to 0 */
    uint32_t e = x >> 23, mant = (x & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e; /* mant * 2^(e-150) = r * 2^-24 */
    uint32_t r = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) r++;
    return (uint16_t)(sign | r);
  }
  uint32_t h = ((x >> 23) - 112) << 10 | ((x & 0x7fffffu) >> 13);
  uint32_t rem = x & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++; /* may carry into infinity */
  return (uint16_t)(sign | h);
}

/* ---- header parsing ------------------------------------------------------------------- */

void sft_tensors_free(sft_tensor *t, int n) {
  if (!t) return;
  for (int i = 0; i < n; i++) free(t[i].name);
  free(t);
}

int sft_check_prefix(const char *path, const uint8_t prefix[8], uint64_t file_bytes,
                     uint64_t *header_bytes) {
  if (file_bytes < 8)
    return st_fail(ST_EINPUT,
                   "%s: truncated safetensors file: %llu bytes, expected at least 8 "
                   "(the header length)",
                   path, (unsigned long long)file_bytes);
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = (n << 8) | prefix[i];
  if (n > SFT_MAX_HEADER_BYTES)
    return st_fail(ST_EINPUT,
                   "%s: header length %llu exceeds the limit of %llu bytes (not a "
                   "safetensors file?)",
                   path, (unsigned long long)n, SFT_MAX_HEADER_BYTES);
  if (n > file_bytes - 8)
    return st_fail(ST_EINPUT,
                   "%s: header length %llu extends past the end of the file (%llu "
                   "bytes): truncated file?",
                   path, (unsigned long long)n, (unsigned long long)file_bytes);
  if (n < 2)
    return st_fail(ST_EINPUT, "%s: header length %llu: expected a JSON object", path,
                   (unsigned long long)n);
  *header_bytes = n;
  return 0;
}

/* A non-negative JSON integer. */
static int get_u64_(const json_t *v, uint64_t *out) {
  if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
  *out = (uint64_t)json_integer_value(v);
  return 0;
}

static int parse_entry_(const char *path, const char *name, const json_t *e, sft_tensor *t,
                        uint64_t *begin, uint64_t *end) {
  if (!json_is_object(e))
    return st_fail(ST_EINPUT, "%s: tensor '%s': expected an object {dtype, shape, data_offsets}",
                   path, name);
  json_t *dt = json_object_get(e, "dtype"), *sh = json_object_get(e, "shape"),
         *off = json_object_get(e, "data_offsets");
  if (!json_is_string(dt))
    return st_fail(ST_EINPUT, "%s: tensor '%s': key 'dtype': expected a string", path, name);
  if (sft_dtype_parse(json_string_value(dt), &t->dtype))
    return st_fail(ST_EINPUT,
                   "%s: tensor '%s': unknown dtype \"%s\" (expected F32, BF16, F16, "
                   "F64, I64, I32, I16, I8, U8 or BOOL)",
                   path, name, json_string_value(dt));
  if (!json_is_array(sh) || json_array_size(sh) > SFT_MAX_DIMS)
    return st_fail(ST_EINPUT,
                   "%s: tensor '%s': key 'shape': expected a list of at most %d "
                   "integers",
                   path, name, SFT_MAX_DIMS);
  t->ndim = (int)json_array_size(sh);
  uint64_t numel = 1;
  for (int d = 0; d < t->ndim; d++) {
    uint64_t v;
    if (get_u64_(json_array_get(sh, (size_t)d), &v) || v > (uint64_t)INT64_MAX)
      return st_fail(ST_EINPUT, "%s: tensor '%s': shape[%d]: expected an integer >= 0", path, name,
                     d);
    t->shape[d] = (int64_t)v;
    if (v && numel > UINT64_MAX / 16 / v)
      return st_fail(ST_EINPUT, "%s: tensor '%s': shape has too many elements", path, name);
    numel *= v;
  }
  t->numel = numel;
  t->bytes = numel * sft_dtype_bytes(t->dtype);
  if (!json_is_array(off) || json_array_size(off) != 2 || get_u64_(json_array_get(off, 0), begin) ||
      get_u64_(json_array_get(off, 1), end))
    return st_fail(ST_EINPUT,
                   "%s: tensor '%s': key 'data_offsets': expected [begin, end], two "
                   "integers >= 0",
                   path, name);
  if (*end < *begin)
    return st_fail(ST_EINPUT, "%s: tensor '%s': data_offsets [%llu, %llu]: end before begin", path,
                   name, (unsigned long long)*begin, (unsigned long long)*end);
  if (*end - *begin != t->bytes)
    return st_fail(ST_EINPUT,
                   "%s: tensor '%s': %s with %llu elements needs %llu bytes, "
                   "data_offsets [%llu, %llu] hold %llu",
                   path, name, sft_dtype_name(t->dtype), (unsigned long long)numel,
                   (unsigned long long)t->bytes, (unsigned long long)*begin,
                   (unsigned long long)*end, (unsigned long long)(*end - *begin));
  return 0;
}

typedef struct {
  uint64_t begin, end;
  int idx;
} span_;

static int span_cmp_(const void *a, const void *b) {
  const span_ *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return x->idx - y->idx;
}

/* The data section must be covered exactly: tensors back to back from 0 to its end. */
static int check_layout_(const char *path, sft_tensor *t, span_ *s, int n, uint64_t data_bytes) {
  qsort(s, (size_t)n, sizeof *s, span_cmp_);
  uint64_t at = 0;
  for (int i = 0; i < n; i++) {
    const char *name = t[s[i].idx].name;
    if (s[i].end > data_bytes)
      return st_fail(ST_EINPUT,
                     "%s: tensor '%s': data_offsets [%llu, %llu] extend past the end "
                     "of the data (%llu bytes): truncated file?",
                     path, name, (unsigned long long)s[i].begin, (unsigned long long)s[i].end,
                     (unsigned long long)data_bytes);
    if (s[i].begin < at)
      return st_fail(ST_EINPUT,
                     "%s: tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s' "
                     "(ends at %llu)",
                     path, name, (unsigned long long)s[i].begin, (unsigned long long)s[i].end,
                     t[s[i - 1].idx].name, (unsigned long long)at);
    if (s[i].begin > at)
      return st_fail(ST_EINPUT,
                     "%s: tensor '%s': data_offsets [%llu, %llu] leave a gap of %llu "
                     "bytes after %s",
                     path, name, (unsigned long long)s[i].begin, (unsigned long long)s[i].end,
                     (unsigned long long)(s[i].begin - at),
                     i ? t[s[i - 1].idx].name : "the header");
    at = s[i].end;
  }
  if (at != data_bytes)
    return st_fail(ST_EINPUT,
                   "%s: %llu bytes of data after the last tensor (data section %llu "
                   "bytes, tensors cover %llu)",
                   path, (unsigned long long)(data_bytes - at), (unsigned long long)data_bytes,
                   (unsigned long long)at);
  return 0;
}

int sft_parse_header(const char *path, int file, const char *json, size_t json_bytes,
                     uint64_t file_bytes, sft_tensor **out, int *n_out) {
  *out = NULL;
  *n_out = 0;
  if (8 + (uint64_t)json_bytes > file_bytes)
    return st_fail(ST_EINPUT, "%s: header extends past the end of the file", path);
  json_error_t err;
  json_t *o = json_loadb(json, json_bytes, JSON_REJECT_DUPLICATES, &err);
  if (!o)
    return st_fail(ST_EINPUT, "%s: header: invalid JSON at byte %d: %s", path, err.position,
                   err.text);
  if (!json_is_object(o)) {
    json_decref(o);
    return st_fail(ST_EINPUT, "%s: header: expected a JSON object of tensors", path);
  }
  size_t cap = json_object_size(o);
  sft_tensor *t = xcalloc(cap ? cap : 1, sizeof *t);
  span_ *sp = xcalloc(cap ? cap : 1, sizeof *sp);
  int n = 0, rc = 0;
  const uint64_t data_start = 8 + (uint64_t)json_bytes;
  const char *key;
  json_t *val;
  json_object_foreach(o, key, val) {
    if (strcmp(key, "__metadata__") == 0) {
      const char *mk;
      json_t *mv;
      if (!json_is_object(val)) {
        rc = st_fail(ST_EINPUT, "%s: header: '__metadata__': expected an object of strings", path);
        break;
      }
      json_object_foreach(val, mk, mv) if (!json_is_string(mv)) {
        rc = st_fail(ST_EINPUT, "%s: header: '__metadata__' key '%s': expected a string", path, mk);
        break;
      }
      if (rc) break;
      continue;
    }
    sft_tensor *ti = &t[n];
    uint64_t b = 0, e = 0;
    if ((rc = parse_entry_(path, key, val, ti, &b, &e))) break;
    ti->name = xstrdup(key);
    ti->file = file;
    ti->offset = data_start + b;
    sp[n] = (span_){b, e, n};
    n++;
  }
  json_decref(o);
  if (!rc) rc = check_layout_(path, t, sp, n, file_bytes - data_start);
  free(sp);
  if (rc) {
    sft_tensors_free(t, n);
    return rc;
  }
  *out = t;
  *n_out = n;
  return 0;
}

int sft_parse_memory(const char *path, const uint8_t *img, size_t img_bytes, sft_tensor **out,
                     int *n) {
  *out = NULL;
  *n = 0;
  uint64_t hb;
  uint8_t prefix[8] = {0};
  memcpy(prefix, img, img_bytes < 8 ? img_bytes : 8);
  int rc = sft_check_prefix(path, prefix, img_bytes, &hb);
  if (rc) return rc;
  return sft_parse_header(path, 0, (const char *)img + 8, (size_t)hb, img_bytes, out, n);
}

/* ---- files and directories ------------------------------------------------------------ */

static int pread_all_(int fd, void *buf, size_t bytes, uint64_t off, const char *path,
                      const char *what) {
  char *p = buf;
  while (bytes) {
    ssize_t r = pread(fd, p, bytes, (off_t)off);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0)
      return st_fail(ST_ERUNTIME, "%s: reading %s at byte %llu: %s", path, what,
                     (unsigned long long)off, strerror(errno));
    if (r == 0)
      return st_fail(ST_EINPUT, "%s: reading %s: file ends at byte %llu (truncated?)", path, what,
                     (unsigned long long)off);
    p += r, off += (uint64_t)r, bytes -= (size_t)r;
  }
  return 0;
}

static int parse_file_(const char *path, int file, sft_tensor **t, int *n) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return st_fail(errno == ENOENT ? ST_EINPUT : ST_ERUNTIME, "%s: cannot open: %s", path,
                   strerror(errno));
  struct stat stt;
  int rc = 0;
  char *json = NULL;
  if (fstat(fd, &stt) != 0) {
    rc = st_fail(ST_ERUNTIME, "%s: cannot stat: %s", path, strerror(errno));
    goto done;
  }
  uint64_t size = (uint64_t)stt.st_size, hb = 0;
  uint8_t prefix[8] = {0};
  if (size >= 8 && (rc = pread_all_(fd, prefix, 8, 0, path, "the header length"))) goto done;
  if ((rc = sft_check_prefix(path, prefix, size, &hb))) goto done;
  json = xmalloc((size_t)hb);
  if ((rc = pread_all_(fd, json, (size_t)hb, 8, path, "the header"))) goto done;
  rc = sft_parse_header(path, file, json, (size_t)hb, size, t, n);
done:
  free(json);
  close(fd);
  return rc;
}

static int name_cmp_(const void *a, const void *b) {
  return strcmp(((const sft_tensor *)a)->name, ((const sft_tensor *)b)->name);
}

static void model_add_(sft_model *m, sft_tensor *t, int n) {
  m->t = xrealloc(m->t, (size_t)(m->n + n + 1) * sizeof *m->t);
  memcpy(m->t + m->n, t, (size_t)n * sizeof *t);
  m->n += n;
  free(t); /* names now owned by m */
}

static int add_path_(sft_model *m, const char *path) {
  m->paths = xrealloc(m->paths, (size_t)(m->nfiles + 1) * sizeof *m->paths);
  m->paths[m->nfiles] = xstrdup(path);
  return m->nfiles++;
}

static int is_file_(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int str_ends_(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int open_index_(const char *index_path, sft_model *m) {
  json_error_t err;
  json_t *o = json_load_file(index_path, JSON_REJECT_DUPLICATES, &err);
  if (!o)
    return st_fail(ST_EINPUT, "%s: invalid JSON at line %d column %d: %s", index_path, err.line,
                   err.column, err.text);
  int rc = 0;
  json_t *wm = json_object_get(o, "weight_map");
  char *dir = xstrdup(index_path);
  char *slash = strrchr(dir, '/');
  if (slash)
    slash[1] = '\0';
  else
    dir[0] = '\0';
  const char *name;
  json_t *fv;
  if (!json_is_object(wm)) {
    rc = st_fail(ST_EINPUT, "%s: key 'weight_map': expected an object {tensor: file}", index_path);
    goto done;
  }
  /* Open each file named by the index once (in order of first mention). */
  json_object_foreach(wm, name, fv) {
    if (!json_is_string(fv)) {
      rc =
          st_fail(ST_EINPUT, "%s: weight_map: tensor '%s': expected a file name", index_path, name);
      goto done;
    }
    const char *f = json_string_value(fv);
    if (f[0] == '/' || strstr(f, "..") || !f[0]) {
      rc = st_fail(ST_EINPUT,
                   "%s: weight_map: tensor '%s': file \"%s\" is not a file name inside "
                   "the model directory",
                   index_path, name, f);
      goto done;
    }
    char *p = xasprintf("%s%s", dir, f);
    int known = 0;
    for (int i = 0; i < m->nfiles && !known; i++) known = strcmp(m->paths[i], p) == 0;
    if (!known) {
      if (!is_file_(p)) {
        rc = st_fail(ST_EINPUT, "%s: weight_map: tensor '%s' is in \"%s\", but %s does not exist",
                     index_path, name, f, p);
        free(p);
        goto done;
      }
      int fi = add_path_(m, p);
      sft_tensor *t;
      int n;
      if ((rc = parse_file_(p, fi, &t, &n))) {
        free(p);
        goto done;
      }
      model_add_(m, t, n);
    }
    free(p);
  }
  qsort(m->t, (size_t)m->n, sizeof *m->t, name_cmp_);
  for (int i = 1; i < m->n; i++)
    if (strcmp(m->t[i].name, m->t[i - 1].name) == 0) {
      rc = st_fail(ST_EINPUT, "%s: tensor '%s' is stored twice, in %s and %s", index_path,
                   m->t[i].name, m->paths[m->t[i - 1].file], m->paths[m->t[i].file]);
      goto done;
    }
  /* Every tensor the index names must be in the file it names. */
  json_object_foreach(wm, name, fv) {
    const sft_tensor *t = sft_find(m, name);
    char *p = xasprintf("%s%s", dir, json_string_value(fv));
    if (!t)
      rc = st_fail(ST_EINPUT,
                   "%s: weight_map names tensor '%s' in \"%s\", but %s does not "
                   "contain it",
                   index_path, name, json_string_value(fv), p);
    else if (strcmp(m->paths[t->file], p) != 0)
      rc = st_fail(ST_EINPUT, "%s: weight_map puts tensor '%s' in \"%s\", but it is in %s",
                   index_path, name, json_string_value(fv), m->paths[t->file]);
    free(p);
    if (rc) goto done;
  }
done:
  free(dir);
  json_decref(o);
  return rc;
}

int sft_open(const char *path, sft_model *m) {
  memset(m, 0, sizeof *m);
  struct stat st;
  if (stat(path, &st) != 0) return st_fail(ST_EINPUT, "%s: no such file or directory", path);
  int rc;
  if (S_ISDIR(st.st_mode)) {
    char *single = xasprintf("%s/model.safetensors", path);
    char *index = xasprintf("%s/model.safetensors.index.json", path);
    if (is_file_(single)) { /* transformers prefers the single file too */
      rc = parse_file_(single, add_path_(m, single), &m->t, &m->n);
    } else if (is_file_(index)) {
      rc = open_index_(index, m);
    } else {
      rc = st_fail(ST_EINPUT,
                   "%s: no model.safetensors or model.safetensors.index.json in this "
                   "directory",
                   path);
    }
    free(single);
    free(index);
  } else if (str_ends_(path, ".index.json")) {
    rc = open_index_(path, m);
  } else {
    rc = parse_file_(path, add_path_(m, path), &m->t, &m->n);
  }
  if (!rc && m->n > 1) qsort(m->t, (size_t)m->n, sizeof *m->t, name_cmp_);
  if (rc) sft_close(m);
  return rc;
}

void sft_close(sft_model *m) {
  sft_tensors_free(m->t, m->n);
  for (int i = 0; i < m->nfiles; i++) free(m->paths[i]);
  free(m->paths);
  memset(m, 0, sizeof *m);
}

const sft_tensor *sft_find(const sft_model *m, const char *name) {
  int lo = 0, hi = m->n - 1;
  while (lo <= hi) {
    int mid = lo + (hi - lo) / 2;
    int c = strcmp(m->t[mid].name, name);
    if (c == 0) return &m->t[mid];
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid - 1;
  }
  return NULL;
}

/* ---- reading -------------------------------------------------------------------------- */

#define READ_CHUNK_ELEMS 65536
#define READ_CHUNK_BYTES (1u << 22) /* conversion staging buffer: 4 MiB */

/* Convert k stored elements at src to float (f32 != 0) or double, one tight loop per
 * (dtype, output) pair so the compiler can vectorise the common cases. */
static void convert_(sft_dtype dt, const uint8_t *src, size_t k, void *dst, int f32) {
  float *of = dst;
  double *od = dst;
  switch (dt) {
    case SFT_F32:
      if (f32)
        memcpy(of, src, k * 4);
      else
        for (size_t i = 0; i < k; i++) {
          float v;
          memcpy(&v, src + 4 * i, 4);
          od[i] = v;
        }
      return;
    case SFT_BF16: {
      const uint16_t *h = (const uint16_t *)(const void *)src; /* src: malloc-aligned */
      if (f32)
        for (size_t i = 0; i < k; i++) of[i] = bits_f32_((uint32_t)h[i] << 16);
      else
        for (size_t i = 0; i < k; i++) od[i] = bits_f32_((uint32_t)h[i] << 16);
      return;
    }
    case SFT_F16: {
      const uint16_t *h = (const uint16_t *)(const void *)src;
      if (f32)
        for (size_t i = 0; i < k; i++) of[i] = f16_to_f32_(h[i]);
      else
        for (size_t i = 0; i < k; i++) od[i] = f16_to_f32_(h[i]);
      return;
    }
    default: /* F64 */
      for (size_t i = 0; i < k; i++) {
        double v;
        memcpy(&v, src + 8 * i, 8);
        if (f32)
          of[i] = (float)v;
        else
          od[i] = v;
      }
      return;
  }
}

/* Read elements [first, first+count) of t and convert to float (f32 == 1), double (0) or
 * bf16 (2, rounded to nearest even). Only those bytes are read; F32 -> float and BF16 ->
 * bf16 go straight into `out`. */
static int read_conv_(const sft_model *m, const sft_tensor *t, uint64_t first, uint64_t count,
                      void *out, int f32) {
  const char *path = m->paths[t->file];
  if (first > t->numel || count > t->numel - first)
    return st_fail(ST_EINPUT, "%s: tensor '%s': elements [%llu, %llu) requested, it has %llu", path,
                   t->name, (unsigned long long)first, (unsigned long long)(first + count),
                   (unsigned long long)t->numel);
  if (t->dtype != SFT_F32 && t->dtype != SFT_BF16 && t->dtype != SFT_F16 && t->dtype != SFT_F64)
    return st_fail(ST_EINPUT, "%s: tensor '%s': dtype %s: expected F32, BF16, F16 or F64", path,
                   t->name, sft_dtype_name(t->dtype));
  if (count == 0) return 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return st_fail(ST_ERUNTIME, "%s: cannot open: %s", path, strerror(errno));
  const size_t es = sft_dtype_bytes(t->dtype), os = f32 == 2 ? 2 : f32 ? 4 : 8;
  char what[160];
  snprintf(what, sizeof what, "tensor '%s'", t->name);
  int rc = 0;
  if ((t->dtype == SFT_F32 && f32 == 1) || (t->dtype == SFT_BF16 && f32 == 2)) {
    rc = pread_all_(fd, out, (size_t)count * os, t->offset + first * os, path, what);
  } else {
    const size_t chunk = READ_CHUNK_BYTES / es;
    uint8_t *buf = xmalloc(READ_CHUNK_BYTES);
    float *tmp = f32 == 2 ? xmalloc(chunk * sizeof *tmp) : NULL; /* bf16 out: via float */
    for (uint64_t done = 0; done < count && !rc; done += chunk) {
      size_t k = (size_t)(count - done < chunk ? count - done : chunk);
      rc = pread_all_(fd, buf, k * es, t->offset + (first + done) * es, path, what);
      if (rc) break;
      if (f32 == 2) {
        convert_(t->dtype, buf, k, tmp, 1);
        uint16_t *o = (uint16_t *)out + done;
        for (size_t i = 0; i < k; i++) o[i] = bf16_from_f32(tmp[i]);
      } else {
        convert_(t->dtype, buf, k, (char *)out + done * os, f32);
      }
    }
    free(tmp);
    free(buf);
  }
  close(fd);
  return rc;
}

int sft_read_f32(const sft_model *m, const sft_tensor *t, uint64_t first, uint64_t count,
                 float *out) {
  return read_conv_(m, t, first, count, out, 1);
}

int sft_read_f64(const sft_model *m, const sft_tensor *t, uint64_t first, uint64_t count,
                 double *out) {
  return read_conv_(m, t, first, count, out, 0);
}

int sft_check_finite(const sft_model *m, const sft_tensor *t, uint64_t first, const float *x,
                     uint64_t n) {
  uint64_t bad = finite_first_bad_f32(x, n);
  if (bad == n) return 0;
  char at[160];
  finite_index_str(first + bad, t->ndim, t->shape, at, sizeof at);
  return st_fail(ST_EINPUT,
                 "%s: tensor '%s' holds %s at index %s (element %llu of %llu, stored as %s): "
                 "model weights must be finite numbers; the file is damaged or was saved from a "
                 "run that diverged (re-export it from a good checkpoint or the original model)",
                 m->paths[t->file], t->name, finite_name(x[bad]), at,
                 (unsigned long long)(first + bad), (unsigned long long)t->numel,
                 sft_dtype_name(t->dtype));
}

int sft_check_finite_bf16(const sft_model *m, const sft_tensor *t, uint64_t first,
                          const uint16_t *x, uint64_t n) {
  uint64_t bad = finite_first_bad_bf16(x, n);
  if (bad == n) return 0;
  char at[160];
  finite_index_str(first + bad, t->ndim, t->shape, at, sizeof at);
  return st_fail(ST_EINPUT,
                 "%s: tensor '%s' holds %s at index %s (element %llu of %llu, stored as %s, read "
                 "as bfloat16): "
                 "model weights must be finite numbers; the file is damaged or was saved from a "
                 "run that diverged (re-export it from a good checkpoint or the original model)",
                 m->paths[t->file], t->name, finite_name(bf16_to_f32(x[bad])), at,
                 (unsigned long long)(first + bad), (unsigned long long)t->numel,
                 sft_dtype_name(t->dtype));
}

int sft_read_bf16(const sft_model *m, const sft_tensor *t, uint64_t first, uint64_t count,
                  uint16_t *out) {
  return read_conv_(m, t, first, count, out, 2);
}

/* ---- writing -------------------------------------------------------------------------- */

static uint64_t out_numel_(const sft_out_tensor *t) {
  uint64_t n = 1;
  for (int d = 0; d < t->ndim; d++) n *= (uint64_t)t->shape[d];
  return n;
}

static int write_all_(FILE *f, const void *p, size_t bytes, const char *path) {
  if (bytes && fwrite(p, 1, bytes, f) != bytes) {
    char why[160];
    fs_write_error(errno, path, why, sizeof why);
    return st_fail(ST_ERUNTIME, "%s: write failed: %s", path, why);
  }
  return 0;
}

struct sft_writer {
  char *path, *tmp;
  FILE *f;
  sft_dtype dtype;
  int n, next;     /* tensors declared, index of the next one to put */
  uint64_t *numel; /* [n] */
  char **names;    /* [n] */
  int *ndim;       /* [n] */
  int64_t (*shape)[SFT_MAX_DIMS]; /* [n] */
  uint8_t *buf;    /* conversion staging */
};

static void writer_free_(sft_writer *w, int remove_tmp) {
  if (!w) return;
  if (w->f) fclose(w->f);
  if (remove_tmp && w->tmp) remove(w->tmp);
  for (int i = 0; i < w->n; i++) free(w->names[i]);
  free(w->names);
  free(w->numel);
  free(w->ndim);
  free(w->shape);
  free(w->buf);
  free(w->path);
  free(w->tmp);
  free(w);
}

int sft_writer_open(const char *path, const sft_out_tensor *t, int n, sft_dtype dtype,
                    sft_writer **out) {
  *out = NULL;
  if (dtype != SFT_F32 && dtype != SFT_BF16 && dtype != SFT_F16)
    return st_fail(ST_EINPUT, "%s: cannot write dtype %s (expected F32, BF16 or F16)", path,
                   sft_dtype_name(dtype));
  const size_t es = sft_dtype_bytes(dtype);
  json_t *h = json_object();
  json_t *meta = json_object();
  json_object_set_new(meta, "format", json_string("pt"));
  json_object_set_new(h, "__metadata__", meta);
  uint64_t at = 0;
  int rc = 0;
  for (int i = 0; i < n && !rc; i++) {
    if (t[i].ndim < 0 || t[i].ndim > SFT_MAX_DIMS) {
      rc = st_fail(ST_EINPUT, "%s: tensor '%s': %d dimensions (at most %d)", path, t[i].name,
                   t[i].ndim, SFT_MAX_DIMS);
      break;
    }
    if (json_object_get(h, t[i].name) || strcmp(t[i].name, "__metadata__") == 0) {
      rc = st_fail(ST_EINPUT, "%s: tensor '%s' given twice", path, t[i].name);
      break;
    }
    json_t *e = json_object(), *sh = json_array(), *off = json_array();
    for (int d = 0; d < t[i].ndim; d++) json_array_append_new(sh, json_integer(t[i].shape[d]));
    uint64_t bytes = out_numel_(&t[i]) * es;
    json_array_append_new(off, json_integer((json_int_t)at));
    json_array_append_new(off, json_integer((json_int_t)(at + bytes)));
    json_object_set_new(e, "dtype", json_string(sft_dtype_name(dtype)));
    json_object_set_new(e, "shape", sh);
    json_object_set_new(e, "data_offsets", off);
    json_object_set_new(h, t[i].name, e);
    at += bytes;
  }
  char *hdr = rc ? NULL : json_dumps(h, JSON_COMPACT);
  json_decref(h);
  if (rc) return rc;
  sft_writer *w = xcalloc(1, sizeof *w);
  w->path = xstrdup(path);
  w->tmp = xasprintf("%s.tmp", path);
  w->dtype = dtype;
  w->n = n;
  w->numel = xcalloc((size_t)n + 1, sizeof *w->numel);
  w->names = xcalloc((size_t)n + 1, sizeof *w->names);
  w->ndim = xcalloc((size_t)n + 1, sizeof *w->ndim);
  w->shape = xcalloc((size_t)n + 1, sizeof *w->shape);
  for (int i = 0; i < n; i++) {
    w->numel[i] = out_numel_(&t[i]);
    w->names[i] = xstrdup(t[i].name);
    w->ndim[i] = t[i].ndim;
    memcpy(w->shape[i], t[i].shape, sizeof w->shape[i]);
  }
  w->buf = xmalloc(READ_CHUNK_ELEMS * 4);
  /* Pad the header with spaces so the data start 8-byte aligned (as the reference does). */
  size_t hlen = strlen(hdr), padded = (hlen + 7) / 8 * 8;
  w->f = fopen(w->tmp, "wb");
  if (!w->f) {
    rc = st_fail(ST_ERUNTIME, "%s: cannot create: %s", w->tmp, strerror(errno));
  } else {
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    static const char spaces[8] = "        ";
    if (!(rc = write_all_(w->f, len8, 8, w->tmp)) && !(rc = write_all_(w->f, hdr, hlen, w->tmp)))
      rc = write_all_(w->f, spaces, padded - hlen, w->tmp);
  }
  free(hdr);
  if (rc) {
    writer_free_(w, 1);
    return rc;
  }
  *out = w;
  return 0;
}

/* The writers' refusal of a value that is not finite, or not finite once in the target dtype. */
static int put_nonfinite_(const sft_writer *w, uint64_t at, float v) {
  char idx[160];
  finite_index_str(at, w->ndim[w->next], w->shape[w->next], idx, sizeof idx);
  if (!isfinite(v))
    return st_fail(ST_ERUNTIME,
                   "%s: tensor '%s' holds %s at index %s: refusing to write a model with "
                   "non-finite values (nothing written)",
                   w->path, w->names[w->next], finite_name(v), idx);
  return st_fail(ST_ERUNTIME,
                 "%s: tensor '%s' holds %g at index %s, which is infinite in %s: refusing to "
                 "write it (nothing written); write F32%s",
                 w->path, w->names[w->next], (double)v, idx, sft_dtype_name(w->dtype),
                 w->dtype == SFT_F16 ? " or BF16" : "");
}

int sft_writer_put(sft_writer *w, const float *data) {
  if (w->next >= w->n)
    return st_fail(ST_ERUNTIME, "%s: all %d tensors already written", w->path, w->n);
  const uint64_t ne = w->numel[w->next];
  if (ne && !data)
    return st_fail(ST_EINPUT, "%s: tensor '%s': no data", w->path, w->names[w->next]);
  int rc = 0;
  for (uint64_t d = 0; d < ne && !rc; d += READ_CHUNK_ELEMS) {
    size_t k = (size_t)(ne - d < READ_CHUNK_ELEMS ? ne - d : READ_CHUNK_ELEMS);
    const float *src = data + d;
    uint64_t bad = finite_first_bad_f32(src, k);
    if (bad < k) return put_nonfinite_(w, d + bad, src[bad]);
    if (w->dtype == SFT_F32) {
      rc = write_all_(w->f, src, k * 4, w->tmp);
      continue;
    }
    uint16_t *o = (uint16_t *)(void *)w->buf, em = w->dtype == SFT_BF16 ? 0x7f80 : 0x7c00;
    if (w->dtype == SFT_BF16)
      for (size_t j = 0; j < k; j++) o[j] = sft_f32_to_bf16(src[j]);
    else
      for (size_t j = 0; j < k; j++) o[j] = sft_f32_to_f16(src[j]);
    uint16_t any = 0;
    for (size_t j = 0; j < k; j++) any |= (uint16_t)((o[j] & em) == em);
    for (size_t j = 0; any && j < k; j++)
      if ((o[j] & em) == em) return put_nonfinite_(w, d + j, src[j]);
    rc = write_all_(w->f, o, k * 2, w->tmp);
  }
  if (!rc) w->next++;
  return rc;
}

int sft_writer_close(sft_writer *w) {
  int rc = 0;
  if (w->next != w->n)
    rc = st_fail(ST_ERUNTIME, "%s: %d of %d tensors written", w->path, w->next, w->n);
  char why[160];
  if (!rc && (fflush(w->f) != 0 || fsync(fileno(w->f)) != 0)) {
    fs_write_error(errno, w->tmp, why, sizeof why);
    rc = st_fail(ST_ERUNTIME, "%s: flush failed: %s", w->tmp, why);
  }
  if (fclose(w->f) != 0 && !rc) {
    fs_write_error(errno, w->tmp, why, sizeof why);
    rc = st_fail(ST_ERUNTIME, "%s: close failed: %s", w->tmp, why);
  }
  w->f = NULL;
  if (!rc && rename(w->tmp, w->path) != 0)
    rc = st_fail(ST_ERUNTIME, "%s: cannot rename to %s: %s", w->tmp, w->path, strerror(errno));
  writer_free_(w, rc != 0);
  return rc;
}

void sft_writer_abort(sft_writer *w) { writer_free_(w, 1); }

int sft_write_f32(const char *path, const sft_out_tensor *t, int n, sft_dtype dtype) {
  sft_writer *w;
  int rc = sft_writer_open(path, t, n, dtype, &w);
  for (int i = 0; i < n && !rc; i++) rc = sft_writer_put(w, t[i].data);
  if (rc) {
    if (w) sft_writer_abort(w);
    return rc;
  }
  return sft_writer_close(w);
}
