/* Checkpoint files in HDF5, written and read collectively by all ranks (the MPI-IO driver
 * of parallel HDF5): save (atomic), load, verify, and a serial reader for inspect/export.
 * Every tensor is stored under its Hugging Face name in full shape, so any rank count can
 * resume any checkpoint.
 *
 * A checkpoint exists only when complete: ckpt-<step>.h5.tmp is written, every handle
 * closed, the file fsync'd, renamed to ckpt-<step>.h5 and the directory fsync'd. Each
 * tensor carries a checksum attribute computed over the full tensor in a rank-count
 * independent way (ckpt_hash_range), so a reader with any rank count can verify it.
 *
 * ckpt_save/ckpt_load/ckpt_verify (and ckpt_read_meta with collective = 1) are collective
 * over MPI_COMM_WORLD: every rank calls them with the same path and the same tensor table. */
#ifndef SPECTRAIN_CKPT_H5_H
#define SPECTRAIN_CKPT_H5_H
#include <stddef.h>
#include <stdint.h>

#include "ckpt/format.h"
#include "model/tensors.h"

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
 * with SPECTRAIN_TEST_CKPT_KILL_STEP=s only in the save of step s.
 * SPECTRAIN_TEST_CKPT_PAUSE_AFTER_TENSORS=k makes every rank, after its k-th tensor dataset
 * write of a save (of step s only, with SPECTRAIN_TEST_CKPT_KILL_STEP), write the step into
 * the file $SPECTRAIN_TEST_CKPT_PAUSE_MARK.RANK (when set) and sleep
 * SPECTRAIN_TEST_CKPT_PAUSE_S seconds (default 1): a window in the middle of the write for
 * the node-loss tests to kill a host or cut its link.
 * SPECTRAIN_TEST_CKPT_KILL_PHASE=P / SPECTRAIN_TEST_CKPT_PAUSE_PHASE=P do the same at a named
 * point instead of after a tensor: "create" (before the file exists), "closed" (the .tmp
 * complete and closed), "renamed" and "committed" (rank 0 only: after the rename, after the
 * pruning). SPECTRAIN_TEST_CKPT_NO_RESERVE=1 skips the space reservation (a full disk then
 * strikes in the middle of the write). */
#endif
