#include "spectrum/snr.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/hash.h"

/* ---- §2: the number ------------------------------------------------------------ */

static int cmp_double_asc_(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* numpy/torch default quantile: position p*(k-1) over the ascending values, linear
 * interpolation between the neighbours. */
static double quantile_(const double *asc, int64_t k, double p) {
  double pos = p * (double)(k - 1);
  int64_t lo = (int64_t)floor(pos);
  if (lo >= k - 1) return asc[k - 1];
  double t = pos - (double)lo;
  return asc[lo] + t * (asc[lo + 1] - asc[lo]);
}

double snr_from_singular_values(const double *s, int64_t k, int64_t rows, int64_t cols) {
  if (k <= 0) return NAN;
  double *asc = xmalloc((size_t)k * sizeof *asc);
  memcpy(asc, s, (size_t)k * sizeof *asc);
  qsort(asc, (size_t)k, sizeof *asc, cmp_double_asc_);
  double q25 = quantile_(asc, k, 0.25), q75 = quantile_(asc, k, 0.75);
  free(asc);
  double sigma = (q75 - q25) / 1.349;
  double mn = (double)(rows < cols ? rows : cols), mx = (double)(rows < cols ? cols : rows);
  double beta = mn / mx;
  double thr = sigma * (1.0 + sqrt(beta));
  double signal = 0.0, noise = 0.0;
  int any_noise = 0;
  for (int64_t i = 0; i < k; i++) {
    if (s[i] > thr) {
      signal += s[i];
    } else {
      noise += s[i];
      any_noise = 1;
    }
  }
  if (!any_noise) noise = 1.0; /* Spectrum's rule when nothing is below the threshold */
  if (noise == 0.0) return INFINITY;
  return signal / noise / s[0];
}

int snr_of_batch(double *w, int64_t batch, int64_t rows, int64_t cols, double *snr) {
  *snr = NAN;
  if (batch <= 0 || rows <= 0 || cols <= 0) return ST_OK; /* empty: S[0] does not exist */
  uint64_t per = (uint64_t)rows * (uint64_t)cols, numel = per * (uint64_t)batch;
  for (uint64_t i = 0; i < numel; i++)
    if (!isfinite(w[i])) return ST_OK; /* svdvals fails (or returns NaN): Spectrum stores NaN */
  int64_t k = rows < cols ? rows : cols;
  if (k == 1) {
    /* each matrix is a vector (a 1-D weight is 1 x d): its one singular value is its norm,
     * and they go through §2 like any other values (an all-zero vector gives Infinity) */
    double *s = xmalloc((size_t)batch * sizeof *s);
    for (int64_t b = 0; b < batch; b++) {
      double ss = 0;
      const double *v = w + (uint64_t)b * per;
      for (uint64_t i = 0; i < per; i++) ss += v[i] * v[i];
      s[b] = sqrt(ss);
    }
    *snr = snr_from_singular_values(s, batch, rows, cols);
    free(s);
    return ST_OK;
  }
  if (batch != 1) return ST_OK; /* S[0] is a row of k values: .item() fails, NaN */
  double *s = xmalloc((size_t)k * sizeof *s);
  /* Row-major rows x cols is column-major cols x rows (the transpose): same values. */
  lapack_int info = LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'N', (lapack_int)cols, (lapack_int)rows, w,
                                   (lapack_int)cols, s, NULL, 1, NULL, 1);
  if (info != 0) {
    free(s);
    return st_fail(ST_ERUNTIME, "LAPACK dgesdd failed on a %lld x %lld matrix (info %d)",
                   (long long)rows, (long long)cols, (int)info);
  }
  *snr = snr_from_singular_values(s, k, rows, cols);
  free(s);
  return ST_OK;
}

int snr_of_matrix(double *w, int64_t rows, int64_t cols, double *snr) {
  return snr_of_batch(w, 1, rows, cols, snr);
}

/* ---- §1: modules and types ---------------------------------------------------------- */

static int all_digits_(const char *s, size_t n) {
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++)
    if (!isdigit((unsigned char)s[i])) return 0;
  return 1;
}

char *snr_module_type(const char *module) {
  const char *p = module;
  while (*p) {
    const char *dot = strchr(p, '.');
    size_t n = dot ? (size_t)(dot - p) : strlen(p);
    if (all_digits_(p, n)) return xstrdup(dot ? dot + 1 : "");
    if (!dot) break;
    p = dot + 1;
  }
  return xstrdup(module);
}

