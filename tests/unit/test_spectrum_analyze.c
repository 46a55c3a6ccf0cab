/* spectrum/analyze on one rank (no MPI launcher; also run under ASan): the fixture model's
 * files match the numpy reference (SNR rtol 1e-4, byte-identical YAML), the second call
 * reuses the cache, a touched model file is scanned again, a selection for the training
 * loop returns the YAML path. */
#include <sys/stat.h>
#include <unistd.h>
#include <utime.h>

#include "spectrum/analyze.h"
#include "test.h"
#include "util/err.h"

static char *slurp_(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  size_t got = fread(s, 1, (size_t)n, f);
  s[got] = 0;
  fclose(f);
  return s;
}

int main(void) {
  const char *fx = getenv("FIXTURES");
  const char *tmp = getenv("TEST_TMP");
  if (!fx) fx = SPECTRAIN_SOURCE_DIR "/tests/fixtures";
  char *dir = xasprintf("%s/spectrum_analyze_unit.%d", tmp ? tmp : "/tmp", (int)getpid());
  char *model_dir = xasprintf("%s/model", dir);
  char *cmd = xasprintf("mkdir -p '%s' && cp '%s/spectrum/tiny-llama/model.safetensors' '%s/'", model_dir, fx,
                        model_dir);
  CHECK(system(cmd) == 0);
  free(cmd);
  log_set_quiet(1);

  double pcts[3] = {10, 25, 50};
  analyze_opts o;
  memset(&o, 0, sizeof o);
  o.model_path = model_dir;
  o.model_name = "tiny-llama";
  o.out_dir = dir;
  o.percents = pcts;
  o.n_percents = 3;
  o.scan.quiet = 1;
  analyze_result r;
  CHECK_EQ_INT(spectrum_analyze(&o, &r), 0);
  CHECK_EQ_INT(r.from_cache, 0);
  CHECK_EQ_INT(r.table.n, 112);
  /* numbers against the reference JSON */
  double *mine = malloc((size_t)r.table.n * sizeof *mine);
  for (int i = 0; i < r.table.n; i++) mine[i] = r.table.m[i].snr;
  char *refjson = xasprintf("%s/spectrum/expected/tiny-llama/model_snr_results/snr_results_tiny-llama.json", fx);
  CHECK_EQ_INT(snr_load_json(&r.table, refjson), 0);
  int n_inf = 0;
  for (int i = 0; i < r.table.n; i++) {
    double want = r.table.m[i].snr;
    if (isinf(want)) {
      n_inf++;
      CHECK(isinf(mine[i]));
    } else {
      CHECK_CLOSE(mine[i], want, 1e-4, 0);
    }
    r.table.m[i].snr = mine[i];
  }
  CHECK_EQ_INT(n_inf, 1); /* the all-zero o_proj */
  free(refjson);
  free(mine);
  for (int k = 0; k < 3; k++) {
    char *want_path = xasprintf("%s/spectrum/expected/tiny-llama/snr_results_tiny-llama_unfrozenparameters_%dpercent.yaml",
                                fx, (int)pcts[k]);
    char *a = slurp_(r.yaml_paths[k]), *b = slurp_(want_path);
    CHECK_MSG(a && b && strcmp(a, b) == 0, "%s differs from %s", r.yaml_paths[k], want_path);
    free(a);
    free(b);
    free(want_path);
  }
  analyze_result_free(&r);

  /* cached */
  double p2 = 25;
  o.percents = &p2;
  o.n_percents = 1;
  CHECK_EQ_INT(spectrum_analyze(&o, &r), 0);
  CHECK_EQ_INT(r.from_cache, 1);
  analyze_result_free(&r);
  /* a changed model file: scanned again */
  char *mf = xasprintf("%s/model.safetensors", model_dir);
  struct utimbuf ut = {1000000000, 1000000000};
  CHECK(utime(mf, &ut) == 0);
  CHECK_EQ_INT(spectrum_analyze(&o, &r), 0);
  CHECK_EQ_INT(r.from_cache, 0);
  analyze_result_free(&r);
  free(mf);

  /* the training loop's entry: default name = the directory's base name */
  char *yaml = NULL;
  CHECK_EQ_INT(spectrum_select_yaml(model_dir, NULL, 50, NULL, 0, dir, SCAN_SOLVER_CPU, &yaml, NULL), 0);
  char *want = xasprintf("%s/snr_results_model_unfrozenparameters_50percent.yaml", dir);
  CHECK_STR_EQ(yaml, want);
  free(want);
  free(yaml);

  /* errors: bad percent, unknown type, a model without weights */
  double bad = 120;
  o.percents = &bad;
  CHECK_EQ_INT(spectrum_analyze(&o, &r), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "top-percent");
  const char *types[] = {"mlp.down_prj"};
  o.percents = &p2;
  o.types = types;
  o.n_types = 1;
  CHECK_EQ_INT(spectrum_analyze(&o, &r), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "mlp.down_prj");

  cmd = xasprintf("rm -rf '%s'", dir);
  CHECK(system(cmd) == 0);
  free(cmd);
  free(model_dir);
  free(dir);
  return test_done();
}
