/*
 * test_wait.c - mproc_wait over every kind of waitable at once, as
 * multiprocessing.connection.wait: a process sentinel, a connection, a
 * queue's readiness fd and a raw pipe. Each becomes ready in turn and wait
 * reports exactly the ready ones; a timeout reports none.
 */
#include "harness.h"

#include <fcntl.h>
#include <signal.h>

/* Puts one message on the queue after a pause, then waits to be ended. */
static int t_put_later(const mproc_args *a)
{
    mproc_queue *q = mproc_args_queue(a, 0);
    usleep(50000);
    if (!q || mproc_queue_put(q, "q", 1, 5) < 0)
        return 1;
    pause();
    return 0;
}

static void test_wait_mixed(void)
{
    for (int m = 0; m < 3; m++) {
        mproc_conn *ca, *cb;
        mproc_queue *q;
        int pp[2];
        CHECK_OK(mproc_pipe(&ca, &cb, 1));
        CHECK_OK(mproc_queue_new(&q, 0));
        CHECK_OK(pipe2(pp, O_CLOEXEC));
        mproc_args *a = mproc_args_new();
        CHECK_OK(mproc_args_add_queue(a, q));
        mproc_process *p;
        CHECK_OK(mproc_process_new(&p, t_put_later, a));
        mproc_args_free(a);
        CHECK_OK(mproc_process_set_start_method(p, mproc_test_methods[m]));
        CHECK_OK(mproc_process_start(p));

        int fds[4] = {mproc_process_sentinel(p), mproc_conn_fileno(cb),
                      mproc_queue_fileno(q), pp[0]};
        int ready[4];
        char buf[8];
        size_t len = 0;
        CHECK(fds[0] >= 0 && fds[1] >= 0 && fds[2] >= 0);
        /* The sentinel is a pidfd; without pidfds, a pipe's read end. */
        char path[64], link[64] = "";
        snprintf(path, sizeof path, "/proc/self/fd/%d", fds[0]);
        CHECK(readlink(path, link, sizeof link - 1) > 0);
        const char *kind =
            mproc_test_no_pidfd() ? "pipe:[" : "anon_inode:[pidfd]";
        CHECK(strncmp(link, kind, strlen(kind)) == 0);
        /* A queue's fd may be spuriously ready ("may have data"); a get
         * that finds the queue empty rearms it. */
        CHECK_ERR(mproc_queue_get_nowait(q, buf, sizeof buf, &len),
                  MPROC_EEMPTY);
        CHECK_EQ(mproc_wait(fds, 4, 0, ready), 0);

        /* The queue, from the child. "May have data": check it does. */
        int n = mproc_wait(fds, 4, 10, ready);
        CHECK_EQ(n, 1);
        CHECK(ready[2] && !ready[0] && !ready[1] && !ready[3]);
        CHECK_OK(mproc_queue_get(q, buf, sizeof buf, &len, 0));
        CHECK_EQ(len, 1);
        CHECK_ERR(mproc_queue_get_nowait(q, buf, sizeof buf, &len),
                  MPROC_EEMPTY); /* drained: rearms the fd */

        /* The connection. */
        CHECK_OK(mproc_conn_send_bytes(ca, "c", 1));
        CHECK_EQ(mproc_wait(fds + 1, 1, 10, ready), 1);
        CHECK_EQ(mproc_wait(fds, 4, 10, ready), 1);
        CHECK(ready[1] && !ready[0] && !ready[3]);
        void *msg;
        CHECK_OK(mproc_conn_recv_bytes(cb, &msg, &len, 0, 1));
        free(msg);

        /* The raw pipe. */
        CHECK_EQ(write(pp[1], "p", 1), 1);
        CHECK_EQ(mproc_wait(fds + 3, 1, 10, ready), 1);
        CHECK(ready[0] == 1);

        /* The process ends. */
        CHECK_OK(mproc_process_kill(p));
        int only[1] = {fds[0]};
        CHECK_EQ(mproc_wait(only, 1, 10, ready), 1);
        CHECK_OK(mproc_process_join(p, 10));
        CHECK_EQ(mproc_process_exitcode(p), -SIGKILL);

        /* Nothing else pending: a short timeout reports none. */
        char c;
        CHECK_EQ(read(pp[0], &c, 1), 1);
        int rest[2] = {fds[1], pp[0]};
        double t0 = mproc_test_now();
        CHECK_EQ(mproc_wait(rest, 2, 0.1, ready), 0);
        CHECK(mproc_test_now() - t0 >= 0.09);

        mproc_process_free(p);
        mproc_conn_free(ca);
        mproc_conn_free(cb);
        mproc_queue_free(q);
        close(pp[0]);
        close(pp[1]);
    }
}

static const mproc_test tests[] = {
    {"wait_mixed", test_wait_mixed, 60},
};

MPROC_TEST_MAIN(tests)
