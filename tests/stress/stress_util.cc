#include "stress/stress_util.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>

namespace shmkv::stress {

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

double StressSeconds(double default_seconds) {
  const char* env = std::getenv("SHMKV_STRESS_SECONDS");
  if (env == nullptr || *env == '\0') return default_seconds;
  double v = std::strtod(env, nullptr);
  return v > 0 ? v : default_seconds;
}

uint64_t StressScale(uint64_t n) {
  const char* env = std::getenv("SHMKV_STRESS_SCALE");
  if (env == nullptr || *env == '\0') return n;
  double v = std::strtod(env, nullptr);
  if (v <= 0) return n;
  return static_cast<uint64_t>(static_cast<double>(n) * v);
}

SharedRegion::SharedRegion(size_t bytes) : size_(bytes) {
  data_ = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (data_ == MAP_FAILED) {
    std::perror("mmap(MAP_SHARED|MAP_ANONYMOUS)");
    std::abort();
  }
}

SharedRegion::~SharedRegion() { munmap(data_, size_); }

StartGate::StartGate() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    std::perror("pipe2");
    std::abort();
  }
  read_fd_ = fds[0];
  write_fd_ = fds[1];
}

StartGate::~StartGate() {
  if (read_fd_ >= 0) close(read_fd_);
  if (write_fd_ >= 0) close(write_fd_);
}

void StartGate::Wait() {
  // Every child closes its copy of the write end; read() sees EOF once the
  // parent has closed its own.
  if (write_fd_ >= 0) {
    close(write_fd_);
    write_fd_ = -1;
  }
  char c;
  while (read(read_fd_, &c, 1) < 0 && errno == EINTR) {
  }
}

void StartGate::Open() {
  if (write_fd_ >= 0) {
    close(write_fd_);
    write_fd_ = -1;
  }
}

namespace {

char g_watchdog_what[256];

void OnAlarm(int) {
  static const char kPrefix[] = "\nFATAL: watchdog fired (a hang?): ";
  ssize_t ignored = write(2, kPrefix, sizeof(kPrefix) - 1);
  ignored = write(2, g_watchdog_what, strnlen(g_watchdog_what, sizeof(g_watchdog_what)));
  ignored = write(2, "\n", 1);
  (void)ignored;
  _exit(98);
}

void ArmAlarm(unsigned seconds, const char* what) {
  std::snprintf(g_watchdog_what, sizeof(g_watchdog_what), "%s (pid %d)", what,
                static_cast<int>(getpid()));
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_handler = OnAlarm;
  sigaction(SIGALRM, &sa, nullptr);
  alarm(seconds);
}

}  // namespace

Watchdog::Watchdog(unsigned seconds, const char* what) { ArmAlarm(seconds, what); }

Watchdog::~Watchdog() { alarm(0); }

pid_t ForkChild(const std::function<int()>& body, unsigned watchdog_seconds) {
  std::fflush(nullptr);
  pid_t pid = fork();
  if (pid < 0) {
    std::perror("fork");
    std::abort();
  }
  if (pid > 0) return pid;
  ArmAlarm(watchdog_seconds, "forked stress worker");
  int code = 121;
  try {
    code = body();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "child %d: exception: %s\n", static_cast<int>(getpid()), e.what());
    code = 120;
  } catch (...) {
    code = 120;
  }
  std::fflush(nullptr);
  _exit(code);
}

int WaitChild(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      std::perror("waitpid");
      return -1;
    }
  }
  return status;
}

bool WaitChildFor(pid_t pid, double seconds, int* status) {
  const int64_t deadline = NowNs() + static_cast<int64_t>(seconds * 1e9);
  timespec poll = {0, 1'000'000};
  for (;;) {
    pid_t r = waitpid(pid, status, WNOHANG);
    if (r == pid) return true;
    if (r < 0 && errno != EINTR) {
      *status = -1;
      return true;
    }
    if (NowNs() > deadline) return false;
    nanosleep(&poll, nullptr);
  }
}

std::string DescribeStatus(int status) {
  if (status == -1) return "waitpid failed";
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return std::string("killed by signal ") + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")";
  }
  return "status " + std::to_string(status);
}

