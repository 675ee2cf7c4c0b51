"""The README's two commands are exactly what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    section = ROOT.joinpath("README.md").read_text().split("## Two commands", 1)[1]
    section = section.split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section, flags=re.S)


def test_readme_has_two_commands_and_ci_runs_both_verbatim():
    commands = readme_commands()
    assert len(commands) == 2
    main_command, test_command = commands
    assert "nqm verify" in main_command and "pytest" in test_command
    ci = ROOT.joinpath(".ci", "run").read_text()
    assert f"main_command='{main_command}'" in ci
    assert f"test_command='{test_command}'" in ci


def test_readme_library_example_runs_and_prints_what_it_says(capsys):
    section = ROOT.joinpath("README.md").read_text().split("## The library", 1)[1]
    code = re.search(r"```python\n(.+?)\n```", section, flags=re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})
    untied, tied = (float(line) for line in capsys.readouterr().out.split())
    assert round(untied, 6) == 0.760949
    assert tied < untied


def test_readme_lic_train_example_runs_and_prints_what_it_says(capsys):
    pytest.importorskip("torch")
    section = ROOT.joinpath("README.md").read_text().split("## The update rules for torch", 1)[1]
    code = re.search(r"```python\n(.+?)\n```", section, flags=re.S).group(1)
    claimed = re.search(r"print\(.*\)  # ([0-9.]+):", code).group(1)
    exec(compile(code, "README.md", "exec"), {})
    assert capsys.readouterr().out.split() == [claimed]


def test_readme_results_tables_are_the_published_benchmark_results():
    """Every row of the README's results tables is rendered from benchmarks/results/*/results.json
    (``python benchmarks/readme_tables.py``): no number is copied by hand."""
    pytest.importorskip("torch")
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from readme_tables import tables
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    readme = ROOT.joinpath("README.md").read_text()
    rendered = tables()
    assert {"time_to_quality quality", "time_to_quality acceleration", "ablation"} <= set(rendered)
    for name, lines in rendered.items():
        for line in lines:
            assert line in readme, f"README's {name} table lacks: {line}"
