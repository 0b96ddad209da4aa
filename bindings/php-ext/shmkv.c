/* shmkv as a native PHP extension: the class Shmkv (and ShmkvException)
   of bindings/php/Shmkv.php, with the same methods, arguments, results and
   errors, calling libshmkv directly instead of through FFI.

     extension=shmkv.so            (php.ini, or php -d extension=...)
     $kv = Shmkv::create('sessions', ['memory_bytes' => 64 << 20]);
     $kv->set('user:42', 'alice', 30000);
     $v = $kv->get('user:42');     // string, or null when missing

   Why: an FFI call costs more than a whole apcu_fetch() (bench/results/
   php.md), and FPM allows FFI only through preloading. With the extension
   loaded, bindings/php/Shmkv.php declares nothing and code written for it
   (ShmkvSessionHandler.php included) runs on this class unchanged.

   Build: CMake builds it beside libshmkv when php-config is found
   (build/bindings/php-ext/shmkv.so); or the PECL way, phpize &&
   ./configure --with-shmkv=PREFIX && make (config.m4). */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <string.h>

#include "ext/spl/spl_exceptions.h"
#include "ext/standard/info.h"
#include "php.h"
#include "shmkv/shmkv.h"
#include "zend_exceptions.h"
#include "zend_interfaces.h"

#define PHP_SHMKV_EXT_VERSION "1.0.0"

#if defined(ZTS) && defined(COMPILE_DL_SHMKV)
ZEND_TSRMLS_CACHE_DEFINE()
#endif

static zend_class_entry *shmkv_ce;
static zend_class_entry *shmkv_exception_ce;
static zend_object_handlers shmkv_handlers;

typedef struct {
  shmkv_t *h; /* NULL once closed */
  zend_object std;
} php_shmkv;

static inline php_shmkv *php_shmkv_from(zend_object *o) {
  return (php_shmkv *)((char *)o - XtOffsetOf(php_shmkv, std));
}
#define THIS_SHMKV() php_shmkv_from(Z_OBJ_P(ZEND_THIS))

static zend_object *php_shmkv_create(zend_class_entry *ce) {
  php_shmkv *o = zend_object_alloc(sizeof(php_shmkv), ce);
  zend_object_std_init(&o->std, ce);
  object_properties_init(&o->std, ce);
  o->std.handlers = &shmkv_handlers;
  return &o->std;
}

static void php_shmkv_free(zend_object *obj) {
  php_shmkv *o = php_shmkv_from(obj);
  if (o->h != NULL) {
    shmkv_close(o->h);
    o->h = NULL;
  }
  zend_object_std_dtor(obj);
}

/* "shmkv WHAT: strerror[: last_error]", code = the library's code: the
   message Shmkv.php builds. */
static void php_shmkv_throw(int rc, const char *what) {
  /* The thread's last error first: no other shmkv call in between. */
  const char *detail = shmkv_last_error();
  const char *name = shmkv_strerror(rc);
  if (detail != NULL && detail[0] != '\0' && strcmp(detail, name) != 0)
    zend_throw_exception_ex(shmkv_exception_ce, rc, "shmkv %s: %s: %s", what, name, detail);
  else
    zend_throw_exception_ex(shmkv_exception_ce, rc, "shmkv %s: %s", what, name);
}

static shmkv_t *php_shmkv_handle(zval *this_zv) {
  php_shmkv *o = php_shmkv_from(Z_OBJ_P(this_zv));
  if (o->h == NULL)
    zend_throw_exception(shmkv_exception_ce, "shmkv: handle is closed", SHMKV_EINVAL);
  return o->h;
}

/* ---- static methods ---------------------------------------------------- */

