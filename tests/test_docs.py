"""The README and docs/ say what the repository does: the README's two commands are exactly what CI
runs, the code examples run and print what they say, every results table is the one its benchmark
renders and sits on its page, every relative link resolves, and no page names a tracker issue."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 300
TRACKER_ISSUE = re.compile(r"\bissues? [0-9]+", re.IGNORECASE)


def section(text: str, heading: str) -> str:
    """The body of the section that starts with ``heading`` (a whole heading line), up to the next
    heading of the same or a higher level."""
    level = heading.split(" ", 1)[0]
    body = f"\n{text}".split(f"\n{heading}\n", 1)[1]
    return re.split(rf"\n#{{1,{len(level)}}} ", body, maxsplit=1)[0]


def python_example(page: str, heading: str) -> str:
    text = ROOT.joinpath(page).read_text()
    return re.search(r"```python\n(.+?)\n```", section(text, heading), flags=re.S).group(1)


def readme_commands() -> list[str]:
    body = section(ROOT.joinpath("README.md").read_text(), "## Two commands")
    return re.findall(r"```bash\n(.+?)\n```", body, flags=re.S)


def markdown_pages() -> list[Path]:
    """The README, the CHANGELOG, every page under docs/ and the derivations in proofs/."""
    docs = sorted(ROOT.joinpath("docs").rglob("*.md"))
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", *docs, *sorted(ROOT.glob("proofs/*.md"))]


def outside_code(text: str) -> list[str]:
    """The lines of a Markdown text outside fenced code blocks, inline code spans blanked."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(re.sub(r"`[^`]*`", "`code`", line))
    return lines


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped (but hyphens and
    underscores), spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a Markdown file's headings (a repeated heading gets -1, -2, ... as on
    GitHub)."""
    seen: dict[str, int] = {}
    out = set()
    text = path.read_text()
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    for line in lines:
        match = re.match(r"#{1,6} (.+)", line)
        if match:
            slug = github_slug(match.group(1))
            out.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return out


def relative_links(path: Path) -> list[str]:
    """The targets of a page's Markdown links and images that are not web or mail addresses (a
    link's text may run over several lines; its target may not)."""
    text = "\n".join(outside_code(path.read_text()))
    targets = re.findall(r"!?\[[^\[\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text)
    return [target for target in targets if not re.match(r"(https?|mailto):", target)]


def test_readme_has_two_commands_and_ci_runs_both_verbatim():
    commands = readme_commands()
    assert len(commands) == 2
    main_command, test_command = commands
    assert "nqm verify" in main_command and "pytest" in test_command
    ci = ROOT.joinpath(".ci", "run").read_text()
    assert f"main_command='{main_command}'" in ci
    assert f"test_command='{test_command}'" in ci


def test_readme_is_a_front_door():
    lines = ROOT.joinpath("README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


def test_nqm_library_example_runs_and_prints_what_it_says(capsys):
    code = python_example("docs/theory.md", "## The library")
    exec(compile(code, "docs/theory.md", "exec"), {})
    untied, tied = (float(line) for line in capsys.readouterr().out.split())
    assert round(untied, 6) == 0.760949
    assert tied < untied


def test_lic_train_example_runs_and_prints_what_it_says(capsys):
    pytest.importorskip("torch")
    pytest.importorskip("compressai")
    code = python_example("docs/rules.md", "# The update rules for torch models (`lic_train`)")
    claimed = re.search(r"print\(.*\)  # ([0-9.]+):", code).group(1)
    exec(compile(code, "docs/rules.md", "exec"), {})
    assert capsys.readouterr().out.split() == [claimed]


def test_results_tables_are_the_published_benchmark_results_on_their_pages():
    """Every line of every results table is rendered from benchmarks/results/*/results.json
    (``python benchmarks/docs_tables.py``) and appears on the page that ``PAGES`` gives it: no
    number is copied by hand, and no table moves without its test."""
    pytest.importorskip("torch")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from docs_tables import pages
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    rendered = pages()
    names = {name for tables in rendered.values() for name in tables}
    assert {"time_to_quality quality", "time_to_quality acceleration", "ablation"} <= names
    for page, tables in rendered.items():
        text = ROOT.joinpath(page).read_text()
        for name, lines in tables.items():
            for line in lines:
                assert line in text, f"{page}: the {name} table lacks: {line}"


@pytest.mark.parametrize("page", markdown_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    assert page.exists(), f"{page.relative_to(ROOT)} is missing"
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no such file or folder")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_github_slug_follows_github():
    assert github_slug("Two commands") == "two-commands"
    assert github_slug("Results (`python benchmarks/nqm_scaling.py`)") == (
        "results-python-benchmarksnqm_scalingpy"
    )
    assert github_slug("Checkpoints: `export` and `--checkpoint`") == (
        "checkpoints-export-and---checkpoint"
    )


def tracked_text_files() -> list[Path]:
    """The repository's text files: those git tracks, or, outside a git checkout (an unpacked
    source archive), every file but the ignored folders; results.json files left out."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        paths = [ROOT / name for name in listed.decode().split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        ignored = {
            ".git",
            ".venv",
            "runs",
            "build",
            ".hypothesis",
            ".pytest_cache",
            ".ruff_cache",
            "__pycache__",
            "nqm-report",
            "gpu-check",
        }
        paths = [p for p in ROOT.rglob("*") if not ignored & set(p.relative_to(ROOT).parts)]
    files = []
    for path in paths:
        if path.name == "results.json" or not path.is_file() or ".egg-info" in str(path):
            continue
        head = path.read_bytes()[:8192]
        if b"\0" not in head:
            files.append(path)
    return files


def test_no_file_names_a_tracker_issue():
    """Pages, docstrings and comments say what changed by version (CHANGELOG.md) and by what was
    measured, never by a tracker's issue number, which a reader of the repository cannot see."""
    hits = []
    for path in tracked_text_files():
        text = path.read_text(errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            if TRACKER_ISSUE.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:80]}")
    assert not hits, "\n".join(hits)
