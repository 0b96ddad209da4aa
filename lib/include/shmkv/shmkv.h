/* shmkv: a key-value cache in one shared-memory segment, read and written
   directly by many unrelated local processes.

   Conventions of this C API (the ABI that every binding uses):
   - Every function that can fail returns int: 0 is success, a negative
     SHMKV_E* value is an shmkv error, a positive value is an errno for an
     OS failure with no shmkv code. shmkv_strerror() names every one.
   - Keys and values are pointer + length: binary-safe, NUL allowed. A key is
     never empty. Pointers must be non-NULL unless a comment says otherwise.
   - Nothing throws, nothing aborts on bad input: bad input gets an error
     code and leaves the segment untouched.
   - Structs carry their size in their first field (struct_size) so that
     they can grow; initialise them with the *_init helper or set it.
   - A handle is thread-safe. After fork() a child may keep using an
     inherited handle: its first call registers the child.
   - TTLs are relative milliseconds; 0 means "no expiry".
*/
#ifndef SHMKV_SHMKV_H_
#define SHMKV_SHMKV_H_

#include <stddef.h>
#include <stdint.h>

#include "shmkv/export.h"
#include "shmkv/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Opaque handle, thread-safe. (The struct tag is not `shmkv`, which would
   collide with the C++ namespace shmkv of cache.h.) */
typedef struct shmkv_handle shmkv_t;

/* Open flags. */
#define SHMKV_OPEN_CREATE 1
#define SHMKV_OPEN_EXCL 2
#define SHMKV_OPEN_READONLY 4
#define SHMKV_OPEN_PRECISE_CLOCK 8

/* Eviction policies. */
#define SHMKV_EVICT_ALLKEYS 0
#define SHMKV_EVICT_VOLATILE 1
#define SHMKV_EVICT_NONE 2

/* Write modes. */
#define SHMKV_SET 0
#define SHMKV_ADD 1
#define SHMKV_REPLACE 2

/* Write flags. */
#define SHMKV_WRITE_KEEPTTL 1
#define SHMKV_WRITE_NOEVICT 2

/* Error codes. */
#define SHMKV_ENOTFOUND (-1001) /* missing or expired key */
#define SHMKV_EEXIST (-1002)    /* ADD on a present key; EXCL on an existing segment */
#define SHMKV_ECAS (-1003)      /* expect_cas mismatch */
#define SHMKV_ETOOSMALL (-1004) /* caller's buffer too small */
#define SHMKV_EINVAL (-1005)    /* bad argument: empty key, bad name, bad options */
#define SHMKV_EKEYTOOBIG (-1006)
#define SHMKV_EVALTOOBIG (-1007)
#define SHMKV_ENOSPC (-1008)    /* full and nothing may be evicted */
#define SHMKV_ENOTNUM (-1009)   /* incr on a value that is not a decimal int64 */
#define SHMKV_EOVERFLOW (-1010) /* incr would overflow int64 */
#define SHMKV_ENOSEG (-1011)    /* segment does not exist */
#define SHMKV_EACCES (-1012)    /* permission denied */
#define SHMKV_EBADSEG (-1013)   /* corrupt, truncated, wrong magic or layout version */
#define SHMKV_EREADONLY (-1014) /* write on a read-only handle */
#define SHMKV_EBUSY (-1015)     /* contention bound hit; retry */

typedef struct shmkv_options {
  uint32_t struct_size;   /* = sizeof(shmkv_options_t) */
  uint64_t memory_bytes;  /* segment size; default 64 MiB, at least 1 MiB */
  uint64_t max_items;     /* index sizing hint; default memory_bytes / 256 */
  uint32_t max_key_len;   /* default 250, at most 4096 */
  uint32_t max_value_len; /* default 1 MiB; capped at a quarter of the data area */
  uint32_t mode;          /* file mode of a new segment; default 0600 */
  uint32_t flags;         /* SHMKV_OPEN_CREATE, SHMKV_OPEN_EXCL, SHMKV_OPEN_READONLY */
  uint32_t evict_policy;  /* SHMKV_EVICT_ALLKEYS (default), _VOLATILE, _NONE */
} shmkv_options_t;

SHMKV_EXPORT void shmkv_options_init(shmkv_options_t *opts);

