#include "graph_dot.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <vector>

namespace starling::cli {

using json = nlohmann::json;

namespace {

// A DOT double-quoted ID: names are restricted already, but labels carry
// operator text.
std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out + "\"";
}

std::string Join(const json& list) {
  std::string out;
  for (const auto& v : list)
    if (v.is_string()) out += (out.empty() ? "" : ", ") + v.get<std::string>();
  return out;
}

}  // namespace

std::string GraphDot(const json& graph) {
  std::string out = "digraph starling {\n  rankdir=LR;\n  node [shape=box, style=rounded];\n";
  std::map<std::string, std::vector<std::string>> by_node;  // node -> services only it runs
  std::vector<std::pair<std::string, std::string>> loose;   // service, label
  for (const auto& s : graph.value("services", json::array())) {
    const std::string name = s.value("name", "");
    const json nodes = s.value("nodes", json::array());
    if (nodes.size() == 1 && nodes[0].is_string()) {
      by_node[nodes[0].get<std::string>()].push_back(name);
    } else {
      loose.emplace_back(name, name + "\n" + (nodes.empty() ? "(on no node)" : "on " + Join(nodes)));
    }
  }
  for (const auto& [node, services] : by_node) {
    out += "  subgraph " + Quote("cluster_" + node) + " {\n    label=" + Quote(node) + ";\n";
    for (const auto& s : services) out += "    " + Quote(s) + ";\n";
    out += "  }\n";
  }
  for (const auto& [name, label] : loose) out += "  " + Quote(name) + " [label=" + Quote(label) + "];\n";
  for (const auto& e : graph.value("edges", json::array())) {
    out += "  " + Quote(e.value("from", "")) + " -> " + Quote(e.value("to", ""));
    const std::string via = Join(e.value("via", json::array()));
    if (!via.empty()) out += " [label=" + Quote(via) + "]";
    out += ";\n";
  }
  return out + "}\n";
}

Result<std::string> DotToSvg(const std::string& dot) {
  char path[] = "/tmp/starling-graph-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return Status::Unavailable("graph: cannot create a temporary file in /tmp");
  bool written = write(fd, dot.data(), dot.size()) == static_cast<ssize_t>(dot.size());
  close(fd);
  std::string svg;
  int status = -1;
  if (written) {
    // The path comes from mkstemp: no shell metacharacters.
    if (FILE* p = popen(("dot -Tsvg " + std::string(path) + " 2>/dev/null").c_str(), "r")) {
      char buf[8192];
      size_t n;
      while ((n = fread(buf, 1, sizeof buf, p)) > 0) svg.append(buf, n);
      status = pclose(p);
    }
  }
  unlink(path);
  if (!written) return Status::Unavailable("graph: cannot write a temporary file in /tmp");
  if (status != 0 || svg.empty()) {
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
      return Status::Unavailable(
          "graph --format svg needs Graphviz's `dot` (apt-get install graphviz); --format dot works without it");
    return Status::Unavailable("graph: `dot -Tsvg` failed (exit status " + std::to_string(status) + ")");
  }
  return svg;
}

}  // namespace starling::cli
