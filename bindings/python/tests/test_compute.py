"""throttle() (the GCRA rate limiter), get_stale() (serve-stale reads) and
get_or_compute() (cache-aside with stampede protection).

There is no fake clock here, so the tests use real time and assert only
what no scheduling delay can change: a limiter of one request per minute
does not refill during a test, an entry with a TTL of 50 ms is polled for
(with a deadline) until it has expired, and waits are bounded."""

import multiprocessing
import os
import threading
import time

import pytest

import mp_workers
import shmkv

DEADLINE = 10.0  # seconds; generous, only a failing test waits this long
JOIN_TIMEOUT = 120
START_METHODS = ["spawn", "fork"]
LEASE = "\0lease:"


def wait_until(predicate, deadline=DEADLINE):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def expire(cache, key):
    """Waits until key has expired but is still in memory (no plain read:
    that would remove it)."""
    assert wait_until(lambda: (cache.get_stale(key)[1] or 0) > 0), key


class Calls:
    """A computation that counts its calls and returns successive values."""

    def __init__(self, *values):
        self.values = list(values)
        self.count = 0

    def __call__(self):
        self.count += 1
        return self.values[self.count - 1]


def join_all(children):
    try:
        for c in children:
            c.join(JOIN_TIMEOUT)
            assert c.exitcode == 0
    finally:
        for c in children:
            if c.is_alive():
                c.kill()
                c.join()


# throttle()

def test_a_fresh_limiter_admits_exactly_the_burst_then_denies(cache):
    # One request per minute: nothing refills while the test runs.
    for i in range(5):
        d = cache.throttle("ip:1", 1, 60_000, 5)
        assert d == shmkv.Throttle(True, 0, 4 - i)
        assert d.allowed is True and d.retry_after_ms == 0 and d.remaining == 4 - i
    denied = cache.throttle("ip:1", 1, 60_000, 5)
    assert denied.allowed is False and denied.remaining == 0
    assert 0 < denied.retry_after_ms <= 60_000
    again = cache.throttle("ip:1", 1, 60_000, 5)
    assert again.allowed is False  # a denied request recorded nothing...
    assert 0 < again.retry_after_ms <= denied.retry_after_ms  # ...the wait only shrinks
    allowed, retry_after_ms, remaining = cache.throttle("ip:2", 1, 60_000, 5)
    assert (allowed, retry_after_ms, remaining) == (True, 0, 4)  # a limiter per key


def test_retry_after_is_at_most_one_interval(cache):
    # 4 per second: an interval of 250 ms.
    began = time.monotonic()
    for _ in range(3):
        assert cache.throttle(b"k", 4, 1000, 3).allowed
    d = cache.throttle(b"k", 4, 1000, 3)
    if time.monotonic() - began < 0.25:
        assert not d.allowed  # no slot has come back yet
    if not d.allowed:
        assert 0 < d.retry_after_ms <= 250
    # The limiter state is an ordinary key that expires once the limiter is
    # back to a full burst (3 x 250 ms, rounded up).
    assert 0 < cache.ttl("k") <= 0.752


def test_throttle_bad_arguments_raise_invalid_argument(cache):
    for rate, period_ms, burst in [(0, 1000, 1), (1, 0, 1), (1, 1000, 0),
                                   (2_000_000, 1000, 1),  # more than one per microsecond
                                   (-1, 1000, 1), (1, 1000, 2**64)]:
        with pytest.raises(shmkv.InvalidArgument) as e:
            cache.throttle("k", rate, period_ms, burst)
        assert e.value.code == shmkv.EINVAL and e.value.message
    with pytest.raises(shmkv.InvalidArgument):
        cache.throttle("", 1, 1000, 1)
    with pytest.raises(TypeError):
        cache.throttle("k", 1.5, 1000, 1)
    with pytest.raises(TypeError):
        cache.throttle("k", True, 1000, 1)
    assert len(cache) == 0  # none of them stored anything


def test_throttle_on_a_key_holding_something_else_raises_not_number(cache):
    cache["name"] = "alice"
    with pytest.raises(shmkv.NotNumber) as e:
        cache.throttle("name", 10, 1000, 5)
    assert e.value.code == shmkv.ENOTNUM and isinstance(e.value, ValueError)
    assert cache["name"] == "alice"
    cache["neg"] = b"-5"
    with pytest.raises(shmkv.NotNumber):
        cache.throttle("neg", 10, 1000, 5)
    assert cache["neg"] == b"-5"


