/* Spectrum's signal-to-noise ratio of weight matrices, the per-type selection, and the
 * Spectrum-compatible result files. Specification: docs spectrum-method.md (§1 modules and
 * types, §2 SNR, §3 selection, §4 files). Pure computation and file formats: the distributed
 * scan that fills snr values lives in spectrum/scan.c. */
#ifndef SPECTRAIN_SPECTRUM_SNR_H
#define SPECTRAIN_SPECTRUM_SNR_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* §2 from the singular values s[0..k) of a rows x cols matrix (or, batched, of k such
 * matrices: see snr_of_batch). The quantiles, threshold, signal and noise use all k values;
 * the result is divided by s[0] exactly as Spectrum divides by S[0] (its largest value for
 * one matrix). Spectrum's degenerate cases follow from the arithmetic: nothing above the
 * threshold -> signal 0; nothing at or below it -> noise 1.0; noise summing to 0 -> +Infinity
 * (also when s[0] is 0: an all-zero weight). k <= 0 -> NaN. */
double snr_from_singular_values(const double *s, int64_t k, int64_t rows, int64_t cols);
/* §2 for a dense row-major rows x cols matrix (overwritten: LAPACK works in place). A 1-D
 * weight is a 1 x d matrix: its one singular value is its Euclidean norm, so the value is
 * 1.0, or +Infinity when the vector is all zeros (Spectrum's arithmetic; no shortcut).
 * NaN/Inf anywhere or an empty matrix -> NaN. Returns ST_*. */
int snr_of_matrix(double *w, int64_t rows, int64_t cols, double *snr);
/* §2 for `batch` row-major rows x cols matrices one after the other (a weight with more
 * than two dimensions, which Spectrum hands to torch.linalg.svdvals as a batch). batch 1 is
 * snr_of_matrix. batch > 1 is only defined (by Spectrum: S[0] must be one number) when
 * min(rows, cols) == 1: the singular values are the norms of the vectors, in batch order;
 * otherwise NaN. Returns ST_*. */
int snr_of_batch(double *w, int64_t batch, int64_t rows, int64_t cols, double *snr);

/* §1: the module type of a module name ("model.layers.7.mlp.down_proj" -> "mlp.down_proj").
 * Returns a malloc'd string. */
char *snr_module_type(const char *module);
/* Model order of names: dotted components compared one by one, all-digit components
 * numerically (layers.2 < layers.10). strcmp-style result. */
int snr_model_order_cmp(const char *a, const char *b);

typedef struct {
  const char *tensor; /* "model.layers.0.mlp.down_proj.weight" */
  int ndim;
  int64_t shape[8];
  /* NULL: the weight's data is `tensor` itself. Else the stored tensor that holds it: a tied
   * lm_head ("lm_head.weight") is a module of its own whose weight is the embedding
   * ("model.embed_tokens.weight"), as in Spectrum's model.named_modules(). */
  const char *data_tensor;
} snr_input;

typedef struct {
  char *module; /* tensor name without ".weight" */
  char *tensor;
  char *data_tensor; /* the stored tensor read for it (== tensor unless tied) */
  char *type;   /* after §1's substring re-assignment */
  int ndim;
  /* One matrix as Spectrum hands it to svdvals: 1-D (d) -> 1 x d; 2-D as is; k-D: batch =
   * shape[0] x ... x shape[k-3] matrices of shape[k-2] x shape[k-1]. */
  int64_t rows, cols, batch;
  /* 1 when Spectrum's arithmetic gives NaN whatever the data (0-d, empty, or more than two
   * dimensions with S[0] not a single number): nothing is read */
  int nan_by_shape;
  uint64_t numel;
  double snr;
  int input_index; /* position in the snr_input array it came from */
} snr_module;

typedef struct {
  int n;
  snr_module *m; /* in the order of Spectrum's JSON: type order, then model order */
  int ntypes;
  char **types;  /* the types that hold modules, in order of first appearance in m */
} snr_table;

/* Build the module table from the tensors of a checkpoint (every name ending in ".weight").
 * only_types (n_only > 0) restricts the scan to those types (an unknown one is ST_EINPUT
 * listing the model's types). snr values start as NaN. */
int snr_table_build(const snr_input *in, int n, const char *const *only_types, int n_only,
                    snr_table *t);
void snr_table_free(snr_table *t);
/* Modules of type ti (index into t->types) in descending stable order of snr (ties keep
 * JSON order, +Infinity first, NaN last). out gets module indices; returns the count. */
int snr_type_order(const snr_table *t, int ti, int *out);
/* §3: how many of a type with `count` modules are kept at top_percent. */
int snr_keep_count(int count, double top_percent);
/* How many of a type's modules in snr_type_order order (idx[0..n)) are selected at
 * top_percent: snr_keep_count(n), but never a module whose SNR is NaN (a weight holding
 * NaN/Inf, or one Spectrum cannot scan). Spectrum's Python sort puts NaN anywhere (every
 * comparison with NaN is false), so it may select one; we never do. */
int snr_type_keep(const snr_table *t, const int *idx, int n, double top_percent);
/* A fingerprint of the selection at top_percent (module names selected), for agreement. */
uint64_t snr_selection_hash(const snr_table *t, double top_percent);
/* 1 when module i is selected at top_percent. */
int snr_is_selected(const snr_table *t, int i, double top_percent);

/* Python repr of a float (shortest round-trip; "1.0", "1e-05", "Infinity", "NaN"). */
const char *snr_format_float(double x, char buf[40]);
/* "%g"-free rendering of a percent for file names: 25 -> "25", 12.5 -> "12.5". */
const char *snr_format_percent(double p, char buf[40]);

/* §4 writers (to a stream; exactly json.dump(indent=4) / Spectrum's YAML, no trailing
 * newline after JSON as json.dump writes none). */
void snr_write_json(const snr_table *t, FILE *f);
void snr_write_sorted_json(const snr_table *t, FILE *f);
void snr_write_yaml(const snr_table *t, double top_percent, FILE *f);
/* Same, to a path (written to path.tmp, then renamed). */
int snr_save_json(const snr_table *t, const char *path);
int snr_save_sorted_json(const snr_table *t, const char *path);
int snr_save_yaml(const snr_table *t, double top_percent, const char *path);
/* Read a Spectrum results JSON (ours or Spectrum's: Infinity/NaN literals allowed) into the
 * snr values of t. ST_EINPUT if the file's modules or types differ from t's. */
int snr_load_json(snr_table *t, const char *path);

/* Slug of a model name: '/' and '_' -> '-'. malloc'd. */
char *snr_slug(const char *model_name);

#endif
