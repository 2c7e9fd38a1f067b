// Polls: open, closed, or mine, newest first, a page at a time.
import { useEffect, useState } from "preact/hooks";
import { call, type Poll } from "../api/client";
import { ErrorText, Link, PageTitle } from "../components";
import { session } from "../lib/auth";
import { formatDate, t } from "../lib/i18n";
import { messageOf } from "../lib/problems";
import { location } from "../lib/router";
import { useStore } from "../lib/store";

type Tab = "open" | "closed" | "mine";

export function PollList() {
  const url = useStore(location);
  const current = useStore(session);
  const requested = url.searchParams.get("tab");
  const tab: Tab = requested === "closed" || requested === "mine" ? requested : "open";
  const [items, setItems] = useState<Poll[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<string | null>(null);

  async function load(cursor: string | null) {
    setLoading(true);
    setError(null);
    try {
      const { data } = await call("get", "/v1/polls", {
        query: {
          status: tab === "mine" ? "all" : tab,
          ...(tab === "mine" ? { mine: "true" as const } : {}),
          limit: 20,
          ...(cursor ? { cursor } : {}),
        },
      });
      setItems((before) => (cursor ? [...before, ...data.items] : data.items));
      setNext(data.next_cursor);
    } catch (e) {
      setError(messageOf(e));
    } finally {
      setLoading(false);
    }
  }

  useEffect(() => {
    if (tab === "mine" && !current) return;
    setItems([]);
    void load(null);
  }, [tab, current?.user.id]);

  const tabs: Tab[] = current ? ["open", "closed", "mine"] : ["open", "closed"];
  return (
    <section>
      <div class="heading-row">
        <PageTitle title={t("polls.title")}>{t("polls.title")}</PageTitle>
        {current ? (
          <Link class="button primary" href="/polls/new">
            {t("polls.new")}
          </Link>
        ) : null}
      </div>
      <nav aria-label={t("polls.tabs")}>
        <ul class="tabs">
          {tabs.map((name) => (
            <li key={name}>
              <Link href={`/polls?tab=${name}`} current={tab === name}>
                {t(`polls.${name}`)}
              </Link>
            </li>
          ))}
        </ul>
      </nav>
      <ErrorText>{error}</ErrorText>
      {tab === "mine" && !current ? (
        <p class="notice">
          {t("signIn.needed")} <Link href="/sign-in?next=%2Fpolls%3Ftab%3Dmine">{t("nav.signIn")}</Link>
        </p>
      ) : items.length > 0 ? (
        <ul class="poll-list">
          {items.map((poll) => (
            <li key={poll.id} class="card poll-item">
              <Link href={`/polls/${poll.id}`} class="poll-link">
                {poll.title}
              </Link>
              <p class="meta">
                <span class={`badge ${poll.status}`}>{t(`polls.status.${poll.status}`)}</span>
                <span>{t("polls.options", { n: poll.options.length })}</span>
                <span>{t("polls.created", { date: formatDate(poll.created_at) })}</span>
              </p>
            </li>
          ))}
        </ul>
      ) : !loading && !error ? (
        <p class="muted empty">{t("polls.empty")}</p>
      ) : null}
      {tab === "mine" && !current ? null : loading ? (
        <p class="muted" role="status">
          {t("app.loading")}
        </p>
      ) : next ? (
        <button type="button" class="button" onClick={() => void load(next)}>
          {t("polls.more")}
        </button>
      ) : null}
    </section>
  );
}
