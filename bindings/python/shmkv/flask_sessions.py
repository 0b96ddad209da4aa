"""Server-side Flask sessions in a shmkv segment: every worker process of an
application on one host (gunicorn -w 4, several uwsgi or mod_wsgi
processes) sees the same sessions, with no session server.

    import os
    from flask import Flask, session
    from shmkv.flask_sessions import ShmkvSessionInterface

    app = Flask(__name__)
    app.secret_key = os.environ["SECRET_KEY"]  # optional: signs the cookie
    app.session_interface = ShmkvSessionInterface("sessions", create=False)

    @app.post("/login")
    def login():
        session.regenerate()                   # a new id on login
        session["user"] = request.form["username"]
        session.permanent = True               # the cookie gets an expiry date
        ...

The cookie carries only the session id, secrets.token_urlsafe(32) (256
random bits). The data lives in the segment under key_prefix + id, with a
TTL of app.permanent_session_lifetime (PERMANENT_SESSION_LIFETIME).

Signing: when the app has a secret_key, the cookie is the id signed with
itsdangerous (Signer, salt "flask-session", HMAC key derivation: what
Flask-Session does). use_signer=False never signs; use_signer=True
requires a secret_key (without one the session is Flask's NullSession,
which says so on the first write). A cookie whose signature or format is
wrong, or whose id is not in the segment (expired, logged out, made up),
gives a fresh empty session with a new id, never one under the id that
the client chose, and the stale cookie is deleted.

Serialisation: the data is stored as JSON, with Flask's tagged JSON
serializer (the one of its cookie sessions: dicts, lists, str, numbers,
and also tuples, bytes, datetimes, UUIDs and Markup). Not pickle: every
process that may write the segment could then plant bytes that run code
in the web workers when they unpickle them. A value that is not valid
session JSON is treated as a missing session.

Expiry and refresh, following Flask's SessionInterface:
  - a request that changes the session stores it again, with the full TTL;
  - a request that does not change it renews the entry's TTL (a touch,
    no rewrite) and, for a permanent session, the cookie's expiry date,
    when SESSION_REFRESH_EACH_REQUEST is true (Flask's default); with it
    false, a session expires permanent_session_lifetime after its last
    change;
  - an empty session is never stored and gets no cookie; a session
    emptied by session.clear() is deleted from the segment, and its
    cookie is deleted.
As in Flask, a change inside a mutable value (session["cart"].append(x))
is not seen: assign the value again, or set session.modified = True.

Concurrent requests of one session: the last one to save wins (as with
any server-side session store). A session that is deleted while another
request holds it (logout in one tab, a click in another) stays deleted:
the other request's save is a REPLACE, which fails on a missing entry,
and that response deletes the cookie.

Processes: pass a shmkv.Cache, or a segment name (and shmkv.Cache
options) to open it lazily, in the process that first handles a request;
either works with gunicorn's workers, --preload included (a Cache may be
used after fork()).

RedisShim lets Debian's unmodified Flask-Session 0.3 use a segment in
place of Redis (SESSION_TYPE = "redis", SESSION_REDIS = RedisShim(...)).
Flask-Session pickles its sessions: see RedisShim for what that means.
"""

import datetime
import re
import secrets
import threading

from flask.sessions import SessionInterface, SessionMixin, session_json_serializer
from itsdangerous import BadSignature, Signer
from werkzeug.datastructures import CallbackDict

import shmkv

__all__ = ["ShmkvSession", "ShmkvSessionInterface", "RedisShim"]

# What secrets.token_urlsafe() makes; anything else in a cookie is not one
# of our ids and is not looked up.
_SID = re.compile(r"[A-Za-z0-9_-]{16,128}")


class _Segment:
    """A shmkv.Cache given as such, or as a segment name and options to
    open it with on first use (in the process that uses it)."""

    def __init__(self, cache, options):
        if isinstance(cache, shmkv.Cache):
            if options:
                raise TypeError("shmkv.Cache options go with a segment name, not an open Cache")
            self._cache = cache
        else:
            shmkv._name(cache)  # a TypeError now rather than on the first request
            self._cache = None
        self._name = cache
        self._options = options
        self._lock = threading.Lock()

    def cache(self):
        c = self._cache
        if c is None:
            with self._lock:
                if self._cache is None:
                    self._cache = shmkv.Cache(self._name, **self._options)
                c = self._cache
        return c


