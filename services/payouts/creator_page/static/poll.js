// Refreshes the part of the page marked data-poll (its URL) every data-every seconds, in
// place: the server renders the HTML, this only swaps it. Stops when the session has ended.
(function () {
  var box = document.querySelector("[data-poll]");
  if (!box || !window.fetch) return;
  var every = Math.max(5, parseInt(box.getAttribute("data-every"), 10) || 15) * 1000;
  function refresh() {
    fetch(box.getAttribute("data-poll"), { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { if (r.status === 401) { location.reload(); return null; } return r.ok ? r.text() : null; })
      .then(function (html) { if (html !== null) box.innerHTML = html; })
      .catch(function () {})
      .then(function () { setTimeout(refresh, every); });
  }
  setTimeout(refresh, every);
})();
