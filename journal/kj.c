/* kj.c - error codes, clocks and the logfmt logger shared by every module. */
#include "kj.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *kj_strerror(int code)
{
    switch (code) {
    case KJ_OK:
        return "success";
    case KJ_EINVAL:
        return "invalid argument or input";
    case KJ_ENOMEM:
        return "out of memory";
    case KJ_EIO:
        return "i/o error";
    case KJ_ENOENT:
        return "not found";
    case KJ_ENOTJOURNAL:
        return "not a kjournal database";
    case KJ_ETOONEW:
        return "journal is newer than this binary";
    case KJ_ECORRUPT:
        return "journal is damaged";
    case KJ_EBUSY:
        return "journal is locked";
    case KJ_ETIMEDOUT:
        return "timed out";
    case KJ_ECONFLICT:
        return "conflict: the object changed";
    case KJ_EHTTP:
        return "http error";
    case KJ_EPROTO:
        return "protocol error";
    case KJ_EREADONLY:
        return "journal is read-only";
    case KJ_ECANCELED:
        return "canceled";
    case KJ_EAUTH:
        return "authentication failed";
    case KJ_EUNAVAIL:
        return "unavailable";
    case KJ_ENOSPC:
        return "disk is full";
    case KJ_ELOCKED:
        return "journal is in use by another writer";
    case KJ_ESTALE:
        return "journal file was deleted or replaced";
    default:
        return "unknown error";
    }
}

int kj_err_set(kj_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

int kj_err_prefix(kj_err *err, const char *fmt, ...)
{
    if (!err)
        return KJ_EINVAL;
    char old[sizeof err->msg];
    memcpy(old, err->msg, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof err->msg)
        snprintf(err->msg + n, sizeof err->msg - (size_t)n, ": %.*s",
                 (int)(sizeof err->msg - (size_t)n), old);
    return err->code;
}

static int64_t clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t kj_now_ms(void)
{
    return clock_ms(CLOCK_REALTIME);
}

struct timespec kj_deadline_in(int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ms > 0) {
        ts.tv_sec += ms / 1000;
        ts.tv_nsec += (ms % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
    }
    return ts;
}

int64_t kj_mono_ms(void)
{
    return clock_ms(CLOCK_MONOTONIC);
}

char *kj_format_time(int64_t ms, int utc, char *buf, size_t size)
{
    time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    int millis = (int)(ms - (int64_t)secs * 1000);
    struct tm tm;
    if (utc ? !gmtime_r(&secs, &tm) : !localtime_r(&secs, &tm)) {
        snprintf(buf, size, "%lld", (long long)ms);
        return buf;
    }
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    if (utc) {
        snprintf(buf, size, "%s.%03dZ", base, millis);
    } else {
        long off = tm.tm_gmtoff / 60;
        snprintf(buf, size, "%s.%03d%c%02ld:%02ld", base, millis, off < 0 ? '-' : '+',
                 (off < 0 ? -off : off) / 60, (off < 0 ? -off : off) % 60);
    }
    return buf;
}

static kj_log_level log_level = KJ_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void kj_log_set_level(kj_log_level level)
{
    log_level = level;
}

int kj_log_parse_level(const char *s, kj_log_level *out)
{
    for (int i = 0; i < 4; i++)
        if (s && !strcmp(s, level_names[i])) {
            *out = (kj_log_level)i;
            return 0;
        }
    return KJ_EINVAL;
}

const char *kj_logq(char *buf, size_t size, const char *value)
{
    if (!value)
        value = "";
    int plain = *value != '\0';
    for (const char *p = value; *p && plain; p++)
        plain = (unsigned char)*p > ' ' && *p != '"' && *p != '=' && *p != '\\' &&
                (unsigned char)*p < 0x7f;
    if (plain) {
        snprintf(buf, size, "%s", value);
        return buf;
    }
    size_t n = 0;
    if (size < 3) {
        if (size)
            buf[0] = '\0';
        return buf;
    }
    buf[n++] = '"';
    for (const char *p = value; *p && n + 4 < size; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)c;
        } else if (c == '\n') {
            buf[n++] = '\\';
            buf[n++] = 'n';
        } else if (c < ' ' || c == 0x7f) {
            buf[n++] = '?';
        } else {
            buf[n++] = (char)c;
        }
    }
    buf[n++] = '"';
    buf[n] = '\0';
    return buf;
}

void kj_log(kj_log_level level, const char *msg, const char *kv, ...)
{
    if (level < log_level)
        return;
    char line[2048], ts[40], qmsg[512];
    int n = snprintf(
        line, sizeof line, "ts=%s level=%s msg=%s", kj_format_time(kj_now_ms(), 1, ts, sizeof ts),
        level_names[level < 0 || level > 3 ? 3 : level], kj_logq(qmsg, sizeof qmsg, msg));
    if (kv && *kv && n > 0 && (size_t)n < sizeof line - 2) {
        line[n++] = ' ';
        va_list ap;
        va_start(ap, kv);
        int m = vsnprintf(line + n, sizeof line - (size_t)n, kv, ap);
        va_end(ap);
        if (m > 0)
            n += m;
    }
    if (n < 0)
        return;
    if ((size_t)n > sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}

int kj_grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 16;
    while (n < need) {
        if (n > SIZE_MAX / 2)
            return KJ_ENOMEM;
        n *= 2;
    }
    if (n > SIZE_MAX / size)
        return KJ_ENOMEM;
    void *q = realloc(*p, n * size);
    if (!q)
        return KJ_ENOMEM;
    *p = q;
    *cap = n;
    return 0;
}
