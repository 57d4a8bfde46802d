/*
 * test_ship_line.c - what kjournal ship sends for a line of Kyuubi's event
 * log (ship_line.c) and which paths under ROOT it reads (ship_state.c). Each
 * case is a row: a line, its kind, the limit, and the verdict, with strings
 * the output must hold and must not hold (the fake secrets).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tools/kjournal/ship.h"

/* Rows leave out what they do not check. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#define SECRET_CONF "\"serverConf\":{\"kyuubi.authentication.ldap.bindpw\":\"s3cr3t-LDAP-pw\"}"
#define SECRET_ENV "\"serverEnv\":{\"AWS_SECRET_ACCESS_KEY\":\"s3cr3t-aws-key\"}"
#define SERVER_INFO                                                                                \
    "{\"serverName\":\"KyuubiServer\",\"startTime\":1764390000000,\"eventTime\":1764390000500,"    \
    "\"state\":\"STARTED\",\"serverIP\":\"10.244.1.23:10009\"," SECRET_CONF "," SECRET_ENV         \
    ",\"BUILD_USER\":\"builder\",\"VERSION_INFO\":{\"KYUUBI_VERSION\":\"1.10.2\"},"                \
    "\"eventType\":\"kyuubi_server_info\"}"
#define SESSION                                                                                    \
    "{\"sessionId\":\"s1\",\"user\":\"alice\",\"serverIP\":\"10.244.1.23:10009\","                 \
    "\"startTime\":1,\"eventTime\":2,\"openedTime\":-1,\"endTime\":-1,\"exception\":null,"         \
    "\"eventType\":\"kyuubi_session\"}"

typedef struct row {
    const char *name;
    kj_ship_kind kind;
    const char *line;
    size_t max_request;
    int verdict;
    const char *code;       /* KJ_SHIP_SKIP */
    const char *has[4];     /* in the output */
    const char *has_not[4]; /* not in the output */
} row;

static const row rows[] = {
    {"session as it is", KJ_SHIP_SESSION, SESSION, 1 << 20, KJ_SHIP_SEND_RAW},
    {"blank", KJ_SHIP_SESSION, "  \t\r", 1 << 20, KJ_SHIP_BLANK},
    {"empty", KJ_SHIP_SESSION, "", 1 << 20, KJ_SHIP_BLANK},
    {"not json", KJ_SHIP_SESSION, "hello", 1 << 20, KJ_SHIP_SKIP, "not_json"},
    {"an array", KJ_SHIP_SESSION, "[1,2]", 1 << 20, KJ_SHIP_SKIP, "not_json"},
    {"server info keeps six fields",
     KJ_SHIP_SERVER_INFO,
     SERVER_INFO,
     1 << 20,
     KJ_SHIP_SEND_OUT,
     NULL,
     {"\"serverName\":\"KyuubiServer\"", "\"state\":\"STARTED\"",
      "\"serverIP\":\"10.244.1.23:10009\"", "\"eventType\":\"kyuubi_server_info\""},
     {"s3cr3t", "serverConf", "serverEnv", "BUILD_USER"}},
    {"server info without eventType gets it",
     KJ_SHIP_SERVER_INFO,
     "{\"serverName\":\"K\",\"state\":\"STOPPED\"," SECRET_ENV "}",
     1 << 20,
     KJ_SHIP_SEND_OUT,
     NULL,
     {"\"eventType\":\"kyuubi_server_info\""},
     {"s3cr3t"}},
    {"server info not json", KJ_SHIP_SERVER_INFO, "{\"serverConf\":{\"pw\":\"s3cr3t-x\"", 1 << 20,
     KJ_SHIP_SKIP, "not_json"},
    {"server info too large", KJ_SHIP_SERVER_INFO, SERVER_INFO, 100, KJ_SHIP_SKIP, "too_large"},
    {"secrets in a session file are filtered",
     KJ_SHIP_SESSION,
     "{\"sessionId\":\"s1\"," SECRET_CONF "," SECRET_ENV ",\"eventType\":\"kyuubi_session\"}",
     1 << 20,
     KJ_SHIP_SEND_OUT,
     NULL,
     {"\"sessionId\":\"s1\""},
     {"s3cr3t", "serverConf"}},
    {"huge exception cut to its message",
     KJ_SHIP_SESSION,
     "{\"sessionId\":\"s1\",\"endTime\":5,\"exception\":{\"message\":\"engine lost\","
     "\"stackTrace\":["
     "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\","
     "\"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\"]}"
     ","
     "\"eventType\":\"kyuubi_session\"}",
     150,
     KJ_SHIP_SEND_OUT,
     NULL,
     {"\"exception\":{\"message\":\"engine lost\"}", "\"endTime\":5"},
     {"stackTrace", "aaaa"}},
    {"then the conf goes",
     KJ_SHIP_SESSION,
     "{\"sessionId\":\"s1\",\"endTime\":5,\"conf\":{\"k\":"
     "\"vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv"
     "vvvvvvvv\"},"
     "\"exception\":null}",
     100,
     KJ_SHIP_SEND_OUT,
     NULL,
     {"\"endTime\":5", "\"exception\":null"},
     {"conf"}},
    {"still too large", KJ_SHIP_SESSION,
     "{\"sessionId\":"
     "\"sssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssss"
     "ssssssssssss\"}",
     50, KJ_SHIP_SKIP, "too_large"},
    {"too large and not json", KJ_SHIP_SESSION, "{\"a\":", 3, KJ_SHIP_SKIP, "not_json"},
};

