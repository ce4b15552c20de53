/*
 * pool/worker.c - the worker side of the pool: the loop a worker process
 * runs, the mproc_out a task writes its result to, and the shareable kind
 * that carries a worker's channel, board and initializer to it under every
 * start method.
 *
 * A worker reads one message at a time from its channel, runs its tasks in
 * order and writes each result into its ring on the board as the task
 * returns. Before a task it publishes the task's sequence number and start
 * time in its board slot; after it, the sequence number as done. It tells
 * the parent there are results (WM_NOTIFY) when a message is finished or
 * when it must wait for room in the ring; the parent also looks into the
 * ring on its own every 2 ms while tasks are out. It exits on PM_EXIT, at
 * end of file, or when the pool's owner dies.
 */
#include "pool/pool_impl.h"

#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- messages ----------------------------------------------------------- */

int mproc__pool_send(int sock, const void *p, size_t n, const int *fds,
                     size_t nfds, bool block)
{
    struct iovec iov = {.iov_base = (void *)p, .iov_len = n};
    if (nfds > POOL__MAX_FDS)
        return -EINVAL;
    return mproc__sendv_fds(sock, &iov, 1, fds, nfds, block ? 0 : MSG_DONTWAIT);
}

ssize_t mproc__pool_recv(int sock, void *p, size_t n, int *fds, size_t *nfds,
                         bool block)
{
    return mproc__recv_fds_flags(sock, p, n, fds, nfds,
                                 block ? 0 : MSG_DONTWAIT);
}

/* ---- mproc_out ---------------------------------------------------------- */

/* A task's result: its bytes (b.oom: a write failed for want of memory,
 * and the task fails) or, after mproc_out_fail, its code and message. */
struct mproc_out {
    mproc__buf b;
    int code; /* set by mproc_out_fail */
    char msg[256];
};

/* Room for n more bytes. A write that does not fit marks the result as
 * out of memory; later ones that fit still succeed. */
static bool out_reserve(mproc_out *o, size_t n)
{
    if (n <= o->b.cap - o->b.len) /* the common case: no call */
        return true;
    if (n > SIZE_MAX / 2 - o->b.len ||
        MPROC__GROW(o->b.p, o->b.cap, o->b.len + n) < 0) {
        o->b.oom = true;
        return false;
    }
    return true;
}

int mproc_out_write(mproc_out *out, const void *p, size_t n)
{
    if (!out || (!p && n))
        return -EINVAL;
    if (!out_reserve(out, n))
        return -ENOMEM;
    if (n)
        memcpy(out->b.p + out->b.len, p, n);
    out->b.len += n;
    return 0;
}

void *mproc_out_alloc(mproc_out *out, size_t n)
{
    if (!out || !out_reserve(out, n ? n : 1))
        return NULL;
    void *r = out->b.p + out->b.len;
    out->b.len += n;
    return r;
}

