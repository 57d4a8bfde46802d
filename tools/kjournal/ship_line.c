/*
 * ship_line.c - what kjournal ship sends for one line of Kyuubi's event log.
 *
 * Session lines go as they are (kjournald decodes Kyuubi's form), unless one
 * is too large for a request: then its exception, a Java stack trace that can
 * run to megabytes, is cut down to its message, because a close must never be
 * lost to a stack trace. Server-info lines carry every setting and environment
 * variable of the server, secrets included: only the fields kjournald needs
 * are kept, and nothing of the rest is sent, logged or printed.
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "ship.h"

/* The part of an exception's message kept in a line that was too large. */
#define EXC_MESSAGE_MAX 4096

static const char *const server_info_keys[] = {"serverName", "serverIP", "startTime",
                                               "eventTime",  "state",    "eventType"};

/* The length of s cut to at most max bytes without splitting a UTF-8
 * sequence. */
static size_t utf8_cut(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max)
        return n;
    while (max && ((unsigned char)s[max] & 0xc0) == 0x80)
        max--;
    return max;
}

static int server_info(const cJSON *o, char **out)
{
    cJSON *keep = cJSON_CreateObject();
    if (!keep)
        return KJ_ENOMEM;
    for (size_t i = 0; i < sizeof server_info_keys / sizeof *server_info_keys; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, server_info_keys[i]);
        cJSON *copy = v ? cJSON_Duplicate(v, 1) : NULL;
        if (v && !copy) {
            cJSON_Delete(keep);
            return KJ_ENOMEM;
        }
        if (copy)
            cJSON_AddItemToObject(keep, server_info_keys[i], copy);
    }
    if (!cJSON_GetObjectItemCaseSensitive(keep, "eventType"))
        cJSON_AddStringToObject(keep, "eventType", "kyuubi_server_info");
    *out = cJSON_PrintUnformatted(keep);
    cJSON_Delete(keep);
    return *out ? 0 : KJ_ENOMEM;
}

/* The text of o, cut down until it fits max_request: first as it is, then
 * with the exception cut to its message, then without the session's conf. */
static int cut_down(cJSON *o, size_t max_request, char **out, const char **code)
{
    for (int pass = 0; pass < 3; pass++) {
        if (pass == 1) {
            cJSON *exc = cJSON_GetObjectItemCaseSensitive(o, "exception");
            if (!exc || cJSON_IsNull(exc))
                continue;
            const cJSON *m = cJSON_GetObjectItemCaseSensitive(exc, "message");
            char msg[EXC_MESSAGE_MAX + 1] = "";
            if (cJSON_IsString(m)) {
                size_t n = utf8_cut(m->valuestring, EXC_MESSAGE_MAX);
                memcpy(msg, m->valuestring, n);
                msg[n] = 0;
            }
            cJSON *small = cJSON_CreateObject();
            if (!small || !cJSON_AddStringToObject(small, "message", msg)) {
                cJSON_Delete(small);
                return KJ_ENOMEM;
            }
            cJSON_ReplaceItemInObjectCaseSensitive(o, "exception", small);
        } else if (pass == 2) {
            cJSON_DeleteItemFromObjectCaseSensitive(o, "conf");
        }
        char *text = cJSON_PrintUnformatted(o);
        if (!text)
            return KJ_ENOMEM;
        if (strlen(text) <= max_request) {
            *out = text;
            return KJ_SHIP_SEND_OUT;
        }
        free(text);
    }
    *code = "too_large";
    return KJ_SHIP_SKIP;
}

int kj_ship_line(kj_ship_kind kind, const char *line, size_t len, size_t max_request, char **out,
                 const char **code)
{
    *out = NULL;
    *code = NULL;
    size_t i = 0;
    while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'))
        i++;
    if (i == len)
        return KJ_SHIP_BLANK;
    if (line[i] != '{') {
        *code = "not_json";
        return KJ_SHIP_SKIP;
    }
    /* The common case costs no parse: kjournald checks the line itself. Text
     * that names the server's settings is parsed and filtered wherever it
     * turns up. */
    int secretive = kind == KJ_SHIP_SERVER_INFO || memmem(line, len, "serverConf", 10) ||
                    memmem(line, len, "serverEnv", 9);
    if (!secretive && len <= max_request)
        return KJ_SHIP_SEND_RAW;
    cJSON *o = cJSON_ParseWithLength(line, len);
    int rc;
    if (!o || !cJSON_IsObject(o)) {
        *code = "not_json";
        rc = KJ_SHIP_SKIP;
    } else if (kind == KJ_SHIP_SERVER_INFO) {
        rc = server_info(o, out);
        if (!rc && strlen(*out) > max_request) {
            free(*out);
            *out = NULL;
            *code = "too_large";
            rc = KJ_SHIP_SKIP;
        } else if (!rc) {
            rc = KJ_SHIP_SEND_OUT;
        }
    } else {
        cJSON_DeleteItemFromObjectCaseSensitive(o, "serverConf");
        cJSON_DeleteItemFromObjectCaseSensitive(o, "serverEnv");
        rc = cut_down(o, max_request, out, code);
    }
    cJSON_Delete(o);
    return rc;
}
