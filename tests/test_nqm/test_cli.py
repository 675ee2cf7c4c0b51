"""The command line: exit codes, JSON schema, files written, one-line errors on bad input."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import pytest

from nqm import closed_form
from nqm.cli import main
from nqm.rules import SGD, SMA


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_steady_json_schema_and_values(capsys):
    code, out, err = run(
        capsys,
        "steady",
        "--rule",
        "sma",
        "--lr",
        "0.5",
        "--h",
        "1",
        "--k",
        "10",
        "--beta",
        "0.9",
        "--json",
    )
    assert code == 0 and err == ""
    result = json.loads(out)
    assert {"rule", "variance", "sgd_variance", "ratio"} <= result.keys()
    # TABLE_B_SMA of tests/test_nqm/test_closed_form.py: a = 0.5, k = 10, beta = 0.9, h = sigma2 = 1.
    assert result["variance"] == pytest.approx(0.01757473, rel=1e-6)
    assert result["sgd_variance"] == pytest.approx(1 / 3, rel=1e-12)
    assert result["ratio"] == pytest.approx(0.05272418, rel=1e-6)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--rule", "sgd"], 0.5 / 1.5),
        (["--rule", "momentum", "--mu", "0.9"], 95 / 33),
        (["--rule", "lookahead", "--k", "5", "--alpha", "0.5"], 0.11340206),
        (["--rule", "ema", "--beta", "0.9"], None),
        (["--rule", "sma", "--k", "5", "--beta", "0.5", "--feedback"], 0.11340206),
        (["--rule", "polyak", "--k", "1", "--window", "10"], 0.8667969 / 10),
    ],
)
def test_steady_every_rule(capsys, argv, expected):
    code, out, _ = run(capsys, "steady", "--lr", "0.5", "--h", "1", "--json", *argv)
    assert code == 0
    result = json.loads(out)
    if expected is not None:
        assert result["variance"] == pytest.approx(expected, rel=1e-6)
    assert result["ratio"] == pytest.approx(result["variance"] / result["sgd_variance"])


def test_steady_batch_and_noise_scale_the_variance(capsys):
    _, out, _ = run(
        capsys,
        "steady",
        "--rule",
        "sma",
        "--lr",
        "0.3",
        "--h",
        "2",
        "--c",
        "4",
        "--batch",
        "2",
        "--json",
    )
    result = json.loads(out)
    expected = closed_form.steady_variance(SMA(SGD(0.3), 5, 0.9), 2.0, 2.0)
    assert result["variance"] == pytest.approx(float(expected), rel=1e-12)


def test_steady_momentum_where_sgd_diverges(capsys):
    code, out, _ = run(
        capsys, "steady", "--rule", "momentum", "--mu", "0.9", "--lr", "3", "--h", "1", "--json"
    )
    result = json.loads(out)
    assert code == 0 and result["variance"] == pytest.approx(71.25)
    assert result["sgd_variance"] is None and result["ratio"] is None


def test_steady_text_output(capsys):
    code, out, _ = run(
        capsys, "steady", "--rule", "sma", "--lr", "1", "--h", "1", "--k", "5", "--beta", "0.9"
    )
    assert code == 0
    assert "ratio" in out and "0.0526315789" in out  # 1/19 = (1 - beta) / (1 + beta), R at rho = 1


def test_simulate_json_agrees_with_exact(capsys):
    code, out, _ = run(
        capsys,
        "simulate",
        "--rule",
        "sma",
        "--lr",
        "0.5",
        "--dim",
        "50",
        "--steps",
        "40",
        "--chains",
        "400",
        "--points",
        "8",
        "--json",
    )
    assert code == 0
    result = json.loads(out)
    rows = result["steps"]
    assert rows[0]["step"] == 0 and rows[-1]["step"] == 40
    for row in rows:
        assert abs(row["z_loss"]) < 4.5
        assert row["exact_loss"] == pytest.approx(row["exact_bias"] + row["exact_variance"])
        assert abs(row["mc_variance"] - row["exact_variance"]) < 4.5 * row["mc_variance_se"]


def test_simulate_text_output(capsys):
    code, out, _ = run(
        capsys,
        "simulate",
        "--rule",
        "lookahead",
        "--lr",
        "0.5",
        "--dim",
        "20",
        "--steps",
        "10",
        "--chains",
        "50",
        "--points",
        "3",
    )
    assert code == 0
    assert "exact loss" in out and "Lookahead" in out


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["steady", "--rule", "sma", "--lr", "-1", "--h", "1"], "--lr"),
        (["steady", "--rule", "sma", "--lr", "nan", "--h", "1"], "--lr"),
        (["steady", "--rule", "sma", "--lr", "0.5", "--h", "1", "--beta", "1"], "--beta"),
        (["steady", "--rule", "sma", "--lr", "0.5", "--h", "1", "--beta", "-0.2"], "--beta"),
        (["steady", "--rule", "sma", "--lr", "0.5", "--h", "1", "--k", "0"], "--k"),
        (["steady", "--rule", "lookahead", "--lr", "0.5", "--h", "1", "--alpha", "0"], "--alpha"),
        (["steady", "--rule", "momentum", "--lr", "0.5", "--h", "1", "--mu", "1"], "--mu"),
        (["steady", "--rule", "momentum", "--lr", "0.5", "--h", "1"], "--mu"),
        (["steady", "--rule", "sma", "--lr", "0.5", "--h", "0"], "--h"),
        (["steady", "--rule", "sma", "--lr", "0.5", "--h", "1", "--c", "-1"], "--c"),
        (["steady", "--rule", "sma", "--lr", "0.5", "--h", "1", "--batch", "0"], "--batch"),
        (["steady", "--rule", "polyak", "--lr", "0.5", "--h", "1", "--window", "0"], "--window"),
        (["steady", "--rule", "sma", "--lr", "2.5", "--h", "1"], "rho = lr*h"),
        (["steady", "--rule", "sgd", "--lr", "2", "--h", "1"], "rho = lr*h"),
        (["steady", "--rule", "nope", "--lr", "1", "--h", "1"], "--rule"),
        (["steady", "--rule", "sgd", "--lr", "abc", "--h", "1"], "--lr"),
        (["steady", "--lr", "1", "--h", "1"], "--rule"),
        (["simulate", "--rule", "sgd", "--lr", "0.5", "--chains", "1"], "--chains"),
        (["simulate", "--rule", "sgd", "--lr", "0.5", "--dim", "0"], "--dim"),
        (["simulate", "--rule", "sgd", "--lr", "0.5", "--steps", "-1"], "--steps"),
        (["simulate", "--rule", "sgd", "--lr", "0.5", "--seed", "-1"], "--seed"),
        (["simulate", "--rule", "sgd", "--lr", "0.5", "--points", "1"], "--points"),
        (["verify", "--seed", "-3"], "--seed"),
        (["frobnicate"], "must be one of"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, flag):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert flag in lines[0]
    assert "Traceback" not in err


def test_verify_out_is_a_file(capsys, tmp_path):
    target = tmp_path / "taken"
    target.write_text("not a folder")
    code, _, err = run(capsys, "verify", "--quick", "--out", str(target))
    assert code == 2 and "--out" in err and len(err.strip().splitlines()) == 1
    assert target.read_text() == "not a folder"


def test_verify_quick_writes_report_and_exits_0(capsys, tmp_path):
    out_dir = tmp_path / "report"
    code, out, _ = run(capsys, "verify", "--quick", "--out", str(out_dir), "--seed", "3")
    assert code == 0
    assert "claims hold" in out and "FAILS" not in out
    claims = json.loads((out_dir / "claims.json").read_text())
    assert claims["all_hold"] is True and claims["settings"] == {"seed": 3, "quick": True}
    keys = {c["key"] for c in claims["claims"]}
    assert {
        "variance-reduction",
        "closed-form-equals-lyapunov",
        "monte-carlo-agrees",
        "not-monotone-in-k",
        "transient-worse",
    } <= keys
    assert all(c["holds"] for c in claims["claims"])
    report = (out_dir / "report.md").read_text()
    assert "| claim | evidence | verdict |" in report
    for png in ("ratio_heatmap.png", "loss_curves.png"):
        assert (out_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".")]  # no temporary left


def test_verify_exits_1_when_a_claim_fails(capsys, tmp_path, monkeypatch):
    from nqm import verify

    real = verify.claim_no_order

    def broken(settings):
        claim = real(settings)
        claim.holds = False
        return claim

    monkeypatch.setattr(verify, "claim_no_order", broken)
    code, out, _ = run(capsys, "verify", "--quick", "--out", str(tmp_path))
    assert code == 1 and "FAILS" in out


def test_console_script_and_module_entry_point(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "nqm", "steady", "--rule", "sgd", "--lr", "3", "--h", "1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--rule", "ema", "--feedback"], "--feedback"),
        (["--rule", "sgd", "--k", "3"], "--k"),
        (["--rule", "sma", "--alpha", "0.3"], "--alpha"),
        (["--rule", "lookahead", "--beta", "0.3"], "--beta"),
        (["--rule", "sma", "--window", "3"], "--window"),
        (["--rule", "sgd", "--mu", "0.5"], "--mu"),
    ],
)
def test_a_flag_the_rule_does_not_read_is_an_error(capsys, argv, flag):
    code, out, err = run(capsys, "steady", "--lr", "0.5", "--h", "1", *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and f"{flag} does not apply" in err


def test_steady_ratio_is_defined_without_noise(capsys):
    code, out, _ = run(
        capsys,
        "steady",
        "--rule",
        "sma",
        "--lr",
        "1",
        "--h",
        "1",
        "--c",
        "0",
        "--beta",
        "0.9",
        "--json",
    )
    result = json.loads(out)
    assert code == 0 and result["variance"] == 0.0
    assert result["ratio"] == pytest.approx(1 / 19)  # rho = 1: (1-beta)/(1+beta)


def test_steady_lookahead_beyond_rho_two(capsys):
    code, out, _ = run(
        capsys,
        "steady",
        "--rule",
        "lookahead",
        "--lr",
        "2.5",
        "--h",
        "1",
        "--k",
        "1",
        "--alpha",
        "0.5",
        "--json",
    )
    result = json.loads(out)
    assert code == 0 and result["variance"] == pytest.approx(5 / 3)
    assert result["sgd_variance"] is None and result["ratio"] is None


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["steady", "--rule", "sma", "--lr", "1e308", "--h", "1e-308"], "overflows"),
        (["steady", "--rule", "sma", "--lr", "0.5", "--h", "1", "--k", "1" + "0" * 22], "--k"),
        (["simulate", "--rule", "sgd", "--lr", "3", "--dim", "10", "--steps", "1000"], "overflow"),
        (["simulate", "--rule", "sgd", "--lr", "0.5", "--dim", "1" + "0" * 20], "--dim"),
        (["verify", "--out", ""], "--out"),
    ],
)
def test_extreme_input_is_one_line_not_a_traceback_or_nan(capsys, argv, needle):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and needle in err


# ---- nqm scaling ------------------------------------------------------------------------------------

SMALL_SCALING = [
    "scaling",
    "--dim",
    "100",
    "--batch",
    "4",
    "64",
    "--target",
    "0.1",
    "--workers",
    "1",
]


def test_scaling_json_records(capsys):
    assert main([*SMALL_SCALING, "--rules", "sgd", "momentum", "sma", "--json"]) == 0
    out, err = capsys.readouterr()
    records = json.loads(out)
    assert [(r["rule"], r["batch"]) for r in records] == [
        (rule, batch) for rule in ("sgd", "momentum", "sma") for batch in (4, 64, None)
    ]
    for r in records:
        assert {"rule", "batch", "steps", "lr", "critical_batch", "min_steps"} <= set(r)
        assert isinstance(r["steps"], int) and r["lr"] > 0
    assert all("mu" in r for r in records if r["rule"] == "momentum")
    assert all({"k", "beta"} <= set(r) for r in records if r["rule"] == "sma")
    assert err.count("\n") == 1 and err.startswith("nqm scaling: 3 rules x 3 batch sizes")


def test_scaling_text_and_report(capsys, tmp_path):
    out_dir = tmp_path / "scaling"
    assert main([*SMALL_SCALING, "--rules", "sgd", "precond-sgd", "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "B = 4" in out and "B = inf" in out and "critical batch size" in out
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "lr.png", "report.md", "scaling.json", "steps.png"
    ]  # fmt: skip
    payload = json.loads((out_dir / "scaling.json").read_text())
    assert payload["settings"]["batches"] == [4, 64] and payload["examples_needed"] > 0
    assert "| precond-sgd |" in (out_dir / "report.md").read_text()


def test_scaling_reports_an_unreachable_target_as_such(capsys):
    """A target below every learning rate's steady state at B = 4 (down to 1e-8 of the stability
    limit): 'unreachable' in the table, null in JSON, never a number of steps."""
    argv = ["scaling", "--dim", "100", "--batch", "4", "--target", "1e-12", "--rules", "sgd",
            "--workers", "1"]  # fmt: skip
    assert main([*argv, "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert records[0]["batch"] == 4 and records[0]["steps"] is None and records[0]["lr"] is None
    assert records[1]["batch"] is None and records[1]["steps"] > 0  # no noise: reachable
    assert main(argv) == 0
    assert "unreachable" in capsys.readouterr().out


def test_scaling_binned_differs_from_exact(capsys):
    base = ["scaling", "--rules", "sgd", "--batch", "256", "--workers", "1", "--json"]
    assert main(base) == 0
    exact = json.loads(capsys.readouterr().out)
    assert main([*base, "--bins", "100"]) == 0
    binned = json.loads(capsys.readouterr().out)
    assert exact[0]["steps"] != binned[0]["steps"]


@pytest.mark.parametrize(
    ("signum", "status", "word"), [(15, 143, "terminated"), (2, 130, "interrupted")]
)
def test_scaling_stopped_by_a_signal_to_its_group_ends_its_workers_quietly(
    tmp_path, signum, status, word
):
    """SIGTERM (a scheduler) or Ctrl-C (SIGINT to the whole group) while the workers run: one
    line, the shell's status, no worker left and nothing written to --out."""
    import os
    import time

    out = tmp_path / "report"
    argv = [sys.executable, "-m", "nqm", "scaling", "--workers", "2", "--out", str(out)]
    # A shell starts background jobs with SIGINT ignored (CI, nohup), and a child inherits that:
    # give the command the default disposition a terminal would, so that Ctrl-C is Ctrl-C.
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True, preexec_fn=_default_sigint)  # fmt: skip
    time.sleep(3)  # the workers are busy by now
    os.killpg(process.pid, signum)
    _, err = process.communicate(timeout=60)
    lines = err.decode().strip().splitlines()
    assert process.returncode == status
    assert lines[1:] == [f"nqm scaling: {word}" + (" (SIGTERM)" if signum == 15 else "")]
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)  # the group is gone: no worker outlived it
    assert not out.exists()


