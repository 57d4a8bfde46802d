/*
 * cli.c - what the journal commands share: the common options and --help,
 * opening the journal with errors mapped to exit codes, --since/--until.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* --- options ---------------------------------------------------------------- */

int kj_cli_fail(const kj_cli_common *c, int code, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "kjournal %s: ", c->cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (code == KJ_EXIT_USAGE)
        fprintf(stderr, "Run 'kjournal %s --help' for its options.\n", c->cmd);
    return code;
}

static const char *const formats[] = {"short", "json", "json-pretty", "csv", NULL};

static void help_times(FILE *f)
{
    fprintf(f, "\ntimes (--since, --until):\n"
               "  2026-11-29, 2026-11-29T05:00, 2026-11-29 05:00:00.250, ...Z, ...+01:00\n"
               "                            ISO 8601; without a zone the local time (UTC with\n"
               "                            --utc)\n"
               "  -1h, -30m, -2d, -1h30m, +10m\n"
               "                            relative to now (units ms, s/sec, m/min, h, d, w)\n"
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

static void help(const kj_cli_spec *spec, const kj_opt *common)
{
    fputs(spec->help, stdout);
    if (spec->opts) {
        fputs("\noptions:\n", stdout);
        kj_opts_help(stdout, spec->opts);
    }
    fputs("\ncommon options:\n", stdout);
    kj_opts_help(stdout, common);
    if (spec->flags & KJ_CLI_TIMES)
        help_times(stdout);
    fputs(spec->examples, stdout);
    if (spec->exits)
        fputs(spec->exits, stdout);
    else
        help_exit_codes(stdout, spec->flags & KJ_CLI_NOTFOUND);
}

int kj_cli_parse(kj_cli_common *c, const kj_cli_spec *spec, int argc, char **argv)
{
    static const kj_opt none[] = {{0}};
    int fmt = KJ_FMT_SHORT, no_color = 0, want_help = 0, version = 0, check_config = 0, n;
    memset(c, 0, sizeof *c);
    c->cmd = argv[0];
    const char *env = getenv("KJOURNAL_JOURNAL");
    c->journal = env && *env ? env : KJ_DEFAULT_JOURNAL;
    int formats_only = spec->flags & KJ_CLI_FORMATS;
    const kj_opt times[] = {
        {"since", 0, KJ_OPT_STRING, &c->since, "TIME", .help = "only from TIME on"},
        {"until", 0, KJ_OPT_STRING, &c->until, "TIME", .help = "only before TIME"},
        {0},
    };
    const kj_opt common[] = {
        {"journal", 0, KJ_OPT_STRING, &c->journal, "PATH",
         .help = "the journal (default $KJOURNAL_JOURNAL, else " KJ_DEFAULT_JOURNAL ")"},
        {"output", 'o', KJ_OPT_CHOICE, &fmt, "FMT",
         .help = formats_only ? "short (for people; the default) or json (one object per line)"
                              : "short (aligned, for people; the default), json (one\n"
                                "object per line), json-pretty, csv",
         .choices = formats},
        {"utc", 0, KJ_OPT_FLAG, &c->utc, NULL,
         .help = "show times in UTC, and read times without a zone as UTC"},
        {"no-color", 0, KJ_OPT_FLAG, &no_color, NULL,
         .help = "no colour (also when NO_COLOR is set or stdout is not a\nterminal)"},
        {"help", 'h', KJ_OPT_FLAG, &want_help, NULL, .help = "this help"},
        {"version", 0, KJ_OPT_FLAG, &version, NULL, .help = "print the version and exit"},
        KJ_OPTS_CHECK_CONFIG(&check_config),
        KJ_OPTS_INCLUDE(spec->flags & KJ_CLI_TIMES ? times : none),
        {0},
    };
    const kj_opt all[] = {
        KJ_OPTS_INCLUDE(common),
        KJ_OPTS_INCLUDE(spec->opts ? spec->opts : none),
        {0},
    };
    char prog[64];
    snprintf(prog, sizeof prog, "kjournal %s", c->cmd);
    int rc = kj_opts_parse(prog, all, argc, argv, &n);
    if (want_help) {
        help(spec, common);
        exit(KJ_EXIT_OK);
    }
    if (rc)
        return rc;
    if (version) {
        kj_opts_version(stdout, prog);
        exit(KJ_EXIT_OK);
    }
    c->fmt = (kj_fmt)fmt;
    if (formats_only && c->fmt != KJ_FMT_SHORT && c->fmt != KJ_FMT_JSON)
        return kj_cli_fail(c, KJ_EXIT_USAGE, "-o: %s prints short or json", c->cmd);
    int operands = spec->flags & KJ_CLI_OPERAND ? 1 : 0;
    if (n > operands)
        return kj_cli_fail(c, KJ_EXIT_USAGE, "unexpected argument '%s'", argv[1 + operands]);
    c->operand = n ? argv[1] : NULL;
    c->check_config = check_config;
    if (check_config && !(spec->flags & KJ_CLI_CHECKS)) {
        int64_t since = 0, until = 0;
        if ((rc = kj_cli_times(c, &since, &until)))
            return rc;
        kj_opts_config_ok(prog, "flags ok; the journal was not opened");
    }
    const char *nc = getenv("NO_COLOR"), *term = getenv("TERM");
    c->color =
        !no_color && isatty(STDOUT_FILENO) && !(nc && *nc) && !(term && !strcmp(term, "dumb"));
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

/* --- times ------------------------------------------------------------------ */

static int time_opt(const kj_cli_common *c, const char *opt, const char *arg, int64_t *out)
{
    char msg[128];
    if (kj_parse_time(arg, kj_now_ms(), c->utc, out, msg, sizeof msg) == 0)
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
