"""Demo data: two operators with points of sale, ~10,000 clients, templates, staff logins.

Safe to run twice: an operator that already has clients is left as it is, and
each operator is seeded in one transaction, so a failed run leaves nothing half
made. The superuser's password is set and printed on every run.
"""

import os
import random
import secrets
import zoneinfo
from datetime import timedelta
from decimal import Decimal

from django.apps import apps as django_apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from campaigns.models import Campaign, MessageTemplate
from clients.channels import CONSENT_FLAGS, Channel
from clients.groups import CONSENT_ADMINS, MARKETERS, sync_groups
from clients.models import (
    Card,
    Client,
    ConsentChange,
    Operator,
    OperatorMember,
    PointOfSale,
    Tag,
)
from providers.models import ChannelRoute, ProviderAccount
from providers.simulators import simulator_port

OPERATORS = [
    # code, name, phone prefix (keeps the two operators' demo phones apart)
    ("sunrise", "Sunrise Market", "7910"),
    ("northwind", "Northwind Pharmacy", "7920"),
]
# Russian names, as the operators' clients have them; the Latin spelling is for the
# demo e-mail addresses. A woman's surname takes the feminine ending.
FIRST_NAMES = {
    "f": [
        ("Анна", "anna"),
        ("Ольга", "olga"),
        ("Мария", "maria"),
        ("Елена", "elena"),
        ("Ирина", "irina"),
    ],
    "m": [
        ("Иван", "ivan"),
        ("Сергей", "sergey"),
        ("Дмитрий", "dmitry"),
        ("Павел", "pavel"),
        ("Алексей", "alexey"),
    ],
}
SURNAMES = [
    ("Иванов", "ivanov"),
    ("Петров", "petrov"),
    ("Смирнов", "smirnov"),
    ("Кузнецов", "kuznetsov"),
    ("Попов", "popov"),
    ("Соколов", "sokolov"),
    ("Лебедев", "lebedev"),
    ("Новиков", "novikov"),
]
TAGS = ["vip", "new", "lapsed", "employee"]

# Cyrillic texts: the preview then counts real UCS-2 SMS parts (70 characters, 67 per part).
TEMPLATES = [
    {
        "name": "Приветственный бонус",
        "title": "Добро пожаловать в {{ operator }}",
        "text": "Здравствуйте, {{ first_name }}! Вас ждут {{ bonus }} бонусов.",
        "sms_text": "{{ first_name }}, у вас {{ bonus }} бонусов. Отписаться: ответьте СТОП.",
        "viber_text": "Здравствуйте, {{ first_name }}! У вас {{ bonus }} бонусов. Потратьте их на этой неделе.",
        "button_caption": "Моя карта",
        "button_url": "https://example.com/card",
        "html": "<p>Здравствуйте, {{ first_name }}!</p><p>У вас <b>{{ bonus }}</b> бонусов.</p>",
    },
    {
        "name": "Распродажа выходных",
        "title": "Распродажа выходных",
        "text": "Распродажа выходных: −20% на всё по вашей карте.",
        "viber_text": "Распродажа выходных: −20% на всё по карте лояльности!",
        "button_caption": "К акциям",
        "button_url": "https://example.com/sale",
        "image_url": "https://example.com/sale.png",
        "sms_text": "Распродажа выходных: −20% по вашей карте.",
    },
    {
        "name": "Онлайн-чек",
        "title": "Ваш чек",
        "text": "Ваш чек во вложении.",
        "html": "<p>Спасибо за покупку! Ваш чек: {{ cheque_url }}</p>",
    },
    {
        "name": "Код регистрации",
        "text": "Ваш код: {{ code }}",
        "sms_text": "Код регистрации: {{ code }}",
    },
]

CLIENTS_PER_OPERATOR = 5000


