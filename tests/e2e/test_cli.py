"""End to end: the `audit` command in a temporary folder, as a user or a CI pipeline runs it."""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import EXAMPLE_DIR, audit_command, base_policy, write_policy


def audit(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*audit_command(), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


class _Resources(HTMLParser):
    """Collects every URL-bearing attribute and every tag name."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in {"src", "href", "srcset", "poster", "data", "action"} and value is not None:
                self.urls.append(value)


@pytest.fixture(scope="module")
def example_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    import shutil

    work = tmp_path_factory.mktemp("e2e")
    shutil.copytree(EXAMPLE_DIR, work / "examples")
    proc = audit("run", "examples/credit.yaml", "--out", "report", cwd=work)
    return proc, work / "report"


def test_example_writes_all_four_files(example_run: Any) -> None:
    proc, out = example_run
    assert proc.returncode in (0, 1), proc.stderr
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == ["junit.xml", "report.html", "report.pdf",
                                                                    "result.json"]
    ids = list(yaml.safe_load((EXAMPLE_DIR / "credit.yaml").read_text())["checks"])
    for i, check_id in enumerate(ids, 1):
        assert f"[{i}/{len(ids)}] {check_id}" in proc.stderr
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))


def test_result_json_contract(example_run: Any) -> None:
    proc, out = example_run
    doc = json.loads((out / "result.json").read_text())
    assert doc["schema_version"] == "1.0"
    assert doc["status"] in {"pass", "warn", "fail", "error"}
    assert doc["exit_code"] == proc.returncode
    check = doc["checks"][0]
    assert {"id", "status", "summary", "metrics", "findings", "notes", "duration_s"} <= set(check)
    roc = next(m for m in check["metrics"] if m["name"] == "roc_auc" and m["group"] is None)
    assert {"name", "value", "threshold", "passed", "ci_low", "ci_high", "group"} <= set(roc)
    assert roc["threshold"]["min"] == 0.75 and isinstance(roc["passed"], bool)
    assert roc["ci_low"] < roc["value"] < roc["ci_high"]
    prov = doc["provenance"]
    assert len(prov["policy"]["sha256"]) == 64 and len(prov["model"]["sha256"]) == 64
    assert {"train", "test"} == set(prov["data"]) and prov["seed"] == 42
    assert prov["python"] and prov["platform"] and prov["started_at"] and prov["finished_at"]
    assert "xgboost" in " ".join(prov["libraries"])
    for fig in check["figures"]:
        assert (out / fig["file"]).is_file()


def test_html_is_self_contained(example_run: Any) -> None:
    _, out = example_run
    parser = _Resources()
    parser.feed((out / "report.html").read_text())
    assert "script" not in parser.tags
    assert parser.urls, "the report has figures and links"
    assert all(u.startswith(("data:", "#")) for u in parser.urls), [u for u in parser.urls if u[:5] != "data:"]


def test_pdf_text(example_run: Any) -> None:
    from pypdf import PdfReader

    _, out = example_run
    reader = PdfReader(out / "report.pdf")
    assert len(reader.pages) >= 3
    # pypdf puts NUL between the letters of the monospace font; pdftotext does not
    text = "\n".join(page.extract_text() for page in reader.pages).replace("\x00", "")
    for needle in ("Mortgage denial model (HMDA example)", "Credit Risk ML team", "performance", "roc_auc",
                   "SHA-256", "Page 1 of"):
        assert needle in text, needle


def test_junit(example_run: Any) -> None:
    proc, out = example_run
    root = ET.parse(out / "junit.xml").getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    assert suite is not None
    ids = list(yaml.safe_load((EXAMPLE_DIR / "credit.yaml").read_text())["checks"])
    assert [case.get("name") for case in suite.iter("testcase")] == ids  # one test case per check ...
    assert suite.get("tests") == str(len(ids))
    thresholds = root.findall("testsuite")[1]  # ... and one per judged threshold
    assert thresholds.get("name") == "xai-audit.thresholds"
    assert "performance.roc_auc" in [case.get("name") for case in thresholds.iter("testcase")]


def test_validate_init_checks_schema(tmp_path: Path, toy_dir: Path) -> None:
    ok = audit("validate", "policy.yaml", cwd=toy_dir)
    assert ok.returncode == 0 and "valid" in ok.stdout
    starter = audit("init", cwd=tmp_path)
    assert starter.returncode == 0
    doc = yaml.safe_load(starter.stdout)
    doc["model"]["path"] = str(toy_dir / "model.ubj")
    doc["data"].update(train=str(toy_dir / "train.csv"), test=str(toy_dir / "test.csv"),
                       sensitive_features=["sex", "age_group"])
    write_policy(tmp_path, doc)
    assert audit("validate", "policy.yaml", cwd=tmp_path).returncode == 0  # the starter is a valid policy
    listing = audit("checks", cwd=tmp_path)
    assert listing.returncode == 0 and "performance" in listing.stdout and "n_boot" in listing.stdout
    schema = json.loads(audit("schema", cwd=tmp_path).stdout)
    assert "performance" in schema["properties"]["checks"]["properties"]


def test_invalid_policy_exit_2_and_no_report(toy_dir: Path) -> None:
    write_policy(toy_dir, base_policy(data={**base_policy()["data"], "target": "nope"}), "bad.yaml")
    proc = audit("run", "bad.yaml", "--out", "out", cwd=toy_dir)
    assert proc.returncode == 2
    assert "bad.yaml:" in proc.stderr and "data.target: column 'nope' not found" in proc.stderr
    assert not (toy_dir / "out").exists()


def test_failing_threshold_exit_1_and_quiet(toy_dir: Path) -> None:
    policy = base_policy(checks={"performance": {"n_boot": 0, "thresholds": {"accuracy": {"min": 0.99}}}})
    write_policy(toy_dir, policy, "strict.yaml")
    proc = audit("run", "strict.yaml", "--out", "out", "--quiet", cwd=toy_dir)
    assert proc.returncode == 1 and proc.stderr == ""
    doc = json.loads((toy_dir / "out" / "result.json").read_text())
    assert doc["status"] == "fail"
    assert any(f["severity"] == "fail" and f["message"].startswith("accuracy = ") for f in doc["checks"][0]["findings"])


def test_data_from_the_data_is_escaped(toy_dir: Path, toy_frames: Any) -> None:
    """A feature and a group value made of markup come out as text in the HTML, never as tags."""
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    evil = "<script>alert(1)</script>"  # XGBoost refuses '<' in feature names; scikit-learn takes any string
    train, test = (f.rename(columns={"noise": evil}).assign(sex=f["sex"].replace("F", '<img src=x onerror="1">'))
                   for f in toy_frames)
    cols = ["income", "debt", evil]
    sio.dump(LogisticRegression().fit(train[cols], train["label"]), toy_dir / "m.skops")
    train.to_csv(toy_dir / "train.csv", index=False)
    test.to_csv(toy_dir / "test.csv", index=False)
    policy = base_policy(model={"path": "m.skops"}, report={"formats": ["html", "pdf", "json"]})
    policy["audit"]["name"] = f"Model {evil}"
    write_policy(toy_dir, policy, "evil.yaml")
    proc = audit("run", "evil.yaml", "--out", "out", cwd=toy_dir)
    assert proc.returncode in (0, 1), proc.stderr
    html = (toy_dir / "out" / "report.html").read_text()
    parser = _Resources()
    parser.feed(html)
    assert "script" not in parser.tags
    assert evil not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert '<img src=x onerror="1">' not in html and "&lt;img src=x" in html
    assert all(u.startswith(("data:", "#")) for u in parser.urls)  # an unescaped <img src=x> would show here
    assert (toy_dir / "out" / "report.pdf").stat().st_size > 1000


def test_validate_image_example_names_the_input_shape() -> None:
    proc = audit("validate", str(EXAMPLE_DIR / "image.yaml"), cwd=EXAMPLE_DIR)
    assert proc.returncode == 0, proc.stderr
    assert "images 1x16x16 (channels x height x width, preprocessed)" in proc.stdout
    assert "test 360 rows" in proc.stdout
