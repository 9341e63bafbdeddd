"""The allowlist: one pure decision for the window's navigation hook and the proxy's filter.
Every escape class a visitor could try is a case here; the property tests check that decide()
never raises and never admits a host that is not on the list."""
from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings, strategies as st

from terminal.internet.allowlist import MAX_DOMAINS, Allowlist, DomainError, Verdict, normalise_domain

LIST = Allowlist(["gov.ua", "diia.gov.ua", "bank.test", "приклад.укр"])
IDN = "xn--80aikifvh.xn--j1amh"          # приклад.укр in ASCII


@pytest.mark.parametrize("url, host", [
    ("http://diia.gov.ua/", "diia.gov.ua"),
    ("https://gov.ua", "gov.ua"),
    ("HTTPS://WWW.Diia.Gov.Ua/Path?q=1#top", "www.diia.gov.ua"),
    ("https://gov.ua./", "gov.ua"),                          # trailing dot: the same host
    ("https://gov.ua:443/", "gov.ua"),
    ("http://gov.ua:80/", "gov.ua"),
    ("https://gov.ua:/", "gov.ua"),                          # empty port = the scheme's default
    ("https://a.b.c.bank.test/", "a.b.c.bank.test"),
    ("https://приклад.укр/", IDN),                           # IDNA: Unicode and ASCII forms agree
    (f"https://{IDN}/", IDN),
    ("https://sub.ПРИКЛАД.укр/", "sub." + IDN),
    ("https://ｇｏｖ.ua/", "gov.ua"),                         # full-width letters: NFKC, as browsers do
    ("https://1.2.3.4.gov.ua/", "1.2.3.4.gov.ua"),           # a name, not an address
    ("https://a_b.gov.ua/", "a_b.gov.ua"),
])
def test_allowed(url, host):
    assert LIST.decide(url) == Verdict(True, host)


@pytest.mark.parametrize("url, reason", [
    # schemes that are not the web
    ("file:///etc/passwd", "scheme"),
    ("FILE:///etc/passwd", "scheme"),
    ("data:text/html,<script>alert(1)</script>", "scheme"),
    ("javascript:alert(1)", "scheme"),
    ("JaVaScRiPt:alert(1)", "scheme"),
    ("blob:https://gov.ua/0b5e-uuid", "scheme"),
    ("about:config", "scheme"),
    ("about:srcdoc", "scheme"),
    ("ABOUT:BLANK", "scheme"),            # only the exact about:blank a new view starts on
    ("about:blank#x", "scheme"),
    ("ftp://gov.ua/", "scheme"),
    ("ws://gov.ua/", "scheme"),
    ("view-source:https://gov.ua/", "scheme"),
    ("//gov.ua/", "scheme"),
    ("gov.ua", "scheme"),
    # IP literals in every spelling a browser reads as an address
    ("http://127.0.0.1/", "ip_literal"),
    ("http://2130706433/", "ip_literal"),          # decimal
    ("http://0x7f000001/", "ip_literal"),          # hex
    ("http://0x7f.1/", "ip_literal"),
    ("http://0177.0.0.1/", "ip_literal"),          # octal
    ("http://127.1/", "ip_literal"),               # short form
    ("http://[::1]/", "ip_literal"),
    ("http://[::ffff:127.0.0.1]/", "ip_literal"),
    ("https://[2001:db8::1]:443/", "ip_literal"),
    ("http://10.0.0.1./", "ip_literal"),
    # user-info that parsers read two ways
    ("https://gov.ua@evil.test/", "malformed"),
    ("https://user:pw@gov.ua/", "malformed"),
    ("https://evil.test@gov.ua/", "malformed"),
    ("https://gov.ua:443@evil.test/", "malformed"),
    ("https://gov.ua\\@evil.test/", "malformed"),  # WHATWG reads \ as /
    ("https://gov.ua\\.evil.test/", "malformed"),
    # look-alikes: suffixes, prefixes, lookalike dots and encodings
    ("https://evilgov.ua/", "host"),
    ("https://gov.ua.evil.test/", "host"),
    ("https://gov-ua.test/", "host"),
    ("https://ua/", "host"),
    ("https://diia.gov.ua.evil.test./", "host"),
    ("https://gov.ua。evil.test/", "host"),        # ideographic full stop is a dot
    ("https://evil.test%2f.gov.ua/", "malformed"),  # WHATWG percent-decodes the host
    ("https://gov.ua%2eevil.test/", "malformed"),
    ("https://gov.ua%00.evil.test/", "malformed"),
    ("https://straße.gov.ua/", "malformed"),       # IDNA 2003 and browsers encode ß differently
    ("https://gov..ua/", "malformed"),
    ("https://.gov.ua/", "malformed"),
    ("https:gov.ua", "malformed"),
    ("https:///gov.ua", "malformed"),
    ("https://", "malformed"),
    # whitespace and control characters
    ("https://gov.ua /", "malformed"),
    ("https://gov.ua\t.evil.test/", "malformed"),
    ("https://evil.test\n.gov.ua/", "malformed"),
    (" https://gov.ua/", "malformed"),
    # ports
    ("https://gov.ua:8443/", "port"),
    ("http://gov.ua:8080/", "port"),
    ("https://gov.ua:22/", "port"),
    ("https://gov.ua:99999/", "malformed"),
    ("https://gov.ua:-1/", "malformed"),
    ("https://gov.ua:0x50/", "malformed"),
    # not a string, too long
    ("https://gov.ua/" + "a" * 9000, "malformed"),
])
def test_refused(url, reason):
    verdict = LIST.decide(url)
    assert not verdict.allowed
    assert verdict.reason == reason


