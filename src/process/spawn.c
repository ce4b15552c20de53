/*
 * process/spawn.c - the spawn start method's two halves.
 *
 * Parent: posix_spawn of /proc/self/exe (the very binary that runs, even if
 * its file was replaced since), or for children of the spawn method the
 * program mproc_set_executable named, with MPROC_SPAWN=<exe fd>:<mode> in
 * the environment and exactly the given fds, renumbered to 3, 4, ...;
 * every other fd is closed in the child. glibc's posix_spawn uses
 * CLONE_VFORK, so the cost does not grow with the parent's size, and
 * reports exec failure itself. The mode is "child:<nfds>" (boot a process
 * object from the description in fd 3) or "helper:<code reference>" (run a
 * helper's entry: the fork server, the shared memory tracker), each
 * followed by ":main" when the program guards its main() with mproc_main().
 *
 * The binary is exec'd as /proc/self/fd/<exe fd>, an fd the child opens on
 * the program (/proc/self/exe for this one) just before, and closes first
 * thing once it runs: valgrind cannot exec /proc/self/exe itself, which
 * names valgrind's own binary there, but hands the program's binary to an
 * open of it.
 *
 * Child: the spawned program must not run main(). Where it takes over,
 * in order of preference:
 *   1. mproc_main(argc, argv), when the program calls it first thing in
 *      main() (the parent saw it called, and says so with ":main"): every
 *      constructor has run; works for static and dynamic programs alike.
 *   2. libmproc.so's own __libc_start_main (entry.c, in the shared
 *      library only), which the program's start code calls in place of
 *      libc's when libmproc comes before libc in the symbol search order,
 *      as it does whenever the program is linked with -lmproc: the child
 *      boots where main() would be called, after every constructor.
 *   3. Otherwise (a static program without mproc_main, libmproc pulled in
 *      by another library), libmproc's constructor boots the child before
 *      main(): constructors that run after libmproc's have not run.
 */
#include "process/process.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

#define SPAWN_ENV   "MPROC_SPAWN"
#define NOPIDFD_ENV "MPROC_NO_PIDFD"

/* mproc_set_executable's program (an absolute path), or NULL for
 * /proc/self/exe. Under the library lock, which fork children get fresh. */
static char *g_exe;

int mproc_set_executable(const char *path)
{
    char *abs = NULL;
    if (path) {
        if (!*path)
            return -EINVAL;
        abs = realpath(path, NULL); /* a later chdir must not change it */
        if (!abs)
            return errno == ENOMEM ? -ENOMEM : -errno;
        struct stat st;
        int r = stat(abs, &st) < 0      ? -errno
                : !S_ISREG(st.st_mode)  ? -EACCES
                : access(abs, X_OK) < 0 ? -errno
                                        : 0;
        if (r < 0) {
            free(abs);
            return r;
        }
    }
    mproc__lock();
    char *old = g_exe;
    g_exe = abs;
    mproc__unlock();
    free(old);
    return 0;
}

/* exe: the program to run, NULL for this very one. */
static pid_t spawn_exe(const int *fds, size_t nfds, const char *mode,
                       const char *exe)
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
    char **envp = malloc((nenv + 3) * sizeof *envp);
    char modevar[160];
    if (!envp)
        return -ENOMEM;
    size_t k = 0;
    for (char **e = environ; e && *e; e++)
        if (strncmp(*e, SPAWN_ENV "=", sizeof SPAWN_ENV) != 0 &&
            strncmp(*e, NOPIDFD_ENV "=", sizeof NOPIDFD_ENV) != 0)
            envp[k++] = *e;
    snprintf(modevar, sizeof modevar, SPAWN_ENV "=%d:%s", 3 + (int)nfds, mode);
    envp[k++] = modevar;
    /* The child does as we do (a fork server must answer as we expect),
     * and without pidfds does not probe for them again. */
    if (!mproc__have_pidfd())
        envp[k++] = NOPIDFD_ENV "=1";
    envp[k] = NULL;

    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    for (size_t i = 0; i < nfds; i++)
        posix_spawn_file_actions_adddup2(&fa, fds[i], base + (int)i);
    for (size_t i = 0; i < nfds; i++)
        posix_spawn_file_actions_adddup2(&fa, base + (int)i, 3 + (int)i);
    int exefd = 3 + (int)nfds;
    posix_spawn_file_actions_addclosefrom_np(&fa, exefd);
    posix_spawn_file_actions_addopen(&fa, exefd, exe ? exe : "/proc/self/exe",
                                     O_PATH, 0);
    char exepath[32];
    snprintf(exepath, sizeof exepath, "/proc/self/fd/%d", exefd);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK);

    char arg1[64];
    snprintf(arg1, sizeof arg1, "--mproc-%s", mode);
    char *argv[] = {exe ? (char *)exe : program_invocation_name, arg1, NULL};
    pid_t pid;
    r = posix_spawn(&pid, exepath, &fa, &at, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    free(envp);
    return r == 0 ? pid : -r;
}

