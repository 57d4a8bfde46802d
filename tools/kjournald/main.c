/*
 * kjournald - the kjournal daemon: receives Kyuubi session events over
 * ZeroMQ and appends them to the journal (schema/PROTOCOL.md).
 *
 * main() only wires modules together: options -> journal -> ipc server
 * (-> metrics) (-> the reconciler thread, told of committed events in
 * on_committed()) -> run until SIGTERM.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipc/ipc.h"
#include "metrics.h"
#include "reconcile.h"

#define KJD_DEFAULT_JOURNAL "/var/lib/kjournal/journal.db"
#define KJD_MAX_LISTEN 16

/* Exit codes (documented in --help). */
enum {
    KJD_EXIT_OK = 0,
    KJD_EXIT_FAILURE = 1,
    KJD_EXIT_USAGE = 2,
    KJD_EXIT_NOFILE = 3,
    KJD_EXIT_NOTJOURNAL = 4,
    KJD_EXIT_TOONEW = 5,
    KJD_EXIT_CORRUPT = 6,
    KJD_EXIT_UNAVAILABLE = 8,
    KJD_EXIT_LOCKED = 9,    /* another writer holds the journal */
    KJD_EXIT_REPLACED = 10, /* the journal file was deleted or replaced while running */
};

typedef struct config {
    const char *journal;
    const char *listen[KJD_MAX_LISTEN];
    size_t n_listen;
    kj_ipc_server_opts srv;
    const char *metrics;
    kj_log_level level;
    kj_kube_flags kube;
    kj_policy policy;
    int64_t resync_ms;
    int no_reconcile;
    int group_readable;
} config;

static kj_ipc_server *g_server;
static volatile sig_atomic_t g_stop; /* a signal came before the server existed */
static kjd_reconciler *g_reconciler;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: kjournald [--journal PATH] [--listen ENDPOINT]... [OPTIONS]\n"
            "\n"
            "Receives Kyuubi session events over ZeroMQ (native events or Kyuubi's\n"
            "KyuubiSessionEvent JSON), appends them to the journal in group commits, and\n"
            "acknowledges each event once it is on disk. Protocol: schema/PROTOCOL.md.\n"
            "\n"
            "options:\n"
            "  --journal PATH          journal file, created if missing, mode 0600 whatever\n"
            "                          the umask (default " KJD_DEFAULT_JOURNAL ")\n"
            "  --group-readable        create the journal mode 0640 instead, for readers in\n"
            "                          its group (kjournal backup has the same option)\n"
            "  --listen ENDPOINT       tcp://HOST:PORT or ipc://PATH; repeat for several\n"
            "                          (default " KJ_IPC_DEFAULT_ENDPOINT "). An ipc:// socket is\n"
            "                          created mode 0600; its directory is created 0700;\n"
            "                          a directory other users could take over (writable\n"
            "                          by all, like /tmp itself) is refused (exit 2)\n"
            "  --batch-max N           events per commit (default %d)\n"
            "  --batch-window-ms N     when the queue runs dry, wait up to N ms for more\n"
            "                          before committing (default 0: commit what is there)\n"
            "  --max-message BYTES     largest request frame accepted (default %d); larger\n"
            "                          ones are answered too_large up to 16 MiB (or\n"
            "                          BYTES+64KiB), beyond which libzmq drops the connection\n"
            "  --max-events N          events per request (default %d)\n"
            "  --hwm N                 messages queued per peer each way (default %d)\n"
            "  --max-queued-bytes N    requests held, all peers together (default %u MiB);\n"
            "                          beyond it they are answered overloaded (retry)\n"
            "  --curve-secret-key FILE enable CURVE with this server secret key (Z85,\n"
            "                          as written by 'kjournal keygen')\n"
            "  --curve-allow DIR       with CURVE: admit only clients whose public key is\n"
            "                          in a DIR/*.pub file (read at start)\n"
            "  --metrics ADDR:PORT     serve /healthz, /readyz, /metrics (Prometheus)\n"
            "  --log-level LEVEL       debug, info, warn or error (default info)\n"
            "  --help, --version\n"
            "\n"
            "reconciliation (the recovery pass at start-up, a pass for the pods of\n"
            "every session that opens with an engine or closes, a resync every\n"
            "interval; see 'kjournal recover --help' for what a pass does):\n"
            "  --no-reconcile          run as a pure journal. So does a start without any\n"
            "                          Kubernetes configuration (no flags, no kubeconfig,\n"
            "                          not in a cluster); the log says which\n"
            "  --resync DUR            full pass every DUR (default 5m)\n"
            "%s%s"
            "\n"
            "Logs go to stderr, one logfmt record per line. SIGTERM or SIGINT: stop\n"
            "reading, commit and acknowledge the batch in hand, exit 0.\n"
            "\n"
            "One writer per journal: kjournald holds PATH.lock while it runs; a second\n"
            "kjournald or 'kjournal recover' on the journal is refused (exit 9). Should\n"
            "the journal file be deleted or replaced while kjournald runs, it stops\n"
            "acknowledging (journal_unavailable, retry; /readyz 503) and exits 10, to be\n"
            "restarted on what the path holds then.\n"
            "\n"
            "exit codes: 0 stopped cleanly, 1 runtime failure, 2 usage error,\n"
            "3 journal cannot be opened or created, or is not writable, 4 not a kjournal\n"
            "database, 5 journal newer than this binary, 6 journal damaged, 8 cannot\n"
            "listen, 9 journal in use by another writer, 10 journal deleted or replaced\n"
            "while running.\n",
            KJ_IPC_BATCH_MAX, KJ_IPC_MAX_MESSAGE, KJ_IPC_MAX_EVENTS, KJ_IPC_HWM,
            KJ_IPC_MAX_QUEUED >> 20, kj_kube_flags_help, kj_policy_help);
}

