// Agent commands: moving every node's starlingd to another binary through an
// ordinary rollout (agent upgrade), and what each node runs (agent status).
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "call.h"
#include "commands.h"
#include "flags.h"
#include "output.h"
#include "starling/api_json.h"

namespace starling::cli {
namespace {

// `path --version`, run as the caller, its first line; empty on failure
// (with why in `error`).
std::string VersionLineOf(const std::string& path, std::string* error) {
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    *error = std::string("pipe: ") + std::strerror(errno);
    return "";
  }
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    int null = open("/dev/null", O_RDWR);
    dup2(null, STDIN_FILENO);
    dup2(null, STDERR_FILENO);
    execl(path.c_str(), path.c_str(), "--version", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out[1]);
  std::string text;
  char buf[512];
  ssize_t n;
  while (text.size() < 4096 && (n = read(out[0], buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(n));
  close(out[0]);
  int status = 0;
  if (pid > 0) waitpid(pid, &status, 0);
  if (pid < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    *error = path + " --version did not succeed (" +
             (pid < 0 ? std::string(std::strerror(errno))
                      : WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status)) : "killed") +
             ")";
    return "";
  }
  return text.substr(0, text.find('\n'));
}

// The current desired state (params hidden).
int GetDocument(Context& ctx, json* doc) {
  return Call(
      ctx.globals,
      [](api::Request::Builder r) {
        auto q = r.initGet();
        q.setFormat("json");
      },
      [&](api::Reply::Reader reply) {
        if (!reply.isText()) return Unexpected();
        *doc = json::parse(reply.getText().cStr(), nullptr, false);
        return kExitOk;
      });
}

void AddAgentUpgrade(CLI::App& agent, Context& ctx) {
  struct Options {
    std::string binary, format = "table";
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = agent.add_subcommand(
      "upgrade",
      "Move every node's starlingd to the binary at --binary: stores it as an artifact, writes the desired "
      "state's `agent` section (its version and digest) and starts a rollout of that revision. Each node of a "
      "batch fetches it, checks it (digest, --version, the data dir) and restarts into it, keeping the one "
      "before; a node whose new daemon does not come up goes back by itself. The rollout verbs (status --watch, "
      "pause, resume, abort) and the policy apply as to any rollout. Refused while a rollout runs or the "
      "cluster is frozen");
  cmd->add_option("--binary", o->binary, "The starlingd binary to run everywhere (read with your rights)")
      ->required();
  AddFormatOption(*cmd, o->format);
  cmd->callback([&ctx, o] {
    std::string error;
    const std::string line = VersionLineOf(o->binary, &error);
    if (line.empty()) {
      ctx.exit_code = Complain(kExitDaemonError, "agent upgrade: " + error);
      return;
    }
    static const std::regex kLine(R"(starlingd ([0-9A-Za-z.+~-]{1,64}) \(build [^,]*, protocol [0-9]+(-[0-9]+)?\))");
    std::smatch m;
    if (!std::regex_match(line, m, kLine)) {
      ctx.exit_code = Complain(kExitDaemonError, "agent upgrade: " + o->binary + " --version says '" + line.substr(0, 200) +
                                               "': not a starlingd");
      return;
    }
    const std::string version = m[1];
    // One rollout at a time: say so before storing or writing anything.
    json status;
    ctx.exit_code = StateCall(
        ctx.globals, [](api::Request::Builder r) { r.setRolloutStatus(); },
        [&](const json& r) {
          status = r;
          return kExitOk;
        });
    if (ctx.exit_code != kExitOk) return;
    const std::string state = status.value("state", "");
    if (state == "running" || state == "paused") {
      ctx.exit_code = Complain(kExitDaemonError, "agent upgrade: rollout " + std::to_string(status.value("id", 0)) +
                                                     " of revision " + status.value("revision", "") + " is " +
                                                     state + "; agent and application rollouts run one at a "
                                                     "time: wait for it (`starling rollout status --watch`) or "
                                                     "`starling rollout abort` it");
      return;
    }
    // A freeze (a migration being prepared, say) holds it back too.
    json doc;
    ctx.exit_code = GetDocument(ctx, &doc);
    if (ctx.exit_code != kExitOk) return;
    if (doc.is_object() && doc.contains("freeze") && !doc["freeze"].is_null() && doc["freeze"] != false) {
      const json& f = doc["freeze"];
      ctx.exit_code = Complain(kExitDaemonError,
                               "agent upgrade: refused: the cluster is frozen" +
                                   (f.is_object() ? ": " + f.value("reason", std::string("no reason given")) : "") +
                                   "; `starling unfreeze` lifts it");
      return;
    }
    json artifact;
    ctx.exit_code = AddArtifactFile(ctx, o->binary, "starlingd", version, &artifact);
    if (ctx.exit_code != kExitOk) return;
    const std::string digest = artifact.value("digest", "");
    const json section = {{"agent", {{"version", version}, {"artifact", digest}}}};
    json applied;
    ctx.exit_code = StateCall(
        ctx.globals,
        [&](api::Request::Builder r) {
          auto a = r.initApply();
          a.setDocument(section.dump());
          a.setSource("agent upgrade --binary " + o->binary);
        },
        [&](const json& r) {
          applied = r;
          return kExitOk;
        });
    if (ctx.exit_code != kExitOk) return;
    const std::string revision = applied.value("revision", "");
    json started;
    ctx.exit_code = StateCall(
        ctx.globals,
        [&](api::Request::Builder r) {
          r.setAgent(true);
          r.setRolloutStart(revision);
        },
        [&](const json& r) {
          started = r;
          return kExitOk;
        });
    if (ctx.exit_code != kExitOk) return;
    const json out = {{"version", version}, {"artifact", digest}, {"revision", revision},
                      {"rollout", started.value("id", 0)}};
    if (o->format == "json") {
      PrintJson(out);
    } else {
      std::cout << "agent upgrade to starlingd " << version << " (" << digest << "): revision " << revision
                << ", rollout " << out["rollout"] << " requested; follow it with `starling rollout status --watch`\n";
    }
  });
}

void AddAgentStatus(CLI::App& agent, Context& ctx) {
  auto format = std::make_shared<std::string>("table");
  CLI::App* cmd = agent.add_subcommand(
      "status", "Show the starlingd release each member runs, the protocol it speaks, and the release the "
                "desired state's `agent` section asks for");
  AddFormatOption(*cmd, *format);
  cmd->callback([&ctx, format] {
    json doc;
    ctx.exit_code = GetDocument(ctx, &doc);
    if (ctx.exit_code != kExitOk) return;
    json desired = nullptr;
    if (doc.is_object() && doc.contains("agent") && doc["agent"].is_object())
      desired = doc["agent"].value("version", "");
    ctx.exit_code = Call(
        ctx.globals, [](api::Request::Builder r) { r.setMembers(); },
        [&](api::Reply::Reader reply) {
          if (!reply.isMembers()) return Unexpected();
          json rows = json::array();
          std::vector<std::vector<std::string>> table = {{"NAME", "STATUS", "VERSION", "PROTOCOL", "DESIRED"}};
          for (auto m : reply.getMembers()) {
            json j = api_json::Member(m);
            const std::string version = j.value("version", "");
            rows.push_back({{"name", j["name"]},
                            {"status", j["status"]},
                            {"version", version.empty() ? json(nullptr) : json(version)},
                            {"protocol", j["protocol"]},
                            {"desired", desired},
                            {"upgraded", desired.is_string() && version == desired.get<std::string>()}});
            table.push_back({j["name"], j["status"], version.empty() ? "-" : version,
                             std::to_string(j["protocol"].value("current", 0)),
                             desired.is_string() ? desired.get<std::string>() : "-"});
          }
          if (*format == "json") {
            PrintJson(rows);
          } else {
            PrintTable(table);
          }
          return kExitOk;
        });
  });
}

}  // namespace

void AddAgentCommands(CLI::App& app, Context& ctx) {
  CLI::App* agent = app.add_subcommand("agent", "The starlingd every node runs: upgrade it, see its versions");
  agent->require_subcommand(1);
  AddAgentUpgrade(*agent, ctx);
  AddAgentStatus(*agent, ctx);
}

}  // namespace starling::cli
