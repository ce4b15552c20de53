/*
 * tools/parallel/parallel.c - mproc-parallel, a parallel command runner
 * with GNU parallel's interface, built on mproc's subprocess API.
 *
 * One process runs everything: it reads the inputs, builds each job's
 * command, starts it with mproc_popen_new (a vfork-like clone straight
 * into exec, in a process group of its own, SIGKILLed if the runner
 * dies), and waits in a single poll() loop over every job's pidfd
 * sentinel and output pipes, plus a self-pipe for signals. No process is
 * started per job besides the job itself. A guardian process, forked once
 * at start, is told the process group of every running job and kills the
 * groups that are still alive when the runner vanishes (SIGKILL included).
 *
 * Layout of this file: helpers; options; inputs; templates and commands;
 * output buffers; the guardian; jobs and the loop; main.
 */
#include <mproc.h>
#ifdef MPROC_PARALLEL_MPI
#include <mproc/mpi.h>
#endif

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------ */

static const char *progname = "mproc-parallel";

/* The longest single argument Linux's execve takes (MAX_ARG_STRLEN - 1):
 * a shell command line is one argument of /bin/sh. */
#define MAX_ARG_LEN 131071
#define MEM_LIMIT   ((size_t)1 << 20) /* output held in memory per stream */
#define EXIT_ERROR  255

static void msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void msg(const char *fmt, ...)
{
    char line[4096];
    va_list ap;
    int n = snprintf(line, sizeof line, "%s: ", progname);
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    size_t len = strlen(line);
    if (len < sizeof line - 1)
        line[len++] = '\n';
    ssize_t w = write(2, line, len);
    (void)w;
}

static void die(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    msg("%s", line);
    exit(EXIT_ERROR);
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        die("out of memory");
    return q;
}

static char *xstrndup(const char *s, size_t n)
{
    char *d = xrealloc(NULL, n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* A growable byte string, always NUL-terminated once it holds anything. */
typedef struct sbuf {
    char *s;
    size_t len, cap;
} sbuf;

static void sb_add(sbuf *b, const void *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->s = xrealloc(b->s, cap);
        b->cap = cap;
    }
    memcpy(b->s + b->len, p, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sb_adds(sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}
static void sb_addc(sbuf *b, char c)
{
    sb_add(b, &c, 1);
}

static char *sb_take(sbuf *b)
{
    if (!b->s)
        sb_add(b, "", 0);
    char *s = b->s;
    *b = (sbuf){0};
    return s;
}

static double now_mono(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double now_real(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Writes everything to fd; false on a write error (EPIPE: nobody reads). */
static bool write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                struct pollfd pf = {.fd = fd, .events = POLLOUT};
                poll(&pf, 1, -1);
                continue;
            }
            return false;
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* ---- options ------------------------------------------------------------ */

typedef enum { OUT_GROUP, OUT_LINE, OUT_UNGROUP } out_mode;
typedef enum { HALT_NEVER, HALT_SOON, HALT_NOW } halt_when;
typedef enum { HALT_FAIL, HALT_SUCCESS, HALT_DONE } halt_what;

typedef struct term_step {
    int sig;
    int ms;
} term_step;

static struct {
    const char *jobs;
    bool keep_order, tag, dry_run, null, multi_x, multi_m, pipe, link;
    int shell; /* -1 auto, 0 never, 1 always */
    char delim;
    long max_args;
    out_mode out;
    const char *joblog;
    bool resume, resume_failed;
    int retries;
    double timeout;
    bool timeout_pct;
    term_step term[16];
    int nterm;
    halt_when halt;
    halt_what halt_on;
    double halt_n;
    bool halt_pct;
    size_t block;
    bool progress, eta, bar;
    bool mpi;
    const char **arg_files;
    int narg_files;
} opt = {.shell = -1, .delim = '\n', .max_args = 0, .block = 1 << 20};

static int cpus(void)
{
    int n = mproc_cpu_count_usable();
    return n > 0 ? n : 1;
}

static int parse_jobs(const char *s)
{
    char *end;
    int c = cpus();
    if (!s)
        return c;
    size_t len = strlen(s);
    if (len && s[len - 1] == '%') {
        double pct = strtod(s, &end);
        if (end != s + len - 1 || pct < 0)
            die("-j %s: not a number of jobs", s);
        int n = (int)(c * pct / 100.0);
        return n < 1 ? 1 : n;
    }
    long v = strtol(s, &end, 10);
    if (*end || end == s)
        die("-j %s: not a number of jobs", s);
    if (s[0] == '+' || s[0] == '-') {
        long n = c + v;
        return n < 1 ? 1 : (int)n;
    }
    if (v == 0) {
        /* As many as can run: bounded by the fds each job needs. */
        long lim = sysconf(_SC_OPEN_MAX);
        long n = lim > 64 ? (lim - 32) / 4 : 8;
        return n > 1000 ? 1000 : (int)n;
    }
    return v > 100000 ? 100000 : (int)v;
}

static const struct {
    const char *name;
    int sig;
} signames[] = {{"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT},
                {"KILL", SIGKILL}, {"TERM", SIGTERM}, {"USR1", SIGUSR1},
                {"USR2", SIGUSR2}, {"ALRM", SIGALRM}, {"STOP", SIGSTOP},
                {"CONT", SIGCONT}};

static int parse_signal(const char *s)
{
    if (strncmp(s, "SIG", 3) == 0)
        s += 3;
    for (size_t i = 0; i < sizeof signames / sizeof signames[0]; i++)
        if (strcmp(s, signames[i].name) == 0)
            return signames[i].sig;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || end == s || v <= 0 || v >= NSIG)
        die("--term-seq: unknown signal %s", s);
    return (int)v;
}

static void parse_term_seq(const char *s)
{
    char *copy = xstrndup(s, strlen(s)), *save = NULL;
    opt.nterm = 0;
    for (char *t = strtok_r(copy, ",", &save); t;
         t = strtok_r(NULL, ",", &save)) {
        if (opt.nterm == 16)
            die("--term-seq: too many steps");
        opt.term[opt.nterm].sig = parse_signal(t);
        char *ms = strtok_r(NULL, ",", &save);
        opt.term[opt.nterm].ms = ms ? atoi(ms) : 25;
        opt.nterm++;
    }
    free(copy);
    if (opt.nterm == 0)
        die("--term-seq: empty");
}

static void parse_halt(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*end && end != s) { /* the old numbers */
        opt.halt_n = 1;
        opt.halt = v == 0                ? HALT_NEVER
                   : (v == 1 || v == -1) ? HALT_SOON
                                         : HALT_NOW;
        opt.halt_on = v < 0 ? HALT_SUCCESS : HALT_FAIL;
        return;
    }
    if (strcmp(s, "never") == 0) {
        opt.halt = HALT_NEVER;
        return;
    }
    if (strncmp(s, "now,", 4) == 0)
        opt.halt = HALT_NOW, s += 4;
    else if (strncmp(s, "soon,", 5) == 0)
        opt.halt = HALT_SOON, s += 5;
    else
        die("--halt %s: expected never, now,... or soon,...", s);
    if (strncmp(s, "fail=", 5) == 0)
        opt.halt_on = HALT_FAIL, s += 5;
    else if (strncmp(s, "success=", 8) == 0)
        opt.halt_on = HALT_SUCCESS, s += 8;
    else if (strncmp(s, "done=", 5) == 0)
        opt.halt_on = HALT_DONE, s += 5;
    else
        die("--halt: expected fail=, success= or done=");
    opt.halt_n = strtod(s, &end);
    if (end == s || opt.halt_n <= 0)
        die("--halt: expected a count or a percentage");
    if (*end == '%')
        opt.halt_pct = true, end++;
    if (*end)
        die("--halt: trailing '%s'", end);
}

static size_t parse_size(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    double mul = 1;
    switch (toupper((unsigned char)*end)) {
    case 'K':
        mul = 1024;
        break;
    case 'M':
        mul = 1024.0 * 1024;
        break;
    case 'G':
        mul = 1024.0 * 1024 * 1024;
        break;
    case 0:
        break;
    default:
        die("--block %s: not a size", s);
    }
    if (end == s || v <= 0)
        die("--block %s: not a size", s);
    return (size_t)(v * mul);
}

static char parse_delim(const char *s)
{
    if (s[0] == '\\' && s[1]) {
        switch (s[1]) {
        case 'n':
            return '\n';
        case 't':
            return '\t';
        case '0':
            return '\0';
        case '\\':
            return '\\';
        case 'r':
            return '\r';
        default:
            break;
        }
    }
    if (strlen(s) != 1)
        die("-d %s: one character (or \\n, \\t, \\0)", s);
    return s[0];
}

static void usage(int code)
{
    static const char text[] =
        "Usage: mproc-parallel [options] [command [args]] [::: args | :::: "
        "files]...\n"
        "Runs command once per input (stdin lines if no ::: / ::::), in "
        "parallel.\n"
        "Inputs: ::: a b (list)  :::: file  :::+ / ::::+ linked to the "
        "previous\n"
        "  -a file  -0/--null  -d delim  -n N  -X (context)  -m  --link\n"
        "Strings: {} {.} {/} {//} {/.} {#} {%} {N} {N.} {N/} {N//} {N/.}\n"
        "Jobs: -j N | N% | +N | -N | 0 (default: CPUs)  --shell  "
        "--no-shell\n"
        "Output: grouped (default)  --line-buffer  -u/--ungroup  --tag  "
        "-k/--keep-order\n"
        "Control: --joblog F  --resume  --resume-failed  --retries N\n"
        "  --timeout S|N%  --term-seq TERM,200,TERM,100,TERM,50,KILL,25\n"
        "  --halt now|soon,fail|success|done=N|N%\n"
        "  --pipe [--block 1M]  --dry-run  --progress --eta --bar\n"
        "  --mpi (under mpirun: jobs on the other ranks)\n"
        "Exit: 0 ok, 1-100 failed jobs, 101 more, 255 error.  man "
        "mproc-parallel\n";
    ssize_t w = write(code ? 2 : 1, text, sizeof text - 1);
    (void)w;
    exit(code);
}

/* SIGINT, SIGTERM or SIGHUP arrived: set by the handler; a read of the
 * input it interrupts ends the input there. */
static volatile sig_atomic_t got_signal;

/* ---- inputs ------------------------------------------------------------- */

typedef struct str {
    char *s;
    size_t n;
} str;

/* A buffered reader of delimited records. */
typedef struct reader {
    int fd;
    const char *name;
    char *buf;
    size_t off, len, cap;
    bool eof;
    long recno;
} reader;

/* The next record (delimiter dropped) into *out, malloc'd. Returns 1, or 0
 * at end of input. Hostile input stops the run with a clear message. */
static int reader_next(reader *r, str *out)
{
    for (;;) {
        char *d = r->len > r->off
                      ? memchr(r->buf + r->off, opt.delim, r->len - r->off)
                      : NULL;
        size_t n = d ? (size_t)(d - (r->buf + r->off)) : r->len - r->off;
        if (d || (r->eof && n > 0)) {
            r->recno++;
            if (opt.delim != '\0' && memchr(r->buf + r->off, '\0', n))
                die("%s: record %ld contains a NUL byte (for NUL-separated "
                    "input use -0)",
                    r->name, r->recno);
            if (n > MAX_ARG_LEN && !opt.pipe)
                die("%s: record %ld is %zu bytes, longer than a command "
                    "line may be (%d)",
                    r->name, r->recno, n, MAX_ARG_LEN);
            out->s = xstrndup(r->buf + r->off, n);
            out->n = n;
            r->off += n + (d ? 1 : 0);
            return 1;
        }
        if (r->eof)
            return 0;
        if (r->off > 0) {
            memmove(r->buf, r->buf + r->off, r->len - r->off);
            r->len -= r->off;
            r->off = 0;
        }
        if (r->len == r->cap) {
            r->cap = r->cap ? r->cap * 2 : 65536;
            r->buf = xrealloc(r->buf, r->cap);
        }
        ssize_t got = read(r->fd, r->buf + r->len, r->cap - r->len);
        if (got < 0 && errno == EINTR && got_signal) {
            r->off = r->len; /* a partial record is dropped */
            r->eof = true;
            continue;
        }
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            die("%s: %s", r->name, strerror(errno));
        if (got == 0)
            r->eof = true;
        r->len += (size_t)got;
    }
}

typedef struct source {
    str *v;
    size_t n, cap;
    bool linked;      /* :::+ / ::::+ : paired with the previous source */
    const char *file; /* :::: file ("-": stdin); NULL for ::: */
} source;

static source *sources;
static int nsources;

static source *add_source(bool linked, const char *file)
{
    sources = xrealloc(sources, sizeof *sources * (size_t)(nsources + 1));
    sources[nsources] = (source){.linked = linked, .file = file};
    return &sources[nsources++];
}

static void source_push(source *s, str v)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->v = xrealloc(s->v, sizeof *s->v * s->cap);
    }
    s->v[s->n++] = v;
}

static int open_input(const char *file, reader *r)
{
    *r = (reader){.fd = 0, .name = "stdin"};
    if (strcmp(file, "-") != 0) {
        r->fd = open(file, O_RDONLY | O_CLOEXEC);
        if (r->fd < 0)
            die("%s: %s", file, strerror(errno));
        r->name = file;
    }
    return 0;
}

static void reader_close(reader *r)
{
    if (r->fd > 0)
        close(r->fd);
    free(r->buf);
}

static void source_read_all(source *s)
{
    reader r;
    open_input(s->file, &r);
    str v;
    while (reader_next(&r, &v))
        source_push(s, v);
    reader_close(&r);
}

/* The generator of records: one column per source. */
static struct {
    bool lazy; /* one file source, read as jobs need it */
    reader r;
    int ngroups;
    int *gfirst, *gcount; /* sources of each group of linked sources */
    size_t *glen;
    size_t next, total;
    bool done;
} gen;

static void gen_init(bool need_total)
{
    if (nsources == 1 && sources[0].file && !need_total) {
        gen.lazy = true;
        open_input(sources[0].file, &gen.r);
        return;
    }
    for (int i = 0; i < nsources; i++)
        if (sources[i].file)
            source_read_all(&sources[i]);
    gen.gfirst = calloc((size_t)nsources + 1, sizeof(int));
    gen.gcount = calloc((size_t)nsources + 1, sizeof(int));
    gen.glen = calloc((size_t)nsources + 1, sizeof(size_t));
    if (!gen.gfirst || !gen.gcount || !gen.glen)
        die("out of memory");
    gen.total = 1;
    for (int i = 0; i < nsources; i++) {
        if (i > 0 && (sources[i].linked || opt.link)) {
            int g = gen.ngroups - 1;
            gen.gcount[g]++;
            size_t n = sources[i].n;
            /* :::+ pairs up to the shorter; --link wraps the shorter. */
            if (opt.link ? n > gen.glen[g] : n < gen.glen[g])
                gen.glen[g] = n;
            continue;
        }
        gen.gfirst[gen.ngroups] = i;
        gen.gcount[gen.ngroups] = 1;
        gen.glen[gen.ngroups] = sources[i].n;
        gen.ngroups++;
    }
    for (int g = 0; g < gen.ngroups; g++)
        gen.total *= gen.glen[g];
}

static int ncols(void)
{
    return nsources;
}

/* The next record into cols[ncols()] (borrowed strings). 1 or 0 at end. */
static int gen_next(str *cols)
{
    if (gen.lazy) {
        if (gen.done)
            return 0;
        free(cols[0].s);
        cols[0] = (str){0};
        if (!reader_next(&gen.r, &cols[0])) {
            gen.done = true;
            return 0;
        }
        return 1;
    }
    if (gen.next >= gen.total)
        return 0;
    size_t idx = gen.next++;
    for (int g = gen.ngroups - 1; g >= 0; g--) {
        size_t k = idx % gen.glen[g];
        idx /= gen.glen[g];
        for (int j = 0; j < gen.gcount[g]; j++) {
            source *s = &sources[gen.gfirst[g] + j];
            if (s->n == 0)
                return 0;
            cols[gen.gfirst[g] + j] = s->v[k % s->n];
        }
    }
    return 1;
}

/* ---- templates and commands --------------------------------------------- */

typedef enum { F_ALL, F_NOEXT, F_BASE, F_DIR, F_BASENOEXT } field_mod;

typedef struct token {
    bool field;
    const char *lit; /* literal: text, len */
    size_t len;
    bool space; /* a literal of blanks between words */
    int pos;    /* field: 0 = {} (every argument), N = {N} */
    field_mod mod;
    bool seq, slot; /* {#}, {%} */
} token;

static token *toks;
static int ntoks;
static bool tmpl_has_field, tmpl_empty;

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Is text[i..] a replacement string? Fills t and returns its length. */
static size_t match_field(const char *p, token *t)
{
    if (*p != '{')
        return 0;
    const char *q = p + 1;
    *t = (token){.field = true};
    if (*q == '#' || *q == '%') {
        if (q[1] != '}')
            return 0;
        t->seq = *q == '#';
        t->slot = *q == '%';
        return 3;
    }
    while (isdigit((unsigned char)*q))
        t->pos = t->pos * 10 + (*q++ - '0');
    if (q > p + 1 && t->pos == 0)
        return 0;
    static const struct {
        const char *s;
        field_mod m;
    } mods[] = {{"}", F_ALL},
                {".}", F_NOEXT},
                {"/}", F_BASE},
                {"//}", F_DIR},
                {"/.}", F_BASENOEXT}};
    for (size_t i = 0; i < sizeof mods / sizeof mods[0]; i++)
        if (strncmp(q, mods[i].s, strlen(mods[i].s)) == 0) {
            t->mod = mods[i].m;
            return (size_t)(q - p) + strlen(mods[i].s);
        }
    return 0;
}

static void push_tok(token t)
{
    toks = xrealloc(toks, sizeof *toks * (size_t)(ntoks + 1));
    toks[ntoks++] = t;
}

/* Splits the template into literals, blanks and replacement strings and
 * decides whether the shell is needed. */
static void parse_template(const char *tmpl)
{
    tmpl_empty = *tmpl == '\0';
    bool shell_needed = tmpl_empty;
    const char *p = tmpl, *lit = p;
    while (*p) {
        token t = {0};
        size_t n = match_field(p, &t);
        bool blank = is_blank(*p);
        if (n || blank) {
            if (p > lit)
                push_tok((token){.lit = lit, .len = (size_t)(p - lit)});
            if (blank) {
                const char *b = p;
                while (is_blank(*p))
                    p++;
                push_tok(
                    (token){.lit = b, .len = (size_t)(p - b), .space = true});
            } else {
                push_tok(t);
                tmpl_has_field = true;
                p += n;
            }
            lit = p;
            continue;
        }
        if (!isalnum((unsigned char)*p) && !strchr("_-.,/=:+%@^{}", *p))
            shell_needed = true;
        p++;
    }
    if (p > lit)
        push_tok((token){.lit = lit, .len = (size_t)(p - lit)});
    /* A shell builtin or keyword, an assignment, or a command that comes
     * from the input needs the shell too. */
    static const char *const builtins[] = {
        "exit",     "cd",       "export",   ".",       "source",  "set",
        "unset",    "eval",     "exec",     "return",  "shift",   "trap",
        "ulimit",   "umask",    "wait",     "alias",   "read",    "if",
        "for",      "while",    "until",    "case",    "!",       "let",
        "local",    "declare",  "type",     "command", "hash",    "times",
        "readonly", "break",    "continue", "getopts", "jobs",    "fg",
        "bg",       "function", "select",   "time",    "builtin", "typeset",
        "shopt",    NULL};
    int first = 0;
    while (first < ntoks && toks[first].space)
        first++;
    if (first < ntoks && toks[first].field)
        shell_needed = true;
    if (first < ntoks && !toks[first].field) {
        const token *t = &toks[first];
        if (memchr(t->lit, '=', t->len))
            shell_needed = true;
        for (int k = 0; builtins[k]; k++)
            if (strlen(builtins[k]) == t->len &&
                memcmp(builtins[k], t->lit, t->len) == 0)
                shell_needed = true;
    }
    if (!tmpl_has_field && !opt.pipe) { /* arguments are appended */
        if (!tmpl_empty)
            push_tok((token){.lit = " ", .len = 1, .space = true});
        push_tok((token){.field = true});
    }
    if (opt.shell < 0)
        opt.shell = shell_needed;
}

/* Quotes s for /bin/sh as GNU parallel does: bare when only
 * [-_.+a-zA-Z0-9/], else in single quotes ('"'"' for a quote). */
static void shell_quote(sbuf *b, const char *s, size_t n)
{
    bool plain = n > 0;
    for (size_t i = 0; i < n && plain; i++)
        plain = isalnum((unsigned char)s[i]) || strchr("-_.+/", s[i]);
    if (plain) {
        sb_add(b, s, n);
        return;
    }
    if (n == 0) {
        sb_adds(b, "''");
        return;
    }
    bool open = false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\'') {
            if (open)
                sb_addc(b, '\'');
            sb_adds(b, "\"'\"");
            open = false;
        } else {
            if (!open)
                sb_addc(b, '\'');
            open = true;
            sb_addc(b, s[i]);
        }
    }
    if (open)
        sb_addc(b, '\'');
}

