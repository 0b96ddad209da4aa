"""Functions that tests/test_processes.py runs in child processes (a module
of their own, so that a "spawn" child imports only this and shmkv)."""

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