static void php_shmkv_open(INTERNAL_FUNCTION_PARAMETERS, zend_string *name, HashTable *options,
                           bool create, bool readonly) {
  shmkv_options_t opts;
  shmkv_options_init(&opts);
  uint32_t flags = create ? SHMKV_OPEN_CREATE : 0;
  if (readonly) flags |= SHMKV_OPEN_READONLY;
  if (options != NULL) {
    zend_ulong idx;
    zend_string *k;
    zval *v;
    ZEND_HASH_FOREACH_KEY_VAL(options, idx, k, v) {
      if (k == NULL) {
        zend_throw_exception_ex(spl_ce_InvalidArgumentException, 0,
                                "Shmkv: unknown option '" ZEND_ULONG_FMT "'", idx);
        RETURN_THROWS();
      }
      if (zend_string_equals_literal(k, "memory_bytes")) {
        opts.memory_bytes = (uint64_t)zval_get_long(v);
      } else if (zend_string_equals_literal(k, "max_items")) {
        opts.max_items = (uint64_t)zval_get_long(v);
      } else if (zend_string_equals_literal(k, "max_key_len")) {
        opts.max_key_len = (uint32_t)zval_get_long(v);
      } else if (zend_string_equals_literal(k, "max_value_len")) {
        opts.max_value_len = (uint32_t)zval_get_long(v);
      } else if (zend_string_equals_literal(k, "mode")) {
        opts.mode = (uint32_t)zval_get_long(v);
      } else if (zend_string_equals_literal(k, "evict_policy")) {
        opts.evict_policy = (uint32_t)zval_get_long(v);
      } else if (zend_string_equals_literal(k, "exclusive")) {
        if (zend_is_true(v)) flags |= SHMKV_OPEN_EXCL;
      } else if (zend_string_equals_literal(k, "readonly")) {
        if (zend_is_true(v)) flags |= SHMKV_OPEN_READONLY;
      } else if (zend_string_equals_literal(k, "precise_clock")) {
        if (zend_is_true(v)) flags |= SHMKV_OPEN_PRECISE_CLOCK;
      } else {
        zend_throw_exception_ex(spl_ce_InvalidArgumentException, 0, "Shmkv: unknown option '%s'",
                                ZSTR_VAL(k));
        RETURN_THROWS();
      }
    }
    ZEND_HASH_FOREACH_END();
  }
  opts.flags = flags;
  shmkv_t *h = NULL;
  int rc = shmkv_open(ZSTR_VAL(name), &opts, &h);
  if (rc != 0) {
    zend_string *what = zend_strpprintf(0, "open(%s)", ZSTR_VAL(name));
    php_shmkv_throw(rc, ZSTR_VAL(what));
    zend_string_release(what);
    RETURN_THROWS();
  }
  object_init_ex(return_value, shmkv_ce);
  php_shmkv_from(Z_OBJ_P(return_value))->h = h;
}

/* Shmkv::open(string $name, bool $readonly = false): Shmkv */
PHP_METHOD(Shmkv, open) {
  zend_string *name;
  bool readonly = false;
  ZEND_PARSE_PARAMETERS_START(1, 2)
  Z_PARAM_STR(name)
  Z_PARAM_OPTIONAL
  Z_PARAM_BOOL(readonly)
  ZEND_PARSE_PARAMETERS_END();
  php_shmkv_open(INTERNAL_FUNCTION_PARAM_PASSTHRU, name, NULL, false, readonly);
}

/* Shmkv::create(string $name, array $options = []): Shmkv */
PHP_METHOD(Shmkv, create) {
  zend_string *name;
  HashTable *options = NULL;
  ZEND_PARSE_PARAMETERS_START(1, 2)
  Z_PARAM_STR(name)
  Z_PARAM_OPTIONAL
  Z_PARAM_ARRAY_HT(options)
  ZEND_PARSE_PARAMETERS_END();
  php_shmkv_open(INTERNAL_FUNCTION_PARAM_PASSTHRU, name, options, true, false);
}

/* Shmkv::unlink(string $name): bool */
PHP_METHOD(Shmkv, unlink) {
  zend_string *name;
  ZEND_PARSE_PARAMETERS_START(1, 1)
  Z_PARAM_STR(name)
  ZEND_PARSE_PARAMETERS_END();
  int rc = shmkv_unlink(ZSTR_VAL(name));
  if (rc == SHMKV_ENOSEG) RETURN_FALSE;
  if (rc != 0) {
    zend_string *what = zend_strpprintf(0, "unlink(%s)", ZSTR_VAL(name));
    php_shmkv_throw(rc, ZSTR_VAL(what));
    zend_string_release(what);
    RETURN_THROWS();
  }
  RETURN_TRUE;
}

/* Shmkv::version(): string */
PHP_METHOD(Shmkv, version) {
  ZEND_PARSE_PARAMETERS_NONE();
  RETURN_STRING(shmkv_version());
}

/* Shmkv::lastError(): string, the calling thread's last error detail. */
PHP_METHOD(Shmkv, lastError) {
  ZEND_PARSE_PARAMETERS_NONE();
  RETURN_STRING(shmkv_last_error());
}

PHP_METHOD(Shmkv, __construct) {
  /* Private: handles come from open() and create(). */
  ZEND_PARSE_PARAMETERS_NONE();
}

/* ---- methods ------------------------------------------------------------ */

/* close(): void — idempotent; later calls on the object throw. */
PHP_METHOD(Shmkv, close) {
  ZEND_PARSE_PARAMETERS_NONE();
  php_shmkv *o = THIS_SHMKV();
  if (o->h == NULL) return;
  shmkv_t *h = o->h;
  o->h = NULL;
  int rc = shmkv_close(h);
  if (rc != 0) {
    php_shmkv_throw(rc, "close");
    RETURN_THROWS();
  }
}

