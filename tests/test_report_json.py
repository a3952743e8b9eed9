"""Reports, manifests and --json documents are strict JSON: a collapsed tensor's metric (SQNR inf, cosine NaN) or a
vendor tool's printed "inf" is written as null, never as Python's NaN/Infinity, which other JSON readers refuse."""

from __future__ import annotations

import json
import math

import numpy as np

from edgeconv.report import dumps, finite


def strict_loads(text: str):
    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_floats_become_null_at_any_depth():
    doc = {"sqnr_db": math.inf, "rows": [{"cosine": math.nan}, (1.5, -math.inf)], "n": np.float64("inf"),
           "ok": 0.5, "name": "x"}
    back = strict_loads(dumps(doc, indent=2))
    assert back == {"sqnr_db": None, "rows": [{"cosine": None}, [1.5, None]], "n": None, "ok": 0.5, "name": "x"}
    assert finite({"a": [1, 2.0]}) == {"a": [1, 2.0]}


def test_the_debug_layers_document_of_a_collapsed_layer_is_strict_json(capsys):
    from edgeconv.cli.common import emit_json

    emit_json({"layers": [{"name": "sq", "sqnr_db": -math.inf, "cosine": math.nan}]})
    assert strict_loads(capsys.readouterr().out) == {"layers": [{"name": "sq", "sqnr_db": None, "cosine": None}]}