/* name: "[A-Za-z0-9._-]{1,200}", optionally with one leading '/', is a POSIX
   shm object ("sessions" and "/sessions" are the same); a path that starts
   with "./" or has a '/' after its first character ("/dev/shm/x",
   "/mnt/huge/cache") is a file mapping (tmpfs or hugetlbfs). opts may be
   NULL to open an existing segment. With SHMKV_OPEN_CREATE an existing
   segment is opened as it is (its own geometry wins); with SHMKV_OPEN_EXCL
   as well, an existing segment gives SHMKV_EEXIST. */
SHMKV_EXPORT int shmkv_open(const char *name, const shmkv_options_t *opts, shmkv_t **out);
SHMKV_EXPORT int shmkv_close(shmkv_t *kv);       /* NULL is a no-op */
SHMKV_EXPORT int shmkv_unlink(const char *name); /* remove the segment name */

typedef struct shmkv_item_info {
  uint32_t struct_size;
  uint64_t cas;         /* version token: changes on EVERY successful write of
                           the key, incr and touch included */
  int64_t ttl_ms;       /* remaining TTL; -1 = no expiry */
  uint32_t user_flags;  /* opaque 32 bits stored with the value */
  uint64_t value_len;   /* length of the value (filled by get and scan) */
  uint32_t write_flags; /* SHMKV_WRITE_NOEVICT if the entry was stored with it;
                           filled only when struct_size covers this field */
} shmkv_item_info_t;

/* Copies the value into buf. If buf_len is too small: returns
   SHMKV_ETOOSMALL, copies nothing, *val_len = size needed, info filled.
   info may be NULL. buf may be NULL when buf_len is 0 (a size query: it
   returns SHMKV_ETOOSMALL, or 0 for an empty value, which is legal). */
SHMKV_EXPORT int shmkv_get(shmkv_t *kv, const void *key, size_t key_len, void *buf, size_t buf_len,
                           size_t *val_len, shmkv_item_info_t *info);
/* shmkv_get for callers that pay for every argument (PHP FFI, ctypes):
   returns the value's length (>= 0), having copied the value into buf if
   it fits (length <= buf_len; else nothing is copied: grow buf to the
   length returned and call again), or a negative error code
   (SHMKV_ENOTFOUND, SHMKV_EINVAL, ..., or an errno negated, e.g. -ENOMEM;
   message in shmkv_last_error). */
SHMKV_EXPORT int64_t shmkv_get_into(shmkv_t *kv, const void *key, size_t key_len, void *buf,
                                    size_t buf_len);
/* Same, into a malloc'd buffer released with shmkv_free. */
SHMKV_EXPORT int shmkv_get_alloc(shmkv_t *kv, const void *key, size_t key_len, void **val,
                                 size_t *val_len, shmkv_item_info_t *info);
SHMKV_EXPORT void shmkv_free(void *p);

/* Serve-stale read: like shmkv_get, but an entry whose TTL has passed and
   that is still in memory is returned too, with *expired_ms = how long ago
   it expired (>= 1; 0 for an entry that has not expired). Plain reads never
   return expired data; this is the explicit opt-in, for serving the
   previous value while one process recomputes it (see stampede protection
   in the README). An expired entry stays readable until something reclaims
   it: a plain read or write of the key, the janitor (shmkvd) or eviction;
   shmkv_get_stale itself never removes it. info->ttl_ms is 0 for an expired
   entry. A stale answer counts as a miss in the stats. expired_ms may be
   NULL. */
SHMKV_EXPORT int shmkv_get_stale(shmkv_t *kv, const void *key, size_t key_len, void *buf,
                                 size_t buf_len, size_t *val_len, shmkv_item_info_t *info,
                                 uint64_t *expired_ms);

/* Batch get: looks up n keys together, overlapping their memory accesses
   (every key's bucket pair is prefetched, then every matching entry, and
   only then is each read and validated as shmkv_get does). For key i:
   bufs[i]/buf_lens[i] receive the value and val_lens[i] its length, and
   rcs[i] is that key's result: 0, SHMKV_ENOTFOUND, SHMKV_ETOOSMALL
   (nothing copied, val_lens[i] = size needed), or SHMKV_EINVAL /
   SHMKV_EKEYTOOBIG for a bad key. infos may be NULL; else infos[i] is
   filled as shmkv_get fills its info (set each struct_size first). Each key
   is read atomically; the batch as a whole is not a snapshot. Returns 0
   when the arguments are valid (the per-key results are in rcs), else an
   error code and rcs untouched. */
