// Keys and values in flat buffers, formatted before anything is timed: the
// i-th string of a buffer is the view {&buf[i * len], len}.
#ifndef SHMKV_BENCH_COMMON_FLAT_DATA_H_
#define SHMKV_BENCH_COMMON_FLAT_DATA_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace bench {

// n strings of len bytes: fmt (one %zu, which must make exactly len
// characters) formatted with 0, 1, ...; a NUL after the last.
std::vector<char> FlatKeys(const char* fmt, size_t len, size_t n);

// n values of len (>= 17) bytes: "value:NNNNNNNNNN|" (the index), then the
// character fill + i % 26 repeated.
std::vector<char> FlatValues(char fill, size_t len, size_t n);

// len key indices drawn uniformly from [0, keys), always the same (seed
// 42): the order in which the workloads visit the keys.
std::vector<uint32_t> UniformOrder(size_t keys, size_t len);

}  // namespace bench

#endif  // SHMKV_BENCH_COMMON_FLAT_DATA_H_
