/*
 * nslookup_local.c - a local stand-in for nslookup, for the tour's
 * subprocess examples (ex90, ex91), which must run without a network. It
 * is read the same way as nslookup: `nslookup_local NAME` looks NAME up
 * and exits; with no argument it reads commands from stdin ("set q=TYPE",
 * a name, "exit"). Names are resolved through the system resolver, which
 * answers localhost (and whatever /etc/hosts lists) without a network.
 * Exit code 0 when every lookup found an address, 1 otherwise.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static int lookup(const char *name, const char *type)
{
    struct addrinfo hints = {.ai_family = AF_INET,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_CANONNAME};
    struct addrinfo *res;
    printf("Server:\t\t/etc/hosts (local, no network)\n");
    printf("Address:\t127.0.0.1#53\n\n");
    if (getaddrinfo(name, NULL, &hints, &res) != 0) {
        printf("** server can't find %s: NXDOMAIN\n", name);
        return 1;
    }
    if (strcmp(type, "mx") == 0)
        printf("%s\tmail exchanger = (none: /etc/hosts holds no MX records)"
               "\n",
               name);
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        char ip[INET_ADDRSTRLEN];
        const struct sockaddr_in *sin = (const void *)a->ai_addr;
        inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof ip);
        printf("Name:\t%s\nAddress: %s\n",
               res->ai_canonname ? res->ai_canonname : name, ip);
    }
    freeaddrinfo(res);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        return lookup(argv[1], "a");
    char line[256], type[16] = "a";
    int fail = 0;
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\r\n")] = 0;
        if (strcmp(line, "exit") == 0)
            break;
        if (sscanf(line, "set q=%15s", type) == 1 ||
            sscanf(line, "set type=%15s", type) == 1)
            continue;
        if (line[0])
            fail |= lookup(line, type);
    }
    return fail;
}
