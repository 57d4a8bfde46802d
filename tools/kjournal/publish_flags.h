/*
 * publish_flags.h - the options of every command that sends events to
 * kjournald (kjournal publish, kjournal ship): the endpoint, the publisher's
 * window and retries, and CURVE. One table, so both read and --help the same.
 *
 *     const char *endpoint = kj_publish_default_endpoint();
 *     kj_publisher_opts po = kj_publisher_defaults();
 *     kj_opt net[KJ_PUBLISH_FLAGS_N];
 *     kj_publish_flags(net, &endpoint, &po);
 *     const kj_opt opts[] = {KJ_OPTS_INCLUDE(net), ..., {0}};
 */
#ifndef KJ_PUBLISH_FLAGS_H
#define KJ_PUBLISH_FLAGS_H

#include <stdlib.h>

#include "ipc/ipc.h"
#include "tools/common/opts.h"

#define KJ_PUBLISH_STR_(x) #x
#define KJ_PUBLISH_STR(x) KJ_PUBLISH_STR_(x)
#define KJ_PUBLISH_FLAGS_N 8

/* $KJOURNAL_ENDPOINT, else the default endpoint. */
static inline const char *kj_publish_default_endpoint(void)
{
    const char *env = getenv("KJOURNAL_ENDPOINT");
    return env && *env ? env : KJ_IPC_DEFAULT_ENDPOINT;
}

/* Fills t (KJ_PUBLISH_FLAGS_N rows, the last the end) with the options that
 * set *endpoint and *po. */
static inline void kj_publish_flags(kj_opt t[KJ_PUBLISH_FLAGS_N], const char **endpoint,
                                    kj_publisher_opts *po)
{
    const kj_opt rows[KJ_PUBLISH_FLAGS_N] = {
        {"endpoint", 0, KJ_OPT_STRING, endpoint, "E",
         .help =
             "kjournald's endpoint (default $KJOURNAL_ENDPOINT or\n" KJ_IPC_DEFAULT_ENDPOINT ")"},
        {"timeout", 0, KJ_OPT_INT, &po->timeout_ms, "MS", .help = "wait per attempt (default 2500)",
         .min = 1, .max = 3600000},
        {"retries", 0, KJ_OPT_INT, &po->retries, "N",
         .help = "attempts after the first (default 3)", .min = 0, .max = 1000},
        {"window", 0, KJ_OPT_INT, &po->window, "N", .help = "requests in flight (default 16)",
         .min = 1, .max = 10000},
        {"batch", 0, KJ_OPT_SIZE, &po->batch, "N",
         .help = "events per request (default 1, at most " KJ_PUBLISH_STR(KJ_IPC_MAX_EVENTS) ")",
         .min = 1, .max = KJ_IPC_MAX_EVENTS},
        {"curve-server-key", 0, KJ_OPT_STRING, &po->curve_server_key, "FILE",
         .help = "kjournald's public key (enables CURVE)"},
        {"curve-secret-key", 0, KJ_OPT_STRING, &po->curve_secret_key, "FILE",
         .help = "our secret key (from 'kjournal keygen')"},
        {0},
    };
    for (int i = 0; i < KJ_PUBLISH_FLAGS_N; i++)
        t[i] = rows[i];
}

#endif
