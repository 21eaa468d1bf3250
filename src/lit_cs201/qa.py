"""Extractive question answering from a local model folder, offline.

transformers 5.3 removed ``pipeline("question-answering")``, which the course used. This module does the same
job on ``AutoModelForQuestionAnswering`` and a fast tokenizer, and keeps the old pipeline's option names,
defaults, scores and result shape, so the course's example still reads the same::

    qa = QuestionAnswerer.from_folder("models/roberta-chinese-qa")
    qa("谁是人工智能之父？", "艾伦·图灵是人工智能之父，被誉为计算机科学的奠基人。")
    # {'score': ..., 'start': 0, 'end': 5, 'answer': '艾伦·图灵'}

From the shell::

    python -m lit_cs201.qa --model models/roberta-chinese-qa --question "谁是人工智能之父？" --context "..."
    python -m lit_cs201.qa --model models/distilbert-base-cased-distilled-squad --squad dev-v1.1.json

How an answer is found, per question: the (question, context) pair is cut into windows of at most
``max_seq_len`` tokens that overlap by ``doc_stride`` tokens, so a long context is read in full. In each
window the start and end logits are turned into probabilities by a softmax over the context tokens (plus
``[CLS]``, as the old pipeline did), a span's score is P(start) * P(end), and only spans of context tokens no
longer than ``max_answer_len`` tokens count. The best spans of all windows are ranked together; character
offsets come from the fast tokenizer, so ``context[start:end] == answer`` holds for any script, Chinese
included.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypedDict

import torch

if TYPE_CHECKING:
    from tokenizers import Encoding
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DEFAULT_MAX_SEQ_LEN = 384
DEFAULT_DOC_STRIDE = 128
DEFAULT_MAX_ANSWER_LEN = 15
DEFAULT_TOP_K = 1
DEFAULT_BATCH_SIZE = 32

# The course's two models: local folder name -> Hugging Face Hub id.
COURSE_MODELS = {
    "distilbert-base-cased-distilled-squad": "distilbert/distilbert-base-cased-distilled-squad",
    "roberta-chinese-qa": "uer/roberta-base-chinese-extractive-qa",
}

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
WEIGHT_INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
# Weights transformers 5 can no longer load: it dropped TensorFlow and Flax.
FOREIGN_WEIGHT_FILES = ("tf_model.h5", "flax_model.msgpack")
TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "spm.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)

# A tokenizer that covers less than this share of the model's vocabulary is not the model's tokenizer. Some
# models pad their embedding table beyond the tokenizer (to a multiple of 8 or 64): equality is too strict.
MIN_VOCAB_COVERAGE = 0.9

# The old pipeline masked logits with this value rather than -inf: its exp() is exactly 0 in float32, and a
# window where everything is masked still has a finite softmax.
_MASKED_LOGIT = -10000.0


class QAError(ValueError):
    """Bad input a user can fix: a broken model folder, an unreadable SQuAD file, an impossible option."""


class Answer(TypedDict):
    """One answer, shaped like the old pipeline's: ``context[start:end] == answer``."""

    score: float
    start: int
    end: int
    answer: str


# ----------------------------------------------------------------------------------------------------
# The model folder


def validate_model_folder(folder: str | Path) -> Path:
    """Check that ``folder`` holds a config, weights and tokenizer files before transformers reads it.

    transformers 5 turns several broken folders into silent nonsense (a folder without tokenizer files loads a
    5-token tokenizer with no warning), so the files are checked here, by name.

    Returns:
        The folder as a ``Path``.

    Raises:
        QAError: naming the folder, what is missing, and what to do.
    """
    path = Path(folder).expanduser()
    if not path.exists():
        raise QAError(f"model folder {str(path)!r} does not exist; {_fetch_hint(path)}")
    if not path.is_dir():
        raise QAError(f"model folder {str(path)!r} is a file, not a folder; {_fetch_hint(path)}")

    config_file = path / "config.json"
    if not config_file.is_file():
        raise QAError(f"model folder {str(path)!r} has no config.json; {_fetch_hint(path)}")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise QAError(f"{str(config_file)!r} is not readable JSON ({_one_line(exc)}); {_fetch_hint(path)}") from exc
    if not isinstance(config, dict):
        raise QAError(f"{str(config_file)!r} is not a model config (expected a JSON object); {_fetch_hint(path)}")

    _check_weights(path)

    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise QAError(
            f"model folder {str(path)!r} has no tokenizer files (expected tokenizer.json or a vocabulary "
            f"file: {', '.join(TOKENIZER_FILES[1:])}); without them transformers 5 silently builds a 5-token "
            "tokenizer. "
            "Copy the tokenizer files of the model into the folder, or save them with "
            "AutoTokenizer.from_pretrained(<model id>).save_pretrained(<folder>)"
        )
    return path


