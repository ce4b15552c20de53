/*
 * test_interop.c - connections against real CPython: a Python Client
 * against an mproc Listener and an mproc Client against a Python Listener,
 * over abstract AF_UNIX names, filesystem paths and TCP; the right key and
 * a wrong one (both sides fail, neither hangs); a key on one side only;
 * empty, 64 MiB and many messages; EOF in both directions. Python 3.6 and
 * 3.8 exercise the HMAC-MD5 handshake, 3.12+ the "{sha256}" one.
 * The Python side is tests/py/conn_peer.py; interpreters come from
 * $MPROC_PYTHON_DIR, by default ~/.pyenv/versions (mproc_test_python), and
 * a missing one is skipped.
 */
#include "harness.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

static const char *versions[] = {"3.6", "3.8", "3.11", "3.12", "3.13"};
#define NVERSIONS (sizeof versions / sizeof versions[0])

static const char key_hex[] = "6d70726f632d696e7465726f70"; /* mproc-interop */
static const char key_raw[] = "mproc-interop";
static const char bad_hex[] = "77726f6e67";

typedef struct py {
    pid_t pid;
    int out; /* its stdout */
} py;

static py py_start(const char *python, const char *role, const char *addr,
                   const char *key, const char *scenario)
{
    const char *path = mproc_test_py_script("conn_peer.py");
    int p[2];
    CHECK_OK(pipe2(p, O_CLOEXEC));
    fflush(NULL);
    py r = {fork(), p[0]};
    CHECK(r.pid >= 0);
    if (r.pid == 0) {
        dup2(p[1], 1);
        const char *argv[] = {python, path, role, addr, key, scenario, NULL};
        execv(python, (char *const *)argv);
        mproc_test_exit(127);
    }
    close(p[1]);
    return r;
}

/* Reads the first line the peer prints (its address). */
static void py_line(py *p, char *buf, size_t cap)
{
    size_t n = 0;
    double t0 = mproc_test_now();
    while (n + 1 < cap) {
        struct pollfd pf = {.fd = p->out, .events = POLLIN};
        CHECK(mproc_test_now() - t0 < 30);
        if (poll(&pf, 1, 1000) <= 0)
            continue;
        ssize_t k = read(p->out, buf + n, 1);
        CHECK(k == 1);
        if (buf[n] == '\n')
            break;
        n++;
    }
    buf[n] = 0;
}

/* Waits (bounded) for the peer and returns its exit code. */
static int py_wait(py *p, double timeout)
{
    double t0 = mproc_test_now();
    int st = 0;
    for (;;) {
        pid_t r = waitpid(p->pid, &st, WNOHANG);
        if (r == p->pid)
            break;
        if (mproc_test_now() - t0 > timeout) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &st, 0);
            close(p->out);
            mproc_test_fail(__FILE__, __LINE__, "python peer hung");
        }
        usleep(5000);
    }
    close(p->out);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static mproc_conn_opts key_opts(const char *key, double timeout)
{
    mproc_conn_opts o = {.auth = MPROC_AUTH_KEY,
                         .authkey = key,
                         .authkey_len = strlen(key),
                         .timeout = timeout};
    return o;
}

static unsigned char *big_msg(size_t n)
{
    unsigned char *p = malloc(n);
    CHECK(p);
    uint64_t x = 0x9e3779b97f4a7c15u;
    for (size_t i = 0; i + 8 <= n; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(p + i, &x, 8);
    }
    return p;
}

