"""Two and more Python processes on one segment, with multiprocessing's
"spawn" (the child opens the segment by name) and "fork" (the child keeps
using the handle it inherited): each sees the other's writes while both
run, and 4 processes incrementing one counter concurrently reach the exact
total."""

import multiprocessing

import pytest

import mp_workers
import shmkv

START_METHODS = ["spawn", "fork"]
JOIN_TIMEOUT = 120


def _inherit(method, kv):
    # A "fork" child uses the parent's handle; a "spawn" child opens its own.
    return kv if method == "fork" else None


@pytest.mark.parametrize("method", START_METHODS)
def test_two_processes_see_each_others_writes(cache, method):
    ctx = multiprocessing.get_context(method)
    requests, replies = ctx.Queue(), ctx.Queue()
    child = ctx.Process(target=mp_workers.echo_child,
                        args=(cache.name, _inherit(method, cache), requests, replies))
    cache["before"] = "written before the child started"
    child.start()
    try:
        for i, key in enumerate(["before", "during-1", "during-2"]):
            if key != "before":
                cache[key] = b"bytes \x00 %d" % i
            requests.put(key)
            assert replies.get(timeout=JOIN_TIMEOUT) == key
            # The child is alive and waiting: its write is already visible.
            assert cache["child:" + key] == "seen:" + repr(cache[key])
        requests.put(None)
        child.join(JOIN_TIMEOUT)
        assert child.exitcode == 0
    finally:
        if child.is_alive():
            child.kill()
            child.join()
    assert sorted(k for k in cache if k.startswith("child:")) == [
        "child:before", "child:during-1", "child:during-2"]


@pytest.mark.parametrize("method", START_METHODS)
def test_concurrent_incr_from_four_processes_is_exact(cache, method):
    ctx = multiprocessing.get_context(method)
    procs, n = 4, 20000
    start = ctx.Barrier(procs)  # every child is ready before any increments
    children = [ctx.Process(target=mp_workers.incr_child,
                            args=(cache.name, _inherit(method, cache), start, n))
                for _ in range(procs)]
    for c in children:
        c.start()
    try:
        for c in children:
            c.join(JOIN_TIMEOUT)
            assert c.exitcode == 0
    finally:
        for c in children:
            if c.is_alive():
                c.kill()
                c.join()
    assert cache.get("counter") == str(procs * n).encode()
    assert cache.incr("counter", 0) == procs * n
    assert cache.incr("finished", 0) == procs
