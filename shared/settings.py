"""Environment settings, validated once at cold start. No silent defaults for what must be configured."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    table_name: str  # TABLE_NAME
