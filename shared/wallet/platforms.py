"""The ad platforms Layers spends on for agency orgs. Add one here and nowhere else."""

from __future__ import annotations

from shared.errors import InvalidRequestError

PLATFORMS: dict[str, str] = {
    "meta": "Meta",
    "tiktok": "TikTok",
    "apple_search_ads": "Apple Search Ads",
    "google_ads": "Google Ads",
}


def platform_name(platform: str) -> str:
    try:
        return PLATFORMS[platform]
    except KeyError:
        raise InvalidRequestError(
            f"Unknown ad platform '{platform}' (known: {', '.join(sorted(PLATFORMS))}).", code="unknown_platform"
        ) from None
