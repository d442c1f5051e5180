"""Reading an app's parameters from its code: ``from silverlining.params import get_param``.

The same call works wherever the app runs: on a node (values from ``silver
update --param`` / ``silver params --set``), under ``silver serve`` and the
app's ``bin/python`` (``param.NAME`` in ``[devel]`` of the user config), and
in ``silver run`` (``--param`` overrides). Stdlib only.
"""

from __future__ import annotations

import os

_MISSING = object()


def get_param(name: str, default: object = _MISSING) -> str:
    """The value of app.ini's ``[parameter:NAME]`` (the environment variable ``NAME``
    in upper case)."""
    value = os.environ.get(name.upper())
    if value is not None:
        return value
    if default is not _MISSING:
        return default  # type: ignore[return-value]
    raise LookupError(f"parameter {name} has no value here: on a node give it with "
                      f"silver update --param {name}=VALUE; in development set "
                      f"param.{name} in [devel] of the user config")
