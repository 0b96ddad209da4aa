"""The ctypes declarations in shmkv/__init__.py match the C header they copy
(lib/include/shmkv/shmkv.h): every struct's fields with their types in
order, every constant's value, and every function's presence. A header
change that the binding misses fails here rather than corrupting memory."""

import ctypes
import os
import re

import pytest

import shmkv

HEADER = os.path.join(os.path.dirname(__file__), "..", "..", "..", "lib", "include", "shmkv",
                      "shmkv.h")
CTYPES = {"uint32_t": ctypes.c_uint32, "uint64_t": ctypes.c_uint64, "int64_t": ctypes.c_int64,
          "int32_t": ctypes.c_int32}


def header():
    if not os.path.exists(HEADER):
        pytest.skip("not in a source tree: %s is missing" % HEADER)
    with open(HEADER) as f:
        return re.sub(r"/\*.*?\*/", "", f.read(), flags=re.S)


def struct_fields(text, name):
    body = re.search(r"typedef struct %s \{(.*?)\} %s_t;" % (name, name), text, re.S).group(1)
    fields = []
    for decl in body.split(";"):
        decl = decl.strip()
        if not decl:
            continue
        ctype, names = decl.split(None, 1)
        fields += [(n.strip(), CTYPES[ctype]) for n in names.split(",")]
    return fields


@pytest.mark.parametrize("name, cls", [
    ("shmkv_options", shmkv._Options),
    ("shmkv_item_info", shmkv._ItemInfo),
    ("shmkv_write_opts", shmkv._WriteOpts),
    ("shmkv_stats", shmkv._Stats),
])
def test_structs_match_the_header(name, cls):
    assert struct_fields(header(), name) == cls._fields_


def test_constants_match_the_header():
    defines = dict(re.findall(r"#define SHMKV_(\w+) \(?(-?\d+)\)?", header()))
    ours = {
        "OPEN_CREATE": shmkv._OPEN_CREATE, "OPEN_EXCL": shmkv._OPEN_EXCL,
        "OPEN_READONLY": shmkv._OPEN_READONLY, "EVICT_ALLKEYS": shmkv._EVICT["allkeys"],
        "EVICT_VOLATILE": shmkv._EVICT["volatile"], "EVICT_NONE": shmkv._EVICT["none"],
        "SET": shmkv._SET, "ADD": shmkv._ADD, "REPLACE": shmkv._REPLACE,
        "WRITE_NOEVICT": shmkv._WRITE_NOEVICT,
    }
    for name, value in ours.items():
        assert int(defines[name]) == value, name
    errors = {n: int(v) for n, v in defines.items() if re.fullmatch(r"E[A-Z]+", n)}
    assert errors == {n: getattr(shmkv, n) for n in errors}
    # Every error code has its own exception class.
    assert set(errors.values()) == set(shmkv._ERRORS)


def test_every_declared_function_is_in_the_header():
    text = header()
    for name in ["shmkv_options_init", "shmkv_open", "shmkv_close", "shmkv_unlink", "shmkv_get",
                 "shmkv_get_stale", "shmkv_mget", "shmkv_store", "shmkv_delete", "shmkv_incr",
                 "shmkv_touch", "shmkv_ttl", "shmkv_throttle", "shmkv_clear", "shmkv_scan",
                 "shmkv_stats", "shmkv_strerror", "shmkv_version", "shmkv_last_error"]:
        assert re.search(r"\b%s\(" % name, text), name
