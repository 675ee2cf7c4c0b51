"""Candidates for a stable STDET (0.2's defaults were chosen from them), on the time-to-quality
benchmark's configuration (docs/results/stdet-stability.md).

What: ``lic_train.experiments.compare`` with its ``stability`` preset: hyperprior N=32/M=48,
128x128 crops, batch 8, Adam lr 1e-3 with the step decay (x0.1 at 90%), T = 1200 steps, lambda
0.0018, seeds 0, 1, 2; full-length runs only (no budget sweep). Against Adam with the same seed:

  stdet                  0.1's STDET, as the time-to-quality benchmark first measured it (10 modes);
  + live_references      the clustering sees only scalars that moved during the warm-up;
  + modes=256, max_amplification=30
                         more modes and ||a||_2 <= 30 behind one reference;
  + release_beyond=1.0   embedded scalars whose reference left its fitted range by more than
                         one width are released, with a typical Adam state;
  + route_gradients      each reference gets its mode's gradient, least-squares scaled;
  max_amplification=10   a tighter bound.

The second round (``--preset stability-2``) starts from the first round's best (live references,
256 modes, ||a||_2 <= 30, routed gradients) and tries release at one width, a looser bound (50)
that embeds about half the model, with release, with dummy embedding only, and with a later start
(snapshot_every=20: first event at step 250).

Each run logs STDET's health (members per reference, leverage, extrapolation, drift) in its
metrics.jsonl; the report adds each method's largest validation excursion after the first event.

Run:  python benchmarks/stdet_stability.py                        # about 30 minutes, 2 CPU cores
      python benchmarks/stdet_stability.py --preset stability-2   # about 25 minutes
      python benchmarks/stdet_stability.py --quick                # smoke test
Files: benchmarks/results/stability/ and stability-2/ (report.md, results.json, PNGs).
"""

from __future__ import annotations

import sys

from _training import main

if __name__ == "__main__":
    sys.exit(main("stability", __doc__))
