// shmkv for Node.js: the N-API addon under index.js. It is a thin,
// synchronous layer over the C API (shmkv.h): a call into shared memory
// takes microseconds, far less than a hop to the libuv thread pool would,
// so nothing here is asynchronous.
//
// The JS side (index.js) validates options and TTLs and shapes the results;
// this file converts bytes and turns error codes into exceptions:
//
//   - Keys and values are strings (encoded as UTF-8), Buffers or any other
//     ArrayBufferView, or ArrayBuffers. Values come back as Buffers (get,
//     gets, mget) or as strings decoded from UTF-8 (getString, mget with
//     asString) without an intermediate Buffer.
//   - A failed call throws an Error whose .code is the library's symbolic
//     name ("SHMKV_EKEYTOOBIG", or "ENOENT"-style for an OS errno), whose
//     .errno is the numeric code, and whose message is shmkv_strerror()
//     plus the detail of shmkv_last_error().
//   - "Missing", "exists" and "cas mismatch" are answers, not errors: get
//     returns undefined, a conditional store returns null, delete false.
//
// Each Cache owns one shmkv_t and some scratch buffers; a Cache belongs to
// the JS thread (main or worker) that made it, so the scratch needs no lock.
#include <napi.h>
#include <shmkv/shmkv.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

namespace {

const char* CodeName(int rc) {
  switch (rc) {
    case SHMKV_ENOTFOUND:
      return "SHMKV_ENOTFOUND";
    case SHMKV_EEXIST:
      return "SHMKV_EEXIST";
    case SHMKV_ECAS:
      return "SHMKV_ECAS";
    case SHMKV_ETOOSMALL:
      return "SHMKV_ETOOSMALL";
    case SHMKV_EINVAL:
      return "SHMKV_EINVAL";
    case SHMKV_EKEYTOOBIG:
      return "SHMKV_EKEYTOOBIG";
    case SHMKV_EVALTOOBIG:
      return "SHMKV_EVALTOOBIG";
    case SHMKV_ENOSPC:
      return "SHMKV_ENOSPC";
    case SHMKV_ENOTNUM:
      return "SHMKV_ENOTNUM";
    case SHMKV_EOVERFLOW:
      return "SHMKV_EOVERFLOW";
    case SHMKV_ENOSEG:
      return "SHMKV_ENOSEG";
    case SHMKV_EACCES:
      return "SHMKV_EACCES";
    case SHMKV_EBADSEG:
      return "SHMKV_EBADSEG";
    case SHMKV_EREADONLY:
      return "SHMKV_EREADONLY";
    case SHMKV_EBUSY:
      return "SHMKV_EBUSY";
    default:
      break;
  }
  // A positive code is an errno with no shmkv code; glibc names it.
  if (rc > 0) {
    if (const char* name = strerrorname_np(rc)) return name;
  }
  return "SHMKV_EUNKNOWN";
}

// The exception for a failed call of `op`. Reads the thread's last error
// at once, before any other shmkv call can replace it.
Napi::Error MakeError(Napi::Env env, int rc, const char* op) {
  std::string message = std::string(op) + ": " + shmkv_strerror(rc);
  const char* detail = shmkv_last_error();
  if (detail[0] != '\0' && std::strcmp(detail, shmkv_strerror(rc)) != 0) {
    message += " (";
    message += detail;
    message += ')';
  }
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, CodeName(rc)));
  error.Set("errno", Napi::Number::New(env, rc));
  return error;
}

Napi::TypeError ArgTypeError(Napi::Env env, const char* what) {
  Napi::TypeError error = Napi::TypeError::New(
      env, std::string("The \"") + what +
               "\" argument must be a string, Buffer, TypedArray, DataView or ArrayBuffer");
  error.Set("code", Napi::String::New(env, "ERR_INVALID_ARG_TYPE"));
  return error;
}

struct Bytes {
  const char* data = nullptr;
  size_t size = 0;
};

