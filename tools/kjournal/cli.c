/*
 * cli.c - what the journal commands share: the common options, opening the
 * journal with errors mapped to exit codes, time expressions and durations.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* --- options ---------------------------------------------------------------- */

void kj_cli_common_init(kj_cli_common *c, char **argv)
{
    memset(c, 0, sizeof *c);
    c->cmd = argv[0];
    c->argv = argv;
    const char *env = getenv("KJOURNAL_JOURNAL");
    c->journal = env && *env ? env : KJ_DEFAULT_JOURNAL;
    c->color = 1;
    /* Our own messages for bad options, naming the command. */
    opterr = 0;
}

int kj_cli_fail(const kj_cli_common *c, int code, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "kjournal %s: ", c->cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (code == KJ_EXIT_USAGE)
        fprintf(stderr, "Run 'kjournal %s --help' for its options and examples.\n", c->cmd);
    return code;
}

int kj_cli_common_opt(kj_cli_common *c, int opt, const char *arg)
{
    static const struct {
        const char *name;
        kj_fmt fmt;
    } formats[] = {
        {"short", KJ_FMT_SHORT},
        {"json", KJ_FMT_JSON},
        {"json-pretty", KJ_FMT_JSON_PRETTY},
        {"csv", KJ_FMT_CSV},
    };
    switch (opt) {
    case 'o':
        for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
            if (!strcmp(arg, formats[i].name)) {
                c->fmt = formats[i].fmt;
                return 0;
            }
        return kj_cli_fail(c, KJ_EXIT_USAGE,
                           "unknown output format '%s' (short, json, json-pretty, csv)", arg);
    case KJ_OPT_JOURNAL:
        if (!*arg)
            return kj_cli_fail(c, KJ_EXIT_USAGE, "--journal needs a path");
        c->journal = arg;
        return 0;
    case KJ_OPT_UTC:
        c->utc = 1;
        return 0;
    case KJ_OPT_NO_COLOR:
        c->color = 0;
        return 0;
    case KJ_OPT_SINCE:
        c->since = arg;
        return 0;
    case KJ_OPT_UNTIL:
        c->until = arg;
        return 0;
    case ':':
        return kj_cli_fail(c, KJ_EXIT_USAGE, "option '%s' needs a value", c->argv[optind - 1]);
    case '?':
        if (optopt > 0 && optopt < 0x100 && optopt != '-' && strncmp(c->argv[optind - 1], "--", 2))
            return kj_cli_fail(c, KJ_EXIT_USAGE, "unknown option '-%c'", optopt);
        return kj_cli_fail(c, KJ_EXIT_USAGE, "unknown option '%s'", c->argv[optind - 1]);
    default:
        return -1;
    }
}

void kj_cli_common_done(kj_cli_common *c)
{
    const char *no_color = getenv("NO_COLOR"), *term = getenv("TERM");
    if (!isatty(STDOUT_FILENO) || (no_color && *no_color) || (term && !strcmp(term, "dumb")))
        c->color = 0;
}

/* --- help ------------------------------------------------------------------- */

static void help_common(FILE *f)
{
    fprintf(f,
            "\ncommon options:\n"
            "  --journal PATH     the journal (default $KJOURNAL_JOURNAL, else " KJ_DEFAULT_JOURNAL
            ")\n"
            "  -o, --output FMT   short (aligned, for people; the default), json (one\n"
            "                     object per line), json-pretty, csv\n"
            "  --utc              show times in UTC, and read times without a zone as UTC\n"
            "  --no-color         no colour (also when NO_COLOR is set or stdout is not a\n"
            "                     terminal)\n"
            "  -h, --help         this help\n");
}

static void help_times(FILE *f)
{
    fprintf(f, "\ntimes (--since, --until):\n"
               "  2026-11-29, 2026-11-29T05:00, 2026-11-29 05:00:00.250, ...Z, ...+01:00\n"
               "                     ISO 8601; without a zone the local time (UTC with --utc)\n"
               "  -1h, -30m, -2d, -1h30m, +10m\n"
               "                     relative to now (units ms, s, m, min, h, d, w)\n"
               "  now, today, yesterday, tomorrow, @1764391200 (seconds since the epoch)\n");
}

