"""The ``speechkit`` console command."""
