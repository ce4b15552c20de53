/*
 * ex97_remote_manager.c - "Python Multiprocessing" (the long tutorial),
 * Security Implications, Example 1: a BaseManager with an authentication
 * key, serving a registered Math type over TCP, used by clients that know
 * the key.
 *
 *   class MathClass:
 *       def add(self, x, y):
 *           return x + y
 *   manager = BaseManager(address=('', 50000), authkey=b'secret-key')
 *   manager.register('Math', MathClass)
 *   ...
 *   math = manager.Math()        # in each client
 *   print(math.add(4, 4))        # 8 if authenticated
 *
 * Here Math is registered from C (mproc_manager_type), one process serves
 * it on TCP (port 0: a free one, where the tutorial takes 50000) and two
 * other processes connect with the key, create a Math each and print
 * add(4, 4). A client with another key is refused. A Python client works
 * the same (BaseManager.register('Math'), connect()).
 *
 * Prints:
 *   Server started. Waiting for connections...
 *   8
 *   8
 *   A client with the wrong key: authentication failed
 */
#include <mproc.h>
#include <stdio.h>
#include <string.h>

static const char key[] = "secret-key";

/* MathClass.add(x, y): runs in the server. */
static int math_add(void *self, const mproc_obj *args, const mproc_obj *kwds,
                    mproc_obj **result)
{
    (void)self, (void)kwds;
    int64_t x, y;
    if (mproc_obj_len(args) != 2 ||
        mproc_obj_int_value(mproc_obj_item(args, 0), &x) < 0 ||
        mproc_obj_int_value(mproc_obj_item(args, 1), &y) < 0) {
        *result = mproc_obj_reduce(
            "builtins", "TypeError",
            mproc_obj_tuple_of(1, mproc_obj_str_c("add(x, y) takes two ints")),
            NULL, false);
        return MPROC_EREMOTE;
    }
    *result = mproc_obj_int(x + y);
    return 0;
}

static const mproc_manager_method math_methods[] = {{"add", math_add, NULL},
                                                    {NULL, NULL, NULL}};
/* No create: a Math has no state. */
static const mproc_manager_type math_type = {"Math", NULL, NULL, math_methods,
                                             NULL};
static const mproc_manager_type *const types[] = {&math_type};

static mproc_conn_opts with_key(const char *k)
{
    mproc_conn_opts o = {0};
    o.auth = MPROC_AUTH_KEY;
    o.authkey = k;
    o.authkey_len = strlen(k);
    return o;
}

/* A client process: connects with the key, math = manager.Math(),
 * prints math.add(4, 4). */
static int client(const mproc_args *a)
{
    mproc_conn_opts o = with_key(key);
    mproc_manager *manager;
    int rc = mproc_manager_connect(&manager, mproc_args_str(a, 0), &o);
    if (rc < 0) {
        fprintf(stderr, "connect: %s\n", mproc_strerror(rc));
        return 1;
    }
    mproc_proxy *math;
    char err[256];
    rc = mproc_manager_create(manager, &math, "Math", NULL, NULL, err,
                              sizeof err);
    mproc_obj *args = mproc_obj_tuple_of(2, mproc_obj_int(4), mproc_obj_int(4));
    mproc_obj *sum = NULL;
    if (rc == 0)
        rc = mproc_proxy_call(math, "add", args, NULL, &sum, err, sizeof err);
    int64_t v = 0;
    if (rc == 0 && mproc_obj_int_value(sum, &v) == 0) {
        printf("%lld\n", (long long)v);
        fflush(stdout);
    } else {
        fprintf(stderr, "Math.add: %s %s\n", mproc_strerror(rc), err);
    }
    mproc_obj_unref(sum);
    mproc_obj_unref(args);
    if (rc == 0)
        mproc_proxy_free(math);
    mproc_manager_free(manager);
    return rc == 0 ? 0 : 1;
}

int main(void)
{
    mproc_manager_opts o = {0};
    o.conn = with_key(key);
    o.types = types;
    o.ntypes = 1;
    mproc_manager *server;
    int rc = mproc_manager_start(&server, "127.0.0.1:0", &o);
    if (rc < 0) {
        fprintf(stderr, "manager: %s\n", mproc_strerror(rc));
        return 1;
    }
    printf("Server started. Waiting for connections...\n");
    fflush(stdout);
    mproc_process *clients[2] = {0};
    for (int i = 0; i < 2 && rc == 0; i++) {
        mproc_args *a = mproc_args_new();
        mproc_args_add_str(a, mproc_manager_address(server));
        rc = mproc_process_new(&clients[i], client, a);
        mproc_args_free(a);
        if (rc == 0)
            rc = mproc_process_start(clients[i]);
    }
    int failed = rc < 0;
    for (int i = 0; i < 2; i++) {
        if (clients[i]) {
            mproc_process_join(clients[i], -1);
            failed |= mproc_process_exitcode(clients[i]) != 0;
        }
        mproc_process_free(clients[i]);
    }
    /* without the key: refused at the handshake */
    mproc_conn_opts wrong = with_key("guess");
    mproc_manager *intruder;
    rc =
        mproc_manager_connect(&intruder, mproc_manager_address(server), &wrong);
    printf("A client with the wrong key: %s\n",
           rc < 0 ? mproc_strerror(rc) : "let in!");
    if (rc == 0) {
        mproc_manager_free(intruder);
        failed = 1;
    }
    mproc_manager_free(server); /* shuts the server down */
    return failed ? 1 : 0;
}
