"""cffi build script: the shim in out-of-line API mode, as ``arena._native``."""
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).parent

ffibuilder = FFI()
# cdef cannot take the preprocessor lines; keep the declarations only.
ffibuilder.cdef(
    "\n".join(
        line
        for line in (HERE / "shim.h").read_text().splitlines()
        if not line.startswith("#include")
    )
)
ffibuilder.set_source(
    "arena._native",
    (HERE / "shim.c").read_text(),
    include_dirs=[str(HERE)],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
