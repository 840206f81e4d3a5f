// Tandem console: the little every page needs. No inline script anywhere (CSP).
"use strict";
(function () {
  // Forms that do something drastic ask first.
  document.addEventListener("submit", function (ev) {
    var f = ev.target;
    var q = f.getAttribute && f.getAttribute("data-confirm");
    if (q && !window.confirm(q)) { ev.preventDefault(); }
  });
  // A file chosen for a restore fills the text area (the form posts text, not a file).
  document.querySelectorAll("input[type=file][data-fills]").forEach(function (input) {
    input.addEventListener("change", function () {
      var target = document.getElementById(input.getAttribute("data-fills"));
      var file = input.files && input.files[0];
      if (!target || !file) { return; }
      file.text().then(function (t) { target.value = t; });
    });
  });
})();
