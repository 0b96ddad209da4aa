"""The Flask session example end to end: app.py under a real gunicorn with
four worker processes, driven over plain HTTP (http.client, cookies kept
by hand so that a test can replay or forge one). Checks that a session is
the same whichever worker serves it, that logout deletes it from the
segment, that it expires after its lifetime, and that a tampered or
unknown cookie gives a fresh empty session.

    SHMKV_LIB=build/lib/libshmkv.so PYTHONPATH=bindings/python \\
        /usr/bin/python3 -m pytest -q examples/flask-sessions
"""

import collections
import http.client
import http.cookies
import json
import os
import socket
import subprocess
import time
import urllib.parse

import pytest

pytest.importorskip("flask")
pytest.importorskip("gunicorn")

from itsdangerous import Signer  # noqa: E402 (after the skips)

import shmkv  # noqa: E402

EXAMPLE = os.path.dirname(os.path.abspath(__file__))
PYTHON = "/usr/bin/python3"
WORKERS = 4
LIFETIME = 3  # seconds: PERMANENT_SESSION_LIFETIME of the app under test
SECRET = "test-secret-" + os.urandom(8).hex()
DEADLINE = 15.0  # seconds; generous, only a failing test waits this long


def until(predicate, deadline=DEADLINE, interval=0.01):
    """Polls predicate until it returns something true (returned), or
    fails the test at the deadline."""
    end = time.monotonic() + deadline
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail("condition not met within %.0f s: %s" % (deadline, predicate.__doc__ or
                                                                 predicate))
        time.sleep(interval)


Reply = collections.namedtuple("Reply", "status headers text pid set_cookie")


class Browser:
    """One HTTP client with one session cookie, over a new connection per
    request (gunicorn's sync workers close each one), so that any worker
    may take the next request."""

    _KEEP = object()

    def __init__(self, port):
        self.port = port
        self.cookie = None

    def request(self, method, path, form=None, cookie=_KEEP):
        """Sends the request with the kept cookie (or `cookie`, None for
        none); a Set-Cookie in the reply replaces or deletes the kept one."""
        cookie = self.cookie if cookie is self._KEEP else cookie
        headers = {"Cookie": "session=" + cookie} if cookie else {}
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=DEADLINE)
        try:
            conn.request(method, path, body, headers)
            response = conn.getresponse()
            text = response.read().decode("utf-8")
        finally:
            conn.close()
        morsel = None
        for header in response.headers.get_all("Set-Cookie") or []:
            jar = http.cookies.SimpleCookie()
            jar.load(header)
            if "session" in jar:
                morsel = jar["session"]
                self.cookie = None if is_deletion(morsel) else morsel.value
        return Reply(response.status, response.headers, text,
                     int(response.headers["X-Worker-Pid"]), morsel)

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, form, **kwargs):
        return self.request("POST", path, form, **kwargs)

    def state(self, **kwargs):
        """(GET /api/session as a dict, the reply)."""
        reply = self.get("/api/session", **kwargs)
        assert reply.status == 200, reply
        data = json.loads(reply.text)
        assert data["pid"] == reply.pid
        return data, reply

    def login(self, name):
        reply = self.post("/login", {"username": name})
        assert reply.status == 303 and reply.set_cookie is not None and self.cookie, reply
        return reply


def is_deletion(morsel):
    return morsel.value == "" and morsel["max-age"] == "0"


def sid_of(cookie):
    sid, dot, signature = cookie.rpartition(".")
    assert dot and signature, cookie  # the app has a secret key: the cookie is signed
    return sid


