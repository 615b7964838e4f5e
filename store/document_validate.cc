// Validation: whether a parsed document is one we accept. Every problem is reported, each naming the path of
// the offending item, in the stable order ValidateDocument promises.
#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "document_internal.h"
#include "starling/store/document.h"

namespace starling::store {

using internal::DependencyMap;
using internal::IsAlnum;
using internal::IsDigit;
using internal::IsIdentifier;
using internal::IsItemName;
using internal::IsLowerHex;
using internal::IsNodeOrHookName;
using internal::JoinPath;
using internal::kIdentifierRule;
using internal::kItemNameRule;
using internal::kNodeNameRule;
using internal::Printable;
using internal::Quoted;
using internal::ValidUtf8;

namespace {

// ----------------------------------------------------------------------------------------------------
// Value rules.

bool IsVersion(std::string_view s) {
  if (s.empty() || s.size() > 64 || !IsAlnum(s[0])) return false;
  for (char c : s) {
    if (!(IsAlnum(c) || c == '.' || c == '+' || c == '~' || c == '_' || c == '-')) return false;
  }
  return std::any_of(s.begin(), s.end(), IsDigit) && s.find("..") == std::string_view::npos &&
         s.back() != '.' && s.back() != '-';
}

bool IsDigest(std::string_view s) {
  constexpr std::string_view kPrefix = "sha256:";
  return s.size() == kPrefix.size() + 64 && s.substr(0, kPrefix.size()) == kPrefix &&
         std::all_of(s.begin() + kPrefix.size(), s.end(), IsLowerHex);
}

// ^([1-9][0-9]?|100)%$
bool IsPercent(std::string_view s) {
  if (s.size() < 2 || s.back() != '%') return false;
  std::string_view n = s.substr(0, s.size() - 1);
  if (n == "100") return true;
  return n.size() <= 2 && n[0] != '0' && std::all_of(n.begin(), n.end(), IsDigit);
}

// The first control character in s other than newline and tab, shown as \xNN.
std::optional<std::string> FirstControlCharacter(std::string_view s) {
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7F) return Printable(std::string_view(&ch, 1));
  }
  return std::nullopt;
}

// ----------------------------------------------------------------------------------------------------
// Showing operator text inside messages.

std::string Describe(const Json& j) {
  switch (j.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::boolean:
      return "a boolean";
    case Json::value_t::string:
      return "a string";
    case Json::value_t::array:
      return "a list";
    case Json::value_t::object:
      return "a mapping";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
    case Json::value_t::number_float:
      return "a number";
    default:
      return "an unsupported value";
  }
}

// The value itself when it is short to show, its kind otherwise.
std::string ShowValue(const Json& j) {
  if (j.is_string()) return Quoted(j.get_ref<const std::string&>());
  if (j.is_primitive()) return j.dump(-1, ' ', false, Json::error_handler_t::replace);
  return Describe(j);
}

std::string JoinComma(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

// ----------------------------------------------------------------------------------------------------
// References and the service graph.

struct Reference {
  std::string text;  // "${service.output}"
  std::string service;
  std::string output;
};

// Every "${" opens a reference. There is deliberately no escape: what an operator sees is what is checked.
void ScanReferences(std::string_view s, std::vector<Reference>* refs, std::vector<std::string>* errors) {
  constexpr std::string_view kForm = " (expected ${service.output})";
  for (size_t i = s.find("${"); i != std::string_view::npos; i = s.find("${", i)) {
    size_t close = s.find('}', i + 2);
    if (close == std::string_view::npos) {
      if (errors) errors->push_back("unterminated reference " + Quoted(s.substr(i)) + std::string(kForm));
      return;
    }
    std::string_view text = s.substr(i, close - i + 1);
    std::string_view inner = s.substr(i + 2, close - i - 2);
    i = close + 1;
    if (inner.empty()) {
      if (errors) errors->push_back("empty reference '${}'" + std::string(kForm));
      continue;
    }
    // Service names may contain '.', output names may not: the last '.' separates them.
    size_t dot = inner.rfind('.');
    if (dot == std::string_view::npos && IsIdentifier(inner)) {
      if (errors)
        errors->push_back(std::string(text) + " has no value: give one when applying, with --set " +
                          std::string(inner) + "=VALUE");
      continue;
    }
    if (dot == std::string_view::npos || !IsItemName(inner.substr(0, dot)) ||
        !IsIdentifier(inner.substr(dot + 1))) {
      if (errors) errors->push_back("malformed reference " + Quoted(text) + std::string(kForm));
      continue;
    }
    refs->push_back(
        {std::string(text), std::string(inner.substr(0, dot)), std::string(inner.substr(dot + 1))});
  }
}

}  // namespace

