"""Convergence of Adam, Adam + SMA, Adam + STDET and Adam + STDET + SMA on a small model (0.1's
1000-step runs, docs/results/earlier-runs.md).

What: ``lic_train.experiments.compare`` with its ``convergence`` preset: a hyperprior (N=32,
M=48) trained from the same seeds (0, 1, 2) and data order by each method, 1000 steps of batch 8 of
128x128 crops of the built-in photographs, Adam lr 1e-3, at CompressAI's lambdas of qualities 2-5
(0.0035, 0.0067, 0.013, 0.025); SMA k=5, beta=0.9; STDET s=5, T=10, L=20, M=10, P=0.1, cap 0.6.
Measured per run: validation RD loss of the evaluated weights every 50 steps, the trainable share
over time, time per training step and peak memory (RSS above the start on the CPU), then real bit
streams of the final weights on the two test photographs. Reported: ratios to Adam with the same
seed and lambda (final loss at equal steps, steps to reach Adam's final loss), BD-rate against Adam
(``bjontegaard``, Akima) per seed, mean ± standard deviation over seeds.

Run:  python benchmarks/convergence.py              # about 35 minutes on 2 CPU cores (--jobs 2)
      python benchmarks/convergence.py --quick      # smoke test
Files: benchmarks/results/convergence/ (report.md, results.json, three PNGs).
"""

from __future__ import annotations

import sys

from _training import main

if __name__ == "__main__":
    sys.exit(main("convergence", __doc__))
