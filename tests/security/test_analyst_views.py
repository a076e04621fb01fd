"""Analyst views without content: quarantine shows errors, ids and field names (raw
payloads to admins only); golden sets and eval runs are held to the asking key; an unknown
and an invisible judged id get the same answer.

Reproduces: "Analysts see restricted content through GET .../quarantine (the raw row,
body included) and through eval runs of a golden set that names another user; creating a
golden set answers 201 vs 422, which confirms which restricted ids exist."
"""

from __future__ import annotations

import json

from contextd.state.db import session_scope
from contextd.state.tables import ConnectorRow, QuarantineRow
from tests.security.conftest import ALICE_CRM, Api, key

RAW = json.dumps({"id": "deal-9", "title": "Globex", "body": "CANARY-QUARANTINE secret"})


def _quarantined(api: Api) -> str:
    with session_scope(api.runtime.engine) as session:
        session.add(ConnectorRow(id="c0ffee", name="crm-export", kind="filesystem",
                                 config={}, schedule={}, enabled=False))
        session.add(QuarantineRow(connector_id="c0ffee", source_id="deal-9",
                                  error="missing field 'updated_at'", payload=RAW))
        session.add(QuarantineRow(connector_id="c0ffee", source_id="deal-10",
                                  error="bad date", payload=RAW[:40]))  # a cut excerpt
    return "c0ffee"


def test_quarantine_shows_analysts_no_payload(api: Api) -> None:
    connector = _quarantined(api)
    analyst = key(api.runtime, "analyst")
    seen = api.call("GET", f"/v1/connectors/{connector}/quarantine", analyst)
    assert seen.status_code == 200, seen.text
    rows = {r["source_id"]: r for r in seen.json()}
    assert rows["deal-9"]["error"] == "missing field 'updated_at'"
    assert rows["deal-9"]["fields"] == ["body", "id", "title"]
    assert rows["deal-10"]["fields"] == ["id", "title"]
    assert all(r["payload"] is None for r in rows.values())
    assert "CANARY" not in seen.text and "Globex" not in seen.text
    admin = key(api.runtime, "admin")
    full = api.call("GET", f"/v1/connectors/{connector}/quarantine", admin).json()
    assert {r["source_id"]: r["payload"] for r in full}["deal-9"] == RAW


def _golden(qrels: dict[str, int], **query: str) -> dict[str, object]:
    return {"name": f"set-{sorted(qrels)[0]}", "queries": [{"id": "q1", "text": "Globex",
                                                           **query}],
            "qrels": {"q1": qrels}}


def test_golden_set_creation_is_no_oracle_for_restricted_ids(api: Api) -> None:
    analyst = key(api.runtime, "analyst")
    invisible = api.call("POST", "/v1/golden-sets", analyst, json=_golden({"deal-globex": 1}))
    unknown = api.call("POST", "/v1/golden-sets", analyst, json=_golden({"no-such-doc": 1}))
    assert invisible.status_code == unknown.status_code == 422
    strip = lambda body: {**body["error"], "details": [  # noqa: E731
        {k: v for k, v in d.items() if k != "unknown_ids"} for d in body["error"]["details"]]}
    assert strip(invisible.json()) == strip(unknown.json())
    public = api.call("POST", "/v1/golden-sets", analyst, json=_golden({"travel.md": 1}))
    assert public.status_code == 201, public.text


def test_analyst_cannot_name_or_see_another_users_golden_set(api: Api) -> None:
    analyst = key(api.runtime, "analyst")
    named = api.call("POST", "/v1/golden-sets", analyst,
                     json=_golden({"deal-globex": 1}, user_id="alice"))
    assert named.status_code == 403
    admin = key(api.runtime, "admin")
    made = api.call("POST", "/v1/golden-sets", admin,
                    json=_golden({"deal-globex": 1}, user_id="alice"))
    assert made.status_code == 201, made.text
    run = api.call("POST", "/v1/eval/runs", admin, json={"golden_set": made.json()["id"]})
    assert run.status_code == 201 and "deal-globex" in run.text
    for path in (f"/v1/golden-sets/{made.json()['id']}", f"/v1/eval/runs/{run.json()['id']}"):
        hidden = api.call("GET", path, analyst)
        assert hidden.status_code == 404, path
    assert api.call("POST", "/v1/eval/runs", analyst,
                    json={"golden_set": made.json()["id"]}).status_code == 404
    listed = api.call("GET", "/v1/eval/runs", analyst).text + api.call(
        "GET", "/v1/golden-sets", analyst).text
    assert "deal-globex" not in listed and made.json()["id"] not in listed
    # a policy grant makes the user's set visible to that analyst
    granted = key(api.runtime, "analyst", user_ids=["alice"])
    assert api.call("GET", f"/v1/eval/runs/{run.json()['id']}", granted).status_code == 200


def test_eval_run_is_scoped_by_the_running_key(api: Api) -> None:
    admin = key(api.runtime, "admin")
    made = api.call("POST", "/v1/golden-sets", admin,
                    json=_golden({"deal-globex": 1}, user_id="alice")).json()
    docs_only = key(api.runtime, "analyst", user_ids=["alice"], sources=["docs"])
    # the set spans every source: outside this key's scope, so it does not exist for it
    assert api.call("POST", "/v1/eval/runs", docs_only,
                    json={"golden_set": made["id"]}).status_code == 404
    own = api.call("POST", "/v1/golden-sets", docs_only, json={
        "name": "docs-set", "queries": [{"id": "q1", "text": "Globex renewal terms",
                                         "user_id": "alice"}],
        "qrels": {"q1": {"travel.md": 1}}})
    assert own.status_code == 201, own.text
    assert own.json()["sources"] == ["docs"]
    run = api.call("POST", "/v1/eval/runs", docs_only, json={"golden_set": own.json()["id"]})
    assert run.status_code == 201
    ranked = [d for q in run.json()["per_query"] for d in q["ranked"]]
    assert "deal-globex" not in ranked and ALICE_CRM not in run.text
