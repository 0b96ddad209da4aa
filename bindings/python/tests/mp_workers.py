"""Functions that the tests (test_processes.py, test_compute.py) run in child
processes (a module of their own, so that a "spawn" child imports only this
and shmkv)."""

import os
import time

import shmkv


def echo_child(name, inherited, requests, replies):
    """Answers the parent's requests through the segment: for each key the
    parent names, reads it and writes "child:<key>" = "seen:<value>"."""
    kv = inherited if inherited is not None else shmkv.Cache(name, create=False)
    while True:
        key = requests.get()
        if key is None:
            break
        kv["child:" + key] = "seen:" + repr(kv.get(key))
        replies.put(key)
    if inherited is None:
        kv.close()


def incr_child(name, inherited, start, n):
    kv = inherited if inherited is not None else shmkv.Cache(name, create=False)
    start.wait(timeout=120)
    for _ in range(n):
        kv.incr("counter")
    kv.incr("finished")
    if inherited is None:
        kv.close()


def compute_once_child(name, inherited, key, start, entered, computed, procs, results):
    """Calls get_or_compute(key) once all `procs` children are ready, and
    puts what it returned in `results`. The computation counts its runs in
    `computed`, then waits (polling, bounded) until every child has called
    get_or_compute, so that they all miss together, and takes a while, like
    a slow query."""
    kv = inherited if inherited is not None else shmkv.Cache(name, create=False)

    def slow_computation():
        with computed.get_lock():
            computed.value += 1
        deadline = time.monotonic() + 60
        while entered.value < procs and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(0.1)  # the slow part
        return "computed by pid %d" % os.getpid()

    start.wait(timeout=120)
    with entered.get_lock():
        entered.value += 1
    results.put(kv.get_or_compute(key, slow_computation, ttl=60, wait=60))
    if inherited is None:
        kv.close()


def throttle_child(name, inherited, start, attempts, results):
    """Calls throttle() `attempts` times on one shared limiter and puts how
    many were admitted in `results`."""
    kv = inherited if inherited is not None else shmkv.Cache(name, create=False)
    start.wait(timeout=120)
    admitted = sum(kv.throttle("shared", 1, 60_000, 50).allowed for _ in range(attempts))
    results.put(admitted)
    if inherited is None:
        kv.close()
