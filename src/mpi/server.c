/*
 * mpi/server.c - a serving rank. Its main thread sleeps in MPI_Probe for
 * rank 0's messages and turns each into one call on a local pool of its
 * own: a PM_TASKS message into a map_async (starmap_async for argument
 * lists), a records chunk into an apply_async of mpi__records_task, so
 * that every task runs in a local worker process and a crash, an abort or
 * a timeout fails that task alone. The calls' callbacks (on the local
 * pool's thread) encode the results as ring entries, and each slot's
 * answers go back to rank 0 in the order its messages came (T_RES), a
 * PM_EXIT as T_EXITED once everything before it was answered.
 */
#include "mpi/mpi_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct sslot;

/* A message being served. */
typedef struct smsg {
    struct server *sv;
    struct sslot *sl;
    int type; /* PM_TASKS, PM_RANGE, PM_EXIT */
    uint64_t first_seq;
    uint32_t count;
    unsigned char *buf; /* the message as received */
    mproc_iov *items;
    mproc_args **argv;
    size_t *at;      /* item i runs as task at[i] of the call (SIZE_MAX: not) */
    int32_t *pre;    /* item i failed before running: its code */
    mproc_future *f; /* the call */
    mproc__buf res;  /* the answer, ring entries */
    bool done;
    struct smsg *next;
} smsg;

typedef struct sslot {
    uint32_t idx;
    smsg *head, *tail;
} sslot;

typedef struct sfn {
    void *addr;
    unsigned char *ref;
    size_t reflen;
} sfn;

typedef struct server server;
struct server {
    MPI_Comm comm;
    int rank;
    char host[64];
    mproc_pool *pool;
    pthread_mutex_t mu; /* the slots' lists, and sending */
    sslot *slots;
    size_t nslots;
    sfn *fns;
    size_t nfns;
    /* Answers on their way (MPI_Isend): the local pool's thread, which
     * answers, never waits for rank 0 to take a large one in. Under mu. */
    MPI_Request *reqs;
    unsigned char **rbufs;
    size_t nreq, capreq;
};

/* ---- a records chunk in a worker ---------------------------------------- */

int mpi__records_task(const void *in, size_t len, mproc_out *out)
{
    mpi__rtask t;
    if (len < sizeof t)
        return mproc_out_fail(out, MPROC_EPROTO, "short records chunk");
    memcpy(&t, in, sizeof t);
    const unsigned char *p = (const unsigned char *)in + sizeof t;
    size_t left = len - sizeof t;
    if (pool__pad8(t.reflen) > left ||
        (t.in_size && t.count > (left - pool__pad8(t.reflen)) / t.in_size))
        return mproc_out_fail(out, MPROC_EPROTO, "short records chunk");
    mproc__reader rd = {.p = p, .len = t.reflen};
    void *fn = NULL;
    if (mproc__ref_read(&rd, &fn) < 0 || !fn)
        return mproc_out_fail(out, MPROC_ERESOLVE,
                              "kernel not found in the worker");
    void *op = mproc_out_alloc(out, (size_t)(t.count * t.out_size));
    if (!op && t.count * t.out_size != 0)
        return mproc_out_fail(out, -ENOMEM, "records chunk: out of memory");
    const void *ip = t.in_size ? p + pool__pad8(t.reflen) : NULL;
    int rc = ((mproc_records_fn)fn)(ip, op, (size_t)t.count, (size_t)t.first);
    if (rc != 0)
        return mproc_out_fail(out, rc < 0 ? rc : MPROC_ETASK,
                              "kernel failed: %s",
                              rc < 0 ? mproc_strerror(rc) : "non-zero return");
    return 0;
}

/* ---- answers ------------------------------------------------------------ */

