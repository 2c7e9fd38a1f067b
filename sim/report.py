"""docs/reports (Korean and English) and docs/diagrams from the latest results.

Every number in a report is read from a results file of a run (sim/results/*.json);
the prose around the numbers is written here once, in both languages. Charts come from
matplotlib, diagrams from Graphviz, PDFs from headless Chromium printing the generated
HTML (Noto CJK for Korean)."""
import datetime
import glob
import html
import json
import os
import re
import shutil
import subprocess
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import checks  # noqa: E402
import diagrams  # noqa: E402
import stackenv  # noqa: E402

REPORTS = os.path.join(stackenv.ROOT, "docs", "reports")
IMG = os.path.join(REPORTS, "img")
DATA = os.path.join(REPORTS, "data")
PDF = os.path.join(REPORTS, "pdf")

plt.rcParams.update({"font.family": ["Noto Sans CJK JP", "DejaVu Sans"], "font.size": 9, "figure.dpi": 110})


# ---------------------------------------------------------------------- helpers

def load_results(folder):
    runs = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        runs[data["name"]] = data
    return runs


def f0(x):
    return "–" if x is None else f"{x:,.0f}"


def f1(x):
    return "–" if x is None else f"{x:,.1f}"


def pct(x, digits=2):
    return "–" if x is None else f"{100 * x:.{digits}f} %"


def lat(summary, key):
    return (summary.get("latency_ms") or {}).get(key)


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def L(lang, en, ko):
    return ko if lang == "ko" else en


def compact(data):
    """What the committed data keeps of a results file: no raw samples, no observation."""
    keep = {k: v for k, v in data.items() if k not in ("samples", "observed", "ledger")}
    ledger = data.get("ledger") or {}
    keep["ledger_counts"] = {k: (len(v) if isinstance(v, (list, dict)) else v) for k, v in ledger.items()}
    ready = sorted((ledger.get("uploads_ready") or {}).values())
    keep["time_to_ready_s"] = {"n": len(ready), **({"p50": ready[len(ready) // 2], "p90": ready[int(len(ready) * 0.9)],
                                                    "max": ready[-1]} if ready else {})}
    return keep


def foreign_events(data):
    """Processes of the stack that exited during the run and that the run did not
    cause (the stack is shared: other engineers' tests ran on it too)."""
    log = os.path.join(os.environ.get("NIMBUS_STACK_RUN", ""), "logs", "supervisord.log")
    if not os.path.exists(log):
        return []
    start = datetime.datetime.strptime(data["started_at"], "%Y-%m-%dT%H:%M:%SZ")
    end = start + datetime.timedelta(seconds=data["duration_s"])
    out = []
    down = {}  # program -> when supervisord gave up on it (FATAL until spawned again)
    with open(log, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ \w+ (exited|gave up|spawned): '?([\w-]+)'? ?(.*)", line)
            if not m:
                continue
            t = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")
            what, program, rest = m.group(2), m.group(3), m.group(4).strip(" ()")
            if what == "gave up":
                down[program] = t
            elif what == "spawned" and program in down:
                since = down.pop(program)
                if since <= end and t >= start:
                    out.append({"t": round((max(since, start) - start).total_seconds(), 1), "program": program,
                                "how": f"not running (FATAL) for {(min(t, end) - max(since, start)).total_seconds():.0f} s "
                                       "of the run"})
            elif what == "exited" and start <= t <= end:
                out.append({"t": round((t - start).total_seconds(), 1), "program": program, "how": rest})
    for program, since in down.items():
        if since <= end:
            out.append({"t": round((max(since, start) - start).total_seconds(), 1), "program": program,
                        "how": "not running (FATAL) until the end of the run"})
    return sorted(out, key=lambda e: e["t"])


def own_kills(data):
    return [label for _, label in data.get("events", []) if "kill -9" in label]


# ---------------------------------------------------------------------- charts

def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def chart_timeline(data, path, title):
    tl = data["timeline"]
    if not tl:
        return None
    t = [b["t"] for b in tl]
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(8.5, 6.2), sharex=True)
    ax1.plot(t, [b["requests"] for b in tl], lw=1, color="#2f6fa8")
    ax1.set_ylabel("requests/s")
    for key, color in (("p50", "#4caf50"), ("p90", "#ff9800"), ("p99", "#d32f2f")):
        ax2.plot(t, [b[key] for b in tl], lw=1, label=key, color=color)
    ax2.set_ylabel("latency ms (log)")
    ax2.set_yscale("log")
    ax2.legend(loc="upper left", fontsize=7)
    statuses = sorted({s for b in tl for s in b["errors"]})
    bottom = [0] * len(tl)
    for s in statuses:
        vals = [b["errors"].get(s, 0) for b in tl]
        ax3.bar(t, vals, bottom=bottom, width=1.0, label=f"status {s}" if s != "0" else "no answer")
        bottom = [a + b for a, b in zip(bottom, vals)]
    ax3.set_ylabel("errors/s")
    ax3.set_xlabel("seconds since start")
    if statuses:
        ax3.legend(loc="upper left", fontsize=7)
    for ax in (ax1, ax2, ax3):
        for p in data.get("phases", []):
            if "users" in p or "rate" in p:
                ax.axvspan(p["start"], p["end"], color="#e8f0f8", alpha=0.6, lw=0)
        for et, label in data.get("events", []):
            if label.startswith(("kill", "restart", "storage", "nginx", "whole stack st", "rolling restart begins",
                                 "fault")):
                ax.axvline(et, color="#d32f2f", lw=0.8, ls="--")
    for p in data.get("phases", []):
        if "users" in p or "rate" in p:
            ax1.text((p["start"] + p["end"]) / 2, ax1.get_ylim()[1] * 0.92, p["label"], ha="center", fontsize=7)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def chart_histogram(data, endpoint, path, title):
    s = data["samples"]
    ms = [m for e, st, m in zip(s["endpoint"], s["status"], s["ms"]) if e == endpoint and 200 <= st < 300]
    if not ms:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.2))
    hi = sorted(ms)[int(len(ms) * 0.999) - 1] if len(ms) > 10 else max(ms)
    ax.hist([min(m, hi) for m in ms], bins=80, color="#2f6fa8")
    ax.set_yscale("log")
    ax.set_xlabel("ms (the last bin holds everything above p99.9)")
    ax.set_ylabel("requests")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def chart_steps(data, endpoint, path, title, xkey="users"):
    phases = [p for p in data["phases"] if xkey in p]
    if not phases:
        return None
    x = [p[xkey] for p in phases]
    eps = [p["summary"]["endpoints"].get(endpoint, {}) for p in phases]
    fig, ax1 = plt.subplots(figsize=(7, 3.4))
    for key, color in (("p50", "#4caf50"), ("p90", "#ff9800"), ("p99", "#d32f2f"), ("p999", "#7b1fa2")):
        ax1.plot(x, [(e.get("latency_ms") or {}).get(key) for e in eps], marker="o", label=key, color=color)
    ax1.set_yscale("log")
    ax1.set_ylabel(f"{endpoint} latency ms")
    ax1.set_xlabel(xkey)
    ax2 = ax1.twinx()
    ax2.bar(x, [p["summary"]["rps"] for p in phases], width=(max(x) - min(x) + 1) / len(x) * 0.35, alpha=0.25,
            color="#2f6fa8", label="all requests/s")
    ax2.set_ylabel("requests/s (bars)")
    ax1.legend(loc="upper left", fontsize=7)
    ax1.set_title(title, fontsize=10)
    return _save(fig, path)


def chart_capacity(data, path, title):
    phases = [p for p in data["phases"] if "rate" in p]
    if not phases:
        return None
    x = [p["rate"] for p in phases]
    fig, ax = plt.subplots(figsize=(7, 3.4))
    ax.plot(x, [lat(p["summary"], "p99") for p in phases], marker="o", color="#d32f2f", label="p99")
    ax.plot(x, [lat(p["summary"], "p50") for p in phases], marker="o", color="#4caf50", label="p50")
    ax.plot(x, [p["schedule_lag_ms"]["p99"] for p in phases], marker="x", ls=":", color="#777777",
            label="client schedule lag p99")
    budget = data["notes"]["budget_p99_ms"]
    ax.axhline(budget, color="#d32f2f", ls="--", lw=0.8)
    ax.text(x[0], budget * 1.1, f"p99 budget {budget:.0f} ms", fontsize=7, color="#d32f2f")
    knee = data["notes"].get("capacity_votes_per_s")
    if knee:
        ax.axvline(knee, color="#2f6fa8", ls="--", lw=0.8)
        ax.text(knee, ax.get_ylim()[0] * 1.2 if ax.get_yscale() == "log" else 1, f" knee {knee}/s", fontsize=7,
                color="#2f6fa8")
    ax.set_yscale("log")
    ax.set_xlabel("offered votes/s (open model)")
    ax.set_ylabel("latency ms from the due time")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def chart_ready(data, path, title):
    ledger = data.get("ledger") or {}
    ready = ledger.get("uploads_ready") or {}
    acc = {i: (size, fmt) for i, _, size, fmt, *_ in ledger.get("uploads_accepted", [])}
    pts = [(acc[i][0] / 1e6, s, acc[i][1]) for i, s in ready.items() if i in acc]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for fmt, color in (("JPEG", "#2f6fa8"), ("PNG", "#4caf50"), ("WEBP", "#ff9800"), ("HEIC", "#7b1fa2")):
        xs = [p for p in pts if p[2] == fmt]
        ax.scatter([p[0] for p in xs], [p[1] for p in xs], s=10, label=fmt, color=color)
    ax.set_xlabel("upload size MB")
    ax.set_ylabel("202 -> ready seen by the client, s")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


