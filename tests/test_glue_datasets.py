"""GLUE on Hugging Face ``datasets``: every source gives the same Dataset columns; tokenisation runs
through ``Dataset.map`` and is cached on disk by the rows' content, the tokenizer and the length;
and the tensors the task trains and scores on are bit-identical to the pipeline before ``datasets``
(tokenizer called on the whole text lists, Python lists per example), re-implemented below as the
reference."""
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

datasets = pytest.importorskip("datasets")
pytest.importorskip("transformers")

from bench.config import build_config  # noqa: E402
from bench.engine import evaluation_loader, train_loader  # noqa: E402
from tasks.glue import data as glue  # noqa: E402
from tasks.glue.data import COLUMNS, GLUE_DATASETS, hub, load_glue_split, read_glue_tsv, tokenized  # noqa: E402
from tasks.glue.data.encoding import EncodedExamples, make_collate  # noqa: E402
from tasks.glue.data.tokenized import cache_key, rows_sha256, tokenize, tokenizer_fingerprint  # noqa: E402
from tasks.glue.models import load_tokenizer, offline_minilm_path  # noqa: E402
from tasks.glue.task import GlueTask, _subset, hold_out  # noqa: E402
from test_glue_data import _cached_real_sdist  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TAB = "\t"
WORDS = ("the", "film", "a", "moving", '"quoted', "story", "isn't", "caf\u00e9", "\u2013", "dull", "joy", "plot",
         "charming", "(", ")", "very", "long", "sentence", "of", "words", "that", "runs", "on", "and", "on")
MNLI_PREFIX = ("index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
               "sentence1_parse", "sentence2_parse", "sentence1", "sentence2")


@pytest.fixture(autouse=True)
def _no_hub(monkeypatch):
    """No test reaches the hub (see test_glue_data.hub_calls)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "_probe", lambda: "the tests do not probe the hub")
    monkeypatch.setattr(hub, "_load_hub", lambda spec, split: pytest.fail("a test reached the hub"))


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(offline_minilm_path())


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 30)))


def write_glue_folder(root: Path, n_train: int = 40, n_dev: int = 16, seed: int = 0) -> dict:
    """All nine GLUE tasks in the real glue_data layouts under ``root`` (MRPC with a byte-order mark
    and CRLF line ends, CoLA headerless, MNLI with one annotator label in train and five in dev,
    string labels for QNLI/RTE, STS-B scores with three decimals); returns {task: {split: [(sentence1,
    sentence2 or None, label)]}} as the readers must give them."""
    rng = random.Random(seed)
    expected: dict = {}
    for task in ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"):
        spec = GLUE_DATASETS.get(task)
        expected[task] = {}
        for split in spec.splits:
            lines, rows = [], []
            for i in range(n_train if split == "train" else n_dev):
                a, b = _sentence(rng), _sentence(rng)
                if spec.is_regression:
                    cell = f"{rng.uniform(0, 5):.3f}"
                    label = float(cell)
                else:
                    label = rng.randrange(spec.num_labels)
                    cell = spec.label_names[label]
                if task == "cola":
                    lines.append(TAB.join(["gj04", cell, "" if label else "*", a]))
                elif task == "sst2":
                    lines.append(TAB.join([a, cell]))
                elif task == "mrpc":
                    lines.append(TAB.join([cell, str(1000 + i), str(2000 + i), a, b]))
                elif task == "stsb":
                    lines.append(TAB.join([str(i), "main-news", "headlines", "2015", f"{i:04d}", "none", "none",
                                           a, b, cell]))
                elif task == "qqp":
                    lines.append(TAB.join([str(i), str(2 * i), str(2 * i + 1), a, b, cell]))
                elif task == "mnli":
                    annotators = [cell] if split == "train" else [cell] * 5
                    lines.append(TAB.join([str(i), str(i), f"{i}n", "fiction", f"( {a} )", f"( {b} )",
                                           f"(ROOT {a})", f"(ROOT {b})", a, b, *annotators, cell]))
                else:  # qnli, rte, wnli
                    lines.append(TAB.join([str(i), a, b, cell]))
                rows.append((a, None if task in ("cola", "sst2") else b, label))
            if task == "mnli":
                header = [TAB.join([*MNLI_PREFIX, *(["label1"] if split == "train" else
                                                    [f"label{k}" for k in range(1, 6)]), "gold_label"])]
            else:
                header = [] if task == "cola" else [TAB.join(spec.columns)]
            newline = "\r\n" if task == "mrpc" else "\n"
            text = newline.join(header + lines) + newline + ("\n" if task == "wnli" else "")  # a blank last line
            if task == "mrpc":
                text = "\ufeff" + text
            path = root / "glue_data" / spec.folder / f"{split}.tsv"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text.encode("utf-8"))
            expected[task][split] = rows
    return expected


def _env() -> dict:
    """This environment with the checkout first on the path (for a child Python)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _rows(dataset) -> list[tuple]:
    return [(r["sentence1"], r["sentence2"], r["label"]) for r in dataset]


