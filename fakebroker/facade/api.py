"""The API both faces share, assembled from its parts."""

from __future__ import annotations

from .expect import Expectations
from .faults import Faults
from .management import Management
from .views import Views


class BrokerAPI(Management, Views, Expectations, Faults):
    """Methods every broker object has. Errors are :mod:`fakebroker.errors` exceptions with RabbitMQ's text."""
