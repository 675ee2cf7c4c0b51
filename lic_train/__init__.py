"""lic_train: SMA, modes (CMD) and STDET for CompressAI models, and the trainer built on them.

Install with the ``train`` extra (``pip install -e ".[train]"``). The update rules and the trainer
land with their own issues; this package is the place they go, next to :mod:`nqm`, whose theory they
are checked against.
"""
