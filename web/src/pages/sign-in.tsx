// Sign in with an emailed code: address, then code. Real forms with the autocomplete
// hints browsers and password managers understand (email; one-time-code).
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError } from "../api/client";
import { ErrorText, PageTitle } from "../components";
import { session, sessionNotice, startSignIn, verifyCode } from "../lib/auth";
import { formatWait, t } from "../lib/i18n";
import { messageOf } from "../lib/problems";
import { location, navigate } from "../lib/router";
import { useStore } from "../lib/store";

interface AppConfig {
  inbox?: string;
}
let config: Promise<AppConfig> | null = null;
/** Deployment facts the API does not know: locally, where the web inbox is. */
function appConfig(): Promise<AppConfig> {
  config ??= fetch("/app-config.json")
    .then((r) => (r.ok ? (r.json() as Promise<AppConfig>) : {}))
    .catch(() => ({}));
  return config;
}

function safeNext(raw: string | null): string {
  // Only paths of this app: never an absolute or protocol-relative URL.
  return raw && raw.startsWith("/") && !raw.startsWith("//") ? raw : "/polls";
}

export function SignIn() {
  const current = useStore(session);
  const notice = useStore(sessionNotice);
  const next = safeNext(location.get().searchParams.get("next"));
  const [step, setStep] = useState<"email" | "code">("email");
  const [email, setEmail] = useState("");
  const [code, setCode] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [inbox, setInbox] = useState<string | undefined>();
  const [cooldownUntil, setCooldownUntil] = useState(0);
  const [now, setNow] = useState(Date.now());
  const codeRef = useRef<HTMLInputElement>(null);
  const emailRef = useRef<HTMLInputElement>(null);

  useEffect(() => {
    if (current) navigate(next, { replace: true });
  }, [current]);
  useEffect(() => {
    void appConfig().then((c) => setInbox(c.inbox));
  }, []);
  useEffect(() => {
    if (cooldownUntil <= now) return;
    const timer = setTimeout(() => setNow(Date.now()), 1000);
    return () => clearTimeout(timer);
  }, [cooldownUntil, now]);
  useEffect(() => {
    if (step === "code") codeRef.current?.focus();
  }, [step]);

  function fail(e: unknown) {
    setError(messageOf(e));
    if (e instanceof ApiError && e.retryAfter && (e.code === "resend_cooldown" || e.code === "rate_limited")) {
      setCooldownUntil(Date.now() + e.retryAfter * 1000);
      setNow(Date.now());
    }
  }

  async function send(event?: Event) {
    event?.preventDefault();
    const address = email.trim();
    if (!/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(address)) {
      setError(t("err.invalid_email"));
      emailRef.current?.focus();
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await startSignIn(address);
      setEmail(address);
      setCode("");
      setStep("code");
    } catch (e) {
      fail(e);
    } finally {
      setBusy(false);
    }
  }

  async function verify(event: Event) {
    event.preventDefault();
    const digits = code.replace(/\s+/g, "");
    // 6 digits, or the 20 of the long form a code takes after many wrong guesses.
    if (!/^(\d{6}|\d{20})$/.test(digits)) {
      setError(t("err.invalid_code_format"));
      codeRef.current?.focus();
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await verifyCode(email, digits);
      // the session effect above navigates on
    } catch (e) {
      fail(e);
      codeRef.current?.select();
    } finally {
      setBusy(false);
    }
  }

  const waiting = cooldownUntil > now;
  return (
    <section class="narrow">
      <PageTitle title={t("signIn.title")}>{t("signIn.title")}</PageTitle>
      {notice === "expired" ? (
        <p class="notice" role="status">
          {t("signIn.expired")}
        </p>
      ) : location.get().searchParams.has("next") ? (
        <p class="notice">{t("signIn.needed")}</p>
      ) : null}
      {step === "email" ? (
        <form class="card stack" onSubmit={send} noValidate>
          <p class="muted">{t("signIn.intro")}</p>
          <div class="field">
            <label for="email">{t("signIn.email")}</label>
            <input
              ref={emailRef}
              id="email"
              name="email"
              type="email"
              autocomplete="email"
              autocapitalize="off"
              spellcheck={false}
              required
              maxLength={320}
              value={email}
              onInput={(e) => setEmail(e.currentTarget.value)}
              aria-invalid={error ? true : undefined}
              aria-describedby={error ? "sign-in-error" : undefined}
            />
          </div>
          <ErrorText id="sign-in-error">{error}</ErrorText>
          <button class="button primary" type="submit" disabled={busy || waiting}>
            {busy ? t("signIn.sending") : t("signIn.send")}
          </button>
        </form>
      ) : (
        <form class="card stack" onSubmit={verify} noValidate>
          <p role="status">{t("signIn.sent", { email })}</p>
          {inbox ? (
            <p>
              <a href={inbox} target="_blank" rel="noopener">
                {t("signIn.inbox")}
              </a>{" "}
              <span class="muted small">{t("signIn.inboxHint")}</span>
            </p>
          ) : null}
          {/* The address again, hidden, so a password manager files the code under it. */}
          <input type="email" name="email" autocomplete="email" value={email} hidden readOnly />
          <div class="field">
            <label for="code">{t("signIn.code")}</label>
            <input
              ref={codeRef}
              id="code"
              name="code"
              type="text"
              inputMode="numeric"
              autocomplete="one-time-code"
              pattern="[0-9]{6}|[0-9]{20}"
              maxLength={24}
              required
              class="code"
              value={code}
              onInput={(e) => setCode(e.currentTarget.value.replace(/\D+/g, ""))}
              aria-invalid={error ? true : undefined}
              aria-describedby={error ? "code-hint sign-in-error" : "code-hint"}
            />
            <p id="code-hint" class="muted small">
              {t("signIn.codeHint")}
            </p>
          </div>
          <ErrorText id="sign-in-error">{error}</ErrorText>
          <button class="button primary" type="submit" disabled={busy}>
            {busy ? t("signIn.verifying") : t("signIn.verify")}
          </button>
          <div class="row links">
            <button type="button" class="button link" disabled={busy || waiting} onClick={() => void send()}>
              {waiting ? t("signIn.resendIn", { wait: formatWait((cooldownUntil - now) / 1000) }) : t("signIn.resend")}
            </button>
            <button
              type="button"
              class="button link"
              onClick={() => {
                setStep("email");
                setError(null);
              }}
            >
              {t("signIn.otherEmail")}
            </button>
          </div>
        </form>
      )}
    </section>
  );
}
