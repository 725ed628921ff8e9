"""connexion's API-key check, with the key function's signature read once per operation.

connexion 3.3 asks the spec's x-apikeyInfoFunc for its signature twice on every request
(does it take `required_scopes`? `request`?): 3% of a GET, whatever the function is.
`ApiKeyInHeader` works that out when the app is built, through connexion's documented
way to change how a security scheme is checked ("Custom security handlers": a handler
class in `security_map` that implements `_get_verify_func`). What it answers is
connexion's: no key is connexion's own "no credentials" (401, or the next scheme), a
function that returns None refuses the key (401), and what the function raises (a 403)
goes through as it would there.
"""

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from connexion.exceptions import OAuthResponseProblem
from connexion.lifecycle import ConnexionRequest

from connexion_ext.internals import ApiKeySecurityHandler

REFUSED = "Provided apikey is not valid"  # connexion's words for a key the function refuses


class ApiKeyInHeader(ApiKeySecurityHandler):  # type: ignore[misc]
    """A key sent in a header; one sent elsewhere is left to connexion's own handler."""

    def _get_verify_func(
        self,
        api_key_info_func: Callable[..., Any],
        loc: str,
        name: str,
        required_scopes: list[str],
    ) -> Callable[[ConnexionRequest], Any]:
        connexion_check: Callable[[ConnexionRequest], Any] = super()._get_verify_func(
            api_key_info_func, loc, name, required_scopes
        )
        if loc != "header":
            return connexion_check
        # The keywords connexion passes, asked as connexion asks (once, here).
        extra: dict[str, Any] = {}
        if self._accepts_kwarg(api_key_info_func, "required_scopes"):
            extra["required_scopes"] = required_scopes
        pass_request = self._accepts_kwarg(api_key_info_func, "request")

        def verify(request: ConnexionRequest) -> Any:
            key = request.headers.get(name)
            if key is None:
                return connexion_check(request)  # connexion's answer to a missing key
            if pass_request:
                token_info = api_key_info_func(key, **extra, request=request)
            else:
                token_info = api_key_info_func(key, **extra)
            if inspect.isawaitable(token_info):  # an async function's, or one it returned
                return _refused_if_none(token_info)
            if token_info is None:
                raise OAuthResponseProblem(detail=REFUSED)
            return token_info

        return verify


async def _refused_if_none(token_info: Awaitable[Any]) -> Any:
    answer: Any = token_info
    while inspect.isawaitable(answer):
        answer = await answer
    if answer is None:
        raise OAuthResponseProblem(detail=REFUSED)
    return answer


SECURITY = {"apiKey": ApiKeyInHeader}
