"""Compatibility steps that let kipoi 0.8.6 run in a current Python 3.11 environment, and the guards
that keep it from ever blocking on the network.

kipoi 0.8.6 was written for Python 3.6-3.8, numpy 1.x and Keras 2. In a Python 3.11 / numpy 2 /
Keras 3 environment it needs:

* numpy aliases removed in numpy 2 (``np.string_``, ``np.unicode_``) that its HDF5 writer uses;
* ``keras`` imports routed to ``tf_keras`` (legacy Keras 2) while a ``KerasModel`` is built: Keras 3
  cannot read the Keras 1/2 architecture JSON and h5 weight files of the model zoo;
* ``pkg_resources`` (``setuptools<81``) and ``six``, declared in ``setup.cfg``;
* its ``print`` diagnostics (schema mismatches, download messages) turned into log records, and the
  deprecation warning ``pkg_resources`` prints when Kipoi checks a model's pip dependencies dropped;
* TensorFlow's start-up lines silenced, and Kipoi's extension-less weight files read as HDF5 (tf_keras
  would try them as TensorFlow checkpoints first, and log why that fails).

Kipoi reads ``model.yaml`` with PyYAML's unsafe loader, which runs Python tags
(``!!python/object/apply:...``) as it reads: :mod:`deepmr_kipoi.kipoi_models.files` checks every YAML text
Kipoi would read for a model first.

Kipoi downloads model files (``RemoteFile`` arguments of ``model.yaml``) with ``urllib`` and no
timeout, and clones or pulls git model sources on first access. :func:`network_guard` replaces the
download with an immediate :class:`WeightsNotFoundError` unless downloads are explicitly allowed, and
:func:`prepare_source` handles git sources itself, with timeouts, so a run never hangs.

The shims and guards touch module attributes (``numpy``, ``sys.modules['keras']``,
``kipoi.specs.download_url``); the context managers restore them on exit and are not meant to be
entered from several threads at once.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import socket
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator

import numpy as np

from deepmr_kipoi._files import file_md5  # noqa: F401 - the check Kipoi applies to its files
from deepmr_kipoi.errors import DeepMRInputError

logger = logging.getLogger(__name__)

#: seconds a single network operation (socket read, git clone/pull) may take when downloads are on
NETWORK_TIMEOUT_S = 120

_LEGACY_KERAS_MODULES = ("keras", "keras.models", "keras.layers", "keras.backend")


_PKG_RESOURCES_WARNING = "pkg_resources is deprecated as an API"


class WeightsNotFoundError(FileNotFoundError, DeepMRInputError):
    """A model file Kipoi needs is neither present nor downloadable (downloads are off).

    Subclasses both ``FileNotFoundError`` and :class:`~deepmr_kipoi.errors.DeepMRInputError` (a
    ``ValueError``): the command line exits with status 2 and one line.
    """


def check_safe_yaml_text(text: str, where: str) -> None:
    """Refuse YAML text (e.g. a rendered model template) that only an unsafe loader reads; ``where`` names it."""
    import yaml

    try:
        yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.constructor.ConstructorError as err:
        tag = str(err.problem or "").split("tag", 1)[-1].strip(" '")
        line = f" (line {err.problem_mark.line + 1})" if err.problem_mark is not None else ""
        raise DeepMRInputError(
            f"{where}{line} has the YAML tag '{tag}', which runs Python code when Kipoi reads it; "
            "refused. Pass trust_model_code=True (--trust-model-code) only if you trust the model's author"
        ) from None
    except yaml.YAMLError as err:
        problem = " ".join(str(err).split())
        raise DeepMRInputError(f"{where} is not valid YAML: {problem}") from None


def apply_numpy_shims() -> None:
    """Restore the numpy-1 aliases kipoi's writers use (``np.string_``, ``np.unicode_``).

    Idempotent; does nothing on numpy 1.x, where the aliases exist.
    """
    # setattr by name: these are exactly the numpy-1 spellings that numpy 2 removed
    for alias, target in (("string_", np.bytes_), ("unicode_", np.str_)):
        if not hasattr(np, alias):
            setattr(np, alias, target)


def import_kipoi(trust_model_code: bool = False):
    """Import kipoi after applying the compatibility steps.

    ``import kipoi`` reads the user's Kipoi configuration and makes the model sources it lists,
    reading their ``config.yaml`` files with PyYAML's unsafe loader: before the first import those
    files are scanned for Python tags
    (:func:`~deepmr_kipoi.kipoi_models.files.check_kipoi_configuration`) unless trusted.

    Parameters
    ----------
    trust_model_code : bool
        Let Kipoi read a configuration with Python tags.

    Returns
    -------
    module
        The ``kipoi`` package.

    Raises
    ------
    ImportError
        With the fix, when a dependency kipoi needs on Python 3.11 is missing.
    DeepMRInputError
        A Python tag in the Kipoi configuration or a configured source's ``config.yaml``.

    Notes
    -----
    ``import kipoi`` writes ``~/.kipoi/config.yaml`` (or ``/tmp/.kipoi`` when ``HOME`` is not
    writable).
    """
    apply_numpy_shims()
    if "kipoi" not in sys.modules and not trust_model_code:
        from deepmr_kipoi.kipoi_models.files import check_kipoi_configuration

        check_kipoi_configuration()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_PKG_RESOURCES_WARNING, category=UserWarning)
            import kipoi
    except ModuleNotFoundError as err:
        if err.name in ("pkg_resources", "six", "setuptools"):
            raise ImportError(
                f"kipoi 0.8.6 needs '{err.name}' on Python 3.11: pip install six 'setuptools<81'"
            ) from err
        raise
    return kipoi


_UNKNOWN_FIELDS = (
    "Unrecognized fields for DataLoaderDescription",
    "Unrecognized fields for ModelDescription",
)


class _DropKnownNoise(logging.Filter):
    """Drops kipoi_utils' warning about fields its parser does not know (kipoiseq's dataloader
    descriptions and many zoo models, DeepBind's among them, have a ``postprocessing`` section that
    Kipoi 0.8 no longer reads): harmless, and printed on every such description."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_UNKNOWN_FIELDS)


