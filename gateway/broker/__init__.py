"""The broker shell: provisioning RabbitMQ from the directory and the aio-pika transport.

- :mod:`gateway.broker.provision` — RabbitMQ definitions from the federation members, per-org
  password files, applying them with ``rabbitmqctl``.
- :mod:`gateway.broker.transport` — :class:`~gateway.broker.transport.Publisher` and
  :class:`~gateway.broker.transport.Consumer` on aio-pika.

Names, permissions and policies themselves are pure data in :mod:`gateway.core.broker_topology`.
"""