# --------------------------------------------------------------------------- the pipeline before datasets


class _ReferenceEncoded(torch.utils.data.Dataset):
    """The encoding before this change: one tokenizer call on the whole text lists, Python lists."""

    def __init__(self, rows, tokenizer, max_length, regression):
        texts_b = [b for _, b, _ in rows] if rows and rows[0][1] is not None else None
        self.encodings = tokenizer([a for a, _, _ in rows], texts_b, truncation=True, max_length=max_length)
        self.labels = torch.tensor([label for _, _, label in rows], dtype=torch.float32 if regression else torch.long)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        item = {k: v[i] for k, v in self.encodings.items()}
        item["labels"] = self.labels[i]
        return item

    def by_length(self):
        lengths = [len(ids) for ids in self.encodings["input_ids"]]
        return sorted(range(len(lengths)), key=lengths.__getitem__)


def _reference_loaders(config, rows_by_split: dict, tokenizer) -> dict:
    spec = GLUE_DATASETS.get(config.dataset)
    max_length, collate = int(config.options["max_seq_length"]), make_collate(tokenizer)

    def encoded(rows):
        return _ReferenceEncoded(rows, tokenizer, max_length, spec.is_regression)

    def scored(rows):
        enc = encoded(rows)
        return evaluation_loader(enc, batch_size=128, sampler=enc.by_length(), collate_fn=collate)

    pool, validation = hold_out(rows_by_split["train"], int(config.options["val_size"]))
    loaders = {"train": train_loader(encoded(_subset(pool, config.train_subset)), config, collate_fn=collate)}
    loaders.update({split: scored(_subset(rows_by_split[split], config.eval_subset)) for split in spec.dev_splits})
    if validation:
        loaders["val"] = scored(validation)
    return loaders


def _task_loaders(config) -> dict:
    loaded = GlueTask().load_data(config)
    loaders = {"train": loaded.train, **loaded.dev}
    if loaded.val is not None:
        loaders["val"] = loaded.val
    return loaders


def _assert_same_batches(new: dict, reference: dict) -> int:
    """Every loader yields the same batches: keys, dtypes and values, in the same order."""
    assert sorted(new) == sorted(reference)
    count = 0
    for name in reference:
        got, want = list(new[name]), list(reference[name])
        assert len(got) == len(want), name
        for a, b in zip(got, want):
            assert list(a) == list(b), name
            for key in b:
                assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), (name, key)
                count += a[key].numel()
    return count


def _config(dataset, tmp_path, data_root=None, *sets):
    return build_config("glue", "clipped_ste", dataset=dataset, data_root=str(data_root) if data_root else None,
                        sets=[f"cache_dir={tmp_path / 'cache'}", *sets])


