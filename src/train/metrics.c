#include "train/metrics.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/fs.h"

int metrics_open(metrics_writer *w, const char *path, int rank) {
  memset(w, 0, sizeof *w);
  if (rank != 0) return ST_OK;
  FILE *f = fopen(path, "a");
  if (!f) return st_fail(ST_EINPUT, "%s: cannot open the metrics file: %s", path, strerror(errno));
  w->f = f;
  w->path = xstrdup(path);
  return ST_OK;
}

int metrics_write(metrics_writer *w, json_t *obj) {
  int rc = ST_OK;
  if (w->f) {
    char *s = json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(10));
    if (!s || fprintf(w->f, "%s\n", s) < 0 || fflush(w->f) != 0) {
      char why[160];
      fs_write_error(errno, w->path, why, sizeof why);
      rc = st_fail(ST_ERUNTIME, "%s: cannot write the metrics: %s; training stops here (the "
                   "newest checkpoint is the last saved state)", w->path, why);
      clearerr(w->f);
    }
    free(s);
  }
  json_decref(obj);
  return rc;
}

void metrics_close(metrics_writer *w) {
  if (w->f) fclose(w->f);
  free(w->path);
  memset(w, 0, sizeof *w);
}
