/*
 * ex40_queue_to_parent.c - Sunny Solanki's "Multiprocessing in Python", "How to
 * exchange objects between processes": a Queue carries one message from the
 * subprocess to the parent, and one back.
 *
 *   def test_func(queue):
 *       queue.put('Sending from Subprocess to Parent Process')
 *       print(queue.get())
 *   queue = multiprocessing.Queue()
 *   p = Process(target=test_func, args=(queue,)); p.start()
 *   print(queue.get())
 *   queue.put('Sending from Parent Process to Subprocess')
 *   p.join()
 *
 * Prints:
 *   Sending from Subprocess to Parent Process
 *   Sending from Parent Process to Subprocess
 */
#include <mproc.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int test_func(const mproc_args *args)
{
    mproc_queue *queue = mproc_args_queue(args, 0);
    const char *msg = "Sending from Subprocess to Parent Process";
    if (mproc_queue_put(queue, msg, strlen(msg), -1) < 0)
        return 1;
    /* A queue has no addressee: this process may get its own message
     * back before the parent takes it. Put it back and wait a little. */
    char buf[128];
    size_t n;
    for (;;) {
        if (mproc_queue_get(queue, buf, sizeof buf - 1, &n, -1) < 0)
            return 1;
        buf[n] = '\0';
        if (strcmp(buf, msg) != 0)
            break;
        if (mproc_queue_put(queue, msg, strlen(msg), -1) < 0)
            return 1;
        usleep(1000);
    }
    printf("%s\n", buf);
    fflush(stdout);
    return 0;
}

int main(void)
{
    mproc_queue *queue;
    int r = mproc_queue_new(&queue, 0);
    if (r < 0) {
        fprintf(stderr, "queue: %s\n", mproc_strerror(r));
        return 1;
    }
    mproc_args *a = mproc_args_new();
    mproc_process *p = NULL;
    if (!a || (r = mproc_args_add_queue(a, queue)) < 0 ||
        (r = mproc_process_new(&p, test_func, a)) < 0 ||
        (r = mproc_process_start(p)) < 0)
        goto fail;
    char buf[128];
    size_t n;
    if ((r = mproc_queue_get(queue, buf, sizeof buf - 1, &n, -1)) < 0)
        goto fail;
    buf[n] = '\0';
    printf("%s\n", buf);
    fflush(stdout);
    const char *msg = "Sending from Parent Process to Subprocess";
    if ((r = mproc_queue_put(queue, msg, strlen(msg), -1)) < 0 ||
        (r = mproc_process_join(p, -1)) < 0)
        goto fail;
    r = mproc_process_exitcode(p);
    mproc_process_free(p);
    mproc_args_free(a);
    mproc_queue_free(queue);
    return r;
fail:
    fprintf(stderr, "ex40: %s\n", a ? mproc_strerror(r) : "out of memory");
    mproc_process_free(p);
    mproc_args_free(a);
    mproc_queue_free(queue);
    return 1;
}
