#include "starling/store/document.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>

namespace starling::store {
namespace {

const std::string kDigest = "sha256:" + std::string(64, 'a');

const std::string kExampleYaml = R"(# the example from the design, with a second package and service
roles: [web, db]
packages:
  web:
    version: "1.2.3"
    artifact: ")" + kDigest + R"("
    roles: [web]
    hooks: {install: web-install, verify: web-verify, remove: web-remove}
    restart: true
  pg:
    version: 15.4-1
    roles: [db]
services:
  db:
    package: pg
    roles: [db]
    hooks: {start: db-start, stop: db-stop, health: db-health}
    outputs: [url]
  api:
    package: web
    roles: [web]
    hooks: {start: api-start, stop: api-stop, health: api-health}
    params:
      DB_URL: "postgres://${db.url}/app"
      THREADS: 4
      VERBOSE: false
      RATIO: 0.5
    outputs: [url]
    after: [db]
    start_deadline: "2m"
nodes:
  n1: {lifecycle: commissioned, roles: [web]}
  n2: {lifecycle: commissioned, roles: [db]}
  n3: {lifecycle: decommissioned}
policy:
  batch: [1, 2, "25%"]
  role_order: [db, web]
  health_gate: true
  min_healthy: "0s"
  node_deadline: "5m"
  progress_deadline: "1h30m"
  failure_threshold: 1
  auto_revert: true
switches: {auto_commission: false, auto_upgrade: false}
freeze: false
voters: [n1, n2]
)";

const std::string kExampleJson = R"({
  "roles": ["web", "db"],
  "packages": {
    "web": {"version": "1.2.3", "artifact": ")" +
                                 kDigest + R"(", "roles": ["web"],
            "hooks": {"install": "web-install", "verify": "web-verify", "remove": "web-remove"},
            "restart": true},
    "pg": {"version": "15.4-1", "roles": ["db"]}
  },
  "services": {
    "db": {"package": "pg", "roles": ["db"],
           "hooks": {"start": "db-start", "stop": "db-stop", "health": "db-health"},
           "outputs": ["url"]},
    "api": {"package": "web", "roles": ["web"],
            "hooks": {"start": "api-start", "stop": "api-stop", "health": "api-health"},
            "params": {"DB_URL": "postgres://${db.url}/app", "THREADS": 4, "VERBOSE": false, "RATIO": 0.5},
            "outputs": ["url"], "after": ["db"], "start_deadline": "2m"}
  },
  "nodes": {
    "n1": {"lifecycle": "commissioned", "roles": ["web"]},
    "n2": {"lifecycle": "commissioned", "roles": ["db"]},
    "n3": {"lifecycle": "decommissioned"}
  },
  "policy": {"batch": [1, 2, "25%"], "role_order": ["db", "web"], "health_gate": true, "min_healthy": "0s",
             "node_deadline": "5m", "progress_deadline": "1h30m", "failure_threshold": 1,
             "auto_revert": true},
  "switches": {"auto_commission": false, "auto_upgrade": false},
  "freeze": false,
  "voters": ["n1", "n2"]
})";

Json Example() {
  auto r = ParseDocument(kExampleYaml);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? r.value() : Json();
}

Json MustParse(std::string_view text) {
  auto r = ParseDocument(text);
  EXPECT_TRUE(r.ok()) << r.status().message() << "\nin:\n" << text;
  return r.ok() ? r.value() : Json();
}

std::string ParseError(std::string_view text) {
  auto r = ParseDocument(text);
  EXPECT_FALSE(r.ok()) << "accepted:\n" << text;
  if (r.ok()) return "";
  EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
  return r.status().message();
}

