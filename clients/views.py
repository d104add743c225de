"""Pages for consent admins: find a client, change consent with a reason, see the history,
import clients from a file.

Views are thin: forms check input, `clients.services` and `clients.importing`
change state. Every row is looked up inside the user's current operator, so
another operator's id is a 404 whatever the URL says.
"""

from __future__ import annotations

import io
import re
from dataclasses import asdict

import phonenumbers
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import ValidationError
from django.db import IntegrityError
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_http_methods

from clients import formats, importing, services
from clients.channels import CONSENT_FLAGS
from clients.forms import FLAG_LABELS, ConsentForm, ImportForm
from clients.models import Card, Client, ConsentChange, Operator
from clients.phones import normalize_phone
from clients.tenancy import current_operator

PAGE_SIZE = 25
# The error report is kept in the session between the failed upload and its
# download; past this many rows the file's layout is wrong, not its rows.
SESSION_ERRORS_KEY = "clients_import_errors"
SESSION_RESULT_KEY = "clients_import_result"
MAX_STORED_ERRORS = 5_000
MAX_STORED_VALUE = 100
MAX_SHOWN_ERRORS = 100

view_required = permission_required("clients.view_client", raise_exception=True)
change_required = permission_required("clients.change_client", raise_exception=True)
import_required = permission_required(
    ("clients.add_client", "clients.change_client"), raise_exception=True
)


def _client(request, pk: int, queryset: QuerySet[Client] | None = None) -> Client:
    queryset = Client.objects.all() if queryset is None else queryset
    return get_object_or_404(queryset, pk=pk, operator=current_operator(request))


# --- search -------------------------------------------------------------------------------

PHONE_LIKE = re.compile(r"[\d\s()+\-.]+")


def search_clients(operator: Operator, query: str) -> QuerySet[Client]:
    """The operator's clients matching a phone (or its beginning), a card number, or a name.

    What people type is read like a phone: "+7 912", "8 (912) 345" and "912345"
    all find 79123456789. An empty query lists the newest clients.
    """
    clients = Client.objects.filter(operator=operator)
    query = query.strip()
    if not query:
        return clients
    if PHONE_LIKE.fullmatch(query) and any(ch.isdigit() for ch in query):
        digits = re.sub(r"\D", "", query)
        condition = Q()
        for prefix in _phone_prefixes(query, digits, operator.default_region):
            condition |= Q(phone__startswith=prefix)
        if len(digits) <= 19 and int(digits) <= importing.MAX_CARD_NUMBER:
            condition |= Q(
                Exists(
                    Card.objects.filter(
                        operator=operator, client=OuterRef("pk"), number=int(digits)
                    )
                )
            )
        return clients.filter(condition)
    condition = Q()
    for word in query.split():
        condition &= (
            Q(first_name__icontains=word)
            | Q(last_name__icontains=word)
            | Q(middle_name__icontains=word)
        )
    if "@" in query:
        condition |= Q(email__iexact=query)
    return clients.filter(condition)


def _phone_prefixes(query: str, digits: str, region: str) -> set[str]:
    try:
        prefixes = {normalize_phone(query, region=region)}
    except ValidationError:
        prefixes = set()
    prefixes.add(digits)
    if query.lstrip().startswith("+"):
        return prefixes
    # Typed without "+": "8 912…" is the national form of "7 912…", "912…" lacks the code.
    country_code = str(phonenumbers.country_code_for_region(region))
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    national_prefix = metadata.national_prefix if metadata else None
    if national_prefix and digits.startswith(national_prefix):
        prefixes.add(country_code + digits[len(national_prefix) :])
    elif not digits.startswith(country_code):
        prefixes.add(country_code + digits)
    return prefixes


@login_required
@view_required
@require_GET
def client_search(request):
    operator = current_operator(request)
    query = request.GET.get("q", "").strip()[:100]
    try:
        page = max(1, int(request.GET.get("page", "1")))
    except ValueError:
        page = 1
    # No COUNT: on a few million clients it costs more than the page itself.
    # One row past the page says whether there is a next one.
    start = (page - 1) * PAGE_SIZE
    rows = list(
        search_clients(operator, query)
        .order_by("-pk")
        .prefetch_related(Prefetch("cards", queryset=Card.objects.order_by("number")))[
            start : start + PAGE_SIZE + 1
        ]
    )
    has_next = len(rows) > PAGE_SIZE

    def page_url(number: int) -> str:
        params = {"q": query} if query else {}
        if number > 1:
            params["page"] = number
        return "?" + urlencode(params) if params else "?"

    return render(
        request,
        "clients/search.html",
        {
            "nav": "clients",
            "query": query,
            "clients": rows[:PAGE_SIZE],
            "flag_labels": [FLAG_LABELS[flag] for flag in CONSENT_FLAGS],
            "page": page,
            "previous_url": page_url(page - 1) if page > 1 else None,
            "next_url": page_url(page + 1) if has_next else None,
        },
    )


# --- one client ---------------------------------------------------------------------------


