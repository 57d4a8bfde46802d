/* metrics.c - /healthz, /readyz, /metrics for kjournald (see metrics.h). */
#include "metrics.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

struct kjd_metrics {
    struct MHD_Daemon *d;
    kj_ipc_server *srv;
    char *path;
};

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

static char *render(kjd_metrics *m)
{
    kj_ipc_stats st;
    kj_ipc_server_stats(m->srv, &st);
    char *out = NULL;
    size_t outlen = 0;
    FILE *f = open_memstream(&out, &outlen);
    if (!f)
        return NULL;
    char line[512];
    snprintf(line, sizeof line,
             "# HELP kjournal_ingest_events_total Events answered, by result.\n"
             "# TYPE kjournal_ingest_events_total counter\n"
             "kjournal_ingest_events_total{result=\"stored\"} %llu\n"
             "kjournal_ingest_events_total{result=\"duplicate\"} %llu\n"
             "kjournal_ingest_events_total{result=\"rejected\"} %llu\n",
             (unsigned long long)st.events_stored, (unsigned long long)st.events_duplicate,
             (unsigned long long)st.events_rejected);
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
             (unsigned long long)st.requests, (unsigned long long)st.bad_requests,
             (unsigned long long)st.replies_dropped);
    fputs(line, f);
    snprintf(line, sizeof line,
             "# HELP kjournal_ingest_commit_failures_total Batches the journal could not commit.\n"
             "# TYPE kjournal_ingest_commit_failures_total counter\n"
             "kjournal_ingest_commit_failures_total %llu\n",
             (unsigned long long)st.commit_failures);
    fputs(line, f);
    histogram(f, "kjournal_ingest_batch_size", "Events per commit.", kj_ipc_batch_bounds,
              st.batch_hist, (double)st.batch_sum);
    histogram(f, "kjournal_ingest_commit_seconds", "Time to append and commit a batch.",
              kj_ipc_commit_bounds_s, st.commit_hist, st.commit_sum_s);
    snprintf(line, sizeof line,
             "# HELP kjournal_journal_bytes Size of the journal files.\n"
             "# TYPE kjournal_journal_bytes gauge\n"
             "kjournal_journal_bytes{file=\"db\"} %lld\n"
             "kjournal_journal_bytes{file=\"wal\"} %lld\n"
             "# HELP kjournal_ingest_up Whether the ingest loop is serving.\n"
             "# TYPE kjournal_ingest_up gauge\n"
             "kjournal_ingest_up %d\n",
             (long long)file_size(m->path, ""), (long long)file_size(m->path, "-wal"), st.running);
    fputs(line, f);
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

int kjd_metrics_start(const char *addr, kj_ipc_server *srv, const char *journal_path,
                      kjd_metrics **out, kj_err *err)
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
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(*h ? h : NULL, colon + 1, &hints, &ai) != 0 || !ai)
        return kj_err_set(err, KJ_EINVAL, "--metrics '%s': not a numeric ADDR:PORT", addr);
    kjd_metrics *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(journal_path))) {
        free(m);
        freeaddrinfo(ai);
        return kj_err_set(err, KJ_ENOMEM, "out of memory");
    }
    m->srv = srv;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    m->d = MHD_start_daemon(flags, 0, NULL, NULL, answer, m, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                            MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_CONNECTION_TIMEOUT, 10u,
                            MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!m->d) {
        free(m->path);
        free(m);
        return kj_err_set(err, KJ_EUNAVAIL, "cannot serve metrics on '%s'", addr);
    }
    kj_log(KJ_LOG_INFO, "metrics listening", "addr=%s", addr);
    *out = m;
    return 0;
}

void kjd_metrics_stop(kjd_metrics *m)
{
    if (!m)
        return;
    MHD_stop_daemon(m->d);
    free(m->path);
    free(m);
}