// The validation problems, one per element; empty when the document is valid.
std::vector<std::string> Problems(const Json& doc) {
  Status s = ValidateDocument(doc);
  std::vector<std::string> lines;
  if (s.ok()) return lines;
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  std::istringstream in(s.message());
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

bool Has(const std::vector<std::string>& lines, const std::string& line) {
  return std::find(lines.begin(), lines.end(), line) != lines.end();
}

std::string Dump(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += "\n  " + l;
  return out;
}

#define EXPECT_PROBLEM(doc, line)                                                             \
  do {                                                                                        \
    auto problems_ = Problems(doc);                                                           \
    EXPECT_TRUE(Has(problems_, line)) << "wanted: " << (line) << "\ngot:" << Dump(problems_); \
  } while (0)

// ----------------------------------------------------------------------------------------------------
// ParseDocument

TEST(ParseDocument, YamlAndJsonGiveTheSameJson) {
  Json from_yaml = MustParse(kExampleYaml);
  Json from_json = MustParse(kExampleJson);
  EXPECT_EQ(from_yaml, from_json);
  EXPECT_EQ(CanonicalJson(from_yaml), CanonicalJson(from_json));
  EXPECT_TRUE(from_yaml["policy"]["batch"][0].is_number_integer());
  EXPECT_TRUE(from_yaml["services"]["api"]["params"]["RATIO"].is_number_float());
  // JSON written on one line, in flow style, is read the same way too.
  EXPECT_EQ(MustParse(from_json.dump()), from_json);
}

TEST(ParseDocument, PlainScalarsAreTypedQuotedOnesStayStrings) {
  Json d = MustParse(R"(
a: true
b: "true"
c: 1
d: "1"
e: 1.5
f: null
g: ~
h: 'null'
i: 0x10
j: 0o17
k: 1e3
l: yes
m: ''
n: !!str 5
o: -7
p: 007
q: 1.0
r: False
s: 15.4-1
t: !!float 2
u:
v: .5
w: 18446744073709551615
)");
  EXPECT_EQ(d["a"], Json(true));
  EXPECT_EQ(d["b"], Json("true"));
  EXPECT_TRUE(d["c"].is_number_integer());
  EXPECT_EQ(d["c"], Json(1));
  EXPECT_EQ(d["d"], Json("1"));
  EXPECT_TRUE(d["e"].is_number_float());
  EXPECT_DOUBLE_EQ(d["e"].get<double>(), 1.5);
  EXPECT_TRUE(d["f"].is_null());
  EXPECT_TRUE(d["g"].is_null());
  EXPECT_EQ(d["h"], Json("null"));
  EXPECT_EQ(d["i"], Json(16));
  EXPECT_EQ(d["j"], Json(15));
  EXPECT_TRUE(d["k"].is_number_float());
  EXPECT_DOUBLE_EQ(d["k"].get<double>(), 1000.0);
  EXPECT_EQ(d["l"], Json("yes"));  // YAML 1.2: only true/false are booleans
  EXPECT_EQ(d["m"], Json(""));
  EXPECT_EQ(d["n"], Json("5"));
  EXPECT_EQ(d["o"], Json(-7));
  EXPECT_EQ(d["p"], Json(7));
  EXPECT_TRUE(d["q"].is_number_float());
  EXPECT_EQ(d["r"], Json(false));
  EXPECT_EQ(d["s"], Json("15.4-1"));
  EXPECT_TRUE(d["t"].is_number_float());
  EXPECT_TRUE(d["u"].is_null());
  EXPECT_DOUBLE_EQ(d["v"].get<double>(), 0.5);
  EXPECT_TRUE(d["w"].is_number_unsigned());
  EXPECT_EQ(d["w"].get<uint64_t>(), 18446744073709551615u);
}

TEST(ParseDocument, SyntaxErrorNamesLineAndColumn) {
  std::string msg = ParseError("roles: [web]\nfreeze: a: b\n");
  EXPECT_EQ(msg.rfind("line 2, column 10: ", 0), 0u) << msg;

  msg = ParseError("roles: [web\npackages: {}\n");
  EXPECT_EQ(msg.rfind("line ", 0), 0u) << msg;
  EXPECT_NE(msg.find(", column "), std::string::npos) << msg;

  // Broken JSON: still a positioned message.
  msg = ParseError("{\n  \"roles\": [\"web\",,]\n}");
  EXPECT_EQ(msg.rfind("line 2, column ", 0), 0u) << msg;
}

TEST(ParseDocument, DuplicateKeysAreRefusedNamingTheKey) {
  EXPECT_EQ(ParseError("roles: [a]\nfreeze: true\nroles: [b]\n"), "line 3, column 1: duplicate key 'roles'");
  EXPECT_EQ(ParseError("packages:\n  web: {version: '1', version: '2'}\n"),
            "line 2, column 23: duplicate key 'version'");
  EXPECT_EQ(ParseError("{\"freeze\": true,\n \"freeze\": false}"),
            "line 2, column 2: duplicate key 'freeze'");
  // `1` and `"1"` are the same JSON key.
  EXPECT_NE(ParseError("a:\n  1: x\n  \"1\": y\n").find("duplicate key '1'"), std::string::npos);
}

TEST(ParseDocument, TopLevelMustBeAMapping) {
  EXPECT_EQ(ParseError("- roles\n- packages\n"), "the document must be a mapping of sections");
  EXPECT_EQ(ParseError("42"), "the document must be a mapping of sections");
  EXPECT_EQ(ParseError(""), "the document must be a mapping of sections");
  EXPECT_EQ(ParseError("# only a comment\n"), "the document must be a mapping of sections");
  EXPECT_EQ(MustParse("{}"), Json::object());
}

TEST(ParseDocument, RefusesWhatJsonCannotHoldOrWeCannotTrust) {
  EXPECT_NE(ParseError("freeze: true\n---\nfreeze: false\n").find("expected one document"),
            std::string::npos);
  EXPECT_NE(ParseError("x: .inf\n").find("infinite and NaN"), std::string::npos);
  EXPECT_NE(ParseError("x: 1e999\n").find("out of range"), std::string::npos);
  EXPECT_NE(ParseError("{\"x\": 1e999}").find("out of range"), std::string::npos);
  EXPECT_NE(ParseError("x: 99999999999999999999999\n").find("out of range"), std::string::npos);
  EXPECT_NE(ParseError("x: !custom 5\n").find("unsupported tag"), std::string::npos);
  EXPECT_NE(ParseError("x: !!int abc\n").find("is not a valid !!int"), std::string::npos);
  EXPECT_NE(ParseError("x: \"\xff\"\n").find("invalid UTF-8"), std::string::npos);
  EXPECT_NE(ParseError("? [a]\n: 1\n").find("mapping keys must be scalars"), std::string::npos);
}

TEST(ParseDocument, AliasesExpandButOnlyWithinALimit) {
  Json d = MustParse("base: &b {version: '1'}\ncopy: *b\n");
  EXPECT_EQ(d["copy"], d["base"]);
  // 10 levels of 10 aliases each would be 10^10 values.
  std::string bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i <= 9; ++i) {
    std::string prev = "*a" + std::to_string(i - 1);
    bomb += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int k = 0; k < 10; ++k) bomb += (k ? ", " : "") + prev;
    bomb += "]\n";
  }
  EXPECT_NE(ParseError(bomb).find("too large"), std::string::npos);
}

// One 512 KiB string and 2,000 aliases of it: 532 KB of YAML that would
// copy 1 GiB. Aliases are charged their bytes before the copy, so the parse
// stops after a few of them, at the first alias past the budget.
TEST(ParseDocument, AliasesAreChargedTheirBytes) {
  std::string bomb = "a: &s \"" + std::string(512 << 10, 'x') + "\"\nb: [";
  for (int i = 0; i < 2000; ++i) bomb += (i ? ", *s" : "*s");
  bomb += "]\n";
  const std::string error = ParseError(bomb);
  EXPECT_NE(error.find("the document is too large (more than 8 MiB of keys and values after expanding aliases)"),
            std::string::npos)
      << error;
  EXPECT_EQ(error.rfind("line 2, column ", 0), 0u) << "names where: " << error;
  // Under the budget, the same aliases expand.
  std::string fine = "a: &s \"" + std::string(512 << 10, 'x') + "\"\nb: [*s, *s, *s, *s, *s, *s, *s, *s, *s, *s]\n";
  Json d = MustParse(fine);
  EXPECT_EQ(d["b"].size(), 10u);
}

TEST(ParseDocument, NestingIsBounded) {
  std::string deep_yaml = "a: " + std::string(500, '[') + std::string(500, ']') + "\n";
  EXPECT_NE(ParseError(deep_yaml).find("nesting is deeper than"), std::string::npos);
  std::string deep_json = "{\"a\": " + std::string(100000, '[') + std::string(100000, ']') + "}";
  EXPECT_NE(ParseError(deep_json).find("nesting is deeper than"), std::string::npos);
  EXPECT_TRUE(ParseDocument("a: " + std::string(50, '[') + std::string(50, ']')).ok());
}

TEST(ParseDocument, LargeDocumentsParseAndValidate) {
  // Thousands of nodes is a real cluster; nothing here may be quadratic in the document size.
  std::string yaml = "roles: [web]\nnodes:\n";
  Json expected = {{"roles", {"web"}}, {"nodes", Json::object()}};
  for (int i = 0; i < 20000; ++i) {
    std::string name = "node-" + std::to_string(i);
    yaml += "  " + name + ": {lifecycle: commissioned, roles: [web]}\n";
    expected["nodes"][name] = {{"lifecycle", "commissioned"}, {"roles", {"web"}}};
  }
  EXPECT_EQ(MustParse(yaml), expected);
  Json from_json = MustParse(expected.dump());
  EXPECT_EQ(from_json, expected);
  EXPECT_TRUE(ValidateDocument(from_json).ok());
  EXPECT_EQ(SplitObjects(from_json).size(), 20001u);
}

