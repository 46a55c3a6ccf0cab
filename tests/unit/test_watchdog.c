/* util/watchdog: an armed deadline that passes ends the process with status 1 and an error
 * naming the operation, the bound and its key; disarming in time, re-arming (which replaces
 * the deadline) and a bound of 0 end nothing. The ending cases run in forked children. */
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"
#include "util/watchdog.h"

static void sleep_s_(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  nanosleep(&ts, NULL);
}

/* Runs fn in a child with stderr into `path`; returns its wait status. */
static int in_child_(void (*fn)(void), const char *path) {
  fflush(NULL);
  pid_t p = fork();
  if (p == 0) {
    if (!freopen(path, "w", stderr)) _exit(3);
    fn();
    _exit(0);
  }
  int st = 0;
  waitpid(p, &st, 0);
  return st;
}

static void expires_(void) {
  watchdog_arm(0.2, "writing the checkpoint at step 7", "distributed.checkpoint_timeout_s");
  sleep_s_(5); /* ended long before */
  _exit(0);
}
static void disarmed_(void) {
  watchdog_arm(0.2, "a", "k");
  watchdog_disarm();
  sleep_s_(0.4);
  watchdog_arm(0.3, "b", "k"); /* replaced before it passes: the later deadline counts */
  sleep_s_(0.15);
  watchdog_arm(0.5, "c", "k");
  sleep_s_(0.25);
  watchdog_disarm();
  watchdog_arm(0, "d", "k"); /* 0: nothing armed */
  sleep_s_(0.3);
}

int main(void) {
  char path[] = "/tmp/unit-watchdog-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  close(fd);
  int st = in_child_(expires_, path);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1);
  char buf[1024] = "";
  FILE *f = fopen(path, "r");
  CHECK(f != NULL);
  if (f) {
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
  }
  CHECK_MSG(strstr(buf, "writing the checkpoint at step 7 has not finished after 0.2 s "
                        "(distributed.checkpoint_timeout_s)") != NULL,
            "message: %s", buf);
  st = in_child_(disarmed_, path);
  CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d", st);
  unlink(path);
  return test_done();
}
