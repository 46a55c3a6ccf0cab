#include "mpi/grid.h"

#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/err.h"

/* ---- BLACS / ScaLAPACK (Fortran ABI; gfortran passes CHARACTER lengths as size_t) ---- */
int Csys2blacs_handle(MPI_Comm comm);
void Cfree_blacs_system_handle(int handle);
void Cblacs_gridinit(int *ctxt, const char *order, int nprow, int npcol);
void Cblacs_gridinfo(int ctxt, int *nprow, int *npcol, int *myrow, int *mycol);
void Cblacs_gridexit(int ctxt);
int numroc_(const int *n, const int *nb, const int *iproc, const int *isrcproc, const int *nprocs);
void descinit_(int *desc, const int *m, const int *n, const int *mb, const int *nb, const int *irsrc,
               const int *icsrc, const int *ictxt, const int *lld, int *info);
void pdgesvd_(const char *jobu, const char *jobvt, const int *m, const int *n, double *a,
              const int *ia, const int *ja, const int *desca, double *s, double *u, const int *iu,
              const int *ju, const int *descu, double *vt, const int *ivt, const int *jvt,
              const int *descvt, double *work, const int *lwork, int *info, size_t jobu_len,
              size_t jobvt_len);

struct comm_group {
  MPI_Comm comm;
  int rank, size;
  int blacs_handle, ctxt;
  int nprow, npcol, myrow, mycol;
};

int comm_group_split(int group_size, comm_group **out) {
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  *out = NULL;
  if (group_size < 1 || group_size > size)
    return st_fail(ST_EINPUT, "process group of %d ranks asked for, the world has %d", group_size, size);
  int ngroups = size / group_size;
  int color = rank / group_size < ngroups ? rank / group_size : MPI_UNDEFINED;
  MPI_Comm comm;
  if (MPI_Comm_split(MPI_COMM_WORLD, color, rank, &comm) != MPI_SUCCESS)
    return st_fail(ST_ERUNTIME, "MPI_Comm_split into groups of %d failed", group_size);
  if (comm == MPI_COMM_NULL) return ST_OK;
  comm_group *g = xcalloc(1, sizeof *g);
  g->comm = comm;
  MPI_Comm_rank(comm, &g->rank);
  MPI_Comm_size(comm, &g->size);
  /* near-square grid: nprow = the largest divisor <= sqrt(size) */
  int pr = 1;
  for (int d = 1; d * d <= g->size; d++)
    if (g->size % d == 0) pr = d;
  g->blacs_handle = Csys2blacs_handle(comm);
  g->ctxt = g->blacs_handle;
  Cblacs_gridinit(&g->ctxt, "Row", pr, g->size / pr);
  Cblacs_gridinfo(g->ctxt, &g->nprow, &g->npcol, &g->myrow, &g->mycol);
  *out = g;
  return ST_OK;
}

void comm_group_free(comm_group *g) {
  if (!g) return;
  Cblacs_gridexit(g->ctxt);
  Cfree_blacs_system_handle(g->blacs_handle);
  MPI_Comm_free(&g->comm);
  free(g);
}

int comm_group_rank(const comm_group *g) { return g->rank; }
int comm_group_size(const comm_group *g) { return g->size; }

int comm_group_max_status(const comm_group *g, int status) {
  int out = status;
  MPI_Allreduce(&status, &out, 1, MPI_INT, MPI_MAX, g->comm);
  return out;
}

static int block_size_(int64_t m, int64_t n, int nprow, int npcol) {
  int64_t mn = m < n ? m : n, p = nprow > npcol ? nprow : npcol;
  int64_t nb = mn / (2 * p);
  if (nb > 64) nb = 64;
  if (nb < 1) nb = 1;
  return (int)nb;
}

uint64_t grid_svd_bytes_per_rank(int64_t m, int64_t n, int g) {
  /* the local piece, PDGESVD's workspace (about as large again: it reduces a copy) and
   * O(m + n) vectors; measured (tests/mpi/test_grid_svd.c prints it): 1.8-2.2 x the
   * local piece for groups of 1 to 4 */
  return (uint64_t)(2.2 * 8.0 * (double)m * (double)n / g) + 32ull * (uint64_t)(m + n);
}