TEST(ParseDocument, JsonEscapesIncludingSurrogatePairs) {
  Json d = MustParse(R"({"s": "caf\u00e9 \ud83d\ude00 a\/b \"q\""})");
  EXPECT_EQ(d["s"], Json("caf\xc3\xa9 \xf0\x9f\x98\x80 a/b \"q\""));
  // YAML flow style that is not JSON still parses.
  EXPECT_EQ(MustParse("{roles: [web], freeze: true}"), Json::parse(R"({"roles":["web"],"freeze":true})"));
}

// ----------------------------------------------------------------------------------------------------
// ValidateDocument

TEST(ValidateDocument, FullExampleIsValid) {
  Status s = ValidateDocument(Example());
  EXPECT_TRUE(s.ok()) << s.message();
  EXPECT_TRUE(ValidateDocument(Json::object()).ok());
}

TEST(ValidateDocument, NonMappingDocument) {
  Status s = ValidateDocument(Json::array());
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(s.message(), "the document must be a mapping of sections");
}

TEST(ValidateDocument, DependencyCyclesAreReportedOnceFromTheSmallestService) {
  Json d = MustParse(R"(
services:
  web:
    params: {U: "${app.url}"}
  app:
    outputs: [url]
    after: [cache]
  cache:
    params: {X: "x${web.port}y"}
    outputs: [port]
  web2:
    after: [web2]
  b:
    after: [a]
  a:
    after: [b, c]
  c:
    after: [a]
)");
  d["services"]["web"]["outputs"] = Json::array({"port"});
  auto problems = Problems(d);
  EXPECT_EQ(problems, (std::vector<std::string>{
                          "services: dependency cycle: a -> b -> a",
                          "services: dependency cycle: a -> c -> a",
                          "services: dependency cycle: app -> cache -> web -> app",
                          "services: dependency cycle: web2 -> web2",
                      }))
      << Dump(problems);
  // The same edges, as the graph sees them.
  EXPECT_EQ(ServiceEdges(d), (std::vector<std::pair<std::string, std::string>>{{"a", "b"},
                                                                               {"a", "c"},
                                                                               {"app", "cache"},
                                                                               {"b", "a"},
                                                                               {"c", "a"},
                                                                               {"cache", "web"},
                                                                               {"web", "app"},
                                                                               {"web2", "web2"}}));
}

TEST(ValidateDocument, ReferencesMustNameAServiceAndADeclaredOutput) {
  Json d = Example();
  d["services"].erase("db");
  d["services"]["api"].erase("after");
  EXPECT_PROBLEM(d, "services.api.params.DB_URL: ${db.url} refers to unknown service 'db'");

  d = Example();
  d["services"]["api"]["params"]["DB_URL"] = "postgres://${db.port}/app";
  EXPECT_PROBLEM(
      d,
      "services.api.params.DB_URL: ${db.port} refers to output 'port' that service 'db' does not declare "
      "(it declares: url)");
  d["services"]["db"].erase("outputs");
  EXPECT_PROBLEM(
      d,
      "services.api.params.DB_URL: ${db.port} refers to output 'port' that service 'db' does not declare "
      "(it declares no outputs)");
}

TEST(ValidateDocument, MalformedReferencesAreRefusedNamingTheParam) {
  Json d = Example();
  auto& params = d["services"]["api"]["params"];
  params["A"] = "x ${db.url";
  params["B"] = "${}";
  params["C"] = "${db-url}";
  params["D"] = "${DB.url}";
  params["E"] = "$ {db.url} and $db and $$";  // not references at all
  auto p = Problems(d);
  EXPECT_TRUE(Has(p, "services.api.params.A: unterminated reference '${db.url' (expected ${service.output})"))
      << Dump(p);
  EXPECT_TRUE(Has(p, "services.api.params.B: empty reference '${}' (expected ${service.output})")) << Dump(p);
  EXPECT_TRUE(Has(p, "services.api.params.C: malformed reference '${db-url}' (expected ${service.output})"))
      << Dump(p);
  EXPECT_TRUE(Has(p, "services.api.params.D: malformed reference '${DB.url}' (expected ${service.output})"))
      << Dump(p);
  EXPECT_EQ(p.size(), 4u) << Dump(p);
}

TEST(FillSettings, SubstitutesApplyTimeValuesInParamsOnly) {
  Json d = Example();
  d["services"]["api"]["params"]["PORT"] = "${port}";
  d["services"]["api"]["params"]["URL"] = "http://${host}:${port}/x";
  // A service reference and a section other than params are left alone.
  d["services"]["api"]["params"]["DB"] = "${db.url}";
  // Without values, validation names each missing one and the flag to give it.
  auto p = Problems(d);
  EXPECT_TRUE(Has(p, "services.api.params.PORT: ${port} has no value: give one when applying, with --set port=VALUE"))
      << Dump(p);
  EXPECT_TRUE(Has(p, "services.api.params.URL: ${host} has no value: give one when applying, with --set host=VALUE"))
      << Dump(p);
  ASSERT_TRUE(FillSettings(d, {{"port", "8080"}, {"host", "h.example"}}).ok());
  EXPECT_EQ(d["services"]["api"]["params"]["PORT"], "8080");
  EXPECT_EQ(d["services"]["api"]["params"]["URL"], "http://h.example:8080/x");
  EXPECT_EQ(d["services"]["api"]["params"]["DB"], "${db.url}");
  EXPECT_TRUE(ValidateDocument(d).ok()) << ValidateDocument(d).message();
}

TEST(FillSettings, RefusesBadNamesValuesAndUnusedSettings) {
  Json d = Example();
  d["services"]["api"]["params"]["PORT"] = "${port}";
  auto refused = [&](std::map<std::string, std::string> values, const std::string& want) {
    Json copy = d;
    Status s = FillSettings(copy, values);
    EXPECT_FALSE(s.ok());
    EXPECT_EQ(s.message(), want);
    EXPECT_EQ(copy, d) << "a refused fill changed nothing that matters";
  };
  refused({{"port", "1"}, {"other", "2"}}, "--set other: no service parameter of the document uses ${other}");
  refused({{"9port", "1"}}, "--set 9port: not a valid setting name (expected letters, digits and '_', not starting "
                            "with a digit)");
  refused({{"port", "${db.url}"}}, "--set port: a value may not contain '${'");
  refused({{"port", std::string(5000, 'x')}}, "--set port: the value is longer than 4096 bytes");
  refused({{"port", "\xff"}}, "--set port: the value is not valid UTF-8");
  // No settings and no ${NAME}: nothing to do.
  Json plain = Example();
  EXPECT_TRUE(FillSettings(plain, {}).ok());
  EXPECT_EQ(plain, Example());
}

