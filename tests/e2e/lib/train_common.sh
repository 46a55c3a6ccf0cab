# Shared by the train e2e tests: tiny fixture models, JSONL token data cut from the
# repository's own text, a job file writer and metrics readers. Sourced, not run.
set -euo pipefail
: "${SPECTRAIN:?}" "${MPIEXEC:?}" "${SRC_DIR:?}" "${TEST_TMP:?}" "${FIXTURES:?}"
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3

# make_data DIR VOCAB T: DIR/train.jsonl and DIR/val.jsonl, records of T token ids: bytes of
# a deterministic English-like text (seeded sentences over a small vocabulary, so there is
# something to learn) modulo VOCAB. Independent of the repository's files.
make_data() {
  mkdir -p "$1"
  $PY - "$1" "$2" "$3" <<'PYEOF'
import json, os, random, sys
out, vocab, T = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(1234)
subj = ["the king", "a shepherd", "the people", "my brother", "the prophet", "his servant"]
verb = ["went up to", "spoke unto", "looked upon", "came into", "built", "remembered"]
obj = ["the city", "the mountain", "the house of god", "the river", "the temple", "the field"]
text = " ".join(f"{rng.choice(subj)} {rng.choice(verb)} {rng.choice(obj)}." for _ in range(1200))
ids = [b % vocab for b in text.encode()]
recs = [ids[i:i + T] for i in range(0, len(ids) - T, T)]
with open(os.path.join(out, "train.jsonl"), "w") as f:
    for r in recs[:-40]: f.write(json.dumps({"input_ids": r}) + "\n")
with open(os.path.join(out, "val.jsonl"), "w") as f:
    for r in recs[-40:]: f.write(json.dumps({"input_ids": r}) + "\n")
PYEOF
}

# write_job FILE OUTDIR MODELDIR DATADIR [extra YAML lines for the training: section]
write_job() {
  local f=$1 out=$2 model=$3 data=$4
  shift 4
  cat > "$f" <<YAML
output_dir: $out
model:
  path: $model
data:
  train: $data/train.jsonl
  validation: $data/val.jsonl
training:
  max_seq_length: 16
  per_device_train_batch_size: 4
  per_device_eval_batch_size: 4
  gradient_accumulation_steps: 1
  max_steps: 10
  learning_rate: 5.0e-3
  lr_scheduler_type: cosine
  warmup_steps: 2
  weight_decay: 0.1
  max_grad_norm: 1.0
  logging_steps: 1
  eval_steps: 5
  save_steps: 0
  backend: cpu
YAML
}

# run_train NP JOB [--set ...]: runs spectrain train on NP ranks, output in the job's dir
run_train() {
  local np=$1
  shift
  $MPIEXEC -n "$np" "$SPECTRAIN" train "$@"
}

# train_named NAME NP [--set ...]: $W/job.yaml on NP ranks into $W/NAME (log $W/NAME.log);
# on failure prints the log's end, sets fail=1 and returns 1
train_named() {
  local name=$1 np=$2
  shift 2
  run_train "$np" "$W/job.yaml" --set output_dir="$W/$name" "$@" > "$W/$name.log" 2>&1 ||
    { echo "FAIL: $name exited $?"; tail -40 "$W/$name.log"; fail=1; return 1; }
}

# PYLIB: put on sys.path by the Python checks (metrics.py: records, checks)
PYLIB=$(dirname "${BASH_SOURCE[0]}")

# losses METRICS: "step loss" per line of the step records
losses() {
  $PY -c 'import json,sys
for l in open(sys.argv[1]):
    o = json.loads(l)
    if "loss" in o: print(o["step"], repr(o["loss"]))' "$1"
}

# compare_losses A B RTOL WHAT: every step of A and B within RTOL relative (same steps)
compare_losses() {
  $PY - "$1" "$2" "$3" "$4" <<'PYEOF'
import json, sys
def read(p):
    return {o["step"]: o["loss"] for o in map(json.loads, open(p)) if "loss" in o}
a, b, rtol, what = read(sys.argv[1]), read(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
if sorted(a) != sorted(b) or not a:
    sys.exit(f"{what}: steps differ: {sorted(a)} vs {sorted(b)}")
bad = [(s, a[s], b[s]) for s in sorted(a) if abs(a[s] - b[s]) > rtol * abs(b[s])]
for s, x, y in bad: print(f"{what}: step {s}: loss {x!r} vs {y!r} (rel {abs(x-y)/abs(y):.2e})")
print(f"{what}: {len(a)} steps, max rel diff {max(abs(a[s]-b[s])/abs(b[s]) for s in a):.2e}")
sys.exit(1 if bad else 0)
PYEOF
}
