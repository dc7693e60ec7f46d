"""GLUE readers on files generated in the real glue_data layouts, and the offline vader_sst2
builder on a small fake vaderSentiment sdist (no network needed). Every reader returns a Hugging
Face ``datasets.Dataset`` with the columns idx, sentence1, sentence2 (None for one sentence), label."""
import io
import os
import random
import shutil
import sys
import tarfile
from pathlib import Path

import pytest

datasets = pytest.importorskip("datasets")

from bench.errors import DataMissingError, UserError  # noqa: E402
from tasks.glue import data as glue  # noqa: E402
from tasks.glue.data import (COLUMNS, GLUE_DATASETS, GlueFormatError, load_glue_split,  # noqa: E402
                             prepare_vader_sst2, read_glue_tsv)
from tasks.glue.data import hub  # noqa: E402

TAB = "\t"
REAL_PROBE = hub._probe  # before the fixture below replaces it

MNLI_PREFIX = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse",
               "sentence2_binary_parse", "sentence1_parse", "sentence2_parse", "sentence1",
               "sentence2"]


def _row(*cells) -> str:
    return TAB.join(str(c) for c in cells)


def _mnli_row(i, s1, s2, annotators, gold):
    return _row(i, 31193 + i, f"{31193 + i}n", "government", f"( ( {s1} ) )", f"( ( {s2} ) )",
                f"(ROOT (S {s1}))", f"(ROOT (S {s2}))", s1, s2, *annotators, gold)


