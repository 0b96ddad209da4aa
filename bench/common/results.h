// What the benchmark programs write into the results: the date and the
// kind of run, and the files of the results directory (latest.md, whole,
// from the peer suite, or one section of it, from the near cache).
#ifndef SHMKV_BENCH_COMMON_RESULTS_H_
#define SHMKV_BENCH_COMMON_RESULTS_H_

#include <string>

namespace bench {

// Now, in local time: "2025-01-31 12:00:00 UTC".
std::string LocalDate();

// "smoke (`scripts/bench.sh --smoke`)" or "full (`scripts/bench.sh`)".
std::string RunLabel(bool smoke);

// The whole file; "" if it cannot be read.
std::string ReadFile(const std::string& path);

// Writes path.tmp, then renames it to path, so that path is never half
// written. "" or what failed.
std::string WriteFile(const std::string& path, const std::string& text);

// Replaces the section of the Markdown file path that starts with the line
// heading ("## Near cache ..."), up to the next "## " heading, with section,
// or appends section; the rest of the file is kept. "" or what failed.
std::string WriteSection(const std::string& path, const std::string& heading,
                         const std::string& section);

}  // namespace bench

#endif  // SHMKV_BENCH_COMMON_RESULTS_H_
