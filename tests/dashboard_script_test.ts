/**
 * @module Tests of lib/dashboard_script.ts: the dashboard in a real browser, Debian's Chromium driven
 * by playwright-core.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import type { Browser, Page } from "playwright-core";
import { startDashboardSetup } from "./dashboard_fixture.ts";
import { printLine } from "../lib/log.ts";

const CHROMIUM = "/usr/bin/chromium";
const haveChromium = (() => {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
})();
// playwright-core probes /proc/sys/fs/binfmt_misc/WSLInterop when it loads; Deno answers a probe
// of /proc without --allow-all by throwing, so such a probe reads as "not there" in this file.
const existsSync = fs.existsSync;
fs.existsSync = (path: fs.PathLike) => {
  try {
    return existsSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotCapable) return false;
    throw err;
  }
};
const { chromium } = await import("playwright-core");

const NAME_SUFFIX = haveChromium ? "" : ` (skipped: no ${CHROMIUM}; apt-get install chromium)`;

async function withBrowser(fn: (browser: Browser) => Promise<void>): Promise<void> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 15_000,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
  try {
    await fn(browser);
  } finally {
    await browser.close();
  }
}

async function chat(
  url: string,
  model: string,
  stream: boolean,
  key?: string,
  content = "hello",
): Promise<void> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(key ? { authorization: `Bearer ${key}` } : {}),
    },
    body: JSON.stringify({ model, stream, messages: [{ role: "user", content }] }),
  });
  await res.text();
  assert.equal(res.status, 200);
}

const digits = (text: string | null) => (text ?? "").replace(/\D/g, "");

/** Collects page errors and requests that left the proxy's origin. */
function watch(page: Page, origin: string): { errors: string[]; foreign: string[] } {
  const seen = { errors: [] as string[], foreign: [] as string[] };
  page.on("pageerror", (err) => seen.errors.push(err.message));
  page.on("console", (msg) => {
    if (msg.type() === "error" && !/401/.test(msg.text())) seen.errors.push(msg.text());
  });
  page.on("request", (req) => {
    if (!req.url().startsWith(origin)) seen.foreign.push(req.url());
  });
  return seen;
}

Deno.test({
  name:
    `dashboard in Chromium: balance, 30 daily bars, the requests just made, screenshot${NAME_SUFFIX}`,
  ignore: !haveChromium,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using s = await startDashboardSetup();
    // A stream that fails after its 200: its row must not read as a success.
    await chat(s.proxy.url, "gpt-4o", true, undefined, "hello [[fake: midstream-error]]");
    await chat(s.proxy.url, "gpt-4o", false);
    await chat(s.proxy.url, "Claude-Sonnet-4.6", true);
    await chat(s.proxy.url, "GPT-4o-mini", false);
    // The balance after these answers, before the page asks for it (the poller refreshes after
    // answers in the background; the page and the assertion must see the same snapshot). A
    // refresh already in flight may predate the last debit: the second one starts after it.
    await s.usage.poller.refresh();
    await s.usage.poller.refresh();
    await withBrowser(async (browser) => {
      const context = await browser.newContext({ viewport: { width: 1100, height: 1400 } });
      const page = await context.newPage();
      page.setDefaultTimeout(10_000);
      const seen = watch(page, s.proxy.url);
      await page.goto(`${s.proxy.url}/`);
      await page.waitForSelector("#app:not([hidden])");
      await page.waitForSelector("#recent tbody tr");
      assert.equal(await page.locator("#login").isVisible(), false);
      assert.equal(
        digits(await page.textContent("#balance")),
        String(s.usage.poller.snapshot!.balance),
      );
      assert.equal(await page.locator("#daily-chart rect.bar").count(), 30);
      const heights = await page.locator("#daily-chart rect.bar").evaluateAll((rects) =>
        rects.map((r) => Number(r.getAttribute("height")))
      );
      assert.ok(heights.every((h) => h > 0), "every seeded day has a bar");
      assert.equal(await page.locator("#recent tbody tr").count(), 4);
      const models = await page.locator("#recent tbody tr td.model").allTextContents();
      assert.equal(models[0], "GPT-4o-mini", "newest first");
      const failed = page.locator("#recent tbody tr").last().locator("td").nth(3);
      assert.equal(await failed.textContent(), "200 · upstream-error");
      assert.equal(await failed.getAttribute("class"), "bad");
      const fine = page.locator("#recent tbody tr").first().locator("td").nth(3);
      assert.equal(await fine.textContent(), "200");
      assert.ok(models.includes("Claude-Sonnet-4.6") && models.includes("gpt-4o"), String(models));
      assert.ok((await page.locator("#models tbody tr").count()) >= 2);
      assert.match(await page.textContent("#guard-state") ?? "", /spending allowed/);
      assert.ok(await page.locator("#balance-chart path.line").count() === 1);
      assert.deepEqual(seen.errors, []);
      assert.deepEqual(seen.foreign, [], "the page loads nothing from elsewhere");

      const dir = await Deno.makeTempDir({ prefix: "poe-proxy-dashboard-" });
      const desktop = `${dir}/dashboard.png`;
      await page.screenshot({ path: desktop, fullPage: true });
      await page.setViewportSize({ width: 390, height: 844 });
      // The charts redraw at the new width (in CSS pixels) after a short debounce.
      const chartWidth = async () => Number(await page.getAttribute("#daily-chart", "width"));
      for (let i = 0; i < 40 && await chartWidth() >= 390; i++) await page.waitForTimeout(50);
      assert.ok(await chartWidth() < 390, "the chart fits the phone's width");
      const phone = `${dir}/dashboard-phone.png`;
      await page.screenshot({ path: phone, fullPage: true });
      const overflow = await page.evaluate<number>(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth",
      );
      assert.ok(overflow <= 0, `the page scrolls sideways on a phone by ${overflow}px`);
      for (const file of [desktop, phone]) {
        printLine(`screenshot: ${file} (${Deno.statSync(file).size} bytes)`);
      }
      await context.close();
    });
  },
});

