"""No input gives the hub's web app a 500: every route and method gets arbitrary text in its path
segments, query and form fields (Unicode digits, NUL, bidi characters, huge strings), anonymously
and as a logged-in admin with a valid CSRF token (so requests reach the view code). Field names
are read from the app's source and templates, so a new field is fuzzed without being listed.

And whatever JSON the other components leave in the tables, the pages' helpers give rows, never
an exception."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from monitoring.hub import charts, present, schema, web
from monitoring.hub.db import open_store
from tests.monitoring.test_hub_web import NOW, PINS, add_alert, add_site, make_app, make_staff

HUB = Path(present.__file__).parent
EXAMPLES = int(os.environ.get("CNAP_FUZZ_EXAMPLES", 60))   # raise it for a local hunt, as for the kiosk
_PLACEHOLDER = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")
_READS = re.compile(r"""(?:form|args)\.get\(\s*["']([^"']+)["']|text_param\(request\.\w+, ["']([^"']+)""")
FIELDS = sorted(({name for pair in _READS.findall((HUB / "web.py").read_text()) for name in pair if name}
                 | {name for path in (HUB / "templates").glob("*.html")
                    for name in re.findall(r'\bname="([A-Za-z_][\w-]*)"', path.read_text())}) - {"csrf_token"})

nasty = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "0", "1", "٣", "²", "1e999", "-1", "99999999999999999999", "\x00", "‮1", "kyiv-1",
                     "s1", "co2_high", "critical", "en", "add", "deactivate", "demand", "//evil", "/\\evil",
                     "x" * 5000]),
)

segments = st.one_of(st.sampled_from(["kyiv-1", "s1"]), nasty)   # known ids, so views run to the end


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hubfuzz")
    store = schema.ensure(open_store(folder / "hub.db"))
    staff, ids = make_staff(folder / "staff.db")
    app = make_app(store, staff)
    app.staff_ids = ids
    add_site(store, "kyiv-1")
    add_alert(store, "kyiv-1")
    with store.transaction() as tx:
        tx.execute("INSERT INTO entities VALUES ('kyiv-1', 'device/printer', 'device', ?, ?, ?)",
                   (json.dumps({"paper": [1, {"x": None}], "alerts": 3, "ts": "yesterday"}), NOW, NOW))
        tx.execute("INSERT INTO entities VALUES ('kyiv-1', 'weird', 'x', 'not json at all', NULL, ?)", (NOW,))
        tx.execute("INSERT INTO silences (id, matchers, starts_at, ends_at, creator, comment, created_at) "
                   "VALUES ('s1', '[1, 2]', ?, ?, 'T', 'c', ?)", (NOW, NOW + 3600, NOW))
        tx.execute("INSERT INTO commands (id, site, controller, action, args, requested_by, requested_at, expires_at) "
                   "VALUES ('c1', 'kyiv-1', 'kiosk', 'out_of_service', '\"on\"', 'T', ?, ?)", (NOW, NOW + 60))
        tx.execute("INSERT INTO survey_answers VALUES ('u1', 'kyiv-1', NULL, ?, '{\"score\": \"5\"}')", (NOW,))
    admin = app.test_client()
    admin.post("/login", data={"staff_id": str(ids["admin"]), "pin": PINS["admin"]})
    assert admin.get("/").status_code == 200
    yield app, admin
    staff.close()
    store.close()


def _routes(app):
    return sorted((rule.rule, method) for rule in app.url_map.iter_rules()
                  for method in rule.methods - {"HEAD", "OPTIONS"} if rule.endpoint != "static")


def test_fields_were_found():
    assert {"comment", "serial", "key", "level", "minutes", "on", "reason", "hours", "q", "sort", "days",
            "pin", "staff_id", "lang", "next", "site", "rule", "action", "name", "role"} <= set(FIELDS)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_no_route_gives_a_500(fuzz_app, data):
    app, admin = fuzz_app
    anonymous = app.test_client()
    path, method = data.draw(st.sampled_from(_routes(app)))
    url = _PLACEHOLDER.sub(lambda m: quote(data.draw(segments), safe="") or "x", path)
    fields = data.draw(st.dictionaries(st.sampled_from(FIELDS), nasty, max_size=6))
    # the admin stays logged in: a logout would turn the rest of the run into anonymous requests
    client = anonymous if path == "/logout" else data.draw(st.sampled_from([admin, anonymous]))
    if method == "GET":
        response = client.get(url, query_string=fields)
    else:
        response = client.open(url, method=method, data=fields)
    assert response.status_code < 500, (method, url, fields, response.get_data(as_text=True)[:500])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=40)


