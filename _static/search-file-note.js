// Search page only (tools/offline_static.py). Opened from file://, the browser refuses the requests that
// fetch result summaries: search titles only, and say how to serve the book.
if (window.location.protocol === "file:") {
  DOCUMENTATION_OPTIONS.SHOW_SEARCH_SUMMARY = false;
  document.addEventListener("DOMContentLoaded", () => {
    const note = document.createElement("p");
    note.className = "search-file-note admonition note";
    note.textContent =
      "This page was opened from a file, so search shows page titles without summaries. For full search, " +
      "serve the book folder and open it over HTTP, for example: python -m http.server -d _build/html " +
      "(then open http://localhost:8000/search.html).";
    const target = document.querySelector("article") || document.body;
    target.prepend(note);
  });
}
