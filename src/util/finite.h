/* Non-finite numbers (NaN, +Inf, -Inf) are bad input: where a model, checkpoint or result is
 * read or written, the first one is located and named. The scans are integer tests of the
 * exponent bits (vectorised; no floating-point exceptions, no -ffast-math surprises). */
#ifndef SPECTRAIN_UTIL_FINITE_H
#define SPECTRAIN_UTIL_FINITE_H
#include <stddef.h>
#include <stdint.h>

/* Index of the first NaN or infinity in x[0..n), or n when every value is finite. */
uint64_t finite_first_bad_f32(const float *x, uint64_t n);
uint64_t finite_first_bad_f64(const double *x, uint64_t n);
/* The same for bfloat16 bits (the upper half of a float32). */
uint64_t finite_first_bad_bf16(const uint16_t *x, uint64_t n);
/* "NaN", "+Inf" or "-Inf" for a non-finite value ("finite" otherwise). */
const char *finite_name(double v);
/* The multi-index of flat row-major element `flat` of a tensor of shape[0..ndim): "[3, 17]"
 * ("[]" for 0-d). Returns buf. */
const char *finite_index_str(uint64_t flat, int ndim, const int64_t *shape, char *buf, size_t len);

#endif
