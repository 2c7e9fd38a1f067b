// A new poll. The form keeps one Idempotency-Key, so a retry after a lost answer
// returns the poll already created instead of making a second one.
import { useRef, useState } from "preact/hooks";
import { call, type NewPoll } from "../api/client";
import { ErrorText, Link, PageTitle } from "../components";
import { t } from "../lib/i18n";
import { messageOf } from "../lib/problems";
import { navigate } from "../lib/router";

const MAX_OPTIONS = 20;
type Visibility = NonNullable<NewPoll["results_visibility"]>;

function key(): string {
  return crypto.randomUUID?.() ?? `${Date.now()}-${Math.random().toString(36).slice(2)}`;
}

export function PollNew() {
  const [title, setTitle] = useState("");
  const [description, setDescription] = useState("");
  const [options, setOptions] = useState(["", ""]);
  const [multiple, setMultiple] = useState(false);
  const [maxChoices, setMaxChoices] = useState(2);
  const [opensAt, setOpensAt] = useState("");
  const [closesAt, setClosesAt] = useState("");
  const [visibility, setVisibility] = useState<Visibility>("always");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const idempotencyKey = useRef(key());
  const optionRefs = useRef<(HTMLInputElement | null)[]>([]);

  function setOption(i: number, value: string) {
    setOptions((now) => now.map((o, j) => (j === i ? value : o)));
  }

  function addOption() {
    setOptions((now) => [...now, ""]);
    setTimeout(() => optionRefs.current[options.length]?.focus());
  }

  function removeOption(i: number) {
    setOptions((now) => now.filter((_, j) => j !== i));
    setTimeout(() => optionRefs.current[Math.max(0, i - 1)]?.focus());
  }

  // Any change makes it another request: a new key. A resubmission of the same form
  // (a retry after a lost answer, a double click) keeps it.
  function edited() {
    setError(null);
    idempotencyKey.current = key();
  }

  async function submit(event: Event) {
    event.preventDefault();
    const cleaned = options.map((o) => o.trim()).filter((o) => o);
    if (!title.trim() || title.length > 200) return setError(t("new.err.title"));
    if (cleaned.length < 2 || new Set(cleaned).size !== cleaned.length) return setError(t("new.err.options"));
    const opens = opensAt ? new Date(opensAt) : null;
    const closes = closesAt ? new Date(closesAt) : null;
    if (opens && closes && closes <= opens) return setError(t("new.err.times"));
    const body: NewPoll = {
      title: title.trim(),
      description: description.trim() || null,
      options: cleaned,
      max_choices: multiple ? Math.min(Math.max(2, maxChoices), cleaned.length) : 1,
      opens_at: opens?.toISOString() ?? null,
      closes_at: closes?.toISOString() ?? null,
      results_visibility: visibility,
    };
    setBusy(true);
    setError(null);
    try {
      const { data } = await call("post", "/v1/polls", { body, headers: { "Idempotency-Key": idempotencyKey.current } });
      navigate(`/polls/${data.id}`);
    } catch (e) {
      setError(messageOf(e));
    } finally {
      setBusy(false);
    }
  }

  return (
    <section class="narrow">
      <PageTitle title={t("new.title")}>{t("new.title")}</PageTitle>
      <form class="card stack" onSubmit={submit} noValidate onInput={edited} onChange={edited}>
        <div class="field">
          <label for="poll-title">{t("new.pollTitle")}</label>
          <input id="poll-title" name="title" required maxLength={200} autocomplete="off" value={title} onInput={(e) => setTitle(e.currentTarget.value)} />
        </div>
        <div class="field">
          <label for="poll-description">{t("new.description")}</label>
          <textarea id="poll-description" name="description" maxLength={2000} rows={3} value={description} onInput={(e) => setDescription(e.currentTarget.value)} />
        </div>
        <fieldset class="stack">
          <legend>{t("new.options")}</legend>
          {options.map((option, i) => (
            <div class="option-row" key={i}>
              <label class="visually-hidden" for={`option-${i}`}>
                {t("new.option", { n: i + 1 })}
              </label>
              <input
                id={`option-${i}`}
                name="options"
                ref={(el) => {
                  optionRefs.current[i] = el;
                }}
                maxLength={200}
                autocomplete="off"
                placeholder={t("new.option", { n: i + 1 })}
                value={option}
                onInput={(e) => setOption(i, e.currentTarget.value)}
              />
              {options.length > 2 ? (
                <button type="button" class="button icon" onClick={() => removeOption(i)} aria-label={t("new.removeOption", { n: i + 1 })}>
                  ×
                </button>
              ) : null}
            </div>
          ))}
          {options.length < MAX_OPTIONS ? (
            <button type="button" class="button" onClick={addOption}>
              + {t("new.addOption")}
            </button>
          ) : null}
        </fieldset>
        <fieldset>
          <legend>{t("new.mode")}</legend>
          <div class="row wrap">
            <label class="choice inline">
              <input type="radio" name="mode" value="single" checked={!multiple} onChange={() => setMultiple(false)} />
              <span>{t("new.single")}</span>
            </label>
            <label class="choice inline">
              <input type="radio" name="mode" value="multiple" checked={multiple} onChange={() => setMultiple(true)} />
              <span>{t("new.multiple")}</span>
            </label>
            {multiple ? (
              <label class="inline-field">
                <span>{t("new.maxChoices")}</span>
                <input
                  type="number"
                  name="max_choices"
                  min={2}
                  max={Math.max(2, options.length)}
                  value={maxChoices}
                  onInput={(e) => setMaxChoices(Number(e.currentTarget.value))}
                />
              </label>
            ) : null}
          </div>
        </fieldset>
        <div class="two">
          <div class="field">
            <label for="opens-at">{t("new.opensAt")}</label>
            <input id="opens-at" name="opens_at" type="datetime-local" value={opensAt} onInput={(e) => setOpensAt(e.currentTarget.value)} aria-describedby="times-hint" />
          </div>
          <div class="field">
            <label for="closes-at">{t("new.closesAt")}</label>
            <input id="closes-at" name="closes_at" type="datetime-local" value={closesAt} onInput={(e) => setClosesAt(e.currentTarget.value)} aria-describedby="times-hint" />
          </div>
        </div>
        <p id="times-hint" class="muted small">
          {t("new.timesHint")}
        </p>
        <div class="field">
          <label for="visibility">{t("new.visibility")}</label>
          <select id="visibility" name="results_visibility" value={visibility} onChange={(e) => setVisibility(e.currentTarget.value as Visibility)}>
            <option value="always">{t("poll.visibility.always")}</option>
            <option value="after_vote">{t("poll.visibility.after_vote")}</option>
            <option value="after_close">{t("poll.visibility.after_close")}</option>
          </select>
        </div>
        <ErrorText>{error}</ErrorText>
        <div class="row">
          <button type="submit" class="button primary" disabled={busy}>
            {busy ? t("new.creating") : t("new.create")}
          </button>
          <Link class="button" href="/polls">
            {t("new.cancel")}
          </Link>
        </div>
      </form>
    </section>
  );
}
