/*
 * manager/server.c - the manager's server: its table of objects and one
 * event loop (epoll) over the listener and every client connection,
 * speaking CPython's manager protocol. Handshakes run in short-lived
 * threads (mproc_listener_accept_pending + mproc_listener_authenticate),
 * at most MGR_HANDSHAKES at once, each handing its authenticated
 * connection back to the loop; a client that stalls in its handshake holds
 * only its own thread, and when every thread is taken the oldest stalled
 * handshake is cut for a newcomer. After the handshake the loop owns the
 * socket, non-blocking: it reads whatever a client sent (several requests
 * at once), answers each into the client's output buffer and writes that
 * buffer with one send when the socket takes it, so a client that stops
 * reading holds nothing but its buffer, and is dropped when its unread
 * replies pass max_output. A client that stalls mid-request holds nothing
 * (a partial message waits in its buffer). A connection answers one
 * top-level request and is closed, unless that request is
 * accept_connection: it then carries method calls until EOF.
 *
 * Around it: requests.c (how a request is answered: top-level requests,
 * method calls, the reply frames), table.c (the objects by ident),
 * handshakes.c (the handshake threads), lifetimes.c (client processes,
 * their references, stored proxies that keep objects alive); their shared
 * state is server_impl.h.
 */
#include "manager/server_impl.h"
#include "obj/obj_impl.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

unsigned long mproc__mgr_caller(const mgr_server *s)
{
    return s->caller;
}

pid_t mproc__mgr_client_pid(const mgr_server *s, unsigned long serial)
{
    for (size_t i = 0; i < s->nclients; i++)
        if (s->clients[i]->serial == serial)
            return s->clients[i]->pid;
    return 0;
}

static void wait_free(mgr_wait *w)
{
    free(w->name);
    mproc_obj_unref(w->args);
    mproc_obj_unref(w->kwds);
    free(w);
}

client *mproc__mgr_client_of(mgr_server *s, unsigned long serial)
{
    for (size_t i = 0; i < s->nclients; i++)
        if (s->clients[i]->serial == serial)
            return s->clients[i];
    return NULL;
}

static void drop_client(mgr_server *s, client *cl);
static void answer_closer(mgr_server *s);

/* Puts cl on the round's list: its output is written, and its input
 * served again if it was parked, before the loop waits again. */
static void enqueue(mgr_server *s, client *cl)
{
    if (!cl->queued && !cl->dead) {
        cl->queued = true;
        cl->next = s->round;
        s->round = cl;
    }
}

/* Answers a waiting call with r and lets its client go on. */
static void wait_answer(mgr_server *s, mgr_wait *w, mgr_reply *r)
{
    client *cl = mproc__mgr_client_of(s, w->client);
    if (cl) {
        cl->parked = false;
        cl->resume = true;
        mproc__mgr_pin_reply(s, cl, r);
        if (mproc__mgr_queue_result(s, cl, r) < 0)
            drop_client(s, cl);
        else
            enqueue(s, cl);
    } else {
        mproc_obj_unref(r->value);
    }
}

void mproc__mgr_drop_obj(mgr_server *s, mgr_obj *o)
{
    for (mgr_wait **wp = &s->waits; *wp;) { /* calls waiting on it end */
        mgr_wait *w = *wp;
        if (w->o != o) {
            wp = &w->next;
            continue;
        }
        *wp = w->next;
        mgr_reply r = {MGR_TRACEBACK,
                       mproc__mgr_traceback("KeyError: the object is "
                                            "gone"),
                       NULL, 0};
        wait_answer(s, w, &r);
        wait_free(w);
    }
    mproc__mgr_table_remove(s, o);
    mproc__mgr_free_obj(s, o);
}

/* ---- connections ------------------------------------------------------------
 */

/* The epoll events cl wants: its requests (none while its call waits or
 * once it is answered and closing: then only its hang-up), and room to
 * write while replies wait. */
