// Refreshes the payouts (the element marked data-poll: its URL) every data-every seconds.
// The server renders the HTML and answers 304 while it is unchanged (data-version, its
// ETag), so nothing moves under the reader; when it changed, it is swapped in place keeping
// the deals the reader opened and the element they were on, and the payouts whose status
// changed are said once in the status line (data-news). A button (data-pause) pauses the
// refresh. Stops when the session has ended.
(function () {
  var box = document.querySelector("[data-poll]");
  if (!box || !window.fetch || !window.CSS || !CSS.escape) return;
  var every = Math.max(5, parseInt(box.getAttribute("data-every"), 10) || 15) * 1000;
  var version = box.getAttribute("data-version") || "";
  var news = document.getElementById(box.getAttribute("data-news"));
  var pause = document.getElementById(box.getAttribute("data-pause"));
  var paused = false;
  var timer = null;
  var asked = 0;    // requests made
  var applied = 0;  // the latest request whose answer was used: an older answer never is

  function statuses() {
    var seen = {};
    box.querySelectorAll("[data-payout]").forEach(function (card) {
      var deal = card.closest("[data-deal]");
      var title = card.querySelector("h3");
      seen[card.getAttribute("data-payout")] =
        (deal ? "Deal " + deal.getAttribute("data-deal") + ", " : "") + (title ? title.textContent.trim() : "");
    });
    return seen;
  }

  function where(element) {
    if (!element || !box.contains(element)) return null;
    if (element.getAttribute("href")) return '[href="' + CSS.escape(element.getAttribute("href")) + '"]';
    var deal = element.closest("[data-deal]");
    if (element.tagName === "SUMMARY" && deal) return '[data-deal="' + CSS.escape(deal.getAttribute("data-deal")) + '"] summary';
    return null;
  }

  function swap(html) {
    var before = statuses();
    var opened = [];
    box.querySelectorAll("[data-deal] details[open]").forEach(function (details) {
      opened.push(details.closest("[data-deal]").getAttribute("data-deal"));
    });
    var focused = where(document.activeElement);
    box.innerHTML = html;
    opened.forEach(function (deal) {
      var details = box.querySelector('[data-deal="' + CSS.escape(deal) + '"] details');
      if (details) details.open = true;
    });
    var again = focused && box.querySelector(focused);
    if (again) again.focus({ preventScroll: true });
    var after = statuses();
    var changed = Object.keys(after).filter(function (id) { return before[id] !== after[id]; });
    if (news && changed.length) news.textContent = changed.map(function (id) { return after[id]; }).join(". ") + ".";
  }

  function refresh() {
    timer = null;
    var number = ++asked;
    fetch(box.getAttribute("data-poll"), {
      credentials: "same-origin", cache: "no-store", headers: { "If-None-Match": version }
    })
      .then(function (r) {
        if (r.status === 401) { location.reload(); return null; }
        if (!r.ok) return null;  // 304: unchanged
        return r.text().then(function (html) { return { html: html, version: r.headers.get("ETag") || "" }; });
      })
      .then(function (got) {
        if (got === null || paused || number < applied) return;  // paused: fetched again later
        applied = number;
        if (got.version === version) return;
        version = got.version;
        swap(got.html);
      })
      .catch(function () {})
      .then(function () { if (!paused && timer === null) timer = setTimeout(refresh, every); });
  }

  if (pause) {
    pause.hidden = false;
    pause.addEventListener("click", function () {
      paused = !paused;
      pause.setAttribute("aria-pressed", String(paused));
      pause.textContent = paused ? "Resume updates" : "Pause updates";
      if (paused && timer !== null) { clearTimeout(timer); timer = null; }
      if (!paused) refresh();
    });
  }
  timer = setTimeout(refresh, every);
})();
