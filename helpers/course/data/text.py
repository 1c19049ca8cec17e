"""Parallel text for translation: Multi30k, your own corpus, and an offline stand-in
(Transformer track, week 3).

Any parallel corpus in the *plain-text layout* loads through one function,
:func:`load_parallel_folder`: one sentence per line, one file per split and language::

    <folder>/train.en   <folder>/train.de      (``.gz`` also accepted)
    <folder>/val.en     <folder>/val.de
    <folder>/test.en    <folder>/test.de       (Multi30k calls this one test_2016_flickr)

Line ``i`` of ``train.en`` translates line ``i`` of ``train.de``; files whose line counts
differ are refused, naming both files and their counts.
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Iterable, Mapping
from pathlib import Path

from .registry import DataLayoutError, DatasetSpec, register

MULTI30K_SPLITS = {"train": "train", "val": "val", "test": "test_2016_flickr"}
DEFAULT_SPLITS = {"train": "train", "val": "val", "test": "test"}

Pairs = list[tuple[str, str]]


def read_text_lines(path: Path, what: str = "one sentence per line") -> list[str]:
    """The lines of a UTF-8 text file (plain or ``.gz``; a byte-order mark is skipped), split on
    ``\n`` only (``\r\n`` too): U+2028, U+0085, form feeds and other characters that
    ``str.splitlines`` treats as line ends stay inside their line (issue #24). A file that is
    not UTF-8 raises :class:`DataLayoutError` naming it."""
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            text = f.read().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataLayoutError(f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason}). Fix: "
                              f"save it as UTF-8, {what}.") from exc
    except (OSError, EOFError) as exc:
        raise DataLayoutError(f"{path} cannot be read ({type(exc).__name__}: {exc}). Fix: copy or "
                              f"download it again, {what}.") from exc
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _read_lines(folder: Path, stem: str) -> tuple[Path, list[str]]:
    for name in (stem, stem + ".gz"):
        path = folder / name
        if path.is_file():
            return path, read_text_lines(path)
    raise DataLayoutError(f"{folder / stem} (or {stem}.gz) is missing")


def load_parallel_folder(folder: str | Path, src: str = "en", tgt: str = "de",
                         splits: Mapping[str, str] = DEFAULT_SPLITS) -> dict[str, Pairs]:
    """Read ``{split: [(source, target), ...]}`` from the plain-text layout above (week 3;
    week 4 uses it for your own dataset)."""
    folder = Path(folder)
    out: dict[str, Pairs] = {}
    for split, stem in splits.items():
        src_path, src_lines = _read_lines(folder, f"{stem}.{src}")
        tgt_path, tgt_lines = _read_lines(folder, f"{stem}.{tgt}")
        if len(src_lines) != len(tgt_lines):
            raise DataLayoutError(
                f"misaligned {split} split: {src_path} has {len(src_lines)} lines but {tgt_path} "
                f"has {len(tgt_lines)}. Fix: line i of one file must translate line i of the "
                f"other; remove the extra lines (often a trailing blank line or a header)."
            )
        pairs, one_sided = [], []
        for number, (s, t) in enumerate(zip(src_lines, tgt_lines), start=1):
            s, t = s.strip(), t.strip()
            if s and t:
                pairs.append((s, t))
            elif s or t:  # a sentence without its translation: nothing to learn from
                one_sided.append(number)
        if one_sided:
            shown = ", ".join(map(str, one_sided[:10])) + (" ..." if len(one_sided) > 10 else "")
            print(f"note: {len(one_sided)} line(s) of {src_path} / {tgt_path} have text on one side "
                  f"only (line {shown}); those pairs were left out.", flush=True)
        if not pairs:
            raise DataLayoutError(f"the {split} split ({src_path}, {tgt_path}) is empty. Fix: "
                                  f"put one sentence per line in both files.")
        out[split] = pairs
    return out


# --------------------------------------------------------------------------- stand-in
# A small English -> German grammar. It is tiny, but it needs what translation needs:
# word choice, gender agreement (der/die/das, adjective endings), case (den for a masculine
# object), and reordering (after "Today", German puts the verb second: "Heute sieht der Hund").
_NOUNS = {"dog": ("Hund", "m"), "man": ("Mann", "m"), "bird": ("Vogel", "m"),
          "ball": ("Ball", "m"), "teacher": ("Lehrer", "m"), "cat": ("Katze", "f"),
          "woman": ("Frau", "f"), "flower": ("Blume", "f"), "door": ("Tür", "f"),
          "child": ("Kind", "n"), "girl": ("Mädchen", "n"), "horse": ("Pferd", "n"),
          "book": ("Buch", "n"), "car": ("Auto", "n")}
_ADJECTIVES = {"red": "rot", "big": "groß", "small": "klein", "old": "alt", "young": "jung",
               "happy": "glücklich"}
_VERBS = {"sees": "sieht", "likes": "mag", "finds": "findet", "watches": "beobachtet",
          "carries": "trägt", "paints": "malt"}
_PLACES = {"park": ("Park", "m"), "garden": ("Garten", "m"), "house": ("Haus", "n"),
           "city": ("Stadt", "f")}
_TIMES = {"Today": "Heute", "Often": "Oft"}
_ARTICLES = {("the", "nom"): {"m": "der", "f": "die", "n": "das"},
             ("the", "acc"): {"m": "den", "f": "die", "n": "das"},
             ("a", "nom"): {"m": "ein", "f": "eine", "n": "ein"},
             ("a", "acc"): {"m": "einen", "f": "eine", "n": "ein"}}
_ENDINGS = {("the", "nom"): {"m": "e", "f": "e", "n": "e"},
            ("the", "acc"): {"m": "en", "f": "e", "n": "e"},
            ("a", "nom"): {"m": "er", "f": "e", "n": "es"},
            ("a", "acc"): {"m": "en", "f": "e", "n": "es"}}


def _noun_phrase(rng: random.Random, case: str) -> tuple[str, str]:
    noun = rng.choice(sorted(_NOUNS))
    de_noun, gender = _NOUNS[noun]
    det = rng.choice(["the", "a"])
    adj = rng.choice([None] + sorted(_ADJECTIVES))
    first = adj or noun
    en_det = "an" if det == "a" and first[0] in "aeiou" else det
    en = f"{en_det} {adj + ' ' if adj else ''}{noun}"
    de_art = _ARTICLES[(det, case)][gender]
    de_adj = f"{_ADJECTIVES[adj]}{_ENDINGS[(det, case)][gender]} " if adj else ""
    return en, f"{de_art} {de_adj}{de_noun}"


def synthetic_sentence(rng: random.Random) -> tuple[str, str]:
    """One English sentence and its German translation from the stand-in grammar."""
    subj_en, subj_de = _noun_phrase(rng, "nom")
    obj_en, obj_de = _noun_phrase(rng, "acc")
    verb = rng.choice(sorted(_VERBS))
    place_en = place_de = ""
    if rng.random() < 0.4:
        place = rng.choice(sorted(_PLACES))
        de_place, gender = _PLACES[place]
        place_en = f" in the {place}"
        place_de = f" im {de_place}" if gender in "mn" else f" in der {de_place}"
    if rng.random() < 0.3:
        time = rng.choice(sorted(_TIMES))
        en = f"{time} {subj_en} {verb} {obj_en}{place_en}."
        de = f"{_TIMES[time]} {_VERBS[verb]} {subj_de} {obj_de}{place_de}."
    else:
        en = f"{subj_en} {verb} {obj_en}{place_en}."
        de = f"{subj_de} {_VERBS[verb]} {obj_de}{place_de}."
    return en[0].upper() + en[1:], de[0].upper() + de[1:]


def synthetic_translation(n_train: int = 4000, n_val: int = 200, n_test: int = 200,
                          seed: int = 0) -> dict[str, Pairs]:
    """Offline stand-in for Multi30k: disjoint splits of distinct sentence pairs (week 3)."""
    rng = random.Random(seed)
    seen: set[str] = set()
    pairs: Pairs = []
    total = n_train + n_val + n_test
    while len(pairs) < total:
        en, de = synthetic_sentence(rng)
        if en not in seen:
            seen.add(en)
            pairs.append((en, de))
    return {"train": pairs[:n_train], "val": pairs[n_train:n_train + n_val],
            "test": pairs[n_train + n_val:]}


# --------------------------------------------------------------------------- Multi30k
def _write_lines(path: Path, lines: Iterable[str]) -> None:
    path.write_text("".join(line.replace("\n", " ").strip() + "\n" for line in lines),
                    encoding="utf-8")


def _download_multi30k(root: Path) -> None:
    """From the Hugging Face hub (``bentrevett/multi30k``: task 1, en-de, the 2016 flickr
    test set), written out in the official raw layout."""
    from datasets import load_dataset as hf_load_dataset  # noqa: PLC0415 - heavy, only to download

    hf = hf_load_dataset("bentrevett/multi30k", cache_dir=str(root / ".hf-cache"))
    folder = root / "multi30k"
    folder.mkdir(parents=True, exist_ok=True)
    for split, hf_split in (("train", "train"), ("val", "validation"),
                            ("test_2016_flickr", "test")):
        rows = hf[hf_split]
        _write_lines(folder / f"{split}.en", rows["en"])
        _write_lines(folder / f"{split}.de", rows["de"])


MULTI30K = register(DatasetSpec(
    name="multi30k",
    title="Multi30k (task 1, English-German)",
    folder="multi30k",
    files=tuple(f"{stem}.{lang}|{stem}.{lang}.gz" for stem in MULTI30K_SPLITS.values()
                for lang in ("en", "de")),
    source="Hugging Face hub: bentrevett/multi30k (raw files: github.com/multi30k/dataset, "
           "data/task1/raw/)",
    load=lambda folder: load_parallel_folder(folder, splits=MULTI30K_SPLITS),
    download=_download_multi30k,
    standin=lambda **kw: synthetic_translation(**kw),
    size_hint="6 files, 4 MB",
))


# --------------------------------------------------------------------------- sentiment (week 4)
Labeled = list[tuple[str, int]]

_POSITIVE = ["wonderful", "moving", "brilliant", "funny", "charming", "gripping", "beautiful",
             "clever", "delightful", "superb"]
_NEGATIVE = ["boring", "dull", "awful", "clumsy", "tedious", "predictable", "messy", "bland",
             "painful", "forgettable"]
_SUBJECTS = ["the film", "this movie", "the story", "the acting", "the script", "the ending",
             "the soundtrack", "the plot", "the cast", "the direction"]


def synthetic_reviews(n: int = 600, seed: int = 0) -> Labeled:
    """Offline stand-in for SST-2: short reviews with label 1 (positive) or 0 (negative).
    Negation ("not boring") and contrast ("..., but ...") make it more than a word list."""
    rng = random.Random(seed)
    out: Labeled = []
    while len(out) < n:
        label = rng.randint(0, 1)
        subject = rng.choice(_SUBJECTS)
        words = _POSITIVE if label else _NEGATIVE
        form = rng.random()
        if form < 0.5:
            text = f"{subject} was {rng.choice(words)}"
        elif form < 0.75:  # negated opposite: "not boring" is positive
            text = f"{subject} was not {rng.choice(_NEGATIVE if label else _POSITIVE)}"
        else:  # the clause after "but" decides
            other = rng.choice(_SUBJECTS)
            text = (f"{other} was {rng.choice(_NEGATIVE if label else _POSITIVE)}, "
                    f"but {subject} was {rng.choice(words)}")
        out.append((text[0].upper() + text[1:] + ".", label))
    return out


def load_glue_sst2(folder: Path) -> dict[str, Labeled]:
    """GLUE's SST-2 layout: ``train.tsv`` and ``dev.tsv`` with a ``sentence<TAB>label`` header."""
    out = {}
    for split, name in (("train", "train.tsv"), ("validation", "dev.tsv")):
        path = folder / name
        lines = read_text_lines(path, "one 'sentence<TAB>label' per line")
        if not lines or lines[0].split("\t")[:2] != ["sentence", "label"]:
            raise DataLayoutError(f"{path} does not start with the GLUE header 'sentence<TAB>label'. "
                                  f"Fix: use the files from GLUE's SST-2.zip unchanged.")
        rows = []
        for number, line in enumerate(lines[1:], start=2):
            parts = line.rsplit("\t", 1)
            if len(parts) != 2 or parts[1] not in ("0", "1"):
                raise DataLayoutError(f"{path}, line {number}: expected 'sentence<TAB>0 or 1', "
                                      f"got {line[:60]!r}")
            rows.append((parts[0].strip(), int(parts[1])))
        out[split] = rows
    return out


def _download_sst2(root: Path) -> None:
    from datasets import load_dataset as hf_load_dataset  # noqa: PLC0415 - heavy, only to download

    hf = hf_load_dataset("glue", "sst2", cache_dir=str(root / ".hf-cache"))
    folder = root / "SST-2"
    folder.mkdir(parents=True, exist_ok=True)
    for split, name in (("train", "train.tsv"), ("validation", "dev.tsv")):
        rows = hf[split]
        text = "sentence\tlabel\n" + "".join(f"{s.strip()}\t{label}\n" for s, label in zip(rows["sentence"], rows["label"]))
        (folder / name).write_text(text, encoding="utf-8")


SST2 = register(DatasetSpec(
    name="sst2",
    title="SST-2 (GLUE, binary sentiment)",
    folder="SST-2",
    files=("train.tsv", "dev.tsv"),
    source="Hugging Face hub: glue/sst2 (GLUE's SST-2.zip)",
    load=load_glue_sst2,
    download=_download_sst2,
    standin=lambda n_train=600, n_eval=200, **kw: {"train": synthetic_reviews(n_train, seed=1),
                                                   "validation": synthetic_reviews(n_eval, seed=2)},
    size_hint="2 files, 5 MB",
    aliases=("sst-2",),
))


# --------------------------------------------------------------------------- summarization (week 4e)
def synthetic_summaries(n: int = 600, seed: int = 0, sentences: int = 3) -> list[tuple[str, str]]:
    """Offline stand-in for CNN/DailyMail: an "article" of a few generated sentences and its
    "highlight": the first sentence without adjectives or place (a lead-sentence summary)."""
    rng = random.Random(seed)
    out = []
    adjectives = set(_ADJECTIVES)
    for _ in range(n):
        parts = [synthetic_sentence(rng)[0] for _ in range(sentences)]
        lead = parts[0].rstrip(".").split(" in the ")[0]
        words = [w for w in lead.split() if w.lower() not in adjectives]
        words = ["a" if w == "an" else ("A" if w == "An" else w) for w in words]
        out.append((" ".join(parts), " ".join(words) + "."))
    return out


def load_summarization_folder(folder: Path) -> dict[str, list[tuple[str, str]]]:
    """``{split}.jsonl`` files with one ``{"article": ..., "highlights": ...}`` object per line
    (the field names of the CNN/DailyMail release on the Hugging Face hub)."""
    out = {}
    for split in ("train", "validation", "test"):
        path = folder / f"{split}.jsonl"
        rows = []
        for number, line in enumerate(read_text_lines(path, "one JSON object per line"), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                rows.append((item["article"], item["highlights"]))
            except (ValueError, KeyError, TypeError, RecursionError) as exc:
                raise DataLayoutError(f"{path}, line {number}: expected a JSON object with 'article' "
                                      f"and 'highlights' ({type(exc).__name__}). Fix that line.") from exc
        if not rows:
            raise DataLayoutError(f"{path} is empty. Fix: one JSON object per line.")
        out[split] = rows
    return out


def _download_cnn_dailymail(root: Path) -> None:
    from datasets import load_dataset as hf_load_dataset  # noqa: PLC0415 - heavy, only to download

    hf = hf_load_dataset("abisee/cnn_dailymail", "3.0.0", cache_dir=str(root / ".hf-cache"))
    folder = root / "cnn_dailymail"
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "validation", "test"):
        with open(folder / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for row in hf[split]:
                f.write(json.dumps({"article": row["article"], "highlights": row["highlights"]}) + "\n")


CNN_DAILYMAIL = register(DatasetSpec(
    name="cnn_dailymail",
    title="CNN/DailyMail 3.0.0 (summarization)",
    folder="cnn_dailymail",
    files=("train.jsonl", "validation.jsonl", "test.jsonl"),
    source="Hugging Face hub: abisee/cnn_dailymail, config 3.0.0",
    load=load_summarization_folder,
    download=_download_cnn_dailymail,
    standin=lambda n_train=600, n_eval=100, **kw: {"train": synthetic_summaries(n_train, seed=1),
                                                   "validation": synthetic_summaries(n_eval, seed=2),
                                                   "test": synthetic_summaries(n_eval, seed=3)},
    size_hint="about 1.3 GB as JSONL",
    aliases=("cnn-dailymail", "cnn_dm"),
))
