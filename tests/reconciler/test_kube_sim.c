/*
 * The Kubernetes client against kube-sim ($KJ_BUILD_DIR/tools/kube-sim/kube-sim)
 * over TLS with a bearer token: every call, kubeconfig variants, in-cluster
 * files, a wrong CA, a rotated token, and faults injected at run time
 * (429/500/503, dropped connections, latency, expired continue tokens), with
 * the request count taken from /_sim/stats. Skipped when kube-sim is not built.
 *
 * The certificate is generated here with openssl (EC P-256, CN=localhost,
 * SAN IP:127.0.0.1); a second one plays the wrong CA. For client-certificate
 * authentication (kube-sim --client-ca, no token) a client CA signs a client
 * certificate, and another CA signs a foreign one.
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "reconciler/kube_internal.h"
#include "sim_process.h"

#define TOKEN1 "sim-token-one-secret"
#define TOKEN2 "sim-token-two-secret"

/* Time in these tests: kj_kube_run() bounds and request deadlines only catch
 * a hang, so they are generous (the suite runs under ASan on busy machines).
 * Where elapsed time is the point ("fails at once", "waits its Retry-After"),
 * the bound sits between the right behaviour and the wrong one, with
 * SLACK_MS of room for a busy machine on the right side. */
#define RUN_MS 600000
#define REQ_MS 120000
#define SLACK_MS 5000

static struct {
    char bin[1024];
    char dir[128];
    char cert[256], key[256], wrong[256], wrongkey[256], tokfile[256];
    char client_ca[256], client[256], clientkey[256], foreign[256], foreignkey[256];
    pid_t pid;
    int port;
    char server[64];
} sim;

static void path_in(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", sim.dir, name);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static char *read_all(const char *path)
{
    char *b = NULL;
    size_t n;
    kj_err err = {0};
    if (kj_kube_read_file(path, 1 << 20, &b, &n, &err) < 0)
        fail_msg("%s", err.msg);
    return b;
}

static char *b64(const char *s)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(s), o = 0;
    char *r = malloc(n * 4 / 3 + 8);
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned char)s[i] << 16;
        if (i + 1 < n)
            v |= (unsigned char)s[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)s[i + 2];
        r[o++] = t[(v >> 18) & 63];
        r[o++] = t[(v >> 12) & 63];
        r[o++] = i + 1 < n ? t[(v >> 6) & 63] : '=';
        r[o++] = i + 2 < n ? t[v & 63] : '=';
    }
    r[o] = 0;
    return r;
}

static void sim_stop(void)
{
    stop_process(&sim.pid);
}

/* Starts kube-sim on sim.port (a new one if 0) with token (NULL: none);
 * extra: NULL-terminated args. */
static void sim_start(const char *token, ...)
{
    char listen[64], logp[300];
    const char *argv[32];
    int n = 0;
    if (!sim.port)
        sim.port = free_port();
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", sim.port);
    snprintf(sim.server, sizeof(sim.server), "https://127.0.0.1:%d", sim.port);
    argv[n++] = sim.bin;
    argv[n++] = "--listen";
    argv[n++] = listen;
    if (token) {
        argv[n++] = "--token";
        argv[n++] = token;
    }
    argv[n++] = "--tls-cert";
    argv[n++] = sim.cert;
    argv[n++] = "--tls-key";
    argv[n++] = sim.key;
    va_list ap;
    va_start(ap, token);
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < 30)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    path_in(logp, sizeof(logp), "kube-sim.log");
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        FILE *lf = fopen(logp, "a");
        if (lf) {
            dup2(fileno(lf), 2);
            dup2(fileno(lf), 1);
        }
        execv(sim.bin, (char *const *)argv);
        _exit(127);
    }
    sim.pid = pid;
    for (int i = 0; i < 12000; i++) { /* 120 s */
        if (port_open(sim.port))
            return;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            sim.pid = 0;
            fail_msg("kube-sim exited before listening (see %s)", logp);
        }
        usleep(10000);
    }
    fail_msg("kube-sim does not listen on %d", sim.port);
}

static int run(const char *cmd)
{
    return system(cmd) == 0 ? 0 : -1;
}

/* The client CA and the certificate it signs (clientAuth); another CA and
 * the foreign certificate it signs. */
static int make_client_certs(void)
{
    char cmd[2048], ca2[256], ca2key[256], cakey[256], ext[256], csr[256];
    path_in(sim.client_ca, sizeof(sim.client_ca), "client-ca.pem");
    path_in(cakey, sizeof(cakey), "client-ca-key.pem");
    path_in(ca2, sizeof(ca2), "other-ca.pem");
    path_in(ca2key, sizeof(ca2key), "other-ca-key.pem");
    path_in(sim.client, sizeof(sim.client), "client.pem");
    path_in(sim.clientkey, sizeof(sim.clientkey), "client-key.pem");
    path_in(sim.foreign, sizeof(sim.foreign), "foreign.pem");
    path_in(sim.foreignkey, sizeof(sim.foreignkey), "foreign-key.pem");
    path_in(ext, sizeof(ext), "client.ext");
    path_in(csr, sizeof(csr), "client.csr");
    write_file(ext, "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n");
    const char *cas[2][3] = {{sim.client_ca, cakey, "client-ca"}, {ca2, ca2key, "other-ca"}};
    const char *leaves[2][3] = {{sim.client, sim.clientkey, "kjournal"},
                                {sim.foreign, sim.foreignkey, "intruder"}};
    for (int i = 0; i < 2; i++) {
        snprintf(cmd, sizeof(cmd),
                 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                 "-keyout '%s' -out '%s' -days 2 -subj /CN=%s 2>/dev/null",
                 cas[i][1], cas[i][0], cas[i][2]);
        if (run(cmd))
            return -1;
        snprintf(cmd, sizeof(cmd),
                 "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                 "-keyout '%s' -out '%s' -subj /O=system:masters/CN=%s 2>/dev/null && "
                 "openssl x509 -req -in '%s' -CA '%s' -CAkey '%s' -set_serial %d -days 2 "
                 "-extfile '%s' -out '%s' 2>/dev/null",
                 leaves[i][1], csr, leaves[i][2], csr, cas[i][0], cas[i][1], 1000 + i, ext,
                 leaves[i][0]);
        if (run(cmd))
            return -1;
    }
    return 0;
}

static int group_setup(void **state)
{
    (void)state;
    const char *b = getenv("KJ_BUILD_DIR");
    snprintf(sim.bin, sizeof(sim.bin), "%s/tools/kube-sim/kube-sim", b ? b : ".");
    if (access(sim.bin, X_OK) != 0) {
        fprintf(stderr, "kube-sim not built at %s: skipping\n", sim.bin);
        return 0;
    }
    snprintf(sim.dir, sizeof(sim.dir), "/tmp/kj-kubesim-XXXXXX");
    if (!mkdtemp(sim.dir))
        return -1;
    path_in(sim.cert, sizeof(sim.cert), "cert.pem");
    path_in(sim.key, sizeof(sim.key), "key.pem");
    path_in(sim.wrong, sizeof(sim.wrong), "wrong.pem");
    path_in(sim.wrongkey, sizeof(sim.wrongkey), "wrongkey.pem");
    path_in(sim.tokfile, sizeof(sim.tokfile), "token");
    char cmd[2048];
    const char *pairs[2][2] = {{sim.cert, sim.key}, {sim.wrong, sim.wrongkey}};
    for (int i = 0; i < 2; i++) {
        snprintf(cmd, sizeof(cmd),
                 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                 "-keyout '%s' -out '%s' -days 2 -subj /CN=localhost "
                 "-addext subjectAltName=IP:127.0.0.1,DNS:localhost 2>/dev/null",
                 pairs[i][1], pairs[i][0]);
        if (system(cmd) != 0)
            return -1;
    }
    if (make_client_certs() != 0)
        return -1;
    write_file(sim.tokfile, TOKEN1 "\n");
    unsetenv("KUBECONFIG");
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
    setenv("HOME", sim.dir, 1);
    sim_start(TOKEN1, NULL);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    sim_stop();
    if (sim.dir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", sim.dir);
        if (system(cmd) != 0)
            return -1;
    }
    return 0;
}