TEST(ValidateDocument, RolesMustBeDeclared) {
  Json d = Example();
  d["packages"]["web"]["roles"] = Json::array({"web", "frontend"});
  EXPECT_PROBLEM(d, "packages.web.roles: unknown role 'frontend' (declared roles: db, web)");
  d["nodes"]["n1"]["roles"] = Json::array({"web", "web"});
  EXPECT_PROBLEM(d, "nodes.n1.roles: duplicate role 'web'");
  d.erase("roles");
  auto p = Problems(d);
  EXPECT_TRUE(Has(p, "packages.web.roles: unknown role 'frontend' (no roles are declared)")) << Dump(p);
  EXPECT_TRUE(Has(p, "policy.role_order: unknown role 'db' (no roles are declared)")) << Dump(p);
  EXPECT_TRUE(Has(p, "services.api.roles: unknown role 'web' (no roles are declared)")) << Dump(p);
}

TEST(ValidateDocument, Hooks) {
  Json d = Example();
  d["packages"]["web"]["hooks"]["instal"] = "x";
  d["services"]["api"]["hooks"]["start"] = "rm -rf /";
  d["services"]["api"]["hooks"]["restart"] = "x";
  d["services"]["db"]["hooks"]["stop"] = "../evil";
  d["services"]["db"]["hooks"]["health"] = 3;
  auto p = Problems(d);
  EXPECT_TRUE(Has(p, "packages.web.hooks: unknown hook 'instal' (expected install, verify or remove)"))
      << Dump(p);
  EXPECT_TRUE(
      Has(p,
          "services.api.hooks.start: 'rm -rf /' is not a hook name (a file name in the hooks directory, "
          "not a command line)"))
      << Dump(p);
  EXPECT_TRUE(Has(p, "services.api.hooks: unknown hook 'restart' (expected start, stop or health)"))
      << Dump(p);
  EXPECT_TRUE(
      Has(p,
          "services.db.hooks.stop: '../evil' is not a hook name (a file name in the hooks directory, not a "
          "command line)"))
      << Dump(p);
  EXPECT_TRUE(Has(p, "services.db.hooks.health: expected a hook name, got 3")) << Dump(p);
  EXPECT_EQ(p.size(), 5u) << Dump(p);
}

TEST(ValidateDocument, Versions) {
  for (const char* good : {"1.2.3", "15.4-1", "1.0+build~1", "2", "v1", "1_2", "20240101"}) {
    Json d = Example();
    d["packages"]["web"]["version"] = good;
    EXPECT_TRUE(Problems(d).empty()) << good << Dump(Problems(d));
  }
  for (const char* bad : {"1..2", "1.2.", "1-", "-1", "", "v", "1 2", ".1", "1/2"}) {
    Json d = Example();
    d["packages"]["web"]["version"] = bad;
    EXPECT_EQ(Problems(d),
              std::vector<std::string>{"packages.web.version: malformed version '" + std::string(bad) + "'"});
  }
  Json d = Example();
  d["packages"]["web"]["version"] = std::string(65, '1');
  EXPECT_EQ(Problems(d).size(), 1u);
  d["packages"]["web"]["version"] = 1.2;
  EXPECT_PROBLEM(d, "packages.web.version: expected a string, got 1.2 (quote it, e.g. \"1.2\")");
  d["packages"]["web"].erase("version");
  EXPECT_PROBLEM(d, "packages.web: missing required field 'version'");
}

TEST(ValidateDocument, Digests) {
  Json d = Example();
  d["packages"]["web"]["artifact"] = "sha256:xyz";
  EXPECT_EQ(Problems(d),
            std::vector<std::string>{
                "packages.web.artifact: malformed digest 'sha256:xyz' (expected sha256: and 64 lowercase "
                "hex digits)"});
  d["packages"]["web"]["artifact"] = "sha256:" + std::string(64, 'A');
  EXPECT_EQ(Problems(d).size(), 1u);
  d["packages"]["web"]["artifact"] = "sha512:" + std::string(64, 'a');
  EXPECT_EQ(Problems(d).size(), 1u);
  d["packages"]["web"]["artifact"] = "sha256:" + std::string(63, 'a');
  EXPECT_EQ(Problems(d).size(), 1u);
  d["packages"]["web"]["artifact"] = "sha256:" + std::string(32, '0') + std::string(32, 'f');
  EXPECT_TRUE(Problems(d).empty());
}

TEST(ValidateDocument, UnknownSectionsAndFields) {
  Json d = Example();
  d["frobnicate"] = 1;
  d["packages"]["web"]["verison"] = "1";
  d["services"]["api"]["param"] = Json::object();
  d["policy"]["batchsize"] = 1;
  d["switches"]["auto_reboot"] = true;
  d["nodes"]["n1"]["role"] = "web";
  auto p = Problems(d);
  EXPECT_EQ(
      p,
      (std::vector<std::string>{
          "frobnicate: unknown section (expected one of roles, packages, services, nodes, policy, switches, "
          "freeze, voters, agent)",
          "packages.web: unknown field 'verison'",
          "services.api: unknown field 'param'",
          "nodes.n1: unknown field 'role'",
          "policy: unknown field 'batchsize'",
          "switches: unknown field 'auto_reboot'",
      }))
      << Dump(p);
}

