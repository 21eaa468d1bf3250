"""Extractive question answering on ``AutoModelForQuestionAnswering`` and a fast tokenizer: the old pipeline's job.

    question, context ──tokenizer (doc-stride windows, offsets)──▶ model ──best_spans──▶ character spans ──▶ Answer

transformers 5.3 removed ``pipeline("question-answering")``, which the course used; `QuestionAnswerer` does what it
did, with its options (`QAOptions`), scores and result shape. `lit_cs201.course.qa` is its command.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from lit_cs201.course.devices import resolve_device
from lit_cs201.course.qa_folder import check_tokenizer, load_model_folder
from lit_cs201.errors import UserError, check_range

if TYPE_CHECKING:
    from tokenizers import Encoding
    from transformers import BatchEncoding, PreTrainedModel, PreTrainedTokenizerBase

DEFAULT_MAX_SEQ_LEN, DEFAULT_DOC_STRIDE = 384, 128
BATCH_SIZE = 32  # windows per forward pass, by default
# The old pipeline's mask, not -inf: its exp() is exactly 0 in float32, yet an all-masked window has a finite softmax.
_MASKED_LOGIT = -10000.0


def _option(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class QAOptions:
    """How answers are found: the old pipeline's options and defaults (each field's ``help`` is its ``--help``)."""

    max_seq_len: int | None = _option(None, "tokens per window, specials included (default 384 or the model's limit)")
    doc_stride: int | None = _option(None, "tokens neighbouring windows share (default 128 or max_seq_len // 2)")
    max_answer_len: int = _option(15, "longest answer, in tokens (default %(default)s)")
    top_k: int = _option(1, "answers: one dict for 1, else a list, best first (default %(default)s)")
    handle_impossible_answer: bool = _option(False, 'also rank "no answer" ("" at 0:0), scored by P([CLS])')
    align_to_words: bool = _option(True, "widen a span that cuts a word to the whole word (default on)")


class Answer(TypedDict):
    """One answer, shaped like the old pipeline's: ``context[start:end] == answer``."""

    score: float
    start: int
    end: int
    answer: str


