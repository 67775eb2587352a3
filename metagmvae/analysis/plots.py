"""Figures: training curves, and reconstructions and samples of a trained pixel model."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from metagmvae.data.episodes import episode_key, parse_episode_key  # noqa: E402
from metagmvae.models import em  # noqa: E402
from metagmvae.runtime.io import atomic_path  # noqa: E402


def save_figure(fig, path: Path) -> None:
    """Write ``fig`` to ``path`` as PNG atomically, without a timestamp (the same bytes every run), and close it."""
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def training_curves(history: dict, title: str, path: Path) -> None:
    """Reconstruction term, KL term and validation accuracy against the training step."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for ax, key, label in zip(axes, ("rec", "kl"), ("reconstruction (nats per point)", "KL (nats per point)")):
        ax.plot(history["step"], history[key])
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    for shot, accs in history["val"].items():
        axes[2].plot(history["val_step"], accs, marker="o", label=shot)
    axes[2].set_xlabel("step")
    axes[2].set_ylabel("validation accuracy (%)")
    axes[2].legend()
    axes[2].grid(alpha=0.3)
    fig.suptitle(title)
    save_figure(fig, path)


@torch.no_grad()
def reconstructions_and_samples(
    model, episode: torch.Tensor, way: int, em_iters: int, autocast, path: Path, seed: int = 0
) -> None:
    """Top: inputs from every class of an episode and their reconstructions (decoded posterior
    means). Bottom: the EM prior fitted to the whole episode, each row one component: its decoded
    mean (first column), then decoded samples ``z ~ N(mu_k, I)``.

    episode: ``[W, n, 1, H, W]`` images in [0, 1], class-structured (e.g. a validation episode).
    """
    gen = torch.Generator(device=episode.device).manual_seed(seed)
    images = episode.flatten(0, 1)
    shown = episode[:, : max(1, 16 // episode.shape[0])].flatten(0, 1)[:16]
    per_component = 8
    with autocast():
        mean, logvar = model.posterior(images.unsqueeze(0))
        z, _ = model.sample(mean, logvar, 8, gen)
        _, mu = em.unsupervised_em(z.flatten(1, 2), way, em_iters, gen)
        recon = model.decoder.mean(model.posterior(shown.unsqueeze(0))[0][0]).float()
        noise = torch.randn(way, per_component, mu.shape[-1], device=images.device, generator=gen)
        decoded = model.decoder.mean(torch.cat([mu[0], (mu[0].unsqueeze(1) + noise).flatten(0, 1)])).float()
    top = torch.cat([torch.cat(list(rows[:, 0]), dim=1) for rows in (shown, recon)], dim=0).cpu().numpy()
    means, samples = decoded[:way, 0], decoded[way:, 0].view(way, per_component, *decoded.shape[2:])
    bottom = torch.cat([torch.cat([means[k], *samples[k]], dim=1) for k in range(way)], dim=0).cpu().numpy()
    fig, (ax_top, ax_bot) = plt.subplots(
        2, 1, figsize=(10, 2.5 + 0.5 * way), gridspec_kw={"height_ratios": [2, max(way, 2)]}
    )
    ax_top.imshow(top, cmap="gray_r", vmin=0, vmax=1)
    ax_top.set_title("validation images (top) and reconstructions from the posterior mean (bottom)")
    ax_bot.imshow(bottom, cmap="gray_r", vmin=0, vmax=1)
    ax_bot.set_title(f"EM prior of the episode ({way} components): decoded mean, then samples z ~ N(mu_k, I)")
    for ax in (ax_top, ax_bot):
        ax.axis("off")
    save_figure(fig, path)


def accuracy_figure(results: dict[str, dict[str, dict]], paper: dict[str, tuple[float, float]], path: Path) -> None:
    """Test accuracy with 95% CI per setting, one bar per method, the paper's value as a marker.

    results: ``{method: {"<W>way_<s>shot": {"accuracy": %, "ci95": %}}}``.
    """
    settings = sorted({s for r in results.values() for s in r}, key=parse_episode_key)
    x = np.arange(len(settings))
    width = 0.8 / max(len(results), 1)
    fig, ax = plt.subplots(figsize=(1.8 * len(settings) + 2, 4))
    for i, (method, res) in enumerate(results.items()):
        acc = [res.get(s, {}).get("accuracy", np.nan) for s in settings]
        ci = [res.get(s, {}).get("ci95", 0) for s in settings]
        ax.bar(x + (i - (len(results) - 1) / 2) * width, acc, width, yerr=ci, label=method, capsize=3)
    marks = [paper.get(s, (np.nan, 0))[0] for s in settings]
    ax.scatter(x, marks, marker="_", s=1500, color="black", zorder=3, label="paper (Table 1)")
    ax.set_xticks(x, settings)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    save_figure(fig, path)


def accuracy_vs_time(records: list[dict], references: dict, path: Path) -> None:
    """Test accuracy (95% CI bars) of the snapshots of training runs against training minutes,
    one panel per way, with the official code's measured curves (when ``references`` holds
    them for that way) and the paper's final values.

    records: :mod:`benchmarks.timecurve` JSON records (``points`` with ``minutes`` and
    ``test: {"<W>way_<s>shot": {"accuracy", "ci95"}}``). references: ``official_cpu`` curves
    (``{"label", "points": [{"seconds", "<key>": %}]}``) and ``paper`` (``{"<key>": %}``).
    """
    ways = sorted({parse_episode_key(k)[0] for r in records for k in r["points"][0]["test"]})
    fig, axes = plt.subplots(1, len(ways), figsize=(7.5 * len(ways), 4.8), squeeze=False)
    shot_colours = {1: "tab:blue", 5: "tab:orange"}
    for ax, way in zip(axes[0], ways):
        for record in records:
            for key in record["points"][0]["test"]:
                w, shot = parse_episode_key(key)
                if w != way:
                    continue
                pts = record["points"]
                ax.errorbar(
                    [p["minutes"] for p in pts],
                    [p["test"][key]["accuracy"] for p in pts],
                    yerr=[p["test"][key]["ci95"] for p in pts],
                    marker="o",
                    capsize=3,
                    color=shot_colours.get(shot),
                    label=f"{record['profile']} profile, {shot}-shot",
                )
                if key in references.get("paper", {}):
                    ax.axhline(references["paper"][key], color=shot_colours.get(shot), ls=":", lw=1)
        for i, curve in enumerate(references.get("official_cpu", {}).get("curves", [])):
            for key, marker_colour in (
                (episode_key(way, 1), shot_colours[1]),
                (episode_key(way, 5), shot_colours[5]),
            ):
                pts = [p for p in curve["points"] if key in p]
                if pts:
                    ax.plot(
                        [p["seconds"] / 60 for p in pts],
                        [p[key] for p in pts],
                        marker="XPs"[i % 3],
                        ls="--",
                        color=marker_colour,
                        alpha=0.7,
                        label=f"official code, {curve['label']}, {parse_episode_key(key)[1]}-shot",
                    )
        ax.set_xlabel("training wall time (minutes)")
        ax.set_ylabel("test accuracy, 1000 episodes (%)")
        dataset = records[0]["train_config"]["dataset"].replace("_", "-").title()
        ax.set_title(f"{dataset} {way}-way (dotted: the paper's final results)", fontsize=9)
        ax.set_ylim(0, 100)
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=7)
    info = records[0]["machine"]
    fig.suptitle(
        f"{info.get('cpu', info.get('gpu', ''))[:60]}, {info['threads']} threads; official curves: "
        f"{references.get('official_cpu', {}).get('machine', 'not measured')}",
        fontsize=9,
    )
    save_figure(fig, path)


def study_figure(kind: str, runs: list[dict], path: Path) -> None:
    """Accuracy against training minutes, one line per run of a study (:mod:`benchmarks.study`):
    validation accuracy (1-shot solid, 5-shot dashed) of Omniglot runs, one panel per way, or
    LR(SimCLR) test accuracy of SimCLR runs, one panel per shot."""
    if kind == "omniglot":
        panels = sorted({k for r in runs for k in r["points"][0]["val"] if k.endswith("_1shot")})
        value = lambda point, panel, shot: point["val"].get(panel.replace("_1shot", f"_{shot}shot"))  # noqa: E731
        shots, ylabel = (1, 5), "validation accuracy (%)"
    else:
        panels, shots, ylabel = ["5way_1shot", "5way_5shot"], (None,), "LR(SimCLR) test accuracy (%)"
        value = lambda point, panel, shot: point.get(panel)  # noqa: E731
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.8), squeeze=False)
    colours = plt.get_cmap("tab20").colors
    for ax, panel in zip(axes[0], panels):
        for i, run in enumerate(runs):
            for shot, style in zip(shots, ("-", "--")):
                pts = [(p["minutes"], value(p, panel, shot)) for p in run["points"]]
                pts = [(m, v["accuracy"]) for m, v in pts if v is not None]
                if pts:
                    label = run["name"] if style == "-" else None
                    ax.plot(*zip(*pts), style, marker="o", ms=3, color=colours[i % 20], label=label)
        way, shot = parse_episode_key(panel)
        ax.set_title(f"{way}-way" + ("" if kind == "omniglot" else f" {shot}-shot"), fontsize=9)
        ax.set_xlabel("training minutes (training steps only)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="lower right")
    info = runs[0]["machine"]
    fig.suptitle(f"{info.get('cpu', info.get('gpu', ''))[:60]}, {info['threads']} threads", fontsize=9)
    save_figure(fig, path)


@torch.no_grad()
def embedding_figure(
    model, items: torch.Tensor, em_iters: int, autocast, title: str, path: Path, seed: int = 0
) -> None:
    """PCA of the posterior means of one episode's items, coloured by class, with the means of
    the K-component GMM that unsupervised EM fits to them (K = number of classes), as the model
    sees an unlabeled test episode.

    items: class-structured ``[W, n, *item]`` (images or features) on the model's device.
    """
    way, n = items.shape[:2]
    gen = torch.Generator(device=items.device).manual_seed(seed)
    with autocast():
        mean, _ = model.posterior(items.flatten(0, 1).unsqueeze(0))
    _, mu = em.unsupervised_em(mean, way, em_iters, gen)
    points, centres = mean[0].float().cpu().numpy(), mu[0].float().cpu().numpy()
    origin = points.mean(0)
    _, _, vt = np.linalg.svd(points - origin, full_matrices=False)
    xy, centres_xy = (points - origin) @ vt[:2].T, (centres - origin) @ vt[:2].T
    labels = np.repeat(np.arange(way), n)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    cmap = plt.get_cmap("tab10" if way <= 10 else "tab20")
    for c in range(way):
        ax.scatter(*xy[labels == c].T, s=14, color=cmap(c % cmap.N), alpha=0.75, label=f"class {c + 1}")
    ax.scatter(*centres_xy.T, marker="X", s=160, color="black", edgecolor="white", label="EM component means")
    ax.set_xlabel("principal component 1")
    ax.set_ylabel("principal component 2")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="best", ncol=2 if way > 5 else 1)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def generated_tasks_figure(generated: torch.Tensor, images: bool, method: str, path: Path) -> None:
    """Generated tasks ``[T, W, M, *item]`` (CPU): for ``images``, one panel per task, rows =
    classes, columns = members; for features, a 2-d PCA of the first task's items coloured by
    class. At most 10 classes (and 8 image columns) are shown."""
    tasks, classes, members = generated.shape[0], min(generated.shape[1], 10), generated.shape[2]
    if images:
        rows, cols = classes, min(members, 8)
        fig = plt.figure(figsize=(tasks * (cols + 1) * 0.6, rows * 0.6 + 0.8), layout="constrained")
        for t, (panel, task) in enumerate(zip(fig.subfigures(1, tasks), generated)):
            axes = panel.subplots(rows, cols, squeeze=False)
            for ax, image in zip(axes.flat, task[:rows, :cols].flatten(0, 1)):
                ax.imshow(image.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray_r", vmin=0, vmax=1)
                ax.set_axis_off()
            panel.suptitle(f"task {t + 1}", fontsize=9)
        fig.suptitle(f"{method} generated tasks (rows: classes, columns: members)")
    else:
        x = generated[0, :classes].flatten(0, 1)
        x = x - x.mean(0)
        coords = x @ torch.linalg.svd(x, full_matrices=False).Vh[:2].T
        fig, ax = plt.subplots(figsize=(5, 4.5))
        for c in range(classes):
            ax.scatter(*coords[c * members : (c + 1) * members].T.numpy(), s=14, label=f"class {c}")
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
        ax.legend(fontsize=7)
        ax.set_title(f"{method}: one generated task, PCA of its features")
    save_figure(fig, path)


def accuracy_by_shot_table(
    results: dict[str, dict[str, dict]], paper: dict[str, tuple[float, float]]
) -> tuple[list[str], list[list]]:
    """DVC plot data: one row per shot, one column per method and way plus the paper's value.

    Returns ``(header, rows)``: ``["shot", "meta_gmvae_5way", "paper_5way", ...]`` and rows of
    accuracies in percent (``None`` where a method has no result at that shot).
    """
    settings = {parse_episode_key(key) for r in results.values() for key in r}
    ways, shots = sorted({w for w, _ in settings}), sorted({s for _, s in settings})
    columns = [(method, way) for way in ways for method in [*results, "paper"]]

    def value(method: str, way: int, shot: int) -> float | None:
        key = episode_key(way, shot)
        if method == "paper":
            return paper[key][0] if key in paper else None
        res = results[method].get(key)
        return None if res is None else float(res["accuracy"])

    header = ["shot", *(f"{method}_{way}way" for method, way in columns)]
    return header, [[shot, *(value(m, w, shot) for m, w in columns)] for shot in shots]


def paired_differences_figure(
    labels: list[str], intervals: list[tuple[float, float, float]], title: str, path: Path
) -> None:
    """One row per compared result: the mean paired difference (points) with its 95% CI as a bar,
    and a line at zero.

    intervals: ``(mean, low, high)`` per label, in percentage points.
    """
    y = np.arange(len(labels))[::-1]
    means = np.array([m for m, _, _ in intervals])
    errors = np.array([[m - lo for m, lo, _ in intervals], [hi - m for m, _, hi in intervals]])
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(labels) + 1.4))
    ax.errorbar(means, y, xerr=errors, fmt="o", capsize=3, color="tab:blue")
    ax.axvline(0, color="black", lw=1)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("paired difference b - a (percentage points), 95% CI")
    ax.set_title(title, fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    save_figure(fig, path)


def seed_spread_figure(labels: list[str], spreads: list, title: str, path: Path) -> None:
    """One column per result: each seed's test accuracy with its per-episode 95% CI (points with
    bars), and the mean across seeds ± one standard deviation across seeds (black bar).

    spreads: :class:`metagmvae.analysis.stats.SeedSpread` per label (percent).
    """
    fig, ax = plt.subplots(figsize=(1.3 * len(labels) + 2, 4.2))
    for i, spread in enumerate(spreads):
        offsets = np.linspace(-0.25, 0.25, len(spread.per_seed))
        bars = (  # (x, y, error bar, marker, cap size, colour, legend)
            (i + offsets, spread.per_seed, spread.episode_ci95, "o", 2, "tab:blue", "one seed, per-episode 95% CI"),
            (i + 0.38, spread.mean, spread.std, "s", 4, "black", "mean across seeds ± std across seeds"),
        )
        for x, y, error, marker, capsize, color, label in bars:
            ax.errorbar(x, y, yerr=error, fmt=marker, capsize=capsize, color=color, label=label if i == 0 else None)
    ax.set_xticks(np.arange(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    save_figure(fig, path)
