"""Every URL pattern of the project, read from the resolver, so no test keeps its own list.

A test that checks "every page" walks `routes()`; a pattern added tomorrow is in
the walk tomorrow, and if it has a parameter the test does not know how to fill,
`fill()` fails with the pattern's name instead of silently skipping it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.contrib.admindocs.views import extract_views_from_urlpatterns, simplify_regex
from django.urls import get_resolver, resolve

PLACEHOLDER = re.compile(r"<(?:(?P<converter>\w+):)?(?P<name>\w+)>")


@dataclass(frozen=True)
class Route:
    template: str  # "/campaigns/<int:pk>/messages/<int:message_id>/"
    name: str  # "campaigns:message"; unnamed patterns get their template
    view: object

    @property
    def params(self) -> list[str]:
        return [match["name"] for match in PLACEHOLDER.finditer(self.template)]

    @property
    def csrf_exempt(self) -> bool:
        return bool(getattr(self.view, "csrf_exempt", False))

    def fill(self, values: dict[str, object]) -> str:
        missing = [name for name in self.params if name not in values]
        if missing:
            raise LookupError(
                f"{self.name} ({self.template}) has parameter(s) {missing} that this test "
                "cannot fill: decide what they should point at and add them to its map."
            )
        path = PLACEHOLDER.sub(lambda match: str(values[match["name"]]), self.template)
        match = resolve(path.split("?")[0])
        if match.func is not self.view and _name(match) != self.name:
            raise AssertionError(f"{path} resolves to {_name(match)}, not to {self.name}")
        return path


def _name(match) -> str:
    return match.view_name or match.route


def routes() -> list[Route]:
    found = []
    for view, regex, namespaces, name in extract_views_from_urlpatterns(
        get_resolver().url_patterns
    ):
        template = simplify_regex(regex)
        # Unnamed patterns (the admin's "<id>/" redirect, its catch-all) go by their template.
        full_name = ":".join([*(namespaces or []), name]) if name else template
        found.append(Route(template=template, name=full_name, view=view))
    return found


# --- the pages: which row each parameter names ------------------------------------------------

PAGE_PREFIXES = ("/campaigns/", "/clients/")
# (route name or namespace, parameter) → the `world` row it names, or the literal values to try.
PAGE_PARAMS: dict[tuple[str, str], str | list[str]] = {
    ("campaigns:template-edit", "pk"): "messagetemplate",
    ("campaigns", "pk"): "campaign",
    ("campaigns", "message_id"): "message",
    ("campaigns", "action"): ["cancel", "launch", "pause", "resume"],
    ("clients", "pk"): "client",
}


def page_routes() -> list[Route]:
    return [route for route in routes() if route.template.startswith(PAGE_PREFIXES)]


def param_target(route: Route, param: str) -> str | list[str]:
    namespace = route.name.split(":")[0]
    for key in ((route.name, param), (namespace, param)):
        if key in PAGE_PARAMS:
            return PAGE_PARAMS[key]
    raise LookupError(
        f"{route.name} ({route.template}): no idea what {param!r} points at; add it to PAGE_PARAMS"
    )


def page_urls(world: dict) -> list[tuple[Route, str]]:
    """Every page, its ids filled with `world`'s rows (a literal parameter: each of its values)."""
    urls = []
    for route in page_routes():
        variants: list[dict] = [{}]
        for param in route.params:
            target = param_target(route, param)
            if isinstance(target, list):
                variants = [dict(v, **{param: value}) for v in variants for value in target]
            else:
                variants = [dict(v, **{param: world[target].pk}) for v in variants]
        urls += [(route, route.fill(values)) for values in variants]
    return urls
