#!/usr/bin/env python3
"""The house's measures, from the code's own text: import cycles between the modules of src/,
levels of imports from main.rs down, functions over 80 lines outside tests (decision tables
named apart), and the longest files. `python3 scripts/house.py` (no arguments, no packages)."""
import os
import re
import sys
from collections import defaultdict

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
DECISION_TABLES = {"decide", "diagnose"}


def modules():
    """Module path (a::b) -> file, for every .rs file under src/."""
    out = {}
    for dirpath, _, files in os.walk(ROOT):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), ROOT)[:-3].split(os.sep)
            if rel[-1] == "mod":
                rel = rel[:-1]
            if rel in (["main"], ["lib"]):
                name = rel[0]
            else:
                name = "::".join(rel)
            out[name] = os.path.join(dirpath, f)
    return out


def code_of(path):
    """The file's text without comments and without its #[cfg(test)] module."""
    text = open(path, encoding="utf-8").read()
    cut = re.search(r"^#\[cfg\(test\)\]\s*\nmod tests", text, re.M)
    if cut:
        text = text[: cut.start()]
    text = re.sub(r"//[^\n]*", "", text)
    return text


def imports(mods):
    edges = defaultdict(set)
    names = sorted(mods, key=len, reverse=True)
    for name, path in mods.items():
        text = code_of(path)
        for m in re.finditer(r"(?:crate|cognito_onboard)::((?:[a-z_][a-z0-9_]*::)*[a-z_][a-z0-9_]*)", text):
            target = m.group(1)
            parts = target.split("::")
            for n in range(len(parts), 0, -1):
                cand = "::".join(parts[:n])
                if cand in mods:
                    break
            else:
                continue
            # a module and its parent (mod.rs) are one room
            if cand != name and not name.startswith(cand + "::") and not cand.startswith(name + "::"):
                edges[name].add(cand)
        # `use super::x` inside a folder
        if "::" in name or os.path.basename(path) == "mod.rs":
            parent = name if os.path.basename(path) == "mod.rs" else name.rsplit("::", 1)[0]
            for m in re.finditer(r"super::([a-z_][a-z0-9_]*)", text):
                cand = parent + "::" + m.group(1) if os.path.basename(path) != "mod.rs" else None
                if cand and cand in mods and cand != name:
                    edges[name].add(cand)
    return edges


def sccs(nodes, edges):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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
            out.append(comp)

    for v in nodes:
        if v not in index:
            visit(v)
    return out


def levels(mods, edges, comps):
    comp_of = {v: i for i, c in enumerate(comps) for v in c}
    cedges = defaultdict(set)
    for v, ws in edges.items():
        for w in ws:
            if comp_of[v] != comp_of[w]:
                cedges[comp_of[v]].add(comp_of[w])
    memo = {}

    def depth(c):
        if c not in memo:
            memo[c] = 1 + max((depth(d) for d in cedges[c]), default=0)
        return memo[c]

    return depth(comp_of["main"]) if "main" in comp_of else max(depth(c) for c in cedges)


def long_functions(mods, limit=80):
    out = []
    for name, path in mods.items():
        lines = open(path, encoding="utf-8").read().split("\n")
        in_tests = False
        for i, line in enumerate(lines):
            if re.match(r"^#\[cfg\(test\)\]", line):
                in_tests = True
            if in_tests:
                continue
            m = re.match(r"^(\s*)(?:pub(?:\([a-z]+\))? )?(?:async )?(?:const )?fn ([a-z_0-9]+)", line)
            if not m or line.rstrip().endswith(";"):
                continue
            indent = m.group(1)
            for j in range(i + 1, len(lines)):
                if lines[j] == indent + "}":
                    n = j - i + 1
                    if n > limit:
                        out.append((n, f"{os.path.relpath(path, os.path.join(ROOT, '..'))}:{i + 1}", m.group(2)))
                    break
    return sorted(out, reverse=True)


def main():
    mods = modules()
    edges = imports(mods)
    comps = sccs(sorted(mods), edges)
    cycles = [sorted(c) for c in comps if len(c) > 1]
    print(f"modules: {len(mods)}, imports between them: {sum(len(v) for v in edges.values())}")
    print(f"import cycles: {len(cycles)}")
    for c in cycles:
        print(f"  {len(c)}: {', '.join(c)}")
    print(f"levels of imports from main down: {levels(mods, edges, comps)}")
    longs = long_functions(mods)
    tables = [f for f in longs if f[2] in DECISION_TABLES]
    others = [f for f in longs if f[2] not in DECISION_TABLES]
    print(f"non-test functions over 80 lines: {len(others)} (and {len(tables)} decision tables)")
    for n, where, fn in others:
        print(f"  {n:4} {fn} ({where})")
    for n, where, fn in tables:
        print(f"  {n:4} {fn} ({where}, a decision table)")
    sizes = sorted(((sum(1 for _ in open(p, encoding='utf-8')), n) for n, p in mods.items()), reverse=True)
    print("longest files: " + ", ".join(f"{n} {c}" for c, n in sizes[:6]))


if __name__ == "__main__":
    main()