bool ExitedCleanly(int status) {
  return status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

bool KilledBy(int status, int sig) {
  return status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == sig;
}

int OpenSegment(const std::string& name, const shmkv_options_t* opts, shmkv_t** out) {
  int rc = shmkv_open(name.c_str(), opts, out);
  if (rc != 0) {
    std::fprintf(stderr, "pid %d: shmkv_open(%s): %s (%s)\n", static_cast<int>(getpid()),
                 name.c_str(), shmkv_strerror(rc), shmkv_last_error());
  }
  return rc;
}

uint64_t Mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t HashBytes(const void* data, size_t len) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t h = 0xcbf29ce484222325ull ^ len;
  for (size_t i = 0; i < len; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return Mix64(h);
}

namespace {

void Filler(uint32_t writer, uint32_t seq, size_t from, size_t len, char* out) {
  uint64_t seed = (static_cast<uint64_t>(writer) << 32) | seq;
  for (size_t i = from; i < len; ++i) {
    uint64_t r = Mix64(seed * 0x100000001b3ull + i / 8);
    out[i - from] = static_cast<char>('a' + ((r >> (8 * (i % 8))) & 0xff) % 26);
  }
}

}  // namespace

void MakeValue(uint32_t writer, uint32_t seq, size_t len, std::string* out) {
  if (len < kMinGenLen) len = kMinGenLen;
  out->resize(len);
  char header[kMinGenLen + 1];
  std::snprintf(header, sizeof(header), "G%02x%08x%06zx|", writer & 0xff, seq, len & 0xffffff);
  std::memcpy(out->data(), header, kMinGenLen);
  Filler(writer, seq, kMinGenLen, len, out->data() + kMinGenLen);
}

bool VerifyValue(std::string_view v, uint32_t* writer, uint32_t* seq) {
  if (v.size() < kMinGenLen || v[0] != 'G' || v[kMinGenLen - 1] != '|') return false;
  auto hex = [&](size_t at, size_t n, uint64_t* out) {
    auto [ptr, ec] = std::from_chars(v.data() + at, v.data() + at + n, *out, 16);
    return ec == std::errc() && ptr == v.data() + at + n;
  };
  uint64_t w, s, len;
  if (!hex(1, 2, &w) || !hex(3, 8, &s) || !hex(11, 6, &len)) return false;
  if (len != v.size()) return false;
  // Compare the filler in chunks, without allocating.
  char buf[256];
  for (size_t at = kMinGenLen; at < v.size(); at += sizeof(buf)) {
    size_t end = std::min(v.size(), at + sizeof(buf));
    Filler(static_cast<uint32_t>(w), static_cast<uint32_t>(s), at, end, buf);
    if (std::memcmp(buf, v.data() + at, end - at) != 0) return false;
  }
  *writer = static_cast<uint32_t>(w);
  *seq = static_cast<uint32_t>(s);
  return true;
}

namespace {

uint64_t Load64(const char* p) {
  uint64_t x;
  std::memcpy(&x, p, 8);
  return x;
}

// Word-at-a-time checksum of v, with the checksum field itself skipped.
uint64_t TaggedChecksum(std::string_view v) {
  uint64_t h = 0x243f6a8885a308d3ull ^ v.size();
  size_t i = 0;
  for (; i + 8 <= v.size(); i += 8) {
    if (i == 16) continue;  // the checksum field
    h = (h ^ Load64(v.data() + i)) * 0x9fb21c651e98df25ull;
    h ^= h >> 29;
  }
  for (; i < v.size(); ++i) h = (h ^ static_cast<unsigned char>(v[i])) * 0x100000001b3ull;
  return Mix64(h);
}

void ShortValue(uint32_t key_id, size_t len, char* out) {
  for (size_t i = 0; i < len; ++i) {
    out[i] = static_cast<char>(Mix64((static_cast<uint64_t>(key_id) << 32) ^ (len << 8) ^ i));
  }
}

}  // namespace

void MakeTaggedValue(uint32_t key_id, uint32_t writer, uint32_t seq, size_t len, std::string* out) {
  out->resize(len);
  if (len < kTaggedHeader) {
    ShortValue(key_id, len, out->data());
    return;
  }
  char* p = out->data();
  p[0] = 'T';
  p[1] = 'V';
  uint16_t w = static_cast<uint16_t>(writer);
  uint32_t l = static_cast<uint32_t>(len);
  std::memcpy(p + 2, &key_id, 4);
  std::memcpy(p + 6, &w, 2);
  std::memcpy(p + 8, &seq, 4);
  std::memcpy(p + 12, &l, 4);
  uint64_t x =
      Mix64((static_cast<uint64_t>(key_id) << 40) ^ (static_cast<uint64_t>(w) << 32) ^ seq);
  size_t i = kTaggedHeader;
  for (; i + 8 <= len; i += 8) {
    x = Mix64(x);
    std::memcpy(p + i, &x, 8);
  }
  for (; i < len; ++i) p[i] = static_cast<char>(i);
  uint64_t sum = TaggedChecksum(*out);
  std::memcpy(p + 16, &sum, 8);
}

TaggedCheck CheckTaggedValue(std::string_view v, uint32_t key_id, uint32_t* writer, uint32_t* seq) {
  if (v.size() < kTaggedHeader) {
    char buf[kTaggedHeader];
    ShortValue(key_id, v.size(), buf);
    return std::memcmp(buf, v.data(), v.size()) == 0 ? TaggedCheck::kTooShortButOk
                                                     : TaggedCheck::kBadShortValue;
  }
  if (v[0] != 'T' || v[1] != 'V') return TaggedCheck::kBadMagic;
  uint32_t k, s, l;
  uint16_t w;
  uint64_t sum;
  std::memcpy(&k, v.data() + 2, 4);
  std::memcpy(&w, v.data() + 6, 2);
  std::memcpy(&s, v.data() + 8, 4);
  std::memcpy(&l, v.data() + 12, 4);
  std::memcpy(&sum, v.data() + 16, 8);
  if (k != key_id) return TaggedCheck::kWrongKey;
  if (l != v.size()) return TaggedCheck::kWrongLength;
  if (sum != TaggedChecksum(v)) return TaggedCheck::kBadChecksum;
  *writer = w;
  *seq = s;
  return TaggedCheck::kOk;
}

const char* TaggedCheckName(TaggedCheck c) {
  switch (c) {
    case TaggedCheck::kOk:
      return "ok";
    case TaggedCheck::kTooShortButOk:
      return "ok (short)";
    case TaggedCheck::kBadMagic:
      return "bad magic (torn or foreign)";
    case TaggedCheck::kWrongKey:
      return "value of another key";
    case TaggedCheck::kWrongLength:
      return "length differs from the one written (torn)";
    case TaggedCheck::kBadChecksum:
      return "checksum mismatch (torn)";
    case TaggedCheck::kBadShortValue:
      return "short value never written";
  }
  return "?";
}

bool ParseDecimal(std::string_view s, int64_t* out) {
  size_t digits_begin = (!s.empty() && s[0] == '-') ? 1 : 0;
  size_t digits = s.size() - digits_begin;
  if (digits < 1 || digits > 19) return false;
  for (size_t i = digits_begin; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
  }
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

}  // namespace shmkv::stress
