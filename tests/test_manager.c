/*
 * test_manager.c - the manager server: started as a child under every
 * start method and served from a thread; on abstract names, paths, TCP v4
 * and v6; CPython's request/response protocol byte for byte through a raw
 * client written here (create, method channels, incref/decref,
 * get_methods, number_of_objects, debug_info, shutdown, the
 * #RETURN/#ERROR/#TRACEBACK/#PROXY replies and the exceptions clients
 * raise); CPython 3.6-3.13 clients (tests/py/manager_peer.py) using every
 * type; failures: a wrong key refused fast while others are served, a
 * client stalled in its handshake or mid-request delaying no one, a
 * client killed mid-request, hostile and oversize requests, TCP without
 * a key refused, a server killed under its clients. The C client's typed
 * helpers against mproc's server and CPython's; types registered from C
 * used by C and CPython clients, and the C client against CPython's
 * BaseManager with the same types in Python.
 */
#include "harness.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

static const char key[] = "secret";
static const char key_hex[] = "736563726574";

static mproc_manager_opts key_opts(void)
{
    mproc_manager_opts o = {0};
    o.conn.auth = MPROC_AUTH_KEY;
    o.conn.authkey = key;
    o.conn.authkey_len = strlen(key);
    return o;
}

static mproc_conn *connect_to(const char *addr, const char *k)
{
    mproc_conn_opts o = {.auth = MPROC_AUTH_KEY,
                         .authkey = k,
                         .authkey_len = strlen(k),
                         .timeout = 10};
    mproc_conn *c;
    CHECK_OK(mproc_client(&c, addr, &o));
    return c;
}

/* Sends (ident, name, args, kwds) (args/kwds stolen; NULL = empty) and
 * returns the reply's value (new reference), its kind into kind. */
static mproc_obj *request(mproc_conn *c, mproc_obj *ident, const char *name,
                          mproc_obj *args, mproc_obj *kwds, char *kind)
{
    mproc_obj *req = mproc_obj_tuple_of(4, ident ? ident : mproc_obj_none(),
                                        mproc_obj_str_c(name),
                                        args ? args : mproc_obj_tuple_new(0),
                                        kwds ? kwds : mproc_obj_dict_new());
    CHECK(req);
    CHECK_OK(mproc_conn_send_obj(c, req));
    mproc_obj_unref(req);
    mproc_obj *rep;
    CHECK_OK(mproc_conn_recv_obj(c, &rep, 10, NULL, 0));
    CHECK_EQ(mproc_obj_type_of(rep), MPROC_OBJ_TUPLE);
    CHECK_EQ(mproc_obj_len(rep), 2);
    const char *k = mproc_obj_str_value(mproc_obj_item(rep, 0), NULL);
    CHECK(k);
    snprintf(kind, 16, "%s", k);
    mproc_obj *v = mproc_obj_ref(mproc_obj_item(rep, 1));
    mproc_obj_unref(rep);
    return v;
}

/* A top-level call on its own connection; returns the #RETURN value. */
static mproc_obj *top(const char *addr, const char *name, mproc_obj *args,
                      mproc_obj *kwds)
{
    mproc_conn *c = connect_to(addr, key);
    char kind[16];
    mproc_obj *v = request(c, NULL, name, args, kwds, kind);
    CHECK_STR(kind, "#RETURN");
    mproc_conn_free(c);
    return v;
}

/* create(typeid, *args) -> the ident (a new str). */
static mproc_obj *create(const char *addr, mproc_obj *args)
{
    mproc_obj *r = top(addr, "create", args, NULL);
    CHECK_EQ(mproc_obj_type_of(r), MPROC_OBJ_TUPLE);
    mproc_obj *id = mproc_obj_ref(mproc_obj_item(r, 0));
    CHECK(mproc_obj_str_value(id, NULL));
    mproc_obj_unref(r);
    return id;
}

static mproc_conn *channel(const char *addr)
{
    mproc_conn *c = connect_to(addr, key);
    char kind[16];
    mproc_obj *v = request(
        c, NULL, "accept_connection",
        mproc_obj_tuple_of(1, mproc_obj_str_c("MainProcess")), NULL, kind);
    CHECK_STR(kind, "#RETURN");
    CHECK_EQ(mproc_obj_type_of(v), MPROC_OBJ_NONE);
    return c;
}

static void check_repr(const mproc_obj *o, const char *want)
{
    char *s;
    CHECK_OK(mproc_obj_repr(o, &s, NULL));
    CHECK_STR(s, want);
    free(s);
}

static int64_t objects(const char *addr)
{
    mproc_obj *n = top(addr, "number_of_objects", NULL, NULL);
    int64_t v = -1;
    CHECK_OK(mproc_obj_int_value(n, &v));
    mproc_obj_unref(n);
    return v;
}

/* The protocol on one server: every top-level call, a method channel, the
 * reply kinds and the exceptions. */
static void exercise(const char *addr)
{
    char kind[16];
    mproc_obj *v = top(addr, "dummy", NULL, NULL);
    CHECK_EQ(mproc_obj_type_of(v), MPROC_OBJ_NONE);
    mproc_obj_unref(v);
    CHECK_EQ(objects(addr), 0);

    mproc_obj *d = create(addr, mproc_obj_tuple_of(1, mproc_obj_str_c("dict")));
    mproc_obj *l =
        create(addr, mproc_obj_tuple_of(2, mproc_obj_str_c("list"),
                                        mproc_obj_tuple_of(2, mproc_obj_int(1),
                                                           mproc_obj_int(2))));
    CHECK_EQ(objects(addr), 2);
    mproc_conn *c = channel(addr);
    v = request(c, mproc_obj_ref(d), "__setitem__",
                mproc_obj_tuple_of(2, mproc_obj_int(1), mproc_obj_int(1)), NULL,
                kind);
    CHECK_STR(kind, "#RETURN");
    mproc_obj_unref(v);
    v = request(c, mproc_obj_ref(d), "__repr__", NULL, NULL, kind);
    CHECK_STR(kind, "#RETURN");
    CHECK_STR(mproc_obj_str_value(v, NULL), "{1: 1}");
    mproc_obj_unref(v);
    /* a missing key: KeyError('x') as an exception value */
    v = request(c, mproc_obj_ref(d), "__getitem__",
                mproc_obj_tuple_of(1, mproc_obj_str_c("x")), NULL, kind);
    CHECK_STR(kind, "#ERROR");
    CHECK_EQ(mproc_obj_is_exception(v), 1);
    check_repr(v, "KeyError('x')");
    mproc_obj_unref(v);
    /* a method not exposed: a traceback, the channel stays */
    v = request(c, mproc_obj_ref(d), "__class__", NULL, NULL, kind);
    CHECK_STR(kind, "#TRACEBACK");
    mproc_obj_unref(v);
    /* an unknown ident: a traceback */
    v = request(c, mproc_obj_str_c("123"), "__len__", NULL, NULL, kind);
    CHECK_STR(kind, "#TRACEBACK");
    mproc_obj_unref(v);
    /* the list */
    v = request(c, mproc_obj_ref(l), "append",
                mproc_obj_tuple_of(1, mproc_obj_str_c("\xc3\xa9")), NULL, kind);
    mproc_obj_unref(v);
    v = request(c, mproc_obj_ref(l), "reverse", NULL, NULL, kind);
    mproc_obj_unref(v);
    v = request(c, mproc_obj_ref(l), "#GETVALUE", NULL, NULL, kind);
    CHECK_STR(kind, "#RETURN");
    check_repr(v, "['\xc3\xa9', 2, 1]");
    mproc_obj_unref(v);
    v = request(c, mproc_obj_ref(l), "__getitem__",
                mproc_obj_tuple_of(1, mproc_obj_int(7)), NULL, kind);
    CHECK_STR(kind, "#ERROR");
    check_repr(v, "IndexError('list index out of range')");
    mproc_obj_unref(v);
    v = request(c, mproc_obj_ref(l), "remove",
                mproc_obj_tuple_of(1, mproc_obj_int(7)), NULL, kind);
    CHECK_STR(kind, "#ERROR");
    CHECK_STR(mproc_obj_reduce_name(v), "ValueError");
    mproc_obj_unref(v);
    /* a dict's __iter__: a proxy (exposed, Token) to an Iterator */
    v = request(c, mproc_obj_ref(d), "__iter__", NULL, NULL, kind);
    CHECK_STR(kind, "#PROXY");
    mproc_obj *tok = mproc_obj_item(v, 1);
    CHECK_STR(mproc_obj_reduce_name(tok), "Token");
    mproc_obj *st = mproc_obj_reduce_state(tok);
    CHECK_STR(mproc_obj_str_value(mproc_obj_item(st, 0), NULL), "Iterator");
    mproc_obj *it = mproc_obj_ref(mproc_obj_item(st, 2));
    mproc_obj_unref(v);
    CHECK_EQ(objects(addr), 3);
    v = request(c, mproc_obj_ref(it), "__next__", NULL, NULL, kind);
    CHECK_STR(kind, "#RETURN");
    check_repr(v, "1");
    mproc_obj_unref(v);
    v = request(c, mproc_obj_ref(it), "__next__", NULL, NULL, kind);
    CHECK_STR(kind, "#ERROR");
    check_repr(v, "StopIteration()");
    mproc_obj_unref(v);
    /* get_methods takes the Token */
    v = top(addr, "get_methods",
            mproc_obj_tuple_of(
                1, mproc_obj_ref(tok = mproc_obj_reduce(
                                     "multiprocessing.managers", "Token",
                                     mproc_obj_tuple_new(0),
                                     mproc_obj_tuple_of(
                                         3, mproc_obj_str_c("dict"),
                                         mproc_obj_none(), mproc_obj_ref(d)),
                                     true))),
            NULL);
    mproc_obj_unref(tok);
    CHECK(mproc_obj_len(v) >= 15);
    mproc_obj_unref(v);
    /* incref / decref: the Iterator goes at 0 */
    v = top(addr, "incref", mproc_obj_tuple_of(1, mproc_obj_ref(it)), NULL);
    mproc_obj_unref(v);
    for (int i = 0; i < 2; i++) {
        v = top(addr, "decref", mproc_obj_tuple_of(1, mproc_obj_ref(it)), NULL);
        mproc_obj_unref(v);
    }
    CHECK_EQ(objects(addr), 2);
    /* decref of an unknown ident: a traceback */
    mproc_conn *t = connect_to(addr, key);
    v = request(t, NULL, "decref", mproc_obj_tuple_of(1, mproc_obj_ref(it)),
                NULL, kind);
    CHECK_STR(kind, "#TRACEBACK");
    mproc_obj_unref(v);
    mproc_conn_free(t);
    /* create of an unknown type id: a traceback */
    t = connect_to(addr, key);
    v = request(t, NULL, "create",
                mproc_obj_tuple_of(1, mproc_obj_str_c("Nope")), NULL, kind);
    CHECK_STR(kind, "#TRACEBACK");
    mproc_obj_unref(v);
    mproc_conn_free(t);
    /* an unknown top-level function */
    t = connect_to(addr, key);
    v = request(t, NULL, "os.system", NULL, NULL, kind);
    CHECK_STR(kind, "#TRACEBACK");
    mproc_obj_unref(v);
    mproc_conn_free(t);
    v = top(addr, "debug_info", NULL, NULL);
    CHECK(strstr(mproc_obj_str_value(v, NULL), "refcount=1"));
    mproc_obj_unref(v);
    mproc_obj_unref(it);
    mproc_conn_free(c);
    v = top(addr, "decref", mproc_obj_tuple_of(1, d), NULL);
    mproc_obj_unref(v);
    v = top(addr, "decref", mproc_obj_tuple_of(1, l), NULL);
    mproc_obj_unref(v);
    CHECK_EQ(objects(addr), 0);
}

/* A manager in a child process under each start method, on each kind of
 * address; then stopped, the child reaped. */
static void test_start_every_method(void)
{
    const char *addrs[] = {NULL, "127.0.0.1:0", "[::1]:0",
                           "/tmp/mproc-mgr.sock"};
    for (int m = 0; m < 3; m++) {
        CHECK_OK(mproc_set_start_method(mproc_test_methods[m]));
        for (int a = 0; a < 4; a++) {
            mproc_manager *mg;
            mproc_manager_opts o = key_opts();
            int rc = mproc_manager_start(&mg, addrs[a], &o);
            if (rc == -EADDRNOTAVAIL || rc == -EAFNOSUPPORT)
                continue; /* no IPv6 here */
            CHECK_OK(rc);
            CHECK(mproc_manager_pid(mg) != getpid());
            CHECK_EQ(mproc_manager_is_alive(mg), 1);
            exercise(mproc_manager_address(mg));
            CHECK_OK(mproc_manager_shutdown(mg, 10));
            CHECK_EQ(mproc_manager_is_alive(mg), 0);
            mproc_manager_free(mg);
        }
        CHECK(access("/tmp/mproc-mgr.sock", F_OK) != 0);
    }
}

static void test_serve_in_thread(void)
{
    mproc_manager *mg;
    mproc_manager_opts o = key_opts();
    CHECK_OK(mproc_manager_serve(&mg, "@mproc-test-mgr", &o));
    CHECK_EQ(mproc_manager_pid(mg), getpid());
    CHECK_STR(mproc_manager_address(mg), "@mproc-test-mgr");
    exercise(mproc_manager_address(mg));
    /* a second one on the same name cannot bind */
    mproc_manager *m2;
    CHECK_ERR(mproc_manager_serve(&m2, "@mproc-test-mgr", &o), -EADDRINUSE);
    CHECK_OK(mproc_manager_shutdown(mg, 10));
    CHECK_EQ(mproc_manager_is_alive(mg), 0);
    CHECK_OK(mproc_manager_shutdown(mg, 10)); /* idempotent */
    mproc_manager_free(mg);
    /* the name is free again */
    CHECK_OK(mproc_manager_serve(&mg, "@mproc-test-mgr", &o));
    mproc_manager_free(mg);
}

/* TCP without a key is refused unless asked for; the default key is the
 * process authkey. */
static void test_authkeys(void)
{
    mproc_manager *mg;
    mproc_manager_opts o = {0};
    o.conn.auth = MPROC_AUTH_NONE;
    CHECK_ERR(mproc_manager_serve(&mg, "127.0.0.1:0", &o), -EPERM);
    CHECK_ERR(mproc_manager_start(&mg, "127.0.0.1:0", &o), -EPERM);
    o.allow_tcp_without_authkey = 1;
    CHECK_OK(mproc_manager_serve(&mg, "127.0.0.1:0", &o));
    mproc_conn_opts none = {.auth = MPROC_AUTH_NONE};
    mproc_conn *c;
    CHECK_OK(mproc_client(&c, mproc_manager_address(mg), &none));
    char kind[16];
    mproc_obj *v = request(c, NULL, "dummy", NULL, NULL, kind);
    CHECK_STR(kind, "#RETURN");
    mproc_obj_unref(v);
    mproc_conn_free(c);
    mproc_manager_free(mg);
    /* the process key by default */
    CHECK_OK(mproc_manager_serve(&mg, NULL, NULL));
    mproc_conn_opts pk = {.auth = MPROC_AUTH_PROCESS};
    CHECK_OK(mproc_client(&c, mproc_manager_address(mg), &pk));
    mproc_conn_free(c);
    mproc_manager_free(mg);
}

/* A wrong key fails fast; clients stalled in the handshake or in the
 * middle of a request, and one killed mid-request, delay nobody. */
static void test_stalled_and_hostile_clients(void)
{
    mproc_manager *mg;
    mproc_manager_opts o = key_opts();
    o.max_request = 4096;
    CHECK_OK(mproc_manager_start(&mg, "127.0.0.1:0", &o));
    const char *addr = mproc_manager_address(mg);
    const char *colon = strrchr(addr, ':');
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)atoi(colon + 1)),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    /* 40 raw sockets that never answer the challenge */
    int stalled[40];
    for (int i = 0; i < 40; i++) {
        stalled[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        CHECK(stalled[i] >= 0);
        CHECK_OK(connect(stalled[i], (struct sockaddr *)&sa, sizeof sa));
    }
    /* a wrong key: refused, fast */
    double t0 = mproc_test_now();
    mproc_conn_opts bad = {.auth = MPROC_AUTH_KEY,
                           .authkey = "wrong",
                           .authkey_len = 5,
                           .timeout = 5};
    mproc_conn *c;
    CHECK_ERR(mproc_client(&c, addr, &bad), MPROC_EAUTH);
    CHECK(mproc_test_now() - t0 < 1.0);
    /* a channel stalled mid-request: half a frame */
    mproc_conn *half = channel(addr);
    CHECK_EQ(write(mproc_conn_fileno(half), "\x00\x00\x00\x40\x80\x04", 6), 6);
    /* a child killed mid-request */
    mproc_obj *l = create(addr, mproc_obj_tuple_of(1, mproc_obj_str_c("list")));
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        mproc_conn *k = channel(addr);
        ssize_t w = write(mproc_conn_fileno(k), "\x00\x00\x10\x00\x80\x04", 6);
        (void)w;
        kill(getpid(), SIGKILL);
    }
    int st;
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    /* others are served, promptly */
    t0 = mproc_test_now();
    mproc_conn *ch = channel(addr);
    char kind[16];
    for (int i = 0; i < 100; i++) {
        mproc_obj *v =
            request(ch, mproc_obj_ref(l), "append",
                    mproc_obj_tuple_of(1, mproc_obj_int(i)), NULL, kind);
        CHECK_STR(kind, "#RETURN");
        mproc_obj_unref(v);
    }
    CHECK(mproc_test_now() - t0 < 2.0);
    /* hostile bytes on a channel: a traceback, the channel goes on */
    CHECK_OK(mproc_conn_send_bytes(ch, "\x80\x04garbage", 9));
    mproc_obj *v;
    CHECK_OK(mproc_conn_recv_obj(ch, &v, 10, NULL, 0));
    CHECK_STR(mproc_obj_str_value(mproc_obj_item(v, 0), NULL), "#TRACEBACK");
    mproc_obj_unref(v);
    /* a pickle that would run code: refused the same way */
    static const char evil[] = "\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x02id"
                               "\x85R.";
    CHECK_OK(mproc_conn_send_bytes(ch, evil, sizeof evil - 1));
    CHECK_OK(mproc_conn_recv_obj(ch, &v, 10, NULL, 0));
    CHECK_STR(mproc_obj_str_value(mproc_obj_item(v, 0), NULL), "#TRACEBACK");
    CHECK(strstr(mproc_obj_str_value(mproc_obj_item(v, 1), NULL), "os.system"));
    mproc_obj_unref(v);
    /* not a 4-tuple */
    mproc_obj *junk = mproc_obj_tuple_of(1, mproc_obj_int(1));
    CHECK_OK(mproc_conn_send_obj(ch, junk));
    mproc_obj_unref(junk);
    CHECK_OK(mproc_conn_recv_obj(ch, &v, 10, NULL, 0));
    CHECK_STR(mproc_obj_str_value(mproc_obj_item(v, 0), NULL), "#TRACEBACK");
    mproc_obj_unref(v);
    v = request(ch, mproc_obj_ref(l), "__len__", NULL, NULL, kind);
    CHECK_STR(kind, "#RETURN");
    check_repr(v, "100");
    mproc_obj_unref(v);
    /* over the size limit: that connection is closed */
    char *big = calloc(1, 8192);
    CHECK(big);
    CHECK_OK(mproc_conn_send_bytes(ch, big, 8192));
    free(big);
    int rc = mproc_conn_recv_obj(ch, &v, 10, NULL, 0);
    CHECK(rc == MPROC_EEOF || rc == -ECONNRESET); /* unread bytes: a reset */
    mproc_conn_free(ch);
    CHECK_EQ(objects(addr), 1);
    for (int i = 0; i < 40; i++)
        close(stalled[i]);
    mproc_conn_free(half);
    mproc_obj_unref(l);
    CHECK_OK(mproc_manager_shutdown(mg, 10));
    mproc_manager_free(mg);
}