static void put_entry(mproc__buf *b, int32_t status, uint64_t seq,
                      const void *p, size_t n)
{
    static const unsigned char zero[8];
    pool__entry e = {.status = status, .len = (uint32_t)n, .seq = seq};
    mproc__buf_put(b, &e, sizeof e);
    if (n)
        mproc__buf_put(b, p, n);
    mproc__buf_put(b, zero, pool__pad8(n) - n);
}

static void put_fail(server *sv, mproc__buf *b, int code, uint64_t seq,
                     const char *msg)
{
    char m[256];
    int n = snprintf(m, sizeof m, "rank %d (%s): %s", sv->rank, sv->host, msg);
    put_entry(b, code, seq, m,
              n < 0                  ? 0
              : (size_t)n < sizeof m ? (size_t)n
                                     : sizeof m - 1);
}

/* The answer of m from its finished call f (NULL: code for every task). */
static void encode(server *sv, smsg *m, mproc_future *f, int code)
{
    if (m->type == PM_RANGE) {
        const void *d = NULL;
        size_t len = 0;
        int r = f ? mproc_future_get(f, 0, &d, &len) : code;
        if (r == 0) {
            put_entry(&m->res, 0, m->first_seq, d, len);
        } else {
            const mproc_task_error *e = f ? mproc_future_error(f) : NULL;
            put_fail(sv, &m->res, r, m->first_seq,
                     e ? e->message : mproc_strerror(r));
        }
        return;
    }
    mproc_results *r = f ? mproc_future_results(f) : NULL;
    for (uint32_t i = 0; i < m->count; i++) {
        uint64_t seq = m->first_seq + i;
        if (m->pre && m->pre[i]) {
            put_fail(sv, &m->res, m->pre[i], seq,
                     "cannot rebuild the task's arguments (objects do not "
                     "cross ranks)");
            continue;
        }
        const void *d = NULL;
        size_t len = 0;
        size_t at = m->at ? m->at[i] : 0;
        int c = r ? mproc_results_get(r, at, &d, &len) : code;
        if (c == 0) {
            put_entry(&m->res, 0, seq, d, len);
        } else {
            const mproc_task_error *e = r ? mproc_results_error(r, at) : NULL;
            put_fail(sv, &m->res, c, seq, e ? e->message : mproc_strerror(c));
        }
    }
}

static void msg_free(smsg *m)
{
    if (m->argv)
        for (uint32_t i = 0; i < m->count; i++)
            mproc__args_free_imported(m->argv[i]);
    mproc_future_free(m->f);
    mproc__buf_free(&m->res);
    free(m->argv);
    free(m->items);
    free(m->at);
    free(m->pre);
    free(m->buf);
    free(m);
}

/* Frees the answers that are out (sv->mu held); all of them, waiting,
 * when `all`. */
static void reap(server *sv, bool all)
{
    size_t k = 0;
    for (size_t i = 0; i < sv->nreq; i++) {
        int done = 0;
        if (all) {
            MPI_Wait(&sv->reqs[i], MPI_STATUS_IGNORE);
            done = 1;
        } else {
            MPI_Test(&sv->reqs[i], &done, MPI_STATUS_IGNORE);
        }
        if (done) {
            free(sv->rbufs[i]);
            continue;
        }
        sv->reqs[k] = sv->reqs[i];
        sv->rbufs[k++] = sv->rbufs[i];
    }
    sv->nreq = k;
}

/* Sends answer b (taken) to rank 0 without waiting for it to arrive;
 * blocking when there is no room to keep it pending. */
static void send_answer(server *sv, mproc__buf *b)
{
    reap(sv, false);
    if (sv->nreq == sv->capreq) {
        size_t cap = sv->capreq ? 2 * sv->capreq : 16;
        MPI_Request *r = realloc(sv->reqs, cap * sizeof(MPI_Request));
        if (r)
            sv->reqs = r;
        unsigned char **bb = r ? realloc(sv->rbufs, cap * sizeof *bb) : NULL;
        if (bb) {
            sv->rbufs = bb;
            sv->capreq = cap;
        }
    }
    if (sv->nreq < sv->capreq &&
        MPI_Isend(b->p, (int)b->len, MPI_BYTE, 0, T_RES, sv->comm,
                  &sv->reqs[sv->nreq]) == MPI_SUCCESS) {
        sv->rbufs[sv->nreq++] = b->p;
        b->p = NULL;
        b->len = b->cap = 0;
        return;
    }
    MPI_Send(b->p, (int)b->len, MPI_BYTE, 0, T_RES, sv->comm);
}

