/*
 * out.c - the -o formats of the journal commands: short (aligned, for people),
 * json, json-pretty and csv (for programs). See cli.h for the model: objects
 * and lists, streamed, with at most KJ_OUT_ALIGN rows held for alignment.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define MAX_DEPTH 8

enum { L_OBJECT = 1, L_LIST };

typedef struct level {
    int kind;
    int top;      /* a list at the top: its rows are separate JSON documents */
    size_t count; /* items written, for JSON commas */
    const kj_field *fields;
    size_t n;
    const char *name, *empty;
    size_t rows; /* rows of a list seen so far */
} level;

/* Rows held back to be printed in reverse (kj_out_last). */
typedef struct rowbuf {
    size_t nfields, rows, cap;
    kj_val *vals; /* row-major; strings owned */
} rowbuf;

/* What short and csv hold back: the values of an object (printed when it
 * ends or a list begins inside it) and up to KJ_OUT_ALIGN rows of a table. */
typedef struct held {
    struct held_value {
        const kj_field *field;
        char *cell;
    } * v;
    size_t n, cap;
} held;

struct kj_out {
    kj_fmt fmt;
    int utc, color;
    FILE *f;
    level st[MAX_DEPTH];
    int depth;
    size_t blocks; /* tables and objects printed so far (short, csv) */
    held obj;      /* short/csv: pending object values */
    char **cells;  /* short: pending table rows, row-major */
    size_t rows, rows_cap;
    size_t *width; /* short: column widths of the current table, only grow */
    int header_done;
    int closed, failed;
    rowbuf *last; /* kj_out_last: the current list's rows, held */
};

static void out_of_memory(void) __attribute__((noreturn));
static void out_of_memory(void)
{
    fprintf(stderr, "kjournal: out of memory\n");
    exit(KJ_EXIT_FAILURE);
}

/* --- what may reach a terminal ---------------------------------------------- */

/* One UTF-8 character at p: its length, and *cp (-1 for a byte that does not
 * start a well-formed character). */
static size_t utf8_char(const unsigned char *p, int32_t *cp)
{
    size_t len = p[0] < 0x80             ? 1
                 : (p[0] & 0xE0) == 0xC0 ? 2
                 : (p[0] & 0xF0) == 0xE0 ? 3
                 : (p[0] & 0xF8) == 0xF0 ? 4
                                         : 0;
    int32_t v = len == 1 ? p[0] : len == 2 ? p[0] & 0x1F : len == 3 ? p[0] & 0x0F : p[0] & 0x07;
    for (size_t k = 1; k < len; k++) {
        if ((p[k] & 0xC0) != 0x80) {
            len = 0;
            break;
        }
        v = (v << 6) | (p[k] & 0x3F);
    }
    if (!len || (len == 2 && v < 0x80) || (len == 3 && v < 0x800) ||
        (len == 4 && (v < 0x10000 || v > 0x10FFFF)) || (v >= 0xD800 && v <= 0xDFFF)) {
        *cp = -1;
        return 1;
    }
    *cp = v;
    return len;
}

/* Characters a terminal acts on or that reorder or hide text: C0 and C1
 * controls, DEL, the bidirectional controls (the "Trojan Source" set), zero
 * width characters, line and paragraph separators, the byte order mark. */
static int unsafe(int32_t cp)
{
    return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F) || cp == 0x061C ||
           (cp >= 0x200B && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202E) ||
           (cp >= 0x2060 && cp <= 0x2064) || (cp >= 0x2066 && cp <= 0x2069) || cp == 0xFEFF;
}

char *kj_display(const char *s)
{
    size_t cap = 0, len = 0;
    char *out = NULL;
    if (kj_grow((void **)&out, &cap, strlen(s) + 1, 1))
        out_of_memory();
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        int32_t cp;
        size_t l = utf8_char(p, &cp);
        char esc[16];
        const char *add = (const char *)p;
        size_t alen = l;
        if (cp < 0 || unsafe(cp)) {
            if (cp == '\n' || cp == '\r' || cp == '\t')
                snprintf(esc, sizeof esc, "\\%c", cp == '\n' ? 'n' : cp == '\r' ? 'r' : 't');
            else if (cp < 0 || cp < 0x80)
                snprintf(esc, sizeof esc, "\\x%02x", *p);
            else
                snprintf(esc, sizeof esc, "\\u%04x", (unsigned)cp);
            add = esc;
            alen = strlen(esc);
        }
        if (kj_grow((void **)&out, &cap, len + alen + 1, 1))
            out_of_memory();
        memcpy(out + len, add, alen);
        len += alen;
        p += l;
    }
    out[len] = 0;
    return out;
}

