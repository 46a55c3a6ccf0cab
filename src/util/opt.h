/* Command-line options from one table per subcommand; --help is generated from the same
 * table, so usage text cannot drift from the parser. */
#ifndef SPECTRAIN_UTIL_OPT_H
#define SPECTRAIN_UTIL_OPT_H
#include <stdio.h>

typedef enum {
  OPT_FLAG,   /* --x              : int* set to 1 */
  OPT_STR,    /* --x VALUE        : const char** */
  OPT_INT,    /* --x N            : long* */
  OPT_DOUBLE, /* --x X            : double* */
  OPT_MULTI,  /* --x V, repeatable: opt_list* (one value per occurrence) */
  OPT_NARGS   /* --x V [V ...]    : opt_list* (values up to the next --option) */
} opt_kind;

typedef struct {
  int n;
  const char **v; /* points into argv; free the array with opt_list_free */
} opt_list;

typedef struct {
  const char *name; /* long name without the dashes, e.g. "top-percent" */
  opt_kind kind;
  const char *metavar; /* e.g. "DIR"; NULL for flags */
  const char *help;    /* one line; say the default here */
  void *dst;
} opt_spec;

typedef struct {
  const char *name;       /* "analyze" */
  const char *args;       /* positional synopsis, e.g. "JOB.yaml" or "" */
  int min_pos, max_pos;   /* how many positional arguments are accepted */
  const char *summary;    /* one line for `spectrain --help` */
  const char *details;    /* paragraphs printed after the options, or NULL */
} opt_cmd;

enum { OPT_HELP_SHOWN = -1 };

/* Parse argv[0..argc) (argv[0] is the subcommand name). Positionals are returned in
 * *pos (array owned by the caller: free()). Returns 0, ST_EINPUT with a message naming
 * the option, or OPT_HELP_SHOWN after printing help to stdout. */
int opt_parse(const opt_cmd *cmd, const opt_spec *specs, int nspecs, int argc, char **argv,
              int *npos, char ***pos);
void opt_print_help(FILE *f, const opt_cmd *cmd, const opt_spec *specs, int nspecs);
void opt_list_free(opt_list *l);

/* Levenshtein distance, for "did you mean" suggestions. */
int opt_edit_distance(const char *a, const char *b);

#endif
