"""One module per `silver` command; each has ``run(console, **options)``."""
