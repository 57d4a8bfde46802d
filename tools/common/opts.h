/*
 * opts.h - what every kjournal program shares on its command line: the exit
 * codes and defaults, one grammar for durations, times and counts, one
 * bounded-number parser, and one way to declare options and print --help.
 *
 * Libraries never see argv (like curl's lib/ and src/): a program declares
 * its options in a table that points at its own configuration, and
 * kj_opts_parse() fills it in.
 *
 *     int help = 0;
 *     const char *journal = KJ_DEFAULT_JOURNAL;
 *     int64_t resync_ms = 300000;
 *     const kj_opt opts[] = {
 *         {"journal", 0, KJ_OPT_STRING, &journal, "PATH", .help = "journal file"},
 *         {"resync", 0, KJ_OPT_DURATION, &resync_ms, "DUR", .help = "full pass every DUR",
 *          .min = 1000},
 *         {"help", 'h', KJ_OPT_FLAG, &help, NULL, .help = "this help"},
 *         {0},
 *     };
 *     int n;
 *     if ((rc = kj_opts_parse("kjournald", opts, argc, argv, &n)))
 *         return rc;                  // KJ_EXIT_USAGE, already reported
 *     if (help)
 *         kj_opts_help(stdout, opts); // the option lines, from the same table
 *     // argv[1..n] are now the operands, in order
 *
 * This layer uses only libc: kube-sim links it too and stays apart from
 * journal/, ipc/ and reconciler/.
 */
#ifndef KJ_OPTS_H
#define KJ_OPTS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kj_version.h" /* KJ_VERSION, for --version and User-Agents */

/* Exit codes of every program, documented in each --help. */
enum {
    KJ_EXIT_OK = 0,          /* done; for verify: the journal is clean */
    KJ_EXIT_FAILURE = 1,     /* the program ran and something failed (rejected events,
                                failed actions, verify found problems, a runtime error) */
    KJ_EXIT_USAGE = 2,       /* bad flags, arguments, configuration or time expression */
    KJ_EXIT_NOFILE = 3,      /* the journal cannot be opened or created */
    KJ_EXIT_NOTJOURNAL = 4,  /* the file is not a kjournal database */
    KJ_EXIT_TOONEW = 5,      /* the journal is newer than this binary */
    KJ_EXIT_CORRUPT = 6,     /* the journal is damaged */
    KJ_EXIT_NOTFOUND = 7,    /* no such session (or run) */
    KJ_EXIT_UNAVAILABLE = 8, /* a peer (kjournald, the Kubernetes API) cannot be reached,
                                or kjournald cannot listen */
    KJ_EXIT_LOCKED = 9,      /* another writer (kjournald, a recover) holds the journal */
    KJ_EXIT_LOST = 10,       /* kjournald: the journal was deleted or replaced while it ran */
};

#define KJ_DEFAULT_JOURNAL "/var/lib/kjournal/journal.db"

/* ---- values ------------------------------------------------------------
 *
 * Each returns 0, or -1 with why in msg (a phrase: "not a duration").
 *
 * Durations: a sum of NUMBER UNIT terms, units ms, s/sec, m/min, h, d, w
 * ("90s", "1h30m", "2d", "1w", "250ms"); a bare "0" is zero. At most 100
 * years.
 *
 * Times: ISO 8601 ("2026-11-29", "2026-11-29 05:00", "...T05:00:00.250Z",
 * "...+01:00"; without a zone the local time, or UTC with utc set),
 * "@SECONDS" since the epoch, relative to now ("-1h", "+2d", "-1h30m", any
 * duration), "now", "today", "yesterday", "tomorrow".
 *
 * Counts: a positive integer, or "all" (0).
 */
int kj_parse_duration(const char *s, int64_t *ms, char *msg, size_t size);
int kj_parse_time(const char *s, int64_t now_ms, int utc, int64_t *out, char *msg, size_t size);
int kj_parse_count(const char *s, int64_t *out, char *msg, size_t size);
/* A decimal integer in [min, max]. */
int kj_parse_int(const char *s, int64_t min, int64_t max, int64_t *out, char *msg, size_t size);
/* A decimal number (no inf, no nan) in [min, max]. */
int kj_parse_number(const char *s, double min, double max, double *out, char *msg, size_t size);

/* ---- options ------------------------------------------------------------ */

