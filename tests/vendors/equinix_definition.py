"""The parts of Equinix's published API definitions that streamkeeper talks to, as JSON Schema.

Written by hand from the definitions Equinix publishes in its Go SDK repository (``equinix/equinix-sdk-go``):
the SmartView streaming API (branch ``experiment-smartview``, ``spec/services/smartview/oas3.fetched/
merged-spec.yaml``, a Swagger 2.0 document) and the token API (``spec/services/accesstokenv1/oas3.fetched/
openapi.yaml``). Property names, types, ``required`` lists, enums and bounds are the definitions'; the
vendor's files are not copied here and the tests do not download them.

The definition's own defects, repaired here:

1. float values in integer keywords (``maximum: !!float 20``, ``minimum: !!float 5``, ``minItems: !!float
   1``, ``maxItems: !!float 3`` and ``!!float 2147483647``, ``default: !!float 250``): written as the
   integers they mean (a strict validator refuses a float bound on an integer, and generators emit
   ``float64`` fields);
2. ``MessageType.meteredPower`` lists items of ``MeteredPower``, which is the metered-power *message data*
   (``asset``, ``reading``, ``streamId``, ``tag`` required, a string ``ibx``), not a subscription filter:
   repaired to a filter like its siblings' (``PowerMessage``, ``SystemAlert``): ``{accountNumber, ibx[]}``;
3. ``SubscriptionRequest.channel`` puts ``description`` beside ``$ref`` (ignored in Swagger 2.0): dropped;
4. examples of string fields written as bare YAML timestamps (``example: 2023-10-03T13:09:32``, which a
   YAML loader turns into a datetime, shown as ``2023-10-03 13:09:32``): examples are not part of the
   schemas here; the emulator writes ``readingTime`` as ``2023-10-03 13:09:32`` and parses both forms;
5. the 400 answers of the subscription API have no schema (only the 422's is ``ApiError``): the emulator
   answers ``ApiError`` on both, and both are validated against it.

Not defects, kept as published: no ``additionalProperties: false`` anywhere (answers may carry more), the
asset filter's ``assetClassification`` enum without ``POWER``, ``Channel.channelType`` not required.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jsonschema import Draft4Validator, FormatChecker

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/definitions/{name}"}


def _object(properties: dict[str, Schema], required: tuple[str, ...] = ()) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


STRING: Schema = {"type": "string"}
BOOLEAN: Schema = {"type": "boolean"}
INT32: Schema = {"type": "integer", "format": "int32"}
IBXS: Schema = {"type": "array", "items": STRING, "uniqueItems": True}


def _bounded(low: int, high: int) -> Schema:
    return {"type": "integer", "format": "int32", "minimum": low, "maximum": high}  # repair 1


def _value_with_unit(*required: str) -> Schema:
    return _object({"unit": STRING, "value": STRING}, required)


def _message(data: str, default_type: str) -> Schema:
    return _object({"data": _ref(data), "type": {**STRING, "default": default_type}}, ("data", "type"))


def _filter(extra: dict[str, Schema] | None = None) -> Schema:
    return _object({"accountNumber": STRING, "ibx": IBXS, **(extra or {})}, ("accountNumber", "ibx"))


DEFINITIONS: dict[str, Schema] = {
    # -- the token API (accesstokenv1) ---------------------------------------------------------------------
    "Oauth2TokenResponse": _object(
        {
            "access_token": STRING,
            "token_timeout": STRING,
            "user_name": STRING,
            "token_type": STRING,
            "refresh_token": STRING,
            "refresh_token_timeout": STRING,
        },
        ("access_token", "token_timeout", "token_type", "user_name"),
    ),
    "Oauth2TokenErrorResponse": _object(
        {
            "error_domain": STRING,
            "error_title": STRING,
            "error_code": STRING,
            "developer_message": STRING,
            "error_message": STRING,
        },
        ("developer_message", "error_code", "error_domain", "error_message", "error_title"),
    ),
    # -- errors --------------------------------------------------------------------------------------------
    "ApiError": _object(
        {
            "additionalInfo": _ref("ApiErrorAdditionalInfo"),
            "correlationId": STRING,
            "details": STRING,
            "errorCode": STRING,
            "errorMessage": STRING,
            "help": STRING,
        }
    ),
    "ApiErrorAdditionalInfo": _object({"constraintCode": STRING, "reason": STRING}),
    # -- subscriptions -------------------------------------------------------------------------------------
    "SubscriptionRequest": _object(
        {"channel": _ref("Channel"), "messageType": _ref("MessageType")}
    ),  # repair 3
    "SubscriptionResponse": _object(
        {
            "channel": _ref("Channel"),
            "createdBy": STRING,
            "createdDateTime": {"type": "string", "format": "date-time"},
            "id": STRING,
            "messageType": _ref("MessageType"),
            "orgId": STRING,
            "status": {
                "type": "string",
                "enum": ["PENDING", "ACTIVE", "FAILED", "DELETE_IN_PROGRESS", "DELETED"],
            },
            "updatedBy": STRING,
            "updatedDateTime": {"type": "string", "format": "date-time"},
        }
    ),
    "Channel": _object(
        {
            "awsIotCoreChannelConfiguration": _ref("AwsIotCoreChannelConfiguration"),
            "azureChannelConfiguration": _ref("AzureChannelConfiguration"),
            "channelType": {"type": "string", "enum": ["AWS_IOT_CORE", "WEBHOOK", "AZURE"]},
            "webhookChannelConfiguration": _ref("WebhookChannelConfiguration"),
        }
    ),
    "AwsIotCoreChannelConfiguration": _object({"url": STRING}, ("url",)),
    "AzureChannelConfiguration": _object(
        {
            "batchSize": _bounded(5, 20),
            "numberOfConcurrentCalls": _bounded(20, 50),
            "numberOfRetries": _bounded(1, 5),
        }
    ),
    "WebhookChannelConfiguration": _object(
        {
            "batchSize": _bounded(5, 20),
            "numberOfConcurrentCalls": _bounded(20, 50),
            "numberOfRetries": _bounded(1, 5),
            "sslCertificate": STRING,
            "url": STRING,
        },
        ("url",),
    ),
    "MessageType": _object(
        {
            "asset": {"type": "array", "items": _ref("Asset")},
            "customAlert": {"type": "array", "items": _ref("CustomAlert")},
            "environmental": {"type": "array", "items": _ref("Environmental")},
            "meteredPower": {"type": "array", "items": _ref("MeteredPowerFilter")},  # repair 2
            "power": {"type": "array", "items": _ref("PowerMessage")},
            "systemAlert": {"type": "array", "items": _ref("SystemAlert")},
        }
    ),
    "Asset": _filter(
        {
            "assetClassification": {
                "type": "array",
                "items": {"type": "string", "enum": ["MECHANICAL", "ENVIRONMENTAL", "ELECTRICAL"]},
                "minItems": 1,  # repair 1 (and maxItems 2147483647, no bound at all)
                "uniqueItems": True,
            },
            "assetId": {"type": "array", "items": STRING, "minItems": 1, "uniqueItems": True},
        }
    ),
    "Environmental": _filter(
        {
            "level": {
                "type": "array",
                "items": {"type": "string", "enum": ["ZONE", "IBX", "CAGE"]},
                "minItems": 1,
                "maxItems": 3,  # repair 1
                "uniqueItems": True,
            }
        }
    ),
    "PowerMessage": _filter(),
    "MeteredPowerFilter": _filter(),  # repair 2
    "SystemAlert": _filter(),
    "CustomAlert": _filter({"user": STRING}),
    # -- subscription data ---------------------------------------------------------------------------------
    "SubscriptionData": _object(
        {
            "alarmMessageData": {"type": "array", "items": _ref("AlarmMessageData")},
            "alertMessageData": {"type": "array", "items": _ref("AlertMessageData")},
            "environmentMessageData": {"type": "array", "items": _ref("EnvironmentMessageData")},
            "meteredPowerMessageData": {"type": "array", "items": _ref("MeteredPowerMessageData")},
            "pagination": _ref("Pagination"),
            "powerMessageData": {"type": "array", "items": _ref("PowerMessageData")},
            "tagPointMessageData": {"type": "array", "items": _ref("TagPointMessageData")},
        }
    ),
    "Pagination": _object(
        {"limit": INT32, "next": STRING, "offset": INT32, "previous": STRING, "total": INT32},
        ("limit", "offset", "total"),
    ),
    "AlarmMessageData": _message("Alarm", "system-alert"),
    "Alarm": _object(
        {
            "asset": _object({"classification": STRING, "id": STRING, "type": STRING}),
            "conditionName": STRING,
            "country": STRING,
            "currentValue": _object({"type": STRING, "unit": STRING, "value": STRING}),
            "dataQuality": STRING,
            "definitionId": STRING,
            "heartbeat": BOOLEAN,
            "ibx": STRING,
            "metro": STRING,
            "normalProcessedTime": STRING,
            "normalTriggeredTime": STRING,
            "processedTime": STRING,
            "region": STRING,
            "severity": INT32,
            "status": _object(
                {
                    "acknowledged": BOOLEAN,
                    "acknowledgementTime": STRING,
                    "active": BOOLEAN,
                    "cleared": BOOLEAN,
                }
            ),
            "streamId": STRING,
            "tag": _object({"displayName": STRING, "id": STRING}),
            "threshold": _object({"message": STRING, "stateLimit": STRING, "unit": STRING}),
            "triggerRule": STRING,
            "triggeredTime": STRING,
            "type": STRING,
        },
        ("asset", "currentValue", "definitionId", "ibx", "status", "streamId", "tag", "threshold"),
    ),
    "AlertMessageData": _message("Alert", "custom-alert"),
    "Alert": _object(
        {
            "asset": _object({"classification": STRING, "id": STRING, "type": STRING}),
            "conditional": STRING,
            "dataQuality": STRING,
            "eventType": STRING,
            "heartbeat": BOOLEAN,
            "ibx": STRING,
            "id": STRING,
            "region": STRING,
            "streamId": STRING,
            "tag": _object({"id": STRING}),
            "threshold": _object({"maxValue": STRING, "minValue": STRING, "unit": STRING, "value": STRING}),
            "triggeredTime": STRING,
            "type": STRING,
            "typeId": STRING,
        },
        ("asset", "ibx", "streamId", "tag", "threshold"),
    ),
    "EnvironmentMessageData": _message("Environment", "environmental"),
    "Environment": _object(
        {
            "asset": _object({"id": STRING, "level": STRING}, ("id", "level")),
            "dataQuality": STRING,
            "ibx": STRING,
            "reading": _value_with_unit("unit", "value"),
            "readingTime": STRING,
            "streamId": STRING,
            "tag": _object({"displayName": STRING, "id": STRING}, ("id",)),
        },
        ("asset", "ibx", "reading", "streamId", "tag"),
    ),
    "MeteredPowerMessageData": _message("MeteredPower", "metered-power"),
    "MeteredPower": _object(
        {
            "accountNumber": STRING,
            "asset": _object({"id": STRING, "type": STRING}, ("id",)),
            "cage": STRING,
            "cageSerialNo": STRING,
            "dataQuality": STRING,
            "ibx": STRING,
            "reading": _value_with_unit("value"),
            "readingTime": STRING,
            "streamId": STRING,
            "tag": _object({"displayName": STRING, "id": STRING}, ("id",)),
        },
        ("asset", "ibx", "reading", "streamId", "tag"),
    ),
    "PowerMessageData": _message("Power", "power"),
    "Power": _object(
        {
            "accountNumber": STRING,
            "apparentPower": _value_with_unit("unit", "value"),
            "asset": _object({"id": STRING, "type": STRING}, ("id", "type")),
            "cabinet": STRING,
            "cabinetRating": _value_with_unit("unit", "value"),
            "cage": STRING,
            "circuitType": STRING,
            "contractualPower": _value_with_unit("unit", "value"),
            "current": _value_with_unit("unit", "value"),
            "description": STRING,
            "ibx": STRING,
            "lastUpdated": STRING,
            "oid": STRING,
            "peakLastSevenDays": _value_with_unit("unit", "value"),
            "peakLastSevenDaysContractualPower": _value_with_unit("unit", "value"),
            "peakLastSevenDaysRatio": _value_with_unit("unit", "value"),
            "peakLastSevenDaysTime": STRING,
            "powerConsumptionToContractual": _value_with_unit("unit", "value"),
            "powerFactor": _value_with_unit("unit", "value"),
            "readingTime": STRING,
            "realPower": _value_with_unit("unit", "value"),
            "soldCurrent": _value_with_unit("unit", "value"),
            "soldPower": _value_with_unit("unit", "value"),
            "streamId": STRING,
        },
        ("asset", "ibx", "streamId"),
    ),
    "TagPointMessageData": _message("TagPoint", "tag-point"),
    "TagPoint": _object(
        {
            "dataQuality": STRING,
            "ibx": STRING,
            "reading": _value_with_unit("value"),
            "readingTime": STRING,
            "streamId": STRING,
            "tag": _object({"displayName": STRING, "id": STRING}, ("id",)),
        },
        ("dataQuality", "ibx", "reading", "readingTime", "streamId", "tag"),
    ),
}

_FORMATS = FormatChecker()


@_FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    if isinstance(value, str):
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    return True


def problems(definition: str, instance: Any) -> list[str]:
    """Where `instance` breaks the published `definition` (empty: it conforms), one line each."""
    schema = {**_ref(definition), "definitions": DEFINITIONS}
    validator = Draft4Validator(schema, format_checker=_FORMATS)
    return sorted(
        f"{'/'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
        for error in validator.iter_errors(instance)
    )


def list_problems(definition: str, items: Any) -> list[str]:
    """`problems` of an array of `definition` items."""
    if not isinstance(items, list):
        return [f"(top): {items!r} is not an array"]
    return [f"[{i}].{p}" for i, item in enumerate(items) for p in problems(definition, item)]


__all__ = ["DEFINITIONS", "list_problems", "problems"]
