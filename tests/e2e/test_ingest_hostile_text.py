"""Issue 10 item 6: text that would act on a terminal.

Raw control characters inside a Kyuubi line are refused on the wire (they
are not JSON). What JSON allows through, C1 controls (U+009B is a CSI to many
terminals), bidirectional overrides, zero-width characters, reaches the
journal as data and must come out of every human-readable format of
`kjournal` (short, csv) as visible escapes; JSON stays lossless and escapes
them too. A journal written before the fix may hold raw ESC bytes in a
payload: the same goes for them."""
import json
import os
import re
import shutil
import sqlite3
import subprocess

import ingestlib as L
import kjtest

C1_CSI, RLO, LRI, ZWSP, NEL = "\u009b", "\u202e", "\u2066", "\u200b", "\u0085"
USER = "mallory" + RLO + "txt.exe" + LRI + ZWSP
INSTANCE = "host" + NEL + C1_CSI + "31m:10009"
# Raw bytes a terminal would act on: C0 but \n, DEL, C1 (UTF-8 C2 80..9F),
# bidi controls, zero-width, line/paragraph separators, BOM.
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")

work = kjtest.tmpdir("kj-hostile-")
d = L.Daemon(work).start()
try:
    req = L.connect(d.endpoint)
    # a raw ESC inside a Kyuubi line: refused as a whole, nothing stored
    raw = ('{"eventType":"kyuubi_session","sessionId":"k-raw","startTime":1764391200000,'
           '"conf":{"x":"\x1b]0;owned\x07\x1b[2J"}}').encode()
    r = L.request(req, raw)
    L.check(r["ok"] is False and r["error"]["code"] == "bad_json" and "0x1b" in r["error"]["message"],
            "raw ESC refused: %r" % r)
    L.check(L.last_seq(d.journal)[1] == 0, "nothing stored")
    # what JSON allows: escaped, or raw C1 / bidi (well-formed UTF-8)
    r = L.request(req, L.event("e1", "s-hostile", user=USER, instance=INSTANCE,
                               engine={"tag": "t" + RLO + "1"}))
    L.check(r["results"][0]["status"] == "stored", "native event stored: %r" % r)
    kyuubi = ('{"eventType":"kyuubi_session","sessionId":"k-1","user":"bob' + RLO + '",'
              '"startTime":1764391200000,"conf":{"x":"' + C1_CSI + '2J\\u001b[31m\\u009b"}}')
    r = L.request(req, kyuubi.encode())
    L.check(r["results"][0]["status"] == "stored", "Kyuubi event stored: %r" % r)
finally:
    code = d.stop()
L.check(code == 0, "exit 0 after SIGTERM, got %r" % code)

# A journal from before the fix: a raw ESC and BEL in a stored payload.
con = sqlite3.connect(d.journal)
con.execute("UPDATE events SET payload = ? WHERE event_id = 'e1'",
            ('{"event_id":"e1","user":"\x1b]0;owned\x07\x1b[2J\x1b[31m"}',))
con.commit()
con.close()

kj = kjtest.program("kjournal")


def run(*args):
    p = subprocess.run([kj] + list(args) + ["--journal", d.journal], capture_output=True,
                       timeout=60, env=dict(os.environ, TZ="UTC"))
    L.check(p.returncode == 0, "%s: exit %d %r" % (args, p.returncode, p.stderr))
    return p.stdout.decode("utf-8")


outputs = {
    "sessions short": run("sessions"),
    "sessions csv": run("sessions", "-o", "csv"),
    "events short": run("events"),
    "events csv": run("events", "-o", "csv"),
    "show short": run("show", "s-hostile"),
    "show csv": run("show", "s-hostile", "-o", "csv"),
    "stats short": run("stats"),
    "stats csv": run("stats", "-o", "csv"),
}
for name, text in outputs.items():
    bad = UNSAFE.search(text)
    if bad:
        L.check(False, "%s: raw %r at %d in %r" % (name, bad.group(), bad.start(), text))
L.check("mallory\\u202etxt.exe\\u2066\\u200b" in outputs["sessions short"], "user shown escaped")
L.check("host\\u0085\\u009b31m:10009" in outputs["sessions csv"], "instance shown escaped")
L.check("\\x1b]0;owned\\x07\\x1b[2J" in outputs["events csv"], "old raw ESC in a payload shown escaped")
L.check("\\u009b2J" in outputs["events csv"], "raw C1 in a Kyuubi payload shown escaped")

# JSON: still the exact values, and no raw C1 or bidi on the way either
js = run("sessions", "-o", "json")
L.check(UNSAFE.search(js) is None, "json output escapes them too: %r" % js)
users = {json.loads(l)["session_id"]: json.loads(l)["user"] for l in js.splitlines() if l.strip()}
L.check(users["s-hostile"] == USER and users["k-1"] == "bob" + RLO, "json is lossless: %r" % users)
print("ok: hostile text escaped in short and csv, lossless in json")
shutil.rmtree(work, ignore_errors=True)
