"""shmkv.flask_sessions with Flask's test client: where and how sessions
are stored (JSON under key_prefix + a random id), cookie signing, refusal
of tampered and unknown cookies, expiry and refresh, deletion, id
regeneration, and RedisShim under Debian's unmodified Flask-Session.
Skipped when Flask is not installed (python3-flask)."""

import datetime
import http.cookies
import json
import pickle
import re

import pytest

flask = pytest.importorskip("flask")

from itsdangerous import Signer  # noqa: E402 (after the skip)

import shmkv  # noqa: E402
from conftest import unique_name  # noqa: E402
from shmkv.flask_sessions import RedisShim, ShmkvSessionInterface  # noqa: E402

SECRET = "test-secret-key"
SID = re.compile(r"[A-Za-z0-9_-]{43}")


def make_app(interface, secret_key=None, lifetime=60, **config):
    """A Flask app on interface with routes that read and write the session."""
    app = flask.Flask(__name__)
    app.testing = True  # exceptions reach the test
    app.secret_key = secret_key
    app.permanent_session_lifetime = datetime.timedelta(seconds=lifetime)
    app.config.update(config)
    app.session_interface = interface
    session = flask.session

    @app.get("/get")
    def get():
        return flask.jsonify(dict(session))

    @app.get("/noop")
    def noop():
        return "nothing read"

    @app.post("/set")
    def set_():
        body = flask.request.get_json()
        permanent = body.pop("permanent", None)
        session.update(body)
        if permanent is not None:
            session.permanent = permanent
        return "ok"

    @app.post("/clear")
    def clear():
        session.clear()
        return "cleared"

    @app.post("/regenerate")
    def regenerate():
        session.regenerate()
        return "ok"

    @app.post("/delete-then-write")
    def delete_then_write():
        # Another worker logs the session out while this request holds it.
        interface.cache.delete(interface.key(session.sid))
        session["late"] = True
        return "ok"

    @app.get("/delete-then-read")
    def delete_then_read():
        interface.cache.delete(interface.key(session.sid))
        return flask.jsonify(dict(session))

    @app.post("/typed")
    def typed():
        session["tuple"] = (1, "two")
        session["bytes"] = b"\x00\xff"
        session["when"] = datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc)
        return "ok"

    @app.get("/typed")
    def typed_check():
        return flask.jsonify({k: type(session[k]).__name__ for k in ("tuple", "bytes", "when")} |
                             {"equal": session["tuple"] == (1, "two") and
                              session["bytes"] == b"\x00\xff" and
                              session["when"].year == 2024})

    return app


def set_cookie(response, name="session"):
    """The Set-Cookie morsel for name in response, or None."""
    for header in response.headers.getlist("Set-Cookie"):
        jar = http.cookies.SimpleCookie()
        jar.load(header)
        if name in jar:
            return jar[name]
    return None


def deleted(morsel):
    return morsel is not None and morsel.value == "" and morsel["max-age"] == "0"


class Browser:
    """A test client that keeps the session cookie itself, so that a test
    can look at it, change it, or send an old one."""

    def __init__(self, app):
        self.client = app.test_client(use_cookies=False)
        self.cookie = None

    def request(self, method, path, cookie=None, **kwargs):
        cookie = self.cookie if cookie is None else cookie
        headers = {"Cookie": "session=" + cookie} if cookie else {}
        response = self.client.open(path, method=method, headers=headers, **kwargs)
        morsel = set_cookie(response)
        if morsel is not None:
            self.cookie = None if deleted(morsel) else morsel.value
        return response

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, **kwargs):
        return self.request("POST", path, **kwargs)


def session_keys(cache, prefix="session:"):
    return sorted(cache.scan(prefix))


# Storage.

def test_untouched_session_sets_no_cookie_and_stores_nothing(cache):
    b = Browser(make_app(ShmkvSessionInterface(cache)))
    r = b.get("/noop")
    assert r.status_code == 200 and set_cookie(r) is None
    r = b.get("/get")
    assert r.json == {} and set_cookie(r) is None
    assert session_keys(cache) == []


def test_session_is_stored_as_json_under_a_random_id(cache):
    app = make_app(ShmkvSessionInterface(cache))
    b = Browser(app)
    r = b.post("/set", json={"user": "alice", "cart": ["pen", "ink"]})
    morsel = set_cookie(r)
    assert SID.fullmatch(morsel.value)  # no secret key: the bare id
    assert morsel["httponly"] and morsel["path"] == "/"
    assert session_keys(cache) == ["session:" + morsel.value]
    raw = cache.get("session:" + morsel.value)
    assert isinstance(raw, str)
    assert json.loads(raw) == {"user": "alice", "cart": ["pen", "ink"]}
    assert 0 < cache.ttl("session:" + morsel.value) <= 60
    assert b.get("/get").json == {"user": "alice", "cart": ["pen", "ink"]}

    other = Browser(app)
    other.post("/set", json={"user": "bob"})
    assert other.cookie != b.cookie
    assert len(session_keys(cache)) == 2


