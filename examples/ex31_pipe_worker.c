/*
 * ex31_pipe_worker.c - "Master Python Multiprocessing", 2.2 Using Pipe,
 * Example 2 ("Using Pipe for Bidirectional Communication"): the worker sends a
 * greeting through its end of the pipe and waits for the reply; the main
 * process prints the greeting, replies, and waits for the worker.
 *
 *   def worker(conn):
 *       conn.send("Hello from the worker process")
 *       message = conn.recv()
 *       print(f"Worker received message: {message}")
 *   parent_conn, child_conn = Pipe()
 *   p = Process(target=worker, args=(child_conn,)); p.start()
 *   print(f"Main process received message: {parent_conn.recv()}")
 *   parent_conn.send("Hello from the main process")
 *   p.join()
 *
 * Prints:
 *   Main process received message: Hello from the worker process
 *   Worker received message: Hello from the main process
 */
#include <errno.h>
#include <mproc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int worker(const mproc_args *args)
{
    mproc_conn *conn = mproc_args_conn(args, 0);
    const char *hello = "Hello from the worker process";
    void *message;
    size_t n;
    if (mproc_conn_send_bytes(conn, hello, strlen(hello)) < 0 ||
        mproc_conn_recv_bytes(conn, &message, &n, 0, -1) < 0)
        return 1;
    printf("Worker received message: %s\n", (char *)message);
    free(message);
    return 0;
}

int main(void)
{
    mproc_conn *parent_conn = NULL, *child_conn = NULL;
    mproc_args *a = NULL;
    mproc_process *p = NULL;
    void *msg = NULL;
    size_t n;
    int r = mproc_pipe(&parent_conn, &child_conn, 1);
    if (r < 0)
        goto fail;
    r = -ENOMEM;
    if (!(a = mproc_args_new()) ||
        (r = mproc_args_add_conn(a, child_conn)) < 0 ||
        (r = mproc_process_new(&p, worker, a)) < 0 ||
        (r = mproc_process_start(p)) < 0)
        goto fail;
    if ((r = mproc_conn_recv_bytes(parent_conn, &msg, &n, 0, -1)) < 0)
        goto fail;
    printf("Main process received message: %s\n", (char *)msg);
    fflush(stdout); /* before the worker can print */
    const char *reply = "Hello from the main process";
    if ((r = mproc_conn_send_bytes(parent_conn, reply, strlen(reply))) < 0 ||
        (r = mproc_process_join(p, -1)) < 0)
        goto fail;
    r = mproc_process_exitcode(p);
    goto out;
fail:
    fprintf(stderr, "ex31: %s\n", mproc_strerror(r));
    r = 1;
out:
    free(msg);
    mproc_process_free(p);
    mproc_args_free(a);
    mproc_conn_free(parent_conn);
    mproc_conn_free(child_conn);
    return r;
}
