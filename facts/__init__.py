"""What the controllers report: one module of pyinfra facts per component, read by the deploy
(to decide) and by the verification (to report).

    facts/probe.py       the shell wrapper every fact runs in, and the error contract
    facts/host.py        files and systemd units (with pending restarts)
    facts/memcached.py   memcached's `stats`
    facts/galera.py      a node's Galera state and accounts
    facts/galera_rules.py Galera's cluster rules (serving, components, position): pure
    facts/rabbitmq.py    a node's RabbitMQ cluster as recorded on disk and as running
    facts/haproxy.py     HAProxy's `show info` and `show stat` on its admin socket; the certificate's expiry
    facts/haproxy_api.py HAProxy's runtime API, spoken here only: its shell (timeout always), `show stat` by column name
    facts/keepalived.py  the VIP on the interface, keepalived's VRRP state

One error contract: every fact returns a dict with an `error` key, None when the state was
read. Anything else (a missing tool, a non-zero status, output cut short, a lost connection)
is an error text, and the rest of the dict says nothing: an unknown state is never a default
that reads as a state. Each process() is pure and tested from captured outputs.
"""