@pytest.fixture
def counted(monkeypatch):
    """The rows the tokenizer is run on through Dataset.map (one entry per batch)."""
    calls = []
    original = tokenized._encode_batch

    def encode(batch, *args, **kwargs):
        calls.append(len(batch["sentence1"]))
        return original(batch, *args, **kwargs)

    monkeypatch.setattr(tokenized, "_encode_batch", encode)
    return calls


# --------------------------------------------------------------------------- one layout for every source


def test_every_source_gives_the_same_columns_and_types(tmp_path, monkeypatch):
    expected = write_glue_folder(tmp_path, n_train=6, n_dev=3)
    for task, splits in expected.items():
        spec = GLUE_DATASETS.get(task)
        for split, rows in splits.items():
            ds = load_glue_split(task, split, tmp_path)
            assert ds.column_names == list(COLUMNS) and _rows(ds) == rows
            assert list(ds["idx"]) == list(range(len(rows)))
            assert ds.features["label"] == (datasets.Value("float64") if spec.is_regression
                                            else datasets.ClassLabel(names=list(spec.label_names)))
    # The hub's layout of the same SST-2 dev rows: the same Dataset, down to its content hash, so the
    # two sources share a tokenised cache.
    rows = expected["sst2"]["dev"]
    hub_features = datasets.Features({"sentence": datasets.Value("string"), "idx": datasets.Value("int32"),
                                      "label": datasets.ClassLabel(names=["negative", "positive"])})
    hub_rows = datasets.Dataset.from_dict(
        {"sentence": [a for a, _, _ in rows], "label": [label for _, _, label in rows], "idx": list(range(len(rows)))},
        features=hub_features)
    from test_glue_data import hub_online

    hub_online(monkeypatch, lambda spec, split: hub_rows)
    from_hub = load_glue_split("sst2", "dev")
    from_file = load_glue_split("sst2", "dev", tmp_path)
    assert from_hub.features == from_file.features and _rows(from_hub) == rows
    assert rows_sha256(from_hub) == rows_sha256(from_file)
    # STS-B scores from the hub are floats, as from the file.
    stsb = datasets.Dataset.from_dict({"sentence1": ["a"], "sentence2": ["b"], "label": [3.8], "idx": [0]})
    assert _rows(hub.from_hub(GLUE_DATASETS.get("stsb"), stsb)) == [("a", "b", 3.8)]
    with pytest.raises(ValueError, match="label -1 out of range"):
        hub.from_hub(GLUE_DATASETS.get("sst2"), datasets.Dataset.from_dict({"sentence": ["x"], "label": [-1]}))
    # vader_sst2: the same columns (built from a fake sdist).
    from test_glue_data import _fake_sdist

    _fake_sdist(tmp_path / "vcache" / "vaderSentiment-3.3.2.tar.gz")
    vader = load_glue_split("vader_sst2", "train", cache_dir=tmp_path / "vcache")
    assert vader.features == from_file.features
    assert vader.column_names == list(COLUMNS) and vader[0]["sentence2"] is None