std::map<std::string, std::set<std::string>> internal::DependencyMap(const Json& doc,
                                                                     const std::set<std::string>* known) {
  std::map<std::string, std::set<std::string>> deps;
  if (!doc.is_object()) return deps;
  auto services = doc.find("services");
  if (services == doc.end() || !services->is_object()) return deps;
  for (auto it = services->begin(); it != services->end(); ++it) {
    const Json& svc = it.value();
    if (!svc.is_object()) continue;
    auto& out = deps[it.key()];
    auto add = [&](const std::string& target) {
      if (!known || known->count(target)) out.insert(target);
    };
    if (auto params = svc.find("params"); params != svc.end() && params->is_object()) {
      for (const Json& v : *params) {
        if (!v.is_string()) continue;
        std::vector<Reference> refs;
        ScanReferences(v.get_ref<const std::string&>(), &refs, nullptr);
        for (const auto& r : refs) add(r.service);
      }
    }
    if (auto after = svc.find("after"); after != svc.end() && after->is_array()) {
      for (const Json& v : *after) {
        if (v.is_string()) add(v.get<std::string>());
      }
    }
  }
  return deps;
}

namespace {

// Johnson's algorithm, iterative (service graphs come from operator input, so no recursion on its shape).
// Each elementary cycle is found exactly once, from its smallest vertex, which is what the report wants.
std::vector<std::vector<int>> ElementaryCycles(const std::vector<std::vector<int>>& adj, size_t limit,
                                               bool* truncated) {
  std::vector<std::vector<int>> cycles;
  const int n = static_cast<int>(adj.size());
  std::vector<bool> blocked;
  std::vector<std::vector<int>> blocked_by;
  auto unblock = [&](int u) {
    std::vector<int> work{u};
    while (!work.empty()) {
      int x = work.back();
      work.pop_back();
      if (!blocked[x]) continue;
      blocked[x] = false;
      for (int w : blocked_by[x]) work.push_back(w);
      blocked_by[x].clear();
    }
  };
  struct Frame {
    int v;
    size_t next;
    bool found;
  };
  for (int s = 0; s < n; ++s) {
    blocked.assign(n, false);
    blocked_by.assign(n, {});
    std::vector<int> path{s};
    std::vector<Frame> frames{{s, 0, false}};
    blocked[s] = true;
    while (!frames.empty()) {
      Frame& f = frames.back();
      if (f.next < adj[f.v].size()) {
        int w = adj[f.v][f.next++];
        if (w < s) continue;
        if (w == s) {
          f.found = true;
          cycles.push_back(path);
          cycles.back().push_back(s);
          if (cycles.size() >= limit) {
            *truncated = true;
            return cycles;
          }
        } else if (!blocked[w]) {
          blocked[w] = true;
          path.push_back(w);
          frames.push_back({w, 0, false});
        }
        continue;
      }
      int v = f.v;
      bool found = f.found;
      if (found) {
        unblock(v);
      } else {
        for (int w : adj[v]) {
          if (w < s) continue;
          auto& list = blocked_by[w];
          if (std::find(list.begin(), list.end(), v) == list.end()) list.push_back(v);
        }
      }
      frames.pop_back();
      path.pop_back();
      if (found && !frames.empty()) frames.back().found = true;
    }
  }
  return cycles;
}

// ----------------------------------------------------------------------------------------------------
// Validation.

class Validator {
 public:
  explicit Validator(const Json& doc) : doc_(doc) {}