def test_refused_hosts_are_named_without_path_or_user_info():
    verdict = LIST.decide("https://evil.test:443/secret/path?token=1")
    assert verdict == Verdict(False, "evil.test", "host")
    assert LIST.decide("https://gov.ua:8443/x?y").host == "gov.ua"
    assert LIST.decide("https://me:pw@gov.ua/").host == ""


def test_non_strings_are_refused_not_raised():
    for value in (None, 42, b"https://gov.ua/", ["https://gov.ua/"]):
        assert LIST.decide(value) == Verdict(False, "", "malformed")
        assert LIST.allows_host(value) is False


def test_about_blank_is_the_one_other_page():
    assert LIST.decide("about:blank") == Verdict(True, "")


def test_ports_are_those_given_and_the_default_port_must_be_among_them():
    https_only = Allowlist(["gov.ua"], ports=[443])
    assert https_only.decide("https://gov.ua/").allowed
    assert https_only.decide("http://gov.ua/").reason == "port"
    assert https_only.decide("http://gov.ua:443/").allowed
    loopback = Allowlist(["site.test"], ports=[80, 443, 18080])
    assert loopback.decide("http://site.test:18080/").allowed


@pytest.mark.parametrize("host, allowed", [
    ("gov.ua", True), ("GOV.UA", True), ("gov.ua.", True), ("x.y.gov.ua", True), ("приклад.укр", True),
    ("evilgov.ua", False), ("gov.ua.evil", False), ("127.0.0.1", False), ("[::1]", False), ("", False),
    ("evil%2f.gov.ua", False), ("evil@gov.ua", False), ("evil/.gov.ua", False), ("a..gov.ua", False),
])
def test_allows_host(host, allowed):
    assert LIST.allows_host(host) is allowed


@pytest.mark.parametrize("typed, entry", [
    ("diia.gov.ua", "diia.gov.ua"),
    ("  Diia.GOV.ua  ", "diia.gov.ua"),
    ("https://www.Diia.gov.ua/path?x=1", "www.diia.gov.ua"),
    ("*.gov.ua", "gov.ua"),
    (".gov.ua", "gov.ua"),
    ("gov.ua.", "gov.ua"),
    ("приклад.укр", IDN),
    ("diia.gov.ua/services", "diia.gov.ua"),
])
def test_normalise_domain(typed, entry):
    assert normalise_domain(typed) == entry


@pytest.mark.parametrize("typed, code", [
    ("", "empty"), ("   ", "empty"), ("*.", "empty"), (None, "empty"),
    ("ua", "top_level"), ("укр", "top_level"),
    ("127.0.0.1", "ip_literal"), ("[::1]", "ip_literal"), ("2130706433", "ip_literal"),
    ("gov ua", "invalid"), ("gov_ua.test", "invalid"), ("-gov.ua", "invalid"), ("gov-.ua", "invalid"),
    ("a..b", "invalid"), ("evil@gov.ua", "invalid"), ("straße.de", "invalid"),
    ("a" * 64 + ".ua", "invalid"), ("a." * 130 + "ua", "too_long"),
])
def test_normalise_domain_refuses(typed, code):
    with pytest.raises(DomainError) as caught:
        normalise_domain(typed)
    assert caught.value.code == code
    assert str(caught.value)


def test_list_is_deduplicated_sorted_and_bounded():
    assert Allowlist(["B.test", "a.test", "b.test", "*.a.test"]).domains == ("a.test", "b.test")
    assert Allowlist(["a.test"], [443, 80]) == Allowlist(["A.test."], (80, 443))
    with pytest.raises(DomainError) as caught:
        Allowlist([f"d{i}.test" for i in range(MAX_DOMAINS + 1)])
    assert caught.value.code == "too_many"


# --- the proxy's patterns say what decide() says ----------------------------------------------------
def _icase(patterns):
    return [re.compile(pattern, re.IGNORECASE) for pattern in patterns]


@pytest.mark.parametrize("host, matches", [
    ("gov.ua", True), ("GOV.UA", True), ("gov.ua.", True), ("a.b.gov.ua", True), ("a_b.gov.ua", True),
    (IDN, True), ("evilgov.ua", False), ("gov.ua.evil.test", False), ("gov.uax", False),
    ("evil.test@gov.ua", False), ("evil.test/.gov.ua", False), ("evil.test%2egov.ua", False),
    ("evil.test:1.gov.ua", False), ("gov.ua:443", False), ("", False),
])
def test_proxy_host_patterns(host, matches):
    assert any(p.search(host) for p in _icase(LIST.proxy_patterns())) is matches


