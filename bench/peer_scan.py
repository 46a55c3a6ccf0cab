"""The route the Python tool takes, timed over the same matrices: load every 2-D weight as
float32 (Spectrum upcasts bf16 to float32) and take singular values in one process with all
cores, with numpy (np.linalg.svd(compute_uv=False)) or torch (torch.linalg.svdvals).

  python3 bench/peer_scan.py MODEL_DIR numpy|torch|numpy64

Prints "peer <name>: load X s, svd Y s, total Z s". numpy64 is the same in float64 (what
spectrain computes in)."""
import json
import os
import struct
import sys
import time

import numpy as np


def main():
    path, which = sys.argv[1], sys.argv[2]
    fp = os.path.join(path, "model.safetensors")
    t0 = time.perf_counter()
    with open(fp, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
        mats = []
        for name, e in sorted(header.items()):
            if name == "__metadata__" or not name.endswith(".weight") or len(e["shape"]) != 2:
                continue
            f.seek(base + e["data_offsets"][0])
            raw = np.frombuffer(f.read(e["data_offsets"][1] - e["data_offsets"][0]), dtype="<u2")
            a = (raw.astype(np.uint32) << 16).view(np.float32).reshape(e["shape"])
            mats.append(a.astype(np.float64) if which == "numpy64" else a)
    t1 = time.perf_counter()
    if which == "torch":
        import torch
        torch.set_num_threads(os.cpu_count())
        for a in mats:
            torch.linalg.svdvals(torch.from_numpy(a))
    else:
        for a in mats:
            np.linalg.svd(a, compute_uv=False)
    t2 = time.perf_counter()
    print(f"peer {which}: {len(mats)} matrices, load {t1 - t0:.2f} s, svd {t2 - t1:.2f} s, "
          f"total {t2 - t0:.2f} s")


if __name__ == "__main__":
    main()
