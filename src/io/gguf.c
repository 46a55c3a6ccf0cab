/* GGUF reader: a bounds-checked cursor over the mapped file. Nothing is read before the
 * cursor has checked that the bytes exist, and no count is used to allocate before it has
 * been checked against the bytes left (each entry takes a known minimum of bytes), so a
 * lying header is an error, not an allocation of petabytes. */
#include "io/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/gguf_quant.h"
#include "util/err.h"
#include "util/fs.h"

static const char *const type_names_[GGUF_T_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};
static const uint8_t type_bytes_[GGUF_T_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *gguf_type_name(gguf_type t) {
  return (unsigned)t < GGUF_T_COUNT ? type_names_[t] : "?";
}

typedef struct {
  const char *path;
  const uint8_t *p;
  uint64_t size, off;
} cur_;

static uint64_t rd_le_(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

/* `what` says what was being read, for the error. */
static int need_(cur_ *c, uint64_t n, const char *what) {
  if (n > c->size - c->off)
    return st_fail(ST_EINPUT,
                   "%s: truncated: %s needs %llu bytes at offset %llu, but the file ends at %llu",
                   c->path, what, (unsigned long long)n, (unsigned long long)c->off,
                   (unsigned long long)c->size);
  return 0;
}

static int u32_(cur_ *c, uint32_t *v, const char *what) {
  int rc = need_(c, 4, what);
  if (rc) return rc;
  *v = (uint32_t)rd_le_(c->p + c->off, 4);
  c->off += 4;
  return 0;
}

static int u64_(cur_ *c, uint64_t *v, const char *what) {
  int rc = need_(c, 8, what);
  if (rc) return rc;
  *v = rd_le_(c->p + c->off, 8);
  c->off += 8;
  return 0;
}

static int str_(cur_ *c, gguf_str *s, const char *what) {
  uint64_t n;
  int rc = u64_(c, &n, what);
  if (rc) return rc;
  if (n > c->size - c->off)
    return st_fail(ST_EINPUT,
                   "%s: truncated: %s: the string's length is %llu bytes, but only %llu bytes are "
                   "left in the file (offset %llu)",
                   c->path, what, (unsigned long long)n, (unsigned long long)(c->size - c->off),
                   (unsigned long long)c->off);
  s->s = (const char *)c->p + c->off;
  s->len = n;
  c->off += n;
  return 0;
}

/* A NUL-terminated copy of a key or name; an embedded NUL is refused (it would truncate it). */
static int name_(cur_ *c, char **out, const char *what) {
  gguf_str s;
  int rc = str_(c, &s, what);
  if (rc) return rc;
  if (memchr(s.s, 0, (size_t)s.len))
    return st_fail(ST_EINPUT, "%s: %s contains a NUL byte (offset %llu)", c->path, what,
                   (unsigned long long)(c->off - s.len));
  char *k = xmalloc((size_t)s.len + 1);
  memcpy(k, s.s, (size_t)s.len);
  k[s.len] = 0;
  *out = k;
  return 0;
}

static void kv_free_(gguf_kv *kv) {
  free(kv->key);
  free(kv->strs);
}

static int kv_value_(cur_ *c, gguf_kv *kv) {
  uint32_t t;
  char what[400];
  snprintf(what, sizeof what, "the type of metadata key '%s'", kv->key);
  int rc = u32_(c, &t, what);
  if (rc) return rc;
  if (t >= GGUF_T_COUNT)
    return st_fail(ST_EINPUT, "%s: metadata key '%s': unknown value type %u (expected 0..%d)",
                   c->path, kv->key, t, GGUF_T_COUNT - 1);
  kv->type = (gguf_type)t;
  kv->n = 1;
  gguf_type et = kv->type;
  if (t == GGUF_T_ARRAY) {
    snprintf(what, sizeof what, "the element type of array '%s'", kv->key);
    if ((rc = u32_(c, &t, what))) return rc;
    if (t >= GGUF_T_COUNT)
      return st_fail(ST_EINPUT, "%s: metadata key '%s': unknown array element type %u", c->path,
                     kv->key, t);
    if (t == GGUF_T_ARRAY)
      return st_fail(ST_EINPUT, "%s: metadata key '%s': arrays of arrays are not supported",
                     c->path, kv->key);
    et = kv->arr_type = (gguf_type)t;
    snprintf(what, sizeof what, "the length of array '%s'", kv->key);
    if ((rc = u64_(c, &kv->n, what))) return rc;
  }
  const uint64_t left = c->size - c->off;
  if (et == GGUF_T_STRING) {
    if (kv->n > left / 8) /* each string takes at least its 8-byte length */
      return st_fail(ST_EINPUT,
                     "%s: metadata key '%s': %llu strings cannot fit in the %llu bytes left", c->path,
                     kv->key, (unsigned long long)kv->n, (unsigned long long)left);
    kv->data = c->p + c->off;
    kv->strs = xmalloc(((size_t)kv->n + 1) * sizeof *kv->strs);
    for (uint64_t i = 0; i < kv->n; i++) {
      snprintf(what, sizeof what, "string %llu of metadata key '%s'", (unsigned long long)i,
               kv->key);
      if ((rc = str_(c, &kv->strs[i], what))) return rc;
    }
    return 0;
  }
  const uint64_t eb = type_bytes_[et];
  if (kv->n > left / eb)
    return st_fail(ST_EINPUT,
                   "%s: truncated: metadata key '%s' holds %llu values of %llu bytes, but only "
                   "%llu bytes are left (offset %llu)",
                   c->path, kv->key, (unsigned long long)kv->n, (unsigned long long)eb,
                   (unsigned long long)left, (unsigned long long)c->off);
  kv->data = c->p + c->off;
  c->off += kv->n * eb;
  if (et == GGUF_T_BOOL)
    for (uint64_t i = 0; i < kv->n; i++)
      if (kv->data[i] > 1)
        return st_fail(ST_EINPUT, "%s: metadata key '%s': a bool must be 0 or 1, found %u",
                       c->path, kv->key, kv->data[i]);
  return 0;
}

static int tensor_info_(cur_ *c, int i, gguf_tensor *t) {
  char what[400];
  snprintf(what, sizeof what, "the name of tensor %d", i);
  int rc = name_(c, &t->name, what);
  if (rc) return rc;
  uint32_t nd;
  snprintf(what, sizeof what, "the dimension count of tensor '%s'", t->name);
  if ((rc = u32_(c, &nd, what))) return rc;
  if (nd < 1 || nd > GGUF_MAX_DIMS)
    return st_fail(ST_EINPUT, "%s: tensor '%s': %u dimensions (expected 1 to %d)", c->path,
                   t->name, nd, GGUF_MAX_DIMS);
  t->n_dims = (int)nd;
  uint64_t numel = 1;
  for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
  for (int d = 0; d < (int)nd; d++) {
    uint64_t ne;
    snprintf(what, sizeof what, "dimension %d of tensor '%s'", d, t->name);
    if ((rc = u64_(c, &ne, what))) return rc;
    if (ne == 0 || ne > (uint64_t)INT64_MAX || numel > (uint64_t)INT64_MAX / ne)
      return st_fail(ST_EINPUT,
                     "%s: tensor '%s': dimension %d is %llu (expected a positive size whose "
                     "product with the others fits in 63 bits)",
                     c->path, t->name, d, (unsigned long long)ne);
    t->ne[d] = (int64_t)ne;
    numel *= ne;
  }
  t->numel = numel;
  snprintf(what, sizeof what, "the type of tensor '%s'", t->name);
  if ((rc = u32_(c, &t->type, what))) return rc;
  const ggml_type_info *ti = ggml_type_get(t->type);
  if (!ti)
    return st_fail(ST_EINPUT, "%s: tensor '%s': unknown ggml type %u", c->path, t->name, t->type);
  if ((uint64_t)t->ne[0] % ti->block)
    return st_fail(ST_EINPUT,
                   "%s: tensor '%s' (%s): its rows of %lld elements are not a whole number of "
                   "%u-element blocks",
                   c->path, t->name, ti->name, (long long)t->ne[0], ti->block);
  if (numel / ti->block > UINT64_MAX / ti->block_bytes)
    return st_fail(ST_EINPUT, "%s: tensor '%s' (%s): %llu elements are more bytes than 64 bits count",
                   c->path, t->name, ti->name, (unsigned long long)numel);
  t->bytes = numel / ti->block * ti->block_bytes;
  snprintf(what, sizeof what, "the data offset of tensor '%s'", t->name);
  return u64_(c, &t->offset, what);
}

static int cmp_name_(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Duplicate keys or tensor names make lookups ambiguous: refused, naming one. */
static int unique_(const char *path, char **names, int n, const char *what) {
  qsort(names, (size_t)n, sizeof *names, cmp_name_);
  for (int i = 1; i < n; i++)
    if (strcmp(names[i - 1], names[i]) == 0)
      return st_fail(ST_EINPUT, "%s: %s '%s' appears twice", path, what, names[i]);
  return 0;
}

static int cmp_off_(const void *a, const void *b) {
  const gguf_tensor *x = *(gguf_tensor *const *)a, *y = *(gguf_tensor *const *)b;
  return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int place_tensors_(cur_ *c, gguf_file *g) {
  const uint64_t a = g->alignment;
  const uint64_t pad = (a - c->off % a) % a;
  if (g->n_tensors > 0 && pad > c->size - c->off)
    return st_fail(ST_EINPUT,
                   "%s: truncated: the tensor data should start at offset %llu (aligned to %llu), "
                   "but the file ends at %llu",
                   c->path, (unsigned long long)(c->off + pad), (unsigned long long)a,
                   (unsigned long long)c->size);
  g->data_offset = c->off + pad;
  const uint64_t avail = g->n_tensors > 0 ? c->size - g->data_offset : 0;
  gguf_tensor **by = xmalloc(((size_t)g->n_tensors + 1) * sizeof *by);
  int rc = 0;
  for (int i = 0; i < g->n_tensors && !rc; i++) {
    gguf_tensor *t = &g->t[i];
    by[i] = t;
    if (t->offset % a)
      rc = st_fail(ST_EINPUT, "%s: tensor '%s': data offset %llu is not a multiple of the "
                   "alignment %llu", c->path, t->name, (unsigned long long)t->offset,
                   (unsigned long long)a);
    else if (t->offset > avail || t->bytes > avail - t->offset)
      rc = st_fail(ST_EINPUT,
                   "%s: tensor '%s': its %llu bytes at data offset %llu (file offset %llu) run "
                   "past the end of the file (%llu bytes)",
                   c->path, t->name, (unsigned long long)t->bytes, (unsigned long long)t->offset,
                   (unsigned long long)(g->data_offset + t->offset), (unsigned long long)c->size);
    else
      t->data = c->p + g->data_offset + t->offset;
  }
  if (!rc) {
    qsort(by, (size_t)g->n_tensors, sizeof *by, cmp_off_);
    for (int i = 1; i < g->n_tensors && !rc; i++)
      if (by[i - 1]->offset + by[i - 1]->bytes > by[i]->offset)
        rc = st_fail(ST_EINPUT, "%s: tensors '%s' and '%s' overlap (data offsets %llu+%llu and %llu)",
                     c->path, by[i - 1]->name, by[i]->name, (unsigned long long)by[i - 1]->offset,
                     (unsigned long long)by[i - 1]->bytes, (unsigned long long)by[i]->offset);
  }
  free(by);
  return rc;
}

static int parse_(cur_ *c, gguf_file *g) {
  int rc = need_(c, 4, "the magic \"GGUF\"");
  if (rc) return rc;
  if (memcmp(c->p, "GGUF", 4) != 0)
    return st_fail(ST_EINPUT, "%s: not a GGUF file (the first bytes are not \"GGUF\")", c->path);
  c->off = 4;
  if ((rc = u32_(c, &g->version, "the version"))) return rc;
  if (g->version == 1)
    return st_fail(ST_EINPUT, "%s: GGUF version 1 (32-bit counts, 2023) is not supported; "
                   "convert the model again with a current llama.cpp", c->path);
  if (g->version == 0x02000000u || g->version == 0x03000000u)
    return st_fail(ST_EINPUT, "%s: a big-endian GGUF file; only little-endian files are supported",
                   c->path);
  if (g->version != 2 && g->version != 3)
    return st_fail(ST_EINPUT, "%s: GGUF version %u (expected 2 or 3)", c->path, g->version);
  uint64_t nt, nkv;
  if ((rc = u64_(c, &nt, "the tensor count")) || (rc = u64_(c, &nkv, "the metadata count")))
    return rc;
  const uint64_t left = c->size - c->off;
  /* a metadata entry takes >= 12 bytes (key length, type), a tensor info >= 28 */
  if (nkv > left / 12 || nkv > INT32_MAX)
    return st_fail(ST_EINPUT, "%s: the header says %llu metadata entries, but the %llu bytes "
                   "after it hold at most %llu", c->path, (unsigned long long)nkv,
                   (unsigned long long)left, (unsigned long long)(left / 12));
  if (nt > left / 28 || nt > INT32_MAX)
    return st_fail(ST_EINPUT, "%s: the header says %llu tensors, but the %llu bytes after it "
                   "hold at most %llu", c->path, (unsigned long long)nt,
                   (unsigned long long)left, (unsigned long long)(left / 28));
  g->kv = xcalloc((size_t)nkv + 1, sizeof *g->kv);
  for (uint64_t i = 0; i < nkv; i++) {
    char what[64];
    snprintf(what, sizeof what, "the key of metadata entry %llu", (unsigned long long)i);
    g->n_kv = (int)i + 1;
    if ((rc = name_(c, &g->kv[i].key, what)) || (rc = kv_value_(c, &g->kv[i]))) return rc;
  }
  char **names = xmalloc(((size_t)g->n_kv + (size_t)nt + 1) * sizeof *names);
  for (int i = 0; i < g->n_kv; i++) names[i] = g->kv[i].key;
  rc = unique_(c->path, names, g->n_kv, "metadata key");
  g->alignment = 32;
  const gguf_kv *al = rc ? NULL : gguf_find_kv(g, "general.alignment");
  if (al) {
    if (al->type != GGUF_T_U32)
      rc = st_fail(ST_EINPUT, "%s: general.alignment: expected a u32, found %s", c->path,
                   al->type == GGUF_T_ARRAY ? "an array" : gguf_type_name(al->type));
    else if (!(g->alignment = rd_le_(al->data, 4)) || (g->alignment & (g->alignment - 1)))
      rc = st_fail(ST_EINPUT, "%s: general.alignment is %llu (expected a power of two)", c->path,
                   (unsigned long long)g->alignment);
  }
  if (!rc) g->t = xcalloc((size_t)nt + 1, sizeof *g->t);
  for (uint64_t i = 0; i < nt && !rc; i++) {
    g->n_tensors = (int)i + 1;
    rc = tensor_info_(c, (int)i, &g->t[i]);
  }
  if (!rc) {
    for (int i = 0; i < g->n_tensors; i++) names[i] = g->t[i].name;
    rc = unique_(c->path, names, g->n_tensors, "tensor");
  }
  free(names);
  if (!rc) rc = place_tensors_(c, g);
  return rc;
}

int gguf_parse_memory(const char *name, const uint8_t *img, size_t bytes, gguf_file *g) {
  memset(g, 0, sizeof *g);
  g->path = xstrdup(name);
  g->map = img;
  g->map_bytes = bytes;
  cur_ c = {g->path, img, bytes, 0};
  int rc = parse_(&c, g);
  if (rc) gguf_close(g);
  return rc;
}

int gguf_open(const char *path, gguf_file *g) {
  memset(g, 0, sizeof *g);
  int rc = fs_check_file(path, "a GGUF file", 1);
  if (rc) return rc;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return st_fail(ST_EINPUT, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    rc = st_fail(ST_ERUNTIME, "%s: cannot stat: %s", path, strerror(errno));
    close(fd);
    return rc;
  }
  if (st.st_size == 0) {
    close(fd);
    return st_fail(ST_EINPUT, "%s: empty file (expected a GGUF file)", path);
  }
  void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (m == MAP_FAILED) return st_fail(ST_ERUNTIME, "%s: cannot map: %s", path, strerror(errno));
  rc = gguf_parse_memory(path, m, (size_t)st.st_size, g);
  if (rc) {
    munmap(m, (size_t)st.st_size);
    return rc;
  }
  g->mapped = 1;
  return 0;
}

void gguf_close(gguf_file *g) {
  for (int i = 0; i < g->n_kv; i++) kv_free_(&g->kv[i]);
  for (int i = 0; i < g->n_tensors; i++) free(g->t[i].name);
  free(g->kv);
  free(g->t);
  if (g->mapped) munmap((void *)g->map, g->map_bytes);
  free(g->path);
  memset(g, 0, sizeof *g);
}

const gguf_kv *gguf_find_kv(const gguf_file *g, const char *key) {
  for (int i = 0; i < g->n_kv; i++)
    if (g->kv[i].key && strcmp(g->kv[i].key, key) == 0) return &g->kv[i];
  return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *g, const char *name) {
  for (int i = 0; i < g->n_tensors; i++)
    if (strcmp(g->t[i].name, name) == 0) return &g->t[i];
  return NULL;
}

static int lookup_(const gguf_file *g, const char *key, int *found, const gguf_kv **kv) {
  *kv = gguf_find_kv(g, key);
  if (found) *found = *kv != NULL;
  if (!*kv && !found) return st_fail(ST_EINPUT, "%s: missing metadata key '%s'", g->path, key);
  return 0;
}

static int is_int_(gguf_type t) {
  return t == GGUF_T_U8 || t == GGUF_T_I8 || t == GGUF_T_U16 || t == GGUF_T_I16 ||
         t == GGUF_T_U32 || t == GGUF_T_I32 || t == GGUF_T_U64 || t == GGUF_T_I64;
}

static const char *found_(const gguf_kv *kv) {
  return kv->type == GGUF_T_ARRAY ? "an array" : gguf_type_name(kv->type);
}

/* Element i of an integer scalar or array; u64 above INT64_MAX saturates (callers range-check). */
static int64_t int_at_(gguf_type t, const uint8_t *p, uint64_t i) {
  const uint64_t b = type_bytes_[t];
  uint64_t v = rd_le_(p + i * b, (int)b);
  switch (t) {
    case GGUF_T_I8: return (int8_t)v;
    case GGUF_T_I16: return (int16_t)v;
    case GGUF_T_I32: return (int32_t)v;
    case GGUF_T_I64: return (int64_t)v;
    case GGUF_T_U64: return v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v;
    default: return (int64_t)v;
  }
}

int64_t gguf_arr_int(const gguf_kv *kv, uint64_t i) { return int_at_(kv->arr_type, kv->data, i); }

int gguf_get_int(const gguf_file *g, const char *key, int64_t *out, int *found) {
  const gguf_kv *kv;
  int rc = lookup_(g, key, found, &kv);
  if (rc || !kv) return rc;
  if (!is_int_(kv->type))
    return st_fail(ST_EINPUT, "%s: metadata key '%s': expected an integer, found %s", g->path, key,
                   found_(kv));
  *out = int_at_(kv->type, kv->data, 0);
  return 0;
}

int gguf_get_float(const gguf_file *g, const char *key, double *out, int *found) {
  const gguf_kv *kv;
  int rc = lookup_(g, key, found, &kv);
  if (rc || !kv) return rc;
  if (kv->type == GGUF_T_F32) {
    uint32_t u = (uint32_t)rd_le_(kv->data, 4);
    float f;
    memcpy(&f, &u, 4);
    *out = f;
  } else if (kv->type == GGUF_T_F64) {
    uint64_t u = rd_le_(kv->data, 8);
    memcpy(out, &u, 8);
  } else if (is_int_(kv->type)) {
    *out = (double)int_at_(kv->type, kv->data, 0);
  } else {
    return st_fail(ST_EINPUT, "%s: metadata key '%s': expected a number, found %s", g->path, key,
                   found_(kv));
  }
  return 0;
}

int gguf_get_bool(const gguf_file *g, const char *key, int *out, int *found) {
  const gguf_kv *kv;
  int rc = lookup_(g, key, found, &kv);
  if (rc || !kv) return rc;
  if (kv->type != GGUF_T_BOOL)
    return st_fail(ST_EINPUT, "%s: metadata key '%s': expected a bool, found %s", g->path, key,
                   found_(kv));
  *out = kv->data[0];
  return 0;
}

int gguf_get_str(const gguf_file *g, const char *key, char **out, int *found) {
  const gguf_kv *kv;
  int rc = lookup_(g, key, found, &kv);
  if (rc || !kv) return rc;
  if (kv->type != GGUF_T_STRING)
    return st_fail(ST_EINPUT, "%s: metadata key '%s': expected a string, found %s", g->path, key,
                   found_(kv));
  const gguf_str *s = &kv->strs[0];
  if (memchr(s->s, 0, (size_t)s->len))
    return st_fail(ST_EINPUT, "%s: metadata key '%s': the string contains a NUL byte", g->path,
                   key);
  char *r = xmalloc((size_t)s->len + 1);
  memcpy(r, s->s, (size_t)s->len);
  r[s->len] = 0;
  *out = r;
  return 0;
}

int gguf_get_arr(const gguf_file *g, const char *key, gguf_type elem, const gguf_kv **out,
                 int *found) {
  const gguf_kv *kv;
  int rc = lookup_(g, key, found, &kv);
  if (rc || !kv) return rc;
  int ok = kv->type == GGUF_T_ARRAY &&
           (kv->arr_type == elem || (is_int_(elem) && is_int_(kv->arr_type)));
  if (!ok)
    return st_fail(ST_EINPUT, "%s: metadata key '%s': expected an array of %s, found %s%s",
                   g->path, key, is_int_(elem) ? "integers" : gguf_type_name(elem),
                   kv->type == GGUF_T_ARRAY ? "an array of " : "",
                   kv->type == GGUF_T_ARRAY ? gguf_type_name(kv->arr_type) : gguf_type_name(kv->type));
  *out = kv;
  return 0;
}
