"""Drives the auditor page in headless Chromium (Playwright, pointed at Debian's
chromium). Called by cli/tests/audit_page.rs with one JSON argument; exits non-zero
with the failed check on stderr."""

import json
import sys

from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def check(condition, what):
    if not condition:
        print(f"browser check failed: {what}", file=sys.stderr)
        sys.exit(1)


def ready(page, url):
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)


def banner(page, kind):
    page.wait_for_selector(f"#banner.{kind}", timeout=30_000)
    return page.inner_text("#banner")


# Each action below waits for its own outcome: the page reads files asynchronously, so
# a check made right after choosing a file could see the state before it.

def load_genesis(page, path, chain_id):
    page.set_input_files("#genesis-file", path)
    page.wait_for_function(
        "(id) => document.getElementById('genesis-status').dataset.chainId === id",
        arg=chain_id, timeout=30_000)


def open_proof(page, path, kind):
    page.evaluate("document.getElementById('banner').className = 'banner idle'")
    page.set_input_files("#proof-file", path)
    return banner(page, kind)


def fetch_goods(page, goods_id, kind):
    page.evaluate("document.getElementById('banner').className = 'banner idle'")
    page.fill("#goods-id", goods_id)
    page.click("#fetch-goods")
    return banner(page, kind)


def main():
    a = json.loads(sys.argv[1])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=a["chromium"], args=CHROMIUM_ARGS)

        # The page a node serves: load genesis, fetch the demo parcel, see it verified.
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        ready(page, a["served"])
        check(page.inner_text("#code-hash") == a["code_hash"], "the page shows its code hash")
        load_genesis(page, a["genesis"], a["chain_id"])
        status = page.inner_text("#genesis-status")
        check(a["chain_id"] in status, f"genesis status names the chain id: {status}")
        text = fetch_goods(page, a["goods_id"], "verified")
        check(a["chain_id"] in text, f"verified against the chain: {text}")
        rows = page.locator("#result tbody tr")
        check(rows.count() == a["events"], f"{rows.count()} timeline rows, not {a['events']}")
        first = rows.nth(0).inner_text()
        check("produced" in first, f"the first event is produced: {first}")
        page.screenshot(path=a["screenshot"], full_page=True)

        # One byte changed: NOT VERIFIED with the path `cbec verify` names, nothing shown.
        text = open_proof(page, a["tampered"], "failed")
        check(a["tampered_failure"] in text, f"tampered: `{text}` lacks `{a['tampered_failure']}`")
        check(page.locator("#result tbody tr").count() == 0, "nothing shown as true")

        # The genesis survives a reload (local storage); the saved proof verifies.
        ready(page, a["served"])
        check(a["chain_id"] in page.inner_text("#genesis-status"), "genesis kept")
        open_proof(page, a["proof"], "verified")

        # The parcel's GS1 Digital Link (its label's QR code) resolves to this page,
        # which fetches and verifies that parcel's timeline by itself.
        ready(page, a["digital_link"])
        banner(page, "verified")
        rows = page.locator("#result tbody tr").count()
        check(rows == a["events"], f"the Digital Link shows the parcel: {rows} rows")

        # A parcel split from the demo's meat lot: its timeline and, below it, the lot's
        # events up to the split, all verified.
        fetch_goods(page, a["lot_parcel"], "verified")
        ancestor = page.inner_text("#result .ancestor h3")
        check("Split from MEAT-LOT-" in ancestor, f"the lot is shown: {ancestor}")
        check("split into:" in page.inner_text("#result .ancestor"), "where the lot went")

        # A transaction proof of a refusal shows the rule; a state proof its key.
        open_proof(page, a["refused"], "verified")
        rule = page.inner_text("#result .rule")
        check("refused by rule ROLE" in rule, f"the refusal's rule: {rule}")
        open_proof(page, a["state"], "verified")
        state = page.inner_text("#result")
        check("State at block" in state and "goods/head/" in state, f"the state proof: {state}")

        # Another chain's genesis: the same proof fails.
        load_genesis(page, a["other_genesis"], a["other_chain_id"])
        text = open_proof(page, a["proof"], "failed")
        check("chain" in text, f"another chain: {text}")
        context.close()

        # The offline copy from file://, with the network cut.
        context = browser.new_context(offline=True)
        context.route("**/*", lambda route: route.continue_()
                      if route.request.url.startswith("file:") else route.abort())
        page = context.new_page()
        ready(page, a["offline"])
        check(page.inner_text("#code-hash") == a["code_hash"], "offline copy's code hash")
        load_genesis(page, a["genesis"], a["chain_id"])
        open_proof(page, a["proof"], "verified")
        rows = page.locator("#result tbody tr").count()
        check(rows == a["events"], f"offline: {rows} rows")
        text = fetch_goods(page, a["goods_id"], "failed")
        check("offline" in text, f"offline copy asks for a file: {text}")

        # The WebAssembly verifier and `cbec verify` on a corpus of proofs: the same
        # verdict and the same failure path and message on every one.
        with open(a["corpus"]) as f:
            cases = json.load(f)
        answers = page.evaluate(
            """(cases) => {
                const bytes = (hex) => Uint8Array.from(hex.match(/../g) || [], (h) => parseInt(h, 16));
                return cases.map((c) => window.cbecVerify(bytes(c.genesis), bytes(c.proof)));
            }""",
            cases,
        )
        for i, (case, answer) in enumerate(zip(cases, answers)):
            got = "verified" if answer["verified"] else f"{answer['at']}: {answer['problem']}"
            check(got == case["expected"], f"case {i} ({case['name']}): wasm says `{got}`, cbec says `{case['expected']}`")
        context.close()
        browser.close()
    print(f"browser checks passed ({len(cases)} proofs compared)")


if __name__ == "__main__":
    main()
