/*
 * obj/reduce.c - reduce values: inert stand-ins for the objects mproc does
 * not model (an exception with its args, a manager's Token, an
 * array.array), a global's module and name with its arguments and state,
 * kept so that they travel through unchanged.
 */
#include "obj/obj_impl.h"

#include <stdlib.h>
#include <string.h>

static char *copy_name(const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s);
    if (n == 0 || n > 255 || strchr(s, '\n') ||
        mproc__utf8_check((const unsigned char *)s, n))
        return NULL;
    return strdup(s);
}

mproc_obj *mproc_obj_reduce(const char *module, const char *name,
                            mproc_obj *args, mproc_obj *state, bool newobj)
{
    mproc_obj *o = NULL;
    char *m = copy_name(module), *nm = copy_name(name);
    if (m && nm && (!args || mproc__type(args) == MPROC_OBJ_TUPLE))
        o = mproc__obj_alloc(MPROC_OBJ_REDUCE, 0);
    if (!o) {
        free(m);
        free(nm);
        mproc_obj_unref(args);
        mproc_obj_unref(state);
        return NULL;
    }
    o->u.red.module = m;
    o->u.red.name = nm;
    o->u.red.args = args;
    o->u.red.state = state;
    o->newobj = newobj;
    return o;
}

static const char *const exception_names[] = {"ArithmeticError",
                                              "AssertionError",
                                              "AttributeError",
                                              "BaseException",
                                              "BlockingIOError",
                                              "BrokenPipeError",
                                              "BufferError",
                                              "BytesWarning",
                                              "ChildProcessError",
                                              "ConnectionAbortedError",
                                              "ConnectionError",
                                              "ConnectionRefusedError",
                                              "ConnectionResetError",
                                              "DeprecationWarning",
                                              "EOFError",
                                              "EnvironmentError",
                                              "Exception",
                                              "FileExistsError",
                                              "FileNotFoundError",
                                              "FloatingPointError",
                                              "FutureWarning",
                                              "GeneratorExit",
                                              "IOError",
                                              "ImportError",
                                              "ImportWarning",
                                              "IndentationError",
                                              "IndexError",
                                              "InterruptedError",
                                              "IsADirectoryError",
                                              "KeyError",
                                              "KeyboardInterrupt",
                                              "LookupError",
                                              "MemoryError",
                                              "ModuleNotFoundError",
                                              "NameError",
                                              "NotADirectoryError",
                                              "NotImplementedError",
                                              "OSError",
                                              "OverflowError",
                                              "PendingDeprecationWarning",
                                              "PermissionError",
                                              "ProcessLookupError",
                                              "RecursionError",
                                              "ReferenceError",
                                              "ResourceWarning",
                                              "RuntimeError",
                                              "RuntimeWarning",
                                              "StopAsyncIteration",
                                              "StopIteration",
                                              "SyntaxError",
                                              "SyntaxWarning",
                                              "SystemError",
                                              "SystemExit",
                                              "TabError",
                                              "TimeoutError",
                                              "TypeError",
                                              "UnboundLocalError",
                                              "UnicodeDecodeError",
                                              "UnicodeEncodeError",
                                              "UnicodeError",
                                              "UnicodeTranslateError",
                                              "UnicodeWarning",
                                              "UserWarning",
                                              "ValueError",
                                              "Warning",
                                              "ZeroDivisionError"};

bool mproc__is_exception_name(const char *name)
{
    size_t lo = 0, hi = sizeof exception_names / sizeof *exception_names;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(name, exception_names[mid]);
        if (c == 0)
            return true;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return false;
}
