"""Supervised versus unsupervised learning on Iris, with scikit-learn: the course's classic demo.

``python -m lit_cs201.course.sklearn_iris`` fits a LogisticRegression on a 70/30 split and reports its test accuracy,
clusters all 150 flowers with KMeans (3 clusters) without looking at the labels, measures how well the
clusters match the species (adjusted Rand index), and saves the two PCA scatter plots side by side to a PNG.

Differences from the course program, on purpose:

* the StandardScaler for the classifier is fitted on the training rows only (a pipeline), so no statistic of
  the test rows leaks into training; the course scaled all rows before splitting. The test accuracy is 1.0
  either way with seed 42. KMeans and PCA see all rows, scaled on all rows, as in the course: they use no
  labels.
* KMeans gets ``n_init=10`` explicitly: scikit-learn's default changed from 10 to ``"auto"`` (a single start
  for k-means++), so leaving it out makes the result depend on the installed version; with one start the
  adjusted Rand index is 0.43 instead of 0.62.
* cluster ids are renumbered to the species they overlap most before plotting, so that matching groups get the
  same colour in both panels (KMeans numbers clusters arbitrarily).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from lit_cs201.course.argtypes import ArgumentParser, fraction, positive_int
from lit_cs201.errors import STORAGE_ERRNOS, UserError, run_command

DEFAULT_OUT = Path("runs/classic/iris_classic.png")


@dataclass(frozen=True)
class ClassicResult:
    """Numbers and 2-D coordinates of one run of the demo.

    Attributes:
        accuracy: LogisticRegression accuracy on the held-out test rows.
        n_train: Number of training rows.
        n_test: Number of test rows.
        ari: Adjusted Rand index between KMeans clusters and the true species, in [-1, 1] (1: identical
            partitions, about 0: no better than chance); invariant to how clusters are numbered.
        cluster_accuracy: Fraction of flowers whose cluster, renumbered to its best-matching species, equals
            the species.
        explained_variance: Fraction of the variance kept by each of the two principal components.
        species: Names of the three species, index = label.
        points_2d: PCA coordinates of all 150 flowers, shape (150, 2).
        labels: True species, shape (150,).
        clusters: KMeans cluster of each flower, renumbered to the best-matching species, shape (150,).
    """

    accuracy: float
    n_train: int
    n_test: int
    ari: float
    cluster_accuracy: float
    explained_variance: tuple[float, float]
    species: tuple[str, ...]
    points_2d: NDArray[np.float64] = field(repr=False)
    labels: NDArray[np.int64] = field(repr=False)
    clusters: NDArray[np.int64] = field(repr=False)


def _match_clusters(clusters: NDArray[np.int64], labels: NDArray[np.int64], n_clusters: int) -> NDArray[np.int64]:
    """Renumber clusters so each maps to the label it overlaps most (one-to-one, Hungarian assignment)."""
    from scipy.optimize import linear_sum_assignment  # scipy comes with scikit-learn

    n_labels = int(labels.max()) + 1
    overlap = np.zeros((n_clusters, max(n_clusters, n_labels)), dtype=np.int64)
    np.add.at(overlap, (clusters, labels), 1)
    rows, cols = linear_sum_assignment(overlap, maximize=True)
    mapping = np.empty(n_clusters, dtype=np.int64)
    mapping[rows] = cols
    return mapping[clusters]


def run_classic(seed: int = 42, test_size: float = 0.3, n_clusters: int = 3, n_init: int = 10) -> ClassicResult:
    """Run the demo and return its numbers (no plotting, no printing).

    Args:
        seed: Seed of the train/test split, the LogisticRegression and KMeans (the course uses 42 throughout).
        test_size: Fraction of the 150 flowers held out for the accuracy (course: 0.3).
        n_clusters: KMeans clusters (course: 3, the number of species).
        n_init: KMeans restarts; the best by inertia is kept.
    """
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be between 0 and 1 (exclusive), got {test_size}")
    from sklearn.cluster import KMeans
    from sklearn.datasets import load_iris
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, adjusted_rand_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    iris = load_iris()  # ships with scikit-learn: no download
    X, y = iris.data, iris.target.astype(np.int64)

    # Supervised: the labels guide training, the held-out rows measure it.
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=test_size, random_state=seed)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=200))
    clf.fit(X_train, y_train)
    accuracy = float(accuracy_score(y_test, clf.predict(X_test)))

    # Unsupervised: the same flowers without labels; the labels only score the result afterwards.
    X_scaled = StandardScaler().fit_transform(X)
    kmeans = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed)
    clusters = kmeans.fit_predict(X_scaled).astype(np.int64)
    pca = PCA(n_components=2)
    points_2d = pca.fit_transform(X_scaled)

    matched = _match_clusters(clusters, y, n_clusters)
    ratio = pca.explained_variance_ratio_
    return ClassicResult(
        accuracy=accuracy,
        n_train=len(y_train),
        n_test=len(y_test),
        ari=float(adjusted_rand_score(y, clusters)),
        cluster_accuracy=float(np.mean(matched == y)),
        explained_variance=(float(ratio[0]), float(ratio[1])),
        species=tuple(str(name) for name in iris.target_names),
        points_2d=points_2d,
        labels=y,
        clusters=matched,
    )


def save_figure(result: ClassicResult, out: str | Path) -> Path:
    """Save the KMeans and ground-truth scatter plots (PCA 2-D) side by side as a PNG; return its path.

    Parent folders are created. Uses matplotlib's non-interactive Agg backend, so no display is needed.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax_kmeans, ax_truth) = plt.subplots(1, 2, figsize=(10, 5), sharex=True, sharey=True)
    # One colour map and fixed colour limits for both panels: after renumbering, cluster k and species k share
    # a colour, so agreement and disagreement are visible at a glance.
    style = {"cmap": "viridis", "vmin": 0, "vmax": max(2, int(result.clusters.max())), "s": 40}
    ax_kmeans.scatter(result.points_2d[:, 0], result.points_2d[:, 1], c=result.clusters, **style)
    ax_kmeans.set_title(f"KMeans clustering (unsupervised), ARI {result.ari:.3f}")
    scatter = ax_truth.scatter(result.points_2d[:, 0], result.points_2d[:, 1], c=result.labels, **style)
    ax_truth.set_title("True species (the labels supervised learning uses)")
    ax_truth.legend(scatter.legend_elements()[0], result.species, loc="best")
    pc1, pc2 = result.explained_variance
    for ax in (ax_kmeans, ax_truth):
        ax.set_xlabel(f"PC 1 ({pc1:.0%} of variance)")
    ax_kmeans.set_ylabel(f"PC 2 ({pc2:.0%} of variance)")
    fig.tight_layout()
    try:
        fig.savefig(out, dpi=100)
    finally:
        plt.close(fig)
    return out


