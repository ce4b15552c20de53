/*
 * ex42_queue_writer_reader.c - the os.fork tutorial, inter-process
 * communication: one process writes A, B, C into a Queue with random pauses,
 * another reads forever; the parent waits for the writer and terminates the
 * reader.
 *
 *   def write(q):
 *       print('Process to write: %s' % os.getpid())
 *       for value in ['A', 'B', 'C']:
 *           print('Put %s to queue...' % value)
 *           q.put(value)
 *           time.sleep(random.random())
 *   def read(q):
 *       print('Process to read: %s' % os.getpid())
 *       while True:
 *           value = q.get(True)
 *           print('Get %s from queue.' % value)
 *   q = Queue(); pw = Process(target=write, args=(q,))
 *   pr = Process(target=read, args=(q,))
 *   pw.start(); pr.start(); pw.join(); pr.terminate()
 *
 * Prints (pids vary):
 *   Process to write: 50563
 *   Put A to queue...
 *   Process to read: 50564
 *   Get A from queue.
 *   Put B to queue...
 *   Get B from queue.
 *   Put C to queue...
 *   Get C from queue.
 *
 * The reader is killed (SIGTERM) while it blocks in a get, holding the
 * queue's consumer lock: the queue stays usable, as the last lines show by
 * checking it is empty and still works.
 */
#include <mproc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int write_proc(const mproc_args *args)
{
    mproc_queue *q = mproc_args_queue(args, 0);
    printf("Process to write: %d\n", (int)getpid());
    fflush(stdout);
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    const char *values[] = {"A", "B", "C"};
    for (int i = 0; i < 3; i++) {
        printf("Put %s to queue...\n", values[i]);
        fflush(stdout);
        if (mproc_queue_put(q, values[i], 1, -1) < 0)
            return 1;
        /* time.sleep(random.random()), kept short: 0.1 to 0.4 s. */
        usleep(100000 + (useconds_t)(rand() % 300000));
    }
    return 0;
}

static int read_proc(const mproc_args *args)
{
    mproc_queue *q = mproc_args_queue(args, 0);
    printf("Process to read: %d\n", (int)getpid());
    fflush(stdout);
    for (;;) {
        char value[16];
        size_t n;
        if (mproc_queue_get(q, value, sizeof value, &n, -1) < 0)
            return 1;
        printf("Get %.*s from queue.\n", (int)n, value);
        fflush(stdout);
    }
}

int main(void)
{
    mproc_queue *q;
    int r = mproc_queue_new(&q, 0);
    if (r < 0) {
        fprintf(stderr, "queue: %s\n", mproc_strerror(r));
        return 1;
    }
    mproc_args *a = mproc_args_new();
    mproc_process *pw = NULL, *pr = NULL;
    if (!a || (r = mproc_args_add_queue(a, q)) < 0 ||
        (r = mproc_process_new(&pw, write_proc, a)) < 0 ||
        (r = mproc_process_new(&pr, read_proc, a)) < 0 ||
        (r = mproc_process_start(pw)) < 0)
        goto fail;
    /* As in the tutorial's run, the writer has put A before the reader
     * starts. */
    while (mproc_queue_empty(q))
        usleep(1000);
    if ((r = mproc_process_start(pr)) < 0 ||
        (r = mproc_process_join(pw, -1)) < 0)
        goto fail;
    /* The reader loops forever: terminate it (it may be inside a get). */
    if ((r = mproc_process_terminate(pr)) < 0 ||
        (r = mproc_process_join(pr, -1)) < 0)
        goto fail;
    char buf[4];
    size_t n;
    if (!mproc_queue_empty(q) || mproc_queue_put(q, "D", 1, 1) < 0 ||
        mproc_queue_get(q, buf, sizeof buf, &n, 1) < 0) {
        fprintf(stderr, "ex42: queue unusable after terminate\n");
        r = 1;
    } else {
        r = mproc_process_exitcode(pw);
    }
    mproc_process_free(pw);
    mproc_process_free(pr);
    mproc_args_free(a);
    mproc_queue_free(q);
    return r;
fail:
    fprintf(stderr, "ex42: %s\n", a ? mproc_strerror(r) : "out of memory");
    if (pr && mproc_process_is_alive(pr))
        mproc_process_kill(pr);
    mproc_process_free(pw);
    mproc_process_free(pr);
    mproc_args_free(a);
    mproc_queue_free(q);
    return 1;
}
