"""tqdm progress bars that stay quiet in logs: frequent redraws on a terminal, rare ones in a file."""

from __future__ import annotations

import sys

from tqdm import tqdm


class Progress(tqdm):
    """``tqdm`` whose position is current while it is iterated: tqdm's own iterator counts in a
    local variable and writes it back only when it redraws, so a line written with ``bar.write``
    mid-loop (a validation line in a log) redrew the bar at a stale step (``0/1200`` at step 800).
    The count includes the step being run."""

    def __iter__(self):
        if self.disable:
            yield from self.iterable
            return
        for item in self.iterable:
            self.update(1)
            yield item


def progress(iterable=None, **kwargs) -> tqdm:
    """``tqdm`` with a redraw interval of 0.5 s on a terminal and 30 s otherwise (DVC, CI logs).

    Set postfixes with ``bar.set_postfix(..., refresh=False)``: they then show at the next
    redraw instead of forcing one (by default every call redraws, a log line each in a file).
    """
    kwargs.setdefault("mininterval", 0.5 if sys.stderr.isatty() else 30.0)
    kwargs.setdefault("dynamic_ncols", True)
    return Progress(iterable, **kwargs)