# ---------------------------------------------------------------------- markdown -> HTML

def md_to_html(md, title):
    """The subset of Markdown these reports use: headings, paragraphs, lists, tables,
    images, links, **bold**, `code`."""
    def inline(text):
        text = html.escape(text, quote=False)
        text = re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", r'<img alt="\1" src="\2">', text)
        text = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r'<a href="\2">\1</a>', text)
        text = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)
        return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)

    out, lines, i = [], md.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("<!--"):
            while "-->" not in lines[i]:
                i += 1
            i += 1
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{inline(line[level:].strip())}</h{level}>")
            i += 1
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            out.append("<table><thead><tr>" + "".join(f"<th>{inline(c)}</th>" for c in rows[0]) + "</tr></thead><tbody>")
            out += ["<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in rows[2:]]
            out.append("</tbody></table>")
        elif line.startswith(("- ", "* ")):
            out.append("<ul>")
            while i < len(lines) and lines[i].startswith(("- ", "* ", "  ")):
                item = lines[i][2:].strip()
                i += 1
                while i < len(lines) and lines[i].startswith("  ") and not lines[i].startswith(("- ", "* ")):
                    item += " " + lines[i].strip()
                    i += 1
                out.append(f"<li>{inline(item)}</li>")
            out.append("</ul>")
        else:
            para = [line]
            i += 1
            while i < len(lines) and lines[i].strip() and not lines[i].startswith(("#", "|", "- ", "* ", "<!--")):
                para.append(lines[i])
                i += 1
            out.append(f"<p>{inline(' '.join(para))}</p>")
    css = """
    @page { size: A4; margin: 14mm 13mm; }
    body { font-family: 'Noto Sans CJK KR', 'Noto Sans CJK JP', 'Noto Sans', sans-serif; font-size: 9.4pt;
           line-height: 1.42; color: #1c1c1c; }
    h1 { font-size: 15pt; margin: 0 0 4pt; } h2 { font-size: 11.5pt; margin: 10pt 0 3pt; border-bottom: 1px solid #ccc; }
    h3 { font-size: 10pt; margin: 8pt 0 2pt; }
    p, li { margin: 2pt 0; } ul { margin: 2pt 0 2pt 14pt; padding: 0; }
    table { border-collapse: collapse; margin: 4pt 0; font-size: 8.2pt; page-break-inside: avoid; }
    th, td { border: 1px solid #bbb; padding: 1.5pt 4pt; text-align: left; vertical-align: top; }
    th { background: #eef3f8; } code { font-size: 8.4pt; background: #f3f3f3; padding: 0 2px; }
    img { max-width: 100%; max-height: 88mm; display: block; margin: 4pt auto; page-break-inside: avoid; }
    """
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{css}</style></head><body>{''.join(out)}</body></html>")


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def to_pdf(md_text, title, base_dir, pdf_path):
    exe = chromium()
    if not exe:
        print("no chromium: PDFs not rendered (deploy/local/install.sh installs it)")
        return False
    with tempfile.NamedTemporaryFile("w", suffix=".html", dir=base_dir, delete=False, encoding="utf-8") as f:
        f.write(md_to_html(md_text, title))
        html_path = f.name
    try:
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                            f"--user-data-dir={profile}", "--no-pdf-header-footer", "--print-to-pdf-no-header",
                            f"--print-to-pdf={pdf_path}", f"file://{html_path}"],
                           check=True, capture_output=True, timeout=180)
    finally:
        os.unlink(html_path)
    return True


# ---------------------------------------------------------------------- the reports

def machine_line(lang, runs):
    loads = [r["machine"] for r in runs.values() if r.get("machine")]
    phases = [p for r in runs.values() for p in r.get("phases", []) if "load1" in p]
    busy = [p["machine_cpu_busy"] for r in runs.values() for p in r.get("phases", []) if "machine_cpu_busy" in p]
    cores = loads[0]["cores"] if loads else "?"
    l1 = [p["load1"] for p in phases] or [m["load1"] for m in loads]
    return L(lang,
             f"Machine: {cores} CPU cores shared by the whole stack (nginx, 3 API instances, 2 workers, PostgreSQL, "
             f"Redis, RabbitMQ, Swift, maildev), the load generator itself, and other engineers' builds and tests "
             f"running at the same time. 1-minute load average during the measured phases: {min(l1):.1f}–{max(l1):.1f} "
             f"(on 2 cores); CPU busy {100 * min(busy):.0f}–{100 * max(busy):.0f} %." if l1 and busy else
             f"Machine: {cores} CPU cores, shared.",
             f"머신: CPU {cores}코어를 스택 전체(nginx, API 인스턴스 3개, 워커 2개, PostgreSQL, Redis, RabbitMQ, Swift, "
             f"maildev), 부하 생성기 자신, 그리고 같은 시간에 돌던 다른 엔지니어들의 빌드·테스트가 함께 썼다. 측정 구간의 "
             f"1분 load average {min(l1):.1f}–{max(l1):.1f} (2코어 기준), CPU 사용률 {100 * min(busy):.0f}–"
             f"{100 * max(busy):.0f} %." if l1 and busy else f"머신: CPU {cores}코어, 공유.")


def closed_table(lang, data, endpoint):
    rows = []
    for p in data["phases"]:
        if "users" not in p:
            continue
        s = p["summary"]
        e = s["endpoints"].get(endpoint, {})
        rows.append([p["users"], f0(s["rps"]), f0(e.get("rps")), f1(lat(e, "p50")), f1(lat(e, "p90")), f1(lat(e, "p99")),
                     f1(lat(e, "p999")), pct(s["error_rate"]), f"{p.get('load1', 0):.1f}"])
    return table([L(lang, "virtual users", "가상 사용자"), L(lang, "all req/s", "전체 req/s"),
                  L(lang, "votes/s", "투표/s"), "p50 ms", "p90 ms", "p99 ms", "p99.9 ms",
                  L(lang, "errors", "오류율"), "load1"], rows)


def endpoint_table(lang, data):
    rows = []
    for ep, e in data["summary"]["endpoints"].items():
        errs = ", ".join(f"{k}×{v}" for k, v in sorted(e["statuses"].items()) if data_is_error(data, ep, k))
        rows.append([f"`{ep}`", f0(e["count"]), f1(e["rps"]), f1(lat(e, "p50")), f1(lat(e, "p90")), f1(lat(e, "p99")),
                     f1(lat(e, "p999")), pct(e["error_rate"]), errs or "–"])
    return table([L(lang, "endpoint", "엔드포인트"), "n", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms",
                  L(lang, "errors", "오류율"), L(lang, "error statuses", "오류 상태")], rows)


def data_is_error(data, ep, status):
    st = int(status)
    return not (200 <= st < 400 or st in set(data.get("expected", {}).get(ep, [])))


def open_table(lang, data):
    rows = []
    for p in data["phases"]:
        if "rate" not in p:
            continue
        s = p["summary"]
        rows.append([p["rate"], f0(s["rps"]), f1(lat(s, "p50")), f1(lat(s, "p99")), f1(lat(s, "p999")),
                     pct(s["error_rate"]), f1(p["schedule_lag_ms"]["p99"]), "✔" if p["within_budget"] else "✘",
                     f"{p.get('load1', 0):.1f}"])
    return table([L(lang, "offered votes/s", "투입 투표/s"), L(lang, "answered/s", "응답/s"), "p50 ms", "p99 ms",
                  "p99.9 ms", L(lang, "errors", "오류율"), L(lang, "client lag p99 ms", "클라이언트 지연 p99 ms"),
                  L(lang, "within budget", "예산 이내"), "load1"], rows)


