"""cffi build script for engine/native: compiled at install time (setup.py cffi_modules)."""
from cffi import FFI

ffibuilder = FFI()
ffibuilder.cdef(
    """
    int unshare(int flags);
    int setns(int fd, int nstype);
    """
)
ffibuilder.set_source(
    "engine.native._native",
    """
    #define _GNU_SOURCE
    #include <sched.h>
    """,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
