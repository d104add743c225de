"""The builder and dashboard of campaigns with variants, a control group and tracked links."""

from campaigns import fanout, services, winners
from campaigns.models import Campaign, CampaignVariant, Message, MessageTemplate
from tests.campaigns.test_views import browser, builder_post, no_broker, shop  # noqa: F401


def test_a_test_then_winner_campaign_is_built_edited_and_shows_its_winner(mark, shop):  # noqa: F811
    other = MessageTemplate.objects.create(
        operator=shop["template"].operator, name="Other text", text="Other https://shop.example/x"
    )
    page = browser(mark)
    response = page.post(
        "/campaigns/new/",
        builder_post(
            shop["template"],
            ab_mode="winner",
            variant_b=str(other.pk),
            ab_test_percent="50",
            ab_wait_minutes="30",
            ab_metric="delivered",
            holdout_percent="10",
            holdout_days="14",
            track_links="on",
        ),
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    campaign = Campaign.objects.get()
    assert (campaign.ab_mode, campaign.ab_test_percent, campaign.ab_wait_minutes) == (
        "winner",
        50,
        30,
    )
    assert (campaign.holdout_percent, campaign.holdout_days, campaign.track_links) == (10, 14, True)
    variants = {v.label: v.template_id for v in CampaignVariant.objects.filter(campaign=campaign)}
    assert variants == {"A": shop["template"].pk, "B": other.pk}
    edit = page.get(f"/campaigns/{campaign.pk}/edit/").content.decode()
    assert f'<option value="{other.pk}" selected>' in edit
    services.launch(campaign_id=campaign.pk)
    fanout.fan_out(campaign.pk)
    assert winners.decide_winner(campaign.pk) is not None
    dashboard = page.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert 'id="variants"' in dashboard and 'id="winner-reason"' in dashboard
    assert "won on delivery rate" in dashboard
    assert not Message.objects.filter(campaign=campaign, status="pending").exists()


def test_a_test_without_a_second_variant_is_refused(mark, shop):  # noqa: F811
    page = browser(mark)
    response = page.post("/campaigns/new/", builder_post(shop["template"], ab_mode="split"))
    assert "A test needs a second variant" in response.content.decode()
    assert not Campaign.objects.exists()