def _default_sigint() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


# ---- what a run will cost: refused from its flags alone, or announced ------------------------------

GIB = 2**30


@pytest.fixture
def nothing_started(monkeypatch):
    """Every piece of work of simulate and scaling replaced by a failure, the machine's memory
    fixed at 24 GiB: a refusal must come from the flags alone."""
    from nqm import cli, moments, montecarlo, resources, scaling

    def started(*args, **kwargs):
        raise AssertionError("work started before the refusal")

    for module, name in ((cli, "standard"), (moments, "loss_curve"), (moments, "moments_at"),
                         (montecarlo, "simulate"), (scaling, "study"), (scaling, "sweep")):  # fmt: skip
        monkeypatch.setattr(module, name, started)
    monkeypatch.setattr(resources, "available_memory", lambda: 24 * GIB)


SIMULATE = ["simulate", "--rule", "sgd", "--lr", "0.5"]


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        ([*SIMULATE, "--dim", "1000000000", "--steps", "10", "--chains", "10"],
         ["--dim 1000000000 with", "GiB of memory; this machine has 24 GiB available"]),
        ([*SIMULATE, "--steps", "1000000000000"],
         ["--steps 1000000000000 with --dim 1000", "years here, and work over a year is refused"]),
        ([*SIMULATE, "--chains", "1000000000000"], ["--chains 1000000000000 with", "years here"]),
        ([*SIMULATE, "--points", "1000000000", "--steps", "100000000"],
         ["--points 1000000000 with --steps 100000000", "of memory"]),
        ([*SIMULATE, "--dim", "100000000", "--points", "1000000"], ["--dim 100000000", "memory"]),
        ([*SIMULATE, "--dim", str(2**53 + 1)], ["--dim must be an integer in [1, 2**53]"]),
        ([*SIMULATE, "--points", str(2**53 + 1)], ["--points must be an integer in [2, 2**53]"]),
        (["scaling", "--dim", "1000000"], ["--dim 1000000 with --workers", "of memory"]),
        (["scaling", "--dim", "100000", "--workers", "1"], ["--dim 100000", "24 GiB available"]),
    ],
)  # fmt: skip
def test_absurd_work_is_refused_from_the_flags_at_once(capsys, nothing_started, argv, needles):
    """One line, status 2, the flag and its value first, nothing allocated or started, within a
    second (the estimate is arithmetic on the flags)."""
    start = time.perf_counter()
    code, out, err = run(capsys, *argv)
    assert time.perf_counter() - start < 1.0
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"nqm {argv[0]}: error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_a_long_simulate_says_how_long_before_anything_is_allocated(capsys, monkeypatch):
    """Estimated at 100000 steps of d = 1000 and 100 chains (about 12 minutes here): the line comes
    before the problem is even made; Ctrl-C there stops it with its own line."""
    from nqm import cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "standard", interrupted)
    code, out, err = run(capsys, *SIMULATE, "--steps", "100000")
    assert code == 130 and out == ""
    first, last = err.splitlines()
    assert first.startswith("nqm simulate: this will take about ") and " minutes (Ctrl-C" in first
    assert last == "nqm simulate: interrupted"


