/*
 * Parsers of the Kubernetes client against the bodies recorded from a real
 * kube-apiserver (shared/fixtures/k8s), malformed answers, Retry-After and
 * times, and a fuzz loop over the response parsers.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "reconciler/kube_internal.h"

static char fixdir[4096];

static char *slurp(const char *name, size_t *len)
{
    char p[8192];
    snprintf(p, sizeof(p), "%s/%s", fixdir, name);
    char *buf = NULL;
    kj_err err = {0};
    int rc = kj_kube_read_file(p, 1 << 24, &buf, len, &err);
    if (rc < 0)
        fail_msg("%s", err.msg);
    return buf;
}

static int setup(void **state)
{
    (void)state;
    const char *shared = getenv("KJ_SHARED_DIR");
    snprintf(fixdir, sizeof(fixdir), "%s/fixtures/k8s", shared ? shared : "tests/shared");
    return 0;
}

/* Every recorded body is understood: Status, Pod, PodList, Lease, watch lines. */
static void test_every_fixture(void **state)
{
    (void)state;
    DIR *d = opendir(fixdir);
    assert_non_null(d);
    struct dirent *de;
    int seen = 0;
    while ((de = readdir(d))) {
        const char *n = de->d_name;
        if (n[0] == '.' || !strcmp(n, "README.md"))
            continue;
        size_t len;
        char *body = slurp(n, &len);
        kj_err err = {0};
        seen++;
        if (strstr(n, ".jsonl")) {
            char *line = body, *nl;
            int events = 0;
            while (line && *line) {
                nl = strchr(line, '\n');
                size_t ll = nl ? (size_t)(nl - line) : strlen(line);
                cJSON *ev = cJSON_ParseWithLength(line, ll);
                assert_non_null(ev);
                line = nl ? nl + 1 : NULL;
                events++;
                const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(ev, "type"));
                assert_non_null(type);
                if (!strcmp(type, "BOOKMARK")) {
                    /* no pod: only where the watch has got to */
                    const cJSON *md =
                        cJSON_GetObjectItem(cJSON_GetObjectItem(ev, "object"), "metadata");
                    assert_non_null(cJSON_GetStringValue(cJSON_GetObjectItem(md, "resourceVersion")));
                    cJSON_Delete(ev);
                    continue;
                }
                char *obj = cJSON_PrintUnformatted(cJSON_GetObjectItem(ev, "object"));
                kj_pod *p = NULL;
                assert_int_equal(kj_pod_parse(obj, strlen(obj), &p, &err), 0);
                assert_non_null(p->uid);
                kj_pod_free(p);
                free(obj);
                cJSON_Delete(ev);
            }
            assert_true(events > 0);
        } else if (!strncmp(n, "status-", 7)) {
            int http = atoi(n + 7);
            kj_kube_status st;
            int rc = kj_kube_status_parse(http, body, len, &st);
            assert_int_equal(st.http, http);
            assert_true(st.reason[0] != '\0');
            assert_true(st.message[0] != '\0');
            int want = http == 404                  ? KJ_ENOENT
                       : http == 409 || http == 422 ? KJ_ECONFLICT
                       : http == 401                ? KJ_EAUTH
                                                    : KJ_EHTTP;
            assert_int_equal(rc, want);
            if (http == 410) {
                assert_string_equal(st.reason, "Expired");
                assert_true(strlen(st.continue_token) > 20);
            }
        } else if (!strncmp(n, "pod-", 4)) {
            kj_pod *p = NULL;
            assert_int_equal(kj_pod_parse(body, len, &p, &err), 0);
            assert_string_equal(p->namespace_, "kyuubi");
            assert_string_equal(p->uid, "f4fe7516-4fb5-43d8-9ddc-e2c19a37ef60");
            assert_string_equal(p->unique_tag, "4f2a9c1e-8d3b-4e6f-a1c2-9b8d7e6f5a4b");
            assert_string_equal(p->app_selector, "spark-7d9e8f6a5b4c4d3e2f1a0b9c8d7e6f5a");
            assert_string_equal(p->spark_role, "driver");
            assert_int_equal(p->created_ms, kj_kube_parse_time("2026-11-29T05:40:39Z"));
            kj_pod_free(p);
        } else if (!strncmp(n, "podlist-", 8)) {
            kj_pod *pods;
            size_t np;
            char *cont;
            assert_int_equal(kj_kube_parse_pod_list(body, len, &pods, &np, &cont, &err), 0);
            assert_int_equal(np, 2);
            assert_non_null(cont);
            assert_string_equal(pods[0].spark_role, "executor");
            assert_string_equal(pods[0].phase, "Pending");
            for (size_t i = 0; i < np; i++)
                kj_pod_clear(&pods[i]);
            free(pods);
            free(cont);
        } else if (!strncmp(n, "lease-", 6)) {
            kj_lease l;
            assert_int_equal(kj_lease_parse(body, len, &l, &err), 0);
            assert_string_equal(l.holder, "kjournald-0");
            assert_string_equal(l.resource_version, "99");
            assert_int_equal(l.duration_s, 15);
            assert_int_equal(l.renew_ms, kj_kube_parse_time("2026-11-29T05:40:58Z"));
        } else {
            fail_msg("fixture %s has no test: add one", n);
        }
        free(body);
    }
    closedir(d);
    assert_true(seen >= 18);
}

