#include "state_commands.h"

#include "artifacts.h"
#include "rollout.h"

#include <algorithm>
#include <map>
#include <set>

namespace starling::node {

using store::Json;

namespace {

// "3 changes" / "1 change".
std::string Count(size_t n, const char* what) {
  return std::to_string(n) + " " + what + (n == 1 ? "" : "s");
}

Json RevisionJson(const store::Revision& r, const std::string& current) {
  return Json{{"revision", r.id},
              {"time", r.hlc.ToString()},
              {"hlc", {{"wall_us", r.hlc.wall}, {"logical", r.hlc.logical}}},
              {"digest", r.digest},
              {"origin", r.origin_name},
              {"seq", r.seq},
              {"note", r.note},
              {"conflict", r.conflict},
              {"changed", r.changed},
              {"current", !r.id.empty() && r.id == current}};
}

std::string SourceOf(const ApplyRequest& request) {
  return request.source.empty() ? "the document" : request.source;
}

}  // namespace

Result<Json> StateCommands::Apply(const ApplyRequest& request) {
  Result<Json> given = Parse(request);
  if (!given.ok()) return given.status();
  return ApplyParsed(request, std::move(given).value());
}

Result<Json> StateCommands::Parse(const ApplyRequest& request) {
  const std::string source = SourceOf(request);
  auto parsed = store::ParseDocument(request.document);
  if (!parsed.ok()) return Status::InvalidArgument(source + ": " + parsed.status().message());
  Json given = std::move(*parsed);
  std::map<std::string, std::string> settings;
  for (const auto& [name, value] : request.settings)
    if (!settings.emplace(name, value).second)
      return Status::InvalidArgument("--set " + name + " is given more than once");
  if (Status filled = store::FillSettings(given, settings); !filled.ok())
    return Status::InvalidArgument(source + " is refused: " + filled.message());
  return given;
}

Result<Json> StateCommands::ApplyParsed(const ApplyRequest& request, Json given) {
  const std::string source = SourceOf(request);
  store::DesiredLog& log = replicator_.log();
  Json warnings = Json::array();
  store::Hlc base = log.last_hlc();
  const store::Revision now = log.Current();
  if (!request.base.empty()) {
    auto b = log.Find(request.base);
    if (!b.ok()) return Status::InvalidArgument("--base: " + b.status().message());
    base = b->hlc;
    if (b->id != now.id) {
      size_t since = 0;
      std::set<std::string> by;
      for (const auto& row : log.History())
        if (row.hlc > b->hlc && row.changed) {
          ++since;
          by.insert(row.origin_name);
        }
      std::string who;
      for (const auto& n : by) who += (who.empty() ? "" : ", ") + n;
      warnings.push_back("raced a concurrent change: the current revision is " + now.id + ", not your base " +
                         b->id + " (" + Count(since, "change") + " since, by " + who +
                         "); this change was applied on top of it; check `starling history`");
    }
  }
  // Only `unfreeze` lifts a freeze: an apply of a file that says
  // `freeze: false` (as most copies of a document do) keeps it. Nor does an
  // apply write "not frozen" when the cluster is not frozen: that write
  // could win over a concurrent freeze on another node.
  if (auto f = given.find("freeze"); f != given.end()) {
    const std::optional<std::string> frozen = FrozenReason(log.state().Document());
    if (frozen && *f != log.state().Document().value("freeze", Json())) {
      warnings.push_back("the cluster stays " + *frozen + ": the freeze in " + source +
                         " is ignored; only `starling unfreeze` lifts a freeze");
      given.erase(f);
    } else if (!frozen && !FrozenReason(given)) {
      given.erase(f);
    }
  }
  // The given sections replace the current ones; a null section goes.
  std::vector<std::string> commissioned;
  auto out = Change(
      [&](Json& d) {
        for (const auto& [section, value] : given.items()) {
          if (value.is_null()) {
            d.erase(section);
          } else {
            d[section] = value;
          }
        }
        // A voter that is no member cannot vote: a typo here costs the lease
        // a voter, or its majority.
        if (given.contains("voters") && given["voters"].is_array() && !request.force) {
          std::vector<std::string> names;
          for (const Json& v : given["voters"])
            if (v.is_string()) names.push_back(v.get<std::string>());
          std::vector<std::string> unseen = Unseen(names, nullptr);
          if (!unseen.empty())
            return Status::InvalidArgument(source + " is refused: voters " + JoinNames(unseen) +
                                           (unseen.size() == 1 ? " is" : " are") + " no member of this cluster" +
                                           KnownList() + "; --force if " + (unseen.size() == 1 ? "it has" : "they have") +
                                           " not joined yet");
        }
        // What the lease would commission a moment later, in this change;
        // not while the cluster is frozen, nor a node the current document
        // names (decommissioned, say) when the file leaves it out.
        const Json& current = log.state().Document();
        if (alive_ && !FrozenReason(current)) {
          const auto known = current.find("nodes");
          for (const std::string& a : ToAutoCommission(d, alive_()))
            if (known == current.end() || !known->is_object() || !known->contains(a)) commissioned.push_back(a);
          if (!commissioned.empty() && (!d.contains("nodes") || !d["nodes"].is_object())) d["nodes"] = Json::object();
          for (const std::string& a : commissioned) d["nodes"][a] = Json{{"lifecycle", "commissioned"}};
        }
        if (std::string why = AgentChangeRefusal(current, d); !why.empty())
          return Status::InvalidArgument(source + " is refused: " + why);
        // Packages must name artifacts the catalog holds (earlier revisions
        // did when they were applied, so rollback needs no such check).
        std::vector<std::string> unknown = UnknownArtifacts(given, log.state());
        if (!unknown.empty()) {
          std::string message = source + " is refused:";
          for (const auto& u : unknown) message += "\n" + u;
          return Status::InvalidArgument(message);
        }
        return Status::Ok();
      },
      "apply " + source, source + " is refused", base, std::move(warnings));
  if (out.ok()) (*out)["commissioned"] = commissioned;
  return out;
}

// The protocol version the `agent` section needs (membership/config.h).
constexpr unsigned kAgentSectionProtocol = 2;

std::string StateCommands::AgentChangeRefusal(const Json& before, const Json& after) const {
  const Json was = before.value("agent", Json()), now = after.value("agent", Json());
  if (was == now) return "";
  // A node moves to one revision at a time: an agent change rides alone, so
  // that an application rollout and an agent rollout never mix.
  for (const char* section : {"roles", "packages", "services"})
    if (before.value(section, Json()) != after.value(section, Json()))
      return std::string("it changes the agent section and ") + section +
             ": a new starlingd rolls out on its own (apply the agent change, roll it out, then the rest)";
  if (now.is_null() || !speakers_) return "";
  std::vector<std::string> old;
  for (const auto& [name, spoken] : speakers_())
    if (spoken < kAgentSectionProtocol) old.push_back(name + " (speaks " + std::to_string(spoken) + ")");
  if (old.empty()) return "";
  return "the agent section needs gossip protocol " + std::to_string(kAgentSectionProtocol) + ", and " +
         JoinNames(old) + (old.size() == 1 ? " is" : " are") +
         " too old: restart them without an older --protocol, or on a release that speaks it";
}

Result<Json> StateCommands::Write(std::vector<store::Op> ops, std::string note, store::Hlc base, Json warnings,
                                  VoterSource source) {
  const std::string previous = replicator_.log().Current().id;
  const size_t objects = ops.size();
  for (auto& op : ops)
    if (op.key == "voters") {
      const store::Register* now = replicator_.log().state().Find("voters");
      const bool by_operator = source == VoterSource::kOperator;
      std::set<std::string> next, before;
      if (op.value)
        if (auto v = Json::parse(*op.value, nullptr, false); v.is_array())
          for (const auto& n : v)
            if (n.is_string()) next.insert(n.get<std::string>());
      if (now && now->value)
        if (auto v = Json::parse(*now->value, nullptr, false); v.is_array())
          for (const auto& n : v)
            if (n.is_string()) before.insert(n.get<std::string>());
      const uint64_t epoch = now ? VoterRank::Decode(now->rank).epoch : 0;
      const bool refill = !by_operator && now && next.size() > before.size() &&
                          std::includes(next.begin(), next.end(), before.begin(), before.end());
      VoterRank rank{refill ? epoch : epoch + 1, by_operator, next.size(), replicator_.log().entries()};
      op.rank = rank.Encode();
    }
  auto e = replicator_.Write(std::move(ops), std::move(note), base);
  if (!e.ok()) return Status(e.status().code(), "the change was not stored: " + e.status().message());
  return Json{{"revision", replicator_.log().Current().id},
              {"previous", previous},
              {"changed", true},
              {"objects", objects},
              {"origin", e->origin_name},
              {"seq", e->seq},
              {"warnings", std::move(warnings)}};
}

Result<std::string> StateCommands::Get(const std::string& revision, const std::string& format,
                                       bool show_params) const {
  if (format != "json" && format != "yaml")
    return Status::InvalidArgument("unknown format '" + format + "' (expected json or yaml)");
  const store::DesiredLog& log = replicator_.log();
  Json doc = log.state().Document();
  if (!revision.empty()) {
    auto at = log.DocumentAt(revision);
    if (!at.ok()) return at.status();
    doc = std::move(*at);
  }
  if (!show_params) doc = store::HideParams(std::move(doc));
  return format == "json" ? doc.dump(2) + "\n" : store::ToYaml(doc);
}

Json StateCommands::History() const {
  const store::DesiredLog& log = replicator_.log();
  const std::string current = log.Current().id;
  Json out = Json::array();
  for (const auto& row : log.History()) {
    // Rollout progress records are not changes to the desired state.
    if (!row.changed && row.note.rfind(kRolloutNote, 0) == 0) continue;
    out.push_back(RevisionJson(row, current));
  }
  return out;
}

Result<Json> StateCommands::Diff(const std::string& from, const std::string& to, bool hide_params) const {
  const store::DesiredLog& log = replicator_.log();
  auto a = log.DocumentAt(from);
  if (!a.ok()) return a.status();
  Json b = log.state().Document();
  if (!to.empty()) {
    auto at = log.DocumentAt(to);
    if (!at.ok()) return at.status();
    b = std::move(*at);
  }
  if (hide_params) return store::DiffJson(store::HideParams(std::move(*a)), store::HideParams(std::move(b)));
  return store::DiffJson(*a, b);
}

Result<Json> StateCommands::Rollback(const std::string& to) {
  const store::DesiredLog& log = replicator_.log();
  const store::Revision now = log.Current();
  std::string target = to;
  if (target.empty()) {
    // The revision before the current one, passing over the lease's own
    // voter changes.
    const auto& h = log.History();
    for (auto it = h.rbegin(); it != h.rend() && target.empty(); ++it)
      if (it->changed && it->id != now.id && it->note.rfind(kVotersNote, 0) != 0) target = it->id;
    if (target.empty()) return Status::NotFound("no earlier revision to roll back to");
  }
  auto rev = log.Find(target);
  if (!rev.ok()) return rev.status();
  auto doc = log.DocumentAt(rev->id);
  if (!doc.ok()) return doc.status();
  // The voter set belongs to the lease (it tracks which nodes are alive),
  // the freeze to freeze and unfreeze: a rollback leaves both as they are.
  Json warnings = Json::array();
  const Json& current = log.state().Document();
  if (FrozenReason(*doc) != FrozenReason(current)) {
    auto frozen = FrozenReason(current);
    warnings.push_back(frozen ? "the cluster stays " + *frozen + "; only `starling unfreeze` lifts a freeze"
                              : "revision " + rev->id + " was frozen; the cluster stays unfrozen (`starling freeze` "
                                "freezes it)");
  }
  auto out = Change(
      [&](Json& d) {
        Json voters = d.contains("voters") ? d["voters"] : Json();
        Json freeze = d.contains("freeze") ? d["freeze"] : Json();
        d = *doc;
        d.erase("voters");
        d.erase("freeze");
        if (!voters.is_null()) d["voters"] = voters;
        if (!freeze.is_null()) d["freeze"] = freeze;
        return Status::Ok();
      },
      "rollback to " + rev->id, "rollback to " + rev->id + " is refused", log.last_hlc(), std::move(warnings));
  if (!out.ok()) return out;
  if (!(*out)["changed"].get<bool>())
    return Status::InvalidArgument("the desired state already equals revision " + rev->id);
  (*out)["to"] = rev->id;
  return out;
}

Result<Json> StateCommands::Change(const std::function<Status(Json&)>& edit, std::string note,
                                   const std::string& refused, store::Hlc base, Json warnings, VoterSource source) {
  store::DesiredLog& log = replicator_.log();
  const Json& current = log.state().Document();
  Json next = current;
  if (Status s = edit(next); !s.ok()) return s;
  if (Status s = store::ValidateDocument(next); !s.ok())
    return Status::InvalidArgument(refused + ":\n" + s.message());
  // Only the objects that differ: writers touching different objects never
  // overwrite each other.
  auto ops = store::OpsBetween(current, next);
  if (ops.empty()) {
    const std::string id = log.Current().id;
    return Json{{"revision", id}, {"previous", id}, {"changed", false}, {"objects", 0}, {"warnings", warnings}};
  }
  return Write(std::move(ops), std::move(note), base, std::move(warnings), source);
}

Result<Json> StateCommands::Change(const std::function<Status(Json&)>& edit, std::string note, VoterSource source) {
  return Change(edit, std::move(note), "refused", replicator_.log().last_hlc(), Json::array(), source);
}

Result<Json> StateCommands::SetVoters(std::vector<std::string> voters, const std::string& why) {
  std::sort(voters.begin(), voters.end());
  return Change(
      [&](Json& d) {
        d["voters"] = voters;
        return Status::Ok();
      },
      std::string(kVotersNote) + " " + why, VoterSource::kLease);
}

std::vector<std::string> StateCommands::Unseen(const std::vector<std::string>& names, const Json* doc) const {
  if (!members_) return {};
  const std::vector<std::string> members = members_();
  std::vector<std::string> out;
  for (const auto& n : names) {
    if (std::find(members.begin(), members.end(), n) != members.end()) continue;
    if (doc) {
      auto nodes = doc->find("nodes");
      if (nodes != doc->end() && nodes->is_object() && nodes->contains(n)) continue;
    }
    if (std::find(out.begin(), out.end(), n) == out.end()) out.push_back(n);
  }
  return out;
}

std::string StateCommands::KnownList() const {
  if (!members_) return "";
  std::vector<std::string> members = members_();
  std::sort(members.begin(), members.end());
  constexpr size_t kShown = 10;
  std::string out;
  for (size_t i = 0; i < members.size() && i < kShown; ++i) out += (i ? ", " : "") + members[i];
  if (members.size() > kShown) out += ", ... (" + std::to_string(members.size()) + " in all)";
  return " (members: " + out + ")";
}

std::optional<std::string> StateCommands::Frozen() const { return FrozenReason(replicator_.log().state().Document()); }

std::vector<std::string> ToAutoCommission(const Json& doc, const std::vector<std::string>& alive) {
  auto sw = doc.find("switches");
  if (sw == doc.end() || !store::TrueAt(*sw, "auto_commission") || FrozenReason(doc))
    return {};
  const auto nodes = doc.find("nodes");
  std::vector<std::string> out;
  for (const auto& a : alive)
    if (nodes == doc.end() || !nodes->is_object() || !nodes->contains(a)) out.push_back(a);
  return out;
}

std::optional<std::string> FrozenReason(const Json& doc) {
  auto f = doc.find("freeze");
  if (f == doc.end() || f->is_null() || (f->is_boolean() && !f->get<bool>())) return std::nullopt;
  std::string why = "frozen";
  if (f->is_object()) {
    why = "frozen: " + store::TextAt(*f, "reason", "no reason given");
    if (const std::string by = store::TextAt(*f, "by"); !by.empty()) why += " (by " + by + ")";
  }
  return why;
}

Result<Json> StateCommands::Freeze(const std::string& reason, const std::string& by) {
  if (reason.empty()) return Status::InvalidArgument("freeze needs --reason: it is shown to whoever is refused");
  return Change(
      [&](Json& d) {
        d["freeze"] = Json{{"reason", reason}, {"by", by}};
        return Status::Ok();
      },
      "freeze: " + reason);
}

Result<Json> StateCommands::Unfreeze() {
  return Change(
      [](Json& d) {
        d["freeze"] = false;
        return Status::Ok();
      },
      "unfreeze");
}

Result<Json> StateCommands::SetLifecycle(const std::vector<std::string>& nodes, const std::string& lifecycle,
                                         bool force) {
  if (nodes.empty()) return Status::InvalidArgument("name at least one node");
  if (auto why = Frozen()) return Status::Conflict("refused: the cluster is " + *why + "; `starling unfreeze` lifts it");
  if (!force) {
    std::vector<std::string> unseen = Unseen(nodes, &replicator_.log().state().Document());
    if (!unseen.empty())
      return Status::InvalidArgument(JoinNames(unseen) + (unseen.size() == 1 ? " is" : " are") +
                                     " no member of this cluster and no node of its desired state" + KnownList() +
                                     "; --force if " + (unseen.size() == 1 ? "it has" : "they have") +
                                     " not joined yet");
  }
  return Change(
      [&](Json& d) -> Status {
        if (!d.contains("nodes") || !d["nodes"].is_object()) d["nodes"] = Json::object();
        std::vector<std::string> leaving;
        for (const auto& n : nodes) {
          Json& node = d["nodes"][n];
          if (!node.is_object()) node = Json::object();
          node["lifecycle"] = lifecycle;
          if (lifecycle == "decommissioned" && d.contains("voters") && d["voters"].is_array())
            for (const auto& v : d["voters"])
              if (v == n) leaving.push_back(n);
        }
        if (leaving.size() > 1)
          return Status::InvalidArgument("decommission at most one voter at a time, so that the lease's old and new "
                                         "voter majorities overlap (voters named: " +
                                         leaving[0] + ", " + leaving[1] + ")");
        if (!leaving.empty()) {
          Json kept = Json::array();
          for (const auto& v : d["voters"])
            if (v != leaving[0]) kept.push_back(v);
          if (kept.empty()) return Status::InvalidArgument("cannot decommission " + leaving[0] + ": it is the only voter");
          d["voters"] = kept;
        }
        return Status::Ok();
      },
      (lifecycle == "commissioned" ? "commission " : "decommission ") + JoinNames(nodes),
      // A decommission only shrinks the set it found: the set is still the
      // lease's, and refills to the choice rule's size.
      VoterSource::kLease);
}

}  // namespace starling::node
