"""The error catalogue, the generated docs, and the purity of the core."""

from __future__ import annotations

import ast
from pathlib import Path

import kefu.protocol
from kefu.protocol import CATALOGUE, ErrorCode, KefuError, ProtocolError, error_body
from kefu.protocol.docs import embed_js_messages, errors_md, states_md
from kefu.protocol.integrations import integrations_md

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = ROOT / "src" / "kefu" / "protocol"


def test_every_error_code_is_catalogued_in_two_languages() -> None:
    assert set(CATALOGUE) == set(ErrorCode)
    for info in CATALOGUE.values():
        assert info.msg and info.msg_zh and info.when


def test_spec_errors_are_worded_as_the_spec() -> None:
    assert ErrorCode.SDK_08.value == "SDK_08" and ErrorCode.SDK_11.value == "SDK_11"
    assert ErrorCode.login_timeout.value == -1
    assert CATALOGUE[ErrorCode.SDK_11].msg_zh == "当前访客正在进行会话,无法外呼"
    assert CATALOGUE[ErrorCode.SDK_08].msg_zh == "查询id出错,请检查访客信息是否正确"


def test_exceptions_carry_the_wire_form() -> None:
    e = ProtocolError("x is wrong", code=ErrorCode.invalid_field, field="x")
    assert isinstance(e, KefuError)
    assert e.to_wire() == {"code": "invalid_field", "msg": "x is wrong"}


def test_generated_docs_are_current() -> None:
    states = (ROOT / "docs" / "states.md").read_text(encoding="utf-8")
    errors = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    assert states == states_md(), "docs/states.md is stale: run `bin/kefu docs`"
    assert errors == errors_md(), "docs/errors.md is stale: run `bin/kefu docs`"
    assert "```mermaid" in states and "decision" in states
    integrations = (ROOT / "docs" / "integrations.md").read_text(encoding="utf-8")
    assert integrations == integrations_md(), "docs/integrations.md is stale: run `bin/kefu docs`"


def test_imclient_js_carries_the_catalogue_s_messages() -> None:
    js = (ROOT / "src" / "kefu" / "web" / "imclient.js").read_text(encoding="utf-8")
    assert js == embed_js_messages(js), "imclient.js's error messages are stale: run `bin/kefu docs`"
    zh = CATALOGUE[ErrorCode.plugin_unreachable].msg_zh
    assert (
        f'"plugin_unreachable": {{"en": "{CATALOGUE[ErrorCode.plugin_unreachable].msg}", "zh": "{zh}"}}' in js
    )
    # a change in the catalogue makes the table stale
    assert embed_js_messages(js.replace(zh, "插件")) == js


FORBIDDEN = {
    "asyncio",
    "socket",
    "ssl",
    "select",
    "selectors",
    "threading",
    "subprocess",
    "multiprocessing",
    "time",
    "datetime",
    "os",
    "io",
    "pathlib",
    "shutil",
    "urllib",
    "http",
    "websockets",
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "aiortc",
    "av",
    "sqlalchemy",
    "redis",
    "random",
}
# modules of a forbidden package that do no I/O: parsing a URL is string work
PURE = {"urllib.parse"}


def test_the_protocol_core_imports_no_io_and_no_adapter() -> None:
    for path in sorted(PROTOCOL.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if name in PURE:
                    continue
                assert top not in FORBIDDEN, f"{path.name} imports {name}"
                assert not (top == "kefu" and not name.startswith("kefu.protocol")), (
                    f"{path.name} imports the adapter {name}"
                )


def test_public_surface_is_complete() -> None:
    for name in kefu.protocol.__all__:
        assert hasattr(kefu.protocol, name), name


def test_every_catalogue_entry_speaks_both_languages() -> None:
    from kefu.protocol.errors import localize

    for code, info in CATALOGUE.items():
        assert info.msg.strip() and info.msg_zh.strip(), code
        if code is not ErrorCode.snapShotDisabled:  # the spec prints that one as it is, in both
            assert any("\u4e00" <= ch <= "\u9fff" for ch in info.msg_zh), (code, info.msg_zh)
        wire = error_body(code)
        assert localize(wire, "en") == wire
        zh = localize(wire, "zh")
        assert zh["msg"] == info.msg_zh and "detail" not in zh  # the generic message has no detail
    # the seed's own words
    assert localize(error_body(ErrorCode.SDK_11), "zh")["msg"] == "当前访客正在进行会话,无法外呼"
    assert localize(error_body(ErrorCode.SDK_08), "zh")["msg"] == "查询id出错,请检查访客信息是否正确"
    specific = localize(error_body(ErrorCode.SDK_11, "v1 talks with a2"), "zh")
    assert specific == {
        "code": "SDK_11",
        "msg": "当前访客正在进行会话,无法外呼",
        "detail": "v1 talks with a2",
    }
    assert localize({"code": "not_a_code", "msg": "x"}, "zh") == {"code": "not_a_code", "msg": "x"}
