"""The media files' encryption (kefu.server.vault): segments, their order, keys and rotation."""

from __future__ import annotations

import base64
import io
import os

import pytest

from kefu.server.vault import MAGIC, MediaKeyError, Vault, parse_keys

K1, K2 = os.urandom(32), os.urandom(32)


def seal(vault: Vault, data: bytes) -> bytes:
    return vault.seal_bytes(data)


def opened(vault: Vault, sealed: bytes) -> bytes:
    return b"".join(vault.open_stream(io.BytesIO(sealed)))


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 64 * 3, 64 * 3 + 7])
def test_any_size_round_trips_in_segments(size: int) -> None:
    vault = Vault((K1,), segment=64)
    data = os.urandom(size)
    sealed = seal(vault, data)
    assert sealed.startswith(MAGIC)
    if size >= 16:
        assert data not in sealed
    assert opened(vault, sealed) == data
    segments = list(vault.open_stream(io.BytesIO(sealed)))
    assert all(len(s) <= 64 for s in segments) and len(segments) == max(1, -(-size // 64))


def test_two_files_of_the_same_media_differ() -> None:
    vault = Vault((K1,))
    assert seal(vault, b"same") != seal(vault, b"same")


def test_a_cut_reordered_or_altered_file_is_refused() -> None:
    vault = Vault((K1,), segment=16)
    data = bytes(range(64))
    sealed = seal(vault, data)
    header, body = sealed[:28], sealed[28:]
    seg = 16 + 16
    parts = [body[i : i + seg] for i in range(0, len(body), seg)]
    assert len(parts) == 4
    for bad in (
        header + b"".join(parts[:3]),  # the last segment cut off: the third is not marked last
        header + parts[1] + parts[0] + parts[2] + parts[3],  # reordered
        header + b"".join(parts) + parts[3],  # a segment added
        sealed[:-1] + bytes([sealed[-1] ^ 1]),  # a bit flipped
    ):
        with pytest.raises(MediaKeyError):
            opened(vault, bad)


def test_keys_rotate_old_files_still_open_and_a_foreign_key_is_named() -> None:
    old = seal(Vault((K1,)), b"evidence of 2025")
    rotated = Vault((K2, K1))
    assert opened(rotated, old) == b"evidence of 2025"
    new = seal(rotated, b"evidence of 2026")
    assert opened(Vault((K2,)), new) == b"evidence of 2026"
    with pytest.raises(MediaKeyError, match="which this server does not have"):
        opened(Vault((K2,)), old)
    with pytest.raises(MediaKeyError, match="not an encrypted media file"):
        opened(rotated, b"\x1aE\xdf\xa3 a webm")
    assert Vault((K1,)).current_id == Vault((K1, K2)).current_id != Vault((K2,)).current_id


def test_keys_are_base64_of_32_bytes_and_errors_never_show_them() -> None:
    b1, b2 = base64.b64encode(K1).decode(), base64.b64encode(K2).decode()
    assert parse_keys(f"{b1}\n{b2}\n") == (K1, K2)
    assert parse_keys(f"{b1},{b2}") == (K1, K2)
    assert parse_keys("") == ()
    short = base64.b64encode(os.urandom(16)).decode()
    with pytest.raises(MediaKeyError) as info:
        parse_keys(short)
    assert short not in str(info.value) and "32 bytes" in str(info.value)
    with pytest.raises(MediaKeyError):
        parse_keys("not base64 at all!")
