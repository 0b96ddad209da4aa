"""Cache-aside in front of a real SQLite database, with stampede protection.

A report (monthly paid revenue per region, an aggregate over every order:
a full scan with grouping, about a tenth of a second on 200 000 orders) is
read through shmkv.Cache.get_or_compute: the first caller runs the query
and stores the result (JSON) with a TTL, the next ones read it from the
shared segment. When several processes miss at once, one of them queries
and the others wait for its result, so the database runs the query once.

    bash examples/cache-aside/run.sh            # builds libshmkv, then runs main()

    PYTHONPATH=bindings/python SHMKV_LIB=build/lib/libshmkv.so \\
        /usr/bin/python3 examples/cache-aside/cache_aside.py [--db PATH] ...

main() builds the sample database on first run (200 000 orders, in a file
that later runs reuse) and shows, with timings: the query alone, a first
call (a miss: query + store) and cached calls; 8 processes that miss at once
and the number of queries the database actually ran (each process counts
its own with sqlite3's set_trace_callback, and sends the count back through
a multiprocessing queue); the next call after the TTL, which queries again;
and serve_stale=True, which returns the expired report at once while one
process recomputes it.
"""

import argparse
import datetime
import json
import multiprocessing
import os
import random
import sqlite3
import sys
import tempfile
import time

import shmkv

REPORT_KEY = "report:revenue-by-region-month"
REPORT_SQL = """
SELECT region,
       substr(created_at, 1, 7)     AS month,
       COUNT(*)                     AS orders,
       COUNT(DISTINCT customer_id)  AS customers,
       SUM(amount_cents)            AS revenue_cents
  FROM orders
 WHERE status = 'paid'
 GROUP BY region, month
 ORDER BY region, month
"""
REGIONS = ("north", "south", "east", "west", "central")
STATUSES = ("paid",) * 8 + ("refunded", "cancelled")
DEFAULT_DB = os.path.join(tempfile.gettempdir(), "shmkv-cache-aside-orders.sqlite3")
DEFAULT_ORDERS = 200_000


# --- the database ---------------------------------------------------------------

def build_database(path, orders=DEFAULT_ORDERS, seed=42):
    """Creates the sample database at path unless it exists: `orders` rows
    of (customer, region, status, amount, time) over two years, the same
    for a given seed. Built under a temporary name and renamed, so that a
    concurrent reader never sees half a database. Returns True if it built
    one."""
    if os.path.exists(path):
        return False
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".orders-", suffix=".sqlite3", dir=directory)
    os.close(fd)
    try:
        db = sqlite3.connect(tmp)
        try:
            db.execute("""CREATE TABLE orders (
                id INTEGER PRIMARY KEY,
                customer_id INTEGER NOT NULL,
                region TEXT NOT NULL,
                status TEXT NOT NULL,
                amount_cents INTEGER NOT NULL,
                created_at TEXT NOT NULL)""")
            rng = random.Random(seed)
            start = datetime.datetime(2023, 1, 1)
            span = 2 * 365 * 86400

            def rows():
                for _ in range(orders):
                    when = start + datetime.timedelta(seconds=rng.randrange(span))
                    yield (rng.randrange(1, 20_001), rng.choice(REGIONS), rng.choice(STATUSES),
                           rng.randrange(500, 50_000), when.strftime("%Y-%m-%d %H:%M:%S"))

            with db:
                db.executemany("INSERT INTO orders (customer_id, region, status, amount_cents, "
                               "created_at) VALUES (?, ?, ?, ?, ?)", rows())
        finally:
            db.close()
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return True


def connect(path):
    """A read-only connection to the database at path."""
    return sqlite3.connect("file:%s?mode=ro" % os.path.abspath(path), uri=True)


def run_report_query(db):
    """The report straight from the database: a list of row dicts."""
    cursor = db.execute(REPORT_SQL)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


# --- the cached report -------------------------------------------------------------

class Reports:
    """The report, read through the cache. Counts the SELECTs that its own
    connection runs (sqlite3's trace callback sees every statement the
    database executes), and when the last one ran (query_window).
    before_query, if given, is called just before each query."""

    def __init__(self, db_path, cache, ttl=30.0, serve_stale=False, before_query=None):
        self.cache = cache
        self.ttl = ttl
        self.serve_stale = serve_stale
        self.before_query = before_query
        self.queries = 0
        self.query_window = None  # (start, end) of the last query, time.monotonic()
        self.db = connect(db_path)
        self.db.set_trace_callback(self._trace)

    def _trace(self, statement):
        if statement.lstrip().upper().startswith("SELECT"):
            self.queries += 1

    def _compute(self):
        if self.before_query is not None:
            self.before_query()
        start = time.monotonic()
        rows = run_report_query(self.db)
        self.query_window = (start, time.monotonic())
        return json.dumps(rows, separators=(",", ":"))

    def revenue_by_region_month(self, serve_stale=None):
        """The report as a list of row dicts: from the cache, or from the
        database (once, across processes) on a miss."""
        stale = self.serve_stale if serve_stale is None else serve_stale
        text = self.cache.get_or_compute(REPORT_KEY, self._compute, ttl=self.ttl,
                                         serve_stale=stale)
        return json.loads(text)

    def close(self):
        self.db.close()


