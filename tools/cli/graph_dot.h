// `starling graph` output: the daemon answers the service graph as JSON
// (node/core/rollout.h ServiceGraph); this turns it into Graphviz DOT, and DOT
// into SVG through Graphviz's `dot` when it is installed.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "starling/status.h"

namespace starling::cli {

// A digraph with one box per service and one edge per dependency (service
// -> the service it needs), labelled with the params that carry it. A
// service that runs on exactly one node is drawn inside that node's cluster;
// one on several nodes (or none yet) names them in its label. No edge is
// added beyond the graph's `edges`, so the DOT lists exactly the declared
// dependencies.
std::string GraphDot(const nlohmann::json& graph);

// DOT -> SVG by running `dot -Tsvg`; kUnavailable when Graphviz is missing.
Result<std::string> DotToSvg(const std::string& dot);

}  // namespace starling::cli
