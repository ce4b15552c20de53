/*
 * mpi/relay.c - rank 0's end of the serving ranks. Each remote slot of
 * the pool is a socketpair whose far end is ours: a sending thread (tx)
 * sleeps in poll on those ends, turns each message the pool's thread sends
 * into one MPI message for the slot's rank (out-of-line items inlined, a
 * records chunk's input records attached, its output place remembered),
 * and a receiving thread (rx) sleeps in MPI_Probe, writes the entries a
 * rank answers with into the slot's ring on the pool's board (as a worker
 * would: big results as memfds, a full ring waited out on its futex),
 * copies a chunk's output records into the shared array, and tells the
 * pool's thread (WM_NOTIFY). A slot ends when its rank reached PM_EXIT
 * (T_EXITED), or when its rank is lost (tx sees its lifeline end, or an
 * MPI send to it fails): its sentinel, an eventfd, becomes readable.
 */
#include "mpi/mpi_impl.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* A shared array of the pool, mapped here; held by the slot's cache (as
 * the worker's, mirrored by the pool) and by chunks waiting for output. */
typedef struct rmap {
    uint64_t id;
    unsigned char *p;
    size_t len;
    int refs;
} rmap;

/* A records chunk sent and not yet answered: where its output goes. */
typedef struct rpend {
    uint64_t seq;
    rmap *m;
    size_t off, len;
} rpend;

typedef struct rslot {
    int rank;
    uint32_t idx; /* its number on that rank */
    int fd;       /* our end of the channel */
    int evfd;     /* the sentinel */
    bool open;    /* tx still reads it */
    pool__slot *board;
    unsigned char *ring;
    uint64_t wpos, rpos;
    rmap *maps[POOL__FDCACHE];
    size_t nmaps, map_next;
    rpend *pend; /* a ring of them, under rl->mu */
    size_t pcap, phead, pn;
    _Atomic int ended; /* 0, 1 after PM_EXIT, 2 lost */
    int code;
    char why[160];
} rslot;

/* A serving rank's state. */
enum { R_LIVE = 0, R_DONE, R_LOST };

struct mpi__relay {
    MPI_Comm comm;
    int size, nslots;
    _Atomic int live; /* servers neither done (T_BYE) nor lost */
    int *life;        /* each rank's lifeline (-1: none) */
    int *rstate;      /* R_*, under mu */
    rslot *s;
    int *first; /* the first slot of each rank */
    mpi__hello *hello;
    pthread_t tx, rx;
    bool tx_started, rx_started;
    int stopfd; /* wakes tx: a new slot, or stopping */
    _Atomic bool stopping;
    pthread_mutex_t mu;
    unsigned char *in;
    mproc__buf out;
};

/* ---- shared arrays ------------------------------------------------------ */

static void rmap_unref(mpi__relay *rl, rmap *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&rl->mu);
    bool last = --m->refs == 0;
    pthread_mutex_unlock(&rl->mu);
    if (last) {
        munmap(m->p, m->len);
        free(m);
    }
}

/* The array id of slot s: fd given (consumed) when the pool sends it anew,
 * as the worker's FIFO cache; NULL when it cannot be had. */
static rmap *buffer(mpi__relay *rl, rslot *s, uint64_t id, int fd)
{
    if (fd < 0) {
        for (size_t i = 0; i < s->nmaps; i++)
            if (s->maps[i] && s->maps[i]->id == id)
                return s->maps[i];
        return NULL;
    }
    struct stat st;
    void *p = MAP_FAILED;
    if (fstat(fd, &st) == 0 && st.st_size > 0)
        p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                 fd, 0);
    close(fd);
    rmap *m = p == MAP_FAILED ? NULL : calloc(1, sizeof *m);
    if (!m) {
        if (p != MAP_FAILED)
            munmap(p, (size_t)st.st_size);
        return NULL;
    }
    *m = (rmap){.id = id, .p = p, .len = (size_t)st.st_size, .refs = 1};
    rmap *old = s->maps[s->map_next];
    s->maps[s->map_next] = m;
    if (s->nmaps < POOL__FDCACHE)
        s->nmaps++;
    s->map_next = (s->map_next + 1) % POOL__FDCACHE;
    rmap_unref(rl, old);
    return m;
}

