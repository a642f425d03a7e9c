// Live run page: new timeline rows and a fresh board arrive as Server-Sent Events.
// The server renders (and escapes) every fragment; this only puts them in place.
(function () {
  "use strict";
  var table = document.querySelector("table[data-stream]");
  if (!table || !window.EventSource) {
    return;
  }
  var rows = document.getElementById("timeline-rows");
  var source = new EventSource(table.getAttribute("data-stream"));

  source.addEventListener("row", function (message) {
    var data = JSON.parse(message.data);
    if (document.getElementById("row-" + data.seq)) {
      return; // already on the page (a reconnect can repeat a row)
    }
    rows.insertAdjacentHTML("beforeend", data.html);
    var empty = document.getElementById("no-rows");
    if (empty) {
      empty.remove();
    }
    var added = document.getElementById("row-" + data.seq);
    if (added) {
      added.classList.add("fresh");
    }
  });

  source.addEventListener("state", function (message) {
    var parts = JSON.parse(message.data);
    Object.keys(parts).forEach(function (name) {
      var target = document.querySelector('[data-live="' + name + '"]');
      if (target) {
        target.innerHTML = parts[name];
      }
    });
  });

  source.addEventListener("end", function () {
    source.close();
    table.removeAttribute("data-stream");
    document.body.setAttribute("data-run-ended", "yes");
  });
})();
