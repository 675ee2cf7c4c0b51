"""Images per second and peak memory of ``lic-train fit`` against CompressAI's own ``examples/train.py``.

What: the same model (``--model``, quality 3), data folder, patch, batch, number of DataLoader
workers and seed, trained by CompressAI's ``examples/train.py`` (the copy installed with the
CompressAI wheel, ``site-packages/examples/train.py``, found through
``importlib.util.find_spec("compressai")`` and run unchanged) and by ``lic-train fit``, each in its
own process, interleaved. Loss and optimizers are both tools' defaults (lambda 1e-2, Adam lr 1e-4,
auxiliary Adam lr 1e-3, gradient clipping at norm 1.0). The goals: lic-train's time per step
<= 1.0x CompressAI's, and lic-train's peak memory independent of the data set size (with
``--images`` 2,000 within 10% of ``--small-images`` 20).

Data: folders in CompressAI's ``ImageFolder`` layout (flat ``train/`` and ``test/``), built at run
time from the colour photographs bundled with scikit-image (astronaut, chelsea, coffee, rocket,
hubble_deep_field, retina, immunohistochemistry, both halves of stereo_motorcycle; nothing is
downloaded): each image a random rescaled crop, 576-704 x 432-528 pixels, flipped or not, saved as
JPEG (quality 90); image ``i`` depends only on ``(--seed, i)``, so the small folder's images are the
first ones of the large folder. 8 test images. The folders are kept under ``--work/data`` and
reused by later runs.

Time: CompressAI's train.py has no step limit (``-e 1`` trains one epoch over all of ``train/``,
then validates and saves two checkpoints), so its folder holds exactly ``steps * batch`` links to
the first images of the large folder (one link per image it trains on) and a link to the same
``test/``; lic-train reads the large folder itself (``--data DIR/train --test-data DIR/test
--steps S --validate-every S``). Each tool runs S steps and 1 step; seconds per step are
``(wall(S) - wall(1)) / (S - 1)``: process start, imports, model construction, listing or reading
the data folder, DataLoader start, the first batch, the one validation and the checkpoint writes
happen once in both runs and cancel; what remains is S - 1 steady-state steps, data loading
included. Images/s is ``batch`` / that. The whole-process wall time of the S-step run and the
startup (``wall(1)`` - one step) are shown too. The ratio is lic-train / CompressAI, the median of
the per-repeat ratios with their min-max. Keep S large enough (the default 20) that S - 1 steps
dwarf the jitter of the startup: with ``--quick`` (S = 2) the numbers mean nothing.

Memory: every ``--sample-ms`` (50) the process group of each run (the tool and its DataLoader
workers; each run starts its own session) is read from /proc: the sum of their RSS (``statm``,
shared pages counted in every process that maps them) every sample, and the sum of their PSS
(``smaps_rollup``, shared pages split between the processes) every 20th sample (it costs about
4 ms per GB to read). Each row gives the peaks of the S-step runs (median over repeats), and the
main process's own peak RSS from the kernel (``wait4``). Samples can miss a peak shorter than the
interval; the sampler's own CPU time (a few % of one core) is in ``results.json``. A run whose RSS
sum passes ``--max-memory-gb`` (default 75% of the machine's memory) is killed and reported as
such.

Order: in each of ``--repeats`` repeats, CompressAI S steps, lic-train S steps, lic-train on the
small folder, CompressAI 1 step, lic-train 1 step; odd repeats swap the two tools, so that drifts in
machine speed hit both alike. One untimed ``import`` of both first warms the file cache.

Output: the tables on stdout; ``results.json`` (every run, the settings, the environment) and
``report.md`` (the tables) in ``--out``; the runs' logs and folders under ``--work/runs``.

Run:  python benchmarks/trainer_throughput.py            # defaults: 2,000 images, 2 repeats of 20
                                                          # steps, batch 8 of 128x128, 2 workers:
                                                          # a few minutes on 2 CPU cores
      python benchmarks/trainer_throughput.py --quick    # smoke test: 40 images, 1 repeat of 2
                                                          # steps, batch 2 of 64x64; results under
                                                          # --work, the published ones untouched
      python benchmarks/trainer_throughput.py --device cuda  # CompressAI gets --cuda
It exits 0 when every run finished (a benchmark, not a test: goals not met are reported, not
failed), 1 when a tool failed (the end of its log is printed), 2 on a bad flag.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
from _table import render  # benchmarks/ is on sys.path when a script runs

from lic_dynamics import files

ROOT = Path(__file__).resolve().parents[1]
TIME_GOAL = 1.0  # lic-train / CompressAI seconds per step, at most
MEMORY_GOAL = 1.10  # lic-train's peak with --images / with --small-images, at most
TEST_IMAGES = 8
DATA_VERSION = 1  # bump when the generated images change
WIDTHS, HEIGHTS = (576, 704), (432, 528)  # generated image sizes, inclusive
MAX_PATCH = min(HEIGHTS[0], WIDTHS[0]) // 64 * 64  # 384: every image holds the patch
PSS_EVERY = 20  # samples
QUALITY = 3  # CompressAI's train.py: image_models[model](quality=3), whatever it is told
NEEDED_FLAGS = ("--num-workers", "--test-data", "--test-batch-size")  # of lic-train fit
MB = 2**20


# ---------------------------------------------------------------------------------------- data


def photographs() -> list[np.ndarray]:
    """The colour photographs bundled with scikit-image, as (H, W, 3) uint8 arrays."""
    from skimage import data

    left, right = data.stereo_motorcycle()[:2]
    return [
        data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), data.hubble_deep_field(),
        data.retina(), data.immunohistochemistry(), left, right,
    ]  # fmt: skip


def make_image(sources: list, seed: int, split: int, index: int):
    """Image ``index`` of ``split`` (0 train, 1 test): a random rescaled crop, flipped or not;
    a pure function of ``(seed, split, index)``."""
    from PIL import Image

    rng = np.random.default_rng([seed, split, index])
    source = sources[int(rng.integers(len(sources)))]
    height, width = source.shape[:2]
    w = int(rng.integers(WIDTHS[0], WIDTHS[1] + 1))
    h = int(rng.integers(HEIGHTS[0], HEIGHTS[1] + 1))
    scale = max(w / width, h / height) * rng.uniform(1.0, 1.6)  # output pixels per source pixel
    box_w, box_h = w / scale, h / scale  # the crop, in source pixels
    x, y = rng.uniform(0, width - box_w), rng.uniform(0, height - box_h)
    image = Image.fromarray(source).resize(
        (w, h), Image.Resampling.BICUBIC, box=(x, y, x + box_w, y + box_h)
    )
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return image


def image_folder(data: Path, images: int, seed: int) -> Path:
    """``data/photos-...`` with ``images`` training and :data:`TEST_IMAGES` test JPEGs, built
    unless present (built under a temporary name and renamed: a folder that exists is complete)."""
    folder = data / f"photos-v{DATA_VERSION}-seed{seed}-{images}"
    if folder.is_dir():
        return folder
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "train").mkdir(parents=True)
    (partial / "test").mkdir()
    sources = photographs()
    start = time.perf_counter()
    for i in range(images):
        make_image(sources, seed, 0, i).save(partial / "train" / f"img{i:05d}.jpg", quality=90)
        if (i + 1) % 500 == 0:
            print(f"  {i + 1}/{images} images", file=sys.stderr, flush=True)
    for i in range(TEST_IMAGES):
        make_image(sources, seed, 1, i).save(partial / "test" / f"test{i:02d}.jpg", quality=90)
    os.replace(partial, folder)
    print(f"built {folder} in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return folder


def linked_folder(data: Path, big: Path, count: int) -> Path:
    """A folder for CompressAI's train.py: ``train/`` holds links to the first ``count`` training
    images of ``big`` (one epoch = exactly ``count / batch`` steps), ``test/`` links to its
    ``test/``."""
    folder = data / f"{big.name}-first{count}"
    if folder.is_dir():
        return folder
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "train").mkdir(parents=True)
    for source in sorted((big / "train").iterdir())[:count]:
        (partial / "train" / source.name).symlink_to(source.resolve())
    (partial / "test").symlink_to((big / "test").resolve(), target_is_directory=True)
    os.replace(partial, folder)
    return folder


# ------------------------------------------------------------------------------- measurement


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``."""
    members = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(name))
    return members


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except (OSError, IndexError, ValueError):
        return 0


