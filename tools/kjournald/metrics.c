/*
 * metrics.c - /healthz, /readyz, /metrics for kjournald (see metrics.h).
 *
 * libmicrohttpd runs in its "external" epoll mode, driven by a thread of our
 * own, so that every callback (connections starting and closing, requests,
 * MHD's own messages) runs on that one thread, beside the two rules MHD has
 * no option for:
 *
 *   - a deadline per request that trickling cannot extend: MHD's own
 *     timeout is an idle timeout, which a byte every few seconds resets;
 *     here a connection gets REQUEST_DEADLINE_MS from its accept (or from the
 *     end of its previous request) to the end of its answer;
 *   - room for probes: past CONN_MAX connections a new one closes the oldest
 *     instead of being refused, so idle or slow clients cannot keep a probe
 *     out; a probe is answered within milliseconds, long before CONN_MAX
 *     newer connections could push it out in turn.
 *
 * We close a connection with shutdown(2): MHD then sees the end of the
 * stream, closes the descriptor itself and tells us (CLOSED) before it does,
 * on this same thread, so a descriptor we shut down is never one MHD has
 * already closed and handed to someone else.
 */
#include "metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "reconcile.h"

#define CONN_MAX 64 /* connections served at once; a new one past it closes the oldest */
#define CONN_MHD_LIMIT (2 * CONN_MAX) /* MHD's own limit: room to accept, then evict */
#define REQUEST_DEADLINE_MS 10000
#define IDLE_TIMEOUT_S 10
#define LOG_WINDOW_MS 60000 /* at most LOG_BURST messages a window, then a count */
#define LOG_BURST 10

/* A connection, oldest first in the list: `since` only grows along it. */
typedef struct conn {
    struct conn *prev, *next;
    int fd;
    int closing;   /* shut down by us; MHD has not closed it yet */
    int64_t since; /* mono ms: accepted, or its previous request ended */
    char peer[64];
} conn;

struct kjd_metrics {
    struct MHD_Daemon *d;
    kj_ipc_server *srv;
    char *path;
    pthread_t thread;
    int running;
    atomic_int stopping;
    int wake[2];
    /* below: only the serving thread touches them */
    conn *head, *tail;
    int n_conns;
    uint64_t closed_deadline, closed_evicted;
    int64_t log_window;
    int log_count;
    uint64_t log_suppressed;
};

/* kj_log, at most LOG_BURST records a minute: a flood of connections must not
 * become a flood of log lines. */
static void log_limited(kjd_metrics *m, kj_log_level level, const char *msg, const char *detail)
{
    char q[600];
    int64_t now = kj_mono_ms();
    if (now - m->log_window >= LOG_WINDOW_MS) {
        if (m->log_suppressed)
            kj_log(KJ_LOG_WARN, "metrics: messages suppressed", "count=%llu window_s=%d",
                   (unsigned long long)m->log_suppressed, LOG_WINDOW_MS / 1000);
        m->log_window = now;
        m->log_count = 0;
        m->log_suppressed = 0;
    }
    if (m->log_count >= LOG_BURST) {
        m->log_suppressed++;
        return;
    }
    m->log_count++;
    kj_log(level, msg, "detail=%s", kj_logq(q, sizeof q, detail));
}

/* MHD's own messages ("Connection was closed by remote side ..."), in logfmt. */
static void on_mhd_message(void *cls, const char *fmt, va_list ap)
{
    kjd_metrics *m = cls;
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    size_t n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    log_limited(m, KJ_LOG_WARN, "metrics: http server", buf);
}

static void conn_unlink(kjd_metrics *m, conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        m->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        m->tail = c->prev;
    c->prev = c->next = NULL;
}

static void conn_append(kjd_metrics *m, conn *c)
{
    c->prev = m->tail;
    c->next = NULL;
    if (m->tail)
        m->tail->next = c;
    else
        m->head = c;
    m->tail = c;
}

static void conn_close(kjd_metrics *m, conn *c, const char *why)
{
    char detail[160];
    c->closing = 1;
    m->n_conns--;
    shutdown(c->fd, SHUT_RDWR);
    if (!strcmp(why, "deadline")) {
        m->closed_deadline++;
        snprintf(detail, sizeof detail, "peer %s: no complete request within %d ms", c->peer,
                 REQUEST_DEADLINE_MS);
    } else {
        m->closed_evicted++;
        snprintf(detail, sizeof detail,
                 "peer %s: the oldest of %d connections, closed to make room for a new one",
                 c->peer, CONN_MAX + 1);
    }
    log_limited(m, KJ_LOG_WARN, "metrics: connection closed", detail);
}

