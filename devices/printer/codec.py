"""ESC/POS pieces both sides need. Pure: no I/O, no clock.

Host side: real-time status requests (DLE EOT n) and the decoding of their one-byte answers.
Device side: a stream parser that turns the bytes python-escpos sends into print operations.
"""
from __future__ import annotations

from dataclasses import dataclass, field

ESC, GS, DLE, EOT, LF, CR, FF = 0x1B, 0x1D, 0x10, 0x04, 0x0A, 0x0D, 0x0C

# ESC t n code page numbers (Epson numbering) and Python codecs
CODE_PAGES = {"cp437": 0, "cp866": 17, "cp1125": 44, "cp1251": 46}
CODE_PAGE_CODECS = {number: name for name, number in CODE_PAGES.items()}

STATUS_PRINTER, STATUS_OFFLINE_CAUSE, STATUS_PAPER = 1, 2, 4
MAX_RASTER_BYTES = 1 << 20  # one MiB of image is a long receipt already


def status_request(n: int) -> bytes:
    return bytes([DLE, EOT, n])


def status_byte_valid(value: int) -> bool:
    """Every DLE EOT answer has bit 0 = 0, bit 1 = 1, bit 4 = 1, bit 7 = 0."""
    return value & 0b1001_0011 == 0b0001_0010


def decode_printer_status(value: int) -> dict:
    return {"online": not value & 0x08}


def decode_offline_cause(value: int) -> dict:
    return {"cover_open": bool(value & 0x04), "stopped_paper_end": bool(value & 0x20),
            "error": bool(value & 0x40)}


def decode_paper_status(value: int) -> str:
    if value & 0x60:
        return "out"
    if value & 0x0C:
        return "near_end"
    return "ok"


def encode_status(n: int, *, online: bool, cover_open: bool, paper: str, error: bool) -> int:
    value = 0x12
    if n == STATUS_PRINTER and not online:
        value |= 0x08
    elif n == STATUS_OFFLINE_CAUSE:
        value |= (0x04 if cover_open else 0) | (0x20 if paper == "out" else 0) | (0x40 if error else 0)
    elif n == STATUS_PAPER:
        value |= (0x0C if paper in ("near_end", "out") else 0) | (0x60 if paper == "out" else 0)
    return value


# ----------------------------------------------------------------------------- device side
@dataclass(frozen=True)
class Op:
    kind: str  # text | newline | init | codepage | bold | align | size | font | cut | feed | raster | status | skipped
    value: object = None


# fixed-length ESC / GS commands: number of argument bytes after the command byte
ESC_ARGS = {ord("@"): 0, ord("t"): 1, ord("E"): 1, ord("-"): 1, ord("a"): 1, ord("!"): 1,
            ord("M"): 1, ord("{"): 1, ord("d"): 1, ord("J"): 1, ord("G"): 1, ord("2"): 0,
            ord("3"): 1, ord("R"): 1, ord("V"): 1, ord("p"): 3, ord("c"): 2, ord("="): 1}
GS_ARGS = {ord("!"): 1, ord("B"): 1, ord("b"): 1, ord("h"): 1, ord("w"): 1, ord("H"): 1,
           ord("f"): 1, ord("L"): 2, ord("W"): 2, ord("7"): 1, ord("a"): 1, ord("r"): 1}


