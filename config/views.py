"""The start page and the operator switcher, shared by every part of the pages."""

from django.contrib.auth.decorators import login_required
from django.http import HttpResponseBadRequest
from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from clients.tenancy import SESSION_OPERATOR_KEY, operators_for


@login_required
def home(request):
    """Marketers start on their campaigns, consent admins on client search."""
    if request.user.has_perm("campaigns.view_campaign"):
        return redirect("campaigns:list")
    if request.user.has_perm("clients.view_client"):
        return redirect("clients:search")
    return redirect("admin:index") if request.user.is_staff else redirect("logout")


@login_required
@require_POST
def switch_operator(request):
    try:
        operator_id = int(request.POST.get("operator", ""))
    except ValueError:
        return HttpResponseBadRequest("Pick an operator.")
    if not operators_for(request.user).filter(pk=operator_id).exists():
        return HttpResponseBadRequest("You do not work in that operator.")
    request.session[SESSION_OPERATOR_KEY] = operator_id
    back = request.headers.get("Referer", "")
    if not url_has_allowed_host_and_scheme(back, {request.get_host()}, request.is_secure()):
        back = "home"
    # Ids in the old page's URL belong to the other operator: start from the top.
    return redirect("home" if "/campaigns/" in back or "/clients/" in back else back)