static void set_events(mgr_server *s, client *cl)
{
    unsigned ev = EPOLLRDHUP;
    if (!cl->parked && !cl->closing)
        ev |= EPOLLIN;
    if (cl->out.len > cl->out_pos)
        ev |= EPOLLOUT;
    if (ev == cl->ev || s->ep < 0 || cl->dead)
        return;
    struct epoll_event e = {.events = ev, .data.ptr = cl};
    if (epoll_ctl(s->ep, EPOLL_CTL_MOD, cl->fd, &e) == 0)
        cl->ev = ev;
}

/* Takes cl out of the epoll set and of the table of clients; marked dead,
 * so that nothing of the loop's serves it any more. */
static void untable(mgr_server *s, client *cl)
{
    if (s->ep >= 0)
        epoll_ctl(s->ep, EPOLL_CTL_DEL, cl->fd, NULL);
    cl->dead = true;
    client *last = s->clients[--s->nclients];
    s->clients[cl->idx] = last;
    last->idx = cl->idx;
}

/* Takes cl out of the loop at once (its waiting call ends, what it held is
 * given back); the struct itself goes at the end of the round. */
static void drop_client(mgr_server *s, client *cl)
{
    if (cl->dead)
        return;
    unsigned long serial = cl->serial;
    mgr_peer *p = mproc__mgr_peer_of(s, cl->pid);
    if (p) {
        p->conns--;
        struct pollfd pf = {p->fd, POLLIN, 0};
        if (poll(&pf, 1, 0) == 1) { /* its process is gone */
            p->dead = true;
            s->peers_due = true;
        } else if (p->conns == 0) { /* an exiting process's sockets
                                       close before its pidfd tells */
            p->soon = true;
            if (!s->soon_at)
                s->soon_at = mproc_monotonic() + 0.02;
        }
    }
    untable(s, cl);
    mproc_conn_free(cl->c);
    cl->c = NULL;
    if (!cl->queued) { /* else the round's list frees it */
        cl->next = s->dead;
        s->dead = cl;
    }
    for (mgr_wait **wp = &s->waits; *wp;) { /* its waiting call ends */
        mgr_wait *w = *wp;
        if (w->client == serial) {
            *wp = w->next;
            wait_free(w);
        } else {
            wp = &w->next;
        }
    }
    if (cl->blocking) /* what it held is free */
        for (size_t b = 0; b < s->nbuckets; b++)
            for (mgr_obj *o = s->buckets[b]; o; o = o->next)
                if (o->type->drop_client)
                    o->type->drop_client(o, serial);
    if (cl->pin) { /* what its last reply kept: swept at the round's end */
        mproc_obj_unref(cl->pin);
        cl->pin = NULL;
        s->sweep_due = s->nkept > 0;
    }
}

static void client_free(client *cl)
{
    free(cl->in);
    mproc__buf_free(&cl->out);
    free(cl);
}

static void free_dead(mgr_server *s)
{
    while (s->dead) {
        client *cl = s->dead;
        s->dead = cl->next;
        client_free(cl);
    }
}

/* cl asked for shutdown: out of the loop, kept (with its connection) in
 * s->closer to be answered once everything is gone (answer_closer). */
static void detach_closer(mgr_server *s, client *cl)
{
    untable(s, cl);
    if (cl->queued) { /* off the round's list: the loop frees it no more */
        client **pp = &s->round;
        while (*pp && *pp != cl)
            pp = &(*pp)->next;
        if (*pp)
            *pp = cl->next;
        cl->queued = false;
    }
    answer_closer(s); /* an earlier one (none: serving stops at once) */
    s->closer = cl;
}

