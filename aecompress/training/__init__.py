"""Training, in parts: what a run is asked to do (``config``), the machine it runs on
(``hardware``), its processes under torchrun (``distributed``), the loop itself (``loop``),
what it shows while it runs (``progress``), how it stops (``stop``) and what it measures at
the end (``heldout``).

``config`` imports no torch: the command line reads recipes and checks options before
torch loads.  ``aecompress.train`` re-exports the public names.
"""
