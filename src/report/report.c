#include "report/report.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report/svgplot.h"
#include "util/err.h"
#include "util/mem.h"

typedef struct {
  long step;
  double loss, val_loss, tokens_per_s, wall_s, lr;
  long line; /* file order, to keep the last of duplicated steps */
} point_;

typedef struct {
  point_ *p;
  int n, cap;
  json_t *mem_start, *mem_end, *comm; /* last of each event, or NULL */
} run_;

static double num_or_nan_(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  return json_is_number(v) ? json_number_value(v) : NAN;
}

static int cmp_point_(const void *a, const void *b) {
  const point_ *x = a, *y = b;
  if (x->step != y->step) return x->step < y->step ? -1 : 1;
  return x->line < y->line ? -1 : x->line > y->line;
}

static void keep_event_(json_t **slot, json_t *o) {
  if (*slot) json_decref(*slot);
  *slot = json_incref(o);
}

static int load_metrics_(const char *path, run_ *r) {
  FILE *f = fopen(path, "r");
  if (!f)
    return st_fail(ST_EINPUT, "%s: cannot open (%s): is the argument the output_dir of a "
                   "`spectrain train` run?", path, strerror(errno));
  char *line = NULL;
  size_t cap = 0;
  long lineno = 0;
  double wall_offset = 0, last_wall = 0;
  int rc = ST_OK;
  while (getline(&line, &cap, f) > 0) {
    lineno++;
    if (line[strspn(line, " \t\r\n")] == '\0') continue;
    json_error_t e;
    json_t *o = json_loads(line, 0, &e);
    if (!json_is_object(o)) {
      rc = st_fail(ST_EINPUT, "%s:%ld: not a JSON object (%s)", path, lineno, o ? "wrong type" : e.text);
      json_decref(o);
      break;
    }
    const char *ev = json_string_value(json_object_get(o, "event"));
    if (ev) {
      if (strcmp(ev, "memory_start") == 0) keep_event_(&r->mem_start, o);
      else if (strcmp(ev, "memory_end") == 0) keep_event_(&r->mem_end, o);
      else if (strcmp(ev, "comm_theory") == 0) keep_event_(&r->comm, o);
    } else if (json_is_integer(json_object_get(o, "step"))) {
      if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 256;
        r->p = xrealloc(r->p, (size_t)r->cap * sizeof *r->p);
      }
      point_ *p = &r->p[r->n++];
      p->step = (long)json_integer_value(json_object_get(o, "step"));
      p->loss = num_or_nan_(o, "loss");
      p->val_loss = num_or_nan_(o, "val_loss");
      p->tokens_per_s = num_or_nan_(o, "tokens_per_s");
      p->lr = num_or_nan_(o, "lr");
      double w = num_or_nan_(o, "elapsed_s");
      if (isfinite(w)) {
        if (w + 1e-9 < last_wall) wall_offset += last_wall; /* a restarted run counts from 0 */
        last_wall = w;
        p->wall_s = w + wall_offset;
      } else {
        p->wall_s = NAN;
      }
      p->line = lineno;
    }
    json_decref(o);
  }
  free(line);
  fclose(f);
  if (rc) return rc;
  qsort(r->p, (size_t)r->n, sizeof *r->p, cmp_point_);
  int k = 0; /* keep the last line of each step */
  for (int i = 0; i < r->n; i++) {
    if (k > 0 && r->p[k - 1].step == r->p[i].step) r->p[k - 1] = r->p[i];
    else r->p[k++] = r->p[i];
  }
  r->n = k;
  return ST_OK;
}

static void run_free_(run_ *r) {
  free(r->p);
  json_decref(r->mem_start);
  json_decref(r->mem_end);
  json_decref(r->comm);
}

