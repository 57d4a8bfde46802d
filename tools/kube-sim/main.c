/*
 * kube-sim: a local Kubernetes API server (core/v1 pods, coordination.k8s.io/v1
 * leases) with the real kube-apiserver's semantics, for tests, demos and
 * benchmarks. This file: flags, logging, signals. See sim.h for the modules.
 */
#include "sim.h"

#include <errno.h>
#include <getopt.h>
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
    "  --listen HOST:PORT     address to listen on (default 127.0.0.1:8080; port 0\n"
    "                         picks a free port, logged and written to --port-file)\n"
    "  --port-file FILE       write the bound port to FILE once listening\n"
    "  --token T              require 'Authorization: Bearer T' (401 otherwise);\n"
    "                         /_sim/ endpoints never need it\n"
    "  --tls-cert FILE        serve HTTPS with this PEM certificate ...\n"
    "  --tls-key FILE         ... and this PEM private key (both or neither)\n"
    "  --client-ca FILE       (with TLS) ask for a client certificate and admit one\n"
    "                         signed by a CA of this PEM bundle; with --token as well,\n"
    "                         either admits a request; without one of them: 401\n"
    "  --seed FILE            load pods at start: a PodList or a JSON array of pods\n"
    "                         (namespace defaults to 'default'; status is kept)\n"
    "\n"
    "fault injection (all settable at run time with POST /_sim/faults, same names\n"
    "with '_' for '-'; paths under /_sim/ are never faulted):\n"
    "  --latency-ms N         delay every request by N ms ...\n"
    "  --jitter-ms N          ... plus a random 0..N ms (default: N/2 of latency)\n"
    "  --error-rate PCT       answer PCT% of requests at random with an error code\n"
    "  --error-codes LIST     codes picked from for --error-rate (default 429,500,503);\n"
    "                         429 has a plain-text body and Retry-After, 503 has\n"
    "                         Retry-After, others are Status objects\n"
    "  --retry-after S        the Retry-After value in seconds (default 1)\n"
    "  --drop-rate PCT        close PCT% of connections without a reply\n"
    "  --drop-after-rate PCT  do PCT% of requests (a write is applied), then close the\n"
    "                         connection without a reply: the answer is lost\n"
    "  --continue-ttl S       continue tokens expire S seconds after they were last\n"
    "                         handed out (default 300): 410 Expired afterwards\n"
    "  --fail-nth VERB:N:CODE answer the Nth request of VERB (get, list, watch,\n"
    "                         create, update, patch, delete, any) with CODE (400-599)\n"
    "                         or 'drop' (no reply) or 'drop-after' (applied, then no\n"
    "                         reply); once; repeatable\n"
    "\n"
    "  --verbose              log every request\n"
    "  --help                 this text\n"
    "\n"
    "test endpoints (no token, never faulted):\n"
    "  GET  /_sim/stats       counts by verb, resource kind and code; deletes that\n"
    "                         removed / marked / did nothing; mutations (POST or\n"
    "                         DELETE resets the counters)\n"
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
    fprintf(stderr, "kube-sim: %s%s%s\n(see kube-sim --help)\n", msg, arg ? ": " : "",
            arg ? arg : "");
    return 2;
}

