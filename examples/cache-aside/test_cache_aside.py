"""The cache-aside example (cache_aside.py) against a real SQLite database
of 200 000 orders: 8 processes that miss the report at once make the
database run the query exactly once (each process counts the SELECTs of
its own connection with sqlite3's trace callback; the counts are summed),
and every one of them gets the query's exact result; after the TTL the next
call queries again, once, and so do 8 processes missing together again.

    SHMKV_LIB=build/lib/libshmkv.so PYTHONPATH=bindings/python \\
        /usr/bin/python3 -m pytest -q examples/cache-aside
"""

import json
import os
import sys
import time

import pytest

import shmkv

EXAMPLE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, EXAMPLE)  # a "spawn" child gets the same sys.path

import cache_aside  # noqa: E402 (after the path)

PROCESSES = 8
DEADLINE = 30.0  # seconds; generous, only a failing test waits this long


def until(predicate, deadline=DEADLINE):
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            pytest.fail("condition not met within %g s" % deadline)
        time.sleep(0.005)


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("cache-aside") / "orders.sqlite3")
    assert cache_aside.build_database(path, orders=200_000)
    assert not cache_aside.build_database(path)  # a second call reuses it
    return path


@pytest.fixture(scope="module")
def expected(database):
    """The report straight from the database."""
    db = cache_aside.connect(database)
    try:
        rows = cache_aside.run_report_query(db)
    finally:
        db.close()
    assert len(rows) == 5 * 24  # regions x months
    assert sum(r["orders"] for r in rows) > 0.7 * 200_000  # 80 % are paid
    return rows


@pytest.fixture
def cache():
    name = "pytest-cache-aside-%d-%s" % (os.getpid(), os.urandom(3).hex())
    try:
        with shmkv.Cache(name, memory="16M", exclusive=True) as c:
            yield c
    finally:
        shmkv.unlink(name)


def stored_report(cache):
    return json.loads(cache.get(cache_aside.REPORT_KEY))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_stampede_queries_the_database_once(database, expected, cache, method):
    got = cache_aside.stampede(cache.name, database, PROCESSES, ttl=60.0, method=method)
    assert len({r["pid"] for r in got}) == PROCESSES
    assert sum(r["queries"] for r in got) == 1
    assert all(r["result"] == expected for r in got)
    assert stored_report(cache) == expected
    # They really missed together: the query was still running when others
    # had called (the query takes a tenth of a second; the calls start at
    # one barrier).
    [(start, end)] = [r["query_window"] for r in got if r["query_window"]]
    assert sum(1 for r in got if r["began"] < end) >= 2


def test_after_the_ttl_the_next_call_queries_again_once(database, expected, cache):
    reports = cache_aside.Reports(database, cache, ttl=0.5)
    try:
        assert reports.revenue_by_region_month() == expected
        assert reports.queries == 1
        assert reports.revenue_by_region_month() == expected  # cached
        assert reports.queries == 1
        until(lambda: (cache.get_stale(cache_aside.REPORT_KEY)[1] or 0) > 0)
        assert reports.revenue_by_region_month() == expected
        assert reports.queries == 2
        assert reports.revenue_by_region_month() == expected
        assert reports.queries == 2
    finally:
        reports.close()
    # Expired again: 8 processes missing together query once again.
    until(lambda: (cache.get_stale(cache_aside.REPORT_KEY)[1] or 0) > 0)
    got = cache_aside.stampede(cache.name, database, PROCESSES, ttl=60.0)
    assert sum(r["queries"] for r in got) == 1
    assert all(r["result"] == expected for r in got)


def test_serve_stale_returns_the_expired_report_without_a_query(database, expected, cache):
    reports = cache_aside.Reports(database, cache, ttl=0.05)
    try:
        assert reports.revenue_by_region_month() == expected
        until(lambda: (cache.get_stale(cache_aside.REPORT_KEY)[1] or 0) > 0)
        # Someone else is recomputing it (holds the lease).
        assert cache.add("\0lease:" + cache_aside.REPORT_KEY, b"pid 1", ttl=60)
        assert reports.revenue_by_region_month(serve_stale=True) == expected
        assert reports.queries == 1
        with pytest.raises(shmkv.Busy):
            cache.get_or_compute(cache_aside.REPORT_KEY, lambda: "never", wait=0.01)
    finally:
        reports.close()
