// Render every equation the Markdown left for us: pymdownx.arithmatex (generic mode) wraps
// inline math in <span class="arithmatex">\(...\)</span> and display math in
// <div class="arithmatex">\[...\]</div>. KaTeX (assets/katex/, bundled with the site) renders
// each one in place, with the options the tests use; a span it rejects shows as .katex-error.
"use strict";

function renderMath() {
  document.querySelectorAll(".arithmatex").forEach((element) => {
    const source = element.textContent.trim();
    const display = element.tagName === "DIV";
    katex.render(source.slice(2, -2), element, { displayMode: display, throwOnError: false, strict: "error" });
  });
}

if (typeof document$ !== "undefined") {
  document$.subscribe(renderMath); // Material's page-load observable (instant navigation too)
} else {
  document.addEventListener("DOMContentLoaded", renderMath);
}
