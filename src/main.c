/* spectrain: distributed Spectrum fine-tuning. Dispatches to a subcommand. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "mpi/coll.h"
#include "mpi/comm.h"
#include "util/err.h"

static void usage_(FILE *f) {
  fprintf(f, "usage: spectrain COMMAND [options]   (run under mpirun/srun for more ranks)\n\n"
             "commands:\n");
  for (int i = 0; i < spectrain_ncommands; i++)
    fprintf(f, "  %-10s %s\n", spectrain_commands[i].name, spectrain_commands[i].summary);
  fprintf(f, "\n'spectrain COMMAND --help' describes a command's options.\n"
             "Exit status: 0 success, 1 runtime failure, 2 usage or input error,\n"
             "75 stopped early on SIGUSR1/SIGTERM after writing a checkpoint (requeue the job:\n"
             "it resumes from that checkpoint).\n");
}

int main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    usage_(argc < 2 ? stderr : stdout);
    return argc < 2 ? ST_EINPUT : ST_OK;
  }
  if (strcmp(argv[1], "--version") == 0) {
    printf("spectrain %s\n", SPECTRAIN_VERSION);
    return ST_OK;
  }
  const command *cmd = NULL;
  for (int i = 0; i < spectrain_ncommands; i++)
    if (strcmp(argv[1], spectrain_commands[i].name) == 0) cmd = &spectrain_commands[i];
  if (!cmd) {
    fprintf(stderr, "spectrain: error: unknown command '%s'\n", argv[1]);
    usage_(stderr);
    return ST_EINPUT;
  }
  int rc = comm_init(&argc, &argv);
  if (rc) return st_report(rc);
  rc = cmd->run(argc - 1, argv + 1);
  /* a failure the command did not print itself is printed here, so none goes unsaid */
  if (rc > 0 && st_error_pending()) st_report(rc);
  /* A status that differs between ranks must not leave ranks waiting in a collective:
   * commands agree on errors themselves before collectives; here every rank just exits. */
  /* The collectives' transport first: an NCCL communicator is destroyed while MPI (and every
   * rank) is still there. */
  coll_shutdown();
  comm_finalize();
  return rc < 0 ? ST_OK : rc;
}
