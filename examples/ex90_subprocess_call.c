/*
 * ex90_subprocess_call.c - the os.fork tutorial: subprocess.call of
 * nslookup, then its exit code.
 *
 *   print('$ nslookup www.python.org')
 *   r = subprocess.call(['nslookup', 'www.python.org'])
 *   print('Exit code:', r)
 *
 * The tour runs offline, so instead of nslookup asking a DNS server about
 * www.python.org this runs nslookup_local (built beside the examples), a
 * stand-in read the same way, on localhost; the output says so. Prints:
 *   $ nslookup www.python.org
 *   (offline: running the local stand-in nslookup_local on localhost)
 *   Server:         /etc/hosts (local, no network)
 *   Address:        127.0.0.1#53
 *
 *   Name:   localhost
 *   Address: 127.0.0.1
 *   Exit code: 0
 */
#include <libgen.h>
#include <limits.h>
#include <mproc.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    (void)argc;
    char prog[PATH_MAX]; /* the stand-in lives next to this program */
    snprintf(prog, sizeof prog, "%s/nslookup_local", dirname(argv[0]));

    printf("$ nslookup www.python.org\n");
    printf("(offline: running the local stand-in nslookup_local on "
           "localhost)\n");
    fflush(stdout); /* the child writes to the same stdout */
    int code;
    int r = mproc_call((const char *[]){"nslookup", "localhost", NULL},
                       &(mproc_popen_opts){.executable = prog}, -1, &code);
    if (r < 0) {
        fprintf(stderr, "call: %s\n", mproc_strerror(r));
        return 1;
    }
    printf("Exit code: %d\n", code);
    return 0;
}
