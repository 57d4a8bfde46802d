/* ipc_internal.h - what the ipc files share; not installed (the tests may use it). */
#ifndef KJ_IPC_INTERNAL_H
#define KJ_IPC_INTERNAL_H

#include <stddef.h>

#include "ipc/ipc.h"
#include "journal/kj.h"

/* The server's side of the decoder (wire.c). */
/* The optional "request_id" of the request (NULL when absent). */
const char *kj_wire_request_id(const kj_wire_request *r);
/* Reply JSON for a decoded request whose items all carry a status. The caller
 * frees the string. NULL on out of memory. */
char *kj_wire_reply(const kj_wire_request *r);
/* Reply JSON for a request-level error (request_id may be NULL). retry adds
 * "retry":true: the client should send the same request again later. */
char *kj_wire_error_reply(const kj_wire_error *e, const char *request_id, int retry);

/* A growable string; oom sticks once set. */
typedef struct kj_buf {
    char *s;
    size_t len, cap;
    int oom;
} kj_buf;

int kj_buf_grow(kj_buf *b, size_t more);
void kj_buf_add(kj_buf *b, const char *s, size_t n);
void kj_buf_str(kj_buf *b, const char *s);
void kj_buf_json(kj_buf *b, const char *s);

/* The in-process ZAP handler (auth.c): admits CURVE clients whose public key
 * is one of the *.pub files in dir. Binds inproc://zeromq.zap.01 in ctx. */
typedef struct kj_zap kj_zap;
int kj_zap_start(void *ctx, const char *allow_dir, kj_zap **out, kj_err *err);
void kj_zap_stop(kj_zap *z);

/* kj_ipc_read_key() for a secret key: warns (log) when the file is readable
 * by group or others. */
int kj_ipc_read_secret_key(const char *path, char z85[41], kj_err *err);

/* For an ipc:// endpoint: refuses a socket directory that another user could
 * take over (writable by all, owned by someone else, on a path others may
 * rename or re-point) and abstract names; warns when it is open to others.
 * create: make a missing directory 0700 (the server). */
int kj_ipc_check_endpoint_dir(const char *ep, int create, kj_err *err);

#endif
