"""How the package finds libshmkv, and what an open handle does at
interpreter exit."""

import os
import subprocess
import sys

import shmkv
from conftest import unique_name

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(shmkv.__file__)))


def run_python(code, **env):
    full = dict(os.environ, PYTHONPATH=PACKAGE_DIR, **env)
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True,
                          text=True, timeout=60)


def test_shmkv_lib_wins_and_a_bad_one_is_an_import_error():
    r = run_python("import shmkv", SHMKV_LIB="/nonexistent/libshmkv.so")
    assert r.returncode != 0
    assert "ImportError" in r.stderr and "SHMKV_LIB" in r.stderr


def test_search_order_without_shmkv_lib(monkeypatch):
    monkeypatch.delenv("SHMKV_LIB", raising=False)
    names = shmkv._candidates()
    assert names[-2:] == ["libshmkv.so.1", "libshmkv.so.0"]
    monkeypatch.setenv("SHMKV_LIB", "/some/libshmkv.so")
    assert shmkv._candidates() == ["/some/libshmkv.so"]


def test_an_unclosed_handle_at_exit_is_closed_quietly():
    name = unique_name("exit")
    try:
        r = run_python("import shmkv\n"
                       "kv = shmkv.Cache(%r, memory='1M')\n"
                       "kv['k'] = 'v'\n"
                       "other = kv\n" % name)
        assert r.returncode == 0 and r.stderr == ""
        with shmkv.Cache(name, create=False) as kv:
            assert kv["k"] == "v"
    finally:
        shmkv.unlink(name)