def drill_rows(lang, runs):
    rows = []
    for name, data in runs.items():
        if not name.startswith("drill-"):
            continue
        n, c = data["notes"], data["checks"]
        v, im = c.get("votes", {}), c.get("images", {})
        d = n["disturbance"]
        by = ", ".join(f"{'no answer' if k == '0' else k}×{v_}" for k, v_ in sorted(d["by_status"].items())) or "–"
        total = data["summary"]["requests"]
        rows.append([n["title"] if lang == "en" else TITLES_KO.get(n["drill"], n["title"]), f1(n["recovery_s"]),
                     f"{d['errors']} / {total:,}", by, f1(d["duration_s"]) if d["errors"] else "0",
                     f"{v.get('acknowledged', 0):,} / {v.get('missing_count', 0)} / {v.get('duplicate_count', 0)} / "
                     f"{v.get('phantom_count', 0)}",
                     f"{im.get('accepted', 0)} / {im.get('ready', 0)}" if im else "–",
                     "**PASS**" if c["passed"] else "**FAIL**"])
    return table([L(lang, "drill (under load)", "훈련 (부하 중)"), L(lang, "fault → ready s", "장애 → 복구 s"),
                  L(lang, "client errors / requests", "클라이언트 오류 / 요청"), L(lang, "by status", "상태별"),
                  L(lang, "error window s", "오류 구간 s"),
                  L(lang, "votes acked / lost / dup / phantom", "확인된 투표 / 유실 / 중복 / 유령"),
                  L(lang, "uploads accepted / ready", "업로드 수락 / ready"), L(lang, "checks", "검사")], rows)


TITLES_KO = {
    "api-kill9": "API 인스턴스 kill -9", "rolling-restart": "모든 인스턴스 롤링 재시작 (무중단 배포)",
    "redis-restart": "Redis 재시작", "postgres-restart": "PostgreSQL 재시작", "rabbitmq-restart": "RabbitMQ 재시작",
    "s3-outage": "스토리지(S3) 20초 중단", "gateway-reload": "게이트웨이(nginx) 리로드",
    "stack-restart": "스택 전체 수동 중지 후 재시작", "images-100": "이미지 100개 병렬 업로드, 원본·변형 모두 재확인",
    "images-100-worker-kill9": "이미지 100개 병렬 업로드 중 워커 kill -9 후 재시작",
}


def image_batch_rows(lang, runs):
    rows = []
    for name in ("drill-images-100", "drill-images-100-worker-kill9"):
        data = runs.get(name)
        if not data:
            continue
        im = data["checks"].get("images", {})
        ev = dict((label, t) for t, label in data["events"])
        begin = next((t for label, t in ev.items() if "parallel uploads begin" in label), None)
        done = ev.get("every image of the batch processed")
        sent = data["notes"]["batch"]
        up = {k: v for k, v in data["summary"]["endpoints"].items() if k.startswith("POST /v1/images")}
        up_req = sum(e["count"] for e in up.values())
        up_err = sum(e["errors"] for e in up.values())
        rb = im.get("read_back", 0)
        rows.append([L(lang, "100 parallel", "병렬 100") + (L(lang, " + worker kill -9", " + 워커 kill -9")
                                                          if "kill" in name else ""),
                     f"{sent}", f"{im.get('accepted', 0)}", f"{im.get('ready', 0)}",
                     f"{rb} / {2 * rb}",
                     f"{len(im.get('read_back_bad', []))}", pct(im.get("ready", 0) / sent if sent else None, 1),
                     f"{up_err} / {up_req}", f1(done - begin) if begin is not None and done is not None else "–",
                     "**PASS**" if im.get("passed") else "**FAIL**"])
    return table([L(lang, "batch", "배치"), L(lang, "uploads", "업로드"), L(lang, "accepted (202)", "수락 (202)"),
                  "ready", L(lang, "originals / variants read back", "원본 / 변형 재확인"),
                  L(lang, "bad read-backs", "재확인 불일치"), L(lang, "success rate", "성공률"),
                  L(lang, "upload errors / requests", "업로드 오류 / 요청"), L(lang, "first upload → all ready s",
                                                                        "첫 업로드 → 전부 ready s"),
                  L(lang, "checks", "검사")], rows)


def sim_section(lang, runs, rel):
    out = []
    closed, open_, imgs, mixed = (runs.get(k) for k in ("sim-votes-closed", "sim-votes-open", "sim-images", "sim-mixed"))
    if closed:
        n = closed["notes"]
        out += [L(lang, "### Voters, closed model", "### 투표자, 폐쇄형 모델"), "",
                L(lang, f"Virtual users (Locust) signed in by the email-code flow (code read from maildev's API), then "
                        f"looped: list open polls → open one → vote → read its results, 0.3–1 s between steps and 1–3 s "
                        f"between visits; some kept a live-results stream (SSE) open for 15–40 s; 2 owners created and "
                        f"closed polls. Steps of {', '.join(str(s) for s in n['steps'])} users, each held {n['hold_s']} s "
                        f"after every user of the step had signed in. Each user connects from a loopback address of its "
                        f"own (127.0.x.y), as distinct people would, so per-IP limits apply per user. "
                        f"{n['signed_in']:,} sign-ins succeeded, {n['sign_in_failed']} failed.",
                  f"가상 사용자(Locust)는 이메일 코드 흐름으로 로그인하고(코드는 maildev API에서 읽음), 열린 투표 목록 → "
                  f"투표 하나 열기 → 투표 → 결과 조회를 반복했다(단계 사이 0.3–1초, 방문 사이 1–3초). 일부는 실시간 결과 "
                  f"스트림(SSE)을 15–40초 열어 두었고, 소유자 2명이 투표를 만들고 닫았다. 사용자 수 "
                  f"{', '.join(str(s) for s in n['steps'])} 단계, 각 단계는 모든 사용자가 로그인한 뒤 {n['hold_s']}초 "
                  f"유지·측정했다. 각 사용자는 자기만의 루프백 주소(127.0.x.y)에서 접속하므로 IP별 제한이 사용자별로 "
                  f"적용된다. 로그인 성공 {n['signed_in']:,}건, 실패 {n['sign_in_failed']}건."), "",
                closed_table(lang, closed, "POST /v1/polls/{id}/votes"), "",
                f"![]({rel}img/votes-closed-steps.png)", "",
                f"![]({rel}img/votes-closed-timeline.png)", "",
                f"![]({rel}img/votes-closed-histogram.png)", "",
                L(lang, "Whole run, per endpoint (successful answers' latency; expected refusals such as 409 "
                        "`poll_closed` are answers, not errors):",
                  "전체 실행, 엔드포인트별 (성공 응답의 지연; 409 `poll_closed` 같은 예정된 거절은 오류가 아니라 응답):"),
                "", endpoint_table(lang, closed), ""]
    if open_:
        n = open_["notes"]
        out += [L(lang, "### Votes, open model (capacity)", "### 투표, 개방형 모델 (용량)"), "",
                L(lang, f"Votes sent at a fixed arrival rate whatever the answers do, {n['step_s']} s per step, "
                        f"{n['voters']} signed-in voters over {n['polls']} polls, up to {n['connections']} connections; "
                        f"latency counts from the moment a vote was due (waiting for a free connection included: no "
                        f"coordinated omission). Budget: p99 ≤ {n['budget_p99_ms']:.0f} ms and errors ≤ "
                        f"{100 * n['max_error_rate']:.0f} %. **Capacity (the knee) on this machine: "
                        f"{f0(n['capacity_votes_per_s'])} votes/s**. The client's own schedule lag is shown: where it "
                        f"grows, the Python generator on the same 2 cores, not only the server, is the limit.",
                  f"응답과 무관하게 고정 도착률로 투표를 보냈다(단계당 {n['step_s']}초, 로그인한 투표자 {n['voters']}명, "
                  f"투표 {n['polls']}개, 연결 최대 {n['connections']}개). 지연은 투표가 보내져야 했던 시각부터 잰다(빈 연결을 "
                  f"기다린 시간 포함: coordinated omission 없음). 예산: p99 ≤ {n['budget_p99_ms']:.0f} ms, 오류 ≤ "
                  f"{100 * n['max_error_rate']:.0f} %. **이 머신의 용량(무릎점): {f0(n['capacity_votes_per_s'])} 투표/s**. "
                  f"클라이언트 자신의 일정 지연도 함께 보인다: 이것이 커지는 구간에서는 같은 2코어 위의 파이썬 생성기도 한계다."),
                "", open_table(lang, open_), "", f"![]({rel}img/votes-open-capacity.png)", ""]
    if imgs:
        n = imgs["notes"]
        c = imgs["checks"].get("images", {})
        ready = sorted((imgs.get("ledger") or {}).get("uploads_ready", {}).values())
        out += [L(lang, "### Uploaders, closed model", "### 업로더, 폐쇄형 모델"), "",
                L(lang, f"Uploaders signed in, then looped: upload (raw body or multipart, half each) an image from a "
                        f"corpus of JPEG, PNG, WebP and HEIC files of about 50 KB to 8 MB, poll its status every second "
                        f"until `ready`, fetch its thumbnail and preview (302 → presigned storage URL), page through "
                        f"their history; 1–3 s between rounds. Steps of {', '.join(str(s) for s in n['steps'])} "
                        f"uploaders, {n['hold_s']} s each. Accepted {c.get('accepted', 0)} uploads "
                        f"({', '.join(f'{k} {v}' for k, v in sorted(c.get('formats', {}).items()))}), "
                        f"{c.get('ready', 0)} ready; time from 202 to `ready` seen by the client: p50 "
                        f"{f1(ready[len(ready) // 2] if ready else None)} s, p90 "
                        f"{f1(ready[int(len(ready) * 0.9)] if ready else None)} s, max {f1(ready[-1] if ready else None)} s.",
                  f"업로더는 로그인 후 반복했다: 약 50 KB–8 MB의 JPEG, PNG, WebP, HEIC 파일 중 하나를 업로드(원시 본문과 "
                  f"multipart 반반), `ready`가 될 때까지 1초마다 상태 조회, 썸네일과 미리보기 가져오기(302 → 서명된 "
                  f"스토리지 URL), 업로드 이력 페이지 넘기기; 라운드 사이 1–3초. 업로더 "
                  f"{', '.join(str(s) for s in n['steps'])}명 단계, 각 {n['hold_s']}초. 수락된 업로드 {c.get('accepted', 0)}건 "
                  f"({', '.join(f'{k} {v}' for k, v in sorted(c.get('formats', {}).items()))}), ready {c.get('ready', 0)}건; "
                  f"클라이언트가 본 202 → `ready` 시간: p50 {f1(ready[len(ready) // 2] if ready else None)}초, p90 "
                  f"{f1(ready[int(len(ready) * 0.9)] if ready else None)}초, 최대 {f1(ready[-1] if ready else None)}초."),
                "", endpoint_table(lang, imgs), "", f"![]({rel}img/images-ready.png)", "",
                f"![]({rel}img/images-timeline.png)", ""]
    if mixed:
        n = mixed["notes"]
        out += [L(lang, "### Mixed", "### 혼합"), "",
                L(lang, f"Voters, owners and uploaders at once: {n['steps'][0]} users held {n['hold_s']} s.",
                  f"투표자, 소유자, 업로더 동시: 사용자 {n['steps'][0]}명, {n['hold_s']}초 유지."), "",
                endpoint_table(lang, mixed), "", f"![]({rel}img/mixed-timeline.png)", ""]
    return out


