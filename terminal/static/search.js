/* Instant search: results update as the visitor types (physical or on-screen keyboard).
   The form still works without JavaScript (GET /search). Text is inserted with textContent,
   never innerHTML, so a catalogue entry cannot inject markup. */
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var form = document.querySelector("form[data-instant]");
    if (!form) return;
    var input = form.querySelector("input[name=q]");
    var list = document.getElementById("results");
    var count = document.getElementById("result-count");
    var timer = null, latest = 0;
    var i18n = window.cnapI18n;

    function render(data) {
      list.textContent = "";
      data.results.forEach(function (r) {
        var li = document.createElement("li");
        var a = document.createElement("a");
        a.className = "tile" + (r.paid ? " tile-paid" : "");
        a.href = r.url;
        var wrap = document.createElement("span");
        var kind = document.createElement("span");
        kind.className = "result-kind";
        var kindKey = "search.kind." + r.kind;   // both keys are marked in views/catalogue.py
        kind.textContent = i18n.gettext(kindKey) + " ";
        wrap.appendChild(kind);
        var name = document.createElement("span");
        name.className = "result-name";
        r.segments.forEach(function (seg) {
          if (seg[1]) { var m = document.createElement("mark"); m.textContent = seg[0]; name.appendChild(m); }
          else { name.appendChild(document.createTextNode(seg[0])); }
        });
        wrap.appendChild(name);
        var hint = document.createElement("small");
        hint.textContent = r.hint;
        wrap.appendChild(hint);
        a.appendChild(wrap);
        li.appendChild(a);
        list.appendChild(li);
      });
      var n = data.results.length;
      count.textContent = data.query.trim() ? (n ? i18n.ngettext("search.count", "search.count.plural", n)
                                                 : i18n.gettext("search.none")) : "";
    }

    function query() {
      var q = input.value;
      var ticket = ++latest;
      if (!q.trim()) { render({ results: [], query: "" }); return; }
      // The texts around the results come from the page's catalogue: wait for it once.
      Promise.all([fetch(form.dataset.instant + "?q=" + encodeURIComponent(q), { headers: { Accept: "application/json" } })
        .then(function (r) { return r.json(); }), i18n.ready])
        .then(function (both) { return both[0]; })
        .then(function (data) { if (ticket === latest) render(data); })
        .catch(function () { /* the submit button still works */ });
    }
    input.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(query, 60); });
  });
})();
