import { Link, PageTitle } from "../components";
import { t } from "../lib/i18n";

export function NotFound() {
  return (
    <section class="narrow">
      <PageTitle title={t("notFound.title")}>{t("notFound.title")}</PageTitle>
      <p>{t("notFound.body")}</p>
      <Link class="button" href="/polls">
        {t("notFound.home")}
      </Link>
    </section>
  );
}