# --- several processes --------------------------------------------------------------

def stampede_worker(segment, db_path, ttl, start, results):
    """One process of the stampede: its own database connection and cache
    handle, then one call as soon as every process is ready. Puts a dict
    in results: pid, queries (run by this process), result, began/ended
    (of the call) and query_window (None unless this one queried)."""
    with shmkv.Cache(segment, create=False) as cache:
        reports = Reports(db_path, cache, ttl=ttl)
        try:
            start.wait(timeout=120)
            began = time.monotonic()
            result = reports.revenue_by_region_month()
            ended = time.monotonic()
            results.put({"pid": os.getpid(), "queries": reports.queries, "result": result,
                         "began": began, "ended": ended, "query_window": reports.query_window})
        finally:
            reports.close()


def stampede(segment, db_path, processes=8, ttl=30.0, method="fork", timeout=120):
    """Starts `processes` processes that call the report at the same moment
    (a barrier), and returns what each reported (stampede_worker)."""
    ctx = multiprocessing.get_context(method)
    start, results = ctx.Barrier(processes), ctx.Queue()
    children = [ctx.Process(target=stampede_worker, args=(segment, db_path, ttl, start, results))
                for _ in range(processes)]
    for c in children:
        c.start()
    try:
        reports = [results.get(timeout=timeout) for _ in children]
        for c in children:
            c.join(timeout)
            if c.exitcode != 0:
                raise RuntimeError("stampede process %d exited with %s" % (c.pid, c.exitcode))
    finally:
        for c in children:
            if c.is_alive():
                c.kill()
                c.join()
    return reports


def recompute_worker(segment, db_path, ttl, holding):
    """Recomputes the report (the call takes the lease), for the serve-stale
    demonstration; sets `holding` once the lease is taken."""
    with shmkv.Cache(segment, create=False) as cache:
        reports = Reports(db_path, cache, ttl=ttl, before_query=holding.set)
        try:
            reports.revenue_by_region_month()
        finally:
            reports.close()


# --- the demonstration ---------------------------------------------------------------

def _ms(seconds):
    return "%.1f ms" % (seconds * 1e3)


def _us(seconds):
    return "%.1f us" % (seconds * 1e6)


def _queries(n):
    return "%d %s" % (n, "query" if n == 1 else "queries")


def _until(predicate, deadline=30.0):
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError("condition not met within %g s" % deadline)
        time.sleep(0.005)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default=DEFAULT_DB,
                        help="the SQLite database, built on first run (default %(default)s)")
    parser.add_argument("--orders", type=int, default=DEFAULT_ORDERS,
                        help="orders in a new database (default %(default)s)")
    parser.add_argument("--segment", default="shmkv-cache-aside-%d" % os.getpid(),
                        help="the shmkv segment, created and removed by this run")
    parser.add_argument("--ttl", type=float, default=1.0,
                        help="TTL of the cached report in seconds (default %(default)s)")
    parser.add_argument("--processes", type=int, default=8,
                        help="processes of the stampede (default %(default)s)")
    parser.add_argument("--start-method", default="fork", choices=["fork", "spawn"],
                        help="multiprocessing start method (default %(default)s)")
    args = parser.parse_args(argv)

    began = time.monotonic()
    if build_database(args.db, args.orders):
        print("database: built %s (%d orders) in %s" % (args.db, args.orders,
                                                      _ms(time.monotonic() - began)))
    else:
        print("database: %s (reused; delete it to build a new one)" % args.db)

    failures = 0
    with shmkv.Cache(args.segment, memory="64M", exclusive=True) as cache:
        try:
            failures += demo(cache, args)
        finally:
            shmkv.unlink(args.segment)
    if failures:
        print("%d check(s) FAILED" % failures)
        return 1
    print("all checks passed")
    return 0


