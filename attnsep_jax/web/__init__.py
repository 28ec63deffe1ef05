"""The local web page: ``attnsep serve --checkpoint DIR`` (see ``server``)."""
