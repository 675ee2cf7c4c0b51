"""The layers of the repository and the one direction of their imports (docs/layout.md).

``lic_dynamics`` (validation, the CLI error contract, atomic files) imports neither package; ``nqm``
imports no torch and nothing of ``lic_train``; inside ``lic_train`` the update rules import neither
the trainer nor the experiments (nor CompressAI), the trainer does not import the experiments, and
only the CLI imports the CLI. No module reaches into another package's private modules. Read from
the source (every import, those inside functions included), so that a lazy import cannot hide a
wrong direction.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, by its full dotted name (``from a import b`` counts as both
    ``a`` and ``a.b``, since ``b`` may be a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package.replace(".", "/")).rglob("*.py"))


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


# (layer, what it must not import)
FORBIDDEN = [
    ("lic_dynamics", ("nqm", "lic_train", "torch")),
    ("nqm", ("lic_train", "torch", "compressai")),
    ("lic_train.rules", ("lic_train.trainer", "lic_train.experiments", "lic_train.cli",
                         "lic_train.testing", "compressai")),
    ("lic_train.trainer", ("lic_train.experiments", "lic_train.cli", "lic_train.testing")),
    ("lic_train.experiments", ("lic_train.cli", "lic_train.testing")),
]  # fmt: skip


@pytest.mark.parametrize(("layer", "forbidden"), FORBIDDEN, ids=[layer for layer, _ in FORBIDDEN])
def test_imports_go_one_way(layer, forbidden):
    files = sources(layer)
    assert files, f"no sources found for {layer}"
    wrong = sorted(
        f"{module_name(path)} imports {name}"
        for path in files
        for name in imports(path)
        if within(name, forbidden)
    )
    assert wrong == []


def test_no_module_imports_another_package_private_module():
    wrong = []
    for package in ("lic_dynamics", "nqm", "lic_train"):
        for path in sources(package):
            for name in imports(path):
                top, *rest = name.split(".")
                if top != package and any(part.startswith("_") for part in rest):
                    wrong.append(f"{module_name(path)} imports {name}")
    assert wrong == []


def test_the_checker_sees_a_wrong_import(tmp_path):
    """The scan finds an import inside a function body (a lazy import is still an import)."""
    path = tmp_path / "probe.py"
    path.write_text("def f():\n    from lic_train.trainer.loop import fit\n    import torch\n")
    found = imports(path)
    assert within("lic_train.trainer.loop.fit", ("lic_train.trainer",))
    assert {"lic_train.trainer.loop", "torch"} <= found


def test_nqm_imports_and_runs_without_torch():
    code = (
        "import sys\n"
        "class NoTorch:\n"  # any import of torch now fails
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ImportError('torch is blocked')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "import lic_dynamics.cli, lic_dynamics.files, lic_dynamics.validation\n"
        "import nqm, nqm.cli, nqm.closed_form, nqm.embedding, nqm.moments, nqm.montecarlo\n"
        "import nqm.problem, nqm.report, nqm.rules, nqm.scaling, nqm.verify\n"
        "print(nqm.cli.main(['steady', '--rule', 'sma', '--lr', '0.5', '--h', '1', '--json']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("0")
    assert "torch" not in done.stderr
