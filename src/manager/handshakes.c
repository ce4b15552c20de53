/*
 * manager/handshakes.c - the server's handshakes, each in a short-lived
 * thread of its own (mproc_listener_accept_pending, then
 * mproc_listener_authenticate), at most MGR_HANDSHAKES at once; an
 * authenticated connection is handed to the event loop through
 * s->ready and a byte on s->wake. When every thread is taken the
 * listener is not watched, and the oldest handshake stalled
 * MGR_HS_EVICT seconds is cut for a newcomer.
 */
#include "manager/server_impl.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct hs_job {
    mgr_server *s;
    mproc_conn *c;
    struct hs_job *next;
    pthread_t tid;
} hs_job;

static void *handshake(void *arg)
{
    hs_job *j = arg;
    mgr_server *s = j->s;
    int rc = mproc_listener_authenticate(s->l, j->c, s->hs_timeout);
    pthread_mutex_lock(&s->mu);
    int n = s->handshakes, k = 0;
    while (k < n && s->hs[k].job != j)
        k++;
    if (k < n) { /* no longer in flight: cannot be cut any more */
        if (s->hs[k].fd >= 0)
            close(s->hs[k].fd);
        memmove(&s->hs[k], &s->hs[k + 1],
                (size_t)(n - k - 1) * sizeof s->hs[0]);
    }
    if (rc == 0) {
        if (s->nready == s->capready) {
            size_t cap = s->capready ? s->capready * 2 : 16;
            mproc_conn **p = realloc(s->ready, cap * sizeof(void *));
            if (p) {
                s->ready = p;
                s->capready = cap;
            }
        }
        if (s->nready < s->capready)
            s->ready[s->nready++] = j->c;
        else
            mproc_conn_free(j->c);
    }                  /* else authenticate freed it */
    j->next = s->done; /* joined by the loop (or server_free) */
    s->done = j;
    ssize_t w = write(s->wake[1], "x", 1); /* a result, or a free thread */
    (void)w;
    if (--s->handshakes == 0)
        pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Joins the handshake threads that ended, so that none outlives the
 * server (a thread still exiting when the process ends leaks its
 * thread-local state). */
void mproc__mgr_hs_reap(mgr_server *s)
{
    pthread_mutex_lock(&s->mu);
    hs_job *j = s->done;
    s->done = NULL;
    pthread_mutex_unlock(&s->mu);
    while (j) {
        hs_job *next = j->next;
        pthread_join(j->tid, NULL);
        free(j);
        j = next;
    }
}

/* Makes room for a new handshake when every thread is taken: cuts the
 * oldest one if it has run MGR_HS_EVICT seconds (its thread then ends at
 * once). True if a thread is free now. */
static bool handshake_room(mgr_server *s)
{
    bool room;
    pthread_mutex_lock(&s->mu);
    room = s->handshakes < MGR_HANDSHAKES;
    if (!room) {
        double now = mproc_monotonic();
        if (now - s->hs[0].since >= MGR_HS_EVICT) {
            shutdown(s->hs[0].fd, SHUT_RDWR); /* the socket, not just an fd */
            s->hs[0].since = now + 3600;      /* cut once */
        }
        s->listen_next = s->hs[0].since + MGR_HS_EVICT;
        for (int k = 1; k < s->handshakes; k++)
            if (s->hs[k].since + MGR_HS_EVICT < s->listen_next)
                s->listen_next = s->hs[k].since + MGR_HS_EVICT;
    }
    pthread_mutex_unlock(&s->mu);
    return room;
}

/* Accepts what waits on the listener, a thread for each handshake; when
 * none is free, stops watching the listener until one is. */
void mproc__mgr_hs_accept(mgr_server *s)
{
    for (int k = 0; k < 64; k++) {
        /* Threads that ended are joined first: one that has given back
         * its place may still be exiting, and the cap is on threads. */
        mproc__mgr_hs_reap(s);
        if (!handshake_room(s)) {
            if (!s->listen_off && s->ep >= 0) {
                epoll_ctl(s->ep, EPOLL_CTL_DEL, mproc_listener_fileno(s->l),
                          NULL);
                s->listen_off = true;
            }
            return;
        }
        mproc_conn *c;
        if (mproc_listener_accept_pending(s->l, &c, 0) < 0)
            return;
        hs_job *j = malloc(sizeof *j);
        pthread_attr_t at;
        bool ok = j && pthread_attr_init(&at) == 0;
        if (ok) {
            pthread_attr_setstacksize(&at, 128 * 1024);
            pthread_mutex_lock(&s->mu);
            *j = (hs_job){s, c, NULL, 0};
            /* a second fd on the socket, to cut it by even after the
             * handshake closed its own */
            s->hs[s->handshakes].job = j;
            s->hs[s->handshakes].fd =
                fcntl(mproc_conn_fileno(c), F_DUPFD_CLOEXEC, 0);
            s->hs[s->handshakes].since = mproc_monotonic();
            s->handshakes++;
            if (pthread_create(&j->tid, &at, handshake, j) != 0) {
                s->handshakes--;
                if (s->hs[s->handshakes].fd >= 0)
                    close(s->hs[s->handshakes].fd);
                ok = false;
            }
            pthread_mutex_unlock(&s->mu);
            pthread_attr_destroy(&at);
        }
        if (!ok) {
            free(j);
            mproc_conn_free(c); /* no thread for it: refused */
        }
    }
}

/* Watches the listener again once a handshake thread is free. */
void mproc__mgr_hs_listen_again(mgr_server *s)
{
    if (!s->listen_off)
        return;
    pthread_mutex_lock(&s->mu);
    bool room = s->handshakes < MGR_HANDSHAKES;
    pthread_mutex_unlock(&s->mu);
    if (!room && mproc_monotonic() < s->listen_next)
        return;
    struct epoll_event e = {.events = EPOLLIN, .data.u64 = 0};
    if (epoll_ctl(s->ep, EPOLL_CTL_ADD, mproc_listener_fileno(s->l), &e) == 0)
        s->listen_off = false;
}
