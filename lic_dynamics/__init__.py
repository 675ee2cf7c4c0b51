"""What ``nqm`` and ``lic_train`` share: nothing about models or training, only the contracts both
packages keep with their users.

* :mod:`lic_dynamics.validation`: one clear :class:`~lic_dynamics.validation.InvalidValue` naming the
  parameter, the value and what is allowed;
* :mod:`lic_dynamics.cli`: the one-line command-line error contract (one line on stderr naming the
  flag, exit status 2, never a traceback);
* :mod:`lic_dynamics.files`: files that a crash cannot leave half-written.

It imports the standard library and numpy only, so ``nqm`` stays installable without torch.
"""
