"""`mft report RUN_DIR`: parsing, plots, the HTML page, the CLI, and the page as Chromium renders it."""

from __future__ import annotations

import base64
import io
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml
from PIL import Image

from headless_chromium import dump_dom, find_chromium, screenshot
from mft.errors import MftError
from mft.monitor.metrics import MetricsWriter
from mft.monitor.report import build_panels, build_report, load_run, read_metrics_file, write_report
from test_train import corpus, run_train, write_recipe  # noqa: F401  (module fixture)

IMG = re.compile(r'<img\b[^>]*\bsrc="data:image/png;base64,([A-Za-z0-9+/=]*)"[^>]*>')
C0_BLUE = np.array([0x1F, 0x77, 0xB4])  # matplotlib's first line colour; nothing else on the page uses it


def decode_images(page: str) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(data))) for data in IMG.findall(page)]


def make_run(root, records, config=None, log_lines=None):
    root.mkdir(parents=True, exist_ok=True)
    w = MetricsWriter(str(root / "metrics.jsonl"))
    for r in records:
        w.write(r)
    w.close()
    if config is not None:
        (root / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    if log_lines is not None:
        (root / "logs").mkdir()
        (root / "logs" / "rank_0.log").write_text("".join(line + "\n" for line in log_lines))
    return root


def full_records(n=20):
    """Every key the report knows, including sparse validation loss."""
    out = []
    for s in range(1, n + 1):
        r = {
            "step": s, "loss": 6.0 - 0.1 * s, "lr": 1e-3 * min(1, s / 5), "grad_norm": 1.0 + 0.5 / s,
            "tokens_per_s": 1000.0 + s, "step_time_s": 0.5, "tokens_seen": 256 * s,
            "peak_memory_mb": 900.0 + s, "loss_scale": 2.0 ** (16 - (s > 10)),
            "moe_aux_loss": 0.01 + 0.001 * s, "moe_load_max_over_mean": 1.5, "moe_load_min_over_mean": 0.5,
        }  # fmt: skip
        if s % 5 == 0:
            r["val_loss"] = 6.1 - 0.1 * s
        out.append(r)
    return out


CONFIG = {"run": {"name": "tiny <moe> & co", "output_dir": "x"}, "model": {"arch": "mixtral", "hidden_size": 64}, "train": {"steps": 30}}


def test_full_run_has_every_panel_summary_and_config(tmp_path):
    run = make_run(
        tmp_path / "run",
        full_records(),
        CONFIG,
        ["2026-01-02 03:04:05,000 INFO config: x", "not a timestamp", "2026-01-02 03:06:15,500 INFO done"],
    )
    titles = [p.title for p in build_panels(load_run(str(run)).records)]
    assert titles == [
        "Loss", "Learning rate", "Gradient norm (before clipping)", "Throughput", "Peak memory",
        "Loss scale", "MoE expert load (1 = balanced)", "MoE auxiliary loss",
    ]  # fmt: skip
    loss_panel = build_panels(load_run(str(run)).records)[0]
    train, val = loss_panel.series
    assert val.steps == [5, 10, 15, 20] and val.markers and len(train.steps) == 20
    page = build_report(str(run))
    images = decode_images(page)
    assert len(images) == 8
    for im in images:
        assert im.format == "PNG" and im.size == (640, 360)
        px = np.asarray(im.convert("RGB"))
        assert (np.abs(px.astype(int) - C0_BLUE).max(axis=2) <= 3).sum() > 200  # a drawn line
    assert re.findall(r'<img\b[^>]*alt="([^"]*)"', page) == [t.replace("&", "&amp;") for t in titles]
    # title from run.name, escaped; summary numbers
    assert "<h1>tiny &lt;moe&gt; &amp; co</h1>" in page
    for text in ("20 of 30", "5.9000 (step 1)", "4.0000 (step 20)", "4.1000 (step 20", "5,120", "2m 10s", "920 MB", "1,011 tokens/s"):
        assert text in page, text
    assert "Not logged in this run" not in page
    assert "arch: mixtral" in page and "hidden_size: 64" in page  # the config section
    # self-contained: nothing is loaded from elsewhere
    assert not re.search(r'(src|href)="(?!data:)', page) and "<script" not in page and "<link" not in page


def test_dense_run_without_optional_metrics_draws_the_four_core_plots(tmp_path):
    records = [{"step": s, "loss": 5.0 / s, "lr": 1e-3, "grad_norm": 0.5, "tokens_per_s": 100.0, "tokens_seen": 64 * s} for s in range(1, 6)]
    run = make_run(tmp_path / "run", records)  # no config.yaml, no logs
    page = build_report(str(run))
    assert len(decode_images(page)) == 4
    assert "Not logged in this run: validation loss, peak memory, loss scale, MoE load." in page
    assert "<h1>run</h1>" in page  # no run.name: the folder's name
    assert "No config.yaml in the run folder." in page


def test_resumed_run_keeps_the_last_record_per_step(tmp_path):
    recs = [{"step": s, "loss": float(s)} for s in (1, 2, 3)] + [{"step": s, "loss": 10.0 + s} for s in (2, 3, 4)]
    run = make_run(tmp_path / "run", recs)
    records, resumes = read_metrics_file(str(run / "metrics.jsonl"))
    assert [(r["step"], r["loss"]) for r in records] == [(1, 1.0), (2, 12.0), (3, 13.0), (4, 14.0)]
    assert resumes == 1
    assert "4 (resumed 1x)" in build_report(str(run))


def test_null_values_leave_gaps_not_errors(tmp_path):
    recs = [{"step": 1, "loss": 3.0, "grad_norm": None}, {"step": 2, "loss": None, "grad_norm": 1.0}, {"step": 3, "loss": 2.0, "grad_norm": 0.9}]
    run = make_run(tmp_path / "run", recs)
    panels = {p.title: p for p in build_panels(load_run(str(run)).records)}
    assert panels["Loss"].series[0].values == [3.0, None, 2.0]
    assert len(decode_images(build_report(str(run)))) == 2  # loss and grad norm; no lr, no throughput


@pytest.mark.parametrize(
    "content, where, what",
    [
        ('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": \n', ":2:", "not valid JSON"),
        ('{"step": 1}\n\n[1, 2]\n', ":3:", "expected a JSON object"),
        ('{"loss": 2.0}\n', ":1:", "'step' must be a non-negative integer"),
        ('{"step": "3", "loss": 2.0}\n', ":1:", "'step' must be"),
        ('{"step": 1, "loss": "high"}\n', ":1:", "'loss' must be a number or null"),
        ("\n\n", "metrics.jsonl", "no records"),
    ],
)
def test_malformed_metrics_name_file_and_line(tmp_path, content, where, what):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(content)
    with pytest.raises(MftError) as e:
        write_report(str(run))
    msg = str(e.value)
    assert str(run / "metrics.jsonl") in msg and where in msg and what in msg
    assert not (run / "report.html").exists()


def test_missing_inputs_are_errors(tmp_path):
    with pytest.raises(MftError, match="not a folder"):
        write_report(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(MftError, match=re.escape(str(tmp_path / "empty" / "metrics.jsonl")) + ": no metrics.jsonl"):
        write_report(str(tmp_path / "empty"))
    run = make_run(tmp_path / "run", [{"step": 1, "loss": 1.0}])
    (run / "config.yaml").write_text("run: [unclosed\n")
    with pytest.raises(MftError, match=re.escape(str(run / "config.yaml")) + ": not valid YAML"):
        write_report(str(run))
    (run / "config.yaml").unlink()
    with pytest.raises(MftError, match="does not exist"):
        write_report(str(run), str(tmp_path / "no_such_dir" / "r.html"))


def test_write_is_atomic_and_a_failed_report_keeps_the_old_page(tmp_path):
    run = make_run(tmp_path / "run", full_records(6), CONFIG)
    path = write_report(str(run))
    assert path == os.path.join(str(run), "report.html")
    first = (run / "report.html").read_text()
    assert first.startswith("<!DOCTYPE html>") and first.rstrip().endswith("</html>")
    assert sorted(os.listdir(run)) == ["config.yaml", "metrics.jsonl", "report.html"]  # no temp file left
    with open(run / "metrics.jsonl", "a") as f:
        f.write("{broken\n")
    with pytest.raises(MftError, match=r"metrics.jsonl:7:"):
        write_report(str(run))
    assert (run / "report.html").read_text() == first
    assert sorted(os.listdir(run)) == ["config.yaml", "metrics.jsonl", "report.html"]


def test_cli_writes_the_page_and_reports_errors(tmp_path):
    run = make_run(tmp_path / "run", full_records(4), CONFIG)
    out = tmp_path / "page.html"
    cmd = [sys.executable, "-m", "mft.cli.main", "report"]
    ok = subprocess.run([*cmd, str(run), "--output", str(out)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"wrote {out}"
    assert len(decode_images(out.read_text())) == 8
    (run / "metrics.jsonl").write_text('{"step": 1}\nnope\n')
    bad = subprocess.run([*cmd, str(run)], capture_output=True, text=True)
    assert bad.returncode == 2
    assert f"{run / 'metrics.jsonl'}:2: not valid JSON" in bad.stderr and "Traceback" not in bad.stderr


def blue_mask(px: np.ndarray) -> np.ndarray:
    return np.abs(px.astype(int) - C0_BLUE).max(axis=2) <= 3


def find_on_screen(screen: np.ndarray, images: list[np.ndarray]) -> list[tuple[int, int] | None]:
    """Top-left of each image shown 1:1 in `screen` (every pixel within 3 levels), or None."""
    rs, cs = np.nonzero(blue_mask(screen))
    return [_find_one(screen, rs, cs, im) for im in images]


def _find_one(screen, rs, cs, image):
    """Anchored on the image's first C0-blue pixel: each blue pixel on screen (rs, cs) is a
    candidate, thinned by the image's other drawn pixels before the full comparison."""
    h, w = image.shape[:2]
    ir, ic = (int(v[0]) for v in np.nonzero(blue_mask(image)))
    tops, lefts = rs - ir, cs - ic
    ok = (tops >= 0) & (lefts >= 0) & (tops + h <= screen.shape[0]) & (lefts + w <= screen.shape[1])
    tops, lefts = tops[ok], lefts[ok]
    drawn_r, drawn_c = np.nonzero((image < 200).any(axis=2))
    pick = np.linspace(0, drawn_r.size - 1, 64).astype(int)
    for dr, dc in zip(drawn_r[pick], drawn_c[pick]):
        keep = np.abs(screen[tops + dr, lefts + dc].astype(int) - image[dr, dc].astype(int)).max(axis=1) <= 3
        tops, lefts = tops[keep], lefts[keep]
    for top, left in zip(tops.tolist(), lefts.tolist()):
        if np.abs(screen[top : top + h, left : left + w].astype(int) - image.astype(int)).max() <= 3:
            return top, left
    return None


@pytest.mark.skipif(
    find_chromium() is None,
    reason="headless Chromium not found: `make test` installs the Debian package `chromium` with apt-get "
    "(as root); install it by hand where that is not possible",
)
def test_report_of_a_real_run_renders_in_chromium_with_every_plot(tmp_path, corpus):  # noqa: F811
    run = tmp_path / "run"
    run_train(write_recipe(tmp_path, corpus, run), "train.steps=12", "run.name=chromium check")
    html_path = write_report(str(run))

    # The DOM Chromium built: one <img> per plot, each carrying a decodable PNG.
    dom = dump_dom(html_path)
    assert "<h1>chromium check</h1>" in dom
    images = decode_images(dom)
    assert len(images) == 5  # loss, lr, grad norm, throughput, peak memory (a dense fp32 run logs no more)
    assert all(im.format == "PNG" and im.size == (640, 360) for im in images)

    # What a person sees: a screenshot that is not blank and shows every plot's pixels.
    pixels = screenshot(html_path, str(tmp_path / "shot.png"))
    assert pixels.shape[1] == 1440 and pixels.shape[0] > 800
    non_white = (pixels < 245).any(axis=2).mean()
    assert 0.03 < non_white < 0.6, non_white
    assert pixels.std() > 20
    # Every plot is on screen, whole and at its natural size (a missing, broken or clipped
    # image is not found), laid out two per row.
    places = find_on_screen(pixels, [np.asarray(im.convert("RGB")) for im in images])
    assert None not in places, places
    (top1, left1), (top2, left2), (top3, left3), (top4, left4), (top5, left5) = places
    assert top1 == top2 < top3 == top4 < top5 and left1 == left3 == left5 < left2 == left4, places
