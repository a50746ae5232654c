"""AWS Bedrock: which models the region offers, and under which id each must be invoked.

`list_foundation_models` (unfiltered: `byInferenceType=ON_DEMAND` would hide the models that need a
profile) says which models the region offers and whether they run on demand;
`list_inference_profiles` says which cross-region profiles the region offers, and their
`models[].modelArn` name the foundation models behind each. A model without ON_DEMAND is invoked
through the profile of the region's geography (`us.`, `eu.`, `apac.`, …), or through a `global.`
profile only when the provider allows it. Service Quotas are read here too, for the quota sync.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from providers.adapters import base
from providers.models import LLMModel

GLOBAL_PREFIX = "global."
# What Bedrock answers a call for a model this account cannot reach under that id (the client reports these not_found).
NOT_FOUND_CODES = frozenset({"ResourceNotFoundException", "AccessDeniedException"})
NOT_FOUND_MESSAGES = ("on-demand throughput isn", "model identifier is invalid", "does not support chat")


@dataclass(frozen=True)
class ServiceQuota:
    """One applied quota value from AWS Service Quotas."""

    code: str
    name: str
    value: float


class RegionCatalog:
    """The foundation models and inference profiles one region offers, and how each model is invoked."""

    def __init__(self, region: str, model_summaries: list[dict], profile_summaries: list[dict]) -> None:
        self.region = region
        self.foundation = {summary["modelId"]: summary for summary in model_summaries}
        self.profiles = {p["inferenceProfileId"] for p in profile_summaries if p.get("status", "ACTIVE") == "ACTIVE"}
        self.profiles_of_model: dict[str, set[str]] = defaultdict(set)
        for profile in profile_summaries:
            if profile["inferenceProfileId"] not in self.profiles:
                continue
            for member in profile.get("models", []):
                # arn:aws:bedrock:<region>::foundation-model/<model id>
                self.profiles_of_model[member["modelArn"].rsplit("/", 1)[-1]].add(profile["inferenceProfileId"])

    def access(self, model_id: str, allow_global: bool) -> base.ModelAccess:
        region = self.region
        if model_id in self.profiles:
            return base.ModelAccess(base.AVAILABLE, f"inference profile offered in {region}", model_id)
        summary = self.foundation.get(model_id)
        if summary is not None and "ON_DEMAND" in summary.get("inferenceTypesSupported", []):
            return base.ModelAccess(base.AVAILABLE, f"on demand in {region}{self._legacy(summary)}", model_id)
        regional, global_ = self._profiles_for(model_id)
        if regional:
            return base.ModelAccess(
                base.AVAILABLE, f"no on-demand throughput in {region}: invoked through inference profile {regional}", regional,
            )
        if global_ and allow_global:
            return base.ModelAccess(
                base.AVAILABLE, f"no regional inference profile in {region}: invoked through global profile {global_}", global_,
            )
        if summary is None:
            if self._is_profile_id(model_id):
                return base.ModelAccess(base.UNAVAILABLE, f"inference profile {model_id} is not offered in {region}")
            return base.ModelAccess(base.UNAVAILABLE, f"not offered in {region}")
        if global_:
            return base.ModelAccess(
                base.UNAVAILABLE,
                f"no on-demand throughput and no inference profile for {region}; only the global profile {global_}, "
                "which this provider does not allow (allow_global_profile)",
            )
        return base.ModelAccess(base.UNAVAILABLE, f"no on-demand throughput and no inference profile for {region}")

    def _profiles_for(self, model_id: str) -> tuple[str | None, str | None]:
        """(regional profile, global profile) for a foundation model; the region's own geography first."""
        ids = sorted(self.profiles_of_model.get(model_id, ()))
        regional = [i for i in ids if not i.startswith(GLOBAL_PREFIX)]
        # "us-east-1" -> us., "eu-west-1" -> eu., "ap-south-1" -> apac. (before jp. or au.)
        area = self.region.split("-", 1)[0]
        regional.sort(key=lambda i: not i.split(".", 1)[0].startswith(area))
        global_ = [i for i in ids if i.startswith(GLOBAL_PREFIX)]
        return (regional[0] if regional else None), (global_[0] if global_ else None)

    def _is_profile_id(self, model_id: str) -> bool:
        # Profile ids are "<geo>.<foundation model id>".
        _, _, rest = model_id.partition(".")
        return rest in self.foundation or rest in self.profiles_of_model

    @staticmethod
    def _legacy(summary: dict) -> str:
        return " (legacy model)" if summary.get("modelLifecycle", {}).get("status") == "LEGACY" else ""


