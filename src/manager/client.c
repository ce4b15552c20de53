/*
 * manager/client.c - the client side: a connection to a manager (mproc's
 * or CPython's) and proxies to its objects. Top-level calls (create,
 * incref, decref) each take a connection of their own, as CPython's server
 * requires; method calls go over channels (accept_connection) kept in a
 * pool: a thread takes a free channel for one call and puts it back, so
 * several threads call at once, each on its own connection, and a call
 * that blocks holds only its caller. A forked child opens channels of its
 * own. A proxy holds one reference on the server: the one create gave
 * (no incref/decref round), dropped by mproc_proxy_free.
 * A call is one send and, as a rule, one read: the reply is read whole
 * into a buffer (the channel carries one call at a time, so nothing
 * follows it).
 */
#include "manager/manager_impl.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct mgr_channel mgr_channel;
static void channel_free(mgr_channel *ch);
static void client_sweep(mgr_client *cl, bool gone);

struct mgr_client {
    long refs; /* atomic: the manager handle and each proxy */
    char *address;
    mproc_conn_opts opts;
    void *key;
    pthread_mutex_t mu;
    mgr_channel **free_ch; /* idle channels */
    size_t nfree, capfree;
    pid_t pid; /* the process the channels belong to */
    /* atomic: +1 each time the server went away */
    unsigned long epoch;
};

struct mproc_proxy {
    mgr_client *cl;
    char *typeid;
    mproc_obj *ident;
    unsigned long epoch; /* its client's when made: older is stale */
};

/* ---- the shared client ----------------------------------------------------
 */

int mproc__mgr_client_new(mgr_client **out, const char *address,
                          const mproc_conn_opts *opts)
{
    mgr_client *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->refs = 1;
    mproc__self_init(); /* mproc__me.pid: this process's, kept at fork */
    c->pid = mproc__me.pid;
    pthread_mutex_init(&c->mu, NULL);
    c->address = strdup(address);
    if (opts)
        c->opts = *opts;
    c->opts.backlog = 0;
    if (c->opts.auth == MPROC_AUTH_KEY && c->opts.authkey_len) {
        c->key = malloc(c->opts.authkey_len);
        if (c->key)
            memcpy(c->key, opts->authkey, c->opts.authkey_len);
        c->opts.authkey = c->key;
    }
    if (!c->address ||
        (c->opts.auth == MPROC_AUTH_KEY && c->opts.authkey_len && !c->key)) {
        mproc__mgr_client_unref(c);
        return -ENOMEM;
    }
    *out = c;
    return 0;
}

void mproc__mgr_client_unref(mgr_client *c)
{
    if (!c || __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    for (size_t i = 0; i < c->nfree; i++)
        channel_free(c->free_ch[i]); /* in a fork child: its own copies */
    free(c->free_ch);
    pthread_mutex_destroy(&c->mu);
    free(c->address);
    free(c->key);
    free(c);
}

static mgr_client *client_ref(mgr_client *c)
{
    __atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
    return c;
}

/* Reads one reply on c (a channel or a top-level connection: nothing
 * follows it) and decodes it into *rep: as mproc_conn_recv_obj without a
 * timeout, in one read when the reply is in the socket already. */
static int recv_reply(mproc_conn *c, mproc_obj **rep, char *err, size_t errcap)
{
    unsigned char small[4096], *buf = small;
    size_t have = 0, cap = sizeof small;
    uint64_t len = 0;
    int hdr = 0, rc = 0, fd = mproc_conn_fileno(c);
    *rep = NULL;
    if (fd < 0)
        return MPROC_ECLOSED;
    while (rc == 0) {
        if (hdr == 0 && (hdr = mgr_frame(buf, have, &len)) < 0)
            rc = MPROC_EPROTO;
        else if (hdr > 0 && len > MPROC_CONN_MAX_MESSAGE)
            rc = MPROC_ETOOBIG;
        if (rc < 0 || (hdr > 0 && have >= hdr + len))
            break;
        if (hdr > 0 && hdr + len > cap) { /* a long reply: room for it */
            unsigned char *b = malloc((size_t)(hdr + len));
            if (!b) {
                rc = -ENOMEM;
                break;
            }
            memcpy(b, buf, have);
            buf = b;
            cap = (size_t)(hdr + len);
        }
        size_t want = hdr > 0 ? (size_t)(hdr + len) : cap;
        /* wait in poll, not in read: a blocked read is also woken each
         * time the server takes a request off the socket (the freed
         * buffer space), poll only when the reply is there */
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, -1) < 0 && errno != EINTR) {
            rc = -errno;
            break;
        }
        ssize_t k = read(fd, buf + have, want - have);
        if (k > 0)
            have += (size_t)k;
        else if (k == 0)
            rc = have ? MPROC_ETRUNC : MPROC_EEOF;
        else if (errno != EINTR)
            rc = -errno;
    }
    if (rc == 0)
        rc = mproc_pickle_loads(buf + hdr, (size_t)len, NULL, rep, err, errcap);
    if (buf != small)
        free(buf);
    return rc;
}