static void help_exit_codes(FILE *f, int notfound)
{
    fprintf(f,
            "\nexit codes:\n"
            "  %d  done\n"
            "  %d  the command failed\n"
            "  %d  bad option, argument or time expression\n"
            "  %d  no such journal file\n"
            "  %d  the file is not a kjournal journal\n"
            "  %d  the journal is newer than this kjournal\n"
            "  %d  the journal is damaged\n",
            KJ_EXIT_OK, KJ_EXIT_FAILURE, KJ_EXIT_USAGE, KJ_EXIT_NOFILE, KJ_EXIT_NOTJOURNAL,
            KJ_EXIT_TOONEW, KJ_EXIT_CORRUPT);
    if (notfound)
        fprintf(f, "  %d  no such session (or run)\n", KJ_EXIT_NOTFOUND);
}

static void help(const kj_cli_spec *spec)
{
    fputs(spec->help, stdout);
    help_common(stdout);
    if (spec->flags & KJ_CLI_TIMES)
        help_times(stdout);
    fputs(spec->examples, stdout);
    help_exit_codes(stdout, spec->flags & KJ_CLI_NOTFOUND);
}

int kj_cli_parse(kj_cli_common *c, const kj_cli_spec *spec, int argc, char **argv, void *ud)
{
    static const struct option common_longopts[] = {KJ_CLI_COMMON_LONGOPTS, {NULL, 0, NULL, 0}};
    const struct option *longopts = spec->longopts ? spec->longopts : common_longopts;
    /* ':' first: a missing value is reported as such, not as an unknown option. */
    char shortopts[32];
    snprintf(shortopts, sizeof shortopts, ":%s%s", KJ_CLI_COMMON_SHORTOPTS,
             spec->shortopts ? spec->shortopts : "");
    kj_cli_common_init(c, argv);
    int opt, rc;
    while ((opt = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
        if (opt == 'h') {
            help(spec);
            exit(KJ_EXIT_OK);
        }
        rc = kj_cli_common_opt(c, opt, optarg);
        if (rc < 0)
            rc = spec->opt(c, opt, optarg, ud);
        if (rc)
            return rc;
    }
    int operands = spec->flags & KJ_CLI_OPERAND ? 1 : 0;
    if (optind + operands < argc)
        return kj_cli_fail(c, KJ_EXIT_USAGE, "unexpected argument '%s'", argv[optind + operands]);
    kj_cli_common_done(c);
    return 0;
}

int kj_cli_opt_value(kj_cli_common *c, int opt, const char *arg, void *ud)
{
    (void)c;
    (void)opt;
    *(const char **)ud = arg;
    return 0;
}

/* --- errors and opening ----------------------------------------------------- */

static int exit_of(int kj_code)
{
    switch (kj_code) {
    case KJ_OK:
        return KJ_EXIT_OK;
    case KJ_ENOENT:
        return KJ_EXIT_NOTFOUND;
    case KJ_ENOTJOURNAL:
        return KJ_EXIT_NOTJOURNAL;
    case KJ_ETOONEW:
        return KJ_EXIT_TOONEW;
    case KJ_ECORRUPT:
        return KJ_EXIT_CORRUPT;
    case KJ_EUNAVAIL:
        return KJ_EXIT_UNAVAILABLE;
    case KJ_ELOCKED:
        return KJ_EXIT_LOCKED;
    default:
        return KJ_EXIT_FAILURE;
    }
}

int kj_cli_fail_err(const kj_cli_common *c, const kj_err *err)
{
    return kj_cli_fail(c, exit_of(err->code), "%s",
                       err->msg[0] ? err->msg : kj_strerror(err->code));
}

int kj_cli_open(const kj_cli_common *c, unsigned flags, kj_journal **out)
{
    kj_err err = {0};
    int rc = kj_journal_open(c->journal, flags, out, &err);
    if (rc == 0)
        return KJ_EXIT_OK;
    if (rc == KJ_ENOENT)
        return kj_cli_fail(c, KJ_EXIT_NOFILE,
                           "cannot open journal '%s': no such file (give the path with "
                           "--journal or $KJOURNAL_JOURNAL)",
                           c->journal);
    if (rc == KJ_ELOCKED)
        return kj_cli_fail(c, KJ_EXIT_LOCKED,
                           "%s; kjournald reconciles on its own while it runs, and --dry-run "
                           "shows the plan beside it",
                           err.msg);
    return kj_cli_fail(c, exit_of(rc), "cannot open %s", err.msg);
}

/* --- times and durations ---------------------------------------------------- */

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
        return KJ_EINVAL;
    }
    if (d < 1 || d > days_in_month(y, mo)) {
        snprintf(msg, size, "day %02d out of range for %04d-%02d", d, y, mo);
        return KJ_EINVAL;
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
            return KJ_EINVAL;
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
            return KJ_EINVAL;
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
    return KJ_EINVAL;
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
            return KJ_EINVAL;
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
    return KJ_EINVAL;
bad:
    snprintf(msg, size, "not a duration");
    return KJ_EINVAL;
}

