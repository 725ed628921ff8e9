"""gunicorn for the WSGI baselines: the same worker and keep-alive as gunicorn.conf.py."""

worker_class = "gevent"
workers = 1
worker_connections = 1000
keepalive = 5
control_socket_disable = True
accesslog = None
loglevel = "warning"
