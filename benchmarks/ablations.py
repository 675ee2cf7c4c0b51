"""Ablations of STDET and SMA that decided ``lic-train``'s defaults in 0.1
(docs/results/earlier-runs.md).

What: ``lic_train.experiments.compare`` with its ``ablation`` preset: the convergence benchmark's
model and schedule (1000 steps, seeds 0, 1, 2) at one lambda (0.0067, CompressAI's quality 3), for

  stdet with true-only, dummy-only and sensitivity-aware embedding (the last is the default);
  stdet with whole tensors (granularity=tensor) instead of scalars;
  stdet with (M, P) moved one at a time: modes 3 and 30, fraction 0.3;
  sma with and without feedback (Lookahead), and (k, beta) = (5, 0.9), (1, 0.98), (20, 0.5);
  stdet+sma with CMD observing the SMA average (default) or the raw weights;

each against Adam with the same seed. The report has the same columns as the convergence benchmark.

Run:  python benchmarks/ablations.py                # about 35 minutes on 2 CPU cores (--jobs 2)
      python benchmarks/ablations.py --quick        # smoke test
Files: benchmarks/results/ablation/ (report.md, results.json, PNGs).
"""

from __future__ import annotations

import sys

from _training import main

if __name__ == "__main__":
    sys.exit(main("ablation", __doc__))