/* ---- the ring ----------------------------------------------------------- */

static void notify(rslot *s)
{
    pool__hdr h = {.type = WM_NOTIFY};
    (void)mproc__pool_send(s->fd, &h, sizeof h, NULL, 0, false);
}

/* Waits until need bytes of s's ring are free; false when the relay
 * stops or the pool left (the entry is then dropped). */
static bool ring_space(mpi__relay *rl, rslot *s, size_t need)
{
    pool__slot *b = s->board;
    for (;;) {
        uint64_t rpos = atomic_load_explicit(&b->rpos, memory_order_acquire);
        if (rpos <= s->wpos && s->wpos + need - rpos <= POOL__RING) {
            s->rpos = rpos;
            return true;
        }
        if (atomic_load(&rl->stopping) || !s->open)
            return false;
        notify(s);
        uint32_t sq = atomic_load(&b->space);
        atomic_store(&b->waiting, 1);
        rpos = atomic_load(&b->rpos);
        if (rpos <= s->wpos && s->wpos + need - rpos <= POOL__RING) {
            atomic_store(&b->waiting, 0);
            continue;
        }
        struct timespec ts = {0, 100 * 1000 * 1000};
        mproc__futex_wait((uint32_t *)&b->space, sq, &ts);
        atomic_store(&b->waiting, 0);
    }
}

/* Commits one entry of s's ring: status, seq and n bytes (out of line in
 * a memfd when big, as a worker does). */
static void put_entry(mpi__relay *rl, rslot *s, int32_t status, uint64_t seq,
                      const void *p, size_t n)
{
    bool ool = n > POOL__OOL_MIN;
    static const char nomem[] = "result too large: out of memory";
    if (ool) {
        int fd = mproc__memfd_with("mproc-pool-result", p, n);
        pool__hdr h = {.type = WM_OOLFD, .first_seq = seq};
        if (fd < 0 || mproc__pool_send(s->fd, &h, sizeof h, &fd, 1, true) < 0) {
            ool = false;
            status = -ENOMEM;
            p = nomem;
            n = sizeof nomem - 1;
        }
        mproc__close(fd);
    }
    size_t need, waste;
    if (!ring_space(rl, s, pool__entry_room(s->wpos, n, ool, &need, &waste)))
        return;
    pool__entry_put(s->ring, &s->wpos, need, waste, status, seq, p, n, ool);
    atomic_store_explicit(&s->board->done_seq, seq, memory_order_relaxed);
    atomic_store_explicit(&s->board->wpos, s->wpos, memory_order_release);
}

/* The records chunk of s with sequence number seq, taken off its list
 * (false: it is not one). */
static bool take_pend(mpi__relay *rl, rslot *s, uint64_t seq, rpend *out)
{
    bool found = false;
    pthread_mutex_lock(&rl->mu);
    if (s->pn > 0 && s->pend[s->phead].seq == seq) {
        *out = s->pend[s->phead];
        s->phead = (s->phead + 1) % s->pcap;
        s->pn--;
        found = true;
    }
    pthread_mutex_unlock(&rl->mu);
    return found;
}

/* The entries of a T_RES for slot s. */
static void results(mpi__relay *rl, rslot *s, const unsigned char *p, size_t n)
{
    size_t pos = 0;
    while (n - pos >= sizeof(pool__entry)) {
        pool__entry e;
        memcpy(&e, p + pos, sizeof e);
        pos += sizeof e;
        if (pool__pad8(e.len) > n - pos)
            break;
        const unsigned char *d = p + pos;
        pos += pool__pad8(e.len);
        rpend pd;
        if (take_pend(rl, s, e.seq, &pd)) {
            if (e.status == 0) {
                memcpy(pd.m->p + pd.off, d, e.len < pd.len ? e.len : pd.len);
                put_entry(rl, s, 0, e.seq, NULL, 0);
            } else {
                put_entry(rl, s, e.status, e.seq, d, e.len);
            }
            rmap_unref(rl, pd.m);
            continue;
        }
        put_entry(rl, s, e.status, e.seq, d, e.len);
    }
    notify(s);
}

