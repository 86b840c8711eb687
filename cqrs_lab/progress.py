"""Progress bars for long operations: shown to a person waiting, silent everywhere else.

A bar appears when someone is watching (a Jupyter kernel, or a terminal on stderr) and the job is
big enough to be worth one (`BIG` events or more, or when asked with `show=True`). Tests, CI logs,
pipes and the notebooks' small labs stay silent, so stored notebook outputs never hold a bar.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm

BIG = 500_000  # events; below this every operation here takes a second or two


def bar(total: int, *, desc: str, unit: str = "event", show: bool | None = None) -> tqdm[Any]:
    """A tqdm.auto bar over `total` units; `show=None` decides as the module docstring says."""
    if show is None:
        show = total >= BIG and watched()
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, disable=not show)


def watched() -> bool:
    """True in a Jupyter kernel or when stderr is a terminal."""
    shell = sys.modules.get("IPython")
    if shell is not None:
        ipython = shell.get_ipython()
        if ipython is not None and type(ipython).__name__ == "ZMQInteractiveShell":
            return True
    return sys.stderr.isatty()
