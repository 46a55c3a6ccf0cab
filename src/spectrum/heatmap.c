#include "spectrum/heatmap.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

/* The first all-digit dotted component, or -1. */
static int layer_of_(const char *module) {
  for (const char *p = module; *p;) {
    size_t n = strcspn(p, ".");
    size_t k = 0;
    while (k < n && isdigit((unsigned char)p[k])) k++;
    if (n > 0 && k == n) return atoi(p);
    p += n;
    if (*p) p++;
  }
  return -1;
}

/* viridis-like ramp through five anchors, x in [0,1] */
static void ramp_(double x, int rgb[3]) {
  static const int a[5][3] = {{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
  if (x < 0) x = 0;
  if (x > 1) x = 1;
  double p = x * 4;
  int i = (int)p;
  if (i > 3) i = 3;
  double f = p - i;
  for (int c = 0; c < 3; c++) rgb[c] = (int)lround(a[i][c] + f * (a[i + 1][c] - a[i][c]));
}

static void xml_text_(FILE *f, const char *s) {
  for (; *s; s++) {
    if (*s == '<') fputs("&lt;", f);
    else if (*s == '>') fputs("&gt;", f);
    else if (*s == '&') fputs("&amp;", f);
    else if (*s == '"') fputs("&quot;", f);
    else fputc(*s, f);
  }
}

int heatmap_write_svg(const snr_table *t, double top_percent, const char *title, const char *path) {
  /* rows: base module types (the type before Spectrum's re-assignment, so each cell holds
   * one module) in table order, and one row per module outside the blocks; columns:
   * layers 0..L-1, then "other" */
  int n = t->n;
  char **rows = xcalloc((size_t)(n > 0 ? n : 1), sizeof *rows);
  int *row_of = xcalloc((size_t)(n > 0 ? n : 1), sizeof *row_of);
  int nrows = 0, max_layer = -1, any_other = 0;
  for (int i = 0; i < n; i++) {
    int l = layer_of_(t->m[i].module);
    char *ty = l >= 0 ? snr_module_type(t->m[i].module) : xstrdup(t->m[i].module);
    int r = -1;
    for (int k = 0; k < nrows && r < 0; k++)
      if (strcmp(rows[k], ty) == 0) r = k;
    if (r < 0) {
      rows[nrows] = ty;
      r = nrows++;
    } else {
      free(ty);
    }
    row_of[i] = r;
    if (l > max_layer) max_layer = l;
    if (l < 0) any_other = 1;
  }
  /* the "other" column (modules outside blocks) sits one empty column to the right */
  int ncols = max_layer + 1 + 2 * any_other;
  double lo = INFINITY, hi = -INFINITY;
  for (int i = 0; i < n; i++) {
    double v = t->m[i].snr;
    if (isfinite(v) && v > 0) {
      if (log10(v) < lo) lo = log10(v);
      if (log10(v) > hi) hi = log10(v);
    }
  }
  if (!(lo <= hi)) lo = hi = 0;
  if (hi - lo < 1e-12) hi = lo + 1;

  const int cell = 16, label_w = 230, top = 56, legend_w = 150;
  int width = label_w + ncols * cell + legend_w + 20, height = top + nrows * cell + 70;
  if (height < top + 260) height = top + 260;
  char *tmp = xasprintf("%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (!f) {
    int rc = st_fail(ST_ERUNTIME, "%s: cannot write: %s", tmp, strerror(errno));
    free(tmp);
    for (int k = 0; k < nrows; k++) free(rows[k]);
    free(rows);
    free(row_of);
    return rc;
  }
  char pct[40], num[40];
  fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
             "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
             "font-family=\"DejaVu Sans, Arial, sans-serif\" font-size=\"11\">\n"
             "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"white\"/>\n",
          width, height, width, height, width, height);
  fprintf(f, "<text x=\"10\" y=\"20\" font-size=\"14\" font-weight=\"bold\">SNR by layer and module type: ");
  xml_text_(f, title);
  fprintf(f, "</text>\n<text x=\"10\" y=\"38\">colour: log10(SNR); outlined: selected at top %s%% "
             "per type</text>\n",
          snr_format_percent(top_percent, pct));
  /* column labels every 5 layers (and the last) */
  for (int c = 0; c < ncols; c++) {
    int is_other = any_other && c == ncols - 1;
    if (c > max_layer && !is_other) continue;
    if (!is_other && c % 5 != 0 && c != max_layer) continue;
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"9\">%s</text>\n",
            label_w + c * cell + cell / 2, top - 4, is_other ? "other" : (snprintf(num, sizeof num, "%d", c), num));
  }
  for (int r = 0; r < nrows; r++) {
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">", label_w - 6, top + r * cell + cell - 4);
    xml_text_(f, rows[r]);
    fputs("</text>\n", f);
  }
  for (int i = 0; i < n; i++) {
    int l = layer_of_(t->m[i].module);
    int c = l >= 0 ? l : ncols - 1;
    int x = label_w + c * cell, y = top + row_of[i] * cell;
    double v = t->m[i].snr;
    int rgb[3];
    if (isnan(v)) rgb[0] = rgb[1] = rgb[2] = 170;
    else if (isinf(v)) rgb[0] = 150, rgb[1] = 0, rgb[2] = 0;
    else ramp_(v > 0 ? (log10(v) - lo) / (hi - lo) : 0, rgb);
    int sel = snr_is_selected(t, i, top_percent);
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"rgb(%d,%d,%d)\"%s>"
               "<title>",
            x, y, cell - 1, cell - 1, rgb[0], rgb[1], rgb[2],
            sel ? " stroke=\"#ff2020\" stroke-width=\"2\"" : "");
    xml_text_(f, t->m[i].module);
    fprintf(f, ": %s%s</title></rect>\n", snr_format_float(v, num), sel ? " (selected)" : "");
  }
  /* legend: a vertical ramp with its end values */
  int lx = label_w + ncols * cell + 30;
  for (int k = 0; k < 100; k++) {
    int rgb[3];
    ramp_(1.0 - k / 99.0, rgb);
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"16\" height=\"2\" fill=\"rgb(%d,%d,%d)\"/>\n", lx, top + 2 * k,
            rgb[0], rgb[1], rgb[2]);
  }
  fprintf(f, "<text x=\"%d\" y=\"%d\">%.3g</text>\n", lx + 22, top + 8, pow(10, hi));
  fprintf(f, "<text x=\"%d\" y=\"%d\">%.3g</text>\n", lx + 22, top + 200, pow(10, lo));
  fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"14\" height=\"14\" fill=\"white\" stroke=\"#ff2020\" "
             "stroke-width=\"2\"/><text x=\"%d\" y=\"%d\">selected</text>\n",
          lx, top + 215, lx + 22, top + 226);
  fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"14\" height=\"14\" fill=\"rgb(150,0,0)\"/>"
             "<text x=\"%d\" y=\"%d\">Infinity</text>\n",
          lx, top + 235, lx + 22, top + 246);
  fputs("</svg>\n", f);
  int bad = ferror(f);
  bad |= fclose(f) != 0;
  int rc = ST_OK;
  if (bad || rename(tmp, path) != 0) rc = st_fail(ST_ERUNTIME, "%s: write failed", path);
  free(tmp);
  for (int k = 0; k < nrows; k++) free(rows[k]);
  free(rows);
  free(row_of);
  return rc;
}