def demo(cache, args):
    failures = 0

    def check(ok, what):
        nonlocal failures
        if not ok:
            failures += 1
            print("  FAIL: " + what)

    db = connect(args.db)
    rows = db.execute("SELECT COUNT(*) FROM orders").fetchone()[0]
    began = time.perf_counter()
    direct = run_report_query(db)
    query_s = time.perf_counter() - began
    db.close()
    print("report: %d rows over %d orders; the query alone: %s" % (len(direct), rows,
                                                                 _ms(query_s)))

    # 1. A miss, then hits.
    reports = Reports(args.db, cache, ttl=60.0)
    began = time.perf_counter()
    first = reports.revenue_by_region_month()
    miss_s = time.perf_counter() - began
    n = 1000
    began = time.perf_counter()
    for _ in range(n):
        cached = reports.revenue_by_region_month()
    hit_s = (time.perf_counter() - began) / n
    began = time.perf_counter()
    for _ in range(n):
        cache.get(REPORT_KEY)
    get_s = (time.perf_counter() - began) / n
    print("\n1. one process")
    print("   first call (miss: query + store): %s, %s" % (_ms(miss_s),
                                                         _queries(reports.queries)))
    print("   cached call (get + JSON decode), mean of %d: %s  (%.0fx faster than the miss)"
          % (n, _us(hit_s), miss_s / hit_s))
    print("   of which the shmkv read of the %d-byte report: %s" % (len(cache.get(REPORT_KEY)),
                                                                  _us(get_s)))
    check(first == direct and cached == direct, "the cached report equals the query's")
    check(reports.queries == 1, "one query for %d + 1 calls (got %d)" % (n, reports.queries))

    # 2. The stampede.
    cache.delete(REPORT_KEY)
    print("\n2. %d processes (%s) miss at once" % (args.processes, args.start_method))
    got = stampede(args.segment, args.db, args.processes, ttl=60.0, method=args.start_method)
    queries = sum(r["queries"] for r in got)
    window = [r["query_window"] for r in got if r["query_window"]]
    same = all(r["result"] == direct for r in got)
    spread = max(r["began"] for r in got) - min(r["began"] for r in got)
    print("   queries run by the database, summed over the processes: %d" % queries)
    if window:
        during = sum(1 for r in got if r["began"] < window[0][1])
        print("   %d of %d called while the query ran (calls began within %s; the query took %s)"
              % (during, len(got), _ms(spread), _ms(window[0][1] - window[0][0])))
    print("   slowest call: %s; every process got the query's result: %s"
          % (_ms(max(r["ended"] - r["began"] for r in got)), "yes" if same else "NO"))
    check(queries == 1, "the database queried once (got %d)" % queries)
    check(same, "every process got the query's result")

    # 3. After the TTL: one query again.
    short = Reports(args.db, cache, ttl=args.ttl)
    cache.delete(REPORT_KEY)
    short.revenue_by_region_month()
    began = time.monotonic()
    _until(lambda: (cache.get_stale(REPORT_KEY)[1] or 0) > 0)
    print("\n3. after the TTL (%g s; expired after %s)" % (args.ttl,
                                                         _ms(time.monotonic() - began)))
    before = short.queries
    short.revenue_by_region_month()
    short.revenue_by_region_month()
    print("   two calls: %s" % _queries(short.queries - before))
    check(short.queries - before == 1, "one query after the TTL (got %d)"
          % (short.queries - before))

    # 4. serve_stale: the expired report at once while another process
    #    recomputes it.
    _until(lambda: (cache.get_stale(REPORT_KEY)[1] or 0) > 0)
    ctx = multiprocessing.get_context(args.start_method)
    holding = ctx.Event()
    recompute = ctx.Process(target=recompute_worker,
                            args=(args.segment, args.db, args.ttl, holding))
    recompute.start()
    try:
        if not holding.wait(30):
            raise TimeoutError("the recomputing process did not start")
        stale_reports = Reports(args.db, cache, ttl=args.ttl)
        began = time.perf_counter()
        stale = stale_reports.revenue_by_region_month(serve_stale=True)
        stale_s = time.perf_counter() - began
        print("\n4. serve_stale=True while another process recomputes")
        print("   got the expired report in %s, %s (without serve_stale it would wait"
              " for the new one)" % (_us(stale_s), _queries(stale_reports.queries)))
        check(stale == direct and stale_reports.queries == 0,
              "the stale report, without a query")
        stale_reports.close()
    finally:
        recompute.join(60)
        if recompute.is_alive():
            recompute.kill()
            recompute.join()
    check(recompute.exitcode == 0, "the recomputing process exited 0")
    reports.close()
    short.close()
    return failures


if __name__ == "__main__":
    sys.exit(main())
