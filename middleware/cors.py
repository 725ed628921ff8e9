"""starlette's CORS middleware, with a refused preflight answered as a problem document.

starlette answers a preflight it refuses with `400 text/plain "Disallowed CORS origin"`;
every error of this service is application/problem+json, so that one is too.
"""

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from problems import ProblemResponse


class ProblemCORSMiddleware(CORSMiddleware):
    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        detail = bytes(response.body).decode() + "."  # "Disallowed CORS origin, method"
        headers = {
            k: v for k, v in response.headers.items() if k not in ("content-type", "content-length")
        }
        return ProblemResponse(response.status_code, detail, headers=headers)
