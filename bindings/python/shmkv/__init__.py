"""shmkv from Python: a ctypes binding over the C API of libshmkv.so
(lib/include/shmkv/shmkv.h). Pure Python, no build step, no dependencies.

    import shmkv

    with shmkv.Cache("sessions", memory="64M") as kv:  # create, or open as it is
        kv.set("user:42", "alice", ttl=30)             # seconds (float) or a timedelta
        kv.get("user:42")                              # 'alice' (None when missing)
        kv["greeting"] = b"\\x00hi"                     # a MutableMapping too
        kv.incr("hits")                                # 1, then 2, ... across processes
        value, token = kv.gets("user:42")
        kv.cas("user:42", "bob", token)                # False if someone wrote first

Every process that opens the same name sees the same data; the segment
stays until shmkv.unlink(name).

Keys and values are str or bytes (bytearray and memoryview are read as
bytes). A str is stored as its UTF-8 bytes, so "a" and b"a" name the same
entry and a C or PHP process sees the same bytes. So that types survive the
round trip, the binding keeps two bits of each entry's 32-bit user_flags
for itself:

  VALUE_STR (1 << 31)  the value was given as str: get() decodes it as UTF-8
                       (a value without it comes back as bytes);
  KEY_BYTES (1 << 30)  the key was given as bytes: scan()/iteration return it
                       as bytes. A key without it (written from Python as a
                       str, or by another language, or created by incr())
                       comes back as str when it is valid UTF-8, else bytes.

get_many() reads the flags too (shmkv_mget fills each key's item info), so
its values come back as stored as well.

TTLs: `ttl` is seconds as an int or float, or a datetime.timedelta; None or
0 means no expiry; a positive TTL under a millisecond is rounded up to 1 ms
(the library counts milliseconds). ttl() returns the remaining seconds as a
float, None for an entry without expiry.

Errors: every failure of the library raises a subclass of shmkv.Error with
.code (the library's negative SHMKV_E* value, or a positive errno) and
.message (shmkv_last_error(): what exactly was wrong). Misses are not
errors: get() returns its default, add()/replace()/delete()/touch()/cas()
return False; mapping access (cache[key], del cache[key]) raises KeyError.
NotFound is a KeyError, and InvalidArgument, KeyTooBig, ValueTooBig and
NotNumber are ValueErrors. A failed call leaves the segment as it was.

Cache is a collections.abc.MutableMapping over the whole segment (it passes
CPython's test.mapping_tests.BasicTestMappingProtocol), but it is not a
dict: keys and values are str/bytes only, len() and iteration scan the
index (cost proportional to the segment's capacity), iteration is not a
snapshot (a key written concurrently may be missed or, while entries move,
seen twice), and entries may expire or be evicted at any time.

Cache-aside with stampede protection, get_or_compute(key, fn, ttl=...):
returns the value of key; on a miss exactly one caller across all processes
runs fn() (holding a lease: an ADD of the key "\\0lease:" + key with a TTL
of `lease` seconds) and stores its result with `ttl`, while the others poll
with backoff (1 ms doubling to 50 ms) until the value appears, or the lease
lapses and one of them takes over, for up to `wait` seconds, then raise Busy;
with serve_stale=True they return the expired value at once when one is
still in memory. This is the protocol of the C++ Cache::GetOrCompute (same
lease key, same lease value "pid N", released by a delete with the lease's
cas token), so Python and C++ processes share one computation. An exception
from fn propagates, nothing is stored, and the lease is released.

get_stale(key) -> (value, expired): also returns an entry whose TTL has
passed and that is still in memory; expired is how many seconds ago it
expired (a float, 0.0 for an entry that has not expired), and a miss gives
(default, None). Any plain read or write of the key (get, `in`, ttl(), ...)
removes an expired entry, as does the janitor; get_stale itself never does.

throttle(key, rate, period_ms, burst) -> Throttle(allowed, retry_after_ms,
remaining): a GCRA rate limiter (shmkv_throttle), one atomic step per call:
bursts of up to `burst` requests, then `rate` per `period_ms` milliseconds,
across every process of the segment.

Processes and threads: a Cache may be shared by threads (the library
releases the GIL in every call). After os.fork() (multiprocessing's
"fork") the child may keep using an inherited Cache; with "spawn" the
child opens the segment by name. Do not close() a Cache that another
thread is still using.

The library is found through $SHMKV_LIB, else libshmkv.so in this
package's directory, else ctypes.util.find_library("shmkv"), else
libshmkv.so.1 or libshmkv.so.0 on the loader's search path.
"""

import collections.abc
import ctypes
import ctypes.util
import datetime
import math
import os
import re
import threading
import time
import typing

__all__ = [
    "Cache", "Throttle", "unlink", "library_version", "Error", "NotFound", "Exists", "CasMismatch",
    "BufferTooSmall", "InvalidArgument", "KeyTooBig", "ValueTooBig", "NoSpace", "NotNumber",
    "Overflow", "NoSegment", "PermissionDenied", "BadSegment", "ReadOnly", "Busy",
    "VALUE_STR", "KEY_BYTES", "ENOTFOUND", "EEXIST", "ECAS", "ETOOSMALL", "EINVAL", "EKEYTOOBIG",
    "EVALTOOBIG", "ENOSPC", "ENOTNUM", "EOVERFLOW", "ENOSEG", "EACCES", "EBADSEG", "EREADONLY",
    "EBUSY",
]