  std::vector<std::string> Run() {
    CheckUnknownSections();
    CheckRoles();
    CheckPackages();
    CheckServices();
    CheckNodes();
    CheckPolicy();
    CheckSwitches();
    if (const Json* f = Section("freeze")) CheckFreeze(*f);
    CheckVoters();
    CheckAgent();
    return std::move(problems_);
  }

 private:
  void Problem(const std::string& path, const std::string& what) { problems_.push_back(path + ": " + what); }

  const Json* Section(std::string_view name) const {
    auto it = doc_.find(std::string(name));
    return it == doc_.end() ? nullptr : &*it;
  }

  bool ExpectObject(const std::string& path, const Json& j) {
    if (j.is_object()) return true;
    Problem(path, "expected a mapping, got " + Describe(j));
    return false;
  }

  // false, true, or {reason: TEXT, by: NODE} (what `starling freeze` writes).
  void CheckFreeze(const Json& f) {
    if (f.is_boolean()) return;
    if (!f.is_object()) {
      Problem("freeze", "expected true, false or a mapping with a reason, got " + ShowValue(f));
      return;
    }
    CheckFields("freeze", f, {"reason", "by"});
    auto r = f.find("reason");
    if (r == f.end() || !r->is_string() || r->get<std::string>().empty())
      Problem("freeze.reason", "a freeze needs a non-empty reason");
    if (auto b = f.find("by"); b != f.end() && !b->is_string()) Problem("freeze.by", "expected a node name");
  }

  void ExpectBool(const std::string& path, const Json& j) {
    if (!j.is_boolean()) Problem(path, "expected true or false, got " + ShowValue(j));
  }

  void CheckFields(const std::string& path, const Json& obj,
                   std::initializer_list<std::string_view> allowed) {
    for (auto it = obj.begin(); it != obj.end(); ++it) {
      if (std::find(allowed.begin(), allowed.end(), it.key()) == allowed.end()) {
        Problem(path, "unknown field " + Quoted(it.key()));
      }
    }
  }

  // The strings of a list, reporting anything that is not a list of strings.
  std::vector<std::string> StringList(const std::string& path, const Json& j) {
    std::vector<std::string> out;
    if (!j.is_array()) {
      Problem(path, "expected a list, got " + ShowValue(j));
      return out;
    }
    for (const Json& e : j) {
      if (e.is_string()) {
        out.push_back(e.get<std::string>());
      } else {
        Problem(path, "expected a list of strings, found " + ShowValue(e));
      }
    }
    return out;
  }

  void CheckNoDuplicates(const std::string& path, const std::vector<std::string>& items,
                         std::string_view what) {
    std::set<std::string> seen;
    for (const auto& s : items) {
      if (!seen.insert(s).second) Problem(path, "duplicate " + std::string(what) + " " + Quoted(s));
    }
  }

  void CheckRoleList(const std::string& path, const Json& j) {
    std::vector<std::string> list = StringList(path, j);
    CheckNoDuplicates(path, list, "role");
    for (const auto& r : list) {
      if (roles_.count(r)) continue;
      std::string declared =
          roles_.empty()
              ? "(no roles are declared)"
              : "(declared roles: " + JoinComma(std::vector<std::string>(roles_.begin(), roles_.end())) + ")";
      Problem(path, "unknown role " + Quoted(r) + " " + declared);
    }
  }

  void CheckHooks(const std::string& path, const Json& j, std::initializer_list<std::string_view> kinds,
                  std::string_view expected) {
    if (!ExpectObject(path, j)) return;
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (std::find(kinds.begin(), kinds.end(), it.key()) == kinds.end()) {
        Problem(path, "unknown hook " + Quoted(it.key()) + " (expected " + std::string(expected) + ")");
        continue;
      }
      std::string hp = JoinPath(path, Printable(it.key()));
      if (!it.value().is_string()) {
        Problem(hp, "expected a hook name, got " + ShowValue(it.value()));
      } else if (!IsNodeOrHookName(it.value().get_ref<const std::string&>())) {
        Problem(hp, Quoted(it.value().get_ref<const std::string&>()) +
                        " is not a hook name (a file name in the hooks directory, not a command line)");
      }
    }
  }