static void end_slot(rslot *s, int how, int code, const char *why)
{
    int was = 0;
    if (!atomic_compare_exchange_strong(&s->ended, &was, how))
        return;
    s->code = code;
    snprintf(s->why, sizeof s->why, "%s", why);
    uint64_t one = 1;
    ssize_t r = write(s->evfd, &one, sizeof one);
    (void)r;
}

/* Rank r is done (T_BYE) or lost: one fewer server to wait for. When it
 * was the last, rx may be asleep in MPI_Probe: a message to ourselves
 * wakes it. Returns false when r had ended already. */
static bool rank_ends(mpi__relay *rl, int r, int how)
{
    pthread_mutex_lock(&rl->mu);
    bool was_live = rl->rstate[r] == R_LIVE;
    if (was_live)
        rl->rstate[r] = how;
    pthread_mutex_unlock(&rl->mu);
    if (was_live && atomic_fetch_sub(&rl->live, 1) == 1 && how == R_LOST)
        MPI_Send(NULL, 0, MPI_BYTE, 0, T_STOP, rl->comm);
    return was_live;
}

/* Rank r is gone: every slot of it ends, lost. */
static void rank_lost(mpi__relay *rl, int r, const char *why)
{
    if (!rank_ends(rl, r, R_LOST))
        return;
    for (int i = rl->first[r]; i < rl->first[r + 1]; i++)
        end_slot(&rl->s[i], 2, MPROC_ERANKLOST, why);
}

/* The receiving thread: until every server said T_BYE or was lost. */
static void *rx_main(void *arg)
{
    mpi__relay *rl = arg;
    unsigned char *buf = NULL;
    size_t cap = 0;
    while (atomic_load(&rl->live) > 0) {
        MPI_Status st;
        int count = 0;
        if (MPI_Probe(MPI_ANY_SOURCE, MPI_ANY_TAG, rl->comm, &st) !=
                MPI_SUCCESS ||
            MPI_Get_count(&st, MPI_BYTE, &count) != MPI_SUCCESS)
            break;
        if ((size_t)count > cap) {
            free(buf);
            cap = (size_t)count;
            buf = malloc(cap);
            if (!buf)
                break;
        }
        if (MPI_Recv(buf, count, MPI_BYTE, st.MPI_SOURCE, st.MPI_TAG, rl->comm,
                     MPI_STATUS_IGNORE) != MPI_SUCCESS)
            break;
        int src = st.MPI_SOURCE;
        if (src <= 0 || src >= rl->size)
            continue; /* (our own wake-up) */
        if (st.MPI_TAG == T_BYE) {
            rank_ends(rl, src, R_DONE);
            continue;
        }
        mpi__pre pre;
        if ((size_t)count < sizeof pre)
            continue;
        memcpy(&pre, buf, sizeof pre);
        int nmine = rl->first[src + 1] - rl->first[src];
        if (pre.slot >= (uint32_t)nmine)
            continue;
        rslot *s = &rl->s[rl->first[src] + (int)pre.slot];
        if (st.MPI_TAG == T_RES && !atomic_load(&rl->stopping))
            results(rl, s, buf + sizeof pre, (size_t)count - sizeof pre);
        else if (st.MPI_TAG == T_EXITED)
            end_slot(s, 1, 0, "");
    }
    free(buf);
    return NULL;
}

/* ---- sending ------------------------------------------------------------ */

static int send_out(mpi__relay *rl, rslot *s)
{
    if (rl->out.oom)
        return -ENOMEM;
    int r = MPI_Send(rl->out.p, (int)rl->out.len, MPI_BYTE, s->rank, T_MSG,
                     rl->comm);
    return r == MPI_SUCCESS ? 0 : -EIO;
}

