"""Extractive question answering (`lit_cs201.course.qa`) on a tiny model built here: no download, no network.

A randomly initialised model checks the mechanics (offsets, windows, ranking, scores); an "oracle" stand-in
whose logits point at chosen tokens checks that the right span is found where the answer is known.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, fields, replace
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import BertConfig, BertForQuestionAnswering, BertModel, BertTokenizerFast
from transformers.modeling_outputs import QuestionAnsweringModelOutput

from lit_cs201.course.qa import build_parser, main
from lit_cs201.course.qa_answerer import QAOptions, QuestionAnswerer, best_spans
from lit_cs201.course.qa_folder import validate_model_folder
from lit_cs201.course.squad import evaluate_squad, load_squad
from lit_cs201.errors import UserError

EN_QUESTION = "What is the capital of France?"
EN_CONTEXT = "Paris is the capital of France. Alan Turing is the father of artificial intelligence."
ZH_QUESTION = "谁是人工智能之父？"
ZH_CONTEXT = "艾伦·图灵是人工智能之父，被誉为计算机科学的奠基人。"
FILLER = "The cat sat on the mat and the dog slept in the sun. "
CORPUS = [
    EN_QUESTION,
    EN_CONTEXT,
    FILLER,
    "Who is the father of artificial intelligence? Where is Paris? Is Paris the capital?",
    ZH_QUESTION,
    ZH_CONTEXT,
    "北京是中国的首都。计算机科学研究计算。",
]
POSITIONS = 128  # the tiny model's max_position_embeddings, so also its longest window


# ---------------------------------------------------------------------------------------------------------
# The tiny model


def _train_tokenizer() -> BertTokenizerFast:
    # BERT's own recipe: the normalizer puts spaces around CJK characters, so Chinese is split per character.
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=False, handle_chinese_chars=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=400, special_tokens=specials))
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return BertTokenizerFast(tokenizer_object=tokenizer, do_lower_case=False)


def _tiny_config(vocab_size: int) -> BertConfig:
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=POSITIONS,
    )


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("qa_model")
    tokenizer = _train_tokenizer()
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    BertForQuestionAnswering(_tiny_config(len(tokenizer))).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def qa(model_dir: Path) -> QuestionAnswerer:
    return QuestionAnswerer.from_folder(model_dir)


class OracleQA(torch.nn.Module):
    """Stands in for a trained model: logit 10 on the chosen start/end tokens, 0 everywhere else."""

    def __init__(self, config: BertConfig, start_ids: list[int], end_ids: list[int]) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("start_ids", torch.tensor(start_ids))
        self.register_buffer("end_ids", torch.tensor(end_ids))

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> QuestionAnsweringModelOutput:
        start = torch.isin(input_ids, self.start_ids).float() * 10
        end = torch.isin(input_ids, self.end_ids).float() * 10
        return QuestionAnsweringModelOutput(start_logits=start, end_logits=end)


def oracle(qa: QuestionAnswerer, start: str, end: str) -> QuestionAnswerer:
    """An answerer whose model points at the tokens ``start`` and ``end`` (wherever they are)."""
    ids = qa.tokenizer.convert_tokens_to_ids([start, end])
    assert qa.tokenizer.unk_token_id not in ids, (start, end)
    return QuestionAnswerer(OracleQA(qa.model.config, [ids[0]], [ids[1]]), qa.tokenizer)


def n_windows(qa: QuestionAnswerer, question: str, context: str, max_seq_len: int, doc_stride: int) -> int:
    encoded = qa.tokenizer(
        question,
        context,
        truncation="only_second",
        max_length=max_seq_len,
        stride=doc_stride,
        return_overflowing_tokens=True,
    )
    return len(encoded["input_ids"])


# ---------------------------------------------------------------------------------------------------------
# Answers


@pytest.mark.parametrize(("question", "context"), [(EN_QUESTION, EN_CONTEXT), (ZH_QUESTION, ZH_CONTEXT)])
def test_answer_is_a_scored_span_of_the_context(qa: QuestionAnswerer, question: str, context: str) -> None:
    answer = qa(question, context)
    assert isinstance(answer, dict)
    assert set(answer) == {"score", "start", "end", "answer"}
    assert isinstance(answer["score"], float) and 0.0 < answer["score"] <= 1.0
    assert isinstance(answer["start"], int) and isinstance(answer["end"], int)
    assert 0 <= answer["start"] < answer["end"] <= len(context)
    assert context[answer["start"] : answer["end"]] == answer["answer"]


def test_chinese_answer_has_character_offsets(qa: QuestionAnswerer) -> None:
    answer = oracle(qa, "艾", "灵")(ZH_QUESTION, ZH_CONTEXT)
    assert {k: answer[k] for k in ("start", "end", "answer")} == {"start": 0, "end": 5, "answer": "艾伦·图灵"}


def test_score_is_the_old_pipelines_probability(qa: QuestionAnswerer) -> None:
    # Softmax over the 26 context characters plus [CLS] (the old pipeline kept it), start x end probability.
    answer = oracle(qa, "艾", "灵")(ZH_QUESTION, ZH_CONTEXT)
    p = math.exp(10) / (math.exp(10) + len(ZH_CONTEXT))
    assert answer["score"] == pytest.approx(p * p, rel=1e-5)


def test_scores_match_the_old_pipeline_code(qa: QuestionAnswerer) -> None:
    # transformers 5 keeps the old span decoder in the document-QA pipeline: compare against it directly.
    reference = pytest.importorskip("transformers.pipelines.document_question_answering")
    encoded = qa.tokenizer(ZH_QUESTION, ZH_CONTEXT, return_tensors="pt")
    with torch.inference_mode():
        output = qa.model(**encoded)
    p_mask = [sid != 1 for sid in encoded.sequence_ids(0)]
    p_mask[0] = False  # the old pipeline kept [CLS] in the softmax
    starts, ends, scores, _ = reference.select_starts_ends(
        output.start_logits.numpy(),
        output.end_logits.numpy(),
        p_mask,
        encoded["attention_mask"].numpy(),
        top_k=5,
        max_answer_len=15,
    )
    offsets = encoded.encodings[0].offsets
    expected = [(offsets[s][0], offsets[e][1], float(score)) for s, e, score in zip(starts, ends, scores, strict=True)]
    answers = qa(ZH_QUESTION, ZH_CONTEXT, top_k=5)
    assert [(a["start"], a["end"]) for a in answers] == [(s, e) for s, e, _ in expected]
    assert [a["score"] for a in answers] == pytest.approx([score for _, _, score in expected], rel=1e-5)


def test_answer_never_comes_from_the_question(qa: QuestionAnswerer) -> None:
    # "Paris" is in the question and near the end of the context; only the context one may be picked.
    question = "Where is Paris?"
    context = FILLER + EN_CONTEXT
    answer = oracle(qa, "Paris", "Paris")(question, context)
    assert (answer["start"], answer["answer"]) == (context.index("Paris"), "Paris")
    # And a token found only in the question does not drag the answer out of the context.
    answer = oracle(qa, "Where", "Where")(question, ZH_CONTEXT)
    assert ZH_CONTEXT[answer["start"] : answer["end"]] == answer["answer"] != ""


def test_long_context_is_read_in_overlapping_windows(qa: QuestionAnswerer) -> None:
    context = FILLER * 12 + EN_CONTEXT
    assert n_windows(qa, EN_QUESTION, context, max_seq_len=32, doc_stride=8) > 5
    answer = oracle(qa, "Paris", "France")(EN_QUESTION, context, max_seq_len=32, doc_stride=8)
    assert answer["answer"] == "Paris is the capital of France"
    assert answer["start"] == context.index("Paris")
    # The default window (the tiny model's 128 positions) needs more than one window too.
    assert n_windows(qa, EN_QUESTION, context, max_seq_len=POSITIONS, doc_stride=64) > 1
    answer = oracle(qa, "Paris", "France")(EN_QUESTION, context)
    assert answer["answer"] == "Paris is the capital of France"


def test_long_chinese_context_keeps_character_offsets(qa: QuestionAnswerer) -> None:
    context = "北京是中国的首都。" * 30 + ZH_CONTEXT
    assert n_windows(qa, ZH_QUESTION, context, max_seq_len=48, doc_stride=16) > 3
    answer = oracle(qa, "艾", "灵")(ZH_QUESTION, context, max_seq_len=48, doc_stride=16)
    assert (answer["start"], answer["end"], answer["answer"]) == (270, 275, "艾伦·图灵")
    random_model = qa(ZH_QUESTION, context, max_seq_len=48, doc_stride=16, top_k=3)
    assert all(context[a["start"] : a["end"]] == a["answer"] for a in random_model)


def test_top_k_gives_k_distinct_answers_best_first(qa: QuestionAnswerer) -> None:
    answers = qa(ZH_QUESTION, ZH_CONTEXT * 8, top_k=5, max_seq_len=40, doc_stride=20)
    assert isinstance(answers, list) and len(answers) == 5
    scores = [a["score"] for a in answers]
    assert scores == sorted(scores, reverse=True)
    assert len({(a["start"], a["end"]) for a in answers}) == 5  # overlapping windows do not repeat a span
    best = qa(ZH_QUESTION, ZH_CONTEXT * 8, max_seq_len=40, doc_stride=20)
    assert best == answers[0]


@pytest.mark.parametrize("max_answer_len", [1, 2, 4])
def test_max_answer_len_is_respected(qa: QuestionAnswerer, max_answer_len: int) -> None:
    # One token per Chinese character, so the answer's length in characters is its length in tokens.
    answers = qa(ZH_QUESTION, ZH_CONTEXT, top_k=20, max_answer_len=max_answer_len)
    assert answers and all(1 <= len(a["answer"]) <= max_answer_len for a in answers)
    # With a model that wants "Paris ... France" (6 tokens), a limit of 3 cuts the span short.
    answer = oracle(qa, "Paris", "France")(EN_QUESTION, EN_CONTEXT, max_answer_len=3)
    assert answer["start"] == 0 and len(qa.tokenizer.tokenize(answer["answer"])) <= 3


def test_handle_impossible_answer(qa: QuestionAnswerer) -> None:
    no_answer = oracle(qa, "[CLS]", "[CLS]")
    answer = no_answer(EN_QUESTION, EN_CONTEXT, handle_impossible_answer=True)
    assert answer == {"score": pytest.approx(answer["score"]), "start": 0, "end": 0, "answer": ""}
    assert answer["score"] > 0.9
    assert no_answer(EN_QUESTION, EN_CONTEXT)["answer"] != ""


def test_answer_batch_matches_single_calls(qa: QuestionAnswerer) -> None:
    batch = qa.answer_batch([EN_QUESTION, ZH_QUESTION], [EN_CONTEXT, ZH_CONTEXT])
    singles = [qa(EN_QUESTION, EN_CONTEXT), qa(ZH_QUESTION, ZH_CONTEXT)]
    # The same spans; scores equal up to float rounding (a padded batch sums in another order).
    for answers, single in zip(batch, singles, strict=True):
        assert answers[0] == {**single, "score": pytest.approx(single["score"], rel=1e-5)}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_seq_len": POSITIONS + 1}, "more than this model takes"),
        ({"max_seq_len": 32, "doc_stride": 32}, "doc_stride"),
        ({"top_k": 0}, "top_k"),
        ({"max_answer_len": 0}, "max_answer_len"),
        ({"max_seq_len": 16, "doc_stride": 8}, "shorten the question"),
    ],
)
def test_bad_options_are_refused(qa: QuestionAnswerer, options: dict[str, int], message: str) -> None:
    with pytest.raises(UserError, match=message):
        qa(EN_QUESTION, EN_CONTEXT, **options)


def test_options_object_and_keywords_agree(qa: QuestionAnswerer) -> None:
    options = QAOptions(top_k=3, max_answer_len=2)
    assert qa(ZH_QUESTION, ZH_CONTEXT, options) == qa(ZH_QUESTION, ZH_CONTEXT, top_k=3, max_answer_len=2)
    assert qa(ZH_QUESTION, ZH_CONTEXT, options, top_k=1) == qa(ZH_QUESTION, ZH_CONTEXT, max_answer_len=2)


def test_command_line_options_are_the_qa_options() -> None:
    args = build_parser().parse_args(["--model", "m", "--top-k", "3", "--no-align-to-words"])
    expected = replace(QAOptions(), top_k=3, align_to_words=False)
    assert {option.name: getattr(args, option.name) for option in fields(QAOptions)} == asdict(expected)


@pytest.mark.parametrize(("question", "context"), [("", EN_CONTEXT), (EN_QUESTION, "  ")])
def test_empty_question_or_context_is_refused(qa: QuestionAnswerer, question: str, context: str) -> None:
    with pytest.raises(UserError, match="empty"):
        qa(question, context)


def test_best_spans_masks_non_context_tokens() -> None:
    logits = torch.tensor([[5.0, 9.0, 1.0, 2.0, 9.0]])
    context = torch.tensor([[False, False, True, True, False]])
    cls = torch.tensor([[True, False, False, False, False]])
    scores, starts, ends, nulls = best_spans(logits, logits, context, cls, max_answer_len=15, top_k=10)
    valid = scores[0] >= 0
    assert valid.sum() == 3  # (2, 2), (2, 3), (3, 3)
    assert set(starts[0][valid].tolist()) <= {2, 3} and set(ends[0][valid].tolist()) <= {2, 3}
    p = torch.tensor([5.0, 1.0, 2.0]).softmax(-1)  # [CLS] and the two context tokens
    assert scores[0, 0] == pytest.approx(float(p[2] * p[2]))
    assert nulls[0] == pytest.approx(float(p[0] * p[0]))


# ---------------------------------------------------------------------------------------------------------
# Broken model folders


def _copy(model_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(model_dir, tmp_path / "model"))


def _edit_config(folder: Path, **changes: object) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))


def _break(case: str, folder: Path) -> None:
    if case == "missing folder":
        shutil.rmtree(folder)
    elif case == "file, not folder":
        shutil.rmtree(folder)
        folder.write_text("not a model")
    elif case == "missing config":
        (folder / "config.json").unlink()
    elif case == "config not JSON":
        (folder / "config.json").write_text("{not json")
    elif case == "missing weights":
        (folder / "model.safetensors").unlink()
    elif case == "missing shard":
        (folder / "model.safetensors").rename(folder / "model-00001-of-00002.safetensors")
        shards = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": shards}))
    elif case == "missing tokenizer files":
        (folder / "tokenizer.json").unlink()
    elif case == "vocab larger than model's":
        _edit_config(folder, vocab_size=50)
    elif case == "vocab smaller than model's":
        _edit_config(folder, vocab_size=30522)
    else:
        raise AssertionError(case)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing folder", "does not exist"),
        ("file, not folder", "is a file"),
        ("missing config", "has no config.json"),
        ("config not JSON", "not readable JSON"),
        ("missing weights", "has no PyTorch weights"),
        ("missing shard", "lacks 1 of the 2 weight shards"),
        ("missing tokenizer files", "has no tokenizer files"),
        ("vocab larger than model's", "outside the model's embedding table"),
        ("vocab smaller than model's", "vocab_size 30522"),
    ],
)
def test_broken_model_folder_is_named_and_explained(model_dir: Path, tmp_path: Path, case: str, message: str) -> None:
    folder = _copy(model_dir, tmp_path)
    _break(case, folder)
    with pytest.raises(UserError, match=message) as error:
        QuestionAnswerer.from_folder(folder)
    assert str(folder) in str(error.value)
    assert "\n" not in str(error.value)


def test_course_model_folder_error_names_the_hub_id(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="hf download uer/roberta-base-chinese-extractive-qa --local-dir"):
        validate_model_folder(tmp_path / "roberta-chinese-qa")


def test_base_model_without_qa_head_is_refused(model_dir: Path, tmp_path: Path) -> None:
    folder = _copy(model_dir, tmp_path)
    (folder / "model.safetensors").unlink()
    BertModel(_tiny_config(len(BertTokenizerFast.from_pretrained(folder)))).save_pretrained(folder)
    with pytest.raises(UserError, match="no trained question-answering head .*qa_outputs"):
        QuestionAnswerer.from_folder(folder)


def test_slow_tokenizer_is_refused(model_dir: Path, tmp_path: Path) -> None:
    legacy = pytest.importorskip("transformers.models.bert.tokenization_bert_legacy")
    folder = _copy(model_dir, tmp_path)
    vocab = BertTokenizerFast.from_pretrained(folder).get_vocab()
    (folder / "tokenizer.json").unlink()
    (tmp_path / "vocab.txt").write_text("\n".join(sorted(vocab, key=vocab.__getitem__)) + "\n")
    legacy.BertTokenizerLegacy(str(tmp_path / "vocab.txt"), do_lower_case=False).save_pretrained(folder)
    with pytest.raises(UserError, match="not a fast tokenizer"):
        QuestionAnswerer.from_folder(folder)


# ---------------------------------------------------------------------------------------------------------
# SQuAD v1.1 evaluation


def _squad(path: Path, items: list[tuple[str, str, list[str]]]) -> Path:
    """Write a SQuAD v1.1 file; one paragraph per distinct context, one question per item."""
    paragraphs: dict[str, list[dict[str, object]]] = {}
    for number, (question, context, answers) in enumerate(items):
        qas = paragraphs.setdefault(context, [])
        references = [{"text": text, "answer_start": context.find(text)} for text in answers]
        qas.append({"id": f"q{number}", "question": question, "answers": references})
    data = [{"title": "t", "paragraphs": [{"context": c, "qas": qas} for c, qas in paragraphs.items()]}]
    path.write_text(json.dumps({"version": "1.1", "data": data}, ensure_ascii=False), encoding="utf-8")
    return path


SQUAD_ITEMS = [
    (EN_QUESTION, EN_CONTEXT, ["Paris"]),
    ("Who is the father of artificial intelligence?", EN_CONTEXT, ["Alan Turing", "Turing"]),
    (ZH_QUESTION, ZH_CONTEXT, ["艾伦·图灵"]),
    ("北京是哪里的首都？", "北京是中国的首都。", ["中国"]),
]


def test_squad_evaluation_reports_percentages(qa: QuestionAnswerer, tmp_path: Path) -> None:
    questions = load_squad(_squad(tmp_path / "dev.json", SQUAD_ITEMS))
    assert [q.id for q in questions] == ["q0", "q1", "q2", "q3"]
    assert questions[1].answers == ("Alan Turing", "Turing")
    scores = evaluate_squad(qa, questions, chunk_size=3)
    assert scores.questions == 4
    assert 0.0 <= scores.exact_match <= 100.0 and 0.0 <= scores.f1 <= 100.0


def test_squad_evaluation_of_right_answers_is_100(qa: QuestionAnswerer, tmp_path: Path) -> None:
    # References equal to the model's own predictions: every answer is right.
    predicted = [qa(q, c)["answer"] for q, c, _ in SQUAD_ITEMS]
    items = [(q, c, [answer]) for (q, c, _), answer in zip(SQUAD_ITEMS, predicted, strict=True)]
    scores = evaluate_squad(qa, load_squad(_squad(tmp_path / "right.json", items)))
    assert (scores.exact_match, scores.f1) == (100.0, 100.0)
    # And with an oracle that finds "Paris", the first question alone is right: EM 25 on four questions.
    scores = evaluate_squad(oracle(qa, "Paris", "Paris"), load_squad(_squad(tmp_path / "dev.json", SQUAD_ITEMS)))
    assert scores.exact_match == 25.0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("{not json", "not valid JSON"),
        ('{"version": "1.1"}', "not SQuAD v1.1 JSON"),
        ('{"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "1"}]}]}]}', "not SQuAD v1.1 JSON"),
        ('{"data": []}', "holds no questions"),
    ],
)
def test_unreadable_squad_file_is_refused(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "dev.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError, match=message) as error:
        load_squad(path)
    assert str(path) in str(error.value)


def test_squad_question_without_answers_expects_no_answer(tmp_path: Path) -> None:
    path = tmp_path / "v2.json"
    data = {"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "x", "question": "q", "answers": []}]}]}]}
    path.write_text(json.dumps(data))
    assert load_squad(path)[0].answers == ("",)


# ---------------------------------------------------------------------------------------------------------
# Command line


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lit_cs201.course.qa", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        timeout=120,
    )


def test_cli_answers_a_question(model_dir: Path) -> None:
    done = run_cli("--model", str(model_dir), "--question", ZH_QUESTION, "--context", ZH_CONTEXT, "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert ZH_CONTEXT[answer["start"] : answer["end"]] == answer["answer"]


def test_cli_evaluates_squad_with_limit(model_dir: Path, tmp_path: Path) -> None:
    squad = _squad(tmp_path / "dev.json", SQUAD_ITEMS)
    done = run_cli("--model", str(model_dir), "--squad", str(squad), "--limit", "2")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "2 questions" in lines[0]
    assert lines[1].startswith("exact_match ") and 0 <= float(lines[1].split()[1]) <= 100
    assert lines[2].startswith("f1 ") and 0 <= float(lines[2].split()[1]) <= 100


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--model", "{missing}", "--question", "q", "--context", "c"], 2, "does not exist"),
        (["--model", "{model}", "--question", "q"], 2, "--context missing"),
        (["--model", "{model}", "--squad", "{missing}"], 2, "SQuAD file"),
    ],
)
def test_cli_bad_input_exits_with_one_line(
    model_dir: Path, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    paths = {"missing": str(tmp_path / "missing"), "model": str(model_dir)}
    done = run_cli(*(arg.format(**paths) for arg in args))
    assert done.returncode == code
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr


def test_cli_prints_ranked_answers(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--model", str(model_dir), "--question", ZH_QUESTION, "--context", ZH_CONTEXT, "--top-k", "3"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and len(lines) == 3
    assert [line.split(".")[0] for line in lines] == ["1", "2", "3"]
    assert all("(score " in line and ", span " in line for line in lines)


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["--max-seq-len", "4096"], 2, "more than this model takes"),
        (["--device", "nonsense"], 2, "unknown device"),
        (["--limit", "3"], 2, "--limit N needs --squad"),
        (["--squad", "x.json"], 2, "not both"),
    ],
)
def test_cli_bad_options(
    model_dir: Path, capsys: pytest.CaptureFixture[str], extra: list[str], code: int, message: str
) -> None:
    assert main(["--model", str(model_dir), "--question", "q", "--context", "c", *extra]) == code
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