  void CheckDuration(const std::string& path, const Json& j, bool allow_zero) {
    if (!j.is_string()) {
      Problem(path, "expected a duration such as \"10s\", got " + ShowValue(j));
      return;
    }
    auto d = ParseDuration(j.get_ref<const std::string&>());
    if (!d.ok()) {
      Problem(path, d.status().message());
    } else if (!allow_zero && d->count() == 0) {
      Problem(path, "must be longer than 0s");
    }
  }

  void CheckUnknownSections() {
    for (auto it = doc_.begin(); it != doc_.end(); ++it) {
      if (std::find(kSections.begin(), kSections.end(), it.key()) != kSections.end()) continue;
      std::string expected;
      for (auto s : kSections) expected += (expected.empty() ? "" : ", ") + std::string(s);
      Problem(Printable(it.key()), "unknown section (expected one of " + expected + ")");
    }
  }

  void CheckRoles() {
    const Json* roles = Section("roles");
    if (!roles) return;
    std::vector<std::string> list = StringList("roles", *roles);
    for (const auto& r : list) {
      if (!IsItemName(r))
        Problem("roles", Quoted(r) + " is not a valid role name " + std::string(kItemNameRule));
      // Even a malformed role counts as declared, so that one typo is reported once, not at every use.
      roles_.insert(r);
    }
    CheckNoDuplicates("roles", list, "role");
  }

  // agent: {version, artifact}: the starlingd every node runs (`starling
  // agent upgrade` writes it).
  void CheckAgent() {
    const Json* agent = Section("agent");
    if (!agent || !ExpectObject("agent", *agent)) return;
    CheckFields("agent", *agent, {"version", "artifact"});
    CheckVersionField("agent", *agent);
    if (auto a = agent->find("artifact"); a == agent->end()) {
      Problem("agent", "missing required field 'artifact' (the digest of the starlingd binary)");
    } else {
      CheckDigest("agent.artifact", *a);
    }
  }

  void CheckVersionField(const std::string& path, const Json& obj) {
    if (auto v = obj.find("version"); v == obj.end()) {
      Problem(path, "missing required field 'version'");
    } else if (v->is_number()) {
      // YAML reads 1.2 as a number, which is never what an operator writing a version meant.
      Problem(path + ".version", "expected a string, got " + ShowValue(*v) + " (quote it, e.g. \"1.2\")");
    } else if (!v->is_string()) {
      Problem(path + ".version", "expected a string, got " + ShowValue(*v));
    } else if (!IsVersion(v->get_ref<const std::string&>())) {
      Problem(path + ".version", "malformed version " + Quoted(v->get_ref<const std::string&>()));
    }
  }

  void CheckDigest(const std::string& path, const Json& a) {
    if (!a.is_string() || !IsDigest(a.get_ref<const std::string&>())) {
      std::string shown = a.is_string() ? Quoted(a.get_ref<const std::string&>()) : ShowValue(a);
      Problem(path, "malformed digest " + shown + " (expected sha256: and 64 lowercase hex digits)");
    }
  }

  void CheckPackages() {
    const Json* packages = Section("packages");
    if (!packages || !ExpectObject("packages", *packages)) return;
    for (auto it = packages->begin(); it != packages->end(); ++it) {
      const std::string path = "packages." + Printable(it.key());
      const Json& pkg = it.value();
      if (!IsItemName(it.key())) Problem(path, "invalid package name " + std::string(kItemNameRule));
      if (!ExpectObject(path, pkg)) continue;
      CheckFields(path, pkg, {"version", "artifact", "roles", "hooks", "restart"});
      CheckVersionField(path, pkg);
      if (auto a = pkg.find("artifact"); a != pkg.end()) CheckDigest(path + ".artifact", *a);
      if (auto r = pkg.find("roles"); r != pkg.end()) CheckRoleList(path + ".roles", *r);
      if (auto h = pkg.find("hooks"); h != pkg.end()) {
        CheckHooks(path + ".hooks", *h, {"install", "verify", "remove"}, "install, verify or remove");
      }
      if (auto r = pkg.find("restart"); r != pkg.end()) ExpectBool(path + ".restart", *r);
    }
  }

