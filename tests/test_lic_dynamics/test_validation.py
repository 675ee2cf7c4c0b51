"""lic_dynamics.validation: every check raises an InvalidValue that names its parameter."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lic_dynamics import validation
from lic_dynamics.validation import InvalidValue


@pytest.mark.parametrize(
    ("call", "parameter", "message"),
    [
        (lambda: validation.real("lr", -1.0, "(0, inf)", low=0, high=math.inf), "lr",
         "lr must be in (0, inf), got -1.0"),
        (lambda: validation.real("lr", "0.1", "(0, inf)", low=0, high=math.inf), "lr",
         "lr must be a real number in (0, inf), got '0.1'"),
        (lambda: validation.integer("k", 2.5, minimum=1), "k",
         "k must be an integer in [1, 2**53], got 2.5"),
        (lambda: validation.integer("modes", 300, minimum=1, maximum=256), "modes",
         "modes must be an integer in [1, 256], got 300"),
        (lambda: validation.flag("feedback", 1), "feedback", "feedback must be True or False, got 1"),
        (lambda: validation.choice("variant", "both", ("true", "dummy")), "variant",
         "variant must be one of true, dummy, got 'both'"),
        (lambda: validation.array("h", [1.0, 0.0, 2.0], positive=True), "h",
         "h[1] must be finite and > 0, got 0.0"),
        (lambda: validation.interval_array("rho", [0.5, 2.0], "(0, 2)", low=0, high=2), "rho",
         "rho[1] must be in (0, 2), got 2.0"),
        (lambda: validation.integer_array("member", [1, -1], minimum=0), "member",
         "member[1] must be an integer in [0, 2**53], got -1"),
    ],
)  # fmt: skip
def test_a_bad_value_names_its_parameter(call, parameter, message):
    with pytest.raises(InvalidValue) as caught:
        call()
    assert caught.value.parameter == parameter
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)  # callers that catch ValueError still do


def test_named_and_renamed_keep_the_detail_and_the_index():
    error = InvalidValue("h", "must be > 0, got 0.0", index=3)
    assert error.named("--h") == "--h[3] must be > 0, got 0.0"
    renamed = error.renamed("stdet_h")
    assert (renamed.parameter, str(renamed)) == ("stdet_h", "stdet_h[3] must be > 0, got 0.0")


def test_good_values_come_back_converted():
    assert validation.integer("k", 5.0, minimum=1) == 5
    assert isinstance(validation.integer("k", 5.0, minimum=1), int)
    values = [1.0, 2.0]
    copy = validation.array("h", values, positive=True)
    assert copy.dtype == np.float64 and copy.tolist() == values