_NOISY_LOGGER = "kipoi_utils.external.related.mixins"


@contextlib.contextmanager
def kipoi_output_to_log(level: int = logging.DEBUG) -> Iterator[None]:
    """Capture what kipoi ``print``s (schema-mismatch notes, download messages) into the log, and
    drop its known-harmless parser warnings and the ``pkg_resources`` deprecation warning (printed
    when Kipoi checks a model's pip dependencies with ``pkg_resources``)."""
    buffer = io.StringIO()
    noise = _DropKnownNoise()
    noisy = logging.getLogger(_NOISY_LOGGER)
    noisy.addFilter(noise)
    try:
        with contextlib.redirect_stdout(buffer), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_PKG_RESOURCES_WARNING, category=UserWarning)
            yield
    finally:
        noisy.removeFilter(noise)
        text = buffer.getvalue().strip()
        if text:
            logger.log(level, "kipoi: %s", text)


@contextlib.contextmanager
def legacy_keras() -> Iterator[None]:
    """Route ``import keras`` to ``tf_keras`` (Keras 2 API) inside the block.

    kipoi's ``KerasModel`` does ``from keras.models import model_from_json, load_model``; with Keras 3
    installed these cannot read Keras 1/2 JSON architectures or whole-model h5 files, while
    ``tf_keras`` (the Keras 2 line shipped for TensorFlow 2.16+) can. When ``tf_keras`` is not
    installed the block runs unchanged (plain Keras 2 environments need nothing).

    Inside the block an HDF5 weight file is loaded as HDF5 whatever its name (Kipoi stores
    downloads under their md5, without extension), and TensorFlow's start-up lines go to the log
    (:func:`import_tensorflow_quietly`).
    """
    import_tensorflow_quietly()
    try:
        import tf_keras
    except ImportError:
        yield
        return
    replacements = {
        "keras": tf_keras,
        "keras.models": tf_keras.models,
        "keras.layers": tf_keras.layers,
        "keras.backend": tf_keras.backend,
    }
    saved = {name: sys.modules.get(name) for name in _LEGACY_KERAS_MODULES}
    sys.modules.update(replacements)
    tf_logger = logging.getLogger("tensorflow")
    tf_level = tf_logger.level
    tf_logger.setLevel(max(tf_level, logging.ERROR))
    try:
        with _hdf5_by_content():
            yield
    finally:
        tf_logger.setLevel(tf_level)
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def import_tensorflow_quietly() -> None:
    """Import TensorFlow (when installed and not yet imported) with its start-up lines in the log.

    ``TF_CPP_MIN_LOG_LEVEL=3`` (unless set) silences TensorFlow's own C++ logging (cuInit, CPU
    features), but the lines absl writes before it is initialised (oneDNN, the CUDA stub) go to file
    descriptor 2 whatever Python does with ``sys.stderr``; that descriptor is pointed at a temporary
    file for the import and what it caught is logged at DEBUG. Not for use while other threads write
    to standard error.
    """
    if "tensorflow" in sys.modules or importlib.util.find_spec("tensorflow") is None:
        return
    # set before TensorFlow's first import: its C++ logging reads it once
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with _fd2_to_log("TensorFlow start-up"):
        import tensorflow  # noqa: F401