def test_a_short_simulate_says_nothing_on_stderr(capsys):
    code, _, err = run(capsys, *SIMULATE, "--dim", "20", "--steps", "30", "--chains", "10")
    assert code == 0 and err == ""


def test_more_points_than_steps_report_every_step_without_the_grid(capsys):
    """A billion log-spaced points over 50 steps are every step: no grid of a billion is made."""
    argv = [*SIMULATE, "--dim", "10", "--steps", "50", "--chains", "4", "--points", "1000000000"]
    start = time.perf_counter()
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0 and err == "" and time.perf_counter() - start < 10
    assert [row["step"] for row in json.loads(out)["steps"]] == list(range(51))


def test_a_divergent_simulate_is_refused_before_its_progress_line(capsys, monkeypatch):
    """Estimated at minutes, yet its moments overflow by step 532: one line, not an estimate first
    (found on a sample of coordinates by repeated squaring, before anything of size d is made)."""
    from nqm import cli, moments, montecarlo

    def started(*args, **kwargs):
        raise AssertionError("work started before the refusal")

    for module, name in ((cli, "standard"), (moments, "loss_curve"), (montecarlo, "simulate")):
        monkeypatch.setattr(module, name, started)
    start = time.perf_counter()
    code, out, err = run(capsys, "simulate", "--rule", "sgd", "--lr", "3", "--steps", "5000",
                         "--dim", "100000")  # fmt: skip
    assert time.perf_counter() - start < 1.0
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert err.startswith(
        "nqm simulate: error: --steps 5000: the moments overflow float64 by step 532"
    )


