"""Watching what the service hands the provider runner, without changing what it does."""

from __future__ import annotations

from typing import Any


def spy_budgets(monkeypatch: Any, *names: str) -> list[float]:
    """Each call of ``chalicelib.providers.runner.<name>`` (default ``test_target``) appends
    the target's whole budget (``timeout_seconds``) to the returned list, then runs as is."""
    import chalicelib.providers.runner as runner

    budgets: list[float] = []
    for name in names or ("test_target",):
        real = getattr(runner, name)

        async def spy(target: Any, *args: Any, _real: Any = real, **kwargs: Any) -> Any:
            budgets.append(target.timeout_seconds)
            return await _real(target, *args, **kwargs)

        monkeypatch.setattr(runner, name, spy)
    return budgets
