/* spectrain report OUTPUT_DIR: the HTML report of a training run (src/report/report.h). */
#include <stdlib.h>

#include "commands.h"
#include "mpi/comm.h"
#include "report/report.h"
#include "util/err.h"
#include "util/opt.h"

int cmd_report(int argc, char **argv) {
  const char *out = NULL;
  opt_spec specs[] = {
      {"out", OPT_STR, "FILE", "where to write the HTML (default OUTPUT_DIR/report.html)", &out},
  };
  static const opt_cmd cmd = {
      "report", "OUTPUT_DIR", 1, 1,
      "write one self-contained HTML report (inline SVG) of a training run's output directory",
      "The report shows train and validation loss against step and wall time, tokens/s,\n"
      "memory by category per rank (formula and measured), and the Spectrum SNR heatmap(s)\n"
      "found in OUTPUT_DIR. It reads OUTPUT_DIR/metrics.jsonl and OUTPUT_DIR/snr_heatmap_*.svg."};
  int np;
  char **pos;
  int rc = opt_parse(&cmd, specs, (int)(sizeof specs / sizeof specs[0]), argc, argv, &np, &pos);
  if (rc) return rc == OPT_HELP_SHOWN ? OPT_HELP_SHOWN : st_report(rc);
  if (comm_rank() == 0) rc = report_write(pos[0], out);
  free(pos);
  rc = comm_max_status(rc);
  return rc && comm_rank() == 0 ? st_report(rc) : rc;
}