/* The exchange every echo peer gets: empty, small, many, 64 MiB. */
static void exchange(mproc_conn *c, bool big)
{
    void *m;
    size_t n;
    CHECK_OK(mproc_conn_send_bytes(c, NULL, 0));
    CHECK_OK(mproc_conn_recv_bytes(c, &m, &n, 0, 20));
    CHECK_EQ(n, 0);
    free(m);
    CHECK_OK(mproc_conn_send_bytes(c, "hello python", 12));
    CHECK_OK(mproc_conn_recv_bytes(c, &m, &n, 0, 20));
    CHECK_EQ(n, 12);
    CHECK(memcmp(m, "hello python", 12) == 0);
    free(m);
    /* many messages, pipelined */
    unsigned char buf[5000];
    for (unsigned i = 0; i < 2000; i++) {
        size_t len = (i * 7919u) % sizeof buf;
        memset(buf, (int)(i & 0xff), len);
        CHECK_OK(mproc_conn_send_bytes(c, buf, len));
        if (i % 50 == 49) { /* keep the pipe from filling up both ways */
            for (unsigned j = i - 49; j <= i; j++) {
                size_t want = (j * 7919u) % sizeof buf;
                CHECK_OK(
                    mproc_conn_recv_bytes_into(c, buf, sizeof buf, &n, 20));
                CHECK_EQ(n, want);
                CHECK(n == 0 ||
                      (buf[0] == (j & 0xff) && buf[n - 1] == (j & 0xff)));
            }
        }
    }
    if (big) {
        size_t bn = 64u << 20;
        unsigned char *p = big_msg(bn);
        CHECK_OK(mproc_conn_send_bytes(c, p, bn));
        CHECK_OK(mproc_conn_recv_bytes(c, &m, &n, 0, 60));
        CHECK_EQ(n, bn);
        CHECK(memcmp(m, p, bn) == 0);
        free(m);
        free(p);
    }
}

static int have_any(void)
{
    for (size_t i = 0; i < NVERSIONS; i++)
        if (mproc_test_python(versions[i]))
            return 1;
    return 0;
}

/* ---- a Python Client against an mproc Listener -------------------------- */

static void test_py_client_mproc_listener(void)
{
    if (!have_any())
        SKIP("no CPython in $MPROC_PYTHON_DIR (default ~/.pyenv/versions)");
    mproc_conn_opts k = key_opts(key_raw, 20);
    int ran = 0;
    for (size_t v = 0; v < NVERSIONS; v++) {
        const char *python = mproc_test_python(versions[v]);
        if (!python)
            continue;
        ran++;
        const char *addrs[] = {NULL, "127.0.0.1:0"};
        for (int a = 0; a < 2; a++) {
            mproc_listener *l;
            CHECK_OK(mproc_listener_new(&l, addrs[a], &k));
            py p = py_start(python, "connect", mproc_listener_address(l),
                            key_hex, "echo");
            mproc_conn *c;
            CHECK_OK(mproc_listener_accept(l, &c, 30));
            /* 64 MiB once per version */
            exchange(c, a == 0);
            mproc_conn_free(c); /* Python sees EOF and exits 0 */
            CHECK_EQ(py_wait(&p, 30), 0);
            mproc_listener_free(l);
        }
        /* EOF from Python's side: a last message, then a clean end */
        mproc_listener *l;
        CHECK_OK(mproc_listener_new(&l, NULL, &k));
        py p = py_start(python, "connect", mproc_listener_address(l), key_hex,
                        "bye");
        mproc_conn *c;
        CHECK_OK(mproc_listener_accept(l, &c, 30));
        void *m;
        size_t n;
        CHECK_OK(mproc_conn_recv_bytes(c, &m, &n, 0, 20));
        CHECK(n == 3 && memcmp(m, "bye", 3) == 0);
        free(m);
        CHECK_ERR(mproc_conn_recv_bytes(c, &m, &n, 0, 20), MPROC_EEOF);
        mproc_conn_free(c);
        CHECK_EQ(py_wait(&p, 30), 0);
        mproc_listener_free(l);
    }
    CHECK(ran > 0);
}

/* ---- fds both ways: send_handle / recv_handle --------------------------- */