/* A value with a replacement string's modification applied. */
static str apply_mod(str v, field_mod m, char *tmp, size_t cap)
{
    if (m == F_ALL || v.n >= cap)
        return v;
    memcpy(tmp, v.s, v.n);
    tmp[v.n] = '\0';
    char *slash = strrchr(tmp, '/');
    char *base = slash ? slash + 1 : tmp;
    if (m == F_DIR) {
        if (!slash)
            return (str){".", 1};
        if (slash == tmp)
            return (str){"/", 1};
        *slash = '\0';
        return (str){tmp, (size_t)(slash - tmp)};
    }
    if (m == F_BASE || m == F_BASENOEXT) {
        memmove(tmp, base, strlen(base) + 1);
        base = tmp;
    }
    if (m == F_NOEXT || m == F_BASENOEXT) {
        char *dot = strrchr(base, '.');
        if (dot && dot > base) /* not a leading dot (.bashrc) */
            *dot = '\0';
    }
    return (str){tmp, strlen(tmp)};
}

/* A built command: the shell form (for sh -c, --dry-run, the joblog) and,
 * without the shell, the argv. */
typedef struct cmd {
    char *line;
    char **argv;
    int argc;
} cmd;

typedef struct args {
    str *v; /* every argument, records one after another */
    size_t n;
    size_t nrec;
} args;

static void word_push(cmd *c, sbuf *w)
{
    c->argv = xrealloc(c->argv, sizeof(char *) * (size_t)(c->argc + 2));
    c->argv[c->argc++] = sb_take(w);
    c->argv[c->argc] = NULL;
}

/* Appends the values of field t to the shell line and the current word. */
static void emit_field(const token *t, const args *a, long seq, int slot,
                       sbuf *line, sbuf *w, cmd *c, bool *inword)
{
    char num[32];
    if (t->seq || t->slot) {
        snprintf(num, sizeof num, "%ld", t->seq ? seq : (long)slot);
        sb_adds(line, num);
        sb_adds(w, num);
        *inword = true;
        return;
    }
    size_t first = 0, count = a->n;
    if (t->pos > 0) {
        first = (size_t)t->pos - 1;
        count = first < a->n ? 1 : 0;
    }
    static char tmp[MAX_ARG_LEN + 2];
    if (count == 0) { /* a missing {N}: nothing */
        *inword = true;
        return;
    }
    for (size_t i = 0; i < count; i++) {
        str v = apply_mod(a->v[first + i], t->mod, tmp, sizeof tmp);
        if (i > 0) {
            sb_addc(line, ' ');
            word_push(c, w);
        }
        if (tmpl_empty) /* the arguments are commands themselves */
            sb_add(line, v.s, v.n);
        else
            shell_quote(line, v.s, v.n);
        sb_add(w, v.s, v.n);
        *inword = true;
    }
}

