/* Sub-groups of the world and ScaLAPACK on them (the Spectrum scan's big-matrix path).
 * ScaLAPACK/BLACS ship no C header on Debian: the Fortran and Cblacs entry points are
 * declared in grid.c (Fortran ABI: arguments by pointer, column-major, 1-based indices,
 * hidden CHARACTER lengths at the end). */
#ifndef SPECTRAIN_MPI_GRID_H
#define SPECTRAIN_MPI_GRID_H
#include <stdint.h>

typedef struct comm_group comm_group;

/* Split the world into groups of group_size consecutive ranks (rank r is in group
 * r / group_size; ranks past the last full group get *g = NULL). Collective over the world. */
int comm_group_split(int group_size, comm_group **g);
void comm_group_free(comm_group *g);
int comm_group_rank(const comm_group *g);
int comm_group_size(const comm_group *g);
/* Maximum of a status over the group (so one rank's read error skips the collective). */
int comm_group_max_status(const comm_group *g, int status);

/* Fills the local piece A(i0 .. i0+len-1, j) (0-based global indices) of the column-major
 * matrix being decomposed into dst[0 .. len). Returns ST_*. */
typedef int (*grid_fill_fn)(void *ctx, int64_t j, int64_t i0, int64_t len, double *dst);

/* Singular values (descending, min(m,n) of them, on every member) of the m x n matrix A,
 * distributed block-cyclically (square nb blocks) over a near-square BLACS grid of the
 * group; each rank fills only its own blocks through `fill`. PDGESVD with jobu=jobvt='N'.
 * Collective over the group. *local_bytes gets this rank's peak allocation. */
int grid_svd_values(comm_group *g, int64_t m, int64_t n, grid_fill_fn fill, void *ctx, double *s,
                    uint64_t *local_bytes);
/* Bytes one rank of a g-rank grid needs for an m x n matrix (estimate used for scheduling). */
uint64_t grid_svd_bytes_per_rank(int64_t m, int64_t n, int g);

/* Progress messages of a distributed loop to rank 0 (tag-separated, point to point, so
 * ranks need not take part in the same number of calls). */
void comm_progress_send(int item, int status);  /* rank != 0: one message per finished item */
/* Rank 0: receive pending messages (wait_ms > 0: sleep-poll up to that long for one);
 * returns how many were received; items[]/status[] (capacity cap) get their contents. */
int comm_progress_poll(int *items, int *status, int cap, int wait_ms);

#endif
