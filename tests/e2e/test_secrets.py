"""Who can read and do what on the machine of the local stack (issue 22, items 3 and 5):
the run folder's secrets readable by their owner only, Redis behind a password, every
long-running program but supervisord and nginx's master off root, the gateway unable to
rewrite its own config, and each Nimbus process holding only its own secrets and a
database role with only the grants it uses.

Run as root (./stack test does), like the stack itself: it reads every process's
/proc entry and tries things as the gateway's user (nobody)."""
import os
import pwd
import re
import stat
import subprocess

import pytest

import stack

RUN = stack.RUN

# Files of the run folder that hold a secret (a password, a key, the gateway or code
# secret), relative to it.
SECRET_FILES = [
    "secrets.env", "stack.env", "supervisord.conf", "jwt-k1.pem", "nginx/nginx.conf", "redis/redis.conf",
    "rabbitmq/rabbitmq.conf", "swift/etc/proxy-server.conf", "swift/etc/swift.conf",
]


def _as_nobody(*command):
    """`command` run as the gateway's user; its exit status."""
    return subprocess.run(["runuser", "-u", "nobody", "--", *command], capture_output=True, check=False).returncode


def _program_env(name):
    """The environment supervisord gives program `name` (as written in its config)."""
    with open(stack.SUPERVISOR_CONF, encoding="utf-8") as f:
        text = f.read()
    section = re.search(rf"^\[program:{re.escape(name)}\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
    assert section, f"no program {name}"
    line = re.search(r"^environment=(.*)$", section.group(1), re.M)
    return dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', line.group(1))) if line else {}


def _running_env(pid):
    with open(f"/proc/{pid}/environ", "rb") as f:
        return dict(item.split("=", 1) for item in f.read().decode().split("\0") if "=" in item)


def _uid(pid):
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        return int(re.search(r"^Uid:\s+(\d+)", f.read(), re.M).group(1))


def _programs():
    """Every program supervisord runs: (name, pid)."""
    out = []
    for line in stack.ctl("status").splitlines():
        m = re.match(r"^(\S+)\s+RUNNING\s+pid (\d+)", line)
        if m:
            out.append((m.group(1).split(":")[-1], int(m.group(2))))
    return out


@pytest.mark.parametrize("name", SECRET_FILES)
def test_secret_files_are_their_owners_alone(name):
    path = os.path.join(RUN, name)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode & 0o077 == 0, f"{name} is {oct(mode)}: readable beyond its owner"
    assert _as_nobody("cat", path) != 0, f"the gateway's user reads {name}"


def test_run_folder_is_not_listable_by_others():
    mode = stat.S_IMODE(os.stat(RUN).st_mode)
    assert mode & 0o066 == 0, f"{RUN} is {oct(mode)}"
    assert _as_nobody("ls", RUN) != 0


def test_the_gateway_cannot_rewrite_its_config():
    conf_dir = os.path.join(RUN, "nginx")
    st = os.stat(conf_dir)
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) & 0o022 == 0, \
        f"{conf_dir} is owned by uid {st.st_uid}, mode {oct(stat.S_IMODE(st.st_mode))}"
    assert _as_nobody("touch", os.path.join(conf_dir, "nginx.conf")) != 0
    assert _as_nobody("mv", os.path.join(conf_dir, "nginx.conf"), os.path.join(conf_dir, "x")) != 0
    # Nothing of the run folder that nobody owns but nginx's own scratch folders.
    scratch = {os.path.join(conf_dir, d) for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    nobody = pwd.getpwnam("nobody").pw_uid
    owned = []
    for top, dirs, files in os.walk(RUN):
        if top in scratch:
            dirs[:] = []
            continue
        for entry in dirs + files:
            path = os.path.join(top, entry)
            if path not in scratch and os.lstat(path).st_uid == nobody:
                owned.append(path)
    assert owned == [], f"owned by the gateway's user: {owned[:10]}"


def test_redis_refuses_unauthenticated_commands():
    port = re.search(r":(\d+)(/|$)", os.environ["NIMBUS_TEST_REDIS_URL"]).group(1)
    out = subprocess.run(["redis-cli", "-p", port, "SET", "secrets-probe", "1"], capture_output=True, text=True,
                         check=False)
    assert "NOAUTH" in out.stdout + out.stderr, f"Redis without a password answered: {out.stdout.strip()}"
    assert stack.redis_cli("PING") == "PONG"  # and with the stack's URL (its password) it answers


def test_only_supervisord_and_the_gateway_master_run_as_root():
    as_root = []
    for name, pid in _programs():
        for p in stack.process_tree(pid):
            if _uid(p) == 0 and not (name == "nginx" and p == pid):
                as_root.append(f"{name} (pid {p})")
    assert as_root == [], f"running as root: {as_root}"


def test_api_and_worker_run_as_users_of_their_own():
    uids = {name.rsplit("-", 1)[0]: _uid(pid) for name, pid in _programs() if name.startswith(("api-", "worker-"))}
    assert uids.keys() >= {"api", "worker"}, uids
    assert uids["api"] != uids["worker"], "the worker could read an API instance's /proc/PID/environ"
    gateway = pwd.getpwnam("nobody").pw_uid
    assert gateway not in uids.values()


def test_the_worker_holds_none_of_the_api_secrets():
    pid = stack.pid_of("workers:worker-1")
    env = _running_env(pid)
    for name in ("NIMBUS_AUTH_CODE_SECRET", "NIMBUS_GATEWAY_SECRET", "NIMBUS_JWT_KEYS"):
        assert name not in env, f"the worker holds {name}"
    api = _running_env(stack.pid_of("api:api-1"))
    assert api["NIMBUS_DATABASE_URL"] != env["NIMBUS_DATABASE_URL"], "the worker uses the API's database role"
    # ... and the API does not hold the broker's password (it never talks to RabbitMQ)
    assert "NIMBUS_AMQP_URL" not in api


def _psql_as(url, sql):
    return subprocess.run(["psql", "-qtA", "-v", "ON_ERROR_STOP=1", url, "-c", sql], capture_output=True, text=True,
                          check=False)


def test_the_worker_database_role_has_only_its_grants():
    url = _program_env("worker-1")["NIMBUS_DATABASE_URL"]
    assert _psql_as(url, "SELECT 1 FROM images LIMIT 1").returncode == 0
    assert _psql_as(url, "SELECT 1 FROM ballots LIMIT 1").returncode == 0  # the tally reconciler counts them
    for sql in ("SELECT 1 FROM sessions LIMIT 1", "SELECT 1 FROM refresh_tokens LIMIT 1", "SELECT 1 FROM users LIMIT 1",
                "INSERT INTO ballots (poll_id, user_id, option_ids) VALUES (gen_random_uuid(), gen_random_uuid(), '{}')",
                "DELETE FROM polls", "CREATE TABLE secrets_probe (x int)", "DROP TABLE images"):
        out = _psql_as(url, sql)
        assert out.returncode != 0 and re.search("permission denied|must be owner", out.stderr), \
            f"the worker's role may: {sql} ({out.stderr.strip()})"


def test_the_api_database_role_cannot_change_the_schema():
    url = _program_env("api-1")["NIMBUS_DATABASE_URL"]
    assert _psql_as(url, "SELECT 1 FROM sessions LIMIT 1").returncode == 0
    for sql in ("CREATE TABLE secrets_probe (x int)", "DROP TABLE ballots", "ALTER TABLE users ADD COLUMN x int",
                "DELETE FROM schema_migrations", "UPDATE outbox SET payload = '{}'"):
        out = _psql_as(url, sql)
        assert out.returncode != 0, f"the API's role may: {sql}"