def _flag_rows(client: Client) -> list[dict]:
    return [
        {"flag": flag, "label": FLAG_LABELS[flag], "value": getattr(client, flag)}
        for flag in CONSENT_FLAGS
    ]


@login_required
@view_required
@require_GET
def client_detail(request, pk: int):
    client = _client(request, pk, Client.objects.select_related("registered_pos"))
    history = (
        ConsentChange.objects.filter(client=client, operator_id=client.operator_id)
        .select_related("changed_by", "api_credential")
        .order_by("-changed_at", "-pk")
    )
    return render(
        request,
        "clients/detail.html",
        {
            "nav": "clients",
            "client": client,
            "cards": list(client.cards.order_by("number")),
            "flags": _flag_rows(client),
            "history": [
                {"change": change, "label": FLAG_LABELS.get(change.flag, change.flag)}
                for change in history
            ],
        },
    )


@login_required
@change_required
@require_http_methods(["GET", "POST"])
def client_consent(request, pk: int):
    client = _client(
        request,
        pk,
        Client.objects.only(
            "id", "operator_id", "phone", "first_name", "last_name", "email", *CONSENT_FLAGS
        ),
    )
    initial = {flag: getattr(client, flag) for flag in CONSENT_FLAGS}
    form = ConsentForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        changes = services.change_consent(
            client_id=client.pk,
            flags=form.changed_flags(),
            source=ConsentChange.Source.PAGE,
            changed_by=request.user,
            reason=form.cleaned_data["reason"],
        )
        if changes:
            said = [
                (
                    _("%(flag)s consent turned on")
                    if change.new_value
                    else _("%(flag)s consent turned off")
                )
                % {"flag": FLAG_LABELS[change.flag]}
                for change in changes
            ]
            messages.success(request, "; ".join(said) + ".")
        else:
            messages.info(request, _("Nothing changed."))
        return redirect("clients:detail", pk=client.pk)
    return render(
        request,
        "clients/consent.html",
        {"nav": "clients", "client": client, "form": form},
    )


# --- import -------------------------------------------------------------------------------


@login_required
@import_required
@require_http_methods(["GET", "POST"])
def client_import(request):
    operator = current_operator(request)
    errors: list[importing.RowError] = []
    error_count = 0
    if request.method == "POST":
        form = ImportForm(request.POST, request.FILES)
        if form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                rows = importing.read_rows(upload, upload.name)
            except importing.ImportFileError as error:
                form.add_error("file", str(error))
            else:
                valid, errors = importing.validate_rows(operator, rows)
                error_count = len(errors)
                if errors:
                    _keep_errors(request, upload.name, errors)
                else:
                    try:
                        result = importing.apply_import(operator, valid, request.user, upload.name)
                    except (importing.ImportConflict, IntegrityError):
                        form.add_error(
                            None,
                            _(
                                "Clients changed while the file was being imported. "
                                "Nothing was imported; upload the file again."
                            ),
                        )
                    else:
                        request.session.pop(SESSION_ERRORS_KEY, None)
                        request.session[SESSION_RESULT_KEY] = {
                            "filename": upload.name,
                            "rows": len(valid),
                            **asdict(result),
                        }
                        # Redirect so that reloading the page cannot import twice.
                        return redirect("clients:import")
    else:
        form = ImportForm()
    return render(
        request,
        "clients/import.html",
        {
            "nav": "clients",
            "form": form,
            "result": request.session.pop(SESSION_RESULT_KEY, None)
            if request.method == "GET"
            else None,
            "errors": errors[:MAX_SHOWN_ERRORS],
            "error_count": error_count,
            "columns": importing.COLUMNS,
            "max_rows": importing.MAX_ROWS,
        },
    )


def _keep_errors(request, filename: str, errors: list[importing.RowError]) -> None:
    request.session[SESSION_ERRORS_KEY] = {
        "filename": filename,
        "count": len(errors),
        "errors": [
            [error.row, error.column, error.value[:MAX_STORED_VALUE], error.message]
            for error in errors[:MAX_STORED_ERRORS]
        ],
    }


@login_required
@import_required
@require_GET
def import_errors(request):
    kept = request.session.get(SESSION_ERRORS_KEY)
    if not kept:
        messages.info(request, _("There is no error report: the last import had no errors."))
        return redirect("clients:import")
    errors = [importing.RowError(*values) for values in kept["errors"]]
    flavour = formats.csv_flavour(request.GET, current_operator(request).time_zone)
    out = io.StringIO()
    if flavour.bom:
        out.write("\ufeff")  # Excel reads a CSV as UTF-8 only with a BOM
    importing.write_error_report(errors, out, delimiter=flavour.delimiter)
    if kept["count"] > len(errors):
        more = kept["count"] - len(errors)
        note = ngettext(
            "%(count)d more error is not listed",
            "%(count)d more errors are not listed",
            more,
        ) % {"count": more}
        out.write(f"# {note}\r\n")
    stem = re.sub(r"[^\w.-]+", "_", kept["filename"].rsplit(".", 1)[0])[:60] or "import"
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{stem}-errors.csv"'
    return response
