/* Checkpoint format helpers that touch no file library (ckpt/format.h): slice lists, the
 * rank-count independent checksum, the metadata record and the checkpoint names in a
 * directory. */
#include "ckpt/format.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/err.h"
#include "util/mem.h"

static const char *group_[CKPT_NKINDS] = {"/params", "/master", "/optim/m", "/optim/v"};

const char *ckpt_kind_group(ckpt_kind k) { return k < CKPT_NKINDS ? group_[k] : "?"; }

/* ---- metadata ---------------------------------------------------------------------------- */

void ckpt_meta_free(ckpt_meta *m) {
  free(m->job_text);
  free(m->job_sets);
  free(m->config_json);
  free(m->snr_json);
  for (int i = 0; i < m->n_trainable; i++) free(m->trainable[i]);
  free(m->trainable);
  memset(m, 0, sizeof *m);
}

/* ---- slices ---------------------------------------------------------------------------- */

void ckpt_slices_add(ckpt_slices *l, int tensor, ckpt_kind kind, uint64_t begin,
                     uint64_t count, float *data) {
  if (count == 0) return;
  if (l->n == l->cap) {
    l->cap = l->cap ? 2 * l->cap : 16;
    l->s = xrealloc(l->s, (size_t)l->cap * sizeof *l->s);
  }
  l->s[l->n++] = (ckpt_slice){tensor, kind, begin, count, data};
}

void ckpt_slices_add_flat(ckpt_slices *l, const tensor_table *tt, ckpt_kind kind,
                          const int *ids, const uint64_t *off, int ntensors, uint64_t lo,
                          uint64_t n, float *data) {
  uint64_t hi = lo + n;
  for (int k = 0; k < ntensors; k++) {
    uint64_t tb = off[k], te = off[k] + tt->t[ids[k]].numel; /* tensor's buffer range */
    uint64_t b = tb > lo ? tb : lo, e = te < hi ? te : hi;
    if (b < e) ckpt_slices_add(l, ids[k], kind, b - tb, e - b, data + (b - lo));
  }
}

void ckpt_slices_free(ckpt_slices *l) {
  free(l->s);
  memset(l, 0, sizeof *l);
}

/* ---- checksum ---------------------------------------------------------------------------- */

static inline uint64_t mix64_(uint64_t z) { /* splitmix64's finalizer: a bijection */
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* term(i, x) = mix(x ^ key(i)) is a bijection of the bit pattern x for each position i, so
 * changing any one element always changes the sum; the sum (mod 2^64) does not depend on
 * how the elements are split between ranks or in which order the parts are added. */
uint64_t ckpt_hash_range(uint64_t begin, uint64_t count, const float *x) {
  uint64_t h = 0;
  for (uint64_t j = 0; j < count; j++) {
    uint32_t bits;
    memcpy(&bits, &x[j], sizeof bits);
    h += mix64_((uint64_t)bits ^ ((begin + j) * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL));
  }
  return h;
}

/* ---- the checkpoints in a directory ------------------------------------------------------ */

/* "ckpt-<step><suffix>": 1 with *step set when <step> is a step number as spectrain writes
 * it (decimal digits, no sign, space or leading zero, at most INT64_MAX: a step is an
 * int64 in the trainer and training.max_steps' maximum), -1 when the name has the frame but
 * not such a number (a stray file such as ckpt-18446744073709551615.h5 or ckpt-+5.h5), 0
 * when it is some other name. */
int ckpt_parse_name(const char *name, const char *suffix, uint64_t *step) {
  static const char prefix[] = "ckpt-";
  size_t np = sizeof prefix - 1, ns = strlen(suffix), n = strlen(name);
  if (n < np + ns || strncmp(name, prefix, np) != 0 || strcmp(name + n - ns, suffix) != 0)
    return 0;
  const char *d = name + np;
  size_t nd = n - np - ns;
  if (nd == 0 || (nd > 1 && d[0] == '0')) return -1;
  uint64_t v = 0;
  for (size_t i = 0; i < nd; i++) {
    if (d[i] < '0' || d[i] > '9') return -1;
    unsigned dig = (unsigned)(d[i] - '0');
    if (v > ((uint64_t)INT64_MAX - dig) / 10) return -1; /* past INT64_MAX */
    v = v * 10 + dig;
  }
  *step = v;
  return 1;
}

int ckpt_list(const char *dir, int warn, uint64_t **steps, char ***paths, int *n) {
  *steps = NULL;
  *paths = NULL;
  *n = 0;
  DIR *d = opendir(dir);
  if (!d) return 0; /* no directory: no checkpoints */
  int cap = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    uint64_t s;
    int k = ckpt_parse_name(de->d_name, ".h5", &s);
    if (k < 0 && warn)
      log_warn("%s/%s: ignored: not a checkpoint name (ckpt-STEP.h5, STEP a step number in "
               "decimal digits without sign, spaces or leading zeros, at most %lld); rename "
               "or remove it",
               dir, de->d_name, (long long)INT64_MAX);
    if (k <= 0) continue;
    if (*n == cap) {
      cap = cap ? 2 * cap : 8;
      *steps = xrealloc(*steps, (size_t)cap * sizeof **steps);
      *paths = xrealloc(*paths, (size_t)cap * sizeof **paths);
    }
    (*steps)[*n] = s;
    (*paths)[*n] = xasprintf("%s/%s", dir, de->d_name);
    (*n)++;
  }
  closedir(d);
  for (int i = 1; i < *n; i++) /* newest first (insertion sort: few files) */
    for (int j = i; j > 0 && (*steps)[j - 1] < (*steps)[j]; j--) {
      uint64_t ts = (*steps)[j];
      (*steps)[j] = (*steps)[j - 1];
      (*steps)[j - 1] = ts;
      char *tp = (*paths)[j];
      (*paths)[j] = (*paths)[j - 1];
      (*paths)[j - 1] = tp;
    }
  return 0;
}

int ckpt_remove_tmp(const char *dir, const char *keep, int verbose) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int removed = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    uint64_t step;
    if (ckpt_parse_name(de->d_name, ".h5.tmp", &step) != 1) continue;
    char *p = xasprintf("%s/%s", dir, de->d_name);
    if ((!keep || strcmp(p, keep) != 0) && unlink(p) == 0) {
      removed++;
      if (verbose) log_info("removed %s: left by a checkpoint save that did not finish", p);
    }
    free(p);
  }
  closedir(d);
  return removed;
}
