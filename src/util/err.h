/* Errors and logging.
 *
 * Library code never exits: it records a message with st_fail() and returns the status
 * code up the stack; main() prints it (prefixed with the rank when more than one rank
 * runs) and exits with it. Messages name the file, key or tensor, what was expected and
 * what was found. Exit codes: 0 success, 1 runtime failure, 2 usage or input error,
 * 75 stopped early on a stop signal after writing a checkpoint (requeue me: the restarted
 * job resumes from it; 75 is EX_TEMPFAIL of sysexits.h, "try again later"). */
#ifndef SPECTRAIN_UTIL_ERR_H
#define SPECTRAIN_UTIL_ERR_H
#include <stdarg.h>
#include <stddef.h>

enum st_status { ST_OK = 0, ST_ERUNTIME = 1, ST_EINPUT = 2, ST_STOPPED = 75 };

#define ST_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* Record an error message (replacing any earlier one) and return `code`. */
int st_fail(int code, const char *fmt, ...) ST_PRINTF(2, 3);
/* Prepend context ("path: ") to the recorded message; returns `code`. */
int st_fail_ctx(int code, const char *fmt, ...) ST_PRINTF(2, 3);
const char *st_errmsg(void);
void st_clear_error(void);
/* 1 when an error is recorded and st_report has not printed it yet. */
int st_error_pending(void);

/* Rank prefixing: set once after MPI init. */
void log_set_rank(int rank, int nranks);
int log_rank(void);
int log_nranks(void);
/* Progress and info lines: rank 0 only, stdout, flushed. */
void log_info(const char *fmt, ...) ST_PRINTF(1, 2);
/* Every rank, stderr, "spectrain: warning: ..." ("[rank r] " first when nranks > 1). */
void log_warn(const char *fmt, ...) ST_PRINTF(1, 2);
/* Every rank, stderr, "spectrain: error: ...". */
void log_error(const char *fmt, ...) ST_PRINTF(1, 2);
/* Print the recorded error with log_error and return `code` (for `return st_report(rc);`).
 * main() prints an error a command returned without reporting it (st_error_pending). */
int st_report(int code);
/* Suppress warnings (tests of warning-free paths, --quiet). */
void log_set_quiet(int quiet);

/* Allocation that cannot fail silently: on out-of-memory print what was asked and abort
 * (a runtime failure nothing can recover from). */
void *xmalloc(size_t bytes);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t bytes);
char *xstrdup(const char *s);
char *xasprintf(const char *fmt, ...) ST_PRINTF(1, 2);

#endif
