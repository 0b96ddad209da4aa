/* The C API compiled as C11 and linked with the C compiler against the
   shared library, as a binding or a plain C program uses it: open, set, get,
   get_alloc, store, incr, delete, scan, stats, close, unlink and the error
   codes. Prints "N passed, N failed"; exits non-zero on any failure. */
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmkv/shmkv.h"

static int g_passed = 0;
static int g_failed = 0;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (cond) {                                                                \
      ++g_passed;                                                              \
    } else {                                                                   \
      ++g_failed;                                                              \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                          \
  } while (0)

#define CHECK_RC(call, want)                                                                   \
  do {                                                                                         \
    int rc_ = (call);                                                                          \
    if (rc_ == (want)) {                                                                       \
      ++g_passed;                                                                              \
    } else {                                                                                   \
      ++g_failed;                                                                              \
      fprintf(stderr, "%s:%d: %s returned %d (%s), want %d\n", __FILE__, __LINE__, #call, rc_, \
              shmkv_strerror(rc_), (want));                                                    \
    }                                                                                          \
  } while (0)

struct scan_ctx {
  int count;
  int bad;
};

static int count_keys(const void *key, size_t key_len, const shmkv_item_info_t *info, void *ctx) {
  struct scan_ctx *c = (struct scan_ctx *)ctx;
  if (key_len < 2 || memcmp(key, "s:", 2) != 0 || info->value_len != 3) c->bad++;
  c->count++;
  return 0;
}

static int stop_at_once(const void *key, size_t key_len, const shmkv_item_info_t *info, void *ctx) {
  (void)key;
  (void)key_len;
  (void)info;
  ++*(int *)ctx;
  return 1;
}