class ShmkvSession(CallbackDict, SessionMixin):
    """A server-side session: a dict of values that Flask's tagged JSON
    serializer takes. .sid is its id (None until it is first stored),
    .new is True until it is stored, .modified and .accessed are Flask's
    flags."""

    def __init__(self, initial=None, sid=None, new=False):
        def on_update(self):
            self.modified = True
            self.accessed = True

        super().__init__(initial, on_update)
        self.sid = sid
        self.new = new
        self.modified = False
        self.accessed = False
        self._regenerate = False
        self._stale_cookie = False

    def __getitem__(self, key):
        self.accessed = True
        return super().__getitem__(key)

    def get(self, key, default=None):
        self.accessed = True
        return super().get(key, default)

    def setdefault(self, key, default=None):
        self.accessed = True
        return super().setdefault(key, default)

    def regenerate(self):
        """Gives the session a new id when it is saved, and deletes the entry
        under the old one. Call it when the user logs in, so that an id
        planted in the browser beforehand (session fixation) is not the one
        that ends up logged in."""
        self._regenerate = True
        self.modified = True


class ShmkvSessionInterface(SessionInterface):
    """Flask's SessionInterface over a shmkv segment (see the module
    docstring).

    cache: a shmkv.Cache, or a segment name; with a name, the segment is
      opened on first use with shmkv.Cache(name, **cache_options).
    key_prefix: prepended to the session id to make the segment key.
    use_signer: None signs the cookie when app.secret_key is set; True
      requires a secret_key; False never signs.
    permanent: True makes each new session permanent (session.permanent)
      when it is first stored, as Flask-Session's SESSION_PERMANENT; False
      leaves it to the application (Flask's default).
    sid_bytes: random bytes per session id (the id is their base64url).
    """

    serializer = session_json_serializer
    session_class = ShmkvSession
    #: Signer settings of the cookie: Flask-Session's.
    salt = "flask-session"
    key_derivation = "hmac"

    def __init__(self, cache, key_prefix="session:", use_signer=None, permanent=False,
                 sid_bytes=32, **cache_options):
        self._segment = _Segment(cache, cache_options)
        if not isinstance(key_prefix, str):
            raise TypeError("key_prefix must be a str, not %s" % type(key_prefix).__name__)
        self.key_prefix = key_prefix
        self.use_signer = use_signer
        self.permanent = bool(permanent)
        if not isinstance(sid_bytes, int) or not 12 <= sid_bytes <= 96:
            raise ValueError("sid_bytes must be an int from 12 to 96, not %r" % (sid_bytes,))
        self.sid_bytes = sid_bytes

    @property
    def cache(self):
        """The shmkv.Cache, opened on first use when a name was given."""
        return self._segment.cache()

    def key(self, sid):
        """The segment key of the session id sid."""
        return self.key_prefix + sid

    def get_signer(self, app):
        """The itsdangerous Signer of the cookie, or None when it is not signed."""
        if self.use_signer is False or not app.secret_key:
            return None
        return Signer(app.secret_key, salt=self.salt, key_derivation=self.key_derivation)

    def _sid(self, cookie, signer):
        """The session id in the cookie value, or None when it is not a valid one."""
        if signer is not None:
            try:
                cookie = signer.unsign(cookie).decode("ascii")
            except (BadSignature, UnicodeDecodeError):
                return None
        return cookie if _SID.fullmatch(cookie) else None

    def open_session(self, app, request):
        signer = self.get_signer(app)
        if signer is None and self.use_signer:
            return None  # Flask's NullSession: a write raises, naming secret_key
        cookie = request.cookies.get(self.get_cookie_name(app))
        if not cookie:
            return self.session_class(new=True)
        sid = self._sid(cookie, signer)
        if sid is not None:
            raw = self.cache.get(self.key(sid))
            if raw is not None:
                try:
                    data = self.serializer.loads(raw)
                except (ValueError, TypeError, KeyError):  # not session JSON
                    data = None
                if isinstance(data, dict):
                    return self.session_class(data, sid=sid)
        session = self.session_class(new=True)
        session._stale_cookie = True
        return session

    def _store_new(self, value, ttl):
        """Stores value under a fresh id (an ADD, so that no existing
        session is overwritten) and returns the id."""
        for _ in range(8):
            sid = secrets.token_urlsafe(self.sid_bytes)
            if self.cache.add(self.key(sid), value, ttl):
                return sid
        raise RuntimeError("shmkv: no free session id after 8 random tries")

    def save_session(self, app, session, response):
        name = self.get_cookie_name(app)
        cookie = dict(domain=self.get_cookie_domain(app), path=self.get_cookie_path(app),
                      secure=self.get_cookie_secure(app), samesite=self.get_cookie_samesite(app),
                      httponly=self.get_cookie_httponly(app))

        def delete_cookie():
            response.delete_cookie(name, **cookie)
            response.vary.add("Cookie")

        if session.accessed:
            response.vary.add("Cookie")
        cache = self.cache
        ttl = app.permanent_session_lifetime
        if isinstance(ttl, datetime.timedelta) and ttl <= datetime.timedelta(0):
            raise ValueError("permanent_session_lifetime must be positive for shmkv sessions")

        if not session:
            if not session.new and session.modified:
                cache.delete(self.key(session.sid))
                delete_cookie()
            elif session._stale_cookie:
                delete_cookie()
            return

        if session.new and self.permanent and "_permanent" not in session:
            session.permanent = True
        if session._regenerate and not session.new:
            cache.delete(self.key(session.sid))
            session.new = True
        session._regenerate = False

        if session.new:
            session.sid = self._store_new(self.serializer.dumps(dict(session)), ttl)
            session.new = False
        elif session.modified:
            if not cache.replace(self.key(session.sid), self.serializer.dumps(dict(session)), ttl):
                delete_cookie()  # deleted meanwhile (logout) or expired: it stays gone
                return
        elif app.config["SESSION_REFRESH_EACH_REQUEST"]:
            if not cache.touch(self.key(session.sid), ttl):
                delete_cookie()
                return

        if not self.should_set_cookie(app, session):
            return
        signer = self.get_signer(app)
        value = session.sid if signer is None else signer.sign(session.sid).decode("ascii")
        response.set_cookie(name, value, expires=self.get_expiration_time(app, session), **cookie)
        response.vary.add("Cookie")