class Command(BaseCommand):
    help = "Create demo operators, points of sale, ~10,000 clients, templates and staff logins."

    def add_arguments(self, parser):
        parser.add_argument(
            "--clients", type=int, default=CLIENTS_PER_OPERATOR, help="Clients per operator."
        )

    def handle(self, *args, clients: int, **options):
        rng = random.Random(20261123)
        operators = []
        for code, name, phone_prefix in OPERATORS:
            with transaction.atomic():
                operator, _ = Operator.objects.get_or_create(code=code, defaults={"name": name})
                self.seed_operator(operator, phone_prefix, clients, rng)
            operators.append(operator)
        password = self.seed_users(operators)
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data ready: {Operator.objects.count()} operators, {Client.objects.count()} clients.\n"
                f"Log in at http://127.0.0.1:8000/ as marketer / {password} (campaigns),\n"
                f"consent / {password} (client consent) or admin / {password} (everything).\n"
                f"marketer and consent see {operators[0].name} only."
            )
        )

    def seed_operator(self, operator, phone_prefix, client_count, rng):
        points = [
            PointOfSale.objects.get_or_create(
                operator=operator,
                code=f"{operator.code.upper()}-{number}",
                defaults={"name": f"{operator.name} #{number}", "city": city},
            )[0]
            for number, city in ((1, "Moscow"), (2, "Kazan"))
        ]
        tags = [Tag.objects.get_or_create(operator=operator, name=name)[0] for name in TAGS]
        templates = {}
        for fields in TEMPLATES:
            defaults = {key: value for key, value in fields.items() if key != "name"}
            templates[fields["name"]], _ = MessageTemplate.objects.get_or_create(
                operator=operator, name=fields["name"], defaults=defaults
            )
        self.seed_providers(operator)
        Campaign.objects.get_or_create(
            operator=operator,
            name="Распродажа выходных: Viber, затем SMS",
            defaults={
                "template": templates["Распродажа выходных"],
                "channels": [Channel.VIBER, Channel.SMS],
                "segment": {"consent": "allow_sms"},
            },
        )
        if Client.objects.filter(operator=operator).exists():
            self.stdout.write(f"{operator.name}: clients already seeded, left as they are.")
            return
        self.create_clients(operator, phone_prefix, client_count, points, tags, rng)
        self.seed_lifecycle(operator, phone_prefix, client_count)

    def seed_lifecycle(self, operator, phone_prefix, client_count):
        """One running campaign per trigger, and clients whose dates make each fire within
        minutes of `make run`, so a newcomer sees triggered messages flow."""
        now = timezone.now()
        local_today = now.astimezone(zoneinfo.ZoneInfo(operator.time_zone)).date()
        base = dict(operator=operator, channels=[Channel.VIBER, Channel.SMS])
        base.update(kind=Campaign.Kind.TRIGGER, state=Campaign.State.RUNNING)
        base.update(launched_at=now - timedelta(minutes=1))
        extra = [
            Client(
                operator=operator,
                phone=f"{phone_prefix}{client_count + n:07d}",
                first_name=name,
                last_name="Демо",
                allow_sms=True,
                registered_at=now - timedelta(days=400),
                last_purchase_at=now - timedelta(days=10),
            )
            for n, name in enumerate(["Алина", "Борис", "Вера", "Глеб", "Дина", "Егор"] * 5)
        ]
        Client.objects.bulk_create(extra)
        groups = [list(Client.objects.filter(pk__in=[c.pk for c in extra[n::6]])) for n in range(6)]
        welcome, birthday, expiring, lapsed, bought, _entered = groups
        Client.objects.filter(pk__in=[c.pk for c in welcome]).update(registered_at=now)
        Client.objects.filter(pk__in=[c.pk for c in birthday]).update(
            birth_date=local_today.replace(year=1990)
        )
        Client.objects.filter(pk__in=[c.pk for c in lapsed]).update(
            last_purchase_at=now - timedelta(days=60) + timedelta(minutes=3)
        )
        Client.objects.filter(pk__in=[c.pk for c in bought]).update(last_purchase_at=now)
        Card.objects.bulk_create(
            Card(
                operator=operator,
                client=client,
                number=int(f"{3000 + operator.pk}{client.pk:09d}"),
                bonus=Decimal(500),
                bonus_expires_at=now + timedelta(days=3),
            )
            for client in expiring
        )
        campaigns = [
            (
                "Добро пожаловать",
                "registration",
                "Добро пожаловать, {{ first_name }}! Вам 200 бонусов.",
                {"trigger_delay_minutes": 2},
            ),
            (
                "С днём рождения",
                "birthday",
                "{{ first_name }}, с днём рождения! Дарим скидку 15%.",
                {"trigger_local_hour": 0},
            ),
            (
                "Бонусы сгорают",
                "bonus_expiring",
                "{{ first_name }}, {{ bonus }} бонусов сгорят через 3 дня.",
                {"trigger_days": 7},
            ),
            (
                "Мы скучаем",
                "no_purchase",
                "{{ first_name }}, давно не виделись: скидка 10% до воскресенья.",
                {"trigger_days": 60},
            ),
            (
                "Спасибо за покупку",
                "purchase",
                "Спасибо за покупку, {{ first_name }}! Оцените нас.",
                {"trigger_delay_minutes": 5},
            ),
            (
                "Новый VIP",
                "entered_segment",
                "{{ first_name }}, теперь вы VIP!",
                {"segment": {"tags": ["vip"]}},
            ),
        ]
        for name, trigger, text, fields in campaigns:
            template, _ = MessageTemplate.objects.get_or_create(
                operator=operator, name=name, defaults={"text": text}
            )
            Campaign.objects.get_or_create(
                operator=operator,
                name=f"{name} (триггер)",
                defaults={**base, "template": template, "trigger": trigger, **fields},
            )
        self.stdout.write(
            f"{operator.name}: 6 triggered campaigns, {len(extra)} clients to fire them."
        )

    def seed_providers(self, operator):
        """Accounts at the local simulators (`manage.py run_simulators`), so the demo sends over HTTP."""
        sender = operator.name.split()[0]
        accounts = [
            {
                "name": "Cascade gateway (simulator)",
                "backend": "cascade_gateway",
                "base_url": f"http://127.0.0.1:{simulator_port('cascade_gateway')}",
                "credentials": {"login": "demo", "password": "demo-pass"},
                "options": {"flavour": "json"},
                "channels": ["viber", "vk", "sms"],
                "sender_names": {"viber": sender, "sms": sender},
                "cost_per_part": Decimal("0.35"),
                "max_batch": 200,
            },
            {
                "name": "1-pulse (simulator)",
                "backend": "pulse",
                "base_url": f"http://127.0.0.1:{simulator_port('pulse')}/api/v1",
                "credentials": {"token": "test-token"},
                "channels": ["sms", "viber", "push"],
                "sender_names": {"sms": sender, "viber": sender},
                "cost_per_part": Decimal("0.29"),
                "max_batch": 500,
            },
            {
                "name": "BSG (simulator)",
                "backend": "bsg",
                "base_url": f"http://127.0.0.1:{simulator_port('bsg')}/rest",
                "credentials": {"api_key": "live_test"},
                "channels": ["viber", "sms"],
                "sender_names": {"viber": sender, "sms": sender},
                "cost_per_part": Decimal("0.02"),
                "currency": "EUR",
                "max_batch": 50,
            },
            {
                "name": "Mail (simulator)",
                "backend": "smtp",
                "base_url": "",
                "credentials": {
                    "host": "127.0.0.1",
                    "port": simulator_port("smtp"),
                    "from_email": f"news@{operator.code}.example",
                },
                "channels": ["email"],
                "sender_names": {},
                "cost_per_part": Decimal("0"),
                "max_batch": 100,
            },
        ]
        by_backend = {}
        for fields in accounts:
            name = fields.pop("name")
            account, created = ProviderAccount.objects.get_or_create(
                operator=operator, name=name, defaults=fields
            )
            if created:
                account.callback_secrets = [secrets.token_urlsafe(24)]
                account.save(update_fields=["callback_secrets"])
            by_backend[account.backend] = account
        routes = [
            ("viber", "cascade_gateway", 1),
            ("viber", "bsg", 2),
            ("vk", "cascade_gateway", 1),
            ("sms", "pulse", 1),
            ("sms", "cascade_gateway", 2),
            ("email", "smtp", 1),
        ]
        for channel, backend, priority in routes:
            ChannelRoute.objects.get_or_create(
                operator=operator,
                channel=channel,
                priority=priority,
                defaults={"account": by_backend[backend]},
            )

    def create_clients(self, operator, phone_prefix, client_count, points, tags, rng):
        now = timezone.now()
        new_clients = []
        for index in range(client_count):
            has_phone = rng.random() < 0.95
            has_email = rng.random() < 0.6 or not has_phone
            gender = rng.choice(("f", "m"))
            (first, first_latin), (surname, surname_latin) = (
                rng.choice(FIRST_NAMES[gender]),
                rng.choice(SURNAMES),
            )
            last, last_latin = (
                (surname + "а", surname_latin + "a") if gender == "f" else (surname, surname_latin)
            )
            new_clients.append(
                Client(
                    operator=operator,
                    phone=f"{phone_prefix}{index:07d}" if has_phone else "",
                    email=f"{first_latin}.{last_latin}.{index}@example.com" if has_email else "",
                    first_name=first,
                    last_name=last,
                    registered_pos=rng.choice(points),
                    allow_sms=has_phone and rng.random() < 0.8,
                    allow_email=has_email and rng.random() < 0.5,
                    allow_push=rng.random() < 0.3,
                    allow_email_online_cheque=has_email and rng.random() < 0.4,
                    push_tokens=[secrets.token_hex(16)] if rng.random() < 0.3 else [],
                    registered_at=now - timedelta(days=rng.randint(1, 1500)),
                    last_purchase_at=now - timedelta(days=rng.randint(0, 365)),
                )
            )
        Client.objects.bulk_create(new_clients, batch_size=2000)
        created = list(Client.objects.filter(operator=operator).order_by("id"))

        cards = [
            Card(
                operator=operator,
                client=client,
                number=int(f"{2000 + operator.pk}{index:09d}"),
                bonus=Decimal(rng.randint(0, 5000)),
            )
            for index, client in enumerate(created)
        ]
        Card.objects.bulk_create(cards, batch_size=2000)

        tag_links = [
            Client.tags.through(client_id=client.pk, tag_id=rng.choice(tags).pk)
            for client in created
            if rng.random() < 0.25
        ]
        Client.tags.through.objects.bulk_create(tag_links, batch_size=2000)

        history = []
        for client in created:
            for flag in CONSENT_FLAGS:
                if getattr(client, flag):
                    history.append(
                        ConsentChange(
                            operator=operator,
                            client=client,
                            flag=flag,
                            old_value=None,
                            new_value=True,
                            source=ConsentChange.Source.IMPORT,
                            reason="Imported with the demo data",
                            changed_at=client.registered_at,
                        )
                    )
        # A few clients later withdrew SMS consent through a partner's POS.
        withdrawn = [client for client in created if client.allow_sms and rng.random() < 0.03]
        for client in withdrawn:
            history.append(
                ConsentChange(
                    operator=operator,
                    client=client,
                    flag="allow_sms",
                    old_value=True,
                    new_value=False,
                    source=ConsentChange.Source.API,
                    reason="Client asked at the till",
                    changed_at=now - timedelta(days=rng.randint(0, 30)),
                )
            )
        ConsentChange.objects.bulk_create(history, batch_size=2000)
        Client.objects.filter(pk__in=[client.pk for client in withdrawn]).update(allow_sms=False)
        self.stdout.write(
            f"{operator.name}: {len(created)} clients, {len(cards)} cards, {len(history)} consent records."
        )

    def seed_users(self, operators) -> str:
        password = os.environ.get("DEMO_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        user_model = get_user_model()
        admin, _ = user_model.objects.get_or_create(
            username="admin",
            defaults={"is_staff": True, "is_superuser": True, "email": "admin@example.com"},
        )
        admin.is_staff = admin.is_superuser = True
        admin.set_password(password)
        admin.save()
        # The groups come from a data migration, but a database that was flushed
        # (or restored without them) has none: make them here too, idempotently.
        sync_groups(django_apps)
        for username, group_name in (("marketer", MARKETERS), ("consent", CONSENT_ADMINS)):
            user, _ = user_model.objects.get_or_create(
                username=username, defaults={"is_staff": True}
            )
            user.is_staff = True
            user.set_password(password)
            user.save()
            user.groups.add(Group.objects.get(name=group_name))
            OperatorMember.objects.get_or_create(operator=operators[0], user=user)
        return password
