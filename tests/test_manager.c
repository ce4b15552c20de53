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
 * a key refused, a server killed under its clients.
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
        mproc_manager_opts o = key_opts();
        /* alternately a child on TCP and a thread on an abstract name */
        if (v % 2)
            CHECK_OK(mproc_manager_start(&mg, "127.0.0.1:0", &o));
        else
            CHECK_OK(mproc_manager_serve(&mg, NULL, &o));
        const char *addr = mproc_manager_address(mg);
        CHECK_EQ(run_py(python, addr, key_hex, "types"), 0);
        CHECK_EQ(run_py(python, addr, key_hex, "registered"), 0);
        CHECK_EQ(run_py(python, addr, key_hex, "blocking"), 0);
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

static void test_c_client_cpython_server(void)
{
    static const char *const vs[] = {"3.6", "3.11", "3.13"};
    int ran = 0;
    for (size_t v = 0; v < 3; v++) {
        const char *python = mproc_test_python(vs[v]);
        if (!python)
            continue;
        ran++;
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
        char addr[128];
        size_t n = 0;
        while (n + 1 < sizeof addr) {
            struct pollfd pf = {.fd = p[0], .events = POLLIN};
            CHECK(poll(&pf, 1, 30000) == 1);
            CHECK(read(p[0], addr + n, 1) == 1);
            if (addr[n] == '\n')
                break;
            n++;
        }
        addr[n] = 0;
        close(p[0]);
        mproc_manager *cl;
        mproc_conn_opts co = {
            .auth = MPROC_AUTH_KEY, .authkey = key, .authkey_len = strlen(key)};
        CHECK_OK(mproc_manager_connect(&cl, addr, &co));
        client_ops(cl);
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
        for (int i = 0; i < 5; i++) {
            mproc_args *a = mproc_args_new();
            CHECK_OK(mproc_args_add_proxy(a, l));
            CHECK_OK(mproc_args_add_proxy(a, d));
            CHECK_OK(mproc_args_add_int(a, i));
            CHECK_OK(mproc_process_new(&ps[i], t_square, a));
            mproc_args_free(a);
            CHECK_OK(mproc_process_set_start_method(ps[i],
                                                    mproc_test_methods[meth]));
            CHECK_OK(mproc_process_start(ps[i]));
        }
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
    {"bad_arguments", test_bad_arguments, 0},
    {"cpython_clients", test_cpython_clients, 600},
    {"c_client_mproc_server", test_c_client_mproc_server, 60},
    {"c_client_cpython_server", test_c_client_cpython_server, 120},
    {"proxy_threads", test_proxy_threads, 60},
    {"proxies_to_children", test_proxies_to_children, 120},
    {"blocking_types", test_blocking_types, 60},
    {"mixed_appenders", test_mixed_appenders, 120},
};

MPROC_TEST_MAIN(tests)
