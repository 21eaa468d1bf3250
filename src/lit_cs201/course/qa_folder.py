"""A local model folder for extractive question answering, checked by name before transformers reads it, and loaded
offline.

transformers 5 loads a folder without tokenizer files as a 5-token tokenizer, and fills weights a folder lacks with
random ones, each silently or with a log line: the answers would be confident nonsense. `validate_model_folder`
checks the files, `load_model_folder` what they hold; each problem is a `UserError` that says how to fetch the model.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lit_cs201.errors import UserError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

COURSE_MODELS = {  # the course's two models: local folder name -> Hugging Face Hub id
    "distilbert-base-cased-distilled-squad": "distilbert/distilbert-base-cased-distilled-squad",
    "roberta-chinese-qa": "uer/roberta-base-chinese-extractive-qa",
}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
WEIGHT_INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
FOREIGN_WEIGHT_FILES = ("tf_model.h5", "flax_model.msgpack")  # transformers 5 dropped TensorFlow and Flax
TOKENIZER_FILES = (
    "tokenizer.json vocab.txt vocab.json spiece.model spm.model sentencepiece.bpe.model tokenizer.model".split()
)
# A tokenizer that covers less than this share of the model's vocabulary is not the model's tokenizer. Some
# models pad their embedding table beyond the tokenizer (to a multiple of 8 or 64): equality is too strict.
MIN_VOCAB_COVERAGE = 0.9
SAVE_TOKENIZER = "or save them with AutoTokenizer.from_pretrained(<model id>).save_pretrained(<folder>)"


def validate_model_folder(folder: str | Path) -> Path:
    """``folder`` as a ``Path`` if it holds a config, weights and tokenizer files, checked by name before transformers
    reads them (it loads a folder without tokenizer files as a 5-token tokenizer, silently); else a ``UserError``."""
    path = Path(folder).expanduser()
    hub_id = COURSE_MODELS.get(path.name, "<model id>")
    hint = f"fetch it on a machine with network (`hf download {hub_id} --local-dir {path}`, docs/qa.md), copy it here"
    if not path.exists():
        raise UserError(f"model folder {str(path)!r} does not exist; {hint}")
    if not path.is_dir():
        raise UserError(f"model folder {str(path)!r} is a file, not a folder; {hint}")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise UserError(f"model folder {str(path)!r} has no config.json; {hint}")
    try:
        json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{str(config_file)!r} is not readable JSON ({exc}); {hint}") from exc
    _check_weights(path, hint)
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise UserError(
            f"model folder {str(path)!r} has no tokenizer files ({', '.join(TOKENIZER_FILES)}), without which "
            f"transformers 5 silently builds a 5-token tokenizer; copy the model's into the folder, {SAVE_TOKENIZER}"
        )
    return path


def _check_weights(path: Path, hint: str) -> None:
    if any((path / name).is_file() for name in WEIGHT_FILES):
        return
    for index_file in (path / name for name in WEIGHT_INDEX_FILES if (path / name).is_file()):
        try:
            shards = sorted(set(json.loads(index_file.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UserError(f"{str(index_file)!r} is not a readable weight index ({exc!r}); {hint}") from exc
        if missing := [shard for shard in shards if not (path / shard).is_file()]:
            raise UserError(
                f"model folder {str(path)!r} lacks {len(missing)} of the {len(shards)} weight shards listed in "
                f"{index_file.name} (first missing: {missing[0]}); {hint}"
            )
        return
    foreign = [name for name in FOREIGN_WEIGHT_FILES if (path / name).is_file()]
    found = f" (found only {', '.join(foreign)}, which transformers 5 cannot load)" if foreign else ""
    raise UserError(
        f"model folder {str(path)!r} has no PyTorch weights: expected model.safetensors, pytorch_model.bin or a "
        f"sharded *.index.json with its shards{found}; {hint}"
    )


def check_tokenizer(tokenizer: PreTrainedTokenizerBase, where: str = "", vocab_size: int | None = None) -> None:
    """Refuse a tokenizer extractive QA cannot use: a slow one (no character offsets), or one that is not the
    model's (more tokens than its embedding table, or far fewer)."""
    sizes = f"the tokenizer has {len(tokenizer)} tokens but config.json says vocab_size {vocab_size}"
    if not tokenizer.is_fast:
        problem = f"{type(tokenizer).__name__} is not a fast tokenizer, and extractive QA needs its character offsets"
    elif isinstance(vocab_size, int) and len(tokenizer) > vocab_size:
        problem = f"{sizes}, so token ids would fall outside the model's embedding table"
    elif isinstance(vocab_size, int) and len(tokenizer) < MIN_VOCAB_COVERAGE * vocab_size:
        problem = f"{sizes}: the tokenizer files are incomplete or another model's"
    else:
        return
    raise UserError(f"{where}{problem}; copy the model's own tokenizer files into the folder, {SAVE_TOKENIZER}")


def _load(auto: Any, path: Path, what: str, **kwargs: Any) -> Any:
    try:
        return auto.from_pretrained(path, local_files_only=True, **kwargs)
    except Exception as exc:  # transformers raises ValueError, OSError, KeyError... with messages that can be tables
        raise UserError(f"model folder {str(path)!r}: {what} ({textwrap.shorten(str(exc), 300)})") from exc


def load_model_folder(folder: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A question-answering model (in float32) and its tokenizer from a local folder, never the network, after
    checking the files (:func:`validate_model_folder`), the tokenizer against the config and that the weights hold
    a QA head."""
    from transformers import AutoConfig, AutoModelForQuestionAnswering, AutoTokenizer

    path = validate_model_folder(folder)
    where = f"model folder {str(path)!r}: "
    config = _load(AutoConfig, path, "config.json is not usable")
    tokenizer = _load(AutoTokenizer, path, "the tokenizer does not load")
    check_tokenizer(tokenizer, where, getattr(config, "vocab_size", None))
    load = {"config": config, "output_loading_info": True}
    model, info = _load(AutoModelForQuestionAnswering, path, "the weights do not load", **load)
    # transformers fills missing weights with random ones and only logs it: the answers would be confident nonsense.
    if missing := sorted(info.get("missing_keys", ())):
        head = any("qa_outputs" in key for key in missing)
        problem = "no trained question-answering head" if head else f"the weights lack {len(missing)} tensors"
        example = COURSE_MODELS["distilbert-base-cased-distilled-squad"]
        todo = f"it is a base model: use one fine-tuned for QA, e.g. {example}" if head else "fetch the model again"
        raise UserError(f"{where}{problem} (missing weights: {', '.join(missing[:4])}); {todo}")
    # float32 whatever the checkpoint holds: half precision is slow or unsupported on CPUs.
    return model.float(), tokenizer
