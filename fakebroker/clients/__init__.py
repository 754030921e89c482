"""Ready-made protocol clients for tests, also behind the pytest fixtures (``mqtt_client``).

Each lives in its own module so that importing fakebroker does not import a client library:
``from fakebroker.clients.mqtt import MqttClient`` needs paho-mqtt (``pip install 'fakebroker[clients]'``).
"""