TEST(ValidateDocument, PackagesServicesAndNodes) {
  Json d = Example();
  d["services"]["api"]["package"] = "web2";
  d["nodes"]["n1"]["lifecycle"] = "up";
  d["nodes"]["n2"].erase("lifecycle");
  d["nodes"]["bad name"] = {{"lifecycle", "commissioned"}};
  d["services"]["api"]["outputs"] = Json::array({"url", "url", "9x"});
  d["services"]["api"]["after"] = Json::array({"db", "nope"});
  d["services"]["api"]["start_deadline"] = "0s";
  d["services"]["api"]["params"]["bad-key"] = 1;
  d["services"]["api"]["params"]["LIST"] = Json::array();
  d["packages"]["Web"] = {{"version", "1"}};
  d["packages"]["pg"]["restart"] = "yes";
  auto p = Problems(d);
  for (const char* want : {
           "packages.Web: invalid package name (expected lowercase letters, digits, '.', '_' or '-', "
           "starting with a "
           "letter or digit, at most 63 characters)",
           "packages.pg.restart: expected true or false, got 'yes'",
           "services.api.package: unknown package 'web2'",
           "services.api.params: 'bad-key' is not a valid parameter name (expected letters, digits and '_', "
           "not "
           "starting with a digit)",
           "services.api.params.LIST: expected a string, number or boolean, got a list",
           "services.api.outputs: '9x' is not a valid output name (expected letters, digits and '_', not "
           "starting "
           "with a digit)",
           "services.api.outputs: duplicate output 'url'",
           "services.api.after: unknown service 'nope'",
           "services.api.start_deadline: must be longer than 0s",
           "nodes.bad name: invalid node name (expected letters, digits, '.', '_' or '-', starting with a "
           "letter or "
           "digit, at most 128 characters)",
           "nodes.n1.lifecycle: unknown lifecycle 'up' (expected commissioned or decommissioned)",
           "nodes.n2: missing required field 'lifecycle'",
       }) {
    EXPECT_TRUE(Has(p, want)) << "wanted: " << want << "\ngot:" << Dump(p);
  }
  EXPECT_EQ(p.size(), 12u) << Dump(p);
}

TEST(ValidateDocument, Policy) {
  for (Json good :
       {Json(1), Json("1%"), Json("100%"), Json::array({1, "50%", "100%"}), Json(18446744073709551615u)}) {
    Json d = Example();
    d["policy"]["batch"] = good;
    EXPECT_TRUE(Problems(d).empty()) << good.dump() << Dump(Problems(d));
  }
  const std::string rule =
      " is not a valid batch size (expected a count >= 1, a percentage from '1%' to '100%', or a non-empty "
      "list of "
      "those)";
  for (Json bad :
       {Json(0), Json(-1), Json(1.5), Json("0%"), Json("101%"), Json("05%"), Json("5"), Json(true)}) {
    Json d = Example();
    d["policy"]["batch"] = bad;
    std::string shown = bad.is_string() ? "'" + bad.get<std::string>() + "'" : bad.dump();
    EXPECT_EQ(Problems(d), std::vector<std::string>{"policy.batch: " + shown + rule});
  }
  Json d = Example();
  d["policy"]["batch"] = Json::array();
  EXPECT_EQ(Problems(d),
            std::vector<std::string>{
                "policy.batch: empty ramp list (expected a count >= 1, a percentage from '1%' to '100%', "
                "or a non-empty list of those)"});
  d["policy"]["batch"] = Json::array({1, 0});
  EXPECT_EQ(Problems(d), std::vector<std::string>{"policy.batch: 0" + rule});

  d = Example();
  d["policy"]["min_healthy"] = "10";
  d["policy"]["node_deadline"] = "0s";
  d["policy"]["progress_deadline"] = 60;
  d["policy"]["failure_threshold"] = -1;
  d["policy"]["health_gate"] = "true";
  d["policy"]["role_order"] = Json::array({"db", "db"});
  EXPECT_EQ(Problems(d),
            (std::vector<std::string>{
                "policy.role_order: duplicate role 'db'",
                "policy.health_gate: expected true or false, got 'true'",
                "policy.min_healthy: malformed duration '10' (expected a number and a unit, largest first: "
                "1d, 12h, 30m, 10s, 250ms, 500us; e.g. 1h30m)",
                "policy.node_deadline: must be longer than 0s",
                "policy.progress_deadline: expected a duration such as \"10s\", got 60",
                "policy.failure_threshold: expected a whole number >= 0, got -1",
            }));
  d = Example();
  d["policy"]["failure_threshold"] = 0;
  EXPECT_TRUE(Problems(d).empty());
}

TEST(ValidateDocument, FreezeIsABoolOrAReason) {
  Json d = Example();
  d["freeze"] = Json::parse(R"({"reason": "release week", "by": "n1"})");
  EXPECT_TRUE(Problems(d).empty());
  d["freeze"] = Json::parse(R"({"reason": ""})");
  EXPECT_PROBLEM(d, "freeze.reason: a freeze needs a non-empty reason");
  d["freeze"] = Json::parse(R"({"reason": "x", "until": 3})");
  EXPECT_PROBLEM(d, "freeze: unknown field 'until'");
}

TEST(ValidateDocument, SectionTypesAndVoters) {
  Json d = Example();
  d["freeze"] = "no";
  d["switches"]["auto_upgrade"] = 1;
  d["voters"] = Json::array({"n1", "n3", "n1", "x y"});
  EXPECT_EQ(Problems(d),
            (std::vector<std::string>{
                "switches.auto_upgrade: expected true or false, got 1",
                "freeze: expected true, false or a mapping with a reason, got 'no'",
                "voters: node 'n3' is decommissioned",
                "voters: 'x y' is not a valid node name (expected letters, digits, '.', '_' or '-', "
                "starting with a letter or digit, at most 128 characters)",
                "voters: duplicate node 'n1'",
            }));
  d = Example();
  d["voters"] = Json::array({"a", "b", "c", "d", "e", "f"});
  EXPECT_EQ(Problems(d), std::vector<std::string>{"voters: expected 1 to 5 node names, got 6"});
  d["voters"] = Json::array();
  EXPECT_EQ(Problems(d), std::vector<std::string>{"voters: expected 1 to 5 node names, got 0"});

  // Every section with the wrong type: reported, never thrown.
  Json wrong = {{"roles", "web"},   {"packages", Json::array()}, {"services", 1}, {"nodes", nullptr},
                {"policy", "fast"}, {"switches", false},         {"freeze", 0},   {"voters", "n1"}};
  auto p = Problems(wrong);
  EXPECT_EQ(p, (std::vector<std::string>{
                   "roles: expected a list, got 'web'",
                   "packages: expected a mapping, got a list",
                   "services: expected a mapping, got a number",
                   "nodes: expected a mapping, got null",
                   "policy: expected a mapping, got a string",
                   "switches: expected a mapping, got a boolean",
                   "freeze: expected true, false or a mapping with a reason, got 0",
                   "voters: expected a list, got 'n1'",
               }))
      << Dump(p);
}

