"""shmkv.Cache method by method: type preservation, binary data, TTLs, cas
tokens, scans, batch gets, stats, errors and handle states."""

import datetime
import time

import pytest

import shmkv
from conftest import unique_name

DEADLINE = 10.0  # seconds; generous, only a failing test waits this long


def wait_until(predicate, deadline=DEADLINE):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


# Reads and writes.

def test_get_returns_default_when_missing(cache):
    assert cache.get("nope") is None
    assert cache.get("nope", "fallback") == "fallback"


def test_str_comes_back_as_str_and_bytes_as_bytes(cache):
    cache.set("s", "text \u00e9\u4e2d")
    cache.set("b", b"raw")
    cache.set("ba", bytearray(b"array"))
    cache.set("mv", memoryview(b"view"))
    assert cache.get("s") == "text \u00e9\u4e2d" and type(cache.get("s")) is str
    assert cache.get("b") == b"raw" and type(cache.get("b")) is bytes
    assert cache.get("ba") == b"array" and cache.get("mv") == b"view"
    cache.set("s", b"now bytes")
    assert cache.get("s") == b"now bytes"


def test_empty_value_is_legal(cache):
    cache.set("e", b"")
    cache.set("es", "")
    assert cache.get("e") == b"" and cache.get("es") == ""
    assert "e" in cache and "es" in cache


def test_binary_keys_and_values_with_nul(cache):
    key, value = b"\x00k\x00\xff", bytes(range(256)) * 3
    cache[key] = value
    assert cache[key] == value
    assert list(cache.scan()) == [key]
    assert cache.delete(key)
    assert key not in cache


def test_str_and_bytes_keys_name_the_same_entry(cache):
    cache["k\u00e9"] = "v"
    assert cache["k\u00e9".encode()] == "v"


def test_key_types_round_trip_through_iteration(cache):
    cache["text"] = "1"
    cache[b"bytes"] = "2"
    cache[b"\xff\xfe"] = "3"
    assert set(cache) == {"text", b"bytes", b"\xff\xfe"}
    assert dict(cache.items()) == {"text": "1", b"bytes": "2", b"\xff\xfe": "3"}


def test_a_key_created_by_incr_iterates_as_str(cache):
    cache.incr(b"hits")
    assert list(cache) == ["hits"]


def test_large_value_beyond_the_get_buffer(segment):
    with shmkv.Cache(segment, memory="16M", max_value_len=1 << 20) as kv:
        big = b"x" * (700 << 10)
        kv.set("big", big)
        assert kv.get("big") == big
        assert kv.get_many(["big"]) == {"big": big}
        kv.set("big", "y" * 100_000)
        assert kv.get_many(["big"]) == {"big": "y" * 100_000}
        assert kv.get("big") == "y" * 100_000


def test_rejects_other_types(cache):
    with pytest.raises(TypeError):
        cache.set("k", 42)
    with pytest.raises(TypeError):
        cache.set(42, "v")
    with pytest.raises(TypeError):
        cache.get(None)
    assert 42 not in cache


def test_add_and_replace(cache):
    assert cache.replace("k", "v") is False
    assert "k" not in cache
    assert cache.add("k", "v1") is True
    assert cache.add("k", "v2") is False
    assert cache["k"] == "v1"
    assert cache.replace("k", b"v3") is True
    assert cache["k"] == b"v3"


def test_delete_returns_whether_it_removed(cache):
    cache["k"] = "v"
    assert cache.delete("k") is True
    assert cache.delete("k") is False
    assert cache.get("k") is None


def test_incr(cache):
    assert cache.incr("n") == 1
    assert cache.incr("n") == 2
    assert cache.incr("n", 40) == 42
    assert cache.incr("n", -50) == -8
    assert cache.decr("n", 2) == -10
    assert cache.get("n") == b"-10"
    assert cache.incr("m", 5, initial=100) == 105
    cache["s"] = "7"
    assert cache.incr("s") == 8
    assert cache["s"] == "8"  # the str flag survives incr


