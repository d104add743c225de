"""Marketers' pages: campaigns (list, builder, preview, dashboard, messages) and templates.

Views are thin: forms check input, `campaigns.services` changes state, and
`campaigns.stats` / `campaigns.preview` compute what is shown. Every row is
looked up inside the user's current operator, so another operator's id is a
404 whatever the URL says.
"""

from __future__ import annotations

import csv

import django_filters
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, Exists, OuterRef, Prefetch, Q, Subquery
from django.db.models.functions import Coalesce
from django.http import (
    Http404,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseNotFound,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from campaigns import (
    caps,
    experiments,
    links,
    preview,
    series,
    services,
    stats,
    triggers,
    unsubscribe,
)
from campaigns.audience import forecast
from campaigns.forms import CASCADE_STEPS, CampaignForm, SegmentForm, TemplateForm
from campaigns.lists import read_list
from campaigns.models import (
    Campaign,
    Delivery,
    DeliveryEvent,
    InboundReply,
    Message,
    MessageTemplate,
)
from clients import formats
from clients.channels import Channel
from clients.models import Card
from clients.phones import normalize_phone
from clients.tenancy import current_operator
from providers.models import ChannelRoute

PAGE_SIZE = 25
view_required = permission_required("campaigns.view_campaign", raise_exception=True)
change_required = permission_required("campaigns.change_campaign", raise_exception=True)


def _campaign(request, pk: int, queryset=None, **lookups) -> Campaign:
    operator = current_operator(request)
    queryset = Campaign.objects.all() if queryset is None else queryset
    campaign = get_object_or_404(
        queryset.select_related("template"), pk=pk, operator=operator, **lookups
    )
    campaign.operator = operator  # already loaded: the pages read its name and time zone
    return campaign


class CampaignFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label=gettext_lazy("Search"))
    state = django_filters.ChoiceFilter(
        choices=Campaign.State.choices, empty_label=gettext_lazy("Any state")
    )
    channel = django_filters.ChoiceFilter(
        choices=Channel.choices, method="uses_channel", empty_label=gettext_lazy("Any channel")
    )

    class Meta:
        model = Campaign
        fields = ["q", "state", "channel"]

    def search(self, queryset, name, value):
        return queryset.filter(Q(name__icontains=value) | Q(template__name__icontains=value))

    def uses_channel(self, queryset, name, value):
        return queryset.filter(channels__contains=[value])


@login_required
@view_required
@require_GET
def campaign_list(request):
    operator = current_operator(request)
    campaigns = Campaign.objects.filter(operator=operator).select_related("template")
    filtered = CampaignFilter(request.GET, queryset=campaigns.order_by("-created_at", "-pk"))
    page = Paginator(filtered.qs, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "campaigns/list.html",
        {
            "nav": "campaigns",
            "filter": filtered,
            "page": page,
            "rows": stats.list_rows(list(page.object_list)),
            "query": _without_page(request),
        },
    )


def _without_page(request) -> str:
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


# --- builder ------------------------------------------------------------------------------


def _initial(campaign: Campaign) -> dict:
    initial = {
        "name": campaign.name,
        "template": campaign.template_id,
        "audience_kind": campaign.audience_kind,
        "start": "at" if campaign.scheduled_at else "now",
        "scheduled_at": campaign.scheduled_at.astimezone(_zone(campaign.operator))
        if campaign.scheduled_at
        else None,
        "send_window_start": campaign.send_window_start,
        "send_window_end": campaign.send_window_end,
        "ttl_minutes": campaign.ttl_minutes,
        "read_is_final": campaign.read_is_final,
        "kind": campaign.kind,
        "trigger": campaign.trigger,
        "trigger_delay_minutes": campaign.trigger_delay_minutes,
        "trigger_days": campaign.trigger_days,
        "trigger_local_hour": campaign.trigger_local_hour,
        "recurrence": campaign.recurrence,
        "recurrence_time": campaign.recurrence_time,
        "recurrence_day": campaign.recurrence_day,
        "cap_per_day": campaign.cap_per_day,
        "cap_per_week": campaign.cap_per_week,
        "cap_min_gap_minutes": campaign.cap_min_gap_minutes,
        "ab_mode": campaign.ab_mode,
        "ab_test_percent": campaign.ab_test_percent,
        "ab_wait_minutes": campaign.ab_wait_minutes,
        "ab_metric": campaign.ab_metric,
        "holdout_percent": campaign.holdout_percent,
        "holdout_days": campaign.holdout_days,
        "track_links": campaign.track_links,
    }
    for step, channel in enumerate(campaign.channels[:CASCADE_STEPS]):
        initial[f"channel_{step}"] = channel
    return initial


