// Browser tests of the console, in Debian's headless Chromium driven by playwright-core.
// Started by the Rust lab test tests/console.rs inside the client's network namespace, with a
// real tandemd pair (lb-a, lb-b), a VIP and two web servers behind it:
//
//   TANDEM_A, TANDEM_B   https://10.0.0.2:9443, https://10.0.0.3:9443 (management)
//   TANDEM_VIP           http://10.0.0.100/ (the service balanced over web1 and web2)
//   TANDEM_PASSWORD      the admin's password
//   TANDEM_SCREENSHOTS   where to write a PNG of each page (optional)
//
// Each step waits with a generous deadline (design.md: three times the expected figure or
// more) and fails with what it saw.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import http from "node:http";
import { chromium } from "playwright-core";

const A = process.env.TANDEM_A;
const B = process.env.TANDEM_B;
const VIP = process.env.TANDEM_VIP;
const PASSWORD = process.env.TANDEM_PASSWORD;
const SHOTS = process.env.TANDEM_SCREENSHOTS || "";
assert.ok(A && B && VIP && PASSWORD, "TANDEM_A, TANDEM_B, TANDEM_VIP and TANDEM_PASSWORD are needed");

let browser;
let profile;
let trafficOn = false;
let served = 0;

before(async () => {
  profile = mkdtempSync(join(tmpdir(), "tandem-chromium-"));
  if (SHOTS) { mkdirSync(SHOTS, { recursive: true }); }
  // A fresh profile each run (playwright passes it as --user-data-dir). The management
  // certificate is self-signed: the test accepts it, as an operator would after checking its
  // fingerprint.
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    ignoreHTTPSErrors: true,
    viewport: { width: 1360, height: 900 },
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
});

after(async () => {
  trafficOn = false;
  if (browser) { await browser.close(); }
  if (profile) { rmSync(profile, { recursive: true, force: true }); }
});

async function newPage() {
  return browser.newPage();
}

async function shot(page, name) {
  if (SHOTS) { await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true }); }
}

async function login(page, base) {
  await page.goto(`${base}/login`);
  await page.fill("input[name=username]", "admin");
  await page.fill("input[name=password]", PASSWORD);
  await Promise.all([page.waitForURL(`${base}/`), page.click("button[type=submit]")]);
}