/* Sends the answers at the front of slot sl that are ready, in order
 * (sv->mu held). */
static void flush(server *sv, sslot *sl)
{
    while (sl->head && sl->head->done) {
        smsg *m = sl->head;
        sl->head = m->next;
        if (!sl->head)
            sl->tail = NULL;
        mpi__pre pre = {.slot = sl->idx};
        if (m->type == PM_EXIT) {
            MPI_Send(&pre, sizeof pre, MPI_BYTE, 0, T_EXITED, sv->comm);
        } else if (!m->res.oom) {
            send_answer(sv, &m->res);
        }
        msg_free(m);
    }
}

/* The call of a message finished (on the local pool's thread; the
 * submitter holds sv->mu until it stored the future). */
static void done_cb(mproc_future *f, void *arg)
{
    smsg *m = arg;
    server *sv = m->sv;
    pthread_mutex_lock(&sv->mu);
    encode(sv, m, f, 0);
    m->done = true;
    flush(sv, m->sl);
    pthread_mutex_unlock(&sv->mu);
}

/* ---- messages ----------------------------------------------------------- */

static void do_fndef(server *sv, const unsigned char *p, size_t n)
{
    pool__hdr h;
    memcpy(&h, p, sizeof h);
    if (h.fnid > 1u << 20)
        return;
    size_t had = sv->nfns;
    if (MPROC__GROW(sv->fns, sv->nfns, (size_t)h.fnid + 1) < 0)
        return;
    memset(sv->fns + had, 0, (sv->nfns - had) * sizeof *sv->fns);
    sfn *e = &sv->fns[h.fnid];
    free(e->ref);
    e->reflen = n - sizeof h;
    e->ref = malloc(e->reflen ? e->reflen : 1);
    if (!e->ref)
        return;
    memcpy(e->ref, p + sizeof h, e->reflen);
    mproc__reader rd = {.p = e->ref, .len = e->reflen};
    e->addr = NULL;
    if (mproc__ref_read(&rd, &e->addr) < 0)
        e->addr = NULL;
}

static const sfn *fn_of(server *sv, uint32_t id)
{
    return id < sv->nfns && sv->fns[id].ref ? &sv->fns[id] : NULL;
}

/* PM_TASKS: the items (inline) as a map, or argument lists as a starmap. */
static int submit_tasks(server *sv, smsg *m, const pool__hdr *h, size_t n,
                        const mproc_call_opts *co)
{
    const sfn *fn = fn_of(sv, h->fnid);
    if (!fn || !fn->addr)
        return MPROC_ERESOLVE;
    m->items = calloc(m->count ? m->count : 1, sizeof *m->items);
    m->at = calloc(m->count ? m->count : 1, sizeof *m->at);
    m->pre = calloc(m->count ? m->count : 1, sizeof *m->pre);
    if (h->kind == FK_ARGS)
        m->argv = calloc(m->count ? m->count : 1, sizeof(mproc_args *));
    if (!m->items || !m->at || !m->pre || (h->kind == FK_ARGS && !m->argv))
        return -ENOMEM;
    size_t pos = sizeof *h, nrun = 0;
    for (uint32_t i = 0; i < m->count; i++) {
        pool__item it;
        if (pos + sizeof it > n) {
            m->pre[i] = MPROC_EPROTO;
            continue;
        }
        memcpy(&it, m->buf + pos, sizeof it);
        pos += sizeof it;
        if (pool__pad8(it.len) > n - pos) {
            m->pre[i] = MPROC_EPROTO;
            pos = n;
            continue;
        }
        const unsigned char *d = m->buf + pos;
        pos += pool__pad8(it.len);
        if (h->kind == FK_ARGS) {
            mproc__reader rd = {.p = d, .len = it.len};
            int r = mproc__args_import(&rd, NULL, 0, &m->argv[nrun]);
            if (r < 0) {
                m->pre[i] = r;
                continue;
            }
        } else {
            m->items[nrun] = (mproc_iov){.data = d, .len = it.len};
        }
        m->at[i] = nrun++;
    }
    if (nrun == 0) { /* nothing to run: answer at once */
        encode(sv, m, NULL, MPROC_EPROTO);
        m->done = true;
        return 0;
    }
    if (h->kind == FK_ARGS)
        return mproc_pool_starmap_async(sv->pool, (mproc_star_fn)fn->addr,
                                        m->argv, nrun, co, &m->f);
    return mproc_pool_map_async(sv->pool, (mproc_task_fn)fn->addr, m->items,
                                nrun, co, &m->f);
}

