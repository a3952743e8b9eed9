"""The HTML report: `--report` on convert / verify / demo, `edgeconv report RUN.json`, one self-contained
page, and the demo's page opened in headless Chromium (no console errors, nothing fetched, plots shown)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeconv import plugins

CHROMIUM_APT = "apt-get install -y chromium"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """`edgeconv demo --json --report` with the built-in target only (what every machine has)."""
    from edgeconv.cli import make_app

    tmp = tmp_path_factory.mktemp("demo")
    page = tmp / "demo.html"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGECONV_LOAD_PLUGINS", "")
        plugins.reset()
        try:
            res = CliRunner().invoke(make_app(), ["demo", "--json", "--runs", "20", "--report", str(page)])
        finally:
            plugins.reset()
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)  # the JSON on stdout stays clean: the note about the page goes to stderr
    assert "wrote the HTML report" in res.stderr
    (tmp / "demo.json").write_text(res.stdout)
    return {"page": page, "html": page.read_text(encoding="utf-8"), "doc": doc, "json": tmp / "demo.json"}


def _plots(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'<img class="plot" alt="[^"]*" src="data:image/svg\+xml;base64,([^"]+)"', page)]


def test_demo_page_is_self_contained_with_the_plots_and_every_section(demo_run):
    page, doc = demo_run["html"], demo_run["doc"]
    assert page.startswith("<!doctype html>")
    # self-contained: no script, no stylesheet link, nothing with a URL
    assert "<script" not in page and "<link" not in page
    assert not re.search(r'(src|href)="(?!data:|#)', page)
    assert len(page) < 1_000_000, f"{len(page):,} bytes"
    plots = _plots(page)
    assert len(plots) == 2, "the size/latency/accuracy comparison and the latency distribution"
    for svg in plots:
        assert svg.lstrip().startswith(b"<?xml") and b"<svg" in svg and b"<script" not in svg
    for heading in ("Summary", "Size, latency and accuracy", "Latency", "Each conversion", "Route", "Fidelity",
                    "What ran where", "IO contract", "Manifest"):
        assert f">{heading}" in page, heading
    for r in doc["results"]:  # every conversion, with its measured numbers
        assert f'{r["target"]} {r["precision"]}' in page
        assert f'{r["latency_ms"]["p50"]:.4g} ms' in page
        assert f'{r["accuracy"]["artifact"] * 100:.2f} %' in page
    # the manifests were read while the demo's temporary output still existed
    assert page.count("manifest.json</summary>") == len(doc["results"])
    assert "&quot;schema&quot;: &quot;edgeconv.manifest/1&quot;" in page


def test_report_command_renders_a_demo_document_and_a_folder(demo_run, cli, tmp_path):
    src = tmp_path / "run.json"
    shutil.copy(demo_run["json"], src)
    res = cli("report", str(src))
    assert res.exit_code == 0, res.output
    out = tmp_path / "run.html"
    assert res.stdout.strip() == str(out) and out.is_file()
    assert len(_plots(out.read_text())) == 2
    res = cli("report", str(src), "-o", str(tmp_path / "sub" / "x.html"))
    assert res.exit_code == 0 and (tmp_path / "sub" / "x.html").is_file()


def test_convert_and_verify_with_report_keep_their_exit_code(cli, digits, tmp_path):
    out, page = tmp_path / "out", tmp_path / "int8.html"
    res = cli("convert", str(digits["model"]), "-p", "int8", "--calib", str(digits["calib"]), "--data",
              str(digits["test"]), "-o", str(out), "--runs", "10", "--no-memory", "--max-size", "10KB",
              "--max-accuracy-drop", "1", "--report", str(page))
    assert res.exit_code == 1, res.output  # the size budget fails; the page is written all the same
    html = page.read_text()
    assert 'FAIL</span>' in html and "budget size_bytes:" in html
    assert "size_bytes</td>" in html and '<span class="bad">no</span>' in html  # the budgets table
    assert "ort.quantize_static" in html and "<code>onnx</code>" in html  # the passes and the route
    assert len(_plots(html)) == 2
    # the folder form of `edgeconv report` writes beside report.json
    assert cli("report", str(out)).exit_code == 0 and (out / "report.html").is_file()
    vpage = tmp_path / "verify.html"
    res = cli("verify", str(digits["model"]), str(out), "--data", str(digits["test"]), "--runs", "5",
              "--report", str(vpage))
    assert res.exit_code == 0, res.output
    vhtml = vpage.read_text()
    assert "PASS</span>" in vhtml and "manifest.json</summary>" in vhtml  # found beside the artifact


def test_a_run_without_verification_renders(cli, digits, tmp_path):
    res = cli("convert", str(digits["model"]), "-o", str(tmp_path / "o"), "--no-verify", "--json")
    assert res.exit_code == 0
    src = tmp_path / "r.json"
    src.write_text(res.stdout)
    assert cli("report", str(src)).exit_code == 0
    html = (tmp_path / "r.html").read_text()
    assert "NOT-RUN</span>" in html and "Not compared: verification skipped" in html
    assert "Latency was not measured" in html


def test_names_are_escaped_and_never_read_as_markup(tmp_path):
    from edgeconv.html_report import render_html

    doc = _sample()
    doc["target"] = "<script>alert(1)</script>"
    doc["precision"] = "$x^2$ --> & co"
    doc["warnings"] = ["<img src=x onerror=alert(2)>"]
    page = render_html(doc)
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(2)&gt;" in page
    assert len(_plots(page)) == 2


def test_a_demo_document_with_errors_and_failures(tmp_path):
    from edgeconv.html_report import render_html

    ok, failed = _sample(), _sample()
    failed.update(precision="int8", verdict={"status": "fail", "reason": "output y: cosine 0.9 < 0.98", "exit_code": 1})
    err = {"target": "tflite", "precision": "fp32", "verdict": {"status": "error", "reason": "m.onnx: export: it broke"}}
    page = render_html({"schema": "edgeconv.demo/1", "results": [ok, failed, err]})
    assert "ERROR</span>" in page and "m.onnx: export: it broke" in page
    assert page.count('<details class="variant"') == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("{not json", "not JSON"),
        ('{"schema": "other/1"}', "not an edgeconv report"),
        ('{"schema": "edgeconv.demo/1", "results": [{"x": 1}]}', "result 0 is not a report"),
    ],
)
def test_bad_report_files_exit_2_with_one_line(cli, tmp_path, content, message):
    src = tmp_path / "r.json"
    if content is not None:
        src.write_text(content)
    res = cli("report", str(src))
    assert res.exit_code == 2
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r.html").exists()


def test_stdin_needs_an_output_and_unwritable_output_exits_2(tmp_path):
    from edgeconv.cli import make_app

    text = json.dumps(_sample())
    runner = CliRunner()
    res = runner.invoke(make_app(), ["report", "-"], input=text)
    assert res.exit_code == 2 and "-o PATH" in res.stderr
    res = runner.invoke(make_app(), ["report", "-", "-o", str(tmp_path / "a.html")], input=text)
    assert res.exit_code == 0 and (tmp_path / "a.html").is_file()
    (tmp_path / "file").write_text("")
    res = runner.invoke(make_app(), ["report", "-", "-o", str(tmp_path / "file" / "a.html")], input=text)
    assert res.exit_code == 2 and "cannot write the HTML report" in res.stderr


def test_without_matplotlib_exit_3_with_the_hint_before_any_work(cli, digits, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    res = cli("convert", str(digits["model"]), "-o", str(tmp_path / "o"), "--report", str(tmp_path / "r.html"))
    assert res.exit_code == 3 and 'pip install "edgeconv[report]"' in res.stderr
    assert not (tmp_path / "o").exists()  # failed fast, before converting
    src = tmp_path / "r.json"
    src.write_text(json.dumps(_sample()))
    assert cli("report", str(src)).exit_code == 3


def test_the_cli_does_not_import_matplotlib_at_start_up():
    code = ("import sys\nfrom edgeconv.cli import main\nsys.argv = ['edgeconv', 'report', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\nprint('HEAVY=' + ','.join(m for m in ('matplotlib', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "HEAVY="


# -- the page in a real browser -----------------------------------------------------------------------
CHECKER = """<script>
window.__errors = [];
window.addEventListener("error", function (e) {
  window.__errors.push(String(e.message || (e.target && (e.target.src || e.target.href)) || e.type));
}, true);
window.addEventListener("load", function () {
  var plots = Array.prototype.map.call(document.querySelectorAll("img.plot"), function (img) {
    var box = img.getBoundingClientRect();
    return {complete: img.complete, natural: img.naturalWidth, width: box.width, height: box.height};
  });
  var out = document.createElement("pre");
  out.id = "edgeconv-checks";
  out.textContent = JSON.stringify({errors: window.__errors, plots: plots,
    resources: performance.getEntriesByType("resource").map(function (r) { return r.name; })});
  document.body.appendChild(out);
});
</script>"""


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture
def chromium():
    exe = find_chromium()
    if exe is None:
        message = f"headless Chromium is not installed (Debian: {CHROMIUM_APT})"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must install it (.ci/run)")
        pytest.skip(message)
    return exe


def _run_chromium(exe: str, url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
             f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--hide-scrollbars",
             "--host-resolver-rules=MAP * ~NOTFOUND"]  # nothing can be fetched: a page that needs the network breaks
    return subprocess.run([exe, *flags, *extra, url], capture_output=True, text=True, timeout=120)


def test_the_demo_page_in_headless_chromium(demo_run, chromium, tmp_path):
    # A copy of the page with the checker first in <head>: it records errors, resources and the plots' boxes.
    probe = tmp_path / "probe.html"
    probe.write_text(demo_run["html"].replace("<head>", "<head>" + CHECKER, 1), encoding="utf-8")
    res = _run_chromium(chromium, probe.as_uri(), tmp_path / "profile", "--window-size=1280,2000",
                        "--virtual-time-budget=10000", "--dump-dom")
    assert res.returncode == 0, res.stderr[-2000:]
    found = re.search(r'<pre id="edgeconv-checks">(.*?)</pre>', res.stdout, re.S)
    assert found, "the page did not finish loading:\n" + res.stdout[-2000:]
    import html as _html

    checks = json.loads(_html.unescape(found.group(1)))
    assert checks["errors"] == []
    assert checks["resources"] == [], "the page fetched something: it must be self-contained"
    console = [line for line in res.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    assert len(checks["plots"]) == 2
    for plot in checks["plots"]:  # decoded and laid out at a readable size
        assert plot["complete"] and plot["natural"] > 300 and plot["width"] > 300 and plot["height"] > 80, plot

    shot = tmp_path / "edgeconv-demo-report.png"
    res = _run_chromium(chromium, demo_run["page"].as_uri(), tmp_path / "profile2", "--window-size=1280,2000",
                        f"--screenshot={shot}")
    assert res.returncode == 0 and shot.is_file() and shot.stat().st_size > 20_000
    keep = os.environ.get("EDGECONV_ARTIFACTS")
    if keep:  # CI keeps the screenshot (and the page) for people to look at
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)
        shutil.copy(demo_run["page"], Path(keep) / "edgeconv-demo-report.html")
    print(f"screenshot: {shot}")


# -- a small synthetic report -------------------------------------------------------------------------
def _sample() -> dict:
    samples = [1.0 + 0.01 * (i % 7) for i in range(30)]
    lat = {"p10": 1.0, "p50": 1.03, "p90": 1.06, "p99": 1.06, "mean": 1.03, "runs": 30, "warmup": 5,
           "throughput_per_s": 970.0, "samples_ms": samples}
    return {
        "schema": "edgeconv.report/1", "created": "2026-01-01T00:00:00+00:00",
        "source": {"path": "m.onnx", "form": "onnx", "size_bytes": 4000,
                   "io": {"inputs": [{"name": "x", "shape": [1, 4], "dtype": "float32"}],
                          "outputs": [{"name": "y", "shape": [1, 10], "dtype": "float32"}]}},
        "target": "onnxruntime", "precision": "fp32", "options": {}, "route": ["onnx"],
        "passes": [{"name": "onnx.simplify", "kind": "generic", "form": "onnx", "before": {"nodes": 3}, "after": {"nodes": 2}}],
        "artifact": {"path": "/nonexistent/m.onnx", "size_bytes": 3000, "form": "onnx", "manifest": "/nonexistent/manifest.json"},
        "thresholds": {"cosine": 0.9999},
        "fidelity": [{"name": "y", "shape": [8, 10], "shape_ok": True, "dtype_ok": True, "nan_or_inf": 0, "cosine": 1.0,
                      "max_abs": 1e-6, "mean_abs": 1e-7, "sqnr_db": 120.0, "topk_agreement": {"top1": 1.0, "top5": 1.0},
                      "pass": True, "failures": []}],
        "accuracy": None, "latency_ms": lat, "source_latency_ms": {**lat, "p50": 1.2, "samples_ms": [s + 0.2 for s in samples]},
        "peak_rss_bytes": None, "runtime": {"source": {"runtime": "onnxruntime"}, "artifact": {"runtime": "onnxruntime"}},
        "budgets": {}, "verdict": {"status": "pass", "reason": None, "exit_code": 0}, "timings": {"import": 0.1},
        "versions": {"edgeconv": "0.1.0"}, "warnings": [],
    }
