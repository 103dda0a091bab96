"""Reports a reader can trust: φ-profile axes, the self-contained HTML report, few-sample
warnings, which error method each number uses."""

from __future__ import annotations

import base64
import json
import math
import re
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from cli_util import run_main

from boltzflow.analysis import free_energy_profile, molplots, plot_free_energy_profiles


def test_phi_profile_axis_follows_finite_data_when_a_bin_holds_one_sample(tmp_path, monkeypatch):
    gen = torch.Generator().manual_seed(0)
    md = torch.randn(20_000, generator=gen, dtype=torch.float64).clamp(-3, 3)
    # reweighted: one lone sample far out in the tail, with an enormous weight error
    phi = torch.cat([torch.randn(2000, generator=gen, dtype=torch.float64).clamp(-2, 2),
                     torch.tensor([2.9], dtype=torch.float64)])
    log_w = -0.5 * phi.square()
    edges = torch.linspace(-math.pi, math.pi, 61, dtype=torch.float64)
    profiles = [("MD", free_energy_profile(md, bins=edges, time_ordered=True)),
                ("reweighted", free_energy_profile(phi, log_w, bins=edges, n_bootstrap=50))]
    lone = int(torch.searchsorted(edges, torch.tensor(2.9, dtype=torch.float64))) - 1
    assert profiles[1][1].n_eff[lone] == pytest.approx(1.0)
    figures = []
    monkeypatch.setattr(molplots, "save_figure", lambda fig, path: figures.append(fig) or path)
    plot_free_energy_profiles(profiles, tmp_path / "phi.png")
    low, high = figures[0].axes[0].get_ylim()
    drawn = [molplots._drawn(p, 5.0) for _, p in profiles]
    finite = np.concatenate([f[np.isfinite(f)] for f in drawn])
    assert np.isnan(drawn[1][lone])  # the one-sample bin is not drawn
    margin = max(0.5, 0.08 * (finite.max() - finite.min()))
    assert low >= finite.min() - margin - 1e-9 and high <= finite.max() + margin + 1e-9
    assert high - low < 15  # not stretched by the bands (a one-sample bin's error is huge)


class _Page(HTMLParser):
    """The images, tables and text of an HTML page."""

    def __init__(self):
        super().__init__()
        self.images, self.tables, self.text = [], 0, []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        self.tables += tag == "table"

    def handle_data(self, data):
        self.text.append(data)


def test_classic_run_with_4_samples_warns_and_writes_a_self_contained_html(tmp_path, capsys):
    run = tmp_path / "run"
    (tmp_path / "c.yaml").write_text("coupling: {n_layers: 2, hidden: [8]}\n"
                                     "system: {n_data: 500, n_test: 200}\n")
    code, _, err = run_main(capsys, "train", "--system", "double-well", "--config",
                            str(tmp_path / "c.yaml"), "--steps", "20", "--seed", "1",
                            "--out", str(run), "--no-progress")
    assert code == 0, err
    code, _, err = run_main(capsys, "sample", "--run", str(run), "-n", "4", "--no-progress")
    assert code == 0, err
    code, out, err = run_main(capsys, "evaluate", "--run", str(run), "--no-progress")
    assert code == 0, err
    assert "effective samples" in err and "warning" in err
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["ess_samples"] <= 4 and metrics["ess_low"] <= metrics["ess"]
    assert 0 < metrics["max_weight"] <= 1 and metrics["log_w_spread"] >= 0
    assert metrics["dF_reweighted_stderr_method"] == "bootstrap"
    report = (run / "report.md").read_text()
    assert "Few effective samples" in report and "bootstrap over samples" in report
    assert f"spread σ = {metrics['log_w_spread']:.2f} nats" in report

    page = _Page()
    page.feed((run / "report.html").read_text())
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert figures and len(page.images) == len(figures)
    for src, name in zip(page.images, figures):
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]) == (run / name).read_bytes()
    text = " ".join(page.text)
    assert page.tables == 1 and "ESS (Kish, fraction)" in text and "Few effective samples" in text


def test_md_visits_count_entries_into_a_region():
    from boltzflow.analysis.molecular import _visits

    inside = torch.tensor([True, True, False, False, True, False, True, True])
    assert _visits(inside) == 3 and _visits(torch.zeros(5, dtype=torch.bool)) == 0
