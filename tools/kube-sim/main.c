/*
 * kube-sim: a local Kubernetes API server (core/v1 pods, coordination.k8s.io/v1
 * leases) with the real kube-apiserver's semantics, for tests, demos and
 * benchmarks. This file: flags, logging, signals. See sim.h for the modules.
 */
#include "sim.h"
#include "tools/common/opts.h"

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: kube-sim [--listen HOST:PORT] [--token T] [--tls-cert FILE --tls-key FILE]\n"
    "                [--client-ca FILE] [--seed FILE] [fault flags] [--verbose]\n"
    "\n"
    "A local Kubernetes API server for tests, demos and benchmarks. It serves\n"
    "core/v1 pods (with the status subresource) and coordination.k8s.io/v1 leases\n"
    "with the real kube-apiserver's semantics: a global resourceVersion, 409 on\n"
    "stale writes, finalizers and graceful deletion, label and field selectors,\n"
    "limit/continue with consistent pages, watch, and Status errors.\n"
    "\n"
    "options:\n";

static const char usage_end[] =
    "\n"
    "test endpoints (no token, never faulted):\n"
    "  GET  /_sim/stats       counts by verb, resource kind and code; deletes that\n"
    "                         removed / marked / did nothing; mutations, and\n"
    "                         mutations by User-Agent and kind (by_user_agent)\n"
    "                         (POST or DELETE resets the counters)\n"
    "  GET  /_sim/state       every object\n"
    "  GET|POST|DELETE /_sim/faults   read, change or clear the faults\n"
    "  POST /_sim/seed        load a PodList or array of pods (like --seed)\n"
    "  POST /_sim/reset       drop every object and reset the counters\n"
    "\n"
    "Pods deleted with a grace period (scheduled, not terminal) are removed when\n"
    "the period ends, as a kubelet would confirm; with finalizers they stay until\n"
    "the last one is removed. Logs are logfmt lines on stderr. SIGTERM or SIGINT\n"
    "stop it cleanly (exit 0). Exit 2: bad flags; 1: cannot start.\n";

static int bad_flag(const char *msg, const char *arg)
{
    return kj_opts_fail("kube-sim", KJ_EXIT_USAGE, "%s%s%s", msg, arg ? ": " : "", arg ? arg : "");
}

static char *read_file(const char *path, size_t *len, char **err)
{
    FILE *f = fopen(path, "rb");
    ks_buf b = {0};
    char chunk[65536];
    char msg[600];
    if (!f) {
        snprintf(msg, sizeof msg, "cannot open '%s': %s", path, strerror(errno));
        *err = ks_xstrdup(msg);
        return NULL;
    }
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        ks_buf_add(&b, chunk, n);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        snprintf(msg, sizeof msg, "cannot read '%s'", path);
        *err = ks_xstrdup(msg);
        ks_buf_free(&b);
        return NULL;
    }
    *len = b.len;
    return ks_buf_take(&b);
}

/* what the command line asks for */
typedef struct {
    ks_config cfg;
    const char *listen, *cert, *key, *seed, *client_ca, *port_file;
    char host[256];
    int ttl;
} options;

/* A fault flag: its name, for the one validator of fault settings (faults.c). */
typedef struct {
    options *o;
    const char *name;
    int *jitter_set;
} fault_flag;

static int set_fault(void *ud, const char *v, char *msg, size_t size)
{
    fault_flag *f = ud;
    char *err = NULL;
    if (ks_faults_set_text(&f->o->cfg.faults, &f->o->ttl, f->name, v, &err)) {
        snprintf(msg, size, "%s", err);
        free(err);
        return -1;
    }
    *f->jitter_set |= !strcmp(f->name, "jitter-ms");
    return 0;
}

static int set_fail_nth(void *ud, const char *v, char *msg, size_t size)
{
    ks_config *cfg = ud;
    char *err = NULL;
    if (cfg->n_failnth == KS_MAX_FAILNTH)
        return snprintf(msg, size, "given more than %d times", KS_MAX_FAILNTH), -1;
    if (ks_failnth_parse(v, &cfg->failnth[cfg->n_failnth], &err)) {
        snprintf(msg, size, "%s", err);
        free(err);
        return -1;
    }
    cfg->n_failnth++;
    return 0;
}

/* --listen HOST:PORT into o->host and o->cfg.port; 0, or the exit code */
static int parse_listen(options *o)
{
    const char *listen = o->listen;
    const char *colon = strrchr(listen, ':');
    if (!colon || colon == listen || (size_t)(colon - listen) >= sizeof o->host)
        return bad_flag("--listen wants HOST:PORT", listen);
    int64_t pv;
    char msg[128];
    if (kj_parse_int(colon + 1, 0, 65535, &pv, msg, sizeof msg))
        return bad_flag("--listen: bad port", listen);
    snprintf(o->host, sizeof o->host, "%.*s", (int)(colon - listen), listen);
    if (o->host[0] == '[' && o->host[strlen(o->host) - 1] == ']') {
        memmove(o->host, o->host + 1, strlen(o->host));
        o->host[strlen(o->host) - 1] = '\0';
    }
    o->cfg.host = o->host;
    o->cfg.port = (int)pv;
    return 0;
}