static int need_sim(void **state)
{
    (void)state;
    if (access(sim.bin, X_OK) != 0)
        skip();
    return 0;
}

/* A client from flags: the server, the token file and the CA. */
static kj_kube *client_flags(const char *ca, int insecure, int inflight, double qps)
{
    kj_kube_flags f;
    kj_kube_flags_init(&f);
    f.server = sim.server;
    f.token_file = sim.tokfile;
    f.ca_file = ca;
    f.insecure = insecure;
    f.namespace_ = "kyuubi";
    f.qps = qps;
    f.burst = 100;
    f.max_in_flight = inflight;
    kj_kube_config *cfg;
    kj_err err = {0};
    if (kj_kube_config_load(&f, &cfg, &err) < 0)
        fail_msg("%s", err.msg);
    kj_kube *k;
    assert_int_equal(kj_kube_new(cfg, &k, &err), 0);
    kj_kube_config_free(cfg);
    return k;
}

/* ---- raw helpers: seeding, faults, stats ------------------------------- */

typedef struct rawres {
    int done, rc, http;
    char *body;
} rawres;

static void on_raw(kj_kube *k, const kj_kube_result *r, void *ud)
{
    (void)k;
    rawres *x = ud;
    x->done = 1;
    x->rc = r->rc;
    x->http = r->status.http;
    free(x->body);
    x->body = r->body ? strndup(r->body, r->body_len) : NULL;
}

static int raw(kj_kube *k, const char *method, const char *path, const char *body, char **out)
{
    kj_kube_req r = KJ_KUBE_REQ_INIT;
    rawres x = {0};
    r.op = KJ_KUBE_RAW;
    r.method = method;
    r.path = path;
    r.body = body;
    assert_int_equal(kj_kube_submit(k, &r, on_raw, &x), 0);
    while (!x.done)
        kj_kube_poll(k, 1000);
    if (out)
        *out = x.body;
    else
        free(x.body);
    return x.rc;
}

static void create_pod(kj_kube *k, const char *name, const char *tag, const char *phase,
                       const char *finalizer)
{
    char body[2048], path[256];
    snprintf(body, sizeof(body),
             "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"%s\",\"labels\":{"
             "\"kyuubi-unique-tag\":\"%s\",\"spark-app-selector\":\"spark-%s\",\"spark-role\":"
             "\"driver\"}%s%s%s},\"spec\":{\"nodeName\":\"node-1\",\"containers\":[{\"name\":\"c\","
             "\"image\":\"apache/spark:3.5.1\"}]}}",
             name, tag, tag, finalizer ? ",\"finalizers\":[\"" : "", finalizer ? finalizer : "",
             finalizer ? "\"]" : "");
    int rc = raw(k, "POST", "/api/v1/namespaces/kyuubi/pods", body, NULL);
    if (rc != 0)
        fail_msg("create pod %s: %d", name, rc);
    if (phase) {
        snprintf(path, sizeof(path), "/api/v1/namespaces/kyuubi/pods/%s/status", name);
        snprintf(body, sizeof(body),
                 "{\"status\":{\"phase\":\"%s\",\"containerStatuses\":[{\"name\":\"c\",\"state\":{"
                 "\"terminated\":{\"exitCode\":0,\"finishedAt\":\"2026-11-29T05:40:39Z\"}}}]}}",
                 phase);
        assert_int_equal(raw(k, "PATCH", path, body, NULL), 0);
    }
}

static int collect_names(const kj_pod *pods, size_t n, int restarted, void *ud)
{
    (void)restarted;
    char(*names)[64] = ud;
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < 256; j++)
            if (!names[j][0]) {
                snprintf(names[j], 64, "%s", pods[i].name);
                break;
            }
    return 0;
}

/* Removes every pod of the namespace at once (test pods carry no finalizer by then). */
static void delete_all(kj_kube *k)
{
    static char names[256][64];
    memset(names, 0, sizeof(names));
    kj_kube_status st;
    kj_err err = {0};
    assert_int_equal(kj_kube_list_pods(k, NULL, NULL, NULL, 0, collect_names, names, &st, &err), 0);
    kj_kube_delete_opts d = {.grace_period_s = 0};
    for (int j = 0; j < 256 && names[j][0]; j++) {
        int rc = kj_kube_delete_pod(k, NULL, names[j], &d, NULL, &st, &err);
        assert_true(rc == 0 || rc == KJ_ENOENT);
    }
}

static void faults(kj_kube *k, const char *json)
{
    int rc = raw(k, "POST", "/_sim/faults", json, NULL);
    if (rc != 0)
        fail_msg("POST /_sim/faults %s: %d", json, rc);
}

/* Total requests kube-sim has served outside /_sim/ (from /_sim/stats). */
static long sim_requests(kj_kube *k)
{
    char *body = NULL;
    assert_int_equal(raw(k, "GET", "/_sim/stats", NULL, &body), 0);
    cJSON *j = cJSON_Parse(body);
    free(body);
    assert_non_null(j);
    long n = -1;
    const char *keys[] = {"requests", "total", "requests_total"};
    for (size_t i = 0; i < 3 && n < 0; i++) {
        cJSON *v = cJSON_GetObjectItem(j, keys[i]);
        if (cJSON_IsNumber(v))
            n = (long)v->valuedouble;
        else if (cJSON_IsObject(v) && cJSON_IsNumber(cJSON_GetObjectItem(v, "total")))
            n = (long)cJSON_GetObjectItem(v, "total")->valuedouble;
    }
    cJSON_Delete(j);
    assert_true(n >= 0);
    return n;
}

/* A number from /_sim/stats by a dotted path ("deletes.removed", "by_code.410"); 0 if absent. */
static long sim_stat(kj_kube *k, const char *dotted)
{
    char *body = NULL, key[128];
    assert_int_equal(raw(k, "GET", "/_sim/stats", NULL, &body), 0);
    cJSON *j = cJSON_Parse(body), *v = j;
    free(body);
    assert_non_null(j);
    snprintf(key, sizeof(key), "%s", dotted);
    for (char *part = key, *dot; v && part; part = dot ? dot + 1 : NULL) {
        dot = strchr(part, '.');
        if (dot)
            *dot = '\0';
        v = cJSON_GetObjectItem(v, part);
    }
    long n = cJSON_IsNumber(v) ? (long)v->valuedouble : 0;
    cJSON_Delete(j);
    return n;
}

/* ---- tests ------------------------------------------------------------- */

typedef struct seen_pods {
    int pages, pods, restarted;
    char names[64][64];
    int n;
    int sleep_first_ms;
    kj_kube *other; /* with sleep_first_ms: lifts the continue TTL from page 2 on */
} seen_pods;

static void faults(kj_kube *k, const char *json);

static int collect(const kj_pod *pods, size_t n, int restarted, void *ud)
{
    seen_pods *s = ud;
    s->pages++;
    s->restarted += restarted;
    for (size_t i = 0; i < n; i++) {
        int dup = 0;
        for (int j = 0; j < s->n; j++)
            dup |= !strcmp(s->names[j], pods[i].name);
        if (!dup && s->n < 64)
            snprintf(s->names[s->n++], 64, "%s", pods[i].name);
        s->pods++;
    }
    if (s->sleep_first_ms && s->pages == 1)
        usleep((useconds_t)s->sleep_first_ms * 1000);
    /* Page 2 came after the 410 (its token expired in the sleep): from here
     * on, tokens live long, so the rest of the list cannot expire again
     * however slow the machine is between two pages. */
    if (s->other && s->pages == 2)
        faults(s->other, "{\"continue_ttl\":300}");
    return 0;
}