SHMKV_EXPORT int shmkv_mget(shmkv_t *kv, size_t n, const void *const *keys, const size_t *key_lens,
                            void *const *bufs, const size_t *buf_lens, size_t *val_lens, int *rcs,
                            shmkv_item_info_t *infos);

typedef struct shmkv_write_opts {
  uint32_t struct_size;
  uint32_t mode;       /* SHMKV_SET (upsert), SHMKV_ADD (only if absent),
                          SHMKV_REPLACE (only if present) */
  uint64_t ttl_ms;     /* 0 = no expiry */
  uint64_t expect_cas; /* 0 = any; else store only if the current cas equals it */
  uint32_t user_flags;
  uint32_t flags; /* SHMKV_WRITE_KEEPTTL, SHMKV_WRITE_NOEVICT */
} shmkv_write_opts_t;

SHMKV_EXPORT void shmkv_write_opts_init(shmkv_write_opts_t *opts);

/* ttl_ms: 0 = no expiry; more than 2^40 ms (about 35 years) is SHMKV_EINVAL.
   A write replaces user_flags and the NOEVICT flag with those it carries. */
SHMKV_EXPORT int shmkv_set(shmkv_t *kv, const void *key, size_t key_len, const void *val,
                           size_t val_len, uint64_t ttl_ms);
/* opts may be NULL (= plain set, no TTL); new_cas may be NULL.
   REPLACE and expect_cas on a missing key return SHMKV_ENOTFOUND. */
SHMKV_EXPORT int shmkv_store(shmkv_t *kv, const void *key, size_t key_len, const void *val,
                             size_t val_len, const shmkv_write_opts_t *opts, uint64_t *new_cas);
/* expect_cas 0 = unconditional. */
SHMKV_EXPORT int shmkv_delete(shmkv_t *kv, const void *key, size_t key_len, uint64_t expect_cas);
/* Atomic add. A missing (or expired) key is created holding `initial` with
   ttl_ms (0 = none) and *result = initial (delta is NOT applied: the
   memcached binary-protocol rule); an existing key gets += delta, keeps its
   TTL and gets a new cas token. The value is a signed 64-bit decimal
   integer: get returns it as ASCII ("42"), and incr works on a value that
   was set as a decimal string matching -?[0-9]{1,19} exactly. Anything else:
   SHMKV_ENOTNUM. Overflow: SHMKV_EOVERFLOW, value unchanged. incr never
   returns SHMKV_EBUSY: it retries until it succeeds. result may be NULL. */
SHMKV_EXPORT int shmkv_incr(shmkv_t *kv, const void *key, size_t key_len, int64_t delta,
                            int64_t initial, uint64_t ttl_ms, int64_t *result);
SHMKV_EXPORT int shmkv_touch(shmkv_t *kv, const void *key, size_t key_len,
                             uint64_t ttl_ms); /* 0 = persist */
SHMKV_EXPORT int shmkv_ttl(shmkv_t *kv, const void *key, size_t key_len,
                           int64_t *ttl_ms); /* -1 = none */
SHMKV_EXPORT int shmkv_clear(shmkv_t *kv);   /* remove every entry */

/* Rate limiter (GCRA, the generic cell rate algorithm): allows bursts of up
   to `burst` requests, then `rate` per `period_ms`, decided and recorded in
   one atomic step per call (one compare-and-swap of the key's slot; a
   denied request writes nothing). The key holds the limiter's theoretical
   arrival time (decimal nanoseconds of segment time) and expires when the
   limiter is back to a full burst, so idle limiters cost nothing; until
   then it is never evicted (an evicted limiter would grant a new burst). On return
   *allowed is 1 or 0; *retry_after_ms is 0 when allowed, else how long until
   one request would be (rounded up); *remaining is how many more requests
   would be allowed right now. Arguments: rate, period_ms and burst >= 1, and
   rate / period_ms at most one request per microsecond; otherwise
   SHMKV_EINVAL, as for a NULL output pointer. A key holding something else
   than a limiter state: SHMKV_ENOTNUM, value unchanged. */
