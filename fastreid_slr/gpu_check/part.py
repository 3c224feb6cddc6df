"""One part of the check: what it runs, and how it says what it measured in the report's table."""
from typing import Optional


class Part:
    """A part of the check. ``run(context)`` returns its numbers (JSON values; ``ok`` False when it
    ran but its check failed: a part that raises fails too, and the others still run);
    ``summary(result)`` says them in one line of the table; ``skip_reason(context)`` says why it
    does not run on this machine (None: it runs)."""

    name = ""
    what = ""  # what it runs, in a few words (the table's second column)

    def skip_reason(self, context) -> Optional[str]:
        return None

    def run(self, context) -> dict:
        raise NotImplementedError

    def summary(self, result: dict) -> str:
        raise NotImplementedError


def fmt(value, unit: str = "", digits: int = 3) -> str:
    """A number for the table: 3 significant digits, booleans as yes / NO, None as "-"."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.{digits}g}{unit}"
    return f"{value}{unit}"