static void test_every_call(void **state)
{
    (void)state;
    kj_kube *k = client_flags(sim.cert, 0, 8, 0);
    kj_err err = {0};
    kj_kube_status st;
    kj_pod *p = NULL;
    const char *fin = "kyuubi.apache.org/pod-cleanup";
    delete_all(k);
    for (int i = 0; i < 5; i++) {
        char name[32], tag[32];
        snprintf(name, sizeof(name), "drv-%d", i);
        snprintf(tag, sizeof(tag), "tag-%d", i);
        create_pod(k, name, tag, i == 0 ? "Failed" : NULL, NULL);
    }
    /* list: label selector, pages of 2 */
    seen_pods s = {0};
    assert_int_equal(
        kj_kube_list_pods(k, NULL, "kyuubi-unique-tag", NULL, 2, collect, &s, &st, &err), 0);
    assert_int_equal(s.pods, 5);
    assert_int_equal(s.n, 5);
    assert_int_equal(s.pages, 3);
    /* field selectors */
    memset(&s, 0, sizeof(s));
    assert_int_equal(kj_kube_list_pods(k, "kyuubi", "kyuubi-unique-tag in (tag-0,tag-1)",
                                       "status.phase=Failed", 0, collect, &s, &st, &err),
                     0);
    assert_int_equal(s.pods, 1);
    assert_string_equal(s.names[0], "drv-0");
    assert_int_equal(kj_kube_list_pods(k, NULL, NULL, "spec.bogus=x", 0, collect, &s, &st, &err),
                     KJ_EHTTP);
    assert_int_equal(st.http, 400);
    assert_non_null(strstr(st.message, "field label not supported"));
    /* get */
    assert_int_equal(kj_kube_get_pod(k, NULL, "drv-0", &p, &st, &err), 0);
    assert_string_equal(p->phase, "Failed");
    assert_string_equal(p->unique_tag, "tag-0");
    assert_string_equal(p->app_selector, "spark-tag-0");
    assert_string_equal(p->node_name, "node-1");
    assert_true(p->created_ms > 0);
    assert_int_equal(p->finished_ms, kj_kube_parse_time("2026-11-29T05:40:39Z"));
    char uid[64];
    snprintf(uid, sizeof(uid), "%s", p->uid);
    kj_pod_free(p);
    assert_int_equal(kj_kube_get_pod(k, NULL, "no-such-pod", &p, &st, &err), KJ_ENOENT);
    assert_string_equal(st.reason, "NotFound");
    /* patch: add our finalizer, a failing test, remove it guarded by test */
    char patch[512];
    snprintf(patch, sizeof(patch),
             "[{\"op\":\"add\",\"path\":\"/metadata/finalizers\",\"value\":[\"%s\"]}]", fin);
    assert_int_equal(kj_kube_patch_pod(k, NULL, "drv-1", patch, &p, &st, &err), 0);
    assert_true(kj_pod_has_finalizer(p, fin, NULL));
    char uid1[64];
    snprintf(uid1, sizeof(uid1), "%s", p->uid);
    kj_pod_free(p);
    assert_int_equal(kj_kube_patch_pod(k, NULL, "drv-1",
                                       "[{\"op\":\"test\",\"path\":\"/metadata/finalizers/0\","
                                       "\"value\":\"someone.else/f\"},{\"op\":\"remove\",\"path\":"
                                       "\"/metadata/finalizers/0\"}]",
                                       &p, &st, &err),
                     KJ_ECONFLICT);
    assert_int_equal(st.http, 422);
    assert_string_equal(st.reason, "Invalid");
    assert_null(p);
    /* delete: wrong uid, then the right one (the finalizer keeps it) */
    kj_kube_delete_opts d = {.uid = "00000000-0000-0000-0000-000000000000",
                             .grace_period_s = 0,
                             .propagation = "Background"};
    assert_int_equal(kj_kube_delete_pod(k, NULL, "drv-1", &d, &p, &st, &err), KJ_ECONFLICT);
    assert_int_equal(st.http, 409);
    d.uid = uid1;
    assert_int_equal(kj_kube_delete_pod(k, NULL, "drv-1", &d, &p, &st, &err), 0);
    assert_non_null(p);
    assert_true(p->deletion_ms > 0);
    assert_int_equal(p->deletion_grace_s, 0);
    kj_pod_free(p);
    snprintf(patch, sizeof(patch),
             "[{\"op\":\"test\",\"path\":\"/metadata/finalizers/0\",\"value\":\"%s\"},"
             "{\"op\":\"remove\",\"path\":\"/metadata/finalizers/0\"}]",
             fin);
    assert_int_equal(kj_kube_patch_pod(k, NULL, "drv-1", patch, &p, &st, &err), 0);
    assert_int_equal(p->n_finalizers, 0);
    kj_pod_free(p);
    assert_int_equal(kj_kube_get_pod(k, NULL, "drv-1", &p, &st, &err), KJ_ENOENT);
    /* delete by uid without finalizers: gone; again: 404 */
    d.uid = uid;
    d.grace_period_s = -1;
    d.propagation = NULL;
    assert_int_equal(kj_kube_delete_pod(k, NULL, "drv-0", &d, NULL, &st, &err), 0);
    assert_int_equal(kj_kube_delete_pod(k, NULL, "drv-0", &d, NULL, &st, &err), KJ_ENOENT);

    /* leases */
    kj_lease l = {0}, got, upd;
    assert_int_equal(kj_kube_get_lease(k, NULL, "kjournal-reconciler", &got, &st, &err), KJ_ENOENT);
    snprintf(l.name, sizeof(l.name), "kjournal-reconciler");
    snprintf(l.holder, sizeof(l.holder), "kjournald-0");
    l.duration_s = 15;
    l.acquire_ms = l.renew_ms = kj_now_ms();
    assert_int_equal(kj_kube_create_lease(k, &l, &got, &st, &err), 0);
    assert_string_equal(got.holder, "kjournald-0");
    assert_string_equal(got.namespace_, "kyuubi");
    assert_true(got.resource_version[0]);
    assert_int_equal(kj_kube_create_lease(k, &l, &upd, &st, &err), KJ_ECONFLICT);
    assert_string_equal(st.reason, "AlreadyExists");
    kj_lease stale = got;
    got.renew_ms += 5000;
    snprintf(got.holder, sizeof(got.holder), "kjournald-1");
    got.transitions = 1;
    assert_int_equal(kj_kube_update_lease(k, &got, &upd, &st, &err), 0);
    assert_string_equal(upd.holder, "kjournald-1");
    assert_int_equal(upd.transitions, 1);
    assert_string_not_equal(upd.resource_version, stale.resource_version);
    assert_int_equal(kj_kube_update_lease(k, &stale, &upd, &st, &err), KJ_ECONFLICT);
    assert_int_equal(st.http, 409);
    assert_int_equal(kj_kube_get_lease(k, NULL, "kjournal-reconciler", &got, &st, &err), 0);
    assert_string_equal(got.holder, "kjournald-1");
    raw(k, "DELETE", "/apis/coordination.k8s.io/v1/namespaces/kyuubi/leases/kjournal-reconciler",
        NULL, NULL);
    delete_all(k);
    kj_kube_free(k);
}

