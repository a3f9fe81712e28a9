"""Property-based run of schemathesis over the service's OpenAPI spec, with its response
conformance checks: whatever it sends, valid or not, the service never answers with a 5xx,
and every answer (status code, content type, headers, body) is one the spec declares; valid
requests are accepted and invalid ones refused. Run without and with an API key.

Each operation gets MAX_EXAMPLES schema-valid and MAX_EXAMPLES schema-violating requests,
derandomized so a failure reproduces, and the whole module is bounded in time (TIME_LIMIT).
(schemathesis' `from_fixture` does not run on pytest 9, so the hypothesis strategies of each
operation are driven directly.)
"""

from __future__ import annotations

import shutil
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import negative_data_rejection
from schemathesis.generation import GenerationMode

MAX_EXAMPLES = 30
TIME_LIMIT = 240  # seconds per test: a runaway generator fails instead of hanging CI
KEY = "fuzz-key-0123456789"
OPERATIONS = [
    ("POST", "/v1/score"),
    ("POST", "/v1/score/batch"),
    ("GET", "/v1/leads/{lead_id}"),
    ("POST", "/admin/reload"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/leads"),
    ("GET", "/leads/{lead_id}"),
    ("GET", "/v1/leads/{lead_id}/history"),
    ("GET", "/v1/calllist"),
    ("GET", "/calllist"),
]
# Operations with something to violate (a body or constrained parameters); for the others
# hypothesis cannot build an invalid request at all.
VIOLABLE = [
    ("POST", "/v1/score"),
    ("POST", "/v1/score/batch"),
    ("GET", "/leads"),
    ("GET", "/v1/calllist"),
    ("GET", "/calllist"),
]
CASES = [(m, p, GenerationMode.POSITIVE) for m, p in OPERATIONS] + [
    (m, p, GenerationMode.NEGATIVE) for m, p in VIOLABLE
]
SEEN: Counter = Counter()  # (keyed, path, mode, status class) over every generated call
pytestmark = pytest.mark.timeout(TIME_LIMIT)


@pytest.fixture(scope="module")
def fuzz_db(small_db_url, small_config, lead_model, tmp_path_factory) -> str:
    import pandas as pd

    from leadml.data.io import read_dataset, write_tables
    from leadml.predict import score_leads

    db = tmp_path_factory.mktemp("serve-fuzz") / "leads.db"
    shutil.copy(small_db_url.removeprefix("sqlite:///"), db)
    url = f"sqlite:///{db}"
    leads, events = read_dataset(small_config.data, url=url)
    open_leads = leads[leads.status == "open"].head(200)
    scores = score_leads(lead_model, open_leads, events, pd.Timestamp("2026-06-30"))
    write_tables(url, {"lead_scores": scores})
    return url


@pytest.fixture(scope="module", params=[False, True], ids=["no-key", "api-key"])
def api(request, trained_bundle, fuzz_db, small_config):
    """(schema, headers): the spec as the app builds it, and the headers a client sends."""
    from leadml.serve.app import API_KEY_ENV, create_app

    with pytest.MonkeyPatch.context() as env:
        if request.param:
            env.setenv(API_KEY_ENV, KEY)
        else:
            env.delenv(API_KEY_ENV, raising=False)
        app = create_app(trained_bundle, fuzz_db, small_config)
    schema = schemathesis.openapi.from_dict(app.openapi())
    schema.app = app  # with a key the spec is not served (docs closed): calls go to the app
    return schema, ({"X-API-Key": KEY} if request.param else {}), request.param


def _description(case) -> str:
    data = getattr(getattr(case.meta, "phase", None), "data", None)
    return str(getattr(data, "description", "") or "")


def _violates(case, where: str) -> bool:
    """The negative case breaks this part of the request (e.g. leaves the key header out)."""
    components = getattr(case.meta, "components", {}) or {}
    return any(
        str(getattr(loc, "value", loc)) == where and info.mode is GenerationMode.NEGATIVE
        for loc, info in components.items()
    )


def _unsendable(case) -> bool:
    """A 'violation' a query string cannot carry: a nullable text parameter turned into an
    object or array arrives as plain text, which the spec allows (schemathesis still sends it)."""
    text = _description(case)
    parts = [p for p in text.replace("- ", "\n").splitlines() if p.strip()]
    return bool(parts) and all("was null, became" in p or "header:" in p for p in parts)


def test_every_operation_is_fuzzed(api):
    schema, _, _ = api
    listed = {(r.ok().method.upper(), r.ok().path) for r in schema.get_all_operations()}
    assert listed == set(OPERATIONS)


@pytest.mark.parametrize("method,path,mode", CASES, ids=[f"{m} {p} {g.value}" for m, p, g in CASES])
def test_answers_conform_to_the_spec(api, method, path, mode):
    schema, headers, keyed = api
    operation = schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case):
        sent = {} if _violates(case, "header") else headers  # a key left out on purpose: 401
        response = case.call(headers=sent)
        SEEN[(keyed, path, mode.value, response.status_code // 100)] += 1
        assert response.status_code < 500, (
            f"{method} {path}: {response.status_code} {response.text[:300]}"
        )
        excluded = [negative_data_rejection] if _unsendable(case) else []
        case.validate_response(response, headers=sent, excluded_checks=excluded)
        if path.startswith("/v1/") and response.status_code >= 400:
            assert response.json()["error"]  # every refusal says why

    check()


@pytest.mark.parametrize("keyed", [False, True], ids=["no-key", "api-key"])
def test_the_fuzzer_reached_accepted_and_refused_scores(keyed):
    """Runs after the property tests (file order): valid and invalid bodies were both sent."""
    if not any(k[0] == keyed for k in SEEN):
        pytest.skip("the property tests did not run in this session")
    assert SEEN[(keyed, "/v1/score", "positive", 2)] > 0
    assert SEEN[(keyed, "/v1/score", "negative", 4)] > 0
    assert SEEN[(keyed, "/v1/score/batch", "negative", 4)] > 0