static int parse_num(const char *flag, const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        fprintf(stderr, "kjournald: %s '%s': expected a number in %ld..%ld\n", flag, s, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

/* Takes the kube and policy flags (shared with 'kjournal recover') out of
 * argv, leaving the rest for getopt. */
static int take_shared_flags(int *argc, char **argv, config *c)
{
    kj_err err = {0};
    int out = 1;
    for (int i = 1; i < *argc;) {
        int rc = kj_kube_flags_parse(&c->kube, *argc, argv, &i, &err);
        if (!rc)
            rc = kj_policy_parse(&c->policy, *argc, argv, &i, &err);
        if (rc < 0) {
            fprintf(stderr, "kjournald: %s\n", err.msg);
            return -1;
        }
        if (!rc)
            argv[out++] = argv[i++];
    }
    *argc = out;
    argv[out] = NULL;
    return 0;
}

static int parse_args(int argc, char **argv, config *c)
{
    enum {
        O_JOURNAL = 256,
        O_LISTEN,
        O_BMAX,
        O_BWIN,
        O_MAXMSG,
        O_MAXEV,
        O_HWM,
        O_CSK,
        O_CALLOW,
        O_METRICS,
        O_LOG,
        O_HELP,
        O_VERSION,
        O_RESYNC,
        O_NORECONCILE,
        O_GROUPREAD,
        O_MAXQUEUED
    };
    static const struct option opts[] = {{"journal", 1, 0, O_JOURNAL},
                                         {"listen", 1, 0, O_LISTEN},
                                         {"batch-max", 1, 0, O_BMAX},
                                         {"batch-window-ms", 1, 0, O_BWIN},
                                         {"max-message", 1, 0, O_MAXMSG},
                                         {"max-events", 1, 0, O_MAXEV},
                                         {"hwm", 1, 0, O_HWM},
                                         {"max-queued-bytes", 1, 0, O_MAXQUEUED},
                                         {"curve-secret-key", 1, 0, O_CSK},
                                         {"curve-allow", 1, 0, O_CALLOW},
                                         {"metrics", 1, 0, O_METRICS},
                                         {"log-level", 1, 0, O_LOG},
                                         {"help", 0, 0, O_HELP},
                                         {"version", 0, 0, O_VERSION},
                                         {"resync", 1, 0, O_RESYNC},
                                         {"no-reconcile", 0, 0, O_NORECONCILE},
                                         {"group-readable", 0, 0, O_GROUPREAD},
                                         {0, 0, 0, 0}};
    c->journal = KJD_DEFAULT_JOURNAL;
    c->srv = kj_ipc_server_defaults();
    c->level = KJ_LOG_INFO;
    c->resync_ms = 5 * 60 * 1000;
    kj_kube_flags_init(&c->kube);
    kj_policy_init(&c->policy);
    if (take_shared_flags(&argc, argv, c) < 0)
        return -1;
    int o;
    long v;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case O_JOURNAL:
            c->journal = optarg;
            break;
        case O_LISTEN:
            if (c->n_listen == KJD_MAX_LISTEN) {
                fprintf(stderr, "kjournald: at most %d --listen endpoints\n", KJD_MAX_LISTEN);
                return -1;
            }
            c->listen[c->n_listen++] = optarg;
            break;
        case O_BMAX:
            if (parse_num("--batch-max", optarg, 1, 100000, &v) < 0)
                return -1;
            c->srv.batch_max = (size_t)v;
            break;
        case O_BWIN:
            if (parse_num("--batch-window-ms", optarg, 0, 1000, &v) < 0)
                return -1;
            c->srv.batch_window_ms = (int)v;
            break;
        case O_MAXMSG:
            if (parse_num("--max-message", optarg, 1024, 64 << 20, &v) < 0)
                return -1;
            c->srv.max_message = (size_t)v;
            break;
        case O_MAXEV:
            if (parse_num("--max-events", optarg, 1, 100000, &v) < 0)
                return -1;
            c->srv.max_events = (size_t)v;
            break;
        case O_HWM:
            if (parse_num("--hwm", optarg, 1, 10000000, &v) < 0)
                return -1;
            c->srv.hwm = (int)v;
            break;
        case O_MAXQUEUED:
            if (parse_num("--max-queued-bytes", optarg, 1 << 20, 1L << 40, &v) < 0)
                return -1;
            c->srv.max_queued_bytes = (size_t)v;
            break;
        case O_CSK:
            c->srv.curve_secret_key = optarg;
            break;
        case O_CALLOW:
            c->srv.curve_allow_dir = optarg;
            break;
        case O_METRICS:
            c->metrics = optarg;
            break;
        case O_LOG:
            if (kj_log_parse_level(optarg, &c->level) < 0) {
                fprintf(stderr,
                        "kjournald: --log-level '%s': expected debug, info, warn or error\n",
                        optarg);
                return -1;
            }
            break;
        case O_RESYNC:
            if (kj_parse_duration(optarg, &c->resync_ms) || c->resync_ms < 1000) {
                fprintf(stderr, "kjournald: --resync '%s': expected a duration of 1s or more\n",
                        optarg);
                return -1;
            }
            break;
        case O_NORECONCILE:
            c->no_reconcile = 1;
            break;
        case O_GROUPREAD:
            c->group_readable = 1;
            break;
        case O_HELP:
        case 'h':
            usage(stdout);
            exit(KJD_EXIT_OK);
        case O_VERSION:
            printf("kjournald %s\n", KJ_VERSION);
            exit(KJD_EXIT_OK);
        default:
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "kjournald: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (!!c->srv.curve_secret_key != !!c->srv.curve_allow_dir) {
        fprintf(stderr, "kjournald: --curve-secret-key and --curve-allow go together\n");
        return -1;
    }
    if (!c->n_listen)
        c->listen[c->n_listen++] = KJ_IPC_DEFAULT_ENDPOINT;
    c->srv.endpoints = c->listen;
    c->srv.n_endpoints = c->n_listen;
    c->kube.max_in_flight = c->policy.concurrency;
    return 0;
}

/* After every commit, on the server thread, once the acks are out: a closed
 * session's pods may go, an opened engine's pod gets our finalizer. */
static void on_committed(const kj_event *events, const kj_append_result *res, size_t n, void *ud)
{
    (void)ud;
    for (size_t i = 0; i < n; i++) {
        const kj_event *e = &events[i];
        if (res[i].status != KJ_APPEND_STORED)
            continue;
        if (e->type == KJ_EVENT_SESSION_CLOSE || (e->engine_tag && *e->engine_tag) ||
            (e->engine_id && *e->engine_id))
            kjd_reconciler_notify(g_reconciler, e->session_id);
    }
}

/* The reconciler thread, unless told not to or there is nothing to talk to. */
static int start_reconciler(config *c, kj_kube_config **cfg)
{
    kj_err err = {0};
    char q[600];
    if (c->no_reconcile) {
        kj_log(KJ_LOG_INFO, "reconciler off", "reason=--no-reconcile");
        return 0;
    }
    int rc = kj_kube_config_load(&c->kube, cfg, &err);
    if (rc == KJ_ENOENT) {
        kj_log(KJ_LOG_WARN, "reconciler off",
               "reason=\"no Kubernetes configuration (no --server, no kubeconfig, not in a "
               "cluster); running as a pure journal\"");
        return 0;
    }
    if (rc < 0) {
        kj_log(KJ_LOG_ERROR, "bad Kubernetes configuration", "error=%s",
               kj_logq(q, sizeof q, err.msg));
        return KJD_EXIT_USAGE;
    }
    if (kjd_reconciler_start(c->journal, *cfg, &c->policy, c->resync_ms, &g_reconciler, &err)) {
        kj_log(KJ_LOG_ERROR, "cannot start the reconciler", "error=%s",
               kj_logq(q, sizeof q, err.msg));
        return KJD_EXIT_FAILURE;
    }
    return 0;
}

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
    if (g_server)
        kj_ipc_server_stop(g_server);
}