int snr_model_order_cmp(const char *a, const char *b) {
  while (*a && *b) {
    size_t na = strcspn(a, "."), nb = strcspn(b, ".");
    int c;
    if (all_digits_(a, na) && all_digits_(b, nb)) {
      const char *x = a, *y = b;
      size_t nx = na, ny = nb;
      while (nx > 1 && *x == '0') x++, nx--;
      while (ny > 1 && *y == '0') y++, ny--;
      c = nx != ny ? (nx < ny ? -1 : 1) : memcmp(x, y, nx);
    } else {
      size_t n = na < nb ? na : nb;
      c = memcmp(a, b, n);
      if (c == 0) c = (na > nb) - (na < nb);
    }
    if (c) return c < 0 ? -1 : 1;
    a += na;
    b += nb;
    if (*a == '.' && *b == '.') {
      a++;
      b++;
    } else {
      break;
    }
  }
  return (*a != 0) - (*b != 0);
}

static int cmp_model_order_(const void *x, const void *y) {
  const snr_module *a = x, *b = y;
  return snr_model_order_cmp(a->module, b->module);
}

/* Types ordered by (first dotted component, whole string), as Spectrum sorts them. */
static int cmp_type_(const void *x, const void *y) {
  const char *a = *(const char *const *)x, *b = *(const char *const *)y;
  size_t na = strcspn(a, "."), nb = strcspn(b, ".");
  size_t n = na < nb ? na : nb;
  int c = memcmp(a, b, n);
  if (c == 0) c = (na > nb) - (na < nb);
  if (c) return c;
  return strcmp(a, b);
}

static const char *weight_suffix_ = ".weight";

/* How Spectrum hands the weight to torch.linalg.svdvals: 1-D unsqueezed to 1 x d, 2-D as
 * is, k-D as a batch of shape[k-2] x shape[k-1] matrices. It then divides by S[0], which
 * for k-D is a (shape[1], ..., shape[k-3], min) block: .item() on it raises unless that is
 * a single number, and Spectrum stores NaN. 0-d and empty weights give NaN as well. */
static void shape_as_spectrum_(snr_module *m, int ndim, const int64_t *shape) {
  m->batch = 1;
  m->rows = m->cols = 0;
  m->nan_by_shape = ndim == 0 || m->numel == 0;
  if (ndim == 1) {
    m->rows = 1;
    m->cols = shape[0];
  } else if (ndim >= 2) {
    m->rows = shape[ndim - 2];
    m->cols = shape[ndim - 1];
    uint64_t inner = 1; /* elements of S[0] besides the min(rows, cols) values */
    for (int d = 0; d < ndim - 2; d++) m->batch *= shape[d];
    for (int d = 1; d < ndim - 2; d++) inner *= (uint64_t)shape[d];
    int64_t k = m->rows < m->cols ? m->rows : m->cols;
    if (ndim > 2 && (inner != 1 || k != 1)) m->nan_by_shape = 1;
  }
}