static void begin_out(mpi__relay *rl, rslot *s, const void *h, size_t n)
{
    mpi__pre pre = {.slot = s->idx};
    rl->out.len = 0;
    rl->out.oom = false;
    mproc__buf_put(&rl->out, &pre, sizeof pre);
    mproc__buf_put(&rl->out, h, n);
}

static void put_padded(mproc__buf *b, const void *p, size_t n)
{
    static const unsigned char zero[8];
    if (n)
        mproc__buf_put(b, p, n);
    mproc__buf_put(b, zero, pool__pad8(n) - n);
}

/* PM_TASKS: items inline (out-of-line ones read from their memfds); the
 * fds of argument lists cannot cross machines: those lists fail to
 * rebuild over there, and their tasks fail. */
static void fwd_tasks(mpi__relay *rl, rslot *s, size_t n, int *fds, size_t nfds)
{
    pool__hdr h;
    memcpy(&h, rl->in, sizeof h);
    size_t pos = sizeof h, fdi = 0;
    h.nfds = 0;
    begin_out(rl, s, &h, sizeof h);
    for (uint32_t i = 0; i < h.count && pos + sizeof(pool__item) <= n; i++) {
        pool__item it;
        memcpy(&it, rl->in + pos, sizeof it);
        pos += sizeof it;
        if (it.len == POOL__OOL_LEN) {
            uint64_t size = 0;
            if (pos + 8 <= n)
                memcpy(&size, rl->in + pos, 8);
            pos += 8;
            int fd = fdi < nfds ? fds[fdi++] : -1;
            void *m = MAP_FAILED;
            if (fd >= 0 && size > 0 && size < UINT32_MAX)
                m = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
            mproc__close(fd);
            it.len = m == MAP_FAILED ? 0 : (uint32_t)size;
            mproc__buf_put(&rl->out, &it, sizeof it);
            put_padded(&rl->out, m == MAP_FAILED ? NULL : m, it.len);
            if (m != MAP_FAILED)
                munmap(m, (size_t)size);
        } else {
            size_t len = it.len;
            if (pool__pad8(len) > n - pos)
                break;
            mproc__buf_put(&rl->out, &it, sizeof it);
            put_padded(&rl->out, rl->in + pos, len);
            pos += pool__pad8(len);
        }
        for (int32_t k = 0; k < it.a && fdi < nfds; k++)
            mproc__close(fds[fdi++]);
    }
    for (; fdi < nfds; fdi++)
        mproc__close(fds[fdi]);
    if (send_out(rl, s) < 0)
        rank_lost(rl, s->rank, "MPI cannot send to it");
}

/* PM_RANGE: the chunk's input records go along; its output place is kept
 * for the answer. */
