"""Every private name of another library that this package uses, where, and why no public API serves.

A private name (``_x``) may change in any release without a deprecation. Each one the package relies on is listed
here, so that ``tests/test_private_api.py`` can check them all against the installed versions, failing with the
name and the version when a release renames one, and can scan the package for a private name used but not listed.
The upper bounds on ``lightning`` and ``jsonargparse`` in ``pyproject.toml`` stop at the versions these checks
passed with. Remove an entry when its last use goes; the test says when one is no longer used.

This module is a list, not a shim: the package names the private objects where it uses them, and nothing here is
imported at run time.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PrivateName:
    """A private name of a library and the package's use of it.

    Attributes:
        path: Where it lives: a module, then attributes. An attribute set on instances (``self._x = ...`` in a
            class of the library) counts; a path goes on through one only where the library builds it by calling
            a class (``self._x = SomeClass(...)``).
        used_in: The package's modules that use it, relative to ``lit_cs201/``.
        why: Why the package uses it, in one line: what no public API does.
        key: For a private key of a file format rather than an attribute: the key, which ``path``'s source writes
            or reads as a string.
    """

    path: str
    used_in: tuple[str, ...]
    why: str
    key: str | None = None


PRIVATE_NAMES: tuple[PrivateName, ...] = (
    # -- Lightning ------------------------------------------------------------------------------------------------
    PrivateName(
        "lightning.pytorch.cli.LightningCLI._run_subcommand",
        ("cli/lightning_cli.py",),
        "the one call that runs a subcommand: checks before it and error handling around it have no public hook",
    ),
    PrivateName(
        "lightning.pytorch.cli.LightningCLI._parse_ckpt_path",
        ("cli/lightning_cli.py",),
        "overridden to do nothing: it puts a checkpoint's settings over the user's flags (Lightning issue #20801)",
    ),
    PrivateName(
        "lightning.pytorch.cli.LightningCLI._subcommand_parsers",
        ("cli/lightning_cli.py",),
        "the parser of each subcommand, whose help is retitled; LightningCLI exposes only the parser of the top",
    ),
    PrivateName(
        "lightning.pytorch.cli.LightningCLI._get",
        ("cli/lightning_cli.py",),
        "a subcommand's section of the config; replaceable by config.get(str(self.subcommand), config).get(key)",
    ),
    PrivateName(
        "lightning.pytorch.trainer.connectors.accelerator_connector._AcceleratorConnector._choose_auto_accelerator",
        ("models/precision.py",),
        'what accelerator="auto" picks, without building a Trainer (its fallback rule is tested to agree)',
    ),
    PrivateName(
        "lightning.pytorch.trainer.trainer.Trainer._signal_connector.received_sigterm",
        ("runs/stop.py",),
        "stops every process at the end of the same batch, as SIGTERM does; Trainer.should_stop waits for the epoch",
    ),
    PrivateName(
        "lightning.pytorch.loggers.TensorBoardLogger._version",
        ("runs/folders.py",),
        "whether the user fixed the version, and fixing it to the folder created; the property computes one instead",
    ),
    PrivateName(
        "lightning.pytorch.loggers.TensorBoardLogger._get_next_version",
        ("runs/folders.py",),
        "the next free version_N, claimed here atomically; the version property would not create the folder",
    ),
    PrivateName(
        "lightning.pytorch.loggers.CSVLogger._version",
        ("runs/folders.py",),
        "as for TensorBoardLogger: both loggers' folders are claimed the same way",
    ),
    PrivateName(
        "lightning.pytorch.loggers.CSVLogger._get_next_version",
        ("runs/folders.py",),
        "as for TensorBoardLogger: both loggers' folders are claimed the same way",
    ),
    PrivateName(
        "lightning.pytorch.loggers.TensorBoardLogger._kwargs",
        ("report/logger.py",),
        "the SummaryWriter settings the user gave, passed on to the writer that opens its event file late",
    ),
    PrivateName(
        "lightning.pytorch.loggers.TensorBoardLogger._experiment",
        ("report/logger.py",),
        "the writer the experiment property caches; overriding the property means filling the same cache",
    ),
    PrivateName(
        "lightning.pytorch.callbacks.RichProgressBar._get_train_description",
        ("report/progress.py",),
        "the one place the Rich bar names the epoch, relabelled from 1; its public hooks run a frame too late",
    ),
    PrivateName(
        "lightning.fabric.utilities.cloud_io._is_local_file_protocol",
        ("runs/checkpoint_io.py",),
        "local paths get atomic writes; replaceable by fsspec.utils.get_protocol(str(path)) == 'file'",
    ),
    PrivateName(
        "lightning.pytorch.cli",
        ("runs/checkpoint.py", "runs/restore.py"),
        "the class a checkpoint's hyper-parameters were saved for, as LightningCLI records it in the checkpoint",
        key="_class_path",
    ),
    PrivateName(
        "lightning.pytorch.core.mixins.hparams_mixin",
        ("runs/checkpoint.py",),
        "the entry LightningCLI adds to saved hyper-parameters, left out when they are read as a class's arguments",
        key="_instantiator",
    ),
    # -- jsonargparse, and the argparse it builds on ---------------------------------------------------------------
    PrivateName(
        "jsonargparse.ArgumentParser._subcommands_action",
        ("cli/lightning_cli.py",),
        "the subcommands' list in --help, rewritten with whole sentences; jsonargparse has no accessor",
    ),
    PrivateName(
        "argparse._SubParsersAction._choices_actions",
        ("cli/lightning_cli.py",),
        "the help line of each subcommand; argparse sets it only when the subcommand is added (by Lightning)",
    ),
    PrivateName(
        "argparse.HelpFormatter._fill_text",
        ("cli/help.py",),
        "keeps the subcommand descriptions' lines as written; argparse's only public alternative drops all wrapping",
    ),
    PrivateName(
        "jsonargparse.ArgumentParser._option_string_actions",
        ("cli/help.py", "cli/lightning_cli.py"),
        "an option's action by its flag (its help text, whether it exists); argparse has no public lookup",
    ),
    # -- torch ---------------------------------------------------------------------------------------------------
    PrivateName(
        "torch.utils.tensorboard.SummaryWriter._get_file_writer",
        ("report/logger.py",),
        "the one place the writer opens its event file: overridden so that a run without summaries leaves none",
    ),
)