def pss_bytes(pid: int) -> int | None:
    """PSS from ``smaps_rollup``; 0 for a process gone meanwhile, None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except FileNotFoundError:
        return 0 if not os.path.exists(f"/proc/{pid}") else None
    except ProcessLookupError:
        return 0
    except OSError:
        return None
    return None


class Sampler(threading.Thread):
    """Samples the memory of process group ``pgid`` until :meth:`finish`; kills the group when
    its RSS sum passes ``cap`` bytes."""

    def __init__(self, pgid: int, interval: float, cap: int) -> None:
        super().__init__(daemon=True)
        self.pgid, self.interval, self.cap = pgid, interval, cap
        self.peak_rss, self.peak_pss, self.pss_readable = 0, 0, True
        self.processes, self.samples, self.cpu_s = 0, 0, 0.0
        self.killed: str | None = None
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            pids = group_members(self.pgid)
            rss = sum(rss_bytes(p) for p in pids)
            self.peak_rss = max(self.peak_rss, rss)
            self.processes = max(self.processes, len(pids))
            if self.samples % PSS_EVERY == 0 and self.pss_readable:
                pss = [pss_bytes(p) for p in pids]
                if any(v is None for v in pss):
                    self.pss_readable = False
                else:
                    self.peak_pss = max(self.peak_pss, sum(pss))
            self.samples += 1
            if rss > self.cap and self.killed is None:
                self.killed = f"RSS sum {rss / MB:.0f} MB > --max-memory-gb {self.cap / 2**30:g}"
                kill_group(self.pgid)
            self._done.wait(self.interval)
        self.cpu_s = time.thread_time()

    def finish(self) -> None:
        self._done.set()
        self.join()


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def measure(command: list[str], cwd: Path, env: dict, log: Path, interval: float, cap: int) -> dict:
    """Run ``command`` in ``cwd`` (its own session, output to ``log``) while sampling its memory;
    wall time from just before the start to the main process's exit."""
    with open(log, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        sampler = Sampler(proc.pid, interval, cap)
        sampler.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # interrupted: take the run down with us
            kill_group(proc.pid)
            proc.wait()
            sampler.finish()
            raise
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        sampler.finish()
    leftover = group_members(proc.pid)
    if leftover:  # workers that outlived their main process
        kill_group(proc.pid)
    return {
        "wall_s": wall,
        "returncode": proc.returncode,
        "killed": sampler.killed,
        "peak_rss_bytes": sampler.peak_rss,
        "peak_pss_bytes": sampler.peak_pss if sampler.pss_readable else None,
        "main_max_rss_bytes": usage.ru_maxrss * 1024,  # KiB on Linux
        "processes": sampler.processes,
        "samples": sampler.samples,
        "sampler_cpu_s": sampler.cpu_s,
        "leftover_processes": len(leftover),
    }


# ------------------------------------------------------------------------------------- tools


def compressai_train_py() -> Path:
    """``site-packages/examples/train.py``, installed with the CompressAI wheel."""
    spec = importlib.util.find_spec("compressai")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("CompressAI is not installed")
    path = Path(spec.origin).resolve().parents[1] / "examples" / "train.py"
    if not path.is_file():
        raise FileNotFoundError(f"CompressAI's examples/train.py is not at {path}")
    return path


def compressai_command(train_py: Path, folder: Path, a: argparse.Namespace) -> list[str]:
    return [
        sys.executable, str(train_py), "-m", a.model, "-d", str(folder), "-e", "1",
        "--batch-size", str(a.batch_size), "--test-batch-size", str(a.batch_size),
        "--patch-size", *map(str, a.patch_size), "-n", str(a.num_workers), "--seed", str(a.seed),
        *(["--cuda"] if a.device == "cuda" else []),
    ]  # fmt: skip


def lic_train_command(folder: Path, steps: int, out: Path, a: argparse.Namespace) -> list[str]:
    return [
        sys.executable, "-m", "lic_train", "fit", "--data", str(folder / "train"),
        "--test-data", str(folder / "test"), "-n", str(a.num_workers), "--model", a.model,
        "--quality", str(a.quality), "--patch-size", *map(str, a.patch_size),
        "--batch-size", str(a.batch_size), "--test-batch-size", str(a.batch_size),
        "--steps", str(steps), "--validate-every", str(steps), "--lr-schedule", "none",
        "--seed", str(a.seed), "--device", a.device, "--out", str(out),
    ]  # fmt: skip


def missing_lic_train_flags(env: dict) -> list[str]:
    done = subprocess.run([sys.executable, "-m", "lic_train", "fit", "--help"], env=env,
                          capture_output=True, text=True, check=False)  # fmt: skip
    return [flag for flag in NEEDED_FLAGS if flag not in done.stdout]


def tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# ----------------------------------------------------------------------------------- summary


def spread(values: list[float]) -> dict | None:
    return None if not values else {
        "median": statistics.median(values), "min": min(values), "max": max(values),
        "values": values,
    }  # fmt: skip


def summarise(runs: list[dict], a: argparse.Namespace) -> tuple[dict, dict]:
    """Time and memory summaries of ``runs``."""
    steps = a.steps

    def pick(tool: str, images: int, run_steps: int) -> dict[int, dict]:
        return {
            r["repeat"]: r
            for r in runs
            if r["tool"] == tool and r["images"] == images and r["steps"] == run_steps
        }

    def usable(r: dict | None) -> bool:
        return r is not None and r["returncode"] == 0 and r["killed"] is None

    per_step: dict[str, dict[int, float]] = {}
    time_rows = {}
    for tool in ("compressai", "lic-train"):
        long, short = pick(tool, a.images, steps), pick(tool, a.images, 1)
        per_step[tool] = {
            k: (long[k]["wall_s"] - short[k]["wall_s"]) / (steps - 1)
            for k in long
            if usable(long[k]) and usable(short.get(k))
        }
        values = list(per_step[tool].values())
        time_rows[tool] = {
            "seconds_per_step": spread(values),
            "images_per_s": (
                a.batch_size / statistics.median(values)
                if values and statistics.median(values) > 0 else None
            ),
            "wall_s": spread([r["wall_s"] for r in long.values() if usable(r)]),
            "startup_s": spread([
                short[k]["wall_s"] - per_step[tool][k] for k in per_step[tool]
            ]),
        }  # fmt: skip
    both = sorted(per_step["compressai"].keys() & per_step["lic-train"].keys())
    ratios = [
        per_step["lic-train"][k] / per_step["compressai"][k]
        for k in both
        if per_step["compressai"][k] > 0
    ]
    ratio = spread(ratios)
    time_summary = {
        "tools": time_rows,
        "ratio_lic_train_to_compressai": ratio,
        "goal": TIME_GOAL,
        "goal_met": None if ratio is None else ratio["median"] <= TIME_GOAL,
    }

    memory_rows = {}
    for key, tool, images in (
        ("compressai", "compressai", a.images),
        ("lic-train", "lic-train", a.images),
        ("lic-train-small", "lic-train", a.small_images),
    ):
        chosen = [r for r in pick(tool, images, steps).values() if r["returncode"] == 0]
        killed = [r for r in pick(tool, images, steps).values() if r["killed"]]
        pss = [r["peak_pss_bytes"] for r in chosen if r["peak_pss_bytes"] is not None]
        memory_rows[key] = {
            "tool": tool,
            "images": images,
            "trained_on": a.steps * a.batch_size if tool == "compressai" else images,
            "peak_rss_bytes": spread([r["peak_rss_bytes"] for r in chosen]),
            "peak_pss_bytes": spread(pss) if len(pss) == len(chosen) else None,
            "main_max_rss_bytes": spread([r["main_max_rss_bytes"] for r in chosen]),
            "processes": max((r["processes"] for r in chosen), default=0),
            "killed": [r["killed"] for r in killed],
        }

    def ratio_of(top: str, bottom: str, kind: str) -> float | None:
        t, b = memory_rows[top][kind], memory_rows[bottom][kind]
        return t["median"] / b["median"] if t and b and b["median"] else None

    size_ratio = ratio_of("lic-train", "lic-train-small", "peak_rss_bytes")
    killed_big = bool(memory_rows["lic-train"]["killed"])
    memory_summary = {
        "rows": memory_rows,
        "lic_train_large_to_small": {
            "rss": size_ratio, "pss": ratio_of("lic-train", "lic-train-small", "peak_pss_bytes"),
        },
        "lic_train_to_compressai": {
            "rss": ratio_of("lic-train", "compressai", "peak_rss_bytes"),
            "pss": ratio_of("lic-train", "compressai", "peak_pss_bytes"),
        },
        "goal": MEMORY_GOAL,
        "goal_met": False if killed_big else (None if size_ratio is None else size_ratio <= MEMORY_GOAL),
    }  # fmt: skip
    return time_summary, memory_summary


def fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def fmt_spread(s: dict | None, scale: float = 1.0, digits: int = 3) -> tuple[str, str]:
    if s is None:
        return "n/a", ""
    return (
        f"{s['median'] / scale:.{digits}f}",
        f"({s['min'] / scale:.{digits}f}-{s['max'] / scale:.{digits}f})",
    )


def verdict(met: bool | None) -> str:
    return "n/a" if met is None else ("met" if met else "not met")


def tables(t: dict, m: dict, a: argparse.Namespace) -> list[tuple[tuple[str, ...], list]]:
    """(head, rows) of the time table and of the memory table."""
    head = ("tool", "s/step", "(min-max)", "images/s", f"wall s, {a.steps} steps", "startup s")
    rows = []
    for tool, r in t["tools"].items():
        rows.append(
            (tool, *fmt_spread(r["seconds_per_step"], digits=4), fmt(r["images_per_s"], 2),
             fmt_spread(r["wall_s"], digits=1)[0], fmt_spread(r["startup_s"], digits=1)[0])
        )  # fmt: skip
    ratio = t["ratio_lic_train_to_compressai"]
    rows.append(
        ("lic-train / compressai", *fmt_spread(ratio), f"goal <={TIME_GOAL:.1f}x",
         verdict(t["goal_met"]), "")
    )  # fmt: skip
    time_table = (head, rows)

    head = ("run", "train images", "peak RSS MB", "(min-max)", "peak PSS MB", "main max RSS MB",
            "processes")  # fmt: skip
    rows = []
    for key, r in m["rows"].items():
        images = f"{r['images']}" + (f" ({r['trained_on']} linked)" if key == "compressai" else "")
        if r["killed"]:
            images += f"; {len(r['killed'])} killed"
        rows.append(
            (key, images, *fmt_spread(r["peak_rss_bytes"], MB, 0),
             fmt_spread(r["peak_pss_bytes"], MB, 0)[0],
             fmt_spread(r["main_max_rss_bytes"], MB, 0)[0], str(r["processes"]))
        )  # fmt: skip
    big, vs = m["lic_train_large_to_small"], m["lic_train_to_compressai"]
    rows.append(
        (f"lic-train {a.images} / {a.small_images} images", "", fmt(big["rss"]), "",
         fmt(big["pss"]), f"goal <={MEMORY_GOAL:.2f}x", verdict(m["goal_met"]))
    )  # fmt: skip
    rows.append(
        ("lic-train / compressai", "", fmt(vs["rss"]), "", fmt(vs["pss"]), "", "")
    )  # fmt: skip
    return [time_table, (head, rows)]


def markdown(head: tuple[str, ...], rows: list) -> str:
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join([":--"] + ["--:"] * (len(head) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def report(t: dict, m: dict, a: argparse.Namespace, header: str, command: str) -> str:
    time_table, memory_table = tables(t, m, a)
    return "\n".join([
        "# Trainer throughput: lic-train fit against CompressAI's examples/train.py", "",
        header, "", f"Command: `{command}`", "",
        "## Time per step", "",
        "Seconds per step = (wall time of S steps - wall time of 1 step) / (S - 1), per tool and "
        "repeat (process start, data listing, first batch, validation and checkpoints cancel); "
        "median (min-max) over repeats; the ratio is the median of the per-repeat ratios.", "",
        markdown(*time_table), "",
        "## Peak memory", "",
        f"Peaks over the {a.steps}-step runs of the process group (the tool and its DataLoader "
        f"workers): RSS summed over the processes every {a.sample_ms:g} ms, PSS (shared pages "
        f"split) every {PSS_EVERY} samples; main max RSS: the main process alone, from the "
        "kernel. Median (min-max) over repeats. CompressAI's train.py trains one whole epoch, so "
        "its train/ holds links to the images it trains on.", "",
        markdown(*memory_table), "",
    ])  # fmt: skip


# -------------------------------------------------------------------------------------- main


def environment(a: argparse.Namespace) -> dict:
    import compressai
    import torch
    import torchvision

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "compressai": compressai.__version__,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        "device": torch.cuda.get_device_name(0) if a.device == "cuda" else "cpu",
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, help="training images of the large folder (default 2000)")
    p.add_argument("--small-images", type=int,
                   help="training images of the small folder, for the memory ratio (default 20)")  # fmt: skip
    p.add_argument("--steps", type=int, help="steps of the timed runs, >= 2 (default 20)")
    p.add_argument("--batch-size", type=int, help="default 8")
    p.add_argument("--patch-size", type=int, nargs=2, metavar=("H", "W"), help="default 128 128")
    p.add_argument("-n", "--num-workers", type=int, help="DataLoader workers (default 2)")
    p.add_argument("--repeats", type=int, help="interleaved repeats (default 2)")
    p.add_argument("-m", "--model", default="bmshj2018-hyperprior", help="a CompressAI zoo model")
    p.add_argument("-q", "--quality", type=int, default=QUALITY,
                   help="3, the only quality CompressAI's train.py trains")  # fmt: skip
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--seed", type=int, default=0, help="of the images and of both tools")
    p.add_argument("--sample-ms", type=float, default=50.0, help="memory sampling interval")
    p.add_argument("--max-memory-gb", type=float,
                   help="kill a run whose RSS sum passes this (default 75%% of the memory)")  # fmt: skip
    p.add_argument("--work", type=Path,
                   help="folders and runs (default /tmp/lic_throughput, --quick: "
                        "/tmp/lic_throughput-quick)")  # fmt: skip
    p.add_argument("--out", type=Path,
                   help="results.json and report.md (default benchmarks/results/"
                        "trainer_throughput; --quick: WORK/published)")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="smoke test: about a minute")
    a = p.parse_args(argv)
    quick = a.quick
    defaults = {
        "images": (40, 2000), "small_images": (10, 20), "steps": (2, 20), "batch_size": (2, 8),
        "patch_size": ([64, 64], [128, 128]), "num_workers": (2, 2), "repeats": (1, 2),
    }  # fmt: skip
    for name, (fast, full) in defaults.items():
        if getattr(a, name) is None:
            setattr(a, name, fast if quick else full)
    a.work = a.work or Path("/tmp/lic_throughput" + ("-quick" if quick else ""))
    a.out = a.out or (a.work / "published" if quick else ROOT / "benchmarks" / "results" /
                      "trainer_throughput")  # fmt: skip
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    a.max_memory = int(a.max_memory_gb * 2**30) if a.max_memory_gb else int(0.75 * memory)

    if min(a.images, a.small_images, a.batch_size, a.repeats) < 1 or a.num_workers < 0:
        p.error("--images, --small-images, --batch-size, --repeats must be >= 1, "
                "--num-workers >= 0")  # fmt: skip
    if a.steps < 2:
        p.error(f"--steps must be >= 2 (a 1-step run is subtracted), got {a.steps}")
    if a.small_images >= a.images:
        p.error(f"--small-images must be below --images ({a.images}), got {a.small_images}")
    if a.images < a.steps * a.batch_size:
        p.error(f"--images must be >= --steps x --batch-size ({a.steps * a.batch_size}): "
                f"CompressAI's train.py trains on that many distinct images, got {a.images}")  # fmt: skip
    if any(s < 64 or s > MAX_PATCH or s % 64 for s in a.patch_size):
        p.error(f"--patch-size: two multiples of 64 in [64, {MAX_PATCH}], got {a.patch_size}")
    if a.quality != QUALITY:
        p.error(f"--quality must be {QUALITY}: CompressAI's train.py trains quality 3 whatever "
                f"it is told, got {a.quality}")  # fmt: skip
    if a.sample_ms <= 0 or a.max_memory <= 0 or a.seed < 0:
        p.error("--sample-ms and --max-memory-gb must be > 0, --seed >= 0")
    try:
        a.train_py = compressai_train_py()
    except FileNotFoundError as error:
        p.error(str(error))
    with warnings.catch_warnings():  # torch.jit.script is deprecated; compressai uses it on import
        warnings.simplefilter("ignore", FutureWarning)
        from compressai.zoo import image_models

    if a.model not in image_models:
        p.error(f"--model must be one of {', '.join(image_models)}, got {a.model!r}")
    if a.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            p.error("--device cuda: CUDA is not available")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    command = "python benchmarks/trainer_throughput.py " + " ".join(sys.argv[1:])
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if a.device == "cuda":  # CompressAI's train.py wraps the model in DataParallel on >1 GPU
        env.setdefault("CUDA_VISIBLE_DEVICES", "0")
    missing = missing_lic_train_flags(env)
    if missing:
        print(f"trainer_throughput: lic-train fit has no {', '.join(missing)}; this benchmark "
              "needs them", file=sys.stderr)  # fmt: skip
        return 2

    data = a.work / "data"
    big = image_folder(data, a.images, a.seed)
    small = image_folder(data, a.small_images, a.seed)
    linked = {k: linked_folder(data, big, k * a.batch_size) for k in (a.steps, 1)}
    warm = [sys.executable, "-c", "import compressai.zoo, torchvision, lic_train.cli"]
    subprocess.run(warm, env=env, capture_output=True, check=False)  # warms the file cache

    def job(tool: str, folder: Path, images: int, steps: int) -> dict:
        return {"tool": tool, "folder": folder, "images": images, "steps": steps}

    pairs = [
        (job("compressai", linked[a.steps], a.images, a.steps),
         job("lic-train", big, a.images, a.steps)),
        (job("lic-train", small, a.small_images, a.steps),),
        (job("compressai", linked[1], a.images, 1), job("lic-train", big, a.images, 1)),
    ]  # fmt: skip
    runs_dir = a.work / "runs"
    runs: list[dict] = []
    total, index = a.repeats * 5, 0
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    load_before = os.getloadavg()
    for repeat in range(a.repeats):
        order = [j for pair in pairs for j in (pair[::-1] if repeat % 2 else pair)]
        for j in order:
            index += 1
            name = f"{j['tool']}-{j['images']}images-{j['steps']}steps"
            run_dir = runs_dir / name
            shutil.rmtree(run_dir, ignore_errors=True)
            run_dir.mkdir(parents=True)
            if j["tool"] == "compressai":
                cmd = compressai_command(a.train_py, j["folder"], a)
            else:
                cmd = lic_train_command(j["folder"], j["steps"], run_dir / "out", a)
            log = run_dir / "log.txt"
            result = measure(cmd, run_dir, env, log, a.sample_ms / 1e3, a.max_memory)
            reported = None
            if j["tool"] == "lic-train" and (run_dir / "out" / "summary.json").exists():
                summary = json.loads((run_dir / "out" / "summary.json").read_text())
                reported = summary.get("seconds_per_step")
            for checkpoint in run_dir.rglob("*.pth.tar"):  # tens of MB each; not needed
                checkpoint.unlink()
            runs.append({
                "tool": j["tool"], "images": j["images"], "steps": j["steps"], "repeat": repeat,
                "folder": str(j["folder"]), "command": cmd, "log": str(log), **result,
                "lic_train_reported_seconds_per_step": reported,
            })  # fmt: skip
            state = result["killed"] or f"rc {result['returncode']}"
            print(
                f"[{index}/{total}] {name}: {result['wall_s']:.1f} s, peak RSS sum "
                f"{result['peak_rss_bytes'] / MB:.0f} MB, {result['processes']} processes, {state}",
                file=sys.stderr, flush=True,
            )  # fmt: skip
            if result["returncode"] != 0 and result["killed"] is None:
                print(f"trainer_throughput: {j['tool']} failed (exit {result['returncode']}); "
                      f"{log} ends:\n{tail(log)}", file=sys.stderr)  # fmt: skip
                return 1

    t, m = summarise(runs, a)
    env_info = environment(a)
    header = (
        f"{a.model} quality {a.quality}, batch {a.batch_size} of {a.patch_size[0]}x"
        f"{a.patch_size[1]}, {a.num_workers} DataLoader workers, {a.steps} steps, {a.repeats} "
        f"repeats; {a.images} training images (small folder {a.small_images}), {TEST_IMAGES} "
        f"test; {env_info['device']}, {env_info['cpus_usable']} CPUs, torch "
        f"{env_info['torch']}, CompressAI {env_info['compressai']}; load average "
        f"{load_before[0]:.2f} at the start"
    )
    print(header)
    for head, rows in tables(t, m, a):
        print()
        print(render(head, rows))
    results = {
        "benchmark": "trainer_throughput",
        "command": command,
        "started": started,
        "settings": {
            "images": a.images, "small_images": a.small_images, "test_images": TEST_IMAGES,
            "steps": a.steps, "batch_size": a.batch_size, "patch_size": list(a.patch_size),
            "num_workers": a.num_workers, "repeats": a.repeats, "model": a.model,
            "quality": a.quality, "device": a.device, "seed": a.seed, "sample_ms": a.sample_ms,
            "pss_every_samples": PSS_EVERY, "max_memory_bytes": a.max_memory,
            "compressai_train_py": str(a.train_py), "data_version": DATA_VERSION,
        },
        "environment": {**env_info, "load_average_before": load_before,
                        "load_average_after": os.getloadavg()},
        "time": t,
        "memory": m,
        "runs": runs,
    }  # fmt: skip
    files.write_json(results, a.out / "results.json")
    files.write_text(report(t, m, a, header, command), a.out / "report.md")
    print(f"\nfiles in {a.out}; runs and logs in {runs_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
