/*
 * bench_ingest - the ingest path end to end: P publisher threads (kj_publisher,
 * DEALER, a window of requests in flight) send events over tcp loopback to
 * kjournald running as a real process; every event is acked only after its
 * group commit (synchronous=FULL). In the same run, on the same disk, it
 * inserts the same number of rows into a plain SQLite table in batches, and
 * prints the ratio. Then a latency run: one open-loop DEALER offering a fixed
 * rate of single-event requests, measuring ack latency. The plain table is
 * bench_journal's: same columns, one UNIQUE index on random-looking ids.
 *
 * usage: bench_ingest [--publishers P] [--window W] [--batch B] [--events N]
 *                     [--rate R[,R...]] [--seconds S] [--dir DIR] [--kjournald PATH]
 *                     [--endpoint E] [--no-baseline] [--latency-only]
 * --events is per publisher; --batch is events per request; --rate may list
 * several offered rates (a latency run each); --no-baseline skips plain
 * SQLite and kj_journal_append alone; --latency-only skips the throughput
 * run too (for a server at --endpoint that is not kjournald, such as
 * ref_server: see latency_floor.sh).
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "ipc/ipc.h"

#define MAX_RATES 8

typedef struct cfg {
    int publishers, window;
    size_t batch, events;
    int rate, seconds;
    int rates[MAX_RATES], nrates;
    int baseline, latency_only;
    pid_t daemon; /* kjournald's pid, for its /proc/PID/io; 0 when not ours */
    const char *dir, *kjournald, *endpoint;
} cfg;

/* Bytes process pid handed to write(2) so far (/proc/PID/io wchar), -1 if unknown. */
static long long written_bytes(pid_t pid)
{
    char path[64], line[128];
    snprintf(path, sizeof path, "/proc/%d/io", (int)pid);
    FILE *f = fopen(path, "r");
    long long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "wchar: %lld", &v) == 1)
            break;
    if (f)
        fclose(f);
    return v;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p)
{
    if (!n)
        return 0;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i];
}

/* A Kyuubi-like event: open/close pairs, random-looking session ids. */
static char *make_event(const char *tag, size_t i)
{
    unsigned long long h = (i / 2 + 1) * 0x9E3779B97F4A7C15ULL;
    char *s = malloc(512);
    snprintf(
        s, 512,
        "{\"event_id\":\"%s-%016llx-%s\",\"type\":\"%s\",\"session_id\":\"%s-%016llx\","
        "\"instance\":\"10.244.1.23:10009\",\"user\":\"%s\",\"engine\":{\"id\":"
        "\"spark-%016llx\",\"tag\":\"%s-%016llx\",\"namespace\":\"kyuubi\"},\"time_ms\":%lld%s}",
        tag, h, i % 2 ? "close" : "open", i % 2 ? "session_close" : "session_open", tag, h,
        (i / 2) % 7 ? "alice" : "bob", h * 31, tag, h, 1764391200000LL + (long long)i,
        i % 2 ? ",\"reason\":\"client\"" : "");
    return s;
}

/* --- plain SQLite, same disk ---------------------------------------------------- */

