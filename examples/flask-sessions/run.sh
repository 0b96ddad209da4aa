#!/usr/bin/env bash
# Runs the Flask session example (app.py) under gunicorn with several
# workers that share their sessions through one shmkv segment:
#
#   bash examples/flask-sessions/run.sh      # then open http://127.0.0.1:8000/
#
# Each page shows the pid of the worker that served it; the session (the
# signed-in name, the cart) is the same whichever worker that is. Ctrl-C
# stops gunicorn and removes the segment.
#
# Environment: PORT (default 8000), WORKERS (default 4), SESSION_LIFETIME
# (seconds, default 1800), SECRET_KEY (default: a random one for this run),
# SHMKV_LIB (default: build the library in $SHMKV_BUILD_DIR, default build).
# When python3-flask or gunicorn is missing, or nothing is built yet,
# scripts/setup.sh installs and builds what is needed first.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root="$PWD"
python=/usr/bin/python3
# shellcheck source=examples/lib/build.sh
source examples/lib/build.sh

flask_installed() { "$python" -c "import flask, gunicorn" 2>/dev/null; }
shmkv_example_lib --check flask_installed
export PYTHONPATH="$root/bindings/python${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
export SHMKV_SEGMENT="shmkv-flask-sessions-$$"
export SESSION_LIFETIME="${SESSION_LIFETIME:-1800}"
if [[ -z "${SECRET_KEY:-}" ]]; then
  SECRET_KEY="$("$python" -c "import secrets; print(secrets.token_hex(32))")"
fi
export SECRET_KEY

"$python" -c "import os, shmkv
shmkv.Cache(os.environ['SHMKV_SEGMENT'], memory='64M', exclusive=True).close()"
server=
cleanup() {
  if [[ -n "$server" ]]; then
    kill -TERM "$server" 2>/dev/null || true  # graceful: the workers finish their requests
    wait "$server" 2>/dev/null || true
  fi
  "$python" -c "import os, shmkv; shmkv.unlink(os.environ['SHMKV_SEGMENT'])" || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port="${PORT:-8000}"
echo "flask-sessions: segment $SHMKV_SEGMENT, http://127.0.0.1:$port/ (Ctrl-C stops)"
"$python" -m gunicorn --workers "${WORKERS:-4}" --bind "127.0.0.1:$port" \
  --chdir "$root/examples/flask-sessions" app:app &
server=$!
wait "$server"
