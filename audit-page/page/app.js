"use strict";
// The auditor page. Every statement shown comes from the verifier (the ledger's Rust
// code compiled to WebAssembly, in VERIFIER_WASM above); text from a proof or a node is
// only ever put in the page as text (textContent), never as markup.
(() => {
  const $ = (id) => document.getElementById(id);
  const GENESIS_KEY = "cbec-audit-genesis";
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  let verifier = null;

  async function loadVerifier() {
    const bytes = Uint8Array.from(atob(VERIFIER_WASM), (c) => c.charCodeAt(0));
    const { instance } = await WebAssembly.instantiate(bytes, {});
    return instance.exports;
  }

  // Writes `parts` into the verifier's input, runs `run` (which returns the answer's
  // length) and parses the JSON answer.
  function call(parts, run) {
    const total = parts.reduce((n, p) => n + p.length, 0);
    const at = verifier.input(total);
    let offset = at;
    for (const part of parts) {
      new Uint8Array(verifier.memory.buffer, offset, part.length).set(part);
      offset += part.length;
    }
    const length = run();
    const answer = new Uint8Array(verifier.memory.buffer, verifier.output(), length);
    return JSON.parse(decoder.decode(answer));
  }

  function genesisBytes() {
    const text = localStorage.getItem(GENESIS_KEY);
    return text === null ? null : encoder.encode(text);
  }

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function time(ms) {
    return new Date(ms).toISOString();
  }

  function short(hash) {
    return String(hash).slice(0, 16);
  }

  function banner(kind, text) {
    const b = $("banner");
    b.className = "banner " + kind;
    b.textContent = text;
  }

  function showGenesis() {
    const bytes = genesisBytes();
    const status = $("genesis-status");
    if (bytes === null) {
      status.className = "status";
      status.textContent = "No genesis file loaded.";
      return;
    }
    const answer = call([bytes], () => verifier.genesis_input());
    if (answer.error) {
      status.className = "status bad";
      status.textContent = "This genesis file is not valid: " + answer.error;
      return;
    }
    status.className = "status ok";
    status.textContent = "Genesis loaded: chain id " + answer.chain_id + " (" + answer.suite +
      "; agencies " + answer.agencies.join(", ") + "). Compare the chain id out of band.";
    status.dataset.chainId = answer.chain_id;
  }

  function table(headers, rows) {
    const t = el("table");
    const head = el("tr");
    for (const h of headers) head.appendChild(el("th", h));
    const thead = el("thead");
    thead.appendChild(head);
    t.appendChild(thead);
    const body = el("tbody");
    for (const row of rows) {
      const tr = el("tr");
      for (const cell of row) {
        const td = el("td");
        if (cell instanceof Node) td.appendChild(cell); else td.textContent = String(cell);
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
    t.appendChild(body);
    return t;
  }

  function blockCell(block) {
    const span = el("span");
    span.appendChild(el("span", "block " + block.height + " "));
    span.appendChild(el("span", "(" + short(block.hash) + ")", "hash"));
    return span;
  }

  function attributes(map) {
    return Object.entries(map || {}).map(([k, v]) => k + "=" + v).join("  ");
  }

  function hexText(hex) {
    if (hex === null || hex === undefined) return "absent";
    const bytes = new Uint8Array(hex.match(/../g)?.map((h) => parseInt(h, 16)) || []);
    const text = decoder.decode(bytes);
    return /^[\x20-\x7e]*$/.test(text) ? text : hex;
  }

  function eventsTable(timeline) {
    return table(
      ["#", "event", "enterprise or agency", "time", "block", "certified by", "attributes", "links"],
      timeline.map((e) => {
        const links = el("span", "", "link");
        links.appendChild(el("div", "prev " + (e.prev ? short(e.prev) : "none (first)")));
        links.appendChild(el("div", "this " + short(e.event_hash)));
        links.appendChild(el("div", "tx " + short(e.tx_hash)));
        const made = e.kind === "consumed" ? "  transformed into: " : "  split into: ";
        const facts = attributes(e.attributes) + ((e.children || []).length
          ? made + e.children.map((c) => c.goods_id + " (" + c.quantity + ")").join(", ")
          : "") + (e.kind === "consumed" && (e.members || []).length
          ? "  inputs: " + e.members.join(", ")
          : "");
        return [e.seq, e.kind, e.actor, time(e.block.time_ms), blockCell(e.block),
          e.block.certified_by.join(", "), facts, links];
      }));
  }

  function renderProvenance(s, into) {
    into.appendChild(el("h2", "Provenance of " + s.goods_id + ": " + s.timeline.length +
      " events, complete as of block " + s.head.height + " (" + time(s.head.time_ms) + ")"));
    into.appendChild(eventsTable(s.timeline));
    // The goods it was made from (lots split, inputs transformed), each up to the event
    // that made the goods above it.
    for (const ancestor of s.ancestors || []) {
      const section = el("section", null, "ancestor");
      const last = ancestor.timeline[ancestor.timeline.length - 1];
      const transformed = last && last.kind === "consumed";
      section.appendChild(el("h3", (transformed ? "Made from " : "Split from ") +
        ancestor.goods_id + ": its " + ancestor.timeline.length + " events up to the " +
        (transformed ? "transformation" : "split") + " that made the goods above"));
      section.appendChild(eventsTable(ancestor.timeline));
      into.appendChild(section);
    }
  }

  function renderTx(s, into) {
    into.appendChild(el("h2", "Transaction " + short(s.tx_hash)));
    const outcome = s.outcome.status === "accepted"
      ? el("span", "accepted" + (s.outcome.events.length ? ": " + s.outcome.events.map((e) =>
        e.kind + " " + e.attributes.map((a) => a.key + "=" + a.value).join(" ")).join("; ") : ""))
      : el("span", "refused by rule " + s.outcome.rule + ": " + s.outcome.message, "rule");
    into.appendChild(table(["field", "value"], [
      ["transaction", s.tx_hash],
      ["call", s.chaincode + " " + s.method],
      ["sender", s.sender],
      ["outcome", outcome],
      ["block", blockCell(s.block)],
      ["time", time(s.block.time_ms)],
      ["certified by", s.block.certified_by.join(", ")],
    ]));
  }

  function renderState(s, into) {
    into.appendChild(el("h2", "State at block " + s.block.height));
    into.appendChild(table(["field", "value"], [
      ["key", hexText(s.key)],
      ["value", s.value === null ? "absent (proven absent)" : hexText(s.value)],
      ["block", blockCell(s.block)],
      ["time", time(s.block.time_ms)],
      ["certified by", s.block.certified_by.join(", ")],
    ]));
  }

  function verifyProof(proof, source) {
    const result = $("result");
    result.replaceChildren();
    const genesis = genesisBytes();
    if (genesis === null) {
      banner("failed", "NOT VERIFIED: load a genesis file first");
      return;
    }
    const answer = call([genesis, proof], () => verifier.verify_input(genesis.length));
    if (!answer.verified) {
      banner("failed", "NOT VERIFIED: " + answer.at + ": " + answer.problem);
      result.dataset.failedAt = answer.at;
      return;
    }
    banner("verified", "Verified against genesis " + answer.chain_id + " (" + source + ")");
    const s = answer.statement;
    if (s.kind === "provenance") renderProvenance(s, result);
    else if (s.kind === "tx") renderTx(s, result);
    else renderState(s, result);
  }

  async function fetchGoods(event) {
    event.preventDefault();
    const id = $("goods-id").value.trim();
    if (!id) return;
    $("result").replaceChildren();
    if (location.protocol === "file:") {
      banner("failed", "NOT VERIFIED: this offline copy has no node to ask; open a saved proof file");
      return;
    }
    banner("working", "Fetching the proof of " + id + " …");
    const headers = { Accept: "application/octet-stream" };
    const token = $("token").value.trim();
    if (token) headers.Authorization = "Bearer " + token;
    try {
      const url = new URL("../v1/proof/provenance/" + encodeURIComponent(id), location.href);
      const response = await fetch(url, { headers });
      const body = new Uint8Array(await response.arrayBuffer());
      if (!response.ok) {
        let message = decoder.decode(body);
        try { message = JSON.parse(message).error || message; } catch (_) { /* as text */ }
        banner("failed", "NOT VERIFIED: the node answered " + response.status + ": " + message);
        return;
      }
      verifyProof(body, "the proof of " + id + " from " + url.host);
    } catch (e) {
      banner("failed", "NOT VERIFIED: cannot fetch the proof: " + e);
    }
  }

  function readFile(input, then) {
    const file = input.files && input.files[0];
    if (!file) return;
    const reader = new FileReader();
    reader.onload = () => then(new Uint8Array(reader.result), file.name);
    reader.readAsArrayBuffer(file);
    // So that choosing the same file again (say, after changing the genesis) reads it.
    input.value = "";
  }

  async function main() {
    $("code-hash").textContent = document.body.dataset.codeHash;
    try {
      verifier = await loadVerifier();
    } catch (e) {
      banner("failed", "NOT VERIFIED: the verifier did not load: " + e);
      return;
    }
    showGenesis();
    $("genesis-file").addEventListener("change", (e) => readFile(e.target, (bytes) => {
      localStorage.setItem(GENESIS_KEY, decoder.decode(bytes));
      showGenesis();
      $("result").replaceChildren();
      banner("idle", "Genesis changed: verify a proof again.");
    }));
    $("proof-file").addEventListener("change", (e) => readFile(e.target, (bytes, name) =>
      verifyProof(bytes, "file " + name)));
    $("goods-form").addEventListener("submit", fetchGoods);
    // For scripts (and the tests that compare this verifier with `cbec verify`): the
    // verifier's answer for a genesis file and a proof, as bytes.
    window.cbecVerify = (genesis, proof) =>
      call([genesis, proof], () => verifier.verify_input(genesis.length));
    // A Digital Link resolved here (`/01/{gtin}/21/{id}` -> `?goods={id}`): show that good.
    const linked = new URLSearchParams(location.search).get("goods");
    if (linked && location.protocol !== "file:") {
      $("goods-id").value = linked;
      if (genesisBytes() !== null) fetchGoods(new Event("submit"));
    }
    document.body.dataset.ready = "true";
  }

  main();
})();
