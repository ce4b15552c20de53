/*
 * queue/ring.c - the queue's machinery below put and get: how a waiter
 * spins and sleeps, copies in and out of the ring, the readiness fd, the
 * two side locks and the repair of what a holder that died left, and the
 * mapping of a queue's memfd. The layout is described in queue_impl.h.
 */
#include "queue/queue_impl.h"

#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int queue__spin_budget(void)
{
    static _Atomic int budget = -1;
    int b = atomic_load_explicit(&budget, memory_order_relaxed);
    if (b < 0) {
        cpu_set_t set;
        int n = 2;
        if (sched_getaffinity(0, sizeof set, &set) == 0)
            n = CPU_COUNT(&set);
        b = n > 1 ? SPIN_PAUSES / SPIN_GAP : 0;
        atomic_store_explicit(&budget, b, memory_order_relaxed);
    }
    return b;
}

/* Sleep period for one futex wait: the deadline's rest, capped. Returns
 * false when the deadline has passed. */
bool queue__period_left(const mproc__deadline *d, struct timespec *ts)
{
    if (!d->infinite && !mproc__deadline_left(d, ts))
        return false;
    if (d->infinite || ts->tv_sec > 0 || ts->tv_nsec > Q_PERIOD_NS) {
        ts->tv_sec = 0;
        ts->tv_nsec = Q_PERIOD_NS;
    }
    return true;
}

/* ---- readiness fd ------------------------------------------------------ */

void queue__efd_signal(mproc_queue *q)
{
    uint64_t one = 1;
    ssize_t r;
    do {
        r = write(q->efd, &one, sizeof one);
    } while (r < 0 && errno == EINTR);
}

/*
 * A consumer saw the queue empty: clear the fd, then look again. Either the
 * second look sees a message that came meanwhile (and the fd is set again),
 * or that message's producer, storing ptail before it reads fd_clear,
 * finds fd_clear set and signals.
 */
void queue__note_empty(mproc_queue *q)
{
    qshm *h = q->h;
    if (!atomic_load_explicit(&h->armed, memory_order_relaxed))
        return;
    atomic_store(&h->fd_clear, 1);
    uint64_t v;
    while (read(q->efd, &v, sizeof v) < 0 && errno == EINTR)
        ;
    /* Counts rather than positions: they cover the overflow too. */
    uint32_t taken = queue__taken_count(h, atomic_load(&h->chead));
    if (queue__put_count(h) != taken && atomic_exchange(&h->fd_clear, 0))
        queue__efd_signal(q);
}

/* ---- waiting for data --------------------------------------------------- */

/* Has a producer published what the waiter looks for (see wait_data)? */
static bool data_came(qshm *h, uint64_t tw, uint64_t head, const uint64_t *log)
{
    if (log)
        return tw != log[0] || atomic_load(&h->p_log) != log[1];
    return w_pos(tw) != head;
}

int queue__wait_data(mproc_queue *q, uint64_t head, const uint64_t *log,
                     bool mid_message, const mproc__deadline *d)
{
    qshm *h = q->h;
    static const mproc__deadline forever = {{0, 0}, true};
    const mproc__deadline *dl = mid_message ? &forever : d;
    int spins = mproc__deadline_expired(dl) ? 0 : queue__spin_budget();
    int yields = spins ? SPIN_YIELDS : 0;
    bool noted = false;
    for (int i = 0;; i++) {
        uint32_t seq = atomic_load(&h->data_seq);
        uint64_t tw = atomic_load_explicit(&h->ptail, memory_order_acquire);
        if (data_came(h, tw, head, log)) {
            if (!log)
                atomic_store_explicit(&h->c_tail_cache, w_pos(tw),
                                      memory_order_relaxed);
            return 0;
        }
        if (mid_message && !(tw & W_OPEN))
            return 1;
        if (spin_or_yield(i, spins, yields))
            continue;
        if (!noted && !mid_message) {
            queue__note_empty(q);
            noted = true;
        }
        if (mid_message && i > spins + yields) {
            /* Is the producer of this message dead? Taking plock repairs
             * it (clearing OPEN) if so. */
            int rc = mproc__robust_lock(&h->plock, MPROC__TRY, NULL);
            if (rc != -EBUSY && queue__locked(q, SIDE_P, rc) == 0)
                pthread_mutex_unlock(&h->plock);
            tw = atomic_load(&h->ptail);
            if (w_pos(tw) == head && !(tw & W_OPEN))
                return 1;
        }
        struct timespec ts;
        if (!queue__period_left(dl, &ts))
            return -ETIMEDOUT;
        atomic_store(&h->c_waiting, 1);
        tw = atomic_load(&h->ptail);
        if (!data_came(h, tw, head, log) && (!mid_message || (tw & W_OPEN)))
            mproc__futex_wait((uint32_t *)&h->data_seq, seq, &ts);
        atomic_store(&h->c_waiting, 0);
    }
}

/* ---- locks and their repair ------------------------------------------- */

/*
 * The producer lock's previous holder died. Committed state is whole by
 * construction; what may be left is an unfinished streamed message (OPEN),
 * which is withdrawn, and the holder's sleeping flag.
 */
static void repair_producer(mproc_queue *q)
{
    qshm *h = q->h;
    atomic_store(&h->p_waiting, 0);
    atomic_store(&h->p_head_cache, w_pos(atomic_load(&h->chead)));
    uint64_t w = atomic_load(&h->ptail);
    if (w & W_OPEN) {
        atomic_store(&h->ptail, w & ~W_OPEN);
        atomic_fetch_add(&h->data_seq, 1);
        mproc__futex_wake((uint32_t *)&h->data_seq, INT_MAX);
    }
}

