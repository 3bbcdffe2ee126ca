"""The ``aecompress`` command: parse, call the library, report — no codec logic here.

``app`` holds the group and its error handling, ``io``, ``report`` and ``options``
what the commands share, and each command has a module of its own.  Importing this
package registers them all; none imports torch before it runs.
"""

from __future__ import annotations

from . import decode, demo, encode, eval, info, models, score, train  # noqa: F401  (each registers its command)
from .app import CliError, main

__all__ = ["CliError", "main"]
