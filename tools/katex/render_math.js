#!/usr/bin/env node
// Render math spans with KaTeX, as strictly as it goes: reads a JSON array of
// {"tex": "...", "display": true|false} on stdin and writes {"rendered": N, "errors":
// [{"index": i, "message": "..."}]} on stdout, one error per span that KaTeX rejects
// (throwOnError: true, strict: "error": a parse error, an unknown command, Unicode text in
// math mode, a comment at the end of a span, a \\ in display mode, ...).
"use strict";

const katex = require("katex");

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const spans = JSON.parse(input);
  const errors = [];
  let rendered = 0;
  spans.forEach((span, index) => {
    try {
      katex.renderToString(span.tex, { displayMode: span.display, throwOnError: true, strict: "error" });
      rendered += 1;
    } catch (error) {
      errors.push({ index, message: String(error.message || error) });
    }
  });
  process.stdout.write(JSON.stringify({ katex: katex.version, rendered, errors }) + "\n");
});
