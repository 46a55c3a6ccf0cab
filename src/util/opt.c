#include "util/opt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

int opt_edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  int *row = xmalloc((lb + 1) * sizeof *row);
  for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
  for (size_t i = 1; i <= la; i++) {
    int diag = row[0];
    row[0] = (int)i;
    for (size_t j = 1; j <= lb; j++) {
      int up = row[j];
      int best = diag + (a[i - 1] != b[j - 1]);
      if (up + 1 < best) best = up + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  int d = row[lb];
  free(row);
  return d;
}

static const opt_spec *find_(const opt_spec *specs, int n, const char *name, size_t len) {
  for (int i = 0; i < n; i++)
    if (strlen(specs[i].name) == len && strncmp(specs[i].name, name, len) == 0) return &specs[i];
  return NULL;
}

static int unknown_(const opt_cmd *cmd, const opt_spec *specs, int n, const char *arg) {
  const char *best = NULL;
  int bestd = 1 << 30;
  for (int i = 0; i < n; i++) {
    int d = opt_edit_distance(arg + 2, specs[i].name);
    if (d < bestd) bestd = d, best = specs[i].name;
  }
  if (best && bestd <= 3)
    return st_fail(ST_EINPUT, "%s: unknown option '%s' (did you mean '--%s'?); see 'spectrain %s --help'",
                   cmd->name, arg, best, cmd->name);
  return st_fail(ST_EINPUT, "%s: unknown option '%s'; see 'spectrain %s --help'", cmd->name, arg,
                 cmd->name);
}

static void list_push_(opt_list *l, const char *v) {
  l->v = xrealloc((void *)l->v, (size_t)(l->n + 1) * sizeof *l->v);
  l->v[l->n++] = v;
}

static int store_(const opt_cmd *cmd, const opt_spec *s, const char *val) {
  char *end;
  switch (s->kind) {
  case OPT_STR: *(const char **)s->dst = val; return 0;
  case OPT_INT: {
    errno = 0;
    long v = strtol(val, &end, 10);
    if (errno || end == val || *end)
      return st_fail(ST_EINPUT, "%s: option --%s expects an integer, found '%s'", cmd->name,
                     s->name, val);
    *(long *)s->dst = v;
    return 0;
  }
  case OPT_DOUBLE: {
    errno = 0;
    double v = strtod(val, &end);
    if (errno || end == val || *end)
      return st_fail(ST_EINPUT, "%s: option --%s expects a number, found '%s'", cmd->name,
                     s->name, val);
    *(double *)s->dst = v;
    return 0;
  }
  case OPT_MULTI:
  case OPT_NARGS: list_push_((opt_list *)s->dst, val); return 0;
  case OPT_FLAG: break;
  }
  return 0;
}

int opt_parse(const opt_cmd *cmd, const opt_spec *specs, int nspecs, int argc, char **argv,
              int *npos, char ***pos) {
  char **p = xcalloc((size_t)argc + 1, sizeof *p);
  int np = 0, only_pos = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (only_pos || a[0] != '-' || a[1] == '\0') {
      p[np++] = argv[i];
      continue;
    }
    if (strcmp(a, "--") == 0) {
      only_pos = 1;
      continue;
    }
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      opt_print_help(stdout, cmd, specs, nspecs);
      free(p);
      return OPT_HELP_SHOWN;
    }
    if (a[1] != '-') {
      free(p);
      return st_fail(ST_EINPUT, "%s: unknown option '%s' (options are long: --name); see 'spectrain %s --help'",
                     cmd->name, a, cmd->name);
    }
    const char *eq = strchr(a, '=');
    size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
    const opt_spec *s = find_(specs, nspecs, a + 2, len);
    if (!s) {
      free(p);
      return unknown_(cmd, specs, nspecs, a);
    }
    int rc = 0;
    if (s->kind == OPT_FLAG) {
      if (eq) rc = st_fail(ST_EINPUT, "%s: option --%s takes no value", cmd->name, s->name);
      else *(int *)s->dst = 1;
    } else if (eq) {
      rc = store_(cmd, s, eq + 1);
    } else if (i + 1 >= argc) {
      rc = st_fail(ST_EINPUT, "%s: option --%s needs a value (%s)", cmd->name, s->name,
                   s->metavar ? s->metavar : "VALUE");
    } else {
      rc = store_(cmd, s, argv[++i]);
      if (s->kind == OPT_NARGS)
        while (!rc && i + 1 < argc && !(argv[i + 1][0] == '-' && argv[i + 1][1] == '-'))
          rc = store_(cmd, s, argv[++i]);
    }
    if (rc) {
      free(p);
      return rc;
    }
  }
  if (np < cmd->min_pos || np > cmd->max_pos) {
    free(p);
    if (np < cmd->min_pos)
      return st_fail(ST_EINPUT, "%s: missing argument; usage: spectrain %s %s [options]", cmd->name,
                     cmd->name, cmd->args);
    return st_fail(ST_EINPUT, "%s: unexpected argument '%s'; usage: spectrain %s %s [options]",
                   cmd->name, argv[argc - 1], cmd->name, cmd->args);
  }
  *npos = np;
  *pos = p;
  return 0;
}

void opt_print_help(FILE *f, const opt_cmd *cmd, const opt_spec *specs, int nspecs) {
  fprintf(f, "usage: spectrain %s%s%s [options]\n\n%s\n\noptions:\n", cmd->name,
          cmd->args[0] ? " " : "", cmd->args, cmd->summary);
  for (int i = 0; i < nspecs; i++) {
    const opt_spec *s = &specs[i];
    char left[96];
    if (s->kind == OPT_FLAG) snprintf(left, sizeof left, "--%s", s->name);
    else if (s->kind == OPT_NARGS) snprintf(left, sizeof left, "--%s %s [%s ...]", s->name, s->metavar, s->metavar);
    else snprintf(left, sizeof left, "--%s %s", s->name, s->metavar ? s->metavar : "VALUE");
    fprintf(f, "  %-28s %s%s\n", left, s->help, s->kind == OPT_MULTI ? " (repeatable)" : "");
  }
  fprintf(f, "  %-28s %s\n", "-h, --help", "show this help and exit");
  if (cmd->details) fprintf(f, "\n%s\n", cmd->details);
}

void opt_list_free(opt_list *l) {
  free((void *)l->v);
  l->v = NULL;
  l->n = 0;
}
