"""Runs the policy's checks: order, capability matching, failure isolation, seeding, timing, progress."""

from __future__ import annotations

import random
import sys
import time
import traceback
from collections.abc import Callable
from typing import TextIO

import numpy as np

from audit.context import AuditContext
from audit.errors import ExitCode
from audit.judge import judge_result
from audit.policy import LoadedPolicy
from audit.registry import Registry
from audit.results import CheckResult, ErrorInfo, Status

OnResult = Callable[[int, int, CheckResult], None]


def run_checks(ctx: AuditContext, lp: LoadedPolicy, registry: Registry, *,
               on_start: Callable[[int, int, str], None] | None = None,
               on_result: OnResult | None = None) -> list[CheckResult]:
    """Run every check the policy lists, in the policy's order, and return their judged results.

    A check whose needs the audit cannot meet is SKIPPED with the reason. A check that raises becomes an
    ERROR result with the exception's type, message and traceback; the other checks still run.
    """
    results = []
    items = list(lp.configs.items())
    for i, (check_id, config) in enumerate(items, start=1):
        if on_start:
            on_start(i, len(items), check_id)
        cls = registry.get(check_id)
        base = CheckResult(check_id=check_id, title=cls.title, obligations=list(cls.obligations),
                           config=config.model_dump(mode="json"))
        t0 = time.perf_counter()
        missing = cls.applies_to.missing(ctx.task, ctx.capabilities())
        if missing:
            result = base.with_(status=Status.SKIPPED, summary="not run: " + "; ".join(missing))
        else:
            _seed_globals(ctx.seed, check_id)
            try:
                raw = cls().run(ctx, config)
                result = judge_result(raw, dict(config.thresholds)).with_(
                    check_id=check_id, title=raw.title or cls.title, obligations=base.obligations,
                    config=base.config)
            except Exception as exc:  # isolation: one broken check never stops the audit
                result = base.with_(
                    status=Status.ERROR,
                    summary=f"the check raised {type(exc).__name__}: {_first_line(exc)}",
                    error=ErrorInfo(type=type(exc).__name__, message=str(exc),
                                    traceback=traceback.format_exc(limit=20)),
                )
        result = result.with_(duration_s=time.perf_counter() - t0)
        results.append(result)
        if on_result:
            on_result(i, len(items), result)
    return results


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else "(no message)"


def _seed_globals(seed: int, check_id: str) -> None:
    """Seed the global generators libraries fall back on, per check, so results do not depend on order."""
    s = (seed * 1_000_003 + sum(ord(c) * 31**i for i, c in enumerate(check_id))) % (2**32)
    random.seed(s)
    np.random.seed(s)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(s)


class ProgressPrinter:
    """One line per check on a stream (stderr by default) as it finishes: status and time."""

    _MARK = {Status.PASS: "PASS", Status.WARN: "WARN", Status.FAIL: "FAIL", Status.ERROR: "ERROR",
             Status.SKIPPED: "SKIP"}

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr

    def start(self, i: int, n: int, check_id: str) -> None:
        """On a terminal, a transient 'running' line that the check's result line overwrites; else nothing."""
        if self.stream.isatty():
            self.stream.write(f"[{i:>{len(str(n))}}/{n}] {check_id:<24} running...\r")
            self.stream.flush()

    def result(self, i: int, n: int, r: CheckResult) -> None:
        """Print one finished check."""
        width = len(str(n))
        summary = r.summary if len(r.summary) <= 90 else r.summary[:87] + "..."
        clear = "\x1b[2K" if self.stream.isatty() else ""  # erase the transient 'running' line
        self.stream.write(f"{clear}[{i:>{width}}/{n}] {r.check_id:<24} {self._MARK[r.status]:<5} "
                          f"{r.duration_s:7.2f}s  {summary}\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """A free-form progress line (loading, writing reports)."""
        self.stream.write(text + "\n")
        self.stream.flush()


def overall(results: list[CheckResult], fail_on: str) -> tuple[Status, int]:
    """The audit's status and exit code from its check results and the gate."""
    ran = [r.status for r in results if r.status is not Status.SKIPPED]
    status = Status.worst(ran, default=Status.WARN)  # nothing ran: nothing evidenced, never a pass
    if status is Status.ERROR:
        return status, int(ExitCode.ERROR)
    if status is Status.FAIL or (status is Status.WARN and fail_on == "warn"):
        return status, int(ExitCode.FAILED)
    return status, int(ExitCode.OK)
