"""The tenant every command and API call uses unless told otherwise.

Its own module, free of the store's imports, so the command line can show it in `--help`
without loading SQLAlchemy.
"""

from __future__ import annotations

DEFAULT_TENANT = "default"
