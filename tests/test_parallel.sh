#!/usr/bin/env bash
# tests/test_parallel.sh - mproc-parallel against GNU parallel and on its
# own: a conformance table (output, exit status and joblog columns compared
# with GNU parallel's, where it is installed; a visible SKIP otherwise),
# then what a user relies on beyond it: kills, timeouts, hostile input,
# grouped output that never mixes, nothing left in TMPDIR or the process
# table. Usage: test_parallel.sh path/to/mproc-parallel [mpirun lsan.supp]
set -u
P=$1
MPIRUN=${2:-}  # mpirun, where MPI was found at build time
LSAN_MPI=${3:-}
GNU=$(command -v parallel || true)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
W=$(mktemp -d /tmp/test_parallel.XXXXXX)
export TMPDIR=$W/tmp
mkdir -p "$TMPDIR"
MARK=$$$RANDOM # in the commands of jobs that must not survive
fails=0
pass=0
trap 'rm -rf "$W"' EXIT

ok() { pass=$((pass + 1)); }
bad() {
    echo "FAIL: $*" >&2
    fails=$((fails + 1))
}

# Everything but the times of a joblog: Seq, Host, Send, Receive, Exitval,
# Signal, Command.
logcols() { cut -f1,2,5-9 "$1" | sort -n; }

# A row of the table: stdin file, then the arguments of both commands.
# -k rows compare the output as is, the others sorted. A --pipe row
# compares output and status only: where blocks are cut is each one's own.
row() {
    local in=$1
    shift
    local sortit=cat
    case " $* " in *" -k "*) ;; *) sortit="sort" ;; esac
    "$P" --joblog "$W/m.log" "$@" <"$in" >"$W/m.out" 2>"$W/m.err"
    local mrc=$?
    "$GNU" --will-cite --joblog "$W/g.log" "$@" <"$in" >"$W/g.out" \
        2>"$W/g.err"
    local grc=$?
    if [ "$mrc" != "$grc" ]; then
        bad "exit status $mrc, GNU parallel $grc: $*"
    elif ! cmp -s <($sortit "$W/m.out") <($sortit "$W/g.out"); then
        bad "output differs from GNU parallel's: $*"
        diff <($sortit "$W/m.out") <($sortit "$W/g.out") | head -5 >&2
    elif [[ " $* " != *" --pipe "* ]] &&
        ! cmp -s <(logcols "$W/m.log") <(logcols "$W/g.log"); then
        # (--pipe: GNU's block boundaries are its own; the output is what
        # is compared)
        bad "joblog differs from GNU parallel's: $*"
        diff <(logcols "$W/m.log") <(logcols "$W/g.log") | head -5 >&2
    else
        ok
    fi
}

