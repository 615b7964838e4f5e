// The local API's replies as JSON: what `starling members|info --format json`
// print and what the daemon's /v1/members and /v1/info serve. One function
// per reply, used by both sides, so the two can never drift apart.
#pragma once

#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "schema/api.capnp.h"

namespace starling::api_json {

std::map<std::string, std::string> TagMap(capnp::List<api::Tag>::Reader tags);
// {"name", "addr", "status", "tags", "incarnation", "protocol": {"min", "max"}}
nlohmann::json Member(api::Member::Reader m);
// A list of Member().
nlohmann::json Members(capnp::List<api::Member>::Reader members);
// {"name", "addr", "cluster", "profile", "incarnation", "health_score",
//  "protocol_version", "version", "members": {"alive", "suspect", "failed",
//  "left"}, "counters", "tags", "data_dir", "uptime_seconds", "revision",
//  "digest", "entries", "lease": {"holder", "ballot"}, "http", "phase"}
nlohmann::json Info(api::Info::Reader info);

}  // namespace starling::api_json
