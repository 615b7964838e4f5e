// The Prometheus text exposition format (version 0.0.4), written by hand
// because it is a few lines of text; and the process figures every exporter
// reports (resident memory, CPU seconds), read from /proc.
#pragma once

#include <map>
#include <string>

namespace starling::node {

class MetricsText {
 public:
  using Labels = std::map<std::string, std::string>;
  // Starts a metric family: its HELP and TYPE lines (counter, gauge,
  // histogram). Families must not repeat.
  void Family(const std::string& name, const char* type, const std::string& help);
  void Sample(const std::string& name, const Labels& labels, double value);
  void Sample(const std::string& name, double value) { Sample(name, {}, value); }
  const std::string& text() const { return out_; }

 private:
  std::string out_;
};

struct ProcessFigures {
  double resident_bytes = 0;
  double cpu_seconds = 0;
  double start_time_seconds = 0;  // since the epoch
  bool ok = false;                // false when /proc could not be read
};
ProcessFigures ReadProcessFigures();

}  // namespace starling::node