int snr_table_build(const snr_input *in, int n, const char *const *only_types, int n_only,
                    snr_table *t) {
  memset(t, 0, sizeof *t);
  size_t ls = strlen(weight_suffix_);
  /* All modules owning a weight, in model order. */
  snr_module *all = xcalloc((size_t)(n > 0 ? n : 1), sizeof *all);
  int nall = 0;
  for (int i = 0; i < n; i++) {
    size_t len = strlen(in[i].tensor);
    if (len <= ls || strcmp(in[i].tensor + len - ls, weight_suffix_) != 0) continue;
    snr_module *m = &all[nall++];
    m->tensor = xstrdup(in[i].tensor);
    m->data_tensor = xstrdup(in[i].data_tensor ? in[i].data_tensor : in[i].tensor);
    m->module = xstrdup(in[i].tensor);
    m->module[len - ls] = 0;
    m->ndim = in[i].ndim;
    m->input_index = i;
    m->snr = NAN;
    uint64_t numel = 1;
    for (int d = 0; d < in[i].ndim; d++) numel *= (uint64_t)in[i].shape[d];
    m->numel = numel;
    shape_as_spectrum_(m, in[i].ndim, in[i].shape);
  }
  qsort(all, (size_t)nall, sizeof *all, cmp_model_order_);

  /* The distinct base types, sorted. */
  char **types = xcalloc((size_t)(nall > 0 ? nall : 1), sizeof *types);
  int ntypes = 0;
  for (int i = 0; i < nall; i++) {
    char *ty = snr_module_type(all[i].module);
    int seen = 0;
    for (int j = 0; j < ntypes && !seen; j++) seen = strcmp(types[j], ty) == 0;
    if (seen)
      free(ty);
    else
      types[ntypes++] = ty;
  }
  qsort(types, (size_t)ntypes, sizeof *types, cmp_type_);

  int rc = ST_OK;
  if (n_only > 0) { /* restrict to the requested types (kept in Spectrum's order) */
    char **keep = xcalloc((size_t)(ntypes > 0 ? ntypes : 1), sizeof *keep);
    int nkeep = 0;
    for (int j = 0; j < n_only && !rc; j++) {
      int found = 0;
      for (int i = 0; i < ntypes; i++) found |= strcmp(types[i], only_types[j]) == 0;
      if (!found) {
        size_t cap = 64;
        for (int i = 0; i < ntypes; i++) cap += strlen(types[i]) + 2;
        char *list = xcalloc(cap, 1);
        for (int i = 0; i < ntypes; i++) {
          if (i) strcat(list, ", ");
          strcat(list, types[i]);
        }
        rc = st_fail(ST_EINPUT, "--types: unknown module type '%s'; this model has: %s",
                     only_types[j], list);
        free(list);
      }
    }
    for (int i = 0; i < ntypes; i++) {
      int want = 0;
      for (int j = 0; j < n_only; j++) want |= strcmp(types[i], only_types[j]) == 0;
      if (want)
        keep[nkeep++] = types[i];
      else
        free(types[i]);
    }
    free(types);
    types = keep;
    ntypes = nkeep;
  }

  /* Spectrum's assignment: for each type in order, every module whose name contains it; a
   * later match re-assigns the type but keeps the module's first position. */
  int *pos = xmalloc((size_t)(nall > 0 ? nall : 1) * sizeof *pos);
  const char **assigned = xcalloc((size_t)(nall > 0 ? nall : 1), sizeof *assigned);
  for (int i = 0; i < nall; i++) pos[i] = -1;
  int norder = 0;
  int *order = xmalloc((size_t)(nall > 0 ? nall : 1) * sizeof *order);
  for (int ti = 0; ti < ntypes && !rc; ti++)
    for (int i = 0; i < nall; i++)
      if (strstr(all[i].module, types[ti])) {
        if (pos[i] < 0) {
          pos[i] = norder;
          order[norder++] = i;
        }
        assigned[i] = types[ti];
      }
  t->m = xcalloc((size_t)(norder > 0 ? norder : 1), sizeof *t->m);
  t->types = xcalloc((size_t)(ntypes > 0 ? ntypes : 1), sizeof *t->types);
  for (int k = 0; k < norder; k++) {
    snr_module *m = &t->m[t->n++];
    *m = all[order[k]];
    all[order[k]].module = all[order[k]].tensor = all[order[k]].data_tensor = NULL;
    m->type = xstrdup(assigned[order[k]]);
    int seen = 0;
    for (int j = 0; j < t->ntypes && !seen; j++) seen = strcmp(t->types[j], m->type) == 0;
    if (!seen) t->types[t->ntypes++] = xstrdup(m->type);
  }
  for (int i = 0; i < nall; i++) {
    free(all[i].module);
    free(all[i].tensor);
    free(all[i].data_tensor);
  }
  for (int i = 0; i < ntypes; i++) free(types[i]);
  free(types);
  free(all);
  free(pos);
  free(assigned);
  free(order);
  if (rc) snr_table_free(t);
  return rc;
}

void snr_table_free(snr_table *t) {
  for (int i = 0; i < t->n; i++) {
    free(t->m[i].module);
    free(t->m[i].tensor);
    free(t->m[i].data_tensor);
    free(t->m[i].type);
  }
  for (int i = 0; i < t->ntypes; i++) free(t->types[i]);
  free(t->m);
  free(t->types);
  memset(t, 0, sizeof *t);
}

