"""``lic-train compare``: the same seeds for every method, ratios to Adam, BD-rate over 4 lambdas,
the report files (rebuilt alike by ``rewrite_report``), and the checks of its arguments."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("skimage")

from lic_train.experiments import rewrite_report  # noqa: E402
from lic_train.experiments.compare import compare  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    from PIL import Image

    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for split, count in (("train", 3), ("test", 1)):
        (root / split).mkdir()
        for i in range(count):
            smooth = rng.random((10, 12, 3)).repeat(8, 0).repeat(8, 1)  # blocks: codable content
            Image.fromarray((smooth * 255).astype(np.uint8)).save(root / split / f"{i}.png")
    return root


def test_a_comparison_over_four_lambdas_writes_its_report(folder, tmp_path, small_preset):
    lambdas = (0.002, 0.01, 0.05, 0.25)
    results = compare(
        small_preset(lambdas), tmp_path, methods=["adam", "sma"], data=str(folder), jobs=2
    )
    runs = results["runs"]
    assert len(runs) == 2 * 2 * len(lambdas)
    adam, sma = results["methods"]["adam"], results["methods"]["sma"]
    assert adam["final_loss_ratio"]["mean"] == 1.0 and adam["time_ratio"]["mean"] == 1.0
    for run in runs:  # the ratio of each SMA run is against Adam with its seed and lambda
        if run["method"] == "sma":
            twin = next(
                r for r in runs
                if r["method"] == "adam" and (r["seed"], r["lambda"]) == (run["seed"], run["lambda"])
            )  # fmt: skip
            assert run["final_loss"] / twin["final_loss"] > 0
    ratios = [
        r["final_loss"] / next(a["final_loss"] for a in runs if a["method"] == "adam"
                               and (a["seed"], a["lambda"]) == (r["seed"], r["lambda"]))
        for r in runs if r["method"] == "sma"
    ]  # fmt: skip
    assert sma["final_loss_ratio"]["mean"] == pytest.approx(np.mean(ratios))
    bd_rate = sma["bd_rate_percent"]
    assert bd_rate["of"] == 2 and (bd_rate["mean"] is None or np.isfinite(bd_rate["mean"]))
    assert all(r["bpp"] > 0 for r in runs)
    per_lambda = results["by_lambda"]["sma"]
    assert list(per_lambda) == ["0.002", "0.01", "0.05", "0.25"]
    assert per_lambda["0.01"]["final_loss_ratio"]["mean"] == pytest.approx(
        np.mean([r for r, run in zip(ratios, [r for r in runs if r["method"] == "sma"],
                                     strict=True) if run["lambda"] == 0.01])
    )  # fmt: skip
    assert all(v == 1.0 for r in runs for _, v in r["trainable_curve"])
    for run in runs:  # each run's result is on disk before the summary
        saved = json.loads((tmp_path / "runs" / run["name"] / "result.json").read_text())
        assert saved["bpp"] == run["bpp"] and saved["curve"] == [list(c) for c in run["curve"]]
    for run in runs:  # the final loss is the trailing mean of the last validations
        assert run["final_loss"] == pytest.approx(np.mean([v for _, v in run["curve"][-3:]]))
    for name in ("report.md", "results.json", "loss_vs_step.png", "trainable_vs_step.png",
                 "rd_curves.png"):  # fmt: skip
        assert (tmp_path / name).stat().st_size > 0
    assert json.loads((tmp_path / "results.json").read_text())["methods"].keys() == {"adam", "sma"}
    report = (tmp_path / "report.md").read_text()
    assert "| adam |" in report and "| sma |" in report
    (tmp_path / "report.md").unlink()
    assert rewrite_report(tmp_path)["methods"] == json.loads(json.dumps(results["methods"]))
    assert (tmp_path / "report.md").read_text() == report


def test_jobs_must_be_positive(folder, tmp_path, small_preset):
    with pytest.raises(ValueError, match="jobs must be an integer >= 1, got 0"):
        compare(small_preset((0.01,)), tmp_path, data=str(folder), jobs=0)


def test_the_baseline_is_required(folder, tmp_path, small_preset):
    with pytest.raises(ValueError, match="must include adam"):
        compare(small_preset((0.01,)), tmp_path, methods=["sma"], data=str(folder))