/* The consumer lock's holder died: committed head is whole; frames of a
 * message it was taking are skipped by the next get. */
static void repair_consumer(mproc_queue *q)
{
    qshm *h = q->h;
    atomic_store(&h->c_waiting, 0);
    atomic_store(&h->c_tail_cache, w_pos(atomic_load(&h->chead)));
}

/* Finishes taking a side's lock: rc is mproc__robust_lock's result. */
int queue__locked(mproc_queue *q, int side, int rc)
{
    if (rc == 1) {
        if (side == SIDE_P)
            repair_producer(q);
        else
            repair_consumer(q);
        return 0;
    }
    return rc;
}

/*
 * Takes one side's lock by the deadline. Returns 0, -ETIMEDOUT, or an
 * error. A holder that sleeps waiting for data/room makes the queue
 * empty/full for us, so an expired deadline is final then; a holder that is
 * busy copying will be done shortly, so we wait for it even past the
 * deadline (a nowait call must not fail merely because another process is
 * mid-copy).
 */
int queue__lock_slow(mproc_queue *q, int side, const mproc__deadline *d)
{
    qshm *h = q->h;
    pthread_mutex_t *m = side == SIDE_P ? &h->plock : &h->clock;
    _Atomic uint32_t *sleeping = side == SIDE_P ? &h->p_waiting : &h->c_waiting;
    int rc;
    /* Holds are short unless the holder sleeps: spin a while first. */
    int spins = queue__spin_budget();
    for (int i = 0; i < spins; i++) {
        if (atomic_load_explicit(sleeping, memory_order_relaxed))
            break;
        spin_pause();
        rc = mproc__robust_trylock(m);
        if (rc != -EBUSY)
            return queue__locked(q, side, rc);
    }
    /*
     * Sleep in the mutex in bounded steps, never for good: a waiter that
     * the kernel woke and that was killed before it took the lock swallows
     * the wake-up meant for us (the robust futex protocol cannot pass it
     * on once another process holds the lock), so we look again at least
     * every period. While the holder is busy rather than asleep, look
     * every 2 ms whether it went to sleep.
     */
    for (;;) {
        /* (A producer waiting briefly for consumers sets 2: it is busy.) */
        bool holder_sleeps = atomic_load(sleeping) == 1;
        bool expired = mproc__deadline_expired(d);
        if (holder_sleeps && expired)
            return -ETIMEDOUT;
        struct timespec at = mproc__now();
        at.tv_nsec += holder_sleeps ? Q_PERIOD_NS : 2000000L;
        if (at.tv_nsec >= 1000000000L) {
            at.tv_sec++;
            at.tv_nsec -= 1000000000L;
        }
        if (!d->infinite && !expired &&
            (d->at.tv_sec < at.tv_sec ||
             (d->at.tv_sec == at.tv_sec && d->at.tv_nsec < at.tv_nsec)))
            at = d->at;
        mproc__deadline until = {at, false};
        rc = mproc__robust_lock(m, MPROC__UNTIL, &until);
        if (rc != -ETIMEDOUT)
            return queue__locked(q, side, rc);
    }
}

/* ---- creation, mapping ------------------------------------------------- */

size_t queue__pow2_at_least(size_t n)
{
    size_t c = MPROC_QUEUE_MIN_CAPACITY;
    while (c < n)
        c <<= 1;
    return c;
}

/* Maps an initialized memfd and checks its header. Takes neither fd. Only
 * the header and the ring are mapped; the overflow, through windows. */
int queue__map(int memfd, int efd, mproc_queue **out)
{
    struct stat st;
    if (fstat(memfd, &st) < 0)
        return -errno;
    qshm hd;
    ssize_t got;
    do
        got = pread(memfd, &hd, sizeof hd, 0);
    while (got < 0 && errno == EINTR);
    if (got < 0)
        return -errno;
    uint64_t cap = hd.capacity, logsz = hd.log_size;
    if (got != (ssize_t)sizeof hd || hd.magic != Q_MAGIC ||
        hd.version != Q_VERSION || (cap & (cap - 1)) != 0 ||
        cap < MPROC_QUEUE_MIN_CAPACITY || cap > MPROC_QUEUE_MAX_CAPACITY ||
        (logsz & (logsz - 1)) != 0 || (logsz && logsz < Q_LOG_MIN) ||
        logsz > Q_LOG_MAX || hd.type > MPROC_QUEUE_JOINABLE)
        return MPROC_EPROTO;
    uint64_t logoff = queue__log_off(cap);
    if ((uint64_t)st.st_size != (logsz ? logoff + logsz : Q_HDR + cap))
        return MPROC_EPROTO;
    size_t len = Q_HDR + (size_t)cap;
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    if (p == MAP_FAILED)
        return -errno;
    mproc_queue *q = calloc(1, sizeof *q);
    if (!q) {
        munmap(p, len);
        return -ENOMEM;
    }
    q->h = p;
    q->ring = (unsigned char *)p + Q_HDR;
    q->map_len = len;
    q->cap = cap;
    q->mask = cap - 1;
    q->memfd = memfd;
    q->efd = efd;
    q->log_size = logsz;
    q->log_off = logoff;
    /* As in a queue bounded by bytes, a message larger than a quarter of
     * the ring is streamed through it in frames. */
    q->ring_max = logsz ? cap / 4 - F_HDR : 0;
    q->win = logsz < Q_LOG_WINDOW ? logsz : Q_LOG_WINDOW;
    *out = q;
    return 0;
}
