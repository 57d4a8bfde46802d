/*
 * kube-sim-load: a small HTTP/1.1 load generator for kube-sim.
 *
 * N threads, each with one keep-alive connection, send requests and count
 * answers. The mix is mostly GETs of single pods, with some label-selector
 * lists (limit 50) and merge patches, like a reconciler's pass.
 *
 *   kube-sim-load --port P (--seconds S | --requests N) [--conns 64]
 *                 [--pods 100000] [--ns bench] [--get-only] [--check] [--token T]
 *
 * --seconds S: every connection sends for S seconds; the line printed then
 *   has req/s and p50/p99 latency (tools/bench/bench_kube_sim.py).
 * --requests N: every connection sends N requests, so the work is the same
 *   however slow the machine is (the kube-sim-load test).
 * --check: every answer is read, not only its status: a GET answers the pod
 *   asked for, a list page holds only pods of the shard asked for and as many
 *   as there are (up to the limit), a patch answers the pod with the label it
 *   set. The pods are the seed of bench_kube_sim.py and the test: pod-%06d in
 *   namespace --ns, label shard = i % 100.
 *
 * Prints one logfmt line. Exit 1 when any request failed (no answer, a status
 * other than 200, or an answer --check found wrong); 2 for bad flags.
 */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define BUCKETS 100000 /* 10 us each: up to 1 s */
#define LIST_LIMIT 50
/* A stalled answer counts as a failed request, never as a hang of the caller. */
#define RECV_TIMEOUT_S 300

typedef struct {
    int id, port, pods, get_only, check;
    const char *ns, *token;
    double deadline; /* --seconds */
    long quota;      /* --requests; 0: until the deadline */
    long requests, errors, wrong, codes[600];
    long hist[BUCKETS + 1];
    char first_wrong[256];
    unsigned seed;
} worker;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1;
    struct timeval tv = {.tv_sec = RECV_TIMEOUT_S};
    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* reads one response with Content-Length; returns the status or -1, and
 * where the body starts */