@dataclass
class EscPosParser:
    buffer: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[Op]:
        self.buffer += data
        ops: list[Op] = []
        buf = self.buffer
        i = 0
        text_start = None

        def flush_text(end):
            nonlocal text_start
            if text_start is not None and end > text_start:
                ops.append(Op("text", bytes(buf[text_start:end])))
            text_start = None

        while i < len(buf):
            b = buf[i]
            if b in (ESC, GS, DLE):
                flush_text(i)
                consumed, op = self._command(buf, i)
                if consumed == 0:
                    break  # incomplete: wait for more bytes
                if op is not None:
                    ops.append(op)
                i += consumed
            elif b == LF:
                flush_text(i)
                ops.append(Op("newline"))
                i += 1
            elif b in (CR, 0x00):
                flush_text(i)
                i += 1
            elif b == FF:
                flush_text(i)
                ops.append(Op("feed", 1))
                i += 1
            elif b < 0x20:
                flush_text(i)
                ops.append(Op("skipped", bytes([b])))
                i += 1
            else:
                if text_start is None:
                    text_start = i
                i += 1
        flush_text(i)
        del buf[:i]
        return ops

    def _command(self, buf: bytearray, i: int) -> tuple[int, Op | None]:
        """Return (bytes consumed, op); consumed 0 means the command is not complete yet."""
        left = len(buf) - i
        if left < 2:
            return 0, None
        lead, cmd = buf[i], buf[i + 1]
        if lead == DLE:
            if cmd == EOT:
                if left < 3:
                    return 0, None
                return 3, Op("status", buf[i + 2])
            return 1, Op("skipped", bytes([DLE]))
        if lead == ESC:
            if cmd == ord("*"):  # bit image: m nL nH data
                if left < 5:
                    return 0, None
                m, n = buf[i + 2], buf[i + 3] | buf[i + 4] << 8
                size = n * (3 if m in (32, 33) else 1)
                if left < 5 + size:
                    return 0, None
                return 5 + size, Op("skipped", b"ESC *")
            args = ESC_ARGS.get(cmd)
            if args is None:
                return 2, Op("skipped", bytes([ESC, cmd]))
            if left < 2 + args:
                return 0, None
            arg = buf[i + 2] if args else 0
            op = None
            if cmd == ord("@"):
                op = Op("init")
            elif cmd == ord("t"):
                op = Op("codepage", arg)
            elif cmd == ord("E"):
                op = Op("bold", bool(arg & 1))
            elif cmd == ord("a"):
                op = Op("align", {0: "left", 1: "center", 2: "right", 48: "left", 49: "center",
                                  50: "right"}.get(arg, "left"))
            elif cmd == ord("!"):
                op = Op("size", (2 if arg & 0x20 else 1, 2 if arg & 0x10 else 1, bool(arg & 0x08),
                                 "b" if arg & 0x01 else "a"))  # bit 0 also selects the font
            elif cmd == ord("M"):
                op = Op("font", "b" if arg in (1, 49) else "a")
            elif cmd == ord("d"):
                op = Op("feed", arg)
            elif cmd == ord("J"):
                op = Op("feed", 1)
            return 2 + args, op
        # GS
        if cmd == ord("V"):
            if left < 3:
                return 0, None
            mode = buf[i + 2]
            if mode in (65, 66, 97, 98, 103, 104):
                if left < 4:
                    return 0, None
                return 4, Op("cut", "partial" if mode in (66, 98, 104) else "full")
            return 3, Op("cut", "partial" if mode in (1, 49) else "full")
        if cmd == ord("v"):  # GS v 0 m xL xH yL yH data
            if left < 8:
                return 0, None
            width_bytes = buf[i + 4] | buf[i + 5] << 8
            height = buf[i + 6] | buf[i + 7] << 8
            size = width_bytes * height
            if size > MAX_RASTER_BYTES or buf[i + 2] != ord("0"):
                return 8, Op("skipped", b"bad raster header")  # resync on what follows
            if left < 8 + size:
                return 0, None
            return 8 + size, Op("raster", (width_bytes, height, bytes(buf[i + 8 : i + 8 + size])))
        if cmd == ord("(") :  # GS ( X pL pH data...
            if left < 5:
                return 0, None
            size = buf[i + 3] | buf[i + 4] << 8
            if left < 5 + size:
                return 0, None
            return 5 + size, Op("skipped", b"GS (")
        args = GS_ARGS.get(cmd)
        if args is None:
            return 2, Op("skipped", bytes([GS, cmd]))
        if left < 2 + args:
            return 0, None
        if cmd == ord("!"):
            arg = buf[i + 2]
            return 3, Op("size", ((arg >> 4) + 1, (arg & 0x0F) + 1, None, None))
        return 2 + args, None