static void fwd_range(mpi__relay *rl, rslot *s, size_t n, int *fds, size_t nfds)
{
    pool__hdr h;
    pool__range rg;
    size_t fdi = 0;
    memcpy(&h, rl->in, sizeof h);
    if (n < sizeof h + sizeof rg)
        goto out;
    memcpy(&rg, rl->in + sizeof h, sizeof rg);
    rmap *in = NULL, *outm = NULL;
    if (rg.flags & 1)
        in = buffer(rl, s, rg.in_id, fdi < nfds ? fds[fdi] : -1),
        fds[fdi++] = -1;
    else if (rg.in_size)
        in = buffer(rl, s, rg.in_id, -1);
    if (rg.flags & 2 && fdi < nfds)
        outm = buffer(rl, s, rg.out_id, fds[fdi]), fds[fdi++] = -1;
    else
        outm = buffer(rl, s, rg.out_id, -1);
    uint64_t iend = rg.in_off + (rg.start + rg.count) * rg.in_size;
    uint64_t oend = rg.out_off + (rg.start + rg.count) * rg.out_size;
    if ((rg.in_size && (!in || iend > in->len)) || !outm || oend > outm->len) {
        static const char msg[] = "cannot map the shared arrays";
        put_entry(rl, s, MPROC_EPROTO, h.first_seq, msg, sizeof msg - 1);
        notify(s);
        goto out;
    }
    pthread_mutex_lock(&rl->mu);
    bool ok = true;
    if (s->pn == s->pcap) {
        size_t cap = s->pcap ? 2 * s->pcap : 8;
        rpend *v = malloc(cap * sizeof *v);
        ok = v != NULL;
        for (size_t i = 0; ok && i < s->pn; i++)
            v[i] = s->pend[(s->phead + i) % s->pcap];
        if (ok) {
            free(s->pend);
            s->pend = v;
            s->pcap = cap;
            s->phead = 0;
        }
    }
    if (ok) {
        outm->refs++;
        s->pend[(s->phead + s->pn++) % s->pcap] =
            (rpend){.seq = h.first_seq,
                    .m = outm,
                    .off = rg.out_off + rg.start * rg.out_size,
                    .len = rg.count * rg.out_size};
    }
    pthread_mutex_unlock(&rl->mu);
    if (!ok) {
        static const char msg[] = "out of memory";
        put_entry(rl, s, -ENOMEM, h.first_seq, msg, sizeof msg - 1);
        notify(s);
        goto out;
    }
    rg.flags = 0;
    begin_out(rl, s, &h, sizeof h);
    mproc__buf_put(&rl->out, &rg, sizeof rg);
    if (rg.in_size)
        mproc__buf_put(&rl->out, in->p + rg.in_off + rg.start * rg.in_size,
                       rg.count * rg.in_size);
    if (send_out(rl, s) < 0)
        rank_lost(rl, s->rank, "MPI cannot send to it");
out:
    for (size_t i = 0; i < nfds; i++)
        mproc__close(fds[i]);
}

/* One message the pool's thread sent slot s. */
static void forward(mpi__relay *rl, rslot *s, size_t n, int *fds, size_t nfds)
{
    pool__hdr h;
    memcpy(&h, rl->in, sizeof h);
    if (h.type == PM_TASKS) {
        fwd_tasks(rl, s, n, fds, nfds);
        return;
    }
    if (h.type == PM_RANGE) {
        fwd_range(rl, s, n, fds, nfds);
        return;
    }
    for (size_t i = 0; i < nfds; i++)
        mproc__close(fds[i]);
    if (h.type != PM_FNDEF && h.type != PM_EXIT)
        return;
    begin_out(rl, s, rl->in, n);
    if (send_out(rl, s) < 0)
        rank_lost(rl, s->rank, "MPI cannot send to it");
}

/* Reads what slot s has for us, until it would block. */
static void drain(mpi__relay *rl, rslot *s)
{
    for (;;) {
        int fds[POOL__MAX_FDS];
        size_t nfds = POOL__MAX_FDS;
        ssize_t n =
            mproc__pool_recv(s->fd, rl->in, POOL__MSG_MAX, fds, &nfds, false);
        if (n == -EAGAIN)
            return;
        if (n == MPROC_EPROTO)
            continue;
        if (n <= 0) {
            s->open = false; /* the pool let go of the slot */
            return;
        }
        if ((size_t)n < sizeof(pool__hdr) || atomic_load(&s->ended)) {
            for (size_t i = 0; i < nfds; i++)
                close(fds[i]);
            continue;
        }
        forward(rl, s, (size_t)n, fds, nfds);
    }
}

/* Rank r's lifeline woke us: nothing is ever sent on it, so this is its
 * end (or a failed keepalive). */