/* kubeconfig variants: file paths and inline -data, token and client cert, contexts. */
static void test_kubeconfig_variants(void **state)
{
    (void)state;
    char *ca = read_all(sim.cert), *cert = read_all(sim.wrong), *key = read_all(sim.wrongkey);
    char *ca64 = b64(ca), *cert64 = b64(cert), *key64 = b64(key);
    char kc[300], text[16384];
    path_in(kc, sizeof(kc), "kubeconfig");
    const char *ctxs = "contexts:\n"
                       "- name: main\n  context: {cluster: sim, user: u, namespace: kyuubi}\n"
                       "- name: other\n  context: {cluster: sim, user: u, namespace: elsewhere}\n";
    struct {
        const char *what;
        const char *cluster_extra;
        const char *user;
        const char *context;
        const char *want_ns;
    } v[4];
    char c_file[400], c_data[4096], u_tokfile[400], u_cert[12288];
    snprintf(c_file, sizeof(c_file), "    certificate-authority: %s\n", sim.cert);
    snprintf(c_data, sizeof(c_data), "    certificate-authority-data: %s\n", ca64);
    snprintf(u_tokfile, sizeof(u_tokfile), "    tokenFile: %s\n", sim.tokfile);
    snprintf(u_cert, sizeof(u_cert),
             "    token: " TOKEN1 "\n    client-certificate-data: %s\n    client-key-data: %s\n",
             cert64, key64);
    v[0].what = "CA file, token file";
    v[0].cluster_extra = c_file;
    v[0].user = u_tokfile;
    v[0].context = NULL;
    v[0].want_ns = "kyuubi";
    v[1].what = "inline CA, inline token";
    v[1].cluster_extra = c_data;
    v[1].user = "    token: " TOKEN1 "\n";
    v[1].context = NULL;
    v[1].want_ns = "kyuubi";
    v[2].what = "inline CA, client certificate data";
    v[2].cluster_extra = c_data;
    v[2].user = u_cert;
    v[2].context = NULL;
    v[2].want_ns = "kyuubi";
    v[3].what = "--context other";
    v[3].cluster_extra = c_file;
    v[3].user = u_tokfile;
    v[3].context = "other";
    v[3].want_ns = "elsewhere";
    for (int i = 0; i < 4; i++) {
        snprintf(text, sizeof(text),
                 "apiVersion: v1\nkind: Config\ncurrent-context: main\nclusters:\n- name: sim\n"
                 "  cluster:\n    server: %s\n%susers:\n- name: u\n  user:\n%s%s",
                 sim.server, v[i].cluster_extra, v[i].user, ctxs);
        write_file(kc, text);
        kj_kube_flags f;
        kj_kube_flags_init(&f);
        f.kubeconfig = kc;
        f.context = v[i].context;
        kj_kube_config *cfg;
        kj_err err = {0};
        if (kj_kube_config_load(&f, &cfg, &err) < 0)
            fail_msg("%s: %s", v[i].what, err.msg);
        assert_string_equal(kj_kube_config_namespace(cfg), v[i].want_ns);
        kj_kube *k;
        assert_int_equal(kj_kube_new(cfg, &k, &err), 0);
        kj_kube_config_free(cfg);
        seen_pods s = {0};
        kj_kube_status st;
        int rc = kj_kube_list_pods(k, NULL, NULL, NULL, 0, collect, &s, &st, &err);
        if (rc != 0)
            fail_msg("%s: %d %s", v[i].what, rc, err.msg);
        assert_int_equal(s.pages, 1);
        kj_kube_free(k);
    }
    /* The inline client certificate is really loaded: a key that does not
     * match it is refused by the TLS library before anything is sent. */
    char *otherkey = read_all(sim.key), *otherkey64 = b64(otherkey);
    snprintf(text, sizeof(text),
             "current-context: main\nclusters:\n- name: sim\n  cluster:\n    server: %s\n%s"
             "users:\n- name: u\n  user:\n    token: " TOKEN1 "\n    client-certificate-data: %s\n"
             "    client-key-data: %s\n%s",
             sim.server, c_data, cert64, otherkey64, ctxs);
    write_file(kc, text);
    kj_kube_flags f;
    kj_kube_flags_init(&f);
    f.kubeconfig = kc;
    kj_kube_config *cfg;
    kj_err err = {0};
    assert_int_equal(kj_kube_config_load(&f, &cfg, &err), 0);
    kj_kube *k;
    assert_int_equal(kj_kube_new(cfg, &k, &err), 0);
    kj_kube_config_free(cfg);
    kj_kube_status st;
    kj_lease l;
    assert_int_equal(kj_kube_get_lease(k, NULL, "none", &l, &st, &err), KJ_EAUTH);
    fprintf(stderr, "mismatched client key: %s\n", err.msg);
    assert_null(strstr(err.msg, "PRIVATE"));
    assert_null(strstr(err.msg, "secret"));
    kj_kube_free(k);
    free(otherkey);
    free(otherkey64);

    free(ca);
    free(cert);
    free(key);
    free(ca64);
    free(cert64);
    free(key64);
    unlink(kc);
}

static void test_in_cluster(void **state)
{
    (void)state;
    char sa[300], p[400], port[16];
    path_in(sa, sizeof(sa), "sa");
    mkdir(sa, 0700);
    snprintf(p, sizeof(p), "%s/token", sa);
    write_file(p, TOKEN1);
    snprintf(p, sizeof(p), "%s/ca.crt", sa);
    char *ca = read_all(sim.cert);
    write_file(p, ca);
    free(ca);
    snprintf(p, sizeof(p), "%s/namespace", sa);
    write_file(p, "kyuubi");
    snprintf(port, sizeof(port), "%d", sim.port);
    setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", port, 1);
    kj_kube_flags f;
    kj_kube_flags_init(&f);
    f.sa_dir = sa;
    kj_kube_config *cfg;
    kj_err err = {0};
    assert_int_equal(kj_kube_config_load(&f, &cfg, &err), 0);
    assert_string_equal(kj_kube_config_source(cfg), "in-cluster");
    assert_string_equal(kj_kube_config_server(cfg), sim.server);
    kj_kube *k;
    assert_int_equal(kj_kube_new(cfg, &k, &err), 0);
    kj_kube_config_free(cfg);
    kj_kube_status st;
    kj_lease l;
    assert_int_equal(kj_kube_get_lease(k, NULL, "none", &l, &st, &err), KJ_ENOENT);
    kj_kube_free(k);
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
}

typedef struct cap {
    int done, rc, attempts;
    kj_kube_status st;
    char msg[512];
} cap;

static void on_cap(kj_kube *k, const kj_kube_result *r, void *ud)
{
    (void)k;
    cap *c = ud;
    c->done++;
    c->rc = r->rc;
    c->attempts = r->attempts;
    c->st = r->status;
    snprintf(c->msg, sizeof(c->msg), "%s", r->err.msg);
}

static void test_wrong_ca(void **state)
{
    (void)state;
    const char *cas[] = {sim.wrong, NULL /* system store */};
    for (int i = 0; i < 2; i++) {
        kj_kube *k = client_flags(cas[i], 0, 4, 0);
        cap c = {0};
        kj_kube_req r = KJ_KUBE_REQ_INIT;
        r.op = KJ_KUBE_GET_POD;
        r.name = "x";
        assert_int_equal(kj_kube_submit(k, &r, on_cap, &c), 0);
        int64_t t0 = kj_mono_ms();
        assert_int_equal(kj_kube_run(k, RUN_MS), 0);
        assert_int_equal(c.rc, KJ_EAUTH);
        assert_int_equal(c.attempts, 1);
        /* at once: no retry, no wait for the 30 s deadline */
        assert_true(kj_mono_ms() - t0 < SLACK_MS);
        assert_non_null(strstr(c.msg, "TLS"));
        assert_null(strstr(c.msg, "secret"));
        kj_kube_free(k);
    }
    /* insecure, asked for explicitly: accepted */
    kj_kube *k = client_flags(sim.wrong, 1, 4, 0);
    kj_err err = {0};
    kj_kube_status st;
    kj_lease l;
    assert_int_equal(kj_kube_get_lease(k, NULL, "none", &l, &st, &err), KJ_ENOENT);
    kj_kube_free(k);
}

/* The server's token changes (kube-sim restarted with another); the file is
 * rewritten; the client reads it again after the 401 and goes on. */