/* Builds the command of one job. -X repeats each word holding {} once per
 * argument; otherwise {} is every argument, space separated. */
static void build_cmd(cmd *c, const args *a, long seq, int slot)
{
    sbuf line = {0}, w = {0};
    bool inword = false;
    *c = (cmd){0};
    for (int i = 0; i < ntoks;) {
        if (toks[i].space) {
            sb_add(&line, toks[i].lit, toks[i].len);
            if (inword)
                word_push(c, &w);
            inword = false;
            i++;
            continue;
        }
        int end = i; /* one word: tokens up to the next blank */
        bool ctx = false;
        while (end < ntoks && !toks[end].space) {
            ctx |= toks[end].field && toks[end].pos == 0 && !toks[end].seq &&
                   !toks[end].slot;
            end++;
        }
        size_t reps = opt.multi_x && ctx ? a->n : 1;
        for (size_t r = 0; r < reps; r++) {
            args one = {.v = a->v + r, .n = 1};
            const args *use = reps > 1 ? &one : a;
            if (r > 0) {
                sb_addc(&line, ' ');
                word_push(c, &w);
            }
            for (int k = i; k < end; k++) {
                if (toks[k].field) {
                    emit_field(&toks[k], use, seq, slot, &line, &w, c, &inword);
                } else {
                    sb_add(&line, toks[k].lit, toks[k].len);
                    sb_add(&w, toks[k].lit, toks[k].len);
                    inword = true;
                }
            }
        }
        i = end;
    }
    if (inword)
        word_push(c, &w);
    free(w.s);
    c->line = sb_take(&line);
}

static void cmd_free(cmd *c)
{
    for (int i = 0; i < c->argc; i++)
        free(c->argv[i]);
    free(c->argv);
    free(c->line);
    *c = (cmd){0};
}

/* ---- output buffers ----------------------------------------------------- */

/* A job's output on one stream: in memory up to MEM_LIMIT, then in an
 * unlinked temporary file (nothing left on disk, whatever happens). */
typedef struct outbuf {
    sbuf mem;
    int spill; /* -1: none */
    size_t total;
    size_t printed;  /* bytes of mem already written */
    off_t spill_off; /* bytes of the file already written */
} outbuf;

/* MEM_LIMIT, or with --pipe twice the block: its input is held in memory
 * anyway, and output of the size of the input should not go to disk. */
static size_t mem_limit = MEM_LIMIT;

static int spill_file(void)
{
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir)
        dir = "/tmp";
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
        return fd;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/mproc-parallel.XXXXXX", dir);
    fd = mkostemp(path, O_CLOEXEC);
    if (fd >= 0)
        unlink(path);
    return fd;
}

static void out_add(outbuf *o, const char *p, size_t n)
{
    o->total += n;
    if (o->spill < 0 && o->mem.len + n > mem_limit) {
        o->spill = spill_file();
        if (o->spill < 0)
            die("cannot create a temporary file for output: %s",
                strerror(errno));
        /* Only what is not written yet (--line-buffer wrote some). */
        if (!write_all(o->spill, o->mem.s + o->printed,
                       o->mem.len - o->printed))
            die("writing output to a temporary file: %s", strerror(errno));
        o->mem.len = 0;
        o->printed = 0;
    }
    if (o->spill >= 0) {
        if (!write_all(o->spill, p, n))
            die("writing output to a temporary file: %s", strerror(errno));
    } else {
        sb_add(&o->mem, p, n);
    }
}

static void out_free(outbuf *o)
{
    free(o->mem.s);
    if (o->spill >= 0)
        close(o->spill);
    *o = (outbuf){.spill = -1};
}

static bool stdout_broken;

/* Writes data to fd, with tag and a tab before each line when tag is set;
 * *bol tracks whether the next byte starts a line. */
static void emit(int fd, const char *tag, const char *p, size_t n, bool *bol)
{
    if (stdout_broken && fd == 1)
        return;
    bool ok = true;
    if (!tag) {
        ok = write_all(fd, p, n);
    } else {
        sbuf b = {0};
        while (n > 0) {
            if (*bol) {
                sb_adds(&b, tag);
                sb_addc(&b, '\t');
            }
            const char *nl = memchr(p, '\n', n);
            size_t k = nl ? (size_t)(nl - p) + 1 : n;
            sb_add(&b, p, k);
            *bol = nl != NULL;
            p += k;
            n -= k;
        }
        ok = write_all(fd, b.s, b.len);
        free(b.s);
    }
    if (!ok && fd == 1)
        stdout_broken = true;
}

/* Hands every byte of o not handed on yet to sink, in pieces. */
typedef void (*out_sink)(void *ctx, const char *p, size_t n);

static void out_each(outbuf *o, out_sink sink, void *ctx)
{
    if (o->spill >= 0) {
        char buf[65536];
        for (;;) {
            ssize_t got = pread(o->spill, buf, sizeof buf, o->spill_off);
            if (got <= 0)
                break;
            sink(ctx, buf, (size_t)got);
            o->spill_off += got;
        }
    }
    sink(ctx, o->mem.s + o->printed, o->mem.len - o->printed);
    o->printed = o->mem.len;
}

typedef struct emit_ctx {
    int fd;
    const char *tag;
    bool bol;
} emit_ctx;

static void emit_sink(void *ctx, const char *p, size_t n)
{
    emit_ctx *e = ctx;
    emit(e->fd, e->tag, p, n, &e->bol);
}

/* Writes all of o (from where it was left) to fd. */
static void out_flush(outbuf *o, int fd, const char *tag)
{
    emit_ctx e = {.fd = fd, .tag = tag, .bol = true};
    out_each(o, emit_sink, &e);
}

/* --line-buffer: writes the complete lines not yet written. */
static void out_flush_lines(outbuf *o, int fd, const char *tag)
{
    if (o->spill >= 0) { /* already past the limit: write it all */
        out_flush(o, fd, tag);
        return;
    }
    const char *start = o->mem.s + o->printed;
    size_t n = o->mem.len - o->printed;
    const char *nl = n ? memrchr(start, '\n', n) : NULL;
    if (!nl)
        return;
    bool bol = true;
    size_t k = (size_t)(nl - start) + 1;
    emit(fd, tag, start, k, &bol);
    o->printed += k;
    /* Keep only the line in progress. */
    memmove(o->mem.s, o->mem.s + o->printed, o->mem.len - o->printed);
    o->mem.len -= o->printed;
    o->printed = 0;
}

/* ---- the guardian ------------------------------------------------------- */

/* A process forked at start that holds the read end of a pipe from the
 * runner. Each job writes +pgid into it itself, between clone and exec
 * (mproc_popen_opts.notify; -pgid if the exec fails), and the runner
 * writes -pgid when it has reaped the job; at EOF (the runner and every
 * job not yet exec'd ended, however) the guardian SIGKILLs every group it
 * still knows. At a clean end the runner SIGKILLs the guardian. */
static int guard_fd = -1;
static pid_t guard_pid = -1;

static void guardian(int rfd)
{
    pid_t *live = NULL;
    size_t n = 0, cap = 0;
    static int32_t m[4096];
    for (;;) {
        ssize_t got = read(rfd, m, sizeof m);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        /* Then a nap, so that the messages of many jobs are read at once
         * rather than each waking us (a pipe holds thousands; a writer
         * that finds it full waits for us). At end of file we act at
         * most a nap late. */
        struct timespec nap = {0, 5000000};
        nanosleep(&nap, NULL);
        for (size_t i = 0; i < (size_t)got / sizeof m[0]; i++) {
            if (m[i] > 0) {
                if (n == cap) {
                    cap = cap ? cap * 2 : 64;
                    pid_t *nl = realloc(live, cap * sizeof *live);
                    if (!nl)
                        _exit(1);
                    live = nl;
                }
                live[n++] = m[i];
            } else {
                for (size_t k = 0; k < n; k++)
                    if (live[k] == -m[i]) {
                        live[k] = live[--n];
                        break;
                    }
            }
        }
    }
    for (size_t k = 0; k < n; k++)
        kill(-live[k], SIGKILL);
    _exit(0);
}

static void guardian_start(void)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        die("pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        /* Its own group: a ^C to the runner's group leaves it to clean up.
         * It holds none of the runner's fds but the pipe. */
        setpgid(0, 0);
        signal(SIGINT, SIG_IGN);
        signal(SIGTERM, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        prctl(PR_SET_NAME, "parallel-guard");
        int nul = open("/dev/null", O_RDWR);
        if (nul >= 0) {
            dup2(nul, 0);
            dup2(nul, 1);
            dup2(nul, 2);
        }
        if (dup2(p[0], 3) < 0)
            _exit(1);
        close_range(4, ~0U, 0);
        guardian(3);
    }
    close(p[0]);
    guard_fd = p[1];
    guard_pid = pid;
}

static void guard_tell(int32_t v)
{
    if (guard_fd >= 0 && !write_all(guard_fd, (const char *)&v, sizeof v)) {
        close(guard_fd);
        guard_fd = -1;
    }
}

/* A clean end: every job was reaped, the guardian has nothing left to do.
 * It is SIGKILLed rather than told (it reads only every few ms), and
 * reaped before its pipe is closed: end of file would have it kill the
 * groups it still knew of, whose numbers may be another's by now. */
static void guardian_stop(void)
{
    if (guard_pid > 0) {
        kill(guard_pid, SIGKILL);
        while (waitpid(guard_pid, NULL, 0) < 0 && errno == EINTR) {
        }
        guard_pid = -1;
    }
    if (guard_fd >= 0)
        close(guard_fd);
    guard_fd = -1;
}

/* ---- jobs --------------------------------------------------------------- */

typedef struct job {
    long seq;
    int slot;
    int tries;
    args a;
    cmd c;
    char *tag;
    mproc_popen *p;
    int outfd, errfd, sentinel, infd;
    outbuf out, err;
    double start_real, start_mono, runtime;
    int exitval, sig;
    bool finished, logged;
    bool killing, timed_out;
    int kill_step;
    double kill_next;
    char *in; /* --pipe: the block for stdin (NULL: a range of the file) */
    size_t in_len, in_off, in_cap;
    off_t in_at;       /* --pipe from a regular file: where the block is */
    size_t in_gift;    /* --pipe: bytes from in_off on may be vmspliced */
    int *chain;        /* --pipe from a pipe: the block in these pipes */
    size_t nchain, ci; /* (read ends, in order; ci: the one being fed) */
    mproc_future *fut; /* --mpi: the task running it on a rank */
    char *host;        /* --mpi: the host it ran on (joblog) */
} job;

#define PIN_SCRATCH (1 << 20) /* --pipe from a pipe: its pipes' size */

static char *pin_spare; /* --pipe: a block buffer to reuse */
static size_t pin_spare_cap;

static int slots;
static job **running; /* [slots], by slot - 1 */
static int nrunning;
static long next_seq = 1;
static long total_failed, total_done, total_succeeded, total_started;
static bool stop_starting;
static int halt_status = -1;
static FILE *joblog;
static int sigpipe_r = -1, sigpipe_w = -1;

/* -k: jobs finished but not yet printed, by seq. */
static job **pend;
static long pend_base = 1, pend_cap;
static bool *pend_skip;

/* --resume: the seqs in the joblog, and whether each succeeded. */
static signed char *logged; /* 0 unknown, 1 ok, 2 failed */
static long nlogged;

/* --timeout N%: the runtimes of jobs done. */
static double *runtimes;
static size_t nruntimes, capruntimes;

static job **retry_q;
static size_t nretry, capretry;

