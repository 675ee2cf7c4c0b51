"""Single bit flips in a real checkpoint: how many does ``checkpoint.load`` refuse, how many load
the very content that was written (a flip in bytes torch never reads), and how many load other
content (the failure the checksum exists to prevent; must be 0).

    python benchmarks/checkpoint_bitflips.py [--flips 1000] [--seed 0] [--out DIR] [--quick]

The checkpoint is that of a 2-step run of a small hyperprior with SMA (N = M = 8, the built-in
photographs); each flip is at a uniform byte and bit. Writes ``DIR/results.json`` (default
``benchmarks/results/checkpoint_bitflips``) and prints the counts.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lic_dynamics import files
from lic_train.rules import SMAConfig
from lic_train.trainer import checkpoint
from lic_train.trainer.config import FitConfig
from lic_train.trainer.loop import fit

RESULTS = Path(__file__).resolve().parent / "results" / "checkpoint_bitflips"


def flips(path: Path, count: int, seed: int, scratch: Path) -> dict[str, int]:
    """``count`` single-bit flips of ``path``: refused, same content, other content."""
    data = path.read_bytes()
    written = checkpoint.digest(checkpoint.load(path))
    rng = np.random.default_rng(seed)
    counts = {"refused": 0, "same": 0, "different": 0}
    damaged = scratch / "damaged.pth.tar"
    for _ in range(count):
        flipped = bytearray(data)
        flipped[int(rng.integers(len(flipped)))] ^= 1 << int(rng.integers(8))
        damaged.write_bytes(bytes(flipped))
        try:
            loaded = checkpoint.load(damaged)
        except ValueError:
            counts["refused"] += 1
            continue
        counts["same" if checkpoint.digest(loaded) == written else "different"] += 1
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flips", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="50 flips, nothing written")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        run = Path(scratch) / "run"
        config = FitConfig(
            N=8, M=8, patch_size=(64, 64), batch_size=2, test_batch_size=2, steps=2,
            validate_every=2, device="cpu", sma=SMAConfig(k=1, beta=0.5), num_workers=0,
        )  # fmt: skip
        fit(config, run)
        path = run / checkpoint.LATEST
        start = time.perf_counter()
        counts = flips(path, 50 if args.quick else args.flips, args.seed, Path(scratch))
        result = {
            "benchmark": "checkpoint_bitflips",
            "checkpoint_bytes": path.stat().st_size,
            "flips": sum(counts.values()),
            "seed": args.seed,
            **counts,
            "seconds": time.perf_counter() - start,
        }
    print(json.dumps(result, indent=2))
    if not args.quick:
        files.write_json(result, args.out / "results.json")
    return 0 if counts["different"] == 0 else 1


def table(result: dict) -> list[str]:
    """The table of a ``results.json`` on docs/reliability.md."""
    return [
        "| checkpoint | single-bit flips | refused | loaded the content written | loaded other content |",
        "|---|---|---|---|---|",
        f"| {result['checkpoint_bytes'] / 1000:.0f} kB | {result['flips']} | {result['refused']} "
        f"| {result['same']} | {result['different']} |",
    ]


if __name__ == "__main__":
    sys.exit(main())