printf 'a\nb c\n\nd.e/f.g\n' >"$W/lines"
printf 'x\0y z\0' >"$W/nul"
printf '1,2,3' >"$W/comma"
printf 'p\nq\n' >"$W/file2"
: >"$W/empty"
E=$W/empty
if [ -n "$GNU" ]; then
    row "$W/lines" -k echo
    row "$W/lines" -k echo "[{}]"
    row "$W/lines" echo {} {.} {/} {//} {/.} {#}
    row "$W/nul" -k -0 echo
    row "$W/comma" -k -d , echo
    row "$E" -k echo ::: a b c
    row "$E" -k echo ::: a b ::: 1 2 3
    row "$E" -k echo {2}-{1} ::: a b ::: 1 2
    row "$E" -k echo ::: a b c :::+ 1 2 3
    row "$E" -k echo ::: a b :::: "$W/file2"
    row "$W/lines" -k echo :::: - ::: 1 2
    row "$E" -k -n 2 echo {1}+{2} {} ::: 1 2 3 4 5
    row "$E" -k -j2 -X echo x{}y ::: 1 2 3 4 5
    row "$E" -k -j2 -m echo ::: 1 2 3 4 5
    row "$E" -k ::: "echo one" "echo two; echo three"
    row "$E" -k --tag echo ::: a b ::: 1 2
    row "$E" -k echo {} ::: "a b" "it's" '$HOME' '*' '' 'x;y'
    row "$E" -k --dry-run echo ::: "a b" "it's" '$x'
    row "$E" 'exit {}' ::: 0 1 2 3
    row "$E" -k 'echo out {}; echo err {} >&2; exit {}' ::: 0 5
    row "$E" 'kill -SEGV $$' ::: 1
    row "$E" -j1 --halt now,fail=1 'exit {}' ::: 0 3 4
    row "$E" -j1 --halt soon,fail=2 'exit {}' ::: 0 3 4 5
    row "$E" -j1 --halt now,success=1 'exit {}' ::: 1 0 4 5
    row "$E" -j1 --halt now,done=2 'exit {}' ::: 1 0 4 5
    row "$E" -j1 --halt soon,fail=50% 'exit {}' ::: 0 1 2 0
    row "$E" -k -j3 sh -c 'echo {}; sleep 0.{}' ::: 3 1 2
    row "$E" -k --retries 3 'test -e {}.x || { touch {}.x; exit 1; }' \
        ::: "$W/r1"
    row "$W/lines" -k --pipe --block 3 cat
    row "$E" -j1 --timeout 0.5 'sleep {}' ::: 0.1 5
    rows=$pass
    echo "conformance: $rows rows against GNU parallel ($GNU)"
else
    echo "SKIP: conformance against GNU parallel (not installed:" \
        "apt-get install parallel)"
fi

# --- on its own ---------------------------------------------------------

expect() { # expect NAME WANT GOT
    if [ "$2" == "$3" ]; then ok; else bad "$1: want [$2] got [$3]"; fi
}

# Exit status: number of failed jobs, capped at 101; 255 on an error.
seq 150 | "$P" -j8 'exit 1' 2>/dev/null
expect "exit status capped" 101 $?
"$P" --no-such-option true 2>/dev/null
expect "bad option" 255 $?

# No shell, shell, and a program that does not exist.
out=$("$P" -k --no-shell echo ::: 'a;b' '$x')
expect "--no-shell passes words as they are" $'a;b\n$x' "$out"
out=$("$P" -k --shell 'echo {}' ::: '$HOME')
expect "--shell quotes arguments" '$HOME' "$out"
"$P" no-such-program-$MARK ::: 1 2>/dev/null
expect "missing program is exit 127, one failed job" 1 $?

# Grouped output never mixes: two jobs writing 3 MB each (past the memory
# limit: spilled to an unlinked file) come out whole.
out=$("$P" -j2 'head -c 3000000 /dev/zero | tr "\0" {}' ::: a b | tr -s ab)
case "$out" in ab | ba) ok ;; *) bad "grouped output mixed: runs $out" ;; esac
expect "nothing left in TMPDIR" "" "$(ls -A "$TMPDIR")"

# --line-buffer: whole lines; --ungroup: everything arrives.
n=$("$P" -j4 --line-buffer 'for i in 1 2 3 4 5; do echo {}{}{}{}; done' \
    ::: a b c d | grep -cvE '^(aaaa|bbbb|cccc|dddd)$')
expect "--line-buffer lines whole" 0 "$n"
n=$("$P" -j4 -u 'echo {}' ::: 1 2 3 4 | wc -l)
expect "--ungroup output" 4 "$n"
out=$("$P" -k --line-buffer --tag 'echo 1; sleep 0.{}; echo 2' ::: 2 1)
expect "--line-buffer -k --tag" $'2\t1\n2\t2\n1\t1\n1\t2' "$out"

# --line-buffer -k: a job that waited (and spilled past 1 MiB) and then
# streams writes each line once.
n=$("$P" --line-buffer -k ::: 'sleep 1' 'seq 300000; sleep 1; seq 300000' |
    wc -l)
expect "--line-buffer -k after a spill" 600000 "$n"
n=$("$P" --line-buffer 'head -c 3000000 /dev/zero | tr "\0" x; echo; : {}' ::: 1 |
    wc -c)
