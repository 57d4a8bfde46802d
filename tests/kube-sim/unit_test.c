/*
 * Unit tests of kube-sim's parsers, as tables: label and field selectors
 * (matching and apimachinery's error messages), the three patch types, Go's
 * encoding/json syntax errors, and continue-token base64url.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tools/kube-sim/sim.h"

typedef struct {
    const char *sel;
    const char *labels; /* "k=v,k=v" */
    int match;          /* -1: parse error */
    const char *err;    /* expected message, or NULL */
} label_case;

static const label_case label_cases[] = {
    {"", "a=1", 1, NULL},
    {"a", "a=1", 1, NULL},
    {"a", "b=1", 0, NULL},
    {"!a", "b=1", 1, NULL},
    {"!a", "a=1", 0, NULL},
    {"a=1", "a=1", 1, NULL},
    {"a==1", "a=1", 1, NULL},
    {"a!=1", "a=1", 0, NULL},
    {"a!=1", "b=1", 1, NULL},
    {"a in (1,2)", "a=2", 1, NULL},
    {"a in (1,2)", "a=3", 0, NULL},
    {"a notin (1,2)", "a=3", 1, NULL},
    {"a notin (1,2)", "b=3", 1, NULL},
    {"a,b", "a=1,b=2", 1, NULL},
    {"a,!b", "a=1,b=2", 0, NULL},
    {" a = 1 , b in (x) ", "a=1,b=x", 1, NULL},
    {"a>5", "a=7", 1, NULL},
    {"a<5", "a=7", 0, NULL},
    {"a=", "a=", 1, NULL},
    {"in in (in)", "in=in", 1, NULL},
    {"kyuubi-unique-tag in (a,b", "", -1,
     "unable to parse requirement: found '', expected: ',' or ')'"},
    {"a in b", "", -1, "unable to parse requirement: found 'b' expected: '('"},
    {"a,", "", -1, "found '', expected: identifier after ','"},
    {"a b", "", -1,
     "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"},
    {"a=1 b", "", -1, "found 'b', expected: ',' or 'end of string'"},
    {"=a", "", -1, "found '=', expected: !, identifier, or 'end of string'"},
    {"a===b", "", -1, NULL},
    {"a>x", "", -1, NULL},
    {"-bad", "", -1, NULL},
    {"example.com/app=x", "example.com/app=x", 1, NULL},
};

static void pack(const char *labels, ks_labels *out, char *buf, size_t n)
{
    /* "k=v,k=v" -> "k\0v\0k\0v\0" */
    size_t at = 0;
    out->n = 0;
    out->packed = buf;
    for (const char *p = labels; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        assert_non_null(eq);
        at += (size_t)snprintf(buf + at, n - at, "%.*s", (int)(eq - p), p) + 1;
        at +=
            (size_t)snprintf(buf + at, n - at, "%.*s", (int)(len - (size_t)(eq - p) - 1), eq + 1) +
            1;
        out->n++;
        p += len + (end ? 1 : 0);
    }
}

static void test_label_selectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof label_cases / sizeof label_cases[0]; i++) {
        const label_case *c = &label_cases[i];
        ks_labelsel *sel = NULL;
        char *err = NULL;
        int rc = ks_labelsel_parse(c->sel, &sel, &err);
        if (c->match < 0) {
            if (rc == 0)
                fail_msg("selector '%s' parsed, want an error", c->sel);
            if (c->err && strcmp(err, c->err))
                fail_msg("selector '%s': error '%s', want '%s'", c->sel, err, c->err);
            free(err);
            continue;
        }
        if (rc)
            fail_msg("selector '%s': %s", c->sel, err);
        char buf[256];
        ks_labels l;
        pack(c->labels, &l, buf, sizeof buf);
        if (ks_labelsel_match(sel, &l) != c->match)
            fail_msg("selector '%s' on '%s': want %d", c->sel, c->labels, c->match);
        ks_labelsel_free(sel);
    }
}

static const char *const fields[] = {"metadata.name", "status.phase", NULL};

static const char *get_field(const void *obj, const char *field)
{
    const char *const *kv = obj;
    return !strcmp(field, "metadata.name") ? kv[0] : kv[1];
}

