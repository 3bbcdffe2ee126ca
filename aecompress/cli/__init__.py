"""The ``aecompress`` command: parse, call the library, report — no codec logic here.

``app`` holds the group and its error handling, ``io``, ``report`` and ``options``
what the commands share, and each command has a module of its own.  Importing this
package registers them all; none imports torch before it runs.
"""

from __future__ import annotations

import os

# OpenBLAS (numpy's matrix products: the integer networks) keeps its threads spinning for
# about 0.1 s after each product, on the cores ONNX Runtime needs next; a short spin made
# a 12-image encode and decode 10% faster.  Only takes effect before numpy is imported.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from . import decode, demo, encode, eval, info, models, score, train  # noqa: F401  (each registers its command)
from .app import CliError, main

__all__ = ["CliError", "main"]
