"""Imports point one way (DEVELOPERS.md, "Layering"): every import of every module of
netshrink/ -- top level, inside functions, `from . import` -- is checked against the
layer table, and no private name crosses a module boundary.

The checks read the source with `ast`, so a cycle hidden inside a function body is
found as surely as one at the top of a file.
"""
from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "netshrink"

# (row, prefix). A module belongs to the row of its longest matching prefix. Rows as in
# DEVELOPERS.md; two prefixes in one row are siblings and may not import each other.
LAYERS: list[tuple[int, str]] = [
    (0, "netshrink.errors"),
    (1, "netshrink.functional"), (1, "netshrink.codec"),
    (2, "netshrink.core"),
    (3, "netshrink.reparams"),
    (4, "netshrink.runtime"),
    (5, "netshrink.artifact"),
    (6, "netshrink.train"),
    (7, "netshrink.structure"),
    (8, "netshrink.measure"),
    (9, "netshrink.analysis"),
    (10, "netshrink.methods"),
    (11, "netshrink.zoo"),
    (12, "netshrink.pipeline"),
    (13, "netshrink.testing"), (13, "netshrink.auto"),
    (14, "netshrink"),
    (15, "netshrink.cli"),
    (16, "netshrink_bench"),
]

# A function-local import of a netshrink module is allowed only where it keeps a
# genuinely optional dependency optional: (importing module, imported module) -> reason.
OPTIONAL = {
    ("netshrink.cli.bench", "netshrink_bench.registry"):
        "the benchmark suites are a separate package (netshrink_bench), installed beside the "
        "library; only `netshrink bench` needs them, so `netshrink` runs without them",
}

# Temporary: violations in code other helpers of issue 12 are still moving
# (value: the helper moving it). Must be empty when issue 12 closes; prune entries that no
# longer occur (printed by `python tests/test_layers.py`).
KNOWN: dict[tuple[str, str], str] = {
}


@dataclass(frozen=True)
class Imp:
    src: str          # importing module
    dst: str          # imported module (netshrink.x.y), or a module's attribute owner
    names: tuple      # names taken by `from dst import ...`
    local: bool       # inside a function / class body
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


@functools.lru_cache(maxsize=None)
def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()


