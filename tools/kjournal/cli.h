/*
 * cli.h - what the kjournal subcommands share: the command table entry,
 * option parsing and --help, opening the journal, and the -o output. The
 * exit codes are opts.h's.
 */
#ifndef KJ_CLI_H
#define KJ_CLI_H

typedef struct kj_cli_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
} kj_cli_command;

/* --- helpers for the journal commands (cli.c, out.c, rows.c) --------------
 *
 * A command declares its --help and its own options (a kj_opt table, opts.h,
 * pointing at its own variables) in a kj_cli_spec, parses its argv with
 * kj_cli_parse(), opens the journal with kj_cli_open(), and prints through a
 * kj_out, which knows the -o formats:
 *
 *     kj_session_filter f = {0};
 *     const kj_opt opts[] = {
 *         {"user", 0, KJ_OPT_STRING, &f.user, "USER", .help = "only this user's sessions"},
 *         {0},
 *     };
 *     const kj_cli_spec spec = {.help = help, .opts = opts, .examples = examples};
 *     kj_cli_common c;
 *     if ((rc = kj_cli_parse(&c, &spec, argc, argv)))
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
#include <stdint.h>
#include <stdio.h>

#include "journal/journal.h"
#include "tools/common/opts.h"

typedef enum { KJ_FMT_SHORT = 0, KJ_FMT_JSON, KJ_FMT_JSON_PRETTY, KJ_FMT_CSV } kj_fmt;

typedef struct kj_cli_common {
    const char *cmd;     /* "sessions": the prefix of every message */
    const char *journal; /* --journal, else $KJOURNAL_JOURNAL, else the default */
    kj_fmt fmt;          /* -o */
    int utc;             /* --utc: show and read times in UTC */
    int color;           /* stdout is a terminal, NO_COLOR unset, no --no-color */
    const char *since;   /* --since, as given (kj_cli_times() parses it) */
    const char *until;   /* --until, likewise */
    const char *operand; /* with KJ_CLI_OPERAND: the operand, or NULL when missing */
    int check_config;    /* --check-config, for a command with KJ_CLI_CHECKS */
} kj_cli_common;

/* A command as kj_cli_parse() sees it: its --help and its options. */
typedef struct kj_cli_spec {
    const char *help;     /* usage and what it does */
    const kj_opt *opts;   /* its own options (listed under "options:"), or NULL */
    const char *examples; /* "\nexamples:\n..." */
    const char *exits;    /* its exit codes, when not those of a journal command */
    unsigned flags;       /* KJ_CLI_* below */
} kj_cli_spec;

enum {
    KJ_CLI_TIMES = 1 << 0,    /* takes --since/--until: --help explains times */
    KJ_CLI_NOTFOUND = 1 << 1, /* may exit KJ_EXIT_NOTFOUND: --help says so */
    KJ_CLI_OPERAND = 1 << 2,  /* takes one operand, c->operand (missing: its own check) */
    KJ_CLI_FORMATS = 1 << 3,  /* -o is short or json only (the network commands) */
    /* --check-config: the command checks its configuration itself (reads it
     * as at start, opens, connects and changes nothing), then calls
     * kj_opts_config_ok(); without this flag kj_cli_parse() exits 0 once the
     * options parsed ("flags ok"). */
    KJ_CLI_CHECKS = 1 << 4,
};

/* Parses a command's argv: the shared options into c, its own into what
 * spec->opts points at, then decides on colour. Returns 0, or an exit code
 * after reporting the usage error. --help prints the command's help and
 * exits 0 here, as nothing is open yet; so do --version and (unless the
 * command has KJ_CLI_CHECKS) --check-config. */
int kj_cli_parse(kj_cli_common *c, const kj_cli_spec *spec, int argc, char **argv);

/* Prints "kjournal CMD: message" on stderr and returns code. */
int kj_cli_fail(const kj_cli_common *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Reports err (from the library) and returns its exit code; KJ_ENOENT means
 * an unknown session or run here, since opening reports its own. */
int kj_cli_fail_err(const kj_cli_common *c, const kj_err *err);

/* Opens the journal (flags: KJ_JOURNAL_READONLY for the read commands, else
 * KJ_JOURNAL_NOCREATE). On failure reports it and returns the exit code. */
int kj_cli_open(const kj_cli_common *c, unsigned flags, kj_journal **out);

/* The --since and --until of c as epoch ms (left alone when not given); after
 * kj_cli_parse(), so that --utc applies wherever it stood. On failure reports
 * it and returns KJ_EXIT_USAGE. */
int kj_cli_times(const kj_cli_common *c, int64_t *since_ms, int64_t *until_ms);

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
