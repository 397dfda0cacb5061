"""The bridge example the README shows runs as printed, against the lab."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd


def test_readme_example(lab: Any, capsys: Any, readme_snippet: Callable[[str], str]) -> None:
    scope: dict[str, Any] = {}
    exec(compile(readme_snippet("bridge"), "README.md:bridge", "exec"), scope)  # noqa: S102 - our own README

    shown = capsys.readouterr().out
    assert "Get-CrmAdvancedSetting -ID" in shown and "Completed" in shown
    assert isinstance(scope["certs"].to_frame(), pd.DataFrame) and scope["res"].ok
