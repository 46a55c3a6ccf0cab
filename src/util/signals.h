/* Stop requests from the batch system, turned into a clean stop at a step boundary.
 *
 * Slurm asks a job to stop with SIGUSR1 (`sbatch --signal=B:USR1@SECONDS`, forwarded to the
 * ranks by slurm/train.sbatch) some seconds before its time limit, and with SIGTERM when it is
 * cancelled, preempted or out of time (then SIGKILL KillWait seconds later). The handlers only
 * set a flag (async-signal-safe); the training command agrees on it once per step boundary
 * (cmd_train.c: one allreduce of stop_requested()), so every rank stops after the same step, writes one checkpoint
 * collectively and exits with ST_STOPPED ("stopped early, requeue me"); the batch script then
 * requeues the job, and the restarted job resumes from that checkpoint (`--resume auto`). */
#ifndef SPECTRAIN_UTIL_SIGNALS_H
#define SPECTRAIN_UTIL_SIGNALS_H

/* Install the SIGUSR1 and SIGTERM handlers (SA_RESTART, so interrupted system calls resume).
 * Only commands that poll the flag install them: elsewhere TERM keeps its default action. */
int signals_install(void);
/* Restore the default actions and clear the flag. */
void signals_uninstall(void);
/* 1 when this process has received a stop signal since signals_install(). */
int stop_requested(void);
/* The first stop signal received (SIGUSR1, SIGTERM), or 0. */
int stop_signal(void);
/* "USR1", "TERM", or "none". */
const char *stop_signal_name(void);
/* Test hook, called at each step boundary before the stop agreement: with
 * SPECTRAIN_TEST_STEP_DELAY_MS=N in the environment at signals_install() it sleeps N ms, so
 * that the Slurm preemption test can signal a tiny job while it is still training. */
void signals_test_delay(void);

#endif
