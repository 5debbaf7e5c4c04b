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
    document.querySelectorAll(SELECTOR).forEach((box) => box.addEventListener("scroll", () => mark(box)));
    markAll();
    window.addEventListener("resize", markAll);
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
