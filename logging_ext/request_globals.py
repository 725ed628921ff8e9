"""Flask's `g` with the request id on it, as the tutorial's handlers used `g.uuid`.

A property, the use Flask documents for `app_ctx_globals_class`: it reads the id the
request-id middleware chose, so no hook has to run on every request to copy it in.
"""

from flask.ctx import _AppCtxGlobals

from logging_ext.context import current_request_id


class RequestGlobals(_AppCtxGlobals):
    @property
    def request_id(self) -> str | None:
        return current_request_id()