static int read_response(int fd, char **buf, size_t *cap, const char **body)
{
    size_t len = 0;
    char *hdr_end = NULL;
    for (;;) {
        if (len + 4096 > *cap) {
            *cap = (*cap ? *cap * 2 : 65536);
            *buf = realloc(*buf, *cap);
            if (!*buf)
                abort();
        }
        ssize_t r = recv(fd, *buf + len, *cap - len - 1, 0);
        if (r <= 0)
            return -1;
        len += (size_t)r;
        (*buf)[len] = '\0';
        if ((hdr_end = strstr(*buf, "\r\n\r\n")))
            break;
    }
    int status = 0;
    if (sscanf(*buf, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    const char *cl = strcasestr(*buf, "\r\nContent-Length:");
    if (!cl || cl > hdr_end)
        return -1;
    size_t blen = strtoul(cl + 17, NULL, 10);
    size_t hlen = (size_t)(hdr_end + 4 - *buf);
    size_t total = hlen + blen;
    while (len < total) {
        if (total + 1 > *cap) {
            *cap = total + 1;
            *buf = realloc(*buf, *cap);
            if (!*buf)
                abort();
        }
        ssize_t r = recv(fd, *buf + len, total - len, 0);
        if (r <= 0)
            return -1;
        len += (size_t)r;
    }
    (*buf)[total] = '\0';
    *body = *buf + hlen;
    return (status > 0 && status < 600) ? status : -1;
}

static long count(const char *hay, const char *needle)
{
    long n = 0;
    size_t nl = strlen(needle);
    for (const char *p = hay; (p = strstr(p, needle)); p += nl)
        n++;
    return n;
}

/* pods of the seed with label shard=s */
static long shard_size(int pods, int s)
{
    return pods > s ? (pods - s + 99) / 100 : 0;
}

static void wrong(worker *w, const char *what, const char *req)
{
    w->wrong++;
    if (!w->first_wrong[0])
        snprintf(w->first_wrong, sizeof w->first_wrong, "%s: %.*s", what,
                 (int)strcspn(req, "\r"), req);
}

static void *run(void *arg)
{
    worker *w = arg;
    char req[1024], body[128], auth[300] = "", want[128], label[64] = "";
    char *buf = NULL;
    size_t cap = 0;
    int fd = dial(w->port);
    if (w->token)
        snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", w->token);
    while (w->quota ? w->requests < w->quota : now_s() < w->deadline) {
        int pick = (int)(rand_r(&w->seed) % 100);
        int i = (int)(rand_r(&w->seed) % (unsigned)w->pods);
        int kind, n;
        if (w->get_only || pick < 90) {
            kind = 0;
            n = snprintf(
                req, sizeof req,
                "GET /api/v1/namespaces/%s/pods/pod-%06d HTTP/1.1\r\nHost: kube-sim\r\n%s\r\n",
                w->ns, i, auth);
        } else if (pick < 95) {
            kind = 1;
            n = snprintf(req, sizeof req,
                         "GET /api/v1/namespaces/%s/pods?labelSelector=app%%3Dbench,shard%%3D%d"
                         "&limit=%d HTTP/1.1\r\nHost: kube-sim\r\n%s\r\n",
                         w->ns, i % 100, LIST_LIMIT, auth);
        } else {
            kind = 2;
            snprintf(label, sizeof label, "c%d-%ld", w->id, w->requests);
            int bl = snprintf(body, sizeof body, "{\"metadata\":{\"labels\":{\"touched\":\"%s\"}}}",
                              label);
            n = snprintf(
                req, sizeof req,
                "PATCH /api/v1/namespaces/%s/pods/pod-%06d HTTP/1.1\r\nHost: kube-sim\r\n%s"
                "Content-Type: application/merge-patch+json\r\nContent-Length: %d\r\n\r\n%s",
                w->ns, i, auth, bl, body);
        }
        const char *rb = NULL;
        double t0 = now_s();
        int st = fd < 0 || send_all(fd, req, (size_t)n) ? -1 : read_response(fd, &buf, &cap, &rb);
        double us = (now_s() - t0) * 1e6;
        w->requests++;
        long b = (long)(us / 10);
        w->hist[b > BUCKETS ? BUCKETS : b]++;
        if (st < 0) {
            w->errors++;
            if (fd >= 0)
                close(fd);
            fd = dial(w->port);
            continue;
        }
        w->codes[st]++;
        if (st != 200) {
            w->errors++;
            continue;
        }
        if (!w->check)
            continue;
        if (kind == 0 || kind == 2) {
            snprintf(want, sizeof want, "\"name\":\"pod-%06d\"", i);
            if (!strstr(rb, want))
                wrong(w, "answer names another pod", req);
            snprintf(want, sizeof want, "\"namespace\":\"%s\"", w->ns);
            if (!strstr(rb, want))
                wrong(w, "answer in another namespace", req);
            if (kind == 2) {
                snprintf(want, sizeof want, "\"touched\":\"%s\"", label);
                if (!strstr(rb, want))
                    wrong(w, "patched pod without its label", req);
            }
        } else {
            long items = count(rb, "\"name\":\"pod-");
            long expect = shard_size(w->pods, i % 100);
            snprintf(want, sizeof want, "\"shard\":\"%d\"", i % 100);
            if (!strstr(rb, "\"kind\":\"PodList\""))
                wrong(w, "list answer is no PodList", req);
            else if (items != (expect < LIST_LIMIT ? expect : LIST_LIMIT))
                wrong(w, "list page with the wrong number of pods", req);
            else if (count(rb, want) != items)
                wrong(w, "list page with a pod of another shard", req);
        }
    }
    if (fd >= 0)
        close(fd);
    free(buf);
    return NULL;
}

static void usage(void)
{
    fprintf(stderr, "usage: kube-sim-load --port P (--seconds S | --requests N) [--conns 64] "
                    "[--pods N] [--ns bench] [--get-only] [--check] [--token T]\n");
}

int main(int argc, char **argv)
{
    int port = 0, conns = 64, pods = 100000, get_only = 0, check = 0;
    double seconds = 0;
    long quota = 0;
    const char *ns = "bench", *token = NULL;
    static const struct option opts[] = {
        {"port", 1, 0, 'p'},     {"conns", 1, 0, 'c'}, {"seconds", 1, 0, 's'},
        {"requests", 1, 0, 'r'}, {"pods", 1, 0, 'n'},  {"ns", 1, 0, 'N'},
        {"get-only", 0, 0, 'g'}, {"check", 0, 0, 'k'}, {"token", 1, 0, 't'},
        {0, 0, 0, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'p':
            port = atoi(optarg);
            break;
        case 'c':
            conns = atoi(optarg);
            break;
        case 's':
            seconds = atof(optarg);
            break;
        case 'r':
            quota = atol(optarg);
            break;
        case 'n':
            pods = atoi(optarg);
            break;
        case 'N':
            ns = optarg;
            break;
        case 'g':
            get_only = 1;
            break;
        case 'k':
            check = 1;
            break;
        case 't':
            token = optarg;
            break;
        default:
            usage();
            return 2;
        }
    }
    if (port <= 0 || conns < 1 || conns > 4096 || pods < 1 || (seconds > 0) == (quota > 0) ||
        seconds < 0 || quota < 0) {
        fprintf(stderr, "kube-sim-load: --port is required, and one of --seconds and --requests; "
                        "--conns 1..4096, --pods >= 1\n");
        usage();
        return 2;
    }
    worker *ws = calloc((size_t)conns, sizeof *ws);
    pthread_t *th = calloc((size_t)conns, sizeof *th);
    if (!ws || !th)
        return 1;
    double t0 = now_s();
    for (int i = 0; i < conns; i++) {
        ws[i] = (worker){.id = i,
                         .port = port,
                         .pods = pods,
                         .ns = ns,
                         .token = token,
                         .get_only = get_only,
                         .check = check,
                         .deadline = t0 + seconds,
                         .quota = quota,
                         .seed = (unsigned)i * 7919u + 1};
        if (pthread_create(&th[i], NULL, run, &ws[i]))
            return 1;
    }
    static long hist[BUCKETS + 1];
    long req = 0, err = 0, bad = 0, codes[600] = {0};
    const char *first_wrong = NULL;
    for (int i = 0; i < conns; i++) {
        pthread_join(th[i], NULL);
        req += ws[i].requests;
        err += ws[i].errors;
        bad += ws[i].wrong;
        if (!first_wrong && ws[i].first_wrong[0])
            first_wrong = ws[i].first_wrong;
        for (int b = 0; b <= BUCKETS; b++)
            hist[b] += ws[i].hist[b];
        for (int c = 0; c < 600; c++)
            codes[c] += ws[i].codes[c];
    }
    double el = now_s() - t0;
    printf("conns=%d pods=%d requests=%ld errors=%ld", conns, pods, req, err);
    if (check)
        printf(" wrong=%ld", bad);
    if (seconds > 0) {
        double p50 = 0, p99 = 0;
        long acc = 0;
        for (int b = 0; b <= BUCKETS; b++) {
            acc += hist[b];
            if (!p50 && acc >= req / 2)
                p50 = b * 0.01;
            if (!p99 && acc >= (long)(req * 0.99)) {
                p99 = b * 0.01;
                break;
            }
        }
        printf(" seconds=%.2f req_per_s=%.0f p50_ms=%.2f p99_ms=%.2f", el, req / el, p50, p99);
    }
    printf(" mix=%s codes=", get_only ? "get" : "90get/5list/5patch");
    for (int c = 0; c < 600; c++)
        if (codes[c])
            printf("%d:%ld,", c, codes[c]);
    printf("\n");
    if (first_wrong)
        printf("first wrong answer: %s\n", first_wrong);
    free(ws);
    free(th);
    return (err || bad) ? 1 : 0;
}
