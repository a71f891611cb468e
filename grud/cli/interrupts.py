"""Ctrl-C during training: never lost.

Python turns SIGINT into a ``KeyboardInterrupt`` at the next bytecode the main thread runs. When
that bytecode is inside a finaliser (a ``__del__``, a weakref callback, a generator being
closed), Python prints "Exception ignored in ..." and swallows it, and the run trains on to its
last epoch and exits 0, as if it had finished. :class:`InterruptOnSignal` also records the signal
and raises ``KeyboardInterrupt`` again after the next training or validation batch, where
Lightning's handling (and grud-train's exit 130, no record) takes over.
"""
from __future__ import annotations

import signal
import threading

from pytorch_lightning.callbacks import Callback


class InterruptOnSignal(Callback):
    """Records SIGINT during fit and raises ``KeyboardInterrupt`` after the next batch if the
    first one was swallowed. The previous handler is restored when fit ends."""

    def __init__(self) -> None:
        self.interrupted = False
        self._previous = None
        self._installed = self._handler  # one bound method, compared by identity below

    def _handler(self, signum, frame) -> None:
        self.interrupted = True
        raise KeyboardInterrupt

    def on_fit_start(self, trainer, pl_module) -> None:
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) \
                is signal.default_int_handler:  # only Python's own Ctrl-C handling is replaced
            self._previous = signal.signal(signal.SIGINT, self._installed)

    def _check(self) -> None:
        if self.interrupted:
            raise KeyboardInterrupt  # the first one was swallowed (see the module docstring)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._check()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._check()

    def on_fit_end(self, trainer, pl_module) -> None:
        self._restore()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._restore()

    def _restore(self) -> None:
        if self._previous is not None and threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGINT) is self._installed:
                signal.signal(signal.SIGINT, self._previous)
            self._previous = None