/* An fd to CPython's recv_handle and one back from its send_handle. */
static void test_handles_with_python(void)
{
    if (!have_any())
        SKIP("no CPython in $MPROC_PYTHON_DIR (default ~/.pyenv/versions)");
    mproc_conn_opts k = key_opts(key_raw, 20);
    int ran = 0;
    for (size_t v = 0; v < NVERSIONS; v++) {
        const char *python = mproc_test_python(versions[v]);
        if (!python)
            continue;
        ran++;
        mproc_listener *l;
        CHECK_OK(mproc_listener_new(&l, NULL, &k));
        py p = py_start(python, "connect", mproc_listener_address(l), key_hex,
                        "handle");
        mproc_conn *c;
        CHECK_OK(mproc_listener_accept(l, &c, 30));
        int mfd = memfd_create("handle", MFD_CLOEXEC);
        CHECK(mfd >= 0);
        CHECK_EQ(write(mfd, "from C", 6), 6);
        CHECK_OK(mproc_conn_send_handle(c, mfd, 20));
        close(mfd);
        void *m;
        size_t n;
        CHECK_OK(mproc_conn_recv_bytes(c, &m, &n, 0, 20));
        CHECK(n == 6 && memcmp(m, "from C", 6) == 0);
        free(m);
        int fd = -1;
        CHECK_OK(mproc_conn_recv_handle(c, &fd, 20));
        char buf[32] = {0};
        CHECK_EQ(read(fd, buf, sizeof buf - 1), 11);
        CHECK_STR(buf, "from Python");
        CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        close(fd);
        mproc_conn_free(c);
        CHECK_EQ(py_wait(&p, 30), 0);
        mproc_listener_free(l);
    }
    CHECK(ran > 0);
}

/* ---- an mproc Client against a Python Listener -------------------------- */

static void test_mproc_client_py_listener(void)
{
    if (!have_any())
        SKIP("no CPython in $MPROC_PYTHON_DIR (default ~/.pyenv/versions)");
    mproc_conn_opts k = key_opts(key_raw, 20);
    char dir[] = "/tmp/mproc-interop-XXXXXX";
    CHECK(mkdtemp(dir));
    for (size_t v = 0; v < NVERSIONS; v++) {
        const char *python = mproc_test_python(versions[v]);
        if (!python)
            continue;
        char path[128];
        snprintf(path, sizeof path, "%s/py%zu.sock", dir, v);
        const char *where[] = {"abstract", "tcp", path};
        for (int w = 0; w < 3; w++) {
            py p = py_start(python, "listen", where[w], key_hex, "echo");
            char addr[256];
            py_line(&p, addr, sizeof addr);
            mproc_conn *c;
            CHECK_OK(mproc_client(&c, addr, &k));
            exchange(c, w == 1);
            mproc_conn_free(c);
            CHECK_EQ(py_wait(&p, 30), 0);
        }
        CHECK(access(path, F_OK) < 0); /* Python unlinked its socket */
        py p = py_start(python, "listen", "tcp", key_hex, "bye");
        char addr[256];
        py_line(&p, addr, sizeof addr);
        mproc_conn *c;
        CHECK_OK(mproc_client(&c, addr, &k));
        void *m;
        size_t n;
        CHECK_OK(mproc_conn_recv_bytes(c, &m, &n, 0, 20));
        CHECK(n == 3 && memcmp(m, "bye", 3) == 0);
        free(m);
        CHECK_ERR(mproc_conn_recv_bytes(c, &m, &n, 0, 20), MPROC_EEOF);
        mproc_conn_free(c);
        CHECK_EQ(py_wait(&p, 30), 0);
    }
    rmdir(dir);
}

/* ---- wrong keys, and a key on one side only ------------------------------ */