// The bytes of a key or value: a view of the caller's memory for binary
// data, or the UTF-8 encoding of a string written into *scratch. The view
// stays valid until the next JS allocation (no GC happens in between: the
// callers make no JS values until their C calls are done).
Bytes ToBytes(Napi::Env env, napi_value value, std::string* scratch, const char* what) {
  napi_valuetype type;
  NAPI_THROW_IF_FAILED(env, napi_typeof(env, value, &type), Bytes());
  if (type == napi_string) {
    // Every UTF-16 unit takes at most 3 bytes of UTF-8 (a surrogate pair,
    // 2 units, takes 4), so one pass with this bound never truncates.
    size_t units = 0;
    NAPI_THROW_IF_FAILED(env, napi_get_value_string_utf16(env, value, nullptr, 0, &units), Bytes());
    scratch->resize(3 * units + 1);
    size_t written = 0;
    NAPI_THROW_IF_FAILED(
        env, napi_get_value_string_utf8(env, value, scratch->data(), scratch->size(), &written),
        Bytes());
    return Bytes{scratch->data(), written};
  }
  if (type == napi_object) {
    bool is = false;
    void* data = nullptr;
    size_t length = 0;
    NAPI_THROW_IF_FAILED(env, napi_is_typedarray(env, value, &is), Bytes());
    if (is) {
      // data is already offset to the view's first element.
      NAPI_THROW_IF_FAILED(
          env, napi_get_typedarray_info(env, value, nullptr, nullptr, &data, nullptr, nullptr),
          Bytes());
      return Bytes{static_cast<const char*>(data), Napi::TypedArray(env, value).ByteLength()};
    }
    NAPI_THROW_IF_FAILED(env, napi_is_dataview(env, value, &is), Bytes());
    if (is) {
      NAPI_THROW_IF_FAILED(
          env, napi_get_dataview_info(env, value, &length, &data, nullptr, nullptr), Bytes());
      return Bytes{static_cast<const char*>(data), length};
    }
    NAPI_THROW_IF_FAILED(env, napi_is_arraybuffer(env, value, &is), Bytes());
    if (is) {
      NAPI_THROW_IF_FAILED(env, napi_get_arraybuffer_info(env, value, &data, &length), Bytes());
      return Bytes{static_cast<const char*>(data), length};
    }
  }
  throw ArgTypeError(env, what);
}

uint64_t ToU64(const Napi::Value& v) {
  if (v.IsBigInt()) {
    bool lossless = false;
    return v.As<Napi::BigInt>().Uint64Value(&lossless);
  }
  if (v.IsNumber()) return static_cast<uint64_t>(v.As<Napi::Number>().Int64Value());
  return 0;
}

int64_t ToI64(const Napi::Value& v) {
  if (v.IsBigInt()) {
    bool lossless = false;
    return v.As<Napi::BigInt>().Int64Value(&lossless);
  }
  return v.As<Napi::Number>().Int64Value();
}

Napi::Value MakeValue(Napi::Env env, const char* data, size_t size, bool as_string) {
  if (as_string) return Napi::String::New(env, data, size);
  return Napi::Buffer<char>::Copy(env, data, size);
}

