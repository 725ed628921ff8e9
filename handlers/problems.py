"""Domain errors as RFC 9457 problem documents."""

from connexion import FlaskApp
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from connexion.problem import problem

from storage import UserNotFound, VersionMismatch


def user_not_found(_request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    return problem(404, "Not Found", f"There is no user with id {exc.args[0]}.")


def version_mismatch(_request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    return problem(
        412,
        "Precondition Failed",
        f"User {exc.args[0]} has changed since that ETag was read; read it again and retry.",
    )


def init_app(app: FlaskApp) -> None:
    app.add_error_handler(UserNotFound, user_not_found)
    app.add_error_handler(VersionMismatch, version_mismatch)
