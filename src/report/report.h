/* `spectrain report OUTPUT_DIR`: one self-contained HTML file (inline SVG, no scripts or
 * external assets) from what a training run left in its output directory:
 *   metrics.jsonl          train/validation loss against step and wall time, tokens/s,
 *                          memory by category (the memory_start/memory_end events)
 *   snr_heatmap_*.svg      the Spectrum SNR heatmap(s) written by the scan
 * Resumed runs append to metrics.jsonl: a step logged twice keeps its last line, and wall
 * time continues across restarts. */
#ifndef SPECTRAIN_REPORT_REPORT_H
#define SPECTRAIN_REPORT_REPORT_H

/* Writes `out_path` (NULL: OUTPUT_DIR/report.html) through a .tmp file and a rename. */
int report_write(const char *output_dir, const char *out_path);

#endif
