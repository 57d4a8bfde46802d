/*
 * Label and field selectors, parsed the way k8s.io/apimachinery parses them
 * (labels.Parse, fields.ParseSelector) so that malformed selectors get the same
 * 400 messages as from a real apiserver.
 */
#include "sim.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { OP_EXISTS, OP_NOT_EXISTS, OP_EQ, OP_NE, OP_IN, OP_NOTIN, OP_GT, OP_LT } label_op;

typedef struct {
    char *key;
    label_op op;
    char **values;
    int nvalues;
} requirement;

struct ks_labelsel {
    requirement *reqs;
    int n;
};

typedef enum {
    T_ID,
    T_EOS,
    T_NOTEXIST, /* ! */
    T_EQ,       /* = */
    T_DEQ,      /* == */
    T_NEQ,      /* != */
    T_IN,
    T_NOTIN,
    T_OPEN,
    T_CLOSE,
    T_COMMA,
    T_GT,
    T_LT,
} tok_type;

typedef struct {
    tok_type t;
    char *lit;
} token;

typedef struct {
    token *toks;
    int n, pos;
} lexer;

static int is_special(char c)
{
    return c == '=' || c == '!' || c == '(' || c == ')' || c == ',' || c == '>' || c == '<';
}

static void lex(const char *s, lexer *lx)
{
    int cap = 8;
    lx->toks = ks_xmalloc(sizeof(token) * (size_t)cap);
    lx->n = 0;
    for (;;) {
        while (*s && isspace((unsigned char)*s))
            s++;
        if (lx->n + 1 >= cap) {
            cap *= 2;
            lx->toks = ks_xrealloc(lx->toks, sizeof(token) * (size_t)cap);
        }
        token *t = &lx->toks[lx->n++];
        if (!*s) {
            t->t = T_EOS;
            t->lit = ks_xstrdup("");
            break;
        }
        if (is_special(*s)) {
            size_t len = 1;
            if ((s[0] == '!' || s[0] == '=') && s[1] == '=')
                len = 2;
            t->lit = ks_xstrndup(s, len);
            if (len == 2)
                t->t = s[0] == '!' ? T_NEQ : T_DEQ;
            else if (*s == '!')
                t->t = T_NOTEXIST;
            else if (*s == '=')
                t->t = T_EQ;
            else if (*s == '(')
                t->t = T_OPEN;
            else if (*s == ')')
                t->t = T_CLOSE;
            else if (*s == ',')
                t->t = T_COMMA;
            else if (*s == '>')
                t->t = T_GT;
            else
                t->t = T_LT;
            s += len;
            continue;
        }
        const char *b = s;
        while (*s && !isspace((unsigned char)*s) && !is_special(*s))
            s++;
        t->lit = ks_xstrndup(b, (size_t)(s - b));
        if (!strcmp(t->lit, "in"))
            t->t = T_IN;
        else if (!strcmp(t->lit, "notin"))
            t->t = T_NOTIN;
        else
            t->t = T_ID;
    }
}

/* in a "values" context, in and notin are plain identifiers */
static tok_type peek(lexer *lx, int values)
{
    tok_type t = lx->toks[lx->pos].t;
    if (values && (t == T_IN || t == T_NOTIN))
        return T_ID;
    return t;
}

static token *consume(lexer *lx)
{
    token *t = &lx->toks[lx->pos];
    if (t->t != T_EOS)
        lx->pos++;
    return t;
}

static int errf(char **err, const char *fmt, const char *a)
{
    char msg[512];
    snprintf(msg, sizeof msg, fmt, a);
    free(*err);
    *err = ks_xstrdup(msg);
    return -1;
}

