/*
 * The watch over the async engine and the reflector against kube-sim
 * ($KJ_BUILD_DIR/tools/kube-sim/kube-sim, plain HTTP): events of every type,
 * resume from the last version when the server ends the stream
 * (timeoutSeconds, watch_end_after) or cuts it (watch_drop_rate), a fresh
 * list after a 410 Expired in the stream and as an HTTP status, backoff when
 * the server is away, and a stop that takes no time.
 *
 * Time: waits are for the event expected, with a generous deadline; nothing
 * here asserts a speed.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "reconciler/kube_internal.h"
#include "sim_process.h"

#define DEADLINE_MS 120000

static struct {
    char bin[1024];
    char log[256];
    pid_t pid;
    int port;
    char server[64];
} sim;

static void sim_stop(void)
{
    stop_process(&sim.pid);
}

static void sim_start(void)
{
    char listen[64];
    sim.port = free_port();
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", sim.port);
    snprintf(sim.server, sizeof(sim.server), "http://127.0.0.1:%d", sim.port);
    snprintf(sim.log, sizeof(sim.log), "/tmp/kj-watch-test-%d.log", (int)getpid());
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        FILE *lf = fopen(sim.log, "a");
        if (lf) {
            dup2(fileno(lf), 2);
            dup2(fileno(lf), 1);
        }
        execl(sim.bin, sim.bin, "--listen", listen, (char *)NULL);
        _exit(127);
    }
    sim.pid = pid;
    for (int i = 0; i < 12000; i++) {
        if (port_open(sim.port))
            return;
        usleep(10000);
    }
    fail_msg("kube-sim does not listen on %d", sim.port);
}

static kj_kube *client(void)
{
    kj_kube_flags fl;
    kj_kube_flags_init(&fl);
    fl.server = sim.server;
    fl.namespace_ = "kyuubi";
    kj_kube_config *cfg = NULL;
    kj_err err = {0};
    if (kj_kube_config_load(&fl, &cfg, &err))
        fail_msg("%s", err.msg);
    kj_kube *k = NULL;
    if (kj_kube_new(cfg, &k, &err))
        fail_msg("%s", err.msg);
    kj_kube_config_free(cfg);
    return k;
}

static void call_done(kj_kube *k, const kj_kube_result *res, void *ud)
{
    (void)k;
    (void)ud;
    if (res->rc < 0)
        fail_msg("%s", res->err.msg);
}

/* A request run to completion on its own client. */
static void call(const char *method, const char *path, const char *body)
{
    kj_kube *k = client();
    kj_kube_req r = KJ_KUBE_REQ_INIT;
    r.op = KJ_KUBE_RAW;
    r.method = method;
    r.path = path;
    r.body = body;
    assert_int_equal(kj_kube_submit(k, &r, call_done, NULL), 0);
    assert_int_equal(kj_kube_run(k, DEADLINE_MS), 0);
    kj_kube_free(k);
}

static void create_pod(const char *name)
{
    char body[512];
    snprintf(body, sizeof body,
             "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"%s\","
             "\"labels\":{\"kyuubi-unique-tag\":\"%s\"}},\"spec\":{\"containers\":[{\"name\":\"c\","
             "\"image\":\"x\"}]}}",
             name, name);
    call("POST", "/api/v1/namespaces/kyuubi/pods", body);
}

typedef struct seen {
    int listed, lists, relists;
    int added, modified, deleted, bookmarks;
    char last_rv[64];
    int rv_went_back; /* an event older than one seen before, within one list */
    char names[64][32];
    int n_names;
} seen;

static void on_list(const kj_pod *pods, size_t n, int relist, void *ud)
{
    (void)pods;
    seen *s = ud;
    s->listed += (int)n;
    if (relist)
        s->relists++;
    s->last_rv[0] = '\0';
}

