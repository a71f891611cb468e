"""A Ctrl-C that Python swallows inside a finaliser still stops training."""
from __future__ import annotations

import gc
import os
import signal

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from grud.cli.interrupts import InterruptOnSignal


class _SwallowsOneInterrupt(pl.LightningModule):
    """Sends itself SIGINT from inside a __del__ at step 2, where Python swallows the KeyboardInterrupt."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.steps = 0

    def training_step(self, batch, batch_idx):
        self.steps += 1
        if self.steps == 2:
            class Finaliser:
                def __del__(self):
                    os.kill(os.getpid(), signal.SIGINT)  # the handler runs here, inside __del__

            Finaliser()  # collected at once: "Exception ignored in ... KeyboardInterrupt"
            gc.collect()
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the swallowed one, on purpose
def test_a_swallowed_ctrl_c_ends_fit_after_the_next_batch_and_the_handler_is_restored():
    data = DataLoader(TensorDataset(torch.randn(40, 2)), batch_size=4)
    module, callback = _SwallowsOneInterrupt(), InterruptOnSignal()
    trainer = pl.Trainer(max_epochs=50, callbacks=[callback], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (a background job ignores it)
    try:
        with pytest.raises(SystemExit) as exited:  # Lightning's KeyboardInterrupt handling: exit(1)
            trainer.fit(module, data)
        assert isinstance(exited.value.__context__, KeyboardInterrupt)  # what grud-train turns into 130
        assert callback.interrupted and module.steps == 2  # stopped after the batch that swallowed it
    finally:
        signal.signal(signal.SIGINT, before)
    # without the callback the same run trains to its end
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        plain = _SwallowsOneInterrupt()
        pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False).fit(plain, data)
        assert plain.steps == 20
    finally:
        signal.signal(signal.SIGINT, before)


def test_the_previous_handler_comes_back_when_fit_ends():
    callback = InterruptOnSignal()
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        callback.on_fit_start(None, None)
        assert signal.getsignal(signal.SIGINT) is callback._installed
        callback.on_fit_end(None, None)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

        def custom(signum, frame):  # someone else's handler is left alone
            pass

        signal.signal(signal.SIGINT, custom)
        callback.on_fit_start(None, None)
        assert signal.getsignal(signal.SIGINT) is custom
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # an ignored SIGINT (nohup, a background job) stays ignored
        callback.on_fit_start(None, None)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)