def checks_line(lang, runs):
    sims = [(k, r["checks"]) for k, r in runs.items() if k.startswith("sim-")]
    acked = sum(c.get("votes", {}).get("acknowledged", 0) for _, c in sims)
    lost = sum(c.get("votes", {}).get("missing_count", 0) for _, c in sims)
    ok = all(c["passed"] for _, c in sims)
    return L(lang, f"After every simulation run the checkers compared what clients were told with the database: "
                   f"{acked:,} acknowledged votes, {lost} missing; every run's checks "
                   f"{'passed' if ok else 'did NOT all pass'}.",
             f"각 시뮬레이션 후 검사기가 클라이언트가 받은 응답과 데이터베이스를 대조했다: 확인 응답을 받은 투표 "
             f"{acked:,}건, 유실 {lost}건; 모든 실행의 검사 {'통과' if ok else '일부 실패'}.")


def foreign_section(lang, runs):
    rows = []
    for name, data in runs.items():
        for e in data.get("foreign", []):
            rows.append([name, f1(e["t"]), e["program"], e["how"]])
    if not rows:
        return [L(lang, "No process of the stack exited during the runs other than by the drills' own faults.",
                  "실행 중 훈련 자신의 장애 외에 종료된 스택 프로세스는 없었다.")]
    return [L(lang, "Processes of the stack that exited during a run (supervisord's log). The stack is shared with "
                    "other engineers, whose tests also kill instances; exits a drill did not cause are errors the "
                    "run's numbers include:",
              "실행 중 종료된 스택 프로세스 (supervisord 로그). 스택은 다른 엔지니어들과 공유되며 그들의 테스트도 "
              "인스턴스를 죽인다; 훈련이 일으키지 않은 종료로 생긴 오류도 수치에 포함되어 있다:"), "",
            table([L(lang, "run", "실행"), L(lang, "s after start", "시작 후 s"), L(lang, "program", "프로그램"),
                   L(lang, "how", "사유")], rows)]


# The prose of each report: written once per language; numbers come in through fmt().

