#!/usr/bin/env python3
"""Checks the layering of the `turingwatch` crate (actors/src), as the README's "Layers" states it.

1. Domain modules (everything outside `actors/` and `roles/`) use no actix and nothing above them.
2. Actors (`crate::actors::…`) never import roles (`crate::roles::…`).
3. No cycles between modules: an import `a -> b` is lifted to the two children of the modules'
   closest common ancestor (a child using its parent, or a parent its child, is no edge), and the
   graph of siblings under every module must be acyclic.
4. Only the store opens redb transactions: no `.db()` outside `store/`.

Test code is not checked: files named `tests.rs` or `*_tests.rs`, and everything after a
`#[cfg(test)]` item at column 0 (the tests block at the end of a file).
Prints every violation with file and line; exits 1 if there is any.
"""

import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "actors", "src")
UPPER = {"actors": 1, "roles": 2}  # layer of a top-level module; everything else is domain (0)
LAYER_NAMES = {0: "domain", 1: "actors", 2: "roles"}


def module_of(rel):
    parts = rel[:-3].split(os.sep)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def is_test_file(rel):
    base = os.path.basename(rel)
    return base == "tests.rs" or base.endswith("_tests.rs") or (os.sep + "tests" + os.sep) in rel


def strip(text):
    """Removes comments, string and char literals (keeping line breaks) and the trailing tests."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'r(#*)"', text[i:])
            end = text.find('"' + m.group(1), i + len(m.group(0)))
            end = n if end < 0 else end + 1 + len(m.group(1))
            out.append('""' + "\n" * text.count("\n", i, end))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'|'\\[xu][0-9a-fA-F{}]+'", text[i:i + 12]):
            m = re.match(r"'(\\.|[^\\'])'|'\\[xu][0-9a-fA-F{}]+'", text[i:i + 12])
            out.append("' '")
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    code = "".join(out)
    m = re.search(r"^#\[cfg\(test\)\]\s*\n(\s*#\[[^\n]*\n)*(pub(\([^)]*\))? )?mod ", code, re.M)
    if m:
        code = code[: m.start()]
    return code


def expand_use(body):
    """`crate::{a::{b, c}, d}` -> ['crate::a::b', 'crate::a::c', 'crate::d'] (aliases dropped)."""
    body = re.sub(r"\s+as\s+[A-Za-z_][A-Za-z0-9_]*", "", body)
    body = re.sub(r"\s+", "", body)
    def expand(prefix, s):
        paths, depth, start = [], 0, 0
        parts = []
        for k, ch in enumerate(s):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                parts.append(s[start:k])
                start = k + 1
        parts.append(s[start:])
        for p in parts:
            if not p:
                continue
            if "{" in p:
                head, rest = p.split("{", 1)
                paths += expand(prefix + head, rest[:-1])
            else:
                paths.append(prefix + p)
        return paths
    return expand("", body)


def main():
    files = {}
    for dirpath, _, names in os.walk(ROOT):
        for name in names:
            if name.endswith(".rs"):
                rel = os.path.relpath(os.path.join(dirpath, name), ROOT)
                files[rel] = module_of(rel)
    modules = set(files.values())
    problems = []
    edges = {}  # (a, b) -> first (file, line)

    def resolve(path, here):
        segs = path.split("::")
        if segs[0] == "crate":
            base, segs = (), segs[1:]
        elif segs[0] in ("super", "self"):
            base = here  # the file's module: `super` of a::b (a/b.rs or a/b/mod.rs) is a
            while segs and segs[0] in ("super", "self"):
                if segs[0] == "super":
                    base = base[:-1]
                segs = segs[1:]
        else:
            return None
        full = base + tuple(s for s in segs if s)
        for k in range(len(full), -1, -1):
            if full[:k] in modules:
                return full[:k]
        return None

    for rel, mod in sorted(files.items()):
        if is_test_file(rel):
            continue
        with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
            code = strip(f.read())
        layer = UPPER.get(mod[0], 0) if mod else None
        lines = code.split("\n")
        refs = []
        for m in re.finditer(r"\buse\s+((?:crate|super|self)\b[^;]*);", code):
            line = code.count("\n", 0, m.start()) + 1
            refs += [(p, line) for p in expand_use(m.group(1))]
        for m in re.finditer(r"(?<![A-Za-z0-9_:])((?:crate|super)(?:::[A-Za-z_][A-Za-z0-9_]*)+)", code):
            refs.append((m.group(1), code.count("\n", 0, m.start()) + 1))
        if layer == 0:
            for no, text in enumerate(lines, 1):
                if re.search(r"\bactix(_web|_rt)?\s*::", text) or re.search(r"\bderive\([^)]*\bMessage\b", text):
                    problems.append(f"{rel}:{no}: domain module uses actix: {text.strip()}")
        if not (mod and mod[0] == "store"):
            for no, text in enumerate(lines, 1):
                if re.search(r"\.db\(\)", text):
                    problems.append(f"{rel}:{no}: opens the store's database outside store/: {text.strip()}")
        for path, line in refs:
            target = resolve(path, mod)
            if target is None or target == mod:
                continue
            if layer is not None and target:
                tl = UPPER.get(target[0], 0)
                if tl > layer:
                    problems.append(
                        f"{rel}:{line}: {LAYER_NAMES[layer]} module {'::'.join(mod)} imports "
                        f"{LAYER_NAMES[tl]} module {'::'.join(target)}")
            k = 0
            while k < len(mod) and k < len(target) and mod[k] == target[k]:
                k += 1
            if k == len(mod) or k == len(target):
                continue  # parent and child
            a, b = mod[: k + 1], target[: k + 1]
            edges.setdefault((a, b), (rel, line, "::".join(target)))

    graph = {}
    for (a, b) in edges:
        graph.setdefault(a, set()).add(b)
    # Tarjan's strongly connected components.
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    for comp in sccs:
        names = sorted("::".join(c) for c in comp)
        problems.append("import cycle between " + ", ".join(names) + ":")
        for (a, b), (rel, line, target) in sorted(edges.items()):
            if a in comp and b in comp:
                problems.append(f"    {rel}:{line}: {'::'.join(a)} -> {target}")

    for p in problems:
        print(p)
    n_edges = len(edges)
    if problems:
        print(f"check-layers: {sum(1 for p in problems if not p.startswith('    '))} problem(s) in {len(files)} files")
        return 1
    print(f"check-layers: ok ({len(files)} files, {len(modules)} modules, {n_edges} cross-module imports, no cycles)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
