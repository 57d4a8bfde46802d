/* publish_burst - a kj_publisher client for the crash test: publishes N
 * native events PREFIX-0 .. PREFIX-(N-1) (window 8, 10 per request, many
 * retries, each after TIMEOUT_MS without an answer: default 5000) and prints
 * "acked ID" for every event stored or duplicate. */
#include <stdio.h>
#include <stdlib.h>

#include "ipc/ipc.h"

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: publish_burst ENDPOINT PREFIX N [TIMEOUT_MS]\n");
        return 2;
    }
    size_t n = (size_t)atol(argv[3]);
    char **ev = calloc(n, sizeof *ev);
    kj_publish_result *res = calloc(n, sizeof *res);
    for (size_t i = 0; i < n; i++) {
        ev[i] = malloc(256);
        snprintf(ev[i], 256,
                 "{\"event_id\":\"%s-%zu\",\"type\":\"session_open\",\"session_id\":\"%s-s%zu\","
                 "\"time_ms\":%lld}",
                 argv[2], i, argv[2], i % 50, 1764391200000LL + (long long)i);
    }
    kj_publisher_opts o = kj_publisher_defaults();
    o.window = 8;
    o.batch = 10;
    o.timeout_ms = argc == 5 ? atoi(argv[4]) : 5000;
    o.retries = 40;
    kj_publisher *p = NULL;
    kj_err err = {0};
    int rc = kj_publisher_new(argv[1], &o, &p, &err);
    if (rc == 0)
        rc = kj_publisher_publish(p, (const char *const *)ev, n, res, &err);
    if (rc < 0)
        fprintf(stderr, "publish_burst: %s\n", err.msg);
    for (size_t i = 0; i < n; i++)
        if (res[i].status == KJ_APPEND_STORED || res[i].status == KJ_APPEND_DUPLICATE)
            printf("acked %s\n", res[i].event_id);
    kj_publisher_destroy(p);
    for (size_t i = 0; i < n; i++)
        free(ev[i]);
    free(ev);
    free(res);
    return rc < 0 ? 1 : 0;
}
