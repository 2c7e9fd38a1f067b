// One poll: vote, see "you voted for …", results as bars that move live, and the
// owner's close and delete.
import { useEffect, useState } from "preact/hooks";
import { ApiError, call, type Poll, type Results } from "../api/client";
import { Confirm, ErrorText, Link, PageTitle, Spinner } from "../components";
import { session } from "../lib/auth";
import { formatDate, t, tn } from "../lib/i18n";
import { watchResults, type LiveState } from "../lib/live";
import { messageOf } from "../lib/problems";
import { navigate } from "../lib/router";
import { useStore } from "../lib/store";

type Visible = "unknown" | "yes" | "hidden";

export function PollView({ id }: { id: string }) {
  const current = useStore(session);
  const userId = current?.user.id;
  const [poll, setPoll] = useState<Poll | null>(null);
  const [gone, setGone] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [ballot, setBallot] = useState<string[] | null>(null);
  const [results, setResults] = useState<Results | null>(null);
  const [visible, setVisible] = useState<Visible>("unknown");
  const [live, setLive] = useState<LiveState>("stopped");
  const [confirm, setConfirm] = useState<"close" | "delete" | null>(null);

  async function loadPoll() {
    try {
      setPoll((await call("get", "/v1/polls/{id}", { path: { id } })).data);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) setGone(true);
      else setError(messageOf(e));
    }
  }

  async function loadMine() {
    if (!userId) return;
    try {
      setBallot((await call("get", "/v1/polls/{id}/votes/me", { path: { id } })).data.option_ids);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) setBallot([]);
    }
    try {
      setResults((await call("get", "/v1/polls/{id}/results", { path: { id } })).data);
      setVisible("yes");
    } catch (e) {
      setVisible(e instanceof ApiError && e.code === "results_hidden" ? "hidden" : "unknown");
    }
  }

  useEffect(() => {
    setPoll(null);
    setGone(false);
    void loadPoll();
  }, [id]);

  useEffect(() => {
    setBallot(null);
    setResults(null);
    setVisible("unknown");
    void loadMine();
  }, [id, userId]);

  // The live stream, while results are visible to this user.
  useEffect(() => {
    if (!userId || visible !== "yes") return;
    const stop = new AbortController();
    void watchResults(
      id,
      {
        results: (r) => {
          setResults(r);
          setPoll((p) => (p && r.closed && p.status !== "closed" ? { ...p, status: "closed" } : p));
        },
        state: setLive,
        stopped: (why) => {
          setLive("stopped");
          if (why === "gone") setGone(true);
          if (why === "hidden") setVisible("hidden");
        },
      },
      stop.signal,
    );
    return () => stop.abort();
  }, [id, userId, visible]);

  if (gone) {
    return (
      <section>
        <PageTitle title={t("poll.gone")}>{t("poll.gone")}</PageTitle>
        <Link href="/polls">{t("poll.back")}</Link>
      </section>
    );
  }
  if (!poll) return error ? <ErrorText>{error}</ErrorText> : <Spinner />;

  const owner = userId === poll.owner_id;
  // Once voted, the choices are told in one line and the results take the room.
  const showChoices = !(ballot && ballot.length > 0);
  const textOf = (optionId: string) => poll.options.find((o) => o.id === optionId)?.text ?? "";

  async function ownerAction(action: "close" | "delete") {
    setConfirm(null);
    setError(null);
    try {
      if (action === "close") {
        setPoll((await call("post", "/v1/polls/{id}/close", { path: { id } })).data);
      } else {
        await call("delete", "/v1/polls/{id}", { path: { id } });
        navigate("/polls?tab=mine");
      }
    } catch (e) {
      setError(messageOf(e));
    }
  }

  return (
    <article class="poll">
      <p>
        <Link href="/polls">← {t("poll.back")}</Link>
      </p>
      <PageTitle title={poll.title}>{poll.title}</PageTitle>
      <p class="meta">
        <span class={`badge ${poll.status}`}>{t(`polls.status.${poll.status}`)}</span>
        {poll.opens_at && poll.status === "scheduled" ? <span>{t("poll.opens", { date: formatDate(poll.opens_at) })}</span> : null}
        {poll.closed_at ? (
          <span>{t("poll.closedAt", { date: formatDate(poll.closed_at) })}</span>
        ) : poll.closes_at ? (
          <span>{t("poll.closes", { date: formatDate(poll.closes_at) })}</span>
        ) : null}
        <span>{t(`poll.visibility.${poll.results_visibility}`)}</span>
      </p>
      {poll.description ? <p class="description">{poll.description}</p> : null}
      <ErrorText>{error}</ErrorText>

      {ballot && ballot.length > 0 ? (
        <p class="voted" role="status">
          ✓ {t("poll.youVoted", { choice: ballot.map(textOf).join(", ") })}
        </p>
      ) : null}
      <div class={showChoices && current ? "poll-grid" : "poll-grid single"}>
        {showChoices ? (
          <section class="card" aria-labelledby="vote-heading">
            <h2 id="vote-heading">{t("poll.choices")}</h2>
            {!current ? (
              <>
                <OptionList poll={poll} />
                {poll.status === "open" ? (
                  <Link class="button primary" href={`/sign-in?next=${encodeURIComponent(`/polls/${poll.id}`)}`}>
                    {t("poll.signInToVote")}
                  </Link>
                ) : null}
              </>
            ) : ballot === null ? (
              <Spinner />
            ) : poll.status === "open" ? (
              <VoteForm
                poll={poll}
                onVoted={(ids) => {
                  setBallot(ids);
                  void loadMine();
                }}
              />
            ) : (
              <>
                <OptionList poll={poll} />
                <p class="muted">
                  {poll.status === "scheduled" && poll.opens_at ? t("poll.scheduled", { date: formatDate(poll.opens_at) }) : t("poll.notOpen")}
                </p>
              </>
            )}
          </section>
        ) : null}

        {current ? (
          <section class="card" aria-labelledby="results-heading">
            <div class="heading-row">
              <h2 id="results-heading">{t("poll.results")}</h2>
              {visible === "yes" ? (
                <span class={`live ${live}`} role="status">
                  <span class="dot" aria-hidden="true" />
                  {t(`poll.live.${live}`)}
                </span>
              ) : null}
            </div>
            {visible === "hidden" ? (
              <p class="muted">{t(poll.results_visibility === "after_close" ? "poll.hidden.after_close" : "poll.hidden.after_vote")}</p>
            ) : results ? (
              <ResultBars results={results} mine={ballot ?? []} />
            ) : (
              <Spinner />
            )}
          </section>
        ) : null}
      </div>

      {owner ? (
        <section class="owner" aria-label={t("poll.owner")}>
          <p class="muted">{t("poll.owner")}</p>
          <div class="row">
            {poll.status !== "closed" ? (
              <button type="button" class="button" onClick={() => setConfirm("close")}>
                {t("poll.close")}
              </button>
            ) : null}
            <button type="button" class="button danger" onClick={() => setConfirm("delete")}>
              {t("poll.delete")}
            </button>
          </div>
        </section>
      ) : null}
      <Confirm
        open={confirm !== null}
        message={confirm === "delete" ? t("poll.deleteConfirm") : t("poll.closeConfirm")}
        confirm={confirm === "delete" ? t("poll.delete") : t("poll.close")}
        danger={confirm === "delete"}
        onConfirm={() => void ownerAction(confirm!)}
        onCancel={() => setConfirm(null)}
      />
    </article>
  );
}

