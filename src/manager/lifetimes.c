/*
 * manager/lifetimes.c - what keeps a server's objects alive beyond
 * CPython's reference counts: the client processes (watched by pidfd,
 * found through SO_PEERCRED) and the references each holds, so that a
 * dead process's references go; and the proxies stored inside objects
 * (or carried by a client's last reply), which keep what they name alive
 * through a mark and sweep.
 */
#include "manager/server_impl.h"

#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- client processes and the references they hold ---------------------- */

mgr_peer *mproc__mgr_peer_of(mgr_server *s, pid_t pid)
{
    for (size_t i = 0; pid && i < s->npeers; i++)
        if (s->peers[i].pid == pid)
            return &s->peers[i];
    return NULL;
}

/* The process at the other end of a local connection, watched from now
 * on; 0 when unknown (TCP), this process, or it cannot be watched. */
pid_t mproc__mgr_peer_watch(mgr_server *s, int fd)
{
    struct ucred uc;
    socklen_t len = sizeof uc;
    if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0 ||
        uc.pid <= 0 || uc.pid == getpid())
        return 0;
    mgr_peer *p = mproc__mgr_peer_of(s, uc.pid);
    if (!p) {
        if (s->npeers == s->cappeers) {
            size_t cap = s->cappeers ? s->cappeers * 2 : 16;
            mgr_peer *np = realloc(s->peers, cap * sizeof *np);
            if (!np)
                return 0;
            s->peers = np;
            s->cappeers = cap;
        }
        int pfd = (int)syscall(SYS_pidfd_open, uc.pid, 0);
        if (pfd < 0)
            return 0;
        p = &s->peers[s->npeers++];
        *p = (mgr_peer){uc.pid, pfd, 0, 0, false, false};
    }
    p->conns++;
    return uc.pid;
}

/* Process pid's count of references on o changes by d (refs unchanged). */
void mproc__mgr_hold_add(mgr_server *s, mgr_obj *o, pid_t pid, long d)
{
    mgr_peer *p = mproc__mgr_peer_of(s, pid);
    if (!p)
        return;
    size_t i = 0;
    while (i < o->nholds && o->holds[i].pid != pid)
        i++;
    if (i == o->nholds) {
        if (d <= 0)
            return;
        if (o->nholds == o->capholds) {
            size_t cap = o->capholds ? o->capholds * 2 : 2;
            mgr_hold *h = realloc(o->holds, cap * sizeof *h);
            if (!h)
                return; /* untracked: kept until decref */
            o->holds = h;
            o->capholds = cap;
        }
        o->holds[o->nholds++] = (mgr_hold){pid, 0};
        p->holds++;
    }
    o->holds[i].n += d;
    if (o->holds[i].n <= 0) {
        o->holds[i] = o->holds[--o->nholds];
        p->holds--;
    }
}

/* A reference dropped by the caller's process: its own count, else (a
 * reference handed from one process to another) the oldest holder's, so
 * that no death gives back more than the object has. */
void mproc__mgr_hold_drop(mgr_server *s, mgr_obj *o, pid_t pid)
{
    long sum = 0;
    for (size_t i = 0; i < o->nholds; i++) {
        if (o->holds[i].pid == pid) {
            mproc__mgr_hold_add(s, o, pid, -1);
            return;
        }
        sum += o->holds[i].n;
    }
    if (o->nholds && sum > o->refs)
        mproc__mgr_hold_add(s, o, o->holds[0].pid, -1);
}

static void mark(mgr_server *s, mgr_obj *o)
{
    (void)s;
    if (!o->mark)
        o->mark = 1;
}

/* Once proxies are stored in objects, an object with no reference left
 * lives on while a stored proxy names it (from an object that lives) or
 * a client's last reply carried one: frees the others. */