class Server:
    def __init__(self, port, cache, log_path):
        self.port = port
        self.cache = cache
        self.log_path = log_path

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def session_keys(self):
        return set(self.cache.scan("session:"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """gunicorn -w 4 serving app.py on a segment of its own; stopped, and
    the segment removed, at the end of the module, failed or not."""
    segment = "pytest-flask-sessions-%d-%s" % (os.getpid(), os.urandom(3).hex())
    log_path = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    cache = shmkv.Cache(segment, memory="8M", exclusive=True)
    listener = proc = None
    try:
        # The listening socket is made here, on a free port chosen by the
        # kernel, and handed to gunicorn (fd://): no window in which another
        # process could take the port.
        listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        port = listener.getsockname()[1]
        package_dir = os.path.dirname(os.path.dirname(os.path.abspath(shmkv.__file__)))
        env = dict(os.environ, SHMKV_SEGMENT=segment, SECRET_KEY=SECRET,
                   SESSION_LIFETIME=str(LIFETIME), PYTHONDONTWRITEBYTECODE="1",
                   PYTHONPATH=os.pathsep.join(filter(None, [package_dir,
                                                            os.environ.get("PYTHONPATH")])))
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                [PYTHON, "-m", "gunicorn", "-w", str(WORKERS), "-b", "fd://%d" % listener.fileno(),
                 "--chdir", EXAMPLE, "app:app"],
                env=env, stdout=log, stderr=subprocess.STDOUT, pass_fds=[listener.fileno()])
        server = Server(port, cache, log_path)

        def ready():
            """gunicorn answers"""
            if proc.poll() is not None:
                pytest.fail("gunicorn exited with %s:\n%s" % (proc.returncode, server.log()))
            try:
                return Browser(port).get("/api/session").status == 200
            except OSError:
                return False

        until(ready, interval=0.05)
        yield server
        assert "Traceback" not in server.log(), server.log()
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if listener is not None:
            listener.close()
        cache.close()
        shmkv.unlink(segment)
        assert not os.path.exists("/dev/shm/" + segment)


def test_login_and_cart_are_shared_across_workers(server):
    b = Browser(server.port)
    served = {b.login("alice").pid}
    items = ["apple", "bread", "cheese"]
    for i, item in enumerate(items):
        added = b.post("/cart", {"item": item})
        assert added.status == 303 and added.headers["Location"].endswith("/")
        served.add(added.pid)

        def read_elsewhere():
            """a worker other than the one that added the item reads the session"""
            data, reply = b.state()
            served.add(reply.pid)
            # Every worker sees the cart as it is, not only the other one.
            assert data["user"] == "alice" and data["cart"] == items[:i + 1], data
            return reply.pid != added.pid

        until(read_elsewhere)
    assert len(served) >= 2

    # More reads, to see how many of the workers serve this one session.
    for _ in range(200):
        if len(served) == WORKERS:
            break
        data, reply = b.state()
        assert data["cart"] == items
        served.add(reply.pid)
    print("session of alice served by %d worker pids: %s" % (len(served), sorted(served)))

    page = b.get("/")
    assert page.status == 200 and '<b id="pid">%d</b>' % page.pid in page.text
    assert '<b id="user">alice</b>' in page.text
    assert all("<li>%s</li>" % item in page.text for item in items)

    key = "session:" + sid_of(b.cookie)
    assert key in server.session_keys()
    assert json.loads(server.cache.get(key)) == {"user": "alice", "cart": items,
                                                  "_permanent": True}
    assert 0 < server.cache.ttl(key) <= LIFETIME


def test_logout_deletes_the_session_from_the_segment(server):
    b = Browser(server.port)
    b.login("bob")
    assert b.post("/cart", {"item": "ink"}).status == 303
    old = b.cookie
    key = "session:" + sid_of(old)
    assert key in server.cache

    reply = b.post("/logout", {})
    assert reply.status == 303 and reply.set_cookie is not None
    assert is_deletion(reply.set_cookie) and b.cookie is None
    assert key not in server.cache  # deleted before the reply was sent
    keys_after_logout = server.session_keys()

    # The old cookie, replayed, is logged out on every worker that gets it.
    served = set()

    def logged_out_on_two_workers():
        """two workers have answered the replayed cookie"""
        data, reply = b.state(cookie=old)
        assert data["user"] is None and data["cart"] == [], data
        served.add(reply.pid)
        return len(served) >= 2

    until(logged_out_on_two_workers)
    assert key not in server.cache
    assert server.session_keys() <= keys_after_logout  # nothing new was stored
    page = b.get("/", cookie=old)
    assert 'name="username"' in page.text and "bob" not in page.text


def test_session_expires_after_its_lifetime(server):
    b = Browser(server.port)
    b.login("carol")
    key = "session:" + sid_of(b.cookie)
    assert 0 < server.cache.ttl(key) <= LIFETIME
    expires = b.get("/api/session").set_cookie["expires"]  # a permanent session
    assert expires

    # Each request renews the TTL: let it run down a little, then one request.
    low = until(lambda: (lambda ttl: ttl if ttl < LIFETIME - 1 else None)(server.cache.ttl(key)))
    data, _ = b.state()
    assert data["user"] == "carol"
    assert server.cache.ttl(key) > low + 0.5

    # Then no request: the entry expires, and the cookie no longer logs in.
    old = b.cookie
    until(lambda: key not in server.cache, deadline=LIFETIME + DEADLINE)
    data, reply = b.state(cookie=old)
    assert data["user"] is None and data["cart"] == []
    assert reply.set_cookie is not None and is_deletion(reply.set_cookie)
    assert key not in server.cache


def test_tampered_or_unknown_cookie_gives_a_fresh_session(server):
    b = Browser(server.port)
    b.login("dave")
    good = b.cookie
    sid, _, signature = good.rpartition(".")
    unknown = "U" * 43  # a well-formed id that is not in the segment
    forged = {
        "bad signature": sid + "." + ("A" if signature[0] != "A" else "B") + signature[1:],
        "other id, old signature": ("x" if sid[0] != "x" else "y") + sid[1:] + "." + signature,
        "unsigned id": sid,
        "signed unknown id": Signer(SECRET, salt="flask-session",
                                    key_derivation="hmac").sign(unknown).decode(),
        "garbage": "not-a-session",
    }
    for what, cookie in forged.items():
        data, reply = b.state(cookie=cookie)
        assert data["user"] is None and data["cart"] == [], what
        assert reply.set_cookie is not None and is_deletion(reply.set_cookie), what
        # No session to add to, and none made up from the forged cookie.
        reply = b.post("/cart", {"item": "stolen"}, cookie=cookie)
        assert reply.status == 303 and "error=" in reply.headers["Location"], what
        reply = b.post("/login", {"username": "mallory"}, cookie=cookie)
        assert reply.status == 303 and reply.set_cookie is not None, what
        new_sid = sid_of(reply.set_cookie.value)
        assert new_sid not in (sid, unknown), what
    assert "session:" + unknown not in server.cache
    data, _ = b.state(cookie=good)
    assert data["user"] == "dave"  # the real session is untouched