expect "--line-buffer: a 3 MB line" 3000001 "$n"

# Hostile input: NUL bytes refused without -0; a 1 MB line refused with a
# message (no command line can hold it) but fine in --pipe; invalid UTF-8
# passes through byte for byte.
printf 'a\0b\n' | "$P" echo 2>"$W/err" >/dev/null
expect "NUL byte refused" 255 $?
grep -q "NUL byte" "$W/err" || bad "NUL byte: no clear message"
head -c 1048576 /dev/zero | tr '\0' x | "$P" echo 2>"$W/err" >/dev/null
expect "1 MB line refused" 255 $?
grep -q "longer than a command line" "$W/err" || bad "1 MB: no message"
n=$({ head -c 1048576 /dev/zero | tr '\0' x; echo; } |
    "$P" --pipe --block 64k wc -c)
expect "1 MB line through --pipe" 1048577 "$n"
out=$(printf '\xff\xfe\xc3(\n' | "$P" printf %s {} | od -An -tx1 | tr -d ' ')
expect "invalid UTF-8 untouched" "fffec328" "$out"

# --pipe: every byte once, blocks cut at line ends.
seq 100000 >"$W/seq"
n=$("$P" --pipe --block 50k -k cat <"$W/seq" | cmp - "$W/seq" && echo same)
expect "--pipe -k keeps every line in order" same "$n"
n=$("$P" --pipe --block 50k wc -l <"$W/seq" | awk '{s+=$1} END {print s}')
expect "--pipe line count" 100000 "$n"
# From a pipe (read in the loop beside the jobs; with blocks of 64k and
# more spliced through scratch pipes, below) and from a file (spliced
# from the page cache), blocks larger
# than a pipe holds: the same bytes, cut at the same places; jobs that
# stop reading early do not disturb the blocks after theirs.
seq 2000000 >"$W/big"
n=$(cat "$W/big" | "$P" --pipe --block 2M -k cat | cmp - "$W/big" && echo same)
expect "--pipe from a pipe, big blocks" same "$n"
n=$("$P" --pipe --block 2M -k cat <"$W/big" | cmp - "$W/big" && echo same)
expect "--pipe from a file, big blocks" same "$n"
a=$(cat "$W/big" | "$P" --pipe --block 1M -k 'head -c 20; echo' | md5sum)
b=$("$P" --pipe --block 1M -k 'head -c 20; echo' <"$W/big" | md5sum)
c=$(cat "$W/big" | "$P" -j1 --pipe --block 1M -k 'cat | head -c 20; echo' |
    md5sum)
expect "--pipe: jobs reading part of their block (pipe, file)" "$a $a" "$b $c"
{
    head -c 1048576 /dev/zero | tr '\0' x
    echo
    seq 3
} >"$W/long"
n=$("$P" -k --pipe --block 64k wc -c <"$W/long" | tr '\n' ' ')
expect "a 1 MB line from a file: one block" "1048577 6 " "$n"

# --pipe from a pipe, the chained path (blocks of 64k and more: the bulk
# spliced into scratch pipes unread, only a block's last 16k read to find
# its cut): the blocks are the very ones a file gives, byte for byte.
# Lines of every length from 1 byte to 40k cross block ends and tails
# (a tail without a line end takes the copying path for that block), the
# 1 MB line is one block, -0 cuts at NULs; all against the file's cuts.
awk 'BEGIN { srand(7); y = "y"; while (length(y) < 40000) y = y y
    for (i = 0; i < 3000; i++) {
    n = (i % 97 == 0) ? int(rand() * 40000) : int(rand() * 300)
    print i substr(y, 1, n) } }' >"$W/mixed"
