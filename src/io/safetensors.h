/* safetensors files (https://huggingface.co/docs/safetensors): an 8-byte little-endian
 * header length, a JSON header {name: {dtype, shape, data_offsets:[begin,end]}, "__metadata__"},
 * then the raw data. A model directory holds model.safetensors, or shards listed in
 * model.safetensors.index.json ({"weight_map": {name: file}}).
 *
 * Readers parse headers only and read exactly the byte ranges asked for (each rank reads
 * only its own slices). Every malformed input is an ST_EINPUT error naming the file and
 * tensor: truncated file, bad header JSON, offsets out of range or overlapping, unknown
 * dtype, shape/byte-count mismatch, a name in the index whose file lacks it. */
#ifndef SPECTRAIN_IO_SAFETENSORS_H
#define SPECTRAIN_IO_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>

typedef enum { SFT_F32, SFT_BF16, SFT_F16, SFT_F64, SFT_I64, SFT_I32, SFT_I16, SFT_I8, SFT_U8, SFT_BOOL } sft_dtype;
#define SFT_MAX_DIMS 8

const char *sft_dtype_name(sft_dtype d); /* "F32", "BF16", ... */
size_t sft_dtype_bytes(sft_dtype d);
int sft_dtype_parse(const char *s, sft_dtype *out); /* 0 or -1 */

typedef struct {
  char *name;
  sft_dtype dtype;
  int ndim;
  int64_t shape[SFT_MAX_DIMS];
  uint64_t numel;
  int file;        /* index into sft_model.paths */
  uint64_t offset; /* absolute byte offset of the data in that file */
  uint64_t bytes;
} sft_tensor;

typedef struct {
  int nfiles;
  char **paths;
  int n;
  sft_tensor *t; /* sorted by name */
} sft_model;

/* Open a directory (model.safetensors or an index + shards) or a single .safetensors
 * file; reads and validates headers only. */
int sft_open(const char *path, sft_model *m);
void sft_close(sft_model *m);
const sft_tensor *sft_find(const sft_model *m, const char *name);

/* Read elements [first, first+count) of a tensor (row-major flat index), converting to
 * float32 / float64. Reads only those bytes. */
int sft_read_f32(const sft_model *m, const sft_tensor *t, uint64_t first, uint64_t count, float *out);
int sft_read_f64(const sft_model *m, const sft_tensor *t, uint64_t first, uint64_t count, double *out);
/* The same into bfloat16 (bits as uint16_t): BF16 tensors are copied as stored, others
 * converted to float and rounded to nearest even (what torch's .to(torch.bfloat16) does). */
int sft_read_bf16(const sft_model *m, const sft_tensor *t, uint64_t first, uint64_t count,
                  uint16_t *out);

/* Non-finite numbers are bad input. x[0..n) holds elements [first, first+n) of t as read:
 * 0 when every value is finite, else ST_EINPUT naming the file, the tensor, its first NaN or
 * infinity by multi-index, the stored dtype and the value. (NaN and Inf survive the BF16/F16
 * widening unchanged, so the check after conversion is the check of the stored values.) */
int sft_check_finite(const sft_model *m, const sft_tensor *t, uint64_t first, const float *x,
                     uint64_t n);
/* The same on values read with sft_read_bf16 (a finite F32 value beyond bfloat16's range
 * rounds to an infinity, and is reported as one). */
int sft_check_finite_bf16(const sft_model *m, const sft_tensor *t, uint64_t first,
                          const uint16_t *x, uint64_t n);

/* Write one safetensors file that Hugging Face transformers loads. Tensors are written in
 * the given order; data is converted from float32 to `dtype` (F32, BF16 round-to-nearest-
 * even, F16). metadata {"format": "pt"} is always included. Written to path.tmp, then
 * renamed. */
typedef struct {
  const char *name;
  int ndim;
  int64_t shape[SFT_MAX_DIMS];
  const float *data;
} sft_out_tensor;
int sft_write_f32(const char *path, const sft_out_tensor *t, int n, sft_dtype dtype);
/* Both writers refuse non-finite data (ST_ERUNTIME naming the tensor and its first bad
 * index; nothing is renamed into place): a NaN or infinity in the input, and a finite value
 * the target dtype cannot hold (F16 above 65504, BF16 above 3.39e38 round to infinity). */

/* The same, one tensor at a time (at most one tensor in memory): open with the tensors'
 * names and shapes (data ignored), put each tensor's float32 data in the same order, close
 * (flush, fsync, rename). abort drops the temporary file. On an error from open *w is NULL;
 * after an error from put, call abort. */
typedef struct sft_writer sft_writer;
int sft_writer_open(const char *path, const sft_out_tensor *t, int n, sft_dtype dtype,
                    sft_writer **w);
int sft_writer_put(sft_writer *w, const float *data);
int sft_writer_close(sft_writer *w);
void sft_writer_abort(sft_writer *w);

/* bf16/f16 <-> f32 conversions (round-to-nearest-even on the way down). */
float sft_bf16_to_f32(uint16_t h);
uint16_t sft_f32_to_bf16(float f);
float sft_f16_to_f32(uint16_t h);
uint16_t sft_f32_to_f16(float f);

#endif
