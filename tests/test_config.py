import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]


def test_repo_config_toml_loads_with_safe_defaults() -> None:
    config = load_config(REPO / "config.toml", environ={})
    assert config.database.url == "sqlite+aiosqlite:///partnerbot.db"
    assert config.redis.url == ""
    assert config.wecom.secret == "" and config.admin.api_token == ""  # secrets never in the file


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[server]\nport = 9000\n[pool]\nreturn_reason_required = true\n')
    config = load_config(path, environ={"PARTNERBOT_SERVER_PORT": "9100", "PARTNERBOT_WECOM_SECRET": "s3",
                                        "PARTNERBOT_POOL_RETURN_REASON_REQUIRED": "false"})
    assert config.server.port == 9100
    assert config.wecom.secret == "s3"
    assert config.pool.return_reason_required is False


def test_config_env_variable_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "other.toml"
    path.write_text('[server]\nport = 9200\n')
    assert load_config(environ={"PARTNERBOT_CONFIG": str(path)}).server.port == 9200


@pytest.mark.parametrize("content, env, expected", [
    ('[server]\nport = "abc"\n', {}, "[server] port: must be a whole number"),
    ('[server]\nport = 70000\n', {}, "[server] port must be a port number"),
    ('[server]\nprot = 1\n', {}, "[server] prot is not a known key"),
    ('[srever]\nport = 1\n', {}, "unknown section [srever]"),
    ('[server\nport = 1\n', {}, "not valid TOML"),
    ('', {"PARTNERBOT_SERVER_PORT": "eighty"}, "PARTNERBOT_SERVER_PORT (environment): must be a whole number"),
    ('', {"PARTNERBOT_POOL_RETURN_REASON_REQUIRED": "maybe"}, "must be true or false"),
    ('[database]\nurl = "mysql://x"\n', {}, "[database] url must start with"),
    ('[wecom]\nencoding_aes_key = "short"\n', {}, "[wecom] encoding_aes_key must be the 43-character"),
    ('[server]\npublic_base_url = "javascript:alert(1)"\n', {}, "[server] public_base_url must be an http(s) URL"),
    ('[wecom]\nlicensed_accounts = -5\n', {}, "[wecom] licensed_accounts must be 0 (count the members)"),
    ('', {"PARTNERBOT_WECOM_LICENSED_ACCOUNTS": "many"}, "PARTNERBOT_WECOM_LICENSED_ACCOUNTS (environment): must be a whole number"),
    ('[wecom]\nmedia_uploads_per_minute = 0\n', {}, "[wecom] media_uploads_per_minute must be at least 1"),
    ('[wecom]\nreply_headroom = 0.6\n', {}, "[wecom] reply_headroom must be a share of the daily send quota from 0 to 0.5"),
    ('[wecom]\nreply_headroom = -0.1\n', {}, "[wecom] reply_headroom must be a share of the daily send quota from 0 to 0.5"),
    ('[wecom]\nreply_headroom = 10\n', {}, "got 10"),  # a count where a share belongs: refused, not 1000 %
    ('', {"PARTNERBOT_WECOM_REPLY_HEADROOM": "10%"}, "PARTNERBOT_WECOM_REPLY_HEADROOM (environment): must be a number"),
    ('[outbox]\nclaim_batch = 0\n', {}, "[outbox] claim_batch must be at least 1"),
])
def test_bad_values_name_the_key_and_the_file(tmp_path: Path, content: str, env: dict, expected: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content)
    with pytest.raises(ConfigError) as err:
        load_config(path, environ=env)
    message = str(err.value)
    assert expected in message
    assert "\n" not in message


def test_an_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml", environ={})