def test_incr_errors(cache):
    cache["word"] = "abc"
    with pytest.raises(shmkv.NotNumber) as e:
        cache.incr("word")
    assert isinstance(e.value, ValueError) and e.value.code == shmkv.ENOTNUM
    cache["big"] = str(2**63 - 1)
    with pytest.raises(shmkv.Overflow) as e:
        cache.incr("big")
    assert e.value.code == shmkv.EOVERFLOW and isinstance(e.value, OverflowError)
    assert cache["big"] == str(2**63 - 1)
    with pytest.raises(OverflowError):
        cache.incr("n", 2**63)
    with pytest.raises(TypeError):
        cache.incr("n", 1.5)


# TTLs.

def test_ttl_reports_seconds_or_none(cache):
    cache.set("forever", "v")
    assert cache.ttl("forever") is None
    cache.set("hour", "v", ttl=3600)
    assert 3590 < cache.ttl("hour") <= 3600
    cache.set("td", "v", ttl=datetime.timedelta(minutes=2))
    assert 110 < cache.ttl("td") <= 120
    cache.set("f", "v", ttl=90.5)
    assert 80 < cache.ttl("f") <= 90.5
    cache.set("zero", "v", ttl=0)
    assert cache.ttl("zero") is None
    with pytest.raises(shmkv.NotFound) as e:
        cache.ttl("missing")
    assert isinstance(e.value, KeyError) and e.value.code == shmkv.ENOTFOUND


def test_entries_expire(cache):
    cache.set("short", "v", ttl=0.05)
    cache.set("long", "v", ttl=60)
    assert wait_until(lambda: cache.get("short") is None)
    assert "short" not in cache
    assert list(cache) == ["long"] and len(cache) == 1
    assert cache.touch("short", 10) is False


def test_sub_millisecond_ttl_still_expires(cache):
    cache.set("tiny", "v", ttl=0.0001)  # rounded up to 1 ms, not "no expiry"
    assert wait_until(lambda: "tiny" not in cache)


def test_touch_sets_and_removes_expiry(cache):
    cache.set("k", "v")
    assert cache.touch("k", 100) is True
    assert 90 < cache.ttl("k") <= 100
    assert cache.touch("k", None) is True
    assert cache.ttl("k") is None
    assert cache.touch("k", 0.05) is True
    assert wait_until(lambda: cache.get("k") is None)


def test_incr_ttl_applies_to_a_new_key_only(cache):
    assert cache.incr("c", ttl=3600) == 1
    assert 3590 < cache.ttl("c") <= 3600
    cache.incr("c", ttl=5)
    assert cache.ttl("c") > 3590


def test_bad_ttls(cache):
    with pytest.raises(ValueError):
        cache.set("k", "v", ttl=-1)
    with pytest.raises(ValueError):
        cache.set("k", "v", ttl=float("nan"))
    with pytest.raises(ValueError):
        cache.set("k", "v", ttl=10**12)
    with pytest.raises(TypeError):
        cache.set("k", "v", ttl="10")


# CAS.

def test_gets_and_cas(cache):
    assert cache.gets("k") == (None, None)
    cache["k"] = "v1"
    value, token = cache.gets("k")
    assert value == "v1" and isinstance(token, int) and token > 0
    assert cache.cas("k", "v2", token) is True
    assert cache["k"] == "v2"
    assert cache.cas("k", "v3", token) is False  # the token is stale now
    assert cache["k"] == "v2"
    _, token2 = cache.gets("k")
    assert token2 != token
    cache.touch("k", 100)
    assert cache.cas("k", "v4", token2) is False  # touch changes the token too
    cache.delete("k")
    assert cache.cas("k", "v5", token2) is False
    assert "k" not in cache
    with pytest.raises(ValueError):
        cache.cas("k", "v", 0)


def test_delete_with_cas_token(cache):
    cache["k"] = "v"
    _, token = cache.gets("k")
    cache["k"] = "changed"
    assert cache.delete("k", cas_token=token) is False
    _, token = cache.gets("k")
    assert cache.delete("k", cas_token=token) is True


# Scans and batch gets.