/* --- writing ---------------------------------------------------------------- */

static void check_stream(kj_out *o)
{
    if (!o->closed && ferror(o->f)) {
        if (errno == EPIPE)
            o->closed = 1;
        else
            o->failed = 1;
    }
}

static void put(kj_out *o, const char *s)
{
    if (!o->closed)
        fputs(s, o->f);
}

static void putf(kj_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(kj_out *o, const char *fmt, ...)
{
    if (o->closed)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(o->f, fmt, ap);
    va_end(ap);
}

static void put_json_string(kj_out *o, const char *s)
{
    if (o->closed)
        return;
    FILE *f = o->f;
    putc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':
            fputs("\\\"", f);
            break;
        case '\\':
            fputs("\\\\", f);
            break;
        case '\n':
            fputs("\\n", f);
            break;
        case '\r':
            fputs("\\r", f);
            break;
        case '\t':
            fputs("\\t", f);
            break;
        default: {
            /* Lossless for programs, harmless on a terminal: C1 and the
             * bidirectional controls are escaped too. */
            int32_t cp;
            size_t l = utf8_char(p, &cp);
            if (cp >= 0 && unsafe(cp)) {
                fprintf(f, "\\u%04x", (unsigned)cp);
                p += l - 1;
            } else {
                putc(*p, f);
            }
        }
        }
    }
    putc('"', f);
}

static void put_csv_cell(kj_out *o, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        put(o, s);
        return;
    }
    put(o, "\"");
    for (const char *p = s; *p; p++) {
        if (*p == '"')
            put(o, "\"\"");
        else
            putf(o, "%c", *p);
    }
    put(o, "\"");
}

/* The text of v in short ("-" for none) or csv ("" for none). */
static char *cell_text(const kj_out *o, const kj_field *f, kj_val v)
{
    char buf[64];
    const char *none = o->fmt == KJ_FMT_SHORT ? "-" : "";
    if (f->flags & KJ_F_TIME) {
        if (!v.n)
            return strdup(none);
        return strdup(kj_format_time(v.n, o->utc, buf, sizeof buf));
    }
    if (f->flags & KJ_F_BOOL) {
        if (o->fmt == KJ_FMT_SHORT)
            return strdup(v.n ? "yes" : "no");
        return strdup(v.n ? "true" : "false");
    }
    if ((f->flags & KJ_F_BYTES) && o->fmt == KJ_FMT_SHORT) {
        static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
        double x = (double)v.n;
        size_t u = 0;
        while (x >= 1024 && u < 4) {
            x /= 1024;
            u++;
        }
        if (u)
            snprintf(buf, sizeof buf, "%.1f %s", x, units[u]);
        else
            snprintf(buf, sizeof buf, "%lld B", (long long)v.n);
        return strdup(buf);
    }
    if (f->flags & (KJ_F_NUM | KJ_F_BYTES)) {
        snprintf(buf, sizeof buf, "%lld", (long long)v.n);
        return strdup(buf);
    }
    return kj_display(v.s && *v.s ? v.s : none);
}

static const char *color_of(const char *value)
{
    static const struct {
        const char *value, *color;
    } colors[] = {
        {"open", "\033[32m"},      {"session_open", "\033[32m"}, {"ok", "\033[32m"},
        {"converged", "\033[32m"}, {"running", "\033[33m"},      {"planned", "\033[33m"},
        {"conflict", "\033[33m"},  {"failed", "\033[31m"},       {"problem", "\033[31m"},
    };
    for (size_t i = 0; i < sizeof colors / sizeof colors[0]; i++)
        if (!strcmp(value, colors[i].value))
            return colors[i].color;
    return NULL;
}

static void put_colored(kj_out *o, const kj_field *f, const char *text)
{
    const char *c = o->color && (f->flags & KJ_F_STATE) ? color_of(text) : NULL;
    if (c)
        putf(o, "%s%s\033[0m", c, text);
    else
        put(o, text);
}

static void put_padded(kj_out *o, const kj_field *f, const char *text, size_t width, int last)
{
    size_t len = strlen(text);
    size_t pad = width > len ? width - len : 0;
    if (f->flags & KJ_F_NUM)
        putf(o, "%*s", (int)pad, "");
    put_colored(o, f, text);
    if (!(f->flags & KJ_F_NUM) && !last)
        putf(o, "%*s", (int)pad, "");
}

