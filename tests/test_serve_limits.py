"""The service against hostile clients: forged log lines, half-sent bodies, keys in URLs,
closed docs, timestamps that are numbers. The body timeout is tested on a real uvicorn server
(a raw socket), since a test client never holds a body back."""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
import time

import pytest
from fastapi.testclient import TestClient

from leadml.serve.metrics import LOGGED_CHARS, access_line, log_safe

KEY = "limits-key-123"


def good_lead() -> dict:
    return {"lead_id": 1, "created_at": "2026-06-01T10:00:00Z"}


@pytest.fixture(scope="module")
def app_factory(trained_bundle, small_db_url, small_config):
    from leadml.serve.app import create_app

    def make(config=small_config, key: str | None = None):
        with pytest.MonkeyPatch.context() as env:
            if key:
                env.setenv("LEADML_API_KEY", key)
            else:
                env.delenv("LEADML_API_KEY", raising=False)
            return create_app(trained_bundle, small_db_url, config)

    return make


@pytest.fixture
def access_lines():
    """Everything the access logger writes, as the text a log file would hold."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("leadml.serve.access")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lambda: stream.getvalue().splitlines()
    logger.removeHandler(handler)
    logger.setLevel(old_level)


# ---------------------------------------------------------------- logs


def test_log_safe_escapes_control_characters_and_cuts():
    assert log_safe("y\r\nFORGED\x00\x1b[31m") == "y\\x0d\\x0aFORGED\\x00\\x1b[31m"
    assert log_safe("a\\x0d") == "a\\\\x0d"  # a literal backslash cannot fake an escape
    assert log_safe("\u2028\x85") == "\\u2028\\x85"
    long = log_safe("9" * 10_000)
    assert len(long) == LOGGED_CHARS and long.endswith("...")
    assert log_safe(b"ua\r\n") == "ua\\x0d\\x0a"


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_forged_ids_give_one_log_line_per_request(
    app_factory, small_config, access_lines, log_format
):
    config = small_config.model_copy(
        update={"serve": small_config.serve.model_copy(update={"access_log": log_format})}
    )
    paths = [
        "/v1/leads/y%0D%0AFORGED-unauth%20401",
        "/v1/leads/a%00b",
        "/v1/leads/" + "7" * 5000,
        "/leads/x%0AFORGED%0D",
        "/nowhere/%1b%5b31m%e2%80%a8",
    ]
    with TestClient(app_factory(config, key=KEY)) as client:
        for path in paths:
            assert client.get(path, headers={"User-Agent": "evil"}).status_code in (401, 404)
    lines = access_lines()
    assert len(lines) == len(paths)  # one line per request, none forged
    assert all(line.startswith("INFO leadml.serve.access: ") for line in lines)
    assert not any("\x00" in line or "\x1b" in line for line in lines)
    assert all(len(line) < LOGGED_CHARS + 200 for line in lines)
    if log_format == "json":
        records = [json.loads(line.split(": ", 1)[1]) for line in lines]
        assert records[0]["path"] == "/v1/leads/y\\x0d\\x0aFORGED-unauth 401"
        assert records[0]["status"] == 401 and records[0]["user_agent"] == "evil"
    else:
        assert "/v1/leads/y\\x0d\\x0aFORGED-unauth 401 401" in lines[0]


def test_json_access_line_escapes_headers():
    scope = {
        "method": "GET",
        "path": "/x",
        "headers": [(b"user-agent", b"a\r\nb"), (b"x-request-id", b"id\x00" * 100)],
        "client": ("10.0.0.1", 5000),
    }
    record = json.loads(access_line(scope, 200, 0.0123, "json"))
    assert record["user_agent"] == "a\\x0d\\x0ab" and len(record["request_id"]) == 100
    assert record == {**record, "method": "GET", "status": 200, "ms": 12.3, "client": "10.0.0.1"}


def test_access_log_can_be_off(app_factory, small_config, access_lines):
    config = small_config.model_copy(
        update={"serve": small_config.serve.model_copy(update={"access_log": "off"})}
    )
    with TestClient(app_factory(config)) as client:
        assert client.get("/healthz").status_code == 200
    assert access_lines() == []


# ---------------------------------------------------------------- key, docs, timestamps


def test_api_key_only_in_the_header_on_the_json_api(app_factory):
    with TestClient(app_factory(key=KEY)) as client:
        body = {"lead": good_lead()}
        assert client.post(f"/v1/score?api_key={KEY}", json=body).status_code == 401
        client.cookies.set("leadml_api_key", KEY)
        refused = client.post("/v1/score", json=body)
        assert refused.status_code == 401 and "X-API-Key header" in refused.json()["error"]
        assert "?api_key" not in refused.json()["error"]
        assert client.post("/v1/score", json=body, headers={"X-API-Key": KEY}).status_code == 200
        assert client.get("/leads").status_code != 401  # the pages keep the cookie form


def test_docs_close_with_a_key_unless_kept_open(app_factory, small_config):
    with TestClient(app_factory(key=KEY)) as client:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert client.get(path, headers={"X-API-Key": KEY}).status_code == 404
        for path in ("/healthz", "/readyz", "/metrics", "/static/leadml.css"):
            assert client.get(path).status_code == 200, path
    config = small_config.model_copy(
        update={"serve": small_config.serve.model_copy(update={"open_docs": True})}
    )
    with TestClient(app_factory(config, key=KEY)) as client:
        assert client.get("/openapi.json").status_code == 200
    with TestClient(app_factory()) as client:
        assert client.get("/docs").status_code == 200


@pytest.mark.parametrize(
    "as_of", [0, 1700000000, "1700000000", "1899-12-31T00:00:00Z", "2200-01-01"]
)
def test_numbers_and_far_dates_are_not_timestamps(app_factory, as_of):
    with TestClient(app_factory()) as client:
        r = client.post("/v1/score", json={"lead": good_lead(), "as_of": as_of})
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == "as_of"
        lead = {**good_lead(), "created_at": as_of}
        assert client.post("/v1/score", json={"lead": lead}).status_code == 422


def test_spec_states_the_timestamp_range_and_the_id_rule(app_factory):
    spec = app_factory().openapi()
    created = spec["components"]["schemas"]["Lead"]["properties"]["created_at"]
    assert created["type"] == "string" and created["pattern"] == r"^(19|20|21)\d\d-"
    lead_id = spec["components"]["schemas"]["Lead"]["properties"]["lead_id"]
    assert {"type": "integer"} in lead_id["anyOf"]
    page = spec["paths"]["/leads/{lead_id}"]["get"]["responses"]
    assert set(page["404"]["content"]) == {"text/html"}
    assert set(page["422"]["content"]) == {"text/html"}


# ---------------------------------------------------------------- a real server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def live_server(app_factory, small_config):
    """The app under a real uvicorn on a free port with a 1 s body timeout; its port."""
    import uvicorn

    from leadml.serve.app import uvicorn_settings

    serve = small_config.serve.model_copy(update={"body_timeout_s": 1.0})
    config = small_config.model_copy(update={"serve": serve})
    port = _free_port()
    settings = uvicorn_settings(config, "127.0.0.1", port)
    server = uvicorn.Server(uvicorn.Config(app_factory(config), **settings))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started
    yield port
    server.should_exit = True
    thread.join(10)


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_a_half_sent_body_is_cut_at_the_timeout(live_server):
    with socket.create_connection(("127.0.0.1", live_server), timeout=15) as sock:
        sock.sendall(
            b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n" + b'{"lead": {'
        )
        answer = _read_all(sock)  # ends when the server closes the connection
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    assert b"connection: close" in head.lower()
    assert "serve.body_timeout_s" in json.loads(body)["error"]


def test_a_whole_body_still_scores_on_the_real_server(live_server):
    payload = json.dumps({"lead": good_lead()}).encode()
    with socket.create_connection(("127.0.0.1", live_server), timeout=15) as sock:
        sock.sendall(
            b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(payload), payload)
        )
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200")


def test_uvicorn_gets_the_limits_from_config(small_config):
    from leadml.serve.app import uvicorn_settings

    serve = small_config.serve.model_copy(
        update={"keep_alive_timeout_s": 3.0, "max_connections": 7}
    )
    settings = uvicorn_settings(small_config.model_copy(update={"serve": serve}))
    assert settings["timeout_keep_alive"] == 3.0 and settings["limit_concurrency"] == 7
    assert settings["access_log"] is False and settings["host"] == "127.0.0.1"


# ---------------------------------------------------------------- bad stored leads


@pytest.mark.parametrize(
    "column,value,rule",
    [("employees", "-inf", "not_finite"), ("created_at", "not a date", "unparseable_time")],
)
def test_a_bad_stored_lead_is_a_422_page_naming_the_rule(
    trained_bundle, small_db_url, small_config, lead_model, tmp_path, column, value, rule
):
    from leadml.serve.app import create_app

    url, lead_id = _one_bad_stored_lead(small_db_url, tmp_path, column, value)
    with TestClient(create_app(trained_bundle, url, small_config)) as client:
        page = client.get(f"/leads/{lead_id}")
    assert page.status_code == 422 and "text/html" in page.headers["content-type"]
    assert rule in page.text and f"lead {lead_id}" in page.text


def test_a_stored_lead_without_the_model_columns_is_refused_naming_them(lead_model):
    from leadml.errors import ModelError
    from leadml.predict import score_stored_lead

    lead = {"lead_id": 7, "created_at": "2026-06-01", "status": "open", "month": "may"}
    with pytest.raises(ModelError, match=f"model {lead_model.version} reads .*stored lead 7"):
        score_stored_lead(lead_model, lead, [])


@pytest.mark.parametrize(
    "column,value,named",
    [
        ("employees", "-inf", ["not_finite", "lead {lead}"]),
        ("created_at", "not a date", ["created_at", "cannot be parsed", "'not a date'"]),
    ],
)
def test_explain_of_a_bad_stored_lead_exits_2_naming_the_problem(
    run_cli, trained_bundle, small_db_url, tmp_path, column, value, named
):
    """`leadml explain` refuses a bad stored row like the pages and the batch scorer: one line
    naming the rule (or the column and the value that cannot be read), exit 2, no score."""
    url, lead_id = _one_bad_stored_lead(small_db_url, tmp_path, column, value)
    args = ("explain", str(lead_id), "--db", url, "--model", str(trained_bundle))
    code, out, err = run_cli(*args, "--as-of", "2026-06-30")
    assert code == 2 and "Traceback" not in err
    assert all(part.format(lead=lead_id) in err for part in named) and "/100" not in out


def _one_bad_stored_lead(small_db_url: str, tmp_path, column: str, value: str) -> tuple[str, int]:
    """A private copy of the small database where one open lead's `column` holds `value`."""
    import shutil

    from sqlalchemy import text

    from leadml.data.io import engine_for

    path = tmp_path / "leads.db"
    shutil.copy(small_db_url.removeprefix("sqlite:///"), path)
    url = f"sqlite:///{path}"
    with engine_for(url).begin() as conn:
        lead_id = conn.execute(text("SELECT lead_id FROM leads WHERE status = 'open'")).first()[0]
        conn.execute(
            text(f"UPDATE leads SET {column} = :v WHERE lead_id = :i"), {"v": value, "i": lead_id}
        )
    return url, lead_id