def _check_weights(path: Path) -> None:
    if any((path / name).is_file() for name in WEIGHT_FILES):
        return
    for index_name in WEIGHT_INDEX_FILES:
        index_file = path / index_name
        if not index_file.is_file():
            continue
        try:
            weight_map = json.loads(index_file.read_text(encoding="utf-8"))["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (
            OSError,
            UnicodeDecodeError,
            json.JSONDecodeError,
            KeyError,
            TypeError,
            AttributeError,
        ) as exc:
            raise QAError(
                f"{str(index_file)!r} is not a readable weight index ({_one_line(exc)}); {_fetch_hint(path)}"
            ) from exc
        missing = [shard for shard in shards if not (path / shard).is_file()]
        if missing:
            raise QAError(
                f"model folder {str(path)!r} lacks {len(missing)} of the {len(shards)} weight shards listed "
                f"in {index_name} (first missing: {missing[0]}); {_fetch_hint(path)}"
            )
        return
    foreign = [name for name in FOREIGN_WEIGHT_FILES if (path / name).is_file()]
    found = f" (found only {', '.join(foreign)}, which transformers 5 cannot load)" if foreign else ""
    raise QAError(
        f"model folder {str(path)!r} has no PyTorch weights: expected model.safetensors, pytorch_model.bin "
        f"or a sharded *.index.json with its shards{found}; {_fetch_hint(path)}"
    )


def _check_vocab(path: Path, tokenizer_size: int, vocab_size: int | None) -> None:
    if not isinstance(vocab_size, int):
        return  # composite configs keep it elsewhere; the embedding lookup would fail loudly anyway
    if tokenizer_size > vocab_size:
        raise QAError(
            f"model folder {str(path)!r}: the tokenizer has {tokenizer_size} tokens but config.json says "
            f"vocab_size {vocab_size}, so token ids would fall outside the model's embedding table; the "
            "tokenizer files belong to another model: copy the model's own tokenizer files into the folder"
        )
    if tokenizer_size < MIN_VOCAB_COVERAGE * vocab_size:
        raise QAError(
            f"model folder {str(path)!r}: the tokenizer has {tokenizer_size} tokens but config.json says "
            f"vocab_size {vocab_size}; the tokenizer files are incomplete or belong to another model: copy "
            "the model's own tokenizer files (tokenizer.json, tokenizer_config.json, vocab files) into the "
            "folder"
        )


def resolve_device(device: str | torch.device = "cpu") -> torch.device:
    """Turn ``"auto"`` into the best device here (CUDA, then MPS, then CPU); check that others exist."""
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise QAError(f"unknown device {str(device)!r}; use cpu, cuda, cuda:N, mps or auto") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise QAError(f"device {str(device)!r} requested but CUDA is not available here; use cpu or auto")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise QAError(f"device {str(device)!r} requested but MPS is not available here; use cpu or auto")
    return resolved


# ----------------------------------------------------------------------------------------------------
# Scoring spans


