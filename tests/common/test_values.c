/*
 * test_values.c - time expressions, durations, counts and numbers, as a table:
 * adding a case adds a row.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <cmocka.h>

#include "tools/common/opts.h"

#define NOW 1795860000000LL /* 2026-11-28T10:00:00Z, a Saturday */
#define H 3600000LL
#define BAD INT64_MIN

typedef struct time_case {
    const char *expr;
    int utc;
    int64_t want; /* BAD: must be rejected */
} time_case;

static const time_case utc_cases[] = {
    {"now", 1, NOW},
    {"today", 1, NOW - 10 * H},
    {"yesterday", 1, NOW - 34 * H},
    {"tomorrow", 1, NOW + 14 * H},
    {"-1h", 1, NOW - H},
    {"-30m", 1, NOW - 1800000},
    {"-30min", 1, NOW - 1800000},
    {"-2d", 1, NOW - 48 * H},
    {"-1h30m", 1, NOW - 90 * 60000},
    {"+10s", 1, NOW + 10000},
    {"-1w", 1, NOW - 168 * H},
    {"-250ms", 1, NOW - 250},
    {"2026-11-28", 1, NOW - 10 * H},
    {"2026-11-28T10:00", 1, NOW},
    {"2026-11-28 10:00:00", 1, NOW},
    {"2026-11-28T10:00:00.250Z", 1, NOW + 250},
    {"2026-11-28T10:00:00.2509Z", 1, NOW + 250},
    {"2026-11-28T11:00:00+01:00", 0, NOW},
    {"2026-11-28T05:30:00-0430", 0, NOW},
    {"2026-11-28T10:00:00Z", 0, NOW},
    {"2024-02-29", 1, 1709164800000LL},
    {"@1795860000", 0, NOW},
    {"@1795860000.5", 0, NOW + 500},
    {"", 1, BAD},
    {"soon", 1, BAD},
    {"-1", 1, BAD},
    {"-1x", 1, BAD},
    {"-h", 1, BAD},
    {"1h", 1, BAD},
    {"2026-13-01", 1, BAD},
    {"2026-02-30", 1, BAD},
    {"2025-02-29", 1, BAD},
    {"2026-11-28T24:00", 1, BAD},
    {"2026-11-28T10:60", 1, BAD},
    {"2026-11-28T10", 1, BAD},
    {"2026-11-28T10:00:00.", 1, BAD},
    {"2026-11-28T10:00:00+25:00", 1, BAD},
    {"2026-11-28T10:00:00 junk", 1, BAD},
    {"26-11-28", 1, BAD},
    {"@", 1, BAD},
    {"@abc", 1, BAD},
    {"-99999999999d", 1, BAD},
};

static void test_times_utc(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof utc_cases / sizeof utc_cases[0]; i++) {
        const time_case *c = &utc_cases[i];
        int64_t got = 0;
        char msg[128] = "";
        int rc = kj_parse_time(c->expr, NOW, c->utc, &got, msg, sizeof msg);
        if (c->want == BAD) {
            if (rc != -1 || !msg[0])
                fail_msg("'%s' should be rejected with a reason", c->expr);
        } else if (rc != 0 || got != c->want) {
            fail_msg("'%s': rc %d (%s), got %lld, want %lld", c->expr, rc, msg, (long long)got,
                     (long long)c->want);
        }
    }
}

/* Without --utc and without a zone, times are local: a fixed zone an hour
 * east of UTC, with no tzdata needed. */
static void test_times_local(void **state)
{
    (void)state;
    setenv("TZ", "XXX-1", 1);
    tzset();
    const time_case cases[] = {
        {"2026-11-28T11:00", 0, NOW},
        {"today", 0, NOW - 11 * H},
        {"yesterday", 0, NOW - 35 * H},
        {"2026-11-28T10:00Z", 0, NOW},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t got = 0;
        char msg[128];
        assert_int_equal(kj_parse_time(cases[i].expr, NOW, 0, &got, msg, sizeof msg), 0);
        if (got != cases[i].want)
            fail_msg("'%s': got %lld, want %lld", cases[i].expr, (long long)got,
                     (long long)cases[i].want);
    }
}

static void test_durations(void **state)
{
    (void)state;
    const struct {
        const char *expr;
        int64_t want;
    } cases[] = {
        {"30d", 30 * 24 * H},
        {"12h", 12 * H},
        {"1d12h", 36 * H},
        {"90m", 90 * 60000},
        {"1w", 168 * H},
        {"10s", 10000},
        {"0d", 0},
        {"", BAD},
        {"0", 0},
        {"250ms", 250},
        {"2min30sec", 150000},
        {"-1d", BAD},
        {"30", BAD},
        {"d", BAD},
        {"1y", BAD},
        {"1h 30m", BAD},
        {"1000000000000w", BAD},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t got = 0;
        char msg[128] = "";
        int rc = kj_parse_duration(cases[i].expr, &got, msg, sizeof msg);
        if (cases[i].want == BAD) {
            if (rc != -1 || !msg[0])
                fail_msg("duration '%s' should be rejected", cases[i].expr);
        } else if (rc != 0 || got != cases[i].want) {
            fail_msg("duration '%s': rc %d (%s), got %lld", cases[i].expr, rc, msg, (long long)got);
        }
    }
}

static void test_counts(void **state)
{
    (void)state;
    int64_t n = -1;
    char msg[128];
    assert_int_equal(kj_parse_count("100", &n, msg, sizeof msg), 0);
    assert_int_equal(n, 100);
    assert_int_equal(kj_parse_count("all", &n, msg, sizeof msg), 0);
    assert_int_equal(n, 0);
    const char *bad[] = {"0", "-1", "", "ten", "10x", "99999999999999999999", " 5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (kj_parse_count(bad[i], &n, msg, sizeof msg) != -1)
            fail_msg("count '%s' should be rejected", bad[i]);
}

static void test_numbers(void **state)
{
    (void)state;
    const struct {
        const char *s;
        int64_t min, max, want; /* want BAD: rejected */
    } ints[] = {
        {"5", 1, 10, 5},
        {"1", 1, 10, 1},
        {"10", 1, 10, 10},
        {"0", 1, 10, BAD},
        {"11", 1, 10, BAD},
        {"", 0, 10, BAD},
        {"5x", 0, 10, BAD},
        {" 5", 0, 10, BAD},
        {"0x10", 0, 99, BAD},
        {"-3", -5, 5, -3},
        {"99999999999999999999", 0, INT64_MAX, BAD},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        int64_t got = 0;
        char msg[128] = "";
        int rc = kj_parse_int(ints[i].s, ints[i].min, ints[i].max, &got, msg, sizeof msg);
        if (ints[i].want == BAD ? rc != -1 || !msg[0] : rc != 0 || got != ints[i].want)
            fail_msg("int '%s' in %lld..%lld: rc %d got %lld", ints[i].s, (long long)ints[i].min,
                     (long long)ints[i].max, rc, (long long)got);
    }
    double d;
    char msg[128];
    assert_int_equal(kj_parse_number("2.5", 0, 10, &d, msg, sizeof msg), 0);
    assert_true(d == 2.5);
    const char *bad[] = {"nan", "inf", "-1", "11", "", "1e400", "2.5x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (kj_parse_number(bad[i], 0, 10, &d, msg, sizeof msg) != -1)
            fail_msg("number '%s' should be rejected", bad[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_times_utc), cmocka_unit_test(test_times_local),
        cmocka_unit_test(test_durations), cmocka_unit_test(test_counts),
        cmocka_unit_test(test_numbers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
