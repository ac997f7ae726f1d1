"""Table artifacts that fit the Prefect UI: few columns, each cell cut to a width.

The UI lays a table artifact out with one line per cell (no wrapping) in a box about 880 px wide on a
1440 px screen; a cell as long as its text pushes the columns on the right out of sight. So the flows'
tables merge what belongs together (``vendor/account``), leave out what their description or the history
holds in full (JSON field diffs: the ``drift`` view has them), and cut long cells with an ellipsis, within
`ROW_CHARACTERS` a row.
"""

from __future__ import annotations

ROW_CHARACTERS = 100
"""What fits in one row at 1440 px, about 7 px a character with the cells' padding."""


def cut(text: object, width: int) -> str:
    """`text` as one line of at most `width` characters, ending in an ellipsis when it was longer."""
    line = " ".join(str(text if text is not None else "").split())
    return line if len(line) <= width else line[: width - 1].rstrip() + "…"


def connection(vendor: str, account: str, width: int = 26) -> str:
    """``vendor/account``, cut to `width`."""
    return cut(f"{vendor}/{account}", width)


__all__ = ["ROW_CHARACTERS", "connection", "cut"]