static void test_wrong_key(void)
{
    if (!have_any())
        SKIP("no CPython in $MPROC_PYTHON_DIR (default ~/.pyenv/versions)");
    mproc_conn_opts k = key_opts(key_raw, 10);
    for (size_t v = 0; v < NVERSIONS; v++) {
        const char *python = mproc_test_python(versions[v]);
        if (!python)
            continue;
        /* Python client, wrong key: both fail; the listener serves the
         * next (right) client */
        mproc_listener *l;
        CHECK_OK(mproc_listener_new(&l, NULL, &k));
        py p = py_start(python, "connect", mproc_listener_address(l), bad_hex,
                        "echo");
        mproc_conn *c;
        double t0 = mproc_test_now();
        CHECK_ERR(mproc_listener_accept(l, &c, 30), MPROC_EAUTH);
        CHECK_EQ(py_wait(&p, 20), 3);
        CHECK(mproc_test_now() - t0 < 20);
        p = py_start(python, "connect", mproc_listener_address(l), key_hex,
                     "echo");
        CHECK_OK(mproc_listener_accept(l, &c, 30));
        exchange(c, false);
        mproc_conn_free(c);
        CHECK_EQ(py_wait(&p, 30), 0);
        mproc_listener_free(l);

        /* Python listener, wrong key on our side */
        p = py_start(python, "listen", "abstract", bad_hex, "echo");
        char addr[256];
        py_line(&p, addr, sizeof addr);
        CHECK_ERR(mproc_client(&c, addr, &k), MPROC_EAUTH);
        CHECK_EQ(py_wait(&p, 20), 3);

        /* a key on our side only: the Python listener never challenges;
         * we give up at the handshake timeout instead of hanging */
        mproc_conn_opts quick = key_opts(key_raw, 1.0);
        p = py_start(python, "listen", "abstract", "-", "waiteof");
        py_line(&p, addr, sizeof addr);
        t0 = mproc_test_now();
        CHECK_ERR(mproc_client(&c, addr, &quick), -ETIMEDOUT);
        CHECK(mproc_test_now() - t0 < 5);
        CHECK_EQ(py_wait(&p, 20), 0);

        /* a key on Python's side only (we run no handshake, as Python's
         * Client(authkey=None) would): the listener's challenge is all
         * we read; when we hang up Python fails, it does not hang */
        mproc_conn_opts none = {.auth = MPROC_AUTH_NONE};
        p = py_start(python, "listen", "tcp", key_hex, "echo");
        py_line(&p, addr, sizeof addr);
        CHECK_OK(mproc_client(&c, addr, &none));
        void *m;
        size_t n;
        CHECK_OK(mproc_conn_recv_bytes(c, &m, &n, 256, 20));
        CHECK(n >= 11 && memcmp(m, "#CHALLENGE#", 11) == 0);
        free(m);
        mproc_conn_free(c);
        CHECK_EQ(py_wait(&p, 20), 5); /* EOFError in the handshake */
    }
}

/* ---- empty keys and the process authkey -----------------------------------
 */

static void test_empty_and_process_key(void)
{
    if (!have_any())
        SKIP("no CPython in $MPROC_PYTHON_DIR (default ~/.pyenv/versions)");
    const char *python = mproc_test_python("3.11");
    if (!python)
        python = mproc_test_python("3.13");
    if (!python)
        SKIP("no CPython 3.11 or 3.13");
    /* an empty key is a key, on both sides */
    mproc_conn_opts empty = {
        .auth = MPROC_AUTH_KEY, .authkey_len = 0, .timeout = 10};
    mproc_listener *l;
    CHECK_OK(mproc_listener_new(&l, NULL, &empty));
    py p =
        py_start(python, "connect", mproc_listener_address(l), "empty", "echo");
    mproc_conn *c;
    CHECK_OK(mproc_listener_accept(l, &c, 30));
    exchange(c, false);
    mproc_conn_free(c);
    CHECK_EQ(py_wait(&p, 30), 0);
    mproc_listener_free(l);
    /* the default (process) key, told to Python in hex */
    unsigned char key[256];
    int kl = mproc_authkey(key, sizeof key);
    CHECK(kl > 0);
    char hex[513];
    for (int i = 0; i < kl; i++)
        snprintf(hex + 2 * i, 3, "%02x", key[i]);
    CHECK_OK(mproc_listener_new(&l, "127.0.0.1:0", NULL));
    p = py_start(python, "connect", mproc_listener_address(l), hex, "echo");
    CHECK_OK(mproc_listener_accept(l, &c, 30));
    exchange(c, false);
    mproc_conn_free(c);
    CHECK_EQ(py_wait(&p, 30), 0);
    mproc_listener_free(l);
}

/* ---- objects both ways: send_obj / recv_obj against send / recv ---------- */

/* What C sends: each comes back as Python's repr of what it received and
 * as the object itself. */
