/* Reading safetensors: sft_read_f32 (pread + convert to float32) against a plain pread of
 * the same bytes into memory (the peer: what the disk/page cache gives), per dtype, on a
 * file written by sft_write_f32. Both runs read a warm page cache; the ratio is the cost of
 * our conversion and chunking.
 *
 *   build/bench/bench_safetensors [MiB per tensor, default 64] [dir, default /tmp]
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "util/err.h"
#include "util/mem.h"

static double raw_read_s_(const char *path, uint64_t off, size_t bytes, void *buf) {
  int fd = open(path, O_RDONLY);
  double t0 = time_now_s();
  size_t done = 0;
  while (done < bytes) {
    ssize_t r = pread(fd, (char *)buf + done, bytes - done, (off_t)(off + done));
    if (r <= 0) break;
    done += (size_t)r;
  }
  double t = time_now_s() - t0;
  close(fd);
  return t;
}

int main(int argc, char **argv) {
  size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 64;
  const char *dir = argc > 2 ? argv[2] : "/tmp";
  size_t n = mib * (1u << 20) / 4;
  float *x = xmalloc(n * sizeof *x), *y = xmalloc(n * sizeof *y);
  for (size_t i = 0; i < n; i++) x[i] = (float)((double)(i % 1000) * 1e-3 - 0.5);
  const sft_dtype dts[3] = {SFT_F32, SFT_BF16, SFT_F16};
  printf("bench_safetensors: %zu float32 values (%zu MiB as F32) per tensor\n", n, mib);
  printf("%-5s %10s %12s %12s %8s\n", "dtype", "write s", "raw MB/s", "ours MB/s", "ratio");
  for (int k = 0; k < 3; k++) {
    char *path = xasprintf("%s/bench_sft.%d.safetensors", dir, (int)getpid());
    sft_out_tensor t = {"w", 2, {(int64_t)(n / 1024), 1024}, x};
    double t0 = time_now_s();
    if (sft_write_f32(path, &t, 1, dts[k])) return st_report(1);
    double tw = time_now_s() - t0;
    sft_model m;
    if (sft_open(path, &m)) return st_report(1);
    const sft_tensor *st = sft_find(&m, "w");
    double best_raw = 1e30, best_ours = 1e30;
    for (int rep = 0; rep < 3; rep++) {
      double tr = raw_read_s_(path, st->offset, (size_t)st->bytes, y);
      if (tr < best_raw) best_raw = tr;
      t0 = time_now_s();
      if (sft_read_f32(&m, st, 0, st->numel, y)) return st_report(1);
      double to = time_now_s() - t0;
      if (to < best_ours) best_ours = to;
    }
    double mb = (double)st->bytes / 1e6;
    printf("%-5s %10.3f %12.0f %12.0f %8.2f\n", sft_dtype_name(dts[k]), tw, mb / best_raw,
           mb / best_ours, best_ours / best_raw);
    sft_close(&m);
    remove(path);
    free(path);
  }
  free(x);
  free(y);
  return 0;
}
