// 1. Inline formulas wider than their line box (long formulas on a phone) get the class
//    ntk-wide-inline, which makes them scroll sideways in their own box (ntk-book.css) rather
//    than widen the page. Run when MathJax has typeset the page and again on resize.
// 2. Hover previews (sphinx-tippy): the math in a tip is typeset when the tip is added to the
//    page, where MathJax can measure it.
// 3. Printing opens every collapsed <details> (hidden code cells); closing them again after.
// 4. Multi-panel figures (images more than twice as wide as tall) get the class ntk-panels and
//    their link box ntk-panels-box: on a phone they keep their design width, so that their
//    text stays at least 11 px, and scroll sideways panel by panel (ntk-book.css).
(function () {
  "use strict";

  function markWideInlineMath() {
    document.querySelectorAll('mjx-container:not([display="true"])').forEach(function (m) {
      m.classList.remove("ntk-wide-inline");
      var box = m.parentElement && m.parentElement.closest("p, li, dd, td, figcaption, div");
      if (box && m.getBoundingClientRect().width > box.clientWidth) {
        m.classList.add("ntk-wide-inline");
      }
    });
  }

  function whenTypeset() {
    var mj = window.MathJax;
    if (mj && mj.startup && mj.startup.promise) {
      mj.startup.promise.then(markWideInlineMath);
    } else {
      markWideInlineMath();
    }
  }

  function typesetTips(mutations) {
    var mj = window.MathJax;
    if (!(mj && mj.typesetPromise)) return;
    mutations.forEach(function (m) {
      m.addedNodes.forEach(function (node) {
        if (node.nodeType === 1 && node.hasAttribute("data-tippy-root")) {
          mj.typesetPromise([node]).catch(function () {});
        }
      });
    });
  }

  function watchTips() {
    new MutationObserver(typesetTips).observe(document.body, { childList: true });
  }

  if (document.body) {
    watchTips();
  } else {
    document.addEventListener("DOMContentLoaded", watchTips);
  }

  var opened = [];
  window.addEventListener("beforeprint", function () {
    document.querySelectorAll("details:not([open])").forEach(function (d) {
      d.open = true;
      opened.push(d);
    });
  });
  window.addEventListener("afterprint", function () {
    opened.forEach(function (d) { d.open = false; });
    opened = [];
  });

  function markPanelFigures() {
    document.querySelectorAll("article figure img, article div.cell_output img")
      .forEach(function (img) {
        var w = parseFloat(img.style.width) || img.naturalWidth / 2;
        var h = parseFloat(img.style.height) || img.naturalHeight / 2;
        if (w > 0 && h > 0 && w / h > 2) {
          img.classList.add("ntk-panels");
          var box = img.closest("a.image-reference") || img.parentElement;
          box.classList.add("ntk-panels-box");
        }
      });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", markPanelFigures);
  } else {
    markPanelFigures();
  }

  var timer = null;
  window.addEventListener("resize", function () {
    clearTimeout(timer);
    timer = setTimeout(markWideInlineMath, 150);
  });
  if (document.readyState === "complete") {
    whenTypeset();
  } else {
    window.addEventListener("load", whenTypeset);
  }
})();
