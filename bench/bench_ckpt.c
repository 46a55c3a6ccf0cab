/* Checkpoint write bandwidth against a plain sequential write of the same bytes to the same
 * directory (one process, write() in 8 MiB pieces, then fsync), measured in the same run.
 *
 *   mpiexec -n N build/bench/bench_ckpt [DIR] [MIB]
 *
 * A synthetic model of MIB MiB of parameters (default 64; half of the tensors trainable, so
 * the file also holds AdamW m and v of those) is sharded as FSDP shards it (each rank one
 * contiguous 1/N of each flat buffer); ckpt_save writes it collectively, with fsync and
 * rename. Also times ckpt_verify (re-read + checksums) and ckpt_load. Prints MiB/s and the
 * ratio ckpt / plain. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt/ckpt.h"
#include "mpi/comm.h"
#include "util/err.h"
#include "util/mem.h"

static double plain_write_(const char *dir, uint64_t bytes) {
  char *p = xasprintf("%s/plain.bin", dir);
  size_t chunk = 8u << 20;
  char *buf = xmalloc(chunk);
  for (size_t i = 0; i < chunk; i++) buf[i] = (char)(i * 131);
  double t0 = time_now_s();
  int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  uint64_t left = bytes;
  while (fd >= 0 && left > 0) {
    size_t n = left < chunk ? (size_t)left : chunk;
    if (write(fd, buf, n) != (ssize_t)n) break;
    left -= n;
  }
  if (fd >= 0) fsync(fd), close(fd);
  double s = time_now_s() - t0;
  unlink(p);
  free(p);
  free(buf);
  return s;
}

int main(int argc, char **argv) {
  if (comm_init(&argc, &argv)) return 1;
  const char *dir = argc > 1 ? argv[1] : "bench-ckpt-tmp";
  uint64_t mib = argc > 2 ? strtoull(argv[2], NULL, 10) : 64;
  int r = comm_rank(), np = comm_size();
  /* 8 matrices of (rows, 1024), rows from the size asked for; even ones trainable */
  int nt = 8;
  int64_t cols = 1024, rows = (int64_t)(mib * 1048576 / 4 / (uint64_t)nt / (uint64_t)cols);
  if (rows < 1) rows = 1;
  tensor_table tt = {0};
  tt.n = nt;
  tt.t = xcalloc((size_t)nt, sizeof *tt.t);
  for (int i = 0; i < nt; i++) {
    snprintf(tt.t[i].name, sizeof tt.t[i].name, "model.layers.%d.mlp.down_proj.weight", i);
    tt.t[i].ndim = 2;
    tt.t[i].shape[0] = rows;
    tt.t[i].shape[1] = cols;
    tt.t[i].numel = (uint64_t)(rows * cols);
    tt.t[i].trainable = i % 2 == 0;
  }
  /* one flat buffer per kind over all tensors (trainable only for m, v); rank r holds 1/N */
  ckpt_slices sl = {0};
  float *bufs[3];
  uint64_t total_numel = 0;
  for (int k = 0; k < 3; k++) {
    int ids[8], n = 0;
    uint64_t off[8], tot = 0;
    for (int i = 0; i < nt; i++)
      if (k == 0 || tt.t[i].trainable) ids[n] = i, off[n++] = tot, tot += tt.t[i].numel;
    uint64_t per = (tot + (uint64_t)np - 1) / (uint64_t)np;
    bufs[k] = xmalloc(per * sizeof(float));
    for (uint64_t e = 0; e < per; e++) bufs[k][e] = (float)((e * 2654435761u + (uint64_t)r) % 1000) * 1e-3f;
    ckpt_slices_add_flat(&sl, &tt, k == 0 ? CKPT_PARAM : k == 1 ? CKPT_M : CKPT_V, ids, off, n,
                         (uint64_t)r * per, per, bufs[k]);
    total_numel += tot;
  }
  char *names[8];
  int ntr = 0;
  for (int i = 0; i < nt; i++)
    if (tt.t[i].trainable) names[ntr++] = tt.t[i].name;
  ckpt_meta m = {0};
  m.step = 1;
  m.job_text = "bench";
  m.config_json = "{}";
  m.trainable = names;
  m.n_trainable = ntr;
  m.global_batch = 1;
  ckpt_save_opts o = {1};
  ckpt_save_stats st;
  int rc = ckpt_save(dir, &tt, &m, sl.s, sl.n, &o, &st);
  if (rc) return st_report(rc);
  char *path = xasprintf("%s/ckpt-1.h5", dir);
  double t0 = time_now_s();
  rc = ckpt_verify(path);
  double verify_s = time_now_s() - t0;
  t0 = time_now_s();
  if (!rc) rc = ckpt_load(path, &tt, sl.s, sl.n);
  double load_s = time_now_s() - t0;
  if (rc) return st_report(rc);
  double plain_s = r == 0 ? plain_write_(dir, st.tensor_bytes) : 0;
  double mb = (double)st.tensor_bytes / 1048576.0;
  log_info("bench_ckpt: %d ranks, %.1f MiB of tensors (%d tensors, %d trainable with m, v) in %s",
           np, mb, nt, ntr, dir);
  log_info("  ckpt_save   %.3f s (HDF5 writes %.3f s) %8.1f MiB/s  (incl. checksums, fsync, rename)",
           st.seconds, st.write_seconds, mb / st.seconds);
  log_info("  plain write %.3f s                     %8.1f MiB/s  (1 process, write + fsync)",
           plain_s, mb / plain_s);
  log_info("  ratio ckpt/plain bandwidth: %.2f", plain_s / st.seconds);
  log_info("  ckpt_verify %.3f s %8.1f MiB/s, ckpt_load %.3f s %8.1f MiB/s", verify_s,
           mb / verify_s, load_s, mb / load_s);
  (void)total_numel;
  if (r == 0) unlink(path);
  free(path);
  for (int k = 0; k < 3; k++) free(bufs[k]);
  ckpt_slices_free(&sl);
  free(tt.t);
  comm_finalize();
  return 0;
}
