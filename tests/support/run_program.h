// Runs a program as a test would from a shell: fork/exec, stdin fed from a
// string, stdout and stderr collected, the exit code returned.
#ifndef SHMKV_TESTS_SUPPORT_RUN_PROGRAM_H_
#define SHMKV_TESTS_SUPPORT_RUN_PROGRAM_H_

#include <string>
#include <vector>

namespace shmkv::test {

struct ProgramResult {
  int code = -1;  // exit status; 128 + N for signal N; 127: could not be run
  std::string out;
  std::string err;
};

// argv[0] is a path, or a name looked up in PATH. `input` goes to stdin
// (small inputs only: it is written before the output is read), which is
// at end of file afterwards. TMUX is removed from the child's environment
// so that a test run inside tmux still starts its own tmux server.
ProgramResult RunProgram(std::vector<std::string> argv, const std::string& input = "");

}  // namespace shmkv::test

#endif  // SHMKV_TESTS_SUPPORT_RUN_PROGRAM_H_
