/* Deterministic random numbers: xoshiro256** seeded through splitmix64. The state is
 * four uint64 words, so it can be saved in checkpoints and restored exactly. */
#ifndef SPECTRAIN_UTIL_RNG_H
#define SPECTRAIN_UTIL_RNG_H
#include <stdint.h>

typedef struct {
  uint64_t s[4];
} rng_t;

void rng_seed(rng_t *r, uint64_t seed);
/* A stream derived from (seed, a, b): independent of how many numbers other streams drew. */
void rng_seed3(rng_t *r, uint64_t seed, uint64_t a, uint64_t b);
uint64_t rng_u64(rng_t *r);
double rng_uniform(rng_t *r);          /* [0, 1) with 53 bits */
uint64_t rng_below(rng_t *r, uint64_t n); /* uniform in [0, n), unbiased */
double rng_normal(rng_t *r);           /* standard normal (Box-Muller, no cached pair) */
uint64_t splitmix64(uint64_t *x);

#endif