int mproc_out_fail(mproc_out *out, int code, const char *fmt, ...)
{
    if (code >= 0)
        code = MPROC_ETASK;
    if (!out)
        return code;
    out->code = code;
    out->msg[0] = 0;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(out->msg, sizeof out->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* ---- the shareable kind ------------------------------------------------- */

static int wcfg_export(const void *obj, mproc_export *ex)
{
    const pool__wcfg *c = obj;
    mproc__buf b = {0};
    int fds[MPROC_ARGS_MAX_FDS];
    size_t nfds = 0;
    int r = mproc_export_fd(ex, c->chan);
    if (r == 0)
        r = mproc_export_fd(ex, c->board_fd);
    if (r < 0)
        return r;
    mproc__buf_u32(&b, c->slot);
    mproc__buf_u32(&b, (uint32_t)c->owner);
    mproc__buf_u64(&b, c->board_len);
    mproc__buf_u64(&b, c->ring_off);
    mproc__buf_u32(&b, c->init ? 1 : 0);
    if (c->init) {
        r = mproc__ref_write(&b, (const void *)c->init);
        if (r < 0)
            goto out;
    }
    r = mproc__args_export(c->initargs, &b, fds, &nfds, MPROC_ARGS_MAX_FDS - 2);
    if (r < 0)
        goto out;
    mproc__buf_u32(&b, (uint32_t)nfds);
    for (size_t i = 0; i < nfds && r == 0; i++)
        r = mproc_export_fd(ex, fds[i]);
    if (r < 0)
        goto out;
    if (b.oom) {
        r = -ENOMEM;
        goto out;
    }
    uint64_t len = b.len;
    r = mproc_export_bytes(ex, &len, sizeof len);
    if (r == 0)
        r = mproc_export_bytes(ex, b.p, b.len);
out:
    mproc__buf_free(&b);
    return r;
}

static void wcfg_free(void *obj)
{
    pool__wcfg *c = obj;
    if (!c || !c->imported)
        return;
    mproc__close(c->chan);
    mproc__close(c->board_fd);
    if (c->board)
        munmap(c->board, c->board_len);
    mproc__args_free_imported(c->initargs);
    free(c);
}

/* The fixed part of the description: the board's layout (which must hold
 * this worker's slot and ring) and the initializer. */
static int read_head(mproc__reader *rd, pool__wcfg *c)
{
    c->slot = mproc__rd_u32(rd);
    c->owner = (pid_t)mproc__rd_u32(rd);
    c->board_len = (size_t)mproc__rd_u64(rd);
    c->ring_off = (size_t)mproc__rd_u64(rd);
    uint32_t has_init = mproc__rd_u32(rd);
    if (rd->bad || c->board_len < (c->slot + 1) * sizeof(pool__slot) ||
        c->ring_off > c->board_len ||
        (c->board_len - c->ring_off) / POOL__RING < c->slot + 1)
        return MPROC_EPROTO;
    if (has_init) {
        void *a = NULL;
        int r = mproc__ref_read(rd, &a);
        if (r < 0)
            return r;
        c->init = (mproc_init_fn)a;
    }
    return 0;
}

/* Layout: args bytes, then u32 nfds. args_import needs the fds first, so
 * collect every remaining fd of the description (they are all the
 * argument list's) before importing. Returns how many. */
static size_t take_arg_fds(mproc_import *im, int *fds)
{
    size_t n = 0;
    for (;;) {
        int fd = mproc_import_fd(im);
        if (fd < 0)
            break;
        if (n == MPROC_ARGS_MAX_FDS) {
            close(fd);
            continue;
        }
        fds[n++] = fd;
    }
    return n;
}

static int wcfg_import(mproc_import *im, void **out)
{
    pool__wcfg *c = calloc(1, sizeof *c);
    unsigned char *blob = NULL;
    int argfds[MPROC_ARGS_MAX_FDS];
    int r = -ENOMEM;
    if (!c)
        return -ENOMEM;
    c->imported = true;
    c->chan = mproc_import_fd(im);
    c->board_fd = mproc_import_fd(im);
    uint64_t len = 0;
    if (c->chan < 0 || c->board_fd < 0 ||
        mproc_import_bytes(im, &len, sizeof len) < 0 || len > (1u << 30)) {
        r = MPROC_EPROTO;
        goto out_fail;
    }
    blob = malloc(len ? (size_t)len : 1);
    if (!blob)
        goto out_fail;
    r = mproc_import_bytes(im, blob, (size_t)len);
    if (r < 0)
        goto out_fail;
    mproc__reader rd = {.p = blob, .len = (size_t)len};
    r = read_head(&rd, c);
    if (r < 0)
        goto out_fail;
    size_t nargfds = take_arg_fds(im, argfds);
    r = mproc__args_import(&rd, argfds, nargfds, &c->initargs); /* consumed */
    if (r < 0)
        goto out_fail;
    (void)mproc__rd_u32(&rd);
    if (rd.bad) {
        r = MPROC_EPROTO;
        goto out_fail;
    }
    void *m = mmap(NULL, c->board_len, PROT_READ | PROT_WRITE, MAP_SHARED,
                   c->board_fd, 0);
    if (m == MAP_FAILED) {
        r = -errno;
        goto out_fail;
    }
    c->board = m;
    free(blob);
    *out = c;
    return 0;
out_fail:
    free(blob);
    wcfg_free(c);
    return r;
}

const mproc_kind mproc__pool_wkind = {
    .name = "mproc.pool.worker",
    .export_fn = wcfg_export,
    .import_fn = wcfg_import,
    .free_fn = wcfg_free,
};

/* ---- the worker loop ---------------------------------------------------- */

typedef struct wfn {
    void *addr;
} wfn;

typedef struct wmap {
    uint64_t id;
    unsigned char *p;
    size_t len;
} wmap;

typedef struct worker {
    pool__wcfg *cfg;
    pool__slot *slot;
    unsigned char *ring;
    uint64_t wpos;
    uint64_t rpos; /* last rpos seen: space is re-read only when short */
    int chan;
    int parent_fd;
    wfn *fns;
    size_t nfns;
    wmap maps[POOL__FDCACHE];
    size_t nmaps, map_next;
    unsigned char *in; /* received message */
    bool unnotified;   /* results in the ring the parent was not told of */
    /* The open chunk (pool_impl.h), at ring offset coff beyond wpos: its
     * table and count, and the result bytes it holds (padded). */
    bool chunk_mode; /* the message's results go into chunks */
    bool copen;
    size_t coff, cdata;
    uint32_t ccap, ccount;
    uint32_t left; /* tasks of the message not yet finished */
    mproc_out out;
    bool broken; /* the channel failed or the owner died: stop */
} worker;

static int send_small(worker *w, int type, uint64_t seq, int code,
                      const void *p, size_t n, const int *fds, size_t nfds)
{
    unsigned char buf[sizeof(pool__hdr) + 256];
    pool__hdr h = {.type = (uint8_t)type, .first_seq = seq, .code = code};
    if (n > 256)
        n = 256;
    memcpy(buf, &h, sizeof h);
    if (n)
        memcpy(buf + sizeof h, p, n);
    int r = mproc__pool_send(w->chan, buf, sizeof h + n, fds, nfds, true);
    if (r < 0)
        w->broken = true;
    return r;
}

/* Tells the parent there are results in the ring. */
static int flush(worker *w)
{
    if (!w->unnotified)
        return 0;
    w->unnotified = false;
    return send_small(w, WM_NOTIFY, 0, 0, NULL, 0, NULL, 0);
}

static bool owner_alive(worker *w)
{
    struct pollfd p = {.fd = w->parent_fd, .events = POLLIN};
    return poll(&p, 1, 0) == 0;
}

/* Waits until need bytes of the ring are free. */
static bool ring_space(worker *w, size_t need)
{
    pool__slot *s = w->slot;
    if (w->wpos + need - w->rpos <= POOL__RING)
        return true;
    for (;;) {
        uint64_t rpos = atomic_load_explicit(&s->rpos, memory_order_acquire);
        if (rpos > w->wpos || w->wpos - rpos > POOL__RING) {
            /* Not a position the parent can have written: the board was
             * overwritten (a wild pointer in a task). Waiting would never
             * end; dying lets the parent fail the task and replace us. */
            w->broken = true;
            return false;
        }
        w->rpos = rpos;
        if (w->wpos + need - rpos <= POOL__RING)
            return true;
        w->unnotified = true;
        if (flush(w) < 0)
            return false;
        uint32_t sq = atomic_load(&s->space);
        atomic_store(&s->waiting, 1);
        rpos = atomic_load(&s->rpos);
        if (w->wpos + need - rpos <= POOL__RING) {
            atomic_store(&s->waiting, 0);
            return true;
        }
        struct timespec ts = {0, 100 * 1000 * 1000};
        mproc__futex_wait((uint32_t *)&s->space, sq, &ts);
        atomic_store(&s->waiting, 0);
        if (!owner_alive(w)) {
            w->broken = true;
            return false;
        }
    }
}

/* Commits the result of task seq to the ring. */
static void add_result(worker *w, uint64_t seq, int32_t status, const void *p,
                       size_t n)
{
    bool ool = n > POOL__OOL_MIN;
    static const char nomem[] = "result too large: out of memory";
    if (ool) {
        int fd = mproc__memfd_with("mproc-pool-result", p, n);
        if (fd < 0) {
            ool = false;
            status = -ENOMEM;
            p = nomem;
            n = sizeof nomem - 1;
        } else {
            int r = send_small(w, WM_OOLFD, seq, 0, NULL, 0, &fd, 1);
            close(fd);
            if (r < 0)
                return;
        }
    }
    size_t need, waste;
    if (!ring_space(w, pool__entry_room(w->wpos, n, ool, &need, &waste)))
        return;
    pool__entry_put(w->ring, &w->wpos, need, waste, status, seq, p, n, ool);
    atomic_store_explicit(&w->slot->wpos, w->wpos, memory_order_release);
    w->unnotified = true;
}

/* Commits the open chunk: its length, then wpos. */
static void chunk_commit(worker *w)
{
    if (!w->copen)
        return;
    w->copen = false;
    if (w->ccount == 0)
        return; /* nothing in it: never committed */
    pool__entry *e = (pool__entry *)(void *)(w->ring + w->coff);
    size_t len = pool__chunk_base(w->ccap) - sizeof *e + w->cdata;
    e->len = (uint32_t)len;
    w->wpos += sizeof *e + len;
    atomic_store_explicit(&w->slot->wpos, w->wpos, memory_order_release);
    w->unnotified = true;
}

/* Opens a chunk for the results from task seq on, with room for its table
 * and a first result of n bytes (waiting for the parent when the ring is
 * full). Returns false when it cannot (the worker is broken). */
static bool chunk_open(worker *w, uint64_t seq, size_t n)
{
    uint32_t cap = w->left < POOL__CHUNK_CAP ? w->left : POOL__CHUNK_CAP;
    if (cap == 0)
        cap = 1;
    size_t need = pool__chunk_base(cap) + pool__pad8(n);
    size_t off = (size_t)(w->wpos % POOL__RING);
    size_t waste = POOL__RING - off < need ? POOL__RING - off : 0;
    if (!ring_space(w, need + waste))
        return false;
    if (waste) {
        if (waste >= sizeof(pool__entry)) {
            pool__entry m = {.status = POOL__WRAP};
            memcpy(w->ring + off, &m, sizeof m);
        }
        w->wpos += waste;
        atomic_store_explicit(&w->slot->wpos, w->wpos, memory_order_release);
        off = 0;
    }
    pool__entry e = {.status = POOL__CHUNK, .seq = seq};
    memcpy(w->ring + off, &e, sizeof e);
    pool__chunkhdr *ch = (pool__chunkhdr *)(void *)(w->ring + off + sizeof e);
    atomic_store_explicit(&ch->count, 0, memory_order_relaxed);
    ch->cap = cap;
    w->copen = true;
    w->coff = off;
    w->cdata = 0;
    w->ccap = cap;
    w->ccount = 0;
    return true;
}

/* Appends a result of n bytes to the open chunk when it has room (in its
 * table, before the ring's end, and not holding bytes the parent has not
 * read yet). Returns false when it has not. */
static inline bool chunk_append(worker *w, const void *p, size_t n)
{
    if (w->ccount == w->ccap)
        return false;
    size_t at = w->coff + pool__chunk_base(w->ccap) + w->cdata;
    size_t end = at + pool__pad8(n);
    uint64_t wend = w->wpos + (end - w->coff);
    if (end > POOL__RING)
        return false;
    if (wend - w->rpos > POOL__RING) {
        w->rpos = atomic_load_explicit(&w->slot->rpos, memory_order_acquire);
        if (w->rpos > w->wpos || wend - w->rpos > POOL__RING)
            return false;
    }
    if (n == 4 || n == 8) {
        /* The common small results: one padded word, read as it was just
         * written (a wider read would wait for the store). */
        uint64_t x = 0;
        if (n == 4) {
            uint32_t u;
            memcpy(&u, p, 4);
            x = u;
        } else {
            memcpy(&x, p, 8);
        }
        memcpy(w->ring + at, &x, 8);
    } else if (n) {
        memcpy(w->ring + at, p, n);
    }
    unsigned char *h = w->ring + w->coff + sizeof(pool__entry);
    uint32_t e = (uint32_t)(w->cdata + n);
    memcpy(h + sizeof(pool__chunkhdr) + 4 * (size_t)w->ccount, &e, 4);
    w->cdata = pool__pad8(w->cdata + n);
    w->ccount++;
    atomic_store_explicit(&((pool__chunkhdr *)(void *)h)->count, w->ccount,
                          memory_order_release);
    return true;
}

/* A plain result of a chunk-mode message: into the open chunk, or a new
 * one. Returns false when it must take an entry of its own. */
static bool chunk_result(worker *w, uint64_t seq, const void *p, size_t n)
{
    if (n > POOL__CHUNK_ITEM)
        return false;
    if (w->copen && chunk_append(w, p, n))
        return true;
    chunk_commit(w);
    return chunk_open(w, seq, n) && chunk_append(w, p, n);
}

static void finish_task(worker *w, uint64_t seq, int rc)
{
    mproc_out *o = &w->out;
    int code = o->code;
    if (rc == 0 && code == 0 && !o->b.oom && w->copen &&
        o->b.len <= POOL__CHUNK_ITEM && chunk_append(w, o->b.p, o->b.len)) {
        /* The common case, first: into the open chunk. */
        w->left--;
        atomic_store_explicit(&w->slot->done_seq, seq, memory_order_release);
        return;
    }
    if (code == 0 && rc != 0) {
        code = rc < 0 ? rc : MPROC_ETASK;
        if (rc > 0)
            snprintf(o->msg, sizeof o->msg, "task returned %d", rc);
        else
            snprintf(o->msg, sizeof o->msg, "task failed: %s (%s)",
                     mproc_errname(rc), mproc_strerror(rc));
    }
    if (code == 0 && o->b.oom) {
        code = -ENOMEM;
        snprintf(o->msg, sizeof o->msg, "task result: out of memory");
    }
    if (w->chunk_mode) {
        bool in_chunk = code == 0 && chunk_result(w, seq, o->b.p, o->b.len);
        w->left--;
        if (in_chunk) {
            atomic_store_explicit(&w->slot->done_seq, seq,
                                  memory_order_release);
            return;
        }
        chunk_commit(w);
        if (w->broken)
            return;
    }
    if (code != 0) {
        if (!o->msg[0])
            snprintf(o->msg, sizeof o->msg, "task failed: %s",
                     mproc_strerror(code));
        add_result(w, seq, code, o->msg, strlen(o->msg));
    } else {
        add_result(w, seq, 0, o->b.p, o->b.len);
    }
    atomic_store_explicit(&w->slot->done_seq, seq, memory_order_release);
    /* No notice per task: the parent looks into the ring every 2 ms while
     * tasks are out, and we tell it at the end of each message. */
}

static void begin_task(worker *w, uint64_t seq, bool timed)
{
    mproc_out *o = &w->out;
    o->b.len = 0;
    o->b.oom = false;
    o->code = 0;
    o->msg[0] = 0;
    /* Only tasks with a timeout need their start time. */
    if (timed)
        atomic_store_explicit(&w->slot->cur_start, pool__coarse_ns(),
                              memory_order_relaxed);
    atomic_store_explicit(&w->slot->cur_seq, seq, memory_order_release);
}

static void do_fndef(worker *w, const pool__hdr *h, size_t n)
{
    mproc__reader rd = {.p = w->in + sizeof *h, .len = n - sizeof *h};
    void *addr = NULL;
    if (mproc__ref_read(&rd, &addr) < 0)
        addr = NULL; /* tasks using it fail with MPROC_ERESOLVE */
    size_t had = w->nfns;
    if (MPROC__GROW(w->fns, w->nfns, (size_t)h->fnid + 1) < 0) {
        w->broken = true;
        return;
    }
    memset(w->fns + had, 0, (w->nfns - had) * sizeof *w->fns);
    w->fns[h->fnid].addr = addr;
}

static void *fn_of(worker *w, uint32_t id)
{
    return id < w->nfns ? w->fns[id].addr : NULL;
}

/* Calls a bytes task on one input. */
static int call_bytes(worker *w, void *fn, const unsigned char *data,
                      size_t len)
{
    static const uint64_t none; /* an aligned, empty input */
    return ((mproc_task_fn)fn)(len ? (const void *)data : &none, len, &w->out);
}

/* Starts a message's tasks: whether results go into chunks, and how many
 * there are. */
static void begin_message(worker *w, const pool__hdr *h)
{
    w->chunk_mode = (h->kind & POOL__FK_CHUNK) != 0;
    w->left = h->count;
}

/* The message's tasks are done: the last chunk goes to the parent. */
static void end_message(worker *w)
{
    chunk_commit(w);
    w->chunk_mode = false;
}

static wmap *buffer(worker *w, uint64_t id, int fd);

/* Tasks of a map over bytes whose inputs are in the input arena
 * (pool_impl.h), results into chunks. A table the parent cannot have
 * written fails the tasks it names (MPROC_EPROTO). */
static void do_arena(worker *w, const pool__hdr *h, size_t n, int *fds,
                     size_t nfds)
{
    pool__arena a;
    wmap *m = NULL;
    void *fn = fn_of(w, h->fnid);
    memset(&a, 0, sizeof a);
    if (n >= sizeof *h + sizeof a) {
        memcpy(&a, w->in + sizeof *h, sizeof a);
        m = buffer(w, a.id, (a.flags & 1) && nfds > 0 ? fds[0] : -1);
    }
    for (size_t i = 0; i < nfds; i++)
        mproc__close(fds[i]);
    bool ok = m && a.total <= m->len / 8 && a.first <= a.total &&
              h->count <= a.total - a.first;
    const unsigned char *base = ok ? m->p + 8 * a.total : NULL;
    size_t room = ok ? m->len - 8 * a.total : 0;
    begin_message(w, h);
    for (uint32_t i = 0; i < h->count && !w->broken; i++) {
        uint64_t seq = h->first_seq + i, k = a.first + i, begin = 0, end = 0;
        if (ok) {
            if (k > 0) {
                memcpy(&begin, m->p + 8 * (k - 1), 8);
                begin = (begin + 7) & ~(uint64_t)7;
            }
            memcpy(&end, m->p + 8 * k, 8);
        }
        begin_task(w, seq, h->code != 0);
        int rc;
        if (!ok || end < begin || end > room)
            rc = mproc_out_fail(&w->out, MPROC_EPROTO,
                                "cannot read the task's input");
        else if (!fn)
            rc = mproc_out_fail(&w->out, MPROC_ERESOLVE,
                                "task function not found in the worker");
        else
            rc = call_bytes(w, fn, base + begin, (size_t)(end - begin));
        finish_task(w, seq, rc);
    }
    end_message(w);
}

static void do_tasks(worker *w, const pool__hdr *h, size_t n, int *fds,
                     size_t nfds)
{
    size_t pos = sizeof *h, fdi = 0;
    void *fn = fn_of(w, h->fnid);
    int kind = h->kind & ~POOL__FK_CHUNK;
    begin_message(w, h);
    for (uint32_t i = 0; i < h->count && !w->broken; i++) {
        uint64_t seq = h->first_seq + i;
        pool__item it;
        if (pos + sizeof it > n)
            break;
        memcpy(&it, w->in + pos, sizeof it);
        pos += sizeof it;
        const unsigned char *data;
        size_t len;
        void *map = NULL;
        if (it.len == POOL__OOL_LEN) {
            uint64_t size;
            memcpy(&size, w->in + pos, sizeof size);
            pos += 8;
            int fd = fdi < nfds ? fds[fdi] : -1;
            fds[fdi++] = -1;
            len = (size_t)size;
            if (fd >= 0 && len > 0) {
                map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
                if (map == MAP_FAILED)
                    map = NULL;
            }
            mproc__close(fd);
            data = map;
        } else {
            len = it.len;
            data = w->in + pos;
            pos += pool__pad8(len);
        }
        begin_task(w, seq, h->code != 0);
        int rc;
        if (!fn) {
            rc = mproc_out_fail(&w->out, MPROC_ERESOLVE,
                                "task function not found in the worker");
        } else if (!data && len) {
            rc =
                mproc_out_fail(&w->out, -ENOMEM, "cannot map the task's input");
        } else if (kind == FK_ARGS) {
            mproc__reader rd = {.p = data, .len = len};
            mproc_args *a = NULL;
            size_t k = (size_t)it.a;
            if (k > nfds - fdi)
                k = nfds - fdi;
            rc = mproc__args_import(&rd, fds + fdi, k, &a);
            fdi += k;
            if (rc < 0)
                mproc_out_fail(&w->out, rc, "cannot rebuild arguments: %s",
                               mproc_strerror(rc));
            else
                rc = ((mproc_star_fn)fn)(a, &w->out);
            mproc__args_free_imported(a);
        } else {
            rc = call_bytes(w, fn, data, len);
        }
        if (map)
            munmap(map, len);
        finish_task(w, seq, rc);
    }
    end_message(w);
    for (; fdi < nfds; fdi++)
        mproc__close(fds[fdi]);
}

/* Finds or maps shared buffer id (fd given when new). */
static wmap *buffer(worker *w, uint64_t id, int fd)
{
    if (fd >= 0) {
        struct stat st;
        if (fstat(fd, &st) < 0 || st.st_size <= 0)
            return NULL;
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE,
                       MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
            return NULL;
        /* FIFO replacement, mirrored by the parent. */
        wmap *m = &w->maps[w->map_next];
        if (w->nmaps < POOL__FDCACHE)
            w->nmaps++;
        else if (m->p)
            munmap(m->p, m->len);
        w->map_next = (w->map_next + 1) % POOL__FDCACHE;
        m->id = id;
        m->p = p;
        m->len = (size_t)st.st_size;
        return m;
    }
    for (size_t i = 0; i < w->nmaps; i++)
        if (w->maps[i].id == id && w->maps[i].p)
            return &w->maps[i];
    return NULL;
}

static void do_range(worker *w, const pool__hdr *h, size_t n, int *fds,
                     size_t nfds)
{
    pool__range rg;
    size_t fdi = 0;
    uint64_t seq = h->first_seq;
    begin_task(w, seq, h->code != 0);
    if (n < sizeof *h + sizeof rg) {
        mproc_out_fail(&w->out, MPROC_EPROTO, "short range message");
        goto out;
    }
    memcpy(&rg, w->in + sizeof *h, sizeof rg);
    wmap *in = NULL, *out = NULL;
    if (rg.flags & 1) {
        in = buffer(w, rg.in_id, fdi < nfds ? fds[fdi] : -1);
        fdi++;
    } else if (rg.in_size) {
        in = buffer(w, rg.in_id, -1);
    }
    if (rg.flags & 2) {
        out = buffer(w, rg.out_id, fdi < nfds ? fds[fdi] : -1);
        fdi++;
    } else {
        out = buffer(w, rg.out_id, -1);
    }
    void *fn = fn_of(w, h->fnid);
    uint64_t iend = rg.in_off + (rg.start + rg.count) * rg.in_size;
    uint64_t oend = rg.out_off + (rg.start + rg.count) * rg.out_size;
    if (!fn) {
        mproc_out_fail(&w->out, MPROC_ERESOLVE,
                       "kernel not found in the worker");
    } else if ((rg.in_size && (!in || iend > in->len)) || !out ||
               oend > out->len) {
        mproc_out_fail(&w->out, MPROC_EPROTO, "cannot map the shared arrays");
    } else {
        const void *ip =
            rg.in_size ? in->p + rg.in_off + rg.start * rg.in_size : NULL;
        void *op = out->p + rg.out_off + rg.start * rg.out_size;
        int rc =
            ((mproc_records_fn)fn)(ip, op, (size_t)rg.count, (size_t)rg.start);
        if (rc != 0 && w->out.code == 0)
            mproc_out_fail(&w->out, rc, "kernel failed: %s",
                           rc < 0 ? mproc_strerror(rc) : "non-zero return");
    }
out:
    for (size_t i = 0; i < nfds; i++)
        mproc__close(fds[i]);
    finish_task(w, seq, 0);
    flush(w);
}

static int worker_init(worker *w)
{
    pool__wcfg *c = w->cfg;
    atomic_store(&w->slot->pid, (int32_t)getpid());
    atomic_store(&w->slot->state, SLOT_INIT);
    if (c->init) {
        int rc = c->init(c->initargs);
        if (rc != 0) {
            char msg[200];
            int n = snprintf(msg, sizeof msg,
                             "initializer failed in worker %d: returned %d",
                             (int)getpid(), rc);
            send_small(w, WM_INITFAIL, 0, rc, msg, (size_t)n, NULL, 0);
            return -1;
        }
    }
    atomic_store(&w->slot->state, SLOT_READY);
    return 0;
}

/* Handles one message from the parent (its fds are consumed). */
static void handle(worker *w, size_t n, int *fds, size_t nfds)
{
    pool__hdr h;
    memcpy(&h, w->in, sizeof h);
    switch (h.type) {
    case PM_FNDEF:
        do_fndef(w, &h, n);
        break;
    case PM_TASKS:
        if (h.kind & POOL__FK_ARENA)
            do_arena(w, &h, n, fds, nfds);
        else
            do_tasks(w, &h, n, fds, nfds);
        nfds = 0;
        flush(w);
        break;
    case PM_RANGE:
        do_range(w, &h, n, fds, nfds);
        nfds = 0;
        break;
    case PM_EXIT:
        flush(w);
        w->broken = true;
        break;
    default:
        break;
    }
    for (size_t i = 0; i < nfds; i++)
        close(fds[i]);
}

/* Nothing to read: tells the parent about the results so far, then sleeps
 * until a message comes. Returns false when the owner died (or the channel
 * or poll failed). */
static bool wait_input(worker *w)
{
    if (flush(w) < 0)
        return false;
    struct pollfd p[2] = {{.fd = w->chan, .events = POLLIN},
                          {.fd = w->parent_fd, .events = POLLIN}};
    int r = poll(p, 2, -1);
    if (r < 0 && errno != EINTR)
        return false;
    /* (A pipe sentinel reads end of file as POLLHUP alone.) */
    if (r > 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR)) &&
        !(p[0].revents & POLLIN))
        return false; /* the owner died and sent nothing more */
    return true;
}

