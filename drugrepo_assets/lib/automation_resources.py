"""The resources of the automation (`drugrepo_assets.defs.automation`): where new data lands, when to retrain, and
where Slack messages go. They live here, with the other resources, so that each environment's resources
(`lib.environments`) are built from `lib/` alone; the sensors and schedules that use them are definitions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from dagster import AssetKey, ConfigurableResource, get_dagster_logger
from dagster_slack import SlackResource
from pydantic import Field
from slack_sdk.web.client import WebClient

from drugrepo_assets.files import uri_of
from drugrepo_assets.lib.storage import InstanceHome, S3Endpoint


class LandingZone(S3Endpoint, InstanceHome):
    """Where new data lands: ``<root>/<dataset>/<file>``, a local folder or an ``s3://`` prefix (on `S3Endpoint`'s endpoint)."""

    root: str | None = Field(default=None, description="Local folder or s3:// prefix; default $DAGSTER_HOME/landing.")

    def uri(self) -> str:
        """The landing root in use (a plain path when local)."""
        root = self.root or str(self.instance_folder("landing", "root"))
        return uri_of(self.path_of(root))

    def file_uri(self, relative: str) -> str:
        """URI of one landed file given its path relative to the root."""
        return uri_of(self.path_of(self.uri()).joinpath(*relative.split("/")))

    def files(self) -> dict[str, str]:
        """Every visible file below the root (relative path → version); empty when the root is missing."""
        base = self.path_of(self.uri())
        if not base.exists():
            return {}
        prefix = base.path.rstrip("/") + "/"
        found: dict[str, str] = {}
        for name, info in base.fs.find(base.path, withdirs=False, detail=True).items():
            relative = name[len(prefix) :] if name.startswith(prefix) else name
            if relative and not any(part.startswith(".") for part in relative.split("/")):
                found[relative] = file_version(info)
        return found

    def source_config(self) -> dict[str, Any]:
        """Run config of ``data_source`` that reads every dataset partition from the landing location."""
        config: dict[str, Any] = {"root": self.uri()}
        if self.s3_endpoint_url:
            config["s3_endpoint_url"] = self.s3_endpoint_url
        return config


def file_version(info: dict[str, Any]) -> str:
    """A file's version from its listing: the ETag on S3, else size and modification time."""
    etag = info.get("ETag") or info.get("etag")
    if etag:
        return str(etag).strip('"')
    return f"{info.get('size')}:{info.get('mtime') or info.get('LastModified')}"


class RetrainPolicy(ConfigurableResource):
    """When `retrain_sensor` retrains a partition: valid pairs grew by ``min_growth`` since the last training."""

    min_growth: float = Field(
        default=0.10,
        ge=0.0,
        description="Relative growth of validated_pairs rows that triggers retraining (0.1 = 10%).",
    )
    train_when_missing: bool = Field(
        default=False,
        description="Also train partitions without a checkpoint (off: the first training is a deliberate launch).",
    )


_warned_no_token: set[str] = set()


@dataclass
class SlackMessage:
    """One Slack message: mrkdwn lines, links rendered as ``<url|label>`` after them."""

    title: str
    lines: list[str] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)

    def text(self) -> str:
        """The message as Slack mrkdwn."""
        link_line = " · ".join(f"<{url}|{label}>" for label, url in self.links.items())
        return "\n".join([self.title, *self.lines, *([link_line] if link_line else [])])


class SlackNotifier(SlackResource):
    """dagster-slack's `SlackResource` with a channel, the Dagster UI's URL and an optional token.

    ``base_url`` is slack_sdk's API root (tests point it at a loopback receiver). Without a token
    `post` sends nothing and logs one warning per process.
    """

    # SlackResource requires a token; here it is optional (a deployment without one sends nothing)
    token: str | None = Field(default=None, description="Slack bot token; None or empty: no messages.")  # type: ignore[assignment]
    channel: str = Field(default="#drugrepo", description="Channel the messages go to.")
    base_url: str = Field(default=WebClient.BASE_URL, description="Slack Web API root of slack_sdk's WebClient.")
    dagster_url: str = Field(default="http://localhost:3000", description="Base URL of the Dagster UI for links.")

    def get_client(self) -> WebClient:
        """A `slack_sdk.WebClient` on ``base_url``."""
        return WebClient(token=self.token, base_url=self.base_url)

    def post(self, message: SlackMessage, log: logging.Logger | None = None) -> bool:
        """Send ``message``; False (and no request) without a token or when Slack refuses it."""
        from slack_sdk.errors import SlackApiError, SlackClientError

        log = log or get_dagster_logger()
        if not self.token:
            if self.channel not in _warned_no_token:
                _warned_no_token.add(self.channel)
                log.warning(f"no Slack token configured: messages to {self.channel} are not sent")
            return False
        try:
            self.get_client().chat_postMessage(channel=self.channel, text=message.text(), unfurl_links=False)
        except (SlackApiError, SlackClientError, OSError) as exc:
            log.error(f"Slack message to {self.channel} not sent: {exc}")
            return False
        return True

    def asset_url(self, asset_key: AssetKey, partition: str | None = None) -> str:
        """The asset's page in the Dagster UI (its partition's view when given)."""
        url = f"{self.dagster_url.rstrip('/')}/assets/{'/'.join(quote(p, safe='') for p in asset_key.path)}"
        return url + (f"?{urlencode({'view': 'partitions', 'partition': partition})}" if partition else "")

    def run_url(self, run_id: str) -> str:
        """The run's page in the Dagster UI."""
        return f"{self.dagster_url.rstrip('/')}/runs/{run_id}"