/* ---- §3: selection ---------------------------------------------------------------- */

/* Descending, NaN last; 0 when equal (the merge sort below keeps equal ones in order). */
static int desc_before_(double a, double b) {
  if (isnan(b)) return !isnan(a);
  if (isnan(a)) return 0;
  return a > b;
}

int snr_type_order(const snr_table *t, int ti, int *out) {
  int n = 0;
  for (int i = 0; i < t->n; i++)
    if (strcmp(t->m[i].type, t->types[ti]) == 0) out[n++] = i;
  /* stable insertion sort: a type has at most a few hundred modules */
  for (int i = 1; i < n; i++) {
    int v = out[i], j = i;
    while (j > 0 && desc_before_(t->m[v].snr, t->m[out[j - 1]].snr)) {
      out[j] = out[j - 1];
      j--;
    }
    out[j] = v;
  }
  return n;
}

int snr_keep_count(int count, double top_percent) {
  return (int)floor((double)count * top_percent / 100.0);
}

int snr_type_keep(const snr_table *t, const int *idx, int n, double top_percent) {
  int keep = snr_keep_count(n, top_percent);
  while (keep > 0 && isnan(t->m[idx[keep - 1]].snr)) keep--; /* NaN sorts last */
  return keep;
}

int snr_is_selected(const snr_table *t, int i, double top_percent) {
  int *idx = xmalloc((size_t)(t->n > 0 ? t->n : 1) * sizeof *idx);
  int sel = 0;
  for (int ti = 0; ti < t->ntypes; ti++) {
    if (strcmp(t->types[ti], t->m[i].type) != 0) continue;
    int n = snr_type_order(t, ti, idx);
    int keep = snr_type_keep(t, idx, n, top_percent);
    for (int k = 0; k < keep; k++) sel |= idx[k] == i;
  }
  free(idx);
  return sel;
}

uint64_t snr_selection_hash(const snr_table *t, double top_percent) {
  int *idx = xmalloc((size_t)(t->n > 0 ? t->n : 1) * sizeof *idx);
  uint64_t h = HASH64_INIT;
  for (int ti = 0; ti < t->ntypes; ti++) {
    h = hash64_str(h, t->types[ti]);
    int n = snr_type_order(t, ti, idx);
    int keep = snr_type_keep(t, idx, n, top_percent);
    for (int k = 0; k < keep; k++) h = hash64_str(h, t->m[idx[k]].module);
  }
  free(idx);
  return h;
}

/* ---- §4: files ---------------------------------------------------------------------- */

const char *snr_format_float(double x, char buf[40]) {
  if (isnan(x)) return strcpy(buf, "NaN");
  if (isinf(x)) return strcpy(buf, x > 0 ? "Infinity" : "-Infinity");
  if (x == 0) return strcpy(buf, signbit(x) ? "-0.0" : "0.0");
  char e[40];
  /* shortest %.{p}e that reads back as x: the correctly rounded p-digit decimal is the
   * closest one, so it is what Python's repr (shortest round-trip) prints */
  for (int p = 0; p <= 16; p++) {
    snprintf(e, sizeof e, "%.*e", p, x);
    if (strtod(e, NULL) == x) break;
  }
  /* e = [-]d[.ddd]e[+-]XX */
  const char *q = e;
  int neg = 0;
  if (*q == '-') neg = 1, q++;
  char digits[24];
  int nd = 0;
  for (; *q && *q != 'e'; q++)
    if (isdigit((unsigned char)*q)) digits[nd++] = *q;
  while (nd > 1 && digits[nd - 1] == '0') nd--;
  digits[nd] = 0;
  int exp10 = atoi(q + 1);
  char *o = buf;
  if (neg) *o++ = '-';
  if (exp10 < -4 || exp10 >= 16) {
    *o++ = digits[0];
    if (nd > 1) {
      *o++ = '.';
      memcpy(o, digits + 1, (size_t)nd - 1);
      o += nd - 1;
    }
    sprintf(o, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
  } else if (exp10 >= 0) {
    for (int i = 0; i <= exp10; i++) *o++ = i < nd ? digits[i] : '0';
    *o++ = '.';
    if (nd > exp10 + 1) {
      memcpy(o, digits + exp10 + 1, (size_t)(nd - exp10 - 1));
      o += nd - exp10 - 1;
    } else {
      *o++ = '0';
    }
    *o = 0;
  } else {
    *o++ = '0';
    *o++ = '.';
    for (int i = 0; i < -exp10 - 1; i++) *o++ = '0';
    memcpy(o, digits, (size_t)nd + 1);
  }
  return buf;
}

const char *snr_format_percent(double p, char buf[40]) {
  if (p == floor(p) && fabs(p) < 1e15) {
    snprintf(buf, 40, "%lld", (long long)p);
    return buf;
  }
  return snr_format_float(p, buf);
}

/* A JSON string as json.dumps writes it (ensure_ascii). */
static void put_json_string_(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    switch (*p) {
      case '"': fputs("\\\"", f); break;
      case '\\': fputs("\\\\", f); break;
      case '\n': fputs("\\n", f); break;
      case '\r': fputs("\\r", f); break;
      case '\t': fputs("\\t", f); break;
      case '\b': fputs("\\b", f); break;
      case '\f': fputs("\\f", f); break;
      default:
        if (*p < 0x20 || *p >= 0x7f)
          fprintf(f, "\\u%04x", *p); /* names are ASCII; bytes >= 0x80 kept unambiguous */
        else
          fputc(*p, f);
    }
  }
  fputc('"', f);
}

