// Debian's Chromium driven by playwright-core (`npx playwright install` is not needed
// and does not work here). Playwright starts it with a fresh temporary profile
// (--user-data-dir) of its own on every launch.
import { chromium } from "playwright-core";
import { check } from "./openapi.mjs";
import { GATEWAY } from "./stack.mjs";

export const CHROMIUM = process.env.NIMBUS_CHROMIUM ?? "/usr/bin/chromium";
export const FLAGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

export function launch() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS });
}

export const PHONE = { width: 360, height: 780 };
export const DESKTOP = { width: 1280, height: 800 };

/**
 * A browser context (its own cookies: another person, or another device) whose pages
 * are watched: every API response checked against the OpenAPI document, and every
 * console error and page error collected. `problems` lists what went wrong.
 */
export async function newContext(browser, { viewport = DESKTOP, locale = "en-US", colorScheme = "light" } = {}) {
  const context = await browser.newContext({ viewport, locale, colorScheme, acceptDownloads: true });
  const problems = [];
  const api = new URL(GATEWAY);
  context.on("page", (page) => watch(page, problems, api));
  return { context, problems };
}

function watch(page, problems, api) {
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    // A refused request is logged by Chromium as a console error; the API's refusals
    // are part of the flows under test (a wrong code, a 404 of "not voted yet").
    if (m.type() !== "error" || /Failed to load resource: the server responded with a status of (4\d\d)/.test(m.text())) return;
    // A live-results stream cut by an instance that died is logged too; the page
    // reconnects by design (the suite kills one on purpose).
    if (/ERR_INCOMPLETE_CHUNKED_ENCODING/.test(m.text()) && /\/results\/stream$/.test(m.location().url ?? "")) return;
    problems.push(`console error: ${m.text()} (${m.location().url ?? ""})`);
  });
  page.on("response", async (response) => {
    const url = new URL(response.url());
    if (url.origin !== api.origin) return;
    const path = url.pathname;
    if (!path.startsWith("/v1/") && !path.startsWith("/.well-known/") && path !== "/healthz" && path !== "/readyz") return;
    const request = response.request();
    const headers = await response.allHeaders().catch(() => ({}));
    const stream = (headers["content-type"] ?? "").startsWith("text/event-stream");
    let body = null;
    if (!stream && response.status() !== 204 && (response.status() < 300 || response.status() >= 400)) {
      body = await response.text().catch(() => null);
    }
    const errors = check(request.method(), path, response.status(), headers, body);
    if (errors.length) problems.push(`${request.method()} ${path} -> ${response.status()}: ${errors.join("; ")}`);
  });
}
