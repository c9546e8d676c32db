"""The package layout holds: the method imports nothing from the harness, and imports only flow inwards."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import adprune

SRC = Path(adprune.__file__).parent

# What each package may import of adprune besides itself (ARCHITECTURE.md draws the same map).
ALLOWED = {
    "prune": {"errors"},
    "models": {"errors"},
    "runs": {"errors", "limits", "prune", "models"},
    "report": {"errors", "runs"},
    "train": {"errors", "limits", "prune", "models", "runs", "report"},
    "bench": {"errors", "limits", "prune", "models", "runs", "report", "train"},
}
LEAVES = {"errors", "limits"}


def _adprune_imports(path: Path) -> set[str]:
    """The top-level adprune packages or modules that `path` imports (absolute or relative)."""
    package = path.relative_to(SRC).parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                module = [*base, *(node.module.split(".") if node.module else [])]
                names = (
                    [".".join(["adprune", *module])] if module else [f"adprune.{a.name}" for a in node.names]
                )
            else:
                names = [node.module or ""]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "adprune" and len(parts) > 1:
                found.add(parts[1])
    return found


def _modules(package: str) -> list[Path]:
    return sorted((SRC / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_package_imports_only_what_its_docstring_allows(package):
    offending = {}
    for path in _modules(package):
        extra = _adprune_imports(path) - ALLOWED[package] - {package}
        if extra:
            offending[str(path.relative_to(SRC))] = sorted(extra)
    assert offending == {}


def test_the_leaf_modules_import_nothing_of_adprune():
    assert {leaf: _adprune_imports(SRC / f"{leaf}.py") for leaf in LEAVES} == {leaf: set() for leaf in LEAVES}


def test_the_import_scan_sees_relative_and_absolute_imports():
    assert _adprune_imports(SRC / "prune" / "pruner.py") == {"errors", "prune"}
    assert "prune" in _adprune_imports(SRC / "runs" / "pruned_files.py")
    assert "models" in _adprune_imports(SRC / "runs" / "model_files.py")


def test_importing_the_method_loads_no_harness_module():
    code = (
        "import sys, adprune.prune.pruner, adprune.prune.targets, adprune.prune.importance\n"
        "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('adprune.')}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "['errors', 'prune']"


def test_every_package_says_what_it_holds_and_may_import():
    for init in sorted(SRC.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        if init.parent.name in ALLOWED or init.parent.name == "cli":
            assert "May import" in doc, init


def test_no_module_is_over_400_lines():
    long = {
        str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400
    }
    assert long == {}