/* Sends n requests (ident, name, args) on c without reading a reply. */
static void pipeline(mproc_conn *c, const mproc_obj *ident, const char *name,
                     mproc_obj *args, int n)
{
    mproc_obj *req =
        mproc_obj_tuple_of(4, mproc_obj_ref((mproc_obj *)ident),
                           mproc_obj_str_c(name), args, mproc_obj_dict_new());
    CHECK(req);
    for (int i = 0; i < n; i++)
        CHECK_OK(mproc_conn_send_obj(c, req));
    mproc_obj_unref(req);
}

/* Clients that send requests and do not read the replies (their sockets
 * full) delay no one: the server keeps their replies and writes them as
 * they read, and drops a client whose unread replies pass max_output;
 * one that reads late gets every reply, in order. Under each start
 * method (max_output reaches a spawned server). */
static void test_slow_readers(void)
{
    for (int m = 0; m < 3; m++) {
        CHECK_OK(mproc_set_start_method(mproc_test_methods[m]));
        mproc_manager *mg;
        mproc_manager_opts o = key_opts();
        o.max_output = 4u << 20;
        CHECK_OK(mproc_manager_start(&mg, NULL, &o));
        const char *addr = mproc_manager_address(mg);
        char *big = malloc(65536);
        CHECK(big);
        memset(big, 'x', 65536);
        mproc_obj *s = mproc_obj_str(big, 65536);
        free(big);
        mproc_obj *l = create(
            addr, mproc_obj_tuple_of(2, mproc_obj_str_c("list"),
                                     mproc_obj_tuple_of(1, mproc_obj_ref(s))));
        mproc_obj *l2 =
            create(addr, mproc_obj_tuple_of(1, mproc_obj_str_c("list")));
        /* three that never read: 300 replies of 64 KiB each asked for */
        mproc_conn *stalled[3];
        for (int i = 0; i < 3; i++) {
            stalled[i] = channel(addr);
            pipeline(stalled[i], l, "__getitem__",
                     mproc_obj_tuple_of(1, mproc_obj_int(0)), 300);
        }
        /* one that reads late: 30 replies (about 2 MiB) */
        mproc_conn *late = channel(addr);
        pipeline(late, l, "__getitem__",
                 mproc_obj_tuple_of(1, mproc_obj_int(0)), 30);
        /* the others are served, promptly */
        double t0 = mproc_test_now();
        mproc_conn *ch = channel(addr);
        char kind[16];
        for (int i = 0; i < 100; i++) {
            mproc_obj *v =
                request(ch, mproc_obj_ref(l2), "append",
                        mproc_obj_tuple_of(1, mproc_obj_int(i)), NULL, kind);
            CHECK_STR(kind, "#RETURN");
            mproc_obj_unref(v);
        }
        CHECK(mproc_test_now() - t0 < 4.0); /* a blocked server: 5 s each */
        /* the late reader gets all its replies, in order */
        for (int i = 0; i < 30; i++) {
            mproc_obj *v;
            CHECK_OK(mproc_conn_recv_obj(late, &v, 10, NULL, 0));
            CHECK_STR(mproc_obj_str_value(mproc_obj_item(v, 0), NULL),
                      "#RETURN");
            CHECK_EQ(mproc_obj_eq(mproc_obj_item(v, 1), s), 1);
            mproc_obj_unref(v);
        }
        mproc_obj *v =
            request(late, mproc_obj_ref(l2), "__len__", NULL, NULL, kind);
        check_repr(v, "100");
        mproc_obj_unref(v);
        /* the ones that never read were dropped: what reached their
         * sockets, then the end (maybe in the middle of a reply) */
        for (int i = 0; i < 3; i++) {
            int got = 0, rc;
            while ((rc = mproc_conn_recv_obj(stalled[i], &v, 10, NULL, 0)) ==
                   0) {
                mproc_obj_unref(v);
                got++;
            }
            CHECK(rc == MPROC_EEOF || rc == MPROC_ETRUNC || rc == -ECONNRESET);
            CHECK(got < 300);
            mproc_conn_free(stalled[i]);
        }
        CHECK_EQ(objects(addr), 2);
        mproc_conn_free(late);
        mproc_conn_free(ch);
        mproc_obj_unref(s);
        mproc_obj_unref(l);
        mproc_obj_unref(l2);
        CHECK_OK(mproc_manager_shutdown(mg, 10));
        mproc_manager_free(mg);
    }
}

/* The server's thread count (/proc/PID/status). */
static int threads_of(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    CHECK(f);
    int n = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %d", &n) == 1)
            break;
    fclose(f);
    return n;
}

/* 150 connections that never answer the challenge: the server runs at
 * most 64 handshakes at once (a thread each), cuts the oldest stalled ones
 * for newcomers, and a client behind them all is served. */
static void test_stalled_handshakes(void)
{
    mproc_manager *mg;
    mproc_manager_opts o = key_opts();
    CHECK_OK(mproc_manager_start(&mg, NULL, &o));
    const char *addr = mproc_manager_address(mg);
    pid_t pid = mproc_manager_pid(mg);
    int base = threads_of(pid);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(addr);
    CHECK(addr[0] == '@' && n < sizeof sa.sun_path);
    memcpy(sa.sun_path + 1, addr + 1, n - 1);
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    int stalled[150], ns = 0;
    for (int i = 0; i < 150; i++) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        CHECK(fd >= 0);
        if (connect(fd, (struct sockaddr *)&sa, salen) < 0) {
            CHECK(errno == EAGAIN); /* the backlog is full */
            close(fd);
            break;
        }
        stalled[ns++] = fd;
    }
    CHECK(ns > 100);
    int most = 0;
    for (int i = 0; i < 20; i++) { /* while it accepts them */
        int t = threads_of(pid);
        most = t > most ? t : most;
        poll(NULL, 0, 50);
    }
    CHECK(most > base);
    CHECK(most <= base + 64);
    /* a client behind them all */
    mproc_conn *ch = channel(addr);
    char kind[16];
    mproc_obj *v = top(addr, "dummy", NULL, NULL);
    CHECK_EQ(mproc_obj_type_of(v), MPROC_OBJ_NONE);
    mproc_obj_unref(v);
    mproc_obj *d = create(addr, mproc_obj_tuple_of(1, mproc_obj_str_c("dict")));
    v = request(ch, mproc_obj_ref(d), "__len__", NULL, NULL, kind);
    CHECK_STR(kind, "#RETURN");
    mproc_obj_unref(v);
    CHECK(threads_of(pid) <= base + 64);
    for (int i = 0; i < ns; i++)
        close(stalled[i]);
    mproc_conn_free(ch);
    mproc_obj_unref(d);
    CHECK_OK(mproc_manager_shutdown(mg, 10));
    mproc_manager_free(mg);
}

/* Writes the frame of reply (kind, value) (value stolen) on c in pieces of
 * at most piece bytes, 5 ms apart; only the first cut bytes when cut > 0. */
static void trickle(mproc_conn *c, const char *kind, mproc_obj *value,
                    size_t piece, size_t cut)
{
    mproc_obj *rep = mproc_obj_tuple_of(2, mproc_obj_str_c(kind), value);
    void *body;
    size_t n;
    CHECK_OK(mproc_pickle_dumps(rep, 4, &body, &n));
    mproc_obj_unref(rep);
    unsigned char *frame = malloc(n + 4);
    CHECK(frame);
    for (int i = 0; i < 4; i++)
        frame[i] = (unsigned char)(n >> (24 - 8 * i));
    memcpy(frame + 4, body, n);
    free(body);
    size_t total = cut ? cut : n + 4;
    for (size_t at = 0; at < total;) {
        size_t k = total - at < piece ? total - at : piece;
        CHECK_EQ(write(mproc_conn_fileno(c), frame + at, k), (ssize_t)k);
        at += k;
        poll(NULL, 0, 5);
    }
    free(frame);
}

/* The C client reads a reply however it arrives: in pieces (a long one,
 * and one a byte at a time), not a pickle (an error, the proxy goes on),
 * cut short by a server that dies (MPROC_ETRUNC, then the next call
 * fails at once). A fake server writes them. */
static void test_client_reads_replies(void)
{
    mproc_listener *l;
    mproc_conn_opts co = {
        .auth = MPROC_AUTH_KEY, .authkey = key, .authkey_len = strlen(key)};
    CHECK_OK(mproc_listener_new(&l, NULL, &co));
    char *big = malloc(200000);
    CHECK(big);
    memset(big, 'y', 200000);
    mproc_obj *bigs = mproc_obj_str(big, 200000);
    free(big);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        for (;;) {
            mproc_conn *c;
            if (mproc_listener_accept(l, &c, 30) < 0)
                mproc_test_exit(1);
            mproc_obj *req;
            CHECK_OK(mproc_conn_recv_obj(c, &req, 30, NULL, 0));
            const char *name =
                mproc_obj_str_value(mproc_obj_item(req, 1), NULL);
            if (strcmp(name, "create") == 0) {
                trickle(c, "#RETURN",
                        mproc_obj_tuple_of(
                            2, mproc_obj_str_c("1a"),
                            mproc_obj_tuple_of(1, mproc_obj_str_c("get"))),
                        1 << 20, 0);
            } else if (strcmp(name, "accept_connection") != 0) {
                trickle(c, "#RETURN", mproc_obj_none(), 1 << 20, 0);
            } else {
                trickle(c, "#RETURN", mproc_obj_none(), 1 << 20, 0);
                for (int k = 0; k < 4; k++) {
                    mproc_obj_unref(req);
                    CHECK_OK(mproc_conn_recv_obj(c, &req, 30, NULL, 0));
                    if (k == 0) /* long, in 3 pieces */
                        trickle(c, "#RETURN", mproc_obj_ref(bigs), 70000, 0);
                    else if (k == 1) /* short, a byte at a time */
                        trickle(c, "#RETURN", mproc_obj_int(7), 1, 0);
                    else if (k == 2) /* not a pickle */
                        CHECK_OK(mproc_conn_send_bytes(c, "\x80\x04junk", 6));
                    else /* cut short: the server dies */
                        trickle(c, "#RETURN", mproc_obj_ref(bigs), 1 << 20,
                                1000);
                }
                mproc_test_exit(0);
            }
            mproc_obj_unref(req);
            mproc_conn_free(c);
        }
    }
    mproc_manager *m;
    CHECK_OK(mproc_manager_connect(&m, mproc_listener_address(l), &co));
    mproc_listener_free(l);
    mproc_proxy *p;
    CHECK_OK(mproc_manager_create(m, &p, "dict", NULL, NULL, NULL, 0));
    mproc_obj *k = mproc_obj_str_c("k"), *v = NULL;
    CHECK_OK(mproc_proxy_getitem(p, k, &v));
    CHECK_EQ(mproc_obj_eq(v, bigs), 1);
    mproc_obj_unref(v);
    CHECK_OK(mproc_proxy_getitem(p, k, &v));
    check_repr(v, "7");
    mproc_obj_unref(v);
    CHECK(mproc_proxy_getitem(p, k, &v) < 0);
    CHECK_ERR(mproc_proxy_getitem(p, k, &v), MPROC_ETRUNC);
    int st;
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    int rc = mproc_proxy_getitem(p, k, &v); /* nobody there: at once */
    CHECK(rc == -ECONNREFUSED || rc == -ENOENT);
    mproc_obj_unref(k);
    mproc_obj_unref(bigs);
    mproc_proxy_free(p);
    mproc_manager_free(m);
}

/* 1,000 connections at once (200 where fds are short), over a backlog
 * of 128: all served by the one thread. */
static void test_many_clients(void)
{
    /* 1,000 channels at once: both sides need the fds */
    struct rlimit rl;
    CHECK_OK(getrlimit(RLIMIT_NOFILE, &rl));
    if (rl.rlim_cur < 2200 && rl.rlim_max >= 2200) {
        rl.rlim_cur = 2200;
        CHECK_OK(setrlimit(RLIMIT_NOFILE, &rl));
    }
    int N = rl.rlim_cur >= 2200 ? 1000 : 200;
    mproc_manager *mg;
    mproc_manager_opts o = key_opts();
    CHECK_OK(mproc_manager_start(&mg, NULL, &o));
    const char *addr = mproc_manager_address(mg);
    mproc_conn **cs = calloc((size_t)N, sizeof(void *));
    CHECK(cs);
    for (int i = 0; i < N; i++)
        cs[i] = channel(addr);
    mproc_obj *d = create(addr, mproc_obj_tuple_of(1, mproc_obj_str_c("dict")));
    char kind[16];
    for (int i = 0; i < N; i++) {
        mproc_obj *v = request(
            cs[i], mproc_obj_ref(d), "__setitem__",
            mproc_obj_tuple_of(2, mproc_obj_int(i), mproc_obj_int(i * i)), NULL,
            kind);
        CHECK_STR(kind, "#RETURN");
        mproc_obj_unref(v);
    }
    mproc_obj *v =
        request(cs[0], mproc_obj_ref(d), "__len__", NULL, NULL, kind);
    char want[16];
    snprintf(want, sizeof want, "%d", N);
    check_repr(v, want);
    mproc_obj_unref(v);
    for (int i = 0; i < N; i++)
        mproc_conn_free(cs[i]);
    free(cs);
    mproc_obj_unref(d);
    mproc_manager_free(mg);
}

/* shutdown from a client: the server process exits, its socket path goes. */
static void test_client_shutdown(void)
{
    mproc_manager *mg;
    mproc_manager_opts o = key_opts();
    CHECK_OK(mproc_manager_start(&mg, "/tmp/mproc-mgr-sd.sock", &o));
    mproc_conn *c = connect_to(mproc_manager_address(mg), key);
    char kind[16];
    mproc_obj *v = request(c, NULL, "shutdown", NULL, NULL, kind);
    CHECK_STR(kind, "#RETURN");
    mproc_obj_unref(v);
    mproc_conn_free(c);
    /* answered once the server is gone: no listener any more */
    CHECK(access("/tmp/mproc-mgr-sd.sock", F_OK) != 0);
    double t0 = mproc_test_now();
    while (mproc_manager_is_alive(mg) == 1 && mproc_test_now() - t0 < 10)
        usleep(1000);
    CHECK_EQ(mproc_manager_is_alive(mg), 0);
    CHECK(access("/tmp/mproc-mgr-sd.sock", F_OK) != 0);
    CHECK_OK(mproc_manager_shutdown(mg, 10));
    mproc_manager_free(mg);
}

/* The server killed: a client's next call fails at once. */
static void test_server_killed(void)
{
    mproc_manager *mg;
    mproc_manager_opts o = key_opts();
    CHECK_OK(mproc_manager_start(&mg, NULL, &o));
    const char *addr = mproc_manager_address(mg);
    mproc_obj *d = create(addr, mproc_obj_tuple_of(1, mproc_obj_str_c("dict")));
    mproc_conn *c = channel(addr);
    kill(mproc_manager_pid(mg), SIGKILL);
    double t0 = mproc_test_now();
    mproc_obj *req =
        mproc_obj_tuple_of(4, d, mproc_obj_str_c("__len__"),
                           mproc_obj_tuple_new(0), mproc_obj_dict_new());
    int rc = mproc_conn_send_obj(c, req);
    mproc_obj_unref(req);
    mproc_obj *v = NULL;
    if (rc == 0)
        rc = mproc_conn_recv_obj(c, &v, 10, NULL, 0);
    CHECK(rc == MPROC_EEOF || rc == -ECONNRESET || rc == -EPIPE);
    CHECK(mproc_test_now() - t0 < 1.0);
    mproc_conn_free(c);
    CHECK_OK(mproc_manager_shutdown(mg, 10));
    CHECK_EQ(mproc_manager_is_alive(mg), 0);
    mproc_manager_free(mg);
}

