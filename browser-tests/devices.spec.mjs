// The demo page in a real browser: two browser contexts are two devices of
// one user; both are listed; revoking one signs it out; a form auto-posted
// from another origin is refused (403). Screenshots of every state go to
// $CLOAKROOM_ARTIFACTS (default target/browser-artifacts).
//
// Starts no server: CLOAKROOM_URL names the running demo (cargo test runs
// this from cloakroom-cli/tests/browser.rs). Exit status 0 when every check
// passed.
import { createServer } from "node:http";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const base = (process.env.CLOAKROOM_URL || "").replace(/\/$/, "");
if (!base) {
  console.error("set CLOAKROOM_URL to the demo's address, e.g. http://127.0.0.1:3000");
  process.exit(2);
}
const artifacts = process.env.CLOAKROOM_ARTIFACTS || "target/browser-artifacts";
mkdirSync(artifacts, { recursive: true });

const failures = [];
function check(ok, what) {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failures.push(what);
}

async function shot(page, name) {
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}

async function ready(page, state) {
  await page.waitForSelector(`body[data-ready="true"][data-state="${state}"]`, { timeout: 15000 });
}

async function reload(page) {
  await page.evaluate(() => { document.body.dataset.ready = ""; });
  await page.reload();
}

async function notices(page) {
  return page.locator("#notices .notice").allTextContents();
}

// Another origin: same host, another port (so same-site, cross-origin: the
// SameSite=Lax cookie still goes along, only the CSRF check can stop it).
function attackerServer(target) {
  const html = `<!doctype html><title>win a prize</title>
<form method="POST" action="${target}/api/logout" enctype="text/plain">
<input name="x" value="y"></form>
<script>document.forms[0].submit()</script>`;
  const server = createServer((_req, res) => {
    res.writeHead(200, { "content-type": "text/html" });
    res.end(html);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // Playwright gives every launch a fresh, empty profile directory.
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
let attacker;
try {
  const username = `dev${Date.now().toString(36)}`;
  const password = "correct horse battery";
  const laptop = await browser.newContext({ userAgent: "Laptop/1.0 (browser test device A)" });
  const phone = await browser.newContext({ userAgent: "Phone/2.0 (browser test device B)" });
  const a = await laptop.newPage();
  const b = await phone.newPage();

  // Device A: sign up (which signs in), by keyboard.
  await a.goto(`${base}/`);
  await ready(a, "signed-out");
  await shot(a, "01-signed-out");
  await a.locator("#su-username").fill(username);
  await a.locator("#su-password").fill(password);
  await a.locator("#su-password").press("Enter");
  await ready(a, "signed-in");
  check((await a.locator("#who").textContent()) === username, "device A is signed in after sign-up");
  const aNotices = await notices(a);
  check(aNotices.some((t) => t.includes(`Signed in as ${username}`)), `flash notice on A: ${JSON.stringify(aNotices)}`);
  await shot(a, "02-signed-up");

  // Device B: sign in with remember-me.
  await b.goto(`${base}/`);
  await ready(b, "signed-out");
  await b.locator("#si-username").fill(username);
  await b.locator("#si-password").fill(password);
  await b.getByLabel("Remember me on this device").check();
  await b.getByRole("button", { name: "Sign in", exact: true }).click();
  await ready(b, "signed-in");
  check(true, "device B is signed in");
  await shot(b, "03-device-b-signed-in");

  // A lists both devices.
  await reload(a);
  await ready(a, "signed-in");
  const rows = a.locator("#devices-body tr");
  check((await rows.count()) === 2, `A lists 2 devices (got ${await rows.count()})`);
  check((await a.locator('#devices-body tr[data-current="true"]').count()) === 1, "exactly one is marked current");
  const phoneRow = a.locator("#devices-body tr", { hasText: "Phone/2.0" });
  check((await phoneRow.count()) === 1, "B's row shows its user agent");
  check((await a.locator('#devices-body tr[data-current="true"] button').count()) === 0, "no Revoke button for the current device");
  await shot(a, "04-two-devices");

  // A revokes B.
  await phoneRow.getByRole("button", { name: /Revoke/ }).click();
  await a.waitForFunction(() => document.querySelectorAll("#devices-body tr").length === 1, null, { timeout: 15000 });
  await ready(a, "signed-in");
  check(true, "A lists 1 device after revoking B");
  const revokeNotices = await notices(a);
  check(revokeNotices.some((t) => /signed out/i.test(t)), `revoke notice on A: ${JSON.stringify(revokeNotices)}`);
  await shot(a, "05-revoked");

  // B reloads: anonymous.
  await reload(b);
  await ready(b, "signed-out");
  check((await b.request.get(`${base}/api/me`)).status() === 401, "B is anonymous after reload (/api/me 401)");
  await shot(b, "06-device-b-revoked");

  // Cross-origin auto-submitted form against A's session.
  attacker = await attackerServer(base);
  const attackUrl = `http://127.0.0.1:${attacker.address().port}/`;
  const evil = await laptop.newPage();
  const answer = evil.waitForResponse((r) => r.url() === `${base}/api/logout`, { timeout: 15000 });
  await evil.goto(attackUrl, { waitUntil: "commit" });
  const status = (await answer).status();
  // A 204 cancels the navigation, so there may be no load event to wait for.
  await evil.waitForTimeout(500);
  await shot(evil, "07-cross-origin-post");
  await reload(a);
  const stillIn = await a
    .waitForSelector('body[data-ready="true"][data-state="signed-in"]', { timeout: 5000 })
    .then(() => true, () => false);
  await shot(a, "08-after-cross-origin-post");
  check(status === 403, `cross-origin form POST answered ${status}, expected 403`);
  check(stillIn, "A is still signed in after the cross-origin form POST");
} catch (e) {
  check(false, `scenario aborted: ${e && e.stack ? e.stack : e}`);
} finally {
  if (attacker) attacker.close();
  await browser.close();
}

if (failures.length) {
  console.error(`${failures.length} browser check(s) failed`);
  process.exit(1);
}
console.log("browser checks passed");
