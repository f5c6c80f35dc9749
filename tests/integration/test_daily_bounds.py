"""Issue 17 (3): one owner's hanging connections neither hold another owner's test back nor
take the worker past its Lambda timeout.

Written against the code before the change, where the per-provider cap was shared by every
owner (20 hanging connections of one user delayed another's test by about 36 s) and a
connection's own timeout_seconds (up to 300 s, the worker's Lambda timeout) applied as is.
No timing is asserted: the order of completion and the budgets handed to the runner are.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from tests.integration.test_daily_faults import make_conn, svc, today  # noqa: F401
from tests.support.builders import caller, unique
from tests.support.spies import spy_budgets

pytestmark = pytest.mark.integration


def _run(svc: Any, **settings: Any) -> Any:  # noqa: F811
    from chalicelib.data import aws
    from chalicelib.data.connections_repo import ConnectionRepository
    from chalicelib.data.daily_repo import DailyClaimRepository
    from chalicelib.services.daily import DailyRun

    return DailyRun(ConnectionRepository(), svc.providers, svc.testing, DailyClaimRepository(),
                    lambda: aws.client("sqs"), dataclasses.replace(svc.settings, **settings),
                    concurrency=10, per_provider=2)


@pytest.mark.parametrize("share", [1, 2])
def test_one_owners_hanging_connections_do_not_hold_another_owners_test(
        svc, fake_provider, monkeypatch, share):  # noqa: F811
    import chalicelib.providers.runner as runner
    from chalicelib.providers.netguard import guarded_client
    from chalicelib.services.daily import RunStats

    # Given two hanging connections of one owner (2 s each) and a healthy one of another,
    # on one provider with 2 slots in the worker
    greedy, polite = unique("greedy-"), unique("polite-")
    hanging = [make_conn(svc, fake_provider, greedy, "hang")[0] for _ in range(2)]
    for cid in hanging:
        svc.connections.update(caller(greedy), cid,
                               {"settings": {"timeout_seconds": 2, "max_retries": 0}}, None)
    healthy, _ = make_conn(svc, fake_provider, polite)
    run = _run(svc, daily_owner_share=share)
    # The order provider calls start and end in (no clock involved)
    events: list[str] = []
    real = runner.test_target

    async def spy(target: Any, **kwargs: Any) -> Any:
        who = "hang" if "fk_hang" in target.credentials["api_key"] else "polite"
        events.append(f"{who} start")
        try:
            return await real(target, **kwargs)
        finally:
            events.append(f"{who} end")

    monkeypatch.setattr(runner, "test_target", spy)

    async def scenario() -> None:
        overall, limits = asyncio.Semaphore(run.concurrency), {}
        async with guarded_client(allow_hosts=svc.settings.outbound_allow_hosts,
                                  allow_http=True) as client:
            greedy_tasks = [asyncio.create_task(
                run.test_one(cid, today(), RunStats(), client, limits, overall))
                for cid in hanging]
            # They are under way first: as many as the owner's share lets start
            for _ in range(1000):
                if events.count("hang start") >= share:
                    break
                await asyncio.sleep(0.01)
            assert events.count("hang start") == share, events
            await run.test_one(healthy, today(), RunStats(), client, limits, overall)
            await asyncio.gather(*greedy_tasks)

    asyncio.run(scenario())
    polite_end = events.index("polite end")
    hang_ends_before = events[:polite_end].count("hang end")
    # Then, with an owner's share under the provider's cap, the other owner's test ran while
    # the hanging ones were still under way; with the whole cap as the share (as before),
    # it waited for one of them to time out
    if share == 1:
        assert hang_ends_before == 0, events
    else:
        assert hang_ends_before >= 1, events


def test_a_daily_test_never_gets_more_than_the_daily_budget(svc, fake_provider,  # noqa: F811
                                                            monkeypatch):
    from chalicelib.providers.netguard import guarded_client
    from chalicelib.services.daily import RunStats

    user = unique("budget-")
    cid, _ = make_conn(svc, fake_provider, user)
    svc.connections.update(caller(user), cid,
                           {"settings": {"timeout_seconds": 300, "max_retries": 0}}, None)
    budgets = spy_budgets(monkeypatch)
    run = _run(svc)

    async def scenario() -> None:
        async with guarded_client(allow_hosts=svc.settings.outbound_allow_hosts,
                                  allow_http=True) as client:
            await run.test_one(cid, today(), RunStats(), client, {}, asyncio.Semaphore(1))

    asyncio.run(scenario())
    assert budgets == [float(svc.settings.daily_test_timeout_seconds)]
    assert svc.settings.daily_test_timeout_seconds * 2 < 300  # well under the worker's timeout
