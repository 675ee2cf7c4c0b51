"""The trainer: CompressAI models trained with the update rules, on the CPU or GPUs.

Imports the rules (:mod:`lic_train.rules`), never the experiments. Modules, in the order a run
meets them:

* :mod:`.config`: :class:`FitConfig`, everything a run depends on;
* :mod:`.models`: CompressAI image models by name; :mod:`.data`: images and patches;
* :mod:`.step`: :func:`train_step` (the one training step) and :func:`validate`;
* :mod:`.state`: :class:`TrainingState`, what a checkpoint holds; :mod:`.checkpoint`: reading and
  writing checkpoints, CompressAI's format plus ours;
* :mod:`.loop`: :func:`fit`; :mod:`.memory`: peak memory;
* :mod:`.evaluate`: real bit streams, as ``compressai.utils.eval_model`` codes them.
"""
