// The results files of results.h.
#include "results.h"

#include <cstdio>
#include <ctime>
#include <fstream>
#include <sstream>

namespace bench {

std::string LocalDate() {
  char b[64];
  const time_t now = time(nullptr);
  std::strftime(b, sizeof(b), "%Y-%m-%d %H:%M:%S %Z", std::localtime(&now));
  return b;
}

std::string RunLabel(bool smoke) {
  return smoke ? "smoke (`scripts/bench.sh --smoke`)" : "full (`scripts/bench.sh`)";
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string WriteFile(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    f << text;
    if (!f) return "cannot write " + tmp;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return "cannot rename " + tmp + " to " + path;
  return "";
}

std::string WriteSection(const std::string& path, const std::string& heading,
                         const std::string& section) {
  std::string md = ReadFile(path);
  size_t begin = md.rfind("\n" + heading);
  if (md.compare(0, heading.size(), heading) == 0) begin = 0;
  if (begin != std::string::npos) {
    if (begin > 0) ++begin;
    size_t end = md.find("\n## ", begin + 1);
    end = end == std::string::npos ? md.size() : end + 1;
    md.replace(begin, end - begin, section);
  } else {
    if (!md.empty() && md.back() != '\n') md += '\n';
    if (!md.empty() && md.compare(md.size() - 2, 2, "\n\n") != 0) md += '\n';
    md += section;
  }
  while (md.size() >= 2 && md.compare(md.size() - 2, 2, "\n\n") == 0) md.pop_back();
  return WriteFile(path, md);
}

}  // namespace bench
