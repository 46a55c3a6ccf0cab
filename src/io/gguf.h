/* GGUF files (llama.cpp's format, https://github.com/ggml-org/ggml/blob/master/docs/gguf.md),
 * read only. Little-endian, versions 2 and 3:
 *
 *   "GGUF" u32 version, u64 n_tensors, u64 n_kv
 *   n_kv x   { string key, u32 type, value }        value: u8..f64, bool, string, or
 *                                                   array { u32 elem type, u64 n, n values }
 *   n_tensors x { string name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset }
 *   padding to general.alignment (default 32), then the tensor data; each tensor's offset is
 *   relative to the data section and a multiple of the alignment.
 *   (a string is u64 length + bytes, no NUL)
 *
 * The file is mapped; every count, length and offset is checked against the bytes that
 * remain, with overflow-safe arithmetic, before it is used. Whatever the bytes, a bad file
 * is an ST_EINPUT error naming the file, the key or tensor, what was expected and what was
 * found (truncated, lying counts, unknown value or tensor types, tensors outside the file
 * or overlapping, duplicate keys or names, bad magic or version) — never a crash. */
#ifndef SPECTRAIN_IO_GGUF_H
#define SPECTRAIN_IO_GGUF_H
#include <stddef.h>
#include <stdint.h>

typedef enum {
  GGUF_T_U8 = 0,
  GGUF_T_I8 = 1,
  GGUF_T_U16 = 2,
  GGUF_T_I16 = 3,
  GGUF_T_U32 = 4,
  GGUF_T_I32 = 5,
  GGUF_T_F32 = 6,
  GGUF_T_BOOL = 7,
  GGUF_T_STRING = 8,
  GGUF_T_ARRAY = 9,
  GGUF_T_U64 = 10,
  GGUF_T_I64 = 11,
  GGUF_T_F64 = 12,
  GGUF_T_COUNT
} gguf_type;

const char *gguf_type_name(gguf_type t); /* "u32", "string", "array", ...; "?" otherwise */

typedef struct {
  const char *s; /* not NUL-terminated: len bytes, inside the mapping */
  uint64_t len;
} gguf_str;

typedef struct {
  char *key;          /* NUL-terminated copy */
  gguf_type type;     /* GGUF_T_ARRAY for arrays */
  gguf_type arr_type; /* element type of an array */
  uint64_t n;         /* array length (1 for a scalar) */
  const uint8_t *data; /* scalar value / first array element, inside the mapping */
  gguf_str *strs;     /* string arrays and strings: n entries */
} gguf_kv;

#define GGUF_MAX_DIMS 4

typedef struct {
  char *name;
  int n_dims;
  int64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the contiguous dimension (HF's last) */
  uint32_t type;             /* ggml type id (io/gguf_quant.h) */
  uint64_t numel;
  uint64_t offset; /* relative to the data section */
  uint64_t bytes;
  const uint8_t *data;
} gguf_tensor;

typedef struct {
  char *path;
  uint32_t version;
  uint64_t alignment;
  int n_kv;
  gguf_kv *kv;
  int n_tensors;
  gguf_tensor *t; /* in file order */
  uint64_t data_offset;
  const uint8_t *map;
  size_t map_bytes;
  int mapped; /* 1: map is an mmap of the file (gguf_close unmaps) */
} gguf_file;

/* Map and parse PATH. */
int gguf_open(const char *path, gguf_file *g);
/* Parse an image already in memory (tests, fuzzing): `name` names it in errors; the image
 * must outlive g. */
int gguf_parse_memory(const char *name, const uint8_t *img, size_t bytes, gguf_file *g);
void gguf_close(gguf_file *g);

const gguf_kv *gguf_find_kv(const gguf_file *g, const char *key);
const gguf_tensor *gguf_find_tensor(const gguf_file *g, const char *name);

/* Typed getters. Missing key: *found = 0 (found may be NULL: then a missing key is an error
 * naming it). Wrong type: an ST_EINPUT error naming the key, the type expected and found.
 * Integers of any integer type are accepted when the value fits. */
int gguf_get_int(const gguf_file *g, const char *key, int64_t *out, int *found);
int gguf_get_float(const gguf_file *g, const char *key, double *out, int *found);
int gguf_get_bool(const gguf_file *g, const char *key, int *out, int *found);
/* A string value as a NUL-terminated copy (free it); NUL inside is an error. */
int gguf_get_str(const gguf_file *g, const char *key, char **out, int *found);
/* An array of the given element type (integers: any integer type, read with gguf_arr_int). */
int gguf_get_arr(const gguf_file *g, const char *key, gguf_type elem, const gguf_kv **out,
                 int *found);
int64_t gguf_arr_int(const gguf_kv *kv, uint64_t i);

#endif
