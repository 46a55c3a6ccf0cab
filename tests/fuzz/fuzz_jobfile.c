/* libFuzzer harness for the job-file parser (src/job/job.c over libyaml). The input is YAML
 * text, optionally preceded by one line "--set PATH=VALUE". Whatever the bytes, loading must
 * return cleanly (no crash, leak or UB under ASan + UBSan) with a message on failure; when
 * it accepts a job, the canonical YAML it writes must load back to the same job (same
 * job_hash, no differing key). Run by ctest as fuzz.jobfile for ~15 s. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "job/job.h"
#include "util/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  memcpy(text, data, size);
  text[size] = '\0';
  const char *body = text, *set = NULL;
  if (strncmp(text, "--set ", 6) == 0) {
    char *nl = strchr(text, '\n');
    if (nl) {
      *nl = '\0';
      set = text + 6;
      body = nl + 1;
    }
  }
  opt_list sets = {set ? 1 : 0, set ? &set : NULL};
  log_set_quiet(1);
  job_config c;
  int rc = job_load_text("fuzz.yaml", body, &sets, &c);
  if (rc) {
    if (rc != ST_EINPUT || !st_errmsg() || !st_errmsg()[0]) abort(); /* input errors only */
  } else {
    char *y = job_to_yaml(&c);
    job_config r;
    if (job_load_text("canonical.yaml", y, NULL, &r) != 0) abort();
    char *diff = job_diff(&c, &r);
    if (diff || job_hash(&c) != job_hash(&r)) abort();
    job_free(&r);
    free(y);
  }
  job_free(&c);
  free(text);
  return 0;
}
