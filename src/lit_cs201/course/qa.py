"""``python -m lit_cs201.course.qa``: extractive question answering from a local model folder, offline; the command
also scores SQuAD v1.1 files.

transformers 5.3 removed ``pipeline("question-answering")``, which the course used; `QuestionAnswerer`
(`lit_cs201.course.qa_answerer`) does its job on ``AutoModelForQuestionAnswering`` and a fast tokenizer, with its
options, scores and result shape, and is importable from here::

    qa = QuestionAnswerer.from_folder("models/roberta-chinese-qa")
    qa("谁是人工智能之父？", "艾伦·图灵是人工智能之父。")  # {'score': ..., 'start': 0, 'end': 5, 'answer': '艾伦·图灵'}

The model folder is checked and loaded by `lit_cs201.course.qa_folder`; SQuAD files are read and scored by
`lit_cs201.course.squad`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, fields
from typing import Any

from lit_cs201.course.argtypes import ArgumentParser, positive_int
from lit_cs201.course.qa_answerer import BATCH_SIZE, Answer, QAOptions, QuestionAnswerer
from lit_cs201.course.qa_folder import COURSE_MODELS, validate_model_folder
from lit_cs201.course.squad import evaluate_squad, load_squad
from lit_cs201.errors import run_command

__all__ = ["Answer", "QAOptions", "QuestionAnswerer", "build_parser", "main", "validate_model_folder"]


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m lit_cs201.course.qa`` command line; the answer options are :class:`QAOptions`' fields."""
    fetch = "; ".join(f"hf download {hub_id} --local-dir models/{name}" for name, hub_id in COURSE_MODELS.items())
    parser = ArgumentParser(
        prog="python -m lit_cs201.course.qa",
        description="Extractive question answering from a local model folder (offline), or SQuAD v1.1 evaluation. "
        f"Fetch the course's models with: {fetch}",
    )
    parser.add_argument("--model", required=True, metavar="DIR", help="local model folder")
    parser.add_argument("--question", help="the question (with --context)")
    parser.add_argument("--context", help="the text to take the answer from (with --question)")
    parser.add_argument("--squad", metavar="FILE", help="evaluate on a SQuAD v1.1 JSON file instead")
    parser.add_argument("--limit", type=positive_int, metavar="N", help="with --squad: only the first N questions")
    for option in fields(QAOptions):
        flag, help = "--" + option.name.replace("_", "-"), option.metadata["help"]
        if isinstance(option.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=option.default, help=help)
        else:
            parser.add_argument(flag, type=int, default=option.default, metavar="N", help=help)
    parser.add_argument("--device", default="cpu", help="cpu (default), auto, cuda, cuda:N or mps")
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=BATCH_SIZE,
        metavar="N",
        help="windows per forward pass (default %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status: 0 done, 2 bad input (said in one line on stderr)."""
    parser = build_parser()
    return run_command(parser.prog, lambda: _run(parser, parser.parse_args(argv)))


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.squad is None and (not args.question or not args.context):
        missing = " and ".join(f"--{name}" for name in ("question", "context") if not getattr(args, name))
        parser.error(f"{missing} missing: give --question and --context, or --squad FILE")
    if args.squad is not None and (args.question or args.context):
        parser.error("give either --question and --context, or --squad FILE, not both")
    if args.limit is not None and args.squad is None:
        parser.error("--limit N needs --squad")
    options = QAOptions(**{option.name: getattr(args, option.name) for option in fields(QAOptions)})
    questions = load_squad(args.squad)[: args.limit] if args.squad is not None else []
    from transformers.utils import logging  # its load report and progress bars would bury the command's output

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    qa = QuestionAnswerer.from_folder(args.model, device=args.device, batch_size=args.batch_size)
    if args.squad is not None:
        scores = evaluate_squad(qa, questions, options, progress=True)
        result: Any = {"squad": args.squad, **asdict(scores)}
        text = f"SQuAD {args.squad}: {scores.questions} questions\nexact_match {scores.exact_match:.2f}\n"
        text += f"f1 {scores.f1:.2f}"
    else:
        result = qa(args.question, args.context, options)
        text = _format_answers(result if isinstance(result, list) else [result])
    print(json.dumps(result, ensure_ascii=False) if args.json else text)
    return 0


def _format_answers(answers: list[Answer]) -> str:
    lines = []
    for rank, answer in enumerate(answers, start=1):
        prefix = f"{rank}. " if len(answers) > 1 else ""
        shown = answer["answer"] or "(no answer)"
        lines.append(f"{prefix}{shown}  (score {answer['score']:.4f}, span {answer['start']}:{answer['end']})")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