int kj_cli_parse_duration(const char *s, int64_t *out, char *msg, size_t size)
{
    int rc = parse_terms(s, out, msg, size);
    if (!rc && *out <= 0) {
        snprintf(msg, size, "a duration must be longer than 0");
        return KJ_EINVAL;
    }
    return rc;
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

int kj_cli_parse_time(const char *s, int64_t now_ms, int utc, int64_t *out, char *msg, size_t size)
{
    int64_t d = 0;
    if (!s || !*s) {
        snprintf(msg, size, "empty time");
        return KJ_EINVAL;
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
            return KJ_EINVAL;
        *out = *s == '-' ? now_ms - d : now_ms + d;
        return 0;
    }
    if (*s == '@') {
        char *end = NULL;
        errno = 0;
        double secs = strtod(s + 1, &end);
        if (!isdigit((unsigned char)s[1]) || errno || *end || secs > 4102444800.0) {
            snprintf(msg, size, "not a number of seconds since the epoch");
            return KJ_EINVAL;
        }
        *out = (int64_t)(secs * 1000.0 + 0.5);
        return 0;
    }
    if (isdigit((unsigned char)*s))
        return parse_iso(s, utc, out, msg, size);
    snprintf(msg, size, "not a time");
    return KJ_EINVAL;
}

static int time_opt(const kj_cli_common *c, const char *opt, const char *arg, int64_t *out)
{
    char msg[128];
    if (kj_cli_parse_time(arg, kj_now_ms(), c->utc, out, msg, sizeof msg) == 0)
        return 0;
    return kj_cli_fail(c, KJ_EXIT_USAGE,
                       "bad time '%s' for %s: %s; use ISO 8601 (2026-11-29T05:00:00Z), a "
                       "relative time (-1h, -30m, -2d), today, yesterday or now",
                       arg, opt, msg);
}

int kj_cli_times(const kj_cli_common *c, int64_t *since_ms, int64_t *until_ms)
{
    int rc = 0;
    if (c->since && (rc = time_opt(c, "--since", c->since, since_ms)))
        return rc;
    if (c->until)
        rc = time_opt(c, "--until", c->until, until_ms);
    return rc;
}

int kj_cli_parse_count(const char *s, int64_t *out)
{
    if (!strcmp(s, "all")) {
        *out = 0;
        return 0;
    }
    char *end = NULL;
    errno = 0;
    long long n = strtoll(s, &end, 10);
    if (!isdigit((unsigned char)*s) || errno || *end || n <= 0)
        return KJ_EINVAL;
    *out = n;
    return 0;
}

int kj_cli_count_opt(const kj_cli_common *c, const char *arg, int64_t *out)
{
    if (kj_cli_parse_count(arg, out))
        return kj_cli_fail(c, KJ_EXIT_USAGE, "bad count '%s' for -n", arg);
    return 0;
}