# task -> {split: (file lines, [(text_a, text_b, label)])}; every layout as the GLUE download
# script writes it, with a quote character inside a sentence somewhere.
LAYOUTS = {
    "cola": ("CoLA", {
        "train": ([_row("gj04", 1, "", "Our friends won't buy this analysis, let alone the next one we propose."),
                   _row("gj04", 0, "*", 'They drank the pub "dry.')],
                  [("Our friends won't buy this analysis, let alone the next one we propose.", None, 1),
                   ('They drank the pub "dry.', None, 0)]),
        "dev": ([_row("gj04", 1, "", "The sailors rode the breeze clear of the rocks.")],
                [("The sailors rode the breeze clear of the rocks.", None, 1)]),
    }),
    "sst2": ("SST-2", {
        "train": ([_row("sentence", "label"), _row("hide new secretions from the parental units ", 0),
                   _row('the " plot is charming ', 1)],
                  [("hide new secretions from the parental units ", None, 0),
                   ('the " plot is charming ', None, 1)]),
        "dev": ([_row("sentence", "label"), _row("it 's a charming and often affecting journey . ", 1)],
                [("it 's a charming and often affecting journey . ", None, 1)]),
    }),
    "mrpc": ("MRPC", {
        # MRPC files start with a byte-order mark (copied from Microsoft's originals).
        "train": (["\ufeff" + _row("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"),
                   _row(1, 702876, 702977, 'Amrozi accused his brother , whom he called " the witness " , of '
                        'deliberately distorting his evidence .',
                        'Referring to him as only " the witness " , Amrozi accused his brother .'),
                   _row(0, 2108705, 2108831, "Yucaipa owned Dominick 's .", "Yucaipa bought Dominick 's .")],
                  [('Amrozi accused his brother , whom he called " the witness " , of deliberately '
                    'distorting his evidence .',
                    'Referring to him as only " the witness " , Amrozi accused his brother .', 1),
                   ("Yucaipa owned Dominick 's .", "Yucaipa bought Dominick 's .", 0)]),
        "dev": (["\ufeff" + _row("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"),
                 _row(1, 1355540, 1355592, "He said the foodservice pie business fits.", "The foodservice pie fits.")],
                [("He said the foodservice pie business fits.", "The foodservice pie fits.", 1)]),
    }),
    "stsb": ("STS-B", {
        "train": ([_row("index", "genre", "filename", "year", "old_index", "source1", "source2",
                        "sentence1", "sentence2", "score"),
                   _row(0, "main-captions", "MSRvid", "2012test", "0001", "none", "none",
                        "A plane is taking off.", 'An "air plane is taking off.', "5.000"),
                   _row(1, "main-captions", "MSRvid", "2012test", "0004", "none", "none",
                        "A man is playing a flute.", "A man is playing a bamboo flute.", "3.800")],
                  [("A plane is taking off.", 'An "air plane is taking off.', 5.0),
                   ("A man is playing a flute.", "A man is playing a bamboo flute.", 3.8)]),
        "dev": ([_row("index", "genre", "filename", "year", "old_index", "source1", "source2",
                      "sentence1", "sentence2", "score"),
                 _row(0, "main-captions", "MSRvid", "2012test", "0000", "none", "none",
                      "A man with a hard hat is dancing.", "A man wearing a hard hat is dancing.", "0.000")],
                [("A man with a hard hat is dancing.", "A man wearing a hard hat is dancing.", 0.0)]),
    }),
    "qqp": ("QQP", {
        "train": ([_row("id", "qid1", "qid2", "question1", "question2", "is_duplicate"),
                   _row(133273, 213221, 213222, "How is the life of a math student?",
                        'Which level of "prepration is enough?', 0),
                   _row(402555, 536040, 536041, "How do I control my horny emotions?",
                        "How do you control your horniness?", 1)],
                  [("How is the life of a math student?", 'Which level of "prepration is enough?', 0),
                   ("How do I control my horny emotions?", "How do you control your horniness?", 1)]),
        "dev": ([_row("id", "qid1", "qid2", "question1", "question2", "is_duplicate"),
                 _row(201359, 303345, 303346, "Why are African-Americans so beautiful?",
                      "Why are hispanics so beautiful?", 0)],
                [("Why are African-Americans so beautiful?", "Why are hispanics so beautiful?", 0)]),
    }),
    "mnli": ("MNLI", {
        "train": ([_row(*MNLI_PREFIX, "label1", "gold_label"),
                   _mnli_row(0, "Conceptually cream skimming has two basic dimensions.",
                             'Product and "geography are what make cream skimming work.', ["neutral"], "neutral"),
                   _mnli_row(1, "you know during the season", "You lose the things.", ["entailment"], "entailment")],
                  [("Conceptually cream skimming has two basic dimensions.",
                    'Product and "geography are what make cream skimming work.', 1),
                   ("you know during the season", "You lose the things.", 0)]),
        "dev_matched": ([_row(*MNLI_PREFIX, "label1", "label2", "label3", "label4", "label5", "gold_label"),
                         _mnli_row(0, "The new rights are nice enough", "Everyone really likes the newest benefits",
                                   ["neutral", "entailment", "neutral", "neutral", "neutral"], "neutral"),
                         _mnli_row(1, "This site includes a list", "The Government Executive articles",
                                   ["contradiction"] * 5, "contradiction")],
                        [("The new rights are nice enough", "Everyone really likes the newest benefits", 1),
                         ("This site includes a list", "The Government Executive articles", 2)]),
        "dev_mismatched": ([_row(*MNLI_PREFIX, "label1", "label2", "label3", "label4", "label5", "gold_label"),
                            _mnli_row(0, "Your contribution helped make it possible",
                                      "Your contributions were of no help", ["contradiction"] * 5, "contradiction"),
                            _mnli_row(1, "The other men shuffled.", "The other men were shuffled around.",
                                      ["entailment", "entailment", "neutral", "entailment", "entailment"],
                                      "entailment")],
                           [("Your contribution helped make it possible", "Your contributions were of no help", 2),
                            ("The other men shuffled.", "The other men were shuffled around.", 0)]),
    }),
    "qnli": ("QNLI", {
        "train": ([_row("index", "question", "sentence", "label"),
                   _row(0, "When did the third Digimon series begin?",
                        'Unlike the two seasons before it, "Digimon Tamers takes a darker approach.',
                        "not_entailment"),
                   _row(1, "What came into force after the new constitution was herald?",
                        "As of that day, the new constitution came into force.", "entailment")],
                  [("When did the third Digimon series begin?",
                    'Unlike the two seasons before it, "Digimon Tamers takes a darker approach.', 1),
                   ("What came into force after the new constitution was herald?",
                    "As of that day, the new constitution came into force.", 0)]),
        "dev": ([_row("index", "question", "sentence", "label"),
                 _row(0, "What is the Grotto at Notre Dame?", "It is a Marian place of prayer.", "entailment")],
                [("What is the Grotto at Notre Dame?", "It is a Marian place of prayer.", 0)]),
    }),
    "rte": ("RTE", {
        "train": ([_row("index", "sentence1", "sentence2", "label"),
                   _row(0, "No Weapons of Mass Destruction Found in Iraq Yet.",
                        "Weapons of Mass Destruction Found in Iraq.", "not_entailment"),
                   _row(1, 'A place of "sorrow, after Pope John Paul II died.', "Pope Benedict XVI is the new leader.",
                        "entailment")],
                  [("No Weapons of Mass Destruction Found in Iraq Yet.",
                    "Weapons of Mass Destruction Found in Iraq.", 1),
                   ('A place of "sorrow, after Pope John Paul II died.', "Pope Benedict XVI is the new leader.", 0)]),
        "dev": ([_row("index", "sentence1", "sentence2", "label"),
                 _row(0, "Dana Reeve died.", "Christopher Reeve had an accident.", "not_entailment")],
                [("Dana Reeve died.", "Christopher Reeve had an accident.", 1)]),
    }),
    "wnli": ("WNLI", {
        "train": ([_row("index", "sentence1", "sentence2", "label"),
                   _row(0, "I stuck a pin through a carrot. When I pulled the pin out, it had a hole.",
                        "The carrot had a hole.", 1),
                   _row(1, 'John couldn\'t see the stage with "Billy in front of him because he is so short.',
                        "John is so short.", 0)],
                  [("I stuck a pin through a carrot. When I pulled the pin out, it had a hole.",
                    "The carrot had a hole.", 1),
                   ('John couldn\'t see the stage with "Billy in front of him because he is so short.',
                    "John is so short.", 0)]),
        "dev": ([_row("index", "sentence1", "sentence2", "label"),
                 _row(0, "The drain is clogged with hair. It has to be cleaned.", "The hair has to be cleaned.", 0)],
                [("The drain is clogged with hair. It has to be cleaned.", "The hair has to be cleaned.", 0)]),
    }),
}


