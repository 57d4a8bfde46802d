/*
 * cli.h - what the kjournal subcommands share: the command table entry and
 * the exit codes scripts can rely on.
 */
#ifndef KJ_CLI_H
#define KJ_CLI_H

/* Exit codes. Every subcommand uses these and documents them in --help. */
enum {
    KJ_EXIT_OK = 0,          /* done; for verify: the journal is clean */
    KJ_EXIT_FAILURE = 1,     /* the command ran and something failed (rejected events,
                                failed actions, verify found problems) */
    KJ_EXIT_USAGE = 2,       /* bad flags, arguments, configuration or time expression */
    KJ_EXIT_NOFILE = 3,      /* no such journal file */
    KJ_EXIT_NOTJOURNAL = 4,  /* the file is not a kjournal database */
    KJ_EXIT_TOONEW = 5,      /* the journal is newer than this binary */
    KJ_EXIT_CORRUPT = 6,     /* the journal is damaged */
    KJ_EXIT_NOTFOUND = 7,    /* no such session (or run) */
    KJ_EXIT_UNAVAILABLE = 8, /* a peer (kjournald, the Kubernetes API) cannot be reached */
    KJ_EXIT_LOCKED = 9,      /* recover: another writer (kjournald, a recover) holds the journal */
};

typedef struct kj_cli_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
} kj_cli_command;

/* --- helpers for the journal commands (cli.c, out.c, rows.c) --------------
 *
 * A read command describes its --help and its own options in a kj_cli_spec,
 * parses its argv with kj_cli_parse(), opens the journal with kj_cli_open(),
 * and prints through a kj_out, which knows the -o formats:
 *
 *     kj_cli_common c;
 *     if ((rc = kj_cli_parse(&c, &spec, argc, argv, &my_options)))
 *         return rc;                           // already reported on stderr
 *     kj_journal *j;
 *     if ((rc = kj_cli_open(&c, KJ_JOURNAL_READONLY, &j)))
 *         return rc;
 *     kj_out *o = kj_out_new(&c);
 *     kj_out_begin_list(o, NULL, "sessions", fields, n);
 *     kj_journal_sessions(j, &filter, kj_print_session, o, &err);
 *     kj_out_end_list(o);
 *     rc = kj_out_free(o);                     // KJ_EXIT_OK unless stdout failed
 */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>

#include "journal/journal.h"

#define KJ_DEFAULT_JOURNAL "/var/lib/kjournal/journal.db"

typedef enum { KJ_FMT_SHORT = 0, KJ_FMT_JSON, KJ_FMT_JSON_PRETTY, KJ_FMT_CSV } kj_fmt;

/* Options every journal command takes (long options get these values). */
enum {
    KJ_OPT_JOURNAL = 0x1000,
    KJ_OPT_UTC,
    KJ_OPT_NO_COLOR,
    KJ_OPT_SINCE,
    KJ_OPT_UNTIL,
};

typedef struct kj_cli_common {
    const char *cmd;     /* "sessions": the prefix of every message */
    const char *journal; /* --journal, else $KJOURNAL_JOURNAL, else the default */
    kj_fmt fmt;          /* -o */
    int utc;             /* --utc: show and read times in UTC */
    int color;           /* stdout is a terminal, NO_COLOR unset, no --no-color */
    const char *since;   /* --since, as given (kj_cli_times() parses it) */
    const char *until;   /* --until, likewise */
    char **argv;         /* the command's argv, to name a bad option */
} kj_cli_common;

/* The getopt_long entries of the shared options (-o, --journal, --utc,
 * --no-color, -h), to splice into a command's table with KJ_CLI_COMMON_LONGOPTS. */
/* clang-format off */
#define KJ_CLI_COMMON_LONGOPTS                                                                     \
    {"journal", required_argument, NULL, KJ_OPT_JOURNAL},                                          \
    {"output", required_argument, NULL, 'o'},                                                      \
    {"utc", no_argument, NULL, KJ_OPT_UTC},                                                        \
    {"no-color", no_argument, NULL, KJ_OPT_NO_COLOR},                                              \
    {"help", no_argument, NULL, 'h'}
/* --since and --until, for the commands that take a time window. */
#define KJ_CLI_TIME_LONGOPTS                                                                       \
    {"since", required_argument, NULL, KJ_OPT_SINCE},                                              \
    {"until", required_argument, NULL, KJ_OPT_UNTIL}
