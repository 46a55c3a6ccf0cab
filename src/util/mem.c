#include "util/mem.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

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