  void CheckServices() {
    const Json* services = Section("services");
    if (!services || !ExpectObject("services", *services)) return;
    std::set<std::string> packages;
    if (const Json* p = Section("packages"); p && p->is_object()) {
      for (auto it = p->begin(); it != p->end(); ++it) packages.insert(it.key());
    }
    // Outputs first: a reference may point at a service sorted after the one holding it.
    std::set<std::string> names;
    std::map<std::string, std::set<std::string>> outputs;
    for (auto it = services->begin(); it != services->end(); ++it) {
      names.insert(it.key());
      auto& declared = outputs[it.key()];
      if (!it.value().is_object()) continue;
      if (auto o = it.value().find("outputs"); o != it.value().end() && o->is_array()) {
        for (const Json& e : *o) {
          if (e.is_string()) declared.insert(e.get<std::string>());
        }
      }
    }
    for (auto it = services->begin(); it != services->end(); ++it) {
      const std::string path = "services." + Printable(it.key());
      const Json& svc = it.value();
      if (!IsItemName(it.key())) Problem(path, "invalid service name " + std::string(kItemNameRule));
      if (!ExpectObject(path, svc)) continue;
      CheckFields(path, svc, {"package", "roles", "hooks", "params", "outputs", "after", "start_deadline"});
      if (auto p = svc.find("package"); p != svc.end()) {
        if (!p->is_string()) {
          Problem(path + ".package", "expected a package name, got " + ShowValue(*p));
        } else if (!packages.count(p->get<std::string>())) {
          Problem(path + ".package", "unknown package " + Quoted(p->get_ref<const std::string&>()));
        }
      }
      if (auto r = svc.find("roles"); r != svc.end()) CheckRoleList(path + ".roles", *r);
      if (auto h = svc.find("hooks"); h != svc.end()) {
        CheckHooks(path + ".hooks", *h, {"start", "stop", "health"}, "start, stop or health");
      }
      if (auto p = svc.find("params"); p != svc.end()) CheckParams(path + ".params", *p, names, outputs);
      if (auto o = svc.find("outputs"); o != svc.end()) {
        std::vector<std::string> list = StringList(path + ".outputs", *o);
        for (const auto& s : list) {
          if (!IsIdentifier(s)) {
            Problem(path + ".outputs",
                    Quoted(s) + " is not a valid output name " + std::string(kIdentifierRule));
          }
        }
        CheckNoDuplicates(path + ".outputs", list, "output");
      }
      if (auto a = svc.find("after"); a != svc.end()) {
        std::vector<std::string> list = StringList(path + ".after", *a);
        for (const auto& s : list) {
          if (!names.count(s)) Problem(path + ".after", "unknown service " + Quoted(s));
        }
        CheckNoDuplicates(path + ".after", list, "service");
      }
      if (auto d = svc.find("start_deadline"); d != svc.end())
        CheckDuration(path + ".start_deadline", *d, false);
    }
    CheckCycles(names);
  }

