#include "report/svgplot.h"

#include <math.h>

#include "util/mem.h"

void svg_xml_text(FILE *f, const char *s) {
  for (; *s; s++) {
    switch (*s) {
    case '<': fputs("&lt;", f); break;
    case '>': fputs("&gt;", f); break;
    case '&': fputs("&amp;", f); break;
    case '"': fputs("&quot;", f); break;
    default: fputc(*s, f);
    }
  }
}

double svg_nice_step(double span, int target) {
  if (!(span > 0) || !isfinite(span)) return 1.0;
  double raw = span / (target > 0 ? target : 1);
  double p = pow(10.0, floor(log10(raw)));
  double m = raw / p;
  double nice = m <= 1.0 ? 1.0 : m <= 2.0 ? 2.0 : m <= 5.0 ? 5.0 : 10.0;
  return nice * p;
}

static void frame_open_(FILE *f, const svg_frame *fr) {
  fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
             "viewBox=\"0 0 %d %d\" font-family=\"DejaVu Sans, Arial, sans-serif\" font-size=\"11\">\n"
             "<rect width=\"%d\" height=\"%d\" fill=\"white\" stroke=\"#ccc\"/>\n"
             "<text x=\"%d\" y=\"18\" text-anchor=\"middle\" font-size=\"13\" font-weight=\"bold\">",
          fr->width, fr->height, fr->width, fr->height, fr->width, fr->height, fr->width / 2);
  svg_xml_text(f, fr->title);
  fputs("</text>\n", f);
}

static void tick_label_(char *buf, size_t len, double v, double step) {
  if (v != 0 && (fabs(v) >= 1e5 || fabs(v) < 1e-3)) snprintf(buf, len, "%.2g", v);
  else {
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step));
    if (dec > 6) dec = 6;
    snprintf(buf, len, "%.*f", dec, v);
  }
}

int svg_line_chart(FILE *f, const svg_frame *fr, const svg_series *s, int ns) {
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (int k = 0; k < ns; k++)
    for (int i = 0; i < s[k].n; i++) {
      double x = s[k].x[i], y = s[k].y[i];
      if (!isfinite(x) || !isfinite(y)) continue;
      x0 = fmin(x0, x), x1 = fmax(x1, x), y0 = fmin(y0, y), y1 = fmax(y1, y);
    }
  frame_open_(f, fr);
  if (!(x0 <= x1)) {
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"#888\">no data</text>\n</svg>\n",
            fr->width / 2, fr->height / 2);
    return 1;
  }
  if (x1 - x0 < 1e-12) x0 -= 0.5, x1 += 0.5;
  if (y1 - y0 < 1e-12 * fmax(1.0, fabs(y1))) y0 -= 0.5, y1 += 0.5;
  double ystep = svg_nice_step(y1 - y0, 5), xstep = svg_nice_step(x1 - x0, 6);
  y0 = floor(y0 / ystep) * ystep, y1 = ceil(y1 / ystep) * ystep;
  const int L = 64, R = 16, T = 30, B = 44;
  double pw = fr->width - L - R, ph = fr->height - T - B;
#define PX(v) (L + ((v) - x0) / (x1 - x0) * pw)
#define PY(v) (T + (1.0 - ((v) - y0) / (y1 - y0)) * ph)
  char lab[32];
  for (double v = y0; v <= y1 + 1e-9 * ystep; v += ystep) {
    tick_label_(lab, sizeof lab, v, ystep);
    fprintf(f, "<line x1=\"%d\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>"
               "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
            L, L + pw, PY(v), PY(v), L - 4, PY(v) + 4, lab);
  }
  for (double v = ceil(x0 / xstep) * xstep; v <= x1 + 1e-9 * xstep; v += xstep) {
    tick_label_(lab, sizeof lab, v, xstep);
    fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%.1f\" stroke=\"#eee\"/>"
               "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
            PX(v), PX(v), T, T + ph, PX(v), T + ph + 14, lab);
  }
  fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#888\"/>\n",
          L, T, pw, ph);
  fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">", L + pw / 2, fr->height - 8);
  svg_xml_text(f, fr->xlabel);
  fprintf(f, "</text>\n<text transform=\"translate(14,%.1f) rotate(-90)\" text-anchor=\"middle\">",
          T + ph / 2);
  svg_xml_text(f, fr->ylabel);
  fputs("</text>\n", f);
  for (int k = 0; k < ns; k++) {
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\" points=\"", s[k].color);
    for (int i = 0; i < s[k].n; i++)
      if (isfinite(s[k].x[i]) && isfinite(s[k].y[i]))
        fprintf(f, "%.1f,%.1f ", PX(s[k].x[i]), PY(s[k].y[i]));
    fputs("\"/>\n", f);
    if (s[k].markers)
      for (int i = 0; i < s[k].n; i++)
        if (isfinite(s[k].x[i]) && isfinite(s[k].y[i]))
          fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>\n", PX(s[k].x[i]),
                  PY(s[k].y[i]), s[k].color);
    /* legend, top right */
    fprintf(f, "<rect x=\"%.1f\" y=\"%d\" width=\"12\" height=\"3\" fill=\"%s\"/><text x=\"%.1f\" y=\"%d\">",
            L + pw - 110, T + 10 + 14 * k, s[k].color, L + pw - 94, T + 14 + 14 * k);
    svg_xml_text(f, s[k].name);
    fputs("</text>\n", f);
  }
#undef PX
#undef PY
  fputs("</svg>\n", f);
  return 0;
}

void svg_bar_chart(FILE *f, const svg_frame *fr, const char *const *labels, const double *values,
                   int n, int bytes) {
  frame_open_(f, fr);
  double hi = 0;
  for (int i = 0; i < n; i++) hi = fmax(hi, values[i]);
  if (!(hi > 0)) hi = 1;
  const int L = 130, R = 90, T = 30;
  double pw = fr->width - L - R, bh = (fr->height - T - 10.0) / (n > 0 ? n : 1);
  char buf[48];
  for (int i = 0; i < n; i++) {
    double y = T + i * bh, w = values[i] / hi * pw;
    fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">", L - 6, y + bh * 0.65);
    svg_xml_text(f, labels[i]);
    fprintf(f, "</text><rect x=\"%d\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#4c78a8\"/>",
            L, y + bh * 0.15, w, bh * 0.7);
    if (bytes) mem_human((uint64_t)values[i], buf, sizeof buf);
    else snprintf(buf, sizeof buf, "%.4g", values[i]);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", L + w + 4, y + bh * 0.65, buf);
  }
  fputs("</svg>\n", f);
}