class BedrockAdapter(base.Adapter):
    """Bedrock in the provider's region, with the standard AWS credential chain (or a named profile)."""

    def session(self) -> boto3.Session:
        return boto3.Session(profile_name=self.provider.aws_profile or None, region_name=self.provider.region)

    def client(self, service: str) -> BaseClient:
        config = Config(
            connect_timeout=self.timeout,
            read_timeout=self.timeout,
            # botocore's "max_attempts" counts retries only; "total_max_attempts" includes the first call.
            retries={"total_max_attempts": base.SDK_MAX_RETRIES + 1, "mode": "standard"},
        )
        return self.session().client(service, config=config)

    def catalog(self) -> RegionCatalog:
        try:
            bedrock = self.client("bedrock")
            models = bedrock.list_foundation_models()["modelSummaries"]
            profiles = [
                profile
                for page in bedrock.get_paginator("list_inference_profiles").paginate(typeEquals="SYSTEM_DEFINED")
                for profile in page["inferenceProfileSummaries"]
            ]
        except (BotoCoreError, ClientError) as exc:
            raise aws_error(exc) from exc
        return RegionCatalog(self.provider.region, models, profiles)

    def check(self, models: Sequence[LLMModel]) -> base.AccessReport:
        catalog = self.catalog()
        allow_global = self.provider.allow_global_profile
        report = base.AccessReport()
        for model in models:
            try:
                report.models[model.model_id] = self.confirm(model, catalog.access(model.model_id, allow_global))
            except base.ProviderError as exc:
                report.errors.append(f"{model.key}: {exc}")
        return report

    def probe(self, model_id: str) -> bool:
        """A one-token Converse call in the provider's region under `model_id` (the invoke id)."""
        try:
            self.client("bedrock-runtime").converse(modelId=model_id, messages=[{"role": "user", "content": [{"text": "ping"}]}],
                                                    inferenceConfig={"maxTokens": 1})
        except ClientError as exc:
            error = exc.response.get("Error", {})
            message = str(error.get("Message", "")).lower()
            if error.get("Code") in NOT_FOUND_CODES or any(text in message for text in NOT_FOUND_MESSAGES):
                return False
            raise aws_error(exc) from exc
        except BotoCoreError as exc:
            raise aws_error(exc) from exc
        return True

    def service_quotas(self) -> list[ServiceQuota]:
        """Bedrock's applied quota values in the provider's region, every page."""
        try:
            paginator = self.client("service-quotas").get_paginator("list_service_quotas")
            return [
                ServiceQuota(code=quota["QuotaCode"], name=quota["QuotaName"], value=quota["Value"])
                for page in paginator.paginate(ServiceCode="bedrock")
                for quota in page["Quotas"]
                if "Value" in quota
            ]
        except (BotoCoreError, ClientError) as exc:
            raise aws_error(exc) from exc


def aws_error(exc: BotoCoreError | ClientError) -> base.ProviderError:
    """botocore's errors name the operation and AWS's message; credentials are never part of them."""
    # A ClientError's text names AWS's error code; botocore's own errors (timeouts, refused connections,
    # a missing profile) are clearer with their type.
    text = str(exc) if isinstance(exc, ClientError) else f"{type(exc).__name__}: {exc}"
    return base.ProviderError(base.redact(text))
