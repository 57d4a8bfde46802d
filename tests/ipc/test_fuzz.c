/*
 * test_fuzz.c - seeded mutations of valid requests through the decoder and
 * the reply encoder. Under ASan/UBSan this finds what tables miss; the
 * asserts check the decoder's contract: an error has a code and a message,
 * an accepted event passes kj_event_validate, every reply is JSON.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "ipc/ipc.h"
#include "ipc/ipc_internal.h"

#define ITERATIONS 20000
#define SEED 0x6b6a6f75726e616cULL

static uint64_t rng = SEED;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static const char *seeds[] = {
    "{\"event_id\":\"e1\",\"type\":\"session_open\",\"session_id\":\"s1\",\"instance\":\"h:1\","
    "\"user\":\"u\",\"engine\":{\"id\":\"spark-1\",\"tag\":\"t1\",\"namespace\":\"ns\"},"
    "\"time_ms\":1764391200000}",
    "{\"events\":[{\"event_id\":\"a\",\"type\":\"session_open\",\"session_id\":\"s\",\"time_ms\":"
    "1764391200000},{\"event_id\":\"b\",\"type\":\"session_close\",\"session_id\":\"s\","
    "\"time_ms\":1764391200001,\"reason\":\"client\"}],\"request_id\":\"r1\"}",
    "{\"sessionId\":\"0f6c4a5e-2d4b\",\"user\":\"alice\",\"serverIP\":\"10.244.1.23:10009\","
    "\"conf\":{\"a\":\"b\"},\"eventTime\":1764391200342,\"startTime\":1764391200318,"
    "\"engineId\":\"spark-9d\",\"engineName\":\"kyuubi_CONNECTION_SPARK_SQL_alice_0f6c\","
    "\"openedTime\":1764391241877,\"endTime\":1764391525064,\"exception\":{\"message\":\"x\","
    "\"stackTrace\":[{\"lineNumber\":3}]},\"eventType\":\"kyuubi_session\"}",
};

static const char *tokens[] = {"{",
                               "}",
                               "[",
                               "]",
                               "\"",
                               ":",
                               ",",
                               "null",
                               "true",
                               "-1",
                               "1e309",
                               "\\u0000",
                               "\\ud800",
                               "\xff",
                               "\xc3\xa9",
                               "\"events\":",
                               "\"eventType\":\"kyuubi_session\"",
                               "9007199254740993",
                               "\\\""};

static size_t mutate(const char *src, char *out, size_t cap)
{
    size_t n = strlen(src);
    memcpy(out, src, n);
    int rounds = 1 + (int)(next() % 4);
    for (int r = 0; r < rounds && n > 0; r++) {
        size_t at = next() % n;
        switch (next() % 6) {
        case 0: /* flip a byte */
            out[at] = (char)(next() & 0xff);
            break;
        case 1: /* delete a span */ {
            size_t len = 1 + next() % 8;
            if (at + len > n)
                len = n - at;
            memmove(out + at, out + at + len, n - at - len);
            n -= len;
            break;
        }
        case 2: /* insert a token */ {
            const char *t = tokens[next() % (sizeof tokens / sizeof tokens[0])];
            size_t len = strlen(t);
            if (n + len < cap) {
                memmove(out + at + len, out + at, n - at);
                memcpy(out + at, t, len);
                n += len;
            }
            break;
        }
        case 3: /* truncate */
            n = at;
            break;
        case 4: /* duplicate a span */ {
            size_t len = 1 + next() % 32;
            if (at + len > n)
                len = n - at;
            if (n + len < cap) {
                memmove(out + at + len, out + at, n - at);
                n += len;
            }
            break;
        }
        default: /* swap a digit */
            for (size_t k = at; k < n; k++)
                if (out[k] >= '0' && out[k] <= '9') {
                    out[k] = (char)('0' + next() % 10);
                    break;
                }
        }
    }
    return n;
}

static void test_fuzz(void **state)
{
    (void)state;
    static char buf[8192];
    size_t accepted = 0, rejected = 0, refused = 0;
    kj_wire_limits lim = {.max_message = 4096, .max_events = 8, .max_depth = 8};
    for (int i = 0; i < ITERATIONS; i++) {
        size_t n = mutate(seeds[next() % 3], buf, sizeof buf);
        kj_wire_request *r = NULL;
        kj_wire_error we = {0};
        char *reply;
        if (kj_wire_decode(buf, n, &lim, &r, &we) < 0) {
            assert_null(r);
            assert_non_null(we.code);
            assert_true(we.message[0]);
            reply = kj_wire_error_reply(&we, NULL, 0);
            refused++;
        } else {
            for (size_t k = 0; k < kj_wire_count(r); k++) {
                kj_wire_item *it = kj_wire_item_at(r, k);
                if (it->res.status == KJ_APPEND_REJECTED) {
                    assert_non_null(it->res.code);
                    assert_true(it->res.message[0]);
                    rejected++;
                    continue;
                }
                const char *code;
                char msg[192];
                assert_int_equal(kj_event_validate(&it->ev, &code, msg, sizeof msg), 0);
                /* the payload is the event's own text: one JSON object */
                if (it->ev.payload) {
                    cJSON *pj = cJSON_Parse(it->ev.payload);
                    if (!cJSON_IsObject(pj))
                        fail_msg("payload is not an object: %s", it->ev.payload);
                    cJSON_Delete(pj);
                }
                it->res.status = KJ_APPEND_STORED;
                accepted++;
            }
            reply = kj_wire_reply(r);
        }
        cJSON *j = cJSON_Parse(reply);
        if (!j)
            fail_msg("reply is not JSON: %s", reply);
        cJSON_Delete(j);
        free(reply);
        kj_wire_request_free(r);
    }
    printf("fuzz: %d inputs: %zu events accepted, %zu rejected, %zu requests refused\n", ITERATIONS,
           accepted, rejected, refused);
    assert_true(accepted > 0 && rejected > 0 && refused > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_fuzz)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
