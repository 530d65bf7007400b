"""ASGI entry point (the web server `make run` starts: gunicorn with uvicorn workers).

Every request goes whole to Django's WSGI handler on a pool of long-lived threads
(certyard.run.sync_requests): one hop from the event loop and back, and each thread keeps
its database connection from one request to the next. In front of it, the agent's long
poll (``GET jobs/next``) is offered a handoff: a poll that must wait leaves Django at
once and waits on the event loop with next to nothing alive
(certyard.jobs.api.long_poll_asgi).
"""

import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "certyard.settings")
django_requests = get_wsgi_application()

from django.conf import settings  # noqa: E402 (needs Django set up)

from certyard.jobs.api.long_poll_asgi import NEXT_JOB_PATH, LongPollHandoff  # noqa: E402
from certyard.run.sync_requests import SyncRequests  # noqa: E402

sync_requests = SyncRequests(
    django_requests,
    threads=settings.CERTYARD_WEB_THREADS,
    max_memory_body=settings.FILE_UPLOAD_MAX_MEMORY_SIZE,
    requests_per_connection=settings.CERTYARD_KEEPALIVE_REQUESTS,
)
long_polls = LongPollHandoff(sync_requests)


async def application(scope, receive, send):  # type: ignore[no-untyped-def]
    """The long poll through its handoff; everything else straight to the thread pool."""
    if scope["type"] == "http" and scope["path"] == NEXT_JOB_PATH:
        await long_polls(scope, receive, send)
    else:
        await sync_requests(scope, receive, send)


# A pass of the garbage collector pauses the whole process while it walks what is
# alive, and a web process with a thousand agents waiting holds a lot. What is loaded
# now (Django, the apps) lives as long as the process: keep it out of the passes. And
# collect less often (every 20,000 new objects rather than 700, the oldest generation
# after 20 young passes rather than 10): with 2,000 waiting agents this took the
# console's p99 from 120-160 ms to 76-89 ms (benchmarks/long_poll_load.py).
gc.freeze()
gc.set_threshold(20_000, 20, 20)
