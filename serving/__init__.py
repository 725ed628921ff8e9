"""How the app meets a WSGI server: the ASGI-to-WSGI bridge and start-up checks."""
