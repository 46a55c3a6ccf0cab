#include "util/watchdog.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t mu_ = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv_; /* on CLOCK_MONOTONIC */
static int started_ = 0, armed_ = 0;
static struct timespec deadline_;
static double seconds_;
static char what_[256], key_[96];

static int passed_(const struct timespec *now) {
  return now->tv_sec > deadline_.tv_sec ||
         (now->tv_sec == deadline_.tv_sec && now->tv_nsec >= deadline_.tv_nsec);
}

static void *run_(void *arg) {
  (void)arg;
  pthread_mutex_lock(&mu_);
  for (;;) {
    if (!armed_) {
      pthread_cond_wait(&cv_, &mu_);
      continue;
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (!passed_(&now)) {
      pthread_cond_timedwait(&cv_, &mu_, &deadline_);
      continue;
    }
    char host[64] = "?";
    gethostname(host, sizeof host - 1);
    log_error("on host %s: %s has not finished after %g s (%s): a rank or host was lost, a "
              "link cut, or the file system stalls; ending this rank so that the launcher ends "
              "the job (a checkpoint being written is left as a .tmp file; the newest complete "
              "one is the last good state: resubmit to resume from it)",
              host, what_, seconds_, key_);
    _exit(1);
  }
  return NULL;
}

int watchdog_arm(double seconds, const char *what, const char *key) {
  if (seconds <= 0) {
    watchdog_disarm();
    return ST_OK;
  }
  pthread_mutex_lock(&mu_);
  if (!started_) {
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&cv_, &ca);
    pthread_condattr_destroy(&ca);
    pthread_t th;
    int e = pthread_create(&th, NULL, run_, NULL);
    if (e) {
      pthread_mutex_unlock(&mu_);
      return st_fail(ST_ERUNTIME, "cannot start the watchdog thread: %s", strerror(e));
    }
    pthread_detach(th);
    started_ = 1;
  }
  clock_gettime(CLOCK_MONOTONIC, &deadline_);
  deadline_.tv_sec += (time_t)seconds;
  deadline_.tv_nsec += (long)((seconds - (double)(time_t)seconds) * 1e9);
  if (deadline_.tv_nsec >= 1000000000L) {
    deadline_.tv_sec++;
    deadline_.tv_nsec -= 1000000000L;
  }
  seconds_ = seconds;
  snprintf(what_, sizeof what_, "%s", what);
  snprintf(key_, sizeof key_, "%s", key);
  armed_ = 1;
  pthread_cond_signal(&cv_);
  pthread_mutex_unlock(&mu_);
  return ST_OK;
}

void watchdog_disarm(void) {
  pthread_mutex_lock(&mu_);
  armed_ = 0;
  if (started_) pthread_cond_signal(&cv_);
  pthread_mutex_unlock(&mu_);
}