def _imports(path: Path, src: str | None = None) -> list[Imp]:
    src = src or _module_name(path)
    package = src if path.name == "__init__.py" else src.rpartition(".")[0]
    tree = ast.parse(path.read_text(), filename=str(path))
    top = {id(n) for n in tree.body}
    # if / try blocks at module level are still module level
    for n in tree.body:
        if isinstance(n, (ast.If, ast.Try)):
            top |= {id(c) for c in ast.walk(n)}
    out = []
    for node in ast.walk(tree):
        local = id(node) not in top
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in ("netshrink", "netshrink_bench"):
                    out.append(Imp(src, a.name, (), local, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] not in ("netshrink", "netshrink_bench"):
                continue
            plain = []
            for a in node.names:   # `from netshrink import zoo` imports the module netshrink.zoo
                if _is_module(f"{mod}.{a.name}"):
                    out.append(Imp(src, f"{mod}.{a.name}", (), local, node.lineno))
                else:
                    plain.append(a.name)
            if plain or not node.names:
                out.append(Imp(src, mod, tuple(plain), local, node.lineno))
    return out


def _row(module: str) -> tuple[int, str]:
    best = max((p for _, p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return next(r for r, p in LAYERS if p == best), best


@functools.lru_cache(maxsize=1)
def _all_imports() -> tuple[Imp, ...]:
    return tuple(i for p in sorted(PKG.rglob("*.py")) for i in _imports(p))


def _against_direction(i: Imp) -> bool:
    (rs, ps), (rd, pd) = _row(i.src), _row(i.dst)
    return rd > rs or (rd == rs and ps != pd)


def test_layer_table_covers_every_package():
    # a new top-level package or module must get a row (DEVELOPERS.md and LAYERS above)
    missing = [m for m in (_module_name(p) for p in PKG.rglob("*.py"))
               if _row(m)[1] == "netshrink" and m != "netshrink"]
    assert not missing, f"modules without a layer row: {missing}"


def test_imports_point_down():
    bad = {(i.src, i.dst): i for i in _all_imports() if _against_direction(i)}
    allowed = set(OPTIONAL) | set(KNOWN)
    new = sorted(f"{i.src}:{i.line} imports {i.dst} (row {_row(i.src)[0]} -> row {_row(i.dst)[0]})"
                 for k, i in bad.items() if k not in allowed)
    assert not new, "imports against the layering (DEVELOPERS.md):\n" + "\n".join(new)


def test_no_function_local_netshrink_imports():
    # a lazy import hides a cycle; only optional dependencies may be imported late
    local = {(i.src, i.dst): i for i in _all_imports() if i.local}
    allowed = set(OPTIONAL) | set(KNOWN)
    new = sorted(f"{i.src}:{i.line} imports {i.dst} inside a function" for k, i in local.items()
                 if k not in allowed)
    assert not new, "function-local imports of netshrink modules:\n" + "\n".join(new)
    unused = sorted(f"{s} -> {d}" for s, d in OPTIONAL if (s, d) not in local)
    assert not unused, "OPTIONAL entries that no longer occur (remove them):\n" + "\n".join(unused)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_private_names_across_modules():
    bad = []
    by_file = {}
    for i in _all_imports():
        by_file.setdefault(i.src, []).append(i)
    for path in sorted(PKG.rglob("*.py")):
        imps = by_file.get(_module_name(path), [])
        for i in imps:
            bad += [f"{i.src}:{i.line} imports {i.dst}.{n}" for n in i.names if _private(n) and i.dst != i.src]
        # `module._name` through a name bound to a netshrink module
        tree = ast.parse(path.read_text())
        bound = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                bound.update({a.asname: a.name for a in node.names if a.asname and a.name.startswith("netshrink")})
            elif isinstance(node, ast.ImportFrom) and node.names:
                for i in imps:
                    if i.line == node.lineno and not i.names:
                        bound.update({a.asname or a.name: i.dst for a in node.names if i.dst.endswith("." + a.name)})
        src = _module_name(path)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in bound and _private(node.attr) and bound[node.value.id] != src):
                bad.append(f"{src}:{node.lineno} uses {bound[node.value.id]}.{node.attr}")
    bad = [b for b in bad if not any(b.startswith(s + ":") and f" {d}" in b for s, d in KNOWN_PRIVATE)]
    assert not bad, "private names used across modules:\n" + "\n".join(sorted(set(bad)))


# Temporary, as KNOWN: (module, "imported.module._name") still being moved by their owners.
KNOWN_PRIVATE: dict[tuple[str, str], str] = {
}


def test_checker_sees_local_and_relative_imports(tmp_path):
    # the walker itself, on a made-up module netshrink.core.x: a function-local relative
    # import and a plain one are both found, resolved and judged
    f = tmp_path / "x.py"
    f.write_text("import torch\nfrom netshrink.errors import NetshrinkError\n"
                 "def f():\n    from .. import zoo\n    import netshrink.cli\n")
    imps = _imports(f, "netshrink.core.x")
    assert [(i.dst, i.local) for i in imps] == [("netshrink.errors", False), ("netshrink.zoo", True),
                                               ("netshrink.cli", True)]
    assert [_against_direction(i) for i in imps] == [False, True, True]
    assert _against_direction(Imp("netshrink.functional.x", "netshrink.codec.archive", (), False, 1))
    assert not _against_direction(Imp("netshrink.zoo.models", "netshrink.core.targets", (), False, 1))
    assert _row("netshrink") == (14, "netshrink")


if __name__ == "__main__":   # which KNOWN entries no longer occur
    found = {(i.src, i.dst) for i in _all_imports() if _against_direction(i) or i.local}
    print("\n".join(f"stale: {s} -> {d}" for s, d in KNOWN if (s, d) not in found) or "no stale entries")


def test_developers_md_lists_every_module():
    # DEVELOPERS.md's layout block names every module (a new file gets its line there)
    text = (ROOT / "DEVELOPERS.md").read_text()
    block = text[text.index("## Layout"):]
    block = block[: block.index("\n## ", 5)]
    listed = {(pkg, line.split()[0]) for pkg in ("netshrink", "netshrink_bench")
              for line in block.split(f"{pkg}/\n", 1)[-1].split("\n```")[0].splitlines()
              if line.startswith("  ") and line.split()[0].endswith(".py")}
    missing = [str(p.relative_to(ROOT)) for pkg in ("netshrink", "netshrink_bench") for p in sorted((ROOT / pkg).rglob("*.py"))
               if (pkg, str(p.relative_to(ROOT / pkg))) not in listed
               and not (p.name == "__init__.py" and p.parent != ROOT / pkg)]
    assert not missing, "modules missing from DEVELOPERS.md's layout: " + ", ".join(missing)
