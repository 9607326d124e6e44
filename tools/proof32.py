"""Print the 32-bit proof line; exit 1 unless this Python is a 32-bit program.

Run first by tools/i386.sh (chroot) and by the i386 image, at build time and
before every command. ``platform.machine()`` says ``i686`` under ``linux32``.
"""
import platform
import struct
import sys

bits = struct.calcsize("P") * 8
print("32-bit proof: pointer bits =", bits, platform.machine(), flush=True)
sys.exit(0 if bits == 32 else 1)