def test_throttle_on_a_readonly_handle(cache):
    with shmkv.Cache(cache.name, readonly=True) as ro:
        with pytest.raises(shmkv.ReadOnly):
            ro.throttle("k", 1, 1000, 1)


def test_processes_sharing_a_limiter_admit_exactly_the_burst(cache):
    # 4 processes x 40 attempts on one limiter of 1 per minute, bursts of
    # 50: exactly 50 admitted, however the attempts interleave.
    ctx = multiprocessing.get_context("fork")
    procs = 4
    start, results = ctx.Barrier(procs), ctx.Queue()
    children = [ctx.Process(target=mp_workers.throttle_child,
                            args=(cache.name, cache, start, 40, results))
                for _ in range(procs)]
    for c in children:
        c.start()
    join_all(children)
    assert sum(results.get(timeout=JOIN_TIMEOUT) for _ in range(procs)) == 50
    assert not cache.throttle("shared", 1, 60_000, 50).allowed


# get_stale()

def test_get_stale_on_a_fresh_entry_and_a_miss(cache):
    cache.set("s", "text", ttl=60)
    cache.set("b", b"bytes")
    assert cache.get_stale("s") == ("text", 0.0)
    assert cache.get_stale("b") == (b"bytes", 0.0)
    assert cache.get_stale("missing") == (None, None)
    assert cache.get_stale("missing", "fallback") == ("fallback", None)
    with pytest.raises(shmkv.InvalidArgument):
        cache.get_stale("")


def test_get_stale_returns_an_expired_value_until_a_plain_read(cache):
    cache.set("page", "old", ttl=0.05)
    cache.set(b"big", b"x" * 100_000, ttl=0.05)  # beyond the read buffer
    expire(cache, "page")
    value, expired = cache.get_stale("page")
    assert value == "old" and expired >= 0.001
    # get_stale does not remove it: it is there again, and longer expired.
    value, expired_later = cache.get_stale("page")
    assert value == "old" and expired_later >= expired
    expire(cache, b"big")
    assert cache.get_stale(b"big")[0] == b"x" * 100_000
    # A plain read misses, and removes it.
    assert cache.get("page") is None
    assert cache.get_stale("page") == (None, None)


# get_or_compute()

def test_computes_once_and_stores_with_the_ttl(cache):
    seen = []

    def compute():
        # While it computes, the lease is held, as Cache::GetOrCompute holds it.
        seen.append(cache.get(LEASE + "user:1"))
        return "row 1"

    assert cache.get_or_compute("user:1", compute, ttl=30) == "row 1"
    assert seen == [b"pid %d" % os.getpid()]
    again = Calls("row 2")
    assert cache.get_or_compute("user:1", again, ttl=30) == "row 1"
    assert again.count == 0
    assert cache.get("user:1") == "row 1"
    assert 25 < cache.ttl("user:1") <= 30
    assert LEASE + "user:1" not in cache  # released


def test_values_keep_their_type_and_no_ttl_means_none(cache):
    assert cache.get_or_compute("s", lambda: "text") == "text"
    assert cache.get_or_compute(b"b", lambda: bytearray(b"\x00raw")) == b"\x00raw"
    assert cache.get_or_compute("s", lambda: b"other") == "text"
    assert cache.get("s") == "text" and cache.get(b"b") == b"\x00raw"
    assert cache.ttl("s") is None
    assert set(cache) == {"s", b"b"}  # leases gone; key types as given


def test_a_bytes_key_takes_a_bytes_lease(cache):
    seen = []

    def compute():
        seen.extend(cache.scan(LEASE))
        return b"v"

    assert cache.get_or_compute(b"\xffkey", compute) == b"v"
    assert seen == [b"\0lease:\xffkey"]


def test_computes_again_once_the_value_expired(cache):
    calls = Calls("v1", "v2")
    assert cache.get_or_compute("k", calls, ttl=0.05) == "v1"
    expire(cache, "k")
    assert cache.get_or_compute("k", calls, ttl=60) == "v2"
    assert calls.count == 2
    assert cache.get("k") == "v2"


def test_a_failed_computation_propagates_stores_nothing_and_releases_the_lease(cache):
    def fail():
        raise RuntimeError("db down")

    with pytest.raises(RuntimeError, match="db down"):
        cache.get_or_compute("k", fail, ttl=60)
    assert "k" not in cache and LEASE + "k" not in cache
    with pytest.raises(TypeError):
        cache.get_or_compute("k", lambda: 42)  # not str or bytes
    assert "k" not in cache and LEASE + "k" not in cache
    assert cache.get_or_compute("k", lambda: "fine") == "fine"


