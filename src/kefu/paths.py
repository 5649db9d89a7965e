"""Where the plugin keeps its files, shared by the plugin and the SDKs.

The SDK finds the plugin's pairing token (``<data dir>/plugin.token``) and its
default port here without loading the plugin (issue 19: dependencies point
one way, ``import kefu.sdk`` loads no ``kefu.plugin``, aiortc or av). Only
the standard library: a module every process may import.

- :func:`default_data_dir` — the per-user folder of the plugin;
- :func:`private_dir` / :func:`open_private` — a folder (0700) and files
  (0600) the user's alone, also when they existed before, wider.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

__all__ = [
    "DATA_DIR_ENV",
    "DEFAULT_PORT",
    "TOKEN_FILE",
    "default_data_dir",
    "open_private",
    "private_dir",
]

log = logging.getLogger("kefu.paths")

#: The plugin's control port on 127.0.0.1 (SPEC §6).
DEFAULT_PORT = 1040
#: The pairing token's file in the plugin's data folder.
TOKEN_FILE = "plugin.token"
#: Overrides the default data directory (for tests and for several agents on one machine).
DATA_DIR_ENV = "KEFU_PLUGIN_DATA_DIR"


def default_data_dir() -> Path:
    """The per-user folder of the plugin: ``$KEFU_PLUGIN_DATA_DIR``, else
    ``$XDG_DATA_HOME/kefu/plugin``, else ``~/.local/share/kefu/plugin``."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "kefu" / "plugin"


def private_dir(path: Path) -> Path:
    """Make ``path`` (and its parents) if needed and make it the user's alone:
    the folder and every folder in it 0700, every file 0600, also when they
    existed before with wider modes. Symbolic links are left alone (a chmod
    would follow them out of the folder)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    _tighten(path, 0o700)
    for root, dirs, files in os.walk(path):
        for name in dirs:
            _tighten(Path(root) / name, 0o700)
        for name in files:
            _tighten(Path(root) / name, 0o600)
    return path


def _tighten(path: Path, mode: int) -> None:
    try:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode) or stat.S_IMODE(st.st_mode) == mode:
            return
        os.chmod(path, mode)
    except OSError as exc:
        log.warning("cannot make %s private (mode %o): %s", path, mode, exc.strerror)


def open_private(path: Path, flags: int) -> int:
    """``os.open`` a file the user alone may read (0600, also when it existed);
    ``flags`` add to ``O_CREAT``; a symbolic link is refused (``O_NOFOLLOW``)."""
    fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except OSError:
        os.close(fd)
        raise
    return fd