def _parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m lit_cs201.course.sklearn_iris",
        description="Iris: LogisticRegression (supervised) versus KMeans (unsupervised), PCA scatter plots.",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"PNG to write, folders created (default: {DEFAULT_OUT})",
    )
    parser.add_argument("--seed", type=int, default=42, help="seed of the split and KMeans (default: 42)")
    parser.add_argument("--test-size", type=fraction, default=0.3, help="held-out fraction (default: 0.3)")
    parser.add_argument("--n-init", type=positive_int, default=10, help="KMeans restarts (default: 10)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m lit_cs201.course.sklearn_iris``; returns the process exit status."""
    parser = _parser()
    return run_command(parser.prog, lambda: _run(parser.parse_args(argv)))


def _run(args: argparse.Namespace) -> int:
    if args.out.is_dir():
        raise UserError(f"--out must be a file path, {str(args.out)!r} is a folder")
    result = run_classic(seed=args.seed, test_size=args.test_size, n_init=args.n_init)
    print(f"Logistic Regression accuracy: {result.accuracy:.4f} ({result.n_test} test flowers, {result.n_train} train)")
    print(f"KMeans (3 clusters) vs species: adjusted Rand index {result.ari:.4f}")
    print(f"KMeans clusters matching their species after renumbering: {result.cluster_accuracy:.4f}")
    pc1, pc2 = result.explained_variance
    print(f"PCA: the 2 components keep {pc1 + pc2:.1%} of the variance ({pc1:.1%} + {pc2:.1%})")
    try:
        path = save_figure(result, args.out)
    except OSError as err:
        if err.errno in STORAGE_ERRNOS:
            raise  # a full or read-only disk, reported as such
        raise UserError(f"could not write --out {args.out}: {err.strerror or err}") from err
    print(f"Figure saved to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
