"""Text that looks the same is the same: every string that comes in is stored in NFC.

"Zürich" exported by macOS tools is `u` and a combining diaeresis (NFD); typed elsewhere it
is one `ü` (NFC). Compared as code points, as SQL, the Rust core and the Python twin all
compare, the two never match. So the DSL's string literals, contact fields and attributes,
event properties and agent names are composed here, where they come in, and every
comparison after that sees one form. Ids, email addresses and phone numbers are kept as given (see
docs/store.md).
"""

from __future__ import annotations

import unicodedata
from typing import Any


def composed(value: Any) -> Any:
    """`value` with every string in it, keys too, in NFC; anything else unchanged."""
    if isinstance(value, str):
        return nfc(value)
    if isinstance(value, dict):
        return {composed(key): composed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [composed(item) for item in value]
    if isinstance(value, tuple):
        return tuple(composed(item) for item in value)
    return value


def nfc(text: str) -> str:
    """`text` in NFC (canonical composition)."""
    # CPython's quick check returns composed text (ASCII above all) without a copy.
    return unicodedata.normalize("NFC", text)
