/*
 * ex33_objects_with_python.c - a C process and a Python process at the two
 * ends of one Pipe, sending each other a dict with send() and recv(), and
 * printing what they got: both print it the same way, because mproc's repr
 * is Python's.
 *
 *   # the Python side, run with one end of the pipe as fd N
 *   from multiprocessing.connection import Connection
 *   conn = Connection(N)
 *   d = conn.recv()
 *   print("Python got:", d)
 *   conn.send({'squares': [i * i for i in range(5)], 'big': 2 ** 70,
 *              'text': 'caf\xe9', 'raw': b'howdy', 'ok': True})
 *
 * The C side sends {1: 1, 'name': 'bob', 'ids': (7, 8), 'half': 0.5} and
 * prints the dict Python sent back. Python comes from $PYTHON, else
 * python3 on the PATH; without one the example says so and ends.
 *
 * Prints:
 *   C sends:    {1: 1, 'name': 'bob', 'ids': (7, 8), 'half': 0.5}
 *   Python got: {1: 1, 'name': 'bob', 'ids': (7, 8), 'half': 0.5}
 *   C got:      {'squares': [0, 1, 4, 9, 16], 'big': 1180591620717411303424,
 * 'text': 'café', 'raw': b'howdy', 'ok': True}
 */
#include <mproc.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static const char script[] =
    "import sys\n"
    "from multiprocessing.connection import Connection\n"
    "conn = Connection(int(sys.argv[1]))\n"
    "d = conn.recv()\n"
    "print('Python got:', d, flush=True)\n"
    "conn.send({'squares': [i * i for i in range(5)], 'big': 2 ** 70,\n"
    "           'text': 'caf\\xe9', 'raw': b'howdy', 'ok': True})\n";

static void print_obj(const char *label, const mproc_obj *o)
{
    char *text;
    if (mproc_obj_repr(o, &text, NULL) == 0) {
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
    mproc_conn *mine, *theirs;
    int rc = mproc_pipe(&mine, &theirs, 1);
    if (rc < 0) {
        fprintf(stderr, "pipe: %s\n", mproc_strerror(rc));
        return 1;
    }
    /* Python's end as an fd its program inherits (mproc's fds are
     * close-on-exec; a dup is not). */
    int fd = dup(mproc_conn_fileno(theirs));
    char num[16];
    snprintf(num, sizeof num, "%d", fd);
    pid_t pid = fork();
    if (pid == 0) {
        execlp(python, python, "-c", script, num, (char *)NULL);
        _exit(127);
    }
    close(fd);
    mproc_conn_free(theirs);

    mproc_obj *d = mproc_obj_dict_new();
    mproc_obj_dict_set(d, mproc_obj_int(1), mproc_obj_int(1));
    mproc_obj_dict_set(d, mproc_obj_str_c("name"), mproc_obj_str_c("bob"));
    mproc_obj_dict_set(
        d, mproc_obj_str_c("ids"),
        mproc_obj_tuple_of(2, mproc_obj_int(7), mproc_obj_int(8)));
    mproc_obj_dict_set(d, mproc_obj_str_c("half"), mproc_obj_float(0.5));
    print_obj("C sends:    ", d);
    rc = mproc_conn_send_obj(mine, d);
    mproc_obj_unref(d);

    mproc_obj *back = NULL;
    char err[200];
    if (rc == 0)
        rc = mproc_conn_recv_obj(mine, &back, 30, err, sizeof err);
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
        printf("(skipped: no %s to talk to; set PYTHON to one)\n", python);
        mproc_conn_free(mine);
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "recv: %s %s\n", mproc_strerror(rc), err);
        mproc_conn_free(mine);
        return 1;
    }
    print_obj("C got:      ", back);
    mproc_obj_unref(back);
    mproc_conn_free(mine);
    return 0;
}
