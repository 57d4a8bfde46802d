/* ipc_internal.h - what the ipc files share and nobody else sees. */
#ifndef KJ_IPC_INTERNAL_H
#define KJ_IPC_INTERNAL_H

#include <stddef.h>

#include "journal/kj.h"

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

#endif
