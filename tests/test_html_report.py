"""report.html: self-contained, every arm and round, per-reconstruction cells equal to the
store, faults, reproduction tables, comparisons, `fl-sim report` errors, the rate limit."""

from __future__ import annotations

import base64
import json
import math
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pytest
from tiny_store import ATTACKS, CLIENTS, FAULT_REASON, SAMPLES, make_run

import fl_sim.results.live_report as live_report
from fl_sim.cli import main as cli_main
from fl_sim.data.config import DataConfig
from fl_sim.federation.run_config import RunConfig
from fl_sim.results.html_report import REPORT_HTML, render_report, write_html_report
from fl_sim.results.html_sections import evenly, grids_section
from fl_sim.results.live_report import RATE, LiveReport
from fl_sim.results.stats import wilson_interval
from fl_sim.results.store import ResultsStore


class Page(HTMLParser):
    """Every start tag with its attributes, table texts by id, and the verdict spans under
    the grids with their figure's arm and round and their row's attack."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.row_attrs: dict[str, list[dict[str, str]]] = {}
        self.verdicts: list[dict[str, str]] = []
        self.text: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._figure: dict[str, str] = {}
        self._attack = ""
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        if tag == "table":
            self._table = a.get("id") or f"anon-{len(self.tables)}"
            self.tables[self._table], self.row_attrs[self._table] = [], []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
            self.row_attrs[self._table].append(a)
            self._attack = a.get("data-attack", "")
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []
        elif tag == "figure" and "grid" in a.get("class", ""):
            self._figure = a
        elif tag == "span" and "data-ssim" in a:
            self.verdicts.append(
                a | {"arm": self._figure["data-arm"], "round": self._figure["data-round"]}
                | {"attack": self._attack}
            )  # fmt: skip

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)

    def attrs(self, tag: str, **match: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag and match.items() <= a.items()]

    def body(self, table_id: str) -> list[list[str]]:
        return self.tables[table_id][1:]


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_run(tmp_path / "tiny")


def test_page_is_self_contained_and_shows_every_arm_and_round(run_dir: Path) -> None:
    text = render_report([run_dir])
    page = Page(text)
    # nothing fetched from anywhere: no remote src/href, no external script or stylesheet
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
    assert all("src" not in a for a in page.attrs("script"))
    assert [a for a in page.attrs("link") if not a.get("href", "").startswith("data:")] == []
    imgs = page.attrs("img")
    assert len(imgs) == 4 and all(a["src"].startswith("data:image/png;base64,") for a in imgs)
    assert "<title>fl-sim report: tiny</title>" in text
    (run,) = page.attrs("section", **{"class": "run"})
    assert (run["data-arms"], run["data-rounds"], run["data-status"]) == (
        "ann,snn",
        "2",
        "finished",
    )
    # per (arm, attack, round) one row; n = 2 clients x 2 samples; test accuracy next to it
    rows = page.body("run-0-per-round")
    keys = [
        [arm, attack, str(rnd)] for arm in ("ann", "snn") for attack in ATTACKS for rnd in (1, 2)
    ]
    assert [r[:4] for r in rows] == [key + ["4"] for key in keys]
    assert {r[6] for r in rows} == {"10.0", "20.0"}
    # ASR with its Wilson interval: ann/dlg round 1 leaks 2 of 4 (client + sample + round even)
    lo, hi = wilson_interval(2, 4)
    assert rows[0][4] == f"50.0 [{100 * lo:.1f}, {100 * hi:.1f}]"
    summary = page.body("run-0-summary")
    assert [r[:3] for r in summary] == [[a, k, "8"] for a in ("ann", "snn") for k in ATTACKS]
    # inline SVG curves: every series with n, the chance line, the test accuracy panel
    (figure,) = page.attrs("figure", id="run-0-curves")
    assert figure["data-series"] == "4" and page.attrs("svg", role="img")
    for label in ("ann / dlg (n=4 per round)", "snn / idlg (n=4 per round)", "chance 10%"):
        assert label in text
    assert "Global model test accuracy" in text
    assert page.body("run-0-faults-table") == [["snn", "2", str(2**64 - 5), "1", FAULT_REASON]]
    assert "<injected>" not in text and "&lt;injected&gt; &amp; failed" in text  # escaped


def test_cells_under_each_grid_equal_the_store(run_dir: Path) -> None:
    page = Page(render_report([run_dir]))
    with ResultsStore.open_existing(run_dir) as store:
        rows = store.reconstruction_rows()
        grids = store.grids()
    assert [(g["arm"], g["round"], g["grid"]) for g in grids] == [
        (arm, rnd, f"grids/{arm}-round{rnd:03d}.png") for arm in ("ann", "snn") for rnd in (1, 2)
    ]
    shown = {
        (v["arm"], int(v["round"]), v["attack"], int(v["data-client"]), int(v["data-sample"])): v
        for v in page.verdicts
    }
    assert len(shown) == len(page.verdicts) == len(rows) == 2 * 2 * 2 * 2 * 2
    for r in rows:
        v = shown[r["arm"], r["round"], r["attack"], r["client"], r["sample"]]
        if math.isnan(r["ssim"]):
            assert v["data-ssim"] == "" and v["data-judge"] == "" and r["status"] == "attack-failed"
        else:
            assert float(v["data-ssim"]) == r["ssim"]
            assert int(v["data-judge"]) == r["judge_pred"]
        assert int(v["data-correct"]) == (r["judge_correct"] == 1)
    # the columns are the grid's: client, sample and true label, in the grid's order
    columns = ["attack"] + [f"c{c} s{s} y={3 + c + 2 * s}" for c in CLIENTS for s in SAMPLES]
    samples = [t for t in page.tables.values() if t and t[0][0] == "attack"]
    assert len(samples) == 4
    for table in samples:
        assert table[0] == columns and [r[0] for r in table[1:]] == list(ATTACKS)
    # the images are the grid files themselves
    imgs = [a["src"].split(",", 1)[1] for a in page.attrs("img")]
    for g, data in zip(grids, imgs, strict=True):
        assert base64.b64decode(data) == (run_dir / str(g["grid"])).read_bytes()


def test_long_runs_embed_at_most_a_few_grids_evenly_spaced(tmp_path: Path) -> None:
    assert evenly(5) == [0, 1, 2, 3, 4] and evenly(30)[0] == 0 and evenly(30)[-1] == 29
    assert len(evenly(30)) == 12 == len(set(evenly(30)))
    out = make_run(tmp_path / "long", rounds=5, arms=("ann",), fault=False)
    with ResultsStore.open_existing(out) as store:
        section = Page(grids_section("g", out, store.grids(), store.reconstruction_rows(), 3))
    assert [a["data-round"] for a in section.attrs("figure")] == ["1", "3", "5"]
    assert "3 of 5 grids shown, all in grids/" in "".join(section.text)


def test_no_faults_says_none_and_a_running_run_says_running(tmp_path: Path) -> None:
    out = make_run(tmp_path / "live", fault=False, finished=False)
    page = Page(render_report([out]))
    (faults,) = page.attrs("section", id="run-0-faults")
    assert faults["data-count"] == "0" and "run-0-faults-table" not in page.tables
    (run,) = page.attrs("section", **{"class": "run"})
    assert run["data-status"] == "running"
    assert "running (or stopped before finishing)" in "".join(page.text)


def test_a_store_without_any_run_renders_as_empty(tmp_path: Path) -> None:
    ResultsStore(tmp_path / "fresh").close()  # created, then the process died before start_run
    page = Page(render_report([tmp_path / "fresh"]))
    (run,) = page.attrs("section", **{"class": "run"})
    assert (run["data-status"], run["data-arms"], run["data-rounds"]) == ("empty", "", "0")
    assert "no run recorded" in "".join(page.text)


def test_chance_level_from_the_dataset_when_the_judge_record_lacks_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fl_sim.data.splits as splits

    asked: list[str] = []

    def split(data: DataConfig, name: str) -> SimpleNamespace:
        asked.append(f"{data.dataset}/{name}")
        return SimpleNamespace(num_classes=4)

    monkeypatch.setattr(splits, "dataset_split", split)
    config = RunConfig.of(clients=2, rounds=2, dataset="mnist5k").resolved().flat()
    out = make_run(tmp_path / "old", num_classes=None, config=config)
    text = render_report([out])
    assert asked == ["mnist5k/test"] and "chance 25%" in text and "0.25 (1/4 classes)" in text


def _reproduction(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    src = make_run(out / "src", rounds=1, arms=("ann",))
    shutil.copy(src / "grids" / "ann-round001.png", out / "fig5.png")
    shutil.rmtree(src)
    (out / "table4.reproduction.json").write_text(
        json.dumps(
            {
                "name": "table4", "title": "Table IV: ASR of DLG <ANN vs SNN>",
                "columns": ["model", "attack", "published", "ours [95% CI]", "n"],
                "rows": [["ANN", "DLG", "100.0", "96.0 [86.5, 98.9]", "50"],
                         ["SNN", "DLG", "40.0", "12.0 [5.6, 23.8]", "50"]],
                "flagged": [False, True], "notes": ["iterations=50 (paper: 300)"],
                "figures": ["fig5.png"],
            }
        )
    )  # fmt: skip
    (out / "broken.reproduction.json").write_text("{not json")
    return out


def test_a_reproduction_dir_shows_its_tables_flagged_rows_notes_and_figures(
    tmp_path: Path,
) -> None:
    out = _reproduction(tmp_path / "reproduce")
    page = Page(render_report([out]))
    (run,) = page.attrs("section", **{"class": "run"})
    assert run["data-kind"] == "reproduction" and not page.attrs("svg")
    assert not [a for a in page.attrs("section") if a.get("id", "").endswith("-grids")]
    (table,) = [t for t in page.tables.values() if t[0][0] == "model"]
    assert table[1] == ["ANN", "DLG", "100.0", "96.0 [86.5, 98.9]", "50"]
    assert table[2][1:] == ["DLG", "40.0", "12.0 [5.6, 23.8]", "50"] and "SNN" in table[2][0]
    flags = [a for rows in page.row_attrs.values() for a in rows if "data-flagged" in a]
    assert [(a["data-flagged"], a.get("class", "")) for a in flags] == [("0", ""), ("1", "flagged")]
    text = "".join(page.text)
    assert "the published value lies outside our 95% CI" in text
    assert "Table IV: ASR of DLG <ANN vs SNN>" in text and "iterations=50 (paper: 300)" in text
    (img,) = page.attrs("img")
    assert base64.b64decode(img["src"].split(",", 1)[1]) == (out / "fig5.png").read_bytes()
    assert "unreadable: JSONDecodeError" in text  # a broken file does not hide the others


def test_two_runs_are_compared_on_one_page(tmp_path: Path) -> None:
    a = make_run(tmp_path / "alpha")
    b = make_run(tmp_path / "beta", rounds=3, arms=("ann",), fault=False)
    path = write_html_report([a, b], tmp_path / "cmp" / "both.html")
    text = path.read_text()
    page = Page(text)
    assert not list(path.parent.glob(".*"))  # no temp file left
    assert "alpha:ann/dlg (n=4 per round)" in text and "beta:ann/idlg (n=4 per round)" in text
    summary = page.body("compare-summary")
    assert [r[:4] for r in summary] == [
        ["alpha", "ann", "dlg", "8"], ["alpha", "ann", "idlg", "8"], ["alpha", "snn", "dlg", "8"],
        ["alpha", "snn", "idlg", "8"], ["beta", "ann", "dlg", "12"], ["beta", "ann", "idlg", "12"],
    ]  # fmt: skip
    runs = page.attrs("section", **{"class": "run"})
    assert [(r["id"], r["data-name"], r["data-arms"], r["data-rounds"]) for r in runs] == [
        ("run-0", "alpha", "ann,snn", "2"),
        ("run-1", "beta", "ann", "3"),
    ]
    ids = [a["id"] for _, a in page.tags if "id" in a]
    assert len(ids) == len(set(ids))  # several inline SVGs, still unique ids


def test_cli_writes_the_report_and_says_where(
    tmp_path: Path, run_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    assert cli_main(["report", str(run_dir)]) == 0
    assert capsys.readouterr().out.strip() == f"fl-sim: wrote {run_dir / REPORT_HTML}"
    assert 'data-arms="ann,snn"' in (run_dir / REPORT_HTML).read_text()
    monkeypatch.chdir(tmp_path)
    repro = _reproduction(tmp_path / "repro")
    assert cli_main(["report", str(run_dir), str(repro)]) == 0
    assert 'data-kind="reproduction"' in (tmp_path / REPORT_HTML).read_text()
    assert cli_main(["report", str(run_dir), "--out", "x/r.html"]) == 0
    assert (tmp_path / "x" / "r.html").is_file()


@pytest.mark.parametrize("kind", ["missing", "empty", "file"])
def test_cli_refuses_a_dir_without_results_in_one_line(
    tmp_path: Path, run_dir: Path, kind: str, capsys: pytest.CaptureFixture
) -> None:
    bad = tmp_path / kind
    if kind == "empty":
        bad.mkdir()
    elif kind == "file":
        bad.write_text("x")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        cli_main(["report", str(run_dir), str(bad)])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.startswith("fl-sim: error: ") and str(bad) in err and err.count("\n") == 1
    assert "Traceback" not in err and not (tmp_path / REPORT_HTML).exists()


def test_live_report_rate_limit_and_failures(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rewrite waits RATE x the last render time; force always writes; errors are logged."""
    clock = SimpleNamespace(now=100.0)
    renders: list[Path] = []

    def render(dirs: list[Path], path: Path) -> Path:
        clock.now += 1.0  # each render takes one second
        renders.append(path)
        return path

    monkeypatch.setattr(live_report, "write_html_report", render)
    logs: list[str] = []
    live = LiveReport(run_dir, logs.append, clock=lambda: clock.now)
    assert live.update() and live.cost == 1.0
    clock.now += RATE - 0.5  # less than RATE render times since the last write: skipped
    assert not live.update() and len(renders) == 1
    clock.now += 0.5
    assert live.update() and len(renders) == 2
    assert live.update(force=True) and renders == [run_dir / REPORT_HTML] * 3

    def broken(dirs: list[Path], path: Path) -> Path:
        raise OSError("disk full")

    monkeypatch.setattr(live_report, "write_html_report", broken)
    assert live.update(force=True) is False
    assert logs == ["fl-sim: report.html not written: OSError: disk full"]


