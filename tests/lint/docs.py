#!/usr/bin/env python3
"""The documentation's own checks: README.md stays an entrance (at most 200 lines), and every
relative link in README.md and docs/*.md resolves — the file exists and, for `file#anchor`,
the target has a heading with that anchor (GitHub's rule: lower case, punctuation dropped,
spaces to hyphens). Links to the web are not followed (there is no network in CI).
Exit 0 when clean, 1 with one line per problem. Run by ctest as lint.docs."""
import argparse
import glob
import os
import re
import sys

README_MAX_LINES = 200
LINK_RE = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE_RE = re.compile(r"^\s*(```|~~~)")


def anchors(path):
    out, fenced = set(), False
    for line in open(path, encoding="utf-8"):
        if FENCE_RE.match(line):
            fenced = not fenced
            continue
        m = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if m and not fenced:
            slug = m.group(2).strip().lower()
            slug = re.sub(r"[^\w\- ]", "", slug)  # keeps letters, digits, _, -, spaces
            base, k = slug.replace(" ", "-"), 1
            slug = base
            while slug in out:
                slug, k = f"{base}-{k}", k + 1
            out.add(slug)
    return out


def links(path):
    fenced = False
    for n, line in enumerate(open(path, encoding="utf-8"), 1):
        if FENCE_RE.match(line):
            fenced = not fenced
            continue
        if fenced or line.startswith("    "):  # code blocks
            continue
        for target in LINK_RE.findall(re.sub(r"`[^`]*`", "", line)):
            yield n, target


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=os.path.join(os.path.dirname(__file__), "..", ".."))
    root = os.path.abspath(ap.parse_args().root)
    problems = []
    readme = os.path.join(root, "README.md")
    n_lines = sum(1 for _ in open(readme, encoding="utf-8"))
    if n_lines > README_MAX_LINES:
        problems.append(f"README.md: {n_lines} lines, at most {README_MAX_LINES}: move the "
                        "reference into docs/ and link it")
    files = [readme] + sorted(glob.glob(os.path.join(root, "docs", "*.md")))
    n_links = 0
    for f in files:
        for n, target in links(f):
            if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
                continue
            n_links += 1
            name, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(f), name)) if name else f
            rel = os.path.relpath(f, root)
            if not os.path.exists(dest):
                problems.append(f"{rel}:{n}: link '{target}': no such file {os.path.relpath(dest, root)}")
            elif anchor and dest.endswith(".md") and anchor not in anchors(dest):
                problems.append(f"{rel}:{n}: link '{target}': {os.path.relpath(dest, root)} "
                                f"has no heading with anchor '#{anchor}'")
    for p in problems:
        print(p)
    print(f"docs: README.md {n_lines} lines, {len(files)} files, {n_links} relative links: "
          f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