class Cache : public Napi::ObjectWrap<Cache> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Cache",
                       {
                           InstanceMethod<&Cache::Get>("get"),
                           InstanceMethod<&Cache::Gets>("gets"),
                           InstanceMethod<&Cache::GetStale>("getStale"),
                           InstanceMethod<&Cache::MGet>("mget"),
                           InstanceMethod<&Cache::Store>("store"),
                           InstanceMethod<&Cache::Delete>("delete"),
                           InstanceMethod<&Cache::Incr>("incr"),
                           InstanceMethod<&Cache::Touch>("touch"),
                           InstanceMethod<&Cache::Throttle>("throttle"),
                           InstanceMethod<&Cache::Ttl>("ttl"),
                           InstanceMethod<&Cache::ScanStep>("scanStep"),
                           InstanceMethod<&Cache::Clear>("clear"),
                           InstanceMethod<&Cache::Stats>("stats"),
                           InstanceMethod<&Cache::Recover>("recover"),
                           InstanceMethod<&Cache::Close>("close"),
                           InstanceAccessor<&Cache::Closed>("closed"),
                       });
  }

  // new Cache(name, {memoryBytes, maxItems, maxKeyLen, maxValueLen, mode,
  //                  flags, evictPolicy}); index.js fills every field.
  explicit Cache(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Cache>(info) {
    Napi::Env env = info.Env();
    const std::string name = info[0].As<Napi::String>().Utf8Value();
    Napi::Object o = info[1].As<Napi::Object>();
    shmkv_options_t opts;
    shmkv_options_init(&opts);
    const auto field = [&](const char* key, auto* out) {
      Napi::Value v = o.Get(key);
      if (v.IsNumber()) *out = static_cast<std::remove_pointer_t<decltype(out)>>(ToU64(v));
    };
    field("memoryBytes", &opts.memory_bytes);
    field("maxItems", &opts.max_items);
    field("maxKeyLen", &opts.max_key_len);
    field("maxValueLen", &opts.max_value_len);
    field("mode", &opts.mode);
    field("flags", &opts.flags);
    field("evictPolicy", &opts.evict_policy);
    const int rc = shmkv_open(name.c_str(), &opts, &kv_);
    if (rc != 0) throw MakeError(env, rc, "open");
    out_.resize(4096);
  }

  ~Cache() override { shmkv_close(kv_); }

 private:
  shmkv_t* Handle(Napi::Env env) const {
    if (kv_ == nullptr) {
      Napi::Error error = Napi::Error::New(env, "shmkv: the cache is closed");
      error.Set("code", Napi::String::New(env, "SHMKV_ECLOSED"));
      throw error;
    }
    return kv_;
  }

  // Reads key's value into out_ (grown as needed). Returns 0 with *len set,
  // SHMKV_ENOTFOUND, or throws.
  int ReadValue(Napi::Env env, const Bytes& key, size_t* len, shmkv_item_info_t* item) {
    shmkv_t* kv = Handle(env);
    for (;;) {
      const int rc = shmkv_get(kv, key.data, key.size, out_.data(), out_.size(), len, item);
      if (rc == SHMKV_ETOOSMALL) {
        // The value may grow again before the retry; loop until it fits.
        out_.resize(std::max(*len, out_.size() * 2));
        continue;
      }
      if (rc == 0 || rc == SHMKV_ENOTFOUND) return rc;
      throw MakeError(env, rc, "get");
    }
  }

  // get(key, asString) -> Buffer | string | undefined
  Napi::Value Get(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const Bytes key = ToBytes(env, info[0], &key_scratch_, "key");
    size_t len = 0;
    if (ReadValue(env, key, &len, nullptr) != 0) return env.Undefined();
    return MakeValue(env, out_.data(), len, info[1].ToBoolean());
  }

  // gets(key, asString) -> {value, cas (BigInt), ttl, flags} | undefined
  Napi::Value Gets(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const Bytes key = ToBytes(env, info[0], &key_scratch_, "key");
    size_t len = 0;
    shmkv_item_info_t item{};
    item.struct_size = sizeof item;
    if (ReadValue(env, key, &len, &item) != 0) return env.Undefined();
    Napi::Object result = Napi::Object::New(env);
    result.Set("value", MakeValue(env, out_.data(), len, info[1].ToBoolean()));
    result.Set("cas", Napi::BigInt::New(env, item.cas));
    result.Set("ttl", Napi::Number::New(env, static_cast<double>(item.ttl_ms)));
    result.Set("flags", Napi::Number::New(env, item.user_flags));
    return result;
  }

  // getStale(key, asString) -> {value, expiredMs} | undefined
  //
  // shmkv_get_stale: an entry whose TTL has passed but that is still in
  // memory comes back too, with expiredMs = how long ago it expired (0 for
  // a fresh one).
  Napi::Value GetStale(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    shmkv_t* kv = Handle(env);
    const Bytes key = ToBytes(env, info[0], &key_scratch_, "key");
    size_t len = 0;
    uint64_t expired_ms = 0;
    for (;;) {
      const int rc = shmkv_get_stale(kv, key.data, key.size, out_.data(), out_.size(), &len,
                                     nullptr, &expired_ms);
      if (rc == 0) break;
      if (rc == SHMKV_ENOTFOUND) return env.Undefined();
      if (rc != SHMKV_ETOOSMALL) throw MakeError(env, rc, "getStale");
      out_.resize(std::max(len, out_.size() * 2));
    }
    Napi::Object result = Napi::Object::New(env);
    result.Set("value", MakeValue(env, out_.data(), len, info[1].ToBoolean()));
    result.Set("expiredMs", Napi::Number::New(env, static_cast<double>(expired_ms)));
    return result;
  }

  // mget(keys[], asString, withFlags) -> (Buffer | string | undefined)[],
  // or with withFlags ({value, flags} | undefined)[]
  //
  // One shmkv_mget over slots of slot_ bytes each in one scratch area; a
  // value that did not fit is read again alone. slot_ follows the largest
  // value seen (up to 64 KiB), so a steady workload fits in one call.
  Napi::Value MGet(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    shmkv_t* kv = Handle(env);
    if (!info[0].IsArray()) {
      throw Napi::TypeError::New(env, "The \"keys\" argument must be an array");
    }
    Napi::Array array = info[0].As<Napi::Array>();
    const bool as_string = info[1].ToBoolean();
    const bool with_flags = info[2].ToBoolean();
    const size_t n = array.Length();

    // Strings are encoded one after the other into one buffer; their
    // pointers are taken only once it stops growing.
    std::vector<Bytes> keys(n);
    std::vector<std::pair<size_t, size_t>> encoded;  // (index, offset)
    std::string& text = mget_text_;
    text.clear();
    std::vector<napi_value> items(n);
    for (size_t i = 0; i < n; ++i) {
      items[i] = array.Get(static_cast<uint32_t>(i));
      if (Napi::Value(env, items[i]).IsString()) {
        const Bytes b = ToBytes(env, items[i], &key_scratch_, "keys[i]");
        encoded.emplace_back(i, text.size());
        text.append(b.data, b.size);
        keys[i].size = b.size;
      } else {
        keys[i] = ToBytes(env, items[i], &key_scratch_, "keys[i]");
      }
    }
    for (const auto& [i, offset] : encoded) keys[i].data = text.data() + offset;

    std::vector<const void*> key_ptrs(n);
    std::vector<size_t> key_lens(n), buf_lens(n, slot_), val_lens(n);
    std::vector<void*> bufs(n);
    std::vector<int> rcs(n);
    std::vector<shmkv_item_info_t> infos(with_flags ? n : 0);
    for (shmkv_item_info_t& in : infos) in.struct_size = sizeof(in);
    mget_out_.resize(n * slot_);
    for (size_t i = 0; i < n; ++i) {
      key_ptrs[i] = keys[i].data;
      key_lens[i] = keys[i].size;
      bufs[i] = mget_out_.data() + i * slot_;
    }
    const int rc = shmkv_mget(kv, n, key_ptrs.data(), key_lens.data(), bufs.data(), buf_lens.data(),
                              val_lens.data(), rcs.data(), with_flags ? infos.data() : nullptr);
    if (rc != 0) throw MakeError(env, rc, "mget");
    size_t largest = 0;
    for (size_t i = 0; i < n; ++i) {
      if (rcs[i] == 0 || rcs[i] == SHMKV_ETOOSMALL) largest = std::max(largest, val_lens[i]);
      if (rcs[i] != 0 && rcs[i] != SHMKV_ENOTFOUND && rcs[i] != SHMKV_ETOOSMALL) {
        throw MakeError(env, rcs[i], "mget");
      }
    }
    if (largest > slot_) slot_ = std::min<size_t>(std::max(largest, slot_ * 2), 64 * 1024);

    Napi::Array result = Napi::Array::New(env, n);
    for (size_t i = 0; i < n; ++i) {
      Napi::Value v = env.Undefined();
      if (rcs[i] == 0) {
        v = MakeValue(env, static_cast<const char*>(bufs[i]), val_lens[i], as_string);
      } else if (rcs[i] == SHMKV_ETOOSMALL) {
        size_t len = 0;
        if (ReadValue(env, keys[i], &len, with_flags ? &infos[i] : nullptr) == 0) {
          v = MakeValue(env, out_.data(), len, as_string);
        }
      }
      if (with_flags && !v.IsUndefined()) {
        Napi::Object item = Napi::Object::New(env);
        item.Set("value", v);
        item.Set("flags", Napi::Number::New(env, infos[i].user_flags));
        v = item;
      }
      result.Set(static_cast<uint32_t>(i), v);
    }
    return result;
  }

  // store(key, value, mode, ttlMs, expectCas, userFlags, writeFlags)
  //   -> the new cas (BigInt), or null when the write's condition failed
  //      (add on a present key, replace or cas on a missing one, cas
  //      mismatch).
  Napi::Value Store(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    shmkv_t* kv = Handle(env);
    const Bytes key = ToBytes(env, info[0], &key_scratch_, "key");
    const Bytes value = ToBytes(env, info[1], &value_scratch_, "value");
    shmkv_write_opts_t opts;
    shmkv_write_opts_init(&opts);
    opts.mode = info[2].As<Napi::Number>().Uint32Value();
    opts.ttl_ms = ToU64(info[3]);
    opts.expect_cas = ToU64(info[4]);
    opts.user_flags = info[5].As<Napi::Number>().Uint32Value();
    opts.flags = info[6].As<Napi::Number>().Uint32Value();
    uint64_t cas = 0;
    const int rc = shmkv_store(kv, key.data, key.size, value.data, value.size, &opts, &cas);
    if (rc == 0) return Napi::BigInt::New(env, cas);
    if (rc == SHMKV_EEXIST || rc == SHMKV_ENOTFOUND || rc == SHMKV_ECAS) return env.Null();
    throw MakeError(env, rc, "set");
  }

  // delete(key, expectCas) -> bool
  Napi::Value Delete(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    shmkv_t* kv = Handle(env);
    const Bytes key = ToBytes(env, info[0], &key_scratch_, "key");
    const int rc = shmkv_delete(kv, key.data, key.size, ToU64(info[1]));
    if (rc == 0) return Napi::Boolean::New(env, true);
    if (rc == SHMKV_ENOTFOUND || rc == SHMKV_ECAS) return Napi::Boolean::New(env, false);
    throw MakeError(env, rc, "delete");
  }

  // incr(key, delta, initial, ttlMs) -> BigInt (index.js picks the type)
  Napi::Value Incr(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    shmkv_t* kv = Handle(env);
    const Bytes key = ToBytes(env, info[0], &key_scratch_, "key");
    int64_t result = 0;
    const int rc =
        shmkv_incr(kv, key.data, key.size, ToI64(info[1]), ToI64(info[2]), ToU64(info[3]), &result);
    if (rc != 0) throw MakeError(env, rc, "incr");
    return Napi::BigInt::New(env, result);
  }

  // touch(key, ttlMs) -> bool (false: missing)
  Napi::Value Touch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    shmkv_t* kv = Handle(env);
    const Bytes key = ToBytes(env, info[0], &key_scratch_, "key");
    const int rc = shmkv_touch(kv, key.data, key.size, ToU64(info[1]));
    if (rc == 0) return Napi::Boolean::New(env, true);
    if (rc == SHMKV_ENOTFOUND) return Napi::Boolean::New(env, false);
    throw MakeError(env, rc, "touch");
  }

  // throttle(key, rate, periodMs, burst) -> {allowed, retryAfterMs, remaining}
  // (index.js checks the types; the library checks the values).
  Napi::Value Throttle(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    shmkv_t* kv = Handle(env);
    const Bytes key = ToBytes(env, info[0], &key_scratch_, "key");
    int allowed = 0;
    uint64_t retry_after_ms = 0;
    uint64_t remaining = 0;
    const int rc = shmkv_throttle(kv, key.data, key.size, ToU64(info[1]), ToU64(info[2]),
                                  ToU64(info[3]), &allowed, &retry_after_ms, &remaining);
    if (rc != 0) throw MakeError(env, rc, "throttle");
    Napi::Object result = Napi::Object::New(env);
    result.Set("allowed", Napi::Boolean::New(env, allowed != 0));
    result.Set("retryAfterMs", Napi::Number::New(env, static_cast<double>(retry_after_ms)));
    result.Set("remaining", Napi::Number::New(env, static_cast<double>(remaining)));
    return result;
  }

  // ttl(key) -> remaining ms | -1 (no expiry) | undefined (missing)
  Napi::Value Ttl(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    shmkv_t* kv = Handle(env);
    const Bytes key = ToBytes(env, info[0], &key_scratch_, "key");
    int64_t ttl = 0;
    const int rc = shmkv_ttl(kv, key.data, key.size, &ttl);
    if (rc == 0) return Napi::Number::New(env, static_cast<double>(ttl));
    if (rc == SHMKV_ENOTFOUND) return env.Undefined();
    throw MakeError(env, rc, "ttl");
  }

  // scanStep(cursor, prefix, limit, asString) -> [nextCursor, keys[]]
  // One bounded step of shmkv_scan; nextCursor 0 means done.
  Napi::Value ScanStep(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    shmkv_t* kv = Handle(env);
    uint64_t cursor = static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value());
    const Bytes prefix = ToBytes(env, info[1], &key_scratch_, "prefix");
    const size_t limit = info[2].As<Napi::Number>().Uint32Value();
    std::vector<std::string> found;
    const auto collect = [](const void* key, size_t key_len, const shmkv_item_info_t*,
                            void* ctx) -> int {
      static_cast<std::vector<std::string>*>(ctx)->emplace_back(static_cast<const char*>(key),
                                                                key_len);
      return 0;
    };
    const int rc = shmkv_scan(kv, &cursor, prefix.size ? prefix.data : nullptr, prefix.size, limit,
                              collect, &found);
    if (rc != 0) throw MakeError(env, rc, "scan");
    const bool as_string = info[3].ToBoolean();
    Napi::Array keys = Napi::Array::New(env, found.size());
    for (size_t i = 0; i < found.size(); ++i) {
      keys.Set(static_cast<uint32_t>(i),
               MakeValue(env, found[i].data(), found[i].size(), as_string));
    }
    Napi::Array result = Napi::Array::New(env, 2);
    result.Set(0u, Napi::Number::New(env, static_cast<double>(cursor)));
    result.Set(1u, keys);
    return result;
  }

  Napi::Value Clear(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const int rc = shmkv_clear(Handle(env));
    if (rc != 0) throw MakeError(env, rc, "clear");
    return env.Undefined();
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    shmkv_stats_t s{};
    s.struct_size = sizeof s;
    const int rc = shmkv_stats(Handle(env), &s);
    if (rc != 0) throw MakeError(env, rc, "stats");
    Napi::Object o = Napi::Object::New(env);
    const auto put = [&](const char* name, uint64_t v) {
      o.Set(name, Napi::Number::New(env, static_cast<double>(v)));
    };
    put("memoryBytes", s.memory_bytes);
    put("memoryUsed", s.memory_used);
    put("items", s.items);
    put("capacityItems", s.capacity_items);
    put("gets", s.gets);
    put("hits", s.hits);
    put("misses", s.misses);
    put("sets", s.sets);
    put("deletes", s.deletes);
    put("incrs", s.incrs);
    put("casFailures", s.cas_failures);
    put("evictions", s.evictions);
    put("expirations", s.expirations);
    put("recoveredProcesses", s.recovered_processes);
    put("attachedProcesses", s.attached_processes);
    return o;
  }

  Napi::Value Recover(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t recovered = 0;
    const int rc = shmkv_recover(Handle(env), &recovered);
    if (rc != 0) throw MakeError(env, rc, "recover");
    return Napi::Number::New(env, recovered);
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    shmkv_t* kv = kv_;
    kv_ = nullptr;
    const int rc = shmkv_close(kv);
    if (rc != 0) throw MakeError(env, rc, "close");
    return env.Undefined();
  }

  Napi::Value Closed(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), kv_ == nullptr);
  }

  shmkv_t* kv_ = nullptr;
  std::vector<char> out_;       // get's destination, grown to the largest value read
  std::string key_scratch_;     // UTF-8 of a string key
  std::string value_scratch_;   // UTF-8 of a string value
  std::string mget_text_;       // UTF-8 of mget's string keys, back to back
  std::vector<char> mget_out_;  // mget's slots
  size_t slot_ = 256;           // bytes per mget slot
};