/* Bad arguments. */
static void test_bad_arguments(void)
{
    mproc_manager *mg;
    CHECK_ERR(mproc_manager_start(NULL, NULL, NULL), -EINVAL);
    CHECK_ERR(mproc_manager_serve(NULL, NULL, NULL), -EINVAL);
    mproc_manager_opts o = {0};
    o.conn.auth = (mproc_auth)7;
    CHECK_ERR(mproc_manager_serve(&mg, NULL, &o), -EINVAL);
    CHECK_ERR(mproc_manager_start(&mg, "no such host:1", NULL), MPROC_EADDR);
    CHECK_ERR(mproc_manager_shutdown(NULL, 1), -EINVAL);
    CHECK_ERR(mproc_manager_is_alive(NULL), -EINVAL);
    CHECK(mproc_manager_address(NULL) == NULL);
    mproc_manager_free(NULL);
}

/* ---- types registered from C ---------------------------------------------
 */

/* A Counter as tests/py/manager_peer.py's Python one: Counter(start=0),
 * increment(n=1), get, fail(msg) raising ValueError(msg), boom failing
 * with -EIO, child and as_dict answering proxies (a Counter, a dict). */
typedef struct counter {
    int64_t value;
} counter;

static long counter_frees; /* atomic: frees run in the serving thread */

static int counter_create(const mproc_obj *args, const mproc_obj *kwds,
                          void **self, mproc_obj **exc)
{
    const mproc_obj *a = mproc_obj_len(args)
                             ? mproc_obj_item(args, 0)
                             : mproc_obj_dict_get_str(kwds, "start");
    int64_t start = 0;
    if (a && mproc_obj_int_value(a, &start) < 0) {
        *exc = mproc_obj_reduce(
            "builtins", "TypeError",
            mproc_obj_tuple_of(1, mproc_obj_str_c("start must be an int")),
            NULL, false);
        return MPROC_EREMOTE;
    }
    if (start < 0) {
        *exc = mproc_obj_reduce(
            "builtins", "ValueError",
            mproc_obj_tuple_of(1, mproc_obj_str_c("start must be >= 0")), NULL,
            false);
        return MPROC_EREMOTE;
    }
    counter *c = malloc(sizeof *c);
    if (!c)
        return -ENOMEM;
    c->value = start;
    *self = c;
    return 0;
}

static void counter_free(void *self)
{
    __atomic_add_fetch(&counter_frees, 1, __ATOMIC_RELAXED);
    free(self);
}

static int counter_increment(void *self, const mproc_obj *args,
                             const mproc_obj *kwds, mproc_obj **result)
{
    (void)kwds;
    counter *c = self;
    int64_t n = 1;
    if (mproc_obj_len(args) &&
        mproc_obj_int_value(mproc_obj_item(args, 0), &n) < 0)
        return MPROC_ETYPE;
    c->value += n;
    *result = mproc_obj_int(c->value);
    return 0;
}

static int counter_get(void *self, const mproc_obj *args, const mproc_obj *kwds,
                       mproc_obj **result)
{
    (void)args, (void)kwds;
    *result = mproc_obj_int(((counter *)self)->value);
    return 0;
}

static int counter_fail(void *self, const mproc_obj *args,
                        const mproc_obj *kwds, mproc_obj **result)
{
    (void)self, (void)kwds;
    *result = mproc_obj_reduce(
        "builtins", "ValueError",
        mproc_obj_tuple_of(1, mproc_obj_ref(mproc_obj_item(args, 0))), NULL,
        false);
    return MPROC_EREMOTE;
}

static int counter_boom(void *self, const mproc_obj *args,
                        const mproc_obj *kwds, mproc_obj **result)
{
    (void)self, (void)kwds, (void)result;
    if (mproc_obj_len(args)) { /* raising a value that is no exception */
        *result = mproc_obj_int(1);
        return MPROC_EREMOTE;
    }
    return -EIO;
}

static int counter_as_dict(void *self, const mproc_obj *args,
                           const mproc_obj *kwds, mproc_obj **result)
{
    (void)args, (void)kwds;
    mproc_obj *d = mproc_obj_dict_new();
    if (!d || mproc_obj_dict_set(d, mproc_obj_str_c("value"),
                                 mproc_obj_int(((counter *)self)->value)) < 0) {
        mproc_obj_unref(d);
        return -ENOMEM;
    }
    *result = d;
    return 0;
}

static int counter_repr(void *self, const mproc_obj *args,
                        const mproc_obj *kwds, mproc_obj **result)
{
    (void)args, (void)kwds;
    char buf[64];
    snprintf(buf, sizeof buf, "Counter(%lld)",
             (long long)((counter *)self)->value);
    *result = mproc_obj_str_c(buf);
    return 0;
}

static const mproc_manager_method counter_methods[] = {
    {"increment", counter_increment, NULL},
    {"get", counter_get, NULL},
    {"fail", counter_fail, NULL},
    {"boom", counter_boom, NULL},
    {"child", counter_get, "Counter"},
    {"as_dict", counter_as_dict, "dict"},
    {"_hidden", counter_get, NULL},
    {"__repr__", counter_repr, NULL},
    {NULL, NULL, NULL}};

static const mproc_manager_type counter_type = {
    "Counter", counter_create, counter_free, counter_methods, NULL};

static int tagged_get(void *self, const mproc_obj *args, const mproc_obj *kwds,
                      mproc_obj **result)
{
    (void)self, (void)args, (void)kwds;
    *result = mproc_obj_str_c("tag");
    return 0;
}

static const mproc_manager_method tagged_methods[] = {
    {"get", tagged_get, NULL},
    {"secret", tagged_get, NULL},
    {NULL, NULL, NULL}};
static const char *const tagged_exposed[] = {"get", NULL};
static const mproc_manager_type tagged_type = {"Tagged", NULL, NULL,
                                               tagged_methods, tagged_exposed};

static const mproc_manager_type *const custom_types[] = {&counter_type,
                                                         &tagged_type};

/* What a C client does with them, and with every type's typed helpers
 * (below). */
static void custom_ops(mproc_manager *m);
static void typed_ops(mproc_manager *m);
static void typed_cond_barrier(mproc_manager *m);

static mproc_manager_opts custom_opts(void)
{
    mproc_manager_opts o = key_opts();
    o.types = custom_types;
    o.ntypes = 2;
    return o;
}

/* ---- CPython clients ---------------------------------------------------- */

static const char *versions[] = {"3.6",  "3.7",  "3.8",  "3.9",
                                 "3.10", "3.11", "3.12", "3.13"};

/* Starts the peer (extra: a 4th argument or NULL). */
static pid_t start_py(const char *python, const char *addr, const char *k,
                      const char *scenario, const char *extra)
{
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        dup2(null, 1);
        const char *argv[] = {python,   mproc_test_py_script("manager_peer.py"),
                              addr,     k,
                              scenario, extra,
                              NULL};
        execv(python, (char *const *)argv);
        mproc_test_exit(127);
    }
    return pid;
}

/* Waits (bounded) for a peer; returns its exit code. */
static int wait_py(pid_t pid)
{
    double t0 = mproc_test_now();
    int st;
    while (waitpid(pid, &st, WNOHANG) != pid) {
        if (mproc_test_now() - t0 > 120) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            mproc_test_fail(__FILE__, __LINE__, "python client hung");
        }
        usleep(10000);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Runs the peer to its end (bounded); returns its exit code. */
static int run_py(const char *python, const char *addr, const char *k,
                  const char *scenario)
{
    return wait_py(start_py(python, addr, k, scenario, NULL));
}

static void test_cpython_clients(void)
{
    int ran = 0;
    for (size_t v = 0; v < sizeof versions / sizeof *versions; v++) {
        const char *python = mproc_test_python(versions[v]);
        if (!python)
            continue;
        ran++;
        mproc_manager *mg;
        mproc_manager_opts o = custom_opts(); /* with types from C */
        /* a child on TCP for the two handshake generations (3.7, 3.13:
         * CPython's clients are several times slower over TCP), else a
         * thread on an abstract name */
        if (v == 1 || v == 7)
            CHECK_OK(mproc_manager_start(&mg, "127.0.0.1:0", &o));
        else
            CHECK_OK(mproc_manager_serve(&mg, NULL, &o));
        const char *addr = mproc_manager_address(mg);
        CHECK_EQ(run_py(python, addr, key_hex, "types"), 0);
        CHECK_EQ(run_py(python, addr, key_hex, "registered"), 0);
        CHECK_EQ(run_py(python, addr, key_hex, "blocking"), 0);
        CHECK_EQ(run_py(python, addr, key_hex, "custom"), 0);
        CHECK_EQ(run_py(python, addr, "77726f6e67", "wrongkey"), 0);
        /* every proxy released at the client's exit */
        double t0 = mproc_test_now();
        while (objects(addr) != 0 && mproc_test_now() - t0 < 5)
            usleep(10000);
        CHECK_EQ(objects(addr), 0);
        mproc_manager_free(mg);
    }
    if (!ran)
        SKIP("no CPython in $MPROC_PYTHON_DIR (default ~/.pyenv/versions)");
}

/* ---- the C client ---------------------------------------------------------
 */

/* What a user does through proxies; the same against mproc's server and
 * CPython's. */
static void client_ops(mproc_manager *m)
{
    char err[256];
    mproc_proxy *d, *l, *it;
    CHECK_OK(mproc_manager_create(m, &d, "dict", NULL, NULL, err, sizeof err));
    CHECK_STR(mproc_proxy_typeid(d), "dict");
    CHECK(mproc_proxy_ident(d) && *mproc_proxy_ident(d));
    mproc_obj *k = mproc_obj_str_c("k"), *x = mproc_obj_str_c("x");
    mproc_obj *one = mproc_obj_int(1), *got = NULL;
    CHECK_OK(mproc_proxy_setitem(d, k, one));
    CHECK_OK(mproc_proxy_getitem(d, k, &got));
    check_repr(got, "1");
    mproc_obj_unref(got);
    CHECK_EQ(mproc_proxy_len(d), 1);
    CHECK_EQ(mproc_proxy_contains(d, k), 1);
    CHECK_EQ(mproc_proxy_contains(d, x), 0);
    CHECK_ERR(mproc_proxy_getitem(d, x, &got), -ENOENT);
    CHECK(got == NULL);
    CHECK_ERR(mproc_proxy_delitem(d, x), -ENOENT);
    /* generic calls: arguments, keywords, exceptions, tracebacks */
    mproc_obj *args = mproc_obj_tuple_of(2, mproc_obj_ref(x), mproc_obj_int(5));
    mproc_obj *r;
    CHECK_EQ(mproc_proxy_call(d, "get", args, NULL, &r, err, sizeof err), 0);
    check_repr(r, "5");
    mproc_obj_unref(r);
    mproc_obj_unref(args);
    mproc_obj *kw = mproc_obj_dict_new();
    CHECK_OK(mproc_obj_dict_set(
        kw, mproc_obj_str_c("\xc3\xa9"),
        mproc_obj_int_from_str("123456789012345678901234567890")));
    CHECK_EQ(mproc_proxy_call(d, "update", NULL, kw, NULL, NULL, 0), 0);
    mproc_obj_unref(kw);
    args = mproc_obj_tuple_of(1, mproc_obj_ref(x));
    CHECK_ERR(
        mproc_proxy_call(d, "__getitem__", args, NULL, &r, err, sizeof err),
        MPROC_EREMOTE);
    CHECK_STR(mproc_obj_reduce_name(r), "KeyError");
    CHECK_STR(err, "KeyError('x')");
    mproc_obj_unref(r);
    CHECK_ERR(
        mproc_proxy_call(d, "no_such_method", args, NULL, &r, err, sizeof err),
        MPROC_EREMOTE);
    CHECK_EQ(mproc_obj_type_of(r), MPROC_OBJ_STR); /* the traceback */
    CHECK(strstr(err, "no_such_method"));
    mproc_obj_unref(r);
    mproc_obj_unref(args);
    char *text;
    CHECK_OK(mproc_proxy_repr(d, &text));
    CHECK_STR(text, "{'k': 1, '\xc3\xa9': 123456789012345678901234567890}");
    free(text);
    /* a method that hands out a proxy */
    CHECK_EQ(mproc_proxy_call(d, "__iter__", NULL, NULL, &r, err, sizeof err),
             1);
    CHECK_OK(mproc_proxy_from_reply(d, r, &it));
    mproc_obj_unref(r);
    CHECK_STR(mproc_proxy_typeid(it), "Iterator");
    CHECK_EQ(mproc_proxy_call(it, "__next__", NULL, NULL, &r, err, sizeof err),
             0);
    check_repr(r, "'k'");
    mproc_obj_unref(r);
    mproc_proxy_free(it);
    /* a list */
    args = mproc_obj_tuple_of(1, mproc_obj_tuple_of(3, mproc_obj_int(3),
                                                    mproc_obj_int(1),
                                                    mproc_obj_int(2)));
    CHECK_OK(mproc_manager_create(m, &l, "list", args, NULL, err, sizeof err));
    mproc_obj_unref(args);
    CHECK_OK(mproc_proxy_append(l, one));
    CHECK_EQ(mproc_proxy_call(l, "sort", NULL, NULL, NULL, NULL, 0), 0);
    CHECK_OK(mproc_proxy_value(l, &r));
    check_repr(r, "[1, 1, 2, 3]");
    mproc_obj_unref(r);
    mproc_obj *minus1 = mproc_obj_int(-1), *ten = mproc_obj_int(10);
    CHECK_OK(mproc_proxy_getitem(l, minus1, &got));
    check_repr(got, "3");
    mproc_obj_unref(got);
    CHECK_OK(mproc_proxy_delitem(l, minus1));
    CHECK_ERR(mproc_proxy_getitem(l, ten, &got), -ENOENT);
    CHECK_ERR(mproc_proxy_setitem(l, k, one), MPROC_ETYPE);
    CHECK_EQ(mproc_proxy_len(l), 3);
    /* range and slice values, as Python sends them */
    mproc_proxy *rl;
    args = mproc_obj_tuple_of(
        1, mproc_obj_reduce("builtins", "range",
                            mproc_obj_tuple_of(3, mproc_obj_int(0),
                                               mproc_obj_int(10),
                                               mproc_obj_int(3)),
                            NULL, false));
    CHECK_OK(mproc_manager_create(m, &rl, "list", args, NULL, err, sizeof err));
    mproc_obj_unref(args);
    mproc_obj *sl = mproc_obj_reduce("builtins", "slice",
                                     mproc_obj_tuple_of(3, mproc_obj_none(),
                                                        mproc_obj_none(),
                                                        mproc_obj_int(-2)),
                                     NULL, false);
    CHECK_OK(mproc_proxy_getitem(rl, sl, &got));
    check_repr(got, "[9, 3]");
    mproc_obj_unref(got);
    CHECK_OK(mproc_proxy_delitem(rl, sl));
    CHECK_OK(mproc_proxy_value(rl, &r));
    check_repr(r, "[0, 6]");
    mproc_obj_unref(r);
    mproc_obj_unref(sl);
    mproc_proxy_free(rl);
    /* queue.Empty (CPython's server sends _queue.Empty) */
    mproc_proxy *q;
    CHECK_OK(mproc_manager_create(m, &q, "Queue", NULL, NULL, err, sizeof err));
    CHECK_ERR(
        mproc_proxy_call(q, "get_nowait", NULL, NULL, &r, err, sizeof err),
        MPROC_EEMPTY);
    CHECK_EQ(mproc_obj_is_exception(r), 1);
    mproc_obj_unref(r);
    mproc_proxy_free(q);
    /* an unknown type id */
    mproc_proxy *bad;
    CHECK_ERR(
        mproc_manager_create(m, &bad, "Nope", NULL, NULL, err, sizeof err),
        MPROC_EREMOTE);
    CHECK(bad == NULL && strstr(err, "Nope"));
    mproc_obj_unref(minus1);
    mproc_obj_unref(ten);
    mproc_obj_unref(k);
    mproc_obj_unref(x);
    mproc_obj_unref(one);
    mproc_proxy_free(l);
    mproc_proxy_free(d);
}

static void test_c_client_mproc_server(void)
{
    mproc_manager *srv, *cl;
    mproc_manager_opts o = key_opts();
    CHECK_OK(mproc_manager_serve(&srv, "127.0.0.1:0", &o));
    client_ops(srv); /* the server's own handle is a client too */
    CHECK_EQ(objects(mproc_manager_address(srv)), 0);
    mproc_conn_opts co = {
        .auth = MPROC_AUTH_KEY, .authkey = key, .authkey_len = strlen(key)};
    CHECK_OK(mproc_manager_connect(&cl, mproc_manager_address(srv), &co));
    CHECK_EQ(mproc_manager_is_alive(cl), 0); /* it runs no server */
    client_ops(cl);
    CHECK_EQ(objects(mproc_manager_address(srv)), 0);
    /* a proxy outlives the handle it came from */
    mproc_proxy *d;
    CHECK_OK(mproc_manager_create(cl, &d, "dict", NULL, NULL, NULL, 0));
    mproc_manager_free(cl);
    CHECK_EQ(mproc_proxy_len(d), 0);
    mproc_proxy_free(d);
    CHECK_EQ(objects(mproc_manager_address(srv)), 0);
    /* wrong key, nobody there */
    co.authkey = "wrong";
    co.authkey_len = 5;
    CHECK_ERR(mproc_manager_connect(&cl, mproc_manager_address(srv), &co),
              MPROC_EAUTH);
    mproc_manager_free(srv);
    co.authkey = key;
    co.authkey_len = strlen(key);
    CHECK(mproc_manager_connect(&cl, "@mproc-nobody-here", &co) < 0);
}

/* Starts manager_peer.py's CPython server ("serve"): its pid, its address
 * into addr. */
static pid_t start_py_server(const char *python, char *addr, size_t cap)
{
    int p[2];
    CHECK_OK(pipe2(p, O_CLOEXEC));
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 1);
        const char *argv[] = {
            python,        mproc_test_py_script("manager_peer.py"),
            "127.0.0.1:0", key_hex,
            "serve",       NULL};
        execv(python, (char *const *)argv);
        mproc_test_exit(127);
    }
    close(p[1]);
    size_t n = 0;
    while (n + 1 < cap) {
        struct pollfd pf = {.fd = p[0], .events = POLLIN};
        CHECK(poll(&pf, 1, 30000) == 1);
        CHECK(read(p[0], addr + n, 1) == 1);
        if (addr[n] == '\n')
            break;
        n++;
    }
    addr[n] = 0;
    close(p[0]);
    return pid;
}

