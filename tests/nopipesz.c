/* nopipesz.c - an LD_PRELOAD library for test_parallel.sh: refuses every
 * fcntl(F_SETPIPE_SZ) with EPERM, as the kernel does for a user past its
 * pipe-memory limit (fs.pipe-user-pages-soft), so that the fallbacks of
 * mproc-parallel and of mproc's subprocess pipes (64 KiB pipes, the
 * copying path) run. Each refusal appends a line to the file named by
 * MPROC_NOPIPESZ_LOG, when set, so the test can tell it took effect. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

static void note_refusal(void)
{
    const char *log = getenv("MPROC_NOPIPESZ_LOG");
    if (!log)
        return;
    int fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) {
        (void)!write(fd, "refused\n", 8);
        close(fd);
    }
}

static int forward(const char *name, int fd, int cmd, va_list ap)
{
    int (*real)(int, int, ...) = NULL;
    void *sym = dlsym(RTLD_NEXT, name);
    *(void **)&real = sym;
    if (!real) {
        errno = ENOSYS;
        return -1;
    }
    if (cmd == F_SETPIPE_SZ) {
        note_refusal();
        errno = EPERM;
        return -1;
    }
    /* Every other command takes at most one argument, an int or a
     * pointer: passed on as a pointer-sized word. */
    void *arg = va_arg(ap, void *);
    return real(fd, cmd, arg);
}

int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    int r = forward("fcntl", fd, cmd, ap);
    va_end(ap);
    return r;
}

int fcntl64(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    int r = forward("fcntl64", fd, cmd, ap);
    va_end(ap);
    return r;
}
