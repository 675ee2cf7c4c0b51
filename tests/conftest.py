"""Hypothesis profiles for the nqm suite.

``ci``: 25 derandomized examples per property (the whole suite in well under a minute).
``thorough``: 400 random examples per property (a few minutes); the default on a workstation.

The profile is ``$HYPOTHESIS_PROFILE`` when set, else ``ci`` when ``$CI`` is "true" or "1"
(case-insensitive), else ``thorough``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=25,
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("thorough", max_examples=400, deadline=None)


def _profile() -> str:
    if os.environ.get("HYPOTHESIS_PROFILE"):
        return os.environ["HYPOTHESIS_PROFILE"]
    if os.environ.get("CI", "").strip().lower() in ("true", "1"):
        return "ci"
    return "thorough"


settings.load_profile(_profile())
