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
#include <zmq.h>

#include <cjson/cJSON.h>
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
    char dir[] = "/tmp/kj-nobody.XXXXXX", ep[300];
    assert_non_null(mkdtemp(dir));
    snprintf(ep, sizeof ep, "ipc://%s/nobody-listens.sock", dir);
    assert_int_equal(kj_publisher_new(ep, &po, &p, &err), 0);
    const char *ev[] = {"{\"event_id\":\"a\"}", "{\"event_id\":\"b\"}"};
    kj_publish_result res[2];
    assert_int_equal(kj_publisher_publish(p, ev, 2, res, &err), KJ_ETIMEDOUT);
    assert_int_equal(res[0].status, 0);
    assert_int_equal(res[1].status, 0);
    assert_string_equal(res[0].code, "timeout");
    assert_non_null(strstr(err.msg, "2 events"));
    kj_publisher_destroy(p);
    rmdir(dir);
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

/* --- issue 10 ------------------------------------------------------------------ */

/* Runs fn with stderr (where kj_log writes) captured; returns what it wrote. */
static char *capture_stderr(void (*fn)(void *), void *arg)
{
    char path[] = "/tmp/kj-ipc-stderr.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    fn(arg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    off_t len = lseek(fd, 0, SEEK_END);
    char *text = calloc(1, (size_t)len + 1);
    assert_int_equal(pread(fd, text, (size_t)len, 0), len);
    close(fd);
    unlink(path);
    fputs(text, stderr);
    return text;
}

