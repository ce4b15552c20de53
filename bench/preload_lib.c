/*
 * preload_lib.c - a library whose constructor does real work, for the
 * forkserver preload figure of bench_process: it builds a table of the
 * primes below 2^23 (a sieve over 8 MiB, the kind of table a library
 * computes once at load) and an entry that uses it. bench_process's target
 * dlopens it as a plugin, so a forkserver child loads it itself
 * (constructor and all) unless the fork server preloaded it.
 */
#include <mproc.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LIMIT (1u << 23)

static unsigned char *composite;
static uint32_t nprimes;

__attribute__((constructor)) static void build_table(void)
{
    composite = calloc(LIMIT, 1);
    if (!composite)
        return;
    for (uint32_t i = 2; i < LIMIT; i++) {
        if (composite[i])
            continue;
        nprimes++;
        for (uint64_t j = (uint64_t)i * i; j < LIMIT; j += i)
            composite[j] = 1;
    }
}

/* Exits 0 when the table is there: 564163 primes below 2^23. */
int bench_preload_target(const mproc_args *args)
{
    (void)args;
    return composite && nprimes == 564163 && !composite[8388593] ? 0 : 1;
}
