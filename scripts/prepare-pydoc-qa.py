#!/usr/bin/env python3
"""Instruction data from real text on Debian: questions and answers about Python's standard
library, made from the reStructuredText sources of Debian's python3.11-doc (PSF licence).

Every `.. function::`, `.. method::`, `.. class::`, `.. exception::` and `.. data::` directive
of the library reference becomes one conversation in the messages format that
`spectrain tokenize` and scripts/prepare_sft_jsonl.py read:

    {"messages": [{"role": "user", "content": "In Python's os.path module, what does the
                   function join(path, *paths) do?"},
                  {"role": "assistant", "content": "Join one or more path segments ..."}]}

The answer is the directive's first paragraph with the inline markup reduced to plain text
(``x`` and :func:`x` -> `x`, *x* -> x). The split is by module, so that no module of the
validation file was seen in training: every 10th module in sorted order is held out (the
same on every machine). Only the standard library is read; nothing is downloaded.

    scripts/prepare-pydoc-qa.py OUT_DIR [--src DIR] [--max-answer-chars N]
      -> OUT_DIR/pydoc-qa-train.jsonl, OUT_DIR/pydoc-qa-val.jsonl
"""
import argparse
import json
import os
import re
import sys

SRC = "/usr/share/doc/python3.11/html/_sources/library"
KINDS = {"function": "function", "method": "method", "class": "class",
         "exception": "exception", "data": "constant", "attribute": "attribute"}
DIRECTIVE = re.compile(r"^\.\. (function|method|class|exception|data|attribute):: (.+)$")
MODULE = re.compile(r"^\.\. (?:module|currentmodule):: (\S+)")
CLASS = re.compile(r"^\.\. (?:class|exception):: ([A-Za-z_][\w.]*)")


def plain(text):
    """reStructuredText inline markup -> plain text with `code` marks."""
    text = re.sub(r":[a-z]+(?::[a-z]+)?:`~?!?([^`<]*?)(?:\s*<[^>]*>)?`", r"`\1`", text)
    text = re.sub(r"``([^`]+)``", r"`\1`", text)
    text = re.sub(r"`([^`<]+?)\s*<[^>]+>`_+", r"\1", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"\1", text)
    text = re.sub(r"(?<![\w*\\])\*([^*\s][^*]*?)\*(?!\w)", r"\1", text)
    text = text.replace("\\*", "*").replace("\\", "")
    return re.sub(r"\s+", " ", text).strip()


def first_paragraph(lines, i):
    """The first paragraph of the indented body after the directive at lines[i]."""
    j = i + 1
    while j < len(lines) and (lines[j].startswith("   ") and lines[j].strip().startswith(":")
                              or DIRECTIVE.match(lines[j].strip()) and lines[j].startswith(" ")):
        j += 1  # options (:noindex:, :module:) and stacked signatures
    while j < len(lines) and not lines[j].strip():
        j += 1
    if j >= len(lines) or not lines[j].startswith(" "):
        return ""
    indent = len(lines[j]) - len(lines[j].lstrip())
    para = []
    while j < len(lines) and lines[j].strip() and len(lines[j]) - len(lines[j].lstrip()) >= indent:
        s = lines[j].strip()
        if s.startswith(".. "):
            break
        para.append(s)
        j += 1
    return plain(" ".join(para))


def conversations(path, max_chars):
    lines = open(path, encoding="utf-8").read().splitlines()
    module = os.path.basename(path)[:-len(".rst.txt")]
    cls = None
    out = []
    for i, line in enumerate(lines):
        m = MODULE.match(line)
        if m:
            cls = None
            if m.group(1) != "None":  # `.. currentmodule:: None`: no module; keep the file's
                module = m.group(1)
            continue
        c = CLASS.match(line)
        if c:
            cls = c.group(1).split(".")[-1]
        d = DIRECTIVE.match(line.strip())
        if not d:
            continue
        kind, sig = d.group(1), plain(d.group(2))
        answer = first_paragraph(lines, i)
        # a paragraph that introduces a list or an example ("... are::") is no answer alone
        if len(answer) < 20 or len(answer) > max_chars or answer.endswith(":"):
            continue
        owner = f" of the {cls} class" if kind in ("method", "attribute") and cls else ""
        verb = ("what does the {} do?" if kind in ("function", "method") else "what is the {}?")
        q = f"In Python's {module} module, " + verb.format(f"{KINDS[kind]} {sig}{owner}")
        out.append((module, {"messages": [{"role": "user", "content": q},
                                          {"role": "assistant", "content": answer}]}))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--src", default=SRC, help=f"the library reference sources (default {SRC})")
    ap.add_argument("--max-answer-chars", type=int, default=600,
                    help="leave out longer answers (default 600)")
    a = ap.parse_args()
    if not os.path.isdir(a.src):
        sys.exit(f"prepare-pydoc-qa: {a.src} is missing: run scripts/install-deps.sh "
                 "(python3.11-doc)")
    files = sorted(f for f in os.listdir(a.src) if f.endswith(".rst.txt"))
    by_module = {}
    for f in files:
        for module, conv in conversations(os.path.join(a.src, f), a.max_answer_chars):
            by_module.setdefault(module.split(".")[0], []).append(conv)
    os.makedirs(a.out_dir, exist_ok=True)
    n = {"train": 0, "val": 0}
    outs = {k: open(os.path.join(a.out_dir, f"pydoc-qa-{k}.jsonl.tmp"), "w", encoding="utf-8")
            for k in n}
    for i, module in enumerate(sorted(by_module)):
        split = "val" if i % 10 == 9 else "train"
        for conv in by_module[module]:
            outs[split].write(json.dumps(conv, ensure_ascii=False) + "\n")
            n[split] += 1
    for k, f in outs.items():
        f.close()
        os.replace(f.name, f.name[:-len(".tmp")])
    print(f"prepare-pydoc-qa: {n['train']} training and {n['val']} validation conversations "
          f"from {len(by_module)} modules -> {a.out_dir}/pydoc-qa-{{train,val}}.jsonl")


if __name__ == "__main__":
    main()
