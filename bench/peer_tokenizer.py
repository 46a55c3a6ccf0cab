#!/usr/bin/env python3
"""The peer of bench/bench_tokenizer.c: Hugging Face tokenizers' encode_batch over the same
documents, REPEATS times, on THREADS threads (RAYON_NUM_THREADS must be set to THREADS
before the import: bench/bench_tokenize.sh does). Prints the line bench_tokenizer prints:
    tokenizers tokens N bytes B wall S cpu C hash H
    peer_tokenizer.py TOKENIZER.json TEXTS.jsonl REPEATS"""
import json
import struct
import sys
import time

from tokenizers import Tokenizer


def fnv(h, data):
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def main():
    tok = Tokenizer.from_file(sys.argv[1])
    docs = []
    with open(sys.argv[2], encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if isinstance(r.get("text"), str):
                docs.append(r["text"])
    repeats = int(sys.argv[3])
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        enc = tok.encode_batch(docs)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    h = 0xcbf29ce484222325
    for e in enc:
        d = fnv(0xcbf29ce484222325, struct.pack(f"<{len(e.ids)}I", *e.ids))
        h = fnv(h, struct.pack("<Q", d))
    tokens = sum(len(e.ids) for e in enc) * repeats
    nbytes = sum(len(d.encode()) for d in docs) * repeats
    print(f"tokenizers tokens {tokens} bytes {nbytes} wall {wall:.4f} cpu {cpu:.4f} hash {h:016x}")


if __name__ == "__main__":
    main()
