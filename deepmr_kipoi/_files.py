"""Small file helpers shared by the Kipoi layer and the run (a leaf module: imports nothing of ours)."""

from __future__ import annotations

import hashlib
import os


def file_md5(path: str | os.PathLike) -> str:
    """Hex md5 of a file's bytes, read in 1 MiB blocks (also the check Kipoi applies to its files)."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
