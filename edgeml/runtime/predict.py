"""Run an artifact on images and name what it sees: the top classes by the manifest's labels.

Labels come from the manifest: the class names recorded with the logits output (``--labels``, a
Hugging Face ``id2label``), or a label set named by the model config (``imagenet-1k``, shipped in
``edgeml/data/labels``). Without either, classes are shown by index.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from edgeml.errors import ArtifactError, UsageError
from edgeml.images import Preprocessing, load_image
from edgeml.manifest import Manifest
from edgeml.runtime.runners import make_runner, open_artifact

LABEL_SETS = Path(__file__).resolve().parents[1] / "data" / "labels"


@dataclass
class Prediction:
    image: str
    top: list[tuple[str, float]]  # (label, probability), most probable first

    def to_dict(self) -> dict:
        return {"image": self.image, "top": [{"label": label, "probability": p} for label, p in self.top]}


def labels_of(manifest: Manifest) -> tuple[int, list[str] | None]:
    """(index of the logits output, its class names or None)."""
    index = next((i for i, o in enumerate(manifest.outputs) if o.kind == "logits"), None)
    if index is None:
        kinds = ", ".join(sorted({o.kind or "unknown" for o in manifest.outputs}))
        raise ArtifactError(f"{manifest.artifact.get('file')} outputs {kinds}, not class logits: there is nothing "
                            "to name (use `edgeml verify` to compare its outputs)")
    recorded = manifest.outputs[index].labels
    if recorded:
        return index, list(recorded)
    name = manifest.model.get("config", {}).get("labels")
    if name:
        path = LABEL_SETS / f"{name}.txt"
        if path.is_file():
            return index, [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return index, None


def predict(artifact: str | Path, images: Sequence[str | Path], *, top: int = 5) -> list[Prediction]:
    if top < 1:
        raise UsageError(f"--top must be >= 1, not {top}")
    if not images:
        raise UsageError("name at least one image")
    opened = open_artifact(artifact)
    manifest = opened.manifest
    if manifest.preprocessing is None:
        raise ArtifactError("manifest has no preprocessing: cannot feed images to this artifact")
    index, labels = labels_of(manifest)
    pre = Preprocessing.from_dict(manifest.preprocessing)
    runner = make_runner(opened)
    batch = int(manifest.inputs[0].shape[0]) if manifest.inputs else 1
    results = []
    for path in images:
        x = pre(load_image(path))
        x = x.expand(batch, *x.shape[1:]).contiguous() if batch > 1 else x
        logits = runner.run([x])[index][0].float().flatten()
        probs = torch.softmax(logits, dim=0)
        k = min(top, probs.numel())
        values, indices = probs.topk(k)
        names = [labels[i] if labels is not None and i < len(labels) else f"class {i}" for i in indices.tolist()]
        results.append(Prediction(Path(path).name, list(zip(names, [round(float(v), 6) for v in values]))))
    return results


def format_predictions(predictions: Sequence[Prediction]) -> str:
    lines = []
    for p in predictions:
        best = ", ".join(f"{label} {prob * 100:.1f}%" for label, prob in p.top)
        lines.append(f"{p.image}: {best}")
    return "\n".join(lines)
