"""Where ``from_pretrained`` weights come from: a ``save_pretrained`` folder or a Hugging Face Hub id.

One rule for the model's ``pite-model init`` and the annotation back-ends: a folder is read as is;
a Hub id is downloaded, or, when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set, read from
the local Hub cache alone, so weights fetched once elsewhere keep working offline. Nothing here
imports torch or transformers.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# "name" or "owner/name", as the Hub spells repository ids.
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) forbids downloads."""
    return any(os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def weights_source(source: str) -> tuple[str, bool]:
    """``(what to pass to from_pretrained, local_files_only)`` for a folder or a Hub id.

    Raises FileNotFoundError naming ``source`` when it is neither an existing folder nor a Hub id."""
    path = Path(source).expanduser()
    if path.is_dir():
        return str(path), True
    if path.exists():
        raise FileNotFoundError(f"{source} is a file, not a save_pretrained folder")
    if not HUB_ID.match(source):
        raise FileNotFoundError(f"model folder {source} does not exist (and it is not a Hub id owner/name)")
    return source, hub_offline()


def where(source: str, local: bool) -> str:
    """``source`` as an error message names it: what kind of place it is, and why a Hub id can fail."""
    if Path(source).expanduser().is_dir():
        return f"folder {source}"
    if local:
        return f"Hub id {source} (HF_HUB_OFFLINE is set and it is not in the local Hub cache)"
    return f"Hub id {source} (not in the local Hub cache, and it could not be downloaded)"
