/*
 * kube-sim-load: a small HTTP/1.1 load generator for kube-sim.
 *
 * N threads, each with one keep-alive connection, send requests for a fixed
 * time and count answers. The mix is mostly GETs of single pods, with some
 * label-selector lists (limit 50) and merge patches, like a reconciler's pass.
 *
 *   kube-sim-load --port P [--conns 64] [--seconds 3] [--pods 100000]
 *                 [--ns bench] [--get-only] [--min-rps N] [--token T]
 *
 * Prints one logfmt line: requests, req/s, errors, p50/p99 latency. Exit 1
 * when any request failed or req/s is under --min-rps.
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
#include <time.h>
#include <unistd.h>

#define BUCKETS 100000 /* 10 us each: up to 1 s */

typedef struct {
    int port, pods, get_only;
    const char *ns, *token;
    double deadline;
    long requests, errors, codes[600];
    long hist[BUCKETS + 1];
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
    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
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

/* reads one response with Content-Length; returns the status or -1 */
static int read_response(int fd, char **buf, size_t *cap)
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
    size_t body = strtoul(cl + 17, NULL, 10);
    size_t total = (size_t)(hdr_end + 4 - *buf) + body;
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
    return status;
}

static void *run(void *arg)
{
    worker *w = arg;
    char req[1024], body[128], auth[300] = "";
    char *buf = NULL;
    size_t cap = 0;
    int fd = dial(w->port);
    if (w->token)
        snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", w->token);
    while (fd >= 0 && now_s() < w->deadline) {
        int pick = (int)(rand_r(&w->seed) % 100);
        int i = (int)(rand_r(&w->seed) % (unsigned)w->pods);
        int n;
        if (w->get_only || pick < 90) {
            n = snprintf(
                req, sizeof req,
                "GET /api/v1/namespaces/%s/pods/pod-%06d HTTP/1.1\r\nHost: kube-sim\r\n%s\r\n",
                w->ns, i, auth);
        } else if (pick < 95) {
            n = snprintf(
                req, sizeof req,
                "GET /api/v1/namespaces/%s/pods?labelSelector=app%%3Dbench,shard%%3D%d&limit=50 "
                "HTTP/1.1\r\nHost: kube-sim\r\n%s\r\n",
                w->ns, i % 100, auth);
        } else {
            int bl = snprintf(body, sizeof body,
                              "{\"metadata\":{\"labels\":{\"touched\":\"%ld\"}}}", w->requests);
            n = snprintf(
                req, sizeof req,
                "PATCH /api/v1/namespaces/%s/pods/pod-%06d HTTP/1.1\r\nHost: kube-sim\r\n%s"
                "Content-Type: application/merge-patch+json\r\nContent-Length: %d\r\n\r\n%s",
                w->ns, i, auth, bl, body);
        }
        double t0 = now_s();
        int st = send_all(fd, req, (size_t)n) ? -1 : read_response(fd, &buf, &cap);
        double us = (now_s() - t0) * 1e6;
        w->requests++;
        long b = (long)(us / 10);
        w->hist[b > BUCKETS ? BUCKETS : b]++;
        if (st < 0) {
            w->errors++;
            close(fd);
            fd = dial(w->port);
            continue;
        }
        w->codes[st]++;
        if (st != 200)
            w->errors++;
    }
    if (fd >= 0)
        close(fd);
    free(buf);
    return NULL;
}

int main(int argc, char **argv)
{
    int port = 0, conns = 64, pods = 100000, get_only = 0;
    double seconds = 3, min_rps = 0;
    const char *ns = "bench", *token = NULL;
    static const struct option opts[] = {
        {"port", 1, 0, 'p'},    {"conns", 1, 0, 'c'}, {"seconds", 1, 0, 's'},
        {"pods", 1, 0, 'n'},    {"ns", 1, 0, 'N'},    {"get-only", 0, 0, 'g'},
        {"min-rps", 1, 0, 'm'}, {"token", 1, 0, 't'}, {0, 0, 0, 0},
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
        case 'n':
            pods = atoi(optarg);
            break;
        case 'N':
            ns = optarg;
            break;
        case 'g':
            get_only = 1;
            break;
        case 'm':
            min_rps = atof(optarg);
            break;
        case 't':
            token = optarg;
            break;
        default:
            fprintf(stderr, "usage: kube-sim-load --port P [--conns 64] [--seconds 3] [--pods N] "
                            "[--ns bench] [--get-only] [--min-rps N] [--token T]\n");
            return 2;
        }
    }
    if (port <= 0 || conns < 1 || conns > 4096 || pods < 1 || seconds <= 0) {
        fprintf(stderr, "kube-sim-load: --port is required; --conns 1..4096, --pods >= 1\n");
        return 2;
    }
    worker *ws = calloc((size_t)conns, sizeof *ws);
    pthread_t *th = calloc((size_t)conns, sizeof *th);
    if (!ws || !th)
        return 1;
    double t0 = now_s();
    for (int i = 0; i < conns; i++) {
        ws[i] = (worker){.port = port,
                         .pods = pods,
                         .ns = ns,
                         .token = token,
                         .get_only = get_only,
                         .deadline = t0 + seconds,
                         .seed = (unsigned)i * 7919u + 1};
        if (pthread_create(&th[i], NULL, run, &ws[i]))
            return 1;
    }
    long req = 0, err = 0, hist[BUCKETS + 1] = {0}, codes[600] = {0};
    for (int i = 0; i < conns; i++) {
        pthread_join(th[i], NULL);
        req += ws[i].requests;
        err += ws[i].errors;
        for (int b = 0; b <= BUCKETS; b++)
            hist[b] += ws[i].hist[b];
        for (int c = 0; c < 600; c++)
            codes[c] += ws[i].codes[c];
    }
    double el = now_s() - t0;
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
    double rps = req / el;
    printf("conns=%d pods=%d seconds=%.2f requests=%ld req_per_s=%.0f errors=%ld p50_ms=%.2f "
           "p99_ms=%.2f mix=%s codes=",
           conns, pods, el, req, rps, err, p50, p99, get_only ? "get" : "90get/5list/5patch");
    for (int c = 0; c < 600; c++)
        if (codes[c])
            printf("%d:%ld,", c, codes[c]);
    printf("\n");
    free(ws);
    free(th);
    return (err || rps < min_rps) ? 1 : 0;
}
