/*
 * ex65_shm_cleanup.c - what happens to a segment nobody unlinks.
 *
 * A worker creates a named segment and is killed (SIGKILL) before it can
 * unlink it. Its tracker, a small process started with the first segment,
 * notices that the worker's whole process tree is gone and unlinks the
 * segment, as Python's resource tracker does at shutdown. Unlike CPython
 * (gh-82300), it first checks that no live process still maps the segment:
 * here the parent attaches by name before the kill, so the segment stays
 * until the parent lets go of it.
 *
 * Prints, with another name:
 *   worker created psm_4f1a09c2d3
 *   worker killed; parent still attached: segment kept, reads "hello"
 *   parent detached: segment removed
 */
#include <mproc.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int worker(const mproc_args *args)
{
    mproc_shm *shm;
    if (mproc_shm_create(&shm, NULL, 4096, 0) < 0)
        return 1;
    strcpy(mproc_shm_buf(shm), "hello");
    int fd = (int)mproc_args_int(args, 0);
    if (write(fd, mproc_shm_name(shm), strlen(mproc_shm_name(shm)) + 1) < 0)
        return 1;
    for (;;)
        pause(); /* killed here, the segment never unlinked */
}

static int exists(const char *name)
{
    char path[300];
    snprintf(path, sizeof path, "/dev/shm/%s", name);
    return access(path, F_OK) == 0;
}

int main(void)
{
    int p[2];
    if (pipe(p) < 0)
        return 1;
    mproc_args *args = mproc_args_of("i", p[1]);
    mproc_process *w = NULL;
    int r;
    if (!args || (r = mproc_process_new(&w, worker, args)) < 0 ||
        (r = mproc_process_start(w)) < 0) {
        fprintf(stderr, "ex65: cannot start the worker\n");
        return 1;
    }
    char name[MPROC_SHM_NAME_MAX + 1] = "";
    if (read(p[0], name, sizeof name) <= 0)
        return 1;
    printf("worker created %s\n", name);

    mproc_shm *mine;
    if (mproc_shm_attach(&mine, name, MPROC_SHM_READONLY) < 0)
        return 1;
    mproc_process_kill(w);
    mproc_process_join(w, -1);
    usleep(300000); /* the tracker has looked by now */
    printf("worker killed; parent still attached: segment %s, reads \"%s\"\n",
           exists(name) ? "kept" : "removed", (char *)mproc_shm_buf(mine));

    mproc_shm_free(mine);
    for (int i = 0; i < 300 && exists(name); i++)
        usleep(10000);
    printf("parent detached: segment %s\n", exists(name) ? "kept" : "removed");
    mproc_process_free(w);
    mproc_args_free(args);
    close(p[0]);
    close(p[1]);
    return 0;
}
