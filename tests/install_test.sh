#!/usr/bin/env bash
# Installs the library into a temporary prefix, builds a small program
# against it through pkg-config (and through the CMake package), runs it.
set -euo pipefail
src=$1; bin=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$bin" --prefix "$tmp/prefix" >/dev/null
# The man pages, where the build could make them (lowdown, scdoc).
if command -v lowdown >/dev/null; then
  for m in mproc mproc-queue mproc-values mproc-subprocess mproc-errors; do
    test -s "$tmp/prefix/share/man/man3/$m.3" || { echo "no $m(3)"; exit 1; }
  done
fi
libdir=$(ls -d "$tmp"/prefix/lib*/ | head -1)
export PKG_CONFIG_PATH="$libdir/pkgconfig"
cat > "$tmp/prog.c" <<'C'
#include <mproc.h>
#include <stdio.h>
static int f(const mproc_args *a) { return (int)mproc_args_int(a, 0); }
int main(void)
{
    mproc_process *p;
    mproc_args *a = mproc_args_of("i", 5);
    if (mproc_process_new(&p, f, a) || mproc_process_start(p) ||
        mproc_process_join(p, 10))
        return 1;
    int code = mproc_process_exitcode(p);
    mproc_process_free(p);
    mproc_args_free(a);
    printf("child exited with %d, mproc %s\n", code, mproc_version());
    return code == 5 ? 0 : 1;
}
C
# The library under test may be built with sanitizers or coverage; link the
# same way (the static library's objects need libgcov then).
extra=""
if [ "$(nm -D "$libdir/libmproc.so" | grep -c __asan_init)" != 0 ]; then
  extra="-fsanitize=address,undefined"
fi
if [ "$(nm "$libdir/libmproc.a" 2>/dev/null | grep -c __gcov_init)" != 0 ]; then
  extra="$extra --coverage"
fi
cc $extra "$tmp/prog.c" -o "$tmp/prog" $(pkg-config --cflags --libs mproc) \
   -Wl,-rpath,"$libdir"
"$tmp/prog"
# The static library too (spawn and forkserver included: the takeover at
# main() must work when libmproc is inside the executable).
cat > "$tmp/methods.c" <<'C'
#include <mproc.h>
#include <stdio.h>
static int f(const mproc_args *a) { return (int)mproc_args_int(a, 0); }
int main(void)
{
    for (int m = MPROC_START_FORK; m <= MPROC_START_FORKSERVER; m++) {
        mproc_process *p;
        mproc_args *a = mproc_args_of("i", 10 + m);
        if (mproc_process_new(&p, f, a) ||
            mproc_process_set_start_method(p, (mproc_start_method)m) ||
            mproc_process_start(p) || mproc_process_join(p, 10) ||
            mproc_process_exitcode(p) != 10 + m)
            return 1;
        mproc_process_free(p);
        mproc_args_free(a);
    }
    puts("static: fork, spawn and forkserver ok");
    return 0;
}
C
cc $extra "$tmp/methods.c" -o "$tmp/methods" $(pkg-config --cflags mproc) \
   "$libdir/libmproc.a" -lpthread -ldl -lrt
"$tmp/methods"
# SONAME is versioned.
[ "$(readelf -d "$libdir/libmproc.so" | grep -c 'SONAME.*libmproc.so.0')" = 1 ]
# The CMake package works too.
mkdir -p "$tmp/cm"
cat > "$tmp/cm/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.25)
project(consumer C)
find_package(mproc REQUIRED)
add_executable(prog ../prog.c)
target_link_libraries(prog mproc::mproc)
CM
cmake -S "$tmp/cm" -B "$tmp/cm/b" -DCMAKE_PREFIX_PATH="$tmp/prefix" \
  -DCMAKE_C_FLAGS="$extra" -DCMAKE_EXE_LINKER_FLAGS="$extra -Wl,-rpath,$libdir" >/dev/null
cmake --build "$tmp/cm/b" >/dev/null
"$tmp/cm/b/prog"
echo "install test passed"