function OptionList({ poll }: { poll: Poll }) {
  return (
    <ul class="options-plain">
      {poll.options.map((o) => (
        <li key={o.id}>{o.text}</li>
      ))}
    </ul>
  );
}

function VoteForm({ poll, onVoted }: { poll: Poll; onVoted(ids: string[]): void }) {
  const [chosen, setChosen] = useState<string[]>([]);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const multiple = poll.max_choices > 1;

  function toggle(optionId: string, on: boolean) {
    setChosen((now) => (multiple ? (on ? [...now, optionId] : now.filter((x) => x !== optionId)) : [optionId]));
  }

  async function submit(event: Event) {
    event.preventDefault();
    if (chosen.length < 1 || chosen.length > poll.max_choices) {
      setError(t("err.invalid_options", { max: poll.max_choices }));
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const { data } = await call("post", "/v1/polls/{id}/votes", { path: { id: poll.id }, body: { option_ids: chosen } });
      onVoted(data.option_ids);
    } catch (e) {
      if (e instanceof ApiError && e.code === "already_voted") onVoted([]);
      setError(messageOf(e, { max: poll.max_choices }));
    } finally {
      setBusy(false);
    }
  }

  return (
    <form onSubmit={submit} noValidate>
      <fieldset>
        <legend>{multiple ? t("poll.chooseUpTo", { n: poll.max_choices }) : t("poll.chooseOne")}</legend>
        {poll.options.map((o) => {
          const checked = chosen.includes(o.id);
          return (
            <label key={o.id} class="choice">
              <input
                type={multiple ? "checkbox" : "radio"}
                name="option"
                value={o.id}
                checked={checked}
                disabled={multiple && !checked && chosen.length >= poll.max_choices}
                onChange={(e) => toggle(o.id, e.currentTarget.checked)}
              />
              <span>{o.text}</span>
            </label>
          );
        })}
      </fieldset>
      <ErrorText>{error}</ErrorText>
      <button type="submit" class="button primary" disabled={busy || chosen.length === 0}>
        {busy ? t("poll.voting") : t("poll.vote")}
      </button>
    </form>
  );
}

function ResultBars({ results, mine }: { results: Results; mine: string[] }) {
  const total = results.total_votes;
  return (
    <>
      <p class="total" aria-live="polite" data-total={total}>
        {tn("poll.totalVotes", total)}
      </p>
      <ol class="results">
        {results.options.map((o) => {
          const share = total > 0 ? o.votes / total : 0;
          const percent = new Intl.NumberFormat(document.documentElement.lang, { style: "percent", maximumFractionDigits: 0 }).format(share);
          return (
            <li key={o.id} data-option={o.id} data-votes={o.votes} class={mine.includes(o.id) ? "mine" : undefined}>
              <div class="result-label">
                <span>
                  {mine.includes(o.id) ? "✓ " : ""}
                  {o.text}
                </span>
                <span class="count">
                  {tn("poll.votes", o.votes)} · {percent}
                </span>
              </div>
              <div class="meter" aria-hidden="true">
                <span style={{ width: `${share * 100}%` }} />
              </div>
            </li>
          );
        })}
      </ol>
    </>
  );
}
