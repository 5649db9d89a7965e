"""The gate's pure parts: Host and Origin checks, the token file, the lockout, the rate limit."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kefu.plugin.security import PairingGuard, PairingToken, check_handshake
from kefu.plugin.settings import PluginSettings, default_data_dir, origin_of
from kefu.protocol import ErrorCode

ALLOW = frozenset({"http://127.0.0.1:8600", "http://127.0.0.1:1040", "http://localhost:1040"})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("host", ["127.0.0.1:1040", "localhost:1040"])
def test_loopback_hosts_with_the_port_pass(host: str) -> None:
    v = check_handshake(host, [], port=1040, allowlist=ALLOW)
    assert v.refused is None and v.browser is False


@pytest.mark.parametrize(
    "host",
    [
        None,
        "",
        "evil.example:1040",
        "127.0.0.1",  # without the port
        "127.0.0.1:1041",
        "127.1:1040",
        "0x7f000001:1040",
        "localhost.:1040",
        "LOCALHOST:1040",
        "[::1]:1040",
        "127.0.0.1:1040.evil.example",
    ],
)
def test_dns_rebinding_hosts_are_refused(host: str | None) -> None:
    v = check_handshake(host, [], port=1040, allowlist=ALLOW)
    assert v.refused is ErrorCode.host_refused


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "null",
        "http://127.0.0.1:8600.evil.example",
        "http://evil127.0.0.1:8600",
        "http://127.0.0.1:86",
        "https://127.0.0.1:8600",
        "http://127.0.0.1:8600/",
        "HTTP://127.0.0.1:8600",
    ],
)
def test_origins_must_match_exactly(origin: str) -> None:
    v = check_handshake("127.0.0.1:1040", [origin], port=1040, allowlist=ALLOW)
    assert v.refused is ErrorCode.origin_refused
    assert "evil" not in v.msg  # the origin is never echoed


def test_an_allowed_origin_is_a_browser_and_two_origins_are_refused() -> None:
    assert check_handshake("localhost:1040", ["http://127.0.0.1:8600"], port=1040, allowlist=ALLOW).browser
    two = check_handshake("localhost:1040", ["http://127.0.0.1:8600"] * 2, port=1040, allowlist=ALLOW)
    assert two.refused is ErrorCode.origin_refused


def test_the_default_allowlist_and_the_additions() -> None:
    s = PluginSettings(server_url="http://127.0.0.1:8600/agent", allow_origins=("https://bank.example/x",))
    assert s.origins(1040) == {
        "http://127.0.0.1:8600",
        "http://127.0.0.1:1040",
        "http://localhost:1040",
        "https://bank.example",
    }
    assert s.agent_ws_url == "ws://127.0.0.1:8600/ws/agent"
    assert PluginSettings(server_url="https://kefu.example").agent_ws_url == "wss://kefu.example/ws/agent"


def test_origin_of_normalises_and_refuses() -> None:
    assert origin_of("HTTPS://Bank.Example:443/path?q") == "https://bank.example"
    assert origin_of("http://[::1]:80") == "http://[::1]"
    for bad in ("ftp://x", "no-scheme", "http://"):
        with pytest.raises(ValueError):
            origin_of(bad)
    with pytest.raises(ValueError):
        PluginSettings(server_url="file:///etc/passwd")


def test_the_data_dir_default_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KEFU_PLUGIN_DATA_DIR", str(tmp_path / "d"))
    assert default_data_dir() == tmp_path / "d"
    monkeypatch.delenv("KEFU_PLUGIN_DATA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "kefu" / "plugin"


def test_the_token_file_is_fresh_and_the_users_only(tmp_path: Path) -> None:
    path = tmp_path / "data" / "plugin.token"
    first = PairingToken(path)
    first.write()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    value = PairingToken.read(path)
    assert len(value) >= 43  # 256 bits, urlsafe base64
    assert first.matches(value) and not first.matches(value[:-1] + "x") and not first.matches(None)
    assert not first.matches("é" * 10)
    second = PairingToken(path)
    second.write()
    assert PairingToken.read(path) != value
    first.remove()  # not its token any more: the file stays
    assert path.exists()
    second.remove()
    assert not path.exists()


def test_five_wrong_tokens_lock_pairing_for_a_while() -> None:
    clock = Clock()
    guard = PairingGuard(clock, failures=5, window=60, lock=60)
    for _ in range(4):
        guard.failed()
        clock.now += 1
    assert guard.locked_for() == 0
    guard.failed()
    assert guard.locked_for() == 60
    clock.now += 59.5
    assert 0 < guard.locked_for() <= 0.5
    clock.now += 1
    assert guard.locked_for() == 0


def test_failures_outside_the_window_do_not_count() -> None:
    clock = Clock()
    guard = PairingGuard(clock, failures=5, window=60, lock=60)
    for _ in range(10):
        guard.failed()
        clock.now += 20  # three failures per window at most
    assert guard.locked_for() == 0


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("lccp-ex.easemob.com:1040", True),
        ("a.bank.example:1040", True),  # one label under the certificate's *.bank.example
        ("bank.example:1040", False),
        ("a.b.bank.example:1040", False),
        (".bank.example:1040", False),
        ("*.bank.example:1040", False),
        ("LCCP-EX.EASEMOB.COM:1040", False),
        ("lccp-ex.easemob.com:1041", False),
        ("127.0.0.1:1040", True),
    ],
)
def test_the_tls_certificate_names_are_hosts_too(host: str, ok: bool) -> None:
    names = ("lccp-ex.easemob.com", "*.bank.example")
    v = check_handshake(host, [], port=1040, allowlist=ALLOW, names=names)
    assert (v.refused is None) is ok
    if not ok:
        assert v.refused is ErrorCode.host_refused and "lccp-ex.easemob.com:1040" in v.msg