static mproc_obj *c_object(int i)
{
    mproc_obj *o;
    switch (i) {
    case 0:
        o = mproc_obj_dict_new();
        CHECK_OK(mproc_obj_dict_set(o, mproc_obj_int(1), mproc_obj_int(1)));
        return o;
    case 1:
        o = mproc_obj_list_new();
        for (int k = 0; k < 10; k++)
            CHECK_OK(mproc_obj_list_append(o, mproc_obj_int(k * k)));
        return o;
    case 2:
        return mproc_obj_int_from_str("1180591620717411303424"); /* 2**70 */
    case 3:
        return mproc_obj_int_from_str(
            "-1606938044258990275541962092341162602522202993782792835301376");
    case 4:
        return mproc_obj_str_c("\xc3\xa9t\xc3\xa9 \xe2\x82\xac");
    case 5:
        return mproc_obj_bytes("howdy", 5);
    case 6:
        return mproc_obj_bytearray("\x00\xff", 2);
    case 7:
        return mproc_obj_tuple_of(1, mproc_obj_int(1));
    case 8: {
        o = mproc_obj_dict_new();
        mproc_obj *l = mproc_obj_list_new();
        CHECK_OK(mproc_obj_list_append(l, mproc_obj_int(1)));
        CHECK_OK(mproc_obj_list_append(l, mproc_obj_float(2.5)));
        CHECK_OK(mproc_obj_list_append(l, mproc_obj_none()));
        CHECK_OK(mproc_obj_list_append(l, mproc_obj_bool(true)));
        CHECK_OK(mproc_obj_dict_set(o, mproc_obj_str_c("a"), l));
        CHECK_OK(
            mproc_obj_dict_set(o, mproc_obj_str_c("b"),
                               mproc_obj_tuple_of(2, mproc_obj_bytes("x", 1),
                                                  mproc_obj_float(-1.5e-300))));
        CHECK_OK(mproc_obj_dict_set(o, mproc_obj_int(3), mproc_obj_dict_new()));
        return o;
    }
    case 9:
        o = mproc_obj_frozenset_new();
        CHECK_OK(mproc_obj_set_add(o, mproc_obj_int(7)));
        return o;
    case 10:
        o = mproc_obj_list_new();
        CHECK_OK(mproc_obj_list_append(o, mproc_obj_int(INT64_MIN)));
        CHECK_OK(mproc_obj_list_append(o, mproc_obj_int(INT64_MAX)));
        CHECK_OK(mproc_obj_list_append(o, mproc_obj_int(-1)));
        CHECK_OK(mproc_obj_list_append(o, mproc_obj_int(255)));
        CHECK_OK(mproc_obj_list_append(o, mproc_obj_float(0.1)));
        CHECK_OK(mproc_obj_list_append(o, mproc_obj_float(1e16)));
        CHECK_OK(mproc_obj_list_append(o, mproc_obj_float(-0.0)));
        CHECK_OK(mproc_obj_list_append(o, mproc_obj_str_c("it's \"q\"\n")));
        return o;
    case 11:
        o = mproc_obj_set_new();
        CHECK_OK(mproc_obj_set_add(o, mproc_obj_str_c("k\xc3\xa9y")));
        return o;
    default:
        return NULL;
    }
}

static char *repr_of(const mproc_obj *o)
{
    char *s;
    CHECK_OK(mproc_obj_repr(o, &s, NULL));
    return s;
}

/* Python's repr of what it sent, against ours: they are the same text,
 * except that Python 3.6 prints an exception of one argument as
 * "KeyError('missing',)" where 3.7 and later (and mproc) print
 * "KeyError('missing')". */
static void check_repr(const char *mine, const char *theirs, bool py36,
                       const mproc_obj *o)
{
    size_t n = strlen(mine);
    if (py36 && mproc_obj_is_exception(o) &&
        mproc_obj_len(mproc_obj_reduce_args(o)) == 1 && n > 0 &&
        strlen(theirs) == n + 1 && strncmp(theirs, mine, n - 1) == 0 &&
        strcmp(theirs + n - 1, ",)") == 0)
        return;
    CHECK_STR(mine, theirs);
}