__version__ = "1.0.0"

# The user_flags bits this binding keeps (see the module docstring).
VALUE_STR = 1 << 31
KEY_BYTES = 1 << 30

# shmkv.h constants.
_OPEN_CREATE = 1
_OPEN_EXCL = 2
_OPEN_READONLY = 4
_EVICT = {"allkeys": 0, "volatile": 1, "none": 2}
_SET, _ADD, _REPLACE = 0, 1, 2
_WRITE_NOEVICT = 2

# Error codes (Error.code); a positive code is an errno.
ENOTFOUND = -1001
EEXIST = -1002
ECAS = -1003
ETOOSMALL = -1004
EINVAL = -1005
EKEYTOOBIG = -1006
EVALTOOBIG = -1007
ENOSPC = -1008
ENOTNUM = -1009
EOVERFLOW = -1010
ENOSEG = -1011
EACCES = -1012
EBADSEG = -1013
EREADONLY = -1014
EBUSY = -1015

# The largest TTL the library takes (2^40 ms, about 35 years).
_MAX_TTL_MS = 1 << 40
# Index slots examined per shmkv_scan call: bounds the time between yields.
_SCAN_SLOTS = 4096
# get() reads into a per-thread buffer of this size; larger values get a
# buffer of their own, so that no thread keeps a large one.
_GET_BUFFER = 64 << 10
# get_many() gives each key a slot of this size; larger values are re-read.
_MGET_SLOT = 4096


# --- errors -----------------------------------------------------------------

class Error(Exception):
    """A failure reported by libshmkv: .code is the library's code (negative
    SHMKV_E* value, or a positive errno), .message the library's detail."""

    def __init__(self, code, message=""):
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.strerror = _strerror(code)

    def __str__(self):
        if self.message and self.message != self.strerror:
            return "%s: %s" % (self.strerror, self.message)
        return self.strerror


class NotFound(Error, KeyError):
    """SHMKV_ENOTFOUND: missing or expired key."""


class Exists(Error):
    """SHMKV_EEXIST: the segment exists (exclusive=True)."""


class CasMismatch(Error):
    """SHMKV_ECAS: the entry changed since its cas token was read."""


class BufferTooSmall(Error):
    """SHMKV_ETOOSMALL (handled inside the binding; not raised by Cache)."""


class InvalidArgument(Error, ValueError):
    """SHMKV_EINVAL: empty key, bad name, bad options, TTL too long."""


class KeyTooBig(InvalidArgument):
    """SHMKV_EKEYTOOBIG: the key is longer than the segment's max_key_len."""


class ValueTooBig(InvalidArgument):
    """SHMKV_EVALTOOBIG: the value is longer than the segment's max_value_len."""


class NoSpace(Error):
    """SHMKV_ENOSPC: the segment is full and nothing may be evicted."""


class NotNumber(Error, ValueError):
    """SHMKV_ENOTNUM: incr() on a value that is not a decimal 64-bit integer."""


class Overflow(Error, OverflowError):
    """SHMKV_EOVERFLOW: incr() would overflow a signed 64-bit integer."""


class NoSegment(Error):
    """SHMKV_ENOSEG: no segment by that name (create=False or readonly=True)."""


class PermissionDenied(Error):
    """SHMKV_EACCES: the segment's file mode does not allow this user."""


class BadSegment(Error):
    """SHMKV_EBADSEG: corrupt, truncated, or another layout version."""


class ReadOnly(Error):
    """SHMKV_EREADONLY: a write on a Cache opened with readonly=True."""


class Busy(Error):
    """SHMKV_EBUSY: the contention bound was hit; the call may be retried."""


_ERRORS = {
    ENOTFOUND: NotFound, EEXIST: Exists, ECAS: CasMismatch, ETOOSMALL: BufferTooSmall,
    EINVAL: InvalidArgument, EKEYTOOBIG: KeyTooBig, EVALTOOBIG: ValueTooBig, ENOSPC: NoSpace,
    ENOTNUM: NotNumber, EOVERFLOW: Overflow, ENOSEG: NoSegment, EACCES: PermissionDenied,
    EBADSEG: BadSegment, EREADONLY: ReadOnly, EBUSY: Busy,
}


def _error(rc):
    # shmkv_last_error() is per thread and reset by the next call, so it is
    # read right away, on the thread that made the failed call.
    message = _lib.shmkv_last_error().decode("utf-8", "replace")
    return _ERRORS.get(rc, Error)(rc, message)


def _strerror(code):
    return _lib.shmkv_strerror(code).decode("utf-8", "replace")


# --- the C API ----------------------------------------------------------------

