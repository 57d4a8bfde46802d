/*
 * kjournald - the kjournal daemon: receives Kyuubi session events over
 * ZeroMQ and appends them to the journal (schema/PROTOCOL.md).
 *
 * main() only wires modules together: options -> journal -> ipc server
 * (-> metrics) (-> the reconciler thread, told of committed events in
 * on_committed()) -> run until SIGTERM.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ipc/ipc.h"
#include "lease.h"
#include "metrics.h"
#include "reconcile.h"
#include "reconciler/claims.h"
#include "reconciler/kube_ops.h"
#include "tools/common/kube_opts.h"

#define KJD_MAX_LISTEN 16

typedef struct config {
    const char *journal;
    const char *listen[KJD_MAX_LISTEN];
    size_t n_listen;
    kj_ipc_server_opts srv;
    const char *metrics;
    int check_config; /* --check-config */
    int print_rbac;   /* --print-rbac */
    kj_log_level level;
    kj_kube_flags kube;
    kj_policy policy;
    int64_t resync_ms;
    int no_reconcile;
    int group_readable;
    /* leader election (lease.h) */
    int leader_elect;
    kj_elect_cfg elect;
    const char *identity;
    char identity_buf[300];
    char user_agent[400];
    /* per-server topology (claims.h) */
    int topology; /* index in topologies[] */
    int64_t instance_grace_ms;
    int identity_given;
    char claim[300];
    char own_lease[300];
    kj_elect_cfg elect_sweeper;
} config;

static const char *const topologies[] = {"central", "per-server", NULL};

static kj_ipc_server *g_server;
static volatile sig_atomic_t g_stop; /* a signal came before the server existed */
static kjd_reconciler *g_reconciler;
static kjd_lease *g_lease;

static const char usage[] =
    "usage: kjournald [--journal PATH] [--listen ENDPOINT]... [OPTIONS]\n"
    "\n"
    "Receives Kyuubi session events over ZeroMQ (native events or Kyuubi's\n"
    "KyuubiSessionEvent JSON), appends them to the journal in group commits, and\n"
    "acknowledges each event once it is on disk. Protocol: schema/PROTOCOL.md.\n"
    "\n"
    "options:\n";

static const char usage_end[] =
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
    "while running.\n";

#define KJ_STR_(x) #x
#define KJ_STR(x) KJ_STR_(x)

static int log_level(void *ud, const char *v, char *msg, size_t size)
{
    if (kj_log_parse_level(v, ud) < 0)
        return snprintf(msg, size, "expected debug, info, warn or error"), -1;
    return 0;
}

/* --identity goes into HTTP headers and Lease names: printable ASCII only. */
static int check_identity(config *c)
{
    kj_err err = {0};
    c->identity_given = c->identity != NULL;
    if (c->topology == 1) {
        if (!c->identity)
            return kj_opts_fail("kjournald", KJ_EXIT_USAGE,
                                "--topology per-server needs --identity (the Kyuubi server's "
                                "stable name)");
        if (!c->leader_elect)
            return kj_opts_fail("kjournald", KJ_EXIT_USAGE,
                                "--topology per-server needs its Leases (--leader-elect)");
        if (kj_claim_name(c->identity, c->claim, sizeof c->claim, &err) < 0)
            return kj_opts_fail("kjournald", KJ_EXIT_USAGE, "%s", err.msg);
        snprintf(c->own_lease, sizeof c->own_lease, KJ_INSTANCE_LEASE_PREFIX "%s", c->identity);
        c->policy.finalizer = c->claim;
        c->policy.per_server = 1;
        c->elect.name = c->own_lease;
    }
    if (!c->identity) {
        if (kjd_lease_default_identity(c->identity_buf, sizeof c->identity_buf, &err) < 0)
            return kj_opts_fail("kjournald", KJ_EXIT_FAILURE, "%s", err.msg);
        c->identity = c->identity_buf;
    }
    size_t n = strlen(c->identity);
    if (n > 253)
        return kj_opts_fail("kjournald", KJ_EXIT_USAGE,
                            "--identity: at most 253 characters (it is a Lease's holderIdentity)");
    for (size_t i = 0; i < n; i++)
        if (c->identity[i] <= ' ' || c->identity[i] > '~' || c->identity[i] == '(' ||
            c->identity[i] == ')')
            return kj_opts_fail("kjournald", KJ_EXIT_USAGE,
                                "--identity '%s': letters, digits and punctuation only (no "
                                "spaces, parentheses or control characters)",
                                c->identity);
    c->elect.identity = c->identity;
    snprintf(c->user_agent, sizeof c->user_agent, "kjournald/%s (%s)", KJ_VERSION, c->identity);
    if (c->leader_elect && !c->no_reconcile && kj_elect_cfg_check(&c->elect, &err) < 0)
        return kj_opts_fail("kjournald", KJ_EXIT_USAGE, "%s", err.msg);
    return 0;
}

