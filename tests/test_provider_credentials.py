"""A provider's credential never leaves with the server's secrets: credential_env names only variables the operator
allows, base_url only public https hosts (private ones when allowed), never link-local or metadata addresses;
checked in the policy file, the API, the admin, and again when the refresh is about to send the credential."""

import json
import socket

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from providers.adapters import base
from providers.admin import ProviderForm
from providers.models import AvailabilityCheck, Provider
from providers.refresh import refresh_provider
from router.policy.fields import PolicyError
from router.policy.validate import Validator
from tests.factories import LLMModelFactory, ProviderFactory, make_api_key
from tests.provider_servers import FakeOpenAI

SERVER_SECRET = "the-servers-own-secret-value"
PROVIDER_KEY = "sk-proj-allowed-provider-key"


def document(**provider) -> dict:
    entry = {"slug": "vendor", "kind": "openai_compatible", "base_url": "https://api.vendor.example.com/v1",
             "credential_env": "VENDOR_API_KEY", **provider}
    return {"version": 1, "providers": [entry], "models": [], "tiers": [], "categories": [], "routes": []}


def problems(data: dict) -> list[str]:
    try:
        Validator().validate(data)
    except PolicyError as exc:
        return exc.problems
    return []


@pytest.fixture
def public_only(settings):
    settings.PROVIDER_ALLOW_PRIVATE_BASE_URLS = False


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["SECRET_KEY", "SECRETS_ENCRYPTION_KEY", "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL",
                                  "AWS_SECRET_ACCESS_KEY", "AWS_API_KEY", "DJANGO_API_KEY", "METRICS_TOKEN", "PATH"])
def test_the_policy_file_refuses_a_variable_the_server_reads_for_itself(name):
    assert problems(document(credential_env=name)) == [
        f"providers[0].credential_env: {name} is a variable the server reads for itself: name the variable that holds "
        "this provider's API key (e.g. OPENAI_API_KEY)"]


@pytest.mark.django_db
def test_the_policy_file_takes_only_names_the_operator_allows(settings):
    assert problems(document(credential_env="VENDOR_API_KEY")) == []
    assert problems(document(credential_env="HOSTNAME"))[0].startswith(
        "providers[0].credential_env: HOSTNAME does not match PROVIDER_CREDENTIAL_ENV_PATTERN")

    settings.PROVIDER_CREDENTIAL_ENV_PATTERN = r"VENDOR_[A-Z]+"
    assert problems(document(credential_env="VENDOR_TOKEN")) == []
    assert problems(document(credential_env="SECRET_KEY"))  # never, whatever the pattern
    assert problems(document(credential_env="VENDOR_API_KEY"))


@pytest.mark.django_db
@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/", "https://169.254.169.254/v1", "http://[fe80::1]/v1", "http://[::ffff:169.254.169.254]/",
    "http://2852039166/", "http://0xa9.0xfe.0xa9.0xfe/", "https://metadata.google.internal/v1", "http://[fd00:ec2::254]/",
])
def test_link_local_and_metadata_addresses_are_always_refused(url):
    found = problems(document(base_url=url))
    assert len(found) == 1 and found[0].startswith("providers[0].base_url: "), found
    # Django's URL field already refuses the numeric forms; the rest is providers.egress's.
    assert any(reason in found[0] for reason in ("link-local or cloud metadata", "metadata service", "Enter a valid URL")), found


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/v1", "https://10.0.0.5/v1", "https://localhost/v1", "https://gateway.internal/v1",
                                 "http://api.vendor.example.com/v1", "https://[::1]/v1"])
def test_private_hosts_and_plain_http_only_when_the_operator_allows_them(settings, url):
    settings.PROVIDER_ALLOW_PRIVATE_BASE_URLS = False
    found = problems(document(base_url=url))
    assert len(found) == 1 and found[0].startswith("providers[0].base_url: ") and "PROVIDER_ALLOW_PRIVATE_BASE_URLS" in found[0], found

    settings.PROVIDER_ALLOW_PRIVATE_BASE_URLS = True
    assert problems(document(base_url=url)) == []


@pytest.mark.django_db
def test_a_base_url_carries_no_password(public_only):
    assert problems(document(base_url="https://user:pass@api.vendor.example.com/v1")) == [
        "providers[0].base_url: must not carry a user name or password: set credential_env or store a secret"]


@pytest.mark.django_db
def test_the_api_refuses_the_same_policy(public_only):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_api_key('deploy', scopes=('admin',))}")
    body = document(credential_env="SECRET_KEY", base_url="http://169.254.169.254/")

    answer = client.put("/api/v1/policy", json.dumps(body), content_type="application/json")

    assert answer.status_code == 400, answer.content
    detail = json.dumps(answer.json())
    assert "providers[0].credential_env: SECRET_KEY is a variable the server reads for itself" in detail
    assert "providers[0].base_url: 169.254.169.254 is a link-local or cloud metadata address" in detail
    assert not Provider.objects.exists()


