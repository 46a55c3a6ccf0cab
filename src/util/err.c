#include "util/err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ERRBUF_BYTES 4096
static _Thread_local char errbuf_[ERRBUF_BYTES];
static _Thread_local int reported_ = 0; /* the recorded message was printed by st_report */
static int rank_ = 0, nranks_ = 1, quiet_ = 0;

int st_fail(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(errbuf_, sizeof errbuf_, fmt, ap);
  va_end(ap);
  reported_ = 0;
  return code;
}

int st_fail_ctx(int code, const char *fmt, ...) {
  char ctx[1024], old[ERRBUF_BYTES];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ctx, sizeof ctx, fmt, ap);
  va_end(ap);
  memcpy(old, errbuf_, sizeof old);
  snprintf(errbuf_, sizeof errbuf_, "%s%s", ctx, old);
  return code;
}

const char *st_errmsg(void) { return errbuf_; }
void st_clear_error(void) { errbuf_[0] = '\0'; }
int st_error_pending(void) { return errbuf_[0] != '\0' && !reported_; }

void log_set_rank(int rank, int nranks) {
  rank_ = rank;
  nranks_ = nranks;
}
int log_rank(void) { return rank_; }
int log_nranks(void) { return nranks_; }
void log_set_quiet(int quiet) { quiet_ = quiet; }

static void vlog_(FILE *f, const char *kind, const char *fmt, va_list ap) {
  char line[ERRBUF_BYTES + 256];
  int n = 0;
  if (nranks_ > 1) n = snprintf(line, sizeof line, "[rank %d] ", rank_);
  n += snprintf(line + n, sizeof line - (size_t)n, "spectrain: %s", kind);
  vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
  /* one write per line so ranks do not interleave inside a line */
  fprintf(f, "%s\n", line);
  fflush(f);
}

void log_info(const char *fmt, ...) {
  if (rank_ != 0) return;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stdout, fmt, ap);
  va_end(ap);
  fputc('\n', stdout);
  if (fflush(stdout) != 0 || ferror(stdout)) {
    /* the log's file is full or gone (under mpirun/srun the launcher writes it and such a
     * failure is its to report): say so once where it may still be seen, and go on */
    static int warned;
    int err = errno;
    if (!warned) {
      warned = 1;
      fprintf(stderr, "spectrain: warning: cannot write the log to standard output: %s; "
                      "going on without it (log lines from here on may be lost)\n",
              strerror(err));
      fflush(stderr);
    }
    clearerr(stdout);
  }
}

void log_warn(const char *fmt, ...) {
  if (quiet_) return;
  va_list ap;
  va_start(ap, fmt);
  vlog_(stderr, "warning: ", fmt, ap);
  va_end(ap);
}

void log_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog_(stderr, "error: ", fmt, ap);
  va_end(ap);
}

int st_report(int code) {
  if (code != ST_OK) {
    log_error("%s", errbuf_[0] ? errbuf_ : "unknown error");
    reported_ = 1; /* main() must not print it again */
  }
  return code;
}

static void oom_(size_t bytes) {
  log_error("out of memory allocating %zu bytes", bytes);
  abort();
}

void *xmalloc(size_t bytes) {
  void *p = malloc(bytes ? bytes : 1);
  if (!p) oom_(bytes);
  return p;
}

void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p) oom_(n * size);
  return p;
}

void *xrealloc(void *p, size_t bytes) {
  void *q = realloc(p, bytes ? bytes : 1);
  if (!q) oom_(bytes);
  return q;
}

char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = xmalloc(n);
  memcpy(d, s, n);
  return d;
}

char *xasprintf(const char *fmt, ...) {
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *s = xmalloc((size_t)n + 1);
  vsnprintf(s, (size_t)n + 1, fmt, ap2);
  va_end(ap2);
  return s;
}
