/*
 * ex30_pipe_duplex.c - Sunny Solanki's "Multiprocessing in Python", In [6]
 * ("Pipe class creates 2 connections which are duplex by default"): four
 * messages cross one duplex Pipe, two each way, and each side prints what it
 * receives.
 *
 *   def test_func(conn):
 *       conn.send('Sending from connection held by subprocess ')
 *       conn.send('Sending from connection held by subprocess 1')
 *       print(conn.recv()); print(conn.recv())
 *   conn1, conn2 = multiprocessing.Pipe(duplex=True)
 *   p = Process(target=test_func, args=(conn1, )); p.start()
 *   conn2.send('Sending from connection held by parent process ')
 *   conn2.send('Sending from connection held by parent process 1')
 *   print(conn2.recv()); print(conn2.recv()); p.join()
 *
 * In Python the interleaving of the two processes' prints is up to the
 * scheduler; here the exchange is ordered so that the output is always the
 * tutorial's: the child prints the parent's first message, the parent then
 * prints the child's two, and the child the parent's last.
 *
 * Prints:
 *   Sending from connection held by parent process
 *   Sending from connection held by subprocess
 *   Sending from connection held by subprocess 1
 *   Sending from connection held by parent process 1
 */
#include <errno.h>
#include <mproc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int send_str(mproc_conn *conn, const char *s)
{
    return mproc_conn_send_bytes(conn, s, strlen(s));
}

/* conn.recv() and print it. */
static int print_recv(mproc_conn *conn)
{
    void *msg;
    size_t n;
    int r = mproc_conn_recv_bytes(conn, &msg, &n, 0, -1);
    if (r < 0)
        return r;
    printf("%s\n", (char *)msg); /* recv_bytes NUL-terminates */
    fflush(stdout);
    free(msg);
    return 0;
}

static int test_func(const mproc_args *args)
{
    mproc_conn *conn = mproc_args_conn(args, 0);
    if (print_recv(conn) < 0 ||
        send_str(conn, "Sending from connection held by subprocess") < 0 ||
        send_str(conn, "Sending from connection held by subprocess 1") < 0 ||
        print_recv(conn) < 0)
        return 1;
    return 0;
}

int main(void)
{
    mproc_conn *conn1 = NULL, *conn2 = NULL;
    mproc_args *a = NULL;
    mproc_process *p = NULL;
    int r = mproc_pipe(&conn1, &conn2, 1);
    if (r < 0)
        goto fail;
    r = -ENOMEM;
    if (!(a = mproc_args_new()) || (r = mproc_args_add_conn(a, conn1)) < 0 ||
        (r = mproc_process_new(&p, test_func, a)) < 0 ||
        (r = mproc_process_start(p)) < 0)
        goto fail;
    if ((r = send_str(conn2, "Sending from connection held by parent "
                             "process")) < 0 ||
        (r = print_recv(conn2)) < 0 || (r = print_recv(conn2)) < 0 ||
        (r = send_str(conn2, "Sending from connection held by parent "
                             "process 1")) < 0 ||
        (r = mproc_process_join(p, -1)) < 0)
        goto fail;
    r = mproc_process_exitcode(p);
    goto out;
fail:
    fprintf(stderr, "ex30: %s\n", mproc_strerror(r));
    r = 1;
out:
    mproc_process_free(p);
    mproc_args_free(a);
    mproc_conn_free(conn1);
    mproc_conn_free(conn2);
    return r;
}
