/*
 * ex98_manager_dict_with_python.c - a C program and a Python program
 * sharing one dict through a manager: the C program serves it (mproc's
 * server speaks CPython's manager protocol), writes to it, and runs a
 * Python program that reaches the same dict with the standard library's
 * own classes, reads it and adds to it; then the C program prints what
 * both wrote.
 *
 *   # the Python side, given the address, the key and the dict's ident
 *   from multiprocessing.managers import SyncManager, DictProxy, Token
 *   m = SyncManager(address=('127.0.0.1', port), authkey=key)
 *   m.connect()
 *   d = DictProxy(Token('dict', ('127.0.0.1', port), ident), 'pickle',
 *                 manager=m, authkey=key)
 *   print('Python sees:', d)
 *   d['from Python'] = 2
 *   d['squares'] = [i * i for i in range(5)]
 *
 * Python comes from $PYTHON, else python3 on the PATH; without one the
 * example says so and ends.
 *
 * Prints:
 *   C wrote:     {'from C': 1}
 *   Python sees: {'from C': 1}
 *   C sees:      {'from C': 1, 'from Python': 2, 'squares': [0, 1, 4, 9, 16]}
 */
#include <mproc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char key[] = "shared-dict";

static const char script[] =
    "import sys\n"
    "from multiprocessing.managers import SyncManager, DictProxy, Token\n"
    "host, port = sys.argv[1].rsplit(':', 1)\n"
    "addr = (host, int(port))\n"
    "key = sys.argv[2].encode()\n"
    "m = SyncManager(address=addr, authkey=key)\n"
    "m.connect()\n"
    "d = DictProxy(Token('dict', addr, sys.argv[3]), 'pickle', manager=m,\n"
    "              authkey=key)\n"
    "print('Python sees:', d, flush=True)\n"
    "d['from Python'] = 2\n"
    "d['squares'] = [i * i for i in range(5)]\n";

static void print_dict(const char *label, mproc_proxy *d)
{
    char *text;
    if (mproc_proxy_repr(d, &text) == 0) {
        printf("%s%s\n", label, text);
        free(text);
    }
    fflush(stdout);
}

int main(void)
{
    const char *python = getenv("PYTHON");
    if (!python || !*python)
        python = "python3";
    mproc_manager_opts o = {0};
    o.conn.auth = MPROC_AUTH_KEY;
    o.conn.authkey = key;
    o.conn.authkey_len = strlen(key);
    mproc_manager *manager;
    int rc = mproc_manager_start(&manager, "127.0.0.1:0", &o);
    if (rc < 0) {
        fprintf(stderr, "manager: %s\n", mproc_strerror(rc));
        return 1;
    }
    mproc_proxy *d;
    char err[256];
    rc = mproc_manager_create(manager, &d, "dict", NULL, NULL, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "dict: %s %s\n", mproc_strerror(rc), err);
        mproc_manager_free(manager);
        return 1;
    }
    mproc_obj *k = mproc_obj_str_c("from C"), *one = mproc_obj_int(1);
    rc = mproc_proxy_setitem(d, k, one); /* d['from C'] = 1 */
    mproc_obj_unref(k);
    mproc_obj_unref(one);
    print_dict("C wrote:     ", d);

    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        execlp(python, python, "-c", script, mproc_manager_address(manager),
               key, mproc_proxy_ident(d), (char *)NULL);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    int failed = rc < 0;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
        printf("(skipped: no %s to talk to; set PYTHON to one)\n", python);
    else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        failed = 1;
    else
        print_dict("C sees:      ", d);
    mproc_proxy_free(d);
    mproc_manager_free(manager);
    return failed ? 1 : 0;
}