/* --- JSON ------------------------------------------------------------------- */

static int is_json(const kj_out *o)
{
    return o->fmt == KJ_FMT_JSON || o->fmt == KJ_FMT_JSON_PRETTY;
}

static int pretty(const kj_out *o)
{
    return o->fmt == KJ_FMT_JSON_PRETTY;
}

/* Indents for the levels below depth; a top-level list adds none (its rows
 * are documents of their own). */
static void indent(kj_out *o, int depth)
{
    if (!pretty(o))
        return;
    int n = 0;
    for (int i = 0; i < depth; i++)
        n += !o->st[i].top;
    putf(o, "\n%*s", n * 2, "");
}

/* Before an item inside the current level: a comma and, pretty, a new line. */
static void json_sep(kj_out *o)
{
    if (!o->depth)
        return;
    level *l = &o->st[o->depth - 1];
    if (l->top)
        return;
    if (l->count++)
        put(o, ",");
    if (pretty(o))
        indent(o, o->depth);
    else if (l->count > 1)
        put(o, " ");
}

static void json_key(kj_out *o, const char *key)
{
    put_json_string(o, key);
    put(o, ": ");
}

static void json_value(kj_out *o, const kj_field *f, kj_val v)
{
    char buf[64];
    if (f->flags & KJ_F_TIME) {
        if (v.n)
            put_json_string(o, kj_format_time(v.n, o->utc, buf, sizeof buf));
        else
            put(o, "null");
    } else if (f->flags & KJ_F_BOOL) {
        put(o, v.n ? "true" : "false");
    } else if (f->flags & (KJ_F_NUM | KJ_F_BYTES)) {
        putf(o, "%lld", (long long)v.n);
    } else if (v.s) {
        put_json_string(o, v.s);
    } else {
        put(o, "null");
    }
}

/* --- short and csv: held objects and tables --------------------------------- */

static void separate_block(kj_out *o)
{
    if (o->blocks++)
        put(o, "\n");
}

static void held_add(held *h, const kj_field *f, char *cell)
{
    if (kj_grow((void **)&h->v, &h->cap, h->n + 1, sizeof *h->v)) {
        free(cell);
        return;
    }
    h->v[h->n++] = (struct held_value){f, cell};
}

/* Prints the object values held so far (short: "title  value" lines; csv:
 * a header and a row). */
static void flush_object(kj_out *o)
{
    held *h = &o->obj;
    if (!h->n)
        return;
    separate_block(o);
    if (o->fmt == KJ_FMT_SHORT) {
        size_t w = 0;
        for (size_t i = 0; i < h->n; i++)
            if (strlen(h->v[i].field->title) > w)
                w = strlen(h->v[i].field->title);
        for (size_t i = 0; i < h->n; i++) {
            putf(o, "%-*s  ", (int)w, h->v[i].field->title);
            put_colored(o, h->v[i].field, h->v[i].cell);
            put(o, "\n");
        }
    } else {
        for (size_t i = 0; i < h->n; i++) {
            put(o, i ? "," : "");
            put_csv_cell(o, h->v[i].field->key);
        }
        put(o, "\n");
        for (size_t i = 0; i < h->n; i++) {
            put(o, i ? "," : "");
            put_csv_cell(o, h->v[i].cell);
        }
        put(o, "\n");
    }
    for (size_t i = 0; i < h->n; i++)
        free(h->v[i].cell);
    h->n = 0;
}

static int shown(const kj_out *o, const kj_field *f)
{
    if (o->fmt == KJ_FMT_SHORT)
        return !(f->flags & KJ_F_NOSHORT);
    return !(f->flags & KJ_F_SHORT);
}

