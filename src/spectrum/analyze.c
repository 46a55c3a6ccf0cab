#include "spectrum/analyze.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mpi/comm.h"
#include "spectrum/heatmap.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/hash.h"
#include "util/mem.h"

/* Whether lm_head is tied to the embedding, as transformers decides it from config.json:
 * tie_word_embeddings when given, else the config class's default (False for the Llama-family
 * classes spectrain trains, True for PretrainedConfig, i.e. other model types). No
 * config.json (a bare safetensors file or directory): not tied. A config.json that is not a
 * JSON object is an input error (Spectrum could not load the model either). */
static int tied_lm_head_(const char *model_path, int *tied) {
  *tied = 0;
  struct stat st;
  if (stat(model_path, &st) != 0 || !S_ISDIR(st.st_mode)) return ST_OK;
  char *path = xasprintf("%s/config.json", model_path);
  int rc = ST_OK;
  if (access(path, F_OK) == 0) {
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    if (!json_is_object(j)) {
      rc = st_fail(ST_EINPUT, "%s: expected the model's config (a JSON object): %s", path,
                   j ? "found another JSON value" : e.text);
    } else {
      json_t *v = json_object_get(j, "tie_word_embeddings");
      const char *type = json_string_value(json_object_get(j, "model_type"));
      static const char *untied_default[] = {"llama", "mistral", "qwen2", "qwen3"};
      int dflt = 1;
      for (size_t i = 0; type && i < sizeof untied_default / sizeof *untied_default; i++)
        if (strcmp(type, untied_default[i]) == 0) dflt = 0;
      if (v && !json_is_boolean(v))
        rc = st_fail(ST_EINPUT, "%s: key 'tie_word_embeddings': expected true or false", path);
      *tied = v ? json_is_true(v) : dflt;
    }
    json_decref(j);
  }
  free(path);
  return rc;
}

/* Fingerprint of the model files: names, sizes, mtimes and the safetensors headers, plus
 * the type restriction and the tied head (kept in a side file: the results JSON must stay
 * Spectrum's). */
static uint64_t fingerprint_(const sft_model *m, const analyze_opts *o, int tied) {
  uint64_t h = HASH64_INIT;
  h = hash64_u64(h, (uint64_t)tied);
  for (int i = 0; i < m->nfiles; i++) {
    const char *base = strrchr(m->paths[i], '/');
    h = hash64_str(h, base ? base + 1 : m->paths[i]);
    struct stat st;
    if (stat(m->paths[i], &st) == 0) {
      h = hash64_u64(h, (uint64_t)st.st_size);
      h = hash64_u64(h, (uint64_t)st.st_mtim.tv_sec);
      h = hash64_u64(h, (uint64_t)st.st_mtim.tv_nsec);
    }
    int fd = open(m->paths[i], O_RDONLY | O_CLOEXEC);
    uint64_t hlen = 0;
    if (fd >= 0 && pread(fd, &hlen, 8, 0) == 8 && hlen < (1ull << 30)) {
      char *buf = xmalloc((size_t)hlen);
      if (pread(fd, buf, (size_t)hlen, 8) == (ssize_t)hlen) h = hash64_bytes(h, buf, (size_t)hlen);
      free(buf);
    }
    if (fd >= 0) close(fd);
  }
  h = hash64_u64(h, (uint64_t)o->n_types);
  for (int i = 0; i < o->n_types; i++) h = hash64_str(h, o->types[i]);
  return h;
}

static int read_fingerprint_(const char *path, char *hex, size_t len) {
  json_error_t e;
  json_t *j = json_load_file(path, 0, &e);
  if (!j) return -1;
  const char *v = json_string_value(json_object_get(j, "fingerprint"));
  int rc = -1;
  if (v) {
    snprintf(hex, len, "%s", v);
    rc = 0;
  }
  json_decref(j);
  return rc;
}

static int write_fingerprint_(const char *path, const char *hex, const analyze_opts *o) {
  json_t *j = json_object();
  json_object_set_new(j, "fingerprint", json_string(hex));
  json_object_set_new(j, "model", json_string(o->model_path));
  json_object_set_new(j, "note", json_string("spectrain: the model files the cached scan was "
                                             "computed from (sizes, mtimes, safetensors headers)"));
  int rc = json_dump_file(j, path, JSON_INDENT(2)) == 0 ? ST_OK
                                                        : st_fail(ST_ERUNTIME, "%s: cannot write", path);
  json_decref(j);
  return rc;
}

