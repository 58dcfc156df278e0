"""What the commands with their own JSON and page return (ensemble, finetune, shift)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CommandResults"]


@dataclass
class CommandResults:
    """``doc``: the figures, as written to the command's JSON file in ``run_dir``; ``report``:
    its page (None without one); ``lines``: the console summary, which ``str()`` gives."""

    doc: dict[str, Any]
    run_dir: Path
    report: Path | None = None
    lines: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(self.lines)
