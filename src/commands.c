#include "commands.h"

#include <stdio.h>
#include <stdlib.h>

#include "util/opt.h"

static int cmd_version_(int argc, char **argv) {
  static const opt_cmd cmd = {"version", "", 0, 0, "print the version of spectrain", NULL};
  int np;
  char **pos;
  int rc = opt_parse(&cmd, NULL, 0, argc, argv, &np, &pos);
  if (rc) return rc;
  free(pos);
  printf("spectrain %s\n", SPECTRAIN_VERSION);
  return 0;
}

/* One line per subcommand; `spectrain --help` lists them in this order. */
const command spectrain_commands[] = {
    {"train", "train a model (any number of ranks: FSDP-style sharding)", cmd_train},
    {"analyze", "Spectrum scan: SNR per weight matrix, unfrozen-parameters YAMLs, heatmap", cmd_analyze},
    {"check", "check a job file and its token data", cmd_check},
    {"eval", "mean next-token loss and perplexity of a model on token data", cmd_eval},
    {"tokenize", "tokenize SFT or text records into token data (tokenizer.json, chat template)", cmd_tokenize},
    {"import", "convert a GGUF model (llama.cpp) into a Hugging Face model directory", cmd_import},
    {"init", "write a randomly initialised model directory", cmd_init},
    {"export", "write a checkpoint's weights as a Hugging Face model directory", cmd_export},
    {"inspect", "show tensors, shapes and parameter counts of a model directory", cmd_inspect},
    {"report", "write the HTML report (loss curves, memory, SNR heatmap) of a run", cmd_report},
    {"version", "print the version", cmd_version_},
};
const int spectrain_ncommands = (int)(sizeof spectrain_commands / sizeof spectrain_commands[0]);