static int valid_name_part(const char *s, size_t n)
{
    if (n == 0 || n > 63 || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
            return 0;
    return 1;
}

static int validate_key(const char *k, char **err)
{
    const char *slash = strchr(k, '/');
    const char *name = slash ? slash + 1 : k;
    if (slash && (slash == k || slash - k > 253))
        return errf(
            err,
            "invalid label key \"%s\": prefix part must be non-empty and at most 253 characters",
            k);
    if (!valid_name_part(name, strlen(name)))
        return errf(err,
                    "invalid label key \"%s\": name part must consist of alphanumeric characters, "
                    "'-', '_' or '.', and must start and end with an alphanumeric character "
                    "(e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
                    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
                    k);
    return 0;
}

static void add_value(requirement *r, const char *v)
{
    for (int i = 0; i < r->nvalues; i++)
        if (!strcmp(r->values[i], v))
            return;
    r->values = ks_xrealloc(r->values, sizeof(char *) * (size_t)(r->nvalues + 1));
    r->values[r->nvalues++] = ks_xstrdup(v);
}

static int parse_values(lexer *lx, requirement *r, char **err)
{
    token *t = consume(lx);
    if (t->t != T_OPEN)
        return errf(err, "found '%s' expected: '('", t->lit);
    tok_type nt = peek(lx, 1);
    if (nt == T_CLOSE) {
        consume(lx);
        add_value(r, "");
        return 0;
    }
    if (nt != T_ID && nt != T_COMMA)
        return errf(err, "found '%s', expected: ',', ')' or identifier", lx->toks[lx->pos].lit);
    for (;;) {
        t = consume(lx);
        tok_type tt = (t->t == T_IN || t->t == T_NOTIN) ? T_ID : t->t;
        if (tt == T_ID) {
            add_value(r, t->lit);
            tok_type n2 = peek(lx, 1);
            if (n2 == T_COMMA)
                continue;
            if (n2 == T_CLOSE)
                break;
            return errf(err, "found '%s', expected: ',' or ')'", lx->toks[lx->pos].lit);
        } else if (tt == T_COMMA) {
            if (r->nvalues == 0)
                add_value(r, "");
            tok_type n2 = peek(lx, 1);
            if (n2 == T_CLOSE) {
                add_value(r, "");
                break;
            }
            if (n2 == T_COMMA) {
                consume(lx);
                add_value(r, "");
            }
        } else {
            return errf(err, "found '%s', expected: ',', or identifier", t->lit);
        }
    }
    t = consume(lx);
    if (t->t != T_CLOSE)
        return errf(err, "found '%s', expected: ')'", t->lit);
    return 0;
}

static int parse_requirement(lexer *lx, requirement *r, char **err)
{
    token *t = consume(lx);
    int not_exists = 0;
    if (t->t == T_NOTEXIST) {
        not_exists = 1;
        t = consume(lx);
    }
    if (t->t != T_ID && t->t != T_IN && t->t != T_NOTIN)
        return errf(err, "found '%s', expected: identifier", t->lit);
    if (validate_key(t->lit, err))
        return -1;
    r->key = ks_xstrdup(t->lit);
    tok_type nt = peek(lx, 1);
    if (nt == T_EOS || nt == T_COMMA) {
        r->op = not_exists ? OP_NOT_EXISTS : OP_EXISTS;
        return 0;
    }
    if (not_exists)
        return errf(err, "found '%s', expected: ',' or 'end of string'", lx->toks[lx->pos].lit);
    t = consume(lx);
    switch (t->t) {
    case T_IN:
        r->op = OP_IN;
        return parse_values(lx, r, err);
    case T_NOTIN:
        r->op = OP_NOTIN;
        return parse_values(lx, r, err);
    case T_EQ:
    case T_DEQ:
        r->op = OP_EQ;
        break;
    case T_NEQ:
        r->op = OP_NE;
        break;
    case T_GT:
        r->op = OP_GT;
        break;
    case T_LT:
        r->op = OP_LT;
        break;
    default:
        return errf(err, "found '%s', expected: in, notin, =, ==, !=, gt, lt", t->lit);
    }
    nt = peek(lx, 1);
    if (nt == T_EOS || nt == T_COMMA) {
        add_value(r, "");
    } else {
        t = consume(lx);
        if (t->t != T_ID && t->t != T_IN && t->t != T_NOTIN)
            return errf(err, "found '%s', expected: identifier", t->lit);
        add_value(r, t->lit);
    }
    if (r->op == OP_GT || r->op == OP_LT) {
        char *end;
        strtoll(r->values[0], &end, 10);
        if (!*r->values[0] || *end)
            return errf(err, "for 'Gt', 'Lt' operators, the value must be an integer", "");
    }
    return 0;
}

void ks_labelsel_free(ks_labelsel *sel)
{
    if (!sel)
        return;
    for (int i = 0; i < sel->n; i++) {
        free(sel->reqs[i].key);
        for (int k = 0; k < sel->reqs[i].nvalues; k++)
            free(sel->reqs[i].values[k]);
        free(sel->reqs[i].values);
    }
    free(sel->reqs);
    free(sel);
}

int ks_labelsel_parse(const char *s, ks_labelsel **out, char **err)
{
    int rc = 0;
    lexer lx = {0};
    ks_labelsel *sel = calloc(1, sizeof *sel);
    if (!sel)
        abort();
    *out = NULL;
    if (!s)
        s = "";
    lex(s, &lx);
    for (;;) {
        tok_type t = peek(&lx, 1);
        if (t == T_EOS)
            break;
        if (t != T_ID && t != T_NOTEXIST) {
            rc = errf(err, "found '%s', expected: !, identifier, or 'end of string'",
                      lx.toks[lx.pos].lit);
            goto out;
        }
        sel->reqs = ks_xrealloc(sel->reqs, sizeof(requirement) * (size_t)(sel->n + 1));
        requirement *r = &sel->reqs[sel->n++];
        memset(r, 0, sizeof *r);
        if (parse_requirement(&lx, r, err)) {
            char *inner = *err;
            *err = NULL;
            errf(err, "unable to parse requirement: %s", inner);
            free(inner);
            rc = -1;
            goto out;
        }
        token *tk = consume(&lx);
        if (tk->t == T_EOS)
            break;
        if (tk->t != T_COMMA) {
            rc = errf(err, "found '%s', expected: ',' or 'end of string'", tk->lit);
            goto out;
        }
        tok_type t2 = peek(&lx, 1);
        if (t2 != T_ID && t2 != T_NOTEXIST) {
            rc = errf(err, "found '%s', expected: identifier after ','", lx.toks[lx.pos].lit);
            goto out;
        }
    }
out:
    for (int i = 0; i < lx.n; i++)
        free(lx.toks[i].lit);
    free(lx.toks);
    if (rc)
        ks_labelsel_free(sel);
    else
        *out = sel;
    return rc;
}

static const char *label_get(const ks_labels *l, const char *key)
{
    const char *p = l->packed;
    for (int i = 0; i < l->n; i++) {
        const char *v = p + strlen(p) + 1;
        if (!strcmp(p, key))
            return v;
        p = v + strlen(v) + 1;
    }
    return NULL;
}

int ks_labelsel_match(const ks_labelsel *sel, const ks_labels *labels)
{
    if (!sel)
        return 1;
    for (int i = 0; i < sel->n; i++) {
        const requirement *r = &sel->reqs[i];
        const char *v = label_get(labels, r->key);
        int in = 0;
        switch (r->op) {
        case OP_EXISTS:
            if (!v)
                return 0;
            break;
        case OP_NOT_EXISTS:
            if (v)
                return 0;
            break;
        case OP_EQ:
        case OP_IN:
            if (!v)
                return 0;
            for (int k = 0; k < r->nvalues; k++)
                in |= !strcmp(r->values[k], v);
            if (!in)
                return 0;
            break;
        case OP_NE:
        case OP_NOTIN:
            if (!v)
                break;
            for (int k = 0; k < r->nvalues; k++)
                in |= !strcmp(r->values[k], v);
            if (in)
                return 0;
            break;
        case OP_GT:
        case OP_LT: {
            if (!v)
                return 0;
            char *end;
            long long x = strtoll(v, &end, 10), y = strtoll(r->values[0], NULL, 10);
            if (!*v || *end)
                return 0;
            if (r->op == OP_GT ? !(x > y) : !(x < y))
                return 0;
            break;
        }
        }
    }
    return 1;
}

/* ---- field selectors ---- */

typedef struct {
    char *field;
    char *value;
    int neg;
} field_term;

struct ks_fieldsel {
    field_term *terms;
    int n;
};

void ks_fieldsel_free(ks_fieldsel *sel)
{
    if (!sel)
        return;
    for (int i = 0; i < sel->n; i++) {
        free(sel->terms[i].field);
        free(sel->terms[i].value);
    }
    free(sel->terms);
    free(sel);
}

int ks_fieldsel_empty(const ks_fieldsel *sel)
{
    return !sel || sel->n == 0;
}

/* fields.ParseSelector: terms split on unescaped ',', operators != == = */
int ks_fieldsel_parse(const char *s, const char *const *supported, ks_fieldsel **out, char **err)
{
    int rc = 0;
    ks_fieldsel *sel = calloc(1, sizeof *sel);
    if (!sel)
        abort();
    *out = NULL;
    const char *p = s ? s : "";
    while (*p) {
        ks_buf term = {0};
        while (*p && *p != ',') {
            if (*p == '\\' && p[1]) {
                ks_buf_add(&term, p, 2);
                p += 2;
                continue;
            }
            ks_buf_add(&term, p, 1);
            p++;
        }
        if (*p == ',')
            p++;
        char *t = ks_buf_take(&term);
        if (!*t) {
            free(t);
            continue;
        }
        const char *op = NULL;
        size_t oplen = 0;
        int neg = 0;
        char *q;
        if ((q = strstr(t, "!="))) {
            op = q, oplen = 2, neg = 1;
        } else if ((q = strstr(t, "=="))) {
            op = q, oplen = 2;
        } else if ((q = strchr(t, '='))) {
            op = q, oplen = 1;
        }
        if (!op) {
            char msg[512];
            snprintf(msg, sizeof msg, "invalid selector: '%s'; can't understand '%s'", s, t);
            *err = ks_xstrdup(msg);
            free(t);
            rc = -1;
            goto out;
        }
        char *field = ks_xstrndup(t, (size_t)(op - t));
        /* unescape the value: \, \= \\ */
        ks_buf val = {0};
        for (const char *v = op + oplen; *v; v++) {
            if (*v == '\\' && v[1])
                v++;
            ks_buf_add(&val, v, 1);
        }
        free(t);
        int ok = 0;
        for (int k = 0; supported[k]; k++)
            ok |= !strcmp(supported[k], field);
        if (!ok) {
            char msg[512];
            snprintf(msg, sizeof msg, "field label not supported: %s", field);
            *err = ks_xstrdup(msg);
            free(field);
            ks_buf_free(&val);
            rc = -1;
            goto out;
        }
        sel->terms = ks_xrealloc(sel->terms, sizeof(field_term) * (size_t)(sel->n + 1));
        sel->terms[sel->n].field = field;
        sel->terms[sel->n].value = ks_buf_take(&val);
        sel->terms[sel->n].neg = neg;
        sel->n++;
    }
out:
    if (rc)
        ks_fieldsel_free(sel);
    else
        *out = sel;
    return rc;
}

int ks_fieldsel_match(const ks_fieldsel *sel,
                      const char *(*get)(const void *obj, const char *field), const void *obj)
{
    if (!sel)
        return 1;
    for (int i = 0; i < sel->n; i++) {
        const char *v = get(obj, sel->terms[i].field);
        int eq = !strcmp(v ? v : "", sel->terms[i].value);
        if (eq == sel->terms[i].neg)
            return 0;
    }
    return 1;
}