class RedisShim:
    """The three calls that Flask-Session 0.3's RedisSessionInterface makes
    on a redis.Redis client (get, setex, delete), over a shmkv segment, so
    that Debian's unmodified python3-flask-session keeps its sessions in
    shared memory:

        from flask_session import Session
        app.config.update(SESSION_TYPE="redis",
                          SESSION_REDIS=RedisShim("sessions", create=False))
        Session(app)

    cache: a shmkv.Cache, or a segment name (and shmkv.Cache options),
    opened on first use. Values are bytes, as Redis returns them.

    Flask-Session pickles the session data and unpickles what it reads
    back, so whoever can write the segment can run code in the web
    workers. Use it only on a segment that no untrusted process can write
    (its file mode, e.g. mode=0o600), or use ShmkvSessionInterface, which
    stores JSON.
    """

    def __init__(self, cache, **cache_options):
        self._segment = _Segment(cache, cache_options)

    @property
    def cache(self):
        """The shmkv.Cache, opened on first use when a name was given."""
        return self._segment.cache()

    def get(self, name):
        """The value of name as bytes, or None."""
        value = self.cache.get(name)
        return value.encode("utf-8") if isinstance(value, str) else value

    def setex(self, name, time, value):
        """Stores value under name for `time` seconds (an int or a
        timedelta, which must be positive, as Redis requires)."""
        if isinstance(time, datetime.timedelta):
            positive = time > datetime.timedelta(0)
        else:
            positive = time > 0
        if not positive:
            raise ValueError("invalid expire time in setex: %r" % (time,))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = repr(value).encode("ascii")
        elif isinstance(value, str):
            value = value.encode("utf-8")
        self.cache.set(name, value, ttl=time)
        return True

    def delete(self, *names):
        """Deletes the names; returns how many existed."""
        return sum(1 for name in names if self.cache.delete(name))
