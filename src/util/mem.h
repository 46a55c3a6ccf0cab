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
/* The memory this process's host can give it: physical memory, or the cgroup's limit
 * (v2 memory.max, v1 memory.limit_in_bytes: Slurm's task/cgroup, containers) when lower.
 * `what` (may be NULL) says which: "physical memory" or "the cgroup limit (PATH)". Test
 * hook: SPECTRAIN_TEST_HOST_MEMORY_BYTES=N pretends the host has N bytes. */
uint64_t mem_host_limit_bytes(const char **what);

#endif