static void test_field_selectors(void **state)
{
    (void)state;
    struct {
        const char *sel, *name, *phase;
        int match;
        const char *err;
    } cases[] = {
        {"metadata.name=a", "a", "Running", 1, NULL},
        {"metadata.name==a", "b", "Running", 0, NULL},
        {"metadata.name!=a", "b", "Running", 1, NULL},
        {"metadata.name=a,status.phase=Failed", "a", "Failed", 1, NULL},
        {"status.phase=", "a", NULL, 1, NULL},
        {"metadata.name=a\\,b", "a,b", NULL, 1, NULL},
        {"spec.bogus=x", "", "", -1, "field label not supported: spec.bogus"},
        {"nonsense", "", "", -1, "invalid selector: 'nonsense'; can't understand 'nonsense'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ks_fieldsel *sel = NULL;
        char *err = NULL;
        int rc = ks_fieldsel_parse(cases[i].sel, fields, &sel, &err);
        if (cases[i].match < 0) {
            assert_int_not_equal(rc, 0);
            assert_string_equal(err, cases[i].err);
            free(err);
            continue;
        }
        assert_int_equal(rc, 0);
        const char *obj[2] = {cases[i].name, cases[i].phase};
        if (ks_fieldsel_match(sel, get_field, obj) != cases[i].match)
            fail_msg("field selector '%s': want %d", cases[i].sel, cases[i].match);
        ks_fieldsel_free(sel);
    }
}

typedef struct {
    int type; /* 1 json, 2 merge, 3 strategic */
    const char *doc, *patch;
    int rc;
    const char *want; /* the document after, compact */
} patch_case;

static const patch_case patch_cases[] = {
    {1, "{\"m\":{\"f\":[\"a\",\"b\"]}}", "[{\"op\":\"remove\",\"path\":\"/m/f/0\"}]", 0,
     "{\"m\":{\"f\":[\"b\"]}}"},
    {1, "{\"m\":{\"f\":[\"a\"]}}", "[{\"op\":\"add\",\"path\":\"/m/f/-\",\"value\":\"x\"}]", 0,
     "{\"m\":{\"f\":[\"a\",\"x\"]}}"},
    {1, "{\"m\":{\"f\":[\"a\"]}}", "[{\"op\":\"add\",\"path\":\"/m/f/0\",\"value\":\"x\"}]", 0,
     "{\"m\":{\"f\":[\"x\",\"a\"]}}"},
    {1, "{\"m\":{\"f\":[\"a\"]}}",
     "[{\"op\":\"test\",\"path\":\"/m/f/0\",\"value\":\"a\"},{\"op\":\"remove\",\"path\":\"/m/f/"
     "0\"}]",
     0, "{\"m\":{\"f\":[]}}"},
    {1, "{\"m\":{\"f\":[\"a\"]}}", "[{\"op\":\"test\",\"path\":\"/m/f/0\",\"value\":\"b\"}]", 422,
     NULL},
    {1, "{\"m\":{}}", "[{\"op\":\"remove\",\"path\":\"/m/x\"}]", 422, NULL},
    {1, "{\"m\":{}}", "[{\"op\":\"replace\",\"path\":\"/m/x\",\"value\":1}]", 422, NULL},
    {1, "{\"a/b\":1,\"c~d\":2}",
     "[{\"op\":\"replace\",\"path\":\"/a~1b\",\"value\":3},{\"op\":\"remove\",\"path\":\"/c~0d\"}]",
     0, "{\"a/b\":3}"},
    {1, "{\"a\":1}",
     "[{\"op\":\"move\",\"from\":\"/a\",\"path\":\"/b\"},{\"op\":\"copy\",\"from\":\"/"
     "b\",\"path\":\"/c\"}]",
     0, "{\"b\":1,\"c\":1}"},
    {1, "{}", "not json", 400, NULL},
    {1, "{}", "{\"op\":\"add\"}", 400, NULL},
    {1, "{}", "[{\"op\":\"frob\",\"path\":\"/a\"}]", 422, NULL},
    {1, "{\"f\":[1]}", "[{\"op\":\"add\",\"path\":\"/f/5\",\"value\":1}]", 422, NULL},
    {2, "{\"m\":{\"l\":{\"a\":\"1\",\"b\":\"2\"}}}", "{\"m\":{\"l\":{\"a\":null,\"c\":\"3\"}}}", 0,
     "{\"m\":{\"l\":{\"b\":\"2\",\"c\":\"3\"}}}"},
    {2, "{\"m\":{\"f\":[\"a\",\"b\"]}}", "{\"m\":{\"f\":[\"c\"]}}", 0, "{\"m\":{\"f\":[\"c\"]}}"},
    {2, "{}", "[]", 400, NULL},
    {3, "{\"metadata\":{\"finalizers\":[\"a\",\"b\"]}}",
     "{\"metadata\":{\"$deleteFromPrimitiveList/finalizers\":[\"a\"]}}", 0,
     "{\"metadata\":{\"finalizers\":[\"b\"]}}"},
    {3, "{\"metadata\":{\"finalizers\":[\"a\"]}}", "{\"metadata\":{\"finalizers\":[\"b\",\"a\"]}}",
     0, "{\"metadata\":{\"finalizers\":[\"a\",\"b\"]}}"},
    {3, "{\"metadata\":{\"finalizers\":[\"a\"]}}",
     "{\"metadata\":{\"$setElementOrder/finalizers\":[\"a\"],\"labels\":{\"x\":\"1\"}}}", 0,
     "{\"metadata\":{\"finalizers\":[\"a\"],\"labels\":{\"x\":\"1\"}}}"},
    {3,
     "{\"spec\":{\"containers\":[{\"name\":\"a\",\"image\":\"1\"},{\"name\":\"b\",\"image\":\"2\"}]"
     "}}",
     "{\"spec\":{\"containers\":[{\"name\":\"b\",\"image\":\"3\"}]}}", 0,
     "{\"spec\":{\"containers\":[{\"name\":\"a\",\"image\":\"1\"},{\"name\":\"b\",\"image\":\"3\"}]"
     "}}"},
    {3, "{\"spec\":{\"containers\":[{\"name\":\"a\"},{\"name\":\"b\"}]}}",
     "{\"spec\":{\"containers\":[{\"name\":\"a\",\"$patch\":\"delete\"}]}}", 0,
     "{\"spec\":{\"containers\":[{\"name\":\"b\"}]}}"},
    {3, "{\"status\":{\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}}",
     "{\"status\":{\"conditions\":[{\"type\":\"Ready\",\"status\":\"False\"}],\"phase\":\"Failed\"}"
     "}",
     0,
     "{\"status\":{\"conditions\":[{\"type\":\"Ready\",\"status\":\"False\"}],\"phase\":\"Failed\"}"
     "}"},
    {3, "{\"spec\":{\"tolerations\":[{\"key\":\"a\"}]}}",
     "{\"spec\":{\"tolerations\":[{\"key\":\"b\"}]}}", 0,
     "{\"spec\":{\"tolerations\":[{\"key\":\"b\"}]}}"},
    {3, "{\"spec\":{\"containers\":[{\"name\":\"a\"}]}}",
     "{\"spec\":{\"containers\":[{\"image\":\"x\"}]}}", 422, NULL},
    {3, "{\"m\":{\"a\":1,\"b\":2}}", "{\"m\":{\"$patch\":\"replace\",\"c\":3}}", 0,
     "{\"m\":{\"c\":3}}"},
};

static void test_patches(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof patch_cases / sizeof patch_cases[0]; i++) {
        const patch_case *c = &patch_cases[i];
        cJSON *doc = cJSON_Parse(c->doc);
        char *err = NULL;
        size_t n = strlen(c->patch);
        int rc = c->type == 1   ? ks_json_patch(&doc, c->patch, n, &err)
                 : c->type == 2 ? ks_merge_patch(&doc, c->patch, n, &err)
                                : ks_strategic_patch(&doc, c->patch, n, &err);
        if (rc != c->rc)
            fail_msg("patch %zu (%s): rc %d, want %d (%s)", i, c->patch, rc, c->rc, err ? err : "");
        if (c->want) {
            char *got = cJSON_PrintUnformatted(doc);
            if (strcmp(got, c->want))
                fail_msg("patch %zu: %s, want %s", i, got, c->want);
            free(got);
        } else {
            assert_non_null(err);
        }
        free(err);
        cJSON_Delete(doc);
    }
}

