"""The command line: eval on a generated BEIR set, keys, ingest, and clear errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from contextd.cli import main

TOPICS = [
    ("volcano", "Volcanoes erupt molten lava and ash from magma chambers below the crust."),
    ("penguin", "Penguins are flightless seabirds that swim in cold southern oceans."),
    ("compiler", "A compiler translates source code into machine instructions."),
    ("espresso", "Espresso is brewed by forcing hot water through finely ground coffee."),
    ("glacier", "Glaciers are slow rivers of ice that carve valleys over centuries."),
    ("violin", "The violin is a bowed string instrument with four strings."),
    ("mortgage", "A mortgage is a loan secured by real estate property."),
    ("photosynthesis", "Plants convert sunlight, water and carbon dioxide into sugar."),
    ("tsunami", "Tsunamis are giant sea waves caused by undersea earthquakes."),
    ("vaccine", "Vaccines train the immune system to recognise a pathogen."),
    ("chess", "Chess is a board game of strategy played on an eight by eight grid."),
    ("saturn", "Saturn is a gas giant planet known for its bright rings."),
]
QUESTIONS = {
    "volcano": "what comes out when a volcano erupts",
    "penguin": "birds that cannot fly and live in antarctic seas",
    "compiler": "how is program source turned into machine code",
    "espresso": "how is strong coffee made with pressure",
    "glacier": "moving ice that shapes valleys",
    "violin": "string instrument played with a bow",
    "mortgage": "loan backed by a house",
    "photosynthesis": "how do plants make sugar from light",
    "tsunami": "huge ocean waves after an earthquake",
    "vaccine": "how do shots prepare the immune system",
    "chess": "strategy board game with kings and queens",
    "saturn": "planet with rings",
}


def write_beir(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    with (root / "corpus.jsonl").open("w") as fh:
        for i, (topic, text) in enumerate(TOPICS):
            fh.write(json.dumps({"_id": f"d{i}", "title": topic.title(), "text": text}) + "\n")
            fh.write(json.dumps({"_id": f"n{i}", "title": "Misc",
                                 "text": f"An unrelated note number {i} about office supplies."})
                     + "\n")
    with (root / "queries.jsonl").open("w") as fh:
        for i, (topic, _) in enumerate(TOPICS):
            fh.write(json.dumps({"_id": f"q{i}", "text": QUESTIONS[topic]}) + "\n")
        fh.write(json.dumps({"_id": "unjudged", "text": "ignored"}) + "\n")
    with (root / "qrels" / "test.tsv").open("w") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        for i in range(len(TOPICS)):
            fh.write(f"q{i}\td{i}\t1\n")
    return root


def test_eval_prints_three_modes_and_stores_them_as_runs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from contextd.core.settings import get_settings
    from contextd.quality.evaluation import list_runs
    from contextd.state.db import make_engine

    monkeypatch.setenv("CONTEXTD_DATA_DIR", str(tmp_path / "state"))
    get_settings.cache_clear()
    try:
        assert main(["eval", str(write_beir(tmp_path / "beir"))]) == 0
    finally:
        get_settings.cache_clear()
    lines = capsys.readouterr().out.strip().splitlines()
    pattern = re.compile(r"^(dense|bm25|hybrid)\s+nDCG@10 (\d\.\d{3})  recall@100 (\d\.\d{3})$")
    figures = {}
    for line in lines:
        match = pattern.match(line)
        assert match, line
        figures[match.group(1)] = (float(match.group(2)), float(match.group(3)))
    assert set(figures) == {"dense", "bm25", "hybrid"}
    assert figures["dense"][0] > 0.8
    assert figures["hybrid"][0] > 0.8
    assert figures["dense"][1] == figures["hybrid"][1] == 1.0
    engine = make_engine(f"sqlite:///{tmp_path / 'state' / 'contextd.db'}")
    runs = {r.config["mode"]: r for r in list_runs(engine)}
    engine.dispose()
    assert set(runs) == {"dense", "bm25", "hybrid"}
    for mode, (ndcg, recall) in figures.items():
        assert runs[mode].origin == "cli"
        assert runs[mode].metrics["ndcg@10"] == pytest.approx(ndcg, abs=5e-4)
        assert runs[mode].metrics["recall@100"] == pytest.approx(recall, abs=5e-4)
        assert 0.0 < runs[mode].metrics["mrr"] <= 1.0


def test_eval_on_a_missing_dataset_is_a_clear_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(tmp_path)]) == 2
    assert "not a BEIR dataset, missing" in capsys.readouterr().err


def test_keys_create_prints_a_working_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from contextd.core.settings import get_settings
    from contextd.state.db import make_engine
    from contextd.state.keys import authenticate

    monkeypatch.setenv("CONTEXTD_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        assert main(["keys", "create", "--role", "analyst"]) == 0
    finally:
        get_settings.cache_clear()
    key = capsys.readouterr().out.strip()
    engine = make_engine(f"sqlite:///{tmp_path / 'contextd.db'}")
    assert authenticate(engine, key).role == "analyst"
    engine.dispose()


def printed_runs(out: str) -> list[dict[str, object]]:
    """The JSON list the command prints last (log lines, also on stdout, come before it)."""
    return json.loads(out[out.index("\n[\n") + 1:] if not out.startswith("[") else out)


def test_quality_check_runs_golden_sets_and_fails_on_a_regression(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from contextd.core.settings import Settings, get_settings
    from contextd.quality.evaluation import list_runs
    from contextd.quality.golden import GoldenQuery, create_golden_set, pin_baseline
    from contextd.runtime import Runtime
    from tests.quality.corpus import QRELS, QUERIES, RECORDS

    runtime = Runtime(Settings(data_dir=tmp_path))
    runtime.migrate()
    runtime.ingestor.ingest(RECORDS)
    create_golden_set(runtime.engine, name="policies", qrels=QRELS,
                      queries=[GoldenQuery(id=q, text=t) for q, t in QUERIES.items()])
    runtime.close()
    monkeypatch.setenv("CONTEXTD_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        assert main(["quality", "check"]) == 0  # no baseline yet: nothing to regress from
        baseline = printed_runs(capsys.readouterr().out)[0]
        runtime = Runtime(Settings(data_dir=tmp_path))
        pin_baseline(runtime.engine, golden_set="policies", run_id=str(baseline["id"]))
        runtime.close()
        assert main(["quality", "check", "policies"]) == 0
        assert printed_runs(capsys.readouterr().out)[0]["regressed"] is False
        # a budget too small for any item: every metric falls
        assert main(["quality", "check", "--no-freshness", "--token-budget", "1"]) == 1
        worse = printed_runs(capsys.readouterr().out)[0]
        assert worse["config"] == {"mode": "hybrid", "freshness": False, "token_budget": 1,
                                   "top_k": 20}
        assert worse["regressed"] is True
        assert main(["quality", "check", "nope"]) == 2
        assert "golden set 'nope' not found" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()
    runtime = Runtime(Settings(data_dir=tmp_path))
    assert len(list_runs(runtime.engine)) == 3
    runtime.close()
