"""How a run stops early: Ctrl-C and SIGTERM set a flag that the loop reads between steps."""

from __future__ import annotations

import signal
import threading


class StopRequest:
    """Ctrl-C and SIGTERM while training: set a flag that the loop reads between steps.

    Python's default (raise KeyboardInterrupt wherever the main thread happens to be) can
    lose the signal: a handler that runs inside a finalizer or a library's callback has its
    exception swallowed ("Exception ignored in ..."), and training went on (seen in CI). A
    flag cannot be lost, and the run stops at a step boundary, with consistent weights. A
    second signal raises KeyboardInterrupt, for a step that does not end.
    """

    def __init__(self) -> None:
        self.requested = False
        self._shielded = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        if _main_thread():  # signal handlers can only be set from the main thread
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def shield(self) -> None:
        """Ignore further signals (while the model is being saved: it takes about a second)."""
        self._shielded = True

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested and not self._shielded:
            raise KeyboardInterrupt
        self.requested = True


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