def _write(path: Path, lines, newline="\n", encoding="utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(line + newline for line in lines).encode(encoding))
    return path


def _one_line(message: str) -> str:
    assert message and "\n" not in message and "\r" not in message, message
    return message


def _triples(dataset) -> list[tuple]:
    """(sentence1, sentence2, label) of each row, in order."""
    assert isinstance(dataset, datasets.Dataset) and dataset.column_names == list(COLUMNS)
    assert list(dataset["idx"]) == list(range(len(dataset)))
    return [(row["sentence1"], row["sentence2"], row["label"]) for row in dataset]


@pytest.fixture(autouse=True)
def hub_calls(monkeypatch):
    """No test may reach the Hugging Face hub: it is switched off as a user would (HF_HUB_OFFLINE), and
    whatever gets past that (a probe of the hub, a load) is recorded here and fails as offline."""
    calls = []

    def probe():
        calls.append("probe")
        return "the tests do not probe the hub"

    def load(spec, split):
        calls.append(("load", spec.hf_name, spec.hf_split(split)))
        raise ConnectionError("the tests do not reach the hub")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "_probe", probe)
    monkeypatch.setattr(hub, "_load_hub", load)
    return calls


def hub_online(monkeypatch, load=None) -> None:
    """The hub as on an online machine: no offline variable, not the libraries' offline mode, the
    probe answered; ``load`` (spec, split) -> the hub's Dataset stands for load_dataset."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "_probe", lambda: None)
    if load is not None:
        monkeypatch.setattr(hub, "_load_hub", load)


# --------------------------------------------------------------------------- specs


def test_registry_holds_the_nine_tasks_and_vader_sst2():
    assert GLUE_DATASETS.names() == sorted(["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte",
                                         "wnli", "vader_sst2"])
    spec = GLUE_DATASETS.get("mnli")
    assert spec.label_names == ("entailment", "neutral", "contradiction")
    assert spec.dev_splits == ("dev_matched", "dev_mismatched") and spec.num_labels == 3
    for name in ("rte", "qnli"):
        assert GLUE_DATASETS.get(name).label_names == ("entailment", "not_entailment")
    for name in ("cola", "sst2", "mrpc", "qqp", "wnli", "vader_sst2"):
        assert GLUE_DATASETS.get(name).label_names == ("0", "1")
    stsb = GLUE_DATASETS.get("stsb")
    assert stsb.is_regression and stsb.num_labels == 1 and stsb.label_names == ()
    metrics = {n: GLUE_DATASETS.get(n).metrics for n in GLUE_DATASETS.names()}
    assert metrics == {"cola": ("mcc",), "sst2": ("accuracy",), "mrpc": ("f1", "accuracy"),
                       "stsb": ("pearson", "spearman"), "qqp": ("f1", "accuracy"), "mnli": ("accuracy",),
                       "qnli": ("accuracy",), "rte": ("accuracy",), "wnli": ("accuracy",),
                       "vader_sst2": ("accuracy",)}
    assert [n for n in GLUE_DATASETS.names() if not GLUE_DATASETS.get(n).has_header] == ["cola"]
    assert {GLUE_DATASETS.get(n).folder for n in GLUE_DATASETS.names()} >= {
        "CoLA", "SST-2", "MRPC", "STS-B", "QQP", "MNLI", "QNLI", "RTE", "WNLI"}
    with pytest.raises(UserError, match="valid choices: cola"):
        glue.get_dataset("mnli-mm")


# --------------------------------------------------------------------------- real layouts


@pytest.mark.parametrize("task", sorted(LAYOUTS))
def test_each_task_reads_its_real_layout_from_glue_data(tmp_path, task):
    folder, splits = LAYOUTS[task]
    spec = GLUE_DATASETS.get(task)
    assert spec.folder == folder and set(splits) == set(spec.splits)
    for split, (lines, _) in splits.items():
        _write(tmp_path / "glue_data" / folder / f"{split}.tsv", lines)
    for split, (_, expected) in splits.items():
        examples = load_glue_split(task, split, tmp_path)
        assert _triples(examples) == expected
        label = examples.features["label"]
        assert label == (datasets.Value("float64") if spec.is_regression
                         else datasets.ClassLabel(names=list(spec.label_names)))
        for _, _, value in _triples(examples):
            assert isinstance(value, float if spec.is_regression else int)
            assert spec.is_regression or 0 <= value < spec.num_labels


def test_crlf_line_ends_and_a_missing_final_newline_are_read(tmp_path):
    lines, expected = LAYOUTS["rte"][1]["train"]
    path = tmp_path / "train.tsv"
    path.write_bytes("\r\n".join(lines).encode())
    assert _triples(read_glue_tsv("rte", path)) == expected


def test_a_unicode_line_separator_inside_a_sentence_does_not_split_the_line(tmp_path):
    path = _write(tmp_path / "dev.tsv", [_row("sentence", "label"), _row("one\u2028two\x85three", 1)])
    assert _triples(read_glue_tsv("sst2", path)) == [("one\u2028two\x85three", None, 1)]


# --------------------------------------------------------------------------- malformed files


def _rte(lines):
    return [_row("index", "sentence1", "sentence2", "label")] + lines


@pytest.mark.parametrize("task,lines,line_no,needle", [
    ("rte", _rte([_row(0, "a", "b", "entailment"), _row(1, "a", "b", "entailment"), _row(2, "a only", "entailment")]),
     4, "expected 4 tab-separated columns (index, sentence1, sentence2, label), got 3"),
    ("rte", _rte([_row(0, "a", "b", "entailment"), _row(1, "a", "b", "maybe")]), 3, "unknown label 'maybe'"),
    ("mnli", [_row(*MNLI_PREFIX, "label1", "gold_label"), _mnli_row(0, "a", "b", ["neutral"], "maybe")],
     2, "unknown label 'maybe' (expected one of: entailment, neutral, contradiction)"),
    ("stsb", [_row("index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1",
                   "sentence2", "score"),
              _row(0, "main-news", "headlines", "2015", "0001", "none", "none", "a", "b", "high")],
     2, "'high' is not a similarity score between 0 and 5"),
    ("stsb", [_row("index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1",
                   "sentence2", "score"),
              _row(0, "main-news", "headlines", "2015", "0001", "none", "none", "a", "b", "nan")],
     2, "'nan' is not a similarity score"),
    ("rte", [_row("index", "question", "sentence", "label"), _row(0, "a", "b", "entailment")],
     1, "is not the RTE layout (expected: index, sentence1, sentence2, label)"),
    ("sst2", [_row(0, "hide new secretions", 0)], 1, "is not the SST-2 layout"),
    ("mnli", [_row(*MNLI_PREFIX, "gold_label", "label1"), _mnli_row(0, "a", "b", ["neutral"], "neutral")],
     1, "is not the MNLI layout"),
    ("cola", [_row("gj04", 1, "", "Fine."), _row("gj04", 1, "Missing the source column.")],
     2, "expected 4 tab-separated columns (source, label, original_label, sentence), got 3"),
    ("cola", [_row("gj04", "*", "", "Label in the wrong column.")], 1, "unknown label '*'"),
    ("qqp", [_row("id", "qid1", "qid2", "question1", "question2", "is_duplicate"),
             _row(1, 2, 3, "why?", "why not?", 1, "extra")], 2, "expected 6 tab-separated columns"),
    ("wnli", [], 1, "the file is empty"),
])
def test_malformed_files_raise_one_line_naming_file_and_line(tmp_path, task, lines, line_no, needle):
    path = _write(tmp_path / "glue_data" / GLUE_DATASETS.get(task).folder / "dev.tsv", lines)
    with pytest.raises(GlueFormatError) as info:
        read_glue_tsv(task, path)
    message = _one_line(str(info.value))
    assert message.startswith(f"{path} line {line_no}: ")
    assert needle in message
    assert isinstance(info.value, DataMissingError)


def test_bytes_that_are_not_utf8_name_the_line(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_bytes(b"sentence\tlabel\nfine\t1\ncaf\xe9\t0\n")
    with pytest.raises(GlueFormatError, match=r"train\.tsv line 3: not UTF-8"):
        read_glue_tsv("sst2", path)


# --------------------------------------------------------------------------- load_glue_split


def test_load_glue_split_finds_both_folder_layouts_and_prefers_the_direct_one(tmp_path):
    lines, expected = LAYOUTS["rte"][1]["dev"]
    _write(tmp_path / "nested" / "glue_data" / "RTE" / "dev.tsv", lines)
    _write(tmp_path / "direct" / "RTE" / "dev.tsv", lines)
    for root in (tmp_path / "nested", tmp_path / "direct", str(tmp_path / "direct")):
        assert _triples(load_glue_split("rte", "dev", root)) == expected
    # Both present: data_root/<Folder> wins.
    _write(tmp_path / "direct" / "glue_data" / "RTE" / "dev.tsv", _rte([_row(0, "x", "y", "entailment")]))
    assert load_glue_split("rte", "dev", tmp_path / "direct")[0]["sentence1"] == expected[0][0]


def test_missing_folder_is_one_line_with_what_was_looked_for_and_the_fix(tmp_path, monkeypatch, hub_calls):
    """With a data root a missing file is reported at once: the hub is not asked even when it is online
    (no probe, no load_dataset and its retries)."""
    hub_online(monkeypatch, lambda spec, split: pytest.fail("the hub was asked"))
    with pytest.raises(DataMissingError) as info:
        load_glue_split("rte", "dev", tmp_path)
    message = _one_line(str(info.value))
    assert not isinstance(info.value, GlueFormatError)
    assert str(tmp_path / "RTE" / "dev.tsv") in message
    assert str(tmp_path / "glue_data" / "RTE" / "dev.tsv") in message
    assert "the Hugging Face hub is asked only without --data-root" in message
    assert message.endswith("put the GLUE data (glue_data/RTE/{train,dev}.tsv, e.g. from the GLUE benchmark's "
                            "download script) under --data-root, or run without --data-root where the Hugging "
                            "Face hub is reachable")
    assert hub_calls == []
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataMissingError, match=r"no --data-root given.*glue_data/MNLI/"
                                               r"\{train,dev_matched,dev_mismatched\}\.tsv"):
        load_glue_split("mnli", "dev_matched", None)


def test_an_offline_variable_keeps_the_hub_from_being_asked(monkeypatch, hub_calls):
    """HF_HUB_OFFLINE / HF_DATASETS_OFFLINE set after the libraries were imported (which then no longer
    read it): load_dataset is not called, and the hub is not probed."""
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    for variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv("HF_HUB_OFFLINE")
        monkeypatch.setenv(variable, "1")
        with pytest.raises(DataMissingError) as info:
            load_glue_split("rte", "dev")
        assert f"the Hugging Face hub is off ({variable}=1)" in _one_line(str(info.value))
        monkeypatch.delenv(variable)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_calls == []


def test_an_unreachable_hub_is_probed_once_and_not_asked(monkeypatch, hub_calls):
    hub_online(monkeypatch)
    monkeypatch.setattr(hub, "_probe", lambda: hub_calls.append("probe") or
                        "the Hugging Face hub (https://huggingface.co) is unreachable (ConnectError: no DNS)")
    with pytest.raises(DataMissingError) as info:
        load_glue_split("rte", "dev")
    message = _one_line(str(info.value))
    assert "with no --data-root given; the Hugging Face hub (https://huggingface.co) is unreachable" in message
    assert hub_calls == ["probe"]  # no load_dataset


def test_the_probe_is_one_request_without_retries_once_a_process(monkeypatch):
    import huggingface_hub

    requests = []

    class Session:
        def head(self, url, timeout):
            requests.append((url, timeout))
            raise OSError("[Errno -2] Name or service not known\nmore")

    monkeypatch.setattr(huggingface_hub, "get_session", Session)
    REAL_PROBE.cache_clear()
    try:
        why = REAL_PROBE()
        assert REAL_PROBE() == why and len(requests) == 1
        assert requests[0] == (huggingface_hub.constants.ENDPOINT, hub.PROBE_TIMEOUT_S)
        assert _one_line(why) == (f"the Hugging Face hub ({huggingface_hub.constants.ENDPOINT}) is unreachable "
                                  "(OSError: [Errno -2] Name or service not known)")
    finally:
        REAL_PROBE.cache_clear()


def test_the_libraries_offline_mode_reads_their_cache(monkeypatch, hub_calls):
    """HF_HUB_OFFLINE=1 set before the libraries were imported: load_dataset is called (it reads its
    local cache only, with no request) and the hub is not probed."""
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataMissingError, match="Hugging Face datasets failed"):
        load_glue_split("rte", "dev")
    assert hub_calls == [("load", "rte", "validation")]


def test_hub_failure_becomes_part_of_the_one_line_error(monkeypatch):
    def load_hub(spec, split):
        raise ConnectionError("Couldn't reach 'glue' on the Hub (LocalEntryNotFoundError)\nTraceback ...")

    hub_online(monkeypatch, load_hub)
    with pytest.raises(DataMissingError) as info:
        load_glue_split("qqp", "train")
    message = _one_line(str(info.value))
    assert "ConnectionError: Couldn't reach 'glue' on the Hub" in message
    assert "Hugging Face hub is reachable" in message


def test_hub_rows_are_mapped_to_examples_with_the_same_label_order(monkeypatch):
    calls = []
    features = datasets.Features({"premise": datasets.Value("string"), "hypothesis": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["entailment", "neutral", "contradiction"]),
                                  "idx": datasets.Value("int32")})

    def load_hub(spec, split):  # the hub's own layout of MNLI, as a real Dataset
        calls.append(("glue", spec.hf_name, spec.hf_split(split)))
        return datasets.Dataset.from_dict({"premise": ["p"], "hypothesis": ["h"], "label": [2], "idx": [0]},
                                          features=features)

    hub_online(monkeypatch, load_hub)
    assert _triples(load_glue_split("mnli", "dev_mismatched")) == [("p", "h", 2)]
    assert calls == [("glue", "mnli", "validation_mismatched")]


def test_an_unknown_split_or_dataset_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="valid choices: train, dev_matched, dev_mismatched"):
        load_glue_split("mnli", "dev", tmp_path)
    with pytest.raises(UserError, match="unknown GLUE dataset 'sst-2'"):
        load_glue_split("sst-2", "dev", tmp_path)


# --------------------------------------------------------------------------- vader_sst2

# (id, score, text) as in movieReviewSnippets_GroundTruth.txt: UTF-8, CRLF line ends.
SNIPPETS = [(str(i + 1), score, text) for i, (score, text) in enumerate(
    [(2.26666666667, "The Rock is destined to be the 21st Century's new ''Conan''."),
     (-0.6, "Effective but too tepid biopic"),
     (0.0, "A movie scored exactly zero."),
     (1.5, "Lovely &amp; Amazing involves us."),
     (-3.27777777778, 'could turn an Imax theater into a 9" black and white portable TV.'),
     (3.94117647059, "A caf\u00e9 \u2013 and a triumph."),
     (-0.0, "Negative zero is zero too.")]
    + [((-1) ** i * (0.25 + i % 7 / 2), f"Generated review sentence number {i}.") for i in range(53)])]


def _fake_sdist(path: Path, rows=SNIPPETS, inner_name="hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"):
    """A small stand-in with the real nested layout of vaderSentiment-3.3.2.tar.gz."""
    def add(archive, name, payload):
        info = tarfile.TarInfo(name)
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))

    text = "\r\n".join(f"{i}\t{score}\t{sentence}" for i, score, sentence in rows).encode("utf-8")
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w:gz") as archive:
        add(archive, "hutto_ICWSM_2014/tweets_GroundTruth.txt", b"1\t1.0\tnot movies\r\n")
        add(archive, inner_name, text)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        add(archive, "vaderSentiment-3.3.2/setup.py", b"")
        add(archive, "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz", inner.getvalue())
    return path


def _expected_labels():
    return {" ".join(t.replace("&amp;", "&").split()): int(s > 0) for _, s, t in SNIPPETS if s != 0}


def _read_split(folder: Path, split: str):
    lines = (folder / f"{split}.tsv").read_text(encoding="utf-8").split("\n")
    assert lines[0] == "sentence\tlabel" and lines[-1] == ""
    return [tuple(line.split("\t")) for line in lines[1:-1]]


@pytest.fixture
def no_pip(monkeypatch):
    def refuse(dest):
        raise AssertionError("pip must not run when the sdist is in the cache dir")
    monkeypatch.setattr(glue.vader_sst2, "_pip_download_command", refuse)


def test_vader_sst2_from_a_cached_sdist_labels_by_score_sign_and_drops_zero(tmp_path, no_pip):
    cache = tmp_path / "cache"
    _fake_sdist(cache / "vaderSentiment-3.3.2.tar.gz")
    folder = prepare_vader_sst2(cache)
    assert folder == cache / "vader_sst2"
    rows = {split: _read_split(folder, split) for split in ("train", "dev")}
    got = {sentence: int(label) for split in rows for sentence, label in rows[split]}
    assert got == _expected_labels()
    assert sum(len(r) for r in rows.values()) == len(SNIPPETS) - 2  # the two zero scores
    assert "Lovely & Amazing involves us." in got and "A caf\u00e9 \u2013 and a triumph." in got
    assert rows["dev"] and len(rows["dev"]) < len(rows["train"])
    assert not [p.name for p in folder.iterdir() if p.name not in ("train.tsv", "dev.tsv")]  # no temp files
    # The files read back through the SST-2 reader.
    examples = load_glue_split("vader_sst2", "dev", cache_dir=cache)
    assert _triples(examples) == [(s, None, int(label)) for s, label in rows["dev"]]


def test_vader_sst2_split_is_deterministic_and_independent_of_file_order(tmp_path, no_pip):
    shuffled = list(SNIPPETS)
    random.Random(3).shuffle(shuffled)
    folders = []
    for name, rows in (("a", SNIPPETS), ("b", SNIPPETS), ("c", shuffled)):
        _fake_sdist(tmp_path / name / "vaderSentiment-3.3.2.tar.gz", rows)
        folders.append(prepare_vader_sst2(tmp_path / name))
    a, b, c = folders
    for split in ("train", "dev"):
        assert (a / f"{split}.tsv").read_bytes() == (b / f"{split}.tsv").read_bytes()
        assert sorted(_read_split(a, split)) == sorted(_read_split(c, split))


def test_vader_sst2_reuses_its_cache_and_rebuilds_a_partial_one(tmp_path, monkeypatch, no_pip):
    cache = tmp_path / "cache"
    _fake_sdist(cache / "vaderSentiment-3.3.2.tar.gz")
    folder = prepare_vader_sst2(cache)
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    real_reader = glue.vader_sst2._read_movie_snippets

    def no_extract(sdist):
        raise AssertionError("the cached files must be reused")

    monkeypatch.setattr(glue.vader_sst2, "_read_movie_snippets", no_extract)
    assert prepare_vader_sst2(cache) == folder
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps
    # An interrupted build (train.tsv never written) is rebuilt.
    dev = (folder / "dev.tsv").read_bytes()
    (folder / "train.tsv").unlink()
    calls = []
    monkeypatch.setattr(glue.vader_sst2, "_read_movie_snippets", lambda sdist: calls.append(sdist) or real_reader(sdist))
    prepare_vader_sst2(cache)
    assert calls == [cache / "vaderSentiment-3.3.2.tar.gz"]
    assert (folder / "train.tsv").is_file() and (folder / "dev.tsv").read_bytes() == dev


def test_vader_sst2_downloads_the_sdist_with_pip_into_the_cache(tmp_path, monkeypatch):
    real = glue.vader_sst2._pip_download_command("/d")
    assert real == [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                    "vadersentiment==3.3.2", "-d", "/d"]
    source = _fake_sdist(tmp_path / "pypi" / "vaderSentiment-3.3.2.tar.gz")
    commands = []

    def fake_pip(dest):
        commands.append(dest)
        return [sys.executable, "-c", "import shutil, sys; shutil.copy(sys.argv[1], sys.argv[2])",
                str(source), dest]

    monkeypatch.setattr(glue.vader_sst2, "_pip_download_command", fake_pip)
    cache = tmp_path / "cache"
    folder = prepare_vader_sst2(cache)
    assert len(commands) == 1 and (cache / "vaderSentiment-3.3.2.tar.gz").is_file()
    assert sorted(p.name for p in cache.iterdir()) == ["vaderSentiment-3.3.2.tar.gz", "vader_sst2"]
    assert {s: int(label) for split in ("train", "dev") for s, label in _read_split(folder, split)} \
        == _expected_labels()


def test_a_failed_pip_download_is_one_line_with_the_fix(tmp_path, monkeypatch):
    script = ("import sys; sys.stderr.write('Looking in indexes\\nERROR: Could not find a version that "
              "satisfies the requirement vadersentiment==3.3.2\\n'); sys.exit(1)")
    monkeypatch.setattr(glue.vader_sst2, "_pip_download_command", lambda dest: [sys.executable, "-c", script])
    cache = tmp_path / "cache"
    with pytest.raises(DataMissingError) as info:
        prepare_vader_sst2(cache)
    message = _one_line(str(info.value))
    assert "ERROR: Could not find a version" in message
    assert "network access to PyPI" in message and "vaderSentiment-3.3.2.tar.gz" in message
    assert str(cache) in message
    assert not (cache / "vader_sst2").exists()
    assert list(cache.iterdir()) == []  # the pip temp folder is gone


def test_a_wrong_sdist_in_the_cache_is_one_line(tmp_path, no_pip):
    cache = tmp_path / "cache"
    _fake_sdist(cache / "vaderSentiment-3.3.2.tar.gz", inner_name="hutto_ICWSM_2014/other.txt")
    with pytest.raises(DataMissingError, match="holds no movieReviewSnippets_GroundTruth.txt") as info:
        prepare_vader_sst2(cache)
    _one_line(str(info.value))
    (cache / "vaderSentiment-3.3.2.tar.gz").write_bytes(b"not a tar file")
    with pytest.raises(DataMissingError, match="cannot read .*delete it") as info:
        prepare_vader_sst2(cache)
    _one_line(str(info.value))


def test_default_cache_dir_follows_bench_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    assert glue.default_cache_dir() == tmp_path
    monkeypatch.delenv("BENCH_CACHE")
    assert glue.default_cache_dir() == Path.home() / ".cache" / "surge-bench"


def _cached_real_sdist():
    for folder in (os.environ.get("BENCH_CACHE"), Path.home() / ".cache" / "surge-bench"):
        if folder:
            found = glue.vader_sst2._find_sdist(Path(folder).expanduser())
            if found is not None:
                return found
    return None


@pytest.mark.skipif(_cached_real_sdist() is None,
                    reason="the real vaderSentiment-3.3.2.tar.gz is not in the cache dir")
def test_vader_sst2_from_the_real_archive(tmp_path, no_pip):
    shutil.copy(_cached_real_sdist(), tmp_path / "vaderSentiment-3.3.2.tar.gz")
    rows = glue.vader_sst2._read_movie_snippets(tmp_path / "vaderSentiment-3.3.2.tar.gz")
    assert len(rows) == 10605 and [r[0] for r in rows[:3]] == ["1", "2", "3"]
    assert sum(score == 0 for _, score, _ in rows) == 37
    folder = prepare_vader_sst2(tmp_path)
    train, dev = (load_glue_split("vader_sst2", s, cache_dir=tmp_path) for s in ("train", "dev"))
    assert len(train) + len(dev) == 10605 - 37
    assert 0.08 < len(dev) / (len(train) + len(dev)) < 0.12
    for split in (train, dev):
        assert 0.45 < sum(split["label"]) / len(split) < 0.55
    assert not any("&amp;" in text or "\t" in text for split in (train, dev) for text in split["sentence1"])
    assert folder == tmp_path / "vader_sst2"
