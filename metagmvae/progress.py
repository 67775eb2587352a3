"""tqdm progress bars that stay quiet in logs: frequent redraws on a terminal, rare ones in a file."""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress(iterable=None, **kwargs) -> tqdm:
    """``tqdm`` with a redraw interval of 0.5 s on a terminal and 30 s otherwise (DVC, CI logs).

    Set postfixes with ``bar.set_postfix(..., refresh=False)``: they then show at the next
    redraw instead of forcing one (by default every call redraws, a log line each in a file).
    """
    kwargs.setdefault("mininterval", 0.5 if sys.stderr.isatty() else 30.0)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