static void on_connection(void *cls, struct MHD_Connection *mc, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    kjd_metrics *m = cls;
    if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        conn *c = *socket_context;
        if (c) {
            if (!c->closing)
                m->n_conns--;
            conn_unlink(m, c);
            free(c);
            *socket_context = NULL;
        }
        return;
    }
    const union MHD_ConnectionInfo *fd =
        MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
    conn *c = fd ? calloc(1, sizeof *c) : NULL;
    if (!c)
        return; /* untracked: MHD's idle timeout and limit still hold */
    c->fd = fd->connect_fd;
    c->since = kj_mono_ms();
    snprintf(c->peer, sizeof c->peer, "?");
    const union MHD_ConnectionInfo *ai =
        MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ai && ai->client_addr) {
        socklen_t len = ai->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                               : sizeof(struct sockaddr_in);
        char host[INET6_ADDRSTRLEN], port[8];
        if (!getnameinfo(ai->client_addr, len, host, sizeof host, port, sizeof port,
                         NI_NUMERICHOST | NI_NUMERICSERV))
            snprintf(c->peer, sizeof c->peer, "%s:%s", host, port);
    }
    *socket_context = c;
    conn_append(m, c);
    m->n_conns++;
    /* the oldest goes, never the newcomer: a probe always gets in */
    for (conn *o = m->head; m->n_conns > CONN_MAX && o; o = o->next)
        if (!o->closing && o != c)
            conn_close(m, o, "evicted");
}

/* A request answered (or abandoned): the next one on this connection has a
 * deadline of its own. */
static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)con_cls, (void)toe;
    kjd_metrics *m = cls;
    const union MHD_ConnectionInfo *i =
        MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    conn *c = i ? i->socket_context : NULL;
    if (!c || c->closing)
        return;
    c->since = kj_mono_ms();
    conn_unlink(m, c);
    conn_append(m, c);
}

/* Closes what is past its deadline; returns ms until the next deadline (-1: none). */
static int64_t enforce_deadlines(kjd_metrics *m)
{
    int64_t now = kj_mono_ms();
    for (conn *c = m->head; c; c = c->next) {
        if (c->closing)
            continue;
        int64_t left = c->since + REQUEST_DEADLINE_MS - now;
        if (left > 0)
            return left;
        conn_close(m, c, "deadline");
    }
    return -1;
}

static void *serve(void *arg)
{
    kjd_metrics *m = arg;
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(m->d, MHD_DAEMON_INFO_EPOLL_FD);
    struct pollfd p[2] = {{.fd = di ? di->epoll_fd : -1, .events = POLLIN},
                          {.fd = m->wake[0], .events = POLLIN}};
    while (!atomic_load(&m->stopping)) {
        int64_t wait = 1000;
        MHD_UNSIGNED_LONG_LONG mt;
        if (MHD_get_timeout(m->d, &mt) == MHD_YES && (int64_t)mt < wait)
            wait = (int64_t)mt;
        int64_t next = enforce_deadlines(m);
        if (next >= 0 && next < wait)
            wait = next;
        if (poll(p, 2, (int)wait) < 0 && errno != EINTR) {
            kj_log(KJ_LOG_ERROR, "metrics: poll failed", "error=\"%s\"", strerror(errno));
            break;
        }
        if (p[1].revents) {
            char b[16];
            while (read(m->wake[0], b, sizeof b) > 0)
                ;
        }
        MHD_run(m->d);
        enforce_deadlines(m);
    }
    return NULL;
}

static int64_t file_size(const char *path, const char *suffix)
{
    char p[4200];
    snprintf(p, sizeof p, "%s%s", path, suffix);
    struct stat sb;
    return stat(p, &sb) == 0 ? (int64_t)sb.st_size : 0;
}

static void histogram(FILE *b, const char *name, const char *help, const double *bounds,
                      const uint64_t *counts, double sum)
{
    char line[256];
    snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    fputs(line, b);
    uint64_t cum = 0;
    for (int i = 0; i < KJ_IPC_BUCKETS; i++) {
        cum += counts[i];
        if (i < KJ_IPC_BUCKETS - 1)
            snprintf(line, sizeof line, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i],
                     (unsigned long long)cum);
        else
            snprintf(line, sizeof line, "%s_bucket{le=\"+Inf\"} %llu\n", name,
                     (unsigned long long)cum);
        fputs(line, b);
    }
    snprintf(line, sizeof line, "%s_sum %.9g\n%s_count %llu\n", name, sum, name,
             (unsigned long long)cum);
    fputs(line, b);
}

