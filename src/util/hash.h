/* FNV-1a 64-bit: cheap, deterministic fingerprints of plans, job files and selections,
 * compared across ranks (comm_agree_u64). Not a cryptographic hash. */
#ifndef SPECTRAIN_UTIL_HASH_H
#define SPECTRAIN_UTIL_HASH_H
#include <stddef.h>
#include <stdint.h>

#define HASH64_INIT 0xcbf29ce484222325ULL
uint64_t hash64_bytes(uint64_t h, const void *data, size_t bytes);
uint64_t hash64_str(uint64_t h, const char *s); /* includes the terminating NUL */
uint64_t hash64_u64(uint64_t h, uint64_t v);

#endif
