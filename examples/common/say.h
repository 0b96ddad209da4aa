// Line output for the example programs that fork: one write(2) per line,
// so that the lines of different processes never interleave and no stdio
// buffer is duplicated by fork().
#ifndef SHMKV_EXAMPLES_COMMON_SAY_H_
#define SHMKV_EXAMPLES_COMMON_SAY_H_

#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>

namespace shmkv_examples {

// printf-style; appends the newline.
__attribute__((format(printf, 1, 2))) inline void Say(const char* fmt, ...) {
  char buf[1024];
  va_list args;
  va_start(args, fmt);
  int n = std::vsnprintf(buf, sizeof(buf) - 1, fmt, args);
  va_end(args);
  if (n < 0) return;
  if (n > static_cast<int>(sizeof(buf)) - 2) n = static_cast<int>(sizeof(buf)) - 2;
  buf[n++] = '\n';
  for (int off = 0; off < n;) {
    const ssize_t w = write(STDOUT_FILENO, buf + off, static_cast<size_t>(n - off));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    off += static_cast<int>(w);
  }
}

}  // namespace shmkv_examples

#endif  // SHMKV_EXAMPLES_COMMON_SAY_H_