/* The ingest loop's counters and histograms. */
static void render_ingest(FILE *f, const kj_ipc_stats *st)
{
    char line[512];
    snprintf(line, sizeof line,
             "# HELP kjournal_ingest_events_total Events answered, by result.\n"
             "# TYPE kjournal_ingest_events_total counter\n"
             "kjournal_ingest_events_total{result=\"stored\"} %llu\n"
             "kjournal_ingest_events_total{result=\"duplicate\"} %llu\n"
             "kjournal_ingest_events_total{result=\"rejected\"} %llu\n",
             (unsigned long long)st->events_stored, (unsigned long long)st->events_duplicate,
             (unsigned long long)st->events_rejected);
    fputs(line, f);
    snprintf(line, sizeof line,
             "# HELP kjournal_ingest_requests_total Requests received.\n"
             "# TYPE kjournal_ingest_requests_total counter\n"
             "kjournal_ingest_requests_total %llu\n"
             "# HELP kjournal_ingest_bad_requests_total Requests refused as a whole.\n"
             "# TYPE kjournal_ingest_bad_requests_total counter\n"
             "kjournal_ingest_bad_requests_total %llu\n"
             "# HELP kjournal_ingest_replies_dropped_total Replies to peers gone or too slow.\n"
             "# TYPE kjournal_ingest_replies_dropped_total counter\n"
             "kjournal_ingest_replies_dropped_total %llu\n",
             (unsigned long long)st->requests, (unsigned long long)st->bad_requests,
             (unsigned long long)st->replies_dropped);
    fputs(line, f);
    snprintf(line, sizeof line,
             "# HELP kjournal_ingest_commit_failures_total Batches the journal could not commit.\n"
             "# TYPE kjournal_ingest_commit_failures_total counter\n"
             "kjournal_ingest_commit_failures_total %llu\n",
             (unsigned long long)st->commit_failures);
    fputs(line, f);
    snprintf(line, sizeof line,
             "# HELP kjournal_ingest_overloaded_total Requests answered \"overloaded\" (retry): "
             "kjournald held --max-queued-bytes.\n"
             "# TYPE kjournal_ingest_overloaded_total counter\n"
             "kjournal_ingest_overloaded_total %llu\n"
             "# HELP kjournal_ingest_queued_bytes Requests held, read and not yet answered.\n"
             "# TYPE kjournal_ingest_queued_bytes gauge\n"
             "kjournal_ingest_queued_bytes %llu\n",
             (unsigned long long)st->overloaded, (unsigned long long)st->queued_bytes);
    fputs(line, f);
    histogram(f, "kjournal_ingest_batch_size", "Events per commit.", kj_ipc_batch_bounds,
              st->batch_hist, (double)st->batch_sum);
    histogram(f, "kjournal_ingest_commit_seconds", "Time to append and commit a batch.",
              kj_ipc_commit_bounds_s, st->commit_hist, st->commit_sum_s);
}

/* The journal's files, the ingest loop, this endpoint's connections and the
 * reconciler's running orphans. */
static void render_daemon(FILE *f, const kjd_metrics *m, int running)
{
    char line[512];
    snprintf(line, sizeof line,
             "# HELP kjournal_journal_bytes Size of the journal files.\n"
             "# TYPE kjournal_journal_bytes gauge\n"
             "kjournal_journal_bytes{file=\"db\"} %lld\n"
             "kjournal_journal_bytes{file=\"wal\"} %lld\n"
             "# HELP kjournal_ingest_up Whether the ingest loop is serving.\n"
             "# TYPE kjournal_ingest_up gauge\n"
             "kjournal_ingest_up %d\n",
             (long long)file_size(m->path, ""), (long long)file_size(m->path, "-wal"), running);
    fputs(line, f);
    fprintf(f,
            "# HELP kjournal_metrics_connections Connections open to this endpoint.\n"
            "# TYPE kjournal_metrics_connections gauge\n"
            "kjournal_metrics_connections %d\n"
            "# HELP kjournal_metrics_connections_closed_total Connections this endpoint closed:"
            " no complete request within its deadline, or the oldest when too many were open.\n"
            "# TYPE kjournal_metrics_connections_closed_total counter\n"
            "kjournal_metrics_connections_closed_total{reason=\"deadline\"} %llu\n"
            "kjournal_metrics_connections_closed_total{reason=\"evicted\"} %llu\n",
            m->n_conns, (unsigned long long)m->closed_deadline,
            (unsigned long long)m->closed_evicted);
    int64_t orphans = kjd_reconciler_running_orphans();
    if (orphans >= 0) { /* absent until a full pass has counted them */
        fprintf(f,
                "# HELP kjournal_reconcile_running_orphans Live engine pods no session in the"
                " journal uses, kept running, as of the last full pass"
                " ('kjournal recover --dry-run' lists them).\n"
                "# TYPE kjournal_reconcile_running_orphans gauge\n"
                "kjournal_reconcile_running_orphans %lld\n",
                (long long)orphans);
    }
}

