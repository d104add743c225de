"""The two staff roles and what each may do in the admin.

A data migration creates the groups from this table; change the table and add
a migration that calls sync_groups again.
"""

MARKETERS = "Marketers"
CONSENT_ADMINS = "Consent admins"

ALL = ("add", "change", "delete", "view")
VIEW = ("view",)

GROUP_PERMISSIONS: dict[str, dict[tuple[str, str], tuple[str, ...]]] = {
    MARKETERS: {
        ("campaigns", "messagetemplate"): ALL,
        ("campaigns", "campaign"): ALL,
        ("campaigns", "audiencelistentry"): ALL,
        ("campaigns", "message"): VIEW,
        ("campaigns", "delivery"): VIEW,
        ("campaigns", "deliveryevent"): VIEW,
        ("clients", "client"): VIEW,
        ("clients", "card"): VIEW,
        ("clients", "pointofsale"): VIEW,
        ("clients", "tag"): VIEW,
        ("clients", "lead"): VIEW,
        ("clients", "subscriber"): VIEW,
        ("clients", "messengerchat"): VIEW,
        ("providers", "channelroute"): VIEW,
        ("providers", "provideraccount"): VIEW,
    },
    CONSENT_ADMINS: {
        ("clients", "client"): ("add", "change", "view"),
        ("clients", "consentchange"): VIEW,
        ("clients", "card"): VIEW,
        ("clients", "pointofsale"): VIEW,
        ("clients", "tag"): VIEW,
        ("clients", "lead"): ("change", "view"),
        ("clients", "subscriber"): VIEW,
    },
}


def sync_groups(apps) -> None:
    """Create the groups and set exactly the permissions of the table above."""
    from django.contrib.auth.management import create_permissions

    # Permissions are normally created after migrate finishes; the groups need
    # them now, so create them for the apps we reference.
    for app_label in {app for group in GROUP_PERMISSIONS.values() for app, _ in group}:
        app_config = apps.get_app_config(app_label)
        # A migration's app registry has no models module; the real one (seed_demo)
        # must keep its own, or post_migrate after a later flush skips the app.
        models_module = getattr(app_config, "models_module", None)
        app_config.models_module = models_module or True
        create_permissions(app_config, verbosity=0, apps=apps)
        app_config.models_module = models_module

    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    for group_name, grants in GROUP_PERMISSIONS.items():
        group, _ = group_model.objects.get_or_create(name=group_name)
        permissions = []
        for (app_label, model_name), actions in grants.items():
            for action in actions:
                permissions.append(
                    permission_model.objects.get(
                        content_type__app_label=app_label, codename=f"{action}_{model_name}"
                    )
                )
        group.permissions.set(permissions)