void snr_write_json(const snr_table *t, FILE *f) {
  char num[40];
  if (t->n == 0) {
    fputs("{}", f);
    return;
  }
  fputs("{\n", f);
  for (int i = 0; i < t->n; i++) {
    fputs("    ", f);
    put_json_string_(f, t->m[i].module);
    fprintf(f, ": {\n        \"snr\": %s,\n        \"type\": ", snr_format_float(t->m[i].snr, num));
    put_json_string_(f, t->m[i].type);
    fputs(i + 1 < t->n ? "\n    },\n" : "\n    }\n", f);
  }
  fputs("}", f);
}

void snr_write_sorted_json(const snr_table *t, FILE *f) {
  char num[40];
  if (t->ntypes == 0) {
    fputs("{}", f);
    return;
  }
  int *idx = xmalloc((size_t)(t->n > 0 ? t->n : 1) * sizeof *idx);
  fputs("{\n", f);
  for (int ti = 0; ti < t->ntypes; ti++) {
    int n = snr_type_order(t, ti, idx);
    fputs("    ", f);
    put_json_string_(f, t->types[ti]);
    fputs(": {\n", f);
    for (int k = 0; k < n; k++) {
      fputs("        ", f);
      put_json_string_(f, t->m[idx[k]].module);
      fprintf(f, ": %s%s\n", snr_format_float(t->m[idx[k]].snr, num), k + 1 < n ? "," : "");
    }
    fputs(ti + 1 < t->ntypes ? "    },\n" : "    }\n", f);
  }
  fputs("}", f);
  free(idx);
}

void snr_write_yaml(const snr_table *t, double top_percent, FILE *f) {
  int *idx = xmalloc((size_t)(t->n > 0 ? t->n : 1) * sizeof *idx);
  fputs("unfrozen_parameters:\n- ^lm_head.weight$\n- ^model.embed_tokens.weight$\n", f);
  for (int ti = 0; ti < t->ntypes; ti++) {
    fprintf(f, "# %s layers\n", t->types[ti]);
    int n = snr_type_order(t, ti, idx);
    int keep = snr_type_keep(t, idx, n, top_percent);
    for (int k = 0; k < keep; k++) fprintf(f, "- %s\n", t->m[idx[k]].module);
  }
  free(idx);
}

static int save_(const char *path, void (*w)(const snr_table *, FILE *),
                 void (*wp)(const snr_table *, double, FILE *), const snr_table *t, double pct) {
  char *tmp = xasprintf("%s.tmp", path);
  FILE *f = fopen(tmp, "wb");
  if (!f) {
    int rc = st_fail(ST_ERUNTIME, "%s: cannot write: %s", tmp, strerror(errno));
    free(tmp);
    return rc;
  }
  if (w)
    w(t, f);
  else
    wp(t, pct, f);
  int bad = ferror(f);
  bad |= fclose(f) != 0;
  if (bad || rename(tmp, path) != 0) {
    int rc = st_fail(ST_ERUNTIME, "%s: write failed: %s", path, strerror(errno));
    remove(tmp);
    free(tmp);
    return rc;
  }
  free(tmp);
  return ST_OK;
}