static int exit_code_of(int rc)
{
    switch (rc) {
    case KJ_ENOENT:
    case KJ_EIO:
    case KJ_ENOSPC:
    case KJ_EREADONLY:
        return KJD_EXIT_NOFILE;
    case KJ_ENOTJOURNAL:
        return KJD_EXIT_NOTJOURNAL;
    case KJ_ETOONEW:
        return KJD_EXIT_TOONEW;
    case KJ_ECORRUPT:
        return KJD_EXIT_CORRUPT;
    case KJ_ELOCKED:
        return KJD_EXIT_LOCKED;
    case KJ_ESTALE:
        return KJD_EXIT_REPLACED;
    default:
        return KJD_EXIT_FAILURE;
    }
}

int main(int argc, char **argv)
{
    config c = {0};
    if (parse_args(argc, argv, &c) < 0)
        return KJD_EXIT_USAGE;
    kj_log_set_level(c.level);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    kj_err err = {0};
    kj_journal *j = NULL;
    kj_kube_config *kcfg = NULL;
    kjd_metrics *m = NULL;
    int code = KJD_EXIT_OK, rc;
    char q[4200];
    if ((rc = kj_journal_open(c.journal,
                              KJ_JOURNAL_LOCK | (c.group_readable ? KJ_JOURNAL_GROUP_READABLE : 0),
                              &j, &err)) < 0) {
        kj_log(KJ_LOG_ERROR, "cannot open journal", "error=%s", kj_logq(q, sizeof q, err.msg));
        return exit_code_of(rc);
    }
    kj_log(KJ_LOG_INFO, "journal opened", "path=%s", kj_logq(q, sizeof q, c.journal));
    /* We hold the writer lock: a pass still "running" died with its process. */
    int64_t interrupted = 0;
    if (kj_journal_runs_interrupt(j, &interrupted, &err) < 0)
        kj_log(KJ_LOG_WARN, "cannot mark interrupted runs", "error=%s",
               kj_logq(q, sizeof q, err.msg));
    else if (interrupted)
        kj_log(KJ_LOG_INFO, "reconcile runs of a stopped process marked interrupted", "runs=%lld",
               (long long)interrupted);
    c.srv.on_committed = on_committed;
    if (kj_ipc_server_new(j, &c.srv, &g_server, &err) < 0) {
        kj_log(KJ_LOG_ERROR, "cannot start", "error=%s", kj_logq(q, sizeof q, err.msg));
        code = err.code == KJ_EUNAVAIL ? KJD_EXIT_UNAVAILABLE
               : err.code == KJ_EINVAL ? KJD_EXIT_USAGE
                                       : KJD_EXIT_FAILURE;
        goto out;
    }
    /* The sockets listen before the server is returned: a SIGTERM may come
     * from anyone who saw the port open, and still means a clean stop. */
    if (g_stop)
        kj_ipc_server_stop(g_server);
    if (c.metrics && kjd_metrics_start(c.metrics, g_server, c.journal, &m, &err) < 0) {
        kj_log(KJ_LOG_ERROR, "cannot start metrics", "error=%s", kj_logq(q, sizeof q, err.msg));
        code = err.code == KJ_EUNAVAIL ? KJD_EXIT_UNAVAILABLE : KJD_EXIT_USAGE;
        goto out;
    }
    if ((code = start_reconciler(&c, &kcfg)))
        goto out;
    kj_log(KJ_LOG_INFO, "serving", "batch_max=%zu batch_window_ms=%d max_message=%zu",
           c.srv.batch_max, c.srv.batch_window_ms, c.srv.max_message);
    if ((rc = kj_ipc_server_run(g_server, &err)) < 0) {
        kj_log(KJ_LOG_ERROR, "ingest failed", "error=%s", kj_logq(q, sizeof q, err.msg));
        code = rc == KJ_ESTALE ? KJD_EXIT_REPLACED : KJD_EXIT_FAILURE;
    }
    kj_log(KJ_LOG_INFO, "stopping", "reason=%s", code ? "error" : "signal");
out:
    kjd_reconciler_stop(g_reconciler);
    g_reconciler = NULL;
    kj_kube_config_free(kcfg);
    kjd_metrics_stop(m);
    kj_ipc_server_destroy(g_server);
    g_server = NULL;
    kj_journal_close(j);
    if (code == KJD_EXIT_OK)
        kj_log(KJ_LOG_INFO, "stopped", "code=%d", code);
    return code;
}
