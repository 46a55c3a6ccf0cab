/* The safetensors header parser on memory, for tests and the fuzz harness
 * (tests/fuzz/fuzz_safetensors.c). Not part of the module's public interface. */
#ifndef SPECTRAIN_IO_SAFETENSORS_INTERNAL_H
#define SPECTRAIN_IO_SAFETENSORS_INTERNAL_H
#include <stddef.h>
#include <stdint.h>

#include "io/safetensors.h"

/* Headers larger than this are refused (the reference implementation's limit). */
#define SFT_MAX_HEADER_BYTES 100000000ULL

/* Validate the 8-byte length prefix of a file of `file_bytes` bytes whose first 8 bytes are
 * `prefix`; on success *header_bytes is the JSON header's length. */
int sft_check_prefix(const char *path, const uint8_t prefix[8], uint64_t file_bytes,
                     uint64_t *header_bytes);

/* Parse and validate the JSON header `json` (json_bytes long) of the file `path` whose total
 * size is file_bytes (data follow the header at offset 8 + json_bytes). On success *out holds
 * *n tensors (file index `file`, absolute offsets), in header order; free with
 * sft_tensors_free. */
int sft_parse_header(const char *path, int file, const char *json, size_t json_bytes,
                     uint64_t file_bytes, sft_tensor **out, int *n);

/* Both steps on a whole file image held in memory. */
int sft_parse_memory(const char *path, const uint8_t *img, size_t img_bytes, sft_tensor **out,
                     int *n);

void sft_tensors_free(sft_tensor *t, int n);

#endif
