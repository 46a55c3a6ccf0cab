/* spectrain analyze: the Spectrum scan of a checkpoint (see spectrum/analyze.h). */
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "spectrum/analyze.h"
#include "util/err.h"
#include "util/opt.h"

int cmd_analyze(int argc, char **argv) {
  const char *model = NULL, *name = NULL, *out = ".", *types = NULL, *mem = NULL, *solver = "auto";
  opt_list pcts = {0};
  int rescan = 0, no_heatmap = 0, quiet = 0;
  opt_spec specs[] = {
      {"model", OPT_STR, "DIR", "model directory (safetensors, with or without an index) or one "
                                ".safetensors file; config.json is not needed (when present, its tie_word_embeddings "
                                "makes lm_head a module of its own, as in Spectrum)", &model},
      {"model-name", OPT_STR, "NAME", "names the files (slug: '/' and '_' become '-'), e.g. "
                                      "Qwen/Qwen3-8B", &name},
      {"top-percent", OPT_NARGS, "N", "write one unfrozen-parameters YAML per N (0-100)", &pcts},
      {"types", OPT_STR, "T1,T2", "scan only these module types (e.g. mlp.down_proj,self_attn.q_proj); "
                                  "default all", &types},
      {"out", OPT_STR, "DIR", "output directory (default .)", &out},
      {"rank-mem-limit", OPT_STR, "SIZE", "memory one rank may use for one matrix (e.g. 2G, 512M); "
                                          "bigger matrices go to ScaLAPACK grids (default: available "
                                          "memory / ranks per node / 2)", &mem},
      {"solver", OPT_STR, "auto|cpu|gpu", "singular values with: auto (cuSOLVER on each rank's GPU "
                                          "when every rank has one, for matrices that fit it with "
                                          "shorter side >= 256; default), cpu (LAPACK/ScaLAPACK "
                                          "only), gpu (cuSOLVER for every matrix that fits; error "
                                          "without a GPU)", &solver},
      {"rescan", OPT_FLAG, NULL, "ignore the cached scan", &rescan},
      {"no-heatmap", OPT_FLAG, NULL, "do not write the SVG heatmaps", &no_heatmap},
      {"quiet", OPT_FLAG, NULL, "no progress lines", &quiet},
  };
  static const opt_cmd cmd = {
      "analyze", "", 0, 0, "Spectrum scan: SNR of every weight matrix, unfrozen-parameters YAMLs",
      "Writes into --out: model_snr_results/snr_results_<slug>.json, snr_results_<slug>_sorted.json,\n"
      "snr_results_<slug>_unfrozenparameters_<N>percent.yaml and snr_heatmap_<slug>_<N>percent.svg,\n"
      "interchangeable with Spectrum's (QuixiAI/spectrum) files. A second run reuses the cached scan\n"
      "unless the model files changed. Run under mpirun/srun for more ranks (one rank per GPU).\n"
      "Each rank decomposes whole matrices (LAPACK dgesdd, or cuSOLVER on its GPU); a matrix\n"
      "over --rank-mem-limit, or too big for one GPU, goes to a ScaLAPACK grid of ranks."};
  int np = 0;
  char **pos = NULL;
  int nspecs = (int)(sizeof specs / sizeof specs[0]);
  int rc = opt_parse(&cmd, specs, nspecs, argc, argv, &np, &pos);
  free(pos);
  if (rc) {
    opt_list_free(&pcts);
    return rc == OPT_HELP_SHOWN ? OPT_HELP_SHOWN : st_report(rc);
  }
  analyze_opts o;
  memset(&o, 0, sizeof o);
  double *pv = xcalloc((size_t)(pcts.n > 0 ? pcts.n : 1), sizeof *pv);
  char **tv = NULL;
  char *types_copy = NULL;
  if (!model) rc = st_fail(ST_EINPUT, "analyze: --model DIR is required");
  else if (!name) rc = st_fail(ST_EINPUT, "analyze: --model-name NAME is required");
  else if (pcts.n == 0) rc = st_fail(ST_EINPUT, "analyze: --top-percent N [N ...] is required");
  for (int k = 0; k < pcts.n && !rc; k++) {
    char *end;
    pv[k] = strtod(pcts.v[k], &end);
    if (end == pcts.v[k] || *end || !(pv[k] >= 0 && pv[k] <= 100))
      rc = st_fail(ST_EINPUT, "--top-percent: expected a number from 0 to 100, found '%s'", pcts.v[k]);
  }
  if (!rc && mem && (scan_parse_bytes(mem, &o.scan.rank_mem_limit_bytes) || !o.scan.rank_mem_limit_bytes))
    rc = st_fail(ST_EINPUT, "--rank-mem-limit: expected a size such as 512M or 4G, found '%s'", mem);
  if (!rc && (o.scan.solver = scan_solver_parse(solver)) < 0)
    rc = st_fail(ST_EINPUT, "--solver: expected auto, cpu or gpu, found '%s'", solver);
  if (!rc && types) {
    types_copy = xstrdup(types);
    tv = xcalloc(strlen(types) + 1, sizeof *tv);
    for (char *sv = NULL, *tok = strtok_r(types_copy, ",", &sv); tok; tok = strtok_r(NULL, ",", &sv))
      tv[o.n_types++] = tok;
  }
  if (!rc) {
    o.model_path = model;
    o.model_name = name;
    o.out_dir = out;
    o.percents = pv;
    o.n_percents = pcts.n;
    o.types = (const char *const *)tv;
    o.rescan = rescan;
    o.no_heatmap = no_heatmap;
    o.scan.quiet = quiet;
    analyze_result r;
    rc = spectrum_analyze(&o, &r);
    if (!rc) analyze_result_free(&r);
  }
  free(pv);
  free(tv);
  free(types_copy);
  opt_list_free(&pcts);
  return rc ? st_report(rc) : 0;
}