@settings(max_examples=300, deadline=None)
@given(payload=json_values)
def test_any_payload_gives_rows(payload):
    gettext = lambda key, **params: key   # noqa: E731
    rows = present.entity_rows(payload, gettext, lambda key: key.startswith("field.c"))
    assert isinstance(rows, list) and len(rows) <= present.MAX_ROWS + 2
    assert all(isinstance(r.label, str) and isinstance(r.value, str) for r in rows)
    present.entity_title(payload if isinstance(payload, str) else json.dumps(payload), gettext, lambda k: False)
    figures = present.Csat()
    figures.add(payload)
    assert figures.answers in (0, 1)


def test_very_deep_payload_gives_rows():
    deep = {"a": 1}
    for _ in range(50_000):
        deep = {"x": [deep]}
    text = "[" * 100_000 + "]" * 100_000
    gettext = lambda key, **params: key   # noqa: E731
    assert present.entity_rows(deep, gettext, lambda key: False)
    assert present.entity_rows(present.load_json(text), gettext, lambda key: False)


@settings(max_examples=100, deadline=None)
@given(points=st.lists(st.tuples(st.floats(), st.floats()), max_size=600), start=st.floats(), end=st.floats())
def test_any_series_draws(points, start, end):
    svg = charts.line_svg("c", points, "<t>", "d", start if start == start else 0.0,
                          end if end == end else 0.0, "a", "b")
    assert svg.startswith("<svg") and "<t>" not in svg
    assert svg.count(",") <= 2 * charts.MAX_POINTS + 10



@settings(max_examples=EXAMPLES // 2, deadline=None, suppress_health_check=list(HealthCheck))
@given(payload=json_values, other=json_values, text=st.text(max_size=50))
def test_pages_render_whatever_the_tables_hold(fuzz_app, payload, other, text):
    """Rows as another release (or a bug) might leave them: any JSON where JSON is expected, any
    text in the text columns. The pages still render."""
    app, admin = fuzz_app
    store = web.hub_state(app).store
    with store.transaction() as tx:
        tx.execute("DELETE FROM entities WHERE site = 'odd'")
        tx.execute("DELETE FROM commands WHERE site = 'odd'")
        tx.execute("DELETE FROM alerts WHERE site = 'odd'")
        tx.execute("DELETE FROM silences WHERE id = 'odd'")
        tx.execute("INSERT INTO sites (site, status, first_seen, last_seen, skew_s) VALUES ('odd', ?, ?, ?, ?) "
                   "ON CONFLICT (site) DO UPDATE SET status = excluded.status", (text, NOW, NOW, 1e308))
        tx.execute("INSERT INTO entities VALUES ('odd', ?, ?, ?, NULL, ?)", (text or "e", text, json.dumps(payload), NOW))
        tx.execute("INSERT INTO commands (id, site, controller, action, args, requested_by, requested_at, expires_at, "
                   "result_ok, result_message) VALUES ('odd', 'odd', ?, ?, ?, ?, ?, ?, 7, ?)",
                   (text, text, json.dumps(other), text, NOW, NOW - 1, text))
        tx.execute("INSERT INTO alerts (key, serial, rule, site, device, severity, status, active_since, summary) "
                   "VALUES (?, 1, ?, 'odd', ?, ?, 'firing', ?, ?)", (text, text, text, text, NOW, json.dumps(other)))
        tx.execute("INSERT INTO silences (id, matchers, starts_at, ends_at, creator, comment, created_at) "
                   "VALUES ('odd', ?, ?, ?, ?, ?, ?)", (json.dumps(payload), NOW, NOW + 60, text, text, NOW))
    for path in ("/", "/site/odd", "/alerts", "/surveys", "/metrics"):
        response = admin.get(path)
        assert response.status_code == 200, (path, response.get_data(as_text=True)[:300])