class _Options(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("memory_bytes", ctypes.c_uint64),
        ("max_items", ctypes.c_uint64),
        ("max_key_len", ctypes.c_uint32),
        ("max_value_len", ctypes.c_uint32),
        ("mode", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("evict_policy", ctypes.c_uint32),
    ]


class _ItemInfo(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("cas", ctypes.c_uint64),
        ("ttl_ms", ctypes.c_int64),
        ("user_flags", ctypes.c_uint32),
        ("value_len", ctypes.c_uint64),
        ("write_flags", ctypes.c_uint32),
    ]


class _WriteOpts(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("mode", ctypes.c_uint32),
        ("ttl_ms", ctypes.c_uint64),
        ("expect_cas", ctypes.c_uint64),
        ("user_flags", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
    ]


_STATS_FIELDS = (
    "memory_bytes", "memory_used", "items", "capacity_items",
    "gets", "hits", "misses", "sets", "deletes", "incrs", "cas_failures",
    "evictions", "expirations", "recovered_processes", "attached_processes",
)


class _Stats(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32)] + [(f, ctypes.c_uint64) for f in _STATS_FIELDS]


_SCAN_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t,
                            ctypes.POINTER(_ItemInfo), ctypes.c_void_p)


def _candidates():
    env = os.environ.get("SHMKV_LIB")
    if env:
        return [env]
    names = []
    beside = os.path.join(os.path.dirname(os.path.abspath(__file__)), "libshmkv.so")
    if os.path.exists(beside):
        names.append(beside)
    found = ctypes.util.find_library("shmkv")
    if found:
        names.append(found)
    return names + ["libshmkv.so.1", "libshmkv.so.0"]


def _load():
    errors = []
    for name in _candidates():
        try:
            lib = ctypes.CDLL(name)
        except OSError as e:
            errors.append(str(e))
            continue
        _declare(lib)
        return lib
    raise ImportError("shmkv: cannot load libshmkv (set SHMKV_LIB to its path): " +
                      "; ".join(errors))


def _declare(lib):
    c_int, c_size_t, c_u64, c_i64 = ctypes.c_int, ctypes.c_size_t, ctypes.c_uint64, ctypes.c_int64
    p, cp, vp = ctypes.POINTER, ctypes.c_char_p, ctypes.c_void_p
    byref_size = p(c_size_t)
    handle = vp
    sigs = {
        "shmkv_options_init": (None, [p(_Options)]),
        "shmkv_open": (c_int, [cp, p(_Options), p(handle)]),
        "shmkv_close": (c_int, [handle]),
        "shmkv_unlink": (c_int, [cp]),
        "shmkv_get": (c_int, [handle, cp, c_size_t, vp, c_size_t, byref_size, p(_ItemInfo)]),
        "shmkv_get_stale": (c_int, [handle, cp, c_size_t, vp, c_size_t, byref_size,
                                    p(_ItemInfo), p(c_u64)]),
        "shmkv_mget": (c_int, [handle, c_size_t, p(vp), p(c_size_t), p(vp), p(c_size_t),
                               p(c_size_t), p(c_int), p(_ItemInfo)]),
        "shmkv_store": (c_int, [handle, cp, c_size_t, cp, c_size_t, p(_WriteOpts), p(c_u64)]),
        "shmkv_delete": (c_int, [handle, cp, c_size_t, c_u64]),
        "shmkv_incr": (c_int, [handle, cp, c_size_t, c_i64, c_i64, c_u64, p(c_i64)]),
        "shmkv_touch": (c_int, [handle, cp, c_size_t, c_u64]),
        "shmkv_ttl": (c_int, [handle, cp, c_size_t, p(c_i64)]),
        "shmkv_throttle": (c_int, [handle, cp, c_size_t, c_u64, c_u64, c_u64, p(c_int), p(c_u64),
                                   p(c_u64)]),
        "shmkv_clear": (c_int, [handle]),
        "shmkv_scan": (c_int, [handle, p(c_u64), cp, c_size_t, c_size_t, _SCAN_FN, vp]),
        "shmkv_stats": (c_int, [handle, p(_Stats)]),
        "shmkv_strerror": (cp, [c_int]),
        "shmkv_version": (cp, []),
        "shmkv_last_error": (cp, []),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes


_lib = _load()


def library_version():
    """The version of the loaded libshmkv (shmkv_version())."""
    return _lib.shmkv_version().decode()


def _name(name):
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if isinstance(name, str):
        return os.fsencode(name)
    if isinstance(name, bytes):
        return name
    raise TypeError("segment name must be str, bytes or a path, not %s" % type(name).__name__)


def unlink(name):
    """Removes the segment name: True if it existed, False if not. Processes
    that have it open keep using it until they close it."""
    rc = _lib.shmkv_unlink(_name(name))
    if rc == ENOSEG:
        return False
    if rc:
        raise _error(rc)
    return True


# --- conversions --------------------------------------------------------------

def _key(key):
    """(bytes, the key's user_flags bit)."""
    if isinstance(key, str):
        return key.encode("utf-8"), 0
    if isinstance(key, bytes):
        return key, KEY_BYTES
    if isinstance(key, (bytearray, memoryview)):
        return bytes(key), KEY_BYTES
    raise TypeError("shmkv keys are str or bytes, not %s" % type(key).__name__)


def _value(value):
    """(bytes, the value's user_flags bit)."""
    if isinstance(value, str):
        return value.encode("utf-8"), VALUE_STR
    if isinstance(value, bytes):
        return value, 0
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value), 0
    raise TypeError("shmkv values are str or bytes, not %s" % type(value).__name__)


def _key_out(raw, user_flags):
    if user_flags & KEY_BYTES:
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def _value_out(raw, user_flags):
    if user_flags & VALUE_STR:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:  # flagged by a writer that is not this binding
            return raw
    return raw


