"""The default training corpus: English prose every CPython installation carries.

``pydoc_data.topics`` holds the text of the language reference topics that
``help()`` shows (~465 KB), so ``rustrnn train`` works with no download.
"""

from __future__ import annotations


def default_corpus() -> str:
    """The concatenated pydoc topic texts, in a fixed (sorted) order."""
    from pydoc_data.topics import topics

    return "\n".join(topics[k].strip() for k in sorted(topics)) + "\n"


def split(text: str, valid_fraction: float = 0.05) -> tuple:
    """Splits text into (train, valid) at a line boundary near the end."""
    cut = int(len(text) * (1 - valid_fraction))
    nl = text.rfind("\n", 0, cut)
    cut = nl + 1 if nl > 0 else cut
    return text[:cut], text[cut:]