/* Parses argv into c: 0, or an exit code once reported. --help and
 * --version print and exit here. */
static int parse_args(int argc, char **argv, config *c)
{
    int help = 0, n;
    c->journal = KJ_DEFAULT_JOURNAL;
    c->srv = kj_ipc_server_defaults();
    c->level = KJ_LOG_INFO;
    c->resync_ms = 5 * 60 * 1000;
    c->leader_elect = 1;
    c->instance_grace_ms = 10 * 60 * 1000;
    c->elect = (kj_elect_cfg){.name = "kjournald",
                              .lease_ms = KJ_ELECT_LEASE_MS,
                              .renew_deadline_ms = KJ_ELECT_RENEW_DEADLINE_MS,
                              .retry_ms = KJ_ELECT_RETRY_MS};
    kj_kube_flags_init(&c->kube);
    kj_policy_init(&c->policy);
    kj_opt kube_opts[KJ_KUBE_OPTS], policy_opts[KJ_POLICY_OPTS];
    kj_kube_opts(kube_opts, &c->kube);
    kj_policy_opts(policy_opts, &c->policy);
    const kj_opt opts[] = {
        {"journal", 0, KJ_OPT_STRING, &c->journal, "PATH",
         .help = "journal file, created if missing, mode 0600 whatever\n"
                 "the umask (default " KJ_DEFAULT_JOURNAL ")"},
        {"group-readable", 0, KJ_OPT_FLAG, &c->group_readable, NULL,
         .help = "create the journal mode 0640 instead, for readers in\n"
                 "its group (kjournal backup has the same option)"},
        {"listen", 0, KJ_OPT_STRINGS, c->listen, "ENDPOINT",
         .help = "tcp://HOST:PORT or ipc://PATH; repeat for several\n"
                 "(default " KJ_IPC_DEFAULT_ENDPOINT "). An ipc:// socket is\n"
                 "created mode 0600; its directory is created 0700;\n"
                 "a directory other users could take over (writable\n"
                 "by all, like /tmp itself) is refused (exit 2)",
         .max = KJD_MAX_LISTEN, .count = &c->n_listen},
        {"batch-max", 0, KJ_OPT_SIZE, &c->srv.batch_max, "N",
         .help = "events per commit (default " KJ_STR(KJ_IPC_BATCH_MAX) ")", .min = 1,
         .max = 100000},
        {"batch-window-ms", 0, KJ_OPT_INT, &c->srv.batch_window_ms, "N",
         .help = "when the queue runs dry, wait up to N ms for more\n"
                 "before committing (default 0: commit what is there)",
         .min = 0, .max = 1000},
        {"max-message", 0, KJ_OPT_SIZE, &c->srv.max_message, "BYTES",
         .help = "largest request frame accepted (default " KJ_STR(
             KJ_IPC_MAX_MESSAGE) "); larger\n"
                                 "ones are answered too_large up to 16 MiB (or\n"
                                 "BYTES+64KiB), beyond which libzmq drops the connection",
         .min = 1024, .max = 64 << 20},
        {"max-events", 0, KJ_OPT_SIZE, &c->srv.max_events, "N",
         .help = "events per request (default " KJ_STR(KJ_IPC_MAX_EVENTS) ")", .min = 1,
         .max = 100000},
        {"hwm", 0, KJ_OPT_INT, &c->srv.hwm, "N",
         .help = "messages queued per peer each way (default " KJ_STR(KJ_IPC_HWM) ")", .min = 1,
         .max = 10000000},
        {"max-queued-bytes", 0, KJ_OPT_SIZE, &c->srv.max_queued_bytes, "N",
         .help = "requests held, all peers together (default 64 MiB);\n"
                 "beyond it they are answered overloaded (retry)",
         .min = 1 << 20, .max = 1LL << 40},
        {"curve-secret-key", 0, KJ_OPT_STRING, &c->srv.curve_secret_key, "FILE",
         .help =
             "enable CURVE with this server secret key (Z85,\nas written by 'kjournal keygen')"},
        {"curve-allow", 0, KJ_OPT_STRING, &c->srv.curve_allow_dir, "DIR",
         .help = "with CURVE: admit only clients whose public key is\n"
                 "in a DIR/*.pub file (read at start)"},
        {"metrics", 0, KJ_OPT_STRING, &c->metrics, "ADDR:PORT",
         .help = "serve /healthz, /readyz, /metrics (Prometheus)"},
        {"log-level", 0, KJ_OPT_CALL, NULL, "LEVEL",
         .help = "debug, info, warn or error (default info)", .fn = log_level, .ud = &c->level},
        {"help", 'h', KJ_OPT_FLAG, &help, NULL, .help = "this help"},
        {"check-config", 0, KJ_OPT_FLAG, &c->check_config, NULL,
         .help = "check the flags, the endpoints, the CURVE files, the\n"
                 "--metrics address, the Kubernetes configuration and that\n"
                 "the journal's directory exists, then exit 0 (or the usual\n"
                 "exit code); nothing is opened, listened on or changed"},
        {"print-rbac", 0, KJ_OPT_FLAG, &c->print_rbac, NULL,
         .help = "print the RBAC rules the Kubernetes client needs (a\n"
                 "Role's rules:, from its operation table) and exit"},
        KJ_OPTS_SECTION("reconciliation (the recovery pass at start-up, a pass for the pods of\n"
                        "every session that opens with an engine or closes, a watch on the\n"
                        "engine pods that acts on each pod as it changes, a resync every\n"
                        "interval; see 'kjournal recover --help' for what a pass does):"),
        {"no-reconcile", 0, KJ_OPT_FLAG, &c->no_reconcile, NULL,
         .help = "run as a pure journal. So does a start without any\n"
                 "Kubernetes configuration (no flags, no kubeconfig,\n"
                 "not in a cluster); the log says which"},
        {"resync", 0, KJ_OPT_DURATION, &c->resync_ms, "DUR",
         .help = "full pass every DUR (default 5m, at least 1s)", .min = 1000},
        KJ_OPTS_INCLUDE(kube_opts),
        KJ_OPTS_INCLUDE(policy_opts),
        KJ_OPTS_SECTION("several kjournald on one cluster (a Lease, as kube-controller-manager):"),
        {"leader-elect", 0, KJ_OPT_BOOL, &c->leader_elect, NULL,
         .help = "change the cluster only while holding the Lease\n"
                 "(default true when reconciling); without it a\n"
                 "standby keeps ingesting, /readyz answers 503"},
        {"leader-elect-resource-name", 0, KJ_OPT_STRING, &c->elect.name, "NAME",
         .help = "the Lease, in the first --namespace (default kjournald)"},
        {"leader-elect-lease-duration", 0, KJ_OPT_DURATION, &c->elect.lease_ms, "DUR",
         .help = "a standby takes over when the holder has not renewed\n"
                 "for DUR (default 15s)",
         .min = 1000},
        {"leader-elect-renew-deadline", 0, KJ_OPT_DURATION, &c->elect.renew_deadline_ms, "DUR",
         .help = "a holder that could not renew for DUR stops changing\n"
                 "the cluster (default 10s; less than the duration)",
         .min = 1},
        {"leader-elect-retry-period", 0, KJ_OPT_DURATION, &c->elect.retry_ms, "DUR",
         .help = "how often to try to acquire or renew (default 2s)", .min = 1},
        {"identity", 0, KJ_OPT_STRING, &c->identity, "ID",
         .help = "this instance's name in the Lease, the audit and the\n"
                 "User-Agent (default: host name, '_', random hex;\n"
                 "per server: required, the Kyuubi server's stable name)"},
        {"topology", 0, KJ_OPT_CHOICE, &c->topology, "central|per-server",
         .help = "central (default): one kjournald owns every engine pod;\n"
                 "per-server: one beside each Kyuubi server, each\n"
                 "claiming the pods its sessions use (finalizer\n"
                 "kjournal.apache.org/claim-ID), its Lease kjournald-ID\n"
                 "as proof of life, the Lease kjournald-sweeper electing\n"
                 "who handles orphans and the claims of dead instances",
         .choices = topologies},
        {"instance-grace", 0, KJ_OPT_DURATION, &c->instance_grace_ms, "DUR",
         .help = "per server: the claims of an instance whose Lease has\n"
                 "been expired this long are removed (default 10m)"},
        {0},
    };
    int rc = kj_opts_parse("kjournald", opts, argc, argv, &n);
    if (help) {
        kj_opts_usage(stdout, usage, opts, usage_end);
        exit(KJ_EXIT_OK);
    }
    if (rc)
        return rc;
    if (c->print_rbac) {
        kj_kube_print_rbac(stdout);
        exit(KJ_EXIT_OK);
    }
    if (n)
        return kj_opts_fail("kjournald", KJ_EXIT_USAGE, "unexpected argument '%s'", argv[1]);
    if (!!c->srv.curve_secret_key != !!c->srv.curve_allow_dir)
        return kj_opts_fail("kjournald", KJ_EXIT_USAGE,
                            "--curve-secret-key and --curve-allow go together");
    if (!c->n_listen)
        c->listen[c->n_listen++] = KJ_IPC_DEFAULT_ENDPOINT;
    c->srv.endpoints = c->listen;
    c->srv.n_endpoints = c->n_listen;
    c->kube.max_in_flight = c->policy.concurrency;
    return check_identity(c);
}

