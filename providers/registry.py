"""The backends Cascade can send through.

One plain dict is both the registry and the model field choices; the modules
are imported only when a backend is used.
"""

import importlib

from django.utils.translation import gettext_lazy as _

BACKENDS: dict[str, tuple[str, str]] = {
    # name: (label, module path); each module defines a class named Backend
    "pulse": ("kupon.mobi 1-pulse", "providers.backends.pulse"),
    "cascade_gateway": (_("Viber/VK/SMS cascade gateway"), "providers.backends.cascade_gateway"),
    "bsg": (_("BSG Viber with SMS fallback"), "providers.backends.bsg"),
    "smtp": (_("Email over SMTP"), "providers.backends.smtp"),
}

BACKEND_CHOICES = [(name, label) for name, (label, _module) in BACKENDS.items()]


def backend_class(name: str):
    try:
        _label, module_path = BACKENDS[name]
    except KeyError:
        raise KeyError(f"Unknown backend {name!r}; known: {', '.join(BACKENDS)}") from None
    return importlib.import_module(module_path).Backend


def get_backend(account):
    """The backend instance for a ProviderAccount."""
    return backend_class(account.backend)(account)