/* A ?int by-reference parameter, checked on entry as PHP checks a typed
   parameter: false (an exception is pending) when it holds another type. */
static bool php_shmkv_check_int_ref(zval *ref, uint32_t arg) {
  if (ref == NULL) return true;
  zval *cur = Z_REFVAL_P(ref);
  zend_long l;
  if (Z_TYPE_P(cur) == IS_NULL || Z_TYPE_P(cur) == IS_LONG) return true;
  if (!ZEND_ARG_USES_STRICT_TYPES() && zend_parse_arg_long_weak(cur, &l, arg)) return true;
  if (!EG(exception))
    zend_argument_type_error(arg, "must be of type ?int, %s given", zend_zval_type_name(cur));
  return false;
}

/* Reads key's value into a new string of len bytes, the size shmkv_get
   reported, and again at the new size while the value grows meanwhile.
   0 with *out set, or the library's code. */
static int php_shmkv_get_sized(shmkv_t *h, const char *key, size_t klen, size_t len,
                               shmkv_item_info_t *info, zend_string **out) {
  for (;;) {
    zend_string *s = zend_string_alloc(len, 0);
    size_t got = 0;
    int rc = shmkv_get(h, key, klen, ZSTR_VAL(s), len, &got, info);
    if (rc == 0) {
      ZSTR_LEN(s) = got;
      ZSTR_VAL(s)[got] = '\0';
      *out = s;
      return 0;
    }
    zend_string_efree(s);
    if (rc != SHMKV_ETOOSMALL) return rc;
    len = got;
  }
}

/* get(string $key, ?int &$cas = null): ?string — $cas receives the
   entry's cas token on a hit (for cas()). */
PHP_METHOD(Shmkv, get) {
  zend_string *key;
  zval *cas_ref = NULL;
  ZEND_PARSE_PARAMETERS_START(1, 2)
  Z_PARAM_STR(key)
  Z_PARAM_OPTIONAL
  Z_PARAM_ZVAL(cas_ref)
  ZEND_PARSE_PARAMETERS_END();
  if (!php_shmkv_check_int_ref(cas_ref, 2)) RETURN_THROWS();
  shmkv_t *h = php_shmkv_handle(ZEND_THIS);
  if (h == NULL) RETURN_THROWS();
  /* Small values (the common case) through the stack, copied once into the
     result; a larger one straight into a string of the size reported. With
     $cas, the token comes from the same read as the value. */
  shmkv_item_info_t info;
  shmkv_item_info_t *want = NULL;
  if (cas_ref != NULL) {
    memset(&info, 0, sizeof(info));
    info.struct_size = sizeof(info);
    want = &info;
  }
  char buf[1024];
  size_t len = 0;
  zend_string *s = NULL;
  int rc = shmkv_get(h, ZSTR_VAL(key), ZSTR_LEN(key), buf, sizeof(buf), &len, want);
  if (rc == 0) {
    s = zend_string_init(buf, len, 0);
  } else if (rc == SHMKV_ETOOSMALL) {
    rc = php_shmkv_get_sized(h, ZSTR_VAL(key), ZSTR_LEN(key), len, want, &s);
  }
  if (rc == 0) {
    if (want != NULL) ZEND_TRY_ASSIGN_REF_LONG(cas_ref, (zend_long)info.cas);
    RETURN_NEW_STR(s);
  }
  if (rc == SHMKV_ENOTFOUND) RETURN_NULL();
  php_shmkv_throw(rc, "get");
  RETURN_THROWS();
}

/* getMulti(array $keys): array — [key => value] of the keys present, in
   the order given (as apcu_fetch() of an array). Keys go to shmkv_mget in
   groups of 16, whose memory accesses overlap. */
