"""ASGI entry point (the web server `make run` starts: gunicorn with uvicorn workers).

Django's application, wrapped so that an agent's waiting long poll leaves Django at
once and waits with next to nothing alive (certyard.jobs.api.long_poll_asgi).
"""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "certyard.settings")
django_application = get_asgi_application()

from certyard.jobs.api.long_poll_asgi import LongPollHandoff  # noqa: E402 (needs Django set up)

application = LongPollHandoff(django_application)

# What is loaded now (Django, the apps) lives as long as the process: keep it out of the
# garbage collector's full passes, which pause the whole process while they walk it.
gc.freeze()