def best_spans(
    start_logits: Tensor, end_logits: Tensor, context_mask: Tensor, cls_mask: Tensor, max_answer_len: int, top_k: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The ``top_k`` best spans of each window (inputs are (windows, tokens)), scored as the old pipeline did: a
    softmax over the context tokens and ``[CLS]`` (where some models put "no answer") gives P(start) and P(end), a
    span scores P(start) * P(end), and only spans of context tokens at most ``max_answer_len`` long count.

    Returns scores, starts, ends: (windows, min(top_k, tokens**2)), best first, -1 for "no valid span"; and the
    "no answer" scores P(start = end = ``[CLS]``): (windows,), 0 without a ``[CLS]``."""
    keep = context_mask | cls_mask
    start = start_logits.float().masked_fill(~keep, _MASKED_LOGIT).softmax(-1)
    end = end_logits.float().masked_fill(~keep, _MASKED_LOGIT).softmax(-1)

    first_cls = cls_mask.int().argmax(-1, keepdim=True)  # argmax of a bool row = its first True
    null_scores = (start.gather(-1, first_cls) * end.gather(-1, first_cls)).squeeze(-1)
    null_scores = null_scores.masked_fill(~cls_mask.any(-1), 0.0)

    spans = start.unsqueeze(-1) * end.unsqueeze(-2)  # (windows, start token, end token)
    positions = torch.arange(spans.shape[-1], device=spans.device)
    length = positions.unsqueeze(0) - positions.unsqueeze(1)  # end - start
    valid = (length >= 0) & (length < max_answer_len) & context_mask.unsqueeze(-1) & context_mask.unsqueeze(-2)
    spans = spans.masked_fill(~valid, -1.0)

    tokens = spans.shape[-1]
    scores, flat = spans.flatten(1).topk(min(top_k, tokens * tokens), dim=-1)
    return scores, flat // tokens, flat % tokens, null_scores


class QuestionAnswerer:
    """Extractive question answering with a ``*ForQuestionAnswering`` model (anything returning ``start_logits``
    and ``end_logits``) and its fast tokenizer, on ``device`` (``"auto"``: CUDA, then MPS, then CPU; default CPU),
    ``batch_size`` windows (of one question or several) per forward pass."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        device: str = "cpu",
        batch_size: int = BATCH_SIZE,
    ) -> None:
        check_tokenizer(tokenizer)
        check_range("batch_size", batch_size, 1)
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        # Context-first models (XLNet-style) pad on the left; the old pipeline used this same test.
        self.question_first = tokenizer.padding_side == "right"

    @classmethod
    def from_folder(cls, folder: str | Path, device: str = "cpu", batch_size: int = BATCH_SIZE) -> QuestionAnswerer:
        """Load a model and its tokenizer from a local folder, never the network, after checking the files
        (`lit_cs201.course.qa_folder.load_model_folder`)."""
        model, tokenizer = load_model_folder(folder)
        return cls(model, tokenizer, device=device, batch_size=batch_size)

    def __call__(
        self, question: str, context: str, options: QAOptions | None = None, **overrides: Any
    ) -> Answer | list[Answer]:
        """Answer one question from one context with ``options``, with any fields changed by ``overrides`` (e.g.
        ``top_k=3``): a dict ``{"score", "start", "end", "answer"}`` for ``top_k == 1``, else a list of them, best
        first (fewer than ``top_k`` if the context has fewer distinct spans)."""
        options = replace(options or QAOptions(), **overrides)
        answers = self.answer_batch([question], [context], options)[0]
        # Unlike the old pipeline, top_k > 1 always gives a list, even when only one span was found.
        return answers[0] if options.top_k == 1 else answers

    def answer_batch(
        self, questions: Sequence[str], contexts: Sequence[str], options: QAOptions | None = None, **overrides: Any
    ) -> list[list[Answer]]:
        """Answer many (question, context) pairs, their windows sharing forward passes; options as for a call.
        Returns, per pair, its answers best first (a list even when ``top_k == 1``)."""
        if isinstance(questions, str) or isinstance(contexts, str):
            raise UserError("answer_batch takes lists of questions and contexts; call the answerer for one pair")
        if len(questions) != len(contexts):
            raise UserError(f"got {len(questions)} questions but {len(contexts)} contexts")
        # Leading whitespace only adds tokens that could push the context out of every window.
        questions = [question.lstrip() if isinstance(question, str) else question for question in questions]
        for name, texts in (("question", questions), ("context", contexts)):
            if any(not isinstance(text, str) or not text.strip() for text in texts):
                raise UserError(f"the {name} is empty; give a non-empty {name}")
        if not questions:
            return []
        options = self._resolve(replace(options or QAOptions(), **overrides), questions)

        first, second = (questions, contexts) if self.question_first else (contexts, questions)
        encoded = self.tokenizer(
            list(first),
            list(second),
            truncation="only_second" if self.question_first else "only_first",
            max_length=options.max_seq_len,
            stride=options.doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        in_context = 1 if self.question_first else 0
        owners: list[int] = encoded["overflow_to_sample_mapping"]
        spans: list[dict[tuple[int, int], float]] = [{} for _ in questions]
        null_scores = [1.0] * len(questions)
        for low in range(0, len(owners), self.batch_size):
            windows = range(low, min(low + self.batch_size, len(owners)))
            scores, starts, ends, nulls = self._score_windows(encoded, windows, in_context, options)
            for row, window in enumerate(windows):
                owner = owners[window]
                null_scores[owner] = min(null_scores[owner], nulls[row])
                for score, start, end in zip(scores[row], starts[row], ends[row], strict=True):
                    if score < 0:
                        break  # the rest are invalid spans too: topk sorts them last
                    encoding, context = encoded.encodings[window], contexts[owner]
                    span = _char_span(encoding, start, end, in_context, context, options.align_to_words)
                    if span is not None and score > spans[owner].get(span, -1.0):
                        spans[owner][span] = score  # overlapping windows find the same span: list it once

        results: list[list[Answer]] = []
        for found, context, null_score in zip(spans, contexts, null_scores, strict=True):
            answers = [Answer(score=score, start=a, end=b, answer=context[a:b]) for (a, b), score in found.items()]
            if options.handle_impossible_answer:
                answers.append(Answer(score=null_score, start=0, end=0, answer=""))
            if not answers:
                raise UserError("the context has no tokens an answer could be made of (is it only whitespace?)")
            results.append(sorted(answers, key=lambda answer: answer["score"], reverse=True)[: options.top_k])
        return results

    def _resolve(self, options: QAOptions, questions: Sequence[str]) -> QAOptions:
        """``options`` with the window sizes filled in; refuses what the model or a question cannot take."""
        positions = getattr(self.model.config, "max_position_embeddings", None) or 10**9
        limit = int(min(self.tokenizer.model_max_length, positions, 10**9))  # an unset model_max_length is huge
        max_seq_len = min(DEFAULT_MAX_SEQ_LEN, limit) if options.max_seq_len is None else options.max_seq_len
        if max_seq_len > limit:
            raise UserError(f"max_seq_len {max_seq_len} is more than this model takes ({limit} tokens)")
        special = self.tokenizer.num_special_tokens_to_add(pair=True)
        if max_seq_len <= special + 1:
            raise UserError(f"max_seq_len {max_seq_len} leaves no room for a question and a context")
        doc_stride = min(DEFAULT_DOC_STRIDE, max_seq_len // 2) if options.doc_stride is None else options.doc_stride
        check_range("doc_stride", doc_stride, 0, below=max_seq_len, hint="windows must move on")
        check_range("max_answer_len", options.max_answer_len, 1)
        check_range("top_k", options.top_k, 1)
        # The question is never truncated: it must leave more room than the windows overlap, or tokenizers panics.
        for ids in self.tokenizer(list(questions), add_special_tokens=False)["input_ids"]:
            if (room := max_seq_len - special - len(ids)) <= doc_stride:
                raise UserError(
                    f"a question of {len(ids)} tokens leaves {max(room, 0)} context tokens per window with "
                    f"max_seq_len {max_seq_len}, not more than doc_stride {doc_stride}; shorten the question, raise "
                    "max_seq_len or lower doc_stride"
                )
        return replace(options, max_seq_len=max_seq_len, doc_stride=doc_stride)

    def _score_windows(
        self, encoded: BatchEncoding, windows: range, in_context: int, options: QAOptions
    ) -> tuple[list[list[float]], list[list[int]], list[list[int]], list[float]]:
        batch = {name: encoded[name][windows.start : windows.stop] for name in self.tokenizer.model_input_names}
        # Padding on the right keeps every token at its index in the encoding, whatever the tokenizer's side.
        inputs = self.tokenizer.pad(batch, padding_side="right", return_tensors="pt").to(self.device)
        in_contexts = [torch.tensor([sid == in_context for sid in encoded.sequence_ids(w)]) for w in windows]
        context_mask = pad_sequence(in_contexts, batch_first=True).to(self.device)
        cls_id = self.tokenizer.cls_token_id
        cls_mask = inputs["input_ids"] == cls_id if cls_id is not None else torch.zeros_like(context_mask)
        with torch.inference_mode():
            output = self.model(**inputs)
            scores, starts, ends, nulls = best_spans(
                output.start_logits, output.end_logits, context_mask, cls_mask, options.max_answer_len, options.top_k
            )
        return scores.tolist(), starts.tolist(), ends.tolist(), nulls.tolist()


def _char_span(encoding: Encoding, start: int, end: int, seq: int, context: str, words: bool) -> tuple[int, int] | None:
    char_start, char_end = encoding.offsets[start][0], encoding.offsets[end][1]
    start_word, end_word = encoding.token_to_word(start), encoding.token_to_word(end)
    if words and start_word is not None and end_word is not None:
        first, last = encoding.word_to_chars(start_word, seq), encoding.word_to_chars(end_word, seq)
        if first is not None and last is not None:
            char_start, char_end = first[0], last[1]
    # Some tokenizers (byte-level BPE) count a leading space as part of a token.
    while char_start < char_end and context[char_start].isspace():
        char_start += 1
    while char_end > char_start and context[char_end - 1].isspace():
        char_end -= 1
    return (char_start, char_end) if char_start < char_end else None