PHP_METHOD(Shmkv, getMulti) {
  enum { kGroup = 16, kSmall = 512 };
  HashTable *keys;
  ZEND_PARSE_PARAMETERS_START(1, 1)
  Z_PARAM_ARRAY_HT(keys)
  ZEND_PARSE_PARAMETERS_END();
  zval *zk;
  ZEND_HASH_FOREACH_VAL(keys, zk) {
    ZVAL_DEREF(zk);
    if (Z_TYPE_P(zk) != IS_STRING) {
      zend_argument_type_error(1, "must contain only strings, %s given", zend_zval_type_name(zk));
      RETURN_THROWS();
    }
  }
  ZEND_HASH_FOREACH_END();
  shmkv_t *h = php_shmkv_handle(ZEND_THIS);
  if (h == NULL) RETURN_THROWS();
  array_init_size(return_value, zend_hash_num_elements(keys));
  zend_string *group[kGroup];
  const void *kp[kGroup];
  size_t kl[kGroup], bl[kGroup], vl[kGroup];
  void *bp[kGroup];
  int rcs[kGroup];
  char bufs[kGroup][kSmall];
  for (int i = 0; i < kGroup; ++i) {
    bp[i] = bufs[i];
    bl[i] = kSmall;
  }
  size_t m = 0;
  uint32_t left = zend_hash_num_elements(keys);
  ZEND_HASH_FOREACH_VAL(keys, zk) {
    ZVAL_DEREF(zk);
    group[m] = Z_STR_P(zk);
    kp[m] = ZSTR_VAL(group[m]);
    kl[m] = ZSTR_LEN(group[m]);
    ++m;
    --left;
    if (m < kGroup && left > 0) continue;
    int rc = shmkv_mget(h, m, kp, kl, bp, bl, vl, rcs, NULL);
    if (rc != 0) goto fail;
    for (size_t i = 0; i < m; ++i) {
      zend_string *v = NULL;
      rc = rcs[i];
      if (rc == 0) {
        v = zend_string_init(bufs[i], vl[i], 0);
      } else if (rc == SHMKV_ETOOSMALL) {
        /* Larger than the group's buffers: this one on its own. */
        rc = php_shmkv_get_sized(h, kp[i], kl[i], vl[i], NULL, &v);
      }
      if (rc == 0) {
        zval zv;
        ZVAL_STR(&zv, v);
        zend_symtable_update(Z_ARRVAL_P(return_value), group[i], &zv);
      } else if (rc != SHMKV_ENOTFOUND) {
        goto fail;
      }
    }
    m = 0;
    continue;
  fail:
    php_shmkv_throw(rc, "getMulti");
    zval_ptr_dtor(return_value);
    ZVAL_NULL(return_value); /* the engine frees it again on an exception */
    RETURN_THROWS();
  }
  ZEND_HASH_FOREACH_END();
}

/* set(string $key, string $value, int $ttlMs = 0): void */
PHP_METHOD(Shmkv, set) {
  zend_string *key, *value;
  zend_long ttl = 0;
  ZEND_PARSE_PARAMETERS_START(2, 3)
  Z_PARAM_STR(key)
  Z_PARAM_STR(value)
  Z_PARAM_OPTIONAL
  Z_PARAM_LONG(ttl)
  ZEND_PARSE_PARAMETERS_END();
  shmkv_t *h = php_shmkv_handle(ZEND_THIS);
  if (h == NULL) RETURN_THROWS();
  int rc =
      shmkv_set(h, ZSTR_VAL(key), ZSTR_LEN(key), ZSTR_VAL(value), ZSTR_LEN(value), (uint64_t)ttl);
  if (rc != 0) {
    php_shmkv_throw(rc, "set");
    RETURN_THROWS();
  }
}

/* add(string $key, string $value, int $ttlMs = 0, ?int &$cas = null,
       bool $noEvict = false): bool */
PHP_METHOD(Shmkv, add) {
  zend_string *key, *value;
  zend_long ttl = 0;
  zval *cas_ref = NULL;
  bool noevict = false;
  ZEND_PARSE_PARAMETERS_START(2, 5)
  Z_PARAM_STR(key)
  Z_PARAM_STR(value)
  Z_PARAM_OPTIONAL
  Z_PARAM_LONG(ttl)
  Z_PARAM_ZVAL(cas_ref)
  Z_PARAM_BOOL(noevict)
  ZEND_PARSE_PARAMETERS_END();
  /* Nothing is stored when $cas is of another type. */
  if (!php_shmkv_check_int_ref(cas_ref, 4)) RETURN_THROWS();
  shmkv_t *h = php_shmkv_handle(ZEND_THIS);
  if (h == NULL) RETURN_THROWS();
  shmkv_write_opts_t o;
  shmkv_write_opts_init(&o);
  o.mode = SHMKV_ADD;
  o.ttl_ms = (uint64_t)ttl;
  o.flags = noevict ? SHMKV_WRITE_NOEVICT : 0;
  uint64_t cas = 0;
  int rc = shmkv_store(h, ZSTR_VAL(key), ZSTR_LEN(key), ZSTR_VAL(value), ZSTR_LEN(value), &o, &cas);
  if (rc == 0) {
    if (cas_ref != NULL) ZEND_TRY_ASSIGN_REF_LONG(cas_ref, (zend_long)cas);
    RETURN_TRUE;
  }
  if (rc == SHMKV_EEXIST) RETURN_FALSE;
  php_shmkv_throw(rc, "add");
  RETURN_THROWS();
}