SHMKV_EXPORT int shmkv_throttle(shmkv_t *kv, const void *key, size_t key_len, uint64_t rate,
                                uint64_t period_ms, uint64_t burst, int *allowed,
                                uint64_t *retry_after_ms, uint64_t *remaining);

/* Cursor scan: start with *cursor = 0; each call examines at most `limit`
   index slots (so its cost is bounded), calls fn for each live entry whose
   key starts with prefix (prefix may be NULL when prefix_len is 0), and sets
   *cursor to the next slot to examine; *cursor == 0 on return means done.
   Every key present for the whole scan is visited at least once; writers are
   never blocked. fn returns 0 to go on, non-zero to stop early (then *cursor
   points just past the entry it was given). fn may call any shmkv function,
   including delete on the key it was given. */
typedef int (*shmkv_scan_fn)(const void *key, size_t key_len, const shmkv_item_info_t *info,
                             void *ctx);
SHMKV_EXPORT int shmkv_scan(shmkv_t *kv, uint64_t *cursor, const void *prefix, size_t prefix_len,
                            size_t limit, shmkv_scan_fn fn, void *ctx);

typedef struct shmkv_stats {
  uint32_t struct_size;
  uint64_t memory_bytes, memory_used, items, capacity_items;
  uint64_t gets, hits, misses, sets, deletes, incrs, cas_failures;
  uint64_t evictions, expirations, recovered_processes, attached_processes;
} shmkv_stats_t;
/* items counts linked entries, expired-but-not-yet-reclaimed ones included;
   exact when no write is in flight. capacity_items = max_items. */
SHMKV_EXPORT int shmkv_stats(shmkv_t *kv, shmkv_stats_t *out);

/* Recovery, any process may call it: frees what dead processes held.
   recovered_processes may be NULL. */
SHMKV_EXPORT int shmkv_recover(shmkv_t *kv, uint32_t *recovered_processes);

/* Consistency check (read-only; safe on a corrupted segment). Verifies:
   every LIVE or PENDING slot points to an in-range block of the slot's
   size class whose key hashes to that slot's bucket pair and tag; no block
   is referenced twice; at most one LIVE entry per key; LIVE slots point to
   LINKED blocks and PENDING ones to ALLOC, LINKED or KILLED blocks; page
   table and block states agree. With SHMKV_CHECK_OFFLINE (nobody else
   attached, recovery done) it also accounts for every block: each is FREE
   or referenced (no leak), and the item counter matches the index (exact
   unless a process died mid-write: each such write may leave it off by one).
   Returns 0 when the check ran (report->problems says what it found), or
   an error code when it could not run. */
#define SHMKV_CHECK_OFFLINE 1
typedef struct shmkv_check_report {
  uint32_t struct_size;
  uint64_t slots_live, slots_pending;
  uint64_t blocks_free, blocks_alloc, blocks_linked, blocks_killed;
  uint64_t problems;       /* invariant violations found (0 = clean) */
  uint64_t leaked_blocks;  /* with SHMKV_CHECK_OFFLINE: blocks neither free nor referenced */
  char first_problem[256]; /* what the first violation was, "" if none */
} shmkv_check_report_t;
SHMKV_EXPORT int shmkv_check(shmkv_t *kv, uint32_t flags, shmkv_check_report_t *report);

/* What a segment is: geometry, limits, creation, clock and who is attached
   (what `shmkv info` shows). Read-only. */
