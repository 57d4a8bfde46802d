/* testutil.h - small helpers the journal tests share. */
#ifndef KJ_TEST_JOURNAL_UTIL_H
#define KJ_TEST_JOURNAL_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "journal/journal.h"

#define T0 1764391200000LL /* 2025-11-29T04:40:00Z */

/* A fresh directory under /tmp, removed by rm_tree(). */
static inline char *test_dir(void)
{
    char tmpl[] = "/tmp/kj-journal-test.XXXXXX";
    char *d = mkdtemp(tmpl);
    return d ? strdup(d) : NULL;
}

static inline void rm_tree(char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
    free(dir);
}

static inline char *path_in(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static inline kj_event ev_open(const char *id, const char *session, int64_t t)
{
    kj_event e = {.event_id = id,
                  .type = KJ_EVENT_SESSION_OPEN,
                  .session_id = session,
                  .user = "alice",
                  .instance = "10.0.0.1:10009",
                  .time_ms = t};
    return e;
}

static inline kj_event ev_close(const char *id, const char *session, int64_t t)
{
    kj_event e = {.event_id = id,
                  .type = KJ_EVENT_SESSION_CLOSE,
                  .session_id = session,
                  .time_ms = t,
                  .reason = "client"};
    return e;
}

/* Copies the state of one session (strings not kept). */
typedef struct session_seen {
    int found;
    kj_session_state state;
    int64_t event_count, created_ms, closed_ms;
    char engine_id[64], engine_tag[64], user[64], close_reason[64];
} session_seen;

static inline int copy_session(const kj_session *s, void *ud)
{
    session_seen *o = ud;
    o->found++;
    o->state = s->state;
    o->event_count = s->event_count;
    o->created_ms = s->created_ms;
    o->closed_ms = s->closed_ms;
    snprintf(o->engine_id, sizeof o->engine_id, "%s", s->engine_id ? s->engine_id : "");
    snprintf(o->engine_tag, sizeof o->engine_tag, "%s", s->engine_tag ? s->engine_tag : "");
    snprintf(o->user, sizeof o->user, "%s", s->user ? s->user : "");
    snprintf(o->close_reason, sizeof o->close_reason, "%s", s->close_reason ? s->close_reason : "");
    return 0;
}

#endif
