/* Small SVG charts for the HTML report: line charts with nice axis ticks and horizontal
 * bar charts. Everything is written inline into a FILE* (no external assets). */
#ifndef SPECTRAIN_REPORT_SVGPLOT_H
#define SPECTRAIN_REPORT_SVGPLOT_H
#include <stdio.h>

typedef struct {
  const char *name;
  const char *color; /* CSS colour */
  int n;
  const double *x, *y; /* NaN y values are skipped (gaps) */
  int markers;         /* draw a dot at every point (sparse series such as val_loss) */
} svg_series;

typedef struct {
  const char *title, *xlabel, *ylabel;
  int width, height;
} svg_frame;

/* A line chart of `ns` series; returns 0, or 1 when no series has a finite point (then a
 * short "no data" box is drawn instead). */
int svg_line_chart(FILE *f, const svg_frame *fr, const svg_series *s, int ns);

/* Horizontal bars: labels[i] with values[i] (bytes when `bytes` is 1: axis in MiB/GiB). */
void svg_bar_chart(FILE *f, const svg_frame *fr, const char *const *labels, const double *values,
                   int n, int bytes);

/* "Nice" tick step for a range (1, 2, 5 x 10^k) giving about `target` ticks. */
double svg_nice_step(double span, int target);
void svg_xml_text(FILE *f, const char *s);

#endif
