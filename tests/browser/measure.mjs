// Page weight and time to interactive of the web app's first load, in Chromium, on a
// running stack (budget: < 150 KB of JavaScript gzip, < 1 s):
//
//   NIMBUS_STACK_ENV=.run/local/stack.env npm run measure --prefix tests/browser [-- RUNS]
//
// Each run is a new browser context (empty cache) opening /polls, as a first visit does.
// Time to interactive here: when the page's first screen is rendered by the app (its h1
// and the list of polls are there) and no long task (> 50 ms) has run since: the later
// of the two, from navigation start. Also FCP, DOMContentLoaded, and a warm reload.
import { launch } from "./lib/browser.mjs";
import { GATEWAY } from "./lib/stack.mjs";

const runs = Number(process.argv[2] ?? 7);
const browser = await launch();

const probe = () => {
  window.__nimbus = { longTaskEnd: 0, rendered: 0 };
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) window.__nimbus.longTaskEnd = Math.max(window.__nimbus.longTaskEnd, e.startTime + e.duration);
  }).observe({ type: "longtask", buffered: true });
  new MutationObserver((_, observer) => {
    if (document.querySelector("main h1") && (document.querySelector(".poll-list, .empty"))) {
      window.__nimbus.rendered = performance.now();
      observer.disconnect();
    }
  }).observe(document, { childList: true, subtree: true });
};

async function once(context, { reload = false } = {}) {
  const page = reload ? context.pages()[0] : await context.newPage();
  if (!reload) await page.addInitScript(probe);
  const bytes = { script: 0, stylesheet: 0, document: 0, other: 0, total: 0 };
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  const types = new Map();
  cdp.on("Network.responseReceived", (e) => types.set(e.requestId, e.type));
  cdp.on("Network.loadingFinished", (e) => {
    const kind = { Script: "script", Stylesheet: "stylesheet", Document: "document" }[types.get(e.requestId)] ?? "other";
    bytes[kind] += e.encodedDataLength;
    bytes.total += e.encodedDataLength;
  });
  if (reload) await page.reload();
  else await page.goto(`${GATEWAY}/polls`);
  await page.waitForFunction(() => window.__nimbus?.rendered > 0);
  await page.waitForTimeout(300); // any long task right after the render is counted
  const t = await page.evaluate(() => {
    const nav = performance.getEntriesByType("navigation")[0];
    const fcp = performance.getEntriesByName("first-contentful-paint")[0]?.startTime ?? 0;
    return { fcp, dcl: nav.domContentLoadedEventEnd, rendered: window.__nimbus.rendered, tti: Math.max(window.__nimbus.rendered, window.__nimbus.longTaskEnd) };
  });
  await cdp.detach();
  return { ...t, bytes };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const cold = [];
const warm = [];
for (let i = 0; i < runs; i++) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  cold.push(await once(context));
  warm.push(await once(context, { reload: true }));
  await context.close();
}
await browser.close();

const kb = (n) => `${(n / 1024).toFixed(1)} KB`;
const ms = (n) => `${Math.round(n)} ms`;
const first = cold[0].bytes;
console.log(`First load of ${GATEWAY}/polls in Chromium (${runs} runs, median; bytes on the wire, headers included):`);
console.log(`  JavaScript ${kb(first.script)}, CSS ${kb(first.stylesheet)}, HTML ${kb(first.document)}, other ${kb(first.other)}, total ${kb(first.total)}`);
console.log(`  cold: FCP ${ms(median(cold.map((r) => r.fcp)))}, DOMContentLoaded ${ms(median(cold.map((r) => r.dcl)))}, app rendered ${ms(median(cold.map((r) => r.rendered)))}, time to interactive ${ms(median(cold.map((r) => r.tti)))} (worst ${ms(Math.max(...cold.map((r) => r.tti)))})`);
console.log(`  warm (reload, cached assets): time to interactive ${ms(median(warm.map((r) => r.tti)))}, ${kb(warm[0].bytes.total)} transferred`);
const jsBudget = 150 * 1024;
const ttiBudget = 1000;
const ok = first.script < jsBudget && median(cold.map((r) => r.tti)) < ttiBudget;
console.log(ok ? "  within budget (< 150 KB JS gzip, < 1 s)" : "  OVER BUDGET (150 KB JS gzip, 1 s)");
process.exitCode = ok ? 0 : 1;