/* clang-format on */
#define KJ_CLI_COMMON_SHORTOPTS "o:h"

/* A journal command as kj_cli_parse() sees it: its --help and its options. */
typedef struct kj_cli_spec {
    const char *help;              /* usage, what it does, its own options */
    const char *examples;          /* "\nexamples:\n..." */
    unsigned flags;                /* KJ_CLI_* below */
    const char *shortopts;         /* its own short options ("n:r"), or NULL */
    const struct option *longopts; /* its options and KJ_CLI_COMMON_LONGOPTS;
                                      NULL: only those */
    /* Takes one of its own options: 0, or an exit code once reported. */
    int (*opt)(kj_cli_common *c, int opt, const char *arg, void *ud);
} kj_cli_spec;

enum {
    KJ_CLI_TIMES = 1 << 0,    /* takes --since/--until: --help explains times */
    KJ_CLI_NOTFOUND = 1 << 1, /* may exit KJ_EXIT_NOTFOUND: --help says so */
    KJ_CLI_OPERAND = 1 << 2,  /* takes one operand, argv[optind] (missing: its own check) */
};

/* Parses a command's argv: the shared options into c, its own through
 * spec->opt(c, opt, optarg, ud), then decides on colour. Returns 0, or an
 * exit code after reporting the usage error. --help prints the command's help
 * and exits 0 here, as nothing is open yet. */
int kj_cli_parse(kj_cli_common *c, const kj_cli_spec *spec, int argc, char **argv, void *ud);
/* A spec->opt for a command with one option of its own, which takes a value:
 * stores the value in *(const char **)ud. */
int kj_cli_opt_value(kj_cli_common *c, int opt, const char *arg, void *ud);

/* For commands that parse their own way (recover): */
void kj_cli_common_init(kj_cli_common *c, char **argv);
/* Handles one shared option. Returns 0 when handled, -1 when opt is not a
 * shared option, or a KJ_EXIT_USAGE after printing what was wrong. '?' (from
 * getopt) is reported as a usage error. */
int kj_cli_common_opt(kj_cli_common *c, int opt, const char *arg);
/* Finishes option parsing: colour decision. */
void kj_cli_common_done(kj_cli_common *c);