def best_spans(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    context_mask: torch.Tensor,
    cls_mask: torch.Tensor,
    max_answer_len: int,
    top_k: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rank the answer spans of a batch of windows the way the old question-answering pipeline did.

    Args:
        start_logits, end_logits: (windows, tokens) model outputs.
        context_mask: (windows, tokens) bool, True where a token belongs to the context (padding is False).
        cls_mask: (windows, tokens) bool, True at ``[CLS]``. The old pipeline kept ``[CLS]`` in the softmax
            (some models put the "no answer" probability there), which lowers every span's score; it is never
            part of an answer, but its own start*end probability is the "no answer" score.
        max_answer_len: longest answer, in tokens.
        top_k: spans to return per window.

    Returns:
        scores, starts, ends: (windows, k), k = min(top_k, tokens**2); a score of -1 marks "no valid span".
        null_scores: (windows,) probability of "no answer" (0 where a window has no ``[CLS]``).
    """
    keep = context_mask | cls_mask
    start = start_logits.float().masked_fill(~keep, _MASKED_LOGIT).softmax(-1)
    end = end_logits.float().masked_fill(~keep, _MASKED_LOGIT).softmax(-1)

    first_cls = cls_mask.int().argmax(-1, keepdim=True)  # argmax of a bool row = its first True
    null_scores = (start.gather(-1, first_cls) * end.gather(-1, first_cls)).squeeze(-1)
    null_scores = null_scores.masked_fill(~cls_mask.any(-1), 0.0)

    spans = start.unsqueeze(-1) * end.unsqueeze(-2)  # (windows, start token, end token)
    positions = torch.arange(spans.shape[-1], device=spans.device)
    length = positions.unsqueeze(0) - positions.unsqueeze(1)  # end - start
    valid = (length >= 0) & (length < max_answer_len)
    valid = valid & context_mask.unsqueeze(-1) & context_mask.unsqueeze(-2)
    spans = spans.masked_fill(~valid, -1.0)

    tokens = spans.shape[-1]
    scores, flat = spans.flatten(1).topk(min(top_k, tokens * tokens), dim=-1)
    return scores, flat // tokens, flat % tokens, null_scores


# ----------------------------------------------------------------------------------------------------
# The answerer


@dataclass(frozen=True)
class _Settings:
    max_seq_len: int
    doc_stride: int
    max_answer_len: int
    top_k: int
    handle_impossible_answer: bool
    align_to_words: bool


class QuestionAnswerer:
    """Extractive question answering with a model fine-tuned for it (SQuAD-style start/end logits).

    Build one with :meth:`from_folder`; call it with a question and a context.

    Args:
        model: a ``*ForQuestionAnswering`` model (anything returning ``start_logits`` and ``end_logits``).
        tokenizer: its fast tokenizer (character offsets and sequence ids need one).
        device: ``"cpu"`` (default), ``"auto"`` (CUDA, then MPS, then CPU), or any torch device string.
        batch_size: windows per forward pass; windows of several questions share a batch.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        device: str | torch.device = "cpu",
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        if not tokenizer.is_fast:
            raise QAError(
                f"{type(tokenizer).__name__} is not a fast tokenizer: extractive QA needs the character "
                "offsets of a fast one; add the model's tokenizer.json or use a tokenizer backed by "
                "`tokenizers`"
            )
        if batch_size < 1:
            raise QAError(f"batch_size must be at least 1, got {batch_size}")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        # Context-first models (XLNet-style) pad on the left; the old pipeline used this same test.
        self.question_first = tokenizer.padding_side == "right"

    @classmethod
    def from_folder(
        cls, folder: str | Path, device: str | torch.device = "cpu", batch_size: int = DEFAULT_BATCH_SIZE
    ) -> QuestionAnswerer:
        """Load a model and its tokenizer from a local folder, never from the network.

        The folder is checked first (see :func:`validate_model_folder`), then the tokenizer against the config
        (fast, vocabulary size), then the weights (a question-answering head must be in them).

        Raises:
            QAError: naming the folder, what is wrong, and what to do.
        """
        from transformers import AutoConfig, AutoModelForQuestionAnswering, AutoTokenizer

        path = validate_model_folder(folder)
        try:
            config = AutoConfig.from_pretrained(path, local_files_only=True)
        except Exception as exc:  # transformers raises ValueError, OSError, KeyError... for a bad config
            raise QAError(f"model folder {str(path)!r}: config.json is not usable ({_one_line(exc)})") from exc
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        except Exception as exc:
            raise QAError(
                f"model folder {str(path)!r}: the tokenizer files do not load ({_one_line(exc)}); copy the "
                "model's own tokenizer files into the folder"
            ) from exc
        if not tokenizer.is_fast:
            raise QAError(
                f"model folder {str(path)!r}: {type(tokenizer).__name__} is not a fast tokenizer, and "
                "extractive QA needs its character offsets; add the model's tokenizer.json, or re-save the "
                "tokenizer with AutoTokenizer.from_pretrained(<model id>).save_pretrained(<folder>)"
            )
        _check_vocab(path, len(tokenizer), getattr(config, "vocab_size", None))
        try:
            model, info = AutoModelForQuestionAnswering.from_pretrained(
                path, config=config, local_files_only=True, output_loading_info=True
            )
        except Exception as exc:
            raise QAError(f"model folder {str(path)!r}: the weights do not load ({_one_line(exc)})") from exc
        # transformers fills missing weights with random ones and only logs it; the answers would look
        # confident and be nonsense, so refuse instead.
        missing = sorted(info.get("missing_keys", ()))
        shown = f"{', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}"
        if any("qa_outputs" in key for key in missing):
            raise QAError(
                f"model folder {str(path)!r} has no trained question-answering head (missing weights: "
                f"{shown}); it is a base model, not one fine-tuned for extractive QA: use e.g. "
                f"{COURSE_MODELS['distilbert-base-cased-distilled-squad']}"
            )
        if missing:
            raise QAError(
                f"model folder {str(path)!r}: the weights lack {len(missing)} tensors the model needs "
                f"({shown}); the weights file is incomplete or belongs to another architecture; "
                f"{_fetch_hint(path)}"
            )
        # float32 whatever the checkpoint holds: half precision is slow or unsupported on CPUs. Cast after
        # loading: the loading keyword is `dtype` in transformers 5 but `torch_dtype` in older 4.x releases.
        return cls(model.float(), tokenizer, device=device, batch_size=batch_size)

    @property
    def max_positions(self) -> int:
        """The longest window the model takes: the tokenizer's or the position table's limit, if smaller."""
        limit = int(min(self.tokenizer.model_max_length, 10**9))  # unset model_max_length is a huge sentinel
        positions = getattr(self.model.config, "max_position_embeddings", None)
        if isinstance(positions, int) and positions > 0:
            limit = min(limit, positions)
        return limit

    def __call__(
        self,
        question: str,
        context: str,
        *,
        max_seq_len: int | None = None,
        doc_stride: int | None = None,
        max_answer_len: int = DEFAULT_MAX_ANSWER_LEN,
        top_k: int = DEFAULT_TOP_K,
        handle_impossible_answer: bool = False,
        align_to_words: bool = True,
    ) -> Answer | list[Answer]:
        """Answer one question from one context, as the old pipeline did.

        Args:
            question: the question.
            context: the text to take the answer from.
            max_seq_len: tokens per window (question + context + special tokens); default 384, or the model's
                limit if that is smaller.
            doc_stride: tokens two neighbouring windows share; default 128, or max_seq_len // 2 if smaller.
            max_answer_len: longest answer, in tokens (default 15).
            top_k: answers to return (default 1).
            handle_impossible_answer: also rank "no answer" (``answer == ""``, start = end = 0), scored by the
                probability of ``[CLS]`` as start and end.
            align_to_words: widen a span that starts or ends inside a word to the whole word, like the old
                pipeline (it cannot cut a word in two).

        Returns:
            With ``top_k == 1`` a dict ``{"score", "start", "end", "answer"}``; otherwise a list of them, best
            first (up to ``top_k``; fewer if the context has fewer distinct spans).
        """
        answers = self.answer_batch(
            [question],
            [context],
            max_seq_len=max_seq_len,
            doc_stride=doc_stride,
            max_answer_len=max_answer_len,
            top_k=top_k,
            handle_impossible_answer=handle_impossible_answer,
            align_to_words=align_to_words,
        )[0]
        # Unlike the old pipeline, top_k > 1 always gives a list, even when only one span was found.
        return answers[0] if top_k == 1 else answers

    def answer_batch(
        self,
        questions: Sequence[str],
        contexts: Sequence[str],
        *,
        max_seq_len: int | None = None,
        doc_stride: int | None = None,
        max_answer_len: int = DEFAULT_MAX_ANSWER_LEN,
        top_k: int = DEFAULT_TOP_K,
        handle_impossible_answer: bool = False,
        align_to_words: bool = True,
    ) -> list[list[Answer]]:
        """Answer many (question, context) pairs; their windows share forward passes.

        Takes the options of :meth:`__call__`. Returns, per pair, its answers best first (a list even when
        ``top_k == 1``).
        """
        if isinstance(questions, str) or isinstance(contexts, str):
            raise QAError("answer_batch takes lists of questions and contexts; call the answerer for one pair")
        if len(questions) != len(contexts):
            raise QAError(f"got {len(questions)} questions but {len(contexts)} contexts")
        # Leading whitespace only adds tokens that could push the context out of every window.
        questions = [question.lstrip() if isinstance(question, str) else question for question in questions]
        for name, texts in (("question", questions), ("context", contexts)):
            for text in texts:
                if not isinstance(text, str) or not text.strip():
                    raise QAError(f"the {name} is empty; give a non-empty {name}")
        if not questions:
            return []
        settings = self._settings(
            max_seq_len, doc_stride, max_answer_len, top_k, handle_impossible_answer, align_to_words
        )
        self._check_question_lengths(questions, settings)

        first, second = (questions, contexts) if self.question_first else (contexts, questions)
        encoded = self.tokenizer(
            list(first),
            list(second),
            truncation="only_second" if self.question_first else "only_first",
            max_length=settings.max_seq_len,
            stride=settings.doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        context_sequence = 1 if self.question_first else 0
        window_owner: list[int] = encoded["overflow_to_sample_mapping"]

        candidates: list[dict[tuple[int, int], float]] = [{} for _ in questions]
        null_scores = [1.0] * len(questions)
        for low in range(0, len(window_owner), self.batch_size):
            windows = range(low, min(low + self.batch_size, len(window_owner)))
            scores, starts, ends, nulls = self._score_windows(encoded, windows, context_sequence, settings)
            for row, window in enumerate(windows):
                owner = window_owner[window]
                null_scores[owner] = min(null_scores[owner], nulls[row])
                encoding: Encoding = encoded.encodings[window]
                for score, start, end in zip(scores[row], starts[row], ends[row], strict=True):
                    if score < 0:
                        break  # the rest are invalid spans too: topk sorts them last
                    span = _char_span(encoding, start, end, context_sequence, contexts[owner], settings)
                    if span is not None and score > candidates[owner].get(span, -1.0):
                        # Overlapping windows find the same span: keep its best score, list it once.
                        candidates[owner][span] = score

        results: list[list[Answer]] = []
        for owner, spans in enumerate(candidates):
            context = contexts[owner]
            answers = [
                Answer(score=score, start=start, end=end, answer=context[start:end])
                for (start, end), score in spans.items()
            ]
            if settings.handle_impossible_answer:
                answers.append(Answer(score=null_scores[owner], start=0, end=0, answer=""))
            answers.sort(key=lambda answer: answer["score"], reverse=True)
            if not answers:
                raise QAError("the context has no tokens an answer could be made of (is it only whitespace?)")
            results.append(answers[: settings.top_k])
        return results

    def _settings(
        self,
        max_seq_len: int | None,
        doc_stride: int | None,
        max_answer_len: int,
        top_k: int,
        handle_impossible_answer: bool,
        align_to_words: bool,
    ) -> _Settings:
        limit = self.max_positions
        if max_seq_len is None:
            max_seq_len = min(DEFAULT_MAX_SEQ_LEN, limit)
        elif max_seq_len > limit:
            raise QAError(f"max_seq_len {max_seq_len} is more than this model takes ({limit} tokens)")
        special = self.tokenizer.num_special_tokens_to_add(pair=True)
        if max_seq_len <= special + 1:
            raise QAError(f"max_seq_len {max_seq_len} leaves no room for a question and a context")
        if doc_stride is None:
            doc_stride = min(DEFAULT_DOC_STRIDE, max_seq_len // 2)
        elif not 0 <= doc_stride < max_seq_len:
            raise QAError(f"doc_stride must be in [0, max_seq_len) = [0, {max_seq_len}), got {doc_stride}")
        if max_answer_len < 1:
            raise QAError(f"max_answer_len must be at least 1, got {max_answer_len}")
        if top_k < 1:
            raise QAError(f"top_k must be at least 1, got {top_k}")
        return _Settings(max_seq_len, doc_stride, max_answer_len, top_k, handle_impossible_answer, align_to_words)

    def _check_question_lengths(self, questions: Sequence[str], settings: _Settings) -> None:
        # The question is never truncated, so it must leave more context room than the windows overlap;
        # the tokenizers library does not raise a Python error for this, it panics.
        special = self.tokenizer.num_special_tokens_to_add(pair=True)
        lengths = [len(ids) for ids in self.tokenizer(list(questions), add_special_tokens=False)["input_ids"]]
        for length in lengths:
            room = settings.max_seq_len - special - length
            if room <= settings.doc_stride:
                raise QAError(
                    f"a question of {length} tokens leaves {max(room, 0)} context tokens per window with "
                    f"max_seq_len {settings.max_seq_len}, not more than doc_stride {settings.doc_stride}; "
                    "shorten the question, raise max_seq_len or lower doc_stride"
                )

    def _score_windows(
        self, encoded: Any, windows: range, context_sequence: int, settings: _Settings
    ) -> tuple[list[list[float]], list[list[int]], list[list[int]], list[float]]:
        width = max(len(encoded["input_ids"][window]) for window in windows)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        # Padding on the right keeps every token at its index in the encoding, whatever the tokenizer's side.
        columns: dict[str, torch.Tensor] = {}
        for name in ("input_ids", "attention_mask", "token_type_ids"):
            if name not in encoded:
                continue
            fill = pad_id if name == "input_ids" else 0
            column = torch.full((len(windows), width), fill, dtype=torch.long)
            for row, window in enumerate(windows):
                values = encoded[name][window]
                column[row, : len(values)] = torch.tensor(values, dtype=torch.long)
            columns[name] = column
        context_mask = torch.zeros((len(windows), width), dtype=torch.bool)
        for row, window in enumerate(windows):
            ids = encoded.sequence_ids(window)
            context_mask[row, : len(ids)] = torch.tensor([sid == context_sequence for sid in ids])
        cls_id = self.tokenizer.cls_token_id
        cls_mask = columns["input_ids"] == cls_id if cls_id is not None else torch.zeros_like(context_mask)

        accepted = inspect.signature(self.model.forward).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
        inputs = {name: tensor.to(self.device) for name, tensor in columns.items() if takes_any or name in accepted}
        with torch.inference_mode():
            output = self.model(**inputs)
            scores, starts, ends, nulls = best_spans(
                output.start_logits,
                output.end_logits,
                context_mask.to(self.device),
                cls_mask.to(self.device),
                settings.max_answer_len,
                settings.top_k,
            )
        return scores.tolist(), starts.tolist(), ends.tolist(), nulls.tolist()


def _char_span(
    encoding: Encoding, start: int, end: int, sequence: int, context: str, settings: _Settings
) -> tuple[int, int] | None:
    char_start, char_end = encoding.offsets[start][0], encoding.offsets[end][1]
    if settings.align_to_words:
        start_word, end_word = encoding.token_to_word(start), encoding.token_to_word(end)
        if start_word is not None and end_word is not None:
            first = encoding.word_to_chars(start_word, sequence)
            last = encoding.word_to_chars(end_word, sequence)
            if first is not None and last is not None:
                char_start, char_end = first[0], last[1]
    # Some tokenizers (byte-level BPE) count a leading space as part of a token.
    while char_start < char_end and context[char_start].isspace():
        char_start += 1
    while char_end > char_start and context[char_end - 1].isspace():
        char_end -= 1
    return (char_start, char_end) if char_start < char_end else None


# ----------------------------------------------------------------------------------------------------
# SQuAD v1.1 evaluation


@dataclass(frozen=True)
class SquadQuestion:
    """One question of a SQuAD file with its context and reference answers."""

    id: str
    question: str
    context: str
    answers: tuple[str, ...]
    answer_starts: tuple[int, ...]


def load_squad(path: str | Path) -> list[SquadQuestion]:
    """Read a SQuAD v1.1 JSON file (``data`` -> ``paragraphs`` -> ``qas`` with ``answers``).

    A question with no reference answers (SQuAD v2's unanswerable ones) gets ``""`` as its only answer, as the
    official v2 script scores it: only an empty prediction is right.

    Raises:
        QAError: naming the file and what is wrong with it.
    """
    path = Path(path).expanduser()
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise QAError(f"SQuAD file {str(path)!r} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise QAError(f"cannot read SQuAD file {str(path)!r}: {_one_line(exc)}") from exc
    except json.JSONDecodeError as exc:
        raise QAError(f"SQuAD file {str(path)!r} is not valid JSON: {_one_line(exc)}") from exc

    expected = "expected {'data': [{'paragraphs': [{'context': str, 'qas': [{'id', 'question', 'answers'}]}]}]}"
    questions: list[SquadQuestion] = []
    try:
        for article in document["data"]:
            for paragraph in article["paragraphs"]:
                context = paragraph["context"]
                for qa in paragraph["qas"]:
                    answers = qa.get("answers") or []
                    texts = tuple(str(answer["text"]) for answer in answers) or ("",)
                    starts = tuple(int(answer.get("answer_start", -1)) for answer in answers) or (-1,)
                    questions.append(
                        SquadQuestion(
                            id=str(qa.get("id", len(questions))),
                            question=str(qa["question"]),
                            context=str(context),
                            answers=texts,
                            answer_starts=starts,
                        )
                    )
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise QAError(f"SQuAD file {str(path)!r} is not SQuAD v1.1 JSON ({_one_line(exc)}); {expected}") from exc
    if not questions:
        raise QAError(f"SQuAD file {str(path)!r} holds no questions; {expected}")
    return questions


@dataclass(frozen=True)
class SquadScores:
    """Exact match and F1 in percent, over ``questions`` questions."""

    exact_match: float
    f1: float
    questions: int


def evaluate_squad(
    qa: QuestionAnswerer,
    questions: Sequence[SquadQuestion],
    *,
    chunk_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
    **options: Any,
) -> SquadScores:
    """Exact match and F1 (0-100, SQuAD v1.1 definitions, ``torchmetrics.text.SQuAD``) of the best answers.

    F1 counts whitespace-separated words, as the official script does, so for Chinese text (no spaces) it is
    all-or-nothing per answer, close to exact match.

    Args:
        qa: the answerer.
        questions: from :func:`load_squad` (slice it to evaluate fewer).
        chunk_size: questions tokenised and answered together.
        progress: called with (questions done, total) after each chunk.
        options: answer options (``max_seq_len``, ``doc_stride``, ``max_answer_len``,
            ``handle_impossible_answer``, ``align_to_words``).

    """
    from torchmetrics.text import SQuAD

    if not questions:
        raise QAError("no SQuAD questions to evaluate")
    metric = SQuAD()
    for low in range(0, len(questions), chunk_size):
        chunk = questions[low : low + chunk_size]
        answers = qa.answer_batch([q.question for q in chunk], [q.context for q in chunk], top_k=1, **options)
        metric.update(
            [{"prediction_text": best[0]["answer"], "id": q.id} for q, best in zip(chunk, answers, strict=True)],
            [{"answers": {"text": list(q.answers), "answer_start": list(q.answer_starts)}, "id": q.id} for q in chunk],
        )
        if progress is not None:
            progress(low + len(chunk), len(questions))
    scores = metric.compute()
    return SquadScores(float(scores["exact_match"]), float(scores["f1"]), len(questions))


# ----------------------------------------------------------------------------------------------------
# Command line


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, like the errors of bad input below, instead of argparse's usage block.
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m lit_cs201.qa`` command line."""
    parser = _Parser(
        prog="python -m lit_cs201.qa",
        description="Extractive question answering from a local model folder (offline), or SQuAD v1.1 "
        "evaluation. Fetch the course's models with: "
        + "; ".join(f"hf download {hub_id} --local-dir models/{name}" for name, hub_id in COURSE_MODELS.items()),
    )
    parser.add_argument("--model", required=True, metavar="DIR", help="local model folder")
    parser.add_argument("--question", help="the question (with --context)")
    parser.add_argument("--context", help="the text to take the answer from (with --question)")
    parser.add_argument("--squad", metavar="FILE", help="evaluate on a SQuAD v1.1 JSON file instead")
    parser.add_argument("--limit", type=int, metavar="N", help="with --squad: only the first N questions")
    # The old pipeline's options, with its defaults.
    parser.add_argument(
        "--max-seq-len", type=int, metavar="N", help="tokens per window (default 384, or the model's limit)"
    )
    parser.add_argument("--doc-stride", type=int, metavar="N", help="tokens neighbouring windows share (default 128)")
    parser.add_argument(
        "--max-answer-len",
        type=int,
        default=DEFAULT_MAX_ANSWER_LEN,
        metavar="N",
        help="longest answer in tokens (default 15)",
    )
    parser.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, metavar="K", help="answers (default 1)")
    parser.add_argument("--handle-impossible-answer", action="store_true", help='allow "no answer" (an empty answer)')
    parser.add_argument(
        "--no-align-to-words", dest="align_to_words", action="store_false", help="keep spans inside words"
    )
    parser.add_argument("--device", default="cpu", help="cpu (default), auto, cuda, cuda:N or mps")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        metavar="N",
        help="windows per forward pass (32)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 bad input or model folder, 2 bad usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.squad is None and (not args.question or not args.context):
        missing = " and ".join(f"--{name}" for name in ("question", "context") if not getattr(args, name))
        parser.error(f"{missing} missing: give --question and --context, or --squad FILE")
    if args.squad is not None and (args.question or args.context):
        parser.error("give either --question and --context, or --squad FILE, not both")
    if args.limit is not None and (args.squad is None or args.limit < 1):
        parser.error("--limit N needs --squad and N >= 1")

    options: dict[str, Any] = {
        "max_seq_len": args.max_seq_len,
        "doc_stride": args.doc_stride,
        "max_answer_len": args.max_answer_len,
        "handle_impossible_answer": args.handle_impossible_answer,
        "align_to_words": args.align_to_words,
    }
    try:
        questions = load_squad(args.squad)[: args.limit] if args.squad is not None else []
        _quiet_transformers()
        qa = QuestionAnswerer.from_folder(args.model, device=args.device, batch_size=args.batch_size)
        if args.squad is not None:
            scores = evaluate_squad(qa, questions, progress=_progress_printer(), **options)
            result: Any = {"squad": args.squad, **asdict(scores)}
            text = (
                f"SQuAD {args.squad}: {scores.questions} questions\n"
                f"exact_match {scores.exact_match:.2f}\nf1 {scores.f1:.2f}"
            )
        else:
            result = qa(args.question, args.context, top_k=args.top_k, **options)
            text = _format_answers(result if isinstance(result, list) else [result])
    except QAError as exc:
        print(f"{parser.prog}: error: {_one_line(exc, limit=2000)}", file=sys.stderr)
        return 1
    print(json.dumps(result, ensure_ascii=False) if args.json else text)
    return 0


def _format_answers(answers: list[Answer]) -> str:
    lines = []
    for rank, answer in enumerate(answers, start=1):
        shown = answer["answer"] if answer["answer"] else "(no answer)"
        prefix = f"{rank}. " if len(answers) > 1 else ""
        lines.append(f"{prefix}{shown}  (score {answer['score']:.4f}, span {answer['start']}:{answer['end']})")
    return "\n".join(lines)


def _progress_printer() -> Callable[[int, int], None]:
    printed = [0]  # tenths of the way already reported

    def report(done: int, total: int) -> None:
        # About every tenth of the way, on stderr so that stdout holds only the result.
        tenths = done * 10 // total
        if tenths > printed[0]:
            printed[0] = tenths
            print(f"{done}/{total} questions", file=sys.stderr, flush=True)

    return report


def _quiet_transformers() -> None:
    # The command prints its own messages; transformers 5's weight-loading progress bar and load report would
    # bury them (and the load report's content is checked by from_folder).
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def _fetch_hint(folder: Path) -> str:
    hub_id = COURSE_MODELS.get(folder.name, "<model id>")
    return (
        f"fetch the model on a machine with network (`hf download {hub_id} --local-dir {folder}`, see "
        "docs/qa.md) and copy the whole folder here"
    )


def _one_line(exc: BaseException, limit: int = 300) -> str:
    # Errors of other libraries can span many lines (transformers prints tables); keep their gist.
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


if __name__ == "__main__":
    sys.exit(main())
