// The command line of the benchmark programs: flags of the form
// --name=value (--name alone for a switch), each bound to a variable, and
// main()'s last word on an exception.
#ifndef SHMKV_BENCH_COMMON_FLAGS_H_
#define SHMKV_BENCH_COMMON_FLAGS_H_

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace bench {

class Flags {
 public:
  // program starts the messages: "bench_peers: bad value in --keys=x".
  explicit Flags(std::string program) : program_(std::move(program)) {}

  // True if argv holds --name, with or without a value: a mode's defaults
  // are set before Parse(), so that the flags given still win over them.
  static bool Has(int argc, char** argv, const std::string& name);

  Flags& Switch(const std::string& name, bool* on);  // sets *on; a value is ignored
  Flags& Text(const std::string& name, std::string* value);
  Flags& Int(const std::string& name, int* value);
  Flags& Count(const std::string& name, uint64_t* value);
  // *value = the number given / divisor (--run-ms=300 with 1000: 0.3 s).
  Flags& Number(const std::string& name, double* value, double divisor = 1);

  // Sets the variables of the flags in argv[1..*argc). Any other argument is
  // an error, or with keep_others it stays in argv after argv[0], in order,
  // and *argc counts what stayed. False, after a message on stderr, when an
  // argument is unknown or a value does not parse.
  bool Parse(int* argc, char** argv, bool keep_others = false) const;

 private:
  Flags& Add(const std::string& name, std::function<void(const std::string&)> set);

  std::string program_;
  std::vector<std::pair<std::string, std::function<void(const std::string&)>>> flags_;
};

// main() of a program: program_main(argc, argv), or 1 after
// "program: what()" on stderr if it throws.
int RunMain(const char* program, int (*program_main)(int, char**), int argc, char** argv);

}  // namespace bench

#endif  // SHMKV_BENCH_COMMON_FLAGS_H_