static void job_free(job *j)
{
    if (!j)
        return;
    mproc_popen_free(j->p);
    mproc_future_free(j->fut);
    free(j->host);
    cmd_free(&j->c);
    for (size_t i = 0; i < j->a.n; i++)
        free(j->a.v[i].s);
    free(j->a.v);
    free(j->tag);
    for (size_t i = j->ci; i < j->nchain; i++)
        close(j->chain[i]);
    free(j->chain);
    /* --pipe: the buffer is kept for the next block, unless some of it
     * was vmspliced and the job did not take it all: the pipe may still
     * hold its pages (free() leaves them to the pipe). */
    if (j->in && !pin_spare && (j->in_gift == 0 || j->in_off == j->in_len)) {
        pin_spare = j->in;
        pin_spare_cap = j->in_cap;
    } else {
        free(j->in);
    }
    out_free(&j->out);
    out_free(&j->err);
    free(j);
}

static bool printable(const job *j)
{
    return !opt.keep_order || j->seq == pend_base;
}

/* Prints a finished job's output (stdout first, then stderr). */
static void joblog_write(const job *j);

/* Prints a finished job's output (stdout first, then stderr), then its
 * line of the joblog: the log follows the order of the output. */
static void print_job(job *j)
{
    if (opt.out != OUT_UNGROUP) {
        out_flush(&j->out, 1, j->tag);
        out_flush(&j->err, 2, j->tag);
    }
    if (!opt.dry_run && j->logged)
        joblog_write(j);
}

static void pend_put(long seq, job *j, bool skip)
{
    if (seq - pend_base >= pend_cap) {
        long cap = pend_cap ? pend_cap : 64;
        while (seq - pend_base >= cap)
            cap *= 2;
        pend = xrealloc(pend, sizeof(job *) * (size_t)cap);
        pend_skip = xrealloc(pend_skip, sizeof *pend_skip * (size_t)cap);
        memset(pend + pend_cap, 0, sizeof(job *) * (size_t)(cap - pend_cap));
        memset(pend_skip + pend_cap, 0,
               sizeof *pend_skip * (size_t)(cap - pend_cap));
        pend_cap = cap;
    }
    pend[seq - pend_base] = j;
    pend_skip[seq - pend_base] = skip;
}

static job *find_running(long seq)
{
    for (int i = 0; i < slots; i++)
        if (running[i] && running[i]->seq == seq)
            return running[i];
    return NULL;
}

/* -k: prints what can be printed in order and moves the head on. */
static void pend_advance(void)
{
    while (pend_cap > 0 && (pend[0] || pend_skip[0])) {
        if (pend[0]) {
            print_job(pend[0]);
            job_free(pend[0]);
        }
        memmove(pend, pend + 1, sizeof(job *) * (size_t)(pend_cap - 1));
        memmove(pend_skip, pend_skip + 1,
                sizeof *pend_skip * (size_t)(pend_cap - 1));
        pend[pend_cap - 1] = NULL;
        pend_skip[pend_cap - 1] = false;
        pend_base++;
    }
    if (opt.out == OUT_LINE) { /* the new head streams from now on */
        job *h = find_running(pend_base);
        if (h) {
            out_flush_lines(&h->out, 1, h->tag);
            out_flush_lines(&h->err, 2, h->tag);
        }
    }
}

static void joblog_write(const job *j)
{
    if (!joblog)
        return;
    fprintf(joblog, "%ld\t%s\t%.3f\t%10.3f\t%zu\t%zu\t%d\t%d\t%s\n", j->seq,
            j->host ? j->host : ":", j->start_real, j->runtime, j->in_len,
            j->out.total, j->exitval, j->sig, j->c.line);
    fflush(joblog);
}

static void joblog_open(void)
{
    if (!opt.joblog)
        return;
    if (strcmp(opt.joblog, "-") == 0) {
        joblog = stdout;
    } else {
        if (opt.resume || opt.resume_failed) {
            FILE *f = fopen(opt.joblog, "r");
            if (f) {
                char *line = NULL;
                size_t cap = 0;
                while (getline(&line, &cap, f) > 0) {
                    char *end;
                    long seq = strtol(line, &end, 10);
                    if (end == line || seq <= 0)
                        continue;
                    int field = 0;
                    long exitval = 0, sig = 0;
                    for (char *q = end; *q && field < 7; q++)
                        if (*q == '\t') {
                            field++;
                            if (field == 6)
                                exitval = strtol(q + 1, NULL, 10);
                            if (field == 7)
                                sig = strtol(q + 1, NULL, 10);
                        }
                    if (seq >= nlogged) {
                        long n = seq * 2 + 16;
                        logged = xrealloc(logged, (size_t)n);
                        memset(logged + nlogged, 0, (size_t)(n - nlogged));
                        nlogged = n;
                    }
                    logged[seq] = (exitval == 0 && sig == 0) ? 1 : 2;
                }
                free(line);
                fclose(f);
            }
        }
        bool append =
            (opt.resume || opt.resume_failed) && access(opt.joblog, F_OK) == 0;
        joblog = fopen(opt.joblog, append ? "a" : "w");
        if (!joblog)
            die("--joblog %s: %s", opt.joblog, strerror(errno));
        if (append)
            return;
    }
    fputs("Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal"
          "\tCommand\n",
          joblog);
    fflush(joblog);
}

static int free_slot(void)
{
    for (int i = 0; i < slots; i++)
        if (!running[i])
            return i;
    return -1;
}

/* --mpi: hands the job to the pool (below); true when it was. */
static bool mpi_submit(job *j);
/* --pipe: moves more of j's block into its stdin (below). */
static void feed(job *j);

/* The path of the jobs' program, looked up in PATH once rather than at
 * every start (as execvp would: a failed exec per PATH entry before the
 * one that has it). NULL: let the start search (a path with '/', or not
 * found: the start reports it). */
static const char *exec_path(const char *prog)
{
    static char *name, *path;
    if (strchr(prog, '/'))
        return NULL;
    if (name && strcmp(name, prog) == 0)
        return path;
    free(name);
    free(path);
    name = xstrndup(prog, strlen(prog));
    path = NULL;
    const char *dirs = getenv("PATH");
    if (!dirs)
        dirs = "/bin:/usr/bin";
    for (const char *d = dirs;;) {
        const char *end = strchrnul(d, ':');
        char f[PATH_MAX];
        int dl = (int)(end - d);
        /* (an empty entry is the current directory) */
        int n =
            snprintf(f, sizeof f, "%.*s/%s", dl ? dl : 1, dl ? d : ".", prog);
        struct stat st;
        if (n > 0 && (size_t)n < sizeof f && stat(f, &st) == 0 &&
            S_ISREG(st.st_mode) && access(f, X_OK) == 0) {
            path = xstrndup(f, (size_t)n);
            break;
        }
        if (!*end)
            break;
        d = end + 1;
    }
    return path;
}

/* /dev/null, opened once for every job's stdin (-1: each start opens
 * it). */
static int devnull_fd(void)
{
    static int fd = -2;
    if (fd == -2)
        fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd;
}

static bool job_start(job *j, int idx)
{
    j->slot = idx + 1;
    if (j->c.line == NULL)
        build_cmd(&j->c, &j->a, j->seq, j->slot);
    const char *line = j->c.line ? j->c.line : "";
    size_t len = strlen(line);
    if (len > MAX_ARG_LEN && opt.shell)
        die("command line too long (%zu > %d bytes) at job %ld", len,
            MAX_ARG_LEN, j->seq);
    if (opt.dry_run) {
        out_add(&j->out, line, len);
        out_add(&j->out, "\n", 1);
        j->finished = true;
        return true;
    }
    if (mpi_submit(j))
        return true;
    mproc_popen_opts o = {0};
    o.in.kind = opt.pipe ? MPROC_STDIO_PIPE : MPROC_STDIO_DEVNULL;
    if (!opt.pipe && devnull_fd() >= 0) {
        o.in.kind = MPROC_STDIO_FD;
        o.in.fd = devnull_fd();
    }
    if (opt.out != OUT_UNGROUP) {
        o.out.kind = MPROC_STDIO_PIPE;
        o.err.kind = MPROC_STDIO_PIPE;
    }
    o.set_pgid = true;
    o.pgid = 0;
    o.kill_on_parent_death = true;
    /* The job itself tells the guardian its group, before exec: whatever
     * it starts, however soon, is known to the guardian should the runner
     * die (a failed exec withdraws it). */
    o.notify = guard_fd >= 0;
    o.notify_fd = guard_fd;
    const char *const *argv =
        opt.shell ? MPROC_SHELL(j->c.line) : (const char *const *)j->c.argv;
    if (!opt.shell && argv && argv[0])
        o.executable = exec_path(argv[0]);
    const char *step = "";
    j->start_real = now_real();
    j->start_mono = now_mono();
    int r = mproc_popen_new(&j->p, argv, &o, &step);
    if (r == -ENOENT && !opt.shell) /* maybe a function or alias: ask sh */
        r = mproc_popen_new(&j->p, MPROC_SHELL(j->c.line), &o, &step);
    if (r < 0) {
        /* The job could not start (not found, too long...): it failed
         * with 127 (or 126) as a shell would say, and the run goes on. */
        msg("%s: %s%s%s", opt.shell ? "/bin/sh" : j->c.argv[0],
            mproc_strerror(r), *step ? " at " : "", step);
        j->exitval = (r == -ENOENT) ? 127 : 126;
        j->finished = true;
        return true;
    }
    j->outfd = mproc_popen_stdout(j->p);
    j->errfd = mproc_popen_stderr(j->p);
    j->infd = mproc_popen_stdin(j->p);
    j->sentinel = mproc_popen_sentinel(j->p);
    /* (F_SETFL sets only the status flags: O_NONBLOCK alone is right) */
    int fds[3] = {j->outfd, j->errfd, j->infd};
    for (int i = 0; i < 3; i++)
        if (fds[i] >= 0)
            fcntl(fds[i], F_SETFL, O_NONBLOCK);
    if (j->infd >= 0) {
        if (j->chain)
            fcntl(j->infd, F_SETPIPE_SZ, PIN_SCRATCH);
        int cap = j->in ? fcntl(j->infd, F_GETPIPE_SZ) : 0;
        size_t keep = cap > 0 ? (size_t)cap : 65536;
        j->in_gift = j->in && j->in_len > keep ? j->in_len - keep : 0;
        feed(j); /* as much as the pipe takes now */
    }
    total_started++;
    return true;
}

/* Reads what is in fd now into o; returns false at end of file. */
static bool drain(job *j, int *fd, outbuf *o, int to)
{
    char buf[65536];
    for (;;) {
        ssize_t got = read(*fd, buf, sizeof buf);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return true; /* EAGAIN */
        if (got == 0) {
            *fd = -1; /* closed with the object */
            return false;
        }
        out_add(o, buf, (size_t)got);
        if (opt.out == OUT_LINE && printable(j))
            out_flush_lines(o, to, j->tag);
        if ((size_t)got < sizeof buf)
            return true;
    }
}

static double median_runtime(void)
{
    if (nruntimes < 3)
        return -1;
    return runtimes[nruntimes / 2];
}

static void note_runtime(double t)
{
    if (nruntimes == capruntimes) {
        capruntimes = capruntimes ? capruntimes * 2 : 64;
        runtimes = xrealloc(runtimes, sizeof *runtimes * capruntimes);
    }
    size_t i = nruntimes++;
    while (i > 0 && runtimes[i - 1] > t) {
        runtimes[i] = runtimes[i - 1];
        i--;
    }
    runtimes[i] = t;
}

static void begin_kill(job *j)
{
    if (j->killing || !j->p)
        return;
    j->killing = true;
    j->kill_step = 0;
    j->kill_next = 0;
}

/* Sends the next signals of --term-seq that are due; returns the time of
 * the next step (or 0 when none). */
