"""The internet allowlist: which sites a visitor may open in the kiosk's browsing view.

Pure (no I/O): both guard layers take their decisions from here, so they can never disagree —
the window's navigation hook asks ``Allowlist.decide`` for every URL it is about to load, and the
filtering proxy's filter file is written from ``Allowlist.proxy_patterns``.

A domain admits itself and every subdomain (``gov.ua`` admits ``diia.gov.ua``), never a name that
merely ends with the same letters (``evilgov.ua``). Names are compared in their ASCII (IDNA) form,
lower-case, without a trailing dot, so ``ДІЯ.укр`` and ``xn--…`` are the same entry. Only http and
https on the allowed ports are ever admitted; ``about:blank`` is the one other page a window may
show (a new view starts on it). Everything else — file:, data:, javascript:, blob:, other about:
pages, IP literals, user-info tricks that a parser could read two ways — is refused.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Iterable
from urllib.parse import urlsplit

# How many domains one allowlist may hold: the proxy's filter is a list of regular expressions
# checked one by one, and service mode is a touch screen, not a bulk-import tool.
MAX_DOMAINS = 500
MAX_DOMAIN_LENGTH = 253
DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
# What a label of a host a browser may load can hold once in ASCII form: real hosts sometimes use
# "_"; anything else ("%", "/", "@", …) would be read differently by the browser's URL parser
# (WHATWG percent-decodes hosts) and by the proxy, so such a URL is refused outright.
_HOST_LABEL = re.compile(r"[a-z0-9_-]{1,63}")
# IDNA 2003 (Python's codec) maps these to other letters (ß → ss) where browsers, following UTS 46
# non-transitional processing, keep them: the two layers would see different hosts.
_IDNA_DEVIATIONS = frozenset("\u00df\u03c2\u200c\u200d")


class DomainError(ValueError):
    """A domain an editor typed cannot go on the list. ``code`` names the reason for the screen
    (translations key ``internet.domain_error.<code>``); ``str()`` is an English sentence."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Verdict:
    """One decision about one URL. ``host`` is the ASCII host name ('' when there is none), safe
    to count and log (no path, query or user-info); ``reason`` is '' when allowed, else one of
    ``scheme``, ``malformed``, ``ip_literal``, ``port``, ``host``."""
    allowed: bool
    host: str
    reason: str = ""


def _ascii_host(text: str) -> str:
    """``text`` as an ASCII, lower-case host name without a trailing dot; ValueError when it
    cannot be one (IDNA encoding fails, a label is empty or too long)."""
    name = text.strip().rstrip(".").lower()
    if not name:
        raise ValueError("empty")
    if _IDNA_DEVIATIONS.intersection(name):
        raise ValueError("a letter browsers and IDNA 2003 encode differently")
    try:
        name = name.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError(str(exc)) from None
    return name.lower()


def normalise_domain(text: str) -> str:
    """The list entry for what an editor typed: ``https://www.Diia.gov.ua/path`` → ``www.diia.gov.ua``,
    ``*.gov.ua`` or ``.gov.ua`` → ``gov.ua``. Raises DomainError with a reason otherwise."""
    if not isinstance(text, str):
        raise DomainError("empty", "no domain given")
    raw = text.strip()
    if "://" in raw:
        raw = urlsplit(raw).hostname or ""
    raw = raw.split("/", 1)[0]
    if raw.startswith("*."):
        raw = raw[2:]
    raw = raw.lstrip(".")
    if not raw:
        raise DomainError("empty", "no domain given")
    if len(raw) > MAX_DOMAIN_LENGTH:
        raise DomainError("too_long", f"a domain has at most {MAX_DOMAIN_LENGTH} characters")
    if _is_ip_literal(raw):
        raise DomainError("ip_literal", "give a domain name, not an IP address")
    try:
        name = _ascii_host(raw)
    except ValueError:
        raise DomainError("invalid", "not a domain name (letters, digits, hyphens and dots)") from None
    labels = name.split(".")
    if len(name) > MAX_DOMAIN_LENGTH or not all(_LABEL.fullmatch(label) for label in labels):
        raise DomainError("invalid", "not a domain name (letters, digits, hyphens and dots)")
    if len(labels) < 2:
        raise DomainError("top_level", "a whole top-level domain cannot be allowed; give e.g. gov.ua")
    return name


def _is_ip_literal(host: str) -> bool:
    candidate = host.strip("[]")
    try:
        ipaddress.ip_address(candidate)
        return True
    except ValueError:
        pass
    # Forms a browser still reads as IPv4 (decimal 2130706433, hex 0x7f.1, octal 0177.0.0.1).
    return bool(re.fullmatch(r"(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}\.?", candidate.lower()))