/* Sends (ident, name, args, kwds) on c and reads the reply: 0 with the
 * kind's code in *kind (0 #RETURN, 1 #ERROR, 2 #TRACEBACK or
 * #UNSERIALIZABLE, 3 #PROXY) and its value in *value (new reference). */
static int exchange(mproc_conn *c, const mproc_obj *ident, const char *name,
                    const mproc_obj *args, const mproc_obj *kwds, int *kind,
                    mproc_obj **value, char *err, size_t errcap)
{
    mproc_obj *req = mproc_obj_tuple_of(
        4, ident ? mproc_obj_ref((mproc_obj *)ident) : mproc_obj_none(),
        mproc_obj_str_c(name),
        args ? mproc_obj_ref((mproc_obj *)args) : mproc_obj_tuple_new(0),
        kwds ? mproc_obj_ref((mproc_obj *)kwds) : mproc_obj_dict_new());
    if (!req)
        return -ENOMEM;
    int rc = mproc_conn_send_obj(c, req);
    mproc_obj_unref(req);
    if (rc < 0)
        return rc;
    mproc_obj *rep;
    rc = recv_reply(c, &rep, err, errcap);
    if (rc < 0)
        return rc;
    const char *k = mproc_obj_str_value(mproc_obj_item(rep, 0), NULL);
    if (mproc_obj_type_of(rep) != MPROC_OBJ_TUPLE || mproc_obj_len(rep) != 2 ||
        !k) {
        mproc_obj_unref(rep);
        return MPROC_EPROTO;
    }
    *kind = strcmp(k, "#RETURN") == 0  ? 0
            : strcmp(k, "#ERROR") == 0 ? 1
            : strcmp(k, "#PROXY") == 0 ? 3
                                       : 2;
    *value = mproc_obj_ref(mproc_obj_item(rep, 1));
    mproc_obj_unref(rep);
    return 0;
}

/* Writes what a remote failure says into err: "KeyError('x')" for an
 * exception (its repr), the traceback's last line otherwise. */
static void describe(const mproc_obj *v, char *err, size_t errcap)
{
    if (!err || errcap == 0)
        return;
    err[0] = 0;
    const char *s = mproc_obj_str_value(v, NULL);
    if (s) {
        size_t n = strlen(s);
        while (n && s[n - 1] == '\n')
            n--;
        size_t start = n;
        while (start && s[start - 1] != '\n')
            start--;
        snprintf(err, errcap, "%.*s", (int)(n - start), s + start);
        return;
    }
    char *r = NULL;
    if (mproc_obj_repr(v, &r, NULL) == 0)
        snprintf(err, errcap, "%s", r);
    free(r);
}

/* A top-level call on a connection of its own. */
static int top_call(mgr_client *cl, const char *name, const mproc_obj *args,
                    const mproc_obj *kwds, int *kind, mproc_obj **value)
{
    mproc_conn *c;
    int rc = mproc_client(&c, cl->address, &cl->opts);
    if (rc < 0)
        return rc;
    rc = exchange(c, NULL, name, args, kwds, kind, value, NULL, 0);
    mproc_conn_free(c);
    return rc;
}