def test_a_second_handle_by_segment_name_sees_the_same_session(cache, segment):
    first = Browser(make_app(ShmkvSessionInterface(cache)))
    first.post("/set", json={"user": "alice"})
    interface = ShmkvSessionInterface(segment, create=False)
    second = Browser(make_app(interface))
    assert second.get("/get", cookie=first.cookie).json == {"user": "alice"}
    assert interface.cache is not cache and interface.cache.name == segment
    second.post("/set", cookie=first.cookie, json={"cart": ["x"]})
    assert first.get("/get").json == {"user": "alice", "cart": ["x"]}


def test_tagged_json_types_round_trip(cache):
    b = Browser(make_app(ShmkvSessionInterface(cache)))
    b.post("/typed")
    assert b.get("/typed").json == {"tuple": "tuple", "bytes": "bytes", "when": "datetime",
                                    "equal": True}
    raw = cache.get("session:" + b.cookie)
    assert isinstance(json.loads(raw), dict)  # JSON, tagged


_ran = []


def _planted_call():
    _ran.append("unpickled")


class _Planted:
    """Unpickling it calls _planted_call: a stand-in for any code."""

    def __reduce__(self):
        return (_planted_call, ())


def test_pickle_in_the_segment_is_never_unpickled(cache):
    planted_sid = "A" * 43
    cache.set("session:" + planted_sid, pickle.dumps({"user": _Planted()}))
    pickle.loads(cache.get("session:" + planted_sid))  # the bytes do run code...
    assert _ran == ["unpickled"]
    _ran.clear()
    b = Browser(make_app(ShmkvSessionInterface(cache)))
    r = b.get("/get", cookie=planted_sid)
    assert r.json == {} and _ran == []  # ...but not in the session interface
    assert deleted(set_cookie(r))

    cache.set("session:" + planted_sid, "[1, 2]")  # JSON, but not a session
    assert b.get("/get", cookie=planted_sid).json == {}


def test_key_prefix_separates_applications(cache):
    shop = Browser(make_app(ShmkvSessionInterface(cache, key_prefix="shop:")))
    blog = Browser(make_app(ShmkvSessionInterface(cache, key_prefix="blog:")))
    shop.post("/set", json={"user": "alice"})
    assert session_keys(cache, "shop:") == ["shop:" + shop.cookie]
    assert session_keys(cache, "blog:") == []
    assert blog.get("/get", cookie=shop.cookie).json == {}


# Cookies.

def test_cookie_is_signed_when_the_app_has_a_secret_key(cache):
    b = Browser(make_app(ShmkvSessionInterface(cache), secret_key=SECRET))
    b.post("/set", json={"user": "alice"})
    sid, _, signature = b.cookie.rpartition(".")
    assert SID.fullmatch(sid) and signature
    # Flask-Session's signer settings.
    assert Signer(SECRET, salt="flask-session", key_derivation="hmac").unsign(b.cookie) == \
        sid.encode()
    assert session_keys(cache) == ["session:" + sid]
    assert b.get("/get").json == {"user": "alice"}


def test_use_signer_false_never_signs(cache):
    b = Browser(make_app(ShmkvSessionInterface(cache, use_signer=False), secret_key=SECRET))
    b.post("/set", json={"user": "alice"})
    assert SID.fullmatch(b.cookie)


def test_use_signer_true_without_a_secret_key_refuses_to_write(cache):
    b = Browser(make_app(ShmkvSessionInterface(cache, use_signer=True)))
    with pytest.raises(RuntimeError, match="secret key"):
        b.post("/set", json={"user": "alice"})
    assert session_keys(cache) == []


def test_tampered_and_unknown_cookies_give_a_fresh_session(cache):
    b = Browser(make_app(ShmkvSessionInterface(cache), secret_key=SECRET))
    b.post("/set", json={"user": "alice"})
    good = b.cookie
    sid, _, signature = good.rpartition(".")
    unknown = "B" * 43
    forged = [
        sid + "." + signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB"),  # bad signature
        sid[:-1] + ("x" if sid[-1] != "x" else "y") + "." + signature,  # other id, old signature
        sid,  # unsigned
        Signer(SECRET, salt="flask-session", key_derivation="hmac").sign(unknown).decode(),
        "../../etc/passwd",
        "",
    ]
    for cookie in forged:
        r = b.get("/get", cookie=cookie or "x")
        assert r.json == {}, cookie
        assert deleted(set_cookie(r)), cookie
        # A write under a forged cookie gets a new id, never the client's.
        r = b.post("/set", cookie=cookie or "x", json={"user": "mallory"})
        new = set_cookie(r).value
        assert new not in (cookie, good)
        assert new.rpartition(".")[0] not in (sid, unknown)
    assert "session:" + unknown not in cache
    assert json.loads(cache.get("session:" + sid)) == {"user": "alice"}  # untouched
    assert b.get("/get", cookie=good).json == {"user": "alice"}


