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

# A pass of the garbage collector pauses the whole process while it walks what is
# alive, and a web process with a thousand agents waiting holds a lot. What is loaded
# now (Django, the apps) lives as long as the process: keep it out of the passes. And
# collect less often (every 20,000 new objects rather than 700, the oldest generation
# after 20 young passes rather than 10): with 2,000 waiting agents this took the
# console's p99 from 120-160 ms to 76-89 ms (benchmarks/long_poll_load.py).
gc.freeze()
gc.set_threshold(20_000, 20, 20)
