/*
 * manager/manager.c - starting and stopping a manager server: in a child
 * process (any start method; the child reports its bound address, or why
 * it could not bind, over a socketpair that also stops it: the parent
 * writes to it or goes away) or in a thread of the caller's.
 */
#include "manager/manager_impl.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct mproc_manager {
    char *address;
    mgr_client *cl; /* for mproc_manager_create */
    pid_t pid;
    /* child process */
    mproc_process *proc;
    mproc_conn *ctl; /* to the child: a write or EOF stops it */
    /* serving thread */
    pthread_t thread;
    bool threaded, joined;
    int stop;    /* atomic */
    int done;    /* atomic: the serving thread has ended */
    int wake[2]; /* wakes the serving thread */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int rc; /* the bind's result, under mu */
    bool reported;
    mgr_config cfg;
    char *cfg_address;
    void *key;
};

/* ---- in a child process -------------------------------------------------- */

typedef struct child_ctx {
    mproc_conn *ctl;
} child_ctx;

static void child_listening(void *ctx, int rc, const char *address)
{
    child_ctx *c = ctx;
    mproc_obj *msg = mproc_obj_tuple_of(2, mproc_obj_int(rc),
                                        address ? mproc_obj_str_c(address)
                                                : mproc_obj_none());
    if (msg)
        mproc_conn_send_obj(c->ctl, msg);
    mproc_obj_unref(msg);
}

/* The child: args are the control connection, the address ("" for a
 * fresh one), auth mode, key, allow_tcp_without_authkey, max_request,
 * handshake timeout, backlog, the registered types (where each lives
 * in the program: an array of mproc__coderef) and max_output. */
static int manager_child(const mproc_args *a)
{
    child_ctx ctx = {mproc_args_conn(a, 0)};
    size_t keylen = 0;
    const void *key = mproc_args_bytes(a, 3, &keylen);
    mgr_config cfg = {0};
    const char *addr = mproc_args_str(a, 1);
    cfg.address = addr && *addr ? addr : NULL;
    cfg.opts.conn.auth = (mproc_auth)mproc_args_int(a, 2);
    cfg.opts.conn.authkey = key;
    cfg.opts.conn.authkey_len = keylen;
    cfg.opts.allow_tcp_without_authkey = (int)mproc_args_int(a, 4);
    cfg.opts.max_request = (size_t)mproc_args_int(a, 5);
    cfg.opts.conn.timeout = mproc_args_double(a, 6);
    cfg.opts.conn.backlog = (int)mproc_args_int(a, 7);
    cfg.opts.max_output = (size_t)mproc_args_int(a, 9);
    size_t refs_len = 0;
    const mproc__coderef *refs = mproc_args_bytes(a, 8, &refs_len);
    size_t ntypes = refs ? refs_len / sizeof *refs : 0;
    const mproc_manager_type **types =
        ntypes ? calloc(ntypes, sizeof(mproc_manager_type *)) : NULL;
    if (ntypes && !types) {
        child_listening(&ctx, -ENOMEM, NULL);
        return 1;
    }
    for (size_t i = 0; i < ntypes; i++) {
        mproc__coderef ref;
        void *at = NULL;
        memcpy(&ref, &refs[i], sizeof ref);
        int rc = mproc__coderef_find(&ref, &at);
        if (rc < 0) {
            child_listening(&ctx, rc, NULL);
            free(types);
            return 1;
        }
        types[i] = at;
    }
    cfg.opts.types = types;
    cfg.opts.ntypes = ntypes;
    cfg.ctl_fd = mproc_conn_fileno(ctx.ctl);
    signal(SIGINT, SIG_IGN); /* as CPython's manager: ^C is the parent's */
    int rc = mproc__mgr_run(&cfg, child_listening, &ctx, NULL, -1);
    free(types);
    return rc < 0 ? 1 : 0;
}

/* The checks both constructors begin with. */
static int opts_check(mproc_manager **out, const mproc_manager_opts *o)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (o && o->conn.auth == MPROC_AUTH_KEY && !o->conn.authkey &&
        o->conn.authkey_len)
        return -EINVAL;
    if (o &&
        (o->conn.auth < MPROC_AUTH_PROCESS || o->conn.auth > MPROC_AUTH_KEY))
        return -EINVAL;
    for (size_t i = 0; o && i < o->ntypes; i++)
        if (!o->types || !o->types[i] || !o->types[i]->typeid ||
            !*o->types[i]->typeid)
            return -EINVAL;
    return 0;
}

