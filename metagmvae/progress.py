"""tqdm progress bars that stay quiet in logs: frequent redraws on a terminal, rare ones in a file."""

from __future__ import annotations

import sys

from tqdm import tqdm

LOG_LINES = 20
"""Redraws of a bar of known length outside a terminal (DVC, CI logs)."""


def progress(iterable=None, **kwargs) -> tqdm:
    """``tqdm`` with a redraw interval of 0.5 s on a terminal; otherwise (DVC, CI logs) a redraw
    every 1/``LOG_LINES`` of a bar of known length, so a log never shows ``0/1200`` while the
    loop is at step 800, and every 30 s for a bar of unknown length.

    Set postfixes with ``bar.set_postfix(..., refresh=False)``: they then show at the next
    redraw instead of forcing one (by default every call redraws, a log line each in a file).
    """
    kwargs.setdefault("dynamic_ncols", True)
    if sys.stderr.isatty():
        kwargs.setdefault("mininterval", 0.5)
        return tqdm(iterable, **kwargs)
    total = kwargs.get("total", len(iterable) if hasattr(iterable, "__len__") else None)
    if total:  # a log line every twentieth of the way, however fast or slow the steps are
        kwargs.setdefault("miniters", max(1, total // LOG_LINES))
        kwargs.setdefault("mininterval", 0.0)
    else:
        kwargs.setdefault("mininterval", 30.0)
    return tqdm(iterable, **kwargs)
