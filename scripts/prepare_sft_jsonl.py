#!/usr/bin/env python3
"""Pre-tokenize SFT data into spectrain's JSONL: one record per line,
{"input_ids": [...], "labels": [...]} with labels = -100 on every token not trained on.

Needs PyPI `transformers` (and the model's tokenizer files, e.g. the model directory).
Inputs (one JSON object per line, the formats TRL's SFTTrainer takes):
  {"prompt": "...", "completion": "..."}   loss on the completion (+ EOS) only
  {"messages": [{"role": ..., "content": ...}, ...]}
                                           chat template; loss on assistant turns only
  {"text": "..."}                          language modelling: loss on every token
or, with --squad, the official SQuAD v1.1/v2.0 JSON file (train-v1.1.json, dev-v1.1.json):
each question becomes a prompt "Context: ...\\nQuestion: ...\\nAnswer:" with the first answer
as completion (chat template applied when the tokenizer has one, unless --no-chat).

  python3 scripts/prepare_sft_jsonl.py --tokenizer /models/Qwen3-8B --squad \\
      train-v1.1.json /data/squad-qwen3/train.jsonl
  python3 scripts/prepare_sft_jsonl.py --selftest   # builds a small tokenizer, checks masks

Records longer than the job's max_seq_length are kept whole: spectrain truncates them and
reports the count (--max-length here only prints how many there will be).
"""
import argparse
import json
import os
import sys
import tempfile

IGNORE = -100


def load_tokenizer(path):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(path)


def _ids(x):
    """apply_chat_template(tokenize=True) returns a list, or a BatchEncoding in newer
    transformers."""
    if isinstance(x, dict) or hasattr(x, "input_ids"):
        x = x["input_ids"]
    return list(x)


def encode_prompt_completion(tok, prompt, completion, chat):
    if chat:
        p = _ids(tok.apply_chat_template([{"role": "user", "content": prompt}],
                                         tokenize=True, add_generation_prompt=True))
        full = _ids(tok.apply_chat_template([{"role": "user", "content": prompt},
                                             {"role": "assistant", "content": completion}],
                                            tokenize=True))
        if full[:len(p)] != p:
            raise ValueError("the chat template renders the prompt differently inside the "
                             "conversation; use --no-chat")
        return full, [IGNORE] * len(p) + full[len(p):]
    p = tok(prompt, add_special_tokens=True)["input_ids"]
    c = tok(completion, add_special_tokens=False)["input_ids"]
    if tok.eos_token_id is not None:
        c = c + [tok.eos_token_id]
    return p + c, [IGNORE] * len(p) + c


def encode_messages(tok, messages):
    full = _ids(tok.apply_chat_template(messages, tokenize=True))
    labels = [IGNORE] * len(full)
    for i, m in enumerate(messages):
        if m.get("role") != "assistant":
            continue
        start = len(_ids(tok.apply_chat_template(messages[:i], tokenize=True,
                                                 add_generation_prompt=True)))
        end = len(_ids(tok.apply_chat_template(messages[:i + 1], tokenize=True)))
        labels[start:end] = full[start:end]
    return full, labels


def squad_records(path):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    for art in doc["data"]:
        for para in art["paragraphs"]:
            for qa in para["qas"]:
                answers = qa.get("answers") or []
                if not answers:  # SQuAD 2.0 unanswerable questions
                    continue
                yield {"prompt": f"Context: {para['context']}\nQuestion: {qa['question']}\n"
                                 "Answer:",
                       "completion": " " + answers[0]["text"]}


def jsonl_records(path):
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    raise SystemExit(f"{path}:{n}: not valid JSON: {e}")


def convert(tok, records, out_path, chat, max_length=None):
    n = longer = counted = 0
    with open(out_path + ".tmp", "w", encoding="utf-8") as out:
        for r in records:
            if "prompt" in r and "completion" in r:
                ids, labels = encode_prompt_completion(tok, r["prompt"], r["completion"], chat)
            elif "messages" in r:
                ids, labels = encode_messages(tok, r["messages"])
            elif "text" in r:
                ids = tok(r["text"], add_special_tokens=True)["input_ids"]
                labels = list(ids)
            else:
                raise SystemExit(f"record {n + 1}: expected prompt+completion, messages or text; "
                                 f"found keys {sorted(r)}")
            out.write(json.dumps({"input_ids": ids, "labels": labels}) + "\n")
            n += 1
            longer += max_length is not None and len(ids) > max_length
            counted += sum(l != IGNORE for l in labels[1:])
    os.replace(out_path + ".tmp", out_path)
    print(f"{out_path}: {n} records, {counted} counted targets"
          + (f", {longer} longer than {max_length}" if max_length else ""))
    return n


def selftest():
    """Build a small BPE tokenizer with a chat template, convert each input format and
    check that the trained-on tokens decode to exactly the completion / assistant turns."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers, decoders
    from transformers import PreTrainedTokenizerFast
    corpus = ["In the beginning God created the heaven and the earth.",
              "Context: Paris is the capital of France. Question: What is the capital?",
              "Answer: Paris"] * 20
    t = Tokenizer(models.BPE(unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    t.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=t, bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>")
    tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>"
                         "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")
    ok = True
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "in.jsonl")
        recs = [{"prompt": "Question: What is the capital?", "completion": " Paris"},
                {"messages": [{"role": "user", "content": "capital of France?"},
                              {"role": "assistant", "content": "Paris"},
                              {"role": "user", "content": "and the earth?"},
                              {"role": "assistant", "content": "created"}]},
                {"text": "In the beginning"}]
        with open(src, "w") as f:
            for r in recs:
                f.write(json.dumps(r) + "\n")
        for chat in (False, True):
            dst = os.path.join(d, f"out{int(chat)}.jsonl")
            convert(tok, jsonl_records(src), dst, chat)
            with open(dst) as f:
                outs = [json.loads(l) for l in f]
            for r, o in zip(recs, outs):
                trained = tok.decode([t for t in o["labels"] if t != IGNORE])
                if "completion" in r:
                    want = r["completion"] + "</s>"
                elif "messages" in r:
                    want = "".join(m["content"] + "</s>" for m in r["messages"]
                                   if m["role"] == "assistant")
                else:
                    want = tok.decode(tok(r["text"])["input_ids"])
                good = trained == want and len(o["labels"]) == len(o["input_ids"])
                ok &= good
                print(f"chat={chat!s:5} {sorted(r)[0]:10} trained on {trained!r} "
                      f"{'ok' if good else 'MISMATCH, want ' + repr(want)}")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input", nargs="?")
    ap.add_argument("output", nargs="?")
    ap.add_argument("--tokenizer", help="tokenizer (or model) directory or hub name")
    ap.add_argument("--squad", action="store_true", help="input is a SQuAD JSON file")
    ap.add_argument("--no-chat", action="store_true",
                    help="prompt/completion as plain text even when a chat template exists")
    ap.add_argument("--max-length", type=int, help="report records longer than this")
    ap.add_argument("--selftest", action="store_true")
    a = ap.parse_args()
    if a.selftest:
        return selftest()
    if not (a.input and a.output and a.tokenizer):
        ap.error("INPUT, OUTPUT and --tokenizer are required")
    tok = load_tokenizer(a.tokenizer)
    chat = not a.no_chat and getattr(tok, "chat_template", None) is not None
    records = squad_records(a.input) if a.squad else jsonl_records(a.input)
    os.makedirs(os.path.dirname(os.path.abspath(a.output)), exist_ok=True)
    convert(tok, records, a.output, chat, a.max_length)
    return 0


if __name__ == "__main__":
    sys.exit(main())
