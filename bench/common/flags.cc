// The flag parser and the main() guard of flags.h.
#include "flags.h"

#include <exception>
#include <iostream>

namespace bench {
namespace {

// "--keys=10" -> {"--keys", "10"}; "--smoke" -> {"--smoke", ""}.
std::pair<std::string, std::string> Split(const std::string& arg) {
  const size_t eq = arg.find('=');
  return {arg.substr(0, eq), eq == std::string::npos ? "" : arg.substr(eq + 1)};
}

}  // namespace

bool Flags::Has(int argc, char** argv, const std::string& name) {
  for (int i = 1; i < argc; ++i) {
    if (Split(argv[i]).first == name) return true;
  }
  return false;
}

Flags& Flags::Add(const std::string& name, std::function<void(const std::string&)> set) {
  flags_.emplace_back(name, std::move(set));
  return *this;
}

Flags& Flags::Switch(const std::string& name, bool* on) {
  return Add(name, [on](const std::string&) { *on = true; });
}

Flags& Flags::Text(const std::string& name, std::string* value) {
  return Add(name, [value](const std::string& v) { *value = v; });
}

Flags& Flags::Int(const std::string& name, int* value) {
  return Add(name, [value](const std::string& v) { *value = std::stoi(v); });
}

Flags& Flags::Count(const std::string& name, uint64_t* value) {
  return Add(name, [value](const std::string& v) { *value = std::stoull(v); });
}

Flags& Flags::Number(const std::string& name, double* value, double divisor) {
  return Add(name, [value, divisor](const std::string& v) { *value = std::stod(v) / divisor; });
}

bool Flags::Parse(int* argc, char** argv, bool keep_others) const {
  int kept = 1;
  for (int i = 1; i < *argc; ++i) {
    const std::string arg = argv[i];
    const auto [name, value] = Split(arg);
    auto flag = flags_.begin();
    while (flag != flags_.end() && flag->first != name) ++flag;
    if (flag == flags_.end()) {
      if (keep_others) {
        argv[kept++] = argv[i];
        continue;
      }
      std::cerr << program_ << ": unknown argument " << arg << "\n";
      return false;
    }
    try {
      flag->second(value);
    } catch (const std::exception&) {
      std::cerr << program_ << ": bad value in " << arg << "\n";
      return false;
    }
  }
  if (keep_others) *argc = kept;
  return true;
}

int RunMain(const char* program, int (*program_main)(int, char**), int argc, char** argv) {
  try {
    return program_main(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << program << ": " << e.what() << "\n";
    return 1;
  }
}

}  // namespace bench