static void test_pod_fields(void **state)
{
    (void)state;
    size_t len;
    kj_err err = {0};
    kj_pod *p;
    char *b = slurp("pod-driver-failed.json", &len);
    assert_int_equal(kj_pod_parse(b, len, &p, &err), 0);
    assert_string_equal(p->phase, "Failed");
    assert_string_equal(p->name, "kyuubi-user-spark-sql-alice-default-0a1b2c3d-driver");
    assert_string_equal(p->resource_version, "80");
    assert_int_equal(p->n_finalizers, 1);
    size_t idx = 9;
    assert_true(kj_pod_has_finalizer(p, "kyuubi.apache.org/pod-cleanup", &idx));
    assert_int_equal(idx, 0);
    assert_false(kj_pod_has_finalizer(p, "other", NULL));
    assert_int_equal(p->deletion_ms, 0);
    assert_int_equal(p->deletion_grace_s, -1);
    assert_int_equal(p->finished_ms, kj_kube_parse_time("2026-11-29T05:40:39Z"));
    assert_true(p->finished_ms > 0);
    kj_pod_free(p);
    free(b);

    b = slurp("pod-delete-with-finalizer.json", &len);
    assert_int_equal(kj_pod_parse(b, len, &p, &err), 0);
    assert_int_equal(p->deletion_ms, kj_kube_parse_time("2026-11-29T05:40:49Z"));
    assert_int_equal(p->deletion_grace_s, 0);
    kj_pod_free(p);
    free(b);

    b = slurp("pod-patch-last-finalizer-removed.json", &len);
    assert_int_equal(kj_pod_parse(b, len, &p, &err), 0);
    assert_int_equal(p->n_finalizers, 0);
    assert_null(p->finalizers);
    kj_pod_free(p);
    free(b);
    kj_pod_free(NULL);
}

