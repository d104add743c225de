"""What every page's header needs: the operator being worked in and the others to switch to."""

from django.core.exceptions import PermissionDenied

from clients.tenancy import current_operator


def operator(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or request.path.startswith("/admin/"):
        return {}
    try:
        current = current_operator(request)
    except PermissionDenied:  # a user without operators still gets a page saying so
        return {}
    return {"current_operator": current, "operators": request._cascade_operators}