static size_t count_str(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

typedef struct failing {
    const char *ep;
    int n, rc;
    int64_t ms;
} failing;

static void publish_failing(void *arg)
{
    failing *f = arg;
    kj_publisher_opts po = kj_publisher_defaults();
    po.retries = 0;
    po.window = 1;
    po.timeout_ms = 5000;
    kj_publisher *p = NULL;
    kj_err err = {0};
    assert_int_equal(kj_publisher_new(f->ep, &po, &p, &err), 0);
    char *ev[64];
    for (int i = 0; i < f->n; i++) {
        ev[i] = malloc(160);
        snprintf(ev[i], 160,
                 "{\"event_id\":\"f%d\",\"type\":\"session_open\",\"session_id\":\"s\","
                 "\"time_ms\":1764391200000}",
                 i);
    }
    kj_publish_result res[64];
    int64_t t0 = kj_mono_ms();
    f->rc = kj_publisher_publish(p, (const char *const *)ev, (size_t)f->n, res, &err);
    f->ms = kj_mono_ms() - t0;
    for (int i = 0; i < f->n; i++) {
        assert_string_equal(res[i].code, "journal_unavailable");
        free(ev[i]);
    }
    kj_publisher_destroy(p);
}

/* Item 17: a journal that fails every commit (read-only here, a full disk in
 * life) was logged once per failed commit; now when it starts failing, then
 * once per 10 s with the count. */
static void test_commit_failure_log_rate(void **state)
{
    (void)state;
    char dir[] = "/tmp/kj-ipc-faillog.XXXXXX";
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
    failing f = {ep, 40, 0, 0};
    char *log = capture_stderr(publish_failing, &f);
    assert_int_equal(f.rc, KJ_ETIMEDOUT);
    kj_ipc_server_stop(srv);
    pthread_join(t, NULL);
    kj_ipc_stats st;
    kj_ipc_server_stats(srv, &st);
    assert_int_equal(st.commit_failures, 40);
    size_t first = count_str(log, "msg=\"commit failed\"");
    size_t later = count_str(log, "msg=\"commits still failing\"");
    assert_int_equal(first, 1);
    assert_true(later <= (size_t)(f.ms / 10000) + 1);
    free(log);
    kj_ipc_server_destroy(srv);
    kj_journal_close(j);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* Item 11: an ipc:// socket that another user could take over is refused,
 * by the server and by the publisher. */
static int server_on(const char *ep, kj_err *err)
{
    const char *eps[] = {ep};
    kj_ipc_server_opts o = kj_ipc_server_defaults();
    o.endpoints = eps;
    o.n_endpoints = 1;
    kj_ipc_server *srv = NULL;
    int rc = kj_ipc_server_new(NULL, &o, &srv, err);
    kj_ipc_server_destroy(srv);
    return rc;
}

static int publisher_on(const char *ep, kj_err *err)
{
    kj_publisher *p = NULL;
    int rc = kj_publisher_new(ep, NULL, &p, err);
    kj_publisher_destroy(p);
    return rc;
}

static void test_ipc_dir_refused(void **state)
{
    (void)state;
    kj_err err = {0};
    char dir[] = "/tmp/kj-ipc-dirs.XXXXXX", ep[512], path[400];
    assert_non_null(mkdtemp(dir));

    /* straight into /tmp (1777): anyone could have put a socket there first */
    snprintf(ep, sizeof ep, "ipc:///tmp/kj-test-%d.sock", (int)getpid());
    assert_int_equal(server_on(ep, &err), KJ_EINVAL);
    assert_non_null(strstr(err.msg, "writable by every user"));
    assert_int_equal(publisher_on(ep, &err), KJ_EINVAL);
    assert_non_null(strstr(err.msg, "writable by every user"));
    /* a missing directory under /tmp: the publisher cannot know who will
     * create it; the server creates it 0700 and is fine there */
    snprintf(ep, sizeof ep, "ipc://%s/sub/kj.sock", dir);
    chmod(dir, 01777);
    assert_int_equal(publisher_on(ep, &err), KJ_EINVAL);
    assert_non_null(strstr(err.msg, "does not exist"));
    assert_int_equal(server_on(ep, &err), 0);
    snprintf(path, sizeof path, "%s/sub", dir);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0700);
    assert_int_equal(publisher_on(ep, &err), 0);
    /* a private directory inside one writable by all without the sticky bit:
     * anyone could rename it away and put another in its place */
    chmod(dir, 0777);
    assert_int_equal(server_on(ep, &err), KJ_EINVAL);
    assert_non_null(strstr(err.msg, "without the sticky bit"));
    assert_int_equal(publisher_on(ep, &err), KJ_EINVAL);
    chmod(dir, 0700);
    /* the socket's own directory writable by all */
    chmod(path, 0777);
    assert_int_equal(server_on(ep, &err), KJ_EINVAL);
    assert_non_null(strstr(err.msg, "writable by every user"));
    chmod(path, 0700);
    assert_int_equal(server_on(ep, &err), 0);
    /* abstract names have no permissions at all */
    assert_int_equal(server_on("ipc://@kj-abstract", &err), KJ_EINVAL);
    assert_non_null(strstr(err.msg, "abstract"));
    assert_int_equal(publisher_on("ipc://@kj-abstract", &err), KJ_EINVAL);
    if (geteuid() == 0) {
        /* a directory, or a symbolic link on the way, owned by another user */
        assert_int_equal(chown(path, 65534, 65534), 0);
        assert_int_equal(server_on(ep, &err), KJ_EINVAL);
        assert_non_null(strstr(err.msg, "belongs to uid 65534"));
        assert_int_equal(chown(path, 0, 0), 0);
        char link[450];
        snprintf(link, sizeof link, "%s/link", dir);
        assert_int_equal(symlink(path, link), 0);
        assert_int_equal(lchown(link, 65534, 65534), 0);
        snprintf(ep, sizeof ep, "ipc://%s/kj.sock", link);
        assert_int_equal(server_on(ep, &err), KJ_EINVAL);
        assert_non_null(strstr(err.msg, "symbolic link owned by uid 65534"));
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* Item 11: a secret key others can read is used, with a warning. */
typedef struct keyrun {
    const char *key, *ep, *allow;
} keyrun;

static void start_with_key(void *arg)
{
    keyrun *k = arg;
    const char *eps[] = {k->ep};
    kj_ipc_server_opts o = kj_ipc_server_defaults();
    o.endpoints = eps;
    o.n_endpoints = 1;
    o.curve_secret_key = k->key;
    o.curve_allow_dir = k->allow;
    kj_ipc_server *srv = NULL;
    kj_err err = {0};
    assert_int_equal(kj_ipc_server_new(NULL, &o, &srv, &err), 0);
    kj_ipc_server_destroy(srv);
}

static void test_secret_key_mode_warning(void **state)
{
    (void)state;
    char dir[] = "/tmp/kj-ipc-keys.XXXXXX", prefix[300], key[320], ep[320];
    assert_non_null(mkdtemp(dir));
    snprintf(prefix, sizeof prefix, "%s/server", dir);
    snprintf(key, sizeof key, "%s.key", prefix);
    snprintf(ep, sizeof ep, "ipc://%s/kj.sock", dir);
    kj_err err = {0};
    assert_int_equal(kj_ipc_keygen(prefix, 0, NULL, &err), 0);
    keyrun k = {key, ep, dir};
    char *log = capture_stderr(start_with_key, &k);
    assert_null(strstr(log, "secret key file is readable"));
    free(log);
    chmod(key, 0644);
    log = capture_stderr(start_with_key, &k);
    assert_non_null(strstr(log, "msg=\"secret key file is readable by other users\""));
    assert_non_null(strstr(log, "mode=0644"));
    assert_null(strstr(log, "server.pub")); /* the public key may be read by all */
    free(log);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* --- a fake kjournald, to see what the publisher makes of its answers ---------- */

typedef struct fake {
    char ep[300];
    void *ctx, *sock;
    pthread_t t;
    int mode; /* what to answer, see fake_answer */
    int requests, batches;
} fake;

enum { F_WRONG_ID, F_BATCH_TOO_LARGE, F_TOO_LARGE, F_RETRY };

/* The reply for one request body: as kjournald would, except as mode says. */
static char *fake_answer(fake *f, const char *body, size_t len)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    cJSON *events = cJSON_GetObjectItem(root, "events");
    char *out = malloc(1 << 16);
    if (events)
        f->batches++;
    if (f->mode == F_RETRY) {
        snprintf(out, 1 << 16,
                 "{\"ok\":false,\"retry\":true,\"error\":{\"code\":\"journal_unavailable\","
                 "\"message\":\"busy\"}}");
    } else if (f->mode == F_TOO_LARGE ||
               (f->mode == F_BATCH_TOO_LARGE && events && cJSON_GetArraySize(events) > 1)) {
        snprintf(out, 1 << 16,
                 "{\"ok\":false,\"error\":{\"code\":\"too_large\",\"message\":\"request is "
                 "%zu bytes, the limit is 10\"}}",
                 len);
    } else {
        size_t at = (size_t)snprintf(out, 1 << 16, "{\"ok\":true,\"results\":[");
        int n = events ? cJSON_GetArraySize(events) : 1;
        for (int i = 0; i < n; i++) {
            cJSON *ev = events ? cJSON_GetArrayItem(events, i) : root;
            const char *id = cJSON_GetObjectItem(ev, "event_id")->valuestring;
            at += (size_t)snprintf(out + at, (1 << 16) - at,
                                   "%s{\"event_id\":\"%s%s\",\"status\":\"stored\"}", i ? "," : "",
                                   id, f->mode == F_WRONG_ID && i == n - 1 ? "-not" : "");
        }
        snprintf(out + at, (1 << 16) - at, "]}");
    }
    cJSON_Delete(root);
    return out;
}

static void *fake_main(void *arg)
{
    fake *f = arg;
    for (;;) {
        zmq_msg_t m[8]; /* identity, request id, delimiter, body */
        int n = 0, more = 1;
        while (more && n < 8) {
            zmq_msg_init(&m[n]);
            if (zmq_msg_recv(&m[n], f->sock, 0) < 0)
                return NULL;
            more = zmq_msg_more(&m[n++]);
        }
        f->requests++;
        char *reply = fake_answer(f, zmq_msg_data(&m[n - 1]), zmq_msg_size(&m[n - 1]));
        for (int i = 0; i < n - 1; i++)
            zmq_msg_send(&m[i], f->sock, ZMQ_SNDMORE);
        zmq_send(f->sock, reply, strlen(reply), 0);
        zmq_msg_close(&m[n - 1]);
        free(reply);
    }
}

static void fake_start(fake *f, const char *dir, int mode)
{
    memset(f, 0, sizeof *f);
    f->mode = mode;
    snprintf(f->ep, sizeof f->ep, "ipc://%s/fake.sock", dir);
    f->ctx = zmq_ctx_new();
    f->sock = zmq_socket(f->ctx, ZMQ_ROUTER);
    assert_int_equal(zmq_bind(f->sock, f->ep), 0);
    assert_int_equal(pthread_create(&f->t, NULL, fake_main, f), 0);
}

static void fake_stop(fake *f)
{
    zmq_ctx_shutdown(f->ctx);
    pthread_join(f->t, NULL);
    zmq_close(f->sock);
    zmq_ctx_term(f->ctx);
}

/* Item 11: a reply that names another event is no acknowledgement. */
static void test_publisher_checks_event_ids(void **state)
{
    (void)state;
    char dir[] = "/tmp/kj-ipc-fake.XXXXXX";
    assert_non_null(mkdtemp(dir));
    const char *ev[] = {
        "{\"event_id\":\"a\",\"type\":\"session_open\",\"session_id\":\"s\",\"time_ms\":1}",
        "{\"event_id\":\"b\",\"type\":\"session_open\",\"session_id\":\"s\",\"time_ms\":1}",
        "{\"eventType\":\"kyuubi_session\",\"sessionId\":\"k\",\"startTime\":1764391200000,"
        "\"event_id\":\"kyuubi:k:created\"}",
    };
    kj_publish_result res[3];
    kj_err err = {0};
    for (int batch = 1; batch <= 3; batch += 2) {
        fake f;
        fake_start(&f, dir, F_WRONG_ID);
        kj_publisher_opts po = kj_publisher_defaults();
        po.batch = (size_t)batch;
        po.timeout_ms = 5000;
        kj_publisher *p = NULL;
        assert_int_equal(kj_publisher_new(f.ep, &po, &p, &err), 0);
        assert_int_equal(kj_publisher_publish(p, ev, 3, res, &err), KJ_EPROTO);
        assert_non_null(strstr(err.msg, "named other events"));
        for (int i = 0; i < 3; i++) {
            assert_int_equal(res[i].status, 0); /* never "stored" */
            assert_string_equal(res[i].code, "bad_reply");
        }
        assert_string_equal(res[0].event_id, "a");
        assert_non_null(strstr(res[0].message, "-not"));
        assert_int_equal(f.requests, batch == 1 ? 3 : 1); /* not retried: not a timeout */
        kj_publisher_destroy(p);
        fake_stop(&f);
    }
    rmdir(dir);
}

/* Item 14: a final answer is final; a batch too large goes again one by one;
 * "retry" answers are retried, as many times as allowed. */
static void test_publisher_non_retryable(void **state)
{
    (void)state;
    char dir[] = "/tmp/kj-ipc-fake.XXXXXX";
    assert_non_null(mkdtemp(dir));
    const char *ev[] = {
        "{\"event_id\":\"a\",\"type\":\"session_open\",\"session_id\":\"s\",\"time_ms\":1}",
        "{\"event_id\":\"b\",\"type\":\"session_open\",\"session_id\":\"s\",\"time_ms\":1}",
        "{\"event_id\":\"c\",\"type\":\"session_open\",\"session_id\":\"s\",\"time_ms\":1}",
    };
    kj_publish_result res[3];
    kj_err err = {0};
    kj_publisher_opts po = kj_publisher_defaults();
    po.timeout_ms = 10000;
    po.retries = 4;
    fake f;
    kj_publisher *p = NULL;

    fake_start(&f, dir, F_TOO_LARGE);
    assert_int_equal(kj_publisher_new(f.ep, &po, &p, &err), 0);
    int64_t t0 = kj_mono_ms();
    assert_int_equal(kj_publisher_publish(p, ev, 1, res, &err), 0);
    assert_true(kj_mono_ms() - t0 < 5000);
    assert_int_equal(res[0].status, KJ_APPEND_REJECTED);
    assert_string_equal(res[0].code, "too_large");
    assert_string_equal(res[0].event_id, "a"); /* named though the server could not */
    assert_int_equal(f.requests, 1);
    kj_publisher_destroy(p);
    fake_stop(&f);

    po.batch = 3;
    fake_start(&f, dir, F_BATCH_TOO_LARGE);
    assert_int_equal(kj_publisher_new(f.ep, &po, &p, &err), 0);
    assert_int_equal(kj_publisher_publish(p, ev, 3, res, &err), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(res[i].status, KJ_APPEND_STORED);
    assert_int_equal(f.requests, 4); /* the batch, then each event alone */
    assert_int_equal(f.batches, 1);
    kj_publisher_destroy(p);
    fake_stop(&f);

    po.batch = 1;
    po.retries = 2;
    fake_start(&f, dir, F_RETRY);
    assert_int_equal(kj_publisher_new(f.ep, &po, &p, &err), 0);
    assert_int_equal(kj_publisher_publish(p, ev, 1, res, &err), KJ_ETIMEDOUT);
    assert_int_equal(res[0].status, 0);
    assert_string_equal(res[0].code, "journal_unavailable");
    assert_int_equal(f.requests, 3);
    kj_publisher_destroy(p);
    fake_stop(&f);
    rmdir(dir);
}

/* Item 14: over max_message but under the hard cap: an answer, not a drop. */
static void test_too_large_answered(void **state)
{
    (void)state;
    char dir[] = "/tmp/kj-ipc-big.XXXXXX";
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
    o.max_message = 4096;
    kj_ipc_server *srv = NULL;
    assert_int_equal(kj_ipc_server_new(j, &o, &srv, &err), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, serve, srv), 0);
    /* 1 MiB: before, anything over max_message + 64 KiB was dropped unanswered */
    size_t len = 1 << 20;
    char *big = malloc(len + 128);
    int at =
        snprintf(big, 128, "{\"event_id\":\"big\",\"type\":\"session_open\",\"session_id\":\"");
    memset(big + at, 's', len);
    snprintf(big + at + len, 128, "\",\"time_ms\":1764391200000}");
    kj_publisher_opts po = kj_publisher_defaults();
    po.timeout_ms = 20000;
    kj_publisher *p = NULL;
    assert_int_equal(kj_publisher_new(ep, &po, &p, &err), 0);
    const char *ev[] = {big};
    kj_publish_result res[1];
    int64_t t0 = kj_mono_ms();
    assert_int_equal(kj_publisher_publish(p, ev, 1, res, &err), 0);
    assert_true(kj_mono_ms() - t0 < 20000);
    assert_int_equal(res[0].status, KJ_APPEND_REJECTED);
    assert_string_equal(res[0].code, "too_large");
    kj_publisher_destroy(p);
    kj_ipc_server_stop(srv);
    pthread_join(t, NULL);
    kj_ipc_stats st;
    kj_ipc_server_stats(srv, &st);
    assert_int_equal(st.requests, 1);
    assert_int_equal(st.bad_requests, 1);
    assert_int_equal(st.queued_bytes, 0);
    kj_ipc_server_destroy(srv);
    kj_journal_close(j);
    free(big);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_publish_roundtrip),
        cmocka_unit_test(test_journal_failure),
        cmocka_unit_test(test_publish_to_nobody),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_commit_failure_log_rate),
        cmocka_unit_test(test_ipc_dir_refused),
        cmocka_unit_test(test_secret_key_mode_warning),
        cmocka_unit_test(test_publisher_checks_event_ids),
        cmocka_unit_test(test_publisher_non_retryable),
        cmocka_unit_test(test_too_large_answered),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