int mproc_manager_start(mproc_manager **out, const char *address,
                        const mproc_manager_opts *opts)
{
    int rc = opts_check(out, opts);
    if (rc < 0)
        return rc;
    mproc_manager_opts o = opts ? *opts : (mproc_manager_opts){0};
    mproc_manager *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    m->wake[0] = m->wake[1] = -1;
    mproc_conn *theirs = NULL;
    mproc_args *a = NULL;
    mproc__coderef *refs = o.ntypes ? calloc(o.ntypes, sizeof *refs) : NULL;
    rc = o.ntypes && !refs ? -ENOMEM : 0;
    for (size_t i = 0; rc == 0 && i < o.ntypes; i++)
        rc = mproc__coderef_make(o.types[i], &refs[i]);
    if (rc == 0)
        rc = mproc_pipe(&m->ctl, &theirs, 1);
    if (rc == 0) {
        a = mproc_args_new();
        rc = a ? 0 : -ENOMEM;
    }
    if (rc == 0) {
        static const char none = 0;
        const void *key = o.conn.auth == MPROC_AUTH_KEY && o.conn.authkey_len
                              ? o.conn.authkey
                              : &none;
        int r = mproc_args_add_conn(a, theirs);
        r |= mproc_args_add_str(a, address ? address : "");
        r |= mproc_args_add_int(a, o.conn.auth);
        r |= mproc_args_add_bytes(
            a, key, o.conn.auth == MPROC_AUTH_KEY ? o.conn.authkey_len : 0);
        r |= mproc_args_add_int(a, o.allow_tcp_without_authkey);
        r |= mproc_args_add_int(a, (int64_t)o.max_request);
        r |= mproc_args_add_double(a, o.conn.timeout);
        r |= mproc_args_add_int(a, o.conn.backlog);
        r |= mproc_args_add_bytes(a, refs ? (const void *)refs : &none,
                                  o.ntypes * sizeof *refs);
        r |= mproc_args_add_int(a, (int64_t)o.max_output);
        rc = r < 0 ? -ENOMEM : 0;
    }
    if (rc == 0)
        rc = mproc_process_new(&m->proc, manager_child, a);
    if (rc == 0) {
        mproc_process_set_name(m->proc, "SyncManager-1");
        rc = mproc_process_start(m->proc);
    }
    mproc_args_free(a);
    free(refs);
    mproc_conn_free(theirs);
    mproc_obj *msg = NULL;
    if (rc == 0) {
        rc = mproc_conn_recv_obj(m->ctl, &msg, 60.0, NULL, 0);
        if (rc == 0) {
            int64_t code = -EPROTO;
            const char *addr =
                mproc_obj_str_value(mproc_obj_item(msg, 1), NULL);
            mproc_obj_int_value(mproc_obj_item(msg, 0), &code);
            rc = (int)code;
            if (rc == 0 && !addr)
                rc = MPROC_EPROTO;
            if (rc == 0) {
                m->address = strdup(addr);
                rc = m->address ? 0 : -ENOMEM;
            }
        } else if (rc == MPROC_EEOF) {
            rc = MPROC_EBOOTSTRAP; /* the child died before it listened */
        }
        mproc_obj_unref(msg);
    }
    if (rc < 0) {
        if (m->proc) {
            if (mproc_process_join(m->proc, 5.0) < 0 ||
                mproc_process_is_alive(m->proc) == 1) {
                mproc_process_kill(m->proc);
                mproc_process_join(m->proc, -1);
            }
            mproc_process_free(m->proc);
        }
        mproc_conn_free(m->ctl);
        free(m->address);
        free(m);
        return rc;
    }
    m->pid = mproc_process_pid(m->proc);
    rc = mproc__mgr_client_new(&m->cl, m->address, &o.conn);
    if (rc < 0) {
        mproc_manager_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

/* ---- in a thread -------------------------------------------------------- */

static void thread_listening(void *ctx, int rc, const char *address)
{
    mproc_manager *m = ctx;
    pthread_mutex_lock(&m->mu);
    m->rc = rc;
    if (rc == 0) {
        m->address = strdup(address);
        if (!m->address)
            m->rc = -ENOMEM;
    }
    m->reported = true;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
}

static void *serve_thread(void *arg)
{
    mproc_manager *m = arg;
    mproc__mgr_run(&m->cfg, thread_listening, m, &m->stop, m->wake[0]);
    __atomic_store_n(&m->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void free_thread_parts(mproc_manager *m)
{
    if (m->wake[0] >= 0) {
        close(m->wake[0]);
        close(m->wake[1]);
    }
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->cv);
    free(m->cfg_address);
    free(m->key);
    free(m->address);
    free(m);
}

int mproc_manager_serve(mproc_manager **out, const char *address,
                        const mproc_manager_opts *opts)
{
    int rc = opts_check(out, opts);
    if (rc < 0)
        return rc;
    mproc_manager *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    m->threaded = true;
    m->wake[0] = m->wake[1] = -1;
    m->cfg.opts = opts ? *opts : (mproc_manager_opts){0};
    m->cfg.ctl_fd = -1;
    if (pipe2(m->wake, O_CLOEXEC) < 0) {
        rc = -errno;
        m->wake[0] = m->wake[1] = -1;
        free_thread_parts(m);
        return rc;
    }
    if (address) {
        m->cfg_address = strdup(address);
        m->cfg.address = m->cfg_address;
    }
    if (m->cfg.opts.conn.auth == MPROC_AUTH_KEY &&
        m->cfg.opts.conn.authkey_len) {
        m->key = malloc(m->cfg.opts.conn.authkey_len);
        if (m->key)
            memcpy(m->key, m->cfg.opts.conn.authkey,
                   m->cfg.opts.conn.authkey_len);
        m->cfg.opts.conn.authkey = m->key;
    }
    if ((address && !m->cfg_address) ||
        (m->cfg.opts.conn.auth == MPROC_AUTH_KEY &&
         m->cfg.opts.conn.authkey_len && !m->key)) {
        free_thread_parts(m);
        return -ENOMEM;
    }
    rc = -pthread_create(&m->thread, NULL, serve_thread, m);
    if (rc < 0) {
        free_thread_parts(m);
        return rc;
    }
    pthread_mutex_lock(&m->mu);
    while (!m->reported)
        pthread_cond_wait(&m->cv, &m->mu);
    rc = m->rc;
    pthread_mutex_unlock(&m->mu);
    if (rc < 0) {
        pthread_join(m->thread, NULL);
        free_thread_parts(m);
        return rc;
    }
    m->pid = getpid();
    rc = mproc__mgr_client_new(&m->cl, m->address, &m->cfg.opts.conn);
    if (rc < 0) {
        mproc_manager_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

/* ---- both ---------------------------------------------------------------- */

const char *mproc_manager_address(const mproc_manager *m)
{
    return m ? m->address : NULL;
}

pid_t mproc_manager_pid(const mproc_manager *m)
{
    return m ? m->pid : 0;
}

int mproc_manager_is_alive(mproc_manager *m)
{
    if (!m)
        return -EINVAL;
    if (m->threaded)
        return !m->joined && !__atomic_load_n(&m->done, __ATOMIC_ACQUIRE);
    if (!m->proc)
        return 0;
    return mproc_process_is_alive(m->proc) == 1;
}

int mproc_manager_shutdown(mproc_manager *m, double timeout)
{
    if (!m)
        return -EINVAL;
    if (m->threaded) {
        if (m->joined)
            return 0;
        __atomic_store_n(&m->stop, 1, __ATOMIC_RELEASE);
        ssize_t w = write(m->wake[1], "x", 1);
        (void)w;
        mproc__deadline dl = mproc__deadline_from(timeout);
        while (!__atomic_load_n(&m->done, __ATOMIC_ACQUIRE)) {
            if (mproc__deadline_expired(&dl))
                return -ETIMEDOUT;
            usleep(1000);
        }
        pthread_join(m->thread, NULL);
        m->joined = true;
        return 0;
    }
    if (!m->proc)
        return 0;
    if (m->ctl) {
        mproc_conn_send_bytes(m->ctl, "", 0);
        mproc_conn_free(m->ctl);
        m->ctl = NULL;
    }
    if (mproc_process_join(m->proc, timeout) < 0 ||
        mproc_process_is_alive(m->proc) == 1) {
        mproc_process_kill(m->proc);
        mproc_process_join(m->proc, -1);
    }
    mproc_process_free(m->proc);
    m->proc = NULL;
    return 0;
}

void mproc_manager_free(mproc_manager *m)
{
    if (!m)
        return;
    mproc__mgr_client_unref(m->cl);
    m->cl = NULL;
    mproc_manager_shutdown(m, 10.0);
    if (m->threaded) {
        if (!m->joined) { /* a thread that would not stop: wait for it */
            pthread_join(m->thread, NULL);
        }
        free_thread_parts(m);
        return;
    }
    free(m->address);
    free(m);
}

/* ---- clients
 * ----------------------------------------------------------------- */

int mproc_manager_connect(mproc_manager **out, const char *address,
                          const mproc_conn_opts *opts)
{
    if (!out || !address)
        return -EINVAL;
    *out = NULL;
    mproc_manager *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    m->wake[0] = m->wake[1] = -1;
    m->address = strdup(address);
    int rc =
        m->address ? mproc__mgr_client_new(&m->cl, address, opts) : -ENOMEM;
    mproc_proxy *none = NULL;
    if (rc == 0) { /* BaseManager.connect's dummy request */
        rc = mproc__mgr_create(m->cl, &none, NULL, NULL, NULL, NULL, 0);
    }
    if (rc < 0) {
        mproc__mgr_client_unref(m->cl);
        free(m->address);
        free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int mproc_manager_create(mproc_manager *m, mproc_proxy **out,
                         const char *typeid, const mproc_obj *args,
                         const mproc_obj *kwds, char *err, size_t errcap)
{
    if (!m || !m->cl || !typeid)
        return -EINVAL;
    return mproc__mgr_create(m->cl, out, typeid, args, kwds, err, errcap);
}