def test_scaling_says_how_long_on_its_first_line(capsys, monkeypatch):
    from nqm import resources, scaling

    monkeypatch.setattr(resources, "available_memory", lambda: 24 * GIB)  # it needs about 4.3 GiB

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(scaling, "study", interrupted)
    code, _, err = run(capsys, "scaling", "--workers", "1")
    first, last = err.splitlines()
    assert code == 130 and last == "nqm scaling: interrupted"
    assert first.startswith("nqm scaling: 7 rules x 21 batch sizes on 1 worker, about ")


# ---- values beyond float64: each message says what is true ------------------------------------------


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["--rule", "sgd", "--lr", "0.5", "--h", "5e-324", "--precondition", "1"],
         ["--h 5e-324 with --lr 0.5 and --precondition 1.0: the variance is about 1.4e+646, "
          "which overflows float64 (rho = lr*P*h = 0.5)"]),
        (["--rule", "sgd", "--lr", "0.5", "--h", "1e300", "--precondition", "1"],
         ["--h 1e+300 with --lr 0.5 and --precondition 1.0: the variance is about 3.3e-601, "
          "which underflows float64 (rho = lr*P*h = 0.5)"]),
        (["--rule", "sma", "--lr", "1e308", "--h", "1e-308"], ["--h 1e-308 with --lr 1e+308",
                                                               "about 5.3e+614, which overflows"]),
        (["--rule", "sgd", "--lr", "1e300", "--h", "1e300"],
         ["rho = lr*h must be in (0, 2), got rho = about 1e+600 (beyond float64)"]),
        (["--rule", "sma", "--lr", "1e-300", "--h", "1e-300"], ["rho = lr*h is about 1e-600"]),
        (["--rule", "lookahead", "--lr", "0.5", "--h", "1", "--alpha", "5e-324"],
         ["--h 1.0 with --lr 0.5 and --alpha 5e-324: the variance underflows float64"]),
        (["--rule", "lookahead", "--mu", "0.5", "--lr", "0.5", "--h", "1e-200", "--precondition",
          "1"], ["--h 1e-200 with --lr 0.5, --precondition 1.0 and --mu 0.5", "overflows"]),
    ],
)  # fmt: skip
def test_steady_states_the_true_size_of_what_float64_cannot_hold(capsys, argv, needles):
    """rho and the variance worked out in logarithms (the variance as c/(B h^2) times the rule's
    at curvature 1), so that the message never shows an inf or a 0.0 the user did not cause."""
    code, out, err = run(capsys, "steady", *argv)
    assert code == 2 and out == "" and len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    assert "inf" not in err.replace("float64", "") and "got 0.0" not in err


