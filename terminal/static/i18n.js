/* Interface strings for the page's scripts: the server's gettext catalogue of a language as JSON
   (linked from <meta name="cnap-catalogue-uk" content="…?v=<hash>">, cached for good under that version), the
   same entries Python and the templates use (terminal/i18n.py, docs/translations.md).
   cnapI18n.gettext(key, params, lang) and cnapI18n.ngettext(key, pluralKey, n, params, lang)
   fill "%(name)s" / "%(num)d" placeholders ("%%" is a percent sign). The plural rule is the
   catalogue's Plural-Forms expression, evaluated by a small parser here: the CSP forbids eval. */
(function () {
  "use strict";

  var catalogues = {};   // lang -> {messages, pluralIndex}
  var pending = {};      // lang -> Promise
  var reported = {};

  // ---- Plural-Forms: "nplurals=3; plural=<C expression of n>;" -> function (n) -> form index
  function compilePlural(header) {
    var match = /plural\s*=\s*([^;]+)/.exec(header || "");
    var source = match ? match[1] : "n != 1";
    var tokens = source.match(/\d+|n|\|\||&&|[=!<>]=|[<>?:%*\/+\-()!]/g) || [];
    if (tokens.join("") !== source.replace(/\s+/g, "")) tokens = ["n", "!=", "1"];
    var pos = 0;
    function peek() { return tokens[pos]; }
    function next() { return tokens[pos++]; }
    function constant(v) { return function () { return v; }; }
    function primary() {
      var token = next();
      if (token === "(") { var inner = ternary(); next(); return inner; }
      if (token === "n") return function (n) { return n; };
      return constant(parseInt(token, 10) || 0);
    }
    function unary() {
      if (peek() === "!") { next(); var operand = unary(); return function (n) { return operand(n) ? 0 : 1; }; }
      if (peek() === "-") { next(); var negated = unary(); return function (n) { return -negated(n); }; }
      return primary();
    }
    function level(sub, ops) {
      return function () {
        var left = sub();
        while (Object.prototype.hasOwnProperty.call(ops, peek())) {
          left = (function (l, op, r) { return function (n) { return op(l(n), r(n)); }; })(left, ops[next()], sub());
        }
        return left;
      };
    }
    function b(x) { return x ? 1 : 0; }
    var mul = level(unary, { "*": function (x, y) { return x * y; },
                             "/": function (x, y) { return y ? Math.floor(x / y) : 0; },
                             "%": function (x, y) { return y ? x % y : 0; } });
    var add = level(mul, { "+": function (x, y) { return x + y; }, "-": function (x, y) { return x - y; } });
    var rel = level(add, { "<": function (x, y) { return b(x < y); }, "<=": function (x, y) { return b(x <= y); },
                           ">": function (x, y) { return b(x > y); }, ">=": function (x, y) { return b(x >= y); } });
    var eq = level(rel, { "==": function (x, y) { return b(x === y); }, "!=": function (x, y) { return b(x !== y); } });
    var and = level(eq, { "&&": function (x, y) { return b(x && y); } });
    var or = level(and, { "||": function (x, y) { return b(x || y); } });
    function ternary() {
      var condition = or();
      if (peek() !== "?") return condition;
      next();
      var yes = ternary();
      next();  // ":"
      var no = ternary();
      return function (n) { return condition(n) ? yes(n) : no(n); };
    }
    var rule = ternary();
    return function (n) { return Number(rule(Math.abs(Math.floor(n)))) || 0; };
  }

  function currentLanguage() { return document.documentElement.lang === "en" ? "en" : "uk"; }

  function load(lang) {
    lang = lang || currentLanguage();
    if (!pending[lang]) {
      var meta = document.querySelector('meta[name="cnap-catalogue-' + lang + '"]');
      var url = meta && meta.content;
      pending[lang] = !url ? Promise.reject(new Error("no catalogue for " + lang)) :
        fetch(url, { credentials: "same-origin" }).then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        }).then(function (data) {
          catalogues[lang] = { messages: data.messages || {}, pluralIndex: compilePlural(data.plural_forms) };
          return catalogues[lang];
        });
      pending[lang].catch(function () { delete pending[lang]; });   // a later call tries again
    }
    return pending[lang];
  }

  function format(text, params) {
    params = params || {};
    return text.replace(/%(?:\((\w+)\))?([sd%])/g, function (all, name, kind) {
      if (kind === "%") return "%";
      if (!name || !Object.prototype.hasOwnProperty.call(params, name)) return all;
      return String(params[name]);
    });
  }

  function lookup(key, lang) {
    var catalogue = catalogues[lang || currentLanguage()] || catalogues[currentLanguage()] || catalogues.uk;
    var entry = catalogue && catalogue.messages[key];
    if (entry === undefined && catalogues.uk) entry = catalogues.uk.messages[key];
    if (entry === undefined && !reported[key]) {
      reported[key] = true;
      if (window.console) console.warn("cnapI18n: no interface message " + key);
    }
    return { entry: entry, catalogue: catalogue };
  }

  function gettext(key, params, lang) {
    var found = lookup(key, lang).entry;
    if (Array.isArray(found)) found = found[0];
    return format(typeof found === "string" ? found : key, params);
  }

  function ngettext(key, pluralKey, n, params, lang) {
    var found = lookup(key, lang);
    var values = { num: n };
    Object.keys(params || {}).forEach(function (k) { values[k] = params[k]; });
    var entry = found.entry;
    if (Array.isArray(entry)) {
      var index = found.catalogue ? found.catalogue.pluralIndex(n) : 0;
      entry = entry[Math.min(index, entry.length - 1)];
    }
    return format(typeof entry === "string" ? entry : (n === 1 ? key : pluralKey), values);
  }

  window.cnapI18n = {
    load: load,
    ready: load().catch(function () { return null; }),
    loaded: function (lang) { return !!catalogues[lang || currentLanguage()]; },
    gettext: gettext,
    ngettext: ngettext,
    compilePlural: compilePlural,
  };
})();