/* Truncated, non-JSON and wrong-kind answers: clear errors, no crash. */
static void test_malformed_answers(void **state)
{
    (void)state;
    size_t len;
    kj_err err = {0};
    kj_pod *p = NULL;
    char *b = slurp("pod-driver-failed.json", &len);
    for (size_t cut = 0; cut < len; cut += 97) {
        int rc = kj_pod_parse(b, cut, &p, &err);
        assert_int_equal(rc, KJ_EPROTO);
        assert_null(p);
        assert_true(strlen(err.msg) > 0);
    }
    free(b);
    const struct {
        const char *body;
        int rc;
    } pods[] = {
        {"", KJ_EPROTO},
        {"<html>502 Bad Gateway</html>", KJ_EPROTO},
        {"[]", KJ_EPROTO},
        {"{\"kind\":\"Status\",\"code\":500}", KJ_EPROTO},
        {"{\"metadata\":{\"name\":\"x\"}}", KJ_EPROTO},
        {"{\"metadata\":{\"name\":\"x\",\"uid\":7}}", KJ_EPROTO},
        {"{\"metadata\":{\"name\":\"x\",\"uid\":\"u\",\"labels\":[1],\"finalizers\":{}},"
         "\"status\":{\"containerStatuses\":7}}",
         0},
        {"{\"metadata\":{\"name\":\"x\",\"uid\":\"u\",\"finalizers\":[1,\"a\",null],"
         "\"creationTimestamp\":\"yesterday\",\"deletionGracePeriodSeconds\":-4},"
         "\"status\":{\"phase\":3,\"containerStatuses\":[{\"state\":{\"terminated\":{"
         "\"finishedAt\":\"2026-13-01T00:00:00Z\"}}},7]}}",
         0},
    };
    for (size_t i = 0; i < sizeof(pods) / sizeof(pods[0]); i++) {
        int rc = kj_pod_parse(pods[i].body, strlen(pods[i].body), &p, &err);
        assert_int_equal(rc, pods[i].rc);
        if (rc == 0) {
            assert_int_equal(p->created_ms, 0);
            assert_null(p->phase);
            kj_pod_free(p);
        }
    }
    kj_pod *pods2;
    size_t n;
    char *cont;
    const char *lists[] = {"",
                           "{",
                           "{\"kind\":\"PodList\",\"items\":{}}",
                           "{\"kind\":\"Pod\"}",
                           "{\"kind\":\"PodList\",\"items\":[{\"metadata\":{}}]}",
                           "null"};
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++)
        assert_int_equal(
            kj_kube_parse_pod_list(lists[i], strlen(lists[i]), &pods2, &n, &cont, &err), KJ_EPROTO);
    const char *empty =
        "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"5\"},\"items\":[]}";
    assert_int_equal(kj_kube_parse_pod_list(empty, strlen(empty), &pods2, &n, &cont, &err), 0);
    assert_int_equal(n, 0);
    assert_null(cont);
    free(pods2);

    kj_kube_status st;
    const char *plain = "Too many requests, please try again later.\n";
    assert_int_equal(kj_kube_status_parse(429, plain, strlen(plain), &st), KJ_EUNAVAIL);
    assert_string_equal(st.message, "Too many requests, please try again later.");
    assert_string_equal(st.reason, "");
    char big[5000];
    memset(big, 'x', sizeof(big));
    big[10] = '\x01';
    assert_int_equal(kj_kube_status_parse(500, big, sizeof(big), &st), KJ_EHTTP);
    assert_true(strlen(st.message) <= 200);
    assert_null(strchr(st.message, '\x01'));
    assert_int_equal(kj_kube_status_parse(503, NULL, 0, &st), KJ_EUNAVAIL);
    assert_int_equal(kj_kube_status_parse(404, "{\"kind\":\"Stat", 13, &st), KJ_ENOENT);
    assert_int_equal(kj_kube_status_parse(403, "{}", 2, &st), KJ_EAUTH);
    assert_int_equal(kj_kube_status_parse(200, "{}", 2, &st), 0);
    assert_int_equal(kj_kube_http_error(422), KJ_ECONFLICT);
    assert_int_equal(kj_kube_http_error(504), KJ_EUNAVAIL);
    assert_int_equal(kj_kube_http_error(418), KJ_EHTTP);

    kj_lease l;
    assert_int_equal(kj_lease_parse("{\"kind\":\"Pod\"}", 14, &l, &err), KJ_EPROTO);
    assert_int_equal(kj_lease_parse("nope", 4, &l, &err), KJ_EPROTO);
}

static void test_retry_after(void **state)
{
    (void)state;
    const int64_t now = kj_kube_parse_time("2026-11-29T05:40:00Z");
    const struct {
        const char *v;
        int64_t ms;
    } t[] = {
        {"0", 0},
        {"1", 1000},
        {" 3\r\n", 3000},
        {"10", 10000},
        {"11", 10000},
        {"86400", 10000},
        {"99999999999999999999999999999", 10000},
        {"-1", 1000},
        {"1.5", 1000},
        {"", 1000},
        {"soon", 1000},
        {"5s", 1000},
        {"Sun, 29 Nov 2026 05:40:04 GMT", 4000},
        {"Sun, 29 Nov 2026 05:30:00 GMT", 0},
        {"Sun, 29 Nov 2027 05:40:04 GMT", 10000},
        {"Sun, 29 Nov 2026 05:40:04 CET", 1000},
        {NULL, 1000},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        int64_t got = kj_kube_retry_after_ms(t[i].v, now);
        if (got != t[i].ms)
            fail_msg("Retry-After '%s': got %lld, want %lld", t[i].v ? t[i].v : "(null)",
                     (long long)got, (long long)t[i].ms);
    }
}