static void on_event(const kj_watch_event *ev, void *ud)
{
    seen *s = ud;
    switch (ev->type) {
    case KJ_WATCH_ADDED:
        s->added++;
        break;
    case KJ_WATCH_MODIFIED:
        s->modified++;
        break;
    case KJ_WATCH_DELETED:
        s->deleted++;
        break;
    case KJ_WATCH_BOOKMARK:
        s->bookmarks++;
        break;
    default:
        break;
    }
    if (ev->type != KJ_WATCH_BOOKMARK) {
        if (s->last_rv[0] &&
            strtoull(ev->resource_version, NULL, 10) <= strtoull(s->last_rv, NULL, 10))
            s->rv_went_back = 1;
        snprintf(s->last_rv, sizeof s->last_rv, "%s", ev->resource_version);
    }
    if (ev->pod && s->n_names < 64)
        snprintf(s->names[s->n_names++], sizeof s->names[0], "%s", ev->pod->name);
}

typedef int (*cond_fn)(const seen *s, const kj_reflector *r);

static void drive(kj_kube *kw, kj_reflector *r, seen *s, cond_fn cond, const char *what)
{
    int64_t end = kj_mono_ms() + DEADLINE_MS;
    while (!cond(s, r)) {
        if (kj_mono_ms() > end)
            fail_msg("waited %d ms for %s", DEADLINE_MS, what);
        kj_kube_poll(kw, 100);
    }
}

static int synced(const seen *s, const kj_reflector *r)
{
    (void)s;
    return kj_reflector_synced(r);
}

static kj_reflector *start(kj_kube *kw, seen *s, int timeout_s)
{
    kj_reflector_opts o = {.namespace_ = "kyuubi",
                           .label_selector = "kyuubi-unique-tag",
                           .watch_timeout_s = timeout_s,
                           .on_list = on_list,
                           .on_event = on_event,
                           .ud = s};
    kj_reflector *r = NULL;
    kj_err err = {0};
    assert_int_equal(kj_reflector_start(kw, &o, &r, &err), 0);
    return r;
}

static int three_changes(const seen *s, const kj_reflector *r)
{
    (void)r;
    return s->added >= 1 && s->modified >= 2 && s->deleted >= 1;
}

static int restarted(const seen *s, const kj_reflector *r)
{
    kj_reflector_stats st;
    kj_reflector_get_stats(r, &st);
    return st.restarts >= 2 && s->added >= 2;
}

static void test_events_and_resume(void **state)
{
    (void)state;
    sim_start();
    create_pod("p1");
    create_pod("p2");
    seen s = {0};
    kj_kube *kw = client();
    kj_reflector *r = start(kw, &s, 1); /* streams end every 1-2 s */
    drive(kw, r, &s, synced, "the first list");
    assert_int_equal(s.listed, 2);
    create_pod("p3");
    call("PATCH", "/api/v1/namespaces/kyuubi/pods/p1", "{\"metadata\":{\"labels\":{\"x\":\"y\"}}}");
    call("DELETE", "/api/v1/namespaces/kyuubi/pods/p2", NULL);
    drive(kw, r, &s, three_changes, "ADDED, MODIFIED, MODIFIED+DELETED");
    /* a grace-0 delete: MODIFIED (deletionTimestamp) then DELETED */
    assert_int_equal(s.deleted, 1);
    /* streams end (timeoutSeconds) and resume from the last version: a pod
     * created between two streams is seen once, nothing is seen twice */
    sleep(3);
    create_pod("p4");
    drive(kw, r, &s, restarted, "two resumed streams and ADDED p4");
    assert_int_equal(s.rv_went_back, 0);
    assert_int_equal(s.added, 2);
    kj_reflector_stats st;
    kj_reflector_get_stats(r, &st);
    assert_int_equal(st.lists, 1);
    assert_int_equal(st.relists, 0);
    assert_true(st.events[KJ_WATCH_BOOKMARK] >= 1); /* one before each end */
    /* a stop takes no time with a stream open */
    int64_t t0 = kj_mono_ms();
    kj_kube_free(kw);
    kj_reflector_free(r);
    printf("stop with a watch open: %lld ms\n", (long long)(kj_mono_ms() - t0));
    sim_stop();
}

static int saw_relist(const seen *s, const kj_reflector *r)
{
    (void)r;
    return s->relists >= 1;
}