async function until(what, deadlineMs, check) {
  const end = Date.now() + deadlineMs;
  let last;
  while (Date.now() < end) {
    last = await check();
    if (last && last.ok) { return last; }
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.fail(`timed out after ${deadlineMs} ms waiting for ${what}; last seen: ${JSON.stringify(last)}`);
}

// Twenty requests a second to the VIP, from this (the client's) namespace.
function startTraffic() {
  trafficOn = true;
  const agent = new http.Agent({ keepAlive: false });
  const one = () => {
    if (!trafficOn) { return; }
    const req = http.get(VIP, { agent, timeout: 2000 }, (res) => { res.resume(); res.on("end", () => { served++; }); });
    req.on("error", () => {});
    req.on("timeout", () => req.destroy());
    setTimeout(one, 50);
  };
  one();
}

// The last `n` seconds of a series as the dashboard's graph holds it.
async function graphTail(page, series, n) {
  return page.evaluate(([s, k]) => {
    const c = window.tandemGraph && window.tandemGraph.series(s);
    if (!c) { return null; }
    const rate = c.rps.some((v) => v > 0) ? c.rps : c.cps;
    return rate.slice(-k);
  }, [series, n]);
}

test("log in, add a service, drain a server and watch its traffic fall to zero", async () => {
  const page = await newPage();
  await page.goto(`${A}/`);
  assert.match(page.url(), /\/login/, "the console asks for a login first");
  await shot(page, "login");
  await login(page, A);
  assert.equal(await page.textContent("#node-role"), "active");

  // Add a service through the form; a wrong address is shown next to its field first.
  await page.goto(`${A}/services/new`);
  await page.fill("input[name=name]", "shop");
  await page.selectOption("select[name=protocol]", "http");
  await page.fill("input[name=listen]", "10.0.0.100:8080x");
  await page.selectOption("select[name=pool]", "web");
  await page.click("#service-form button[type=submit]");
  assert.ok(await page.isVisible("p.field-error[data-field=listen]"), "the error is next to the listen field");
  await shot(page, "service-form-error");
  await page.fill("input[name=listen]", "10.0.0.100:8080");
  await Promise.all([page.waitForURL(`${A}/services`), page.click("#service-form button[type=submit]")]);
  assert.ok(await page.isVisible("tr[data-series='service:shop']"), "the new service is listed");
  await shot(page, "services");

  // Traffic through the VIP; both servers take some.
  startTraffic();
  await page.goto(`${A}/`);
  await until("both servers to get traffic in the graph", 30000, async () => {
    const w1 = await graphTail(page, "server:web/web1", 3);
    const w2 = await graphTail(page, "server:web/web2", 3);
    return { ok: !!w1 && !!w2 && w1.some((v) => v > 0) && w2.some((v) => v > 0), w1, w2 };
  });
  await page.waitForTimeout(1500);
  await shot(page, "dashboard");

  // Drain web1 on the pools page.
  const pools = await newPage();
  await login(pools, A);
  await pools.goto(`${A}/pools`);
  await Promise.all([
    pools.waitForURL(/\/pools/),
    pools.click("tr[data-server='web/web1'] button[data-action=drain]"),
  ]);
  assert.match(await pools.textContent(".flash"), /web\/web1 is now drain/);
  await until("web1 to show drain on the pools page", 10000, async () => {
    await pools.reload();
    const admin = await pools.textContent("tr[data-server='web/web1'] [data-metric=admin]");
    return { ok: admin.trim() === "drain", admin };
  });
  await shot(pools, "pools");

  // The dashboard's graph: web1 falls to zero within seconds while web2 carries on.
  const seen = await until("web1's traffic to fall to zero in the graph", 30000, async () => {
    const w1 = await graphTail(page, "server:web/web1", 3);
    const w2 = await graphTail(page, "server:web/web2", 3);
    return { ok: !!w1 && w1.length === 3 && w1.every((v) => v === 0) && w2.some((v) => v > 0), w1, w2 };
  });
  assert.ok(seen.w2.some((v) => v > 0));
  const cell = await page.getAttribute("tr[data-series='server:web/web1'] [data-metric=rps]", "data-value");
  assert.equal(Number(cell), 0, "the live table says 0 for web1 too");

  // Enable it again: traffic comes back.
  await pools.goto(`${A}/pools`);
  await Promise.all([pools.waitForURL(/\/pools/), pools.click("tr[data-server='web/web1'] button[data-action=enabled]")]);
  await until("web1 to get traffic again", 30000, async () => {
    const w1 = await graphTail(page, "server:web/web1", 3);
    return { ok: !!w1 && w1.some((v) => v > 0), w1 };
  });
  assert.ok(served > 50, `requests were served through the VIP (${served})`);
  await page.close();
  await pools.close();
});

test("the other pages render, and the certificates page warns of an expiring certificate", async () => {
  const page = await newPage();
  await login(page, A);
  for (const [path, name] of [["/certificates", "certificates"], ["/ha", "ha"], ["/history", "history"], ["/audit", "audit"], ["/users", "users"]]) {
    const res = await page.goto(`${A}${path}`);
    assert.equal(res.status(), 200, path);
    await shot(page, name);
  }
  await page.goto(`${A}/certificates`);
  assert.ok(await page.isVisible("[data-cert=soon] [data-status=expiring]"), "a certificate that expires within 30 days is flagged");
  await page.goto(`${A}/audit`);
  assert.ok(await page.isVisible("tr[data-action='server.drain']"), "the drain is in the audit log");
  await page.close();
});

test("fail over and see both dashboards follow", async () => {
  const a = await newPage();
  await login(a, A);
  await a.goto(`${A}/ha`);
  a.on("dialog", (d) => d.accept());
  await Promise.all([a.waitForURL(/\/ha/, { timeout: 20000 }), a.click("#failover-now")]);
  await until("lb-a to show passive", 20000, async () => {
    await a.goto(`${A}/`);
    const role = (await a.textContent("#node-role")).trim();
    return { ok: role === "passive", role };
  });
  const b = await newPage();
  await login(b, B);
  await until("lb-b to show active and hold the VIP", 20000, async () => {
    await b.goto(`${B}/`);
    const role = (await b.textContent("#node-role")).trim();
    const holder = await b.textContent("#vips [data-field=holder]");
    return { ok: role === "active" && holder.includes("this box"), role, holder };
  });
  await shot(b, "dashboard-after-failover");
  // The passive box refuses edits, naming the active one.
  await a.goto(`${A}/pools`);
  await a.click("tr[data-server='web/web2'] button[data-action=drain]");
  assert.match(await a.textContent("p.error"), /passive/);
  await b.goto(`${B}/ha`);
  await shot(b, "ha-after-failover");
  await a.close();
  await b.close();
});

test("roll back a config version from the history page", async () => {
  const page = await newPage();
  await login(page, B);
  await page.goto(`${B}/services`);
  const before = await page.locator("tr[data-series^='service:']").count();
  // lb-b started from the same file without `shop`; add one here, then roll it back.
  await page.goto(`${B}/services/new`);
  await page.fill("input[name=name]", "temp");
  await page.fill("input[name=listen]", "10.0.0.100:8181");
  await page.selectOption("select[name=pool]", "web");
  await Promise.all([page.waitForURL(`${B}/services`), page.click("#service-form button[type=submit]")]);
  assert.equal(await page.locator("tr[data-series^='service:']").count(), before + 1);
  await page.goto(`${B}/history`);
  const previous = await page.getAttribute("#versions tbody tr:nth-child(2)", "data-version");
  page.on("dialog", (d) => d.accept());
  await Promise.all([page.waitForURL(`${B}/history`), page.click(`button[data-rollback='${previous}']`)]);
  assert.match(await page.textContent(".flash"), /Rolled back/);
  await page.goto(`${B}/services`);
  assert.equal(await page.locator("tr[data-series^='service:']").count(), before, "the service is gone again");
  await page.goto(`${B}/history`);
  await shot(page, "history-after-rollback");
  const first = await page.getAttribute("#versions tbody tr:first-child", "data-version");
  await page.goto(`${B}/history/diff?from=${previous}&to=${first}`);
  await shot(page, "diff");
  await page.close();
});
