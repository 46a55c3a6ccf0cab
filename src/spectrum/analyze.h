/* `spectrain analyze` as a library call (the command and the training loop both use it):
 * scan a checkpoint (or reuse the cached scan when the model files did not change), write
 * Spectrum's files and the heatmap, and agree on the selection across ranks. Collective. */
#ifndef SPECTRAIN_SPECTRUM_ANALYZE_H
#define SPECTRAIN_SPECTRUM_ANALYZE_H
#include "spectrum/scan.h"
#include "spectrum/snr.h"

typedef struct {
  const char *model_path; /* directory (model.safetensors or index + shards) or one file */
  const char *model_name; /* names the files: slug = name with '/' and '_' -> '-' */
  const char *out_dir;    /* default "." */
  const double *percents;
  int n_percents;
  const char *const *types; /* restrict to these module types (n_types > 0) */
  int n_types;
  int rescan;   /* ignore the cache */
  int no_heatmap;
  scan_opts scan;
} analyze_opts;

typedef struct {
  snr_table table;
  int from_cache;
  scan_stats stats;
  char *json_path;
  char **yaml_paths; /* one per percent */
  int n_yaml;
} analyze_result;

int spectrum_analyze(const analyze_opts *o, analyze_result *r);
void analyze_result_free(analyze_result *r);

/* For the training loop, when a job asks for a top percent instead of a YAML: analyze
 * (cached) into out_dir and return the YAML path used (malloc'd), identical on all ranks,
 * and (json_path not NULL) the path of the SNR results JSON (malloc'd; checkpoints keep
 * the table). model_name NULL: the model directory's base name. types/n_types as in
 * analyze_opts; solver: scan_solver (training.backend cpu -> SCAN_SOLVER_CPU, so a job kept
 * off the GPU keeps its scan off it too). Collective. */
int spectrum_select_yaml(const char *model_path, const char *model_name, double top_percent,
                         const char *const *types, int n_types, const char *out_dir, int solver,
                         char **yaml_path, char **json_path);

#endif