def test_the_same_content_has_the_same_key_and_a_change_changes_it(tmp_path, tokenizer):
    path = tmp_path / "SST-2" / "dev.tsv"
    path.parent.mkdir()
    path.write_text("sentence\tlabel\na fine film\t1\na dull one\t0\n")
    first = rows_sha256(read_glue_tsv("sst2", path))
    path.write_bytes(b"sentence\tlabel\r\na fine film\t1\r\na dull one\t0")  # CRLF, no final newline
    assert rows_sha256(read_glue_tsv("sst2", path)) == first
    path.write_text("sentence\tlabel\na fine film\t1\na dull one\t1\n")  # a label
    assert rows_sha256(read_glue_tsv("sst2", path)) != first
    path.write_text("sentence\tlabel\na fine film\t1\na dull one\t0\n")
    source = read_glue_tsv("sst2", path)
    assert rows_sha256(source.select([1])) != rows_sha256(source) != rows_sha256(source.select([1, 0]))
    assert rows_sha256(source.select([1])) == rows_sha256(read_glue_tsv("sst2", path).select([1]))
    # the same key in another process (the name of an on-disk cache file)
    code = ("import json, sys; from tasks.glue.data import read_glue_tsv; from tasks.glue.data.tokenized import "
            "cache_key; from tasks.glue.models import load_tokenizer, offline_minilm_path; "
            "ds = read_glue_tsv('sst2', sys.argv[1]); tok = load_tokenizer(offline_minilm_path()); "
            "print(json.dumps([cache_key(ds, tok, 32), cache_key(ds.select([1]), tok, 32)]))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, capture_output=True, text=True, env=_env())
    assert out.returncode == 0, out.stderr[-2000:]
    here = [cache_key(source, tokenizer, 32), cache_key(source.select([1]), tokenizer, 32)]
    assert json.loads(out.stdout) == json.loads(json.dumps(here)) and here[0]["rows_sha256"] == first


# --------------------------------------------------------------------------- bit-identical encodings


def test_generated_glue_folder_trains_on_bit_identical_tensors(tmp_path, tokenizer, counted):
    expected = write_glue_folder(tmp_path)
    total = 0
    for task in expected:
        config = _config(task, tmp_path, tmp_path, "train_subset=30", "eval_subset=12", "val_size=6",
                         "batch_size=8", "max_seq_length=24")
        cold = _task_loaders(config)
        assert counted, task  # tokenised through Dataset.map
        counted.clear()
        total += _assert_same_batches(cold, _reference_loaders(config, expected[task], tokenizer))
        warm = _task_loaders(config)
        assert counted == [], task  # read from the cache
        _assert_same_batches(warm, _reference_loaders(config, expected[task], tokenizer))  # fresh loaders: same order
    assert total > 10_000


def test_vader_sst2_trains_on_bit_identical_tensors(tmp_path, tokenizer):
    from test_glue_data import _fake_sdist, _read_split

    cache = tmp_path / "cache"
    _fake_sdist(cache / "vaderSentiment-3.3.2.tar.gz")
    config = _config("vader_sst2", tmp_path, None, "val_size=5", "batch_size=4")
    glue.prepare_vader_sst2(cache)
    rows = {split: [(s, None, int(label)) for s, label in _read_split(cache / "vader_sst2", split)]
            for split in ("train", "dev")}
    for _ in ("cold", "warm"):
        _assert_same_batches(_task_loaders(config), _reference_loaders(config, rows, tokenizer))


@pytest.mark.slow
@pytest.mark.skipif(_cached_real_sdist() is None, reason="the real vaderSentiment-3.3.2.tar.gz is not in the cache dir")
def test_the_real_vader_sst2_trains_on_bit_identical_tensors(tmp_path, tokenizer):
    """The offline default's quick preset (its validation split, max length 128) on the real set."""
    import shutil

    from test_glue_data import _read_split

    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copy(_cached_real_sdist(), cache / "vaderSentiment-3.3.2.tar.gz")
    config = _config("vader_sst2", tmp_path, None, "train_subset=2000")
    glue.prepare_vader_sst2(cache)
    rows = {split: [(s, None, int(label)) for s, label in _read_split(cache / "vader_sst2", split)]
            for split in ("train", "dev")}
    assert _assert_same_batches(_task_loaders(config), _reference_loaders(config, rows, tokenizer)) > 100_000


def test_examples_encode_as_before(tokenizer):
    rows = [("a fine film", "and a pair", 1), ("short", "one", 0), ("x " * 50, "y " * 40, 1)]
    examples = [glue.Example(a, b, label) for a, b, label in rows]
    new, old = EncodedExamples(examples, tokenizer, 16), _ReferenceEncoded(rows, tokenizer, 16, False)
    assert [new[i] for i in range(3)] == [old[i] for i in range(3)] and new.by_length() == old.by_length()
    regression = EncodedExamples([glue.Example("a", None, 3.8)], tokenizer, 8, regression=True)
    assert regression.labels.dtype == torch.float32 and regression.labels.tolist() == [pytest.approx(3.8)]


# --------------------------------------------------------------------------- the tokenised cache


def _sst2(tmp_path, rows=(("a fine film", 1), ("a dull one", 0), ("a joy to watch", 1))) -> Path:
    path = tmp_path / "SST-2" / "train.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("sentence\tlabel\n" + "".join(f"{s}\t{label}\n" for s, label in rows))
    return path


def _files(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.is_dir() else []


def test_a_second_tokenisation_reads_the_cache(tmp_path, tokenizer, counted):
    cache = tmp_path / "tokenized"
    source = read_glue_tsv("sst2", _sst2(tmp_path))
    first = tokenize(source, tokenizer, 32, cache, "sst2-train")
    assert counted == [3]
    (file,) = cache.iterdir()  # one Arrow file, no temporary one left
    assert file.name.startswith("sst2-train-L32-") and file.suffix == ".arrow"
    assert first.column_names == ["idx", "label", "input_ids", "token_type_ids", "attention_mask"]
    assert first.cache_files and Path(first.cache_files[0]["filename"]) == file
    stamp = file.stat().st_mtime_ns
    again = tokenize(read_glue_tsv("sst2", _sst2(tmp_path)), tokenizer, 32, cache, "sst2-train")
    assert counted == [3]  # not tokenised again
    assert file.stat().st_mtime_ns == stamp and _files(cache) == [file.name]
    assert again.cache_files and Path(again.cache_files[0]["filename"]) == file
    assert again.to_dict() == first.to_dict()
    assert again.features["input_ids"] == datasets.List(datasets.Value("int32"))
    assert again.features["label"] == source.features["label"]


def test_a_changed_file_length_or_tokenizer_tokenises_again(tmp_path, tokenizer, counted):
    cache = tmp_path / "tokenized"
    path = _sst2(tmp_path)
    tokenize(read_glue_tsv("sst2", path), tokenizer, 32, cache, "sst2-train")
    assert len(counted) == 1
    # a changed file
    _sst2(tmp_path, (("a fine film", 1), ("a dull one", 0), ("a joy to watch", 0)))
    changed = tokenize(read_glue_tsv("sst2", path), tokenizer, 32, cache, "sst2-train")
    assert len(counted) == 2 and len(_files(cache)) == 2 and list(changed["label"]) == [1, 0, 0]
    # another max length
    short = tokenize(read_glue_tsv("sst2", path), tokenizer, 4, cache, "sst2-train")
    assert len(counted) == 3 and len(_files(cache)) == 3
    assert [len(ids) for ids in short["input_ids"]] == [4, 4, 4]
    # the same tokenizer files in another folder: the same tokens, read from the cache
    tokenizer.save_pretrained(tmp_path / "copy")
    copy = load_tokenizer(str(tmp_path / "copy"))
    assert tokenizer_fingerprint(copy) == tokenizer_fingerprint(tokenizer)
    tokenize(read_glue_tsv("sst2", path), copy, 4, cache, "sst2-train")
    assert len(counted) == 3 and len(_files(cache)) == 3
    # a changed vocabulary at that same path
    copy.add_tokens(["joyfulness"])
    copy.save_pretrained(tmp_path / "copy")
    changed_tokenizer = load_tokenizer(str(tmp_path / "copy"))
    assert tokenizer_fingerprint(changed_tokenizer) != tokenizer_fingerprint(tokenizer)
    tokenize(read_glue_tsv("sst2", path), changed_tokenizer, 4, cache, "sst2-train")
    assert len(counted) == 4 and len(_files(cache)) == 4


def test_the_tokenizer_fingerprint_ignores_what_a_call_leaves_behind(tokenizer):
    before = tokenizer_fingerprint(tokenizer)
    tokenizer(["a b c d e f"], truncation=True, max_length=3)
    tokenizer.pad({"input_ids": [[1], [1, 2]]})
    assert tokenizer_fingerprint(tokenizer) == before


@pytest.mark.parametrize("damage", [b"not arrow", b""])
def test_a_damaged_cache_file_is_built_again(tmp_path, tokenizer, counted, damage):
    cache = tmp_path / "tokenized"
    source = read_glue_tsv("sst2", _sst2(tmp_path))
    first = tokenize(source, tokenizer, 32, cache, "sst2-train").to_dict()
    (file,) = cache.iterdir()
    file.write_bytes(damage)
    assert tokenize(source, tokenizer, 32, cache, "sst2-train").to_dict() == first
    assert len(counted) == 2 and _files(cache) == [file.name]
    assert tokenize(source, tokenizer, 32, cache, "sst2-train").to_dict() == first
    assert len(counted) == 2


def test_an_empty_split_tokenises_to_an_empty_dataset(tmp_path, tokenizer):
    source = read_glue_tsv("sst2", _sst2(tmp_path, ()))
    encoded = tokenize(source, tokenizer, 32, tmp_path / "tokenized", "sst2-train")
    assert len(encoded) == 0 and "input_ids" in encoded.column_names
    assert len(EncodedExamples(encoded)) == 0


_RACE = """
import sys, time
from pathlib import Path
from tasks.glue.data import read_glue_tsv
from tasks.glue.data.tokenized import tokenize
from tasks.glue.models import load_tokenizer, offline_minilm_path
tokenizer = load_tokenizer(offline_minilm_path())
source = read_glue_tsv("sst2", sys.argv[1])
Path(sys.argv[3]).touch()
while not Path(sys.argv[4]).exists():
    time.sleep(0.01)
encoded = tokenize(source, tokenizer, 64, sys.argv[2], "sst2-train")
print(sum(map(sum, encoded["input_ids"])), len(encoded), encoded.cache_files[0]["filename"])
"""


@pytest.mark.slow
def test_two_processes_building_one_cache_both_get_it(tmp_path):
    rng = random.Random(1)
    path = _sst2(tmp_path, [(_sentence(rng), i % 2) for i in range(4000)])
    cache, go = tmp_path / "tokenized", tmp_path / "go"
    commands = [[sys.executable, "-c", _RACE, str(path), str(cache), str(tmp_path / f"ready{i}"), str(go)]
                for i in range(2)]
    procs = [subprocess.Popen(command, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for command in commands]
    deadline = time.monotonic() + 300
    while not all((tmp_path / f"ready{i}").exists() for i in range(2)) and time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.05)
    go.touch()
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-2000:]
    first, second = (out.split() for out, _ in outputs)
    assert first == second  # the same tokens, read from the same file
    assert len(_files(cache)) == 1 and _files(cache)[0].endswith(".arrow")  # no temporary file left


def test_the_cache_dir_is_machine_local_and_load_data_uses_it(tmp_path, counted):
    a = build_config("glue", "clipped_ste", sets=["cache_dir=/a"])
    b = build_config("glue", "clipped_ste", sets=["cache_dir=/b"])
    assert a.hash() == b.hash()
    from test_glue_data import _fake_sdist

    _fake_sdist(tmp_path / "cache" / "vaderSentiment-3.3.2.tar.gz")
    config = _config("vader_sst2", tmp_path, None, "val_size=5", "max_seq_length=16", "train_subset=30")
    GlueTask().load_data(config)
    tokenized = tmp_path / "cache" / "glue" / "tokenized"
    dev, train, val = _files(tokenized)
    assert dev.startswith("vader_sst2-dev-L16-") and train.startswith("vader_sst2-train-L16-")
    assert val.startswith("vader_sst2-val-L16-")
    rows = sum(counted)
    GlueTask().load_data(config)
    assert sum(counted) == rows and len(_files(tokenized)) == 3  # the same rows: read from the cache
    # Only the rows a run uses are tokenised: another training subset tokenises those 20 rows alone.
    other = _config("vader_sst2", tmp_path, None, "val_size=5", "max_seq_length=16", "train_subset=20")
    GlueTask().load_data(other)
    assert sum(counted) == rows + 20 and len(_files(tokenized)) == 4
