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
 * the same table, and its hash is agreed.
 *
 * GPUs (scan_opts.solver auto or gpu, every rank bound to a device: local rank mod device
 * count): a matrix whose elements fit the device (gpu_svd_max_elems, shared by the ranks of a
 * node that use the same device) is decomposed by its rank with cuSOLVER (double precision,
 * values only), the same numbers as LAPACK's to rounding; a matrix too big for one GPU goes
 * to a ScaLAPACK grid; in auto mode, matrices smaller than gpu_min_dim on their short side
 * stay on LAPACK (transfer and launch overhead). scan_place is the rule, per matrix. */
#ifndef SPECTRAIN_SPECTRUM_SCAN_H
#define SPECTRAIN_SPECTRUM_SCAN_H
#include <stdint.h>

#include "io/safetensors.h"
#include "spectrum/snr.h"

typedef enum {
  SCAN_SOLVER_AUTO = 0, /* cuSOLVER where every rank has a GPU, else as cpu */
  SCAN_SOLVER_CPU,      /* LAPACK per rank, ScaLAPACK grids over the memory limit */
  SCAN_SOLVER_GPU,      /* as auto, every non-trivial matrix that fits a GPU on it; an error
                           when a rank has no GPU */
} scan_solver;
/* "auto", "cpu", "gpu" -> scan_solver; -1 when unknown. */
int scan_solver_parse(const char *s);
const char *scan_solver_name(int solver);

typedef struct {
  uint64_t rank_mem_limit_bytes; /* 0: available memory / ranks on this node / 2 */
  int solver;                    /* scan_solver */
  double progress_interval_s;    /* rank 0 progress line at most this often (0: 2 s) */
  int quiet;                     /* no progress lines */
} scan_opts;

typedef struct {
  double seconds;
  int n_single;    /* matrices decomposed on one rank */
  int n_grid;      /* matrices decomposed by PDGESVD on a group */
  int n_gpu;       /* matrices decomposed by cuSOLVER (a GPU failure's fallbacks count as
                      n_single) */
  int64_t gpu_max_elems; /* per matrix on the GPUs (0: no GPU used) */
  int group_size;  /* G (0 when no grid was needed) */
  uint64_t mem_limit_bytes;
} scan_stats;

/* Where one matrix is decomposed. */
typedef enum { SCAN_ON_CPU = 0, SCAN_ON_GPU, SCAN_ON_GRID, SCAN_ON_NONE } scan_where;
typedef struct {
  int solver;               /* scan_solver */
  int gpu_ok;               /* every rank has a device */
  int64_t gpu_max_elems;    /* the largest rows * cols the smallest rank's device share takes */
  int64_t gpu_min_dim;      /* auto: matrices with min(rows, cols) below this stay on LAPACK */
  uint64_t host_limit_bytes; /* per-rank host memory limit */
  int nranks;
} scan_dispatch;
enum { SCAN_GPU_MIN_DIM = 256 };
/* The rule (pure): where a rows x cols matrix goes, and for SCAN_ON_GRID the smallest group
 * size whose share fits host_limit_bytes (*group_size; 0 otherwise). Trivial matrices (one
 * row, empty) are CPU: they need no SVD. SCAN_ON_NONE: fits nowhere. */
int scan_place(const scan_dispatch *d, int64_t rows, int64_t cols, int *group_size);
/* Host bytes of LAPACK dgesdd (values only) on one rank for a rows x cols matrix. */
uint64_t scan_single_bytes(int64_t rows, int64_t cols);

/* Fill t->m[i].snr for every module of t (built from m's tensors in m's order, see
 * scan_inputs). A weight holding NaN/Inf gets NaN and a warning naming the element on the rank
 * that read it. Collective over the world. */
int scan_run(const sft_model *m, snr_table *t, const scan_opts *o, scan_stats *st);
/* The snr_input array of a model's tensors (m->t's order; *n of them); free() it. tied
 * (config.json's tie_word_embeddings): lm_head is a module whose weight is
 * model.embed_tokens.weight, as Spectrum's model.named_modules() has it, appended when the
 * files do not store lm_head.weight (a stored one is scanned as stored: transformers 5 keeps
 * it when it differs from the embedding). */
snr_input *scan_inputs(const sft_model *m, int tied, int *n);
/* Hash of the SNR values (bit patterns), for agreement across ranks. */
uint64_t scan_table_hash(const snr_table *t);
/* Parse "512M", "4G", "65536", "20K" into bytes. 0 or -1. */
int scan_parse_bytes(const char *s, uint64_t *out);

#endif
