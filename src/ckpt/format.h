/* Checkpoint format, the parts that touch no file library: the kinds of tensor groups, the
 * slice lists a rank hands to save/load, the metadata record, the rank-count independent
 * checksum and the checkpoint file names in a directory. Layout: docs/checkpoints.md.
 *
 * The caller (the training loop) describes what this rank holds as a list of slices:
 * "elements [begin, begin+count) of tensor t's row-major flat index, of kind k, are at
 * data". A rank may hold any number of slices, of any tensors, including none; the union
 * over ranks of the slices of one (tensor, kind) should cover it exactly once when
 * writing. Reading fills exactly the slices asked for, whatever rank count wrote the file. */
#ifndef SPECTRAIN_CKPT_FORMAT_H
#define SPECTRAIN_CKPT_FORMAT_H
#include <stddef.h>
#include <stdint.h>

#include "model/tensors.h"
#include "util/rng.h"

#define CKPT_FORMAT_VERSION 1

typedef enum {
  CKPT_PARAM,  /* /params/<name>: the model weights (every tensor) */
  CKPT_MASTER, /* /master/<name>: fp32 master copy (trainable only, when kept separately) */
  CKPT_M,      /* /optim/m/<name>: AdamW first moment (trainable only) */
  CKPT_V,      /* /optim/v/<name>: AdamW second moment (trainable only) */
  CKPT_NKINDS
} ckpt_kind;

const char *ckpt_kind_group(ckpt_kind k); /* "/params", "/master", "/optim/m", "/optim/v" */

typedef struct {
  int tensor; /* index into the tensor table */
  ckpt_kind kind;
  uint64_t begin, count; /* flat element range of the tensor (row-major) */
  float *data;           /* count floats: read from by save, written to by load */
} ckpt_slice;

/* A growable list of slices. */
typedef struct {
  ckpt_slice *s;
  int n, cap;
} ckpt_slices;

void ckpt_slices_add(ckpt_slices *l, int tensor, ckpt_kind kind, uint64_t begin,
                     uint64_t count, float *data);
/* A flat buffer (e.g. one FSDP unit) holds tensor ids[k] at element offsets off[k]
 * (ascending, not overlapping; padding between or after tensors is allowed). This rank
 * holds buffer elements [lo, lo+n) at `data`. Adds one slice per tensor the range
 * overlaps (padding is skipped). */
void ckpt_slices_add_flat(ckpt_slices *l, const tensor_table *tt, ckpt_kind kind,
                          const int *ids, const uint64_t *off, int ntensors, uint64_t lo,
                          uint64_t n, float *data);
void ckpt_slices_free(ckpt_slices *l);

/* Everything besides tensors. Strings are NUL-terminated, may be NULL when absent
 * (snr_json); ckpt_load/ckpt_read_meta allocate them, ckpt_meta_free frees them. */
typedef struct {
  uint64_t step;        /* optimizer steps taken */
  uint64_t tokens_seen; /* training tokens consumed so far */
  uint64_t data_seed, data_epoch, data_sample; /* data position: next global sample index */
  rng_t rng;                                   /* the trainer's RNG state */
  double lr;            /* learning rate of the last step taken */
  uint64_t global_batch; /* samples per optimizer step */
  int world_size;        /* ranks that wrote the file (informational) */
  int have_master;       /* /master present */
  double elapsed_s;       /* training time so far (all runs) */
  char *job_text;        /* the job file, verbatim */
  char *job_sets;        /* the --set overrides, one "path=value" per line (may be NULL) */
  char *config_json;     /* the model's config.json, verbatim */
  char *snr_json;        /* the SNR table as JSON text, or NULL */
  int n_trainable;
  char **trainable; /* names of trainable tensors, in tensor-table order */
} ckpt_meta;

void ckpt_meta_free(ckpt_meta *m);

/* Rank-count independent checksum of a float tensor: the sum (mod 2^64) over elements of
 * a mix of (flat index, bit pattern). Ranks hash their ranges and add the results. */
uint64_t ckpt_hash_range(uint64_t begin, uint64_t count, const float *x);

/* "ckpt-<step><suffix>" (suffix ".h5" or ".h5.tmp"): 1 and *step when <step> is written as
 * spectrain writes it (decimal digits only, no sign, space or leading zero, <= INT64_MAX);
 * -1 when the name has that frame around anything else (a stray file); 0 otherwise. */
int ckpt_parse_name(const char *name, const char *suffix, uint64_t *step);

/* Checkpoints in dir, newest first: steps and paths (malloc'd). Local, not collective.
 * Stray ckpt-*.h5 names (ckpt_parse_name -1) are skipped, each with a warning when `warn`. */
int ckpt_list(const char *dir, int warn, uint64_t **steps, char ***paths, int *n);

/* Remove dir/ckpt-<step>.h5.tmp files (saves that never finished) except `keep` (a path,
 * or NULL); each with an info line when `verbose`. Only safe while no other job writes to
 * dir (the caller holds its lock). Returns how many were removed. Local, not collective. */
int ckpt_remove_tmp(const char *dir, const char *keep, int verbose);

#endif