TEST(ValidateDocument, ReportsEveryProblemOnePerLineInAStableOrder) {
  Json d = Example();
  d["zzz"] = true;
  d["policy"]["batch"] = 0;
  d["packages"]["web"]["version"] = "1..2";
  d["nodes"]["n1"]["lifecycle"] = "up";
  d["packages"]["pg"]["version"] = "x";
  Status s = ValidateDocument(d);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "zzz: unknown section (expected one of roles, packages, services, nodes, policy, switches, "
            "freeze, voters, agent)\n"
            "packages.pg.version: malformed version 'x'\n"
            "packages.web.version: malformed version '1..2'\n"
            "nodes.n1.lifecycle: unknown lifecycle 'up' (expected commissioned or decommissioned)\n"
            "policy.batch: 0 is not a valid batch size (expected a count >= 1, a percentage from '1%' to "
            "'100%', or a "
            "non-empty list of those)");
  EXPECT_EQ(ValidateDocument(d).message(), s.message());
}

TEST(ValidateDocument, ControlCharactersCannotSplitAProblemIntoTwoLines) {
  Json d = Example();
  d["packages"]["web"]["version"] = "1\nnodes.n1: fake";
  auto p = Problems(d);
  EXPECT_EQ(p, std::vector<std::string>{"packages.web.version: malformed version '1\\x0anodes.n1: fake'"});
}

TEST(ValidateDocument, ParamsHoldNoControlCharactersButNewlinesAndTabs) {
  Json d = Json::parse(R"({"services": {"db": {"params": {}}}, "roles": ["db"]})");
  d["services"]["db"]["params"]["CERT"] = "-----BEGIN-----\n\tAAAA\n-----END-----\n";
  EXPECT_TRUE(ValidateDocument(d).ok()) << ValidateDocument(d).message();
  d["services"]["db"]["params"]["NAME"] = std::string("ab\0cd", 5);
  d["services"]["db"]["params"]["TERM"] = "red\x1b[31m";
  d["services"]["db"]["params"]["CR"] = "a\rb";
  EXPECT_EQ(Problems(d), (std::vector<std::string>{
                             "services.db.params.CR: holds control character \\x0d; only newlines and tabs are "
                             "allowed in a param",
                             "services.db.params.NAME: holds control character \\x00; only newlines and tabs are "
                             "allowed in a param",
                             "services.db.params.TERM: holds control character \\x1b; only newlines and tabs are "
                             "allowed in a param"}));
}

// ----------------------------------------------------------------------------------------------------
// ToYaml

void ExpectRoundTrip(const Json& doc) {
  std::string yaml = ToYaml(doc);
  auto back = ParseDocument(yaml);
  ASSERT_TRUE(back.ok()) << back.status().message() << "\nyaml:\n" << yaml;
  EXPECT_EQ(CanonicalJson(back.value()), CanonicalJson(doc)) << "yaml:\n" << yaml;
}

TEST(ToYaml, RoundTripsTheFullExample) {
  Json d = Example();
  ExpectRoundTrip(d);
  std::string yaml = ToYaml(d);
  EXPECT_NE(yaml.find("\n    hooks:\n      install: web-install\n"), std::string::npos)
      << yaml;  // block style
  EXPECT_NE(yaml.find("\npolicy:\n  auto_revert: true\n  batch:\n    - 1\n    - 2\n    - \"25%\"\n"),
            std::string::npos)
      << yaml;
}

TEST(ToYaml, ExactShape) {
  Json d = Json::parse(R"({"b": {"x": [1, {"k": "v", "l": [true]}, [2, 3], []]}, "a": "true", "c": {}})");
  EXPECT_EQ(ToYaml(d),
            "a: \"true\"\n"
            "b:\n"
            "  x:\n"
            "    - 1\n"
            "    - k: v\n"
            "      l:\n"
            "        - true\n"
            "    - - 2\n"
            "      - 3\n"
            "    - []\n"
            "c: {}\n");
  ExpectRoundTrip(d);
}

TEST(ToYaml, QuotesStringsThatWouldReadBackAsSomethingElse) {
  const std::vector<std::string> tricky = {"true",
                                           "",
                                           "1.0",
                                           "a: b",
                                           "- x",
                                           "#x",
                                           "null",
                                           "0x10",
                                           " lead",
                                           "trail ",
                                           "yes",
                                           "No",
                                           "~",
                                           "-",
                                           "?x",
                                           "@x",
                                           "`x",
                                           "x #y",
                                           "a:",
                                           "0o17",
                                           ".5",
                                           "+1",
                                           ".inf",
                                           "-.INF",
                                           ".nan",
                                           "1e3",
                                           "007",
                                           "1_000",
                                           "[x]",
                                           "{x}",
                                           "*a",
                                           "&a",
                                           "!x",
                                           "%x",
                                           "|",
                                           ">",
                                           "'q'",
                                           "\"q\"",
                                           "a\\b",
                                           "line1\nline2",
                                           "tab\there",
                                           "\x01\x7f",
                                           "caf\xc3\xa9",
                                           "\xf0\x9f\x98\x80",
                                           "\xc2\x85",
                                           "\xe2\x80\xa8",
                                           "\xef\xbb\xbf"
                                           "bom",
                                           "---",
                                           "...",
                                           "a,b",
                                           "%",
                                           "15.4-1",
                                           "1h30m",
                                           "sha256:abc",
                                           "http://x/y",
                                           "x: ",
                                           "a\r\nb",
                                           std::string("nul\0x", 5),
                                           "FALSE",
                                           "Null",
                                           "=",
                                           "<<"};
  Json d = Json::object();
  Json list = Json::array();
  for (size_t i = 0; i < tricky.size(); ++i) {
    d["v" + std::to_string(i)] = tricky[i];
    d[tricky[i]] = static_cast<int>(i);  // the same strings as keys
    list.push_back(tricky[i]);
  }
  d["list"] = list;
  ExpectRoundTrip(d);
  EXPECT_EQ(ToYaml(Json{{"s", "true"}}), "s: \"true\"\n");
  EXPECT_EQ(ToYaml(Json{{"s", "plain-text_1.2"}}), "s: plain-text_1.2\n");
}

TEST(ToYaml, NumbersKeepTheirType) {
  Json d = {{"i", 1},
            {"f", 1.0},
            {"big", 1e100},
            {"small", 1e-7},
            {"neg", -42},
            {"negzero", -0.0},
            {"u", 18446744073709551615u},
            {"min", std::numeric_limits<int64_t>::min()},
            {"pi", 3.141592653589793},
            {"n", nullptr},
            {"b", false}};
  ExpectRoundTrip(d);
  auto back = ParseDocument(ToYaml(d));
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(back.value()["f"].is_number_float());
  EXPECT_TRUE(back.value()["i"].is_number_integer());
  EXPECT_TRUE(back.value()["u"].is_number_unsigned());
}

TEST(ToYaml, VeryLongKeysUseTheExplicitForm) {
  Json d = {{std::string(3000, 'k'), {{"x", 1}}}, {std::string(1500, 'j'), "v"}};
  d["list"] = Json::array({Json{{std::string(2000, 'z'), 2}}});
  ExpectRoundTrip(d);
}