static void test_c_client_cpython_server(void)
{
    static const char *const vs[] = {"3.6", "3.11", "3.13"};
    int ran = 0;
    for (size_t v = 0; v < 3; v++) {
        const char *python = mproc_test_python(vs[v]);
        if (!python)
            continue;
        ran++;
        char addr[128];
        pid_t pid = start_py_server(python, addr, sizeof addr);
        mproc_manager *cl;
        mproc_conn_opts co = {
            .auth = MPROC_AUTH_KEY, .authkey = key, .authkey_len = strlen(key)};
        CHECK_OK(mproc_manager_connect(&cl, addr, &co));
        client_ops(cl);
        typed_ops(cl);
        typed_cond_barrier(cl);
        custom_ops(cl); /* its Counter and Tagged are Python's */
        CHECK_EQ(objects(addr), 0);
        /* the server killed: calls fail at once */
        mproc_proxy *d;
        CHECK_OK(mproc_manager_create(cl, &d, "dict", NULL, NULL, NULL, 0));
        CHECK_EQ(mproc_proxy_len(d), 0);
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        double t0 = mproc_test_now();
        CHECK(mproc_proxy_len(d) < 0);
        CHECK(mproc_proxy_len(d) < 0);
        CHECK(mproc_test_now() - t0 < 1.0);
        mproc_proxy_free(d);
        mproc_manager_free(cl);
    }
    if (!ran)
        SKIP("no CPython in $MPROC_PYTHON_DIR (default ~/.pyenv/versions)");
}

/* Several threads through one proxy: each call on a connection of its
 * own; nothing lost. */
static void *appender(void *arg)
{
    mproc_proxy *l = arg;
    for (int i = 0; i < 100; i++) {
        mproc_obj *v = mproc_obj_int(i);
        CHECK_OK(mproc_proxy_append(l, v));
        mproc_obj_unref(v);
    }
    return NULL;
}

static void test_proxy_threads(void)
{
    mproc_manager *m;
    mproc_manager_opts o = key_opts();
    CHECK_OK(mproc_manager_start(&m, NULL, &o));
    mproc_proxy *l;
    CHECK_OK(mproc_manager_create(m, &l, "list", NULL, NULL, NULL, 0));
    pthread_t t[8];
    for (int i = 0; i < 8; i++)
        CHECK_EQ(pthread_create(&t[i], NULL, appender, l), 0);
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
    CHECK_EQ(mproc_proxy_len(l), 800);
    mproc_proxy_free(l);
    mproc_manager_free(m);
}

/* Five workers append their squares to a shared list and store them in a
 * shared dict (the tutorials' example), under every start method. */
static int t_square(const mproc_args *a)
{
    mproc_proxy *l = mproc_args_proxy(a, 0), *d = mproc_args_proxy(a, 1);
    int64_t i = mproc_args_int(a, 2);
    mproc_obj *k = mproc_obj_int(i), *sq = mproc_obj_int(i * i);
    int rc = mproc_proxy_append(l, sq);
    if (rc == 0)
        rc = mproc_proxy_setitem(d, k, sq);
    mproc_obj_unref(k);
    mproc_obj_unref(sq);
    return rc == 0 ? 0 : 1;
}

/* Starts n children of target under start method meth, child i given the
 * proxies and then i. */
static void start_children(mproc_process **ps, int n, mproc_target target,
                           mproc_proxy *const *proxies, size_t np, int meth)
{
    for (int i = 0; i < n; i++) {
        mproc_args *a = mproc_args_new();
        for (size_t k = 0; k < np; k++)
            CHECK_OK(mproc_args_add_proxy(a, proxies[k]));
        CHECK_OK(mproc_args_add_int(a, i));
        CHECK_OK(mproc_process_new(&ps[i], target, a));
        mproc_args_free(a);
        CHECK_OK(
            mproc_process_set_start_method(ps[i], mproc_test_methods[meth]));
        CHECK_OK(mproc_process_start(ps[i]));
    }
}

static void test_proxies_to_children(void)
{
    mproc_manager *m;
    mproc_manager_opts o = key_opts();
    CHECK_OK(mproc_manager_start(&m, NULL, &o));
    for (int meth = 0; meth < 3; meth++) {
        mproc_proxy *l, *d;
        CHECK_OK(mproc_manager_create(m, &l, "list", NULL, NULL, NULL, 0));
        CHECK_OK(mproc_manager_create(m, &d, "dict", NULL, NULL, NULL, 0));
        mproc_process *ps[5];
        mproc_proxy *shared[] = {l, d};
        start_children(ps, 5, t_square, shared, 2, meth);
        for (int i = 0; i < 5; i++) {
            CHECK_OK(mproc_process_join(ps[i], 30));
            CHECK_EQ(mproc_process_exitcode(ps[i]), 0);
            mproc_process_free(ps[i]);
        }
        CHECK_OK(mproc_proxy_call(l, "sort", NULL, NULL, NULL, NULL, 0));
        mproc_obj *v;
        CHECK_OK(mproc_proxy_value(l, &v));
        check_repr(v, "[0, 1, 4, 9, 16]");
        mproc_obj_unref(v);
        CHECK_EQ(mproc_proxy_len(d), 5);
        mproc_proxy_free(l);
        mproc_proxy_free(d);
        /* the children's references went with them */
        CHECK_EQ(objects(mproc_manager_address(m)), 0);
    }
    mproc_manager_free(m);
}

/* ---- blocking types ---------------------------------------------------------
 */

static mproc_proxy *make(mproc_manager *m, const char *typeid, mproc_obj *args)
{
    mproc_proxy *p;
    char err[256];
    int rc = mproc_manager_create(m, &p, typeid, args, NULL, err, sizeof err);
    mproc_obj_unref(args);
    if (rc < 0)
        mproc_test_fail(__FILE__, __LINE__, "create %s: %s", typeid, err);
    return p;
}

/* acquire(True, timeout): 1 acquired, 0 not. */
static int acquire(mproc_proxy *l, double timeout)
{
    mproc_obj *args =
        mproc_obj_tuple_of(2, mproc_obj_bool(true), mproc_obj_float(timeout));
    mproc_obj *r = NULL;
    CHECK_EQ(mproc_proxy_call(l, "acquire", args, NULL, &r, NULL, 0), 0);
    mproc_obj_unref(args);
    int got = mproc_obj_truth(r);
    mproc_obj_unref(r);
    return got;
}

static void *getter(void *arg)
{
    mproc_obj *r = NULL;
    CHECK_EQ(mproc_proxy_call(arg, "get", NULL, NULL, &r, NULL, 0), 0);
    return r;
}

/* A call that blocks holds only its caller; timeouts; a client killed
 * holding a Lock or RLock gives it back (CPython keeps it held). */
static void test_blocking_types(void)
{
    mproc_manager *m;
    mproc_manager_opts o = key_opts();
    CHECK_OK(mproc_manager_start(&m, NULL, &o));
    mproc_proxy *q = make(m, "Queue", NULL);
    mproc_proxy *d = make(m, "dict", NULL);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, getter, q), 0);
    usleep(200000); /* its get waits on the server */
    double t0 = mproc_test_now();
    CHECK_EQ(mproc_proxy_len(d), 0); /* served meanwhile */
    CHECK(mproc_test_now() - t0 < 0.5);
    mproc_obj *args = mproc_obj_tuple_of(1, mproc_obj_str_c("item"));
    CHECK_EQ(mproc_proxy_call(q, "put", args, NULL, NULL, NULL, 0), 0);
    mproc_obj_unref(args);
    mproc_obj *got;
    pthread_join(t, (void **)&got);
    check_repr(got, "'item'");
    mproc_obj_unref(got);
    /* get with a timeout: queue.Empty, as MPROC_EEMPTY */
    args = mproc_obj_tuple_of(2, mproc_obj_bool(true), mproc_obj_float(0.2));
    char err[256];
    mproc_obj *r = NULL;
    t0 = mproc_test_now();
    CHECK_ERR(mproc_proxy_call(q, "get", args, NULL, &r, err, sizeof err),
              MPROC_EEMPTY);
    CHECK(mproc_test_now() - t0 >= 0.19);
    CHECK_STR(mproc_obj_reduce_name(r), "Empty");
    CHECK_EQ(mproc_obj_is_exception(r), 1);
    CHECK_STR(err, "Empty()");
    mproc_obj_unref(r);
    mproc_obj_unref(args);
    CHECK_ERR(mproc_proxy_call(q, "get_nowait", NULL, NULL, NULL, NULL, 0),
              MPROC_EEMPTY);
    /* put on a full queue: queue.Full, as MPROC_EFULL */
    mproc_obj *one = mproc_obj_tuple_of(1, mproc_obj_int(1));
    mproc_proxy *q1 = make(m, "Queue", mproc_obj_ref(one));
    CHECK_EQ(mproc_proxy_call(q1, "put_nowait", one, NULL, NULL, NULL, 0), 0);
    CHECK_ERR(mproc_proxy_call(q1, "put_nowait", one, NULL, &r, NULL, 0),
              MPROC_EFULL);
    CHECK_STR(mproc_obj_reduce_name(r), "Full");
    mproc_obj_unref(r);
    mproc_obj_unref(one);
    mproc_proxy_free(q1);

    /* Lock: held by a child killed while holding it, then free */
    mproc_proxy *l = make(m, "Lock", NULL), *rl = make(m, "RLock", NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        if (acquire(l, 1) != 1 || acquire(rl, 1) != 1)
            mproc_test_exit(1);
        kill(getpid(), SIGKILL);
    }
    int st;
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    CHECK(WIFSIGNALED(st));
    t0 = mproc_test_now();
    CHECK_EQ(acquire(l, 5), 1);
    CHECK_EQ(acquire(rl, 5), 1);
    CHECK(mproc_test_now() - t0 < 1.0);
    /* now held here: another acquire times out */
    t0 = mproc_test_now();
    CHECK_EQ(acquire(l, 0.2), 0);
    CHECK(mproc_test_now() - t0 >= 0.19);
    CHECK_EQ(mproc_proxy_call(l, "release", NULL, NULL, NULL, NULL, 0), 0);
    CHECK_ERR(mproc_proxy_call(l, "release", NULL, NULL, &r, err, sizeof err),
              MPROC_EREMOTE);
    CHECK_STR(mproc_obj_reduce_name(r), "RuntimeError");
    mproc_obj_unref(r);
    /* Event: wait times out, then a set wakes a waiter */
    mproc_proxy *ev = make(m, "Event", NULL);
    args = mproc_obj_tuple_of(1, mproc_obj_float(0.1));
    CHECK_EQ(mproc_proxy_call(ev, "wait", args, NULL, &r, NULL, 0), 0);
    check_repr(r, "False");
    mproc_obj_unref(r);
    mproc_obj_unref(args);
    mproc_proxy_free(ev);
    mproc_proxy_free(rl);
    mproc_proxy_free(l);
    mproc_proxy_free(q);
    mproc_proxy_free(d);
    CHECK_EQ(objects(mproc_manager_address(m)), 0);
    mproc_manager_free(m);
}

/* A method call with args (stolen, NULL none): its rc; the result into
 * *out when out is not NULL. */
static int callm(mproc_proxy *p, const char *m, mproc_obj *args,
                 mproc_obj **out)
{
    mproc_obj *r = NULL;
    int rc = mproc_proxy_call(p, m, args, NULL, &r, NULL, 0);
    mproc_obj_unref(args);
    if (out)
        *out = r;
    else
        mproc_obj_unref(r);
    return rc;
}

static bool is_broken_barrier(const mproc_obj *e)
{
    return mproc_obj_is_exception(e) == 1 &&
           strcmp(mproc_obj_reduce_module(e), "threading") == 0 &&
           strcmp(mproc_obj_reduce_name(e), "BrokenBarrierError") == 0;
}

static int64_t attr_int(mproc_proxy *b, const char *name)
{
    mproc_obj *r;
    CHECK_EQ(callm(b, "__getattribute__",
                   mproc_obj_tuple_of(1, mproc_obj_str_c(name)), &r),
             0);
    int64_t v = -1;
    if (mproc_obj_type_of(r) == MPROC_OBJ_BOOL)
        v = mproc_obj_truth(r);
    else
        CHECK_OK(mproc_obj_int_value(r, &v));
    mproc_obj_unref(r);
    return v;
}

/* Waits (bounded) until a Barrier has n waiting. */
static void until_waiting(mproc_proxy *b, int64_t n)
{
    double t0 = mproc_test_now();
    while (attr_int(b, "n_waiting") != n) {
        CHECK(mproc_test_now() - t0 < 20);
        usleep(2000);
    }
}

/* Condition and Barrier from the C client, with forked children as the
 * other parties. */
static void test_condition_barrier(void)
{
    mproc_manager *m;
    mproc_manager_opts o = key_opts();
    CHECK_OK(mproc_manager_start(&m, NULL, &o));
    mproc_proxy *c = make(m, "Condition", NULL);
    mproc_proxy *items = make(m, "list", NULL);
    mproc_obj *r;
    /* wait and notify need the lock */
    CHECK_ERR(callm(c, "wait", mproc_obj_tuple_of(1, mproc_obj_float(1)), &r),
              MPROC_EREMOTE);
    CHECK_STR(mproc_obj_reduce_name(r), "RuntimeError");
    mproc_obj_unref(r);
    CHECK_ERR(callm(c, "notify", NULL, NULL), MPROC_EREMOTE);
    CHECK_EQ(acquire(c, 5), 1);
    CHECK_EQ(acquire(c, 5), 1); /* its lock is an RLock */
    CHECK_EQ(callm(c, "wait", mproc_obj_tuple_of(1, mproc_obj_float(0.05)), &r),
             0);
    check_repr(r, "False"); /* timed out: holds the lock again, twice */
    mproc_obj_unref(r);
    CHECK_EQ(callm(c, "release", NULL, NULL), 0);
    CHECK_EQ(callm(c, "release", NULL, NULL), 0);
    CHECK_ERR(callm(c, "release", NULL, NULL), MPROC_EREMOTE);
    /* a child waits for an item; this process appends and notifies */
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int ok = acquire(c, 20) == 1;
        while (ok && mproc_proxy_len(items) == 0) {
            mproc_obj *w = NULL;
            ok = callm(c, "wait", mproc_obj_tuple_of(1, mproc_obj_float(20)),
                       &w) == 0 &&
                 mproc_obj_truth(w);
            mproc_obj_unref(w);
        }
        ok = ok && callm(c, "release", NULL, NULL) == 0;
        mproc_test_exit(ok ? 0 : 1);
    }
    CHECK_EQ(acquire(c, 20), 1);
    mproc_obj *one = mproc_obj_int(1);
    CHECK_OK(mproc_proxy_append(items, one));
    mproc_obj_unref(one);
    CHECK_EQ(callm(c, "notify", mproc_obj_tuple_of(1, mproc_obj_int(1)), NULL),
             0);
    CHECK_EQ(callm(c, "release", NULL, NULL), 0);
    int st;
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);

    /* Barrier(2): this process and a child pass together */
    mproc_proxy *b =
        make(m, "Barrier", mproc_obj_tuple_of(1, mproc_obj_int(2)));
    CHECK_EQ(attr_int(b, "parties"), 2);
    CHECK_EQ(attr_int(b, "broken"), 0);
    fflush(NULL);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        mproc_obj *idx = NULL;
        int rc =
            callm(b, "wait", mproc_obj_tuple_of(1, mproc_obj_float(20)), &idx);
        int64_t i = -1;
        mproc_obj_int_value(idx, &i);
        mproc_obj_unref(idx);
        mproc_test_exit(rc == 0 ? (int)i : 9);
    }
    until_waiting(b, 1);
    CHECK_EQ(callm(b, "wait", NULL, &r), 0);
    int64_t mine = -1;
    CHECK_OK(mproc_obj_int_value(r, &mine));
    mproc_obj_unref(r);
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    CHECK(WIFEXITED(st));
    CHECK_EQ(mine + WEXITSTATUS(st), 1); /* indexes 0 and 1 */
    /* a wait out of time breaks it: threading.BrokenBarrierError */
    CHECK_ERR(
        callm(b, "wait", mproc_obj_tuple_of(1, mproc_obj_float(0.05)), &r),
        MPROC_EREMOTE);
    CHECK(is_broken_barrier(r));
    mproc_obj_unref(r);
    CHECK_EQ(attr_int(b, "broken"), 1);
    CHECK_ERR(callm(b, "wait", NULL, &r), MPROC_EREMOTE);
    CHECK(is_broken_barrier(r));
    mproc_obj_unref(r);
    CHECK_EQ(callm(b, "reset", NULL, NULL), 0);
    CHECK_EQ(attr_int(b, "broken"), 0);
    CHECK_ERR(callm(b, "__getattribute__",
                    mproc_obj_tuple_of(1, mproc_obj_str_c("x")), &r),
              MPROC_EREMOTE);
    CHECK_STR(mproc_obj_reduce_name(r), "AttributeError");
    mproc_obj_unref(r);
    /* bad arguments */
    mproc_proxy *bad;
    char err[256];
    mproc_obj *zero = mproc_obj_tuple_of(1, mproc_obj_int(0));
    CHECK_ERR(
        mproc_manager_create(m, &bad, "Barrier", zero, NULL, err, sizeof err),
        MPROC_EREMOTE);
    mproc_obj_unref(zero);
    CHECK(strstr(err, "ValueError"));
    mproc_proxy_free(b);
    mproc_proxy_free(items);
    mproc_proxy_free(c);
    CHECK_EQ(objects(mproc_manager_address(m)), 0);
    mproc_manager_free(m);
}

