/* `spectrain train JOB.yaml [--set key=value ...]`: run a training job on every rank of the
 * MPI world (mpirun -np N / srun). */
#include <stdlib.h>

#include "commands.h"
#include "config.h"
#include "mpi/comm.h"
#include "train.h"
#include "util/err.h"
#include "util/opt.h"

int cmd_train(int argc, char **argv) {
  static const opt_cmd cmd = {
      "train", "JOB.yaml", 1, 1, "train a model as the job file says (any number of ranks)",
      "Every rank reads the same job file; the job (with its --set overrides), the model and "
      "the trainable set are checked to be identical on all ranks before training starts.\n"
      "Writes OUTPUT_DIR/metrics.jsonl (one JSON object per logged step) and the trained "
      "model as a Hugging Face directory OUTPUT_DIR/final (config.json + model.safetensors)."};
  opt_list sets = {0};
  opt_spec specs[] = {
      {"set", OPT_MULTI, "KEY=VALUE",
       "override a job key, e.g. --set training.max_steps=10 (repeatable)", &sets},
  };
  int np = 0;
  char **pos = NULL;
  int rc = opt_parse(&cmd, specs, (int)(sizeof specs / sizeof specs[0]), argc, argv, &np, &pos);
  if (rc) {
    opt_list_free(&sets);
    return rc == OPT_HELP_SHOWN ? ST_OK : st_report(rc);
  }
  job_config job;
  rc = job_load(pos[0], &sets, &job);
  /* before any collective: a rank that could not read its job stops every rank */
  int all = comm_max_status(rc);
  if (all && !rc) rc = st_fail(all, "another rank could not load its job file (see its error)");
  if (!rc) rc = train_run(&job, NULL);
  job_free(&job);
  free(pos);
  opt_list_free(&sets);
  if (rc == TRAIN_STOPPED) return rc;
  return rc ? st_report(rc) : ST_OK;
}
