/*
 * test_server.c - the server and the publisher in one process: a server
 * thread on an ipc:// endpoint, kj_publisher with a window and batches,
 * the on_committed hook (what the reconciler will use), stats, stop, and a
 * publisher facing nobody.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "ipc/ipc.h"

/* How long a publisher here waits for an answer before it sends again: a
 * resent request turns "stored" into "duplicate", so it must not happen
 * because a busy machine (ASan, a load of 10) is slow to answer. */
#define ANSWER_MS 120000

typedef struct hook {
    size_t calls, events, stored, closes;
} hook;

static void on_committed(const kj_event *ev, const kj_append_result *res, size_t n, void *ud)
{
    hook *h = ud;
    h->calls++;
    h->events += n;
    for (size_t i = 0; i < n; i++) {
        h->stored += res[i].status == KJ_APPEND_STORED;
        h->closes += res[i].status == KJ_APPEND_STORED && ev[i].type == KJ_EVENT_SESSION_CLOSE;
    }
}

static void *serve(void *arg)
{
    kj_err err = {0};
    return (void *)(intptr_t)kj_ipc_server_run(arg, &err);
}

static void test_publish_roundtrip(void **state)
{
    (void)state;
    char dir[] = "/tmp/kj-ipc-server.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char db[256], ep[256];
    snprintf(db, sizeof db, "%s/j.db", dir);
    snprintf(ep, sizeof ep, "ipc://%s/run/kj.sock", dir);
    kj_journal *j = NULL;
    kj_err err = {0};
    assert_int_equal(kj_journal_open(db, 0, &j, &err), 0);

    hook h = {0};
    const char *eps[] = {ep};
    kj_ipc_server_opts o = kj_ipc_server_defaults();
    o.endpoints = eps;
    o.n_endpoints = 1;
    o.on_committed = on_committed;
    o.ud = &h;
    kj_ipc_server *srv = NULL;
    assert_int_equal(kj_ipc_server_new(j, &o, &srv, &err), 0);
    char sockdir[300];
    snprintf(sockdir, sizeof sockdir, "%s/run", dir);
    struct stat sb;
    assert_int_equal(stat(sockdir, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, serve, srv), 0);

    /* 100 sessions opened and closed, one not JSON, one duplicate, one bad time */
    enum { N = 203 };
    char *ev[N];
    for (int i = 0; i < 200; i++) {
        ev[i] = malloc(256);
        snprintf(ev[i], 256,
                 "{\"event_id\":\"e%d\",\"type\":\"%s\",\"session_id\":\"s%d\","
                 "\"time_ms\":%lld}",
                 i, i % 2 ? "session_close" : "session_open", i / 2, 1764391200000LL + i);
    }
    ev[200] = strdup("this is not json");
    ev[201] = strdup(ev[0]);
    ev[202] = strdup("{\"event_id\":\"late\",\"type\":\"session_open\",\"session_id\":\"x\","
                     "\"time_ms\":5}");
    kj_publisher_opts po = kj_publisher_defaults();
    po.window = 4;
    po.batch = 7;
    po.timeout_ms = ANSWER_MS;
    kj_publisher *p = NULL;
    assert_int_equal(kj_publisher_new(ep, &po, &p, &err), 0);
    kj_publish_result res[N];
    assert_int_equal(kj_publisher_publish(p, (const char *const *)ev, N, res, &err), 0);
    for (int i = 0; i < 200; i++) {
        assert_int_equal(res[i].status, KJ_APPEND_STORED);
        char id[16];
        snprintf(id, sizeof id, "e%d", i);
        assert_string_equal(res[i].event_id, id);
        assert_true(res[i].latency_ms > 0);
    }
    assert_int_equal(res[200].status, KJ_APPEND_REJECTED);
    assert_string_equal(res[200].code, "bad_json");
    assert_int_equal(res[201].status, KJ_APPEND_DUPLICATE);
    assert_int_equal(res[202].status, KJ_APPEND_REJECTED);
    assert_string_equal(res[202].code, "bad_time");
    kj_publisher_destroy(p);

    kj_ipc_server_stop(srv);
    void *rc;
    pthread_join(t, &rc);
    assert_int_equal((intptr_t)rc, 0);
    /* the hook saw every event that reached the journal, after its commit */
    assert_int_equal(h.stored, 200);
    assert_int_equal(h.closes, 100);
    assert_int_equal(h.events, 201); /* + the duplicate; decoder rejections never reach it */
    assert_true(h.calls >= 1);
    kj_ipc_stats st;
    kj_ipc_server_stats(srv, &st);
    assert_int_equal(st.events_stored, 200);
    assert_int_equal(st.events_duplicate, 1);
    assert_int_equal(st.events_rejected, 1);
    assert_int_equal(st.bad_requests, 1);
    assert_int_equal(st.running, 0);
    kj_ipc_server_destroy(srv);
    int64_t seq = 0;
    assert_int_equal(kj_journal_last_seq(j, &seq, NULL), 0);
    assert_int_equal(seq, 200);
    assert_int_equal(kj_journal_verify(j, NULL, NULL, NULL, &err), 0);
    kj_journal_close(j);
    for (int i = 0; i < N; i++)
        free(ev[i]);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* A journal that cannot commit: every request is answered "retry", nothing
 * is acked, /readyz would say so (last_commit < 0). */
static void test_journal_failure(void **state)
{
    (void)state;
    char dir[] = "/tmp/kj-ipc-fail.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char db[256], ep[256];
    snprintf(db, sizeof db, "%s/j.db", dir);
    snprintf(ep, sizeof ep, "ipc://%s/kj.sock", dir);
    kj_journal *j = NULL;
    kj_err err = {0};
    assert_int_equal(kj_journal_open(db, 0, &j, &err), 0);
    kj_journal_close(j);
    assert_int_equal(kj_journal_open(db, KJ_JOURNAL_READONLY, &j, &err), 0);
    const char *eps[] = {ep};
    kj_ipc_server_opts o = kj_ipc_server_defaults();
    o.endpoints = eps;
    o.n_endpoints = 1;
    kj_ipc_server *srv = NULL;
    assert_int_equal(kj_ipc_server_new(j, &o, &srv, &err), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, serve, srv), 0);
    kj_publisher_opts po = kj_publisher_defaults();
    po.retries = 1;
    po.timeout_ms = ANSWER_MS; /* the "retry" answers end it, not a timeout */
    kj_publisher *p = NULL;
    assert_int_equal(kj_publisher_new(ep, &po, &p, &err), 0);
    const char *ev[] = {"{\"event_id\":\"a\",\"type\":\"session_open\",\"session_id\":\"s\","
                        "\"time_ms\":1764391200000}"};
    kj_publish_result res[1];
    assert_int_equal(kj_publisher_publish(p, ev, 1, res, &err), KJ_ETIMEDOUT);
    assert_int_equal(res[0].status, 0);
    assert_string_equal(res[0].code, "journal_unavailable");
    kj_publisher_destroy(p);
    kj_ipc_stats st;
    kj_ipc_server_stats(srv, &st);
    assert_int_equal(st.commit_failures, 2); /* the first try and the retry */
    assert_true(st.last_commit < 0);
    assert_int_equal(st.events_stored, 0);
    kj_ipc_server_stop(srv);
    pthread_join(t, NULL);
    kj_ipc_server_destroy(srv);
    kj_journal_close(j);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_publish_to_nobody(void **state)
{
    (void)state;
    kj_publisher_opts po = kj_publisher_defaults();
    po.timeout_ms = 100;
    po.retries = 2;
    kj_publisher *p = NULL;
    kj_err err = {0};
    assert_int_equal(kj_publisher_new("ipc:///tmp/kj-nobody-listens.sock", &po, &p, &err), 0);
    const char *ev[] = {"{\"event_id\":\"a\"}", "{\"event_id\":\"b\"}"};
    kj_publish_result res[2];
    assert_int_equal(kj_publisher_publish(p, ev, 2, res, &err), KJ_ETIMEDOUT);
    assert_int_equal(res[0].status, 0);
    assert_int_equal(res[1].status, 0);
    assert_string_equal(res[0].code, "timeout");
    assert_non_null(strstr(err.msg, "2 events"));
    kj_publisher_destroy(p);
}

static void test_bad_config(void **state)
{
    (void)state;
    kj_ipc_server_opts o = kj_ipc_server_defaults();
    kj_ipc_server *srv = NULL;
    kj_err err = {0};
    assert_int_equal(kj_ipc_server_new(NULL, &o, &srv, &err), KJ_EINVAL);
    const char *eps[] = {"tcp://127.0.0.1:1"};
    o.endpoints = eps;
    o.n_endpoints = 1;
    o.curve_secret_key = "/nonexistent.key";
    assert_int_equal(kj_ipc_server_new(NULL, &o, &srv, &err), KJ_EINVAL); /* no allow dir */
    o.curve_allow_dir = "/tmp";
    assert_true(kj_ipc_server_new(NULL, &o, &srv, &err) < 0);
    assert_non_null(strstr(err.msg, "/nonexistent.key"));
    const char *bad[] = {"nonsense://x"};
    o = kj_ipc_server_defaults();
    o.endpoints = bad;
    o.n_endpoints = 1;
    assert_int_equal(kj_ipc_server_new(NULL, &o, &srv, &err), KJ_EUNAVAIL);
    assert_non_null(strstr(err.msg, "nonsense://x"));
    assert_null(srv);
    kj_ipc_server_destroy(NULL);
    kj_publisher_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_publish_roundtrip),
        cmocka_unit_test(test_journal_failure),
        cmocka_unit_test(test_publish_to_nobody),
        cmocka_unit_test(test_bad_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