// ----------------------------------------------------------------------------------------------------
// CanonicalJson and Diff

TEST(CanonicalJson, IndependentOfConstructionOrder) {
  Json a = Json::object();
  a["z"] = 1;
  a["a"] = {{"y", "caf\xc3\xa9"}, {"b", Json::array({1, 2})}};
  Json b = Json::object();
  b["a"] = Json::object();
  b["a"]["b"] = Json::array({1, 2});
  b["a"]["y"] = "caf\xc3\xa9";
  b["z"] = 1;
  EXPECT_EQ(CanonicalJson(a), CanonicalJson(b));
  EXPECT_EQ(CanonicalJson(a), "{\"a\":{\"b\":[1,2],\"y\":\"caf\xc3\xa9\"},\"z\":1}");
  // YAML and JSON spellings of one document hash the same.
  EXPECT_EQ(CanonicalJson(MustParse(kExampleYaml)), CanonicalJson(MustParse(kExampleJson)));
  b["z"] = 2;
  EXPECT_NE(CanonicalJson(a), CanonicalJson(b));
}

TEST(Diff, AddedRemovedAndChangedLeaves) {
  Json from = Example();
  Json to = Example();
  to["packages"]["web"]["version"] = "1.2.4";           // changed scalar
  to["packages"]["web"].erase("artifact");              // removed
  to["services"]["api"]["params"]["NEW"] = "x";         // added leaf inside a recursed object
  to["policy"]["batch"] = Json::array({1, 2, "50%"});   // arrays compare whole
  to["nodes"]["n4"] = {{"lifecycle", "commissioned"}};  // added object, reported whole
  to.erase("voters");                                   // removed section
  to["services"]["api"]["params"]["THREADS"] = 4.0;     // 4 -> 4.0 is a change of value type
  auto changes = Diff(from, to);
  std::vector<std::pair<std::string, std::string>> got;
  for (const auto& c : changes) got.emplace_back(c.path, c.kind);
  EXPECT_EQ(got, (std::vector<std::pair<std::string, std::string>>{
                     {"nodes.n4", "added"},
                     {"packages.web.artifact", "removed"},
                     {"packages.web.version", "changed"},
                     {"policy.batch", "changed"},
                     {"services.api.params.NEW", "added"},
                     {"services.api.params.THREADS", "changed"},
                     {"voters", "removed"},
                 }));
  EXPECT_EQ(changes[0].after, to["nodes"]["n4"]);
  EXPECT_TRUE(changes[0].before.is_null());
  EXPECT_EQ(changes[1].before, Json(kDigest));
  EXPECT_TRUE(changes[1].after.is_null());
  EXPECT_EQ(changes[2].before, Json("1.2.3"));
  EXPECT_EQ(changes[2].after, Json("1.2.4"));
  EXPECT_TRUE(Diff(from, from).empty());
}

TEST(Diff, FromNothingEverySectionIsAdded) {
  auto changes = Diff(nullptr, Json{{"freeze", true}, {"roles", Json::array({"a"})}});
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(changes[0].path, "freeze");
  EXPECT_EQ(changes[0].kind, "added");
  EXPECT_EQ(changes[1].path, "roles");
  // Sorted by full path, not by segment: "a-b" sorts before "a.x".
  auto c = Diff(Json::object(), Json{{"a", {{"x", 1}}}, {"a-b", 1}});
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].path, "a");
  c = Diff(Json{{"a", {{"x", 1}}}}, Json{{"a", {{"x", 2}}}, {"a-b", 1}});
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].path, "a-b");
  EXPECT_EQ(c[1].path, "a.x");
}

// ----------------------------------------------------------------------------------------------------
// ParseDuration

const std::string kDurationHint =
    "(expected a number and a unit, largest first: 1d, 12h, 30m, 10s, 250ms, 500us; e.g. 1h30m)";