static int parse_num(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
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

int main(int argc, char **argv)
{
    /* every write frees a version and every list page megabytes: keep the
     * heap rather than trim it and fault the pages back in at the next request */
    mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
    mallopt(M_TOP_PAD, 1024 * 1024);
    ks_json_init();
    enum {
        O_LISTEN = 1000,
        O_TOKEN,
        O_CERT,
        O_KEY,
        O_SEED,
        O_LAT,
        O_JIT,
        O_ERR,
        O_CODES,
        O_RA,
        O_DROP,
        O_DROPAFTER,
        O_CLIENTCA,
        O_TTL,
        O_NTH,
        O_VERBOSE,
        O_PORTFILE,
        O_HELP
    };
    static const struct option longopts[] = {
        {"listen", required_argument, 0, O_LISTEN},
        {"token", required_argument, 0, O_TOKEN},
        {"tls-cert", required_argument, 0, O_CERT},
        {"tls-key", required_argument, 0, O_KEY},
        {"seed", required_argument, 0, O_SEED},
        {"latency-ms", required_argument, 0, O_LAT},
        {"jitter-ms", required_argument, 0, O_JIT},
        {"error-rate", required_argument, 0, O_ERR},
        {"error-codes", required_argument, 0, O_CODES},
        {"retry-after", required_argument, 0, O_RA},
        {"drop-rate", required_argument, 0, O_DROP},
        {"drop-after-rate", required_argument, 0, O_DROPAFTER},
        {"client-ca", required_argument, 0, O_CLIENTCA},
        {"continue-ttl", required_argument, 0, O_TTL},
        {"fail-nth", required_argument, 0, O_NTH},
        {"port-file", required_argument, 0, O_PORTFILE},
        {"verbose", no_argument, 0, O_VERBOSE},
        {"help", no_argument, 0, O_HELP},
        {0, 0, 0, 0},
    };
    ks_config cfg = {0};
    const char *listen = "127.0.0.1:8080", *cert = NULL, *key = NULL, *seed = NULL;
    const char *client_ca = NULL;
    const char *port_file = NULL;
    char host[256];
    int ttl = 300, jitter_set = 0, rc = 0;
    char *err = NULL, *cert_pem = NULL, *key_pem = NULL, *ca_pem = NULL, *seed_json = NULL;
    ks_store *store = NULL;
    ks_server *srv = NULL;
    double v;
    cfg.faults.retry_after = 1;
    cfg.faults.error_codes[0] = 429;
    cfg.faults.error_codes[1] = 500;
    cfg.faults.error_codes[2] = 503;
    cfg.faults.n_error_codes = 3;

    opterr = 0;
    int o;
    while ((o = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (o) {
        case O_LISTEN:
            listen = optarg;
            break;
        case O_TOKEN:
            if (!*optarg)
                return bad_flag("--token must not be empty", NULL);
            cfg.token = optarg;
            break;
        case O_CERT:
            cert = optarg;
            break;
        case O_KEY:
            key = optarg;
            break;
        case O_CLIENTCA:
            client_ca = optarg;
            break;
        case O_SEED:
            seed = optarg;
            break;
        case O_PORTFILE:
            port_file = optarg;
            break;
        case O_LAT:
            if (parse_num(optarg, 0, 600000, &v))
                return bad_flag("--latency-ms wants 0..600000", optarg);
            cfg.faults.latency_ms = (int)v;
            break;
        case O_JIT:
            if (parse_num(optarg, 0, 600000, &v))
                return bad_flag("--jitter-ms wants 0..600000", optarg);
            cfg.faults.jitter_ms = (int)v;
            jitter_set = 1;
            break;
        case O_ERR:
            if (parse_num(optarg, 0, 100, &v))
                return bad_flag("--error-rate wants a percentage 0..100", optarg);
            cfg.faults.error_rate = v;
            break;
        case O_DROP:
            if (parse_num(optarg, 0, 100, &v))
                return bad_flag("--drop-rate wants a percentage 0..100", optarg);
            cfg.faults.drop_rate = v;
            break;
        case O_DROPAFTER:
            if (parse_num(optarg, 0, 100, &v))
                return bad_flag("--drop-after-rate wants a percentage 0..100", optarg);
            cfg.faults.drop_after_rate = v;
            break;
        case O_RA:
            if (parse_num(optarg, 0, 3600, &v))
                return bad_flag("--retry-after wants 0..3600 seconds", optarg);
            cfg.faults.retry_after = (int)v;
            break;
        case O_TTL:
            if (parse_num(optarg, 0, 86400, &v))
                return bad_flag("--continue-ttl wants 0..86400 seconds", optarg);
            ttl = (int)v;
            break;
        case O_CODES: {
            cfg.faults.n_error_codes = 0;
            const char *p = optarg;
            while (*p) {
                char *end;
                long c = strtol(p, &end, 10);
                if (end == p || c < 400 || c > 599 || cfg.faults.n_error_codes == 8 ||
                    (*end && *end != ','))
                    return bad_flag("--error-codes wants up to 8 codes 400-599, e.g. 429,503",
                                    optarg);
                cfg.faults.error_codes[cfg.faults.n_error_codes++] = (int)c;
                p = *end ? end + 1 : end;
            }
            if (!cfg.faults.n_error_codes)
                return bad_flag("--error-codes wants at least one code", NULL);
            break;
        }
        case O_NTH:
            if (cfg.n_failnth == KS_MAX_FAILNTH)
                return bad_flag("too many --fail-nth", NULL);
            if (ks_failnth_parse(optarg, &cfg.failnth[cfg.n_failnth], &err)) {
                char msg[300];
                snprintf(msg, sizeof msg, "--fail-nth %s", optarg);
                rc = bad_flag(msg, err);
                free(err);
                return rc;
            }
            cfg.n_failnth++;
            break;
        case O_VERBOSE:
            cfg.verbose = 1;
            break;
        case 'h':
        case O_HELP:
            fputs(usage, stdout);
            return 0;
        default:
            if (optopt && optopt < 1000)
                return bad_flag("unknown flag", argv[optind - 1]);
            return bad_flag("unknown flag or missing value", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return bad_flag("unexpected argument", argv[optind]);
    if (!!cert != !!key)
        return bad_flag("--tls-cert and --tls-key go together", NULL);
    if (client_ca && !cert)
        return bad_flag("--client-ca needs TLS (--tls-cert and --tls-key)", NULL);
    if (!jitter_set)
        cfg.faults.jitter_ms = cfg.faults.latency_ms / 2;

    const char *colon = strrchr(listen, ':');
    if (!colon || colon == listen || (size_t)(colon - listen) >= sizeof host)
        return bad_flag("--listen wants HOST:PORT", listen);
    double pv;
    if (parse_num(colon + 1, 0, 65535, &pv))
        return bad_flag("--listen: bad port", listen);
    snprintf(host, sizeof host, "%.*s", (int)(colon - listen), listen);
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }
    cfg.host = host;
    cfg.port = (int)pv;

    size_t len;
    if (cert) {
        if (!(cert_pem = read_file(cert, &len, &err)) || !(key_pem = read_file(key, &len, &err))) {
            fprintf(stderr, "kube-sim: %s\n", err);
            rc = 1;
            goto out;
        }
        cfg.tls_cert = cert_pem;
        cfg.tls_key = key_pem;
    }
    if (client_ca) {
        if (!(ca_pem = read_file(client_ca, &len, &err))) {
            fprintf(stderr, "kube-sim: %s\n", err);
            rc = 1;
            goto out;
        }
        if (!strstr(ca_pem, "-----BEGIN CERTIFICATE-----")) {
            fprintf(stderr, "kube-sim: --client-ca '%s': no PEM certificate in it\n", client_ca);
            rc = 1;
            goto out;
        }
        cfg.client_ca = ca_pem;
    }

    store = ks_store_new();
    ks_store_set_continue_ttl(store, ttl);
    if (seed) {
        if (!(seed_json = read_file(seed, &len, &err))) {
            fprintf(stderr, "kube-sim: %s\n", err);
            rc = 1;
            goto out;
        }
        int n = ks_store_seed(store, seed_json, len, &err);
        if (n < 0) {
            fprintf(stderr, "kube-sim: seed '%s': %s\n", seed, err);
            rc = 1;
            goto out;
        }
        ks_log("info", "seeded", "file=\"%s\" objects=%d", seed, n);
    }

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    srv = ks_server_start(&cfg, store, &err);
    if (!srv) {
        ks_log("error", "cannot start", "err=\"%s\"", err);
        rc = 1;
        goto out;
    }
    int port = ks_server_port(srv);
    ks_log("info", "listening", "addr=%s:%d tls=%s auth=%s", host, port, cert ? "on" : "off",
           cfg.token && client_ca ? "token,client-cert"
           : cfg.token            ? "token"
           : client_ca            ? "client-cert"
                                  : "none");
    if (port_file) {
        FILE *f = fopen(port_file, "w");
        if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f)) {
            ks_log("error", "cannot write port file", "file=\"%s\"", port_file);
            rc = 1;
            goto out;
        }
    }
    int sig = 0;
    sigwait(&set, &sig);
    ks_log("info", "stopping", "signal=%s", sig == SIGINT ? "SIGINT" : "SIGTERM");
out:
    ks_server_stop(srv);
    ks_store_free(store);
    free(cert_pem);
    free(key_pem);
    free(ca_pem);
    free(seed_json);
    free(err);
    if (!rc)
        ks_log("info", "stopped", NULL);
    return rc;
}