def test_steady_lookahead_keeps_a_tiny_alpha(capsys):
    """alpha = 1e-300 is in (0, 1]: the variance is alpha times SGD's, about, not an error that
    alpha is 0.0 (it was rounded through beta = 1 - alpha)."""
    code, out, err = run(capsys, "steady", "--rule", "lookahead", "--lr", "0.5", "--h", "1",
                         "--alpha", "1e-300", "--json")  # fmt: skip
    result = json.loads(out)
    assert code == 0 and err == "" and "alpha=1e-300" in result["label"]
    # R_LA = alpha(1+u) / (alpha(1+u) + 2(1-alpha)) -> alpha (1+u)/2, u = 0.5^5
    assert result["ratio"] == pytest.approx(1e-300 * (1 + 0.5**5) / 2, rel=1e-12)
    assert result["variance"] == pytest.approx(result["ratio"] / 3, rel=1e-12)


@pytest.mark.parametrize(
    ("argv", "rho_line"),
    [
        (["--rule", "sgd", "--lr", "1e-300", "--h", "1e-300"], "about 1e-600 (beyond float64)"),
        (["--rule", "sgd", "--lr", "0.5", "--h", "5e-324", "--precondition", "1", "--c", "0"],
         "0.5"),
    ],
)  # fmt: skip
def test_steady_rho_line_shows_what_float64_cannot(capsys, argv, rho_line):
    code, out, err = run(capsys, "steady", *argv)
    assert code == 0 and err == ""
    assert [line.split(None, 3)[-1] for line in out.splitlines() if line.startswith("rho")] == [
        rho_line
    ]