@contextlib.contextmanager
def _fd2_to_log(what: str) -> Iterator[None]:
    """Point file descriptor 2 at a temporary file inside the block; log what it caught (DEBUG)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            text = caught.read().decode("utf-8", errors="replace").strip()
            if text:
                logger.debug("%s: %s", what, text)


@contextlib.contextmanager
def _hdf5_by_content() -> Iterator[None]:
    """Make tf_keras' ``load_weights`` read an HDF5 file as HDF5 whatever its extension.

    tf_keras decides by extension (``.h5``/``.hdf5``/``.keras``) and otherwise probes the file as a
    TensorFlow checkpoint first, which fails noisily ("not an sstable") on Kipoi's files, named by
    their md5. Here the file's HDF5 signature decides. Does nothing where tf_keras' private saving
    module has another shape.
    """
    try:
        import h5py
        from tf_keras.src.saving.legacy import save as legacy_save
    except ImportError:
        yield
        return
    original = getattr(legacy_save, "_detect_save_format", None)
    if original is None:
        yield
        return

    def detect(filepath):
        path = os.fspath(filepath) if isinstance(filepath, str | os.PathLike) else None
        if path is not None and os.path.isfile(path) and h5py.is_hdf5(path):
            return path, "h5"
        return original(filepath)

    legacy_save._detect_save_format = detect
    try:
        yield
    finally:
        legacy_save._detect_save_format = original


def missing_file_message(
    model: str,
    arg: str,
    url: str,
    md5: str,
    path: str,
    download_option: str | None = "download=True",
) -> str:
    """One-line explanation of a model file that is not where Kipoi looks for it.

    ``download_option`` is how the caller turns downloads on (``"download=True"``, ``"--download"``);
    None where the caller has no such option, and then the message does not suggest one.
    """
    if os.path.exists(path):
        problem = f"the file at {path} does not match md5 {md5}"
    else:
        problem = f"Kipoi looked for {path} and it is not there"
    md5_note = f" (md5 {md5})" if md5 else ""
    fix = f"download {url}{md5_note} and place it at exactly that path"
    if download_option:
        fix += f", or pass {download_option} where the network is reachable"
    return f"weights of Kipoi model '{model}' (argument '{arg}') are missing: {problem}; {fix}"


@contextlib.contextmanager
def network_guard(
    model: str, download: bool, download_option: str | None = "download=True"
) -> Iterator[None]:
    """Keep Kipoi from blocking on downloads inside the block.

    Parameters
    ----------
    model : str
        Model name used in the error message.
    download : bool
        False: any file Kipoi would download raises :class:`WeightsNotFoundError` at once (files
        already present with the right md5 are used as they are). True: downloads run, with a
        socket timeout of :data:`NETWORK_TIMEOUT_S` seconds per operation so they cannot hang.
    download_option : str or None
        How the caller turns downloads on, for the message (None: not mentioned).
    """
    import kipoi.specs
    from kipoi_utils.external.torchvision.dataset_utils import check_integrity

    original = kipoi.specs.download_url

    def offline_download(url, root, filename, md5=""):
        path = os.path.join(os.path.expanduser(root), filename)
        if os.path.isfile(path) and check_integrity(path, md5 or None):
            return
        arg = os.path.basename(os.path.dirname(path))
        raise WeightsNotFoundError(
            missing_file_message(model, arg, url, md5 or "", path, download_option)
        )

    previous_timeout = socket.getdefaulttimeout()
    if download:
        socket.setdefaulttimeout(NETWORK_TIMEOUT_S)
    else:
        kipoi.specs.download_url = offline_download
    try:
        yield
    finally:
        kipoi.specs.download_url = original
        socket.setdefaulttimeout(previous_timeout)


def _run_git(args: list[str], cwd: str | None) -> subprocess.CompletedProcess:
    env = dict(os.environ, GIT_LFS_SKIP_SMUDGE="1", GIT_TERMINAL_PROMPT="0")
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=NETWORK_TIMEOUT_S
    )


def prepare_source(
    source_name: str, source, download: bool, download_option: str | None = "download=True"
) -> None:
    """Make a Kipoi model source usable without Kipoi touching the network on its own.

    Git sources (the default ``kipoi`` source is a clone of github.com/kipoi/models) are cloned or
    pulled by Kipoi on first access, without a timeout. Here: with ``download=False`` an existing
    local clone is used as it is and a missing one is a clear error; with ``download=True`` the clone
    or pull runs with a timeout, and a failed pull falls back to the local copy with a warning.
    Local sources need nothing.

    Parameters
    ----------
    source_name : str
        Name of the source (for messages).
    source : kipoi.sources.Source
        The source object.
    download : bool
        Whether network access is allowed.
    download_option : str or None
        How the caller turns downloads on, for messages (None: not mentioned).

    Raises
    ------
    DeepMRInputError
        When a git source has no local copy and downloads are off, or cloning fails.
    """
    allow = f"pass {download_option}, " if download_option else ""
    from kipoi.sources import GithubPermalinkSource, GitSource

    if isinstance(source, GithubPermalinkSource) and not download:
        raise DeepMRInputError(
            f"Kipoi source '{source_name}' clones models from GitHub on access and downloads are off; "
            "clone the repository and pass source=<its local path>"
            + (f", or pass {download_option}" if download_option else "")
        )
    if not isinstance(source, GitSource) or source._pulled:
        return
    local = source.local_path
    cloned = os.path.isdir(local) and bool(os.listdir(local))
    if not download:
        if not cloned:
            raise DeepMRInputError(
                f"Kipoi source '{source_name}' has no local copy at {local} and downloads are off: "
                f"run `git clone --depth 1 {source.remote_url} {local}` once, {allow}"
                "or pass source=<path of a local copy of the model zoo>"
            )
        # offline: use the clone as it is instead of letting Kipoi `git pull` without a timeout
        source._pulled = True
        return
    try:
        if cloned:
            if source.auto_update:
                result = _run_git(["pull"], cwd=local)
                if result.returncode != 0:
                    logger.warning(
                        "git pull of Kipoi source '%s' failed (%s); using the local copy at %s",
                        source_name,
                        result.stderr.strip().splitlines()[-1:] or "no message",
                        local,
                    )
        else:
            result = _run_git(["clone", "--depth=1", source.remote_url, local], cwd=None)
            if result.returncode != 0:
                raise DeepMRInputError(
                    f"cloning Kipoi source '{source_name}' from {source.remote_url} failed: "
                    f"{result.stderr.strip()}"
                )
    except subprocess.TimeoutExpired as err:
        if not cloned:
            raise DeepMRInputError(
                f"cloning Kipoi source '{source_name}' from {source.remote_url} timed out after "
                f"{NETWORK_TIMEOUT_S} s; clone it by hand into {local}"
            ) from err
        logger.warning("git pull of Kipoi source '%s' timed out; using the local copy", source_name)
    source._pulled = True