/* --check-config: what a start would read, read; nothing opened for writing,
 * bound or connected. Exits 0 on success; else returns the exit code a start
 * would have given, once reported. */
static int check_config(config *c)
{
    kj_err err = {0};
    char what[1024], q[600];
    size_t allowed = 0;
    for (size_t i = 0; i < c->n_listen; i++)
        if (kj_ipc_check_endpoint(c->listen[i], 1, &err) < 0)
            return kj_opts_fail("kjournald", KJ_EXIT_USAGE, "%s", err.msg);
    if (kj_ipc_check_server_keys(c->srv.curve_secret_key, c->srv.curve_allow_dir, &allowed, &err) <
        0)
        return kj_opts_fail("kjournald", err.code == KJ_EINVAL ? KJ_EXIT_USAGE : KJ_EXIT_FAILURE,
                            "%s", err.msg);
    if (c->metrics && kjd_metrics_check_addr(c->metrics, &err) < 0)
        return kj_opts_fail("kjournald", KJ_EXIT_USAGE, "%s", err.msg);
    /* the journal is created if missing, its directory never */
    snprintf(q, sizeof q, "%s", c->journal);
    char *slash = strrchr(q, '/');
    const char *dir = !slash ? "." : slash == q ? "/" : (*slash = 0, q);
    struct stat sb;
    if (stat(dir, &sb) < 0 || !S_ISDIR(sb.st_mode))
        return kj_opts_fail("kjournald", KJ_EXIT_NOFILE,
                            "journal '%s': its directory '%s' does not exist", c->journal, dir);
    int n = snprintf(what, sizeof what, "journal %s (not opened), listen", c->journal);
    for (size_t i = 0; i < c->n_listen && n < (int)sizeof what; i++)
        n += snprintf(what + n, sizeof what - (size_t)n, " %s", c->listen[i]);
    if (n < (int)sizeof what && c->srv.curve_secret_key)
        n += snprintf(what + n, sizeof what - (size_t)n, ", curve on (%zu allowed keys)", allowed);
    if (n < (int)sizeof what && c->metrics)
        n += snprintf(what + n, sizeof what - (size_t)n, ", metrics %s", c->metrics);
    if (c->no_reconcile) {
        if (n < (int)sizeof what)
            snprintf(what + n, sizeof what - (size_t)n, ", reconciler off (--no-reconcile)");
        kj_opts_config_ok("kjournald", what);
    }
    kj_kube_config *kcfg = NULL;
    int rc = kj_kube_config_load(&c->kube, &kcfg, &err);
    if (rc < 0 && rc != KJ_ENOENT)
        return kj_opts_fail("kjournald", KJ_EXIT_USAGE, "bad Kubernetes configuration: %s",
                            err.msg);
    if (n < (int)sizeof what)
        snprintf(what + n, sizeof what - (size_t)n, ", reconciler %s%s%s%s",
                 kcfg ? "on: server " : "off (no Kubernetes configuration)",
                 kcfg ? kj_kube_config_server(kcfg) : "", kcfg ? " from " : "",
                 kcfg ? kj_kube_config_source(kcfg) : "");
    kj_kube_config_free(kcfg);
    kj_opts_config_ok("kjournald", what);
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
        if (e->type == KJ_EVENT_SERVER_START)
            kjd_reconciler_notify_all(g_reconciler);
        else if (e->type == KJ_EVENT_SESSION_CLOSE || (e->engine_tag && *e->engine_tag) ||
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
        return KJ_EXIT_USAGE;
    }
    if (c->leader_elect) {
        c->elect.namespace_ =
            c->policy.n_namespaces ? c->policy.namespaces[0] : kj_kube_config_namespace(*cfg);
        kj_elect_cfg ec[2] = {c->elect, c->elect};
        ec[1].name = KJ_SWEEPER_LEASE;
        if (kjd_lease_start(*cfg, ec, c->policy.per_server ? 2 : 1, c->user_agent, &g_lease,
                            &err)) {
            kj_log(KJ_LOG_ERROR, "cannot start the leader election", "error=%s",
                   kj_logq(q, sizeof q, err.msg));
            return KJ_EXIT_FAILURE;
        }
        kj_log(KJ_LOG_INFO, "leader election", "lease=%s/%s identity=%s lease_duration_ms=%lld",
               c->elect.namespace_, c->elect.name, kj_logq(q, sizeof q, c->identity),
               (long long)c->elect.lease_ms);
    } else {
        kj_log(KJ_LOG_WARN, "leader election off (--leader-elect=false)",
               "identity=%s reason=\"another kjournald on this cluster would act too\"",
               kj_logq(q, sizeof q, c->identity));
    }
    kjd_reconciler_opts ro = {
        .cfg = *cfg,
        .pol = &c->policy,
        .resync_ms = c->resync_ms,
        .identity = c->identity,
        .user_agent = c->user_agent,
        .fence = g_lease ? kjd_lease_fence(g_lease) : NULL,
        .sweeper_fence = g_lease && c->policy.per_server ? kjd_lease_fence_all(g_lease) : NULL,
        .lease_namespace = c->elect.namespace_,
        .instance_grace_ms = c->instance_grace_ms};
    if (kjd_reconciler_start(c->journal, &ro, &g_reconciler, &err)) {
        kj_log(KJ_LOG_ERROR, "cannot start the reconciler", "error=%s",
               kj_logq(q, sizeof q, err.msg));
        return KJ_EXIT_FAILURE;
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
        return KJ_EXIT_NOFILE;
    case KJ_ENOTJOURNAL:
        return KJ_EXIT_NOTJOURNAL;
    case KJ_ETOONEW:
        return KJ_EXIT_TOONEW;
    case KJ_ECORRUPT:
        return KJ_EXIT_CORRUPT;
    case KJ_ELOCKED:
        return KJ_EXIT_LOCKED;
    case KJ_ESTALE:
        return KJ_EXIT_LOST;
    default:
        return KJ_EXIT_FAILURE;
    }
}

