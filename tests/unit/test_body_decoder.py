"""One body decoder: JSON in UTF-8 (or untyped) passes; any other media type or charset is a 415."""

from __future__ import annotations

import pytest
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestUnsupportedContentType

from functions.http import check_media_type


@pytest.mark.parametrize(
    "media", ["", "application/json", "application/json; charset=utf-8", 'Application/JSON; charset="UTF-8"']
)
def test_json_in_utf8_or_untyped_passes(media: str) -> None:
    check_media_type({"content-type": media} if media else {})


@pytest.mark.parametrize(
    "media",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=utf-16",
        "application/jsonp",
        "application/xml",
    ],
)
def test_anything_else_is_refused(media: str) -> None:
    with pytest.raises(RequestUnsupportedContentType):
        check_media_type({"content-type": media})
