"""STDET, in pieces: :mod:`.config` (the knobs), :mod:`.selection` (pure selection rules),
:mod:`.sensitivity` (``|theta * g|`` sums), :mod:`.lines` (which scalars are embedded, on which
frozen line; with :mod:`.records`, where each line was fitted), :mod:`.embedding` (the table that
ties embedded scalars to their references), :mod:`.optimizer` (the optimizer's packed state),
:mod:`.health` (the numbers that show an embedding going bad) and :mod:`.rule` (the schedule of
observations and events: :class:`STDET`)."""

from lic_train.rules.stdet.config import (
    DUMMY,
    GRANULARITIES,
    TRAINABLE,
    TRAJECTORIES,
    TRUE,
    VARIANTS,
    STDETConfig,
)
from lic_train.rules.stdet.embedding import EmbeddingTable
from lic_train.rules.stdet.rule import STDET, Trajectory

__all__ = [
    "DUMMY",
    "GRANULARITIES",
    "STDET",
    "TRAINABLE",
    "TRAJECTORIES",
    "TRUE",
    "VARIANTS",
    "EmbeddingTable",
    "STDETConfig",
    "Trajectory",
]
