"""An ESC/POS receipt printer on the device side of the wire.

It answers DLE EOT 1/2/4 in real time, prints only while it has paper and a closed cover, and
renders what it printed to text (decoding the selected code page) and to a PNG preview.
"""
from __future__ import annotations

import logging
import threading

from devices.printer import codec as c
from devices.simwire import SimulatorBase

log = logging.getLogger(__name__)

# Epson fonts: A is 12 dots wide (48 columns on 576 dots, 32 on 384), B is 9 (64, 42)
FONT_DOTS = {"a": 12, "b": 9}
FONT_PATHS = ("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
              "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


class PrinterSimulator(SimulatorBase):
    name = "printer"

    def __init__(self, *, width_dots: int = 576) -> None:
        super().__init__()
        self.width_dots = width_dots
        self.parser = c.EscPosParser()
        self.paper = "ok"
        self.cover_open = False
        self.error = False
        self.silent = False
        self.paper_out_after_lines: int | None = None
        self.lines: list[dict] = []  # printed lines: {"text", "bold", "align", "size", "font"} or images/cuts
        self.discarded_bytes = 0
        self.cuts = 0
        self._current = ""
        self._style = {"bold": False, "align": "left", "size": (1, 1), "font": "a"}
        self._codec = "cp437"
        self.status_queries = 0
        self.printed = threading.Event()

    # ------------------------------------------------------------------ scripting API
    def set_paper(self, paper: str) -> None:
        if paper not in ("ok", "near_end", "out"):
            raise ValueError("paper is ok, near_end or out")
        with self.lock:
            self.paper = paper

    def set_cover_open(self, cover_open: bool = True) -> None:
        with self.lock:
            self.cover_open = bool(cover_open)

    def set_error(self, error: bool = True) -> None:
        with self.lock:
            self.error = bool(error)

    def set_silent(self, silent: bool = True) -> None:
        with self.lock:
            self.silent = silent

    def run_out_of_paper_after(self, lines: int | None) -> None:
        with self.lock:
            self.paper_out_after_lines = lines

    def clear(self) -> None:
        with self.lock:
            self.lines.clear()
            self.cuts = 0

    def columns(self, line: dict | None = None, *, font: str = "a") -> int:
        """Characters that fit one line of this paper in a printed line's font and size (or in
        ``font`` at normal size). Longer lines are kept whole here so tests can see them; a real
        printer would wrap them by itself, mid-word."""
        if line is not None:
            font = line.get("font", "a")
        width = line.get("size", (1, 1))[0] if line is not None else 1
        return self.width_dots // FONT_DOTS[font] // width

    @property
    def online(self) -> bool:
        return not self.cover_open and self.paper != "out" and not self.error

    def received_text(self) -> str:
        with self.lock:
            out = []
            for line in self.lines:
                if line["kind"] == "text":
                    out.append(line["text"])
                elif line["kind"] == "image":
                    out.append(f"[image {line['width']}x{line['height']}]")
                elif line["kind"] == "cut":
                    out.append("--- cut ---")
            if self._current:
                out.append(self._current)
            return "\n".join(out)

    def images(self) -> list:
        with self.lock:
            return [line["image"] for line in self.lines if line["kind"] == "image"]

    def render_png(self, path) -> None:
        from PIL import Image, ImageDraw, ImageFont

        with self.lock:
            lines = list(self.lines)
        font_size = 22
        try:
            font = ImageFont.truetype(next(p for p in FONT_PATHS if __import__("os").path.exists(p)), font_size)
            bold = font
        except (StopIteration, OSError):
            font = bold = ImageFont.load_default()
        line_height = font_size + 6
        height = 20
        for line in lines:
            height += line["image"].height + 4 if line["kind"] == "image" else line_height * (
                line.get("size", (1, 1))[1] if line["kind"] == "text" else 1)
        canvas = Image.new("L", (self.width_dots, max(height, 40)), 255)
        draw = ImageDraw.Draw(canvas)
        y = 10
        for line in lines:
            if line["kind"] == "image":
                image = line["image"]
                x = (self.width_dots - image.width) // 2 if line["align"] == "center" else 0
                canvas.paste(image, (max(0, x), y))
                y += image.height + 4
            elif line["kind"] == "cut":
                draw.line((0, y + line_height // 2, self.width_dots, y + line_height // 2), fill=128)
                y += line_height
            else:
                scale = line["size"][1]
                text = line["text"]
                width = draw.textlength(text, font=font)
                x = {"left": 0, "center": (self.width_dots - width) / 2,
                     "right": self.width_dots - width}[line["align"]]
                draw.text((max(0, x), y), text, font=bold if line["bold"] else font, fill=0,
                          stroke_width=1 if line["bold"] else 0, stroke_fill=0)
                y += line_height * scale
        canvas.save(path, format="PNG")

    def snapshot(self) -> dict:
        with self.lock:
            return {"paper": self.paper, "cover_open": self.cover_open, "error": self.error,
                    "lines": len(self.lines), "cuts": self.cuts, "url": self.url}

    # ------------------------------------------------------------------ wire
    def on_connect(self) -> None:
        self.parser.buffer.clear()

    def on_data(self, data: bytes) -> None:
        for op in self.parser.feed(data):
            if op.kind == "status":
                self.status_queries += 1
                if not self.silent and op.value in (1, 2, 4):
                    self.send(bytes([c.encode_status(op.value, online=self.online, cover_open=self.cover_open,
                                                     paper=self.paper, error=self.error)]))
                continue
            if not self.online:
                self.discarded_bytes += 1  # a stopped printer drops the job
                continue
            self._apply(op)

    def _apply(self, op: c.Op) -> None:
        kind = op.kind
        if kind == "init":
            self._style = {"bold": False, "align": "left", "size": (1, 1), "font": "a"}
            self._codec = "cp437"
        elif kind == "codepage":
            self._codec = c.CODE_PAGE_CODECS.get(op.value, "cp437")
        elif kind == "bold":
            self._style["bold"] = op.value
        elif kind == "align":
            self._style["align"] = op.value
        elif kind == "size":
            width, height, emphasised, font = op.value
            self._style["size"] = (width, height)
            if emphasised is not None:
                self._style["bold"] = self._style["bold"] or emphasised
            if font is not None:
                self._style["font"] = font
        elif kind == "font":
            self._style["font"] = op.value
        elif kind == "text":
            self._current += op.value.decode(self._codec, errors="replace")
        elif kind == "newline":
            self._emit_line()
        elif kind == "feed":
            for _ in range(op.value or 0):
                self._emit_line(blank=True)
        elif kind == "cut":
            if self._current:
                self._emit_line()
            self.lines.append({"kind": "cut", "mode": op.value})
            self.cuts += 1
            self.printed.set()
        elif kind == "raster":
            self._raster(*op.value)

    def _emit_line(self, blank: bool = False) -> None:
        text, self._current = ("" if blank else self._current), ("" if blank else "")
        self.lines.append({"kind": "text", "text": text, **self._style})
        self._used_paper()

    def _raster(self, width_bytes: int, height: int, data: bytes) -> None:
        from PIL import Image

        image = Image.frombytes("1", (width_bytes * 8, height), data)
        image = Image.eval(image.convert("L"), lambda v: 255 - v)  # ESC/POS: bit 1 = black dot
        self.lines.append({"kind": "image", "image": image, "width": width_bytes * 8,
                           "height": height, "align": self._style["align"]})
        self._used_paper()

    def _used_paper(self) -> None:
        if self.paper_out_after_lines is not None:
            self.paper_out_after_lines -= 1
            if self.paper_out_after_lines <= 0:
                self.paper = "out"
                self.paper_out_after_lines = None
