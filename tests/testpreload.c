/* testpreload.c - a library for mproc_set_forkserver_preload: its
 * constructor records which process loaded it. Not linked into any test:
 * only the fork server loads it (and test_process looks for it). */
#include <unistd.h>

int mproc_testpreload_ctor_pid;
int mproc_testpreload_ctor_runs;

__attribute__((constructor)) static void testpreload_init(void)
{
    mproc_testpreload_ctor_pid = (int)getpid();
    mproc_testpreload_ctor_runs++;
}