/* Set once mproc_main() ran in this program: its children will run it. */
static bool g_main_guard;

pid_t mproc__spawn_child(const int *fds, size_t nfds)
{
    char mode[48];
    if (nfds < 1)
        return -EINVAL;
    char exe[PATH_MAX];
    mproc__lock();
    bool other = g_exe && strlen(g_exe) < sizeof exe;
    if (other)
        memcpy(exe, g_exe, strlen(g_exe) + 1);
    mproc__unlock();
    /* Whether another program calls mproc_main() is not known here: it
     * boots where its libmproc takes over unguarded (entry.c, or the
     * constructor). */
    snprintf(mode, sizeof mode, "child:%zu%s", nfds - 1,
             g_main_guard && !other ? ":main" : "");
    return spawn_exe(fds, nfds, mode, other ? exe : NULL);
}

pid_t mproc__spawn_helper(void (*entry)(void), const int *fds, size_t nfds)
{
    mproc__coderef ref;
    char mode[128];
    int r = mproc__coderef_make((const void *)entry, &ref);
    if (r < 0)
        return r;
    snprintf(mode, sizeof mode, "helper:%" PRIx64 ":%" PRIx64 ":%" PRIx64 "%s",
             ref.dev, ref.ino, ref.off, g_main_guard ? ":main" : "");
    return spawn_exe(fds, nfds, mode, NULL); /* helpers: always this one */
}

/* ---- the child ---------------------------------------------------------- */

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

/* The mode of this process when it is a spawned child, else NULL. */
static const char *spawn_mode(void)
{
    return getenv(SPAWN_ENV);
}

static bool mode_guarded(const char *mode)
{
    size_t n = strlen(mode);
    return n > 5 && strcmp(mode + n - 5, ":main") == 0;
}

/* Runs a helper's entry named by a code reference; never returns. */
static void __attribute__((noreturn)) run_helper(const char *m)
{
    mproc__coderef ref;
    void *entry = NULL;
    if (sscanf(m, "helper:%" SCNx64 ":%" SCNx64 ":%" SCNx64, &ref.dev, &ref.ino,
               &ref.off) == 3 &&
        mproc__coderef_find(&ref, &entry) == 0) {
        void (*fn)(void);
        memcpy(&fn, &entry, sizeof fn);
        fn();
    }
    mproc__exit(255);
}

/* Boots the process MPROC_SPAWN asks for and returns its exit code. */
static int spawn_boot(void)
{
    const char *mode = spawn_mode();
    char m[128];
    snprintf(m, sizeof m, "%s", mode ? mode : "");
    unsetenv(SPAWN_ENV);
    /* "<exe fd>:": the fd our binary was exec'd through; no one's now. */
    char *rest;
    long exe = strtol(m, &rest, 10);
    if (rest != m && *rest == ':' && exe >= 3 && exe < INT32_MAX) {
        close((int)exe);
        memmove(m, rest + 1, strlen(rest + 1) + 1);
    }
    if (strncmp(m, "helper:", 7) == 0)
        run_helper(m);
    unsigned long n = 0;
    if (sscanf(m, "child:%lu", &n) != 1)
        return 255;
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

int mproc_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    g_main_guard = true;
    if (!spawn_mode())
        return 0;
    exit(spawn_boot());
}

int mproc__spawn_main(int argc, char **argv, char **envp)
{
    (void)argc;
    (void)argv;
    (void)envp;
    return spawn_boot();
}

bool mproc__spawn_pending(void)
{
    const char *m = spawn_mode();
    return m && !mode_guarded(m);
}

/* Defined by entry.c in the shared library only: true when its
 * __libc_start_main is the one the program's start code calls. */
extern bool mproc__entry_hooked(void) __attribute__((weak));

__attribute__((constructor)) static void spawn_constructor(void)
{
    if (!mproc__spawn_pending())
        return; /* not a child, or mproc_main() will boot it */
    if (mproc__entry_hooked && mproc__entry_hooked())
        return; /* entry.c boots it where main() would be called */
    exit(spawn_boot());
}