def voting_report(lang, runs, rel, summary_only=False):
    closed, open_ = runs.get("sim-votes-closed"), runs.get("sim-votes-open")
    drills = {k: v for k, v in runs.items() if k.startswith("drill-")}
    ok = sum(1 for d in drills.values() if d["checks"]["passed"])
    acked = sum(d["checks"].get("votes", {}).get("acknowledged", 0) for d in drills.values())
    lost = sum(d["checks"].get("votes", {}).get("missing_count", 0) for d in drills.values())
    dup = sum(d["checks"].get("votes", {}).get("duplicate_count", 0) for d in drills.values())
    errs = {k[len("drill-"):]: d["notes"]["disturbance"]["errors"] for k, d in drills.items()}
    top = max((p for p in (closed or {}).get("phases", []) if "users" in p), key=lambda p: p["users"], default=None)
    vote_top = top["summary"]["endpoints"].get("POST /v1/polls/{id}/votes", {}) if top else {}
    knee = (open_ or {}).get("notes", {}).get("capacity_votes_per_s")
    out = [L(lang, "# Online voting on a stateless architecture — report", "# 무상태 아키텍처 기반 온라인 투표 시스템 — 보고서"), "",
           L(lang, f"Generated by `./stack report` from the results of the runs of {generated(runs)}; every number "
                   f"below is read from those results files.",
             f"`./stack report`가 {generated(runs)} 실행 결과로부터 생성했다. 아래 모든 수치는 그 결과 파일에서 읽은 것이다."),
           "", L(lang, "## Summary (1–2 pages)", "## 요약 (1–2쪽)"), "",
           L(lang, "**What was built.** Sign-in by a 6-digit email code → an Ed25519 JWT (15 min) and a rotating "
                   "refresh token; polls; one vote per user per poll, enforced by the primary key (poll, user) of "
                   "`ballots` in PostgreSQL; results counted in Redis and streamed live (SSE). Three API instances "
                   "behind nginx (round robin, no stickiness) and two workers; PostgreSQL, Redis, RabbitMQ and S3 "
                   "hold all state.",
             "**구현한 것.** 6자리 이메일 코드 로그인 → Ed25519 JWT(15분)와 회전하는 리프레시 토큰; 투표 생성; "
             "PostgreSQL `ballots`의 기본키 (poll, user)로 보장되는 사용자당 투표당 1표; Redis에서 집계하고 SSE로 "
             "실시간 전송하는 결과. nginx 뒤 API 인스턴스 3개(라운드 로빈, 고정 세션 없음)와 워커 2개; 모든 상태는 "
             "PostgreSQL, Redis, RabbitMQ, S3에 있다."), "",
           L(lang, "**Measured (this machine).**", "**측정 결과 (이 머신).**"), ""]
    rows = []
    if top:
        rows.append([L(lang, f"closed model, {top['users']:,} virtual users", f"폐쇄형, 가상 사용자 {top['users']:,}명"),
                     L(lang, f"{f0(top['summary']['rps'])} req/s, votes p50 {f1(lat(vote_top, 'p50'))} ms / p99 "
                             f"{f1(lat(vote_top, 'p99'))} ms, errors {pct(top['summary']['error_rate'])}",
                       f"{f0(top['summary']['rps'])} req/s, 투표 p50 {f1(lat(vote_top, 'p50'))} ms / p99 "
                       f"{f1(lat(vote_top, 'p99'))} ms, 오류 {pct(top['summary']['error_rate'])}")])
    if open_:
        rows.append([L(lang, "open model capacity (p99 budget "
                             f"{open_['notes']['budget_p99_ms']:.0f} ms)", f"개방형 용량 (p99 예산 "
                                                                         f"{open_['notes']['budget_p99_ms']:.0f} ms)"),
                     L(lang, f"{f0(knee)} votes/s", f"{f0(knee)} 투표/s")])
    rows.append([L(lang, "failover drills under load", "부하 중 장애 훈련"),
                 L(lang, f"{ok} of {len(drills)} passed every check; {acked:,} acknowledged votes, {lost} lost",
                   f"{len(drills)}개 중 {ok}개 모든 검사 통과; 확인된 투표 {acked:,}건, 유실 {lost}건")])
    out += [table([L(lang, "measure", "항목"), L(lang, "result", "결과")], rows), "", machine_line(lang, runs), ""]
    out += [L(lang, "**Why state had to leave the servers.** The brief asks for instances that can be replaced, "
                    "scaled and deployed without downtime. An instance that kept sessions, codes, rate limits or "
                    "vote flags in memory would tie each user to it (sticky sessions), lose them at a crash or deploy, "
                    "and let two instances disagree (a user voting twice on two instances; a rate limit multiplied "
                    "by the instance count). So: identity travels with the client (a signed JWT any instance "
                    "verifies with a public key); revocation, codes, limits and tallies are in Redis, shared by all; "
                    "the one-vote rule is a primary key in PostgreSQL, decided in the statement that inserts; jobs "
                    "are in RabbitMQ via a transactional outbox. The drills show the consequence: instances, the "
                    f"gateway and every store were killed or restarted under load: {acked:,} acknowledged votes, "
                    f"{lost} lost, {dup} doubled.",
              "**상태를 서버 밖으로 옮긴 이유.** 과제는 교체·확장·무중단 배포가 가능한 인스턴스를 요구한다. 세션, 코드, "
              "요청 제한, 투표 여부를 메모리에 두는 인스턴스는 사용자를 자신에게 묶고(고정 세션), 장애나 배포 때 그것을 "
              "잃으며, 인스턴스끼리 어긋난다(두 인스턴스에서 두 번 투표, 인스턴스 수만큼 늘어나는 요청 제한). 그래서 "
              "신원은 클라이언트가 들고 다니고(어느 인스턴스든 공개키로 검증하는 서명된 JWT), 폐기 목록·코드·제한·집계는 "
              "모두가 공유하는 Redis에, 1인 1표 규칙은 PostgreSQL의 기본키로 삽입하는 문장 안에서 결정되며, 작업은 "
              "트랜잭션 outbox를 거쳐 RabbitMQ에 있다. 훈련이 그 결과를 보여 준다: 부하 중에 인스턴스, 게이트웨이, 모든 "
              f"저장소를 죽이거나 재시작했다: 확인 응답을 받은 투표 {acked:,}건 중 유실 {lost}건, 중복 {dup}건."), "",
            L(lang, "**Benefits seen.** Any instance serves any request (round robin, no affinity); a killed "
                    "instance costs at most the requests in flight, which the gateway retries on another instance "
                    f"(kill -9 drill: {errs.get('api-kill9', '–')} client-visible errors); a rolling restart of every "
                    f"instance cost clients {errs.get('rolling-restart', '–')} errors; adding an instance is starting "
                    "a process.",
              "**확인된 장점.** 어느 인스턴스든 어떤 요청이든 처리한다(라운드 로빈, 친화성 없음); 죽은 인스턴스의 비용은 "
              "처리 중이던 요청뿐이고 게이트웨이가 다른 인스턴스로 재시도한다(kill -9 훈련: 클라이언트가 본 오류 "
              f"{errs.get('api-kill9', '–')}건); 모든 인스턴스의 롤링 재시작 동안 클라이언트가 본 오류는 "
              f"{errs.get('rolling-restart', '–')}건; 인스턴스 추가는 프로세스 하나를 띄우는 일이다."), "",
            L(lang, "**Limits seen.** Statelessness moves the problem, it does not remove it: every request now pays "
                    "a Redis round trip (revocation check) and every vote a PostgreSQL commit; the stores become the "
                    "single points of failure — a PostgreSQL or Redis restart is seen by clients as 503s with "
                    f"Retry-After or lost connections ({errs.get('postgres-restart', '–')} and "
                    f"{errs.get('redis-restart', '–')} errors in the drills), which they must retry; a JWT stays valid "
                    "until it expires unless every request checks the denylist (this system does, at the cost "
                    "above).",
              "**확인된 한계.** 무상태는 문제를 옮길 뿐 없애지 않는다: 모든 요청이 Redis 왕복(폐기 확인)을, 모든 투표가 "
              "PostgreSQL 커밋을 치른다; 저장소가 단일 장애점이 된다 — PostgreSQL이나 Redis 재시작은 확인된 것을 잃지는 "
              "않더라도 클라이언트에게 Retry-After가 붙은 503이나 끊긴 연결로 보이며(훈련에서 각각 "
              f"{errs.get('postgres-restart', '–')}건, {errs.get('redis-restart', '–')}건) 클라이언트가 재시도해야 한다; JWT는 매 요청이 거부 목록을 확인하지 "
              "않으면 만료까지 유효하다(이 시스템은 위 비용을 치르고 확인한다)."), "",
            L(lang, "**Weaknesses of this implementation and how to improve them.**",
              "**이 구현의 약점과 개선 방안.**"), "",
            L(lang, "- One PostgreSQL and one Redis, no replicas: a store restart is an outage of seconds (drills). "
                    "→ PostgreSQL with a synchronous standby and automatic failover (Patroni), Redis Sentinel or a "
                    "managed service; the clients already retry and fail closed.",
              "- PostgreSQL과 Redis가 각각 하나, 복제본 없음: 저장소 재시작은 수 초의 중단이다(훈련). → 동기 스탠바이와 "
              "자동 장애 조치(Patroni)를 갖춘 PostgreSQL, Redis Sentinel 또는 관리형 서비스; 클라이언트는 이미 재시도하고 "
              "실패 시 닫힌다."),
            L(lang, "- Everything on 2 shared cores: the numbers above are the capacity of one small machine with the "
                    "load generator on it, not of the design. → separate machines for the gateway, the instances and "
                    "the stores; the open-model knee is the figure to re-measure there.",
              "- 모든 것이 공유된 2코어 위: 위 수치는 부하 생성기까지 올라간 작은 머신 한 대의 용량이지 설계의 용량이 "
              "아니다. → 게이트웨이, 인스턴스, 저장소를 다른 머신으로; 그곳에서 개방형 무릎점을 다시 재야 한다."),
            L(lang, "- On this machine nothing scales by itself: `./stack scale api=N workers=M` changes the "
                    "instance count live, but no controller watches load. The Kubernetes manifests in `deploy/k8s/` "
                    "carry that (an HPA on CPU and requests/s for the API, KEDA on queue depth for the workers); "
                    "they are rendered, schema-validated and policy-checked in `./stack test` and their pods run "
                    "under `podman kube play`, but no real cluster has autoscaled them yet. → run them on a cluster "
                    "and measure the scale-out time under a load step.",
              "- 이 머신에서는 스스로 확장되는 것이 없다: `./stack scale api=N workers=M`가 인스턴스 수를 실시간으로 "
              "바꾸지만 부하를 보는 컨트롤러는 없다. `deploy/k8s/`의 쿠버네티스 매니페스트가 그 일을 맡는다(API는 CPU와 "
              "초당 요청 수 기반 HPA, 워커는 큐 깊이 기반 KEDA). `./stack test`에서 렌더링, 스키마 검증, 정책 검사를 "
              "거치고 `podman kube play`로 파드를 실행하지만, 실제 클러스터에서 자동 확장된 적은 아직 없다. → "
              "클러스터에서 실행하고 부하 계단에서 확장 시간을 재야 한다."),
            L(lang, "- Results in Redis can lag the ballot table after a crash between commit and count (until the "
                    "30 s reconciler or a retry); the drills check that results converge, not that they never lag.",
              "- 커밋과 집계 사이에 장애가 나면 Redis의 결과가 투표 테이블보다 늦을 수 있다(30초 조정기나 재시도까지); "
              "훈련은 결과가 수렴하는지를 확인할 뿐, 결코 늦지 않는지는 확인하지 않는다."),
            L(lang, "- Email sign-in from one address is rate limited per IP; a real crowd behind one NAT would hit "
                    "it. → limits per address plus a CAPTCHA step, or limits raised for known NATs "
                    "(`NIMBUS_AUTH_IP_*_PER_MINUTE` at `./stack up`).",
              "- 이메일 로그인은 IP별로 제한된다; 하나의 NAT 뒤의 실제 군중은 이에 걸린다. → 주소별 제한과 CAPTCHA 단계, "
              "또는 알려진 NAT에 대한 제한 완화(`./stack up` 시 `NIMBUS_AUTH_IP_*_PER_MINUTE`)."), ""]
    out += [L(lang, "**Failover drills (each under vote and upload load).**", "**장애 복구 훈련 (각각 투표·업로드 부하 중).**"),
            "", drill_rows(lang, runs), ""]
    if summary_only:
        out += [L(lang, f"The full analysis (every step, endpoint, chart and drill timeline) is in "
                        f"`docs/reports/voting.{lang}.md` and `simulation.{lang}.md`.",
                  f"전체 분석(모든 단계, 엔드포인트, 차트, 훈련 타임라인)은 `docs/reports/voting.{lang}.md`와 "
                  f"`simulation.{lang}.md`에 있다.")]
        return "\n".join(out)
    out += ["", L(lang, "## Full analysis", "## 전체 분석"), "",
            L(lang, "### Architecture", "### 아키텍처"), "", f"![]({rel}../diagrams/architecture.png)", "",
            f"![]({rel}../diagrams/seq-signin.png)", "", f"![]({rel}../diagrams/seq-vote.png)", "",
            L(lang, "### Simulation", "### 시뮬레이션"), ""]
    out += sim_section(lang, {k: v for k, v in runs.items() if k.startswith("sim-votes")}, rel)
    out += [checks_line(lang, runs), "", L(lang, "### Drills", "### 훈련"), ""]
    out += drill_detail(lang, runs, rel)
    out += ["", L(lang, "### What the numbers did not reach, and why", "### 수치가 도달하지 못한 것과 그 이유"), ""]
    out += honesty(lang, runs)
    return "\n".join(out)


