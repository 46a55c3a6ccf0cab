/* Minimal test helpers: every failed check prints file:line and the expression, and the
 * test exits non-zero at the end (test_done) — checks never abort the rest of a test. */
#ifndef SPECTRAIN_TEST_H
#define SPECTRAIN_TEST_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_failures_ = 0;
static int test_checks_ = 0;

#define CHECK(cond)                                                                        \
  do {                                                                                     \
    test_checks_++;                                                                        \
    if (!(cond)) {                                                                         \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);            \
      test_failures_++;                                                                    \
    }                                                                                      \
  } while (0)

#define CHECK_MSG(cond, ...)                                                               \
  do {                                                                                     \
    test_checks_++;                                                                        \
    if (!(cond)) {                                                                         \
      fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);             \
      fprintf(stderr, __VA_ARGS__);                                                        \
      fputc('\n', stderr);                                                                 \
      test_failures_++;                                                                    \
    }                                                                                      \
  } while (0)

#define CHECK_EQ_INT(a, b)                                                                 \
  do {                                                                                     \
    long long a_ = (long long)(a), b_ = (long long)(b);                                    \
    CHECK_MSG(a_ == b_, "%lld != %lld", a_, b_);                                           \
  } while (0)

#define CHECK_STR_EQ(a, b)                                                                 \
  do {                                                                                     \
    const char *a_ = (a), *b_ = (b);                                                       \
    CHECK_MSG(a_ && b_ && strcmp(a_, b_) == 0, "\"%s\" != \"%s\"", a_ ? a_ : "(null)",     \
              b_ ? b_ : "(null)");                                                         \
  } while (0)

/* |a-b| <= atol + rtol*|b| */
#define CHECK_CLOSE(a, b, rtol, atol)                                                      \
  do {                                                                                     \
    double a_ = (double)(a), b_ = (double)(b);                                             \
    CHECK_MSG(fabs(a_ - b_) <= (atol) + (rtol)*fabs(b_), "%.9g vs %.9g", a_, b_);          \
  } while (0)

#define CHECK_CONTAINS(hay, needle)                                                        \
  do {                                                                                     \
    const char *h_ = (hay), *n_ = (needle);                                                \
    CHECK_MSG(h_ && strstr(h_, n_), "\"%s\" does not contain \"%s\"", h_ ? h_ : "(null)",  \
              n_);                                                                         \
  } while (0)

static inline int test_done(void) {
  if (test_failures_) {
    fprintf(stderr, "FAILED: %d of %d checks\n", test_failures_, test_checks_);
    return 1;
  }
  printf("ok: %d checks\n", test_checks_);
  return 0;
}
#endif