static void test_token_rotation(void **state)
{
    (void)state;
    write_file(sim.tokfile, TOKEN1 "\n");
    kj_kube *k = client_flags(sim.cert, 0, 4, 0);
    kj_err err = {0};
    kj_kube_status st;
    kj_lease l;
    assert_int_equal(kj_kube_get_lease(k, NULL, "none", &l, &st, &err), KJ_ENOENT);
    sim_stop();
    sim_start(TOKEN2, NULL);
    /* file not yet rotated: 401 -> KJ_EAUTH, no loop */
    assert_int_equal(kj_kube_get_lease(k, NULL, "none", &l, &st, &err), KJ_EAUTH);
    assert_int_equal(st.http, 401);
    assert_null(strstr(err.msg, "secret"));
    write_file(sim.tokfile, TOKEN2 "\n");
    assert_int_equal(kj_kube_get_lease(k, NULL, "none", &l, &st, &err), KJ_ENOENT);
    kj_kube_stats stats;
    kj_kube_get_stats(k, &stats);
    assert_true(stats.token_reloads >= 2);
    kj_kube_free(k);
    write_file(sim.tokfile, TOKEN1 "\n");
    sim_stop();
    sim_start(TOKEN1, NULL);
}

typedef struct many {
    int done, ok, rcs[20], other;
    int64_t worst_ms;
} many;

static void on_many(kj_kube *k, const kj_kube_result *r, void *ud)
{
    (void)k;
    many *m = ud;
    m->done++;
    if (r->rc == 0)
        m->ok++;
    else if (r->rc < 0 && r->rc > -20)
        m->rcs[-r->rc]++;
    else
        m->other++;
}

static void submit_gets(kj_kube *k, int n, int64_t timeout_ms, many *m)
{
    for (int i = 0; i < n; i++) {
        kj_kube_req r = KJ_KUBE_REQ_INIT;
        char name[32];
        snprintf(name, sizeof(name), "load-%d", i % 20);
        r.op = KJ_KUBE_GET_POD;
        r.name = name;
        r.timeout_ms = timeout_ms;
        assert_int_equal(kj_kube_submit(k, &r, on_many, m), 0);
    }
}

static void test_faults(void **state)
{
    (void)state;
    kj_kube *k = client_flags(sim.cert, 0, 32, 0);
    delete_all(k);
    for (int i = 0; i < 20; i++) {
        char name[32];
        snprintf(name, sizeof(name), "load-%d", i);
        create_pod(k, name, "load", NULL, NULL);
    }
    /* 30% of requests answered 429 (Retry-After), 500 or 503 */
    faults(k, "{\"error_rate\":30,\"latency_ms\":0,\"drop_rate\":0}");
    long before = sim_requests(k);
    many m = {0};
    int64_t t0 = kj_mono_ms();
    submit_gets(k, 100, REQ_MS, &m);
    assert_int_equal(kj_kube_run(k, RUN_MS), 0);
    long used = sim_requests(k) - before;
    fprintf(stderr, "errors 30%%: %d ok of 100 in %lld ms, %ld requests\n", m.ok,
            (long long)(kj_mono_ms() - t0), used);
    assert_int_equal(m.done, 100);
    assert_int_equal(m.ok + m.rcs[-KJ_ETIMEDOUT] + m.rcs[-KJ_EUNAVAIL], 100);
    assert_true(m.ok >= 95);
    assert_true(used <= 100 * 3);

    /* dropped connections: idempotent calls go through */
    faults(k, "{\"error_rate\":0,\"drop_rate\":20}");
    before = sim_requests(k);
    memset(&m, 0, sizeof(m));
    submit_gets(k, 100, REQ_MS, &m);
    assert_int_equal(kj_kube_run(k, RUN_MS), 0);
    used = sim_requests(k) - before;
    fprintf(stderr, "drops 20%%: %d ok of 100, %ld requests\n", m.ok, used);
    assert_true(m.ok >= 97);
    assert_true(used <= 100 * 3);

    /* latency beyond the deadline: KJ_ETIMEDOUT at the deadline (300 ms),
     * not when the answers come (10 s) */
    faults(k, "{\"drop_rate\":0,\"latency_ms\":10000,\"jitter_ms\":0}");
    memset(&m, 0, sizeof(m));
    before = sim_requests(k);
    t0 = kj_mono_ms();
    submit_gets(k, 10, 300, &m);
    assert_int_equal(kj_kube_run(k, RUN_MS), 0);
    int64_t el = kj_mono_ms() - t0;
    assert_int_equal(m.rcs[-KJ_ETIMEDOUT], 10);
    assert_true(el < 300 + SLACK_MS);
    faults(k, "{\"latency_ms\":0,\"error_rate\":0,\"drop_rate\":0}");
    /* kube-sim counts a request when it answers it: wait until it has
     * answered the ten held ones, so that they count here and not in the
     * next test's request totals */
    for (int i = 0; sim_requests(k) - before < 10; i++) {
        if (i > RUN_MS / 100)
            fail_msg("kube-sim still holds the delayed requests");
        usleep(100000);
    }
    delete_all(k);
    kj_kube_free(k);
}

typedef struct uids {
    char (*name)[64];
    char (*uid)[64];
    int n, cap;
} uids;

static int collect_uids(const kj_pod *pods, size_t n, int restarted, void *ud)
{
    uids *u = ud;
    if (restarted)
        u->n = 0;
    for (size_t i = 0; i < n && u->n < u->cap; i++, u->n++) {
        snprintf(u->name[u->n], 64, "%s", pods[i].name);
        snprintf(u->uid[u->n], 64, "%s", pods[i].uid);
    }
    return 0;
}

/* Mutations under faults: each call succeeds or fails with an error its kind
 * allows; nothing is applied twice; requests stay bounded. */