static void *sem_waiter(void *arg)
{
    return (void *)(intptr_t)acquire(arg, 15);
}

/* A client process SIGKILLed while holding a Semaphore, a BoundedSemaphore
 * and a Condition's lock, and the only references to two objects: a
 * client waiting on the semaphore gets it, the Condition can be acquired,
 * the objects are freed, and nothing else changes. */
static void test_dead_client_gives_back(void)
{
    mproc_manager *m;
    mproc_manager_opts o = key_opts();
    CHECK_OK(mproc_manager_start(&m, NULL, &o));
    const char *addr = mproc_manager_address(m);
    mproc_proxy *sem =
        make(m, "Semaphore", mproc_obj_tuple_of(1, mproc_obj_int(1)));
    mproc_proxy *bs =
        make(m, "BoundedSemaphore", mproc_obj_tuple_of(1, mproc_obj_int(2)));
    mproc_proxy *c = make(m, "Condition", NULL);
    mproc_proxy *keep = make(m, "dict", NULL);
    mproc_obj *k = mproc_obj_str_c("k"), *v = mproc_obj_int(7), *got = NULL;
    CHECK_OK(mproc_proxy_setitem(keep, k, v));
    CHECK_EQ(objects(addr), 4);
    int ready[2];
    CHECK_EQ(pipe(ready), 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(ready[0]);
        mproc_proxy *mine = make(m, "dict", NULL), *l = make(m, "list", NULL);
        mproc_proxy_setitem(mine, k, v);
        mproc_proxy_append(l, v);
        bool ok = acquire(sem, 5) == 1 && acquire(bs, 5) == 1 &&
                  acquire(bs, 5) == 1 && acquire(c, 5) == 1;
        if (!ok || write(ready[1], "x", 1) != 1)
            mproc_test_exit(1);
        for (;;)
            pause();
    }
    close(ready[1]);
    char x;
    struct pollfd pf = {ready[0], POLLIN, 0};
    CHECK_EQ(poll(&pf, 1, 20000), 1);
    CHECK_EQ(read(ready[0], &x, 1), 1);
    close(ready[0]);
    CHECK_EQ(objects(addr), 6);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, sem_waiter, sem), 0);
    usleep(100000); /* most likely waiting on the server by now */
    kill(pid, SIGKILL);
    int st;
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    void *r;
    pthread_join(t, &r);
    CHECK_EQ((int)(intptr_t)r, 1); /* the waiter got the semaphore */
    CHECK_EQ(acquire(c, 5), 1);    /* the Condition's lock is free */
    CHECK_EQ(acquire(bs, 5), 1);   /* both units given back ... */
    CHECK_EQ(acquire(bs, 5), 1);
    CHECK_EQ(callm(bs, "release", NULL, NULL), 0);
    CHECK_EQ(callm(bs, "release", NULL, NULL), 0);
    CHECK_ERR(callm(bs, "release", NULL, NULL), MPROC_EREMOTE); /* not more */
    double t0 = mproc_test_now();
    while (objects(addr) != 4 && mproc_test_now() - t0 < 10)
        usleep(5000);
    CHECK_EQ(objects(addr), 4); /* its own two objects are gone */
    CHECK_OK(mproc_proxy_getitem(keep, k, &got));
    check_repr(got, "7");
    mproc_obj_unref(got);
    /* one that holds no connection when it dies: found all the same */
    CHECK_EQ(pipe(ready), 0);
    fflush(NULL);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(ready[0]);
        mproc_obj_unref(
            create(addr, mproc_obj_tuple_of(1, mproc_obj_str_c("dict"))));
        if (write(ready[1], "x", 1) != 1)
            mproc_test_exit(1);
        for (;;)
            pause();
    }
    close(ready[1]);
    pf = (struct pollfd){ready[0], POLLIN, 0};
    CHECK_EQ(poll(&pf, 1, 20000), 1);
    CHECK_EQ(read(ready[0], &x, 1), 1);
    close(ready[0]);
    CHECK_EQ(objects(addr), 5);
    kill(pid, SIGKILL);
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    t0 = mproc_test_now();
    while (objects(addr) != 4 && mproc_test_now() - t0 < 10)
        usleep(5000);
    CHECK_EQ(objects(addr), 4);
    CHECK_EQ(callm(c, "release", NULL, NULL), 0);
    CHECK_EQ(callm(sem, "release", NULL, NULL), 0);
    mproc_obj_unref(k);
    mproc_obj_unref(v);
    mproc_proxy_free(keep);
    mproc_proxy_free(c);
    mproc_proxy_free(bs);
    mproc_proxy_free(sem);
    CHECK_EQ(objects(addr), 0);
    mproc_manager_free(m);
}

/* A proxy value as a client stores it: RebuildProxy(cls, Token(typeid,
 * None, ident), 'pickle', {}). */
static mproc_obj *proxy_value(const char *typeid, const char *cls,
                              const mproc_obj *ident)
{
    mproc_obj *tok = mproc_obj_reduce(
        "multiprocessing.managers", "Token", mproc_obj_tuple_new(0),
        mproc_obj_tuple_of(3, mproc_obj_str_c(typeid), mproc_obj_none(),
                           mproc_obj_ref((mproc_obj *)ident)),
        true);
    return mproc_obj_reduce(
        "multiprocessing.managers", "RebuildProxy",
        mproc_obj_tuple_of(4,
                           mproc_obj_reduce("multiprocessing.managers", cls,
                                            NULL, NULL, false),
                           tok, mproc_obj_str_c("pickle"),
                           mproc_obj_dict_new()),
        NULL, false);
}

static void decref(const char *addr, const mproc_obj *id)
{
    mproc_obj_unref(top(addr, "decref",
                        mproc_obj_tuple_of(1, mproc_obj_ref((mproc_obj *)id)),
                        NULL));
}

/* A request on channel c that must answer #RETURN; its value. */
static mproc_obj *ok_call(mproc_conn *c, const mproc_obj *id, const char *m,
                          mproc_obj *args)
{
    char kind[16];
    mproc_obj *v =
        request(c, mproc_obj_ref((mproc_obj *)id), m, args, NULL, kind);
    CHECK_STR(kind, "#RETURN");
    return v;
}

/* Proxies stored in objects keep what they name alive, carry the
 * manager's key back out, and let it go once removed; cycles go too. */
static void test_nested_proxies(void)
{
    mproc_manager *m;
    mproc_manager_opts o = key_opts();
    CHECK_OK(mproc_manager_start(&m, NULL, &o));
    const char *addr = mproc_manager_address(m);
    mproc_obj *d = create(addr, mproc_obj_tuple_of(1, mproc_obj_str_c("dict")));
    mproc_obj *l = create(addr, mproc_obj_tuple_of(1, mproc_obj_str_c("list")));
    mproc_conn *c = channel(addr);
    mproc_obj_unref(
        ok_call(c, l, "append",
                mproc_obj_tuple_of(1, proxy_value("dict", "DictProxy", d))));
    decref(addr, d); /* no client holds it now: stored, it stays */
    CHECK_EQ(objects(addr), 2);
    mproc_obj *v =
        ok_call(c, l, "__getitem__", mproc_obj_tuple_of(1, mproc_obj_int(0)));
    mproc_obj *kw = mproc_obj_item(mproc_obj_reduce_args(v), 3);
    size_t kn;
    const unsigned char *kb =
        mproc_obj_bytes_value(mproc_obj_dict_get_str(kw, "authkey"), &kn);
    CHECK(kb && kn == strlen(key) && memcmp(kb, key, kn) == 0);
    mproc_obj_unref(v);
    mproc_obj_unref(
        ok_call(c, d, "__setitem__",
                mproc_obj_tuple_of(2, mproc_obj_int(1), mproc_obj_int(1))));
    /* popped: kept for the reply's reader until the next request */
    mproc_obj_unref(ok_call(c, l, "pop", NULL));
    CHECK_EQ(objects(addr), 2);
    v = ok_call(c, l, "__len__", NULL);
    check_repr(v, "0");
    mproc_obj_unref(v);
    CHECK_EQ(objects(addr), 1);

    /* a cycle no client holds goes whole */
    mproc_obj *d2 =
        create(addr, mproc_obj_tuple_of(1, mproc_obj_str_c("dict")));
    mproc_obj *l2 = create(
        addr, mproc_obj_tuple_of(
                  2, mproc_obj_str_c("list"),
                  mproc_obj_tuple_of(1, proxy_value("dict", "DictProxy", d2))));
    mproc_obj_unref(
        ok_call(c, d2, "__setitem__",
                mproc_obj_tuple_of(2, mproc_obj_str_c("l"),
                                   proxy_value("list", "ListProxy", l2))));
    decref(addr, d2);
    CHECK_EQ(objects(addr), 3);
    decref(addr, l2);
    CHECK_EQ(objects(addr), 1);
    mproc_obj_unref(d2);
    mproc_obj_unref(l2);
    /* a proxy naming no object here, or with a wrong typeid: inert */
    mproc_obj *none = mproc_obj_str_c("12345");
    mproc_obj_unref(
        ok_call(c, l, "append",
                mproc_obj_tuple_of(1, proxy_value("dict", "DictProxy", none))));
    mproc_obj_unref(
        ok_call(c, l, "append",
                mproc_obj_tuple_of(1, proxy_value("Queue", "AutoProxy", l))));
    mproc_obj_unref(none);
    mproc_conn_free(c);
    decref(addr, l);
    CHECK_EQ(objects(addr), 0);
    mproc_obj_unref(l);
    mproc_obj_unref(d);
    mproc_manager_free(m);
}

static void *blocked_get(void *arg)
{
    mproc_obj *r = NULL;
    int rc = mproc_proxy_call(arg, "get", NULL, NULL, &r, NULL, 0);
    mproc_obj_unref(r);
    return (void *)(intptr_t)rc;
}

/* mproc_manager_shutdown of a serving thread returns once everything is
 * gone, even with a client stalled in its handshake (cut short, not
 * waited for: the handshake timeout is 10 s) and a call waiting on an
 * object (it fails). */
static void test_shutdown_waits(void)
{
    mproc_manager *m, *cl;
    mproc_manager_opts o = key_opts();
    CHECK_OK(mproc_manager_serve(&m, "127.0.0.1:0", &o));
    const char *addr = mproc_manager_address(m);
    const char *colon = strrchr(addr, ':');
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)atoi(colon + 1)),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int stalled = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(stalled >= 0);
    CHECK_OK(connect(stalled, (struct sockaddr *)&sa, sizeof sa));
    CHECK_OK(mproc_manager_connect(&cl, addr, &o.conn));
    mproc_proxy *q = make(cl, "Queue", NULL), *d = make(cl, "dict", NULL);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, blocked_get, q), 0);
    CHECK_EQ(mproc_proxy_len(d), 0);
    CHECK_OK(mproc_manager_shutdown(m, 5));
    CHECK_EQ(mproc_manager_is_alive(m), 0);
    void *r;
    pthread_join(t, &r);
    CHECK((int)(intptr_t)r < 0); /* the waiting get failed */
    CHECK(mproc_proxy_len(d) < 0);
    int s2 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(connect(s2, (struct sockaddr *)&sa, sizeof sa) < 0);
    close(s2);
    close(stalled);
    mproc_proxy_free(d);
    mproc_proxy_free(q);
    mproc_manager_free(cl);
    mproc_manager_free(m);
}

/* A Python process and C threads append to one list at once: nothing is
 * lost. */
static void *append_c(void *arg)
{
    mproc_proxy *l = arg;
    for (int i = 0; i < 1000; i++) {
        mproc_obj *v = mproc_obj_int(-i);
        CHECK_OK(mproc_proxy_append(l, v));
        mproc_obj_unref(v);
    }
    return NULL;
}

static void test_mixed_appenders(void)
{
    const char *python = mproc_test_python("3.13");
    if (!python)
        python = mproc_test_python("3.11");
    if (!python)
        SKIP("no CPython 3.11 or 3.13");
    mproc_manager *m;
    mproc_manager_opts o = key_opts();
    CHECK_OK(mproc_manager_start(&m, "127.0.0.1:0", &o));
    mproc_proxy *l;
    CHECK_OK(mproc_manager_create(m, &l, "list", NULL, NULL, NULL, 0));
    pid_t py = start_py(python, mproc_manager_address(m), key_hex, "append",
                        mproc_proxy_ident(l));
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        CHECK_EQ(pthread_create(&t[i], NULL, append_c, l), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    CHECK_EQ(wait_py(py), 0);
    CHECK_EQ(mproc_proxy_len(l), 3000);
    mproc_proxy_free(l);
    mproc_manager_free(m);
}

/* ---- typed helpers ----------------------------------------------------------
 */

/* Checks a returned value's repr and drops it. */
static void got_repr(mproc_obj *o, const char *want)
{
    CHECK(o);
    check_repr(o, want);
    mproc_obj_unref(o);
}

/* A list value of the n ints given. */
static mproc_obj *ints(size_t n, const int64_t *v)
{
    mproc_obj *l = mproc_obj_list_new();
    for (size_t i = 0; i < n; i++)
        CHECK_OK(mproc_obj_list_append(l, mproc_obj_int(v[i])));
    return l;
}

#define INTS(...)                                                              \
    ints(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t),                   \
         (int64_t[]){__VA_ARGS__})

static void typed_dict(mproc_manager *m)
{
    mproc_proxy *d = make(m, "dict", NULL);
    mproc_obj *a = mproc_obj_str_c("a"), *b = mproc_obj_str_c("b");
    mproc_obj *one = mproc_obj_int(1), *two = mproc_obj_int(2), *r = NULL;
    CHECK_OK(mproc_proxy_setitem(d, a, one));
    CHECK_OK(mproc_proxy_get(d, a, NULL, &r));
    got_repr(r, "1");
    CHECK_OK(mproc_proxy_get(d, b, NULL, &r));
    got_repr(r, "None");
    CHECK_OK(mproc_proxy_get(d, b, two, &r));
    got_repr(r, "2");
    CHECK_OK(mproc_proxy_setdefault(d, b, two, &r));
    got_repr(r, "2");
    CHECK_OK(mproc_proxy_setdefault(d, b, one, &r)); /* already there */
    got_repr(r, "2");
    mproc_obj *upd = mproc_obj_dict_new();
    CHECK_OK(mproc_obj_dict_set(upd, mproc_obj_str_c("c"), mproc_obj_int(3)));
    CHECK_OK(mproc_proxy_update(d, upd));
    mproc_obj_unref(upd);
    upd = mproc_obj_list_new(); /* a list of pairs */
    CHECK_OK(mproc_obj_list_append(
        upd, mproc_obj_tuple_of(2, mproc_obj_str_c("d"), mproc_obj_int(4))));
    CHECK_OK(mproc_proxy_update(d, upd));
    mproc_obj_unref(upd);
    CHECK_OK(mproc_proxy_keys(d, &r));
    got_repr(r, "['a', 'b', 'c', 'd']");
    CHECK_OK(mproc_proxy_values(d, &r));
    got_repr(r, "[1, 2, 3, 4]");
    CHECK_OK(mproc_proxy_items(d, &r));
    got_repr(r, "[('a', 1), ('b', 2), ('c', 3), ('d', 4)]");
    CHECK_OK(mproc_proxy_pop(d, b, &r));
    got_repr(r, "2");
    CHECK_ERR(mproc_proxy_pop(d, b, &r), -ENOENT);
    CHECK(r == NULL);
    CHECK_OK(mproc_proxy_copy(d, &r));
    CHECK_EQ(mproc_obj_type_of(r), MPROC_OBJ_DICT);
    got_repr(r, "{'a': 1, 'c': 3, 'd': 4}");
    CHECK_EQ(mproc_proxy_contains(d, a), 1);
    CHECK_OK(mproc_proxy_clear(d));
    CHECK_EQ(mproc_proxy_len(d), 0);
    CHECK_EQ(mproc_proxy_contains(d, a), 0);
    /* an unhashable key, a bad update */
    mproc_obj *lst = mproc_obj_list_new();
    CHECK_ERR(mproc_proxy_setitem(d, lst, one), MPROC_ETYPE);
    CHECK_ERR(mproc_proxy_update(d, one), MPROC_ETYPE);
    CHECK_ERR(mproc_proxy_get(d, NULL, NULL, &r), -EINVAL);
    CHECK_ERR(mproc_proxy_keys(d, NULL), -EINVAL);
    CHECK_ERR(mproc_proxy_keys(NULL, &r), -EINVAL);
    mproc_obj_unref(lst);
    mproc_obj_unref(a);
    mproc_obj_unref(b);
    mproc_obj_unref(one);
    mproc_obj_unref(two);
    mproc_proxy_free(d);
}