static int wake_waiters(mgr_server *s)
{
    bool progress = true;
    double now = mproc_monotonic(), next = -1;
    while (progress) {
        progress = false;
        next = -1;
        for (mgr_wait **wp = &s->waits; *wp;) {
            mgr_wait *w = *wp;
            mgr_reply r = {MGR_RETURN, NULL, NULL, 0};
            s->caller = w->client;
            int rc = w->o->type->call(s, w->o, w->name, w->args, w->kwds, &r);
            if (rc == 0 && r.kind == MGR_PARK && w->deadline >= 0 &&
                w->deadline <= now) {
                rc = w->o->type->expire(w->o, w->name, &r);
                if (rc == 0 && r.kind == MGR_PARK) /* waits on, untimed */
                    w->deadline = r.deadline;
            }
            if (rc == 0 && r.kind == MGR_PARK) {
                if (w->deadline >= 0 && (next < 0 || w->deadline < next))
                    next = w->deadline;
                wp = &w->next;
                continue;
            }
            if (rc < 0 && !r.value) {
                r.kind = MGR_TRACEBACK;
                r.value = mproc__mgr_traceback("MemoryError");
            }
            *wp = w->next;
            wait_answer(s, w, &r);
            wait_free(w);
            progress = true;
        }
    }
    if (next < 0)
        return -1;
    double ms = (next - now) * 1000 + 1;
    return ms > 60000 ? 60000 : (int)ms;
}

static int add_client(mgr_server *s, mproc_conn *c)
{
    client *cl = calloc(1, sizeof *cl);
    if (s->nclients == s->capclients && cl) {
        size_t cap = s->capclients ? s->capclients * 2 : 64;
        client **p = realloc(s->clients, cap * sizeof(client *));
        if (p) {
            s->clients = p;
            s->capclients = cap;
        }
    }
    int fd = mproc_conn_fileno(c);
    int fl = fd >= 0 ? fcntl(fd, F_GETFL) : -1;
    if (!cl || s->nclients == s->capclients || fl < 0 ||
        fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        free(cl);
        mproc_conn_free(c);
        return -ENOMEM;
    }
    cl->c = c;
    cl->fd = fd;
    cl->proto = mproc_conn_pickle_protocol(c);
    cl->serial = ++s->serials;
    cl->pid = mproc__mgr_peer_watch(s, fd);
    cl->ev = EPOLLIN | EPOLLRDHUP;
    struct epoll_event e = {.events = cl->ev, .data.ptr = cl};
    if (s->ep >= 0 && epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &e) < 0) {
        free(cl);
        mproc_conn_free(c);
        return -ENOMEM;
    }
    cl->idx = s->nclients;
    s->clients[s->nclients++] = cl;
    return 0;
}

/* Serves one request of cl's. Returns 0 (go on), 1 (answered a top-level
 * request: close once written), 2 (stop the server), -1 (drop it now). */
