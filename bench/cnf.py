"""Benchmark: equivariant CNFs trained by flow matching on dw4, lj13, lj55 and alanine dipeptide.

For each particle toy an EGNN field is trained by flow matching with three pairings
(independent, minibatch OT, equivariant OT) and evaluated: NLL of held-out reference samples,
Kish ESS and energy-W2 of model samples (exact log q), mean integration path length, wall-clock.
Then a speed table on alanine dipeptide (22 atoms, EGNN 4 × 64) puts the straightforward
baseline — a dense EGNN (concatenated edge features, two-layer coordinate MLP) with one
backward pass per coordinate for the divergence and adaptive Dopri5 — beside the optimized
path (factorized EGNN, subspace trace, fixed-step RK4 on equivariant-OT paths).

    .venv/bin/python bench/cnf.py            # full run, about 45 min on 2 shared cores
    .venv/bin/python bench/cnf.py --quick    # a smoke run in a few minutes

Reference data are cached in ``--out`` (HMC for the toys, OpenMM MD for alanine dipeptide).
Times are wall-clock seconds on this machine; with other jobs on the cores they fluctuate, so
the speed table also gives CPU seconds of this process (``time.process_time``).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from boltzflow import systems
from boltzflow.analysis.wasserstein import energy_w2
from boltzflow.continuous import (
    EGNN,
    RK4,
    Dopri5,
    Exact,
    Hutchinson,
    ParticleContext,
    VectorField,
    build_cnf,
    data_scale,
    integrate,
    particle_context,
    path_length,
    time_features,
)
from boltzflow.distributions import MeanFreeNormal
from boltzflow.geometry import center
from boltzflow.sampling.reweight import (
    effective_sample_size,
    effective_sample_size_clipped,
    log_weights,
)
from boltzflow.training import (
    EquivariantOT,
    IndependentPairing,
    LinearPath,
    MinibatchOT,
    Pairing,
    flow_matching_loss,
)

# ------------------------------------------------------------------------------------------
# The straightforward baseline: a dense EGNN and a per-coordinate backward divergence.
# ------------------------------------------------------------------------------------------


class DenseEGNN(VectorField):
    """EDM-style EGNN as usually written: ``φ_e`` on concatenated ``[h_i, h_j, d²]`` per edge,
    self-edges masked, a two-layer coordinate MLP, features updated in every layer."""

    def __init__(self, spatial_dim: int, *, n_types: int, hidden: int, n_layers: int):
        super().__init__()
        self.n_types, self.n_frequencies = n_types, 4
        self.embed = nn.Linear(n_types + 1 + 2 * self.n_frequencies, hidden)

        def mlp(a: int, b: int, last_act: bool) -> nn.Sequential:
            layers = [nn.Linear(a, hidden), nn.SiLU(), nn.Linear(hidden, b)]
            return nn.Sequential(*layers, *([nn.SiLU()] if last_act else []))

        self.phi_e = nn.ModuleList(mlp(2 * hidden + 1, hidden, True) for _ in range(n_layers))
        self.phi_x = nn.ModuleList(mlp(hidden, 1, False) for _ in range(n_layers))
        self.phi_h = nn.ModuleList(mlp(2 * hidden, hidden, False) for _ in range(n_layers))

    def velocity(self, t: Tensor, x: Tensor, context: ParticleContext | None) -> Tensor:
        batch, n = x.shape[:2]
        context = ParticleContext.identical(n) if context is None else context
        tf = time_features(t, self.n_frequencies)[:, None, :].expand(batch, n, -1)
        h = self.embed(torch.cat([context.one_hot(batch, x.dtype), tf], dim=-1))
        mask = (1 - torch.eye(n, dtype=x.dtype))[None, :, :, None]
        x0 = x
        for phi_e, phi_x, phi_h in zip(self.phi_e, self.phi_x, self.phi_h):
            diff = x[:, :, None] - x[:, None, :]
            d2 = diff.pow(2).sum(-1, keepdim=True)
            hi = h[:, :, None].expand(-1, -1, n, -1)
            hj = h[:, None, :].expand(-1, n, -1, -1)
            m = phi_e(torch.cat([hi, hj, d2], dim=-1)) * mask
            x = x + (diff * phi_x(m) * torch.rsqrt(d2 + 1.0) * mask).sum(2) / n
            h = h + phi_h(torch.cat([h, m.sum(2) / n], dim=-1))
        v = x - x0
        return v - v.mean(dim=1, keepdim=True)


#: Baseline exact divergence: one backward pass per coordinate (``N·d`` of them).
PER_COORDINATE = Exact(mode="reverse", mean_free=False)


# ------------------------------------------------------------------------------------------
# Data, training, evaluation
# ------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One particle toy: model size, training budget and evaluation sizes."""

    system: str
    hidden: int
    n_layers: int
    steps: int
    batch: int
    lr: float
    n_train: int
    n_test: int
    n_exact: int  # model samples with exact log q (ESS, reweighted E-W2)
    n_energy: int  # model samples for the raw E-W2 (log q not needed)
    rk4_steps: int  # solver of the evaluation
    eval_pairings: tuple[str, ...]  # pairings whose model gets NLL / ESS / E-W2
    nll: str = "exact"  # or "hutchinson" (unbiased for the mean NLL, cheap for large N)


