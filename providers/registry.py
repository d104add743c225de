"""The backends Cascade can send through.

One plain dict is both the registry and the model field choices; the modules
are imported only when a backend is used.
"""

BACKENDS: dict[str, tuple[str, str]] = {
    # name: (label, module path)
    "pulse": ("kupon.mobi 1-pulse", "providers.backends.pulse"),
    "cascade_gateway": ("Viber/VK/SMS cascade gateway", "providers.backends.cascade_gateway"),
    "bsg": ("BSG Viber with SMS fallback", "providers.backends.bsg"),
    "smtp": ("Email over SMTP", "providers.backends.smtp"),
}

BACKEND_CHOICES = [(name, label) for name, (label, _module) in BACKENDS.items()]