cat "$W/long" "$W/big" "$W/long" >>"$W/mixed"
tr '\n' '\0' <"$W/mixed" >"$W/mixed0"
for args in "--block 64k" "--block 100k" "--block 1M" "-j1 --block 64k" \
    "--block 70k -0"; do
    f=$W/mixed
    [[ $args == *-0 ]] && f=$W/mixed0
    want=$("$P" -k --pipe $args md5sum <"$f")
    got=$(cat "$f" | "$P" -k --pipe $args md5sum)
    [ "$(echo "$want" | wc -l)" -gt 10 ] || bad "--pipe $args: few blocks"
    expect "--pipe $args: a pipe's blocks are the file's" "$want" "$got"
done
n=$(cat "$W/mixed" | "$P" --pipe --block 64k -k cat | cmp - "$W/mixed" &&
    echo same)
expect "--pipe from a pipe, chained: every byte once, in order" same "$n"
n=$(cat "$W/long" | "$P" -k --pipe --block 64k wc -c | tr '\n' ' ')
expect "a 1 MB line from a pipe: one block" "1048577 6 " "$n"
# A user past its pipe-memory limit (fs.pipe-user-pages-soft): every
# F_SETPIPE_SZ refused (an LD_PRELOAD library), so pipes stay at 64 KiB
# and the chained path has smaller scratch pipes: the same blocks, every
# byte once.
if [ -n "${MPROC_TEST_NOPIPESZ:-}" ] && [ -f "$MPROC_TEST_NOPIPESZ" ]; then
    nolimit() {
        MPROC_NOPIPESZ_LOG=$W/refused LD_PRELOAD=$MPROC_TEST_NOPIPESZ \
            ASAN_OPTIONS=${ASAN_OPTIONS}:verify_asan_link_order=0 "$@"
    }
    rm -f "$W/refused"
    want=$("$P" -k --pipe --block 100k md5sum <"$W/mixed")
    got=$(cat "$W/mixed" | nolimit "$P" -k --pipe --block 100k md5sum)
    expect "--pipe from a pipe, F_SETPIPE_SZ refused: the file's blocks" \
        "$want" "$got"
    got=$(nolimit "$P" -k --pipe --block 100k md5sum <"$W/mixed")
    expect "--pipe from a file, F_SETPIPE_SZ refused: the same blocks" \
        "$want" "$got"
    n=$(cat "$W/big" | nolimit "$P" --pipe --block 2M -k cat |
        cmp - "$W/big" && echo same)
    expect "--pipe, F_SETPIPE_SZ refused: every byte once, in order" same "$n"
    [ -s "$W/refused" ] && ok || bad "the F_SETPIPE_SZ refusals never ran"
else
    echo "SKIP: F_SETPIPE_SZ refused (no MPROC_TEST_NOPIPESZ library)"
fi
# A producer writing a line at a time (a few bytes per pipe buffer: more
# scratch pipes than a block may have, then the copying path): the same
# blocks.
want=$("$P" -k --pipe --block 100k md5sum <"$W/seq")
got=$(awk '{ print; fflush() }' "$W/seq" | "$P" -k --pipe --block 100k md5sum)
expect "--pipe from a pipe fed a line per write: the file's blocks" \
    "$want" "$got"
# A job that reads half its block (and one that reads none): the rest of
# its block is dropped, the next blocks are whole.
half='if [ $(({#} % 2)) = 0 ]; then head -c 50000 | wc -c; else wc -c; fi'
want=$("$P" -k --pipe --block 100k "$half" <"$W/big" | md5sum)
got=$(cat "$W/big" | "$P" -k --pipe --block 100k "$half" | md5sum)
expect "--pipe from a pipe: jobs reading half their block" "$want" "$got"
got=$(cat "$W/big" | "$P" -j2 -k --pipe --block 100k true | wc -c)
expect "--pipe from a pipe: jobs reading none of it" 0 "$got"
# A job killed mid-block (--timeout; it never reads): its scratch pipes
# are dropped, the blocks after it are whole, the runner does not wait on
# it (the producer is not held back by its full pipe for long).
sizes=$("$P" -k --pipe --block 100k wc -c <"$W/big")
slow='if [ {#} = 3 ]; then sleep 30; else wc -c; fi'
got=$(cat "$W/big" | "$P" -k --timeout 2 --pipe --block 100k "$slow" 2>/dev/null)
expect "--pipe from a pipe: a job killed mid-block fails alone" 1 $?
expect "--pipe from a pipe: the other blocks whole" \
    "$(echo "$sizes" | sed 3d)" "$got"