void mproc__mgr_sweep(mgr_server *s)
{
    for (size_t b = 0; b < s->nbuckets; b++)
        for (mgr_obj *o = s->buckets[b]; o; o = o->next)
            o->mark = o->refs > 0;
    for (size_t i = 0; i < s->nclients; i++)
        if (s->clients[i]->pin)
            mproc__mgr_proxies_in(s, s->clients[i]->pin, NULL, mark);
    for (bool more = true; more;) {
        more = false;
        for (size_t b = 0; b < s->nbuckets; b++)
            for (mgr_obj *o = s->buckets[b]; o; o = o->next)
                if (o->mark == 1 && o->nested) {
                    o->mark = 2;
                    mproc__mgr_obj_proxies(s, o, mark);
                    more = true;
                }
    }
    s->nkept = 0;
    for (size_t b = 0; b < s->nbuckets; b++)
        for (mgr_obj *o = s->buckets[b], *next; o; o = next) {
            next = o->next;
            if (!o->mark)
                mproc__mgr_drop_obj(s, o);
            else if (o->refs <= 0)
                s->nkept++;
        }
}

/* o has no reference left: freed, unless a stored proxy names it. */
void mproc__mgr_unreferenced(mgr_server *s, mgr_obj *o)
{
    if (s->nested)
        mproc__mgr_sweep(s);
    else
        mproc__mgr_drop_obj(s, o);
}

/* The caller's reply r carries proxies: they stay until its next request. */
void mproc__mgr_pin_reply(mgr_server *s, client *cl, const mgr_reply *r)
{
    if (!s->nested || !cl || r->kind != MGR_RETURN || !r->value ||
        !mproc__mgr_proxies_in(s, r->value, NULL, NULL))
        return;
    mproc_obj_unref(cl->pin);
    cl->pin = mproc_obj_ref(r->value);
}

void mproc__mgr_unpin(mgr_server *s, client *cl)
{
    if (!cl->pin)
        return;
    mproc_obj_unref(cl->pin);
    cl->pin = NULL;
    if (s->nkept)
        mproc__mgr_sweep(s);
}

/* Process peers[k] died: the references it held go (objects only it
 * referenced are freed), and it is watched no more. */
static void peer_died(mgr_server *s, size_t k)
{
    pid_t pid = s->peers[k].pid;
    for (size_t b = 0; b < s->nbuckets; b++)
        for (mgr_obj *o = s->buckets[b]; o; o = o->next)
            for (size_t i = 0; i < o->nholds; i++)
                if (o->holds[i].pid == pid) {
                    o->refs -= o->holds[i].n;
                    mproc__mgr_hold_add(s, o, pid, -o->holds[i].n);
                    break;
                }
    if (s->nested)
        mproc__mgr_sweep(s);
    for (size_t b = 0; !s->nested && b < s->nbuckets; b++)
        for (mgr_obj *o = s->buckets[b], *next; o; o = next) {
            next = o->next;
            if (o->refs <= 0)
                mproc__mgr_drop_obj(s, o);
        }
    s->peers[k].conns = s->peers[k].holds = 0;
}

/* Handles the processes found dead, looks again at those whose last
 * connection closed a moment ago, and every second at all. */
void mproc__mgr_check_peers(mgr_server *s)
{
    double now = mproc_monotonic();
    bool all = now >= s->peers_at, soon = s->soon_at && now >= s->soon_at;
    if (!s->npeers || (!s->peers_due && !all && !soon))
        return;
    if (all)
        s->peers_at = now + 1.0;
    if (soon || all)
        s->soon_at = 0;
    s->peers_due = false;
    for (size_t k = 0; k < s->npeers; k++) {
        struct pollfd pf = {s->peers[k].fd, POLLIN, 0};
        bool look = all || (soon && s->peers[k].soon);
        if (soon || all)
            s->peers[k].soon = false;
        if (s->peers[k].dead || (look && poll(&pf, 1, 0) == 1))
            peer_died(s, k);
    }
}

/* Stops watching processes with no connection and no reference (and
 * those that died). */
void mproc__mgr_peers_tidy(mgr_server *s)
{
    for (size_t k = s->npeers; k-- > 0;)
        if (s->peers[k].conns <= 0 && s->peers[k].holds <= 0) {
            close(s->peers[k].fd);
            s->peers[k] = s->peers[--s->npeers];
        }
}