def _zone(operator):
    import zoneinfo

    return zoneinfo.ZoneInfo(operator.time_zone)


@login_required
@change_required
def campaign_edit(request, pk: int | None = None):
    operator = current_operator(request)
    campaign = _campaign(request, pk) if pk else None
    if campaign is not None and campaign.state != Campaign.State.DRAFT:
        messages.error(request, _("Only a draft can be edited."))
        return redirect("campaigns:detail", pk=campaign.pk)
    if request.method == "POST":
        form = CampaignForm(request.POST, request.FILES, operator=operator)
        segment_form = SegmentForm(request.POST, operator=operator)
        list_errors = []
        if form.is_valid() and segment_form.is_valid():
            data = form.cleaned_data
            entries = None
            if data["audience_kind"] == Campaign.AudienceKind.LIST:
                upload = data.get("audience_file")
                if upload is not None:
                    parsed = read_list(upload, operator=operator)
                    list_errors = parsed.errors
                    entries = parsed.entries
                elif campaign is None or not campaign.list_entries.exists():
                    form.add_error("audience_file", _("Upload the list."))
            if not list_errors and not form.errors:
                try:
                    campaign = services.save_draft(
                        operator=operator,
                        user=request.user,
                        campaign_id=campaign.pk if campaign else None,
                        name=data["name"],
                        template=data.get("template"),
                        new_text=data.get("new_text") or "",
                        channels=data["channels"],
                        audience_kind=data["audience_kind"],
                        segment=segment_form.segment(),
                        list_entries=entries,
                        scheduled_at=data.get("scheduled_at"),
                        send_window=(data.get("send_window_start"), data.get("send_window_end")),
                        ttl_minutes=data["ttl_minutes"],
                        read_is_final=data.get("read_is_final", False),
                        lifecycle=form.lifecycle(),
                        variant_templates=data["variant_templates"],
                    )
                except ValidationError as error:
                    form.add_error(None, error)
                else:
                    messages.success(
                        request, _("Saved “%(name)s”. Check the preview.") % {"name": campaign.name}
                    )
                    return redirect("campaigns:preview", pk=campaign.pk)
    else:
        form = CampaignForm(
            initial=_initial(campaign) if campaign else {"ttl_minutes": 1440},
            operator=operator,
            campaign=campaign,
        )
        segment_form = SegmentForm(
            initial=SegmentForm.initial_from(campaign.segment) if campaign else {},
            operator=operator,
        )
        list_errors = []
    return render(
        request,
        "campaigns/edit.html",
        {
            "nav": "campaigns",
            "campaign": campaign,
            "form": form,
            "segment_form": segment_form,
            "list_errors": list_errors[:100],
            "list_error_count": len(list_errors),
            "routes": _route_names(operator),
            "list_size": campaign.list_entries.count()
            if campaign and campaign.audience_kind == Campaign.AudienceKind.LIST
            else 0,
        },
    )


def _route_names(operator) -> dict[str, list[str]]:
    """Channel label → account names in priority order (enabled accounts), in one query."""
    labels = dict(Channel.choices)
    names: dict[str, list[str]] = {}
    rows = (
        ChannelRoute.objects.filter(operator=operator, account__enabled=True)
        .order_by("channel", "priority")
        .values_list("channel", "account__name")
    )
    for channel, account_name in rows:
        names.setdefault(labels.get(channel, channel), []).append(account_name)
    return names


@login_required
@view_required
@require_GET
def audience_count(request):
    """The builder's live recipient count: an HTML fragment for the current form values."""
    operator = current_operator(request)
    segment_form = SegmentForm(request.GET, operator=operator)
    channels = [
        request.GET.get(f"channel_{step}")
        for step in range(CASCADE_STEPS)
        if request.GET.get(f"channel_{step}") in Channel.values
    ]
    if not segment_form.is_valid():
        return render(request, "campaigns/_count.html", {"errors": segment_form.errors})
    try:
        segment = segment_form.segment()
    except ValidationError as error:
        return render(request, "campaigns/_count.html", {"errors": {"segment": error.messages}})
    result = forecast(
        operator_id=operator.pk, segment=segment, channels=channels, purpose="promotional"
    )
    return render(request, "campaigns/_count.html", {"forecast": result, "channels": channels})


# --- preview, control, dashboard -------------------------------------------------------------


