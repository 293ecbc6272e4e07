"""Progress reporting without a UI dependency: the CLI passes a Rich implementation."""

from __future__ import annotations

from typing import Protocol


class Observer(Protocol):
    def stage(self, name: str) -> None: ...
    def start(self, key: str, description: str, total: int | None) -> None: ...
    def advance(self, key: str, n: int = 1, **info) -> None: ...
    def finish(self, key: str) -> None: ...
    def message(self, text: str) -> None: ...


class NullObserver:
    def stage(self, name: str) -> None:
        pass

    def start(self, key: str, description: str, total: int | None) -> None:
        pass

    def advance(self, key: str, n: int = 1, **info) -> None:
        pass

    def finish(self, key: str) -> None:
        pass

    def message(self, text: str) -> None:
        pass


NULL_OBSERVER = NullObserver()