def test_unsigned_cookie_that_is_not_an_id_is_not_looked_up(cache):
    b = Browser(make_app(ShmkvSessionInterface(cache)))
    cache.set("session:short", json.dumps({"user": "planted"}))
    for cookie in ("short", "x" * 300, "a.b", "A" * 42 + "="):  # 300: over max_key_len
        r = b.get("/get", cookie=cookie)
        assert r.status_code == 200 and r.json == {}, cookie
        assert deleted(set_cookie(r)), cookie


def test_vary_cookie_when_the_session_is_read(cache):
    b = Browser(make_app(ShmkvSessionInterface(cache)))
    b.post("/set", json={"user": "alice"})
    assert "Cookie" in b.get("/get").vary
    assert "Cookie" not in b.get("/noop").vary


# Expiry and refresh.

def test_permanent_session_cookie_expires_with_the_entry(cache):
    b = Browser(make_app(ShmkvSessionInterface(cache), lifetime=600))
    before = datetime.datetime.now(datetime.timezone.utc)
    r = b.post("/set", json={"user": "alice", "permanent": True})
    expires = datetime.datetime.strptime(set_cookie(r)["expires"], "%a, %d %b %Y %H:%M:%S GMT")
    expires = expires.replace(tzinfo=datetime.timezone.utc)
    assert before + datetime.timedelta(seconds=598) <= expires <= \
        datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=601)
    assert 590 < cache.ttl("session:" + b.cookie) <= 600


def test_non_permanent_session_has_a_browser_session_cookie_and_a_ttl(cache):
    b = Browser(make_app(ShmkvSessionInterface(cache), lifetime=600))
    r = b.post("/set", json={"user": "alice"})
    assert set_cookie(r)["expires"] == "" and set_cookie(r)["max-age"] == ""
    assert 590 < cache.ttl("session:" + b.cookie) <= 600


def test_permanent_option_makes_new_sessions_permanent(cache):
    b = Browser(make_app(ShmkvSessionInterface(cache, permanent=True), lifetime=600))
    r = b.post("/set", json={"user": "alice"})
    assert set_cookie(r)["expires"]
    assert json.loads(cache.get("session:" + b.cookie))["_permanent"] is True
    Browser(b.client.application).get("/noop")  # an empty session is still not stored
    assert len(session_keys(cache)) == 1


@pytest.mark.parametrize("permanent", [True, False])
def test_each_request_renews_the_ttl(cache, permanent):
    b = Browser(make_app(ShmkvSessionInterface(cache), lifetime=1000))
    b.post("/set", json={"user": "alice", "permanent": permanent})
    key = "session:" + b.cookie
    cache.touch(key, 50)
    r = b.get("/noop")
    assert cache.ttl(key) > 900
    # The cookie is set again only for a permanent session (its expiry date).
    assert (set_cookie(r) is not None) == permanent
    assert b.get("/get").json["user"] == "alice"


def test_without_refresh_each_request_the_ttl_counts_from_the_last_change(cache):
    b = Browser(make_app(ShmkvSessionInterface(cache), lifetime=1000,
                         SESSION_REFRESH_EACH_REQUEST=False))
    b.post("/set", json={"user": "alice", "permanent": True})
    key = "session:" + b.cookie
    cache.touch(key, 50)
    r = b.get("/get")
    assert set_cookie(r) is None and cache.ttl(key) <= 50
    r = b.post("/set", json={"cart": ["x"]})
    assert set_cookie(r) is not None and cache.ttl(key) > 900


def test_expired_entry_gives_a_fresh_session(cache):
    b = Browser(make_app(ShmkvSessionInterface(cache)))
    b.post("/set", json={"user": "alice"})
    old = b.cookie
    cache.delete("session:" + old)  # what expiry leaves behind
    r = b.get("/get", cookie=old)
    assert r.json == {} and deleted(set_cookie(r))


def test_a_lifetime_under_a_millisecond_is_refused(cache):
    app = make_app(ShmkvSessionInterface(cache), lifetime=0)
    with pytest.raises(ValueError, match="permanent_session_lifetime"):
        Browser(app).post("/set", json={"user": "alice"})


# Deletion and ids.