@pytest.mark.django_db
def test_the_admin_form_refuses_them_on_their_fields(public_only):
    form = ProviderForm(data={"slug": "vendor", "kind": "openai_compatible", "base_url": "http://169.254.169.254/",
                              "credential_env": "DATABASE_URL", "enabled": "on", "request_timeout_seconds": "10",
                              "cooldown_failures": "3", "cooldown_window_seconds": "60", "cooldown_seconds": "60",
                              "max_retry_after_seconds": "3600"})

    assert not form.is_valid()
    assert "reads for itself" in form.errors["credential_env"][0]
    assert "link-local or cloud metadata" in form.errors["base_url"][0]


@pytest.mark.django_db
def test_the_admin_page_shows_the_error(admin_client, public_only):
    add = reverse("admin:providers_provider_add")
    answer = admin_client.post(add, {"slug": "vendor", "kind": "openai", "credential_env": "SECRET_KEY", "request_timeout_seconds": "10",
                                     "cooldown_failures": "3", "cooldown_window_seconds": "60", "cooldown_seconds": "60",
                                     "max_retry_after_seconds": "3600", "quotas-TOTAL_FORMS": "0", "quotas-INITIAL_FORMS": "0",
                                     "availability_checks-TOTAL_FORMS": "0", "availability_checks-INITIAL_FORMS": "0"})

    assert answer.status_code == 200
    assert b"SECRET_KEY is a variable the server reads for itself" in answer.content
    assert not Provider.objects.exists()


@pytest.fixture
def listener(monkeypatch):
    """An OpenAI-style listener on 127.0.0.1 that records every request, with the server's own secret in the environment."""
    monkeypatch.setattr(base, "SDK_MAX_RETRIES", 0)
    monkeypatch.setenv("SECRET_KEY_COPY_FOR_TEST", SERVER_SECRET)
    monkeypatch.setenv("VENDOR_API_KEY", PROVIDER_KEY)
    with FakeOpenAI(listed=["m1"], api_key=PROVIDER_KEY) as server:
        yield server


def stored_provider(**fields) -> Provider:
    """A provider written straight to the database (as one stored before these rules existed)."""
    provider = ProviderFactory(slug="vendor", kind="openai_compatible", **fields)
    LLMModelFactory(key="m1", provider=provider, model_id="m1")
    return provider


@pytest.mark.django_db
def test_the_refresh_sends_nothing_for_a_variable_it_may_not_read(listener):
    provider = stored_provider(base_url=f"{listener.url}/v1", credential_env="SECRET_KEY_COPY_FOR_TEST")

    check = refresh_provider(provider)

    assert listener.requests == []
    assert not check.ok and "credential not sent: credential_env 'SECRET_KEY_COPY_FOR_TEST'" in check.error
    assert SERVER_SECRET not in check.error


@pytest.mark.django_db
def test_the_refresh_sends_nothing_to_a_private_host_unless_allowed(listener, settings):
    provider = stored_provider(base_url=f"{listener.url}/v1", credential_env="VENDOR_API_KEY")
    settings.PROVIDER_ALLOW_PRIVATE_BASE_URLS = False

    check = refresh_provider(provider)

    assert listener.requests == []
    assert "credential not sent: base_url" in check.error and "not a public address" in check.error

    settings.PROVIDER_ALLOW_PRIVATE_BASE_URLS = True
    assert refresh_provider(provider).ok
    assert [request.headers["authorization"] for request in listener.requests] == [f"Bearer {PROVIDER_KEY}"]


@pytest.mark.django_db
def test_the_refresh_refuses_a_public_name_that_resolves_to_a_private_or_link_local_address(listener, monkeypatch, settings):
    port = int(listener.url.rsplit(":", 1)[1])
    provider = stored_provider(base_url=f"https://api.vendor.example.com:{port}/v1", credential_env="VENDOR_API_KEY")
    resolves_to = {"address": "127.0.0.1"}
    real = socket.getaddrinfo

    def resolver(host, *args, **kwargs):
        if host == "api.vendor.example.com":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (resolves_to["address"], port))]
        return real(host, *args, **kwargs)

    # The system's resolver answering as a hostile DNS zone would: the name is public, its address is not.
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    settings.PROVIDER_ALLOW_PRIVATE_BASE_URLS = False
    check = refresh_provider(provider)
    assert "credential not sent: base_url" in check.error and "api.vendor.example.com (127.0.0.1) is not a public address" in check.error

    settings.PROVIDER_ALLOW_PRIVATE_BASE_URLS = True
    resolves_to["address"] = "169.254.169.254"
    check = refresh_provider(provider)
    assert "api.vendor.example.com (169.254.169.254) is a link-local or cloud metadata address" in check.error
    assert listener.requests == []
    assert AvailabilityCheck.objects.filter(provider=provider, ok=False).count() == 2

