"""STDET, in pieces: :mod:`.config` (the knobs), :mod:`.selection` (pure selection rules),
:mod:`.sensitivity` (``|theta * g|`` sums), :mod:`.lines` (which scalars are embedded, on which
frozen line; with :mod:`.records`, where each line was fitted), :mod:`.embedding` (the table that
ties embedded scalars to their references), :mod:`.optimizer` (the optimizer's packed state),
:mod:`.health` (the numbers that show an embedding going bad) and :mod:`.rule` (the schedule of
observations and events: :class:`STDET`)."""

from lic_train.lazy import exports

_CONFIG = ("DUMMY", "GRANULARITIES", "TRAINABLE", "TRAJECTORIES", "TRUE", "VARIANTS", "STDETConfig")
__all__ = [*_CONFIG, "STDET", "EmbeddingTable", "Trajectory"]
# Imported on first use (lic_train.lazy): the configuration loads without torch.
__getattr__, __dir__ = exports(
    __name__,
    {
        **dict.fromkeys(_CONFIG, "lic_train.rules.stdet.config"),
        "EmbeddingTable": "lic_train.rules.stdet.embedding",
        "STDET": "lic_train.rules.stdet.rule",
        "Trajectory": "lic_train.rules.stdet.rule",
    },
)