int snr_save_json(const snr_table *t, const char *path) { return save_(path, snr_write_json, NULL, t, 0); }
int snr_save_sorted_json(const snr_table *t, const char *path) {
  return save_(path, snr_write_sorted_json, NULL, t, 0);
}
int snr_save_yaml(const snr_table *t, double top_percent, const char *path) {
  return save_(path, NULL, snr_write_yaml, t, top_percent);
}

/* Python's json writes Infinity / -Infinity / NaN as bare words, which jansson rejects:
 * rewrite those tokens (outside strings) as tagged strings, then parse with jansson. */
static char *tag_nonfinite_(const char *s) {
  size_t n = strlen(s);
  char *o = xmalloc(n * 2 + 64), *q = o;
  int in_str = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (in_str) {
      *q++ = c;
      if (c == '\\' && i + 1 < n) *q++ = s[++i];
      else if (c == '"') in_str = 0;
      continue;
    }
    if (c == '"') {
      in_str = 1;
      *q++ = c;
    } else if (strncmp(s + i, "-Infinity", 9) == 0) {
      q += sprintf(q, "\"\\u0000-inf\"");
      i += 8;
    } else if (strncmp(s + i, "Infinity", 8) == 0) {
      q += sprintf(q, "\"\\u0000inf\"");
      i += 7;
    } else if (strncmp(s + i, "NaN", 3) == 0) {
      q += sprintf(q, "\"\\u0000nan\"");
      i += 2;
    } else {
      *q++ = c;
    }
  }
  *q = 0;
  return o;
}

static int json_number_(json_t *v, double *out) {
  if (json_is_number(v)) {
    *out = json_number_value(v);
    return 0;
  }
  if (json_is_string(v) && json_string_length(v) > 1 && json_string_value(v)[0] == 0) {
    const char *s = json_string_value(v) + 1;
    size_t len = json_string_length(v) - 1;
    if (len == 3 && memcmp(s, "inf", 3) == 0) *out = INFINITY;
    else if (len == 4 && memcmp(s, "-inf", 4) == 0) *out = -INFINITY;
    else if (len == 3 && memcmp(s, "nan", 3) == 0) *out = NAN;
    else return -1;
    return 0;
  }
  return -1;
}

int snr_load_json(snr_table *t, const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return st_fail(ST_EINPUT, "%s: cannot open: %s", path, strerror(errno));
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *text = xmalloc((size_t)len + 1);
  size_t got = fread(text, 1, (size_t)len, f);
  fclose(f);
  text[got] = 0;
  char *tagged = tag_nonfinite_(text);
  free(text);
  json_error_t jerr;
  json_t *root = json_loads(tagged, JSON_ALLOW_NUL, &jerr);
  free(tagged);
  if (!root) return st_fail(ST_EINPUT, "%s:%d: not valid JSON: %s", path, jerr.line, jerr.text);
  int rc = ST_OK;
  if (!json_is_object(root) || (int)json_object_size(root) != t->n) {
    rc = st_fail(ST_EINPUT, "%s: expected %d modules, found %d", path, t->n,
                 json_is_object(root) ? (int)json_object_size(root) : -1);
  }
  for (int i = 0; i < t->n && !rc; i++) {
    json_t *e = json_object_get(root, t->m[i].module);
    json_t *ty = e ? json_object_get(e, "type") : NULL;
    double v;
    if (!e || !ty || !json_is_string(ty) || json_number_(json_object_get(e, "snr"), &v) != 0)
      rc = st_fail(ST_EINPUT, "%s: module '%s': expected {\"snr\": number, \"type\": string}", path,
                   t->m[i].module);
    else if (strcmp(json_string_value(ty), t->m[i].type) != 0)
      rc = st_fail(ST_EINPUT, "%s: module '%s': type '%s', expected '%s'", path, t->m[i].module,
                   json_string_value(ty), t->m[i].type);
    else
      t->m[i].snr = v;
  }
  json_decref(root);
  return rc;
}

char *snr_slug(const char *model_name) {
  char *s = xstrdup(model_name);
  for (char *p = s; *p; p++)
    if (*p == '/' || *p == '_') *p = '-';
  return s;
}
