"""The start page, the operator switcher, and the health check for a load balancer."""

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

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


@require_GET
def healthz(request):
    """200 "ok" while the process answers: no database, no session, nothing to leak.

    A load balancer's liveness probe, and bench.api's floor (the cost of gunicorn
    and Django's middleware answering at all, measured in the same run as the API).
    """
    return HttpResponse("ok", content_type="text/plain")