/* One conversation with conn_peer.py's objects scenario. */
static void objects_exchange(mproc_conn *c, bool py36)
{
    char err[256];
    void *m;
    size_t n;
    for (int i = 0;; i++) {
        mproc_obj *o = c_object(i);
        if (!o)
            break;
        CHECK_OK(mproc_conn_send_obj(c, o));
        CHECK_OK(mproc_conn_recv_bytes(c, &m, &n, 0, 20));
        char *mine = repr_of(o);
        CHECK_STR((char *)m, mine); /* Python printed what we print */
        free(mine);
        free(m);
        mproc_obj *back;
        CHECK_OK(mproc_conn_recv_obj(c, &back, 20, err, sizeof err));
        CHECK_EQ(mproc_obj_eq(o, back), 1);
        CHECK_EQ(mproc_obj_type_of(back), mproc_obj_type_of(o));
        mproc_obj_unref(back);
        mproc_obj_unref(o);
    }
    mproc_obj *turn = mproc_obj_bytes("your turn", 9);
    CHECK_OK(mproc_conn_send_obj(c, turn));
    mproc_obj_unref(turn);
    int got = 0, exceptions = 0;
    for (;;) {
        mproc_obj *o;
        CHECK_OK(mproc_conn_recv_obj(c, &o, 20, err, sizeof err));
        size_t bl;
        const unsigned char *b = mproc_obj_bytes_value(o, &bl);
        if (mproc_obj_type_of(o) == MPROC_OBJ_BYTES && bl == 4 &&
            memcmp(b, "done", 4) == 0) {
            mproc_obj_unref(o);
            break;
        }
        CHECK_OK(mproc_conn_recv_bytes(c, &m, &n, 0, 20));
        char *mine = repr_of(o);
        check_repr(mine, (char *)m, py36, o);
        free(mine);
        free(m);
        exceptions += mproc_obj_is_exception(o);
        got++;
        mproc_obj_unref(o);
    }
    CHECK_EQ(got, 16); /* conn_peer.py's PY_OBJECTS */
    CHECK_EQ(exceptions, 2);
}

/* Every installed CPython from 3.6 to 3.13: a Python Client of an mproc
 * Listener with every protocol Python reads (5 from 3.8), and a Python
 * process at the other end of an mproc_pipe. */
static void test_objects_with_python(void)
{
    static const char *all[] = {"3.6",  "3.7",  "3.8",  "3.9",
                                "3.10", "3.11", "3.12", "3.13"};
    mproc_conn_opts k = key_opts(key_raw, 20);
    int ran = 0;
    for (size_t v = 0; v < sizeof all / sizeof all[0]; v++) {
        const char *python = mproc_test_python(all[v]);
        if (!python)
            continue;
        ran++;
        int minor = atoi(all[v] + 2);
        for (int proto = 2; proto <= (minor >= 8 ? 5 : 4); proto++) {
            mproc_listener *l;
            CHECK_OK(mproc_listener_new(&l, NULL, &k));
            py p = py_start(python, "connect", mproc_listener_address(l),
                            key_hex, "objects");
            mproc_conn *c;
            CHECK_OK(mproc_listener_accept(l, &c, 30));
            CHECK_ERR(mproc_conn_set_pickle_protocol(c, 1), -EINVAL);
            CHECK_ERR(mproc_conn_set_pickle_protocol(c, 6), -EINVAL);
            CHECK_EQ(mproc_conn_pickle_protocol(c), 4);
            CHECK_OK(mproc_conn_set_pickle_protocol(c, proto));
            CHECK_EQ(mproc_conn_pickle_protocol(c), proto);
            objects_exchange(c, minor == 6);
            mproc_conn_free(c);
            CHECK_EQ(py_wait(&p, 30), 0);
            mproc_listener_free(l);
        }
        /* One end of an mproc_pipe as Python's Connection(fd). */
        mproc_conn *a, *b;
        CHECK_OK(mproc_pipe(&a, &b, 1));
        int fd = dup(mproc_conn_fileno(b)); /* inherited by the exec */
        CHECK(fd >= 0);
        char num[16];
        snprintf(num, sizeof num, "%d", fd);
        py p = py_start(python, "fd", num, "-", "objects");
        close(fd);
        mproc_conn_free(b);
        objects_exchange(a, minor == 6);
        mproc_conn_free(a);
        CHECK_EQ(py_wait(&p, 30), 0);
    }
    if (!ran)
        SKIP("no CPython in $MPROC_PYTHON_DIR (default ~/.pyenv/versions)");
}

static const mproc_test tests[] = {
    {"py_client_mproc_listener", test_py_client_mproc_listener, 120},
    {"mproc_client_py_listener", test_mproc_client_py_listener, 120},
    {"wrong_key", test_wrong_key, 120},
    {"empty_and_process_key", test_empty_and_process_key, 60},
    {"handles_with_python", test_handles_with_python, 300},
    {"objects_with_python", test_objects_with_python, 300},
};

MPROC_TEST_MAIN(tests)