# --retries with a pipe stdin (the copying path: a retried job gets its
# block again): each block's first try fails after reading it all.
retry="if [ -e $W/r.{#} ]; then wc -c; else touch $W/r.{#}; cat >/dev/null; exit 1; fi"
want=$("$P" -k --pipe --block 100k wc -c <"$W/big" | md5sum)
got=$(cat "$W/big" | "$P" -k --retries 2 --pipe --block 100k "$retry" | md5sum)
expect "--pipe --retries 2 from a pipe: each block again" "$want" "$got"
# The chained path reads (copies) only the blocks' tails: the runner's
# read()s of stdin are a small part of it (strace, where installed).
if command -v strace >/dev/null; then
    cat "$W/big" | ASAN_OPTIONS=detect_leaks=0 strace -o "$W/st" \
        -e trace=read -e signal=none "$P" --pipe --block 1M wc -c >/dev/null
    n=$(awk -F'= ' '/^read\(0,/ { s += $NF } END { print s + 0 }' "$W/st")
    size=$(wc -c <"$W/big")
    [ "$n" -lt $((size / 10)) ] && ok ||
        bad "--pipe from a pipe: the runner read $n of $size bytes"
else
    echo "SKIP: --pipe chained path read count (no strace)"
fi

# --timeout and --term-seq: a job that ignores TERM is KILLed at the end
# of the sequence, in time.
start=$(date +%s%N)
"$P" --joblog "$W/t.log" --timeout 0.3 --term-seq TERM,200,KILL,25 \
    "trap '' TERM; sleep 30; : $MARK" ::: 1 2>/dev/null
rc=$?
ms=$((($(date +%s%N) - start) / 1000000))
expect "timed-out job failed" 1 "$rc"
expect "timed-out job logged -1, KILL" "-1 9" "$(tail -1 "$W/t.log" |
    cut -f7,8 | tr '\t' ' ')"
[ "$ms" -lt 5000 ] && ok || bad "--term-seq took $ms ms"
# --timeout N%: against the median of the jobs done (a wide margin: a
# short job slowed ten times by a loaded machine must not be killed).
"$P" -j1 --timeout 1000% 'sleep {}' ::: 0.2 0.2 0.2 0.2 30 2>/dev/null
expect "--timeout 1000% kills the slow one" 1 $?

# --resume / --resume-failed
"$P" --joblog "$W/r.log" 'exit {}' ::: 0 1 0 2 >/dev/null 2>&1
n=$("$P" --resume --joblog "$W/r.log" 'echo {}' ::: 0 1 0 2 3 | wc -l)
expect "--resume runs only the new job" 1 "$n"
out=$("$P" -k --resume-failed --joblog "$W/r.log" 'echo {}' ::: 0 1 0 2 3)
expect "--resume-failed reruns the failed" $'1\n2' "$out"

# The runner SIGKILLed: every job and its children die with it.
"$P" -j3 "sh -c 'sleep 300 & sleep 300; : $MARK'; : {}" ::: 1 2 3 \
    >/dev/null 2>&1 &
pid=$!
for _ in $(seq 50); do
    [ "$(pgrep -fc "$MARK")" -ge 3 ] && break
    sleep 0.1
done
kill -KILL $pid
wait $pid 2>/dev/null
sleep 0.3
left=$(pgrep -f "sleep 300" -P "$(pgrep -d, -f "$MARK" || echo 1)" | wc -l)
left=$((left + $(pgrep -fc "$MARK")))
expect "no orphans after SIGKILL of the runner" 0 "$left"