@login_required
@view_required
@require_GET
def campaign_preview(request, pk: int):
    campaign = _campaign(request, pk)
    operator = campaign.operator
    if campaign.audience_kind == Campaign.AudienceKind.LIST:
        recipients = campaign.list_entries.count()
        audience = {"recipients": recipients, "reachable": recipients, "skipped": 0, "reasons": {}}
    else:
        audience = forecast(
            operator_id=operator.pk,
            segment=campaign.segment,
            channels=list(campaign.channels),
            purpose=campaign.purpose,
        )
    shown = _with_highlights(preview.preview_campaign(campaign))
    cost = preview.estimate_cost(campaign, recipients=audience["reachable"], preview=shown)
    caught = None
    if campaign.kind == Campaign.Kind.TRIGGER:
        per_day = triggers.forecast(campaign, timezone.now())
        if per_day is not None:
            daily = -(-sum(per_day) // len(per_day))  # a day's share of the week, rounded up
            caught = {
                "today": per_day[0],
                "week": sum(per_day),
                "cost_per_day": preview.estimate_cost(campaign, recipients=daily, preview=shown),
            }
    return render(
        request,
        "campaigns/preview.html",
        {
            "nav": "campaigns",
            "campaign": campaign,
            "audience": audience,
            "preview": shown,
            "cost": cost,
            "caught": caught,
            "caps": caps.caps_for(campaign, operator),
        },
    )


def _with_highlights(shown):
    """Split each SMS text into runs, marking the characters that force UCS-2."""
    for item in shown.channels:
        item.highlighted = preview.highlight(item.sms_text) if item.sms else []
    return shown


ACTIONS = {
    "launch": services.launch,
    "pause": services.pause,
    "resume": services.resume,
    "cancel": services.cancel,
}


@login_required
@change_required
@require_POST
def campaign_action(request, pk: int, action: str):
    campaign = _campaign(request, pk)
    if action not in ACTIONS:
        raise Http404("No such action.")
    try:
        if action == "launch":
            services.launch(campaign_id=campaign.pk, at=campaign.scheduled_at)
        else:
            ACTIONS[action](campaign_id=campaign.pk)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        done = {
            "launch": _("“%(name)s” launched."),
            "pause": _("“%(name)s” paused."),
            "resume": _("“%(name)s” resumed."),
            "cancel": _("“%(name)s” cancelled."),
        }
        messages.success(request, done[action] % {"name": campaign.name})
    return redirect("campaigns:detail", pk=campaign.pk)


@login_required
@view_required
@require_GET
def campaign_detail(request, pk: int):
    # The reply counts ride on the campaign's own query (the page has ten queries).
    campaign = _campaign(
        request,
        pk,
        Campaign.objects.annotate(
            reply_total=_reply_count(), reply_opt_outs=_reply_count(is_opt_out=True)
        ),
    )
    return render(
        request,
        "campaigns/detail.html",
        {
            "nav": "campaigns",
            "campaign": campaign,
            "data": stats.dashboard(campaign),
            "per_day": stats.sends_per_day(campaign)
            if campaign.kind == Campaign.Kind.TRIGGER
            else None,
            "runs": stats.list_rows(list(campaign.runs.order_by("-pk")[:50]))
            if campaign.kind == Campaign.Kind.RECURRING
            else None,
            "variants": experiments.variant_results(campaign)
            if campaign.ab_mode != Campaign.Testing.NONE
            else None,
            "uplift": experiments.holdout_uplift(campaign),
            "link_clicks": campaign.link_clicks.count() if campaign.track_links else None,
        },
    )


def _reply_count(**lookups):
    replies = (
        InboundReply.objects.filter(campaign=OuterRef("pk"), **lookups)
        .order_by()
        .values("campaign")
        .annotate(n=Count("id"))
        .values("n")
    )
    return Coalesce(Subquery(replies), 0)


@login_required
@view_required
@require_GET
def reply_list(request, pk: int):
    """The clients' replies to a campaign, newest first; `?opt_out=1` for the opt-outs only."""
    campaign = _campaign(request, pk)
    queryset = campaign.replies.select_related("client").order_by("-received_at", "-id")
    opt_outs_only = request.GET.get("opt_out") == "1"
    if opt_outs_only:
        queryset = queryset.filter(is_opt_out=True)
    page_text = request.GET.get("page") or "1"
    page_number = min(max(1, int(page_text)), 100_000) if page_text.isdigit() else 1
    start = (page_number - 1) * PAGE_SIZE
    rows = list(queryset[start : start + PAGE_SIZE + 1])
    return render(
        request,
        "campaigns/replies.html",
        {
            "nav": "campaigns",
            "campaign": campaign,
            "rows": rows[:PAGE_SIZE],
            "page_number": page_number,
            "has_next": len(rows) > PAGE_SIZE,
            "opt_outs_only": opt_outs_only,
            "query": _without_page(request),
        },
    )


@login_required
@view_required
@require_GET
def campaign_series(request, pk: int):
    """The dashboard chart's series (campaigns/series.py), polled while the campaign runs."""
    return JsonResponse(series.timeline(_campaign(request, pk)))


@login_required
@view_required
@require_GET
def campaign_stats(request, pk: int):
    """The dashboard's numbers as JSON, polled every few seconds while the campaign runs."""
    campaign = _campaign(request, pk)
    return JsonResponse(stats.dashboard(campaign))


# --- messages -------------------------------------------------------------------------------


def _messages(request, campaign: Campaign):
    queryset = Message.objects.filter(campaign=campaign)
    term = (request.GET.get("q") or "").strip()
    digits = "".join(ch for ch in term if ch.isdigit())
    if digits:
        try:
            phone = normalize_phone(term)
        except ValidationError:
            phone = digits
        by_card = Card.objects.filter(
            operator_id=campaign.operator_id, number=int(digits[:18])
        ).values("client_id")
        queryset = queryset.filter(Q(phone__startswith=phone) | Q(client_id__in=by_card))
    elif term:
        queryset = queryset.filter(email__icontains=term)
    status = request.GET.get("status")
    if status in Message.Status.values:
        queryset = queryset.filter(status=status)
    channel = request.GET.get("channel")
    if channel in Channel.values:
        queryset = queryset.filter(
            Exists(Delivery.objects.filter(message_id=OuterRef("pk"), channel=channel))
        )
    return queryset


@login_required
@view_required
@require_GET
def message_list(request, pk: int):
    campaign = _campaign(request, pk)
    queryset = _messages(request, campaign).order_by("pk")
    page_text = request.GET.get("page") or "1"
    page_number = min(max(1, int(page_text)), 100_000) if page_text.isdigit() else 1
    # No COUNT over a million rows: a page and whether there is a next one.
    start = (page_number - 1) * PAGE_SIZE
    rows = list(
        queryset.select_related("client").prefetch_related(
            Prefetch("deliveries", queryset=Delivery.objects.order_by("step"))
        )[start : start + PAGE_SIZE + 1]
    )
    return render(
        request,
        "campaigns/messages.html",
        {
            "nav": "campaigns",
            "campaign": campaign,
            "rows": rows[:PAGE_SIZE],
            "page_number": page_number,
            "has_next": len(rows) > PAGE_SIZE,
            "statuses": Message.Status.choices,
            "channels": Channel.choices,
            "query": _without_page(request),
        },
    )


@login_required
@view_required
@require_GET
def message_detail(request, pk: int, message_id: int):
    campaign = _campaign(request, pk)
    message = get_object_or_404(
        Message.objects.select_related("client").prefetch_related(
            Prefetch(
                "deliveries",
                queryset=Delivery.objects.select_related("account")
                .order_by("step")
                .prefetch_related(
                    Prefetch("events", queryset=DeliveryEvent.objects.order_by("received_at", "pk"))
                ),
            )
        ),
        pk=message_id,
        campaign=campaign,
    )
    return render(
        request,
        "campaigns/message.html",
        {"nav": "campaigns", "campaign": campaign, "message": message},
    )


@login_required
@view_required
@require_GET
def export_variants_csv(request, pk: int):
    """The per-variant and channel table; `?sep=;` for Excel set to Russian."""
    campaign = _campaign(request, pk)
    flavour = formats.csv_flavour(request.GET, campaign.operator.time_zone)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.pk}-variants.csv"'
    if flavour.bom:
        response.write("\ufeff")
    writer = csv.writer(response, delimiter=flavour.delimiter)
    writer.writerow(["variant", "channel", "sent", "delivered", "read", "clicked", "click_rate"])
    for row in experiments.variant_channel_rows(campaign):
        writer.writerow(
            [
                row.variant,
                row.channel,
                row.sent,
                row.delivered,
                row.read,
                row.clicked,
                flavour.decimal(row.click_rate, 4),
            ]
        )
    return response


