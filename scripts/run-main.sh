#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine (as root): install what is missing, build,
# then run the whole Spectrum story on 2 ranks with real text from Debian packages:
#   1. pretrain the tiny Llama (jobs/tiny.yaml, all parameters) on the King James Bible;
#   2+3. fine-tune it on Python's documentation (jobs/tiny-finetune.yaml): the Spectrum
#      scan selects the top 25 % of each module type, only those train, sharded over the
#      ranks, with checkpoints;
#   4. print the validation loss on the second domain before and after, the time of each
#      stage and the peak memory of every rank;
#   5. write the HTML reports (loss curves, memory, SNR heatmap).
# Outputs: out/tiny/{data,model,run,finetune}; a second run resumes or reuses what is done.
#   scripts/run-main.sh [--ranks N] [--pretrain-steps N] [--finetune-steps N]
set -euo pipefail
cd "$(dirname "$0")/.."
ranks=2 pre_steps="" ft_steps=""
while (($#)); do
  case "$1" in
    --ranks) ranks=$2; shift 2 ;;
    --pretrain-steps) pre_steps=$2; shift 2 ;;
    --finetune-steps) ft_steps=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run-main: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
scripts/install-deps.sh
scripts/build.sh
scripts/prepare-tiny-data.sh out/tiny/data
scripts/prepare-finetune-data.sh out/tiny/data
source scripts/env.sh
run() { mpiexec -n "$ranks" --oversubscribe --bind-to none build/spectrain "$@"; }
val=out/tiny/data/pydoc-val.txt
eval_loss() { run eval --model "$1" --data "$val" --seq-len 256 --batch 8 --json | tail -n 1; }
peak_ranks() { # peak RSS per rank from a run's metrics.jsonl (memory_end record)
  python3 -c 'import json,sys
ev=[json.loads(l) for l in open(sys.argv[1]) if "memory_end" in l]
print(" ".join("r%d %.0f MiB" % (i, r["peak_rss"] / 2**20) for i, r in enumerate(ev[-1]["ranks"])) if ev else "n/a")' "$1"
}

echo "== 1. pretrain jobs/tiny.yaml on $ranks ranks (King James Bible, all parameters)"
t0=$(date +%s)
run train jobs/tiny.yaml ${pre_steps:+--set training.max_steps=$pre_steps}
t1=$(date +%s)
before=$(eval_loss out/tiny/run/final)

echo "== 2+3. Spectrum scan + fine-tune the top 25 % on Python's documentation (jobs/tiny-finetune.yaml)"
run train jobs/tiny-finetune.yaml ${ft_steps:+--set training.max_steps=$ft_steps}
t2=$(date +%s)
after=$(eval_loss out/tiny/finetune/final)

echo "== 5. reports"
build/spectrain report out/tiny/run
build/spectrain report out/tiny/finetune

get() { python3 -c 'import json,sys; print("%.4f" % json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
cat <<SUMMARY

== 4. summary ($ranks ranks)
validation loss on Python docs ($val):
  pretrained on the Bible        $(get "$before" loss)  (perplexity $(get "$before" perplexity))
  after Spectrum 25 % fine-tune  $(get "$after" loss)  (perplexity $(get "$after" perplexity))
time: pretrain $((t1 - t0)) s, scan + fine-tune $((t2 - t1)) s
peak memory per rank: pretrain $(peak_ranks out/tiny/run/metrics.jsonl); fine-tune $(peak_ranks out/tiny/finetune/metrics.jsonl)
reports: out/tiny/run/report.html, out/tiny/finetune/report.html
SUMMARY
