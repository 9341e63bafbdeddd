"""ESC/POS receipt printer driver: python-escpos drives the printer through our URL transport.

Text is encoded by us (CP1251 or CP1125 by profile, selected with ESC t) rather than by
python-escpos' automatic code page guessing, whose tables lack CP1125 and may pick a page
without the Ukrainian letters і ї є ґ. Status is read with DLE EOT 1/2/4 before and after
every job; nothing here raises into the caller.

Line composition happens here and only here (``compose``): the driver is the one place that
knows the columns of the printer it drives (profile, double-width halving, the condensed font),
so a job carries logical text (one block per receipt row) and never pre-wrapped lines.
"""
from __future__ import annotations

import copy
import logging
import threading
import time
from dataclasses import dataclass

import serial
from escpos.escpos import Escpos

from devices.printer import codec as c
from devices.transport import open_url, safe_close

log = logging.getLogger(__name__)

DEFAULT_PROFILE = {"model": "generic-80mm", "code_page": "cp1251", "width_chars": 48,
                   "width_chars_condensed": None, "paper_width_mm": 80, "width_dots": 576,
                   "baudrate": 19200, "escpos_profile": "default", "status_timeout_s": 0.5}


SUBSTITUTES = {"\u2014": "-", "\u2013": "-", "\u201c": '"', "\u201d": '"', "\u201e": '"',
               "\u2019": "'", "\u00ab": '"', "\u00bb": '"', "\u2026": "...", "\u20b4": "грн",
               "\u00a0": " "}


