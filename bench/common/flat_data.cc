// The flat buffers of flat_data.h.
#include "flat_data.h"

#include <cstdio>
#include <cstring>
#include <random>

namespace bench {

std::vector<char> FlatKeys(const char* fmt, size_t len, size_t n) {
  std::vector<char> out(n * len + 1);
  for (size_t i = 0; i < n; ++i) std::snprintf(&out[i * len], len + 1, fmt, i);
  return out;
}

std::vector<char> FlatValues(char fill, size_t len, size_t n) {
  std::vector<char> out(n * len + 1);
  for (size_t i = 0; i < n; ++i) {
    char* v = &out[i * len];
    std::memset(v, fill + static_cast<char>(i % 26), len);
    std::snprintf(v, 17, "value:%010zu", i % 10'000'000'000);
    v[16] = '|';
  }
  return out;
}

std::vector<uint32_t> UniformOrder(size_t keys, size_t len) {
  std::vector<uint32_t> order(len);
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<uint32_t> pick(0, static_cast<uint32_t>(keys - 1));
  for (uint32_t& i : order) i = pick(rng);
  return order;
}

}  // namespace bench
