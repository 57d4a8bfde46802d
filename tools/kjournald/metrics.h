/*
 * metrics.h - kjournald's HTTP endpoint: /healthz, /readyz and /metrics
 * (Prometheus text) on --metrics ADDR:PORT, served by libmicrohttpd on its
 * own thread from kj_ipc_server_stats() snapshots.
 */
#ifndef KJD_METRICS_H
#define KJD_METRICS_H

#include "ipc/ipc.h"

typedef struct kjd_metrics kjd_metrics;

/* addr is "HOST:PORT" ("127.0.0.1:9180", "[::1]:9180", ":9180" for any). */
int kjd_metrics_start(const char *addr, kj_ipc_server *srv, const char *journal_path,
                      kjd_metrics **out, kj_err *err);
void kjd_metrics_stop(kjd_metrics *m);
/* addr parses as for kjd_metrics_start() (nothing is bound): 0 or KJ_EINVAL. */
int kjd_metrics_check_addr(const char *addr, kj_err *err);

#endif
