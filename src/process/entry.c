/*
 * process/entry.c - libmproc.so's __libc_start_main (built into the shared
 * library only: a static program would get two definitions of it).
 *
 * The program's start code (crt1.o) calls __libc_start_main(main, ...).
 * When libmproc comes before libc in the symbol search order, as it does
 * whenever a program is linked with -lmproc, that call lands here: a
 * spawned child's main is swapped for the child's boot, every constructor
 * of every library and of the program having run; anything else goes on
 * to libc's __libc_start_main unchanged. See spawn.c for the other ways a
 * spawned child takes over.
 */
#include "process/process.h"

#include <dlfcn.h>
#include <unistd.h>

bool mproc__entry_hooked(void);

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

MPROC_API int __libc_start_main(main_fn main, int argc, char **argv,
                                void (*init)(void), void (*fini)(void),
                                void (*rtld_fini)(void), void *stack_end)
{
    start_fn real = real_start();
    if (!real)
        mproc__exit(127);
    if (mproc__spawn_pending())
        main = mproc__spawn_main;
    return real(main, argc, argv, init, fini, rtld_fini, stack_end);
}

bool mproc__entry_hooked(void)
{
    return dlsym(RTLD_DEFAULT, "__libc_start_main") ==
           (void *)__libc_start_main;
}