class Allowlist:
    """An immutable set of allowed domains (each with its subdomains) and ports.

    ``ports``: the ports a URL may name explicitly (80 and 443 in the field; the tests add their
    loopback servers' ports). A URL without a port uses its scheme's default, which must be in
    ``ports`` as well."""

    def __init__(self, domains: Iterable[str], ports: Iterable[int] = (80, 443)):
        names = []
        for domain in domains:
            name = normalise_domain(domain)
            if name not in names:
                names.append(name)
        if len(names) > MAX_DOMAINS:
            raise DomainError("too_many", f"an allowlist holds at most {MAX_DOMAINS} domains")
        self.domains: tuple[str, ...] = tuple(sorted(names))
        self.ports: frozenset[int] = frozenset(int(port) for port in ports)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Allowlist) and (self.domains, self.ports) == (other.domains, other.ports)

    def __hash__(self) -> int:
        return hash((self.domains, self.ports))

    def __repr__(self) -> str:
        return f"Allowlist({list(self.domains)!r}, ports={sorted(self.ports)!r})"

    def allows_host(self, host: str) -> bool:
        """True when ``host`` (any case, IDNA or Unicode, trailing dot or not) is an allowed domain
        or a subdomain of one. IP literals never are."""
        if not isinstance(host, str) or _is_ip_literal(host):
            return False
        try:
            name = _ascii_host(host)
        except ValueError:
            return False
        if not all(_HOST_LABEL.fullmatch(label) for label in name.split(".")):
            return False
        return any(name == domain or name.endswith("." + domain) for domain in self.domains)

    def decide(self, url: str) -> Verdict:
        """May the browsing view load ``url`` (as a page, frame, popup, redirect or form target)?"""
        if not isinstance(url, str) or len(url) > 8192:
            return Verdict(False, "", "malformed")
        if url == "about:blank":
            return Verdict(True, "")
        if any(ord(ch) < 0x21 or ch == "\\" for ch in url):
            # Whitespace, control characters and backslashes are read differently by different
            # URL parsers (WHATWG turns \ into /): never let the two layers disagree on a host.
            return Verdict(False, "", "malformed")
        try:
            parts = urlsplit(url)
            scheme = parts.scheme.lower()
            host = parts.hostname or ""
            port = parts.port
        except (ValueError, AttributeError):
            return Verdict(False, "", "malformed")
        if scheme not in DEFAULT_PORTS:
            return Verdict(False, "", "scheme")
        if not host or "@" in (parts.netloc or ""):
            return Verdict(False, "", "malformed")
        if _is_ip_literal(host):
            return Verdict(False, host.strip("[]"), "ip_literal")
        try:
            name = _ascii_host(host)
        except ValueError:
            return Verdict(False, "", "malformed")
        if len(name) > MAX_DOMAIN_LENGTH or not all(_HOST_LABEL.fullmatch(label) for label in name.split(".")):
            return Verdict(False, "", "malformed")
        if (DEFAULT_PORTS[scheme] if port is None else port) not in self.ports:
            return Verdict(False, name, "port")
        if not self.allows_host(name):
            return Verdict(False, name, "host")
        return Verdict(True, name)

    def proxy_patterns(self) -> list[str]:
        """One POSIX extended regular expression per domain, matching the host name a proxy
        sees (CONNECT's host or the request's Host) — the domain itself or any subdomain made of
        letters, digits, "-" and "_" only (never "@", "%", "/" or ":" a parser could read two ways).
        For a case-insensitive matcher (tinyproxy: FilterCaseSensitive Off)."""
        return [r"^" + self._host_pattern(domain) + r"$" for domain in self.domains]

    def proxy_url_patterns(self) -> list[str]:
        """One POSIX extended regular expression per domain for a proxy that filters the whole
        request target (tinyproxy: FilterURLs On): ``http://HOST[:PORT][/…]`` for plain requests
        and ``HOST:PORT`` for CONNECT, HOST being the domain or a subdomain and PORT one of the
        allowed ports (a port-less http URL only when 80 is allowed). So the proxy enforces the
        ports of plain HTTP as well, which filtering by host alone cannot. No "#" anywhere: it
        starts a comment in tinyproxy's filter file."""
        ports = "|".join(str(port) for port in sorted(self.ports)) or "0"
        http_port = rf"(:({ports}))?" if 80 in self.ports else rf":({ports})"
        patterns = []
        for domain in self.domains:
            host = self._host_pattern(domain)
            patterns.append(rf"^(http://{host}{http_port}([/?].*)?|{host}:({ports}))$")
        return patterns

    @staticmethod
    def _host_pattern(domain: str) -> str:
        return r"([a-z0-9_-]+\.)*" + re.escape(domain).replace(r"\-", "-") + r"\.?"