# ... at any moment, even the microseconds between a job's exec and the
# runner's next step: jobs whose shell forks at once, the runner stopped
# at a random point of starting them (the jobs run on), then SIGKILLed.
# Every job and every child of one must be gone, every time.
trials=0
for t in $(seq 20); do
    "$P" -j 100 "sh -c 'sleep 1$MARK & sleep 1$MARK'" ::: $(seq 100) \
        >/dev/null 2>&1 &
    pid=$!
    sleep 0.0$((RANDOM % 10))$((RANDOM % 10))
    kill -STOP $pid
    sleep 0.05 # (the jobs started fork their children meanwhile)
    kill -KILL $pid
    wait $pid 2>/dev/null
    for _ in $(seq 100); do # the guardian's kills are not instant
        left=$(pgrep -fc "sleep 1$MARK")
        [ "$left" = 0 ] && break
        sleep 0.05
    done
    if [ "$left" != 0 ]; then
        trials=$((trials + 1))
        for q in $(pgrep -f "sleep 1$MARK"); do kill -KILL "$q"; done
    fi
done
expect "no orphans after SIGKILL at random moments (trials with survivors)" \
    0 "$trials"

# SIGTERM: jobs are stopped with --term-seq, exit 255.
"$P" -j2 "sleep 300; : $MARK {}" ::: 1 2 >/dev/null 2>&1 &
pid=$!
sleep 0.5
kill -TERM $pid
wait $pid
expect "SIGTERM exit status" 255 $?
expect "SIGTERM leaves no job" 0 "$(pgrep -fc "$MARK")"

# Stdin read beside the jobs: the output of a job that ended is printed
# while the runner waits for the next line.
{
    echo a
    sleep 2
    echo b
} | "$P" -j2 echo | while read -r line; do
    echo "$line $(date +%s%N)"
done >"$W/slow"
first=$(head -1 "$W/slow" | cut -d' ' -f2)
last=$(tail -1 "$W/slow" | cut -d' ' -f2)
gap=$(((last - first) / 1000000))
[ "$gap" -ge 1000 ] && ok || bad "output waited for the next input line ($gap ms)"

# --pipe reads stdin beside the jobs too: a job that ended is printed, and
# one past --timeout is killed and printed, while the producer is silent.
# The producer waits to see that output before it writes the rest ("late"
# if it gave up after 10 s: the runner was stuck reading stdin).
for job in cat "cat; sleep 60; : $MARK"; do
    rm -f "$W/seen"
    {
        echo a
        said=late
        for _ in $(seq 100); do
            [ -e "$W/seen" ] && said=b && break
            sleep 0.1
        done
        echo "$said"
    } | "$P" --pipe --block 1 -j2 --timeout 2 "$job" 2>/dev/null |
        while read -r line; do
            [ "$line" = a ] && touch "$W/seen"
            echo "$line"
        done >"$W/pout"
    expect "--pipe: output while stdin is silent ($job)" "a b" \
        "$(tr '\n' ' ' <"$W/pout" | sed 's/ $//')"
done

# SIGTERM while the runner waits for input (nothing running): it stops.
mkfifo "$W/fifo"
exec 4<>"$W/fifo" # a writer that never writes
for mode in "" --pipe; do
    "$P" $mode echo <"$W/fifo" >/dev/null 2>&1 4>&- &
    pid=$!
    sleep 0.5
    kill -TERM $pid
    start=$(date +%s%N)
    # (without the fix the runner reads on: stop it after 3 s)
    for _ in $(seq 30); do
        kill -0 $pid 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL $pid 2>/dev/null
    wait $pid
    rc=$?
    ms=$((($(date +%s%N) - start) / 1000000))
    expect "SIGTERM while reading stdin $mode" "255 fast" \
        "$rc $([ $ms -lt 2000 ] && echo fast || echo "$ms ms")"
done
exec 4>&-

# -j forms.
for j in 1 2 +1 -1 50% 0; do
    n=$("$P" -j "$j" echo ::: 1 2 3 | wc -l)
    expect "-j $j" 3 "$n"
