"""Bad input and bad files: each row is (args, exit code, what stderr must say).
Also: --help on every command, and colour only on a terminal without NO_COLOR."""
import os
import pty
import sqlite3
import subprocess
import sys

import kjcli
from kjcli import USAGE, NOFILE, NOTJOURNAL, TOONEW, NOTFOUND, FAILURE

COMMANDS = ["sessions", "show", "events", "stats", "actions", "verify", "backup", "prune"]

# args, exit code, a fragment stderr must hold; @J@ is a good journal, @D@ the directory.
CASES = [
    # time expressions
    (["sessions", "--since", "bogus"], USAGE, "bad time 'bogus' for --since"),
    (["sessions", "--until", "2026-13-01"], USAGE, "month 13 out of range"),
    (["sessions", "--since", "2026-02-30"], USAGE, "day 30 out of range"),
    (["events", "--since", "-1x"], USAGE, "needs a unit"),
    (["events", "--until", "1h"], USAGE, "bad time '1h' for --until"),
    (["events", "--since", "2026-11-28T25:00"], USAGE, "out of range"),
    (["events", "--since", ""], USAGE, "bad value '' for --since: empty value"),
    (["sessions", "--since", "yesterday", "--until", "tomorow"], USAGE, "'tomorow'"),
    # flags
    (["sessions", "--bogus"], USAGE, "unknown option '--bogus'"),
    (["events", "-x"], USAGE, "unknown option '-x'"),
    (["stats", "--utc=yes"], USAGE, "option '--utc' takes no value"),
    (["sessions", "-n", "0"], USAGE, "bad value '0' for -n: expected a positive number or 'all'"),
    (["events", "-n", "ten"], USAGE, "bad value 'ten' for -n"),
    (["sessions", "-o", "xml"], USAGE, "bad value 'xml' for -o: expected one of short, json, json-pretty, csv"),
    (["events", "-o"], USAGE, "option '-o' needs a value"),
    (["sessions", "--state", "half"], USAGE, "bad value 'half' for --state: expected open or closed"),
    (["sessions", "extra"], USAGE, "unexpected argument 'extra'"),
    (["stats", "extra"], USAGE, "unexpected argument 'extra'"),
    (["show"], USAGE, "give a SESSION_ID"),
    (["show", "a", "b"], USAGE, "unexpected argument 'b'"),
    (["events", "-f", "-r"], USAGE, "-f and -r cannot be used together"),
    (["actions", "--run", "x"], USAGE, "bad value 'x' for --run"),
    (["actions", "--runs", "--run", "1"], USAGE, "takes no --run"),
    (["backup"], USAGE, "give --to FILE"),
    (["prune"], USAGE, "give --older-than DURATION"),
    (["prune", "--older-than", "30"], USAGE, "needs a unit"),
    (["prune", "--older-than", "0d"], USAGE, "longer than 0"),
    (["prune", "--older-than", "soon"], USAGE, "bad value 'soon' for --older-than: not a duration"),
    # unknown ids
    (["show", "s-nope"], NOTFOUND, "no session 's-nope'"),
    (["events", "--session", "s-nope"], NOTFOUND, "no session 's-nope'"),
    (["actions", "--session", "s-nope"], NOTFOUND, "no session 's-nope'"),
    (["actions", "--run", "99"], NOTFOUND, "no reconcile run 99"),
    # files
    (["backup", "--to", "@J@"], FAILURE, "already exists"),
]

# A command against each kind of bad file: which exit code, which words.
FILES = [
    ("missing", NOFILE, "no such file"),
    ("text", NOTJOURNAL, "not a kjournal database"),
    ("empty", NOTJOURNAL, "not a kjournal database"),
    ("other-sqlite", NOTJOURNAL, "another application"),
    ("too-new", TOONEW, "newer than this kjournal"),
    ("directory", NOTJOURNAL, "not a regular file"),
]


