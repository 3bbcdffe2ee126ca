"""The ``aecompress`` command: parse, call the library, report — no codec logic here.

``app`` holds the group and its error handling, ``io``, ``report`` and ``options``
what the commands share, and each command has a module of its own.  Importing this
package registers them all; none imports torch before it runs.
"""

from __future__ import annotations

import os

# The integer networks run their bands on a thread per core (``integer.run_bands``); OpenBLAS's
# own threads, under them, made them slower (24 MP hyper-synthesis 2.6 s, against 1.8 s with
# one), and kept spinning after each product on the cores ONNX Runtime needed next.  Only
# takes effect before numpy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from . import decode, demo, encode, eval, info, models, score, train  # noqa: F401  (each registers its command)
from .app import CliError, main

__all__ = ["CliError", "main"]