static void test_expired_relists(void **state)
{
    (void)state;
    sim_start();
    create_pod("e1");
    seen s = {0};
    kj_kube *kw = client();
    kj_reflector *r = start(kw, &s, 300);
    drive(kw, r, &s, synced, "the first list");
    /* The stream is cut, and 9,000 changes happen before the reflector
     * resumes from the version it had: more than kube-sim's window (8,192
     * events), so the resumed stream carries an ERROR 410 Expired. */
    call("POST", "/_sim/faults", "{\"watch_drop_rate\":100}");
    char *seed = malloc(9000 * 240 + 16);
    size_t n = 0;
    n += (size_t)sprintf(seed + n, "[");
    for (int i = 0; i < 9000; i++)
        n += (size_t)sprintf(seed + n,
                             "%s{\"metadata\":{\"name\":\"s%05d\",\"namespace\":\"kyuubi\","
                             "\"labels\":{\"other\":\"x\"}},\"spec\":{\"containers\":[{\"name\":"
                             "\"c\",\"image\":\"x\"}]}}",
                             i ? "," : "", i);
    sprintf(seed + n, "]");
    call("POST", "/_sim/seed", seed);
    free(seed);
    drive(kw, r, &s, saw_relist, "a relist after 410 in the stream");
    kj_reflector_stats st;
    kj_reflector_get_stats(r, &st);
    assert_true(st.expired >= 1);
    assert_true(st.lists >= 2);
    /* 410 as the HTTP status of a watch request: a relist too */
    call("POST", "/_sim/faults",
         "{\"watch_drop_rate\":0,\"watch_end_after\":1,\"fail_nth\":[\"watch:1:410\"]}");
    int before = s.relists;
    int64_t end = kj_mono_ms() + DEADLINE_MS;
    while (s.relists == before && kj_mono_ms() < end)
        kj_kube_poll(kw, 100);
    assert_true(s.relists > before);
    kj_kube_free(kw);
    kj_reflector_free(r);
    sim_stop();
}

static int resumed_after_cuts(const seen *s, const kj_reflector *r)
{
    kj_reflector_stats st;
    kj_reflector_get_stats(r, &st);
    return st.restarts >= 3 && s->added >= 1;
}

static void test_dropped_streams(void **state)
{
    (void)state;
    sim_start();
    seen s = {0};
    kj_kube *kw = client();
    kj_reflector *r = start(kw, &s, 300);
    drive(kw, r, &s, synced, "the first list");
    call("POST", "/_sim/faults", "{\"watch_drop_rate\":100}");
    create_pod("d1");
    drive(kw, r, &s, resumed_after_cuts, "streams cut and resumed, ADDED d1");
    assert_int_equal(s.added, 1);
    assert_int_equal(s.rv_went_back, 0);
    kj_kube_free(kw);
    kj_reflector_free(r);
    sim_stop();
}

/* The server away: lists fail, and are tried again with a growing delay. */
static void test_backoff(void **state)
{
    (void)state;
    sim.port = free_port();
    snprintf(sim.server, sizeof(sim.server), "http://127.0.0.1:%d", sim.port);
    seen s = {0};
    kj_kube *kw = client();
    kj_reflector *r = start(kw, &s, 300);
    int64_t end = kj_mono_ms() + 4000;
    while (kj_mono_ms() < end)
        kj_kube_poll(kw, 100);
    kj_reflector_stats st;
    kj_reflector_get_stats(r, &st);
    kj_kube_stats ks;
    kj_kube_get_stats(kw, &ks);
    printf("4 s without a server: %llu failed lists, %llu requests\n",
           (unsigned long long)st.errors, (unsigned long long)ks.requests);
    /* list retries inside the engine (backoff up to 5 s) and between lists */
    assert_true(ks.requests < 40);
    assert_int_equal(kj_reflector_synced(r), 0);
    kj_kube_free(kw);
    kj_reflector_free(r);
}

int main(void)
{
    const char *b = getenv("KJ_BUILD_DIR");
    snprintf(sim.bin, sizeof(sim.bin), "%s/tools/kube-sim/kube-sim", b ? b : ".");
    if (access(sim.bin, X_OK) != 0) {
        fprintf(stderr, "kube-sim not built at %s: skipping\n", sim.bin);
        return 77;
    }
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_events_and_resume),
        cmocka_unit_test(test_expired_relists),
        cmocka_unit_test(test_dropped_streams),
        cmocka_unit_test(test_backoff),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    sim_stop();
    if (rc == 0)
        unlink(sim.log);
    return rc;
}
