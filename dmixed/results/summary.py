"""The printed summary of fitted results, laid out as statsmodels' ``summary2``."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["Summary"]


class Summary:
    """Text/HTML summary laid out as statsmodels' ``summary2``.

    Parameters
    ----------
    title : str
    info : list of (str, str)
        Label/value pairs, printed two per line.
    table : DataFrame
        The coefficient table (numbers; printed with three decimals, NaN blank).
    """

    def __init__(self, title: str, info: list[tuple[str, str]], table: pd.DataFrame) -> None:
        self.title = title
        self.info = info
        self.table = table

    def _formatted_table(self) -> pd.DataFrame:
        return self.table.map(lambda v: f"{v:.3f}" if np.isfinite(v) else "")

    def as_text(self) -> str:
        """The summary as fixed-width text."""
        lines = []
        for i in range(0, len(self.info), 2):
            (k1, v1), (k2, v2) = (
                self.info[i],
                self.info[i + 1] if i + 1 < len(self.info) else ("", ""),
            )
            lines.append(f"{k1:<20}{v1:>14}    {k2:<20}{v2:>14}".rstrip())
        body = self._formatted_table().to_string()
        width = max(len(s) for s in lines + body.splitlines())
        return (
            "\n".join(
                [
                    self.title.center(width).rstrip(),
                    "=" * width,
                    *lines,
                    "-" * width,
                    body,
                    "=" * width,
                ]
            )
            + "\n"
        )

    def as_html(self) -> str:
        """The summary as an HTML fragment (for notebooks)."""
        info = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in self.info if k)
        return (
            f"<div><h4>{self.title}</h4><table>{info}</table>"
            f"{self._formatted_table().to_html()}</div>"
        )

    def __str__(self) -> str:
        return self.as_text()

    def __repr__(self) -> str:
        return self.as_text()
