"""A Flask shop whose sessions live in a shmkv segment, so that every
gunicorn worker sees the same session: sign in with a name, add items to a
cart over several requests (each may be served by another worker), sign
out (the session is deleted from the segment). Every response has an
X-Worker-Pid header, and the page shows the pid too.

    bash examples/flask-sessions/run.sh   # gunicorn -w 4 on 127.0.0.1:8000

Environment (run.sh sets them):
  SHMKV_SEGMENT     the segment, which must exist (run.sh creates it)
  SECRET_KEY        signs the session cookie; the same in every worker
                    (without it the cookie is the bare session id)
  SESSION_LIFETIME  seconds a session lives after its last request
                    (default 1800)

GET /api/session gives the page's data as JSON.
"""

import datetime
import os

from flask import Flask, jsonify, redirect, render_template_string, request, session, url_for

import shmkv
from shmkv.flask_sessions import ShmkvSessionInterface

app = Flask(__name__)
if os.environ.get("SECRET_KEY"):
    app.secret_key = os.environ["SECRET_KEY"]
app.permanent_session_lifetime = datetime.timedelta(
    seconds=float(os.environ.get("SESSION_LIFETIME", "1800")))
app.config["SESSION_COOKIE_SAMESITE"] = "Lax"

# Opened when gunicorn imports this module in each worker, after the fork;
# create=False: a missing segment stops the worker from booting.
app.session_interface = ShmkvSessionInterface(
    shmkv.Cache(os.environ.get("SHMKV_SEGMENT", "flask-sessions"), create=False))

MAX_CART = 50

PAGE = """<!doctype html>
<title>shmkv Flask sessions</title>
<p>Served by worker pid <b id="pid">{{ pid }}</b>.</p>
{% if user %}
  <p>Signed in as <b id="user">{{ user }}</b>.</p>
  <p>Cart ({{ cart|length }}):</p>
  <ul id="cart">{% for item in cart %}<li>{{ item }}</li>{% endfor %}</ul>
  <form method="post" action="{{ url_for('add_to_cart') }}">
    <input name="item" placeholder="item" required maxlength="100">
    <button>Add to cart</button>
  </form>
  <form method="post" action="{{ url_for('logout') }}"><button>Sign out</button></form>
{% else %}
  <form method="post" action="{{ url_for('login') }}">
    <input name="username" placeholder="your name" required maxlength="64">
    <button>Sign in</button>
  </form>
{% endif %}
{% if error %}<p id="error">{{ error }}</p>{% endif %}
"""


def state():
    return {"pid": os.getpid(), "user": session.get("user"), "cart": session.get("cart", [])}


@app.after_request
def worker_pid(response):
    response.headers["X-Worker-Pid"] = str(os.getpid())
    return response


@app.get("/")
def index():
    return render_template_string(PAGE, error=request.args.get("error"), **state())


@app.get("/api/session")
def api_session():
    return jsonify(state())


@app.post("/login")
def login():
    name = request.form.get("username", "").strip()
    if not 1 <= len(name) <= 64:
        return redirect(url_for("index", error="a name is 1 to 64 characters"), 303)
    session.regenerate()  # a new session id for the signed-in user
    session["user"] = name
    session["cart"] = []
    session.permanent = True
    return redirect(url_for("index"), 303)


@app.post("/cart")
def add_to_cart():
    if "user" not in session:
        return redirect(url_for("index", error="sign in first"), 303)
    item = request.form.get("item", "").strip()
    cart = session.get("cart", [])
    if not 1 <= len(item) <= 100 or len(cart) >= MAX_CART:
        return redirect(url_for("index", error="an item is 1 to 100 characters, "
                                "%d items at most" % MAX_CART), 303)
    session["cart"] = cart + [item]  # a new list: the session sees the change
    return redirect(url_for("index"), 303)


@app.post("/logout")
def logout():
    session.clear()  # deletes the session from the segment and the cookie
    return redirect(url_for("index"), 303)