/* Runs messages until PM_EXIT, end of file, or the owner's death. */
static void serve(worker *w)
{
    while (!w->broken) {
        int fds[POOL__MAX_FDS] = {0};
        size_t nfds = POOL__MAX_FDS;
        ssize_t n =
            mproc__pool_recv(w->chan, w->in, POOL__MSG_MAX, fds, &nfds, false);
        if (n == -EAGAIN) {
            if (!wait_input(w))
                break;
            continue;
        }
        if (n <= 0 || (size_t)n < sizeof(pool__hdr)) {
            for (size_t i = 0; i < nfds; i++)
                close(fds[i]);
            if (n == MPROC_EPROTO)
                continue;
            break; /* end of file or a broken channel */
        }
        handle(w, (size_t)n, fds, nfds);
    }
}

int mproc__pool_worker_main(const mproc_args *args)
{
    pool__wcfg *c = mproc_args_object(args, 0, &mproc__pool_wkind);
    if (!c || !c->board)
        return 70;
    worker w = {.cfg = c, .chan = c->chan, .parent_fd = -1};
    /* The pool's thread runs with every signal blocked; tasks should not. */
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);
    if (!c->imported && c->peer >= 0)
        close(c->peer);
    w.slot = c->board + c->slot;
    int code = 0;
    /* The pool's owner started us: its sentinel as our parent (a pidfd,
     * or its life pipe where there are no pidfds; the library's). */
    mproc_process *owner = mproc_parent_process();
    if (owner && mproc_process_pid(owner) == c->owner)
        w.parent_fd = mproc_process_sentinel(owner);
    if (w.parent_fd < 0)
        return 0; /* the pool's owner is gone already */
    w.ring =
        (unsigned char *)c->board + c->ring_off + (size_t)c->slot * POOL__RING;
    w.wpos = atomic_load(&w.slot->wpos);
    w.rpos = atomic_load(&w.slot->rpos);
    w.in = malloc(POOL__MSG_MAX);
    if (!w.in)
        code = 71;
    else if (worker_init(&w) < 0)
        code = 1;
    else
        serve(&w);
    flush(&w);
    for (size_t i = 0; i < w.nmaps; i++)
        if (w.maps[i].p)
            munmap(w.maps[i].p, w.maps[i].len);
    mproc__buf_free(&w.out.b);
    free(w.fns);
    free(w.in);
    return code;
}