static void test_go_json_errors(void **state)
{
    (void)state;
    struct {
        const char *in, *want;
    } cases[] = {
        {"{\"a\":1}", NULL},
        {" [1, 2.5e3, -0, \"x\\u00e9\", true, false, null] ", NULL},
        {"not json", "invalid character 'o' in literal null (expecting 'u')"},
        {"", "unexpected end of JSON input"},
        {"{", "unexpected end of JSON input"},
        {"{\"a\" 1}", "invalid character '1' after object key"},
        {"{\"a\":1 \"b\"}", "invalid character '\"' after object key:value pair"},
        {"[1 2]", "invalid character '2' after array element"},
        {"{1:2}", "invalid character '1' looking for beginning of object key string"},
        {"x", "invalid character 'x' looking for beginning of value"},
        {"{} x", "invalid character 'x' after top-level value"},
        {"01", "invalid character '1' after top-level value"},
        {"\"\\q\"", "invalid character 'q' in string escape code"},
        {"[-]", "invalid character ']' in numeric literal"},
        {"tru", "unexpected end of JSON input"},
        {"\"a\nb\"", "invalid character '\\n' in string literal"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *got = ks_go_json_error(cases[i].in, strlen(cases[i].in));
        if (!cases[i].want && got)
            fail_msg("'%s': unexpected error %s", cases[i].in, got);
        if (cases[i].want && (!got || strcmp(got, cases[i].want)))
            fail_msg("'%s': '%s', want '%s'", cases[i].in, got ? got : "(none)", cases[i].want);
        free(got);
    }
}

static void test_base64url(void **state)
{
    (void)state;
    const char *tok = "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6ODcsInN0YXJ0IjoiZXhlYy0yXHUwMDAwIn0";
    size_t n = 0, bad = 0;
    char *raw = ks_b64url_decode(tok, &n, &bad);
    assert_non_null(raw);
    assert_string_equal(raw, "{\"v\":\"meta.k8s.io/v1\",\"rv\":87,\"start\":\"exec-2\\u0000\"}");
    char *again = ks_b64url_encode(raw, n);
    assert_string_equal(again, tok);
    free(raw);
    free(again);
    assert_null(ks_b64url_decode("ab%d", &n, &bad));
    assert_int_equal(bad, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_label_selectors), cmocka_unit_test(test_field_selectors),
        cmocka_unit_test(test_patches),         cmocka_unit_test(test_go_json_errors),
        cmocka_unit_test(test_base64url),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