def _ttl_ms(ttl, what="ttl"):
    """Seconds (int, float) or a timedelta -> milliseconds; None/0 -> 0.
    `what` names the argument in error messages."""
    if ttl is None:
        return 0
    if isinstance(ttl, datetime.timedelta):
        ms = ttl // datetime.timedelta(milliseconds=1)
        if ms == 0 and ttl > datetime.timedelta(0):
            ms = 1
    elif isinstance(ttl, int) and not isinstance(ttl, bool):
        ms = ttl * 1000
    elif isinstance(ttl, float):
        if math.isnan(ttl) or math.isinf(ttl):
            raise ValueError("%s must be finite, not %r" % (what, ttl))
        ms = round(ttl * 1000)
        if ms == 0 and ttl > 0:
            ms = 1
    else:
        raise TypeError("%s is seconds (int or float) or a timedelta, not %s" %
                        (what, type(ttl).__name__))
    if ms < 0:
        raise ValueError("%s must not be negative" % what)
    if ms > _MAX_TTL_MS:
        raise ValueError("%s %r is longer than the library's limit of 2^40 ms" % (what, ttl))
    return ms


_SIZE = re.compile(r"\s*(\d+)\s*([kmgt]?)(?:i?b)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _memory(memory):
    if isinstance(memory, int) and not isinstance(memory, bool):
        return memory
    if isinstance(memory, str):
        m = _SIZE.fullmatch(memory)
        if m:
            return int(m.group(1)) * _UNITS[m.group(2).lower()]
        raise ValueError("memory %r: expected bytes as an int or a size like '64M'" % memory)
    raise TypeError("memory is an int or a string like '64M', not %s" % type(memory).__name__)


def _int64(n, what):
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError("%s must be an int, not %s" % (what, type(n).__name__))
    if not -(1 << 63) <= n < (1 << 63):
        raise OverflowError("%s %d does not fit in a signed 64-bit integer" % (what, n))
    return n


def _uint(n, what, bits):
    # ctypes would silently wrap a negative or oversized int.
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError("%s must be an int, not %s" % (what, type(n).__name__))
    if not 0 <= n < (1 << bits):
        raise ValueError("%s %d is out of range" % (what, n))
    return n


def _count(n, what):
    """A throttle() argument: an int in the range of uint64_t (the library
    then checks that it is at least 1)."""
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError("%s must be an int, not %s" % (what, type(n).__name__))
    if not 0 <= n < (1 << 64):
        raise InvalidArgument(EINVAL, "%s %d is out of range" % (what, n))
    return n


def _duration_ms(seconds, what):
    """A required duration (get_or_compute's lease and wait): seconds (int,
    float) or a timedelta -> milliseconds; None is refused."""
    if seconds is None:
        raise TypeError("%s is seconds (int or float) or a timedelta, not None" % what)
    return _ttl_ms(seconds, what)


# Key and value types as annotated (bytearray and memoryview are read as bytes).
_KeyLike = typing.Union[str, bytes, bytearray, memoryview]
_ValueLike = typing.Union[str, bytes, bytearray, memoryview]

# The prefix of get_or_compute's lease keys, as Cache::GetOrCompute makes them.
_LEASE_PREFIX = "\0lease:"
# get_or_compute's polling: 1 ms, doubling up to 50 ms.
_BACKOFF_FIRST = 0.001
_BACKOFF_MAX = 0.05

_MISSING = object()
_tls = threading.local()


class _GetScratch:
    """Per-thread out-parameters of shmkv_get, reused from call to call."""

    def __init__(self):
        self.buf = ctypes.create_string_buffer(_GET_BUFFER)
        self.len = ctypes.c_size_t()
        self.info = _ItemInfo()
        self.info.struct_size = ctypes.sizeof(_ItemInfo)
        self.expired = ctypes.c_uint64()


def _scratch():
    s = getattr(_tls, "scratch", None)
    if s is None:
        s = _tls.scratch = _GetScratch()
    return s


# --- the cache ----------------------------------------------------------------

class Throttle(typing.NamedTuple):
    """A throttle() decision. allowed: the request is admitted (and counted);
    retry_after_ms: 0 when allowed, else how many milliseconds until one
    request would be (rounded up); remaining: how many more requests would
    be admitted right now."""

    allowed: bool
    retry_after_ms: int
    remaining: int


class Cache(collections.abc.MutableMapping):
    """A handle on a shmkv segment.

    name: a POSIX shm name ("sessions") or a file path ("/dev/shm/x").
    create: create the segment if it does not exist (an existing one is
      opened as it is: its own geometry wins). exclusive: fail with Exists
      if it exists. readonly: open an existing segment for reading only
      (create is then ignored; writes raise ReadOnly).
    memory: segment size in bytes, or a string like "64K", "64M", "1G".
    max_items, max_key_len, max_value_len, mode (file mode, e.g. 0o660),
    evict ("allkeys", "volatile" or "none"): geometry and policy of a new
      segment; None keeps the library's default.
    """

    def __init__(self, name, create=True, memory="64M", max_items=None, max_key_len=None,
                 max_value_len=None, mode=None, evict=None, readonly=False, exclusive=False):
        self._h = None
        self.name = name
        self.readonly = bool(readonly)
        opts = _Options()
        _lib.shmkv_options_init(ctypes.byref(opts))
        opts.memory_bytes = _uint(_memory(memory), "memory", 64)
        if max_items is not None:
            opts.max_items = _uint(max_items, "max_items", 64)
        if max_key_len is not None:
            opts.max_key_len = _uint(max_key_len, "max_key_len", 32)
        if max_value_len is not None:
            opts.max_value_len = _uint(max_value_len, "max_value_len", 32)
        if mode is not None:
            opts.mode = _uint(mode, "mode", 32)
        if evict is not None:
            if isinstance(evict, str):
                if evict not in _EVICT:
                    raise ValueError("evict must be one of %s, not %r" % (", ".join(_EVICT), evict))
                evict = _EVICT[evict]
            opts.evict_policy = _uint(evict, "evict", 32)
        if readonly:
            opts.flags = _OPEN_READONLY
        elif create or exclusive:
            opts.flags = _OPEN_CREATE | (_OPEN_EXCL if exclusive else 0)
        h = ctypes.c_void_p()
        rc = _lib.shmkv_open(_name(name), ctypes.byref(opts), ctypes.byref(h))
        if rc:
            raise _error(rc)
        self._h = h.value

    # Lifetime.

    def close(self):
        """Closes the handle (the segment stays). Idempotent."""
        h, self._h = self._h, None
        if h is not None:
            _lib.shmkv_close(h)

    @property
    def closed(self):
        return self._h is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self, _close=_lib.shmkv_close):
        # _close is bound at definition time: at interpreter exit the module's
        # globals may already be gone.
        h = getattr(self, "_h", None)
        if h is not None:
            self._h = None
            _close(h)

    def __repr__(self):
        state = "closed" if self._h is None else ("read-only" if self.readonly else "open")
        return "<shmkv.Cache %r %s>" % (self.name, state)

    def _handle(self):
        h = self._h
        if h is None:
            raise ValueError("operation on a closed shmkv.Cache")
        return h

    # Reads.

    def _get(self, key):
        """(raw value, user_flags, cas), or None when missing."""
        h = self._handle()
        kb, _ = _key(key)
        s = _scratch()
        buf, n, info = s.buf, s.len, s.info
        while True:
            rc = _lib.shmkv_get(h, kb, len(kb), buf, len(buf), ctypes.byref(n),
                                ctypes.byref(info))
            if rc == 0:
                return ctypes.string_at(buf, n.value), info.user_flags, info.cas
            if rc == ENOTFOUND:
                return None
            if rc != ETOOSMALL:
                raise _error(rc)
            # The value is larger than the buffer; it may change again before
            # the next try, hence the loop.
            buf = ctypes.create_string_buffer(n.value)

    def get(self, key, default=None):
        """The value (str if it was stored as str, else bytes), or default."""
        r = self._get(key)
        if r is None:
            return default
        return _value_out(r[0], r[1])

    def gets(self, key):
        """(value, cas token) for cas(); (None, None) when missing. The token
        changes on every write of the key, incr() and touch() included."""
        r = self._get(key)
        if r is None:
            return None, None
        return _value_out(r[0], r[1]), r[2]

    def _get_stale(self, key):
        """(raw value, user_flags, expired ms), or None when missing; expired
        ms is 0 for an entry that has not expired (shmkv_get_stale)."""
        h = self._handle()
        kb, _ = _key(key)
        s = _scratch()
        buf, n, info, expired = s.buf, s.len, s.info, s.expired
        while True:
            rc = _lib.shmkv_get_stale(h, kb, len(kb), buf, len(buf), ctypes.byref(n),
                                      ctypes.byref(info), ctypes.byref(expired))
            if rc == 0:
                return ctypes.string_at(buf, n.value), info.user_flags, expired.value
            if rc == ENOTFOUND:
                return None
            if rc != ETOOSMALL:
                raise _error(rc)
            buf = ctypes.create_string_buffer(n.value)

    def get_stale(self, key: _KeyLike, default: typing.Any = None
                  ) -> typing.Tuple[typing.Any, typing.Optional[float]]:
        """(value, expired): like get(), but an entry whose TTL has passed
        and that is still in memory is returned too. expired is how many
        seconds ago it expired (a float; 0.0 when it has not expired); a
        miss gives (default, None). For serving the previous value while
        one process recomputes it. An expired entry stays readable until a
        plain read or write of the key (get, `in`, ttl(), set, ...), the
        janitor or eviction removes it; get_stale never does."""
        r = self._get_stale(key)
        if r is None:
            return default, None
        return _value_out(r[0], r[1]), r[2] / 1000.0

    def get_many(self, keys, encoding=None):
        """{key: value} for the keys present, read with one shmkv_mget call.
        Each value comes back as get() returns it (str if stored as str,
        else bytes), unless `encoding` is given: then every value is bytes
        decoded with it."""
        h = self._handle()
        keys = list(keys)
        n = len(keys)
        if n == 0:
            return {}
        raw = [_key(k)[0] for k in keys]  # alive until the call returns: key_ptrs points into them
        key_ptrs = (ctypes.c_void_p * n)(*[ctypes.cast(ctypes.c_char_p(k), ctypes.c_void_p).value
                                           for k in raw])
        key_lens = (ctypes.c_size_t * n)(*[len(k) for k in raw])
        area = ctypes.create_string_buffer(_MGET_SLOT * n)
        base = ctypes.addressof(area)
        bufs = (ctypes.c_void_p * n)(*[base + i * _MGET_SLOT for i in range(n)])
        buf_lens = (ctypes.c_size_t * n)(*([_MGET_SLOT] * n))
        val_lens = (ctypes.c_size_t * n)()
        rcs = (ctypes.c_int * n)()
        infos = (_ItemInfo * n)()
        for info in infos:
            info.struct_size = ctypes.sizeof(_ItemInfo)
        rc = _lib.shmkv_mget(h, n, key_ptrs, key_lens, bufs, buf_lens, val_lens, rcs, infos)
        if rc:
            raise _error(rc)
        out = {}
        for i, key in enumerate(keys):
            r = rcs[i]
            if r == 0:
                value = ctypes.string_at(base + i * _MGET_SLOT, val_lens[i])
                flags = infos[i].user_flags
            elif r == ENOTFOUND:
                continue
            elif r == ETOOSMALL:
                got = self._get(raw[i])
                if got is None:
                    continue
                value, flags = got[0], got[1]
            else:
                message = "key %d of %d: %s" % (i, n, _strerror(r))
                raise _ERRORS.get(r, Error)(r, message)
            out[key] = value.decode(encoding) if encoding else _value_out(value, flags)
        return out

    mget = get_many

    def ttl(self, key):
        """Remaining seconds (float), None if the entry has no expiry.
        Raises NotFound (a KeyError) when the key is missing."""
        h = self._handle()
        kb, _ = _key(key)
        ms = ctypes.c_int64()
        rc = _lib.shmkv_ttl(h, kb, len(kb), ctypes.byref(ms))
        if rc:
            raise _error(rc)
        return None if ms.value < 0 else ms.value / 1000.0

    # Writes.

    def _store(self, key, value, ttl, mode, expect_cas=0, noevict=False, new_cas=None):
        """The shmkv_store result code, raising for anything but ENOTFOUND,
        EEXIST and ECAS, which the callers turn into False. new_cas: a
        ctypes.c_uint64 that receives the new cas token."""
        h = self._handle()
        kb, kflag = _key(key)
        vb, vflag = _value(value)
        o = _WriteOpts(ctypes.sizeof(_WriteOpts), mode, _ttl_ms(ttl), expect_cas,
                       kflag | vflag, _WRITE_NOEVICT if noevict else 0)
        rc = _lib.shmkv_store(h, kb, len(kb), vb, len(vb), ctypes.byref(o),
                              None if new_cas is None else ctypes.byref(new_cas))
        if rc and rc not in (ENOTFOUND, EEXIST, ECAS):
            raise _error(rc)
        return rc

    def set(self, key, value, ttl=None, *, noevict=False):
        """Stores value under key (insert or overwrite). ttl: seconds (int or
        float) or a timedelta; None or 0 = no expiry. noevict: the entry is
        never evicted to make room (it still expires)."""
        self._store(key, value, ttl, _SET, noevict=noevict)

    def add(self, key, value, ttl=None, *, noevict=False):
        """Stores only if the key is absent: False if it is present."""
        return self._store(key, value, ttl, _ADD, noevict=noevict) == 0

    def replace(self, key, value, ttl=None, *, noevict=False):
        """Stores only if the key is present: False if it is missing."""
        return self._store(key, value, ttl, _REPLACE, noevict=noevict) == 0

    def cas(self, key, value, cas_token, ttl=None, *, noevict=False):
        """Stores only if the entry is unchanged since gets() returned
        cas_token: False if it changed or is gone."""
        if not isinstance(cas_token, int) or isinstance(cas_token, bool) or cas_token <= 0:
            raise ValueError("cas_token must be a token from gets(), not %r" % (cas_token,))
        return self._store(key, value, ttl, _SET, cas_token, noevict) == 0

    def delete(self, key, *, cas_token=None):
        """Removes the key: False if it was missing (or, with cas_token, if
        the entry changed since gets() returned the token)."""
        h = self._handle()
        kb, _ = _key(key)
        rc = _lib.shmkv_delete(h, kb, len(kb), cas_token or 0)
        if rc in (ENOTFOUND, ECAS):
            return False
        if rc:
            raise _error(rc)
        return True

    def incr(self, key, delta=1, initial=0, ttl=None):
        """Atomically adds delta (may be negative) and returns the new value.
        A missing (or expired) key counts as `initial`: the first incr()
        stores and returns initial + delta, with `ttl`; an existing key keeps
        its TTL. (The C shmkv_incr stores `initial` unchanged; this binding
        passes it initial + delta, Redis's INCRBY rule.) get() returns the
        value as ASCII bytes (b"42") unless it was set as str. Raises
        NotNumber if the value is not a decimal int64, Overflow on overflow."""
        h = self._handle()
        kb, _ = _key(key)
        delta = _int64(delta, "delta")
        start = _int64(initial, "initial") + delta
        if not -(1 << 63) <= start < (1 << 63):
            raise Overflow(EOVERFLOW, "initial + delta does not fit in a signed 64-bit integer")
        result = ctypes.c_int64()
        rc = _lib.shmkv_incr(h, kb, len(kb), delta, start, _ttl_ms(ttl), ctypes.byref(result))
        if rc:
            raise _error(rc)
        return result.value

    def decr(self, key, delta=1, initial=0, ttl=None):
        """incr(key, -delta, initial, ttl)."""
        return self.incr(key, -delta, initial, ttl)

    def touch(self, key, ttl):
        """Sets the key's TTL (None or 0 = no expiry): False if it is missing."""
        h = self._handle()
        kb, _ = _key(key)
        rc = _lib.shmkv_touch(h, kb, len(kb), _ttl_ms(ttl))
        if rc == ENOTFOUND:
            return False
        if rc:
            raise _error(rc)
        return True

    def clear(self):
        """Removes every entry of the segment."""
        rc = _lib.shmkv_clear(self._handle())
        if rc:
            raise _error(rc)

    def throttle(self, key: _KeyLike, rate: int, period_ms: int, burst: int) -> Throttle:
        """Rate limiting (GCRA, shmkv_throttle): admits bursts of up to
        `burst` requests, then `rate` per `period_ms` milliseconds, on the
        limiter stored under key, shared by every process of the segment.
        Each call decides and records in one atomic step (a denied request
        records nothing) and returns a Throttle(allowed, retry_after_ms,
        remaining). An idle limiter expires once it is back to a full
        burst. rate, period_ms and burst must be at least 1, and rate /
        period_ms at most one request per microsecond: else
        InvalidArgument. NotNumber if the key holds something else than a
        limiter."""
        h = self._handle()
        kb, _ = _key(key)
        rate = _count(rate, "rate")
        period_ms = _count(period_ms, "period_ms")
        burst = _count(burst, "burst")
        allowed = ctypes.c_int()
        retry_after_ms = ctypes.c_uint64()
        remaining = ctypes.c_uint64()
        rc = _lib.shmkv_throttle(h, kb, len(kb), rate, period_ms, burst, ctypes.byref(allowed),
                                 ctypes.byref(retry_after_ms), ctypes.byref(remaining))
        if rc:
            raise _error(rc)
        return Throttle(allowed.value == 1, retry_after_ms.value, remaining.value)

    # Cache-aside.

    def get_or_compute(self, key: _KeyLike, fn: typing.Callable[[], _ValueLike], ttl=None, *,
                       lease=10.0, wait=10.0, serve_stale: bool = False
                       ) -> typing.Union[str, bytes]:
        """The value of key; on a miss, exactly one caller across all
        processes runs fn() and stores what it returns (str or bytes, kept
        as such, as set() does) with `ttl`, and the others get that value.

        The caller that computes holds a lease: an ADD of the key
        "\\0lease:" + key (str or bytes as key is) with a TTL of `lease`,
        released when it is done (a delete with the lease's cas token, so
        that a lease that lapsed and was taken over is left alone). After
        taking it, the key is read again: it may have been stored
        meanwhile. The other callers poll, 1 ms doubling to 50 ms, until the
        value appears or the lease lapses (a computation that died or hangs
        longer than `lease`: then one of them takes over), for up to `wait`
        seconds, then raise Busy; with serve_stale=True, a caller that
        finds an expired value still in memory (see get_stale()) returns it
        at once instead of waiting. The protocol is Cache::GetOrCompute's
        in the C++ API: C++ and Python processes share one computation.

        A value found in the cache comes back as get() returns it (a value
        stored by another language, as by Cache::GetOrCompute, is bytes).
        ttl: the value's TTL (seconds or a timedelta; None = no expiry).
        lease, wait: seconds (int or float) or timedeltas; lease > 0.
        An exception from fn propagates: nothing is stored and the lease is
        released. The key may be at most max_key_len - 7 bytes long (room
        for the lease key): else KeyTooBig."""
        if not callable(fn):
            raise TypeError("fn must be callable, not %s" % type(fn).__name__)
        kb, _ = _key(key)
        _ttl_ms(ttl)  # a bad TTL fails before anything is computed
        if _duration_ms(lease, "lease") == 0:
            raise InvalidArgument(EINVAL, "lease must be positive, not %r" % (lease,))
        wait_s = _duration_ms(wait, "wait") / 1000.0
        lease_key = _LEASE_PREFIX + key if isinstance(key, str) else _LEASE_PREFIX.encode() + kb
        holder = b"pid %d" % os.getpid()
        deadline = time.monotonic() + wait_s
        backoff = _BACKOFF_FIRST
        while True:
            r = self._get_stale(key)
            if r is not None and r[2] == 0:
                return _value_out(r[0], r[1])  # fresh
            # The token is written by the C call before it returns, so an
            # exception raised as the call returns (KeyboardInterrupt, a
            # signal handler's) still finds it in the finally clause.
            token = ctypes.c_uint64()
            try:
                if self._store(lease_key, holder, lease, _ADD, noevict=True,
                               new_cas=token) == 0:
                    # Stored between the read and the lease? A serve-stale
                    # read, not get(): a plain read would remove the expired
                    # value that the other callers may be serving meanwhile.
                    again = self._get_stale(key)
                    if again is not None and again[2] == 0:
                        return _value_out(again[0], again[1])
                    value = fn()
                    self._store(key, value, ttl, _SET)
                    return value if isinstance(value, str) else bytes(value)
            finally:
                if token.value:
                    self._release(lease_key, token.value)
            # Someone else holds the lease.
            if r is not None and serve_stale:
                return _value_out(r[0], r[1])
            now = time.monotonic()
            if now >= deadline:
                raise Busy(EBUSY, "%r is being computed by another caller (lease %r); "
                                  "waited %g s" % (key, lease_key, wait_s))
            time.sleep(min(backoff, deadline - now))
            backoff = min(backoff * 2, _BACKOFF_MAX)

    def _release(self, lease_key, token):
        """Deletes get_or_compute's lease if it is still ours (its cas token
        unchanged). A failure leaves the lease to lapse after its TTL."""
        h = self._h
        if h is None:
            return
        kb, _ = _key(lease_key)
        _lib.shmkv_delete(h, kb, len(kb), token)

    # Scans.

    def _scan(self, prefix, on_entry):
        """Calls on_entry(raw key, user_flags) for each live key starting
        with prefix, one bounded shmkv_scan call at a time; yields after each
        call so that the caller may consume what it collected."""
        pb = _key(prefix)[0] if prefix else b""
        cursor = ctypes.c_uint64(0)

        def callback(key, key_len, info, ctx):
            on_entry(ctypes.string_at(key, key_len), info[0].user_flags)
            return 0

        fn = _SCAN_FN(callback)
        while True:
            rc = _lib.shmkv_scan(self._handle(), ctypes.byref(cursor), pb or None, len(pb),
                                 _SCAN_SLOTS, fn, None)
            if rc:
                raise _error(rc)
            yield
            if cursor.value == 0:
                return

    def scan(self, prefix=""):
        """Iterates over the live keys that start with prefix (str or bytes),
        as str or bytes (see the module docstring). Not a snapshot: a key
        present for the whole scan is seen at least once; a key written
        during it may be missed or, while entries move, seen twice."""
        batch = []
        for _ in self._scan(prefix, lambda raw, flags: batch.append(_key_out(raw, flags))):
            keys = batch[:]
            batch.clear()
            yield from keys

    def scan_items(self, prefix=""):
        """Iterates over (key, value) for the live keys that start with
        prefix; a key that disappears between the scan and its read is
        skipped."""
        for key in self.scan(prefix):
            r = self._get(key)
            if r is not None:
                yield key, _value_out(r[0], r[1])

    def stats(self):
        """The segment's counters as a dict (shmkv_stats_t's fields)."""
        st = _Stats()
        st.struct_size = ctypes.sizeof(_Stats)
        rc = _lib.shmkv_stats(self._handle(), ctypes.byref(st))
        if rc:
            raise _error(rc)
        return {f: getattr(st, f) for f in _STATS_FIELDS}

    # The mapping protocol.

    def __getitem__(self, key):
        r = self._get(key)
        if r is None:
            raise KeyError(key)
        return _value_out(r[0], r[1])

    def __setitem__(self, key, value):
        self._store(key, value, None, _SET)

    def __delitem__(self, key):
        if not self.delete(key):
            raise KeyError(key)

    def __contains__(self, key):
        if not isinstance(key, (str, bytes, bytearray, memoryview)):
            return False
        kb, _ = _key(key)
        n = ctypes.c_size_t()
        rc = _lib.shmkv_get(self._handle(), kb, len(kb), None, 0, ctypes.byref(n), None)
        if rc in (0, ETOOSMALL):
            return True
        if rc == ENOTFOUND:
            return False
        raise _error(rc)

    def __iter__(self):
        return self.scan()

    def __len__(self):
        """The number of live keys, counted by a scan of the whole index
        (exact when nothing writes meanwhile; stats()["items"] is cheaper but
        counts expired entries not yet reclaimed)."""
        count = 0

        def on_entry(raw, flags):
            nonlocal count
            count += 1

        for _ in self._scan("", on_entry):
            pass
        return count

    def keys(self):
        return collections.abc.KeysView(self)

    def items(self):
        return _ItemsView(self)

    def values(self):
        return _ValuesView(self)

    def pop(self, key, default=_MISSING):
        """Removes key and returns its value, atomically (gets + delete with
        the cas token): no other process gets the same value from pop()."""
        while True:
            value, token = self.gets(key)
            if token is None:
                if default is _MISSING:
                    raise KeyError(key)
                return default
            if self.delete(key, cas_token=token):
                return value

    def popitem(self):
        """Removes and returns some (key, value); KeyError when empty."""
        for key in self.scan():
            value = self.pop(key, _MISSING_VALUE)
            if value is not _MISSING_VALUE:
                return key, value
        raise KeyError("popitem(): shmkv.Cache is empty")

    def setdefault(self, key, default=None):
        """The value of key; if it is missing, stores default (atomically:
        an ADD) and returns it."""
        while True:
            r = self._get(key)
            if r is not None:
                return _value_out(r[0], r[1])
            if self.add(key, default):
                return default


_MISSING_VALUE = object()


class _ItemsView(collections.abc.ItemsView):
    __slots__ = ()

    def __iter__(self):
        return self._mapping.scan_items()


class _ValuesView(collections.abc.ValuesView):
    __slots__ = ()

    def __iter__(self):
        for _, value in self._mapping.scan_items():
            yield value
