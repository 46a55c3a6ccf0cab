/* util/signals: USR1 and TERM set the stop flag (first signal wins) instead of ending the
 * process; without the handlers installed the flag stays clear; uninstall restores it all. */
#include <signal.h>

#include "test.h"
#include "util/signals.h"

int main(void) {
  CHECK_EQ_INT(stop_requested(), 0);
  CHECK_STR_EQ(stop_signal_name(), "none");
  CHECK_EQ_INT(signals_install(), 0);
  CHECK_EQ_INT(stop_requested(), 0);

  CHECK_EQ_INT(raise(SIGUSR1), 0); /* would end the process without the handler */
  CHECK_EQ_INT(stop_requested(), 1);
  CHECK_EQ_INT(stop_signal(), SIGUSR1);
  CHECK_STR_EQ(stop_signal_name(), "USR1");
  CHECK_EQ_INT(raise(SIGTERM), 0); /* a later TERM does not replace the first request */
  CHECK_EQ_INT(stop_signal(), SIGUSR1);

  signals_uninstall();
  CHECK_EQ_INT(stop_requested(), 0);
  struct sigaction sa;
  CHECK_EQ_INT(sigaction(SIGTERM, NULL, &sa), 0);
  CHECK(sa.sa_handler == SIG_DFL);

  CHECK_EQ_INT(signals_install(), 0);
  CHECK_EQ_INT(raise(SIGTERM), 0);
  CHECK_STR_EQ(stop_signal_name(), "TERM");
  signals_uninstall();
  return test_done();
}