static int serve_msg(mgr_server *s, client *cl, const void *buf, size_t len)
{
    mproc__mgr_unpin(s, cl); /* it has taken its references (incref) by now */
    mproc_obj *req = NULL;
    char err[200];
    int rc = mproc_pickle_loads(buf, len, NULL, &req, err, sizeof err);
    mgr_reply r = {MGR_RETURN, NULL, NULL, 0};
    s->caller = cl->serial;
    s->cur = cl;
    int verdict = cl->channel ? 0 : 1;
    const char *name = NULL;
    if (rc == 0 && mproc_obj_type_of(req) == MPROC_OBJ_TUPLE &&
        mproc_obj_len(req) == 4)
        name = mproc_obj_str_value(mproc_obj_item(req, 1), NULL);
    const mproc_obj *args = name ? mproc_obj_item(req, 2) : NULL;
    const mproc_obj *kwds = name ? mproc_obj_item(req, 3) : NULL;
    if (rc == -ENOMEM) {
        r.kind = MGR_TRACEBACK;
        r.value = mproc__mgr_traceback("MemoryError");
    } else if (rc < 0) {
        r.kind = MGR_TRACEBACK;
        r.value = mproc__mgr_traceback("UnpicklingError: %s", err);
    } else if (!name || mproc_obj_type_of(args) != MPROC_OBJ_TUPLE ||
               mproc_obj_type_of(kwds) != MPROC_OBJ_DICT) {
        r.kind = MGR_TRACEBACK;
        r.value =
            mproc__mgr_traceback("ValueError: a request is (ident, name, args, "
                                 "kwds)");
    } else if (!cl->channel) {
        rc = mproc__mgr_top_level(s, name, args, kwds, &r);
        if (rc == 1) {
            cl->channel = true;
            verdict = 0;
            r.value = mproc_obj_none();
        } else if (rc == 2) { /* answered once everything is gone */
            detach_closer(s, cl);
            mproc_obj_unref(r.value);
            mproc_obj_unref(req);
            s->cur = NULL;
            return 2;
        }
    } else if (mproc__mgr_method(s, mproc_obj_item(req, 0), name, args, kwds,
                                 &r) < 0) {
        mproc_obj_unref(r.value); /* answered as a MemoryError below */
        r.value = NULL;
        r.proxy = NULL;
    } else if (r.kind == MGR_PARK) {
        mgr_wait *w = calloc(1, sizeof *w);
        if (w && (w->name = strdup(name)) != NULL) {
            *w = (mgr_wait){cl->serial,
                            mproc__mgr_lookup(s, mproc_obj_item(req, 0)),
                            w->name,
                            mproc_obj_ref((mproc_obj *)args),
                            mproc_obj_ref((mproc_obj *)kwds),
                            r.deadline,
                            NULL};
            mgr_wait **tail = &s->waits;
            while (*tail)
                tail = &(*tail)->next;
            *tail = w;
            cl->parked = true;
            mproc_obj_unref(req);
            s->cur = NULL;
            return 0;
        }
        free(w);
        r.kind = MGR_TRACEBACK; /* no memory to wait: a MemoryError */
    }
    s->cur = NULL;
    if (!r.value && !(r.kind == MGR_PROXY && r.proxy)) {
        r.kind = MGR_TRACEBACK; /* out of memory, or a failure unforeseen */
        r.value = mproc__mgr_traceback("MemoryError");
    }
    mproc_obj_unref(req);
    if (mproc__mgr_queue_result(s, cl, &r) < 0)
        return -1;
    return verdict;
}

/* Serves the whole requests in cl's input, in order, until one waits.
 * 0, or -1: cl was dropped. */
static int serve_input(mgr_server *s, client *cl)
{
    int rc = 0;
    while (!cl->parked && !cl->closing && !s->stopping) {
        const unsigned char *p = cl->in + cl->in_pos;
        size_t avail = cl->in_len - cl->in_pos;
        uint64_t len = 0;
        int h = mgr_frame(p, avail, &len);
        if (h == 0)
            break;
        if (h < 0) {
            rc = -1; /* a negative length: not CPython's framing */
            break;
        }
        size_t hdr = (size_t)h;
        if (len > s->max_request) {
            rc = -1; /* over the limit: the connection is closed */
            break;
        }
        if (avail - hdr < len) { /* the rest comes later: make room */
            size_t need = hdr + (size_t)len;
            if (cl->in_pos) {
                memmove(cl->in, p, avail);
                cl->in_pos = 0;
                cl->in_len = avail;
            }
            if (need > cl->in_cap) {
                unsigned char *b = realloc(cl->in, need);
                if (!b) {
                    rc = -1;
                    break;
                }
                cl->in = b;
                cl->in_cap = need;
            }
            break;
        }
        cl->in_pos += hdr + (size_t)len;
        int v = serve_msg(s, cl, p + hdr, (size_t)len);
        if (v < 0) {
            rc = -1;
            break;
        }
        if (v == 1)
            cl->closing = true;
        else if (v == 2)
            s->stopping = true;
    }
    if (rc < 0) {
        drop_client(s, cl);
        return -1;
    }
    if (cl->in_pos == cl->in_len) {
        cl->in_pos = cl->in_len = 0;
        if (cl->in_cap > MGR_KEEP) { /* a big request passed: give it back */
            free(cl->in);
            cl->in = NULL;
            cl->in_cap = 0;
        }
    }
    enqueue(s, cl);
    return 0;
}

