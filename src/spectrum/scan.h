/* The distributed Spectrum scan: singular values of every weight matrix of a checkpoint,
 * streamed from its safetensors files, scheduled over the ranks.
 *
 * Schedule (identical on every rank, proved by hash): matrices sorted by cost
 * (min(m,n)^2 * max(m,n)), largest first. A matrix that fits one rank's memory limit is
 * decomposed on one rank with LAPACK dgesdd (values only); many such matrices run at once,
 * one per rank, assigned greedily to the least-loaded rank (measured on one node: much
 * faster than one matrix on all ranks). A matrix that does not fit goes to a group of G
 * ranks (the smallest G whose share fits) and PDGESVD (jobu=jobvt='N') on a BLACS grid;
 * each rank reads only its block-cyclic pieces from the file. No rank ever holds more than
 * the matrices it works on. Results are summed over the world, so every rank ends with
 * the same table, and its hash is agreed. */
#ifndef SPECTRAIN_SPECTRUM_SCAN_H
#define SPECTRAIN_SPECTRUM_SCAN_H
#include <stdint.h>

#include "io/safetensors.h"
#include "spectrum/snr.h"

typedef struct {
  uint64_t rank_mem_limit_bytes; /* 0: available memory / ranks on this node / 2 */
  double progress_interval_s;    /* rank 0 progress line at most this often (0: 2 s) */
  int quiet;                     /* no progress lines */
} scan_opts;

typedef struct {
  double seconds;
  int n_single;    /* matrices decomposed on one rank */
  int n_grid;      /* matrices decomposed by PDGESVD on a group */
  int group_size;  /* G (0 when no grid was needed) */
  uint64_t mem_limit_bytes;
} scan_stats;

/* Fill t->m[i].snr for every module of t (built from m's tensors in m's order, see
 * scan_inputs). Collective over the world. */
int scan_run(const sft_model *m, snr_table *t, const scan_opts *o, scan_stats *st);
/* The snr_input array of a model's tensors (same order as m->t); free() it. */
snr_input *scan_inputs(const sft_model *m);
/* Hash of the SNR values (bit patterns), for agreement across ranks. */
uint64_t scan_table_hash(const snr_table *t);
/* Parse "512M", "4G", "65536", "20K" into bytes. 0 or -1. */
int scan_parse_bytes(const char *s, uint64_t *out);

#endif