/* argv into o; -1 to go on, else the exit code (0 for --help, 2: bad flags) */
static int parse_flags(int argc, char **argv, options *o)
{
    int jitter_set = 0, help = 0, n;
    memset(o, 0, sizeof *o);
    o->listen = "127.0.0.1:8080";
    o->ttl = 300;
    ks_faults_default(&o->cfg.faults);
    fault_flag ff[] = {{o, "latency-ms", &jitter_set},      {o, "jitter-ms", &jitter_set},
                       {o, "error-rate", &jitter_set},      {o, "error-codes", &jitter_set},
                       {o, "retry-after", &jitter_set},     {o, "drop-rate", &jitter_set},
                       {o, "drop-after-rate", &jitter_set}, {o, "continue-ttl", &jitter_set},
                       {o, "watch-drop-rate", &jitter_set}, {o, "watch-end-after", &jitter_set}};
    const kj_opt opts[] = {
        {"listen", 0, KJ_OPT_STRING, &o->listen, "HOST:PORT",
         .help = "address to listen on (default 127.0.0.1:8080; port 0\n"
                 "picks a free port, logged and written to --port-file)"},
        {"port-file", 0, KJ_OPT_STRING, &o->port_file, "FILE",
         .help = "write the bound port to FILE once listening"},
        {"token", 0, KJ_OPT_STRING, &o->cfg.token, "T",
         .help = "require 'Authorization: Bearer T' (401 otherwise);\n"
                 "/_sim/ endpoints never need it"},
        {"tls-cert", 0, KJ_OPT_STRING, &o->cert, "FILE",
         .help = "serve HTTPS with this PEM certificate ..."},
        {"tls-key", 0, KJ_OPT_STRING, &o->key, "FILE",
         .help = "... and this PEM private key (both or neither)"},
        {"client-ca", 0, KJ_OPT_STRING, &o->client_ca, "FILE",
         .help = "(with TLS) ask for a client certificate and admit one\n"
                 "signed by a CA of this PEM bundle; with --token as well,\n"
                 "either admits a request; without one of them: 401"},
        {"seed", 0, KJ_OPT_STRING, &o->seed, "FILE",
         .help = "load pods at start: a PodList or a JSON array of pods\n"
                 "(namespace defaults to 'default'; status is kept)"},
        KJ_OPTS_SECTION(
            "fault injection (all settable at run time with POST /_sim/faults, same names\n"
            "with '_' for '-'; paths under /_sim/ are never faulted):"),
        {"latency-ms", 0, KJ_OPT_CALL, NULL, "N", .help = "delay every request by N ms ...",
         .fn = set_fault, .ud = &ff[0]},
        {"jitter-ms", 0, KJ_OPT_CALL, NULL, "N",
         .help = "... plus a random 0..N ms (default: N/2 of latency)", .fn = set_fault,
         .ud = &ff[1]},
        {"error-rate", 0, KJ_OPT_CALL, NULL, "PCT",
         .help = "answer PCT% of requests at random with an error code", .fn = set_fault,
         .ud = &ff[2]},
        {"error-codes", 0, KJ_OPT_CALL, NULL, "LIST",
         .help = "codes picked from for --error-rate (default 429,500,503);\n"
                 "429 has a plain-text body and Retry-After, 503 has\n"
                 "Retry-After, others are Status objects",
         .fn = set_fault, .ud = &ff[3]},
        {"retry-after", 0, KJ_OPT_CALL, NULL, "S",
         .help = "the Retry-After value in seconds (default 1)", .fn = set_fault, .ud = &ff[4]},
        {"drop-rate", 0, KJ_OPT_CALL, NULL, "PCT",
         .help = "close PCT% of connections without a reply", .fn = set_fault, .ud = &ff[5]},
        {"drop-after-rate", 0, KJ_OPT_CALL, NULL, "PCT",
         .help = "do PCT% of requests (a write is applied), then close the\n"
                 "connection without a reply: the answer is lost",
         .fn = set_fault, .ud = &ff[6]},
        {"continue-ttl", 0, KJ_OPT_CALL, NULL, "S",
         .help = "continue tokens expire S seconds after they were last\n"
                 "handed out (default 300): 410 Expired afterwards",
         .fn = set_fault, .ud = &ff[7]},
        {"watch-drop-rate", 0, KJ_OPT_CALL, NULL, "PCT",
         .help = "each second of a watch stream, cut it with chance PCT%\n"
                 "(the connection closes without the end of the stream;\n"
                 "events in hand are lost to it)",
         .fn = set_fault, .ud = &ff[8]},
        {"watch-end-after", 0, KJ_OPT_CALL, NULL, "S",
         .help = "end every watch stream after S seconds, however long it\n"
                 "asked (as its timeoutSeconds would; 0: off)",
         .fn = set_fault, .ud = &ff[9]},
        {"fail-nth", 0, KJ_OPT_CALL, NULL, "VERB:N:CODE",
         .help = "answer the Nth request of VERB (get, list, watch,\n"
                 "create, update, patch, delete, any) with CODE (400-599)\n"
                 "or 'drop' (no reply) or 'drop-after' (applied, then no\n"
                 "reply); once; repeatable",
         .fn = set_fail_nth, .ud = &o->cfg},
        KJ_OPTS_SECTION(""),
        {"verbose", 0, KJ_OPT_FLAG, &o->cfg.verbose, NULL, .help = "log every request"},
        {"help", 'h', KJ_OPT_FLAG, &help, NULL, .help = "this text"},
        {0},
    };
    int rc = kj_opts_parse("kube-sim", opts, argc, argv, &n);
    if (help) {
        kj_opts_usage(stdout, usage, opts, usage_end);
        return 0;
    }
    if (rc)
        return rc;
    if (n)
        return bad_flag("unexpected argument", argv[1]);
    if (!!o->cert != !!o->key)
        return bad_flag("--tls-cert and --tls-key go together", NULL);
    if (o->client_ca && !o->cert)
        return bad_flag("--client-ca needs TLS (--tls-cert and --tls-key)", NULL);
    if (!jitter_set)
        o->cfg.faults.jitter_ms = o->cfg.faults.latency_ms / 2;
    rc = parse_listen(o);
    return rc ? rc : -1;
}

