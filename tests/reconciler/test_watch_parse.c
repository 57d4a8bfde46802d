/*
 * The watch stream parser (reconciler/watch.c) against the watch streams
 * recorded from a real kube-apiserver (shared/fixtures/k8s/watch-pods-*.jsonl),
 * each split at every byte boundary, fed a byte at a time and all of them in
 * one chunk; and against garbage, oversized lines, truncated streams and a
 * fuzz loop.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "reconciler/kube_internal.h"

static char fixdir[4096];

static char *slurp(const char *name, size_t *len)
{
    char p[8192];
    snprintf(p, sizeof(p), "%s/%s", fixdir, name);
    char *buf = NULL;
    kj_err err = {0};
    if (kj_kube_read_file(p, 1 << 24, &buf, len, &err) < 0)
        fail_msg("%s", err.msg);
    return buf;
}

static int setup(void **state)
{
    (void)state;
    const char *shared = getenv("KJ_SHARED_DIR");
    snprintf(fixdir, sizeof(fixdir), "%s/fixtures/k8s", shared ? shared : "tests/shared");
    return 0;
}

/* What the callback saw, as one string: "ADDED exec-2 85|..." */
typedef struct seen {
    char log[16384];
    int n, stop_after, errors_410;
} seen;

static int record(const kj_watch_event *ev, void *ud)
{
    seen *s = ud;
    size_t l = strlen(s->log);
    snprintf(s->log + l, sizeof(s->log) - l, "%s %s %s %s|", kj_watch_type_name(ev->type),
             ev->pod ? ev->pod->name : "-", ev->resource_version,
             ev->pod && ev->pod->deletion_ms ? "deleting" : "");
    if (ev->type == KJ_WATCH_ERROR && ev->status && ev->status->http == 410)
        s->errors_410++;
    if (ev->type == KJ_WATCH_BOOKMARK)
        assert_null(ev->pod);
    if (ev->pod)
        assert_non_null(ev->pod->uid);
    s->n++;
    return s->stop_after && s->n >= s->stop_after;
}

static int feed_split(const char *buf, size_t len, size_t at, seen *s, size_t max)
{
    kj_watch_parser p;
    kj_err err = {0};
    kj_watch_parser_init(&p, max);
    int rc = kj_watch_parser_feed(&p, buf, at, record, s, &err);
    if (!rc)
        rc = kj_watch_parser_feed(&p, buf + at, len - at, record, s, &err);
    if (!rc)
        rc = kj_watch_parser_finish(&p, &err);
    kj_watch_parser_free(&p);
    return rc;
}

static void test_recordings_every_split(void **state)
{
    (void)state;
    DIR *d = opendir(fixdir);
    assert_non_null(d);
    struct dirent *de;
    int files = 0;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, "watch-pods-", 11) || !strstr(de->d_name, ".jsonl"))
            continue;
        files++;
        size_t len;
        char *buf = slurp(de->d_name, &len);
        seen whole = {0};
        assert_int_equal(feed_split(buf, len, len, &whole, 0), 0);
        assert_true(whole.n > 0);
        for (size_t at = 0; at <= len; at++) {
            seen s = {0};
            assert_int_equal(feed_split(buf, len, at, &s, 0), 0);
            assert_string_equal(s.log, whole.log);
        }
        /* a byte at a time */
        kj_watch_parser p;
        kj_err err = {0};
        seen s = {0};
        kj_watch_parser_init(&p, 0);
        for (size_t i = 0; i < len; i++)
            assert_int_equal(kj_watch_parser_feed(&p, buf + i, 1, record, &s, &err), 0);
        assert_int_equal(kj_watch_parser_finish(&p, &err), 0);
        kj_watch_parser_free(&p);
        assert_string_equal(s.log, whole.log);
        if (!strcmp(de->d_name, "watch-pods-bookmark.jsonl"))
            /* as recorded: a label patch, then a graceful delete seen as
             * MODIFIED (deletionTimestamp) before DELETED, then a bookmark */
            assert_string_equal(whole.log, "MODIFIED w3 94 |MODIFIED w4 95 deleting|"
                                           "DELETED w4 96 deleting|BOOKMARK - 96 |");
        free(buf);
    }
    closedir(d);
    assert_true(files >= 2);
}

/* Several recordings in one chunk, with CRLF and blank lines between. */
static void test_many_per_chunk(void **state)
{
    (void)state;
    size_t a_len, b_len;
    char *a = slurp("watch-pods-events.jsonl", &a_len);
    char *b = slurp("watch-pods-bookmark.jsonl", &b_len);
    size_t cap = 2 * (a_len + b_len) + 16, n = 0;
    char *all = malloc(cap);
    memcpy(all + n, a, a_len), n += a_len;
    memcpy(all + n, "\r\n\n", 3), n += 3;
    memcpy(all + n, b, b_len), n += b_len;
    seen s1 = {0}, s2 = {0}, s = {0};
    assert_int_equal(feed_split(a, a_len, a_len, &s1, 0), 0);
    assert_int_equal(feed_split(b, b_len, b_len, &s2, 0), 0);
    assert_int_equal(feed_split(all, n, n / 3, &s, 0), 0);
    assert_int_equal(s.n, s1.n + s2.n);
    free(a);
    free(b);
    free(all);
}