static void test_faults_mutations(void **state)
{
    (void)state;
    kj_kube *k = client_flags(sim.cert, 0, 16, 0);
    kj_kube_status st;
    kj_err err = {0};
    delete_all(k);
    for (int i = 0; i < 20; i++) {
        char name[32];
        snprintf(name, sizeof(name), "mut-%d", i);
        create_pod(k, name, "mut", NULL, NULL);
    }
    faults(k, "{\"error_rate\":30,\"drop_rate\":10,\"retry_after\":1}");
    long before = sim_requests(k), removed0 = sim_stat(k, "deletes.removed");
    /* list under faults, pages of 3 */
    static char name[32][64], uid[32][64];
    uids u = {name, uid, 0, 32};
    assert_int_equal(
        kj_kube_list_pods(k, NULL, "kyuubi-unique-tag=mut", NULL, 3, collect_uids, &u, &st, &err),
        0);
    assert_int_equal(u.n, 20);
    /* patches guarded by test: retried; bare patches: not retried on 500/drop */
    many guarded = {0}, bare = {0}, dels = {0};
    for (int i = 0; i < 20; i++) {
        char patch[512];
        kj_kube_req r = KJ_KUBE_REQ_INIT;
        r.op = KJ_KUBE_PATCH_POD;
        r.name = u.name[i];
        r.timeout_ms = REQ_MS;
        snprintf(patch, sizeof(patch),
                 "[{\"op\":\"test\",\"path\":\"/metadata/uid\",\"value\":\"%s\"},"
                 "{\"op\":\"add\",\"path\":\"/metadata/labels/patched\",\"value\":\"yes\"}]",
                 u.uid[i]);
        r.body = patch;
        assert_int_equal(kj_kube_submit(k, &r, on_many, &guarded), 0);
        r.body = "[{\"op\":\"add\",\"path\":\"/metadata/labels/bare\",\"value\":\"yes\"}]";
        assert_int_equal(kj_kube_submit(k, &r, on_many, &bare), 0);
    }
    assert_int_equal(kj_kube_run(k, RUN_MS), 0);
    fprintf(stderr, "faults: guarded patches %d ok; bare patches %d ok, %d unavailable, %d http\n",
            guarded.ok, bare.ok, bare.rcs[-KJ_EUNAVAIL], bare.rcs[-KJ_EHTTP]);
    assert_int_equal(guarded.ok, 20);
    assert_int_equal(bare.ok + bare.rcs[-KJ_EUNAVAIL] + bare.rcs[-KJ_EHTTP], 20);
    /* deletes with uid preconditions: retried; each pod removed exactly once */
    for (int i = 0; i < 20; i++) {
        kj_kube_req r = KJ_KUBE_REQ_INIT;
        r.op = KJ_KUBE_DELETE_POD;
        r.name = u.name[i];
        r.precondition_uid = u.uid[i];
        r.grace_period_s = 0;
        r.timeout_ms = REQ_MS;
        assert_int_equal(kj_kube_submit(k, &r, on_many, &dels), 0);
    }
    assert_int_equal(kj_kube_run(k, RUN_MS), 0);
    assert_int_equal(dels.ok + dels.rcs[-KJ_ENOENT], 20);
    long used = sim_requests(k) - before;
    faults(k, "{\"error_rate\":0,\"drop_rate\":0}");
    assert_int_equal(sim_stat(k, "deletes.removed") - removed0, 20);
    fprintf(stderr, "faults: 81 operations took %ld requests\n", used);
    assert_true(used <= 81 * 3);

    /* absurd Retry-After (3600 s): clamped to 10 s, which a 9 s deadline
     * cannot wait: KJ_ETIMEDOUT at once (not at the deadline), one request each */
    faults(k, "{\"error_rate\":100,\"error_codes\":[429],\"retry_after\":3600}");
    before = sim_requests(k);
    many m = {0};
    int64_t t0 = kj_mono_ms();
    submit_gets(k, 10, 9000, &m);
    assert_int_equal(kj_kube_run(k, RUN_MS), 0);
    assert_int_equal(m.rcs[-KJ_ETIMEDOUT], 10);
    assert_true(kj_mono_ms() - t0 < 9000 - 3000);
    assert_int_equal(sim_requests(k) - before, 10);
    /* always 503 with Retry-After 1: a few attempts, then KJ_ETIMEDOUT within the deadline */
    faults(k, "{\"error_rate\":100,\"error_codes\":[503],\"retry_after\":1}");
    before = sim_requests(k);
    memset(&m, 0, sizeof(m));
    t0 = kj_mono_ms();
    submit_gets(k, 10, 2500, &m);
    assert_int_equal(kj_kube_run(k, RUN_MS), 0);
    assert_int_equal(m.rcs[-KJ_ETIMEDOUT], 10);
    assert_true(kj_mono_ms() - t0 <= 2500 + SLACK_MS);
    assert_true(sim_requests(k) - before <= 30);
    /* always 500 on a bare patch: one request, KJ_EHTTP */
    faults(k, "{\"error_rate\":100,\"error_codes\":[500]}");
    assert_int_equal(kj_kube_patch_pod(k, NULL, "x", "[]", NULL, &st, &err), KJ_EHTTP);
    assert_int_equal(st.http, 500);
    faults(k, "{\"error_rate\":0,\"error_codes\":[429,500,503],\"retry_after\":1}");
    kj_kube_free(k);
}

/* The executor's case: thousands of deletes with uid preconditions, bounded. */
static void test_bulk_deletes(void **state)
{
    (void)state;
    enum { N = 2000 };
    kj_kube *k = client_flags(sim.cert, 0, 32, 0);
    delete_all(k);
    size_t cap = (size_t)N * 200 + 64;
    char *seed = malloc(cap);
    size_t off = (size_t)snprintf(seed, cap, "[");
    for (int i = 0; i < N; i++)
        off += (size_t)snprintf(seed + off, cap - off,
                                "%s{\"metadata\":{\"name\":\"bulk-%d\",\"namespace\":\"kyuubi\","
                                "\"labels\":{\"kyuubi-unique-tag\":\"bulk\"}},\"spec\":{"
                                "\"containers\":[{\"name\":\"c\",\"image\":\"x\"}]}}",
                                i ? "," : "", i);
    snprintf(seed + off, cap - off, "]");
    assert_int_equal(raw(k, "POST", "/_sim/seed", seed, NULL), 0);
    free(seed);
    uids u = {malloc(N * 64), malloc(N * 64), 0, N};
    kj_kube_status st;
    kj_err err = {0};
    int64_t t0 = kj_mono_ms();
    assert_int_equal(kj_kube_list_pods(k, NULL, "kyuubi-unique-tag=bulk", NULL, 500, collect_uids,
                                       &u, &st, &err),
                     0);
    int64_t tl = kj_mono_ms() - t0;
    assert_int_equal(u.n, N);
    long removed0 = sim_stat(k, "deletes.removed");
    kj_kube_stats s0;
    kj_kube_get_stats(k, &s0);
    uint64_t conns0 = s0.connects;
    many m = {0};
    t0 = kj_mono_ms();
    for (int i = 0; i < N; i++) {
        kj_kube_req r = KJ_KUBE_REQ_INIT;
        r.op = KJ_KUBE_DELETE_POD;
        r.name = u.name[i];
        r.precondition_uid = u.uid[i];
        assert_int_equal(kj_kube_submit(k, &r, on_many, &m), 0);
    }
    assert_int_equal(kj_kube_run(k, RUN_MS), 0);
    int64_t el = kj_mono_ms() - t0;
    kj_kube_stats stats;
    kj_kube_get_stats(k, &stats);
    fprintf(stderr,
            "bulk: list of %d pods in pages of 500: %lld ms; %d deletes, 32 in flight: "
            "%lld ms, %.0f/s (max in flight seen %d, %llu new connections, %llu before)\n",
            N, (long long)tl, N, (long long)el, N * 1000.0 / (double)(el ? el : 1),
            stats.max_in_flight_seen, (unsigned long long)stats.connects,
            (unsigned long long)conns0);
    assert_int_equal(m.ok, N);
    assert_true(stats.max_in_flight_seen <= 32);
    assert_int_equal(sim_stat(k, "deletes.removed") - removed0, N);
    free(u.name);
    free(u.uid);
    kj_kube_free(k);
}

/* An expired continue token mid-list (kube-sim with a short --continue-ttl). */
static void test_expired_continue(void **state)
{
    (void)state;
    sim_stop();
    sim_start(TOKEN1, "--continue-ttl", "1", NULL);
    kj_kube *k = client_flags(sim.cert, 0, 8, 0);
    for (int i = 0; i < 6; i++) {
        char name[32];
        snprintf(name, sizeof(name), "exp-%d", i);
        create_pod(k, name, "exp", NULL, NULL);
    }
    seen_pods s = {0};
    s.sleep_first_ms = 2100;
    s.other = client_flags(sim.cert, 0, 8, 0);
    kj_kube_status st;
    kj_err err = {0};
    assert_int_equal(
        kj_kube_list_pods(k, NULL, "kyuubi-unique-tag=exp", NULL, 2, collect, &s, &st, &err), 0);
    assert_int_equal(s.n, 6); /* every pod seen, at least once */
    assert_true(s.pages >= 3);
    assert_true(sim_stat(k, "by_code.410") >= 1);
    delete_all(k);
    kj_kube_free(k);
    kj_kube_free(s.other);
    sim_stop();
    sim_start(TOKEN1, NULL);
}

/* A client from a kubeconfig whose user is user_yaml (indented under "user:"),
 * with the server's CA inline. */