/* A channel: a connection past accept_connection, with the thread that
 * last called on it and how many acquires it holds (locks, semaphores,
 * conditions: the server knows the holder by its connection, CPython's by
 * the thread serving it). A channel holding something goes back to the
 * thread that last used it only, so that its release comes on it. */
typedef struct mgr_channel {
    mproc_conn *c;
    pthread_t tid;
    long held;
} mgr_channel;

static void channel_free(mgr_channel *ch)
{
    if (ch) {
        mproc_conn_free(ch->c);
        free(ch);
    }
}

/* A channel for this thread's call: an idle one this thread used last,
 * else an idle one holding nothing, else a new one. */
static int channel_take(mgr_client *cl, mgr_channel **out)
{
    pthread_t self = pthread_self();
    pthread_mutex_lock(&cl->mu);
    if (cl->pid != mproc__me.pid) { /* a fork child: the parent's channels */
        for (size_t i = 0; i < cl->nfree; i++)
            channel_free(cl->free_ch[i]); /* closes this process's copy */
        cl->nfree = 0;
        cl->pid = mproc__me.pid;
    }
    size_t pick = cl->nfree;
    for (size_t i = cl->nfree; i-- > 0;) {
        if (pthread_equal(cl->free_ch[i]->tid, self)) {
            pick = i;
            break;
        }
        if (pick == cl->nfree && cl->free_ch[i]->held == 0)
            pick = i;
    }
    mgr_channel *ch = NULL;
    if (pick < cl->nfree) {
        ch = cl->free_ch[pick];
        memmove(&cl->free_ch[pick], &cl->free_ch[pick + 1],
                (cl->nfree - pick - 1) * sizeof(mgr_channel *));
        cl->nfree--;
    }
    pthread_mutex_unlock(&cl->mu);
    if (ch && mproc_conn_poll(ch->c, 0) != 0) { /* idle yet readable: */
        channel_free(ch);                       /* the server went away */
        ch = NULL;
        client_sweep(cl, true);
    }
    if (ch) {
        *out = ch;
        return 0;
    }
    if (!(ch = calloc(1, sizeof *ch)))
        return -ENOMEM;
    int rc = mproc_client(&ch->c, cl->address, &cl->opts);
    if (rc < 0) {
        free(ch);
        return rc;
    }
    char name[64];
    snprintf(name, sizeof name, "mproc-%d", (int)getpid());
    mproc_obj *args = mproc_obj_tuple_of(1, mproc_obj_str_c(name));
    int kind = 0;
    mproc_obj *v = NULL;
    rc = args ? exchange(ch->c, NULL, "accept_connection", args, NULL, &kind,
                         &v, NULL, 0)
              : -ENOMEM;
    mproc_obj_unref(args);
    mproc_obj_unref(v);
    if (rc == 0 && kind != 0)
        rc = MPROC_EREMOTE;
    if (rc < 0) {
        channel_free(ch);
        return rc;
    }
    *out = ch;
    return 0;
}

/* Drops the idle channels if one of them (or, gone, the server) is
 * closed: a server restarted at the address gets fresh channels, and
 * the proxies made before name objects it never had (-ESTALE). */
static void client_sweep(mgr_client *cl, bool gone)
{
    pthread_mutex_lock(&cl->mu);
    for (size_t i = 0; i < cl->nfree && !gone; i++)
        gone = cl->pid == getpid() && mproc_conn_poll(cl->free_ch[i]->c, 0);
    if (gone) {
        for (size_t i = 0; i < cl->nfree; i++)
            channel_free(cl->free_ch[i]);
        cl->nfree = 0;
        __atomic_add_fetch(&cl->epoch, 1, __ATOMIC_ACQ_REL);
    }
    pthread_mutex_unlock(&cl->mu);
}

static bool proxy_stale(const mproc_proxy *p)
{
    return p->epoch != __atomic_load_n(&p->cl->epoch, __ATOMIC_ACQUIRE);
}

