import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IdentityType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IDENTITY_TYPE_UNSPECIFIED: _ClassVar[IdentityType]
    IDENTITY_TYPE_PROFILE: _ClassVar[IdentityType]
    IDENTITY_TYPE_COOKIE: _ClassVar[IdentityType]
    IDENTITY_TYPE_DEVICE: _ClassVar[IdentityType]
    IDENTITY_TYPE_CRM: _ClassVar[IdentityType]
    IDENTITY_TYPE_HASHED_EMAIL: _ClassVar[IdentityType]
    IDENTITY_TYPE_SESSION: _ClassVar[IdentityType]

class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_UNSPECIFIED: _ClassVar[Outcome]
    OUTCOME_REMOVED: _ClassVar[Outcome]
    OUTCOME_CHOSEN: _ClassVar[Outcome]
    OUTCOME_NOT_CHOSEN: _ClassVar[Outcome]
    OUTCOME_RESERVATION_REFUSED: _ClassVar[Outcome]
IDENTITY_TYPE_UNSPECIFIED: IdentityType
IDENTITY_TYPE_PROFILE: IdentityType
IDENTITY_TYPE_COOKIE: IdentityType
IDENTITY_TYPE_DEVICE: IdentityType
IDENTITY_TYPE_CRM: IdentityType
IDENTITY_TYPE_HASHED_EMAIL: IdentityType
IDENTITY_TYPE_SESSION: IdentityType
OUTCOME_UNSPECIFIED: Outcome
OUTCOME_REMOVED: Outcome
OUTCOME_CHOSEN: Outcome
OUTCOME_NOT_CHOSEN: Outcome
OUTCOME_RESERVATION_REFUSED: Outcome

class Identity(_message.Message):
    __slots__ = ("type", "id")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    type: IdentityType
    id: str
    def __init__(self, type: _Optional[_Union[IdentityType, str]] = ..., id: _Optional[str] = ...) -> None: ...