typedef enum {
    KJ_OPT_END = 0,  /* ends a table ({0}) */
    KJ_OPT_SECTION,  /* not an option: a heading in --help, help is its text (""
                        only a blank line) */
    KJ_OPT_INCLUDE,  /* the options of another table: dst is a const kj_opt * */
    KJ_OPT_FLAG,     /* no value: *(int *)dst = 1 */
    KJ_OPT_BOOL,     /* --name or --name=true|false|1|0: *(int *)dst */
    KJ_OPT_STRING,   /* *(const char **)dst = the value (borrowed from argv), not empty */
    KJ_OPT_STRINGS,  /* repeatable: appended to (const char **)dst, *count < max */
    KJ_OPT_INT,      /* *(int *)dst, in [min, max] */
    KJ_OPT_INT64,    /* *(int64_t *)dst, in [min, max] */
    KJ_OPT_SIZE,     /* *(size_t *)dst, in [min, max] */
    KJ_OPT_NUMBER,   /* *(double *)dst, in [min, max] */
    KJ_OPT_DURATION, /* *(int64_t *)dst in ms, in [min, max] (max 0: none) */
    KJ_OPT_COUNT,    /* *(int64_t *)dst: a count, "all" is 0 */
    KJ_OPT_CHOICE,   /* *(int *)dst = the index of the value in choices (any case) */
    KJ_OPT_CALL,     /* fn(ud, value); value NULL for an option without one (arg NULL) */
} kj_opt_kind;

typedef struct kj_opt {
    const char *name; /* long name, without "--" */
    char short_name;  /* 'o' for -o, or 0 */
    kj_opt_kind kind;
    void *dst;
    const char *arg;            /* the value's name in --help ("PATH"); NULL for FLAG/BOOL */
    const char *help;           /* its text; kj_opts_help() wraps it at 79 columns */
    int64_t min, max;           /* INT, INT64, SIZE, NUMBER, DURATION bounds; STRINGS: max count */
    size_t *count;              /* STRINGS: how many are in dst */
    const char *const *choices; /* CHOICE: NULL-terminated */
    /* CALL: 0, or -1 with why in msg (reported like a bad value). */
    int (*fn)(void *ud, const char *value, char *msg, size_t size);
    void *ud;
} kj_opt;

/* A heading in --help, and the options of another table, inside a table. */
#define KJ_OPTS_SECTION(text)                                                                      \
    {                                                                                              \
        .kind = KJ_OPT_SECTION, .help = (text)                                                     \
    }
#define KJ_OPTS_INCLUDE(table)                                                                     \
    {                                                                                              \
        .kind = KJ_OPT_INCLUDE, .dst = (void *)(table)                                             \
    }

/*
 * Parses argv against opts: "--name VALUE", "--name=VALUE", "-x VALUE",
 * "-xVALUE", grouped short flags ("-rf"), "--" ending the options; options
 * and operands may be mixed. A bad option or value is reported on stderr as
 * "PROG: ..." followed by "Run 'PROG --help' ..." and KJ_EXIT_USAGE is
 * returned. On success argv[1..*operands] are the operands, in order.
 */
int kj_opts_parse(const char *prog, const kj_opt *opts, int argc, char **argv, int *operands);

/*
 * The options every program takes. kj_opts_parse() handles them itself
 * unless the program's table has an option of the same name:
 *   --version       prints "PROG VERSION" (kj_version.h) and exits 0, once
 *                   the other options parsed;
 *   --check-config  once the options parsed, prints "PROG: flags ok" and
 *                   exits 0: nothing is opened, served or changed.
 * A program that reads more configuration than its flags (key files, a
 * kubeconfig, endpoints) declares its own entry, KJ_OPTS_CHECK_CONFIG(&flag),
 * checks what it would read at start, without listening, connecting or
 * writing, and ends with kj_opts_config_ok() or its usual exit code.
 * kj_opts_usage() lists the standard options a table does not declare.
 */
#define KJ_OPTS_CHECK_CONFIG_HELP                                                                  \
    "check the flags and the configuration they name, then\n"                                      \
    "exit 0 (or the usual exit code) without serving, connecting\n"                                \
    "or changing anything"
#define KJ_OPTS_CHECK_CONFIG(flag)                                                                 \
    {                                                                                              \
        "check-config", 0, KJ_OPT_FLAG, (flag), NULL, .help = KJ_OPTS_CHECK_CONFIG_HELP            \
    }
extern const kj_opt kj_opts_standard[];

/* Prints "PROG VERSION" on stdout. */
void kj_opts_version(FILE *f, const char *prog);
/* --check-config passed: prints "PROG: configuration ok" (and what, when
 * given: "listen tcp://..., reconciler off") on stdout and exits 0. */
void kj_opts_config_ok(const char *prog, const char *what) __attribute__((noreturn));

/* The option lines of opts (and the tables it includes), aligned. */
void kj_opts_help(FILE *f, const kj_opt *opts);
/* A program's whole --help: head (usage, what it does), the option lines,
 * then tail (exit codes, examples). */
void kj_opts_usage(FILE *f, const char *head, const kj_opt *opts, const char *tail);

/* Prints "PROG: message" on stderr; for KJ_EXIT_USAGE also where to look. Returns code. */
int kj_opts_fail(const char *prog, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
