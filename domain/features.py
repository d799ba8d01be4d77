"""The feature switch that guards lead management (scoring and qualification)."""

from __future__ import annotations

from domain.errors import FeatureDisabled
from domain.model import Feature
from domain.ports import Repositories


async def require_lead_management(repos: Repositories) -> None:
    """Raise FEATURE_DISABLED unless an admin turned lead management on."""
    if not await repos.settings.feature_enabled(Feature.LEAD_MANAGEMENT):
        raise FeatureDisabled(
            "lead management is off; an ADMIN can turn it on with "
            "setFeatureSwitch(feature: LEAD_MANAGEMENT, enabled: true)"
        )
