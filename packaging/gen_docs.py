#!/usr/bin/env python3
"""Shell completions and man page sections for starling and starlingd, read
from their own --help (CLI11's layout), so that they list exactly the
commands and flags the binaries have.

    gen_docs.py --starling PATH --starlingd PATH --out DIR

writes into DIR:
  bash/starling, bash/starlingd     bash completions (complete -F)
  zsh/_starling, zsh/_starlingd     zsh completions (#compdef)
  starling.h2m, starlingd.h2m       help2man --include files: the commands
                                    of starling, FILES, EXIT STATUS, SEE ALSO
"""
import argparse
import os
import re
import subprocess
import sys

SECTION = re.compile(r"^(Options|Subcommands|Positionals):$")


class Command:
    def __init__(self, path, description):
        self.path = path  # ["keys", "install"]
        self.description = description
        self.options = []  # (names, takes_value, choices, help)
        self.positionals = []  # (name, help)
        self.subcommands = []  # Command


def run_help(binary, path):
    out = subprocess.run([binary, *path, "--help"], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        sys.exit(f"gen_docs: {binary} {' '.join(path)} --help exited {out.returncode}: {out.stderr}")
    return out.stdout


def parse(binary, path, description=""):
    """The command at `path` and, recursively, its subcommands."""
    text = run_help(binary, path)
    lines = text.splitlines()
    cmd = Command(path, description or (lines[0] if lines else ""))
    section = None
    pending = None  # an option or positional whose help is on the next line
    subs = []
    for line in lines:
        m = SECTION.match(line)
        if m:
            section = m.group(1)
            continue
        if not line.strip():
            if section == "Subcommands":
                section = None
            continue
        if not line.startswith("  "):
            section = None
            continue
        if pending is not None and line.startswith(" " * 30):
            pending[-1] = line.strip()
            pending = None
            continue
        pending = None
        body = line[2:]
        if section == "Options" and body.startswith("-"):
            head, help_text = _split(body)
            parts = head.split(" ", 1)
            names = [n for n in parts[0].split(",") if n.startswith("-")]
            kind = parts[1] if len(parts) > 1 else ""
            takes_value = bool(re.match(r"(TEXT|UINT|INT|FLOAT|NUMBER|ENUM|BOOLEAN)", kind))
            choices = []
            cm = re.search(r":\{([^}]*)\}", kind)
            if cm:
                choices = cm.group(1).split(",")
            entry = [names, takes_value, choices, help_text]
            cmd.options.append(entry)
            if not help_text:
                pending = entry
        elif section == "Positionals":
            head, help_text = _split(body)
            entry = [head.split(" ")[0], help_text]
            cmd.positionals.append(entry)
            if not help_text:
                pending = entry
        elif section == "Subcommands":
            name, help_text = _split(body)
            subs.append((name.strip(), help_text))
    for name, help_text in subs:
        cmd.subcommands.append(parse(binary, path + [name], help_text))
    return cmd


def _split(body):
    """'--name TEXT     help' -> ('--name TEXT', 'help'); help may be absent."""
    m = re.match(r"^(.*?\S)(?:\s{2,}(\S.*))?$", body)
    return (m.group(1), m.group(2) or "") if m else (body, "")


def walk(cmd):
    yield cmd
    for sub in cmd.subcommands:
        yield from walk(sub)


def value_kind(names, choices, positional=False):
    """What a flag's value (or a positional) completes to."""
    if choices:
        return " ".join(choices)
    joined = " ".join(names).lower()
    if re.search(r"dir\b", joined):
        return "__dir"
    if re.search(r"file|config|socket|binary|log\b|^-f\b|lease-log", joined) or positional and joined == "file":
        return "__file"
    return "__any"


def quote(s):
    """A single-quoted word for bash and zsh alike."""
    return "'" + s.replace("'", "'\\''") + "'"


# The completions key their tables by command path, "_" for the program
# itself ("_ keys install"): bash refuses an empty key.
def tables(root, describe):
    """(subcommands, options, option values, positionals) of every command,
    each a list of (key, value); `describe` turns a command's subcommands
    into its value in the first table."""
    subs, opts, vals, pos = [], [], [], []
    for c in walk(root):
        key = " ".join(["_"] + c.path)
        subs.append((key, describe(c.subcommands)))
        opts.append((key, " ".join(n for o in c.options for n in o[0] if n.startswith("--"))))
        for names, takes_value, choices, _ in c.options:
            if takes_value:
                vals += [(key + "|" + n, value_kind(names, choices)) for n in names]
        if c.positionals:
            pos.append((key, value_kind([c.positionals[0][0]], [], True)))
    return subs, opts, vals, pos


def bash_script(program, root):
    fn = "_" + program.replace("-", "_")
    subs, opts, vals, pos = (
        [f"  [{quote(k)}]={quote(v)}" for k, v in table]
        for table in tables(root, lambda subcommands: " ".join(s.path[-1] for s in subcommands)))
    nl = "\n"
    return f"""# bash completion for {program}; made from `{program} --help` by packaging/gen_docs.py.
declare -gA {fn}_subs=(
{nl.join(subs)}
)
declare -gA {fn}_opts=(
{nl.join(opts)}
)
declare -gA {fn}_values=(
{nl.join(vals)}
)
declare -gA {fn}_positional=(
{nl.join(pos)}
)

{fn}() {{
  local cur=${{COMP_WORDS[COMP_CWORD]}} path=_ i w kind sub
  COMPREPLY=()
  # The command the words so far name; a flag's value is skipped.
  for ((i = 1; i < COMP_CWORD; i++)); do
    w=${{COMP_WORDS[i]}}
    if [[ $w == -* ]]; then
      [[ $w != *=* && -n ${{{fn}_values["$path|$w"]+set}} ]] && ((i++))
      continue
    fi
    for sub in ${{{fn}_subs["$path"]}}; do
      if [[ $sub == "$w" ]]; then path="$path $w"; break; fi
    done
  done
  if ((COMP_CWORD > 1)); then
    local prev=${{COMP_WORDS[COMP_CWORD - 1]}}
    kind=${{{fn}_values["$path|$prev"]-}}
    if [[ $prev == -* && -n $kind ]]; then
      case $kind in
        __file) mapfile -t COMPREPLY < <(compgen -f -- "$cur") ;;
        __dir) mapfile -t COMPREPLY < <(compgen -d -- "$cur") ;;
        __any) ;;
        *) mapfile -t COMPREPLY < <(compgen -W "$kind" -- "$cur") ;;
      esac
      return 0
    fi
  fi
  if [[ $cur == -* ]]; then
    mapfile -t COMPREPLY < <(compgen -W "${{{fn}_opts["$path"]}}" -- "$cur")
  elif [[ -n ${{{fn}_subs["$path"]}} ]]; then
    mapfile -t COMPREPLY < <(compgen -W "${{{fn}_subs["$path"]}}" -- "$cur")
  elif [[ ${{{fn}_positional["$path"]-}} == __file ]]; then
    mapfile -t COMPREPLY < <(compgen -f -- "$cur")
  fi
  return 0
}}
complete -o filenames -F {fn} {program}
"""


def zsh_script(program, root):
    fn = "_" + program.replace("-", "_")

    def described(subcommands):
        return "\n".join(s.path[-1] + ":" + s.description.split(". ")[0][:70].replace(":", "\\:") for s in subcommands)

    subs, opts, vals, pos = ([f"  {quote(k)} {quote(v)}" for k, v in table] for table in tables(root, described))
    nl = "\n"
    return f"""#compdef {program}
# zsh completion for {program}; made from `{program} --help` by packaging/gen_docs.py.

{fn}() {{
  local -A subs opts vals pos
  subs=(
{nl.join(subs)}
  )
  opts=(
{nl.join(opts)}
  )
  vals=(
{nl.join(vals)}
  )
  pos=(
{nl.join(pos)}
  )
  local path=_ w i sub kind prev
  local -a names described
  for ((i = 2; i < CURRENT; i++)); do
    w=${{words[i]}}
    if [[ $w == -* ]]; then
      [[ $w != *=* && -n ${{vals[$path|$w]}} ]] && ((i++))
      continue
    fi
    for sub in ${{(f)subs[$path]}}; do
      if [[ ${{sub%%:*}} == $w ]]; then path="$path $w"; break; fi
    done
  done
  prev=${{words[CURRENT-1]}}
  kind=${{vals[$path|$prev]}}
  if [[ $prev == -* && -n $kind ]]; then
    case $kind in
      __file) _files ;;
      __dir) _files -/ ;;
      __any) _message 'value' ;;
      *) compadd -- ${{=kind}} ;;
    esac
    return
  fi
  if [[ $PREFIX == -* ]]; then
    compadd -- ${{=opts[$path]}}
  elif [[ -n ${{subs[$path]}} ]]; then
    described=(${{(f)subs[$path]}})
    _describe -t commands 'command' described
  elif [[ ${{pos[$path]}} == __file ]]; then
    _files
  fi
}}

{fn} "$@"
"""


def roff(text):
    text = text.replace("\\", "\\e")
    return "\n".join(("\\&" + l if l.startswith((".", "'")) else l) for l in text.split("\n"))


def starling_h2m(root):
    out = ["[COMMANDS]", "Each command has its own \\fB--help\\fR. The global options go before the command."]
    for c in walk(root):
        if not c.path:
            continue
        out.append(f'.SS "starling {" ".join(c.path)}"')
        out.append(roff(c.description))
        for name, help_text in c.positionals:
            out += [".TP", f"\\fI{roff(name)}\\fR", roff(help_text)]
        for names, takes_value, choices, help_text in c.options:
            if "--help" in names:
                continue
            shown = ", ".join(f"\\fB{roff(n)}\\fR" for n in names)
            if takes_value:
                shown += " " + ("{" + ",".join(choices) + "}" if choices else "\\fIVALUE\\fR")
            out += [".TP", shown, roff(help_text)]
    out += [
        "[ENVIRONMENT]",
        ".TP", "\\fBSTARLING_SOCKET\\fR", "The daemon's API socket, as \\fB--socket\\fR.",
        ".TP", "\\fBSTARLING_SOCKET_OWNER\\fR", "The daemon's user, as \\fB--socket-owner\\fR.",
        "[EXIT STATUS]",
        ".TP", "0", "Done (also \\fB--help\\fR and \\fB--version\\fR).",
        ".TP", "1", "starlingd refused or failed the request, a member did not do its part of a \\fBkeys\\fR "
        "command, or the command failed here; the reason is on standard error.",
        ".TP", "2", "starlingd could not be reached, did not answer in time, or answered garbage.",
        ".TP", "3", "\\fBrollout status --watch\\fR: the rollout failed or was reverted.",
        ".TP", "4", "\\fBrollout status --watch\\fR: the rollout ended incomplete.",
        ".TP", "64", "The command line is wrong: an unknown command or flag, a missing or invalid argument.",
        "[FILES]",
        ".TP", "/var/lib/starling/starlingd.sock", "The local daemon's API socket (by default).",
        "[SEE ALSO]",
        "\\fBstarlingd\\fR(8)",
    ]
    return "\n".join(out) + "\n"


STARLINGD_H2M = r"""[CONFIGURATION]
Every setting is a flag, and every flag but those that only act can be set in
a TOML file: the long name without the dashes. The packaged service reads
\fI/etc/starling/starlingd.toml\fR, then every \fI*.toml\fR of
\fI/etc/starling/starlingd.d\fR in lexical order; a key in a later file
replaces the earlier value (a list as a whole), and the command line wins
over every file. \fBstarlingd \-\-check\-config\fR prints the settings the
files make, or names the file, key and value at fault.
[SIGNALS]
SIGTERM or SIGINT makes the daemon leave the cluster gracefully (the others
show it \fIleft\fR) and exit 0; a second one exits at once. Under systemd
(Type=notify) it says READY=1 once it serves its API and has joined, or has
nobody to join, and STOPPING=1 when it leaves.
[EXIT STATUS]
.TP
0
Left gracefully, or \-\-help, \-\-version, a good \-\-check\-config.
.TP
1
Could not start (the message names the data dir, address or socket at
fault), was refused by the cluster, or a leave was cut short.
.TP
2
A bad flag or config file; the message names it.
.TP
75
Restarting into a new binary under \-\-supervised.
[FILES]
.TP
/etc/starling/starlingd.toml
The settings, each flag documented with its default.
.TP
/etc/starling/starlingd.d/*.toml
Drop-ins, read after it in lexical order.
.TP
/etc/starling/cluster.key
The cluster key (owner-only), read at the first start.
.TP
/var/lib/starling
The data dir: identity, desired state, keyring, artifacts, the API socket.
[SEE ALSO]
\fBstarling\fR(1), \fBsystemctl\fR(1), \fBjournalctl\fR(1)
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--starling", required=True)
    ap.add_argument("--starlingd", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(os.path.join(a.out, "bash"), exist_ok=True)
    os.makedirs(os.path.join(a.out, "zsh"), exist_ok=True)
    trees = {"starling": parse(a.starling, []), "starlingd": parse(a.starlingd, [])}
    for program, root in trees.items():
        with open(os.path.join(a.out, "bash", program), "w") as f:
            f.write(bash_script(program, root))
        with open(os.path.join(a.out, "zsh", "_" + program), "w") as f:
            f.write(zsh_script(program, root))
    with open(os.path.join(a.out, "starling.h2m"), "w") as f:
        f.write(starling_h2m(trees["starling"]))
    with open(os.path.join(a.out, "starlingd.h2m"), "w") as f:
        f.write(STARLINGD_H2M)


if __name__ == "__main__":
    main()
