"""Golden output: every command in every format on a journal built with fixed
events and times (golden/cases.txt). KJ_REGEN_GOLDEN=1 rewrites the files.

Values that cannot be fixed are masked: the test's directory (@DIR@), file
sizes (@SIZE@) and the cutoff prune computes from the clock (@NOW@).
"""
import os
import re
import shlex
import shutil
import sys

import kjcli

GOLDEN = os.path.join(kjcli.HERE, "golden")
REGEN = os.environ.get("KJ_REGEN_GOLDEN") == "1"

SIZE_KEYS = ("file_bytes", "wal_bytes", "bytes")
SIZE_TITLES = ("file size", "wal size", "size")
TIME_KEYS = ("closed_before",)
TIME_TITLES = ("closed before",)
ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def mask(text):
    # json / json-pretty
    text = re.sub(r'"(%s)": \d+' % "|".join(SIZE_KEYS), r'"\1": @SIZE@', text)
    text = re.sub(r'"(%s)": "%s"' % ("|".join(TIME_KEYS), ISO), r'"\1": "@NOW@"', text)
    # short: "title   value" lines
    text = re.sub(r"(?m)^((?:%s) +)\S.*$" % "|".join(SIZE_TITLES), r"\1@SIZE@", text)
    text = re.sub(r"(?m)^((?:%s) +)%s$" % ("|".join(TIME_TITLES), ISO), r"\1@NOW@", text)
    # csv: a header naming the columns, then rows
    lines = text.split("\n")
    for i, line in enumerate(lines):
        cols = line.split(",")
        hits = [k for k, c in enumerate(cols) if c in SIZE_KEYS + TIME_KEYS]
        if not hits:
            continue
        j = i + 1
        while j < len(lines) and lines[j]:
            row = lines[j].split(",")
            for k in hits:
                if k < len(row):
                    row[k] = "@NOW@" if cols[k] in TIME_KEYS else "@SIZE@"
            lines[j] = ",".join(row)
            j += 1
    return "\n".join(lines)


def cases():
    with open(os.path.join(GOLDEN, "cases.txt")) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, code, args = line.split(None, 2)
            yield name, int(code), args


def main():
    d = kjcli.tmpdir()
    failed = []
    try:
        master = kjcli.golden_journal(d, "master.db")
        seen = set()
        for name, code, args in cases():
            seen.add(name + ".out")
            # Every case reads its own copy: prune and backup change things.
            j = os.path.join(d, "j.db")
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(j + suffix):
                    os.unlink(j + suffix)
            shutil.copy(master, j)
            for f in os.listdir(d):
                if f.startswith("backup-"):
                    os.unlink(os.path.join(d, f))
            argv = shlex.split(args.replace("@DIR@", d))
            rc, out, err = kjcli.run(argv, journal=j)
            got = "$ kjournal %s\n%s" % (args, out)
            if err:
                got += "--- stderr\n" + err
            got += "--- exit %d\n" % rc
            got = mask(got.replace(d, "@DIR@"))
            path = os.path.join(GOLDEN, name + ".out")
            if rc != code:
                failed.append("%s: exit %d, want %d\n%s" % (name, rc, code, got))
                continue
            if REGEN:
                with open(path, "w") as f:
                    f.write(got)
                continue
            want = open(path).read() if os.path.exists(path) else "(no golden file)\n"
            if got != want:
                failed.append("%s: output differs from golden/%s.out\n--- want\n%s--- got\n%s"
                              % (name, name, want, got))
        stale = [f for f in os.listdir(GOLDEN) if f.endswith(".out") and f not in seen]
        if stale:
            failed.append("golden files without a case: %s" % ", ".join(sorted(stale)))
    finally:
        kjcli.cleanup(d)
    for f in failed:
        print("FAIL: " + f, file=sys.stderr)
    if failed:
        print("%d golden case(s) failed; KJ_REGEN_GOLDEN=1 rewrites them" % len(failed),
              file=sys.stderr)
        sys.exit(1)
    print("golden: all cases match" if not REGEN else "golden: files rewritten")


if __name__ == "__main__":
    main()
