// Every page: a formula that scrolls sideways (book.css) shows a shadow on the side where it goes on.
(function () {
  const SELECTOR = "div.math > mjx-container, span.math";
  function mark(box) {
    const more = box.scrollWidth - box.clientWidth;
    box.classList.toggle("scroll-more-left", more > 1 && box.scrollLeft > 1);
    box.classList.toggle("scroll-more-right", more > 1 && box.scrollLeft < more - 1);
  }
  function markAll() {
    document.querySelectorAll(SELECTOR).forEach(mark);
  }
  function start() {
    const boxes = document.querySelectorAll(SELECTOR);
    boxes.forEach((box) => box.addEventListener("scroll", () => mark(box)));
    markAll();
    // widths change once MathJax's fonts arrive, and with the window
    if (document.fonts) {
      document.fonts.ready.then(markAll);
    }
    window.addEventListener("load", markAll);
    window.addEventListener("resize", markAll);
    if (window.ResizeObserver) {
      const observer = new ResizeObserver((entries) => entries.forEach((entry) => mark(entry.target)));
      boxes.forEach((box) => observer.observe(box));
    }
  }
  let tries = 0;
  function whenTypeset() {
    if (!document.querySelector(".math") || tries++ > 300) {
      return;
    }
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      MathJax.startup.promise.then(start);
    } else {
      setTimeout(whenTypeset, 100);
    }
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", whenTypeset);
  } else {
    whenTypeset();
  }
})();