/* PM_RANGE: the chunk as one apply of mpi__records_task. */
static int submit_range(server *sv, smsg *m, const pool__hdr *h, size_t n,
                        const mproc_call_opts *co)
{
    pool__range rg;
    if (n < sizeof *h + sizeof rg)
        return MPROC_EPROTO;
    memcpy(&rg, m->buf + sizeof *h, sizeof rg);
    const sfn *fn = fn_of(sv, h->fnid);
    if (!fn)
        return MPROC_ERESOLVE;
    size_t inlen = (size_t)(rg.count * rg.in_size);
    if (inlen > n - sizeof *h - sizeof rg)
        return MPROC_EPROTO;
    mpi__rtask t = {.count = rg.count,
                    .first = rg.start,
                    .in_size = rg.in_size,
                    .out_size = rg.out_size,
                    .reflen = (uint32_t)fn->reflen};
    mproc__buf b = {0};
    static const unsigned char zero[8];
    mproc__buf_put(&b, &t, sizeof t);
    mproc__buf_put(&b, fn->ref, fn->reflen);
    mproc__buf_put(&b, zero, pool__pad8(fn->reflen) - fn->reflen);
    mproc__buf_put(&b, m->buf + sizeof *h + sizeof rg, inlen);
    int r = b.oom ? -ENOMEM
                  : mproc_pool_apply_async(sv->pool, mpi__records_task, b.p,
                                           b.len, co, &m->f);
    mproc__buf_free(&b);
    return r;
}

/* One T_MSG (buf is taken). */
static void handle(server *sv, unsigned char *buf, size_t n)
{
    mpi__pre pre;
    pool__hdr h;
    if (n < sizeof pre + sizeof h) {
        free(buf);
        return;
    }
    memcpy(&pre, buf, sizeof pre);
    memcpy(&h, buf + sizeof pre, sizeof h);
    if (h.type == PM_FNDEF) {
        do_fndef(sv, buf + sizeof pre, n - sizeof pre);
        free(buf);
        return;
    }
    if (pre.slot >= sv->nslots ||
        (h.type != PM_TASKS && h.type != PM_RANGE && h.type != PM_EXIT)) {
        free(buf);
        return;
    }
    smsg *m = calloc(1, sizeof *m);
    if (!m) {
        free(buf);
        return;
    }
    /* The message without its prefix; the answer keeps room for one. */
    memmove(buf, buf + sizeof pre, n - sizeof pre);
    n -= sizeof pre;
    *m = (smsg){.sv = sv,
                .sl = &sv->slots[pre.slot],
                .type = h.type,
                .first_seq = h.first_seq,
                .count = h.type == PM_TASKS ? h.count : 1,
                .buf = buf};
    mproc__buf_put(&m->res, &pre, sizeof pre);
    mproc_call_opts co = {.timeout = h.code > 0 ? h.code / 1000.0 : -1,
                          .callback = done_cb,
                          .error_callback = done_cb,
                          .callback_arg = m};
    pthread_mutex_lock(&sv->mu);
    if (m->sl->tail)
        m->sl->tail->next = m;
    else
        m->sl->head = m;
    m->sl->tail = m;
    int r = 0;
    if (h.type == PM_EXIT)
        m->done = true;
    else if (h.type == PM_TASKS)
        r = submit_tasks(sv, m, &h, n, &co);
    else
        r = submit_range(sv, m, &h, n, &co);
    if (r < 0) { /* the call was refused: every task fails with that */
        m->res.len = sizeof pre;
        encode(sv, m, NULL, r);
        m->done = true;
    }
    flush(sv, m->sl);
    pthread_mutex_unlock(&sv->mu);
}

