// The invalidation stream of shmkvd --upstream (DESIGN.md §10): the one
// connection of a host to its Redis's client-side caching, which keeps the
// segment a near cache of that Redis.
//
// PROTOCOL (RESP2, hiredis 0.14)
//   subscriber  CLIENT ID, then SUBSCRIBE __redis__:invalidate; every
//               invalidation arrives here as
//               ["message", "__redis__:invalidate", [key, ...]], or with a
//               null payload for FLUSHALL/FLUSHDB.
//   tracking    CLIENT TRACKING on REDIRECT <id> BCAST [PREFIX p ...]: Redis
//               sends the subscriber an invalidation for every write (and
//               expiry, eviction) of a key under a prefix. Tracking lasts as
//               long as this connection does, so it is kept open and pinged.
//   sync        after tracking is on, the tracked prefixes are flushed
//               locally (whatever was cached before may have missed
//               invalidations), then a PING goes to each connection; when
//               both answer, the state is published UP.
//   steady      each invalidated key is deleted locally (shmkv_delete; a
//               key longer than the segment's max_key_len cannot be cached
//               and is skipped); a null payload flushes the prefixes. Every
//               --upstream-ping both connections are pinged. Redis queues
//               the invalidations of a write before the write's reply, and
//               a PING sent later is answered after them, so the answer to a
//               PING sent at t on the subscriber confirms that the
//               invalidation of every write acknowledged before t has been
//               applied; the answer on the tracking connection confirms
//               that tracking was still on at t. The heartbeat published
//               (shmkv_upstream_heartbeat) is the older of the two
//               confirmations.
//   loss        any error or EOF on either connection, or no answer to
//               a PING for longer than --upstream-max-lag (when the
//               heartbeat clients read goes stale too): DOWN at once, both
//               connections dropped, reconnect after a backoff (100 ms
//               doubling to 5 s, back to 100 ms once synced), then sync.
//   stop        Stop() publishes DOWN. A daemon killed with SIGKILL leaves
//               UP published, but its heartbeat ages past max_lag and the
//               effective state clients read turns DOWN by itself.
//
// It runs on its own thread, next to the janitor loop of shmkvd's main
// thread, on the daemon's (thread-safe) handle.
#ifndef SHMKV_DAEMON_UPSTREAM_H_
#define SHMKV_DAEMON_UPSTREAM_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "log.h"
#include "metrics.h"
#include "shmkv/shmkv.h"

namespace shmkvd {

struct UpstreamConfig {
  std::string url;                    // redis://HOST[:PORT][/DB] or unix:///PATH[?db=N]
  std::vector<std::string> prefixes;  // empty: every key
  std::chrono::milliseconds max_lag{1000};
  std::chrono::milliseconds ping_every{100};
};

// True if url is an address the stream can connect to; else *error says
// what is wrong with it.
bool CheckUpstreamUrl(const std::string& url, std::string* error);

class UpstreamStream {
 public:
  // kv and log must outlive the stream.
  UpstreamStream(shmkv_t* kv, UpstreamConfig config, const Logger* log);
  ~UpstreamStream();  // Stop()
  UpstreamStream(const UpstreamStream&) = delete;
  UpstreamStream& operator=(const UpstreamStream&) = delete;

  // Publishes the configuration in the segment header (state DOWN) and
  // starts the thread. 0, or a shmkv error code with *why saying what failed.
  int Start(std::string* why);
  // Stops the thread, then publishes DOWN. Idempotent.
  void Stop();

  // The counters and the state the segment publishes (any thread).
  UpstreamMetrics Metrics() const;

 private:
  struct Session;

  void Run();
  // Connects both connections and turns tracking on; false with *why.
  bool Connect(Session* s, std::string* why);
  // Syncs, then applies invalidations until the stream is lost or Stop()
  // is called; returns why it ended.
  std::string Serve(Session* s);
  // Reads what the socket has and handles every complete reply; false with
  // *why on an error, EOF or an unexpected reply.
  bool ReadSubscriber(Session* s, std::string* why);
  bool ReadTracking(Session* s, std::string* why);
  // A PING answered: publishes the heartbeat (and UP, the first time).
  void Confirmed(Session* s);
  // Deletes the local copy of key; false with *why if the segment refused.
  bool Invalidate(std::string_view key, std::string* why);
  // Deletes every local key under the tracked prefixes (the whole segment
  // without prefixes); false with *why if the segment refused.
  bool Flush(const char* reason, std::string* why);
  // Waits for d or until Stop(); false if stopping.
  bool Sleep(std::chrono::milliseconds d);
  bool stopping() const { return stop_.load(std::memory_order_relaxed); }

  shmkv_t* const kv_;
  const UpstreamConfig config_;
  const Logger* const log_;
  std::string prefixes_text_;  // for the header and messages
  uint32_t max_key_len_ = 0;
  std::chrono::milliseconds io_timeout_;
  int wake_fd_ = -1;  // eventfd: Stop() wakes the thread out of poll()
  std::thread thread_;
  bool started_ = false;
  // Relaxed: a flag and counters; the state itself lives in the segment.
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> messages_{0}, keys_{0}, flushes_{0}, losses_{0}, reconnects_{0};
};

}  // namespace shmkvd

#endif  // SHMKV_DAEMON_UPSTREAM_H_