/* Prints the rows short holds, with the header before the first ones. */
static void flush_table(kj_out *o)
{
    level *l = &o->st[o->depth - 1];
    if (!o->rows)
        return;
    size_t last = 0;
    for (size_t i = 0; i < l->n; i++)
        if (shown(o, &l->fields[i]))
            last = i;
    for (size_t r = 0; r < o->rows; r++)
        for (size_t i = 0; i < l->n; i++) {
            size_t len = strlen(o->cells[r * l->n + i]);
            if (len > o->width[i])
                o->width[i] = len;
        }
    if (!o->header_done) {
        o->header_done = 1;
        if (o->color)
            put(o, "\033[1m");
        for (size_t i = 0; i < l->n; i++) {
            if (!shown(o, &l->fields[i]))
                continue;
            kj_field plain = {l->fields[i].key, l->fields[i].title, l->fields[i].flags & KJ_F_NUM};
            put_padded(o, &plain, l->fields[i].title, o->width[i], i == last);
            if (i != last)
                put(o, "  ");
        }
        put(o, o->color ? "\033[0m\n" : "\n");
    }
    for (size_t r = 0; r < o->rows; r++) {
        for (size_t i = 0; i < l->n; i++) {
            char *cell = o->cells[r * l->n + i];
            if (shown(o, &l->fields[i])) {
                put_padded(o, &l->fields[i], cell, o->width[i], i == last);
                if (i != last)
                    put(o, "  ");
            }
            free(cell);
        }
        put(o, "\n");
    }
    o->rows = 0;
}

/* --- rows held back --------------------------------------------------------- */

static rowbuf *rowbuf_new(size_t nfields)
{
    rowbuf *b = calloc(1, sizeof *b);
    if (!b)
        out_of_memory();
    b->nfields = nfields;
    return b;
}

static void rowbuf_push(rowbuf *b, const kj_val *vals)
{
    /* kj_grow counts whole rows (a list has at least one field). */
    if (kj_grow((void **)&b->vals, &b->cap, b->rows + 1,
                (b->nfields ? b->nfields : 1) * sizeof *b->vals))
        out_of_memory();
    kj_val *row = &b->vals[b->rows++ * b->nfields];
    for (size_t i = 0; i < b->nfields; i++) {
        row[i].n = vals[i].n;
        row[i].s = vals[i].s ? strdup(vals[i].s) : NULL;
    }
}

static void rowbuf_free(rowbuf *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->rows * b->nfields; i++)
        free((char *)b->vals[i].s);
    free(b->vals);
    free(b);
}

/* --- the API ---------------------------------------------------------------- */

kj_out *kj_out_new(const kj_cli_common *c)
{
    kj_out *o = calloc(1, sizeof *o);
    if (!o) {
        fprintf(stderr, "kjournal %s: out of memory\n", c->cmd);
        exit(KJ_EXIT_FAILURE);
    }
    o->fmt = c->fmt;
    o->utc = c->utc;
    o->color = c->color && c->fmt == KJ_FMT_SHORT;
    o->f = stdout;
    /* A reader that goes away (| head) ends the output, quietly. */
    signal(SIGPIPE, SIG_IGN);
    return o;
}

int kj_out_free(kj_out *o)
{
    if (!o)
        return KJ_EXIT_OK;
    kj_out_flush(o);
    check_stream(o);
    int rc = o->failed ? KJ_EXIT_FAILURE : KJ_EXIT_OK;
    if (o->failed)
        fprintf(stderr, "kjournal: cannot write the output: %s\n", strerror(errno));
    for (size_t i = 0; i < o->obj.n; i++)
        free(o->obj.v[i].cell);
    free(o->obj.v);
    free(o->cells);
    free(o->width);
    rowbuf_free(o->last);
    free(o);
    return rc;
}

int kj_out_closed(const kj_out *o)
{
    return o->closed || o->failed;
}

void kj_out_flush(kj_out *o)
{
    if (o->fmt == KJ_FMT_SHORT && o->depth && o->st[o->depth - 1].kind == L_LIST)
        flush_table(o);
    if (!o->closed && fflush(o->f) != 0)
        check_stream(o);
}

static level *push(kj_out *o, int kind)
{
    if (o->depth == MAX_DEPTH) {
        fprintf(stderr, "kjournal: output nested too deep\n");
        abort();
    }
    level *l = &o->st[o->depth++];
    memset(l, 0, sizeof *l);
    l->kind = kind;
    return l;
}

void kj_out_begin_object(kj_out *o, const char *name)
{
    if (is_json(o)) {
        json_sep(o);
        if (name && o->depth && o->st[o->depth - 1].kind == L_OBJECT)
            json_key(o, name);
        put(o, "{");
    } else {
        flush_object(o);
    }
    level *l = push(o, L_OBJECT);
    l->name = name;
}

void kj_out_value(kj_out *o, const kj_field *f, kj_val v)
{
    if (!shown(o, f))
        return;
    if (is_json(o)) {
        json_sep(o);
        json_key(o, f->key);
        json_value(o, f, v);
        return;
    }
    held_add(&o->obj, f, cell_text(o, f, v));
}