typedef struct shmkv_info {
  uint32_t struct_size;
  uint32_t layout_version;
  uint64_t memory_bytes; /* segment size */
  uint64_t max_items;    /* capacity hint it was created with */
  uint64_t index_slots;  /* 4 per bucket */
  uint64_t data_bytes;   /* pages for values */
  uint64_t page_size;
  uint32_t size_classes;
  uint32_t max_key_len, max_value_len, evict_policy;
  uint32_t mode; /* file mode it was created with */
  uint32_t creator_pid;
  uint64_t created_realtime_ns; /* wall-clock creation time, ns since the Unix epoch */
  uint64_t clock_ms;            /* segment time now (CLOCK_MONOTONIC ms since creation) */
  char boot_id[40];             /* boot it belongs to */
  uint32_t janitor_pid;         /* 0 = no janitor */
  uint32_t attached_processes;
  uint32_t process_slots;   /* how many processes may attach at once */
  int32_t superseded;       /* 1 once copied into a new segment */
  uint64_t huge_page_bytes; /* bytes of the segment that 2-MiB pages back
                               (README "Huge pages"); 0: 4-KiB pages only */
} shmkv_info_t;
SHMKV_EXPORT int shmkv_info(shmkv_t *kv, shmkv_info_t *out);

/* Near cache of an upstream Redis (README "Several hosts"). A segment is a
   near cache when a daemon (shmkvd --upstream) has configured it: the
   daemon holds the host's invalidation stream and deletes local copies of
   keys written in Redis; the near-cache clients (libshmkv_upstream) read
   local copies only while the stream is known to be current, and go to
   Redis otherwise. The core library only keeps this state in the header. */
#define SHMKV_UPSTREAM_NONE 0 /* not a near cache */
#define SHMKV_UPSTREAM_UP 1   /* invalidations are current: local copies may be served */
#define SHMKV_UPSTREAM_DOWN 2 /* stream lost, lagging or not yet synced: bypass them */
/* user_flags of a near-cache placeholder: an entry that stands for a fetch
   or write in flight (empty value, short TTL); not a value. */
#define SHMKV_UPSTREAM_PLACEHOLDER 0xffffffffu

typedef struct shmkv_upstream {
  uint32_t struct_size;
  uint32_t state;            /* effective: UP only while the heartbeat is
                                within max_lag_ms, else DOWN (or NONE) */
  uint64_t generation;       /* changes with every published state change */
  uint64_t heartbeat_age_ms; /* how old the last confirmation of the
                                stream is; UINT64_MAX: none yet */
  uint64_t max_lag_ms;
  char url[256];      /* redis://host:port[/db] */
  char prefixes[512]; /* tracked key prefixes, space-separated ("" = all) */
} shmkv_upstream_t;

/* The near-cache configuration and state, for any handle. SHMKV_EBUSY if
   the configuration stays half-written (a daemon died while writing it). */
SHMKV_EXPORT int shmkv_upstream_get(shmkv_t *kv, shmkv_upstream_t *out);
/* Just the effective state and generation: cheap, for every operation. */
SHMKV_EXPORT int shmkv_upstream_state(shmkv_t *kv, uint32_t *state, uint64_t *generation);
/* For the daemon that holds the stream. configure publishes the upstream's
   address, prefixes and lag bound (state DOWN until set UP); set_state
   publishes UP or DOWN (or NONE: no longer a near cache) with a new
   generation; heartbeat records that every invalidation of a write Redis
   acknowledged more than confirmed_age_ms ago has been applied. */
SHMKV_EXPORT int shmkv_upstream_configure(shmkv_t *kv, const char *url, const char *prefixes,
                                          uint64_t max_lag_ms);
SHMKV_EXPORT int shmkv_upstream_set_state(shmkv_t *kv, uint32_t state);
SHMKV_EXPORT int shmkv_upstream_heartbeat(shmkv_t *kv, uint64_t confirmed_age_ms);

/* The attached processes: fills up to cap entries, *count = how many are
   attached (may exceed cap). alive = 1 if its lock is held (0: died, not
   yet recovered). */
typedef struct shmkv_process_info {
  uint32_t pid;
  int32_t alive;
  uint64_t attach_realtime_ns;
} shmkv_process_info_t;
SHMKV_EXPORT int shmkv_processes(shmkv_t *kv, shmkv_process_info_t *out, size_t cap, size_t *count);

SHMKV_EXPORT const char *shmkv_strerror(int code); /* never NULL, also for errno values */
SHMKV_EXPORT const char *shmkv_version(void);

/* The message of the last error returned on this thread by any shmkv call,
   with the detail shmkv_strerror cannot give (which header field did not
   match, which limit was exceeded). Never NULL; "" after a success. */
SHMKV_EXPORT const char *shmkv_last_error(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* SHMKV_SHMKV_H_ */
