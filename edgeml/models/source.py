"""Where a model comes from, and what edgeml must know about it to compile it.

A model reference is one of

* a zoo name: ``mobilenetv2_ulsam`` (``edgeml list``);
* a Python file and a callable: ``path/to/net.py:build``;
* an importable module and a callable: ``my_pkg.nets:build``;
* a Hugging Face model directory, as ``save_pretrained`` writes it (``config.json`` and weights),
  loaded with ``transformers`` (the ``hf`` extra);
* in Python, an ``nn.Module`` instance.

``load_model(reference, options)`` turns any of them into a ``LoadedModel``: the module in eval
mode, its ``ModelConfig`` (what it takes and gives, recorded in the manifest) and the record from
which ``edgeml verify`` rebuilds the same module. The zoo is one source among the others and
goes through the same path; what a zoo family adds (official-key adaptation, random-init
finishing, an export form) is declared through ``edgeml.models.protocol``.

What edgeml cannot read from a model it did not define comes from ``ModelOptions`` (the CLI's
``--input-shape``, ``--mean``, ``--std``, ``--resize``, ``--labels``, ``--num-classes``,
``--model-arg``); the config of a zoo entry or of a Hugging Face directory
(``config.json``, ``preprocessor_config.json``) fills what the options leave open, and where
neither says anything the manifest records the default that was used and where it came from.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import json
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeml.errors import CheckpointError, ModelSourceError, UsageError
from edgeml.models._registry import IMAGENET_MEAN, IMAGENET_STD, ModelConfig

SOURCES = ("zoo", "file", "module", "huggingface", "instance")
# Callables whose name says nothing about the model: the artifact is named after the file instead.
_GENERIC_CALLABLES = {"build", "create", "create_model", "get_model", "make", "make_model", "model", "main", "net"}


@dataclass(frozen=True)
class ModelOptions:
    """What edgeml needs to know about a model, beyond the model itself.

    Every field is optional: a zoo entry or a Hugging Face directory answers most of them; for a
    callable or an ``nn.Module`` the input shape is required. ``labels`` is a list of class names
    or the path of a text file with one name per line."""

    kwargs: Mapping[str, Any] = field(default_factory=dict)
    checkpoint: str | Path | Mapping[str, Any] | None = None
    seed: int = 0
    input_shape: Sequence[int] | None = None  # N, C, H, W
    resolution: int | None = None  # overrides H = W
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    resize: int | None = None  # shorter side before the center crop
    labels: Sequence[str] | str | Path | None = None
    num_classes: int | None = None
    name: str | None = None  # artifact name; default from the reference


@dataclass
class LoadedModel:
    """A built model, in eval mode, with what the exporter and the manifest need to know about it."""

    module: nn.Module
    config: ModelConfig
    source: str  # one of SOURCES
    reference: str  # as the user wrote it (the manifest's model.reference)
    record: dict[str, Any]  # manifest "model" fields besides name and config: source, files, kwargs, weights
    batch: int = 1
    labels: list[str] | None = None
    notes: list[str] = field(default_factory=list)  # defaults the user may want to know about

    @property
    def name(self) -> str:
        return self.config.name


def parse_reference(reference: str | nn.Module) -> str:
    """Which kind of source ``reference`` names (one of ``SOURCES``), without building anything."""
    if isinstance(reference, nn.Module):
        return "instance"
    if not isinstance(reference, (str, Path)):
        raise ModelSourceError(f"a model is a zoo name, FILE.py:CALLABLE, package.module:CALLABLE, a Hugging Face "
                               f"directory or an nn.Module, not {type(reference).__name__}")
    text = str(reference)
    target, sep, attr = text.rpartition(":")
    if sep and attr and not attr.startswith(("/", "\\")):  # not a Windows drive letter
        return "file" if target.endswith(".py") or "/" in target or "\\" in target else "module"
    path = Path(text)
    if path.is_dir():
        if (path / "config.json").is_file():
            return "huggingface"
        raise ModelSourceError(f"{path} is a folder without config.json: a Hugging Face model directory is what "
                               "save_pretrained writes (config.json and the weights)")
    if text.endswith(".py"):
        raise ModelSourceError(f"{text}: name the callable that returns the model, as {text}:CALLABLE")
    return "zoo"


def load_model(reference: str | nn.Module, options: ModelOptions | None = None) -> LoadedModel:
    """Build the model ``reference`` names (see the module docstring), in eval mode."""
    options = options or ModelOptions()
    kind = parse_reference(reference)
    _check_options(kind, options)
    if kind == "zoo":
        loaded = _load_zoo(str(reference), options)
    elif kind in ("file", "module"):
        loaded = _load_callable(str(reference), kind, options)
    elif kind == "huggingface":
        loaded = _load_huggingface(Path(reference), options)
    else:
        loaded = _load_instance(reference, options)  # type: ignore[arg-type]
    if options.name:
        loaded.config = replace(loaded.config, name=_safe_name(options.name))
    return loaded


# -- the zoo -------------------------------------------------------------------------------------------


def _load_zoo(name: str, options: ModelOptions) -> LoadedModel:
    from edgeml.models._registry import _entry, create_model, get_model_config

    config = get_model_config(name)
    if options.input_shape is not None:
        raise UsageError(f"{name} is a zoo model: its input shape is known; use --resolution to change the size")
    kwargs = dict(options.kwargs)
    signature = inspect.signature(_entry(name).builder).parameters
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in signature.values())
    resolution = int(options.resolution or kwargs.get("resolution") or config.resolution)
    if "resolution" in signature:
        kwargs["resolution"] = resolution
    num_classes = options.num_classes if options.num_classes is not None else kwargs.get("num_classes")
    if num_classes is not None:
        if config.num_classes == 0:
            raise UsageError(f"{name} outputs {config.output}, not class logits: it has no classifier head to resize")
        if "num_classes" not in signature and not takes_kwargs:
            raise UsageError(f"{name}'s builder takes no num_classes")
        kwargs["num_classes"] = int(num_classes)
        if int(num_classes) != config.num_classes:
            # A new head: its classes are the user's, no longer ImageNet's.
            config = replace(config, num_classes=int(num_classes), labels=None,
                             output_description=f"class logits (B, {int(num_classes)})")
    config = config.with_resolution(resolution)
    config = _with_preprocessing(config, options)
    try:
        module = create_model(name, checkpoint=options.checkpoint, seed=options.seed, **kwargs)
    except CheckpointError as e:
        if num_classes is None and "size mismatch" in str(e):
            raise CheckpointError(f"{e} (a fine-tuned head? pass --num-classes N)") from None
        raise
    module.edgeml_config = config  # type: ignore[assignment]
    record = {"source": "zoo", "kwargs": _jsonable(kwargs), "weights": _weights_record(options, "random-init")}
    labels = _read_labels(options.labels)
    if labels is not None and len(labels) != config.num_classes:
        raise UsageError(f"{len(labels)} labels for {config.num_classes} classes: the labels file must name "
                         "every class")
    if labels is not None:
        config = replace(config, labels=None)
        module.edgeml_config = config  # type: ignore[assignment]
    return LoadedModel(module, config, "zoo", name, record, labels=labels)


# -- Python callables ----------------------------------------------------------------------------------


def _load_callable(reference: str, kind: str, options: ModelOptions) -> LoadedModel:
    target, _, attr = reference.rpartition(":")
    if kind == "file":
        path = Path(target).expanduser()
        if not path.is_file():
            raise ModelSourceError(f"{target} does not exist (in {reference})")
        namespace = _import_file(path)
        files = {"path": str(path.resolve()), "sha256": _sha256(path)}
        where = str(target)
        stem = path.stem
    else:
        try:
            namespace = importlib.import_module(target)
        except ImportError as e:
            raise ModelSourceError(f"cannot import {target} (in {reference}): {_first_line(e)}") from None
        except Exception as e:  # the module itself failed while importing
            raise ModelSourceError(f"importing {target} failed: {type(e).__name__}: {_first_line(e)}") from None
        module_file = getattr(namespace, "__file__", None)
        files = {"path": str(Path(module_file).resolve()), "sha256": _sha256(Path(module_file))} if module_file else {}
        where = f"module {target}"
        stem = target.rpartition(".")[2]
    obj: Any = namespace
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = sorted(n for n, v in vars(namespace).items() if not n.startswith("_") and callable(v))
            hint = f" (it defines: {', '.join(public[:8])})" if public else ""
            raise ModelSourceError(f"{where} has no {attr!r}{hint}")
        obj = getattr(obj, part)
    kwargs = dict(options.kwargs)
    with _seeded(options.seed):
        if isinstance(obj, nn.Module):
            if kwargs:
                raise UsageError(f"{reference} is a module instance, not a callable: it takes no --model-arg")
            module = obj
        elif callable(obj):
            try:
                module = obj(**kwargs)
            except Exception as e:
                args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
                raise ModelSourceError(f"{attr}({args}) failed: {type(e).__name__}: {_first_line(e)}") from None
        else:
            raise ModelSourceError(f"{reference} is a {type(obj).__name__}, not a callable returning an nn.Module")
    if not isinstance(module, nn.Module):
        raise ModelSourceError(f"{attr}() returned a {type(module).__name__}, not an nn.Module")
    if options.checkpoint is not None:
        from edgeml.models._checkpoint import load_checkpoint

        load_checkpoint(module, options.checkpoint)
    name = stem if attr.rpartition(".")[2] in _GENERIC_CALLABLES else f"{stem}_{attr.rpartition('.')[2]}"
    record = {"source": kind, "files": {"code": files} if files else {}, "kwargs": _jsonable(kwargs),
              "weights": _weights_record(options, "callable")}
    return _user_model(module.eval(), name, kind, reference, record, options)


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    # A builder that initializes randomly gives the same weights for the same seed, so verify can
    # rebuild the exact reference; the caller's random state is left as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _import_file(path: Path) -> Any:
    """Import a Python file as a fresh module; its folder is on sys.path while it imports."""
    resolved = path.resolve()
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:10]
    module_name = f"edgeml_user_{_safe_name(path.stem)}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, resolved)
    if spec is None or spec.loader is None:
        raise ModelSourceError(f"{path} cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(resolved.parent))
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        sys.modules.pop(module_name, None)
        raise ModelSourceError(f"{path}:{e.lineno}: syntax error: {e.msg}") from None
    except Exception as e:
        sys.modules.pop(module_name, None)
        raise ModelSourceError(f"importing {path} failed: {type(e).__name__}: {_first_line(e)}") from None
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(resolved.parent))
    return module


# -- nn.Module instances (Python API) ------------------------------------------------------------------


def _load_instance(module: nn.Module, options: ModelOptions) -> LoadedModel:
    if options.kwargs:
        raise UsageError("an nn.Module instance takes no model arguments")
    if options.checkpoint is not None:
        from edgeml.models._checkpoint import load_checkpoint

        load_checkpoint(module, options.checkpoint)
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", type(module).__name__).lower()
    weights = _weights_record(options, "instance")
    if options.checkpoint is None:
        weights = {"source": "in-memory module", "sha256": state_dict_sha256(module)}
    record = {"source": "instance", "class": f"{type(module).__module__}.{type(module).__qualname__}",
              "kwargs": {}, "weights": weights}
    return _user_model(module.eval(), name, "instance", f"<{type(module).__name__} instance>", record, options)


def state_dict_sha256(module: nn.Module) -> str:
    """A fingerprint of a module's parameters and buffers (names, shapes, dtypes and values)."""
    h = hashlib.sha256()
    for key, value in module.state_dict().items():
        h.update(key.encode())
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            h.update(str((tuple(t.shape), t.dtype)).encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# -- Hugging Face directories --------------------------------------------------------------------------


class HuggingFaceVision(nn.Module):
    """A transformers vision model as edgeml runs it: ``pixel_values`` in, the model output's
    tensors out as a tuple, in the order (and under the names) its ``ModelOutput`` gives them.

    Models that take their image as a sequence of patches (SigLIP2's NaFlex convention: a
    ``forward`` with ``spatial_shapes`` and ``pixel_attention_mask``) still take an image here: it
    is cut into the model's ``patch_size`` patches, each flattened channels-last as transformers'
    image processor does, with the patch grid as ``spatial_shapes`` and every patch valid. The
    program takes an image whose sides are multiples of the patch size."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.patch_size = _naflex_patch_size(model)

    def _inputs(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.patch_size is None:
            return {"pixel_values": pixel_values}
        p = self.patch_size
        b, c, h, w = pixel_values.shape
        if h % p or w % p:
            raise ValueError(f"this model takes {p}x{p} patches: the input's height and width must be "
                             f"multiples of {p}, not {h}x{w}")
        nh, nw = h // p, w // p
        patches = pixel_values.reshape(b, c, nh, p, nw, p).permute(0, 2, 4, 3, 5, 1).reshape(b, nh * nw, p * p * c)
        return {"pixel_values": patches, "spatial_shapes": torch.tensor([[nh, nw]] * b),
                "pixel_attention_mask": torch.ones(b, nh * nw, dtype=torch.int64)}

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with _constant_grid(pixel_values.shape[0] if self.patch_size else 0):
            out = self.model(**self._inputs(pixel_values), return_dict=True)
        return tuple(v for v in out.values() if isinstance(v, torch.Tensor))

    def output_names(self, pixel_values: torch.Tensor) -> list[str]:
        with torch.no_grad():
            out = self.model(**self._inputs(pixel_values), return_dict=True)
        return [k for k, v in out.items() if isinstance(v, torch.Tensor)]


@contextlib.contextmanager
def _constant_grid(batch: int) -> Iterator[None]:
    """While capturing, let the fake tensors carry the patch grid's values (``2 * batch`` ints).

    The model reads its grid back with ``.item()`` to resize its position embeddings. Under
    ``torch.export`` a tensor made in ``forward`` keeps its values only up to
    ``CONSTANT_NUMEL_LIMIT`` elements (one); past that each ``.item()`` is an unbacked symbol, the
    resize gets symbolic sizes and data-dependent checks that ExecuTorch cannot lower. Raised to the
    grid's size, the grid stays the constant it is; eager runs are unaffected."""
    from torch._subclasses import fake_tensor

    limit = fake_tensor.CONSTANT_NUMEL_LIMIT
    fake_tensor.CONSTANT_NUMEL_LIMIT = max(limit, 2 * batch)
    try:
        yield
    finally:
        fake_tensor.CONSTANT_NUMEL_LIMIT = limit


def _naflex_patch_size(model: nn.Module) -> int | None:
    """The patch size of a model that takes patches with ``spatial_shapes`` (None for the rest)."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return None
    if not {"spatial_shapes", "pixel_attention_mask"} <= set(params):
        return None
    config = getattr(model, "config", None)
    vision = getattr(config, "vision_config", None) or config
    size = getattr(vision, "patch_size", None)
    return int(size) if isinstance(size, int) else None


def _load_huggingface(folder: Path, options: ModelOptions) -> LoadedModel:
    try:
        import transformers
    except ImportError:
        raise ModelSourceError(f"{folder} is a Hugging Face model directory; reading it needs transformers: "
                               'pip install -e ".[hf]"') from None
    try:
        hf_config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except Exception as e:
        raise ModelSourceError(f"{folder}/config.json cannot be read by transformers: {_first_line(e)}") from None
    cls = _hf_class(transformers, hf_config)
    weights = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file())
    files = {"config": {"path": str((folder / "config.json").resolve()), "sha256": _sha256(folder / "config.json")}}
    with _seeded(options.seed):
        try:
            if weights:
                model = cls.from_pretrained(str(folder), local_files_only=True, **dict(options.kwargs))
            else:  # a config alone: random init, reproducible from the seed
                model = cls._from_config(hf_config, **dict(options.kwargs))
        except Exception as e:
            raise ModelSourceError(f"transformers cannot build {cls.__name__} from {folder}: "
                                   f"{type(e).__name__}: {_first_line(e)}") from None
    model = model.float().eval()
    if options.checkpoint is not None:
        from edgeml.models._checkpoint import load_checkpoint

        load_checkpoint(model, options.checkpoint)
    for p in weights:
        files[p.name] = {"path": str(p.resolve()), "sha256": _sha256(p)}
    source = "random-init" if not weights else "huggingface"
    record = {"source": "huggingface", "class": cls.__name__, "files": files, "kwargs": _jsonable(options.kwargs),
              "weights": _weights_record(options, source)}
    hints = _hf_hints(folder, hf_config)
    options = replace(options, **{k: v for k, v in hints.items() if getattr(options, k) is None})
    name = _safe_name(folder.resolve().name)
    return _user_model(HuggingFaceVision(model).eval(), name, "huggingface", str(folder), record, options)


def _hf_class(transformers: Any, hf_config: Any) -> Any:
    for arch in getattr(hf_config, "architectures", None) or []:
        cls = getattr(transformers, arch, None)
        if cls is not None:
            return cls
    from transformers import AutoModel, AutoModelForImageClassification

    mapping = AutoModelForImageClassification._model_mapping
    return mapping[type(hf_config)] if type(hf_config) in mapping else AutoModel._model_mapping[type(hf_config)]


def _hf_hints(folder: Path, hf_config: Any) -> dict[str, Any]:
    """Input shape, preprocessing and labels from config.json and preprocessor_config.json."""
    hints: dict[str, Any] = {}
    vision = getattr(hf_config, "vision_config", None) or hf_config
    size = getattr(vision, "image_size", None)
    if isinstance(size, (list, tuple)):
        size = size[0] if len(set(size)) == 1 else None
    patches, patch = getattr(vision, "num_patches", None), getattr(vision, "patch_size", None)
    if size is None and isinstance(patches, int) and isinstance(patch, int) and round(patches ** 0.5) ** 2 == patches:
        size = round(patches ** 0.5) * patch  # a patch-sequence model: the square grid of its patch budget
    channels = int(getattr(vision, "num_channels", 3) or 3)
    pre_path = folder / "preprocessor_config.json"
    pre = json.loads(pre_path.read_text()) if pre_path.is_file() else {}
    crop = _hf_size(pre.get("crop_size")) if pre.get("do_center_crop", True) else None
    resize = _hf_size(pre.get("size"))
    if crop:
        size = crop
        if resize and resize > crop:
            hints["resize"] = resize
    elif resize and not size:
        size = resize
    if size:
        hints["input_shape"] = (1, channels, int(size), int(size))
    if pre.get("image_mean") and pre.get("image_std"):
        hints["mean"], hints["std"] = tuple(pre["image_mean"]), tuple(pre["image_std"])
    id2label = getattr(hf_config, "id2label", None) or {}
    names = [id2label[k] for k in sorted(id2label)]
    if names and not all(re.fullmatch(r"LABEL_\d+", n) for n in names):
        hints["labels"] = names
    return hints


def _hf_size(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, Mapping):
        if "shortest_edge" in value:
            return int(value["shortest_edge"])
        if value.get("height") and value.get("height") == value.get("width"):
            return int(value["height"])
    return None


# -- what every model outside the zoo needs ------------------------------------------------------------


def _user_model(module: nn.Module, name: str, kind: str, reference: str, record: dict[str, Any],
                options: ModelOptions) -> LoadedModel:
    notes: list[str] = []
    declared = getattr(module, "edgeml_config", None)
    shape = tuple(int(s) for s in options.input_shape) if options.input_shape is not None else None
    if shape is None and isinstance(declared, ModelConfig):
        shape = (1, declared.in_chans, declared.resolution, declared.resolution)
    if shape is None:
        raise UsageError(f"{reference}: pass --input-shape (e.g. 1x3x224x224): edgeml cannot tell what the model "
                         "takes" + (" (the Hugging Face config has no image_size)" if kind == "huggingface" else ""))
    if len(shape) != 4 or min(shape) < 1:
        raise UsageError(f"--input-shape takes N x C x H x W with every size >= 1, not {'x'.join(map(str, shape))}")
    batch, channels, height, width = shape
    if channels != 3:
        raise UsageError(f"{reference} takes {channels} input channels; edgeml feeds RGB images (3 channels)")
    if height != width:
        raise UsageError(f"{reference} takes {height}x{width} inputs; edgeml's image preprocessing makes square "
                         "crops, so non-square inputs are not supported yet")
    resolution = int(options.resolution or height)
    base = declared if isinstance(declared, ModelConfig) else None
    config = ModelConfig(
        name=_safe_name(name), family=base.family if base else "user", resolution=resolution,
        stride=base.stride if base else 1, min_resolution=base.min_resolution if base else 1,
        max_resolution=base.max_resolution if base else 8192,
        mean=tuple(base.mean) if base else IMAGENET_MEAN, std=tuple(base.std) if base else IMAGENET_STD,
        num_classes=0, output="output", output_description="", labels=None, paper=base.paper if base else "",
    )
    if options.mean is None and options.std is None and base is None:
        notes.append("no --mean/--std given: the input is normalized with ImageNet's mean and std")
    config = _with_preprocessing(config, options)
    labels = _read_labels(options.labels)
    loaded = LoadedModel(module, config, kind, reference, record, batch=batch, labels=labels, notes=notes)
    describe_outputs(loaded, torch.zeros(batch, 3, resolution, resolution), options.num_classes)
    return loaded


def describe_outputs(loaded: LoadedModel, example: torch.Tensor, num_classes: int | None = None) -> None:
    """Run the model once and record what it really returns: a single (B, K) tensor is class
    logits (top-1 agreement is then measured), anything else ``output``/``<key>`` features."""
    from edgeml.export.outputs import flatten_outputs

    try:
        with torch.no_grad():
            named = flatten_outputs(loaded.module(example))
    except Exception as e:
        raise ModelSourceError(f"{loaded.reference}: running the model on a {'x'.join(map(str, example.shape))} "
                               f"input failed: {type(e).__name__}: {_first_line(e)}") from None
    if not named:
        raise ModelSourceError(f"{loaded.reference} returns no tensor")
    first_key = named[0][0]
    logits_key = "logits" if any(k == "logits" for k, _ in named) else (first_key if len(named) == 1 else None)
    logits = dict(named).get(logits_key) if logits_key is not None else None
    config = loaded.config
    if logits is not None and logits.dim() == 2 and (logits.shape[1] > 1 or loaded.labels):
        k = int(logits.shape[1])
        if num_classes is not None and int(num_classes) != k:
            raise UsageError(f"{loaded.reference} returns {k} class logits, not --num-classes {num_classes}")
        if loaded.labels is not None and len(loaded.labels) != k:
            raise UsageError(f"{len(loaded.labels)} labels for {k} classes: the labels file must name every class")
        config = replace(config, num_classes=k, output="logits", output_description=f"class logits (B, {k})")
    else:
        if num_classes is not None:
            raise UsageError(f"{loaded.reference} does not return class logits (B, K): --num-classes does not apply")
        shapes = ", ".join(f"{n} {tuple(t.shape)}" for n, t in named)
        config = replace(config, output="features", output_description=shapes)
    loaded.config = config


def _with_preprocessing(config: ModelConfig, options: ModelOptions) -> ModelConfig:
    updates: dict[str, Any] = {}
    for key in ("mean", "std"):
        value = getattr(options, key)
        if value is not None:
            values = tuple(float(v) for v in value)
            if len(values) != 3 or (key == "std" and min(values) <= 0):
                raise UsageError(f"--{key} takes three numbers (R,G,B)" + (", each > 0" if key == "std" else "")
                                 + f", not {','.join(map(str, value))}")
            updates[key] = values
    if options.resize is not None:
        if int(options.resize) < config.resolution:
            raise UsageError(f"--resize {options.resize} is smaller than the {config.resolution} crop")
        updates["crop_fraction"] = config.resolution / int(options.resize)
    return replace(config, **updates) if updates else config


def _read_labels(labels: Sequence[str] | str | Path | None) -> list[str] | None:
    if labels is None:
        return None
    if isinstance(labels, (str, Path)):
        path = Path(labels)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read labels from {path}: {_first_line(e)}") from None
        names = [line.strip() for line in text.splitlines() if line.strip()]
        if not names:
            raise UsageError(f"{path} holds no labels (one class name per line)")
        return names
    return [str(n) for n in labels]


def _check_options(kind: str, options: ModelOptions) -> None:
    if options.resolution is not None and int(options.resolution) < 1:
        raise UsageError(f"--resolution must be a positive input size, not {options.resolution}")
    if options.resize is not None and int(options.resize) < 1:
        raise UsageError(f"--resize must be a positive size, not {options.resize}")
    if options.num_classes is not None and int(options.num_classes) < 1:
        raise UsageError(f"--num-classes must be >= 1, not {options.num_classes}")
    if kind == "huggingface" and options.num_classes is not None:
        raise UsageError("a Hugging Face model's classes come from its config.json (num_labels): "
                         "--num-classes does not apply")


def _weights_record(options: ModelOptions, default: str) -> dict[str, Any]:
    checkpoint = options.checkpoint
    if checkpoint is None:
        if default == "random-init":
            return {"source": "random-init", "seed": options.seed}
        if default == "callable":
            return {"source": "the callable's own", "seed": options.seed}
        return {"source": default}
    if isinstance(checkpoint, (str, Path)):
        path = Path(checkpoint).resolve()
        return {"source": "checkpoint", "path": str(path), "sha256": _sha256(path)}
    return {"source": "in-memory state_dict"}


def _sha256(path: Path) -> str:
    from edgeml.manifest import sha256_file

    return sha256_file(path)


def _jsonable(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    try:
        json.dumps(dict(kwargs))
    except TypeError as e:
        raise UsageError(f"model arguments must be plain values (numbers, strings, lists): {e}") from None
    return dict(kwargs)


def _safe_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.-")
    return name or "model"


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# -- rebuilding the reference of an artifact -----------------------------------------------------------


def load_from_manifest(model: Mapping[str, Any], *, checkpoint: str | Path | None = None,
                       module: nn.Module | None = None) -> nn.Module:
    """The eager module an artifact was exported from, rebuilt from the manifest's ``model`` record
    (the same zoo name, callable or directory, arguments, seed and checkpoint, with every file
    checked against the sha256 recorded at export). ``module`` supplies an ``nn.Module`` exported
    from Python; ``checkpoint`` replaces the recorded weights."""
    source = model.get("source", "zoo")
    weights = model.get("weights", {})
    if source == "instance":
        if module is None:
            raise UsageError("this artifact was exported from an nn.Module in Python: verify it there with "
                             "verify_artifact(path, model=module)")
        if checkpoint is None and weights.get("sha256") and state_dict_sha256(module) != weights["sha256"]:
            raise CheckpointError("the module given is not the one exported (its weights' fingerprint differs)")
        return module.eval()
    if module is not None:
        return module.eval()
    for role, info in (model.get("files") or {}).items():
        path = Path(info["path"])
        if not path.is_file():
            raise ModelSourceError(f"{path} ({role}), which this artifact was exported from, is gone")
        if _sha256(path) != info.get("sha256"):
            raise ModelSourceError(f"{path} changed since export (sha256 differs): the reference would not be the "
                                   "exported model; export again")
    if checkpoint is None and weights.get("source") == "checkpoint":
        path = Path(weights["path"])
        if not path.is_file():
            raise CheckpointError(f"the checkpoint this artifact was exported from, {path}, is gone; "
                                  "pass --checkpoint to verify against another copy")
        if _sha256(path) != weights.get("sha256"):
            raise CheckpointError(f"{path} changed since export (sha256 differs); pass --checkpoint explicitly")
        checkpoint = path
    if checkpoint is None and weights.get("source") == "in-memory state_dict":
        raise UsageError("this artifact was exported from an in-memory state_dict; pass --checkpoint to verify it")
    config = model.get("config", {})
    reference = model.get("reference", model.get("name"))
    if source == "huggingface":
        files = model.get("files") or {}
        reference = str(Path(files["config"]["path"]).parent) if "config" in files else reference
    shape = None if source == "zoo" else (1, int(config.get("in_chans", 3)), int(config["resolution"]),
                                          int(config["resolution"]))
    options = ModelOptions(kwargs=dict(model.get("kwargs", {})), checkpoint=checkpoint,
                           seed=int(weights.get("seed", 0)), input_shape=shape)
    return load_model(reference, options).module