def honesty(lang, runs):
    out = []
    closed, open_ = runs.get("sim-votes-closed"), runs.get("sim-votes-open")
    if open_:
        last = [p for p in open_["phases"] if "rate" in p][-1]
        lag = last["schedule_lag_ms"]["p99"]
        out.append(L(lang, f"- The open model stopped at {last['rate']} votes/s (p99 {f1(lat(last['summary'], 'p99'))} ms, "
                           f"client schedule lag p99 {f1(lag)} ms). bench/README.md measures the saturated vote rate "
                           f"with wrk (C) and minted tokens, a far lighter client; here the generator is Python "
                           f"on the same 2 cores as the stack and other engineers' compilers, so the knee is the "
                           f"system's *and* the generator's.",
                     f"- 개방형 모델은 {last['rate']} 투표/s에서 멈췄다(p99 {f1(lat(last['summary'], 'p99'))} ms, 클라이언트 "
                     f"일정 지연 p99 {f1(lag)} ms). bench/README.md는 훨씬 가벼운 클라이언트인 wrk(C)와 발급한 토큰으로 "
                     f"포화 투표율을 잰다; 여기서는 생성기가 스택과 다른 엔지니어들의 컴파일러와 같은 2코어 위의 "
                     f"파이썬이므로, 무릎점은 시스템과 생성기 양쪽의 것이다."))
    if closed:
        top = max((p for p in closed["phases"] if "users" in p), key=lambda p: p["users"])
        out.append(L(lang, f"- At {top['users']:,} virtual users the machine was {100 * top.get('machine_cpu_busy', 0):.0f} % "
                           f"busy (load average {top.get('load1', 0):.1f} on 2 cores): the latency at the top step "
                           f"measures queueing for CPU shared by the load generator, the stack and other work.",
                     f"- 가상 사용자 {top['users']:,}명에서 머신은 {100 * top.get('machine_cpu_busy', 0):.0f} % 바빴다(2코어에 "
                     f"load average {top.get('load1', 0):.1f}): 최상위 단계의 지연은 부하 생성기, 스택, 다른 작업이 나눠 쓰는 "
                     f"CPU 대기를 잰 것이다."))
    disturbed = [k for k, r in runs.items() if r.get("foreign")]
    if disturbed:
        out.append(L(lang, f"- Runs disturbed by processes of the shared stack that the run did not stop (other "
                           f"engineers' tests and rebuilds; see Interference in simulation.{lang}.md): "
                           f"{', '.join(disturbed)}. Their numbers include that.",
                     f"- 실행이 멈추지 않은 공유 스택 프로세스(다른 엔지니어들의 테스트와 재빌드)의 영향을 받은 실행 "
                     f"(simulation.{lang}.md의 간섭 절 참조): {', '.join(disturbed)}. 그 수치에는 이 영향이 포함되어 있다."))
    out.append(L(lang, "- The runs are minutes long, not hours: slow leaks, log growth and token expiry over a "
                       "day are not covered.",
                 "- 실행은 시간 단위가 아니라 분 단위다: 느린 누수, 로그 증가, 하루에 걸친 토큰 만료는 다루지 않는다."))
    return out


def drill_detail(lang, runs, rel):
    out = []
    for name, data in runs.items():
        if not name.startswith("drill-"):
            continue
        n, c = data["notes"], data["checks"]
        title = n["title"] if lang == "en" else TITLES_KO.get(n["drill"], n["title"])
        d = n["disturbance"]
        out += [f"#### {title}", "",
                L(lang, f"{n['voters']} voters and {n['uploaders']} uploaders"
                        + (f", then a batch of {n['batch']} parallel uploads" if n["batch"] else "")
                        + f"; fault at {f1(n['fault_at'])} s, service back {f1(n['recovery_s'])} s later; "
                          f"client-visible errors: {d['errors']}"
                        + (f" ({', '.join(f'{k}×{v}' for k, v in d['by_status'].items())}), from "
                           f"{f1(d['first_s'])} s to {f1(d['last_s'])} s after the fault" if d["errors"] else "")
                        + f". Checks: {'passed' if c['passed'] else 'FAILED'}.",
                  f"투표자 {n['voters']}명, 업로더 {n['uploaders']}명"
                  + (f", 이어서 병렬 업로드 {n['batch']}건 배치" if n["batch"] else "")
                  + f"; {f1(n['fault_at'])}초에 장애, {f1(n['recovery_s'])}초 뒤 서비스 복구; 클라이언트가 본 오류: "
                    f"{d['errors']}건"
                  + (f" ({', '.join(f'{k}×{v}' for k, v in d['by_status'].items())}), 장애 후 {f1(d['first_s'])}초부터 "
                     f"{f1(d['last_s'])}초까지" if d["errors"] else "")
                  + f". 검사: {'통과' if c['passed'] else '실패'}."), "",
                f"![]({rel}img/{name}.png)", ""]
        if not c["passed"]:
            out += ["```", json.dumps({k: v for k, v in c.items() if k != "passed"})[:1200], "```", ""]
    return out