  void CheckParams(const std::string& path, const Json& params, const std::set<std::string>& services,
                   const std::map<std::string, std::set<std::string>>& outputs) {
    if (!ExpectObject(path, params)) return;
    for (auto it = params.begin(); it != params.end(); ++it) {
      const std::string pp = JoinPath(path, Printable(it.key()));
      if (!IsIdentifier(it.key())) {
        Problem(path, Quoted(it.key()) + " is not a valid parameter name " + std::string(kIdentifierRule));
      }
      const Json& v = it.value();
      if (v.is_number() || v.is_boolean()) continue;
      if (!v.is_string()) {
        Problem(pp, "expected a string, number or boolean, got " + Describe(v));
        continue;
      }
      const std::string& s = v.get_ref<const std::string&>();
      if (!ValidUtf8(s)) {
        Problem(pp, "not valid UTF-8");
        continue;
      }
      // A param becomes an environment variable: a NUL would cut it short at
      // hook time, and other control characters reach hook logs and terminals
      // raw. Newlines and tabs stay: multi-line values (a certificate) are real.
      if (auto bad = FirstControlCharacter(s)) {
        Problem(pp, "holds control character " + *bad + "; only newlines and tabs are allowed in a param");
        continue;
      }
      if (s == kHiddenParam) {
        Problem(pp, "is the placeholder `starling get` shows instead of a param's value; `starling get "
                    "--show-params` shows the values, to edit and apply");
        continue;
      }
      std::vector<Reference> refs;
      std::vector<std::string> errors;
      ScanReferences(s, &refs, &errors);
      for (const auto& e : errors) Problem(pp, e);
      for (const auto& r : refs) {
        if (!services.count(r.service)) {
          Problem(pp, r.text + " refers to unknown service " + Quoted(r.service));
          continue;
        }
        const auto& declared = outputs.at(r.service);
        if (declared.count(r.output)) continue;
        std::string list =
            declared.empty()
                ? "it declares no outputs"
                : "it declares: " + JoinComma(std::vector<std::string>(declared.begin(), declared.end()));
        Problem(pp, r.text + " refers to output " + Quoted(r.output) + " that service " + Quoted(r.service) +
                        " does not declare (" + list + ")");
      }
    }
  }

  void CheckCycles(const std::set<std::string>& names) {
    constexpr size_t kMaxCycles = 20;
    std::vector<std::string> index(names.begin(), names.end());
    auto id = [&](const std::string& s) {
      return static_cast<int>(std::lower_bound(index.begin(), index.end(), s) - index.begin());
    };
    std::vector<std::vector<int>> adj(index.size());
    for (const auto& [from, tos] : DependencyMap(doc_, &names)) {
      for (const auto& to : tos) adj[id(from)].push_back(id(to));
    }
    bool truncated = false;
    auto cycles = ElementaryCycles(adj, kMaxCycles, &truncated);
    std::sort(cycles.begin(), cycles.end());
    for (const auto& c : cycles) {
      std::string text;
      for (int v : c) text += (text.empty() ? "" : " -> ") + Printable(index[v]);
      Problem("services", "dependency cycle: " + text);
    }
    if (truncated)
      Problem("services", "more dependency cycles not listed (showing " + std::to_string(kMaxCycles) + ")");
  }

  void CheckNodes() {
    const Json* nodes = Section("nodes");
    if (!nodes || !ExpectObject("nodes", *nodes)) return;
    for (auto it = nodes->begin(); it != nodes->end(); ++it) {
      const std::string path = "nodes." + Printable(it.key());
      const Json& node = it.value();
      if (!IsNodeOrHookName(it.key())) Problem(path, "invalid node name " + std::string(kNodeNameRule));
      if (!ExpectObject(path, node)) continue;
      CheckFields(path, node, {"lifecycle", "roles"});
      if (auto l = node.find("lifecycle"); l == node.end()) {
        Problem(path, "missing required field 'lifecycle'");
      } else if (!l->is_string() || (*l != "commissioned" && *l != "decommissioned")) {
        Problem(path + ".lifecycle",
                "unknown lifecycle " + ShowValue(*l) + " (expected commissioned or decommissioned)");
      }
      if (auto r = node.find("roles"); r != node.end()) CheckRoleList(path + ".roles", *r);
    }
  }

