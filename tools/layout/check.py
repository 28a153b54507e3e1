#!/usr/bin/env python3
"""Structure checks of issue 14, run by CI: no file-level import cycle inside a crate, no
non-test function longer than the limit, main.rs of host-trainer under its limit.

    tools/layout/check.py [--max-fn 150] [--max-main 250] [--report]

A "file-level import" is a path `crate::a::b` (or `super::x` resolved from the file) used in
file F that names a module file G of the same crate; a cycle is two or more files that reach
each other that way. Test code (`#[cfg(test)] mod ...` blocks, tests/, benches/) is left out.
Functions may be exempted with a comment `// layout: long because ...` on the line above `fn`,
which must say why. Exit 1 with one line per finding; `--report` prints the ten longest
functions and the module graph's size as well.
"""

import argparse
import os
import re
import sys

CRATES = {
    "core": "core/src",
    "host-trainer": "host-trainer/src",
    "firmware": "firmware/src",
    "microconv-build": "microconv-build/src",
}

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def strip(text):
    """Blank out comments, string and char literals (keeping line breaks) so that braces and
    paths inside them do not count."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            # keep layout exemption markers visible
            seg = text[i:j]
            out.append(seg if "layout:" in seg else " " * (j - i))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'r(#*)"', text[i:])
            end = '"' + m.group(1)
            j = text.find(end, i + len(m.group(0)))
            j = n if j < 0 else j + len(end)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "'":
            m = re.match(r"'(\\.[^']*|[^\\'])'", text[i:])
            if m:
                out.append(" " * len(m.group(0)))
                i += len(m.group(0))
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def block_end(lines, i):
    """The last line (0-based) of the item starting at line `i`: where its braces close,
    or the `;` that ends it before any brace; and whether it had a `{` body."""
    depth, seen, j = 0, False, i
    while j < len(lines):
        depth += lines[j].count("{") - lines[j].count("}")
        if "{" in lines[j]:
            seen = True
        if seen and depth <= 0:
            break
        if not seen and lines[j].rstrip().endswith(";"):
            break
        j += 1
    return j, seen


def test_blocks(lines):
    """Line ranges (0-based, inclusive) of `#[cfg(test)]` items."""
    ranges = []
    i = 0
    while i < len(lines):
        if re.match(r"\s*#\[cfg\(test\)\]", lines[i]):
            j, _ = block_end(lines, i)
            ranges.append((i, j))
            i = j + 1
        else:
            i += 1
    return ranges


def module_of(src, path):
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return tuple(rel)


def functions(lines, tests):
    """(name, first line, length) of every fn with a body outside test blocks."""
    found = []
    in_test = lambda k: any(a <= k <= b for a, b in tests)
    for i, line in enumerate(lines):
        m = re.match(r"\s*(pub(\([^)]*\))?\s+)?(const\s+)?(unsafe\s+)?(extern\s+\"C\"\s+)?fn\s+(\w+)", line)
        if not m or in_test(i):
            continue
        j, seen = block_end(lines, i)
        if seen:
            exempt = i > 0 and "layout: long because" in lines[i - 1]
            found.append((m.group(6), i + 1, j - i + 1, exempt))
    return found


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-fn", type=int, default=150)
    ap.add_argument("--max-main", type=int, default=250)
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    findings, longest = [], []
    for crate, src in CRATES.items():
        src = os.path.join(ROOT, src)
        if not os.path.isdir(src):
            continue
        files = {}
        for d, _, names in os.walk(src):
            for name in names:
                if name.endswith(".rs"):
                    p = os.path.join(d, name)
                    files[module_of(src, p)] = p
        # bin targets are their own crates: only modules reachable from lib.rs/main.rs count
        graph = {}
        for mod, p in files.items():
            if len(mod) >= 1 and mod[0] == "bin":
                continue
            text = open(p, encoding="utf-8").read()
            lines = strip(text).split("\n")
            tests = test_blocks(lines)
            body = "\n".join(l for k, l in enumerate(lines) if not any(a <= k <= b for a, b in tests))
            deps = set()
            for m in re.finditer(r"\b(crate|super)((?:::\w+)+)", body):
                parts = m.group(2).split("::")[1:]
                base = list(mod) if m.group(1) == "super" else []
                if m.group(1) == "super":
                    # super from a/b.rs (module a::b) is a; from a/mod.rs (module a) is crate root
                    is_mod_rs = os.path.basename(p) == "mod.rs"
                    base = base[:-1] if not is_mod_rs else base[:-1]
                target = None
                for k in range(len(parts), 0, -1):
                    cand = tuple(base + parts[:k])
                    if cand in files and cand != mod:
                        target = cand
                        break
                if target and target[: len(mod)] != mod and mod[: len(target)] != target:
                    deps.add(target)
            graph[mod] = deps
            for name, line, length, exempt in functions(lines, tests):
                rel = os.path.relpath(p, ROOT)
                longest.append((length, f"{rel}:{line} {name}"))
                if length > args.max_fn and not exempt:
                    findings.append(f"{rel}:{line}: fn {name} is {length} lines (limit {args.max_fn}; split it, or mark it `// layout: long because ...`)")
        # cycles: strongly connected components of size > 1 (Tarjan)
        index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

        def visit(v):
            index[v] = low[v] = counter[0]
            counter[0] += 1
            stack.append(v)
            on.add(v)
            for w in graph.get(v, ()):
                if w not in graph:
                    continue
                if w not in index:
                    visit(w)
                    low[v] = min(low[v], low[w])
                elif w in on:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    sccs.append(comp)

        sys.setrecursionlimit(10000)
        for v in graph:
            if v not in index:
                visit(v)
        for comp in sccs:
            names = sorted("::".join(c) or "lib" for c in comp)
            findings.append(f"{crate}: import cycle between files of modules {', '.join(names)}")
        if args.report:
            edges = sum(len(d) for d in graph.values())
            print(f"{crate}: {len(graph)} module files, {edges} file-level imports, {len(sccs)} cycles")
    main_rs = os.path.join(ROOT, "host-trainer/src/main.rs")
    n = sum(1 for _ in open(main_rs, encoding="utf-8"))
    if n > args.max_main:
        findings.append(f"host-trainer/src/main.rs: {n} lines (limit {args.max_main}: commands belong in their own modules)")
    if args.report:
        print(f"host-trainer/src/main.rs: {n} lines")
        print("longest functions:")
        for length, where in sorted(longest, reverse=True)[:10]:
            print(f"  {length:5} {where}")
    for f in findings:
        print(f)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