def test_clear_deletes_the_entry_and_the_cookie(cache):
    b = Browser(make_app(ShmkvSessionInterface(cache), secret_key=SECRET))
    b.post("/set", json={"user": "alice"})
    old = b.cookie
    assert len(session_keys(cache)) == 1
    r = b.post("/clear")
    assert deleted(set_cookie(r)) and b.cookie is None
    assert session_keys(cache) == []
    r = b.get("/get", cookie=old)  # the old cookie, replayed
    assert r.json == {}
    assert session_keys(cache) == []


def test_a_session_deleted_meanwhile_is_not_brought_back(cache):
    b = Browser(make_app(ShmkvSessionInterface(cache)))
    b.post("/set", json={"user": "alice"})
    r = b.post("/delete-then-write")
    assert deleted(set_cookie(r)) and session_keys(cache) == []
    b.post("/set", json={"user": "alice"})
    r = b.get("/delete-then-read")
    assert r.json == {"user": "alice"}  # read before the deletion
    assert deleted(set_cookie(r)) and session_keys(cache) == []


def test_regenerate_moves_the_data_to_a_new_id(cache):
    b = Browser(make_app(ShmkvSessionInterface(cache), secret_key=SECRET))
    b.post("/set", json={"user": "alice"})
    old = b.cookie
    r = b.post("/regenerate")
    assert set_cookie(r) is not None and b.cookie != old
    new_sid = b.cookie.rpartition(".")[0]
    assert session_keys(cache) == ["session:" + new_sid]
    assert b.get("/get").json == {"user": "alice"}
    assert b.get("/get", cookie=old).json == {}


# Construction.

def test_segment_name_is_opened_on_first_use_with_its_options():
    name = unique_name("flask")
    interface = ShmkvSessionInterface(name, create=False)  # nothing opened yet
    b = Browser(make_app(interface))
    with pytest.raises(shmkv.NoSegment):
        b.post("/set", json={"user": "alice"})
    assert not shmkv.unlink(name)


def test_bad_arguments(cache):
    with pytest.raises(TypeError):
        ShmkvSessionInterface(cache, create=False)  # options go with a name
    with pytest.raises(TypeError):
        ShmkvSessionInterface(42)
    with pytest.raises(TypeError):
        ShmkvSessionInterface(cache, key_prefix=b"session:")
    with pytest.raises(ValueError):
        ShmkvSessionInterface(cache, sid_bytes=4)


# Debian's unmodified Flask-Session 0.3 on RedisShim.

def flask_session_app(redis, secret_key=SECRET, lifetime=600):
    flask_session = pytest.importorskip("flask_session")
    app = make_app(None, secret_key=secret_key, lifetime=lifetime)
    app.config.update(SESSION_TYPE="redis", SESSION_REDIS=redis, SESSION_USE_SIGNER=True)
    flask_session.Session(app)
    assert type(app.session_interface).__name__ == "RedisSessionInterface"
    return app


# Flask-Session 0.3 reads app.session_cookie_name, deprecated in Flask 2.2.
@pytest.mark.filterwarnings("ignore:.*session_cookie_name:DeprecationWarning")
def test_flask_session_shares_sessions_through_the_shim(cache, segment):
    first = Browser(flask_session_app(RedisShim(cache)))
    second = Browser(flask_session_app(RedisShim(segment, create=False)))
    r = first.post("/set", json={"user": "alice"})
    sid = first.cookie.rpartition(".")[0]
    stored = cache.get("session:" + sid)
    assert isinstance(stored, bytes)  # Flask-Session's pickle
    assert pickle.loads(stored)["user"] == "alice"
    assert 590 < cache.ttl("session:" + sid) <= 600
    assert set_cookie(r)["expires"]

    assert second.get("/get", cookie=first.cookie).json["user"] == "alice"
    second.post("/set", cookie=first.cookie, json={"cart": ["x"]})
    assert first.get("/get").json["cart"] == ["x"]

    r = second.post("/clear", cookie=first.cookie)
    assert deleted(set_cookie(r))
    assert "session:" + sid not in cache
    assert "user" not in first.get("/get").json


def test_redis_shim_calls(cache):
    shim = RedisShim(cache)
    assert shim.get("k") is None
    assert shim.setex("k", 30, b"\x80pickle") is True
    assert shim.get("k") == b"\x80pickle" and 29 < cache.ttl("k") <= 30
    assert shim.setex(name="s", value="text", time=datetime.timedelta(seconds=5))
    assert shim.get("s") == b"text"
    assert shim.setex("n", 5, 42) and shim.get("n") == b"42"
    for bad in (0, -1, datetime.timedelta(0)):
        with pytest.raises(ValueError):
            shim.setex("k", bad, b"v")
    assert shim.delete("k", "s", "missing") == 2
    assert shim.get("k") is None and shim.get("s") is None
    assert shim.cache is cache
