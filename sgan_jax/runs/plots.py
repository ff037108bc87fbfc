"""Figures: generator sample grids, the tutorial's loss curves, and the sweep plot."""

import os

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.png"
    try:
        fig.savefig(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.remove(tmp)  # half a picture, on a disk that may have just filled up
        raise
    finally:
        plt.close(fig)


def save_sample_grid(images: np.ndarray, path: str, rows: int = 4, columns: int = 4) -> None:
    """A rows x columns grid of generated images in [0, 1], as the tutorial's sample_image."""
    fig, axs = plt.subplots(rows, columns, figsize=(4, 4), sharex=True, sharey=True)
    for i, ax in enumerate(axs.flat):
        image = np.clip(images[i], 0.0, 1.0)
        if image.shape[-1] == 1:
            ax.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
        else:
            ax.imshow(image)
        ax.axis("off")
    _save(fig, path)


def plot_training_curves(rows: list[dict], path: str) -> None:
    """SGAN losses (the tutorial plots the supervised one) and accuracies against iterations."""
    loss_rows = [r for r in rows if "d_loss_supervised" in r]
    eval_rows = [r for r in rows if "test_accuracy" in r]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.5))
    for key in ("d_loss_supervised", "d_loss_unsupervised", "g_loss"):
        ax_loss.plot([r["step"] for r in loss_rows], [r[key] for r in loss_rows], label=key)
    ax_loss.set(xlabel="iteration", ylabel="loss", title="SGAN losses")
    ax_loss.grid(True)
    ax_loss.legend(loc="best")
    for key in ("test_accuracy", "validation_accuracy"):
        points = [(r["step"], r[key]) for r in eval_rows if key in r]
        if points:
            ax_acc.plot(*zip(*points, strict=True), marker="o", label=key)
    ax_acc.set(xlabel="iteration", ylabel="accuracy", title="SGAN discriminator accuracy")
    ax_acc.grid(True)
    ax_acc.legend(loc="best")
    fig.tight_layout()
    _save(fig, path)


def plot_series(rows: list[dict], key: str, path: str) -> None:
    """One logged value against the step."""
    points = [(r["step"], r[key]) for r in rows if key in r]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(*zip(*points, strict=True))
    ax.set(xlabel="step", ylabel=key)
    ax.grid(True)
    _save(fig, path)


def plot_supervised_loss(rows: list[dict], path: str) -> None:
    """The tutorial's figure: the discriminator's supervised loss against iterations."""
    loss_rows = [r for r in rows if "d_loss_supervised" in r]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot([r["step"] for r in loss_rows], [r["d_loss_supervised"] for r in loss_rows])
    ax.set(xlabel="iteration", ylabel="loss", title="Discriminator supervised loss")
    ax.grid(True)
    _save(fig, path)


def plot_baseline_history(history: dict, path: str) -> None:
    """The tutorial's two panels for the supervised baseline: training loss and accuracy."""
    epochs = np.arange(1, len(history["loss"]) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.5))
    ax_loss.plot(epochs, history["loss"], "b", label="training loss")
    ax_loss.set(xlabel="epochs", ylabel="loss", title="Supervised classifier: training loss")
    ax_acc.plot(epochs, history["accuracy"], "r", label="training accuracy")
    ax_acc.set(xlabel="epochs", ylabel="accuracy", title="Supervised classifier: training accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(True)
        ax.legend(loc="best")
    fig.tight_layout()
    _save(fig, path)


def plot_accuracy_vs_labels(summary: dict, path: str, title: str = "") -> None:
    """Mean test accuracy with std error bars against the label budget (log x), per method.

    `summary[method][num_labeled] = (mean, std, n)`.
    """
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, by_budget in sorted(summary.items()):
        budgets = sorted(by_budget)
        means = [by_budget[b][0] for b in budgets]
        stds = [by_budget[b][1] for b in budgets]
        ax.errorbar(budgets, means, yerr=stds, marker="o", capsize=4, label=method)
    ax.set_xscale("log")
    ax.set(xlabel="labeled images", ylabel="test accuracy", title=title or "Accuracy vs labels")
    ax.grid(True, which="both", alpha=0.4)
    ax.legend(loc="best")
    fig.tight_layout()
    _save(fig, path)


def plot_accuracy_vs_steps(curves: list[dict], path: str, title: str = "") -> None:
    """Test accuracy against iterations: a thin line per seed and their mean, a panel per label
    budget and label selection. `curves` are curves.csv rows."""
    panels = sorted({(c["num_labeled"], c.get("label_selection") or "") for c in curves})
    fig, axes = plt.subplots(
        1, len(panels), figsize=(6.5 * len(panels), 4.5), squeeze=False, sharey=True
    )
    for ax, (budget, selection) in zip(axes[0], panels, strict=True):
        by_seed: dict = {}
        for c in curves:
            if (c["num_labeled"], c.get("label_selection") or "") == (budget, selection) and (
                c["test_accuracy"] is not None
            ):
                by_seed.setdefault(c["seed"], {})[c["step"]] = c["test_accuracy"]
        for seed, points in sorted(by_seed.items()):
            steps = sorted(points)
            ax.plot(steps, [points[s] for s in steps], lw=1, alpha=0.6, label=f"seed {seed}")
        common = sorted(set.intersection(*(set(p) for p in by_seed.values())))
        if len(by_seed) > 1 and common:
            mean = [np.mean([p[s] for p in by_seed.values()]) for s in common]
            ax.plot(common, mean, "k", lw=2.5, label=f"mean of {len(by_seed)}")
        ax.set(xlabel="iteration", ylabel="test accuracy", title=f"{budget} labels, {selection}")
        ax.grid(True, alpha=0.4)
        ax.legend(loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)
