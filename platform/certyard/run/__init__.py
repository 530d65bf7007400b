"""What `make run` (``manage.py certyard_run``) needs besides Django: the process
supervisor and the demo material. A library package, not a Django app: it imports no
app, so any app's management command may use it."""
