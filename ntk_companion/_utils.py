"""Private helpers shared by the modules (not part of the public API)."""
from __future__ import annotations

from typing import Any, Callable


class _ByIdentity:
    """A callable wrapper that is hashable (by the identity of the wrapped callable), so
    that any callable can be a static argument of ``jax.jit``."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable) -> None:
        self.fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __hash__(self) -> int:
        return id(self.fn)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ByIdentity) and other.fn is self.fn


def static_callable(fn: Callable) -> Callable:
    """Return ``fn`` if it is hashable (usable as a static ``jit`` argument, cached by
    its hash), otherwise a wrapper hashed by identity."""
    try:
        hash(fn)
    except TypeError:
        return _ByIdentity(fn)
    return fn
