/*
 * test_server_alloc.c - the server when memory runs out (issue 10 item 17).
 *
 * Linked with -Wl,--wrap=realloc: every realloc in this program and in
 * libkj_ipc goes through __wrap_realloc, which fails the one the test picks.
 * A failed realloc of the server's list of pending requests used to lose the
 * list and keep its new capacity: the next request was stored through NULL.
 * Now the request in hand is answered "internal" with retry, the batch is
 * intact, and the retry is stored.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ipc/ipc.h"

void *__real_realloc(void *p, size_t size);
void *__wrap_realloc(void *p, size_t size);

/* The first allocation of the pending list: realloc(NULL, 64 pointers). */
static atomic_int armed, failed;

void *__wrap_realloc(void *p, size_t size)
{
    if (!p && size == 64 * sizeof(void *) && atomic_exchange(&armed, 0)) {
        atomic_store(&failed, 1);
        return NULL;
    }
    return __real_realloc(p, size);
}

static void *serve(void *arg)
{
    kj_err err = {0};
    return (void *)(intptr_t)kj_ipc_server_run(arg, &err);
}

static void test_pending_list_oom(void **state)
{
    (void)state;
    char dir[] = "/tmp/kj-ipc-oom.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char db[256], ep[256];
    snprintf(db, sizeof db, "%s/j.db", dir);
    snprintf(ep, sizeof ep, "ipc://%s/kj.sock", dir);
    kj_journal *j = NULL;
    kj_err err = {0};
    assert_int_equal(kj_journal_open(db, 0, &j, &err), 0);
    const char *eps[] = {ep};
    kj_ipc_server_opts o = kj_ipc_server_defaults();
    o.endpoints = eps;
    o.n_endpoints = 1;
    kj_ipc_server *srv = NULL;
    assert_int_equal(kj_ipc_server_new(j, &o, &srv, &err), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, serve, srv), 0);

    kj_publisher_opts po = kj_publisher_defaults();
    po.window = 1;
    po.timeout_ms = 30000;
    kj_publisher *p = NULL;
    assert_int_equal(kj_publisher_new(ep, &po, &p, &err), 0);
    const char *ev[] = {
        "{\"event_id\":\"a\",\"type\":\"session_open\",\"session_id\":\"s\",\"time_ms\":"
        "1764391200000}",
        "{\"event_id\":\"b\",\"type\":\"session_close\",\"session_id\":\"s\",\"time_ms\":"
        "1764391200001}",
    };
    kj_publish_result res[2];
    atomic_store(&armed, 1);
    assert_int_equal(kj_publisher_publish(p, ev, 2, res, &err), 0);
    assert_true(atomic_load(&failed)); /* the failure did happen */
    assert_int_equal(res[0].status, KJ_APPEND_STORED);
    assert_int_equal(res[1].status, KJ_APPEND_STORED);
    kj_publisher_destroy(p);

    kj_ipc_server_stop(srv);
    pthread_join(t, NULL);
    kj_ipc_server_destroy(srv);
    int64_t seq = 0;
    assert_int_equal(kj_journal_last_seq(j, &seq, NULL), 0);
    assert_int_equal(seq, 2);
    kj_journal_close(j);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pending_list_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