def images_report(lang, runs, rel, summary_only=False):
    imgs = runs.get("sim-images")
    out = [L(lang, "# Image uploads on a stateless architecture — report",
             "# 무상태 아키텍처 기반 이미지 업로드 처리 시스템 — 보고서"), "",
           L(lang, f"Generated by `./stack report` from the results of the runs of {generated(runs)}.",
             f"`./stack report`가 {generated(runs)} 실행 결과로부터 생성했다."), "",
           L(lang, "## Summary (1–2 pages)", "## 요약 (1–2쪽)"), "",
           L(lang, "**What was built.** `POST /v1/images` streams the body (raw or multipart) through the API "
                   "instance into S3 while hashing and checking it (type from magic bytes, dimensions from the "
                   "header, limits) — bounded memory, no local file; the row and its `image.process` job are written "
                   "in one PostgreSQL transaction (outbox), relayed to RabbitMQ; workers (libvips) make a 256×256 "
                   "WebP thumbnail and a ≤1280 px JPEG preview, store them in S3, and mark the image `ready`. Large "
                   "files can go straight to S3 by a presigned PUT.",
             "**구현한 것.** `POST /v1/images`는 본문(원시 또는 multipart)을 API 인스턴스를 거쳐 S3로 스트리밍하면서 "
             "해시하고 검사한다(매직 바이트로 형식, 헤더로 크기, 제한) — 메모리는 한정되고 로컬 파일은 없다; 행과 "
             "`image.process` 작업은 한 PostgreSQL 트랜잭션(outbox)에 기록되어 RabbitMQ로 전달된다; 워커(libvips)가 "
             "256×256 WebP 썸네일과 1280px 이하 JPEG 미리보기를 만들어 S3에 저장하고 이미지를 `ready`로 표시한다. 큰 "
             "파일은 서명된 PUT으로 S3에 직접 올릴 수 있다."), "",
           L(lang, "**Test summary (the brief's test: 100 parallel uploads, then with a worker killed).**",
             "**테스트 요약 (과제의 테스트: 병렬 업로드 100건, 그리고 워커를 죽인 상태로).**"), "",
           image_batch_rows(lang, runs), "",
           L(lang, "Read back means: every original fetched from storage and its SHA-256 compared with the one "
                   "recorded at upload and with the bytes the client sent; every variant fetched and decoded "
                   "(format WebP 256×256 for the thumbnail, JPEG ≤1280 px with the original's aspect for the "
                   "preview, dimensions equal to its row).",
             "재확인이란: 모든 원본을 스토리지에서 받아 SHA-256을 업로드 때 기록한 값, 그리고 클라이언트가 보낸 바이트와 "
             "비교하고; 모든 변형을 받아 디코딩하여(썸네일은 WebP 256×256, 미리보기는 원본 비율의 1280px 이하 JPEG, "
             "크기는 행과 동일) 확인하는 것이다."), ""]
    if imgs:
        c = imgs["checks"].get("images", {})
        ups = {k: v for k, v in imgs["summary"]["endpoints"].items() if k.startswith("POST /v1/images")}
        n_up = sum(e["count"] for e in ups.values())
        e_up = sum(e["errors"] for e in ups.values())
        out += [L(lang, f"**Under sustained load** (closed model, up to {max(imgs['notes']['steps'])} uploaders, "
                        f"{imgs['notes']['hold_s']} s per step): {n_up:,} upload requests, {e_up} errors "
                        f"({pct(e_up / n_up if n_up else None)}); {c.get('accepted', 0)} accepted, {c.get('ready', 0)} "
                        f"ready, {c.get('stuck_count', 0)} stuck, {c.get('duplicate_count', 0)} duplicated.",
                  f"**지속 부하에서** (폐쇄형, 업로더 최대 {max(imgs['notes']['steps'])}명, 단계당 "
                  f"{imgs['notes']['hold_s']}초): 업로드 요청 {n_up:,}건, 오류 {e_up}건 ({pct(e_up / n_up if n_up else None)}); "
                  f"수락 {c.get('accepted', 0)}건, ready {c.get('ready', 0)}건, 멈춤 {c.get('stuck_count', 0)}건, "
                  f"중복 {c.get('duplicate_count', 0)}건."), ""]
    kill = runs.get("drill-images-100-worker-kill9", {}).get("checks", {}).get("images")
    kill_en = (f"(the kill -9 batch above: {kill['ready']} of {kill['accepted']} accepted images ready, "
               f"{kill['duplicate_count']} duplicated, {kill['stuck_count']} stuck)" if kill else "")
    kill_ko = (f"(위의 kill -9 배치: 수락된 이미지 {kill['accepted']}개 중 {kill['ready']}개 ready, 중복 "
               f"{kill['duplicate_count']}개, 멈춤 {kill['stuck_count']}개)" if kill else "")
    out += [machine_line(lang, runs), "",
            L(lang, "**What statelessness bought here.** The upload instance keeps nothing after answering 202: the "
                    "object is in S3, the row and job in PostgreSQL/RabbitMQ. So a worker killed mid-batch loses "
                    "nothing — its unacknowledged jobs are redelivered and another worker (or the restarted one) "
                    "picks them up " + kill_en + "; workers and API "
                    "instances scale independently (uploads are I/O, thumbnails CPU); any instance answers the "
                    "status poll, so clients need no affinity; a deploy restarts instances one by one with no lost "
                    "upload.",
              "**무상태가 여기서 준 것.** 업로드 인스턴스는 202 응답 뒤 아무것도 갖고 있지 않다: 객체는 S3에, 행과 "
              "작업은 PostgreSQL/RabbitMQ에 있다. 그래서 배치 중 죽은 워커는 아무것도 잃지 않는다 — 확인되지 않은 작업은 "
              "재전달되어 다른 워커(또는 재시작된 워커)가 가져간다" + kill_ko + "; "
              "워커와 API 인스턴스는 따로 확장된다(업로드는 I/O, 썸네일은 CPU); 상태 조회는 어느 인스턴스든 답하므로 "
              "클라이언트에게 친화성이 필요 없다; 배포는 인스턴스를 하나씩 재시작하며 업로드를 잃지 않는다."), "",
            L(lang, "**If the server kept state.** Files written to an instance's disk would vanish with it (or be "
                    "readable only through it: sticky routing, no scale-in); an in-memory queue would lose every "
                    "pending thumbnail at a crash or deploy and could not be shared by workers on other machines; "
                    "upload progress or sessions in memory would break when the gateway sends the next request "
                    "elsewhere; two instances could process the same image twice with no shared record of who owns "
                    "it.",
              "**서버가 상태를 가졌다면.** 인스턴스 디스크에 쓴 파일은 인스턴스와 함께 사라지거나(또는 그 인스턴스를 통해서만 "
              "읽힌다: 고정 라우팅, 축소 불가); 메모리 큐는 장애나 배포 때 대기 중인 모든 썸네일 작업을 잃고 다른 머신의 "
              "워커와 공유할 수 없다; 메모리의 업로드 진행 상황이나 세션은 게이트웨이가 다음 요청을 다른 곳으로 보내면 "
              "깨진다; 두 인스턴스가 소유 기록을 공유하지 않아 같은 이미지를 두 번 처리할 수 있다."), "",
            L(lang, "**Incidents met while building it, and how they were solved** (from the ADRs and the commit "
                    "history):", "**구현 중 만난 장애와 해결** (ADR과 커밋 기록에서):"), ""]
    out += INCIDENTS[lang]
    out += ["", L(lang, "**Weaknesses and improvements.**", "**약점과 개선 방안.**"), "",
            L(lang, "- Thumbnails are CPU-bound and share 2 cores with everything else: the batch times above are "
                    "this machine's. → workers on their own nodes, scaled on queue depth (KEDA on RabbitMQ).",
              "- 썸네일은 CPU 작업이며 모든 것과 2코어를 나눠 쓴다: 위 배치 시간은 이 머신의 것이다. → 워커를 별도 노드에, "
              "큐 길이 기반 확장(RabbitMQ 기반 KEDA)."),
            L(lang, "- Uploads through the API hold a connection for the whole transfer; large files should use the "
                    "presigned PUT path (implemented) by default in clients.",
              "- API를 거치는 업로드는 전송 내내 연결을 잡는다; 큰 파일은 클라이언트가 기본으로 서명된 PUT 경로(구현됨)를 "
              "써야 한다."),
            L(lang, "- A storage outage makes uploads fail (503, retried by clients) and delays processing by the "
                    "workers' backoff (1, 5, 30, 120 s); a second storage region or a local spool is not built.",
              "- 스토리지 중단 시 업로드는 실패하고(503, 클라이언트가 재시도) 처리는 워커의 백오프(1, 5, 30, 120초)만큼 "
              "늦어진다; 두 번째 스토리지 리전이나 로컬 스풀은 만들지 않았다."), ""]
    if summary_only:
        out += [L(lang, f"Full analysis: `docs/reports/images.{lang}.md`.",
                  f"전체 분석: `docs/reports/images.{lang}.md`.")]
        return "\n".join(out)
    out += [L(lang, "## Full analysis", "## 전체 분석"), "", f"![]({rel}../diagrams/architecture.png)", "",
            f"![]({rel}../diagrams/seq-upload.png)", ""]
    out += sim_section(lang, {k: v for k, v in runs.items() if k in ("sim-images", "sim-mixed")}, rel)
    out += [L(lang, "### Drills", "### 훈련"), "", drill_rows(lang, runs), ""]
    out += drill_detail(lang, {k: v for k, v in runs.items() if "images" in k or "s3" in k}, rel)
    return "\n".join(out)


INCIDENTS = {
    "en": [
        "- A HEIF file whose 64-bit box size wrapped made the header parser loop forever on the event loop "
        "(commit de2a5d3): box walks became overflow-safe and bounded; an event-loop watchdog now aborts an "
        "instance whose loop stops turning, so supervisord restarts it (9d9969f).",
        "- Fuzzing found that a 13-byte Redis reply announcing a billion-element array made hiredis allocate "
        "gigabytes (b7e8121): such replies are now protocol errors.",
        "- A storage that accepts connections and never answers hung uploads for minutes (0e72936): every S3 call "
        "runs under a deadline.",
        "- Direct uploads: pinning the object by ETag could not stop a later PUT to the same presigned URL from "
        "replacing the original; ADR 0005 stages the upload and copies it server-side on `complete`.",
        "- A COMMIT whose reply was lost left the API unsure whether the job was queued; it now reads the row back "
        "before deleting anything (1e588a5, 8bfa81e).",
        "- A job that crashed its worker every time would be redelivered forever; attempts are counted when a job "
        "is taken, so the 5th attempt fails the image instead (1e588a5).",
        "- Multipart part headers before the file were unbounded (100 KB accepted; df3097a): now limited to 64 KiB.",
    ],
    "ko": [
        "- 64비트 박스 크기가 넘친 HEIF 파일이 헤더 파서를 이벤트 루프 위에서 무한 반복시켰다(커밋 de2a5d3): 박스 순회를 "
        "오버플로 안전하게 만들고 한도를 두었다; 이제 이벤트 루프 감시견이 멈춘 인스턴스를 중단시켜 supervisord가 "
        "재시작한다(9d9969f).",
        "- 퍼징으로 10억 원소 배열을 알리는 13바이트 Redis 응답이 hiredis에 수 GB를 할당시킴을 찾았다(b7e8121): 이제 "
        "그런 응답은 프로토콜 오류다.",
        "- 연결은 받지만 답하지 않는 스토리지가 업로드를 수 분간 묶었다(0e72936): 모든 S3 호출에 기한을 두었다.",
        "- 직접 업로드: ETag로 객체를 고정해도 같은 서명 URL로의 이후 PUT이 원본을 바꾸는 것을 막지 못했다; ADR 0005는 "
        "업로드를 임시 위치에 두고 `complete` 때 서버 측 복사를 한다.",
        "- COMMIT 응답이 유실되면 API는 작업이 큐에 들어갔는지 알 수 없었다; 이제 무엇이든 지우기 전에 행을 다시 읽는다"
        "(1e588a5, 8bfa81e).",
        "- 매번 워커를 죽이는 작업은 영원히 재전달될 수 있었다; 작업을 가져갈 때 시도 횟수를 세어 5번째 시도에서 이미지를 "
        "실패로 표시한다(1e588a5).",
        "- 파일 앞의 multipart 파트 헤더에 한도가 없었다(100 KB 허용; df3097a): 이제 64 KiB로 제한한다.",
    ],
}


