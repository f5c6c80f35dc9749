"""`make deploy`'s offline preflight: parameters, console URLs and the printed plan."""

from __future__ import annotations

import pytest

from infra import names, preflight

pytestmark = pytest.mark.unit

API = "https://abc123.execute-api.eu-west-1.amazonaws.com/api"
CONSOLE = {"ConsoleCallbackUrls": f"{API}/console/", "ConsoleLogoutUrls": f"{API}/console/"}


def test_params_are_parsed_as_make_passes_them():
    assert preflight.parse_params(f"AlarmEmail=a@b.co ConsoleCallbackUrls={API}/console/,"
                                  "https://x.example/console/") == {
        "AlarmEmail": "a@b.co",
        "ConsoleCallbackUrls": f"{API}/console/,https://x.example/console/"}
    with pytest.raises(ValueError, match="not Name=value"):
        preflight.parse_params("AlarmEmail")


@pytest.mark.parametrize("stage", names.DEPLOY_STAGES)
def test_console_urls_and_known_parameters_pass(templates, stage):
    assert preflight.parameter_problems(templates[stage], {**CONSOLE, "AlarmEmail": "o@x.io"},
                                        first_deploy=False) == []


def test_missing_console_urls_stop_the_deploy_unless_it_is_the_first(templates):
    t = templates["prod"]
    problems = preflight.parameter_problems(t, {}, first_deploy=False)
    assert [p.split(" ", 1)[0] for p in problems] == ["ConsoleCallbackUrls",
                                                      "ConsoleLogoutUrls"]
    assert "FIRST_DEPLOY=1" in problems[0]
    assert preflight.parameter_problems(t, {}, first_deploy=True) == []
    # An existing issuer (no stack user pool) has no hosted UI to call back from.
    assert preflight.parameter_problems(t, {"JwtIssuer": "https://id.example",
                                            "JwtAudience": "app"}, first_deploy=False) == []


def test_bad_parameters_are_named(templates):
    problems = preflight.parameter_problems(
        templates["dev"], {**CONSOLE, "ConsoleCallbackUrls": "http://x.example/console/",
                           "AlarmEmail": "not-an-email", "Typo": "1"}, first_deploy=False)
    assert any(p.startswith("parameter Typo is not one of the template's") for p in problems)
    assert any(p.startswith("parameter AlarmEmail='not-an-email' does not match")
               for p in problems)
    assert any("'http://x.example/console/' is not an https URL" in p for p in problems)


def test_the_plan_lists_what_the_stack_creates(templates):
    lines = preflight.plan(templates["prod"], CONSOLE)
    text = "\n".join(lines)
    assert "AWS::Serverless::Function x3:" in text
    assert "APIHandler (llmc-prod-api-handler)" in text
    assert "ManagedLayer (llm-connections-prod-managed-layer)" in text
    assert "UserPoolDomain [if CreateUserPool]" in text
    assert lines[-1].startswith("parameters: ConsoleCallbackUrls=")
