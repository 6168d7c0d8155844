"""Silence third-party chatter (transformers progress bars, torch.onnx registration notices) during export steps;
unspoken shows its own progress."""

from __future__ import annotations

import contextlib
import logging
import warnings


@contextlib.contextmanager
def quiet_libraries():
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnxscript", "transformers")]
    levels = [lg.level for lg in loggers]
    try:
        from transformers.utils import logging as hf_logging

        hf_was = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        hf_verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
    except ImportError:
        hf_logging = None
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        if hf_logging is not None:
            hf_logging.set_verbosity(hf_verbosity)
            if hf_was:
                hf_logging.enable_progress_bar()