static void test_rows(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        const row *r = &rows[i];
        char *out = NULL;
        const char *code = NULL;
        int v = kj_ship_line(r->kind, r->line, strlen(r->line), r->max_request, &out, &code);
        if (v != r->verdict)
            fail_msg("%s: verdict %d, expected %d", r->name, v, r->verdict);
        if (r->code && (!code || strcmp(code, r->code)))
            fail_msg("%s: code %s, expected %s", r->name, code ? code : "(none)", r->code);
        if (v == KJ_SHIP_SEND_OUT) {
            assert_non_null(out);
            if (strlen(out) > r->max_request)
                fail_msg("%s: %zu bytes over the limit %zu", r->name, strlen(out), r->max_request);
        } else {
            assert_null(out);
        }
        for (int k = 0; k < 4 && r->has[k]; k++)
            if (!out || !strstr(out, r->has[k]))
                fail_msg("%s: no %s in %s", r->name, r->has[k], out ? out : "(none)");
        for (int k = 0; k < 4 && r->has_not[k]; k++)
            if (out && strstr(out, r->has_not[k]))
                fail_msg("%s: %s in %s", r->name, r->has_not[k], out);
        free(out);
    }
}

/* A message cut inside a UTF-8 sequence would make kjournald refuse the line. */
static void test_cut_keeps_utf8(void **state)
{
    (void)state;
    size_t n = 5000 * 2 + 200;
    char *line = malloc(n + 200);
    assert_non_null(line);
    int len = sprintf(line, "{\"sessionId\":\"s1\",\"exception\":{\"message\":\"x");
    for (int i = 0; i < 5000; i++)
        len += sprintf(line + len, "\xc3\xa9");
    len += sprintf(line + len, "\",\"stackTrace\":[]}}");
    char *out = NULL;
    const char *code = NULL;
    assert_int_equal(kj_ship_line(KJ_SHIP_SESSION, line, (size_t)len, 6000, &out, &code),
                     KJ_SHIP_SEND_OUT);
    /* "x" then whole two-byte sequences only */
    const char *m = strstr(out, "\"message\":\"x");
    assert_non_null(m);
    const char *end = strchr(m + 12, '"');
    assert_int_equal((end - (m + 12)) % 2, 0);
    free(out);
    free(line);
}

static void test_rel_kind(void **state)
{
    (void)state;
    static const struct {
        const char *rel;
        int kind;
    } t[] = {
        {"kyuubi_session/day=20261201/server-kyuubi-0.json", KJ_SHIP_SESSION},
        {"kyuubi_server_info/day=20261201/server-kyuubi-0.json", KJ_SHIP_SERVER_INFO},
        {"kyuubi_operation/day=20261201/server-kyuubi-0.json", -1},
        {"kyuubi_session/20261201/server.json", -1},
        {"kyuubi_session/day=1/server.txt", -1},
        {"kyuubi_session/day=1/.json", -1},
        {"kyuubi_session/day=1/.hidden.json", -1},
        {"kyuubi_session/day=1/a/b.json", -1},
        {"kyuubi_session/../etc/x.json", -1},
        {"/kyuubi_session/day=1/a.json", -1},
        {"kyuubi_session/day=1/a\n.json", -1},
        {"", -1},
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++)
        if (kj_ship_rel_kind(t[i].rel) != t[i].kind)
            fail_msg("%s: kind %d, expected %d", t[i].rel, kj_ship_rel_kind(t[i].rel), t[i].kind);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_cut_keeps_utf8),
        cmocka_unit_test(test_rel_kind),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