@pytest.mark.parametrize("target, matches", [
    ("http://gov.ua/", True), ("http://gov.ua", True), ("HTTP://Diia.Gov.UA:80/x?y", True),
    ("http://gov.ua:443/a", True), ("http://gov.ua.:80/", True), ("http://gov.ua?q", True),
    ("gov.ua:443", True), ("www.gov.ua:80", True), (f"{IDN}:443", True),
    ("http://gov.ua:8080/", False), ("http://gov.ua:0080/", False), ("http://gov.ua:80:8080/", False),
    ("http://gov.ua.evil.test/", False), ("http://evilgov.ua/", False), ("http://evil.test/gov.ua", False),
    ("http://evil.test@gov.ua/", False), ("http://gov.ua@evil.test/", False),
    ("gov.ua:22", False), ("gov.ua", False), ("evil.test:443", False), ("gov.ua:4430", False),
    ("https://gov.ua/", False),            # tinyproxy never forwards an https:// request target
    ("ftp://gov.ua/", False), ("http://127.0.0.1/", False),
])
def test_proxy_url_patterns(target, matches):
    assert any(p.search(target) for p in _icase(LIST.proxy_url_patterns())) is matches


def test_proxy_url_patterns_without_port_80_need_an_explicit_port():
    patterns = _icase(Allowlist(["gov.ua"], [443]).proxy_url_patterns())
    assert not any(p.search("http://gov.ua/") for p in patterns)
    assert any(p.search("http://gov.ua:443/") for p in patterns)


def test_patterns_have_no_hash_sign():
    # '#' starts a comment in tinyproxy's filter file and would cut a pattern short.
    assert not any("#" in p for p in LIST.proxy_patterns() + LIST.proxy_url_patterns())


# --- properties --------------------------------------------------------------------------------------
_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_tld = st.from_regex(r"[a-z]{2,4}", fullmatch=True)
_domains = st.lists(st.builds(lambda labels, tld: ".".join([*labels, tld]), st.lists(_label, min_size=1, max_size=2), _tld),
                    min_size=1, max_size=5)
_host_text = st.one_of(
    st.lists(_label, min_size=1, max_size=4).map(".".join),
    st.text(max_size=30),
    st.sampled_from(["127.0.0.1", "[::1]", "0x7f.1", "gov.ua.", "ПРИКЛАД.укр", "a@b", "%2e"]),
)
_urls = st.one_of(
    st.text(max_size=80),
    st.builds(lambda scheme, userinfo, host, port, path: f"{scheme}://{userinfo}{host}{port}{path}",
              st.sampled_from(["http", "https", "HTTP", "file", "ftp", "javascript", "data", "blob", ""]),
              st.sampled_from(["", "user@", "a:b@", "x.test@"]),
              _host_text,
              st.sampled_from(["", ":80", ":443", ":8080", ":", ":99999", ":0x1"]),
              st.text(max_size=20)),
)


@settings(max_examples=400, deadline=None)
@given(domains=_domains, url=_urls, data=st.data())
def test_decide_never_raises_and_allowed_means_listed(domains, url, data):
    allowlist = Allowlist(domains)
    if data.draw(st.booleans()):
        # Half the time a URL near the list: a listed domain with a prefix, suffix or case change.
        near = data.draw(st.builds(lambda pre, d, post: pre + d + post, st.sampled_from(["", "www.", "x", "a.b.", "-"]),
                                   st.sampled_from(allowlist.domains), st.sampled_from(["", ".", "x", ".evil", "%2e"])))
        url = data.draw(st.sampled_from(["https://{}/", "http://{}:80/p", "HTTPS://{}:8443/", "https://u@{}/"])).format(
            data.draw(st.sampled_from([near, near.upper()])))
    verdict = allowlist.decide(url)
    assert isinstance(verdict, Verdict)
    if verdict.allowed and url != "about:blank":
        assert verdict.reason == ""
        assert any(verdict.host == d or verdict.host.endswith("." + d) for d in allowlist.domains)
        parts = urlsplit(url)
        assert parts.scheme.lower() in ("http", "https")
        assert "@" not in parts.netloc
        assert (parts.port or {"http": 80, "https": 443}[parts.scheme.lower()]) in allowlist.ports
        # The proxy (host patterns, case-insensitive) admits the same host.
        assert any(p.search(verdict.host) for p in _icase(allowlist.proxy_patterns()))


@settings(max_examples=300, deadline=None)
@given(domains=_domains, host=_host_text)
def test_allows_host_never_raises_and_agrees_with_the_proxy(domains, host):
    allowlist = Allowlist(domains)
    allowed = allowlist.allows_host(host)
    if allowed:
        ascii_host = host.strip().rstrip(".").encode("idna").decode().lower()
        assert any(p.search(ascii_host) for p in _icase(allowlist.proxy_patterns()))
    elif re.fullmatch(r"[a-z0-9.-]+", host):
        # A plain ASCII name the list refuses is refused by the proxy's patterns as well.
        assert not any(p.search(host) for p in _icase(allowlist.proxy_patterns()))
