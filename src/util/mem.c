#include "util/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t status_kb_(const char *key) {
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  uint64_t kb = 0;
  size_t klen = strlen(key);
  while (fgets(line, sizeof line, f))
    if (strncmp(line, key, klen) == 0) {
      sscanf(line + klen, " %lu", &kb);
      break;
    }
  fclose(f);
  return kb * 1024u;
}

uint64_t mem_peak_rss_bytes(void) { return status_kb_("VmHWM:"); }
uint64_t mem_current_rss_bytes(void) { return status_kb_("VmRSS:"); }

const char *mem_human(uint64_t bytes, char *buf, size_t len) {
  const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = (double)bytes;
  int u = 0;
  while (v >= 1024.0 && u < 4) v /= 1024.0, u++;
  if (u == 0) snprintf(buf, len, "%lu B", (unsigned long)bytes);
  else snprintf(buf, len, "%.2f %s", v, units[u]);
  return buf;
}

double time_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A limit file's number ("max" and unreadable files: 0 = none). */
static uint64_t limit_file_(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  char buf[64] = "";
  int ok = fgets(buf, sizeof buf, f) != NULL;
  fclose(f);
  if (!ok || buf[0] < '0' || buf[0] > '9') return 0;
  return strtoull(buf, NULL, 10);
}

uint64_t mem_host_limit_bytes(const char **what) {
  static char where[512];
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  uint64_t best = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : UINT64_MAX;
  if (what) *what = "physical memory";
  const char *hook = getenv("SPECTRAIN_TEST_HOST_MEMORY_BYTES"); /* tests/e2e/train_sizes.sh */
  if (hook && *hook) {
    if (what) *what = "SPECTRAIN_TEST_HOST_MEMORY_BYTES";
    return strtoull(hook, NULL, 10);
  }
  /* this process's cgroup (v2 "0::/path", v1 "N:...memory...:/path"), under the usual mounts;
   * also the mount root itself (a container sees its own cgroup there) */
  char paths[4][400];
  int np = 0;
  FILE *f = fopen("/proc/self/cgroup", "r");
  char line[512];
  while (f && fgets(line, sizeof line, f) && np < 2) {
    line[strcspn(line, "\n")] = '\0';
    char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2) continue;
    *c2 = '\0';
    const char *ctl = c1 + 1, *rel = c2 + 1;
    if (strcmp(line, "0") == 0 && ctl[0] == '\0')
      snprintf(paths[np++], sizeof paths[0], "/sys/fs/cgroup%s/memory.max", rel);
    else if (strstr(ctl, "memory"))
      snprintf(paths[np++], sizeof paths[0], "/sys/fs/cgroup/memory%s/memory.limit_in_bytes", rel);
  }
  if (f) fclose(f);
  snprintf(paths[np++], sizeof paths[0], "/sys/fs/cgroup/memory.max");
  snprintf(paths[np++], sizeof paths[0], "/sys/fs/cgroup/memory/memory.limit_in_bytes");
  for (int i = 0; i < np; i++) {
    uint64_t v = limit_file_(paths[i]);
    if (v > 0 && v < best) {
      best = v;
      snprintf(where, sizeof where, "the cgroup limit (%s)", paths[i]);
      if (what) *what = where;
    }
  }
  return best;
}