def simulation_report(lang, runs, rel):
    out = [L(lang, "# Simulation and failover drills — results and analysis", "# 시뮬레이션과 장애 복구 훈련 — 결과와 분석"),
           "", L(lang, f"Generated by `./stack report` from the results of {generated(runs)} (raw samples in the run "
                       f"folder, summaries in `docs/reports/data/`). Tools: Locust (Debian's python3-locust) as a "
                       f"library for the closed model, a gevent open-model generator, matplotlib, Graphviz.",
                 f"`./stack report`가 {generated(runs)} 결과로부터 생성했다(원시 샘플은 실행 폴더, 요약은 "
                 f"`docs/reports/data/`). 도구: 폐쇄형 모델은 라이브러리로 쓴 Locust(데비안 python3-locust), 개방형 모델은 "
                 f"gevent 생성기, matplotlib, Graphviz."), "", machine_line(lang, runs), "",
           L(lang, "## Simulation", "## 시뮬레이션"), ""]
    out += sim_section(lang, {k: v for k, v in runs.items() if k.startswith("sim-")}, rel)
    out += [checks_line(lang, runs), "", L(lang, "## Failover drills", "## 장애 복구 훈련"), "",
            L(lang, "Each drill: voters (each vote retried with the same selection on 503 or a lost connection) and "
                    "uploaders run; the fault is applied and marked; the load goes on after recovery; then the "
                    "checkers: every acknowledged vote stored exactly once with its selection, no ballot no client "
                    "sent, published results equal to the ballot table; every accepted upload `ready` with its "
                    "original and both variants in storage, none duplicated, none stuck. \"Error window\" is the "
                    "time from the first to the last client-visible error after the fault.",
              "각 훈련: 투표자(503이나 연결 유실 시 같은 선택으로 재시도)와 업로더가 돌고, 장애를 가하고 표시하며, 복구 뒤에도 "
              "부하가 이어진다; 그 다음 검사기: 확인된 모든 투표가 선택 그대로 정확히 한 번 저장되었는지, 어떤 클라이언트도 "
              "보내지 않은 투표가 없는지, 공개된 결과가 투표 테이블과 같은지; 수락된 모든 업로드가 원본과 두 변형을 "
              "스토리지에 갖고 `ready`인지, 중복·멈춤이 없는지. \"오류 구간\"은 장애 뒤 클라이언트가 본 첫 오류부터 마지막 "
              "오류까지의 시간이다."), "", drill_rows(lang, runs), "", image_batch_rows(lang, runs), ""]
    out += drill_detail(lang, runs, rel)
    out += ["", L(lang, "## Interference", "## 간섭"), ""] + foreign_section(lang, runs)
    out += ["", L(lang, "## What the numbers did not reach, and why", "## 수치가 도달하지 못한 것과 그 이유"), ""]
    out += honesty(lang, runs)
    return "\n".join(out)


def generated(runs):
    """From the first run's start to the last run's end (UTC, to the second)."""
    if not runs:
        return "(no runs)"
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    starts = [datetime.datetime.strptime(r["started_at"], fmt) for r in runs.values()]
    ends = [s + datetime.timedelta(seconds=round(r.get("duration_s", 0))) for s, r in zip(starts, runs.values())]
    return f"{min(starts).strftime(fmt)} – {max(ends).strftime(fmt)}"


def index(runs):
    return "\n".join([
        "# Reports / 보고서", "",
        "Generated by `./stack report` (fresh `./stack up`, the simulation, every drill, then this folder and "
        "`docs/diagrams/` regenerated from the results). `./stack report --render-only` regenerates them from "
        "the latest results without running anything.", "",
        "| | English | 한국어 |", "|---|---|---|",
        "| Voting: 1–2 page summary (PDF) | [pdf/voting-summary.en.pdf](pdf/voting-summary.en.pdf) | "
        "[pdf/voting-summary.ko.pdf](pdf/voting-summary.ko.pdf) |",
        "| Voting: summary + full analysis | [voting.en.md](voting.en.md) | [voting.ko.md](voting.ko.md) |",
        "| Images: 1–2 page summary (PDF) | [pdf/images-summary.en.pdf](pdf/images-summary.en.pdf) | "
        "[pdf/images-summary.ko.pdf](pdf/images-summary.ko.pdf) |",
        "| Images: summary + full analysis | [images.en.md](images.en.md) | [images.ko.md](images.ko.md) |",
        "| Simulation and drills: results and analysis | [simulation.en.md](simulation.en.md) "
        "([PDF](pdf/simulation.en.pdf)) | [simulation.ko.md](simulation.ko.md) ([PDF](pdf/simulation.ko.pdf)) |",
        "| Architecture and sequence diagrams | [../diagrams/](../diagrams/) | |", "",
        f"Runs: {generated(runs)}. Summaries of every run: [data/](data/).", ""])


def generate(results_folder):
    runs = load_results(results_folder)
    if not runs:
        print(f"no results in {results_folder}: run ./stack sim / ./stack drill first")
        return 1
    for d in (IMG, DATA, PDF):
        os.makedirs(d, exist_ok=True)
    for data in runs.values():
        if data.get("observed") is not None and data.get("ledger"):
            data["checks"] = checks.check_results(data)  # the verdict of the checkers as they are now
    diagrams.render_all()
    for name, data in runs.items():
        data["foreign"] = [e for e in foreign_events(data) if not (own_kills(data) and e["how"].startswith(
            "terminated by SIGKILL") and any(e["program"] in k for k in own_kills(data)))
            and not name.endswith("stack-restart") and not name.endswith("rolling-restart")]
    charts = {
        "votes-closed-timeline": lambda: chart_timeline(runs["sim-votes-closed"], os.path.join(IMG, "votes-closed-timeline.png"),
                                                        "Voters, closed model: throughput, latency, errors over time"),
        "votes-closed-steps": lambda: chart_steps(runs["sim-votes-closed"], "POST /v1/polls/{id}/votes",
                                                  os.path.join(IMG, "votes-closed-steps.png"),
                                                  "Vote latency percentiles and throughput per step"),
        "votes-closed-histogram": lambda: chart_histogram(runs["sim-votes-closed"], "POST /v1/polls/{id}/votes",
                                                          os.path.join(IMG, "votes-closed-histogram.png"),
                                                          "Vote latency histogram (closed model, all steps)"),
        "votes-open-capacity": lambda: chart_capacity(runs["sim-votes-open"], os.path.join(IMG, "votes-open-capacity.png"),
                                                      "Capacity curve: offered vote rate vs latency (open model)"),
        "images-ready": lambda: chart_ready(runs["sim-images"], os.path.join(IMG, "images-ready.png"),
                                            "Uploads: time from 202 to ready, by size and format"),
        "images-timeline": lambda: chart_timeline(runs["sim-images"], os.path.join(IMG, "images-timeline.png"),
                                                  "Uploaders: throughput, latency, errors over time"),
        "mixed-timeline": lambda: chart_timeline(runs["sim-mixed"], os.path.join(IMG, "mixed-timeline.png"),
                                                 "Mixed load: throughput, latency, errors over time"),
    }
    for name, make in charts.items():
        try:
            make()
        except KeyError:
            print(f"chart {name}: its run is missing")
    for name, data in runs.items():
        if name.startswith("drill-"):
            chart_timeline(data, os.path.join(IMG, f"{name}.png"), f"{data['notes']['title']} (dashed: fault)")
    for name, data in runs.items():
        with open(os.path.join(DATA, f"{name}.json"), "w", encoding="utf-8") as f:
            json.dump(compact(data), f, indent=1)
    docs = {}
    for lang in ("en", "ko"):
        docs[f"voting.{lang}.md"] = voting_report(lang, runs, "")
        docs[f"images.{lang}.md"] = images_report(lang, runs, "")
        docs[f"simulation.{lang}.md"] = simulation_report(lang, runs, "")
        docs[f"voting-summary.{lang}"] = voting_report(lang, runs, "", summary_only=True)
        docs[f"images-summary.{lang}"] = images_report(lang, runs, "", summary_only=True)
    note = "<!-- generated by sim/report.py from the run results; edit the generator, not this file -->\n"
    for name, text in docs.items():
        if name.endswith(".md"):
            with open(os.path.join(REPORTS, name), "w", encoding="utf-8") as f:
                f.write(note + text + "\n")
    with open(os.path.join(REPORTS, "README.md"), "w", encoding="utf-8") as f:
        f.write(note + index(runs))
    for name in ("voting-summary.en", "voting-summary.ko", "images-summary.en", "images-summary.ko",
                 "simulation.en.md", "simulation.ko.md"):
        pdf = os.path.join(PDF, name.replace(".md", "") + ".pdf")
        to_pdf(docs[name], name, REPORTS, pdf)
    print(f"reports in {REPORTS}, diagrams in {diagrams.DIAGRAMS}")
    return 0
