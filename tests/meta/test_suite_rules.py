"""The suite guards itself: rules every test file must keep, checked on the sources (no
stack needed). Each rule closes a way a test could pass while proving nothing, or harm
the shared stack or the run itself."""
import ast
import pathlib
import re

TESTS = pathlib.Path(__file__).resolve().parent.parent
E2E = TESTS / "e2e"
PY = sorted(p for p in E2E.glob("*.py"))
CPP = sorted(p for d in ("unit", "integration", "support", "fuzz") for p in (TESTS / d).glob("*.[ch]pp"))


def calls(path):
    """(line, dotted name) of every call in a Python file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def test_every_signal_goes_through_the_checked_helper():
    """os.kill(0, …) signals the caller's whole process group (pytest, ctest and ./stack);
    only stack.send_signal may call os.kill, and it refuses 0, 1, the test's own group and
    anything outside the stack."""
    bad = [f"{p.name}:{n.lineno}: {name}" for p in PY if p.name != "stack.py" for n, name in calls(p)
           if name in ("os.kill", "os.killpg", "signal.pthread_kill")]
    assert not bad, bad
    source = (E2E / "stack.py").read_text(encoding="utf-8")
    kills = [n for n, name in calls(E2E / "stack.py") if name == "os.kill"]
    assert len(kills) == 1 and "_signalable(pid)" in source, "one os.kill, behind the check"


def test_nothing_flushes_or_counts_the_shared_stack_globally():
    """The test stack is shared: no test flushes Redis, and none compares counts of a
    whole table (another suite writes to it meanwhile)."""
    flush = re.compile(r"\b(FLUSHALL|FLUSHDB|SCRIPT\W+FLUSH|TRUNCATE)\b", re.I)
    bad = [f"{p.name}:{i}" for p in PY + CPP for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
           if flush.search(line) and not line.lstrip().startswith(("#", "//"))]
    assert not bad, bad
    global_count = re.compile(r"SELECT count\(\*\) FROM \w+\s*[\"')]", re.I)
    bad = [f"{p.name}:{i}" for p in PY for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
           if global_count.search(line)]
    assert not bad, f"a count over a whole table: {bad}"


def test_long_sleeps_say_why():
    """Tests wait for events. A fixed sleep of a second or more is allowed only where the
    time is the point (a TTL, a grace window, the fault itself), said in a comment on
    its line."""
    bad = []
    for path in PY:
        lines = path.read_text(encoding="utf-8").splitlines()
        for node, name in calls(path):
            if name == "time.sleep" and isinstance(node.args[0], ast.Constant) and node.args[0].value >= 1:
                if "#" not in lines[node.lineno - 1]:
                    bad.append(f"{path.name}:{node.lineno}")
    for path in CPP:
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            m = re.search(r"sleep_for\((\d+)(ms|s)\)", line)
            if m and (int(m.group(1)) >= 1000 if m.group(2) == "ms" else int(m.group(1)) >= 1) and "//" not in line:
                bad.append(f"{path.name}:{i}")
    assert not bad, f"sleeps of a second or more without a reason: {bad}"


def test_skips_are_explicit():
    """Skipping is for running by hand without a stack; under ./stack test a skip fails
    (NIMBUS_TEST_NO_SKIP). No test skips itself for any other reason."""
    bad = [f"{p.name}:{n.lineno}" for p in PY for n, name in calls(p) if name in ("pytest.skip", "pytest.xfail")]
    bad += [f"{p.name}:{i}" for p in CPP for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
            if "GTEST_SKIP" in line and p.name != "run.hpp"]
    assert not bad, bad


def test_every_e2e_file_is_a_ctest_suite():
    """CTest finds the suites by pattern: a new test_*.py runs without being listed."""
    cmake = (E2E / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "GLOB" in cmake and "test_*.py" in cmake and "no_skips" in cmake