static void test_times(void **state)
{
    (void)state;
    const struct {
        const char *s;
        int64_t ms;
    } t[] = {
        {"1970-01-01T00:00:00Z", 0},
        {"1970-01-01T00:00:01.5Z", 1500},
        {"1970-01-01T00:00:01.123456Z", 1123},
        {"1970-01-01T01:00:00+01:00", 0},
        {"1970-01-01T00:00:00-00:30", 1800000},
        {"2026-11-29T05:40:39Z", 1795930839000LL},
        {"2026-11-29T05:40:39", -1},
        {"2026-11-29", -1},
        {"2026-11-29T05:40:39.Z", -1},
        {"2026-11-29T05:40:39Zjunk", -1},
        {"garbage-garbage-garbage", -1},
        {"", -1},
        {NULL, -1},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (kj_kube_parse_time(t[i].s) != t[i].ms)
            fail_msg("time '%s': got %lld", t[i].s ? t[i].s : "(null)",
                     (long long)kj_kube_parse_time(t[i].s));
}

static void test_bodies(void **state)
{
    (void)state;
    char *b = kj_kube_delete_body("u-1", NULL, 0, "Background");
    assert_string_equal(b, "{\"kind\":\"DeleteOptions\",\"apiVersion\":\"v1\",\"preconditions\":{"
                           "\"uid\":\"u-1\"},\"gracePeriodSeconds\":0,\"propagationPolicy\":"
                           "\"Background\"}");
    free(b);
    b = kj_kube_delete_body(NULL, NULL, -1, NULL);
    assert_string_equal(b, "{\"kind\":\"DeleteOptions\",\"apiVersion\":\"v1\"}");
    free(b);
    kj_lease l = {0}, back;
    kj_err err = {0};
    snprintf(l.name, sizeof(l.name), "kjournal-reconciler");
    snprintf(l.holder, sizeof(l.holder), "kjournald-0");
    snprintf(l.resource_version, sizeof(l.resource_version), "99");
    l.duration_s = 15;
    l.renew_ms = 1795930839123LL;
    b = kj_kube_lease_body(&l, "kyuubi", 1);
    assert_non_null(strstr(b, "\"renewTime\":\"2026-11-29T05:40:39.123000Z\""));
    assert_int_equal(kj_lease_parse(b, strlen(b), &back, &err), 0);
    assert_string_equal(back.holder, "kjournald-0");
    assert_string_equal(back.namespace_, "kyuubi");
    assert_int_equal(back.renew_ms, l.renew_ms);
    free(b);
    assert_true(kj_kube_patch_has_test("[{\"op\":\"test\",\"path\":\"/a\",\"value\":1},"
                                       "{\"op\":\"remove\",\"path\":\"/a\"}]"));
    assert_false(kj_kube_patch_has_test("[{\"op\":\"remove\",\"path\":\"/a\"}]"));
    assert_false(kj_kube_patch_has_test("{\"op\":\"test\"}"));
    assert_false(kj_kube_patch_has_test("not json"));
}

/* Random mutations of the recorded bodies through every response parser. */
static void test_fuzz_responses(void **state)
{
    (void)state;
    const char *files[] = {"pod-driver-failed.json", "podlist-page1.json",
                           "status-410-expired.json", "lease-created.json",
                           "status-422-finalizer-on-terminating.json"};
    size_t lens[5];
    char *bodies[5];
    for (int i = 0; i < 5; i++)
        bodies[i] = slurp(files[i], &lens[i]);
    srand(42);
    const char tokens[] = "{}[]\":,0-9eE.\\ntfu\x00\xff";
    for (int it = 0; it < 3000; it++) {
        int w = rand() % 5;
        size_t len = lens[w];
        char *m = malloc(len + 64);
        memcpy(m, bodies[w], len);
        int nmut = 1 + rand() % 8;
        for (int k = 0; k < nmut && len > 0; k++) {
            size_t at = (size_t)rand() % len;
            switch (rand() % 4) {
            case 0:
                m[at] = tokens[rand() % (sizeof(tokens) - 1)];
                break;
            case 1:
                m[at] = (char)(rand() & 0xff);
                break;
            case 2:
                len = at;
                break;
            default:
                if (len + 1 < lens[w] + 64) {
                    memmove(m + at + 1, m + at, len - at);
                    m[at] = tokens[rand() % (sizeof(tokens) - 1)];
                    len++;
                }
            }
        }
        kj_err err = {0};
        kj_pod *p = NULL;
        if (kj_pod_parse(m, len, &p, &err) == 0)
            kj_pod_free(p);
        kj_pod *pods;
        size_t n;
        char *cont;
        if (kj_kube_parse_pod_list(m, len, &pods, &n, &cont, &err) == 0) {
            for (size_t i = 0; i < n; i++)
                kj_pod_clear(&pods[i]);
            free(pods);
            free(cont);
        }
        kj_kube_status st;
        kj_kube_status_parse(400 + rand() % 200, m, len, &st);
        assert_true(strlen(st.message) < sizeof(st.message));
        kj_lease l;
        kj_lease_parse(m, len, &l, &err);
        free(m);
    }
    for (int i = 0; i < 5; i++)
        free(bodies[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_fixture),
        cmocka_unit_test(test_pod_fields),
        cmocka_unit_test(test_malformed_answers),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_times),
        cmocka_unit_test(test_bodies),
        cmocka_unit_test(test_fuzz_responses),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
