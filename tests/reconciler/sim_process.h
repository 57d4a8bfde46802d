/*
 * sim_process.h - what the reconciler tests that run kube-sim as a process
 * share: a free loopback port, whether it listens, and a stop with SIGTERM.
 */
#ifndef KJ_TEST_SIM_PROCESS_H
#define KJ_TEST_SIM_PROCESS_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static inline int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(s, (struct sockaddr *)&a, sizeof(a));
    socklen_t al = sizeof(a);
    getsockname(s, (struct sockaddr *)&a, &al);
    close(s);
    return ntohs(a.sin_port);
}

static inline int port_open(int port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = connect(s, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(s);
    return ok;
}

/* SIGTERM, then reaps; *pid becomes 0. Nothing when *pid is 0. */
static inline void stop_process(pid_t *pid)
{
    if (*pid > 0) {
        kill(*pid, SIGTERM);
        int st;
        waitpid(*pid, &st, 0);
        *pid = 0;
    }
}

#endif