/* Reads what cl sent (as much as its buffer holds) and serves it. */
static void read_input(mgr_server *s, client *cl)
{
    if (!cl->in) {
        cl->in = malloc(MGR_IN_START);
        if (!cl->in) {
            drop_client(s, cl);
            return;
        }
        cl->in_cap = MGR_IN_START;
    }
    /* while a read fills the room it had, more may wait: read again (a
     * few times, then the others' turn) */
    for (int round = 0; round < 8 && !cl->dead && !cl->parked && !cl->closing;
         round++) {
        if (cl->in_pos && cl->in_len == cl->in_cap) { /* room at the end */
            memmove(cl->in, cl->in + cl->in_pos, cl->in_len - cl->in_pos);
            cl->in_len -= cl->in_pos;
            cl->in_pos = 0;
        }
        size_t room = cl->in_cap - cl->in_len;
        if (room == 0)
            return;
        ssize_t k;
        do
            k = recv(cl->fd, cl->in + cl->in_len, room, MSG_DONTWAIT);
        while (k < 0 && errno == EINTR);
        if (k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
            drop_client(s, cl); /* EOF or reset: gone */
            return;
        }
        if (k < 0)
            return;
        cl->in_len += (size_t)k;
        if (serve_input(s, cl) < 0 || (size_t)k < room)
            return;
    }
}

/* Sends what cl's output holds, as far as the socket takes it: 0, or -1
 * when the connection failed. */
static int write_out(client *cl)
{
    while (cl->out.len > cl->out_pos) {
        ssize_t k =
            send(cl->fd, cl->out.p + cl->out_pos, cl->out.len - cl->out_pos,
                 MSG_DONTWAIT | MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (k <= 0)
            return -1;
        cl->out_pos += (size_t)k;
    }
    return 0;
}

/* Writes what cl's output holds, as far as the socket takes it. 0, or -1:
 * cl was dropped (gone, or answered and closing). */
static int flush(mgr_server *s, client *cl)
{
    if (write_out(cl) < 0) {
        drop_client(s, cl);
        return -1;
    }
    if (cl->out.len == cl->out_pos) {
        if (cl->out.cap > MGR_KEEP)
            mproc__buf_free(&cl->out);
        cl->out.len = cl->out_pos = 0;
        if (cl->closing) {
            drop_client(s, cl);
            return -1;
        }
    }
    set_events(s, cl);
    return 0;
}

/* Ends a round: serves again the input of clients whose call went through
 * (which may let other calls through), writes every reply, frees what was
 * dropped. Returns the ms until the next waiting call's deadline. */
static int end_round(mgr_server *s)
{
    int wait_ms;
again:
    if (s->sweep_due) { /* a dropped client's last reply let proxies go */
        s->sweep_due = false;
        if (s->nkept)
            mproc__mgr_sweep(s);
    }
    wait_ms = wake_waiters(s);
    while (s->round) {
        client *list = s->round;
        s->round = NULL;
        bool served = false;
        for (client *cl = list, *next; cl; cl = next) {
            next = cl->next;
            cl->queued = false;
            if (cl->dead) {
                client_free(cl);
                continue;
            }
            if (cl->resume) { /* its call went through: serve the rest */
                cl->resume = false;
                serve_input(s, cl); /* back on the list */
                served = true;
                continue;
            }
            flush(s, cl);
        }
        if (served)
            wait_ms = wake_waiters(s);
    }
    if (s->sweep_due)
        goto again;
    free_dead(s);
    return wait_ms;
}

/* The answer to the client that asked for shutdown, once the listener is
 * closed and every object freed: written whole (5 s at most, as the
 * client may not read), then the client closed. */
static void answer_closer(mgr_server *s)
{
    client *cl = s->closer;
    if (!cl)
        return;
    s->closer = NULL;
    mgr_reply r = {MGR_RETURN, mproc_obj_none(), NULL, 0};
    double end = mproc_monotonic() + 5.0;
    if (mproc__mgr_queue_result(s, cl, &r) == 0)
        while (write_out(cl) == 0 && cl->out.len > cl->out_pos) {
            int ms = (int)((end - mproc_monotonic()) * 1000);
            struct pollfd pf = {cl->fd, POLLOUT, 0};
            if (ms <= 0 || poll(&pf, 1, ms) <= 0)
                break;
        }
    mproc_conn_free(cl->c);
    client_free(cl);
}

static void take_ready(mgr_server *s)
{
    char sink[64];
    while (read(s->wake[0], sink, sizeof sink) > 0)
        ;
    pthread_mutex_lock(&s->mu);
    mproc_conn **r = s->ready;
    size_t n = s->nready;
    s->ready = NULL;
    s->nready = s->capready = 0;
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < n; i++)
        add_client(s, r[i]);
    free(r);
    mproc__mgr_hs_reap(s);
    mproc__mgr_hs_listen_again(s);
}

