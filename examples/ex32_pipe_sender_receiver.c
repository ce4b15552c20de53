/*
 * ex32_pipe_sender_receiver.c - "Master Python Multiprocessing", Performance
 * Optimization, Example 2 ("Using Pipe for Efficient Communication"): one
 * process sends through one end of a Pipe, another receives from the other end.
 * The tutorial lost the bodies of sender and receiver; as its text says, a Pipe
 * is the cheap point-to-point channel: the sender sends a few messages and
 * hangs up with an end marker, the receiver prints each until the marker.
 *
 *   def sender(conn):
 *       for i in range(5): conn.send(f"Message {i}")
 *       conn.send(None)
 *   def receiver(conn):
 *       while (msg := conn.recv()) is not None:
 *           print(f"Received: {msg}")
 *   parent_conn, child_conn = Pipe()
 *   p1 = Process(target=sender, args=(parent_conn,))
 *   p2 = Process(target=receiver, args=(child_conn,))
 *   p1.start(); p2.start(); p1.join(); p2.join()
 *
 * The marker (here an empty message) matters: under fork each child also
 * inherits the end meant for the other, so the sender hanging up would not
 * be an end of file for the receiver, in Python as in C.
 *
 * Prints:
 *   Received: Message 0
 *   Received: Message 1
 *   Received: Message 2
 *   Received: Message 3
 *   Received: Message 4
 */
#include <errno.h>
#include <mproc.h>
#include <stdio.h>
#include <stdlib.h>

static int sender(const mproc_args *args)
{
    mproc_conn *conn = mproc_args_conn(args, 0);
    char msg[32];
    for (int i = 0; i < 5; i++) {
        int n = snprintf(msg, sizeof msg, "Message %d", i);
        if (mproc_conn_send_bytes(conn, msg, (size_t)n) < 0)
            return 1;
    }
    return mproc_conn_send_bytes(conn, "", 0) < 0; /* conn.send(None) */
}

static int receiver(const mproc_args *args)
{
    mproc_conn *conn = mproc_args_conn(args, 0);
    for (;;) {
        void *msg;
        size_t n;
        int r = mproc_conn_recv_bytes(conn, &msg, &n, 0, -1);
        if (r < 0)
            return 1;
        if (n == 0) { /* the end marker */
            free(msg);
            return 0;
        }
        printf("Received: %s\n", (char *)msg);
        free(msg);
    }
}

int main(void)
{
    mproc_conn *parent_conn = NULL, *child_conn = NULL;
    mproc_args *a1 = NULL, *a2 = NULL;
    mproc_process *p1 = NULL, *p2 = NULL;
    int r = mproc_pipe(&parent_conn, &child_conn, 1);
    if (r < 0)
        goto fail;
    r = -ENOMEM;
    if (!(a1 = mproc_args_new()) || !(a2 = mproc_args_new()) ||
        (r = mproc_args_add_conn(a1, parent_conn)) < 0 ||
        (r = mproc_args_add_conn(a2, child_conn)) < 0 ||
        (r = mproc_process_new(&p1, sender, a1)) < 0 ||
        (r = mproc_process_new(&p2, receiver, a2)) < 0 ||
        (r = mproc_process_start(p1)) < 0 || (r = mproc_process_start(p2)) < 0)
        goto fail;
    if ((r = mproc_process_join(p1, -1)) < 0 ||
        (r = mproc_process_join(p2, -1)) < 0)
        goto fail;
    r = mproc_process_exitcode(p1) | mproc_process_exitcode(p2);
    goto out;
fail:
    fprintf(stderr, "ex32: %s\n", mproc_strerror(r));
    r = 1;
out:
    mproc_process_free(p1);
    mproc_process_free(p2);
    mproc_args_free(a1);
    mproc_args_free(a2);
    mproc_conn_free(parent_conn);
    mproc_conn_free(child_conn);
    return r;
}
