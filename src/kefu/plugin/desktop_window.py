"""The desktop window itself (Qt): labels, the video view, the control bar; :class:`Desktop` drives it."""

from __future__ import annotations

from typing import Any, Protocol

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QAction, QCloseEvent, QResizeEvent
from PySide6.QtWidgets import QLabel, QMainWindow, QSizePolicy, QToolBar, QVBoxLayout, QWidget

from .desktop_video import VideoView
from .window import Window

__all__ = ["BAR_ACTIONS", "DesktopWindow", "WindowDriver"]

#: The control bar: (object name, label, what it does).
BAR_ACTIONS: tuple[tuple[str, str, str], ...] = (
    ("mute", "Mute", "mute / unmute the microphone"),
    ("camera", "Camera off", "turn the camera off / on"),
    ("snapshot", "Snapshot", "snapshot: a still of the visitor's video"),
    ("takePhoto", "Photo", "takePhoto: a photo from the visitor's camera"),
    ("inviteShare", "Share", "inviteShare: ask the visitor to share the screen"),
    ("videoDisconnect", "Hang up", "videoDisconnect: hang up"),
)


class WindowDriver(Protocol):
    """What the window tells and asks the one who drives it (:class:`~kefu.plugin.desktop.Desktop`)."""

    @property
    def model(self) -> Window: ...

    @property
    def closing_allowed(self) -> bool: ...

    def bar_action(self, name: str) -> None: ...

    def window_resized(self, width: int, height: int) -> None: ...

    def window_state_changed(self, minimized: bool) -> None: ...

    def close_requested(self) -> None: ...


class DesktopWindow(QMainWindow):
    """The Qt window; :class:`Desktop` drives it."""

    def __init__(self, desktop: WindowDriver) -> None:
        super().__init__()
        self.desktop = desktop
        self.setWindowTitle("kefu plugin")
        self.setMinimumSize(1, 1)
        central = QWidget(self)
        central.setMinimumSize(1, 1)
        layout = QVBoxLayout(central)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(2)
        self.agent_label = self._label("agent", central)
        self.state_label = self._label("state", central)
        self.sessions_label = self._label("sessions", central)
        self.message_label = self._label("message", central)
        for label in (self.agent_label, self.state_label, self.sessions_label):
            layout.addWidget(label)
        self.video = VideoView(central)
        layout.addWidget(self.video, 1)
        layout.addWidget(self.message_label)
        self.setCentralWidget(central)
        self.bar = QToolBar("controls", self)
        self.bar.setObjectName("controlBar")
        self.bar.setMovable(False)
        self.actions_by_name: dict[str, QAction] = {}
        for name, text, tip in BAR_ACTIONS:
            action = QAction(text, self)
            action.setObjectName(name)
            action.setToolTip(tip)
            if name in ("mute", "camera"):
                action.setCheckable(True)
            action.triggered.connect(lambda _checked=False, n=name: desktop.bar_action(n))
            self.bar.addAction(action)
            self.actions_by_name[name] = action
        self.addToolBar(Qt.ToolBarArea.BottomToolBarArea, self.bar)

    @staticmethod
    def _label(name: str, parent: QWidget) -> QLabel:
        label = QLabel("", parent)
        label.setObjectName(name)
        label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        label.setMinimumWidth(1)
        return label

    def sizeHint(self) -> QSize:
        s = self.desktop.model.state
        return QSize(s.width, s.height)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.desktop.window_resized(event.size().width(), event.size().height())

    def changeEvent(self, event: Any) -> None:
        super().changeEvent(event)
        from PySide6.QtCore import QEvent

        if event.type() == QEvent.Type.WindowStateChange:
            self.desktop.window_state_changed(bool(self.windowState() & Qt.WindowState.WindowMinimized))

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.desktop.closing_allowed:
            event.accept()
            return
        event.ignore()
        self.desktop.close_requested()