int main(void) {
  char name[128];
  char path[160];
  shmkv_options_t opts;
  shmkv_t *kv = NULL;
  char buf[64];
  size_t len = 0;
  void *p = NULL;
  shmkv_item_info_t info;
  shmkv_write_opts_t w;
  uint64_t cas = 0, cas2 = 0;
  int64_t n = 0;
  int64_t ttl = 0;
  shmkv_stats_t st;
  struct scan_ctx sc = {0, 0};
  uint64_t cursor = 0;
  int i;
  int calls = 0;
  struct stat sb;

  snprintf(name, sizeof(name), "shmkv-test-%ld-c-api", (long)getpid());
  snprintf(path, sizeof(path), "/dev/shm/%s", name);
  shmkv_unlink(name);

  /* Constants are part of the ABI. */
  CHECK(SHMKV_ENOTFOUND == -1001 && SHMKV_EBUSY == -1015);
  CHECK(SHMKV_OPEN_CREATE == 1 && SHMKV_OPEN_EXCL == 2 && SHMKV_OPEN_READONLY == 4);
  CHECK(SHMKV_ADD == 1 && SHMKV_REPLACE == 2 && SHMKV_WRITE_NOEVICT == 2);

  /* open */
  CHECK_RC(shmkv_open(name, NULL, &kv), SHMKV_ENOSEG);
  shmkv_options_init(&opts);
  CHECK(opts.struct_size == sizeof(opts));
  opts.memory_bytes = 4u << 20;
  opts.flags = SHMKV_OPEN_CREATE | SHMKV_OPEN_EXCL;
  CHECK_RC(shmkv_open("bad name!", &opts, &kv), SHMKV_EINVAL);
  CHECK_RC(shmkv_open(name, &opts, &kv), 0);
  if (kv == NULL) {
    printf("%d passed, %d failed\n", g_passed, g_failed + 1);
    return 1;
  }
  {
    shmkv_t *again = NULL;
    CHECK_RC(shmkv_open(name, &opts, &again), SHMKV_EEXIST);
  }
  CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600);

  /* set / get */
  CHECK_RC(shmkv_set(kv, "hello", 5, "world", 5, 0), 0);
  CHECK_RC(shmkv_get(kv, "hello", 5, buf, sizeof(buf), &len, NULL), 0);
  CHECK(len == 5 && memcmp(buf, "world", 5) == 0);
  CHECK_RC(shmkv_get(kv, "hello", 5, NULL, 0, &len, NULL), SHMKV_ETOOSMALL);
  CHECK(len == 5);
  CHECK_RC(shmkv_get(kv, "nope", 4, buf, sizeof(buf), &len, NULL), SHMKV_ENOTFOUND);
  CHECK_RC(shmkv_set(kv, "a\0b", 3, "x\0y", 3, 0), 0);
  CHECK_RC(shmkv_get(kv, "a\0b", 3, buf, sizeof(buf), &len, NULL), 0);
  CHECK(len == 3 && memcmp(buf, "x\0y", 3) == 0);
  CHECK_RC(shmkv_get(kv, "a", 1, buf, sizeof(buf), &len, NULL), SHMKV_ENOTFOUND);

  /* get_into: the length, copied only if it fits; errors negative */
  {
    char small[3] = {'?', '?', '?'};
    CHECK(shmkv_get_into(kv, "hello", 5, buf, sizeof(buf)) == 5 && memcmp(buf, "world", 5) == 0);
    CHECK(shmkv_get_into(kv, "hello", 5, small, sizeof(small)) == 5 && small[0] == '?');
    CHECK(shmkv_get_into(kv, "hello", 5, NULL, 0) == 5);
    CHECK(shmkv_get_into(kv, "a\0b", 3, buf, sizeof(buf)) == 3 && memcmp(buf, "x\0y", 3) == 0);
    CHECK(shmkv_get_into(kv, "nope", 4, buf, sizeof(buf)) == SHMKV_ENOTFOUND);
    CHECK(strstr(shmkv_last_error(), "not found") != NULL);
    CHECK(shmkv_get_into(kv, "", 0, buf, sizeof(buf)) == SHMKV_EINVAL);
    CHECK(shmkv_get_into(kv, "hello", 5, NULL, 4) == SHMKV_EINVAL);
    CHECK(strstr(shmkv_last_error(), "buf is NULL") != NULL);
    CHECK(shmkv_get_into(NULL, "hello", 5, buf, sizeof(buf)) == SHMKV_EINVAL);
  }

  /* get_alloc */
  CHECK_RC(shmkv_get_alloc(kv, "hello", 5, &p, &len, NULL), 0);
  CHECK(p != NULL && len == 5 && memcmp(p, "world", 5) == 0);
  shmkv_free(p);

  /* store: modes and cas */
  shmkv_write_opts_init(&w);
  w.mode = SHMKV_ADD;
  w.user_flags = 77;
  CHECK_RC(shmkv_store(kv, "lease", 5, "me", 2, &w, &cas), 0);
  CHECK(cas != 0);
  CHECK_RC(shmkv_store(kv, "lease", 5, "you", 3, &w, NULL), SHMKV_EEXIST);
  memset(&info, 0, sizeof(info));
  info.struct_size = sizeof(info);
  CHECK_RC(shmkv_get(kv, "lease", 5, buf, sizeof(buf), &len, &info), 0);
  CHECK(info.cas == cas && info.user_flags == 77 && info.ttl_ms == -1 && info.value_len == 2);
  w.mode = SHMKV_REPLACE;
  CHECK_RC(shmkv_store(kv, "nolease", 7, "x", 1, &w, NULL), SHMKV_ENOTFOUND);
  w.mode = SHMKV_SET;
  w.expect_cas = cas + 1;
  CHECK_RC(shmkv_store(kv, "lease", 5, "x", 1, &w, NULL), SHMKV_ECAS);
  w.expect_cas = cas;
  CHECK_RC(shmkv_store(kv, "lease", 5, "x", 1, &w, &cas2), 0);
  CHECK(cas2 != cas);
  CHECK_RC(shmkv_store(kv, "plain", 5, "p", 1, NULL, NULL), 0);

  /* incr */
  CHECK_RC(shmkv_incr(kv, "n", 1, 5, 10, 0, &n), 0);
  CHECK(n == 10);
  CHECK_RC(shmkv_incr(kv, "n", 1, 5, 10, 0, &n), 0);
  CHECK(n == 15);
  CHECK_RC(shmkv_get(kv, "n", 1, buf, sizeof(buf), &len, NULL), 0);
  CHECK(len == 2 && memcmp(buf, "15", 2) == 0);
  CHECK_RC(shmkv_incr(kv, "hello", 5, 1, 0, 0, &n), SHMKV_ENOTNUM);
  CHECK_RC(shmkv_set(kv, "max", 3, "9223372036854775807", 19, 0), 0);
  CHECK_RC(shmkv_incr(kv, "max", 3, 1, 0, 0, NULL), SHMKV_EOVERFLOW);

  /* throttle: 5 per second in bursts of 2 */
  {
    int allowed = -1;
    uint64_t retry = 99, remaining = 99;
    CHECK_RC(shmkv_throttle(kv, "rl", 2, 5, 1000, 2, &allowed, &retry, &remaining), 0);
    CHECK(allowed == 1 && retry == 0 && remaining == 1);
    CHECK_RC(shmkv_throttle(kv, "rl", 2, 5, 1000, 2, &allowed, &retry, &remaining), 0);
    CHECK(allowed == 1 && remaining == 0);
    CHECK_RC(shmkv_throttle(kv, "rl", 2, 5, 1000, 2, &allowed, &retry, &remaining), 0);
    CHECK(allowed == 0 && retry > 0 && retry <= 200 && remaining == 0);
    CHECK_RC(shmkv_throttle(kv, "rl", 2, 0, 1000, 2, &allowed, &retry, &remaining), SHMKV_EINVAL);
    CHECK_RC(shmkv_throttle(kv, "hello", 5, 5, 1000, 2, &allowed, &retry, &remaining),
             SHMKV_ENOTNUM);
  }

  /* get_stale: a fresh entry is returned with expired_ms = 0 */
  {
    uint64_t expired_ms = 99;
    CHECK_RC(shmkv_get_stale(kv, "plain", 5, buf, sizeof(buf), &len, &info, &expired_ms), 0);
    CHECK(len == 1 && buf[0] == 'p' && expired_ms == 0);
    CHECK_RC(shmkv_get_stale(kv, "absent", 6, buf, sizeof(buf), &len, NULL, NULL), SHMKV_ENOTFOUND);
  }

  /* ttl / touch */
  CHECK_RC(shmkv_set(kv, "t", 1, "v", 1, 60000), 0);
  CHECK_RC(shmkv_ttl(kv, "t", 1, &ttl), 0);
  CHECK(ttl > 0 && ttl <= 60000);
  CHECK_RC(shmkv_touch(kv, "t", 1, 0), 0);
  CHECK_RC(shmkv_ttl(kv, "t", 1, &ttl), 0);
  CHECK(ttl == -1);
  CHECK_RC(shmkv_set(kv, "t", 1, "v", 1, (1ull << 40) + 1), SHMKV_EINVAL);

  /* argument errors */
  CHECK_RC(shmkv_set(kv, "", 0, "v", 1, 0), SHMKV_EINVAL);
  CHECK_RC(shmkv_set(kv, NULL, 1, "v", 1, 0), SHMKV_EINVAL);
  {
    char big_key[251];
    memset(big_key, 'k', sizeof(big_key));
    CHECK_RC(shmkv_set(kv, big_key, sizeof(big_key), "v", 1, 0), SHMKV_EKEYTOOBIG);
  }
  {
    size_t big_len = (1u << 20) + 1;
    char *big = (char *)calloc(1, big_len);
    CHECK(big != NULL);
    if (big != NULL) {
      CHECK_RC(shmkv_set(kv, "big", 3, big, big_len, 0), SHMKV_EVALTOOBIG);
      free(big);
    }
  }

  /* delete */
  CHECK_RC(shmkv_delete(kv, "lease", 5, cas), SHMKV_ECAS);
  CHECK_RC(shmkv_delete(kv, "lease", 5, cas2), 0);
  CHECK_RC(shmkv_delete(kv, "lease", 5, 0), SHMKV_ENOTFOUND);

  /* scan */
  {
    int set_failures = 0;
    for (i = 0; i < 50; ++i) {
      char k[16];
      int kl = snprintf(k, sizeof(k), "s:%d", i);
      set_failures += shmkv_set(kv, k, (size_t)kl, "val", 3, 0) != 0;
    }
    CHECK(set_failures == 0);
  }
  {
    int scan_rc = 0;
    do {
      scan_rc = shmkv_scan(kv, &cursor, "s:", 2, 10, count_keys, &sc);
    } while (scan_rc == 0 && cursor != 0);
    CHECK_RC(scan_rc, 0);
  }
  CHECK(sc.count == 50 && sc.bad == 0);
  cursor = 0;
  CHECK(shmkv_scan(kv, &cursor, NULL, 0, 1000000, stop_at_once, &calls) >= 0);
  CHECK(calls == 1 && cursor != 0);

  /* stats */
  memset(&st, 0, sizeof(st));
  st.struct_size = sizeof(st);
  CHECK_RC(shmkv_stats(kv, &st), 0);
  CHECK(st.memory_bytes == (4u << 20));
  CHECK(st.items == 57); /* 56 + the rate limiter "rl" */
  CHECK(st.hits > 0 && st.misses > 0 && st.sets > 0 && st.incrs >= 2);
  CHECK(st.attached_processes >= 1);

  /* strerror / version */
  {
    int empty = 0;
    for (i = SHMKV_EBUSY; i <= SHMKV_ENOTFOUND; ++i)
      empty += shmkv_strerror(i) == NULL || shmkv_strerror(i)[0] == '\0';
    CHECK(empty == 0);
  }
  CHECK(shmkv_strerror(2) != NULL);
  CHECK(strstr(shmkv_version(), SHMKV_VERSION_STRING) != NULL);

  /* clear, close, unlink */
  CHECK_RC(shmkv_clear(kv), 0);
  CHECK_RC(shmkv_get(kv, "hello", 5, buf, sizeof(buf), &len, NULL), SHMKV_ENOTFOUND);
  CHECK_RC(shmkv_close(kv), 0);
  CHECK_RC(shmkv_close(NULL), 0);
  CHECK_RC(shmkv_unlink(name), 0);
  CHECK_RC(shmkv_open(name, NULL, &kv), SHMKV_ENOSEG);

  printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
