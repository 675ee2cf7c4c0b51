"""nqm: the noisy quadratic model, for checking what averaging (SMA, EMA, Lookahead, Polyak) and
momentum do to the variance and loss of SGD.

Three engines that must agree: :mod:`nqm.closed_form` (steady states), :mod:`nqm.moments` (exact
moments at every step; Lyapunov steady states) and :mod:`nqm.montecarlo` (sampled chains with
standard errors). :mod:`nqm.verify` checks the claims; ``nqm`` on the command line runs them.
"""

from nqm.problem import Problem, standard
from nqm.rules import EMA, SGD, SMA, Lookahead, Momentum, Polyak, Rule, State

__all__ = [
    "EMA",
    "SGD",
    "SMA",
    "Lookahead",
    "Momentum",
    "Polyak",
    "Problem",
    "Rule",
    "State",
    "standard",
]