static void channel_put(mgr_client *cl, mgr_channel *ch, bool broken)
{
    ch->tid = pthread_self();
    pthread_mutex_lock(&cl->mu);
    if (!broken && cl->pid == mproc__me.pid && cl->nfree == cl->capfree) {
        size_t cap = cl->capfree ? cl->capfree * 2 : 4;
        mgr_channel **p = realloc(cl->free_ch, cap * sizeof(void *));
        if (p) {
            cl->free_ch = p;
            cl->capfree = cap;
        }
    }
    if (!broken && cl->pid == mproc__me.pid && cl->nfree < cl->capfree) {
        cl->free_ch[cl->nfree++] = ch;
        ch = NULL;
    }
    pthread_mutex_unlock(&cl->mu);
    channel_free(ch);
}

/* ---- proxies ----------------------------------------------------------------
 */

static int proxy_new(mgr_client *cl, const char *typeid, mproc_obj *ident,
                     mproc_proxy **out)
{
    mproc_proxy *p = calloc(1, sizeof *p);
    if (!p || !(p->typeid = strdup(typeid))) {
        free(p);
        mproc_obj_unref(ident);
        return -ENOMEM;
    }
    p->cl = client_ref(cl);
    p->ident = ident;
    p->epoch = __atomic_load_n(&cl->epoch, __ATOMIC_ACQUIRE);
    *out = p;
    return 0;
}

int mproc__mgr_create(mgr_client *cl, mproc_proxy **out, const char *typeid,
                      const mproc_obj *args, const mproc_obj *kwds, char *err,
                      size_t errcap)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (err && errcap)
        err[0] = 0;
    if (!typeid) { /* no type: a dummy request, to check the server */
        int kind = 0;
        mproc_obj *v = NULL;
        int rc = top_call(cl, "dummy", NULL, NULL, &kind, &v);
        mproc_obj_unref(v);
        return rc < 0 ? rc : kind != 0 ? MPROC_EREMOTE : 0;
    }
    if ((args && mproc_obj_type_of(args) != MPROC_OBJ_TUPLE) ||
        (kwds && mproc_obj_type_of(kwds) != MPROC_OBJ_DICT))
        return -EINVAL;
    client_sweep(cl, false); /* a restarted server: new proxies are its */
    size_t n = mproc_obj_len(args);
    mproc_obj *all = mproc_obj_tuple_new(n + 1);
    if (!all || mproc_obj_tuple_set(all, 0, mproc_obj_str_c(typeid)) < 0) {
        mproc_obj_unref(all);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        mproc_obj_tuple_set(all, i + 1, mproc_obj_ref(mproc_obj_item(args, i)));
    int kind = 0;
    mproc_obj *v = NULL;
    int rc = top_call(cl, "create", all, kwds, &kind, &v);
    mproc_obj_unref(all);
    if (rc < 0)
        return rc;
    if (kind != 0) {
        describe(v, err, errcap);
        mproc_obj_unref(v);
        return MPROC_EREMOTE;
    }
    mproc_obj *ident = mproc_obj_item(v, 0);
    if (mproc_obj_type_of(v) != MPROC_OBJ_TUPLE ||
        !mproc_obj_str_value(ident, NULL)) {
        mproc_obj_unref(v);
        return MPROC_EPROTO;
    }
    rc = proxy_new(cl, typeid, mproc_obj_ref(ident), out);
    mproc_obj_unref(v);
    return rc;
}