/* Prints "kjournal CMD: message" on stderr and returns code. */
int kj_cli_fail(const kj_cli_common *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Reports err (from the library) and returns its exit code; KJ_ENOENT means
 * an unknown session or run here, since opening reports its own. */
int kj_cli_fail_err(const kj_cli_common *c, const kj_err *err);

/* Opens the journal (flags: KJ_JOURNAL_READONLY for the read commands, else
 * KJ_JOURNAL_NOCREATE). On failure reports it and returns the exit code. */
int kj_cli_open(const kj_cli_common *c, unsigned flags, kj_journal **out);

/*
 * Time expressions (--since, --until): ISO 8601 ("2026-11-29", "2026-11-29
 * 05:00", "2026-11-29T05:00:00.250Z", "...+01:00"; without a zone the local
 * time, or UTC with utc set), "@SECONDS" since the epoch, relative "-1h",
 * "-30m", "+2d", "-1h30m" (units ms, s, m/min, h, d, w), "now", "today",
 * "yesterday", "tomorrow". On failure returns KJ_EINVAL with why in msg.
 */
int kj_cli_parse_time(const char *s, int64_t now_ms, int utc, int64_t *out, char *msg, size_t size);
/* A duration ("30d", "12h", "1d12h", "90m", "1w"), > 0, in ms. */
int kj_cli_parse_duration(const char *s, int64_t *out, char *msg, size_t size);
/* The --since and --until of c as epoch ms (left alone when not given); after
 * kj_cli_parse(), so that --utc applies wherever it stood. On failure reports
 * it and returns KJ_EXIT_USAGE. */
int kj_cli_times(const kj_cli_common *c, int64_t *since_ms, int64_t *until_ms);
/* A count for -n: a positive integer, or "all" (0). */
int kj_cli_parse_count(const char *s, int64_t *out);
/* Parses the -n argument arg; on failure reports it and returns KJ_EXIT_USAGE. */
int kj_cli_count_opt(const kj_cli_common *c, const char *arg, int64_t *out);

/* --- output ------------------------------------------------------------------
 *
 * Records (objects) and lists (tables) in the -o format:
 *   short       objects as aligned "title  value" lines, lists as aligned
 *               tables with a header; colour only when c->color.
 *   json        one object per line: a top-level list prints one line per
 *               row; a list inside an object is an array.
 *   json-pretty the same, indented.
 *   csv         a header line and rows; an object is a header and one row;
 *               several tables are separated by an empty line.
 * Rows are streamed; short buffers at most KJ_OUT_ALIGN rows to find the
 * column widths, so memory stays flat however long the output.
 */
#define KJ_OUT_ALIGN 256

enum {
    KJ_F_NUM = 1 << 0,     /* a number: right-aligned, a JSON number */
    KJ_F_TIME = 1 << 1,    /* epoch ms shown as ISO 8601; 0 is "none" */
    KJ_F_NOSHORT = 1 << 2, /* not in the short format */
    KJ_F_STATE = 1 << 3,   /* coloured by value (open, closed, ok, failed...) */
    KJ_F_BOOL = 1 << 4,    /* 0/1 shown as true/false (no/yes in short) */
    KJ_F_SHORT = 1 << 5,   /* only in the short format */
    KJ_F_BYTES = 1 << 6,   /* a size: "1.5 MiB" in short */
};

typedef struct kj_field {
    const char *key;   /* JSON key and CSV header */
    const char *title; /* short header */
    unsigned flags;
} kj_field;

/* A value: a string (NULL: none) or an integer (for KJ_F_NUM/TIME/BOOL). */
typedef struct kj_val {
    const char *s;
    int64_t n;
} kj_val;
#define KJ_S(x) ((kj_val){.s = (x)})
#define KJ_N(x) ((kj_val){.n = (x)})

typedef struct kj_out kj_out;

/* s as it may reach a terminal (short and csv output, messages): control
 * characters, C1 controls, bidirectional and invisible format characters and
 * bytes that are not UTF-8 become visible escapes (\n, \x1b, \u202e, \xff),
 * so that a value cannot move the cursor, recolour the screen or reorder
 * what follows it. The caller frees the result. */
char *kj_display(const char *s);

kj_out *kj_out_new(const kj_cli_common *c);
/* Flushes, frees and returns KJ_EXIT_OK, or KJ_EXIT_FAILURE when writing to
 * stdout failed (other than a closed pipe, which is not an error). */
int kj_out_free(kj_out *o);
/* An object; name is its key inside an enclosing object (NULL at the top). */
void kj_out_begin_object(kj_out *o, const char *name);
void kj_out_value(kj_out *o, const kj_field *f, kj_val v);
void kj_out_end_object(kj_out *o);
/* A list of rows with n fields; name is its key inside an enclosing object,
 * empty the short text when it has no rows ("-- no sessions --"). */
void kj_out_begin_list(kj_out *o, const char *name, const char *empty, const kj_field *fields,
                       size_t n);
void kj_out_row(kj_out *o, const kj_val *vals);
void kj_out_end_list(kj_out *o);
/* Writes what short has buffered (before following waits for more). */
void kj_out_flush(kj_out *o);
/* -n N lists the last N rows, oldest first: unless -r asked for newest first
 * (*reverse), the query is to run newest first (*reverse is set) and the
 * current list holds its rows back, to print them in reverse when it ends or
 * at kj_out_release(). Nothing is held without a limit. */
void kj_out_last(kj_out *o, int64_t limit, int *reverse);
void kj_out_release(kj_out *o);

/* Non-zero once stdout is gone (a closed pipe): stop producing output. */
int kj_out_closed(const kj_out *o);

/* --- rows (rows.c): the fields of sessions, events, actions and runs ------- */

extern const kj_field kj_session_fields[];
extern const size_t kj_session_nfields;
void kj_session_vals(const kj_session *s, kj_val *v);

extern const kj_field kj_event_fields[];
extern const size_t kj_event_nfields;
void kj_event_vals(const kj_event_row *r, kj_val *v);

extern const kj_field kj_action_fields[];
extern const size_t kj_action_nfields;
void kj_action_vals(const kj_action *a, kj_val *v);

extern const kj_field kj_run_fields[];
extern const size_t kj_run_nfields;
void kj_run_vals(const kj_run *r, kj_val *v);

/* Query callbacks that print each row into the current list of out (a
 * kj_out *); they stop the query once stdout is gone. */
int kj_print_session(const kj_session *s, void *out);
int kj_print_event(const kj_event_row *r, void *out);
int kj_print_action(const kj_action *a, void *out);
int kj_print_run(const kj_run *r, void *out);

/* Room for the values of any row above. */
#define KJ_VALS_MAX 16

#endif
