#include "metrics.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <vector>

namespace starling::node {

namespace {

std::string EscapeLabel(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string Number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.9g", v);
  }
  return buf;
}

}  // namespace

void MetricsText::Family(const std::string& name, const char* type, const std::string& help) {
  out_ += "# HELP " + name + " " + help + "\n";
  out_ += "# TYPE " + name + " " + type + "\n";
}

void MetricsText::Sample(const std::string& name, const Labels& labels, double value) {
  out_ += name;
  if (!labels.empty()) {
    out_ += '{';
    bool first = true;
    for (const auto& [k, v] : labels) {
      if (!first) out_ += ',';
      first = false;
      out_ += k + "=\"" + EscapeLabel(v) + "\"";
    }
    out_ += '}';
  }
  out_ += ' ' + Number(value) + '\n';
}

ProcessFigures ReadProcessFigures() {
  ProcessFigures f;
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  std::ifstream statm("/proc/self/statm");
  unsigned long long size = 0, resident = 0;
  if (!(statm >> size >> resident)) return f;
  f.resident_bytes = static_cast<double>(resident) * page;
  std::ifstream stat("/proc/self/stat");
  std::string line;
  if (!std::getline(stat, line)) return f;
  // The command name may hold spaces: the fields start after its ')'.
  auto close = line.rfind(')');
  if (close == std::string::npos) return f;
  std::istringstream rest(line.substr(close + 2));
  std::vector<std::string> fields;
  std::string field;
  while (rest >> field) fields.push_back(field);
  // Fields from 3 (state) on: utime is 14, stime 15, starttime 22.
  if (fields.size() < 20) return f;
  f.cpu_seconds = (std::stod(fields[14 - 3]) + std::stod(fields[15 - 3])) / ticks;
  std::ifstream uptime_file("/proc/uptime");
  double uptime = 0;
  if (uptime_file >> uptime) {
    double started_after_boot = std::stod(fields[22 - 3]) / ticks;
    f.start_time_seconds = static_cast<double>(time(nullptr)) - uptime + started_after_boot;
  }
  f.ok = true;
  return f;
}

}  // namespace starling::node