/* the files the flags name, read: 0, or 1 with the error printed */
typedef struct {
    char *cert, *key, *ca, *seed;
    size_t seed_len;
} files;

static int read_files(options *o, files *fl)
{
    char *err = NULL;
    size_t len;
    int rc = 1;
    if (o->cert) {
        if (!(fl->cert = read_file(o->cert, &len, &err)) ||
            !(fl->key = read_file(o->key, &len, &err)))
            goto out;
        o->cfg.tls_cert = fl->cert;
        o->cfg.tls_key = fl->key;
    }
    if (o->client_ca) {
        if (!(fl->ca = read_file(o->client_ca, &len, &err)))
            goto out;
        if (!strstr(fl->ca, "-----BEGIN CERTIFICATE-----")) {
            fprintf(stderr, "kube-sim: --client-ca '%s': no PEM certificate in it\n", o->client_ca);
            goto out;
        }
        o->cfg.client_ca = fl->ca;
    }
    if (o->seed && !(fl->seed = read_file(o->seed, &fl->seed_len, &err)))
        goto out;
    rc = 0;
out:
    if (err)
        fprintf(stderr, "kube-sim: %s\n", err);
    free(err);
    return rc;
}

static void files_free(files *fl)
{
    free(fl->cert);
    free(fl->key);
    free(fl->ca);
    free(fl->seed);
}

/* serves until SIGINT or SIGTERM: 0, or 1 when it cannot start */
static int serve(options *o, ks_store *store)
{
    char *err = NULL;
    int rc = 0;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    ks_server *srv = ks_server_start(&o->cfg, store, &err);
    if (!srv) {
        ks_log("error", "cannot start", "err=\"%s\"", err);
        free(err);
        return 1;
    }
    int port = ks_server_port(srv);
    ks_log("info", "listening", "addr=%s:%d tls=%s auth=%s", o->host, port, o->cert ? "on" : "off",
           o->cfg.token && o->client_ca ? "token,client-cert"
           : o->cfg.token               ? "token"
           : o->client_ca               ? "client-cert"
                                        : "none");
    if (o->port_file) {
        FILE *f = fopen(o->port_file, "w");
        if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f)) {
            ks_log("error", "cannot write port file", "file=\"%s\"", o->port_file);
            rc = 1;
            goto out;
        }
    }
    int sig = 0;
    sigwait(&set, &sig);
    ks_log("info", "stopping", "signal=%s", sig == SIGINT ? "SIGINT" : "SIGTERM");
out:
    ks_server_stop(srv);
    return rc;
}

int main(int argc, char **argv)
{
    /* every write frees a version and every list page megabytes: keep the
     * heap rather than trim it and fault the pages back in at the next request */
    mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
    mallopt(M_TOP_PAD, 1024 * 1024);
    ks_json_init();
    options o;
    files fl = {0};
    ks_store *store = NULL;
    char *err = NULL;
    int rc = parse_flags(argc, argv, &o);
    if (rc >= 0)
        return rc;
    rc = read_files(&o, &fl);
    if (rc)
        goto out;
    store = ks_store_new();
    ks_store_set_continue_ttl(store, o.ttl);
    if (o.seed) {
        int n = ks_store_seed(store, fl.seed, fl.seed_len, &err);
        if (n < 0) {
            fprintf(stderr, "kube-sim: seed '%s': %s\n", o.seed, err);
            rc = 1;
            goto out;
        }
        ks_log("info", "seeded", "file=\"%s\" objects=%d", o.seed, n);
    }
    rc = serve(&o, store);
out:
    ks_store_free(store);
    files_free(&fl);
    free(err);
    if (!rc)
        ks_log("info", "stopped", NULL);
    return rc;
}