static void typed_list(mproc_manager *m)
{
    mproc_proxy *l = make(m, "list", mproc_obj_tuple_of(1, INTS(5, 3, 1)));
    mproc_obj *r = NULL, *x = mproc_obj_int(7), *three = mproc_obj_int(3);
    mproc_obj *extra = INTS(3, 9);
    CHECK_OK(mproc_proxy_append(l, x));
    CHECK_OK(mproc_proxy_extend(l, extra));
    CHECK_OK(mproc_proxy_insert(l, 0, x));
    CHECK_OK(mproc_proxy_insert(l, 100, x)); /* clamped, as Python's */
    CHECK_OK(mproc_proxy_value(l, &r));
    got_repr(r, "[7, 5, 3, 1, 7, 3, 9, 7]");
    CHECK_EQ(mproc_proxy_count(l, x), 3);
    CHECK_EQ(mproc_proxy_count(l, extra), 0);
    CHECK_EQ(mproc_proxy_index(l, three), 2);
    CHECK_OK(mproc_proxy_remove(l, three)); /* the first */
    CHECK_EQ(mproc_proxy_index(l, three), 4);
    CHECK_OK(mproc_proxy_pop(l, NULL, &r));
    got_repr(r, "7");
    mproc_obj *zero = mproc_obj_int(0);
    CHECK_OK(mproc_proxy_pop(l, zero, &r));
    got_repr(r, "7");
    CHECK_OK(mproc_proxy_sort(l, false));
    CHECK_OK(mproc_proxy_value(l, &r));
    got_repr(r, "[1, 3, 5, 7, 9]");
    CHECK_OK(mproc_proxy_sort(l, true));
    CHECK_OK(mproc_proxy_reverse(l));
    CHECK_OK(mproc_proxy_getitem(l, zero, &r));
    got_repr(r, "1");
    CHECK_OK(mproc_proxy_setitem(l, zero, x));
    /* slices */
    const int64_t N = MPROC_MANAGER_SLICE_NONE;
    CHECK_OK(mproc_proxy_getslice(l, 1, 3, N, &r));
    got_repr(r, "[3, 5]");
    CHECK_OK(mproc_proxy_getslice(l, N, N, -1, &r));
    got_repr(r, "[9, 7, 5, 3, 7]");
    CHECK_OK(mproc_proxy_getslice(l, -2, N, N, &r));
    got_repr(r, "[7, 9]");
    mproc_obj *ab = INTS(10, 20, 30);
    CHECK_OK(mproc_proxy_setslice(l, 1, 2, N, ab)); /* grows */
    CHECK_OK(mproc_proxy_value(l, &r));
    got_repr(r, "[7, 10, 20, 30, 5, 7, 9]");
    CHECK_ERR(mproc_proxy_setslice(l, N, N, 2, ab), -ENOENT); /* 4 != 3 */
    CHECK_OK(mproc_proxy_delslice(l, N, N, 2));
    CHECK_OK(mproc_proxy_value(l, &r));
    got_repr(r, "[10, 30, 7]");
    CHECK_OK(mproc_proxy_delslice(l, 1, N, N));
    CHECK_EQ(mproc_proxy_len(l), 1);
    CHECK_ERR(mproc_proxy_getslice(l, 0, 1, 0, &r), -ENOENT); /* step 0 */
    /* failures */
    CHECK_ERR(mproc_proxy_remove(l, three), -ENOENT);
    CHECK_ERR(mproc_proxy_index(l, three), -ENOENT);
    mproc_obj *ten = mproc_obj_int(10);
    CHECK_ERR(mproc_proxy_pop(l, ten, &r), -ENOENT);
    CHECK_OK(mproc_proxy_append(l, mproc_obj_none()));
    CHECK_ERR(mproc_proxy_sort(l, false), MPROC_ETYPE); /* 10 < None */
    CHECK_ERR(mproc_proxy_clear(l), MPROC_EREMOTE);     /* a list has none */
    CHECK_OK(mproc_proxy_delslice(l, N, N, N));
    CHECK_ERR(mproc_proxy_pop(l, NULL, &r), -ENOENT); /* empty */
    CHECK_ERR(mproc_proxy_extend(l, NULL), -EINVAL);
    CHECK_ERR(mproc_proxy_insert(l, 0, NULL), -EINVAL);
    CHECK_ERR(mproc_proxy_getslice(l, 0, 1, N, NULL), -EINVAL);
    mproc_obj_unref(ten);
    mproc_obj_unref(ab);
    mproc_obj_unref(zero);
    mproc_obj_unref(extra);
    mproc_obj_unref(three);
    mproc_obj_unref(x);
    mproc_proxy_free(l);
}

static void typed_namespace_value_array(mproc_manager *m)
{
    mproc_obj *kw = mproc_obj_dict_new(), *r = NULL;
    CHECK_OK(mproc_obj_dict_set(kw, mproc_obj_str_c("x"), mproc_obj_int(1)));
    mproc_proxy *ns;
    CHECK_OK(mproc_manager_create(m, &ns, "Namespace", NULL, kw, NULL, 0));
    mproc_obj_unref(kw);
    CHECK_OK(mproc_proxy_getattr(ns, "x", &r));
    got_repr(r, "1");
    mproc_obj *s = mproc_obj_str_c("\xc3\xa9t\xc3\xa9");
    CHECK_OK(mproc_proxy_setattr(ns, "y", s));
    CHECK_OK(mproc_proxy_getattr(ns, "y", &r));
    got_repr(r, "'\xc3\xa9t\xc3\xa9'");
    CHECK_OK(mproc_proxy_delattr(ns, "x"));
    CHECK_ERR(mproc_proxy_getattr(ns, "x", &r), -ENOENT);
    CHECK(r == NULL);
    CHECK_ERR(mproc_proxy_delattr(ns, "x"), -ENOENT);
    CHECK_ERR(mproc_proxy_getattr(ns, NULL, &r), -EINVAL);
    CHECK_ERR(mproc_proxy_setattr(ns, "z", NULL), -EINVAL);
    mproc_proxy_free(ns);

    mproc_proxy *v =
        make(m, "Value",
             mproc_obj_tuple_of(2, mproc_obj_str_c("i"), mproc_obj_int(7)));
    CHECK_OK(mproc_proxy_value_get(v, &r));
    got_repr(r, "7");
    mproc_obj *big = mproc_obj_int(-42);
    CHECK_OK(mproc_proxy_value_set(v, big));
    CHECK_OK(mproc_proxy_value_get(v, &r));
    got_repr(r, "-42");
    mproc_obj_unref(big);
    mproc_proxy_free(v);
    v = make(m, "Value",
             mproc_obj_tuple_of(2, mproc_obj_str_c("d"), mproc_obj_float(0.5)));
    CHECK_OK(mproc_proxy_value_get(v, &r));
    got_repr(r, "0.5");
    mproc_proxy_free(v);

    mproc_proxy *a =
        make(m, "Array",
             mproc_obj_tuple_of(2, mproc_obj_str_c("i"), INTS(0, 1, 2, 3, 4)));
    CHECK_EQ(mproc_proxy_len(a), 5);
    mproc_obj *i = mproc_obj_int(3), *nine = mproc_obj_int(9);
    CHECK_OK(mproc_proxy_setitem(a, i, nine));
    CHECK_OK(mproc_proxy_getitem(a, i, &r));
    got_repr(r, "9");
    CHECK_OK(mproc_proxy_getslice(a, 1, MPROC_MANAGER_SLICE_NONE, 2, &r));
    CHECK_EQ(mproc_obj_type_of(r), MPROC_OBJ_REDUCE); /* an array.array */
    mproc_obj_unref(r);
    mproc_obj *far = mproc_obj_int(5), *text = mproc_obj_str_c("x");
    CHECK_ERR(mproc_proxy_getitem(a, far, &r), -ENOENT);
    CHECK_ERR(mproc_proxy_setitem(a, i, text), MPROC_ETYPE);
    mproc_obj_unref(far);
    mproc_obj_unref(text);
    mproc_obj_unref(i);
    mproc_obj_unref(nine);
    mproc_obj_unref(s);
    mproc_proxy_free(a);
}

static void typed_queue(mproc_manager *m)
{
    mproc_proxy *q = make(m, "Queue", mproc_obj_tuple_of(1, mproc_obj_int(2)));
    mproc_obj *item = mproc_obj_str_c("item"), *r = NULL;
    CHECK_EQ(mproc_proxy_queue_empty(q), 1);
    CHECK_EQ(mproc_proxy_queue_full(q), 0);
    CHECK_ERR(mproc_proxy_queue_get(q, 0, &r), MPROC_EEMPTY);
    CHECK(r == NULL);
    CHECK_ERR(mproc_proxy_queue_get(q, 0.05, &r), MPROC_EEMPTY);
    CHECK_OK(mproc_proxy_queue_put(q, item, -1));
    CHECK_OK(mproc_proxy_queue_put(q, item, 0));
    CHECK_EQ(mproc_proxy_queue_full(q), 1);
    CHECK_EQ(mproc_proxy_queue_qsize(q), 2);
    CHECK_ERR(mproc_proxy_queue_put(q, item, 0), MPROC_EFULL);
    CHECK_ERR(mproc_proxy_queue_put(q, item, 0.05), MPROC_EFULL);
    CHECK_OK(mproc_proxy_queue_get(q, -1, &r));
    got_repr(r, "'item'");
    CHECK_OK(mproc_proxy_queue_get(q, 1, &r));
    got_repr(r, "'item'");
    CHECK_EQ(mproc_proxy_queue_empty(q), 1);
    CHECK_ERR(mproc_proxy_queue_put(q, NULL, 0), -EINVAL);
    CHECK_ERR(mproc_proxy_queue_get(q, 0, NULL), -EINVAL);
    mproc_proxy_free(q);

    mproc_proxy *jq = make(m, "JoinableQueue", NULL);
    CHECK_OK(mproc_proxy_queue_put(jq, item, -1));
    CHECK_OK(mproc_proxy_queue_get(jq, -1, &r));
    mproc_obj_unref(r);
    CHECK_OK(mproc_proxy_queue_task_done(jq));
    CHECK_OK(mproc_proxy_queue_join(jq)); /* nothing left undone */
    CHECK_ERR(mproc_proxy_queue_task_done(jq), MPROC_ETASKDONE);
    mproc_proxy_free(jq);
    mproc_obj_unref(item);
}

static void typed_sync(mproc_manager *m)
{
    mproc_proxy *l = make(m, "Lock", NULL);
    CHECK_OK(mproc_proxy_acquire(l, -1));
    CHECK_ERR(mproc_proxy_acquire(l, 0), -ETIMEDOUT);
    CHECK_ERR(mproc_proxy_acquire(l, 0.05), -ETIMEDOUT);
    CHECK_OK(mproc_proxy_release(l));
    CHECK_ERR(mproc_proxy_release(l), MPROC_ENOTOWNER);
    CHECK_OK(mproc_proxy_acquire(l, 0));
    CHECK_OK(mproc_proxy_release(l));
    mproc_proxy_free(l);

    mproc_proxy *rl = make(m, "RLock", NULL);
    CHECK_OK(mproc_proxy_acquire(rl, -1));
    CHECK_OK(mproc_proxy_acquire(rl, 0)); /* again: recursive */
    CHECK_OK(mproc_proxy_release(rl));
    CHECK_OK(mproc_proxy_release(rl));
    CHECK_ERR(mproc_proxy_release(rl), MPROC_ENOTOWNER);
    mproc_proxy_free(rl);

    mproc_proxy *s =
        make(m, "Semaphore", mproc_obj_tuple_of(1, mproc_obj_int(2)));
    CHECK_OK(mproc_proxy_acquire(s, 0));
    CHECK_OK(mproc_proxy_acquire(s, 0));
    CHECK_ERR(mproc_proxy_acquire(s, 0.05), -ETIMEDOUT);
    CHECK_OK(mproc_proxy_release(s));
    CHECK_OK(mproc_proxy_release(s));
    CHECK_OK(mproc_proxy_release(s)); /* unbounded */
    mproc_proxy_free(s);
    mproc_proxy *bs =
        make(m, "BoundedSemaphore", mproc_obj_tuple_of(1, mproc_obj_int(1)));
    CHECK_OK(mproc_proxy_acquire(bs, -1));
    CHECK_OK(mproc_proxy_release(bs));
    CHECK_ERR(mproc_proxy_release(bs), MPROC_EBOUND);
    mproc_proxy_free(bs);

    mproc_proxy *ev = make(m, "Event", NULL);
    CHECK_EQ(mproc_proxy_event_is_set(ev), 0);
    CHECK_ERR(mproc_proxy_event_wait(ev, 0), -ETIMEDOUT);
    CHECK_ERR(mproc_proxy_event_wait(ev, 0.05), -ETIMEDOUT);
    CHECK_OK(mproc_proxy_event_set(ev));
    CHECK_EQ(mproc_proxy_event_is_set(ev), 1);
    CHECK_OK(mproc_proxy_event_wait(ev, -1));
    CHECK_OK(mproc_proxy_event_clear(ev));
    CHECK_EQ(mproc_proxy_event_is_set(ev), 0);
    mproc_proxy_free(ev);
    CHECK_ERR(mproc_proxy_acquire(NULL, 0), -EINVAL);
    CHECK_ERR(mproc_proxy_event_set(NULL), -EINVAL);
}

/* Every helper but Condition's and Barrier's, on one server. */
static void typed_ops(mproc_manager *m)
{
    typed_dict(m);
    typed_list(m);
    typed_namespace_value_array(m);
    typed_queue(m);
    typed_sync(m);
}

typedef struct cond_arg {
    mproc_proxy *cond, *list;
    int rc;
} cond_arg;

/* Waits on the condition until the list has an item (as Python's
 * wait_for), then takes it. */
static void *cond_waiter(void *arg)
{
    cond_arg *a = arg;
    a->rc = mproc_proxy_acquire(a->cond, -1);
    while (a->rc == 0 && mproc_proxy_len(a->list) == 0)
        a->rc = mproc_proxy_cond_wait(a->cond, -1);
    mproc_obj *r = NULL;
    if (a->rc == 0)
        a->rc = mproc_proxy_pop(a->list, NULL, &r);
    mproc_obj_unref(r);
    if (a->rc == 0)
        a->rc = mproc_proxy_release(a->cond);
    return NULL;
}

static void *barrier_waiter(void *arg)
{
    return (void *)(intptr_t)mproc_proxy_barrier_wait(arg, -1);
}

/* Condition and Barrier. */
static void typed_cond_barrier(mproc_manager *m)
{
    mproc_proxy *c = make(m, "Condition", NULL), *l = make(m, "list", NULL);
    /* without the lock */
    CHECK_ERR(mproc_proxy_cond_wait(c, 0), MPROC_ENOTOWNER);
    CHECK_ERR(mproc_proxy_cond_notify(c, 1), MPROC_ENOTOWNER);
    CHECK_ERR(mproc_proxy_cond_notify_all(c), MPROC_ENOTOWNER);
    CHECK_ERR(mproc_proxy_release(c), MPROC_ENOTOWNER);
    CHECK_ERR(mproc_proxy_cond_notify(c, -1), -EINVAL);
    /* a wait that times out comes back holding the lock */
    CHECK_OK(mproc_proxy_acquire(c, -1));
    CHECK_ERR(mproc_proxy_cond_wait(c, 0.05), -ETIMEDOUT);
    CHECK_OK(mproc_proxy_cond_notify(c, 1)); /* nobody waits: fine */
    CHECK_OK(mproc_proxy_release(c));
    /* three waiters, each woken for an item */
    cond_arg a[3];
    pthread_t t[3];
    for (int i = 0; i < 3; i++) {
        a[i] = (cond_arg){c, l, -1};
        CHECK_EQ(pthread_create(&t[i], NULL, cond_waiter, &a[i]), 0);
    }
    mproc_obj *x = mproc_obj_int(1);
    CHECK_OK(mproc_proxy_acquire(c, -1));
    CHECK_OK(mproc_proxy_append(l, x));
    CHECK_OK(mproc_proxy_cond_notify(c, 1));
    CHECK_OK(mproc_proxy_release(c));
    CHECK_OK(mproc_proxy_acquire(c, -1));
    CHECK_OK(mproc_proxy_append(l, x));
    CHECK_OK(mproc_proxy_append(l, x));
    CHECK_OK(mproc_proxy_cond_notify_all(c));
    CHECK_OK(mproc_proxy_release(c));
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        CHECK_OK(a[i].rc);
    }
    CHECK_EQ(mproc_proxy_len(l), 0);
    mproc_obj_unref(x);
    mproc_proxy_free(l);
    mproc_proxy_free(c);

    mproc_proxy *b =
        make(m, "Barrier", mproc_obj_tuple_of(1, mproc_obj_int(3)));
    CHECK_EQ(mproc_proxy_barrier_parties(b), 3);
    CHECK_EQ(mproc_proxy_barrier_n_waiting(b), 0);
    CHECK_EQ(mproc_proxy_barrier_broken(b), 0);
    pthread_t bt[2];
    for (int i = 0; i < 2; i++)
        CHECK_EQ(pthread_create(&bt[i], NULL, barrier_waiter, b), 0);
    int idx = mproc_proxy_barrier_wait(b, 30);
    int seen = 1 << idx;
    for (int i = 0; i < 2; i++) {
        void *ret;
        pthread_join(bt[i], &ret);
        CHECK((intptr_t)ret >= 0 && (intptr_t)ret < 3);
        seen |= 1 << (intptr_t)ret;
    }
    CHECK_EQ(seen, 7); /* indexes 0, 1 and 2, one each */
    /* a wait that times out breaks the barrier */
    CHECK_ERR(mproc_proxy_barrier_wait(b, 0.05), MPROC_EBROKEN);
    CHECK_EQ(mproc_proxy_barrier_broken(b), 1);
    CHECK_ERR(mproc_proxy_barrier_wait(b, -1), MPROC_EBROKEN);
    CHECK_OK(mproc_proxy_barrier_reset(b));
    CHECK_EQ(mproc_proxy_barrier_broken(b), 0);
    /* abort wakes a waiter */
    CHECK_EQ(pthread_create(&bt[0], NULL, barrier_waiter, b), 0);
    while (mproc_proxy_barrier_n_waiting(b) != 1)
        usleep(1000);
    CHECK_OK(mproc_proxy_barrier_abort(b));
    void *ret;
    pthread_join(bt[0], &ret);
    CHECK_EQ((intptr_t)ret, MPROC_EBROKEN);
    CHECK_EQ(mproc_proxy_barrier_broken(b), 1);
    mproc_proxy_free(b);
}