static double plain_sqlite(const cfg *c, size_t n, size_t batch)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/plain.db", c->dir);
    unlink(path);
    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK)
        return 0;
    sqlite3_exec(db,
                 "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                 "PRAGMA cache_size = -65536; PRAGMA wal_autocheckpoint = 4000;"
                 "CREATE TABLE events (seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE,"
                 " session_id TEXT, type INTEGER, time_ms INTEGER, recorded_ms INTEGER,"
                 " instance TEXT, user TEXT, engine_id TEXT, engine_tag TEXT,"
                 " engine_namespace TEXT, reason TEXT, payload TEXT)",
                 NULL, NULL, NULL);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db,
                       "INSERT INTO events (event_id, session_id, type, time_ms, recorded_ms,"
                       " instance, user, engine_id, engine_tag, engine_namespace, reason, payload)"
                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                       -1, &st, NULL);
    char **ev = malloc(n * sizeof *ev);
    for (size_t i = 0; i < n; i++)
        ev[i] = make_event("plain", i);
    double t0 = now_s();
    for (size_t i = 0; i < n;) {
        sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        for (size_t k = 0; k < batch && i < n; k++, i++) {
            /* the same random-looking keys the publishers send */
            char id[64], sid[64];
            unsigned long long h = (i / 2 + 1) * 0x9E3779B97F4A7C15ULL;
            snprintf(id, sizeof id, "plain-%016llx-%s", h, i % 2 ? "close" : "open");
            snprintf(sid, sizeof sid, "plain-%016llx", h);
            sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(st, 2, sid, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int(st, 3, (int)(i % 2) + 1);
            sqlite3_bind_int64(st, 4, 1764391200000LL + (long long)i);
            sqlite3_bind_int64(st, 5, kj_now_ms());
            sqlite3_bind_text(st, 6, "10.244.1.23:10009", -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 7, "alice", -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 8, "spark-x", -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 9, sid, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(st, 10, "kyuubi", -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 11, i % 2 ? "client" : NULL, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 12, ev[i], -1, SQLITE_STATIC);
            sqlite3_step(st);
            sqlite3_reset(st);
        }
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    }
    double dt = now_s() - t0;
    sqlite3_finalize(st);
    sqlite3_close(db);
    for (size_t i = 0; i < n; i++)
        free(ev[i]);
    free(ev);
    unlink(path);
    return (double)n / dt;
}

/* --- the journal alone: kj_journal_append, same events, same disk ------------------ */

static double journal_direct(const cfg *c, size_t n, size_t batch)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/direct.db", c->dir);
    kj_journal *j = NULL;
    if (kj_journal_open(path, 0, &j, NULL) < 0)
        return 0;
    kj_wire_request **req = calloc(n, sizeof *req);
    kj_event *ev = calloc(n, sizeof *ev);
    kj_append_result *res = calloc(batch, sizeof *res);
    char *s;
    for (size_t i = 0; i < n; i++) {
        s = make_event("direct", i);
        kj_wire_error we;
        if (kj_wire_decode(s, strlen(s), NULL, &req[i], &we) == 0)
            ev[i] = kj_wire_item_at(req[i], 0)->ev;
        free(s);
    }
    double t0 = now_s();
    for (size_t i = 0; i < n; i += batch)
        kj_journal_append(j, ev + i, n - i < batch ? n - i : batch, res, NULL);
    double dt = now_s() - t0;
    kj_journal_close(j);
    for (size_t i = 0; i < n; i++)
        kj_wire_request_free(req[i]);
    free(req);
    free(ev);
    free(res);
    char cmd[3 * sizeof path + 32];
    snprintf(cmd, sizeof cmd, "rm -f '%s' '%s-wal' '%s-shm'", path, path, path);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_ingest: cannot remove %s\n", path);
    return (double)n / dt;
}

/* --- kjournald as a process ------------------------------------------------------ */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