def test_scan_with_prefix(cache):
    for i in range(50):
        cache["user:%d" % i] = str(i)
        cache["session:%d" % i] = str(i)
    assert sorted(cache.scan("user:")) == sorted("user:%d" % i for i in range(50))
    assert sorted(cache.scan(b"session:1")) == sorted(
        ["session:1"] + ["session:%d" % i for i in range(10, 20)])
    assert list(cache.scan("nothing")) == []
    assert dict(cache.scan_items("user:4")) == {"user:4": "4", **{
        "user:%d" % i: str(i) for i in range(40, 50)}}
    assert len(list(cache.scan())) == len(cache) == 100


def test_scan_allows_deleting_the_keys_it_yields(cache):
    for i in range(300):
        cache["k%d" % i] = "v"
    for key in cache.scan():
        assert cache.delete(key)
    assert len(cache) == 0


def test_get_many(cache):
    cache["a"] = "1"
    cache[b"b\x00"] = b"2"
    cache["big"] = b"z" * 10_000  # beyond the per-key slot: read again
    got = cache.get_many(["a", b"b\x00", "missing", "big"])
    assert got == {"a": "1", b"b\x00": b"2", "big": b"z" * 10_000}  # as stored
    assert cache.mget(["a"], encoding="utf-8") == {"a": "1"}
    assert cache.get_many([]) == {}
    with pytest.raises(shmkv.InvalidArgument):
        cache.get_many(["a", ""])


def test_stats(cache):
    cache["a"] = "1"
    cache.get("a")
    cache.get("missing")
    st = cache.stats()
    assert st["items"] == 1
    assert st["hits"] >= 1 and st["misses"] >= 1 and st["sets"] >= 1
    assert st["memory_bytes"] == 4 << 20
    assert set(st) >= {"memory_used", "capacity_items", "evictions", "attached_processes"}


def test_clear(cache):
    for i in range(20):
        cache[str(i)] = "v"
    cache.clear()
    assert len(cache) == 0 and list(cache) == []


def test_mapping_extras(cache):
    assert cache.setdefault("k", "first") == "first"
    assert cache.setdefault("k", "second") == "first"
    assert cache.pop("k") == "first"
    assert cache.pop("k", None) is None
    with pytest.raises(KeyError):
        cache.pop("k")
    with pytest.raises(KeyError):
        del cache["k"]
    with pytest.raises(KeyError):
        cache["k"]
    cache.update({"x": "1", "y": b"2"})
    assert cache == {"x": "1", "y": b"2"}
    assert sorted(cache.values(), key=repr) == ["1", b"2"]
    key, value = cache.popitem()
    assert key not in cache and len(cache) == 1


# Errors.

def test_errors_carry_code_and_message_and_the_segment_stays_usable(segment):
    with shmkv.Cache(segment, memory="4M", max_key_len=16, max_value_len=1024) as kv:
        with pytest.raises(shmkv.KeyTooBig) as e:
            kv.set("k" * 17, "v")
        assert e.value.code == shmkv.EKEYTOOBIG and e.value.message
        assert isinstance(e.value, shmkv.Error) and isinstance(e.value, ValueError)
        assert e.value.message in str(e.value)
        with pytest.raises(shmkv.ValueTooBig) as e:
            kv.set("k", b"v" * 1025)
        assert e.value.code == shmkv.EVALTOOBIG and "1024" in e.value.message
        with pytest.raises(shmkv.InvalidArgument) as e:
            kv.set("", "v")
        assert e.value.code == shmkv.EINVAL and e.value.message
        with pytest.raises(shmkv.InvalidArgument):
            kv.get("")
        kv.set("k", "still works")
        assert kv["k"] == "still works" and len(kv) == 1


def test_no_space_without_eviction(segment):
    with shmkv.Cache(segment, memory="1M", evict="none", max_value_len=32 << 10) as kv:
        with pytest.raises(shmkv.NoSpace) as e:
            for i in range(10_000):
                kv.set("k%d" % i, b"x" * (30 << 10))
        assert e.value.code == shmkv.ENOSPC
        assert kv.delete("k0")  # frees a block of the size that was refused
        kv.set("again", b"y" * (30 << 10))
        assert kv["again"] == b"y" * (30 << 10)