int main(int argc, char **argv)
{
    config c = {0};
    int code = parse_args(argc, argv, &c), rc;
    if (code)
        return code;
    if (c.check_config)
        return check_config(&c);
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
    char q[4200];
    if ((rc = kj_journal_open(c.journal,
                              KJ_JOURNAL_LOCK | KJ_JOURNAL_CHECKPOINTER |
                                  (c.group_readable ? KJ_JOURNAL_GROUP_READABLE : 0),
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
        code = err.code == KJ_EUNAVAIL ? KJ_EXIT_UNAVAILABLE
               : err.code == KJ_EINVAL ? KJ_EXIT_USAGE
                                       : KJ_EXIT_FAILURE;
        goto out;
    }
    /* The sockets listen before the server is returned: a SIGTERM may come
     * from anyone who saw the port open, and still means a clean stop. */
    if (g_stop)
        kj_ipc_server_stop(g_server);
    if (c.metrics && kjd_metrics_start(c.metrics, g_server, c.journal, &m, &err) < 0) {
        kj_log(KJ_LOG_ERROR, "cannot start metrics", "error=%s", kj_logq(q, sizeof q, err.msg));
        code = err.code == KJ_EUNAVAIL ? KJ_EXIT_UNAVAILABLE : KJ_EXIT_USAGE;
        goto out;
    }
    if ((code = start_reconciler(&c, &kcfg)))
        goto out;
    kj_log(KJ_LOG_INFO, "serving", "batch_max=%zu batch_window_ms=%d max_message=%zu",
           c.srv.batch_max, c.srv.batch_window_ms, c.srv.max_message);
    if ((rc = kj_ipc_server_run(g_server, &err)) < 0) {
        kj_log(KJ_LOG_ERROR, "ingest failed", "error=%s", kj_logq(q, sizeof q, err.msg));
        code = rc == KJ_ESTALE ? KJ_EXIT_LOST : KJ_EXIT_FAILURE;
    }
    kj_log(KJ_LOG_INFO, "stopping", "reason=%s", code ? "error" : "signal");
out:
    kjd_reconciler_stop(g_reconciler);
    g_reconciler = NULL;
    kjd_lease_stop(g_lease); /* after the reconciler: it releases the Lease */
    g_lease = NULL;
    kj_kube_config_free(kcfg);
    kjd_metrics_stop(m);
    kj_ipc_server_destroy(g_server);
    g_server = NULL;
    kj_journal_close(j);
    if (code == KJ_EXIT_OK)
        kj_log(KJ_LOG_INFO, "stopped", "code=%d", code);
    return code;
}
