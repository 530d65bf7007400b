"""Middleware that lets Django run a request wholly on the event loop under ASGI.

One sync-only middleware makes Django run the whole chain, async views included, in its
single sync thread: a waiting agent's long poll would then hold that thread. Every
middleware in ``MIDDLEWARE`` must therefore be async-capable.
"""

from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse
from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise, async-capable: a static file is looked up in memory (or, with
    autorefresh, on disk) and answered without touching the rest of the chain."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable, *args: object, **kwargs: object) -> None:
        super().__init__(get_response, *args, **kwargs)
        self._is_async = iscoroutinefunction(get_response)
        if self._is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self._is_async:
            return self._acall(request)
        return super().__call__(request)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        static_file = (
            self.find_file(request.path_info)
            if self.autorefresh
            else self.files.get(request.path_info)
        )
        if static_file is not None:
            return self.serve(static_file, request)
        return await self.get_response(request)
