#!/usr/bin/env python3
"""The layering of spectrain's sources (docs/architecture.md), checked two ways:

1. includes: every `#include "..."` of a file under src/, mpi/ or shard/ resolves to a
   project file in the same layer or a lower one, and no chain of includes between modules
   comes back to where it started;
2. calls (with --objects BUILD_DIR): from the object files of the core library (nm), every
   symbol a module uses from another module is defined in the same layer or a lower one,
   and no chain of calls between modules comes back to where it started.

A module is a file name without its extension (src/ckpt/h5.c and src/ckpt/h5.h are one
module, and so is X_internal.h). Libraries' headers are restricted too: <mpi.h> only in mpi/
and src/ckpt/h5.c (the parallel HDF5 header includes it), <nccl.h> only in mpi/ (and the
version probe in src/kernels/cuda/device.cu), <hdf5.h> only in src/ckpt/h5.c, CUDA headers
only in src/kernels/cuda/ and the NCCL transport mpi/coll_nccl.c, oneDNN's only in
src/kernels/cpu_bf16.c, PCRE2's and utf8proc's only in src/io/tokenizer.c.

Exit 0 when clean, 1 with one line per problem. Run by ctest as lint.layers."""
import argparse
import os
import re
import subprocess
import sys

# Bottom to top. A file's layer is the first entry whose prefix matches its path.
LAYERS = [
    ("util", ["src/util/"]),
    ("kernels", ["src/kernels/"]),
    ("model", ["src/model/"]),
    ("job", ["src/job/"]),
    ("io", ["src/io/"]),
    ("mpi", ["mpi/"]),
    ("shard", ["shard/"]),
    ("spectrum", ["src/spectrum/"]),
    ("ckpt", ["src/ckpt/"]),
    ("train", ["src/train/"]),
    ("report", ["src/report/"]),
    ("commands", ["src/"]),  # src/main.c, src/commands.*, src/cmd_*.c
]
SYSTEM_HEADERS = [  # (header regex, path prefixes allowed to include it)
    (r"mpi\.h", ["mpi/", "src/ckpt/h5.c"]),
    (r"nccl\.h", ["mpi/", "src/kernels/cuda/device.cu"]),  # device.cu: the version probe
    (r"hdf5\.h|H5.*\.h", ["src/ckpt/h5.c"]),
    (r"cuda.*\.h|cublas.*\.h|cusolver.*\.h|curand.*\.h", ["src/kernels/cuda/", "mpi/coll_nccl.c"]),
    (r"oneapi/dnnl/.*\.h|dnnl.*\.h", ["src/kernels/cpu_bf16.c"]),
    (r"pcre2\.h|utf8proc\.h", ["src/io/tokenizer.c"]),
]
SOURCE_EXT = (".c", ".h", ".cu")
INCLUDE_RE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)


def layer_of(path):
    for i, (_, prefixes) in enumerate(LAYERS):
        if any(path.startswith(p) for p in prefixes):
            return i
    return None


def module_of(path):
    """X.c, X.h, X.cu and X_internal.h (X's private header, for its tests) are module X."""
    m = os.path.splitext(path)[0]
    return m[: -len("_internal")] if m.endswith("_internal") else m


def sources(root):
    out = []
    for top in ("src", "mpi", "shard"):
        for d, _, files in os.walk(os.path.join(root, top)):
            for f in files:
                if f.endswith(SOURCE_EXT):
                    out.append(os.path.relpath(os.path.join(d, f), root))
    return sorted(out)


def find_cycles(edges):
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index, low, on, stack, comps, counter = {}, {}, set(), [], [], [0]
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        comps.append(sorted(comp))
    return comps


def check_edges(kind, edges, why, problems):
    for a in sorted(edges):
        for b in sorted(edges[a]):
            la, lb = layer_of(a + ".c"), layer_of(b + ".c")
            if la is not None and lb is not None and lb > la:
                problems.append(f"{kind}: {a} ({LAYERS[la][0]}) -> {b} ({LAYERS[lb][0]}) points "
                                f"up: {why[(a, b)]}")
    for comp in find_cycles(edges):
        problems.append(f"{kind}: circle between modules {' <-> '.join(comp)}")


def check_includes(root, problems):
    files = sources(root)
    known = set(files)
    edges, why = {}, {}
    for f in files:
        text = open(os.path.join(root, f), encoding="utf-8", errors="replace").read()
        for kind, name in INCLUDE_RE.findall(text):
            if kind == "<":
                for pat, allowed in SYSTEM_HEADERS:
                    if re.fullmatch(pat, name) and not any(f.startswith(p) for p in allowed):
                        problems.append(f"include: {f} includes <{name}>, allowed only in "
                                        f"{', '.join(allowed)}")
                continue
            target = None
            for base in ("src/", "", os.path.dirname(f) + "/"):
                if base + name in known:
                    target = base + name
                    break
            if target is None:
                problems.append(f'include: {f}: "{name}" is not a project file under src/, mpi/, shard/')
                continue
            a, b = module_of(f), module_of(target)
            if a != b:
                edges.setdefault(a, set()).add(b)
                why.setdefault((a, b), f'{f} includes "{name}"')
    check_edges("include", edges, why, problems)
    return len(files)


def check_objects(root, build, problems):
    objdirs = [os.path.join(build, "CMakeFiles", d) for d in ("spectrain_core.dir", "spectrain_cuda.dir")]
    objs = []
    for od in objdirs:
        for d, _, fs in os.walk(od):
            objs += [os.path.join(d, f) for f in fs if f.endswith(".o")]
    if not objs:
        problems.append(f"calls: no object files of spectrain_core under {build}")
        return 0
    defined, used = {}, {}
    for o in objs:
        rel = None
        for od in objdirs:
            if o.startswith(od + os.sep):
                rel = os.path.relpath(o, od)[: -len(".o")]  # src/ckpt/h5.c
        if rel is None or not rel.endswith(SOURCE_EXT):
            continue
        mod = module_of(rel)
        out = subprocess.run(["nm", "-P", "--defined-only", o], capture_output=True, text=True).stdout
        for line in out.splitlines():
            p = line.split()
            if len(p) >= 2 and p[1] in "TDBR":  # global text, data, bss, read-only data
                defined.setdefault(p[0], set()).add(mod)
        out = subprocess.run(["nm", "-P", "--undefined-only", o], capture_output=True, text=True).stdout
        used.setdefault(mod, set()).update(line.split()[0] for line in out.splitlines() if line.strip())
    edges, why = {}, {}
    for mod, syms in used.items():
        for s in sorted(syms):
            for owner in defined.get(s, ()):
                if owner != mod:
                    edges.setdefault(mod, set()).add(owner)
                    why.setdefault((mod, owner), f"{mod} uses {s}")
    check_edges("calls", edges, why, problems)
    return len(objs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=os.path.join(os.path.dirname(__file__), "..", ".."))
    ap.add_argument("--objects", metavar="BUILD_DIR", help="also check the calls between the "
                    "core library's object files")
    a = ap.parse_args()
    root = os.path.abspath(a.root)
    problems = []
    n = check_includes(root, problems)
    m = check_objects(root, a.objects, problems) if a.objects else 0
    for p in problems:
        print(p)
    print(f"layers: {n} source files" + (f", {m} object files" if a.objects else "") +
          f": {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