/* delete(string $key, int $expectCas = 0): bool */
PHP_METHOD(Shmkv, delete) {
  zend_string *key;
  zend_long expect = 0;
  ZEND_PARSE_PARAMETERS_START(1, 2)
  Z_PARAM_STR(key)
  Z_PARAM_OPTIONAL
  Z_PARAM_LONG(expect)
  ZEND_PARSE_PARAMETERS_END();
  shmkv_t *h = php_shmkv_handle(ZEND_THIS);
  if (h == NULL) RETURN_THROWS();
  int rc = shmkv_delete(h, ZSTR_VAL(key), ZSTR_LEN(key), (uint64_t)expect);
  if (rc == 0) RETURN_TRUE;
  if (rc == SHMKV_ENOTFOUND || rc == SHMKV_ECAS) RETURN_FALSE;
  php_shmkv_throw(rc, "delete");
  RETURN_THROWS();
}

/* A store of mode `mode` and token `expect`: true if stored, false if the
   key was missing (REPLACE, or a cas) or changed since (ECAS). */
static void php_shmkv_store_if(INTERNAL_FUNCTION_PARAMETERS, uint32_t mode, zend_string *key,
                               zend_string *value, zend_long expect, zend_long ttl,
                               const char *what) {
  shmkv_t *h = php_shmkv_handle(ZEND_THIS);
  if (h == NULL) RETURN_THROWS();
  shmkv_write_opts_t o;
  shmkv_write_opts_init(&o);
  o.mode = mode;
  o.expect_cas = (uint64_t)expect;
  o.ttl_ms = (uint64_t)ttl;
  int rc = shmkv_store(h, ZSTR_VAL(key), ZSTR_LEN(key), ZSTR_VAL(value), ZSTR_LEN(value), &o, NULL);
  if (rc == 0) RETURN_TRUE;
  if (rc == SHMKV_ENOTFOUND || rc == SHMKV_ECAS) RETURN_FALSE;
  php_shmkv_throw(rc, what);
  RETURN_THROWS();
}

/* replace(string $key, string $value, int $ttlMs = 0): bool — only if
   present. */
PHP_METHOD(Shmkv, replace) {
  zend_string *key, *value;
  zend_long ttl = 0;
  ZEND_PARSE_PARAMETERS_START(2, 3)
  Z_PARAM_STR(key)
  Z_PARAM_STR(value)
  Z_PARAM_OPTIONAL
  Z_PARAM_LONG(ttl)
  ZEND_PARSE_PARAMETERS_END();
  php_shmkv_store_if(INTERNAL_FUNCTION_PARAM_PASSTHRU, SHMKV_REPLACE, key, value, 0, ttl,
                     "replace");
}

/* cas(string $key, string $value, int $cas, int $ttlMs = 0): bool — only
   if the entry is still the one whose token get() or add() gave. */
PHP_METHOD(Shmkv, cas) {
  zend_string *key, *value;
  zend_long expect, ttl = 0;
  ZEND_PARSE_PARAMETERS_START(3, 4)
  Z_PARAM_STR(key)
  Z_PARAM_STR(value)
  Z_PARAM_LONG(expect)
  Z_PARAM_OPTIONAL
  Z_PARAM_LONG(ttl)
  ZEND_PARSE_PARAMETERS_END();
  if (expect == 0) {
    zend_argument_value_error(3, "must be a cas token (not 0)");
    RETURN_THROWS();
  }
  php_shmkv_store_if(INTERNAL_FUNCTION_PARAM_PASSTHRU, SHMKV_SET, key, value, expect, ttl, "cas");
}

/* exists(string $key): bool — present and not expired; copies nothing. */
PHP_METHOD(Shmkv, exists) {
  zend_string *key;
  ZEND_PARSE_PARAMETERS_START(1, 1)
  Z_PARAM_STR(key)
  ZEND_PARSE_PARAMETERS_END();
  shmkv_t *h = php_shmkv_handle(ZEND_THIS);
  if (h == NULL) RETURN_THROWS();
  size_t len = 0;
  int rc = shmkv_get(h, ZSTR_VAL(key), ZSTR_LEN(key), NULL, 0, &len, NULL);
  if (rc == 0 || rc == SHMKV_ETOOSMALL) RETURN_TRUE;
  if (rc == SHMKV_ENOTFOUND) RETURN_FALSE;
  php_shmkv_throw(rc, "exists");
  RETURN_THROWS();
}

/* clear(): void — removes every entry of the segment. */
PHP_METHOD(Shmkv, clear) {
  ZEND_PARSE_PARAMETERS_NONE();
  shmkv_t *h = php_shmkv_handle(ZEND_THIS);
  if (h == NULL) RETURN_THROWS();
  int rc = shmkv_clear(h);
  if (rc != 0) {
    php_shmkv_throw(rc, "clear");
    RETURN_THROWS();
  }
}