def test_steady_polyak_counts_past_2_to_the_53(capsys):
    """k n = 2^106 samples apart: u^n is formed in logarithms, not refused as a bad --k."""
    n = str(2**53)
    code, out, err = run(capsys, "steady", "--rule", "polyak", "--lr", "0.5", "--h", "1",
                         "--k", n, "--window", n, "--json")  # fmt: skip
    result = json.loads(out)
    assert code == 0 and err == ""
    # (V*/n) [(1+u)/(1-u) - ...] with u = 0.5^(2^53) = 0: V*/n
    assert result["variance"] == pytest.approx((1 / 3) / 2**53, rel=1e-12)


def test_minus_zero_is_shown_as_zero(capsys):
    """-0 is 0 in every label and output (``-0.0 + 0.0`` is 0.0), whatever the parser gives."""
    code, out, err = run(capsys, "steady", "--rule", "sma", "--lr", "0.5", "--h", "1", "--beta",
                         "-0", "--mu", "-0", "--precondition", "-0", "--c", "-0", "--json")  # fmt: skip
    result = json.loads(out)
    assert code == 0 and err == "" and "-0" not in out
    assert result["label"] == "SMA(k=5, beta=0) over Momentum(lr=0.5, mu=0)"
    assert math.copysign(1.0, result["precondition"]) == 1.0