static char *render(kjd_metrics *m)
{
    kj_ipc_stats st;
    kj_ipc_server_stats(m->srv, &st);
    char *out = NULL;
    size_t outlen = 0;
    FILE *f = open_memstream(&out, &outlen);
    if (!f)
        return NULL;
    render_ingest(f, &st);
    render_daemon(f, m, st.running);
    if (fclose(f) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    (void)version, (void)upload, (void)upload_size, (void)con_cls;
    kjd_metrics *m = cls;
    unsigned code = 200;
    char *body = NULL;
    const char *type = "text/plain; charset=utf-8";
    if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
        code = 405;
        body = strdup("method not allowed\n");
    } else if (!strcmp(url, "/healthz")) {
        body = strdup("ok\n");
    } else if (!strcmp(url, "/readyz")) {
        kj_ipc_stats st;
        kj_ipc_server_stats(m->srv, &st);
        int ready = st.running && st.last_commit == 0;
        code = ready ? 200 : 503;
        body = strdup(ready                         ? "ready\n"
                      : st.last_commit == KJ_ESTALE ? "journal deleted or replaced\n"
                      : st.running                  ? "journal failing\n"
                                                    : "not serving\n");
    } else if (!strcmp(url, "/metrics")) {
        body = render(m);
        type = "text/plain; version=0.0.4; charset=utf-8";
    } else {
        code = 404;
        body = strdup("not found\n");
    }
    if (!body)
        return MHD_NO;
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

/* addr as a numeric address to bind; 0 or KJ_EINVAL. */
static int parse_addr(const char *addr, struct addrinfo **ai, kj_err *err)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (!colon || !colon[1])
        return kj_err_set(err, KJ_EINVAL, "--metrics '%s': expected ADDR:PORT", addr);
    size_t hl = (size_t)(colon - addr);
    if (hl >= sizeof host)
        return kj_err_set(err, KJ_EINVAL, "--metrics '%s': address too long", addr);
    memcpy(host, addr, hl);
    host[hl] = 0;
    const char *h = host;
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        host[hl - 1] = 0;
        h = host + 1;
    }
    struct addrinfo hints = {0};
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
    hints.ai_socktype = SOCK_STREAM;
    *ai = NULL;
    if (getaddrinfo(*h ? h : NULL, colon + 1, &hints, ai) != 0 || !*ai)
        return kj_err_set(err, KJ_EINVAL, "--metrics '%s': not a numeric ADDR:PORT", addr);
    return 0;
}

int kjd_metrics_check_addr(const char *addr, kj_err *err)
{
    struct addrinfo *ai = NULL;
    int rc = parse_addr(addr, &ai, err);
    if (ai)
        freeaddrinfo(ai);
    return rc;
}

int kjd_metrics_start(const char *addr, kj_ipc_server *srv, const char *journal_path,
                      kjd_metrics **out, kj_err *err)
{
    struct addrinfo *ai = NULL;
    int rc = parse_addr(addr, &ai, err);
    if (rc)
        return rc;
    kjd_metrics *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(journal_path))) {
        free(m);
        freeaddrinfo(ai);
        return kj_err_set(err, KJ_ENOMEM, "out of memory");
    }
    m->srv = srv;
    m->wake[0] = m->wake[1] = -1;
    if (pipe2(m->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        free(m->path);
        free(m);
        freeaddrinfo(ai);
        return kj_err_set(err, KJ_EIO, "metrics: cannot create a pipe: %s", strerror(errno));
    }
    /* no MHD_USE_INTERNAL_POLLING_THREAD: serve() drives it */
    unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    /* the logger first: MHD prints what comes before it on stderr */
    m->d = MHD_start_daemon(
        flags, 0, NULL, NULL, answer, m, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_message, m,
        MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_NOTIFY_CONNECTION, on_connection, m,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, m, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)CONN_MHD_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)IDLE_TIMEOUT_S,
        MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!m->d || !MHD_get_daemon_info(m->d, MHD_DAEMON_INFO_EPOLL_FD)) {
        int rc = kj_err_set(err, KJ_EUNAVAIL, "cannot serve metrics on '%s'", addr);
        kjd_metrics_stop(m);
        return rc;
    }
    if (pthread_create(&m->thread, NULL, serve, m)) {
        int rc = kj_err_set(err, KJ_ENOMEM, "metrics: cannot start its thread");
        kjd_metrics_stop(m);
        return rc;
    }
    m->running = 1;
    kj_log(KJ_LOG_INFO, "metrics listening", "addr=%s", addr);
    *out = m;
    return 0;
}

void kjd_metrics_stop(kjd_metrics *m)
{
    if (!m)
        return;
    if (m->running) {
        atomic_store(&m->stopping, 1);
        ssize_t w = write(m->wake[1], "x", 1);
        (void)w;
        pthread_join(m->thread, NULL);
    }
    if (m->d)
        MHD_stop_daemon(m->d); /* closes what is left; CLOSED frees our records */
    for (int i = 0; i < 2; i++)
        if (m->wake[i] >= 0)
            close(m->wake[i]);
    free(m->path);
    free(m);
}
