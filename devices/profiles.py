"""Device profiles: firmware_configs/devices/<kind>/<model>.toml, validated before use."""
from __future__ import annotations

import tomllib
from pathlib import Path

PROFILE_ROOT = Path(__file__).resolve().parent.parent / "firmware_configs" / "devices"
PORT_SCHEMES = ("/dev/", "socket://", "spy://", "loop://", "rfc2217://", "COM")
BAUDRATES = {1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200}


class ProfileError(ValueError):
    pass


def _require(profile: dict, key: str, kind, where: str):
    if key not in profile:
        raise ProfileError(f"{where}: missing {key}")
    value = profile[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ProfileError(f"{where}: {key} must be {getattr(kind, '__name__', kind)}")
    return value


def validate(profile: dict, kind: str, where: str = "profile") -> dict:
    if profile.get("kind") != kind:
        raise ProfileError(f"{where}: kind must be {kind!r}")
    _require(profile, "model", str, where)
    port = _require(profile, "port", dict, where)
    url = _require(port, "url", str, where + " [port]")
    if not url.startswith(PORT_SCHEMES):
        raise ProfileError(f"{where}: port.url {url!r} is not a tty path or pyserial URL")
    if url.startswith("socket://") and not url.startswith(("socket://127.0.0.1:", "socket://localhost:")):
        raise ProfileError(f"{where}: simulator sockets are loopback only")
    if _require(port, "baudrate", int, where + " [port]") not in BAUDRATES:
        raise ProfileError(f"{where}: unusual baudrate {port['baudrate']}")
    if port.get("parity", "none") not in ("none", "even", "odd"):
        raise ProfileError(f"{where}: parity must be none, even or odd")
    if kind == "bill_validator":
        interval = _require(profile, "poll_interval_ms", int, where)
        if not 100 <= interval <= 200:
            raise ProfileError(f"{where}: poll_interval_ms must be 100..200")
        if not 1 <= _require(profile, "lost_after_polls", int, where) <= 1000:
            raise ProfileError(f"{where}: lost_after_polls out of range")
        accepted = _require(profile, "denominations_kop", list, where)
        if not accepted or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 and d % 100 == 0 for d in accepted):
            raise ProfileError(f"{where}: denominations_kop must be whole hryvnias in kopiykas")
        if len(_require(profile, "currency", str, where)) != 3:
            raise ProfileError(f"{where}: currency is a 3-letter code")
        if not 100 <= _require(profile, "cassette_capacity", int, where) <= 5000:
            raise ProfileError(f"{where}: cassette_capacity must be 100..5000 bills")
    elif kind == "card_terminal":
        timeouts = _require(profile, "timeouts_s", dict, where)
        for key, value in timeouts.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ProfileError(f"{where}: timeouts_s.{key} must be a positive number")
        if "purchase" not in timeouts:
            raise ProfileError(f"{where}: timeouts_s.purchase is required")
    elif kind == "printer":
        if _require(profile, "code_page", str, where) not in ("cp1251", "cp1125"):
            raise ProfileError(f"{where}: code_page must be cp1251 or cp1125 (Ukrainian і ї є ґ)")
        if _require(profile, "paper_width_mm", int, where) not in (58, 80):
            raise ProfileError(f"{where}: paper_width_mm must be 58 or 80")
        if not 24 <= _require(profile, "width_chars", int, where) <= 64:
            raise ProfileError(f"{where}: width_chars out of range")
        condensed = profile.get("width_chars_condensed", profile["width_chars"])
        if not isinstance(condensed, int) or isinstance(condensed, bool) or \
                not profile["width_chars"] <= condensed <= 96:
            raise ProfileError(f"{where}: width_chars_condensed must be width_chars..96")
        if not 256 <= _require(profile, "width_dots", int, where) <= 640:
            raise ProfileError(f"{where}: width_dots out of range")
    else:
        raise ProfileError(f"{where}: unknown device kind {kind!r}")
    return profile


def load_profile(path: Path | str) -> dict:
    path = Path(path)
    with path.open("rb") as handle:
        try:
            profile = tomllib.load(handle)
        except tomllib.TOMLDecodeError as exc:
            raise ProfileError(f"{path}: {exc}") from None
    return validate(profile, path.parent.name, str(path))


def all_profiles(root: Path = PROFILE_ROOT) -> list[Path]:
    return sorted(root.glob("*/*.toml"))


def find_profile(kind: str, model: str, root: Path = PROFILE_ROOT) -> dict | None:
    path = root / kind / f"{model}.toml"
    if not path.exists():
        return None
    profile = load_profile(path)
    flat = {k: v for k, v in profile.items() if k != "port"}
    flat["baudrate"] = profile["port"]["baudrate"]
    flat["url"] = profile["port"]["url"]
    return flat