# ---- matplotlib where HOME cannot be written --------------------------------------------------------


def _no_home(tmp_path):
    """An environment whose HOME is a file (unwritable even for root) and whose temporary
    folder is ``tmp_path/tmp``; no matplotlib or XDG folder set."""
    home = tmp_path / "home-is-a-file"
    home.write_text("")
    (tmp_path / "tmp").mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")}  # fmt: skip
    return {**env, "HOME": str(home), "TMPDIR": str(tmp_path / "tmp")}


def test_verify_with_an_unwritable_home_prints_one_line_for_a_bad_flag(tmp_path):
    done = subprocess.run([sys.executable, "-m", "nqm", "verify", "--seed", "-1"],
                          capture_output=True, text=True, env=_no_home(tmp_path), cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "nqm verify: error: --seed must be an integer in [0, 2**53], got -1"
    ]


def test_verify_with_an_unwritable_home_is_quiet_and_reuses_one_folder(tmp_path):
    """matplotlib gets one private folder in the temporary folder, kept for the next run (its font
    cache), instead of two warnings and a new folder each run."""
    env = _no_home(tmp_path)
    for run_number in (1, 2):
        out = tmp_path / f"report{run_number}"
        done = subprocess.run([sys.executable, "-m", "nqm", "verify", "--quick", "--out", str(out)],
                              capture_output=True, text=True, env=env, cwd=tmp_path)  # fmt: skip
        assert done.returncode == 0 and done.stderr == "", done.stderr
        assert (out / "loss_curves.png").exists()
        folders = list((tmp_path / "tmp").iterdir())
        assert [f.name for f in folders] == [f"nqm-matplotlib-{os.getuid()}"]
        assert folders[0].stat().st_mode & 0o777 == 0o700


def test_a_full_disk_under_scaling_out_is_one_line_naming_the_file(small_disk, fill, capsys):
    """Not the input's fault: status 1, the file named, nothing half-written."""
    fill(small_disk)
    argv = ["scaling", "--dim", "100", "--rules", "sgd", "--batch", "4", "16", "--workers", "1"]
    code, _, err = run(capsys, *argv, "--out", str(small_disk / "study"))
    assert code == 1
    lines = err.strip().splitlines()
    assert lines[-1].startswith(f"nqm scaling: error: {small_disk / 'study'}/")
    assert lines[-1].endswith(": No space left on device")
    assert not list((small_disk / "study").glob(".*.tmp"))


def test_a_reader_that_goes_away_ends_nqm_quietly():
    argv = ["simulate", "--rule", "sgd", "--lr", "0.5", "--dim", "10", "--steps", "10", "--json"]
    script = "import sys; from nqm.cli import main; sys.exit(main(sys.argv[1:]))"
    process = subprocess.Popen([sys.executable, "-c", script, *argv], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)  # fmt: skip
    process.stdout.close()  # before nqm writes: its first write meets a closed pipe
    assert process.wait(timeout=60) == 141
    assert process.stderr.read() == b""
