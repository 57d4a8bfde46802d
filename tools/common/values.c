/*
 * values.c - the one grammar of every program's option values: durations,
 * times, counts and bounded numbers (opts.h).
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "opts.h"

/* Reads exactly n digits at *p. */
static int digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

static int days_in_month(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* Epoch ms of a wall-clock time, in UTC or the local zone. */
static int64_t wall_ms(int utc, int y, int mo, int d, int h, int mi, int s)
{
    if (utc)
        return ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60000LL + s * 1000LL;
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = s,
                    .tm_isdst = -1};
    return (int64_t)mktime(&tm) * 1000;
}

static int parse_iso(const char *s, int utc, int64_t *out, char *msg, size_t size)
{
    const char *p = s;
    int y, mo, d, h = 0, mi = 0, sec = 0, ms = 0;
    if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' || digits(&p, 2, &d))
        goto bad;
    if (mo < 1 || mo > 12) {
        snprintf(msg, size, "month %02d out of range", mo);
        return -1;
    }
    if (d < 1 || d > days_in_month(y, mo)) {
        snprintf(msg, size, "day %02d out of range for %04d-%02d", d, y, mo);
        return -1;
    }
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi))
            goto bad;
        if (*p == ':') {
            p++;
            if (digits(&p, 2, &sec))
                goto bad;
            if (*p == '.' || *p == ',') {
                p++;
                if (!isdigit((unsigned char)*p))
                    goto bad;
                for (int i = 0; isdigit((unsigned char)*p); i++, p++)
                    if (i < 3)
                        ms += (*p - '0') * (i == 0 ? 100 : i == 1 ? 10 : 1);
            }
        }
        if (h > 23 || mi > 59 || sec > 59) {
            snprintf(msg, size, "time of day %02d:%02d:%02d out of range", h, mi, sec);
            return -1;
        }
    }
    int zoned = 0;
    int64_t offset_min = 0;
    if (*p == 'Z' || *p == 'z') {
        zoned = 1;
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om = 0;
        if (digits(&p, 2, &oh))
            goto bad;
        if (*p == ':')
            p++;
        if (*p && digits(&p, 2, &om))
            goto bad;
        if (oh > 23 || om > 59) {
            snprintf(msg, size, "zone offset out of range");
            return -1;
        }
        zoned = 1;
        offset_min = sign * (oh * 60 + om);
    }
    if (*p)
        goto bad;
    *out = wall_ms(utc || zoned, y, mo, d, h, mi, sec) + ms - offset_min * 60000;
    return 0;
bad:
    snprintf(msg, size, "not an ISO 8601 time");
    return -1;
}

/* A sum of NUMBER UNIT terms ("1h30m"). */
static int parse_terms(const char *s, int64_t *out, char *msg, size_t size)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {
        {"ms", 1},    {"min", 60000}, {"sec", 1000},   {"s", 1000},
        {"m", 60000}, {"h", 3600000}, {"d", 86400000}, {"w", 604800000},
    };
    const char *p = s;
    int64_t total = 0;
    if (!*p)
        goto bad;
    while (*p) {
        if (!isdigit((unsigned char)*p))
            goto bad;
        int64_t n = 0;
        while (isdigit((unsigned char)*p)) {
            n = n * 10 + (*p++ - '0');
            if (n > 1000000000)
                goto range;
        }
        size_t i, len = 0;
        for (i = 0; i < sizeof units / sizeof units[0]; i++) {
            len = strlen(units[i].unit);
            if (!strncmp(p, units[i].unit, len) && !isalpha((unsigned char)p[len]))
                break;
        }
        if (i == sizeof units / sizeof units[0]) {
            snprintf(msg, size, "a number needs a unit (ms, s, m, min, h, d, w)");
            return -1;
        }
        p += len;
        total += n * units[i].ms;
        if (total > 100LL * 365 * 86400000)
            goto range;
    }
    *out = total;
    return 0;
range:
    snprintf(msg, size, "out of range");
    return -1;
bad:
    snprintf(msg, size, "not a duration");
    return -1;
}

int kj_parse_duration(const char *s, int64_t *ms, char *msg, size_t size)
{
    if (s && !strcmp(s, "0")) {
        *ms = 0;
        return 0;
    }
    return parse_terms(s ? s : "", ms, msg, size);
}

static int64_t midnight(int64_t now_ms, int utc, int day_offset)
{
    time_t t = (time_t)(now_ms / 1000);
    struct tm tm;
    if (utc)
        gmtime_r(&t, &tm);
    else
        localtime_r(&t, &tm);
    /* mktime and days_from_civil both normalise a day of month out of range. */
    if (utc)
        return days_from_civil(tm.tm_year + 1900, tm.tm_mon + 1, 1) * 86400000 +
               (int64_t)(tm.tm_mday - 1 + day_offset) * 86400000;
    struct tm m = {.tm_year = tm.tm_year,
                   .tm_mon = tm.tm_mon,
                   .tm_mday = tm.tm_mday + day_offset,
                   .tm_isdst = -1};
    return (int64_t)mktime(&m) * 1000;
}

int kj_parse_time(const char *s, int64_t now_ms, int utc, int64_t *out, char *msg, size_t size)
{
    int64_t d = 0;
    if (!s || !*s) {
        snprintf(msg, size, "empty time");
        return -1;
    }
    if (!strcmp(s, "now")) {
        *out = now_ms;
        return 0;
    }
    if (!strcmp(s, "today") || !strcmp(s, "yesterday") || !strcmp(s, "tomorrow")) {
        *out = midnight(now_ms, utc, s[0] == 'y' ? -1 : !strcmp(s, "tomorrow") ? 1 : 0);
        return 0;
    }
    if (*s == '-' || *s == '+') {
        if (parse_terms(s + 1, &d, msg, size))
            return -1;
        *out = *s == '-' ? now_ms - d : now_ms + d;
        return 0;
    }
    if (*s == '@') {
        char *end = NULL;
        errno = 0;
        double secs = strtod(s + 1, &end);
        if (!isdigit((unsigned char)s[1]) || errno || *end || secs > 4102444800.0) {
            snprintf(msg, size, "not a number of seconds since the epoch");
            return -1;
        }
        *out = (int64_t)(secs * 1000.0 + 0.5);
        return 0;
    }
    if (isdigit((unsigned char)*s))
        return parse_iso(s, utc, out, msg, size);
    snprintf(msg, size, "not a time");
    return -1;
}

int kj_parse_count(const char *s, int64_t *out, char *msg, size_t size)
{
    if (!strcmp(s, "all")) {
        *out = 0;
        return 0;
    }
    if (kj_parse_int(s, 1, INT64_MAX, out, msg, size)) {
        snprintf(msg, size, "expected a positive number or 'all'");
        return -1;
    }
    return 0;
}

int kj_parse_int(const char *s, int64_t min, int64_t max, int64_t *out, char *msg, size_t size)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || isspace((unsigned char)*s) || *end || errno || v < min || v > max) {
        snprintf(msg, size, "expected a number in %lld..%lld", (long long)min, (long long)max);
        return -1;
    }
    *out = v;
    return 0;
}

int kj_parse_number(const char *s, double min, double max, double *out, char *msg, size_t size)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || isspace((unsigned char)*s) || *end || errno || !isfinite(v) || v < min || v > max) {
        snprintf(msg, size, "expected a number in %g..%g", min, max);
        return -1;
    }
    *out = v;
    return 0;
}
