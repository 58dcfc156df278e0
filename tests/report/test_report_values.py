"""The report's numbers against results.json: each value under the label that names it.

Presence checks pass on a page that prints the right numbers under the wrong labels; these read
the rendered tables and sentences back (an HTML parser, no browser needed: the page is static)
and compare each labelled value with the one results.json holds, formatted here independently.
Every check runs unconditionally on a copy of the fixture run directory.
"""
from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from biasvar.report import render_report

FIXTURE = Path(__file__).parent / "fixtures" / "report_run"


class _Tables(HTMLParser):
    """Rows of every table as lists of cell texts, keyed by the id of the section they are in;
    and the text of every paragraph, by section."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: dict[str, list[list[str]]] = {}
        self.paragraphs: dict[str, list[str]] = {}
        self._section: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._para: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "section" and "id" in a:
            self._section = a["id"]
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "p":
            self._para = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.setdefault(self._section or "", []).append(self._row)
            self._row = None
        elif tag == "p" and self._para is not None:
            self.paragraphs.setdefault(self._section or "", []).append(
                " ".join("".join(self._para).split()))
            self._para = None
        elif tag == "section":
            self._section = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._para is not None:
            self._para.append(data)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(FIXTURE, dst)
    return dst


def _render(run_dir: Path) -> tuple[_Tables, str, dict]:
    text = render_report(run_dir).read_text(encoding="utf-8")
    t = _Tables()
    t.feed(text)
    return t, text, json.loads((run_dir / "results.json").read_text())


def test_decomposition_rows_carry_their_own_terms(run_dir):
    """Each row of the decomposition table (label, value, interval) against results.json: a
    page that swapped two labels, or printed one term's value under another, fails here."""
    t, _, res = _render(run_dir)
    rows = t.rows["decomposition"]
    seen = {}
    titles = {"0-1": "zero_one", "squared error": "mse", "cross-entropy": "cross_entropy"}
    labels = {"loss": "loss", "bias": "bias", "net variance": "net_variance",
              "variance (unsigned)": "variance", "risk": "risk", "bias²": "bias2",
              "variance": "variance", "variance (plug-in)": "variance",
              "variance (jackknife)": "variance_jackknife"}
    for row in rows:
        title, _, label = row[0].partition(": ")
        if title not in titles or label not in labels:
            continue
        block = titles[title]
        term = res["decomposition"][block][labels[label]]
        assert row[1] == f"{term['value']:.4f}", (block, row)
        lo, hi = term["ci95"]
        assert row[2] == f"[{lo:.4f}, {hi:.4f}]", (block, row)
        seen[(block, labels[label])] = True
    assert len(seen) == 4 + 3 + 4  # every term of the three blocks, each under its label
    ens = res["decomposition"]["ensemble"]
    by_label = {r[0]: r[1] for r in rows if r}
    assert by_label["ensemble of the models: error"] == f"{ens['error']:.4f}"
    assert by_label["ensemble of the models: cross-entropy"] == f"{ens['cross_entropy']:.4f}"


def test_learning_curve_predictions_are_said_at_the_sizes_they_are_for(run_dir):
    t, _, res = _render(run_dir)
    pl = res["learning_curve"]["power_law"]
    text = " ".join(t.paragraphs["learning"])
    assert f"Predicted with 2× the data: {100 * pl['err_2x']:.2f}%" in text
    assert f"with 10×: {100 * pl['err_10x']:.2f}%" in text
    assert f"at n = {pl['n_max']:,}: {100 * pl['err_at_n_max']:.2f}%" in text


EVIL = "<script>alert('x')</script>"


@pytest.mark.parametrize("field", ["true", "pred", "source"])
def test_every_gallery_caption_is_escaped(run_dir, field):
    """A class name or file name with markup is shown as text in the gallery, in each caption
    field; the check does not depend on the fixture having a gallery: it writes one."""
    gallery = json.loads((run_dir / "gallery.json").read_text())
    assert gallery, "the fixture's gallery.json is empty"
    gallery[0][field] = EVIL
    (run_dir / "gallery.json").write_text(json.dumps(gallery))
    t, text, _ = _render(run_dir)
    assert EVIL not in text
    assert "&lt;script&gt;alert(" in text


def test_complexity_rows_carry_each_values_own_errors_and_terms(run_dir):
    """Each row of the complexity table: the knob's value, the train and validation errors'
    mean and min–max over seeds (recomputed here from the per-seed errors), and that value's
    decomposition terms (— where it has none) under their own column labels."""
    t, _, res = _render(run_dir)
    cc = res["complexity_curve"]
    rows = t.rows["complexity"]
    assert rows[0] == [cc["param"], "train error", "validation error", "0-1 bias",
                       "net variance", "0-1 loss"]
    assert len(rows) - 1 == len(cc["values"]) >= 3

    def spread(seeds: list[float]) -> str:
        mean = sum(seeds) / len(seeds)
        return f"{100 * mean:.2f}% ({100 * min(seeds):.2f}%–{100 * max(seeds):.2f}%)"

    assert any(d is not None for d in cc["decomposition"])
    assert any(d is None for d in cc["decomposition"])  # both kinds of row are checked
    for i, row in enumerate(rows[1:]):
        assert row[0] == str(cc["values"][i])
        assert row[1] == spread(cc["train_error"]["values"][i])
        assert row[2] == spread(cc["val_error"]["values"][i])
        d = cc["decomposition"][i]
        terms = (["—"] * 3 if d is None else
                 [f"{100 * d['zero_one'][k]['value']:.2f}%"
                  for k in ("bias", "net_variance", "loss")])
        assert row[3:] == terms, (cc["values"][i], row)


class _Cards(HTMLParser):
    """The gallery's figures: each image's base64 payload and its caption's text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.cards: list[dict[str, str]] = []
        self._caption: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "img" and str(a.get("src", "")).startswith("data:image/png;base64,"):
            self.cards.append({"b64": a["src"].split(",", 1)[1], "caption": ""})
        elif tag == "figcaption" and self.cards:
            self._caption = []
        elif tag == "br" and self._caption is not None:
            self._caption.append(" ")  # a line break reads as a space

    def handle_endtag(self, tag: str) -> None:
        if tag == "figcaption" and self._caption is not None:
            self.cards[-1]["caption"] = " ".join("".join(self._caption).split())
            self._caption = None

    def handle_data(self, data: str) -> None:
        if self._caption is not None:
            self._caption.append(data)


def test_gallery_cards_show_each_entrys_image_labels_and_confidence_in_order(run_dir):
    gallery = json.loads((run_dir / "gallery.json").read_text())
    assert len(gallery) >= 2
    # distinct labels on every card, so a swapped true/predicted caption cannot pass
    for i, g in enumerate(gallery):
        g["true"], g["pred"] = f"true-class-{i}", f"pred-class-{i}"
    (run_dir / "gallery.json").write_text(json.dumps(gallery))
    text = render_report(run_dir).read_text(encoding="utf-8")
    p = _Cards()
    p.feed(text)
    cards = [c for c in p.cards if c["caption"].startswith("true:")]
    assert len(cards) == len(gallery)
    for c, g in zip(cards, gallery):
        assert c["b64"] == g["image_png_b64"].replace("\n", "")
        assert c["caption"] == (f"true: {g['true']} predicted: {g['pred']} "
                                f"{100 * g['confidence']:.1f}% · #{g['index']}"), c["caption"]
