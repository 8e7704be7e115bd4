"""The dependency rules the design rests on (docs/architecture.md), checked on the source itself."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mhss_ray"

# Lower ranks never import higher ones; modules of equal rank in different places never import each
# other (data and methods are independent; tune writes studies, analysis reads them, neither imports the other).
RANKS = {
    "errors": 0,
    "yaml_files": 1,
    "registry": 2,
    "rounds": 2,
    "config": 3,
    "disk_space": 3,
    "outputs": 4,
    "study_record": 4,
    "noise": 4,
    "verdicts": 4,
    "data": 5,
    "methods": 5,
    "pretrain": 5,
    "train": 6,
    "tune": 7,
    "analysis": 7,
    "apply": 8,
    "cli": 9,
    "__init__": 10,
}


def _part(module: str) -> str:
    """The top-level part of a dotted module name inside the package: mhss_ray.tune.space -> tune."""
    return module.split(".")[1] if module.count(".") >= 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module as mhss_ray.X...) of every import of the package in a file, lazy ones included."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            out += [(node.lineno, t) for t in names if t.startswith("mhss_ray")]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("mhss_ray")]
    return out


def test_every_import_goes_down_the_layers():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = _part(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
        for line, target in _imports(path):
            other = _part(target)
            if other == own:
                continue
            if RANKS[other] >= RANKS[own]:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target} ({own} may not import {other})")
    assert not wrong, "\n".join(wrong)


def test_analysis_never_imports_tune():
    found = [
        f"{p.name}:{line} {t}" for p in (PACKAGE / "analysis").rglob("*.py") for line, t in _imports(p) if t.startswith("mhss_ray.tune")
    ]
    assert not found, found


def test_training_and_methods_never_import_ray():
    """A fresh interpreter imports every module of mhss_ray.train and mhss_ray.methods (and what they
    import); Ray is not among the modules it then holds."""
    modules = [
        ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        for sub in ("train", "methods")
        for p in sorted((PACKAGE / sub).rglob("*.py"))
    ]
    code = "import importlib, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules)
    code += "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", out.stdout[:500]
    assert len(modules) >= 15  # the walk found the packages' modules


def test_the_layer_table_names_every_part_of_the_package():
    parts = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    assert parts == set(RANKS), parts ^ set(RANKS)
