#include "starling/api_json.h"

namespace starling::api_json {

using nlohmann::json;

std::map<std::string, std::string> TagMap(capnp::List<api::Tag>::Reader tags) {
  std::map<std::string, std::string> out;
  for (auto t : tags) out[t.getKey().cStr()] = t.getValue().cStr();
  return out;
}

// null until this node has probed the member.
static json Coordinate(api::Member::Reader m) {
  if (!m.hasCoordinate()) return nullptr;
  auto c = m.getCoordinate();
  json vec = json::array();
  for (double x : c.getVec()) vec.push_back(x);
  return {{"vec", vec}, {"error", c.getError()}, {"adjustment", c.getAdjustment()}, {"height", c.getHeight()}};
}

json Member(api::Member::Reader m) {
  return json{{"name", m.getName().cStr()},
              {"addr", m.getAddr().cStr()},
              {"status", m.getStatus().cStr()},
              {"tags", TagMap(m.getTags())},
              {"incarnation", m.getIncarnation()},
              {"version", m.getVersion().cStr()},
              {"protocol", {{"min", m.getProtocolMin()}, {"max", m.getProtocolMax()}, {"current", m.getProtocolCur()}}},
              {"coordinate", Coordinate(m)}};
}

json Members(capnp::List<api::Member>::Reader members) {
  json out = json::array();
  for (auto m : members) out.push_back(Member(m));
  return out;
}

json Info(api::Info::Reader info) {
  json counters = json::object();
  for (auto c : info.getCounters()) counters[c.getName().cStr()] = c.getValue();
  return json{
      {"name", info.getName().cStr()},
      {"addr", info.getAddr().cStr()},
      {"cluster", info.getCluster().cStr()},
      {"profile", info.getProfile().cStr()},
      {"incarnation", info.getIncarnation()},
      {"health_score", info.getHealthScore()},
      {"protocol_version", info.getProtocolVersion()},
      {"protocol",
       {{"min", info.getProtocolMin()}, {"max", info.getProtocolMax()}, {"current", info.getProtocolVersion()}}},
      {"version", info.getVersion().cStr()},
      {"build", info.getBuild().cStr()},
      {"pid", info.getPid()},
      {"members",
       {{"alive", info.getMembersAlive()},
        {"suspect", info.getMembersSuspect()},
        {"failed", info.getMembersFailed()},
        {"left", info.getMembersLeft()}}},
      {"counters", counters},
      {"tags", TagMap(info.getTags())},
      {"data_dir", info.getDataDir().cStr()},
      {"uptime_seconds", info.getUptimeSeconds()},
      {"revision", info.getRevision().cStr()},
      {"digest", info.getDigest().cStr()},
      {"entries", info.getEntries()},
      {"lease",
       {{"holder", info.getLeaseHolder().size() ? json(info.getLeaseHolder().cStr()) : json(nullptr)},
        {"ballot", info.getLeaseBallot()}}},
      {"http", info.getHttp().cStr()},
      {"phase", info.getPhase().cStr()},
  };
}

}  // namespace starling::api_json