int mproc_proxy_call(mproc_proxy *p, const char *method, const mproc_obj *args,
                     const mproc_obj *kwds, mproc_obj **result, char *err,
                     size_t errcap)
{
    if (result)
        *result = NULL;
    if (err && errcap)
        err[0] = 0;
    if (!p || !method || (args && mproc_obj_type_of(args) != MPROC_OBJ_TUPLE) ||
        (kwds && mproc_obj_type_of(kwds) != MPROC_OBJ_DICT))
        return -EINVAL;
    mgr_channel *ch;
    int rc = channel_take(p->cl, &ch);
    if (rc < 0)
        return rc;
    if (proxy_stale(p)) { /* its server went away since it was made */
        channel_put(p->cl, ch, false);
        return -ESTALE;
    }
    int kind = 0;
    mproc_obj *v = NULL;
    rc = exchange(ch->c, p->ident, method, args, kwds, &kind, &v, err, errcap);
    if (rc == 0 && kind == 0 && strcmp(method, "acquire") == 0 &&
        mproc_obj_truth(v))
        ch->held++;
    else if (rc == 0 && kind == 0 && strcmp(method, "release") == 0 &&
             ch->held > 0)
        ch->held--;
    channel_put(p->cl, ch, rc < 0 && rc != MPROC_EPICKLE);
    if (rc < 0 && rc != MPROC_EPICKLE)
        client_sweep(p->cl, false);
    if (rc == MPROC_EPICKLE)  /* a reply mproc cannot decode: an exception */
        return MPROC_EREMOTE; /* of a class off the allow-list */
    if (rc < 0)
        return rc;
    if (kind == 1 || kind == 2) {
        describe(v, err, errcap);
        const char *mod = mproc_obj_reduce_module(v);
        const char *name = mproc_obj_reduce_name(v);
        bool q = kind == 1 && mod && strcmp(mod, "queue") == 0;
        rc = q && strcmp(name, "Empty") == 0  ? MPROC_EEMPTY
             : q && strcmp(name, "Full") == 0 ? MPROC_EFULL
                                              : MPROC_EREMOTE;
    } else if (kind == 3) {
        rc = 1;
    }
    if (kind == 2 && mproc__mgr_unknown_ident(v, p->ident))
        rc = -ESTALE; /* the server does not know the object (restarted) */
    if (result)
        *result = v;
    else
        mproc_obj_unref(v);
    return rc;
}

int mproc_proxy_from_reply(mproc_proxy *p, const mproc_obj *reply,
                           mproc_proxy **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    const mproc_obj *tok = mproc_obj_item(reply, 1);
    const mproc_obj *st = mproc_obj_reduce_state(tok);
    const char *typeid = mproc_obj_str_value(mproc_obj_item(st, 0), NULL);
    const mproc_obj *ident = mproc_obj_item(st, 2);
    if (!p || mproc_obj_len(st) != 3 || !typeid ||
        !mproc_obj_str_value(ident, NULL))
        return -EINVAL;
    return proxy_new(p->cl, typeid, mproc_obj_ref((mproc_obj *)ident), out);
}

const char *mproc_proxy_typeid(const mproc_proxy *p)
{
    return p ? p->typeid : NULL;
}

const char *mproc_proxy_ident(const mproc_proxy *p)
{
    return p ? mproc_obj_str_value(p->ident, NULL) : NULL;
}

void mproc_proxy_free(mproc_proxy *p)
{
    if (!p)
        return;
    mproc_obj *args = proxy_stale(p)
                          ? NULL /* its object went with its server */
                          : mproc_obj_tuple_of(1, mproc_obj_ref(p->ident));
    int kind;
    mproc_obj *v = NULL;
    if (args && top_call(p->cl, "decref", args, NULL, &kind, &v) == 0)
        mproc_obj_unref(v);
    mproc_obj_unref(args);
    mproc_obj_unref(p->ident);
    mproc__mgr_client_unref(p->cl);
    free(p->typeid);
    free(p);
}

/* ---- passing proxies to children ---------------------------------------- */

/* A proxy travels as its manager's address, auth mode and key, its type
 * id and ident; the child's copy takes a reference of its own (incref),
 * dropped when its target returns. */
static int put_str(mproc_export *ex, const void *s, size_t n)
{
    uint32_t len = (uint32_t)n;
    int rc = mproc_export_bytes(ex, &len, sizeof len);
    return rc < 0 ? rc : mproc_export_bytes(ex, s, n);
}