static kj_kube *client_kubeconfig(const char *user_yaml)
{
    char kc[300], *text = NULL;
    char *ca = read_all(sim.cert), *ca64 = b64(ca);
    size_t n = strlen(user_yaml) + strlen(ca64) + 1024;
    path_in(kc, sizeof(kc), "kubeconfig-cert");
    text = malloc(n);
    snprintf(text, n,
             "apiVersion: v1\nkind: Config\ncurrent-context: main\nclusters:\n- name: sim\n"
             "  cluster:\n    server: %s\n    certificate-authority-data: %s\nusers:\n- name: u\n"
             "  user:\n%scontexts:\n- name: main\n  context: {cluster: sim, user: u, namespace: "
             "kyuubi}\n",
             sim.server, ca64, user_yaml);
    write_file(kc, text);
    kj_kube_flags f;
    kj_kube_flags_init(&f);
    f.kubeconfig = kc;
    kj_kube_config *cfg;
    kj_err err = {0};
    if (kj_kube_config_load(&f, &cfg, &err) < 0)
        fail_msg("%s", err.msg);
    kj_kube *k;
    assert_int_equal(kj_kube_new(cfg, &k, &err), 0);
    kj_kube_config_free(cfg);
    unlink(kc);
    free(text);
    free(ca);
    free(ca64);
    return k;
}

/* A client from flags with a client certificate and no token. */
static kj_kube *client_cert_flags(const char *cert, const char *key)
{
    kj_kube_flags f;
    kj_kube_flags_init(&f);
    f.server = sim.server;
    f.ca_file = sim.cert;
    f.client_cert = cert;
    f.client_key = key;
    f.namespace_ = "kyuubi";
    kj_kube_config *cfg;
    kj_err err = {0};
    if (kj_kube_config_load(&f, &cfg, &err) < 0)
        fail_msg("%s", err.msg);
    kj_kube *k;
    assert_int_equal(kj_kube_new(cfg, &k, &err), 0);
    kj_kube_config_free(cfg);
    return k;
}

/* kube-sim with --client-ca and no --token: the client authenticates with a
 * certificate from files (flags, kubeconfig paths) or inline in the
 * kubeconfig; a certificate from another CA, or none, gets 401: KJ_EAUTH,
 * one request each. */
static void test_client_cert(void **state)
{
    (void)state;
    sim_stop();
    sim_start(NULL, "--client-ca", sim.client_ca, NULL);
    char *crt = read_all(sim.client), *key = read_all(sim.clientkey);
    char *crt64 = b64(crt), *key64 = b64(key);
    size_t un = strlen(crt64) + strlen(key64) + 1024;
    char *u_paths = malloc(un), *u_data = malloc(un);
    snprintf(u_paths, un, "    client-certificate: %s\n    client-key: %s\n", sim.client,
             sim.clientkey);
    snprintf(u_data, un, "    client-certificate-data: %s\n    client-key-data: %s\n", crt64,
             key64);
    kj_kube *ks[3] = {client_cert_flags(sim.client, sim.clientkey), client_kubeconfig(u_paths),
                      client_kubeconfig(u_data)};
    const char *what[3] = {"flags", "kubeconfig paths", "kubeconfig inline data"};
    kj_kube_status st;
    kj_err err = {0};
    kj_pod *p = NULL;
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof(name), "cert-%d", i);
        create_pod(ks[i], name, "cert", NULL, NULL);
        int rc = kj_kube_get_pod(ks[i], NULL, name, &p, &st, &err);
        if (rc != 0)
            fail_msg("client certificate from %s: %d %s", what[i], rc, err.msg);
        kj_kube_delete_opts d = {.uid = p->uid, .grace_period_s = 0};
        assert_int_equal(kj_kube_delete_pod(ks[i], NULL, name, &d, NULL, &st, &err), 0);
        kj_pod_free(p);
        p = NULL;
    }
    assert_int_equal(sim_stat(ks[0], "by_code.401"), 0);
    assert_int_equal(sim_stat(ks[0], "deletes.removed"), 3);
    for (int i = 0; i < 3; i++)
        kj_kube_free(ks[i]);

    /* another CA's certificate; no certificate (and no token) */
    kj_kube *bad[2] = {client_cert_flags(sim.foreign, sim.foreignkey),
                       client_cert_flags(NULL, NULL)};
    for (int i = 0; i < 2; i++) {
        kj_lease l;
        assert_int_equal(kj_kube_get_lease(bad[i], NULL, "none", &l, &st, &err), KJ_EAUTH);
        assert_int_equal(st.http, 401);
        assert_string_equal(st.reason, "Unauthorized");
        assert_null(strstr(err.msg, "PRIVATE"));
    }
    assert_int_equal(sim_stat(bad[0], "by_code.401"), 2);
    for (int i = 0; i < 2; i++)
        kj_kube_free(bad[i]);
    free(crt);
    free(key);
    free(crt64);
    free(key64);
    free(u_paths);
    free(u_data);
    sim_stop();
    sim_start(TOKEN1, NULL);
}

/* The pod's finalizers as one comma-separated string, for comparisons. */
static void pod_finalizers(kj_kube *k, const char *name, char *out, size_t n)
{
    kj_pod *p = NULL;
    kj_kube_status st;
    kj_err err = {0};
    out[0] = '\0';
    assert_int_equal(kj_kube_get_pod(k, NULL, name, &p, &st, &err), 0);
    for (size_t i = 0, off = 0; i < p->n_finalizers && off < n; i++)
        off += (size_t)snprintf(out + off, n - off, "%s%s", i ? "," : "", p->finalizers[i]);
    kj_pod_free(p);
}

static void pod_uid(kj_kube *k, const char *name, char *uid, size_t n)
{
    kj_pod *p = NULL;
    kj_kube_status st;
    kj_err err = {0};
    assert_int_equal(kj_kube_get_pod(k, NULL, name, &p, &st, &err), 0);
    snprintf(uid, n, "%s", p->uid);
    kj_pod_free(p);
}

/* A stats snapshot for the drop-after checks. */
typedef struct {
    long mutations, removed, marked, noop, not_found, lost, requests;
    uint64_t retries;
} lost_stats;

static void lost_snapshot(kj_kube *k, lost_stats *s)
{
    kj_kube_stats ks;
    s->mutations = sim_stat(k, "mutations");
    s->removed = sim_stat(k, "deletes.removed");
    s->marked = sim_stat(k, "deletes.marked");
    s->noop = sim_stat(k, "deletes.noop");
    s->not_found = sim_stat(k, "deletes.not_found");
    s->lost = sim_stat(k, "faults.dropped_after");
    s->requests = sim_requests(k);
    kj_kube_get_stats(k, &ks);
    s->retries = ks.retries;
}

/* The answer to a mutation is lost after kube-sim applied it (drop-after):
 * the client repeats only what is safe to repeat, and the repeat sees the
 * first attempt's effect, never applies it again. Two paths repeat: the
 * client's own retry, after a connection it had just opened closed (k1, a
 * client whose first request this is), and libcurl's resend after a
 * kept-alive connection closed (k, which has connections open); a call that
 * is not safe to repeat must escape both. */
