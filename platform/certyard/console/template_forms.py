"""The console's template form: Django admin's, with the same checks.

Every rule of a template lives in ``Template.clean()`` (which ModelForm validation calls)
and the services it uses, so this form adds no rule of its own: it reuses the admin's
fields (lists one per line, subject attribute rules) and adds the groups as checkboxes.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.models import Group

from certyard.enrollment.admin import TemplateForm
from certyard.enrollment.models import Template


class TemplateConsoleForm(TemplateForm):
    """Create or edit a template; ``Template.clean()`` decides what may be saved."""

    groups = forms.ModelMultipleChoiceField(
        queryset=Group.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="People in these groups may act on this template's requests and "
        "certificates (renew, revoke, approve…), besides their requester.",
    )

    class Meta(TemplateForm.Meta):
        model = Template
        fields = [*TemplateForm.Meta.fields, "groups"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["groups"].queryset = Group.objects.order_by("name")  # type: ignore[attr-defined]
        # The platform's own CAs never issue for a template (the model's limit_choices_to
        # says so too; kept here so the choice list cannot drift from the rule).
        ca_field = self.fields["ca"]
        ca_field.queryset = ca_field.queryset.filter(purpose__isnull=True)  # type: ignore[attr-defined]
        ca_field.empty_label = "— (issue through a CA gateway)"  # type: ignore[attr-defined]
        self.fields["gateway"].empty_label = "— (issue from a built-in CA)"  # type: ignore[attr-defined]
        self.fields["product_parameters"].required = False
        self.fields["product_parameters"].help_text = (
            'The gateway product\'s parameters as a JSON object, e.g. {"profile": "web"}; '
            "empty for none."
        )

    def clean_product_parameters(self) -> Any:
        value = self.cleaned_data.get("product_parameters")
        return {} if value in (None, "") else value