def test_live_report_writes_the_real_page(run_dir: Path) -> None:
    logs: list[str] = []
    assert LiveReport(run_dir, logs.append).update(force=True) and logs == []
    assert 'id="run-0"' in (run_dir / REPORT_HTML).read_text()
    assert not LiveReport(run_dir / "nowhere", logs.append).update(force=True)
    assert len(logs) == 1 and "no such directory" in logs[0]


def test_the_page_leads_with_the_verdict_and_ends_with_the_config(run_dir: Path) -> None:
    """Per arm the strongest attack (highest ASR over every round, ties by SSIM) comes first,
    then the grids; judge, versions and config last, folded."""
    text = render_report([run_dir])
    page = Page(text)
    with ResultsStore.open_existing(run_dir) as store:
        rows = store.reconstruction_rows()
    verdict = page.body("run-0-verdict-table")
    assert [r[0] for r in verdict] == ["ann", "snn"]
    for arm, attack, n, asr, *_ in verdict:
        asr_of = {}
        for name in ATTACKS:
            grp = [r for r in rows if r["arm"] == arm and r["attack"] == name]
            asr_of[name] = sum(r["judge_correct"] == 1 for r in grp) / len(grp)
        assert asr_of[attack] == max(asr_of.values())
        assert int(n) == sum(r["arm"] == arm and r["attack"] == attack for r in rows)
        assert asr.startswith(f"{100 * asr_of[attack]:.1f} [")
    order = [text.index(f'id="run-0-{s}"') for s in ("verdict", "grids", "leakage", "config")]
    assert order == sorted(order)
    config = text[text.index('id="run-0-config"') :]
    assert config.split(">", 1)[1].startswith("<details><summary>")  # folded