static bool is_tcp(const char *a)
{
    if (!a || !*a || a[0] == '@' || a[0] == '/' || a[0] == '.')
        return false;
    if (strncmp(a, "unix:", 5) == 0)
        return false;
    return strchr(a, ':') != NULL;
}

/* ---- the loop ------------------------------------------------------------ */

static void server_free(mgr_server *s)
{
    s->nested = false; /* everything goes: no more sweeps */
    s->nkept = 0;
    pthread_mutex_lock(&s->mu);
    for (int k = 0; k < s->handshakes; k++) /* cut them all: no waiting */
        shutdown(s->hs[k].fd, SHUT_RDWR);
    while (s->handshakes > 0)
        pthread_cond_wait(&s->idle, &s->mu);
    pthread_mutex_unlock(&s->mu);
    if (s->wake[0] >= 0)
        take_ready(s);
    mproc__mgr_hs_reap(s);
    while (s->waits) {
        mgr_wait *w = s->waits;
        s->waits = w->next;
        wait_free(w);
    }
    while (s->nclients)
        drop_client(s, s->clients[s->nclients - 1]);
    for (client *cl = s->round, *next; cl; cl = next) {
        next = cl->next;
        client_free(cl);
    }
    s->round = NULL;
    free_dead(s);
    free(s->clients);
    for (size_t i = 0; i < s->nbuckets; i++) {
        for (mgr_obj *o = s->buckets[i], *next; o; o = next) {
            next = o->next;
            mproc__mgr_free_obj(s, o);
        }
    }
    free(s->buckets);
    for (size_t k = 0; k < s->npeers; k++)
        close(s->peers[k].fd);
    free(s->peers);
    mproc_listener_free(s->l);
    mproc__mgr_regs_free(s->regs);
    mproc_obj_unref(s->address);
    answer_closer(s);
    mproc_obj_unref(s->key);
    for (int k = 0; k < 4; k++)
        mproc_obj_unref(s->kinds[k]);
    if (s->wake[0] >= 0) {
        close(s->wake[0]);
        close(s->wake[1]);
    }
    if (s->ep >= 0)
        close(s->ep);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->idle);
}

/* What every server starts with; false: no memory. */
static bool server_init(mgr_server *s, size_t max_request, size_t max_output)
{
    s->ep = s->wake[0] = s->wake[1] = -1;
    s->max_request = max_request ? max_request : MPROC_MANAGER_MAX_REQUEST;
    s->max_output = max_output ? max_output : MPROC_MANAGER_MAX_OUTPUT;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->idle, NULL);
    static const char *const kinds[4] = {"#RETURN", "#ERROR", "#TRACEBACK",
                                         "#PROXY"};
    bool ok = true;
    for (int k = 0; k < 4; k++)
        ok &= (s->kinds[k] = mproc_obj_str_c(kinds[k])) != NULL;
    return ok;
}

