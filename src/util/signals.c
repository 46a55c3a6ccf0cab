#include "util/signals.h"

#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/err.h"

/* Written only by the handler (first signal wins), read by the loop. */
static volatile sig_atomic_t stop_sig_ = 0;
static int installed_ = 0;
static long step_delay_ms_ = 0; /* test hook, see signals.h */

static void on_stop_signal_(int sig) {
  if (stop_sig_ == 0) stop_sig_ = sig;
}

static const int stop_signals_[] = {SIGUSR1, SIGTERM};
enum { N_STOP_SIGNALS = (int)(sizeof stop_signals_ / sizeof stop_signals_[0]) };

int signals_install(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop_signal_;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int i = 0; i < N_STOP_SIGNALS; i++)
    if (sigaction(stop_signals_[i], &sa, NULL) != 0)
      return st_fail(ST_ERUNTIME, "sigaction(%s) failed: cannot catch stop requests",
                     stop_signals_[i] == SIGUSR1 ? "SIGUSR1" : "SIGTERM");
  stop_sig_ = 0;
  installed_ = 1;
  const char *d = getenv("SPECTRAIN_TEST_STEP_DELAY_MS");
  step_delay_ms_ = d ? atol(d) : 0;
  return ST_OK;
}

void signals_uninstall(void) {
  if (!installed_) return;
  for (int i = 0; i < N_STOP_SIGNALS; i++) signal(stop_signals_[i], SIG_DFL);
  stop_sig_ = 0;
  installed_ = 0;
}

int stop_requested(void) { return stop_sig_ != 0; }
int stop_signal(void) { return (int)stop_sig_; }

const char *stop_signal_name(void) {
  switch (stop_sig_) {
    case 0: return "none";
    case SIGUSR1: return "USR1";
    case SIGTERM: return "TERM";
    default: return "other";
  }
}

void signals_test_delay(void) {
  if (step_delay_ms_ > 0) {
    struct timespec ts = {step_delay_ms_ / 1000, (step_delay_ms_ % 1000) * 1000000L};
    nanosleep(&ts, NULL);
  }
}