/* incr(string $key, int $delta = 1, int $initial = 0, int $ttlMs = 0): int */
PHP_METHOD(Shmkv, incr) {
  zend_string *key;
  zend_long delta = 1, initial = 0, ttl = 0;
  ZEND_PARSE_PARAMETERS_START(1, 4)
  Z_PARAM_STR(key)
  Z_PARAM_OPTIONAL
  Z_PARAM_LONG(delta)
  Z_PARAM_LONG(initial)
  Z_PARAM_LONG(ttl)
  ZEND_PARSE_PARAMETERS_END();
  shmkv_t *h = php_shmkv_handle(ZEND_THIS);
  if (h == NULL) RETURN_THROWS();
  int64_t result = 0;
  int rc = shmkv_incr(h, ZSTR_VAL(key), ZSTR_LEN(key), delta, initial, (uint64_t)ttl, &result);
  if (rc != 0) {
    php_shmkv_throw(rc, "incr");
    RETURN_THROWS();
  }
  RETURN_LONG((zend_long)result);
}

/* ttl(string $key): ?int — ms left, -1 for no expiry, null when missing. */
PHP_METHOD(Shmkv, ttl) {
  zend_string *key;
  ZEND_PARSE_PARAMETERS_START(1, 1)
  Z_PARAM_STR(key)
  ZEND_PARSE_PARAMETERS_END();
  shmkv_t *h = php_shmkv_handle(ZEND_THIS);
  if (h == NULL) RETURN_THROWS();
  int64_t ttl = 0;
  int rc = shmkv_ttl(h, ZSTR_VAL(key), ZSTR_LEN(key), &ttl);
  if (rc == 0) RETURN_LONG((zend_long)ttl);
  if (rc == SHMKV_ENOTFOUND) RETURN_NULL();
  php_shmkv_throw(rc, "ttl");
  RETURN_THROWS();
}

/* touch(string $key, int $ttlMs): bool */
PHP_METHOD(Shmkv, touch) {
  zend_string *key;
  zend_long ttl;
  ZEND_PARSE_PARAMETERS_START(2, 2)
  Z_PARAM_STR(key)
  Z_PARAM_LONG(ttl)
  ZEND_PARSE_PARAMETERS_END();
  shmkv_t *h = php_shmkv_handle(ZEND_THIS);
  if (h == NULL) RETURN_THROWS();
  int rc = shmkv_touch(h, ZSTR_VAL(key), ZSTR_LEN(key), (uint64_t)ttl);
  if (rc == 0) RETURN_TRUE;
  if (rc == SHMKV_ENOTFOUND) RETURN_FALSE;
  php_shmkv_throw(rc, "touch");
  RETURN_THROWS();
}

/* ---- arginfo ------------------------------------------------------------ */