def test_open_errors(segment):
    with pytest.raises(shmkv.NoSegment) as e:
        shmkv.Cache(segment, create=False)
    assert e.value.code == shmkv.ENOSEG and segment in e.value.message
    with pytest.raises(shmkv.NoSegment):
        shmkv.Cache(segment, readonly=True)
    with pytest.raises(shmkv.InvalidArgument):
        shmkv.Cache("bad name!", memory="1M")
    with pytest.raises(shmkv.InvalidArgument) as e:
        shmkv.Cache(segment, memory="512K")
    assert "1 MiB" in e.value.message
    with pytest.raises(ValueError):
        shmkv.Cache(segment, memory="lots")
    with pytest.raises(ValueError):
        shmkv.Cache(segment, evict="sometimes")
    with pytest.raises(ValueError):
        shmkv.Cache(segment, max_key_len=-1)
    with pytest.raises(TypeError):
        shmkv.Cache(segment, memory=1.5)
    shmkv.Cache(segment, memory="1M").close()
    with pytest.raises(shmkv.Exists) as e:
        shmkv.Cache(segment, exclusive=True)
    assert e.value.code == shmkv.EEXIST


def test_memory_sizes(segment):
    with shmkv.Cache(segment, memory="2m") as kv:
        assert kv.stats()["memory_bytes"] == 2 << 20
    shmkv.unlink(segment)
    with shmkv.Cache(segment, memory=3 << 20) as kv:
        assert kv.stats()["memory_bytes"] == 3 << 20
    shmkv.unlink(segment)
    with shmkv.Cache(segment, memory="2MiB") as kv:
        assert kv.stats()["memory_bytes"] == 2 << 20


def test_an_existing_segment_keeps_its_geometry(segment):
    with shmkv.Cache(segment, memory="2M") as first:
        first["k"] = "v"
        with shmkv.Cache(segment, memory="8M") as second:
            assert second.stats()["memory_bytes"] == 2 << 20
            assert second["k"] == "v"


def test_unlink(segment):
    assert shmkv.unlink(segment) is False
    shmkv.Cache(segment, memory="1M").close()
    assert shmkv.unlink(segment) is True
    assert shmkv.unlink(segment) is False


# Handles.

def test_readonly_handle_reads_and_refuses_writes(cache):
    cache["k"] = "v"
    with shmkv.Cache(cache.name, readonly=True) as ro:
        assert ro["k"] == "v" and list(ro) == ["k"] and len(ro) == 1
        assert ro.ttl("k") is None
        for write in (lambda: ro.set("k", "w"), lambda: ro.add("n", "w"),
                      lambda: ro.delete("k"), lambda: ro.incr("c"),
                      lambda: ro.touch("k", 10), ro.clear,
                      lambda: ro.__setitem__("k", "w")):
            with pytest.raises(shmkv.ReadOnly) as e:
                write()
            assert e.value.code == shmkv.EREADONLY and e.value.message
        assert ro["k"] == "v"
        assert "read-only" in repr(ro)
    cache["k"] = "writable handle still writes"


def test_context_manager_closes(segment):
    with shmkv.Cache(segment, memory="1M") as kv:
        kv["k"] = "v"
        assert not kv.closed
    assert kv.closed and "closed" in repr(kv)
    with pytest.raises(ValueError):
        kv.get("k")
    with pytest.raises(ValueError):
        kv["k"] = "v"
    kv.close()  # idempotent
    with shmkv.Cache(segment, create=False) as again:
        assert again["k"] == "v"


def test_del_closes_an_open_handle(segment):
    kv = shmkv.Cache(segment, memory="1M")
    kv["k"] = "v"
    before = kv.stats()["attached_processes"]
    del kv  # __del__ closes; the segment stays
    with shmkv.Cache(segment, create=False) as again:
        assert again["k"] == "v"
        assert again.stats()["attached_processes"] <= before


def test_threads_share_a_handle(cache):
    import threading
    n, threads = 2000, 4

    def work():
        for _ in range(n):
            cache.incr("t")
            cache.get("t")

    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert cache.incr("t", 0) == n * threads


def test_library_version():
    assert shmkv.library_version().count(".") == 2


def test_unique_names_do_not_repeat():
    assert unique_name() != unique_name()
