#!/usr/bin/env bash
# spectrain tokenize end to end: for five tokenizer families (GPT-2 without a chat template,
# Llama 3 with Llama 3.1's, Qwen2 with Qwen2.5's and with Qwen3's, SmolLM2's real tokenizer
# and template),
# prompt/completion, messages and text records, SQuAD and --no-chat, on 1 and 2 threads, the
# output must be byte for byte what scripts/prepare_sft_jsonl.py wrote with transformers
# (tests/fixtures/tokenizer/sft, made by make_fixtures.py); then the errors: a prompt the
# template renders differently inside the conversation, messages without a template, a
# template spectrain does not know, invalid UTF-8, bad JSON, bad records, bad tokenizer
# files — exit 2, the file, line and key named, an existing OUTPUT untouched.
set -euo pipefail
F=$FIXTURES/tokenizer
W=$TEST_TMP/tokenize.$$
rm -rf "$W"; mkdir -p "$W"
trap 'rm -rf "$W"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# SmolLM2's tokenizer.json is committed compressed
mkdir -p "$W/smollm2"
gzip -dc "$F/smollm2/tokenizer.json.gz" > "$W/smollm2/tokenizer.json"
# as transformers 5 saves it: model_max_length is int(1e30) (VERY_LARGE_INTEGER), more than
# an int64 holds, which a JSON reader must not refuse
sed 's/"model_max_length": [0-9]*/"model_max_length": 1000000000000000019884624838656/' \
  "$F/smollm2/tokenizer_config.json" > "$W/smollm2/tokenizer_config.json"
grep -q 1000000000000000019884624838656 "$W/smollm2/tokenizer_config.json" || fail "sed"
# qwen3: Qwen2's tokenizer with (the revised) Qwen3 chat template, as make_fixtures.py has it
mkdir -p "$W/qwen3"
cp "$F/qwen2/tokenizer.json" "$W/qwen3/"
python3 - "$F" "$W/qwen3/tokenizer_config.json" <<'EOF'
import json, sys
cfg = json.load(open(sys.argv[1] + "/qwen2/tokenizer_config.json"))
cfg["chat_template"] = [t for t in json.load(open(sys.argv[1] + "/chat_templates.json")) if t["name"] == "qwen3"][-1]["template"]
json.dump(cfg, open(sys.argv[2], "w"))
EOF
dir_of() { [[ $1 == smollm2 || $1 == qwen3 ]] && echo "$W/$1" || echo "$F/$1"; }

same() { # OUTPUT EXPECTED WHAT
  cmp -s "$1" "$2" || { diff <(head -c 3000 "$1") <(head -c 3000 "$2") | head -20; fail "$3: differs from $2"; }
}

