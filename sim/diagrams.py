"""docs/diagrams: the sequence diagrams are written as Graphviz sources from the lists
below (lifelines as columns, one row per message), the architecture diagram is
hand-written (architecture.dot); every .dot is rendered to SVG, PNG and PDF."""
import glob
import os
import subprocess

import stackenv

DIAGRAMS = os.path.join(stackenv.ROOT, "docs", "diagrams")

SEQUENCES = {
    "seq-signin": ("Sign-in by email code (no server session: the client holds the tokens)",
                   ["Client", "nginx", "API instance (any)", "Redis", "PostgreSQL", "Worker", "SMTP / inbox"], [
                       ("Client", "nginx", "POST /v1/auth/email/start {email}"),
                       ("nginx", "API instance (any)", "per-IP limit; X-Forwarded-For + gateway secret"),
                       ("API instance (any)", "Redis", "IP + address limits; code stored as HMAC, TTL 10 min, 5 attempts"),
                       ("API instance (any)", "PostgreSQL", "outbox row email.send (same transaction)"),
                       ("API instance (any)", "Client", "202 (same answer for any address)"),
                       ("PostgreSQL", "Worker", "outbox relay -> RabbitMQ -> email.send"),
                       ("Worker", "SMTP / inbox", "email with the 6-digit code"),
                       ("Client", "nginx", "POST /v1/auth/email/verify {email, code}"),
                       ("nginx", "API instance (any)", "round robin: maybe another instance"),
                       ("API instance (any)", "Redis", "check + consume the code atomically (Lua)"),
                       ("API instance (any)", "PostgreSQL", "user upsert; session + refresh token (SHA-256)"),
                       ("API instance (any)", "Client", "200 access JWT (Ed25519, 15 min) + refresh token"),
                       ("Client", "nginx", "later requests: Authorization: Bearer JWT"),
                       ("API instance (any)", "Redis", "verify signature locally; denylist lookup"),
                   ]),
    "seq-vote": ("A vote (exactly once: the primary key decides, in the statement that inserts)",
                 ["Client", "nginx", "API instance (any)", "PostgreSQL", "Redis", "Other instances' SSE clients"], [
                     ("Client", "nginx", "POST /v1/polls/{id}/votes {option_ids}"),
                     ("nginx", "API instance (any)", "round robin; retried on another instance if this one is dead"),
                     ("API instance (any)", "Redis", "token denylist check"),
                     ("API instance (any)", "PostgreSQL", "group commit: INSERT ... ON CONFLICT DO NOTHING (<=256/batch)"),
                     ("PostgreSQL", "API instance (any)", "per row: inserted / same ballot / other ballot / closed"),
                     ("API instance (any)", "Redis", "tally script: count once per (poll, user); PUBLISH"),
                     ("API instance (any)", "Client", "201 (200 for a retry of the same selection, 409 otherwise)"),
                     ("Redis", "Other instances' SSE clients", "pub/sub -> each instance's streams (<= 1 event / 250 ms)"),
                     ("Client", "nginx", "GET /v1/polls/{id}/results"),
                     ("API instance (any)", "Redis", "counts from the tally (PostgreSQL if Redis lost it)"),
                 ]),
    "seq-upload": ("Upload -> thumbnail (the instance keeps nothing after 202)",
                   ["Client", "nginx", "API instance (any)", "S3", "PostgreSQL", "RabbitMQ", "Worker (any)"], [
                       ("Client", "nginx", "POST /v1/images (raw or multipart, <= 25 MiB)"),
                       ("nginx", "API instance (any)", "streamed, not buffered"),
                       ("API instance (any)", "PostgreSQL", "row: uploading"),
                       ("API instance (any)", "S3", "PUT originals/{id} streamed (64 KiB pieces) + SHA-256 + header checks"),
                       ("API instance (any)", "PostgreSQL", "one transaction: status queued + outbox image.process"),
                       ("API instance (any)", "Client", "202 {id, status: queued}"),
                       ("PostgreSQL", "RabbitMQ", "outbox relay publishes (confirms)"),
                       ("RabbitMQ", "Worker (any)", "deliver job (manual ack; redelivered if the worker dies)"),
                       ("Worker (any)", "PostgreSQL", "take: attempts + 1, processing"),
                       ("Worker (any)", "S3", "HEAD + GET original (bounded), verify SHA-256"),
                       ("Worker (any)", "S3", "PUT variants/{id}/thumb (WebP 256x256), /preview (JPEG <= 1280)"),
                       ("Worker (any)", "PostgreSQL", "variants + status ready (guarded: queued|processing -> ready)"),
                       ("Worker (any)", "RabbitMQ", "ack"),
                       ("Client", "nginx", "GET /v1/images/{id} -> ready; variants -> 302 presigned S3 URL"),
                   ]),
}


def sequence_dot(title, parts, messages):
    ids = {p: f"p{i}" for i, p in enumerate(parts)}
    n = len(messages)
    lines = ["// Generated by sim/diagrams.py; edit the lists there.", "digraph seq {",
             f'  graph [fontname="Noto Sans CJK KR", fontsize=11, label="{title}", labelloc=t, nodesep=0.9, ranksep=0.16,'
             ' splines=false, newrank=true];',
             '  node [fontname="Noto Sans CJK KR", fontsize=10];',
             '  edge [fontname="Noto Sans CJK KR", fontsize=8.5];']
    for p, i in ids.items():
        lines.append(f'  {i}_h [label="{p}", shape=box, style="rounded,filled", fillcolor="#dbe9f6"];')
        for k in range(n + 1):
            lines.append(f'  {i}_{k} [shape=point, width=0.01, height=0.01, label=""];')
        chain = " -> ".join([f"{i}_h"] + [f"{i}_{k}" for k in range(n + 1)])
        lines.append(f'  {chain} [style=dashed, color="#aaaaaa", arrowhead=none, weight=100];')
    lines.append("  { rank=same; " + " ".join(f"{i}_h" for i in ids.values()) + " }")
    heads = " -> ".join(f"{i}_h" for i in ids.values())
    lines.append(f"  {heads} [style=invis];")
    for k in range(n + 1):
        lines.append("  { rank=same; " + " ".join(f"{i}_{k}" for i in ids.values()) + " }")
        row = " -> ".join(f"{i}_{k}" for i in ids.values())
        lines.append(f"  {row} [style=invis];")
    for k, (src, dst, label) in enumerate(messages):
        lines.append(f'  {ids[src]}_{k + 1} -> {ids[dst]}_{k + 1} [label="{k + 1}. {label}", constraint=false, '
                     f'color="#2f6fa8", fontcolor="#1c1c1c"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_all():
    os.makedirs(DIAGRAMS, exist_ok=True)
    for name, (title, parts, messages) in SEQUENCES.items():
        with open(os.path.join(DIAGRAMS, f"{name}.dot"), "w", encoding="utf-8") as f:
            f.write(sequence_dot(title, parts, messages))
    for src in sorted(glob.glob(os.path.join(DIAGRAMS, "*.dot"))):
        base = src[:-4]
        for fmt in ("svg", "png", "pdf"):
            args = ["dot", f"-T{fmt}", src, "-o", f"{base}.{fmt}"]
            if fmt == "png":
                args.insert(1, "-Gdpi=110")
            subprocess.run(args, check=True)
