"""Data source types, the content fields each one needs, and which fields are secrets."""

from __future__ import annotations

# The 35 `datasource_type` values ROMA Connect documents (fdi-api.md C; the SDK's DatasourceInfo
# lists the same, and a test holds this set to the SDK's list). Every one is accepted: a data
# source of a type without a connector is kept, and a task using it is refused when it is saved.
ROMA_TYPES: frozenset[str] = frozenset(
    {
        "DWS", "MYSQL", "KAFKA", "API", "OBS", "SAP", "MRSHBASE", "MRSHDFS", "MRSHIVE",
        "WEBSOCKET", "SQLSERVER", "ORACLE", "POSTGRESQL", "REDIS", "MONGODB", "DIS", "HL7",
        "RABBITMQ", "SNMP", "IBMMQ", "CUSTOMIZED", "ACTIVEMQ", "ARTEMISMQ", "FTP", "HIVE", "HANA",
        "FIKAFKA", "MRSKAFKA", "FIHDFS", "FIHIVE", "GAUSS200", "GAUSS100", "LDAP", "DB2", "TAURUS",
    }
)  # fmt: skip

# openfdi's own types beyond ROMA's (SQLite files, plain files, message brokers ROMA does not
# name, and databases accepted since the first release, kept so that stored sources stay valid).
OPENFDI_TYPES: frozenset[str] = frozenset(
    {
        "SQLITE", "FILE", "MQTT", "NATS", "CLICKHOUSE", "DM", "GAUSSDB", "KINGBASE", "MQS",
        "ROCKETMQ", "SAPHANA",
    }
)  # fmt: skip

KNOWN_TYPES: frozenset[str] = ROMA_TYPES | OPENFDI_TYPES

# Required `content` fields of the types no connector serves. A type with a connector declares
# its own in its spec (`ConnectorSpec.required_content`, read through the Registry). Every type
# with required fields has a connector now; the table stays for the next type declared first.
REQUIRED_CONTENT: dict[str, tuple[str, ...]] = {}

# Fields of `content` stored encrypted and answered as "******".
SECRET_FIELDS: frozenset[str] = frozenset(
    {
        "password", "sk", "ssl_password", "trust_store_password", "key_store_password",
        "key_store_key_password", "config_file_content", "api_auth_detail",
    }
)  # fmt: skip
