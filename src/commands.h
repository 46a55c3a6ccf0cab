/* Subcommands. Each takes (argc, argv) with argv[0] = its name, parses its own option
 * table (util/opt.h) and returns an exit status (0, ST_ERUNTIME, ST_EINPUT). MPI is
 * initialised by main() before any of them runs. */
#ifndef SPECTRAIN_COMMANDS_H
#define SPECTRAIN_COMMANDS_H

typedef struct {
  const char *name;
  const char *summary;
  int (*run)(int argc, char **argv);
} command;

int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_analyze(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_import(int argc, char **argv);

/* The table main() dispatches on (src/commands.c). */
extern const command spectrain_commands[];
extern const int spectrain_ncommands;

#endif
