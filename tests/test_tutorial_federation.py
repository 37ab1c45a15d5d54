"""docs/tutorials/connect-three-institutions.md, run for real, so that it never rots.

Every ``$ `` line of the tutorial's ``console`` blocks is run, in order, in a fresh directory:
``publieksdata`` commands as subprocesses of the installed CLI, ``… &`` as real uvicorn processes
(``publieksdata.processes``) on free ports, and ``mkdir``, ``cd``, ``export`` and ``kill %N`` the
way a shell would. Nothing is run that the tutorial does not show, and nothing it shows is skipped.

What varies between runs is mapped from the tutorial to this run: ports (8480 → a free port), the
invite code and the token the tutorial shows (→ the ones this run printed), paths and ids. The
lines the tutorial shows starting with ``✓``, ``!``, ``Error:`` or ``Dekking:`` must appear in the
real output. Then the story is checked: the joins print the same fingerprints as ``init`` and
``aggregator nodes``; the first question is answered by 3 of 3 institutions; with one node stopped
the round times out on it and is partial.

Commands that touch different homes and files (the three institutions' ``init``, ``generate`` and
``import``) run at the same time, to keep the test short.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from node.privacy.distributed import secure_calibrations
from node.privacy.release import calibrations
from protocol.query import Measure, Mode
from protocol.reports import REPORTS, year_period
from protocol.results import RoundResult
from publieksdata.processes import Service, Supervisor, free_port, start
from tests.test_docs import test_links_resolve as check_links

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "docs" / "tutorials" / "connect-three-institutions.md"
DOC_HOME = "/home/you"  # where the tutorial pretends to run
Z95 = 1.959963984540054

INVITE_CODE = re.compile(r"\b[0-9A-Z]{5}(?:-[0-9A-Z]{5}){3}\b")
TOKEN = re.compile(r"\bpd_[A-Za-z0-9_-]{20,}")
FINGERPRINT = re.compile(r"\b[0-9A-F]{4}(?: [0-9A-F]{4}){15}\b")
LOCAL_PORT = re.compile(r"(127\.0\.0\.1:|--port )(\d+)")
# Lines of shown output that must appear in the real output (after normalising).
CHECKED_LINE = re.compile(r"^\s*(✓|!|Error:|Dekking:)")


# --- the tutorial --------------------------------------------------------------------------------


@dataclass
class Step:
    command: str
    shown: list[str]  # the output the tutorial shows under the command


def tutorial_steps(text: str) -> list[Step]:
    """Every ``$ `` command of the ``console`` blocks with the lines shown below it."""
    steps: list[Step] = []
    in_console = False
    pending = ""
    for line in text.splitlines():
        if line.startswith("```"):
            in_console = not in_console and line.strip() == "```console"
            continue
        if not in_console:
            continue
        if pending:
            pending += " " + line.strip()
        elif line.startswith("$ "):
            pending = line[2:].strip()
        else:
            if steps:
                steps[-1].shown.append(line)
            continue
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
        else:
            steps.append(Step(pending, []))
            pending = ""
    return steps


# --- a small shell ------------------------------------------------------------------------------


@dataclass
class Ran:
    step: Step
    words: list[str]  # as run, after mapping
    cwd: Path
    returncode: int
    output: str  # stdout and stderr


def _clean_env() -> dict[str, str]:
    """A user's environment: no publieksdata settings, wide enough that nothing wraps."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PUBLIEKSDATA_", "COV_"))}
    env["COLUMNS"] = "200"
    return env


def _program() -> list[str]:
    sibling = Path(sys.executable).parent / "publieksdata"
    return [str(sibling)] if sibling.exists() else [sys.executable, "-m", "publieksdata"]


@dataclass
class Job:
    step: Step
    service: Service

    @property
    def home(self) -> str:
        return Path(self.service.name).name


