"""Shared state answers the same with Redis, without it, and while it is down: every operation of
SharedKeys runs here on all three, against the same expected answers."""
import asyncio
import secrets

import pytest
from redis.asyncio import Redis

from store.redis import LocalKeys, SharedKeys


@pytest.fixture(params=["in-process", "redis", "redis-down"])
async def shared(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    prefix = f"pbtest:shared:{secrets.token_hex(4)}:"
    if request.param == "in-process":
        yield SharedKeys(None, prefix)
        return
    if request.param == "redis-down":  # nothing listens there: every call fails and falls back
        redis = Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.5)
        yield SharedKeys(redis, prefix)
        await redis.aclose()
        return
    redis = Redis.from_url(request.getfixturevalue("redis_url"))
    yield SharedKeys(redis, prefix)
    keys = [k async for k in redis.scan_iter(match=prefix + "*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


async def test_values_expire_and_can_be_deleted(shared: SharedKeys) -> None:
    assert await shared.get("a") is None and not await shared.exists("a")
    await shared.set("a", "one", ttl_seconds=1)
    await shared.set("b", "two", ttl_seconds=60)
    assert await shared.get("a") == "one" and await shared.exists("a")
    await shared.delete("b")
    assert await shared.get("b") is None and not await shared.exists("b")
    await asyncio.sleep(1.1)
    assert await shared.get("a") is None and not await shared.exists("a")


async def test_add_once_lets_one_of_many_racers_through_per_ttl(shared: SharedKeys) -> None:
    firsts = await asyncio.gather(*(shared.add_once("k", 0.3) for _ in range(20)))
    assert firsts.count(True) == 1
    assert await shared.add_once("other", 0.3)  # per key
    await asyncio.sleep(0.4)
    assert await shared.add_once("k", 0.3)


async def test_count_in_window_counts_every_hit_until_the_window_ends(shared: SharedKeys) -> None:
    counts = await asyncio.gather(*(shared.count_in_window("hits", 1) for _ in range(10)))
    assert sorted(counts) == list(range(1, 11))
    assert await shared.count_in_window("elsewhere", 1) == 1
    await asyncio.sleep(1.1)
    assert await shared.count_in_window("hits", 1) == 1  # a new window starts with the next hit


async def test_reserve_in_windows_slides_each_window(shared: SharedKeys) -> None:
    limits = [(5, 3600), (3, 60)]
    t = 1_000_000.0
    assert [await shared.reserve_in_windows("u", limits, t + i) for i in range(3)] == [0, 0, 0]
    assert await shared.reserve_in_windows("u", limits, t + 10) == pytest.approx(50)
    assert await shared.reserve_in_windows("other", limits, t + 10) == 0
    # At t+60 the send at t has just left the minute: the slot is free (and taken), never "wait 0".
    assert await shared.reserve_in_windows("u", limits, t + 60) == 0
    assert await shared.reserve_in_windows("u", limits, t + 60.5) == pytest.approx(0.5)  # t+60 was taken
    assert await shared.reserve_in_windows("u", limits, t + 61.5) == 0
    assert await shared.reserve_in_windows("u", limits, t + 200) == pytest.approx(3400)
    assert await shared.reserve_in_windows("u", limits, t + 3600) == 0


async def test_reserve_in_windows_never_gives_out_more_slots_than_the_limit(shared: SharedKeys) -> None:
    t = 2_000_000.0
    waits = await asyncio.gather(*(shared.reserve_in_windows("v", [(3, 60)], t + i / 1000) for i in range(10)))
    assert waits.count(0.0) == 3
    assert all(w > 59 for w in waits if w)


async def test_reserve_many_answers_each_key_in_order_in_one_call(shared: SharedKeys) -> None:
    t = 3_000_000.0
    await shared.reserve_in_windows("full", [(2, 60)], t)
    # "twice" comes twice: its second reservation sees the first; "full" has one slot left.
    waits = await shared.reserve_many_in_windows(["a", "twice", "full", "twice", "full"], [(2, 60)], t + 1)
    assert waits == [0, 0, 0, 0, pytest.approx(59)]
    assert await shared.reserve_many_in_windows(["twice", "a"], [(2, 60)], t + 2) == [pytest.approx(59), 0]
    assert await shared.reserve_many_in_windows([], [(2, 60)], t + 3) == []


_CLAIM = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX') then return -1 end
return redis.call('INCR', KEYS[2])
"""


async def test_run_script_runs_lua_or_its_in_process_equivalent(shared: SharedKeys) -> None:
    def locally(local: LocalKeys) -> int:
        if not local.add_once("claim", 60):
            return -1
        return local.count_in_window("claims", 60)

    async def claim() -> int:
        return await shared.run_script(_CLAIM, ["claim", "claims"], ["x"], parse=int, locally=locally,
                                       degraded="test claims made in this process")

    assert sorted(await asyncio.gather(*(claim() for _ in range(5)))) == [-1, -1, -1, -1, 1]
    if shared.redis is not None and shared.local.get("claim") is None:  # Redis answered: keys are prefixed
        assert await shared.redis.get(shared.prefix + "claim") == b"x"


def test_local_keys_stay_within_their_bound() -> None:
    local = LocalKeys(max_items=3)
    for i in range(5):
        local.set(f"k{i}", str(i), ttl=60)
    assert len(local.items) == 3
    assert local.get("k0") is None and local.get("k4") == "4"
    local.set("gone", "x", ttl=1, now=100.0)
    assert local.get("gone", now=100.5) == "x" and local.get("gone", now=101.0) is None
    assert "gone" not in local.items  # expired entries leave when they are read
