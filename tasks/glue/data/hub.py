"""GLUE from the Hugging Face ``datasets`` library (needs the network or a filled cache)."""
from __future__ import annotations

from typing import Optional


from tasks.glue.data.common import Example, GlueDatasetSpec
from tasks.glue.data.tsv import _first_line


def _hf_examples(spec: GlueDatasetSpec, split: str) -> tuple[Optional[list[Example]], str]:
    """(examples, "") from the Hugging Face hub, or (None, why not) on any failure."""
    if spec.hf_name is None:
        return None, "not on the Hugging Face hub"
    try:
        import datasets  # noqa: F401  (optional; not a dependency of this project)
    except Exception:  # ImportError, or a broken install
        return None, "Hugging Face datasets is not installed"
    try:
        rows = datasets.load_dataset("glue", spec.hf_name, split=spec.hf_split(split))
        examples = []
        for row in rows:
            texts = [row[c] for c in spec.hf_text_columns]
            label = row["label"]
            if spec.is_regression:
                label = float(label)
            elif not 0 <= int(label) < spec.num_labels:
                raise ValueError(f"label {label!r} out of range")
            else:
                label = int(label)
            examples.append(Example(texts[0], texts[1] if len(texts) > 1 else None, label))
    except Exception as e:  # no network, no cache, a changed hub layout, ...
        return None, (f"Hugging Face datasets failed ({type(e).__name__}: "
                      f"{_first_line(e) or 'no message'})")
    return examples, ""