static void test_error_event_410(void **state)
{
    (void)state;
    size_t len;
    char *st = slurp("status-410-expired.json", &len);
    while (len && (st[len - 1] == '\n' || st[len - 1] == ' '))
        len--;
    for (size_t i = 0; i < len; i++) /* the recording is indented: one line of it */
        if (st[i] == '\n')
            st[i] = ' ';
    char line[8192];
    int n = snprintf(line, sizeof line, "{\"type\":\"ERROR\",\"object\":%.*s}\n", (int)len, st);
    seen s = {0};
    assert_int_equal(feed_split(line, (size_t)n, 7, &s, 0), 0);
    assert_int_equal(s.errors_410, 1);
    /* an ERROR whose Status has no code is still an error, not a crash */
    const char *bare = "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\"}}\n";
    seen s2 = {0};
    assert_int_equal(feed_split(bare, strlen(bare), 3, &s2, 0), 0);
    assert_int_equal(s2.n, 1);
    assert_int_equal(s2.errors_410, 0);
    free(st);
}

static const char *const garbage[] = {
    "not json\n",
    "[1,2,3]\n",
    "{\"type\":\"ADDED\"}\n",
    "{\"type\":\"FOO\",\"object\":{}}\n",
    "{\"type\":7,\"object\":{}}\n",
    "{\"type\":\"ADDED\",\"object\":[]}\n",
    "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Status\",\"metadata\":{}}}\n",
    "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"x\"}}}\n",
    "{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"name\":\"x\",\"uid\":1}}}\n",
    "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"x\",\"uid\":\"u\"}}}}\n",
    "\x01\x02\x03\xff\n",
    "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"x\",\"uid\":\"u\"\n",
};

static void test_garbage(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof garbage / sizeof *garbage; i++) {
        size_t len = strlen(garbage[i]);
        for (size_t at = 0; at <= len; at++) {
            seen s = {0};
            assert_int_equal(feed_split(garbage[i], len, at, &s, 0), KJ_EPROTO);
            assert_int_equal(s.n, 0);
        }
    }
    /* NUL bytes inside a line */
    const char nul[] = "{\"type\":\"ADDED\"\0,\"object\":{}}\n";
    seen s = {0};
    assert_int_equal(feed_split(nul, sizeof nul - 1, 5, &s, 0), KJ_EPROTO);
}

static void test_oversized(void **state)
{
    (void)state;
    size_t len;
    char *buf = slurp("watch-pods-bookmark.jsonl", &len);
    size_t first = 0;
    while (first < len && buf[first] != '\n')
        first++;
    /* a limit just large enough for every line passes; one byte less fails */
    size_t longest = 0, cur = 0;
    for (size_t i = 0; i < len; i++, cur++)
        if (buf[i] == '\n') {
            longest = cur > longest ? cur : longest;
            cur = (size_t)-1;
        }
    for (size_t at = 0; at <= len; at += 97) {
        seen s = {0};
        assert_int_equal(feed_split(buf, len, at, &s, longest), 0);
        seen t = {0};
        assert_int_equal(feed_split(buf, len, at, &t, longest - 1), KJ_EPROTO);
    }
    assert_true(first <= longest);
    /* an endless line, fed in chunks, stops at the limit and holds no more */
    kj_watch_parser p;
    kj_err err = {0};
    kj_watch_parser_init(&p, 4096);
    char chunk[1000];
    memset(chunk, 'x', sizeof chunk);
    int rc = 0, fed = 0;
    while (!rc && fed < 100) {
        rc = kj_watch_parser_feed(&p, chunk, sizeof chunk, record, NULL, &err);
        fed++;
    }
    assert_int_equal(rc, KJ_EPROTO);
    assert_true(fed <= 5);
    assert_true(p.cap <= 4096 * 2 + 64);
    assert_non_null(strstr(err.msg, "longer than 4096"));
    kj_watch_parser_free(&p);
    free(buf);
}

static void test_truncated(void **state)
{
    (void)state;
    size_t len;
    char *buf = slurp("watch-pods-events.jsonl", &len);
    seen whole = {0};
    assert_int_equal(feed_split(buf, len, len, &whole, 0), 0);
    for (size_t cut = 1; cut < len; cut++) {
        seen s = {0};
        int rc = feed_split(buf, cut, cut / 2, &s, 0);
        int at_line_end = buf[cut - 1] == '\n';
        assert_int_equal(rc, at_line_end ? 0 : KJ_EPROTO);
        assert_true(s.n <= whole.n);
        /* every event before the cut was delivered, and only those */
        assert_int_equal(strncmp(s.log, whole.log, strlen(s.log)), 0);
    }
    free(buf);
}

static void test_stop(void **state)
{
    (void)state;
    size_t len;
    char *buf = slurp("watch-pods-bookmark.jsonl", &len);
    seen s = {.stop_after = 2};
    assert_int_equal(feed_split(buf, len, len, &s, 0), KJ_ECANCELED);
    assert_int_equal(s.n, 2);
    free(buf);
}

/* Random damage to the recordings: any answer but a crash or a leak. */
static void test_fuzz(void **state)
{
    (void)state;
    size_t len;
    char *orig = slurp("watch-pods-bookmark.jsonl", &len);
    char *buf = malloc(len);
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    for (int round = 0; round < 3000; round++) {
        memcpy(buf, orig, len);
        int flips = 1 + round % 8;
        for (int f = 0; f < flips; f++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf[x % len] = (char)(x >> 32);
        }
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        seen s = {0};
        int rc = feed_split(buf, len, x % (len + 1), &s, 0);
        assert_true(rc == 0 || rc == KJ_EPROTO);
    }
    free(buf);
    free(orig);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_recordings_every_split),
        cmocka_unit_test(test_many_per_chunk),
        cmocka_unit_test(test_error_event_410),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_oversized),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_stop),
        cmocka_unit_test(test_fuzz),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