bool mpi__serve(MPI_Comm comm, const mproc_pool_opts *opts)
{
    bool lost = false;
    server sv = {.comm = comm};
    MPI_Comm_rank(comm, &sv.rank);
    gethostname(sv.host, sizeof sv.host - 1);
    pthread_mutex_init(&sv.mu, NULL);
    mpi__hello hello = {.pid = (int32_t)getpid()};
    memcpy(hello.host, sv.host, sizeof hello.host);
    int r = mproc_pool_new(&sv.pool, opts);
    if (r == 0) {
        int np = mproc_pool_processes(sv.pool);
        sv.nslots = (size_t)(np < 2 ? 2 : np);
        sv.slots = calloc(sv.nslots, sizeof *sv.slots);
        if (!sv.slots)
            r = -ENOMEM;
        for (size_t i = 0; i < sv.nslots && sv.slots; i++)
            sv.slots[i].idx = (uint32_t)i;
        hello.nproc = np;
    }
    if (r < 0) {
        hello.nproc = r;
        sv.nslots = 0;
    }
    MPI_Send(&hello, sizeof hello, MPI_BYTE, 0, T_HELLO, comm);
    /* Kept open until this process ends: its end tells rank 0. */
    int life = mpi__lifeline_connect(comm, sv.rank);
    (void)life;
    for (;;) {
        MPI_Status st;
        int count = 0;
        if (MPI_Probe(0, MPI_ANY_TAG, comm, &st) != MPI_SUCCESS ||
            MPI_Get_count(&st, MPI_BYTE, &count) != MPI_SUCCESS)
            break;
        unsigned char *buf = malloc(count > 0 ? (size_t)count : 1);
        if (!buf || MPI_Recv(buf, count, MPI_BYTE, 0, st.MPI_TAG, comm,
                             MPI_STATUS_IGNORE) != MPI_SUCCESS) {
            free(buf);
            break;
        }
        if (st.MPI_TAG == T_STOP) {
            int32_t l = 0;
            if (count >= (int)sizeof l)
                memcpy(&l, buf, sizeof l);
            lost = l != 0;
            free(buf);
            break;
        }
        if (st.MPI_TAG == T_MSG)
            handle(&sv, buf, (size_t)count);
        else
            free(buf);
    }
    /* Unfinished calls end now (their answers go to a rank 0 that no
     * longer reads them). */
    mproc_pool_free(sv.pool);
    for (size_t i = 0; i < sv.nslots; i++)
        while (sv.slots[i].head) {
            smsg *m = sv.slots[i].head;
            sv.slots[i].head = m->next;
            msg_free(m);
        }
    reap(&sv, true);
    MPI_Send(NULL, 0, MPI_BYTE, 0, T_BYE, comm);
    for (size_t i = 0; i < sv.nfns; i++)
        free(sv.fns[i].ref);
    free(sv.fns);
    free(sv.slots);
    free(sv.reqs);
    free(sv.rbufs);
    pthread_mutex_destroy(&sv.mu);
    return lost;
}
