/* A deadline for what cannot poll one itself (a checkpoint write inside parallel HDF5's
 * MPI-IO, where a lost host leaves every rank blocked): a thread that, once an armed
 * deadline has passed, prints an error naming the operation on this rank and ends the
 * process with _exit(1), so that the launcher (mpirun, srun) ends the job. One deadline at a
 * time (arming again replaces it). The thread starts on the first arm and sleeps in between. */
#ifndef SPECTRAIN_UTIL_WATCHDOG_H
#define SPECTRAIN_UTIL_WATCHDOG_H
#include "util/err.h"

/* seconds <= 0 disarms. `what` and the key are copied: "writing the checkpoint of step 40"
 * and the job key that set the bound, both named in the message. Returns ST_OK, or
 * ST_ERUNTIME when the thread cannot start (then nothing is armed). */
int watchdog_arm(double seconds, const char *what, const char *key);
void watchdog_disarm(void);

#endif
