"""The window model (SPEC §4.1): every API changes it through one setter."""

from __future__ import annotations

from kefu.plugin.window import DEFAULT_SIZE, Window, WindowState


def test_starts_visible_at_the_default_size() -> None:
    w = Window()
    assert w.snapshot() == {
        "width": DEFAULT_SIZE[0],
        "height": DEFAULT_SIZE[1],
        "minimized": False,
        "visible": True,
    }


def test_every_api_changes_the_model_and_tells_the_listeners() -> None:
    w = Window(WindowState(visible=False))
    seen: list[tuple[WindowState, WindowState]] = []
    w.on_change(lambda old, new: seen.append((old, new)))
    w.startup()
    assert w.state.visible and not w.state.minimized
    w.set_size(300, 400)
    assert (w.state.width, w.state.height) == (300, 400)
    w.minimize()
    assert w.state.minimized
    w.restore()
    assert not w.state.minimized and w.state.visible
    w.close()
    assert w.state.closed and not w.state.visible
    assert len(seen) == 5
    assert seen[1][0].width == DEFAULT_SIZE[0] and seen[1][1].width == 300


def test_no_change_no_event_and_a_failing_listener_is_contained() -> None:
    w = Window()
    calls: list[int] = []

    def bad(_old: WindowState, _new: WindowState) -> None:
        raise RuntimeError("listener bug")

    w.on_change(bad)
    w.on_change(lambda _o, _n: calls.append(1))
    w.restore()  # already restored: nothing changes
    assert calls == []
    w.minimize()  # the first listener raises; the second still runs
    assert calls == [1] and w.state.minimized
