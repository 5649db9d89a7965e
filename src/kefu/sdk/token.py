"""Where an SDK finds the pairing token the plugin wrote at its start."""

from __future__ import annotations

from pathlib import Path

from kefu.paths import TOKEN_FILE, default_data_dir
from kefu.protocol import ErrorCode

from .events import RequestError

__all__ = ["read_token", "token_path"]


def token_path(data_dir: Path | None = None) -> Path:
    return (data_dir if data_dir is not None else default_data_dir()) / TOKEN_FILE


def read_token(data_dir: Path | None = None) -> str:
    """The token in ``<data_dir>/plugin.token`` (default: the plugin's per-user folder)."""
    path = token_path(data_dir)
    try:
        return path.read_text(encoding="ascii").strip()
    except OSError:
        raise RequestError(
            f"no pairing token at {path}: is the plugin running (`kefu plugin`), with this data directory?",
            code=ErrorCode.plugin_unreachable,
        ) from None