/* Rank 0: the modules whose SNR is NaN (data with NaN/Inf — the rank that read it named the
 * element —, or a shape Spectrum's arithmetic cannot reduce), which are never selected. */
static void note_nan_(const snr_table *t) {
  int n = 0;
  char list[512] = "";
  size_t o = 0;
  for (int i = 0; i < t->n; i++) {
    if (!isnan(t->m[i].snr)) continue;
    if (n++ < 4 && o < sizeof list)
      o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", n > 1 ? ", " : "", t->m[i].module);
  }
  if (n)
    log_info("analyze: %d module(s) have SNR NaN (non-finite values or a shape Spectrum cannot "
             "reduce), reported as NaN and never selected: %s%s",
             n, list, n > 4 ? ", ..." : "");
}

/* Rank 0 writes every file; the others wait for its status. */
static int write_files_(const analyze_opts *o, analyze_result *r, const char *slug, const char *fp_path,
                        const char *hex) {
  int rc = ST_OK;
  const char *out = o->out_dir ? o->out_dir : ".";
  if (!r->from_cache) {
    rc = snr_save_json(&r->table, r->json_path);
    if (!rc) rc = write_fingerprint_(fp_path, hex, o);
  }
  char *sorted = xasprintf("%s/snr_results_%s_sorted.json", out, slug);
  if (!rc) rc = snr_save_sorted_json(&r->table, sorted);
  free(sorted);
  char pct[40];
  for (int k = 0; k < o->n_percents && !rc; k++) {
    rc = snr_save_yaml(&r->table, o->percents[k], r->yaml_paths[k]);
    if (!rc && !o->no_heatmap) {
      char *svg = xasprintf("%s/snr_heatmap_%s_%spercent.svg", out, slug,
                            snr_format_percent(o->percents[k], pct));
      rc = heatmap_write_svg(&r->table, o->percents[k], o->model_name, svg);
      if (!rc) log_info("analyze: wrote %s", svg);
      free(svg);
    }
    if (!rc) log_info("analyze: wrote %s", r->yaml_paths[k]);
  }
  return rc;
}