static int proxy_export(const void *obj, mproc_export *ex)
{
    const mproc_proxy *p = obj;
    size_t idn;
    const char *id = mproc_obj_str_value(p->ident, &idn);
    int32_t auth = (int32_t)p->cl->opts.auth;
    int rc = mproc_export_bytes(ex, &auth, sizeof auth);
    if (rc == 0)
        rc = put_str(ex, p->cl->address, strlen(p->cl->address));
    if (rc == 0)
        rc = put_str(ex, p->cl->key ? p->cl->key : "",
                     p->cl->key ? p->cl->opts.authkey_len : 0);
    if (rc == 0)
        rc = put_str(ex, p->typeid, strlen(p->typeid));
    if (rc == 0)
        rc = put_str(ex, id, idn);
    return rc;
}

static char *get_str(mproc_import *im, size_t *n)
{
    uint32_t len;
    if (mproc_import_bytes(im, &len, sizeof len) < 0 || len > (1u << 20))
        return NULL;
    char *s = malloc((size_t)len + 1);
    if (!s || mproc_import_bytes(im, s, len) < 0) {
        free(s);
        return NULL;
    }
    s[len] = 0;
    *n = len;
    return s;
}

int mproc__mgr_proxy_adopt(mgr_client *cl, const char *typeid, mproc_obj *ident,
                           mproc_proxy **out)
{
    mproc_proxy *p;
    int rc = ident ? proxy_new(cl, typeid, ident, &p) : -ENOMEM;
    if (rc < 0)
        return rc;
    mproc_obj *args = mproc_obj_tuple_of(1, mproc_obj_ref(p->ident));
    int kind = 0;
    mproc_obj *v = NULL;
    rc = args ? top_call(cl, "incref", args, NULL, &kind, &v) : -ENOMEM;
    mproc_obj_unref(args);
    if (rc == 0 && kind != 0)
        rc = mproc__mgr_unknown_ident(v, p->ident) ? -ESTALE : MPROC_EREMOTE;
    mproc_obj_unref(v);
    if (rc < 0) {
        mproc_obj_unref(p->ident);
        mproc__mgr_client_unref(p->cl);
        free(p->typeid);
        free(p);
        return rc;
    }
    *out = p;
    return 0;
}

const char *mproc__mgr_proxy_address(const mproc_proxy *p)
{
    return p->cl->address;
}

static int proxy_import(mproc_import *im, void **out)
{
    int32_t auth;
    size_t an = 0, kn = 0, tn = 0, idn = 0;
    if (mproc_import_bytes(im, &auth, sizeof auth) < 0)
        return MPROC_EPROTO;
    char *addr = get_str(im, &an), *key = get_str(im, &kn);
    char *typeid = get_str(im, &tn), *id = get_str(im, &idn);
    int rc = addr && key && typeid && id ? 0 : MPROC_EPROTO;
    mgr_client *cl = NULL;
    mproc_proxy *p = NULL;
    if (rc == 0) {
        mproc_conn_opts o = {
            .auth = (mproc_auth)auth, .authkey = key, .authkey_len = kn};
        rc = mproc__mgr_client_new(&cl, addr, &o);
    }
    if (rc == 0) /* the child's own reference */
        rc = mproc__mgr_proxy_adopt(cl, typeid, mproc_obj_str(id, idn), &p);
    mproc__mgr_client_unref(cl);
    if (key)
        memset(key, 0, kn);
    free(addr);
    free(key);
    free(typeid);
    free(id);
    if (rc == 0)
        *out = p;
    return rc;
}

static void proxy_release(void *obj)
{
    mproc_proxy_free(obj);
}

const mproc_kind mproc_proxy_kind = {"mproc_proxy", proxy_export, proxy_import,
                                     proxy_release};

int mproc_args_add_proxy(mproc_args *a, mproc_proxy *p)
{
    return p ? mproc_args_add_object(a, &mproc_proxy_kind, p) : -EINVAL;
}

mproc_proxy *mproc_args_proxy(const mproc_args *a, size_t i)
{
    return mproc_args_object(a, i, &mproc_proxy_kind);
}
