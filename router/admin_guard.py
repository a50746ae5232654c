"""The admin edits the policy as safely as the policy file does.

Every save and delete of a policy object in the admin (its inline rows included) is made in a transaction,
the whole policy it leaves is checked with the importer's rules (router.policy.problems), and then either
kept as a new policy version or rolled back. A refused save is shown again with each problem on the field
or inline it concerns, naming the object ("route general/low: models: must list at least one model"); a
refused delete says why on the object's page. The object's history page lists the policy versions that
changed it, chain edits included; a whole version is rolled back from the Policy history.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
from django.core.exceptions import ValidationError
from django.db import models as db_models
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from router.models import PolicyVersion
from router.policy.export import export_policy
from router.policy.problems import Problem, new_problems
from router.policy.versions import describe, latest_document, lock_policy, record_version

COMMENT_FIELD = "change_comment"
# Versions read for one object's history page: the newest are what an ops person looks for.
HISTORY_VERSIONS_READ = 500


class PolicyRefused(Exception):
    """An admin edit that would leave a policy the importer refuses."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(map(str, problems)))
        self.problems = problems


def policy_label(obj: db_models.Model) -> tuple[str, str]:
    """The (kind, name) the policy history and its problems use for a policy object; an object of a section another
    app owns (router.policy.sections) names itself with its own policy_label()."""
    if hasattr(obj, "policy_label"):
        return obj.policy_label()
    kind = obj._meta.model_name
    if kind == "llmmodel":
        return "model", obj.key
    if kind == "quota":
        return "quota", f"{obj.provider.slug}/{obj.name}"
    if kind == "route":
        return "route", f"{obj.category.slug}/{obj.complexity}"
    if kind == "policy":
        return "policy", "default tier"
    return kind, obj.slug


class GuardedInline:
    """An inline whose rows are one field of the policy object (`policy_field`, e.g. a route's `models`): the
    problems about that field are shown above its rows."""

    policy_field = ""

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        problems = [str(p) for p in getattr(request, "policy_problems", ()) if p.field == self.policy_field and _about(p, obj)]
        if not problems:
            return formset

        class RefusedFormSet(formset):
            def clean(self) -> None:
                super().clean()
                raise ValidationError(problems)

        return RefusedFormSet


def _about(problem: Problem, obj: db_models.Model | None) -> bool:
    return obj is not None and obj.pk is not None and (problem.kind, problem.name) == policy_label(obj)


class PolicyEditAdmin:
    """Mixed into the admin of every policy object (before the ModelAdmin class)."""

    # Set on the Policy page, where clearing the default tier is the edit itself.
    clears_default_tier = False

    # Forms: a comment for the history, and the problems of a refused save.

    def get_form(self, request: HttpRequest, obj=None, change: bool = False, **kwargs):
        # The comment is this form's own field, not the model's.
        if "fields" not in kwargs:
            kwargs["fields"] = flatten_fieldsets(self.get_fieldsets(request, obj))
        if kwargs["fields"] is not None:
            kwargs["fields"] = [name for name in kwargs["fields"] if name != COMMENT_FIELD]
        form = super().get_form(request, obj, change=change, **kwargs)
        taken = {inline.policy_field for inline in self.get_inline_instances(request, obj) if isinstance(inline, GuardedInline)}
        problems = [p for p in getattr(request, "policy_problems", ()) if not (p.field in taken and _about(p, obj))]

        class PolicyForm(form):
            change_comment = forms.CharField(required=False, max_length=500, label="Why (kept in the policy history)")

            def clean(self) -> dict:
                cleaned = super().clean()
                for problem in problems:
                    shown_here = _about(problem, obj) and problem.field in self.fields
                    self.add_error(problem.field if shown_here else None, str(problem))
                return cleaned

        PolicyForm.__name__ = form.__name__
        return PolicyForm

    def get_fieldsets(self, request: HttpRequest, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if COMMENT_FIELD in flatten_fieldsets(fieldsets) or not self.has_change_permission(request, obj):
            return fieldsets
        return [*fieldsets, ("Policy history", {"fields": [COMMENT_FIELD]})]

    def changeform_view(self, request: HttpRequest, object_id=None, form_url="", extra_context=None) -> HttpResponse:
        if request.method != "POST":
            return super().changeform_view(request, object_id, form_url, extra_context)
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except PolicyRefused as refused:
            # The transaction was rolled back; the same POST is shown again with every problem as a form error.
            request.policy_problems = refused.problems
            return super().changeform_view(request, object_id, form_url, extra_context)

    # Saving and deleting: one at a time, checked whole, kept as a version.

    def save_model(self, request: HttpRequest, obj, form, change: bool) -> None:
        lock_policy()
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        self.keep_version(request, form.cleaned_data.get(COMMENT_FIELD, ""))

    def delete_model(self, request: HttpRequest, obj) -> None:
        lock_policy()
        kind, name = policy_label(obj)
        super().delete_model(request, obj)
        self.keep_version(request, f"deleted {kind} {name}")

    def keep_version(self, request: HttpRequest, comment: str) -> None:
        """Refuses (PolicyRefused) a change that leaves problems the policy did not have; else stores it as a version."""
        if problems := new_problems(latest_document(), export_policy(), clears_default_tier=self.clears_default_tier):
            raise PolicyRefused(problems)
        record_version(request.user.get_username(), PolicyVersion.Source.ADMIN, comment, request.user)

    def delete_view(self, request: HttpRequest, object_id, extra_context=None) -> HttpResponse:
        try:
            return super().delete_view(request, object_id, extra_context)
        except PolicyRefused as refused:
            for problem in refused.problems:
                messages.error(request, f"Nothing was deleted: {problem}")
            opts = self.model._meta
            return HttpResponseRedirect(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[object_id]))

    def get_actions(self, request: HttpRequest) -> dict:
        # Deleting several objects at once would bypass the check and its message: delete them one by one.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    # History: the policy versions that changed this object.

    def history_view(self, request: HttpRequest, object_id, extra_context=None) -> HttpResponse:
        obj = self.get_object(request, object_id)
        if obj is None or not self.has_view_or_change_permission(request, obj):
            return super().history_view(request, object_id, extra_context)
        kind, name = policy_label(obj)
        versions = []
        whole_policy = kind == "policy"  # the policy row's history is every version
        for version in PolicyVersion.objects.order_by("-number")[:HISTORY_VERSIONS_READ]:
            lines = [describe(change) for change in version.changes if whole_policy or (change["kind"], change["name"]) == (kind, name)]
            if lines:
                versions.append({"version": version, "lines": lines})
        context = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "object": obj, "title": f"History: {kind} {name}",
            "versions": versions, "subtitle": None,
        }
        return TemplateResponse(request, "admin/policy_object_history.html", context)

    def history_form_view(self, request: HttpRequest, object_id, version_id, extra_context=None) -> HttpResponse:
        messages.info(request, "A single object's revert could not restore its chains: roll back a whole version from the Policy history.")
        return HttpResponseRedirect(reverse("admin:router_policyversion_changelist"))


def register_guarded(model: type[db_models.Model], model_admin: type[admin.ModelAdmin]) -> None:
    """Registers `model` with its admin made a PolicyEditAdmin (for the catalog's admins, which cannot import the router)."""
    if admin.site.is_registered(model):
        admin.site.unregister(model)
    admin.site.register(model, type(model_admin.__name__, (PolicyEditAdmin, model_admin), {"__module__": __name__}))