class StringList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class Value(_message.Message):
    __slots__ = ("string_value", "number_value", "int_value", "bool_value", "list_value", "time_value")
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    NUMBER_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    LIST_VALUE_FIELD_NUMBER: _ClassVar[int]
    TIME_VALUE_FIELD_NUMBER: _ClassVar[int]
    string_value: str
    number_value: float
    int_value: int
    bool_value: bool
    list_value: StringList
    time_value: _timestamp_pb2.Timestamp
    def __init__(self, string_value: _Optional[str] = ..., number_value: _Optional[float] = ..., int_value: _Optional[int] = ..., bool_value: _Optional[bool] = ..., list_value: _Optional[_Union[StringList, _Mapping]] = ..., time_value: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DecideRequest(_message.Message):
    __slots__ = ("placement", "identity", "extra_identities", "context", "channels", "count", "explain", "dry_run", "request_id", "as_of")
    class ContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    EXTRA_IDENTITIES_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    placement: str
    identity: Identity
    extra_identities: _containers.RepeatedCompositeFieldContainer[Identity]
    context: _containers.MessageMap[str, Value]
    channels: _containers.RepeatedScalarFieldContainer[str]
    count: int
    explain: bool
    dry_run: bool
    request_id: str
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, placement: _Optional[str] = ..., identity: _Optional[_Union[Identity, _Mapping]] = ..., extra_identities: _Optional[_Iterable[_Union[Identity, _Mapping]]] = ..., context: _Optional[_Mapping[str, Value]] = ..., channels: _Optional[_Iterable[str]] = ..., count: _Optional[int] = ..., explain: _Optional[bool] = ..., dry_run: _Optional[bool] = ..., request_id: _Optional[str] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DecisionItem(_message.Message):
    __slots__ = ("offer_id", "content_id", "channel", "probability", "score", "rank", "template")
    OFFER_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    offer_id: str
    content_id: str
    channel: str
    probability: float
    score: float
    rank: int
    template: str
    def __init__(self, offer_id: _Optional[str] = ..., content_id: _Optional[str] = ..., channel: _Optional[str] = ..., probability: _Optional[float] = ..., score: _Optional[float] = ..., rank: _Optional[int] = ..., template: _Optional[str] = ...) -> None: ...

class CandidateExplanation(_message.Message):
    __slots__ = ("offer_id", "content_id", "channel", "outcome", "stage", "rule", "detail", "probability", "score")
    OFFER_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    offer_id: str
    content_id: str
    channel: str
    outcome: Outcome
    stage: str
    rule: str
    detail: str
    probability: float
    score: float
    def __init__(self, offer_id: _Optional[str] = ..., content_id: _Optional[str] = ..., channel: _Optional[str] = ..., outcome: _Optional[_Union[Outcome, str]] = ..., stage: _Optional[str] = ..., rule: _Optional[str] = ..., detail: _Optional[str] = ..., probability: _Optional[float] = ..., score: _Optional[float] = ...) -> None: ...

class DecideResponse(_message.Message):
    __slots__ = ("decision_id", "items", "arm", "policy", "model_version", "fallback", "explanations", "notes", "request_id", "logged", "degraded")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    EXPLANATIONS_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LOGGED_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    items: _containers.RepeatedCompositeFieldContainer[DecisionItem]
    arm: str
    policy: str
    model_version: str
    fallback: bool
    explanations: _containers.RepeatedCompositeFieldContainer[CandidateExplanation]
    notes: _containers.RepeatedScalarFieldContainer[str]
    request_id: str
    logged: bool
    degraded: bool
    def __init__(self, decision_id: _Optional[str] = ..., items: _Optional[_Iterable[_Union[DecisionItem, _Mapping]]] = ..., arm: _Optional[str] = ..., policy: _Optional[str] = ..., model_version: _Optional[str] = ..., fallback: _Optional[bool] = ..., explanations: _Optional[_Iterable[_Union[CandidateExplanation, _Mapping]]] = ..., notes: _Optional[_Iterable[str]] = ..., request_id: _Optional[str] = ..., logged: _Optional[bool] = ..., degraded: _Optional[bool] = ...) -> None: ...

class RewardRequest(_message.Message):
    __slots__ = ("decision_id", "offer_id", "event_type", "value", "event_id", "occurred_at")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    OFFER_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    offer_id: str
    event_type: str
    value: float
    event_id: str
    occurred_at: _timestamp_pb2.Timestamp
    def __init__(self, decision_id: _Optional[str] = ..., offer_id: _Optional[str] = ..., event_type: _Optional[str] = ..., value: _Optional[float] = ..., event_id: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RewardAck(_message.Message):
    __slots__ = ("decision_id", "event_id", "duplicate", "reward", "deferred")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    DEFERRED_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    event_id: str
    duplicate: bool
    reward: float
    deferred: bool
    def __init__(self, decision_id: _Optional[str] = ..., event_id: _Optional[str] = ..., duplicate: _Optional[bool] = ..., reward: _Optional[float] = ..., deferred: _Optional[bool] = ...) -> None: ...

class ReloadCatalogRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReloadCatalogResponse(_message.Message):
    __slots__ = ("reloaded", "catalog_version", "errors")
    RELOADED_FIELD_NUMBER: _ClassVar[int]
    CATALOG_VERSION_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    reloaded: bool
    catalog_version: str
    errors: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, reloaded: _Optional[bool] = ..., catalog_version: _Optional[str] = ..., errors: _Optional[_Iterable[str]] = ...) -> None: ...

class ForgetRequest(_message.Message):
    __slots__ = ("identity", "person_key", "reason", "scan_keyspace")
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    PERSON_KEY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SCAN_KEYSPACE_FIELD_NUMBER: _ClassVar[int]
    identity: Identity
    person_key: str
    reason: str
    scan_keyspace: bool
    def __init__(self, identity: _Optional[_Union[Identity, _Mapping]] = ..., person_key: _Optional[str] = ..., reason: _Optional[str] = ..., scan_keyspace: _Optional[bool] = ...) -> None: ...

class ForgetResponse(_message.Message):
    __slots__ = ("pseudonym", "identities", "keys_deleted", "decisions", "decision_log_rows", "reward_log_rows", "audit_id")
    PSEUDONYM_FIELD_NUMBER: _ClassVar[int]
    IDENTITIES_FIELD_NUMBER: _ClassVar[int]
    KEYS_DELETED_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    DECISION_LOG_ROWS_FIELD_NUMBER: _ClassVar[int]
    REWARD_LOG_ROWS_FIELD_NUMBER: _ClassVar[int]
    AUDIT_ID_FIELD_NUMBER: _ClassVar[int]
    pseudonym: str
    identities: int
    keys_deleted: int
    decisions: int
    decision_log_rows: int
    reward_log_rows: int
    audit_id: str
    def __init__(self, pseudonym: _Optional[str] = ..., identities: _Optional[int] = ..., keys_deleted: _Optional[int] = ..., decisions: _Optional[int] = ..., decision_log_rows: _Optional[int] = ..., reward_log_rows: _Optional[int] = ..., audit_id: _Optional[str] = ...) -> None: ...