done
n=$("$P" -j3 'echo {%}' ::: 1 2 3 4 5 6 | sort -u | wc -l)
[ "$n" -le 3 ] && ok || bad "{%} beyond -j: $n"

# --mpi: the same jobs on the ranks of an MPI job (mpirun -np 3: rank 0
# runs, ranks 1 and 2 serve) give the local run's output, exit status and
# joblog, with the Host column naming the host each job ran on.
if [ -n "$MPIRUN" ]; then
    mpi() { # mpi ARGS...: mproc-parallel --mpi under mpirun
        OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
            OMPI_MCA_btl_vader_single_copy_mechanism=none \
            LSAN_OPTIONS=fast_unwind_on_malloc=0:suppressions=$LSAN_MPI \
            timeout 60 "$MPIRUN" --oversubscribe -np 3 "$P" --mpi "$@"
    }
    # (mpirun adds its own lines to stderr: only the jobs' are compared)
    jobs_err() { grep -E '^(err|mproc-parallel:)' "$1"; }
    same_run() { # same_run NAME SORT ARGS...: --mpi against local
        local name=$1 sortit=$2
        shift 2
        mpi --joblog "$W/mm.log" "$@" >"$W/mm.out" 2>"$W/mm.err"
        local mrc=$?
        "$P" --joblog "$W/ml.log" "$@" >"$W/ml.out" 2>"$W/ml.err"
        local lrc=$?
        expect "--mpi $name: exit status" "$lrc" "$mrc"
        expect "--mpi $name: stdout" "$($sortit "$W/ml.out")" \
            "$($sortit "$W/mm.out")"
        expect "--mpi $name: stderr" "$(jobs_err "$W/ml.err" | $sortit)" \
            "$(jobs_err "$W/mm.err" | $sortit)"
        expect "--mpi $name: joblog" "$(cut -f1,5-9 "$W/ml.log" | sort -n)" \
            "$(cut -f1,5-9 "$W/mm.log" | sort -n)"
        expect "--mpi $name: Host column" "Host $(hostname)" \
            "$(cut -f2 "$W/mm.log" | sort -u | tr '\n' ' ' | sed 's/ $//')"
    }
    same_run "-k, failing jobs" cat -k 'echo {}; echo err{} >&2; exit {}' \
        ::: 0 1 2 3 0
    same_run "--tag" sort --tag echo ::: a b c ::: 1 2
    # A job that kills itself with SIGSEGV fails alone.
    same_run "SIGSEGV" cat -k 'test {} = 2 && kill -SEGV $$; echo {}' \
        ::: 1 2 3
    expect "--mpi SIGSEGV: logged signals" "0 11 0" \
        "$(tail -n +2 "$W/mm.log" | sort -n | cut -f8 | paste -sd' ')"
    # --halt now: the jobs still running on the ranks are killed, with
    # their children; the status is the failed job's.
    mpi -j1 --halt now,fail=1 ::: 'sleep 1; exit 3' \
        "sh -c 'sleep 300 & sleep 300; : $MARK'" \
        "sh -c 'sleep 301 & sleep 301; : $MARK'" >/dev/null 2>&1
    expect "--mpi --halt now: status" 3 $?
    sleep 0.3
    expect "--mpi --halt now leaves no job" 0 "$(pgrep -fc "$MARK")"
else
    echo "SKIP: --mpi (built without MPI: no mpirun, no mproc-parallel-mpi)"
fi
# Output modes --mpi does not have are refused, with a message.
"$P" --mpi --pipe cat </dev/null 2>"$W/err"
expect "--mpi --pipe refused" 255 $?
grep -q -- "--mpi" "$W/err" || bad "--mpi --pipe: no clear message"

# --help fits a screen.
n=$("$P" --help | wc -l)
[ "$n" -le 24 ] && ok || bad "--help is $n lines"

expect "nothing left in TMPDIR at the end" "" "$(ls -A "$TMPDIR")"
echo "test_parallel: $pass passed, $fails failed"
[ "$fails" -eq 0 ]
