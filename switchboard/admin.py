"""Admin pieces every app shares."""

from decimal import Decimal

from django import forms
from django.contrib import admin
from django.db import models


def plain_number(value: Decimal | int | float | None) -> str:
    """A number as people write it: 5,000,000 rather than 5000000.000000; 0.8 rather than 0.800."""
    if value is None:
        return "-"
    number = Decimal(value).normalize() if not isinstance(value, float) else Decimal(repr(value)).normalize()
    whole, _, fraction = f"{number:f}".partition(".")
    return f"{int(whole):,}" + (f".{fraction}" if fraction else "")


class PlainDecimalField(forms.DecimalField):
    """A decimal form field that shows a stored 5000000.000000 as 5000000 and 0.800 as 0.8."""

    def prepare_value(self, value):
        if isinstance(value, Decimal):
            return f"{value.normalize():f}"
        return super().prepare_value(value)


class PlainNumbersAdmin(admin.ModelAdmin):
    """Decimal fields edited without trailing zeros."""

    formfield_overrides = {models.DecimalField: {"form_class": PlainDecimalField}}
class ReadOnlyAdmin(admin.ModelAdmin):
    """Records the system writes (decisions, usage reports, availability checks): viewed and searched, never edited."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