int grid_svd_values(comm_group *g, int64_t m64, int64_t n64, grid_fill_fn fill, void *ctx, double *s,
                    uint64_t *local_bytes) {
  if (m64 > 2147483647 || n64 > 2147483647)
    return st_fail(ST_EINPUT, "matrix %lld x %lld is too large for ScaLAPACK's 32-bit indices",
                   (long long)m64, (long long)n64);
  int m = (int)m64, n = (int)n64, zero = 0, one = 1, info = 0;
  int nb = block_size_(m64, n64, g->nprow, g->npcol);
  int mloc = numroc_(&m, &nb, &g->myrow, &zero, &g->nprow);
  int nloc = numroc_(&n, &nb, &g->mycol, &zero, &g->npcol);
  int lld = mloc > 1 ? mloc : 1;
  int desc[9];
  descinit_(desc, &m, &n, &nb, &nb, &zero, &zero, &g->ctxt, &lld, &info);
  if (info != 0) return st_fail(ST_ERUNTIME, "descinit failed (info %d) for %d x %d", info, m, n);
  size_t loc = (size_t)lld * (size_t)(nloc > 0 ? nloc : 1);
  double *a = xcalloc(loc, sizeof *a);
  /* This rank's blocks: local column jl is global column (jl/nb*npcol + mycol)*nb + jl%nb;
   * rows likewise over the process rows. Each owned run of up to nb rows is filled at once. */
  int rc = ST_OK;
  for (int jl = 0; jl < nloc && !rc; jl++) {
    int64_t j = ((int64_t)(jl / nb) * g->npcol + g->mycol) * nb + jl % nb;
    for (int il = 0; il < mloc && !rc; il += nb) {
      int64_t i0 = ((int64_t)(il / nb) * g->nprow + g->myrow) * nb;
      int64_t len = mloc - il < nb ? mloc - il : nb;
      rc = fill(ctx, j, i0, len, a + (size_t)jl * (size_t)lld + (size_t)il);
    }
  }
  rc = comm_group_max_status(g, rc);
  if (rc) {
    free(a);
    return rc ? rc : ST_ERUNTIME;
  }
  double dummy = 0, wq = 0;
  int lwork = -1;
  pdgesvd_("N", "N", &m, &n, a, &one, &one, desc, s, &dummy, &one, &one, desc, &dummy, &one, &one, desc,
           &wq, &lwork, &info, 1, 1);
  if (info != 0) {
    free(a);
    return st_fail(ST_ERUNTIME, "PDGESVD workspace query failed (info %d) for %d x %d", info, m, n);
  }
  lwork = (int)wq + 1;
  double *work = xmalloc((size_t)lwork * sizeof *work);
  pdgesvd_("N", "N", &m, &n, a, &one, &one, desc, s, &dummy, &one, &one, desc, &dummy, &one, &one, desc,
           work, &lwork, &info, 1, 1);
  if (local_bytes) *local_bytes = (uint64_t)(loc + (size_t)lwork) * sizeof(double);
  free(work);
  free(a);
  if (info != 0)
    return st_fail(ST_ERUNTIME, "PDGESVD failed (info %d) on a %d x %d matrix", info, m, n);
  return ST_OK;
}

/* ---- progress messages ---------------------------------------------------------------- */
enum { PROGRESS_TAG_ = 7101 };

void comm_progress_send(int item, int status) {
  int msg[2] = {item, status};
  /* two ints go eagerly: MPI_Send returns without waiting for rank 0 */
  MPI_Send(msg, 2, MPI_INT, 0, PROGRESS_TAG_, MPI_COMM_WORLD);
}

int comm_progress_poll(int *items, int *status, int cap, int wait_ms) {
  int got = 0;
  for (int waited = 0;;) {
    int flag = 0;
    MPI_Status st;
    MPI_Iprobe(MPI_ANY_SOURCE, PROGRESS_TAG_, MPI_COMM_WORLD, &flag, &st);
    if (flag && got < cap) {
      int msg[2];
      MPI_Recv(msg, 2, MPI_INT, st.MPI_SOURCE, PROGRESS_TAG_, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      items[got] = msg[0];
      status[got] = msg[1];
      got++;
      continue;
    }
    if (got > 0 || waited >= wait_ms) return got;
    /* sleep-poll: no busy-waiting on shared cores */
    struct timespec ts = {0, 2 * 1000 * 1000};
    nanosleep(&ts, NULL);
    waited += 2;
  }
}