@dataclass
class Shell:
    root: Path
    supervisor: Supervisor
    pool: ThreadPoolExecutor
    cwd: Path = field(init=False)
    env: dict[str, str] = field(default_factory=_clean_env)
    ports: dict[str, int] = field(default_factory=dict)  # tutorial port → real port
    values: dict[str, str] = field(default_factory=dict)  # tutorial code/token → real one
    producers: dict[str, Future[Ran]] = field(default_factory=dict)
    servers: dict[int, str] = field(default_factory=dict)  # real port → the server's home
    jobs: list[Job] = field(default_factory=list)
    kills: list[tuple[int, list[Job]]] = field(default_factory=list)  # after so many commands
    logs: dict[str, str] = field(default_factory=dict)  # the servers' output at the last kill
    running: list[tuple[set[str], Future[Any], bool]] = field(default_factory=list)
    ran: list[Future[Ran]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cwd = self.root

    # -- mapping the tutorial's values to this run's

    def _port(self, match: re.Match[str]) -> str:
        real = self.ports.setdefault(match.group(2), free_port())
        return f"{match.group(1)}{real}"

    def _value(self, match: re.Match[str]) -> str:
        shown = match.group(0)
        producer = self.producers.get(shown)
        assert producer is not None, f"the tutorial uses {shown!r} before any command printed it"
        producer.result()
        return self.values[shown]

    def mapped(self, command: str) -> str:
        command = LOCAL_PORT.sub(self._port, command)
        command = INVITE_CODE.sub(self._value, command)
        return TOKEN.sub(self._value, command)

    def normalise(self, text: str) -> str:
        """Real output in the tutorial's terms: its paths, ports, ids and codes."""
        text = text.replace(str(self.root), DOC_HOME)
        for shown, real in self.ports.items():
            text = text.replace(f"127.0.0.1:{real}", f"127.0.0.1:{shown}")
        return _ids(text)

    # -- running

    def wait(self, resources: set[str] | None = None, *, servers: bool = True) -> None:
        """Wait for running commands that use any of ``resources`` (None: for all), and for
        servers to become healthy unless ``servers`` is false."""
        still = []
        for used, future, server in self.running:
            if (resources is None and (servers or not server)) or (resources and used & resources):
                future.result()
            else:
                still.append((used, future, server))
        self.running = still

    def resources(self, words: list[str]) -> set[str]:
        """The homes and files a command touches, and the home of any server it talks to."""
        names = [
            words[i + 1]
            for i, word in enumerate(words[:-1])
            if word in ("--home", "--out", "--json", "--csv")
        ]
        if words[1:3] == ["node", "import"]:
            names.append(words[3])
        used = {str((self.cwd / name).resolve()) for name in names}
        for port in re.findall(r"127\.0\.0\.1:(\d+)", " ".join(words)):
            used.add(self.servers.get(int(port), f"port {port}"))
        return used

    def run(self, step: Step) -> None:
        words = shlex.split(step.command)
        if words[0] == "publieksdata" and words[-1] == "&":
            self.background(step)
        elif words[0] == "publieksdata" and words[1] != "ask":
            self.submit(step)
        else:  # everything else waits for what runs
            self.wait()
            if words[0] == "publieksdata":
                self.submit(step)
                self.wait()
            else:
                self.builtin(self.mapped(step.command))

    def builtin(self, command: str) -> None:
        words = shlex.split(command)
        if words[0] == "mkdir" and len(words) == 2:
            (self.cwd / words[1]).mkdir()
        elif words[0] == "cd" and len(words) == 2:
            self.cwd = (self.cwd / words[1]).resolve()
        elif words[0] == "export" and len(words) == 2 and "=" in words[1]:
            name, value = words[1].split("=", 1)
            self.env[name] = value
        elif words[0] == "kill" and all(re.fullmatch(r"%\d+", w) for w in words[1:]):
            jobs = [self.jobs[int(word[1:]) - 1] for word in words[1:]]
            self.logs = {job.home: self.normalise(job.service.output()) for job in self.jobs}
            for job in jobs:
                job.service.stop()
            self.kills.append((len(self.ran), jobs))
        else:
            raise AssertionError(f"the tutorial runs a command this test cannot: {command}")

    def submit(self, step: Step) -> None:
        command = step.command
        for shown in INVITE_CODE.findall(command) + TOKEN.findall(command):
            producer = self.producers.get(shown)
            if producer is not None:
                producer.result()
        words = shlex.split(self.mapped(command))
        used = self.resources(words)
        if not used:
            self.wait()
        self.wait(used)
        future = self.pool.submit(self._execute, step, words, self.cwd, dict(self.env))
        for shown in INVITE_CODE.findall("\n".join(step.shown)) + TOKEN.findall(
            "\n".join(step.shown)
        ):
            self.producers[shown] = future
        self.running.append((used or {"*"}, future, False))
        self.ran.append(future)

    def _execute(self, step: Step, words: list[str], cwd: Path, env: dict[str, str]) -> Ran:
        result = subprocess.run(
            [*_program(), *words[1:]],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        output = result.stdout + result.stderr
        errors = any(line.strip().startswith("Error:") for line in step.shown)
        assert (result.returncode != 0) == errors, (
            f"`{step.command}` exited with {result.returncode}, which the tutorial does not "
            f"show:\n{output}"
        )
        shown = "\n".join(step.shown)
        for pattern in (INVITE_CODE, TOKEN):
            doc_value, real = pattern.search(shown), pattern.search(result.stdout)
            if doc_value and real:
                self.values[doc_value.group(0)] = real.group(0)
        return Ran(step, words, cwd, result.returncode, output)

    def background(self, step: Step) -> None:
        words = shlex.split(self.mapped(step.command))[:-1]
        port = int(words[words.index("--port") + 1])
        at = words.index("--home") + 1
        home = words[at] = str((self.cwd / words[at]).resolve())
        self.wait(servers=False)  # what the user typed before has finished
        self.wait({home})
        service = start(
            home,
            words[1:],
            port,
            self.root / "logs" / f"job-{len(self.jobs) + 1}.log",
            {k: v for k, v in self.env.items() if k.startswith("PUBLIEKSDATA_")},
        )
        self.supervisor.add(service)
        self.jobs.append(Job(step, service))
        self.servers[port] = home
        healthy = self.pool.submit(service.wait_healthy, 60)
        self.running.append(({home, f"port {port}"}, healthy, True))

    def results(self) -> list[Ran]:
        self.wait()
        return [future.result() for future in self.ran]


def _ids(text: str) -> str:
    text = re.sub(r"\bn[0-9a-f]{10}\b", "NODE_ID", text)
    text = re.sub(r"\(id [0-9a-f]{16}\)", "(id ID)", text)
    return INVITE_CODE.sub("CODE", TOKEN.sub("TOKEN", text))


def _fingerprints(text: str) -> list[str]:
    return FINGERPRINT.findall(" ".join(text.split()))


def _find(ran: list[Ran], *prefix: str, home: str | None = None) -> list[Ran]:
    found = [r for r in ran if tuple(r.words[1 : 1 + len(prefix)]) == prefix]
    if home is not None:
        found = [r for r in found if r.words[r.words.index("--home") + 1] == home]
    assert found, f"the tutorial no longer runs `publieksdata {' '.join(prefix)}`"
    return found


def _json_result(run: Ran) -> RoundResult:
    path = run.cwd / run.words[run.words.index("--json") + 1]
    return RoundResult.model_validate_json(path.read_text("utf-8"))


# --- the tests -----------------------------------------------------------------------------------


def test_links_resolve() -> None:
    check_links(TUTORIAL)


def test_the_tutorial_shows_the_whole_story() -> None:
    commands = [shlex.split(step.command) for step in tutorial_steps(TUTORIAL.read_text("utf-8"))]
    shown = {" ".join(words[:3]) for words in commands}
    for needed in (
        "publieksdata aggregator init",
        "publieksdata aggregator token",
        "publieksdata aggregator serve",
        "publieksdata node init",
        "publieksdata node generate",
        "publieksdata node import",
        "publieksdata aggregator invite",
        "publieksdata node join",
        "publieksdata aggregator nodes",
        "publieksdata node serve",
    ):
        assert needed in shown, f"the tutorial no longer shows `{needed}`"
    assert sum(words[:2] == ["publieksdata", "ask"] for words in commands) == 2
    assert any(words[0] == "kill" for words in commands)


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_the_tutorial_runs_as_shown(tmp_path: Path) -> None:
    text = TUTORIAL.read_text("utf-8")
    steps = tutorial_steps(text)
    with Supervisor() as supervisor, ThreadPoolExecutor(max_workers=4) as pool:
        shell = Shell(tmp_path, supervisor, pool)
        for step in steps:
            shell.run(step)
        ran = shell.results()

    # What the servers print, as the tutorial shows it (the job numbers aside), and no errors
    # until the tutorial stops them. (Stopping the aggregator while nodes hold long-polls logs
    # cancelled requests; that is checked nowhere here.)
    for job in shell.jobs:
        log = shell.logs[job.home]
        for line in job.step.shown:
            if not re.match(r"\[\d+\] \d+$", line):
                assert line in log, f"`{job.step.command}` printed:\n{log}"
        assert "Traceback" not in log and "ERROR" not in log, log

    # Every line the tutorial shows as a result is what the command really printed.
    for run in ran:
        real = shell.normalise(run.output)
        for line in run.step.shown:
            if CHECKED_LINE.match(line):
                wanted = _ids(line.strip())
                assert wanted in real, (
                    f"`{run.step.command}` no longer prints what the tutorial shows:\n"
                    f"  shown: {wanted}\n  real output:\n{real}"
                )

    _check_fingerprints(ran)
    _check_answers(ran, shell.kills, " ".join(text.split()))


def _check_fingerprints(ran: list[Ran]) -> None:
    (agg_init,) = _find(ran, "aggregator", "init")
    (aggregator_fp,) = _fingerprints(agg_init.output)
    listed = _fingerprints(_find(ran, "aggregator", "nodes")[-1].output)
    joins = _find(ran, "node", "join")
    assert len(joins) == 3
    for join in joins:
        home = join.words[join.words.index("--home") + 1]
        (init,) = _find(ran, "node", "init", home=home)
        (node_fp,) = _fingerprints(init.output)
        assert "✓ Joined" in join.output, join.output
        assert _fingerprints(join.output) == [node_fp, aggregator_fp], join.output
        assert node_fp in listed, f"`aggregator nodes` does not list {home}'s fingerprint"
    for invite in _find(ran, "aggregator", "invite"):
        assert _fingerprints(invite.output) == [aggregator_fp]


def _check_answers(ran: list[Ran], kills: list[tuple[int, list[Job]]], text: str) -> None:
    first, second = _find(ran, "ask")
    everyone = _json_result(first)
    assert everyone.coverage.total == everyone.coverage.answered == 3
    assert everyone.quorum_met and not everyone.partial and everyone.measures
    assert "Dekking: 3 van 3 instellingen beantwoordden" in first.output

    # The margins the tutorial quotes: in secure mode (t = 3) three noise shares add up to about
    # one curator's noise; independent mode would add three full noises, √3 times as wide.
    spec = REPORTS["standard"].build(period=year_period(2025), rho=0.25)
    assert everyone.mode is Mode.SECURE and everyone.threshold == 3
    share_sd = secure_calibrations(spec, 3)[Measure.VISITS].noise_sd
    sd = calibrations(spec)[Measure.VISITS].noise_sd
    visits = everyone.measure(Measure.VISITS)
    half_width = (visits.upper[0] - visits.lower[0]) / 2
    assert math.isclose(half_width, Z95 * share_sd * math.sqrt(3), rel_tol=1e-9)
    assert f"the margin is ± {round(half_width)} per cell" in text
    assert f"the margin would be ± {round(Z95 * sd * math.sqrt(3))}" in text

    before = [jobs for done, jobs in kills if done <= ran.index(second)]
    assert len(before) == 1 and len(before[0]) == 1, "the tutorial should stop one node first"
    (off,) = _find(ran, "node", "init", home=before[0][0].home)
    institution = off.words[off.words.index("--name") + 1]
    partial = _json_result(second)
    c = partial.coverage
    assert (c.total, c.answered, c.timed_out, c.refused, c.invalid) == (3, 2, 1, 0, 0)
    assert [n.institution for n in c.nodes if n.status == "timed_out"] == [institution]
    assert partial.partial and not partial.quorum_met and partial.quorum == 3
    assert partial.failure == "below_threshold_announce"
    assert partial.measures == ()
    assert second.returncode == 3
    assert "Dekking: 2 van 3 instellingen beantwoordden" in second.output