def test_serve_without_wecom_credentials_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path}/x.db"\n')
    result = subprocess.run([sys.executable, "-m", "bot", "serve", "--config", str(path)],
                            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "[wecom] corp_id is missing" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_bad_value_exit_2_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[server]\nport = "x"\n')
    result = subprocess.run([sys.executable, "-m", "bot", "migrate", "--config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == f"partnerbot: {path}: [server] port: must be a whole number, got 'x'"


def test_a_mistyped_environment_variable_names_the_closest_key(tmp_path: Path) -> None:
    """PARTNERBOT_POOL_MAXHELD once did nothing, silently: now it is named, with the key it meant."""
    config = load_config(REPO / "config.toml", environ={"PARTNERBOT_POOL_MAXHELD": "3", "PARTNERBOT_SERVER_PORT": "9100",
                                                        "PARTNERBOT_CONFIG": "", "PARTNERBOT_TEST_REDIS_URL": "x",
                                                        "PARTNERBOT_ZZZ": "1", "OTHER_POOL_MAXHELD": "1"})
    assert config.pool.max_held != 3 and config.server.port == 9100
    assert config.warnings == [
        "environment: PARTNERBOT_POOL_MAXHELD is not a configuration key and is ignored; "
        "did you mean PARTNERBOT_POOL_MAX_HELD?",
        "environment: PARTNERBOT_ZZZ is not a configuration key and is ignored; no configuration key has this name"]


def test_secrets_written_in_the_file_get_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[wecom]\nsecret = "s3cret"\ntoken = ""\n[admin]\napi_token = "t0ken"\n'
                    '[links]\nvisitor_secret = "v"\n[wechat]\nencoding_aes_key = ""\n'
                    '[database]\nurl = "postgresql+asyncpg://bot:pw@db/bot"\n')
    warnings = load_config(path, environ={}).warnings
    assert [w.split(" is a secret")[0].split(" url carries")[0] for w in warnings] == [
        f"{path}: [wecom] secret", f"{path}: [admin] api_token", f"{path}: [links] visitor_secret",
        f"{path}: [database]"]
    assert "PARTNERBOT_WECOM_SECRET" in warnings[0] and "s3cret" not in " ".join(warnings)
    assert "pw" not in warnings[3] and "PARTNERBOT_DATABASE_URL" in warnings[3]
    assert load_config(REPO / "config.toml", environ={}).warnings == []  # the shipped file holds no secret


def test_a_retired_key_still_loads_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[wecom]\ndedupe_ttl_seconds = 100\n[wechat]\ndedupe_ttl_seconds = 100\n")
    warnings = load_config(path, environ={}).warnings
    assert warnings == [f"{path}: [{section}] dedupe_ttl_seconds is no longer used and is ignored (the database "
                        "alone spots the platform's retried callbacks); remove it" for section in ("wecom", "wechat")]
    path.write_text("[wecom]\ndedupe_seconds = 100\n")  # not retired, just wrong: still refused
    with pytest.raises(ConfigError, match="not a known key"):
        load_config(path, environ={})


def test_the_command_line_prints_the_warnings(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[admin]\napi_token = "t0ken"\n[server]\nport = "x"\n')
    result = subprocess.run([sys.executable, "-m", "bot", "migrate", "--config", str(path)], capture_output=True,
                            text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "PARTNERBOT_OUTBOX_CONCURENCY": "4"})
    # The bad value still stops it (exit 2); a warning alone would not.
    assert result.returncode == 2 and "Traceback" not in result.stderr
    path.write_text('[admin]\napi_token = "t0ken"\n' f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path}/x.db"\n')
    result = subprocess.run([sys.executable, "-m", "bot", "migrate", "--config", str(path)], capture_output=True,
                            text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "PARTNERBOT_OUTBOX_CONCURENCY": "4"})
    assert result.returncode == 0, result.stderr
    assert f"partnerbot: warning: {path}: [admin] api_token is a secret written in the file" in result.stderr
    assert "PARTNERBOT_OUTBOX_CONCURENCY is not a configuration key and is ignored; did you mean " \
           "PARTNERBOT_OUTBOX_CONCURRENCY?" in result.stderr