static double kill_steps(job *j, double t)
{
    while (j->killing && j->kill_step < opt.nterm && t >= j->kill_next) {
        term_step s = opt.term[j->kill_step++];
        mproc_popen_kill_group(j->p, s.sig);
        j->kill_next = t + s.ms / 1000.0;
    }
    if (j->killing && j->kill_step >= opt.nterm && t >= j->kill_next) {
        mproc_popen_kill_group(j->p, SIGKILL);
        j->kill_next = t + 1.0;
    }
    return j->killing ? j->kill_next : 0;
}

/* --mpi: the pool on the ranks (NULL without --mpi). */
static mproc_pool *mpi_pool;

static void kill_all(void)
{
    /* Under --mpi the jobs are out of reach but through the pool: ending
     * it kills the workers running them, and the jobs' groups with them
     * (the workers' guardians), wherever they are. */
    if (mpi_pool)
        mproc_pool_terminate(mpi_pool);
    for (int i = 0; i < slots; i++)
        if (running[i])
            begin_kill(running[i]);
}

static void check_halt(const job *j, bool failed)
{
    if (opt.halt == HALT_NEVER)
        return;
    long limit = -1;
    const char *what = NULL;
    if (failed && opt.halt_on == HALT_FAIL)
        limit = total_failed, what = "failed";
    else if (!failed && opt.halt_on == HALT_SUCCESS)
        limit = total_succeeded, what = "succeeded";
    else if (opt.halt_on == HALT_DONE)
        limit = total_done, what = "finished";
    if (limit < 0)
        return;
    msg("This job %s:\n%s", what, j->c.line);
    double need = opt.halt_n;
    if (opt.halt_pct)
        need = ceil((double)gen.total * opt.halt_n / 100.0);
    if ((double)limit < need || halt_status >= 0)
        return;
    if (opt.halt_on == HALT_SUCCESS) {
        halt_status = 0;
    } else if (need == 1) {
        halt_status = j->exitval ? j->exitval : j->sig ? j->sig + 128 : 0;
    } else if (opt.halt_pct) {
        halt_status = (int)ceil((double)total_failed * 100.0 /
                                (double)(gen.total ? gen.total : 1));
    } else {
        halt_status = total_failed > 101 ? 101 : (int)total_failed;
    }
    stop_starting = true;
    if (opt.halt == HALT_NOW)
        kill_all();
    else if (nrunning > 0)
        msg("Starting no more jobs. Waiting for %d jobs to finish.", nrunning);
}

static void queue_retry(job *j)
{
    if (nretry == capretry) {
        capretry = capretry ? capretry * 2 : 8;
        retry_q = xrealloc(retry_q, sizeof(job *) * capretry);
    }
    retry_q[nretry++] = j;
}

/* Reaps a started job's process: exit status, signal, runtime. */
static void job_reap(job *j)
{
    if (j->p) {
        int rc = 0;
        mproc_popen_wait(j->p, -1, &rc);
        guard_tell(-(int32_t)mproc_popen_pid(j->p));
        j->runtime = now_mono() - j->start_mono;
        if (rc >= 0) {
            j->exitval = rc;
        } else {
            j->sig = -rc;
            j->exitval = 0;
        }
        if (j->timed_out)
            j->exitval = -1;
        mproc_popen_free(j->p);
        j->p = NULL;
    }
}

/* The job ended (or never started): log, retry, print, count. */
static void job_done(job *j)
{
    int idx = j->slot - 1;
    job_reap(j);
    running[idx] = NULL;
    nrunning--;
    bool failed = j->exitval != 0 || j->sig != 0;
    if (failed && j->tries + 1 < opt.retries && !stop_starting) {
        j->tries++;
        out_free(&j->out);
        out_free(&j->err);
        j->exitval = j->sig = 0;
        j->timed_out = j->killing = false;
        j->in_off = 0;
        j->finished = false;
        queue_retry(j);
        return;
    }
    if (j->timed_out) {
        msg("Warning: This job was killed because it timed out:");
        msg("Warning: %s", j->c.line);
    }
    if (!opt.dry_run) {
        j->logged = true;
        note_runtime(j->runtime);
        total_done++;
        if (failed)
            total_failed++;
        else
            total_succeeded++;
        check_halt(j, failed);
    }
    if (opt.keep_order) {
        pend_put(j->seq, j, false);
        pend_advance();
    } else {
        print_job(j);
        job_free(j);
    }
}

/* The next job to run from the inputs, or NULL when there is none. */
static str *cur_cols;

static job *next_job(void)
{
    for (;;) {
        job *j = xrealloc(NULL, sizeof *j);
        *j = (job){.out = {.spill = -1}, .err = {.spill = -1}};
        j->outfd = j->errfd = j->infd = j->sentinel = -1;
        long per = opt.max_args > 0 ? opt.max_args : 1;
        if ((opt.multi_x || opt.multi_m) && opt.max_args <= 0) {
            /* Spread over the job slots, as GNU parallel does. */
            size_t share = (gen.total + (size_t)slots - 1) / (size_t)slots;
            per = (long)(share ? share : 1);
        }
        size_t nc = (size_t)ncols();
        size_t est = 0;
        while ((long)j->a.nrec < per) {
            if (!gen_next(cur_cols))
                break;
            j->a.v = xrealloc(j->a.v, sizeof(str) * (j->a.n + nc));
            for (size_t k = 0; k < nc; k++) {
                j->a.v[j->a.n++] = (str){xstrndup(cur_cols[k].s, cur_cols[k].n),
                                         cur_cols[k].n};
                est += cur_cols[k].n * 2 + 8;
            }
            j->a.nrec++;
            if ((opt.multi_x || opt.multi_m) && est > MAX_ARG_LEN / 2)
                break;
        }
        if (j->a.nrec == 0) {
            free(j->a.v);
            free(j);
            return NULL;
        }
        j->seq = next_seq++;
        if (opt.tag) {
            sbuf t = {0};
            for (size_t k = 0; k < j->a.n; k++) {
                if (k)
                    sb_addc(&t, ' ');
                sb_add(&t, j->a.v[k].s, j->a.v[k].n);
            }
            j->tag = sb_take(&t);
        }
        if (j->seq < nlogged && logged[j->seq] &&
            (opt.resume || logged[j->seq] == 1)) {
            /* --resume: done before; --resume-failed: only the failed
             * ones run again. */
            if (opt.keep_order) {
                pend_put(j->seq, NULL, true);
                pend_advance();
            }
            job_free(j);
            continue;
        }
        return j;
    }
}

/* ---- --pipe ------------------------------------------------------------ */

/* Stdin cut into blocks. From a regular file, a block is a range of it:
 * its end is found by reading a little around the --block mark (pread),
 * and its bytes go to the job with splice() straight from the page cache,
 * at the job's own offset, so blocks are fed in parallel and the runner
 * never copies them. From anything else (a pipe, a terminal), stdin is
 * read in the loop beside the jobs, whenever poll() says it has data,
 * into the block being gathered; a cut block is handed to its job as it
 * is, and mostly vmspliced into the job's pipe (pages lent, not copied).
 *
 * From a pipe (the "chained" path), a block is not read at all but for
 * its last PIN_TAIL bytes: the bulk is spliced from stdin into scratch
 * pipes of the runner's (a chain; pipe to pipe moves pages, copies
 * none), the tail is read to find the last delimiter in it, the bytes up
 * to it are written behind the bulk, and the job is fed from the chain
 * with splice() again. What follows the cut starts the next block's
 * chain. A block with no delimiter in its tail (a record longer than the
 * tail), a producer whose small writes would need too many scratch pipes,
 * a pipe that cannot be made, and --retries (a retried job needs its
 * block again) take the copying path: the chain is read back into the
 * buffer and the block is cut as above, with the same boundaries.
 */
static struct {
    char *buf; /* the block being gathered (not a file); chained: its tail */
    size_t len, cap;
    size_t scanned; /* no delimiter in buf[block, scanned) */
    bool eof;
    bool file;       /* stdin is a regular file */
    off_t at;        /* file: where the next block starts */
    bool zc;         /* stdin is a pipe the chained path may take */
    bool chained;    /* the block being gathered is in the chain + buf */
    int (*chain)[2]; /* scratch pipes (read, write ends), in order */
    size_t nchain, capchain;
    size_t clen; /* bytes in the chain */
} pin;

#define PIN_WINDOW    ((size_t)64 << 10) /* file: bytes read to find a cut */
#define PIN_TAIL      ((size_t)16 << 10) /* chained: bytes read to find a cut */
#define PIN_CHAIN_MAX 64                 /* chained: scratch pipes per block */

static void pipe_init(void)
{
    struct stat st;
    off_t at = lseek(0, 0, SEEK_CUR);
    bool ok = fstat(0, &st) == 0;
    pin.file = ok && S_ISREG(st.st_mode) && at >= 0;
    pin.at = at;
    pin.zc = ok && S_ISFIFO(st.st_mode) && opt.retries <= 1 &&
             opt.block >= 4 * PIN_TAIL;
    pin.chained = pin.zc;
    /* Fewer, larger moves (and fewer wake-ups of the producer too). */
    if (pin.zc)
        fcntl(0, F_SETPIPE_SZ, PIN_SCRATCH);
}

/* chained: a new scratch pipe at the chain's end; false when none can be
 * made (or the chain is at its longest). */
