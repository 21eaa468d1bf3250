"""SQuAD v1.1 files and the exact-match and F1 scores of a `QuestionAnswerer` on them."""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from lit_cs201.data.files import open_regular
from lit_cs201.errors import UserError, first_few

if TYPE_CHECKING:
    from lit_cs201.course.qa_answerer import QAOptions, QuestionAnswerer


@dataclass(frozen=True)
class SquadQuestion:
    """One question of a SQuAD file with its context and reference answers."""

    id: str
    question: str
    context: str
    answers: tuple[str, ...]


def load_squad(path: str | Path) -> list[SquadQuestion]:
    """The questions of a SQuAD v1.1 JSON file, or a ``UserError`` naming the file and what is wrong with it. A
    question without reference answers (SQuAD v2's unanswerable ones) gets ``""``, as the official v2 script scores
    it: only an empty prediction is right."""
    path = Path(path).expanduser()
    if not path.exists() and not path.is_symlink():
        raise UserError(f"SQuAD file {str(path)!r} does not exist")
    try:
        with open_regular(path) as file:  # a FIFO would be waited on for ever
            document = json.loads(file.read().decode("utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"SQuAD file {str(path)!r} is not valid JSON: {exc}") from exc
    except RecursionError:  # lists nested thousands deep: Python's parser recurses once a level
        raise UserError(
            f"SQuAD file {str(path)!r} nests its JSON deeper than it can be read; a SQuAD file is 6 levels deep: "
            "give the SQuAD v1.1 file itself"
        ) from None
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read SQuAD file {str(path)!r}: {exc}") from exc

    expected = "expected {'data': [{'paragraphs': [{'context': str, 'qas': [{'id', 'question', 'answers'}]}]}]}"
    questions: list[SquadQuestion] = []
    try:
        for paragraph in (paragraph for article in document["data"] for paragraph in article["paragraphs"]):
            for qa in paragraph["qas"]:
                answers = qa.get("answers") or [{"text": ""}]
                texts = tuple(str(answer["text"]) for answer in answers)
                number = str(qa.get("id", len(questions)))
                questions.append(SquadQuestion(number, str(qa["question"]), str(paragraph["context"]), texts))
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise UserError(f"SQuAD file {str(path)!r} is not SQuAD v1.1 JSON ({exc!r}); {expected}") from exc
    if not questions:
        raise UserError(f"SQuAD file {str(path)!r} holds no questions; {expected}")
    _refuse_repeated_ids(path, questions)
    return questions


def _refuse_repeated_ids(path: Path, questions: Sequence[SquadQuestion]) -> None:
    """Refuse a file that gives two questions one id: the scores are kept by id, so the second question's reference
    replaces the first's and right answers score as wrong (two perfect answers: EM 50)."""
    counts = Counter(question.id for question in questions)
    repeated = [f"{number!r} ({count} times)" for number, count in counts.items() if count > 1]
    if repeated:
        raise UserError(
            f"SQuAD file {str(path)!r} gives several questions the same id: {first_few(repeated, 3)}; expected one "
            "id per question: give each question an id of its own"
        )


@dataclass(frozen=True)
class SquadScores:
    """Exact match and F1 in percent, over ``questions`` questions."""

    exact_match: float
    f1: float
    questions: int


def evaluate_squad(
    qa: QuestionAnswerer,
    questions: Sequence[SquadQuestion],
    options: QAOptions | None = None,
    *,
    chunk_size: int = 64,
    progress: bool = False,
) -> SquadScores:
    """Exact match and F1 (0-100, SQuAD v1.1 definitions, ``torchmetrics.text.SQuAD``) of the best answers to
    ``chunk_size`` questions at a time, with a progress bar on stderr if ``progress``. F1 counts whitespace-separated
    words, as the official script does: for Chinese text (no spaces) it is all-or-nothing per answer."""
    from torchmetrics.text import SQuAD

    if not questions:
        raise UserError("no SQuAD questions to evaluate")
    metric = SQuAD()
    with tqdm(total=len(questions), unit="question", disable=not progress, file=sys.stderr) as bar:
        for low in range(0, len(questions), chunk_size):
            chunk = questions[low : low + chunk_size]
            answers = qa.answer_batch([q.question for q in chunk], [q.context for q in chunk], options, top_k=1)
            preds = [{"prediction_text": best[0]["answer"], "id": q.id} for q, best in zip(chunk, answers, strict=True)]
            refs = [{"answers": {"text": q.answers}, "id": q.id} for q in chunk]
            metric.update(preds, refs)
            bar.update(len(chunk))
    scores = metric.compute()
    return SquadScores(float(scores["exact_match"]), float(scores["f1"]), len(questions))
