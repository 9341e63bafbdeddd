/* Desk tablet survey app. Offline-first: every answer gets a UUID here and waits in IndexedDB
   until the server confirms it ("stored" or "duplicate"); sending again is harmless because the
   server keys answers by that UUID. No inline scripts (CSP); strings come from the catalogues of
   both languages (i18n.js; /tablet/i18n/<lang>.json, kept offline by the Service Worker). */
(function () {
  "use strict";

  var body = document.body;
  var API = body.dataset.api;
  var TOKEN_KEY = "cnap-survey-token";
  var CONFIG_KEY = "cnap-survey-config";
  var config = null;
  var lang = "uk";
  var current = null;          // the answer being given
  var stepTimer = null, thanksTimer = null, attractTimer = null, mediaTimer = null;
  var mediaIndex = 0;
  var syncing = false, syncTimer = null, backoff = 2000;

  function $(id) { return document.getElementById(id); }
  // The visitor switches language here, without a page load: both catalogues are loaded.
  function gettext(key, params) { return window.cnapI18n.gettext(key, params, lang); }
  function ngettext(key, pluralKey, n, params) { return window.cnapI18n.ngettext(key, pluralKey, n, params, lang); }
  function loadCatalogues() {
    return Promise.all([window.cnapI18n.load("uk"), window.cnapI18n.load("en")]).catch(function () { return null; });
  }
  function tr(text) { return (text && (text[lang] || text.uk)) || ""; }
  function other(text) { return (text && text[lang === "uk" ? "en" : "uk"]) || ""; }

  // ---- identifiers: crypto.randomUUID needs a secure context; getRandomValues does not -------
  function uuid4() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    var b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.prototype.map.call(b, function (x) { return (x + 0x100).toString(16).slice(1); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  // ---- IndexedDB queue ------------------------------------------------------------------------
  var dbPromise = null;
  function db() {
    if (!dbPromise) {
      dbPromise = new Promise(function (resolve, reject) {
        var req = indexedDB.open("cnap-survey", 1);
        req.onupgradeneeded = function () {
          var d = req.result;
          d.createObjectStore("queue", { keyPath: "uuid" });
          d.createObjectStore("rejected", { keyPath: "uuid" });
        };
        req.onsuccess = function () { resolve(req.result); };
        req.onerror = function () { reject(req.error); };
      });
    }
    return dbPromise;
  }
  function tx(storeName, mode, work) {
    return db().then(function (d) {
      return new Promise(function (resolve, reject) {
        var transaction = d.transaction(storeName, mode);
        var result;
        transaction.oncomplete = function () { resolve(result); };
        transaction.onerror = function () { reject(transaction.error); };
        transaction.onabort = function () { reject(transaction.error); };
        result = work(transaction);
      });
    });
  }
  function putEntry(entry) { return tx("queue", "readwrite", function (x) { x.objectStore("queue").put(entry); }); }
  function allEntries() {
    return tx("queue", "readonly", function (x) {
      var out = [];
      x.objectStore("queue").openCursor().onsuccess = function (ev) {
        var c = ev.target.result;
        if (c) { out.push(c.value); c.continue(); }
      };
      return out;
    });
  }
  function settle(done, rejected) {
    return tx(["queue", "rejected"], "readwrite", function (x) {
      var q = x.objectStore("queue"), r = x.objectStore("rejected");
      done.forEach(function (u) { q.delete(u); });
      rejected.forEach(function (item) { q.delete(item.uuid); r.put(item); });
    });
  }
  function countRejected() {
    return tx("rejected", "readonly", function (x) {
      var holder = { n: 0 };
      x.objectStore("rejected").count().onsuccess = function (ev) { holder.n = ev.target.result; };
      return holder;
    }).then(function (h) { return h.n; });
  }

  // ---- sync -------------------------------------------------------------------------------------
  function token() { return localStorage.getItem(TOKEN_KEY); }
  function authHeaders() { return { "Authorization": "Bearer " + token(), "Content-Type": "application/json" }; }

  function updateStatus() {
    return Promise.all([allEntries(), countRejected()]).then(function (res) {
      var entries = res[0], rejected = res[1];
      body.dataset.queue = String(entries.length);
      body.dataset.rejected = String(rejected);
      var text = entries.length ? ngettext("tablet.status.queued", "tablet.status.queued.plural", entries.length)
                                : gettext("tablet.status.synced");
      if (body.dataset.online === "false") text = gettext("tablet.status.offline") + " " + text;
      if (rejected) text += " · " + ngettext("tablet.status.rejected", "tablet.status.rejected.plural", rejected);
      $("sync-status").textContent = text;
    });
  }

  function scheduleSync(ms) {
    clearTimeout(syncTimer);
    syncTimer = setTimeout(sync, ms);
  }

  function sync() {
    if (syncing || !token()) return Promise.resolve();
    syncing = true;
    var maxBatch = (config && config.settings && config.settings.max_batch) || 200;
    return allEntries().then(function (entries) {
      var ready = entries.filter(function (e) { return e.state === "ready"; })
        .sort(function (a, b) { return a.payload.answered_at - b.payload.answered_at; }).slice(0, maxBatch);
      if (!ready.length) return false;
      var controller = new AbortController();
      var timer = setTimeout(function () { controller.abort(); }, 20000);
      return fetch(API + "/answers", {
        method: "POST", headers: authHeaders(), signal: controller.signal, cache: "no-store",
        body: JSON.stringify({ sent_at: Date.now() / 1000, answers: ready.map(function (e) { return e.payload; }) }),
      }).then(function (response) {
        clearTimeout(timer);
        if (response.status === 401) { showUnpaired(true); throw new Error("token refused"); }
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      }).then(function (data) {
        body.dataset.online = "true";
        var done = [], rejected = [];
        data.results.forEach(function (r, i) {
          var entry = ready[i];
          if (r.status === "stored" || r.status === "duplicate") done.push(entry.uuid);
          else if (r.status === "rejected") rejected.push({ uuid: entry.uuid, payload: entry.payload, error: r.error, message: r.message });
        });
        return settle(done, rejected).then(function () { return ready.length === maxBatch; });
      });
    }).then(function (more) {
      syncing = false;
      backoff = 2000;
      return updateStatus().then(function () { scheduleSync(more ? 10 : 5000); });
    }, function () {
      syncing = false;
      body.dataset.online = "false";
      backoff = Math.min(backoff * 2, 30000);
      return updateStatus().then(function () { scheduleSync(backoff); });
    });
  }

  // ---- configuration ----------------------------------------------------------------------------
  function loadConfig() {
    var cached = localStorage.getItem(CONFIG_KEY);
    if (cached) { try { config = JSON.parse(cached); } catch (e) { config = null; } }
    return fetch(API + "/config", { headers: authHeaders(), cache: "no-store" }).then(function (response) {
      if (response.status === 401) {
        return response.json().then(function (err) {
          showUnpaired(err.error === "revoked_token");
          return null;
        }, function () { showUnpaired(false); return null; });
      }
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json().then(function (fresh) {
        config = fresh;
        localStorage.setItem(CONFIG_KEY, JSON.stringify(fresh));
        body.dataset.online = "true";
        return fresh;
      });
    }).catch(function () { body.dataset.online = "false"; return config; });
  }

  // ---- screens -------------------------------------------------------------------------------
  function show(name) {
    document.querySelectorAll(".screen").forEach(function (s) { s.hidden = s.id !== "screen-" + name; });
    body.dataset.state = name;
    if (window.cnapKeyboard && name !== "comment" && name !== "staff") window.cnapKeyboard.close();
    var heading = document.querySelector("#screen-" + name + " h1");
    if (heading && name !== "main") { heading.setAttribute("tabindex", "-1"); heading.focus({ preventScroll: true }); }
    clearTimeout(attractTimer);
    if (name === "main") armAttract();
  }

  function showUnpaired(revoked) {
    var el = $("unpaired-body");
    // Without a catalogue (first start offline) the page carries the Ukrainian strings.
    el.textContent = window.cnapI18n.loaded(lang) ? (revoked ? gettext("tablet.revoked.body") : gettext("tablet.unpaired.body"))
                                                  : (revoked ? el.dataset.revoked : el.dataset.unpaired);
    show("unpaired");
  }

  var FACE_MOUTHS = {
    1: "M30 72 Q50 52 70 72", 2: "M32 70 Q50 60 68 70", 3: "M32 66 L68 66", 4: "M32 62 Q50 74 68 62",
    5: "M28 58 Q50 84 72 58",
  };
  function faceSvg(level) {
    return '<svg viewBox="0 0 100 100" aria-hidden="true" focusable="false"><circle class="face-bg" cx="50" cy="50" r="46"/>' +
      '<circle class="face-eye" cx="35" cy="40" r="6"/><circle class="face-eye" cx="65" cy="40" r="6"/>' +
      '<path class="face-ink" d="' + FACE_MOUTHS[level] + '"/></svg>';
  }

  function applyLanguage() {
    document.documentElement.lang = lang;
    if (window.cnapI18n.loaded(lang)) {
      document.querySelectorAll("[data-t]").forEach(function (el) { el.textContent = gettext(el.dataset.t); });
    }
    $("lang-toggle").setAttribute("lang", lang === "uk" ? "en" : "uk");
    document.title = config ? tr(config.survey.title) : document.title;
    var osk = $("osk");
    if (osk) osk.dataset.lang = lang;
    applyTextSize();
  }

  function renderMain() {
    var survey = config.survey;
    $("main-question").textContent = tr(survey.main.text);
    var faces = $("faces");
    faces.className = "faces faces-" + survey.main.options.length;
    faces.setAttribute("aria-label", gettext("tablet.faces"));
    faces.textContent = "";
    var levels = survey.main.options.length === 4 ? [1, 2, 4, 5] : [1, 2, 3, 4, 5];
    survey.main.options.forEach(function (option, i) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "face face-" + levels[i];
      button.dataset.option = option.id;
      button.innerHTML = faceSvg(levels[i]);
      var label = document.createElement("span");
      label.textContent = tr(option.label);
      var second = document.createElement("span");
      second.className = "label-other";
      second.lang = lang === "uk" ? "en" : "uk";
      second.textContent = other(option.label);
      button.appendChild(label);
      button.appendChild(second);
      button.addEventListener("click", function () { pressFace(option); });
      faces.appendChild(button);
    });
  }

  function startMain() {
    current = null;
    forgetVisitor();
    clearTimeout(stepTimer);
    renderMain();
    show("main");
  }

  function saveDraft() {
    return putEntry({ uuid: current.uuid, state: "draft", payload: current, created: Date.now() })
      .then(updateStatus);
  }

  function pressFace(option) {
    var survey = config.survey;
    current = {
      uuid: uuid4(), survey: survey.id, version: survey.version, answered_at: Date.now() / 1000,
      main: option.id, path: [], nps: null, comment: null,
      shift_id: config.shift ? config.shift.id : null, lang: lang,
    };
    saveDraft();
    next(option.next);
  }

  function armStepTimeout() {
    clearTimeout(stepTimer);
    var seconds = (config.settings && config.settings.step_timeout_s) || 45;
    stepTimer = setTimeout(function () { finish(false); }, seconds * 1000);
  }

  function next(questionId) {
    armStepTimeout();
    if (questionId) { showQuestion(questionId); return; }
    if (config.survey.nps && current.nps === null && body.dataset.npsDone !== current.uuid) { showNps(); return; }
    if (config.survey.comment && body.dataset.commentDone !== current.uuid) { showComment(); return; }
    finish(true);
  }

  function showQuestion(questionId) {
    var q = config.survey.questions[questionId];
    $("followup-question").textContent = tr(q.text);
    var box = $("choices");
    box.textContent = "";
    q.options.forEach(function (option) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "choice";
      button.dataset.option = option.id;
      button.textContent = tr(option.label);
      button.addEventListener("click", function () {
        current.path.push([q.id, option.id]);
        saveDraft();
        next(option.next);
      });
      box.appendChild(button);
    });
    show("followup");
  }

  function showNps() {
    $("nps-question").textContent = tr(config.survey.nps);
    var box = $("nps");
    box.textContent = "";
    for (var i = 0; i <= 10; i++) {
      (function (value) {
        var button = document.createElement("button");
        button.type = "button";
        button.className = "nps-key";
        button.dataset.value = String(value);
        button.textContent = String(value);
        button.addEventListener("click", function () {
          current.nps = value;
          body.dataset.npsDone = current.uuid;
          saveDraft();
          next(null);
        });
        box.appendChild(button);
      })(i);
    }
    show("nps");
  }

  function showComment() {
    var field = $("comment");
    $("comment-label").textContent = tr(config.survey.comment);
    $("comment-hint").textContent = gettext("tablet.comment.hint", { max: config.survey.comment_max });
    field.maxLength = config.survey.comment_max;
    field.value = "";
    show("comment");
  }

  function skip() {
    var state = body.dataset.state;
    if (state === "followup") {
      // Skipping a follow-up ends the branch; the optional questions may still come.
      next(null);
    } else if (state === "nps") {
      body.dataset.npsDone = current.uuid;
      next(null);
    } else if (state === "comment") {
      body.dataset.commentDone = current.uuid;
      finish(true);
    }
  }

  function finish(thank) {
    clearTimeout(stepTimer);
    if (!current) { startMain(); return; }
    var answer = current;
    current = null;
    putEntry({ uuid: answer.uuid, state: "ready", payload: answer, created: Date.now() })
      .then(updateStatus).then(function () { scheduleSync(50); });
    if (!thank) { startMain(); return; }
    $("thanks-text").textContent = tr(config.survey.thanks);
    show("thanks");
    clearTimeout(thanksTimer);
    thanksTimer = setTimeout(startMain, ((config.settings && config.settings.thanks_s) || 6) * 1000);
  }

  // ---- attract loop -------------------------------------------------------------------------------
  function armAttract() {
    clearTimeout(attractTimer);
    if (!config || body.dataset.state !== "main") return;
    attractTimer = setTimeout(startAttract, ((config.settings && config.settings.attract_after_s) || 30) * 1000);
  }

  function startAttract() {
    forgetVisitor();   // nobody is in front of the tablet any more
    var overlay = $("attract");
    overlay.hidden = false;
    body.dataset.attract = "on";
    mediaIndex = 0;
    playMedia();
  }

  function playMedia() {
    clearTimeout(mediaTimer);
    var items = (config && config.media) || [];
    var image = $("attract-image"), video = $("attract-video");
    if (!items.length) { image.hidden = true; video.hidden = true; return; }
    var item = items[mediaIndex % items.length];
    mediaIndex += 1;
    if (item.kind === "image") {
      video.pause(); video.hidden = true;
      image.src = item.url; image.alt = tr(item.alt); image.hidden = false;
      mediaTimer = setTimeout(playMedia, (item.duration_s || 8) * 1000);
    } else {
      image.hidden = true;
      video.src = item.url;
      video.setAttribute("aria-label", tr(item.alt));
      video.hidden = false;
      video.onended = playMedia;
      video.onerror = function () { mediaTimer = setTimeout(playMedia, 500); };
      var playing = video.play();
      if (playing && playing.catch) playing.catch(function () { mediaTimer = setTimeout(playMedia, 2000); });
      mediaTimer = setTimeout(playMedia, 120000);   // never stuck on one video
    }
  }

  function stopAttract(ev) {
    if ($("attract").hidden) return;
    if (ev) { ev.preventDefault(); ev.stopPropagation(); }
    clearTimeout(mediaTimer);
    var video = $("attract-video");
    video.pause();
    $("attract").hidden = true;
    body.dataset.attract = "off";
    armAttract();
  }

  // ---- administrator shift ----------------------------------------------------------------------
  function renderStaff() {
    var tab = config.tablet;
    $("staff-desk").textContent = gettext("tablet.staff.desk", { label: tab.label, desk: tab.desk, branch: tr(tab.branch) });
    $("staff-current").textContent = config.shift ? gettext("tablet.staff.on_duty", { name: config.shift.admin_name })
                                                   : gettext("tablet.staff.nobody");
    $("shift-end").hidden = !config.shift;
    updateStatus();
  }

  function openStaff() {
    if (!config) return;
    if (current) finish(false);
    $("shift-message").textContent = "";
    $("shift-pin").value = "";
    renderStaff();
    show("staff");
  }

  function rememberShift(shift) {
    config.shift = shift;
    localStorage.setItem(CONFIG_KEY, JSON.stringify(config));
    renderStaff();
  }

  function startShift(ev) {
    ev.preventDefault();
    var pin = $("shift-pin").value;
    $("shift-pin").value = "";
    fetch(API + "/shift", { method: "POST", headers: authHeaders(), body: JSON.stringify({ pin: pin }), cache: "no-store" })
      .then(function (response) {
        return response.json().then(function (data) {
          if (response.ok) {
            rememberShift(data.shift);
            $("shift-message").textContent = "";
            $("staff-current").textContent = gettext("tablet.staff.started", { name: data.shift.admin_name });
          } else {
            $("shift-message").textContent = response.status === 429 ? gettext("tablet.staff.locked") : gettext("tablet.staff.wrong");
          }
        });
      }).catch(function () { $("shift-message").textContent = gettext("tablet.staff.offline"); });
  }

  function endShift() {
    fetch(API + "/shift/end", { method: "POST", headers: authHeaders(), cache: "no-store" })
      .then(function (response) { if (response.ok) rememberShift(null); })
      .catch(function () { $("shift-message").textContent = gettext("tablet.staff.offline"); });
  }

  // ---- preferences ------------------------------------------------------------------------------
  // Language, contrast and text size belong to the visitor in front of the tablet, as on the
  // kiosk: they live in memory only (no server round trip, nothing stored) and are dropped when
  // that visitor's survey ends (thank-you → first question, a walk-away timeout) or the attract
  // loop starts, so the next visitor finds the tablet as the desk set it up. Text sizes reuse the
  // kiosk's html.size-NNN classes; tablet.css scales them from the tablet's own base size.
  var TEXT_SIZES = [100, 150, 200];
  var textSize = 100;
  var contrast = false;
  function applyContrast() {
    document.documentElement.classList.toggle("contrast", contrast);
    $("contrast-toggle").setAttribute("aria-pressed", String(contrast));
  }
  function toggleContrast() {
    contrast = !contrast;
    applyContrast();
  }
  function applyTextSize() {
    var root = document.documentElement;
    TEXT_SIZES.forEach(function (size) { root.classList.toggle("size-" + size, size === textSize && size !== 100); });
    $("size-toggle").dataset.size = String(textSize);
    var label = $("size-label");
    // Without a catalogue the page's own (Ukrainian) string, with the new size in it.
    label.textContent = window.cnapI18n.loaded(lang) ? gettext("tablet.text_size", { pct: textSize })
                                                     : label.textContent.replace(/\d+/, String(textSize));
  }
  function cycleTextSize() {
    textSize = TEXT_SIZES[(TEXT_SIZES.indexOf(textSize) + 1) % TEXT_SIZES.length];
    applyTextSize();
  }
  function forgetVisitor() {
    if (contrast) { contrast = false; applyContrast(); }
    if (textSize !== TEXT_SIZES[0]) { textSize = TEXT_SIZES[0]; applyTextSize(); }
    if (lang !== "uk") {
      lang = "uk";
      applyLanguage();
      if (body.dataset.state === "main") renderMain();   // under the attract loop
    }
  }

  function toggleLanguage() {
    lang = lang === "uk" ? "en" : "uk";
    applyLanguage();
    var state = body.dataset.state;
    if (state === "main") renderMain();
    else if (state === "staff") renderStaff();
    else if (state === "followup" && current) {
      var last = current.path.length ? current.path[current.path.length - 1] : null;
      var q = last ? config.survey.questions[last[0]].options.filter(function (o) { return o.id === last[1]; })[0].next
                   : config.survey.main.options.filter(function (o) { return o.id === current.main; })[0].next;
      showQuestion(q);
    } else if (state === "nps") showNps();
    else if (state === "comment") {
      var text = $("comment").value; showComment(); $("comment").value = text;
    }
  }

  // ---- start ------------------------------------------------------------------------------------
  function adoptTokenFromLink() {
    var match = /[#&]token=([A-Za-z0-9_-]+)/.exec(location.hash);
    if (match) {
      localStorage.setItem(TOKEN_KEY, match[1]);
      localStorage.removeItem(CONFIG_KEY);
      history.replaceState(null, "", location.pathname);
    }
  }

  function finalizeLeftovers() {
    // Drafts left by a reload or a crash are complete as far as the visitor went: send them.
    return allEntries().then(function (entries) {
      return Promise.all(entries.filter(function (e) { return e.state === "draft"; }).map(function (e) {
        e.state = "ready";
        return putEntry(e);
      }));
    });
  }

  function registerServiceWorker() {
    if (!("serviceWorker" in navigator)) { body.dataset.sw = "unsupported"; return; }
    navigator.serviceWorker.register(body.dataset.sw, { scope: body.dataset.scope }).then(function () {
      return navigator.serviceWorker.ready;
    }).then(function () { body.dataset.sw = "ready"; }).catch(function () { body.dataset.sw = "failed"; });
  }

  function wire() {
    $("lang-toggle").addEventListener("click", toggleLanguage);
    $("contrast-toggle").addEventListener("click", toggleContrast);
    $("size-toggle").addEventListener("click", cycleTextSize);
    $("staff-open").addEventListener("click", openStaff);
    $("staff-back").addEventListener("click", startMain);
    $("shift-form").addEventListener("submit", startShift);
    $("shift-end").addEventListener("click", endShift);
    $("comment-send").addEventListener("click", function () {
      var text = $("comment").value.trim();
      current.comment = text ? text.slice(0, config.survey.comment_max) : null;
      body.dataset.commentDone = current.uuid;
      finish(true);
    });
    document.querySelectorAll(".step-skip").forEach(function (b) { b.addEventListener("click", skip); });
    $("fullscreen").addEventListener("click", function () {
      var el = document.documentElement;
      if (el.requestFullscreen) el.requestFullscreen().catch(function () { /* refused: stay windowed */ });
    });
    $("attract").addEventListener("pointerdown", stopAttract);
    $("attract").addEventListener("click", stopAttract);
    ["pointerdown", "keydown", "input"].forEach(function (name) {
      document.addEventListener(name, function () {
        if (body.dataset.state === "main") armAttract();
        else if (current) armStepTimeout();
      }, { passive: true });
    });
    window.addEventListener("online", function () { scheduleSync(10); });
    window.cnapTablet = { sync: sync, attract: startAttract, status: updateStatus };
  }

  document.addEventListener("DOMContentLoaded", function () {
    wire();
    adoptTokenFromLink();
    registerServiceWorker();
    if (!token()) { loadCatalogues().then(function () { showUnpaired(false); }); return; }
    Promise.all([finalizeLeftovers().then(loadConfig), loadCatalogues()]).then(function (both) {
      var cfg = both[0];
      if (!cfg) { if (body.dataset.state !== "unpaired") showUnpaired(false); return; }
      if (body.dataset.state === "unpaired") return;
      applyLanguage();
      startMain();
      updateStatus();
      scheduleSync(100);
    });
  });
})();
