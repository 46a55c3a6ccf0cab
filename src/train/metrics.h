/* The JSON-lines metrics file (OUTPUT_DIR/metrics.jsonl): one object per line, written and
 * flushed by rank 0 only (other ranks hold a closed writer and every call is a no-op). */
#ifndef SPECTRAIN_TRAIN_METRICS_H
#define SPECTRAIN_TRAIN_METRICS_H
#include <jansson.h>

typedef struct {
  void *f; /* FILE*, rank 0 only */
  char *path;
} metrics_writer;

/* Open for appending (resume continues the same file). Rank 0 only opens. */
int metrics_open(metrics_writer *w, const char *path, int rank);
/* Write `obj` as one line and flush; steals the reference. */
int metrics_write(metrics_writer *w, json_t *obj);
void metrics_close(metrics_writer *w);

#endif
