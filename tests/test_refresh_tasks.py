"""The Celery tasks and their schedules, including one run through a real worker and broker."""

import importlib
import os
import threading
import uuid

import pytest
from celery import Celery, _state
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from django.apps import apps as django_apps
from django_celery_beat.models import PeriodicTask
from kombu import Connection, Exchange, Queue

from providers.adapters import base
from providers.models import AvailabilityCheck, LLMModel
from providers.tasks import refresh_availability, sync_provider_quotas
from tests.factories import LLMModelFactory, ProviderFactory
from tests.provider_servers import FakeAnthropic, FakeServiceQuotas, service_quota, use_fake_aws

KEY = "sk-ant-api03-task-test-key"
HAIKU = "claude-3-haiku-20240307"


@pytest.fixture(autouse=True)
def no_retries(monkeypatch):
    monkeypatch.setattr(base, "SDK_MAX_RETRIES", 0)
    monkeypatch.setenv("TEST_ANTHROPIC_API_KEY", KEY)


@pytest.fixture
def anthropic():
    with FakeAnthropic(listed=[HAIKU], api_key=KEY) as server:
        provider = ProviderFactory(slug="anthropic", kind="anthropic", base_url=server.url, credential_env="TEST_ANTHROPIC_API_KEY")
        LLMModelFactory(key="claude-3-haiku", provider=provider, model_id=HAIKU)
        LLMModelFactory(key="claude-3-opus", provider=provider, model_id="claude-3-opus-20240229")
        yield provider


def broker_url() -> str:
    """CELERY_TEST_BROKER_URL, reachable; outside CI a missing broker skips the test, in CI it fails it."""
    url = os.environ.get("CELERY_TEST_BROKER_URL", "")
    problem = "" if url else "CELERY_TEST_BROKER_URL is not set"
    if url:
        try:
            with Connection(url, connect_timeout=3) as connection:
                connection.ensure_connection(max_retries=1)
        except Exception as exc:
            problem = f"the broker at {url} cannot be reached: {exc}"
    if problem and os.environ.get("CI"):
        pytest.fail(problem + " (CI must run against a real broker)")
    if problem:
        pytest.skip(problem)
    return url


@pytest.mark.django_db
def test_the_migration_schedules_both_tasks():
    refresh = PeriodicTask.objects.get(name="Refresh provider availability")
    assert (refresh.task, refresh.interval.every, refresh.interval.period, refresh.enabled) == (
        "providers.tasks.refresh_availability", 10, "minutes", True,
    )
    sync = PeriodicTask.objects.get(name="Sync Bedrock quotas from AWS Service Quotas")
    assert (sync.task, sync.crontab.minute, sync.crontab.hour, str(sync.crontab.timezone)) == (
        "providers.tasks.sync_provider_quotas", "0", "3", "UTC",
    )


@pytest.mark.django_db
def test_the_schedule_migration_can_run_twice():
    migration = importlib.import_module("providers.migrations.0002_periodic_tasks")

    migration.create_schedules(django_apps, None)

    assert PeriodicTask.objects.filter(task__startswith="providers.tasks.").count() == 2


@pytest.mark.django_db
def test_the_refresh_task_refreshes_the_named_provider(anthropic):
    result = refresh_availability.apply(kwargs={"provider_slug": "anthropic"})

    assert result.successful()
    assert result.result == [AvailabilityCheck.objects.get().pk]
    assert LLMModel.objects.get(key="claude-3-haiku").availability == "available"


@pytest.mark.django_db
def test_the_sync_task_syncs_bedrock_providers(monkeypatch):
    quotas = [service_quota("L-1", "On-demand model inference requests per minute for Amazon Nova Pro", 100)]
    with FakeServiceQuotas(quotas) as aws:
        use_fake_aws(monkeypatch, service_quotas_url=aws.url)
        provider = ProviderFactory(slug="bedrock", kind="bedrock", region="us-east-1")
        LLMModelFactory(key="nova-pro", provider=provider, model_id="amazon.nova-pro-v1:0")

        result = sync_provider_quotas.apply()

    check = AvailabilityCheck.objects.get(kind="quota_sync")
    assert result.result == [check.pk] and check.ok and check.models_changed == 1


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_the_refresh(anthropic):
    queue = f"switchboard-test-{uuid.uuid4().hex[:12]}"
    app = Celery("switchboard-test", set_as_current=False)
    app.conf.update(
        broker_url=broker_url(),
        task_default_queue=queue,
        task_ignore_result=True,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=False,
    )
    done = threading.Event()

    def finished(sender=None, **kwargs):
        if sender.name == "providers.tasks.refresh_availability":
            done.set()

    task_postrun.connect(finished, weak=False)
    current, default = _state.get_current_app(), _state.default_app
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
            app.send_task("providers.tasks.refresh_availability", kwargs={"provider_slug": "anthropic"})
            assert done.wait(15), "the worker did not run the task within 15 s"
    finally:
        task_postrun.disconnect(finished)
        _state.set_default_app(default)
        current.set_current()
        with app.connection_for_write() as connection:
            # Declared again on this channel so that deleting it also removes its binding from the broker.
            leftover = Queue(queue, Exchange(queue), routing_key=queue, channel=connection.default_channel)
            leftover.declare()
            leftover.delete()

    check = AvailabilityCheck.objects.get()
    assert check.ok and check.provider == anthropic and check.models_changed == 2
    assert dict(LLMModel.objects.values_list("key", "availability")) == {"claude-3-haiku": "available", "claude-3-opus": "unavailable"}