/* A child waits for the parent's Event, then puts its number into the
 * Queue, holding the Lock meanwhile. */
static int t_helpers(const mproc_args *a)
{
    mproc_proxy *ev = mproc_args_proxy(a, 0), *q = mproc_args_proxy(a, 1);
    mproc_proxy *l = mproc_args_proxy(a, 2);
    mproc_obj *i = mproc_obj_int(mproc_args_int(a, 3));
    int rc = mproc_proxy_event_wait(ev, 30);
    if (rc == 0)
        rc = mproc_proxy_acquire(l, 30);
    if (rc == 0)
        rc = mproc_proxy_queue_put(q, i, 30);
    if (rc == 0)
        rc = mproc_proxy_release(l);
    mproc_obj_unref(i);
    return rc == 0 ? 0 : 1;
}

static void test_typed_helpers(void)
{
    mproc_manager *srv;
    mproc_manager_opts o = key_opts();
    CHECK_OK(mproc_manager_start(&srv, "127.0.0.1:0", &o));
    typed_ops(srv);
    /* children under every start method */
    for (int meth = 0; meth < 3; meth++) {
        mproc_proxy *ev = make(srv, "Event", NULL),
                    *q = make(srv, "Queue", NULL);
        mproc_proxy *l = make(srv, "Lock", NULL);
        mproc_process *ps[3];
        mproc_proxy *shared[] = {ev, q, l};
        start_children(ps, 3, t_helpers, shared, 3, meth);
        CHECK_EQ(mproc_proxy_queue_qsize(q), 0);
        CHECK_OK(mproc_proxy_event_set(ev));
        int64_t sum = 0;
        for (int i = 0; i < 3; i++) {
            mproc_obj *r = NULL;
            int64_t v = -1;
            CHECK_OK(mproc_proxy_queue_get(q, 30, &r));
            CHECK_OK(mproc_obj_int_value(r, &v));
            mproc_obj_unref(r);
            sum += v;
        }
        CHECK_EQ(sum, 3);
        for (int i = 0; i < 3; i++) {
            CHECK_OK(mproc_process_join(ps[i], 30));
            CHECK_EQ(mproc_process_exitcode(ps[i]), 0);
            mproc_process_free(ps[i]);
        }
        mproc_proxy_free(l);
        mproc_proxy_free(q);
        mproc_proxy_free(ev);
    }
    /* Condition and Barrier when this server has them */
    mproc_proxy *c;
    if (mproc_manager_create(srv, &c, "Condition", NULL, NULL, NULL, 0) == 0) {
        mproc_proxy_free(c);
        typed_cond_barrier(srv);
    }
    CHECK_EQ(objects(mproc_manager_address(srv)), 0);
    mproc_manager_free(srv);
}

static void *queue_waiter(void *arg)
{
    mproc_obj *r = NULL;
    int rc = mproc_proxy_queue_get(arg, -1, &r);
    mproc_obj_unref(r);
    return (void *)(intptr_t)rc;
}

typedef struct lock_arg {
    mproc_proxy *lock, *q;
    int acquired, released;
} lock_arg;

static void *lock_holder(void *arg)
{
    lock_arg *a = arg;
    a->acquired = mproc_proxy_acquire(a->lock, -1);
    mproc_obj *r = NULL;
    /* wait for the main thread's go, then release */
    CHECK_OK(mproc_proxy_queue_get(a->q, -1, &r));
    mproc_obj_unref(r);
    a->released = mproc_proxy_release(a->lock);
    return NULL;
}

/* A thread that holds an RLock (owned by the connection that took it)
 * releases it while other threads of the same process call through the
 * same manager: the channel holding the lock is kept for its thread. A
 * call blocked in the server returns when the server is killed. */
static void test_helpers_threads_and_death(void)
{
    mproc_manager *m;
    mproc_manager_opts o = key_opts();
    CHECK_OK(mproc_manager_start(&m, NULL, &o));
    mproc_proxy *lock = make(m, "RLock", NULL), *q = make(m, "Queue", NULL);
    mproc_proxy *q2 = make(m, "Queue", NULL);
    mproc_obj *go = mproc_obj_str_c("go"), *r = NULL;
    /* main acquires then keeps other channels busy: its own channel
     * holds the lock */
    CHECK_OK(mproc_proxy_acquire(lock, -1));
    pthread_t t;
    lock_arg a = {lock, q, 1, 1};
    CHECK_EQ(pthread_create(&t, NULL, lock_holder, &a), 0);
    usleep(100000); /* its acquire waits on the server */
    /* the thread's acquire waits; the main thread's calls go on */
    CHECK_EQ(mproc_proxy_queue_qsize(q2), 0);
    CHECK_OK(mproc_proxy_release(lock)); /* the thread gets it */
    for (int i = 0; i < 20; i++) /* calls of the main thread meanwhile */
        CHECK_EQ(mproc_proxy_queue_qsize(q2), 0);
    CHECK_OK(mproc_proxy_queue_put(q, go, -1));
    pthread_join(t, NULL);
    CHECK_OK(a.acquired);
    CHECK_OK(a.released);
    CHECK_OK(mproc_proxy_acquire(lock, 0)); /* free again */
    CHECK_OK(mproc_proxy_release(lock));

    /* a thread blocked in queue_get; the server killed */
    pthread_t g;
    CHECK_EQ(pthread_create(&g, NULL, queue_waiter, q2), 0);
    usleep(100000);
    kill(mproc_manager_pid(m), SIGKILL);
    double t0 = mproc_test_now();
    void *ret;
    pthread_join(g, &ret);
    CHECK((intptr_t)ret < 0); /* the blocked call failed */
    CHECK(mproc_test_now() - t0 < 5);
    CHECK(mproc_proxy_queue_put(q, go, -1) < 0);
    CHECK(mproc_proxy_acquire(lock, -1) < 0);
    CHECK(mproc_proxy_barrier_wait(lock, -1) < 0);
    mproc_obj_unref(go);
    mproc_obj_unref(r);
    mproc_proxy_free(q2);
    mproc_proxy_free(q);
    mproc_proxy_free(lock);
    mproc_manager_free(m);
}

static int64_t proxy_int(mproc_proxy *p, const char *method)
{
    mproc_obj *r = NULL;
    int64_t v = -1;
    CHECK_EQ(mproc_proxy_call(p, method, NULL, NULL, &r, NULL, 0), 0);
    CHECK_OK(mproc_obj_int_value(r, &v));
    mproc_obj_unref(r);
    return v;
}

/* What a C client does with the Counter and Tagged types; the same
 * against mproc's server (the C types) and CPython's (the Python ones). */
static void custom_ops(mproc_manager *m)
{
    char err[256];
    mproc_proxy *c =
        make(m, "Counter", mproc_obj_tuple_of(1, mproc_obj_int(5)));
    CHECK_STR(mproc_proxy_typeid(c), "Counter");
    CHECK_EQ(proxy_int(c, "increment"), 6);
    mproc_obj *ten = mproc_obj_tuple_of(1, mproc_obj_int(10)), *r = NULL;
    CHECK_EQ(mproc_proxy_call(c, "increment", ten, NULL, &r, NULL, 0), 0);
    got_repr(r, "16");
    mproc_obj_unref(ten);
    CHECK_EQ(proxy_int(c, "get"), 16);
    char *text;
    CHECK_OK(mproc_proxy_repr(c, &text));
    CHECK_STR(text, "Counter(16)");
    free(text);
    /* exceptions, with their messages */
    mproc_obj *msg = mproc_obj_tuple_of(1, mproc_obj_str_c("bad \xc3\xa9"));
    CHECK_ERR(mproc_proxy_call(c, "fail", msg, NULL, &r, err, sizeof err),
              MPROC_EREMOTE);
    CHECK_STR(mproc_obj_reduce_name(r), "ValueError");
    CHECK_STR(err, "ValueError('bad \xc3\xa9')");
    mproc_obj_unref(r);
    mproc_obj_unref(msg);
    CHECK_ERR(mproc_proxy_call(c, "boom", NULL, NULL, &r, err, sizeof err),
              MPROC_EREMOTE);
    CHECK_STR(mproc_obj_reduce_name(r), "RuntimeError");
    CHECK(strstr(err, "EIO"));
    mproc_obj_unref(r);
    msg = mproc_obj_tuple_of(1, mproc_obj_int(1));
    CHECK_ERR(mproc_proxy_call(c, "boom", msg, NULL, &r, err, sizeof err),
              MPROC_EREMOTE);
    CHECK_STR(mproc_obj_reduce_name(r), "TypeError");
    mproc_obj_unref(r);
    mproc_obj_unref(msg);
    CHECK_EQ(proxy_int(c, "get"), 16); /* the server goes on */
    /* method_to_typeid: proxies to new objects */
    mproc_proxy *child, *d;
    CHECK_EQ(mproc_proxy_call(c, "child", NULL, NULL, &r, NULL, 0), 1);
    CHECK_OK(mproc_proxy_from_reply(c, r, &child));
    mproc_obj_unref(r);
    CHECK_STR(mproc_proxy_typeid(child), "Counter");
    CHECK_EQ(proxy_int(child, "get"), 16);
    CHECK_EQ(proxy_int(child, "increment"), 17);
    CHECK_EQ(proxy_int(c, "get"), 16);
    CHECK_EQ(mproc_proxy_call(c, "as_dict", NULL, NULL, &r, NULL, 0), 1);
    CHECK_OK(mproc_proxy_from_reply(c, r, &d));
    mproc_obj_unref(r);
    CHECK_STR(mproc_proxy_typeid(d), "dict");
    mproc_obj *vk = mproc_obj_str_c("value");
    CHECK_OK(mproc_proxy_getitem(d, vk, &r));
    got_repr(r, "16");
    mproc_obj_unref(vk);
    /* not exposed */
    CHECK_ERR(mproc_proxy_call(c, "_hidden", NULL, NULL, &r, err, sizeof err),
              MPROC_EREMOTE);
    CHECK_EQ(mproc_obj_type_of(r), MPROC_OBJ_STR); /* a traceback */
    mproc_obj_unref(r);
    /* keywords; a refused create */
    mproc_obj *kw = mproc_obj_dict_new();
    CHECK_OK(
        mproc_obj_dict_set(kw, mproc_obj_str_c("start"), mproc_obj_int(3)));
    mproc_proxy *c3;
    CHECK_OK(
        mproc_manager_create(m, &c3, "Counter", NULL, kw, err, sizeof err));
    mproc_obj_unref(kw);
    CHECK_EQ(proxy_int(c3, "get"), 3);
    mproc_obj *neg = mproc_obj_tuple_of(1, mproc_obj_int(-1));
    mproc_proxy *bad;
    CHECK_ERR(
        mproc_manager_create(m, &bad, "Counter", neg, NULL, err, sizeof err),
        MPROC_EREMOTE);
    CHECK(strstr(err, "ValueError"));
    mproc_obj_unref(neg);
    /* exposed names of its own */
    mproc_proxy *t = make(m, "Tagged", NULL);
    CHECK_EQ(mproc_proxy_call(t, "get", NULL, NULL, &r, NULL, 0), 0);
    got_repr(r, "'tag'");
    CHECK_ERR(mproc_proxy_call(t, "secret", NULL, NULL, &r, err, sizeof err),
              MPROC_EREMOTE);
    CHECK(strstr(err, "secret"));
    mproc_obj_unref(r);
    mproc_proxy_free(t);
    mproc_proxy_free(c3);
    mproc_proxy_free(d);
    mproc_proxy_free(child);
    mproc_proxy_free(c);
}

static void test_registered_types(void)
{
    /* served here: the objects are freed with their last proxy */
    mproc_manager *m;
    mproc_manager_opts o = custom_opts();
    CHECK_OK(mproc_manager_serve(&m, NULL, &o));
    long frees = __atomic_load_n(&counter_frees, __ATOMIC_RELAXED);
    custom_ops(m);
    CHECK_EQ(objects(mproc_manager_address(m)), 0);
    /* Counter(5), its child, Counter(start=3); the refused one made none */
    CHECK_EQ(__atomic_load_n(&counter_frees, __ATOMIC_RELAXED) - frees, 3);
    /* the server stopping frees what is left */
    mproc_proxy *c = make(m, "Counter", NULL);
    CHECK_OK(mproc_manager_shutdown(m, 10));
    CHECK_EQ(__atomic_load_n(&counter_frees, __ATOMIC_RELAXED) - frees, 4);
    mproc_proxy_free(c); /* the server is gone: nothing to drop */
    mproc_manager_free(m);
    /* a child server under every start method finds the types again */
    for (int meth = 0; meth < 3; meth++) {
        CHECK_OK(mproc_set_start_method(mproc_test_methods[meth]));
        CHECK_OK(mproc_manager_start(&m, "127.0.0.1:0", &o));
        custom_ops(m);
        CHECK_EQ(objects(mproc_manager_address(m)), 0);
        mproc_manager_free(m);
    }
    /* a type the child cannot find (not static), bad tables */
    mproc_manager_type *heap = malloc(sizeof *heap);
    *heap = counter_type;
    const mproc_manager_type *hs[] = {heap};
    o.types = hs;
    o.ntypes = 1;
    CHECK_ERR(mproc_manager_start(&m, NULL, &o), MPROC_ERESOLVE);
    CHECK_OK(mproc_manager_serve(&m, NULL, &o)); /* in this process: fine */
    mproc_proxy *hc = make(m, "Counter", NULL);
    CHECK_EQ(proxy_int(hc, "increment"), 1);
    mproc_proxy_free(hc);
    mproc_manager_free(m);
    free(heap);
    const mproc_manager_type *nulls[] = {NULL};
    o.types = nulls;
    CHECK_ERR(mproc_manager_start(&m, NULL, &o), -EINVAL);
    CHECK_ERR(mproc_manager_serve(&m, NULL, &o), -EINVAL);
    o.types = NULL;
    CHECK_ERR(mproc_manager_serve(&m, NULL, &o), -EINVAL);
}

/* Objects of types registered from C under the lifetimes of the server:
 * one that only a killed client process referenced is freed (its type's
 * free runs), and one stored as a proxy in a list lives while stored. */
static void test_registered_lifetimes(void)
{
    mproc_manager *m;
    mproc_manager_opts o = custom_opts();
    CHECK_OK(mproc_manager_serve(&m, NULL, &o)); /* frees counted here */
    const char *addr = mproc_manager_address(m);
    long frees = __atomic_load_n(&counter_frees, __ATOMIC_RELAXED);
    int ready[2];
    CHECK_EQ(pipe(ready), 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(ready[0]);
        mproc_obj_unref(
            create(addr, mproc_obj_tuple_of(2, mproc_obj_str_c("Counter"),
                                            mproc_obj_int(5))));
        if (write(ready[1], "x", 1) != 1)
            mproc_test_exit(1);
        for (;;)
            pause();
    }
    close(ready[1]);
    char x;
    struct pollfd pf = {ready[0], POLLIN, 0};
    CHECK_EQ(poll(&pf, 1, 20000), 1);
    CHECK_EQ(read(ready[0], &x, 1), 1);
    close(ready[0]);
    CHECK_EQ(objects(addr), 1);
    kill(pid, SIGKILL);
    int st;
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    double t0 = mproc_test_now();
    while (objects(addr) != 0 && mproc_test_now() - t0 < 10)
        usleep(5000);
    CHECK_EQ(objects(addr), 0);
    CHECK_EQ(__atomic_load_n(&counter_frees, __ATOMIC_RELAXED) - frees, 1);

    /* a Counter stored in a list: kept with no client's reference, freed
     * with the list */
    mproc_obj *cnt =
        create(addr, mproc_obj_tuple_of(2, mproc_obj_str_c("Counter"),
                                        mproc_obj_int(1)));
    mproc_obj *l = create(addr, mproc_obj_tuple_of(1, mproc_obj_str_c("list")));
    mproc_conn *c = channel(addr);
    mproc_obj_unref(ok_call(
        c, l, "append",
        mproc_obj_tuple_of(1, proxy_value("Counter", "AutoProxy", cnt))));
    decref(addr, cnt);
    CHECK_EQ(objects(addr), 2);
    mproc_obj *v = ok_call(c, cnt, "increment", NULL);
    check_repr(v, "2");
    mproc_obj_unref(v);
    CHECK_EQ(__atomic_load_n(&counter_frees, __ATOMIC_RELAXED) - frees, 1);
    mproc_conn_free(c);
    decref(addr, l);
    CHECK_EQ(objects(addr), 0);
    CHECK_EQ(__atomic_load_n(&counter_frees, __ATOMIC_RELAXED) - frees, 2);
    mproc_obj_unref(cnt);
    mproc_obj_unref(l);
    mproc_manager_free(m);
}

/* ---- proxies over connections, a restarted server ---------------------- */

static mproc_conn_opts key_conn(void)
{
    mproc_conn_opts o = {.auth = MPROC_AUTH_KEY,
                         .authkey = key,
                         .authkey_len = strlen(key),
                         .timeout = 10};
    return o;
}

static mproc_obj *recv_one(mproc_conn *c)
{
    mproc_obj *v = NULL;
    CHECK_OK(mproc_conn_recv_obj(c, &v, 30, NULL, 0));
    return v;
}

static void send_str(mproc_conn *c, const char *s)
{
    mproc_obj *v = mproc_obj_str_c(s);
    CHECK_OK(mproc_conn_send_obj(c, v));
    mproc_obj_unref(v);
}