class _Echo:
    def write(self, value):
        return value


EXPORT_COLUMNS = [
    "message_id",
    "client_id",
    "phone",
    "email",
    "status",
    "channel",
    "step_status",
    "error",
    "parts",
    "price",
    "currency",
    "submitted_at",
    "delivered_at",
    "read_at",
]


@login_required
@view_required
@require_GET
def export_csv(request, pk: int):
    """Every message's outcome, streamed so a million rows never sit in memory.

    The plain file is for programs (codes, dot decimals, UTC ISO 8601); `?sep=;` is
    for Excel set to Russian (a BOM, semicolons, decimal commas, the operator's
    local time). Column names and status codes stay the same in both, so a
    spreadsheet's formulas work on either.
    """
    campaign = _campaign(request, pk)
    flavour = formats.csv_flavour(request.GET, campaign.operator.time_zone)
    last_steps = Delivery.objects.filter(campaign=campaign).order_by("message_id", "step")
    writer = csv.writer(_Echo(), delimiter=flavour.delimiter)

    def rows():
        if flavour.bom:
            yield "\ufeff"
        yield writer.writerow(EXPORT_COLUMNS)
        messages_by_id = {}
        current = None
        for delivery in last_steps.values_list(
            "message_id",
            "channel",
            "status",
            "error_code",
            "parts",
            "price",
            "currency",
            "submitted_at",
            "delivered_at",
            "read_at",
        ).iterator(chunk_size=5000):
            if current is not None and delivery[0] != current[0]:
                messages_by_id[current[0]] = current
            current = delivery
            if len(messages_by_id) >= 2000:
                yield from _message_rows(writer, messages_by_id, flavour)
                messages_by_id = {}
        if current is not None:
            messages_by_id[current[0]] = current
        yield from _message_rows(writer, messages_by_id, flavour)

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.pk}.csv"'
    return response


