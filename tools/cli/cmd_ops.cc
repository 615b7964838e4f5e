// Operator tools: the cluster's gossip keys, and the artifacts packages are
// installed from.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "call.h"
#include "commands.h"
#include "flags.h"
#include "output.h"
#include "starling/membership/keyring.h"

namespace starling::cli {
namespace {

// One `keys` operation on every live member (or this node alone). A member
// that did not do it is named on stderr and fails the command, so that the
// operator repeats it.
int KeysCall(const Globals& globals, const std::string& op, const std::string& key, bool local,
             const std::string& format) {
  return StateCall(
      globals,
      [&](api::Request::Builder r) {
        auto k = r.initKeys();
        k.setOp(op);
        k.setKey(key);
        k.setLocal(local);
      },
      [&](const json& r) {
        const json errors = r.value("errors", json::object());
        if (format == "json") {
          PrintJson(r);
        } else {
          const int members = r.value("members", 0);
          if (local) {
            std::cout << op << ": done on this node only\n";
          } else {
            std::cout << op << ": " << r.value("responded", 0) << " of " << members << " members answered\n";
          }
          std::vector<std::vector<std::string>> table = {{"FINGERPRINT", "MEMBERS", "PRIMARY"}};
          for (const auto& k : r.value("keys", json::array()))
            table.push_back({k.value("fingerprint", ""),
                             std::to_string(k.value("members", 0)) + "/" + std::to_string(members),
                             std::to_string(k.value("primary", 0))});
          PrintTable(table);
        }
        if (r.contains("warning")) std::cerr << "starling: note: " << r.value("warning", "") << "\n";
        for (const auto& [name, why] : errors.items())
          std::cerr << "starling: " << name << ": " << why.get<std::string>() << "\n";
        return errors.empty() ? kExitOk : kExitDaemonError;
      });
}

// A key from --key-file (`-` for stdin), read with the caller's own rights:
// a key given as an argument shows in `ps` and the shell's history.
Result<std::string> ReadKeyFile(const std::string& path) {
  FILE* f = path == "-" ? stdin : std::fopen(path.c_str(), "re");
  if (f == nullptr) return Status::InvalidArgument("--key-file " + path + ": " + std::strerror(errno));
  std::string text(1024, '\0');
  const size_t n = std::fread(text.data(), 1, text.size(), f);
  const bool more = std::fgetc(f) != EOF;
  if (f != stdin) std::fclose(f);
  if (more) return Status::InvalidArgument("--key-file " + path + ": more than 1 KiB, not a key");
  text.resize(n);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
  return text;
}

}  // namespace

int AddArtifactFile(Context& ctx, const std::string& file, const std::string& name, const std::string& version,
                    json* out) {
  // The daemon copies and hashes the whole file before it answers.
  ctx.globals.timeout_seconds = std::max(ctx.globals.timeout_seconds, 600.0);
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return Complain(kExitDaemonError, "artifact add: " + file + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Complain(kExitDaemonError, "artifact add: " + file + ": not a regular file");
  }
  char resolved[PATH_MAX];
  const std::string shown = realpath(file.c_str(), resolved) != nullptr ? resolved : file;
  const int code = StateCall(
      ctx.globals,
      [&](api::Request::Builder r) {
        auto a = r.initArtifact();
        a.setOp("add");
        a.setPath(shown);
        a.setName(name);
        a.setVersion(version);
      },
      [&](const json& r) {
        *out = r;
        return kExitOk;
      },
      fd);
  ::close(fd);
  return code;
}

namespace {

void AddArtifactAdd(CLI::App& artifact, Context& ctx) {
  struct Options {
    std::string file, name, version, format = "table";
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = artifact.add_subcommand(
      "add",
      "Store FILE on this node and announce it; prints its digest, for a package's `artifact:`. "
      "The file is opened here, with your own rights, and handed to starlingd open: the daemon reads "
      "nothing you could not. Waits up to 10 min (or --timeout) for the copy");
  cmd->add_option("FILE", o->file, "The file")->required();
  cmd->add_option("--name", o->name, "A name for people (default: the file's name)");
  cmd->add_option("--version", o->version, "A version for people");
  AddFormatOption(*cmd, o->format);
  cmd->callback([&ctx, o] {
    json r;
    ctx.exit_code = AddArtifactFile(ctx, o->file, o->name, o->version, &r);
    if (ctx.exit_code != kExitOk) return;
    if (o->format == "json") {
      PrintJson(r);
    } else {
      std::cout << r.value("digest", "") << "  " << r.value("name", "") << " " << r.value("version", "") << "  "
                << r.value("size", 0) << " bytes, " << r.value("chunks", 0) << " chunks"
                << (r.value("new", false) ? "" : " (already known)") << "\n";
    }
  });
}

void PrintArtifacts(const json& r) {
  std::vector<std::vector<std::string>> table = {
      {"DIGEST", "NAME", "VERSION", "SIZE", "HERE", "HOLDERS", "REFERENCED"}};
  for (const auto& a : r.value("artifacts", json::array())) {
    const std::string here = a.value("local", "");
    table.push_back({a.value("digest", "").substr(0, 19), a.value("name", ""), a.value("version", ""),
                     std::to_string(a.value("size", uint64_t{0})),
                     here == "partial" ? "partial " + a.value("progress", "") : here,
                     std::to_string(a.value("holders", json::array()).size()),
                     a.value("referenced", false) ? "yes" : "no"});
  }
  PrintTable(table);
  std::cout << "this node served " << r.value("bytes_served", uint64_t{0}) << " bytes, fetched "
            << r.value("bytes_fetched", uint64_t{0}) << "\n";
}

void AddArtifactLs(CLI::App& artifact, Context& ctx) {
  auto format = std::make_shared<std::string>("table");
  CLI::App* cmd = artifact.add_subcommand(
      "ls", "List the artifacts the cluster knows, this node's copy of each and which live members hold it");
  AddFormatOption(*cmd, *format);
  cmd->callback([&ctx, format] {
    ctx.exit_code = StateCall(
        ctx.globals, [](api::Request::Builder r) { r.initArtifact().setOp("ls"); },
        [&](const json& r) {
          if (*format == "json") {
            PrintJson(r);
          } else {
            PrintArtifacts(r);
          }
          return kExitOk;
        });
  });
}

}  // namespace

void AddKeyCommands(CLI::App& app, Context& ctx) {
  struct Options {
    std::string key, key_file, format = "table";
    bool local = false;
  };
  CLI::App* keys = app.add_subcommand(
      "keys",
      "Manage the cluster keys. Rotate without downtime: `install NEW`, then `use NEW`, then `remove OLD`. "
      "To shut out a key others may hold, install the new one with `install --local` on each node (it never "
      "crosses the network), then `use` and `remove` once, cluster-wide (see SECURITY.md). Keys are shown by "
      "fingerprint only. Exits 1 when a member did not do it (repeat the command once it is back: every keys "
      "command can be repeated)");
  keys->require_subcommand(1);
  for (const char* op : {"list", "install", "use", "remove"}) {
    auto o = std::make_shared<Options>();
    const std::string name = op;
    CLI::App* cmd = keys->add_subcommand(
        op, name == "list"      ? "Show the fingerprint of every key held in the cluster, how many members hold it "
                                  "and how many use it as primary"
            : name == "install" ? "Add KEY to every member's keyring (accepted from then on; not yet used). It is "
                                  "sent sealed under the current key: with --local it is added here only"
            : name == "use"     ? "Make KEY, already installed, the key every member encrypts with"
                                : "Drop KEY from every member's keyring (refused where it is primary)");
    if (name != "list") {
      CLI::Option* positional =
          cmd->add_option("KEY", o->key,
                          name == "install" ? "The key, base64 of 32 bytes (from `starling keygen`)"
                                            : "The key (base64) or its fingerprint (from `starling keys list`)");
      cmd->add_option("--key-file", o->key_file,
                        "Read KEY from this file (`-`: standard input), so that it shows in neither `ps` nor the "
                        "shell's history")
          ->excludes(positional);
    }
    cmd->add_flag("--local", o->local, "On this node only, not sent to the other members");
    AddFormatOption(*cmd, o->format);
    cmd->callback([&ctx, o, name] {
      std::string key = o->key;
      if (name != "list") {
        if (o->key_file.empty() && key.empty()) throw CLI::RequiredError("KEY or --key-file");
        if (!o->key_file.empty()) {
          auto read = ReadKeyFile(o->key_file);
          if (!read.ok()) {
            ctx.exit_code = Complain(kExitDaemonError, "keys " + name + ": " + read.status().message());
            return;
          }
          key = *read;
        }
      }
      ctx.exit_code = KeysCall(ctx.globals, name, key, o->local, o->format);
    });
  }
  CLI::App* keygen = app.add_subcommand(
      "keygen",
      "Print a new random cluster key (base64 of 32 bytes) for --encrypt or `keys install`; its fingerprint "
      "goes to standard error");
  keygen->callback([] {
    const membership::Key key = membership::Keyring::Generate();
    std::cout << membership::Keyring::FormatKey(key) << "\n";
    std::cerr << "fingerprint " << membership::Keyring::Fingerprint(key) << "\n";
  });
}

void AddArtifactCommands(CLI::App& app, Context& ctx) {
  CLI::App* artifact = app.add_subcommand(
      "artifact",
      "Package files, distributed peer to peer: stored by SHA-256 in each node's data dir, fetched in "
      "chunks from every node that has them, checked against the digest, handed to install hooks as "
      "STARLING_ARTIFACT_PATH");
  artifact->require_subcommand(1);
  AddArtifactAdd(*artifact, ctx);
  AddArtifactLs(*artifact, ctx);
}

}  // namespace starling::cli
