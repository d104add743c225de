"""Keeping each operator's staff inside their own operator in the admin."""

from django.contrib import admin
from django.contrib.admin.utils import get_fields_from_path
from django.db import models
from django.utils.translation import gettext as _

from clients.models import Operator


class OperatorScopedAdmin(admin.ModelAdmin):
    """Admin for rows that carry `operator`: staff see and pick only their operators' rows.

    Superusers see everything. `operator_path` names the lookup to the operator
    for models that reach it through a relation.
    """

    operator_path = "operator"
    # Django 6 switches URL fields to https by default; opt in now.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def _operator_ids(self, request) -> list[int] | None:
        if request.user.is_superuser:
            return None
        if not hasattr(request, "_cascade_operator_ids"):
            request._cascade_operator_ids = list(
                request.user.operator_memberships.values_list("operator_id", flat=True)
            )
        return request._cascade_operator_ids

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        operator_ids = self._operator_ids(request)
        if operator_ids is None:
            return queryset
        return queryset.filter(**{f"{self.operator_path}__in": operator_ids})

    def get_list_filter(self, request):
        list_filter = super().get_list_filter(request)
        if self._operator_ids(request) is None:
            return list_filter
        # Django's related filter offers every row of the related table (every operator,
        # every provider account); staff are offered only what their own rows point at.
        return [
            (item, admin.RelatedOnlyFieldListFilter)
            if isinstance(item, str) and get_fields_from_path(self.model, item)[-1].is_relation
            else item
            for item in list_filter
        ]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        operator_ids = self._operator_ids(request)
        if operator_ids is not None:
            related = db_field.related_model
            if related is Operator:
                kwargs["queryset"] = Operator.objects.filter(pk__in=operator_ids)
            elif any(field.name == "operator" for field in related._meta.fields):
                kwargs["queryset"] = related._default_manager.filter(operator_id__in=operator_ids)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        operator_ids = self._operator_ids(request)
        related = db_field.related_model
        if operator_ids is not None and any(f.name == "operator" for f in related._meta.fields):
            kwargs["queryset"] = related._default_manager.filter(operator_id__in=operator_ids)
        return super().formfield_for_manytomany(db_field, request, **kwargs)


# --- the pages --------------------------------------------------------------------------

SESSION_OPERATOR_KEY = "cascade_operator_id"


def operators_for(user):
    """The operators a signed-in user works in (every operator for a superuser)."""
    if user.is_superuser:
        return Operator.objects.filter(is_active=True)
    return Operator.objects.filter(is_active=True, members__user=user)


def current_operator(request) -> Operator:
    """The operator the user is working in now: the one picked last, else their first.

    Cached on the request, so a page pays for it once. A user with no operator
    gets PermissionDenied: there is nothing they may see.
    """
    from django.core.exceptions import PermissionDenied

    if hasattr(request, "_cascade_operator"):
        return request._cascade_operator
    operators = list(operators_for(request.user).order_by("name")[:50])
    if not operators:
        raise PermissionDenied(_("You do not work in any operator yet; ask an administrator."))
    wanted = request.session.get(SESSION_OPERATOR_KEY)
    operator = next((o for o in operators if o.pk == wanted), operators[0])
    request._cascade_operator = operator
    request._cascade_operators = operators
    return operator