def test_while_a_lease_is_held_it_serves_stale_or_waits_then_busy(cache):
    cache.set("report", "v1", ttl=0.05)
    expire(cache, "report")
    assert cache.add(LEASE + "report", b"pid 1", ttl=60)  # someone else computes
    calls = Calls("v2")
    assert cache.get_or_compute("report", calls, serve_stale=True) == "v1"
    began = time.monotonic()
    with pytest.raises(shmkv.Busy) as e:
        cache.get_or_compute("report", calls, wait=0.05)
    assert time.monotonic() - began >= 0.05
    assert e.value.code == shmkv.EBUSY
    # Nothing stale to serve: it waits too.
    assert cache.add(LEASE + "other", b"pid 1", ttl=60)
    with pytest.raises(shmkv.Busy):
        cache.get_or_compute("other", calls, serve_stale=True, wait=0)
    assert calls.count == 0
    assert cache.get(LEASE + "report") == b"pid 1"  # not ours: left alone


def test_a_lapsed_lease_is_taken_over(cache):
    assert cache.add(LEASE + "k", b"pid 1", ttl=0.1)  # its holder died
    calls = Calls("v")
    assert cache.get_or_compute("k", calls, wait=DEADLINE) == "v"
    assert calls.count == 1 and LEASE + "k" not in cache


def test_serves_stale_while_another_thread_computes(cache):
    # The computing caller's second read must not remove the expired value
    # that the others serve meanwhile.
    cache.set("page", "old", ttl=0.05)
    expire(cache, "page")
    started, finish = threading.Event(), threading.Event()
    got = []

    def slow():
        started.set()
        assert finish.wait(DEADLINE)
        return "new"

    worker = threading.Thread(target=lambda: got.append(
        cache.get_or_compute("page", slow, ttl=60)))
    worker.start()
    try:
        assert started.wait(DEADLINE)
        never = Calls()
        assert cache.get_or_compute("page", never, serve_stale=True) == "old"
        assert never.count == 0
    finally:
        finish.set()
        worker.join(DEADLINE)
    assert got == ["new"] and cache.get("page") == "new"


def test_get_or_compute_bad_arguments(segment):
    with shmkv.Cache(segment, memory="4M", max_key_len=20) as kv:
        calls = Calls("v", "v")
        with pytest.raises(shmkv.InvalidArgument) as e:
            kv.get_or_compute("k", calls, lease=0)
        assert e.value.code == shmkv.EINVAL
        with pytest.raises(ValueError):
            kv.get_or_compute("k", calls, wait=-1)
        with pytest.raises(ValueError):
            kv.get_or_compute("k", calls, ttl=-1)
        with pytest.raises(TypeError):
            kv.get_or_compute("k", calls, lease=None)
        with pytest.raises(TypeError):
            kv.get_or_compute("k", "not callable")
        with pytest.raises(TypeError):
            kv.get_or_compute(42, calls)
        with pytest.raises(shmkv.InvalidArgument):
            kv.get_or_compute("", calls)
        # Room for the lease key: at most max_key_len - 7 bytes.
        with pytest.raises(shmkv.KeyTooBig):
            kv.get_or_compute("k" * 14, calls)
        assert calls.count == 0
        assert kv.get_or_compute("k" * 13, calls) == "v"
        assert calls.count == 1 and len(kv) == 1


@pytest.mark.parametrize("method", START_METHODS)
def test_eight_processes_missing_at_once_compute_once(cache, method):
    ctx = multiprocessing.get_context(method)
    procs = 8
    start, results = ctx.Barrier(procs), ctx.Queue()
    entered, computed = ctx.Value("i", 0), ctx.Value("i", 0)
    inherited = cache if method == "fork" else None
    children = [ctx.Process(target=mp_workers.compute_once_child,
                            args=(cache.name, inherited, "report", start, entered, computed,
                                  procs, results))
                for _ in range(procs)]
    for c in children:
        c.start()
    join_all(children)
    values = [results.get(timeout=JOIN_TIMEOUT) for _ in range(procs)]
    assert computed.value == 1
    assert entered.value == procs
    assert len(set(values)) == 1 and values[0].startswith("computed by pid ")
    assert cache.get("report") == values[0]
    assert 50 < cache.ttl("report") <= 60
    assert list(cache) == ["report"]  # the lease is gone