for fam in gpt2 llama3 qwen2 qwen3 smollm2; do
  d=$(dir_of $fam)
  src=$F/sft/records.jsonl
  [[ $fam == gpt2 ]] && src=$F/sft/plain.jsonl # no chat template: no messages records
  threads="1 2"
  [[ $fam == gpt2 || $fam == qwen2 || $fam == qwen3 ]] && threads=2 # (each run starts MPI: few runs)
  for th in $threads; do
    "$SPECTRAIN" tokenize "$src" "$W/out/$fam.$th.jsonl" --tokenizer "$d" --threads $th > "$W/log" ||
      { cat "$W/log"; fail "$fam: tokenize failed"; }
    same "$W/out/$fam.$th.jsonl" "$F/sft/$fam.jsonl" "$fam ($th threads)"
  done
  # the summary line says what prepare_sft_jsonl.py says
  want=$(python3 -c '
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
n = sum(l != -100 for r in recs for l in r["labels"][1:])
print(f"{len(recs)} records, {n} counted targets")' "$F/sft/$fam.jsonl")
  grep -q "^$W/out/$fam.2.jsonl: $want\$" "$W/log" || { cat "$W/log"; fail "$fam: summary is not '$want'"; }
  "$SPECTRAIN" tokenize "$F/sft/squad.json" "$W/out/$fam.squad.jsonl" --squad --tokenizer "$d" > "$W/log"
  same "$W/out/$fam.squad.jsonl" "$F/sft/$fam.squad.jsonl" "$fam SQuAD"
  if [[ -f $F/sft/$fam.nochat.jsonl ]]; then
    "$SPECTRAIN" tokenize "$src" "$W/out/$fam.nochat.jsonl" --no-chat --tokenizer "$d" > "$W/log"
    same "$W/out/$fam.nochat.jsonl" "$F/sft/$fam.nochat.jsonl" "$fam --no-chat"
  fi
  # Qwen3 writes a (possibly empty) think block on the last turn only: prepare_sft_jsonl.py's
  # masks of multi-turn conversations stray past their assistant turns, which is said
  if [[ $fam == qwen3 ]]; then
    "$SPECTRAIN" tokenize "$src" "$W/out/q3.jsonl" --tokenizer "$d" > "$W/log" 2>&1
    grep -qE "warning: .*records.jsonl: [0-9]+ messages records \(the first on line [0-9]+\)" "$W/log" ||
      { cat "$W/log"; fail "qwen3: no warning about the masks of the records with reasoning"; }
  else
    ! grep -q "warning" "$W/log" || { cat "$W/log"; fail "$fam: unexpected warning"; }
  fi
  echo "$fam: identical to prepare_sft_jsonl.py (records, SQuAD$([[ $fam != gpt2 ]] && echo ', --no-chat'))"
done
"$SPECTRAIN" tokenize "$F/sft/plain.jsonl" "$W/out/long.jsonl" --tokenizer "$F/gpt2" --max-length 100 > "$W/log"
grep -qE "records, [0-9]+ counted targets, [0-9]+ longer than 100$" "$W/log" || fail "--max-length: no count"

# ---- errors: exit 2, the place named, OUTPUT kept --------------------------------------
expect_error() { # WHAT PATTERN ARGS...
  local what=$1 pat=$2
  shift 2
  echo "keep me" > "$W/kept.jsonl"
  set +e
  "$SPECTRAIN" tokenize "$@" > "$W/err" 2>&1
  local rc=$?
  set -e
  [[ $rc -eq 2 ]] || { cat "$W/err"; fail "$what: exit $rc, expected 2"; }
  grep -qF -- "$pat" "$W/err" || { cat "$W/err"; fail "$what: no '$pat' in the message"; }
  [[ $(cat "$W/kept.jsonl") == "keep me" ]] || fail "$what: OUTPUT was touched"
  [[ ! -e $W/kept.jsonl.tmp ]] || fail "$what: left OUTPUT.tmp behind"
}
expect_error "prefix" "prefix_error.jsonl:2: the chat template renders the prompt differently" \
  "$F/sft/prefix_error.jsonl" "$W/kept.jsonl" --tokenizer "$W/smollm2"
expect_error "add_prefix_space" "renders the prompt differently inside the conversation" \
  "$F/sft/records.jsonl" "$W/kept.jsonl" --tokenizer "$F/options"
expect_error "no template" "messages records are rendered with the chat template, and $F/gpt2 has none" \
  "$F/sft/records.jsonl" "$W/kept.jsonl" --tokenizer "$F/gpt2"
mkdir -p "$W/llama2"
cp "$F/qwen2/tokenizer.json" "$W/llama2/"
python3 - "$F/qwen2/tokenizer_config.json" "$W/llama2/tokenizer_config.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
c["chat_template"] = "{% for m in messages %}{{ '[INST] ' + m['content'] + ' [/INST]' }}{% endfor %}"
json.dump(c, open(sys.argv[2], "w"))
EOF
expect_error "unknown template" "a Llama 2/Mistral-style template that spectrain does not implement" \
  "$F/sft/records.jsonl" "$W/kept.jsonl" --tokenizer "$W/llama2"
grep -qF "$W/llama2/tokenizer_config.json" "$W/err" || fail "unknown template: the file is not named"
grep -qF "llama3.1 (Llama-3.1/3.3-Instruct)" "$W/err" || fail "unknown template: the supported ones are not listed"
# text records need no template, even an unknown one; chat_template.jinja takes priority
"$SPECTRAIN" tokenize "$F/sft/plain.jsonl" "$W/out/q.jsonl" --tokenizer "$W/llama2" --no-chat > "$W/log"
python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["chat_template"], end="")' \
  "$F/qwen2/tokenizer_config.json" > "$W/llama2/chat_template.jinja"