static int cmp_double_(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* names the trainer writes ("cpu", "guard", "mpi-staged"): printed as they are, anything
 * else (an edited file) is left out rather than escaped */
static int plain_name_(const char *s) {
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' || *s == '_'))
      return 0;
  return 1;
}

static void summary_(FILE *f, const run_ *r) {
  double first_val = NAN, last_val = NAN, last_loss = NAN, wall = NAN;
  double *tps = xmalloc(sizeof(double) * (size_t)(r->n ? r->n : 1));
  int ntps = 0;
  for (int i = 0; i < r->n; i++) {
    if (isfinite(r->p[i].val_loss)) {
      if (!isfinite(first_val)) first_val = r->p[i].val_loss;
      last_val = r->p[i].val_loss;
    }
    if (isfinite(r->p[i].loss)) last_loss = r->p[i].loss;
    if (isfinite(r->p[i].wall_s)) wall = r->p[i].wall_s;
    if (isfinite(r->p[i].tokens_per_s)) tps[ntps++] = r->p[i].tokens_per_s;
  }
  qsort(tps, (size_t)ntps, sizeof *tps, cmp_double_);
  fputs("<table>\n", f);
  fprintf(f, "<tr><th>logged steps</th><td>%d (last step %ld)</td></tr>\n", r->n,
          r->n ? r->p[r->n - 1].step : 0L);
  fprintf(f, "<tr><th>final train loss</th><td>%.4f</td></tr>\n", last_loss);
  fprintf(f, "<tr><th>validation loss (first &rarr; last)</th><td>%.4f &rarr; %.4f</td></tr>\n",
          first_val, last_val);
  fprintf(f, "<tr><th>median tokens/s</th><td>%.0f</td></tr>\n", ntps ? tps[ntps / 2] : NAN);
  fprintf(f, "<tr><th>wall time of logged steps</th><td>%.1f s</td></tr>\n", wall);
  if (r->comm) {
    json_t *c = r->comm;
    double tr = num_or_nan_(c, "trainable_params"), fr = num_or_nan_(c, "frozen_params");
    fprintf(f, "<tr><th>ranks</th><td>%.0f</td></tr>\n", num_or_nan_(c, "ranks"));
    const char *be = json_string_value(json_object_get(c, "backend")),
               *tp = json_string_value(json_object_get(c, "transport"));
    if (be && plain_name_(be) && (!tp || plain_name_(tp)))
      fprintf(f, "<tr><th>backend</th><td>%s kernels, %s collectives</td></tr>\n", be,
              tp ? tp : "?");
    fprintf(f, "<tr><th>trainable parameters</th><td>%.0f of %.0f (%.1f %%)</td></tr>\n", tr,
            tr + fr, 100.0 * tr / (tr + fr));
  }
  fputs("</table>\n", f);
  free(tps);
}

static void memory_(FILE *f, const run_ *r) {
  json_t *ev = r->mem_end ? r->mem_end : r->mem_start;
  if (!ev) {
    fputs("<p class=\"note\">No memory record in metrics.jsonl.</p>\n", f);
    return;
  }
  json_t *pred = json_object_get(ev, "predicted"), *ranks = json_object_get(ev, "ranks");
  json_t *r0 = json_array_get(ranks, 0);
  int n = (int)json_object_size(pred);
  const char **labels = xcalloc((size_t)n + 1, sizeof *labels);
  double *vals = xcalloc((size_t)n + 1, sizeof *vals);
  int k = 0;
  const char *key;
  json_t *v;
  json_object_foreach(pred, key, v) {
    labels[k] = key;
    vals[k++] = num_or_nan_(r0, key);
  }
  svg_frame fr = {r->mem_end ? "Rank 0 bytes by category (peak during the run)"
                             : "Rank 0 bytes by category (after loading)",
                  "", "", 760, 40 + 26 * k};
  svg_bar_chart(f, &fr, labels, vals, k, 1);
  /* predicted vs measured, every rank */
  fputs("<table><tr><th>category</th><th>formula</th>", f);
  size_t nr = json_array_size(ranks);
  for (size_t i = 0; i < nr; i++) fprintf(f, "<th>rank %zu</th>", i);
  fputs("</tr>\n", f);
  char buf[48];
  json_object_foreach(pred, key, v) {
    fprintf(f, "<tr><td>%s</td><td>%s</td>", key, mem_human((uint64_t)json_number_value(v), buf, sizeof buf));
    for (size_t i = 0; i < nr; i++)
      fprintf(f, "<td>%s</td>", mem_human((uint64_t)num_or_nan_(json_array_get(ranks, i), key), buf, sizeof buf));
    fputs("</tr>\n", f);
  }
  fputs("<tr><td>peak RSS</td><td></td>", f);
  for (size_t i = 0; i < nr; i++)
    fprintf(f, "<td>%s</td>", mem_human((uint64_t)num_or_nan_(json_array_get(ranks, i), "peak_rss"), buf, sizeof buf));
  fputs("</tr></table>\n", f);
  free(labels);
  free(vals);
}

static int cmp_str_(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Inline every snr_heatmap_*.svg of the directory (without its XML declaration). */
static int heatmaps_(FILE *f, const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  char **names = NULL;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t len = strlen(e->d_name);
    if (strncmp(e->d_name, "snr_heatmap_", 12) == 0 && len > 4 && strcmp(e->d_name + len - 4, ".svg") == 0) {
      names = xrealloc(names, (size_t)(n + 1) * sizeof *names);
      names[n++] = xstrdup(e->d_name);
    }
  }
  closedir(d);
  qsort(names, (size_t)n, sizeof *names, cmp_str_);
  for (int i = 0; i < n; i++) {
    char *path = xasprintf("%s/%s", dir, names[i]);
    FILE *in = fopen(path, "r");
    if (in) {
      fprintf(f, "<h3>%s</h3>\n<div class=\"heatmap\">\n", names[i]);
      char *line = NULL;
      size_t cap = 0;
      while (getline(&line, &cap, in) > 0)
        if (strncmp(line, "<?xml", 5) != 0) fputs(line, f);
      free(line);
      fclose(in);
      fputs("</div>\n", f);
    }
    free(path);
    free(names[i]);
  }
  free(names);
  return n;
}

static void charts_(FILE *f, const run_ *r) {
  int n = r->n;
  double *step = xmalloc(sizeof(double) * (size_t)(n ? n : 1));
  double *loss = xmalloc(sizeof(double) * (size_t)(n ? n : 1));
  double *val = xmalloc(sizeof(double) * (size_t)(n ? n : 1));
  double *wall = xmalloc(sizeof(double) * (size_t)(n ? n : 1));
  double *tps = xmalloc(sizeof(double) * (size_t)(n ? n : 1));
  double *vstep = xmalloc(sizeof(double) * (size_t)(n ? n : 1));
  double *vwall = xmalloc(sizeof(double) * (size_t)(n ? n : 1));
  double *vval = xmalloc(sizeof(double) * (size_t)(n ? n : 1));
  int nv = 0;
  for (int i = 0; i < n; i++) {
    step[i] = (double)r->p[i].step, loss[i] = r->p[i].loss, val[i] = r->p[i].val_loss;
    wall[i] = r->p[i].wall_s, tps[i] = r->p[i].tokens_per_s;
    if (isfinite(val[i])) vstep[nv] = step[i], vwall[nv] = wall[i], vval[nv++] = val[i];
  }
  svg_frame f1 = {"Loss against step", "step", "loss", 760, 320};
  svg_series s1[2] = {{"train loss", "#1f77b4", n, step, loss, 0},
                      {"validation loss", "#d62728", nv, vstep, vval, 1}};
  svg_line_chart(f, &f1, s1, 2);
  svg_frame f2 = {"Loss against wall time", "seconds", "loss", 760, 320};
  svg_series s2[2] = {{"train loss", "#1f77b4", n, wall, loss, 0},
                      {"validation loss", "#d62728", nv, vwall, vval, 1}};
  svg_line_chart(f, &f2, s2, 2);
  svg_frame f3 = {"Throughput", "step", "tokens/s", 760, 260};
  svg_series s3[1] = {{"tokens/s", "#2ca02c", n, step, tps, 0}};
  svg_line_chart(f, &f3, s3, 1);
  free(step), free(loss), free(val), free(wall), free(tps), free(vstep), free(vwall), free(vval);
}

int report_write(const char *output_dir, const char *out_path) {
  run_ r = {0};
  char *metrics = xasprintf("%s/metrics.jsonl", output_dir);
  int rc = load_metrics_(metrics, &r);
  free(metrics);
  if (rc) {
    run_free_(&r);
    return rc;
  }
  char *path = out_path ? xstrdup(out_path) : xasprintf("%s/report.html", output_dir);
  char *tmp = xasprintf("%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (!f) {
    rc = st_fail(ST_ERUNTIME, "%s: cannot write: %s", tmp, strerror(errno));
    goto done;
  }
  fputs("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>spectrain report</title>\n"
        "<style>body{font-family:DejaVu Sans,Arial,sans-serif;margin:24px;max-width:1100px;color:#222}"
        "table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:left}svg{display:block;margin:8px 0}.note{color:#777}</style></head><body>\n", f);
  fputs("<h1>spectrain report</h1>\n<p>Output directory: <code>", f);
  svg_xml_text(f, output_dir);
  fputs("</code></p>\n<h2>Summary</h2>\n", f);
  summary_(f, &r);
  fputs("<h2>Loss</h2>\n", f);
  charts_(f, &r);
  fputs("<h2>Memory</h2>\n", f);
  memory_(f, &r);
  fputs("<h2>Spectrum SNR</h2>\n", f);
  if (!heatmaps_(f, output_dir))
    fputs("<p class=\"note\">No SNR heatmap in this directory (the run used a given "
          "unfrozen-parameters YAML or trained everything; `spectrain analyze` draws one).</p>\n", f);
  fputs("</body></html>\n", f);
  int bad = ferror(f);
  bad |= fclose(f) != 0;
  if (bad || rename(tmp, path) != 0) rc = st_fail(ST_ERUNTIME, "%s: write failed", path);
  else log_info("report: wrote %s (%d logged steps)", path, r.n);
done:
  free(tmp);
  free(path);
  run_free_(&r);
  return rc;
}