/* The fds the loop watches besides its clients (epoll data). */
enum { EV_LISTENER, EV_HANDSHAKE, EV_CTL, EV_WAKE, EV_FIXED };

static int watch(int ep, int fd, uint64_t tag)
{
    struct epoll_event e = {.events = EPOLLIN, .data.u64 = tag};
    return fd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) == 0 ? 0 : -errno;
}

int mproc__mgr_run(const mgr_config *cfg,
                   void (*listening)(void *ctx, int rc, const char *address),
                   void *ctx, volatile int *stop, int wake_fd)
{
    mgr_server s = {0};
    bool ok = server_init(&s, cfg->opts.max_request, cfg->opts.max_output);
    mproc_conn_opts co = cfg->opts.conn;
    if (co.backlog <= 0)
        co.backlog = MPROC_MANAGER_BACKLOG;
    s.hs_timeout = co.timeout > 0   ? co.timeout
                   : co.timeout < 0 ? -1
                                    : MPROC_CONN_HANDSHAKE_TIMEOUT;
    int rc = ok ? 0 : -ENOMEM;
    if (rc == 0 && co.auth == MPROC_AUTH_NONE && is_tcp(cfg->address) &&
        !cfg->opts.allow_tcp_without_authkey)
        rc = -EPERM;
    if (rc == 0 && pipe2(s.wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        rc = -errno;
        s.wake[0] = s.wake[1] = -1;
    }
    if (rc == 0 && co.auth == MPROC_AUTH_KEY) {
        s.key = mproc_obj_bytes(co.authkey, co.authkey_len);
    } else if (rc == 0 && co.auth == MPROC_AUTH_PROCESS) {
        unsigned char k[256];
        int kn = mproc_authkey(k, sizeof k);
        if (kn > 0)
            s.key = mproc_obj_bytes(k, (size_t)kn < sizeof k ? (size_t)kn
                                                             : sizeof k);
    }
    if (rc == 0)
        rc = mproc__mgr_regs_new(&s.regs, cfg->opts.types, cfg->opts.ntypes);
    if (rc == 0 && (s.ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
        rc = -errno;
    if (rc == 0)
        rc = mproc_listener_new(&s.l, cfg->address, &co);
    if (rc == 0) {
        s.address = mproc__mgr_token_address(mproc_listener_address(s.l));
        if (!s.address)
            rc = -ENOMEM;
    }
    if (rc == 0)
        rc = watch(s.ep, mproc_listener_fileno(s.l), EV_LISTENER);
    if (rc == 0)
        rc = watch(s.ep, s.wake[0], EV_HANDSHAKE);
    if (rc == 0)
        rc = watch(s.ep, cfg->ctl_fd, EV_CTL);
    if (rc == 0)
        rc = watch(s.ep, wake_fd, EV_WAKE);
    listening(ctx, rc, rc == 0 ? mproc_listener_address(s.l) : NULL);
    if (rc < 0) {
        server_free(&s);
        return rc;
    }
    struct epoll_event evs[256];
    int wait_ms = -1;
    while (!s.stopping && !(stop && __atomic_load_n(stop, __ATOMIC_ACQUIRE))) {
        int ms = wait_ms;
        if (s.listen_off) { /* look at the listener again when one is old */
            int l = (int)((s.listen_next - mproc_monotonic()) * 1000) + 1;
            if (l < 1)
                l = 1;
            ms = ms < 0 || l < ms ? l : ms;
        }
        int n = epoll_wait(s.ep, evs, 256, ms);
        if (n < 0 && errno != EINTR)
            break;
        bool stopped = false, accept = false, handshaken = false;
        for (int i = 0; i < n; i++) {
            uint64_t tag = evs[i].data.u64;
            if (tag < EV_FIXED) {
                stopped |= tag == EV_CTL || tag == EV_WAKE;
                accept |= tag == EV_LISTENER;
                handshaken |= tag == EV_HANDSHAKE;
                continue;
            }
            client *cl = evs[i].data.ptr;
            unsigned ev = evs[i].events;
            if (cl->dead)
                continue;
            if (cl->parked || cl->closing) { /* it hung up, or went away */
                if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                    drop_client(&s, cl);
                else if (ev & EPOLLOUT)
                    flush(&s, cl);
                continue;
            }
            if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                read_input(&s, cl);
            if (!cl->dead && (ev & EPOLLOUT))
                enqueue(&s, cl);
        }
        if (stopped)
            break;
        mproc__mgr_check_peers(&s);
        wait_ms = end_round(&s);
        if (s.peers_due) { /* found dying in this round */
            mproc__mgr_check_peers(&s);
            wait_ms = end_round(&s);
        }
        mproc__mgr_peers_tidy(&s);
        if (s.npeers) { /* to look at the peers again */
            double at =
                s.soon_at && s.soon_at < s.peers_at ? s.soon_at : s.peers_at;
            int pms = (int)((at - mproc_monotonic()) * 1000) + 1;
            pms = pms < 1 ? 1 : pms;
            if (wait_ms < 0 || wait_ms > pms)
                wait_ms = pms;
        }
        if (handshaken)
            take_ready(&s);
        if (accept || s.listen_off)
            mproc__mgr_hs_accept(&s);
        if (s.listen_off)
            mproc__mgr_hs_listen_again(&s);
    }
    for (size_t i = 0; i < s.nclients; i++) /* replies still unwritten */
        if (s.clients[i]->out.len > s.clients[i]->out_pos)
            flush(&s, s.clients[i]);
    mproc_listener_close(s.l); /* no new clients while the rest goes */
    server_free(&s);
    return 0;
}

/* ---- fuzzing ---------------------------------------------------------------
 */

/* Serves the requests in data as one client would send them: chunks of
 * [flags u8][length u16 big-endian][request bytes]; flags bit 0 makes the
 * connection a method channel (as after accept_connection), bit 1 starts
 * a new connection. Objects live across the chunks, named 1, 2, 3, ...
 * so that requests can reach them. Replies are read and dropped. */
int mproc__mgr_fuzz(const uint8_t *data, size_t n)
{
    mgr_server s = {0};
    bool ok = server_init(&s, 1 << 16, 0);
    s.fuzz_ids = 1;
    s.address = mproc_obj_str_c("/fuzz");
    mproc_conn *peer = NULL;
    size_t pos = 0;
    while (ok && s.address && !s.stopping && pos + 3 <= n) {
        unsigned flags = data[pos];
        size_t len = (size_t)data[pos + 1] << 8 | data[pos + 2];
        pos += 3;
        if (len > n - pos)
            len = n - pos;
        if (!peer || (flags & 2) || s.nclients == 0) {
            while (s.nclients)
                drop_client(&s, s.clients[0]);
            end_round(&s);
            mproc_conn_free(peer);
            mproc_conn *mine;
            peer = NULL;
            if (mproc_pipe(&mine, &peer, 1) < 0 || add_client(&s, mine) < 0)
                break;
        }
        client *cl = s.clients[0];
        cl->channel = flags & 1;
        cl->closing = false;
        if (mproc_conn_send_bytes(peer, data + pos, len) < 0)
            break;
        pos += len;
        read_input(&s, cl);
        end_round(&s);
        while (peer && mproc_conn_poll(peer, 0) == 1) {
            void *m;
            size_t ml;
            if (mproc_conn_recv_bytes(peer, &m, &ml, 0, 0) < 0)
                break;
            free(m);
        }
    }
    mproc_conn_free(peer);
    server_free(&s);
    return 0;
}
