/* Checkpoints: one HDF5 file per save, written collectively by all ranks, every tensor
 * stored under its Hugging Face name in full shape, so any rank count can resume any
 * checkpoint. Layout: docs/checkpoint-format.md.
 *
 * The caller (the training loop) describes what this rank holds as a list of slices:
 * "elements [begin, begin+count) of tensor t's row-major flat index, of kind k, are at
 * data". A rank may hold any number of slices, of any tensors, including none; the union
 * over ranks of the slices of one (tensor, kind) should cover it exactly once when
 * writing. Reading fills exactly the slices asked for, whatever rank count wrote the file.
 *
 * A checkpoint exists only when complete: ckpt-<step>.h5.tmp is written, every handle
 * closed, the file fsync'd, renamed to ckpt-<step>.h5 and the directory fsync'd. Each
 * tensor carries a checksum attribute computed over the full tensor in a rank-count
 * independent way (ckpt_hash_range), so a reader with any rank count can verify it.
 *
 * All ckpt_save/ckpt_load/ckpt_verify/ckpt_resolve_resume calls are collective over
 * MPI_COMM_WORLD: every rank calls them with the same path and the same tensor table. */
#ifndef SPECTRAIN_CKPT_CKPT_H
#define SPECTRAIN_CKPT_CKPT_H
#include <stddef.h>
#include <stdint.h>

#include "io/safetensors.h"
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

typedef struct {
  int save_total_limit; /* keep the newest N checkpoints (0: keep all) */
} ckpt_save_opts;

typedef struct {
  char path[1024];       /* final path ckpt-<step>.h5 */
  uint64_t tensor_bytes; /* bytes of tensor data in the file (all ranks together) */
  double seconds;        /* from start to committed (rename + fsync) */
  double write_seconds;  /* open .. close (HDF5 collective writes only) */
} ckpt_save_stats;

/* Write <dir>/ckpt-<meta->step>.h5 atomically (collective). meta->have_master says
 * whether CKPT_MASTER slices are given. Then removes older checkpoints beyond
 * save_total_limit. On failure every rank returns the same nonzero status and no
 * ckpt-<step>.h5 exists (a .tmp may be left and is ignored by resume). */
int ckpt_save(const char *dir, const tensor_table *tt, const ckpt_meta *meta,
              const ckpt_slice *s, int ns, const ckpt_save_opts *o, ckpt_save_stats *st);

/* Read metadata (collective when `collective`, else a plain serial open on the calling
 * rank only). */
int ckpt_read_meta(const char *path, int collective, ckpt_meta *meta);

/* Fill the slices from the checkpoint (collective). The file's tensors must match the
 * table's names and shapes (ST_EINPUT naming the tensor otherwise). CKPT_MASTER slices are
 * filled from /params when the file has no master copy. m/v asked for a tensor the file
 * has no moments for is an ST_EINPUT error. Does not verify checksums (ckpt_verify). */
int ckpt_load(const char *path, const tensor_table *tt, const ckpt_slice *s, int ns);

/* Re-read every tensor (each rank an equal part) and compare with the checksum attributes
 * (collective). ST_EINPUT naming the first bad tensor, or a file HDF5 cannot open. */
int ckpt_verify(const char *path);

/* --resume MODE: "none" -> *path = NULL; "auto" -> the newest ckpt-<step>.h5 in dir that
 * verifies (corrupt ones are reported with log_warn and skipped), NULL when there is none;
 * anything else is a path that must verify. Collective; *path is malloc'd. */
int ckpt_resolve_resume(const char *dir, const char *mode, char **path);

/* A checkpoint must belong to this job: same architecture (config.json keys that decide
 * shapes) and the same trainable set. ST_EINPUT naming the first difference, with the hint
 * that the job can take the checkpoint's. */
int ckpt_check_job(const ckpt_meta *ck, const char *config_json, char *const *trainable,
                   int n_trainable);

/* Rank-count independent checksum of a float tensor: the sum (mod 2^64) over elements of
 * a mix of (flat index, bit pattern). Ranks hash their ranges and add the results. */
uint64_t ckpt_hash_range(uint64_t begin, uint64_t count, const float *x);

/* Checkpoints in dir, newest first: steps and paths (malloc'd). Local, not collective. */
int ckpt_list(const char *dir, uint64_t **steps, char ***paths, int *n);

/* `spectrain inspect CKPT.h5`: step, tokens, data position, trainable summary, size per
 * group; with `tensors` every dataset with shape and size; as one JSON object when
 * `as_json`. Serial (called on rank 0 only). */
int ckpt_inspect(const char *path, int tensors, int as_json);

/* Write a Hugging Face model directory from a checkpoint's /params (and its config.json):
 * model.safetensors, or model-0000k-of-0000n.safetensors + index when the tensors exceed
 * max_shard_bytes (0: no limit). Serial, rank 0 only. */
int ckpt_export(const char *path, const char *out_dir, sft_dtype dtype,
                uint64_t max_shard_bytes);

/* Serial reading of one checkpoint file (inspect, export): entries in tensor-table order,
 * one per dataset present (/params first, then /master, /optim/m, /optim/v). */
typedef struct {
  char name[128];
  ckpt_kind kind;
  int ndim;
  int64_t shape[2];
  uint64_t numel;
  uint64_t checksum;
} ckpt_entry;
typedef struct ckpt_reader ckpt_reader;
int ckpt_reader_open(const char *path, ckpt_reader **r, ckpt_meta *meta, ckpt_entry **e,
                     int *n);
int ckpt_reader_read(ckpt_reader *r, const ckpt_entry *e, float *out); /* numel floats */
void ckpt_reader_close(ckpt_reader *r);

/* Test hook: SPECTRAIN_TEST_CKPT_KILL_AFTER_TENSORS=k makes rank
 * SPECTRAIN_TEST_CKPT_KILL_RANK (default: the last rank) SIGKILL itself right after its
 * k-th tensor dataset write of a save (kill tests: the previous checkpoint must survive);
 * with SPECTRAIN_TEST_CKPT_KILL_STEP=s only in the save of step s. */
#endif
