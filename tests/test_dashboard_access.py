"""Who sees the dashboard: logged-in users with the viewers' permission; everyone else is sent to log in or refused."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.utils import timezone

from providers.models import AvailabilityCheck
from router.models import Decision
from tests.factories import LLMModelFactory, ProviderFactory, QuotaFactory, make_route

pytestmark = pytest.mark.django_db

PAGES = ["/", "/?fragment=1", "/fallbacks/", "/fallbacks/?format=csv", "/what-if/", "/what-if/?category=general", "/alerts/"]


@pytest.fixture(autouse=True)
def dashboard_settings(settings):
    """Database counters and a fast password hasher."""
    settings.REDIS_URL = ""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def policy():
    openai = ProviderFactory(slug="openai", kind="openai")
    gpt = LLMModelFactory(key="gpt-4o", provider=openai, checked_at=timezone.now())
    quota = QuotaFactory(provider=openai, name="tokens-day")
    make_route("general", [gpt])
    decision = Decision.objects.create(created_at=timezone.now() - timedelta(minutes=3), category="general", complexity="medium",
                                       outcome="exhausted", primary_key="gpt-4o", reason="every candidate was passed over: gpt-4o: quota",
                                       trace=[{"model": "gpt-4o", "provider": "openai", "verdict": "skipped", "reason": "quota"}],
                                       policy_version=1)
    AvailabilityCheck.objects.create(provider=openai, started_at=timezone.now(), ok=False, error="timed out")
    return {"provider": openai, "model": gpt, "quota": quota, "decision": decision}


def member_of(group: str, username: str) -> User:
    user = User.objects.create_user(username, password="correct-horse-battery", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    return user


@pytest.mark.parametrize("url", PAGES)
def test_anonymous_users_are_sent_to_the_admin_login(client, policy, url):
    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=/")
    assert response["Location"] == "/admin/login/?next=" + url.replace("?", "%3F").replace("=", "%3D")


@pytest.mark.parametrize("url", PAGES)
def test_a_logged_in_user_without_the_permission_gets_403(client, policy, url):
    client.force_login(User.objects.create_user("intern", is_staff=True))

    assert client.get(url).status_code == 403


@pytest.mark.parametrize("group", ["policy viewers", "policy editors"])
@pytest.mark.parametrize("url", PAGES)
def test_viewers_and_editors_see_every_page(client, policy, group, url):
    client.force_login(member_of(group, "member"))

    assert client.get(url).status_code == 200


def test_the_permission_alone_is_enough(client, policy):
    user = User.objects.create_user("auditor", is_staff=True)
    user.user_permissions.add(Permission.objects.get(content_type__app_label="router", codename="view_decision"))
    client.force_login(user)

    assert client.get("/").status_code == 200


def test_logging_in_through_the_admin_login_page_leads_back_to_the_dashboard(client, policy):
    member_of("policy viewers", "viewer")

    login = client.post("/admin/login/?next=/fallbacks/", {"username": "viewer", "password": "correct-horse-battery", "next": "/fallbacks/"})
    page = client.get(login["Location"])

    assert login.status_code == 302 and login["Location"] == "/fallbacks/"
    assert page.status_code == 200 and "Fallback history" in page.content.decode()


def test_log_out_is_a_post_to_the_admin_logout(client, policy):
    client.force_login(member_of("policy viewers", "viewer"))
    page = client.get("/").content.decode()

    assert '<form class="logout" method="post" action="/admin/logout/">' in page
    assert 'name="csrfmiddlewaretoken"' in page
    client.post("/admin/logout/", {"next": "/"})
    assert client.get("/").status_code == 302


def test_the_nav_links_every_page_the_admin_and_the_api_docs(client, policy):
    client.force_login(member_of("policy viewers", "viewer"))
    page = client.get("/fallbacks/").content.decode()

    for href in ('href="/"', 'href="/fallbacks/" aria-current="page"', 'href="/what-if/"', 'href="/admin/"', 'href="/api/docs/"'):
        assert href in page


def test_the_links_into_the_admin_open_for_a_viewer(client, policy):
    client.force_login(member_of("policy viewers", "viewer"))
    page = client.get("/").content.decode()

    links = [
        f'/admin/providers/provider/{policy["provider"].pk}/change/',
        f'/admin/providers/llmmodel/{policy["model"].pk}/change/',
        f'/admin/providers/quota/{policy["quota"].pk}/change/',
        f'/admin/router/decision/{policy["decision"].pk}/change/',
    ]
    for link in links:
        assert f'href="{link}"' in page
        assert client.get(link).status_code == 200, link  # viewers see the object read-only


@pytest.mark.parametrize("url", ["/", "/fallbacks/", "/what-if/"])
def test_the_pages_only_answer_get(client, policy, url):
    client.force_login(member_of("policy viewers", "viewer"))

    assert client.post(url).status_code == 405
    assert client.head(url).status_code == 200
