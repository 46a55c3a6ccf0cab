/* Process memory figures for progress lines and the memory report. */
#ifndef SPECTRAIN_UTIL_MEM_H
#define SPECTRAIN_UTIL_MEM_H
#include <stddef.h>
#include <stdint.h>

uint64_t mem_peak_rss_bytes(void);    /* VmHWM */
uint64_t mem_current_rss_bytes(void); /* VmRSS */
/* "1.23 GiB" style; writes into buf and returns it. */
const char *mem_human(uint64_t bytes, char *buf, size_t len);
double time_now_s(void); /* monotonic seconds */

#endif
