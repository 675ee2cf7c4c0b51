"""lic_train.experiments.time_to_quality: the protocol's checks, the plan (trunks keep a checkpoint
where each budget's decay begins, branches start there, fine-tunes start from the finished models
the paper's claim names), and a whole tiny benchmark that continues where it was stopped."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

pytest.importorskip("torch")
pytest.importorskip("skimage")

from lic_train.experiments.time_to_quality import (
    PROTOCOLS,
    Protocol,
    plan,
    quick,
    run,
)
from lic_train.experiments.ttq_report import rewrite_report


def test_every_budget_branches_off_its_trunk_where_its_own_decay_begins():
    protocol = PROTOCOLS["cpu"]
    trunks, branches, finetunes = plan(protocol)
    methods, seeds = protocol.methods, protocol.seeds
    assert len(trunks) == len(methods) * len(seeds)
    assert len(branches) == len(trunks) * (len(protocol.budgets) - 1)
    kept = trunks[0].config.keep_checkpoints
    assert kept == (216, 432, 630, 864)  # 0.9 x (240, 480, 700, 960)
    for job in branches:
        trunk = next(t for t in trunks if t.method == job.method and t.seed == job.seed)
        assert job.start == (f"runs/{trunk.name}", round(0.9 * job.config.steps))
        assert job.start[1] in trunk.config.keep_checkpoints
        assert job.config.steps == round(job.budget * 1200)
        # The same run but for its length (and the steps it keeps): resumable from the trunk.
        assert trunk.config.differences(job.config.to_dict()) == []
    # The paper's claim: baselines fine-tune their model at T for 80 units, claimants their model
    # at 70 units for 50, to every other lambda.
    assert len(finetunes) == len(seeds) * 3 * (len(protocol.baselines) + len(protocol.claimants))
    for job in finetunes:
        source = job.config.checkpoint
        if job.method in protocol.baselines:
            assert job.config.steps == 800 and source.endswith("_budget1/checkpoint.pth.tar")
        else:
            assert job.config.steps == 500 and source.endswith("_budget0.583/checkpoint.pth.tar")
        assert f"{job.method.replace('+', '-')}_lambda0.0018_seed{job.seed}_" in source
        assert job.lmbda in protocol.finetune_lambdas
    # The method order rotates from one seed to the next.
    assert [j.method for j in trunks[:2]] == ["adam", "ema"]
    assert trunks[len(methods)].method == "ema"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"budgets": (0.5, 0.2, 1.0)}, "budgets must increase to 1.0"),
        ({"budgets": (0.2, 0.5)}, "budgets must increase to 1.0"),
        ({"budgets": (0.0, 1.0)}, r"budgets must be in \(0, 1\]"),
        ({"claim_scratch": 0.3}, "claim_scratch must be one of the budgets"),
        ({"claimants": ("lookahead",)}, "claimants 'lookahead' is not one of the methods"),
        ({"methods": ("ema", "adam", "sma", "stdet+sma")}, "methods must start with adam"),
        ({"baseline_finetune": 1.5}, r"baseline_finetune must be in \(0, 1\]"),
        ({"claimants": ("ema", "sma")}, "claimants 'ema' is a baseline too"),
        ({"jobs": 0}, "jobs must be an integer"),
    ],
)
def test_a_bad_protocol_is_named(change, match):
    with pytest.raises(ValueError, match=match):
        replace(PROTOCOLS["cpu"], **change)


def test_a_schedule_without_a_decay_is_refused():
    base = replace(PROTOCOLS["cpu"].base, lr_schedule="plateau")
    with pytest.raises(ValueError, match="multistep schedule"):
        Protocol(base=base, seeds=(0,), sma=PROTOCOLS["cpu"].sma, stdet=PROTOCOLS["cpu"].stdet)


def test_a_tiny_benchmark_runs_reports_and_continues_where_it_stopped(tmp_path):
    protocol = replace(quick(PROTOCOLS["cpu"]), methods=("adam", "ema", "sma"),
                       budgets=(7 / 12, 1.0), finetune_lambdas=(0.0067,))  # fmt: skip
    done = []
    summary = run(protocol, tmp_path, jobs=2, on_log=lambda r: done.append(r["run"]))
    runs = summary["runs"]
    assert len(runs) == len(done) == 2 * 3 * 2 + 2 * 3  # scratch models, then fine-tunes
    for name in ("report.md", "results.json", "quality_vs_budget.png", "acceleration.png",
                 "rd_curves.png"):  # fmt: skip
        assert (tmp_path / name).stat().st_size > 0
    report = (tmp_path / "report.md").read_text()
    assert "## Acceleration factors" in report and "sma vs ema" in report
    assert set(summary["summary"]["acceleration"]) == {"adam", "ema"}
    # Each finished model was coded for real, per test image.
    assert all(len(r["images"]) == 2 and r["bpp"] > 0 for r in runs)
    # A branch is its trunk up to the branch point, then its own decay.
    branch = next(r for r in runs if r["kind"] == "branch")
    folder = tmp_path / "runs" / branch["name"]
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    rates = [r["lr"] for r in records if "lr" in r]
    assert rates[0] == 1e-3 and rates[-1] == pytest.approx(1e-4)

    # Stopped after these runs: a run without its result.json is trained again, the others not.
    (tmp_path / "runs" / branch["name"] / "result.json").unlink()
    again = []
    rerun = run(protocol, tmp_path, jobs=2, on_log=lambda r: again.append(r["run"]))
    assert again == [branch["name"]]
    assert len(rerun["runs"]) == len(runs)
    assert rewrite_report(tmp_path)["summary"] == rerun["summary"]


def test_a_diverged_run_is_a_result_and_so_are_the_runs_that_would_start_from_it(tmp_path):
    from lic_train.experiments.pool import train_and_code
    from lic_train.experiments.time_to_quality import _inherited_divergence

    # Adam at lr 1e30 overflows at once: the run is recorded, not raised, and not coded.
    config = replace(
        quick(PROTOCOLS["cpu"]).base, learning_rate=1e30, steps=6, lr_milestones=(0.9,)
    )
    result = train_and_code(config.to_dict(), str(tmp_path / "run"), None, 1, None, None, True)
    assert result["diverged"] == 1 and "stopped" in result["message"]
    assert json.loads((tmp_path / "run" / "result.json").read_text()) == result
    with pytest.raises(RuntimeError, match="stopped"):  # the comparisons still stop on it
        train_and_code(config.to_dict(), str(tmp_path / "again"), None, 1)

    trunks, branches, finetunes = plan(PROTOCOLS["cpu"])
    trunk = trunks[0]
    early, late = (next(b for b in branches if b.start[0].endswith(trunk.name)
                        and b.start[1] == at) for at in (216, 864))  # fmt: skip
    done = {trunk.name: {"diverged": 700}}
    assert _inherited_divergence(early, done) is None  # its start was kept before step 700
    assert _inherited_divergence(late, done) == {"diverged": 700, "inherited": trunk.name}
    finetune = next(f for f in finetunes if trunk.name in f.config.checkpoint)
    assert _inherited_divergence(finetune, done) == {"diverged": 700, "inherited": trunk.name}
    assert _inherited_divergence(finetune, {trunk.name: {"quality": 1.0}}) is None
    assert _inherited_divergence(trunk, done) is None


def test_a_folder_of_another_protocol_is_refused_before_training(tmp_path):
    from lic_train.experiments.time_to_quality import check_same_protocol, protocol_dict

    protocol = quick(PROTOCOLS["cpu"])
    (tmp_path / "results.json").write_text(json.dumps({"protocol": protocol_dict(protocol)}))
    check_same_protocol(protocol, tmp_path)
    # More seeds or methods reuse the runs; another T, lambda or budget would mix them.
    check_same_protocol(replace(protocol, seeds=(0, 1, 2)), tmp_path)
    for other, named in (
        (replace(protocol, base=replace(protocol.base, steps=60)), "base.steps"),
        (replace(protocol, lmbda=0.0035), "lambda"),
        (replace(protocol, budgets=(0.5, 7 / 12, 1.0)), "budgets"),
        (replace(protocol, base=replace(protocol.base, learning_rate=1e-4)), "base.learning_rate"),
    ):
        with pytest.raises(ValueError, match=rf"holds runs of another protocol \({named} differ"):
            run(other, tmp_path)