  void CheckPolicy() {
    const Json* policy = Section("policy");
    if (!policy || !ExpectObject("policy", *policy)) return;
    const Json& p = *policy;
    CheckFields("policy", p,
                {"batch", "role_order", "health_gate", "min_healthy", "node_deadline", "progress_deadline",
                 "failure_threshold", "auto_revert"});
    if (auto b = p.find("batch"); b != p.end()) CheckBatch(*b);
    if (auto r = p.find("role_order"); r != p.end()) CheckRoleList("policy.role_order", *r);
    if (auto h = p.find("health_gate"); h != p.end()) ExpectBool("policy.health_gate", *h);
    if (auto d = p.find("min_healthy"); d != p.end()) CheckDuration("policy.min_healthy", *d, true);
    if (auto d = p.find("node_deadline"); d != p.end()) CheckDuration("policy.node_deadline", *d, false);
    if (auto d = p.find("progress_deadline"); d != p.end())
      CheckDuration("policy.progress_deadline", *d, false);
    if (auto f = p.find("failure_threshold"); f != p.end()) {
      bool ok = f->is_number_unsigned() || (f->is_number_integer() && f->get<int64_t>() >= 0);
      if (!ok) Problem("policy.failure_threshold", "expected a whole number >= 0, got " + ShowValue(*f));
    }
    if (auto a = p.find("auto_revert"); a != p.end()) ExpectBool("policy.auto_revert", *a);
  }

  void CheckBatch(const Json& b) {
    constexpr std::string_view kRule =
        "(expected a count >= 1, a percentage from '1%' to '100%', or a non-empty list of those)";
    auto step_ok = [](const Json& s) {
      if (s.is_number_unsigned()) return s.get<uint64_t>() >= 1;
      if (s.is_number_integer()) return s.get<int64_t>() >= 1;
      return s.is_string() && IsPercent(s.get_ref<const std::string&>());
    };
    if (b.is_array()) {
      if (b.empty()) Problem("policy.batch", "empty ramp list " + std::string(kRule));
      for (const Json& s : b) {
        if (!step_ok(s))
          Problem("policy.batch", ShowValue(s) + " is not a valid batch size " + std::string(kRule));
      }
    } else if (!step_ok(b)) {
      Problem("policy.batch", ShowValue(b) + " is not a valid batch size " + std::string(kRule));
    }
  }

  void CheckSwitches() {
    const Json* switches = Section("switches");
    if (!switches || !ExpectObject("switches", *switches)) return;
    CheckFields("switches", *switches, {"auto_commission", "auto_upgrade"});
    for (std::string_view name : {"auto_commission", "auto_upgrade"}) {
      if (auto s = switches->find(std::string(name)); s != switches->end()) {
        ExpectBool("switches." + std::string(name), *s);
      }
    }
  }

  void CheckVoters() {
    const Json* voters = Section("voters");
    if (!voters) return;
    std::vector<std::string> list = StringList("voters", *voters);
    if (voters->is_array() && (voters->empty() || voters->size() > 5)) {
      Problem("voters", "expected 1 to 5 node names, got " + std::to_string(voters->size()));
    }
    const Json* nodes = Section("nodes");
    for (const auto& v : list) {
      if (!IsNodeOrHookName(v)) {
        Problem("voters", Quoted(v) + " is not a valid node name " + std::string(kNodeNameRule));
        continue;
      }
      // A decommissioned node is on its way out; making it a voter contradicts the same document.
      if (nodes && nodes->is_object()) {
        auto n = nodes->find(v);
        if (n != nodes->end() && n->is_object() && n->value("lifecycle", Json()) == "decommissioned") {
          Problem("voters", "node " + Quoted(v) + " is decommissioned");
        }
      }
    }
    CheckNoDuplicates("voters", list, "node");
  }

  const Json& doc_;
  std::set<std::string> roles_;
  std::vector<std::string> problems_;
};

}  // namespace

Status ValidateDocument(const Json& doc) {
  if (!doc.is_object()) return Status::InvalidArgument("the document must be a mapping of sections");
  try {
    std::vector<std::string> problems = Validator(doc).Run();
    if (problems.empty()) return Status::Ok();
    std::string message;
    for (const auto& p : problems) message += (message.empty() ? "" : "\n") + p;
    return Status::InvalidArgument(std::move(message));
  } catch (const std::exception& e) {
    return Status::Internal(std::string("validating the document: ") + e.what());
  }
}

}  // namespace starling::store