static void test_lost_answers(void **state)
{
    (void)state;
    const char *fin = "kyuubi.apache.org/pod-cleanup";
    kj_kube *k = client_flags(sim.cert, 0, 4, 0);
    kj_kube_status st;
    kj_err err = {0};
    char uid[64], fins[256], patch[512];
    lost_stats a, b;
    delete_all(k);
    create_pod(k, "lost-del", "lost", NULL, NULL);
    create_pod(k, "lost-mark", "lost", NULL, "other.io/keep");
    create_pod(k, "lost-fin", "lost", NULL, "other.io/keep");
    create_pod(k, "lost-bare", "lost", NULL, "other.io/keep");
    for (int i = 0; i < 2; i++) {
        const char *name = i ? "lost-bare" : "lost-fin";
        snprintf(patch, sizeof(patch),
                 "[{\"op\":\"add\",\"path\":\"/metadata/finalizers/0\",\"value\":\"%s\"}]", fin);
        assert_int_equal(kj_kube_patch_pod(k, NULL, name, patch, NULL, &st, &err), 0);
    }

    /* DELETE with a uid precondition: repeated by the client; the repeat
     * answers 404, which the caller takes as done */
    pod_uid(k, "lost-del", uid, sizeof(uid));
    lost_snapshot(k, &a);
    faults(k, "{\"fail_nth\":[\"delete:1:drop-after\"]}");
    kj_kube_delete_opts d = {.uid = uid, .grace_period_s = 0};
    kj_kube *k1 = client_flags(sim.cert, 0, 4, 0);
    assert_int_equal(kj_kube_delete_pod(k1, NULL, "lost-del", &d, NULL, &st, &err), KJ_ENOENT);
    assert_int_equal(st.http, 404);
    kj_kube_stats s1;
    kj_kube_get_stats(k1, &s1);
    assert_int_equal(s1.retries, 1);
    kj_kube_free(k1);
    lost_snapshot(k, &b);
    assert_int_equal(b.lost - a.lost, 1);
    assert_int_equal(b.removed - a.removed, 1);
    assert_int_equal(b.not_found - a.not_found, 1);
    assert_int_equal(b.mutations - a.mutations, 1);
    assert_int_equal(b.requests - a.requests, 2);

    /* the same on a kept-alive connection, on a pod a finalizer keeps: the
     * repeat answers 200 and changes nothing */
    pod_uid(k, "lost-mark", uid, sizeof(uid));
    lost_snapshot(k, &a);
    faults(k, "{\"fail_nth\":[\"delete:1:drop-after\"]}");
    assert_int_equal(kj_kube_delete_pod(k, NULL, "lost-mark", &d, NULL, &st, &err), 0);
    lost_snapshot(k, &b);
    assert_int_equal(b.marked - a.marked, 1);
    assert_int_equal(b.noop - a.noop, 1);
    assert_int_equal(b.mutations - a.mutations, 1);
    assert_int_equal(b.requests - a.requests, 2);

    /* JSON Patch removing our finalizer, guarded by test: repeated; the
     * repeat fails its test (422: KJ_ECONFLICT, the caller re-reads), and
     * the finalizer behind ours is not removed by a second removal */
    snprintf(patch, sizeof(patch),
             "[{\"op\":\"test\",\"path\":\"/metadata/finalizers/0\",\"value\":\"%s\"},"
             "{\"op\":\"remove\",\"path\":\"/metadata/finalizers/0\"}]",
             fin);
    lost_snapshot(k, &a);
    faults(k, "{\"fail_nth\":[\"patch:1:drop-after\"]}");
    kj_pod *p = NULL;
    k1 = client_flags(sim.cert, 0, 4, 0);
    assert_int_equal(kj_kube_patch_pod(k1, NULL, "lost-fin", patch, &p, &st, &err), KJ_ECONFLICT);
    assert_int_equal(st.http, 422);
    assert_null(p);
    kj_kube_get_stats(k1, &s1);
    assert_int_equal(s1.retries, 1);
    kj_kube_free(k1);
    lost_snapshot(k, &b);
    assert_int_equal(b.lost - a.lost, 1);
    assert_int_equal(b.mutations - a.mutations, 1);
    assert_int_equal(b.requests - a.requests, 2);
    pod_finalizers(k, "lost-fin", fins, sizeof(fins));
    assert_string_equal(fins, "other.io/keep");

    /* the same removal without test, from the client with connections open:
     * not repeated by anyone, KJ_EUNAVAIL; applied once */
    lost_snapshot(k, &a);
    faults(k, "{\"fail_nth\":[\"patch:1:drop-after\"]}");
    assert_int_equal(kj_kube_patch_pod(k, NULL, "lost-bare",
                                       "[{\"op\":\"remove\",\"path\":\"/metadata/finalizers/0\"}]",
                                       NULL, &st, &err),
                     KJ_EUNAVAIL);
    fprintf(stderr, "lost answer of a bare patch: %s\n", err.msg);
    lost_snapshot(k, &b);
    assert_int_equal(b.lost - a.lost, 1);
    assert_int_equal(b.mutations - a.mutations, 1);
    assert_int_equal(b.requests - a.requests, 1);
    assert_int_equal(b.retries - a.retries, 0);
    pod_finalizers(k, "lost-bare", fins, sizeof(fins));
    assert_string_equal(fins, "other.io/keep");

    faults(k, "{\"fail_nth\":[]}");
    const char *left[] = {"lost-mark", "lost-fin", "lost-bare"};
    for (int i = 0; i < 3; i++) {
        char path[128];
        snprintf(path, sizeof(path), "/api/v1/namespaces/kyuubi/pods/%s", left[i]);
        assert_int_equal(raw(k, "PATCH", path, "{\"metadata\":{\"finalizers\":null}}", NULL), 0);
    }
    delete_all(k);
    kj_kube_free(k);
}

/* Throughput: many GETs and patches with N in flight. */
static void test_throughput(void **state)
{
    (void)state;
    int inflights[] = {1, 8, 32};
    kj_kube *k = client_flags(sim.cert, 0, 32, 0);
    for (int i = 0; i < 20; i++) {
        char name[32];
        snprintf(name, sizeof(name), "load-%d", i);
        create_pod(k, name, "load", NULL, NULL);
    }
    for (size_t j = 0; j < sizeof(inflights) / sizeof(inflights[0]); j++) {
        kj_kube_set_limits(k, 0, 1, inflights[j]);
        many m = {0};
        int n = inflights[j] == 1 ? 300 : 1000;
        int64_t t0 = kj_mono_ms();
        submit_gets(k, n, REQ_MS, &m);
        assert_int_equal(kj_kube_run(k, RUN_MS), 0);
        int64_t el = kj_mono_ms() - t0;
        kj_kube_stats s0, s1;
        kj_kube_get_stats(k, &s0);
        (void)s0;
        assert_int_equal(m.ok, n);
        kj_kube_get_stats(k, &s1);
        fprintf(stderr,
                "throughput: %d GETs, %d in flight: %lld ms, %.0f req/s, %llu connections so far\n",
                n, inflights[j], (long long)el, n * 1000.0 / (double)(el ? el : 1),
                (unsigned long long)s1.connects);
        /* keep-alive: connections are reused, not one per request */
        assert_true(s1.connects <= 2 * 32 + 8);
    }
    /* rate limit: 100 qps, burst 10: 100 requests take about 0.9 s (at a
     * tenth of the rate they would take 9 s) */
    kj_kube_set_limits(k, 100, 10, 32);
    many m = {0};
    int64_t t0 = kj_mono_ms();
    submit_gets(k, 100, REQ_MS, &m);
    assert_int_equal(kj_kube_run(k, RUN_MS), 0);
    int64_t el = kj_mono_ms() - t0;
    fprintf(stderr, "rate limited 100 qps: 100 GETs in %lld ms\n", (long long)el);
    assert_true(el >= 800 && el < 900 + SLACK_MS);
    delete_all(k);
    kj_kube_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_every_call, need_sim),
        cmocka_unit_test_setup(test_kubeconfig_variants, need_sim),
        cmocka_unit_test_setup(test_in_cluster, need_sim),
        cmocka_unit_test_setup(test_wrong_ca, need_sim),
        cmocka_unit_test_setup(test_token_rotation, need_sim),
        cmocka_unit_test_setup(test_client_cert, need_sim),
        cmocka_unit_test_setup(test_lost_answers, need_sim),
        cmocka_unit_test_setup(test_faults, need_sim),
        cmocka_unit_test_setup(test_faults_mutations, need_sim),
        cmocka_unit_test_setup(test_expired_continue, need_sim),
        cmocka_unit_test_setup(test_bulk_deletes, need_sim),
        cmocka_unit_test_setup(test_throughput, need_sim),
    };
    /* CMOCKA_TEST_FILTER=test_lost_answers runs one test (a glob) */
    if (getenv("CMOCKA_TEST_FILTER"))
        cmocka_set_test_filter(getenv("CMOCKA_TEST_FILTER"));
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