/* Receives a proxy, says "got", waits for "go" (the sender has dropped
 * its own proxy by then), uses it and answers what it saw. */
static int t_proxy_receiver(const mproc_args *a)
{
    mproc_conn *c = mproc_args_conn(a, 0);
    mproc_obj *v = recv_one(c);
    mproc_proxy *d;
    mproc_conn_opts o = key_conn();
    if (mproc_proxy_from_obj(&d, v, &o) < 0)
        return 1;
    mproc_obj_unref(v);
    send_str(c, "got");
    mproc_obj_unref(recv_one(c));
    mproc_obj *k = mproc_obj_str_c("child"), *one = mproc_obj_int(1);
    int rc = mproc_proxy_setitem(d, k, one);
    char *text = NULL;
    if (rc == 0)
        rc = mproc_proxy_repr(d, &text);
    if (rc == 0)
        send_str(c, text);
    free(text);
    mproc_obj_unref(k);
    mproc_obj_unref(one);
    mproc_proxy_free(d);
    return rc == 0 ? 0 : 2;
}

/* C -> C over a pipe under every start method: the receiver's proxy holds
 * a reference of its own, so the object outlives the sender's proxy. */
static void test_proxy_over_pipe(void)
{
    mproc_manager *m;
    mproc_manager_opts mo = key_opts();
    CHECK_OK(mproc_manager_start(&m, NULL, &mo));
    const char *addr = mproc_manager_address(m);
    for (int meth = 0; meth < 3; meth++) {
        mproc_proxy *d;
        CHECK_OK(mproc_manager_create(m, &d, "dict", NULL, NULL, NULL, 0));
        mproc_obj *k = mproc_obj_str_c("parent"), *two = mproc_obj_int(2);
        CHECK_OK(mproc_proxy_setitem(d, k, two));
        mproc_obj_unref(k);
        mproc_obj_unref(two);
        mproc_conn *a, *b;
        CHECK_OK(mproc_pipe(&a, &b, 1));
        mproc_args *args = mproc_args_new();
        CHECK_OK(mproc_args_add_conn(args, b));
        mproc_process *p;
        CHECK_OK(mproc_process_new(&p, t_proxy_receiver, args));
        mproc_args_free(args);
        CHECK_OK(mproc_process_set_start_method(p, mproc_test_methods[meth]));
        CHECK_OK(mproc_process_start(p));
        mproc_conn_free(b);
        mproc_obj *v;
        CHECK_OK(mproc_proxy_to_obj(d, &v));
        CHECK_OK(mproc_conn_send_obj(a, v));
        mproc_obj_unref(v);
        v = recv_one(a);
        check_repr(v, "'got'");
        mproc_obj_unref(v);
        mproc_proxy_free(d); /* the child's reference keeps the object */
        CHECK_EQ(objects(addr), 1);
        send_str(a, "go");
        v = recv_one(a);
        check_repr(v, "\"{'parent': 2, 'child': 1}\"");
        mproc_obj_unref(v);
        CHECK_OK(mproc_process_join(p, 30));
        CHECK_EQ(mproc_process_exitcode(p), 0);
        mproc_process_free(p);
        mproc_conn_free(a);
        CHECK_EQ(objects(addr), 0); /* the child's reference went too */
    }
    mproc_manager_free(m);
}

/* Values of the wrong shapes are refused, and nothing is left behind. */
static void test_proxy_from_hostile_obj(void)
{
    mproc_manager *m;
    mproc_manager_opts mo = key_opts();
    CHECK_OK(mproc_manager_serve(&m, NULL, &mo));
    mproc_conn_opts o = key_conn();
    mproc_proxy *d, *p = NULL;
    CHECK_OK(mproc_manager_create(m, &d, "dict", NULL, NULL, NULL, 0));
    mproc_obj *good;
    CHECK_OK(mproc_proxy_to_obj(d, &good));
    const mproc_obj *ga = mproc_obj_reduce_args(good);
    const mproc_obj *tok = mproc_obj_item(ga, 1);
    const mproc_obj *st = mproc_obj_reduce_state(tok);
#define R(x) mproc_obj_ref((mproc_obj *)(x))
#define TOKEN(t0, t1, t2)                                                      \
    mproc_obj_reduce("multiprocessing.managers", "Token",                      \
                     mproc_obj_tuple_new(0),                                   \
                     mproc_obj_tuple_of(3, t0, t1, t2), true)
#define REBUILD(cls, token, ser, kw)                                           \
    mproc_obj_reduce("multiprocessing.managers", "RebuildProxy",               \
                     mproc_obj_tuple_of(4, cls, token, ser, kw), NULL, false)
    mproc_obj *cls = R(mproc_obj_item(ga, 0));
    mproc_obj *bad[] = {
        mproc_obj_int(7),
        mproc_obj_tuple_of(4, R(cls), R(tok), mproc_obj_str_c("pickle"),
                           mproc_obj_dict_new()),
        REBUILD(mproc_obj_reduce("builtins", "dict", NULL, NULL, false), R(tok),
                mproc_obj_str_c("pickle"), mproc_obj_dict_new()),
        REBUILD(R(cls), mproc_obj_str_c("token"), mproc_obj_str_c("pickle"),
                mproc_obj_dict_new()),
        REBUILD(R(cls), R(tok), mproc_obj_str_c("xmlrpclib"),
                mproc_obj_dict_new()),
        REBUILD(R(cls), R(tok), mproc_obj_str_c("pickle"), mproc_obj_none()),
        REBUILD(R(cls),
                TOKEN(mproc_obj_int(1), R(mproc_obj_item(st, 1)),
                      R(mproc_obj_item(st, 2))),
                mproc_obj_str_c("pickle"), mproc_obj_dict_new()),
        REBUILD(R(cls),
                TOKEN(mproc_obj_str_c("dict"), mproc_obj_int(5),
                      R(mproc_obj_item(st, 2))),
                mproc_obj_str_c("pickle"), mproc_obj_dict_new()),
        REBUILD(R(cls),
                TOKEN(mproc_obj_str_c("dict"),
                      mproc_obj_tuple_of(2, mproc_obj_str_c("127.0.0.1"),
                                         mproc_obj_int(70000)),
                      R(mproc_obj_item(st, 2))),
                mproc_obj_str_c("pickle"), mproc_obj_dict_new()),
        REBUILD(R(cls),
                TOKEN(mproc_obj_str_c("dict"), R(mproc_obj_item(st, 1)),
                      mproc_obj_int(5)),
                mproc_obj_str_c("pickle"), mproc_obj_dict_new()),
        mproc_obj_reduce(
            "multiprocessing.managers", "RebuildProxy",
            mproc_obj_tuple_of(3, R(cls), R(tok), mproc_obj_str_c("pickle")),
            NULL, false),
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK(bad[i]);
        CHECK_ERR(mproc_proxy_from_obj(&p, bad[i], &o), MPROC_ETYPE);
        CHECK(p == NULL);
        mproc_obj_unref(bad[i]);
    }
    CHECK_ERR(mproc_proxy_from_obj(&p, NULL, &o), -EINVAL);
    CHECK_ERR(mproc_proxy_from_obj(NULL, good, &o), -EINVAL);
    mproc_obj *none = NULL;
    CHECK_ERR(mproc_proxy_to_obj(NULL, &none), -EINVAL);
    CHECK_ERR(mproc_proxy_to_obj(d, NULL), -EINVAL);
    /* an ident the server does not have; a wrong key */
    mproc_obj *ghost =
        REBUILD(R(cls),
                TOKEN(mproc_obj_str_c("dict"), R(mproc_obj_item(st, 1)),
                      mproc_obj_str_c("deadbeef")),
                mproc_obj_str_c("pickle"), mproc_obj_dict_new());
    CHECK_ERR(mproc_proxy_from_obj(&p, ghost, &o), -ESTALE);
    mproc_obj_unref(ghost);
    mproc_conn_opts wrong = o;
    wrong.authkey = "wrong";
    wrong.authkey_len = 5;
    CHECK_ERR(mproc_proxy_from_obj(&p, good, &wrong), MPROC_EAUTH);
    /* the right one works, and holds a reference of its own */
    CHECK_OK(mproc_proxy_from_obj(&p, good, &o));
    CHECK_EQ(objects(mproc_manager_address(m)), 1);
    mproc_proxy_free(d);
    CHECK_EQ(mproc_proxy_len(p), 0);
    CHECK(strcmp(mproc_proxy_typeid(p), "dict") == 0);
    mproc_proxy_free(p);
    CHECK_EQ(objects(mproc_manager_address(m)), 0);
    mproc_obj_unref(good);
    mproc_obj_unref(cls);
    mproc_manager_free(m);
#undef R
#undef TOKEN
#undef REBUILD
}

/* C -> CPython and CPython -> C over a Connection: the Python side uses
 * the C process's dict proxy and sends back a list proxy of its own. */
static void test_proxy_with_python(void)
{
    static const char *const vs[] = {"3.13", "3.7"};
    int ran = 0;
    for (size_t v = 0; v < sizeof vs / sizeof *vs; v++) {
        const char *python = mproc_test_python(vs[v]);
        if (!python)
            continue;
        ran++;
        mproc_manager *m;
        mproc_manager_opts mo = key_opts();
        CHECK_OK(mproc_manager_start(&m, v ? "127.0.0.1:0" : NULL, &mo));
        const char *addr = mproc_manager_address(m);
        mproc_proxy *d;
        CHECK_OK(mproc_manager_create(m, &d, "dict", NULL, NULL, NULL, 0));
        mproc_obj *k = mproc_obj_str_c("c"), *one = mproc_obj_int(1);
        CHECK_OK(mproc_proxy_setitem(d, k, one));
        mproc_obj_unref(k);
        mproc_obj_unref(one);
        mproc_listener *l;
        mproc_conn_opts o = key_conn();
        CHECK_OK(mproc_listener_new(&l, NULL, &o));
        pid_t pid = start_py(python, addr, key_hex, "proxyconn",
                             mproc_listener_address(l));
        mproc_conn *c;
        CHECK_OK(mproc_listener_accept(l, &c, 30));
        mproc_obj *val;
        CHECK_OK(mproc_proxy_to_obj(d, &val));
        CHECK_OK(mproc_conn_send_obj(c, val));
        mproc_obj_unref(val);
        val = recv_one(c); /* what Python saw through the proxy */
        check_repr(val, "[('c', 1), ('py', 1)]");
        mproc_obj_unref(val);
        val = recv_one(c); /* Python's list proxy */
        mproc_proxy *pl;
        CHECK_OK(mproc_proxy_from_obj(&pl, val, &o));
        mproc_obj_unref(val);
        CHECK(strcmp(mproc_proxy_typeid(pl), "list") == 0);
        send_str(c, "got");
        CHECK_EQ(wait_py(pid), 0); /* its proxies' references gone */
        mproc_obj *two = mproc_obj_int(2);
        CHECK_OK(mproc_proxy_append(pl, two));
        mproc_obj_unref(two);
        CHECK_OK(mproc_proxy_value(pl, &val));
        check_repr(val, "[0, 1, 2]");
        mproc_obj_unref(val);
        CHECK_OK(mproc_proxy_value(d, &val));
        check_repr(val, "{'c': 1, 'py': 1}");
        mproc_obj_unref(val);
        CHECK_EQ(objects(addr), 2);
        mproc_proxy_free(pl);
        mproc_proxy_free(d);
        CHECK_EQ(objects(addr), 0);
        mproc_conn_free(c);
        mproc_listener_free(l);
        mproc_manager_free(m);
    }
    if (!ran)
        SKIP("no CPython 3.13 or 3.7");
}

/* A server stopped (or killed) and a new one started at the same path:
 * the same handle creates and calls again; the old proxies fail at once
 * with -ESTALE. */
static void test_reconnect_restarted(void)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/mproc-mgrx-%d", (int)getpid());
    unlink(path);
    mproc_manager_opts mo = key_opts();
    mproc_conn_opts o = key_conn();
    for (int round = 0; round < 2; round++) {
        mproc_manager *s1, *s2, *m;
        if (round == 0)
            CHECK_OK(mproc_manager_serve(&s1, path, &mo));
        else
            CHECK_OK(mproc_manager_start(&s1, path, &mo));
        CHECK_OK(mproc_manager_connect(&m, path, &o));
        mproc_proxy *d, *d2, *kept;
        CHECK_OK(mproc_manager_create(m, &d, "dict", NULL, NULL, NULL, 0));
        CHECK_OK(mproc_manager_create(m, &kept, "list", NULL, NULL, NULL, 0));
        CHECK_EQ(mproc_proxy_len(d), 0); /* a channel now in the pool */
        CHECK_EQ(mproc_proxy_len(kept), 0);
        if (round == 0) {
            CHECK_OK(mproc_manager_shutdown(s1, 10));
        } else {
            CHECK_OK(kill(mproc_manager_pid(s1), SIGKILL));
            while (mproc_manager_is_alive(s1) == 1)
                usleep(1000);
        }
        mproc_manager_free(s1);
        unlink(path); /* a killed server leaves its socket file */
        CHECK_OK(mproc_manager_serve(&s2, path, &mo));
        CHECK_OK(mproc_manager_create(m, &d2, "dict", NULL, NULL, NULL, 0));
        mproc_obj *k = mproc_obj_int(1);
        CHECK_OK(mproc_proxy_setitem(d2, k, k));
        CHECK_EQ(mproc_proxy_len(d2), 1);
        mproc_obj_unref(k);
        /* the old proxies name objects of the old server */
        CHECK_ERR(mproc_proxy_len(d), -ESTALE);
        CHECK_ERR(mproc_proxy_call(kept, "__len__", NULL, NULL, NULL, NULL, 0),
                  -ESTALE);
        mproc_proxy_free(d); /* sends no decref to the new server */
        mproc_proxy_free(kept);
        CHECK_EQ(objects(path), 1);
        CHECK_EQ(mproc_proxy_len(d2), 1);
        mproc_proxy_free(d2);
        CHECK_EQ(objects(path), 0);
        mproc_manager_free(m);
        mproc_manager_free(s2);
        unlink(path);
    }
}

/* A proxy whose object the server no longer has (no idle channel to
 * tell a restart) fails with -ESTALE too: mproc's server and CPython's
 * answer the same KeyError. */
static void test_stale_ident(void)
{
    const char *python = mproc_test_python("3.13");
    for (int round = 0; round < (python ? 2 : 1); round++) {
        mproc_manager *s = NULL, *m;
        mproc_conn_opts o = key_conn();
        char addr[128];
        pid_t pid = -1;
        if (round == 0) {
            mproc_manager_opts mo = key_opts();
            CHECK_OK(mproc_manager_serve(&s, NULL, &mo));
            snprintf(addr, sizeof addr, "%s", mproc_manager_address(s));
        } else {
            pid = start_py_server(python, addr, sizeof addr);
        }
        CHECK_OK(mproc_manager_connect(&m, addr, &o));
        mproc_proxy *d, *p;
        CHECK_OK(mproc_manager_create(m, &d, "dict", NULL, NULL, NULL, 0));
        mproc_obj *v;
        CHECK_OK(mproc_proxy_to_obj(d, &v));
        CHECK_OK(mproc_proxy_from_obj(&p, v, &o));
        mproc_obj_unref(v);
        CHECK_EQ(objects(addr), 1);
        /* drop both references through raw decrefs: the object is gone */
        for (int i = 0; i < 2; i++)
            mproc_obj_unref(top(
                addr, "decref",
                mproc_obj_tuple_of(1, mproc_obj_str_c(mproc_proxy_ident(p))),
                NULL));
        CHECK_EQ(objects(addr), 0);
        CHECK_ERR(mproc_proxy_len(p), -ESTALE);
        CHECK_ERR(mproc_proxy_len(d), -ESTALE);
        mproc_proxy_free(p);
        mproc_proxy_free(d);
        mproc_manager_free(m);
        mproc_manager_free(s);
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
    }
}

static const mproc_test tests[] = {
    {"start_every_method", test_start_every_method, 120},
    {"serve_in_thread", test_serve_in_thread, 0},
    {"authkeys", test_authkeys, 0},
    {"stalled_and_hostile_clients", test_stalled_and_hostile_clients, 60},
    {"slow_readers", test_slow_readers, 120},
    {"stalled_handshakes", test_stalled_handshakes, 60},
    {"client_reads_replies", test_client_reads_replies, 60},
    {"many_clients", test_many_clients, 60},
    {"client_shutdown", test_client_shutdown, 0},
    {"server_killed", test_server_killed, 0},
    {"shutdown_waits", test_shutdown_waits, 60},
    {"bad_arguments", test_bad_arguments, 0},
    {"cpython_clients", test_cpython_clients, 600},
    {"c_client_mproc_server", test_c_client_mproc_server, 60},
    {"c_client_cpython_server", test_c_client_cpython_server, 120},
    {"proxy_threads", test_proxy_threads, 60},
    {"proxies_to_children", test_proxies_to_children, 120},
    {"blocking_types", test_blocking_types, 60},
    {"condition_barrier", test_condition_barrier, 60},
    {"dead_client_gives_back", test_dead_client_gives_back, 60},
    {"nested_proxies", test_nested_proxies, 60},
    {"mixed_appenders", test_mixed_appenders, 120},
    {"typed_helpers", test_typed_helpers, 60},
    {"helpers_threads_and_death", test_helpers_threads_and_death, 60},
    {"registered_types", test_registered_types, 120},
    {"registered_lifetimes", test_registered_lifetimes, 60},
    {"proxy_over_pipe", test_proxy_over_pipe, 120},
    {"proxy_from_hostile_obj", test_proxy_from_hostile_obj, 0},
    {"proxy_with_python", test_proxy_with_python, 120},
    {"reconnect_restarted", test_reconnect_restarted, 60},
    {"stale_ident", test_stale_ident, 0},
};

MPROC_TEST_MAIN(tests)
