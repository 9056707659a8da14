"""The one place where metrics meet the policy's thresholds and statuses are decided."""

from __future__ import annotations

from dataclasses import replace

from audit.results import CheckResult, Finding, Metric, Status, Threshold

_SEVERITY_STATUS = {"info": Status.PASS, "warn": Status.WARN, "fail": Status.FAIL}


def judge_metric(metric: Metric, threshold: Threshold) -> Metric:
    """Compare one metric with its threshold.

    Rules, in order:
    - a metric that could not be computed is a warning (never a pass by default);
    - outside a bound is a failure (a warning for a threshold with ``severity: warn``), unless the metric's
      confidence interval reaches back across that bound, which is a warning that says so (the data cannot
      tell the two apart);
    - inside the bounds but with an interval that crosses one is a warning, as is being within
      ``warn_margin`` of a bound;
    - otherwise a pass.
    """
    v = metric.value
    if v is None:
        return replace(metric, threshold=threshold, passed=None, status=Status.WARN,
                       note="could not be computed, so the threshold could not be checked")
    lo, hi = metric.ci_low, metric.ci_high
    below = threshold.min is not None and v < threshold.min
    above = threshold.max is not None and v > threshold.max
    crosses = (threshold.min is not None and lo is not None and hi is not None and lo < threshold.min <= hi) or (
        threshold.max is not None and lo is not None and hi is not None and lo <= threshold.max < hi)
    ci_txt = f"[{lo:.4g}, {hi:.4g}]" if lo is not None and hi is not None else ""
    if below or above:
        if crosses:
            return replace(metric, threshold=threshold, passed=False, status=Status.WARN,
                           note=f"outside the bound, but its interval {ci_txt} crosses it")
        if threshold.severity == "warn":
            return replace(metric, threshold=threshold, passed=False, status=Status.WARN,
                           note="outside an advisory bound (severity: warn)")
        return replace(metric, threshold=threshold, passed=False, status=Status.FAIL)
    if crosses:
        return replace(metric, threshold=threshold, passed=True, status=Status.WARN,
                       note=f"inside the bound, but its interval {ci_txt} crosses it")
    m = threshold.warn_margin
    if m > 0 and ((threshold.min is not None and v < threshold.min + m) or
                  (threshold.max is not None and v > threshold.max - m)):
        return replace(metric, threshold=threshold, passed=True, status=Status.WARN,
                       note=f"within the warning margin {m:.4g} of the bound")
    return replace(metric, threshold=threshold, passed=True, status=Status.PASS)


def judge_result(result: CheckResult, thresholds: dict[str, Threshold]) -> CheckResult:
    """Judge a check's ungrouped metrics, add a finding per miss, and set the check's status.

    The status is the worst of the judged metrics and of the findings the check itself reported.
    """
    judged: list[Metric] = []
    auto: list[Finding] = []
    for metric in result.metrics:
        t = thresholds.get(metric.name) if metric.group is None else None
        if t is None:
            judged.append(metric)
            continue
        jm = judge_metric(metric, t)
        judged.append(jm)
        if jm.status in (Status.WARN, Status.FAIL):
            value = "n/a" if jm.value is None else f"{jm.value:.4g}"
            note = f" ({jm.note})" if jm.note else ""
            auto.append(Finding("fail" if jm.status is Status.FAIL else "warn",
                                f"{jm.name} = {value}; required {t.describe()}{note}", metric=jm.name))
    statuses = [m.status for m in judged if m.status is not None]
    statuses += [_SEVERITY_STATUS[f.severity] for f in result.findings]
    status = Status.worst(statuses)
    verdict = _verdict(judged)
    summary = "; ".join(x for x in (result.summary, verdict) if x) or f"{len(judged)} metrics reported"
    return replace(result, metrics=judged, findings=[*auto, *result.findings], status=status, summary=summary)


def _verdict(metrics: list[Metric]) -> str:
    judged = [m for m in metrics if m.status is not None]
    if not judged:
        return "no thresholds set"
    counts = {s: sum(1 for m in judged if m.status is s) for s in (Status.PASS, Status.WARN, Status.FAIL)}
    parts = [f"{counts[Status.PASS]} met"] if counts[Status.PASS] else []
    if counts[Status.WARN]:
        parts.append(f"{counts[Status.WARN]} warning{'s' if counts[Status.WARN] > 1 else ''}")
    if counts[Status.FAIL]:
        parts.append(f"{counts[Status.FAIL]} missed")
    return f"thresholds: {', '.join(parts)} (of {len(judged)})"