PAIRINGS = ("independent", "OT", "equivariant OT")


def make_pairing(name: str, context: ParticleContext) -> Pairing:
    if name == "independent":
        return IndependentPairing()
    if name == "OT":
        return MinibatchOT()
    return EquivariantOT(context.atom_types)


def reference(system_id: str, n: int, out: Path) -> Tensor:
    """``n`` cached reference samples (HMC) of a particle toy."""
    path = out / "data" / f"{system_id}-{n}.pt"
    if path.exists():
        return torch.load(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    x = systems.get(system_id).sample_reference(n, seed=0)
    print(f"  reference {system_id}: {n} samples in {time.perf_counter() - t0:.0f} s", flush=True)
    torch.save(x, path)
    return x


def aldp_md(out: Path, ns: float) -> Tensor:
    """Frames of alanine dipeptide (implicit solvent) from a short cached OpenMM MD run."""
    from boltzflow.md import simulate

    t0 = time.perf_counter()
    ds = simulate(
        systems.get("aldp-implicit"),
        out / "data" / f"aldp-md-{ns}ns",
        ns=ns,
        frame_interval_ps=0.5,
        equilibration_ps=20.0,
        progress=False,
    )
    print(f"  aldp MD: {len(ds)} frames ({time.perf_counter() - t0:.0f} s)", flush=True)
    return ds.positions.to(torch.float32)


@dataclass
class Trained:
    field: VectorField
    context: ParticleContext
    scale: float
    train_s: float
    pair_s: float
    val_loss: float


def train(
    field: VectorField,
    context: ParticleContext,
    data: Tensor,
    val: Tensor,
    pairing: Pairing,
    *,
    steps: int,
    batch: int,
    lr: float,
    seed: int = 0,
    bf16: bool = False,
) -> Trained:
    """Flow matching with ``pairing``; the field sees ``center(x) / scale``.

    ``bf16``: mixed precision (``torch.autocast`` to bfloat16 for the field's forward pass).
    """
    torch.manual_seed(seed)
    scale = data_scale(data)
    data = center(data) / scale
    n, d = data.shape[1:]
    prior = MeanFreeNormal(n, d)
    path = LinearPath(sigma=0.01)
    opt = torch.optim.Adam(field.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr / 10)
    pair_s = 0.0
    t_start = time.perf_counter()
    for _ in range(steps):
        x1 = data[torch.randint(len(data), (batch,))]
        t0 = time.perf_counter()
        x0, x1 = pairing(prior.sample(batch), x1)
        pair_s += time.perf_counter() - t0
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = flow_matching_loss(field, x0, x1, torch.rand(batch), context, path=path)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(field.parameters(), 10.0)
        opt.step()
        sched.step()
    train_s = time.perf_counter() - t_start
    # validation FM loss: held-out data, fixed prior draws and times, the same pairing
    gen = torch.Generator().manual_seed(123)
    x1 = center(val) / scale
    x0, x1 = pairing(center(torch.randn(x1.shape, generator=gen)), x1)
    t = torch.rand(len(x1), generator=gen)
    with torch.no_grad():
        val_loss = float(flow_matching_loss(field, x0, x1, t, context))
    return Trained(field, context, scale, train_s, pair_s, val_loss)


@torch.no_grad()
def evaluate(model: Trained, system, test: Tensor, case: Case) -> dict:
    """NLL of ``test``; ESS and E-W2 of model samples (RK4, exact divergence)."""
    solver = RK4(case.rk4_steps)
    flow = build_cnf(system, model.field, model.context, scale=model.scale,
                     solver=solver, divergence=Exact())
    chunk = 250
    t0 = time.perf_counter()
    parts = [flow.sample_and_log_prob(min(chunk, case.n_exact - i))
             for i in range(0, case.n_exact, chunk)]
    x, log_q = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    sample_s = time.perf_counter() - t0
    extra = case.n_energy - case.n_exact
    if extra > 0:  # more samples for the energy distribution, without the divergence
        z = flow.base.sample(extra)
        sol = integrate(model.field, z, context=model.context, solver=solver)
        x_all = torch.cat([x, sol.x * model.scale])
    else:
        x_all = x
    u_ref = system.energy.energy(test)
    u = system.energy.energy(x)
    log_w = log_weights(u, log_q)
    if case.nll == "hutchinson":
        flow.bijection.bijections[0].divergence = Hutchinson()
    t0 = time.perf_counter()
    nll = -torch.cat([flow.log_prob(c) for c in test.split(chunk)]).mean()
    nll_s = time.perf_counter() - t0
    u_all = system.energy.energy(x_all)
    return {
        "nll": float(nll),
        "ess": effective_sample_size(log_w),
        "ess_clipped": effective_sample_size_clipped(log_w, 0.002),
        "ew2": energy_w2(u_all, u_ref),
        "ew2_clipped": energy_w2(u_all, u_ref, clip_quantile=0.99),
        "ew2_rw": energy_w2(u, u_ref, log_w_a=log_w),
        "sample_s": sample_s,
        "nll_s": nll_s,
    }


@torch.no_grad()
def mean_path_length(model: Trained, spatial_dim: int, n: int) -> float:
    """Mean path length in data units from ``n`` prior samples (RK4, 10 steps)."""
    x0 = MeanFreeNormal(model.context.atom_types.shape[-1], spatial_dim).sample(n)
    return model.scale * path_length(model.field, x0, context=model.context, solver=RK4(10))


# ------------------------------------------------------------------------------------------
# Timing helpers
# ------------------------------------------------------------------------------------------


def timed(fns: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """Fastest wall and CPU seconds of each ``fns[name]()`` over ``repeats`` interleaved rounds.

    Interleaving exposes every candidate to the same load from other jobs on the machine.
    """
    best = {name: (float("inf"), float("inf")) for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            w, c = time.perf_counter(), time.process_time()
            fn()
            w, c = time.perf_counter() - w, time.process_time() - c
            best[name] = (min(best[name][0], w), min(best[name][1], c))
    return best


def training_step(field, context, x1: Tensor, opt, bf16: bool = False) -> None:
    x0 = center(torch.randn_like(x1))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = flow_matching_loss(field, x0, x1, torch.rand(len(x1)), context)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


# ------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------


def toy_cases(quick: bool) -> list[Case]:
    """Sizes that fit the ~45 min budget on 2 shared cores (``--quick``: a smoke run)."""
    if quick:
        return [
            Case("dw4", 32, 3, 60, 64, 2e-3, 600, 200, 200, 200, 5, PAIRINGS),
            Case("lj13", 32, 3, 30, 64, 1e-3, 300, 100, 50, 100, 5, ("equivariant OT",)),
        ]
    return [
        Case("dw4", 64, 4, 1000, 128, 1e-3, 5000, 1000, 2000, 2000, 5, PAIRINGS),
        Case("lj13", 32, 3, 600, 128, 1e-3, 2000, 300, 500, 500, 5, PAIRINGS),
        Case("lj55", 32, 3, 600, 64, 1e-3, 1000, 100, 64, 300, 5, PAIRINGS,
             nll="hutchinson"),
    ]


def run_toys(cases: list[Case], out: Path) -> None:
    rows, path_rows = [], []
    for case in cases:
        system = systems.get(case.system)
        data = reference(case.system, case.n_train + case.n_test, out)
        train_x, test = data[: case.n_train], data[case.n_train :]
        context = particle_context(system)
        lengths = {}
        for name in PAIRINGS:
            torch.manual_seed(0)
            field = EGNN(system.spatial_dim, n_types=context.n_types, hidden=case.hidden,
                         n_layers=case.n_layers)
            model = train(field, context, train_x, test, make_pairing(name, context),
                          steps=case.steps, batch=case.batch, lr=case.lr)
            lengths[name] = mean_path_length(model, system.spatial_dim, 100)
            line = {"system": case.system, "pairing": name, "val": model.val_loss,
                    "train_s": model.train_s, "pair_s": model.pair_s}
            if name in case.eval_pairings:
                line |= evaluate(model, system, test, case)
            rows.append(line)
            shown = {k: round(v, 3) if isinstance(v, float) else v for k, v in line.items()}
            print(f"  [{time.strftime('%H:%M:%S')}]", shown, flush=True)
        path_rows.append((case.system, lengths))

    print("\n### Flow matching on the particle toys (EGNN, RK4 with exact divergence)\n")
    print("| system | pairing | EGNN | steps × batch | val FM loss | NLL (nats) | ESS (n) "
          "| ESS clipped 0.2 % | E-W2 (kT, n) | E-W2 clipped | E-W2 reweighted "
          "| train s (pairing s) | sample s | NLL s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    cases_by = {c.system: c for c in cases}
    for r in rows:
        c = cases_by[r["system"]]
        cells = ["–"] * 8
        if "nll" in r:
            star = "†" if c.nll == "hutchinson" else ""
            cells = [f"{r['nll']:.2f}{star}", f"{r['ess']:.3f} ({c.n_exact})",
                     f"{r['ess_clipped']:.3f}", f"{r['ew2']:.3g} ({c.n_energy})",
                     f"{r['ew2_clipped']:.3g}", f"{r['ew2_rw']:.3g}",
                     f"{r['sample_s']:.0f}", f"{r['nll_s']:.0f}"]
        print(f"| {r['system']} | {r['pairing']} | {c.n_layers} × {c.hidden} | "
              f"{c.steps} × {c.batch} | {r['val']:.3f} | {' | '.join(cells[:6])} | "
              f"{r['train_s']:.0f} ({r['pair_s']:.0f}) | {cells[6]} | {cells[7]} |")
    print("\nNLL: mean -log q of held-out reference samples on the (N-1)·d mean-free subspace, "
          f"RK4 × {cases[0].rk4_steps}; † Hutchinson estimate (unbiased for the mean). "
          "E-W2 of raw model samples; clipped: energies clamped at the reference's 99th "
          "percentile; reweighted: the exact-log-q samples with their importance weights. "
          "val FM loss uses each model's own pairing, so it is comparable down a column of "
          "one pairing only.")
    print("\n### Mean integration path length (data units; RK4 × 10, 100 prior samples)\n")
    print("| system | independent | OT | equivariant OT |")
    print("|---|---|---|---|")
    for name, lengths in path_rows:
        print(f"| {name} | {lengths['independent']:.2f} | {lengths['OT']:.2f} | "
              f"{lengths['equivariant OT']:.2f} |")


def _stamp(msg: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    return time.perf_counter() - start[0], time.process_time() - start[1]


def run_speed(out: Path, quick: bool) -> None:
    """Baseline vs optimized on alanine dipeptide: training step, exact divergence, log q."""
    system = systems.get("aldp-implicit")
    context = particle_context(system)
    data = aldp_md(out, 0.05 if quick else 1.0)
    x_all = center(data) / data_scale(data)
    hidden, layers = 64, 4

    def make(kind: str) -> VectorField:
        cls = DenseEGNN if kind == "dense" else EGNN
        return cls(3, n_types=context.n_types, hidden=hidden, n_layers=layers)

    torch.manual_seed(0)
    fields = {"dense": make("dense"), "fast": make("fast")}
    n_params = {k: sum(p.numel() for p in f.parameters()) for k, f in fields.items()}

    # 1. one flow-matching training step at batch 256 (after a warm-up step each)
    x1 = x_all[torch.randint(len(x_all), (256,))]
    opts = {k: torch.optim.Adam(f.parameters(), 1e-5) for k, f in fields.items()}
    steps_fns = {
        "dense": lambda: training_step(fields["dense"], context, x1, opts["dense"]),
        "fast": lambda: training_step(fields["fast"], context, x1, opts["fast"]),
        "fast-bf16": lambda: training_step(fields["fast"], context, x1, opts["fast"], True),
    }
    compile_s = None
    if not quick:
        cfast = torch.compile(fields["fast"])
        start = _clock()
        training_step(cfast, context, x1, opts["fast"])
        compile_s = _since(start)[0]
        steps_fns["compiled"] = lambda: training_step(cfast, context, x1, opts["fast"])
    for fn in steps_fns.values():
        fn()
    step = timed(steps_fns, 3 if quick else 5)
    _stamp(f"training step: {step}, compile {compile_s} s")

    # 2. one exact-divergence evaluation for 100 samples
    xe, te = x_all[:100], torch.full((100,), 0.5)
    candidates = {
        "dense EGNN, one backward per coordinate (66)": ("dense", PER_COORDINATE),
        "EGNN, one backward per coordinate (66)": ("fast", PER_COORDINATE),
        "EGNN, reverse over the mean-free basis (63)": ("fast", Exact()),
        "EGNN, vmapped forward-mode JVPs (63, chunks of 8)": (
            "fast", Exact(mode="forward", chunk_size=8)),
    }

    def divergence_fn(name: str, strategy: Exact):
        f = fields[name]

        def run() -> None:
            with torch.no_grad():
                strategy(lambda y: f(te, y, context), xe)

        return run

    div = timed({k: divergence_fn(*v) for k, v in candidates.items()}, 1 if quick else 2)
    _stamp(f"divergence: {div}")

    # 3. equal quality: the same training (equivariant OT, batch 64), baseline in float32,
    #    the optimized field with bfloat16 mixed precision
    steps = 20 if quick else 150
    trained = {}
    n_val = max(20, len(data) // 10)
    for name in fields:
        torch.manual_seed(1)
        trained[name] = train(make(name), context, data[:-n_val], data[-n_val:],
                              EquivariantOT(context.atom_types), steps=steps, batch=64, lr=1e-3,
                              bf16=name == "fast")
        _stamp(f"aldp {name}: val FM loss {trained[name].val_loss:.3f} after {steps} steps "
               f"({trained[name].train_s:.0f} s)")

    # 4. exact log q per sample of data: adaptive Dopri5 vs RK4 with few steps
    n_lq = 4 if quick else 16
    xq = x_all[-n_lq:]
    prior = MeanFreeNormal(22, 3)
    logq = {}
    with torch.no_grad():
        runs = [("dense", "dopri5", Dopri5(1e-5, 1e-5), PER_COORDINATE),
                ("fast", "dopri5", Dopri5(1e-5, 1e-5), Exact())]
        runs += [("fast", f"rk4-{k}", RK4(k), Exact()) for k in (2, 3, 4, 8)]
        for name, label, solver, strategy in runs:
            start = _clock()
            sol = integrate(trained[name].field, xq, (1.0, 0.0), context=context,
                            solver=solver, divergence=strategy)
            wall, cpu = _since(start)
            logq[name, label] = (prior.log_prob(sol.x) + sol.logdet, sol.nfe,
                                 wall / n_lq, cpu / n_lq)
            _stamp(f"log q {name} {label}: NFE {sol.nfe}, {wall / n_lq:.2f} s per sample")

    print("\n### Speed: alanine dipeptide (22 atoms), EGNN 4 layers × 64, 1 thread\n")
    print(f"Parameters: dense baseline {n_params['dense']}, optimized {n_params['fast']}. "
          f"Validation FM loss (held-out MD frames, equivariant-OT pairs) after {steps} equal "
          f"training steps (batch 64, same data and seed): dense float32 "
          f"{trained['dense'].val_loss:.3f} in {trained['dense'].train_s:.0f} s, optimized "
          f"bfloat16 mixed precision {trained['fast'].val_loss:.3f} in "
          f"{trained['fast'].train_s:.0f} s.\n")
    print("| measurement | baseline: wall s (CPU s) | optimized: wall s (CPU s) "
          "| speed-up wall (CPU) |")
    print("|---|---|---|---|")

    def row(label: str, base: tuple[float, float], new: tuple[float, float]) -> None:
        print(f"| {label} | {base[0]:.3g} ({base[1]:.3g}) | {new[0]:.3g} ({new[1]:.3g}) | "
              f"{base[0] / new[0]:.1f}× ({base[1] / new[1]:.1f}×) |")

    base = step["dense"]
    row("FM training step, batch 256: dense EGNN → factorized EGNN", base, step["fast"])
    row("… factorized EGNN, bfloat16 autocast", base, step["fast-bf16"])
    if compile_s is not None:
        row(f"… factorized EGNN, torch.compile (compiling once: {compile_s:.0f} s)", base,
            step["compiled"])
    base_label = next(iter(div))
    for label, cost in list(div.items())[1:]:
        row(f"exact divergence, 1 evaluation of 100 samples: {base_label} → {label}",
            div[base_label], cost)
    ref, nfe_b, wb, cb = logq["dense", "dopri5"]
    ref_fast = logq["fast", "dopri5"][0]
    for (name, label), (lq, nfe, w, c) in logq.items():
        if name == "dense":
            continue
        err = (lq - ref_fast).abs()
        spread = float((lq - ref_fast).std())
        what = ("Dopri5 1e-5" if label == "dopri5" else
                f"RK4 × {label[4:]}, |Δ log q| vs Dopri5 mean {err.mean():.3f} "
                f"max {err.max():.3f} std {spread:.3f}")
        row(f"exact log q per sample: dense + Dopri5 1e-5 (NFE {nfe_b}) → EGNN + {what} "
            f"(NFE {nfe})", (wb, cb), (w, c))
    per_eval = {k: div[k][0] / 100 for k in div}
    base_eval = per_eval["dense EGNN, one backward per coordinate (66)"]
    fast_eval = per_eval["EGNN, reverse over the mean-free basis (63)"]
    nfe_f = {label: logq["fast", label][1] for (name, label) in logq if name == "fast"}
    projected = ", ".join(f"RK4 × {lab[4:]} {base_eval * nfe_b / (fast_eval * n):.1f}×"
                          for lab, n in nfe_f.items() if lab != "dopri5")
    print(f"\nAt batch 100 (per-evaluation costs of the divergence rows × NFE) the exact log q "
          f"per sample is {base_eval * nfe_b:.2f} s for the baseline and "
          f"{fast_eval:.3f} s × NFE for the optimized path: {projected}.")
    print(f"\nlog q per sample is over {n_lq} MD frames; |Δ log q| between the dense and the "
          f"optimized model (both Dopri5): {(ref - ref_fast).abs().mean():.2f} nats (different "
          "networks trained alike, not a discretization error).")


def run_pairing(out: Path, quick: bool) -> None:
    """What equivariant OT costs per training step on alanine dipeptide, whole batch vs blocks."""
    from boltzflow.training.pairing import transport_cost

    system = systems.get("aldp-implicit")
    context = particle_context(system)
    data = aldp_md(out, 0.05 if quick else 1.0)
    x_all = center(data) / data_scale(data)
    batch, repeats = (64, 1) if quick else (256, 3)
    gen = torch.Generator().manual_seed(0)
    rows = []
    for block in (0, 128, 64, 32):
        if block >= batch:
            continue
        pairing = EquivariantOT(context.atom_types, block_size=block)
        seconds, costs = [], []
        for _ in range(repeats):
            x1 = x_all[torch.randint(len(x_all), (batch,), generator=gen)]
            x0 = center(torch.randn(x1.shape, generator=gen))
            t0 = time.perf_counter()
            paired, x1c = pairing(x0, x1)
            seconds.append(time.perf_counter() - t0)
            costs.append(float(transport_cost(paired, x1c).mean()))
        rows.append((block, min(seconds), sum(costs) / len(costs)))
        _stamp(f"equivariant OT, block {block or batch}: {rows[-1][1]:.2f} s, cost {rows[-1][2]:.2f}")
    independent = float(transport_cost(center(torch.randn(x1.shape, generator=gen)), x1c).mean())
    print(f"\n### Equivariant-OT pairing per training step: alanine dipeptide, batch {batch}\n")
    print("| assignment | alignments | s per step (fastest of "
          f"{repeats}) | mean transport cost (field units²) |")
    print("|---|---|---|---|")
    for block, sec, cost in rows:
        k = block or batch
        label = "whole batch" if not block else f"blocks of {block} (`ot_block_size: {block}`)"
        print(f"| {label} | {batch * k} | {sec:.3f} | {cost:.2f} |")
    print(f"| independent pairs (no alignment) | 0 | – | {independent:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-cnf"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="tiny models and few steps")
    parser.add_argument("--skip-toys", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-pairing", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    if not args.skip_toys:
        run_toys(toy_cases(args.quick), args.out)
    if not args.skip_speed:
        run_speed(args.out, args.quick)
    if not args.skip_pairing:
        run_pairing(args.out, args.quick)
    print(f"\nTotal bench time: {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