Deno.test({
  name: `dashboard in Chromium with inbound keys: only the prompt, then the data${NAME_SUFFIX}`,
  ignore: !haveChromium,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using s = await startDashboardSetup({ env: { PROXY_API_KEYS: "dash-key-1" } });
    await chat(s.proxy.url, "gpt-4o", false, "dash-key-1");
    // As above: the page and the assertion must see the same snapshot (a background refresh after
    // the answer once changed it between the two).
    await s.usage.poller.refresh();
    await s.usage.poller.refresh();
    await withBrowser(async (browser) => {
      const context = await browser.newContext({ viewport: { width: 800, height: 900 } });
      const page = await context.newPage();
      page.setDefaultTimeout(10_000);
      const seen = watch(page, s.proxy.url);
      await page.goto(`${s.proxy.url}/`);
      await page.waitForSelector("#login:not([hidden])");
      assert.equal(await page.locator("#app").isVisible(), false);
      assert.equal(await page.locator("#daily-chart rect.bar").count(), 0);
      assert.equal(await page.locator("#recent tbody tr").count(), 0);
      const prompt = `${await Deno.makeTempDir({ prefix: "poe-proxy-dashboard-" })}/prompt.png`;
      await page.screenshot({ path: prompt });
      printLine(`screenshot: ${prompt} (${Deno.statSync(prompt).size} bytes)`);

      await page.fill("#key", "wrong-key");
      await page.click("#login-form button");
      await page.waitForSelector("#login-error:has-text('not accepted')");
      assert.equal(await page.locator("#app").isVisible(), false);

      await page.fill("#key", "dash-key-1");
      await page.click("#login-form button");
      await page.waitForSelector("#recent tbody tr");
      assert.equal(
        digits(await page.textContent("#balance")),
        String(s.usage.poller.snapshot!.balance),
      );
      assert.equal(await page.locator("#daily-chart rect.bar").count(), 30);
      assert.equal(await page.locator("#recent tbody tr td.model").first().textContent(), "gpt-4o");
      assert.equal(
        await page.evaluate<string | null>("localStorage.getItem('poe-proxy-key')"),
        "dash-key-1",
      );

      // Asked once: a reload goes straight to the data.
      await page.reload();
      await page.waitForSelector("#recent tbody tr");
      assert.equal(await page.locator("#login").isVisible(), false);
      assert.deepEqual(seen.errors, []);
      await context.close();
    });
  },
});

Deno.test({
  name:
    `dashboard in Chromium: a refused Poe key is said as such, and wraps on a phone${NAME_SUFFIX}`,
  ignore: !haveChromium,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using s = await startDashboardSetup({ env: { POE_API_KEY: "a-wrong-key-0123456789" } });
    await withBrowser(async (browser) => {
      const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
      const page = await context.newPage();
      page.setDefaultTimeout(10_000);
      await page.goto(`${s.proxy.url}/`);
      await page.waitForSelector("#app:not([hidden])");
      await page.waitForSelector("#balance-age .error");
      const age = await page.textContent("#balance-age") ?? "";
      assert.match(age, /^Poe's Usage API gave no balance/);
      assert.match(age, /answered 401 \(Poe refused the key: check POE_API_KEY/);
      assert.doesNotMatch(age, /a-wrong-key/);
      const overflow = await page.evaluate<number>(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth",
      );
      assert.ok(overflow <= 0, `the error makes the page scroll sideways by ${overflow}px`);
      await context.close();
    });
  },
});
