// English and Korean. The language follows the browser until the user picks one.
import { Store } from "./store";
import { en, type Key } from "./i18n-en";
import { ko } from "./i18n-ko";

export type Lang = "en" | "ko";
export type { Key };
const dictionaries: Record<Lang, Record<Key, string>> = { en, ko };
const KEY = "nimbus.lang";

function initial(): Lang {
  try {
    const saved = localStorage.getItem(KEY);
    if (saved === "en" || saved === "ko") return saved;
  } catch {
    // no storage: follow the browser
  }
  for (const tag of navigator.languages ?? [navigator.language]) {
    const base = tag.toLowerCase().split("-")[0];
    if (base === "ko") return "ko";
    if (base === "en") return "en";
  }
  return "en";
}

export const lang = new Store<Lang>(initial());

export function setLang(value: Lang): void {
  lang.set(value);
  try {
    localStorage.setItem(KEY, value);
  } catch {
    // kept for this visit only
  }
}

function apply(): void {
  document.documentElement.lang = lang.get();
}
apply();
lang.subscribe(apply);

/** The text of `key` in the current language, with {name} placeholders filled. */
export function t(key: Key, params: Record<string, string | number> = {}): string {
  const text = dictionaries[lang.get()][key] ?? en[key];
  return text.replace(/\{(\w+)\}/g, (whole, name: string) => (name in params ? String(params[name]) : whole));
}

/** A count in words: `key.one` when the language says "one" (English: 1 vote). */
export function tn(key: Key, n: number): string {
  const one = `${key}.one` as Key;
  const form = new Intl.PluralRules(lang.get()).select(n);
  return t(form === "one" && one in en ? one : key, { n: formatNumber(n) });
}

export function formatDate(iso: string): string {
  return new Intl.DateTimeFormat(lang.get(), { dateStyle: "medium", timeStyle: "short" }).format(new Date(iso));
}

export function formatNumber(n: number): string {
  return new Intl.NumberFormat(lang.get()).format(n);
}

/** A wait in words: "40 seconds", "3 minutes", "2 hours" (rounded up). */
export function formatWait(seconds: number): string {
  const [value, unit] =
    seconds < 90 ? [Math.max(1, Math.ceil(seconds)), "second"] : seconds < 5400 ? [Math.ceil(seconds / 60), "minute"] : [Math.ceil(seconds / 3600), "hour"];
  return new Intl.NumberFormat(lang.get(), { style: "unit", unit, unitDisplay: "long" }).format(value);
}