int spectrum_analyze(const analyze_opts *o, analyze_result *r) {
  memset(r, 0, sizeof *r);
  for (int k = 0; k < o->n_percents; k++)
    if (!(o->percents[k] >= 0 && o->percents[k] <= 100))
      return st_fail(ST_EINPUT, "--top-percent: expected a number from 0 to 100, found %g",
                     o->percents[k]);
  sft_model m;
  int tied = 0;
  int orc = sft_open(o->model_path, &m); /* closes m itself on failure */
  int rc = orc ? orc : tied_lm_head_(o->model_path, &tied);
  int all = comm_max_status(rc);
  if (all) {
    if (!orc) sft_close(&m);
    return rc ? rc : st_fail(all, "another rank could not open %s (see its error)", o->model_path);
  }
  int n_in = 0;
  snr_input *in = scan_inputs(&m, tied, &n_in);
  rc = snr_table_build(in, n_in, o->types, o->n_types, &r->table);
  free(in);
  if (!rc && r->table.n == 0)
    rc = st_fail(ST_EINPUT, "%s: no tensor named '*.weight': nothing to scan", o->model_path);
  if (rc) {
    sft_close(&m);
    return rc;
  }
  const char *out = o->out_dir ? o->out_dir : ".";
  char *slug = snr_slug(o->model_name);
  char *res_dir = xasprintf("%s/model_snr_results", out);
  r->json_path = xasprintf("%s/snr_results_%s.json", res_dir, slug);
  char *fp_path = xasprintf("%s/snr_results_%s.spectrain-fingerprint.json", res_dir, slug);
  r->n_yaml = o->n_percents;
  r->yaml_paths = xcalloc((size_t)(o->n_percents > 0 ? o->n_percents : 1), sizeof *r->yaml_paths);
  char pct[40];
  for (int k = 0; k < o->n_percents; k++)
    r->yaml_paths[k] = xasprintf("%s/snr_results_%s_unfrozenparameters_%spercent.yaml", out, slug,
                                 snr_format_percent(o->percents[k], pct));

  uint64_t fp = fingerprint_(&m, o, tied);
  char hex[40], old[40] = "";
  snprintf(hex, sizeof hex, "%016llx", (unsigned long long)fp);
  rc = comm_agree_u64(fp, "the model files (sizes, mtimes, headers)");
  /* the cache: rank 0 decides and sends the values, so only rank 0 needs the out dir */
  int cached = 0;
  if (!rc && comm_rank() == 0) {
    rc = fs_mkdir_p(res_dir);
    if (!rc && !o->rescan && read_fingerprint_(fp_path, old, sizeof old) == 0 && strcmp(old, hex) == 0 &&
        access(r->json_path, R_OK) == 0) {
      if (snr_load_json(&r->table, r->json_path) == ST_OK)
        cached = 1;
      else
        log_warn("analyze: cached scan %s unusable (%s): scanning again", r->json_path, st_errmsg());
    }
  }
  rc = comm_max_status(rc);
  if (!rc) rc = comm_bcast(&cached, sizeof cached, 0);
  if (!rc && cached) {
    double *v = xmalloc((size_t)r->table.n * sizeof *v);
    for (int i = 0; i < r->table.n; i++) v[i] = r->table.m[i].snr;
    rc = comm_bcast(v, (size_t)r->table.n * sizeof *v, 0);
    for (int i = 0; i < r->table.n; i++) r->table.m[i].snr = v[i];
    free(v);
    r->from_cache = 1;
    log_info("analyze: reusing the cached scan %s (model files unchanged)", r->json_path);
  } else if (!rc) {
    log_info("analyze: scanning %d weight matrices of %s on %d rank%s", r->table.n, o->model_path,
             comm_size(), comm_size() > 1 ? "s" : "");
    rc = scan_run(&m, &r->table, &o->scan, &r->stats);
    if (!rc) {
      char lim[32], grids[96] = "", gpus[64] = "";
      if (r->stats.n_grid)
        snprintf(grids, sizeof grids, ", %d on %d-rank ScaLAPACK grids", r->stats.n_grid,
                 r->stats.group_size);
      if (r->stats.n_gpu) snprintf(gpus, sizeof gpus, ", %d by cuSOLVER on GPUs", r->stats.n_gpu);
      log_info("analyze: scan took %.2f s (%d matrices by LAPACK on single ranks%s%s; per-rank memory limit %s)",
               r->stats.seconds, r->stats.n_single, gpus, grids,
               mem_human(r->stats.mem_limit_bytes, lim, sizeof lim));
    }
  }
  sft_close(&m);
  if (!rc) note_nan_(&r->table);
  /* the selection every rank will use, proved identical */
  for (int k = 0; k < o->n_percents && !rc; k++)
    rc = comm_agree_u64(snr_selection_hash(&r->table, o->percents[k]), "the Spectrum selection");
  if (!rc) {
    int wrc = comm_rank() == 0 ? write_files_(o, r, slug, fp_path, hex) : ST_OK;
    rc = comm_max_status(wrc);
    if (rc && !wrc) st_fail(rc, "rank 0 failed to write the analyze results");
  }
  free(slug);
  free(res_dir);
  free(fp_path);
  if (rc) analyze_result_free(r);
  return rc;
}

void analyze_result_free(analyze_result *r) {
  snr_table_free(&r->table);
  free(r->json_path);
  for (int k = 0; k < r->n_yaml; k++) free(r->yaml_paths[k]);
  free(r->yaml_paths);
  memset(r, 0, sizeof *r);
}

int spectrum_select_yaml(const char *model_path, const char *model_name, double top_percent,
                         const char *const *types, int n_types, const char *out_dir, int solver,
                         char **yaml_path, char **json_path) {
  analyze_opts o;
  memset(&o, 0, sizeof o);
  char *base = NULL;
  if (!model_name) { /* the directory's base name, without trailing slashes */
    base = xstrdup(model_path);
    size_t n = strlen(base);
    while (n > 1 && base[n - 1] == '/') base[--n] = 0;
    const char *b = strrchr(base, '/');
    model_name = b ? b + 1 : base;
  }
  o.model_path = model_path;
  o.model_name = model_name;
  o.types = types;
  o.n_types = n_types;
  o.out_dir = out_dir;
  o.percents = &top_percent;
  o.n_percents = 1;
  o.scan.solver = solver;
  analyze_result r;
  int rc = spectrum_analyze(&o, &r);
  free(base);
  if (rc) return rc;
  *yaml_path = xstrdup(r.yaml_paths[0]);
  if (json_path) *json_path = xstrdup(r.json_path);
  analyze_result_free(&r);
  return ST_OK;
}
