/* For the other files of mpi/ only (it includes mpi.h): waiting on a request under the
 * job's collective deadline (comm_set_timeout). */
#ifndef SPECTRAIN_MPI_COMM_INTERNAL_H
#define SPECTRAIN_MPI_COMM_INTERNAL_H
#include <mpi.h>

/* Completes *r (MPI_SUCCESS or MPI's error code). Polls MPI_Test with a sleeping backoff
 * (10 us .. 0.5 ms; MPI_Wait spins a core at 100 %, which on shared cores steals time from
 * ranks still computing; SPECTRAIN_COMM_SPIN=1 polls without sleeping). When a timeout is
 * set and *r is not complete after it, names the ranks that no longer answer (see
 * comm_set_timeout) and ends the job with MPI_Abort: it does not return. `what` names the
 * operation in that message ("all-gather", ...). */
int comm_wait_request(MPI_Request *r, const char *what);

#endif