static bool chain_add(void)
{
    int p[2];
    if (pin.nchain == PIN_CHAIN_MAX || pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
        return false;
    fcntl(p[1], F_SETPIPE_SZ, PIN_SCRATCH); /* a smaller one does too */
    if (pin.nchain == pin.capchain) {
        pin.capchain = pin.capchain ? pin.capchain * 2 : 8;
        pin.chain = xrealloc(pin.chain, sizeof *pin.chain * pin.capchain);
    }
    pin.chain[pin.nchain][0] = p[0];
    pin.chain[pin.nchain++][1] = p[1];
    return true;
}

/* chained: moves the first n bytes of buf to the chain's end (a copy of
 * at most a tail); false when the chain cannot take them all (what it
 * took is off buf: chain then buf is still the stream, in order). */
static bool chain_write(size_t n)
{
    size_t done = 0;
    bool ok = true;
    while (done < n) {
        ssize_t w = pin.nchain ? write(pin.chain[pin.nchain - 1][1],
                                       pin.buf + done, n - done)
                               : -1;
        if (w > 0) {
            done += (size_t)w;
        } else if (w < 0 && pin.nchain && errno == EINTR) {
            continue;
        } else if (!chain_add()) { /* full (EAGAIN), or no chain yet */
            ok = false;
            break;
        }
    }
    memmove(pin.buf, pin.buf + done, pin.len - done);
    pin.len -= done;
    pin.clen += done;
    return ok;
}

/* chained: the chain's pipes closed, the bytes in them dropped. */
static void chain_drop(void)
{
    for (size_t i = 0; i < pin.nchain; i++) {
        close(pin.chain[i][0]);
        close(pin.chain[i][1]);
    }
    pin.nchain = 0;
    pin.clen = 0;
}

/* chained: the block back on the copying path, its bytes (the chain's,
 * then the tail) read into buf. stays: may a later block be chained? */
static void chain_unchain(bool stays)
{
    size_t total = pin.clen + pin.len;
    size_t cap = (total > opt.block ? total : opt.block) + 65536;
    char *nb = xrealloc(NULL, cap);
    size_t at = 0;
    for (size_t i = 0; i < pin.nchain; i++) {
        close(pin.chain[i][1]); /* an empty pipe reads as its end */
        for (;;) {
            ssize_t r = read(pin.chain[i][0], nb + at, pin.clen - at);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            at += (size_t)r;
        }
        close(pin.chain[i][0]);
    }
    if (at != pin.clen)
        die("--pipe: lost %zu bytes in a scratch pipe", pin.clen - at);
    if (pin.len)
        memcpy(nb + at, pin.buf, pin.len);
    free(pin.buf);
    pin.buf = nb;
    pin.cap = cap;
    pin.len = total;
    pin.scanned = 0;
    pin.nchain = 0;
    pin.clen = 0;
    pin.chained = false;
    pin.zc = pin.zc && stays;
}

/* file: the stdin bytes at [at, at + n) into buf; fewer at its end. */
static size_t pin_pread(char *buf, size_t n, off_t at)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(0, buf + got, n - got, at + (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            die("stdin: %s", strerror(errno));
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return got;
}

/* file: the length of the next block from pin.at (0 at the end). It ends
 * at the last delimiter within --block bytes, else at the first one after
 * them, else at the end of the file; the rest of the file is one block
 * when it fits in one. */
static size_t pin_file_cut(void)
{
    struct stat st;
    if (fstat(0, &st) < 0 || st.st_size <= pin.at)
        return 0;
    size_t rem = (size_t)(st.st_size - pin.at);
    if (rem <= opt.block)
        return rem;
    static char win[PIN_WINDOW];
    /* Backwards from the mark, a window at a time... */
    for (size_t end = opt.block; end > 0;) {
        size_t n = end < sizeof win ? end : sizeof win;
        size_t got = pin_pread(win, n, pin.at + (off_t)(end - n));
        char *d = got == n ? memrchr(win, opt.delim, n) : NULL;
        if (d)
            return end - n + (size_t)(d - win) + 1;
        end -= n;
    }
    /* ...then a record longer than a block: forwards to its end. */
    for (size_t from = opt.block;;) {
        size_t got = pin_pread(win, sizeof win, pin.at + (off_t)from);
        char *d = memchr(win, opt.delim, got);
        if (d)
            return from + (size_t)(d - win) + 1;
        from += got;
        if (got < sizeof win)
            return from;
    }
}

/* Not a file: where the gathered bytes can be cut now (0: not yet). */
static size_t pin_cut(void)
{
    if (pin.chained) {
        size_t total = pin.clen + pin.len;
        if (total == 0 || (total < opt.block && !pin.eof))
            return 0;
        if (total <= opt.block && pin.eof)
            return total;
        /* total == block: the tail was read up to the mark */
        char *d = pin.len ? memrchr(pin.buf, opt.delim, pin.len) : NULL;
        if (d)
            return pin.clen + (size_t)(d - pin.buf) + 1;
        chain_unchain(true); /* no delimiter in the tail: look at it all */
    }
    if (pin.len == 0)
        return 0;
    if (pin.eof && pin.len <= opt.block)
        return pin.len;
    if (pin.len < opt.block)
        return 0;
    char *d = NULL;
    if (pin.scanned < opt.block) {
        d = memrchr(pin.buf, opt.delim, opt.block);
        if (!d)
            pin.scanned = opt.block;
    }
    /* A record longer than a block: its end, looked for in what came in
     * since the last look only (a long record is not scanned again at
     * every read). Up to the end found only, so that the next look (the
     * loop asks before the job is made) finds it again. */
    if (!d && pin.len > pin.scanned) {
        d = memchr(pin.buf + pin.scanned, opt.delim, pin.len - pin.scanned);
        pin.scanned = d ? (size_t)(d - pin.buf) : pin.len;
    }
    if (d)
        return (size_t)(d - pin.buf) + 1;
    return pin.eof ? pin.len : 0;
}

/* Is there more stdin to wait for, beside the jobs? */
static bool pin_wants_read(void)
{
    return !pin.file && !pin.eof && pin_cut() == 0;
}

/* Not a file: reads what stdin has now (poll said so) into the block
 * being gathered. A signal that interrupts it ends the input. */
static void pin_read(void)
{
    if (pin.chained && pin.clen + PIN_TAIL < opt.block) {
        /* The bulk: from stdin to the chain's last pipe, unread. */
        ssize_t got = pin.nchain ? splice(0, NULL, pin.chain[pin.nchain - 1][1],
                                          NULL, opt.block - PIN_TAIL - pin.clen,
                                          SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
                                 : -1;
        if (got > 0) {
            pin.clen += (size_t)got;
            return;
        }
        if (got == 0) {
            pin.eof = true;
            return;
        }
        if (pin.nchain && errno == EINTR && got_signal) {
            chain_drop(); /* a partial block is dropped */
            pin.len = 0;
            pin.eof = true;
            return;
        }
        if (!pin.nchain || errno == EINTR || errno == EAGAIN) {
            struct pollfd p = {.fd = pin.nchain ? pin.chain[pin.nchain - 1][1]
                                                : -1,
                               .events = POLLOUT};
            if (pin.nchain && poll(&p, 1, 0) != 0)
                return; /* stdin had nothing after all */
            if (chain_add())
                return; /* the last pipe was full (or none): the next one */
        }
        chain_unchain(false); /* not spliceable, or no more pipes */
    }
    /* The tail (chained: up to the mark, no further), or the block. */
    size_t want = pin.chained           ? PIN_TAIL
                  : pin.len < opt.block ? opt.block
                                        : pin.len * 2;
    if (want + 1 > pin.cap) {
        pin.cap = want + 65536;
        pin.buf = xrealloc(pin.buf, pin.cap);
    }
    size_t room =
        pin.chained ? opt.block - pin.clen - pin.len : pin.cap - pin.len;
    ssize_t got = read(0, pin.buf + pin.len, room);
    if (got < 0 && errno == EINTR && got_signal) {
        chain_drop(); /* a partial block is dropped */
        pin.len = 0;
        pin.eof = true;
        return;
    }
    if (got < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (got < 0)
        die("stdin: %s", strerror(errno));
    if (got == 0)
        pin.eof = true;
    pin.len += (size_t)got;
}

static job *pipe_job(size_t n)
{
    job *j = xrealloc(NULL, sizeof *j);
    *j = (job){.out = {.spill = -1}, .err = {.spill = -1}};
    j->outfd = j->errfd = j->infd = j->sentinel = -1;
    j->in_len = n;
    j->seq = next_seq++;
    return j;
}

/* The next block as a job, or NULL when none can be cut now (*done: nor
 * ever). Never blocks. */
static job *pipe_next_job(bool *done)
{
    *done = false;
    if (pin.file) {
        size_t n = pin_file_cut();
        if (n == 0) {
            *done = true;
            lseek(0, pin.at, SEEK_SET); /* stdin consumed, as by a read */
            return NULL;
        }
        job *j = pipe_job(n);
        j->in_at = pin.at;
        pin.at += (off_t)n;
        return j;
    }
    size_t n = pin_cut();
    if (n == 0) {
        *done = pin.eof;
        return NULL;
    }
    if (pin.chained) {
        /* The tail up to the cut behind the bulk; the job takes the
         * chain, and the rest of the tail starts the next one. */
        if (!chain_write(n - pin.clen)) {
            chain_unchain(false);
            return pipe_next_job(done);
        }
        job *j = pipe_job(n);
        j->chain = xrealloc(NULL, sizeof(int) * pin.nchain);
        for (size_t i = 0; i < pin.nchain; i++) {
            close(pin.chain[i][1]);
            j->chain[i] = pin.chain[i][0];
        }
        j->nchain = pin.nchain;
        pin.nchain = 0;
        pin.clen = 0;
        if (pin.len && !chain_write(pin.len))
            chain_unchain(false);
        return j;
    }
    /* The job takes the buffer (no copy of the block); the rest, less
     * than a record, goes to a spare one. */
    job *j = pipe_job(n);
    size_t rest = pin.len - n;
    char *nb = pin_spare;
    size_t ncap = pin_spare_cap;
    pin_spare = NULL;
    if (!nb || ncap < rest + 1) {
        free(nb);
        ncap = pin.cap > rest + 1 ? pin.cap : rest + 65536;
        nb = xrealloc(NULL, ncap);
    }
    memcpy(nb, pin.buf + n, rest);
    j->in = pin.buf;
    j->in_cap = pin.cap;
    pin.buf = nb;
    pin.cap = ncap;
    pin.len = rest;
    pin.scanned = 0;
    /* Back on the chained path once what is left is short. */
    if (pin.zc && rest + PIN_TAIL < opt.block) {
        pin.chained = true;
        if (rest && !chain_write(rest))
            chain_unchain(false);
    }
    return j;
}

/* Moves more of a job's block into its stdin pipe (non-blocking), and
 * closes the pipe once all of it is there or the job stopped reading.
 * From a buffer, the bytes up to the pipe's capacity from the end are
 * vmspliced (lent) and the last ones written (copied): once that last
 * write is through, the pipe holds none of the lent pages any more, so
 * the buffer may be reused for a later block. */
static void feed(job *j)
{
    for (;;) {
        size_t left = j->in_len - j->in_off;
        ssize_t w;
        if (left == 0)
            break;
        if (j->chain) {
            w = j->ci < j->nchain
                    ? splice(j->chain[j->ci], NULL, j->infd, NULL, left,
                             SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
                    : -1;
            if (w == 0) { /* this pipe is empty (its write end closed) */
                close(j->chain[j->ci++]);
                continue;
            }
            if (w < 0 && j->ci == j->nchain)
                die("--pipe: a block lost %zu bytes", left);
        } else if (!j->in) {
            loff_t at = j->in_at + (loff_t)j->in_off;
            w = splice(0, &at, j->infd, NULL, left,
                       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (w < 0 && (errno == EINVAL || errno == ENOSYS)) {
                char b[65536]; /* no splice from this file: copy */
                size_t got =
                    pin_pread(b, left < sizeof b ? left : sizeof b, (off_t)at);
                w = got ? write(j->infd, b, got) : -1;
            }
        } else if (j->in_off < j->in_gift) {
            struct iovec v = {j->in + j->in_off, j->in_gift - j->in_off};
            w = vmsplice(j->infd, &v, 1, SPLICE_F_NONBLOCK);
        } else {
            w = write(j->infd, j->in + j->in_off, left);
        }
        if (w > 0) {
            j->in_off += (size_t)w;
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        break; /* EPIPE: the job stopped reading */
    }
    mproc_popen_close_stdin(j->p);
    j->infd = -1;
}

static bool inputs_done;

/* Stdin read as jobs need it: is a whole record there, or can a read be
 * made without waiting? While jobs run, the loop waits for stdin beside
 * them rather than in a read, so their output and ends are handled as
 * they come (a slow producer, tail -f). */
static bool want_input;

static bool input_ready(void)
{
    reader *r = &gen.r;
    if (!gen.lazy || gen.done || r->eof)
        return true;
    if (r->len > r->off && memchr(r->buf + r->off, opt.delim, r->len - r->off))
        return true;
    struct pollfd p = {.fd = r->fd, .events = POLLIN};
    return poll(&p, 1, 0) != 0;
}

static void start_jobs(void)
{
    want_input = false;
    while (!stop_starting && nrunning < slots) {
        job *j = NULL;
        if (nretry > 0) {
            j = retry_q[0];
            memmove(retry_q, retry_q + 1, sizeof(job *) * --nretry);
        } else if (!inputs_done && opt.pipe) {
            bool done;
            j = pipe_next_job(&done);
            inputs_done = done;
            if (!j && !done) { /* the loop reads on beside the jobs */
                want_input = true;
                return;
            }
        } else if (!inputs_done) {
            if (nrunning > 0 && !input_ready()) {
                want_input = true;
                return;
            }
            j = next_job();
            if (!j)
                inputs_done = true;
        }
        if (!j)
            return;
        int idx = free_slot();
        running[idx] = j;
        nrunning++;
        job_start(j, idx);
        if (j->finished)
            job_done(j);
    }
}

static void on_signal(int sig)
{
    got_signal = sig;
    int saved = errno;
    ssize_t w = write(sigpipe_w, "", 1);
    (void)w;
    errno = saved;
}

static void progress(bool final)
{
    static double last;
    if (!(opt.progress || opt.eta || opt.bar) || !isatty(2))
        return;
    double t = now_mono();
    if (!final && t - last < 0.1)
        return;
    last = t;
    char line[256];
    long total = (long)gen.total;
    if (opt.bar && total > 0) {
        int pct = (int)(total_done * 100 / total);
        char bar[41];
        int fill = pct * 40 / 100;
        memset(bar, '#', (size_t)fill);
        memset(bar + fill, ' ', (size_t)(40 - fill));
        bar[40] = '\0';
        snprintf(line, sizeof line, "\r%3d%% [%s] %ld/%ld", pct, bar,
                 total_done, total);
    } else if (opt.eta && total > 0 && total_done > 0) {
        static double t0;
        if (!t0)
            t0 = t;
        double left =
            (t - t0) / (double)total_done * (double)(total - total_done);
        snprintf(line, sizeof line,
                 "\rETA: %.0fs Left: %ld AVG: %.3fs  local:%d/%ld/%ld", left,
                 total - total_done, (t - t0) / (double)total_done, nrunning,
                 total_done, total_failed);
    } else {
        snprintf(line, sizeof line, "\rlocal:%d/%ld/%ld (running/done/failed)",
                 nrunning, total_done, total_failed);
    }
    size_t n = strlen(line);
    if (final)
        line[n++] = '\n';
    ssize_t w = write(2, line, n);
    (void)w;
}

/* The limit of --timeout now (0: none): seconds, or N% of the median
 * runtime of the jobs done so far. */
static double job_limit(void)
{
    if (!opt.timeout_pct)
        return opt.timeout;
    double med = median_runtime();
    return med >= 0 ? med * opt.timeout / 100 : 0;
}

/* --timeout and --term-seq for one running job at time t: starts killing
 * it past limit, sends the steps that are due, and lowers *next to the
 * time something is due next. */
static void job_timers(job *j, double t, double limit, double *next)
{
    if (limit > 0 && !j->killing && j->p) {
        if (t - j->start_mono >= limit) {
            j->timed_out = true;
            begin_kill(j);
        } else if (!*next || j->start_mono + limit < *next) {
            *next = j->start_mono + limit;
        }
    }
    double k = kill_steps(j, t);
    if (k && (!*next || k < *next))
        *next = k;
}

/* --mpi: the read end of the pipe the pool's callbacks write finished jobs
 * to (-1 without --mpi), and what takes them from it (below). */
static int mpi_done_fd = -1;
static void mpi_collect(void);

/* The loop: starts jobs while slots are free, then waits on every running
 * job's sentinel and pipes, its timers, and the signal pipe. */
static void run_loop(void)
{
    size_t cap = (size_t)slots * 4 + 2;
    struct pollfd *pfd = xrealloc(NULL, sizeof *pfd * cap);
    job **who = xrealloc(NULL, sizeof(job *) * cap);
    start_jobs();
    for (;;) {
        /* Stdin waited for beside the jobs: lines as jobs need them, or
         * --pipe's next block (read ahead while every slot is busy). */
        bool reading = opt.pipe
                           ? !inputs_done && !stop_starting && pin_wants_read()
                           : want_input;
        if (nrunning == 0 && !reading) {
            if (nretry == 0 || stop_starting)
                break;
            start_jobs();
            continue;
        }
        size_t n = 0;
        pfd[n] = (struct pollfd){.fd = sigpipe_r, .events = POLLIN};
        who[n++] = NULL;
        double t = now_mono(), next = 0;
        double limit = job_limit();
        for (int i = 0; i < slots; i++) {
            job *j = running[i];
            if (!j)
                continue;
            job_timers(j, t, limit, &next);
            int fds[4] = {j->sentinel, j->outfd, j->errfd, j->infd};
            for (int f = 0; f < 4; f++)
                if (fds[f] >= 0) {
                    pfd[n] = (struct pollfd){
                        .fd = fds[f], .events = f == 3 ? POLLOUT : POLLIN};
                    who[n++] = j;
                }
        }
        size_t in_at = 0;
        if (reading) {
            in_at = n;
            pfd[n] = (struct pollfd){.fd = opt.pipe ? 0 : gen.r.fd,
                                     .events = POLLIN};
            who[n++] = NULL;
        }
        if (mpi_done_fd >= 0) {
            pfd[n] = (struct pollfd){.fd = mpi_done_fd, .events = POLLIN};
            who[n++] = NULL;
        }
        int ms = -1;
        if (next) {
            double d = (next - t) * 1000;
            ms = d < 0 ? 0 : (int)d + 1;
        }
        if (opt.progress || opt.eta || opt.bar)
            ms = ms < 0 || ms > 200 ? 200 : ms;
        int r = poll(pfd, (nfds_t)n, ms);
        if (r < 0 && errno != EINTR)
            die("poll: %s", strerror(errno));
        if (r <= 0) {
            progress(false);
            continue;
        }
        if (pfd[0].revents) {
            char b[64];
            ssize_t got = read(sigpipe_r, b, sizeof b);
            (void)got;
            if (got_signal) {
                stop_starting = true;
                if (halt_status < 0)
                    halt_status = EXIT_ERROR;
                kill_all();
            }
        }
        if (in_at && pfd[in_at].revents && opt.pipe)
            pin_read();
        for (size_t i = 1; i < n; i++) {
            job *j = who[i];
            if (!pfd[i].revents || !j || j->finished)
                continue;
            int to = 1;
            if (pfd[i].fd == j->outfd) {
                drain(j, &j->outfd, &j->out, to);
            } else if (pfd[i].fd == j->errfd) {
                drain(j, &j->errfd, &j->err, 2);
            } else if (pfd[i].fd == j->infd) {
                feed(j);
            } else if (pfd[i].fd == j->sentinel) {
                if (mproc_popen_poll(j->p, NULL) != 1)
                    continue;
                /* Ended: what it wrote is in the pipes; take it. */
                if (j->outfd >= 0)
                    drain(j, &j->outfd, &j->out, 1);
                if (j->errfd >= 0)
                    drain(j, &j->errfd, &j->err, 2);
                j->finished = true;
            }
        }
        mpi_collect();
        for (int i = 0; i < slots; i++)
            if (running[i] && running[i]->finished)
                job_done(running[i]);
        progress(false);
        if (stdout_broken && !stop_starting) {
            stop_starting = true;
            halt_status = EXIT_ERROR;
            kill_all();
        }
        start_jobs();
    }
    progress(true);
    free(pfd);
    free(who);
}

/* ---- --mpi: jobs on the ranks of an MPI job ----------------------------- */

/* Rank 0 hands each job to the MPI pool as one task (run_remote); a worker
 * of a serving rank runs it with the subprocess API as a local job is run
 * (job_start, the same loop over its pipes, --timeout and --term-seq
 * there), and returns what rank 0 needs to print and log it. The pool's
 * callbacks (on its thread) pass finished jobs to the main loop through a
 * pipe. */

/* What a task gets: this, then the command line and its argc words, each
 * ending in NUL. */
typedef struct mpi_req {
    double timeout; /* seconds; 0: none */
    int32_t shell, nterm, argc, pad;
    term_step term[16];
} mpi_req;

/* What it returns: this, then out_len bytes of stdout, err_len of stderr. */
typedef struct mpi_res {
    int32_t exitval, sig, timed_out, pad;
    double start_real, runtime;
    uint64_t out_len, err_len;
    char host[64];
} mpi_res;

static void mpi_out_sink(void *ctx, const char *p, size_t n)
{
    if (n && mproc_out_write(ctx, p, n) < 0)
        die("out of memory");
}

/* The task, in a pool worker on some rank: runs the job, returns its
 * mpi_res and output. */
static int run_remote(const void *in, size_t len, mproc_out *out)
{
    const mpi_req *rq = in;
    if (len < sizeof *rq || rq->nterm < 1 || rq->nterm > 16 || rq->argc < 0 ||
        ((const char *)in)[len - 1] != '\0')
        return mproc_out_fail(out, -EINVAL, "bad job description");
    opt.shell = rq->shell;
    opt.timeout = rq->timeout;
    opt.timeout_pct = false;
    opt.nterm = rq->nterm;
    memcpy(opt.term, rq->term, sizeof opt.term);
    if (guard_fd < 0) /* one per worker: it outlives a SIGKILLed worker */
        guardian_start();
    job j = {.out = {.spill = -1}, .err = {.spill = -1}};
    j.outfd = j.errfd = j.infd = j.sentinel = -1;
    const char *p = (const char *)(rq + 1), *end = (const char *)in + len;
    char **argv = xrealloc(NULL, sizeof(char *) * ((size_t)rq->argc + 1));
    j.c.line = (char *)p;
    for (int i = 0; i < rq->argc; i++) {
        p += strlen(p) + 1;
        if (p >= end) {
            free(argv);
            return mproc_out_fail(out, -EINVAL, "bad job description");
        }
        argv[i] = (char *)p;
    }
    argv[rq->argc] = NULL;
    j.c.argv = argv;
    j.c.argc = rq->argc;
    job_start(&j, 0);
    while (!j.finished) {
        double next = 0, t = now_mono();
        job_timers(&j, t, opt.timeout, &next);
        struct pollfd pf[3] = {{.fd = j.sentinel, .events = POLLIN},
                               {.fd = j.outfd, .events = POLLIN},
                               {.fd = j.errfd, .events = POLLIN}};
        int ms = next ? (int)((next - t) * 1000) + 1 : -1;
        if (poll(pf, 3, ms < -1 ? 0 : ms) <= 0)
            continue;
        if (pf[1].revents)
            drain(&j, &j.outfd, &j.out, 1);
        if (pf[2].revents)
            drain(&j, &j.errfd, &j.err, 2);
        if (pf[0].revents && mproc_popen_poll(j.p, NULL) == 1) {
            if (j.outfd >= 0)
                drain(&j, &j.outfd, &j.out, 1);
            if (j.errfd >= 0)
                drain(&j, &j.errfd, &j.err, 2);
            j.finished = true;
        }
    }
    job_reap(&j);
    free(argv);
    mpi_res r = {.exitval = j.exitval,
                 .sig = j.sig,
                 .timed_out = j.timed_out,
                 .start_real = j.start_real,
                 .runtime = j.runtime,
                 .out_len = j.out.total,
                 .err_len = j.err.total};
    gethostname(r.host, sizeof r.host - 1);
    int rc = mproc_out_write(out, &r, sizeof r);
    out_each(&j.out, mpi_out_sink, out);
    out_each(&j.err, mpi_out_sink, out);
    out_free(&j.out);
    out_free(&j.err);
    return rc;
}

static int mpi_done_w = -1;

/* On the pool's thread: the job's task ended; the main loop takes it. */
static void mpi_done_cb(mproc_future *f, void *arg)
{
    (void)f;
    uintptr_t j = (uintptr_t)arg;
    if (!write_all(mpi_done_w, (const char *)&j, sizeof j))
        die("pipe: %s", strerror(errno));
}

static bool mpi_submit(job *j)
{
    if (!mpi_pool)
        return false;
    sbuf b = {0};
    mpi_req rq = {.timeout = job_limit(),
                  .shell = opt.shell,
                  .nterm = opt.nterm,
                  .argc = opt.shell ? 0 : j->c.argc};
    memcpy(rq.term, opt.term, sizeof rq.term);
    sb_add(&b, &rq, sizeof rq);
    const char *line = j->c.line ? j->c.line : "";
    sb_add(&b, line, strlen(line) + 1);
    for (int i = 0; i < rq.argc; i++)
        sb_add(&b, j->c.argv[i], strlen(j->c.argv[i]) + 1);
    mproc_call_opts co = {.timeout = -1,
                          .callback = mpi_done_cb,
                          .error_callback = mpi_done_cb,
                          .callback_arg = j};
    int r =
        mproc_pool_apply_async(mpi_pool, run_remote, b.s, b.len, &co, &j->fut);
    free(b.s);
    if (r < 0) {
        msg("--mpi: job %ld: %s", j->seq, mproc_strerror(r));
        j->exitval = EXIT_ERROR;
        j->finished = true;
    }
    total_started++;
    return true;
}

/* A finished task: its result becomes the job's status and output. */
static void mpi_result(job *j)
{
    const void *data = NULL;
    size_t len = 0;
    /* Its callback has run; the future is ready right after it (as in
     * CPython, callbacks come first): wait for that, do not poll. */
    int r = mproc_future_get(j->fut, 60, &data, &len);
    const mpi_res *res = data;
    if (r == 0 && len >= sizeof *res &&
        len - sizeof *res == res->out_len + res->err_len) {
        const char *p = (const char *)(res + 1);
        j->exitval = res->exitval;
        j->sig = res->sig;
        j->timed_out = res->timed_out;
        j->start_real = res->start_real;
        j->runtime = res->runtime;
        free(j->host);
        j->host = xstrndup(res->host, strnlen(res->host, sizeof res->host));
        out_add(&j->out, p, res->out_len);
        out_add(&j->err, p + res->out_len, res->err_len);
    } else if (r == MPROC_EPOOL) { /* ended by --halt now or a signal */
        j->sig = SIGKILL;
    } else {
        const mproc_task_error *e = mproc_future_error(j->fut);
        msg("--mpi: job %ld: %s", j->seq,
            e ? e->message : mproc_strerror(r < 0 ? r : -EIO));
        j->exitval = EXIT_ERROR;
    }
    mproc_future_free(j->fut);
    j->fut = NULL;
    j->finished = true;
}

static void mpi_collect(void)
{
    if (mpi_done_fd < 0)
        return;
    uintptr_t js[64];
    ssize_t got;
    while ((got = read(mpi_done_fd, js, sizeof js)) > 0)
        for (size_t i = 0; i < (size_t)got / sizeof js[0]; i++)
            mpi_result((job *)js[i]);
}

/* Under mpirun: every rank makes the pool; ranks other than 0 serve in
 * there and never return. Rank 0 keeps one worker of its own. */
static void mpi_start(char **argv)
{
#ifdef MPROC_PARALLEL_MPI
    if (opt.pipe || opt.out != OUT_GROUP)
        die("--mpi: --pipe, --line-buffer and --ungroup are not supported "
            "(output is grouped)");
    const char *rank = getenv("OMPI_COMM_WORLD_RANK");
    mproc_pool_opts po = {
        .processes = rank && strcmp(rank, "0") != 0 ? parse_jobs(opt.jobs) : 1,
        .backend = mproc_pool_backend_mpi()};
    int r = mproc_pool_new(&mpi_pool, &po);
    if (r < 0)
        die("--mpi: cannot start the MPI pool: %s", mproc_strerror(r));
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        die("pipe: %s", strerror(errno));
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    mpi_done_fd = p[0];
    mpi_done_w = p[1];
    (void)argv;
#elif defined(MPROC_PARALLEL_HAVE_MPI)
    /* This binary does not load MPI (local runs start as fast as
     * before): its sibling built with mproc_mpi does the run. */
    char path[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 32);
    char *slash = n > 0 ? memrchr(path, '/', (size_t)n) : NULL;
    if (!slash)
        die("--mpi: cannot find this program's directory");
    snprintf(slash + 1, sizeof path - (size_t)(slash + 1 - path), "%s",
             "mproc-parallel-mpi");
    execv(path, argv);
    die("--mpi: cannot run %s: %s", path, strerror(errno));
#else
    (void)argv;
    die("--mpi: this mproc-parallel was built without MPI (Open MPI was "
        "not found at build time)");
#endif
}

/* ---- main --------------------------------------------------------------- */

/* Options with a value: "--name value", "--name=value", "-Xvalue". */
static const char *take_value(int argc, char **argv, int *i, const char *name)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) == 0 && a[n] == '=')
        return a + n + 1;
    if (name[1] != '-' && a[n] != '\0')
        return a + n;
    if (*i + 1 >= argc)
        die("%s needs a value", name);
    return argv[++*i];
}

static bool is_opt(const char *a, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return false;
    if (a[n] == '\0' || a[n] == '=')
        return true;
    return name[1] != '-' && strlen(name) == 2 && a[0] == '-' && a[1] != '-';
}

int main(int argc, char **argv)
{
    const char *slash = strrchr(argv[0], '/');
    progname = slash ? slash + 1 : argv[0];
    parse_term_seq("TERM,200,TERM,100,TERM,50,KILL,25");
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || strcmp(a, "-") == 0)
            break;
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (strcmp(a, ":::") == 0 || strcmp(a, "::::") == 0)
            break;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            usage(0);
        else if (strcmp(a, "--version") == 0) {
            printf("mproc-parallel (mproc) %s\n", "0.1.0");
            return 0;
        } else if (is_opt(a, "-j") || is_opt(a, "--jobs") || is_opt(a, "-P"))
            opt.jobs = take_value(argc, argv, &i,
                                  a[1] == '-' ? "--jobs"
                                              : (a[1] == 'P' ? "-P" : "-j"));
        else if (strcmp(a, "-k") == 0 || strcmp(a, "--keep-order") == 0)
            opt.keep_order = true;
        else if (strcmp(a, "--tag") == 0)
            opt.tag = true;
        else if (strcmp(a, "--dry-run") == 0)
            opt.dry_run = true;
        else if (strcmp(a, "-0") == 0 || strcmp(a, "--null") == 0)
            opt.delim = '\0', opt.null = true;
        else if (is_opt(a, "-d") || is_opt(a, "--delimiter"))
            opt.delim = parse_delim(
                take_value(argc, argv, &i, a[1] == '-' ? "--delimiter" : "-d"));
        else if (is_opt(a, "-n") || is_opt(a, "--max-args"))
            opt.max_args = atol(
                take_value(argc, argv, &i, a[1] == '-' ? "--max-args" : "-n"));
        else if (strcmp(a, "-X") == 0)
            opt.multi_x = true;
        else if (strcmp(a, "-m") == 0 || strcmp(a, "--xargs") == 0)
            opt.multi_m = true;
        else if (strcmp(a, "--link") == 0)
            opt.link = true;
        else if (strcmp(a, "--shell") == 0)
            opt.shell = 1;
        else if (strcmp(a, "--no-shell") == 0)
            opt.shell = 0;
        else if (strcmp(a, "--line-buffer") == 0 || strcmp(a, "--lb") == 0)
            opt.out = OUT_LINE;
        else if (strcmp(a, "-u") == 0 || strcmp(a, "--ungroup") == 0)
            opt.out = OUT_UNGROUP;
        else if (strcmp(a, "--group") == 0)
            opt.out = OUT_GROUP;
        else if (is_opt(a, "--joblog"))
            opt.joblog = take_value(argc, argv, &i, "--joblog");
        else if (strcmp(a, "--resume") == 0)
            opt.resume = true;
        else if (strcmp(a, "--resume-failed") == 0)
            opt.resume_failed = true;
        else if (is_opt(a, "--retries"))
            opt.retries = atoi(take_value(argc, argv, &i, "--retries"));
        else if (is_opt(a, "--timeout")) {
            const char *v = take_value(argc, argv, &i, "--timeout");
            char *end;
            opt.timeout = strtod(v, &end);
            opt.timeout_pct = *end == '%';
            if (end == v || opt.timeout <= 0 || (*end && *end != '%'))
                die("--timeout %s: seconds or a percentage", v);
        } else if (is_opt(a, "--term-seq"))
            parse_term_seq(take_value(argc, argv, &i, "--term-seq"));
        else if (is_opt(a, "--halt") || is_opt(a, "--halt-on-error"))
            parse_halt(
                take_value(argc, argv, &i,
                           is_opt(a, "--halt") ? "--halt" : "--halt-on-error"));
        else if (strcmp(a, "--pipe") == 0 || strcmp(a, "--spreadstdin") == 0)
            opt.pipe = true;
        else if (is_opt(a, "--block") || is_opt(a, "--block-size"))
            opt.block = parse_size(
                take_value(argc, argv, &i,
                           is_opt(a, "--block") ? "--block" : "--block-size"));
        else if (strcmp(a, "--progress") == 0)
            opt.progress = true;
        else if (strcmp(a, "--eta") == 0)
            opt.eta = true;
        else if (strcmp(a, "--bar") == 0)
            opt.bar = true;
        else if (strcmp(a, "--mpi") == 0)
            opt.mpi = true;
        else if (strcmp(a, "--will-cite") == 0 || strcmp(a, "--gnu") == 0)
            ; /* accepted for scripts written for GNU parallel */
        else if (is_opt(a, "-a") || is_opt(a, "--arg-file")) {
            opt.arg_files = xrealloc(
                opt.arg_files, sizeof(char *) * (size_t)(opt.narg_files + 1));
            opt.arg_files[opt.narg_files++] =
                take_value(argc, argv, &i, a[1] == '-' ? "--arg-file" : "-a");
        } else {
            msg("unknown option: %s", a);
            usage(EXIT_ERROR);
        }
    }
    if (opt.mpi) /* the serving ranks never return from here */
        mpi_start(argv);
    /* The command: words up to the first ::: / ::::, joined by spaces. */
    sbuf tmpl = {0};
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, ":::") || !strcmp(a, "::::") || !strcmp(a, ":::+") ||
            !strcmp(a, "::::+"))
            break;
        if (tmpl.len)
            sb_addc(&tmpl, ' ');
        sb_adds(&tmpl, a);
    }
    for (int k = 0; k < opt.narg_files; k++)
        add_source(false, opt.arg_files[k]);
    int cur = -1; /* the ::: list being read */
    bool files = false, link_next = false;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, ":::") || !strcmp(a, ":::+")) {
            add_source(a[3] == '+', NULL);
            cur = nsources - 1;
            files = false;
        } else if (!strcmp(a, "::::") || !strcmp(a, "::::+")) {
            files = true;
            link_next = a[4] == '+'; /* the next file is linked */
        } else if (files) {
            add_source(link_next, a);
            link_next = false;
        } else {
            size_t n = strlen(a);
            if (n > MAX_ARG_LEN)
                die("argument of %zu bytes: longer than a command line may "
                    "be (%d)",
                    n, MAX_ARG_LEN);
            if (cur < 0)
                die("%s: an argument outside ::: lists", a);
            source_push(&sources[cur], (str){xstrndup(a, n), n});
        }
    }
    if (nsources == 0 && !opt.pipe)
        add_source(false, "-");
    if (opt.resume_failed)
        opt.resume = false;

    parse_template(tmpl.s ? tmpl.s : "");
    if (opt.pipe && opt.block * 2 > mem_limit)
        mem_limit = opt.block * 2;
    slots = mpi_pool ? mproc_pool_processes(mpi_pool) : parse_jobs(opt.jobs);
    if (slots < 1)
        die("no job slots");
    bool need_total = opt.multi_x || opt.multi_m || opt.halt_pct || opt.bar ||
                      opt.eta || opt.progress;
    if (!opt.pipe)
        gen_init(need_total);
    else
        pipe_init();
    cur_cols = xrealloc(NULL, sizeof(str) * (size_t)(nsources ? nsources : 1));
    memset(cur_cols, 0, sizeof(str) * (size_t)(nsources ? nsources : 1));
    running = calloc((size_t)slots, sizeof(job *));
    if (!running)
        die("out of memory");

    signal(SIGPIPE, SIG_IGN);
    int sp[2];
    if (pipe2(sp, O_CLOEXEC | O_NONBLOCK) < 0)
        die("pipe: %s", strerror(errno));
    sigpipe_r = sp[0];
    sigpipe_w = sp[1];
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);

    if (!opt.dry_run) { /* as GNU parallel: a dry run writes no joblog */
        joblog_open();
        if (!mpi_pool) /* under --mpi each worker has one */
            guardian_start();
    }
    run_loop();
    if (got_signal && halt_status < 0)
        halt_status = EXIT_ERROR;
    guardian_stop();
    mproc_pool_free(mpi_pool); /* the serving ranks end */
    if (joblog && joblog != stdout)
        fclose(joblog);
    if (halt_status >= 0)
        return halt_status;
    return total_failed > 101 ? 101 : (int)total_failed;
}
