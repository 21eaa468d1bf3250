"""lit_cs201.course.sklearn_iris: the numbers equal a direct scikit-learn computation and the figure is written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, adjusted_rand_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from lit_cs201.course import sklearn_iris
from lit_cs201.course.sklearn_iris import ClassicResult, run_classic

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def result() -> ClassicResult:
    return run_classic()


def _direct_accuracy(seed: int = 42, test_size: float = 0.3) -> float:
    X, y = load_iris(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=test_size, random_state=seed)
    scaler = StandardScaler().fit(X_train)
    clf = LogisticRegression(max_iter=200).fit(scaler.transform(X_train), y_train)
    return float(accuracy_score(y_test, clf.predict(scaler.transform(X_test))))


def _direct_ari(seed: int = 42, n_init: int = 10) -> float:
    X, y = load_iris(return_X_y=True)
    clusters = KMeans(n_clusters=3, n_init=n_init, random_state=seed).fit_predict(StandardScaler().fit_transform(X))
    return float(adjusted_rand_score(y, clusters))


def test_accuracy_matches_scikit_learn_and_the_course(result: ClassicResult) -> None:
    assert result.accuracy == _direct_accuracy()
    assert result.accuracy == 1.0  # the course's result for seed 42 and a 30 % test split
    assert (result.n_train, result.n_test) == (105, 45)


def test_other_split_matches_scikit_learn() -> None:
    other = run_classic(seed=0, test_size=0.5, n_init=2)
    assert other.accuracy == _direct_accuracy(seed=0, test_size=0.5)
    assert other.ari == pytest.approx(_direct_ari(seed=0, n_init=2), abs=1e-12)
    assert other.n_test == 75


def test_clusters_are_scored_with_the_adjusted_rand_index(result: ClassicResult) -> None:
    assert -1.0 <= result.ari <= 1.0
    assert result.ari == pytest.approx(_direct_ari(), abs=1e-12)
    # Renumbering clusters to their best-matching species changes colours, not the partition.
    assert adjusted_rand_score(result.labels, result.clusters) == pytest.approx(result.ari, abs=1e-12)
    assert set(np.unique(result.clusters)) == {0, 1, 2}
    assert result.cluster_accuracy == pytest.approx(np.mean(result.clusters == result.labels))
    assert 1 / 3 < result.cluster_accuracy <= 1.0


def test_pca_points_cover_all_flowers(result: ClassicResult) -> None:
    assert result.points_2d.shape == (150, 2)
    assert result.labels.shape == result.clusters.shape == (150,)
    assert 0.9 < sum(result.explained_variance) <= 1.0
    assert result.species == ("setosa", "versicolor", "virginica")


def test_bad_test_size_is_rejected() -> None:
    with pytest.raises(ValueError, match="test_size"):
        run_classic(test_size=1.0)


def test_cli_writes_the_png_and_prints_the_numbers(tmp_path: Path, result: ClassicResult) -> None:
    out = tmp_path / "nested" / "folders" / "iris.png"
    proc = subprocess.run(
        [sys.executable, "-m", "lit_cs201.course.sklearn_iris", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.is_file()
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 10_000  # two panels of 150 points, not an empty canvas
    assert f"Logistic Regression accuracy: {result.accuracy:.4f}" in proc.stdout
    assert f"adjusted Rand index {result.ari:.4f}" in proc.stdout
    assert f"Figure saved to {out}" in proc.stdout


def test_save_figure_default_location_is_relative(tmp_path: Path, result: ClassicResult, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = sklearn_iris.save_figure(result, sklearn_iris.DEFAULT_OUT)
    assert path == Path("runs/classic/iris_classic.png")
    assert (tmp_path / path).read_bytes().startswith(PNG_SIGNATURE)


@pytest.mark.parametrize(
    "argv, message",
    [(["--test-size", "1.5"], "--test-size"), (["--n-init", "0"], "--n-init"), (["--nope"], "--nope")],
)
def test_cli_rejects_bad_arguments(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert sklearn_iris.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m lit_cs201.course.sklearn_iris: error: ") and err.count("\n") == 1
    assert message in err


def test_cli_refuses_a_folder_as_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sklearn_iris.main(["--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_a_full_disk_is_a_storage_error_not_bad_input(monkeypatch, capsys, tmp_path: Path) -> None:
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.png"))

    monkeypatch.setattr(sklearn_iris, "save_figure", full)
    assert sklearn_iris.main(["--out", str(tmp_path / "x.png")]) == 74  # EX_IOERR, as lit-cs201 reports it
    assert "free space on that disk" in capsys.readouterr().err
