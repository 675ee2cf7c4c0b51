"""The experiments: ``lic-train compare``, Adam against EMA, SMA, STDET and STDET + SMA on the same
data and seeds, the training benchmarks built on it (``benchmarks/ablations.py``,
``benchmarks/convergence.py``), and the time-to-quality benchmark (``benchmarks/time_to_quality.py``;
docs/results/time-to-quality.md).

Imports the rules and the trainer, never the command line. Modules:

* :mod:`.compare`: :func:`compare`, the orchestration of a comparison;
* :mod:`.presets`: :class:`Preset` and :data:`PRESETS`;
* :mod:`.methods`: method specs (``"stdet+sma:trajectory=raw"``), :func:`parse_method`, and the
  configuration of a method's run;
* :mod:`.pool`: the runs, each trained and coded in a fresh process;
* :mod:`.stats`: smoothed curves, ratios to Adam, mean and spread, BD-rates, the summary;
* :mod:`.report`: ``results.json``, ``report.md`` and the plots; :func:`rewrite_report`;
* :mod:`.time_to_quality`: the time-to-quality protocol (budget sweep with finished models,
  branched off one run per method and seed; the seed paper's claim), its plan and its runs;
* :mod:`.acceleration`: its statistics (quality of real bit streams, acceleration factors with
  bootstrap intervals, the claim's BD-rates);
* :mod:`.ttq_report`: its report, plots and the tables of docs/results/time-to-quality.md.
"""

from lic_train.lazy import exports

__all__ = ["PRESETS", "Preset", "format_stat", "parse_method", "rewrite_report"]
# Imported on first use (lic_train.lazy): the method specs load without torch. (The function
# compare is imported from its module, lic_train.experiments.compare, whose name it shares.)
__getattr__, __dir__ = exports(
    __name__,
    {
        "PRESETS": "lic_train.experiments.presets",
        "Preset": "lic_train.experiments.presets",
        "format_stat": "lic_train.experiments.report",
        "parse_method": "lic_train.experiments.methods",
        "rewrite_report": "lic_train.experiments.report",
    },
)
