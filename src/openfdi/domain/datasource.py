"""Data source types, the content fields each one needs, and which fields are secrets."""

from __future__ import annotations

# ROMA's datasource types, plus openfdi's own SQLITE and FILE. Types without a connector are
# accepted as data sources but cannot be task endpoints (the engine refuses them clearly).
KNOWN_TYPES: frozenset[str] = frozenset(
    {
        "API", "ACTIVEMQ", "ARTEMISMQ", "CLICKHOUSE", "CUSTOMIZED", "DB2", "DIS", "DM", "DWS",
        "FILE", "FTP", "GAUSS100", "GAUSS200", "GAUSSDB", "HANA", "HIVE", "HL7", "IBMMQ",
        "KAFKA", "KINGBASE", "LDAP", "MONGODB", "MQS", "MQTT", "MRSHBASE", "MRSHDFS", "MRSHIVE",
        "MRSKAFKA", "MYSQL", "NATS", "OBS", "ORACLE", "POSTGRESQL", "RABBITMQ", "REDIS",
        "ROCKETMQ", "SAPHANA", "SNMP", "SQLITE", "SQLSERVER", "WEBSOCKET",
    }
)  # fmt: skip

REQUIRED_CONTENT: dict[str, tuple[str, ...]] = {
    "MYSQL": ("host", "port", "database_name", "user_name"),
    "POSTGRESQL": ("host", "port", "database_name", "user_name"),
    "SQLITE": ("database_name",),
    "FILE": ("address",),
    "REDIS": ("host", "port"),
    "RABBITMQ": ("host", "port", "user_name"),
    "MQTT": ("host", "port"),
    "API": ("url",),
}

# Fields of `content` stored encrypted and answered as "******".
SECRET_FIELDS: frozenset[str] = frozenset(
    {
        "password", "sk", "ssl_password", "trust_store_password", "key_store_password",
        "key_store_key_password", "config_file_content", "api_auth_detail",
    }
)  # fmt: skip