ZEND_BEGIN_ARG_WITH_RETURN_OBJ_INFO_EX(arginfo_open, 0, 1, Shmkv, 0)
ZEND_ARG_TYPE_INFO(0, name, IS_STRING, 0)
ZEND_ARG_TYPE_INFO_WITH_DEFAULT_VALUE(0, readonly, _IS_BOOL, 0, "false")
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_OBJ_INFO_EX(arginfo_create, 0, 1, Shmkv, 0)
ZEND_ARG_TYPE_INFO(0, name, IS_STRING, 0)
ZEND_ARG_TYPE_INFO_WITH_DEFAULT_VALUE(0, options, IS_ARRAY, 0, "[]")
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_unlink, 0, 1, _IS_BOOL, 0)
ZEND_ARG_TYPE_INFO(0, name, IS_STRING, 0)
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_string_none, 0, 0, IS_STRING, 0)
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_INFO_EX(arginfo_construct, 0, 0, 0)
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_close, 0, 0, IS_VOID, 0)
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_get, 0, 1, IS_STRING, 1)
ZEND_ARG_TYPE_INFO(0, key, IS_STRING, 0)
ZEND_ARG_TYPE_INFO_WITH_DEFAULT_VALUE(1, cas, IS_LONG, 1, "null")
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_replace, 0, 2, _IS_BOOL, 0)
ZEND_ARG_TYPE_INFO(0, key, IS_STRING, 0)
ZEND_ARG_TYPE_INFO(0, value, IS_STRING, 0)
ZEND_ARG_TYPE_INFO_WITH_DEFAULT_VALUE(0, ttlMs, IS_LONG, 0, "0")
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_cas, 0, 3, _IS_BOOL, 0)
ZEND_ARG_TYPE_INFO(0, key, IS_STRING, 0)
ZEND_ARG_TYPE_INFO(0, value, IS_STRING, 0)
ZEND_ARG_TYPE_INFO(0, cas, IS_LONG, 0)
ZEND_ARG_TYPE_INFO_WITH_DEFAULT_VALUE(0, ttlMs, IS_LONG, 0, "0")
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_exists, 0, 1, _IS_BOOL, 0)
ZEND_ARG_TYPE_INFO(0, key, IS_STRING, 0)
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_get_multi, 0, 1, IS_ARRAY, 0)
ZEND_ARG_TYPE_INFO(0, keys, IS_ARRAY, 0)
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_set, 0, 2, IS_VOID, 0)
ZEND_ARG_TYPE_INFO(0, key, IS_STRING, 0)
ZEND_ARG_TYPE_INFO(0, value, IS_STRING, 0)
ZEND_ARG_TYPE_INFO_WITH_DEFAULT_VALUE(0, ttlMs, IS_LONG, 0, "0")
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_add, 0, 2, _IS_BOOL, 0)
ZEND_ARG_TYPE_INFO(0, key, IS_STRING, 0)
ZEND_ARG_TYPE_INFO(0, value, IS_STRING, 0)
ZEND_ARG_TYPE_INFO_WITH_DEFAULT_VALUE(0, ttlMs, IS_LONG, 0, "0")
ZEND_ARG_TYPE_INFO_WITH_DEFAULT_VALUE(1, cas, IS_LONG, 1, "null")
ZEND_ARG_TYPE_INFO_WITH_DEFAULT_VALUE(0, noEvict, _IS_BOOL, 0, "false")
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_delete, 0, 1, _IS_BOOL, 0)
ZEND_ARG_TYPE_INFO(0, key, IS_STRING, 0)
ZEND_ARG_TYPE_INFO_WITH_DEFAULT_VALUE(0, expectCas, IS_LONG, 0, "0")
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_incr, 0, 1, IS_LONG, 0)
ZEND_ARG_TYPE_INFO(0, key, IS_STRING, 0)
ZEND_ARG_TYPE_INFO_WITH_DEFAULT_VALUE(0, delta, IS_LONG, 0, "1")
ZEND_ARG_TYPE_INFO_WITH_DEFAULT_VALUE(0, initial, IS_LONG, 0, "0")
ZEND_ARG_TYPE_INFO_WITH_DEFAULT_VALUE(0, ttlMs, IS_LONG, 0, "0")
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_ttl, 0, 1, IS_LONG, 1)
ZEND_ARG_TYPE_INFO(0, key, IS_STRING, 0)
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_touch, 0, 2, _IS_BOOL, 0)
ZEND_ARG_TYPE_INFO(0, key, IS_STRING, 0)
ZEND_ARG_TYPE_INFO(0, ttlMs, IS_LONG, 0)
ZEND_END_ARG_INFO()

// clang-format off
static const zend_function_entry shmkv_methods[] = {
    PHP_ME(Shmkv, __construct, arginfo_construct, ZEND_ACC_PRIVATE)
    PHP_ME(Shmkv, open, arginfo_open, ZEND_ACC_PUBLIC | ZEND_ACC_STATIC)
    PHP_ME(Shmkv, create, arginfo_create, ZEND_ACC_PUBLIC | ZEND_ACC_STATIC)
    PHP_ME(Shmkv, unlink, arginfo_unlink, ZEND_ACC_PUBLIC | ZEND_ACC_STATIC)
    PHP_ME(Shmkv, version, arginfo_string_none, ZEND_ACC_PUBLIC | ZEND_ACC_STATIC)
    PHP_ME(Shmkv, lastError, arginfo_string_none, ZEND_ACC_PUBLIC | ZEND_ACC_STATIC)
    PHP_ME(Shmkv, close, arginfo_close, ZEND_ACC_PUBLIC)
    PHP_ME(Shmkv, get, arginfo_get, ZEND_ACC_PUBLIC)
    PHP_ME(Shmkv, getMulti, arginfo_get_multi, ZEND_ACC_PUBLIC)
    PHP_ME(Shmkv, set, arginfo_set, ZEND_ACC_PUBLIC)
    PHP_ME(Shmkv, add, arginfo_add, ZEND_ACC_PUBLIC)
    PHP_ME(Shmkv, delete, arginfo_delete, ZEND_ACC_PUBLIC)
    PHP_ME(Shmkv, replace, arginfo_replace, ZEND_ACC_PUBLIC)
    PHP_ME(Shmkv, cas, arginfo_cas, ZEND_ACC_PUBLIC)
    PHP_ME(Shmkv, exists, arginfo_exists, ZEND_ACC_PUBLIC)
    PHP_ME(Shmkv, clear, arginfo_close, ZEND_ACC_PUBLIC)
    PHP_ME(Shmkv, incr, arginfo_incr, ZEND_ACC_PUBLIC)
    PHP_ME(Shmkv, ttl, arginfo_ttl, ZEND_ACC_PUBLIC)
    PHP_ME(Shmkv, touch, arginfo_touch, ZEND_ACC_PUBLIC)
    PHP_FE_END
};
// clang-format on

/* ---- module ------------------------------------------------------------- */

