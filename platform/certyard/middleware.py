"""Middleware that lets Django run a request wholly on the event loop under ASGI.

One sync-only middleware makes Django run the whole chain, async views included, in its
single sync thread: a waiting agent's long poll would then hold that thread. Every
middleware in ``MIDDLEWARE`` must therefore be async-capable.
"""

from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
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


class RefuseNulMiddleware:
    """Refuses a request whose query string holds a NUL character (``%00``), with a 400.

    Query parameters become database filters and form values; PostgreSQL refuses NUL in
    text (a 500 otherwise) and no Certyard value needs one. JSON bodies are checked by the
    APIs' parser and form fields by Django's own validator; this covers what neither sees.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        self._is_async = iscoroutinefunction(get_response)
        if self._is_async:
            markcoroutinefunction(self)

    @staticmethod
    def _refusal(request: HttpRequest) -> HttpResponse | None:
        query = request.META.get("QUERY_STRING", "")
        if "%00" not in query and "\x00" not in query:
            return None
        message = "the query string holds a NUL character (%00), which no parameter takes"
        if request.path.startswith("/api/"):
            from certyard.api.errors import error_body

            return JsonResponse(error_body("bad_request", message), status=400)
        return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self._is_async:
            return self._acall(request)
        return self._refusal(request) or self.get_response(request)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        return self._refusal(request) or await self.get_response(request)
