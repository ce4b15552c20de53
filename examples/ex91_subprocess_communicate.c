/*
 * ex91_subprocess_communicate.c - the os.fork tutorial: Popen with stdin,
 * stdout and stderr as pipes, and communicate() feeding nslookup its
 * commands.
 *
 *   print('$ nslookup')
 *   p = subprocess.Popen(['nslookup'], stdin=subprocess.PIPE,
 *                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
 *   output, err = p.communicate(b'set q=mx\npython.org\nexit\n')
 *   print(output.decode('utf-8'))
 *   print('Exit code:', p.returncode)
 *
 * Offline, as ex90: the local stand-in nslookup_local reads the same
 * commands from its stdin, asked about localhost instead of python.org.
 * Prints:
 *   $ nslookup
 *   (offline: running the local stand-in nslookup_local, asking about
 *   localhost)
 *   Server:         /etc/hosts (local, no network)
 *   Address:        127.0.0.1#53
 *
 *   localhost       mail exchanger = (none: /etc/hosts holds no MX records)
 *   Name:   localhost
 *   Address: 127.0.0.1
 *
 *   Exit code: 0
 */
#include <libgen.h>
#include <limits.h>
#include <mproc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    (void)argc;
    char prog[PATH_MAX]; /* the stand-in lives next to this program */
    snprintf(prog, sizeof prog, "%s/nslookup_local", dirname(argv[0]));

    printf("$ nslookup\n");
    printf("(offline: running the local stand-in nslookup_local, asking "
           "about localhost)\n");
    mproc_popen *p;
    mproc_popen_opts o = {.executable = prog,
                          .in = {MPROC_STDIO_PIPE},
                          .out = {MPROC_STDIO_PIPE},
                          .err = {MPROC_STDIO_PIPE}};
    const char *step;
    int r = mproc_popen_new(&p, (const char *[]){"nslookup", NULL}, &o, &step);
    if (r < 0) {
        fprintf(stderr, "Popen: %s (%s)\n", mproc_strerror(r), step);
        return 1;
    }
    const char *input = "set q=mx\nlocalhost\nexit\n";
    char *output, *err;
    size_t outlen, errlen;
    r = mproc_popen_communicate(p, input, strlen(input), &output, &outlen, &err,
                                &errlen, -1);
    if (r < 0) {
        fprintf(stderr, "communicate: %s\n", mproc_strerror(r));
        mproc_popen_free(p);
        return 1;
    }
    printf("%s\n", output); /* print() adds a newline */
    printf("Exit code: %d\n", mproc_popen_returncode(p));
    free(output);
    free(err);
    mproc_popen_free(p);
    return 0;
}
