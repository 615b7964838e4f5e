// Desired-state commands: writing it (apply, rollback), reading it (get,
// history, diff) and drawing what it runs where (graph).
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "call.h"
#include "commands.h"
#include "flags.h"
#include "graph_dot.h"
#include "output.h"
#include "starling/status.h"

namespace starling::cli {
namespace {

// Reads FILE, or standard input for "-".
Result<std::string> ReadInput(const std::string& path) {
  std::ifstream file;
  std::istream* in = &std::cin;
  if (path != "-") {
    file.open(path, std::ios::binary);
    if (!file) return Status::NotFound("cannot read " + path + ": " + std::strerror(errno));
    in = &file;
  }
  std::ostringstream text;
  text << in->rdbuf();
  if (in->bad()) return Status::IoError("reading " + path + " failed");
  return text.str();
}

void AddApply(CLI::App& app, Context& ctx) {
  struct Options {
    std::string file, base, format = "table";
    std::vector<std::string> settings;
    bool force = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "apply",
      "Change the desired state from a YAML or JSON document: its sections replace the same sections of the "
      "current state (a section set to null is removed), the rest stays. Prints the new revision; durable on "
      "this node before it returns, then gossiped to every node");
  cmd->add_option("-f,--file", o->file, "The document (- for standard input)")->required();
  cmd->add_option(
      "--base", o->base,
      "The revision you edited: warns when another change landed since (the change still applies)");
  cmd->add_option(
      "--set", o->settings,
      "A value given now for ${NAME} in service params: NAME=VALUE (repeatable). The value becomes "
      "part of the stored revision");
  cmd->add_flag("--force", o->force, "Accept voters that are no member yet (nodes that have not joined)");
  AddFormatOption(*cmd, o->format);
  cmd->callback([&ctx, o] {
    const auto settings = SplitTags(o->settings, "--set");
    auto text = ReadInput(o->file);
    if (!text.ok()) {
      ctx.exit_code = Complain(kExitDaemonError, "apply: " + text.status().message());
      return;
    }
    ctx.exit_code = StateCall(
        ctx.globals,
        [&](api::Request::Builder r) {
          r.setForce(o->force);
          auto a = r.initApply();
          a.setDocument(*text);
          a.setSource(o->file == "-" ? "standard input" : o->file);
          a.setBase(o->base);
          auto list = a.initSettings(static_cast<unsigned>(settings.size()));
          for (unsigned i = 0; i < settings.size(); ++i) {
            list[i].setKey(settings[i].first);
            list[i].setValue(settings[i].second);
          }
        },
        [&](const json& r) { return PrintWrite(r, o->format); });
  });
}

void AddGet(CLI::App& app, Context& ctx) {
  struct Options {
    std::string revision, format = "yaml";
    bool show_params = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "get",
      "Print the desired state (the current revision unless --revision). Service params, which may hold "
      "secrets, are shown as a placeholder unless --show-params; `apply` refuses the placeholder, so a "
      "copy without the values cannot overwrite them");
  cmd->add_option("--revision", o->revision, "A revision id or unique prefix (at least 4 hex digits)");
  cmd->add_flag("--show-params", o->show_params, "Show the params' values (HTTP never does)");
  AddFormatOption(*cmd, o->format, {"yaml", "json"});
  cmd->callback([&ctx, o] {
    ctx.exit_code = Call(
        ctx.globals,
        [&](api::Request::Builder r) {
          auto q = r.initGet();
          q.setRevision(o->revision);
          q.setFormat(o->format);
          q.setShowParams(o->show_params);
        },
        [](api::Reply::Reader reply) {
          if (!reply.isText()) return Unexpected();
          std::cout << reply.getText().cStr();
          return kExitOk;
        });
  });
}

void PrintHistory(const json& rows) {
  std::vector<std::vector<std::string>> table = {{"", "REVISION", "TIME", "ORIGIN", "NOTE", "CONFLICT"}};
  for (const auto& row : rows) {
    std::string rev = row.value("revision", "");
    if (!row.value("changed", true)) rev = "(no change)";
    table.push_back({row.value("current", false) ? "*" : "", rev, row.value("time", ""),
                     row.value("origin", "") + "#" + std::to_string(row.value("seq", 0)),
                     row.value("note", ""), row.value("conflict", "")});
  }
  PrintTable(table);
}

void AddHistory(CLI::App& app, Context& ctx) {
  auto format = std::make_shared<std::string>("table");
  CLI::App* cmd = app.add_subcommand(
      "history",
      "List the desired-state changes in order, oldest first, with the revision each made; a change "
      "that lost to a concurrent one is marked in CONFLICT");
  AddFormatOption(*cmd, *format);
  cmd->callback([&ctx, format] {
    ctx.exit_code = StateCall(
        ctx.globals, [](api::Request::Builder r) { r.setHistory(); },
        [&](const json& rows) {
          if (*format == "json") {
            PrintJson(rows);
          } else {
            PrintHistory(rows);
          }
          return kExitOk;
        });
  });
}

void AddDiff(CLI::App& app, Context& ctx) {
  struct Options {
    std::string from, to, format = "table";
    bool full = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "diff",
      "Show what changed between two revisions (R2 defaults to the current): one line per change with whole "
      "values, or with --full each change as a unified diff of its values");
  cmd->add_option("r1", o->from, "The older revision")->required();
  cmd->add_option("r2", o->to, "The newer revision");
  cmd->add_flag("--full", o->full,
                "Each change over several lines: values indented, lines only in R1 marked -, only in R2 +, as "
                "diff -u (for big sections and multi-line params)");
  AddFormatOption(*cmd, o->format);
  cmd->callback([&ctx, o] {
    ctx.exit_code = StateCall(
        ctx.globals,
        [&](api::Request::Builder r) {
          auto d = r.initDiff();
          d.setFrom(o->from);
          d.setTo(o->to);
        },
        [&](const json& changes) {
          if (o->format == "json") {
            PrintJson(changes);
          } else {
            PrintDiff(changes, o->full);
          }
          return kExitOk;
        });
  });
}

void AddRollback(CLI::App& app, Context& ctx) {
  struct Options {
    std::string to, format = "table";
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "rollback",
      "Write a new revision whose content equals an earlier one (by default the revision before the "
      "current)");
  cmd->add_option("--to", o->to, "The revision to return to");
  AddFormatOption(*cmd, o->format);
  cmd->callback([&ctx, o] {
    ctx.exit_code = StateCall(
        ctx.globals, [&](api::Request::Builder r) { r.initRollback().setTo(o->to); },
        [&](const json& r) {
          if (o->format != "json") std::cout << "rolled back to the content of " << r.value("to", "") << ": ";
          return PrintWrite(r, o->format);
        });
  });
}

}  // namespace

void AddStateCommands(CLI::App& app, Context& ctx) {
  AddApply(app, ctx);
  AddGet(app, ctx);
  AddHistory(app, ctx);
  AddDiff(app, ctx);
  AddRollback(app, ctx);
}

void AddGraphCommand(CLI::App& app, Context& ctx) {
  auto format = std::make_shared<std::string>("dot");
  CLI::App* cmd = app.add_subcommand(
      "graph",
      "Draw the services, the nodes they run on and their dependency edges (service -> the service whose "
      "output or start it needs). DOT always; SVG through Graphviz's `dot` when installed: "
      "`starling graph --format svg > graph.svg`");
  AddFormatOption(*cmd, *format, {"dot", "svg", "json"});
  cmd->callback([&ctx, format] {
    ctx.exit_code = StateCall(
        ctx.globals, [](api::Request::Builder r) { r.setGraph(); },
        [&](const json& graph) {
          if (*format == "json") {
            PrintJson(graph);
            return kExitOk;
          }
          const std::string dot = GraphDot(graph);
          if (*format == "dot") {
            std::cout << dot;
            return kExitOk;
          }
          auto svg = DotToSvg(dot);
          if (!svg.ok()) return Complain(kExitDaemonError, svg.status().message());
          std::cout << *svg;
          return kExitOk;
        });
  });
}

void AddUiCommands(CLI::App& app, Context& ctx) {
  CLI::App* ui = app.add_subcommand(
      "ui", "The web console this node serves on its --http port (/ui/): its token and a login link");
  ui->require_subcommand(1);
  for (const char* what : {"token", "url"}) {
    const bool token = std::string(what) == "token";
    auto format = std::make_shared<std::string>("table");
    CLI::App* cmd = ui->add_subcommand(
        what, token ? "Print the token the console's actions need (kept owner-only in <data-dir>/ui-token); "
                      "actions also need starlingd --ui-write"
                    : "Print a link that opens this node's console logged in (the token rides in the link's "
                      "#fragment, which the browser never sends); without --ui-write the console only shows");
    AddFormatOption(*cmd, *format);
    cmd->callback([&ctx, format, token] {
      ctx.exit_code = StateCall(
          ctx.globals, [](api::Request::Builder r) { r.setUi(); },
          [&](const json& r) {
            if (*format == "json") {
              PrintJson(r);
            } else {
              std::cout << (token ? r.value("token", "") : r.value("login_url", "")) << "\n";
              if (!r.value("write", false))
                std::cerr << "note: this node serves the console read-only (start starlingd with --ui-write to "
                             "act through it)\n";
            }
            return kExitOk;
          });
    });
  }
}

}  // namespace starling::cli
