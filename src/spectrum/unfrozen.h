/* Reading an `unfrozen_parameters` YAML (Spectrum's, ours, or hand-written) exactly the way
 * the Python trainers read it (docs: spectrum-method.md §5): each list entry is a regular
 * expression matched with Python's re.match semantics — anchored at the start only —
 * against parameter names such as "model.layers.10.mlp.down_proj.weight". We compile each
 * entry as POSIX extended regex "^(" entry ")", so "mlp.gate" also catches "mlp.gate_proj"
 * and "a|b" means "^(a|b)" as re.match would have it. Every parameter no entry matches
 * stays frozen.
 *
 * The file may be a bare mapping {unfrozen_parameters: [...]} or a larger trainer config
 * (axolotl style) holding that key; other keys are ignored. */
#ifndef SPECTRAIN_SPECTRUM_UNFROZEN_H
#define SPECTRAIN_SPECTRUM_UNFROZEN_H
#include <regex.h>

#include "model/tensors.h"

typedef struct {
  char *pattern; /* as written in the file */
  int line;      /* 1-based line in the file */
  regex_t re;
  int n_matched; /* filled by unfrozen_apply / unfrozen_count */
} unfrozen_pattern;

typedef struct {
  char *path;
  int n;
  unfrozen_pattern *p;
} unfrozen_set;

/* Parse and compile. ST_EINPUT naming the file (and line) when the file is unreadable, not
 * YAML, lacks `unfrozen_parameters`, has a non-string entry, or an entry does not compile. */
int unfrozen_load(const char *yaml_path, unfrozen_set *s);
void unfrozen_free(unfrozen_set *s);
/* 1 when any pattern matches `param_name` (counting the match on that pattern). */
int unfrozen_match(unfrozen_set *s, const char *param_name);
/* Warn (log_warn) once per pattern that matched no name; returns how many did not. */
int unfrozen_warn_unmatched(const unfrozen_set *s);

/* Load yaml_path and set every tensor_table entry's `trainable` (1 matched, 0 frozen);
 * *n_trainable (may be NULL) gets the number of trainable tensors. Unmatched patterns are
 * warnings naming the pattern and its line, except, in a model with tied embeddings (the
 * table has no lm_head.weight), one naming lm_head.weight: that is one info line saying it
 * is the embedding (Python's trainers see no lm_head parameter there either). */
int unfrozen_apply(const char *yaml_path, tensor_table *tt, int *n_trainable);

#endif