// unlink(name) -> bool (false: there was no such segment)
Napi::Value Unlink(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string name = info[0].As<Napi::String>().Utf8Value();
  const int rc = shmkv_unlink(name.c_str());
  if (rc == 0) return Napi::Boolean::New(env, true);
  if (rc == SHMKV_ENOSEG || rc == ENOENT) return Napi::Boolean::New(env, false);
  throw MakeError(env, rc, "unlink");
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Cache", Cache::Define(env));
  exports.Set("unlink", Napi::Function::New<Unlink>(env, "unlink"));
  exports.Set("version", Napi::String::New(env, shmkv_version()));
  Napi::Object codes = Napi::Object::New(env);
  for (int rc = SHMKV_EBUSY; rc <= SHMKV_ENOTFOUND; ++rc) {
    codes.Set(CodeName(rc), Napi::Number::New(env, rc));
  }
  exports.Set("codes", codes);
  Napi::Object constants = Napi::Object::New(env);
  const auto put = [&](const char* name, uint32_t v) { constants.Set(name, v); };
  put("OPEN_CREATE", SHMKV_OPEN_CREATE);
  put("OPEN_EXCL", SHMKV_OPEN_EXCL);
  put("OPEN_READONLY", SHMKV_OPEN_READONLY);
  put("OPEN_PRECISE_CLOCK", SHMKV_OPEN_PRECISE_CLOCK);
  put("EVICT_ALLKEYS", SHMKV_EVICT_ALLKEYS);
  put("EVICT_VOLATILE", SHMKV_EVICT_VOLATILE);
  put("EVICT_NONE", SHMKV_EVICT_NONE);
  put("SET", SHMKV_SET);
  put("ADD", SHMKV_ADD);
  put("REPLACE", SHMKV_REPLACE);
  put("WRITE_KEEPTTL", SHMKV_WRITE_KEEPTTL);
  put("WRITE_NOEVICT", SHMKV_WRITE_NOEVICT);
  exports.Set("constants", constants);
  return exports;
}

}  // namespace

NODE_API_MODULE(shmkv, Init)
