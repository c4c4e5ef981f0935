#!/usr/bin/env python3
"""Hostile images against the streaming restore (issue 13): a slot hashes each
write as it arrives, and the decode at close then reads only the records'
fixed parts, never the page data again (docs/performance.md, "Streaming
restore"). Each edit here is one the streamed path checks differently from a
decode of the whole spool; each is written into a slot by a real unprivileged
user `s4pr1` (made in setup, removed after) and must be refused at close()
with the usual message, leaving no task. A good image written in odd pieces
restores, and the daemon's trace shows the hashed decode was used.

usage: stream_attacks_test.py BUILD_DIR  (any unittest args after)
"""
import ctypes
import os
import signal
import struct
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import restore_attacks_test as ra  # noqa: E402
from restore_attacks_test import rt  # noqa: E402

setUpModule, tearDownModule = ra.attacks_as("s4pr1")

XXH = ctypes.CDLL("libxxhash.so.0")
XXH.XXH3_64bits.restype = ctypes.c_uint64
XXH.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
TRAILER_TYPE, TRAILER_RECORD = 0xFFFFFFFF, 16 + 24


def records(b):
    """[(offset of the record header, type, payload length)] of an image."""
    out, off = [], struct.unpack_from("<I", b, 12)[0]  # header_size
    while off < len(b):
        t, _, n = struct.unpack_from("<IIQ", b, off)
        out.append((off, t, n))
        off += 16 + n
    return out


def fix_checksum(b):
    """The trailer's checksum made right for the bytes before it."""
    b[-16:-8] = struct.pack("<Q", XXH.XXH3_64bits(bytes(b[:-TRAILER_RECORD]),
                                                  len(b) - TRAILER_RECORD))
    return b


class StreamAttacks(ra.SlotAttackCase):
    @classmethod
    def setUpClass(cls):
        os.environ["CRFS_RESTORE_TRACE"] = "1"  # the daemon logs which decode ran
        try:
            super().setUpClass()
        finally:
            del os.environ["CRFS_RESTORE_TRACE"]
        with open(f"{cls.d}/snap.img", "rb") as f:
            cls.snap = f.read()
        # The largest pages record (type 6): its data is the bulk the
        # streamed decode never reads; `mid` a byte in the middle of it.
        off, _, n = max((r for r in records(cls.snap) if r[1] == 6), key=lambda r: r[2])
        cls.pages, cls.mid = off, off + 32 + (n - 16) // 2

    def refused(self, data, why):
        """Close fails with EBADMSG and the slot's status says why."""
        status = self.assert_refused(self.write(data), "Bad message")
        self.assertIn(why, status)

    def write(self, data):
        type(self).n += 1
        out = f"{self.d}/x{self.n}.img"
        with open(out, "wb") as f:
            f.write(bytes(data))
        os.chmod(out, 0o644)
        return out

    def hashed_or_streamed(self):
        """Restores whose decode read no page data: hashed as written, or
        streamed (the records before the pages, then the whole image hashed
        as written at close: fs/slot_stream.h)."""
        log = rt.read(self.crfs.log.name)
        return log.count("decode-hashed") + log.count("decode-prefix")

    def restore_in_odd_pieces(self):
        """snap.img written into a new slot with `dd bs=4093`; the restored pid."""
        slot = f"g{self.n}"
        type(self).n += 1
        r = ra.run_as(f"mkdir {self.crfs.mnt}/{slot} && "
                      f"dd if={self.d}/snap.img of={self.crfs.mnt}/{slot}/image bs=4093 "
                      f"status=none")
        self.assertEqual(r.returncode, 0, r.stderr)
        status = rt.read(f"{self.crfs.mnt}/{slot}/status")
        self.assertTrue(status.startswith("restored "), status)
        return int(status.split()[1])

    def test_good_image_in_odd_pieces_restores_with_the_hashed_decode(self):
        before = self.hashed_or_streamed()
        pid = self.restore_in_odd_pieces()
        self.assertIn(f"uid {ra.UID}\n", self.poke(pid))
        rt.wait_for(lambda: self.hashed_or_streamed() > before,
                    "the daemon's trace of the restore")

    def test_page_byte_changed_is_a_checksum_mismatch(self):
        b = bytearray(self.snap)
        b[self.mid] ^= 1
        self.refused(b, "checksum mismatch")

    def test_trailer_checksum_changed_is_a_checksum_mismatch(self):
        b = bytearray(self.snap)
        b[-16] ^= 1
        self.refused(b, "checksum mismatch")

    def test_truncated_mid_record_is_refused(self):
        self.refused(self.snap[:self.mid], "truncated image")

    def test_record_length_past_the_end_is_refused(self):
        b = bytearray(self.snap)
        struct.pack_into("<Q", b, self.pages + 8, len(b))  # spans past the end
        self.refused(fix_checksum(b), "truncated image")

    def test_second_trailer_covering_the_first_image_is_refused(self):
        # The slot hashes all but the last 40 bytes: here that is the whole
        # first image, trailer included, which this second trailer's checksum
        # matches. Only the framing (the trailer is not where the records end)
        # refuses it.
        count = struct.unpack_from("<Q", self.snap, len(self.snap) - 24)[0]
        tail = struct.pack("<IIQ", TRAILER_TYPE, 0, 24) + struct.pack(
            "<QQ", count, XXH.XXH3_64bits(self.snap, len(self.snap))) + b"CRFSEND\n"
        self.refused(self.snap + tail, "after the trailer")


if __name__ == "__main__":
    ra.BUILD = rt.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
