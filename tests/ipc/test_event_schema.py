"""schema/event.schema.json agrees with the decoder: its examples are valid,
and the native event-level cases of tests/e2e/ingest_bad_inputs.json that a
schema can express are invalid. Needs the jsonschema module (skipped, exit
77, without it)."""
import json
import os
import sys

try:
    import jsonschema
except ImportError:
    print("skip: no jsonschema module")
    sys.exit(77)

src = os.environ.get("KJ_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
with open(os.path.join(src, "schema", "event.schema.json")) as f:
    schema = json.load(f)
jsonschema.Draft202012Validator.check_schema(schema)
v = jsonschema.Draft202012Validator(schema)
for ex in schema["examples"]:
    errs = list(v.iter_errors(ex))
    assert not errs, "example invalid: %s" % errs
with open(os.path.join(src, "tests", "e2e", "ingest_bad_inputs.json")) as f:
    cases = json.load(f)["cases"]
n = 0
for c in cases:
    if c["level"] != "event" or c["code"] in ("duplicate_field",) or not isinstance(c["frames"][0], str):
        continue
    doc = json.loads(c["frames"][0])
    if "eventType" in doc or "events" in doc:
        continue
    assert list(v.iter_errors(doc)), "schema accepts bad case %r" % c["name"]
    n += 1
assert n >= 10, n
print("ok: schema examples valid, %d bad native cases invalid" % n)