def _message_rows(writer, last_step_by_message: dict, flavour):
    found = Message.objects.filter(pk__in=list(last_step_by_message)).values_list(
        "pk", "client_id", "phone", "email", "status"
    )
    for message_id, client_id, phone, email, status in found.order_by("pk"):
        step = last_step_by_message[message_id]
        yield writer.writerow(
            [
                message_id,
                client_id or "",
                phone,
                email,
                status,
                step[1],
                step[2],
                step[3],
                step[4],
                flavour.decimal(step[5]),
                step[6],
                *(flavour.moment(value) for value in step[7:10]),
            ]
        )


# --- templates ------------------------------------------------------------------------------


@login_required
@permission_required("campaigns.view_messagetemplate", raise_exception=True)
@require_GET
def template_list(request):
    operator = current_operator(request)
    templates = MessageTemplate.objects.filter(operator=operator).order_by("name")
    term = (request.GET.get("q") or "").strip()
    if term:
        templates = templates.filter(Q(name__icontains=term) | Q(text__icontains=term))
    page = Paginator(templates, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "campaigns/templates.html",
        {"nav": "templates", "page": page, "q": term, "query": _without_page(request)},
    )


@login_required
@permission_required("campaigns.change_messagetemplate", raise_exception=True)
def template_edit(request, pk: int | None = None):
    operator = current_operator(request)
    template = get_object_or_404(MessageTemplate, pk=pk, operator=operator) if pk else None
    form = TemplateForm(request.POST or None, instance=template, operator=operator)
    if request.method == "POST" and form.is_valid():
        try:
            template = form.save()
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, _("Saved template “%(name)s”.") % {"name": template.name})
            return redirect("campaigns:template-edit", pk=template.pk)
    shown = None
    if template is not None:
        # A template alone has no cascade: show it on the channels it has content for.
        channels = ["sms"] + (["viber"] if template.viber_text or template.button_caption else [])
        channels += ["email"] if template.html or template.title else []
        sample = Campaign(operator=operator, template=template, channels=channels)
        shown = _with_highlights(preview.preview_campaign(sample))
    return render(
        request,
        "campaigns/template_edit.html",
        {
            "nav": "templates",
            "form": form,
            "template": template,
            "preview": shown,
        },
    )


@require_GET
def follow_link(request, code: str):
    """A tracked link: count the click and redirect at once; a plain 404 for anything else."""
    target = links.click(code)
    if target is None:
        return HttpResponseNotFound(_("Not found"), content_type="text/plain")
    response = HttpResponseRedirect(target)  # only http(s) URLs are ever tracked
    response["Cache-Control"] = "no-store"  # every click must reach us to be counted
    response["Referrer-Policy"] = "no-referrer"
    return response


@csrf_exempt  # RFC 8058: the mail provider posts without our token; the signed token is the check
def unsubscribe_link(request, token: str):
    """GET: confirm; POST (our button, or a provider's one-click): email consent off."""
    message = unsubscribe.message_for(token)
    if message is None:
        return HttpResponseNotFound(_("Not found"), content_type="text/plain")
    if request.method == "POST":
        unsubscribe.unsubscribe(message)
        return render(request, "campaigns/unsubscribed.html", {"done": True})
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET", "POST"])
    return render(request, "campaigns/unsubscribed.html", {"done": False})