void kj_out_end_object(kj_out *o)
{
    level *l = &o->st[--o->depth];
    if (is_json(o)) {
        if (l->count)
            indent(o, o->depth);
        put(o, "}");
        if (!o->depth || o->st[o->depth - 1].top)
            put(o, "\n");
        check_stream(o);
        return;
    }
    flush_object(o);
    check_stream(o);
}

void kj_out_begin_list(kj_out *o, const char *name, const char *empty, const kj_field *fields,
                       size_t n)
{
    int json = is_json(o);
    int top = o->depth == 0;
    if (json && !top) {
        json_sep(o);
        json_key(o, name);
        put(o, "[");
    }
    if (!json) {
        flush_object(o);
        separate_block(o);
        if (o->fmt == KJ_FMT_SHORT && !top && name) {
            for (const char *p = name; *p; p++)
                putf(o, "%c", *p == '_' ? ' ' : *p);
            put(o, ":\n");
        }
    }
    level *l = push(o, L_LIST);
    l->top = top;
    l->fields = fields;
    l->n = n;
    l->name = name;
    l->empty = empty;
    if (o->fmt == KJ_FMT_CSV) {
        int first = 1;
        for (size_t i = 0; i < n; i++) {
            if (!shown(o, &fields[i]))
                continue;
            put(o, first ? "" : ",");
            put_csv_cell(o, fields[i].key);
            first = 0;
        }
        put(o, "\n");
    }
    if (o->fmt == KJ_FMT_SHORT) {
        free(o->width);
        free(o->cells);
        o->cells = NULL;
        o->rows_cap = 0;
        o->width = calloc(n ? n : 1, sizeof *o->width);
        for (size_t i = 0; o->width && i < n; i++)
            o->width[i] = strlen(fields[i].title);
        o->rows = 0;
        o->header_done = 0;
        if (!o->width)
            out_of_memory();
    }
}

void kj_out_row(kj_out *o, const kj_val *vals)
{
    if (o->last) {
        rowbuf_push(o->last, vals);
        return;
    }
    level *l = &o->st[o->depth - 1];
    l->rows++;
    if (is_json(o)) {
        kj_out_begin_object(o, NULL);
        for (size_t i = 0; i < l->n; i++)
            kj_out_value(o, &l->fields[i], vals[i]);
        kj_out_end_object(o);
        return;
    }
    if (o->fmt == KJ_FMT_CSV) {
        int first = 1;
        for (size_t i = 0; i < l->n; i++) {
            if (!shown(o, &l->fields[i]))
                continue;
            char *cell = cell_text(o, &l->fields[i], vals[i]);
            put(o, first ? "" : ",");
            put_csv_cell(o, cell ? cell : "");
            free(cell);
            first = 0;
        }
        put(o, "\n");
        check_stream(o);
        return;
    }
    if (kj_grow((void **)&o->cells, &o->rows_cap, o->rows + 1,
                (l->n ? l->n : 1) * sizeof *o->cells))
        out_of_memory();
    for (size_t i = 0; i < l->n; i++) {
        char *cell = cell_text(o, &l->fields[i], vals[i]);
        o->cells[o->rows * l->n + i] = cell ? cell : strdup("");
    }
    if (++o->rows >= KJ_OUT_ALIGN)
        flush_table(o);
    check_stream(o);
}

void kj_out_last(kj_out *o, int64_t limit, int *reverse)
{
    if (!limit || *reverse)
        return;
    o->last = rowbuf_new(o->st[o->depth - 1].n);
    *reverse = 1;
}

void kj_out_release(kj_out *o)
{
    rowbuf *b = o->last;
    if (!b)
        return;
    o->last = NULL;
    for (size_t r = b->rows; r-- > 0 && !kj_out_closed(o);)
        kj_out_row(o, &b->vals[r * b->nfields]);
    rowbuf_free(b);
}

void kj_out_end_list(kj_out *o)
{
    kj_out_release(o);
    level *l = &o->st[o->depth - 1];
    int json = is_json(o);
    if (o->fmt == KJ_FMT_SHORT) {
        flush_table(o);
        if (!l->rows && l->empty)
            putf(o, "%s\n", l->empty);
    }
    o->depth--;
    if (json && !l->top) {
        if (l->count)
            indent(o, o->depth);
        put(o, "]");
    }
    check_stream(o);
}