static pid_t start_daemon(const cfg *c, const char *journal, const char *endpoint, int port)
{
    pid_t pid = fork();
    if (pid == 0) {
        execl(c->kjournald, "kjournald", "--journal", journal, "--listen", endpoint, "--log-level",
              "warn", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 6000; i++) { /* up to a minute: a busy machine, a sanitized build */
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
        close(fd);
        if (ok)
            return pid;
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

/* --- throughput: P publishers ---------------------------------------------------- */

typedef struct pub_arg {
    const cfg *c;
    const char *endpoint;
    int k;
    size_t acked;
    double *lat; /* per request's first event */
    size_t nlat;
    int rc;
} pub_arg;

static void *publisher(void *arg)
{
    pub_arg *a = arg;
    size_t n = a->c->events;
    char tag[16];
    snprintf(tag, sizeof tag, "p%d", a->k);
    char **ev = malloc(n * sizeof *ev);
    kj_publish_result *res = calloc(n, sizeof *res);
    for (size_t i = 0; i < n; i++)
        ev[i] = make_event(tag, i);
    kj_publisher_opts o = kj_publisher_defaults();
    o.window = a->c->window;
    o.batch = a->c->batch;
    o.timeout_ms = 10000;
    kj_publisher *p = NULL;
    kj_err err = {0};
    a->rc = kj_publisher_new(a->endpoint, &o, &p, &err);
    if (a->rc == 0)
        a->rc = kj_publisher_publish(p, (const char *const *)ev, n, res, &err);
    if (a->rc < 0)
        fprintf(stderr, "publisher %d: %s\n", a->k, err.msg);
    a->lat = malloc(n * sizeof *a->lat);
    for (size_t i = 0; i < n; i++) {
        if (res[i].status == KJ_APPEND_STORED || res[i].status == KJ_APPEND_DUPLICATE)
            a->acked++;
        if (i % a->c->batch == 0)
            a->lat[a->nlat++] = res[i].latency_ms;
    }
    kj_publisher_destroy(p);
    for (size_t i = 0; i < n; i++)
        free(ev[i]);
    free(ev);
    free(res);
    return NULL;
}

static void throughput(const cfg *c, const char *endpoint, double plain, double direct)
{
    pthread_t *t = calloc((size_t)c->publishers, sizeof *t);
    pub_arg *a = calloc((size_t)c->publishers, sizeof *a);
    long long w0 = c->daemon ? written_bytes(c->daemon) : -1;
    double t0 = now_s();
    for (int k = 0; k < c->publishers; k++) {
        a[k] = (pub_arg){.c = c, .endpoint = endpoint, .k = k};
        pthread_create(&t[k], NULL, publisher, &a[k]);
    }
    size_t acked = 0, nlat = 0;
    for (int k = 0; k < c->publishers; k++) {
        pthread_join(t[k], NULL);
        acked += a[k].acked;
        nlat += a[k].nlat;
    }
    double dt = now_s() - t0;
    long long w1 = c->daemon ? written_bytes(c->daemon) : -1;
    double *lat = malloc((nlat ? nlat : 1) * sizeof *lat);
    size_t m = 0;
    for (int k = 0; k < c->publishers; k++) {
        memcpy(lat + m, a[k].lat, a[k].nlat * sizeof *lat);
        m += a[k].nlat;
        free(a[k].lat);
    }
    qsort(lat, nlat, sizeof *lat, cmp_double);
    double rate = (double)acked / dt;
    printf("throughput: %d publishers x %zu events, window %d, %zu events/request\n", c->publishers,
           c->events, c->window, c->batch);
    printf("  acked %zu events in %.2f s: %.0f events/s\n", acked, dt, rate);
    printf("  ack latency per request: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
           pct(lat, nlat, 0.5), pct(lat, nlat, 0.99), nlat ? lat[nlat - 1] : 0);
    if (w0 >= 0 && w1 >= 0 && acked)
        printf("  kjournald wrote %.2f pages (4 KiB) per event\n",
               (double)(w1 - w0) / 4096.0 / (double)acked);
    if (plain > 0)
        printf("  plain SQLite batched inserts (1000/txn): %.0f rows/s; kjournald = %.0f%% of it\n",
               plain, 100.0 * rate / plain);
    if (direct > 0)
        printf("  kj_journal_append alone (1000/txn): %.0f events/s; kjournald = %.0f%% of it\n",
               direct, 100.0 * rate / direct);
    free(lat);
    free(a);
    free(t);
}

/* --- latency at a fixed offered load ------------------------------------------- */

/*
 * Waits up to wait_s for a reply on s (its ZMQ_FD fd) with ppoll's
 * nanoseconds: zmq_poll counts whole milliseconds, so between sends less
 * than 1 ms apart it would spin (timeout 0), and a spinning client takes a
 * core from the server it measures. ZMQ_FD signals only changes: ask
 * ZMQ_EVENTS before sleeping and after.
 */
static int wait_reply(void *s, int fd, double wait_s)
{
    int ev = 0;
    size_t sz = sizeof ev;
    if (zmq_getsockopt(s, ZMQ_EVENTS, &ev, &sz) == 0 && (ev & ZMQ_POLLIN))
        return 1;
    if (wait_s <= 0)
        return 0;
    struct timespec ts = {(time_t)wait_s, (long)((wait_s - (double)(time_t)wait_s) * 1e9)};
    struct pollfd p = {fd, POLLIN, 0};
    ppoll(&p, 1, &ts, NULL);
    return zmq_getsockopt(s, ZMQ_EVENTS, &ev, &sz) == 0 && (ev & ZMQ_POLLIN);
}

static void latency(const cfg *c, const char *endpoint, int rate)
{
    size_t n = (size_t)rate * (size_t)c->seconds;
    void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_DEALER);
    int hwm = 0, linger = 0;
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_connect(s, endpoint);
    int fd = -1;
    size_t fdlen = sizeof fd;
    zmq_getsockopt(s, ZMQ_FD, &fd, &fdlen);
    double *sent = calloc(n, sizeof *sent), *lat = calloc(n, sizeof *lat);
    char tag[24];
    snprintf(tag, sizeof tag, "lat%d", rate);
    char **ev = malloc(n * sizeof *ev);
    for (size_t i = 0; i < n; i++)
        ev[i] = make_event(tag, i);
    size_t next = 0, got = 0;
    double t0 = now_s() + 0.2, deadline = t0 + c->seconds + 10;
    while (got < n && now_s() < deadline) {
        double now = now_s();
        while (next < n && t0 + (double)next / rate <= now) {
            char id[24];
            int len = snprintf(id, sizeof id, "%zu", next);
            sent[next] = now_s();
            zmq_send(s, id, (size_t)len, ZMQ_SNDMORE);
            zmq_send(s, "", 0, ZMQ_SNDMORE);
            zmq_send(s, ev[next], strlen(ev[next]), 0);
            next++;
        }
        double wait = next < n ? t0 + (double)next / rate - now_s() : 0.1;
        if (!wait_reply(s, fd, wait))
            continue;
        for (;;) {
            char id[24], body[512];
            int len = zmq_recv(s, id, sizeof id - 1, ZMQ_DONTWAIT);
            if (len < 0)
                break;
            double t = now_s();
            id[len] = 0;
            zmq_recv(s, body, sizeof body, 0);
            zmq_recv(s, body, sizeof body, 0);
            size_t i = (size_t)strtoul(id, NULL, 10);
            if (i < n && !lat[i]) {
                lat[i] = (t - sent[i]) * 1000;
                got++;
            }
        }
    }
    double *v = malloc(n * sizeof *v);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (lat[i] > 0)
            v[m++] = lat[i];
    qsort(v, m, sizeof *v, cmp_double);
    printf("latency: offered %d events/s for %d s, one event per request (open loop)\n", rate,
           c->seconds);
    printf("  acked %zu of %zu: p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms\n", m, n,
           pct(v, m, 0.5), pct(v, m, 0.99), pct(v, m, 0.999), m ? v[m - 1] : 0);
    for (size_t i = 0; i < n; i++)
        free(ev[i]);
    free(ev);
    free(v);
    free(sent);
    free(lat);
    zmq_close(s);
    zmq_ctx_term(ctx);
}

int main(int argc, char **argv)
{
    cfg c = {.publishers = 8,
             .window = 8,
             .batch = 50,
             .events = 50000,
             .rate = 5000,
             .seconds = 5,
             .baseline = 1,
             .dir = "/tmp"};
    static char exe[4096];
    static const struct option opts[] = {
        {"publishers", 1, 0, 'p'},  {"window", 1, 0, 'w'},       {"batch", 1, 0, 'b'},
        {"events", 1, 0, 'n'},      {"rate", 1, 0, 'r'},         {"seconds", 1, 0, 's'},
        {"dir", 1, 0, 'd'},         {"kjournald", 1, 0, 'k'},    {"endpoint", 1, 0, 'e'},
        {"no-baseline", 0, 0, 'B'}, {"latency-only", 0, 0, 'L'}, {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'p':
            c.publishers = atoi(optarg);
            break;
        case 'w':
            c.window = atoi(optarg);
            break;
        case 'b':
            c.batch = (size_t)atol(optarg);
            break;
        case 'n':
            c.events = (size_t)atol(optarg);
            break;
        case 'r':
            c.nrates = 0;
            for (char *p = optarg; *p && c.nrates < MAX_RATES;) {
                char *end;
                long r = strtol(p, &end, 10);
                if (end == p || r < 1 || r > 1000000) {
                    fprintf(stderr, "bench_ingest: bad value '%s' for --rate\n", optarg);
                    return 2;
                }
                c.rates[c.nrates++] = (int)r;
                p = *end == ',' ? end + 1 : end;
                if (*end && *end != ',') {
                    fprintf(stderr, "bench_ingest: bad value '%s' for --rate\n", optarg);
                    return 2;
                }
            }
            c.rate = c.rates[0];
            break;
        case 'B':
            c.baseline = 0;
            break;
        case 'L':
            c.baseline = 0;
            c.latency_only = 1;
            break;
        case 's':
            c.seconds = atoi(optarg);
            break;
        case 'd':
            c.dir = optarg;
            break;
        case 'k':
            c.kjournald = optarg;
            break;
        case 'e':
            c.endpoint = optarg;
            break;
        default:
            fprintf(stderr, "usage: bench_ingest [--publishers P] [--window W] [--batch B] "
                            "[--events N] [--rate R[,R...]] [--seconds S] [--dir DIR] "
                            "[--kjournald PATH] [--endpoint E] [--no-baseline] "
                            "[--latency-only]\n");
            return 2;
        }
    }
    if (!c.kjournald) {
        /* build layout: tools/bench/bench_ingest next to tools/kjournald/kjournald */
        ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 64);
        if (len > 0) {
            exe[len] = 0;
            char *slash = strrchr(exe, '/');
            snprintf(slash, 64, "/../kjournald/kjournald");
        }
        c.kjournald = exe;
    }
    if (c.publishers < 1 || c.window < 1 || c.batch < 1 || c.events < 1 || c.rate < 1) {
        fprintf(stderr, "bench_ingest: bad parameters\n");
        return 2;
    }
    char dir[4096], journal[4200], endpoint[64];
    snprintf(dir, sizeof dir, "%s/bench_ingest.XXXXXX", c.dir);
    if (!mkdtemp(dir)) {
        fprintf(stderr, "bench_ingest: cannot create a directory in %s: %s\n", c.dir,
                strerror(errno));
        return 1;
    }
    c.dir = dir;
    snprintf(journal, sizeof journal, "%s/journal.db", dir);
    size_t total = (size_t)c.publishers * c.events;
    printf("bench_ingest: kjournald is a separate process (%s); publishers are threads here;\n"
           "all on tcp loopback; journal and plain SQLite in %s\n",
           c.kjournald, dir);
    /* The heap as kjournald tunes it (ipc/server.c), for plain SQLite and
     * kj_journal_append alone alike. */
    mallopt(M_TRIM_THRESHOLD, 32 << 20);
    mallopt(M_TOP_PAD, 1 << 20);
    if (!c.nrates)
        c.rates[c.nrates++] = c.rate;
    double plain = c.baseline ? plain_sqlite(&c, total, 1000) : 0;
    double direct = c.baseline ? journal_direct(&c, total, 1000) : 0;
    int port = free_port();
    snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", port);
    if (c.endpoint) { /* a kjournald someone else runs (to profile it, say) */
        if (!c.latency_only)
            throughput(&c, c.endpoint, plain, direct);
        for (int i = 0; i < c.nrates; i++)
            latency(&c, c.endpoint, c.rates[i]);
        char cmd[4400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "bench_ingest: cannot remove %s\n", dir);
        return 0;
    }
    pid_t pid = start_daemon(&c, journal, endpoint, port);
    if (pid < 0) {
        fprintf(stderr, "bench_ingest: kjournald did not start (%s)\n", c.kjournald);
        return 1;
    }
    c.daemon = pid;
    if (!c.latency_only)
        throughput(&c, endpoint, plain, direct);
    for (int i = 0; i < c.nrates; i++)
        latency(&c, endpoint, c.rates[i]);
    kill(pid, SIGTERM);
    int status = 0;
    waitpid(pid, &status, 0);
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_ingest: cannot remove %s\n", dir);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
