/* util/opt: option parsing, errors that name the option, generated help. */
#include "test.h"
#include "util/err.h"
#include "util/opt.h"

int main(void) {
  const char *model = NULL;
  long steps = 7;
  double lr = 0;
  int flag = 0;
  opt_list sets = {0}, pcts = {0};
  opt_spec specs[] = {
      {"model", OPT_STR, "DIR", "model directory", &model},
      {"max-steps", OPT_INT, "N", "steps (default 7)", &steps},
      {"lr", OPT_DOUBLE, "X", "learning rate", &lr},
      {"json", OPT_FLAG, NULL, "print JSON", &flag},
      {"set", OPT_MULTI, "KEY=VALUE", "override", &sets},
      {"top-percent", OPT_NARGS, "N", "percents", &pcts},
  };
  opt_cmd cmd = {"demo", "JOB.yaml", 1, 1, "a demo", NULL};
  char *argv[] = {"demo", "--model", "m", "--max-steps=12", "--lr", "1e-3", "--json", "--set",
                  "a.b=1", "job.yaml", "--set", "c=2", "--top-percent", "10", "25", "50"};
  int np = 0;
  char **pos = NULL;
  int rc = opt_parse(&cmd, specs, 6, 16, argv, &np, &pos);
  CHECK_EQ_INT(rc, 0);
  CHECK_STR_EQ(model, "m");
  CHECK_EQ_INT(steps, 12);
  CHECK_CLOSE(lr, 1e-3, 0, 0);
  CHECK_EQ_INT(flag, 1);
  CHECK_EQ_INT(sets.n, 2);
  CHECK_EQ_INT(pcts.n, 3);
  CHECK_EQ_INT(np, 1);
  if (np == 1) CHECK_STR_EQ(pos[0], "job.yaml");
  free(pos);
  opt_list_free(&sets);
  opt_list_free(&pcts);

  char *bad1[] = {"demo", "--max-step", "3", "j"};
  CHECK_EQ_INT(opt_parse(&cmd, specs, 6, 4, bad1, &np, &pos), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "did you mean '--max-steps'");
  char *bad2[] = {"demo", "--max-steps", "x3", "j"};
  CHECK_EQ_INT(opt_parse(&cmd, specs, 6, 4, bad2, &np, &pos), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "--max-steps expects an integer, found 'x3'");
  char *bad3[] = {"demo"};
  CHECK_EQ_INT(opt_parse(&cmd, specs, 6, 1, bad3, &np, &pos), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "missing argument");
  char *bad4[] = {"demo", "j", "--model"};
  CHECK_EQ_INT(opt_parse(&cmd, specs, 6, 3, bad4, &np, &pos), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "--model needs a value");

  char buf[4096];
  FILE *f = fmemopen(buf, sizeof buf, "w");
  opt_print_help(f, &cmd, specs, 6);
  fclose(f);
  CHECK_CONTAINS(buf, "--max-steps N");
  CHECK_CONTAINS(buf, "--top-percent N [N ...]");
  CHECK_CONTAINS(buf, "(repeatable)");
  CHECK_EQ_INT(opt_edit_distance("kitten", "sitting"), 3);
  return test_done();
}
