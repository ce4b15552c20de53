/*
 * spawn.c - the spawn start method's two halves.
 *
 * Parent: posix_spawn of /proc/self/exe (the very binary that runs, even if
 * its file was replaced since) with MPROC_SPAWN=<mode> in the environment
 * and exactly the given fds, renumbered to 3, 4, ...; every other fd is
 * closed in the child. glibc's posix_spawn uses CLONE_VFORK, so the cost
 * does not grow with the parent's size, and reports exec failure itself.
 *
 * Child: a constructor of libmproc sees MPROC_SPAWN before main() and never
 * returns to it: it boots the child (child mode), or runs a library helper
 * process (the fork server, the shared memory tracker) and exits.
 */
#include "internal.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

#define SPAWN_ENV "MPROC_SPAWN"

pid_t mproc__spawn_exe(const int *fds, size_t nfds, const char *mode)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    int r, maxfd = 2;
    for (size_t i = 0; i < nfds; i++) {
        if (fds[i] < 0)
            return -EBADF;
        if (fds[i] > maxfd)
            maxfd = fds[i];
    }
    /* Park every fd above both the sources and the targets, then move it
     * down: no dup2 can clobber a source that is still needed. */
    int base = maxfd + 1;
    if (base < 3 + (int)nfds)
        base = 3 + (int)nfds;

    size_t nenv = 0;
    for (char **e = environ; e && *e; e++)
        nenv++;
    char **envp = malloc((nenv + 2) * sizeof *envp);
    char modevar[64];
    if (!envp)
        return -ENOMEM;
    size_t k = 0;
    for (char **e = environ; e && *e; e++)
        if (strncmp(*e, SPAWN_ENV "=", sizeof SPAWN_ENV) != 0)
            envp[k++] = *e;
    snprintf(modevar, sizeof modevar, SPAWN_ENV "=%s", mode);
    envp[k++] = modevar;
    envp[k] = NULL;

    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    for (size_t i = 0; i < nfds; i++)
        posix_spawn_file_actions_adddup2(&fa, fds[i], base + (int)i);
    for (size_t i = 0; i < nfds; i++)
        posix_spawn_file_actions_adddup2(&fa, base + (int)i, 3 + (int)i);
    posix_spawn_file_actions_addclosefrom_np(&fa, 3 + (int)nfds);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK);

    char arg1[64];
    snprintf(arg1, sizeof arg1, "--mproc-%s", mode);
    char *argv[] = {program_invocation_name, arg1, NULL};
    pid_t pid;
    r = posix_spawn(&pid, "/proc/self/exe", &fa, &at, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    free(envp);
    return r == 0 ? pid : -r;
}

/* Reads the whole boot description from fd. */
static unsigned char *read_blob(int fd, size_t *len)
{
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size <= 0 || st.st_size > (1 << 30))
        return NULL;
    unsigned char *b = malloc((size_t)st.st_size);
    if (!b)
        return NULL;
    if (pread(fd, b, (size_t)st.st_size, 0) != st.st_size) {
        free(b);
        return NULL;
    }
    *len = (size_t)st.st_size;
    return b;
}

__attribute__((weak, noreturn)) void mproc__tracker_main(int fd)
{
    (void)fd;
    _exit(1);
}

__attribute__((weak)) int mproc__tracker_stop(void)
{
    return 0;
}

/* Boots the process MPROC_SPAWN asks for; returns only when it is unset. */
static int spawn_boot(void)
{
    const char *mode = getenv(SPAWN_ENV);
    if (!mode)
        return -1;
    char m[64];
    snprintf(m, sizeof m, "%s", mode);
    unsetenv(SPAWN_ENV);
    if (strcmp(m, "forkserver") == 0)
        mproc__forkserver_main(3, 4);
    if (strcmp(m, "tracker") == 0)
        mproc__tracker_main(3);
    unsigned long n = 0;
    if (sscanf(m, "child:%lu", &n) != 1)
        _exit(255);
    size_t len = 0;
    unsigned char *blob = read_blob(3, &len);
    close(3);
    int fds[MPROC_ARGS_MAX_FDS + 8];
    if (n > MPROC__ARRAY_LEN(fds))
        n = MPROC__ARRAY_LEN(fds);
    for (size_t i = 0; i < n; i++) {
        fds[i] = 4 + (int)i;
        fcntl(fds[i], F_SETFD, FD_CLOEXEC);
    }
    int code = 255;
    if (blob) {
        code = mproc__child_run(blob, len, fds, n, 0);
        free(blob);
    }
    return code;
}

/*
 * Where the child takes over. The best place is where main() would be
 * called: every constructor (of all libraries and of the program) has run.
 * libmproc defines __libc_start_main, which the program's entry code calls
 * with main; ours passes on a different main when MPROC_SPAWN is set. That
 * works when libmproc comes before libc in the symbol search order, as it
 * does whenever a program is linked with -lmproc. Otherwise (libmproc
 * loaded by something else) the constructor below boots the child itself,
 * and objects initialized after libmproc have not run their constructors.
 */
typedef int (*main_fn)(int, char **, char **);
typedef int (*start_fn)(main_fn, int, char **, void (*)(void), void (*)(void),
                        void (*)(void), void *);

static start_fn real_start(void)
{
    start_fn f = (start_fn)dlvsym(RTLD_NEXT, "__libc_start_main", "GLIBC_2.34");
    if (!f)
        f = (start_fn)dlvsym(RTLD_NEXT, "__libc_start_main", "GLIBC_2.2.5");
    if (!f)
        f = (start_fn)dlsym(RTLD_NEXT, "__libc_start_main");
    return f;
}

static int spawn_main(int argc, char **argv, char **envp)
{
    return spawn_boot();
}

MPROC_API int __libc_start_main(main_fn main, int argc, char **argv,
                                void (*init)(void), void (*fini)(void),
                                void (*rtld_fini)(void), void *stack_end)
{
    start_fn real = real_start();
    if (!real)
        _exit(127);
    if (getenv(SPAWN_ENV))
        main = spawn_main;
    return real(main, argc, argv, init, fini, rtld_fini, stack_end);
}

__attribute__((constructor)) static void mproc__spawn_hook(void)
{
    if (!getenv(SPAWN_ENV))
        return;
    void *first = dlsym(RTLD_DEFAULT, "__libc_start_main");
    if (first == (void *)__libc_start_main)
        return; /* ours will be called: boot there */
    exit(spawn_boot());
}
