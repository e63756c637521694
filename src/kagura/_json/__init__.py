"""JSON for model output: an incremental parser for partial documents (private).

:mod:`kagura._json.incremental` reads a JSON document as it streams in, linear in the
bytes received; :func:`first_json_value` finds the one JSON value in an answer.
"""

from kagura._json.first_value import first_json_value

__all__ = ["first_json_value"]