TEST(ParseDuration, GoodInputs) {
  using std::chrono::microseconds;
  const std::vector<std::pair<std::string, int64_t>> good = {{"250ms", 250'000},
                                                             {"10s", 10'000'000},
                                                             {"5m", 300'000'000},
                                                             {"1h", 3'600'000'000},
                                                             {"1h30m", 5'400'000'000},
                                                             {"0s", 0},
                                                             {"0ms", 0},
                                                             {"90m", 5'400'000'000},
                                                             {"1h1m1s1ms", 3'661'001'000},
                                                             {"2m500ms", 120'500'000}};
  for (const auto& [text, us] : good) {
    auto d = ParseDuration(text);
    ASSERT_TRUE(d.ok()) << text << ": " << d.status().message();
    EXPECT_EQ(d.value(), microseconds(us)) << text;
  }
}

TEST(ParseDuration, BadInputsNameTheText) {
  for (const char* bad : {"", "10", "s", "1.5s", "-1s", "+1s", " 1s", "1s ", "30m1h", "1m1m", "1ms5s", "1H",
                          "1h30", "ms", "1sm", "1D", "1 d", "1x", "garbage"}) {
    auto d = ParseDuration(bad);
    ASSERT_FALSE(d.ok()) << bad;
    EXPECT_EQ(d.status().code(), Status::Code::kInvalidArgument);
    EXPECT_EQ(d.status().message(), "malformed duration '" + std::string(bad) + "' " + kDurationHint);
  }
}

TEST(ParseDuration, DaysAndMicroseconds) {
  using namespace std::chrono_literals;
  EXPECT_EQ(ParseDuration("1d").value(), 24h);
  EXPECT_EQ(ParseDuration("1d12h").value(), 36h);
  EXPECT_EQ(ParseDuration("250us").value(), 250us);
  EXPECT_EQ(ParseDuration("1s500ms").value(), 1500ms);
  EXPECT_EQ(ParseDuration("1d1h1m1s1ms1us").value(), 24h + 1h + 1min + 1s + 1ms + 1us);
}

TEST(ParseDuration, UnitsGoLargestFirstEachAtMostOnce) {
  for (const char* bad : {"30m1h", "12h1d", "1us1ms", "500ms1s", "1s1s", "1d1d", "1us1us", "1h1m1h"}) {
    auto d = ParseDuration(bad);
    ASSERT_FALSE(d.ok()) << bad;
    EXPECT_EQ(d.status().message(), "malformed duration '" + std::string(bad) + "' " + kDurationHint);
  }
}

TEST(ParseDuration, EmptyOrGarbageIsRefusedNamingTheInput) {
  EXPECT_EQ(ParseDuration("").status().message(), "malformed duration '' " + kDurationHint);
  EXPECT_EQ(ParseDuration("1x").status().message(), "malformed duration '1x' " + kDurationHint);
  EXPECT_EQ(ParseDuration("soon").status().message(), "malformed duration 'soon' " + kDurationHint);
  // Control characters are shown escaped, so the message stays one line.
  EXPECT_EQ(ParseDuration("1s\n").status().message(), "malformed duration '1s\\x0a' " + kDurationHint);
}

TEST(ParseDuration, AtMostTenYears) {
  using namespace std::chrono_literals;
  EXPECT_EQ(ParseDuration("3650d").value(), 3650 * 24h);
  EXPECT_EQ(ParseDuration("87600h").value(), 3650 * 24h);
  for (const char* bad : {"3651d", "3650d1us", "87601h", "2562047788h", "99999999999999999999h"}) {
    auto d = ParseDuration(bad);
    ASSERT_FALSE(d.ok()) << bad;
    EXPECT_EQ(d.status().code(), Status::Code::kInvalidArgument);
    EXPECT_EQ(d.status().message(),
              "duration '" + std::string(bad) + "' is too long (at most 3650d, ten years)");
  }
}

TEST(ValidateDocument, DurationsTakeDaysAndMicroseconds) {
  Json d = Example();
  d["policy"]["node_deadline"] = "1d";
  d["policy"]["progress_deadline"] = "1d12h";
  d["policy"]["min_healthy"] = "250us";
  d["services"]["api"]["start_deadline"] = "1m30s500ms";
  EXPECT_TRUE(Problems(d).empty()) << Dump(Problems(d));

  d["policy"]["node_deadline"] = "30m1h";
  d["policy"]["progress_deadline"] = "3651d";
  EXPECT_EQ(Problems(d),
            (std::vector<std::string>{
                "policy.node_deadline: malformed duration '30m1h' " + kDurationHint,
                "policy.progress_deadline: duration '3651d' is too long (at most 3650d, ten years)",
            }));
}

// ----------------------------------------------------------------------------------------------------
// Objects

TEST(Objects, SplitAndJoinRoundTrip) {
  Json d = Example();
  auto objects = SplitObjects(d);
  std::vector<std::string> keys;
  for (const auto& [k, v] : objects) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"freeze", "nodes/n1", "nodes/n2", "nodes/n3", "packages/pg",
                                            "packages/web", "policy", "roles", "services/api", "services/db",
                                            "switches", "voters"}));
  EXPECT_EQ(objects["packages/web"], d["packages"]["web"]);
  EXPECT_EQ(objects["policy"], d["policy"]);
  EXPECT_EQ(JoinObjects(objects), d);
  EXPECT_EQ(CanonicalJson(JoinObjects(objects)), CanonicalJson(d));

  // An empty map section has no objects, so it does not survive (it means the same as an absent one).
  Json e = {{"packages", Json::object()}, {"freeze", true}};
  EXPECT_EQ(JoinObjects(SplitObjects(e)), (Json{{"freeze", true}}));
  EXPECT_TRUE(SplitObjects(Json::array()).empty());
  EXPECT_EQ(JoinObjects({}), Json::object());
}

TEST(Objects, SectionOwns) {
  Json d = {{"packages", {{"web", {{"version", "1"}}}}}, {"policy", {{"batch", 1}}}};
  EXPECT_TRUE(SectionOwns(d, "packages/web"));
  EXPECT_TRUE(SectionOwns(d, "packages/gone"));  // a present section owns items it no longer lists: deleted
  EXPECT_TRUE(SectionOwns(d, "policy"));
  EXPECT_FALSE(SectionOwns(d, "services/api"));
  EXPECT_FALSE(SectionOwns(d, "nodes/n1"));
  EXPECT_FALSE(SectionOwns(d, "roles"));
  EXPECT_FALSE(SectionOwns(d, "voters"));
  EXPECT_FALSE(SectionOwns(d, "packagesx/web"));
  EXPECT_FALSE(SectionOwns(d, "bogus"));
  EXPECT_FALSE(SectionOwns(Json::array(), "policy"));
  // Applying `d` over stored objects: what it owns and does not list is what gets deleted.
  auto stored = SplitObjects(Example());
  auto incoming = SplitObjects(d);
  std::vector<std::string> deleted;
  for (const auto& [k, v] : stored) {
    if (SectionOwns(d, k) && !incoming.count(k)) deleted.push_back(k);
  }
  EXPECT_EQ(deleted, std::vector<std::string>{"packages/pg"});
}

TEST(ServiceEdges, FromParamsAndAfterSortedAndUnique) {
  EXPECT_EQ(ServiceEdges(Example()), (std::vector<std::pair<std::string, std::string>>{{"api", "db"}}));
  Json d = MustParse(R"(
services:
  z: {params: {A: "${b.x} ${a.y}", B: "${b.x}", C: 3}, after: [a, c]}
  a: {outputs: [y]}
  b: {outputs: [x]}
  c: {}
)");
  EXPECT_EQ(ServiceEdges(d),
            (std::vector<std::pair<std::string, std::string>>{{"z", "a"}, {"z", "b"}, {"z", "c"}}));
  EXPECT_TRUE(ServiceEdges(Json::object()).empty());
  EXPECT_TRUE(ServiceEdges(Json{{"services", 1}}).empty());
}

TEST(HideParams, EveryParamValueIsHiddenAndTheHiddenCopyCannotBeApplied) {
  const Json doc = Json::parse(R"({"services": {"db": {"params": {"PASSWORD": "hunter2", "PORT": 5432, "TLS": true}},
                                                "web": {"params": {"DB": "${db.url}"}, "after": ["db"]}},
                                   "roles": ["web"]})");
  const Json hidden = HideParams(doc);
  EXPECT_EQ(CanonicalJson(hidden).find("hunter2"), std::string::npos);
  for (const char* p : {"PASSWORD", "PORT", "TLS"}) EXPECT_EQ(hidden["services"]["db"]["params"][p], kHiddenParam) << p;
  EXPECT_EQ(hidden["services"]["web"]["params"]["DB"], kHiddenParam);
  EXPECT_EQ(hidden["services"]["web"]["after"], doc["services"]["web"]["after"]) << "only params are hidden";
  EXPECT_EQ(hidden["roles"], doc["roles"]);
  EXPECT_EQ(HideParams(Json::parse(R"({"services": {"x": 1}, "roles": 2})")), Json::parse(R"({"services": {"x": 1}, "roles": 2})"))
      << "an invalid document is left alone, not thrown on";
  Status s = ValidateDocument(hidden);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("services.db.params.PASSWORD: is the placeholder"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace starling::store
