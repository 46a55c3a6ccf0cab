/* The picture a user looks at to choose N: an SVG heatmap of SNR by layer index (columns)
 * and module type (rows), log-scaled colours, the modules selected at top_percent outlined.
 * Modules outside the numbered blocks (embedding, final norm, lm_head) get their own
 * column. +Infinity is drawn dark red, NaN grey. */
#ifndef SPECTRAIN_SPECTRUM_HEATMAP_H
#define SPECTRAIN_SPECTRUM_HEATMAP_H
#include "spectrum/snr.h"

int heatmap_write_svg(const snr_table *t, double top_percent, const char *title, const char *path);

#endif