static void php_shmkv_const(const char *name, zend_long value) {
  zend_declare_class_constant_long(shmkv_ce, name, strlen(name), value);
}

PHP_MINIT_FUNCTION(shmkv) {
#if defined(ZTS) && defined(COMPILE_DL_SHMKV)
  ZEND_TSRMLS_CACHE_UPDATE();
#endif
  zend_class_entry ce;
  INIT_CLASS_ENTRY(ce, "ShmkvException", NULL);
  shmkv_exception_ce = zend_register_internal_class_ex(&ce, spl_ce_RuntimeException);
  shmkv_exception_ce->ce_flags |= ZEND_ACC_FINAL;

  INIT_CLASS_ENTRY(ce, "Shmkv", shmkv_methods);
  shmkv_ce = zend_register_internal_class(&ce);
  shmkv_ce->ce_flags |= ZEND_ACC_FINAL | ZEND_ACC_NOT_SERIALIZABLE;
  shmkv_ce->create_object = php_shmkv_create;
  memcpy(&shmkv_handlers, zend_get_std_object_handlers(), sizeof(shmkv_handlers));
  shmkv_handlers.offset = XtOffsetOf(php_shmkv, std);
  shmkv_handlers.free_obj = php_shmkv_free;
  shmkv_handlers.clone_obj = NULL; /* one handle, one close */
  shmkv_handlers.compare = zend_objects_not_comparable;

  /* The constants of Shmkv.php (shmkv.h's values). */
  php_shmkv_const("OPEN_CREATE", SHMKV_OPEN_CREATE);
  php_shmkv_const("OPEN_EXCL", SHMKV_OPEN_EXCL);
  php_shmkv_const("OPEN_READONLY", SHMKV_OPEN_READONLY);
  php_shmkv_const("OPEN_PRECISE_CLOCK", SHMKV_OPEN_PRECISE_CLOCK);
  php_shmkv_const("EVICT_ALLKEYS", SHMKV_EVICT_ALLKEYS);
  php_shmkv_const("EVICT_VOLATILE", SHMKV_EVICT_VOLATILE);
  php_shmkv_const("EVICT_NONE", SHMKV_EVICT_NONE);
  php_shmkv_const("MODE_SET", SHMKV_SET);
  php_shmkv_const("MODE_ADD", SHMKV_ADD);
  php_shmkv_const("MODE_REPLACE", SHMKV_REPLACE);
  php_shmkv_const("WRITE_NOEVICT", SHMKV_WRITE_NOEVICT);
  php_shmkv_const("ENOTFOUND", SHMKV_ENOTFOUND);
  php_shmkv_const("EEXIST", SHMKV_EEXIST);
  php_shmkv_const("ECAS", SHMKV_ECAS);
  php_shmkv_const("ETOOSMALL", SHMKV_ETOOSMALL);
  php_shmkv_const("EINVAL", SHMKV_EINVAL);
  php_shmkv_const("EKEYTOOBIG", SHMKV_EKEYTOOBIG);
  php_shmkv_const("EVALTOOBIG", SHMKV_EVALTOOBIG);
  php_shmkv_const("ENOSPC", SHMKV_ENOSPC);
  php_shmkv_const("ENOTNUM", SHMKV_ENOTNUM);
  php_shmkv_const("EOVERFLOW", SHMKV_EOVERFLOW);
  php_shmkv_const("ENOSEG", SHMKV_ENOSEG);
  php_shmkv_const("EACCES", SHMKV_EACCES);
  php_shmkv_const("EBADSEG", SHMKV_EBADSEG);
  php_shmkv_const("EREADONLY", SHMKV_EREADONLY);
  php_shmkv_const("EBUSY", SHMKV_EBUSY);
  return SUCCESS;
}

PHP_MINFO_FUNCTION(shmkv) {
  php_info_print_table_start();
  php_info_print_table_row(2, "shmkv support", "enabled");
  php_info_print_table_row(2, "extension version", PHP_SHMKV_EXT_VERSION);
  php_info_print_table_row(2, "libshmkv version", shmkv_version());
  php_info_print_table_end();
}

static const zend_module_dep shmkv_deps[] = {ZEND_MOD_REQUIRED("spl") ZEND_MOD_END};

zend_module_entry shmkv_module_entry = {STANDARD_MODULE_HEADER_EX,
                                        NULL,
                                        shmkv_deps,
                                        "shmkv",
                                        NULL,
                                        PHP_MINIT(shmkv),
                                        NULL,
                                        NULL,
                                        NULL,
                                        PHP_MINFO(shmkv),
                                        PHP_SHMKV_EXT_VERSION,
                                        STANDARD_MODULE_PROPERTIES};

#ifdef COMPILE_DL_SHMKV
ZEND_GET_MODULE(shmkv)
#endif
