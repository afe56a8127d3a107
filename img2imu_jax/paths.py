"""Every path a user hands in goes through here: local or `gs://`, anything else is refused.

`etils.epath` serves both with one API (TensorFlow's file system for `gs://` when TensorFlow is
installed, fsspec/gcsfs otherwise). Without this check a URL with an unknown scheme, `s4://b/x`,
is a relative local path, and a run would write into a folder named `s4:`.
"""

from __future__ import annotations

import os
import re

from etils import epath

SUPPORTED_SCHEMES = ("gs",)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def user_path(path: str | os.PathLike, *, what: str = "path") -> epath.Path:
    """`path` as an `epath.Path` (local ones absolute), or a one-line ValueError naming it."""
    text = os.fspath(path)
    match = _SCHEME.match(text)
    if match and match.group(1).lower() not in SUPPORTED_SCHEMES:
        raise ValueError(f"{what} {text!r}: scheme {match.group(1)}:// is not supported "
                         f"(use a local path or gs://BUCKET/...)")
    if match:
        return epath.Path(text)
    return epath.Path(text).expanduser().absolute()


def is_remote(path: str | os.PathLike) -> bool:
    """Whether `path` names cloud storage, where files are written whole and never appended."""
    return bool(_SCHEME.match(os.fspath(path)))