def compose(text: str, width: int, hang: int = 0) -> list[str]:
    """Fill lines of at most ``width`` characters with whole words; continuation lines are
    indented by ``hang`` (at most half the line). A word never breaks unless it alone is longer
    than the line (then it is cut into full-width pieces); a word that fits the line but not
    beside the indent gets less indent instead of being cut. "\n" starts a new paragraph."""
    width = max(1, int(width))
    hang = max(0, min(int(hang), width // 2))
    out: list[str] = []
    for paragraph in str(text).split("\n"):
        line = ""  # the current line, indent included
        has_words = False
        first = True  # the paragraph's first line takes no indent
        for word in paragraph.split():
            if has_words and len(line) + 1 + len(word) <= width:
                line += " " + word
                continue
            if has_words:
                out.append(line)
                first = False
            cut = len(word) > width
            while len(word) > width:
                out.append(word[:width])
                word = word[width:]
                first = False
            # the last piece of a cut word stays flush with the pieces above it
            indent = 0 if first or cut else min(hang, width - len(word))
            line, has_words = " " * indent + word, True
        out.append(line if has_words else "")
    return out


@dataclass(frozen=True)
class PrinterStatus:
    online: bool
    cover_open: bool
    paper: str  # "ok" | "near_end" | "out" | "unknown"
    error: bool

    @property
    def ready(self) -> bool:
        return self.online and not self.cover_open and self.paper in ("ok", "near_end") and not self.error


OFFLINE = PrinterStatus(online=False, cover_open=False, paper="unknown", error=False)


@dataclass(frozen=True)
class PrintResult:
    ok: bool
    before: PrinterStatus
    after: PrinterStatus
    error: str | None


class UrlPrinter(Escpos):
    """python-escpos printer writing to a pyserial port opened from a URL."""

    def __init__(self, port, *, escpos_profile: str = "default", read_timeout_s: float = 0.5,
                 width_dots: int = 576):
        super().__init__(profile=escpos_profile)
        # our own copy: the library's profile data is shared between instances
        self.profile.profile_data = copy.deepcopy(self.profile.profile_data)
        media = self.profile.profile_data.setdefault("media", {}).setdefault("width", {})
        if media.get("pixels") in (None, "Unknown"):
            media["pixels"] = width_dots
        self.port = port
        self.read_timeout_s = read_timeout_s

    def open(self):
        return None

    def _raw(self, msg: bytes) -> None:
        self.port.write(msg)

    def _read(self) -> bytes:
        deadline = time.monotonic() + self.read_timeout_s
        while time.monotonic() < deadline:
            data = self.port.read(1)
            if data:
                return data
        return b""

    def close(self) -> None:  # the driver owns the port
        return None


def load_printer_profile(profile) -> dict:
    if isinstance(profile, dict):
        return {**DEFAULT_PROFILE, **profile}
    try:
        from devices.profiles import find_profile

        found = find_profile("printer", profile)
    except Exception:  # unknown name: defaults still print
        found = None
    return {**DEFAULT_PROFILE, **(found or {}), "model": profile}


class ReceiptPrinter:
    def __init__(self, url: str, *, profile="generic-80mm", code_page: str | None = None,
                 width_chars: int | None = None, baudrate: int | None = None) -> None:
        self.profile = load_printer_profile(profile)
        self.url = url
        self.code_page = (code_page or self.profile["code_page"]).lower()
        if self.code_page not in c.CODE_PAGES:
            raise ValueError(f"unsupported code page {self.code_page}")
        self.width_chars = int(width_chars or self.profile["width_chars"])
        # font B columns: the profile's, unless the width is overridden or the profile does not
        # say; then 4/3 of font A (9 dots a character where font A has 12)
        condensed = None if width_chars else self.profile.get("width_chars_condensed")
        self.condensed_chars = int(condensed or self.width_chars * 4 // 3)
        self.baudrate = int(baudrate or self.profile["baudrate"])
        self.status_timeout_s = float(self.profile["status_timeout_s"])
        self._lock = threading.Lock()
        self.last_error: str | None = None

    # ------------------------------------------------------------------ status
    def status(self) -> PrinterStatus:
        with self._lock:
            port = self._open()
            if port is None:
                return OFFLINE
            try:
                return self._status(port)
            finally:
                safe_close(port)

    def _status(self, port) -> PrinterStatus:
        try:
            port.reset_input_buffer()
            printer = UrlPrinter(port, read_timeout_s=self.status_timeout_s)
            answers = {}
            for n in (c.STATUS_PRINTER, c.STATUS_OFFLINE_CAUSE, c.STATUS_PAPER):
                raw = printer.query_status(c.status_request(n))
                if len(raw) != 1 or not c.status_byte_valid(raw[0]):
                    raw = printer.query_status(c.status_request(n))  # one retry after noise
                if len(raw) != 1 or not c.status_byte_valid(raw[0]):
                    self._note("no valid status answer" if not raw else f"bad status byte {raw.hex()}")
                    return OFFLINE
                answers[n] = raw[0]
        except (serial.SerialException, OSError) as exc:
            self._note(f"status failed: {exc}")
            return OFFLINE
        cause = c.decode_offline_cause(answers[c.STATUS_OFFLINE_CAUSE])
        return PrinterStatus(online=c.decode_printer_status(answers[c.STATUS_PRINTER])["online"],
                             cover_open=cause["cover_open"],
                             paper=c.decode_paper_status(answers[c.STATUS_PAPER]),
                             error=cause["error"])

    # ------------------------------------------------------------------ printing
    def print_job(self, blocks: list) -> PrintResult:
        with self._lock:
            port = self._open()
            if port is None:
                return PrintResult(False, OFFLINE, OFFLINE, self.last_error)
            try:
                before = self._status(port)
                if not before.ready:
                    return PrintResult(False, before, before, f"printer not ready: {self._why(before)}")
                error = None
                try:
                    port.write(self.render(blocks))
                    port.flush()
                except (serial.SerialException, OSError) as exc:
                    error = f"write failed: {exc}"
                except Exception as exc:  # a bad block must not crash the kiosk
                    error = f"bad job: {exc!r}"
                after = self._status(port)
                if error is None and not after.ready:
                    error = f"printer not ready after the job: {self._why(after)}"
                if error:
                    self._note(error)
                return PrintResult(error is None, before, after, error)
            finally:
                safe_close(port)

    def render(self, blocks: list) -> bytes:
        """The job's bytes, through python-escpos (styles, raster QR, cut)."""
        out = bytearray()

        class Capture(UrlPrinter):
            def _raw(self, msg):
                out.extend(msg)

        printer = Capture(None, escpos_profile=self.profile["escpos_profile"],
                          width_dots=int(self.profile["width_dots"]))
        printer._raw(b"\x1b@" + self._select_code_page())
        for block in blocks:
            self._render_block(printer, block)
        return bytes(out)

    def _render_block(self, printer: UrlPrinter, block) -> None:
        kind = block[0]
        if kind == "text":
            self._render_text(printer, str(block[1]),
                              block[2] if len(block) > 2 and isinstance(block[2], dict) else {})
        elif kind == "qr":
            printer.set(align="center")
            printer.qr(str(block[1]), native=False, size=int(block[2]) if len(block) > 2 else 6)
            # python-escpos sends ESC t 0 (PC437) before a raster image: select our code page
            # again, or Cyrillic after the QR would print as PC437 garbage on a real printer.
            printer._raw(self._select_code_page())
            printer.set(align="left")
        elif kind == "feed":
            lines = max(0, min(255, int(block[1]) if len(block) > 1 else 1))
            printer._raw(bytes([c.ESC, ord("d"), lines]))
        elif kind == "cut":
            printer.cut()
        else:
            raise ValueError(f"unknown block {kind!r}")

    def _render_text(self, printer: UrlPrinter, text: str, style: dict) -> None:
        """Style keys: bold, align, double, hang (indent of continuation lines), nobreak (one
        token never split across lines, e.g. a URL: font A if it fits, else the condensed font
        B, else the ``fallback`` blocks instead; without a fallback it is cut as a last resort)."""
        double = bool(style.get("double"))
        align = style.get("align", "left")
        if align not in ("left", "center", "right"):
            align = "left"
        width = self.width_chars // 2 if double else self.width_chars
        font = "a"
        if style.get("nobreak"):
            condensed = self.condensed_chars // 2 if double else self.condensed_chars
            if len(text) > width and len(text) <= condensed:
                font, width = "b", condensed
            elif len(text) > width and style.get("fallback"):
                for block in style["fallback"]:
                    self._render_block(printer, block)
                return
        printer.set(align=align, bold=bool(style.get("bold")), double_height=double,
                    double_width=double, normal_textsize=not double)
        if font == "b":
            # ESC M ourselves, after the size (ESC ! resets the font): python-escpos sends it
            # only for fonts its capability profile lists
            printer._raw(bytes([c.ESC, ord("M"), 1]))
        for line in compose(text, width, int(style.get("hang") or 0)):
            printer._raw(self.encode_text(line) + b"\n")
        printer.set(align="left", bold=False, normal_textsize=True)
        if font == "b":
            printer._raw(bytes([c.ESC, ord("M"), 0]))

    def _select_code_page(self) -> bytes:
        return bytes([c.ESC, ord("t"), c.CODE_PAGES[self.code_page]])

    def encode_text(self, text: str) -> bytes:
        """Encode in the profile's code page; typography it lacks degrades to ASCII, not '?'."""
        out = bytearray()
        for char in text:
            try:
                out += char.encode(self.code_page)
            except UnicodeEncodeError:
                out += SUBSTITUTES.get(char, "?").encode(self.code_page, errors="replace")
        return bytes(out)

    @staticmethod
    def _why(status: PrinterStatus) -> str:
        if not status.online and status.paper == "unknown":
            return "no answer"
        reasons = [name for name, bad in (("cover open", status.cover_open),
                                          ("paper out", status.paper == "out"),
                                          ("error", status.error),
                                          ("offline", not status.online)) if bad]
        return ", ".join(reasons) or "unknown"

    def _open(self):
        try:
            return open_url(self.url, baudrate=self.baudrate)
        except (serial.SerialException, OSError, ValueError) as exc:
            self._note(f"cannot open {self.url}: {exc}")
            return None

    def _note(self, message: str) -> None:
        log.warning("printer: %s", message)
        self.last_error = message