static void lifeline(mpi__relay *rl, int r)
{
    char c;
    ssize_t n = recv(rl->life[r], &c, 1, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    int err = n < 0 ? errno : 0;
    close(rl->life[r]);
    rl->life[r] = -1;
    /* (A server told to stop ends so too, after its T_BYE: then this
     * changes nothing.) */
    char why[128];
    snprintf(why, sizeof why, "%s",
             err == ETIMEDOUT ? "its node stopped answering (keepalive)"
                              : "its process ended");
    rank_lost(rl, r, why);
}

/* The sending thread: until stopfd is written. */
static void *tx_main(void *arg)
{
    mpi__relay *rl = arg;
    size_t cap = (size_t)rl->nslots + (size_t)rl->size + 1;
    struct pollfd *pf = calloc(cap, sizeof *pf);
    int *who = calloc(cap, sizeof *who); /* slot i, or -1 - rank */
    while (pf && who) {
        nfds_t m = 0;
        pf[m++] = (struct pollfd){.fd = rl->stopfd, .events = POLLIN};
        for (int i = 0; i < rl->nslots; i++)
            if (rl->s[i].open && rl->s[i].fd >= 0) {
                who[m] = i;
                pf[m++] = (struct pollfd){.fd = rl->s[i].fd, .events = POLLIN};
            }
        for (int r = 1; r < rl->size; r++)
            if (rl->life[r] >= 0) {
                who[m] = -1 - r;
                pf[m++] = (struct pollfd){.fd = rl->life[r], .events = POLLIN};
            }
        if (poll(pf, m, -1) < 0 && errno != EINTR)
            break;
        if (pf[0].revents) {
            uint64_t v;
            ssize_t r = read(rl->stopfd, &v, sizeof v);
            (void)r;
            if (atomic_load(&rl->stopping))
                break;
        }
        for (nfds_t k = 1; k < m; k++)
            if (pf[k].revents && who[k] >= 0)
                drain(rl, &rl->s[who[k]]);
            else if (pf[k].revents)
                lifeline(rl, -1 - who[k]);
    }
    free(pf);
    free(who);
    return NULL;
}

/* ---- the relay ---------------------------------------------------------- */

int mpi__relay_new(MPI_Comm comm, int size, const mpi__hello *hello,
                   const int *slots, const int *life, mpi__relay **out)
{
    mpi__relay *rl = calloc(1, sizeof *rl);
    if (rl)
        rl->life = calloc((size_t)size, sizeof *rl->life);
    if (!rl || !rl->life) { /* the lifelines are ours all the same */
        for (int r = 0; r < size; r++)
            mproc__close(life[r]);
        free(rl);
        return -ENOMEM;
    }
    rl->comm = comm;
    rl->size = size;
    rl->stopfd = -1;
    pthread_mutex_init(&rl->mu, NULL);
    rl->first = calloc((size_t)size + 1, sizeof *rl->first);
    rl->hello = calloc((size_t)size, sizeof *rl->hello);
    rl->rstate = calloc((size_t)size, sizeof *rl->rstate);
    rl->in = malloc(POOL__MSG_MAX);
    for (int r = 0; r < size; r++)
        rl->life[r] = life[r];
    int total = 0;
    for (int r = 0; r < size; r++) {
        if (rl->first)
            rl->first[r] = total;
        total += r > 0 ? slots[r] : 0;
    }
    rl->nslots = total;
    rl->live = size - 1;
    rl->s = calloc((size_t)total + 1, sizeof *rl->s);
    int err = -ENOMEM;
    if (!rl->first || !rl->hello || !rl->life || !rl->rstate || !rl->in ||
        !rl->s)
        goto fail;
    rl->first[size] = total;
    memcpy(rl->hello, hello, (size_t)size * sizeof *hello);
    for (int i = 0; i < total; i++)
        rl->s[i].fd = rl->s[i].evfd = -1;
    for (int r = 1; r < size; r++)
        for (int k = 0; k < slots[r]; k++) {
            rslot *s = &rl->s[rl->first[r] + k];
            s->rank = r;
            s->idx = (uint32_t)k;
            s->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
            if (s->evfd < 0) {
                err = -errno;
                goto fail;
            }
        }
    rl->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (rl->stopfd < 0) {
        err = -errno;
        goto fail;
    }
    /* The threads take no signals: they belong to the program. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    err = -pthread_create(&rl->rx, NULL, rx_main, rl);
    rl->rx_started = err == 0;
    if (err == 0) {
        err = -pthread_create(&rl->tx, NULL, tx_main, rl);
        rl->tx_started = err == 0;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err < 0)
        goto fail;
    *out = rl;
    return 0;
fail:
    mpi__relay_free(rl);
    return err;
}

int mpi__relay_start(mpi__relay *rl, int k, pool__slot *slot,
                     unsigned char *ring, int *chan, int *sentinel)
{
    if (k < 0 || k >= rl->nslots)
        return -EINVAL;
    rslot *s = &rl->s[k];
    if (s->fd >= 0 || atomic_load(&s->ended))
        return MPROC_ERANKLOST;
    int sv[2];
    int r = pool__channel_pair(sv);
    if (r < 0)
        return r;
    s->board = slot;
    s->ring = ring;
    s->wpos = s->rpos = 0;
    atomic_store(&slot->pid, 0);
    atomic_store(&slot->state, SLOT_READY);
    s->fd = sv[1];
    s->open = true;
    /* tx polls the slots it knows of: wake it to take this one in. */
    uint64_t one = 1;
    ssize_t w = write(rl->stopfd, &one, sizeof one);
    (void)w;
    *chan = sv[0];
    *sentinel = s->evfd;
    return 0;
}

int mpi__relay_status(mpi__relay *rl, int k, char *buf, size_t n)
{
    rslot *s = &rl->s[k];
    const mpi__hello *h = &rl->hello[s->rank];
    if (atomic_load(&s->ended) == 1)
        return 0;
    snprintf(buf, n, "rank %d (%.64s, pid %d) was lost: %s", s->rank, h->host,
             (int)h->pid, s->why[0] ? s->why : "it stopped answering");
    return s->code ? s->code : MPROC_ERANKLOST;
}

bool mpi__relay_free(mpi__relay *rl)
{
    if (!rl)
        return false;
    /* Stop the servers still there (rx waits for their T_BYE while tx
     * still watches their lifelines: one that dies meanwhile is not
     * waited for), then the threads. */
    atomic_store(&rl->stopping, true);
    int32_t lost = 0;
    pthread_mutex_lock(&rl->mu);
    for (int r = 1; r < rl->size && rl->rstate; r++)
        lost |= rl->rstate[r] == R_LOST;
    pthread_mutex_unlock(&rl->mu);
    for (int r = 1; r < rl->size && rl->rstate; r++) {
        pthread_mutex_lock(&rl->mu);
        bool live = rl->rstate[r] == R_LIVE;
        pthread_mutex_unlock(&rl->mu);
        if (live)
            MPI_Send(&lost, sizeof lost, MPI_BYTE, r, T_STOP, rl->comm);
    }
    if (rl->rx_started)
        pthread_join(rl->rx, NULL);
    pthread_mutex_lock(&rl->mu);
    for (int r = 1; r < rl->size && rl->rstate; r++)
        lost |= rl->rstate[r] == R_LOST;
    pthread_mutex_unlock(&rl->mu);
    if (rl->tx_started) {
        uint64_t one = 1;
        ssize_t r = write(rl->stopfd, &one, sizeof one);
        (void)r;
        pthread_join(rl->tx, NULL);
    }
    for (int i = 0; rl->s && i < rl->nslots; i++) {
        rslot *s = &rl->s[i];
        mproc__close(s->fd);
        mproc__close(s->evfd);
        for (size_t k = 0; k < s->nmaps; k++)
            rmap_unref(rl, s->maps[k]);
        for (size_t k = 0; k < s->pn; k++)
            rmap_unref(rl, s->pend[(s->phead + k) % s->pcap].m);
        free(s->pend);
    }
    for (int r = 0; rl->life && r < rl->size; r++)
        mproc__close(rl->life[r]);
    mproc__close(rl->stopfd);
    mproc__buf_free(&rl->out);
    pthread_mutex_destroy(&rl->mu);
    free(rl->s);
    free(rl->first);
    free(rl->hello);
    free(rl->life);
    free(rl->rstate);
    free(rl->in);
    free(rl);
    return lost != 0;
}
