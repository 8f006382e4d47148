"""What the database and RabbitMQ accounts must hold, from the site data and its secrets: pure,
read by the pre-run bundle (operations/before.py, compared on the host) and by the operations
that make the accounts right (operations/galera.py, operations/rabbitmq.py)."""

from __future__ import annotations

import hashlib

from config.paths import SST_ACCOUNT


def native_hash(password: str) -> str:
    """MySQL/MariaDB mysql_native_password hash, computed locally (the secret never leaves)."""
    return "*" + hashlib.sha1(hashlib.sha1(password.encode()).digest()).hexdigest().upper()


def expected_hashes(data: dict, secret) -> dict[str, str]:
    """{account name: the hash its accounts must have} (HAProxy's check account: none), for
    MysqlAccounts to compare on the host; `secret(name)` gives a secret's value."""
    wanted = {data["mariadb_check_user"]: "", data["mariadb_admin_user"]: native_hash(secret("mariadb_admin_password"))}
    if data["galera_sst_method"] == "mariabackup":
        wanted[SST_ACCOUNT] = native_hash(secret("mariadb_sst_password"))
    return wanted


def expected_passwords(data: dict, secret) -> dict[str, str]:
    """{user: its password}, for RabbitmqDefinitions to compare on the host (password_ok);
    `secret(name)` gives a secret's value."""
    return {data["rabbitmq_user"]: secret("rabbitmq_password"), data["rabbitmq_admin_user"]: secret("rabbitmq_admin_password"),
            data["rabbitmq_monitor_user"]: secret("rabbitmq_monitor_password")}