"$SPECTRAIN" tokenize "$F/sft/records.jsonl" "$W/out/q.jsonl" --tokenizer "$W/llama2" > "$W/log"
same "$W/out/q.jsonl" "$F/sft/qwen2.jsonl" "chat_template.jinja"

printf '{"text": "fine"}\n{"text": "bad \xff byte"}\n' > "$W/utf8.jsonl"
expect_error "invalid UTF-8" "utf8.jsonl:2: invalid UTF-8 at column" "$W/utf8.jsonl" "$W/kept.jsonl" --tokenizer "$F/gpt2"
printf '{"text": "fine"}\n\n{"text": oops}\n' > "$W/json.jsonl"
expect_error "bad JSON" "json.jsonl:3: not valid JSON (column" "$W/json.jsonl" "$W/kept.jsonl" --tokenizer "$F/gpt2"
printf '{"foo": 1, "bar": 2}\n' > "$W/keys.jsonl"
expect_error "keys" "keys.jsonl:1: expected prompt+completion, messages or text; found keys ['foo', 'bar']" \
  "$W/keys.jsonl" "$W/kept.jsonl" --tokenizer "$F/gpt2"
printf '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ["x"]}]}\n' > "$W/msg.jsonl"
expect_error "content" "msg.jsonl:1: messages[1].content: expected a string, found an array" \
  "$W/msg.jsonl" "$W/kept.jsonl" --tokenizer "$F/qwen2"
printf '{"messages": [{"role": "assistant", "content": "first"}]}\n' > "$W/first.jsonl"
expect_error "assistant first" "first.jsonl:1: chat template qwen2.5: an empty conversation" \
  "$W/first.jsonl" "$W/kept.jsonl" --tokenizer "$F/qwen2"
printf '{"prompt": 3, "completion": "x"}\n' > "$W/prompt.jsonl"
expect_error "prompt type" "prompt.jsonl:1: prompt: expected a string, found an integer" \
  "$W/prompt.jsonl" "$W/kept.jsonl" --tokenizer "$F/gpt2"
echo '{"data": [{"paragraphs": {}}]}' > "$W/squad.json"
expect_error "SQuAD" "squad.json: data[0].paragraphs: expected an array" "$W/squad.json" "$W/kept.jsonl" \
  --squad --tokenizer "$F/gpt2"
expect_error "no input" "nope.jsonl: cannot open" "$W/nope.jsonl" "$W/kept.jsonl" --tokenizer "$F/gpt2"
expect_error "no --tokenizer" "--tokenizer DIR is required" "$F/sft/plain.jsonl" "$W/kept.jsonl"
mkdir -p "$W/empty"
expect_error "no tokenizer.json" "$W/empty: no tokenizer.json" "$F/sft/plain.jsonl" "$W/kept.jsonl" --tokenizer "$W/empty"
head -c 5000 "$F/gpt2/tokenizer.json" > "$W/empty/tokenizer.json"
expect_error "truncated tokenizer.json" "$W/empty/tokenizer.json: line 1, column" "$F/sft/plain.jsonl" \
  "$W/kept.jsonl" --tokenizer "$W/empty"
echo '{"eos_token": "<|nope|>"}' > "$W/empty/tokenizer_config.json"
cp "$F/gpt2/tokenizer.json" "$W/empty/"
expect_error "eos" "tokenizer_config.json: eos_token '<|nope|>' is not a token" "$F/sft/plain.jsonl" \
  "$W/kept.jsonl" --tokenizer "$W/empty"
echo "tokenize: errors named with exit 2, OUTPUT untouched"
