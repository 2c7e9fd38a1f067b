// Screenshots of each main screen at 360 px and 1280 px (light; a few dark and Korean),
// into docs/screenshots/, from a running stack:
//
//   NIMBUS_STACK_ENV=.run/local/stack.env npm run screenshots --prefix tests/browser
//
// It signs in a few people, makes polls and votes and uploads photos, then walks the
// app as Mina. Not part of ./stack test (it writes into the repository).
import { mkdirSync } from "node:fs";
import { api, signInByApi } from "./lib/api.mjs";
import { DESKTOP, launch, newContext, PHONE } from "./lib/browser.mjs";
import { jpegs } from "./lib/files.mjs";
import { codeFor, GATEWAY, mailCount, sleep, waitUntil } from "./lib/stack.mjs";

const out = new URL("../../docs/screenshots/", import.meta.url).pathname;
mkdirSync(out, { recursive: true });
const run = Date.now().toString(36);
const MINA = `mina-${run}@example.com`;

const browser = await launch();
const { context } = await newContext(browser, { viewport: DESKTOP });
const page = await context.newPage();

async function shot(name, { width = DESKTOP.width, height = DESKTOP.height, full = false, dark = false, target = page } = {}) {
  await target.setViewportSize({ width, height });
  await target.emulateMedia({ colorScheme: dark ? "dark" : "light" });
  await target.waitForTimeout(250); // layout and images settle
  await target.evaluate(() => document.activeElement instanceof HTMLElement && document.activeElement.blur());
  await target.mouse.move(width - 5, height - 5); // no hover effects in the picture
  await target.screenshot({ path: `${out}${name}.png`, fullPage: full });
  console.log(`docs/screenshots/${name}.png`);
}

async function both(name, options = {}) {
  await shot(`${name}-1280`, options);
  await shot(`${name}-360`, { ...options, width: PHONE.width, height: PHONE.height, full: options.full ?? true });
  await page.setViewportSize(DESKTOP);
}

// Sign-in, as a person sees it: the code step with the inbox link.
await page.goto(`${GATEWAY}/sign-in`);
await page.getByLabel("Email address").fill(MINA);
const seen = await mailCount(MINA);
await page.locator("form button[type=submit]").click();
await page.getByLabel("6-digit code").waitFor();
await both("sign-in");
await page.getByLabel("6-digit code").fill(await codeFor(MINA, seen));
await page.locator("form button[type=submit]").click();
await page.locator(".menu summary").waitFor();

// Polls by others, with votes.
const voters = [];
for (let i = 0; i < 6; i++) voters.push(await signInByApi(`voter${i}-${run}@example.com`));
const others = [
  { title: "Where should the team offsite be?", options: ["Busan", "Jeju", "Gangneung", "Seoul, stay home"], results_visibility: "always" },
  { title: "Best ramyeon?", options: ["Shin Ramyun", "Jin Ramen", "Neoguri", "Buldak"], results_visibility: "after_vote" },
  { title: "Standup time from next week", options: ["9:30", "10:00", "10:30"], results_visibility: "always" },
];
for (const [n, body] of others.entries()) {
  const poll = (await api("POST", "/v1/polls", { token: voters[n], json: body })).body;
  for (const [i, token] of voters.entries()) {
    const option = poll.options[(i * (n + 2)) % poll.options.length].id;
    await api("POST", `/v1/polls/${poll.id}/votes`, { token, json: { option_ids: [option] } });
  }
}

// Mina's own poll, filled in through the form.
await page.getByRole("link", { name: "New poll" }).click();
await page.getByLabel("Question").fill("Lunch on Friday?");
await page.getByLabel("Description (optional)").fill("The place with the shortest queue wins. Pick up to two.");
await page.getByLabel("Option 1", { exact: true }).fill("Bibimbap");
await page.getByLabel("Option 2", { exact: true }).fill("Kimbap");
await page.getByRole("button", { name: "Add an option" }).click();
await page.getByLabel("Option 3", { exact: true }).fill("Tteokbokki");
await page.getByRole("button", { name: "Add an option" }).click();
await page.getByLabel("Option 4", { exact: true }).fill("Naengmyeon");
await page.getByLabel("Several options").check();
await both("new-poll", { full: true });
await page.getByRole("button", { name: "Create poll" }).click();
await page.waitForURL(/\/polls\/[0-9a-f-]{36}$/);
const pollId = page.url().split("/").pop();
const poll = (await api("GET", `/v1/polls/${pollId}`)).body;
await page.getByRole("checkbox", { name: "Bibimbap" }).check();
await page.getByRole("checkbox", { name: "Tteokbokki" }).check();
await page.getByRole("button", { name: "Vote", exact: true }).click();
await page.getByText("You voted for").waitFor();
for (const [i, token] of voters.entries()) {
  await api("POST", `/v1/polls/${pollId}/votes`, { token, json: { option_ids: [poll.options[[0, 2, 2, 1, 3, 2][i]].id] } });
}
await waitUntil(async () => (await page.locator(".total").getAttribute("data-total")) === "7", 10_000, "all votes shown");
await page.locator(".live.live").waitFor();
await both("poll");
await shot("poll-1280-dark", { dark: true });

await page.getByRole("link", { name: "Polls", exact: true }).click();
await page.locator(".poll-item").first().waitFor();
await both("polls", { full: false });

// Photos: a dozen, one of them big (direct upload).
await page.getByRole("link", { name: "Photos" }).click();
const specs = Array.from({ length: 11 }, (_, i) => ({ name: `IMG_${2040 + i}.jpg`, width: 1600, height: 1200 }));
const files = await jpegs(page, [...specs, { name: "IMG_2051.jpg", width: 2400, height: 2000, noise: true }]);
await page.locator("#photo-input").setInputFiles(files);
await waitUntil(async () => (await page.locator(".upload progress").count()) > 0, 10_000, "progress bars");
await shot("photos-uploading-1280");
await waitUntil(async () => (await page.locator(".upload[data-phase=ready]").count()) === files.length, 120_000, "all ready");
await waitUntil(
  () => page.evaluate(() => [...document.querySelectorAll(".gallery img")].every((i) => i.complete && i.naturalWidth > 0)),
  20_000,
  "thumbnails loaded",
);
await page.getByRole("button", { name: "Clear finished" }).click();
await both("photos");
await shot("photos-360-dark", { width: PHONE.width, height: PHONE.height, dark: true });

await page.locator(".gallery a").nth(2).click();
await page.waitForFunction(() => document.querySelector(".preview img")?.naturalWidth > 0);
await both("photo");

// Korean, on a phone.
await page.getByLabel("Language").selectOption("ko");
await page.getByRole("link", { name: "투표", exact: true }).click();
await page.locator(".poll-item").first().waitFor();
await page.goto(`${GATEWAY}/polls/${pollId}`);
await page.locator(".live.live").waitFor();
await sleep(300);
await shot("poll-360-ko", { width: PHONE.width, height: PHONE.height, full: true });
await page.getByLabel("언어").selectOption("en");

await browser.close();