def make_files(d, good):
    paths = {"missing": os.path.join(d, "missing.db"), "directory": d}
    paths["text"] = os.path.join(d, "text.db")
    with open(paths["text"], "w") as f:
        f.write("hello, this is not a database\n" * 100)
    paths["empty"] = os.path.join(d, "empty.db")
    open(paths["empty"], "w").close()
    paths["other-sqlite"] = os.path.join(d, "other.db")
    c = sqlite3.connect(paths["other-sqlite"])
    c.execute("CREATE TABLE t (x)")
    c.commit()
    c.close()
    paths["too-new"] = os.path.join(d, "new.db")
    subprocess.run(["cp", good, paths["too-new"]], check=True)
    c = sqlite3.connect(paths["too-new"])
    c.execute("PRAGMA user_version = 99")
    c.commit()
    c.close()
    return paths


def args_for(cmd, d):
    return {"show": ["show", "s-bob-1"], "backup": ["backup", "--to", os.path.join(d, "b.db")],
            "prune": ["prune", "--older-than", "1d"]}.get(cmd, [cmd])


def main():
    d = kjcli.tmpdir()
    failures = []

    def expect(args, journal, code, fragment):
        rc, out, err = kjcli.run(args, journal=journal)
        if rc != code or fragment not in err or "AddressSanitizer" in err:
            failures.append("kjournal %s: exit %d (want %d), stderr %r (want %r)"
                            % (" ".join(args), rc, code, err, fragment))
        if rc == USAGE and "--help" not in err:
            failures.append("kjournal %s: a usage error should point to --help" % " ".join(args))

    try:
        j = kjcli.golden_journal(d)
        for args, code, fragment in CASES:
            expect([a.replace("@J@", j) for a in args], j, code, fragment)
        files = make_files(d, j)
        for kind, code, fragment in FILES:
            for cmd in COMMANDS:
                expect(args_for(cmd, d), files[kind], code, fragment)
        # $KJOURNAL_JOURNAL, and the default path when it is unset.
        env = kjcli.env()
        env["KJOURNAL_JOURNAL"] = j
        p = subprocess.run([kjcli.KJOURNAL, "stats"], env=env, capture_output=True, text=True)
        kjcli.check(p.returncode == 0 and j in p.stdout, "stats with $KJOURNAL_JOURNAL: %r" % p)
        if not os.path.exists("/var/lib/kjournal/journal.db"):
            rc, out, err = kjcli.run(["stats"])
            kjcli.check(rc == NOFILE and "/var/lib/kjournal/journal.db" in err,
                        "the default journal path: %d %r" % (rc, err))
        # --help: examples and exit codes, on stdout, exit 0.
        for cmd in COMMANDS:
            rc, out, err = kjcli.run([cmd, "--help"])
            if rc != 0 or "examples:" not in out or "exit codes:" not in out or err:
                failures.append("kjournal %s --help: exit %d, %r" % (cmd, rc, out[:200]))
        rc, out, err = kjcli.run(["--help"])
        for cmd in COMMANDS:
            kjcli.check(("  %s " % cmd) in out, "kjournal --help lists %s" % cmd)
        # Colour: on a terminal, and not with NO_COLOR or through a pipe.
        for no_color, want in ((None, True), ("1", False)):
            env = kjcli.env()
            if no_color:
                env["NO_COLOR"] = no_color
            master, slave = pty.openpty()
            p = subprocess.Popen([kjcli.KJOURNAL, "sessions", "--journal", j], stdout=slave,
                                 stderr=subprocess.PIPE, env=env)
            os.close(slave)
            data = b""
            while True:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                data += chunk
            p.wait()
            os.close(master)
            kjcli.check(p.returncode == 0, "sessions on a terminal")
            kjcli.check((b"\x1b[" in data) == want,
                        "colour on a terminal with NO_COLOR=%s: %r" % (no_color, data[:200]))
        rc, out, err = kjcli.run(["sessions"], journal=j)
        kjcli.check("\x1b[" not in out, "no colour through a pipe")
    finally:
        kjcli.cleanup(d)
    for f in failures:
        print("FAIL: " + f, file=sys.stderr)
    if failures:
        sys.exit(1)
    print("errors: %d cases, %d file kinds x %d commands" % (len(CASES), len(FILES), len(COMMANDS)))


if __name__ == "__main__":
    main()
